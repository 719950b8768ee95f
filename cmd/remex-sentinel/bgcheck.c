/*
 * bgcheck: a check whose work blocks (calls to remote services: the secrets
 * chain, the XCom object store), run on a thread of its own so that the
 * role's loop (/health, /metrics, the plane, the supervisor channel) never
 * waits for it.
 *
 * Contract:
 *   - One run at a time: bgcheck_start does nothing while a run is in
 *     flight (a check still running when its next round comes is not
 *     started twice).
 *   - The loop touches the check's ctx only while no run is in flight
 *     (bgcheck_busy() == 0); the thread only during a run. The mutex
 *     hand-over at start and at completion orders the two. The one
 *     exception, ops->stuck at the deadline, reads only fields that no run
 *     changes (set before the first start).
 *   - The grade lands in s->health on the loop: when the run ends (through
 *     an eventfd), or at its deadline, whichever comes first. At the
 *     deadline the check is graded fail with what is still running
 *     (ops->stuck, from the last step the thread reported) and the time
 *     given; a run that ends later still lands (its own answer is newer).
 *   - bgcheck_free waits until a given time at most for a run to end
 *     (bgcheck_stop first on every check lets them end together). A call blocked in
 *     libcurl cannot be interrupted, so past that the thread is detached and
 *     owns the check from then on: it frees ctx and the check when the call
 *     returns (the ctx holds only objects of its own, nothing borrowed from
 *     the loop or the configuration). The thread blocks every signal.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "remex/evloop.h"
#include "remex/log.h"
#include "sentinel.h"

#define BGCHECK_STACK (256u * 1024u)

struct bgcheck {
    struct sentinel *s;
    const struct bgcheck_ops *ops;
    void *ctx; /* owned; see the contract above */
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* the thread waits for want or stop */
    pthread_cond_t exitcv; /* bgcheck_free waits for exited */
    int efd;               /* the thread's "a run ended" signal to the loop */

    /* under mu */
    int want;      /* a run was asked */
    int stop;      /* the thread is to end */
    int exited;    /* the thread is past its last use of the check */
    int abandoned; /* bgcheck_free gave up waiting: the thread frees the check */
    unsigned step; /* progress of the run, ops->stuck reads it at the deadline */
    int have_result;
    enum health_status res_st;
    char res_msg[HEALTH_MSG_MAX];

    /* loop side */
    int started_thread;
    int stopping; /* bgcheck_stop was called */
    int inflight;
    uint64_t started_ms;
    uint64_t deadline_ms;
    uint64_t deadline_timer;
    int overdue; /* graded fail at its deadline, still running */
};

static void destroy(struct bgcheck *c)
{
    if (c->ops->free_ctx)
        c->ops->free_ctx(c->ctx);
    if (c->efd >= 0)
        close(c->efd);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    pthread_cond_destroy(&c->exitcv);
    free(c);
}

static void *bgcheck_main(void *arg)
{
    struct bgcheck *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stop && !c->want)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop)
            break;
        c->want = 0;
        c->step = 0;
        pthread_mutex_unlock(&c->mu);
        enum health_status st = HEALTH_OK;
        char msg[HEALTH_MSG_MAX] = "";
        c->ops->run(c, c->ctx, &st, msg, sizeof(msg));
        pthread_mutex_lock(&c->mu);
        c->res_st = st;
        memcpy(c->res_msg, msg, sizeof(msg));
        c->have_result = 1;
        if (!c->stop) {
            uint64_t one = 1;
            (void)!write(c->efd, &one, sizeof(one));
        }
    }
    c->exited = 1;
    int abandoned = c->abandoned;
    pthread_cond_broadcast(&c->exitcv);
    pthread_mutex_unlock(&c->mu);
    if (abandoned)
        destroy(c); /* the loop no longer knows the check */
    return NULL;
}

void bgcheck_step(struct bgcheck *c, unsigned step)
{
    pthread_mutex_lock(&c->mu);
    c->step = step;
    pthread_mutex_unlock(&c->mu);
}

/* Grades the check; a changed status goes to the plane now rather than a round later. */
static void grade(struct bgcheck *c, enum health_status st, const char *msg)
{
    const struct health_check *was = health_get(&c->s->health, c->ops->name);
    int changed = !was || was->status != st;
    health_set(&c->s->health, c->ops->name, st, "%s", msg);
    if (changed)
        sentinel_report(c->s);
}

/* "10 s", "1.5 s". */
static void fmt_secs(uint64_t ms, char *out, size_t cap)
{
    snprintf(out, cap, "%g s", (double)ms / 1000.0);
}

