/* http: libcurl client with timeouts, size caps, TLS policy and retries. */
#include "remex/http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "remex/backoff.h"
#include "remex/json.h"
#include "remex/version.h"
#include "remex/timeutil.h"

#define UA "remex/" REMEX_VERSION

struct http_client {
    char *base_url;
    char *ca_file;
    char *proxy;
    char *bearer; /* secret: wiped before free */
    long connect_timeout_ms;
    long timeout_ms;
    size_t max_response;
    int allow_insecure_http;
    int insecure_skip_verify;
    unsigned max_attempts;
    struct backoff backoff;
    CURL *easy; /* reused by http_do for connection reuse */
};

/* One request: its copied inputs, one easy handle and the current attempt's state. */
struct xfer {
    struct http_client *c;
    CURL *easy;
    int own_easy;
    struct curl_slist *hdrs; /* holds the Authorization line: wiped before free */
    char *url;
    char what[160]; /* "METHOD /path" for messages (truncated) */
    char method[16];
    char *body;
    size_t body_len;
    int may_retry;
    struct http_response resp;
    long retry_after_ms; /* -1: none in this attempt's response */
    int toobig;
    const struct http_stream *stream; /* borrowed; blocking http_do only */
    int stream_err;                   /* 1: the source failed, 2: the sink failed */
    char errbuf[CURL_ERROR_SIZE];
    /* multi only */
    struct http_multi *m;
    struct xfer *next;
    uint64_t due_ms; /* retry start time while waiting, 0 while active */
    struct http_multi_done done;
};

struct http_multi {
    CURLM *cm;
    struct http_multi_hooks hooks;
    struct xfer *list; /* every pending transfer */
    size_t pending;
    long curl_due_ms; /* monotonic ms when curl wants a timeout call; -1: none */
};

/* ---- process-wide init ---- */

static pthread_mutex_t global_mu = PTHREAD_MUTEX_INITIALIZER;
static int global_done;    /* under global_mu */
static int global_tls = 1; /* fixed once global_done is set */
static CURLcode global_rc = CURLE_OK;

/*
 * tls = 0 starts OpenSSL without its configuration file and error strings
 * before curl_global_init asks for both: the NO_ flags win because OpenSSL
 * runs each of these steps once, whichever request comes first. Digests and
 * HMAC (the default provider) work the same either way.
 */
static remex_err global_start(int tls, struct remex_error *e)
{
    int ok = 1;
    pthread_mutex_lock(&global_mu);
    if (!global_done) {
        global_done = 1;
        if (tls == 0) {
            global_tls = 0;
            ok = OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_LOAD_SSL_STRINGS |
                                      OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS,
                                  NULL);
        }
        global_rc = ok ? curl_global_init(CURL_GLOBAL_DEFAULT) : CURLE_FAILED_INIT;
    }
    pthread_mutex_unlock(&global_mu);
    if (global_rc != CURLE_OK)
        return remex_seterr(e, REMEX_EIO, "http: curl_global_init: %s",
                            curl_easy_strerror(global_rc));
    return REMEX_OK;
}

remex_err http_global_init(int tls, struct remex_error *e)
{
    return global_start(tls ? 1 : 0, e);
}

