/*
 * The checks graded from this process. Each writes one entry of s->health;
 * the order of first appearance is the order of the report:
 * plane, token_expiry, tls_certificate, roles, secrets, xcom_store, bundles,
 * disk.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "remex/agentcfg.h"
#include "remex/api.h"
#include "remex/evloop.h"
#include "remex/log.h"
#include "remex/objstore.h"
#include "remex/role.h"
#include "remex/secrets.h"
#include "remex/timeutil.h"
#include "sentinel.h"

#define PROBE_KEY "_sentinel/probe"

#define CHECK_DEADLINE_MAX_MS 10000 /* a check's deadline: the round interval, at most this */
#define CHECK_STOP_WAIT_MS    1000  /* at stop, how long a running check is waited for */
#define SECRETS_CHAIN_MAX     8

/* The secrets check's own objects (see bgcheck.c for who touches them when). */
struct secrets_ctx {
    struct secrets *sec;                  /* owned; NULL until the chain opens */
    const char *names[SECRETS_CHAIN_MAX]; /* secrets_chain's static names, set on the loop */
    size_t n;
};

/* The xcom_store check's own objects. */
struct xcom_ctx {
    struct objstore *store; /* owned; NULL until the store opens */
    char data[64];          /* the probe object of the run */
    size_t len;
};

static const struct bgcheck_ops secrets_ops, xcom_ops;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void add_dir(struct sentinel *s, const char *kind, const char *path)
{
    if (!path || s->ndirs >= SENT_DIRS_MAX)
        return;
    for (size_t i = 0; i < s->ndirs; i++)
        if (strcmp(s->dirs[i].path, path) == 0)
            return;
    struct sent_dir *d = &s->dirs[s->ndirs++];
    snprintf(d->kind, sizeof(d->kind), "%s", kind);
    d->path = path;
}

remex_err checks_init(struct sentinel *s, struct remex_error *e)
{
    const struct agentcfg *c = &s->r->cfg;
    static const char *const order[] = {"plane",   "token_expiry", "tls_certificate", "roles",
                                        "secrets", "xcom_store",   "bundles",         "disk"};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (i != 2 || strncmp(c->plane.url, "https://", 8) == 0)
            health_set(&s->health, order[i], HEALTH_WARN, "not checked yet");
    add_dir(s, "state", c->state_dir);
    add_dir(s, "logs", c->worker.log_dir);
    const struct agentcfg_bundle *b = c->bundles.items;
    for (size_t i = 0; i < c->bundles.n; i++) {
        char kind[64];
        snprintf(kind, sizeof(kind), "bundle:%s", b[i].name);
        add_dir(s, kind, b[i].path);
    }
    struct secrets_ctx *sc = calloc(1, sizeof(*sc));
    struct xcom_ctx *xc = calloc(1, sizeof(*xc));
    if (!sc || !xc) {
        free(sc);
        free(xc);
        return remex_seterr(e, REMEX_ENOMEM, "checks: out of memory");
    }
    if (!(s->secrets_chk = bgcheck_new(s, &secrets_ops, sc, e))) {
        free(xc);
        return e->code;
    }
    if (!(s->xcom_chk = bgcheck_new(s, &xcom_ops, xc, e)))
        return e->code;
    struct remex_error oe;
    if (agentcfg_secrets_open(c, &sc->sec, &oe) != REMEX_OK)
        log_warn("secrets: %s", oe.msg);
    else
        sc->n = secrets_chain(sc->sec, sc->names, SECRETS_CHAIN_MAX);
    return REMEX_OK;
}

void checks_free(struct sentinel *s)
{
    uint64_t until = timeutil_mono_ms() + CHECK_STOP_WAIT_MS; /* for both at once */
    bgcheck_stop(s->secrets_chk);
    bgcheck_stop(s->xcom_chk);
    bgcheck_free(s->secrets_chk, until);
    bgcheck_free(s->xcom_chk, until);
    s->secrets_chk = NULL;
    s->xcom_chk = NULL;
}

