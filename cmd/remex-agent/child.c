/*
 * The role table and the children: one state machine per child (agent.h),
 * spawn with the supervisor socket at fd 3 in a process group of its own,
 * restart with backoff, crash-loop detection, and the children's output.
 *
 * Restart policy:
 *   - exit code 100 (bad configuration, refused credentials): FATAL at once;
 *   - more than CRASH_MAX counted exits within CRASH_WINDOW_MS: FATAL;
 *   - otherwise restarted after agent.restart_delay (1 s) doubling up to 60 s,
 *     plus up to 25 % jitter; the doubling starts again once the child was
 *     ready for 60 s.
 *   A ready child killed by SIGKILL from outside (an operator, the OOM
 *   killer) was working: it is restarted after the first delay and its exit
 *   is not counted as a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "remex/evloop.h"
#include "remex/fsutil.h"
#include "remex/ipc.h"
#include "remex/log.h"
#include "remex/proc.h"
#include "remex/supervise.h"
#include "remex/timeutil.h"

extern char **environ;

#define LINE_MAX_BYTES (16 * 1024) /* longer output lines are cut with a marker */
#define FRAME_MAX      (64 * 1024)
#define RESTART_CAP_MS 60000u

static const struct role_def role_table[] = {
    {"worker", "remex-worker", 1},
    {"dag-processor", "remex-dag-processor", 0},
    {"triggerer", "remex-triggerer", 0},
    {"sentinel", "remex-sentinel", 0},
};

const char *child_state_name(enum child_state s)
{
    static const char *const n[] = {"down",  "starting", "up",     "backoff",
                                    "fatal", "stopping", "stopped"};
    return (unsigned)s < sizeof(n) / sizeof(n[0]) ? n[s] : "?";
}

static void set_state(struct child *c, enum child_state s)
{
    if (c->state == s)
        return;
    c->state = s;
    c->a->hooks.changed(c->a);
}

static void cancel_timer(struct child *c)
{
    if (c->timer)
        evloop_timer_cancel(c->a->r->loop, c->timer);
    c->timer = 0;
}

/* ---- output ---- */

/* Re-emits one line (n <= LINE_MAX_BYTES) of the child's output with its label, in one write. */
static void emit(struct child *c, const char *p, size_t n)
{
    struct buf out = BUF_INIT(LINE_MAX_BYTES + 1024);
    if (c->a->json_logs) {
        json_t *j = n && p[0] == '{' ? json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL) : NULL;
        if (!json_is_object(j)) {
            json_decref(j);
            j = json_pack("{s:s%}", "msg", p, n);
        }
        if (j && !json_object_get(j, "role"))
            json_object_set_new(j, "role", json_string(c->def->role));
        if (j)
            json_object_set_new(j, "instance", json_string(c->instance));
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (s)
            buf_printf(&out, "%s\n", s);
        else /* not UTF-8: as text */
            buf_printf(&out, "[%s] %.*s\n", c->label, (int)n, p);
        free(s);
        json_decref(j);
    } else {
        buf_printf(&out, "[%s] ", c->label);
        buf_append(&out, p, n);
        buf_puts(&out, "\n");
    }
    if (out.len)
        fsutil_write_all(STDERR_FILENO, out.data, out.len);
    buf_free(&out);
}

/*
 * Splits what arrived into lines and emits the complete ones; keeps the
 * partial one. A line longer than LINE_MAX_BYTES goes out in pieces of that
 * size, each a line of its own: nothing is dropped.
 */
static void feed(struct child *c, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        size_t room = LINE_MAX_BYTES - c->line.len;
        size_t take = k < room ? k : room;
        buf_append(&c->line, p, take);
        p += take;
        n -= take;
        if (take == k && nl) {
            emit(c, c->line.data ? c->line.data : "", c->line.len);
            buf_reset(&c->line);
            p++;
            n--;
        } else if (c->line.len == LINE_MAX_BYTES) {
            emit(c, c->line.data, c->line.len);
            buf_reset(&c->line);
        }
    }
}

