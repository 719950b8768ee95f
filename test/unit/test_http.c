/* Unit tests: http (libcurl client) against a real libmicrohttpd server on 127.0.0.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helper_httpd.h"
#include "remex/http.h"
#include "remex/json.h"
#include "remex/version.h"

static struct httpd *srv;

static int setup(void **state)
{
    (void)state;
    srv = httpd_start();
    return srv ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    httpd_stop(srv);
    return 0;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A client on the test server with fast retries; opts may override fields. */
static struct http_client *client(struct http_client_opts *o)
{
    struct http_client_opts d = {0};
    struct http_client *c = NULL;
    struct remex_error e = {0};
    if (o == NULL)
        o = &d;
    if (o->base_url == NULL)
        o->base_url = httpd_url(srv);
    o->proxy = "";
    if (o->backoff_base_ms == 0)
        o->backoff_base_ms = 5;
    if (o->backoff_cap_ms == 0)
        o->backoff_cap_ms = 50;
    if (http_client_new(o, &c, &e) != REMEX_OK)
        fail_msg("client: %s", e.msg);
    httpd_reset(srv);
    return c;
}

static remex_err get(struct http_client *c, const char *path, struct http_response *r,
                     struct remex_error *e)
{
    struct http_request req = {.method = "GET", .path = path};
    return http_do(c, &req, r, e);
}

static void test_get_ok_and_headers(void **state)
{
    (void)state;
    struct http_client *c = client(NULL);
    struct http_response r;
    struct remex_error e = {0};
    char v[256];
    assert_int_equal(http_client_set_bearer(c, "agent-token-1"), REMEX_OK);
    assert_int_equal(get(c, "/ok", &r, &e), REMEX_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 1);
    assert_string_equal(buf_cstr(&r.body), "{\"ok\":true}");
    httpd_last(srv, "user-agent", v, sizeof(v));
    assert_string_equal(v, "remex/" REMEX_VERSION);
    httpd_last(srv, "authorization", v, sizeof(v));
    assert_string_equal(v, "Bearer agent-token-1");
    http_response_free(&r);
    /* Connection reuse: a second request on the same client works too. */
    assert_int_equal(get(c, "/ok", &r, &e), REMEX_OK);
    assert_int_equal(httpd_hits(srv), 2);
    http_response_free(&r);
    http_client_free(c);
}

static void test_per_request_bearer_and_methods(void **state)
{
    (void)state;
    static const char *const methods[] = {"PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"};
    struct http_client *c = client(NULL);
    struct http_response r;
    struct remex_error e = {0};
    char v[256];
    struct http_request req = {.method = "GET", .path = "/ok", .bearer = "task-token"};
    assert_int_equal(http_client_set_bearer(c, "agent-token"), REMEX_OK);
    assert_int_equal(http_do(c, &req, &r, &e), REMEX_OK);
    httpd_last(srv, "authorization", v, sizeof(v));
    assert_string_equal(v, "Bearer task-token");
    http_response_free(&r);
    assert_int_equal(http_client_set_bearer(c, NULL), REMEX_OK);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        struct http_request m = {.method = methods[i], .path = "/ok"};
        assert_int_equal(http_do(c, &m, &r, &e), REMEX_OK);
        assert_int_equal(r.status, 200);
        httpd_last(srv, "method", v, sizeof(v));
        assert_string_equal(v, methods[i]);
        httpd_last(srv, "authorization", v, sizeof(v));
        assert_string_equal(v, "");
        http_response_free(&r);
    }
    http_client_free(c);
}

