/* Unit tests: cron (5-field schedules, next/prev fire times, data intervals). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "remex/cron.h"
#include "remex/timeutil.h"

/* Epoch seconds of an RFC 3339 UTC string (test helper). */
static int64_t T(const char *s)
{
    int64_t ms = 0;
    assert_int_equal(timeutil_rfc3339_parse(s, &ms, NULL), REMEX_OK);
    return ms / 1000;
}

static void assert_next(const char *expr, const char *after, const char *want)
{
    struct cron c;
    struct remex_error e = {0};
    if (cron_parse(&c, expr, &e) != REMEX_OK)
        fail_msg("%s: %s", expr, e.msg);
    int64_t got = cron_next(&c, T(after));
    char buf[TIMEUTIL_RFC3339_MAX] = "";
    if (got != CRON_NONE)
        timeutil_rfc3339_format(got * 1000, 0, buf, sizeof(buf));
    if (strcmp(buf, want) != 0)
        fail_msg("%s after %s: got %s want %s", expr, after, buf, want);
}

static void assert_prev(const char *expr, const char *at, const char *want)
{
    struct cron c;
    assert_int_equal(cron_parse(&c, expr, NULL), REMEX_OK);
    int64_t got = cron_prev(&c, T(at));
    char buf[TIMEUTIL_RFC3339_MAX] = "";
    if (got != CRON_NONE)
        timeutil_rfc3339_format(got * 1000, 0, buf, sizeof(buf));
    if (strcmp(buf, want) != 0)
        fail_msg("prev %s at %s: got %s want %s", expr, at, buf, want);
}

static void assert_invalid(const char *expr, const char *msg_part)
{
    struct cron c;
    struct remex_error e = {0};
    assert_int_equal(cron_parse(&c, expr, &e), REMEX_EINVAL);
    if (strstr(e.msg, msg_part) == NULL)
        fail_msg("'%s': message '%s' lacks '%s'", expr, e.msg, msg_part);
}

