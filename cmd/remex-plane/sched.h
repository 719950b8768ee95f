/*
 * Scheduler-internal interface shared by sched*.c (not used by the plane core).
 *
 * Every function here is called with plane.mu held unless noted. The DB is the
 * source of truth; struct sched caches parsed DAGs (rebuilt from the dags table
 * at start) and the set of dag runs whose task instances must be re-evaluated.
 *
 * Task instance life: scheduled (waiting on upstream) -> queued -> offered (to
 * one agent, until offer_expires) -> running -> success | failed | skipped |
 * deferred (-> queued again with the trigger event, same try) | up_for_retry
 * (-> queued with try_number + 1 when due). upstream_failed and skipped are
 * also set by dependency resolution. A TI's due_ms is the one instant the
 * scheduler must look at it again (offer expiry, retry, execution timeout or
 * cancel grace), indexed so the earliest due time is one lookup.
 */
#ifndef REMEX_PLANE_SCHED_H
#define REMEX_PLANE_SCHED_H

#include <stdint.h>

#include "plane.h"
#include "remex/dag.h"

/* Kinds of re-evaluation a dag run needs (bit set). */
enum { SDIRTY_DONE = 1, SDIRTY_EVAL = 2 };

/* Task instance states are enum dag_ti_state (remex/dag.h); DAG_TI_NONE waits
 * for its upstream tasks. */

struct stask {
    char *text; /* canonical task JSON (owned), sent in assignments; made at the task's first
                 * assignment (sdag_task_text), NULL until then */
};

struct sdag {
    struct sdag *next, *prev; /* sched.dags, doubly linked (prev NULL at the head) */
    struct sdag *hnext;       /* chain of its bucket in sched.dag_tab (sched_dagmap.c) */
    struct dag *dag;          /* owned, immutable */
    char *bundle;
    char *bundle_version;
    int version_follows; /* its row's version is bundles.version of its bundle (sched_dags.c) */
    json_t *params;      /* borrowed from dag */
    char *params_text;   /* params serialised (owned), made at the first assignment */
    int is_active;
    int is_paused;
    int64_t next_run_ms;   /* when the next scheduled run may be created; INT64_MIN none */
    int64_t last_start_ms; /* data_interval_start of the latest scheduled run */
    int last_known;        /* last_start_ms loaded (INT64_MIN: no scheduled run yet) */
    struct stask *tasks;   /* dag->ntasks entries */
    int *index;            /* open-addressing table task_id -> index, nindex slots (owned) */
    size_t nindex;
    /* cron_runs' answer, valid until cron_due_ms while is_active, is_paused
     * and last_known are as they were (cron_flags): a pass skips the DAG's
     * cron arithmetic until then. 0: compute. */
    int64_t cron_due_ms;
    unsigned cron_flags;
    /* Next dagrun_timeout deadline of its running runs (run_timeouts'
     * answer; INT64_MAX none); 0: query. */
    int64_t timeout_due_ms;
    /* The due heap (sched_dagmap.c): the wall time the scheduler must look
     * at this DAG again (min of cron_due_ms and timeout_due_ms, INT64_MIN
     * at once) and its slot in sched.heap (SIZE_MAX when not in it: nothing
     * will ever be due until the DAG is touched). */
    int64_t heap_key;
    size_t heap_pos;
    int64_t active_runs;   /* running runs, valid within start_queued_runs only */
    uint64_t manifest_gen; /* sched.manifest_gen of the last manifest that listed it */
};

#define SCHED_HIST_N 14

struct shist {
    uint64_t bucket[SCHED_HIST_N]; /* cumulative at emit time */
    uint64_t count;
    double sum;
};

struct sdirty {
    int64_t run;
    int kind;
};

