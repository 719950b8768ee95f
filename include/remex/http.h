/*
 * http: libcurl client with timeouts, size caps, TLS policy and retries.
 *
 * Policy (all per client, fixed at http_client_new):
 *   - TLS peer and host verification always on unless insecure_skip_verify
 *     (tests only); optional CA file.
 *   - Plain http:// is refused unless the host is loopback (127.0.0.0/8, ::1,
 *     localhost) or allow_insecure_http is set. The check runs on the base URL
 *     at creation and on every request URL before any connection attempt.
 *   - Only http and https, no redirects, User-Agent "remex/<REMEX_VERSION>".
 *   - A response body over max_response_bytes aborts the transfer
 *     (REMEX_ETOOBIG, not retried).
 *   - Retries with full-jitter backoff (remex/backoff.h) when http_retryable()
 *     says so, up to max_attempts in all. Retry-After
 *     (seconds or HTTP-date) replaces the jittered delay, capped at the backoff
 *     cap. Methods other than GET, HEAD, PUT, DELETE, OPTIONS are retried only
 *     when the request is marked retry_safe.
 *   - Bearer tokens go only into the Authorization header: never into URLs,
 *     logs or error messages; copies are wiped before they are freed.
 *
 * Errors: REMEX_EINVAL (bad argument, URL, method, header value), REMEX_EPERM
 * (plain http refused), REMEX_ECONNECT, REMEX_ETIMEOUT, REMEX_ETLS,
 * REMEX_ETOOBIG, REMEX_EIO (other transfer failures), REMEX_ENOMEM. http_do
 * returns REMEX_OK for any complete HTTP response, whatever its status;
 * http_check_status and the JSON helpers map statuses: 401 REMEX_EAUTH,
 * 403 REMEX_EFORBIDDEN, 404 REMEX_ENOTFOUND, 409 REMEX_ECONFLICT,
 * 413 REMEX_ETOOBIG, any other status outside 2xx REMEX_EHTTP.
 *
 * libcurl is initialised once per process: by http_global_init, else on
 * first use as if by http_global_init(1).
 * Thread-safety: a client and a multi each belong to one thread at a time;
 * distinct clients may be used from distinct threads.
 */
#ifndef REMEX_HTTP_H
#define REMEX_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "remex/buf.h"
#include "remex/err.h"

#define HTTP_CONNECT_TIMEOUT_MS_DEFAULT 10000
#define HTTP_TIMEOUT_MS_DEFAULT         60000
#define HTTP_MAX_RESPONSE_DEFAULT       (4u * 1024u * 1024u)
#define HTTP_MAX_ATTEMPTS_DEFAULT       4
#define HTTP_BACKOFF_BASE_MS_DEFAULT    200
#define HTTP_BACKOFF_CAP_MS_DEFAULT     10000

/* Zero fields take the defaults above. Strings are copied. */
struct http_client_opts {
    const char *base_url;       /* required: "https://plane.example:8443" */
    long connect_timeout_ms;    /* per attempt */
    long timeout_ms;            /* whole attempt, connect included */
    size_t max_response_bytes;  /* response body cap */
    const char *ca_file;        /* NULL: system store */
    const char *proxy;          /* NULL: libcurl's environment handling; "": no proxy */
    int allow_insecure_http;    /* permit http:// to non-loopback hosts */
    int insecure_skip_verify;   /* disable TLS verification (tests only) */
    unsigned max_attempts;      /* attempts in all; 1 = never retry */
    uint64_t backoff_base_ms;   /* full jitter base */
    uint64_t backoff_cap_ms;    /* full jitter cap, also caps Retry-After */
    uint64_t (*rng)(void *ctx); /* injectable jitter source (tests); NULL = arc4random */
    void *rng_ctx;              /* borrowed */
};

struct http_client;