static void check_plane(struct sentinel *s)
{
    enum api_state st = api_state(s->api);
    double rtt_ms = s->rtt_s * 1000.0;
    if (st == API_FATAL)
        health_set(&s->health, "plane", HEALTH_FAIL, "the plane refused the agent token");
    else if (st == API_LOST)
        health_set(&s->health, "plane", HEALTH_FAIL, "unreachable: %s",
                   s->last_err[0] ? s->last_err : "calls fail");
    else if (st == API_UNREGISTERED || st == API_REGISTERING)
        health_set(&s->health, "plane", HEALTH_WARN, "registering with %s", s->r->cfg.plane.url);
    else if (s->last_err[0])
        health_set(&s->health, "plane", HEALTH_WARN, "%s", s->last_err);
    else if (s->rtt_s >= 0 && rtt_ms > (double)s->cfg->rtt_warn_ms)
        health_set(&s->health, "plane", HEALTH_WARN, "reachable, slow: round trip %.0f ms", rtt_ms);
    else if (s->rtt_s >= 0)
        health_set(&s->health, "plane", HEALTH_OK, "reachable, round trip %.1f ms", rtt_ms);
    else
        health_set(&s->health, "plane", HEALTH_OK, "registered as agent %s", api_agent_id(s->api));
}

/*
 * The token can be read (a rotated file that became unreadable is found
 * before the next registration needs it), the plane has not refused it, and
 * it is not near the expiry the operator gave in sentinel.token_expires_at
 * (the plane does not tell an agent when its token expires).
 */
static void check_token(struct sentinel *s)
{
    struct remex_error e;
    char *tok = NULL, msg[HEALTH_MSG_MAX];
    if (cfg_secret_get(&s->r->cfg.plane.token, &tok, NULL, &e) != REMEX_OK) {
        health_set(&s->health, "token_expiry", HEALTH_FAIL, "agent token: %s", e.msg);
        return;
    }
    cfg_secret_free(tok);
    if (api_state(s->api) == API_FATAL) {
        health_set(&s->health, "token_expiry", HEALTH_FAIL,
                   "the plane refused the agent token (expired or revoked)");
        return;
    }
    enum health_status st = health_grade_expiry("agent token", s->token_expires_ms, wall_ms(),
                                                s->cfg->token_warn_ms, msg, sizeof(msg));
    if (!s->token_expires_ms)
        snprintf(msg, sizeof(msg),
                 "agent token readable%s; its expiry is not known here (set "
                 "sentinel.token_expires_at)",
                 api_agent_id(s->api) ? " and accepted by the plane" : "");
    health_set(&s->health, "token_expiry", st, "%s", msg);
}

static void check_tls(struct sentinel *s)
{
    char msg[HEALTH_MSG_MAX];
    if (!s->tls)
        return;
    if (s->tls_err[0] && !s->tls_not_after_ms) {
        health_set(&s->health, "tls_certificate", HEALTH_WARN, "%s", s->tls_err);
        return;
    }
    if (!s->tls_not_after_ms)
        return; /* first probe still running */
    enum health_status st = health_grade_expiry("plane certificate", s->tls_not_after_ms, wall_ms(),
                                                s->cfg->tls_warn_ms, msg, sizeof(msg));
    health_set(&s->health, "tls_certificate", st, "%s", msg);
}

/* What secrets_probe found: the backends that answered, and those that failed with why. */
struct secrets_seen {
    struct bgcheck *c;
    unsigned done; /* backends probed so far: the step the thread reports */
    char ok[HEALTH_MSG_MAX];
    char failed[HEALTH_MSG_MAX];
};

static void append(char *dst, const char *fmt, const char *a, const char *b)
{
    size_t n = strlen(dst);
    if (n < HEALTH_MSG_MAX - 1)
        snprintf(dst + n, HEALTH_MSG_MAX - n, fmt, n ? ", " : "", a, b);
}

