/* Unit tests: timeutil (clocks, RFC 3339, durations, sizes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "remex/timeutil.h"

static void test_sleep_ms(void **state)
{
    (void)state;
    uint64_t t0 = timeutil_mono_ns();
    timeutil_sleep_ms(20);
    uint64_t took = timeutil_mono_ns() - t0;
    assert_true(took >= 20000000u);
    t0 = timeutil_mono_ns();
    timeutil_sleep_ms(0);
    assert_true(timeutil_mono_ns() - t0 < 20000000u);
}

static void test_clocks(void **state)
{
    (void)state;
    uint64_t a = timeutil_mono_ns(), b = timeutil_mono_ns();
    assert_true(b >= a);
    assert_true(timeutil_mono_ms() >= a / 1000000);
    /* after 2020-01-01 and before 2200 */
    assert_true(timeutil_real_s() > 1577836800);
    assert_true(timeutil_real_ms() / 1000 >= timeutil_real_s() - 1);
    assert_true(timeutil_real_s() < 7258118400LL);
}

static void test_rfc3339_format(void **state)
{
    (void)state;
    char out[TIMEUTIL_RFC3339_MAX];
    assert_int_equal(timeutil_rfc3339_format(0, 0, out, sizeof(out)), REMEX_OK);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    assert_int_equal(timeutil_rfc3339_format(1795341600123LL, 1, out, sizeof(out)), REMEX_OK);
    assert_string_equal(out, "2026-11-22T10:00:00.123Z");
    assert_int_equal(timeutil_rfc3339_format(1795341600999LL, 0, out, sizeof(out)), REMEX_OK);
    assert_string_equal(out, "2026-11-22T10:00:00Z");
    assert_int_equal(timeutil_rfc3339_format(-1, 1, out, sizeof(out)), REMEX_OK);
    assert_string_equal(out, "1969-12-31T23:59:59.999Z");
    assert_int_equal(timeutil_rfc3339_format(951782400000LL, 0, out, sizeof(out)), REMEX_OK);
    assert_string_equal(out, "2000-02-29T00:00:00Z");
    assert_int_equal(timeutil_rfc3339_format(INT64_MAX, 0, out, sizeof(out)), REMEX_EINVAL);
    assert_int_equal(timeutil_rfc3339_format(INT64_MIN, 0, out, sizeof(out)), REMEX_EINVAL);
    assert_int_equal(timeutil_rfc3339_format(0, 1, out, 10), REMEX_ETOOBIG);
    assert_string_equal(out, "");
}

static void test_rfc3339_parse_good(void **state)
{
    (void)state;
    int64_t t;
    assert_int_equal(timeutil_rfc3339_parse("2026-11-22T10:00:00Z", &t, NULL), REMEX_OK);
    assert_int_equal(t, 1795341600000LL);
    assert_int_equal(timeutil_rfc3339_parse("2026-11-22T10:00:00.123Z", &t, NULL), REMEX_OK);
    assert_int_equal(t, 1795341600123LL);
    assert_int_equal(timeutil_rfc3339_parse("2026-11-22T12:00:00+02:00", &t, NULL), REMEX_OK);
    assert_int_equal(t, 1795341600000LL);
    assert_int_equal(timeutil_rfc3339_parse("2026-11-22T04:30:00.5-05:30", &t, NULL), REMEX_OK);
    assert_int_equal(t, 1795341600500LL);
    assert_int_equal(timeutil_rfc3339_parse("2026-11-22t10:00:00.123456789z", &t, NULL), REMEX_OK);
    assert_int_equal(t, 1795341600123LL);
    assert_int_equal(timeutil_rfc3339_parse("2024-02-29T00:00:00Z", &t, NULL), REMEX_OK);
    assert_int_equal(timeutil_rfc3339_parse("1969-12-31T23:59:59.999Z", &t, NULL), REMEX_OK);
    assert_int_equal(t, -1);
}

static void test_rfc3339_roundtrip(void **state)
{
    (void)state;
    char out[TIMEUTIL_RFC3339_MAX];
    int64_t back;
    for (int64_t t = -62167219200000LL; t < 253402300799999LL; t += 9876543210987LL) {
        assert_int_equal(timeutil_rfc3339_format(t, 1, out, sizeof(out)), REMEX_OK);
        assert_int_equal(timeutil_rfc3339_parse(out, &back, NULL), REMEX_OK);
        assert_int_equal(back, t);
    }
}

