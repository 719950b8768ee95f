/* objstore_azure: Azure Blob Storage over Shared Key-signed HTTP. */
#include "remex/objstore_azure.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "remex/azauth.h"
#include "remex/http.h"
#include "remex/objstore_http.h"
#include "remex/sigv4.h"

#define AZ_NAME_MAX     64
#define AZ_ENDPOINT_MAX 512
#define AZ_RESPONSE_MAX (1u << 30)
#define AZ_MAX_BLOCKS   50000u /* the service's limit on committed blocks */

struct objstore_azure {
    char account[AZ_NAME_MAX];
    char container[AZ_NAME_MAX];
    char prefix[OBJSTORE_KEY_MAX];   /* "" or "a/b/" */
    char base_path[AZ_ENDPOINT_MAX]; /* path part of the endpoint ("" or "/devstoreaccount1") */
    unsigned char key[OBJSTORE_AZURE_KEY_MAX]; /* secret: wiped at close */
    int key_len;
    char sas[OBJSTORE_AZURE_SAS_MAX]; /* secret: SAS query ("sv=...&sig=..."), "" for Shared Key */
    struct azauth *bearer;            /* owned; Entra ID tokens instead of a key or SAS */
    uint64_t multipart_threshold;     /* blobs of this size or more go up as blocks */
    uint64_t part_size;               /* block size */
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
    azauth_close(s->bearer);
    OPENSSL_cleanse(s->key, sizeof(s->key));
    OPENSSL_cleanse(s->sas, sizeof(s->sas));
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

/* Keeps a SAS token (a leading '?' dropped): query characters only, with a signature. */
static remex_err load_sas(struct objstore_azure *s, const char *sas, struct remex_error *e)
{
    size_t n;
    if (sas[0] == '?')
        sas++;
    n = strlen(sas);
    while (n > 0 && (sas[n - 1] == '\n' || sas[n - 1] == '\r' || sas[n - 1] == ' '))
        n--;
    if (n == 0 || n >= sizeof(s->sas))
        return remex_seterr(e, REMEX_EINVAL, "object store az: SAS token empty or over %d bytes",
                            OBJSTORE_AZURE_SAS_MAX - 1);
    for (size_t i = 0; i < n; i++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%&=:,+/",
                    sas[i]) ||
            sas[i] == '\0')
            return remex_seterr(e, REMEX_EINVAL,
                                "object store az: SAS token: character %zu is not allowed in a "
                                "query string",
                                i + 1);
    memcpy(s->sas, sas, n);
    s->sas[n] = '\0';
    if (strncmp(s->sas, "sig=", 4) != 0 && !strstr(s->sas, "&sig=")) {
        OPENSSL_cleanse(s->sas, sizeof(s->sas));
        return remex_seterr(e, REMEX_EINVAL, "object store az: SAS token has no sig= field");
    }
    return REMEX_OK;
}

