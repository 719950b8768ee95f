/*
 * proc: spawning, signalling, reaping and confining child processes.
 *
 * proc_spawn forks and execs a child from an explicit spec: argv (execve, no
 * shell), an explicit environment (NULL means empty: the parent's environment
 * is never inherited implicitly), working directory, new session, rlimits,
 * uid/gid drop, umask, stdio redirection, parent fds mapped to fixed child fd
 * numbers, parent-death signal and optional cgroup placement (v2, or the v1
 * memory hierarchy; lib/proc_cgroup.c). The child's fd table holds exactly 0,
 * 1, 2 and the mapped fds; everything else is closed. Signal dispositions
 * and the signal mask are reset to defaults.
 * Every step between fork and exec that fails is reported back synchronously
 * through a close-on-exec pipe, so proc_spawn fails with a message such as
 * "exec /no/such: No such file or directory" and the child has been reaped.
 *
 * Between fork and exec the child only makes async-signal-safe calls: all
 * allocation, path lookup and file opening happens in the parent first.
 *
 * How the child is created (proc_spawn_mechanism names the one in force):
 *  - "clone-vfork", the default: clone(CLONE_VM | CLONE_VFORK | SIGCHLD) on
 *    a private 64 KiB stack with a PROT_NONE guard page below it. No page
 *    tables are copied; the calling thread is suspended until the child has
 *    exec'd or exited. The child writes none of the parent's memory except
 *    one word of the spawn plan and the calling thread's errno, takes no
 *    lock, calls no allocator, and runs with every signal blocked until all
 *    dispositions are reset, so no parent handler runs in it. A child that
 *    dies by a signal before exec is reported ("spawn: child killed by
 *    signal 11 (SEGV) before exec") instead of passing for a success.
 *  - "fork": plain fork(). Used in AddressSanitizer builds, under valgrind
 *    (which runs CLONE_VM | CLONE_VFORK as a copying fork, so the child's
 *    result word would never reach the parent), and when the environment
 *    has REMEX_SPAWN=fork (for debugging).
 *
 * Error codes: REMEX_EINVAL for a bad spec, REMEX_ENOTFOUND (ENOENT),
 * REMEX_EPERM (EACCES, EPERM), REMEX_ENOMEM, REMEX_ETIMEOUT, REMEX_EUNSUPPORTED,
 * REMEX_ESYS for any other errno; the message names the step and strerror.
 *
 * Thread-safety: functions keep no global state. proc_spawn may run from
 * several threads at once (the error pipe is close-on-exec), but fds that
 * another thread opens without O_CLOEXEC during a fork are still closed in the
 * child because the fd table is cleaned. proc_env_copy reads the environment
 * with getenv and must not race setenv. proc_set_subreaper and proc_reap_all
 * act on the whole process.
 */
#ifndef REMEX_PROC_H
#define REMEX_PROC_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "remex/err.h"

/* ---- environment ---------------------------------------------------- */

/*
 * The error code of the proc module (and of its cgroup part) for an errno
 * value: ENOENT and ENOTDIR REMEX_ENOTFOUND, EACCES, EPERM and EROFS
 * REMEX_EPERM, ENOMEM, EEXIST, anything else REMEX_ESYS.
 */
remex_err proc_errno_code(int err);

#define PROC_ENV_MAX_VARS  1024         /* variables in one environment */
#define PROC_ENV_MAX_ENTRY (128 * 1024) /* bytes of one "NAME=value", NUL excluded */

/*
 * An owned environment: vars is NULL or a NULL-terminated array of malloc'd
 * "NAME=value" strings, all owned by the struct. Names are non-empty and hold
 * no '=' . Zero-initialised (or proc_env_init) is a valid empty environment.
 */
struct proc_env {
    char **vars;
    size_t n;   /* entries in use */
    size_t cap; /* slots allocated, the NULL terminator included */
};

void proc_env_init(struct proc_env *env);
/* Sets or replaces NAME. name and value are copied. EINVAL for a bad name, ETOOBIG at a cap. */
remex_err proc_env_set(struct proc_env *env, const char *name, const char *value,
                       struct remex_error *e);
/* Adds pairs {"NAME", "value", ..., NULL} (borrowed, copied). An odd count is EINVAL. */
remex_err proc_env_set_pairs(struct proc_env *env, const char *const *pairs, struct remex_error *e);
/* Copies the listed variables (NULL-terminated, borrowed) that are set in this process. */
remex_err proc_env_copy(struct proc_env *env, const char *const *names, struct remex_error *e);
/* Borrowed pointer to the value of NAME, or NULL. Valid until the env changes. */
const char *proc_env_get(const struct proc_env *env, const char *name);
/* NULL-terminated array for proc_spec.envp, never NULL; borrowed from env. */
char *const *proc_env_array(const struct proc_env *env);
/* Releases every entry; the struct is left empty and reusable. */
void proc_env_free(struct proc_env *env);

