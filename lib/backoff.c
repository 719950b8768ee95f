/* backoff: full-jitter retry delays and restart delays. */
#include "remex/backoff.h"

#include <stdlib.h>

uint64_t backoff_ceiling(uint64_t base_ms, uint64_t cap_ms, unsigned attempt)
{
    uint64_t v = base_ms;

    for (unsigned i = 0; i < attempt && v < cap_ms; i++)
        v = v > UINT64_MAX / 2 ? UINT64_MAX : v * 2;
    return v < cap_ms ? v : cap_ms;
}

static uint64_t default_rng(void *ctx)
{
    uint64_t v;

    (void)ctx;
    arc4random_buf(&v, sizeof(v));
    return v;
}

uint64_t backoff_full_jitter(const struct backoff *b, unsigned attempt)
{
    uint64_t ceil = backoff_ceiling(b->base_ms, b->cap_ms, attempt);
    uint64_t r;

    if (ceil == 0)
        return 0;
    r = b->rng ? b->rng(b->rng_ctx) : default_rng(NULL);
    /* Modulo bias is below 2^-32 for any ceiling under 2^32 ms (49 days). */
    return r % ceil;
}

void backoff_restart_init(struct backoff_restart *r, uint64_t floor_ms, uint64_t cap_ms,
                          uint64_t stable_ms)
{
    r->floor_ms = floor_ms ? floor_ms : BACKOFF_RESTART_FLOOR_MS;
    r->cap_ms = cap_ms ? cap_ms : BACKOFF_RESTART_CAP_MS;
    if (r->cap_ms < r->floor_ms)
        r->cap_ms = r->floor_ms;
    r->stable_ms = stable_ms ? stable_ms : BACKOFF_RESTART_STABLE_MS;
    r->started_ms = 0;
    r->failures = 0;
}

void backoff_restart_started(struct backoff_restart *r, uint64_t now_ms)
{
    r->started_ms = now_ms;
}

uint64_t backoff_restart_exited(struct backoff_restart *r, uint64_t now_ms)
{
    uint64_t ran = now_ms >= r->started_ms ? now_ms - r->started_ms : 0;
    uint64_t delay;

    if (ran >= r->stable_ms)
        r->failures = 0;
    delay = backoff_ceiling(r->floor_ms, r->cap_ms, r->failures);
    if (r->failures < UINT32_MAX)
        r->failures++;
    return delay;
}

unsigned backoff_restart_failures(const struct backoff_restart *r)
{
    return r->failures;
}

void backoff_restart_reset(struct backoff_restart *r)
{
    r->failures = 0;
}
