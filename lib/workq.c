/*
 * workq: worker threads and a bounded job queue, done callbacks on the loop
 * (contract in include/remex/workq.h).
 *
 * Invariants (under mu): the queue is a FIFO (head, tail) of QUEUED jobs,
 * nqueued of them; the done list is a FIFO (dhead, dtail) of DONE jobs; the
 * eventfd is written when a job lands on an empty done list (else a wake-up
 * is pending already: the loop takes the whole list at once). alive counts the
 * threads not past their last use of the queue; with abandoned set the last
 * of them frees it.
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
#include "remex/workq.h"

#define WORKQ_DEFAULT_CAP   1024u
#define WORKQ_DEFAULT_STACK (256u * 1024u)

struct workq {
    struct evloop *loop;
    struct workq_opts o; /* o.name points to name */
    char name[64];
    pthread_mutex_t mu;
    pthread_cond_t cv; /* threads wait for a job or stop, workq_free for alive == 0 */
    /* under mu */
    struct workq_job *head, **tail;
    size_t nqueued;
    struct workq_job *dhead, **dtail;
    int stop;
    int abandoned;
    unsigned alive;
    /* loop only */
    int stopping;
    int efd;
    unsigned nth;
    pthread_t th[WORKQ_THREADS_MAX];
};

static void destroy(struct workq *q)
{
    if (q->efd >= 0)
        close(q->efd);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

static void *workq_main(void *arg)
{
    struct workq *q = arg;
    void *tctx = q->o.thread_init ? q->o.thread_init(q->o.arg) : NULL;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->stop && !q->head)
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->stop)
            break;
        struct workq_job *j = q->head;
        if (!(q->head = j->next_))
            q->tail = &q->head;
        q->nqueued--;
        j->next_ = NULL;
        j->state_ = WORKQ_RUNNING;
        pthread_mutex_unlock(&q->mu);
        j->run(j, tctx);
        pthread_mutex_lock(&q->mu);
        if (q->abandoned) { /* workq_free gave up on this job: it is ours */
            pthread_mutex_unlock(&q->mu);
            if (q->o.orphan)
                q->o.orphan(j);
            pthread_mutex_lock(&q->mu);
            continue; /* stop is set: the loop ends */
        }
        j->state_ = WORKQ_DONE;
        *q->dtail = j;
        q->dtail = &j->next_;
        if (q->dhead == j) {
            uint64_t one = 1;
            (void)!write(q->efd, &one, sizeof(one));
        }
    }
    pthread_mutex_unlock(&q->mu);
    if (q->o.thread_fini)
        q->o.thread_fini(tctx, q->o.arg);
    pthread_mutex_lock(&q->mu);
    int last = --q->alive == 0 && q->abandoned;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    if (last)
        destroy(q); /* the loop no longer knows the queue */
    return NULL;
}

/* Calls done for the FIFO list j; if the queue stops meanwhile, the rest goes back. */
static void deliver(struct workq *q, struct workq_job *j, enum workq_end how)
{
    while (j) {
        if (q && q->stopping) { /* workq_free hands them back */
            struct workq_job **last = &j;
            while (*last)
                last = &(*last)->next_;
            pthread_mutex_lock(&q->mu);
            *last = q->dhead;
            if (!q->dhead)
                q->dtail = last;
            q->dhead = j;
            pthread_mutex_unlock(&q->mu);
            return;
        }
        struct workq_job *next = j->next_;
        j->next_ = NULL;
        j->state_ = WORKQ_IDLE;
        j->done(j, how);
        j = next;
    }
}

static void on_ready(struct evloop *loop, int fd, unsigned ev, void *arg)
{
    (void)loop;
    (void)ev;
    struct workq *q = arg;
    uint64_t n;
    (void)!read(fd, &n, sizeof(n)); /* non-blocking: EAGAIN is harmless */
    pthread_mutex_lock(&q->mu);
    struct workq_job *j = q->dhead;
    q->dhead = NULL;
    q->dtail = &q->dhead;
    pthread_mutex_unlock(&q->mu);
    deliver(q, j, WORKQ_RAN);
}

