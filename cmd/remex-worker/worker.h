/*
 * remex-worker internal interfaces, shared by the worker's files.
 *
 * One event-loop thread: every fd (curl sockets, task output pipes, task
 * sockets, signalfd) and every timer is driven by the loop in main.c. HTTP
 * calls to the plane go through one http_multi (non-blocking). Signals arrive
 * through the loop's signalfd; SIGCHLD is answered by reaping with WNOHANG.
 * Spawner threads (spawner.c) only run proc_spawn on jobs the loop hands them.
 *
 * Files and what they own:
 *   main.c      flags, --check, signals, start/stop order, exit codes
 *   config.c    the agent.yaml table (plane.*, worker.*, bundles, secrets, xcom)
 *   memlimit.c  memory-limit mechanism (cgroup v2, cgroup v1, RLIMIT_AS), the worker's
 *               own v1 parent cgroup, removal of task cgroups
 *   plane.c     register, heartbeat, work long poll, start/state calls, the report
 *               journal and its replay, session refresh, fatal auth handling
 *   task.c      assignment decoding, environment, templates, limits, spawn, timeouts,
 *               cancellation, exit classification (incl. out of memory)
 *   tasklog.c   per-try log file: line splitting, timestamps, masking, size cap
 *   tasksock.c  the task sockets (remex-task protocol, docs/task-protocol.md), pooled
 *   spawner.c   spawner threads: proc_spawn off the loop
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
#include "remex/proc.h"

struct evloop;
struct journal;
struct mask;
struct secrets;
struct ipc_conn;
struct objstore;
struct call;
struct bundle_set;
struct spawner;

/* Exit codes of remex-worker. */
#define WORKER_EXIT_OK    0
#define WORKER_EXIT_FAIL  1   /* runtime failure (or --once: the task did not succeed) */
#define WORKER_EXIT_USAGE 2   /* bad command line */
#define WORKER_EXIT_AUTH  100 /* bad configuration or credentials: do not restart */

/* worker.task_defaults.memory_enforcement */
enum wmem_enforcement {
    WMEM_AUTO = 0, /* cgroup2, else cgroup1, else rlimit */
    WMEM_CGROUP2,
    WMEM_CGROUP1,
    WMEM_RLIMIT,
};
extern const char *const wmem_enforcement_names[];

struct wbundle {
    char *name;
    char *path;
};

/* agent.yaml, after defaults and REMEX_* overrides (config.c). */
struct wconfig {
    char *plane_url;
    struct cfg_secret token;
    char *ca_file;
    char *name;
    struct cfg_strlist queues;
    int64_t slots; /* 0: number of CPUs */
    char *state_dir;
    char *log_dir;
    uint64_t log_max_bytes;
    uint64_t poll_wait_ms;
    uint64_t drain_grace_ms;
    uint64_t grace_ms;       /* SIGTERM -> SIGKILL */
    uint64_t memory_limit;   /* bytes, 0: none */
    int memory_enforcement;  /* enum wmem_enforcement */
    uint64_t cpu_time_ms;    /* 0: none */
    int64_t max_processes;   /* 0: none (RLIMIT_NPROC counts per uid) */
    int64_t open_files;      /* 0: none */
    char *cgroup_parent;     /* cgroup v2 parent for per-task cgroups */
    char *socket_dir;        /* parent of the task socket folder; NULL: automatic */
    struct cfg_list bundles; /* struct wbundle */
    char *secrets_file;
    char *xcom_store; /* objstore URI: file:///var/lib/remex/xcom */
    char *log_level;
    char *log_format;
};

extern const struct cfg_entry wconfig_table[];

enum wtask_phase {
    WT_STARTING = 0, /* start call in flight */
    WT_RUNNING,      /* process spawned (or about to be) */
    WT_EXITED,       /* process reaped, output drained; report pending */
    WT_DONE,         /* report handed over; freed when pending == 0 */
};

