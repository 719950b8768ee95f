/* Unit tests: tmpl (template expansion). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "remex/tmpl.h"

static json_t *params, *conf;

static struct tmpl_task_vars vars(void)
{
    struct tmpl_task_vars v = {
        .dag_id = "etl",
        .task_id = "load",
        .run_id = "manual__2026-11-22T10:00:00+00:00",
        .try_number = 2,
        .map_index = -1,
        .logical_date = 1795341600,        /* 2026-11-22T10:00:00Z */
        .data_interval_start = 1795305600, /* 2026-11-22T00:00:00Z */
        .data_interval_end = 1795392000,   /* 2026-11-23T00:00:00Z */
        .params = params,
        .conf = conf,
    };
    return v;
}

static remex_err expand(const char *in, struct buf *out, struct remex_error *e)
{
    struct tmpl_task_vars v = vars();
    buf_reset(out);
    return tmpl_expand(in, strlen(in), tmpl_task_lookup, &v, out, e);
}

static int setup(void **state)
{
    (void)state;
    params = json_pack("{s:s, s:i, s:{s:b}}", "table", "orders", "limit", 500, "opts", "x", 1);
    conf = json_pack("{s:s}", "region", "eu-west");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(params);
    json_decref(conf);
    return 0;
}

static void test_plain_text_unchanged(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    struct remex_error e;
    assert_int_equal(expand("echo hello { world } }}", &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "echo hello { world } }}");
    buf_free(&b);
}

static void test_airflow_dates(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    struct remex_error e;
    assert_int_equal(expand("{{ds}} {{ ds_nodash }} {{ ts }} {{ts_nodash}}", &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b),
                        "2026-11-22 20261122 2026-11-22T10:00:00+00:00 20261122T100000");
    assert_int_equal(expand("{{ data_interval_start }}/{{ data_interval_end }}", &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "2026-11-22T00:00:00+00:00/2026-11-23T00:00:00+00:00");
    buf_free(&b);
}

static void test_ids_and_numbers(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    struct remex_error e;
    assert_int_equal(
        expand("{{ dag_id }}.{{ task_id }}#{{ try_number }}@{{ map_index }} {{ run_id }}", &b, &e),
        REMEX_OK);
    assert_string_equal(buf_cstr(&b), "etl.load#2@-1 manual__2026-11-22T10:00:00+00:00");
    buf_free(&b);
}

static void test_params_and_conf(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    struct remex_error e;
    assert_int_equal(
        expand("t={{ params.table }} n={{ params.limit }} o={{ params.opts }}", &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "t=orders n=500 o={\"x\":true}");
    assert_int_equal(expand("{{ conf.region }}", &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "eu-west");
    buf_free(&b);
}

static void test_unknown_never_empty(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    struct remex_error e;
    assert_int_equal(expand("run {{ dss }} now", &b, &e), REMEX_ENOTFOUND);
    assert_string_equal(e.msg, "column 8: unknown template variable 'dss'");
    assert_int_equal(expand("{{ params.missing }}", &b, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "'params.missing'"));
    assert_int_equal(expand("{{ conf.nope }}", &b, &e), REMEX_ENOTFOUND);
    buf_free(&b);
}

static void test_malformed(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    struct remex_error e;
    assert_int_equal(expand("abc {{ ds", &b, &e), REMEX_EPARSE);
    assert_string_equal(e.msg, "column 5: unclosed '{{'");
    assert_int_equal(expand("{{ }}", &b, &e), REMEX_EPARSE);
    assert_int_equal(expand("{{ ds | upper }}", &b, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "unexpected '|'"));
    assert_int_equal(expand("{{ 1abc }}", &b, &e), REMEX_EPARSE);
    assert_int_equal(expand("{{ params. }}", &b, &e), REMEX_EPARSE);
    assert_int_equal(expand("{{ 'open }}", &b, &e), REMEX_EPARSE);
    buf_free(&b);
}

/* A non-ASCII name is reported with its whole character, never one byte of it. */
static void test_non_ascii_reported_whole(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    struct remex_error e;
    assert_int_equal(expand("{{ params.na\xc3\xafve }}", &b, &e), REMEX_EPARSE);
    assert_string_equal(e.msg, "column 13: unexpected '\xc3\xaf' in template");
    assert_int_equal(expand("{{ ds\xe2\x82\xac }}", &b, &e), REMEX_EPARSE);
    assert_string_equal(e.msg, "column 6: unexpected '\xe2\x82\xac' in template");
    assert_int_equal(expand("{{ ds\xc3 }}", &b, &e), REMEX_EPARSE);
    assert_string_equal(e.msg, "column 6: unexpected byte 0xc3 (not UTF-8) in template");
    buf_free(&b);
}

static void test_literal_braces(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    struct remex_error e;
    assert_int_equal(expand("a {{ '{{ ds }}' }} b {{ \"}}\" }}", &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "a {{ ds }} b }}");
    buf_free(&b);
}

static void test_single_pass(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    struct remex_error e;
    json_t *p = json_pack("{s:s}", "x", "{{ ds }}");
    struct tmpl_task_vars v = vars();
    v.params = p;
    assert_int_equal(tmpl_expand("{{ params.x }}", 14, tmpl_task_lookup, &v, &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "{{ ds }}");
    json_decref(p);
    buf_free(&b);
}

/* A date the C library cannot represent is an error whose message is filled in. */
static void test_date_out_of_range_message(void **state)
{
    (void)state;
    struct tmpl_task_vars v = vars();
    struct buf b = BUF_INIT(4096);
    struct remex_error e;
    static const char in[] = "run {{ ds }}";

    v.logical_date = LLONG_MAX;
    snprintf(e.msg, sizeof(e.msg), "stale");
    assert_int_equal(tmpl_expand(in, strlen(in), tmpl_task_lookup, &v, &b, &e), REMEX_EINVAL);
    assert_int_equal(e.code, REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "ds"));
    assert_null(strstr(e.msg, "stale"));
    buf_free(&b);
}

static void test_cap(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(12);
    struct remex_error e;
    assert_int_equal(expand("{{ ts }}", &b, &e), REMEX_ETOOBIG);
    assert_non_null(strstr(e.msg, "size cap"));
    buf_free(&b);
}

static void test_truncated_everywhere(void **state)
{
    (void)state;
    const char *t = "x {{ ds }} y {{ params.table }} {{ 'lit' }} z";
    struct buf b = BUF_INIT(4096);
    struct remex_error e;
    struct tmpl_task_vars v = vars();
    for (size_t n = 0; n <= strlen(t); n++) {
        buf_reset(&b);
        remex_err rc = tmpl_expand(t, n, tmpl_task_lookup, &v, &b, &e);
        assert_true(rc == REMEX_OK || rc == REMEX_EPARSE || rc == REMEX_ENOTFOUND);
    }
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_text_unchanged),
        cmocka_unit_test(test_airflow_dates),
        cmocka_unit_test(test_date_out_of_range_message),
        cmocka_unit_test(test_ids_and_numbers),
        cmocka_unit_test(test_params_and_conf),
        cmocka_unit_test(test_unknown_never_empty),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_non_ascii_reported_whole),
        cmocka_unit_test(test_literal_braces),
        cmocka_unit_test(test_single_pass),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_truncated_everywhere),
    };
    return cmocka_run_group_tests_name("tmpl", tests, setup, teardown);
}
