/*
 * remex-worker internal interfaces, shared by the worker's files.
 *
 * Built on the role runtime (remex/role.h: start-up, config, signals,
 * supervisor channel, life cycle) and the API client (remex/api.h: session,
 * heartbeat, report journal). One event-loop thread: every fd (curl sockets,
 * task output pipes, task sockets, signalfd) and every timer is driven by the
 * runtime's loop. Spawner threads (spawner.c) only run proc_spawn on jobs the
 * loop hands them.
 *
 * Files and what they own:
 *   main.c      the role's hooks (start, drain, stop), the API hooks (register and
 *               heartbeat fields, cancel and desired_state replies), the work long poll
 *   task.c      offer -> start call -> spawn -> reap -> state report: assignment decoding,
 *               environment, templates, limits, timeouts, cancellation, exit classification
 *   memlimit.c  memory-limit mechanism (cgroup v2, cgroup v1, RLIMIT_AS), the worker's
 *               own v1 parent cgroup, removal of task cgroups
 *   tasklog.c   per-try log file: line splitting, timestamps, masking, size cap
 *   tasksock.c  the task sockets (remex-task protocol, docs/task-protocol.md), pooled
 *   spawner.c   spawner threads: proc_spawn off the loop
 *   bundles.c   the bundle thread: each task's folder at its bundle version (git fetch and
 *               checkout, local snapshots), off the loop
 *
 * The task path reads in one direction, main.c -> task.c -> (tasklog.c,
 * tasksock.c, spawner.c, memlimit.c, lib api): task.c hands control back to
 * main.c only through the w->changed hook.
 *
 * Lifetimes: a struct wtask lives from the offer until its final report has
 * been handed over (delivered, journaled or dropped) and no HTTP call refers
 * to it (pending == 0); task_release frees it then.
 */
#ifndef REMEX_WORKER_H
#define REMEX_WORKER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "remex/buf.h"
#include "remex/cfg.h"
#include "remex/err.h"
#include "remex/http.h"
#include "remex/objstore.h"
#include "remex/proc.h"
#include "remex/role.h"
#include "remex/workq.h"

struct evloop;
struct mask;
struct secrets;
struct ipc_conn;
struct objstore;
struct bundle_set;
struct rolehttp;
struct bundles;

enum wtask_phase {
    WT_STARTING = 0, /* start call in flight */
    WT_RUNNING,      /* process spawned (or about to be) */
    WT_EXITED,       /* process reaped, output drained; report pending */
    WT_DONE,         /* report handed over; freed when pending == 0 */
};

/* A spawn handed to a spawner thread (spawner.c); lives in its task. */
struct spawn_job {
    struct workq_job wj; /* with the spawner threads */
    struct wtask *t;
    struct proc_spec spec; /* points into the task, which leaves it alone until the job is back */
    pid_t pid;
    remex_err rc;
    struct remex_error err;
};

struct tconn; /* tasksock.c */
struct tsock; /* tasksock.c */

struct wtask {
    struct wtask *next;
    struct worker *w;
    enum wtask_phase phase;
    int pending; /* HTTP calls and socket requests referring to this task */

    json_t *asg; /* owned assignment */
    int64_t ti_id, try_number, map_index;
    const char *dag_id, *run_id, *task_id, *token; /* borrowed from asg */
    char *prep_error;                              /* owned: fail the try with this reason */

    /* prepared exec */
    char **argv; /* owned, NULL-terminated */
    struct proc_env env;
    char *cwd;
    int bundle_fd; /* git bundle: the checkout held (bundle_hold) while the try lives, or -1 */
    struct proc_rlimit rlim[4];
    size_t nrlim;
    int64_t timeout_ms; /* 0: none */
    uint64_t memory_limit;
    int use_cgroup;
    struct proc_cgroup cg;

