/*
 * The supervisor's control socket: one connection per query, {"cmd":"status"}
 * out, one frame back (docs/sentinel.md). Non-blocking from connect to close,
 * bounded by QUERY_TIMEOUT_MS; the reply is decoded by lib supstatus (it
 * comes from another process and is checked field by field).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "remex/evloop.h"
#include "remex/ipc.h"
#include "remex/log.h"
#include "sentinel.h"

#define QUERY_TIMEOUT_MS 5000
#define REPLY_MAX        ((size_t)256 << 10)

struct supctl {
    struct sentinel *s;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct ipc_conn *conn; /* the query in flight, or NULL */
    uint64_t timer;
    int logged; /* the current failure was logged */
};

struct supctl *supctl_new(struct sentinel *s, const char *path)
{
    struct supctl *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->s = s;
    snprintf(c->path, sizeof(c->path), "%s", path);
    return c;
}

static void finish(struct supctl *c)
{
    if (c->timer)
        evloop_timer_cancel(c->s->loop, c->timer);
    c->timer = 0;
    if (c->conn) {
        evloop_unwatch(c->s->loop, ipc_conn_fd(c->conn));
        ipc_conn_free(c->conn);
        c->conn = NULL;
    }
}

/* The query failed: the roles are unknown (not assumed down, not assumed up). */
static void failed(struct supctl *c, const char *why)
{
    struct sentinel *s = c->s;
    finish(c);
    s->have_status = 0;
    snprintf(s->status_err, sizeof(s->status_err), "supervisor %s: %s", c->path, why);
    if (!c->logged)
        log_warn("%s", s->status_err);
    c->logged = 1;
    checks_roles(s);
}

static void answered(struct supctl *c, json_t *msg)
{
    struct sentinel *s = c->s;
    struct remex_error e;
    if (supstatus_parse(msg, &s->status, &e) != REMEX_OK) {
        failed(c, e.msg);
        return;
    }
    finish(c);
    s->have_status = 1;
    s->status_err[0] = '\0';
    if (c->logged)
        log_info("supervisor %s: answering again", c->path);
    c->logged = 0;
    checks_roles(s);
}

static void on_io(struct evloop *loop, int fd, unsigned events, void *arg)
{
    struct supctl *c = arg;
    struct remex_error e;
    json_t *msg = NULL;
    (void)fd;
    remex_err rc = ipc_conn_flush(c->conn, &e);
    if (rc != REMEX_OK && rc != REMEX_EAGAIN) {
        failed(c, e.msg);
        return;
    }
    if (events & (EVLOOP_READ | EVLOOP_ERROR)) {
        rc = ipc_conn_read(c->conn, &e);
        if (rc == REMEX_OK || rc == REMEX_EAGAIN) {
            remex_err prc = ipc_conn_pop(c->conn, &msg, NULL, NULL, &e);
            if (prc == REMEX_OK) {
                answered(c, msg);
                json_decref(msg);
                return;
            }
            if (prc != REMEX_EAGAIN) {
                failed(c, e.msg);
                return;
            }
        } else {
            failed(c, rc == REMEX_ECLOSED ? "closed without an answer" : e.msg);
            return;
        }
    }
    evloop_modify(loop, ipc_conn_fd(c->conn), ipc_conn_events(c->conn), NULL);
}

static void on_timeout(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct supctl *c = arg;
    c->timer = 0;
    failed(c, "no answer within 5 s");
}

/*
 * A non-blocking connect (a Unix socket connects at once, or fails: EAGAIN
 * is a full backlog), to a listener that runs as this uid.
 */
static int connect_nb(struct supctl *c, char *why, size_t whysz)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct remex_error e;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whysz, "socket: %s", strerror(errno));
        return -1;
    }
    memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        snprintf(why, whysz, "%s",
                 errno == ENOENT   ? "no such socket (is remex-agent running?)"
                 : errno == EAGAIN ? "busy (connection backlog full)"
                                   : strerror(errno));
        close(fd);
        return -1;
    }
    if (ipc_peer_check(fd, getuid(), 0, &e) != REMEX_OK) {
        snprintf(why, whysz, "the listener runs as another user");
        close(fd);
        return -1;
    }
    return fd;
}

void supctl_query(struct supctl *c)
{
    struct remex_error e;
    if (c->conn)
        return; /* the previous one is still waiting (bounded by its timer) */
    char why[128];
    int fd = connect_nb(c, why, sizeof(why));
    if (fd < 0) {
        failed(c, why);
        return;
    }
    c->conn = ipc_conn_new(fd, REPLY_MAX, 0, &e);
    if (!c->conn) {
        failed(c, e.msg);
        return;
    }
    json_t *req = json_pack("{s:s}", "cmd", "status");
    remex_err rc = req ? ipc_conn_send(c->conn, req, NULL, 0, &e) : REMEX_ENOMEM;
    json_decref(req);
    if (rc != REMEX_OK ||
        evloop_watch(c->s->loop, fd, EVLOOP_READ | EVLOOP_WRITE, on_io, c, &e) != REMEX_OK) {
        failed(c, rc == REMEX_ENOMEM ? "out of memory" : e.msg);
        return;
    }
    c->timer = evloop_timer_add(c->s->loop, QUERY_TIMEOUT_MS, 0, on_timeout, c);
}

void supctl_free(struct supctl *c)
{
    if (!c)
        return;
    finish(c);
    free(c);
}
