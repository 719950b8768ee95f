/* sigv4: AWS Signature Version 4 signing (OpenSSL HMAC) and AWS credentials. */
#include "remex/sigv4.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/hash.h"

void sigv4_creds_wipe(struct sigv4_creds *c)
{
    OPENSSL_cleanse(c, sizeof(*c));
}

void sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

remex_err sigv4_uri_encode(struct buf *out, const char *s, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    remex_err rc = REMEX_OK;
    for (size_t i = 0; i < n && rc == REMEX_OK; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
            rc = buf_putc(out, (char)c);
        } else {
            char enc[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = buf_append(out, enc, 3);
        }
    }
    return rc;
}

static int hdr_cmp(const void *a, const void *b)
{
    return strcmp(((const struct sigv4_header *)a)->name, ((const struct sigv4_header *)b)->name);
}

/* Appends the canonical request's headers and signed-header list; names must be lower-case. */
static remex_err canon_headers(const struct sigv4_input *in, struct buf *canon, struct buf *signed_)
{
    struct sigv4_header h[SIGV4_MAX_HEADERS];
    remex_err rc = REMEX_OK;
    memcpy(h, in->headers, in->nheaders * sizeof(h[0]));
    qsort(h, in->nheaders, sizeof(h[0]), hdr_cmp);
    for (size_t i = 0; i < in->nheaders && rc == REMEX_OK; i++) {
        for (const char *p = h[i].name; *p; p++)
            if ((*p >= 'A' && *p <= 'Z') || *p == ':' || (unsigned char)*p <= ' ')
                return REMEX_EINVAL;
        rc = buf_printf(canon, "%s:%s\n", h[i].name, h[i].value);
        if (rc == REMEX_OK)
            rc = buf_printf(signed_, "%s%s", i ? ";" : "", h[i].name);
    }
    return rc;
}

static int hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int n = 32;
    return HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n) !=
           NULL;
}

/* The signing key: HMAC chain over date, region, service and "aws4_request". */
static int signing_key(const struct sigv4_creds *c, const struct sigv4_input *in,
                       unsigned char key[32])
{
    char k0[SIGV4_KEY_MAX + 8], day[9];
    unsigned char t[32];
    int ok;
    snprintf(k0, sizeof(k0), "AWS4%s", c->secret_key);
    memcpy(day, in->amz_date, 8);
    day[8] = '\0';
    ok = hmac(k0, strlen(k0), day, t) && hmac(t, 32, in->region, key) &&
         hmac(key, 32, in->service, t) && hmac(t, 32, "aws4_request", key);
    OPENSSL_cleanse(k0, sizeof(k0));
    OPENSSL_cleanse(t, sizeof(t));
    return ok;
}

remex_err sigv4_authorization(const struct sigv4_creds *c, const struct sigv4_input *in,
                              struct buf *out)
{
    struct buf canon = BUF_INIT(1u << 20), sh = BUF_INIT(4096), sts = BUF_INIT(4096);
    char chash[HASH_SHA256_HEX], sig[65], day[9];
    unsigned char key[32], mac[32];
    remex_err rc;

    if (in->nheaders > SIGV4_MAX_HEADERS || strlen(in->amz_date) != 16 || in->amz_date[8] != 'T')
        return REMEX_EINVAL;
    memcpy(day, in->amz_date, 8);
    day[8] = '\0';
    rc = buf_printf(&canon, "%s\n%s\n%s\n", in->method, in->path, in->query);
    if (rc == REMEX_OK)
        rc = canon_headers(in, &canon, &sh);
    if (rc == REMEX_OK)
        rc = buf_printf(&canon, "\n%s\n%s", buf_cstr(&sh), in->payload_hash);
    if (rc == REMEX_OK)
        rc = hash_sha256_hex(canon.data, canon.len, chash);
    if (rc == REMEX_OK)
        rc = buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", in->amz_date, day,
                        in->region, in->service, chash);
    if (rc == REMEX_OK && (!signing_key(c, in, key) || !hmac(key, 32, buf_cstr(&sts), mac)))
        rc = REMEX_ENOMEM;
    if (rc == REMEX_OK) {
        hash_hex(mac, 32, sig);
        rc = buf_printf(out,
                        "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, "
                        "SignedHeaders=%s, Signature=%s",
                        c->access_key, day, in->region, in->service, buf_cstr(&sh), sig);
    }
    OPENSSL_cleanse(key, sizeof(key));
    buf_free(&canon);
    buf_free(&sh);
    buf_free(&sts);
    return rc;
}

