/*
 * remex-worker: pulls task instances for its queues from the plane, runs each
 * as an isolated process group, reports their state. See docs/worker.md.
 *
 *   remex-worker -c agent.yaml [--check] [--once] [--log-format text|json]
 *                [--log-level error|warn|info|debug]
 *
 * Exit codes: 0 done (drained, or --once task succeeded), 1 runtime failure
 * (or --once task did not succeed), 2 usage, 100 bad configuration or agent
 * token refused (revoked, expired, invalid): a supervisor must not restart it.
 *
 * Signals (through the loop's signalfd): SIGTERM/SIGINT drain (a second one
 * stops running tasks at once), SIGHUP re-reads the agent token file,
 * SIGCHLD reaps tasks.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "remex/bundle.h"
#include "remex/evloop.h"
#include "remex/fsutil.h"
#include "remex/http.h"
#include "remex/ipc.h"
#include "remex/journal.h"
#include "remex/log.h"
#include "remex/objstore.h"
#include "remex/secrets.h"
#include "remex/version.h"
#include "remex/supervise.h"
#include "worker.h"

/*
 * Debian's libcurl pulls in libgnutls (through librtmp) although the worker's
 * TLS is OpenSSL's. gnutls's library constructor runs its whole global init
 * (crypto backends, ASN.1 trees, system priorities: about 1 MiB resident)
 * unless the program defines this symbol returning non-zero: the mechanism
 * of GNUTLS_SKIP_GLOBAL_INIT in <gnutls/gnutls.h>. Whoever does use gnutls
 * still calls gnutls_global_init() itself. test_worker_footprint checks that the
 * dynamic linker binds gnutls's reference to this definition.
 */
int _gnutls_global_init_skip(void);
int _gnutls_global_init_skip(void)
{
    return 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: remex-worker -c agent.yaml [--check] [--once] [--log-format text|json]\n"
               "                    [--log-level error|warn|info|debug]\n");
}

void worker_finish(struct worker *w, int code)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    w->exit_code = code;
    evloop_stop(w->loop);
}

void worker_check_done(struct worker *w)
{
    if (w->stopping || w->tasks || w->running > 0 || w->reports_inflight > 0)
        return;
    int spooled = journal_pending(w->journal) > 0 || json_array_size(w->held) > 0;
    if (spooled && w->plane_ok)
        return; /* replaying: wait for it */
    if (w->draining) {
        log_info("drained%s; exiting", spooled ? " (undelivered reports stay in the journal)" : "");
        worker_finish(w, WORKER_EXIT_OK);
    } else if (w->once && w->once_taken) {
        worker_finish(w, w->once_result);
    }
}

static void on_drain_grace(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct worker *w = arg;
    w->drain_timer = 0;
    log_warn("drain grace period over: stopping running tasks");
    w->drain_forced = 1;
    task_stop_all(w, "worker shutdown");
}

void worker_drain(struct worker *w, const char *why)
{
    struct remex_error e;
    if (w->draining)
        return;
    log_info("%s: draining (running tasks get %llu ms; send SIGTERM again to stop them now)", why,
             (unsigned long long)w->cfg.drain_grace_ms);
    w->draining = 1;
    w->drain_timer = evloop_timer_add(w->loop, w->cfg.drain_grace_ms, 0, on_drain_grace, w);
    if (w->sup) {
        json_t *x = json_pack("{s:s}", "reason", why);
        if (supervise_notify(ipc_conn_fd(w->sup), "worker", "draining", x, &e) != REMEX_OK)
            log_warn("supervisor: %s", e.msg);
        json_decref(x);
    }
    worker_check_done(w);
}

void worker_notify_ready(struct worker *w)
{
    struct remex_error e;
    if (w->sup == NULL || w->sup_ready)
        return;
    w->sup_ready = 1;
    if (supervise_notify(ipc_conn_fd(w->sup), "worker", "ready", NULL, &e) != REMEX_OK)
        log_warn("supervisor: %s", e.msg);
}

/* Frames from the supervisor: {"type":"drain"}; end of file = supervisor gone. */
static void on_supervisor(struct evloop *loop, int fd, unsigned events, void *arg)
{
    struct worker *w = arg;
    struct remex_error e;
    json_t *msg = NULL;
    remex_err rc;
    (void)events;
    rc = ipc_conn_read(w->sup, &e);
    while (rc == REMEX_OK || rc == REMEX_EAGAIN) {
        remex_err prc = ipc_conn_pop(w->sup, &msg, NULL, NULL, &e);
        if (prc == REMEX_EAGAIN)
            break;
        if (prc != REMEX_OK) {
            rc = prc;
            break;
        }
        const char *type = json_string_value(json_object_get(msg, "type"));
        if (type && strcmp(type, "drain") == 0)
            worker_drain(w, "supervisor request");
        else
            log_debug("supervisor: ignoring a frame of type '%s'", type ? type : "?");
        json_decref(msg);
        msg = NULL;
    }
    if (rc == REMEX_EAGAIN || rc == REMEX_OK)
        return;
    evloop_unwatch(loop, fd);
    ipc_conn_free(w->sup);
    w->sup = NULL;
    if (rc == REMEX_ECLOSED) {
        log_warn("supervisor closed its socket");
        worker_drain(w, "supervisor gone");
    } else {
        log_error("supervisor channel: %s; closing it", e.msg);
    }
}

