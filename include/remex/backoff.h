/*
 * backoff: retry and restart delays.
 *
 * Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): the
 * delay before retry number `attempt` (0 for the first retry) is uniform in
 * [0, min(cap, base * 2^attempt)). The random source is injectable for tests;
 * the default is arc4random (thread-safe, no seeding). Arithmetic saturates,
 * so any attempt number is safe. Values are in milliseconds.
 *
 * backoff_restart: deterministic delays for restarting a crashed child
 * process: floor, 2*floor, 4*floor, ... up to cap; a child that ran for at
 * least stable_ms before exiting starts the sequence again at floor.
 *
 * No global state; each struct belongs to one thread at a time.
 */
#ifndef REMEX_BACKOFF_H
#define REMEX_BACKOFF_H

#include <stdint.h>

struct backoff {
    uint64_t base_ms;
    uint64_t cap_ms;
    /* Returns 64 uniformly random bits; NULL = arc4random. */
    uint64_t (*rng)(void *ctx);
    void *rng_ctx; /* borrowed, passed to rng */
};

/* min(cap, base * 2^attempt), saturating; the exclusive upper bound of the jitter. */
uint64_t backoff_ceiling(uint64_t base_ms, uint64_t cap_ms, unsigned attempt);

/* A delay uniform in [0, backoff_ceiling(...)); 0 when the ceiling is 0. */
uint64_t backoff_full_jitter(const struct backoff *b, unsigned attempt);

#define BACKOFF_RESTART_FLOOR_MS  1000u
#define BACKOFF_RESTART_CAP_MS    60000u
#define BACKOFF_RESTART_STABLE_MS 60000u

struct backoff_restart {
    uint64_t floor_ms;
    uint64_t cap_ms;
    uint64_t stable_ms;
    uint64_t started_ms; /* monotonic time of the last start */
    unsigned failures;   /* consecutive exits without a stable run */
};

/* Zero arguments take the BACKOFF_RESTART_* defaults. */
void backoff_restart_init(struct backoff_restart *r, uint64_t floor_ms, uint64_t cap_ms,
                          uint64_t stable_ms);
/* Records a start at now_ms (monotonic). */
void backoff_restart_started(struct backoff_restart *r, uint64_t now_ms);
/*
 * Records an exit at now_ms and returns the delay before the next start. A run
 * of at least stable_ms resets the sequence, so the delay is floor again.
 */
uint64_t backoff_restart_exited(struct backoff_restart *r, uint64_t now_ms);
/* Consecutive unstable exits (for crash-loop detection). */
unsigned backoff_restart_failures(const struct backoff_restart *r);
/* Forgets past failures. */
void backoff_restart_reset(struct backoff_restart *r);

#endif
