/*
 * remex-triggerer internals shared by its files:
 *
 *   main.c   role and API hooks, the trigger long poll, heartbeat, drain
 *   trig.c   the held triggers (id table, deadlines, timers), events, metrics
 *   watch.c  file and object_key triggers: inotify on the parent folder plus
 *            a bounded fallback poll (network file systems)
 *   poke.c   http and external_run triggers: non-blocking checks through
 *            the loop's http_multi and the plane session (lib/api)
 *   store.c  object_key triggers on a remote object store (s3://, az://,
 *            gs://): checks on a workq thread, results on the loop
 *
 * Everything runs on the role's one event loop; nothing blocks on the
 * network. Calls go down: trig.c calls watch.c and poke.c through the kind
 * functions below, and main.c only through trg->changed.
 */
#ifndef REMEX_TRIGGERER_H
#define REMEX_TRIGGERER_H

#include <jansson.h>
#include <stdint.h>

#include "remex/agentcfg.h"
#include "remex/trigspec.h"

struct role;
struct evloop;
struct api_client;
struct httploop;
struct secrets;
struct http_client;
struct fwatch;

enum trig_phase {
    TRIG_HELD = 0, /* armed, waiting */
    TRIG_FIRED,    /* event queued or sent; kept (and listed as held) until delivered */
    TRIG_GONE,     /* out of the table, a check still in flight: its callback frees it */
};

/* One held trigger. Owned by the table (trg.tab); freed by trig_forget. */
struct trig {
    struct trig *hnext;      /* id hash chain */
    struct trg *owner;       /* borrowed */
    struct trig *fired_next; /* TRIG_FIRED: next on trg.fired */
    size_t held_idx;         /* index of its id in trg.held_json */
    int64_t id, ti_id;
    enum trig_phase phase;
    struct trigspec spec;
    int64_t due_ms;      /* timer: wall time it fires */
    int64_t deadline_ms; /* wall time it times out (its own, or the default) */
    uint64_t timer;      /* evloop timer: fire/poke/deadline, 0 none */
    uint64_t poke_timer; /* polled kinds: next check */
    int inflight;        /* a check (http, external_run) is running */
    /* file / object_key */
    struct fwatch *fw;         /* folder watch it is listed on, or NULL */
    struct trig *fw_next;      /* next trigger of that watch */
    char *file_path;           /* resolved path or glob (owned) */
    struct http_client *hc;    /* http: client of its URL (owned) */
    char *http_path;           /* http: path and query of its URL (owned) */
    char *bearer;              /* http: token from its connection (owned, wiped) */
    unsigned store_queued : 1; /* object_key, remote store: a check queued or running */
    unsigned store_warned : 1; /* object_key, remote store: a failed check was logged */
};

#define TRG_LAT_BUCKETS 1000 /* lateness histogram: 100 us buckets up to 100 ms */

struct trg_metrics {
    uint64_t held_by_kind[TRIGSPEC__COUNT];
    uint64_t fired, timed_out, failed, events_sent;
    uint64_t lat[TRG_LAT_BUCKETS + 1]; /* timer lateness; the last bucket is >= 100 ms */
    uint64_t lat_n;
    uint64_t loop_lag_max_ms; /* since the last metrics write */
};

struct rolehttp;