static void test_every_minute_strictly_after(void **state)
{
    (void)state;
    assert_next("* * * * *", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z");
    assert_next("* * * * *", "2026-01-01T00:00:30Z", "2026-01-01T00:01:00Z");
    assert_next("* * * * *", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z");
}

static void test_presets(void **state)
{
    (void)state;
    assert_next("@hourly", "2026-03-04T10:00:00Z", "2026-03-04T11:00:00Z");
    assert_next("@daily", "2026-03-04T10:00:00Z", "2026-03-05T00:00:00Z");
    assert_next("@midnight", "2026-03-04T00:00:00Z", "2026-03-05T00:00:00Z");
    assert_next("@weekly", "2026-03-04T10:00:00Z", "2026-03-08T00:00:00Z"); /* Sunday */
    assert_next("@monthly", "2026-03-04T10:00:00Z", "2026-04-01T00:00:00Z");
    assert_next("@yearly", "2026-03-04T10:00:00Z", "2027-01-01T00:00:00Z");
    assert_next("@annually", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
}

static void test_once_has_no_next(void **state)
{
    (void)state;
    struct cron c;
    assert_int_equal(cron_parse(&c, "@once", NULL), REMEX_OK);
    assert_true(c.once);
    assert_true(cron_next(&c, 0) == CRON_NONE);
    assert_true(cron_prev(&c, T("2026-01-01T00:00:00Z")) == CRON_NONE);
    struct cron_interval iv;
    int64_t sd = T("2026-05-01T12:00:00Z");
    assert_int_equal(cron_next_interval(&c, sd, CRON_UNBOUNDED, CRON_UNBOUNDED, 1, sd, &iv), 1);
    assert_true(iv.start == sd && iv.end == sd);
    assert_int_equal(cron_next_interval(&c, sd, CRON_UNBOUNDED, sd, 1, sd, &iv), 0);
}

static void test_steps_and_ranges(void **state)
{
    (void)state;
    assert_next("*/15 * * * *", "2026-01-01T10:07:00Z", "2026-01-01T10:15:00Z");
    assert_next("*/15 * * * *", "2026-01-01T10:45:00Z", "2026-01-01T11:00:00Z");
    assert_next("1-30/5 * * * *", "2026-01-01T10:07:00Z", "2026-01-01T10:11:00Z");
    assert_next("1-30/5 * * * *", "2026-01-01T10:26:00Z", "2026-01-01T11:01:00Z");
    assert_next("5/20 * * * *", "2026-01-01T10:26:00Z", "2026-01-01T10:45:00Z");
    assert_next("0 9-17/4 * * *", "2026-01-01T13:00:00Z", "2026-01-01T17:00:00Z");
    assert_next("0,30 8,20 * * *", "2026-01-01T08:30:00Z", "2026-01-01T20:00:00Z");
}

static void test_names_and_sunday(void **state)
{
    (void)state;
    /* 2026-03-04 is a Wednesday. */
    assert_next("0 0 * * mon-fri", "2026-03-06T00:00:00Z", "2026-03-09T00:00:00Z");
    assert_next("0 0 * * SUN", "2026-03-04T00:00:00Z", "2026-03-08T00:00:00Z");
    assert_next("0 0 * * 7", "2026-03-04T00:00:00Z", "2026-03-08T00:00:00Z");
    assert_next("0 0 * * 0", "2026-03-04T00:00:00Z", "2026-03-08T00:00:00Z");
    assert_next("0 0 * * 5-7", "2026-03-04T00:00:00Z", "2026-03-06T00:00:00Z");
    assert_next("0 0 1 jun,Dec *", "2026-03-04T00:00:00Z", "2026-06-01T00:00:00Z");
    assert_next("0 0 1 jun,Dec *", "2026-06-01T00:00:00Z", "2026-12-01T00:00:00Z");
}

static void test_month_ends(void **state)
{
    (void)state;
    assert_next("0 0 31 * *", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z");
    assert_next("0 0 31 * *", "2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z");
    assert_next("0 0 30 * *", "2026-01-30T00:00:00Z", "2026-03-30T00:00:00Z");
    assert_next("59 23 * * *", "2026-04-30T23:59:00Z", "2026-05-01T23:59:00Z");
}

static void test_leap_years(void **state)
{
    (void)state;
    assert_next("0 0 29 2 *", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z");
    assert_next("0 0 29 2 *", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z"); /* 2100 no */
    assert_next("0 0 29 2 *", "1999-03-01T00:00:00Z", "2000-02-29T00:00:00Z"); /* 2000 yes */
    assert_next("0 12 * 2 *", "2028-02-28T12:00:00Z", "2028-02-29T12:00:00Z");
    assert_next("0 12 * 2 *", "2027-02-28T12:00:00Z", "2028-02-01T12:00:00Z");
}

static void test_dom_dow_or_rule(void **state)
{
    (void)state;
    /* 13th of the month OR a Friday (2026-03-04 is a Wednesday). */
    assert_next("0 0 13 * fri", "2026-03-04T00:00:00Z", "2026-03-06T00:00:00Z");
    assert_next("0 0 13 * fri", "2026-03-06T00:00:00Z", "2026-03-13T00:00:00Z");
    assert_next("0 0 13 * fri", "2026-03-13T00:00:00Z", "2026-03-20T00:00:00Z");
    /* Only day-of-week restricted: day-of-month does not add days. */
    assert_next("0 0 * * fri", "2026-03-06T00:00:00Z", "2026-03-13T00:00:00Z");
    /* Only day-of-month restricted. */
    assert_next("0 0 15 * *", "2026-03-04T00:00:00Z", "2026-03-15T00:00:00Z");
    /* 1-31 selects every day, so it counts as unrestricted: AND with Friday. */
    assert_next("0 0 1-31 * fri", "2026-03-06T00:00:00Z", "2026-03-13T00:00:00Z");
}

static void test_year_rollover(void **state)
{
    (void)state;
    assert_next("30 6 1 1 *", "2026-01-01T06:30:00Z", "2027-01-01T06:30:00Z");
    assert_next("0 0 * * *", "2026-12-31T00:00:00Z", "2027-01-01T00:00:00Z");
    assert_next("0 0 1 1 mon", "2026-12-31T00:00:00Z", "2027-01-01T00:00:00Z");
}

static void test_prev(void **state)
{
    (void)state;
    assert_prev("0 0 * * *", "2026-03-04T10:00:00Z", "2026-03-04T00:00:00Z");
    assert_prev("0 0 * * *", "2026-03-04T00:00:00Z", "2026-03-04T00:00:00Z"); /* inclusive */
    assert_prev("0 0 31 * *", "2026-03-30T00:00:00Z", "2026-01-31T00:00:00Z");
    assert_prev("0 0 29 2 *", "2027-01-01T00:00:00Z", "2024-02-29T00:00:00Z");
    assert_prev("*/15 * * * *", "2026-01-01T00:14:59Z", "2026-01-01T00:00:00Z");
    assert_prev("45 23 * * *", "2026-01-01T00:10:00Z", "2025-12-31T23:45:00Z");
}

static void test_invalid_expressions(void **state)
{
    (void)state;
    assert_invalid("61 * * * *", "minute field: value 61 out of range 0-59 (column 1)");
    assert_invalid("0 24 * * *", "hour field: value 24 out of range 0-23 (column 3)");
    assert_invalid("0 0 0 * *", "day-of-month field: value 0 out of range 1-31");
    assert_invalid("0 0 * 13 *", "month field: value 13 out of range 1-12");
    assert_invalid("0 0 * * 8", "day-of-week field: value 8 out of range 0-7");
}

static void test_invalid_syntax(void **state)
{
    (void)state;
    assert_invalid("* * * *", "expected 5 fields");
    assert_invalid("* * * * * *", "more than 5 fields (column 11)");
    assert_invalid("", "expected 5 fields");
    assert_invalid("*/0 * * * *", "minute field: bad step");
    assert_invalid("5-1 * * * *", "minute field: range 5-1 is reversed");
    assert_invalid("a * * * *", "minute field: unexpected 'a' (column 1)");
    assert_invalid("1,,2 * * * *", "minute field: unexpected ','");
    assert_invalid("* * * foo *", "month field");
    assert_invalid("* * * * mon-", "day-of-week field");
    assert_invalid("@fortnightly", "unknown preset");
    assert_invalid("0 0 30 2 *", "no selected month");
    assert_invalid("99999999999999999999 * * * *", "out of range");
    char longx[400];
    memset(longx, '1', sizeof(longx) - 1);
    longx[sizeof(longx) - 1] = '\0';
    assert_invalid(longx, "longer than");
}

static void test_valid_impossible_or_rule(void **state)
{
    (void)state;
    /* Feb 30 OR Mondays: the Mondays make it fire. */
    assert_next("0 0 30 2 mon", "2026-03-04T00:00:00Z", "2027-02-01T00:00:00Z");
}

/* Brute force: scan every minute. */
static int64_t brute_next(const struct cron *c, int64_t after)
{
    for (int64_t t = after - (after % 60) + 60; t < after + 400 * 86400; t += 60)
        if (cron_matches(c, t))
            return t;
    return CRON_NONE;
}

static void test_matches_brute_force(void **state)
{
    (void)state;
    static const char *const exprs[] = {"*/7 */5 * * *", "0 0 13 * fri", "15 3,15 */3 * mon-wed",
                                        "59 23 31 * *",  "0 12 29 2 *",  "*/20 * 1-3 * sat"};
    for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++) {
        struct cron c;
        assert_int_equal(cron_parse(&c, exprs[i], NULL), REMEX_OK);
        int64_t t = T("2027-12-30T00:00:00Z");
        for (int k = 0; k < 200; k++) {
            int64_t n = cron_next(&c, t), b = brute_next(&c, t);
            if (b == CRON_NONE && n != CRON_NONE && n >= t + 400 * 86400)
                break; /* beyond the brute-force horizon */
            if (n != b)
                fail_msg("%s after %lld: %lld vs brute %lld", exprs[i], (long long)t, (long long)n,
                         (long long)b);
            if (n == CRON_NONE)
                break;
            assert_int_equal(cron_prev(&c, n), n);
            assert_int_equal(cron_prev(&c, n - 1) < n, 1);
            assert_true(cron_next(&c, cron_prev(&c, n - 1)) == n);
            t = n + (k % 3) * 17; /* sometimes from an unaligned second */
        }
    }
}

static void test_long_horizon_monotone(void **state)
{
    (void)state;
    struct cron c;
    assert_int_equal(cron_parse(&c, "0 0 29 2 mon", NULL), REMEX_OK);
    int64_t t = 0, n;
    int count = 0;
    while ((n = cron_next(&c, t)) != CRON_NONE) {
        assert_true(n > t);
        assert_true(cron_matches(&c, n));
        t = n;
        count++;
    }
    assert_true(count > 32000); /* February Mondays plus Feb 29s, 1970..9999 */
    assert_true(t <= T("9999-12-31T23:59:00Z"));
}

static void test_intervals_catchup(void **state)
{
    (void)state;
    struct cron c;
    struct cron_interval iv;
    assert_int_equal(cron_parse(&c, "@daily", NULL), REMEX_OK);
    int64_t sd = T("2026-01-01T00:00:00Z"), now = T("2026-01-05T10:00:00Z");
    assert_int_equal(cron_next_interval(&c, sd, CRON_UNBOUNDED, CRON_UNBOUNDED, 1, now, &iv), 1);
    assert_true(iv.start == sd && iv.end == T("2026-01-02T00:00:00Z"));
    assert_int_equal(cron_next_interval(&c, sd, CRON_UNBOUNDED, iv.start, 1, now, &iv), 1);
    assert_true(iv.start == T("2026-01-02T00:00:00Z") && iv.end == T("2026-01-03T00:00:00Z"));
    /* A start date off the schedule aligns to the next fire. */
    sd = T("2026-01-01T06:00:00Z");
    assert_int_equal(cron_next_interval(&c, sd, CRON_UNBOUNDED, CRON_UNBOUNDED, 1, now, &iv), 1);
    assert_true(iv.start == T("2026-01-02T00:00:00Z"));
    /* end_date stops the schedule. */
    assert_int_equal(
        cron_next_interval(&c, sd, T("2026-01-01T23:00:00Z"), CRON_UNBOUNDED, 1, now, &iv), 0);
    assert_int_equal(
        cron_next_interval(&c, CRON_UNBOUNDED, CRON_UNBOUNDED, CRON_UNBOUNDED, 1, now, &iv), 0);
}

static void test_intervals_no_catchup(void **state)
{
    (void)state;
    struct cron c;
    struct cron_interval iv;
    assert_int_equal(cron_parse(&c, "@daily", NULL), REMEX_OK);
    int64_t sd = T("2026-01-01T00:00:00Z"), now = T("2026-01-05T10:00:00Z");
    /* The latest complete interval: [Jan 4, Jan 5]. */
    assert_int_equal(cron_next_interval(&c, sd, CRON_UNBOUNDED, CRON_UNBOUNDED, 0, now, &iv), 1);
    assert_true(iv.start == T("2026-01-04T00:00:00Z") && iv.end == T("2026-01-05T00:00:00Z"));
    /* Exactly on a fire time. */
    now = T("2026-01-05T00:00:00Z");
    assert_int_equal(cron_next_interval(&c, sd, CRON_UNBOUNDED, CRON_UNBOUNDED, 0, now, &iv), 1);
    assert_true(iv.start == T("2026-01-04T00:00:00Z"));
    /* After the latest run, the next interval ends in the future. */
    assert_int_equal(cron_next_interval(&c, sd, CRON_UNBOUNDED, iv.start, 0, now, &iv), 1);
    assert_true(iv.start == T("2026-01-05T00:00:00Z") && iv.end > now);
    /* A start date in the future wins. */
    sd = T("2026-02-01T00:00:00Z");
    assert_int_equal(cron_next_interval(&c, sd, CRON_UNBOUNDED, CRON_UNBOUNDED, 0, now, &iv), 1);
    assert_true(iv.start == sd);
}

static void test_before_epoch_and_far_future(void **state)
{
    (void)state;
    struct cron c;
    assert_int_equal(cron_parse(&c, "0 0 1 1 *", NULL), REMEX_OK);
    assert_true(cron_next(&c, -1000000) == 0);
    assert_true(cron_next(&c, T("9999-01-01T00:00:00Z")) == CRON_NONE);
    assert_true(cron_prev(&c, -5) == CRON_NONE);
    assert_true(cron_prev(&c, 0) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_minute_strictly_after),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_once_has_no_next),
        cmocka_unit_test(test_steps_and_ranges),
        cmocka_unit_test(test_names_and_sunday),
        cmocka_unit_test(test_month_ends),
        cmocka_unit_test(test_leap_years),
        cmocka_unit_test(test_dom_dow_or_rule),
        cmocka_unit_test(test_year_rollover),
        cmocka_unit_test(test_prev),
        cmocka_unit_test(test_invalid_expressions),
        cmocka_unit_test(test_invalid_syntax),
        cmocka_unit_test(test_valid_impossible_or_rule),
        cmocka_unit_test(test_matches_brute_force),
        cmocka_unit_test(test_long_horizon_monotone),
        cmocka_unit_test(test_intervals_catchup),
        cmocka_unit_test(test_intervals_no_catchup),
        cmocka_unit_test(test_before_epoch_and_far_future),
    };
    return cmocka_run_group_tests_name("cron", tests, NULL, NULL);
}
