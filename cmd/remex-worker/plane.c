/*
 * The worker's side of the Remote Execution API: register, heartbeat, work
 * long poll, start, state reports (with the journal) and task-token calls.
 *
 * Every call is non-blocking through one http_multi driven by the evloop; the
 * clients are created with max_attempts 1 so that retry policy lives here:
 * full-jitter backoff (200 ms base, 2 s cap) for the poll, register and the
 * journal replay, the heartbeat simply waits for its next tick.
 *
 * Reachability: plane_ok drops to 0 on any connect error, timeout or 5xx and
 * comes back with the next 2xx. New offers are only polled for while
 * plane_ok is set and the journal is empty, so a worker that lost the plane
 * keeps its confirmed tasks running and starts none; their reports go to
 * the journal and are replayed, oldest first, before work is polled again.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/backoff.h"
#include "remex/evloop.h"
#include "remex/journal.h"
#include "remex/json.h"
#include "remex/log.h"
#include "remex/version.h"
#include "remex/timeutil.h"
#include "worker.h"

enum call_kind { C_REGISTER, C_HEARTBEAT, C_POLL, C_START, C_STATE, C_REPLAY, C_TASK };

struct call {
    struct call *prev, *next; /* worker's list of calls in flight */
    struct worker *w;
    struct wtask *t; /* C_START, C_STATE, C_TASK: pending reference */
    enum call_kind kind;
    uint64_t seq; /* C_REPLAY */
    json_t *rec;  /* C_STATE: owned journal record {ti_id, token, body} */
    plane_json_cb cb;
    void *arg;
    char what[96];
};

#define BACKOFF_BASE_MS 200
#define BACKOFF_CAP_MS  2000

static uint64_t jitter(unsigned attempt)
{
    struct backoff b = {.base_ms = BACKOFF_BASE_MS, .cap_ms = BACKOFF_CAP_MS};
    return backoff_full_jitter(&b, attempt > 16 ? 16 : attempt) + 50;
}

/* ---- event loop glue for the multi ---- */

static void on_curl_fd(struct evloop *loop, int fd, unsigned ev, void *arg)
{
    (void)loop;
    struct worker *w = arg;
    int hev = ((ev & EVLOOP_READ) ? HTTP_EV_IN : 0) | ((ev & EVLOOP_WRITE) ? HTTP_EV_OUT : 0) |
              ((ev & EVLOOP_ERROR) ? HTTP_EV_ERR : 0);
    http_multi_socket_action(w->multi, fd, hev);
}

static void hook_watch(int fd, int events, void *ud)
{
    struct worker *w = ud;
    if (events == 0) {
        evloop_unwatch(w->loop, fd);
        return;
    }
    unsigned m =
        ((events & HTTP_EV_IN) ? EVLOOP_READ : 0) | ((events & HTTP_EV_OUT) ? EVLOOP_WRITE : 0);
    struct remex_error e;
    if (evloop_watch(w->loop, fd, m ? m : EVLOOP_READ, on_curl_fd, w, &e) != REMEX_OK)
        log_error("http: cannot watch fd %d: %s", fd, e.msg);
}

static void on_curl_timer(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    struct worker *w = arg;
    if (w->http_timer == id)
        w->http_timer = 0;
    http_multi_timeout(w->multi);
}

static void hook_timer(long ms, void *ud)
{
    struct worker *w = ud;
    if (ms < 0) {
        if (w->http_timer)
            evloop_timer_cancel(w->loop, w->http_timer);
        w->http_timer = 0;
        return;
    }
    if (w->http_timer && evloop_timer_rearm(w->loop, w->http_timer, (uint64_t)ms) == REMEX_OK)
        return;
    w->http_timer = evloop_timer_add(w->loop, (uint64_t)ms, 0, on_curl_timer, w);
}

