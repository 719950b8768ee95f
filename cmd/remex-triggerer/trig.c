/*
 * The held triggers: an id table, one evloop timer per trigger (its fire
 * time or its deadline, whichever comes first: the loop's timer heap makes
 * each O(log n)), events batched into POST /api/v1/triggers/events reports,
 * and the triggerer's metrics.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "remex/api.h"
#include "remex/buf.h"
#include "remex/evloop.h"
#include "remex/log.h"
#include "remex/timeutil.h"
#include "triggerer.h"

#define EVENTS_PER_REPORT 1000 /* the plane's cap per batch */

static int64_t real_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static size_t slot(const struct trg *t, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (t->tabn - 1);
}

remex_err trig_init(struct trg *t, struct remex_error *e)
{
    t->tabn = 1024;
    t->tab = calloc(t->tabn, sizeof(*t->tab));
    t->pending = json_array();
    t->held_json = json_array();
    if (!t->tab || !t->pending || !t->held_json)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    return REMEX_OK;
}

/* Doubles the table while it is fuller than one trigger per bucket. */
static void grow(struct trg *t)
{
    size_t n = t->tabn * 2;
    struct trig **nt = calloc(n, sizeof(*nt));
    if (!nt)
        return; /* longer chains, still correct */
    struct trig **old = t->tab;
    size_t on = t->tabn;
    t->tab = nt;
    t->tabn = n;
    for (size_t i = 0; i < on; i++)
        for (struct trig *g = old[i], *nx; g; g = nx) {
            nx = g->hnext;
            size_t s = slot(t, g->id);
            g->hnext = t->tab[s];
            t->tab[s] = g;
        }
    free(old);
}

struct trig *trig_find(struct trg *t, int64_t id)
{
    for (struct trig *g = t->tab[slot(t, id)]; g; g = g->hnext)
        if (g->id == id)
            return g;
    return NULL;
}

/* Swap-removes g's id from held_json (the last id takes its place). */
static void unlist(struct trg *t, struct trig *g)
{
    size_t last = json_array_size(t->held_json) - 1;
    if (g->held_idx != last) {
        json_t *lid = json_array_get(t->held_json, last);
        struct trig *m = trig_find(t, json_integer_value(lid));
        if (m)
            m->held_idx = g->held_idx;
        json_array_set(t->held_json, g->held_idx, lid);
    }
    json_array_remove(t->held_json, last);
}

static void unlink_trig(struct trg *t, struct trig *g)
{
    for (struct trig **pp = &t->tab[slot(t, g->id)]; *pp; pp = &(*pp)->hnext)
        if (*pp == g) {
            *pp = g->hnext;
            t->held--;
            unlist(t, g);
            return;
        }
}

/* Cancels g's timers and its kind's watch or checks; g stays allocated. */
static void disarm(struct trg *t, struct trig *g)
{
    if (g->timer)
        evloop_timer_cancel(t->loop, g->timer);
    if (g->poke_timer)
        evloop_timer_cancel(t->loop, g->poke_timer);
    g->timer = g->poke_timer = 0;
    if (g->spec.kind == TRIGSPEC_FILE || g->spec.kind == TRIGSPEC_OBJECT_KEY)
        watch_disarm(t, g);
    else if (g->spec.kind == TRIGSPEC_HTTP)
        poke_disarm(t, g);
}

void trig_release(struct trg *t, struct trig *g)
{
    if (g->phase == TRIG_GONE)
        for (struct trig **pp = &t->gone; *pp; pp = &(*pp)->hnext)
            if (*pp == g) {
                *pp = g->hnext;
                break;
            }
    g->inflight = 0;
    poke_disarm(t, g);
    free(g->file_path);
    free(g->http_path);
    trigspec_free(&g->spec);
    free(g);
}

/* A held trigger leaves the active count (it fired, failed, timed out or went). */
static void deactivate(struct trg *t, struct trig *g)
{
    if (g->phase != TRIG_HELD)
        return;
    t->active--;
    t->m.held_by_kind[g->spec.kind]--;
}

void trig_forget(struct trg *t, struct trig *g)
{
    unlink_trig(t, g);
    disarm(t, g);
    deactivate(t, g);
    if (g->inflight) {
        g->phase = TRIG_GONE;
        g->hnext = t->gone;
        t->gone = g;
        return;
    }
    trig_release(t, g);
}

/* ---- events ---- */

