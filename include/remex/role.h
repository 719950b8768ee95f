/*
 * role: the common start of every role binary (remex-worker, and the roles to
 * come), in the manner of relayd's proc_run.
 *
 * role_main() does, in order: argument parsing (-c FILE, --check, --once and
 * --instance when the role has them, one option of the role's own,
 * --log-format, --log-level, -h, --version); --check of the
 * whole agent.yaml (agentcfg_check, then the role's own check); config load
 * and validation (exit 100 with file:line:col messages); malloc tuning (one
 * arena); log set-up; TLS library start-up (OpenSSL's configuration only when
 * the plane is https); the event loop with SIGTERM, SIGINT and SIGHUP (and
 * SIGCHLD for roles with children) through signalfd; the supervisor channel
 * (REMEX_SUPERVISOR_FD: readiness, drain requests, EOF = supervisor gone).
 * Then the role's start hook, the loop, the role's stop hook and a clean exit.
 *
 * Lifecycle of a role process (one state, never a set of flags):
 *
 *   STARTING --role_ready--> READY --drain request--> DRAINING
 *   STARTING/READY --drain request--> DRAINING --second SIGTERM--> STOPPING
 *   any --role_finish--> FINISHED (the loop ends; stop hook; exit code)
 *
 * A drain request is the first SIGTERM/SIGINT, {"type":"drain"} from the
 * supervisor, or the supervisor's end of file. The runtime tells the
 * supervisor ("draining") and calls ops.drain; a second SIGTERM/SIGINT calls
 * ops.stop_now. The role calls role_finish when it is done.
 *
 * Exit codes: remex/exit.h. Calls go down: the runtime calls the role only
 * through struct role_ops.
 */
#ifndef REMEX_ROLE_H
#define REMEX_ROLE_H

#include "remex/agentcfg.h"
#include "remex/api.h"
#include "remex/buf.h"

struct evloop;
struct ipc_conn;

enum role_state {
    ROLE_STARTING = 0, /* set up, not yet able to do its work */
    ROLE_READY,        /* doing its work ("ready" sent to the supervisor) */
    ROLE_DRAINING,     /* finishing what it holds, taking nothing new */
    ROLE_STOPPING,     /* second signal: stopping what it holds now */
    ROLE_FINISHED,     /* role_finish called: the loop ends */
};

#define ROLE_HAS_ONCE     0x1u /* accepts --once */
#define ROLE_HAS_CHILDREN 0x2u /* gets SIGCHLD through ops.child */
#define ROLE_HAS_INSTANCE 0x4u /* accepts --instance NAME (r->instance) */

struct role;

struct role_ops {
    const char *name; /* "worker": log prefix, supervisor frames, registered role */
    unsigned flags;   /* ROLE_HAS_* */
    /* One more long option with an argument (e.g. "roles"), its value in r->opt; NULL: none. */
    const char *opt_name;
    const char *opt_help; /* usage text of that option ("--roles worker,triggerer") */
    /* Extra --check beyond the agent's (NULL: none): appends "path: message" lines to out
     * and returns 0 or REMEX_EXIT_CONFIG. */
    int (*check)(const struct agentcfg *cfg, const char *path, struct buf *out);
    /* The role's log level and format from its section (NULL: logs.level, logs.format). */
    void (*log_config)(const struct agentcfg *cfg, const char **level, const char **format);
    /* The role's own set-up, once the runtime's is done: -1 to run, else an exit code. */
    int (*start)(struct role *r);
    /* A drain request (why: "SIGTERM", "supervisor request", "supervisor gone"). */
    void (*drain)(struct role *r, const char *why);
    /* Second SIGTERM/SIGINT while draining: stop what is held now (NULL: finish at once). */
    void (*stop_now)(struct role *r);
    /* The drain grace armed by role_drain_grace is over (NULL: nothing to do). */
    void (*grace_over)(struct role *r);
    /* SIGHUP, after the runtime's own reload (api_reload of a client opened by role_api). */
    void (*reload)(struct role *r);
    /* SIGCHLD (ROLE_HAS_CHILDREN). */
    void (*child)(struct role *r);
    /* After the loop ended (also when start failed): release the role's resources. */
    void (*stop)(struct role *r);
};

/* The runtime's state; the role reads these fields, and writes only ud. */
struct role {
    const struct role_ops *ops;
    void *ud;                /* the role's own state */
    const char *config_path; /* -c, or NULL */
    struct agentcfg cfg;     /* loaded and validated */
    struct evloop *loop;     /* owned by the runtime */
    struct api_client *api;  /* opened by role_api, freed by the runtime after ops.stop */
    enum role_state state;
    int once;                 /* --once given */
    const char *instance;     /* --instance, or NULL */
    const char *opt;          /* the value of ops.opt_name, or NULL */
    int exit_code;            /* set by role_finish */
    const char *drain_reason; /* static, once draining */
    struct ipc_conn *sup;     /* supervisor channel, or NULL when run alone */
    uint64_t trim_timer;
    uint64_t grace_timer; /* role_drain_grace */
};

/* Runs the role; returns the process's exit code. ud becomes r->ud. */
int role_main(const struct role_ops *ops, void *ud, int argc, char **argv);

/*
 * Opens r->api for the role with the agent's plane settings: name, the
 * role's state folder (its report journal is <state_dir>/journal; NULL: no
 * reports), the longest long-poll wait and the role's hooks. Does not start
 * it (api_start).
 */
remex_err role_api(struct role *r, const char *name, const char *state_dir, uint64_t long_poll_ms,
                   const struct api_hooks *hooks, struct remex_error *e);

/* The role can do its work: READY, and "ready" to the supervisor (once). */
void role_ready(struct role *r);
/*
 * Sends {"type":type,"role":..,"pid":..,...extra} (extra borrowed, or NULL) to
 * the supervisor; nothing when run alone. Frames are small and rare (a
 * role rate-limits what changes often).
 */
void role_notify(struct role *r, const char *type, const json_t *extra);
/* Ends the loop with code (idempotent: the first code stays). */
void role_finish(struct role *r, int code);
/* Starts draining as if asked (e.g. the plane asked); idempotent. */
void role_drain(struct role *r, const char *why);
/*
 * Arms the drain grace: ops.grace_over is called once ms have passed (a
 * second call while armed changes nothing). The runtime cancels it at the end.
 */
void role_drain_grace(struct role *r, uint64_t ms);
/* Heap pages given back to the system once the role stayed idle for 2 s. */
void role_idle_trim(struct role *r);

/* The plane's hold on new work, from desired_state in heartbeat replies. */
enum role_hold {
    ROLE_HOLD_NONE = 0,        /* "run": take work */
    ROLE_HOLD_DRAIN = 1,       /* "drain": no new work, what is held goes on */
    ROLE_HOLD_MAINTENANCE = 2, /* "maintenance": as drain, reported as maintenance */
};
/* The hold the plane's desired_state asks for; cur when ds is NULL or unknown. */
int role_plane_hold(const char *desired_state, int cur);
/*
 * The "state" a role's heartbeat reports: "draining" while r drains or under
 * the plane's drain hold, "maintenance" under its maintenance hold, else
 * "running".
 */
const char *role_beat_state(const struct role *r, int hold);

#endif
