/*
 * Agents: registration (agent token -> session), heartbeats, sentinel health
 * reports, admin views, and lost detection.
 *
 * Lost detection is a small thread that waits on its own condition variable
 * (with plane.mu) until the earliest moment an agent could become lost:
 * min(last_heartbeat) + lost_after_missed * heartbeat_interval. Registration
 * wakes it (a new agent may be due earlier); heartbeats only move deadlines
 * later, so they need not. Agent states set by the plane: "starting"
 * (at registration), "lost", "offline" (reported at shutdown);
 * otherwise the state the agent reports.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"
#include "plane.h"
#include "remex/log.h"
#include "remex/timeutil.h"

struct lostd {
    pthread_t thread;
    pthread_cond_t cv; /* CLOCK_MONOTONIC, waited on with plane.mu */
    int started;
};

static int64_t lost_window_ms(const struct plane *p)
{
    return p->cfg.lost_after_missed * p->cfg.heartbeat_interval_ms;
}

static json_t *rfc3339(int64_t ms)
{
    char s[TIMEUTIL_RFC3339_MAX];
    if (ms <= 0 || timeutil_rfc3339_format(ms, 1, s, sizeof(s)))
        return json_null();
    return json_string(s);
}

int agents_session_valid(struct plane *p, int64_t agent_id, int64_t session, unsigned *roles)
{
    sqlite3_stmt *st = store_stmt(p, "SELECT session, state, role_mask FROM agents WHERE id = ?");
    int ok = 0;
    if (!st)
        return 0;
    sqlite3_bind_int64(st, 1, agent_id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(st, 1);
        ok = sqlite3_column_int64(st, 0) == session && state && strcmp(state, "lost") != 0 &&
             strcmp(state, "offline") != 0;
        if (roles)
            *roles = (unsigned)sqlite3_column_int64(st, 2) & PLANE_ROLES_ALL;
    }
    sqlite3_reset(st);
    return ok;
}

int agents_token_queues(struct plane *p, int64_t agent_id, json_t **queues)
{
    sqlite3_stmt *st = store_stmt(p, "SELECT t.queues FROM agents a JOIN tokens t"
                                     " ON t.id = a.token_id WHERE a.id = ?");
    int r = -1;
    *queues = NULL;
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, agent_id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        r = 0;
        if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
            *queues = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
            r = json_is_array(*queues) ? 1 : -1;
        }
    }
    sqlite3_reset(st);
    return r;
}

/* 1 when the string s is an item of the JSON array a. */
static int in_array(json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return 1;
    }
    return 0;
}

/* Checks a registration against what its agent token allows (mu held): 0,
 * or 403 / 500 with msg set for the reply. */
static int register_scope(struct plane *p, const struct decode_register *r, int64_t token_id,
                          char *msg, size_t msgsz)
{
    sqlite3_stmt *st = store_stmt(p, "SELECT roles, queues FROM tokens WHERE id = ?");
    if (!st) {
        snprintf(msg, msgsz, "cannot read the agent token");
        return 500;
    }
    sqlite3_bind_int64(st, 1, token_id);
    int code = 500;
    snprintf(msg, msgsz, "cannot read the agent token");
    if (sqlite3_step(st) == SQLITE_ROW) {
        unsigned allowed = (unsigned)sqlite3_column_int64(st, 0);
        json_t *q = sqlite3_column_type(st, 1) == SQLITE_NULL
                        ? NULL
                        : json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
        size_t i;
        json_t *v;
        code = 0;
        json_array_foreach(r->roles, i, v)
        {
            json_t *one = json_pack("[O]", v);
            if (!code && !(decode_role_mask(one) & allowed)) {
                snprintf(msg, msgsz, "roles[%zu]: agent token %lld does not allow role '%s'", i,
                         (long long)token_id, json_string_value(v));
                code = 403;
            }
            json_decref(one);
        }
        json_array_foreach(r->queues, i, v)
        {
            if (!code && q && !in_array(q, json_string_value(v))) {
                snprintf(msg, msgsz, "queues[%zu]: agent token %lld does not allow queue '%s'", i,
                         (long long)token_id, json_string_value(v));
                code = 403;
            }
        }
        json_decref(q);
    }
    sqlite3_reset(st);
    return code;
}

