/*
 * rolehttp: libmicrohttpd in the role's evloop (include/remex/rolehttp.h).
 *
 * libmicrohttpd is loaded with dlopen the first time a server is started,
 * never linked: its library constructor starts GnuTLS (about 1 MiB resident),
 * which a role that serves nothing must not pay for. The functions used here
 * are called through a table of pointers of their own prototypes
 * (<microhttpd.h>), under their own names.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "remex/evloop.h"
#include "remex/promtext.h"
#include "remex/role.h"
#include "remex/rolehttp.h"

#define CONN_TIMEOUT_S 10u

/* ---- libmicrohttpd, loaded on first use ---- */

static struct {
    void *lib;
    __typeof__(&MHD_start_daemon) start_daemon;
    __typeof__(&MHD_stop_daemon) stop_daemon;
    __typeof__(&MHD_get_daemon_info) get_daemon_info;
    __typeof__(&MHD_get_timeout) get_timeout;
    __typeof__(&MHD_run) run;
    __typeof__(&MHD_lookup_connection_value) lookup_connection_value;
    __typeof__(&MHD_create_response_from_buffer) create_response_from_buffer;
    __typeof__(&MHD_add_response_header) add_response_header;
    __typeof__(&MHD_queue_response) queue_response;
    __typeof__(&MHD_destroy_response) destroy_response;
} mhd;
static pthread_once_t mhd_once = PTHREAD_ONCE_INIT;
static char mhd_error[256];

#define MHD_SYM(f) (*(void **)&mhd.f = dlsym(mhd.lib, "MHD_" #f)) == NULL

static void mhd_load(void)
{
    static const char *const names[] = {"libmicrohttpd.so.12", "libmicrohttpd.so"};
    for (size_t i = 0; i < 2 && !mhd.lib; i++)
        mhd.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!mhd.lib) {
        const char *why = dlerror();
        snprintf(mhd_error, sizeof(mhd_error), "cannot load libmicrohttpd: %s", why ? why : "?");
        return;
    }
    if (MHD_SYM(start_daemon) || MHD_SYM(stop_daemon) || MHD_SYM(get_daemon_info) ||
        MHD_SYM(get_timeout) || MHD_SYM(run) || MHD_SYM(lookup_connection_value) ||
        MHD_SYM(create_response_from_buffer) || MHD_SYM(add_response_header) ||
        MHD_SYM(queue_response) || MHD_SYM(destroy_response)) {
        snprintf(mhd_error, sizeof(mhd_error), "libmicrohttpd lacks a function: %s", dlerror());
        dlclose(mhd.lib);
        mhd.lib = NULL;
    }
}

/* The calls below go through the table (same names, same prototypes). */
#define MHD_start_daemon                mhd.start_daemon
#define MHD_stop_daemon                 mhd.stop_daemon
#define MHD_get_daemon_info             mhd.get_daemon_info
#define MHD_get_timeout                 mhd.get_timeout
#define MHD_run                         mhd.run
#define MHD_lookup_connection_value     mhd.lookup_connection_value
#define MHD_create_response_from_buffer mhd.create_response_from_buffer
#define MHD_add_response_header         mhd.add_response_header
#define MHD_queue_response              mhd.queue_response
#define MHD_destroy_response            mhd.destroy_response

/* rolehttp_role's state: what its handler reads. */
struct role_probe {
    struct role *r;
    rolehttp_metrics_fn fn;
    void *ud;
};

struct rolehttp {
    struct evloop *loop;
    struct role_probe probe; /* rolehttp_role only */
    struct MHD_Daemon *d;
    int epfd;
    uint64_t timer;
    uint16_t port;
    rolehttp_handler_fn fn;
    void *ud;
};

