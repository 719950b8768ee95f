/*
 * Retention (Airflow's `db clean`): finished dag runs that ended before a
 * cutoff are deleted with everything that hangs off them (task instances,
 * their earlier tries, XCom references, triggers), so that the database
 * stops growing under a steady workload.
 *
 * Kept whatever their age: runs that are not finished (queued, running),
 * runs without an end time, and the latest scheduled run of each DAG (the
 * scheduler derives the next data interval from it; deleting it would
 * create old runs again).
 *
 * Bounded slices: one transaction deletes at most RET_SLICE_RUNS runs or
 * RET_SLICE_TIS task instances, so plane.mu is held for a few milliseconds
 * at a time; the admin route runs slices until RET_REQUEST_MS has passed and
 * answers "more": true when runs are left (remexctl calls it again), and the
 * automatic retention (plane.yaml retention.older_than) runs one slice per
 * scheduler pass at most every RET_AUTO_GAP_MS while runs are left, then
 * looks again after RET_AUTO_IDLE_MS. Each slice commits as any other
 * change (docs/plane.md): a crash keeps or loses a whole slice.
 */
#include <inttypes.h>
#include <string.h>

#include "remex/log.h"
#include "remex/timeutil.h"
#include "sched.h"

#define RET_SLICE_RUNS    32
#define RET_SLICE_TIS     2000
#define RET_REQUEST_MS    500
#define RET_AUTO_GAP_MS   50
#define RET_AUTO_IDLE_MS  60000
#define RET_OLDER_MAX_SEC (100LL * 366 * 86400)

/* Finished runs ended before ?1, the latest scheduled run of a DAG aside.
 * dag_runs_ended (migration 120) holds exactly the finished runs by end, so
 * a slice reads the oldest ones first and stops at its LIMIT; a scheduled
 * candidate is kept unless a later scheduled run exists (dag_runs_dag, from
 * its logical date on: usually the next entry). */
#define RET_ELIGIBLE                                                                               \
    " FROM dag_runs r INDEXED BY dag_runs_ended"                                                   \
    " WHERE r.state IN ('success', 'failed') AND r.ended_ms < ?1"                                  \
    " AND NOT (r.run_type = 'scheduled' AND NOT EXISTS (SELECT 1 FROM dag_runs x"                  \
    " WHERE x.dag_id = r.dag_id AND x.logical_date > r.logical_date"                               \
    " AND x.run_type = 'scheduled'))"

const char sret_migration_sql[] =
    "CREATE INDEX dag_runs_ended ON dag_runs (ended_ms) WHERE state IN ('success', 'failed');";

struct sret_count {
    int64_t runs, tis;
};

/* Deletes one run and what hangs off it; its task instances are added to c. */
static int sret_delete_run(struct plane *p, int64_t run, struct sret_count *c)
{
    static const char *const del[] = {
        "DELETE FROM triggers WHERE ti IN (SELECT id FROM task_instances WHERE run = ?1)",
        "DELETE FROM ti_tries WHERE ti IN (SELECT id FROM task_instances WHERE run = ?1)",
        "DELETE FROM xcom WHERE run = ?1",
        "DELETE FROM task_instances WHERE run = ?1",
        "DELETE FROM dag_runs WHERE id = ?1",
    };
    for (size_t i = 0; i < sizeof(del) / sizeof(del[0]); i++) {
        if (sq_run(p, del[i], "i", run) != SQLITE_DONE)
            return -1;
        if (i == 3)
            c->tis += sqlite3_changes(p->db);
    }
    c->runs++;
    return 0;
}

/* One slice (mu held): returns 1 when runs are left, 0 when none, -1 when
 * the commit failed (rolled back; nothing of the slice counted). */
