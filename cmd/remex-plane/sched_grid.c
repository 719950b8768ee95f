/*
 * Admin views for the web UI and remexctl: a DAG's grid (runs x tasks), a
 * task instance with every try and its XCom references, and a try's log when
 * the plane can read where the worker wrote it.
 *
 * Tries: sched_try_record copies a task instance's row into ti_tries when a
 * try ends in a state another try can follow (failed, up_for_retry, skipped,
 * deferred) and when a finished try is cleared, so earlier tries stay
 * visible after a retry or a clear; the row itself is the latest try. A try
 * ending in success costs no copy (the dispatch path stays one row update).
 *
 * Logs: a try's log_uri comes from its worker. The plane reads it only when it
 * is a file:// URI of an absolute path without "..", ending in ".log", naming
 * a regular file (opened O_NOFOLLOW) - the single-machine setup where the
 * worker's log folder is on the plane's disk. A read returns at most
 * GRID_LOG_CHUNK bytes from an offset; bytes that are not UTF-8 are replaced
 * by U+FFFD so the reply stays JSON.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plane.h"
#include "remex/buf.h"
#include "sched.h"

#define GRID_RUNS_MAX  1000
#define GRID_LOG_CHUNK (256 * 1024)
#define GRID_RESTARTS  3 /* new DAG versions met while listing the tasks */

void sched_try_record(struct plane *p, int64_t ti)
{
    sq_run(p,
           "INSERT OR REPLACE INTO ti_tries SELECT id, try_number, state, agent_id, hostname,"
           " started_ms, ended_ms, exit_code, signal, reason, log_uri FROM task_instances"
           " WHERE id = ?1 AND try_number > 0 AND state IN ('success', 'failed',"
           " 'up_for_retry', 'skipped', 'deferred')",
           "i", ti);
}

/* The task instances of one run into tis ({task_id: [state, try_number]}),
 * SCHED_VIEW_CHUNK of them per hold of plane.mu in task_id order (the
 * unique index on run, task_id, map_index): each as of its chunk. */
static void grid_run_tis(struct plane *p, json_t *tis, int64_t run)
{
    char after[DAG_ID_MAX + 1] = "";
    for (int more = 1; more;) {
        int n = 0, stuck = 0;
        uint64_t t0 = sched_view_lock(p);
        sqlite3_stmt *st = sq(p,
                              "SELECT task_id, state, try_number FROM task_instances WHERE"
                              " run = ?1 AND task_id > ?2 AND map_index = -1 ORDER BY task_id"
                              " LIMIT ?3",
                              "iti", run, after, (int64_t)SCHED_VIEW_CHUNK);
        while (st && sqlite3_step(st) == SQLITE_ROW) {
            /* An id longer than the cap (never written by the plane) would
             * not move the key forward: end there rather than loop. */
            if (snprintf(after, sizeof(after), "%s", sq_text(st, 0)) > DAG_ID_MAX)
                stuck = 1;
            n++;
            json_object_set_new(
                tis, sq_text(st, 0),
                json_pack("[sI]", sq_text(st, 1), (json_int_t)sqlite3_column_int64(st, 2)));
        }
        if (st)
            sqlite3_reset(st);
        sched_view_unlock(p, t0);
        more = n == SCHED_VIEW_CHUNK && !stuck;
    }
}

/* The tasks of the DAG version hash into tasks ([{task_id, upstream}] in
 * topological order), SCHED_VIEW_CHUNK per hold of plane.mu. The DAG is
 * found again at each chunk: when a new version replaced it meanwhile, the
 * list starts again from the new one (at most GRID_RESTARTS times, then
 * the rest is read in one hold). */
static void grid_tasks(struct plane *p, json_t *tasks, const char *dag_id, char *hash)
{
    size_t next = 0;
    for (int restarts = 0;;) {
        uint64_t t0 = sched_view_lock(p);
        struct sdag *d = sdag_find(p, dag_id);
        if (!d) { /* deleted meanwhile: the grid shows what was read */
            sched_view_unlock(p, t0);
            return;
        }
        const struct dag *g = d->dag;
        if (strcmp(g->hash, hash) != 0) {
            restarts++;
            memcpy(hash, g->hash, DAG_HASH_HEX);
            json_array_clear(tasks);
            next = 0;
        }
        size_t stop = restarts >= GRID_RESTARTS ? g->ntasks : next + SCHED_VIEW_CHUNK;
        for (; next < g->ntasks && next < stop; next++) {
            const struct dag_task *t = &g->tasks[g->topo[next]];
            json_t *up = json_array();
            for (size_t u = 0; u < t->upstream.n; u++)
                json_array_append_new(up, json_string(t->upstream.v[u]));
            json_array_append_new(tasks,
                                  json_pack("{ss so}", "task_id", t->task_id, "upstream", up));
        }
        int done = next >= g->ntasks;
        sched_view_unlock(p, t0);
        if (done)
            return;
    }
}

