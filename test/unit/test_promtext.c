/* Unit tests: promtext (Prometheus text exposition). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "remex/promtext.h"

static void test_family_and_samples(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    assert_int_equal(promtext_family(&b, "remex_x_total", "counter", "Things done."), REMEX_OK);
    const char *l[] = {"role", "worker", "instance", "w1"};
    assert_int_equal(promtext_sample(&b, "remex_x_total", l, 2, 42), REMEX_OK);
    assert_int_equal(promtext_sample(&b, "remex_y", NULL, 0, 0.25), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "# HELP remex_x_total Things done.\n"
                                      "# TYPE remex_x_total counter\n"
                                      "remex_x_total{role=\"worker\",instance=\"w1\"} 42\n"
                                      "remex_y 0.25\n");
    buf_free(&b);
}

static void test_escaping(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    assert_int_equal(promtext_family(&b, "m", "gauge", "a\\b\nc \"q\""), REMEX_OK);
    const char *l[] = {"path", "/a\"b\\c\nd"};
    assert_int_equal(promtext_sample(&b, "m", l, 1, 1), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "# HELP m a\\\\b\\nc \"q\"\n# TYPE m gauge\n"
                                      "m{path=\"/a\\\"b\\\\c\\nd\"} 1\n");
    buf_free(&b);
}

static void test_values(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    promtext_sample(&b, "a", NULL, 0, NAN);
    promtext_sample(&b, "b", NULL, 0, INFINITY);
    promtext_sample(&b, "c", NULL, 0, -INFINITY);
    promtext_sample(&b, "d", NULL, 0, -3);
    promtext_sample(&b, "e", NULL, 0, 1e300);
    promtext_sample(&b, "f", NULL, 0, 84196155392.0);
    assert_string_equal(buf_cstr(&b), "a NaN\nb +Inf\nc -Inf\nd -3\ne 1.0000000000000001e+300\n"
                                      "f 84196155392\n");
    buf_free(&b);
}

static void test_bad_names_refused(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    const char *bad_label[] = {"1x", "v"}, *reserved[] = {"__name__", "v"},
               *null_value[] = {"k", NULL};
    assert_int_equal(promtext_family(&b, "9lives", "gauge", "x"), REMEX_EINVAL);
    assert_int_equal(promtext_family(&b, "ok", "histogram", "x"), REMEX_EINVAL);
    assert_int_equal(promtext_sample(&b, "a-b", NULL, 0, 1), REMEX_EINVAL);
    assert_int_equal(promtext_sample(&b, "a", bad_label, 1, 1), REMEX_EINVAL);
    assert_int_equal(promtext_sample(&b, "a", reserved, 1, 1), REMEX_EINVAL);
    assert_int_equal(promtext_sample(&b, "a", null_value, 1, 1), REMEX_EINVAL);
    assert_int_equal(promtext_sample(&b, "a", NULL, 1, 1), REMEX_EINVAL);
    assert_int_equal(b.len, 0);
    assert_true(promtext_name_ok("remex:agent_up"));
    assert_false(promtext_label_ok("a:b"));
    buf_free(&b);
}

static void test_cap_leaves_buffer_unchanged(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(20);
    const char *l[] = {"k", "a value that does not fit"};
    assert_int_equal(promtext_sample(&b, "m", NULL, 0, 1), REMEX_OK);
    assert_int_equal(promtext_sample(&b, "m", l, 1, 1), REMEX_ETOOBIG);
    assert_string_equal(buf_cstr(&b), "m 1\n");
    assert_int_equal(promtext_family(&b, "m", "gauge", "a help text far too long"), REMEX_ETOOBIG);
    assert_string_equal(buf_cstr(&b), "m 1\n");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_and_samples),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_bad_names_refused),
        cmocka_unit_test(test_cap_leaves_buffer_unchanged),
    };
    return cmocka_run_group_tests_name("promtext", tests, NULL, NULL);
}
