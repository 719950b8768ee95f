/* Unit tests: table (aligned plain-text tables with sanitised cells). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "remex/table.h"

static const char *const HDR[] = {"ID", "NAME", "STATE"};

static void test_aligned(void **state)
{
    (void)state;
    struct table t;
    struct buf out = BUF_INIT(4096);

    assert_int_equal(table_init(&t, 3, HDR), REMEX_OK);
    assert_int_equal(table_add(&t, (const char *const[]){"1", "agent-eu-1", "running"}), REMEX_OK);
    assert_int_equal(table_add(&t, (const char *const[]){"12", "b", NULL}), REMEX_OK);
    assert_int_equal(table_render(&t, 0, &out), REMEX_OK);
    assert_string_equal(buf_cstr(&out), "ID  NAME        STATE\n"
                                        "1   agent-eu-1  running\n"
                                        "12  b           -\n");
    buf_reset(&out);
    assert_int_equal(table_render(&t, 1, &out), REMEX_OK);
    assert_string_equal(buf_cstr(&out), "1   agent-eu-1  running\n12  b           -\n");
    table_free(&t);
    buf_free(&out);
}

static void test_headers_only(void **state)
{
    (void)state;
    struct table t;
    struct buf out = BUF_INIT(4096);

    assert_int_equal(table_init(&t, 3, HDR), REMEX_OK);
    assert_int_equal(table_render(&t, 0, &out), REMEX_OK);
    assert_string_equal(buf_cstr(&out), "ID  NAME  STATE\n");
    buf_reset(&out);
    assert_int_equal(table_render(&t, 1, &out), REMEX_OK);
    assert_string_equal(buf_cstr(&out), "");
    table_free(&t);
    buf_free(&out);
}

static void test_utf8_width(void **state)
{
    (void)state;
    struct table t;
    struct buf out = BUF_INIT(4096);

    assert_int_equal(table_init(&t, 2, (const char *const[]){"K", "V"}), REMEX_OK);
    assert_int_equal(table_add(&t, (const char *const[]){"\xc3\xa9t\xc3\xa9", "x"}), REMEX_OK);
    assert_int_equal(table_add(&t, (const char *const[]){"ab", "y"}), REMEX_OK);
    assert_int_equal(table_render(&t, 0, &out), REMEX_OK);
    assert_string_equal(buf_cstr(&out), "K    V\n\xc3\xa9t\xc3\xa9  x\nab   y\n");
    table_free(&t);
    buf_free(&out);
}

static void test_hostile_cells_sanitised(void **state)
{
    (void)state;
    struct table t;
    struct buf out = BUF_INIT(4096);

    assert_int_equal(table_init(&t, 2, (const char *const[]){"A", "B"}), REMEX_OK);
    /* Terminal escape, newline, tab, DEL, a lone continuation byte, an overlong
     * encoding, a C1 control and a surrogate. */
    assert_int_equal(table_add(&t, (const char *const[]){"\x1b[2Jx\ny\tz\x7f",
                                                         "\x80\xc0\xaf\xc2\x9b\xed\xa0\x80"}),
                     REMEX_OK);
    assert_int_equal(table_render(&t, 1, &out), REMEX_OK);
    assert_string_equal(buf_cstr(&out), "?[2Jx?y?z?  ????????\n");
    table_free(&t);
    buf_free(&out);
}

static void test_long_cell_cut(void **state)
{
    (void)state;
    static char big[TABLE_CELL_MAX * 2];
    char dst[TABLE_CELL_MAX];
    size_t n;

    memset(big, 'a', sizeof(big) - 1);
    n = table_sanitize(dst, sizeof(dst), big);
    assert_true(strlen(dst) < TABLE_CELL_MAX);
    assert_int_equal(n, strlen(dst));
    assert_memory_equal(dst + strlen(dst) - 3, "...", 3);

    /* A small destination cuts on a code point boundary. */
    n = table_sanitize(dst, 8, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    assert_string_equal(dst, "\xc3\xa9\xc3\xa9...");
    assert_int_equal(n, 5);
    assert_int_equal(table_sanitize(dst, 9, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"), 4); /* fits */
    assert_int_equal(table_sanitize(dst, 0, "x"), 0);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct table t;
    const char *many[TABLE_MAX_COLS + 1] = {0};

    assert_int_equal(table_init(&t, 0, HDR), REMEX_EINVAL);
    assert_int_equal(table_init(&t, TABLE_MAX_COLS + 1, many), REMEX_EINVAL);
    assert_int_equal(table_init(&t, 2, NULL), REMEX_EINVAL);
    assert_int_equal(table_add(&t, HDR), REMEX_EINVAL); /* failed init leaves it unusable */
    table_free(&t);
}

static void test_many_rows_and_cap(void **state)
{
    (void)state;
    struct table t;
    struct buf out = BUF_INIT(64);
    char id[32];
    int i;

    assert_int_equal(table_init(&t, 1, (const char *const[]){"N"}), REMEX_OK);
    for (i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "%d", i);
        assert_int_equal(table_add(&t, (const char *const[]){id}), REMEX_OK);
    }
    assert_int_equal(t.nrows, 100);
    assert_int_equal(buf_puts(&out, "keep"), REMEX_OK);
    assert_int_equal(table_render(&t, 0, &out), REMEX_ETOOBIG);
    assert_string_equal(buf_cstr(&out), "keep"); /* unchanged on error */
    table_free(&t);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aligned),           cmocka_unit_test(test_headers_only),
        cmocka_unit_test(test_utf8_width),        cmocka_unit_test(test_hostile_cells_sanitised),
        cmocka_unit_test(test_long_cell_cut),     cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_many_rows_and_cap),
    };
    return cmocka_run_group_tests_name("table", tests, NULL, NULL);
}
