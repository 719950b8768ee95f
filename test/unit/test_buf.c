/* Unit tests: buf (owned growable buffer with a hard cap). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "remex/buf.h"

static void test_empty_is_cstr(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(16);
    assert_string_equal(buf_cstr(&b), "");
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_append_and_terminate(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(1024);
    assert_int_equal(buf_puts(&b, "hello"), REMEX_OK);
    assert_int_equal(buf_putc(&b, ' '), REMEX_OK);
    assert_int_equal(buf_printf(&b, "%s-%d", "world", 42), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "hello world-42");
    assert_int_equal(b.len, 14);
    buf_free(&b);
}

static void test_cap_exact_and_over(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(8);
    assert_int_equal(buf_append(&b, "12345678", 8), REMEX_OK);
    /* One byte more fails and leaves contents intact. */
    assert_int_equal(buf_putc(&b, 'x'), REMEX_ETOOBIG);
    assert_int_equal(b.len, 8);
    assert_string_equal(buf_cstr(&b), "12345678");
    assert_true(b.alloc <= 9);
    buf_free(&b);
}

static void test_printf_over_cap_unchanged(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(10);
    assert_int_equal(buf_puts(&b, "abc"), REMEX_OK);
    assert_int_equal(buf_printf(&b, "%0100d", 1), REMEX_ETOOBIG);
    assert_string_equal(buf_cstr(&b), "abc");
    buf_free(&b);
}

static void test_overflow_size_rejected(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(SIZE_MAX);
    assert_int_equal(buf_puts(&b, "a"), REMEX_OK);
    assert_int_equal(buf_reserve(&b, SIZE_MAX), REMEX_ETOOBIG);
    assert_int_equal(buf_reserve(&b, SIZE_MAX - 1), REMEX_ETOOBIG);
    buf_free(&b);
}

static void test_consume(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(64);
    buf_puts(&b, "frame1frame2");
    buf_consume(&b, 6);
    assert_string_equal(buf_cstr(&b), "frame2");
    buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    assert_string_equal(buf_cstr(&b), "");
    buf_free(&b);
}

static void test_free_leaves_reusable(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(32);
    buf_puts(&b, "first");
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.max, 32);
    assert_int_equal(buf_puts(&b, "second"), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "second");
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_non_null(b.data);
    buf_free(&b);
}

static void test_detach(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(32);
    size_t n = 99;
    char *s = buf_detach(&b, &n);
    assert_non_null(s);
    assert_string_equal(s, "");
    assert_int_equal(n, 0);
    free(s);
    buf_puts(&b, "owned");
    s = buf_detach(&b, &n);
    assert_string_equal(s, "owned");
    assert_int_equal(n, 5);
    assert_null(b.data);
    free(s);
}

static void test_binary_content(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(1 << 20);
    char blk[1000];
    for (int i = 0; i < 1000; i++)
        blk[i] = (char)(i & 0xff);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf_append(&b, blk, sizeof(blk)), REMEX_OK);
    assert_int_equal(b.len, 1000000);
    assert_memory_equal(b.data + 999000, blk, 1000);
    assert_int_equal(b.data[b.len], '\0');
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_is_cstr),
        cmocka_unit_test(test_append_and_terminate),
        cmocka_unit_test(test_cap_exact_and_over),
        cmocka_unit_test(test_printf_over_cap_unchanged),
        cmocka_unit_test(test_overflow_size_rejected),
        cmocka_unit_test(test_consume),
        cmocka_unit_test(test_free_leaves_reusable),
        cmocka_unit_test(test_detach),
        cmocka_unit_test(test_binary_content),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
