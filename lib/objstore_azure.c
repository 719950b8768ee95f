/* objstore_azure: Azure Blob Storage over Shared Key-signed HTTP. */
#include "remex/objstore_azure.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "remex/http.h"
#include "remex/objstore_s3.h"
#include "remex/sigv4.h"

#define AZ_NAME_MAX     64
#define AZ_ENDPOINT_MAX 512
#define AZ_RESPONSE_MAX (1u << 30)

struct objstore_azure {
    char account[AZ_NAME_MAX];
    char container[AZ_NAME_MAX];
    char prefix[OBJSTORE_KEY_MAX];   /* "" or "a/b/" */
    char base_path[AZ_ENDPOINT_MAX]; /* path part of the endpoint ("" or "/devstoreaccount1") */
    unsigned char key[OBJSTORE_AZURE_KEY_MAX]; /* secret: wiped at close */
    int key_len;
    struct http_client *http;
};

static const char *std_getenv(const char *n)
{
    return getenv(n);
}

void objstore_azure_close(struct objstore_azure *s)
{
    if (!s)
        return;
    http_client_free(s->http);
    OPENSSL_cleanse(s->key, sizeof(s->key));
    free(s);
}

/* Account names: 3-24 of [a-z0-9]; containers: 3-63 of [a-z0-9-]. */
static int name_ok(const char *p, size_t n, size_t max, int dash)
{
    if (n < 3 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') ||
              (dash && p[i] == '-' && i > 0 && i + 1 < n)))
            return 0;
    return 1;
}

static remex_err parse_url(struct objstore_azure *s, const char *url, struct remex_error *e)
{
    const char *a = url + 5, *c = strchr(a, '/'), *p;
    size_t an, cn, pn;
    if (!c)
        return remex_seterr(e, REMEX_EINVAL, "object store az: expected az://account/container");
    an = (size_t)(c - a);
    c++;
    p = strchr(c, '/');
    cn = p ? (size_t)(p - c) : strlen(c);
    if (!name_ok(a, an, 24, 0) || !name_ok(c, cn, 63, 1))
        return remex_seterr(e, REMEX_EINVAL, "object store az: invalid account or container name");
    memcpy(s->account, a, an);
    memcpy(s->container, c, cn);
    if (!p)
        return REMEX_OK;
    p++;
    pn = strlen(p);
    while (pn > 0 && p[pn - 1] == '/')
        pn--;
    if (pn == 0)
        return REMEX_OK;
    if (pn + 2 > 512)
        return remex_seterr(e, REMEX_ETOOBIG, "object store az: prefix too long");
    memcpy(s->prefix, p, pn);
    s->prefix[pn] = '\0';
    if (objstore_check_key(s->prefix, e) != REMEX_OK)
        return remex_seterr(e, REMEX_EINVAL, "object store az: invalid prefix");
    s->prefix[pn] = '/';
    s->prefix[pn + 1] = '\0';
    return REMEX_OK;
}

/* Splits endpoint into the client's base URL (scheme://host[:port]) and base_path. */
static remex_err endpoint_setup(struct objstore_azure *s, const char *endpoint, char *base,
                                size_t cap, struct remex_error *e)
{
    const char *h = strstr(endpoint, "://"), *slash;
    size_t n;
    if (!h || (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0))
        return remex_seterr(e, REMEX_EINVAL, "object store az: endpoint must be http(s)://...");
    slash = strchr(h + 3, '/');
    n = slash ? (size_t)(slash - endpoint) : strlen(endpoint);
    if (n >= cap || (slash && strlen(slash) >= sizeof(s->base_path)) ||
        strpbrk(endpoint, "?#@ ") != NULL)
        return remex_seterr(e, REMEX_EINVAL, "object store az: bad endpoint");
    memcpy(base, endpoint, n);
    base[n] = '\0';
    if (slash) {
        size_t pl = strlen(slash);
        while (pl > 0 && slash[pl - 1] == '/')
            pl--;
        memcpy(s->base_path, slash, pl);
        s->base_path[pl] = '\0';
    }
    return REMEX_OK;
}