    /* process */
    struct spawn_job job;
    int spawning;  /* job with a spawner thread (holds a pending reference) */
    int spawn_wfd; /* write end of the output pipe until the spawn is done, or -1 */
    pid_t pid;
    int out_fd; /* read end of stdout+stderr, -1 when closed */
    int exited, wstatus, out_eof;
    uint64_t timeout_timer, kill_timer, eof_timer;
    uint64_t log_upload_timer; /* tasklog.c: partial log uploads while the try runs */
    int log_upload_busy;       /* a partial upload is with the store thread */
    int report_waits_upload;   /* the final log upload runs; the report follows it */
    uint64_t start_timer;      /* retry of an unconfirmed start (holds a pending reference) */
    unsigned start_attempts;   /* start calls that got no definitive answer */
    uint64_t start_first_ms;   /* monotonic time of the first start call */
    const char *stop_reason;   /* static: execution_timeout, cancelled: ..., worker shutdown */
    char cancel_reason[128];
    int stopping;

    /* log */
    char *log_path;
    int log_fd;
    struct buf line;
    uint64_t log_bytes;
    int truncated;
    int oom_hint;
    struct mask *mask;

    /* socket */
    struct tsock *sock; /* from the worker's pool while the try runs, else NULL */
    struct tconn *conns;

    json_t *defer_trigger; /* owned: report deferred when the process exits 0 */
};

struct worker {
    struct role *r;                    /* the runtime: loop, config, api, life cycle */
    const struct agentcfg_worker *cfg; /* r->cfg.worker */
    struct evloop *loop;               /* r->loop */
    struct api_client *api;            /* r->api */
    struct secrets *secrets;
    struct objstore *xstore;
    struct objstore *lstore;       /* task logs (logs.store), or NULL: local files only */
    struct workq *storeio;         /* storeio.c: object-store transfers off the loop */
    struct log_expiry *log_expiry; /* tasklog.c: uploaded local logs to remove, oldest first */
    uint64_t log_expiry_timer;
    struct bundle_set *bundles; /* owned by the bundle thread (bundles.c) once it runs */
    struct bundles *bundlesq;   /* bundles.c, or NULL */
    const char *memlimit_mech;  /* "cgroup2", "cgroup1" or "rlimit-as" */
    char cg_parent[4096];       /* parent of task cgroups; "" with rlimit-as */
    struct proc_cgroup cg_own;  /* cgroup1: the worker's own parent (removed at exit) */
    struct cg_retry *cg_retry;  /* memlimit.c: task cgroups whose removal is retried */
    uint64_t cg_timer;
    char sock_dir[72];       /* task sockets (private 0700 folder) */
    int sock_dir_tmp;        /* 1: created by this process, removed at exit */
    char task_path[8192];    /* PATH of tasks: the worker's folder first */
    struct workq *spawner;   /* spawner.c, or NULL: spawns run on the loop */
    int64_t spawns_inflight; /* tasks whose spawn is with a spawner thread */
    struct tsock **socks;    /* tasksock.c: the socket pool */
    size_t nsocks;
    int devnull;                      /* /dev/null for the tasks' stdin (opened once), or -1 */
    struct proc_exe_cache *exe_cache; /* PATH lookups of task commands, or NULL */
    char hostname[256];               /* reported at start */

    /*
     * Called by task.c whenever a slot was freed or a task ended (main.c:
     * poll again, or finish a drain): the task path hands control back
     * through this hook instead of calling into the file that called it.
     */
    void (*changed)(struct worker *w);

    int poll_inflight;
    unsigned poll_failures;
    uint64_t poll_timer;

    struct wtask *tasks;
    int64_t slots;
    int64_t running;       /* tasks holding a slot (STARTING, RUNNING) */
    struct rolehttp *http; /* worker.listen: its probes and metrics, or NULL */
    uint64_t cap_timer;    /* pending capacity frame to the supervisor */
    int64_t cap_sent;      /* free slots last told to the supervisor, -1: none yet */

    int once_taken;   /* --once: the one task was confirmed */
    int once_result;  /* exit code for --once */
    int plane_hold;   /* enum role_hold: the plane's desired_state (no new work) */
    int drain_forced; /* second SIGTERM or drain grace passed: running tasks are stopped */
};

