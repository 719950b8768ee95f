/*
 * Counts kept incrementally, so that /metrics and the work wake-ups cost the
 * same whatever the history holds: task instances by state, queued task
 * instances by queue, dag runs by state.
 *
 * Invariant: after every committed transaction,
 *   ti_state_counts.n  = SELECT count(*) FROM task_instances WHERE state = S
 *   ti_queued_counts.n = SELECT count(*) FROM task_instances
 *                        WHERE state = 'queued' AND queue = Q
 *   run_state_counts.n = SELECT count(*) FROM dag_runs WHERE state = S
 * (a missing row counts 0). SQLite triggers keep them in the same transaction
 * as the change they count, so the durability contract of docs/plane.md holds
 * for them as for the rows: a crash, a rolled-back commit or a deferred start
 * lost in a crash leaves counts and rows in agreement, with nothing to
 * rebuild at start. The tables are a few rows each (states, queues): one page
 * each, hot in the cache.
 *
 * Rows are never deleted: a queue keeps its series (at 0) once a task
 * instance named it, as remex_plane_task_instances_queued promises.
 */
#include <inttypes.h>
#include <string.h>

#include "remex/log.h"
#include "sched.h"

/* Migration 120 (sched.c's array): the tables, their contents from a full
 * count (once), and the triggers. INSERT ... SELECT ... WHERE is the form of
 * an upsert that a trigger can make conditional. */
const char scount_migration_sql[] =
    "CREATE TABLE ti_state_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE ti_queued_counts (queue TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE run_state_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO ti_state_counts SELECT state, count(*) FROM task_instances GROUP BY state;"
    "INSERT INTO ti_queued_counts SELECT queue, sum(state = 'queued') FROM task_instances"
    " GROUP BY queue;"
    "INSERT INTO run_state_counts SELECT state, count(*) FROM dag_runs GROUP BY state;"
    "CREATE TRIGGER ti_counts_insert AFTER INSERT ON task_instances BEGIN"
    " INSERT INTO ti_state_counts VALUES (NEW.state, 1)"
    "  ON CONFLICT (state) DO UPDATE SET n = n + 1;"
    " INSERT INTO ti_queued_counts VALUES (NEW.queue, NEW.state = 'queued')"
    "  ON CONFLICT (queue) DO UPDATE SET n = n + excluded.n;"
    " END;"
    "CREATE TRIGGER ti_counts_delete AFTER DELETE ON task_instances BEGIN"
    " UPDATE ti_state_counts SET n = n - 1 WHERE state = OLD.state;"
    " UPDATE ti_queued_counts SET n = n - 1 WHERE OLD.state = 'queued' AND queue = OLD.queue;"
    " END;"
    "CREATE TRIGGER ti_counts_update AFTER UPDATE OF state, queue ON task_instances"
    " WHEN OLD.state IS NOT NEW.state OR OLD.queue IS NOT NEW.queue BEGIN"
    " UPDATE ti_state_counts SET n = n - 1 WHERE OLD.state IS NOT NEW.state AND state = OLD.state;"
    " INSERT INTO ti_state_counts SELECT NEW.state, 1 WHERE OLD.state IS NOT NEW.state"
    "  ON CONFLICT (state) DO UPDATE SET n = n + 1;"
    " UPDATE ti_queued_counts SET n = n - 1 WHERE OLD.state = 'queued' AND queue = OLD.queue;"
    " INSERT INTO ti_queued_counts SELECT NEW.queue, NEW.state = 'queued' WHERE 1"
    "  ON CONFLICT (queue) DO UPDATE SET n = n + excluded.n;"
    " END;"
    "CREATE TRIGGER run_counts_insert AFTER INSERT ON dag_runs BEGIN"
    " INSERT INTO run_state_counts VALUES (NEW.state, 1)"
    "  ON CONFLICT (state) DO UPDATE SET n = n + 1;"
    " END;"
    "CREATE TRIGGER run_counts_delete AFTER DELETE ON dag_runs BEGIN"
    " UPDATE run_state_counts SET n = n - 1 WHERE state = OLD.state;"
    " END;"
    "CREATE TRIGGER run_counts_update AFTER UPDATE OF state ON dag_runs"
    " WHEN OLD.state IS NOT NEW.state BEGIN"
    " UPDATE run_state_counts SET n = n - 1 WHERE state = OLD.state;"
    " INSERT INTO run_state_counts VALUES (NEW.state, 1)"
    "  ON CONFLICT (state) DO UPDATE SET n = n + 1;"
    " END;";

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
 * agent names, 0 when nothing is queued on it. Reads the count table and the
 * agents (bounded by the agents), never the task instances. */
