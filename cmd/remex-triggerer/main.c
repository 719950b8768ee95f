/*
 * remex-triggerer: holds the triggers of deferred task instances (timers,
 * files, HTTP endpoints, object keys, other DAG runs), thousands at once in
 * one event loop, and reports their events to the plane. See docs/triggerer.md.
 *
 *   remex-triggerer -c agent.yaml [--check] [--log-format text|json]
 *                   [--log-level error|warn|info|debug]
 *
 * The role runtime (remex/role.h) does start-up, signals and the supervisor
 * channel; this file is the triggerer's part: the API hooks, the trigger long
 * poll (POST /api/v1/triggers/poll within free capacity), the held list in
 * heartbeats, drain. Exit codes (remex/exit.h): 0 drained, 1 runtime failure,
 * 2 usage, 100 bad configuration or agent token refused.
 *
 * Signals: SIGTERM/SIGINT drain (held triggers go back to the plane at once,
 * fired events are delivered or journaled, then exit; a second one exits at
 * once), SIGHUP re-reads the agent token file.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/api.h"
#include "remex/evloop.h"
#include "remex/exit.h"
#include "remex/fsutil.h"
#include "remex/httploop.h"
#include "remex/log.h"
#include "remex/role.h"
#include "remex/rolehttp.h"
#include "remex/secrets.h"
#include "remex/timeutil.h"
#include "remex/version.h"
#include "triggerer.h"

#define LAG_TICK_MS    100
#define METRICS_MS     10000
#define POLL_BATCH_MAX 1000 /* the plane's cap per poll */

static struct trg T;

static int draining(const struct trg *t)
{
    return t->r->state >= ROLE_DRAINING;
}

/* Ends a drain once every fired event is delivered (or journaled). */
static void check_done(struct trg *t)
{
    if (!draining(t) || t->r->state == ROLE_FINISHED || t->poll_inflight)
        return;
    size_t spooled = api_reports_spooled(t->api);
    if (json_array_size(t->pending) > 0 || api_reports_pending(t->api) > spooled ||
        (spooled && api_reachable(t->api)))
        return;
    log_info("drained%s; exiting", spooled ? " (undelivered events stay in the journal)" : "");
    role_finish(t->r, REMEX_EXIT_OK);
}

/* ---- the trigger long poll ---- */

static void maybe_poll(struct trg *t);
static void release_ids(struct trg *t, json_t *ids);

static void poll_again(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct trg *t = arg;
    t->poll_timer = 0;
    maybe_poll(t);
}

static void poll_done(void *arg, const struct api_result *res)
{
    struct trg *t = arg;
    t->poll_inflight = 0;
    if (res->status == 401 || res->status == 403)
        return; /* the session is being replaced: on_registered polls again */
    json_t *arr = NULL;
    struct remex_error de = {0};
    remex_err drc = res->rc == REMEX_OK ? trigspec_poll_reply(res->reply, &arr, &de) : res->rc;
    if (drc != REMEX_OK) {
        if (t->poll_failures++ == 0)
            log_warn("trigger poll: %s", res->rc == REMEX_OK ? de.msg : res->msg);
        if (t->r->state != ROLE_FINISHED)
            t->poll_timer =
                evloop_timer_add(t->loop, api_backoff_ms(t->poll_failures), 0, poll_again, t);
        check_done(t);
        return;
    }
    t->poll_failures = 0;
    size_t i, n = json_array_size(arr);
    json_t *x;
    if (draining(t)) { /* a poll parked before the drain: give these back too */
        json_t *ids = json_array();
        json_array_foreach(arr, i, x)
        {
            json_t *id = json_object_get(x, "trigger_id");
            if (json_is_integer(id) && json_integer_value(id) > 0)
                json_array_append(ids, id);
        }
        release_ids(t, ids);
        check_done(t);
        return;
    }
    json_array_foreach(arr, i, x)
    {
        if (t->active >= (size_t)t->cfg->capacity) {
            log_warn("trigger poll: %zu triggers over capacity not taken", n - i);
            break;
        }
        trig_add(t, x, i);
    }
    if (n > 0) {
        log_debug("trigger poll: %zu new, %zu held", n, t->active);
        role_idle_trim(t->r); /* the reply's parse is the peak: give it back once idle */
    }
    maybe_poll(t);
}

static void maybe_poll(struct trg *t)
{
    enum api_state st = api_state(t->api);
    if (t->poll_inflight || t->poll_timer || draining(t) || t->plane_hold ||
        (st != API_REGISTERED && st != API_REFRESHING && st != API_LOST))
        return;
    int64_t room = t->cfg->capacity - (int64_t)t->active;
    if (room <= 0)
        return;
    if (room > POLL_BATCH_MAX)
        room = POLL_BATCH_MAX;
    double wait = st != API_LOST ? (double)t->cfg->poll_wait_ms / 1000.0 : 0;
    struct remex_error e;
    if (api_trigger_poll(t->api, room, wait, poll_done, t, &e) == REMEX_OK)
        t->poll_inflight = 1;
    if (!t->poll_inflight)
        t->poll_timer =
            evloop_timer_add(t->loop, api_backoff_ms(t->poll_failures++), 0, poll_again, t);
}