remex_err rolehttp_parse_listen(const char *s, struct sockaddr_storage *out, socklen_t *len,
                                struct remex_error *e)
{
    char host[64];
    const char *colon = s ? strrchr(s, ':') : NULL;
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    size_t hl = colon ? (size_t)(colon - s) : 0;
    memset(out, 0, sizeof(*out));
    if (!colon || !end || *end || end == colon + 1 || port < 0 || port > 65535 || hl == 0 ||
        hl >= sizeof(host))
        return remex_seterr(e, REMEX_EINVAL, "listen: expected ADDRESS:PORT");
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
        host[hl - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
            return remex_seterr(e, REMEX_EINVAL, "listen: bad IPv6 address");
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a6);
        return REMEX_OK;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
        return remex_seterr(e, REMEX_EINVAL, "listen: expected an IPv4 address or [IPv6]");
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    *len = sizeof(*a4);
    return REMEX_OK;
}

static enum MHD_Result queue(struct MHD_Connection *c, int status, const char *ctype,
                             struct buf *body)
{
    size_t len = 0;
    char *data = buf_detach(body, &len);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(data ? len : 0, data ? (void *)data : (void *)"",
                                        data ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result simple(struct MHD_Connection *c, int status, const char *text)
{
    struct buf b = BUF_INIT(256);
    buf_puts(&b, text);
    return queue(c, status, "text/plain; charset=utf-8", &b);
}

/* Answers at the first call (headers received): no request here carries a body. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    struct rolehttp *h = cls;
    if (*con_cls) { /* body bytes after the answer was queued: dropped */
        *upload_data_size = 0;
        return MHD_YES;
    }
    *con_cls = h;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return simple(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if ((cl && strcmp(cl, "0") != 0) || te)
        return simple(c, MHD_HTTP_CONTENT_TOO_LARGE, "request bodies are not accepted\n");
    struct rolehttp_resp resp = {.status = 200, .content_type = "text/plain; charset=utf-8"};
    buf_init(&resp.body, ROLEHTTP_BODY_MAX);
    h->fn(h->ud, url, &resp);
    enum MHD_Result ret = queue(c, resp.status, resp.content_type, &resp.body);
    buf_free(&resp.body);
    return ret;
}

static void on_timer(struct evloop *loop, uint64_t id, void *arg);

/* Runs whatever libmicrohttpd has ready, then re-arms its timeout. */
static void pump(struct rolehttp *h)
{
    MHD_run(h->d);
    MHD_UNSIGNED_LONG_LONG t = 0;
    if (h->timer) {
        evloop_timer_cancel(h->loop, h->timer);
        h->timer = 0;
    }
    if (MHD_get_timeout(h->d, &t) == MHD_YES)
        h->timer = evloop_timer_add(h->loop, t > EVLOOP_TIMER_MAX_MS ? EVLOOP_TIMER_MAX_MS : t, 0,
                                    on_timer, h);
}

static void on_timer(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct rolehttp *h = arg;
    h->timer = 0;
    pump(h);
}

static void on_ready(struct evloop *loop, int fd, unsigned events, void *arg)
{
    (void)loop;
    (void)fd;
    (void)events;
    pump(arg);
}

struct rolehttp *rolehttp_new(struct evloop *loop, const char *listen, rolehttp_handler_fn fn,
                              void *ud, struct remex_error *e)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    if (rolehttp_parse_listen(listen, &sa, &salen, e) != REMEX_OK)
        return NULL;
    pthread_once(&mhd_once, mhd_load);
    if (!mhd.lib) {
        remex_seterr(e, REMEX_EUNSUPPORTED, "listen %s: %s", listen, mhd_error);
        return NULL;
    }
    struct rolehttp *h = calloc(1, sizeof(*h));
    if (!h) {
        remex_seterr(e, REMEX_ENOMEM, "rolehttp: out of memory");
        return NULL;
    }
    h->loop = loop;
    h->fn = fn;
    h->ud = ud;
    h->epfd = -1;
    unsigned flags = MHD_USE_EPOLL | (sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    errno = 0;
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)ROLEHTTP_CONN_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
        CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768, MHD_OPTION_END);
    if (!h->d) {
        remex_seterr(e, REMEX_ESYS, "listen %s: %s", listen,
                     errno ? strerror(errno) : "cannot start the HTTP server");
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *ep = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = pi ? pi->port : 0;
    if (!ep || evloop_watch(loop, ep->epoll_fd, EVLOOP_READ, on_ready, h, e) != REMEX_OK) {
        if (!ep)
            remex_seterr(e, REMEX_ESYS, "listen %s: no epoll descriptor", listen);
        MHD_stop_daemon(h->d);
        free(h);
        return NULL;
    }
    h->epfd = ep->epoll_fd;
    pump(h);
    return h;
}

