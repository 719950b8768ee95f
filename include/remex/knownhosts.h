/*
 * knownhosts: OpenSSH known_hosts files, for checking the host key of an SSH
 * server (git bundles over SSH; libgit2 1.5 leaves the check to its caller).
 *
 * Format (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"): one entry per line,
 * "[marker] hostpatterns keytype base64-key [comment]"; blank lines and lines
 * starting with '#' are skipped. Host patterns are comma-separated: a name, a
 * "[name]:port" for a port other than 22, '*' and '?' wildcards, a leading
 * '!' negates (a negated match excludes the line), or a hashed name
 * "|1|base64(salt)|base64(HMAC-SHA1(salt, name))". Markers: @revoked (the key
 * is refused for every host) and @cert-authority (not supported: skipped).
 *
 * Caps: KNOWNHOSTS_FILE_MAX bytes per file, KNOWNHOSTS_LINE_MAX bytes per
 * line (longer lines are skipped), keys of at most KNOWNHOSTS_KEY_MAX bytes.
 * Malformed lines are skipped, never fatal: a file that lists the host with
 * the presented key is enough. Thread-safe (no globals).
 */
#ifndef REMEX_KNOWNHOSTS_H
#define REMEX_KNOWNHOSTS_H

#include <stddef.h>

#include "remex/err.h"

#define KNOWNHOSTS_FILE_MAX (1024 * 1024)
#define KNOWNHOSTS_LINE_MAX 16384
#define KNOWNHOSTS_KEY_MAX  8192

/*
 * Checks that known_hosts text lists key (the raw SSH wire-format public key
 * blob, keylen bytes) for host at port. REMEX_OK: listed. REMEX_ENOTFOUND:
 * the host is not listed at all. REMEX_ECONFLICT: the host is listed, with
 * other keys only (a changed key, or a man in the middle). REMEX_EPERM: the
 * key is marked @revoked. file names the text in messages.
 */
remex_err knownhosts_check_buf(const char *data, size_t len, const char *file, const char *host,
                               int port, const unsigned char *key, size_t keylen,
                               struct remex_error *e);

/* The same for the file at path (REMEX_EIO when it cannot be read, REMEX_ETOOBIG). */
remex_err knownhosts_check(const char *path, const char *host, int port, const unsigned char *key,
                           size_t keylen, struct remex_error *e);

#endif
