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
    const char *azure_sas;       /* Azure: SAS token ("sv=...&sig=..."; secret, borrowed) */
    const char *azure_sas_file;  /* Azure: file holding the SAS token (read at open) */
    const char *azure_tenant_id; /* Azure bearer: Entra ID tenant (AZURE_TENANT_ID) */
    const char *azure_client_id; /* Azure bearer: client id (AZURE_CLIENT_ID) */
    const char *azure_federated_token_file; /* AZURE_FEDERATED_TOKEN_FILE */
    const char *azure_authority;  /* AZURE_AUTHORITY_HOST, else https://login.microsoftonline.com */
    uint64_t multipart_threshold; /* S3 / Azure: 0 = OBJSTORE_MULTIPART_THRESHOLD */
    uint64_t part_size;           /* S3 / Azure: 0 = OBJSTORE_PART_SIZE; min OBJSTORE_PART_MIN */
};

/* Objects of at least the threshold go up in parts (S3 multipart, Azure blocks). */
#define OBJSTORE_MULTIPART_THRESHOLD (64ull << 20)
#define OBJSTORE_PART_SIZE           (16ull << 20)
#define OBJSTORE_PART_MIN            (5ull << 20)

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

/*
 * Streams the regular file at path into key, in bounded memory whatever its
 * size: the length is taken when the call starts (bytes appended later are
 * not sent) and SHA-256 is computed while reading. Remote stores verify what
 * they received (S3: signed SHA-256 and Content-MD5 per request, part ETags;
 * Azure: the service's Content-MD5; GCS: the reply's md5Hash); a retried
 * request re-reads the file. Objects of multipart_threshold bytes or more go
 * up in parts (S3 multipart upload, aborted on failure; Azure Put Block +
 * Put Block List). ref (may be NULL) receives the reference.
 */
remex_err objstore_put_file(struct objstore *s, const char *key, const char *path,
                            struct objstore_ref *ref, struct remex_error *e);
/*
 * Streams the object into the file path (written beside it, renamed over it
 * only when complete), in bounded memory. checksum (may be NULL) must match
 * ("sha256:<hex>"), and so must the MD5 the store reports (S3 single-part
 * ETag, Azure Content-MD5, GCS x-goog-hash): REMEX_EPROTO otherwise, and
 * path is left untouched. ref (may be NULL) receives the reference. path
 * NULL: nothing is written; the object is only read, measured and checked.
 */
remex_err objstore_get_file(struct objstore *s, const char *key, const char *path,
                            const char *checksum, struct objstore_ref *ref, struct remex_error *e);

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