/* ---- credentials ---- */

static size_t trim(const char **s, size_t n)
{
    while (n && (**s == ' ' || **s == '\t')) {
        (*s)++;
        n--;
    }
    while (n && ((*s)[n - 1] == ' ' || (*s)[n - 1] == '\t' || (*s)[n - 1] == '\r'))
        n--;
    return n;
}

/* 1 when the section header line [p, p+n) names profile ("[x]" or "[profile x]"). */
static int section_is(const char *p, size_t n, const char *profile)
{
    size_t pl = strlen(profile);
    p++;
    n -= 2;
    n = trim(&p, n);
    if (n > 8 && memcmp(p, "profile ", 8) == 0) {
        p += 8;
        n = trim(&p, n - 8);
    }
    return n == pl && memcmp(p, profile, pl) == 0;
}

static int set_field(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, v, n);
    dst[n] = '\0';
    return 0;
}

/* One "key = value" line inside the chosen section. */
static remex_err creds_line(const char *p, size_t n, struct sigv4_creds *out, int line,
                            struct remex_error *e)
{
    const char *eq = memchr(p, '=', n), *k = p, *v;
    size_t kn, vn;
    int bad = 0;
    if (eq == NULL)
        return remex_seterr(e, REMEX_EPARSE, "credentials file:%d: expected key = value", line);
    kn = trim(&k, (size_t)(eq - p));
    v = eq + 1;
    vn = trim(&v, n - (size_t)(eq - p) - 1);
#define IS(name) (kn == sizeof(name) - 1 && memcmp(k, name, kn) == 0)
    if (IS("aws_access_key_id"))
        bad = set_field(out->access_key, sizeof(out->access_key), v, vn);
    else if (IS("aws_secret_access_key"))
        bad = set_field(out->secret_key, sizeof(out->secret_key), v, vn);
    else if (IS("aws_session_token"))
        bad = set_field(out->session_token, sizeof(out->session_token), v, vn);
#undef IS
    if (bad)
        return remex_seterr(e, REMEX_ETOOBIG, "credentials file:%d: value too long", line);
    return REMEX_OK;
}

remex_err sigv4_creds_parse(const char *text, size_t len, const char *profile,
                            struct sigv4_creds *out, struct remex_error *e)
{
    int in_section = 0, found = 0, line = 0;
    remex_err rc = REMEX_OK;
    if (len > SIGV4_CREDS_FILE_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "credentials file: larger than %u bytes",
                            SIGV4_CREDS_FILE_MAX);
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < len && rc == REMEX_OK;) {
        const char *nl = memchr(text + i, '\n', len - i), *p = text + i;
        size_t n = nl ? (size_t)(nl - p) : len - i;
        i += n + 1;
        line++;
        n = trim(&p, n);
        if (n == 0 || p[0] == '#' || p[0] == ';')
            continue;
        if (memchr(p, '\0', n) != NULL)
            rc = remex_seterr(e, REMEX_EPARSE, "credentials file:%d: NUL byte", line);
        else if (p[0] == '[') {
            if (n < 3 || p[n - 1] != ']')
                rc = remex_seterr(e, REMEX_EPARSE, "credentials file:%d: bad section", line);
            else if ((in_section = section_is(p, n, profile)) != 0)
                found = 1;
        } else if (in_section) {
            rc = creds_line(p, n, out, line, e);
        }
    }
    if (rc == REMEX_OK && (!found || !out->access_key[0] || !out->secret_key[0]))
        rc =
            remex_seterr(e, REMEX_ENOTFOUND, "credentials file: profile '%s' has no keys", profile);
    if (rc != REMEX_OK)
        sigv4_creds_wipe(out);
    return rc;
}

