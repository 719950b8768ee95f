/*
 * Deferral: triggers handed to triggerers by a capacity-aware long poll,
 * trigger events that resume the deferred task instance, trigger timeouts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "remex/log.h"
#include "sched.h"

#define POLL_MAX_TRIGGERS 1000

int64_t strig_due(struct plane *p, int64_t now)
{
    int64_t ids[64], tis[64];
    int n = 0;
    sqlite3_stmt *st = sq(p,
                          "SELECT id, ti FROM triggers WHERE timeout_ms <= ?1 ORDER BY timeout_ms"
                          " LIMIT 64",
                          "i", now);
    while (st && n < 64 && sqlite3_step(st) == SQLITE_ROW) {
        ids[n] = sqlite3_column_int64(st, 0);
        tis[n] = sqlite3_column_int64(st, 1);
        n++;
    }
    if (st)
        sqlite3_reset(st);
    for (int i = 0; i < n; i++) {
        log_info("sched: trigger %" PRId64 " of task instance %" PRId64 " timed out", ids[i],
                 tis[i]);
        sq_run(p, "DELETE FROM triggers WHERE id = ?1", "i", ids[i]);
        if (sq_int(p, 0, "SELECT state = 'deferred' FROM task_instances WHERE id = ?1", "i",
                   tis[i]))
            sched_ti_fail(p, tis[i], "trigger timeout", 1, now);
    }
    if (n == 64)
        return now;
    return sq_int(p, INT64_MAX, "SELECT min(timeout_ms) FROM triggers WHERE timeout_ms IS NOT NULL",
                  "");
}

void strig_release_agent(struct plane *p, int64_t agent_id)
{
    sq_run(p, "UPDATE triggers SET agent_id = NULL, assigned_ms = NULL WHERE agent_id = ?1", "i",
           agent_id);
    if (sqlite3_changes(p->db) > 0)
        plane_wake(p, PLANE_WAIT_TRIGGER);
}

/* Hands up to cap unassigned triggers to agent; appends them to arr. */
static int hand_out(struct plane *p, int64_t agent, int64_t cap, json_t *arr)
{
    int64_t ids[POLL_MAX_TRIGGERS];
    int n = 0;
    sqlite3_stmt *st = sq(p,
                          "SELECT id, ti, spec, timeout_ms FROM triggers WHERE agent_id IS NULL"
                          " ORDER BY id LIMIT ?1",
                          "i", cap);
    while (st && n < POLL_MAX_TRIGGERS && sqlite3_step(st) == SQLITE_ROW) {
        ids[n++] = sqlite3_column_int64(st, 0);
        json_array_append_new(
            arr, json_pack("{sI sI so so}", "trigger_id", (json_int_t)sqlite3_column_int64(st, 0),
                           "ti_id", (json_int_t)sqlite3_column_int64(st, 1), "spec",
                           sched_col_json(st, 2), "timeout_at", sched_col_time(st, 3)));
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
    if (cap > POLL_MAX_TRIGGERS)
        cap = POLL_MAX_TRIGGERS;
    int64_t wait_ms = (int64_t)(wait * 1000.0);
    if (wait_ms > p->cfg.longpoll_max_ms)
        wait_ms = p->cfg.longpoll_max_ms;
    json_t *arr = json_array();
    int authfail = 0;
    pthread_mutex_lock(&p->mu);
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
    char *pj = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    pthread_mutex_lock(&p->mu);
    sqlite3_stmt *st = sq(p, "SELECT ti, agent_id FROM triggers WHERE id = ?1", "i", id);
    int64_t ti = 0, agent = -1;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        ti = sqlite3_column_int64(st, 0);
        agent = sq_col_int(st, 1, -1);
    }
    if (st)
        sqlite3_reset(st);
    int code = 200;
    if (!ti) {
        code = 404;
    } else if (agent != rq->who.agent_id) {
        code = 409;
    } else {
        int began = sq_begin(p);
        sq_run(p, "DELETE FROM triggers WHERE id = ?1", "i", id);
        /* Resume: same try, the payload goes with the next assignment. */
        sq_run(p,
               "UPDATE task_instances SET state = 'queued', queued_ms = ?2, agent_id = NULL,"
               " trigger_event = ?3, report_state = NULL, due_ms = NULL WHERE id = ?1 AND"
               " state = 'deferred'",
               "iit", ti, plane_now_ms(), pj ? pj : "{}");
        if (sqlite3_changes(p->db) > 0)
            sched_wake_work(p);
        sq_commit(p, began);
    }
    pthread_mutex_unlock(&p->mu);
    free(pj);
    if (code == 404)
        plane_error(rs, 404, "not_found", "no such trigger");
    else if (code == 409)
        plane_error(rs, 409, "conflict", "the trigger is not held by this agent");
    else
        plane_reply(rs, 200, json_object());
}
