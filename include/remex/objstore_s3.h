/*
 * objstore_s3: the S3 (and S3-compatible) backend of objstore.
 *
 * A store is "s3://BUCKET[/PREFIX]". Requests are signed with SigV4
 * (remex/sigv4.h) over lib http (blocking: call it off any event loop).
 * Endpoint: opts->endpoint ("http://127.0.0.1:9000"), else AWS_ENDPOINT_URL_S3,
 * else AWS_ENDPOINT_URL, else https://s3.REGION.amazonaws.com. Region:
 * opts->region, else AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1.
 * Path style ("/BUCKET/KEY" on the endpoint) when opts->path_style or a
 * custom endpoint is given without path_style = 0; virtual-host style
 * ("BUCKET.HOST/KEY") otherwise. Credentials: sigv4_creds_load with
 * opts->profile / opts->credentials_file, loaded once at open.
 *
 * Error replies are S3's XML <Error><Code/><Message/></Error>; their code and
 * message (printable ASCII, truncated) name the failure: 403 → REMEX_EFORBIDDEN
 * ("SignatureDoesNotMatch", "AccessDenied", ...), 404 → REMEX_ENOTFOUND
 * ("NoSuchKey", "NoSuchBucket"), others as lib http maps them.
 * Thread-safety: one thread at a time per store.
 */
#ifndef REMEX_OBJSTORE_S3_H
#define REMEX_OBJSTORE_S3_H

#include <stddef.h>
#include <stdint.h>

#include "remex/buf.h"
#include "remex/err.h"
#include "remex/http.h"
#include "remex/objstore.h"

#define OBJSTORE_S3_ERROR_MAX (64u * 1024u) /* error bodies looked at, at most */

struct objstore_s3;

/* url is "s3://..."; opts borrowed for the call. */
remex_err objstore_s3_open(const char *url, const struct objstore_opts *opts,
                           struct objstore_s3 **out, struct remex_error *e);
void objstore_s3_close(struct objstore_s3 *s);

/* As objstore_put/get/delete; keys already checked by the caller. */
remex_err objstore_s3_put(struct objstore_s3 *s, const char *key, const void *data, size_t len,
                          struct remex_error *e);
remex_err objstore_s3_get(struct objstore_s3 *s, const char *key, struct buf *out,
                          struct remex_error *e);
remex_err objstore_s3_delete(struct objstore_s3 *s, const char *key, struct remex_error *e);
/*
 * Streams fd[0, size) into key (see objstore_put_file); sum receives
 * "sha256:<hex>" of what was sent.
 */
remex_err objstore_s3_put_file(struct objstore_s3 *s, const char *key, int fd, uint64_t size,
                               char sum[72], struct remex_error *e);
/* GET of key with its body streamed to sink (remex/http.h). */
remex_err objstore_s3_get_stream(struct objstore_s3 *s, const char *key,
                                 const struct http_stream *sink, struct remex_error *e);
/* "s3://BUCKET/PREFIX/" (or "s3://BUCKET/") into out. */
void objstore_s3_uri_base(const struct objstore_s3 *s, char *out, size_t cap);

/*
 * Extracts the <Code> and <Message> of an S3 XML error body (borrowed; only
 * its first OBJSTORE_S3_ERROR_MAX bytes are looked at). Each output holds
 * printable ASCII only, NUL-terminated and truncated to its cap; "" when absent.
 * Returns 1 when a code was found.
 */
int objstore_s3_parse_error(const char *body, size_t len, char *code, size_t code_cap, char *msg,
                            size_t msg_cap);

#define OBJSTORE_LIST_REPLY_MAX (64u * 1024u) /* listing replies looked at, at most */

/* The text of the first <tag>...</tag> of an XML body into out (printable
 * ASCII kept, truncated to cap - 1; tag at most 24 bytes), looking at the
 * first OBJSTORE_LIST_REPLY_MAX bytes: 1 when found and not empty, else 0
 * (out ""). Used for S3 and Azure listings. */
int objstore_s3_xml_first(const char *body, size_t len, const char *tag, char *out, size_t cap);

/* The first key (store prefix removed) that starts with prefix, into found;
 * REMEX_ENOTFOUND when none (ListObjectsV2, max-keys=1). */
remex_err objstore_s3_first(struct objstore_s3 *s, const char *prefix, char *found, size_t cap,
                            struct remex_error *e);

#endif
