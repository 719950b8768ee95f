/*
 * Scheduler state, schema, statement cache, the scheduler thread, agent
 * failover hooks, metrics and the route table of sched*.c.
 */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "remex/log.h"
#include "remex/timeutil.h"
#include "sched.h"

const struct store_migration store_migrations_sched[] = {
    {100, "CREATE TABLE dags ("
          " dag_id TEXT PRIMARY KEY, bundle TEXT NOT NULL DEFAULT '',"
          " bundle_version TEXT NOT NULL DEFAULT '', fileloc TEXT NOT NULL DEFAULT '',"
          " hash TEXT NOT NULL, json TEXT NOT NULL, is_active INTEGER NOT NULL DEFAULT 1,"
          " is_paused INTEGER NOT NULL DEFAULT 0, next_run_ms INTEGER,"
          " updated_ms INTEGER NOT NULL);"
          "CREATE TABLE bundles (name TEXT PRIMARY KEY, version TEXT NOT NULL,"
          " manifest TEXT NOT NULL, updated_ms INTEGER NOT NULL);"
          "CREATE TABLE import_errors (id INTEGER PRIMARY KEY, bundle TEXT NOT NULL,"
          " file TEXT NOT NULL, line INTEGER, col INTEGER, message TEXT NOT NULL,"
          " created_ms INTEGER NOT NULL);"
          "CREATE TABLE dag_runs ("
          " id INTEGER PRIMARY KEY, dag_id TEXT NOT NULL, run_id TEXT NOT NULL,"
          " run_type TEXT NOT NULL, logical_date INTEGER NOT NULL, di_start INTEGER,"
          " di_end INTEGER, state TEXT NOT NULL, conf TEXT NOT NULL DEFAULT '{}',"
          " created_ms INTEGER NOT NULL, started_ms INTEGER, ended_ms INTEGER,"
          " UNIQUE (dag_id, run_id));"
          "CREATE INDEX dag_runs_state ON dag_runs (state, dag_id, logical_date);"
          "CREATE INDEX dag_runs_dag ON dag_runs (dag_id, logical_date);"
          "CREATE TABLE task_instances ("
          " id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES dag_runs (id),"
          " task_id TEXT NOT NULL, map_index INTEGER NOT NULL DEFAULT -1,"
          " try_number INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL,"
          " queue TEXT NOT NULL, priority_weight INTEGER NOT NULL DEFAULT 1,"
          " pool_slots INTEGER NOT NULL DEFAULT 1, agent_id INTEGER,"
          " queued_ms INTEGER, offered_ms INTEGER, offer_expires_ms INTEGER,"
          " started_ms INTEGER, ended_ms INTEGER, next_retry_ms INTEGER,"
          " timeout_ms INTEGER, cancel_ms INTEGER, due_ms INTEGER, exit_code INTEGER,"
          " signal INTEGER, reason TEXT, log_uri TEXT, hostname TEXT, pid INTEGER,"
          " trigger_event TEXT, report_try INTEGER, report_state TEXT,"
          " UNIQUE (run, task_id, map_index));"
          "CREATE INDEX ti_run_state ON task_instances (run, state);"
          "CREATE INDEX ti_queue ON task_instances"
          " (state, queue, priority_weight DESC, queued_ms, id);"
          "CREATE INDEX ti_due ON task_instances (due_ms) WHERE due_ms IS NOT NULL;"
          "CREATE INDEX ti_agent ON task_instances (agent_id, state);"
          "CREATE TABLE triggers (id INTEGER PRIMARY KEY, ti INTEGER NOT NULL,"
          " try_number INTEGER NOT NULL, spec TEXT NOT NULL, agent_id INTEGER,"
          " timeout_ms INTEGER, created_ms INTEGER NOT NULL);"
          "CREATE INDEX triggers_agent ON triggers (agent_id);"
          "CREATE INDEX triggers_timeout ON triggers (timeout_ms) WHERE timeout_ms IS NOT NULL;"
          "CREATE TABLE xcom (run INTEGER NOT NULL, task_id TEXT NOT NULL,"
          " map_index INTEGER NOT NULL, key TEXT NOT NULL, uri TEXT NOT NULL,"
          " size INTEGER NOT NULL, checksum TEXT NOT NULL, content_type TEXT NOT NULL,"
          " updated_ms INTEGER NOT NULL, PRIMARY KEY (run, task_id, map_index, key));"},
    /* An agent's offered/running TIs are found through ti_queue's state prefix
     * (bounded by slots); one index less to rewrite on every state change. */
    {101, "DROP INDEX ti_agent;"},
    /* When a trigger was handed to its triggerer: heartbeats that do not list
     * it release it once a heartbeat interval has passed. */
    {102, "ALTER TABLE triggers ADD COLUMN assigned_ms INTEGER;"},
    /* ti_queue holds queued TIs only: a start or a report no longer moves an
     * entry in it (two fewer pages written per assignment). An agent's offered
     * and running TIs have their own small index; queries name its condition
     * (state IN ('offered', 'running')) so that SQLite can use it. */
    {103, "DROP INDEX ti_queue;"
          "CREATE INDEX ti_queue ON task_instances (queue, priority_weight DESC, queued_ms, id)"
          " WHERE state = 'queued';"
          "CREATE INDEX ti_active ON task_instances (agent_id)"
          " WHERE state IN ('offered', 'running');"},
    /* Trigger ids are never reused (AUTOINCREMENT): without it SQLite hands
     * out the id of a deleted highest trigger again, and a late event or a
     * held list naming the old trigger would reach the new one. */
    {104, "CREATE TABLE triggers_new (id INTEGER PRIMARY KEY AUTOINCREMENT,"
          " ti INTEGER NOT NULL, try_number INTEGER NOT NULL, spec TEXT NOT NULL,"
          " agent_id INTEGER, timeout_ms INTEGER, created_ms INTEGER NOT NULL,"
          " assigned_ms INTEGER);"
          "INSERT INTO triggers_new (id, ti, try_number, spec, agent_id, timeout_ms,"
          " created_ms, assigned_ms) SELECT id, ti, try_number, spec, agent_id, timeout_ms,"
          " created_ms, assigned_ms FROM triggers;"
          "DROP TABLE triggers;"
          "ALTER TABLE triggers_new RENAME TO triggers;"
          "CREATE INDEX triggers_agent ON triggers (agent_id);"
          "CREATE INDEX triggers_timeout ON triggers (timeout_ms) WHERE timeout_ms IS NOT NULL;"},
    /* Named pools (Airflow's): slots shared by every task instance in the
     * pool across DAGs, runs and agents; default_pool holds tasks naming
     * none and starts unbounded (SCHED_POOL_UNBOUNDED: agents' slots are the
     * limit, as before pools). A TI records its pool when created. */
    {105, "CREATE TABLE pools (name TEXT PRIMARY KEY, slots INTEGER NOT NULL,"
          " description TEXT NOT NULL DEFAULT '', updated_ms INTEGER NOT NULL);"
          "INSERT INTO pools (name, slots, description, updated_ms)"
          " VALUES ('default_pool', 1000000, 'Default pool', 0);"
          "ALTER TABLE task_instances ADD COLUMN pool TEXT NOT NULL DEFAULT 'default_pool';"},
    /* The resume_with name of a run-time deferral, given to the resumed try
     * with its trigger event. Triggers are found by their task instance on
     * every deferral, event and clear: without an index each is a scan of
     * every trigger held (quadratic in the number of deferred tasks). */
    {106, "ALTER TABLE task_instances ADD COLUMN resume_with TEXT;"
          "CREATE INDEX triggers_ti ON triggers (ti);"},
    /* Tries of a task instance other than its row's latest: the row as it was
     * when a try ended in a state another try can follow, or when a finished
     * try was cleared (sched_try_record). */
    {110, "CREATE TABLE ti_tries (ti INTEGER NOT NULL, try_number INTEGER NOT NULL,"
          " state TEXT NOT NULL, agent_id INTEGER, hostname TEXT, started_ms INTEGER,"
          " ended_ms INTEGER, exit_code INTEGER, signal INTEGER, reason TEXT, log_uri TEXT,"
          " PRIMARY KEY (ti, try_number)) WITHOUT ROWID;"},
    /* Finished runs by end time, for retention (sched_retention.c). */
    {120, sret_migration_sql},
    /* The bundle version an import error was found in (manifest's version). */
    {137, "ALTER TABLE import_errors ADD COLUMN version TEXT NOT NULL DEFAULT '';"},
    /* Task instances and runs by state, kept by sched_counts.c in the
     * transactions that change them, so a start reads them instead of
     * counting the history. Filled here by the one full count of an upgrade. */
    {140, "CREATE TABLE state_counts (kind TEXT NOT NULL, state TEXT NOT NULL,"
          " n INTEGER NOT NULL, PRIMARY KEY (kind, state)) WITHOUT ROWID;"
          "INSERT INTO state_counts SELECT 'ti', state, count(*) FROM task_instances"
          " GROUP BY state;"
          "INSERT INTO state_counts SELECT 'run', state, count(*) FROM dag_runs"
          " GROUP BY state;"},
    /* A DAG whose version is its bundle's (bundles.version, the last manifest's): a
     * manifest that moves the bundle to a new version rewrites no DAG row
     * (sched_dags.c); bundle_version keeps the version it had when it stopped
     * following (left out of a manifest, or changed). */
    {150, "ALTER TABLE dags ADD COLUMN version_follows INTEGER NOT NULL DEFAULT 0;"},
    {0, NULL},
};