/* Reads at most SIGV4_CREDS_FILE_MAX + 1 bytes of path into b. */
static remex_err read_capped(const char *path, struct buf *b, struct remex_error *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char chunk[4096];
    ssize_t r;
    if (fd < 0)
        return errno == ENOENT ? remex_seterr(e, REMEX_ENOTFOUND, "%s: not found", path)
                               : remex_errno(e, REMEX_EIO, "%s", path);
    while ((r = read(fd, chunk, sizeof(chunk))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || buf_append(b, chunk, (size_t)r) != REMEX_OK) {
            remex_err rc = r < 0 ? remex_errno(e, REMEX_EIO, "%s", path)
                                 : remex_seterr(e, REMEX_ETOOBIG, "%s: larger than %u bytes", path,
                                                SIGV4_CREDS_FILE_MAX);
            close(fd);
            return rc;
        }
    }
    close(fd);
    return REMEX_OK;
}

static const char *env_or(const char *(*g)(const char *), const char *name)
{
    const char *v = g(name);
    return v && *v ? v : NULL;
}

static const char *std_getenv(const char *n)
{
    return getenv(n);
}

remex_err sigv4_creds_load(const char *profile, const char *file,
                           const char *(*getenv_fn)(const char *), struct sigv4_creds *out,
                           struct remex_error *e)
{
    const char *(*g)(const char *) = getenv_fn ? getenv_fn : std_getenv;
    const char *ak = env_or(g, "AWS_ACCESS_KEY_ID"), *sk = env_or(g, "AWS_SECRET_ACCESS_KEY");
    const char *tok = env_or(g, "AWS_SESSION_TOKEN"), *home = env_or(g, "HOME");
    char path[4096];
    remex_err rc;
    memset(out, 0, sizeof(*out));
    if (ak && sk && !profile) {
        if (set_field(out->access_key, sizeof(out->access_key), ak, strlen(ak)) ||
            set_field(out->secret_key, sizeof(out->secret_key), sk, strlen(sk)) ||
            (tok && set_field(out->session_token, sizeof(out->session_token), tok, strlen(tok)))) {
            sigv4_creds_wipe(out);
            return remex_seterr(e, REMEX_ETOOBIG, "AWS credentials in the environment: too long");
        }
        return REMEX_OK;
    }
    if (!file)
        file = env_or(g, "AWS_SHARED_CREDENTIALS_FILE");
    if (!file && home)
        snprintf(path, sizeof(path), "%s/.aws/credentials", home), file = path;
    if (!profile)
        profile = env_or(g, "AWS_PROFILE");
    if (!profile)
        profile = "default";
    if (!file)
        return remex_seterr(e, REMEX_ENOTFOUND, "no AWS credentials (environment or file)");
    struct buf b = BUF_INIT(SIGV4_CREDS_FILE_MAX + 1);
    rc = read_capped(file, &b, e);
    if (rc == REMEX_OK)
        rc = sigv4_creds_parse(b.data ? b.data : "", b.len, profile, out, e);
    if (rc != REMEX_OK && rc != REMEX_ENOTFOUND)
        remex_errprefix(e, "AWS credentials");
    else if (rc == REMEX_ENOTFOUND)
        remex_seterr(e, rc, "no AWS credentials: not in the environment nor in %s [%s]", file,
                     profile);
    if (b.data)
        OPENSSL_cleanse(b.data, b.len);
    buf_free(&b);
    return rc;
}
