/*
 * Counts kept incrementally, so that /metrics and the work wake-ups cost the
 * same whatever the history holds: task instances by state, queued task
 * instances by queue, dag runs by state.
 *
 * They live in memory and follow every row change through SQLite's
 * pre-update hook: a change adds to the pending deltas of the open
 * transaction, which the commit hook folds into the counts. Nothing is
 * written to the database for them, and a change costs a column read, no
 * statement.
 *
 * Invariant: whenever plane.mu is free, the counts equal a full count of
 * the committed rows. Kept by: (1) a full count when the plane starts
 * (scount_init: the one cost that follows the history, once per start), so
 * a crash cannot leave them wrong; (2) any rolled-back transaction (the
 * store counts them in store_rollbacks, failed commits included) drops the
 * pending deltas and makes the next read count again from the database;
 * (3) the plane runs no statement on task_instances or dag_runs that can
 * fail after changing rows without its transaction being rolled back (a
 * statement-level abort would leave deltas of undone rows).
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
    int stale;               /* count again before the next read */
    uint_fast64_t rollbacks; /* store_rollbacks when last counted or committed */
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
    c->pending = 1;
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

static void scount_drop_pending(struct scount *c)
{
    memset(c->ti_pend, 0, sizeof(c->ti_pend));
    memset(c->run_pend, 0, sizeof(c->run_pend));
    for (size_t i = 0; i < c->nq; i++)
        c->q[i].pend = 0;
    c->pending = 0;
}

/* Commit hook: the transaction's deltas become counts, unless a rollback
 * happened since they began (then they are dropped and the next read counts
 * again). Returns 0: the commit goes on. */
static int scount_commit(void *arg)
{
    struct plane *p = arg;
    struct scount *c = SC(p);
    if (!c || !c->pending)
        return 0;
    if (atomic_load(&p->store_rollbacks) != c->rollbacks) {
        c->stale = 1;
    } else {
        for (int i = 0; i < DAG_TI__COUNT; i++)
            c->ti[i] += c->ti_pend[i];
        for (int i = 0; i < RUN_STATES; i++)
            c->run[i] += c->run_pend[i];
        for (size_t i = 0; i < c->nq; i++)
            c->q[i].n += c->q[i].pend;
    }
    scount_drop_pending(c);
    return 0;
}

/* Counts from the tables (mu held, no transaction of ours open). */
static void scount_full(struct plane *p, struct scount *c)
{
    memset(c->ti, 0, sizeof(c->ti));
    memset(c->run, 0, sizeof(c->run));
    for (size_t i = 0; i < c->nq; i++)
        c->q[i].n = 0;
    scount_drop_pending(c);
    c->rollbacks = atomic_load(&p->store_rollbacks);
    c->stale = 0;
    sqlite3_stmt *st = sq(p, "SELECT state, count(*) FROM task_instances GROUP BY state", "");
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        enum dag_ti_state v;
        if (dag_state_parse(sq_text(st, 0), &v) == 0)
            c->ti[v] += sqlite3_column_int64(st, 1);
    }
    if (st)
        sqlite3_reset(st);
    /* ti_queue holds the queued task instances only: O(queued). */
    st = sq(p, "SELECT queue, count(*) FROM task_instances WHERE state = 'queued' GROUP BY queue",
            "");
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        struct scount_queue *x = scount_queue(c, sq_text(st, 0));
        if (x)
            x->n = sqlite3_column_int64(st, 1);
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

/* Before a read (mu held): counts again after a rollback or a lost queue. */
static struct scount *scount_read(struct plane *p)
{
    struct scount *c = SC(p);
    if (c && (c->stale || atomic_load(&p->store_rollbacks) != c->rollbacks) && !c->pending)
        scount_full(p, c);
    return c;
}

remex_err scount_init(struct plane *p, struct remex_error *e)
{
    struct scount *c = calloc(1, sizeof(*c));
    if (!c)
        return remex_seterr(e, REMEX_ENOMEM, "sched: out of memory");
    SCHED(p)->counts = c;
    scount_full(p, c);
    sqlite3_preupdate_hook(p->db, scount_preupdate, p);
    sqlite3_commit_hook(p->db, scount_commit, p);
    return REMEX_OK;
}

void scount_free(struct plane *p)
{
    struct scount *c = SC(p);
    if (!c)
        return;
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