uint64_t sched_view_lock(struct plane *p)
{
    pthread_mutex_lock(&p->mu);
    return timeutil_mono_ns();
}

void sched_view_unlock(struct plane *p, uint64_t t0)
{
    struct sched *s = SCHED(p);
    double held = (double)(timeutil_mono_ns() - t0) / 1e9;
    s->view_chunks++;
    if (held > s->view_hold_max)
        s->view_hold_max = held;
    pthread_mutex_unlock(&p->mu);
}

int sched_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

enum dag_ti_state sched_col_state(sqlite3_stmt *st, int col)
{
    enum dag_ti_state v;
    if (dag_state_parse(sq_text(st, col), &v) != 0)
        return DAG_TI_NONE;
    return v;
}

/* ---- statements ---- */

static sqlite3_stmt *sq_vbind(struct plane *p, const char *sql, const char *fmt, va_list ap)
{
    sqlite3_stmt *st = store_stmt(p, sql);
    if (!st)
        return NULL;
    for (int i = 0; fmt && fmt[i]; i++) {
        switch (fmt[i]) {
        case 'i':
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
            break;
        case 'N': {
            int64_t v = va_arg(ap, int64_t);
            if (v == INT64_MIN)
                sqlite3_bind_null(st, i + 1);
            else
                sqlite3_bind_int64(st, i + 1, v);
            break;
        }
        case 'd':
            sqlite3_bind_double(st, i + 1, va_arg(ap, double));
            break;
        default: {
            const char *t = va_arg(ap, const char *);
            if (t)
                sqlite3_bind_text(st, i + 1, t, -1, SQLITE_TRANSIENT);
            else
                sqlite3_bind_null(st, i + 1);
        }
        }
    }
    return st;
}

