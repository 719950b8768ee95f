/*
 * objstore_http: the pieces the remote object-store backends (S3, Azure Blob,
 * GCS) share: XML error replies, a file range as a streamed request body, a
 * file as a streamed response body with its digests, and the digests of a
 * file range.
 *
 * Streams keep memory bounded whatever the object size: a source reads the
 * file with pread (so a retried attempt restarts from the range's start) and
 * a sink writes each received chunk to a temporary file beside the target,
 * renamed over it only once the transfer is complete and verified.
 * Thread-safety: each struct belongs to one thread at a time.
 */
#ifndef REMEX_OBJSTORE_HTTP_H
#define REMEX_OBJSTORE_HTTP_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "remex/err.h"
#include "remex/http.h"

#define OBJSTORE_HTTP_ERROR_MAX (64u * 1024u) /* error bodies looked at, at most */

/*
 * Copies the text between <tag> and </tag> in body[0..len) (only the first
 * OBJSTORE_HTTP_ERROR_MAX bytes) into out: printable ASCII only,
 * NUL-terminated, truncated to cap. Returns 1 when a non-empty value was found.
 */
int objstore_http_xml_field(const char *body, size_t len, const char *tag, char *out, size_t cap);

/*
 * Maps the reply of "<svc> <what> <name>" to a remex error: REMEX_OK for 2xx;
 * otherwise as http_check_status, with the service's XML <Code> and <Message>
 * (request ids dropped) in the message. When is_sig (may be NULL) says the
 * code is a signature failure, the message says so and names hint instead.
 */
remex_err objstore_http_status(const char *svc, const char *what, const char *name,
                               const struct http_response *r,
                               int (*is_sig)(const char *code, const char *msg), const char *hint,
                               struct remex_error *e);

/*
 * The end of a buffered call whose result is rc and reply r: when out is not
 * NULL and rc is REMEX_OK, the body of r is appended to out (REMEX_ETOOBIG and
 * REMEX_ENOMEM name key). r is freed in every case. Returns the result.
 */
remex_err objstore_http_done(remex_err rc, struct http_response *r, const char *key,
                             struct buf *out, struct remex_error *e);

/*
 * The HTTP client of a remote store backend on base (replies capped at
 * max_response bytes; ca_file NULL: system store): every backend retries 4
 * times and waits 120 s for a call.
 */
remex_err objstore_http_client(const char *base, size_t max_response, const char *ca_file,
                               struct http_client **out, struct remex_error *e);

/*
 * The end of a find: name, the first object of a listing (NULL: none), is a
 * hit when it starts with the store's prefix and then prefix; found takes it
 * without the store's prefix. Else REMEX_ENOTFOUND "object store: <prefix>: no
 * object".
 */
remex_err objstore_http_found(const char *name, const char *store_prefix, const char *prefix,
                              char *found, size_t cap, struct remex_error *e);

/* Digests of a byte range. */
struct objstore_digest {
    char sha256_hex[65];
    unsigned char sha256[32];
    unsigned char md5[16];
};

/*
 * Reads fd[off, off+len) once and fills d; also feeds whole and whole_md5
 * (each may be NULL: EVP_MD_CTX for SHA-256 / MD5 of the whole object, parts
 * fed in order).
 * REMEX_EIO when the file is shorter than the range.
 */
remex_err objstore_digest_range(int fd, uint64_t off, uint64_t len, void *whole, void *whole_md5,
                                struct objstore_digest *d, struct remex_error *e);

/* A file range as a request body: st is ready to be put in an http_request. */
struct objstore_src {
    int fd; /* borrowed */
    uint64_t off, len, pos;
    struct http_stream st;
};

void objstore_src_init(struct objstore_src *s, int fd, uint64_t off, uint64_t len);

/* A response body streamed to a file, with its digests and the headers that describe it. */
struct objstore_sink {
    int fd;
    char tmp[PATH_MAX];
    char path[PATH_MAX];
    uint64_t n;
    void *sha, *md5;      /* EVP_MD_CTX, owned */
    char etag[80];        /* ETag (quotes removed) of the last attempt, or "" */
    char content_md5[48]; /* Content-MD5 (base64) or x-goog-hash md5=, or "" */
    struct http_stream st;
};

/*
 * Creates path's temporary file (mode 0600). On error nothing is left behind.
 * path NULL: no file; the body is only measured and checked.
 */
remex_err objstore_sink_open(struct objstore_sink *k, const char *path, struct remex_error *e);

/*
 * Ends the transfer whose outcome was rc. With REMEX_OK: the body must match
 * want ("sha256:<hex>", may be NULL) and what the store said of it (an ETag
 * of 32 hex digits is the MD5 of a single-part object; Content-MD5), else
 * REMEX_EPROTO; then the file is synced and renamed to path, and sum (72
 * bytes) and *size receive its checksum and size. On any error the temporary
 * file is removed and rc (or the verification error) returned.
 */
remex_err objstore_sink_finish(struct objstore_sink *k, remex_err rc, const char *want,
                               char sum[72], uint64_t *size, struct remex_error *e);

/* "sha256:" + hex of the whole-object context whole (consumed) into sum. */
void objstore_digest_final(void *whole, char sum[72]);
/* A new SHA-256 context for objstore_digest_range's whole (NULL when out of memory). */
void *objstore_digest_new(void);
void objstore_digest_free(void *whole);

#endif