remex_err plane_init(struct worker *w, struct remex_error *e)
{
    struct http_client_opts o = {.base_url = w->cfg.plane_url,
                                 .ca_file = w->cfg.ca_file,
                                 .proxy = "",
                                 .connect_timeout_ms = 5000,
                                 .timeout_ms = 15000,
                                 .max_attempts = 1};
    remex_err rc = http_client_new(&o, &w->cli, e);
    if (rc != REMEX_OK)
        return rc;
    o.timeout_ms = (long)w->cfg.poll_wait_ms + 15000;
    o.max_response_bytes = 16u * 1024u * 1024u;
    if ((rc = http_client_new(&o, &w->poll, e)) != REMEX_OK)
        return rc;
    struct http_multi_hooks h = {.watch_fd = hook_watch, .set_timer = hook_timer, .ud = w};
    return http_multi_new(&h, &w->multi, e);
}

static void call_free(struct call *c)
{
    struct worker *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    json_decref(c->rec);
    free(c);
}

void plane_shutdown(struct worker *w)
{
    /* Aborted transfers get no callback: their calls are released here. */
    http_multi_free(w->multi);
    w->multi = NULL;
    while (w->calls)
        call_free(w->calls);
    if (w->http_timer)
        evloop_timer_cancel(w->loop, w->http_timer);
    http_client_free(w->cli);
    http_client_free(w->poll);
    w->cli = w->poll = NULL;
}

/* ---- generic call ---- */

static void on_done(remex_err rc, struct http_response *resp, const struct remex_error *e,
                    void *arg);

static int send_call(struct worker *w, struct call *c, struct http_client *cli, const char *method,
                     const char *path, const char *bearer, const json_t *body)
{
    struct buf b = BUF_INIT(8u * 1024u * 1024u);
    struct remex_error e;
    if (body && json_serialize(body, 0, &b, &e) != REMEX_OK) {
        log_error("%s: %s", c->what, e.msg);
        buf_free(&b);
        return -1;
    }
    struct http_request rq = {.method = method,
                              .path = path,
                              .bearer = bearer,
                              .body = body ? b.data : NULL,
                              .body_len = body ? b.len : 0};
    struct http_multi_done d = {.fn = on_done, .arg = c};
    remex_err rc = http_multi_start(w->multi, cli, &rq, d, &e);
    buf_free(&b);
    if (rc != REMEX_OK) {
        log_error("%s: %s", c->what, e.msg);
        return -1;
    }
    if (c->t)
        c->t->pending++;
    c->next = w->calls;
    if (w->calls)
        w->calls->prev = c;
    w->calls = c;
    return 0;
}

static struct call *new_call(struct worker *w, enum call_kind k, struct wtask *t)
{
    struct call *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("out of memory");
        return NULL;
    }
    c->w = w;
    c->kind = k;
    c->t = t;
    return c;
}

/* Marks the plane unreachable (logged once per outage). */
static void plane_down(struct worker *w)
{
    if (w->plane_ok)
        log_warn("plane unreachable: running tasks continue, no new work is started");
    w->plane_ok = 0;
}

/* Marks the plane reachable (logged once per recovery). */
static void plane_up(struct worker *w)
{
    if (!w->plane_ok && w->registered)
        log_info("plane reachable again");
    w->plane_ok = 1;
}

/* Transient: worth retrying later (no response, 5xx, 429, 408). */
static int transient(remex_err rc, long status)
{
    return rc != REMEX_OK || status >= 500 || status == 429 || status == 408 || status == 0;
}

/* ---- register ---- */

static void retry_register(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct worker *w = arg;
    w->reg_timer = 0;
    plane_register(w);
}