static void test_json_round_trip(void **state)
{
    (void)state;
    struct http_client *c = client(NULL);
    struct remex_error e = {0};
    json_t *body = NULL, *reply = NULL;
    long status = 0;
    char v[64];
    assert_int_equal(json_build(&body, &e, "{s:s, s:i, s:[s,s], s:{s:b}}", "dag_id", "etl",
                                "try_number", 3, "cmd", "a", "b", "x", "y", 1),
                     REMEX_OK);
    assert_int_equal(http_json_request(c, "POST", "/echo", body, &reply, &status, &e), REMEX_OK);
    assert_int_equal(status, 200);
    assert_non_null(reply);
    assert_true(json_equal(body, reply));
    httpd_last(srv, "method", v, sizeof(v));
    assert_string_equal(v, "POST");
    json_decref(reply);
    /* An empty 2xx body yields a NULL reply. */
    assert_int_equal(http_json_request(c, "POST", "/echo", NULL, &reply, &status, &e), REMEX_OK);
    assert_null(reply);
    json_decref(body);
    http_client_free(c);
}

static void test_malformed_json_reply(void **state)
{
    (void)state;
    struct http_client *c = client(NULL);
    struct remex_error e = {0};
    json_t *reply = (json_t *)1;
    assert_int_equal(http_json_request(c, "GET", "/text", NULL, &reply, NULL, &e), REMEX_EPARSE);
    assert_null(reply);
    assert_non_null(strstr(e.msg, "GET /text: reply:1:"));
    http_client_free(c);
}

static void test_size_cap(void **state)
{
    (void)state;
    struct http_client_opts o = {.max_response_bytes = 1000, .max_attempts = 3};
    struct http_client *c = client(&o);
    struct http_response r;
    struct remex_error e = {0};
    assert_int_equal(get(c, "/big/1000", &r, &e), REMEX_OK);
    assert_int_equal(r.body.len, 1000);
    http_response_free(&r);
    assert_int_equal(get(c, "/big/1001", &r, &e), REMEX_ETOOBIG);
    assert_int_equal(r.attempts, 1); /* never retried */
    assert_non_null(strstr(e.msg, "exceeds 1000 bytes"));
    http_response_free(&r);
    /* Chunked: no Content-Length, so the body callback enforces the cap. */
    assert_int_equal(get(c, "/chunked/1000", &r, &e), REMEX_OK);
    assert_int_equal(r.body.len, 1000);
    http_response_free(&r);
    assert_int_equal(get(c, "/chunked/50000", &r, &e), REMEX_ETOOBIG);
    assert_true(r.body.len <= 1000);
    http_response_free(&r);
    http_client_free(c);
}

static void test_total_timeout(void **state)
{
    (void)state;
    struct http_client_opts o = {.timeout_ms = 300, .max_attempts = 1};
    struct http_client *c = client(&o);
    struct http_response r;
    struct remex_error e = {0};
    double t0 = mono();
    assert_int_equal(get(c, "/slow/1500", &r, &e), REMEX_ETIMEOUT);
    assert_true(mono() - t0 < 1.3);
    assert_non_null(strstr(e.msg, "GET /slow/1500: timed out"));
    http_response_free(&r);
    http_client_free(c);
}

static unsigned closed_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd); /* bound, never listened: connections are refused */
    return ntohs(sa.sin_port);
}

static void test_connect_refused_retried(void **state)
{
    (void)state;
    char url[64];
    struct http_client_opts o = {.base_url = url, .max_attempts = 3};
    struct http_client *c;
    struct http_response r;
    struct remex_error e = {0};
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", closed_port());
    c = client(&o);
    assert_int_equal(get(c, "/ok", &r, &e), REMEX_ECONNECT);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(e.msg, "GET /ok: connection failed"));
    http_response_free(&r);
    http_client_free(c);
}

static void test_retry_503_then_success(void **state)
{
    (void)state;
    struct http_client_opts o = {.max_attempts = 4};
    struct http_client *c = client(&o);
    struct http_response r;
    struct remex_error e = {0};
    assert_int_equal(get(c, "/flaky/2", &r, &e), REMEX_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(httpd_hits(srv), 3);
    assert_string_equal(buf_cstr(&r.body), "{\"ok\":true,\"hit\":3}");
    http_response_free(&r);
    http_client_free(c);
}

static void test_retries_exhausted(void **state)
{
    (void)state;
    struct http_client_opts o = {.max_attempts = 2};
    struct http_client *c = client(&o);
    struct http_response r;
    struct remex_error e = {0};
    long status = 0;
    json_t *reply = NULL;
    assert_int_equal(get(c, "/flaky/5", &r, &e), REMEX_OK);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.attempts, 2);
    http_response_free(&r);
    httpd_reset(srv);
    assert_int_equal(http_json_request(c, "GET", "/flaky/5", NULL, &reply, &status, &e),
                     REMEX_EHTTP);
    assert_int_equal(status, 503);
    assert_int_equal(httpd_hits(srv), 2);
    http_client_free(c);
}

