/*
 * remex-plane: the reference orchestration plane.
 *
 *   remex-plane -c plane.yaml [--check] [--log-format text|json] [--log-level L]
 *   remex-plane --routes    (every served route)
 *   remex-plane --bodies    (the keys each request body may carry)
 *
 * Start order: configuration, logging, store (migrations), credentials,
 * scheduler state, lost-agent detector, scheduler thread, HTTP server.
 * SIGTERM/SIGINT are taken with sigwait(2) in this thread (blocked everywhere
 * else): stop accepting, set stopping and wake every long poll, stop the
 * scheduler and the detector, wait for in-flight requests, close the DB, exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decode.h"
#include "plane.h"
#include "remex/cfg.h"
#include "remex/exit.h"
#include "remex/log.h"
#include "remex/version.h"

/* plane.yaml as cfg loads it; copied into struct plane_config. */
struct file_cfg {
    char *listen;
    char *tls_cert;
    char *tls_key;
    char *tls_priorities;
    char *db_path;
    char *admin_token_file;
    char *signing_key_file;
    uint64_t heartbeat_interval;
    int64_t lost_after_missed;
    uint64_t offer_timeout;
    uint64_t session_ttl;
    uint64_t longpoll_max;
    uint64_t body_max;
    int64_t threads;
    int64_t max_connections;
    uint64_t retention_older_than;
    int log_level;
    int log_format;
};

static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const format_names[] = {"text", "json", NULL};

#define F(m) offsetof(struct file_cfg, m)
static const struct cfg_entry plane_cfg_table[] = {
    {.key = "listen",
     .type = CFG_STRING,
     .offset = F(listen),
     .def = "127.0.0.1:8080",
     .desc = "HOST:PORT to listen on (numeric host; port 0 picks a free one)"},
    {.key = "tls.cert",
     .type = CFG_PATH,
     .offset = F(tls_cert),
     .desc = "PEM certificate chain; TLS when set with tls.key"},
    {.key = "tls.key", .type = CFG_PATH, .offset = F(tls_key), .desc = "PEM private key"},
    {.key = "tls.priorities",
     .type = CFG_STRING,
     .offset = F(tls_priorities),
     .def = SERVER_TLS_PRIORITIES,
     .desc = "GnuTLS priority string (default: TLS 1.2 and 1.3, forward-secret AEAD suites)"},
    {.key = "db_path",
     .type = CFG_PATH,
     .offset = F(db_path),
     .def = "var/plane.db",
     .desc = "SQLite database file"},
    {.key = "admin_token_file",
     .type = CFG_PATH,
     .offset = F(admin_token_file),
     .def = "var/admin.token",
     .desc = "admin token (mode 0600; created if absent)"},
    {.key = "signing_key_file",
     .type = CFG_PATH,
     .offset = F(signing_key_file),
     .def = "var/signing.key",
     .desc = "JWT signing key, 32 bytes (mode 0600; created if absent)"},
    {.key = "heartbeat_interval",
     .type = CFG_DURATION,
     .offset = F(heartbeat_interval),
     .def = "5s",
     .min = 100,
     .max = 3600000,
     .desc = "interval agents heartbeat at"},
    {.key = "lost_after_missed",
     .type = CFG_INT,
     .offset = F(lost_after_missed),
     .def = "3",
     .min = 1,
     .max = 100,
     .desc = "missed heartbeats after which an agent is lost"},
    {.key = "offer_timeout",
     .type = CFG_DURATION,
     .offset = F(offer_timeout),
     .def = "30s",
     .min = 100,
     .max = 3600000,
     .desc = "time a worker has to start an offered task"},
    {.key = "session_ttl",
     .type = CFG_DURATION,
     .offset = F(session_ttl),
     .def = "15m",
     .min = 1000,
     .max = 86400000LL * 30,
     .desc = "session token lifetime"},
    {.key = "longpoll_max",
     .type = CFG_DURATION,
     .offset = F(longpoll_max),
     .def = "30s",
     .min = 1000,
     .max = 600000,
     .desc = "longest wait of a work or trigger long poll"},
    {.key = "body_max",
     .type = CFG_SIZE,
     .offset = F(body_max),
     .def = "1MiB",
     .min = 1024,
     .max = 256LL * 1024 * 1024,
     .desc = "request body cap (413 above)"},
    {.key = "threads",
     .type = CFG_INT,
     .offset = F(threads),
     .def = "0",
     .min = 0,
     .max = 64,
     .desc = "HTTP event-loop threads (epoll); 0: 4 per CPU, 8 to 64"},
    {.key = "max_connections",
     .type = CFG_INT,
     .offset = F(max_connections),
     .def = "1024",
     .min = 4,
     .max = 100000,
     .desc = "most concurrent connections (a parked long poll holds one, no thread)"},
    {.key = "retention.older_than",
     .type = CFG_DURATION,
     .offset = F(retention_older_than),
     .def = "0s",
     .min = 0,
     .max = 86400000LL * 36600,
     .desc = "delete finished runs that ended longer ago (as remexctl db clean); 0s: keep all"},
    {.key = "log.level",
     .type = CFG_ENUM,
     .offset = F(log_level),
     .def = "info",
     .enums = level_names,
     .desc = "error, warn, info or debug"},
    {.key = "log.format",
     .type = CFG_ENUM,
     .offset = F(log_format),
     .def = "text",
     .enums = format_names,
     .desc = "text or json"},
    {.key = NULL},
};
#undef F