/*
 * Heap given back after a burst: a burst of task starts leaves freed TLS
 * contexts and buffers spread over the heap, which glibc only returns to the
 * system from its top. Once no task has run for IDLE_TRIM_MS, malloc_trim
 * releases every free page of the heap.
 */
#define IDLE_TRIM_MS 2000
static uint64_t trim_timer;

static void on_idle_trim(struct evloop *loop, uint64_t id, void *arg)
{
    struct worker *w = arg;
    (void)loop;
    (void)id;
    trim_timer = 0;
    if (w->running == 0)
        malloc_trim(0);
}

static void arm_idle_trim(struct worker *w)
{
    if (trim_timer && evloop_timer_rearm(w->loop, trim_timer, IDLE_TRIM_MS) == REMEX_OK)
        return;
    trim_timer = evloop_timer_add(w->loop, IDLE_TRIM_MS, 0, on_idle_trim, w);
}

static void on_signal(struct evloop *loop, int signo, void *arg)
{
    (void)loop;
    struct worker *w = arg;
    if (signo == SIGCHLD) {
        task_reap(w);
        if (w->running == 0)
            arm_idle_trim(w);
        return;
    }
    if (signo == SIGHUP) {
        char *tok = NULL;
        struct remex_error e;
        if (cfg_secret_get(&w->cfg.token, &tok, NULL, &e) != REMEX_OK)
            log_error("SIGHUP: agent token: %s", e.msg);
        else
            log_info("SIGHUP: agent token re-read");
        cfg_secret_free(tok);
        w->auth_retry = 0;
        if (!w->registered)
            plane_register(w);
        return;
    }
    if (!w->draining) {
        worker_drain(w, signo == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    } else if (!w->drain_forced) {
        log_warn("second %s: stopping running tasks now", signo == SIGINT ? "SIGINT" : "SIGTERM");
        w->drain_forced = 1;
        task_stop_all(w, "worker shutdown");
    }
    worker_check_done(w);
}

/* Creates (or accepts) a folder only this uid can enter. */
static int private_dir(const char *path)
{
    struct stat st;
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -1;
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid() ||
        (st.st_mode & 077) != 0) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

/*
 * The folder of the task sockets: <base>/remex-<uid>/w<pid> with base =
 * worker.socket_dir, else $XDG_RUNTIME_DIR, else /dev/shm when it is a tmpfs
 * (sockets on tmpfs cost no disk inode churn per task), else <state_dir>/sock.
 */
static int setup_sockdir(struct worker *w)
{
    const char *base = w->cfg.socket_dir;
    struct statfs sf;
    char parent[4096];
    if (!base)
        base = getenv("XDG_RUNTIME_DIR");
    if (!base && statfs("/dev/shm", &sf) == 0 && sf.f_type == TMPFS_MAGIC &&
        access("/dev/shm", W_OK) == 0)
        base = "/dev/shm";
    if (base && *base) {
        snprintf(parent, sizeof(parent), "%s/remex-%u", base, (unsigned)getuid());
        int n = snprintf(w->sock_dir, sizeof(w->sock_dir), "%s/w%d", parent, (int)getpid());
        if (n > 0 && (size_t)n < sizeof(w->sock_dir) && private_dir(parent) == 0 &&
            private_dir(w->sock_dir) == 0) {
            w->sock_dir_tmp = 1;
            return 0;
        }
        log_warn("task sockets: cannot use %s: %s; using the state dir", parent, strerror(errno));
    }
    int n = snprintf(w->sock_dir, sizeof(w->sock_dir), "%s/sock", w->cfg.state_dir);
    if (n < 0 || (size_t)n >= sizeof(w->sock_dir) || private_dir(w->sock_dir) != 0) {
        log_error("task sockets: state_dir path too long or folder not private (set "
                  "worker.socket_dir)");
        return -1;
    }
    return 0;
}

static void setup_task_path(struct worker *w)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    const char *sp = getenv("PATH");
    snprintf(w->task_path, sizeof(w->task_path), "%s%s%s", self, self[0] ? ":" : "",
             sp && *sp ? sp : "/usr/local/bin:/usr/bin:/bin");
}

