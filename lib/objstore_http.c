/* objstore_http: shared request/response pieces of the remote object-store backends. */
#include "remex/objstore_http.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "remex/fsutil.h"
#include "remex/hash.h"

#define DIGEST_CHUNK (256u * 1024u)

int objstore_http_xml_field(const char *body, size_t len, const char *tag, char *out, size_t cap)
{
    char open_[40], close_[40];
    size_t ol, cl, n = 0;
    const char *p, *q;
    if (cap == 0)
        return 0;
    out[0] = '\0';
    if (!body || strlen(tag) > 32)
        return 0;
    if (len > OBJSTORE_HTTP_ERROR_MAX)
        len = OBJSTORE_HTTP_ERROR_MAX;
    ol = (size_t)snprintf(open_, sizeof(open_), "<%s>", tag);
    cl = (size_t)snprintf(close_, sizeof(close_), "</%s>", tag);
    p = memmem(body, len, open_, ol);
    if (!p)
        return 0;
    p += ol;
    q = memmem(p, len - (size_t)(p - body), close_, cl);
    if (!q)
        return 0;
    for (; p < q && n + 1 < cap; p++)
        if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f)
            out[n++] = *p;
    out[n] = '\0';
    return n > 0;
}

remex_err objstore_http_status(const char *svc, const char *what, const char *name,
                               const struct http_response *r,
                               int (*is_sig)(const char *code, const char *msg), const char *hint,
                               struct remex_error *e)
{
    char code[64], msg[200], *rid;
    remex_err rc = http_check_status(what, r->status, NULL, NULL);
    const char *body = r->body.data ? r->body.data : "";
    if (rc == REMEX_OK)
        return REMEX_OK;
    if (!objstore_http_xml_field(body, r->body.len, "Code", code, sizeof(code)))
        return remex_seterr(e, rc, "%s %s %s: HTTP %ld", svc, what, name, r->status);
    objstore_http_xml_field(body, r->body.len, "Message", msg, sizeof(msg));
    if ((rid = strstr(msg, "RequestId:")) != NULL) /* Azure appends request ids: kept out */
        *rid = '\0';
    if (is_sig && is_sig(code, msg))
        return remex_seterr(e, rc, "%s %s %s: HTTP %ld %s: %s", svc, what, name, r->status, code,
                            hint);
    return remex_seterr(e, rc, "%s %s %s: HTTP %ld %s: %s", svc, what, name, r->status, code, msg);
}

remex_err objstore_http_done(remex_err rc, struct http_response *r, const char *key,
                             struct buf *out, struct remex_error *e)
{
    if (out != NULL && rc == REMEX_OK &&
        (rc = buf_append(out, r->body.data ? r->body.data : "", r->body.len)) == REMEX_ETOOBIG)
        remex_seterr(e, rc, "object store: %s: larger than %zu bytes", key, out->max);
    else if (out != NULL && rc == REMEX_ENOMEM)
        remex_seterr(e, rc, "object store: %s: out of memory", key);
    http_response_free(r);
    return rc;
}

remex_err objstore_http_client(const char *base, size_t max_response, const char *ca_file,
                               struct http_client **out, struct remex_error *e)
{
    struct http_client_opts ho = {.base_url = base,
                                  .max_response_bytes = max_response,
                                  .ca_file = ca_file,
                                  .max_attempts = 4,
                                  .timeout_ms = 120000};
    return http_client_new(&ho, out, e);
}

remex_err objstore_http_found(const char *name, const char *store_prefix, const char *prefix,
                              char *found, size_t cap, struct remex_error *e)
{
    size_t pl = strlen(store_prefix);
    if (name == NULL || strncmp(name, store_prefix, pl) != 0 ||
        strncmp(name + pl, prefix, strlen(prefix)) != 0)
        return remex_seterr(e, REMEX_ENOTFOUND, "object store: %s: no object", prefix);
    snprintf(found, cap, "%s", name + pl);
    return REMEX_OK;
}

/* ---- digests ---- */

void *objstore_digest_new(void)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        c = NULL;
    }
    return c;
}

void objstore_digest_free(void *whole)
{
    EVP_MD_CTX_free(whole);
}

void objstore_digest_final(void *whole, char sum[72])
{
    unsigned char md[32];
    unsigned int n = sizeof(md);
    memcpy(sum, "sha256:", 7);
    if (EVP_DigestFinal_ex(whole, md, &n) != 1) {
        sum[0] = '\0';
        return;
    }
    hash_hex(md, 32, sum + 7);
}

