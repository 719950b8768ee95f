/*
 * XCom references: the plane stores where a value lives (URI, size, checksum,
 * content type), never the value. A task token writes only its own task
 * instance's XCom and reads only within its own dag run.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "remex/log.h"
#include "sched.h"

#define XCOM_KEY_MAX 250

/* Checks the path TI and key against the token; loads run/task/map. -1 after replying. */
static int xcom_scope(struct plane *p, struct plane_req *rq, struct plane_resp *rs, int64_t *run,
                      char *task_id, size_t tsz, int64_t *map_index)
{
    int64_t ti;
    if (rq_id(rq, rs, 0, &ti) < 0)
        return -1;
    const char *key = rq->param[1];
    if (!key || !*key || strlen(key) > XCOM_KEY_MAX) {
        plane_error(rs, 400, "bad_request", "key: expected 1..%d bytes", XCOM_KEY_MAX);
        return -1;
    }
    if (ti != rq->who.ti_id) {
        log_info("sched: task token of ti %" PRId64 " used for the xcom of ti %" PRId64,
                 rq->who.ti_id, ti);
        plane_error(rs, 403, "forbidden", "forbidden");
        return -1;
    }
    sqlite3_stmt *st = sq(p,
                          "SELECT run, task_id, map_index, agent_id, try_number, state FROM"
                          " task_instances WHERE id = ?1",
                          "i", ti);
    int ok = 0;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        *run = sqlite3_column_int64(st, 0);
        snprintf(task_id, tsz, "%s", sq_text(st, 1));
        *map_index = sqlite3_column_int64(st, 2);
        ok = sq_col_int(st, 3, -1) == rq->who.agent_id &&
             sqlite3_column_int64(st, 4) == rq->who.try_number && *run == rq->who.run_id &&
             sched_col_state(st, 5) == DAG_TI_RUNNING;
    }
    if (st)
        sqlite3_reset(st);
    if (!ok) {
        log_info("sched: task token of ti %" PRId64 " no longer holds its try", ti);
        plane_error(rs, 403, "forbidden", "forbidden");
        return -1;
    }
    return 0;
}

void sched_h_xcom_put(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    const char *uri, *sum, *ctype;
    int64_t size;
    if (!rq->body || !json_is_object(rq->body)) {
        plane_error(rs, 400, "bad_request", "body: expected object");
        return;
    }
    if (rq_str(rs, rq->body, "uri", 1, 4096, &uri) < 0 ||
        rq_int(rs, rq->body, "size", 0, INT64_MAX, 0, 1, &size) < 0 ||
        rq_str(rs, rq->body, "checksum", 0, 256, &sum) < 0 ||
        rq_str(rs, rq->body, "content_type", 0, 256, &ctype) < 0)
        return;
    char task_id[DAG_ID_MAX + 1];
    int64_t run, mi;
    pthread_mutex_lock(&p->mu);
    if (xcom_scope(p, rq, rs, &run, task_id, sizeof(task_id), &mi) < 0) {
        pthread_mutex_unlock(&p->mu);
        return;
    }
    int rc = sq_run(p,
                    "INSERT INTO xcom (run, task_id, map_index, key, uri, size, checksum,"
                    " content_type, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                    " ON CONFLICT (run, task_id, map_index, key) DO UPDATE SET uri = ?5,"
                    " size = ?6, checksum = ?7, content_type = ?8, updated_ms = ?9",
                    "itittitti", run, task_id, mi, rq->param[1], uri, size, sum ? sum : "",
                    ctype ? ctype : "application/octet-stream", plane_now_ms());
    pthread_mutex_unlock(&p->mu);
    if (rc != SQLITE_DONE)
        plane_error(rs, 500, "internal", "cannot store the xcom reference");
    else
        plane_reply(rs, 200, json_object());
}

void sched_h_xcom_get(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    const char *tq = plane_req_query(rq, "task_id"), *mq = plane_req_query(rq, "map_index");
    int64_t want_mi = -1;
    if (mq) {
        char *end = NULL;
        long long v = strtoll(mq, &end, 10);
        if (!*mq || *end || v < -1 || v > INT32_MAX) {
            plane_error(rs, 400, "bad_request", "map_index: expected integer >= -1");
            return;
        }
        want_mi = v;
    }
    if (tq && (!*tq || strlen(tq) > DAG_ID_MAX)) {
        plane_error(rs, 400, "bad_request", "task_id: invalid");
        return;
    }
    char task_id[DAG_ID_MAX + 1];
    int64_t run, mi;
    json_t *out = NULL;
    pthread_mutex_lock(&p->mu);
    if (xcom_scope(p, rq, rs, &run, task_id, sizeof(task_id), &mi) < 0) {
        pthread_mutex_unlock(&p->mu);
        return;
    }
    sqlite3_stmt *st =
        sq(p,
           "SELECT uri, size, checksum, content_type FROM xcom WHERE run = ?1 AND"
           " task_id = ?2 AND map_index = ?3 AND key = ?4",
           "itit", run, tq ? tq : task_id, mq ? want_mi : (tq ? -1 : mi), rq->param[1]);
    if (st && sqlite3_step(st) == SQLITE_ROW)
        out = json_pack("{ss sI ss ss}", "uri", sq_text(st, 0), "size",
                        (json_int_t)sqlite3_column_int64(st, 1), "checksum", sq_text(st, 2),
                        "content_type", sq_text(st, 3));
    if (st)
        sqlite3_reset(st);
    pthread_mutex_unlock(&p->mu);
    if (!out)
        plane_error(rs, 404, "not_found", "no such xcom");
    else
        plane_reply(rs, 200, out);
}