/*
 * Process-wide start-up of libcurl and its TLS library. tls = 1: full start
 * (OpenSSL reads its configuration file and loads its error strings). tls = 0:
 * the process promises never to use https://. OpenSSL then skips its
 * configuration file and error strings, which keeps about 0.9 MiB of
 * libcrypto out of memory; every later https:// URL is refused with
 * REMEX_ETLS before any I/O. Call it before any other http_* function and
 * before threads start; once libcurl is started, later calls only report the
 * outcome of that start.
 */
remex_err http_global_init(int tls, struct remex_error *e);

/*
 * The library's one definition of "worth repeating later": no complete
 * response (connect error, timeout, connection lost, I/O error: REMEX_ECONNECT,
 * REMEX_ETIMEOUT, REMEX_ECLOSED, REMEX_EIO) or a complete response with status
 * 408, 429, 500, 502, 503 or 504. TLS failures, size caps and every other
 * status are not: repeating them gives the same answer.
 */
int http_retryable(remex_err rc, long status);

/* *out owned: release with http_client_free. */
remex_err http_client_new(const struct http_client_opts *opts, struct http_client **out,
                          struct remex_error *e);
/* Frees c (NULL is fine). Transfers started on a multi with c must be finished first. */
void http_client_free(struct http_client *c);
/*
 * Sets the bearer token used by requests that carry none of their own
 * (copied; NULL clears). REMEX_EINVAL if it holds control characters.
 */
remex_err http_client_set_bearer(struct http_client *c, const char *token);

struct http_stream;

struct http_request {
    const char *method;       /* "GET", "POST", ...: upper-case letters only */
    const char *path;         /* appended to base_url; must start with '/' */
    const char *bearer;       /* NULL: the client's token, if any */
    const char *content_type; /* NULL: "application/json" when there is a body */
    const void *body;         /* borrowed for the duration of the call (copied by the multi) */
    size_t body_len;
    int retry_safe; /* a non-idempotent request that may be repeated (carries its own key) */
    /*
     * NULL or a NULL-terminated list of extra "Name: value" lines (borrowed for
     * the call, copied; wiped before free since they may carry signatures).
     * A line with a control character is REMEX_EINVAL. Used by request signers
     * (SigV4, Shared Key) that need headers of their own.
     */
    const char *const *headers;
    /* NULL, or a streamed body source and/or sink (see struct http_stream; borrowed). */
    const struct http_stream *stream;
};

/*
 * Streaming for http_do (http_multi_start refuses it with REMEX_EINVAL): the
 * request body comes from read instead of req->body, and the body of a 2xx
 * response goes to write instead of resp->body, so neither is ever held whole.
 * reset runs before every attempt, the first included: it rewinds the source
 * and empties the sink, so that a retried attempt sends and receives the
 * same bytes again. Non-2xx bodies are buffered as usual (capped by
 * max_response_bytes). A streamed attempt has no overall deadline: it fails
 * with REMEX_ETIMEOUT when fewer than HTTP_STREAM_LOW_SPEED bytes per second
 * move for the client's timeout_ms. A failing callback ends the call with
 * REMEX_EIO (read, reset) or REMEX_ESYS (write), never retried.
 */
#define HTTP_STREAM_LOW_SPEED 1024L
#define HTTP_STREAM_ABORT     ((size_t)-1)
struct http_stream {
    /* Upload: fills dst with up to cap bytes; 0 at the end, HTTP_STREAM_ABORT on error. */
    size_t (*read)(void *dst, size_t cap, void *ud);
    uint64_t upload_len; /* exact body length sent when read is set */
    /* Download: consumes n bytes of a 2xx body; nonzero aborts. */
    int (*write)(const void *p, size_t n, void *ud);
    /* Every response header line of every attempt, without its CR LF (may be NULL). */
    void (*header)(const char *line, size_t n, void *ud);
    /* Before each attempt; nonzero aborts. May be NULL when read and write are. */
    int (*reset)(void *ud);
    void *ud; /* borrowed */
};