/* Opens everything the loop needs; returns an exit code, or -1 to run. */
static int setup(struct worker *w)
{
    struct remex_error e;
    if (w->cfg.slots == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        w->slots = n > 0 ? n : 1;
    } else {
        w->slots = w->cfg.slots;
    }
    if (fsutil_mkdir_p(w->cfg.state_dir, 0700) != 0 || fsutil_mkdir_p(w->cfg.log_dir, 0750) != 0) {
        log_error("cannot create state_dir %s or log_dir %s: %s", w->cfg.state_dir, w->cfg.log_dir,
                  strerror(errno));
        return WORKER_EXIT_AUTH;
    }
    if (setup_sockdir(w) != 0)
        return WORKER_EXIT_AUTH;
    setup_task_path(w);
    w->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (proc_exe_cache_new(&w->exe_cache, &e) != REMEX_OK)
        log_warn("%s: PATH is searched at every spawn", e.msg);
    char jdir[4200];
    snprintf(jdir, sizeof(jdir), "%s/journal", w->cfg.state_dir);
    size_t corrupt = 0;
    if (journal_open(jdir, 0, &w->journal, &corrupt, &e) != REMEX_OK) {
        log_error("report journal: %s", e.msg);
        return WORKER_EXIT_FAIL;
    }
    if (corrupt)
        log_warn("report journal: %zu corrupt entries skipped", corrupt);
    if (journal_pending(w->journal))
        log_info("report journal: %zu undelivered reports to replay before taking work",
                 journal_pending(w->journal));
    struct bundle_spec specs[256];
    const struct wbundle *wb = w->cfg.bundles.items;
    for (size_t i = 0; i < w->cfg.bundles.n && i < 256; i++)
        specs[i] = (struct bundle_spec){.name = wb[i].name, .path = wb[i].path};
    if (bundle_set_new(specs, w->cfg.bundles.n, &w->bundles, &e) != REMEX_OK) {
        log_error("bundles: %s", e.msg);
        return WORKER_EXIT_AUTH;
    }
    struct secrets_config sc = {.file = w->cfg.secrets_file};
    if (secrets_open(&sc, &w->secrets, &e) != REMEX_OK) {
        log_error("secrets: %s", e.msg);
        return WORKER_EXIT_AUTH;
    }
    if (objstore_open(w->cfg.xcom_store, &w->xstore, &e) != REMEX_OK)
        log_warn("xcom store: %s: XCom requests will fail", e.msg);
    if (memlimit_init(w, &e) != REMEX_OK) {
        log_error("worker.task_defaults.memory_enforcement: %s", e.msg);
        return WORKER_EXIT_AUTH;
    }
    /* The plane is the worker's only HTTP peer: without https, no TLS start-up. */
    int tls = w->cfg.plane_url && strncasecmp(w->cfg.plane_url, "https:", 6) == 0;
    if (http_global_init(tls, &e) != REMEX_OK || !(w->loop = evloop_new(&e)) ||
        plane_init(w, &e) != REMEX_OK) {
        log_error("%s", e.msg);
        return WORKER_EXIT_FAIL;
    }
    remex_errclear(&e);
    int sfd = supervise_fd(&e);
    if (sfd < 0 && e.code != REMEX_OK) {
        log_error("%s", e.msg);
        return WORKER_EXIT_AUTH;
    }
    if (sfd >= 0) {
        if (!(w->sup = ipc_conn_new(sfd, 64 * 1024, 64 * 1024, &e)) ||
            evloop_watch(w->loop, sfd, EVLOOP_READ, on_supervisor, w, &e) != REMEX_OK) {
            log_error("supervisor channel: %s", e.msg);
            return WORKER_EXIT_FAIL;
        }
        log_info("supervised: readiness and drain over descriptor %d", sfd);
    }
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (evloop_signal(w->loop, sigs[i], on_signal, w, &e) != REMEX_OK) {
            log_error("%s", e.msg);
            return WORKER_EXIT_FAIL;
        }
    signal(SIGPIPE, SIG_IGN);
    if (spawner_start(w, &e) != REMEX_OK)
        log_warn("%s: tasks are spawned on the event loop", e.msg);
    return -1;
}

static void teardown(struct worker *w)
{
    spawner_stop(w);
    task_free_all(w);
    memlimit_shutdown(w);
    tasksock_pool_free(w);
    if (w->multi)
        plane_shutdown(w);
    if (w->sup) {
        evloop_unwatch(w->loop, ipc_conn_fd(w->sup));
        ipc_conn_free(w->sup);
        w->sup = NULL;
    }
    evloop_free(w->loop);
    if (json_array_size(w->held))
        log_error("%zu reports the journal refused are lost", json_array_size(w->held));
    json_decref(w->held);
    journal_close(w->journal);
    secrets_close(w->secrets);
    bundle_set_free(w->bundles);
    objstore_close(w->xstore);
    free(w->agent_id);
    if (w->session) {
        explicit_bzero(w->session, strlen(w->session));
        free(w->session);
    }
    if (w->sock_dir_tmp)
        rmdir(w->sock_dir);
    if (w->devnull >= 0)
        close(w->devnull);
    proc_exe_cache_free(w->exe_cache);
    cfg_free(wconfig_table, &w->cfg);
}

