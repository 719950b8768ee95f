/*
 * Batched starts and state reports: POST /api/v1/task-instances/start and
 * POST /api/v1/task-instances/state take up to SBATCH_MAX items, each the
 * body of the single route plus its ti_id and task_token, and answer one
 * result per item, in order.
 *
 * Authorization: the request carries the session token of a worker; each
 * item carries the task token of its try, checked as the single route checks
 * it (signature, expiry, its agent token usable), and must have been issued
 * to that same agent for that same task instance. A session alone reports
 * nothing: an item without a good task token is refused alone (401/403 in its
 * result) and the other items are applied.
 *
 * Each item is applied as the single route would apply it (same states,
 * same idempotence: a repeated start or report answers as the first did), all
 * of a request's items in one transaction. A state batch is answered after
 * that transaction committed (a 200 means every applied item is durable, as
 * for the single route); a start batch is committed lazily, as a single start
 * is (docs/plane.md). When the commit fails the whole request is answered
 * 503 and nothing of it is acknowledged.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/log.h"
#include "sched.h"

#define SBATCH_MAX 1000 /* items in one request */

/* One item as decoded and authorized before the lock is taken. */
struct bitem {
    int64_t ti, tr;
    int status;  /* 0: to apply; otherwise the item's result status */
    json_t *err; /* owned {"code","message"} when status is an error */
    /* start */
    int64_t pid;
    const char *host, *log_uri;
    /* state */
    struct sdisp_report rep;
    char res[32];
};

static void item_fail(struct bitem *it, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void item_fail(struct bitem *it, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    it->status = status;
    json_decref(it->err);
    it->err = json_pack("{ss ss}", "code", code, "message", msg);
}

/* A decoder's 400 reply (scratch) becomes the item's error, its field named
 * as items[i].field. */
static void item_fail_from(struct bitem *it, size_t i, struct plane_resp *scratch)
{
    json_t *e = scratch->body ? json_object_get(scratch->body, "error") : NULL; /* borrowed */
    const char *m = json_string_value(json_object_get(e, "message"));
    item_fail(it, scratch->status ? scratch->status : 400, "bad_request", "items[%zu].%s", i,
              m ? m : "invalid");
    json_decref(scratch->body);
    free(scratch->text);
    memset(scratch, 0, sizeof(*scratch));
}

/* Decodes and authorizes item i (mu not held: auth_check_token takes it).
 * is_state selects the state report fields. */
static void item_prepare(struct plane *p, const struct plane_req *rq, json_t *o, size_t i,
                         int is_state, struct bitem *it)
{
    struct plane_resp scratch = {0};
    if (!json_is_object(o)) {
        item_fail(it, 400, "bad_request", "items[%zu]: expected object", i);
        return;
    }
    if (rq_int(&scratch, o, "ti_id", 1, INT64_MAX, 0, 1, &it->ti) < 0 ||
        rq_int(&scratch, o, "try_number", 1, INT32_MAX, 0, 1, &it->tr) < 0) {
        item_fail_from(it, i, &scratch);
        return;
    }
    const char *tok = NULL;
    if (rq_str(&scratch, o, "task_token", 1, 4096, &tok) < 0) {
        item_fail_from(it, i, &scratch);
        return;
    }
    struct plane_principal who;
    char why[256];
    int code = auth_check_token(p, tok, AUTHZ_TASK, &who, why, sizeof(why));
    if (code == 0 && who.agent_id != rq->who.agent_id) {
        snprintf(why, sizeof(why), "task token of agent %" PRId64 " in a batch of agent %" PRId64,
                 who.agent_id, rq->who.agent_id);
        code = 403;
    } else if (code == 0 && who.ti_id != it->ti) {
        snprintf(why, sizeof(why), "task token of ti %" PRId64 " used for ti %" PRId64, who.ti_id,
                 it->ti);
        code = 403;
    }
    if (code) {
        log_warn("auth: POST %s items[%zu] refused (%d): %s", rq->path, i, code, why);
        if (code == 403)
            item_fail(it, 403, "forbidden", "credential not allowed here");
        else
            item_fail(it, 401, "unauthorized", "missing or invalid credential");
        return;
    }
    if (it->tr != who.try_number) {
        item_fail(it, 409, "conflict", "try_number does not match the task token");
        return;
    }
    int bad = is_state ? sdisp_report_decode(&scratch, o, &it->rep)
                       : sdisp_start_decode(&scratch, o, &it->pid, &it->host, &it->log_uri);
    if (bad)
        item_fail_from(it, i, &scratch);
}

/* The results array (owned) of n items. */
static json_t *results(struct bitem *items, size_t n, int is_state)
{
    json_t *out = json_array();
    for (size_t i = 0; out && i < n; i++) {
        struct bitem *it = &items[i];
        json_t *r = json_pack("{so si}", "ti_id",
                              it->ti > 0 ? json_integer((json_int_t)it->ti) : json_null(), "status",
                              it->status);
        if (!r)
            continue;
        if (it->status == 200)
            json_object_set_new(r, "state", json_string(is_state ? it->res : "running"));
        else if (it->err)
            json_object_set(r, "error", it->err);
        json_array_append_new(out, r);
    }
    return out;
}

static void batch(struct plane *p, struct plane_req *rq, struct plane_resp *rs, int is_state)
{
    json_t *arr = rq->body ? json_object_get(rq->body, "items") : NULL; /* borrowed */
    if (!json_is_array(arr) || json_array_size(arr) > SBATCH_MAX) {
        plane_error(rs, 400, "bad_request", "items: expected array of up to %d items", SBATCH_MAX);
        return;
    }
    size_t n = json_array_size(arr);
    struct bitem *items = calloc(n + 1, sizeof(*items));
    if (!items) {
        plane_error(rs, 500, "internal", "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        item_prepare(p, rq, json_array_get(arr, i), i, is_state, &items[i]);
    pthread_mutex_lock(&p->mu);
    int began = sq_begin(p);
    for (size_t i = 0; i < n; i++) {
        struct bitem *it = &items[i];
        if (it->status)
            continue;
        it->status = is_state
                         ? sdisp_state_one(p, rq->who.agent_id, it->ti, it->tr, &it->rep, it->res)
                         : sdisp_start_one(p, rq->who.agent_id, it->ti, it->tr, it->pid, it->host,
                                           it->log_uri);
        if (it->status == 409)
            item_fail(it, 409, "conflict",
                      is_state ? "stale report: the task instance moved on" : "the offer is gone");
    }
    int lost = 0;
    if (is_state)
        lost = sq_commit(p, began) != 0; /* rolled back: the worker reports again */
    else
        store_commit_later(p, began); /* as a single start: docs/plane.md */
    pthread_mutex_unlock(&p->mu);
    rs->committed = 1;
    if (lost)
        plane_store_failed(rs);
    else
        plane_reply(rs, 200, json_pack("{so}", "results", results(items, n, is_state)));
    for (size_t i = 0; i < n; i++)
        json_decref(items[i].err);
    free(items);
}

void sched_h_start_batch(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    batch(p, rq, rs, 0);
}

void sched_h_state_batch(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    batch(p, rq, rs, 1);
}
