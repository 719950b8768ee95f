/*
 * Counts kept incrementally, so that /metrics, the work wake-ups and the
 * plane's start cost the same whatever the history holds: task instances by
 * state, queued task instances by queue, dag runs by state.
 *
 * They follow every row change through SQLite's pre-update hook: a change
 * adds to the pending deltas of the open transaction (a column read, no
 * statement). store_commit runs scount_precommit inside the transaction just
 * before its COMMIT: the deltas by state are added to the state_counts table
 * (migration 140), a few upserts per transaction, so the table commits, or
 * rolls back, with the rows it counts and is exact after a crash. The commit
 * hook then folds the deltas into the counts in memory. A start reads the
 * table (O(1) in history); the queued-per-queue counts are read from the
 * partial ti_queue index (O(queued)) and not persisted.
 *
 * Invariants: whenever plane.mu is free, the counts in memory equal a full
 * count of the committed rows, and so does state_counts unless resave is set
 * (then the next commit writes the memory counts whole). Kept by: (1) a
 * rollback (store_rollbacks moves: an explicit ROLLBACK, a failed commit)
 * ends the transaction whose deltas are pending, so they are dropped at the
 * first change, flush or commit after it, and the table's rows of that
 * transaction were undone with it; (2) a commit that did not go through
 * store_commit (a write in autocommit mode) still updates the memory counts
 * and sets resave; (3) the plane runs no statement on task_instances or
 * dag_runs that can fail after changing rows without its transaction being
 * rolled back (a statement-level abort would leave deltas of undone rows).
 */
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "remex/log.h"
#include "sched.h"

/* Columns of the rows the hook reads (the CREATE TABLEs in sched.c). */
#define TI_COL_STATE  5
#define TI_COL_QUEUE  6
#define RUN_COL_STATE 7
#define RUN_STATES    4 /* queued, running, success, failed */
#define QUEUE_MAX     4096

static const char *const run_states[RUN_STATES] = {"queued", "running", "success", "failed"};

struct scount_queue {
    char *name;
    int64_t n, pend;
};

struct scount {
    int64_t ti[DAG_TI__COUNT], ti_pend[DAG_TI__COUNT];
    int64_t run[RUN_STATES], run_pend[RUN_STATES];
    struct scount_queue *q;
    size_t nq, capq;
    int pending;             /* deltas not yet committed */
    int unflushed;           /* deltas not yet written to state_counts */
    int resave;              /* state_counts behind: the next flush writes it whole */
    int saved_whole;         /* the open transaction's flush wrote them whole */
    int reload;              /* a rollback: read the counts again before the next read */
    int stale;               /* count the queues again before the next read */
    uint_fast64_t rollbacks; /* store_rollbacks when the pending deltas began */
};

static struct scount *SC(struct plane *p)
{
    return SCHED(p) ? SCHED(p)->counts : NULL;
}

static struct scount_queue *scount_queue(struct scount *c, const char *name)
{
    for (size_t i = 0; i < c->nq; i++)
        if (strcmp(c->q[i].name, name) == 0)
            return &c->q[i];
    if (c->nq == c->capq) {
        size_t cap = c->capq ? c->capq * 2 : 16;
        struct scount_queue *n = cap <= QUEUE_MAX ? realloc(c->q, cap * sizeof(*n)) : NULL;
        if (!n)
            return NULL;
        c->q = n;
        c->capq = cap;
    }
    char *dup = strdup(name);
    if (!dup)
        return NULL;
    c->q[c->nq] = (struct scount_queue){dup, 0, 0};
    return &c->q[c->nq++];
}

static const char *col_text(sqlite3 *db, int old, int col)
{
    sqlite3_value *v = NULL;
    int rc = old ? sqlite3_preupdate_old(db, col, &v) : sqlite3_preupdate_new(db, col, &v);
    return rc == SQLITE_OK && v ? (const char *)sqlite3_value_text(v) : NULL;
}

static int run_state_index(const char *s)
{
    for (int i = 0; s && i < RUN_STATES; i++)
        if (strcmp(s, run_states[i]) == 0)
            return i;
    return -1;
}

/* One side (old: -1, new: +1) of a task instance row. */
static void ti_side(struct scount *c, sqlite3 *db, int old, int64_t d)
{
    enum dag_ti_state st;
    const char *s = col_text(db, old, TI_COL_STATE);
    if (s && dag_state_parse(s, &st) == 0)
        c->ti_pend[st] += d;
    const char *q = col_text(db, old, TI_COL_QUEUE);
    struct scount_queue *x = q ? scount_queue(c, q) : NULL;
    if (x && s && strcmp(s, "queued") == 0)
        x->pend += d;
    else if (!x && q)
        c->stale = 1; /* no room for the queue: count it from the table */
}

