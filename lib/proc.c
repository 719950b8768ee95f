/* proc: spawning, signalling, reaping and confining child processes. */
#include "remex/proc.h"
#include "remex/timeutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define PROC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PROC_ASAN 1
#endif
#endif

remex_err proc_errno_code(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
        return REMEX_ENOTFOUND;
    case EACCES:
    case EPERM:
    case EROFS:
        return REMEX_EPERM;
    case ENOMEM:
        return REMEX_ENOMEM;
    case EEXIST:
        return REMEX_EEXIST;
    default:
        return REMEX_ESYS;
    }
}

/* ---- environment ---------------------------------------------------- */

void proc_env_init(struct proc_env *env)
{
    env->vars = NULL;
    env->n = 0;
    env->cap = 0;
}

void proc_env_free(struct proc_env *env)
{
    for (size_t i = 0; i < env->n; i++)
        free(env->vars[i]);
    free(env->vars);
    proc_env_init(env);
}

static int env_name_ok(const char *name)
{
    return name != NULL && name[0] != '\0' && strchr(name, '=') == NULL;
}

static ssize_t env_find(const struct proc_env *env, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < env->n; i++)
        if (strncmp(env->vars[i], name, nl) == 0 && env->vars[i][nl] == '=')
            return (ssize_t)i;
    return -1;
}

remex_err proc_env_set(struct proc_env *env, const char *name, const char *value,
                       struct remex_error *e)
{
    size_t nl, vl;
    ssize_t at;
    char *s;

    if (!env_name_ok(name) || value == NULL)
        return remex_seterr(e, REMEX_EINVAL, "env: invalid variable name");
    nl = strlen(name);
    vl = strlen(value);
    if (nl >= PROC_ENV_MAX_ENTRY || vl > PROC_ENV_MAX_ENTRY - nl - 1)
        return remex_seterr(e, REMEX_ETOOBIG, "env %s: entry over %d bytes", name,
                            PROC_ENV_MAX_ENTRY);
    at = env_find(env, name);
    if (at < 0 && env->n >= PROC_ENV_MAX_VARS)
        return remex_seterr(e, REMEX_ETOOBIG, "env: more than %d variables", PROC_ENV_MAX_VARS);
    if (at < 0 && env->n + 1 >= env->cap) {
        size_t ncap = env->cap ? env->cap * 2 : 16;
        char **nv = realloc(env->vars, ncap * sizeof(*nv));
        if (nv == NULL)
            return remex_seterr(e, REMEX_ENOMEM, "env: out of memory");
        env->vars = nv;
        env->cap = ncap;
    }
    s = malloc(nl + vl + 2);
    if (s == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "env: out of memory");
    memcpy(s, name, nl);
    s[nl] = '=';
    memcpy(s + nl + 1, value, vl + 1);
    if (at >= 0) {
        free(env->vars[at]);
        env->vars[at] = s;
    } else {
        env->vars[env->n++] = s;
        env->vars[env->n] = NULL;
    }
    return REMEX_OK;
}

remex_err proc_env_set_pairs(struct proc_env *env, const char *const *pairs, struct remex_error *e)
{
    remex_err rc;

    if (pairs == NULL)
        return REMEX_OK;
    for (size_t i = 0; pairs[i] != NULL; i += 2) {
        if (pairs[i + 1] == NULL)
            return remex_seterr(e, REMEX_EINVAL, "env %s: name without value", pairs[i]);
        rc = proc_env_set(env, pairs[i], pairs[i + 1], e);
        if (rc != REMEX_OK)
            return rc;
    }
    return REMEX_OK;
}

remex_err proc_env_copy(struct proc_env *env, const char *const *names, struct remex_error *e)
{
    remex_err rc;

    if (names == NULL)
        return REMEX_OK;
    for (size_t i = 0; names[i] != NULL; i++) {
        const char *v;
        if (!env_name_ok(names[i]))
            return remex_seterr(e, REMEX_EINVAL, "env: invalid variable name");
        v = getenv(names[i]);
        if (v == NULL)
            continue;
        rc = proc_env_set(env, names[i], v, e);
        if (rc != REMEX_OK)
            return rc;
    }
    return REMEX_OK;
}

const char *proc_env_get(const struct proc_env *env, const char *name)
{
    ssize_t at;

    if (!env_name_ok(name))
        return NULL;
    at = env_find(env, name);
    return at < 0 ? NULL : env->vars[at] + strlen(name) + 1;
}

char *const *proc_env_array(const struct proc_env *env)
{
    static char *const empty[1] = {NULL};
    return env->vars != NULL ? env->vars : empty;
}

/* ---- spawn: what the parent prepares ----------------------------------- */