void plane_register(struct worker *w)
{
    /* One registration at a time: a second one would start another session and
     * make the plane treat the tries of the first as lost. */
    if (w->reg_inflight || w->registered || w->stopping)
        return;
    if (w->reg_timer) {
        evloop_timer_cancel(w->loop, w->reg_timer);
        w->reg_timer = 0;
    }
    char *tok = NULL;
    struct remex_error e;
    if (cfg_secret_get(&w->cfg.token, &tok, NULL, &e) != REMEX_OK) {
        log_error("agent token: %s; exiting (code %d)", e.msg, WORKER_EXIT_AUTH);
        worker_finish(w, WORKER_EXIT_AUTH);
        return;
    }
    memset(w->hostname, 0, sizeof(w->hostname));
    gethostname(w->hostname, sizeof(w->hostname) - 1);
    json_t *q = json_array();
    for (size_t i = 0; i < w->cfg.queues.n; i++)
        json_array_append_new(q, json_string(w->cfg.queues.items[i]));
    json_t *body =
        json_pack("{s:s,s:[s],s:s,s:s,s:o,s:I,s:{s:b,s:s}}", "name", w->cfg.name, "roles", "worker",
                  "version", REMEX_VERSION, "hostname", w->hostname, "queues", q, "slots",
                  (json_int_t)w->slots, "features", "xcom", 1, "memory_limit", w->memlimit_mech);
    struct call *c = new_call(w, C_REGISTER, NULL);
    if (c && body) {
        snprintf(c->what, sizeof(c->what), "register");
        if (send_call(w, c, w->cli, "POST", "/api/v1/agents/register", tok, body) == 0)
            w->reg_inflight = 1;
        else
            free(c);
    } else {
        free(c);
    }
    json_decref(body);
    cfg_secret_free(tok);
    if (!w->reg_inflight && !w->reg_timer)
        w->reg_timer = evloop_timer_add(w->loop, jitter(w->reg_failures++), 0, retry_register, w);
}

static void heartbeat_tick(struct evloop *loop, uint64_t id, void *arg);

/*
 * A session the plane refuses (expired, superseded, agent token revoked) is
 * replaced by registering again. A plane that refuses fresh sessions over and
 * over (a tampered or foreign session, a key mismatch) stops the worker with
 * exit code 100 instead of a register/refuse loop.
 */
#define SESSION_REFUSALS_MAX 3

static void auth_lost(struct worker *w, const char *what, const char *msg)
{
    if (++w->session_refusals >= SESSION_REFUSALS_MAX) {
        log_error("%s: the plane refused %d session tokens in a row, the last one just issued "
                  "(%s): the session is tampered or invalid; exiting with code %d",
                  what, w->session_refusals, msg, WORKER_EXIT_AUTH);
        worker_finish(w, WORKER_EXIT_AUTH);
        return;
    }
    log_warn("%s: session refused by the plane (%s); registering again", what, msg);
    w->registered = 0;
    plane_register(w);
}

static void set_session(struct worker *w, const char *tok)
{
    if (w->session) {
        explicit_bzero(w->session, strlen(w->session));
        free(w->session);
    }
    w->session = strdup(tok);
}