static void flush(struct trg *t)
{
    while (json_array_size(t->pending) > 0) {
        size_t n = json_array_size(t->pending);
        json_t *batch = t->pending;
        if (n > EVENTS_PER_REPORT) {
            batch = json_array();
            for (size_t i = 0; i < EVENTS_PER_REPORT; i++)
                json_array_append(batch, json_array_get(t->pending, i));
            for (size_t i = 0; i < EVENTS_PER_REPORT; i++)
                json_array_remove(t->pending, 0);
            n = EVENTS_PER_REPORT;
        } else {
            t->pending = json_array();
        }
        if (!t->pending) {
            log_error("trigger events: out of memory; %zu events lost", n);
            json_decref(batch);
            t->pending = json_array();
            return;
        }
        t->m.events_sent += n;
        api_trigger_events(t->api, batch);
    }
}

static void on_flush(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct trg *t = arg;
    t->flush_timer = 0;
    flush(t);
    if (t->changed)
        t->changed(t);
}

/* Queues ev (owned) for the next batch; sent at the next loop pass. */
static void queue_event(struct trg *t, json_t *ev)
{
    if (!ev || json_array_append_new(t->pending, ev) != 0) {
        log_error("trigger event: out of memory");
        return;
    }
    if (json_array_size(t->pending) >= EVENTS_PER_REPORT)
        flush(t);
    else if (!t->flush_timer)
        t->flush_timer = evloop_timer_add(t->loop, 0, 0, on_flush, t);
    if (!t->flush_timer && json_array_size(t->pending) > 0)
        flush(t);
}

/* g leaves the armed state with event ev (owned). */
static void settle(struct trg *t, struct trig *g, json_t *ev)
{
    enum trigspec_kind k = g->spec.kind;
    disarm(t, g);
    deactivate(t, g);
    g->phase = TRIG_FIRED;
    g->fired_next = t->fired;
    t->fired = g;
    trigspec_free(&g->spec); /* a fired trigger keeps only its id until delivered */
    g->spec.kind = k;
    free(g->file_path);
    g->file_path = NULL;
    queue_event(t, ev);
}

void trig_fire(struct trg *t, struct trig *g, json_t *payload)
{
    if (g->phase != TRIG_HELD) {
        json_decref(payload);
        return;
    }
    t->m.fired++;
    log_debug("trigger %" PRId64 " (task instance %" PRId64 ") fired", g->id, g->ti_id);
    settle(t, g,
           json_pack("{sI so}", "trigger_id", (json_int_t)g->id, "payload",
                     payload ? payload : json_object()));
}

void trig_fail(struct trg *t, struct trig *g, const char *why)
{
    if (g->phase != TRIG_HELD)
        return;
    t->m.failed++;
    log_warn("trigger %" PRId64 " (task instance %" PRId64 "): %s", g->id, g->ti_id, why);
    settle(t, g, json_pack("{sI ss}", "trigger_id", (json_int_t)g->id, "error", why));
}

static void timeout(struct trg *t, struct trig *g)
{
    t->m.timed_out++;
    log_info("trigger %" PRId64 " (task instance %" PRId64 ") timed out", g->id, g->ti_id);
    settle(t, g, json_pack("{sI sb}", "trigger_id", (json_int_t)g->id, "timed_out", 1));
}

static void record_lateness(struct trg *t, int64_t late_us)
{
    size_t b = late_us <= 0 ? 0 : (size_t)(late_us / 100);
    t->m.lat[b < TRG_LAT_BUCKETS ? b : TRG_LAT_BUCKETS]++;
    t->m.lat_n++;
}

double trig_lateness_quantile(const struct trg *t, double q)
{
    if (t->m.lat_n == 0)
        return -1;
    uint64_t want = (uint64_t)(q * (double)t->m.lat_n), seen = 0;
    for (size_t i = 0; i <= TRG_LAT_BUCKETS; i++) {
        seen += t->m.lat[i];
        if (seen > want || (seen == t->m.lat_n && seen > 0))
            return (double)(i + 1) * 0.1;
    }
    return 100.0;
}

/* ---- the main timer: fire time (timer kind) or deadline ---- */

static void arm_main(struct trg *t, struct trig *g);

static void on_main(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct trig *g = arg;
    struct trg *t = g->owner;
    g->timer = 0;
    if (g->phase != TRIG_HELD)
        return;
    int64_t now_us = real_us(), now = now_us / 1000;
    int timer = g->spec.kind == TRIGSPEC_TIMER;
    if (timer && g->due_ms <= g->deadline_ms && now_us >= g->due_ms * 1000) {
        record_lateness(t, now_us - g->due_ms * 1000);
        char due[40], at[40];
        timeutil_rfc3339_format(g->due_ms, 1, due, sizeof(due));
        timeutil_rfc3339_format(now, 1, at, sizeof(at));
        trig_fire(t, g, json_pack("{ss ss}", "due_at", due, "fired_at", at));
    } else if (now >= g->deadline_ms) {
        timeout(t, g);
    } else {
        arm_main(t, g); /* early by clock rounding, or beyond the longest timer */
    }
}