/* After a restart, an offer whose start was not recorded is kept for one
 * offer_timeout so that the worker's heartbeat can bring it back as running:
 * two heartbeats must fit in it. */
/* The checks of what start would refuse run here too, so --check catches
 * them and a start exits 100 before creating any file: listen must be a
 * numeric HOST:PORT, tls.cert and tls.key come together, tls.priorities
 * must parse. */
static int plane_cfg_cross(const void *obj, const char **key, char *why, size_t whysz)
{
    const struct file_cfg *f = obj;
    int cert = f->tls_cert && *f->tls_cert, tkey = f->tls_key && *f->tls_key;
    if (server_check_listen(f->listen, why, whysz) != 0) {
        *key = "listen";
        return -1;
    }
    if (cert != tkey) {
        *key = cert ? "tls.key" : "tls.cert";
        snprintf(why, whysz, "required with %s (both set turn HTTPS on)",
                 cert ? "tls.cert" : "tls.key");
        return -1;
    }
    if (server_check_tls_priorities(f->tls_priorities, why, whysz) != 0) {
        *key = "tls.priorities";
        return -1;
    }
    for (int i = 0; cert && i < 2; i++) {
        const char *path = i ? f->tls_key : f->tls_cert;
        FILE *pem = fopen(path, "r");
        if (!pem) {
            *key = i ? "tls.key" : "tls.cert";
            snprintf(why, whysz, "%s: %s", path, strerror(errno));
            return -1;
        }
        fclose(pem);
    }
    if (f->offer_timeout >= 2 * f->heartbeat_interval)
        return 0;
    *key = "offer_timeout";
    snprintf(why, whysz,
             "offer_timeout (%llu ms) must be at least twice heartbeat_interval (%llu ms)",
             (unsigned long long)f->offer_timeout, (unsigned long long)f->heartbeat_interval);
    return -1;
}

static const struct cfg_opts plane_cfg_opts = {.env_prefix = "REMEX_PLANE_",
                                               .cross = plane_cfg_cross};

static void usage(FILE *f)
{
    fprintf(f, "usage: remex-plane -c plane.yaml [--check] [--log-format text|json]"
               " [--log-level error|warn|info|debug]\n"
               "       remex-plane --routes | --bodies\n"
               "Every key of plane.yaml can be overridden by REMEX_PLANE_<KEY> (dots as _).\n"
               "Exit: 0 clean stop, 1 runtime failure, 2 usage, 100 invalid configuration.\n");
}