/* Steps between fork and exec; the child reports the failing one. */
enum child_step {
    STEP_SETSID = 1,
    STEP_PDEATHSIG,
    STEP_CGROUP,
    STEP_CHDIR,
    STEP_FDS,
    STEP_DUP2,
    STEP_CLOSE,
    STEP_RLIMIT,
    STEP_SETGROUPS,
    STEP_SETGID,
    STEP_SETUID,
    STEP_EXEC,
};

struct child_report {
    int step;
    int err;
    int idx; /* index into moves or rlimits, when relevant */
};

struct fd_move {
    int src;
    int dst;
};

/* Everything the child needs, computed before fork: no allocation after it. */
struct spawn_plan {
    const struct proc_spec *spec;
    char exe[PATH_MAX];
    struct fd_move moves[3 + PROC_MAX_FDMAP];
    size_t nmoves;
    int maxdst;
    int opened[3]; /* stdio fds the parent opened (closed after fork), or -1 */
    pid_t parent;
    int errfd; /* fork: write end of the error pipe; clone-vfork: -1 */
    /*
     * What a clone-vfork child writes in the parent's memory (the parent is
     * suspended until the child execs or exits, so no pipe is needed):
     * reached_exec is set right before execve, report and reported when a
     * step fails. reached_exec == 0 without a report means the child died
     * before exec (a signal), not that exec succeeded.
     */
    volatile int reached_exec;
    volatile int reported;
    struct child_report report;
};

/* The child's own state, on its own stack: it writes the shared plan only to report. */
struct child_ctx {
    struct spawn_plan *p;
    int errfd;
};

static const char *rlimit_name(int res)
{
    switch (res) {
    case RLIMIT_AS:
        return "RLIMIT_AS";
    case RLIMIT_CPU:
        return "RLIMIT_CPU";
    case RLIMIT_NPROC:
        return "RLIMIT_NPROC";
    case RLIMIT_NOFILE:
        return "RLIMIT_NOFILE";
    case RLIMIT_CORE:
        return "RLIMIT_CORE";
    case RLIMIT_FSIZE:
        return "RLIMIT_FSIZE";
    case RLIMIT_DATA:
        return "RLIMIT_DATA";
    case RLIMIT_STACK:
        return "RLIMIT_STACK";
    default:
        return "RLIMIT_?";
    }
}

/* ---- PATH lookup cache ---------------------------------------------------- */

#define EXE_CACHE_MAX 64 /* remembered lookups; the oldest goes first past this */
#define EXE_WATCH_MAX 64 /* folders watched */
#define EXE_WATCH_MASK                                                                             \
    (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF |            \
     IN_MOVE_SELF | IN_ONLYDIR)

struct exe_entry {
    char *path_env; /* the PATH value searched */
    char *name;
    char *exe; /* where name was found */
};

struct proc_exe_cache {
    int fd; /* inotify, non-blocking */
    struct exe_entry ent[EXE_CACHE_MAX];
    size_t n, next; /* entries in use; the slot reused when full */
    char *watched[EXE_WATCH_MAX];
    size_t nwatched;
};

remex_err proc_exe_cache_new(struct proc_exe_cache **out, struct remex_error *e)
{
    struct proc_exe_cache *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "exe cache: out of memory");
    c->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (c->fd < 0) {
        int err = errno;
        free(c);
        errno = err;
        return remex_errno(e, proc_errno_code(err), "exe cache: inotify_init1");
    }
    *out = c;
    return REMEX_OK;
}

/* Forgets every lookup and every folder (their watches stay; adding one again is harmless). */
static void exe_entry_free(struct exe_entry *x);

static void exe_cache_forget(struct proc_exe_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        exe_entry_free(&c->ent[i]);
    for (size_t i = 0; i < c->nwatched; i++)
        free(c->watched[i]);
    c->n = c->next = c->nwatched = 0;
}

void proc_exe_cache_free(struct proc_exe_cache *c)
{
    if (c == NULL)
        return;
    exe_cache_forget(c);
    close(c->fd);
    free(c);
}

/* Reads every pending event; any event (or a read error) forgets everything. */
static void exe_cache_drain(struct proc_exe_cache *c)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int changed = 0;

    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof(buf));
        if (n > 0) {
            changed = 1;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || errno != EAGAIN)
            changed = 1;
        break;
    }
    if (changed)
        exe_cache_forget(c);
}

/* Watches folder dir[0..dl); 0 when it is (or already was) watched. */
static int exe_cache_watch(struct proc_exe_cache *c, const char *dir, size_t dl)
{
    char buf[PATH_MAX];

    if (dl == 0 || dir[0] != '/' || dl >= sizeof(buf))
        return -1;
    for (size_t i = 0; i < c->nwatched; i++)
        if (strncmp(c->watched[i], dir, dl) == 0 && c->watched[i][dl] == '\0')
            return 0;
    if (c->nwatched == EXE_WATCH_MAX)
        return -1;
    memcpy(buf, dir, dl);
    buf[dl] = '\0';
    if (inotify_add_watch(c->fd, buf, EXE_WATCH_MASK) < 0)
        return -1;
    if ((c->watched[c->nwatched] = strdup(buf)) == NULL)
        return -1;
    c->nwatched++;
    return 0;
}