static void scount_drop_pending(struct scount *c)
{
    memset(c->ti_pend, 0, sizeof(c->ti_pend));
    memset(c->run_pend, 0, sizeof(c->run_pend));
    for (size_t i = 0; i < c->nq; i++)
        c->q[i].pend = 0;
    c->pending = 0;
    c->unflushed = 0;
}

/* Drops the pending deltas when a rollback ended their transaction since
 * they began (invariant 1). A failed COMMIT is rolled back after the commit
 * hook ran, so the counts in memory are read again too (reload). */
static void scount_check_rollback(struct plane *p, struct scount *c)
{
    uint_fast64_t now = atomic_load(&p->store_rollbacks);
    if (now != c->rollbacks) {
        scount_drop_pending(c);
        c->saved_whole = 0;
        c->rollbacks = now;
        c->reload = 1;
    }
}

static void scount_preupdate(void *arg, sqlite3 *db, int op, const char *zdb, const char *tab,
                             sqlite3_int64 k1, sqlite3_int64 k2)
{
    struct plane *p = arg;
    struct scount *c = SC(p);
    (void)k1;
    (void)k2;
    if (!c || strcmp(zdb, "main") != 0)
        return;
    int ti = strcmp(tab, "task_instances") == 0;
    if (!ti && strcmp(tab, "dag_runs") != 0)
        return;
    scount_check_rollback(p, c);
    c->pending = 1;
    c->unflushed = 1;
    for (int old = 1; old >= 0; old--) {
        if ((old && op == SQLITE_INSERT) || (!old && op == SQLITE_DELETE))
            continue;
        int64_t d = old ? -1 : 1;
        if (ti) {
            ti_side(c, db, old, d);
        } else {
            int i = run_state_index(col_text(db, old, RUN_COL_STATE));
            if (i >= 0)
                c->run_pend[i] += d;
        }
    }
}

/* Adds d to (whole: sets to d) one persisted count. 0 on success. */
static int scount_store(struct plane *p, const char *kind, const char *state, int64_t d, int whole)
{
    int rc = whole ? sq_run(p,
                            "INSERT INTO state_counts (kind, state, n) VALUES (?, ?, ?)"
                            " ON CONFLICT (kind, state) DO UPDATE SET n = excluded.n",
                            "tti", kind, state, d)
                   : sq_run(p,
                            "INSERT INTO state_counts (kind, state, n) VALUES (?, ?, ?)"
                            " ON CONFLICT (kind, state) DO UPDATE SET n = n + excluded.n",
                            "tti", kind, state, d);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* store_precommit: the open transaction's deltas (or, after resave, the
 * whole counts) into state_counts, in the transaction. Nonzero fails the
 * commit. */
static int scount_precommit(struct plane *p)
{
    struct scount *c = SC(p);
    if (!c)
        return 0;
    scount_check_rollback(p, c);
    /* After a rollback with the table behind, neither is known right: wait
     * for the full count of scount_read. */
    int whole = c->resave && !c->reload, err = 0;
    if (!c->unflushed && !whole)
        return 0;
    for (int i = 0; i < DAG_TI__COUNT && !err; i++)
        if (whole || c->ti_pend[i])
            err = scount_store(p, "ti", dag_state_name((enum dag_ti_state)i),
                               whole ? c->ti[i] + c->ti_pend[i] : c->ti_pend[i], whole);
    for (int i = 0; i < RUN_STATES && !err; i++)
        if (whole || c->run_pend[i])
            err = scount_store(p, "run", run_states[i],
                               whole ? c->run[i] + c->run_pend[i] : c->run_pend[i], whole);
    if (err) {
        log_error("sched: state counts: %s", sqlite3_errmsg(p->db));
        return -1;
    }
    c->unflushed = 0;
    c->saved_whole = whole;
    return 0;
}

/* 1 when the pending deltas change a count by state (a row update that
 * kept its state, such as the recovery of offers at start, changes none). */
static int scount_pend_nonzero(const struct scount *c)
{
    for (int i = 0; i < DAG_TI__COUNT; i++)
        if (c->ti_pend[i])
            return 1;
    for (int i = 0; i < RUN_STATES; i++)
        if (c->run_pend[i])
            return 1;
    return 0;
}

/* Commit hook: the transaction's deltas become counts (unless a rollback
 * ended their transaction). Returns 0: the commit goes on. */