static void register_done(struct worker *w, remex_err rc, long status, json_t *r, const char *msg)
{
    w->reg_inflight = 0;
    if (status == 401 || status == 403) {
        if (!w->auth_retry) {
            /* The token file may have been rotated: read it again once before giving up. */
            w->auth_retry = 1;
            log_warn("register: agent token refused (%s); re-reading the token and retrying", msg);
            w->reg_timer = evloop_timer_add(w->loop, 500, 0, retry_register, w);
            return;
        }
        log_error("register: the plane refused the agent token: it is revoked, expired or "
                  "invalid (%s); exiting with code %d",
                  msg, WORKER_EXIT_AUTH);
        worker_finish(w, WORKER_EXIT_AUTH);
        return;
    }
    struct json_path p;
    json_path_init(&p, "register reply");
    struct remex_error e;
    int64_t id = 0;
    const char *tok = NULL;
    double iv = 5;
    if (rc == REMEX_OK && status / 100 == 2 &&
        (json_get_i64(&p, r, "agent_id", 1, INT64_MAX, &id, &e) != REMEX_OK ||
         json_get_str(&p, r, "session_token", 16384, &tok, &e) != REMEX_OK ||
         json_opt_double(&p, r, "heartbeat_interval", 0.05, 3600, 5, &iv, &e) != REMEX_OK)) {
        log_error("%s", e.msg);
        status = 502;
    }
    if (transient(rc, status) || status / 100 != 2) {
        if (transient(rc, status))
            plane_down(w);
        if (w->reg_failures++ % 10 == 0)
            log_warn("register: %s; retrying", msg);
        w->reg_timer = evloop_timer_add(w->loop, jitter(w->reg_failures), 0, retry_register, w);
        return;
    }
    char idbuf[32];
    snprintf(idbuf, sizeof(idbuf), "%" PRId64, id);
    free(w->agent_id);
    w->agent_id = strdup(idbuf);
    set_session(w, tok);
    w->auth_retry = 0;
    w->reg_failures = 0;
    w->registered = 1;
    w->plane_ok = 1;
    w->heartbeat_ms = (int64_t)(iv * 1000);
    log_info("registered as agent %s (heartbeat every %" PRId64 " ms, %" PRId64
             " slots, memory limits: %s)",
             w->agent_id, w->heartbeat_ms, w->slots, w->memlimit_mech);
    if (w->hb_timer)
        evloop_timer_cancel(w->loop, w->hb_timer);
    w->hb_timer = evloop_timer_add(w->loop, (uint64_t)w->heartbeat_ms, (uint64_t)w->heartbeat_ms,
                                   heartbeat_tick, w);
    worker_notify_ready(w);
    plane_replay(w);
    plane_maybe_poll(w);
}

/* ---- heartbeat ---- */

static void heartbeat_tick(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct worker *w = arg;
    if (w->hb_inflight || !w->registered || w->stopping)
        return;
    json_t *run = json_array();
    for (struct wtask *t = w->tasks; t; t = t->next)
        if (t->phase == WT_RUNNING || t->phase == WT_STARTING)
            json_array_append_new(run, json_pack("{s:I,s:I}", "ti_id", (json_int_t)t->ti_id,
                                                 "try_number", (json_int_t)t->try_number));
    double load[1] = {0};
    getloadavg(load, 1);
    const char *state = w->draining || w->plane_hold == 1 ? "draining"
                        : w->plane_hold == 2              ? "maintenance"
                                                          : "running";
    int idle = w->draining || w->plane_hold;
    json_t *body = json_pack("{s:s,s:I,s:o,s:[],s:{s:f}}", "state", state, "free_slots",
                             (json_int_t)(idle ? 0 : w->slots - w->running), "running", run,
                             "triggers", "sysinfo", "load1", load[0]);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/agents/%s/heartbeat", w->agent_id);
    struct call *c = new_call(w, C_HEARTBEAT, NULL);
    if (c && body) {
        snprintf(c->what, sizeof(c->what), "heartbeat");
        if (send_call(w, c, w->cli, "POST", path, w->session, body) == 0)
            w->hb_inflight = 1;
        else
            free(c);
    } else {
        free(c);
    }
    json_decref(body);
}

/*
 * The plane's desired state: "drain" and "maintenance" stop new work (running
 * tasks go on, the worker stays registered and keeps beating); "run" takes
 * work again. Unknown values change nothing.
 */
static void plane_desired(struct worker *w, const char *ds)
{
    int hold = !ds                              ? w->plane_hold
               : strcmp(ds, "run") == 0         ? 0
               : strcmp(ds, "drain") == 0       ? 1
               : strcmp(ds, "maintenance") == 0 ? 2
                                                : w->plane_hold;
    if (hold == w->plane_hold)
        return;
    if (hold)
        log_info("the plane asked this worker for %s: taking no new work", ds);
    else
        log_info("the plane asked this worker to run: taking work again");
    w->plane_hold = hold;
}

