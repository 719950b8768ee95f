/*
 * workq: worker threads for blocking work, results handed back on an event loop.
 *
 * A queue owns N threads (N >= 1) and a bounded FIFO of jobs. A job is a
 * struct workq_job embedded in the caller's own job (container_of style).
 * workq_submit (loop thread) appends it, or refuses at once with REMEX_EAGAIN
 * when cap jobs are already queued: it never blocks the loop. A thread takes
 * the oldest job and calls job->run off the loop; when run returns, the job
 * goes to a done list and an eventfd (non-blocking, watched through
 * lib/evloop) wakes the loop, which calls job->done for each finished job,
 * oldest first, on the loop thread. With N = 1 jobs run in submission order.
 *
 * Job states: IDLE (not with the queue) -> QUEUED -> RUNNING -> DONE (finished,
 * done not called yet) -> IDLE just before done is called. The queue holds
 * the job from submit until done is called (or until workq_cancel takes it
 * back); during that time the caller must neither free nor reuse it. run may
 * touch only the job (and what the caller documents as the thread's); done may
 * free the job, submit it again, or submit others. The mutex hand-over orders
 * what run wrote before done reads it.
 *
 * Stopping. workq_stop (idempotent) refuses new jobs, unwatches the eventfd
 * (no done is called from the loop after it) and tells the threads to end
 * after their current job; queued jobs are never started. workq_free then
 * waits until until_ms (CLOCK_MONOTONIC, timeutil_mono_ms) at most for the
 * threads, and calls, on the calling (loop) thread, done(j, WORKQ_RAN) for
 * each finished job not delivered yet, then done(j, WORKQ_CANCELLED) for each
 * job never started, oldest first. A thread still running a job past until_ms
 * (a call that cannot be interrupted) is detached: its job is then owned by
 * the thread, which calls opts.orphan(job, arg) when run returns (done is
 * never called for it), and the last thread out frees the queue. So a
 * caller whose run may hang must make the job, and all that run and orphan
 * touch, independent of the loop (nothing borrowed that is freed at stop).
 *
 * Threads block every signal (they stay with the loop's signalfd) and never
 * log. Not for use from several loop threads: all calls except those named
 * "thread" are made from the loop's thread. Errors: a stable remex_err and
 * a message naming opts.name.
 */
#ifndef REMEX_WORKQ_H
#define REMEX_WORKQ_H

#include <stddef.h>
#include <stdint.h>

#include "remex/err.h"

struct evloop;
struct workq;

#define WORKQ_THREADS_MAX 64

/* workq_free's until_ms for "no bound": join the threads whatever their jobs take (for
 * jobs that borrow from their owner and must never outlive it). */
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
    /* Loop, optional: after a batch of done calls from the eventfd (not from workq_free). */
    void (*drained)(void *arg);
    /* Thread, optional: a job whose queue was freed while it ran (see Stopping). */
    void (*orphan)(struct workq_job *j, void *arg);
    void *arg; /* borrowed; passed to the hooks above; must outlive any detached thread */
};

/*
 * Starts the threads and watches the eventfd on loop. Threads that cannot be
 * created are left out as long as one runs (workq_threads tells how many).
 * Returns NULL (e: REMEX_EINVAL, REMEX_ENOMEM, REMEX_ESYS) on failure.
 */
struct workq *workq_new(struct evloop *loop, const struct workq_opts *opts, struct remex_error *e);

/* Threads running. */
unsigned workq_threads(const struct workq *q);

/*
 * Queues j (IDLE, run and done set). REMEX_EAGAIN when cap jobs are queued,
 * REMEX_ECLOSED after workq_stop, REMEX_EINVAL for a job not IDLE or without
 * run/done. On error the job stays the caller's and done will not be called.
 */
remex_err workq_submit(struct workq *q, struct workq_job *j, struct remex_error *e);

/*
 * Takes back a QUEUED job: 1 and the job is IDLE and the caller's again (done
 * is not called); 0 if it is not queued (running, done or idle): nothing changes.
 */
int workq_cancel(struct workq *q, struct workq_job *j);

/* The job's state now (a thread may move it on right after). */
enum workq_state workq_job_state(struct workq *q, const struct workq_job *j);

/* Jobs QUEUED now. */
size_t workq_queued(struct workq *q);

/* Refuses new jobs, stops deliveries and asks the threads to end (see Stopping). */
void workq_stop(struct workq *q);

/*
 * Stops, waits for the threads until until_ms (monotonic ms) at most, hands
 * back every job still held (see Stopping) and frees the queue, or leaves it to
 * its last detached thread. Returns the number of threads detached (0: all
 * joined). NULL is a no-op. Never from a done callback.
 */
unsigned workq_free(struct workq *q, uint64_t until_ms);

#endif
