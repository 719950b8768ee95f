/*
 * httploop: http_multi <-> evloop glue (see include/remex/httploop.h).
 */
#include <stdlib.h>

#include "remex/evloop.h"
#include "remex/http.h"
#include "remex/httploop.h"
#include "remex/log.h"

struct httploop {
    struct evloop *loop; /* borrowed */
    struct http_multi *multi;
    uint64_t timer; /* the multi's timer, 0 when disarmed */
};

static void on_fd(struct evloop *loop, int fd, unsigned ev, void *arg)
{
    (void)loop;
    struct httploop *h = arg;
    int hev = ((ev & EVLOOP_READ) ? HTTP_EV_IN : 0) | ((ev & EVLOOP_WRITE) ? HTTP_EV_OUT : 0) |
              ((ev & EVLOOP_ERROR) ? HTTP_EV_ERR : 0);
    http_multi_socket_action(h->multi, fd, hev);
}

/* A socket evloop cannot watch is logged and left to the transfer's timeout, which fails it. */
static void hook_watch(int fd, int events, void *ud)
{
    struct httploop *h = ud;
    struct remex_error e;
    if (events == 0) {
        evloop_unwatch(h->loop, fd);
        return;
    }
    unsigned m =
        ((events & HTTP_EV_IN) ? EVLOOP_READ : 0) | ((events & HTTP_EV_OUT) ? EVLOOP_WRITE : 0);
    if (evloop_watch(h->loop, fd, m ? m : EVLOOP_READ, on_fd, h, &e) != REMEX_OK)
        log_error("http: cannot watch fd %d: %s", fd, e.msg);
}

static void on_timer(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    struct httploop *h = arg;
    if (h->timer == id)
        h->timer = 0;
    http_multi_timeout(h->multi);
}

static void hook_timer(long ms, void *ud)
{
    struct httploop *h = ud;
    if (ms < 0) {
        if (h->timer)
            evloop_timer_cancel(h->loop, h->timer);
        h->timer = 0;
        return;
    }
    if (h->timer && evloop_timer_rearm(h->loop, h->timer, (uint64_t)ms) == REMEX_OK)
        return;
    h->timer = evloop_timer_add(h->loop, (uint64_t)ms, 0, on_timer, h);
}

struct httploop *httploop_new(struct evloop *loop, struct remex_error *e)
{
    struct httploop *h = calloc(1, sizeof(*h));
    if (!h) {
        remex_seterr(e, REMEX_ENOMEM, "httploop: out of memory");
        return NULL;
    }
    h->loop = loop;
    struct http_multi_hooks hooks = {.watch_fd = hook_watch, .set_timer = hook_timer, .ud = h};
    if (http_multi_new(&hooks, &h->multi, e) != REMEX_OK) {
        free(h);
        return NULL;
    }
    return h;
}

struct http_multi *httploop_multi(struct httploop *h)
{
    return h->multi;
}

void httploop_free(struct httploop *h)
{
    if (!h)
        return;
    http_multi_free(h->multi);
    if (h->timer)
        evloop_timer_cancel(h->loop, h->timer);
    free(h);
}
