/*
 * Deferral: triggers handed to triggerers by a capacity-aware long poll,
 * trigger events that resume the deferred task instance, trigger timeouts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"
#include "remex/log.h"
#include "sched.h"

#define POLL_MAX_TRIGGERS 1000
#define POLL_REPLY_BYTES  (4u * 1024u * 1024u) /* one more item once past it */

/* 1 when the trigger spec (JSON text) asks on_timeout: skip. */
static int spec_skips(const char *spec)
{
    json_t *j = json_loads(spec, JSON_DECODE_ANY, NULL);
    json_t *v = json_is_object(j) ? json_object_get(j, "on_timeout") : NULL;
    int skip = json_is_string(v) && strcmp(json_string_value(v), "skip") == 0;
    json_decref(j);
    return skip;
}

/* The resume_with string of the trigger spec (JSON text) into out ("" if none). */
static void spec_resume_with(const char *spec, char *out, size_t outsz)
{
    json_t *j = json_loads(spec, JSON_DECODE_ANY, NULL);
    const char *s = json_string_value(json_is_object(j) ? json_object_get(j, "resume_with") : NULL);
    snprintf(out, outsz, "%s", s ? s : "");
    json_decref(j);
}

/* Ends a deferred TI whose trigger timed out: skipped or failed (and retried)
 * as its trigger's on_timeout says. The trigger row is gone already. */
static void timed_out(struct plane *p, int64_t ti, int skip, int64_t now)
{
    if (!sq_int(p, 0, "SELECT state = 'deferred' FROM task_instances WHERE id = ?1", "i", ti))
        return;
    if (!skip) {
        sched_ti_fail(p, ti, "trigger timeout", 1, now);
        return;
    }
    sq_run(p,
           "UPDATE task_instances SET state = 'skipped', ended_ms = ?2, reason = 'trigger timeout',"
           " due_ms = NULL WHERE id = ?1",
           "ii", ti, now);
    sched_mark_run(p, sq_int(p, 0, "SELECT run FROM task_instances WHERE id = ?1", "i", ti),
                   SDIRTY_EVAL);
}

int64_t strig_due(struct plane *p, int64_t now)
{
    int64_t ids[64], tis[64];
    int skip[64];
    int n = 0;
    sqlite3_stmt *st = sq(p,
                          "SELECT id, ti, spec FROM triggers WHERE timeout_ms <= ?1"
                          " ORDER BY timeout_ms LIMIT 64",
                          "i", now);
    while (st && n < 64 && sqlite3_step(st) == SQLITE_ROW) {
        ids[n] = sqlite3_column_int64(st, 0);
        tis[n] = sqlite3_column_int64(st, 1);
        skip[n] = spec_skips(sq_text(st, 2));
        n++;
    }
    if (st)
        sqlite3_reset(st);
    for (int i = 0; i < n; i++) {
        log_info("sched: trigger %" PRId64 " of task instance %" PRId64 " timed out", ids[i],
                 tis[i]);
        sq_run(p, "DELETE FROM triggers WHERE id = ?1", "i", ids[i]);
        timed_out(p, tis[i], skip[i], now);
    }
    if (n == 64)
        return now;
    return sq_int(p, INT64_MAX, "SELECT min(timeout_ms) FROM triggers WHERE timeout_ms IS NOT NULL",
                  "");
}

void strig_insert(struct plane *p, int64_t ti, int64_t try_no, const json_t *spec, int64_t now)
{
    char *text = json_dumps(spec, JSON_COMPACT);
    json_t *to = json_object_get(spec, "timeout");
    int64_t tms = json_is_number(to) ? now + (int64_t)(json_number_value(to) * 1000.0) : 0;
    sq_run(p, "DELETE FROM triggers WHERE ti = ?1", "i", ti);
    sq_run(p,
           "INSERT INTO triggers (ti, try_number, spec, timeout_ms, created_ms)"
           " VALUES (?1, ?2, ?3, ?4, ?5)",
           "iitNi", ti, try_no, text ? text : "{}", tms ? tms : INT64_MIN, now);
    free(text);
    if (tms)
        sched_due_hint(p, tms);
    plane_wake(p, PLANE_WAIT_TRIGGER);
}

