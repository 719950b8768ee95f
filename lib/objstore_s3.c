/* objstore_s3: S3 and S3-compatible object storage over SigV4-signed HTTP. */
#include "remex/objstore_s3.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "remex/awscreds.h"
#include "remex/hash.h"
#include "remex/http.h"
#include "remex/objstore_http.h"
#include "remex/sigv4.h"

#define S3_HOST_MAX     512
#define S3_BUCKET_MAX   63
#define S3_RESPONSE_MAX (1u << 30) /* responses; callers' buffers cap further */
#define S3_MAX_PARTS    10000u     /* S3's limit on parts per upload */
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct objstore_s3 {
    char bucket[S3_BUCKET_MAX + 1];
    char prefix[OBJSTORE_KEY_MAX]; /* "" or "a/b/" */
    char region[64];
    char host[S3_HOST_MAX]; /* Host header value, port included when given */
    int path_style;
    uint64_t multipart_threshold; /* objects of this size or more go up in parts */
    uint64_t part_size;           /* at least OBJSTORE_PART_MIN */
    struct awscreds *provider;    /* owned */
    struct sigv4_creds creds;     /* current copy from provider; secret: wiped at close */
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
    s->multipart_threshold =
        o->multipart_threshold ? o->multipart_threshold : OBJSTORE_MULTIPART_THRESHOLD;
    s->part_size = o->part_size ? o->part_size : OBJSTORE_PART_SIZE;
    if (s->part_size < OBJSTORE_PART_MIN) {
        free(s);
        return remex_seterr(e, REMEX_EINVAL, "object store %s: part_size must be at least %llu",
                            url, (unsigned long long)OBJSTORE_PART_MIN);
    }
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
    if (rc == REMEX_OK)
        rc = objstore_http_client(base, S3_RESPONSE_MAX, o->ca_file, &s->http, e);
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

int objstore_s3_parse_error(const char *body, size_t len, char *code, size_t code_cap, char *msg,
                            size_t msg_cap)
{
    if (msg_cap)
        objstore_http_xml_field(body, len, "Message", msg, msg_cap);
    return objstore_http_xml_field(body, len, "Code", code, code_cap);
}

static int s3_is_sig(const char *code, const char *msg)
{
    (void)msg; /* S3 names the failure by its code alone */
    return strcmp(code, "SignatureDoesNotMatch") == 0;
}

/* Maps a non-2xx S3 reply to a remex error naming the operation, S3's code and message. */
static remex_err s3_status(const char *what, const char *key, const struct http_response *r,
                           struct remex_error *e)
{
    return objstore_http_status("s3", what, key, r, s3_is_sig,
                                "the secret access key does not match the access key id", e);
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

/* One S3 request: buffered (body, len) or streamed (stream with its payload hash). */
struct s3_req {
    const char *method;
    const char *key;   /* NULL: the bucket */
    const char *query; /* canonical query ("" or NULL: none): sorted, encoded */
    const void *body;
    size_t len;
    const struct http_stream *stream; /* NULL: buffered */
    const char *payload_hash;         /* hex SHA-256 of a streamed body */
    const char *content_md5;          /* base64, or NULL */
    int retry_safe;
};

/* The SigV4 Authorization value of a request on path (canonical, no query) into authz. */
static remex_err s3_sign(struct objstore_s3 *s, const struct s3_req *q, const char *path,
                         const char *phash, const char *date, struct buf *authz)
{
    struct sigv4_header sh[4];
    size_t nh = 0;
    sh[nh++] = (struct sigv4_header){"host", s->host};
    sh[nh++] = (struct sigv4_header){"x-amz-content-sha256", phash};
    sh[nh++] = (struct sigv4_header){"x-amz-date", date};
    if (s->creds.session_token[0])
        sh[nh++] = (struct sigv4_header){"x-amz-security-token", s->creds.session_token};
    struct sigv4_input in = {.method = q->method,
                             .path = path,
                             .query = q->query ? q->query : "",
                             .headers = sh,
                             .nheaders = nh,
                             .payload_hash = phash,
                             .region = s->region,
                             .service = "s3",
                             .amz_date = date};
    return sigv4_authorization(&s->creds, &in, authz);
}

/* Sends one signed request and checks its status. */
static remex_err s3_do(struct objstore_s3 *s, const struct s3_req *q, struct http_response *resp,
                       struct remex_error *e)
{
    struct buf path = BUF_INIT(4 * OBJSTORE_KEY_MAX + 512), authz = BUF_INIT(2048);
    char phash[HASH_SHA256_HEX], date[17], hh[S3_HOST_MAX + 8], dh[40], ch[100], ah[2200];
    char th[SIGV4_TOKEN_MAX + 32], mh[64];
    const char *lines[8], *query = q->query ? q->query : "";
    const char *name = q->key ? q->key : s->bucket;
    size_t nl = 0;
    remex_err rc = s3_path(s, q->key, &path);

    memset(resp, 0, sizeof(*resp));
    if (rc == REMEX_OK && q->stream)
        snprintf(phash, sizeof(phash), "%s", q->payload_hash);
    else if (rc == REMEX_OK)
        rc = hash_sha256_hex(q->body, q->len, phash);
    if (rc == REMEX_OK && (rc = awscreds_get(s->provider, &s->creds, e)) != REMEX_OK) {
        buf_free(&path);
        buf_free(&authz);
        return rc;
    }
    sigv4_amz_date(time(NULL), date);
    if (rc == REMEX_OK)
        rc = s3_sign(s, q, buf_cstr(&path), phash, date, &authz);
    if (rc == REMEX_OK && query[0])
        rc = buf_printf(&path, "?%s", query);
    if (rc != REMEX_OK || authz.len + 32 > sizeof(ah)) {
        buf_free(&path);
        buf_free(&authz);
        return remex_seterr(e, rc ? rc : REMEX_ETOOBIG, "s3 %s: cannot sign the request",
                            q->method);
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
    if (q->content_md5) {
        snprintf(mh, sizeof(mh), "Content-MD5: %s", q->content_md5);
        lines[nl++] = mh;
    }
    lines[nl] = NULL;
    struct http_request req = {.method = q->method,
                               .path = buf_cstr(&path),
                               .body = q->stream ? NULL : q->body,
                               .body_len = q->len,
                               .headers = lines,
                               .content_type = "application/octet-stream",
                               .retry_safe = q->retry_safe,
                               .stream = q->stream};
    if (!q->stream && q->body == NULL && strcmp(q->method, "PUT") == 0)
        req.body = "";
    rc = http_do(s->http, &req, resp, e);
    explicit_bzero(ah, sizeof(ah));
    explicit_bzero(th, sizeof(th));
    if (rc != REMEX_OK)
        remex_errprefix(e, "s3 %s %s", q->method, name);
    else
        rc = s3_status(q->method, name, resp, e);
    buf_free(&path);
    buf_free(&authz);
    return rc;
}

/* Sends one signed buffered request for key (NULL: the bucket) and checks its status. */
static remex_err s3_call(struct objstore_s3 *s, const char *method, const char *key,
                         const void *body, size_t len, struct http_response *resp,
                         struct remex_error *e)
{
    struct s3_req q = {.method = method, .key = key, .body = body, .len = len};
    return s3_do(s, &q, resp, e);
}

remex_err objstore_s3_put(struct objstore_s3 *s, const char *key, const void *data, size_t len,
                          struct remex_error *e)
{
    struct http_response r = {0};
    return objstore_http_done(s3_call(s, "PUT", key, data ? data : "", len, &r, e), &r, key, NULL,
                              e);
}

remex_err objstore_s3_get(struct objstore_s3 *s, const char *key, struct buf *out,
                          struct remex_error *e)
{
    struct http_response r = {0};
    return objstore_http_done(s3_call(s, "GET", key, NULL, 0, &r, e), &r, key, out, e);
}

remex_err objstore_s3_delete(struct objstore_s3 *s, const char *key, struct remex_error *e)
{
    struct http_response r = {0};
    return objstore_http_done(s3_call(s, "DELETE", key, NULL, 0, &r, e), &r, key, NULL, e);
}

/* ---- streaming ---- */

/* Single PUT of fd[0, size): S3 checks the signed SHA-256 and the Content-MD5. */
static remex_err s3_put_single(struct objstore_s3 *s, const char *key, int fd, uint64_t size,
                               void *whole, struct remex_error *e)
{
    struct objstore_digest d;
    struct objstore_src src;
    struct http_response r;
    unsigned char md5b64[32];
    remex_err rc = objstore_digest_range(fd, 0, size, whole, NULL, &d, e);
    if (rc != REMEX_OK) {
        remex_errprefix(e, "s3 PUT %s", key);
        return rc;
    }
    EVP_EncodeBlock(md5b64, d.md5, 16);
    objstore_src_init(&src, fd, 0, size);
    struct s3_req q = {.method = "PUT",
                       .key = key,
                       .stream = &src.st,
                       .payload_hash = d.sha256_hex,
                       .content_md5 = (const char *)md5b64};
    rc = s3_do(s, &q, &r, e);
    http_response_free(&r);
    return rc;
}

/* Part size for size bytes: the configured one, raised to keep within S3_MAX_PARTS. */
static uint64_t s3_part_size(const struct objstore_s3 *s, uint64_t size)
{
    uint64_t p = s->part_size;
    if ((size + p - 1) / p > S3_MAX_PARTS) {
        p = (size + S3_MAX_PARTS - 1) / S3_MAX_PARTS;
        p = (p + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
    }
    return p;
}

/* The upload id of a CreateMultipartUpload reply, encoded for a query string. */
static remex_err s3_create_upload(struct objstore_s3 *s, const char *key, struct buf *qid,
                                  struct remex_error *e)
{
    struct http_response r;
    char id[1024];
    struct s3_req q = {
        .method = "POST", .key = key, .query = "uploads=", .body = "", .retry_safe = 1};
    remex_err rc = s3_do(s, &q, &r, e);
    if (rc == REMEX_OK &&
        !objstore_http_xml_field(r.body.data, r.body.len, "UploadId", id, sizeof(id)))
        rc = remex_seterr(e, REMEX_EPROTO, "s3 POST %s?uploads: no UploadId in the reply", key);
    if (rc == REMEX_OK)
        rc = sigv4_uri_encode(qid, id, strlen(id), 0);
    http_response_free(&r);
    return rc;
}

/* One part in flight: its file range and the ETag S3 answers with. */
struct s3_part {
    struct objstore_src src;
    char etag[80];
};

static void part_header(const char *line, size_t n, void *ud)
{
    struct s3_part *p = ud;
    size_t k = 0;
    if (n <= 5 || strncasecmp(line, "ETag:", 5) != 0)
        return;
    for (size_t i = 5; i < n && k + 1 < sizeof(p->etag); i++)
        if (line[i] > 0x20 && line[i] < 0x7f && line[i] != '"' && line[i] != '<' && line[i] != '&')
            p->etag[k++] = line[i];
    p->etag[k] = '\0';
}

static size_t part_read(void *dst, size_t cap, void *ud)
{
    struct s3_part *p = ud;
    return p->src.st.read(dst, cap, &p->src);
}

static int part_reset(void *ud)
{
    struct s3_part *p = ud;
    p->etag[0] = '\0';
    return p->src.st.reset(&p->src);
}

/*
 * Uploads part number n (fd[off, off+len)) and appends its <Part> to parts;
 * md5s (an MD5 context) is fed the part's MD5 and md5_all its bytes, for the
 * final ETag check.
 */
static remex_err s3_upload_part(struct objstore_s3 *s, const char *key, const char *qid, unsigned n,
                                int fd, uint64_t off, uint64_t len, void *whole, void *md5s,
                                void *md5_all, struct buf *parts, struct remex_error *e)
{
    struct objstore_digest d;
    struct s3_part p = {.etag = ""};
    struct http_response r;
    unsigned char md5b64[32];
    char query[1400], hex[33];
    remex_err rc = objstore_digest_range(fd, off, len, whole, md5_all, &d, e);
    if (rc != REMEX_OK)
        return rc;
    EVP_DigestUpdate(md5s, d.md5, 16);
    EVP_EncodeBlock(md5b64, d.md5, 16);
    objstore_src_init(&p.src, fd, off, len);
    struct http_stream st = {
        .read = part_read, .upload_len = len, .header = part_header, .reset = part_reset, .ud = &p};
    if ((size_t)snprintf(query, sizeof(query), "partNumber=%u&uploadId=%s", n, qid) >=
        sizeof(query))
        return remex_seterr(e, REMEX_ETOOBIG, "s3: upload id too long");
    struct s3_req q = {.method = "PUT",
                       .key = key,
                       .query = query,
                       .stream = &st,
                       .payload_hash = d.sha256_hex,
                       .content_md5 = (const char *)md5b64};
    rc = s3_do(s, &q, &r, e);
    http_response_free(&r);
    if (rc != REMEX_OK)
        return rc;
    hash_hex(d.md5, 16, hex);
    if (strcasecmp(p.etag, hex) != 0)
        return remex_seterr(e, REMEX_EPROTO, "s3 PUT %s part %u: ETag '%s' is not the part's MD5",
                            key, n, p.etag);
    return buf_printf(parts, "<Part><PartNumber>%u</PartNumber><ETag>\"%s\"</ETag></Part>", n,
                      p.etag) == REMEX_OK
               ? REMEX_OK
               : remex_seterr(e, REMEX_ENOMEM, "s3: out of memory");
}

/*
 * CompleteMultipartUpload; S3 may answer 200 with an <Error> body. The ETag it
 * answers must be want_parts (AWS: "<MD5 of the parts' MD5s>-<parts>") or
 * want_whole (the whole object's MD5, as some S3-compatible servers give).
 */
static remex_err s3_complete(struct objstore_s3 *s, const char *key, const char *qid,
                             const struct buf *parts, const char *want_parts,
                             const char *want_whole, struct remex_error *e)
{
    struct http_response r;
    char query[1200], code[64], etag[80];
    snprintf(query, sizeof(query), "uploadId=%s", qid);
    struct s3_req q = {.method = "POST",
                       .key = key,
                       .query = query,
                       .body = parts->data,
                       .len = parts->len,
                       .retry_safe = 1};
    remex_err rc = s3_do(s, &q, &r, e);
    if (rc == REMEX_OK &&
        objstore_http_xml_field(r.body.data, r.body.len, "Code", code, sizeof(code)))
        rc = s3_status("POST", key, &(struct http_response){.status = 500, .body = r.body}, e);
    if (rc == REMEX_OK &&
        objstore_http_xml_field(r.body.data, r.body.len, "ETag", etag, sizeof(etag))) {
        char *p = etag, *end;
        p += strspn(p, "\"&quot;");
        if ((end = strpbrk(p, "\"&")) != NULL)
            *end = '\0';
        if (strcasecmp(p, want_parts) != 0 && strcasecmp(p, want_whole) != 0)
            rc = remex_seterr(e, REMEX_EPROTO,
                              "s3 POST %s: multipart ETag '%s' matches neither the parts sent "
                              "('%s') nor the whole object's MD5",
                              key, p, want_parts);
    }
    http_response_free(&r);
    return rc;
}

static void s3_abort_upload(struct objstore_s3 *s, const char *key, const char *qid)
{
    struct http_response r;
    struct remex_error ignored;
    char query[1200];
    snprintf(query, sizeof(query), "uploadId=%s", qid);
    struct s3_req q = {.method = "DELETE", .key = key, .query = query};
    s3_do(s, &q, &r, &ignored); /* best effort: the failure that led here is what counts */
    http_response_free(&r);
}

/* Multipart upload of fd[0, size), aborted on any failure. */
static remex_err s3_put_multipart(struct objstore_s3 *s, const char *key, int fd, uint64_t size,
                                  void *whole, struct remex_error *e)
{
    struct buf qid = BUF_INIT(4096), parts = BUF_INIT((size_t)S3_MAX_PARTS * 128 + 256);
    uint64_t psize = s3_part_size(s, size), off = 0;
    EVP_MD_CTX *md5s = EVP_MD_CTX_new(), *md5_all = EVP_MD_CTX_new();
    unsigned char mm[16];
    unsigned int ml = 16;
    char want_parts[64], want_whole[33];
    unsigned n = 0;
    remex_err rc = md5s && md5_all && EVP_DigestInit_ex(md5s, EVP_md5(), NULL) == 1 &&
                           EVP_DigestInit_ex(md5_all, EVP_md5(), NULL) == 1
                       ? s3_create_upload(s, key, &qid, e)
                       : remex_seterr(e, REMEX_ENOMEM, "s3: out of memory");
    if (rc == REMEX_OK)
        rc = buf_puts(&parts, "<CompleteMultipartUpload>");
    while (rc == REMEX_OK && off < size) {
        uint64_t len = size - off < psize ? size - off : psize;
        rc = s3_upload_part(s, key, buf_cstr(&qid), ++n, fd, off, len, whole, md5s, md5_all, &parts,
                            e);
        off += len;
    }
    if (rc == REMEX_OK)
        rc = buf_puts(&parts, "</CompleteMultipartUpload>");
    if (rc == REMEX_OK) {
        char hex[33];
        EVP_DigestFinal_ex(md5s, mm, &ml);
        hash_hex(mm, 16, hex);
        snprintf(want_parts, sizeof(want_parts), "%s-%u", hex, n);
        ml = 16;
        EVP_DigestFinal_ex(md5_all, mm, &ml);
        hash_hex(mm, 16, want_whole);
        rc = s3_complete(s, key, buf_cstr(&qid), &parts, want_parts, want_whole, e);
    }
    if (rc != REMEX_OK && qid.len > 0)
        s3_abort_upload(s, key, buf_cstr(&qid));
    EVP_MD_CTX_free(md5s);
    EVP_MD_CTX_free(md5_all);
    buf_free(&qid);
    buf_free(&parts);
    return rc;
}

remex_err objstore_s3_put_file(struct objstore_s3 *s, const char *key, int fd, uint64_t size,
                               char sum[72], struct remex_error *e)
{
    void *whole = objstore_digest_new();
    remex_err rc;
    if (!whole)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    rc = size >= s->multipart_threshold ? s3_put_multipart(s, key, fd, size, whole, e)
                                        : s3_put_single(s, key, fd, size, whole, e);
    if (rc == REMEX_OK)
        objstore_digest_final(whole, sum);
    objstore_digest_free(whole);
    return rc;
}

remex_err objstore_s3_get_stream(struct objstore_s3 *s, const char *key,
                                 const struct http_stream *sink, struct remex_error *e)
{
    struct http_response r;
    struct s3_req q = {
        .method = "GET", .key = key, .stream = sink, .payload_hash = S3_EMPTY_SHA256};
    remex_err rc = s3_do(s, &q, &r, e);
    http_response_free(&r);
    return rc;
}

remex_err objstore_s3_first(struct objstore_s3 *s, const char *prefix, char *found, size_t cap,
                            struct remex_error *e)
{
    struct buf q = BUF_INIT(4 * OBJSTORE_KEY_MAX + 64);
    struct http_response r = {0};
    char key[2 * OBJSTORE_KEY_MAX + 8];
    remex_err rc = buf_puts(&q, "list-type=2&max-keys=1&prefix=");
    if (rc == REMEX_OK)
        rc = sigv4_uri_encode(&q, s->prefix, strlen(s->prefix), 0);
    if (rc == REMEX_OK)
        rc = sigv4_uri_encode(&q, prefix, strlen(prefix), 0);
    if (rc == REMEX_OK) {
        struct s3_req req = {.method = "GET", .query = buf_cstr(&q), .retry_safe = 1};
        rc = s3_do(s, &req, &r, e);
    } else {
        remex_seterr(e, rc, "s3 list %s: prefix too long", prefix);
    }
    buf_free(&q);
    if (rc != REMEX_OK) {
        http_response_free(&r);
        return rc;
    }
    /* The first <Key> of the listing (keys are checked ASCII: no entities). */
    int hit =
        objstore_s3_xml_first(r.body.data ? r.body.data : "", r.body.len, "Key", key, sizeof(key));
    http_response_free(&r);
    return objstore_http_found(hit ? key : NULL, s->prefix, prefix, found, cap, e);
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
    return objstore_http_xml_field(body, len, tag, out, cap);
}