remex_err objstore_digest_range(int fd, uint64_t off, uint64_t len, void *whole, void *whole_md5,
                                struct objstore_digest *d, struct remex_error *e)
{
    EVP_MD_CTX *sha = EVP_MD_CTX_new(), *md5 = EVP_MD_CTX_new();
    unsigned char *chunk = malloc(DIGEST_CHUNK);
    unsigned int n;
    uint64_t done = 0;
    remex_err rc = REMEX_OK;
    if (!sha || !md5 || !chunk || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1 ||
        EVP_DigestInit_ex(md5, EVP_md5(), NULL) != 1)
        rc = remex_seterr(e, REMEX_ENOMEM, "digest: out of memory");
    while (rc == REMEX_OK && done < len) {
        size_t want = len - done < DIGEST_CHUNK ? (size_t)(len - done) : DIGEST_CHUNK;
        ssize_t r = pread(fd, chunk, want, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = remex_errno(e, REMEX_EIO, "read");
        else if (r == 0)
            rc = remex_seterr(e, REMEX_EIO, "the file shrank while being read");
        else {
            EVP_DigestUpdate(sha, chunk, (size_t)r);
            EVP_DigestUpdate(md5, chunk, (size_t)r);
            if (whole)
                EVP_DigestUpdate(whole, chunk, (size_t)r);
            if (whole_md5)
                EVP_DigestUpdate(whole_md5, chunk, (size_t)r);
            done += (uint64_t)r;
        }
    }
    if (rc == REMEX_OK) {
        n = 32;
        EVP_DigestFinal_ex(sha, d->sha256, &n);
        n = 16;
        EVP_DigestFinal_ex(md5, d->md5, &n);
        hash_hex(d->sha256, 32, d->sha256_hex);
    }
    free(chunk);
    EVP_MD_CTX_free(sha);
    EVP_MD_CTX_free(md5);
    return rc;
}

/* ---- source: a file range ---- */

static size_t src_read(void *dst, size_t cap, void *ud)
{
    struct objstore_src *s = ud;
    size_t want = s->len - s->pos < cap ? (size_t)(s->len - s->pos) : cap;
    ssize_t r;
    if (want == 0)
        return 0;
    do
        r = pread(s->fd, dst, want, (off_t)(s->off + s->pos));
    while (r < 0 && errno == EINTR);
    if (r <= 0)
        return HTTP_STREAM_ABORT; /* an error, or the file shrank under us */
    s->pos += (uint64_t)r;
    return (size_t)r;
}

static int src_reset(void *ud)
{
    ((struct objstore_src *)ud)->pos = 0;
    return 0;
}

void objstore_src_init(struct objstore_src *s, int fd, uint64_t off, uint64_t len)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->off = off;
    s->len = len;
    s->st.read = src_read;
    s->st.upload_len = len;
    s->st.reset = src_reset;
    s->st.ud = s;
}

/* ---- sink: a file ---- */

static int sink_write(const void *p, size_t n, void *ud)
{
    struct objstore_sink *k = ud;
    if (k->fd >= 0 && fsutil_write_all(k->fd, p, n) != 0)
        return -1;
    EVP_DigestUpdate(k->sha, p, n);
    EVP_DigestUpdate(k->md5, p, n);
    k->n += n;
    return 0;
}

static int sink_reset(void *ud)
{
    struct objstore_sink *k = ud;
    k->n = 0;
    k->etag[0] = k->content_md5[0] = '\0';
    if (k->fd >= 0 && (ftruncate(k->fd, 0) != 0 || lseek(k->fd, 0, SEEK_SET) != 0))
        return -1;
    return EVP_DigestInit_ex(k->sha, EVP_sha256(), NULL) == 1 &&
                   EVP_DigestInit_ex(k->md5, EVP_md5(), NULL) == 1
               ? 0
               : -1;
}

/* Copies header value v[0..n) without quotes and spaces, printable only. */
static void header_value(const char *v, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++)
        if (v[i] > 0x20 && v[i] < 0x7f && v[i] != '"')
            out[k++] = v[i];
    out[k] = '\0';
}

