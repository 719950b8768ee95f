/*
 * role: the common start and life cycle of a role binary (include/remex/role.h).
 */
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "remex/evloop.h"
#include "remex/exit.h"
#include "remex/http.h"
#include "remex/ipc.h"
#include "remex/log.h"
#include "remex/role.h"
#include "remex/supervise.h"
#include "remex/version.h"

/*
 * Debian's libcurl pulls in libgnutls (through librtmp) although the agent's
 * TLS is OpenSSL's. gnutls's library constructor runs its whole global init
 * (crypto backends, ASN.1 trees, system priorities: about 1 MiB resident)
 * unless the program defines this symbol returning non-zero: the mechanism
 * of GNUTLS_SKIP_GLOBAL_INIT in <gnutls/gnutls.h>. Whoever does use gnutls
 * still calls gnutls_global_init() itself. Every role binary links this file
 * (role_main), so every role gets it; test_worker_footprint checks that the
 * dynamic linker binds gnutls's reference to this definition.
 */
int _gnutls_global_init_skip(void);
int _gnutls_global_init_skip(void)
{
    return 1;
}

#define IDLE_TRIM_MS  2000
#define SUP_FRAME_MAX (64 * 1024)

static void usage(const struct role_ops *ops, FILE *f)
{
    fprintf(f,
            "usage: remex-%s -c agent.yaml [--check]%s [--log-format text|json]\n"
            "       %*s [--log-level error|warn|info|debug]\n",
            ops->name, (ops->flags & ROLE_HAS_ONCE) ? " [--once]" : "", (int)strlen(ops->name) + 6,
            "");
}

void role_finish(struct role *r, int code)
{
    if (r->state == ROLE_FINISHED)
        return;
    r->state = ROLE_FINISHED;
    r->exit_code = code;
    api_stop(r->api);
    if (r->loop)
        evloop_stop(r->loop);
}

void role_notify(struct role *r, const char *type, const json_t *extra)
{
    struct remex_error e;
    if (r->sup && supervise_notify(ipc_conn_fd(r->sup), r->ops->name, type, extra, &e) != REMEX_OK)
        log_warn("supervisor: %s", e.msg);
}

void role_ready(struct role *r)
{
    if (r->state != ROLE_STARTING)
        return;
    r->state = ROLE_READY;
    role_notify(r, "ready", NULL);
}

void role_drain(struct role *r, const char *why)
{
    if (r->state >= ROLE_DRAINING)
        return;
    r->state = ROLE_DRAINING;
    r->drain_reason = why;
    json_t *x = json_pack("{s:s}", "reason", why);
    role_notify(r, "draining", x);
    json_decref(x);
    r->ops->drain(r, why);
}

static void on_idle_trim(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct role *r = arg;
    r->trim_timer = 0;
    malloc_trim(0);
}

void role_idle_trim(struct role *r)
{
    if (r->trim_timer && evloop_timer_rearm(r->loop, r->trim_timer, IDLE_TRIM_MS) == REMEX_OK)
        return;
    r->trim_timer = evloop_timer_add(r->loop, IDLE_TRIM_MS, 0, on_idle_trim, r);
}

static void on_grace(struct evloop *loop, uint64_t id, void *arg)
{
    struct role *r = arg;
    (void)loop;
    (void)id;
    r->grace_timer = 0;
    if (r->ops->grace_over)
        r->ops->grace_over(r);
}

void role_drain_grace(struct role *r, uint64_t ms)
{
    if (r->grace_timer == 0)
        r->grace_timer = evloop_timer_add(r->loop, ms, 0, on_grace, r);
}