struct sched {
    pthread_t thread;
    int started;
    struct sdag *dags;
    struct sdag **dag_tab; /* dag_id -> sdag buckets, dag_cap (a power of 2) of them */
    uint64_t manifest_gen; /* bumped by each manifest (sched_dags.c) */
    size_t dag_cap, ndags;
    struct sdirty *dirty;
    size_t ndirty, capdirty;
    int runs_changed;     /* queued runs may start / cron state changed */
    int64_t wake_ms;      /* wall time the scheduler thread sleeps until */
    int64_t due_ms;       /* earliest TI/trigger due time known (INT64_MIN: recompute) */
    int queued_any;       /* a pass queued TIs: wake the work polls */
    int room_blocked;     /* a poll skipped TIs of a DAG at its max_active_tasks */
    int64_t retry_ms;     /* after a failed commit: no pass before this wall time */
    int64_t retention_ms; /* next automatic retention slice (sched_retention.c) */
    void *counts;         /* struct scount (sched_counts.c) */
    struct shist latency; /* queued -> offered, seconds */
    struct shist loop;    /* scheduler pass duration, seconds */
    /* Min-heap of the DAGs by heap_key (sched_dagmap.c): a pass pops the due
     * ones only, so DAGs not due cost it nothing. */
    struct sdag **heap;
    size_t nheap, capheap;
    /* Bounded slices: a pass stops its work at slice_end_ns (monotonic) at
     * the next safe point, sets sliced, and the scheduler thread lets go of
     * plane.mu before the next pass continues (sched_slice_over). */
    uint64_t slice_end_ns;
    int sliced;
    int64_t start_run;             /* run whose task instances are being created; 0 none */
    size_t start_next;             /* its next task index */
    char start_hash[DAG_HASH_HEX]; /* of the DAG version being created */
    uint64_t dags_examined;        /* DAGs popped from the heap, total */
    uint64_t slices;               /* passes cut at their time budget, total */
    double step_max;               /* longest pass (lock held throughout), seconds */
    double step_cpu_max;           /* most CPU time of the thread in one pass, seconds */
    uint64_t view_chunks;          /* holds of mu by the chunked admin views, total */
    double view_hold_max;          /* longest of those holds, seconds */
};

/* Rows an admin view (run show, grid) reads per hold of plane.mu. */
#define SCHED_VIEW_CHUNK 256

#define SCHED(p) ((struct sched *)(p)->sched)

/* Body cap of PUT /dags/{dag_id}: a DAG at its cap (DAG_JSON_MAX canonical
 * bytes, a 10,000-task DAG) with the bundle around it. */
#define SCHED_DAG_BODY_MAX ((int64_t)DAG_JSON_MAX + 64 * 1024)

/* ---- sched.c ---- */
/* Cached prepared statement for the static string sql, reset and bound per fmt:
 * 'i' int64_t, 'N' int64_t (INT64_MIN binds NULL), 't' const char * (NULL binds
 * NULL), 'd' double. NULL on error. */
sqlite3_stmt *sq(struct plane *p, const char *sql, const char *fmt, ...);
/* 1 if the run has task instances that are not finished. */
int sched_run_pending(struct plane *p, int64_t run);
/* Runs a statement that returns no rows; SQLITE_DONE on success. */
int sq_run(struct plane *p, const char *sql, const char *fmt, ...);
/* First column of the first row as int64 (def when no row or NULL). */
int64_t sq_int(struct plane *p, int64_t def, const char *sql, const char *fmt, ...);
/* Admin views (run show, grid): takes plane.mu and returns the monotonic
 * time; sched_view_unlock lets it go, counting the hold in view_chunks and
 * view_hold_max (under mu). */
uint64_t sched_view_lock(struct plane *p);
void sched_view_unlock(struct plane *p, uint64_t t0);
/* qsort comparator of int64_t. */
int sched_cmp_i64(const void *a, const void *b);
/* Column text or "" (borrowed until the next step/reset). */
const char *sq_text(sqlite3_stmt *st, int col);
/* Column int64 or def when NULL. */
int64_t sq_col_int(sqlite3_stmt *st, int col, int64_t def);
/* store_begin / store_commit (plane.h): 1 when the caller must commit;
 * sq_commit returns -1 when the commit failed and was rolled back. */
int sq_begin(struct plane *p);
int sq_commit(struct plane *p, int began);

/* State of a column ("none" and unknown text give DAG_TI_NONE). */
enum dag_ti_state sched_col_state(sqlite3_stmt *st, int col);
/* RFC 3339 string (owned json) or json null for ms <= 0 / NULL column. */
json_t *sched_time_json(int64_t ms);
json_t *sched_col_time(sqlite3_stmt *st, int col);
/* Parsed JSON of a text column (owned) or json null. */
json_t *sched_col_json(sqlite3_stmt *st, int col);
/* Re-evaluate run (kind SDIRTY_*); wakes the scheduler. */
void sched_mark_run(struct plane *p, int64_t run, int kind);
/* A new due time exists: wake the scheduler if it sleeps past it. */
void sched_due_hint(struct plane *p, int64_t due_ms);
void sched_observe(struct shist *h, double seconds);

