/*
 * The per-task Unix socket (REMEX_SOCKET): requests from the task process,
 * answered by the worker. Protocol: docs/task-protocol.md (ipc frames: 4-byte
 * big-endian length + a JSON object).
 *
 * Only the task may talk: a connection is accepted when SO_PEERCRED shows the
 * worker's uid and a pid inside the task's process group; anything else is
 * closed at once (and logged). One request is served at a time per
 * connection; frames that arrive while one is in progress wait in the decoder.
 * The sockets live in the worker's socket folder (main.c: a private 0700
 * folder on tmpfs when one is available, else <state_dir>/sock) and are 0600.
 *
 * Sockets are pooled: a running try takes a free socket "<n>.sock" (created
 * on first use, so there are at most as many as tries ever ran at once) and
 * gives it back when it ends, after its connections are closed. A socket
 * serves one try at a time; a connection to a free socket is refused like any
 * other foreign peer. The pool is removed when the worker exits. Reusing the
 * sockets saves a socket, bind, chmod, listen, unlink and two epoll calls per
 * try.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/evloop.h"
#include "remex/ipc.h"
#include "remex/json.h"
#include "remex/log.h"
#include "remex/mask.h"
#include "remex/objstore.h"
#include "remex/secrets.h"
#include "remex/trigspec.h"
#include "worker.h"

#define XCOM_VALUE_MAX (512u * 1024u)
#define CONNS_MAX      16 /* open connections per task */

struct tconn {
    struct tconn *next;
    struct wtask *t;
    struct ipc_conn *c;
    int busy;
    int closed;
};

static int conn_events(struct tconn *tc);
static void serve(struct tconn *tc);

static void conn_drop(struct tconn *tc)
{
    if (!tc->closed) {
        evloop_unwatch(tc->t->w->loop, ipc_conn_fd(tc->c));
        ipc_conn_free(tc->c);
        tc->c = NULL;
        tc->closed = 1;
    }
    if (tc->busy)
        return;
    struct wtask *t = tc->t;
    for (struct tconn **pp = &t->conns; *pp; pp = &(*pp)->next)
        if (*pp == tc) {
            *pp = tc->next;
            break;
        }
    free(tc);
}

/* Queues msg (owned) and flushes; -1 when the connection was dropped (tc freed). */
static int reply(struct tconn *tc, json_t *msg)
{
    struct remex_error e;
    if (!tc->closed && msg && ipc_conn_send(tc->c, msg, NULL, 0, &e) != REMEX_OK)
        log_warn("ti %" PRId64 ": task socket reply: %s", tc->t->ti_id, e.msg);
    json_decref(msg);
    return tc->closed ? 0 : conn_events(tc);
}

static json_t *err_reply(const char *code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static json_t *err_reply(const char *code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", code, "message", msg);
}

/* Keys of XCom entries: 1..250 bytes of [A-Za-z0-9._-]. */
static int good_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 250)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return 0;
    return 1;
}

static void key_part(struct buf *b, const char *s)
{
    for (; *s; s++) {
        char c = *s;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 strchr("._=:+@,-", c);
        buf_putc(b, ok ? c : '_');
    }
}

/* ---- xcom ---- */

struct xreq {
    struct tconn *tc;
    int pull;
    char key[256]; /* push: the XCom key (good_name) */
};

/* Replies out to x's connection (or drops it if it closed meanwhile) and frees x. */
static void xcom_reply(struct xreq *x, json_t *out)
{
    struct tconn *tc = x->tc;
    tc->busy = 0;
    free(x);
    if (tc->closed) {
        json_decref(out);
        conn_drop(tc);
        return;
    }
    if (reply(tc, out) == 0)
        serve(tc);
}

/* The value of a pull, back from the store thread. */
static void xcom_fetched(struct store_job *j)
{
    json_t *out;
    if (j->rc != REMEX_OK) {
        out = err_reply("unavailable", "xcom value: %s", j->err.msg);
    } else {
        out = json_pack("{s:b,s:s%}", "ok", 1, "value", j->data.data ? j->data.data : "",
                        j->data.len);
        if (!out)
            out = err_reply("unavailable", "xcom value is not UTF-8 text");
    }
    xcom_reply(j->arg, out);
}