/* ---- spawn ------------------------------------------------------------ */

#define PROC_MAX_FDMAP    64   /* entries in proc_spec.fds */
#define PROC_MAX_CHILD_FD 1023 /* highest child fd number a mapping may name */
#define PROC_MAX_RLIMITS  16   /* entries in proc_spec.rlimits */

enum proc_stdio_kind {
    PROC_STDIO_INHERIT = 0, /* keep the parent's fd of the same number (/dev/null if closed) */
    PROC_STDIO_NULL = 1,    /* /dev/null (read for stdin, write for stdout/stderr) */
    PROC_STDIO_FD = 2,      /* dup of fd (borrowed; the caller keeps and closes it) */
    PROC_STDIO_FILE = 3,    /* path opened O_WRONLY|O_APPEND|O_CREAT, mode 0640
                               (stdin: O_RDONLY), by the parent, before any id drop */
};

struct proc_stdio {
    enum proc_stdio_kind kind;
    int fd;           /* PROC_STDIO_FD */
    const char *path; /* PROC_STDIO_FILE, borrowed */
};

/* Parent fd parent_fd (borrowed) appears in the child as child_fd (> 2). */
struct proc_fdmap {
    int parent_fd;
    int child_fd;
};

struct proc_rlimit {
    int resource; /* RLIMIT_AS, RLIMIT_CPU, RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_CORE, ... */
    struct rlimit lim;
};

struct proc_cgroup;

/*
 * Everything a child gets. All pointers are borrowed for the duration of
 * proc_spawn only. A zero-initialised spec (plus argv) means: exec argv[0]
 * as a path, empty environment, parent's cwd and umask, same session, stdio
 * inherited, no other fds, no limits, no id change, no parent-death signal.
 */
struct proc_spec {
    const char *path;  /* file to exec; NULL: argv[0] */
    char *const *argv; /* required, NULL-terminated, argv[0] != NULL */
    char *const *envp; /* NULL-terminated; NULL: empty environment */
    int search_path;   /* 1: a path without '/' is looked up in envp's PATH
                          (or /usr/local/bin:/usr/bin:/bin when envp has none)
                          for an executable regular file */
    const char *cwd;   /* NULL: unchanged */
    int new_session;   /* 1: setsid(), so pid == pgid == sid */
    int pdeathsig;     /* 0: none; else PR_SET_PDEATHSIG (fires when the forking
                          thread exits) */
    int set_umask;     /* 1: apply umask */
    mode_t umask;
    int drop_ids; /* 1: setgroups({gid}), setgid(gid), setuid(uid) before exec */
    uid_t uid;
    gid_t gid;
    struct proc_stdio stdio[3];
    const struct proc_fdmap *fds; /* nfds entries, child_fd unique, 3..PROC_MAX_CHILD_FD */
    size_t nfds;
    const struct proc_rlimit *rlimits; /* nrlimits entries, applied in order */
    size_t nrlimits;
    const struct proc_cgroup *cgroup; /* NULL: none; else the child joins it before exec */
    struct proc_exe_cache *exe_cache; /* NULL: search PATH at every spawn (search_path) */
};

/*
 * Forks and execs. On REMEX_OK *pid is the running child (exec has succeeded)
 * and the caller must eventually reap it. On failure no child remains and e
 * names the step: "chdir /x: ...", "exec /no/such: ...", "setrlimit RLIMIT_AS: ...".
 */
remex_err proc_spawn(const struct proc_spec *spec, pid_t *pid, struct remex_error *e);

/*
 * PATH lookups remembered between spawns (proc_spec.exe_cache), so a spawn
 * does not stat every folder before the one that holds the program. A lookup
 * of a name in a PATH value is remembered when every folder it searched, up
 * to and including the one it was found in, is an absolute folder that inotify
 * could watch. Any change in a watched folder (an entry created, removed,
 * renamed or its attributes changed; the folder itself removed or moved)
 * forgets every remembered lookup before the next one is served, so a
 * remembered lookup finds what a search would; a lookup that went through a
 * folder it could not watch (missing, relative, a file) searches every time.
 * Not noticed: a PATH folder given through a symlink that is re-pointed
 * elsewhere (the watch follows the old target). Not thread-safe: one cache per
 * thread. Costs one inotify descriptor and one non-blocking read per lookup.
 */
struct proc_exe_cache;

remex_err proc_exe_cache_new(struct proc_exe_cache **out, struct remex_error *e);
void proc_exe_cache_free(struct proc_exe_cache *c);

