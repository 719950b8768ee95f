/* knownhosts: OpenSSH known_hosts files (include/remex/knownhosts.h). */
#include "remex/knownhosts.h"

#include <errno.h>
#include <fcntl.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Decodes base64 text of n bytes into out (cap bytes); the decoded length or -1. */
static long b64_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    size_t pad = 0;
    if (n == 0 || n % 4 != 0 || (n / 4) * 3 > cap)
        return -1;
    if (s[n - 1] == '=')
        pad++;
    if (n > 1 && s[n - 2] == '=')
        pad++;
    int r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    return r < 0 || (size_t)r < pad ? -1 : (long)((size_t)r - pad);
}

/* "|1|salt|hash": does it hash name? */
static int hashed_match(const char *pat, size_t n, const char *name)
{
    unsigned char salt[64], want[64], got[EVP_MAX_MD_SIZE];
    unsigned int gotlen = 0;
    const char *p = pat + 3, *bar = memchr(p, '|', n - 3);
    if (bar == NULL)
        return 0;
    long sl = b64_decode(p, (size_t)(bar - p), salt, sizeof(salt));
    long wl = b64_decode(bar + 1, n - (size_t)(bar + 1 - pat), want, sizeof(want));
    if (sl <= 0 || wl != 20)
        return 0;
    if (HMAC(EVP_sha1(), salt, (int)sl, (const unsigned char *)name, strlen(name), got, &gotlen) ==
            NULL ||
        gotlen != 20)
        return 0;
    return memcmp(got, want, 20) == 0;
}

/* OpenSSH's host glob: '*' any run, '?' one character, case-insensitive; '[' is literal. */
static int glob_match(const char *p, const char *pe, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (p < pe && (*p == '?' || tolower((unsigned char)*p) == tolower((unsigned char)*s))) {
            p++;
            s++;
        } else if (p < pe && *p == '*') {
            star = p++;
            resume = s;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (p < pe && *p == '*')
        p++;
    return p == pe;
}

/* One host pattern (not negated) against name ("host" or "[host]:port"). */
static int pattern_match(const char *pat, size_t n, const char *name)
{
    if (n >= 3 && memcmp(pat, "|1|", 3) == 0)
        return hashed_match(pat, n, name);
    return n > 0 && glob_match(pat, pat + n, name);
}

/* The host field against name: 1 listed, 0 not, -1 excluded by a negated pattern. */
static int hosts_match(const char *f, size_t n, const char *name)
{
    int hit = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && f[j] != ',')
            j++;
        int neg = j > i && f[i] == '!';
        if (pattern_match(f + i + neg, j - i - (size_t)neg, name)) {
            if (neg)
                return -1;
            hit = 1;
        }
        i = j + 1;
    }
    return hit;
}

/* The next whitespace-separated field of [*p, end); its length, 0 at the end. */
static size_t field(const char **p, const char *end, const char **start)
{
    while (*p < end && (**p == ' ' || **p == '\t'))
        (*p)++;
    *start = *p;
    while (*p < end && **p != ' ' && **p != '\t')
        (*p)++;
    return (size_t)(*p - *start);
}

enum verdict { V_NONE = 0, V_OTHER, V_OK, V_REVOKED };

/* One line: what it says about (name, key). */
static enum verdict check_line(const char *l, const char *end, const char *name,
                               const unsigned char *key, size_t keylen)
{
    unsigned char blob[KNOWNHOSTS_KEY_MAX];
    const char *f;
    size_t n = field(&l, end, &f);
    int revoked = 0;
    if (n == 0 || f[0] == '#')
        return V_NONE;
    if (f[0] == '@') {
        if (n == 8 && memcmp(f, "@revoked", 8) == 0)
            revoked = 1;
        else
            return V_NONE; /* @cert-authority and unknown markers */
        n = field(&l, end, &f);
    }
    const char *hosts = f;
    size_t nhosts = n;
    const char *type, *b64;
    if (field(&l, end, &type) == 0 || (n = field(&l, end, &b64)) == 0)
        return V_NONE;
    long bl = b64_decode(b64, n, blob, sizeof(blob));
    if (bl <= 0)
        return V_NONE;
    int same = (size_t)bl == keylen && memcmp(blob, key, keylen) == 0;
    if (revoked)
        return same ? V_REVOKED : V_NONE;
    if (hosts_match(hosts, nhosts, name) != 1)
        return V_NONE;
    return same ? V_OK : V_OTHER;
}

remex_err knownhosts_check_buf(const char *data, size_t len, const char *file, const char *host,
                               int port, const unsigned char *key, size_t keylen,
                               struct remex_error *e)
{
    char name[600];
    enum verdict best = V_NONE;
    if (port > 0 && port != 22)
        snprintf(name, sizeof(name), "[%s]:%d", host, port);
    else
        snprintf(name, sizeof(name), "%s", host);
    for (const char *p = data, *end = data + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le - p <= KNOWNHOSTS_LINE_MAX && memchr(p, '\0', (size_t)(le - p)) == NULL) {
            enum verdict v = check_line(p, le, name, key, keylen);
            if (v == V_REVOKED)
                return remex_seterr(e, REMEX_EPERM, "%s: the host key of %s is marked @revoked",
                                    file, name);
            if (v > best)
                best = v;
        }
        p = le + 1;
    }
    if (best == V_OK)
        return REMEX_OK;
    if (best == V_OTHER)
        return remex_seterr(e, REMEX_ECONFLICT,
                            "%s lists another host key for %s: the server's key changed, or "
                            "someone is in between; check the key before you update %s",
                            file, name, file);
    return remex_seterr(e, REMEX_ENOTFOUND,
                        "%s does not list %s: add its host key (ssh-keyscan -p PORT HOST, "
                        "checked out of band)",
                        file, name);
}

remex_err knownhosts_check(const char *path, const char *host, int port, const unsigned char *key,
                           size_t keylen, struct remex_error *e)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        remex_err rc = fd < 0 ? remex_errno(e, REMEX_EIO, "known_hosts %s", path)
                              : remex_seterr(e, REMEX_EIO, "known_hosts %s: not a file", path);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if (st.st_size > KNOWNHOSTS_FILE_MAX) {
        close(fd);
        return remex_seterr(e, REMEX_ETOOBIG, "known_hosts %s: larger than %d bytes", path,
                            KNOWNHOSTS_FILE_MAX);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    ssize_t r = 0;
    while (buf && got < (size_t)st.st_size &&
           ((r = read(fd, buf + got, (size_t)st.st_size - got)) > 0 || (r < 0 && errno == EINTR)))
        got += r > 0 ? (size_t)r : 0;
    close(fd);
    if (buf == NULL || r < 0) {
        free(buf);
        return remex_seterr(e, buf ? REMEX_EIO : REMEX_ENOMEM, "known_hosts %s: cannot read", path);
    }
    remex_err rc = knownhosts_check_buf(buf, got, path, host, port, key, keylen, e);
    free(buf);
    return rc;
}