static void arm_main(struct trg *t, struct trig *g)
{
    int64_t at =
        g->spec.kind == TRIGSPEC_TIMER && g->due_ms < g->deadline_ms ? g->due_ms : g->deadline_ms;
    evloop_update_time(t->loop);
    int64_t now_us = real_us();
    int64_t d = at * 1000 - now_us;
    uint64_t delay = d <= 0 ? 0 : (uint64_t)((d + 999) / 1000);
    if (delay > EVLOOP_TIMER_MAX_MS)
        delay = EVLOOP_TIMER_MAX_MS;
    g->timer = evloop_timer_add(t->loop, delay, 0, on_main, g);
    if (!g->timer)
        log_error("trigger %" PRId64 ": cannot arm its timer (out of memory)", g->id);
}

/* ---- adding a trigger from the plane ---- */

static struct trig *insert(struct trg *t, int64_t id, int64_t ti)
{
    struct trig *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->owner = t;
    g->id = id;
    g->ti_id = ti;
    g->held_idx = json_array_size(t->held_json);
    if (json_array_append_new(t->held_json, json_integer(id)) != 0) {
        free(g);
        return NULL;
    }
    if (t->held >= t->tabn)
        grow(t);
    size_t s = slot(t, id);
    g->hnext = t->tab[s];
    t->tab[s] = g;
    t->held++;
    t->active++;
    return g;
}

/* Arms g by kind once its spec is parsed. */
static void arm(struct trg *t, struct trig *g)
{
    int rc = 0;
    if (g->spec.kind == TRIGSPEC_OBJECT_KEY && t->store)
        rc = store_arm(t, g);
    else if (g->spec.kind == TRIGSPEC_FILE || g->spec.kind == TRIGSPEC_OBJECT_KEY)
        rc = watch_arm(t, g);
    else if (g->spec.kind == TRIGSPEC_HTTP || g->spec.kind == TRIGSPEC_EXTERNAL_RUN)
        rc = poke_arm(t, g);
    if (rc == 0 && g->phase == TRIG_HELD)
        arm_main(t, g);
}

void trig_add(struct trg *t, const json_t *item, size_t i)
{
    struct trigspec_item it;
    struct remex_error e = {0}, pe = {0};
    remex_err prc = trigspec_poll_item(item, i, &it, &pe);
    if (prc != REMEX_OK && it.trigger_id == 0) {
        log_warn("trigger poll: %s: item ignored", pe.msg);
        return;
    }
    if (trig_find(t, it.trigger_id))
        return; /* handed out again while still held: one trigger, one event */
    struct trig *g = insert(t, it.trigger_id, it.ti_id);
    if (!g) {
        log_error("trigger %" PRId64 ": out of memory; not held", it.trigger_id);
        return;
    }
    remex_err rc = prc == REMEX_OK ? trigspec_parse(it.spec, &it.vars, &g->spec, &e) : prc;
    int64_t now = timeutil_real_ms();
    int64_t created = it.created_ms != INT64_MIN ? it.created_ms : now;
    g->deadline_ms = it.timeout_at_ms != INT64_MIN ? it.timeout_at_ms
                                                   : created + (int64_t)t->cfg->default_timeout_ms;
    t->m.held_by_kind[rc == REMEX_OK ? g->spec.kind : 0]++;
    if (rc != REMEX_OK) {
        g->spec.kind = TRIGSPEC_TIMER; /* counted there until it is reported */
        trig_fail(t, g, prc != REMEX_OK ? pe.msg : e.msg);
        return;
    }
    if (g->spec.kind == TRIGSPEC_EXTERNAL_RUN && !g->spec.run_id &&
        !(g->spec.run_id = strdup(it.vars.run_id))) {
        trig_fail(t, g, "out of memory");
        return;
    }
    if (g->spec.kind == TRIGSPEC_TIMER)
        g->due_ms = g->spec.at_ms != INT64_MIN ? g->spec.at_ms : created + g->spec.delta_ms;
    arm(t, g);
}

/* ---- lists ---- */

json_t *trig_held_ids(struct trg *t)
{
    return t->held_json;
}

json_t *trig_active_ids(struct trg *t)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < t->tabn; i++)
        for (struct trig *g = t->tab[i]; g; g = g->hnext)
            if (g->phase == TRIG_HELD)
                json_array_append_new(a, json_integer(g->id));
    return a;
}