const struct dag_task *strig_task_of(struct plane *p, int64_t ti)
{
    sqlite3_stmt *st = sq(p,
                          "SELECT t.task_id, r.dag_id FROM task_instances t JOIN dag_runs r"
                          " ON r.id = t.run WHERE t.id = ?1",
                          "i", ti);
    const struct dag_task *t = NULL;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        struct sdag *d = sdag_find(p, sq_text(st, 1));
        long k = d ? sdag_task_index(d, sq_text(st, 0)) : -1;
        t = k >= 0 ? &d->dag->tasks[k] : NULL;
    }
    if (st)
        sqlite3_reset(st);
    return t;
}

int strig_declared(struct plane *p, int64_t ti, const struct dag_task *t, int64_t now)
{
    if (!t || !t->trigger)
        return 0;
    int64_t try_no = sq_int(p, 0, "SELECT try_number FROM task_instances WHERE id = ?1", "i", ti);
    sq_run(p,
           "UPDATE task_instances SET state = 'deferred', agent_id = NULL, due_ms = NULL,"
           " started_ms = ?2 WHERE id = ?1 AND state = 'queued'",
           "ii", ti, now);
    if (sqlite3_changes(p->db) == 0)
        return 0;
    strig_insert(p, ti, try_no, t->trigger, now);
    return 1;
}

void strig_release_agent(struct plane *p, int64_t agent_id)
{
    sq_run(p, "UPDATE triggers SET agent_id = NULL, assigned_ms = NULL WHERE agent_id = ?1", "i",
           agent_id);
    if (sqlite3_changes(p->db) > 0)
        plane_wake(p, PLANE_WAIT_TRIGGER);
}

/* The run context of the trigger row st (columns 4..): what a triggerer expands
 * templates with (owned json). As for an assignment, the run's conf overrides
 * the DAG's params key by key. */
static json_t *trigger_context(struct plane *p, sqlite3_stmt *st)
{
    struct sdag *d = sdag_find(p, sq_text(st, 6));
    json_t *params = d && d->params ? json_deep_copy(d->params) : json_object();
    json_t *conf = sched_col_json(st, 13);
    if (params && json_is_object(conf))
        json_object_update(params, conf);
    return json_pack("{ss ss ss sI sI so so so so so}", "dag_id", sq_text(st, 6), "run_id",
                     sq_text(st, 7), "task_id", sq_text(st, 5), "try_number",
                     (json_int_t)sqlite3_column_int64(st, 8), "map_index",
                     (json_int_t)sqlite3_column_int64(st, 9), "logical_date",
                     sched_col_time(st, 10), "data_interval_start", sched_col_time(st, 11),
                     "data_interval_end", sched_col_time(st, 12), "params", params, "conf", conf);
}