static remex_err load_key(struct objstore_azure *s, const char *b64, struct remex_error *e)
{
    unsigned char tmp[((OBJSTORE_AZURE_KEY_MAX + 2) / 3) * 3 + 4];
    size_t n = b64 ? strlen(b64) : 0;
    int out;
    if (n == 0)
        return remex_seterr(e, REMEX_ENOTFOUND,
                            "object store az: no account key (AZURE_STORAGE_KEY or azure key)");
    if (n % 4 != 0 || n / 4 * 3 > sizeof(tmp))
        return remex_seterr(e, REMEX_EINVAL, "object store az: account key is not base64");
    out = EVP_DecodeBlock(tmp, (const unsigned char *)b64, (int)n);
    if (out < 0) {
        OPENSSL_cleanse(tmp, sizeof(tmp));
        return remex_seterr(e, REMEX_EINVAL, "object store az: account key is not base64");
    }
    out -= (b64[n - 1] == '=') + (b64[n - 2] == '=');
    if (out <= 0 || out > OBJSTORE_AZURE_KEY_MAX) {
        OPENSSL_cleanse(tmp, sizeof(tmp));
        return remex_seterr(e, REMEX_EINVAL, "object store az: account key has a bad length");
    }
    memcpy(s->key, tmp, (size_t)out);
    s->key_len = out;
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return REMEX_OK;
}

remex_err objstore_azure_open(const char *url, const struct objstore_opts *opts,
                              struct objstore_azure **out, struct remex_error *e)
{
    static const struct objstore_opts none = {.path_style = -1};
    const struct objstore_opts *o = opts ? opts : &none;
    const char *(*g)(const char *) = o->getenv_fn ? o->getenv_fn : std_getenv;
    const char *endpoint = o->endpoint ? o->endpoint : g("AZURE_STORAGE_ENDPOINT");
    const char *key = o->azure_key ? o->azure_key : g("AZURE_STORAGE_KEY");
    char base[AZ_ENDPOINT_MAX], def[AZ_ENDPOINT_MAX];
    struct objstore_azure *s = calloc(1, sizeof(*s));
    remex_err rc;
    if (!s)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    rc = parse_url(s, url, e);
    if (rc == REMEX_OK && !endpoint) {
        snprintf(def, sizeof(def), "https://%s.blob.core.windows.net", s->account);
        endpoint = def;
    }
    if (rc == REMEX_OK)
        rc = endpoint_setup(s, endpoint, base, sizeof(base), e);
    if (rc == REMEX_OK)
        rc = load_key(s, key, e);
    if (rc == REMEX_OK) {
        struct http_client_opts ho = {.base_url = base,
                                      .max_response_bytes = AZ_RESPONSE_MAX,
                                      .ca_file = o->ca_file,
                                      .max_attempts = 4,
                                      .timeout_ms = 120000};
        rc = http_client_new(&ho, &s->http, e);
    }
    if (rc != REMEX_OK) {
        remex_errprefix(e, "object store %s", url);
        objstore_azure_close(s);
        return rc;
    }
    *out = s;
    return REMEX_OK;
}

void objstore_azure_uri_base(const struct objstore_azure *s, char *out, size_t cap)
{
    snprintf(out, cap, "az://%s/%s/%s", s->account, s->container, s->prefix);
}

/* ---- signing ---- */

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

remex_err objstore_azure_string_to_sign(const char *verb, size_t content_length,
                                        const char *content_type, const char *const *ms_headers,
                                        const char *canonical_resource, struct buf *out)
{
    const char *h[16] = {NULL};
    size_t n = 0;
    char len[32] = "";
    remex_err rc;
    while (ms_headers && ms_headers[n]) {
        if (n == 16)
            return REMEX_EINVAL;
        h[n] = ms_headers[n];
        n++;
    }
    qsort(h, n, sizeof(h[0]), str_cmp);
    if (content_length > 0)
        snprintf(len, sizeof(len), "%zu", content_length);
    /* VERB, Content-Encoding, -Language, -Length, -MD5, -Type, Date, If-Modified-Since,
     * If-Match, If-None-Match, If-Unmodified-Since, Range. */
    rc = buf_printf(out, "%s\n\n\n%s\n\n%s\n\n\n\n\n\n\n", verb, len,
                    content_type ? content_type : "");
    for (size_t i = 0; i < n && rc == REMEX_OK; i++)
        rc = buf_printf(out, "%s\n", h[i]);
    if (rc == REMEX_OK)
        rc = buf_puts(out, canonical_resource);
    return rc;
}

