/*
 * Dispatch: the work long poll and its offers, start, state reports, offer
 * expiry, retries coming due and execution timeouts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "remex/log.h"
#include "remex/timeutil.h"
#include "sched.h"

#define WORK_MAX_ASSIGN 64
#define DUE_BATCH       256

int64_t sdisp_due(struct plane *p, int64_t now)
{
    struct sched *s = SCHED(p);
    int64_t ids[DUE_BATCH];
    int states[DUE_BATCH], cancelled[DUE_BATCH], n = 0;
    sqlite3_stmt *st = sq(p,
                          "SELECT id, state, cancel_ms FROM task_instances WHERE due_ms <= ?1"
                          " ORDER BY due_ms LIMIT 256",
                          "i", now);
    while (st && n < DUE_BATCH && sqlite3_step(st) == SQLITE_ROW) {
        ids[n] = sqlite3_column_int64(st, 0);
        states[n] = (int)sched_col_state(st, 1);
        cancelled[n] = sqlite3_column_type(st, 2) != SQLITE_NULL;
        n++;
    }
    if (st)
        sqlite3_reset(st);
    int64_t grace = 2 * p->cfg.heartbeat_interval_ms;
    for (int i = 0; i < n; i++) {
        switch (states[i]) {
        case DAG_TI_OFFERED:
            log_info("sched: offer of task instance %" PRId64 " expired", ids[i]);
            sq_run(p,
                   "UPDATE task_instances SET state = 'queued', agent_id = NULL, due_ms = NULL,"
                   " offer_expires_ms = NULL WHERE id = ?1",
                   "i", ids[i]);
            s->queued_any = 1;
            break;
        case DAG_TI_UP_FOR_RETRY:
            sq_run(
                p,
                "UPDATE task_instances SET state = 'queued', try_number = try_number + 1,"
                " queued_ms = ?2, agent_id = NULL, due_ms = NULL, next_retry_ms = NULL,"
                " trigger_event = NULL, resume_with = NULL, report_state = NULL, cancel_ms = NULL,"
                " started_ms = NULL, ended_ms = NULL, exit_code = NULL, signal = NULL,"
                " log_uri = NULL WHERE id = ?1",
                "ii", ids[i], now);
            if (!strig_declared(p, ids[i], strig_task_of(p, ids[i]), now))
                s->queued_any = 1;
            break;
        case DAG_TI_RUNNING:
            if (!cancelled[i]) {
                log_info("sched: task instance %" PRId64 " passed its execution_timeout", ids[i]);
                sq_run(p,
                       "UPDATE task_instances SET cancel_ms = ?2, reason = 'execution_timeout',"
                       " due_ms = ?3 WHERE id = ?1",
                       "iii", ids[i], now, now + grace);
            } else {
                sched_ti_fail(p, ids[i], "execution_timeout", 1, now);
            }
            break;
        default:
            sq_run(p, "UPDATE task_instances SET due_ms = NULL WHERE id = ?1", "i", ids[i]);
        }
    }
    if (n == DUE_BATCH)
        return now;
    int64_t next =
        sq_int(p, INT64_MAX, "SELECT min(due_ms) FROM task_instances WHERE due_ms IS NOT NULL", "");
    return next;
}

/* ---- POST /work ---- */

struct cand {
    int64_t id, slots, prio, queued;
    struct sdag *dag;
    int pool; /* index in the pick's pool table, -1: too many pools this poll */
};

#define PICK_POOLS 16

/* The pools of one pick: name and free slots (slots - those of its offered
 * and running TIs; 0 for a pool that does not exist, so its TIs wait). */
struct pick_pool {
    char name[256];
    int64_t room;
};