static void test_retry_after_seconds(void **state)
{
    (void)state;
    struct http_client_opts o = {.max_attempts = 2, .backoff_base_ms = 1, .backoff_cap_ms = 5000};
    struct http_client *c = client(&o);
    struct http_response r;
    struct remex_error e = {0};
    double t0 = mono(), dt;
    assert_int_equal(get(c, "/retry-after/1", &r, &e), REMEX_OK);
    dt = mono() - t0;
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    assert_true(dt >= 0.9);
    assert_true(dt < 4.0);
    http_response_free(&r);
    http_client_free(c);
}

static void test_retry_after_capped(void **state)
{
    (void)state;
    struct http_client_opts o = {.max_attempts = 2, .backoff_base_ms = 1, .backoff_cap_ms = 100};
    struct http_client *c = client(&o);
    struct http_response r;
    struct remex_error e = {0};
    double t0 = mono();
    assert_int_equal(get(c, "/retry-after/30", &r, &e), REMEX_OK);
    assert_int_equal(r.status, 200);
    assert_true(mono() - t0 < 2.0);
    http_response_free(&r);
    http_client_free(c);
}

static void test_retry_after_http_date(void **state)
{
    (void)state;
    struct http_client_opts o = {.max_attempts = 2, .backoff_base_ms = 1, .backoff_cap_ms = 5000};
    struct http_client *c = client(&o);
    struct http_response r;
    struct remex_error e = {0};
    double t0 = mono(), dt;
    assert_int_equal(get(c, "/retry-after-date/2", &r, &e), REMEX_OK);
    dt = mono() - t0;
    assert_int_equal(r.attempts, 2);
    /* Second resolution on both sides: the wait is between 1 and 2 s. */
    assert_true(dt >= 0.5);
    assert_true(dt < 4.0);
    http_response_free(&r);
    http_client_free(c);
}

static void test_post_not_retried_unless_marked(void **state)
{
    (void)state;
    struct http_client_opts o = {.max_attempts = 3};
    struct http_client *c = client(&o);
    struct http_response r;
    struct remex_error e = {0};
    struct http_request req = {.method = "POST", .path = "/flaky/1", .body = "{}", .body_len = 2};
    assert_int_equal(http_do(c, &req, &r, &e), REMEX_OK);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(httpd_hits(srv), 1);
    http_response_free(&r);
    httpd_reset(srv);
    req.retry_safe = 1;
    assert_int_equal(http_do(c, &req, &r, &e), REMEX_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    http_response_free(&r);
    http_client_free(c);
}

static void test_plain_http_policy(void **state)
{
    (void)state;
    static const char *const refused[] = {
        "http://example.invalid/",          "http://10.0.0.1:8080", "http://128.0.0.1",
        "http://127.0.0.1.example.invalid", "http://[::2]:80",      "HTTP://example.invalid"};
    static const char *const allowed[] = {"http://127.0.0.1:1", "http://127.9.8.7",
                                          "http://localhost:8080", "http://[::1]:9",
                                          "https://example.invalid"};
    struct http_client *c = NULL;
    struct remex_error e = {0};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        struct http_client_opts o = {.base_url = refused[i]};
        assert_int_equal(http_client_new(&o, &c, &e), REMEX_EPERM);
        assert_null(c);
        assert_non_null(strstr(e.msg, "allow_insecure_http"));
    }
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        struct http_client_opts o = {.base_url = allowed[i]};
        assert_int_equal(http_client_new(&o, &c, &e), REMEX_OK);
        http_client_free(c);
    }
    /* Explicit opt-in creates the client (no request is made here). */
    struct http_client_opts in = {.base_url = "http://example.invalid", .allow_insecure_http = 1};
    assert_int_equal(http_client_new(&in, &c, &e), REMEX_OK);
    http_client_free(c);
    struct http_client_opts bad[] = {{.base_url = "ftp://127.0.0.1/"},
                                     {.base_url = "not a url"},
                                     {.base_url = NULL},
                                     {.base_url = "http://127.0.0.1/\r\nX: y"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(http_client_new(&bad[i], &c, &e), REMEX_EINVAL);
}

static void test_path_cannot_change_host(void **state)
{
    (void)state;
    struct http_client *c = client(NULL);
    struct http_response r;
    struct remex_error e = {0};
    static const char *const paths[] = {"@example.invalid/", "example.invalid", "/a b",
                                        "/x\r\nHost: y", ""};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        assert_int_equal(get(c, paths[i], &r, &e), REMEX_EINVAL);
        http_response_free(&r);
    }
    struct http_request lower = {.method = "get", .path = "/ok"};
    assert_int_equal(http_do(c, &lower, &r, &e), REMEX_EINVAL);
    assert_int_equal(httpd_hits(srv), 0);
    http_client_free(c);
}