static void close_output(struct child *c)
{
    if (c->out_fd < 0)
        return;
    if (c->line.len) {
        emit(c, c->line.data, c->line.len);
        buf_reset(&c->line);
    }
    evloop_unwatch(c->a->r->loop, c->out_fd);
    close(c->out_fd);
    c->out_fd = -1;
}

/* Reads what is there (at most 1 MiB a call, so one child cannot hog the loop). */
static void drain_output(struct child *c)
{
    char b[16384];
    for (int i = 0; i < 64 && c->out_fd >= 0; i++) {
        ssize_t n = read(c->out_fd, b, sizeof(b));
        if (n > 0) {
            feed(c, b, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EINTR))
            continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            close_output(c);
        return;
    }
}

static void on_output(struct evloop *loop, int fd, unsigned ev, void *arg)
{
    (void)loop;
    (void)fd;
    (void)ev;
    drain_output(arg);
}

/* ---- supervisor channel ---- */

static void close_sup(struct child *c)
{
    if (!c->sup)
        return;
    evloop_unwatch(c->a->r->loop, ipc_conn_fd(c->sup));
    ipc_conn_free(c->sup);
    c->sup = NULL;
}

static void on_frame(struct child *c, json_t *m)
{
    const char *type = json_string_value(json_object_get(m, "type"));
    if (type && strcmp(type, "ready") == 0 && !c->ready) {
        c->ready = 1;
        c->ready_ms = timeutil_mono_ms();
        log_info("%s ready (pid %d, %.0f ms after its start)", c->label, (int)c->pid,
                 (double)(c->ready_ms - c->started_ms));
        if (c->state == CH_STARTING)
            set_state(c, CH_UP);
        else
            c->a->hooks.changed(c->a);
    } else if (type && strcmp(type, "capacity") == 0) {
        json_t *q = json_object_get(m, "queues"), *sl = json_object_get(m, "slots"),
               *fr = json_object_get(m, "free_slots"), *v;
        size_t i;
        int ok = json_is_array(q) && json_array_size(q) <= 64 && json_is_integer(sl) &&
                 json_is_integer(fr) && json_integer_value(sl) >= 0 &&
                 json_integer_value(fr) >= 0 && json_integer_value(fr) <= json_integer_value(sl);
        json_array_foreach(q, i, v) ok = ok && json_is_string(v) && json_string_length(v) <= 64;
        if (!ok) {
            log_warn("%s: malformed capacity frame ignored", c->label);
            return;
        }
        json_decref(c->capacity);
        c->capacity = json_pack("{s:O,s:O,s:O}", "queues", q, "slots", sl, "free_slots", fr);
        c->a->hooks.changed(c->a);
    } else if (type && strcmp(type, "draining") == 0) {
        const char *why = json_string_value(json_object_get(m, "reason"));
        log_info("%s draining (%s)", c->label, why ? why : "?");
    }
}

static void on_sup(struct evloop *loop, int fd, unsigned ev, void *arg)
{
    (void)loop;
    (void)fd;
    (void)ev;
    struct child *c = arg;
    struct remex_error e;
    remex_err rc = ipc_conn_read(c->sup, &e);
    json_t *m = NULL;
    while (rc == REMEX_OK || rc == REMEX_EAGAIN) {
        remex_err prc = ipc_conn_pop(c->sup, &m, NULL, NULL, &e);
        if (prc == REMEX_EAGAIN)
            break;
        if (prc != REMEX_OK) {
            rc = prc;
            break;
        }
        on_frame(c, m);
        json_decref(m);
        m = NULL;
    }
    if (rc != REMEX_OK && rc != REMEX_EAGAIN) {
        if (rc != REMEX_ECLOSED)
            log_warn("%s: supervisor channel: %s; closing it", c->label, e.msg);
        close_sup(c); /* its exit comes through SIGCHLD */
    }
}

