/*
 * helper_httpd: a real HTTP server on 127.0.0.1 for unit tests (libmicrohttpd,
 * internal polling thread, one thread per connection, port chosen by the
 * kernel). Routes:
 *   /ok                   200 {"ok":true}
 *   /echo                 200, the request body back as application/json
 *   /text                 200 "not json"
 *   /status/N             status N, body {"error":{"code":"c_N","message":"message for N"}}
 *   /slow/MS              sleeps MS milliseconds, then 200 {"ok":true}
 *   /big/N                200 with N bytes (Content-Length)
 *   /chunked/N            200 with N bytes, chunked (no Content-Length)
 *   /flaky/K              503 for the first K hits since the last reset, then 200
 *   /retry-after/S        first hit 503 with "Retry-After: S", then 200
 *   /retry-after-date/S   first hit 503 with Retry-After = now + S as an HTTP-date, then 200
 * It records the number of requests and of connections accepted and the last
 * request's method, path, User-Agent and Authorization. All accessors are
 * thread-safe.
 */
#ifndef REMEX_TEST_HELPER_HTTPD_H
#define REMEX_TEST_HELPER_HTTPD_H

struct httpd;

/* NULL on failure. */
struct httpd *httpd_start(void);
/* Waits for connection threads, frees everything. */
void httpd_stop(struct httpd *h);
unsigned httpd_port(const struct httpd *h);
/* "http://127.0.0.1:PORT" */
const char *httpd_url(const struct httpd *h);
/* Clears counters and recorded values. */
void httpd_reset(struct httpd *h);
int httpd_hits(struct httpd *h);
/* Connections accepted since the start or the last reset. */
int httpd_connections(struct httpd *h);
/* Copies the last recorded header/method/path (empty when absent) into out. */
void httpd_last(struct httpd *h, const char *what, char *out, unsigned cap);

#endif
