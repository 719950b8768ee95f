/*
 * Dag runs: cron runs with Airflow data intervals and catchup, manual runs,
 * max_active_runs, dependency resolution with trigger rules, run completion,
 * failures and retries, and the admin run/task routes.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "remex/log.h"
#include "remex/timeutil.h"
#include "sched.h"

/* Catchup creates at most this many runs per DAG and pass (the pass repeats),
 * fewer when the pass reaches its time budget. */
#define RUNS_PER_PASS 500
/* Task instances written between two looks at the pass's time budget. */
#define SLICE_STEP 64

int64_t sruns_create(struct plane *p, struct sdag *d, const char *run_id, const char *run_type,
                     int64_t logical, int64_t di_start, int64_t di_end, const char *conf)
{
    sqlite3_stmt *st = sq(p,
                          "INSERT INTO dag_runs (dag_id, run_id, run_type, logical_date, di_start,"
                          " di_end, state, conf, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
                          " 'queued', ?7, ?8) ON CONFLICT (dag_id, run_id) DO NOTHING",
                          "tttiiiti", d->dag->dag_id, run_id, run_type, logical, di_start, di_end,
                          conf ? conf : "{}", plane_now_ms());
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        log_error("sched: create run %s/%s: %s", d->dag->dag_id, run_id, sqlite3_errmsg(p->db));
        return -1;
    }
    if (sqlite3_changes(p->db) == 0)
        return 0;
    SCHED(p)->runs_changed = 1;
    return sqlite3_last_insert_rowid(p->db);
}

/* Creates the scheduled runs that are due; returns the next creation time. */
static int64_t cron_runs_due(struct plane *p, struct sdag *d, int64_t now)
{
    const struct dag *g = d->dag;
    if (!g->schedule || !d->is_active || d->is_paused || g->start_date_ms == DAG_UNSET) {
        d->next_run_ms = INT64_MIN;
        return INT64_MAX;
    }
    if (!d->last_known) {
        d->last_start_ms = sq_int(p, INT64_MIN,
                                  "SELECT max(logical_date) FROM dag_runs WHERE dag_id = ?1"
                                  " AND run_type = 'scheduled'",
                                  "t", g->dag_id);
        d->last_known = 1;
    }
    for (int k = 0; k < RUNS_PER_PASS; k++) {
        if (k > 0 && sched_slice_over(SCHED(p)))
            break;
        struct cron_interval iv;
        int64_t last = d->last_start_ms == INT64_MIN ? CRON_UNBOUNDED : d->last_start_ms / 1000;
        int64_t end = g->end_date_ms == DAG_UNSET ? CRON_UNBOUNDED : g->end_date_ms / 1000;
        if (!cron_next_interval(&g->cron, g->start_date_ms / 1000, end, last, g->catchup,
                                now / 1000, &iv)) {
            d->next_run_ms = INT64_MIN;
            return INT64_MAX;
        }
        if (iv.end * 1000 > now) {
            d->next_run_ms = iv.end * 1000;
            return d->next_run_ms;
        }
        char ts[TIMEUTIL_RFC3339_MAX], run_id[64];
        timeutil_rfc3339_format(iv.start * 1000, 0, ts, sizeof(ts));
        snprintf(run_id, sizeof(run_id), "scheduled__%s", ts);
        if (sruns_create(p, d, run_id, "scheduled", iv.start * 1000, iv.start * 1000, iv.end * 1000,
                         "{}") < 0)
            return now + 1000;
        d->last_start_ms = iv.start * 1000;
    }
    return now; /* more to catch up: next pass at once */
}

static unsigned cron_flags(const struct sdag *d)
{
    return (d->is_active ? 1u : 0u) | (d->is_paused ? 2u : 0u) | (d->last_known ? 4u : 0u);
}

/* cron_runs_due, skipped while its last answer is in the future and the DAG's
 * flags are unchanged: a pass costs no cron arithmetic for a DAG not due. A
 * new DAG version is a new sdag (cron_due_ms 0). */
static int64_t cron_runs(struct plane *p, struct sdag *d, int64_t now)
{
    if (d->cron_due_ms > now && d->cron_flags == cron_flags(d))
        return d->cron_due_ms;
    int64_t t = cron_runs_due(p, d, now);
    d->cron_due_ms = t;
    d->cron_flags = cron_flags(d);
    return t;
}

void sruns_touch(struct plane *p, struct sdag *d)
{
    d->cron_due_ms = 0;
    d->timeout_due_ms = 0;
    sdheap_set(SCHED(p), d, INT64_MIN);
    plane_kick(p);
}

/*
 * Starts a queued run: one task instance per task, then evaluation; in
 * slices of the pass's time budget. Returns 1 when the run is running, 0
 * when the pass's budget ran out first (sched.start_run / start_next say
 * where the next pass goes on).
 *
 * Invariant: a run is 'queued' until every task of its DAG version has a
 * task instance; the slice that inserts the last ones sets it 'running' in
 * the same transaction. Until then its task instances are all in state
 * none: never offered (only run_eval queues, and it looks at running runs
 * only), not counted by max_active_runs, invisible to the workers. A crash
 * between slices leaves a queued run with part of its task instances;
 * after the restart it is started again from its first task (INSERT OR
 * IGNORE keeps those that exist), so a half-created run is never
 * dispatched and always completes.
 */