static void scount_queued(struct plane *p, struct buf *out)
{
    buf_puts(out, "# HELP remex_plane_task_instances_queued Queued task instances per queue.\n"
                  "# TYPE remex_plane_task_instances_queued gauge\n");
    sqlite3_stmt *st = sq(p,
                          "SELECT q, SUM(n) FROM (SELECT queue AS q, n FROM ti_queued_counts"
                          " UNION ALL SELECT j.value, 0 FROM agents a, json_each(a.queues) j"
                          " WHERE j.type = 'text') GROUP BY q ORDER BY q",
                          "");
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        buf_puts(out, "remex_plane_task_instances_queued{queue=\"");
        scount_label(out, sq_text(st, 0));
        buf_printf(out, "\"} %" PRId64 "\n", (int64_t)sqlite3_column_int64(st, 1));
    }
    if (st)
        sqlite3_reset(st);
}

void scount_metrics(struct plane *p, struct buf *out)
{
    scount_queued(p, out);
    buf_puts(out, "# HELP remex_plane_task_instances Task instances by state.\n"
                  "# TYPE remex_plane_task_instances gauge\n");
    int64_t count[DAG_TI__COUNT] = {0};
    sqlite3_stmt *st = sq(p, "SELECT state, n FROM ti_state_counts", "");
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        enum dag_ti_state v;
        if (dag_state_parse(sq_text(st, 0), &v) == 0)
            count[v] += sqlite3_column_int64(st, 1);
    }
    if (st)
        sqlite3_reset(st);
    for (int i = 0; i < DAG_TI__COUNT; i++)
        buf_printf(out, "remex_plane_task_instances{state=\"%s\"} %" PRId64 "\n",
                   dag_state_name((enum dag_ti_state)i), count[i]);
    static const char *const rstates[] = {"queued", "running", "success", "failed"};
    buf_puts(out, "# HELP remex_plane_dag_runs Dag runs by state.\n"
                  "# TYPE remex_plane_dag_runs gauge\n");
    for (size_t i = 0; i < sizeof(rstates) / sizeof(rstates[0]); i++) {
        int64_t n =
            sq_int(p, 0, "SELECT n FROM run_state_counts WHERE state = ?1", "t", rstates[i]);
        buf_printf(out, "remex_plane_dag_runs{state=\"%s\"} %" PRId64 "\n", rstates[i], n);
    }
}

int64_t scount_queued_on(struct plane *p, const char *queue)
{
    return sq_int(p, 0, "SELECT n FROM ti_queued_counts WHERE queue = ?1", "t", queue);
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
 * resumed poll that finds nothing it may take parks again). The count table
 * holds one row per queue ever used, so this reads no task instance. */
void sched_wake_work(struct plane *p)
{
    sqlite3_stmt *st = sq(p, "SELECT queue, n FROM ti_queued_counts WHERE n > 0", "");
    if (!st) {
        plane_wake(p, PLANE_WAIT_WORK); /* cannot tell the queues: wake every poll */
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t n = sqlite3_column_int64(st, 1);
        plane_wake_key(p, PLANE_WAIT_WORK, sq_text(st, 0), n > 0 ? (size_t)n : 0);
    }
    sqlite3_reset(st);
}