static void test_rfc3339_parse_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2026-02-30T00:00:00Z",
        "2025-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-22T24:00:00Z",
        "2026-11-22T10:60:00Z",
        "2026-11-22T10:00:60Z",
        "2026-11-22 10:00:00Z",
        "2026-11-22T10:00:00",
        "2026-11-22T10:00:00-0530",
        "2026-11-22T10:00:00+24:00",
        "2026-11-22T10:00:00+02:60",
        "2026-11-22T10:00:00.Z",
        "2026-11-22T10:00:00.1234567890Z",
        "2026-11-22T10:00:00Zjunk",
        "2026-11-22",
        "26-11-22T10:00:00Z",
        "2026-1-22T10:00:00Z",
        "+2026-11-22T10:00:00Z",
    };
    struct remex_error e;
    int64_t t = 42;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        remex_errclear(&e);
        assert_int_equal(timeutil_rfc3339_parse(bad[i], &t, &e), REMEX_EPARSE);
        assert_int_equal(e.code, REMEX_EPARSE);
        assert_non_null(strstr(e.msg, "invalid RFC 3339 timestamp"));
        assert_int_equal(t, 42);
    }
    timeutil_rfc3339_parse("2026-02-30T00:00:00Z", &t, &e);
    assert_string_equal(e.msg, "invalid RFC 3339 timestamp: day does not exist in that month");
    timeutil_rfc3339_parse("2026-11-22T24:00:00Z", &t, &e);
    assert_string_equal(e.msg, "invalid RFC 3339 timestamp: hour must be 00-23");
}

static void test_duration_parse_good(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"0", 0},           {"0s", 0},
        {"30s", 30000},     {"5m", 300000},
        {"1h30m", 5400000}, {"250ms", 250},
        {"2d", 172800000},  {"1h30m15s", 5415000},
        {"1s500ms", 1500},  {"1d2h3m4s5ms", 93784005},
        {"90m", 5400000},   {"9223372036854775807ms", 9223372036854775807ULL},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t ms = 1;
        assert_int_equal(timeutil_duration_parse(good[i].s, &ms, NULL), REMEX_OK);
        assert_int_equal(ms, good[i].ms);
    }
}

static void test_duration_parse_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",      "30",   "1",   "-5s", "+5s", "5",  "1.5h", "5 m", " 5m",  "5m ",   "5x",
        "30m1h", "1h1h", "5sm", "h",   "ms",  "1w", "5M",   "5S",  "1h30", "0x10s",
    };
    struct remex_error e;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms = 7;
        remex_errclear(&e);
        assert_int_not_equal(timeutil_duration_parse(bad[i], &ms, &e), REMEX_OK);
        assert_int_equal(ms, 7);
        assert_non_null(strstr(e.msg, "duration"));
    }
}

static void test_duration_overflow(void **state)
{
    (void)state;
    struct remex_error e;
    uint64_t ms;
    assert_int_equal(timeutil_duration_parse("9223372036854775808ms", &ms, &e), REMEX_ETOOBIG);
    assert_int_equal(timeutil_duration_parse("99999999999999999999999s", &ms, &e), REMEX_ETOOBIG);
    assert_int_equal(timeutil_duration_parse("106751991168d", &ms, &e), REMEX_ETOOBIG);
    assert_int_equal(timeutil_duration_parse("106751991167d7h12m55s807ms", &ms, &e), REMEX_OK);
    assert_int_equal(ms, (uint64_t)INT64_MAX);
    assert_int_equal(timeutil_duration_parse("106751991167d7h12m55s808ms", &ms, &e), REMEX_ETOOBIG);
    assert_string_equal(e.msg, "duration too large");
}

static void test_duration_format(void **state)
{
    (void)state;
    static const struct {
        uint64_t ms;
        const char *s;
    } cases[] = {
        {0, "0s"},
        {1, "1ms"},
        {1500, "1s500ms"},
        {30000, "30s"},
        {90000, "1m30s"},
        {3600000, "1h"},
        {5415000, "1h30m15s"},
        {86400000, "1d"},
        {93784005, "1d2h3m4s5ms"},
    };
    char out[TIMEUTIL_DURATION_MAX];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(timeutil_duration_format(cases[i].ms, out, sizeof(out)), REMEX_OK);
        assert_string_equal(out, cases[i].s);
    }
    /* every value round-trips, the largest included */
    for (uint64_t v = 1; v < (uint64_t)INT64_MAX / 3; v = v * 3 + 7) {
        uint64_t back;
        assert_int_equal(timeutil_duration_format(v, out, sizeof(out)), REMEX_OK);
        assert_int_equal(timeutil_duration_parse(out, &back, NULL), REMEX_OK);
        assert_int_equal(back, v);
    }
    assert_int_equal(timeutil_duration_format((uint64_t)INT64_MAX, out, sizeof(out)), REMEX_OK);
    assert_string_equal(out, "106751991167d7h12m55s807ms");
    assert_int_equal(timeutil_duration_format(5415000, out, 5), REMEX_ETOOBIG);
    /* A zero-sized buffer is never written to. */
    char guard[2] = {'x', 'y'};
    assert_int_equal(timeutil_duration_format(90000, guard, 0), REMEX_ETOOBIG);
    assert_int_equal(guard[0], 'x');
    assert_string_equal(out, "");
}

