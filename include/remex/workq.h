/*
 * workq: worker threads for blocking work, results handed back on an event loop.
 *
 * A queue owns N threads (1..WORKQ_THREADS_MAX) and a FIFO of at most cap
 * queued jobs. A job is a struct workq_job embedded in the caller's own job
 * (WORKQ_OF). workq_submit (loop thread) appends it or refuses at once: it
 * never blocks the loop. A thread takes the oldest job and calls job->run;
 * the finished job goes to a done list and an eventfd (non-blocking, watched
 * through lib/evloop) wakes the loop, which calls job->done for each, oldest
 * first, on the loop thread. With N = 1 jobs run in submission order.
 *
 * Ownership. States: IDLE -> QUEUED -> RUNNING -> DONE -> IDLE (just before
 * done). From submit until done is called (or workq_cancel takes it back)
 * the queue holds the job: the caller neither frees nor reuses it, and run
 * touches only the job. done may free it or submit it again. The mutex
 * hand-over orders what run wrote before done reads it.
 *
 * Stopping. workq_stop refuses new jobs, unwatches the eventfd (no done is
 * called from the loop after it) and tells the threads to end after their
 * current job; queued jobs never start. workq_free waits until until_ms
 * (CLOCK_MONOTONIC ms, timeutil_mono_ms) at most, then, on the loop thread,
 * calls done(j, WORKQ_RAN) for each finished job not delivered yet and
 * done(j, WORKQ_CANCELLED) for each never started. A thread still running
 * past until_ms (a call that cannot be interrupted) is detached: its job is
 * then the thread's, handed to opts.orphan when run returns (done never is),
 * and the last thread out frees the queue; such a job must borrow nothing
 * its owner frees at stop.
 *
 * Threads block every signal (they stay with the loop's signalfd) and never
 * log. All calls but run and the thread hooks are made on the loop thread.
 */
#ifndef REMEX_WORKQ_H
#define REMEX_WORKQ_H

#include <stddef.h>
#include <stdint.h>

#include "remex/err.h"

struct evloop;
struct workq;

#define WORKQ_THREADS_MAX 64

/* The caller's job of type T holding the struct workq_job *wj as member m. */
#define WORKQ_OF(wj, T, m) ((T *)(void *)((char *)(wj)-offsetof(T, m)))

/* workq_free's until_ms for "join whatever it takes" (jobs that borrow from their owner). */
#define WORKQ_FOREVER UINT64_MAX

enum workq_state { WORKQ_IDLE, WORKQ_QUEUED, WORKQ_RUNNING, WORKQ_DONE };

/* How a job comes back to done. */
enum workq_end {
    WORKQ_RAN,      /* run was called and returned */
    WORKQ_CANCELLED /* never started: the queue stopped first */
};

struct workq_job {
    /* Thread: the work. tctx is the thread's own context (opts.thread_init), or NULL. */
    void (*run)(struct workq_job *j, void *tctx);
    /* Loop: the job is back (see enum workq_end). The job is IDLE again. */
    void (*done)(struct workq_job *j, enum workq_end how);
    /* private to workq (under its mutex) */
    struct workq_job *next_;
    enum workq_state state_;
};

struct workq_opts {
    const char *name; /* borrowed, for messages ("store thread"); copied up to 63 bytes */
    unsigned threads; /* 1..WORKQ_THREADS_MAX */
    size_t cap;       /* most jobs QUEUED at once (running ones not counted); 0: 1024 */
    size_t stack;     /* thread stack size in bytes; 0: 256 KiB */
    /* Thread, optional: at thread start, the context passed to run; at its end, released. */
    void *(*thread_init)(void *arg);
    void (*thread_fini)(void *tctx, void *arg);
    /* Thread, optional: a job whose queue was freed while it ran (see Stopping). */
    void (*orphan)(struct workq_job *j);
    void *arg; /* borrowed; passed to the thread hooks; must outlive any detached thread */
};

/* Starts the threads (those that cannot be created are left out as long as one runs) and
 * watches the eventfd on loop. NULL on failure (e: REMEX_EINVAL, ENOMEM, ESYS). */
struct workq *workq_new(struct evloop *loop, const struct workq_opts *opts, struct remex_error *e);

/* Queues j (IDLE, run and done set). REMEX_EAGAIN when cap jobs are queued, REMEX_ECLOSED
 * after workq_stop, REMEX_EINVAL for a job not IDLE or without run/done: j stays the
 * caller's, done will not be called. */
remex_err workq_submit(struct workq *q, struct workq_job *j, struct remex_error *e);

/* Takes back a QUEUED job: 1, it is IDLE and the caller's again (done is not called);
 * 0 if it is not queued (running, done or idle): nothing changes. */
int workq_cancel(struct workq *q, struct workq_job *j);

/* Refuses new jobs, stops deliveries and asks the threads to end (see Stopping). */
void workq_stop(struct workq *q);

/* Stops, waits until until_ms at most, hands back every job still held and frees the
 * queue or leaves it to its detached threads (see Stopping). Returns the number of threads
 * detached (0: all joined). NULL is a no-op. Never from a done callback. */
unsigned workq_free(struct workq *q, uint64_t until_ms);

#endif