/* On the check's thread, after each backend. */
static void secrets_seen_fn(const char *backend, remex_err rc, const char *msg, void *ud)
{
    struct secrets_seen *seen = ud;
    bgcheck_step(seen->c, ++seen->done);
    if (rc == REMEX_OK)
        append(seen->ok, "%s%s%s", backend, "");
    else
        append(seen->failed, "%sbackend %s: %s", backend, msg);
}

/*
 * On the check's thread. Each configured backend of the agent's chain
 * (agent.yaml secrets:, as the worker opens it) answers a lookup on its own:
 * a name that is never defined is looked up, which re-reads a changed file
 * and checks its mode; "not found" is the healthy answer. A failing backend
 * is named with its reason.
 */
static void secrets_run(struct bgcheck *c, void *ctx, enum health_status *st, char *msg, size_t cap)
{
    struct secrets_ctx *sc = ctx;
    struct secrets_seen *seen = calloc(1, sizeof(*seen));
    if (!seen) {
        *st = HEALTH_FAIL;
        snprintf(msg, cap, "out of memory");
        return;
    }
    seen->c = c;
    secrets_probe(sc->sec, "remex-sentinel-probe", secrets_seen_fn, seen);
    *st = seen->failed[0] ? HEALTH_FAIL : HEALTH_OK;
    if (seen->failed[0])
        snprintf(msg, cap, "%s", seen->failed);
    else
        snprintf(msg, cap, "backends answering: %s", seen->ok[0] ? seen->ok : "none");
    free(seen);
}

/* On the loop at the deadline: the backend after the last one that answered. */
static void secrets_stuck(void *ctx, unsigned step, char *out, size_t cap)
{
    const struct secrets_ctx *sc = ctx;
    if (step < sc->n)
        snprintf(out, cap, "backend %s", sc->names[step]);
    else
        snprintf(out, cap, "the secrets chain");
}

static void secrets_ctx_free(void *ctx)
{
    struct secrets_ctx *sc = ctx;
    if (sc)
        secrets_close(sc->sec);
    free(sc);
}

static const struct bgcheck_ops secrets_ops = {
    .name = "secrets", .run = secrets_run, .stuck = secrets_stuck, .free_ctx = secrets_ctx_free};

/* The chain is opened on the loop (local files only) and probed on the check's thread. */
static void check_secrets(struct sentinel *s, uint64_t deadline_ms)
{
    struct remex_error e;
    struct secrets_ctx *sc = bgcheck_ctx(s->secrets_chk);
    if (bgcheck_busy(s->secrets_chk))
        return; /* the run of an earlier round is still going */
    if (!sc->sec) {
        if (agentcfg_secrets_open(&s->r->cfg, &sc->sec, &e) != REMEX_OK) {
            health_set(&s->health, "secrets", HEALTH_FAIL, "%s", e.msg);
            return;
        }
        sc->n = secrets_chain(sc->sec, sc->names, SECRETS_CHAIN_MAX);
    }
    bgcheck_start(s->secrets_chk, deadline_ms);
}

/* On the check's thread: a probe object is written, read back, compared and deleted. */
static void xcom_run(struct bgcheck *c, void *ctx, enum health_status *st, char *msg, size_t cap)
{
    struct xcom_ctx *xc = ctx;
    struct remex_error e;
    struct buf got = BUF_INIT(sizeof(xc->data));
    bgcheck_step(c, 0);
    remex_err rc = objstore_put(xc->store, PROBE_KEY, xc->data, xc->len, NULL, &e);
    if (rc == REMEX_OK) {
        bgcheck_step(c, 1);
        rc = objstore_get(xc->store, PROBE_KEY, &got, &e);
    }
    if (rc == REMEX_OK && (got.len != xc->len || memcmp(got.data, xc->data, xc->len) != 0))
        rc = remex_seterr(&e, REMEX_EPROTO, "probe object read back different");
    if (rc == REMEX_OK) {
        bgcheck_step(c, 2);
        rc = objstore_delete(xc->store, PROBE_KEY, &e);
    }
    buf_free(&got);
    *st = rc == REMEX_OK ? HEALTH_OK : HEALTH_FAIL;
    snprintf(msg, cap, "%s", rc == REMEX_OK ? "a probe object round-trips" : e.msg);
}