static int scount_commit(void *arg)
{
    struct plane *p = arg;
    struct scount *c = SC(p);
    if (!c)
        return 0;
    scount_check_rollback(p, c);
    if (c->saved_whole)
        c->resave = 0;
    c->saved_whole = 0;
    if (!c->pending)
        return 0;
    if (c->unflushed && scount_pend_nonzero(c)) { /* invariant 2 */
        if (!c->resave)
            log_warn("sched: a commit outside store_commit changed task or run states;"
                     " the persisted counts are written whole at the next commit");
        c->resave = 1;
    }
    for (int i = 0; i < DAG_TI__COUNT; i++)
        c->ti[i] += c->ti_pend[i];
    for (int i = 0; i < RUN_STATES; i++)
        c->run[i] += c->run_pend[i];
    for (size_t i = 0; i < c->nq; i++)
        c->q[i].n += c->q[i].pend;
    scount_drop_pending(c);
    return 0;
}

/* The queued task instances per queue, from the partial ti_queue index:
 * O(queued). mu held, no transaction of ours open. */
static void scount_queues(struct plane *p, struct scount *c)
{
    for (size_t i = 0; i < c->nq; i++)
        c->q[i].n = 0;
    c->stale = 0;
    sqlite3_stmt *st = sq(
        p, "SELECT queue, count(*) FROM task_instances WHERE state = 'queued' GROUP BY queue", "");
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        struct scount_queue *x = scount_queue(c, sq_text(st, 0));
        if (x)
            x->n = sqlite3_column_int64(st, 1);
        else
            c->stale = 1;
    }
    if (st)
        sqlite3_reset(st);
}

/* Counts by state from the tables: O(history). Only after a rollback while
 * state_counts was behind (resave), which then gets them whole. */
static void scount_full(struct plane *p, struct scount *c)
{
    memset(c->ti, 0, sizeof(c->ti));
    memset(c->run, 0, sizeof(c->run));
    sqlite3_stmt *st = sq(p, "SELECT state, count(*) FROM task_instances GROUP BY state", "");
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        enum dag_ti_state v;
        if (dag_state_parse(sq_text(st, 0), &v) == 0)
            c->ti[v] += sqlite3_column_int64(st, 1);
    }
    if (st)
        sqlite3_reset(st);
    st = sq(p, "SELECT state, count(*) FROM dag_runs GROUP BY state", "");
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        int i = run_state_index(sq_text(st, 0));
        if (i >= 0)
            c->run[i] = sqlite3_column_int64(st, 1);
    }
    if (st)
        sqlite3_reset(st);
}

/* Counts from state_counts and the queue index (mu held, no transaction of
 * ours open): O(1) in the history. */
