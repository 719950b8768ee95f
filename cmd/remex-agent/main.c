/*
 * remex-agent: the supervisor of the agent's roles. See docs/agent.md.
 *
 *   remex-agent -c agent.yaml [--check] [--roles worker,triggerer,...]
 *               [--log-format text|json] [--log-level error|warn|info|debug]
 *   remex-agent [-c agent.yaml] status [--json] | restart ROLE | stop
 *
 * Starts each role of agent.roles (or --roles; one worker per agent.workers
 * entry) with its supervisor socket at fd 3, watches it, restarts it with
 * backoff, and marks a crash-looping one FATAL. SIGTERM/SIGINT drain (workers
 * finish their tasks within worker.drain_grace; other roles stop at once),
 * then exit 0; a second one stops every role now (SIGTERM to the groups,
 * SIGKILL after agent.stop_grace). SIGHUP re-validates agent.yaml and passes
 * SIGHUP on to the roles (an invalid file changes nothing). As PID 1 or as a
 * subreaper it reaps every orphan. Ready (and READY=1 to systemd when
 * NOTIFY_SOCKET is set) once every role is.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "remex/exit.h"
#include "remex/log.h"
#include "remex/proc.h"
#include "remex/timeutil.h"

static struct agent A = {.ctl_fd = -1};

/* ---- systemd notification ---- */

/* Sends one datagram to $NOTIFY_SOCKET (sd_notify(3)); silent when unset. */
static void sd_notify_msg(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = path ? strlen(path) : 0;
    if (n == 0 || n >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
        return;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
        log_debug("NOTIFY_SOCKET: %s", strerror(errno));
    close(fd);
}

static void status_line(struct agent *a, char *out, size_t outsz)
{
    size_t up = 0, fatal = 0;
    for (size_t i = 0; i < a->nchildren; i++) {
        up += a->children[i].state == CH_UP;
        fatal += a->children[i].state == CH_FATAL;
    }
    if (fatal)
        snprintf(out, outsz, "%zu of %zu roles up, %zu fatal", up, a->nchildren, fatal);
    else
        snprintf(out, outsz, "%zu of %zu roles up", up, a->nchildren);
}

/* ---- hooks from child.c and control.c ---- */

static void on_changed(struct agent *a)
{
    struct role *r = a->r;
    char st[128], msg[160];
    if (r->state == ROLE_FINISHED)
        return;
    status_line(a, st, sizeof(st));
    if (r->state == ROLE_STARTING && child_all_ready(a)) {
        log_info("agent ready: %s (%.0f ms after start)", st,
                 (double)(timeutil_mono_ms() - a->start_ms));
        role_ready(r);
        snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", st);
        sd_notify_msg(msg);
    } else {
        snprintf(msg, sizeof(msg), "STATUS=%s", st);
        sd_notify_msg(msg);
    }
    control_write_status(a);
    if (r->state >= ROLE_DRAINING && child_all_stopped(a)) {
        log_info("every role stopped; exiting");
        role_finish(r, REMEX_EXIT_OK);
    }
}

static void on_stop_request(struct agent *a)
{
    role_drain(a->r, "control socket");
}

/* ---- role hooks ---- */

static int start_hook(struct role *r)
{
    struct agent *a = r->ud;
    struct remex_error e;
    a->r = r;
    a->start_ms = timeutil_mono_ms();
    a->json_logs = strcmp(r->cfg.logs.format, "json") == 0;
    a->hooks = (struct agent_hooks){.changed = on_changed, .stop_request = on_stop_request};
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(a->self_dir, sizeof(a->self_dir), "%s", self);
    if (getpid() != 1 && proc_set_subreaper(&e) != REMEX_OK)
        log_warn("%s: orphans of the roles are reaped by init, not by remex-agent", e.msg);
    if (child_setup(a, r->opt, &e) != REMEX_OK) {
        log_error("%s", e.msg);
        return REMEX_EXIT_CONFIG;
    }
    if (control_open(a, &e) != REMEX_OK) {
        log_error("%s", e.msg);
        return REMEX_EXIT_FAIL;
    }
    log_info("remex-agent starting %zu roles%s", a->nchildren, getpid() == 1 ? " as PID 1" : "");
    child_start_all(a);
    on_changed(a);
    return -1;
}

static void drain_hook(struct role *r, const char *why)
{
    struct agent *a = r->ud;
    log_info("%s: draining the roles (workers finish their tasks; SIGTERM again stops them now)",
             why);
    sd_notify_msg("STOPPING=1");
    child_drain_all(a);
    on_changed(a);
}

static void stop_now_hook(struct role *r)
{
    struct agent *a = r->ud;
    log_warn("stopping every role now (SIGTERM, SIGKILL after %llu ms)",
             (unsigned long long)r->cfg.agent.stop_grace_ms);
    child_stop_all_now(a);
    on_changed(a);
}

/* SIGHUP: a new agent.yaml is checked first; an invalid one changes nothing. */
static void reload_hook(struct role *r)
{
    struct agent *a = r->ud;
    struct buf out = BUF_INIT(64 * 1024);
    if (agentcfg_check(r->config_path, &out) != 0) {
        log_error("SIGHUP: agent.yaml is invalid; nothing changed:\n%s", buf_cstr(&out));
    } else {
        log_info("SIGHUP: agent.yaml valid; passing SIGHUP on to the roles");
        child_signal_all(a, SIGHUP);
    }
    buf_free(&out);
}

static void child_hook(struct role *r)
{
    struct agent *a = r->ud;
    child_reap(a);
    on_changed(a);
}

static void stop_hook(struct role *r)
{
    struct agent *a = r->ud;
    child_stop_all_now(a); /* only ever non-empty when start failed halfway */
    control_write_status(a);
    control_close(a);
    child_free_all(a);
}

static const struct role_ops agent_ops = {
    .name = "agent",
    .flags = ROLE_HAS_CHILDREN,
    .opt_name = "roles",
    .opt_help = "--roles worker,dag-processor,triggerer,sentinel",
    .start = start_hook,
    .drain = drain_hook,
    .stop_now = stop_now_hook,
    .reload = reload_hook,
    .child = child_hook,
    .stop = stop_hook,
};

/* The client commands: remex-agent [-c FILE] status|restart ROLE|stop. */
static int client(int argc, char **argv, int first)
{
    const char *path = NULL;
    for (int i = 1; i < first; i++)
        if (strcmp(argv[i], "-c") == 0 && i + 1 < first)
            path = argv[++i];
    struct agentcfg c = {0};
    struct cfg_errors errs;
    if (agentcfg_load(&c, path, &errs) != REMEX_OK) {
        struct buf out = BUF_INIT(64 * 1024);
        cfg_check_report(REMEX_ECONFIG, &errs, &out);
        fputs(buf_cstr(&out), stderr);
        buf_free(&out);
        return REMEX_EXIT_CONFIG;
    }
    int code = control_client(c.agent.control_socket, argc - first, argv + first);
    agentcfg_free(&c);
    return code;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0) {
            i++;
            continue;
        }
        if (strcmp(argv[i], "status") == 0 || strcmp(argv[i], "restart") == 0 ||
            strcmp(argv[i], "stop") == 0)
            return client(argc, argv, i);
        break;
    }
    return role_main(&agent_ops, &A, argc, argv);
}