struct workq *workq_new(struct evloop *loop, const struct workq_opts *opts, struct remex_error *e)
{
    const char *name = opts && opts->name ? opts->name : "work queue";
    if (!loop || !opts || opts->threads < 1 || opts->threads > WORKQ_THREADS_MAX) {
        remex_seterr(e, REMEX_EINVAL, "%s: threads must be 1..%d", name, WORKQ_THREADS_MAX);
        return NULL;
    }
    struct workq *q = calloc(1, sizeof(*q));
    if (!q) {
        remex_seterr(e, REMEX_ENOMEM, "%s: out of memory", name);
        return NULL;
    }
    q->loop = loop;
    q->o = *opts;
    snprintf(q->name, sizeof(q->name), "%s", name);
    q->o.name = q->name;
    q->o.cap = q->o.cap ? q->o.cap : WORKQ_DEFAULT_CAP;
    q->o.stack = q->o.stack ? q->o.stack : WORKQ_DEFAULT_STACK;
    q->tail = &q->head;
    q->dtail = &q->dhead;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* workq_free's deadline */
    pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->efd < 0) {
        remex_errno(e, REMEX_ESYS, "%s: eventfd", name);
        destroy(q);
        return NULL;
    }
    if (evloop_watch(loop, q->efd, EVLOOP_READ, on_ready, q, e) != REMEX_OK) {
        destroy(q);
        return NULL;
    }
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, q->o.stack);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* inherited: signals stay with the loop */
    pthread_mutex_lock(&q->mu);               /* alive counted before any thread can end */
    for (unsigned i = 0; i < q->o.threads; i++)
        q->nth += pthread_create(&q->th[q->nth], &attr, workq_main, q) == 0;
    q->alive = q->nth;
    pthread_mutex_unlock(&q->mu);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (q->nth == 0) {
        evloop_unwatch(loop, q->efd);
        destroy(q);
        remex_seterr(e, REMEX_ESYS, "%s: no thread could be started", name);
        return NULL;
    }
    return q;
}

remex_err workq_submit(struct workq *q, struct workq_job *j, struct remex_error *e)
{
    if (!j || !j->run || !j->done || j->state_ != WORKQ_IDLE)
        return remex_seterr(e, REMEX_EINVAL, "%s: job without run/done or already queued", q->name);
    if (q->stopping)
        return remex_seterr(e, REMEX_ECLOSED, "%s: stopping", q->name);
    pthread_mutex_lock(&q->mu);
    if (q->nqueued >= q->o.cap) {
        pthread_mutex_unlock(&q->mu);
        return remex_seterr(e, REMEX_EAGAIN, "%s: queue full (%zu jobs waiting)", q->name,
                            q->o.cap);
    }
    j->next_ = NULL;
    j->state_ = WORKQ_QUEUED;
    *q->tail = j;
    q->tail = &j->next_;
    q->nqueued++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return REMEX_OK;
}

int workq_cancel(struct workq *q, struct workq_job *j)
{
    int found = 0;
    pthread_mutex_lock(&q->mu);
    for (struct workq_job **pp = &q->head; *pp; pp = &(*pp)->next_)
        if (*pp == j) {
            *pp = j->next_;
            if (q->tail == &j->next_)
                q->tail = pp;
            j->next_ = NULL;
            j->state_ = WORKQ_IDLE;
            q->nqueued--;
            found = 1;
            break;
        }
    pthread_mutex_unlock(&q->mu);
    return found;
}

void workq_stop(struct workq *q)
{
    if (!q || q->stopping)
        return;
    q->stopping = 1;
    evloop_unwatch(q->loop, q->efd);
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

unsigned workq_free(struct workq *q, uint64_t until_ms)
{
    if (!q)
        return 0;
    workq_stop(q);
    struct timespec until = {.tv_sec = (time_t)(until_ms / 1000),
                             .tv_nsec = (long)(until_ms % 1000) * 1000000L};
    int rc = 0;
    pthread_mutex_lock(&q->mu);
    while (q->alive && until_ms == WORKQ_FOREVER)
        pthread_cond_wait(&q->cv, &q->mu);
    while (q->alive && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&q->cv, &q->mu, &until);
    unsigned left = q->alive;
    struct workq_job *done = q->dhead, *queued = q->head;
    q->dhead = q->head = NULL;
    q->dtail = &q->dhead;
    q->tail = &q->head;
    q->nqueued = 0;
    if (left) { /* the threads own the queue now: the last one frees it */
        q->abandoned = 1;
        for (unsigned i = 0; i < q->nth; i++)
            pthread_detach(q->th[i]);
    }
    pthread_mutex_unlock(&q->mu);
    if (!left)
        for (unsigned i = 0; i < q->nth; i++)
            pthread_join(q->th[i], NULL);
    deliver(NULL, done, WORKQ_RAN);
    deliver(NULL, queued, WORKQ_CANCELLED);
    if (!left)
        destroy(q);
    return left;
}
