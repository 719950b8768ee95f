/*
 * remex-sentinel: watches the agent's roles and integrations, serves /health
 * and Prometheus /metrics, and reports aggregate health to the plane. See
 * docs/sentinel.md.
 *
 *   remex-sentinel -c agent.yaml [--check] [--log-format text|json]
 *                  [--log-level error|warn|info|debug]
 *
 * The role runtime (remex/role.h) does start-up, signals and the supervisor
 * channel. The sentinel registers as role "sentinel" (no queues, 0 slots),
 * runs its checks at sentinel.interval (default: the plane's heartbeat
 * interval) and posts one report per round. Exit codes (remex/exit.h): 0
 * stopped, 1 runtime failure, 2 usage, 100 bad configuration or agent token
 * refused. SIGTERM/SIGINT stop it at once (it holds nothing to drain); SIGHUP
 * re-reads the agent token file.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "remex/api.h"
#include "remex/evloop.h"
#include "remex/exit.h"
#include "remex/log.h"
#include "remex/role.h"
#include "remex/rolehttp.h"
#include "remex/timeutil.h"
#include "remex/version.h"
#include "sentinel.h"

#define FIRST_INTERVAL_MS 5000 /* until the plane gives its heartbeat interval */

static struct sentinel S;

uint64_t sentinel_interval_ms(const struct sentinel *s)
{
    if (s->cfg->interval_ms)
        return s->cfg->interval_ms;
    int64_t hb = s->api ? api_heartbeat_ms(s->api) : 0;
    return hb > 0 ? (uint64_t)hb : FIRST_INTERVAL_MS;
}

/* ---- the health report ---- */

static void send_report(struct sentinel *s);

static void report_done(void *arg, const struct api_result *res)
{
    struct sentinel *s = arg;
    s->report_inflight = 0;
    evloop_update_time(s->loop);
    s->last_status = res->status;
    if (res->status > 0)
        s->rtt_s = (double)(evloop_now_ms(s->loop) - s->report_started_ms) / 1000.0;
    if (res->rc == REMEX_OK) {
        s->reports_ok++;
        s->last_err[0] = '\0';
    } else {
        s->reports_failed++;
        if (strcmp(s->last_err, res->msg) != 0)
            log_warn("health report: %s", res->msg);
        snprintf(s->last_err, sizeof(s->last_err), "%s", res->msg);
    }
    if (s->report_again && s->r->state != ROLE_FINISHED)
        send_report(s); /* a grade changed since this one left */
}

static void send_report(struct sentinel *s)
{
    enum api_state st = api_state(s->api);
    if (s->report_inflight)
        s->report_again = 1;
    if (s->report_inflight || !api_agent_id(s->api) ||
        (st != API_REGISTERED && st != API_REFRESHING && st != API_LOST))
        return;
    s->report_again = 0;
    json_t *body = health_report_body(&s->health); /* owned */
    struct remex_error e;
    evloop_update_time(s->loop);
    s->report_started_ms = evloop_now_ms(s->loop);
    if (body && api_agent_health(s->api, body, report_done, s, &e) == REMEX_OK)
        s->report_inflight = 1;
    else if (body)
        log_debug("health report not sent: %s", e.msg);
    json_decref(body);
}

void sentinel_report(struct sentinel *s)
{
    send_report(s);
}

/* ---- queue depth of the workers' queues ---- */

static void depth_done(void *arg, const struct api_result *res)
{
    struct sentinel *s = arg;
    s->depth_inflight = 0;
    json_t *q = json_object_get(res->reply, "queues");
    if (res->rc != REMEX_OK || !json_is_array(q)) {
        log_debug("queue depth: %s", res->msg);
        return;
    }
    json_decref(s->depth);
    s->depth = json_incref(q);
}