/* Index of name in pools (added with its room when new), -1 when full. */
static int pool_index(struct plane *p, struct pick_pool *pools, int *n, const char *name)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(pools[i].name, name) == 0)
            return i;
    if (*n == PICK_POOLS || strlen(name) >= sizeof(pools[0].name))
        return -1;
    snprintf(pools[*n].name, sizeof(pools[*n].name), "%s", name);
    int64_t slots = sq_int(p, 0, "SELECT slots FROM pools WHERE name = ?1", "t", name);
    /* An unbounded pool (the default one unless resized) costs no count. */
    pools[*n].room = slots >= SCHED_POOL_UNBOUNDED
                         ? slots
                         : slots - sq_int(p, 0,
                                          "SELECT COALESCE(SUM(pool_slots), 0) FROM task_instances"
                                          " WHERE pool = ?1 AND state IN ('offered', 'running')",
                                          "t", name);
    return (*n)++;
}

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->prio != y->prio)
        return x->prio > y->prio ? -1 : 1;
    if (x->queued != y->queued)
        return x->queued < y->queued ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

#define PICK_CANDS (WORK_MAX_ASSIGN * 2)

/* Room left under the DAG's max_active_tasks (offered + running, all runs). */
static int64_t dag_room(struct plane *p, struct sdag *d)
{
    int64_t active = sq_int(p, 0,
                            "SELECT count(*) FROM dag_runs r JOIN task_instances t ON t.run = r.id"
                            " WHERE r.state = 'running' AND r.dag_id = ?1 AND"
                            " t.state IN ('offered', 'running')",
                            "t", d->dag->dag_id);
    return d->dag->max_active_tasks - active;
}

/* Offers queued TIs of the queues to agent by priority, then queue time, within
 * free slots, each DAG's max_active_tasks and each pool's free slots; returns
 * how many (ids in out). */
static int pick(struct plane *p, int64_t agent, json_t *queues, int64_t slots, int64_t *out)
{
    static __thread struct cand c[PICK_CANDS * 8];
    struct pick_pool pools[PICK_POOLS];
    int nc = 0, npools = 0;
    size_t qi;
    json_t *q;
    /* A few more candidates than slots, for DAGs at their max_active_tasks. */
    int64_t lim = slots < WORK_MAX_ASSIGN ? slots * 2 : PICK_CANDS;
    json_array_foreach(queues, qi, q)
    {
        if (qi >= 8)
            break;
        sqlite3_stmt *st = sq(p,
                              "SELECT t.id, t.pool_slots, t.priority_weight, t.queued_ms, r.dag_id,"
                              " t.pool FROM task_instances t JOIN dag_runs r ON r.id = t.run"
                              " WHERE t.state = 'queued' AND t.queue = ?1 AND t.pool_slots <= ?2"
                              " ORDER BY t.priority_weight DESC, t.queued_ms, t.id LIMIT ?3",
                              "tii", json_string_value(q), slots, lim);
        while (st && sqlite3_step(st) == SQLITE_ROW) {
            c[nc].id = sqlite3_column_int64(st, 0);
            c[nc].slots = sqlite3_column_int64(st, 1);
            c[nc].prio = sqlite3_column_int64(st, 2);
            c[nc].queued = sq_col_int(st, 3, 0);
            c[nc].dag = sdag_find(p, sq_text(st, 4));
            c[nc].pool = pool_index(p, pools, &npools, sq_text(st, 5));
            nc++;
        }
        if (st)
            sqlite3_reset(st);
    }
    if (nc == 0)
        return 0;
    qsort(c, (size_t)nc, sizeof(c[0]), cmp_cand);
    struct {
        struct sdag *d;
        int64_t room;
    } rooms[16];
    int nrooms = 0;
    int64_t now = plane_now_ms(), exp = now + p->cfg.offer_timeout_ms;
    int n = 0;
    for (int i = 0; i < nc && n < WORK_MAX_ASSIGN && slots > 0; i++) {
        if (c[i].slots > slots || !c[i].dag)
            continue;
        int r = 0;
        while (r < nrooms && rooms[r].d != c[i].dag)
            r++;
        if (r == nrooms) {
            if (nrooms == 16)
                continue; /* the next poll serves the other DAGs */
            rooms[r].d = c[i].dag;
            rooms[r].room = dag_room(p, c[i].dag);
            nrooms++;
        }
        if (rooms[r].room <= 0) {
            SCHED(p)->room_blocked = 1;
            continue;
        }
        if (c[i].pool < 0 || pools[c[i].pool].room < c[i].slots) {
            SCHED(p)->room_blocked = 1; /* woken when a TI of the pool ends */
            continue;
        }
        pools[c[i].pool].room -= c[i].slots;
        rooms[r].room--;
        sq_run(p,
               "UPDATE task_instances SET state = 'offered', agent_id = ?2, offered_ms = ?3,"
               " offer_expires_ms = ?4, due_ms = ?4 WHERE id = ?1",
               "iiii", c[i].id, agent, now, exp);
        slots -= c[i].slots;
        out[n++] = c[i].id;
        double lat = (double)(now - c[i].queued) / 1000.0;
        sched_observe(&SCHED(p)->latency, lat < 0 ? 0 : lat);
    }
    if (n > 0)
        sched_due_hint(p, exp);
    return n;
}