static remex_err ensure_global(struct remex_error *e)
{
    return global_start(-1, e);
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void wipe_slist(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p != NULL; p = p->next)
        explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

/* ---- URL policy ---- */

static int host_is_loopback(const char *host)
{
    char tmp[64];
    struct in_addr a4;
    struct in6_addr a6;
    size_t n = strlen(host);

    if (strcasecmp(host, "localhost") == 0)
        return 1;
    /* RFC 6761: names under .localhost are loopback; libcurl resolves them so itself. */
    if (n > 10 && strcasecmp(host + n - 10, ".localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (n >= 2 && n < sizeof(tmp) && host[0] == '[' && host[n - 1] == ']') {
        memcpy(tmp, host + 1, n - 2);
        tmp[n - 2] = '\0';
        return inet_pton(AF_INET6, tmp, &a6) == 1 && memcmp(&a6, &in6addr_loopback, 16) == 0;
    }
    return 0;
}

/* Checks scheme and host of url against the plain-http policy, without any I/O. */
static remex_err check_url(const char *url, int allow_insecure, struct remex_error *e)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    remex_err rc = REMEX_OK;

    if (u == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "http: out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        rc = remex_seterr(e, REMEX_EINVAL, "http: invalid URL");
    } else if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0) {
        rc = remex_seterr(e, REMEX_EINVAL, "http: unsupported URL scheme '%s'", scheme);
    } else if (strcmp(scheme, "https") == 0 && !global_tls) {
        rc = remex_seterr(e, REMEX_ETLS,
                          "http: https:// to '%s' in a process started without TLS "
                          "(http_global_init)",
                          host);
    } else if (strcmp(scheme, "http") == 0 && !allow_insecure && !host_is_loopback(host)) {
        rc = remex_seterr(e, REMEX_EPERM,
                          "http: plain http:// to '%s' refused: use https:// or set "
                          "allow_insecure_http (only loopback hosts are allowed by default)",
                          host);
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* ---- client ---- */

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static char *dup_or_null(const char *s, int *failed)
{
    char *d;
    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *failed = 1;
    return d;
}

remex_err http_client_new(const struct http_client_opts *o, struct http_client **out,
                          struct remex_error *e)
{
    struct http_client *c;
    int failed = 0;
    remex_err rc;

    *out = NULL;
    if ((rc = ensure_global(e)) != REMEX_OK)
        return rc;
    if (o == NULL || o->base_url == NULL || has_ctl(o->base_url))
        return remex_seterr(e, REMEX_EINVAL, "http: base_url missing or invalid");
    if ((rc = check_url(o->base_url, o->allow_insecure_http, e)) != REMEX_OK)
        return rc;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "http: out of memory");
    c->base_url = dup_or_null(o->base_url, &failed);
    c->ca_file = dup_or_null(o->ca_file, &failed);
    c->proxy = dup_or_null(o->proxy, &failed);
    if (failed) {
        http_client_free(c);
        return remex_seterr(e, REMEX_ENOMEM, "http: out of memory");
    }
    /* A trailing '/' would double with the request path's leading one. */
    for (size_t n = strlen(c->base_url); n > 0 && c->base_url[n - 1] == '/'; n--)
        c->base_url[n - 1] = '\0';
    c->connect_timeout_ms =
        o->connect_timeout_ms > 0 ? o->connect_timeout_ms : HTTP_CONNECT_TIMEOUT_MS_DEFAULT;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : HTTP_TIMEOUT_MS_DEFAULT;
    c->max_response = o->max_response_bytes ? o->max_response_bytes : HTTP_MAX_RESPONSE_DEFAULT;
    c->allow_insecure_http = o->allow_insecure_http;
    c->insecure_skip_verify = o->insecure_skip_verify;
    c->max_attempts = o->max_attempts ? o->max_attempts : HTTP_MAX_ATTEMPTS_DEFAULT;
    c->backoff.base_ms = o->backoff_base_ms ? o->backoff_base_ms : HTTP_BACKOFF_BASE_MS_DEFAULT;
    c->backoff.cap_ms = o->backoff_cap_ms ? o->backoff_cap_ms : HTTP_BACKOFF_CAP_MS_DEFAULT;
    c->backoff.rng = o->rng;
    c->backoff.rng_ctx = o->rng_ctx;
    *out = c;
    return REMEX_OK;
}

void http_client_free(struct http_client *c)
{
    if (c == NULL)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    free(c->base_url);
    free(c->ca_file);
    free(c->proxy);
    wipe_free(c->bearer);
    free(c);
}

remex_err http_client_set_bearer(struct http_client *c, const char *token)
{
    char *t = NULL;

    if (token != NULL) {
        if (has_ctl(token))
            return REMEX_EINVAL;
        t = strdup(token);
        if (t == NULL)
            return REMEX_ENOMEM;
    }
    wipe_free(c->bearer);
    c->bearer = t;
    return REMEX_OK;
}

/* ---- one request ---- */

static int method_idempotent(const char *m)
{
    static const char *const idem[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof(idem) / sizeof(idem[0]); i++)
        if (strcmp(m, idem[i]) == 0)
            return 1;
    return 0;
}

static void xfer_free(struct xfer *x)
{
    if (x == NULL)
        return;
    if (x->own_easy && x->easy)
        curl_easy_cleanup(x->easy);
    wipe_slist(x->hdrs);
    free(x->url);
    free(x->body);
    buf_free(&x->resp.body);
    free(x);
}

static remex_err add_header(struct curl_slist **l, const char *line)
{
    struct curl_slist *n = curl_slist_append(*l, line);
    if (n == NULL)
        return REMEX_ENOMEM;
    *l = n;
    return REMEX_OK;
}

static remex_err xfer_headers(struct xfer *x, const struct http_request *req)
{
    const char *bearer = req->bearer ? req->bearer : x->c->bearer;
    remex_err rc = add_header(&x->hdrs, "Accept: application/json");

    if (rc == REMEX_OK)
        rc = add_header(&x->hdrs, "Expect:");
    if (rc == REMEX_OK && (req->body != NULL || (req->stream && req->stream->read))) {
        const char *ct = req->content_type ? req->content_type : "application/json";
        char line[256];
        if (has_ctl(ct) ||
            (size_t)snprintf(line, sizeof(line), "Content-Type: %s", ct) >= sizeof(line))
            return REMEX_EINVAL;
        rc = add_header(&x->hdrs, line);
    }
    if (rc == REMEX_OK && bearer != NULL) {
        size_t n = strlen(bearer) + sizeof("Authorization: Bearer ");
        char *line;
        if (has_ctl(bearer))
            return REMEX_EINVAL;
        line = malloc(n);
        if (line == NULL)
            return REMEX_ENOMEM;
        snprintf(line, n, "Authorization: Bearer %s", bearer);
        rc = add_header(&x->hdrs, line);
        explicit_bzero(line, n);
        free(line);
    }
    for (const char *const *h = req->headers; rc == REMEX_OK && h && *h; h++) {
        if (has_ctl(*h) || strchr(*h, ':') == NULL)
            return REMEX_EINVAL;
        rc = add_header(&x->hdrs, *h);
    }
    return rc;
}

/* Validates req and copies it into a new xfer (no I/O). */
static remex_err xfer_new(struct http_client *c, const struct http_request *req, struct xfer **out,
                          struct remex_error *e)
{
    struct xfer *x;
    size_t ml, ul;
    remex_err rc;

    *out = NULL;
    if (c == NULL || req == NULL || req->method == NULL || req->path == NULL)
        return remex_seterr(e, REMEX_EINVAL, "http: missing client, method or path");
    ml = strlen(req->method);
    if (ml == 0 || ml >= sizeof(x->method) ||
        strspn(req->method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != ml)
        return remex_seterr(e, REMEX_EINVAL, "http: invalid method");
    if (req->path[0] != '/' || has_ctl(req->path) || strchr(req->path, ' ') != NULL)
        return remex_seterr(e, REMEX_EINVAL, "http: path must start with '/' and hold no spaces");
    x = calloc(1, sizeof(*x));
    if (x == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "http: out of memory");
    x->c = c;
    memcpy(x->method, req->method, ml + 1);
    /* the query stays out of messages: it may carry a credential (a SAS token) */
    snprintf(x->what, sizeof(x->what), "%s %.*s", req->method, (int)strcspn(req->path, "?"),
             req->path);
    x->may_retry = method_idempotent(req->method) || req->retry_safe;
    x->stream = req->stream;
    buf_init(&x->resp.body, c->max_response);
    ul = strlen(c->base_url) + strlen(req->path) + 1;
    x->url = malloc(ul);
    if (x->url == NULL)
        goto nomem;
    snprintf(x->url, ul, "%s%s", c->base_url, req->path);
    if ((rc = check_url(x->url, c->allow_insecure_http, e)) != REMEX_OK) {
        xfer_free(x);
        return rc;
    }
    if (req->body != NULL) {
        x->body = malloc(req->body_len ? req->body_len : 1);
        if (x->body == NULL)
            goto nomem;
        memcpy(x->body, req->body, req->body_len);
        x->body_len = req->body_len;
    }
    rc = xfer_headers(x, req);
    if (rc != REMEX_OK) {
        xfer_free(x);
        if (rc == REMEX_ENOMEM)
            return remex_seterr(e, rc, "http: out of memory");
        return remex_seterr(e, rc, "%s: invalid header value", req->method);
    }
    *out = x;
    return REMEX_OK;
nomem:
    xfer_free(x);
    return remex_seterr(e, REMEX_ENOMEM, "http: out of memory");
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    long status = 0;

    if (x->stream && x->stream->write) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            if (x->stream->write(p, n, x->stream->ud) == 0)
                return n;
            x->stream_err = 2;
            return 0;
        }
    }
    if (buf_append(&x->resp.body, p, n) != REMEX_OK) {
        x->toobig = 1;
        return 0; /* aborts with CURLE_WRITE_ERROR */
    }
    return n;
}