/* Asks the plane how deep the queues of the supervisor's workers are (nothing without them). */
static void query_depth(struct sentinel *s)
{
    const char *names[64]; /* borrowed from s->status, distinct */
    size_t n = 0;
    for (size_t i = 0; i < s->status.nroles && s->have_status; i++) {
        const struct supstatus_role *r = &s->status.roles[i];
        for (size_t k = 0; k < r->nqueues && n < 64; k++) {
            size_t j = 0;
            while (j < n && strcmp(names[j], r->queues[k]) != 0)
                j++;
            if (j == n)
                names[n++] = r->queues[k];
        }
    }
    enum api_state st = api_state(s->api);
    if (!n || s->depth_inflight || (st != API_REGISTERED && st != API_REFRESHING))
        return;
    struct remex_error e;
    if (api_queues_depth(s->api, names, n, depth_done, s, &e) == REMEX_OK)
        s->depth_inflight = 1;
    else
        log_debug("queue depth not asked: %s", e.msg);
}

/* ---- the round ---- */

static void on_tick(struct evloop *loop, uint64_t id, void *arg);

static void arm_tick(struct sentinel *s, uint64_t ms)
{
    if (s->tick_timer)
        evloop_timer_cancel(s->loop, s->tick_timer);
    s->tick_timer = s->r->state == ROLE_FINISHED ? 0 : evloop_timer_add(s->loop, ms, 0, on_tick, s);
}

/*
 * One round: the asynchronous views (supervisor or probes, TLS) are asked
 * again and land in the next rounds' grades; the local checks are graded
 * now; the report carries the latest of everything.
 */
static void round_run(struct sentinel *s)
{
    s->ticks++;
    if (s->sup)
        supctl_query(s->sup);
    if (s->probes)
        probes_run(s->probes);
    if (s->tls)
        tlsprobe_run(s->tls);
    checks_run(s);
    send_report(s);
    query_depth(s);
}

static void on_tick(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct sentinel *s = arg;
    s->tick_timer = 0;
    round_run(s);
    arm_tick(s, sentinel_interval_ms(s));
}

/* ---- API hooks ---- */

static void hook_register_body(void *ud, json_t *body)
{
    (void)ud;
    /* The plane requires both; a sentinel takes no work. */
    json_object_set_new(body, "queues", json_array());
    json_object_set_new(body, "slots", json_integer(0));
    json_object_set_new(body, "features", json_pack("{s:b}", "health", 1));
}

static void hook_registered(void *ud)
{
    struct sentinel *s = ud;
    log_info("registered as agent %s (heartbeat every %" PRId64 " ms; reports every %" PRIu64
             " ms)",
             api_agent_id(s->api), api_heartbeat_ms(s->api), sentinel_interval_ms(s));
    role_ready(s->r);
    checks_run(s);
    send_report(s); /* the first report does not wait a whole interval */
    arm_tick(s, sentinel_interval_ms(s));
}

static void hook_heartbeat_body(void *ud, json_t *body)
{
    struct sentinel *s = ud;
    json_object_set_new(body, "state",
                        json_string(s->r->state >= ROLE_DRAINING ? "draining" : "running"));
    json_object_set_new(body, "free_slots", json_integer(0));
}

static void hook_fatal(void *ud, int code)
{
    struct sentinel *s = ud;
    checks_run(s); /* /health says why until the process is gone */
    role_finish(s->r, code);
}

/* ---- role hooks ---- */

static void role_drain_hook(struct role *r, const char *why)
{
    log_info("%s: stopping", why);
    role_finish(r, REMEX_EXIT_OK);
}

static void role_log_config(const struct agentcfg *c, const char **level, const char **format)
{
    *level = c->sentinel.log_level;
    *format = c->sentinel.log_format;
}

