/* objstore_s3: S3 and S3-compatible object storage over SigV4-signed HTTP. */
#include "remex/objstore_s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "remex/awscreds.h"
#include "remex/hash.h"
#include "remex/http.h"
#include "remex/sigv4.h"

#define S3_HOST_MAX     512
#define S3_BUCKET_MAX   63
#define S3_RESPONSE_MAX (1u << 30) /* responses; callers' buffers cap further */

struct objstore_s3 {
    char bucket[S3_BUCKET_MAX + 1];
    char prefix[OBJSTORE_KEY_MAX]; /* "" or "a/b/" */
    char region[64];
    char host[S3_HOST_MAX]; /* Host header value, port included when given */
    int path_style;
    struct awscreds *provider; /* owned */
    struct sigv4_creds creds;  /* current copy from provider; secret: wiped at close */
    struct http_client *http;
};

static const char *std_getenv(const char *n)
{
    return getenv(n);
}

static const char *pick(const char *a, const char *(*g)(const char *), const char *e1,
                        const char *e2)
{
    const char *v;
    if (a && *a)
        return a;
    if (e1 && (v = g(e1)) != NULL && *v)
        return v;
    if (e2 && (v = g(e2)) != NULL && *v)
        return v;
    return NULL;
}

/* S3 bucket names: 3-63 of [a-z0-9.-], starting and ending with a letter or digit. */
static int bucket_ok(const char *b, size_t n)
{
    if (n < 3 || n > S3_BUCKET_MAX || b[0] == '.' || b[0] == '-' || b[n - 1] == '.' ||
        b[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '.' ||
              b[i] == '-'))
            return 0;
    return 1;
}

/* Splits "s3://bucket/prefix" into s->bucket and s->prefix ("" or ending in '/'). */
static remex_err parse_url(struct objstore_s3 *s, const char *url, struct remex_error *e)
{
    const char *b = url + 5, *slash = strchr(b, '/');
    size_t bn = slash ? (size_t)(slash - b) : strlen(b), pn;
    if (!bucket_ok(b, bn))
        return remex_seterr(e, REMEX_EINVAL, "object store s3: invalid bucket name in '%s'", url);
    memcpy(s->bucket, b, bn);
    s->bucket[bn] = '\0';
    if (!slash)
        return REMEX_OK;
    slash++;
    pn = strlen(slash);
    while (pn > 0 && slash[pn - 1] == '/')
        pn--;
    if (pn == 0)
        return REMEX_OK;
    if (pn + 2 > 512)
        return remex_seterr(e, REMEX_ETOOBIG, "object store s3: prefix too long");
    memcpy(s->prefix, slash, pn);
    s->prefix[pn] = '\0';
    if (objstore_check_key(s->prefix, e) != REMEX_OK)
        return remex_seterr(e, REMEX_EINVAL, "object store s3: invalid prefix in '%s'", url);
    s->prefix[pn] = '/';
    s->prefix[pn + 1] = '\0';
    return REMEX_OK;
}

/* Builds the base URL and Host header from the endpoint; base receives "scheme://host[:port]". */
static remex_err endpoint_setup(struct objstore_s3 *s, const char *endpoint, char *base, size_t cap,
                                struct remex_error *e)
{
    const char *scheme_end = strstr(endpoint, "://"), *h;
    size_t hn;
    if (!scheme_end || (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8)))
        return remex_seterr(e, REMEX_EINVAL, "object store s3: endpoint must be http(s)://host");
    h = scheme_end + 3;
    hn = strcspn(h, "/?#");
    if (hn == 0 || h[hn] != '\0' || memchr(h, '@', hn))
        return remex_seterr(e, REMEX_EINVAL,
                            "object store s3: endpoint must be scheme://host[:port] only");
    if (s->path_style) {
        if (hn >= sizeof(s->host))
            return remex_seterr(e, REMEX_ETOOBIG, "object store s3: endpoint too long");
        memcpy(s->host, h, hn);
        s->host[hn] = '\0';
    } else if ((size_t)snprintf(s->host, sizeof(s->host), "%s.%.*s", s->bucket, (int)hn, h) >=
               sizeof(s->host)) {
        return remex_seterr(e, REMEX_ETOOBIG, "object store s3: endpoint too long");
    }
    if ((size_t)snprintf(base, cap, "%.*s%s", (int)(h - endpoint), endpoint, s->host) >= cap)
        return remex_seterr(e, REMEX_ETOOBIG, "object store s3: endpoint too long");
    return REMEX_OK;
}