/* Appends s as a JSON string. s is UTF-8 (every string the plane stores came
 * through jansson or the plane itself). */
static void put_str(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    buf_putc(b, '"');
    for (const char *run = s;; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_append(b, run, (size_t)(s - run));
        if (!c)
            break;
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t n = 2;
        if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') {
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : c == '\b' ? 'b' : 'f';
        } else if (c < 0x20) {
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        buf_append(b, esc, n);
        run = s + 1;
    }
    buf_putc(b, '"');
}

/* Appends "key":<RFC 3339 time or null> of a millisecond column. */
static void put_time(struct buf *b, const char *key, sqlite3_stmt *st, int col)
{
    char t[TIMEUTIL_RFC3339_MAX];
    int64_t ms = sqlite3_column_type(st, col) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, col);
    buf_printf(b, ",\"%s\":", key);
    if (ms > 0 && timeutil_rfc3339_format(ms, ms % 1000 != 0, t, sizeof(t)) == REMEX_OK)
        put_str(b, t);
    else
        buf_puts(b, "null");
}

/* Serialised JSON of j, cached in *text (owned by the DAG). */
static const char *cached_text(char **text, json_t *j)
{
    if (!*text && j)
        *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    return *text ? *text : "{}";
}

/* The params of a run whose conf is a non-empty object: the DAG's params
 * updated with every key of the conf (Airflow's dag_run_conf_overrides_params),
 * as malloc'd JSON text; NULL when the run has no such conf (the DAG's
 * params are used as they are). */
static char *run_params(struct sdag *d, const char *conf)
{
    if (!conf || conf[0] != '{' || strcmp(conf, "{}") == 0)
        return NULL;
    json_t *c = json_loads(conf, 0, NULL);
    json_t *merged = d && json_is_object(d->params) ? json_deep_copy(d->params) : json_object();
    char *text = NULL;
    if (json_is_object(c) && json_object_size(c) > 0 && merged &&
        json_object_update(merged, c) == 0)
        text = json_dumps(merged, JSON_COMPACT);
    json_decref(c);
    json_decref(merged);
    return text;
}

/* Appends the assignment of an offered TI as JSON text, without its closing
 * brace (task_token comes last, outside mu); *run and *try_number set.
 * Returns -1 (nothing appended) when the TI is gone. conf and trigger_event
 * are JSON text the plane wrote itself (json_dumps), spliced as they are. */