static const char *exe_cache_find(const struct proc_exe_cache *c, const char *path,
                                  const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->ent[i].name, name) == 0 && strcmp(c->ent[i].path_env, path) == 0)
            return c->ent[i].exe;
    return NULL;
}

static void exe_entry_free(struct exe_entry *x)
{
    free(x->path_env);
    free(x->name);
    free(x->exe);
}

static void exe_cache_put(struct proc_exe_cache *c, const char *path, const char *name,
                          const char *exe)
{
    struct exe_entry *x;

    if (c->n < EXE_CACHE_MAX) {
        x = &c->ent[c->n++];
    } else {
        x = &c->ent[c->next];
        c->next = (c->next + 1) % EXE_CACHE_MAX;
        exe_entry_free(x);
    }
    x->path_env = strdup(path);
    x->name = strdup(name);
    x->exe = strdup(exe);
    if (x->path_env == NULL || x->name == NULL || x->exe == NULL)
        exe_cache_forget(c); /* out of memory: start over */
}

static remex_err plan_exe(struct spawn_plan *p, struct remex_error *e)
{
    const struct proc_spec *s = p->spec;
    const char *name = s->path != NULL ? s->path : s->argv[0];
    const char *path = NULL, *dir;
    struct proc_exe_cache *cache = s->exe_cache;
    size_t nl = strlen(name);

    if (nl == 0 || nl >= sizeof(p->exe))
        return remex_seterr(e, REMEX_EINVAL, "exec: empty or overlong path");
    if (!s->search_path || strchr(name, '/') != NULL) {
        memcpy(p->exe, name, nl + 1);
        return REMEX_OK;
    }
    for (size_t i = 0; s->envp != NULL && s->envp[i] != NULL; i++)
        if (strncmp(s->envp[i], "PATH=", 5) == 0)
            path = s->envp[i] + 5;
    if (path == NULL)
        path = "/usr/local/bin:/usr/bin:/bin";
    if (cache != NULL) {
        exe_cache_drain(cache);
        const char *hit = exe_cache_find(cache, path, name);
        if (hit != NULL && strlen(hit) < sizeof(p->exe)) {
            memcpy(p->exe, hit, strlen(hit) + 1);
            return REMEX_OK;
        }
    }
    for (dir = path;; dir++) {
        const char *end = strchrnul(dir, ':');
        size_t dl = (size_t)(end - dir);
        if (dl == 0) {
            dir = ".";
            dl = 1;
        }
        /* Watched before it is searched: a change after the search is seen by the next drain. */
        if (cache != NULL && exe_cache_watch(cache, dir, dl) != 0)
            cache = NULL;
        if (dl + 1 + nl < sizeof(p->exe)) {
            memcpy(p->exe, dir, dl);
            p->exe[dl] = '/';
            memcpy(p->exe + dl + 1, name, nl + 1);
            struct stat sb;
            if (stat(p->exe, &sb) == 0 && S_ISREG(sb.st_mode) && access(p->exe, X_OK) == 0) {
                if (cache != NULL)
                    exe_cache_put(cache, path, name, p->exe);
                return REMEX_OK;
            }
        }
        if (*end == '\0')
            break;
        dir = end;
    }
    return remex_seterr(e, REMEX_ENOTFOUND, "exec %s: not found in PATH", name);
}