static int run_start(struct plane *p, struct sdag *d, int64_t run, int64_t now)
{
    struct sched *s = SCHED(p);
    const struct dag *g = d->dag;
    size_t i = 0;
    if (s->start_run == run && strcmp(s->start_hash, g->hash) == 0)
        i = s->start_next;
    for (size_t from = i; i < g->ntasks; i++) {
        if (i > from && (i - from) % SLICE_STEP == 0 && sched_slice_over(s)) {
            s->start_run = run;
            s->start_next = i;
            snprintf(s->start_hash, sizeof(s->start_hash), "%s", g->hash);
            return 0;
        }
        const struct dag_task *t = &g->tasks[i];
        sq_run(p,
               "INSERT OR IGNORE INTO task_instances (run, task_id, state, queue,"
               " priority_weight, pool_slots, pool) VALUES (?1, ?2, 'none', ?3, ?4, ?5, ?6)",
               "ittiit", run, t->task_id, t->queue ? t->queue : "default", t->priority_weight,
               t->pool_slots, t->pool ? t->pool : DAG_DEFAULT_POOL);
    }
    s->start_run = 0;
    sq_run(p, "UPDATE dag_runs SET state = 'running', started_ms = ?2 WHERE id = ?1", "ii", run,
           now);
    if (g->dagrun_timeout_ms != DAG_UNSET && d->timeout_due_ms != 0 &&
        now + g->dagrun_timeout_ms < d->timeout_due_ms) {
        d->timeout_due_ms = now + g->dagrun_timeout_ms;
        if (d->timeout_due_ms < d->heap_key || d->heap_pos == SIZE_MAX)
            sdheap_set(s, d, d->timeout_due_ms);
    }
    sched_mark_run(p, run, SDIRTY_EVAL);
    return 1;
}

/* The DAGs with queued runs (dag_runs_state's prefix: the cost follows the
 * queued runs, not the DAGs), paused ones aside; *n set. Owned array (NULL
 * when none, or out of memory: then the runs start on a later pass). */
static struct sdag **dags_with_queued_runs(struct plane *p, size_t *n)
{
    struct sdag **out = NULL;
    size_t cap = 0;
    *n = 0;
    sqlite3_stmt *st = sq(p, "SELECT DISTINCT dag_id FROM dag_runs WHERE state = 'queued'", "");
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        struct sdag *d = sdag_find(p, sq_text(st, 0));
        if (!d || d->is_paused)
            continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct sdag **o = realloc(out, nc * sizeof(*o));
            if (!o)
                break;
            out = o;
            cap = nc;
        }
        out[(*n)++] = d;
    }
    if (st)
        sqlite3_reset(st);
    return out;
}

/* Sets active_runs of the DAGs listed (with queued runs) to their running
 * runs: one scan of dag_runs_state's running prefix (covering, in dag_id
 * order), whatever the number of DAGs, instead of a count per DAG. */
static void count_active_runs(struct plane *p, struct sdag **dags, size_t n)
{
    for (size_t k = 0; k < n; k++)
        dags[k]->active_runs = 0;
    sqlite3_stmt *st = sq(p,
                          "SELECT dag_id, count(*) FROM dag_runs WHERE state = 'running'"
                          " GROUP BY dag_id",
                          "");
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        struct sdag *d = sdag_find(p, sq_text(st, 0));
        if (d)
            d->active_runs = sqlite3_column_int64(st, 1); /* read for listed DAGs only */
    }
    if (st)
        sqlite3_reset(st);
}

static void start_queued_runs(struct plane *p, int64_t now)
{
    size_t nd = 0;
    struct sdag **queued_dags = dags_with_queued_runs(p, &nd);
    if (nd > 0)
        count_active_runs(p, queued_dags, nd);
    for (size_t k = 0; k < nd; k++) {
        struct sdag *d = queued_dags[k];
        int64_t room = d->dag->max_active_runs - d->active_runs;
        if (room <= 0)
            continue;
        int64_t ids[64];
        int n = 0;
        sqlite3_stmt *st = sq(p,
                              "SELECT id FROM dag_runs WHERE state = 'queued' AND dag_id = ?1"
                              " ORDER BY logical_date, id LIMIT ?2",
                              "ti", d->dag->dag_id, room < 64 ? room : 64);
        while (st && n < 64 && sqlite3_step(st) == SQLITE_ROW)
            ids[n++] = sqlite3_column_int64(st, 0);
        if (st)
            sqlite3_reset(st);
        for (int i = 0; i < n; i++)
            if (!run_start(p, d, ids[i], now) || (i + 1 < n && sched_slice_over(SCHED(p)))) {
                SCHED(p)->runs_changed = 1; /* the next pass goes on */
                free(queued_dags);
                return;
            }
        if (k + 1 < nd && sched_slice_over(SCHED(p))) {
            SCHED(p)->runs_changed = 1;
            break;
        }
    }
    free(queued_dags);
}

/* none -> queued for a new try. */
static void ti_queue(struct plane *p, int64_t ti, int64_t now)
{
    sq_run(p,
           "UPDATE task_instances SET state = 'queued', try_number = try_number + 1,"
           " queued_ms = ?2, agent_id = NULL, trigger_event = NULL, resume_with = NULL, "
           "report_state = NULL,"
           " exit_code = NULL, signal = NULL, reason = NULL, started_ms = NULL, ended_ms = NULL,"
           " next_retry_ms = NULL, due_ms = NULL, cancel_ms = NULL, log_uri = NULL WHERE id = ?1",
           "ii", ti, now);
    SCHED(p)->queued_any = 1;
}

static void run_finish(struct plane *p, struct sdag *d, int64_t run, const int *st, int64_t now)
{
    const struct dag *g = d->dag;
    int failed = 0;
    for (size_t i = 0; i < g->ntasks; i++) {
        if (g->tasks[i].ndownstream != 0 || st[i] < 0)
            continue;
        if (st[i] == DAG_TI_FAILED || st[i] == DAG_TI_UPSTREAM_FAILED)
            failed = 1;
    }
    sq_run(p, "UPDATE dag_runs SET state = ?2, ended_ms = ?3 WHERE id = ?1", "iti", run,
           failed ? "failed" : "success", now);
    SCHED(p)->runs_changed = 1;
    log_info("sched: run %" PRId64 " of %s %s", run, g->dag_id, failed ? "failed" : "succeeded");
}