/*
 * "clone-vfork" or "fork" (static): the path proc_spawn takes in this process
 * now. Reads REMEX_SPAWN with getenv (must not race setenv).
 */
const char *proc_spawn_mechanism(void);

/* ---- waiting and exit status ------------------------------------------ */

/*
 * Waits for pid. timeout_ms < 0 blocks; otherwise REMEX_ETIMEOUT after about
 * timeout_ms. *wstatus receives the raw waitpid status. EINTR is retried.
 */
remex_err proc_wait(pid_t pid, int timeout_ms, int *wstatus, struct remex_error *e);

struct proc_status {
    int exited;  /* 1: exited normally, code is valid */
    int code;    /* exit code */
    int signo;   /* terminating (or stopping) signal, 0 if none */
    int core;    /* 1: a core was dumped */
    int stopped; /* 1: stopped (WUNTRACED status), signo is the stop signal */
};

void proc_status_decode(int wstatus, struct proc_status *st);
/* "KILL", "SEGV", ... (static, never NULL; "?" for an unknown number). */
const char *proc_signame(int signo);
/*
 * Writes "exit code 3", "killed by signal 9 (KILL)", "killed by signal 11
 * (SEGV), core dumped" or "stopped by signal 19 (STOP)" into buf (always
 * NUL-terminated when len > 0). Returns buf.
 */
char *proc_status_str(int wstatus, char *buf, size_t len);

/* ---- process groups ---------------------------------------------------- */

/*
 * Sends SIGTERM (then SIGCONT, so stopped members see it) to group pgid (> 1).
 * For an event loop: call this, track a deadline, then proc_kill_group_now if
 * the group is not empty. REMEX_ENOTFOUND if the group has no member.
 */
remex_err proc_term_group(pid_t pgid, struct remex_error *e);
/* SIGKILL to group pgid (> 1). REMEX_ENOTFOUND if the group has no member. */
remex_err proc_kill_group_now(pid_t pgid, struct remex_error *e);
/* 1 if no process (zombies included) is in group pgid. */
int proc_group_empty(pid_t pgid);
/*
 * Blocking convenience for simple callers; pgid must be our child and its
 * group leader. SIGTERM to the group, waits up to grace_ms for the leader to
 * exit and the group to empty, then SIGKILL to the group; reaps the leader
 * and stores its status in *wstatus (if not NULL). Grandchildren that stayed
 * in the group are signalled too; they are reaped by their own parent (or by
 * us when we are their subreaper).
 */
remex_err proc_kill_group(pid_t pgid, int grace_ms, int *wstatus, struct remex_error *e);

/* ---- reaping ------------------------------------------------------------ */

/*
 * Reaps every child that has exited, without blocking (waitpid(-1, WNOHANG)),
 * calling cb(pid, wstatus, arg) for each when cb is not NULL. Returns the
 * number reaped. For a supervisor running as PID 1 or as a subreaper.
 */
size_t proc_reap_all(void (*cb)(pid_t pid, int wstatus, void *arg), void *arg);
/* Makes this process the subreaper of its descendants (PR_SET_CHILD_SUBREAPER). */
remex_err proc_set_subreaper(struct remex_error *e);

/* ---- cgroups: v2, and the memory controller of cgroup v1 ------------------------ */

/*
 * A cgroup a child joins before exec. Both layouts share the API; what
 * differs:
 *  - cgroup v2: memory.max (and memory.swap.max 0), pids.max; out-of-memory
 *    kills are counted in memory.events (oom_kill); cgroup.kill kills the
 *    members.
 *  - cgroup v1, memory hierarchy only: memory.limit_in_bytes and
 *    memory.memsw.limit_in_bytes (when swap accounting has it) to the same
 *    value, so swap cannot dodge the limit; memory.oom_control's oom_kill
 *    line counts kills (Linux >= 4.13). memory.failcnt is not used: it counts
 *    every time usage hit the limit, reclaim that succeeded included, so it
 *    does not say that anything was killed.
 * The members are killed by reading cgroup.procs and sending SIGKILL (v1, and
 * v2 before Linux 5.14 without cgroup.kill); a member that forks while that
 * happens is caught by a re-read, up to a few rounds, so callers also kill
 * the task's process group and retry removal.
 */

#define PROC_CG_MEMORY 0x1u /* memory controller (memory.max, memory.events) */
#define PROC_CG_PIDS   0x2u /* pids controller (pids.max; cgroup v2 only) */

/*
 * A child cgroup created by proc_cgroup_create. The struct owns procs_fd
 * (cgroup.procs, open for writing, close-on-exec); proc_spawn makes the child
 * write to it before exec so the task never runs outside the cgroup.
 */