static void test_status_mapping_and_error_body(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        remex_err rc;
    } cases[] = {{"/status/401", REMEX_EAUTH},     {"/status/403", REMEX_EFORBIDDEN},
                 {"/status/404", REMEX_ENOTFOUND}, {"/status/409", REMEX_ECONFLICT},
                 {"/status/413", REMEX_ETOOBIG},   {"/status/400", REMEX_EHTTP},
                 {"/status/500", REMEX_EHTTP},     {"/nowhere", REMEX_ENOTFOUND}};
    struct http_client *c = client(NULL);
    struct remex_error e = {0};
    json_t *reply = NULL;
    long status;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(http_json_request(c, "GET", cases[i].path, NULL, &reply, &status, &e),
                         cases[i].rc);
        assert_int_equal(e.code, cases[i].rc);
        assert_null(reply);
    }
    assert_int_equal(http_json_request(c, "POST", "/status/409", NULL, &reply, &status, &e),
                     REMEX_ECONFLICT);
    assert_int_equal(status, 409);
    assert_string_equal(e.msg, "POST /status/409: HTTP 409 (c_409): message for 409");
    http_client_free(c);
}

static void test_check_status_sanitizes(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(1024);
    struct remex_error e = {0};
    buf_puts(&b, "{\"error\":{\"code\":\"x\\n\",\"message\":\"evil\\u001b[31m\\nline\"}}");
    assert_int_equal(http_check_status("GET /a", 418, &b, &e), REMEX_EHTTP);
    assert_string_equal(e.msg, "GET /a: HTTP 418 (x?): evil?[31m?line");
    buf_reset(&b);
    buf_puts(&b, "<html>");
    assert_int_equal(http_check_status("GET /a", 502, &b, &e), REMEX_EHTTP);
    assert_string_equal(e.msg, "GET /a: HTTP 502");
    assert_int_equal(http_check_status("GET /a", 204, &b, &e), REMEX_OK);
    buf_free(&b);
}