/* Parses a Retry-After value: delta-seconds or an HTTP-date. -1 if invalid. */
static long parse_retry_after(const char *v)
{
    char *end;
    long long s;
    time_t t;

    while (*v == ' ' || *v == '\t')
        v++;
    if (isdigit((unsigned char)*v)) {
        errno = 0;
        s = strtoll(v, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (errno != 0 || *end != '\0' || s < 0)
            return -1;
        return s > 86400 ? 86400000L : (long)s * 1000L;
    }
    t = curl_getdate(v, NULL);
    if (t == (time_t)-1)
        return -1;
    t -= time(NULL);
    if (t < 0)
        return 0;
    return t > 86400 ? 86400000L : (long)t * 1000L;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    char v[128];

    if (x->stream && x->stream->header) {
        size_t l = n;
        while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == '\n'))
            l--;
        x->stream->header(p, l, x->stream->ud);
    }
    if (n > sizeof(name) - 1 && n - (sizeof(name) - 1) < sizeof(v) &&
        strncasecmp(p, name, sizeof(name) - 1) == 0) {
        memcpy(v, p + sizeof(name) - 1, n - (sizeof(name) - 1));
        v[n - (sizeof(name) - 1)] = '\0';
        x->retry_after_ms = parse_retry_after(v);
    }
    return n;
}