static int assignment(struct plane *p, struct buf *b, int64_t ti, int64_t *run, int64_t *try_number)
{
    sqlite3_stmt *st = sq(p,
                          "SELECT t.task_id, t.map_index, t.try_number, t.trigger_event, t.run,"
                          " t.offer_expires_ms, r.dag_id, r.run_id, r.logical_date, r.di_start,"
                          " r.di_end, r.conf, t.queue, t.resume_with FROM task_instances t"
                          " JOIN dag_runs r"
                          " ON r.id = t.run WHERE t.id = ?1",
                          "i", ti);
    if (!st || sqlite3_step(st) != SQLITE_ROW) {
        if (st)
            sqlite3_reset(st);
        return -1;
    }
    struct sdag *d = sdag_find(p, sq_text(st, 6));
    long k = d ? sdag_task_index(d, sq_text(st, 0)) : -1;
    *run = sqlite3_column_int64(st, 4);
    *try_number = sqlite3_column_int64(st, 2);
    buf_printf(b, "{\"ti_id\":%" PRId64 ",\"dag_id\":", ti);
    put_str(b, sq_text(st, 6));
    buf_puts(b, ",\"run_id\":");
    put_str(b, sq_text(st, 7));
    buf_puts(b, ",\"task_id\":");
    put_str(b, sq_text(st, 0));
    buf_printf(b, ",\"map_index\":%lld,\"try_number\":%" PRId64 ",\"queue\":",
               (long long)sqlite3_column_int64(st, 1), *try_number);
    put_str(b, sq_text(st, 12));
    put_time(b, "logical_date", st, 8);
    put_time(b, "data_interval_start", st, 9);
    put_time(b, "data_interval_end", st, 10);
    put_time(b, "offer_expires_at", st, 5);
    buf_puts(b, ",\"bundle\":{\"name\":");
    put_str(b, d ? d->bundle : "");
    buf_puts(b, ",\"version\":");
    put_str(b, d ? d->bundle_version : "");
    const char *conf = sqlite3_column_type(st, 11) == SQLITE_NULL ? "{}" : sq_text(st, 11);
    char *merged = run_params(d, conf);
    buf_printf(b, "},\"task\":%s,\"params\":%s,\"conf\":%s", k >= 0 ? sdag_task_text(d, k) : "{}",
               merged           ? merged
               : d && d->params ? cached_text(&d->params_text, d->params)
                                : "{}",
               conf);
    free(merged);
    if (sqlite3_column_type(st, 3) != SQLITE_NULL)
        buf_printf(b, ",\"trigger_event\":%s", sq_text(st, 3));
    if (sqlite3_column_type(st, 13) != SQLITE_NULL) {
        buf_puts(b, ",\"resume_with\":");
        put_str(b, sq_text(st, 13));
    }
    sqlite3_reset(st);
    return 0;
}

/* {"assignments":[...]}: part[i] (freed here) closed with the TI's task token,
 * null for a TI that was gone (tries[i] < 0). */
static void reply_assignments(struct plane *p, int64_t agent, int n, const int64_t *ids,
                              const int64_t *runs, const int64_t *tries, struct buf *part,
                              struct plane_resp *rs)
{
    struct buf out = BUF_INIT(64 * 1024 * 1024);
    buf_puts(&out, "{\"assignments\":[");
    for (int i = 0; i < n; i++) {
        char *tok = NULL;
        struct remex_error e = {0};
        if (i)
            buf_putc(&out, ',');
        if (tries[i] < 0) {
            buf_free(&part[i]);
            buf_puts(&out, "null");
            continue;
        }
        buf_append(&out, part[i].data, part[i].len);
        buf_free(&part[i]);
        if (auth_task_token(p, agent, ids[i], tries[i], runs[i], &tok, &e) != REMEX_OK)
            log_error("sched: task token for %" PRId64 ": %s", ids[i], e.msg);
        if (tok) {
            buf_puts(&out, ",\"task_token\":");
            put_str(&out, tok);
            free(tok);
        }
        buf_putc(&out, '}');
    }
    buf_puts(&out, "]}");
    rs->status = 200;
    rs->content_type = "application/json";
    rs->text = buf_detach(&out, &rs->text_len);
    if (!rs->text)
        plane_error(rs, 500, "internal", "out of memory");
}

/* The agent token's queues bound what a work poll may ask for: a queue
 * outside them is refused (403 naming it), never silently dropped. -1 after
 * replying. */
static int work_queues_allowed(struct plane *p, struct plane_req *rq, struct plane_resp *rs,
                               json_t *queues)
{
    json_t *allowed = NULL;
    size_t i, j;
    json_t *v, *a;
    pthread_mutex_lock(&p->mu);
    int r = agents_token_queues(p, rq->who.agent_id, &allowed);
    pthread_mutex_unlock(&p->mu);
    if (r < 0) {
        plane_error(rs, 500, "internal", "cannot read the agent token");
        return -1;
    }
    json_array_foreach(queues, i, v)
    {
        int found = r == 0;
        json_array_foreach(allowed, j, a)
        {
            if (!found && json_equal(a, v))
                found = 1;
        }
        if (!found) {
            plane_error(rs, 403, "forbidden",
                        "queues[%zu]: the agent token does not allow queue '%s'", i,
                        json_string_value(v));
            json_decref(allowed);
            return -1;
        }
    }
    json_decref(allowed);
    return 0;
}