static remex_err plan_stdio(struct spawn_plan *p, int i, struct remex_error *e)
{
    const struct proc_stdio *st = &p->spec->stdio[i];
    int fd;

    switch (st->kind) {
    case PROC_STDIO_INHERIT:
        fd = i;
        if (fcntl(fd, F_GETFD) >= 0)
            break;
        /* Closed in the parent: the child still gets a valid fd there. */
        /* fall through */
    case PROC_STDIO_NULL:
        fd = open("/dev/null", (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
        if (fd < 0)
            return remex_errno(e, proc_errno_code(errno), "open /dev/null");
        p->opened[i] = fd;
        break;
    case PROC_STDIO_FD:
        fd = st->fd;
        break;
    case PROC_STDIO_FILE:
        if (st->path == NULL)
            return remex_seterr(e, REMEX_EINVAL, "stdio %d: no path", i);
        if (i == 0)
            fd = open(st->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        else
            fd = open(st->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd < 0)
            return remex_errno(e, proc_errno_code(errno), "open %s", st->path);
        p->opened[i] = fd;
        break;
    default:
        return remex_seterr(e, REMEX_EINVAL, "stdio %d: unknown kind", i);
    }
    int checked = p->opened[i] >= 0; /* just opened, or the same fd as an earlier stdio */
    for (size_t j = 0; j < p->nmoves; j++)
        checked |= p->moves[j].src == fd;
    if (!checked && fcntl(fd, F_GETFD) < 0)
        return remex_seterr(e, REMEX_EINVAL, "stdio %d: fd %d is not open", i, fd);
    p->moves[p->nmoves].src = fd;
    p->moves[p->nmoves].dst = i;
    p->nmoves++;
    return REMEX_OK;
}

static remex_err plan_fds(struct spawn_plan *p, struct remex_error *e)
{
    const struct proc_spec *s = p->spec;
    remex_err rc;

    if (s->nfds > PROC_MAX_FDMAP)
        return remex_seterr(e, REMEX_ETOOBIG, "fds: more than %d mappings", PROC_MAX_FDMAP);
    if (s->nfds > 0 && s->fds == NULL)
        return remex_seterr(e, REMEX_EINVAL, "fds: NULL array");
    p->maxdst = 2;
    for (int i = 0; i < 3; i++) {
        rc = plan_stdio(p, i, e);
        if (rc != REMEX_OK)
            return rc;
    }
    for (size_t i = 0; i < s->nfds; i++) {
        const struct proc_fdmap *m = &s->fds[i];
        if (m->child_fd < 3 || m->child_fd > PROC_MAX_CHILD_FD)
            return remex_seterr(e, REMEX_EINVAL, "fds[%zu]: child fd %d not in 3..%d", i,
                                m->child_fd, PROC_MAX_CHILD_FD);
        if (m->parent_fd < 0 || fcntl(m->parent_fd, F_GETFD) < 0)
            return remex_seterr(e, REMEX_EINVAL, "fds[%zu]: parent fd %d is not open", i,
                                m->parent_fd);
        for (size_t j = 0; j < i; j++)
            if (s->fds[j].child_fd == m->child_fd)
                return remex_seterr(e, REMEX_EINVAL, "fds[%zu]: child fd %d mapped twice", i,
                                    m->child_fd);
        p->moves[p->nmoves].src = m->parent_fd;
        p->moves[p->nmoves].dst = m->child_fd;
        p->nmoves++;
        if (m->child_fd > p->maxdst)
            p->maxdst = m->child_fd;
    }
    return REMEX_OK;
}

static remex_err plan_check(const struct proc_spec *s, struct remex_error *e)
{
    if (s->argv == NULL || s->argv[0] == NULL)
        return remex_seterr(e, REMEX_EINVAL, "spawn: empty argv");
    if (s->nrlimits > PROC_MAX_RLIMITS || (s->nrlimits > 0 && s->rlimits == NULL))
        return remex_seterr(e, REMEX_EINVAL, "spawn: bad rlimits (at most %d)", PROC_MAX_RLIMITS);
    for (size_t i = 0; i < s->nrlimits; i++)
        if (s->rlimits[i].resource < 0 || s->rlimits[i].resource >= RLIMIT_NLIMITS)
            return remex_seterr(e, REMEX_EINVAL, "rlimits[%zu]: unknown resource %d", i,
                                s->rlimits[i].resource);
    if (s->pdeathsig < 0 || s->pdeathsig >= NSIG)
        return remex_seterr(e, REMEX_EINVAL, "spawn: bad pdeathsig %d", s->pdeathsig);
    if (s->cgroup != NULL && s->cgroup->procs_fd < 0)
        return remex_seterr(e, REMEX_EINVAL, "spawn: cgroup not created");
    return REMEX_OK;
}

/* ---- spawn: the child, async-signal-safe calls only ---------------------- */

/*
 * The child runs either in a fork()ed copy of the parent or, with
 * clone(CLONE_VM | CLONE_VFORK), in the parent's own memory while the parent
 * thread is suspended. For the second case the child:
 *  - writes only its own stack, its fd table, plan->reached_exec and, when a
 *    step fails, plan->report (and the calling thread's errno, which the
 *    parent does not read after a successful clone);
 *  - makes raw system calls where libc would take a lock or touch shared
 *    state: set*id through syscall() (glibc's wrappers broadcast to every
 *    thread of the parent), close/write/open through syscall() (no
 *    cancellation bookkeeping in the parent thread's descriptor);
 *  - runs with every signal blocked (inherited from the parent) until each
 *    disposition is back to SIG_DFL, so no parent handler ever runs on the
 *    shared memory.
 */

static void __attribute__((noreturn)) child_fail(const struct child_ctx *c, int step, int idx)
{
    struct child_report r = {step, errno, idx};
    long n;

    if (c->errfd < 0) { /* clone-vfork: the parent reads the plan once we are gone */
        c->p->report = r;
        c->p->reported = 1;
        _exit(127);
    }
    do {
        n = syscall(SYS_write, c->errfd, &r, sizeof(r));
    } while (n < 0 && errno == EINTR);
    _exit(127);
}

static void child_signals(void)
{
    struct sigaction sa;
    sigset_t none;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, &sa, NULL) != 0 && errno == EINVAL) {
            /*
             * libc refuses its reserved signals (32, 33), but an inherited
             * SIG_IGN on them survives exec: reset them with the raw call. An
             * all-zero kernel sigaction is SIG_DFL, no flags, empty mask.
             */
            unsigned long ksa[8] = {0};
            (void)syscall(SYS_rt_sigaction, sig, ksa, NULL, (size_t)((NSIG - 1) / 8));
        }
    }
    sigemptyset(&none);
    (void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, (size_t)((NSIG - 1) / 8));
}