static void test_token_never_in_errors(void **state)
{
    (void)state;
    struct http_client_opts o = {.max_response_bytes = 80, .timeout_ms = 300};
    struct http_client *c = client(&o);
    struct remex_error e = {0};
    struct http_response r;
    json_t *reply = NULL;
    assert_int_equal(http_client_set_bearer(c, "s3cr3t-token-value"), REMEX_OK);
    assert_int_equal(http_json_request(c, "GET", "/status/401", NULL, &reply, NULL, &e),
                     REMEX_EAUTH);
    assert_null(strstr(e.msg, "s3cr3t"));
    assert_int_equal(get(c, "/big/100", &r, &e), REMEX_ETOOBIG);
    assert_null(strstr(e.msg, "s3cr3t"));
    http_response_free(&r);
    assert_int_equal(get(c, "/slow/1000", &r, &e), REMEX_ETIMEOUT);
    assert_null(strstr(e.msg, "s3cr3t"));
    http_response_free(&r);
    /* Header injection through a token is refused. */
    assert_int_equal(http_client_set_bearer(c, "a\r\nX-Evil: 1"), REMEX_EINVAL);
    struct http_request req = {.method = "GET", .path = "/ok", .bearer = "t\nx"};
    assert_int_equal(http_do(c, &req, &r, &e), REMEX_EINVAL);
    assert_null(strstr(e.msg, "t\nx"));
    http_client_free(c);
}

/* ---- multi API driven by a poll() loop ---- */

struct loop {
    struct pollfd fds[16];
    int nfds;
    long timer_ms; /* -1: none */
    double timer_set_at;
    int done;
    int ok;
    remex_err rcs[8];
    long statuses[8];
};

static void watch_fd(int fd, int events, void *ud)
{
    struct loop *l = ud;
    int i;
    for (i = 0; i < l->nfds && l->fds[i].fd != fd; i++)
        ;
    if (events == 0) {
        if (i < l->nfds)
            l->fds[i] = l->fds[--l->nfds];
        return;
    }
    if (i == l->nfds) {
        assert_true(l->nfds < 16);
        l->nfds++;
    }
    l->fds[i].fd = fd;
    l->fds[i].events =
        (short)(((events & HTTP_EV_IN) ? POLLIN : 0) | ((events & HTTP_EV_OUT) ? POLLOUT : 0));
}

static void set_timer(long ms, void *ud)
{
    struct loop *l = ud;
    l->timer_ms = ms;
    l->timer_set_at = mono();
}

struct req_ctx {
    struct loop *l;
    int idx;
};

static void on_done(remex_err rc, struct http_response *resp, const struct remex_error *e,
                    void *arg)
{
    struct req_ctx *r = arg;
    (void)e;
    r->l->rcs[r->idx] = rc;
    r->l->statuses[r->idx] = resp->status;
    r->l->done++;
}

static void run_loop(struct http_multi *m, struct loop *l, int want, double limit_s)
{
    double t0 = mono();
    while (l->done < want && mono() - t0 < limit_s) {
        int timeout = 100;
        if (l->timer_ms >= 0) {
            double left = l->timer_set_at + (double)l->timer_ms / 1000.0 - mono();
            timeout = left <= 0 ? 0 : (int)(left * 1000.0) + 1;
        }
        int n = poll(l->fds, (nfds_t)l->nfds, timeout);
        assert_true(n >= 0);
        if (n == 0) {
            l->timer_ms = -1;
            assert_int_equal(http_multi_timeout(m), REMEX_OK);
            continue;
        }
        struct pollfd ready[16];
        int nr = l->nfds;
        memcpy(ready, l->fds, sizeof(ready));
        for (int i = 0; i < nr; i++) {
            int ev = 0;
            if (ready[i].revents & POLLIN)
                ev |= HTTP_EV_IN;
            if (ready[i].revents & POLLOUT)
                ev |= HTTP_EV_OUT;
            if (ready[i].revents & (POLLERR | POLLHUP))
                ev |= HTTP_EV_ERR;
            if (ev)
                assert_int_equal(http_multi_socket_action(m, ready[i].fd, ev), REMEX_OK);
        }
    }
}