static void xcom_stuck(void *ctx, unsigned step, char *out, size_t cap)
{
    (void)ctx;
    static const char *const what[] = {"put", "get", "delete"};
    snprintf(out, cap, "%s of " PROBE_KEY, what[step < 3 ? step : 2]);
}

static void xcom_ctx_free(void *ctx)
{
    struct xcom_ctx *xc = ctx;
    if (xc)
        objstore_close(xc->store);
    free(xc);
}

static const struct bgcheck_ops xcom_ops = {
    .name = "xcom_store", .run = xcom_run, .stuck = xcom_stuck, .free_ctx = xcom_ctx_free};

/* The XCom store with the agent.yaml settings of its backend (xcom.s3.*, ...), as the worker
 * opens it; the store copies what it keeps. */
static remex_err open_store(const struct agentcfg *c, struct objstore **out, struct remex_error *e)
{
    struct objstore_opts so;
    char *key = NULL;
    remex_err rc = agentcfg_objstore_opts(c, c->xcom.store, &so, &key, e);
    if (rc == REMEX_OK)
        rc = objstore_open_opts(c->xcom.store, &so, out, e);
    cfg_secret_free(key);
    return rc;
}

/* The store is opened on the loop (no I/O) and probed on the check's thread. */
static void check_xcom(struct sentinel *s, uint64_t deadline_ms)
{
    struct remex_error e;
    struct xcom_ctx *xc = bgcheck_ctx(s->xcom_chk);
    if (bgcheck_busy(s->xcom_chk))
        return;
    if (!xc->store && open_store(&s->r->cfg, &xc->store, &e) != REMEX_OK) {
        health_set(&s->health, "xcom_store", HEALTH_FAIL, "%s", e.msg);
        return;
    }
    int n =
        snprintf(xc->data, sizeof(xc->data), "remex-sentinel %d %" PRIu64, (int)getpid(), s->ticks);
    xc->len = (size_t)n;
    bgcheck_start(s->xcom_chk, deadline_ms);
}

#define FRESH_FILE_MAX (1024 * 1024)

/*
 * The dag-processor's last successful refresh of bundle name, from its
 * metrics file (<dag_processor.state_dir>/metrics.prom, written atomically):
 * seconds since the epoch, 0 for never; -1 when the file or the line is not
 * there (no dag-processor on this agent, or it has not written yet).
 */
static double last_refresh(const char *text, const char *name)
{
    char key[160];
    snprintf(key, sizeof(key), "remex_dag_processor_last_refresh_timestamp_seconds{bundle=\"%s\"} ",
             name);
    const char *p = strstr(text, key);
    if (!p)
        return -1;
    char *end = NULL;
    double v = strtod(p + strlen(key), &end);
    return end && end != p + strlen(key) ? v : -1;
}

/* Reads the dag-processor's metrics file into a NUL-terminated buffer; NULL when absent. */
static char *read_dp_metrics(const struct agentcfg *c)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/metrics.prom", c->dag_processor.state_dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = malloc(FRESH_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, FRESH_FILE_MAX, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/*
 * Local bundle folders exist and can be listed; and, when a dag-processor
 * runs on this agent (its metrics file is there), each bundle was refreshed
 * within three of its intervals (git: refresh_interval, local:
 * dag_processor.refresh_interval): a stale one is a warning, one never
 * refreshed since the dag-processor started a warning too.
 */