void sched_h_work(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    json_t *queues = NULL;
    int64_t slots;
    double wait;
    if (rq->body && !json_is_object(rq->body)) {
        plane_error(rs, 400, "bad_request", "body: expected object");
        return;
    }
    if (rq_strarray(rs, rq->body, "queues", 8, &queues) < 0)
        return;
    if (!queues || json_array_size(queues) == 0) {
        plane_error(rs, 400, "bad_request", "queues: required, at least one queue");
        return;
    }
    if (rq_int(rs, rq->body, "free_slots", 0, 100000, 1, 1, &slots) < 0 ||
        rq_num(rs, rq->body, "wait", 0, 1e9, 0, &wait) < 0)
        return;
    if (work_queues_allowed(p, rq, rs, queues) < 0)
        return;
    int64_t wait_ms = (int64_t)(wait * 1000.0);
    if (wait_ms > p->cfg.longpoll_max_ms)
        wait_ms = p->cfg.longpoll_max_ms;
    int64_t ids[WORK_MAX_ASSIGN], runs[WORK_MAX_ASSIGN], tries[WORK_MAX_ASSIGN];
    int n = 0, authfail = 0, lost = 0;
    pthread_mutex_lock(&p->mu);
    if (slots > 0 && !atomic_load(&p->stopping)) {
        int allowed = agents_work_allowed(p, rq->who.agent_id, rq->who.session);
        if (allowed < 0) {
            authfail = 1;
        } else {
            int began = sq_begin(p);
            n = allowed ? pick(p, rq->who.agent_id, queues, slots, ids) : 0;
            if (sq_commit(p, began) != 0) {
                lost = 1; /* the offers were rolled back: none is handed out */
                n = 0;
            }
            /* Nothing yet: parked until work is queued on one of its
             * queues, the agent may take work again, or the wait is over. */
            if (n == 0 && !lost && sched_park_work(p, rq, queues, wait_ms) == 0) {
                pthread_mutex_unlock(&p->mu);
                return;
            }
        }
    }
    /* The reply is written as text: the DAG's task and params JSON are
     * serialised once, not per assignment. */
    struct buf part[WORK_MAX_ASSIGN];
    for (int i = 0; i < n; i++) {
        buf_init(&part[i], 16 * 1024 * 1024);
        if (assignment(p, &part[i], ids[i], &runs[i], &tries[i]) < 0)
            tries[i] = -1;
    }
    pthread_mutex_unlock(&p->mu);
    if (authfail) {
        log_info("sched: work poll of agent %" PRId64 " with a stale session", rq->who.agent_id);
        plane_error(rs, 401, "unauthorized", "unauthorized");
        return;
    }
    rs->committed = 1; /* the offers were committed before the reply is built */
    if (lost) {
        plane_store_failed(rs);
        return;
    }
    reply_assignments(p, rq->who.agent_id, n, ids, runs, tries, part, rs);
}

/* ---- start / state ---- */

/* Checks the path TI against the task token and the body's try; -1 after replying. */
static int task_scope(struct plane_req *rq, struct plane_resp *rs, int64_t *ti, int64_t *try_no)
{
    if (rq_id(rq, rs, 0, ti) < 0)
        return -1;
    if (*ti != rq->who.ti_id) {
        log_info("sched: task token of ti %" PRId64 " used for ti %" PRId64, rq->who.ti_id, *ti);
        plane_error(rs, 403, "forbidden", "forbidden");
        return -1;
    }
    if (!rq->body || !json_is_object(rq->body)) {
        plane_error(rs, 400, "bad_request", "body: expected object");
        return -1;
    }
    if (rq_int(rs, rq->body, "try_number", 1, INT32_MAX, 0, 1, try_no) < 0)
        return -1;
    if (*try_no != rq->who.try_number) {
        plane_error(rs, 409, "conflict", "try_number does not match the task token");
        return -1;
    }
    return 0;
}