remex_err role_api(struct role *r, const char *name, const char *state_dir, uint64_t long_poll_ms,
                   const struct api_hooks *hooks, struct remex_error *e)
{
    char journal_dir[4200];
    if (state_dir && snprintf(journal_dir, sizeof(journal_dir), "%s/journal", state_dir) >=
                         (int)sizeof(journal_dir))
        return remex_seterr(e, REMEX_ETOOBIG, "state_dir over %zu bytes", sizeof(journal_dir) - 9);
    struct api_opts o = {.url = r->cfg.plane.url,
                         .token = &r->cfg.plane.token,
                         .ca_file = r->cfg.plane.ca_file,
                         .name = name,
                         .role = r->ops->name,
                         .journal_dir = state_dir ? journal_dir : NULL,
                         .long_poll_ms = long_poll_ms};
    return api_new(r->loop, &o, hooks, &r->api, e);
}

/* Frames from the supervisor: {"type":"drain"}; end of file = supervisor gone. */
static void on_supervisor(struct evloop *loop, int fd, unsigned events, void *arg)
{
    struct role *r = arg;
    struct remex_error e;
    json_t *msg = NULL;
    (void)events;
    remex_err rc = ipc_conn_read(r->sup, &e);
    while (rc == REMEX_OK || rc == REMEX_EAGAIN) {
        remex_err prc = ipc_conn_pop(r->sup, &msg, NULL, NULL, &e);
        if (prc == REMEX_EAGAIN)
            break;
        if (prc != REMEX_OK) {
            rc = prc;
            break;
        }
        const char *type = json_string_value(json_object_get(msg, "type"));
        if (type && strcmp(type, "drain") == 0)
            role_drain(r, "supervisor request");
        else
            log_debug("supervisor: ignoring a frame of type '%s'", type ? type : "?");
        json_decref(msg);
        msg = NULL;
    }
    if (rc == REMEX_EAGAIN || rc == REMEX_OK)
        return;
    evloop_unwatch(loop, fd);
    ipc_conn_free(r->sup);
    r->sup = NULL;
    if (rc == REMEX_ECLOSED) {
        log_warn("supervisor closed its socket");
        role_drain(r, "supervisor gone");
    } else {
        log_error("supervisor channel: %s; closing it", e.msg);
    }
}

static void on_signal(struct evloop *loop, int signo, void *arg)
{
    (void)loop;
    struct role *r = arg;
    if (signo == SIGCHLD) {
        if (r->ops->child)
            r->ops->child(r);
        return;
    }
    if (signo == SIGHUP) {
        char *tok = NULL;
        struct remex_error e;
        if (cfg_secret_get(&r->cfg.plane.token, &tok, NULL, &e) != REMEX_OK)
            log_error("SIGHUP: agent token: %s", e.msg);
        else
            log_info("SIGHUP: agent token re-read");
        cfg_secret_free(tok);
        if (r->api)
            api_reload(r->api);
        if (r->ops->reload)
            r->ops->reload(r);
        return;
    }
    const char *name = signo == SIGINT ? "SIGINT" : "SIGTERM";
    if (r->state < ROLE_DRAINING) {
        role_drain(r, name);
    } else if (r->state == ROLE_DRAINING) {
        r->state = ROLE_STOPPING;
        log_warn("second %s: stopping now", name);
        if (r->ops->stop_now)
            r->ops->stop_now(r);
        else
            role_finish(r, REMEX_EXIT_OK);
    }
}