/* Request-body helpers: 0 when fine, -1 after replying 400 naming the field. */
int rq_int(struct plane_resp *rs, json_t *body, const char *field, int64_t lo, int64_t hi,
           int64_t def, int required, int64_t *out);
int rq_num(struct plane_resp *rs, json_t *body, const char *field, double lo, double hi, double def,
           double *out);
int rq_str(struct plane_resp *rs, json_t *body, const char *field, int required, size_t maxlen,
           const char **out);
int rq_obj(struct plane_resp *rs, json_t *body, const char *field, json_t **out);
int rq_strarray(struct plane_resp *rs, json_t *body, const char *field, size_t maxn, json_t **out);
/* Path parameter i as a positive id; -1 after replying 404. */
int rq_id(struct plane_req *rq, struct plane_resp *rs, int i, int64_t *out);

/* Time budget of one scheduler pass: its work is cut at a safe point past it. */
#define SCHED_SLICE_NS 2000000ULL
/* 1 when the pass is past its time budget (and records that it was cut). */
int sched_slice_over(struct sched *s);

/* ---- sched_dagmap.c: sched.dags by dag_id, the due heap ---- */
void sdmap_put(struct sched *s, struct sdag *d); /* d is (being) linked on s->dags */
void sdmap_del(struct sched *s, struct sdag *d);
struct sdag *sdmap_get(struct sched *s, const char *dag_id);
void sdmap_free(struct sched *s);
/* Sets d's key in the due heap (inserting it); INT64_MAX takes it out. */
void sdheap_set(struct sched *s, struct sdag *d, int64_t key);
/* The DAG due first, or NULL. */
struct sdag *sdheap_top(const struct sched *s);
void sdheap_free(struct sched *s);

/* ---- sched_dags.c ---- */
struct sdag *sdag_find(struct plane *p, const char *dag_id);
/* The canonical JSON text of task k of d, made (and kept) at its first use;
 * "{}" when it cannot be made. Borrowed from d. */