void trig_purge_fired(struct trg *t)
{
    if (!t->fired || json_array_size(t->pending) > 0 || api_reports_pending(t->api) > 0)
        return;
    while (t->fired) {
        struct trig *g = t->fired;
        t->fired = g->fired_next;
        trig_forget(t, g);
    }
}

void trig_free_all(struct trg *t)
{
    for (size_t i = 0; t->tab && i < t->tabn; i++)
        for (struct trig *g = t->tab[i], *nx; g; g = nx) {
            nx = g->hnext;
            disarm(t, g);
            trig_release(t, g);
        }
    while (t->gone) {
        struct trig *g = t->gone;
        t->gone = g->hnext;
        trig_release(t, g);
    }
    free(t->tab);
    t->tab = NULL;
    t->fired = NULL;
    json_decref(t->pending);
    t->pending = NULL;
    json_decref(t->held_json);
    t->held_json = NULL;
}

/* ---- metrics ---- */

void trig_metrics_text(struct trg *t, struct buf *b)
{
    buf_puts(b, "# HELP remex_triggerer_triggers_held Triggers armed, by kind.\n"
                "# TYPE remex_triggerer_triggers_held gauge\n");
    for (int k = 0; k < TRIGSPEC__COUNT; k++)
        buf_printf(b, "remex_triggerer_triggers_held{kind=\"%s\"} %" PRIu64 "\n",
                   trigspec_kind_name((enum trigspec_kind)k), t->m.held_by_kind[k]);
    buf_printf(b,
               "# HELP remex_triggerer_events_total Trigger events, by outcome.\n"
               "# TYPE remex_triggerer_events_total counter\n"
               "remex_triggerer_events_total{outcome=\"fired\"} %" PRIu64 "\n"
               "remex_triggerer_events_total{outcome=\"timed_out\"} %" PRIu64 "\n"
               "remex_triggerer_events_total{outcome=\"failed\"} %" PRIu64 "\n",
               t->m.fired, t->m.timed_out, t->m.failed);
    static const int le_ms[] = {1, 2, 5, 10, 20, 50, 100};
    buf_puts(b, "# HELP remex_triggerer_timer_lateness_seconds Timer fire time minus due time.\n"
                "# TYPE remex_triggerer_timer_lateness_seconds histogram\n");
    uint64_t cum = 0;
    size_t i = 0;
    for (size_t k = 0; k < sizeof(le_ms) / sizeof(le_ms[0]); k++) {
        for (; i < (size_t)le_ms[k] * 10 && i < TRG_LAT_BUCKETS; i++)
            cum += t->m.lat[i];
        buf_printf(b, "remex_triggerer_timer_lateness_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                   le_ms[k] / 1000.0, cum);
    }
    buf_printf(b,
               "remex_triggerer_timer_lateness_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
               "remex_triggerer_timer_lateness_seconds_count %" PRIu64 "\n"
               "# HELP remex_triggerer_timer_lateness_quantile_seconds Timer lateness at the "
               "quantile q (0.1 ms buckets).\n"
               "# TYPE remex_triggerer_timer_lateness_quantile_seconds gauge\n"
               "remex_triggerer_timer_lateness_quantile_seconds{q=\"0.5\"} %g\n"
               "remex_triggerer_timer_lateness_quantile_seconds{q=\"0.99\"} %g\n"
               "# HELP remex_triggerer_loop_lag_max_seconds Longest event-loop lag since the last "
               "write.\n"
               "# TYPE remex_triggerer_loop_lag_max_seconds gauge\n"
               "remex_triggerer_loop_lag_max_seconds %g\n",
               t->m.lat_n, t->m.lat_n, trig_lateness_quantile(t, 0.5) / 1000.0,
               trig_lateness_quantile(t, 0.99) / 1000.0, (double)t->m.loop_lag_max_ms / 1000.0);
}

void trig_write_metrics(struct trg *t)
{
    char path[4200], tmp[4220];
    struct buf b = BUF_INIT(64 * 1024);
    snprintf(path, sizeof(path), "%s/metrics.prom", t->cfg->state_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    trig_metrics_text(t, &b);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int ok = fd >= 0 && write(fd, b.data, b.len) == (ssize_t)b.len;
    if (fd >= 0)
        close(fd);
    if (!ok || rename(tmp, path) != 0)
        log_debug("metrics: cannot write %s: %s", path, strerror(errno));
    buf_free(&b);
    t->m.loop_lag_max_ms = 0;
}