struct trg {
    struct rolehttp *http; /* triggerer.listen: its probes and metrics, or NULL */
    struct role *r;
    const struct agentcfg_triggerer *cfg;
    struct evloop *loop;
    struct api_client *api;
    struct httploop *hl;
    struct secrets *secrets;
    char *store_dir;        /* the agent's file object store (object_key), or NULL */
    struct trgstore *store; /* the agent's remote object store (object_key), or NULL */
    /* the table */
    struct trig **tab;
    size_t tabn;        /* buckets (power of two) */
    size_t held;        /* triggers in the table (fired ones included) */
    size_t active;      /* TRIG_HELD ones */
    struct trig *gone;  /* TRIG_GONE ones (hnext chain), freed when their check completes */
    struct trig *fired; /* TRIG_FIRED ones (fired_next chain), purged once delivered */
    json_t *held_json;  /* ids of every trigger in the table (owned; swap-removed, O(1)) */
    /* events waiting to be sent in a batch (owned json array) */
    json_t *pending;
    uint64_t flush_timer;
    /* the poll */
    int poll_inflight;
    uint64_t poll_timer;
    unsigned poll_failures;
    int plane_hold; /* enum role_hold: the plane asked for drain/maintenance */
    /* inotify */
    int ino_fd;
    struct fwatch *watches;
    /* drain */
    uint64_t lag_timer, metrics_timer;
    uint64_t lag_expect_ms;
    struct trg_metrics m;
    void (*changed)(struct trg *t); /* something main.c may wait for changed */
};

/* ---- trig.c ---- */
remex_err trig_init(struct trg *t, struct remex_error *e);
void trig_free_all(struct trg *t);
/* Item number i of a poll reply (borrowed json): decoded
 * (trigspec_poll_item), parsed, armed, held. A malformed one is reported as
 * failed at once; one without a usable trigger_id is logged and ignored. */
void trig_add(struct trg *t, const json_t *item, size_t i);
struct trig *trig_find(struct trg *t, int64_t id);
/* Drops a trigger without an event (cancel_triggers, drain, delivered). */
void trig_forget(struct trg *t, struct trig *g);
/* Frees a trigger out of the table (a TRIG_GONE one once its check completed:
 * the caller clears g->inflight first). trig_free_all frees every trigger,
 * in flight or not: the caller freed the http_multi and stopped the loop first. */
void trig_release(struct trg *t, struct trig *g);
/* The trigger fired: payload owned (stolen). */
void trig_fire(struct trg *t, struct trig *g, json_t *payload);
/* The trigger cannot run (bad spec after expansion, unusable backend). */
void trig_fail(struct trg *t, struct trig *g, const char *why);
/* Ids of every trigger in the table, for heartbeats: borrowed, valid until
 * the table changes (serialise it before returning to the loop). */
json_t *trig_held_ids(struct trg *t);
/* Ids of the TRIG_HELD ones (owned array), handed back when draining. */
json_t *trig_active_ids(struct trg *t);
/* Fired triggers whose events were all delivered leave the table. */
void trig_purge_fired(struct trg *t);
/* Writes <state_dir>/metrics.prom (Prometheus text, atomically). */
void trig_write_metrics(struct trg *t);
/* The triggerer's metric families (Prometheus text) appended to b. */
void trig_metrics_text(struct trg *t, struct buf *b);
/* p-quantile (0..1) of the timer lateness, in ms; -1 without samples. */
double trig_lateness_quantile(const struct trg *t, double q);

/* ---- watch.c ---- */
remex_err watch_init(struct trg *t, struct remex_error *e);
void watch_shutdown(struct trg *t);
/* Arms a file or object_key trigger; -1 after trig_fail. */
int watch_arm(struct trg *t, struct trig *g);
void watch_disarm(struct trg *t, struct trig *g);

/* ---- store.c ---- */
struct trgstore;
/* Opens the remote object store url (agent.yaml settings of its backend) and
 * starts its thread. */
remex_err store_init(struct trg *t, const char *url, struct remex_error *e);
/* Joins the thread (a check in flight ends first, or is left to the exit
 * after triggerer.drain_grace), frees the store. */
void store_shutdown(struct trg *t);
/* Arms an object_key trigger on the remote store; -1 after trig_fail. */
int store_arm(struct trg *t, struct trig *g);

/* ---- poke.c ---- */
/* Arms an http or external_run trigger; -1 after trig_fail. */
int poke_arm(struct trg *t, struct trig *g);
void poke_disarm(struct trg *t, struct trig *g);
/* The poke interval of g in ms. */
uint64_t poke_interval(const struct trg *t, const struct trig *g);

#endif