static size_t on_upload(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = x->stream->read(p, size * nmemb, x->stream->ud);
    if (n == HTTP_STREAM_ABORT || n > size * nmemb) {
        x->stream_err = 1;
        return CURL_READFUNC_ABORT;
    }
    return n;
}

/* The streaming options of one attempt (x->stream set). */
static int xfer_setup_stream(struct xfer *x)
{
    CURL *h = x->easy;
    int ok = 1;
#define SET(opt, val) ok &= curl_easy_setopt(h, opt, val) == CURLE_OK
    SET(CURLOPT_TIMEOUT_MS, 0L);
    SET(CURLOPT_LOW_SPEED_LIMIT, HTTP_STREAM_LOW_SPEED);
    SET(CURLOPT_LOW_SPEED_TIME, x->c->timeout_ms / 1000 > 0 ? x->c->timeout_ms / 1000 : 1L);
    if (x->stream->write)
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)0);
    if (x->stream->read) {
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READFUNCTION, on_upload);
        SET(CURLOPT_READDATA, x);
        SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->stream->upload_len);
        if (strcmp(x->method, "PUT") != 0)
            SET(CURLOPT_CUSTOMREQUEST, x->method);
    }
#undef SET
    return ok;
}

/* Configures x->easy for one attempt. */
static remex_err xfer_setup(struct xfer *x)
{
    struct http_client *c = x->c;
    CURL *h = x->easy;
    int ok = 1;

    buf_reset(&x->resp.body);
    x->resp.status = 0;
    x->retry_after_ms = -1;
    x->toobig = 0;
    x->stream_err = 0;
    x->errbuf[0] = '\0';
#define SET(opt, val) ok &= curl_easy_setopt(h, opt, val) == CURLE_OK
    SET(CURLOPT_URL, x->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_USERAGENT, UA);
    SET(CURLOPT_HTTPHEADER, x->hdrs);
    SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, c->timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, x);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_SSL_VERIFYPEER, c->insecure_skip_verify ? 0L : 1L);
    SET(CURLOPT_SSL_VERIFYHOST, c->insecure_skip_verify ? 0L : 2L);
    SET(CURLOPT_PRIVATE, x);
    if (c->ca_file)
        SET(CURLOPT_CAINFO, c->ca_file);
    if (c->proxy)
        SET(CURLOPT_PROXY, c->proxy);
    if (x->body != NULL) {
        SET(CURLOPT_POSTFIELDS, x->body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
        if (strcmp(x->method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, x->method);
    } else if (x->stream && x->stream->read) {
        /* the body is streamed: xfer_setup_stream sets the method */
    } else if (strcmp(x->method, "POST") == 0) {
        SET(CURLOPT_POSTFIELDS, "");
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    } else if (strcmp(x->method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(x->method, "GET") != 0) {
        SET(CURLOPT_CUSTOMREQUEST, x->method);
    }
#undef SET
    if (x->stream)
        ok &= xfer_setup_stream(x);
    return ok ? REMEX_OK : REMEX_EINVAL;
}

/* Maps the outcome of an attempt to a remex_err; REMEX_OK when a response arrived. */
static remex_err xfer_result(struct xfer *x, CURLcode cc, struct remex_error *e)
{
    const char *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc);

    if (cc == CURLE_OK) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->resp.status);
        return REMEX_OK;
    }
    if (x->stream_err == 1)
        return remex_seterr(e, REMEX_EIO, "%s: reading the request body failed", x->what);
    if (x->stream_err == 2)
        return remex_seterr(e, REMEX_ESYS, "%s: storing the response body failed", x->what);
    if (x->toobig || cc == CURLE_FILESIZE_EXCEEDED)
        return remex_seterr(e, REMEX_ETOOBIG, "%s: response exceeds %zu bytes", x->what,
                            x->c->max_response);
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return remex_seterr(e, REMEX_ECONNECT, "%s: connection failed: %s", x->what, why);
    case CURLE_OPERATION_TIMEDOUT:
        return remex_seterr(e, REMEX_ETIMEOUT, "%s: timed out: %s", x->what, why);
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
        return remex_seterr(e, REMEX_ETLS, "%s: TLS: %s", x->what, why);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return remex_seterr(e, REMEX_EINVAL, "%s: %s", x->what, why);
    case CURLE_OUT_OF_MEMORY:
        return remex_seterr(e, REMEX_ENOMEM, "%s: out of memory", x->what);
    default:
        return remex_seterr(e, REMEX_EIO, "%s: %s", x->what, why);
    }
}