/* Hands up to cap unassigned triggers to agent; appends them to arr. */
static int hand_out(struct plane *p, int64_t agent, int64_t cap, json_t *arr)
{
    int64_t ids[POLL_MAX_TRIGGERS];
    int n = 0;
    sqlite3_stmt *st =
        sq(p,
           "SELECT g.id, g.ti, g.spec, g.timeout_ms, g.created_ms, t.task_id, r.dag_id, r.run_id,"
           " g.try_number, t.map_index, r.logical_date, r.di_start, r.di_end, r.conf"
           " FROM triggers g JOIN task_instances t ON t.id = g.ti JOIN dag_runs r"
           " ON r.id = t.run WHERE g.agent_id IS NULL ORDER BY g.id LIMIT ?1",
           "i", cap);
    size_t bytes = 0;
    while (st && n < POLL_MAX_TRIGGERS && bytes < POLL_REPLY_BYTES &&
           sqlite3_step(st) == SQLITE_ROW) {
        /* Spec and run conf are the variable part of an item (params are
         * bounded by the DAG's own cap; the conf appears twice: as itself and
         * merged into params): the reply stays within what a triggerer
         * accepts, whatever the runs' conf. */
        bytes +=
            (size_t)sqlite3_column_bytes(st, 2) + 2 * (size_t)sqlite3_column_bytes(st, 13) + 512;
        ids[n++] = sqlite3_column_int64(st, 0);
        json_array_append_new(
            arr,
            json_pack("{sI sI so so so so}", "trigger_id", (json_int_t)sqlite3_column_int64(st, 0),
                      "ti_id", (json_int_t)sqlite3_column_int64(st, 1), "spec",
                      sched_col_json(st, 2), "timeout_at", sched_col_time(st, 3), "created_at",
                      sched_col_time(st, 4), "context", trigger_context(p, st)));
    }
    if (st)
        sqlite3_reset(st);
    int64_t now = plane_now_ms();
    for (int i = 0; i < n; i++)
        sq_run(p, "UPDATE triggers SET agent_id = ?2, assigned_ms = ?3 WHERE id = ?1", "iii",
               ids[i], agent, now);
    return n;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int has_id(const int64_t *v, size_t n, int64_t id)
{
    return n > 0 && bsearch(&id, v, n, sizeof(*v), cmp_i64) != NULL;
}

/* Sorted copy of the integer items of arr (malloc'd, *n set); NULL on no memory. */
static int64_t *sorted_ids(json_t *arr, size_t *n)
{
    int64_t *v = malloc((json_array_size(arr) + 1) * sizeof(*v));
    size_t i, k = 0;
    json_t *x;
    if (!v)
        return NULL;
    json_array_foreach(arr, i, x)
    {
        if (json_is_integer(x))
            v[k++] = json_integer_value(x);
    }
    qsort(v, k, sizeof(*v), cmp_i64);
    *n = k;
    return v;
}

/* A growable list of ids; on no memory it stops growing and sets oom. */
struct idlist {
    int64_t *v;
    size_t n, cap;
    int oom;
};

static void idlist_add(struct idlist *l, int64_t id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        int64_t *v = realloc(l->v, cap * sizeof(*v));
        if (!v) {
            l->oom = 1;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = id;
}

void strig_heartbeat(struct plane *p, int64_t agent_id, json_t *held, json_t *cancel)
{
    size_t nheld = 0;
    int64_t cutoff = plane_now_ms() - p->cfg.heartbeat_interval_ms;
    int64_t *hv = sorted_ids(held, &nheld);
    struct idlist mine = {0}, gone = {0};
    if (!hv) {
        log_error("sched: out of memory reconciling the triggers of agent %" PRId64, agent_id);
        return;
    }
    int began = sq_begin(p);
    sqlite3_stmt *st =
        sq(p, "SELECT id, assigned_ms FROM triggers WHERE agent_id = ?1", "i", agent_id);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (has_id(hv, nheld, id))
            idlist_add(&mine, id);
        else if (sq_col_int(st, 1, 0) <= cutoff)
            idlist_add(&gone, id); /* assigned, past the grace, not held */
    }
    if (st)
        sqlite3_reset(st);
    for (size_t i = 0; i < gone.n; i++) {
        log_info("sched: trigger %" PRId64 " not held by agent %" PRId64 ": handed out again",
                 gone.v[i], agent_id);
        sq_run(p, "UPDATE triggers SET agent_id = NULL, assigned_ms = NULL WHERE id = ?1", "i",
               gone.v[i]);
    }
    sq_commit(p, began);
    if (gone.n > 0)
        plane_wake(p, PLANE_WAIT_TRIGGER);
    /* Held but not (or no longer) this agent's: the agent drops them. */
    if (!mine.oom) {
        if (mine.n > 1)
            qsort(mine.v, mine.n, sizeof(*mine.v), cmp_i64);
        for (size_t i = 0; i < nheld; i++)
            if ((i == 0 || hv[i] != hv[i - 1]) && !has_id(mine.v, mine.n, hv[i]))
                json_array_append_new(cancel, json_integer(hv[i]));
    }
    if (mine.oom || gone.oom)
        log_error("sched: out of memory reconciling the triggers of agent %" PRId64, agent_id);
    free(hv);
    free(mine.v);
    free(gone.v);
}

/* Triggers of ids (borrowed array) that agent holds go back to the queue. */
static void release(struct plane *p, int64_t agent, json_t *ids)
{
    size_t i, n = 0;
    json_t *x;
    int began = sq_begin(p);
    json_array_foreach(ids, i, x)
    {
        if (!json_is_integer(x))
            continue;
        sq_run(p,
               "UPDATE triggers SET agent_id = NULL, assigned_ms = NULL WHERE id = ?1 AND"
               " agent_id = ?2",
               "ii", json_integer_value(x), agent);
        n += (size_t)sqlite3_changes(p->db);
    }
    sq_commit(p, began);
    if (n > 0) {
        log_info("sched: agent %" PRId64 " handed %zu triggers back", agent, n);
        plane_wake(p, PLANE_WAIT_TRIGGER);
    }
}

void sched_h_trigger_poll(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    int64_t cap;
    double wait;
    if (rq->body && !json_is_object(rq->body)) {
        plane_error(rs, 400, "bad_request", "body: expected object");
        return;
    }
    json_t *held = rq->body ? json_object_get(rq->body, "held") : NULL;
    if (held && !json_is_array(held)) {
        plane_error(rs, 400, "bad_request", "held: expected array of trigger ids");
        return;
    }
    if (rq_int(rs, rq->body, "capacity", 0, 1000000, 1000, 0, &cap) < 0 ||
        rq_num(rs, rq->body, "wait", 0, 1e9, 0, &wait) < 0)
        return;
    json_t *rel = rq->body ? json_object_get(rq->body, "release") : NULL;
    if (rel && (!json_is_array(rel) || json_array_size(rel) > DECODE_TRIGGERS_MAX)) {
        plane_error(rs, 400, "bad_request", "release: expected array of trigger ids");
        return;
    }
    if (cap > POLL_MAX_TRIGGERS)
        cap = POLL_MAX_TRIGGERS;
    int64_t wait_ms = (int64_t)(wait * 1000.0);
    if (wait_ms > p->cfg.longpoll_max_ms)
        wait_ms = p->cfg.longpoll_max_ms;
    json_t *arr = json_array();
    int authfail = 0;
    pthread_mutex_lock(&p->mu);
    if (json_array_size(rel) > 0)
        release(p, rq->who.agent_id, rel);
    if (cap > 0 && !atomic_load(&p->stopping)) {
        int allowed = agents_work_allowed(p, rq->who.agent_id, rq->who.session);
        if (allowed < 0) {
            authfail = 1;
        } else if ((!allowed || hand_out(p, rq->who.agent_id, cap, arr) == 0) &&
                   plane_park(p, rq, PLANE_WAIT_TRIGGER, wait_ms) == 0) {
            /* Nothing yet: parked until a trigger needs a triggerer, the agent
             * may take work again, or the wait is over. */
            pthread_mutex_unlock(&p->mu);
            json_decref(arr);
            return;
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (authfail) {
        json_decref(arr);
        plane_error(rs, 401, "unauthorized", "unauthorized");
        return;
    }
    plane_reply(rs, 200, json_pack("{so}", "triggers", arr));
}

/* A trigger's event for ti (deferred): a declared sensor without a command
 * succeeds; anything else is queued again, same try, with the payload (pj)
 * and the deferral's resume_with (NULL: none). */
static void fire(struct plane *p, int64_t ti, const char *pj, const char *resume_with, int64_t now)
{
    const struct dag_task *t = strig_task_of(p, ti);
    if (t && t->trigger && !t->has_command && !t->shell) {
        sq_run(p,
               "UPDATE task_instances SET state = 'success', ended_ms = ?2, trigger_event = ?3,"
               " due_ms = NULL, agent_id = NULL WHERE id = ?1 AND state = 'deferred'",
               "iit", ti, now, pj);
        if (sqlite3_changes(p->db) > 0)
            sched_mark_run(p, sq_int(p, 0, "SELECT run FROM task_instances WHERE id = ?1", "i", ti),
                           SDIRTY_EVAL);
        return;
    }
    sq_run(p,
           "UPDATE task_instances SET state = 'queued', queued_ms = ?2, agent_id = NULL,"
           " trigger_event = ?3, resume_with = ?4, report_state = NULL, due_ms = NULL"
           " WHERE id = ?1 AND state = 'deferred'",
           "iitt", ti, now, pj, resume_with);
    if (sqlite3_changes(p->db) > 0)
        sched_wake_work(p);
}

/* Applies one event of the triggerer agent to trigger id: 200 applied, 404
 * no such trigger (fired already, timed out, or its task moved on), 409 held
 * by another agent. pj: the payload as JSON text. */
static int apply_event(struct plane *p, int64_t agent, int64_t id, const char *pj, int timed,
                       const char *err)
{
    sqlite3_stmt *st = sq(p, "SELECT ti, agent_id, spec FROM triggers WHERE id = ?1", "i", id);
    int64_t ti = 0, holder = -1;
    int skip = 0;
    char rw[256] = "";
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        ti = sqlite3_column_int64(st, 0);
        holder = sq_col_int(st, 1, -1);
        skip = spec_skips(sq_text(st, 2));
        spec_resume_with(sq_text(st, 2), rw, sizeof(rw));
    }
    if (st)
        sqlite3_reset(st);
    if (!ti)
        return 404;
    if (holder != agent)
        return 409;
    int64_t now = plane_now_ms();
    sq_run(p, "DELETE FROM triggers WHERE id = ?1", "i", id);
    if (err) {
        char why[600];
        snprintf(why, sizeof(why), "trigger: %s", err);
        log_info("sched: trigger %" PRId64 " of task instance %" PRId64 " failed: %s", id, ti, err);
        if (sq_int(p, 0, "SELECT state = 'deferred' FROM task_instances WHERE id = ?1", "i", ti))
            sched_ti_fail(p, ti, why, 0, now);
    } else if (timed) {
        log_info("sched: trigger %" PRId64 " of task instance %" PRId64
                 " timed out on its triggerer",
                 id, ti);
        timed_out(p, ti, skip, now);
    } else {
        fire(p, ti, pj, rw[0] ? rw : NULL, now);
    }
    return 200;
}

/* One event object: trigger_id (positive), payload (object), timed_out (bool),
 * error (string: the trigger cannot run; *err borrowed from ev). */
static const char *event_decode(json_t *ev, int64_t *id, char **pj, int *timed, const char **err)
{
    json_t *je = json_object_get(ev, "error");
    json_t *tid = json_object_get(ev, "trigger_id"), *pl = json_object_get(ev, "payload");
    json_t *tmo = json_object_get(ev, "timed_out");
    const char *k;
    json_t *v;
    *pj = NULL;
    if (!json_is_object(ev))
        return "expected object";
    json_object_foreach(ev, k, v)
    {
        if (strcmp(k, "trigger_id") && strcmp(k, "payload") && strcmp(k, "timed_out") &&
            strcmp(k, "error"))
            return "unknown field";
    }
    if (!json_is_integer(tid) || json_integer_value(tid) <= 0)
        return "trigger_id: expected positive integer";
    if (pl && !json_is_null(pl) && !json_is_object(pl))
        return "payload: expected object";
    if (tmo && !json_is_boolean(tmo))
        return "timed_out: expected boolean";
    if (je && (!json_is_string(je) || json_string_length(je) == 0 || json_string_length(je) > 512))
        return "error: expected a message of 1..512 bytes";
    *err = json_string_value(je);
    *id = json_integer_value(tid);
    *timed = json_is_true(tmo);
    *pj = json_is_object(pl) ? json_dumps(pl, JSON_COMPACT) : strdup("{}");
    return *pj ? NULL : "out of memory";
}

void sched_h_trigger_events(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    json_t *evs = rq->body ? json_object_get(rq->body, "events") : NULL;
    size_t n = json_array_size(evs), i;
    if (!json_is_array(evs) || n > STRIG_EVENTS_MAX) {
        plane_error(rs, 400, "bad_request", "events: expected array of up to %d events",
                    STRIG_EVENTS_MAX);
        return;
    }
    int64_t *ids = calloc(n + 1, sizeof(*ids));
    char **pjs = calloc(n + 1, sizeof(*pjs));
    int *timed = calloc(n + 1, sizeof(*timed));
    const char **errs = calloc(n + 1, sizeof(*errs));
    json_t *out = json_array();
    const char *bad = !ids || !pjs || !timed || !errs || !out ? "out of memory" : NULL;
    for (i = 0; i < n && !bad; i++)
        if ((bad = event_decode(json_array_get(evs, i), &ids[i], &pjs[i], &timed[i], &errs[i])))
            break;
    if (!bad) {
        pthread_mutex_lock(&p->mu);
        int began = sq_begin(p);
        for (i = 0; i < n; i++) {
            int code = apply_event(p, rq->who.agent_id, ids[i], pjs[i], timed[i], errs[i]);
            json_array_append_new(out,
                                  json_pack("{sI ss}", "trigger_id", (json_int_t)ids[i], "result",
                                            code == 200   ? "applied"
                                            : code == 404 ? "gone"
                                                          : "not_held"));
        }
        int lost = sq_commit(p, began) != 0;
        pthread_mutex_unlock(&p->mu);
        rs->committed = 1;
        if (lost)
            plane_store_failed(rs);
        else
            plane_reply(rs, 200, json_pack("{sO}", "results", out));
    } else {
        plane_error(rs, 400, "bad_request", "events[%zu]: %s", i, bad);
    }
    for (i = 0; i < n && pjs; i++)
        free(pjs[i]);
    json_decref(out);
    free(ids);
    free(pjs);
    free(timed);
    free(errs);
}

void sched_h_trigger_event(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    int64_t id;
    json_t *payload = NULL;
    if (rq_id(rq, rs, 0, &id) < 0)
        return;
    if (rq->body && !json_is_object(rq->body)) {
        plane_error(rs, 400, "bad_request", "body: expected object");
        return;
    }
    if (rq_obj(rs, rq->body, "payload", &payload) < 0)
        return;
    json_t *tmo = rq->body ? json_object_get(rq->body, "timed_out") : NULL;
    if (tmo && !json_is_boolean(tmo)) {
        plane_error(rs, 400, "bad_request", "timed_out: expected boolean");
        return;
    }
    char *pj = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    pthread_mutex_lock(&p->mu);
    int began = sq_begin(p);
    int code = apply_event(p, rq->who.agent_id, id, pj ? pj : "{}", json_is_true(tmo), NULL);
    sq_commit(p, began);
    pthread_mutex_unlock(&p->mu);
    free(pj);
    if (code == 404)
        plane_error(rs, 404, "not_found", "no such trigger");
    else if (code == 409)
        plane_error(rs, 409, "conflict", "the trigger is not held by this agent");
    else
        plane_reply(rs, 200, json_object());
}

/* What an external_run trigger asks: a run's state and its task instances' states. */
void sched_h_run_status(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    pthread_mutex_lock(&p->mu);
    sqlite3_stmt *st = sq(p, "SELECT id, state FROM dag_runs WHERE dag_id = ?1 AND run_id = ?2",
                          "tt", rq->param[0], rq->param[1]);
    int64_t run = 0;
    json_t *out = NULL;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        run = sqlite3_column_int64(st, 0);
        out = json_pack("{ss ss ss}", "dag_id", rq->param[0], "run_id", rq->param[1], "state",
                        sq_text(st, 1));
    }
    if (st)
        sqlite3_reset(st);
    json_t *tis = json_array();
    st = run ? sq(p,
                  "SELECT task_id, map_index, state FROM task_instances WHERE run = ?1"
                  " ORDER BY task_id, map_index",
                  "i", run)
             : NULL;
    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(tis, json_pack("{ss sI ss}", "task_id", sq_text(st, 0), "map_index",
                                             (json_int_t)sqlite3_column_int64(st, 1), "state",
                                             sq_text(st, 2)));
    if (st)
        sqlite3_reset(st);
    pthread_mutex_unlock(&p->mu);
    if (!out) {
        json_decref(tis);
        plane_error(rs, 404, "not_found", "no such dag run");
        return;
    }
    json_object_set_new(out, "task_instances", tis);
    plane_reply(rs, 200, out);
}

/*
 * GET /api/v1/queues/depth?queues=a,b: how many task instances wait on each
 * named queue (state queued), for an agent's autoscaling metrics. At most
 * QUEUE_DEPTH_MAX names of at most 128 bytes each; any session may ask.
 */
#define QUEUE_DEPTH_MAX 64

void sched_h_queue_depth(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    const char *q = plane_req_query(rq, "queues");
    char list[QUEUE_DEPTH_MAX * 130];
    if (!q || !*q || strlen(q) >= sizeof(list)) {
        plane_error(rs, 400, "bad_request", "queues: expected 1 to %d queue names, comma-separated",
                    QUEUE_DEPTH_MAX);
        return;
    }
    snprintf(list, sizeof(list), "%s", q);
    const char *names[QUEUE_DEPTH_MAX];
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == QUEUE_DEPTH_MAX || strlen(t) > 128) {
            plane_error(rs, 400, "bad_request",
                        "queues: expected 1 to %d names of at most 128 bytes", QUEUE_DEPTH_MAX);
            return;
        }
        names[n++] = t;
    }
    if (n == 0) {
        plane_error(rs, 400, "bad_request", "queues: expected at least one name");
        return;
    }
    json_t *arr = json_array();
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < n; i++) {
        int64_t c = sq_int(
            p, 0, "SELECT count(*) FROM task_instances WHERE state = 'queued' AND queue = ?1", "t",
            names[i]);
        json_array_append_new(arr, json_pack("{ss sI}", "name", names[i], "queued", (json_int_t)c));
    }
    pthread_mutex_unlock(&p->mu);
    plane_reply(rs, 200, json_pack("{so}", "queues", arr));
}