/* A spawn handed to a spawner thread (spawner.c); lives in its task. */
struct spawn_job {
    struct spawn_job *next;
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
    uint64_t start_timer;    /* retry of an unconfirmed start (holds a pending reference) */
    unsigned start_attempts; /* start calls that got no definitive answer */
    uint64_t start_first_ms; /* monotonic time of the first start call */
    const char *stop_reason; /* static: execution_timeout, cancelled: ..., worker shutdown */
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
    struct wconfig cfg;
    struct evloop *loop;
    struct http_multi *multi;
    struct call *calls;       /* plane.c: calls in flight */
    struct http_client *cli;  /* control calls */
    struct http_client *poll; /* work long poll (longer timeout) */
    uint64_t http_timer;
    struct journal *journal;
    struct secrets *secrets;
    struct objstore *xstore;
    struct bundle_set *bundles;
    const char *memlimit_mech; /* "cgroup2", "cgroup1" or "rlimit-as" */
    char cg_parent[4096];      /* parent of task cgroups; "" with rlimit-as */
    struct proc_cgroup cg_own; /* cgroup1: the worker's own parent (removed at exit) */
    struct cg_retry *cg_retry; /* memlimit.c: task cgroups whose removal is retried */
    uint64_t cg_timer;
    char sock_dir[72];       /* task sockets (private 0700 folder) */
    int sock_dir_tmp;        /* 1: created by this process, removed at exit */
    char task_path[8192];    /* PATH of tasks: the worker's folder first */
    struct spawner *spawner; /* spawner.c, or NULL: spawns run on the loop */
    int64_t spawns_inflight; /* tasks whose spawn is with a spawner thread */
    struct tsock **socks;    /* tasksock.c: the socket pool */
    size_t nsocks;
    int devnull;                      /* /dev/null for the tasks' stdin (opened once), or -1 */
    struct proc_exe_cache *exe_cache; /* PATH lookups of task commands, or NULL */
    char hostname[256]; /* reported at register and start; read at each registration */

    char *agent_id;
    char *session;
    int64_t heartbeat_ms;
    uint64_t hb_timer;
    int hb_inflight, poll_inflight, reg_inflight, replay_inflight;
    int registered;
    int plane_ok;
    unsigned poll_failures, hb_failures, reg_failures, replay_failures;
    uint64_t poll_timer, replay_timer, reg_timer;
    int session_refusals; /* consecutive 401s on fresh sessions */
    int auth_retry;       /* 401 seen once: token file re-read and re-register attempted */

    struct wtask *tasks;
    int64_t slots;
    int64_t running; /* tasks holding a slot (STARTING, RUNNING) */
    int64_t reports_inflight;
    json_t *held; /* reports the journal refused, retried from memory (owned) */

    int once;         /* --once: take one task, run it, exit */
    int once_taken;   /* the one task was confirmed */
    int once_result;  /* exit code for --once */
    int draining;     /* SIGTERM seen */
    int plane_hold;   /* the plane's desired_state: 0 run, 1 drain, 2 maintenance (no new work) */
    int drain_forced; /* second SIGTERM or drain grace passed */
    uint64_t drain_timer;
    int exit_code;
    int stopping;

    struct ipc_conn *sup; /* supervisor channel (REMEX_SUPERVISOR_FD) or NULL */
    int sup_ready;        /* "ready" was sent */
};

/* ---- plane.c ---- */
remex_err plane_init(struct worker *w, struct remex_error *e);
void plane_shutdown(struct worker *w);
void plane_register(struct worker *w);
/* Delivers the journal, oldest first; registers when it is empty and not registered. */
void plane_replay(struct worker *w);
/* Polls for work when slots are free, the plane is reachable and the journal is empty. */
void plane_maybe_poll(struct worker *w);
/* Calls start for t (task.c continues in task_started / task_gone). */
void plane_start(struct worker *w, struct wtask *t);
/* Sends (or journals) the final report body (owned) of t. */
void plane_report(struct worker *w, struct wtask *t, json_t *body);
/* XCom reference calls for the task socket; cb receives rc, the reply (owned or NULL), a message.
 */
typedef void (*plane_json_cb)(struct worker *w, struct wtask *t, void *arg, remex_err rc,
                              json_t *reply, const char *msg);
void plane_task_call(struct worker *w, struct wtask *t, const char *method, const char *path,
                     json_t *body, plane_json_cb cb, void *arg);
/* Stops the loop with code (fatal credentials, drain complete). */
void worker_finish(struct worker *w, int code);
/* Checks whether a draining or --once worker is done. */
void worker_check_done(struct worker *w);
/* Starts draining (SIGTERM, supervisor request or supervisor gone); idempotent. */
void worker_drain(struct worker *w, const char *why);
/* Tells the supervisor, if any, that the worker can take work (once). */
void worker_notify_ready(struct worker *w);

/* ---- task.c ---- */
/* Takes an offer (asg owned). Malformed assignments are logged and dropped or failed. */
void task_offer(struct worker *w, json_t *asg);
void task_started(struct wtask *t);
void task_gone(struct wtask *t, const char *why);
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

/* ---- spawner.c ---- */
/* Starts the spawner threads (none: spawns stay on the loop). */
remex_err spawner_start(struct worker *w, struct remex_error *e);
/* Queues j; -1 without spawner threads. */
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