static void send_drain(struct child *c)
{
    struct remex_error e;
    json_t *m = json_pack("{s:s}", "type", "drain");
    if (!c->sup || ipc_conn_send(c->sup, m, NULL, 0, &e) != REMEX_OK ||
        ipc_conn_flush(c->sup, &e) != REMEX_OK) {
        /* no channel: SIGTERM drains a role as well */
        if (c->pid > 0)
            kill(c->pid, SIGTERM);
    }
    json_decref(m);
}

/* ---- spawn ---- */

/* Finds the role's binary beside remex-agent, else in PATH; 0 found. */
static int find_binary(struct child *c, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", c->a->self_dir, c->def->binary);
    if (access(out, X_OK) == 0)
        return 0;
    const char *path = getenv("PATH");
    char dirs[8192];
    snprintf(dirs, sizeof(dirs), "%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, outsz, "%s/%s", d, c->def->binary);
        if (*d && access(out, X_OK) == 0)
            return 0;
    }
    return -1;
}

static void go_fatal(struct child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void go_fatal(struct child *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->fatal_reason, sizeof(c->fatal_reason), fmt, ap);
    va_end(ap);
    cancel_timer(c);
    log_error("%s is FATAL: %s; not restarted (remex-agent restart %s clears it)", c->label,
              c->fatal_reason, c->label);
    set_state(c, CH_FATAL);
}

/* The environment of a child: ours, with its supervisor descriptor named. */
static remex_err child_env(struct proc_env *env, struct remex_error *e)
{
    proc_env_init(env);
    for (char **v = environ; *v; v++) {
        const char *eq = strchr(*v, '=');
        char name[256];
        if (!eq || (size_t)(eq - *v) >= sizeof(name))
            continue;
        memcpy(name, *v, (size_t)(eq - *v));
        name[eq - *v] = '\0';
        if (strcmp(name, SUPERVISE_ENV) == 0 || strcmp(name, "NOTIFY_SOCKET") == 0 ||
            strcmp(name, "LISTEN_FDS") == 0 || strcmp(name, "LISTEN_PID") == 0)
            continue;
        remex_err rc = proc_env_set(env, name, eq + 1, e);
        if (rc != REMEX_OK)
            return rc;
    }
    return proc_env_set(env, SUPERVISE_ENV, "3", e);
}

static remex_err spawn(struct child *c, const char *bin, struct remex_error *e)
{
    struct agent *a = c->a;
    int sv[2] = {-1, -1}, pfd[2] = {-1, -1};
    struct proc_env env;
    remex_err rc = ipc_socketpair(sv, e);
    if (rc != REMEX_OK)
        return rc;
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        close(sv[0]);
        close(sv[1]);
        return remex_seterr(e, REMEX_ESYS, "pipe: %s", strerror(errno));
    }
    char *argv[8];
    int n = 0;
    argv[n++] = (char *)c->def->binary;
    if (a->r->config_path) {
        argv[n++] = "-c";
        argv[n++] = (char *)a->r->config_path;
    }
    if (strcmp(c->instance, c->def->role) != 0 && strcmp(c->def->role, "worker") == 0) {
        argv[n++] = "--instance";
        argv[n++] = c->instance;
    }
    argv[n] = NULL;
    struct proc_fdmap fm = {.parent_fd = sv[1], .child_fd = 3};
    struct proc_spec sp = {
        .path = bin, .argv = argv, .new_session = 1, .pdeathsig = SIGTERM, .fds = &fm, .nfds = 1};
    sp.stdio[0].kind = PROC_STDIO_NULL;
    sp.stdio[1] = (struct proc_stdio){.kind = PROC_STDIO_FD, .fd = pfd[1]};
    sp.stdio[2] = (struct proc_stdio){.kind = PROC_STDIO_FD, .fd = pfd[1]};
    if ((rc = child_env(&env, e)) == REMEX_OK) {
        sp.envp = proc_env_array(&env);
        rc = proc_spawn(&sp, &c->pid, e);
    }
    proc_env_free(&env);
    close(sv[1]);
    close(pfd[1]);
    if (rc != REMEX_OK) {
        close(sv[0]);
        close(pfd[0]);
        c->pid = 0;
        return rc;
    }
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    c->out_fd = pfd[0];
    if (!(c->sup = ipc_conn_new(sv[0], FRAME_MAX, FRAME_MAX, e))) {
        close(sv[0]);
        return REMEX_OK; /* it runs without a channel: SIGTERM still drains it */
    }
    if (evloop_watch(a->r->loop, sv[0], EVLOOP_READ, on_sup, c, e) != REMEX_OK)
        close_sup(c);
    if (evloop_watch(a->r->loop, pfd[0], EVLOOP_READ, on_output, c, e) != REMEX_OK)
        log_warn("%s: its output cannot be watched: %s", c->label, e->msg);
    return REMEX_OK;
}