sqlite3_stmt *sq(struct plane *p, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = sq_vbind(p, sql, fmt, ap);
    va_end(ap);
    return st;
}

int sq_run(struct plane *p, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = sq_vbind(p, sql, fmt, ap);
    va_end(ap);
    if (!st)
        return SQLITE_ERROR;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        log_error("sched: %s: %s", sqlite3_errmsg(p->db), sql);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SQLITE_DONE : rc;
}

int64_t sq_int(struct plane *p, int64_t def, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = sq_vbind(p, sql, fmt, ap);
    va_end(ap);
    if (!st)
        return def;
    int64_t v = def;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sq_col_int(st, 0, def);
    sqlite3_reset(st);
    return v;
}

const char *sq_text(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? (const char *)t : "";
}

int64_t sq_col_int(sqlite3_stmt *st, int col, int64_t def)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return def;
    return sqlite3_column_int64(st, col);
}

int sq_begin(struct plane *p)
{
    return store_begin(p);
}

int sq_commit(struct plane *p, int began)
{
    return store_commit(p, began);
}

/* ---- JSON helpers ---- */

json_t *sched_time_json(int64_t ms)
{
    char b[TIMEUTIL_RFC3339_MAX];
    if (ms <= 0 || timeutil_rfc3339_format(ms, ms % 1000 != 0, b, sizeof(b)) != REMEX_OK)
        return json_null();
    return json_string(b);
}

json_t *sched_col_time(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    return sched_time_json(sqlite3_column_int64(st, col));
}

json_t *sched_col_json(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    json_t *j = json_loads(sq_text(st, col), JSON_DECODE_ANY, NULL);
    return j ? j : json_null();
}

int rq_int(struct plane_resp *rs, json_t *body, const char *field, int64_t lo, int64_t hi,
           int64_t def, int required, int64_t *out)
{
    json_t *v = body ? json_object_get(body, field) : NULL;
    if (!v || json_is_null(v)) {
        if (required) {
            plane_error(rs, 400, "bad_request", "%s: required", field);
            return -1;
        }
        *out = def;
        return 0;
    }
    if (!json_is_integer(v)) {
        plane_error(rs, 400, "bad_request", "%s: expected integer", field);
        return -1;
    }
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        plane_error(rs, 400, "bad_request", "%s: out of range [%" PRId64 ", %" PRId64 "]", field,
                    lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int rq_num(struct plane_resp *rs, json_t *body, const char *field, double lo, double hi, double def,
           double *out)
{
    json_t *v = body ? json_object_get(body, field) : NULL;
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v)) {
        plane_error(rs, 400, "bad_request", "%s: expected number", field);
        return -1;
    }
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        plane_error(rs, 400, "bad_request", "%s: out of range", field);
        return -1;
    }
    *out = x;
    return 0;
}

int rq_str(struct plane_resp *rs, json_t *body, const char *field, int required, size_t maxlen,
           const char **out)
{
    json_t *v = body ? json_object_get(body, field) : NULL;
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required) {
            plane_error(rs, 400, "bad_request", "%s: required", field);
            return -1;
        }
        return 0;
    }
    if (!json_is_string(v)) {
        plane_error(rs, 400, "bad_request", "%s: expected string", field);
        return -1;
    }
    if (json_string_length(v) > maxlen || strlen(json_string_value(v)) != json_string_length(v)) {
        plane_error(rs, 400, "bad_request", "%s: too long or contains NUL", field);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int rq_obj(struct plane_resp *rs, json_t *body, const char *field, json_t **out)
{
    json_t *v = body ? json_object_get(body, field) : NULL;
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v)) {
        plane_error(rs, 400, "bad_request", "%s: expected object", field);
        return -1;
    }
    *out = v;
    return 0;
}

