/*
 * objstore_gcs: the Google Cloud Storage backend of objstore (JSON API).
 *
 * A store is "gs://BUCKET[/PREFIX]". Requests carry an OAuth access token of
 * a service account (remex/gcpauth.h; key file opts->gcp_key_file, else
 * GOOGLE_APPLICATION_CREDENTIALS). Endpoint: opts->endpoint, else
 * STORAGE_EMULATOR_HOST, else https://storage.googleapis.com; opts->token_uri
 * overrides the key's token_uri. Upload: POST /upload/storage/v1/b/B/o
 * ?uploadType=media&name=KEY; download: GET /storage/v1/b/B/o/KEY?alt=media;
 * delete: DELETE /storage/v1/b/B/o/KEY. Blocking HTTP: call it off any event
 * loop. 404 → REMEX_ENOTFOUND, 401/403 with Google's message. Thread-safety:
 * one thread at a time per store.
 */
#ifndef REMEX_OBJSTORE_GCS_H
#define REMEX_OBJSTORE_GCS_H

#include <stddef.h>
#include <stdint.h>

#include "remex/buf.h"
#include "remex/err.h"
#include "remex/http.h"
#include "remex/objstore.h"

struct objstore_gcs;

remex_err objstore_gcs_open(const char *url, const struct objstore_opts *opts,
                            struct objstore_gcs **out, struct remex_error *e);
void objstore_gcs_close(struct objstore_gcs *s);
remex_err objstore_gcs_put(struct objstore_gcs *s, const char *key, const void *data, size_t len,
                           struct remex_error *e);
remex_err objstore_gcs_get(struct objstore_gcs *s, const char *key, struct buf *out,
                           struct remex_error *e);
remex_err objstore_gcs_delete(struct objstore_gcs *s, const char *key, struct remex_error *e);
/*
 * Streams fd[0, size) into key with a media upload (see objstore_put_file);
 * the reply's md5Hash must match what was sent. sum receives "sha256:<hex>".
 */
remex_err objstore_gcs_put_file(struct objstore_gcs *s, const char *key, int fd, uint64_t size,
                                char sum[72], struct remex_error *e);
/* GET ?alt=media of key with its body streamed to sink (x-goog-hash md5 checked by the sink). */
remex_err objstore_gcs_get_stream(struct objstore_gcs *s, const char *key,
                                  const struct http_stream *sink, struct remex_error *e);
#define OBJSTORE_GCS_LIST_MAX (64u * 1024u) /* an objects.list reply, at most */

/* The first object name of an objects.list reply ({"items": [{"name"}]}) into
 * out: 1 found (it fits in cap), 0 none (no items, or a name too long), -1 not
 * a listing (not JSON, not an object, items not an array, over the cap). */
int objstore_gcs_list_first(const char *body, size_t len, char *out, size_t cap);
/* The first object name (store prefix removed) that starts with prefix, into
 * found; REMEX_ENOTFOUND when none (objects.list, maxResults=1). */
remex_err objstore_gcs_first(struct objstore_gcs *s, const char *prefix, char *found, size_t cap,
                             struct remex_error *e);
/* "gs://BUCKET/PREFIX/" into out. */
void objstore_gcs_uri_base(const struct objstore_gcs *s, char *out, size_t cap);

#endif