static void start(struct child *c)
{
    char bin[4200];
    struct remex_error e;
    cancel_timer(c);
    if (find_binary(c, bin, sizeof(bin)) != 0) {
        go_fatal(c, "%s is not installed (not in %s nor in PATH)", c->def->binary, c->a->self_dir);
        return;
    }
    c->ready = 0;
    c->restart_after_stop = 0;
    c->started_ms = timeutil_mono_ms();
    if (spawn(c, bin, &e) != REMEX_OK) {
        go_fatal(c, "cannot start %s: %s", bin, e.msg);
        return;
    }
    log_info("%s started: pid %d (%s)", c->label, (int)c->pid, bin);
    set_state(c, CH_STARTING);
}

static void on_restart_timer(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct child *c = arg;
    c->timer = 0;
    if (c->state != CH_BACKOFF)
        return;
    c->restarts++;
    start(c);
}

/* ---- exits ---- */

static unsigned count_recent(struct child *c, uint64_t now)
{
    unsigned n = 0;
    for (unsigned i = 0; i < c->nexits && i <= CRASH_MAX; i++)
        n += now - c->exits[i] < CRASH_WINDOW_MS;
    return n;
}

static uint64_t jitter(uint64_t ms)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)timeutil_mono_ns();
    return ms + r % (ms / 4 + 1);
}

static void exited(struct child *c, int status)
{
    uint64_t now = timeutil_mono_ms();
    int was_ready = c->ready;
    proc_status_str(status, c->last_exit, sizeof(c->last_exit));
    c->pid = 0;
    c->ready = 0;
    json_decref(c->capacity);
    c->capacity = NULL;
    close_sup(c);
    drain_output(c);
    close_output(c);
    cancel_timer(c);
    if (c->state == CH_STOPPING) {
        log_info("%s stopped (%s)", c->label, c->last_exit);
        if (c->restart_after_stop) {
            c->restarts++;
            start(c);
        } else {
            set_state(c, CH_STOPPED);
        }
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 100) {
        go_fatal(c, "exit code 100: bad configuration or credentials refused by the plane");
        return;
    }
    int external = was_ready && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    uint64_t floor = c->a->r->cfg.agent.restart_ms, delay = floor;
    if (!external) {
        c->exits[c->nexits++ % (CRASH_MAX + 1)] = now;
        unsigned recent = count_recent(c, now);
        if (recent > CRASH_MAX) {
            go_fatal(c, "crash loop: %u exits within %d s, the last %s", recent,
                     CRASH_WINDOW_MS / 1000, c->last_exit);
            return;
        }
        if (was_ready && now - c->ready_ms >= CRASH_WINDOW_MS)
            c->consecutive = 0;
        c->consecutive++;
        delay = c->consecutive > 16 ? RESTART_CAP_MS : floor << (c->consecutive - 1);
        if (delay > RESTART_CAP_MS)
            delay = RESTART_CAP_MS;
    } else {
        c->consecutive = 0;
    }
    delay = jitter(delay);
    log_warn("%s exited (%s); restarting in %.1f s", c->label, c->last_exit, (double)delay / 1000);
    c->timer = evloop_timer_add(c->a->r->loop, delay, 0, on_restart_timer, c);
    set_state(c, CH_BACKOFF);
}