int agents_work_allowed(struct plane *p, int64_t agent_id, int64_t session)
{
    sqlite3_stmt *st =
        store_stmt(p, "SELECT session, state, desired_state FROM agents WHERE id = ?");
    int ok = -1;
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, agent_id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(st, 1);
        const char *desired = (const char *)sqlite3_column_text(st, 2);
        if (sqlite3_column_int64(st, 0) == session && state && strcmp(state, "lost") != 0 &&
            strcmp(state, "offline") != 0)
            ok = desired && strcmp(desired, "run") == 0;
    }
    sqlite3_reset(st);
    return ok;
}

static char *dump(json_t *v, const char *def)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    return s ? s : strdup(def);
}

/* Inserts or updates the agent row; sets *id, *session and *existed (mu held). */
static int upsert_agent(struct plane *p, const struct decode_register *r, int64_t token_id,
                        int64_t *id, int64_t *session, int *existed)
{
    sqlite3_stmt *st = NULL;
    int64_t now = plane_now_ms();
    char *roles = dump(r->roles, "[]"), *queues = dump(r->queues, "[]"),
         *features = dump(r->features, "{}");
    int ok = roles && queues && features &&
             sqlite3_prepare_v2(
                 p->db,
                 "INSERT INTO agents(name, token_id, session, state, roles, queues, version,"
                 " hostname, slots, free_slots, features, registered_ms, last_heartbeat_ms,"
                 " role_mask)"
                 " VALUES(?1, ?2, 1, 'starting', ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?9, ?10)"
                 " ON CONFLICT(name) DO UPDATE SET token_id = ?2, session = session + 1,"
                 " state = 'starting', roles = ?3, queues = ?4, version = ?5, hostname = ?6,"
                 " slots = ?7, free_slots = ?7, features = ?8, registered_ms = ?9,"
                 " last_heartbeat_ms = ?9, lost_ms = 0, role_mask = ?10"
                 " RETURNING id, session",
                 -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_text(st, 1, r->name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, token_id);
        sqlite3_bind_text(st, 3, roles, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, queues, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, r->version, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 6, r->hostname, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 7, r->slots);
        sqlite3_bind_text(st, 8, features, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 9, now);
        sqlite3_bind_int64(st, 10, decode_role_mask(r->roles));
        ok = sqlite3_step(st) == SQLITE_ROW;
        if (ok) {
            *id = sqlite3_column_int64(st, 0);
            *session = sqlite3_column_int64(st, 1);
            *existed = *session > 1;
        }
    }
    if (!ok)
        log_error("agents: register %s: %s", r->name, sqlite3_errmsg(p->db));
    sqlite3_finalize(st);
    free(roles);
    free(queues);
    free(features);
    return ok;
}