/*
 * Loads the run's task instance states into st and ids (per task index) and
 * brings the run in line with the DAG's current version, as Airflow's
 * verify_integrity does: a task without a task instance (added to the DAG
 * since the run started) gets one, in state none; a task instance of a task
 * no longer in the DAG that has not started (none, scheduled, queued,
 * offered, up_for_retry) or cannot resume without its definition (deferred)
 * becomes removed; a removed one whose task is back becomes none again. A
 * running try of a removed task runs on: *orphans counts them, and the run
 * waits for them. Returns 0, 1 when more task instances are left to bring in
 * line (the run is marked again and must not be evaluated yet), -1 on error.
 */
static int load_tis(struct plane *p, struct sdag *d, int64_t run, int *st, int64_t *ids,
                    int *orphans, int64_t now)
{
    const struct dag *g = d->dag;
    for (size_t i = 0; i < g->ntasks; i++)
        st[i] = -1;
    *orphans = 0;
    sqlite3_stmt *q =
        sq(p, "SELECT id, task_id, state FROM task_instances WHERE run = ?1", "i", run);
    if (!q)
        return -1;
    int64_t removed[64], restored[64];
    int nrem = 0, nres = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        long k = sdag_task_index(d, sq_text(q, 1));
        enum dag_ti_state s = sched_col_state(q, 2);
        if (k < 0) {
            if (s == DAG_TI_RUNNING)
                (*orphans)++;
            else if (!dag_state_is_terminal(s) && nrem < 64)
                removed[nrem++] = sqlite3_column_int64(q, 0);
            continue;
        }
        if (s == DAG_TI_REMOVED && nres < 64) {
            restored[nres++] = sqlite3_column_int64(q, 0);
            s = DAG_TI_NONE;
        }
        st[k] = (int)s;
        ids[k] = sqlite3_column_int64(q, 0);
    }
    sqlite3_reset(q);
    for (int i = 0; i < nrem; i++) {
        sq_run(p, "DELETE FROM triggers WHERE ti = ?1", "i", removed[i]);
        sq_run(p,
               "UPDATE task_instances SET state = 'removed', ended_ms = ?2, due_ms = NULL,"
               " agent_id = NULL, offer_expires_ms = NULL, next_retry_ms = NULL WHERE id = ?1",
               "ii", removed[i], now);
    }
    for (int i = 0; i < nres; i++)
        sq_run(p,
               "UPDATE task_instances SET state = 'none', ended_ms = NULL, reason = NULL"
               " WHERE id = ?1",
               "i", restored[i]);
    size_t added = 0;
    for (size_t i = 0; i < g->ntasks; i++) {
        const struct dag_task *t = &g->tasks[i];
        if (st[i] >= 0)
            continue;
        if (added > 0 && added % SLICE_STEP == 0 && sched_slice_over(SCHED(p))) {
            log_info("sched: run %" PRId64 " of %s: %zu tasks added by a new DAG version, more"
                     " in the next pass",
                     run, g->dag_id, added);
            sched_mark_run(p, run, SDIRTY_EVAL);
            return 1;
        }
        added++;
        if (sq_run(p,
                   "INSERT INTO task_instances (run, task_id, state, queue, priority_weight,"
                   " pool_slots, pool) VALUES (?1, ?2, 'none', ?3, ?4, ?5, ?6)",
                   "ittiit", run, t->task_id, t->queue ? t->queue : "default", t->priority_weight,
                   t->pool_slots, t->pool ? t->pool : DAG_DEFAULT_POOL) != SQLITE_DONE)
            return -1;
        ids[i] = sqlite3_last_insert_rowid(p->db);
        st[i] = DAG_TI_NONE;
    }
    if (added > 0)
        log_info("sched: run %" PRId64 " of %s: %zu tasks added by a new DAG version", run,
                 g->dag_id, added);
    if (nrem == 64 || nres == 64) {
        sched_mark_run(p, run, SDIRTY_EVAL); /* more to bring in line first */
        return 1;
    }
    return 0;
}