static void heartbeat_done(struct worker *w, remex_err rc, long status, json_t *r, const char *msg)
{
    w->hb_inflight = 0;
    if (status == 401 || status == 403) {
        auth_lost(w, "heartbeat", msg);
        return;
    }
    if (transient(rc, status) || status / 100 != 2 || !json_is_object(r)) {
        if (w->hb_failures++ == 0)
            log_warn("heartbeat: %s", msg);
        if (transient(rc, status))
            plane_down(w);
        return;
    }
    w->hb_failures = 0;
    w->session_refusals = 0;
    plane_up(w);
    json_t *v = json_object_get(r, "session_token");
    if (json_is_string(v))
        set_session(w, json_string_value(v));
    v = json_object_get(r, "heartbeat_interval");
    int64_t iv = json_is_number(v) ? (int64_t)(json_number_value(v) * 1000) : 0;
    if (iv >= 50 && iv <= 3600000 && iv != w->heartbeat_ms) {
        w->heartbeat_ms = iv;
        evloop_timer_cancel(w->loop, w->hb_timer);
        w->hb_timer = evloop_timer_add(w->loop, (uint64_t)iv, (uint64_t)iv, heartbeat_tick, w);
    }
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(r, "cancel"), i, x)
    {
        json_t *ti = json_object_get(x, "ti_id"), *tr = json_object_get(x, "try_number");
        const char *why = json_string_value(json_object_get(x, "reason"));
        if (json_is_integer(ti) && json_is_integer(tr))
            task_cancel(w, json_integer_value(ti), json_integer_value(tr), why ? why : "cancelled");
    }
    plane_desired(w, json_string_value(json_object_get(r, "desired_state")));
    plane_replay(w);
    plane_maybe_poll(w);
}

/* ---- work long poll ---- */

static void poll_again(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct worker *w = arg;
    w->poll_timer = 0;
    plane_maybe_poll(w);
}

void plane_maybe_poll(struct worker *w)
{
    if (w->poll_inflight || w->poll_timer || !w->registered || w->draining || w->plane_hold ||
        w->stopping)
        return;
    if (w->once && (w->once_taken || w->running > 0))
        return; /* --once: one offer at a time until one is confirmed */
    if (journal_pending(w->journal) > 0 || w->running >= w->slots)
        return;
    int64_t free_slots = w->once ? 1 : w->slots - w->running;
    json_t *q = json_array();
    for (size_t i = 0; i < w->cfg.queues.n; i++)
        json_array_append_new(q, json_string(w->cfg.queues.items[i]));
    /* While the plane looks unreachable the poll is a short probe. */
    double wait = w->plane_ok ? (double)w->cfg.poll_wait_ms / 1000.0 : 0;
    json_t *body =
        json_pack("{s:o,s:I,s:f}", "queues", q, "free_slots", (json_int_t)free_slots, "wait", wait);
    struct call *c = new_call(w, C_POLL, NULL);
    if (c && body) {
        snprintf(c->what, sizeof(c->what), "work poll");
        if (send_call(w, c, w->poll, "POST", "/api/v1/work", w->session, body) == 0)
            w->poll_inflight = 1;
        else
            free(c);
    } else {
        free(c);
    }
    json_decref(body);
    if (!w->poll_inflight)
        w->poll_timer = evloop_timer_add(w->loop, jitter(w->poll_failures++), 0, poll_again, w);
}

static void poll_done(struct worker *w, remex_err rc, long status, json_t *r, const char *msg)
{
    w->poll_inflight = 0;
    if (status == 401 || status == 403) {
        auth_lost(w, "work poll", msg);
        return;
    }
    json_t *arr = json_object_get(r, "assignments");
    if (transient(rc, status) || status / 100 != 2 || !json_is_array(arr)) {
        if (w->poll_failures++ == 0)
            log_warn("work poll: %s%s", msg,
                     status / 100 == 2 ? ": reply without an assignments array" : "");
        if (transient(rc, status))
            plane_down(w);
        w->poll_timer = evloop_timer_add(w->loop, jitter(w->poll_failures), 0, poll_again, w);
        return;
    }
    plane_up(w);
    w->poll_failures = 0;
    w->session_refusals = 0;
    size_t i;
    json_t *a;
    json_array_foreach(arr, i, a)
    {
        const char *skip = w->draining                                    ? "draining"
                           : w->once && (w->once_taken || w->running > 0) ? "--once"
                           : w->running >= w->slots                       ? "no free slot"
                                                                          : NULL;
        if (skip) {
            log_info("offer %zu not taken: %s", i, skip);
            continue;
        }
        task_offer(w, json_incref(a));
    }
    plane_replay(w);
    plane_maybe_poll(w);
}