static char *dupe(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void copy_cfg(struct plane_config *c, const struct file_cfg *f)
{
    c->listen = dupe(f->listen);
    c->tls_cert = dupe(f->tls_cert);
    c->tls_key = dupe(f->tls_key);
    c->tls_priorities = dupe(f->tls_priorities);
    c->db_path = dupe(f->db_path);
    c->admin_token_file = dupe(f->admin_token_file);
    c->signing_key_file = dupe(f->signing_key_file);
    c->heartbeat_interval_ms = (int64_t)f->heartbeat_interval;
    c->lost_after_missed = f->lost_after_missed;
    c->offer_timeout_ms = (int64_t)f->offer_timeout;
    c->session_ttl_ms = (int64_t)f->session_ttl;
    c->longpoll_max_ms = (int64_t)f->longpoll_max;
    c->body_max = (int64_t)f->body_max;
    c->threads = f->threads;
    c->max_connections = f->max_connections;
    c->retention_ms = (int64_t)f->retention_older_than;
    c->log_level = dupe(level_names[f->log_level]);
    c->log_format = dupe(format_names[f->log_format]);
}

static void free_cfg(struct plane_config *c)
{
    char **s[] = {&c->listen,           &c->tls_cert,  &c->tls_key,
                  &c->tls_priorities,   &c->db_path,   &c->admin_token_file,
                  &c->signing_key_file, &c->log_level, &c->log_format};
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        free(*s[i]);
        *s[i] = NULL;
    }
}

/* Loads the file into p->cfg; prints errors and returns REMEX_EXIT_CONFIG on failure. */
static int load_config(struct plane *p, const char *path)
{
    struct file_cfg f;
    struct cfg_errors errs;
    memset(&f, 0, sizeof(f));
    memset(&errs, 0, sizeof(errs));
    remex_err rc = cfg_load_file(plane_cfg_table, &f, path, &plane_cfg_opts, &errs);
    if (rc) {
        struct buf out = BUF_INIT(64 * 1024);
        int code = cfg_check_report(rc, &errs, &out);
        fputs(buf_cstr(&out), stderr);
        buf_free(&out);
        return code ? code : REMEX_EXIT_CONFIG;
    }
    copy_cfg(&p->cfg, &f);
    cfg_free(plane_cfg_table, &f);
    return 0;
}

static int init_sync(struct plane *p)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_mutex_init(&p->mu, NULL) || pthread_cond_init(&p->sched_cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&p->stopping, 0);
    atomic_init(&p->store_rollbacks, 0);
    return rc ? -1 : 0;
}

static void fini_sync(struct plane *p)
{
    pthread_cond_destroy(&p->sched_cv);
    pthread_mutex_destroy(&p->mu);
}

/* Starts everything in order; on failure, what was started is left for shutdown(). */
static remex_err start(struct plane *p, int *stage, struct remex_error *e)
{
    remex_err rc;
    if (metrics_init(p))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    pthread_mutex_lock(&p->mu);
    rc = store_open(p, e);
    pthread_mutex_unlock(&p->mu);
    if (rc)
        return rc;
    *stage = 1;
    if ((rc = store_checkpointer_start(p, e)))
        return rc;
    if ((rc = auth_init(p, e)) || (rc = ui_init(p, e)))
        return rc;
    pthread_mutex_lock(&p->mu);
    rc = sched_init(p, e);
    pthread_mutex_unlock(&p->mu);
    if (rc)
        return rc;
    *stage = 2;
    if ((rc = agents_start(p, e)))
        return rc;
    *stage = 3;
    if ((rc = sched_start(p, e)))
        return rc;
    *stage = 4;
    if ((rc = server_start(p, e)))
        return rc;
    *stage = 5;
    return REMEX_OK;
}

