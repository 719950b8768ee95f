/* Unit tests: rolehttp (libmicrohttpd driven by an evloop, no server thread). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "remex/evloop.h"
#include "remex/promtext.h"
#include "remex/role.h"
#include "remex/rolehttp.h"

struct client {
    uint16_t port;
    const char *request;
    char reply[8192];
    volatile int done;
};

/* One request on a fresh connection, the whole reply read until the server closes. */
static void *client_main(void *arg)
{
    struct client *c = arg;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->port)};
    struct timeval tv = {.tv_sec = 10};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t n = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        write(fd, c->request, strlen(c->request)) == (ssize_t)strlen(c->request)) {
        ssize_t r;
        while (n < sizeof(c->reply) - 1 &&
               (r = read(fd, c->reply + n, sizeof(c->reply) - 1 - n)) > 0)
            n += (size_t)r;
    }
    c->reply[n] = '\0';
    close(fd);
    c->done = 1;
    return NULL;
}

static int calls;

static void handler(void *ud, const char *path, struct rolehttp_resp *resp)
{
    (void)ud;
    calls++;
    if (strcmp(path, "/metrics") == 0) {
        resp->content_type = "text/plain; version=0.0.4";
        buf_puts(&resp->body, "m 1\n");
    } else {
        resp->status = 503;
        buf_printf(&resp->body, "path=%s\n", path);
    }
}

/* Runs the loop until the client is done (bounded: 2000 iterations of at most 10 ms). */
static void exchange(struct evloop *loop, uint16_t port, const char *req, char *out, size_t outsz)
{
    struct client c = {.port = port, .request = req};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_main, &c), 0);
    for (int i = 0; i < 2000 && !c.done; i++)
        evloop_run_once(loop, 10, NULL);
    pthread_join(t, NULL);
    snprintf(out, outsz, "%s", c.reply);
}

static void test_serves_from_the_loop(void **state)
{
    (void)state;
    struct remex_error e;
    struct evloop *loop = evloop_new(&e);
    assert_non_null(loop);
    struct rolehttp *h = rolehttp_new(loop, "127.0.0.1:0", handler, NULL, &e);
    assert_non_null(h);
    uint16_t port = rolehttp_port(h);
    assert_true(port > 0);
    char r[8192];
    calls = 0;
    exchange(loop, port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", r,
             sizeof(r));
    assert_non_null(strstr(r, "HTTP/1.1 200"));
    assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4"));
    assert_non_null(strstr(r, "\r\n\r\nm 1\n"));
    exchange(loop, port, "GET /health?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", r,
             sizeof(r));
    assert_non_null(strstr(r, "HTTP/1.1 503"));
    assert_non_null(strstr(r, "path=/health\n"));
    exchange(loop, port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", r,
             sizeof(r));
    assert_non_null(strstr(r, "HTTP/1.1 200"));
    assert_null(strstr(r, "m 1"));
    assert_int_equal(calls, 3);
    exchange(loop, port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", r,
             sizeof(r));
    assert_non_null(strstr(r, "HTTP/1.1 405"));
    assert_non_null(strstr(r, "Allow: GET, HEAD"));
    exchange(loop, port,
             "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n"
             "\r\nhello",
             r, sizeof(r));
    assert_non_null(strstr(r, "HTTP/1.1 413"));
    assert_int_equal(calls, 3); /* the handler saw neither */
    rolehttp_free(h);
    evloop_free(loop);
}

static void test_parse_listen(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    socklen_t len;
    struct remex_error e;
    assert_int_equal(rolehttp_parse_listen("127.0.0.1:9464", &sa, &len, &e), REMEX_OK);
    assert_int_equal(sa.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 9464);
    assert_int_equal(rolehttp_parse_listen("[::1]:80", &sa, &len, &e), REMEX_OK);
    assert_int_equal(sa.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    static const char *const bad[] = {"localhost:80",    "127.0.0.1", "127.0.0.1:", ":80",
                                      "127.0.0.1:65536", "[::1:80",   "::1:80",     "1.2.3.4:8x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rolehttp_parse_listen(bad[i], &sa, &len, &e), REMEX_EINVAL);
}

static void test_busy_port_refused(void **state)
{
    (void)state;
    struct remex_error e;
    struct evloop *loop = evloop_new(&e);
    struct rolehttp *a = rolehttp_new(loop, "127.0.0.1:0", handler, NULL, &e);
    assert_non_null(a);
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", (unsigned)rolehttp_port(a));
    struct rolehttp *b = rolehttp_new(loop, listen, handler, NULL, &e);
    assert_null(b);
    assert_non_null(strstr(e.msg, listen));
    rolehttp_free(a);
    rolehttp_free(NULL);
    evloop_free(loop);
}

static void own_metrics(void *ud, struct buf *out)
{
    promtext_family(out, "remex_test_things", "gauge", "Things.");
    promtext_sample(out, "remex_test_things", NULL, 0, *(int *)ud);
}

static void test_role_endpoint(void **state)
{
    (void)state;
    struct remex_error e;
    static const struct role_ops ops = {.name = "worker"};
    struct role r = {.ops = &ops, .state = ROLE_STARTING};
    int things = 7;
    char resp[8192];
    r.loop = evloop_new(&e);
    struct rolehttp *h = rolehttp_role(&r, "127.0.0.1:0", own_metrics, &things, &e);
    assert_non_null(h);
    uint16_t port = rolehttp_port(h);
    const char *hz = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    exchange(r.loop, port, hz, resp, sizeof(resp));
    assert_non_null(strstr(resp, "HTTP/1.1 503"));
    assert_non_null(strstr(resp, "{\"role\":\"worker\",\"state\":\"starting\"}"));
    r.state = ROLE_READY;
    exchange(r.loop, port, hz, resp, sizeof(resp));
    assert_non_null(strstr(resp, "HTTP/1.1 200"));
    r.state = ROLE_DRAINING;
    exchange(r.loop, port, hz, resp, sizeof(resp));
    assert_non_null(strstr(resp, "HTTP/1.1 503"));
    assert_non_null(strstr(resp, "draining"));
    exchange(r.loop, port, "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp,
             sizeof(resp));
    assert_non_null(strstr(resp, "HTTP/1.1 200"));
    exchange(r.loop, port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp,
             sizeof(resp));
    assert_non_null(strstr(resp, "remex_role_ready{role=\"worker\"} 0\n"));
    assert_non_null(strstr(resp, "remex_role_state{role=\"worker\",state=\"draining\"} 1\n"));
    assert_non_null(strstr(resp, "remex_role_state{role=\"worker\",state=\"ready\"} 0\n"));
    assert_null(strstr(resp, "remex_role_plane_up")); /* no API client */
    assert_non_null(strstr(resp, "remex_test_things 7\n"));
    rolehttp_free(h);
    evloop_free(r.loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serves_from_the_loop),
        cmocka_unit_test(test_parse_listen),
        cmocka_unit_test(test_busy_port_refused),
        cmocka_unit_test(test_role_endpoint),
    };
    return cmocka_run_group_tests_name("rolehttp", tests, NULL, NULL);
}