/* ---- start ---- */

void plane_start(struct worker *w, struct wtask *t)
{
    if (t->start_first_ms == 0)
        t->start_first_ms = timeutil_mono_ms();
    json_t *body =
        json_pack("{s:I,s:s}", "try_number", (json_int_t)t->try_number, "hostname", w->hostname);
    if (body && t->log_path) { /* where the plane (its UI) finds the log while the task runs */
        char uri[4200];
        snprintf(uri, sizeof(uri), "file://%s", t->log_path);
        json_object_set_new(body, "log_uri", json_string(uri));
    }
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/task-instances/%" PRId64 "/start", t->ti_id);
    struct call *c = new_call(w, C_START, t);
    if (c) {
        snprintf(c->what, sizeof(c->what), "start ti %" PRId64 " try %" PRId64, t->ti_id,
                 t->try_number);
        if (send_call(w, c, w->cli, "POST", path, t->token, body) != 0) {
            free(c);
            c = NULL;
        }
    }
    json_decref(body);
    if (!c)
        task_gone(t, "start call could not be made");
}

/* How long an unanswered start is retried before the offer is given up. */
#define START_RETRY_MS (5 * 60 * 1000)

static void retry_start(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct wtask *t = arg;
    t->start_timer = 0;
    t->pending--; /* the timer's reference */
    if (t->w->draining || t->w->stopping) {
        task_gone(t, "draining before the plane confirmed the start");
        return;
    }
    plane_start(t->w, t);
}

/*
 * A start is run only once the plane confirmed it. A start that got no
 * definitive answer (connection lost, timeout, 5xx) may still have been taken
 * by the plane, which then counts the try as running: it is asked again (the
 * plane answers a repeated start of the same try by the same agent with 200)
 * until it is confirmed or refused (409: the offer expired unstarted and was
 * re-queued). Meanwhile heartbeats list the task, so the plane does not fail
 * it as "not running on its agent".
 */
static void start_done(struct call *c, remex_err rc, long status, const char *msg)
{
    struct wtask *t = c->t;
    struct worker *w = c->w;
    if (status / 100 == 2 && rc == REMEX_OK) {
        plane_up(w);
        task_started(t);
        return;
    }
    if (transient(rc, status)) {
        plane_down(w);
        if (!w->draining && !w->stopping &&
            timeutil_mono_ms() - t->start_first_ms < (uint64_t)START_RETRY_MS) {
            t->start_attempts++;
            t->pending++;
            t->start_timer =
                evloop_timer_add(w->loop, jitter(t->start_attempts), 0, retry_start, t);
            if (t->start_timer) {
                log_info("ti %" PRId64 " try %" PRId64 ": start not confirmed (%s); asking again",
                         t->ti_id, t->try_number, msg);
                return;
            }
            t->pending--;
        }
    }
    task_gone(t, status == 409 ? "offer gone (409)" : msg);
}

/* ---- state reports and the journal ---- */