int rq_strarray(struct plane_resp *rs, json_t *body, const char *field, size_t maxn, json_t **out)
{
    json_t *v = body ? json_object_get(body, field) : NULL;
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v) || json_array_size(v) > maxn) {
        plane_error(rs, 400, "bad_request", "%s: expected array of at most %zu strings", field,
                    maxn);
        return -1;
    }
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        if (!json_is_string(x) || json_string_length(x) == 0 || json_string_length(x) > 256) {
            plane_error(rs, 400, "bad_request", "%s[%zu]: expected non-empty string", field, i);
            return -1;
        }
    }
    *out = v;
    return 0;
}

int rq_id(struct plane_req *rq, struct plane_resp *rs, int i, int64_t *out)
{
    const char *s = i < rq->nparam ? rq->param[i] : NULL;
    char *end = NULL;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v <= 0) {
        plane_error(rs, 404, "not_found", "no such object");
        return -1;
    }
    *out = v;
    return 0;
}

/* ---- scheduler thread ---- */

void sched_observe(struct shist *h, double seconds)
{
    static const double le[SCHED_HIST_N] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                            0.1,    0.25,  0.5,    1,     2.5,  5,     10};
    for (int i = 0; i < SCHED_HIST_N; i++)
        if (seconds <= le[i]) {
            h->bucket[i]++;
            break;
        }
    h->count++;
    h->sum += seconds;
}

void sched_mark_run(struct plane *p, int64_t run, int kind)
{
    struct sched *s = SCHED(p);
    for (size_t i = s->ndirty; i > 0 && i + 8 > s->ndirty; i--)
        if (s->dirty[i - 1].run == run) {
            s->dirty[i - 1].kind |= kind;
            plane_kick(p);
            return;
        }
    if (s->ndirty == s->capdirty) {
        size_t cap = s->capdirty ? s->capdirty * 2 : 64;
        struct sdirty *n = realloc(s->dirty, cap * sizeof(*n));
        if (!n) {
            log_error("sched: out of memory marking run %" PRId64, run);
            return;
        }
        s->dirty = n;
        s->capdirty = cap;
    }
    s->dirty[s->ndirty].run = run;
    s->dirty[s->ndirty].kind = kind;
    s->ndirty++;
    plane_kick(p);
}

void plane_kick(struct plane *p)
{
    p->sched_dirty = 1;
    pthread_cond_signal(&p->sched_cv);
}

int sched_run_pending(struct plane *p, int64_t run)
{
    /* Every unfinished state, the likeliest first; one seek on ti_run_state
     * each (an IN list would build a temporary table per execution). The
     * state is a literal: bound to a parameter, SQLite would prepare the
     * statement again at every new value (the partial ti_queue index depends
     * on it). */
#define PENDING(st) "SELECT 1 FROM task_instances WHERE run = ?1 AND state = '" st "' LIMIT 1"
    static const char *const pending[] = {
        PENDING("queued"), PENDING("running"),  PENDING("offered"),     PENDING("scheduled"),
        PENDING("none"),   PENDING("deferred"), PENDING("up_for_retry")};
#undef PENDING
    for (size_t i = 0; i < sizeof(pending) / sizeof(pending[0]); i++)
        if (sq_int(p, 0, pending[i], "i", run))
            return 1;
    return 0;
}

int sched_slice_over(struct sched *s)
{
    if (!s->sliced && timeutil_mono_ns() >= s->slice_end_ns)
        s->sliced = 1;
    return s->sliced;
}