static void xcom_done(struct wtask *t, void *arg, const struct api_result *res)
{
    struct worker *w = t->w;
    remex_err rc = res->rc;
    json_t *r = res->reply;
    struct xreq *x = arg;
    if (rc == REMEX_ENOTFOUND) {
        xcom_reply(x, err_reply("not_found", "no such XCom entry"));
    } else if (rc != REMEX_OK) {
        xcom_reply(x, err_reply("unavailable", "%s", res->msg));
    } else if (!x->pull) {
        xcom_reply(x, json_pack("{s:b}", "ok", 1));
    } else {
        const char *uri = json_string_value(json_object_get(r, "uri"));
        const char *sum = json_string_value(json_object_get(r, "checksum"));
        struct store_job *j = store_job_new(t, w->xstore, STORE_GET_URI, XCOM_VALUE_MAX);
        if (!uri || !sum) {
            store_job_free(j);
            xcom_reply(x, err_reply("unavailable", "plane reply without uri or checksum"));
            return;
        }
        if (j) {
            j->key = strdup(uri);
            j->checksum = strdup(sum);
            j->done = xcom_fetched;
            j->arg = x;
        }
        if (!j || !j->key || !j->checksum || storeio_submit(w, j) != 0) {
            store_job_free(j);
            xcom_reply(x, err_reply("unavailable", "xcom value: store thread unavailable"));
        }
    }
}

/* The value of a push is stored: its reference goes to the plane. */
static void xcom_stored(struct store_job *j)
{
    struct xreq *x = j->arg;
    if (j->rc != REMEX_OK) {
        xcom_reply(x, err_reply("unavailable", "xcom store: %s", j->err.msg));
        return;
    }
    json_t *body =
        json_pack("{s:s,s:I,s:s,s:s}", "uri", j->ref.uri, "size", (json_int_t)j->ref.size,
                  "checksum", j->ref.checksum, "content_type", "text/plain");
    if (!body) {
        xcom_reply(x, err_reply("internal", "out of memory"));
        return;
    }
    struct remex_error e = {0};
    struct tcall *c = task_call_new(j->t, xcom_done, x);
    if (c)
        task_call_started(c,
                          api_xcom_put(j->t->w->api, j->t->ti_id, j->t->token, x->key, body,
                                       task_call_done, c, &e),
                          &e);
    json_decref(body);
}

static json_t *xcom_push(struct tconn *tc, json_t *req)
{
    struct wtask *t = tc->t;
    struct worker *w = t->w;
    const char *key = json_string_value(json_object_get(req, "key"));
    json_t *val = json_object_get(req, "value");
    if (!good_name(key))
        return err_reply("bad_request", "key: expected 1-250 characters of [A-Za-z0-9._-]");
    if (!json_is_string(val) || json_string_length(val) > XCOM_VALUE_MAX)
        return err_reply("bad_request", "value: expected a string of at most %u bytes",
                         XCOM_VALUE_MAX);
    if (!w->xstore)
        return err_reply("unavailable", "no XCom object store configured");
    struct store_job *j = store_job_new(t, w->xstore, STORE_PUT, XCOM_VALUE_MAX);
    struct xreq *x = calloc(1, sizeof(*x));
    struct buf k = BUF_INIT(OBJSTORE_KEY_MAX);
    buf_puts(&k, "xcom/dag_id=");
    key_part(&k, t->dag_id);
    buf_puts(&k, "/run_id=");
    key_part(&k, t->run_id);
    buf_puts(&k, "/task_id=");
    key_part(&k, t->task_id);
    buf_printf(&k, "/map_index=%" PRId64 "/", t->map_index);
    buf_puts(&k, key);
    if (!j || !x || buf_append(&j->data, json_string_value(val), json_string_length(val)) ||
        !(j->key = buf_detach(&k, NULL))) {
        store_job_free(j);
        free(x);
        buf_free(&k);
        return err_reply("internal", "out of memory");
    }
    snprintf(x->key, sizeof(x->key), "%s", key);
    x->tc = tc;
    j->done = xcom_stored;
    j->arg = x;
    if (storeio_submit(w, j) != 0) {
        store_job_free(j);
        free(x);
        return err_reply("unavailable", "xcom store: store thread unavailable");
    }
    tc->busy = 1;
    return NULL;
}