static void shutdown_plane(struct plane *p, int stage)
{
    if (stage >= 5)
        server_quiesce(p);
    atomic_store(&p->stopping, 1);
    pthread_mutex_lock(&p->mu);
    plane_wake(p, PLANE_WAIT_WORK);
    plane_wake(p, PLANE_WAIT_TRIGGER);
    pthread_cond_broadcast(&p->sched_cv);
    pthread_mutex_unlock(&p->mu);
    if (stage >= 4)
        sched_stop(p);
    if (stage >= 3)
        agents_stop(p);
    if (stage >= 5)
        server_stop(p);
    if (stage >= 2) {
        pthread_mutex_lock(&p->mu);
        sched_free(p);
        pthread_mutex_unlock(&p->mu);
    }
    if (stage >= 1) {
        store_checkpointer_stop(p);
        pthread_mutex_lock(&p->mu);
        store_close(p);
        pthread_mutex_unlock(&p->mu);
    }
    metrics_free(p);
    ui_free(p);
    auth_free(p);
    memset(p->key, 0, sizeof(p->key));
    memset(p->admin_token, 0, sizeof(p->admin_token));
}

static int print_routes(int bodies)
{
    struct buf out = BUF_INIT(1024 * 1024);
    if (bodies ? decode_bodies_print(&out) : server_routes(&out)) {
        fprintf(stderr, "remex-plane: out of memory\n");
        return REMEX_EXIT_FAIL;
    }
    fputs(buf_cstr(&out), stdout);
    buf_free(&out);
    return 0;
}

static int run(struct plane *p)
{
    sigset_t set;
    int sig = 0, stage = 0;
    struct remex_error e = {0};
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread started below */
    signal(SIGPIPE, SIG_IGN);
    if (start(p, &stage, &e)) {
        log_error("start: %s", e.msg);
        shutdown_plane(p, stage);
        return REMEX_EXIT_FAIL;
    }
    log_info("remex-plane %s started (db %s)", REMEX_VERSION, p->cfg.db_path);
    while (sigwait(&set, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
        ;
    log_info("received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    shutdown_plane(p, stage);
    log_info("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'C'},
        {"routes", no_argument, NULL, 'R'},
        {"log-format", required_argument, NULL, 'F'},
        {"bodies", no_argument, NULL, 'B'},
        {"log-level", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *lf = NULL, *ll = NULL;
    int check = 0, routes = 0, bodies = 0, c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'C':
            check = 1;
            break;
        case 'R':
            routes = 1;
            break;
        case 'B':
            bodies = 1;
            break;
        case 'F':
            lf = optarg;
            break;
        case 'L':
            ll = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("remex-plane %s\n", REMEX_VERSION);
            return 0;
        default:
            usage(stderr);
            return REMEX_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return REMEX_EXIT_USAGE;
    }
    if (routes || bodies)
        return print_routes(bodies);
    if (!path) {
        fprintf(stderr, "remex-plane: -c plane.yaml is required\n");
        usage(stderr);
        return REMEX_EXIT_USAGE;
    }
    if (check) {
        struct buf out = BUF_INIT(64 * 1024);
        int code = cfg_check(plane_cfg_table, sizeof(struct file_cfg), path, &plane_cfg_opts, &out);
        fputs(buf_cstr(&out), code ? stderr : stdout);
        buf_free(&out);
        return code;
    }
    static struct plane plane;
    struct plane *p = &plane;
    int code = load_config(p, path);
    if (code)
        return code;
    enum log_level level;
    enum log_format fmt;
    if (log_level_parse(ll ? ll : p->cfg.log_level, &level) < 0 ||
        log_format_parse(lf ? lf : p->cfg.log_format, &fmt) < 0) {
        fprintf(stderr, "remex-plane: unknown --log-level or --log-format\n");
        free_cfg(&p->cfg);
        return REMEX_EXIT_USAGE;
    }
    log_init("plane", level, fmt);
    if (init_sync(p) != 0) {
        log_error("cannot initialise locks");
        free_cfg(&p->cfg);
        return REMEX_EXIT_FAIL;
    }
    code = run(p);
    fini_sync(p);
    free_cfg(&p->cfg);
    return code;
}