remex_err objstore_s3_open(const char *url, const struct objstore_opts *opts,
                           struct objstore_s3 **out, struct remex_error *e)
{
    static const struct objstore_opts none = {.path_style = -1};
    const struct objstore_opts *o = opts ? opts : &none;
    const char *(*g)(const char *) = o->getenv_fn ? o->getenv_fn : std_getenv;
    const char *endpoint = pick(o->endpoint, g, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");
    const char *region = pick(o->region, g, "AWS_REGION", "AWS_DEFAULT_REGION");
    char base[S3_HOST_MAX + 16], aws[128];
    struct objstore_s3 *s = calloc(1, sizeof(*s));
    remex_err rc;
    if (!s)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if (!region)
        region = "us-east-1";
    snprintf(s->region, sizeof(s->region), "%s", region);
    s->path_style = o->path_style >= 0 ? o->path_style : endpoint != NULL;
    if (!endpoint) {
        snprintf(aws, sizeof(aws), "https://s3.%s.amazonaws.com", s->region);
        endpoint = aws;
    }
    rc = parse_url(s, url, e);
    if (rc == REMEX_OK)
        rc = endpoint_setup(s, endpoint, base, sizeof(base), e);
    if (rc == REMEX_OK)
        rc = awscreds_open(o->profile, o->credentials_file, o->getenv_fn, o->ca_file, &s->provider,
                           e);
    if (rc == REMEX_OK) {
        struct http_client_opts ho = {.base_url = base,
                                      .max_response_bytes = S3_RESPONSE_MAX,
                                      .ca_file = o->ca_file,
                                      .max_attempts = 4,
                                      .timeout_ms = 120000};
        rc = http_client_new(&ho, &s->http, e);
    }
    if (rc != REMEX_OK) {
        remex_errprefix(e, "object store %s", url);
        objstore_s3_close(s);
        return rc;
    }
    *out = s;
    return REMEX_OK;
}

void objstore_s3_close(struct objstore_s3 *s)
{
    if (!s)
        return;
    http_client_free(s->http);
    awscreds_close(s->provider);
    sigv4_creds_wipe(&s->creds);
    free(s);
}

void objstore_s3_uri_base(const struct objstore_s3 *s, char *out, size_t cap)
{
    snprintf(out, cap, "s3://%s/%s", s->bucket, s->prefix);
}

/* ---- errors ---- */

/* Copies the text between <tag> and </tag> (printable ASCII only) into out. */
static int xml_field(const char *body, size_t len, const char *tag, char *out, size_t cap)
{
    char open_[32], close_[32];
    size_t ol = (size_t)snprintf(open_, sizeof(open_), "<%s>", tag);
    size_t cl = (size_t)snprintf(close_, sizeof(close_), "</%s>", tag);
    const char *p = memmem(body, len, open_, ol), *q;
    size_t n = 0;
    out[0] = '\0';
    if (!p || cap == 0)
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

int objstore_s3_parse_error(const char *body, size_t len, char *code, size_t code_cap, char *msg,
                            size_t msg_cap)
{
    if (len > OBJSTORE_S3_ERROR_MAX)
        len = OBJSTORE_S3_ERROR_MAX;
    if (msg_cap)
        xml_field(body, len, "Message", msg, msg_cap);
    return xml_field(body, len, "Code", code, code_cap);
}

/* Maps a non-2xx S3 reply to a remex error naming the operation, S3's code and message. */
static remex_err s3_status(const char *what, const char *key, const struct http_response *r,
                           struct remex_error *e)
{
    char code[64], msg[200];
    remex_err rc = http_check_status(what, r->status, NULL, NULL);
    if (rc == REMEX_OK)
        return REMEX_OK;
    if (!objstore_s3_parse_error(r->body.data ? r->body.data : "", r->body.len, code, sizeof(code),
                                 msg, sizeof(msg)))
        return remex_seterr(e, rc, "s3 %s %s: HTTP %ld", what, key, r->status);
    if (strcmp(code, "SignatureDoesNotMatch") == 0)
        return remex_seterr(e, rc,
                            "s3 %s %s: HTTP %ld SignatureDoesNotMatch: the secret access key "
                            "does not match the access key id",
                            what, key, r->status);
    return remex_seterr(e, rc, "s3 %s %s: HTTP %ld %s: %s", what, key, r->status, code, msg);
}

/* ---- requests ---- */

/* The request path of key (NULL: the bucket: "/BUCKET" path style, "/"
 * virtual host, as the SDKs send it), encoded as SigV4 signs it. */
static remex_err s3_path(const struct objstore_s3 *s, const char *key, struct buf *path)
{
    remex_err rc = REMEX_OK;
    if (s->path_style)
        rc = buf_printf(path, "/%s", s->bucket);
    if (rc == REMEX_OK && (key || !s->path_style))
        rc = buf_putc(path, '/');
    if (rc == REMEX_OK && key) {
        rc = sigv4_uri_encode(path, s->prefix, strlen(s->prefix), 1);
        if (rc == REMEX_OK)
            rc = sigv4_uri_encode(path, key, strlen(key), 1);
    }
    return rc;
}

/* Sends one signed request for key (NULL: the bucket) with a canonical query
 * (sorted, encoded; "" for none) and checks its status. */
static remex_err s3_request(struct objstore_s3 *s, const char *method, const char *key,
                            const char *query, const void *body, size_t len,
                            struct http_response *resp, struct remex_error *e)
{
    struct buf path = BUF_INIT(4 * OBJSTORE_KEY_MAX), authz = BUF_INIT(2048);
    char phash[HASH_SHA256_HEX], date[17], hh[S3_HOST_MAX + 8], dh[40], ch[100], ah[2200];
    char th[SIGV4_TOKEN_MAX + 32];
    struct sigv4_header sh[4];
    const char *lines[6];
    size_t nh = 0, nl = 0;
    remex_err rc = s3_path(s, key, &path);

    if (rc == REMEX_OK)
        rc = hash_sha256_hex(body, len, phash);
    if (rc == REMEX_OK && (rc = awscreds_get(s->provider, &s->creds, e)) != REMEX_OK) {
        buf_free(&path);
        buf_free(&authz);
        return rc;
    }
    sigv4_amz_date(time(NULL), date);
    sh[nh++] = (struct sigv4_header){"host", s->host};
    sh[nh++] = (struct sigv4_header){"x-amz-content-sha256", phash};
    sh[nh++] = (struct sigv4_header){"x-amz-date", date};
    if (s->creds.session_token[0])
        sh[nh++] = (struct sigv4_header){"x-amz-security-token", s->creds.session_token};
    struct sigv4_input in = {.method = method,
                             .path = buf_cstr(&path),
                             .query = query,
                             .headers = sh,
                             .nheaders = nh,
                             .payload_hash = phash,
                             .region = s->region,
                             .service = "s3",
                             .amz_date = date};
    if (rc == REMEX_OK)
        rc = sigv4_authorization(&s->creds, &in, &authz);
    if (rc != REMEX_OK || authz.len + 32 > sizeof(ah)) {
        buf_free(&path);
        buf_free(&authz);
        return remex_seterr(e, rc ? rc : REMEX_ETOOBIG, "s3 %s: cannot sign the request", method);
    }
    snprintf(hh, sizeof(hh), "Host: %s", s->host);
    snprintf(dh, sizeof(dh), "x-amz-date: %s", date);
    snprintf(ch, sizeof(ch), "x-amz-content-sha256: %s", phash);
    snprintf(ah, sizeof(ah), "Authorization: %s", buf_cstr(&authz));
    lines[nl++] = hh;
    lines[nl++] = dh;
    lines[nl++] = ch;
    lines[nl++] = ah;
    if (s->creds.session_token[0]) {
        snprintf(th, sizeof(th), "x-amz-security-token: %s", s->creds.session_token);
        lines[nl++] = th;
    }
    lines[nl] = NULL;
    struct http_request req = {.method = method,
                               .path = buf_cstr(&path),
                               .body = body,
                               .body_len = len,
                               .headers = lines,
                               .content_type = "application/octet-stream"};
    if (body == NULL && strcmp(method, "PUT") == 0)
        req.body = "";
    if (query[0] && (buf_putc(&path, '?') != REMEX_OK || buf_puts(&path, query) != REMEX_OK)) {
        buf_free(&path);
        buf_free(&authz);
        return remex_seterr(e, REMEX_ETOOBIG, "s3 %s: query too long", method);
    }
    req.path = buf_cstr(&path);
    rc = http_do(s->http, &req, resp, e);
    explicit_bzero(ah, sizeof(ah));
    explicit_bzero(th, sizeof(th));
    if (rc != REMEX_OK)
        remex_errprefix(e, "s3 %s %s", method, key ? key : s->bucket);
    else
        rc = s3_status(method, key ? key : s->bucket, resp, e);
    buf_free(&path);
    buf_free(&authz);
    return rc;
}

static remex_err s3_call(struct objstore_s3 *s, const char *method, const char *key,
                         const void *body, size_t len, struct http_response *resp,
                         struct remex_error *e)
{
    return s3_request(s, method, key, "", body, len, resp, e);
}

remex_err objstore_s3_put(struct objstore_s3 *s, const char *key, const void *data, size_t len,
                          struct remex_error *e)
{
    struct http_response r = {0};
    remex_err rc = s3_call(s, "PUT", key, data ? data : "", len, &r, e);
    http_response_free(&r);
    return rc;
}

remex_err objstore_s3_get(struct objstore_s3 *s, const char *key, struct buf *out,
                          struct remex_error *e)
{
    struct http_response r = {0};
    remex_err rc = s3_call(s, "GET", key, NULL, 0, &r, e);
    if (rc == REMEX_OK &&
        (rc = buf_append(out, r.body.data ? r.body.data : "", r.body.len)) == REMEX_ETOOBIG)
        remex_seterr(e, rc, "object store: %s: larger than %zu bytes", key, out->max);
    else if (rc == REMEX_ENOMEM)
        remex_seterr(e, rc, "object store: %s: out of memory", key);
    http_response_free(&r);
    return rc;
}

remex_err objstore_s3_delete(struct objstore_s3 *s, const char *key, struct remex_error *e)
{
    struct http_response r = {0};
    remex_err rc = s3_call(s, "DELETE", key, NULL, 0, &r, e);
    http_response_free(&r);
    return rc;
}

remex_err objstore_s3_first(struct objstore_s3 *s, const char *prefix, char *found, size_t cap,
                            struct remex_error *e)
{
    struct buf q = BUF_INIT(4 * OBJSTORE_KEY_MAX + 64);
    struct http_response r = {0};
    char key[2 * OBJSTORE_KEY_MAX + 8];
    size_t pl = strlen(s->prefix);
    remex_err rc = buf_puts(&q, "list-type=2&max-keys=1&prefix=");
    if (rc == REMEX_OK)
        rc = sigv4_uri_encode(&q, s->prefix, pl, 0);
    if (rc == REMEX_OK)
        rc = sigv4_uri_encode(&q, prefix, strlen(prefix), 0);
    rc = rc == REMEX_OK ? s3_request(s, "GET", NULL, buf_cstr(&q), NULL, 0, &r, e)
                        : remex_seterr(e, rc, "s3 list %s: prefix too long", prefix);
    buf_free(&q);
    if (rc != REMEX_OK) {
        http_response_free(&r);
        return rc;
    }
    /* The first <Key> of the listing (keys are checked ASCII: no entities). */
    int hit =
        objstore_s3_xml_first(r.body.data ? r.body.data : "", r.body.len, "Key", key, sizeof(key));
    http_response_free(&r);
    if (!hit || strncmp(key, s->prefix, pl) != 0 || strncmp(key + pl, prefix, strlen(prefix)) != 0)
        return remex_seterr(e, REMEX_ENOTFOUND, "object store: %s: no object", prefix);
    snprintf(found, cap, "%s", key + pl);
    return REMEX_OK;
}

int objstore_s3_xml_first(const char *body, size_t len, const char *tag, char *out, size_t cap)
{
    if (len > OBJSTORE_LIST_REPLY_MAX)
        len = OBJSTORE_LIST_REPLY_MAX;
    if (strlen(tag) > 24) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    return xml_field(body, len, tag, out, cap);
}