static void run_eval(struct plane *p, int64_t run, int kind, int64_t now)
{
    char dag_id[DAG_ID_MAX + 1];
    sqlite3_stmt *q = sq(p, "SELECT dag_id, state FROM dag_runs WHERE id = ?1", "i", run);
    if (!q)
        return;
    int ok = sqlite3_step(q) == SQLITE_ROW && strcmp(sq_text(q, 1), "running") == 0;
    snprintf(dag_id, sizeof(dag_id), "%s", ok ? sq_text(q, 0) : "");
    sqlite3_reset(q);
    struct sdag *d = ok ? sdag_find(p, dag_id) : NULL;
    if (!d || d->is_paused)
        return;
    if (kind == SDIRTY_DONE && sched_run_pending(p, run))
        return;
    const struct dag *g = d->dag;
    int *st = malloc((g->ntasks + 1) * sizeof(int));
    int64_t *ids = malloc((g->ntasks + 1) * sizeof(int64_t));
    int orphans = 0;
    if (!st || !ids || load_tis(p, d, run, st, ids, &orphans, now) != 0)
        goto out;
    /* Cut at the pass's time budget: what was decided stays (each change
     * is final on its own), the run is marked again and the rest waits for
     * the next pass; no completion is decided from a partial look. */
    int all_done = !orphans, active = orphans, changes = 0;
    for (size_t k = 0; k < g->ntasks; k++) {
        if (changes >= SLICE_STEP) {
            changes = 0;
            if (sched_slice_over(SCHED(p))) {
                sched_mark_run(p, run, SDIRTY_EVAL);
                goto out;
            }
        }
        size_t i = g->topo[k];
        const struct dag_task *t = &g->tasks[i];
        if (st[i] == DAG_TI_NONE) {
            struct dag_upstream_counts c = {0};
            c.total = (unsigned)t->upstream.n;
            for (size_t u = 0; u < t->upstream.n; u++) {
                int s = st[t->upstream_idx[u]];
                if (s == DAG_TI_SUCCESS)
                    c.success++;
                else if (s == DAG_TI_FAILED)
                    c.failed++;
                else if (s == DAG_TI_UPSTREAM_FAILED)
                    c.upstream_failed++;
                else if (s == DAG_TI_SKIPPED)
                    c.skipped++;
                else if (s == DAG_TI_REMOVED || s < 0)
                    c.removed++;
                if (s < 0 || dag_state_is_terminal((enum dag_ti_state)s))
                    c.done++;
            }
            switch (dag_rule_eval(t->trigger_rule, &c)) {
            case DAG_RULE_RUN:
                changes++;
                ti_queue(p, ids[i], now);
                st[i] = strig_declared(p, ids[i], t, now) ? DAG_TI_DEFERRED : DAG_TI_QUEUED;
                break;
            case DAG_RULE_SKIP:
            case DAG_RULE_UPSTREAM_FAILED: {
                int skip = dag_rule_eval(t->trigger_rule, &c) == DAG_RULE_SKIP;
                changes++;
                st[i] = skip ? DAG_TI_SKIPPED : DAG_TI_UPSTREAM_FAILED;
                sq_run(p, "UPDATE task_instances SET state = ?2, ended_ms = ?3 WHERE id = ?1",
                       "iti", ids[i], skip ? "skipped" : "upstream_failed", now);
                break;
            }
            default:
                break;
            }
        }
        if (st[i] >= 0 && !dag_state_is_terminal((enum dag_ti_state)st[i])) {
            all_done = 0;
            active += st[i] != DAG_TI_NONE;
        }
    }
    if (all_done) {
        run_finish(p, d, run, st, now);
    } else if (!active) {
        /* Waiting tasks whose rules can no longer be met: Airflow's deadlock. */
        for (size_t i = 0; i < g->ntasks; i++)
            if (st[i] == DAG_TI_NONE) {
                st[i] = DAG_TI_UPSTREAM_FAILED;
                sq_run(p,
                       "UPDATE task_instances SET state = 'upstream_failed', ended_ms = ?2,"
                       " reason = 'dependencies can never be met' WHERE id = ?1",
                       "ii", ids[i], now);
            }
        run_finish(p, d, run, st, now);
    }
out:
    free(st);
    free(ids);
}

static int cmp_dirty(const void *a, const void *b)
{
    const struct sdirty *x = a, *y = b;
    return x->run < y->run ? -1 : x->run > y->run;
}

/* Fails running runs past the DAG's dagrun_timeout (unfinished TIs are
 * skipped, as Airflow does); returns the next such deadline. */
static int64_t run_timeouts(struct plane *p, struct sdag *d, int64_t now)
{
    int64_t t = d->dag->dagrun_timeout_ms, ids[64], next = INT64_MAX;
    int n = 0;
    if (t == DAG_UNSET)
        return INT64_MAX;
    if (d->timeout_due_ms > now)
        return d->timeout_due_ms; /* a run starting lowers it (run_start) */
    sqlite3_stmt *st = sq(p,
                          "SELECT id, started_ms FROM dag_runs WHERE state = 'running' AND"
                          " dag_id = ?1 ORDER BY started_ms LIMIT 64",
                          "t", d->dag->dag_id);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        int64_t deadline = sq_col_int(st, 1, now) + t;
        if (deadline > now) {
            next = deadline;
            break;
        }
        ids[n++] = sqlite3_column_int64(st, 0);
    }
    if (st)
        sqlite3_reset(st);
    for (int i = 0; i < n; i++) {
        log_info("sched: run %" PRId64 " of %s passed its dagrun_timeout", ids[i], d->dag->dag_id);
        sq_run(p, "DELETE FROM triggers WHERE ti IN (SELECT id FROM task_instances WHERE run = ?1)",
               "i", ids[i]);
        sq_run(p,
               "UPDATE task_instances SET state = 'skipped', ended_ms = ?2, due_ms = NULL,"
               " reason = 'dagrun_timeout' WHERE run = ?1 AND state IN ('none', 'scheduled',"
               " 'queued', 'offered', 'running', 'deferred', 'up_for_retry')",
               "ii", ids[i], now);
        sq_run(p, "UPDATE dag_runs SET state = 'failed', ended_ms = ?2 WHERE id = ?1", "ii", ids[i],
               now);
        SCHED(p)->runs_changed = 1;
    }
    d->timeout_due_ms = n == 64 ? 0 : next;
    return n == 64 ? now : next;
}

/* The DAGs due in the heap (cron runs to create, dagrun timeouts), each put
 * back at its next due time; the pass stops at its time budget with the rest
 * still due. Returns the earliest key left. */
static int64_t due_dags(struct plane *p, int64_t now)
{
    struct sched *s = SCHED(p);
    struct sdag *d;
    for (int n = 0; (d = sdheap_top(s)) && d->heap_key <= now; n++) {
        if (n > 0 && sched_slice_over(s))
            return now;
        s->dags_examined++;
        int64_t t = cron_runs(p, d, now), u = run_timeouts(p, d, now);
        sdheap_set(s, d, u < t ? u : t);
    }
    return d ? d->heap_key : INT64_MAX;
}

/* The dirty runs, evaluated in order of id; those left when the pass reaches
 * its time budget stay marked for the next one. */
static void eval_dirty(struct plane *p, int64_t now)
{
    struct sched *s = SCHED(p);
    size_t n = s->ndirty;
    struct sdirty *work = s->dirty;
    s->dirty = NULL;
    s->ndirty = s->capdirty = 0;
    if (n > 1)
        qsort(work, n, sizeof(*work), cmp_dirty);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && sched_slice_over(s)) {
            for (; i < n; i++)
                sched_mark_run(p, work[i].run, work[i].kind);
            break;
        }
        int kind = work[i].kind;
        while (i + 1 < n && work[i + 1].run == work[i].run)
            kind |= work[++i].kind;
        run_eval(p, work[i].run, kind & SDIRTY_EVAL ? SDIRTY_EVAL : SDIRTY_DONE, now);
    }
    free(work);
}