uint16_t rolehttp_port(const struct rolehttp *h)
{
    return h->port;
}

void rolehttp_free(struct rolehttp *h)
{
    if (!h)
        return;
    if (h->timer)
        evloop_timer_cancel(h->loop, h->timer);
    if (h->epfd >= 0)
        evloop_unwatch(h->loop, h->epfd);
    MHD_stop_daemon(h->d);
    free(h);
}

/* ---- a role's own probe endpoint ---- */

static const char *const role_state_names[] = {"starting", "ready", "draining", "stopping",
                                               "finished"};

static void role_metrics(const struct role_probe *p, struct buf *out)
{
    const char *name = p->r->ops->name;
    promtext_family(out, "remex_role_ready", "gauge", "1 while the role is ready for its work.");
    promtext_sample(out, "remex_role_ready", (const char *[]){"role", name}, 1,
                    p->r->state == ROLE_READY);
    promtext_family(out, "remex_role_state", "gauge", "1 for the role's current life-cycle state.");
    for (size_t i = 0; i < sizeof(role_state_names) / sizeof(role_state_names[0]); i++)
        promtext_sample(out, "remex_role_state",
                        (const char *[]){"role", name, "state", role_state_names[i]}, 2,
                        (size_t)p->r->state == i);
    if (p->r->api) {
        promtext_family(out, "remex_role_plane_up", "gauge",
                        "1 while the plane answers the role's calls.");
        promtext_sample(out, "remex_role_plane_up", (const char *[]){"role", name}, 1,
                        api_reachable(p->r->api));
        promtext_family(out, "remex_role_reports_pending", "gauge",
                        "Reports not yet delivered to the plane (in flight or journaled).");
        promtext_sample(out, "remex_role_reports_pending", (const char *[]){"role", name}, 1,
                        (double)api_reports_pending(p->r->api));
    }
    if (p->fn)
        p->fn(p->ud, out);
}

static void role_handler(void *ud, const char *path, struct rolehttp_resp *resp)
{
    const struct role_probe *p = ud;
    size_t st = (size_t)p->r->state;
    const char *state =
        st < sizeof(role_state_names) / sizeof(role_state_names[0]) ? role_state_names[st] : "?";
    if (strcmp(path, "/metrics") == 0) {
        resp->content_type = PROMTEXT_CONTENT_TYPE;
        role_metrics(p, &resp->body);
    } else if (strcmp(path, "/healthz") == 0) {
        resp->status = p->r->state == ROLE_READY ? 200 : 503;
        resp->content_type = "application/json";
        buf_printf(&resp->body, "{\"role\":\"%s\",\"state\":\"%s\"}\n", p->r->ops->name, state);
    } else if (strcmp(path, "/livez") == 0) {
        buf_puts(&resp->body, "ok\n");
    } else {
        resp->status = 404;
        buf_puts(&resp->body, "not found: try /healthz, /livez or /metrics\n");
    }
}

struct rolehttp *rolehttp_role(struct role *r, const char *listen, rolehttp_metrics_fn fn, void *ud,
                               struct remex_error *e)
{
    struct rolehttp *h = rolehttp_new(r->loop, listen, role_handler, NULL, e);
    if (!h)
        return NULL;
    h->probe = (struct role_probe){.r = r, .fn = fn, .ud = ud};
    h->ud = &h->probe;
    return h;
}
