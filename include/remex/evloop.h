/*
 * evloop: a small single-threaded epoll event loop (fd watches, timers, signals).
 *
 * Watches. One watch per fd: a callback, an opaque arg and an event mask of
 * EVLOOP_READ and/or EVLOOP_WRITE (level-triggered). evloop_watch adds or
 * replaces the watch of an fd; evloop_modify changes only its mask;
 * evloop_unwatch removes it. All three are safe from inside any callback: an
 * event already fetched for an fd that was removed (or removed and watched
 * again) in the same batch is dropped, never delivered to the wrong callback.
 * The loop never closes a watched fd; the caller closes it after unwatching.
 *
 * Timers. CLOCK_MONOTONIC, millisecond resolution, held in a binary min-heap
 * ordered by (due time, creation order), so timers due at the same millisecond
 * fire in the order they were added. O(log n) add, cancel and re-arm; timer
 * slots are recycled, so memory is bounded by the peak number of pending timers
 * (about 60 bytes each). Timers are driven by the epoll_wait timeout (no
 * timerfd): each iteration waits at most until the earliest due time. A timer
 * never fires early; it may fire late by the time other callbacks take.
 * Timer ids are never 0 and are not reused for a long time (slot generation),
 * so cancelling an id that already fired is a harmless REMEX_ENOTFOUND.
 * A repeating timer that fell behind is re-armed one interval after now
 * (missed ticks are skipped, never fired in a burst). A timer added or re-armed
 * from a timer callback is not fired in the same pass, even with delay 0.
 *
 * Time. evloop_now_ms() is CLOCK_MONOTONIC in ms, cached: it is refreshed when
 * the loop wakes up from epoll_wait and by evloop_update_time(). Timer delays
 * count from the cached value.
 *
 * Signals. evloop_signal blocks the signal in the calling thread (call it
 * before creating threads) and delivers it through one signalfd in the loop;
 * no signal handler is ever installed. A signal ignored on entry (SIG_IGN
 * inherited, as background jobs get SIGINT) still arrives: Linux queues a
 * blocked signal whatever its disposition. Removing a handler or freeing the
 * loop leaves the signal blocked (unblocking could deliver a pending signal with its default
 * action).
 *
 * libcurl multi. The API is enough for curl's socket interface without
 * depending on it: CURLMOPT_SOCKETFUNCTION maps CURL_POLL_IN/OUT/INOUT to
 * evloop_watch(fd, READ/WRITE/READ|WRITE) (which replaces an existing watch)
 * and CURL_POLL_REMOVE to evloop_unwatch(fd); CURLMOPT_TIMERFUNCTION maps
 * timeout_ms == -1 to evloop_timer_cancel(id) and otherwise to
 * evloop_timer_rearm(id, timeout_ms), falling back to evloop_timer_add when
 * rearm returns REMEX_ENOTFOUND (the one-shot timer already fired).
 *
 * Ownership: the loop owns its internal memory and fds (epoll, signalfd); it
 * borrows every callback arg and never frees one. evloop_free must not be
 * called from inside a callback. Not thread-safe: one loop per thread, all
 * calls from the thread that runs it.
 */
#ifndef REMEX_EVLOOP_H
#define REMEX_EVLOOP_H

#include <stddef.h>
#include <stdint.h>

#include "remex/err.h"

#define EVLOOP_READ  0x1u /* watch mask and delivered event: readable (or EOF/hangup) */
#define EVLOOP_WRITE 0x2u /* watch mask and delivered event: writable */
#define EVLOOP_ERROR 0x4u /* delivered only: EPOLLERR or EPOLLHUP on the fd */

/* Longest accepted timer delay or interval (about 24.8 days). */
#define EVLOOP_TIMER_MAX_MS ((uint64_t)INT32_MAX)

struct evloop;

struct evloop_stats {
    size_t watches;     /* fds currently watched, internal signalfd included */
    size_t timers;      /* timers pending */
    size_t timer_slots; /* timer slots allocated (peak pending, rounded up) */
};

/* Creates a loop. Returns NULL (e filled: REMEX_ENOMEM or REMEX_ESYS) on failure. */
struct evloop *evloop_new(struct remex_error *e);