/* execution_timeout of a task instance's task (DAG_UNSET: none or unknown). */
static int64_t exec_timeout(struct plane *p, const char *dag_id, const char *task_id)
{
    struct sdag *d = sdag_find(p, dag_id);
    long k = d ? sdag_task_index(d, task_id) : -1;
    return k >= 0 ? d->dag->tasks[k].execution_timeout_ms : DAG_UNSET;
}

/* Offered -> running (mu held, in the caller's transaction); pid 0 and host
 * NULL when unknown. */
static void run_offered(struct plane *p, int64_t ti, int64_t et, int64_t pid, const char *host,
                        const char *log_uri)
{
    int64_t now = plane_now_ms();
    int64_t to = et == DAG_UNSET ? 0 : now + et;
    sq_run(p,
           "UPDATE task_instances SET state = 'running', started_ms = ?2, timeout_ms = ?3,"
           " due_ms = ?3, offer_expires_ms = NULL, cancel_ms = NULL, report_state = NULL,"
           " pid = ?4, hostname = ?5, log_uri = coalesce(?6, log_uri) WHERE id = ?1",
           "iNNNtt", ti, now, to ? to : INT64_MIN, pid > 0 ? pid : INT64_MIN, host, log_uri);
    if (to)
        sched_due_hint(p, to);
}

void sdisp_promote(struct plane *p, int64_t ti)
{
    char dag_id[256] = "", task_id[256] = "";
    sqlite3_stmt *st = sq(p,
                          "SELECT t.task_id, r.dag_id FROM task_instances t JOIN dag_runs r"
                          " ON r.id = t.run WHERE t.id = ?1 AND t.state = 'offered'",
                          "i", ti);
    int found = st && sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        snprintf(task_id, sizeof(task_id), "%s", sq_text(st, 0));
        snprintf(dag_id, sizeof(dag_id), "%s", sq_text(st, 1));
    }
    if (st)
        sqlite3_reset(st);
    if (!found)
        return;
    log_info("sched: task instance %" PRId64 " runs on its agent without a recorded start", ti);
    int began = sq_begin(p);
    run_offered(p, ti, exec_timeout(p, dag_id, task_id), 0, NULL, NULL);
    sq_commit(p, began);
}

/*
 * A start is committed lazily (store_commit_later): the next commit of any
 * request carries it, 20 ms later at the latest. A crash of the plane in
 * between loses it, and the task instance reads offered again after the
 * restart; its worker runs it, so the plane takes it back as running from the
 * worker's heartbeat (its running list, sdisp_promote) or state report, and
 * gives offers a full offer_timeout after a restart (sched_init).
 */
int sdisp_start_one(struct plane *p, int64_t agent_id, int64_t ti, int64_t tr, int64_t pid,
                    const char *host, const char *log_uri)
{
    sqlite3_stmt *st = sq(p,
                          "SELECT t.state, t.agent_id, t.try_number, t.task_id, r.dag_id FROM"
                          " task_instances t JOIN dag_runs r ON r.id = t.run WHERE t.id = ?1",
                          "i", ti);
    int state = -1;
    int64_t agent = -1, cur_try = -1, et = DAG_UNSET;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        state = (int)sched_col_state(st, 0);
        agent = sq_col_int(st, 1, -1);
        cur_try = sqlite3_column_int64(st, 2);
        et = exec_timeout(p, sq_text(st, 4), sq_text(st, 3));
    }
    if (st)
        sqlite3_reset(st);
    if (agent != agent_id || cur_try != tr)
        return 409;
    if (state == DAG_TI_OFFERED)
        run_offered(p, ti, et, pid, host, log_uri);
    else if (state != DAG_TI_RUNNING)
        return 409;
    return 200;
}

int sdisp_start_decode(struct plane_resp *rs, json_t *body, int64_t *pid, const char **host,
                       const char **log_uri)
{
    if (rq_int(rs, body, "pid", 0, INT32_MAX, 0, 0, pid) < 0 ||
        rq_str(rs, body, "hostname", 0, 255, host) < 0 ||
        rq_str(rs, body, "log_uri", 0, 4096, log_uri) < 0)
        return -1;
    return 0;
}