struct http_response {
    long status;       /* HTTP status of the last attempt; 0 if none was received */
    struct buf body;   /* owned: release with http_response_free */
    unsigned attempts; /* attempts made */
};

/* Blocking request with retries. resp is initialised by the call (also on error). */
remex_err http_do(struct http_client *c, const struct http_request *req, struct http_response *resp,
                  struct remex_error *e);
void http_response_free(struct http_response *r);

/*
 * Maps status to a remex_err (see above); REMEX_OK for 2xx. The message names
 * what (e.g. "POST /api/v1/x") and, when body holds {"error":{"code","message"}},
 * the server's code and message (printable ASCII only, truncated).
 */
remex_err http_check_status(const char *what, long status, const struct buf *body,
                            struct remex_error *e);

/*
 * JSON call: body (borrowed, may be NULL) is sent compact; a 2xx reply is parsed
 * into *reply (owned; NULL for an empty body). A non-2xx status is mapped by
 * http_check_status and *reply stays NULL. status (may be NULL) receives the
 * HTTP status. The reply is capped by max_response_bytes and by json_parse's
 * depth limit.
 */
remex_err http_json_request(struct http_client *c, const char *method, const char *path,
                            json_t *body, json_t **reply, long *status, struct remex_error *e);
/* Same with the per-request fields of req (method, path, bearer, retry_safe); its body is
 * ignored. */
remex_err http_json_request_ex(struct http_client *c, const struct http_request *req, json_t *body,
                               json_t **reply, long *status, struct remex_error *e);

/* ---- non-blocking API, driven by an external event loop ---- */

#define HTTP_EV_IN  0x1
#define HTTP_EV_OUT 0x2
#define HTTP_EV_ERR 0x4

struct http_multi;

/*
 * Event-loop hooks:
 *   watch_fd(fd, events, ud): watch fd for HTTP_EV_IN/OUT; events == 0: stop
 *     watching it (the fd may be closed right after).
 *   set_timer(timeout_ms, ud): (re)arm the single timer; call
 *     http_multi_timeout when it fires. -1 disarms; 0 means "as soon as
 *     possible" (from the loop, not from inside the hook).
 * Hooks are called from inside http_multi_* calls only.
 */
struct http_multi_hooks {
    void (*watch_fd)(int fd, int events, void *ud);
    void (*set_timer)(long timeout_ms, void *ud);
    void *ud; /* borrowed */
};

/*
 * Called once per started request, from inside http_multi_socket_action or
 * http_multi_timeout. rc as http_do; resp and e are borrowed for the duration
 * of the call (move the body out with buf_detach if needed). The callback may
 * start new requests but must not free the multi.
 */
struct http_multi_done {
    void (*fn)(remex_err rc, struct http_response *resp, const struct remex_error *e, void *arg);
    void *arg; /* borrowed */
};

/* Connections a multi keeps open for reuse once their calls are done. */
#define HTTP_MULTI_IDLE_MAX 64

/* *out owned: http_multi_free. */
remex_err http_multi_new(const struct http_multi_hooks *hooks, struct http_multi **out,
                         struct remex_error *e);
/* Aborts unfinished transfers without calling their callbacks, then frees m. */
void http_multi_free(struct http_multi *m);
/* Starts req on client c (borrowed: must outlive the transfer). Request data is copied. */
remex_err http_multi_start(struct http_multi *m, struct http_client *c,
                           const struct http_request *req, struct http_multi_done done,
                           struct remex_error *e);
/* fd became ready with HTTP_EV_* events. */
remex_err http_multi_socket_action(struct http_multi *m, int fd, int events);
/* The timer set through set_timer fired. */
remex_err http_multi_timeout(struct http_multi *m);
/* Requests started and not yet completed (including those waiting to retry). */
size_t http_multi_pending(const struct http_multi *m);

#endif