static int is_dst(const struct spawn_plan *p, int fd)
{
    for (size_t i = 0; i < p->nmoves; i++)
        if (p->moves[i].dst == fd)
            return 1;
    return 0;
}

static void child_close(int fd)
{
    (void)syscall(SYS_close, fd);
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Closes every fd >= low except keep, without allocating. */
static int child_close_from(int low, int keep)
{
    char buf[4096];
    long n;
    int dfd;

#ifdef SYS_close_range
    if ((keep <= low || syscall(SYS_close_range, (unsigned)low, (unsigned)keep - 1, 0) == 0) &&
        syscall(SYS_close_range, (unsigned)(keep < low ? low : keep + 1), ~0u, 0) == 0)
        return 0;
    if (errno != ENOSYS)
        return -1;
#endif
    dfd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
            return -1;
        for (long fd = low; fd < (long)rl.rlim_cur && fd < (1L << 20); fd++)
            if (fd != keep)
                child_close((int)fd);
        return 0;
    }
    while ((n = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
        for (long off = 0; off < n;) {
            const struct linux_dirent64 *d = (const void *)(buf + off);
            long fd = 0;
            int digits = 1;
            for (const char *c = d->d_name; *c != '\0'; c++) {
                if (*c < '0' || *c > '9' || fd > INT_MAX / 10) {
                    digits = 0;
                    break;
                }
                fd = fd * 10 + (*c - '0');
            }
            if (digits && fd >= low && fd != keep && fd != dfd)
                child_close((int)fd);
            off += d->d_reclen;
        }
    }
    child_close(dfd);
    return n < 0 ? -1 : 0;
}

/* Moves every source high first, so no dup2 clobbers a source still needed. */
static void child_fds(struct child_ctx *c)
{
    const struct spawn_plan *p = c->p;
    int tmp[3 + PROC_MAX_FDMAP];
    int low = p->maxdst + 1, direct = 1;

    if (c->errfd >= 0 && c->errfd < low) {
        int nfd = (int)syscall(SYS_fcntl, c->errfd, F_DUPFD_CLOEXEC, low);
        if (nfd < 0)
            child_fail(c, STEP_FDS, -1);
        c->errfd = nfd;
    }
    /* Sources all above every destination: no dup3 can clobber one, dup them in place. */
    for (size_t i = 0; i < p->nmoves; i++)
        direct &= p->moves[i].src >= low;
    for (size_t i = 0; i < p->nmoves; i++) {
        tmp[i] = direct ? p->moves[i].src
                        : (int)syscall(SYS_fcntl, p->moves[i].src, F_DUPFD_CLOEXEC, low);
        if (tmp[i] < 0)
            child_fail(c, STEP_FDS, (int)i);
    }
    for (size_t i = 0; i < p->nmoves; i++)
        if (syscall(SYS_dup3, tmp[i], p->moves[i].dst, 0) < 0)
            child_fail(c, STEP_DUP2, (int)i);
    for (int fd = 0; fd < low; fd++)
        if (!is_dst(p, fd))
            child_close(fd);
    if (child_close_from(low, c->errfd) != 0)
        child_fail(c, STEP_CLOSE, -1);
}

static void __attribute__((noreturn)) child_run(struct spawn_plan *p)
{
    const struct proc_spec *s = p->spec;
    static const char zero[] = "0";
    struct child_ctx c = {p, p->errfd};

    child_signals();
    if (s->new_session && setsid() < 0)
        child_fail(&c, STEP_SETSID, -1);
    if (s->pdeathsig != 0) {
        if (prctl(PR_SET_PDEATHSIG, (unsigned long)s->pdeathsig) != 0)
            child_fail(&c, STEP_PDEATHSIG, -1);
        if (getppid() != p->parent)
            _exit(127); /* the parent died before the signal was armed */
    }
    if (s->cgroup != NULL && syscall(SYS_write, s->cgroup->procs_fd, zero, 1) != 1)
        child_fail(&c, STEP_CGROUP, -1);
    if (s->cwd != NULL && chdir(s->cwd) != 0)
        child_fail(&c, STEP_CHDIR, -1);
    if (s->set_umask)
        (void)umask(s->umask & 0777);
    child_fds(&c);
    for (size_t i = 0; i < s->nrlimits; i++)
        if (setrlimit((__rlimit_resource_t)s->rlimits[i].resource, &s->rlimits[i].lim) != 0)
            child_fail(&c, STEP_RLIMIT, (int)i);
    if (s->drop_ids) {
        if (syscall(SYS_setgroups, 1, &s->gid) != 0)
            child_fail(&c, STEP_SETGROUPS, -1);
        if (syscall(SYS_setgid, s->gid) != 0)
            child_fail(&c, STEP_SETGID, -1);
        if (syscall(SYS_setuid, s->uid) != 0)
            child_fail(&c, STEP_SETUID, -1);
    }
    p->reached_exec = 1;
    execve(p->exe, s->argv, s->envp != NULL ? s->envp : (char *const[]){NULL});
    child_fail(&c, STEP_EXEC, -1);
}

static int child_entry(void *arg)
{
    child_run(arg);
}

/* ---- spawn: the parent ----------------------------------------------------- */

static remex_err report_error(const struct spawn_plan *p, const struct child_report *r,
                              struct remex_error *e)
{
    const struct proc_spec *s = p->spec;
    remex_err code = proc_errno_code(r->err);
    const char *why = strerror(r->err);
    int idx = r->idx;

    switch (r->step) {
    case STEP_SETSID:
        return remex_seterr(e, code, "setsid: %s", why);
    case STEP_PDEATHSIG:
        return remex_seterr(e, code, "prctl PR_SET_PDEATHSIG: %s", why);
    case STEP_CGROUP:
        return remex_seterr(e, code, "cgroup %s: join: %s", s->cgroup->path, why);
    case STEP_CHDIR:
        return remex_seterr(e, code, "chdir %s: %s", s->cwd, why);
    case STEP_FDS:
    case STEP_DUP2:
        if (idx >= 0 && (size_t)idx < p->nmoves)
            return remex_seterr(e, code, "dup fd %d to %d: %s", p->moves[idx].src,
                                p->moves[idx].dst, why);
        return remex_seterr(e, code, "dup error pipe: %s", why);
    case STEP_CLOSE:
        return remex_seterr(e, code, "close inherited fds: %s", why);
    case STEP_RLIMIT:
        if (idx >= 0 && (size_t)idx < s->nrlimits)
            return remex_seterr(e, code, "setrlimit %s: %s", rlimit_name(s->rlimits[idx].resource),
                                why);
        break;
    case STEP_SETGROUPS:
        return remex_seterr(e, code, "setgroups %u: %s", (unsigned)s->gid, why);
    case STEP_SETGID:
        return remex_seterr(e, code, "setgid %u: %s", (unsigned)s->gid, why);
    case STEP_SETUID:
        return remex_seterr(e, code, "setuid %u: %s", (unsigned)s->uid, why);
    case STEP_EXEC:
        return remex_seterr(e, code, "exec %s: %s", p->exe, why);
    default:
        break;
    }
    return remex_seterr(e, REMEX_ESYS, "spawn: child failed at step %d: %s", r->step, why);
}

/*
 * Reads the child's report after a fork: 0 bytes means exec succeeded (the
 * pipe closed on exec) or that the child died before exec.
 */
static remex_err await_exec(struct spawn_plan *p, int rfd, pid_t pid, struct remex_error *e)
{
    struct child_report r;
    size_t got = 0;
    int st;

    while (got < sizeof(r)) {
        ssize_t n = read(rfd, (char *)&r + got, sizeof(r) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got == 0)
        return REMEX_OK;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (got < sizeof(r))
        return remex_seterr(e, REMEX_ESYS, "spawn: short report from child");
    return report_error(p, &r, e);
}

/*
 * After a clone-vfork the child has exec'd or exited: what it wrote in the
 * plan tells which, and why.
 */
static remex_err vfork_outcome(struct spawn_plan *p, pid_t pid, struct remex_error *e)
{
    int st = 0;
    pid_t got;

    if (p->reached_exec && !p->reported)
        return REMEX_OK;
    /* ECHILD: another thread of the caller reaped it with waitpid(-1). */
    while ((got = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
        ;
    if (p->reported) {
        struct child_report r = p->report;
        return report_error(p, &r, e);
    }
    char how[64];
    return remex_seterr(e, REMEX_ESYS, "spawn: child %s before exec",
                        got == pid ? proc_status_str(st, how, sizeof(how)) : "ended");
}

const char *proc_spawn_mechanism(void)
{
#ifdef PROC_ASAN
    return "fork"; /* ASan's shadow memory and interceptors assume fork semantics */
#else
#ifdef RUNNING_ON_VALGRIND
    if (RUNNING_ON_VALGRIND)
        return "fork"; /* valgrind runs CLONE_VM|CLONE_VFORK as a copying fork */
#endif
    const char *v = getenv("REMEX_SPAWN");
    if (v != NULL && strcmp(v, "fork") == 0)
        return "fork";
    return "clone-vfork";
#endif
}

#define SPAWN_STACK (64 * 1024) /* the child's stack, above one guard page */

/*
 * A few child stacks, kept for the life of the process: a clone-vfork child
 * is done with its stack when clone returns, so spawns reuse them (no mmap,
 * mprotect, munmap and fresh page faults per spawn). A thread that finds them
 * all taken by other threads' spawns maps a stack of its own for its spawn.
 */
#define SPAWN_STACKS 4

#define STACK_SLOT                                                                                 \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, NULL                                                            \
    }

static struct {
    pthread_mutex_t lock;
    char *mem;
} stacks[SPAWN_STACKS] = {STACK_SLOT, STACK_SLOT, STACK_SLOT, STACK_SLOT};

static char *stack_map(size_t len, int *err)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *mem =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);

    if (mem == MAP_FAILED) {
        *err = errno;
        return NULL;
    }
    if (mprotect(mem, page, PROT_NONE) != 0) {
        *err = errno;
        munmap(mem, len);
        return NULL;
    }
    return mem;
}

/*
 * clone(CLONE_VM | CLONE_VFORK) on a stack with a PROT_NONE guard page below
 * it: returns once the child has exec'd or exited. Signals must already be
 * blocked. -1 with *err on failure.
 */
static pid_t spawn_vfork(struct spawn_plan *p, int *err)
{
    size_t len = (size_t)sysconf(_SC_PAGESIZE) + SPAWN_STACK;
    int slot = -1;
    char *mem = NULL;
    pid_t child;

    for (int i = 0; i < SPAWN_STACKS && slot < 0; i++)
        if (pthread_mutex_trylock(&stacks[i].lock) == 0)
            slot = i;
    if (slot >= 0)
        mem = stacks[slot].mem;
    if (mem == NULL && (mem = stack_map(len, err)) == NULL) {
        if (slot >= 0)
            pthread_mutex_unlock(&stacks[slot].lock);
        return -1;
    }
    p->reached_exec = 0;
    p->reported = 0;
    child = clone(child_entry, mem + len, CLONE_VM | CLONE_VFORK | SIGCHLD, p);
    *err = errno;
    if (slot >= 0) {
        stacks[slot].mem = mem;
        pthread_mutex_unlock(&stacks[slot].lock);
    } else {
        munmap(mem, len);
    }
    return child;
}

remex_err proc_spawn(const struct proc_spec *spec, pid_t *pid, struct remex_error *e)
{
    struct spawn_plan *p;
    sigset_t all, old;
    int pfd[2] = {-1, -1}, saved = 0, vforked;
    remex_err rc;
    pid_t child;

    if (spec == NULL || pid == NULL)
        return remex_seterr(e, REMEX_EINVAL, "spawn: NULL argument");
    rc = plan_check(spec, e);
    if (rc != REMEX_OK)
        return rc;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "spawn: out of memory");
    p->spec = spec;
    p->opened[0] = p->opened[1] = p->opened[2] = -1;
    p->errfd = -1;
    p->parent = getpid();
    vforked = strcmp(proc_spawn_mechanism(), "clone-vfork") == 0;
    rc = plan_exe(p, e);
    if (rc == REMEX_OK)
        rc = plan_fds(p, e);
    /* A forked child reports through a pipe; a clone-vfork child through the plan. */
    if (rc == REMEX_OK && !vforked && pipe2(pfd, O_CLOEXEC) != 0)
        rc = remex_errno(e, proc_errno_code(errno), "spawn: pipe");
    if (rc == REMEX_OK) {
        p->errfd = pfd[1];
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        child = vforked ? spawn_vfork(p, &saved) : fork();
        if (child == 0)
            child_run(p);
        if (!vforked)
            saved = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (pfd[1] >= 0)
            close(pfd[1]);
        if (child < 0) {
            errno = saved;
            rc = remex_errno(e, proc_errno_code(saved), "%s", vforked ? "clone" : "fork");
        } else if (vforked) {
            rc = vfork_outcome(p, child, e);
        } else {
            rc = await_exec(p, pfd[0], child, e);
        }
        if (pfd[0] >= 0)
            close(pfd[0]);
        if (rc == REMEX_OK)
            *pid = child;
    }
    for (int i = 0; i < 3; i++)
        if (p->opened[i] >= 0)
            close(p->opened[i]);
    free(p);
    return rc;
}