/* Closes the loop's own fds and frees it; NULL is a no-op. Watched fds stay open. */
void evloop_free(struct evloop *loop);

/*
 * Watches fd for events (EVLOOP_READ and/or EVLOOP_WRITE, not 0), replacing any
 * existing watch of fd. cb receives the events that happened, restricted to
 * the mask, plus EVLOOP_ERROR on error or hangup. arg is borrowed.
 * Errors: REMEX_EINVAL (fd < 0, bad mask, NULL cb), REMEX_ENOMEM, REMEX_ESYS.
 */
remex_err evloop_watch(struct evloop *loop, int fd, unsigned events,
                       void (*cb)(struct evloop *loop, int fd, unsigned events, void *arg),
                       void *arg, struct remex_error *e);

/* Changes the mask of an existing watch. REMEX_ENOTFOUND if fd is not watched. */
remex_err evloop_modify(struct evloop *loop, int fd, unsigned events, struct remex_error *e);

/* Removes the watch of fd. REMEX_ENOTFOUND if fd is not watched. Does not close fd. */
remex_err evloop_unwatch(struct evloop *loop, int fd);

/* The mask fd is watched with, 0 if it is not watched. */
unsigned evloop_watching(const struct evloop *loop, int fd);

/*
 * Adds a timer due delay_ms after evloop_now_ms(). interval_ms 0 makes it
 * one-shot; otherwise it repeats every interval_ms until cancelled. arg is
 * borrowed. Returns the timer id (never 0) or 0 on failure (ENOMEM, or a delay
 * or interval above EVLOOP_TIMER_MAX_MS).
 */
uint64_t evloop_timer_add(struct evloop *loop, uint64_t delay_ms, uint64_t interval_ms,
                          void (*cb)(struct evloop *loop, uint64_t id, void *arg), void *arg);

/*
 * Cancels a pending timer; safe from inside any callback, including the
 * timer's own (a repeating timer then stops). REMEX_ENOTFOUND if the id is
 * unknown or the one-shot timer has already fired.
 */
remex_err evloop_timer_cancel(struct evloop *loop, uint64_t id);

/*
 * Moves a pending timer (or the one being fired, from its own callback) to
 * delay_ms after now, keeping its id, callback and interval.
 * REMEX_ENOTFOUND if it no longer exists, REMEX_EINVAL if delay_ms is too big.
 */
remex_err evloop_timer_rearm(struct evloop *loop, uint64_t id, uint64_t delay_ms);

/*
 * Delivers signo through the loop: blocks it and routes it to cb (replacing
 * any previous callback); cb NULL removes the callback (the signal stays
 * blocked, and is then read and dropped). arg is borrowed.
 * Errors: REMEX_EINVAL (SIGKILL, SIGSTOP, out of range), REMEX_ESYS.
 */
remex_err evloop_signal(struct evloop *loop, int signo,
                        void (*cb)(struct evloop *loop, int signo, void *arg), void *arg,
                        struct remex_error *e);

/*
 * Runs one iteration: waits for events up to timeout_ms (-1: until an event or
 * the next timer, 0: do not block; the wait is also capped by the next timer),
 * then dispatches fd events, signals and due timers. EINTR is not an error.
 */
remex_err evloop_run_once(struct evloop *loop, int timeout_ms, struct remex_error *e);

/*
 * Runs iterations until evloop_stop is called, or nothing is left to wait for
 * (no watches and no timers). Returns REMEX_OK, or REMEX_ESYS if epoll fails.
 */
remex_err evloop_run(struct evloop *loop, struct remex_error *e);

/* Makes evloop_run return after the current iteration; safe from callbacks. */
void evloop_stop(struct evloop *loop);

/* Cached monotonic time in ms (see Time above). */
uint64_t evloop_now_ms(const struct evloop *loop);

/* Refreshes the cached time now (for a callback that ran for long). */
void evloop_update_time(struct evloop *loop);

/* Counters for tests and metrics. */
void evloop_get_stats(const struct evloop *loop, struct evloop_stats *st);

#endif