int http_retryable(remex_err rc, long status)
{
    if (rc == REMEX_ECONNECT || rc == REMEX_ETIMEOUT || rc == REMEX_EIO || rc == REMEX_ECLOSED)
        return 1;
    if (rc != REMEX_OK)
        return 0;
    return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
           status == 504;
}

/*
 * Decides whether the attempt just finished (result rc) is retried; returns the
 * delay in ms, or -1 for "done".
 */
static long xfer_retry_delay(struct xfer *x, remex_err rc)
{
    if (!http_retryable(rc, x->resp.status) || !x->may_retry || x->stream_err ||
        x->resp.attempts >= x->c->max_attempts)
        return -1;
    if (rc == REMEX_OK && x->retry_after_ms >= 0)
        return x->retry_after_ms < (long)x->c->backoff.cap_ms ? x->retry_after_ms
                                                              : (long)x->c->backoff.cap_ms;
    return (long)backoff_full_jitter(&x->c->backoff, x->resp.attempts - 1);
}

/* Moves the response out of x into resp (which takes ownership of the body). */
static void xfer_give_response(struct xfer *x, struct http_response *resp)
{
    *resp = x->resp;
    buf_init(&x->resp.body, x->c->max_response);
}

remex_err http_do(struct http_client *c, const struct http_request *req, struct http_response *resp,
                  struct remex_error *e)
{
    struct xfer *x;
    remex_err rc;
    long delay;