static void test_multi_concurrent(void **state)
{
    (void)state;
    static const char *const paths[] = {"/slow/400", "/slow/400", "/slow/400", "/ok",
                                        "/status/404"};
    struct http_client_opts o = {.max_attempts = 3};
    struct http_client *c = client(&o);
    struct loop l = {.timer_ms = -1};
    struct http_multi_hooks hooks = {watch_fd, set_timer, &l};
    struct http_multi *m = NULL;
    struct remex_error e = {0};
    struct req_ctx ctx[5];
    double t0 = mono();

    assert_int_equal(http_multi_new(&hooks, &m, &e), REMEX_OK);
    for (int i = 0; i < 5; i++) {
        struct http_request req = {.method = "GET", .path = paths[i]};
        ctx[i] = (struct req_ctx){&l, i};
        assert_int_equal(
            http_multi_start(m, c, &req, (struct http_multi_done){on_done, &ctx[i]}, &e), REMEX_OK);
    }
    assert_int_equal(http_multi_pending(m), 5);
    run_loop(m, &l, 5, 10.0);
    assert_int_equal(l.done, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(l.rcs[i], REMEX_OK);
    assert_int_equal(l.statuses[0], 200);
    assert_int_equal(l.statuses[4], 404);
    /* Three 400 ms replies ran concurrently, not one after another. */
    assert_true(mono() - t0 < 1.15);
    assert_int_equal(http_multi_pending(m), 0);
    http_multi_free(m);
    http_client_free(c);
}

/*
 * Connections outlive a burst of concurrent calls: after 8 calls at once and
 * then one alone, the next 8 at once reuse the first burst's connections
 * (libcurl's default would have closed all but four of them).
 */
static void test_multi_keeps_connections(void **state)
{
    (void)state;
    struct http_client_opts o = {.max_attempts = 1};
    struct http_client *c = client(&o);
    struct loop l = {.timer_ms = -1};
    struct http_multi_hooks hooks = {watch_fd, set_timer, &l};
    struct http_multi *m = NULL;
    struct remex_error e = {0};
    struct req_ctx ctx[8];
    struct http_request slow = {.method = "GET", .path = "/slow/150"};
    struct http_request ok = {.method = "GET", .path = "/ok"};

    httpd_reset(srv);
    assert_int_equal(http_multi_new(&hooks, &m, &e), REMEX_OK);
    for (int round = 0; round < 2; round++) {
        l.done = 0;
        for (int i = 0; i < 8; i++) {
            ctx[i] = (struct req_ctx){&l, i};
            assert_int_equal(
                http_multi_start(m, c, &slow, (struct http_multi_done){on_done, &ctx[i]}, &e),
                REMEX_OK);
        }
        run_loop(m, &l, 8, 10.0);
        assert_int_equal(l.done, 8);
        l.done = 0;
        assert_int_equal(
            http_multi_start(m, c, &ok, (struct http_multi_done){on_done, &ctx[0]}, &e), REMEX_OK);
        run_loop(m, &l, 1, 10.0);
        assert_int_equal(l.done, 1);
    }
    assert_int_equal(httpd_hits(srv), 18);
    assert_int_equal(httpd_connections(srv), 8);
    http_multi_free(m);
    http_client_free(c);
}

static void test_multi_retry_and_errors(void **state)
{
    (void)state;
    char url[64];
    struct http_client_opts o = {.max_attempts = 3};
    struct http_client_opts ro = {.base_url = url, .max_attempts = 2};
    struct http_client *c = client(&o), *refused;
    struct loop l = {.timer_ms = -1};
    struct http_multi *m = NULL;
    struct remex_error e = {0};
    struct req_ctx ctx[3] = {{&l, 0}, {&l, 1}, {&l, 2}};
    struct http_request flaky = {.method = "GET", .path = "/flaky/2"};
    struct http_request ok = {.method = "GET", .path = "/ok"};
    struct http_request bad = {.method = "GET", .path = "nope"};

    snprintf(url, sizeof(url), "http://127.0.0.1:%u", closed_port());
    refused = client(&ro);
    struct http_multi_hooks hooks = {.watch_fd = watch_fd, .set_timer = set_timer, .ud = &l};
    assert_int_equal(http_multi_new(&hooks, &m, &e), REMEX_OK);
    assert_int_equal(http_multi_start(m, c, &flaky, (struct http_multi_done){on_done, &ctx[0]}, &e),
                     REMEX_OK);
    assert_int_equal(
        http_multi_start(m, refused, &ok, (struct http_multi_done){on_done, &ctx[1]}, &e),
        REMEX_OK);
    assert_int_equal(http_multi_start(m, c, &bad, (struct http_multi_done){on_done, &ctx[2]}, &e),
                     REMEX_EINVAL);
    run_loop(m, &l, 2, 10.0);
    assert_int_equal(l.done, 2);
    assert_int_equal(l.rcs[0], REMEX_OK);
    assert_int_equal(l.statuses[0], 200);
    assert_int_equal(l.rcs[1], REMEX_ECONNECT);
    http_multi_free(m);
    http_client_free(refused);
    http_client_free(c);
}

static void test_multi_free_with_pending(void **state)
{
    (void)state;
    struct http_client *c = client(NULL);
    struct loop l = {.timer_ms = -1};
    struct http_multi_hooks hooks = {watch_fd, set_timer, &l};
    struct http_multi *m = NULL;
    struct remex_error e = {0};
    struct req_ctx ctx = {&l, 0};
    struct http_request req = {.method = "POST", .path = "/echo", .body = "{}", .body_len = 2};
    struct http_request slow = {.method = "GET", .path = "/slow/100"};
    assert_int_equal(http_multi_new(&hooks, &m, &e), REMEX_OK);
    assert_int_equal(http_multi_start(m, c, &req, (struct http_multi_done){on_done, &ctx}, &e),
                     REMEX_OK);
    assert_int_equal(http_multi_start(m, c, &slow, (struct http_multi_done){on_done, &ctx}, &e),
                     REMEX_OK);
    /* Let the transfers get under way, then free the multi in the middle of them. */
    for (int i = 0; i < 5 && l.nfds == 0; i++) {
        l.timer_ms = -1;
        assert_int_equal(http_multi_timeout(m), REMEX_OK);
        poll(l.fds, (nfds_t)l.nfds, 20);
    }
    http_multi_free(m); /* aborts without calling back */
    assert_int_equal(l.done, 0);
    http_client_free(c);
}

/* ---- streamed bodies ---- */

/* A generated source (byte i is i*7) and a sink that checks what it gets. */
struct stream_t {
    size_t len, pos, got, resets, bad;
    int fail_write;
    char etag[64];
};

static size_t st_read(void *dst, size_t cap, void *ud)
{
    struct stream_t *t = ud;
    size_t n = t->len - t->pos < cap ? t->len - t->pos : cap;
    for (size_t i = 0; i < n; i++)
        ((unsigned char *)dst)[i] = (unsigned char)((t->pos + i) * 7);
    t->pos += n;
    return n;
}

static int st_write(const void *p, size_t n, void *ud)
{
    struct stream_t *t = ud;
    if (t->fail_write)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != (unsigned char)((t->got + i) * 7))
            t->bad++;
    t->got += n;
    return 0;
}

