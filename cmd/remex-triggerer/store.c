/*
 * object_key triggers on a remote object store (xcom.store s3://, az://,
 * gs://). Remote store calls block (remex/objstore.h), so they never run on
 * the loop: one workq thread runs the checks in order (one small listing
 * each, objstore_find) and hands the results back on the loop. Each held
 * trigger has at most one check queued or running, and at most
 * STORE_QUEUE_MAX checks wait at once (a poke that finds the queue full is
 * skipped: the trigger is checked at its next poke). A check result names its
 * trigger by id: a trigger that went meanwhile (fired, dropped, drained)
 * simply is not found. The store is the thread's to use from store_init
 * until store_shutdown; at exit a check still hanging after
 * triggerer.drain_grace is not waited for: its thread and the store are left
 * to the process's exit.
 *
 * A file:// store is not checked here: watch.c watches its folders.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/agentcfg.h"
#include "remex/cfg.h"
#include "remex/evloop.h"
#include "remex/log.h"
#include "remex/objstore.h"
#include "remex/role.h"
#include "remex/timeutil.h"
#include "remex/workq.h"
#include "triggerer.h"

#define STORE_QUEUE_MAX 4096 /* checks waiting for the thread */

struct store_job {
    struct workq_job wj;
    struct trg *t;      /* borrowed: done runs on the loop while t lives */
    struct objstore *s; /* borrowed from trgstore: used on the thread */
    int64_t id;         /* the trigger's */
    int exact;          /* key (1) or prefix (0) */
    remex_err rc;
    char *key;    /* owned */
    char *result; /* owned: the key found (rc OK), else the error message; NULL out of memory */
};

struct trgstore {
    struct objstore *s; /* owned; closed at shutdown unless a detached check still uses it */
    struct workq *q;    /* owned */
    int stopping;       /* store_shutdown under way: finished checks are only freed */
};

static void job_free(struct store_job *j)
{
    free(j->key);
    free(j->result);
    free(j);
}

/* Thread: one check. */
static void job_run(struct workq_job *wj, void *tctx)
{
    (void)tctx;
    struct store_job *j = WORKQ_OF(wj, struct store_job, wj);
    struct remex_error e = {0};
    char found[OBJSTORE_KEY_MAX + 1];
    j->rc = objstore_find(j->s, j->key, j->exact, found, sizeof(found), &e);
    j->result = strdup(j->rc == REMEX_OK ? found : e.msg);
}

/* Loop: one finished check. */
static void job_done(struct workq_job *wj, enum workq_end how)
{
    struct store_job *j = WORKQ_OF(wj, struct store_job, wj);
    struct trg *t = j->t;
    struct trig *g = how == WORKQ_RAN && !t->store->stopping ? trig_find(t, j->id) : NULL;
    if (g && g->phase == TRIG_HELD && g->spec.kind == TRIGSPEC_OBJECT_KEY) {
        g->store_queued = 0;
        if (j->rc == REMEX_OK && j->result) {
            char uri[OBJSTORE_URI_MAX];
            objstore_uri(j->s, j->result, uri, sizeof(uri));
            trig_fire(t, g, json_pack("{ss ss}", "key", j->result, "uri", uri));
        } else if (j->rc != REMEX_ENOTFOUND && !g->store_warned) {
            g->store_warned = 1; /* once per trigger: it keeps being checked */
            log_warn("trigger %" PRId64 ": %s", g->id, j->result ? j->result : "out of memory");
        }
    }
    job_free(j);
}

/* Thread: a check that outlived store_shutdown (its queue was freed). */
static void job_orphan(struct workq_job *wj)
{
    job_free(WORKQ_OF(wj, struct store_job, wj));
}

remex_err store_init(struct trg *t, const char *url, struct remex_error *e)
{
    struct objstore_opts so;
    char *key = NULL;
    struct objstore *os = NULL;
    remex_err rc = agentcfg_objstore_opts(&t->r->cfg, url, &so, &key, e);
    if (rc == REMEX_OK)
        rc = objstore_open_opts(url, &so, &os, e);
    cfg_secret_free(key);
    if (rc != REMEX_OK)
        return rc;
    struct trgstore *s = calloc(1, sizeof(*s));
    const struct workq_opts o = {
        .name = "object store thread", .threads = 1, .cap = STORE_QUEUE_MAX, .orphan = job_orphan};
    if (!s || !(s->q = workq_new(t->loop, &o, e))) {
        free(s);
        objstore_close(os);
        return s ? e->code : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    s->s = os;
    t->store = s;
    return REMEX_OK;
}

void store_shutdown(struct trg *t)
{
    struct trgstore *s = t->store;
    if (!s)
        return;
    s->stopping = 1;
    if (workq_free(s->q, timeutil_mono_ms() + t->cfg->drain_grace_ms) > 0) {
        /* A check hangs on the store (its client retries for minutes): the
         * process is exiting, so the thread and its store are left to the
         * exit rather than holding it up. */
        log_warn("an object store check is still running; exiting without waiting for it");
    } else {
        objstore_close(s->s);
    }
    free(s);
    t->store = NULL;
}

/* Queues a check of g unless one is queued or running. */
static void queue_check(struct trg *t, struct trig *g)
{
    struct trgstore *s = t->store;
    if (g->store_queued || g->phase != TRIG_HELD)
        return;
    struct store_job *j = calloc(1, sizeof(*j));
    if (j)
        j->key = strdup(g->spec.key);
    if (!j || !j->key) {
        free(j);
        log_error("trigger %" PRId64 ": out of memory; checked at the next poke", g->id);
        return;
    }
    j->wj.run = job_run;
    j->wj.done = job_done;
    j->t = t;
    j->s = s->s;
    j->id = g->id;
    j->exact = !g->spec.prefix;
    struct remex_error e;
    if (workq_submit(s->q, &j->wj, &e) != REMEX_OK) {
        job_free(j); /* the queue is full (the store is slow) or stopping: the next poke */
        return;
    }
    g->store_queued = 1;
}

static void on_poke(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct trig *g = arg;
    queue_check(g->owner, g);
}

int store_arm(struct trg *t, struct trig *g)
{
    struct remex_error e = {0};
    char k[OBJSTORE_KEY_MAX + 1];
    size_t n = strlen(g->spec.key);
    snprintf(k, sizeof(k), "%s", g->spec.key);
    if (g->spec.prefix && n > 0 && n <= OBJSTORE_KEY_MAX && k[n - 1] == '/')
        k[n - 1] = '\0'; /* a prefix is checked as a key without its trailing '/' */
    if (n > OBJSTORE_KEY_MAX ||
        ((!g->spec.prefix || k[0]) && objstore_check_key(k, &e) != REMEX_OK)) {
        char why[300];
        snprintf(why, sizeof(why), "object_key: %s", e.msg[0] ? e.msg : "key over 1024 bytes");
        trig_fail(t, g, why);
        return -1;
    }
    uint64_t every = poke_interval(t, g);
    g->poke_timer = evloop_timer_add(t->loop, every, every, on_poke, g);
    queue_check(t, g);
    return 0;
}