static void on_deadline(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct bgcheck *c = arg;
    char what[HEALTH_MSG_MAX / 2], secs[32], msg[HEALTH_MSG_MAX];
    c->deadline_timer = 0;
    if (!c->inflight)
        return;
    pthread_mutex_lock(&c->mu);
    unsigned step = c->step;
    int ended = c->have_result;
    pthread_mutex_unlock(&c->mu);
    if (ended)
        return; /* its answer is on the way (on_done) */
    c->ops->stuck(c->ctx, step, what, sizeof(what));
    fmt_secs(c->deadline_ms, secs, sizeof(secs));
    c->overdue = 1;
    snprintf(msg, sizeof(msg), "%s: no answer within %s", what, secs);
    log_warn("%s: %s", c->ops->name, msg);
    grade(c, HEALTH_FAIL, msg);
}

static void on_done(struct evloop *loop, int fd, unsigned ev, void *arg)
{
    (void)ev;
    struct bgcheck *c = arg;
    uint64_t n;
    (void)!read(fd, &n, sizeof(n));
    pthread_mutex_lock(&c->mu);
    int have = c->have_result;
    enum health_status st = c->res_st;
    char msg[HEALTH_MSG_MAX];
    memcpy(msg, c->res_msg, sizeof(msg));
    c->have_result = 0;
    pthread_mutex_unlock(&c->mu);
    if (!have || !c->inflight)
        return;
    c->inflight = 0;
    if (c->deadline_timer)
        evloop_timer_cancel(loop, c->deadline_timer);
    c->deadline_timer = 0;
    if (c->overdue) {
        evloop_update_time(loop);
        log_info("%s: answered after %.1f s", c->ops->name,
                 (double)(evloop_now_ms(loop) - c->started_ms) / 1000.0);
    }
    c->overdue = 0;
    grade(c, st, msg);
}

struct bgcheck *bgcheck_new(struct sentinel *s, const struct bgcheck_ops *ops, void *ctx,
                            struct remex_error *e)
{
    struct bgcheck *c = calloc(1, sizeof(*c));
    pthread_attr_t attr;
    sigset_t all, old;
    if (!c) {
        if (ops->free_ctx)
            ops->free_ctx(ctx);
        remex_seterr(e, REMEX_ENOMEM, "%s check: out of memory", ops->name);
        return NULL;
    }
    c->s = s;
    c->ops = ops;
    c->ctx = ctx;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* wait_exit's deadline */
    pthread_cond_init(&c->exitcv, &ca);
    pthread_condattr_destroy(&ca);
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->efd < 0) {
        remex_errno(e, REMEX_ESYS, "%s check: eventfd", ops->name);
        destroy(c);
        return NULL;
    }
    if (evloop_watch(s->loop, c->efd, EVLOOP_READ, on_done, c, e) != REMEX_OK) {
        destroy(c);
        return NULL;
    }
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, BGCHECK_STACK);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    c->started_thread = pthread_create(&c->th, &attr, bgcheck_main, c) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (!c->started_thread) {
        evloop_unwatch(s->loop, c->efd);
        destroy(c);
        remex_seterr(e, REMEX_ESYS, "%s check: cannot start its thread", ops->name);
        return NULL;
    }
    return c;
}

void *bgcheck_ctx(struct bgcheck *c)
{
    return c->ctx;
}

int bgcheck_busy(const struct bgcheck *c)
{
    return c->inflight;
}

int bgcheck_start(struct bgcheck *c, uint64_t deadline_ms)
{
    if (c->inflight || c->stopping)
        return 0;
    evloop_update_time(c->s->loop);
    c->started_ms = evloop_now_ms(c->s->loop);
    c->deadline_ms = deadline_ms;
    c->deadline_timer = evloop_timer_add(c->s->loop, deadline_ms, 0, on_deadline, c);
    c->inflight = 1;
    c->overdue = 0;
    pthread_mutex_lock(&c->mu);
    c->want = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return 1;
}

/* Waits for the thread's exit until until_ms (CLOCK_MONOTONIC), under mu; 1 when it exited. */
static int wait_exit(struct bgcheck *c, uint64_t until_ms)
{
    struct timespec until = {.tv_sec = (time_t)(until_ms / 1000),
                             .tv_nsec = (long)(until_ms % 1000) * 1000000L};
    int rc = 0;
    while (!c->exited && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->exitcv, &c->mu, &until);
    return c->exited;
}

void bgcheck_stop(struct bgcheck *c)
{
    if (!c || c->stopping)
        return;
    c->stopping = 1;
    if (c->deadline_timer)
        evloop_timer_cancel(c->s->loop, c->deadline_timer);
    c->deadline_timer = 0;
    evloop_unwatch(c->s->loop, c->efd);
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void bgcheck_free(struct bgcheck *c, uint64_t until_ms)
{
    if (!c)
        return;
    bgcheck_stop(c);
    pthread_mutex_lock(&c->mu);
    int exited = wait_exit(c, until_ms);
    if (!exited)
        c->abandoned = 1;
    pthread_mutex_unlock(&c->mu);
    if (exited) {
        pthread_join(c->th, NULL);
        destroy(c);
        return;
    }
    log_warn("%s: still running at stop, not waited for", c->ops->name);
    pthread_detach(c->th); /* it frees the check when its call returns */
}
