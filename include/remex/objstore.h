/*
 * objstore: where XCom values and task logs live on the agent's side.
 *
 * A store is opened from a URL. Backends: `file:///abs/dir` (or a plain
 * absolute path) stores each object as a file under that folder;
 * `s3://bucket[/prefix]` stores objects in S3 or an S3-compatible server
 * (remex/objstore_s3.h), `az://account/container[/prefix]` in Azure Blob
 * Storage (remex/objstore_azure.h), `gs://bucket[/prefix]` in Google Cloud
 * Storage (remex/objstore_gcs.h); remote stores do blocking HTTP: never call
 * them from an event loop. Other schemes are refused with REMEX_EUNSUPPORTED.
 *
 * Keys are relative paths of 1..1024 bytes from [A-Za-z0-9._=/:+@,-], with no
 * empty, "." or ".." segment and no leading '/'. Writes are atomic (temp file,
 * fsync, rename): a reader sees the old object or the new one, never a mix.
 * Every object has a reference: its URI, size and checksum ("sha256:<hex>").
 * Reading by URI refuses URIs outside the store, so a reference that came from
 * the plane can never make the agent read an arbitrary file.
 */
#ifndef REMEX_OBJSTORE_H
#define REMEX_OBJSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "remex/buf.h"
#include "remex/err.h"

#define OBJSTORE_KEY_MAX 1024
#define OBJSTORE_URI_MAX 4096

struct objstore;

struct objstore_ref {
    char uri[OBJSTORE_URI_MAX];
    uint64_t size;
    char checksum[72]; /* "sha256:" + 64 hex digits */
};

/* Backend settings beside the URL; every field may be NULL / 0 (defaults). Borrowed. */
struct objstore_opts {
    const char *endpoint;         /* S3: "https://minio.internal:9000"; Azure: blob endpoint */
    const char *region;           /* S3: "eu-west-1" */
    int path_style;               /* S3: 1 path style, 0 virtual host, -1 (default) automatic */
    const char *profile;          /* S3: shared credentials profile */
    const char *credentials_file; /* S3: shared credentials file */
    const char *azure_key;        /* Azure: storage account key (base64; secret, borrowed) */
    const char *gcp_key_file;     /* GCS: service-account key file */
    const char *token_uri;        /* GCS: OAuth token endpoint (NULL: the key's) */
    const char *ca_file;          /* remote stores: CA bundle (NULL: system store) */
    const char *(*getenv_fn)(const char *); /* NULL: getenv */
};

/* Opens url with default settings (objstore_open_opts with NULL opts). */
remex_err objstore_open(const char *url, struct objstore **out, struct remex_error *e);
remex_err objstore_open_opts(const char *url, const struct objstore_opts *opts,
                             struct objstore **out, struct remex_error *e);
/* 1 when reads and writes of s do network I/O (keep them off event loops). */
int objstore_is_remote(const struct objstore *s);
void objstore_close(struct objstore *s);

/* REMEX_EINVAL (with the reason) for an invalid key. */
remex_err objstore_check_key(const char *key, struct remex_error *e);

/* Stores data under key (replacing it); ref (may be NULL) receives its reference. */
remex_err objstore_put(struct objstore *s, const char *key, const void *data, size_t len,
                       struct objstore_ref *ref, struct remex_error *e);
/*
 * Appends the object to out (whose cap bounds it: REMEX_ETOOBIG). ENOTFOUND if
 * absent. On any error out is left as it was.
 */
remex_err objstore_get(struct objstore *s, const char *key, struct buf *out, struct remex_error *e);
/*
 * Reads the object a reference points to. The URI must belong to this store;
 * when checksum is not NULL the content must match it (REMEX_EPROTO otherwise).
 */
remex_err objstore_get_uri(struct objstore *s, const char *uri, const char *checksum,
                           struct buf *out, struct remex_error *e);
remex_err objstore_stat(struct objstore *s, const char *key, struct objstore_ref *ref,
                        struct remex_error *e);
remex_err objstore_delete(struct objstore *s, const char *key, struct remex_error *e);

/* The URI the object under key has (or will have) in s: no I/O, any thread. */
void objstore_uri(const struct objstore *s, const char *key, char *out, size_t cap);

/* "sha256:<hex>" of data into out (at least 72 bytes). */
void objstore_checksum(const void *data, size_t len, char out[72]);

/*
 * Looks for an object: with exact, the object key itself; otherwise the first
 * object (in key order) whose key starts with key. Its key goes to found (cap
 * bytes). REMEX_ENOTFOUND when there is none. Remote stores list with a page
 * size of one (S3 ListObjectsV2, Azure List Blobs, GCS objects.list): one
 * small request, whatever the object's size. The file store looks in one
 * folder (key's folder; an object in a subfolder of a prefix is not seen).
 * A key is checked as objstore_check_key does, a prefix too once a trailing
 * '/' is dropped (REMEX_EINVAL).
 */
remex_err objstore_find(struct objstore *s, const char *key, int exact, char *found, size_t cap,
                        struct remex_error *e);

#endif