static void h_register(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    struct decode_register r;
    struct remex_error e = {0};
    if (!rq->body) {
        plane_error(rs, 400, "bad_request", "body: missing");
        return;
    }
    if (decode_register(rq->body, &r, &e)) {
        plane_error(rs, 400, "bad_request", "%s", e.msg);
        return;
    }
    int64_t id = 0, session = 0, exp_ms = 0;
    int existed = 0;
    char *tok = NULL;
    struct lostd *ld = p->agents;
    char msg[DECODE_NAME_MAX * 2 + 96];
    pthread_mutex_lock(&p->mu);
    int refused = register_scope(p, &r, rq->who.token_id, msg, sizeof(msg));
    if (refused) {
        pthread_mutex_unlock(&p->mu);
        log_warn("agents: registration of %s refused: %s", r.name, msg);
        plane_error(rs, refused, refused == 403 ? "forbidden" : "internal", "%s", msg);
        return;
    }
    int ok = upsert_agent(p, &r, rq->who.token_id, &id, &session, &existed);
    if (ok) {
        if (existed)
            sched_agent_reregistered(p, id);
        plane_kick(p);
        if (ld)
            pthread_cond_signal(&ld->cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (!ok) {
        plane_error(rs, 500, "internal", "cannot record the agent");
        return;
    }
    if (auth_session_token(p, id, rq->who.token_id, session, &tok, &exp_ms, &e)) {
        plane_error(rs, 500, "internal", "cannot issue a session");
        return;
    }
    log_info("agents: %s registered as agent %lld session %lld%s", r.name, (long long)id,
             (long long)session, existed ? " (re-registration)" : "");
    plane_reply(rs, 200,
                json_pack("{s:I,s:s,s:o,s:f}", "agent_id", (json_int_t)id, "session_token", tok,
                          "session_expires_at", rfc3339(exp_ms), "heartbeat_interval",
                          (double)p->cfg.heartbeat_interval_ms / 1000.0));
    free(tok);
}

/* Records a heartbeat; returns the desired state (malloc'd) or NULL (mu held). */
static char *record_heartbeat(struct plane *p, int64_t id, const struct decode_heartbeat *h)
{
    sqlite3_stmt *st = NULL;
    char *sys = h->sysinfo ? json_dumps(h->sysinfo, JSON_COMPACT) : NULL, *desired = NULL;
    if (sqlite3_prepare_v2(p->db,
                           "UPDATE agents SET state = ?2, free_slots = ?3,"
                           " sysinfo = COALESCE(?4, sysinfo), last_heartbeat_ms = ?5"
                           " WHERE id = ?1 RETURNING desired_state",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, h->state, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, h->free_slots);
        if (sys)
            sqlite3_bind_text(st, 4, sys, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st, 4);
        sqlite3_bind_int64(st, 5, plane_now_ms());
        if (sqlite3_step(st) == SQLITE_ROW)
            desired = strdup((const char *)sqlite3_column_text(st, 0));
    }
    if (!desired)
        log_error("agents: heartbeat of %lld: %s", (long long)id, sqlite3_errmsg(p->db));
    sqlite3_finalize(st);
    free(sys);
    return desired;
}

static void h_heartbeat(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    struct decode_heartbeat h;
    struct remex_error e = {0};
    if (!rq->body) {
        plane_error(rs, 400, "bad_request", "body: missing");
        return;
    }
    if (decode_heartbeat(rq->body, &h, &e)) {
        plane_error(rs, 400, "bad_request", "%s", e.msg);
        return;
    }
    int64_t id = rq->who.agent_id;
    json_t *cancel = json_array(), *running = h.running ? h.running : json_array();
    json_t *cancel_trig = json_array();
    uint64_t t0 = timeutil_mono_ns();
    pthread_mutex_lock(&p->mu);
    metrics_heartbeat_wait(p, (double)(timeutil_mono_ns() - t0) / 1e9);
    char *desired = record_heartbeat(p, id, &h);
    if (desired) {
        sched_heartbeat(p, id, running, cancel);
        if (h.triggers) /* an agent that lists no triggers has no say on them */
            strig_heartbeat(p, id, h.triggers, cancel_trig);
    }
    pthread_mutex_unlock(&p->mu);
    if (!h.running)
        json_decref(running);
    if (!desired) {
        json_decref(cancel);
        json_decref(cancel_trig);
        plane_error(rs, 500, "internal", "cannot record the heartbeat");
        return;
    }
    json_t *b = json_pack("{s:f,s:s,s:o,s:o}", "heartbeat_interval",
                          (double)p->cfg.heartbeat_interval_ms / 1000.0, "desired_state", desired,
                          "cancel", cancel, "cancel_triggers", cancel_trig);
    free(desired);
    int64_t left = rq->who.exp_ms - plane_now_ms();
    if (b && left < p->cfg.session_ttl_ms / 3) {
        char *tok = NULL;
        int64_t exp_ms = 0;
        if (auth_session_token(p, id, rq->who.token_id, rq->who.session, &tok, &exp_ms, &e) ==
            REMEX_OK) {
            json_object_set_new(b, "session_token", json_string(tok));
            json_object_set_new(b, "session_expires_at", rfc3339(exp_ms));
            free(tok);
        }
    }
    plane_reply(rs, 200, b);
}

static void h_health(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    struct decode_health h;
    struct remex_error e = {0};
    sqlite3_stmt *st = NULL;
    if (!rq->body) {
        plane_error(rs, 400, "bad_request", "body: missing");
        return;
    }
    if (decode_health(rq->body, &h, &e)) {
        plane_error(rs, 400, "bad_request", "%s", e.msg);
        return;
    }
    json_t *rep = json_pack("{s:s,s:O,s:o}", "status", h.status, "checks", h.checks, "reported_at",
                            rfc3339(plane_now_ms()));
    char *s = rep ? json_dumps(rep, JSON_COMPACT) : NULL;
    json_decref(rep);
    int ok = 0;
    pthread_mutex_lock(&p->mu);
    if (s &&
        sqlite3_prepare_v2(p->db, "UPDATE agents SET health = ?2, health_ms = ?3 WHERE id = ?1", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, rq->who.agent_id);
        sqlite3_bind_text(st, 2, s, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, plane_now_ms());
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&p->mu);
    free(s);
    if (!ok)
        plane_error(rs, 500, "internal", "cannot record the health report");
    else
        plane_reply(rs, 200, json_object());
}

static json_t *parse_col(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    json_t *v = s ? json_loads(s, 0, NULL) : NULL;
    return v ? v : json_null();
}

/* Column 19 counts the agent's offered and running task instances (through
 * the ti_active partial index: its condition is named as is), column 20 the
 * triggers it holds (triggers_agent index). */
#define AGENT_COLS                                                                                 \
    "id, name, state, desired_state, roles, queues, version, hostname, slots, free_slots,"         \
    " registered_ms, last_heartbeat_ms, lost_ms, token_id, session, features, sysinfo, health,"    \
    " health_ms, (SELECT count(*) FROM task_instances t WHERE t.agent_id = agents.id"              \
    " AND state IN ('offered', 'running')),"                                                       \
    " (SELECT count(*) FROM triggers g WHERE g.agent_id = agents.id)"

static json_t *agent_json(sqlite3_stmt *st, int full)
{
    json_t *a = json_pack(
        "{s:I,s:s,s:s,s:s,s:o,s:o,s:s,s:s,s:I,s:I,s:o,s:o,s:o,s:I}", "agent_id",
        (json_int_t)sqlite3_column_int64(st, 0), "name", (const char *)sqlite3_column_text(st, 1),
        "state", (const char *)sqlite3_column_text(st, 2), "desired_state",
        (const char *)sqlite3_column_text(st, 3), "roles", parse_col(st, 4), "queues",
        parse_col(st, 5), "version", (const char *)sqlite3_column_text(st, 6), "hostname",
        (const char *)sqlite3_column_text(st, 7), "slots", (json_int_t)sqlite3_column_int64(st, 8),
        "free_slots", (json_int_t)sqlite3_column_int64(st, 9), "registered_at",
        rfc3339(sqlite3_column_int64(st, 10)), "last_heartbeat_at",
        rfc3339(sqlite3_column_int64(st, 11)), "lost_at", rfc3339(sqlite3_column_int64(st, 12)),
        "token_id", (json_int_t)sqlite3_column_int64(st, 13));
    if (a)
        json_object_set_new(a, "running", json_integer(sqlite3_column_int64(st, 19)));
    if (a)
        json_object_set_new(a, "triggers_held", json_integer(sqlite3_column_int64(st, 20)));
    if (a) /* in lists too: the web UI's agents page reads one list per refresh */
        json_object_set_new(a, "health", parse_col(st, 17));
    if (a && full) {
        json_object_set_new(a, "session", json_integer(sqlite3_column_int64(st, 14)));
        json_object_set_new(a, "features", parse_col(st, 15));
        json_object_set_new(a, "sysinfo", parse_col(st, 16));
    }
    return a;
}

static void h_admin_list(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    sqlite3_stmt *st = NULL;
    json_t *list = json_array();
    (void)rq;
    pthread_mutex_lock(&p->mu);
    if (sqlite3_prepare_v2(p->db, "SELECT " AGENT_COLS " FROM agents ORDER BY id", -1, &st, NULL) ==
        SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW)
            json_array_append_new(list, agent_json(st, 0));
    sqlite3_finalize(st);
    pthread_mutex_unlock(&p->mu);
    plane_reply(rs, 200, json_pack("{s:o}", "agents", list));
}

static void h_admin_show(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    sqlite3_stmt *st = NULL;
    json_t *a = NULL;
    int64_t id = decode_id(rq->param[0]);
    if (id <= 0) {
        plane_error(rs, 404, "not_found", "no such agent");
        return;
    }
    pthread_mutex_lock(&p->mu);
    if (sqlite3_prepare_v2(p->db, "SELECT " AGENT_COLS " FROM agents WHERE id = ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW)
            a = agent_json(st, 1);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&p->mu);
    if (!a)
        plane_error(rs, 404, "not_found", "no such agent");
    else
        plane_reply(rs, 200, a);
}

/* PATCH /admin/agents/{id} {desired_state}: persisted, answered with the agent. */
static void h_admin_patch(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    struct decode_agent_patch d;
    struct remex_error e = {0};
    sqlite3_stmt *st = NULL;
    json_t *a = NULL;
    int64_t id = decode_id(rq->param[0]);
    if (id <= 0) {
        plane_error(rs, 404, "not_found", "no such agent");
        return;
    }
    if (!rq->body) {
        plane_error(rs, 400, "bad_request", "body: missing");
        return;
    }
    if (decode_agent_patch(rq->body, &d, &e)) {
        plane_error(rs, 400, "bad_request", "%s", e.msg);
        return;
    }
    pthread_mutex_lock(&p->mu);
    if (sqlite3_prepare_v2(p->db,
                           "UPDATE agents SET desired_state = ?2 WHERE id = ?1"
                           " RETURNING " AGENT_COLS,
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, d.desired_state, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            a = agent_json(st, 1);
    }
    sqlite3_finalize(st);
    if (a && strcmp(d.desired_state, "run") == 0) {
        /* Its waiting long polls look again. */
        plane_wake(p, PLANE_WAIT_WORK);
        plane_wake(p, PLANE_WAIT_TRIGGER);
    }
    pthread_mutex_unlock(&p->mu);
    if (!a) {
        plane_error(rs, 404, "not_found", "no such agent");
        return;
    }
    log_info("agents: agent %lld desired state set to %s", (long long)id, d.desired_state);
    plane_reply(rs, 200, a);
}

/* Forgets a lost or offline agent (its row; the task instances it ran keep
 * their history, without its name). An agent still registered is 409. */
static void h_admin_delete(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    int64_t id = decode_id(rq->param[0]);
    char state[32] = "";
    pthread_mutex_lock(&p->mu);
    sqlite3_stmt *st = id > 0 ? store_stmt(p, "SELECT state FROM agents WHERE id = ?") : NULL;
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(state, sizeof(state), "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_reset(st);
    }
    if (!state[0] || (strcmp(state, "lost") != 0 && strcmp(state, "offline") != 0)) {
        pthread_mutex_unlock(&p->mu);
        if (!state[0])
            plane_error(rs, 404, "not_found", "no such agent");
        else
            plane_error(rs, 409, "conflict",
                        "the agent is %s: only a lost or offline agent can be deleted", state);
        return;
    }
    int began = store_begin(p);
    sqlite3_stmt *u = store_stmt(p, "UPDATE triggers SET agent_id = NULL WHERE agent_id = ?");
    sqlite3_stmt *d = store_stmt(p, "DELETE FROM agents WHERE id = ?");
    int ok = u && d;
    if (ok) {
        sqlite3_bind_int64(u, 1, id);
        ok = sqlite3_step(u) == SQLITE_DONE;
        sqlite3_reset(u);
        sqlite3_bind_int64(d, 1, id);
        ok = ok && sqlite3_step(d) == SQLITE_DONE;
        sqlite3_reset(d);
    }
    int failed = !ok || store_commit(p, began) != 0;
    pthread_mutex_unlock(&p->mu);
    if (failed) {
        plane_store_failed(rs);
        return;
    }
    log_info("agents: agent %lld deleted", (long long)id);
    plane_reply(rs, 200, json_pack("{sI sb}", "agent_id", (json_int_t)id, "deleted", 1));
}

const struct plane_route plane_routes_agents[] = {
    {"POST", "/api/v1/agents/register", AUTHZ_AGENT_TOKEN, h_register, 0},
    {"POST", "/api/v1/agents/{agent_id}/heartbeat", AUTHZ_SESSION, h_heartbeat, 0},
    {"POST", "/api/v1/agents/{agent_id}/health", AUTHZ_SESSION, h_health, PLANE_ROLE_SENTINEL},
    {"GET", "/api/v1/admin/agents", AUTHZ_ADMIN, h_admin_list, 0},
    {"GET", "/api/v1/admin/agents/{agent_id}", AUTHZ_ADMIN, h_admin_show, 0},
    {"PATCH", "/api/v1/admin/agents/{agent_id}", AUTHZ_ADMIN, h_admin_patch, 0},
    {"DELETE", "/api/v1/admin/agents/{agent_id}", AUTHZ_ADMIN, h_admin_delete, 0},
    {NULL, NULL, AUTHZ_NONE, NULL, 0},
};

/* ---- lost detection ---- */

/* Marks overdue agents lost; returns the wall-clock ms of the next deadline or 0 (mu held). */
static int64_t sweep(struct plane *p)
{
    sqlite3_stmt *st = NULL;
    int64_t now = plane_now_ms(), win = lost_window_ms(p), next = 0;
    int64_t ids[64];
    int n = 0, rc = SQLITE_ERROR;
    if (sqlite3_prepare_v2(p->db,
                           "UPDATE agents SET state = 'lost', lost_ms = ?1"
                           " WHERE state NOT IN ('lost', 'offline') AND last_heartbeat_ms <= ?2"
                           " RETURNING id, name",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_int64(st, 2, now - win);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (n < 64)
                ids[n++] = sqlite3_column_int64(st, 0);
            log_warn("agents: agent %lld (%s) lost: no heartbeat for %lld ms",
                     (long long)sqlite3_column_int64(st, 0),
                     (const char *)sqlite3_column_text(st, 1), (long long)win);
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        /* Not recorded (disk full, I/O error; rolled back): again in a second. */
        log_error("agents: marking lost agents: %s", sqlite3_errmsg(p->db));
        return now + 1000;
    }
    for (int i = 0; i < n; i++)
        sched_agent_lost(p, ids[i]);
    if (n)
        plane_kick(p);
    if (n == 64)
        return now; /* more to mark: go again at once */
    if (sqlite3_prepare_v2(p->db,
                           "SELECT MIN(last_heartbeat_ms) FROM agents"
                           " WHERE state NOT IN ('lost', 'offline')",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        next = sqlite3_column_int64(st, 0) + win + 1;
    sqlite3_finalize(st);
    return next;
}

static void *lost_main(void *arg)
{
    struct plane *p = arg;
    struct lostd *ld = p->agents;
    pthread_mutex_lock(&p->mu);
    while (!atomic_load(&p->stopping)) {
        int64_t next = sweep(p);
        int64_t wait_ms = next ? next - plane_now_ms() : 3600 * 1000;
        if (wait_ms <= 0)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += wait_ms / 1000;
        ts.tv_nsec += (wait_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&ld->cv, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

remex_err agents_start(struct plane *p, struct remex_error *e)
{
    struct lostd *ld = calloc(1, sizeof(*ld));
    pthread_condattr_t ca;
    if (!ld)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ld->cv, &ca);
    pthread_condattr_destroy(&ca);
    p->agents = ld;
    if (pthread_create(&ld->thread, NULL, lost_main, p) != 0) {
        pthread_cond_destroy(&ld->cv);
        free(ld);
        p->agents = NULL;
        return remex_seterr(e, REMEX_ESYS, "cannot start the lost-agent thread");
    }
    ld->started = 1;
    return REMEX_OK;
}

void agents_stop(struct plane *p)
{
    struct lostd *ld = p->agents;
    if (!ld)
        return;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&ld->cv);
    pthread_mutex_unlock(&p->mu);
    if (ld->started)
        pthread_join(ld->thread, NULL);
    pthread_cond_destroy(&ld->cv);
    free(ld);
    p->agents = NULL;
}