/* GET /api/v1/admin/dags/{dag_id}/grid?limit=N (newest N runs, default 25):
 * {dag_id, tasks: [{task_id, upstream}], dag_runs: [{run_id, state,
 * logical_date, start_date, end_date, tis: {task_id: [state, try_number]}}]}
 * with runs oldest first (the grid's columns left to right). The runs are
 * read in one hold of plane.mu (at most GRID_RUNS_MAX), the DAG's tasks and
 * each run's task instances in chunks (grid_tasks, grid_run_tis). */
void sched_h_grid(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    const char *lim = plane_req_query(rq, "limit");
    char *end = NULL;
    long limit = lim ? strtol(lim, &end, 10) : 25;
    if (lim && (*end || limit < 1 || limit > GRID_RUNS_MAX)) {
        plane_error(rs, 400, "bad_request", "limit: expected integer in [1, %d]", GRID_RUNS_MAX);
        return;
    }
    uint64_t t0 = sched_view_lock(p);
    struct sdag *d = sdag_find(p, rq->param[0]);
    if (!d) {
        pthread_mutex_unlock(&p->mu);
        plane_error(rs, 404, "not_found", "no such dag");
        return;
    }
    char hash[DAG_HASH_HEX];
    memcpy(hash, d->dag->hash, sizeof(hash));
    json_t *tasks = json_array(), *runs = json_array();
    sqlite3_stmt *st = sq(p,
                          "SELECT id, run_id, state, logical_date, started_ms, ended_ms FROM"
                          " (SELECT * FROM dag_runs WHERE dag_id = ?1 ORDER BY logical_date DESC,"
                          " id DESC LIMIT ?2) ORDER BY logical_date, id",
                          "ti", rq->param[0], (int64_t)limit);
    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(
            runs, json_pack("{sI ss ss so so so so}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                            "run_id", sq_text(st, 1), "state", sq_text(st, 2), "logical_date",
                            sched_col_time(st, 3), "start_date", sched_col_time(st, 4), "end_date",
                            sched_col_time(st, 5), "tis", json_object()));
    if (st)
        sqlite3_reset(st);
    sched_view_unlock(p, t0);
    grid_tasks(p, tasks, rq->param[0], hash);
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        grid_run_tis(p, json_object_get(r, "tis"), json_integer_value(json_object_get(r, "id")));
        json_object_del(r, "id");
    }
    plane_reply(rs, 200,
                json_pack("{ss so so}", "dag_id", rq->param[0], "tasks", tasks, "dag_runs", runs));
}

static json_t *col_int_or_null(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL
               ? json_null()
               : json_integer(sqlite3_column_int64(st, col));
}

static json_t *col_str_or_null(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? json_null()
                                                       : json_string(sq_text(st, col));
}

/* One try from columns try_number, state, agent_id, hostname, started_ms,
 * ended_ms, exit_code, signal, reason, log_uri, agent name. */
static json_t *try_json(sqlite3_stmt *st)
{
    int64_t s = sq_col_int(st, 4, 0), e = sq_col_int(st, 5, 0);
    return json_pack("{sI ss so so so so so so so so so so}", "try_number",
                     (json_int_t)sqlite3_column_int64(st, 0), "state", sq_text(st, 1), "agent_id",
                     col_int_or_null(st, 2), "agent_name", col_str_or_null(st, 10), "hostname",
                     col_str_or_null(st, 3), "start_date", sched_col_time(st, 4), "end_date",
                     sched_col_time(st, 5), "duration",
                     s > 0 && e >= s ? json_real((double)(e - s) / 1000.0) : json_null(),
                     "exit_code", col_int_or_null(st, 6), "signal", col_int_or_null(st, 7),
                     "reason", col_str_or_null(st, 8), "log_uri", col_str_or_null(st, 9));
}

#define TRY_COLS                                                                                   \
    "try_number, state, agent_id, hostname, started_ms, ended_ms, exit_code, signal, reason,"      \
    " log_uri, (SELECT name FROM agents a WHERE a.id = agent_id)"

/* TI id and run id of (dag_id, run_id, task_id) of the path; 0 when absent. */
static int64_t path_ti(struct plane *p, struct plane_req *rq, int64_t *run)
{
    sqlite3_stmt *st = sq(p,
                          "SELECT t.id, t.run FROM task_instances t JOIN dag_runs r ON"
                          " r.id = t.run WHERE r.dag_id = ?1 AND r.run_id = ?2 AND"
                          " t.task_id = ?3 AND t.map_index = -1",
                          "ttt", rq->param[0], rq->param[1], rq->param[2]);
    int64_t id = 0;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        *run = sqlite3_column_int64(st, 1);
    }
    if (st)
        sqlite3_reset(st);
    return id;
}