/* Loop, signals, supervisor channel: returns -1 to go on, else an exit code. */
static int setup_runtime(struct role *r)
{
    struct remex_error e;
    /* The plane is the roles' only HTTP peer so far: without https, no TLS start-up. */
    int tls = r->cfg.plane.url && strncasecmp(r->cfg.plane.url, "https:", 6) == 0;
    if (http_global_init(tls, &e) != REMEX_OK || !(r->loop = evloop_new(&e))) {
        log_error("%s", e.msg);
        return REMEX_EXIT_FAIL;
    }
    remex_errclear(&e);
    int sfd = supervise_fd(&e);
    if (sfd < 0 && e.code != REMEX_OK) {
        log_error("%s", e.msg);
        return REMEX_EXIT_CONFIG;
    }
    if (sfd >= 0) {
        if (!(r->sup = ipc_conn_new(sfd, SUP_FRAME_MAX, SUP_FRAME_MAX, &e)) ||
            evloop_watch(r->loop, sfd, EVLOOP_READ, on_supervisor, r, &e) != REMEX_OK) {
            log_error("supervisor channel: %s", e.msg);
            return REMEX_EXIT_FAIL;
        }
        log_info("supervised: readiness and drain over descriptor %d", sfd);
    }
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD};
    size_t n = (r->ops->flags & ROLE_HAS_CHILDREN) ? 4 : 3;
    for (size_t i = 0; i < n; i++)
        if (evloop_signal(r->loop, sigs[i], on_signal, r, &e) != REMEX_OK) {
            log_error("%s", e.msg);
            return REMEX_EXIT_FAIL;
        }
    signal(SIGPIPE, SIG_IGN);
    return -1;
}

static void teardown(struct role *r)
{
    if (r->ops->stop)
        r->ops->stop(r);
    api_free(r->api);
    r->api = NULL;
    if (r->sup) {
        evloop_unwatch(r->loop, ipc_conn_fd(r->sup));
        ipc_conn_free(r->sup);
        r->sup = NULL;
    }
    if (r->trim_timer)
        evloop_timer_cancel(r->loop, r->trim_timer);
    if (r->grace_timer)
        evloop_timer_cancel(r->loop, r->grace_timer);
    evloop_free(r->loop);
    r->loop = NULL;
    agentcfg_free(&r->cfg);
}

static int check(const struct role_ops *ops, const char *path)
{
    struct buf out = BUF_INIT(64 * 1024);
    int rc = agentcfg_check(path, &out);
    if (rc == 0 && ops->check) {
        struct agentcfg c = {0};
        struct buf more = BUF_INIT(64 * 1024);
        if (agentcfg_load(&c, path, NULL) == REMEX_OK) {
            rc = ops->check(&c, path, &more);
            agentcfg_free(&c);
        }
        if (rc != 0) {
            buf_reset(&out);
            buf_append(&out, more.data, more.len);
        }
        buf_free(&more);
    }
    fputs(buf_cstr(&out), rc == 0 ? stdout : stderr);
    buf_free(&out);
    return rc;
}

struct role_args {
    const char *path, *lfmt, *llvl, *instance, *opt;
    int check, once;
};

/* -1: go on; else the exit code. */
static int parse_args(const struct role_ops *ops, int argc, char **argv, struct role_args *a)
{
    struct option opts[] = {{"check", no_argument, NULL, 'k'},
                            {"once", no_argument, NULL, 'o'},
                            {"instance", required_argument, NULL, 'i'},
                            {"log-format", required_argument, NULL, 'f'},
                            {"log-level", required_argument, NULL, 'l'},
                            {"help", no_argument, NULL, 'h'},
                            {"version", no_argument, NULL, 'V'},
                            {ops->opt_name ? ops->opt_name : "", required_argument, NULL, 'x'},
                            {NULL, 0, NULL, 0}};
    if (!ops->opt_name)
        opts[7] = opts[8]; /* no option of the role's own */
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            a->path = optarg;
            break;
        case 'k':
            a->check = 1;
            break;
        case 'o':
            if (!(ops->flags & ROLE_HAS_ONCE)) {
                usage(ops, stderr);
                return REMEX_EXIT_USAGE;
            }
            a->once = 1;
            break;
        case 'i':
            if (!(ops->flags & ROLE_HAS_INSTANCE)) {
                usage(ops, stderr);
                return REMEX_EXIT_USAGE;
            }
            a->instance = optarg;
            break;
        case 'x':
            a->opt = optarg;
            break;
        case 'f':
            a->lfmt = optarg;
            break;
        case 'l':
            a->llvl = optarg;
            break;
        case 'V':
            printf("remex-%s %s\n", ops->name, REMEX_VERSION);
            return REMEX_EXIT_OK;
        case 'h':
            usage(ops, stdout);
            return REMEX_EXIT_OK;
        default:
            usage(ops, stderr);
            return REMEX_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(ops, stderr);
        return REMEX_EXIT_USAGE;
    }
    return -1;
}

