/*
 * Named pools (Airflow's): a pool has slots that every task instance in it
 * takes pool_slots of while offered or running, across DAGs, runs and
 * agents (enforced by pick() in sched_dispatch.c). default_pool exists from
 * the start, unbounded (SCHED_POOL_UNBOUNDED slots: the agents' slots are the
 * only limit until an operator resizes it), and holds the tasks that name no
 * pool; a task naming
 * a pool that does not exist waits until it is created. Admin routes: list
 * with occupancy, set (create or resize), delete.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "remex/dag.h"
#include "remex/log.h"
#include "sched.h"

#define POOL_SLOTS_MAX SCHED_POOL_UNBOUNDED
#define POOL_DESC_MAX  1024
#define POOL_NAME_MAX  250

/* Appends one {name, slots, description, occupied, queued, open} per pool
 * (mu held). */
static json_t *pools_json(struct plane *p)
{
    json_t *arr = json_array();
    sqlite3_stmt *st = sq(p,
                          /* Each sum walks a partial index (ti_active, ti_queue): the cost
                           * follows the work in flight and queued, not the history. */
                          "SELECT p.name, p.slots, p.description,"
                          " COALESCE((SELECT SUM(t.pool_slots) FROM task_instances t"
                          "  WHERE t.state IN ('offered', 'running') AND t.pool = p.name), 0),"
                          " COALESCE((SELECT SUM(t.pool_slots) FROM task_instances t"
                          "  WHERE t.state = 'queued' AND t.pool = p.name), 0)"
                          " FROM pools p ORDER BY p.name",
                          "");
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        int64_t slots = sqlite3_column_int64(st, 1), occ = sqlite3_column_int64(st, 3);
        json_array_append_new(arr, json_pack("{ss sI ss sI sI sI}", "name", sq_text(st, 0), "slots",
                                             (json_int_t)slots, "description", sq_text(st, 2),
                                             "occupied", (json_int_t)occ, "queued",
                                             (json_int_t)sqlite3_column_int64(st, 4), "open",
                                             (json_int_t)(slots > occ ? slots - occ : 0)));
    }
    if (st)
        sqlite3_reset(st);
    return arr;
}

void sched_h_pools_list(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    (void)rq;
    pthread_mutex_lock(&p->mu);
    json_t *arr = pools_json(p);
    pthread_mutex_unlock(&p->mu);
    plane_reply(rs, 200, json_pack("{so}", "pools", arr));
}

static int pool_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > POOL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return 0;
    return 1;
}

/* PUT /admin/pools/{pool} {slots, description?}: creates or resizes a pool;
 * task instances waiting for room are offered at once when it grew. */
void sched_h_pool_put(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    int64_t slots = 0;
    const char *desc = NULL;
    if (!pool_name_ok(rq->param[0])) {
        plane_error(rs, 400, "bad_request", "pool: expected name matching [A-Za-z0-9_.-]{1,250}");
        return;
    }
    if (!rq->body) {
        plane_error(rs, 400, "bad_request", "body: missing");
        return;
    }
    if (rq_int(rs, rq->body, "slots", 0, POOL_SLOTS_MAX, 0, 1, &slots) < 0 ||
        rq_str(rs, rq->body, "description", 0, POOL_DESC_MAX, &desc) < 0)
        return;
    pthread_mutex_lock(&p->mu);
    int began = sq_begin(p);
    sq_run(p,
           "INSERT INTO pools (name, slots, description, updated_ms) VALUES (?1, ?2, ?3, ?4)"
           " ON CONFLICT (name) DO UPDATE SET slots = ?2, description = COALESCE(?5,"
           " description), updated_ms = ?4",
           "titit", rq->param[0], slots, desc ? desc : "", plane_now_ms(), desc);
    int failed = sq_commit(p, began);
    json_t *out = NULL;
    if (!failed) {
        json_t *all = pools_json(p);
        size_t i;
        json_t *x;
        json_array_foreach(all, i, x)
        {
            if (!out && strcmp(json_string_value(json_object_get(x, "name")), rq->param[0]) == 0)
                out = json_incref(x);
        }
        json_decref(all);
        sched_wake_work(p);
    }
    pthread_mutex_unlock(&p->mu);
    if (failed || !out) {
        json_decref(out);
        plane_store_failed(rs);
        return;
    }
    log_info("sched: pool %s set to %" PRId64 " slots", rq->param[0], slots);
    plane_reply(rs, 200, out);
}

/* DELETE /admin/pools/{pool}: default_pool cannot go (409); task instances of
 * a deleted pool wait until it exists again. */
void sched_h_pool_delete(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    if (strcmp(rq->param[0], DAG_DEFAULT_POOL) == 0) {
        plane_error(rs, 409, "conflict", "default_pool cannot be deleted (resize it instead)");
        return;
    }
    pthread_mutex_lock(&p->mu);
    int64_t found = sq_int(p, 0, "SELECT count(*) FROM pools WHERE name = ?1", "t", rq->param[0]);
    int failed = 0;
    if (found) {
        int began = sq_begin(p);
        sq_run(p, "DELETE FROM pools WHERE name = ?1", "t", rq->param[0]);
        failed = sq_commit(p, began);
    }
    pthread_mutex_unlock(&p->mu);
    if (!found) {
        plane_error(rs, 404, "not_found", "no such pool");
        return;
    }
    if (failed) {
        plane_store_failed(rs);
        return;
    }
    plane_reply(rs, 200, json_pack("{ss sb}", "name", rq->param[0], "deleted", 1));
}

/* remex_plane_pool_slots{pool,state}: total, occupied, queued and open slots
 * of every pool (mu held). Pool names are [A-Za-z0-9_.-]: safe as labels. */
void sched_pool_metrics(struct plane *p, struct buf *out)
{
    json_t *arr = pools_json(p);
    size_t i;
    json_t *x;
    static const char *const keys[][2] = {
        {"slots", "total"}, {"occupied", "occupied"}, {"queued", "queued"}, {"open", "open"}};
    buf_puts(out, "# HELP remex_plane_pool_slots Slots of each pool by state.\n"
                  "# TYPE remex_plane_pool_slots gauge\n");
    json_array_foreach(arr, i, x)
    {
        const char *name = json_string_value(json_object_get(x, "name"));
        if (!name || !pool_name_ok(name))
            continue;
        for (size_t k = 0; k < 4; k++)
            buf_printf(
                out, "remex_plane_pool_slots{pool=\"%s\",state=\"%s\"} %" JSON_INTEGER_FORMAT "\n",
                name, keys[k][1], json_integer_value(json_object_get(x, keys[k][0])));
    }
    json_decref(arr);
}