/* GET /api/v1/admin/dags/{dag_id}/runs/{run_id}/tasks/{task_id}: the task
 * instance, its tries (ended ones from ti_tries, then the current one when
 * it has not ended) and its XCom references. */
void sched_h_ti_show(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    int64_t run = 0;
    pthread_mutex_lock(&p->mu);
    int64_t ti = path_ti(p, rq, &run);
    if (!ti) {
        pthread_mutex_unlock(&p->mu);
        plane_error(rs, 404, "not_found", "no such task instance");
        return;
    }
    json_t *tries = json_array(), *xcom = json_array(), *cur = NULL;
    sqlite3_stmt *st =
        sq(p, "SELECT " TRY_COLS " FROM ti_tries WHERE ti = ?1 ORDER BY try_number", "i", ti);
    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(tries, try_json(st));
    if (st)
        sqlite3_reset(st);
    st = sq(p, "SELECT " TRY_COLS ", queue, map_index FROM task_instances WHERE id = ?1", "i", ti);
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        cur = try_json(st);
        json_object_set_new(cur, "queue", json_string(sq_text(st, 11)));
        json_object_set_new(cur, "map_index", json_integer(sqlite3_column_int64(st, 12)));
    }
    if (st)
        sqlite3_reset(st);
    st = sq(p,
            "SELECT key, uri, size, checksum, content_type FROM xcom WHERE run = ?1 AND"
            " task_id = ?2 AND map_index = -1 ORDER BY key",
            "it", run, rq->param[2]);
    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(xcom, json_pack("{ss ss sI ss ss}", "key", sq_text(st, 0), "uri",
                                              sq_text(st, 1), "size",
                                              (json_int_t)sqlite3_column_int64(st, 2), "checksum",
                                              sq_text(st, 3), "content_type", sq_text(st, 4)));
    if (st)
        sqlite3_reset(st);
    pthread_mutex_unlock(&p->mu);
    if (!cur) {
        json_decref(tries);
        json_decref(xcom);
        plane_error(rs, 500, "internal", "cannot read the task instance");
        return;
    }
    /* The current try is listed unless ti_tries already holds its end. */
    json_int_t n = json_integer_value(json_object_get(cur, "try_number"));
    json_t *last = json_array_get(tries, json_array_size(tries) - 1);
    /* ... or the try has not started again since (cleared: none; queued after a
     * deferral): then what ti_tries holds is still the latest about it. */
    const char *cs = json_string_value(json_object_get(cur, "state"));
    int ended =
        last && json_integer_value(json_object_get(last, "try_number")) == n &&
        (strcmp(json_string_value(json_object_get(last, "state")), cs) == 0 ||
         strcmp(cs, "none") == 0 || strcmp(cs, "scheduled") == 0 || strcmp(cs, "queued") == 0);
    json_t *out =
        json_pack("{ss ss ss sO sO sI sO so so}", "dag_id", rq->param[0], "run_id", rq->param[1],
                  "task_id", rq->param[2], "state", json_object_get(cur, "state"), "queue",
                  json_object_get(cur, "queue"), "try_number", n, "map_index",
                  json_object_get(cur, "map_index"), "tries", tries, "xcom", xcom);
    if (n > 0 && !ended) {
        json_object_del(cur, "queue");
        json_object_del(cur, "map_index");
        if (last && json_integer_value(json_object_get(last, "try_number")) == n)
            json_array_remove(tries, json_array_size(tries) - 1);
        json_array_append(tries, cur);
    }
    json_decref(cur);
    plane_reply(rs, 200, out);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid or
 * cut short. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return len;
}

/* 1 when the n bytes at s are a lead byte and continuation bytes only, fewer
 * than the lead byte announces. */
static int utf8_cut(const unsigned char *s, size_t n)
{
    size_t need = s[0] >= 0xF0 && s[0] <= 0xF4   ? 4
                  : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
                  : s[0] >= 0xC2 && s[0] <= 0xDF ? 2
                                                 : 0;
    if (need == 0 || n >= need)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return 1;
}

/* Appends n bytes of s to out as UTF-8, each invalid byte as U+FFFD and NUL
 * as U+FFFD too. A sequence cut by the end of the chunk is left out (the
 * task may still be writing it): *used tells how many bytes were consumed. */
static remex_err utf8_clean(const unsigned char *s, size_t n, struct buf *out, size_t *used)
{
    size_t i = 0;
    while (i < n) {
        size_t l = utf8_len(s + i, n - i);
        if (l == 0 && utf8_cut(s + i, n - i))
            break; /* the start of a sequence the next read may complete */
        remex_err rc =
            l == 0 || s[i] == 0 ? buf_append(out, "\xEF\xBF\xBD", 3) : buf_append(out, s + i, l);
        if (rc)
            return rc;
        i += l ? l : 1;
    }
    *used = i;
    return REMEX_OK;
}