static json_t *xcom_pull(struct tconn *tc, json_t *req)
{
    struct wtask *t = tc->t;
    const char *key = json_string_value(json_object_get(req, "key"));
    const char *task = json_string_value(json_object_get(req, "task_id"));
    json_t *mi = json_object_get(req, "map_index");
    if (!good_name(key))
        return err_reply("bad_request", "key: expected 1-250 characters of [A-Za-z0-9._-]");
    if (task && !good_name(task))
        return err_reply("bad_request", "task_id: expected a task id");
    if (mi && !json_is_integer(mi))
        return err_reply("bad_request", "map_index: expected integer");
    if (!t->w->xstore)
        return err_reply("unavailable", "no XCom object store configured");
    struct xreq *x = calloc(1, sizeof(*x));
    if (!x)
        return err_reply("internal", "out of memory");
    x->tc = tc;
    x->pull = 1;
    tc->busy = 1;
    struct remex_error e = {0};
    struct tcall *c = task_call_new(t, xcom_done, x);
    if (c)
        task_call_started(c,
                          api_xcom_get(t->w->api, t->ti_id, t->token, key, task ? task : t->task_id,
                                       mi ? (int64_t)json_integer_value(mi) : (int64_t)-1,
                                       task_call_done, c, &e),
                          &e);
    return NULL;
}

/* ---- connections, variables, defer ---- */

/* A conn.get or var.get answer is back from the store thread. */
static void secret_fetched(struct store_job *j)
{
    struct xreq *x = j->arg;
    struct wtask *t = j->t;
    const char *err = json_string_value(json_object_get(j->res, "error"));
    const char *code = json_string_value(json_object_get(j->res, "code"));
    json_t *v, *out;
    size_t i;
    json_array_foreach(json_object_get(j->res, "mask"), i, v)
    {
        mask_add(t->mask, json_string_value(v), json_string_length(v));
    }
    if (j->rc != REMEX_OK)
        out = err_reply("unavailable", "%s", j->err.msg);
    else if (err)
        out = err_reply(code ? code : "unavailable", "%s", err);
    else if ((v = json_object_get(j->res, "conn")) != NULL)
        out = json_pack("{s:b,s:O}", "ok", 1, "conn", v);
    else
        out = json_pack("{s:b,s:O}", "ok", 1, "value", json_object_get(j->res, "value"));
    xcom_reply(x, out ? out : err_reply("internal", "out of memory"));
}

/* Hands one lookup ("conn" or "var" = id) to the store thread; NULL: the reply comes later. */
static json_t *secret_lookup(struct tconn *tc, const char *field, const char *id)
{
    struct wtask *t = tc->t;
    struct store_job *j = store_job_new(t, NULL, STORE_SECRETS, 0);
    struct xreq *x = calloc(1, sizeof(*x));
    if (!j || !x || !(j->req = json_pack("{s:s}", field, id))) {
        store_job_free(j);
        free(x);
        return err_reply("internal", "out of memory");
    }
    x->tc = tc;
    j->secrets = t->w->secrets;
    j->done = secret_fetched;
    j->arg = x; /* the job owns x until secret_fetched */
    if (storeio_submit(t->w, j) != 0) {
        store_job_free(j);
        free(x);
        return err_reply("unavailable", "secrets: the lookup could not be started");
    }
    tc->busy = 1;
    return NULL;
}

static json_t *conn_get(struct tconn *tc, json_t *req)
{
    const char *id = json_string_value(json_object_get(req, "conn_id"));
    if (!id || !*id || strlen(id) > 250)
        return err_reply("bad_request", "conn_id: expected string");
    return secret_lookup(tc, "conn", id);
}

static json_t *var_get(struct tconn *tc, json_t *req)
{
    const char *key = json_string_value(json_object_get(req, "key"));
    if (!key || !*key || strlen(key) > 250)
        return err_reply("bad_request", "key: expected string");
    return secret_lookup(tc, "var", key);
}

static json_t *defer(struct tconn *tc, json_t *req)
{
    struct wtask *t = tc->t;
    json_t *trig = json_object_get(req, "trigger");
    json_t *rw = json_object_get(req, "resume_with");
    if (!json_is_object(trig) || !json_is_string(json_object_get(trig, "type")))
        return err_reply("bad_request", "trigger: expected an object with a string \"type\"");
    if (rw && !json_is_string(rw))
        return err_reply("bad_request", "resume_with: expected string");
    struct trigspec ts;
    struct remex_error e = {0};
    remex_err rc = trigspec_parse(trig, NULL, &ts, &e);
    trigspec_free(&ts);
    if (rc != REMEX_OK)
        return err_reply("bad_request", "%s", e.msg);
    json_decref(t->defer_trigger);
    t->defer_trigger = json_deep_copy(trig);
    if (rw && t->defer_trigger)
        json_object_set(t->defer_trigger, "resume_with", rw);
    tasklog_note(t, "deferral requested (trigger type %s); exit 0 to release the slot",
                 json_string_value(json_object_get(trig, "type")));
    return json_pack("{s:b}", "ok", 1);
}

