/*
 * remex-agent internal interfaces: the supervisor of the agent's roles.
 *
 * Built on the role runtime (remex/role.h) like every role: flags, the one
 * agent.yaml, signals through signalfd, the life cycle. Files:
 *   main.c     role hooks (start, drain, stop now, SIGHUP, SIGCHLD), the agent's own
 *              state and readiness (systemd notify), the client commands
 *              (remex-agent status|restart ROLE|stop)
 *   child.c    the role table and one state machine per child: spawn (socket at fd 3,
 *              own process group, parent-death signal), readiness, exit, restart with
 *              backoff, FATAL; the children's output, line by line, prefixed
 *   control.c  the control socket (status, restart, stop) and the status file
 *
 * Calls go down: main.c -> child.c, control.c; child.c and control.c report
 * back through the agent_hooks of struct agent, never by calling main.c.
 */
#ifndef REMEX_AGENT_H
#define REMEX_AGENT_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "remex/buf.h"
#include "remex/role.h"

struct ipc_conn;
struct agent;

/* One line of the role table (child.c), like relayd's procs[]. */
struct role_def {
    const char *role;   /* "worker" */
    const char *binary; /* "remex-worker" */
    int drains;         /* 1: a drain lets it finish its work (workers); 0: it stops at once */
};

/*
 * A child's state. Events: start, ready, exit, drain, stop-now, restart
 * (control socket), timer. The transitions (child.c, child_event) are:
 *
 *   state     | start    ready  exit                        drain     stop-now   restart
 *   ----------+--------------------------------------------------------------------------
 *   DOWN      | STARTING  -     -                           STOPPED   STOPPED    STARTING
 *   STARTING  | -        UP     BACKOFF|FATAL               STOPPING  STOPPING   STOPPING*
 *   UP        | -        -      BACKOFF|FATAL               STOPPING  STOPPING   STOPPING*
 *   BACKOFF   | STARTING  -     -                           STOPPED   STOPPED    STARTING
 *   FATAL     | -         -     -                           STOPPED   STOPPED    STARTING
 *   STOPPING  | -         -     STOPPED (STARTING after *)  -         (kill)     -
 *   STOPPED   | -         -     -                           -         -          -
 *
 * (* restart of a running child: it is stopped, then started again at once.)
 */
enum child_state {
    CH_DOWN = 0, /* not started yet */
    CH_STARTING, /* spawned, not ready */
    CH_UP,       /* ready */
    CH_BACKOFF,  /* exited, restart timer armed */
    CH_FATAL,    /* not restarted: crash loop, exit 100, or its binary is missing */
    CH_STOPPING, /* asked to drain or stop; waiting for its exit */
    CH_STOPPED,  /* exited during the agent's shutdown: stays down */
};

const char *child_state_name(enum child_state s);

#define CRASH_WINDOW_MS 60000 /* more than CRASH_MAX exits in this window: FATAL */
#define CRASH_MAX       5

struct child {
    struct agent *a;
    const struct role_def *def;
    char instance[72]; /* worker instance name, or the role's name */
    char label[96];    /* "worker" or "worker/w1": prefix of its output lines */
    enum child_state state;
    pid_t pid;              /* 0 when none */
    struct ipc_conn *sup;   /* our end of its supervisor channel */
    int out_fd;             /* read end of its stdout+stderr, -1 when closed */
    struct buf line;        /* partial output line */
    int ready;              /* reported ready since its last start */
    int restart_after_stop; /* a restart command is waiting for the exit */
    uint64_t started_ms, ready_ms;
    uint64_t timer;                /* backoff or kill deadline */
    unsigned consecutive;          /* exits since it was last ready for 60 s (doubling) */
    uint64_t exits[CRASH_MAX + 1]; /* monotonic times of the last counted exits, ring */
    unsigned nexits;
    unsigned restarts;
    char last_exit[96]; /* "exit code 1", "killed by signal 9 (KILL)", "" */
    json_t *capacity;   /* owned: a worker's last {"queues","slots","free_slots"}, or NULL */
    char fatal_reason[160];
};

/* What child.c and control.c tell the agent (main.c), as hooks. */
struct agent_hooks {
    void (*changed)(struct agent *a);      /* a child's state or readiness changed */
    void (*stop_request)(struct agent *a); /* the control socket asked for a stop */
};

struct agent {
    struct role *r;
    struct agent_hooks hooks;
    struct child *children;
    size_t nchildren;
    char self_dir[4096]; /* folder of remex-agent: role binaries are looked up here first */
    int json_logs;       /* logs.format json: children's lines re-emitted as JSON */
    int forced;          /* second SIGTERM: groups get SIGTERM, then SIGKILL */
    int notified_ready;  /* READY=1 sent to systemd */
    uint64_t start_ms;
    int ctl_fd;                  /* control socket, -1 when none */
    struct ipc_conn **ctl_conns; /* open control connections */
    size_t nctl;
    char status_path[4200];
};

/* ---- child.c ---- */
/* Builds the children for roles (the agent.roles list or --roles) and workers[]. */
remex_err child_setup(struct agent *a, const char *roles_opt, struct remex_error *e);
void child_start_all(struct agent *a);
/* Drain (workers finish their work; other roles stop at once). */
void child_drain_all(struct agent *a);
/* SIGTERM to every group now, SIGKILL after agent.stop_grace. */
void child_stop_all_now(struct agent *a);
/* SIGCHLD: reaps children and orphans (as PID 1 or subreaper). */
void child_reap(struct agent *a);
/* SIGHUP forwarded to every running child. */
void child_signal_all(struct agent *a, int signo);
/* The control socket's restart: clears FATAL, restarts a running one. REMEX_ENOTFOUND. */
remex_err child_restart(struct agent *a, const char *name, struct remex_error *e);
/* 1 when every child has exited for good (STOPPED, FATAL, DOWN). */
int child_all_stopped(const struct agent *a);
/* 1 when every child is UP. */
int child_all_ready(const struct agent *a);
/* {"role","instance","pid","state","ready","uptime_s","restarts","last_exit"} (new reference). */
json_t *child_status(const struct child *c);
void child_free_all(struct agent *a);

/* ---- control.c ---- */
remex_err control_open(struct agent *a, struct remex_error *e);
/* Rewrites the status file (atomically). */
void control_write_status(struct agent *a);
/* The status document (new reference): the status reply and the status file. */
json_t *control_status_doc(struct agent *a);
void control_close(struct agent *a);
/* Client side: remex-agent status|restart ROLE|stop. Returns the exit code. */
int control_client(const char *socket_path, int argc, char **argv);

#endif