static void test_size_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"123", 123},
        {"0", 0},
        {"123B", 123},
        {"64MiB", 64ULL << 20},
        {"1GiB", 1ULL << 30},
        {"512KiB", 512ULL << 10},
        {"100MB", 100000000},
        {"10kB", 10000},
        {"10KB", 10000},
        {"64 MiB", 64ULL << 20},
        {"15EiB", 15ULL << 60},
        {"18446744073709551615", UINT64_MAX},
        {"18EB", 18000000000000000000ULL},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t v = 1;
        assert_int_equal(timeutil_size_parse(good[i].s, &v, NULL), REMEX_OK);
        assert_int_equal(v, good[i].v);
    }
    static const char *const bad[] = {"",     "MiB", "-1",   "1.5GiB", "64mib",  "64 ", "64  MiB",
                                      "64Mi", "64K", "0x10", " 64",    "64MiBs", "1kb"};
    struct remex_error e;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 9;
        assert_int_equal(timeutil_size_parse(bad[i], &v, &e), REMEX_EPARSE);
        assert_int_equal(v, 9);
        assert_non_null(strstr(e.msg, "expected a size"));
    }
    uint64_t v;
    assert_int_equal(timeutil_size_parse("16EiB", &v, &e), REMEX_ETOOBIG);
    assert_int_equal(timeutil_size_parse("19EB", &v, &e), REMEX_ETOOBIG);
    assert_int_equal(timeutil_size_parse("18446744073709551616", &v, &e), REMEX_ETOOBIG);
    assert_string_equal(e.msg, "size too large");
}

static void test_size_format(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        const char *s;
    } cases[] = {
        {0, "0B"},
        {123, "123B"},
        {1024, "1KiB"},
        {1000, "1kB"},
        {64ULL << 20, "64MiB"},
        {100000000, "100MB"},
        {1ULL << 30, "1GiB"},
        {1536, "1536B"},
        {UINT64_MAX, "18446744073709551615B"},
    };
    char out[TIMEUTIL_SIZE_MAX];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t back;
        assert_int_equal(timeutil_size_format(cases[i].v, out, sizeof(out)), REMEX_OK);
        assert_string_equal(out, cases[i].s);
        assert_int_equal(timeutil_size_parse(out, &back, NULL), REMEX_OK);
        assert_int_equal(back, cases[i].v);
    }
    assert_int_equal(timeutil_size_format(123, out, 4), REMEX_ETOOBIG);
    assert_string_equal(out, "");
}

static void test_civil(void **state)
{
    (void)state;
    static const struct {
        int64_t y;
        int m, d;
        int64_t days;
    } cases[] = {
        {1970, 1, 1, 0},     {1969, 12, 31, -1},      {2000, 2, 29, 11016},
        {2000, 3, 1, 11017}, {1900, 3, 1, -25508},    {2026, 11, 22, 20779},
        {0, 1, 1, -719528},  {9999, 12, 31, 2932896}, {-1, 12, 31, -719529},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t y;
        int m, d;
        assert_int_equal(timeutil_days_from_civil(cases[i].y, cases[i].m, cases[i].d),
                         cases[i].days);
        timeutil_civil_from_days(cases[i].days, &y, &m, &d);
        assert_int_equal(y, cases[i].y);
        assert_int_equal(m, cases[i].m);
        assert_int_equal(d, cases[i].d);
    }
    /* Every day of 1999-2001 round-trips and follows the previous one. */
    for (int64_t z = 10592; z < 11688; z++) {
        int64_t y;
        int m, d;
        timeutil_civil_from_days(z, &y, &m, &d);
        assert_int_equal(timeutil_days_from_civil(y, m, d), z);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_sleep_ms),
        cmocka_unit_test(test_rfc3339_format),
        cmocka_unit_test(test_rfc3339_parse_good),
        cmocka_unit_test(test_rfc3339_roundtrip),
        cmocka_unit_test(test_rfc3339_parse_bad),
        cmocka_unit_test(test_duration_parse_good),
        cmocka_unit_test(test_duration_parse_bad),
        cmocka_unit_test(test_duration_overflow),
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_size_parse),
        cmocka_unit_test(test_size_format),
        cmocka_unit_test(test_civil),
    };
    return cmocka_run_group_tests_name("timeutil", tests, NULL, NULL);
}