void sched_due_hint(struct plane *p, int64_t due_ms)
{
    struct sched *s = SCHED(p);
    if (due_ms < s->due_ms)
        s->due_ms = due_ms;
    if (due_ms < s->wake_ms)
        plane_kick(p);
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Offers are kept for a full offer_timeout from now, and running runs are
 * evaluated once: what the database holds may be behind what happened (a
 * start lost in a crash or rolled back; a pass cut short). */
static void sched_recover(struct plane *p)
{
    int64_t hold = plane_now_ms() + p->cfg.offer_timeout_ms;
    /* The IN term is ti_active's own condition: without it SQLite does not
     * see that the partial index holds every offered row and scans the whole
     * table (0.7 s at 10M finished task instances). */
    sq_run(p,
           "UPDATE task_instances SET offer_expires_ms = ?1, due_ms = ?1"
           " WHERE state IN ('offered', 'running') AND state = 'offered'"
           " AND offer_expires_ms < ?1",
           "i", hold);
    sqlite3_stmt *st = sq(p, "SELECT id FROM dag_runs WHERE state = 'running'", "");
    while (st && sqlite3_step(st) == SQLITE_ROW)
        sched_mark_run(p, sqlite3_column_int64(st, 0), SDIRTY_EVAL);
    if (st)
        sqlite3_reset(st);
}

/* After a rollback (p->store_resync): the DAGs are reloaded from the
 * database (an upload, pause or cron step may be undone), due times
 * recomputed, and sched_recover run. */
static void sched_resync(struct plane *p)
{
    struct sched *s = SCHED(p);
    struct remex_error e = {0};
    sdag_free_all(s);
    if (sdag_load_all(p, &e) != REMEX_OK) {
        log_error("sched: reloading the dags after a rollback: %s", e.msg);
        p->store_resync = 1; /* again at the next pass */
    }
    sched_recover(p);
    s->due_ms = INT64_MIN;
    s->runs_changed = 1;
    log_warn("sched: state reloaded from the database after a rollback");
}

/* One pass; returns the next due wall time (INT64_MAX: nothing due). After a
 * pass whose commit failed, the next runs SCHED_RETRY_MS later at the
 * earliest (the store may stay unwritable for a while). */
#define SCHED_RETRY_MS 1000
/* Pause between two slices of a cut pass, plane.mu free. */
#define SCHED_SLICE_GAP_NS 200000L

static int64_t sched_pass(struct plane *p)
{
    struct sched *s = SCHED(p);
    int64_t now = plane_now_ms();
    if (now < s->retry_ms)
        return s->retry_ms;
    int began = sq_begin(p);
    if (p->store_resync) {
        p->store_resync = 0;
        sched_resync(p);
    }
    int64_t next = s->due_ms;
    if (now >= s->due_ms) {
        /* Only when something may be due: most passes follow a state report. */
        next = min64(sdisp_due(p, now), strig_due(p, now));
        s->due_ms = next;
    }
    next = min64(next, sruns_pass(p, now));
    next = min64(next, sret_pass(p, now));
    if (sq_commit(p, began) != 0) {
        s->retry_ms = now + SCHED_RETRY_MS; /* store_resync is set again */
        next = s->retry_ms;
    }
    if (s->queued_any) {
        s->queued_any = 0;
        sched_wake_work(p);
    }
    return next;
}

/* CPU time of the calling thread, seconds: a pass's wall time less this is
 * the time its thread waited for a core while holding the lock. */
static double thread_cpu_s(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *sched_main(void *arg)
{
    struct plane *p = arg;
    struct sched *s = SCHED(p);
    pthread_mutex_lock(&p->mu);
    while (!atomic_load(&p->stopping)) {
        p->sched_dirty = 0;
        uint64_t t0 = timeutil_mono_ns();
        double c0 = thread_cpu_s();
        s->slice_end_ns = t0 + SCHED_SLICE_NS;
        s->sliced = 0;
        int64_t next = sched_pass(p);
        double took = (double)(timeutil_mono_ns() - t0) / 1e9, cpu = thread_cpu_s() - c0;
        sched_observe(&s->loop, took);
        if (took > s->step_max)
            s->step_max = took;
        if (cpu > s->step_cpu_max)
            s->step_cpu_max = cpu;
        int64_t now = plane_now_ms();
        if (s->sliced || p->sched_dirty || next <= now) {
            /* Cut at its budget, more work marked by the pass itself (only
             * holders of mu kick, and the pass held it) or due already: let
             * the requests waiting for mu in before the next pass (a mutex
             * handed straight back would starve them), so that the lock is
             * never held for more than one pass. */
            s->slices += s->sliced ? 1 : 0;
            pthread_mutex_unlock(&p->mu);
            struct timespec gap = {0, SCHED_SLICE_GAP_NS};
            nanosleep(&gap, NULL);
            pthread_mutex_lock(&p->mu);
            continue;
        }
        if (atomic_load(&p->stopping))
            continue;
        /* A bound on the sleep guards against wall-clock steps only. */
        int64_t delay = next == INT64_MAX ? 3600000 : next - now;
        if (delay > 3600000)
            delay = 3600000;
        s->wake_ms = now + delay;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + (delay % 1000) * 1000000;
        ts.tv_sec += delay / 1000 + ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        while (!p->sched_dirty && !atomic_load(&p->stopping)) {
            if (pthread_cond_timedwait(&p->sched_cv, &p->mu, &ts) == ETIMEDOUT)
                break;
        }
        s->wake_ms = INT64_MIN;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

remex_err sched_init(struct plane *p, struct remex_error *e)
{
    struct sched *s = calloc(1, sizeof(*s));
    if (!s)
        return remex_seterr(e, REMEX_ENOMEM, "sched: out of memory");
    s->wake_ms = INT64_MIN;
    s->due_ms = INT64_MIN;
    s->runs_changed = 1;
    p->sched = s;
    remex_err rc = sdag_load_all(p, e);
    if (rc == REMEX_OK)
        rc = scount_init(p, e);
    if (rc != REMEX_OK)
        return rc;
    /* A start is committed lazily: after a crash, a task instance its worker
     * runs may read offered. Its agent's heartbeat or report says so (see
     * sched_h_start); until then the offer must not expire. Running runs are
     * re-evaluated once: the plane may have stopped mid-run. */
    sched_recover(p);
    return REMEX_OK;
}

remex_err sched_start(struct plane *p, struct remex_error *e)
{
    struct sched *s = SCHED(p);
    int rc = pthread_create(&s->thread, NULL, sched_main, p);
    if (rc != 0)
        return remex_seterr(e, REMEX_ESYS, "sched: pthread_create: %s", strerror(rc));
    s->started = 1;
    return REMEX_OK;
}

void sched_stop(struct plane *p)
{
    struct sched *s = SCHED(p);
    if (!s || !s->started)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stopping, 1);
    pthread_cond_broadcast(&p->sched_cv);
    plane_wake(p, PLANE_WAIT_WORK);
    plane_wake(p, PLANE_WAIT_TRIGGER);
    pthread_mutex_unlock(&p->mu);
    pthread_join(s->thread, NULL);
    s->started = 0;
}

void sched_free(struct plane *p)
{
    struct sched *s = SCHED(p);
    if (!s)
        return;
    scount_free(p);
    sdag_free_all(s);
    free(s->dirty);
    free(s);
    p->sched = NULL;
}

/* ---- agents ---- */

void sched_agent_lost(struct plane *p, int64_t agent_id)
{
    int64_t now = plane_now_ms();
    int began = sq_begin(p);
    int n = 0;
    sq_run(p,
           "UPDATE task_instances SET state = 'queued', agent_id = NULL, due_ms = NULL,"
           " offer_expires_ms = NULL WHERE agent_id = ?1 AND state IN ('offered', 'running')"
           " AND state = 'offered'",
           "i", agent_id);
    n = sqlite3_changes(p->db);
    /* Running TIs fail and retry; ids first, since failing touches the same rows. */
    int64_t ids[256];
    for (;;) {
        int k = 0;
        sqlite3_stmt *st = sq(p,
                              "SELECT id FROM task_instances WHERE agent_id = ?1 AND"
                              " state IN ('offered', 'running') AND state = 'running' LIMIT 256",
                              "i", agent_id);
        while (st && k < 256 && sqlite3_step(st) == SQLITE_ROW)
            ids[k++] = sqlite3_column_int64(st, 0);
        if (st)
            sqlite3_reset(st);
        for (int i = 0; i < k; i++)
            sched_ti_fail(p, ids[i], "agent lost", 1, now);
        if (k < 256)
            break;
    }
    strig_release_agent(p, agent_id);
    sq_commit(p, began);
    if (n > 0)
        sched_wake_work(p);
    plane_kick(p);
}

void sched_agent_reregistered(struct plane *p, int64_t agent_id)
{
    /* The previous session's offers and runs are gone with it; the worker replays
     * its journaled reports, and reports for the failed try get 409. */
    sched_agent_lost(p, agent_id);
}

static int running_listed(json_t *running, int64_t ti, int64_t try_number)
{
    size_t i;
    json_t *x;
    json_array_foreach(running, i, x)
    {
        json_t *a = json_object_get(x, "ti_id"), *b = json_object_get(x, "try_number");
        if (json_is_integer(a) && json_integer_value(a) == ti &&
            (!json_is_integer(b) || json_integer_value(b) == try_number))
            return 1;
    }
    return 0;
}

static void add_cancel(json_t *cancel, int64_t ti, int64_t try_number, const char *reason)
{
    json_array_append_new(cancel, json_pack("{sI sI ss}", "ti_id", (json_int_t)ti, "try_number",
                                            (json_int_t)try_number, "reason", reason));
}

void sched_heartbeat(struct plane *p, int64_t agent_id, json_t *running, json_t *cancel)
{
    int64_t now = plane_now_ms();
    int64_t grace = 2 * p->cfg.heartbeat_interval_ms;
    int began = sq_begin(p);
    /* What the agent runs that is no longer its: cancel. */
    size_t i;
    json_t *x;
    if (json_is_array(running)) {
        json_array_foreach(running, i, x)
        {
            json_t *a = json_object_get(x, "ti_id"), *b = json_object_get(x, "try_number");
            if (!json_is_integer(a))
                continue;
            int64_t ti = json_integer_value(a);
            int64_t tr = json_is_integer(b) ? json_integer_value(b) : -1;
            sqlite3_stmt *st = sq(p,
                                  "SELECT state, agent_id, try_number, cancel_ms, reason"
                                  " FROM task_instances WHERE id = ?1",
                                  "i", ti);
            int mine = 0, offered = 0;
            int64_t cms = -1;
            char reason[64] = "no longer assigned to this agent";
            if (st && sqlite3_step(st) == SQLITE_ROW) {
                enum dag_ti_state s = sched_col_state(st, 0);
                mine = (s == DAG_TI_RUNNING || s == DAG_TI_OFFERED) &&
                       sq_col_int(st, 1, -1) == agent_id &&
                       (tr < 0 || sqlite3_column_int64(st, 2) == tr);
                offered = mine && s == DAG_TI_OFFERED;
                cms = sq_col_int(st, 3, -1);
                if (cms >= 0)
                    snprintf(reason, sizeof(reason), "%s", sq_text(st, 4));
                if (!mine && (s == DAG_TI_FAILED || s == DAG_TI_UP_FOR_RETRY) &&
                    sq_col_int(st, 1, -1) == agent_id && strcmp(sq_text(st, 4), "") != 0)
                    snprintf(reason, sizeof(reason), "%s", sq_text(st, 4));
            }
            if (st)
                sqlite3_reset(st);
            if (offered)
                sdisp_promote(p, ti);
            if (!mine)
                add_cancel(cancel, ti, tr, reason);
            else if (cms >= 0)
                add_cancel(cancel, ti, tr, reason);
        }
    }
    /* What the plane thinks runs there but the agent does not list: fail. */
    int64_t gone[128];
    int k = 0;
    sqlite3_stmt *st = sq(p,
                          "SELECT id, try_number FROM task_instances WHERE agent_id = ?1 AND"
                          " state IN ('offered', 'running') AND state = 'running' AND"
                          " started_ms < ?2",
                          "ii", agent_id, now - grace);
    while (st && sqlite3_step(st) == SQLITE_ROW && k < 128) {
        int64_t ti = sqlite3_column_int64(st, 0);
        if (!json_is_array(running) || !running_listed(running, ti, sqlite3_column_int64(st, 1)))
            gone[k++] = ti;
    }
    if (st)
        sqlite3_reset(st);
    for (int j = 0; j < k; j++)
        sched_ti_fail(p, gone[j], "not running on its agent", 1, now);
    sq_commit(p, began);
}

/* ---- metrics ---- */

static void emit_hist(struct buf *out, const char *name, const char *help, const struct shist *h)
{
    static const char *const le[SCHED_HIST_N] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
                                                 "0.025",  "0.05",  "0.1",    "0.25",  "0.5",
                                                 "1",      "2.5",   "5",      "10"};
    buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < SCHED_HIST_N; i++) {
        cum += h->bucket[i];
        buf_printf(out, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, le[i], cum);
    }
    buf_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n", name,
               h->count, name, h->sum, name, h->count);
}