    memset(resp, 0, sizeof(*resp));
    buf_init(&resp->body, c ? c->max_response : 0);
    if ((rc = xfer_new(c, req, &x, e)) != REMEX_OK)
        return rc;
    if (c->easy == NULL && (c->easy = curl_easy_init()) == NULL) {
        xfer_free(x);
        return remex_seterr(e, REMEX_ENOMEM, "http: curl_easy_init failed");
    }
    x->easy = c->easy;
    for (;;) {
        curl_easy_reset(x->easy);
        if (xfer_setup(x) != REMEX_OK) {
            rc = remex_seterr(e, REMEX_EINVAL, "%s: curl rejected an option", x->what);
            break;
        }
        if (x->stream && x->stream->reset && x->stream->reset(x->stream->ud) != 0) {
            rc = remex_seterr(e, REMEX_EIO, "%s: cannot restart the body", x->what);
            break;
        }
        x->resp.attempts++;
        rc = xfer_result(x, curl_easy_perform(x->easy), e);
        delay = xfer_retry_delay(x, rc);
        if (delay < 0)
            break;
        timeutil_sleep_ms((uint64_t)delay);
    }
    /* The easy handle points into x (headers, buffers): drop that before x goes. */
    curl_easy_reset(x->easy);
    xfer_give_response(x, resp);
    xfer_free(x);
    if (rc == REMEX_OK)
        remex_errclear(e);
    return rc;
}

void http_response_free(struct http_response *r)
{
    if (r != NULL)
        buf_free(&r->body);
}

/* ---- status mapping and JSON ---- */

