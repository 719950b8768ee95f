/* objstore_gcs: Google Cloud Storage (JSON API) with OAuth tokens from a service-account key or,
 * without one, the GCP metadata server (lib/gcpauth). */
#include "remex/objstore_gcs.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/gcpauth.h"
#include "remex/http.h"
#include "remex/objstore_http.h"
#include "remex/sigv4.h"

#define GCS_SCOPE        "https://www.googleapis.com/auth/devstorage.read_write"
#define GCS_BUCKET_MAX   222
#define GCS_RESPONSE_MAX (1u << 30)

struct objstore_gcs {
    char bucket[GCS_BUCKET_MAX + 1];
    char prefix[OBJSTORE_KEY_MAX];
    struct gcpauth *auth;
    struct http_client *http;
};

static const char *std_getenv(const char *n)
{
    return getenv(n);
}

void objstore_gcs_close(struct objstore_gcs *s)
{
    if (!s)
        return;
    http_client_free(s->http);
    gcpauth_close(s->auth);
    free(s);
}

static remex_err parse_url(struct objstore_gcs *s, const char *url, struct remex_error *e)
{
    const char *b = url + 5, *slash = strchr(b, '/');
    size_t bn = slash ? (size_t)(slash - b) : strlen(b), pn;
    if (bn < 3 || bn > GCS_BUCKET_MAX || strspn(b, "abcdefghijklmnopqrstuvwxyz0123456789-_.") < bn)
        return remex_seterr(e, REMEX_EINVAL, "object store gs: invalid bucket name");
    memcpy(s->bucket, b, bn);
    if (!slash)
        return REMEX_OK;
    pn = strlen(slash + 1);
    while (pn > 0 && slash[pn] == '/')
        pn--;
    if (pn == 0)
        return REMEX_OK;
    if (pn + 2 > 512)
        return remex_seterr(e, REMEX_ETOOBIG, "object store gs: prefix too long");
    memcpy(s->prefix, slash + 1, pn);
    s->prefix[pn] = '\0';
    if (objstore_check_key(s->prefix, e) != REMEX_OK)
        return remex_seterr(e, REMEX_EINVAL, "object store gs: invalid prefix");
    s->prefix[pn] = '/';
    s->prefix[pn + 1] = '\0';
    return REMEX_OK;
}

remex_err objstore_gcs_open(const char *url, const struct objstore_opts *opts,
                            struct objstore_gcs **out, struct remex_error *e)
{
    static const struct objstore_opts none = {.path_style = -1};
    const struct objstore_opts *o = opts ? opts : &none;
    const char *(*g)(const char *) = o->getenv_fn ? o->getenv_fn : std_getenv;
    const char *key = o->gcp_key_file ? o->gcp_key_file : g("GOOGLE_APPLICATION_CREDENTIALS");
    const char *endpoint = o->endpoint ? o->endpoint : g("STORAGE_EMULATOR_HOST");
    struct objstore_gcs *s = calloc(1, sizeof(*s));
    remex_err rc;
    if (!s)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    rc = parse_url(s, url, e);
    /* No key (unset or empty): gcpauth's metadata server (GCE_METADATA_HOST, else GCE only). */
    if (rc == REMEX_OK)
        rc = gcpauth_open(key && *key ? key : NULL, o->token_uri, GCS_SCOPE, o->ca_file, &s->auth,
                          e);
    if (rc == REMEX_OK)
        rc = objstore_http_client(endpoint ? endpoint : "https://storage.googleapis.com",
                                  GCS_RESPONSE_MAX, o->ca_file, &s->http, e);
    if (rc != REMEX_OK) {
        remex_errprefix(e, "object store %s", url);
        objstore_gcs_close(s);
        return rc;
    }
    *out = s;
    return REMEX_OK;
}

void objstore_gcs_uri_base(const struct objstore_gcs *s, char *out, size_t cap)
{
    snprintf(out, cap, "gs://%s/%s", s->bucket, s->prefix);
}

#define OBJECT_PATH "/storage/v1/b/%s/o/"                              /* + name */
#define UPLOAD_PATH "/upload/storage/v1/b/%s/o?uploadType=media&name=" /* + name */

/* p = head (its %s: the bucket) + the store's prefix and name, percent-encoded as one path
 * segment or query value + tail; a path over p's cap is "gcs: <what> too long". */
static remex_err object_path(const struct objstore_gcs *s, struct buf *p, const char *head,
                             const char *name, const char *tail, const char *what,
                             struct remex_error *e)
{
    remex_err rc = buf_printf(p, head, s->bucket);
    if (rc == REMEX_OK)
        rc = sigv4_uri_encode(p, s->prefix, strlen(s->prefix), 0);
    if (rc == REMEX_OK)
        rc = sigv4_uri_encode(p, name, strlen(name), 0);
    if (rc == REMEX_OK)
        rc = buf_puts(p, tail);
    return rc == REMEX_OK ? REMEX_OK : remex_seterr(e, rc, "gcs: %s too long", what);
}