int64_t sruns_pass(struct plane *p, int64_t now)
{
    struct sched *s = SCHED(p);
    /* Evaluating can finish runs, which lets queued runs start: repeat.
     * Each step below makes some progress in every pass, budget or not, so
     * none waits for another's backlog. */
    for (int round = 0; round < 4 && (s->runs_changed || s->ndirty); round++) {
        if (round > 0 && s->sliced)
            break;
        if (s->runs_changed) {
            s->runs_changed = 0;
            start_queued_runs(p, now);
        }
        eval_dirty(p, now);
    }
    int64_t next = due_dags(p, now);
    if (s->runs_changed || s->ndirty)
        next = now;
    return next;
}

void sched_ti_fail(struct plane *p, int64_t ti, const char *reason, int retry_ok, int64_t now)
{
    sqlite3_stmt *q = sq(p,
                         "SELECT t.run, t.task_id, t.try_number, r.dag_id FROM task_instances t"
                         " JOIN dag_runs r ON r.id = t.run WHERE t.id = ?1",
                         "i", ti);
    if (!q)
        return;
    if (sqlite3_step(q) != SQLITE_ROW) {
        sqlite3_reset(q);
        return;
    }
    int64_t run = sqlite3_column_int64(q, 0), try_number = sqlite3_column_int64(q, 2);
    struct sdag *d = sdag_find(p, sq_text(q, 3));
    long k = d ? sdag_task_index(d, sq_text(q, 1)) : -1;
    sqlite3_reset(q);
    const struct dag_task *t = k >= 0 ? &d->dag->tasks[k] : NULL;
    if (retry_ok && t && try_number <= t->retries) {
        int64_t due = now + dag_retry_delay_ms(t, try_number);
        sq_run(p,
               "UPDATE task_instances SET state = 'up_for_retry', ended_ms = ?2,"
               " next_retry_ms = ?3, due_ms = ?3, cancel_ms = NULL, reason = ?4 WHERE id = ?1",
               "iiit", ti, now, due, reason);
        sched_try_record(p, ti);
        sched_due_hint(p, due);
        return;
    }
    sq_run(p,
           "UPDATE task_instances SET state = 'failed', ended_ms = ?2, due_ms = NULL,"
           " cancel_ms = NULL, next_retry_ms = NULL, reason = ?3 WHERE id = ?1",
           "iit", ti, now, reason);
    sched_try_record(p, ti);
    sched_mark_run(p, run, SDIRTY_EVAL);
}

/* ---- admin routes ---- */

#define RUN_COLS                                                                                   \
    "id, dag_id, run_id, run_type, state, logical_date, di_start, di_end, conf, created_ms,"       \
    " started_ms, ended_ms"

static json_t *run_json(sqlite3_stmt *st)
{
    return json_pack("{sI ss ss ss ss so so so so so so so}", "id",
                     (json_int_t)sqlite3_column_int64(st, 0), "dag_id", sq_text(st, 1), "run_id",
                     sq_text(st, 2), "run_type", sq_text(st, 3), "state", sq_text(st, 4),
                     "logical_date", sched_col_time(st, 5), "data_interval_start",
                     sched_col_time(st, 6), "data_interval_end", sched_col_time(st, 7), "conf",
                     sched_col_json(st, 8), "queued_at", sched_col_time(st, 9), "start_date",
                     sched_col_time(st, 10), "end_date", sched_col_time(st, 11));
}

static int run_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 250)
        return 0;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:+/-", *s))
            return 0;
    return 1;
}

void sched_h_runs_trigger(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    json_t *conf = NULL;
    const char *ld = NULL, *rid = NULL;
    if (rq->body && !json_is_object(rq->body)) {
        plane_error(rs, 400, "bad_request", "body: expected object");
        return;
    }
    if (rq_obj(rs, rq->body, "conf", &conf) < 0 ||
        rq_str(rs, rq->body, "logical_date", 0, 64, &ld) < 0 ||
        rq_str(rs, rq->body, "run_id", 0, 250, &rid) < 0)
        return;
    int64_t logical = plane_now_ms();
    struct remex_error e;
    if (ld && timeutil_rfc3339_parse(ld, &logical, &e) != REMEX_OK) {
        plane_error(rs, 400, "bad_request", "logical_date: %s", e.msg);
        return;
    }
    if (rid && !run_id_valid(rid)) {
        plane_error(rs, 400, "bad_request", "run_id: expected [A-Za-z0-9_.:+/-]{1,250}");
        return;
    }
    char gen[96], ts[TIMEUTIL_RFC3339_MAX];
    timeutil_rfc3339_format(logical, 1, ts, sizeof(ts));
    snprintf(gen, sizeof(gen), "manual__%s", ts);
    char *cj = conf ? json_dumps(conf, JSON_COMPACT) : NULL;
    pthread_mutex_lock(&p->mu);
    int began = sq_begin(p); /* the run and the state counts in one commit */
    struct sdag *d = sdag_find(p, rq->param[0]);
    int64_t id =
        d ? sruns_create(p, d, rid ? rid : gen, "manual", logical, logical, logical, cj ? cj : "{}")
          : -2;
    /* Generated ids of runs triggered within the same millisecond get a suffix. */
    for (int k = 2; d && id == 0 && !rid && k < 1000; k++) {
        char alt[128];
        snprintf(alt, sizeof(alt), "%s.%d", gen, k);
        id = sruns_create(p, d, alt, "manual", logical, logical, logical, cj ? cj : "{}");
    }
    if (sq_commit(p, began) != 0)
        id = -3;
    json_t *out = NULL;
    if (id > 0) {
        plane_kick(p);
        sqlite3_stmt *st = sq(p, "SELECT " RUN_COLS " FROM dag_runs WHERE id = ?1", "i", id);
        if (st && sqlite3_step(st) == SQLITE_ROW)
            out = run_json(st);
        if (st)
            sqlite3_reset(st);
    }
    pthread_mutex_unlock(&p->mu);
    free(cj);
    if (id == -2)
        plane_error(rs, 404, "not_found", "no such dag");
    else if (id == -3)
        plane_store_failed(rs);
    else if (id == 0)
        plane_error(rs, 409, "conflict", "run_id already exists");
    else if (!out)
        plane_error(rs, 500, "internal", "cannot create the run");
    else
        plane_reply(rs, 200, out);
}