static void http_date(char out[40])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "SharedKey account:base64(HMAC-SHA256(key, sts))" into out. */
static remex_err sign(const struct objstore_azure *s, const struct buf *sts, char *out, size_t cap)
{
    unsigned char mac[32];
    unsigned int ml = sizeof(mac);
    unsigned char b64[48];
    if (!HMAC(EVP_sha256(), s->key, s->key_len, (const unsigned char *)sts->data, sts->len, mac,
              &ml))
        return REMEX_ENOMEM;
    EVP_EncodeBlock(b64, mac, 32);
    if ((size_t)snprintf(out, cap, "Authorization: SharedKey %s:%s", s->account, b64) >= cap)
        return REMEX_ETOOBIG;
    return REMEX_OK;
}

/* ---- requests ---- */

/* Maps a non-2xx reply to an error naming the operation and the service's code. */
static remex_err az_status(const char *what, const char *key, const struct http_response *r,
                           struct remex_error *e)
{
    char code[64], msg[200];
    remex_err rc = http_check_status(what, r->status, NULL, NULL);
    if (rc == REMEX_OK)
        return REMEX_OK;
    if (!objstore_s3_parse_error(r->body.data ? r->body.data : "", r->body.len, code, sizeof(code),
                                 msg, sizeof(msg)))
        return remex_seterr(e, rc, "azure %s %s: HTTP %ld", what, key, r->status);
    char *nl = strstr(msg, "RequestId:"); /* the service appends request ids: kept out */
    if (nl)
        *nl = '\0';
    /* Azure says AuthenticationFailed for a bad signature; Azurite AuthorizationFailure. */
    if (strcmp(code, "AuthenticationFailed") == 0 ||
        (strcmp(code, "AuthorizationFailure") == 0 && strstr(msg, "signature")))
        return remex_seterr(e, rc,
                            "azure %s %s: HTTP %ld %s: the signature does not match; check the "
                            "account key",
                            what, key, r->status, code);
    return remex_seterr(e, rc, "azure %s %s: HTTP %ld %s: %s", what, key, r->status, code, msg);
}

/* One signed request for key (NULL: the container itself, with query
 * "restype=container"; list NULL, or the prefix of a one-blob listing). */
static remex_err az_request(struct objstore_azure *s, const char *method, const char *key,
                            const char *list, const void *body, size_t len,
                            struct http_response *resp, struct remex_error *e)
{
    struct buf path = BUF_INIT(4 * OBJSTORE_KEY_MAX), res = BUF_INIT(4 * OBJSTORE_KEY_MAX + 128);
    struct buf sts = BUF_INIT(8 * OBJSTORE_KEY_MAX);
    char date[40], dh[64], vh[64], auth[160];
    const char *ctype = body ? "application/octet-stream" : NULL;
    remex_err rc = buf_printf(&path, "%s/%s", s->base_path, s->container);
    if (rc == REMEX_OK && key) {
        rc = buf_putc(&path, '/');
        if (rc == REMEX_OK)
            rc = sigv4_uri_encode(&path, s->prefix, strlen(s->prefix), 1);
        if (rc == REMEX_OK)
            rc = sigv4_uri_encode(&path, key, strlen(key), 1);
    }
    http_date(date);
    char ms_date[64], ms_ver[64];
    snprintf(ms_date, sizeof(ms_date), "x-ms-date:%s", date);
    snprintf(ms_ver, sizeof(ms_ver), "x-ms-version:%s", OBJSTORE_AZURE_VERSION);
    const char *ms[4] = {ms_date, ms_ver, NULL, NULL};
    if (key && strcmp(method, "PUT") == 0)
        ms[2] = "x-ms-blob-type:BlockBlob";
    if (rc == REMEX_OK && list)
        rc = buf_printf(&res, "/%s%s\ncomp:list\nmaxresults:1\nprefix:%s%s\nrestype:container",
                        s->account, buf_cstr(&path), s->prefix, list);
    else if (rc == REMEX_OK)
        rc = buf_printf(&res, "/%s%s%s", s->account, buf_cstr(&path),
                        key ? "" : "\nrestype:container");
    if (rc == REMEX_OK)
        rc = objstore_azure_string_to_sign(method, len, ctype, ms, buf_cstr(&res), &sts);
    if (rc == REMEX_OK)
        rc = sign(s, &sts, auth, sizeof(auth));
    if (rc == REMEX_OK && !key)
        rc = buf_puts(&path, "?restype=container");
    if (rc == REMEX_OK && list &&
        (rc = buf_puts(&path, "&comp=list&maxresults=1&prefix=")) == REMEX_OK &&
        (rc = sigv4_uri_encode(&path, s->prefix, strlen(s->prefix), 0)) == REMEX_OK)
        rc = sigv4_uri_encode(&path, list, strlen(list), 0);
    if (rc != REMEX_OK) {
        buf_free(&path);
        buf_free(&res);
        buf_free(&sts);
        return remex_seterr(e, rc, "azure %s: cannot sign the request", method);
    }
    snprintf(dh, sizeof(dh), "x-ms-date: %s", date);
    snprintf(vh, sizeof(vh), "x-ms-version: %s", OBJSTORE_AZURE_VERSION);
    const char *lines[] = {dh, vh, auth, ms[2] ? "x-ms-blob-type: BlockBlob" : NULL, NULL};
    struct http_request req = {.method = method,
                               .path = buf_cstr(&path),
                               .body = body,
                               .body_len = len,
                               .headers = lines,
                               .content_type = ctype};
    rc = http_do(s->http, &req, resp, e);
    OPENSSL_cleanse(auth, sizeof(auth));
    const char *name = key ? key : s->container;
    if (rc != REMEX_OK)
        remex_errprefix(e, "azure %s %s", method, name);
    else
        rc = az_status(method, name, resp, e);
    buf_free(&path);
    buf_free(&res);
    buf_free(&sts);
    return rc;
}