static void on_changed(struct trg *t)
{
    trig_purge_fired(t);
    maybe_poll(t);
    check_done(t);
}

/* ---- API hooks ---- */

static void hook_register_body(void *ud, json_t *body)
{
    struct trg *t = ud;
    json_object_set_new(body, "queues", json_array()); /* takes no work */
    json_object_set_new(body, "slots", json_integer(0));
    json_object_set_new(body, "features",
                        json_pack("{s:I}", "trigger_capacity", (json_int_t)t->cfg->capacity));
}

static void hook_registered(void *ud)
{
    struct trg *t = ud;
    log_info("registered as agent %s (heartbeat every %" PRId64 " ms, capacity %" PRId64 ")",
             api_agent_id(t->api), api_heartbeat_ms(t->api), t->cfg->capacity);
    role_ready(t->r);
    maybe_poll(t);
}

static void hook_heartbeat_body(void *ud, json_t *body)
{
    struct trg *t = ud;
    trig_purge_fired(t);
    json_object_set_new(body, "state", json_string(role_beat_state(t->r, t->plane_hold)));
    json_object_set_new(body, "free_slots", json_integer(0));
    json_object_set(body, "triggers", trig_held_ids(t)); /* serialised before the loop goes on */
}

static void hook_heartbeat_reply(void *ud, json_t *r)
{
    struct trg *t = ud;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(r, "cancel_triggers"), i, x)
    {
        struct trig *g = json_is_integer(x) ? trig_find(t, json_integer_value(x)) : NULL;
        if (g && g->phase == TRIG_HELD) {
            log_info("trigger %" PRId64 " is no longer this triggerer's: dropped", g->id);
            trig_forget(t, g);
        }
    }
    const char *ds = json_string_value(json_object_get(r, "desired_state"));
    int hold = role_plane_hold(ds, t->plane_hold);
    if (hold != t->plane_hold)
        log_info("the plane asked this triggerer to %s", ds);
    t->plane_hold = hold;
    maybe_poll(t);
}

static void hook_fatal(void *ud, int code)
{
    struct trg *t = ud;
    role_finish(t->r, code);
}

static void hook_settled(void *ud)
{
    on_changed(ud);
}

/* ---- timers of the role ---- */

static void on_lag_tick(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct trg *t = arg;
    uint64_t now = timeutil_mono_ms();
    if (t->lag_expect_ms && now > t->lag_expect_ms && now - t->lag_expect_ms > t->m.loop_lag_max_ms)
        t->m.loop_lag_max_ms = now - t->lag_expect_ms;
    t->lag_expect_ms = now + LAG_TICK_MS;
}

static void on_metrics(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    trig_write_metrics(arg);
}

/* ---- role hooks ---- */

static void role_grace_over_hook(struct role *r)
{
    log_warn("drain grace period over: exiting (undelivered events stay in the journal)");
    role_finish(r, REMEX_EXIT_OK);
}

/* Hands ids (owned array) back to the plane in a capacity-0 poll that
 * releases them, so that another triggerer takes them at once. */
static void release_ids(struct trg *t, json_t *ids)
{
    size_t n = json_array_size(ids);
    if (n == 0) {
        json_decref(ids);
        return;
    }
    log_info("handing %zu triggers back to the plane", n);
    api_trigger_release(t->api, ids);
}

/* Drain: every armed trigger goes back to the plane. */
static void release_all(struct trg *t)
{
    json_t *ids = trig_active_ids(t);
    for (size_t i = 0; i < json_array_size(ids); i++) {
        struct trig *g = trig_find(t, json_integer_value(json_array_get(ids, i)));
        if (g)
            trig_forget(t, g);
    }
    release_ids(t, ids);
}

static void role_drain_hook(struct role *r, const char *why)
{
    struct trg *t = r->ud;
    log_info("%s: draining (%zu triggers go back to the plane)", why, t->active);
    if (t->poll_timer)
        evloop_timer_cancel(t->loop, t->poll_timer);
    t->poll_timer = 0;
    release_all(t);
    role_drain_grace(r, t->cfg->drain_grace_ms);
    check_done(t);
}

static void role_stop_now_hook(struct role *r)
{
    log_warn("second signal: exiting now (undelivered events stay in the journal)");
    role_finish(r, REMEX_EXIT_OK);
}

static void role_log_config(const struct agentcfg *c, const char **level, const char **format)
{
    *level = c->triggerer.log_level;
    *format = c->triggerer.log_format;
}