void sched_h_start(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    int64_t ti, tr, pid;
    const char *host, *log_uri;
    if (task_scope(rq, rs, &ti, &tr) < 0 || sdisp_start_decode(rs, rq->body, &pid, &host, &log_uri))
        return;
    pthread_mutex_lock(&p->mu);
    int began = sq_begin(p);
    int code = sdisp_start_one(p, rq->who.agent_id, ti, tr, pid, host, log_uri);
    store_commit_later(p, began);
    pthread_mutex_unlock(&p->mu);
    rs->committed = 1;
    if (code != 200)
        plane_error(rs, 409, "conflict", "the offer is gone");
    else
        plane_reply(rs, 200, json_pack("{ss}", "state", "running"));
}

static const char *const report_states[] = {"success", "failed", "deferred", "skipped", NULL};

int sdisp_report_decode(struct plane_resp *rs, json_t *body, struct sdisp_report *r)
{
    memset(r, 0, sizeof(*r));
    if (rq_str(rs, body, "state", 1, 32, &r->state) < 0 ||
        rq_str(rs, body, "reason", 0, 1024, &r->reason) < 0 ||
        rq_str(rs, body, "log_uri", 0, 4096, &r->log_uri) < 0 ||
        rq_int(rs, body, "exit_code", -1, 255, -1, 0, &r->exit_code) < 0 ||
        rq_int(rs, body, "signal", 0, 128, 0, 0, &r->signal) < 0 ||
        rq_obj(rs, body, "trigger", &r->trigger) < 0)
        return -1;
    r->has_exit = json_is_integer(json_object_get(body, "exit_code"));
    r->has_signal = json_is_integer(json_object_get(body, "signal"));
    int known = 0;
    for (int i = 0; report_states[i]; i++)
        known |= strcmp(report_states[i], r->state) == 0;
    if (!known) {
        plane_error(rs, 400, "bad_request",
                    "state: expected one of success, failed, deferred, skipped");
        return -1;
    }
    if (strcmp(r->state, "deferred") == 0 && !r->trigger) {
        plane_error(rs, 400, "bad_request", "trigger: required when state is deferred");
        return -1;
    }
    json_t *to = r->trigger ? json_object_get(r->trigger, "timeout") : NULL;
    if (to && !json_is_null(to) &&
        (!json_is_number(to) || json_number_value(to) < 0 || json_number_value(to) > 1e9)) {
        plane_error(rs, 400, "bad_request", "trigger.timeout: expected seconds");
        return -1;
    }
    return 0;
}

/* Applies a valid report to a running TI; returns the new state name. */
static const char *report_apply(struct plane *p, int64_t ti, int64_t run, int has_down,
                                const struct sdisp_report *r, int64_t try_no)
{
    int64_t now = plane_now_ms();
    int began = sq_begin(p);
    int64_t ec = r->has_exit ? r->exit_code : INT64_MIN,
            sig = r->has_signal ? r->signal : INT64_MIN;
    const char *res = r->state;
    int done = strcmp(r->state, "success") == 0 || strcmp(r->state, "skipped") == 0;
    if (done) {
        /* The report and the final state in one row update. */
        sq_run(p,
               "UPDATE task_instances SET report_try = ?2, report_state = ?3, exit_code = ?4,"
               " signal = ?5, log_uri = coalesce(?6, log_uri), state = ?3, ended_ms = ?7,"
               " due_ms = NULL, cancel_ms = NULL, reason = ?8 WHERE id = ?1",
               "iitNNtit", ti, try_no, r->state, ec, sig, r->log_uri, now, r->reason);
        if (strcmp(r->state, "skipped") == 0)
            sched_try_record(p, ti);
        /* A leaf finishing matters to the scheduler only when it was the last one. */
        if (has_down || !sched_run_pending(p, run))
            sched_mark_run(p, run, SDIRTY_EVAL);
    } else {
        sq_run(p,
               "UPDATE task_instances SET report_try = ?2, report_state = ?3, exit_code = ?4,"
               " signal = ?5, log_uri = coalesce(?6, log_uri) WHERE id = ?1",
               "iitNNt", ti, try_no, r->state, ec, sig, r->log_uri);
    }
    if (strcmp(r->state, "failed") == 0) {
        char why[1025]; /* the reason whole, as accepted (up to 1024 bytes) */
        int64_t cms = sq_int(p, -1, "SELECT cancel_ms FROM task_instances WHERE id = ?1", "i", ti);
        if (cms >= 0)
            snprintf(why, sizeof(why), "execution_timeout");
        else if (r->reason)
            snprintf(why, sizeof(why), "%s", r->reason);
        else if (r->has_signal)
            snprintf(why, sizeof(why), "killed by signal %" PRId64, r->signal);
        else
            snprintf(why, sizeof(why), "exit code %" PRId64, r->exit_code);
        sched_ti_fail(p, ti, why, 1, now);
        res = sq_int(p, 0, "SELECT state = 'failed' FROM task_instances WHERE id = ?1", "i", ti)
                  ? "failed"
                  : "up_for_retry";
    } else if (!done) { /* deferred */
        strig_insert(p, ti, try_no, r->trigger, now);
        sq_run(p,
               "UPDATE task_instances SET state = 'deferred', agent_id = NULL, due_ms = NULL,"
               " cancel_ms = NULL, timeout_ms = NULL WHERE id = ?1",
               "i", ti);
        sched_try_record(p, ti);
    }
    sq_commit(p, began);
    if (SCHED(p)->room_blocked) {
        /* A slot under some DAG's max_active_tasks may have opened. */
        SCHED(p)->room_blocked = 0;
        sched_wake_work(p);
    }
    return res;
}