/* ---- waiting and exit status ------------------------------------------------ */

remex_err proc_wait(pid_t pid, int timeout_ms, int *wstatus, struct remex_error *e)
{
    int64_t deadline = (int64_t)timeutil_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int st = 0;
    pid_t r;

    if (pid <= 0)
        return remex_seterr(e, REMEX_EINVAL, "wait: bad pid %d", (int)pid);
    for (;;) {
        r = waitpid(pid, &st, timeout_ms < 0 ? 0 : WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return remex_errno(e, errno == ECHILD ? REMEX_ENOTFOUND : REMEX_ESYS, "wait %d",
                               (int)pid);
        if ((int64_t)timeutil_mono_ms() >= deadline)
            return remex_seterr(e, REMEX_ETIMEOUT, "wait %d: still running after %d ms", (int)pid,
                                timeout_ms);
        timeutil_sleep_ms(5);
    }
    if (wstatus != NULL)
        *wstatus = st;
    return REMEX_OK;
}

void proc_status_decode(int wstatus, struct proc_status *st)
{
    memset(st, 0, sizeof(*st));
    if (WIFEXITED(wstatus)) {
        st->exited = 1;
        st->code = WEXITSTATUS(wstatus);
    } else if (WIFSIGNALED(wstatus)) {
        st->signo = WTERMSIG(wstatus);
        st->core = WCOREDUMP(wstatus) ? 1 : 0;
    } else if (WIFSTOPPED(wstatus)) {
        st->stopped = 1;
        st->signo = WSTOPSIG(wstatus);
    }
}

const char *proc_signame(int signo)
{
    const char *s = signo > 0 ? sigabbrev_np(signo) : NULL;
    return s != NULL ? s : "?";
}

char *proc_status_str(int wstatus, char *buf, size_t len)
{
    struct proc_status st;

    if (buf == NULL || len == 0)
        return buf;
    proc_status_decode(wstatus, &st);
    if (st.exited)
        snprintf(buf, len, "exit code %d", st.code);
    else if (st.stopped)
        snprintf(buf, len, "stopped by signal %d (%s)", st.signo, proc_signame(st.signo));
    else if (st.signo != 0)
        snprintf(buf, len, "killed by signal %d (%s)%s", st.signo, proc_signame(st.signo),
                 st.core ? ", core dumped" : "");
    else
        snprintf(buf, len, "unknown status 0x%x", (unsigned)wstatus);
    return buf;
}

/* ---- process groups ----------------------------------------------------------- */

static remex_err signal_group(pid_t pgid, int sig, struct remex_error *e)
{
    if (pgid <= 1)
        return remex_seterr(e, REMEX_EINVAL, "kill group %d: refusing", (int)pgid);
    if (kill(-pgid, sig) != 0) {
        if (errno == ESRCH)
            return remex_seterr(e, REMEX_ENOTFOUND, "kill group %d: no such group", (int)pgid);
        return remex_errno(e, proc_errno_code(errno), "kill group %d", (int)pgid);
    }
    return REMEX_OK;
}

remex_err proc_term_group(pid_t pgid, struct remex_error *e)
{
    remex_err rc = signal_group(pgid, SIGTERM, e);
    if (rc == REMEX_OK)
        (void)kill(-pgid, SIGCONT);
    return rc;
}

remex_err proc_kill_group_now(pid_t pgid, struct remex_error *e)
{
    return signal_group(pgid, SIGKILL, e);
}

int proc_group_empty(pid_t pgid)
{
    return pgid > 1 && kill(-pgid, 0) != 0 && errno == ESRCH;
}

remex_err proc_kill_group(pid_t pgid, int grace_ms, int *wstatus, struct remex_error *e)
{
    int64_t deadline = (int64_t)timeutil_mono_ms() + (grace_ms > 0 ? grace_ms : 0);
    int st = 0, reaped = 0;
    remex_err rc;

    rc = proc_term_group(pgid, e);
    if (rc != REMEX_OK && rc != REMEX_ENOTFOUND)
        return rc;
    for (;;) {
        if (!reaped) {
            pid_t r = waitpid(pgid, &st, WNOHANG);
            if (r == pgid || (r < 0 && errno == ECHILD))
                reaped = r == pgid ? 1 : -1;
        }
        if (reaped && proc_group_empty(pgid))
            break;
        if ((int64_t)timeutil_mono_ms() >= deadline) {
            (void)kill(-pgid, SIGKILL);
            break;
        }
        timeutil_sleep_ms(10);
    }
    if (!reaped) {
        pid_t r;
        while ((r = waitpid(pgid, &st, 0)) < 0 && errno == EINTR)
            ;
        reaped = r == pgid ? 1 : -1;
    }
    if (reaped < 0)
        return remex_seterr(e, REMEX_ENOTFOUND, "kill group %d: leader is not our child",
                            (int)pgid);
    if (wstatus != NULL)
        *wstatus = st;
    return REMEX_OK;
}

/* ---- reaping --------------------------------------------------------------------- */

size_t proc_reap_all(void (*cb)(pid_t pid, int wstatus, void *arg), void *arg)
{
    size_t n = 0;
    int st;

    for (;;) {
        pid_t r = waitpid(-1, &st, WNOHANG);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return n;
        n++;
        if (cb != NULL)
            cb(r, st, arg);
    }
}

remex_err proc_set_subreaper(struct remex_error *e)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, 1UL) != 0)
        return remex_errno(e, proc_errno_code(errno), "prctl PR_SET_CHILD_SUBREAPER");
    return REMEX_OK;
}