/* The worker takes no new work: draining, stopping or finished (role.h). */
int worker_draining(const struct worker *w);

/* ---- task.c ---- */
/* Takes an offer (asg owned): asks the plane to start it, then runs it. Malformed
 * assignments are logged and dropped or failed. */
void task_offer(struct worker *w, json_t *asg);
/* A call with t's task token that keeps t alive until fn has run (fn gets t as arg's owner). */
typedef void (*task_call_fn)(struct wtask *t, void *arg, const struct api_result *res);
/* A call of the api's typed task calls on behalf of t (holding a reference
 * on it until its callback ran): c = task_call_new(t, fn, arg) (NULL: fn was
 * called with REMEX_ENOMEM), then task_call_started(c, api_xxx(..., task_call_done,
 * c, &e), &e) (on an error fn is called at once). fn runs exactly once. */
struct tcall;
struct tcall *task_call_new(struct wtask *t, task_call_fn fn, void *arg);
void task_call_started(struct tcall *c, remex_err rc, const struct remex_error *e);
void task_call_done(void *arg, const struct api_result *res);
void task_cancel(struct worker *w, int64_t ti_id, int64_t try_number, const char *reason);
/* Stops every running task (SIGTERM, then SIGKILL after the grace period). */
void task_stop_all(struct worker *w, const char *reason);
void task_reap(struct worker *w);
void task_release(struct wtask *t);
/* Frees every task (shutdown). */
void task_free_all(struct worker *w);

/* ---- memlimit.c ---- */
struct cg_retry;
/*
 * Picks the memory-limit mechanism (worker.task_defaults.memory_enforcement),
 * creates the worker's own cgroup v1 parent when that is the one (removing
 * stale ones of dead workers first) and logs which is in force and why.
 * Fails only when a forced mechanism is not usable.
 */
remex_err memlimit_init(struct worker *w, struct remex_error *e);
/* Removes a finished task's cgroup now, or kills its members and retries for a while. */
void memlimit_release(struct worker *w, struct proc_cgroup *cg);
/* Exit: the retried task cgroups and the worker's own parent go (bounded wait). */
void memlimit_shutdown(struct worker *w);

/* Finishes the start of the task of a spawn that came back from a spawner thread. */
void task_spawned(struct spawn_job *j);

/* ---- storeio.c ---- */
enum store_op { STORE_PUT, STORE_PUT_FILE, STORE_GET_URI, STORE_SECRETS };
/* One transfer run by the store thread; done runs on the loop, then the job is freed. */
struct store_job {
    struct workq_job wj;    /* with the store thread (storeio.c) */
    struct wtask *t;        /* a pending reference is held while the job is out */
    struct objstore *store; /* borrowed */
    enum store_op op;
    char *key;               /* owned: PUT/PUT_FILE key, GET_URI uri */
    char *path;              /* owned: PUT_FILE source file */
    char *checksum;          /* owned: GET_URI expected checksum, or NULL */
    struct buf data;         /* PUT data in, GET_URI data out (its cap bounds the object) */
    struct objstore_ref ref; /* PUT/PUT_FILE result */
    /*
     * SECRETS: req (owned, deep copy made on the loop) holds "connections" and
     * "variables" (arrays of ids, for the task's environment), or "conn" / "var"
     * (one id, for remex-task); res (owned, made on the thread) receives "env"
     * {REMEX_CONN_ID: uri, REMEX_VAR_KEY: value}, "conn" (object with "uri"),
     * "value", "mask" [values to register with the task's masker], and on failure
     * "error" (message naming backend and key, never a value) and "code"
     * ("not_found" or "unavailable").
     */
    struct secrets *secrets; /* borrowed: only the store thread uses it once the loop runs */
    json_t *req;
    json_t *res;
    remex_err rc;
    struct remex_error err;
    void (*done)(struct store_job *j); /* on the loop; must not free j */
    void *arg;
};
struct store_job *store_job_new(struct wtask *t, struct objstore *store, enum store_op op,
                                size_t cap);