static remex_err az_call(struct objstore_azure *s, const char *method, const char *key,
                         const void *body, size_t len, struct http_response *resp,
                         struct remex_error *e)
{
    return az_request(s, method, key, NULL, body, len, resp, e);
}

remex_err objstore_azure_put(struct objstore_azure *s, const char *key, const void *data,
                             size_t len, struct remex_error *e)
{
    struct http_response r = {0};
    remex_err rc = az_call(s, "PUT", key, data ? data : "", len, &r, e);
    http_response_free(&r);
    return rc;
}

remex_err objstore_azure_get(struct objstore_azure *s, const char *key, struct buf *out,
                             struct remex_error *e)
{
    struct http_response r = {0};
    remex_err rc = az_call(s, "GET", key, NULL, 0, &r, e);
    if (rc == REMEX_OK &&
        (rc = buf_append(out, r.body.data ? r.body.data : "", r.body.len)) == REMEX_ETOOBIG)
        remex_seterr(e, rc, "object store: %s: larger than %zu bytes", key, out->max);
    else if (rc == REMEX_ENOMEM)
        remex_seterr(e, rc, "object store: %s: out of memory", key);
    http_response_free(&r);
    return rc;
}

remex_err objstore_azure_delete(struct objstore_azure *s, const char *key, struct remex_error *e)
{
    struct http_response r = {0};
    remex_err rc = az_call(s, "DELETE", key, NULL, 0, &r, e);
    http_response_free(&r);
    return rc;
}

remex_err objstore_azure_create_container(struct objstore_azure *s, struct remex_error *e)
{
    struct http_response r = {0};
    remex_err rc = az_call(s, "PUT", NULL, "", 0, &r, e);
    if (rc == REMEX_ECONFLICT)
        rc = REMEX_OK; /* ContainerAlreadyExists */
    http_response_free(&r);
    return rc;
}

remex_err objstore_azure_first(struct objstore_azure *s, const char *prefix, char *found,
                               size_t cap, struct remex_error *e)
{
    struct http_response r = {0};
    remex_err rc = az_request(s, "GET", NULL, prefix, NULL, 0, &r, e);
    if (rc != REMEX_OK) {
        http_response_free(&r);
        return rc;
    }
    /* The first <Name> of <Blobs> (the container's name is an attribute). */
    char name[2 * OBJSTORE_KEY_MAX + 8];
    size_t pl = strlen(s->prefix);
    int n = objstore_s3_xml_first(r.body.data ? r.body.data : "", r.body.len, "Name", name,
                                  sizeof(name));
    http_response_free(&r);
    if (n == 0 || strncmp(name, s->prefix, pl) != 0 ||
        strncmp(name + pl, prefix, strlen(prefix)) != 0)
        return remex_seterr(e, REMEX_ENOTFOUND, "object store: %s: no object", prefix);
    snprintf(found, cap, "%s", name + pl);
    return REMEX_OK;
}