void sched_h_runs_list(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    const char *lim = plane_req_query(rq, "limit"), *state = plane_req_query(rq, "state");
    char *end = NULL;
    long limit = lim ? strtol(lim, &end, 10) : 100;
    if (lim && (*end || limit < 1 || limit > 10000)) {
        plane_error(rs, 400, "bad_request", "limit: expected integer in [1, 10000]");
        return;
    }
    json_t *arr = json_array();
    pthread_mutex_lock(&p->mu);
    if (!sdag_find(p, rq->param[0])) {
        pthread_mutex_unlock(&p->mu);
        json_decref(arr);
        plane_error(rs, 404, "not_found", "no such dag");
        return;
    }
    sqlite3_stmt *st = sq(p,
                          "SELECT " RUN_COLS " FROM dag_runs WHERE dag_id = ?1 AND"
                          " (?2 IS NULL OR state = ?2) ORDER BY logical_date DESC, id DESC"
                          " LIMIT ?3",
                          "tti", rq->param[0], state, (int64_t)limit);
    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, run_json(st));
    if (st)
        sqlite3_reset(st);
    pthread_mutex_unlock(&p->mu);
    plane_reply(rs, 200, json_pack("{so}", "dag_runs", arr));
}

static json_t *ti_json(sqlite3_stmt *st)
{
    return json_pack(
        "{sI ss sI sI ss ss sI sI so so so so so so so so so}", "ti_id",
        (json_int_t)sqlite3_column_int64(st, 0), "task_id", sq_text(st, 1), "map_index",
        (json_int_t)sqlite3_column_int64(st, 2), "try_number",
        (json_int_t)sqlite3_column_int64(st, 3), "state", sq_text(st, 4), "queue", sq_text(st, 5),
        "priority_weight", (json_int_t)sqlite3_column_int64(st, 6), "pool_slots",
        (json_int_t)sqlite3_column_int64(st, 7), "agent_id",
        sqlite3_column_type(st, 8) == SQLITE_NULL ? json_null()
                                                  : json_integer(sqlite3_column_int64(st, 8)),
        "start_date", sched_col_time(st, 9), "end_date", sched_col_time(st, 10), "next_retry_at",
        sched_col_time(st, 11), "exit_code",
        sqlite3_column_type(st, 12) == SQLITE_NULL ? json_null()
                                                   : json_integer(sqlite3_column_int64(st, 12)),
        "reason",
        sqlite3_column_type(st, 13) == SQLITE_NULL ? json_null() : json_string(sq_text(st, 13)),
        "log_uri",
        sqlite3_column_type(st, 14) == SQLITE_NULL ? json_null() : json_string(sq_text(st, 14)),
        "queued_at", sched_col_time(st, 15), "agent_name",
        sqlite3_column_type(st, 16) == SQLITE_NULL ? json_null() : json_string(sq_text(st, 16)));
}

/* A run's task instance ids in id order (one read of the ti_run_state
 * index, ints only; mu held). NULL with *n = 0 when none or out of memory. */
static int64_t *run_ti_ids(struct plane *p, int64_t run, size_t *n)
{
    int64_t *ids = NULL;
    size_t cap = 0;
    *n = 0;
    sqlite3_stmt *st = sq(p, "SELECT id FROM task_instances WHERE run = ?1", "i", run);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            int64_t *x = realloc(ids, nc * sizeof(*x));
            if (!x)
                break;
            ids = x;
            cap = nc;
        }
        ids[(*n)++] = sqlite3_column_int64(st, 0);
    }
    if (st)
        sqlite3_reset(st);
    if (*n > 1)
        qsort(ids, *n, sizeof(*ids), sched_cmp_i64);
    return ids;
}

/* GET .../runs/{run_id}: the run, then its task instances in chunks of
 * SCHED_VIEW_CHUNK rows, plane.mu let go between chunks so that a 10,000-task
 * run's view does not hold it for the whole build: each task instance is as
 * of its chunk (one deleted meanwhile is left out). */
void sched_h_run_show(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    uint64_t t0 = sched_view_lock(p);
    json_t *out = NULL;
    sqlite3_stmt *st = sq(p, "SELECT " RUN_COLS " FROM dag_runs WHERE dag_id = ?1 AND run_id = ?2",
                          "tt", rq->param[0], rq->param[1]);
    int64_t id = 0, *ids = NULL;
    size_t n = 0;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        out = run_json(st);
        id = sqlite3_column_int64(st, 0);
    }
    if (st)
        sqlite3_reset(st);
    if (out)
        ids = run_ti_ids(p, id, &n);
    sched_view_unlock(p, t0);
    if (!out) {
        plane_error(rs, 404, "not_found", "no such dag run");
        return;
    }
    json_t *tis = json_array();
    for (size_t k = 0; k < n; k += SCHED_VIEW_CHUNK) {
        t0 = sched_view_lock(p);
        for (size_t j = k; j < n && j < k + SCHED_VIEW_CHUNK; j++) {
            st = sq(p,
                    "SELECT t.id, t.task_id, t.map_index, t.try_number, t.state, t.queue,"
                    " t.priority_weight, t.pool_slots, t.agent_id, t.started_ms, t.ended_ms,"
                    " t.next_retry_ms, t.exit_code, t.reason, t.log_uri, t.queued_ms, a.name"
                    " FROM task_instances t LEFT JOIN agents a ON a.id = t.agent_id"
                    " WHERE t.id = ?1",
                    "i", ids[j]);
            if (st && sqlite3_step(st) == SQLITE_ROW)
                json_array_append_new(tis, ti_json(st));
            if (st)
                sqlite3_reset(st);
        }
        sched_view_unlock(p, t0);
    }
    free(ids);
    json_object_set_new(out, "task_instances", tis);
    plane_reply(rs, 200, out);
}