void store_job_free(struct store_job *j);
remex_err storeio_start(struct worker *w, struct remex_error *e);
/* Queues j (taking it) and a pending reference on j->t; -1 without the thread or queue full. */
int storeio_submit(struct worker *w, struct store_job *j);
/* Joins the thread, then runs the done callbacks of every job (unrun ones: REMEX_ECLOSED). */
void storeio_stop(struct worker *w);

/* ---- bundles.c ---- */
/* Starts the bundle thread (and the periodic snapshots of versioned local bundles). */
remex_err bundles_start(struct worker *w, struct remex_error *e);
/*
 * t's folder at its bundle version: 0 when there is nothing to wait for (t->cwd
 * set, or t->prep_error set with the reason); 1 when a job of the bundle thread
 * will set one of them, hold the version folder in t->bundle_fd and call cont(t)
 * on the loop (t holds a pending reference meanwhile).
 */
int bundles_resolve(struct wtask *t, void (*cont)(struct wtask *t));
/* Cancels a fetch in transfer (at libgit2's next progress callback) and every later one. */
void bundles_cancel(struct worker *w);
/* Stops the thread (a fetch in progress is cancelled); waiting tasks continue with the reason. */
void bundles_stop(struct worker *w);
/* The bundle thread's figures in Prometheus text. */
void bundles_metrics(struct worker *w, struct buf *out);

/* ---- spawner.c ---- */
/* Starts the spawner threads (none: spawns stay on the loop). */
remex_err spawner_start(struct worker *w, struct remex_error *e);
/* Queues j; -1 without spawner threads or with the queue full (then spawn on the loop). */
int spawner_submit(struct worker *w, struct spawn_job *j);
/* Joins the threads; children of spawns done but not collected are killed. */
void spawner_stop(struct worker *w);

/* ---- tasklog.c ---- */
/* Sets t->log_path (owned by t) from the log folder, DAG, run, task and try,
 * unless already set; the start call names it to the plane. */
remex_err tasklog_path(struct wtask *t, struct remex_error *e);
/* Creates the folders and opens t->log_path (tasklog_path first). */
remex_err tasklog_open(struct wtask *t, struct remex_error *e);
/* Appends raw output bytes; complete lines are timestamped, masked and written. */
void tasklog_feed(struct wtask *t, const char *p, size_t n);
/* Writes a worker note (timestamped, prefixed "[remex]") into the log. */
void tasklog_note(struct wtask *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tasklog_close(struct wtask *t);
/* Buffer cap of a log upload job; the upload itself streams from the file, whatever its size. */
#define TASKLOG_UPLOAD_MAX (256u * 1024u * 1024u)
/* The object key of t's log in logs.store ("logs/dag_id=.../attempt=N.log") into b. */
remex_err tasklog_store_key(struct wtask *t, struct buf *b);
/* With logs.store and logs.upload_interval: uploads the running try's log periodically. */
void tasklog_stream_start(struct wtask *t);
void tasklog_stream_stop(struct wtask *t);
/* After a successful upload: removes path after logs.local_retention (copied; 0: never). */
void tasklog_expire_later(struct worker *w, const char *path);
/* Shutdown: forgets pending removals (the files stay). */
void tasklog_expiry_free(struct worker *w);
/* The URI the plane gets for t's log at start: the stored copy when streaming, else the file. */
void tasklog_start_uri(struct wtask *t, char *out, size_t cap);

/* ---- tasksock.c ---- */
/* Lends t a socket of the pool and names it in t's REMEX_SOCKET. */
remex_err tasksock_open(struct wtask *t, struct remex_error *e);
/* Closes t's connections and gives its socket back to the pool. */
void tasksock_close(struct wtask *t);
/* Accepts t's connections again once its pid is known (after a spawn came back). */
void tasksock_resume(struct wtask *t);
/* Closes and removes every socket of the pool (shutdown). */
void tasksock_pool_free(struct worker *w);

#endif