static int sret_slice(struct plane *p, int64_t cutoff_ms, struct sret_count *total)
{
    int64_t ids[RET_SLICE_RUNS];
    int n = 0;
    sqlite3_stmt *st = sq(p, "SELECT r.id" RET_ELIGIBLE " ORDER BY r.ended_ms LIMIT ?2", "ii",
                          cutoff_ms, (int64_t)RET_SLICE_RUNS + 1);
    while (st && sqlite3_step(st) == SQLITE_ROW && n < RET_SLICE_RUNS)
        ids[n++] = sqlite3_column_int64(st, 0);
    int more = st && sqlite3_step(st) == SQLITE_ROW; /* the LIMIT's extra row */
    if (st)
        sqlite3_reset(st);
    if (n == 0)
        return 0;
    struct sret_count c = {0, 0};
    int began = sq_begin(p), failed = 0;
    for (int i = 0; i < n && !failed; i++) {
        if (c.tis >= RET_SLICE_TIS) {
            more = 1;
            break;
        }
        failed = sret_delete_run(p, ids[i], &c) < 0;
    }
    if (sq_commit(p, began) != 0 || failed)
        return -1;
    total->runs += c.runs;
    total->tis += c.tis;
    return more;
}

static void sret_dry_run(struct plane *p, int64_t cutoff_ms, struct sret_count *c)
{
    sqlite3_stmt *st = sq(p,
                          "SELECT count(*), COALESCE(sum((SELECT count(*) FROM task_instances t"
                          " WHERE t.run = r.id)), 0)" RET_ELIGIBLE,
                          "i", cutoff_ms);
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        c->runs = sqlite3_column_int64(st, 0);
        c->tis = sqlite3_column_int64(st, 1);
    }
    if (st)
        sqlite3_reset(st);
}

/* POST /api/v1/admin/db/clean {older_than: seconds, dry_run}. */
void sched_h_db_clean(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    int64_t older;
    json_t *dry = rq->body ? json_object_get(rq->body, "dry_run") : NULL;
    if (rq_int(rs, rq->body, "older_than", 0, RET_OLDER_MAX_SEC, 0, 1, &older) < 0)
        return;
    if (dry && !json_is_boolean(dry)) {
        plane_error(rs, 400, "bad_request", "dry_run: expected boolean");
        return;
    }
    int64_t cutoff = plane_now_ms() - older * 1000;
    struct sret_count c = {0, 0};
    int more = 0, failed = 0;
    uint64_t t0 = timeutil_mono_ns();
    if (json_is_true(dry)) {
        pthread_mutex_lock(&p->mu);
        sret_dry_run(p, cutoff, &c);
        pthread_mutex_unlock(&p->mu);
    } else {
        do {
            pthread_mutex_lock(&p->mu); /* released between slices */
            more = sret_slice(p, cutoff, &c);
            pthread_mutex_unlock(&p->mu);
        } while (more > 0 && timeutil_mono_ns() - t0 < (uint64_t)RET_REQUEST_MS * 1000000);
        failed = more < 0;
    }
    rs->committed = 1;
    if (failed) {
        plane_store_failed(rs);
        return;
    }
    if (c.runs > 0)
        log_info("sched: db clean deleted %" PRId64 " dag runs and %" PRId64
                 " task instances that ended before %" PRId64,
                 c.runs, c.tis, cutoff);
    plane_reply(rs, 200,
                json_pack("{so sb sI sI sb}", "cutoff", sched_time_json(cutoff), "dry_run",
                          json_is_true(dry), "dag_runs", (json_int_t)c.runs, "task_instances",
                          (json_int_t)c.tis, "more", more > 0));
}

int64_t sret_pass(struct plane *p, int64_t now)
{
    struct sched *s = SCHED(p);
    int64_t older = p->cfg.retention_ms;
    if (older <= 0)
        return INT64_MAX;
    if (now < s->retention_ms)
        return s->retention_ms;
    struct sret_count c = {0, 0};
    int more = sret_slice(p, now - older, &c);
    if (c.runs > 0)
        log_debug("sched: retention deleted %" PRId64 " dag runs, %" PRId64 " task instances",
                  c.runs, c.tis);
    s->retention_ms = now + (more > 0 ? RET_AUTO_GAP_MS : RET_AUTO_IDLE_MS);
    return s->retention_ms;
}