/* Copies s into out as printable ASCII, replacing anything else with '?'. */
static void sanitize(char *out, size_t cap, const char *s)
{
    size_t i = 0;
    for (; s && *s && i + 1 < cap; s++)
        out[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[i] = '\0';
}

remex_err http_check_status(const char *what, long status, const struct buf *body,
                            struct remex_error *e)
{
    char code[64] = "", msg[200] = "";
    remex_err rc;
    json_t *doc = NULL, *err;

    if (status >= 200 && status < 300)
        return REMEX_OK;
    switch (status) {
    case 401:
        rc = REMEX_EAUTH;
        break;
    case 403:
        rc = REMEX_EFORBIDDEN;
        break;
    case 404:
        rc = REMEX_ENOTFOUND;
        break;
    case 409:
        rc = REMEX_ECONFLICT;
        break;
    case 413:
        rc = REMEX_ETOOBIG;
        break;
    default:
        rc = REMEX_EHTTP;
    }
    if (body != NULL && body->len > 0 &&
        json_parse(body->data, body->len, NULL, &doc, NULL) == REMEX_OK &&
        (err = json_object_get(doc, "error")) != NULL && json_is_object(err)) {
        sanitize(code, sizeof(code), json_string_value(json_object_get(err, "code")));
        sanitize(msg, sizeof(msg), json_string_value(json_object_get(err, "message")));
    }
    json_decref(doc);
    if (msg[0] || code[0])
        return remex_seterr(e, rc, "%s: HTTP %ld%s%s%s: %s", what ? what : "http", status,
                            code[0] ? " (" : "", code, code[0] ? ")" : "",
                            msg[0] ? msg : "no message");
    return remex_seterr(e, rc, "%s: HTTP %ld", what ? what : "http", status);
}

remex_err http_json_request_ex(struct http_client *c, const struct http_request *req0, json_t *body,
                               json_t **reply, long *status, struct remex_error *e)
{
    struct http_request req;
    struct http_response resp;
    struct buf out = BUF_INIT(64u * 1024u * 1024u);
    struct json_parse_opts po = {.name = "reply"};
    char what[160];
    remex_err rc;

    if (reply)
        *reply = NULL;
    if (status)
        *status = 0;
    if (c == NULL || req0 == NULL)
        return remex_seterr(e, REMEX_EINVAL, "http: missing client or request");
    req = *req0;
    req.body = NULL;
    req.body_len = 0;
    if (body != NULL) {
        if ((rc = json_serialize(body, 0, &out, e)) != REMEX_OK)
            return rc;
        req.body = out.data;
        req.body_len = out.len;
        req.content_type = "application/json";
    }
    rc = http_do(c, &req, &resp, e);
    buf_free(&out);
    if (status)
        *status = resp.status;
    if (rc == REMEX_OK) {
        snprintf(what, sizeof(what), "%s %s", req.method, req.path);
        rc = http_check_status(what, resp.status, &resp.body, e);
    }
    if (rc == REMEX_OK && resp.body.len > 0) {
        po.max_bytes = c->max_response;
        json_t *doc = NULL;
        rc = json_parse(resp.body.data, resp.body.len, &po, &doc, e);
        if (rc == REMEX_OK && reply)
            *reply = doc;
        else
            json_decref(doc);
        if (rc != REMEX_OK)
            remex_errprefix(e, "%s %s", req.method, req.path);
    }
    http_response_free(&resp);
    return rc;
}

remex_err http_json_request(struct http_client *c, const char *method, const char *path,
                            json_t *body, json_t **reply, long *status, struct remex_error *e)
{
    struct http_request req = {.method = method, .path = path};
    return http_json_request_ex(c, &req, body, reply, status, e);
}

/* ---- multi ---- */

static void multi_arm(struct http_multi *m)
{
    long due = m->curl_due_ms;
    long now = (long)timeutil_mono_ms();

    for (struct xfer *x = m->list; x; x = x->next)
        if (x->due_ms && (due < 0 || (long)x->due_ms < due))
            due = (long)x->due_ms;
    if (m->hooks.set_timer)
        m->hooks.set_timer(due < 0 ? -1 : (due > now ? due - now : 0), m->hooks.ud);
}

static int on_socket(CURL *h, curl_socket_t fd, int what, void *ud, void *sockp)
{
    struct http_multi *m = ud;
    int ev = 0;

    (void)h;
    (void)sockp;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev |= HTTP_EV_IN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev |= HTTP_EV_OUT;
    if (m->hooks.watch_fd)
        m->hooks.watch_fd(fd, what == CURL_POLL_REMOVE ? 0 : ev, m->hooks.ud);
    return 0;
}

static int on_timer(CURLM *cm, long timeout_ms, void *ud)
{
    struct http_multi *m = ud;

    (void)cm;
    m->curl_due_ms = timeout_ms < 0 ? -1 : (long)timeutil_mono_ms() + timeout_ms;
    multi_arm(m);
    return 0;
}

remex_err http_multi_new(const struct http_multi_hooks *hooks, struct http_multi **out,
                         struct remex_error *e)
{
    struct http_multi *m;
    remex_err rc;

    *out = NULL;
    if ((rc = ensure_global(e)) != REMEX_OK)
        return rc;
    m = calloc(1, sizeof(*m));
    if (m == NULL || (m->cm = curl_multi_init()) == NULL) {
        free(m);
        return remex_seterr(e, REMEX_ENOMEM, "http: curl_multi_init failed");
    }
    if (hooks)
        m->hooks = *hooks;
    m->curl_due_ms = -1;
    curl_multi_setopt(m->cm, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(m->cm, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->cm, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(m->cm, CURLMOPT_TIMERDATA, m);
    /* libcurl's default keeps four idle connections per transfer in progress, so
     * a burst of concurrent calls leaves connections that are closed as soon as
     * it ends and opened again by the next burst. */
    curl_multi_setopt(m->cm, CURLMOPT_MAXCONNECTS, (long)HTTP_MULTI_IDLE_MAX);
    *out = m;
    return REMEX_OK;
}

static void multi_unlink(struct http_multi *m, struct xfer *x)
{
    for (struct xfer **pp = &m->list; *pp; pp = &(*pp)->next) {
        if (*pp == x) {
            *pp = x->next;
            m->pending--;
            return;
        }
    }
}

void http_multi_free(struct http_multi *m)
{
    struct xfer *x, *next;

    if (m == NULL)
        return;
    /* Detached first: removing a handle can call on_timer, which walks m->list. */
    x = m->list;
    m->list = NULL;
    m->pending = 0;
    for (; x; x = next) {
        next = x->next;
        if (!x->due_ms)
            curl_multi_remove_handle(m->cm, x->easy);
        xfer_free(x);
    }
    curl_multi_cleanup(m->cm);
    free(m);
}

/* Starts one attempt of x on the multi. */
static remex_err multi_attempt(struct http_multi *m, struct xfer *x, struct remex_error *e)
{
    x->due_ms = 0;
    curl_easy_reset(x->easy);
    if (xfer_setup(x) != REMEX_OK)
        return remex_seterr(e, REMEX_EINVAL, "%s: curl rejected an option", x->what);
    x->resp.attempts++;
    if (curl_multi_add_handle(m->cm, x->easy) != CURLM_OK)
        return remex_seterr(e, REMEX_ENOMEM, "%s: curl_multi_add_handle failed", x->what);
    return REMEX_OK;
}

static void multi_finish(struct http_multi *m, struct xfer *x, remex_err rc,
                         const struct remex_error *err)
{
    struct http_response resp;
    struct remex_error ok = {REMEX_OK, ""};

    multi_unlink(m, x);
    xfer_give_response(x, &resp);
    if (x->done.fn)
        x->done.fn(rc, &resp, rc == REMEX_OK ? &ok : err, x->done.arg);
    http_response_free(&resp);
    xfer_free(x);
}

remex_err http_multi_start(struct http_multi *m, struct http_client *c,
                           const struct http_request *req, struct http_multi_done done,
                           struct remex_error *e)
{
    struct xfer *x;
    remex_err rc;

    if (req && req->stream)
        return remex_seterr(e, REMEX_EINVAL, "http: streamed bodies need http_do");
    if ((rc = xfer_new(c, req, &x, e)) != REMEX_OK)
        return rc;
    x->easy = curl_easy_init();
    if (x->easy == NULL) {
        xfer_free(x);
        return remex_seterr(e, REMEX_ENOMEM, "http: curl_easy_init failed");
    }
    x->own_easy = 1;
    x->m = m;
    x->done = done;
    x->next = m->list;
    m->list = x;
    m->pending++;
    if ((rc = multi_attempt(m, x, e)) != REMEX_OK) {
        multi_unlink(m, x);
        xfer_free(x);
    }
    return rc;
}

/* Collects finished transfers: completes them or schedules their retry. */
static void multi_collect(struct http_multi *m)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(m->cm, &left)) != NULL) {
        struct xfer *x = NULL;
        struct remex_error err = {REMEX_OK, ""};
        CURLcode cc = msg->data.result;
        remex_err rc;
        long delay;

        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        x = (struct xfer *)priv;
        curl_multi_remove_handle(m->cm, msg->easy_handle);
        rc = xfer_result(x, cc, &err);
        delay = xfer_retry_delay(x, rc);
        if (delay >= 0) {
            x->due_ms = timeutil_mono_ms() + (uint64_t)delay;
            if (x->due_ms == 0)
                x->due_ms = 1;
            continue;
        }
        multi_finish(m, x, rc, &err);
    }
}