/* One call with the access token; a 401 gets a new token once. */
static remex_err gcs_call(struct objstore_gcs *s, const char *method, const char *path,
                          const void *body, size_t len, const char *key, struct http_response *resp,
                          const struct http_stream *st, struct remex_error *e)
{
    remex_err rc = REMEX_OK;
    memset(resp, 0, sizeof(*resp)); /* the caller frees it whatever happens */
    for (int attempt = 0; attempt < 2; attempt++) {
        const char *tok = NULL;
        if ((rc = gcpauth_token(s->auth, &tok, e)) != REMEX_OK)
            return rc;
        struct http_request req = {.method = method,
                                   .path = path,
                                   .bearer = tok,
                                   .body = body,
                                   .body_len = len,
                                   .content_type =
                                       body || (st && st->read) ? "application/octet-stream" : NULL,
                                   .retry_safe = 1,
                                   .stream = st};
        if ((rc = http_do(s->http, &req, resp, e)) != REMEX_OK) {
            remex_errprefix(e, "gcs %s %s", method, key);
            return rc;
        }
        if (resp->status != 401 || attempt == 1)
            break;
        gcpauth_invalidate(s->auth);
        http_response_free(resp);
        memset(resp, 0, sizeof(*resp));
    }
    if ((rc = http_check_status("gcs", resp->status, &resp->body, e)) != REMEX_OK)
        remex_errprefix(e, "gcs %s %s: HTTP %ld", method, key, resp->status);
    return rc;
}

/* The upload reply (object resource) names the MD5 the service computed: it must be md5 (what was
 * sent). A reply without md5Hash (composite objects, some emulators) is taken as it is. */
static remex_err check_md5hash(const struct buf *reply, const unsigned char md5[16],
                               const char *key, struct remex_error *e)
{
    unsigned char b64[32];
    remex_err rc = REMEX_OK;
    json_t *o = json_loadb(reply->data ? reply->data : "", reply->len, 0, NULL); /* owned */
    const char *got = json_string_value(json_object_get(o, "md5Hash"));          /* borrowed */
    EVP_EncodeBlock(b64, md5, 16);
    if (got && strcmp(got, (const char *)b64) != 0)
        rc = remex_seterr(e, REMEX_EPROTO,
                          "gcs POST %s: md5Hash %.40s is not the MD5 of what was sent", key, got);
    json_decref(o);
    return rc;
}

remex_err objstore_gcs_put(struct objstore_gcs *s, const char *key, const void *data, size_t len,
                           struct remex_error *e)
{
    unsigned char md5[16];
    unsigned int mdlen = sizeof(md5);
    struct buf p = BUF_INIT(4 * OBJSTORE_KEY_MAX + 512);
    struct http_response r = {0};
    remex_err rc = object_path(s, &p, UPLOAD_PATH, key, "", "key", e);
    if (rc == REMEX_OK)
        rc = gcs_call(s, "POST", buf_cstr(&p), data ? data : "", len, key, &r, NULL, e);
    if (rc == REMEX_OK && EVP_Digest(data ? data : "", len, md5, &mdlen, EVP_md5(), NULL) != 1)
        rc = remex_seterr(e, REMEX_ENOMEM, "gcs: md5: out of memory");
    if (rc == REMEX_OK)
        rc = check_md5hash(&r.body, md5, key, e);
    http_response_free(&r);
    buf_free(&p);
    return rc;
}

remex_err objstore_gcs_get(struct objstore_gcs *s, const char *key, struct buf *out,
                           struct remex_error *e)
{
    struct buf p = BUF_INIT(4 * OBJSTORE_KEY_MAX + 512);
    struct http_response r = {0};
    struct objstore_sink k; /* no file: keeps x-goog-hash's md5= and checks the body against it */
    remex_err rc = objstore_sink_open(&k, NULL, e);
    if (rc != REMEX_OK)
        return rc;
    /* Headers only: the body is buffered in r (capped), as a non-streamed get. */
    const struct http_stream hs = {.header = k.st.header, .reset = k.st.reset, .ud = &k};
    if ((rc = object_path(s, &p, OBJECT_PATH, key, "?alt=media", "key", e)) == REMEX_OK)
        rc = gcs_call(s, "GET", buf_cstr(&p), NULL, 0, key, &r, &hs, e);
    if (rc == REMEX_OK && k.st.write(r.body.data ? r.body.data : "", r.body.len, &k) != 0)
        rc = remex_seterr(e, REMEX_ENOMEM, "gcs: md5: out of memory");
    remex_err checked = objstore_sink_finish(&k, rc, NULL, NULL, NULL, e); /* frees k */
    if (checked != rc) {
        rc = checked;
        remex_errprefix(e, "gcs GET %s", key);
    }
    buf_free(&p);
    return objstore_http_done(rc, &r, key, out, e);
}