static void st_header(const char *line, size_t n, void *ud)
{
    struct stream_t *t = ud;
    if (n > 13 && strncasecmp(line, "Content-Type:", 13) == 0)
        snprintf(t->etag, sizeof(t->etag), "%.*s", (int)(n - 13), line + 13);
}

static int st_reset(void *ud)
{
    struct stream_t *t = ud;
    t->pos = t->got = 0;
    t->resets++;
    return 0;
}

/* A streamed upload comes back through a streamed download, byte for byte. */
static void test_stream_echo(void **state)
{
    (void)state;
    struct http_client_opts o = {.max_response_bytes = 1024}; /* streamed bodies are not capped */
    struct http_client *c = client(&o);
    struct stream_t t = {.len = 900000}; /* the test server echoes up to 1 MiB */
    struct http_stream st = {.read = st_read,
                             .upload_len = t.len,
                             .write = st_write,
                             .header = st_header,
                             .reset = st_reset,
                             .ud = &t};
    struct http_request req = {.method = "PUT", .path = "/echo", .stream = &st};
    struct http_response r;
    struct remex_error e = {0};
    assert_int_equal(http_do(c, &req, &r, &e), REMEX_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0); /* the body went to the sink */
    assert_int_equal(t.got, t.len);
    assert_int_equal(t.bad, 0);
    assert_int_equal(t.resets, 1);
    assert_non_null(strstr(t.etag, "application/json"));
    http_response_free(&r);
    /* A failing sink ends the call at once: REMEX_ESYS, not retried. */
    t.fail_write = 1;
    assert_int_equal(http_do(c, &req, &r, &e), REMEX_ESYS);
    assert_int_equal(r.attempts, 1);
    http_response_free(&r);
    http_client_free(c);
}