/* A run of the path's DAG may be running again: its dagrun_timeout is
 * looked at in the next pass. */
static void reopened(struct plane *p, struct plane_req *rq)
{
    struct sdag *d = sdag_find(p, rq->param[0]);
    if (d && d->dag->dagrun_timeout_ms != DAG_UNSET)
        sruns_touch(p, d);
}

/* TI id of (dag_id, run_id, task_id) and its run id; 0 when absent. */
static int64_t find_ti(struct plane *p, struct plane_req *rq, const char *task_id, int64_t *run)
{
    sqlite3_stmt *st = sq(p,
                          "SELECT t.id, t.run FROM task_instances t JOIN dag_runs r ON"
                          " r.id = t.run WHERE r.dag_id = ?1 AND r.run_id = ?2 AND"
                          " t.task_id = ?3 AND t.map_index = -1",
                          "ttt", rq->param[0], rq->param[1], task_id);
    int64_t id = 0;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        *run = sqlite3_column_int64(st, 1);
    }
    if (st)
        sqlite3_reset(st);
    return id;
}

static void clear_one(struct plane *p, int64_t ti)
{
    sched_try_record(p, ti); /* the try as it ended, before the row is reset */
    sq_run(p, "DELETE FROM triggers WHERE ti = ?1", "i", ti);
    sq_run(p,
           "UPDATE task_instances SET state = 'none', agent_id = NULL, due_ms = NULL,"
           " cancel_ms = NULL, next_retry_ms = NULL, started_ms = NULL, ended_ms = NULL,"
           " offer_expires_ms = NULL, timeout_ms = NULL, exit_code = NULL, signal = NULL,"
           " reason = NULL, trigger_event = NULL, resume_with = NULL, report_state = NULL WHERE id "
           "= ?1",
           "i", ti);
}

void sched_h_task_clear(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    int downstream = 0;
    json_t *ds = rq->body ? json_object_get(rq->body, "downstream") : NULL;
    if (ds && !json_is_boolean(ds)) {
        plane_error(rs, 400, "bad_request", "downstream: expected boolean");
        return;
    }
    downstream = ds && json_is_true(ds);
    json_t *cleared = json_array();
    pthread_mutex_lock(&p->mu);
    int64_t run = 0;
    struct sdag *d = sdag_find(p, rq->param[0]);
    long k = d ? sdag_task_index(d, rq->param[2]) : -1;
    int64_t ti = k >= 0 ? find_ti(p, rq, rq->param[2], &run) : 0;
    if (!ti) {
        pthread_mutex_unlock(&p->mu);
        json_decref(cleared);
        plane_error(rs, 404, "not_found", "no such task instance");
        return;
    }
    int began = sq_begin(p);
    const struct dag *g = d->dag;
    char *mark = calloc(g->ntasks, 1);
    if (mark) {
        mark[k] = 1;
        for (size_t j = 0; downstream && j < g->ntasks; j++) {
            size_t i = g->topo[j];
            for (size_t u = 0; !mark[i] && u < g->tasks[i].upstream.n; u++)
                if (mark[g->tasks[i].upstream_idx[u]])
                    mark[i] = 1;
        }
        for (size_t i = 0; i < g->ntasks; i++) {
            int64_t r2 = 0, id = mark[i] ? find_ti(p, rq, g->tasks[i].task_id, &r2) : 0;
            if (id) {
                clear_one(p, id);
                json_array_append_new(cleared, json_string(g->tasks[i].task_id));
            }
        }
        free(mark);
    }
    sq_run(p,
           "UPDATE dag_runs SET state = 'running', ended_ms = NULL WHERE id = ?1 AND"
           " state IN ('success', 'failed')",
           "i", run);
    reopened(p, rq);
    sq_commit(p, began);
    sched_mark_run(p, run, SDIRTY_EVAL);
    pthread_mutex_unlock(&p->mu);
    plane_reply(rs, 200, json_pack("{so}", "cleared", cleared));
}

void sched_h_task_fail(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    pthread_mutex_lock(&p->mu);
    int64_t run = 0;
    int64_t ti = find_ti(p, rq, rq->param[2], &run);
    if (!ti) {
        pthread_mutex_unlock(&p->mu);
        plane_error(rs, 404, "not_found", "no such task instance");
        return;
    }
    int began = sq_begin(p);
    sq_run(p, "DELETE FROM triggers WHERE ti = ?1", "i", ti);
    sched_ti_fail(p, ti, "marked failed", 0, plane_now_ms());
    sq_run(p,
           "UPDATE dag_runs SET state = 'running', ended_ms = NULL WHERE id = ?1 AND"
           " state = 'success'",
           "i", run);
    reopened(p, rq);
    sq_commit(p, began);
    pthread_mutex_unlock(&p->mu);
    plane_reply(rs, 200, json_pack("{ss ss}", "task_id", rq->param[2], "state", "failed"));
}

/* Marks a task instance success whatever its state (a running try is told
 * to stop at its worker's next heartbeat, as for fail); the run's
 * upstream_failed task instances and the run are evaluated again, so
 * downstream tasks run and a failed run can end as success. */