struct proc_cgroup {
    char path[4096];
    int procs_fd; /* -1 when not created */
    int v1;       /* 1: in the cgroup v1 memory hierarchy (set by proc_cgroup_create) */
};

/* Limits written at creation; 0 leaves the controller's default (no limit). */
struct proc_cgroup_limits {
    unsigned long long memory_max; /* bytes; v2: also memory.swap.max 0; v1: memsw too */
    unsigned long long pids_max;   /* cgroup v2 only: REMEX_EUNSUPPORTED on v1 */
};

/*
 * Checks at run time whether cgroup v2 placement under parent (e.g.
 * "/sys/fs/cgroup/remex") works: parent is on a cgroup2 mount, is a writable
 * directory and has the controllers in need enabled in cgroup.subtree_control.
 * REMEX_OK if usable; otherwise REMEX_EUNSUPPORTED (or REMEX_EPERM) and e
 * says why, e.g. "/sys/fs/cgroup: not a cgroup2 mount".
 */
remex_err proc_cgroup_probe(const char *parent, unsigned need, struct remex_error *e);
/*
 * Finds this process's own cgroup v1 memory cgroup directory: a "cgroup"
 * mount in mountinfo whose super options name the memory controller, joined
 * with the memory line of cgroup_file ("ID:CONTROLLERS:PATH") relative to the
 * mount's root (bind mounts of a subtree are handled; mount points are
 * unescaped). NULL files mean /proc/self/mountinfo and /proc/self/cgroup.
 * Writes the directory into dir (len bytes, NUL-terminated); nothing is
 * checked on disk (proc_cgroup_v1_probe does). Files over 1 MiB are
 * REMEX_ETOOBIG, malformed lines REMEX_EPARSE ("FILE:LINE: ..."); no memory
 * controller, no mount of it, or a cgroup outside this cgroup namespace is
 * REMEX_EUNSUPPORTED with the reason. dir is "" on failure.
 */
remex_err proc_cgroup_v1_locate(const char *mountinfo, const char *cgroup_file, char *dir,
                                size_t len, struct remex_error *e);
/*
 * Checks that dir is on a cgroup v1 mount with the memory controller
 * (memory.limit_in_bytes) and writable. REMEX_OK, else REMEX_EUNSUPPORTED or
 * REMEX_EPERM with the reason.
 */
remex_err proc_cgroup_v1_probe(const char *dir, struct remex_error *e);
/*
 * Creates parent/name (name: one path component, [A-Za-z0-9._-], not "." or
 * ".."), writes the limits and opens cgroup.procs. The layout (cg->v1) is the
 * one parent is on. REMEX_EEXIST if it exists, REMEX_EUNSUPPORTED when
 * parent is not on a cgroup mount. On failure nothing is left behind,
 * cg->path is "" and cg->procs_fd is -1.
 */
remex_err proc_cgroup_create(struct proc_cgroup *cg, const char *parent, const char *name,
                             const struct proc_cgroup_limits *lim, struct remex_error *e);
/*
 * Reads the count of processes the OOM killer killed in the cgroup: oom_kill
 * in memory.events (v2; REMEX_EPARSE if absent) or in memory.oom_control (v1;
 * REMEX_EUNSUPPORTED if absent, Linux < 4.13). REMEX_EPARSE if malformed.
 */
remex_err proc_cgroup_oom_kills(const struct proc_cgroup *cg, unsigned long long *count,
                                struct remex_error *e);
/*
 * Kills every process in the cgroup: cgroup.kill (v2, Linux >= 5.14), else
 * SIGKILL to each pid in cgroup.procs (except the caller), a few rounds.
 * Does not wait for them to exit.
 */
remex_err proc_cgroup_kill(const struct proc_cgroup *cg, struct remex_error *e);
/*
 * Closes procs_fd and removes the directory. REMEX_EAGAIN while processes
 * remain (the fd is closed regardless; the path is kept for a retry).
 */
remex_err proc_cgroup_remove(struct proc_cgroup *cg, struct remex_error *e);
/*
 * Removes the cgroup dir and every cgroup below it, blocking up to
 * timeout_ms: depth first, the members of each get SIGKILL (never the
 * caller), then each directory is removed once empty. For a caller's own
 * parent cgroup at exit, or one a crashed predecessor left. REMEX_OK when dir
 * is gone (or never existed); REMEX_EAGAIN if processes remain at the
 * deadline; REMEX_EINVAL for a path that is not a cgroup or is a hierarchy's
 * root (which holds every process).
 */
remex_err proc_cgroup_purge(const char *dir, int timeout_ms, struct remex_error *e);

#endif