void sched_metrics(struct plane *p, struct buf *out)
{
    struct sched *s = SCHED(p);
    if (!s)
        return;
    scount_metrics(p, out); /* O(1) in history: kept counts, not scans */
    sched_pool_metrics(p, out);
    emit_hist(out, "remex_plane_dispatch_latency_seconds",
              "Time from a task instance being queued to its offer.", &s->latency);
    emit_hist(out, "remex_plane_scheduler_loop_seconds", "Duration of one scheduler pass.",
              &s->loop);
    buf_printf(out,
               "# HELP remex_plane_scheduler_step_max_seconds Longest scheduler pass since the"
               " start (plane.mu held throughout).\n"
               "# TYPE remex_plane_scheduler_step_max_seconds gauge\n"
               "remex_plane_scheduler_step_max_seconds %.6f\n"
               "# HELP remex_plane_scheduler_step_max_cpu_seconds Most CPU time the scheduler"
               " thread used in one pass since the start (the rest of a longer pass is time"
               " it waited for a core).\n"
               "# TYPE remex_plane_scheduler_step_max_cpu_seconds gauge\n"
               "remex_plane_scheduler_step_max_cpu_seconds %.6f\n"
               "# HELP remex_plane_scheduler_slices_total Scheduler passes cut at their time"
               " budget, the rest of their work left to the next pass.\n"
               "# TYPE remex_plane_scheduler_slices_total counter\n"
               "remex_plane_scheduler_slices_total %" PRIu64 "\n"
               "# HELP remex_plane_scheduler_dags_examined_total DAGs a scheduler pass looked at"
               " (due for a cron run or a dagrun_timeout); DAGs not due cost nothing.\n"
               "# TYPE remex_plane_scheduler_dags_examined_total counter\n"
               "remex_plane_scheduler_dags_examined_total %" PRIu64 "\n"
               "# HELP remex_plane_scheduler_dags_due DAGs with a next due time (the due heap).\n"
               "# TYPE remex_plane_scheduler_dags_due gauge\n"
               "remex_plane_scheduler_dags_due %zu\n"
               "# HELP remex_plane_view_chunks_total Holds of the plane's lock by the admin"
               " run and grid views, which read a large run in chunks.\n"
               "# TYPE remex_plane_view_chunks_total counter\n"
               "remex_plane_view_chunks_total %" PRIu64 "\n"
               "# HELP remex_plane_view_hold_max_seconds Longest hold of the plane's lock by"
               " one chunk of the admin run and grid views since the start.\n"
               "# TYPE remex_plane_view_hold_max_seconds gauge\n"
               "remex_plane_view_hold_max_seconds %.6f\n",
               s->step_max, s->step_cpu_max, s->slices, s->dags_examined, s->nheap, s->view_chunks,
               s->view_hold_max);
}