/* The local path of a log URI the plane may read, or NULL. */
static const char *log_path(const char *uri)
{
    const char *path = strncmp(uri, "file://", 7) == 0 ? uri + 7 : NULL;
    size_t n = path ? strlen(path) : 0;
    if (!path || path[0] != '/' || strstr(path, "/../") || n < 5 || strcmp(path + n - 4, ".log"))
        return NULL;
    return path;
}

/* Reads up to GRID_LOG_CHUNK bytes of path from off into o's content; sets
 * size, next_offset, complete. -1 with errno when unreadable. */
static int log_read(const char *path, int64_t off, json_t *o)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    struct stat sb;
    if (fd < 0)
        return -1;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    if (off > (int64_t)sb.st_size)
        off = (int64_t)sb.st_size;
    size_t want = (size_t)((int64_t)sb.st_size - off);
    if (want > GRID_LOG_CHUNK)
        want = GRID_LOG_CHUNK;
    unsigned char *raw = malloc(want + 1);
    ssize_t got = raw ? pread(fd, raw, want, (off_t)off) : -1;
    close(fd);
    if (got < 0) {
        free(raw);
        return -1;
    }
    struct buf out = BUF_INIT((size_t)GRID_LOG_CHUNK * 3 + 16);
    size_t used = 0;
    if (utf8_clean(raw, (size_t)got, &out, &used) != REMEX_OK) {
        free(raw);
        buf_free(&out);
        errno = ENOMEM;
        return -1;
    }
    free(raw);
    json_object_set_new(o, "content", json_stringn(buf_cstr(&out), out.len));
    json_object_set_new(o, "size", json_integer((json_int_t)sb.st_size));
    json_object_set_new(o, "next_offset", json_integer((json_int_t)(off + (int64_t)used)));
    buf_free(&out);
    return 0;
}

/* GET .../tasks/{task_id}/log?try_number=N&offset=N: {try_number, location,
 * readable, content, offset, next_offset, size} or, when the plane cannot read
 * the location, readable false with the reason. */
void sched_h_ti_log(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    const char *tq = plane_req_query(rq, "try_number"), *oq = plane_req_query(rq, "offset");
    char *end = NULL;
    long long want_try = tq ? strtoll(tq, &end, 10) : 0, off = 0;
    if (tq && (*end || want_try < 1 || want_try > 100000)) {
        plane_error(rs, 400, "bad_request", "try_number: expected integer in [1, 100000]");
        return;
    }
    if (oq && ((off = strtoll(oq, &end, 10)) < 0 || *end || off > (1LL << 50))) {
        plane_error(rs, 400, "bad_request", "offset: expected a non-negative integer");
        return;
    }
    int64_t run = 0, tno = 0;
    char *uri = NULL;
    pthread_mutex_lock(&p->mu);
    int64_t ti = path_ti(p, rq, &run);
    sqlite3_stmt *st =
        !ti  ? NULL
        : tq ? sq(p,
                  "SELECT try_number, log_uri FROM task_instances WHERE id = ?1 AND try_number = ?2"
                  " UNION ALL SELECT try_number, log_uri FROM ti_tries WHERE ti = ?1 AND"
                  " try_number = ?2",
                  "ii", ti, (int64_t)want_try)
             : sq(p, "SELECT try_number, log_uri FROM task_instances WHERE id = ?1", "i", ti);
    int found = st && sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        tno = sqlite3_column_int64(st, 0);
        if (sqlite3_column_type(st, 1) != SQLITE_NULL)
            uri = strdup(sq_text(st, 1));
    }
    if (st)
        sqlite3_reset(st);
    pthread_mutex_unlock(&p->mu);
    if (!found) {
        plane_error(rs, 404, "not_found", ti ? "no such try" : "no such task instance");
        return;
    }
    json_t *o =
        json_pack("{sI so sb sI}", "try_number", (json_int_t)tno, "location",
                  uri ? json_string(uri) : json_null(), "readable", 0, "offset", (json_int_t)off);
    const char *path = uri ? log_path(uri) : NULL;
    if (!uri)
        json_object_set_new(o, "reason", json_string("the worker reported no log location yet"));
    else if (!path)
        json_object_set_new(o, "reason",
                            json_string("the log is where its agent put it: the plane reads only"
                                        " local file:// logs (*.log)"));
    else if (log_read(path, off, o) != 0)
        json_object_set_new(o, "reason",
                            json_string(errno == ENOENT ? "no such file on the plane's machine"
                                                        : "the plane cannot read this file"));
    else
        json_object_set_new(o, "readable", json_true());
    free(uri);
    plane_reply(rs, 200, o);
}