static void on_reaped(pid_t pid, int status, void *arg)
{
    struct agent *a = arg;
    for (size_t i = 0; i < a->nchildren; i++)
        if (a->children[i].pid == pid) {
            exited(&a->children[i], status);
            return;
        }
    char why[96];
    log_debug("reaped orphan %d (%s)", (int)pid, proc_status_str(status, why, sizeof(why)));
}

void child_reap(struct agent *a)
{
    proc_reap_all(on_reaped, a);
}

/* ---- commands ---- */

void child_start_all(struct agent *a)
{
    for (size_t i = 0; i < a->nchildren; i++)
        if (a->children[i].state == CH_DOWN)
            start(&a->children[i]);
}

void child_drain_all(struct agent *a)
{
    for (size_t i = 0; i < a->nchildren; i++) {
        struct child *c = &a->children[i];
        c->restart_after_stop = 0;
        switch (c->state) {
        case CH_STARTING:
        case CH_UP:
            send_drain(c);
            set_state(c, CH_STOPPING);
            break;
        case CH_DOWN:
        case CH_BACKOFF:
        case CH_FATAL:
            cancel_timer(c);
            set_state(c, CH_STOPPED);
            break;
        case CH_STOPPING:
        case CH_STOPPED:
            break;
        }
    }
}

static void on_kill_timer(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct child *c = arg;
    struct remex_error e;
    c->timer = 0;
    if (c->pid > 0 && proc_kill_group_now(c->pid, &e) == REMEX_OK)
        log_warn("%s did not stop within %llu ms: SIGKILL to its process group", c->label,
                 (unsigned long long)c->a->r->cfg.agent.stop_grace_ms);
}

void child_stop_all_now(struct agent *a)
{
    struct remex_error e;
    a->forced = 1;
    child_drain_all(a);
    for (size_t i = 0; i < a->nchildren; i++) {
        struct child *c = &a->children[i];
        if (c->pid <= 0)
            continue;
        proc_term_group(c->pid, &e);
        cancel_timer(c);
        c->timer = evloop_timer_add(a->r->loop, a->r->cfg.agent.stop_grace_ms, 0, on_kill_timer, c);
    }
}

void child_signal_all(struct agent *a, int signo)
{
    for (size_t i = 0; i < a->nchildren; i++)
        if (a->children[i].pid > 0)
            kill(a->children[i].pid, signo);
}

remex_err child_restart(struct agent *a, const char *name, struct remex_error *e)
{
    int found = 0;
    for (size_t i = 0; i < a->nchildren; i++) {
        struct child *c = &a->children[i];
        if (strcmp(c->label, name) != 0 && strcmp(c->def->role, name) != 0)
            continue;
        found = 1;
        c->consecutive = 0;
        c->nexits = 0;
        c->fatal_reason[0] = '\0';
        switch (c->state) {
        case CH_DOWN:
        case CH_BACKOFF:
        case CH_FATAL:
            log_info("%s: restart asked", c->label);
            start(c);
            break;
        case CH_STARTING:
        case CH_UP:
            log_info("%s: restart asked: stopping it first", c->label);
            send_drain(c);
            set_state(c, CH_STOPPING);
            c->restart_after_stop = 1;
            break;
        case CH_STOPPING:
        case CH_STOPPED:
            break;
        }
    }
    return found ? REMEX_OK : remex_seterr(e, REMEX_ENOTFOUND, "no role or instance '%.64s'", name);
}

int child_all_stopped(const struct agent *a)
{
    for (size_t i = 0; i < a->nchildren; i++)
        if (a->children[i].pid > 0 || a->children[i].state == CH_STARTING ||
            a->children[i].state == CH_UP || a->children[i].state == CH_STOPPING)
            return 0;
    return 1;
}

int child_all_ready(const struct agent *a)
{
    for (size_t i = 0; i < a->nchildren; i++)
        if (a->children[i].state != CH_UP)
            return 0;
    return a->nchildren > 0;
}

