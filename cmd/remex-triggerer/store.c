/*
 * object_key triggers on a remote object store (xcom.store s3://, az://,
 * gs://). Remote store calls block (remex/objstore.h), so they never run on
 * the loop: one store thread runs the checks in order (one small listing
 * each, objstore_find) and hands the results back through an eventfd. Each
 * held trigger has at most one check queued or running, and at most
 * STORE_QUEUE_MAX checks wait at once (a poke that finds the queue full is
 * skipped: the trigger is checked at its next poke). A check result names its trigger by id: a
 * trigger that went meanwhile (fired, dropped, drained) simply is not found.
 * The thread blocks every signal (they stay with the loop); it owns the store
 * from its start until store_shutdown has joined it. At exit a check still
 * hanging after triggerer.drain_grace is not waited for: the thread and its
 * store are left to the process's exit.
 *
 * A file:// store is not checked here: watch.c watches its folders.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "remex/agentcfg.h"
#include "remex/cfg.h"
#include "remex/evloop.h"
#include "remex/log.h"
#include "remex/objstore.h"
#include "remex/role.h"
#include "triggerer.h"

#define STORE_STACK     (256u * 1024u)
#define STORE_QUEUE_MAX 4096 /* checks waiting for the thread */

struct store_job {
    struct store_job *next;
    int64_t id; /* the trigger's */
    int exact;  /* key (1) or prefix (0) */
    remex_err rc;
    char *key;    /* owned */
    char *result; /* owned: the key found (rc OK), else the error message; NULL out of memory */
};

struct trgstore {
    struct objstore *s; /* owned; used by the thread only once it runs */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct store_job *pending, **tail; /* under mu */
    struct store_job *done;            /* under mu, newest first */
    size_t queued;                     /* under mu: jobs on pending */
    int stop;                          /* under mu */
    int efd;
    pthread_t th;
    int started;
};

static void job_free(struct store_job *j)
{
    free(j->key);
    free(j->result);
    free(j);
}

static void *store_main(void *arg)
{
    struct trgstore *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->pending && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop)
            break;
        struct store_job *j = s->pending;
        s->pending = j->next;
        if (!s->pending)
            s->tail = &s->pending;
        s->queued--;
        pthread_mutex_unlock(&s->mu);
        struct remex_error e = {0};
        char found[OBJSTORE_KEY_MAX + 1];
        j->rc = objstore_find(s->s, j->key, j->exact, found, sizeof(found), &e);
        j->result = strdup(j->rc == REMEX_OK ? found : e.msg);
        pthread_mutex_lock(&s->mu);
        j->next = s->done;
        s->done = j;
        if (!j->next) {
            uint64_t one = 1;
            (void)!write(s->efd, &one, sizeof(one));
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* One finished check, on the loop. */
static void settle_job(struct trg *t, struct store_job *j)
{
    struct trig *g = trig_find(t, j->id);
    if (!g || g->phase != TRIG_HELD || g->spec.kind != TRIGSPEC_OBJECT_KEY)
        return;
    g->store_queued = 0;
    if (j->rc == REMEX_OK && j->result) {
        char uri[OBJSTORE_URI_MAX];
        objstore_uri(t->store->s, j->result, uri, sizeof(uri));
        trig_fire(t, g, json_pack("{ss ss}", "key", j->result, "uri", uri));
    } else if (j->rc != REMEX_ENOTFOUND && !g->store_warned) {
        g->store_warned = 1; /* once per trigger: it keeps being checked */
        log_warn("trigger %" PRId64 ": %s", g->id, j->result ? j->result : "out of memory");
    }
}

static void on_done(struct evloop *loop, int fd, unsigned ev, void *arg)
{
    (void)loop;
    (void)ev;
    struct trg *t = arg;
    struct trgstore *s = t->store;
    uint64_t n;
    (void)!read(fd, &n, sizeof(n));
    pthread_mutex_lock(&s->mu);
    struct store_job *j = s->done, *rev = NULL;
    s->done = NULL;
    pthread_mutex_unlock(&s->mu);
    while (j) { /* oldest first */
        struct store_job *next = j->next;
        j->next = rev;
        rev = j;
        j = next;
    }
    while (rev) {
        j = rev;
        rev = rev->next;
        settle_job(t, j);
        job_free(j);
    }
}

static remex_err start_thread(struct trg *t, struct trgstore *s, struct remex_error *e)
{
    pthread_attr_t attr;
    sigset_t all, old;
    s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->efd < 0)
        return remex_errno(e, REMEX_ESYS, "object store thread: eventfd");
    if (evloop_watch(t->loop, s->efd, EVLOOP_READ, on_done, t, e) != REMEX_OK)
        return e->code;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, STORE_STACK);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    s->started = pthread_create(&s->th, &attr, store_main, s) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return s->started ? REMEX_OK : remex_seterr(e, REMEX_ESYS, "object store thread: cannot start");
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
    if (!s) {
        objstore_close(os);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    s->s = os;
    s->tail = &s->pending;
    s->efd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    t->store = s;
    if ((rc = start_thread(t, s, e)) != REMEX_OK)
        store_shutdown(t);
    return rc;
}

/* Joins the thread within ms milliseconds: 1 joined, 0 still running. */
static int join_within(struct trgstore *s, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_timedjoin_np(s->th, NULL, &ts) == 0;
}

void store_shutdown(struct trg *t)
{
    struct trgstore *s = t->store;
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->started && !join_within(s, t->cfg->drain_grace_ms)) {
        /* A check hangs on the store (its client retries for minutes): the
         * process is exiting, so the thread and its store are left to the
         * exit rather than holding it up. */
        log_warn("an object store check is still running; exiting without waiting for it");
        pthread_detach(s->th);
        evloop_unwatch(t->loop, s->efd);
        t->store = NULL;
        return;
    }
    if (s->efd >= 0) {
        evloop_unwatch(t->loop, s->efd);
        close(s->efd);
    }
    struct store_job *lists[] = {s->pending, s->done};
    for (size_t i = 0; i < 2; i++)
        for (struct store_job *j = lists[i], *nx; j; j = nx) {
            nx = j->next;
            job_free(j);
        }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    objstore_close(s->s);
    free(s);
    t->store = NULL;
}

/* Queues a check of g unless one is queued or running. */
static void queue_check(struct trg *t, struct trig *g)
{
    struct trgstore *s = t->store;
    if (g->store_queued || g->phase != TRIG_HELD || !s->started)
        return;
    pthread_mutex_lock(&s->mu);
    size_t queued = s->queued;
    pthread_mutex_unlock(&s->mu);
    if (queued >= STORE_QUEUE_MAX)
        return; /* the store is slow: checked at the next poke */
    struct store_job *j = calloc(1, sizeof(*j));
    if (j)
        j->key = strdup(g->spec.key);
    if (!j || !j->key) {
        free(j);
        log_error("trigger %" PRId64 ": out of memory; checked at the next poke", g->id);
        return;
    }
    j->id = g->id;
    j->exact = !g->spec.prefix;
    g->store_queued = 1;
    pthread_mutex_lock(&s->mu);
    *s->tail = j;
    s->tail = &j->next;
    s->queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
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