const char *sdag_task_text(struct sdag *d, long k);
long sdag_task_index(const struct sdag *d, const char *task_id); /* -1 if absent */
remex_err sdag_load_all(struct plane *p, struct remex_error *e);
void sdag_free_all(struct sched *s);
void sched_h_dag_put(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_manifest(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_dags_bulk(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_dags_list(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_dag_show(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_dag_pause(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_dag_unpause(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_import_errors(struct plane *p, struct plane_req *rq, struct plane_resp *rs);

/* ---- sched_runs.c ---- */
/* Cron runs, queued runs start, dirty runs; returns the next due wall time. */
int64_t sruns_pass(struct plane *p, int64_t now);
/* The DAG changed (version, pause, activity, a run reopened): its cron and
 * timeout answers are forgotten and the next pass looks at it. */
void sruns_touch(struct plane *p, struct sdag *d);
/* Creates a queued run; returns its id, 0 on a duplicate run_id, -1 on error. */
int64_t sruns_create(struct plane *p, struct sdag *d, const char *run_id, const char *run_type,
                     int64_t logical, int64_t di_start, int64_t di_end, const char *conf);
/* Fails a TI's current try: up_for_retry when retries remain and retry_ok, else failed. */
void sched_ti_fail(struct plane *p, int64_t ti, const char *reason, int retry_ok, int64_t now);
void sched_h_runs_trigger(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_runs_list(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_run_show(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_task_clear(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_task_fail(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_task_success(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_run_clear(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
/* ---- sched_pools.c ---- */
/* Slots of a pool that is not counted (the default_pool as created): the
 * most a pool can have. */
#define SCHED_POOL_UNBOUNDED 1000000
void sched_h_pools_list(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_pool_put(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_pool_delete(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_pool_metrics(struct plane *p, struct buf *out);
void sched_h_run_cancel(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_dag_delete(struct plane *p, struct plane_req *rq, struct plane_resp *rs);

/* ---- sched_grid.c: admin views for the web UI ---- */
/* Copies the TI's row into ti_tries when its try has ended (success, failed,
 * up_for_retry, skipped, deferred): call after a try ends in anything but
 * success, and before a clear resets the row. */
void sched_try_record(struct plane *p, int64_t ti);
void sched_h_grid(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_ti_show(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_ti_log(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
/* ---- sched_dispatch.c ---- */
/* Offer expiry, retries due, execution timeouts; returns the next due wall time. */
int64_t sdisp_due(struct plane *p, int64_t now);
/* An offered task instance its agent lists as running (its start was lost in
 * a crash of the plane): running from now on. */
void sdisp_promote(struct plane *p, int64_t ti);
void sched_h_work(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_start(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_state(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
/* The optional fields of a start (pid, hostname, log_uri; strings borrowed
 * from body): 0, or -1 after replying 400 into rs naming the field. */
int sdisp_start_decode(struct plane_resp *rs, json_t *body, int64_t *pid, const char **host,
                       const char **log_uri);
/* Start of try tr of task instance ti by agent_id (mu held, inside the
 * caller's transaction, which it may commit lazily: see sched_h_start):
 * offered -> running; 200 also when it is running already (a retried start),
 * 409 when the offer is gone (another agent, another try, any other state). */
int sdisp_start_one(struct plane *p, int64_t agent_id, int64_t ti, int64_t tr, int64_t pid,
                    const char *host, const char *log_uri);
/* A state report's fields; strings and trigger borrowed from the body. */
struct sdisp_report {
    const char *state, *reason, *log_uri;
    int64_t exit_code, signal;
    int has_exit, has_signal;
    json_t *trigger;
};
int sdisp_report_decode(struct plane_resp *rs, json_t *body, struct sdisp_report *r);
/* Applies report r of try tr of ti by agent_id (mu held, inside the caller's
 * transaction, which the caller commits before answering): 200 with the
 * state reached in res (also for a repeated report: the state it reached
 * then), 409 when the report is stale (another try, another agent, a task
 * instance that moved on). */
int sdisp_state_one(struct plane *p, int64_t agent_id, int64_t ti, int64_t tr,
                    const struct sdisp_report *r, char res[32]);

/* ---- sched_batch.c: many starts or state reports per request ---- */
void sched_h_start_batch(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_state_batch(struct plane *p, struct plane_req *rq, struct plane_resp *rs);

/* ---- sched_triggers.c ---- */
/* Trigger timeouts (on_timeout: skip or fail); returns the next due wall time. */
int64_t strig_due(struct plane *p, int64_t now);
/* (Re)places the trigger of deferred ti's try try_no: spec borrowed; its timeout
 * (seconds) counts from now; wakes the trigger polls. */
void strig_insert(struct plane *p, int64_t ti, int64_t try_no, const json_t *spec, int64_t now);
/* The task of ti in its DAG (borrowed from the DAG cache), or NULL. */
const struct dag_task *strig_task_of(struct plane *p, int64_t ti);
/* A new try of a declared sensor (t->trigger): queued -> deferred with the
 * task's trigger, never offered to a worker. 1 when it was deferred. */
int strig_declared(struct plane *p, int64_t ti, const struct dag_task *t, int64_t now);
void strig_release_agent(struct plane *p, int64_t agent_id);
void sched_h_trigger_poll(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_trigger_event(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
#define STRIG_EVENTS_MAX 1000 /* events in one POST /triggers/events */
void sched_h_trigger_events(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_run_status(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_queue_depth(struct plane *p, struct plane_req *rq, struct plane_resp *rs);

/* ---- sched_counts.c: counts kept by SQLite's pre-update hook ---- */
/* Counts once from the tables and installs the hooks that keep the counts
 * (a full count, once per start); after the migrations. scount_free
 * removes them. */
remex_err scount_init(struct plane *p, struct remex_error *e);
void scount_free(struct plane *p);
/* Queued TIs per queue, TIs by state, runs by state (Prometheus text). */
void scount_metrics(struct plane *p, struct buf *out);
/* Parks a work poll on its queues (rq_strarray of at most PLANE_PARK_KEYS,
 * borrowed from rq->body); as plane_park. */
int sched_park_work(struct plane *p, struct plane_req *rq, json_t *queues, int64_t wait_ms);
/* Work was queued or room opened: for each queue with N queued task
 * instances, resumes at most N work polls parked on it (plane_wake_key). */
void sched_wake_work(struct plane *p);

/* ---- sched_retention.c ---- */
extern const char sret_migration_sql[]; /* migration 120 */
void sched_h_db_clean(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
/* Automatic retention, in the scheduler pass: one bounded slice when due;
 * returns the next due wall time (INT64_MAX when retention is off). */
int64_t sret_pass(struct plane *p, int64_t now);

/* ---- sched_xcom.c ---- */
void sched_h_xcom_put(struct plane *p, struct plane_req *rq, struct plane_resp *rs);
void sched_h_xcom_get(struct plane *p, struct plane_req *rq, struct plane_resp *rs);

#endif