/* The folder of a file:// object store (owned), or NULL for another kind. */
static char *store_dir(const char *url)
{
    const char *p = url && strncmp(url, "file://", 7) == 0 ? url + 7 : url;
    if (!p || p[0] != '/')
        return NULL;
    char *d = strdup(p);
    size_t n = d ? strlen(d) : 0;
    while (n > 1 && d[n - 1] == '/')
        d[--n] = '\0';
    return d;
}

static void trig_metrics_fn(void *ud, struct buf *out)
{
    trig_metrics_text(ud, out);
}

static int setup(struct trg *t)
{
    struct remex_error e = {0};
    const struct agentcfg *ac = &t->r->cfg;
    if (fsutil_mkdir_p(t->cfg->state_dir, 0700) != 0) {
        log_error("cannot create state_dir %s: %s", t->cfg->state_dir, strerror(errno));
        return REMEX_EXIT_CONFIG;
    }
    struct secrets_config sc = {.file = ac->secrets.file};
    if (secrets_open(&sc, &t->secrets, &e) != REMEX_OK) {
        log_error("secrets: %s", e.msg);
        return REMEX_EXIT_CONFIG;
    }
    t->store_dir = store_dir(ac->xcom.store);
    if (!t->store_dir && ac->xcom.store && store_init(t, ac->xcom.store, &e) != REMEX_OK) {
        log_error("xcom.store %s: %s", ac->xcom.store, e.msg);
        return REMEX_EXIT_CONFIG;
    }
    if (trig_init(t, &e) != REMEX_OK || !(t->hl = httploop_new(t->loop, &e)) ||
        watch_init(t, &e) != REMEX_OK) {
        log_error("%s", e.msg);
        return REMEX_EXIT_FAIL;
    }
    struct api_hooks h = {.ud = t,
                          .register_body = hook_register_body,
                          .on_registered = hook_registered,
                          .heartbeat_body = hook_heartbeat_body,
                          .on_heartbeat_reply = hook_heartbeat_reply,
                          .on_fatal = hook_fatal,
                          .on_settled = hook_settled};
    if (role_api(t->r, t->cfg->name, t->cfg->state_dir, t->cfg->poll_wait_ms, &h, &e) != REMEX_OK) {
        log_error("%s", e.msg);
        return REMEX_EXIT_FAIL;
    }
    t->api = t->r->api;
    if (t->cfg->listen &&
        !(t->http = rolehttp_role(t->r, t->cfg->listen, trig_metrics_fn, t, &e))) {
        log_error("triggerer.listen %s: %s", t->cfg->listen, e.msg);
        return REMEX_EXIT_CONFIG;
    }
    t->lag_timer = evloop_timer_add(t->loop, LAG_TICK_MS, LAG_TICK_MS, on_lag_tick, t);
    t->metrics_timer = evloop_timer_add(t->loop, METRICS_MS, METRICS_MS, on_metrics, t);
    return -1;
}

static int role_start_hook(struct role *r)
{
    struct trg *t = r->ud;
    t->r = r;
    t->cfg = &r->cfg.triggerer;
    t->loop = r->loop;
    t->ino_fd = -1;
    t->changed = on_changed;
    int code = setup(t);
    if (code >= 0)
        return code;
    log_info("remex-triggerer %s starting: plane %s, capacity %" PRId64, REMEX_VERSION,
             r->cfg.plane.url, t->cfg->capacity);
    api_start(t->api);
    return -1;
}

static void role_stop_hook(struct role *r)
{
    struct trg *t = r->ud;
    if (!t->cfg)
        return;
    uint64_t *timers[] = {&t->poll_timer, &t->lag_timer, &t->metrics_timer, &t->flush_timer};
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
        if (*timers[i])
            evloop_timer_cancel(t->loop, *timers[i]);
    if (t->pending && json_array_size(t->pending) > 0)
        log_warn("%zu trigger events not sent; the plane hands their triggers out again",
                 json_array_size(t->pending));
    rolehttp_free(t->http);
    t->http = NULL;
    if (t->tab)
        trig_write_metrics(t);
    httploop_free(t->hl); /* aborts checks in flight without their callbacks */
    t->hl = NULL;
    store_shutdown(t); /* before the triggers: its results name them by id */
    trig_free_all(t);
    watch_shutdown(t);
    secrets_close(t->secrets);
    free(t->store_dir);
}

static const struct role_ops triggerer_ops = {
    .name = "triggerer",
    .log_config = role_log_config,
    .start = role_start_hook,
    .drain = role_drain_hook,
    .stop_now = role_stop_now_hook,
    .grace_over = role_grace_over_hook,
    .stop = role_stop_hook,
};

int main(int argc, char **argv)
{
    return role_main(&triggerer_ops, &T, argc, argv);
}