static remex_err scount_load(struct plane *p, struct scount *c, struct remex_error *e)
{
    memset(c->ti, 0, sizeof(c->ti));
    memset(c->run, 0, sizeof(c->run));
    scount_drop_pending(c);
    c->rollbacks = atomic_load(&p->store_rollbacks);
    c->reload = 0;
    sqlite3_stmt *st = sq(p, "SELECT kind, state, n FROM state_counts", "");
    if (!st)
        return remex_seterr(e, REMEX_EIO, "sched: state_counts: %s", sqlite3_errmsg(p->db));
    while (sqlite3_step(st) == SQLITE_ROW) {
        enum dag_ti_state v;
        const char *kind = sq_text(st, 0), *state = sq_text(st, 1);
        int i;
        if (strcmp(kind, "ti") == 0 && dag_state_parse(state, &v) == 0)
            c->ti[v] = sqlite3_column_int64(st, 2);
        else if (strcmp(kind, "run") == 0 && (i = run_state_index(state)) >= 0)
            c->run[i] = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    if (c->resave)
        scount_full(p, c); /* the table is behind: the next commit writes these */
    scount_queues(p, c);
    return REMEX_OK;
}

/* Before a read (mu held): counts read again after a rollback, the queues
 * counted again after a lost queue. Outside a transaction only: inside one,
 * the table and the rows show uncommitted changes. */
static struct scount *scount_read(struct plane *p)
{
    struct scount *c = SC(p);
    if (!c)
        return NULL;
    scount_check_rollback(p, c);
    if (c->pending || !sqlite3_get_autocommit(p->db))
        return c;
    if (c->reload)
        scount_load(p, c, NULL);
    else if (c->stale)
        scount_queues(p, c);
    return c;
}

remex_err scount_init(struct plane *p, struct remex_error *e)
{
    struct scount *c = calloc(1, sizeof(*c));
    if (!c)
        return remex_seterr(e, REMEX_ENOMEM, "sched: out of memory");
    SCHED(p)->counts = c;
    remex_err rc = scount_load(p, c, e);
    if (rc)
        return rc;
    sqlite3_preupdate_hook(p->db, scount_preupdate, p);
    sqlite3_commit_hook(p->db, scount_commit, p);
    p->store_precommit = scount_precommit;
    return REMEX_OK;
}

void scount_free(struct plane *p)
{
    struct scount *c = SC(p);
    if (!c)
        return;
    p->store_precommit = NULL;
    if (p->db) {
        sqlite3_preupdate_hook(p->db, NULL, NULL);
        sqlite3_commit_hook(p->db, NULL, NULL);
    }
    for (size_t i = 0; i < c->nq; i++)
        free(c->q[i].name);
    free(c->q);
    free(c);
    SCHED(p)->counts = NULL;
}

/* A Prometheus label value: backslash, double quote and newline escaped. */
static void scount_label(struct buf *out, const char *v)
{
    for (; v && *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_putc(out, '\\');
        if (*v == '\n')
            buf_puts(out, "\\n");
        else
            buf_putc(out, *v);
    }
}

/* remex_plane_task_instances_queued{queue}: every queue a task instance or an
 * agent names, 0 when nothing is queued on it. */
static void scount_queued(struct plane *p, struct scount *c, struct buf *out)
{
    buf_puts(out, "# HELP remex_plane_task_instances_queued Queued task instances per queue.\n"
                  "# TYPE remex_plane_task_instances_queued gauge\n");
    /* The agents' queues (bounded by the agents) joined with the counts. */
    sqlite3_stmt *st = sq(p,
                          "SELECT DISTINCT j.value FROM agents a, json_each(a.queues) j"
                          " WHERE j.type = 'text'",
                          "");
    while (st && sqlite3_step(st) == SQLITE_ROW)
        scount_queue(c, sq_text(st, 0));
    if (st)
        sqlite3_reset(st);
    size_t *order = malloc((c->nq ? c->nq : 1) * sizeof(*order));
    for (size_t i = 0; order && i < c->nq; i++)
        order[i] = i;
    for (size_t i = 1; order && i < c->nq; i++) /* by name; a few queues */
        for (size_t k = i; k > 0 && strcmp(c->q[order[k - 1]].name, c->q[order[k]].name) > 0; k--) {
            size_t t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    for (size_t i = 0; order && i < c->nq; i++) {
        buf_puts(out, "remex_plane_task_instances_queued{queue=\"");
        scount_label(out, c->q[order[i]].name);
        buf_printf(out, "\"} %" PRId64 "\n", c->q[order[i]].n);
    }
    free(order);
}

void scount_metrics(struct plane *p, struct buf *out)
{
    struct scount *c = scount_read(p);
    if (!c)
        return;
    scount_queued(p, c, out);
    buf_puts(out, "# HELP remex_plane_task_instances Task instances by state.\n"
                  "# TYPE remex_plane_task_instances gauge\n");
    for (int i = 0; i < DAG_TI__COUNT; i++)
        buf_printf(out, "remex_plane_task_instances{state=\"%s\"} %" PRId64 "\n",
                   dag_state_name((enum dag_ti_state)i), c->ti[i]);
    buf_puts(out, "# HELP remex_plane_dag_runs Dag runs by state.\n"
                  "# TYPE remex_plane_dag_runs gauge\n");
    for (int i = 0; i < RUN_STATES; i++)
        buf_printf(out, "remex_plane_dag_runs{state=\"%s\"} %" PRId64 "\n", run_states[i],
                   c->run[i]);
}

/* ---- targeted work wake-ups ---- */

int sched_park_work(struct plane *p, struct plane_req *rq, json_t *queues, int64_t wait_ms)
{
    const char *keys[PLANE_PARK_KEYS];
    size_t n = json_array_size(queues);
    if (n > PLANE_PARK_KEYS)
        return plane_park(p, rq, PLANE_WAIT_WORK, wait_ms); /* woken by every wake-up */
    for (size_t i = 0; i < n; i++)
        keys[i] = json_string_value(json_array_get(queues, i));
    return plane_park_keys(p, rq, PLANE_WAIT_WORK, wait_ms, keys, (int)n);
}

/* Invariant kept: a queue with queued task instances never has fewer polls
 * resumed than it has task instances, up to the polls parked on it (a
 * resumed poll that finds nothing it may take parks again). Reads the
 * counts, no task instance. */
void sched_wake_work(struct plane *p)
{
    struct scount *c = scount_read(p);
    if (!c) {
        plane_wake(p, PLANE_WAIT_WORK); /* cannot tell the queues: wake every poll */
        return;
    }
    /* Deltas of the open transaction count too: the caller queued them and
     * commits before the polls it resumes run (they need mu). */
    for (size_t i = 0; i < c->nq; i++) {
        int64_t n = c->q[i].n + c->q[i].pend;
        if (n > 0)
            plane_wake_key(p, PLANE_WAIT_WORK, c->q[i].name, (size_t)n);
    }
}