static void send_report(struct worker *w, json_t *rec, struct wtask *t, enum call_kind k,
                        uint64_t seq)
{
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/task-instances/%" PRId64 "/state",
             (int64_t)json_integer_value(json_object_get(rec, "ti_id")));
    struct call *c = new_call(w, k, t);
    if (!c)
        return;
    c->seq = seq;
    c->rec = k == C_STATE ? rec : NULL;
    snprintf(c->what, sizeof(c->what), "state report ti %" PRId64,
             (int64_t)json_integer_value(json_object_get(rec, "ti_id")));
    if (send_call(w, c, w->cli, "POST", path, json_string_value(json_object_get(rec, "token")),
                  json_object_get(rec, "body")) != 0) {
        free(c);
        if (k == C_STATE)
            json_decref(rec);
        return;
    }
    if (k == C_STATE)
        w->reports_inflight++;
    else
        w->replay_inflight = 1;
}

/* Journals rec (borrowed); -1 when the journal refused it (full, disk error). */
static int spool(struct worker *w, json_t *rec)
{
    struct remex_error e;
    uint64_t seq = 0;
    int64_t ti = (int64_t)json_integer_value(json_object_get(rec, "ti_id"));
    if (journal_append(w->journal, rec, &seq, &e) != REMEX_OK) {
        log_error("report journal: %s: report for ti %" PRId64 " kept in memory only", e.msg, ti);
        return -1;
    }
    log_info("report for ti %" PRId64 " journaled (seq %" PRIu64 "); will be replayed", ti, seq);
    return 0;
}

/* A report the journal refused is kept in memory and retried (lost if the worker dies). */
static void hold_report(struct worker *w, json_t *rec)
{
    if (!w->held)
        w->held = json_array();
    if (!w->held || json_array_append(w->held, rec) != 0)
        log_error("report for ti %" PRId64 " lost: out of memory",
                  (int64_t)json_integer_value(json_object_get(rec, "ti_id")));
}

void plane_report(struct worker *w, struct wtask *t, json_t *body)
{
    json_t *rec =
        json_pack("{s:I,s:s,s:o}", "ti_id", (json_int_t)t->ti_id, "token", t->token, "body", body);
    if (!rec) {
        log_error("report for ti %" PRId64 ": out of memory", t->ti_id);
        return;
    }
    if (!w->plane_ok || journal_pending(w->journal) > 0) {
        if (spool(w, rec) != 0)
            hold_report(w, rec);
        json_decref(rec);
        plane_replay(w);
        return;
    }
    send_report(w, rec, t, C_STATE, 0);
}

static void replay_tick(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct worker *w = arg;
    w->replay_timer = 0;
    plane_replay(w);
}

void plane_replay(struct worker *w)
{
    if (w->replay_inflight || w->replay_timer || w->stopping)
        return;
    uint64_t seq;
    const json_t *rec = journal_get(w->journal, 0, &seq);
    if (!rec && json_array_size(w->held) > 0 && w->plane_ok) {
        json_t *h = json_incref(json_array_get(w->held, 0));
        json_array_remove(w->held, 0);
        send_report(w, h, NULL, C_STATE, 0); /* takes h */
        return;
    }
    if (!rec) {
        /* A restarted worker registers only once its journal is delivered:
         * registering starts a new agent session, and the plane treats the
         * tries of the previous one as lost. */
        if (!w->registered)
            plane_register(w);
        worker_check_done(w);
        return;
    }
    send_report(w, (json_t *)rec, NULL, C_REPLAY, seq);
}

/* Outcome of a report: 1 delivered or to drop, 0 retry later. */
static int report_outcome(struct call *c, remex_err rc, long status, const char *msg)
{
    int64_t ti = (int64_t)json_integer_value(
        json_object_get(c->rec ? c->rec : (json_t *)journal_get(c->w->journal, 0, NULL), "ti_id"));
    if (rc == REMEX_OK && status / 100 == 2) {
        plane_up(c->w);
        log_debug("report for ti %" PRId64 " delivered", ti);
        return 1;
    }
    if (transient(rc, status)) {
        plane_down(c->w);
        return 0;
    }
    if (status == 409)
        log_info("report for ti %" PRId64 " refused as stale (409): dropped", ti);
    else
        log_error("report for ti %" PRId64 " refused: %s: dropped", ti, msg);
    return 1;
}