/* Config and logger: -1 to go on, else the exit code. */
static int load(struct role *r, const struct role_args *a)
{
    struct cfg_errors *errs = calloc(1, sizeof(*errs));
    if (!errs)
        return REMEX_EXIT_FAIL;
    remex_err rc = agentcfg_load(&r->cfg, a->path, errs);
    struct buf out = BUF_INIT(64 * 1024);
    if (rc != REMEX_OK || errs->nwarn) {
        cfg_check_report(rc, errs, &out);
        if (rc == REMEX_OK) /* warnings only: drop the verdict line */
            out.len -= strlen("configuration OK\n");
        fwrite(out.data, 1, out.len, stderr);
    }
    buf_free(&out);
    free(errs);
    if (rc != REMEX_OK)
        return REMEX_EXIT_CONFIG;
    enum log_level lv = LOG_LEVEL_INFO;
    enum log_format lf = LOG_FORMAT_TEXT;
    const char *level = r->cfg.logs.level, *format = r->cfg.logs.format;
    if (r->ops->log_config)
        r->ops->log_config(&r->cfg, &level, &format);
    /* The file's values are validated by agentcfg; only the flags can be wrong here. */
    if (log_level_parse(a->llvl ? a->llvl : level, &lv) != 0 ||
        log_format_parse(a->lfmt ? a->lfmt : format, &lf) != 0) {
        fprintf(stderr, "remex-%s: unknown log level or format\n", r->ops->name);
        return REMEX_EXIT_USAGE;
    }
    log_init(r->ops->name, lv, lf);
    return -1;
}

int role_main(const struct role_ops *ops, void *ud, int argc, char **argv)
{
    struct role_args a = {0};
    int code = parse_args(ops, argc, argv, &a);
    if (code >= 0)
        return code;
    if (a.check)
        return check(ops, a.path);
    /* One malloc arena: the only other threads are short-lived (resolver, spawners). */
    mallopt(M_ARENA_MAX, 1);
    static struct role r;
    memset(&r, 0, sizeof(r));
    r.ops = ops;
    r.ud = ud;
    r.config_path = a.path;
    r.once = a.once;
    r.instance = a.instance;
    r.opt = a.opt;
    if ((code = load(&r, &a)) >= 0) {
        agentcfg_free(&r.cfg);
        return code;
    }
    code = setup_runtime(&r);
    if (code < 0)
        code = ops->start(&r);
    if (code < 0) {
        struct remex_error e;
        if (r.state != ROLE_FINISHED && evloop_run(r.loop, &e) != REMEX_OK) {
            log_error("event loop: %s", e.msg);
            r.exit_code = REMEX_EXIT_FAIL;
        }
        code = r.exit_code;
    }
    teardown(&r);
    return code;
}

int role_plane_hold(const char *desired_state, int cur)
{
    static const char *const names[] = {[ROLE_HOLD_NONE] = "run",
                                        [ROLE_HOLD_DRAIN] = "drain",
                                        [ROLE_HOLD_MAINTENANCE] = "maintenance"};
    for (int i = 0; desired_state != NULL && i < (int)(sizeof(names) / sizeof(names[0])); i++)
        if (strcmp(desired_state, names[i]) == 0)
            return i;
    return cur;
}

const char *role_beat_state(const struct role *r, int hold)
{
    if (r->state >= ROLE_DRAINING || hold == ROLE_HOLD_DRAIN)
        return "draining";
    return hold == ROLE_HOLD_MAINTENANCE ? "maintenance" : "running";
}