/* The SAS token from a file (capped at OBJSTORE_AZURE_SAS_MAX bytes). */
static remex_err load_sas_file(struct objstore_azure *s, const char *path, struct remex_error *e)
{
    char tmp[OBJSTORE_AZURE_SAS_MAX + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    remex_err rc;
    if (fd < 0)
        return remex_errno(e, REMEX_EIO, "object store az: SAS file %s", path);
    n = read(fd, tmp, sizeof(tmp));
    close(fd);
    if (n < 0)
        return remex_errno(e, REMEX_EIO, "object store az: SAS file %s", path);
    if ((size_t)n >= sizeof(tmp))
        return remex_seterr(e, REMEX_ETOOBIG, "object store az: SAS file %s: over %d bytes", path,
                            OBJSTORE_AZURE_SAS_MAX);
    tmp[n] = '\0';
    rc = load_sas(s, tmp, e);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    if (rc != REMEX_OK)
        remex_errprefix(e, "%s", path);
    return rc;
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
    const char *sas = o->azure_sas ? o->azure_sas : g("AZURE_STORAGE_SAS_TOKEN");
    s->multipart_threshold =
        o->multipart_threshold ? o->multipart_threshold : OBJSTORE_MULTIPART_THRESHOLD;
    s->part_size = o->part_size ? o->part_size : OBJSTORE_PART_SIZE;
    if (rc == REMEX_OK && s->part_size < OBJSTORE_PART_MIN)
        rc = remex_seterr(e, REMEX_EINVAL, "part_size must be at least %llu",
                          (unsigned long long)OBJSTORE_PART_MIN);
    const char *fed = o->azure_federated_token_file ? o->azure_federated_token_file
                                                    : g("AZURE_FEDERATED_TOKEN_FILE");
    if (rc == REMEX_OK && o->azure_sas_file)
        rc = load_sas_file(s, o->azure_sas_file, e);
    else if (rc == REMEX_OK && sas && *sas)
        rc = load_sas(s, sas, e);
    else if (rc == REMEX_OK && (!key || !*key) && fed && *fed) {
        struct azauth_config ac = {
            .tenant_id = o->azure_tenant_id ? o->azure_tenant_id : g("AZURE_TENANT_ID"),
            .client_id = o->azure_client_id ? o->azure_client_id : g("AZURE_CLIENT_ID"),
            .federated_token_file = fed,
            .authority = o->azure_authority ? o->azure_authority : g("AZURE_AUTHORITY_HOST"),
            .scope = OBJSTORE_AZURE_SCOPE,
            .ca_file = o->ca_file};
        rc = azauth_open(&ac, &s->bearer, e);
    } else if (rc == REMEX_OK)
        rc = load_key(s, key, e);
    if (rc == REMEX_OK)
        rc = objstore_http_client(base, AZ_RESPONSE_MAX, o->ca_file, &s->http, e);
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

static int az_is_sig(const char *code, const char *msg)
{
    /* Azure says AuthenticationFailed for a bad signature; Azurite AuthorizationFailure. */
    return strcmp(code, "AuthenticationFailed") == 0 ||
           (strcmp(code, "AuthorizationFailure") == 0 && strstr(msg, "signature"));
}

/* Maps a non-2xx reply to an error naming the operation and the service's code. */
static remex_err az_status(const char *what, const char *key, const struct http_response *r,
                           const struct objstore_azure *s, struct remex_error *e)
{
    return objstore_http_status("azure", what, key, r, az_is_sig,
                                s->sas[0] ? "the SAS token was refused; check its signature, "
                                            "expiry and permissions"
                                          : "the signature does not match; check the account key",
                                e);
}

/* One Blob request. query: "" or "comp=block&blockid=ID" (names sorted, values encoded). */
struct az_req {
    const char *method;
    const char *key; /* NULL: the container itself (restype=container) */
    const char *query;
    const char *canon_query; /* canonical resource lines of query ("\ncomp:block..."), or "" */
    const void *body;
    size_t len;
    const struct http_stream *stream; /* NULL: buffered */
    const char *ms_extra;             /* one more "x-ms-name:value" header, or NULL */
};

/* The "Authorization: SharedKey ..." line of a request on path (no query) into auth. */
static remex_err shared_key(const struct objstore_azure *s, const struct az_req *q,
                            const char *path, size_t len, const char *ctype, const char *const *ms,
                            char *auth, size_t cap)
{
    struct buf res = BUF_INIT(4 * OBJSTORE_KEY_MAX + 512),
               sts = BUF_INIT(8 * OBJSTORE_KEY_MAX + 512);
    remex_err rc = buf_printf(&res, "/%s%s%s", s->account, path,
                              q->canon_query ? q->canon_query
                              : q->key       ? ""
                                             : "\nrestype:container");
    if (rc == REMEX_OK)
        rc = objstore_azure_string_to_sign(q->method, len, ctype, ms, buf_cstr(&res), &sts);
    if (rc == REMEX_OK)
        rc = sign(s, &sts, auth, cap);
    buf_free(&res);
    buf_free(&sts);
    return rc;
}

/* The signed (Shared Key), SAS-carrying or bearer request: path and headers, then the call. */
static remex_err az_do(struct objstore_azure *s, const struct az_req *q, struct http_response *resp,
                       struct remex_error *e)
{
    struct buf path = BUF_INIT(4 * OBJSTORE_KEY_MAX + 4096);
    char date[40], dh[64], vh[64], auth[160] = "", xh[200] = "", ms_date[64], ms_ver[64];
    int has_body = q->body != NULL || (q->stream && q->stream->read);
    size_t len = q->stream ? (size_t)q->stream->upload_len : q->len;
    const char *ctype = has_body ? "application/octet-stream" : NULL;
    const char *query = q->query ? q->query : q->key ? "" : "restype=container";
    const char *name = q->key ? q->key : s->container;
    const char *bearer = NULL; /* borrowed from s->bearer */
    remex_err rc = buf_printf(&path, "%s/%s", s->base_path, s->container);
    memset(resp, 0, sizeof(*resp));
    if (rc == REMEX_OK && q->key) {
        rc = buf_putc(&path, '/');
        if (rc == REMEX_OK)
            rc = sigv4_uri_encode(&path, s->prefix, strlen(s->prefix), 1);
        if (rc == REMEX_OK)
            rc = sigv4_uri_encode(&path, q->key, strlen(q->key), 1);
    }
    http_date(date);
    snprintf(ms_date, sizeof(ms_date), "x-ms-date:%s", date);
    snprintf(ms_ver, sizeof(ms_ver), "x-ms-version:%s", OBJSTORE_AZURE_VERSION);
    const char *ms[4] = {ms_date, ms_ver, q->ms_extra, NULL};
    if (rc == REMEX_OK && s->bearer && (rc = azauth_token(s->bearer, &bearer, e)) != REMEX_OK) {
        buf_free(&path);
        remex_errprefix(e, "azure %s %s", q->method, name);
        return rc;
    }
    if (rc == REMEX_OK && !s->sas[0] && !s->bearer)
        rc = shared_key(s, q, buf_cstr(&path), len, ctype, ms, auth, sizeof(auth));
    if (rc == REMEX_OK && (query[0] || s->sas[0]))
        rc = buf_printf(&path, "?%s%s%s", query, query[0] && s->sas[0] ? "&" : "", s->sas);
    if (rc != REMEX_OK) {
        buf_free(&path);
        return remex_seterr(e, rc, "azure %s: cannot sign the request", q->method);
    }
    snprintf(dh, sizeof(dh), "x-ms-date: %s", date);
    snprintf(vh, sizeof(vh), "x-ms-version: %s", OBJSTORE_AZURE_VERSION);
    if (q->ms_extra) {
        const char *colon = strchr(q->ms_extra, ':');
        snprintf(xh, sizeof(xh), "%.*s: %s", (int)(colon - q->ms_extra), q->ms_extra, colon + 1);
    }
    const char *lines[5] = {dh, vh, NULL, NULL, NULL};
    size_t nl = 2;
    if (auth[0])
        lines[nl++] = auth;
    if (xh[0])
        lines[nl++] = xh;
    struct http_request req = {.method = q->method,
                               .path = buf_cstr(&path),
                               .body = q->stream ? NULL : q->body,
                               .body_len = q->len,
                               .headers = lines,
                               .content_type = ctype,
                               .bearer = bearer,
                               .stream = q->stream};
    rc = http_do(s->http, &req, resp, e);
    if (rc == REMEX_OK && resp->status == 401 && s->bearer)
        azauth_invalidate(s->bearer); /* the next request gets a new token */
    OPENSSL_cleanse(auth, sizeof(auth));
    if (path.data)
        OPENSSL_cleanse(path.data, path.len); /* holds the SAS signature */
    if (rc != REMEX_OK)
        remex_errprefix(e, "azure %s %s", q->method, name);
    else
        rc = az_status(q->method, name, resp, s, e);
    buf_free(&path);
    return rc;
}

/* One buffered request for key (NULL: the container itself). */
static remex_err az_call(struct objstore_azure *s, const char *method, const char *key,
                         const void *body, size_t len, struct http_response *resp,
                         struct remex_error *e)
{
    struct az_req q = {.method = method,
                       .key = key,
                       .body = body,
                       .len = len,
                       .ms_extra =
                           key && strcmp(method, "PUT") == 0 ? "x-ms-blob-type:BlockBlob" : NULL};
    return az_do(s, &q, resp, e);
}

remex_err objstore_azure_put(struct objstore_azure *s, const char *key, const void *data,
                             size_t len, struct remex_error *e)
{
    struct http_response r = {0};
    return objstore_http_done(az_call(s, "PUT", key, data ? data : "", len, &r, e), &r, key, NULL,
                              e);
}

remex_err objstore_azure_get(struct objstore_azure *s, const char *key, struct buf *out,
                             struct remex_error *e)
{
    struct http_response r = {0};
    return objstore_http_done(az_call(s, "GET", key, NULL, 0, &r, e), &r, key, out, e);
}

remex_err objstore_azure_delete(struct objstore_azure *s, const char *key, struct remex_error *e)
{
    struct http_response r = {0};
    return objstore_http_done(az_call(s, "DELETE", key, NULL, 0, &r, e), &r, key, NULL, e);
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

/* ---- streaming ---- */

/* A streamed upload and the Content-MD5 the service answers with. */
struct az_up {
    struct objstore_src src;
    char md5[48];
};

static size_t up_read(void *dst, size_t cap, void *ud)
{
    struct az_up *u = ud;
    return u->src.st.read(dst, cap, &u->src);
}

static int up_reset(void *ud)
{
    struct az_up *u = ud;
    u->md5[0] = '\0';
    return u->src.st.reset(&u->src);
}

static void up_header(const char *line, size_t n, void *ud)
{
    struct az_up *u = ud;
    size_t k = 0;
    if (n <= 12 || strncasecmp(line, "Content-MD5:", 12) != 0)
        return;
    for (size_t i = 12; i < n && k + 1 < sizeof(u->md5); i++)
        if (line[i] > 0x20 && line[i] < 0x7f)
            u->md5[k++] = line[i];
    u->md5[k] = '\0';
}

/*
 * Streams fd[off, off+len) with a copy of q carrying the stream; the MD5 the
 * service computed over what it received must be d's.
 */
static remex_err az_put_range(struct objstore_azure *s, const struct az_req *q, int fd,
                              uint64_t off, uint64_t len, void *whole, void *md5_all,
                              struct remex_error *e)
{
    struct objstore_digest d;
    struct az_up u = {.md5 = ""};
    struct http_response r;
    unsigned char b64[32];
    remex_err rc = objstore_digest_range(fd, off, len, whole, md5_all, &d, e);
    if (rc != REMEX_OK)
        return rc;
    objstore_src_init(&u.src, fd, off, len);
    struct http_stream st = {
        .read = up_read, .upload_len = len, .header = up_header, .reset = up_reset, .ud = &u};
    struct az_req req = *q; /* the caller's q never points at this frame's stream */
    req.stream = &st;
    rc = az_do(s, &req, &r, e);
    http_response_free(&r);
    EVP_EncodeBlock(b64, d.md5, 16);
    if (rc == REMEX_OK && u.md5[0] && strcmp(u.md5, (const char *)b64) != 0)
        rc = remex_seterr(e, REMEX_EPROTO,
                          "azure PUT %s: the service's Content-MD5 is not the MD5 of what was "
                          "sent",
                          q->key);
    return rc;
}

/* Put Block for each block, then Put Block List naming them in order. */
static remex_err az_put_blocks(struct objstore_azure *s, const char *key, int fd, uint64_t size,
                               void *whole, struct remex_error *e)
{
    struct buf list = BUF_INIT((size_t)AZ_MAX_BLOCKS * 64 + 256);
    EVP_MD_CTX *md5 = EVP_MD_CTX_new();
    uint64_t bsize = s->part_size, off = 0;
    unsigned n = 0;
    remex_err rc = md5 && EVP_DigestInit_ex(md5, EVP_md5(), NULL) == 1
                       ? buf_puts(&list, "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>")
                       : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if ((size + bsize - 1) / bsize > AZ_MAX_BLOCKS)
        bsize = ((size + AZ_MAX_BLOCKS - 1) / AZ_MAX_BLOCKS + (1u << 20) - 1) &
                ~(uint64_t)((1u << 20) - 1);
    while (rc == REMEX_OK && off < size) {
        uint64_t len = size - off < bsize ? size - off : bsize;
        char raw[16], id[32], query[96], canon[96];
        /* block ids: base64 of a fixed-length name, [A-Za-z0-9] only (no encoding needed) */
        snprintf(raw, sizeof(raw), "blk%09u", ++n);
        EVP_EncodeBlock((unsigned char *)id, (const unsigned char *)raw, 12);
        snprintf(query, sizeof(query), "comp=block&blockid=%s", id);
        snprintf(canon, sizeof(canon), "\nblockid:%s\ncomp:block", id);
        struct az_req q = {.method = "PUT", .key = key, .query = query, .canon_query = canon};
        rc = az_put_range(s, &q, fd, off, len, whole, md5, e);
        if (rc == REMEX_OK && buf_printf(&list, "<Latest>%s</Latest>", id) != REMEX_OK)
            rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
        off += len;
    }
    if (rc == REMEX_OK)
        rc = buf_puts(&list, "</BlockList>");
    if (rc == REMEX_OK) {
        unsigned char mm[16], b64[32];
        unsigned int ml = 16;
        char hdr[80];
        struct http_response r;
        /* The blob's MD5 is stored as its Content-MD5: downloads are checked against it. */
        EVP_DigestFinal_ex(md5, mm, &ml);
        (void)mm;
        EVP_MD_CTX_free(md5);
        md5 = NULL;
        EVP_EncodeBlock(b64, mm, 16);
        snprintf(hdr, sizeof(hdr), "x-ms-blob-content-md5:%s", b64);
        struct az_req q = {.method = "PUT",
                           .key = key,
                           .query = "comp=blocklist",
                           .canon_query = "\ncomp:blocklist",
                           .body = list.data,
                           .len = list.len,
                           .ms_extra = hdr};
        rc = az_do(s, &q, &r, e);
        http_response_free(&r);
    }
    EVP_MD_CTX_free(md5);
    buf_free(&list);
    return rc;
}

remex_err objstore_azure_put_file(struct objstore_azure *s, const char *key, int fd, uint64_t size,
                                  char sum[72], struct remex_error *e)
{
    void *whole = objstore_digest_new();
    remex_err rc;
    if (!whole)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if (size >= s->multipart_threshold) {
        rc = az_put_blocks(s, key, fd, size, whole, e);
    } else {
        struct az_req q = {.method = "PUT", .key = key, .ms_extra = "x-ms-blob-type:BlockBlob"};
        rc = az_put_range(s, &q, fd, 0, size, whole, NULL, e);
    }
    if (rc == REMEX_OK)
        objstore_digest_final(whole, sum);
    objstore_digest_free(whole);
    return rc;
}

remex_err objstore_azure_get_stream(struct objstore_azure *s, const char *key,
                                    const struct http_stream *sink, struct remex_error *e)
{
    struct http_response r;
    struct az_req q = {.method = "GET", .key = key, .stream = sink};
    remex_err rc = az_do(s, &q, &r, e);
    http_response_free(&r);
    return rc;
}

remex_err objstore_azure_first(struct objstore_azure *s, const char *prefix, char *found,
                               size_t cap, struct remex_error *e)
{
    struct http_response r = {0};
    struct buf qs = BUF_INIT(4 * OBJSTORE_KEY_MAX + 128),
               canon = BUF_INIT(2 * OBJSTORE_KEY_MAX + 128);
    remex_err rc = buf_puts(&qs, "comp=list&maxresults=1&prefix=");
    if (rc == REMEX_OK)
        rc = sigv4_uri_encode(&qs, s->prefix, strlen(s->prefix), 0);
    if (rc == REMEX_OK)
        rc = sigv4_uri_encode(&qs, prefix, strlen(prefix), 0);
    if (rc == REMEX_OK)
        rc = buf_puts(&qs, "&restype=container");
    if (rc == REMEX_OK)
        rc = buf_printf(&canon, "\ncomp:list\nmaxresults:1\nprefix:%s%s\nrestype:container",
                        s->prefix, prefix);
    if (rc == REMEX_OK) {
        struct az_req q = {
            .method = "GET", .query = buf_cstr(&qs), .canon_query = buf_cstr(&canon)};
        rc = az_do(s, &q, &r, e);
    } else {
        remex_seterr(e, rc, "azure list %s: prefix too long", prefix);
    }
    buf_free(&qs);
    buf_free(&canon);
    if (rc != REMEX_OK) {
        http_response_free(&r);
        return rc;
    }
    /* The first <Name> of <Blobs> (the container's name is an attribute). */
    char name[2 * OBJSTORE_KEY_MAX + 8];
    int n = objstore_http_xml_field(r.body.data, r.body.len, "Name", name, sizeof(name));
    http_response_free(&r);
    return objstore_http_found(n ? name : NULL, s->prefix, prefix, found, cap, e);
}
