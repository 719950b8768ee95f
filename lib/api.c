/*
 * api: the Remote Execution API client of every role (include/remex/api.h).
 *
 * Invariants:
 *   - One registration at a time: a second one would start another session
 *     and make the plane treat the tries of the first as lost.
 *   - Registration waits for an empty journal (see api.h).
 *   - Every struct call in flight is on c->calls and owns its request data;
 *     api_free aborts the multi (no callbacks) and releases them.
 *   - Reports: at most one journal replay in flight; a report is sent
 *     directly only while the plane is reachable and nothing older waits.
 *   - Batched starts and reports (c->starts, c->reports) wait at most until
 *     the next loop turn (batch_timer) or, for reports, until the report
 *     call in flight is answered (report_calls); a report waiting there
 *     counts in reports_inflight, so api_reports_pending sees it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/api.h"
#include "remex/backoff.h"
#include "remex/buf.h"
#include "remex/evloop.h"
#include "remex/exit.h"
#include "remex/http.h"
#include "remex/httploop.h"
#include "remex/journal.h"
#include "remex/json.h"
#include "remex/log.h"
#include "remex/timeutil.h"
#include "remex/version.h"

#define BACKOFF_BASE_MS      200
#define BACKOFF_CAP_MS       2000
#define REPLY_MAX            (16u * 1024u * 1024u)
#define BODY_MAX             (8u * 1024u * 1024u)
#define SESSION_REFUSALS_MAX 3 /* fresh sessions refused in a row before FATAL */

enum call_kind { K_REGISTER, K_HEARTBEAT, K_USER, K_REPORT, K_REPLAY, K_BSTART, K_BSTATE };

/* A start or a state report waiting for the next batch flush (see "typed
 * calls" below). */
struct pend {
    int64_t ti;
    json_t *rec;      /* owned: a report's journal record {path, token, body, what}, or a
                       * start's {token, body} */
    api_done_fn done; /* start only */
    void *arg;
    char what[96];
};

struct pendq {
    struct pend *v; /* owned */
    size_t n, cap;
};

struct call {
    struct call *prev, *next; /* c->calls */
    struct api_client *c;
    enum call_kind kind;
    int on_session;     /* made with the session token (a 401/403 refuses the session) */
    uint64_t seq;       /* K_REPLAY: journal sequence */
    json_t *rec;        /* K_REPORT: owned record {path, token, body, what} */
    struct pend *batch; /* K_BSTART, K_BSTATE: owned items, in request order */
    size_t nbatch;
    api_done_fn done;
    void *arg;
    char what[96];
};

struct api_client {
    struct evloop *loop;          /* borrowed */
    struct httploop *hl;          /* owned */
    struct http_client *cli, *lp; /* owned: control calls, long polls */
    struct api_hooks h;
    const struct cfg_secret *token; /* borrowed */
    char *name, *role;
    struct journal *journal; /* owned, or NULL */
    struct call *calls;

    enum api_state state;
    int stopping;
    char *agent_id;         /* owned */
    char *session;          /* owned, wiped on release */
    int64_t session_exp_ms; /* wall clock, 0: unknown */
    int64_t heartbeat_ms;
    uint64_t hb_timer, reg_timer, replay_timer;
    int hb_inflight, reg_inflight, replay_inflight;
    unsigned reg_failures, hb_failures, replay_failures;
    int session_refusals; /* 401s in a row on fresh sessions */
    int token_retry;      /* agent token refused once: re-read and retried */
    int64_t reports_inflight;
    json_t *held; /* owned array of records the journal refused */
    char hostname[256];
    struct pendq starts, reports; /* waiting for the batch flush (batch_timer) */
    uint64_t batch_timer;
    int no_batch;     /* the plane lacks the batched routes: single calls only */
    int report_calls; /* state report calls in flight (K_REPORT, K_BSTATE) */
};