remex_err objstore_gcs_delete(struct objstore_gcs *s, const char *key, struct remex_error *e)
{
    struct buf p = BUF_INIT(4 * OBJSTORE_KEY_MAX + 512);
    struct http_response r = {0};
    remex_err rc = object_path(s, &p, OBJECT_PATH, key, "", "key", e);
    if (rc == REMEX_OK)
        rc = gcs_call(s, "DELETE", buf_cstr(&p), NULL, 0, key, &r, NULL, e);
    http_response_free(&r);
    buf_free(&p);
    return rc;
}

/* ---- streaming ---- */

remex_err objstore_gcs_put_file(struct objstore_gcs *s, const char *key, int fd, uint64_t size,
                                char sum[72], struct remex_error *e)
{
    struct buf p = BUF_INIT(4 * OBJSTORE_KEY_MAX + 512);
    struct http_response r = {0};
    struct objstore_digest d;
    struct objstore_src src;
    void *whole = objstore_digest_new();
    remex_err rc = whole ? objstore_digest_range(fd, 0, size, whole, NULL, &d, e)
                         : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if (rc == REMEX_OK)
        rc = object_path(s, &p, UPLOAD_PATH, key, "", "key", e);
    if (rc == REMEX_OK) {
        objstore_src_init(&src, fd, 0, size);
        rc = gcs_call(s, "POST", buf_cstr(&p), NULL, 0, key, &r, &src.st, e);
    }
    if (rc == REMEX_OK)
        rc = check_md5hash(&r.body, d.md5, key, e);
    if (rc == REMEX_OK)
        objstore_digest_final(whole, sum);
    objstore_digest_free(whole);
    http_response_free(&r);
    buf_free(&p);
    return rc;
}

remex_err objstore_gcs_get_stream(struct objstore_gcs *s, const char *key,
                                  const struct http_stream *sink, struct remex_error *e)
{
    struct buf p = BUF_INIT(4 * OBJSTORE_KEY_MAX + 512);
    struct http_response r = {0};
    remex_err rc = object_path(s, &p, OBJECT_PATH, key, "?alt=media", "key", e);
    if (rc == REMEX_OK)
        rc = gcs_call(s, "GET", buf_cstr(&p), NULL, 0, key, &r, sink, e);
    http_response_free(&r);
    buf_free(&p);
    return rc;
}

remex_err objstore_gcs_first(struct objstore_gcs *s, const char *prefix, char *found, size_t cap,
                             struct remex_error *e)
{
    struct buf p = BUF_INIT(4 * OBJSTORE_KEY_MAX + 512);
    struct http_response r = {0};
    remex_err rc =
        object_path(s, &p, "/storage/v1/b/%s/o?maxResults=1&prefix=", prefix, "", "prefix", e);
    if (rc == REMEX_OK)
        rc = gcs_call(s, "GET", buf_cstr(&p), NULL, 0, prefix, &r, NULL, e);
    buf_free(&p);
    if (rc != REMEX_OK) {
        http_response_free(&r);
        return rc;
    }
    char name[2 * OBJSTORE_KEY_MAX + 8];
    int got =
        objstore_gcs_list_first(r.body.data ? r.body.data : "", r.body.len, name, sizeof(name));
    http_response_free(&r);
    if (got < 0)
        return remex_seterr(e, REMEX_EPROTO, "gcs list %s: reply is not a listing", prefix);
    return objstore_http_found(got == 1 ? name : NULL, s->prefix, prefix, found, cap, e);
}

int objstore_gcs_list_first(const char *body, size_t len, char *out, size_t cap)
{
    if (cap)
        out[0] = '\0';
    if (len > OBJSTORE_GCS_LIST_MAX)
        return -1;
    json_t *doc = json_loadb(body, len, 0, NULL);  /* owned */
    json_t *items = json_object_get(doc, "items"); /* borrowed from doc */
    const char *name = json_string_value(json_object_get(json_array_get(items, 0), "name"));
    int rc = !json_is_object(doc) || (items && !json_is_array(items)) ? -1 : 0;
    if (rc == 0 && name && name[0] && strlen(name) < cap) {
        memcpy(out, name, strlen(name) + 1);
        rc = 1;
    }
    json_decref(doc);
    return rc;
}