/* ---- routes ---- */

const struct plane_body_cap plane_body_caps[] = {
    {"PUT", "/api/v1/dags/{dag_id}", SCHED_DAG_BODY_MAX},
    {NULL, NULL, 0},
};

const struct plane_route plane_routes_sched[] = {
    {"POST", "/api/v1/work", AUTHZ_SESSION, sched_h_work, PLANE_ROLE_WORKER},
    {"POST", "/api/v1/task-instances/{ti_id}/start", AUTHZ_TASK, sched_h_start, 0},
    {"POST", "/api/v1/task-instances/{ti_id}/state", AUTHZ_TASK, sched_h_state, 0},
    {"PUT", "/api/v1/task-instances/{ti_id}/xcom/{key}", AUTHZ_TASK, sched_h_xcom_put, 0},
    {"GET", "/api/v1/task-instances/{ti_id}/xcom/{key}", AUTHZ_TASK, sched_h_xcom_get, 0},
    {"POST", "/api/v1/task-instances/start", AUTHZ_SESSION, sched_h_start_batch, PLANE_ROLE_WORKER},
    {"POST", "/api/v1/task-instances/state", AUTHZ_SESSION, sched_h_state_batch, PLANE_ROLE_WORKER},
    {"POST", "/api/v1/triggers/poll", AUTHZ_SESSION, sched_h_trigger_poll, PLANE_ROLE_TRIGGERER},
    {"POST", "/api/v1/triggers/{trigger_id}/event", AUTHZ_SESSION, sched_h_trigger_event,
     PLANE_ROLE_TRIGGERER},
    {"POST", "/api/v1/triggers/events", AUTHZ_SESSION, sched_h_trigger_events,
     PLANE_ROLE_TRIGGERER},
    {"GET", "/api/v1/queues/depth", AUTHZ_SESSION, sched_h_queue_depth, 0},
    {"GET", "/api/v1/dags/{dag_id}/runs/{run_id}/status", AUTHZ_SESSION, sched_h_run_status,
     PLANE_ROLE_TRIGGERER},
    {"POST", "/api/v1/dags/manifest", AUTHZ_SESSION_OR_ADMIN, sched_h_manifest,
     PLANE_ROLE_DAG_PROCESSOR},
    {"PUT", "/api/v1/dags/{dag_id}", AUTHZ_SESSION_OR_ADMIN, sched_h_dag_put,
     PLANE_ROLE_DAG_PROCESSOR},
    {"POST", "/api/v1/dags/bulk", AUTHZ_SESSION_OR_ADMIN, sched_h_dags_bulk,
     PLANE_ROLE_DAG_PROCESSOR},
    {"GET", "/api/v1/admin/dags", AUTHZ_ADMIN, sched_h_dags_list, 0},
    {"GET", "/api/v1/admin/dags/{dag_id}", AUTHZ_ADMIN, sched_h_dag_show, 0},
    {"POST", "/api/v1/admin/dags/{dag_id}/pause", AUTHZ_ADMIN, sched_h_dag_pause, 0},
    {"POST", "/api/v1/admin/dags/{dag_id}/unpause", AUTHZ_ADMIN, sched_h_dag_unpause, 0},
    {"POST", "/api/v1/admin/dags/{dag_id}/runs", AUTHZ_ADMIN, sched_h_runs_trigger, 0},
    {"GET", "/api/v1/admin/dags/{dag_id}/runs", AUTHZ_ADMIN, sched_h_runs_list, 0},
    {"GET", "/api/v1/admin/dags/{dag_id}/runs/{run_id}", AUTHZ_ADMIN, sched_h_run_show, 0},
    {"POST", "/api/v1/admin/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear", AUTHZ_ADMIN,
     sched_h_task_clear, 0},
    {"POST", "/api/v1/admin/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/fail", AUTHZ_ADMIN,
     sched_h_task_fail, 0},
    {"POST", "/api/v1/admin/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/success", AUTHZ_ADMIN,
     sched_h_task_success, 0},
    {"POST", "/api/v1/admin/dags/{dag_id}/runs/{run_id}/clear", AUTHZ_ADMIN, sched_h_run_clear, 0},
    {"POST", "/api/v1/admin/dags/{dag_id}/runs/{run_id}/cancel", AUTHZ_ADMIN, sched_h_run_cancel,
     0},
    {"DELETE", "/api/v1/admin/dags/{dag_id}", AUTHZ_ADMIN, sched_h_dag_delete, 0},
    {"POST", "/api/v1/admin/db/clean", AUTHZ_ADMIN, sched_h_db_clean, 0},
    {"GET", "/api/v1/admin/pools", AUTHZ_ADMIN, sched_h_pools_list, 0},
    {"PUT", "/api/v1/admin/pools/{pool}", AUTHZ_ADMIN, sched_h_pool_put, 0},
    {"DELETE", "/api/v1/admin/pools/{pool}", AUTHZ_ADMIN, sched_h_pool_delete, 0},
    {"GET", "/api/v1/admin/import-errors", AUTHZ_ADMIN, sched_h_import_errors, 0},
    {"GET", "/api/v1/admin/dags/{dag_id}/grid", AUTHZ_ADMIN, sched_h_grid, 0},
    {"GET", "/api/v1/admin/dags/{dag_id}/runs/{run_id}/tasks/{task_id}", AUTHZ_ADMIN,
     sched_h_ti_show, 0},
    {"GET", "/api/v1/admin/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/log", AUTHZ_ADMIN,
     sched_h_ti_log, 0},
    {NULL, NULL, AUTHZ_NONE, NULL, 0},
};
