/* urlenc: percent-decoding, strict and lenient, in place and into a buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

#include "remex/urlenc.h"

static const char *dec(const char *in, unsigned flags, char *out, size_t *len)
{
    return urlenc_decode(out, in, strlen(in), flags, len);
}

static void test_decodes(void **state)
{
    (void)state;
    char out[64];
    size_t n = 0;
    assert_null(dec("a%2Fb%20c+d", 0, out, &n));
    assert_string_equal(out, "a/b c+d");
    assert_int_equal(n, 7);
    assert_null(dec("a%2fb+c", URLENC_PLUS_SPACE, out, NULL));
    assert_string_equal(out, "a/b c");
    assert_null(dec("%C3%A9t%C3%A9", URLENC_STRICT, out, &n));
    assert_string_equal(out, "\xc3\xa9t\xc3\xa9");
    assert_int_equal(n, 5);
    assert_null(dec("", URLENC_STRICT, out, &n));
    assert_int_equal(n, 0);
}

static void test_in_place(void **state)
{
    (void)state;
    char s[] = "run%2F1%3A2";
    assert_null(urlenc_decode(s, s, strlen(s), 0, NULL));
    assert_string_equal(s, "run/1:2");
}

static void test_malformed(void **state)
{
    (void)state;
    char out[64];
    /* Lenient: a stray '%' is kept as it is. */
    assert_null(dec("100%", 0, out, NULL));
    assert_string_equal(out, "100%");
    assert_null(dec("%zz%4", 0, out, NULL));
    assert_string_equal(out, "%zz%4");
    /* Strict: refused with the reason. */
    assert_string_equal(dec("100%", URLENC_STRICT, out, NULL), "truncated percent-encoding");
    assert_string_equal(dec("%4", URLENC_STRICT, out, NULL), "truncated percent-encoding");
    assert_string_equal(dec("%zz1", URLENC_STRICT, out, NULL), "invalid percent-encoding");
    /* Never a NUL byte in the result, in either mode. */
    assert_string_equal(dec("a%00b", 0, out, NULL), "encoded NUL byte");
    assert_string_equal(dec("a%00b", URLENC_STRICT, out, NULL), "encoded NUL byte");
    char raw[] = {'a', '\0', 'b'};
    assert_string_equal(urlenc_decode(out, raw, 3, 0, NULL), "NUL byte");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decodes),
        cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