void sched_h_task_success(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    pthread_mutex_lock(&p->mu);
    int64_t run = 0;
    int64_t ti = find_ti(p, rq, rq->param[2], &run);
    if (!ti) {
        pthread_mutex_unlock(&p->mu);
        plane_error(rs, 404, "not_found", "no such task instance");
        return;
    }
    int64_t now = plane_now_ms();
    int began = sq_begin(p);
    sq_run(p, "DELETE FROM triggers WHERE ti = ?1", "i", ti);
    sq_run(p,
           "UPDATE task_instances SET state = 'success', ended_ms = ?2, due_ms = NULL,"
           " cancel_ms = NULL, next_retry_ms = NULL, reason = 'marked success' WHERE id = ?1",
           "ii", ti, now);
    /* upstream_failed is a consequence: evaluated again (it comes back
     * when another upstream task still failed). */
    sq_run(p,
           "UPDATE task_instances SET state = 'none', ended_ms = NULL, reason = NULL"
           " WHERE run = ?1 AND state = 'upstream_failed'",
           "i", run);
    sq_run(p,
           "UPDATE dag_runs SET state = 'running', ended_ms = NULL WHERE id = ?1 AND"
           " state = 'failed'",
           "i", run);
    reopened(p, rq);
    sched_mark_run(p, run, SDIRTY_EVAL);
    int failed = sq_commit(p, began);
    pthread_mutex_unlock(&p->mu);
    if (failed) {
        plane_store_failed(rs);
        return;
    }
    plane_reply(rs, 200, json_pack("{ss ss}", "task_id", rq->param[2], "state", "success"));
}

/* Run id and state of (dag_id, run_id) of the path (mu held); 0 when absent.
 * state (may be NULL) gets a copy of at most n bytes. */
static int64_t find_run(struct plane *p, struct plane_req *rq, char *state, size_t n)
{
    sqlite3_stmt *st = sq(p, "SELECT id, state FROM dag_runs WHERE dag_id = ?1 AND run_id = ?2",
                          "tt", rq->param[0], rq->param[1]);
    int64_t id = 0;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        if (state)
            snprintf(state, n, "%s", sq_text(st, 1));
    }
    if (st)
        sqlite3_reset(st);
    return id;
}

/* Clears every task instance of a run (as tasks/{task_id}/clear does for
 * one): the run runs again from the start; running tries are stopped at
 * their workers' next heartbeat. */
void sched_h_run_clear(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    json_t *cleared = json_array();
    pthread_mutex_lock(&p->mu);
    int64_t run = find_run(p, rq, NULL, 0);
    if (!run) {
        pthread_mutex_unlock(&p->mu);
        json_decref(cleared);
        plane_error(rs, 404, "not_found", "no such dag run");
        return;
    }
    int began = sq_begin(p);
    int64_t ids[1024];
    size_t n = 0;
    sqlite3_stmt *st =
        sq(p, "SELECT id, task_id FROM task_instances WHERE run = ?1 ORDER BY id", "i", run);
    while (st && sqlite3_step(st) == SQLITE_ROW && n < sizeof(ids) / sizeof(ids[0])) {
        ids[n++] = sqlite3_column_int64(st, 0);
        json_array_append_new(cleared, json_string(sq_text(st, 1)));
    }
    if (st)
        sqlite3_reset(st);
    for (size_t i = 0; i < n; i++)
        clear_one(p, ids[i]);
    sq_run(p, "UPDATE dag_runs SET state = 'running', ended_ms = NULL WHERE id = ?1", "i", run);
    reopened(p, rq);
    SCHED(p)->runs_changed = 1;
    sched_mark_run(p, run, SDIRTY_EVAL);
    int failed = sq_commit(p, began);
    plane_kick(p);
    pthread_mutex_unlock(&p->mu);
    if (failed) {
        json_decref(cleared);
        plane_store_failed(rs);
        return;
    }
    plane_reply(rs, 200, json_pack("{so}", "cleared", cleared));
}

/* Cancels a queued or running run: its unfinished task instances end
 * (running, offered and deferred ones failed with reason "run cancelled",
 * the others skipped), their triggers are dropped, and the run is failed.
 * A finished run is 409. */
void sched_h_run_cancel(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    char state[32] = "";
    pthread_mutex_lock(&p->mu);
    int64_t run = find_run(p, rq, state, sizeof(state));
    if (!run || (strcmp(state, "queued") != 0 && strcmp(state, "running") != 0)) {
        pthread_mutex_unlock(&p->mu);
        if (!run)
            plane_error(rs, 404, "not_found", "no such dag run");
        else
            plane_error(rs, 409, "conflict", "the run is already %s", state);
        return;
    }
    int64_t now = plane_now_ms();
    int began = sq_begin(p);
    sq_run(p, "DELETE FROM triggers WHERE ti IN (SELECT id FROM task_instances WHERE run = ?1)",
           "i", run);
    sq_run(p,
           "UPDATE task_instances SET state = 'failed', ended_ms = ?2, due_ms = NULL,"
           " next_retry_ms = NULL, reason = 'run cancelled' WHERE run = ?1 AND"
           " state IN ('offered', 'running', 'deferred')",
           "ii", run, now);
    sq_run(p,
           "UPDATE task_instances SET state = 'skipped', ended_ms = ?2, due_ms = NULL,"
           " next_retry_ms = NULL, reason = 'run cancelled' WHERE run = ?1 AND"
           " state IN ('none', 'scheduled', 'queued', 'up_for_retry')",
           "ii", run, now);
    sq_run(p, "UPDATE dag_runs SET state = 'failed', ended_ms = ?2 WHERE id = ?1", "ii", run, now);
    SCHED(p)->runs_changed = 1;
    int failed = sq_commit(p, began);
    plane_kick(p);
    pthread_mutex_unlock(&p->mu);
    if (failed) {
        plane_store_failed(rs);
        return;
    }
    plane_reply(
        rs, 200,
        json_pack("{ss ss ss}", "dag_id", rq->param[0], "run_id", rq->param[1], "state", "failed"));
}
