/* Unit tests: backoff (full jitter, restart delays). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "remex/backoff.h"

static uint64_t rng_fixed(void *ctx)
{
    return *(uint64_t *)ctx;
}

static uint64_t rng_counter(void *ctx)
{
    uint64_t *c = ctx;
    return (*c)++;
}

static void test_ceiling_doubles_and_caps(void **state)
{
    (void)state;
    assert_int_equal(backoff_ceiling(100, 10000, 0), 100);
    assert_int_equal(backoff_ceiling(100, 10000, 1), 200);
    assert_int_equal(backoff_ceiling(100, 10000, 6), 6400);
    assert_int_equal(backoff_ceiling(100, 10000, 7), 10000);
    assert_int_equal(backoff_ceiling(100, 10000, 1000000), 10000);
    assert_int_equal(backoff_ceiling(0, 10000, 5), 0);
    assert_int_equal(backoff_ceiling(500, 200, 0), 200);
}

static void test_ceiling_saturates(void **state)
{
    (void)state;
    assert_true(backoff_ceiling(UINT64_MAX / 2 + 1, UINT64_MAX, 1) == UINT64_MAX);
    assert_true(backoff_ceiling(3, UINT64_MAX, 200) == UINT64_MAX);
    assert_true(backoff_ceiling(1, UINT64_MAX, 63) == (uint64_t)1 << 63);
}

static void test_jitter_bounds_with_injected_rng(void **state)
{
    (void)state;
    uint64_t v = UINT64_MAX;
    struct backoff b = {.base_ms = 100, .cap_ms = 5000, .rng = rng_fixed, .rng_ctx = &v};
    /* The upper bound is exclusive: the largest random value maps below the ceiling. */
    for (unsigned a = 0; a < 20; a++)
        assert_true(backoff_full_jitter(&b, a) < backoff_ceiling(100, 5000, a));
    v = 0;
    assert_int_equal(backoff_full_jitter(&b, 3), 0);
    v = 799;
    assert_int_equal(backoff_full_jitter(&b, 3), 799);
    v = 800;
    assert_int_equal(backoff_full_jitter(&b, 3), 0);
}

static void test_jitter_covers_range(void **state)
{
    (void)state;
    uint64_t c = 0;
    struct backoff b = {.base_ms = 10, .cap_ms = 1000, .rng = rng_counter, .rng_ctx = &c};
    int seen[40] = {0};
    for (int i = 0; i < 400; i++) {
        uint64_t d = backoff_full_jitter(&b, 2);
        assert_true(d < 40);
        seen[d] = 1;
    }
    for (int i = 0; i < 40; i++)
        assert_true(seen[i]);
}

static void test_default_rng_in_range(void **state)
{
    (void)state;
    struct backoff b = {.base_ms = 50, .cap_ms = 3000};
    uint64_t max = 0;
    for (int i = 0; i < 2000; i++) {
        uint64_t d = backoff_full_jitter(&b, 10);
        assert_true(d < 3000);
        if (d > max)
            max = d;
    }
    assert_true(max > 1500); /* p(fail) = 2^-2000 */
    struct backoff z = {.base_ms = 0, .cap_ms = 3000};
    assert_int_equal(backoff_full_jitter(&z, 4), 0);
}

static void test_restart_sequence(void **state)
{
    (void)state;
    struct backoff_restart r;
    uint64_t now = 1000000;
    const uint64_t want[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
    backoff_restart_init(&r, 0, 0, 0);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        backoff_restart_started(&r, now);
        now += 500; /* crashes quickly */
        assert_int_equal(backoff_restart_exited(&r, now), want[i]);
        now += want[i];
    }
    assert_int_equal(backoff_restart_failures(&r), 9);
}

static void test_restart_resets_after_stable_period(void **state)
{
    (void)state;
    struct backoff_restart r;
    backoff_restart_init(&r, 1000, 60000, 30000);
    backoff_restart_started(&r, 0);
    assert_int_equal(backoff_restart_exited(&r, 10), 1000);
    backoff_restart_started(&r, 1010);
    assert_int_equal(backoff_restart_exited(&r, 1020), 2000);
    backoff_restart_started(&r, 3020);
    /* One millisecond short of stable still counts as a crash. */
    assert_int_equal(backoff_restart_exited(&r, 3020 + 29999), 4000);
    backoff_restart_started(&r, 100000);
    assert_int_equal(backoff_restart_exited(&r, 130000), 1000);
    assert_int_equal(backoff_restart_failures(&r), 1);
    backoff_restart_reset(&r);
    assert_int_equal(backoff_restart_failures(&r), 0);
}

static void test_restart_clock_backwards_and_bad_cap(void **state)
{
    (void)state;
    struct backoff_restart r;
    backoff_restart_init(&r, 5000, 100, 1000);
    assert_int_equal(r.cap_ms, 5000);
    backoff_restart_started(&r, 9000);
    assert_int_equal(backoff_restart_exited(&r, 10), 5000);
    assert_int_equal(backoff_restart_exited(&r, 10), 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ceiling_doubles_and_caps),
        cmocka_unit_test(test_ceiling_saturates),
        cmocka_unit_test(test_jitter_bounds_with_injected_rng),
        cmocka_unit_test(test_jitter_covers_range),
        cmocka_unit_test(test_default_rng_in_range),
        cmocka_unit_test(test_restart_sequence),
        cmocka_unit_test(test_restart_resets_after_stable_period),
        cmocka_unit_test(test_restart_clock_backwards_and_bad_cap),
    };
    return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