static json_t *dispatch(struct tconn *tc, json_t *req)
{
    const char *op = json_string_value(json_object_get(req, "op"));
    if (!op)
        return err_reply("bad_request", "op: missing");
    if (strcmp(op, "xcom.push") == 0)
        return xcom_push(tc, req);
    if (strcmp(op, "xcom.pull") == 0)
        return xcom_pull(tc, req);
    if (strcmp(op, "conn.get") == 0)
        return conn_get(tc, req);
    if (strcmp(op, "var.get") == 0)
        return var_get(tc, req);
    if (strcmp(op, "defer") == 0)
        return defer(tc, req);
    return err_reply("bad_request", "op: unknown operation");
}

/* ---- connection plumbing ---- */

static void on_conn(struct evloop *loop, int fd, unsigned ev, void *arg);

static int conn_events(struct tconn *tc)
{
    struct remex_error e;
    remex_err rc = ipc_conn_flush(tc->c, &e);
    if (rc != REMEX_OK && rc != REMEX_EAGAIN) {
        int busy = tc->busy;
        conn_drop(tc);
        return busy ? 0 : -1;
    }
    evloop_modify(tc->t->w->loop, ipc_conn_fd(tc->c), ipc_conn_events(tc->c), NULL);
    return 0;
}

static void serve(struct tconn *tc)
{
    while (!tc->closed && !tc->busy) {
        json_t *req = NULL;
        struct remex_error e;
        remex_err rc = ipc_conn_pop(tc->c, &req, NULL, NULL, &e);
        if (rc == REMEX_EAGAIN)
            return;
        if (rc != REMEX_OK) {
            log_warn("ti %" PRId64 ": task socket: %s", tc->t->ti_id, e.msg);
            conn_drop(tc);
            return;
        }
        json_t *out = dispatch(tc, req);
        json_decref(req);
        if (out && reply(tc, out) != 0)
            return;
    }
}

static void on_conn(struct evloop *loop, int fd, unsigned ev, void *arg)
{
    (void)loop;
    (void)fd;
    struct tconn *tc = arg;
    struct remex_error e;
    if ((ev & EVLOOP_WRITE) && (conn_events(tc) != 0 || tc->closed))
        return;
    if (ev & (EVLOOP_READ | EVLOOP_ERROR)) {
        remex_err rc = ipc_conn_read(tc->c, &e);
        if (rc != REMEX_OK && rc != REMEX_EAGAIN) {
            /* Peer gone: a request in progress drops the connection when it completes. */
            conn_drop(tc);
            return;
        }
        serve(tc);
    }
}

/* A listening socket of the pool; owner is the try it serves, NULL while free. */
struct tsock {
    struct worker *w;
    int lfd;
    int paused; /* not watched: a peer came before the owner's spawn was back */
    struct wtask *owner;
    char path[108];
};

static void on_accept(struct evloop *loop, int lfd, unsigned ev, void *arg);

