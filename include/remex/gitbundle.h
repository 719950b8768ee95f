/*
 * gitbundle: git repositories as DAG bundles, through libgit2 (never the git
 * program).
 *
 * Layout under dir (<state_dir>/bundles/<name>):
 *   repo.git/   a bare cache clone; every fetch takes all branches and tags
 *   <sha>/      a checkout of commit <sha> (40 hex), made once, never changed
 *
 * A bundle's version is the commit SHA its tracking_ref resolves to:
 * tracking_ref is a branch, a tag or a full 40-hex SHA (pinned: fetched once,
 * never moves). URLs: https://, http:// (loopback), git://, ssh://, scp-like
 * user@host:path, file:// and plain paths. HTTPS auth: the token (file, env
 * or value; re-read at each fetch) is sent as the basic-auth password. SSH
 * auth: a private key file (with a passphrase) or ssh-agent; the server's host
 * key must be listed in known_hosts (knownhosts.h), never accepted unseen.
 * Error messages name the URL (without any user info) and what to check,
 * never a token, key or passphrase.
 *
 * Every call blocks (network and disk): call them from a thread other than a
 * role's loop. Fetches and checkouts of one dir are serialised by an
 * exclusive flock(2) on dir/.lock, across threads and processes (the
 * dag-processor and the worker of one agent share the cache); the checkout
 * folders appear atomically (rename), so readers see a checkout whole or not
 * at all.
 */
#ifndef REMEX_GITBUNDLE_H
#define REMEX_GITBUNDLE_H

#include <stddef.h>

#include "remex/cfg.h"
#include "remex/err.h"

#define GITBUNDLE_SHA_HEX 41 /* 40 hex + NUL */

struct gitbundle_opts {
    const char *name;               /* bundle name, for messages */
    const char *url;                /* repository */
    const char *ref;                /* branch, tag or 40-hex SHA; NULL: "main" */
    const char *dir;                /* <state_dir>/bundles/<name> (created) */
    const struct cfg_secret *token; /* HTTPS: NULL or CFG_SECRET_NONE: no auth */
    /* SSH (ssh://[user@]host[:port]/path or user@host:path; user default "git") */
    const char *ssh_key;                     /* private key file, or NULL */
    const struct cfg_secret *ssh_passphrase; /* of ssh_key, may be NULL */
    int ssh_agent;                           /* use ssh-agent (SSH_AUTH_SOCK) when no ssh_key */
    const char *known_hosts;                 /* NULL: $HOME/.ssh/known_hosts */
    /* When set and *cancel becomes non-zero (another thread, __atomic), a fetch in
     * progress stops with REMEX_ECLOSED. May be NULL. */
    const int *cancel;
};

/* url without user info ("https://user:pw@host/x" -> "https://host/x"), for messages. */
void gitbundle_safe_url(const char *url, char *out, size_t outsz);

/* 1 when s is a full 40-hex commit SHA. */
int gitbundle_is_sha(const char *s);

/*
 * Fetches the repository into dir/repo.git (cloning it the first time) and
 * resolves opts->ref to a commit: sha gets its 40 hex digits. A pinned SHA
 * already in the cache needs no network. Errors: REMEX_EAUTH (credentials
 * refused: the message names the URL and the token's source), REMEX_ECONNECT,
 * REMEX_ENOTFOUND (no such ref or commit), REMEX_EIO.
 */
remex_err gitbundle_fetch(const struct gitbundle_opts *o, char sha[GITBUNDLE_SHA_HEX],
                          struct remex_error *e);

/*
 * The checkout of commit sha in dir/<sha> (made from the cache when missing);
 * path receives it. REMEX_ENOTFOUND when the cache lacks the commit.
 */
remex_err gitbundle_checkout(const struct gitbundle_opts *o, const char *sha, char *path,
                             size_t pathsz, struct remex_error *e);

/*
 * Removes the checkouts in dir beyond the newest keep (by folder mtime, the
 * time the checkout was made), never one named in spare (n SHAs) and never
 * one a task holds (bundle_hold's shared flock: the pruner takes it
 * exclusively, renames the folder away, then deletes it). Returns the number
 * removed; *held counts those skipped because a task holds them.
 */
size_t gitbundle_prune(const char *dir, size_t keep, const char *const *spare, size_t n,
                       size_t *held);

/* The folder a checkout of sha has (or would have): dir/<sha>. */
int gitbundle_checkout_path(const char *dir, const char *sha, char *path, size_t pathsz);

#endif