/* Starts the retries that are due. */
static void multi_start_due(struct http_multi *m)
{
    uint64_t now = timeutil_mono_ms();
    struct xfer *x, *next;

    for (x = m->list; x; x = next) {
        next = x->next;
        if (x->due_ms && x->due_ms <= now) {
            struct remex_error err = {REMEX_OK, ""};
            remex_err rc = multi_attempt(m, x, &err);
            if (rc != REMEX_OK)
                multi_finish(m, x, rc, &err);
        }
    }
}

remex_err http_multi_socket_action(struct http_multi *m, int fd, int events)
{
    int running, mask = 0;

    if (events & HTTP_EV_IN)
        mask |= CURL_CSELECT_IN;
    if (events & HTTP_EV_OUT)
        mask |= CURL_CSELECT_OUT;
    if (events & HTTP_EV_ERR)
        mask |= CURL_CSELECT_ERR;
    if (curl_multi_socket_action(m->cm, fd, mask, &running) != CURLM_OK)
        return REMEX_EIO;
    multi_collect(m);
    multi_arm(m);
    return REMEX_OK;
}

remex_err http_multi_timeout(struct http_multi *m)
{
    int running;

    if (m->curl_due_ms >= 0 && m->curl_due_ms <= (long)timeutil_mono_ms()) {
        m->curl_due_ms = -1;
        if (curl_multi_socket_action(m->cm, CURL_SOCKET_TIMEOUT, 0, &running) != CURLM_OK)
            return REMEX_EIO;
        multi_collect(m);
    }
    multi_start_due(m);
    multi_arm(m);
    return REMEX_OK;
}

size_t http_multi_pending(const struct http_multi *m)
{
    return m->pending;
}