int sdisp_state_one(struct plane *p, int64_t agent_id, int64_t ti, int64_t tr,
                    const struct sdisp_report *r, char res[32])
{
    sqlite3_stmt *st = sq(p,
                          "SELECT t.state, t.agent_id, t.try_number, t.report_try,"
                          " t.report_state, t.run, t.task_id, r.dag_id FROM task_instances t"
                          " JOIN dag_runs r ON r.id = t.run WHERE t.id = ?1",
                          "i", ti);
    int found = 0, dup = 0, state = -1, has_down = 1;
    int64_t agent = -1, cur_try = -1, run = 0, et = DAG_UNSET;
    res[0] = '\0';
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        found = 1;
        state = (int)sched_col_state(st, 0);
        snprintf(res, 32, "%s", sq_text(st, 0));
        agent = sq_col_int(st, 1, -1);
        cur_try = sqlite3_column_int64(st, 2);
        dup = sq_col_int(st, 3, -1) == tr && strcmp(sq_text(st, 4), r->state) == 0;
        run = sqlite3_column_int64(st, 5);
        struct sdag *d = sdag_find(p, sq_text(st, 7));
        long k = d ? sdag_task_index(d, sq_text(st, 6)) : -1;
        has_down = k < 0 || d->dag->tasks[k].ndownstream > 0;
        et = k >= 0 ? d->dag->tasks[k].execution_timeout_ms : DAG_UNSET;
    }
    if (st)
        sqlite3_reset(st);
    if (!found || cur_try != tr)
        return 409;
    if (dup)
        return 200; /* res: the state it reached then */
    if ((state != DAG_TI_RUNNING && state != DAG_TI_OFFERED) || agent != agent_id)
        return 409;
    if (state == DAG_TI_OFFERED) /* its start was lost in a crash of the plane */
        run_offered(p, ti, et, 0, NULL, NULL);
    snprintf(res, 32, "%s", report_apply(p, ti, run, has_down, r, tr));
    return 200;
}

void sched_h_state(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    int64_t ti, tr;
    struct sdisp_report r;
    char res[32];
    if (task_scope(rq, rs, &ti, &tr) < 0 || sdisp_report_decode(rs, rq->body, &r) < 0)
        return;
    pthread_mutex_lock(&p->mu);
    int began = sq_begin(p);
    int code = sdisp_state_one(p, rq->who.agent_id, ti, tr, &r, res);
    int lost = sq_commit(p, began) != 0; /* rolled back: the worker reports again */
    pthread_mutex_unlock(&p->mu);
    rs->committed = 1;
    if (lost)
        plane_store_failed(rs);
    else if (code == 409)
        plane_error(rs, 409, "conflict", "stale report: the task instance moved on");
    else
        plane_reply(rs, 200, json_pack("{ss}", "state", res));
}