/* Accepts one connection for t after the peer check; 0 accepted or refused, -1 nothing left. */
static int accept_one(struct tsock *ts)
{
    struct wtask *t = ts->owner;
    int fd;
    struct remex_error e;
    if (t && t->spawning) {
        /* The peer check needs the task's pid: accept once the spawn is back. */
        evloop_unwatch(ts->w->loop, ts->lfd);
        ts->paused = 1;
        return -1;
    }
    if (ipc_accept(ts->lfd, &fd, &e) != REMEX_OK)
        return -1;
    pid_t pid = 0;
    uid_t uid = 0;
    if (ipc_peer_cred(fd, &pid, &uid, NULL, &e) != REMEX_OK || uid != getuid() || !t ||
        t->pid <= 0 || getpgid(pid) != t->pid) {
        if (t)
            log_warn("ti %" PRId64 ": task socket: refused peer pid %d uid %d (not in the task's "
                     "process group)",
                     t->ti_id, (int)pid, (int)uid);
        else
            log_warn("task socket %s: refused peer pid %d uid %d (no try is using it)", ts->path,
                     (int)pid, (int)uid);
        close(fd);
        return 0;
    }
    size_t open_conns = 0;
    for (struct tconn *x = t->conns; x; x = x->next)
        open_conns += !x->closed;
    if (open_conns >= CONNS_MAX) {
        log_warn("ti %" PRId64 ": task socket: more than %d connections; refused", t->ti_id,
                 CONNS_MAX);
        close(fd);
        return 0;
    }
    struct tconn *tc = calloc(1, sizeof(*tc));
    if (!tc || !(tc->c = ipc_conn_new(fd, 0, 0, &e))) {
        free(tc);
        close(fd);
        return 0;
    }
    tc->t = t;
    if (evloop_watch(t->w->loop, ipc_conn_fd(tc->c), EVLOOP_READ, on_conn, tc, &e) != REMEX_OK) {
        ipc_conn_free(tc->c);
        free(tc);
        return 0;
    }
    tc->next = t->conns;
    t->conns = tc;
    return 0;
}

static void on_accept(struct evloop *loop, int lfd, unsigned ev, void *arg)
{
    (void)loop;
    (void)lfd;
    (void)ev;
    for (int i = 0; i < 16 && accept_one(arg) == 0; i++)
        ;
}

/* A free socket of the pool, created when every existing one is in use. */
static remex_err pool_take(struct worker *w, struct tsock **out, struct remex_error *e)
{
    for (size_t i = 0; i < w->nsocks; i++)
        if (!w->socks[i]->owner) {
            *out = w->socks[i];
            return REMEX_OK;
        }
    struct tsock **grown = realloc(w->socks, (w->nsocks + 1) * sizeof(*grown));
    if (!grown)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    w->socks = grown;
    struct tsock *ts = calloc(1, sizeof(*ts));
    if (!ts)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    ts->w = w;
    int n = snprintf(ts->path, sizeof(ts->path), "%s/%zu.sock", w->sock_dir, w->nsocks);
    remex_err rc = n < 0 || (size_t)n >= sizeof(ts->path)
                       ? remex_seterr(e, REMEX_ETOOBIG, "socket path too long for a Unix socket")
                       : ipc_listen(ts->path, 16, &ts->lfd, e);
    if (rc == REMEX_OK &&
        (rc = evloop_watch(w->loop, ts->lfd, EVLOOP_READ, on_accept, ts, e)) != REMEX_OK) {
        close(ts->lfd);
        unlink(ts->path);
    }
    if (rc != REMEX_OK) {
        free(ts);
        return rc;
    }
    w->socks[w->nsocks++] = ts;
    *out = ts;
    return REMEX_OK;
}

remex_err tasksock_open(struct wtask *t, struct remex_error *e)
{
    struct tsock *ts = NULL;
    remex_err rc = pool_take(t->w, &ts, e);
    if (rc == REMEX_OK)
        rc = proc_env_set(&t->env, "REMEX_SOCKET", ts->path, e);
    if (rc != REMEX_OK)
        return rc;
    ts->owner = t;
    t->sock = ts;
    return REMEX_OK;
}

static void resume(struct tsock *ts)
{
    struct remex_error e;
    if (!ts->paused)
        return;
    if (evloop_watch(ts->w->loop, ts->lfd, EVLOOP_READ, on_accept, ts, &e) == REMEX_OK)
        ts->paused = 0;
    else
        log_error("task socket %s: %s", ts->path, e.msg);
}

void tasksock_resume(struct wtask *t)
{
    if (t->sock)
        resume(t->sock);
}

void tasksock_close(struct wtask *t)
{
    if (t->sock) {
        t->sock->owner = NULL;
        resume(t->sock);
        t->sock = NULL;
    }
    struct tconn *tc = t->conns, *next;
    for (; tc; tc = next) {
        next = tc->next;
        conn_drop(tc);
    }
}

void tasksock_pool_free(struct worker *w)
{
    for (size_t i = 0; i < w->nsocks; i++) {
        struct tsock *ts = w->socks[i];
        if (!ts->paused)
            evloop_unwatch(w->loop, ts->lfd);
        close(ts->lfd);
        unlink(ts->path);
        free(ts);
    }
    free(w->socks);
    w->socks = NULL;
    w->nsocks = 0;
}