/*
 * --check: the cfg checks, then what only a start would find out: bundle
 * folders exist, the secrets file is readable and private.
 */
static int check_config(const char *path)
{
    struct buf out = BUF_INIT(64 * 1024);
    int rc = cfg_check(wconfig_table, sizeof(struct wconfig), path, NULL, &out);
    if (rc == 0) {
        struct wconfig c = {0};
        struct remex_error e;
        struct bundle_set *bs = NULL;
        struct secrets *sec = NULL;
        struct bundle_spec specs[256];
        const struct wbundle *wb;
        if (cfg_load_file(wconfig_table, &c, path, NULL, NULL) != REMEX_OK)
            return CFG_EXIT_CONFIG;
        wb = c.bundles.items;
        for (size_t i = 0; i < c.bundles.n && i < 256; i++)
            specs[i] = (struct bundle_spec){.name = wb[i].name, .path = wb[i].path};
        struct secrets_config sc = {.file = c.secrets_file};
        buf_reset(&out);
        if (bundle_set_new(specs, c.bundles.n, &bs, &e) != REMEX_OK) {
            buf_printf(&out, "%s: bundles: %s\n", path ? path : "(defaults)", e.msg);
            rc = CFG_EXIT_CONFIG;
        } else if (secrets_open(&sc, &sec, &e) != REMEX_OK) {
            buf_printf(&out, "%s: secrets.file: %s\n", path ? path : "(defaults)", e.msg);
            rc = CFG_EXIT_CONFIG;
        } else {
            buf_puts(&out, "configuration OK\n");
        }
        bundle_set_free(bs);
        secrets_close(sec);
        cfg_free(wconfig_table, &c);
    }
    fputs(buf_cstr(&out), rc == 0 ? stdout : stderr);
    buf_free(&out);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"check", no_argument, NULL, 'k'},
                                         {"once", no_argument, NULL, 'o'},
                                         {"log-format", required_argument, NULL, 'f'},
                                         {"log-level", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL, *lfmt = NULL, *llvl = NULL;
    int check = 0, once = 0, c;
    /* One malloc arena: the only other threads are libcurl's short-lived resolver threads. */
    mallopt(M_ARENA_MAX, 1);
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'o':
            once = 1;
            break;
        case 'f':
            lfmt = optarg;
            break;
        case 'l':
            llvl = optarg;
            break;
        case 'V':
            printf("remex-worker %s\n", REMEX_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return WORKER_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return WORKER_EXIT_USAGE;
    }
    if (check)
        return check_config(path);
    static struct worker w;
    struct cfg_errors errs = {0};
    remex_err rc = cfg_load_file(wconfig_table, &w.cfg, path, NULL, &errs);
    if (rc != REMEX_OK) {
        struct buf out = BUF_INIT(64 * 1024);
        cfg_check_report(rc, &errs, &out);
        fputs(buf_cstr(&out), stderr);
        buf_free(&out);
        return CFG_EXIT_CONFIG;
    }
    enum log_level lv = LOG_LEVEL_INFO;
    enum log_format lf = LOG_FORMAT_TEXT;
    if (log_level_parse(llvl ? llvl : w.cfg.log_level, &lv) != 0 ||
        log_format_parse(lfmt ? lfmt : w.cfg.log_format, &lf) != 0) {
        fprintf(stderr, "remex-worker: unknown log level or format\n");
        cfg_free(wconfig_table, &w.cfg);
        return lfmt || llvl ? WORKER_EXIT_USAGE : CFG_EXIT_CONFIG;
    }
    log_init("worker", lv, lf);
    w.once = once;
    w.devnull = -1;
    w.once_result = WORKER_EXIT_FAIL;
    int code = setup(&w);
    if (code < 0) {
        log_info("remex-worker %s starting: plane %s, queues %zu, %lld slots", REMEX_VERSION,
                 w.cfg.plane_url, w.cfg.queues.n, (long long)w.slots);
        plane_replay(&w); /* registers once the journal is delivered */
        struct remex_error e;
        if (!w.stopping && evloop_run(w.loop, &e) != REMEX_OK) {
            log_error("event loop: %s", e.msg);
            w.exit_code = WORKER_EXIT_FAIL;
        }
        code = w.exit_code;
    }
    teardown(&w);
    return code;
}