static void sink_header(const char *line, size_t n, void *ud)
{
    struct objstore_sink *k = ud;
    const char *v;
    if (n > 5 && strncasecmp(line, "ETag:", 5) == 0) {
        header_value(line + 5, n - 5, k->etag, sizeof(k->etag));
    } else if (n > 12 && strncasecmp(line, "Content-MD5:", 12) == 0) {
        header_value(line + 12, n - 12, k->content_md5, sizeof(k->content_md5));
    } else if (n > 12 && strncasecmp(line, "x-goog-hash:", 12) == 0 &&
               (v = memmem(line, n, "md5=", 4)) != NULL) {
        size_t l = (size_t)(line + n - v - 4);
        const char *comma = memchr(v, ',', l + 4);
        header_value(v + 4, comma ? (size_t)(comma - v - 4) : l, k->content_md5,
                     sizeof(k->content_md5));
    }
}

remex_err objstore_sink_open(struct objstore_sink *k, const char *path, struct remex_error *e)
{
    memset(k, 0, sizeof(*k));
    k->fd = -1;
    if (path && (snprintf(k->path, sizeof(k->path), "%s", path) >= (int)sizeof(k->path) ||
                 snprintf(k->tmp, sizeof(k->tmp), "%s.part.%ld", path, (long)getpid()) >=
                     (int)sizeof(k->tmp)))
        return remex_seterr(e, REMEX_ETOOBIG, "%s: path too long", path);
    k->sha = EVP_MD_CTX_new();
    k->md5 = EVP_MD_CTX_new();
    if (!k->sha || !k->md5) {
        EVP_MD_CTX_free(k->sha);
        EVP_MD_CTX_free(k->md5);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    if (path)
        k->fd = open(k->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (path && k->fd < 0) {
        EVP_MD_CTX_free(k->sha);
        EVP_MD_CTX_free(k->md5);
        return remex_errno(e, REMEX_EIO, "%s", k->tmp);
    }
    k->st.write = sink_write;
    k->st.header = sink_header;
    k->st.reset = sink_reset;
    k->st.ud = k;
    if (sink_reset(k) != 0) {
        objstore_sink_finish(k, REMEX_ENOMEM, NULL, NULL, NULL, NULL);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    return REMEX_OK;
}

/* 1 when the store's own description of the body (ETag, Content-MD5) contradicts md5. */
static int md5_mismatch(const struct objstore_sink *k, const unsigned char md5[16])
{
    char hex[33];
    unsigned char b64[32];
    hash_hex(md5, 16, hex);
    if (strlen(k->etag) == 32 && strspn(k->etag, "0123456789abcdefABCDEF") == 32 &&
        strcasecmp(k->etag, hex) != 0)
        return 1;
    EVP_EncodeBlock(b64, md5, 16);
    return k->content_md5[0] && strcmp(k->content_md5, (const char *)b64) != 0;
}

remex_err objstore_sink_finish(struct objstore_sink *k, remex_err rc, const char *want,
                               char sum[72], uint64_t *size, struct remex_error *e)
{
    unsigned char sha[32], md5[16];
    unsigned int n = 32;
    char got[72];
    if (rc == REMEX_OK) {
        memcpy(got, "sha256:", 7);
        EVP_DigestFinal_ex(k->sha, sha, &n);
        n = 16;
        EVP_DigestFinal_ex(k->md5, md5, &n);
        hash_hex(sha, 32, got + 7);
        if (want && strcmp(want, got) != 0)
            rc = remex_seterr(e, REMEX_EPROTO, "checksum mismatch: expected %s, got %s", want, got);
        else if (md5_mismatch(k, md5))
            rc = remex_seterr(e, REMEX_EPROTO,
                              "the body does not match the MD5 the store reports for it");
        else if (k->fd >= 0 && fsync(k->fd) != 0)
            rc = remex_errno(e, REMEX_EIO, "%s", k->tmp);
    }
    if (k->fd >= 0) {
        close(k->fd);
        k->fd = -1;
        if (rc == REMEX_OK && rename(k->tmp, k->path) != 0)
            rc = remex_errno(e, REMEX_EIO, "%s", k->path);
        if (rc != REMEX_OK)
            unlink(k->tmp);
    }
    if (rc == REMEX_OK) {
        if (sum)
            memcpy(sum, got, 72);
        if (size)
            *size = k->n;
    }
    EVP_MD_CTX_free(k->sha);
    EVP_MD_CTX_free(k->md5);
    k->sha = k->md5 = NULL;
    return rc;
}