static void check_bundles(struct sentinel *s)
{
    const struct agentcfg *c = &s->r->cfg;
    const struct agentcfg_bundle *b = c->bundles.items;
    struct stat st;
    for (size_t i = 0; i < c->bundles.n; i++) {
        errno = 0;
        if (b[i].path && (stat(b[i].path, &st) != 0 || !S_ISDIR(st.st_mode) ||
                          access(b[i].path, R_OK | X_OK) != 0)) {
            health_set(&s->health, "bundles", HEALTH_FAIL, "bundle %s: %s: %s", b[i].name,
                       b[i].path, errno ? strerror(errno) : "not a folder");
            return;
        }
    }
    char *text = read_dp_metrics(c);
    double now = (double)timeutil_real_ms() / 1000.0;
    for (size_t i = 0; text && i < c->bundles.n; i++) {
        double last = last_refresh(text, b[i].name);
        double iv = (double)(b[i].url ? b[i].refresh_ms : c->dag_processor.refresh_ms) / 1000.0;
        if (last == 0) {
            health_set(&s->health, "bundles", HEALTH_WARN,
                       "bundle %s: not refreshed yet by the dag-processor", b[i].name);
            free(text);
            return;
        }
        if (last > 0 && now - last > 3 * iv + 5) {
            health_set(&s->health, "bundles", HEALTH_WARN,
                       "bundle %s: last refreshed %.0f s ago (interval %.0f s)", b[i].name,
                       now - last, iv);
            free(text);
            return;
        }
    }
    health_set(&s->health, "bundles", HEALTH_OK, "%zu bundle%s present%s", c->bundles.n,
               c->bundles.n == 1 ? "" : "s", text ? " and refreshed" : "");
    free(text);
}

static void check_disk(struct sentinel *s)
{
    enum health_status worst = HEALTH_OK;
    char msg[HEALTH_MSG_MAX] = "", one[256];
    size_t len = 0;
    for (size_t i = 0; i < s->ndirs; i++) {
        struct sent_dir *d = &s->dirs[i];
        struct statvfs v;
        d->ok = statvfs(d->path, &v) == 0;
        enum health_status st;
        if (!d->ok) {
            snprintf(one, sizeof(one), "%s", strerror(errno));
            st = HEALTH_WARN;
        } else {
            d->avail = (uint64_t)v.f_bavail * v.f_frsize;
            d->total = (uint64_t)v.f_blocks * v.f_frsize;
            st = health_grade_disk(d->avail, d->total, s->cfg->disk_warn_pct, s->cfg->disk_fail_pct,
                                   one, sizeof(one));
        }
        if (st > worst) {
            worst = st;
            len = 0;
        }
        if (st == worst && len < sizeof(msg)) {
            int n = snprintf(msg + len, sizeof(msg) - len, "%s%s %s: %s", len ? "; " : "", d->kind,
                             d->path, one);
            if (n > 0)
                len += (size_t)n;
        }
    }
    if (worst == HEALTH_OK)
        snprintf(msg, sizeof(msg), "%zu folder%s above %" PRId64 "%% free", s->ndirs,
                 s->ndirs == 1 ? "" : "s", s->cfg->disk_warn_pct);
    health_set(&s->health, "disk", worst, "%s", msg);
}

void checks_roles(struct sentinel *s)
{
    char msg[HEALTH_MSG_MAX];
    if (s->probes)
        return; /* probe.c grades the /healthz answers */
    if (!s->have_status) {
        health_set(&s->health, "roles", HEALTH_WARN, "%s",
                   s->status_err[0] ? s->status_err : "no status yet");
        return;
    }
    int g = supstatus_grade(&s->status, msg, sizeof(msg));
    health_set(&s->health, "roles", (enum health_status)g, "%s", msg);
}

void checks_run(struct sentinel *s)
{
    check_plane(s);
    check_token(s);
    check_tls(s);
    checks_roles(s);
    uint64_t iv = sentinel_interval_ms(s);
    uint64_t deadline = iv < CHECK_DEADLINE_MAX_MS ? iv : CHECK_DEADLINE_MAX_MS;
    check_secrets(s, deadline);
    check_xcom(s, deadline);
    check_bundles(s);
    check_disk(s);
}