/* What the table cannot say alone. */
static int role_check_hook(const struct agentcfg *c, const char *path, struct buf *out)
{
    const struct agentcfg_sentinel *sc = &c->sentinel;
    struct sockaddr_storage sa;
    socklen_t len;
    struct remex_error e;
    int rc = 0;
    if (!path)
        path = "(defaults)";
    if (sc->disk_fail_pct > sc->disk_warn_pct) {
        buf_printf(out, "%s: sentinel.disk_fail_free: above sentinel.disk_warn_free\n", path);
        rc = REMEX_EXIT_CONFIG;
    }
    if (rolehttp_parse_listen(sc->listen, &sa, &len, &e) != REMEX_OK) {
        buf_printf(out, "%s: sentinel.%s\n", path, e.msg);
        rc = REMEX_EXIT_CONFIG;
    }
    if (strlen(sc->agent_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        buf_printf(out, "%s: sentinel.agent_socket: path too long for a Unix socket\n", path);
        rc = REMEX_EXIT_CONFIG;
    }
    return rc;
}

static int setup(struct sentinel *s)
{
    struct remex_error e;
    struct buf why = BUF_INIT(4096);
    if (role_check_hook(&s->r->cfg, s->r->config_path, &why) != 0) {
        log_error("%s", buf_cstr(&why));
        buf_free(&why);
        return REMEX_EXIT_CONFIG;
    }
    buf_free(&why);
    if (s->cfg->token_expires_at &&
        timeutil_rfc3339_parse(s->cfg->token_expires_at, &s->token_expires_ms, &e) != REMEX_OK)
        s->token_expires_ms = 0;
    if (checks_init(s, &e) != REMEX_OK) {
        log_error("%s", e.msg);
        return REMEX_EXIT_FAIL;
    }
    if (s->cfg->roles.n) {
        if (!(s->probes = probes_new(s, &e))) {
            log_error("sentinel.roles: %s", e.msg);
            return REMEX_EXIT_CONFIG;
        }
    } else if (!(s->sup = supctl_new(s, s->cfg->agent_socket))) {
        log_error("sentinel.agent_socket: out of memory");
        return REMEX_EXIT_FAIL;
    }
    if (strncmp(s->r->cfg.plane.url, "https://", 8) == 0 &&
        !(s->tls = tlsprobe_new(s, s->r->cfg.plane.url, &e)))
        log_warn("plane TLS certificate: %s: not watched", e.msg);
    s->http = rolehttp_new(s->loop, s->cfg->listen, expo_handler, s, &e);
    if (!s->http) {
        log_error("sentinel.listen: %s", e.msg);
        return REMEX_EXIT_FAIL;
    }
    struct api_hooks h = {.ud = s,
                          .register_body = hook_register_body,
                          .on_registered = hook_registered,
                          .heartbeat_body = hook_heartbeat_body,
                          .on_fatal = hook_fatal};
    if (role_api(s->r, s->cfg->name, NULL, 0, &h, &e) != REMEX_OK) {
        log_error("%s", e.msg);
        return REMEX_EXIT_FAIL;
    }
    s->api = s->r->api;
    return -1;
}

static int role_start_hook(struct role *r)
{
    struct sentinel *s = r->ud;
    s->r = r;
    s->cfg = &r->cfg.sentinel;
    s->loop = r->loop;
    s->rtt_s = -1;
    int code = setup(s);
    if (code >= 0)
        return code;
    log_info("remex-sentinel %s starting: plane %s, /health and /metrics on %s (port %u), roles "
             "from %s",
             REMEX_VERSION, r->cfg.plane.url, s->cfg->listen, (unsigned)rolehttp_port(s->http),
             s->probes ? "their /healthz" : s->cfg->agent_socket);
    api_start(s->api);
    round_run(s); /* /health answers from the first moment */
    arm_tick(s, sentinel_interval_ms(s));
    return -1;
}

static void role_stop_hook(struct role *r)
{
    struct sentinel *s = r->ud;
    if (s->tick_timer)
        evloop_timer_cancel(s->loop, s->tick_timer);
    rolehttp_free(s->http);
    supctl_free(s->sup);
    probes_free(s->probes);
    tlsprobe_free(s->tls);
    checks_free(s);
    json_decref(s->depth);
    s->depth = NULL;
}

static const struct role_ops sentinel_ops = {
    .name = "sentinel",
    .check = role_check_hook,
    .log_config = role_log_config,
    .start = role_start_hook,
    .drain = role_drain_hook,
    .stop = role_stop_hook,
};

int main(int argc, char **argv)
{
    return role_main(&sentinel_ops, &S, argc, argv);
}