static void state_done(struct call *c, remex_err rc, long status, const char *msg)
{
    struct worker *w = c->w;
    w->reports_inflight--;
    if (!report_outcome(c, rc, status, msg) && spool(w, c->rec) != 0)
        hold_report(w, c->rec);
    json_decref(c->rec);
    c->rec = NULL;
    plane_replay(w);
    plane_maybe_poll(w);
    worker_check_done(w);
}

static void replay_done(struct call *c, remex_err rc, long status, const char *msg)
{
    struct worker *w = c->w;
    w->replay_inflight = 0;
    struct remex_error e;
    if (report_outcome(c, rc, status, msg)) {
        if (journal_ack(w->journal, c->seq, &e) != REMEX_OK)
            log_error("report journal: %s", e.msg);
        w->replay_failures = 0;
        plane_replay(w);
        plane_maybe_poll(w);
        return;
    }
    if (w->replay_failures++ == 0)
        log_warn("journal replay: %s; retrying", msg);
    w->replay_timer = evloop_timer_add(w->loop, jitter(w->replay_failures), 0, replay_tick, w);
}

/* ---- task-token calls (XCom references) ---- */

void plane_task_call(struct worker *w, struct wtask *t, const char *method, const char *path,
                     json_t *body, plane_json_cb cb, void *arg)
{
    struct call *c = new_call(w, C_TASK, t);
    if (!c) {
        cb(w, t, arg, REMEX_ENOMEM, NULL, "out of memory");
        return;
    }
    c->cb = cb;
    c->arg = arg;
    snprintf(c->what, sizeof(c->what), "%s %s", method, path);
    if (send_call(w, c, w->cli, method, path, t->token, body) != 0) {
        free(c);
        cb(w, t, arg, REMEX_EIO, NULL, "request could not be made");
    }
}

/* ---- completion dispatch ---- */

static void on_done(remex_err rc, struct http_response *resp, const struct remex_error *e,
                    void *arg)
{
    struct call *c = arg;
    struct worker *w = c->w;
    long status = rc == REMEX_OK ? resp->status : 0;
    struct remex_error se;
    char msg[REMEX_ERRMSG_MAX];
    json_t *r = NULL;
    if (rc != REMEX_OK) {
        snprintf(msg, sizeof(msg), "%s: %s", c->what, e ? e->msg : remex_strerror(rc));
    } else if (http_check_status(c->what, status, &resp->body, &se) != REMEX_OK) {
        snprintf(msg, sizeof(msg), "%s", se.msg);
    } else {
        snprintf(msg, sizeof(msg), "%s: ok", c->what);
        struct json_parse_opts po = {.name = c->what, .max_bytes = 16u * 1024u * 1024u};
        if (resp->body.len &&
            json_parse(resp->body.data, resp->body.len, &po, &r, &se) != REMEX_OK) {
            snprintf(msg, sizeof(msg), "%s", se.msg);
            status = 502; /* a reply we cannot read counts as a bad gateway */
        }
    }
    switch (c->kind) {
    case C_REGISTER:
        register_done(w, rc, status, r, msg);
        break;
    case C_HEARTBEAT:
        heartbeat_done(w, rc, status, r, msg);
        break;
    case C_POLL:
        poll_done(w, rc, status, r, msg);
        break;
    case C_START:
        start_done(c, rc, status, msg);
        break;
    case C_STATE:
        state_done(c, rc, status, msg);
        break;
    case C_REPLAY:
        replay_done(c, rc, status, msg);
        break;
    case C_TASK:
        c->cb(w, c->t, c->arg, rc != REMEX_OK ? rc : (status / 100 == 2 ? REMEX_OK : se.code), r,
              msg);
        r = NULL; /* ownership moved to cb */
        break;
    }
    json_decref(r);
    struct wtask *t = c->t;
    call_free(c);
    if (t) {
        t->pending--;
        task_release(t);
    }
}