json_t *child_status(const struct child *c)
{
    uint64_t now = timeutil_mono_ms();
    json_t *j = json_pack("{s:s,s:s,s:s,s:b,s:f,s:i}", "role", c->def->role, "instance",
                          c->instance, "state", child_state_name(c->state), "ready", c->ready,
                          "uptime_s", c->pid > 0 ? (double)(now - c->started_ms) / 1000.0 : 0.0,
                          "restarts", (int)c->restarts);
    if (!j)
        return NULL;
    json_object_set_new(j, "pid", c->pid > 0 ? json_integer(c->pid) : json_null());
    json_object_set_new(j, "last_exit", c->last_exit[0] ? json_string(c->last_exit) : json_null());
    if (c->state == CH_FATAL)
        json_object_set_new(j, "reason", json_string(c->fatal_reason));
    if (c->capacity)
        json_object_update(j, c->capacity);
    return j;
}

/* ---- set-up ---- */

static const struct role_def *find_def(const char *role)
{
    for (size_t i = 0; i < sizeof(role_table) / sizeof(role_table[0]); i++)
        if (strcmp(role_table[i].role, role) == 0)
            return &role_table[i];
    return NULL;
}

static void init_child(struct agent *a, struct child *c, const struct role_def *d,
                       const char *instance)
{
    memset(c, 0, sizeof(*c));
    c->a = a;
    c->def = d;
    c->out_fd = -1;
    c->line = (struct buf)BUF_INIT(LINE_MAX_BYTES + 1);
    snprintf(c->instance, sizeof(c->instance), "%s", instance ? instance : d->role);
    if (instance)
        snprintf(c->label, sizeof(c->label), "%s/%s", d->role, instance);
    else
        snprintf(c->label, sizeof(c->label), "%s", d->role);
}

remex_err child_setup(struct agent *a, const char *roles_opt, struct remex_error *e)
{
    const struct agentcfg *cfg = &a->r->cfg;
    const char *names[8];
    size_t nnames = 0;
    char list[256];
    if (roles_opt) {
        snprintf(list, sizeof(list), "%s", roles_opt);
        char *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (!find_def(t))
                return remex_seterr(e, REMEX_EINVAL,
                                    "--roles: unknown role '%.64s' (worker, dag-processor, "
                                    "triggerer, sentinel)",
                                    t);
            for (size_t i = 0; i < nnames; i++)
                if (strcmp(names[i], t) == 0)
                    return remex_seterr(e, REMEX_EINVAL, "--roles: '%.64s' listed twice", t);
            if (nnames == 4)
                return remex_seterr(e, REMEX_EINVAL, "--roles: too many roles");
            names[nnames++] = t;
        }
    } else {
        for (size_t i = 0; i < cfg->agent.roles.n && nnames < 4; i++)
            names[nnames++] = cfg->agent.roles.items[i];
    }
    if (nnames == 0)
        return remex_seterr(e, REMEX_EINVAL, "no role to start");
    size_t nworkers = cfg->agent.workers.n ? cfg->agent.workers.n : 1;
    a->children = calloc(nnames + nworkers, sizeof(struct child));
    if (!a->children)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    const struct agentcfg_instance *w = cfg->agent.workers.items;
    for (size_t i = 0; i < nnames; i++) {
        const struct role_def *d = find_def(names[i]);
        if (strcmp(d->role, "worker") == 0 && cfg->agent.workers.n) {
            for (size_t k = 0; k < cfg->agent.workers.n; k++)
                init_child(a, &a->children[a->nchildren++], d, w[k].name);
        } else {
            init_child(a, &a->children[a->nchildren++], d, NULL);
        }
    }
    return REMEX_OK;
}

void child_free_all(struct agent *a)
{
    for (size_t i = 0; i < a->nchildren; i++) {
        struct child *c = &a->children[i];
        cancel_timer(c);
        close_sup(c);
        close_output(c);
        buf_free(&c->line);
        json_decref(c->capacity);
    }
    free(a->children);
    a->children = NULL;
    a->nchildren = 0;
}