/* Each retried attempt restarts the source: the server gets the whole body every time. */
static void test_stream_retry_restarts(void **state)
{
    (void)state;
    struct http_client_opts o = {.max_attempts = 4};
    struct http_client *c = client(&o);
    struct stream_t t = {.len = 100000};
    struct http_stream st = {.read = st_read, .upload_len = t.len, .reset = st_reset, .ud = &t};
    struct http_request req = {.method = "PUT", .path = "/flaky/2", .stream = &st};
    struct http_response r;
    struct remex_error e = {0};
    assert_int_equal(http_do(c, &req, &r, &e), REMEX_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(t.resets, 3);
    assert_string_equal(buf_cstr(&r.body), "{\"ok\":true,\"hit\":3}"); /* no sink: buffered */
    http_response_free(&r);
    http_client_free(c);
}

/* Query strings stay out of messages (they may carry a SAS signature); multis refuse streams. */
static void test_stream_query_and_multi(void **state)
{
    (void)state;
    struct http_client *c = client(NULL);
    struct http_response r;
    struct remex_error e = {0};
    struct http_request req = {.method = "GET", .path = "/nope?sig=S3CRETSIG"};
    struct http_client_opts o = {.base_url = "http://127.0.0.1:1", .max_attempts = 1};
    struct http_client *dead = client(&o);
    assert_int_not_equal(http_do(dead, &req, &r, &e), REMEX_OK);
    assert_null(strstr(e.msg, "S3CRETSIG"));
    assert_non_null(strstr(e.msg, "GET /nope"));
    http_response_free(&r);
    struct http_multi_hooks hooks = {0};
    struct http_multi *m = NULL;
    struct stream_t t = {.len = 1};
    struct http_stream st = {.read = st_read, .upload_len = 1, .reset = st_reset, .ud = &t};
    struct http_request sreq = {.method = "PUT", .path = "/echo", .stream = &st};
    assert_int_equal(http_multi_new(&hooks, &m, &e), REMEX_OK);
    assert_int_equal(http_multi_start(m, c, &sreq, (struct http_multi_done){0}, &e), REMEX_EINVAL);
    http_multi_free(m);
    http_client_free(dead);
    http_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_ok_and_headers),
        cmocka_unit_test(test_per_request_bearer_and_methods),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_malformed_json_reply),
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_total_timeout),
        cmocka_unit_test(test_connect_refused_retried),
        cmocka_unit_test(test_retry_503_then_success),
        cmocka_unit_test(test_retries_exhausted),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_capped),
        cmocka_unit_test(test_retry_after_http_date),
        cmocka_unit_test(test_post_not_retried_unless_marked),
        cmocka_unit_test(test_plain_http_policy),
        cmocka_unit_test(test_path_cannot_change_host),
        cmocka_unit_test(test_status_mapping_and_error_body),
        cmocka_unit_test(test_check_status_sanitizes),
        cmocka_unit_test(test_token_never_in_errors),
        cmocka_unit_test(test_multi_concurrent),
        cmocka_unit_test(test_multi_keeps_connections),
        cmocka_unit_test(test_multi_retry_and_errors),
        cmocka_unit_test(test_multi_free_with_pending),
        cmocka_unit_test(test_stream_echo),
        cmocka_unit_test(test_stream_retry_restarts),
        cmocka_unit_test(test_stream_query_and_multi),
    };
    return cmocka_run_group_tests_name("http", tests, setup, teardown);
}
