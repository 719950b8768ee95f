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
 *     (bgcheck_busy() == 0); the thread (a workq of one) only during a run.
 *     The one exception, ops->stuck at the deadline, reads only fields that
 *     no run changes (set before the first start).
 *   - The grade lands in s->health on the loop: when the run ends (the
 *     job's done), or at its deadline, whichever comes first. At the
 *     deadline the check is graded fail with what is still running
 *     (ops->stuck, from the last step the thread reported) and the time
 *     given; a run that ends later still lands (its own answer is newer).
 *   - bgcheck_free waits until a given time at most for a run to end
 *     (bgcheck_stop first on every check lets them end together). A call
 *     blocked in libcurl cannot be interrupted, so past that the thread is
 *     detached and frees ctx and the check when the call returns (workq's
 *     orphan; the ctx holds only objects of its own).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/evloop.h"
#include "remex/log.h"
#include "remex/workq.h"
#include "sentinel.h"

#define BGCHECK_STACK (256u * 1024u)
#define STEP_ENDED    (~0u) /* the run returned: its answer is on the way */

struct bgcheck {
    struct sentinel *s;
    const struct bgcheck_ops *ops;
    void *ctx; /* owned; see the contract above */
    struct workq *q;
    struct workq_job job; /* the run, submitted again each round */
    unsigned step;        /* __atomic: progress of the run, ops->stuck reads it at the deadline */
    /* the run's answer: written by the thread, read in done (workq's hand-over) */
    enum health_status res_st;
    char res_msg[HEALTH_MSG_MAX];

    /* loop side */
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
    free(c);
}

static void bg_run(struct workq_job *wj, void *tctx)
{
    struct bgcheck *c = WORKQ_OF(wj, struct bgcheck, job);
    (void)tctx; /* no per-thread state */
    c->res_st = HEALTH_OK;
    c->res_msg[0] = '\0';
    c->ops->run(c, c->ctx, &c->res_st, c->res_msg, sizeof(c->res_msg));
    __atomic_store_n(&c->step, STEP_ENDED, __ATOMIC_RELEASE);
}

/* Thread: bgcheck_free gave up waiting; the loop no longer knows the check. */
static void bg_orphan(struct workq_job *wj)
{
    destroy(WORKQ_OF(wj, struct bgcheck, job));
}

void bgcheck_step(struct bgcheck *c, unsigned step)
{
    __atomic_store_n(&c->step, step, __ATOMIC_RELAXED);
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

static void on_deadline(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct bgcheck *c = arg;
    char what[HEALTH_MSG_MAX / 2], msg[HEALTH_MSG_MAX];
    c->deadline_timer = 0;
    unsigned step = __atomic_load_n(&c->step, __ATOMIC_ACQUIRE);
    if (!c->inflight || step == STEP_ENDED)
        return; /* its answer is on the way (bg_done) */
    c->ops->stuck(c->ctx, step, what, sizeof(what));
    c->overdue = 1; /* "10 s", "1.5 s" */
    snprintf(msg, sizeof(msg), "%s: no answer within %g s", what, (double)c->deadline_ms / 1000.0);
    log_warn("%s: %s", c->ops->name, msg);
    grade(c, HEALTH_FAIL, msg);
}

/* Loop: a run ended; graded unless the check stops. */
static void bg_done(struct workq_job *wj, enum workq_end how)
{
    struct bgcheck *c = WORKQ_OF(wj, struct bgcheck, job);
    struct evloop *loop = c->s->loop;
    if (how != WORKQ_RAN || c->stopping || !c->inflight)
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
    grade(c, c->res_st, c->res_msg);
}

struct bgcheck *bgcheck_new(struct sentinel *s, const struct bgcheck_ops *ops, void *ctx,
                            struct remex_error *e)
{
    struct bgcheck *c = calloc(1, sizeof(*c));
    char name[64];
    snprintf(name, sizeof(name), "%s check", ops->name);
    struct workq_opts o = {
        .name = name, .threads = 1, .cap = 1, .stack = BGCHECK_STACK, .orphan = bg_orphan};
    if (!c) {
        if (ops->free_ctx)
            ops->free_ctx(ctx);
        remex_seterr(e, REMEX_ENOMEM, "%s: out of memory", name);
        return NULL;
    }
    *c = (struct bgcheck){.s = s, .ops = ops, .ctx = ctx, .job = {.run = bg_run, .done = bg_done}};
    if (!(c->q = workq_new(s->loop, &o, e))) {
        destroy(c);
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
    __atomic_store_n(&c->step, 0u, __ATOMIC_RELAXED); /* no run in flight: the thread waits */
    if (workq_submit(c->q, &c->job, NULL) != REMEX_OK)
        return 0; /* queued: its answer comes back on the loop, after this */
    evloop_update_time(c->s->loop);
    c->started_ms = evloop_now_ms(c->s->loop);
    c->deadline_ms = deadline_ms;
    c->deadline_timer = evloop_timer_add(c->s->loop, deadline_ms, 0, on_deadline, c);
    c->overdue = 0;
    c->inflight = 1;
    return 1;
}

void bgcheck_stop(struct bgcheck *c)
{
    if (!c || c->stopping)
        return;
    c->stopping = 1;
    if (c->deadline_timer)
        evloop_timer_cancel(c->s->loop, c->deadline_timer);
    c->deadline_timer = 0;
    workq_stop(c->q);
}

void bgcheck_free(struct bgcheck *c, uint64_t until_ms)
{
    if (!c)
        return;
    const char *name = c->ops->name; /* static: c may be gone once workq_free returns */
    bgcheck_stop(c);
    if (workq_free(c->q, until_ms) == 0)
        destroy(c);
    else
        log_warn("%s: still running at stop, not waited for", name);
}