const char *api_state_name(enum api_state s)
{
    static const char *const names[] = {"unregistered", "registering", "registered",
                                        "refreshing",   "lost",        "fatal"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

uint64_t api_backoff_ms(unsigned attempt)
{
    struct backoff b = {.base_ms = BACKOFF_BASE_MS, .cap_ms = BACKOFF_CAP_MS};
    return backoff_full_jitter(&b, attempt > 16 ? 16 : attempt) + 50;
}

static void wipe(char **p)
{
    if (*p) {
        explicit_bzero(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

static void settled(struct api_client *c)
{
    if (c->h.on_settled && !c->stopping)
        c->h.on_settled(c->h.ud);
}

static void go_fatal(struct api_client *c)
{
    c->state = API_FATAL;
    c->stopping = 1;
    if (c->h.on_fatal)
        c->h.on_fatal(c->h.ud, REMEX_EXIT_CONFIG);
}

/* ---- life cycle ---- */

remex_err api_new(struct evloop *loop, const struct api_opts *o, const struct api_hooks *hooks,
                  struct api_client **out, struct remex_error *e)
{
    *out = NULL;
    if (!o->url || !o->name || !o->role || !o->token)
        return remex_seterr(e, REMEX_EINVAL, "api: url, name, role and token are required");
    struct api_client *c = calloc(1, sizeof(*c));
    if (!c)
        return remex_seterr(e, REMEX_ENOMEM, "api: out of memory");
    c->loop = loop;
    c->token = o->token;
    if (hooks)
        c->h = *hooks;
    c->name = strdup(o->name);
    c->role = strdup(o->role);
    struct http_client_opts ho = {.base_url = o->url,
                                  .ca_file = o->ca_file,
                                  .proxy = "",
                                  .connect_timeout_ms =
                                      o->connect_timeout_ms ? o->connect_timeout_ms : 5000,
                                  .timeout_ms = o->timeout_ms ? o->timeout_ms : 15000,
                                  .max_attempts = 1};
    remex_err rc = !c->name || !c->role ? remex_seterr(e, REMEX_ENOMEM, "api: out of memory")
                                        : http_client_new(&ho, &c->cli, e);
    if (rc == REMEX_OK) {
        ho.timeout_ms = (long)o->long_poll_ms + 15000;
        ho.max_response_bytes = REPLY_MAX;
        rc = http_client_new(&ho, &c->lp, e);
    }
    if (rc == REMEX_OK && !(c->hl = httploop_new(loop, e)))
        rc = e ? e->code : REMEX_ENOMEM;
    size_t corrupt = 0;
    if (rc == REMEX_OK && o->journal_dir &&
        (rc = journal_open(o->journal_dir, 0, &c->journal, &corrupt, e)) != REMEX_OK)
        remex_errprefix(e, "report journal");
    if (rc != REMEX_OK) {
        api_free(c);
        return rc;
    }
    if (corrupt)
        log_warn("report journal: %zu corrupt entries skipped", corrupt);
    if (c->journal && journal_pending(c->journal))
        log_info("report journal: %zu undelivered reports to replay before taking work",
                 journal_pending(c->journal));
    *out = c;
    return REMEX_OK;
}

/* Releases n pending items (no callbacks). */
static void pend_free(struct pend *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_t *tok = json_object_get(v[i].rec, "token"); /* borrowed */
        if (json_is_string(tok)) /* a task token: wiped before it is freed */
            explicit_bzero((char *)json_string_value(tok), json_string_length(tok));
        json_decref(v[i].rec);
    }
    free(v);
}

static void call_free(struct call *k)
{
    struct api_client *c = k->c;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->calls = k->next;
    if (k->next)
        k->next->prev = k->prev;
    json_decref(k->rec);
    pend_free(k->batch, k->nbatch);
    free(k);
}

static void cancel_timer(struct api_client *c, uint64_t *t)
{
    if (*t)
        evloop_timer_cancel(c->loop, *t);
    *t = 0;
}

static void batch_stop(struct api_client *c);

void api_stop(struct api_client *c)
{
    if (!c)
        return;
    c->stopping = 1;
    cancel_timer(c, &c->hb_timer);
    cancel_timer(c, &c->reg_timer);
    cancel_timer(c, &c->replay_timer);
    cancel_timer(c, &c->batch_timer);
    batch_stop(c);
}

void api_free(struct api_client *c)
{
    if (!c)
        return;
    api_stop(c);
    httploop_free(c->hl); /* aborted transfers get no callback: their calls go below */
    while (c->calls)
        call_free(c->calls);
    http_client_free(c->cli);
    http_client_free(c->lp);
    if (json_array_size(c->held))
        log_error("%zu reports the journal refused are lost", json_array_size(c->held));
    json_decref(c->held);
    pend_free(c->starts.v, c->starts.n); /* never sent: no callbacks, as calls in flight */
    journal_close(c->journal);
    wipe(&c->session);
    free(c->agent_id);
    free(c->name);
    free(c->role);
    free(c);
}

enum api_state api_state(const struct api_client *c)
{
    return c->state;
}

int api_reachable(const struct api_client *c)
{
    return c->state == API_REGISTERED || c->state == API_REFRESHING;
}

const char *api_agent_id(const struct api_client *c)
{
    return c->agent_id;
}

int64_t api_heartbeat_ms(const struct api_client *c)
{
    return c->heartbeat_ms;
}

size_t api_reports_spooled(const struct api_client *c)
{
    return (c->journal ? journal_pending(c->journal) : 0) + json_array_size(c->held);
}

size_t api_reports_pending(const struct api_client *c)
{
    return api_reports_spooled(c) + (size_t)c->reports_inflight;
}

/* ---- reachability ---- */

static void plane_down(struct api_client *c)
{
    if (c->state == API_REGISTERED || c->state == API_REFRESHING) {
        log_warn("plane unreachable: running work continues, no new work is taken");
        c->state = API_LOST;
    }
}

static void plane_up(struct api_client *c)
{
    if (c->state == API_LOST) {
        log_info("plane reachable again");
        c->state = API_REGISTERED;
        settled(c);
    }
}

/* ---- generic call ---- */

static void on_done(remex_err rc, struct http_response *resp, const struct remex_error *e,
                    void *arg);

/* Starts k's request. body is serialised here; raw (when body is NULL) is
 * JSON text already, sent as it is (raw_len bytes, borrowed). */
static remex_err send_call_raw(struct api_client *c, struct call *k, struct http_client *cli,
                               const char *method, const char *path, const char *bearer,
                               const json_t *body, const char *raw, size_t raw_len,
                               struct remex_error *e)
{
    struct buf b = BUF_INIT(BODY_MAX);
    if (body && json_serialize(body, 0, &b, e) != REMEX_OK) {
        buf_free(&b);
        return e ? e->code : REMEX_EINVAL;
    }
    struct http_request rq = {.method = method,
                              .path = path,
                              .bearer = bearer,
                              .body = body ? b.data : raw,
                              .body_len = body  ? b.len
                                          : raw ? raw_len
                                                : 0};
    struct http_multi_done d = {.fn = on_done, .arg = k};
    remex_err rc = http_multi_start(httploop_multi(c->hl), cli, &rq, d, e);
    buf_free(&b);
    if (rc != REMEX_OK)
        return rc;
    k->c = c;
    k->next = c->calls;
    if (c->calls)
        c->calls->prev = k;
    c->calls = k;
    return REMEX_OK;
}

static remex_err send_call(struct api_client *c, struct call *k, struct http_client *cli,
                           const char *method, const char *path, const char *bearer,
                           const json_t *body, struct remex_error *e)
{
    return send_call_raw(c, k, cli, method, path, bearer, body, NULL, 0, e);
}

static struct call *new_call(enum call_kind kind, const char *what)
{
    struct call *k = calloc(1, sizeof(*k));
    if (k) {
        k->kind = kind;
        snprintf(k->what, sizeof(k->what), "%s", what);
    } else
        log_error("%s: out of memory", what);
    return k;
}

/* One call of kind made on the session or a given bearer; 0 started, -1 not (logged). */
static int start_call(struct api_client *c, enum call_kind kind, const char *what,
                      struct http_client *cli, const char *method, const char *path,
                      const char *bearer, const json_t *body, struct call **out)
{
    struct remex_error e;
    struct call *k = new_call(kind, what);
    if (!k)
        return -1;
    if (send_call(c, k, cli, method, path, bearer, body, &e) != REMEX_OK) {
        log_error("%s: %s", what, e.msg);
        free(k);
        return -1;
    }
    if (out)
        *out = k;
    return 0;
}

/* ---- register ---- */

static void do_register(struct api_client *c);
static void replay(struct api_client *c);

static void retry_register(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct api_client *c = arg;
    c->reg_timer = 0;
    do_register(c);
}

static void register_later(struct api_client *c, uint64_t ms)
{
    cancel_timer(c, &c->reg_timer);
    if (!c->stopping)
        c->reg_timer = evloop_timer_add(c->loop, ms, 0, retry_register, c);
}

static void do_register(struct api_client *c)
{
    if (c->reg_inflight || c->stopping || c->state == API_FATAL)
        return;
    cancel_timer(c, &c->reg_timer);
    c->state = API_REGISTERING;
    char *tok = NULL;
    struct remex_error e;
    if (cfg_secret_get(c->token, &tok, NULL, &e) != REMEX_OK) {
        log_error("agent token: %s; exiting (code %d)", e.msg, REMEX_EXIT_CONFIG);
        go_fatal(c);
        return;
    }
    memset(c->hostname, 0, sizeof(c->hostname));
    gethostname(c->hostname, sizeof(c->hostname) - 1);
    json_t *body = json_pack("{s:s,s:[s],s:s,s:s}", "name", c->name, "roles", c->role, "version",
                             REMEX_VERSION, "hostname", c->hostname);
    if (body && c->h.register_body)
        c->h.register_body(c->h.ud, body);
    if (body && start_call(c, K_REGISTER, "register", c->cli, "POST", "/api/v1/agents/register",
                           tok, body, NULL) == 0)
        c->reg_inflight = 1;
    json_decref(body);
    cfg_secret_free(tok);
    if (!c->reg_inflight)
        register_later(c, api_backoff_ms(c->reg_failures++));
}

static void heartbeat_tick(struct evloop *loop, uint64_t id, void *arg);

static void set_session(struct api_client *c, const char *tok, const json_t *exp)
{
    wipe(&c->session);
    c->session = strdup(tok);
    int64_t ms = 0;
    if (json_is_string(exp) &&
        timeutil_rfc3339_parse(json_string_value(exp), &ms, NULL) == REMEX_OK)
        c->session_exp_ms = ms;
    else
        c->session_exp_ms = 0;
}

static void arm_heartbeat(struct api_client *c)
{
    cancel_timer(c, &c->hb_timer);
    c->hb_timer = evloop_timer_add(c->loop, (uint64_t)c->heartbeat_ms, (uint64_t)c->heartbeat_ms,
                                   heartbeat_tick, c);
}

/* A refused agent token: re-read once (it may have been rotated), then FATAL. */
static void token_refused(struct api_client *c, const char *msg)
{
    if (!c->token_retry) {
        c->token_retry = 1;
        log_warn("agent token refused (%s); re-reading the token and retrying", msg);
        register_later(c, 500);
        return;
    }
    log_error("the plane refused the agent token: it is revoked, expired or invalid (%s); "
              "exiting with code %d",
              msg, REMEX_EXIT_CONFIG);
    go_fatal(c);
}

static void register_done(struct api_client *c, const struct api_result *r)
{
    c->reg_inflight = 0;
    if (r->status == 401 || r->status == 403) {
        token_refused(c, r->msg);
        return;
    }
    struct json_path p;
    json_path_init(&p, "register reply");
    struct remex_error e;
    int64_t id = 0;
    const char *tok = NULL;
    double iv = 5;
    long status = r->status;
    if (r->rc == REMEX_OK &&
        (json_get_i64(&p, r->reply, "agent_id", 1, INT64_MAX, &id, &e) != REMEX_OK ||
         json_get_str(&p, r->reply, "session_token", 16384, &tok, &e) != REMEX_OK ||
         json_opt_double(&p, r->reply, "heartbeat_interval", 0.05, 3600, 5, &iv, &e) != REMEX_OK)) {
        log_error("%s", e.msg);
        status = 502;
    }
    if (r->rc != REMEX_OK || status / 100 != 2) {
        if (c->reg_failures++ % 10 == 0)
            log_warn("%s; retrying", r->msg);
        register_later(c, api_backoff_ms(c->reg_failures));
        return;
    }
    char idbuf[32];
    snprintf(idbuf, sizeof(idbuf), "%" PRId64, id);
    free(c->agent_id);
    c->agent_id = strdup(idbuf);
    set_session(c, tok, json_object_get(r->reply, "session_expires_at"));
    c->token_retry = 0;
    c->reg_failures = 0;
    c->state = API_REGISTERED;
    c->heartbeat_ms = (int64_t)(iv * 1000);
    arm_heartbeat(c);
    if (c->h.on_registered)
        c->h.on_registered(c->h.ud);
    replay(c);
    settled(c);
}

/*
 * A session the plane refuses (expired, superseded, agent token revoked) is
 * replaced by registering again. A plane that refuses fresh sessions over and
 * over (tampered or foreign session, key mismatch) is FATAL instead of a
 * register/refuse loop.
 */
static void session_refused(struct api_client *c, const char *msg)
{
    if (c->state == API_REGISTERING || c->state == API_FATAL)
        return; /* already replacing it */
    if (++c->session_refusals >= SESSION_REFUSALS_MAX) {
        log_error("%s: the plane refused %d session tokens in a row, the last one just issued: "
                  "the session is tampered or invalid; exiting with code %d",
                  msg, c->session_refusals, REMEX_EXIT_CONFIG);
        go_fatal(c);
        return;
    }
    log_warn("%s: session refused by the plane; registering again", msg);
    cancel_timer(c, &c->hb_timer);
    wipe(&c->session);
    c->state = API_UNREGISTERED;
    do_register(c);
}

/* ---- heartbeat ---- */

static void send_heartbeat(struct api_client *c)
{
    if (c->hb_inflight || c->stopping || !c->session || c->state == API_REGISTERING)
        return;
    double load[1] = {0};
    getloadavg(load, 1);
    json_t *body = json_pack("{s:{s:f}}", "sysinfo", "load1", load[0]);
    if (body && c->h.heartbeat_body)
        c->h.heartbeat_body(c->h.ud, body);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/agents/%s/heartbeat", c->agent_id);
    if (body &&
        start_call(c, K_HEARTBEAT, "heartbeat", c->cli, "POST", path, c->session, body, NULL) == 0)
        c->hb_inflight = 1;
    json_decref(body);
}

static void heartbeat_tick(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct api_client *c = arg;
    /* Within two intervals of its expiry the session is being refreshed: the plane hands
     * out a new token in a heartbeat reply once a third of its lifetime is left. */
    if (c->state == API_REGISTERED && c->session_exp_ms &&
        c->session_exp_ms - timeutil_real_ms() < 2 * c->heartbeat_ms)
        c->state = API_REFRESHING;
    send_heartbeat(c);
}

static void heartbeat_done(struct api_client *c, const struct api_result *r)
{
    c->hb_inflight = 0;
    if (r->rc != REMEX_OK || !json_is_object(r->reply)) {
        if (r->status != 401 && r->status != 403 && c->hb_failures++ == 0)
            log_warn("%s", r->msg);
        return;
    }
    c->hb_failures = 0;
    json_t *v = json_object_get(r->reply, "session_token");
    if (json_is_string(v)) {
        set_session(c, json_string_value(v), json_object_get(r->reply, "session_expires_at"));
        if (c->state == API_REFRESHING)
            c->state = API_REGISTERED;
    }
    v = json_object_get(r->reply, "heartbeat_interval");
    int64_t iv = json_is_number(v) ? (int64_t)(json_number_value(v) * 1000) : 0;
    if (iv >= 50 && iv <= 3600000 && iv != c->heartbeat_ms) {
        c->heartbeat_ms = iv;
        arm_heartbeat(c);
    }
    if (c->h.on_heartbeat_reply)
        c->h.on_heartbeat_reply(c->h.ud, r->reply);
    settled(c);
}

/* ---- user calls ---- */

remex_err api_call(struct api_client *c, const struct api_call *call, struct remex_error *e)
{
    if (c->stopping)
        return remex_seterr(e, REMEX_ECLOSED, "api: the client is stopping");
    const char *bearer = call->bearer ? call->bearer : c->session;
    if (!bearer)
        return remex_seterr(e, REMEX_EAUTH, "api: not registered");
    char what[96];
    if (call->what)
        snprintf(what, sizeof(what), "%s", call->what);
    else
        snprintf(what, sizeof(what), "%s %s", call->method, call->path);
    struct call *k = calloc(1, sizeof(*k));
    if (!k)
        return remex_seterr(e, REMEX_ENOMEM, "%s: out of memory", what);
    k->kind = K_USER;
    k->done = call->done;
    k->arg = call->arg;
    k->on_session = call->bearer == NULL;
    snprintf(k->what, sizeof(k->what), "%s", what);
    remex_err rc = send_call_raw(c, k, call->long_poll ? c->lp : c->cli, call->method, call->path,
                                 bearer, call->body, call->raw_body, call->raw_len, e);
    if (rc != REMEX_OK)
        free(k);
    return rc;
}

/* ---- reports and the journal ---- */

/*
 * Sends rec (K_REPORT: owned, kept by the call; K_REPLAY: borrowed). Returns
 * -1 when no call could be started (no session yet for a session report, or
 * the request could not be built); rec is then still the caller's.
 */
static int send_report(struct api_client *c, json_t *rec, enum call_kind kind, uint64_t seq)
{
    const char *path = json_string_value(json_object_get(rec, "path"));
    const char *tok = json_string_value(json_object_get(rec, "token"));
    const char *what = json_string_value(json_object_get(rec, "what"));
    struct call *k = NULL;
    if (!path || !(tok ? tok : c->session) ||
        start_call(c, kind, what ? what : "report", c->cli, "POST", path, tok ? tok : c->session,
                   json_object_get(rec, "body"), &k) != 0)
        return -1;
    k->seq = seq;
    k->on_session = tok == NULL;
    if (kind == K_REPORT) {
        k->rec = rec;
        c->reports_inflight++;
        c->report_calls++;
    } else {
        c->replay_inflight = 1;
    }
    return 0;
}

/* Journals rec (borrowed); -1 when the journal refused it (full, disk error). */
static int spool(struct api_client *c, json_t *rec)
{
    struct remex_error e;
    uint64_t seq = 0;
    const char *what = json_string_value(json_object_get(rec, "what"));
    if (!c->journal) {
        log_error("%s: no report journal: kept in memory only", what);
        return -1;
    }
    if (journal_append(c->journal, rec, &seq, &e) != REMEX_OK) {
        log_error("report journal: %s: %s kept in memory only", e.msg, what);
        return -1;
    }
    log_info("%s journaled (seq %" PRIu64 "); will be replayed", what, seq);
    return 0;
}

static void hold(struct api_client *c, json_t *rec)
{
    if (!c->held)
        c->held = json_array();
    if (!c->held || json_array_append(c->held, rec) != 0)
        log_error("%s lost: out of memory", json_string_value(json_object_get(rec, "what")));
}

static void replay_tick(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct api_client *c = arg;
    c->replay_timer = 0;
    replay(c);
}

/*
 * Journal records of earlier versions carry {ti_id, token, body}: their path
 * is the task instance's state route. Returns rec with a path (a new reference).
 */
static json_t *record_compat(const json_t *rec)
{
    json_t *r = json_deep_copy(rec);
    if (r && !json_object_get(r, "path")) {
        char path[96];
        int64_t ti = (int64_t)json_integer_value(json_object_get(r, "ti_id"));
        snprintf(path, sizeof(path), "/api/v1/task-instances/%" PRId64 "/state", ti);
        json_object_set_new(r, "path", json_string(path));
        snprintf(path, sizeof(path), "state report ti %" PRId64, ti);
        json_object_set_new(r, "what", json_string(path));
    }
    return r;
}

static void replay(struct api_client *c)
{
    if (c->replay_inflight || c->replay_timer || c->stopping)
        return;
    uint64_t seq = 0;
    const json_t *rec = c->journal ? journal_get(c->journal, 0, &seq) : NULL;
    if (!rec && json_array_size(c->held) > 0 && api_reachable(c)) {
        json_t *h = json_incref(json_array_get(c->held, 0));
        if (send_report(c, h, K_REPORT, 0) == 0) /* takes h */
            json_array_remove(c->held, 0);
        else
            json_decref(h);
        return;
    }
    if (!rec) {
        if (c->state == API_UNREGISTERED)
            do_register(c);
        settled(c);
        return;
    }
    if (!json_object_get(rec, "token") && !c->session) {
        /* A report made on the session (no task token): it needs a session first. */
        if (c->state == API_UNREGISTERED)
            do_register(c);
        return;
    }
    json_t *r = record_compat(rec);
    if (r)
        send_report(c, r, K_REPLAY, seq);
    json_decref(r);
    if (!c->replay_inflight)
        c->replay_timer =
            evloop_timer_add(c->loop, api_backoff_ms(c->replay_failures++), 0, replay_tick, c);
}

static void batch_arm(struct api_client *c);

/* 1: delivered or refused for good (drop it); 0: keep and retry later. */
static int report_outcome(const struct call *k, const struct api_result *r)
{
    if (r->rc == REMEX_OK) {
        log_debug("%s delivered", k->what);
        return 1;
    }
    /* No definitive answer, or a session that is being replaced: sent again later. */
    if (r->status == 0 || r->retryable || (k->on_session && (r->status == 401 || r->status == 403)))
        return 0;
    if (r->status == 409)
        log_info("%s refused as stale (409): dropped", k->what);
    else
        log_error("%s refused: %s: dropped", k->what, r->msg);
    return 1;
}

static void report_done(struct api_client *c, struct call *k, const struct api_result *r)
{
    c->reports_inflight--;
    c->report_calls--;
    if (c->reports.n > 0) /* reports that waited for this call */
        batch_arm(c);
    if (!report_outcome(k, r) && spool(c, k->rec) != 0)
        hold(c, k->rec);
    replay(c);
    settled(c);
}

static void replay_done(struct api_client *c, struct call *k, const struct api_result *r)
{
    struct remex_error e;
    c->replay_inflight = 0;
    if (report_outcome(k, r)) {
        if (journal_ack(c->journal, k->seq, &e) != REMEX_OK)
            log_error("report journal: %s", e.msg);
        c->replay_failures = 0;
        replay(c);
        return;
    }
    if (c->replay_failures++ == 0)
        log_warn("journal replay: %s; retrying", r->msg);
    if (!c->stopping)
        c->replay_timer =
            evloop_timer_add(c->loop, api_backoff_ms(c->replay_failures), 0, replay_tick, c);
    settled(c);
}

/* ---- typed calls of the work routes; batched starts and state reports ----
 *
 * api_ti_start and api_ti_report queue their item and arm a 0 ms timer: what
 * the role asks for in one loop turn (the assignments of one work reply, the
 * tasks reaped in one SIGCHLD) leaves in one request to the batched route
 * when there are two or more, and as the single call when there is one.
 * State reports also wait while another report call is in flight and then
 * leave together (a group commit on the worker's side: no added latency
 * when reports are rare, one request per round trip when they are not).
 * A report keeps the journal record of the single route ({path, token, body,
 * what}): whenever it cannot be delivered in a batch (plane unreachable, the
 * batch unanswered or refused as a whole, a plane without the batched
 * routes) it is journaled as such and replayed alone, so a journal written
 * by an older worker or a newer one replays the same. An item the plane
 * refuses in its result is handled as the single route's refusal is. */

#define BATCH_MAX 256 /* items per batched request */

static int pend_push(struct pendq *q, const struct pend *p)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        struct pend *v = realloc(q->v, cap * sizeof(*v));
        if (!v)
            return -1;
        q->v = v;
        q->cap = cap;
    }
    q->v[q->n++] = *p;
    return 0;
}

static void batch_flush(struct evloop *loop, uint64_t id, void *arg);

static void batch_arm(struct api_client *c)
{
    if (!c->batch_timer && !c->stopping)
        c->batch_timer = evloop_timer_add(c->loop, 0, 0, batch_flush, c);
    if (!c->batch_timer) /* no timer: sent at once */
        batch_flush(c->loop, 0, c);
}

/* The single form of a report (as api_report): sent at once while the plane
 * is reachable and nothing older waits, else journaled. Takes rec. */
static void report_send_or_spool(struct api_client *c, json_t *rec)
{
    if (!api_reachable(c) || api_reports_spooled(c) > 0 || c->stopping ||
        send_report(c, rec, K_REPORT, 0) != 0) {
        if (spool(c, rec) != 0)
            hold(c, rec);
        json_decref(rec);
        replay(c);
    }
}

void api_report(struct api_client *c, const char *path, const char *bearer, json_t *body,
                const char *what)
{
    json_t *rec = json_pack("{s:s,s:o,s:s}", "path", path, "body", body, "what", what);
    if (!rec) {
        log_error("%s: out of memory", what);
        return;
    }
    if (bearer)
        json_object_set_new(rec, "token", json_string(bearer));
    report_send_or_spool(c, rec);
}

void api_ti_report(struct api_client *c, int64_t ti_id, const char *task_token, json_t *body,
                   const char *what)
{
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/task-instances/%" PRId64 "/state", ti_id);
    json_t *rec = json_pack("{s:s,s:o,s:s,s:s}", "path", path, "body", body, "what", what, "token",
                            task_token ? task_token : "");
    if (!rec || !task_token) {
        log_error("%s: %s: not reported", what, rec ? "no task token" : "out of memory");
        json_decref(rec);
        return;
    }
    struct pend p = {.ti = ti_id, .rec = rec};
    snprintf(p.what, sizeof(p.what), "%s", what);
    if (c->no_batch || !api_reachable(c) || api_reports_spooled(c) > 0 || c->stopping ||
        pend_push(&c->reports, &p) != 0) {
        report_send_or_spool(c, rec);
        return;
    }
    c->reports_inflight++; /* pending until its batch is answered */
    batch_arm(c);
}

/* The single start of p (owned by the call from now on); its callback runs
 * exactly once, now when the call cannot start. */
static void start_single(struct api_client *c, struct pend *p)
{
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/task-instances/%" PRId64 "/start", p->ti);
    struct api_call call = {.method = "POST",
                            .path = path,
                            .body = json_object_get(p->rec, "body"),
                            .bearer = json_string_value(json_object_get(p->rec, "token")),
                            .what = p->what,
                            .done = p->done,
                            .arg = p->arg};
    struct remex_error e;
    if (api_call(c, &call, &e) != REMEX_OK) {
        struct api_result r = {.rc = e.code, .msg = e.msg, .retryable = 0};
        if (p->done)
            p->done(p->arg, &r);
    }
    json_t *tok = json_object_get(p->rec, "token"); /* borrowed */
    if (json_is_string(tok))
        explicit_bzero((char *)json_string_value(tok), json_string_length(tok));
    json_decref(p->rec);
    p->rec = NULL;
}

remex_err api_ti_start(struct api_client *c, int64_t ti_id, const char *task_token,
                       const json_t *body, const char *what, api_done_fn done, void *arg,
                       struct remex_error *e)
{
    if (c->stopping)
        return remex_seterr(e, REMEX_ECLOSED, "api: the client is stopping");
    if (!task_token || !done)
        return remex_seterr(e, REMEX_EINVAL, "%s: a task token and a callback are required", what);
    struct pend p = {.ti = ti_id, .done = done, .arg = arg};
    snprintf(p.what, sizeof(p.what), "%s", what);
    p.rec = json_pack("{s:s,s:O}", "token", task_token, "body", body ? body : json_object());
    if (!p.rec || pend_push(&c->starts, &p) != 0) {
        json_decref(p.rec);
        return remex_seterr(e, REMEX_ENOMEM, "%s: out of memory", what);
    }
    batch_arm(c);
    return REMEX_OK;
}

/* {"items":[...]}: each item's body with its ti_id and task token (owned). */
static json_t *batch_body(const struct pend *v, size_t n)
{
    json_t *items = json_array();
    for (size_t i = 0; items && i < n; i++) {
        json_t *it = json_copy(json_object_get(v[i].rec, "body")); /* shallow: values shared */
        if (!it || json_object_set_new(it, "ti_id", json_integer((json_int_t)v[i].ti)) ||
            json_object_set(it, "task_token", json_object_get(v[i].rec, "token")) ||
            json_array_append_new(items, it)) {
            json_decref(items);
            return NULL;
        }
    }
    return items ? json_pack("{s:o}", "items", items) : NULL;
}

/* One batched call of the first n items of q (moved into the call); 0, or -1
 * when it could not start (the items stay in q). */
static int batch_send(struct api_client *c, struct pendq *q, size_t n, enum call_kind kind)
{
    const char *path =
        kind == K_BSTART ? "/api/v1/task-instances/start" : "/api/v1/task-instances/state";
    char what[96];
    snprintf(what, sizeof(what), "%s of %zu task instances",
             kind == K_BSTART ? "start" : "state report", n);
    json_t *body = c->session ? batch_body(q->v, n) : NULL;
    struct pend *mine = calloc(n, sizeof(*mine));
    struct call *k = NULL;
    if (!body || !mine || start_call(c, kind, what, c->cli, "POST", path, c->session, body, &k)) {
        json_decref(body);
        free(mine);
        return -1;
    }
    json_decref(body);
    memcpy(mine, q->v, n * sizeof(*mine));
    memmove(q->v, q->v + n, (q->n - n) * sizeof(*mine));
    q->n -= n;
    k->on_session = 1;
    k->batch = mine;
    k->nbatch = n;
    if (kind == K_BSTATE)
        c->report_calls++;
    return 0;
}

static void batch_flush(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct api_client *c = arg;
    c->batch_timer = 0;
    while (c->starts.n > 0) {
        size_t n = c->starts.n < BATCH_MAX ? c->starts.n : BATCH_MAX;
        if (n > 1 && !c->no_batch && batch_send(c, &c->starts, n, K_BSTART) == 0)
            continue;
        struct pend p = c->starts.v[0]; /* alone, or the batch could not start */
        memmove(c->starts.v, c->starts.v + 1, --c->starts.n * sizeof(p));
        start_single(c, &p);
    }
    /* Group commit: while a report call is in flight, the reports made
     * meanwhile wait for its answer and then go together (report_done,
     * bstate_done re-arm the flush); an idle worker's report goes at once. */
    while (c->reports.n > 0 && (c->report_calls == 0 || !api_reachable(c) || c->stopping)) {
        size_t n = c->reports.n < BATCH_MAX ? c->reports.n : BATCH_MAX;
        if (n > 1 && !c->no_batch && api_reachable(c) && !c->stopping &&
            batch_send(c, &c->reports, n, K_BSTATE) == 0)
            continue;
        struct pend p = c->reports.v[0];
        memmove(c->reports.v, c->reports.v + 1, --c->reports.n * sizeof(p));
        c->reports_inflight--;
        report_send_or_spool(c, p.rec); /* takes it */
    }
}

/* api_stop: reports still waiting for their batch go to the journal. */
static void batch_stop(struct api_client *c)
{
    for (size_t i = 0; i < c->reports.n; i++) {
        c->reports_inflight--;
        if (spool(c, c->reports.v[i].rec) != 0)
            hold(c, c->reports.v[i].rec);
        json_decref(c->reports.v[i].rec);
    }
    c->reports.n = 0;
    free(c->reports.v);
    c->reports.v = NULL;
    c->reports.cap = 0;
}

/* The plane answered the batch as a whole with a status saying the batched
 * route cannot take it (404/405: an older plane; 413: over its body cap):
 * the items go as single calls from now on (404/405) or this once (413). */
static int batch_unsupported(struct api_client *c, const struct api_result *r)
{
    if (r->status != 404 && r->status != 405 && r->status != 413)
        return 0;
    if (r->status != 413 && !c->no_batch) {
        log_info("the plane has no batched start/state routes (%ld): single calls from now on",
                 r->status);
        c->no_batch = 1;
    }
    return 1;
}

/* The result of item i of a 2xx batch reply as a single call's result would
 * be (status, rc and message as http_check_status gives them); *r borrows
 * item. -1 when the reply has no result i. */
static int item_result(const char *what, const struct api_result *whole, size_t i,
                       struct api_result *r, char *msg, size_t msgsz)
{
    json_t *item = json_array_get(json_object_get(whole->reply, "results"), i); /* borrowed */
    json_t *st = json_object_get(item, "status");
    if (!json_is_integer(st))
        return -1;
    memset(r, 0, sizeof(*r));
    r->status = (long)json_integer_value(st);
    r->reply = item;
    r->msg = msg;
    struct buf b = BUF_INIT(64 * 1024);
    struct remex_error se;
    char *text = json_dumps(item, JSON_COMPACT);
    if (text)
        buf_puts(&b, text);
    free(text);
    r->rc = http_check_status(what, r->status, &b, &se);
    buf_free(&b);
    if (r->rc == REMEX_OK)
        snprintf(msg, msgsz, "%s: ok", what);
    else
        snprintf(msg, msgsz, "%s", se.msg);
    r->retryable = http_retryable(REMEX_OK, r->status);
    return 0;
}

static void bstart_done(struct api_client *c, struct call *k, const struct api_result *r)
{
    int again = batch_unsupported(c, r);
    for (size_t i = 0; i < k->nbatch; i++) {
        struct pend *p = &k->batch[i];
        char msg[REMEX_ERRMSG_MAX];
        struct api_result ir;
        if (again && !c->stopping) {
            start_single(c, p);
            continue;
        }
        if (r->rc != REMEX_OK) {
            ir = *r; /* no answer for the item: the whole call's result */
            ir.reply = NULL;
            /* Refused on the session (being replaced), not on the task's
             * token: the start may be asked again. */
            if (r->status == 401 || r->status == 403)
                ir.retryable = 1;
        } else if (item_result(p->what, r, i, &ir, msg, sizeof(msg)) != 0) {
            ir = (struct api_result){.rc = REMEX_EPROTO,
                                     .status = 502,
                                     .retryable = 1,
                                     .msg = "batched start: reply without this item's result"};
        }
        if (p->done)
            p->done(p->arg, &ir);
    }
}

static void bstate_done(struct api_client *c, struct call *k, const struct api_result *r)
{
    int again = batch_unsupported(c, r);
    c->reports_inflight -= (int64_t)k->nbatch;
    c->report_calls--;
    if (c->reports.n > 0) /* reports that waited for this batch */
        batch_arm(c);
    for (size_t i = 0; i < k->nbatch; i++) {
        struct pend *p = &k->batch[i];
        char msg[REMEX_ERRMSG_MAX];
        struct api_result ir;
        /* The outcome as for the single report (its own what; on its task
         * token, so a 401/403 of the item is definitive, and of the whole
         * call, made on the session, is not). */
        struct call one = {.on_session = 0};
        snprintf(one.what, sizeof(one.what), "%s", p->what);
        int keep;
        if (again)
            keep = 1;
        else if (r->rc != REMEX_OK) {
            one.on_session = 1;
            keep = !report_outcome(&one, r);
        } else if (item_result(p->what, r, i, &ir, msg, sizeof(msg)) != 0)
            keep = 1;
        else
            keep = !report_outcome(&one, &ir);
        if (keep && spool(c, p->rec) != 0)
            hold(c, p->rec);
    }
    replay(c);
    settled(c);
}

/* ---- typed calls: work poll and XCom ---- */

remex_err api_work_poll(struct api_client *c, const json_t *body, api_done_fn done, void *arg,
                        struct remex_error *e)
{
    struct api_call call = {.method = "POST",
                            .path = "/api/v1/work",
                            .body = body,
                            .long_poll = 1,
                            .what = "work poll",
                            .done = done,
                            .arg = arg};
    return api_call(c, &call, e);
}

/* 1 when s is an XCom key or task id the API takes in a path: 1-250 of
 * [A-Za-z0-9._-] (nothing to escape). */
static int xcom_name_ok(const char *s)
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

remex_err api_xcom_put(struct api_client *c, int64_t ti_id, const char *task_token, const char *key,
                       const json_t *ref, api_done_fn done, void *arg, struct remex_error *e)
{
    if (!xcom_name_ok(key))
        return remex_seterr(e, REMEX_EINVAL, "xcom key: expected 1-250 of [A-Za-z0-9._-]");
    char path[400];
    snprintf(path, sizeof(path), "/api/v1/task-instances/%" PRId64 "/xcom/%s", ti_id, key);
    struct api_call call = {
        .method = "PUT", .path = path, .body = ref, .bearer = task_token, .done = done, .arg = arg};
    return api_call(c, &call, e);
}

remex_err api_xcom_get(struct api_client *c, int64_t ti_id, const char *task_token, const char *key,
                       const char *task_id, int64_t map_index, api_done_fn done, void *arg,
                       struct remex_error *e)
{
    if (!xcom_name_ok(key) || !xcom_name_ok(task_id))
        return remex_seterr(e, REMEX_EINVAL,
                            "xcom key and task id: expected 1-250 of [A-Za-z0-9._-]");
    char path[700];
    snprintf(path, sizeof(path),
             "/api/v1/task-instances/%" PRId64 "/xcom/%s?task_id=%s&map_index=%" PRId64, ti_id, key,
             task_id, map_index);
    struct api_call call = {
        .method = "GET", .path = path, .bearer = task_token, .done = done, .arg = arg};
    return api_call(c, &call, e);
}

/* ---- start, reload ---- */

void api_start(struct api_client *c)
{
    replay(c); /* registers once the journal is delivered */
}

void api_reload(struct api_client *c)
{
    c->token_retry = 0;
    if (c->state == API_UNREGISTERED || (c->state == API_REGISTERING && !c->reg_inflight))
        do_register(c);
}

/* ---- completion ---- */

/* Fills r from a finished transfer; *reply owned by the caller. */
static void result_of(struct call *k, remex_err rc, struct http_response *resp,
                      const struct remex_error *e, struct api_result *r, char *msg, size_t msgsz)
{
    struct remex_error se;
    memset(r, 0, sizeof(*r));
    r->msg = msg;
    r->rc = rc;
    r->status = rc == REMEX_OK ? resp->status : 0;
    if (rc != REMEX_OK) {
        snprintf(msg, msgsz, "%s: %s", k->what, e ? e->msg : remex_strerror(rc));
    } else if ((r->rc = http_check_status(k->what, r->status, &resp->body, &se)) != REMEX_OK) {
        snprintf(msg, msgsz, "%s", se.msg);
    } else {
        snprintf(msg, msgsz, "%s: ok", k->what);
        struct json_parse_opts po = {.name = k->what, .max_bytes = REPLY_MAX};
        if (resp->body.len &&
            json_parse(resp->body.data, resp->body.len, &po, &r->reply, &se) != REMEX_OK) {
            snprintf(msg, msgsz, "%s", se.msg);
            r->rc = REMEX_EPROTO;
            r->status = 502; /* a reply that cannot be read counts as a bad gateway */
        }
    }
    r->retryable = http_retryable(rc, r->status);
}

static void on_done(remex_err rc, struct http_response *resp, const struct remex_error *e,
                    void *arg)
{
    struct call *k = arg;
    struct api_client *c = k->c;
    char msg[REMEX_ERRMSG_MAX];
    struct api_result r;
    result_of(k, rc, resp, e, &r, msg, sizeof(msg));
    int on_session = k->kind == K_HEARTBEAT || k->on_session;
    if (r.status / 100 == 2 && r.rc == REMEX_OK) {
        if (on_session)
            c->session_refusals = 0;
        plane_up(c);
    } else if (rc != REMEX_OK || r.retryable) {
        plane_down(c);
    }
    if (on_session && (r.status == 401 || r.status == 403))
        session_refused(c, msg);
    switch (k->kind) {
    case K_REGISTER:
        register_done(c, &r);
        break;
    case K_HEARTBEAT:
        heartbeat_done(c, &r);
        break;
    case K_REPORT:
        report_done(c, k, &r);
        break;
    case K_REPLAY:
        replay_done(c, k, &r);
        break;
    case K_USER:
        if (k->done)
            k->done(k->arg, &r);
        break;
    case K_BSTART:
        bstart_done(c, k, &r);
        break;
    case K_BSTATE:
        bstate_done(c, k, &r);
        break;
    }
    json_decref(r.reply);
    call_free(k);
}

/* ---- triggers (remex-triggerer) ---- */

remex_err api_trigger_poll(struct api_client *c, int64_t capacity, double wait_s, api_done_fn done,
                           void *arg, struct remex_error *e)
{
    json_t *body = json_pack("{s:I,s:f}", "capacity", (json_int_t)capacity, "wait", wait_s);
    if (!body)
        return remex_seterr(e, REMEX_ENOMEM, "trigger poll: out of memory");
    struct api_call k = {.method = "POST",
                         .path = "/api/v1/triggers/poll",
                         .body = body,
                         .long_poll = 1,
                         .what = "trigger poll",
                         .done = done,
                         .arg = arg};
    remex_err rc = api_call(c, &k, e);
    json_decref(body);
    return rc;
}

void api_trigger_release(struct api_client *c, json_t *ids)
{
    api_report(c, "/api/v1/triggers/poll", NULL,
               json_pack("{s:i,s:i,s:o}", "capacity", 0, "wait", 0, "release", ids),
               "trigger release");
}

void api_trigger_events(struct api_client *c, json_t *events)
{
    api_report(c, "/api/v1/triggers/events", NULL, json_pack("{s:o}", "events", events),
               "trigger events");
}

/* Percent-encodes s (RFC 3986 unreserved kept) into out; -1 when it does not fit. */
static int path_segment(char *out, size_t outsz, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int keep = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~';
        if (o + (keep ? 1 : 3) >= outsz)
            return -1;
        if (keep) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

remex_err api_dag_run_status(struct api_client *c, const char *dag_id, const char *run_id,
                             api_done_fn done, void *arg, struct remex_error *e)
{
    char dag[3 * 1024 + 1], run[3 * 1024 + 1], path[sizeof(dag) + sizeof(run) + 32];
    if (strlen(dag_id) > 1024 || strlen(run_id) > 1024 || path_segment(dag, sizeof(dag), dag_id) ||
        path_segment(run, sizeof(run), run_id))
        return remex_seterr(e, REMEX_ETOOBIG, "dag_id or run_id over 1024 bytes");
    snprintf(path, sizeof(path), "/api/v1/dags/%s/runs/%s/status", dag, run);
    struct api_call k = {
        .method = "GET", .path = path, .what = "run status", .done = done, .arg = arg};
    return api_call(c, &k, e);
}

/* ---- DAG sync ---- */

remex_err api_dags_manifest(struct api_client *c, const json_t *manifest, api_done_fn done,
                            void *arg, struct remex_error *e)
{
    struct api_call k = {.method = "POST",
                         .path = "/api/v1/dags/manifest",
                         .body = manifest,
                         .what = "manifest",
                         .done = done,
                         .arg = arg};
    return api_call(c, &k, e);
}

/* Starts the body of a DAG upload in b: '{"bundle":{"name":..,"version":..},' and then
 * key (e.g. "\"dags\":["), the DAG texts following as they are. */
static remex_err dag_upload_head(struct buf *b, const char *bundle, const char *version,
                                 const char *key)
{
    json_t *env = /* owned */
        json_pack("{s:s,s:s}", "name", bundle ? bundle : "", "version", version ? version : "");
    char *envtext = env ? json_dumps(env, JSON_COMPACT) : NULL;
    json_decref(env);
    remex_err rc = envtext ? buf_printf(b, "{\"bundle\":%s,%s", envtext, key) : REMEX_ENOMEM;
    free(envtext);
    return rc;
}

/* Sends the finished upload body b (freed here) to method path. */
static remex_err dag_upload_send(struct api_client *c, const char *method, const char *path,
                                 struct buf *b, api_done_fn done, void *arg, struct remex_error *e)
{
    struct api_call k = {.method = method,
                         .path = path,
                         .raw_body = b->data,
                         .raw_len = b->len,
                         .what = "dag upload",
                         .done = done,
                         .arg = arg};
    remex_err rc = api_call(c, &k, e);
    buf_free(b);
    return rc;
}

remex_err api_dags_bulk(struct api_client *c, const char *bundle, const char *version,
                        const char *const *dags, const size_t *lens, size_t n, api_done_fn done,
                        void *arg, struct remex_error *e)
{
    if (n == 0 || n > API_DAGS_BULK_MAX)
        return remex_seterr(e, REMEX_EINVAL, "dag upload: 1 to %d DAGs per request, not %zu",
                            API_DAGS_BULK_MAX, n);
    /* {"bundle":{...},"dags":[text,text,...]}: the DAGs' canonical texts are
     * copied in as they are, not parsed and encoded again. */
    struct buf b = BUF_INIT(BODY_MAX);
    remex_err rc = dag_upload_head(&b, bundle, version, "\"dags\":[");
    for (size_t i = 0; rc == REMEX_OK && i < n; i++)
        if ((i > 0 && (rc = buf_append(&b, ",", 1)) != REMEX_OK) ||
            (rc = buf_append(&b, dags[i], lens[i])) != REMEX_OK)
            break;
    if (rc == REMEX_OK)
        rc = buf_puts(&b, "]}");
    if (rc != REMEX_OK) {
        buf_free(&b);
        return remex_seterr(e, rc, "dag upload: %s",
                            rc == REMEX_ENOMEM ? "out of memory" : "body over 8 MiB");
    }
    return dag_upload_send(c, "POST", "/api/v1/dags/bulk", &b, done, arg, e);
}

remex_err api_dag_put(struct api_client *c, const char *dag_id, const char *bundle,
                      const char *version, const char *dag, size_t len, api_done_fn done, void *arg,
                      struct remex_error *e)
{
    char seg[3 * 1024 + 1], path[sizeof(seg) + 32];
    if (dag_id == NULL || dag_id[0] == '\0' || strlen(dag_id) > 1024 ||
        path_segment(seg, sizeof(seg), dag_id))
        return remex_seterr(e, REMEX_ETOOBIG, "dag upload: dag_id empty or over 1024 bytes");
    if (dag == NULL || len == 0)
        return remex_seterr(e, REMEX_EINVAL, "dag upload: no DAG text");
    snprintf(path, sizeof(path), "/api/v1/dags/%s", seg);
    /* {"bundle":{...},"dag":text}: the canonical text is copied in as it is. */
    struct buf b = BUF_INIT(API_DAG_PUT_MAX);
    remex_err rc = dag_upload_head(&b, bundle, version, "\"dag\":");
    if (rc == REMEX_OK && (rc = buf_append(&b, dag, len)) == REMEX_OK)
        rc = buf_puts(&b, "}");
    if (rc != REMEX_OK) {
        buf_free(&b);
        return remex_seterr(e, rc, "dag upload of %s: %s", dag_id,
                            rc == REMEX_ENOMEM ? "out of memory" : "body over 8 MiB + 64 KiB");
    }
    return dag_upload_send(c, "PUT", path, &b, done, arg, e);
}

/* ---- agent health and queue depth ---- */

remex_err api_agent_health(struct api_client *c, const json_t *report, api_done_fn done, void *arg,
                           struct remex_error *e)
{
    char seg[3 * 64 + 1], path[sizeof(seg) + 32];
    const char *id = api_agent_id(c);
    if (!id || !id[0] || path_segment(seg, sizeof(seg), id))
        return remex_seterr(e, REMEX_EINVAL, "health report: the agent has no id yet");
    snprintf(path, sizeof(path), "/api/v1/agents/%s/health", seg);
    struct api_call k = {.method = "POST",
                         .path = path,
                         .body = report,
                         .what = "health report",
                         .done = done,
                         .arg = arg};
    return api_call(c, &k, e);
}

remex_err api_queues_depth(struct api_client *c, const char *const *queues, size_t n,
                           api_done_fn done, void *arg, struct remex_error *e)
{
    char path[4096 + 64], seg[3 * 256 + 1];
    size_t o = (size_t)snprintf(path, sizeof(path), "/api/v1/queues/depth?queues=");
    if (n == 0)
        return remex_seterr(e, REMEX_EINVAL, "queue depth: no queue");
    for (size_t i = 0; i < n; i++) {
        if (strlen(queues[i]) > 256 || path_segment(seg, sizeof(seg), queues[i]) ||
            o + strlen(seg) + 2 >= sizeof(path))
            return remex_seterr(e, REMEX_ETOOBIG, "queue depth: queue list over 4 KiB");
        o += (size_t)snprintf(path + o, sizeof(path) - o, "%s%s", i ? "," : "", seg);
    }
    struct api_call k = {
        .method = "GET", .path = path, .what = "queue depth", .done = done, .arg = arg};
    return api_call(c, &k, e);
}
