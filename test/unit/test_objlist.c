/* Unit tests: the object-store listing replies objstore_find reads (S3 and
 * Azure XML, GCS JSON), malformed and over-cap replies included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "remex/objstore_gcs.h"
#include "remex/objstore_s3.h"

static int xml(const char *body, const char *tag, char *out, size_t cap)
{
    return objstore_s3_xml_first(body, strlen(body), tag, out, cap);
}

static void test_xml_first(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(xml("<R><Name>b</Name><Contents><Key>a/k/_SUCCESS</Key></Contents>"
                         "<Contents><Key>a/k/z</Key></Contents></R>",
                         "Key", out, sizeof(out)),
                     1);
    assert_string_equal(out, "a/k/_SUCCESS"); /* the first one */
    assert_int_equal(xml("<R><KeyCount>0</KeyCount></R>", "Key", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(xml("<R><Key></Key></R>", "Key", out, sizeof(out)), 0); /* empty */
    assert_int_equal(xml("<R><Key>unterminated", "Key", out, sizeof(out)), 0);
    assert_int_equal(xml("<Key>a\nb\x01"
                         "c</Key>",
                         "Key", out, sizeof(out)),
                     1);
    assert_string_equal(out, "abc"); /* control bytes dropped */
    assert_int_equal(xml("<Key>0123456789</Key>", "Key", out, 5), 1);
    assert_string_equal(out, "0123"); /* truncated to the cap */
    assert_int_equal(xml("<Key>x</Key>", "AVeryLongTagNameOverTheCapOfTheParser", out, 8), 0);
    /* Past OBJSTORE_LIST_REPLY_MAX nothing is looked at. */
    size_t n = OBJSTORE_LIST_REPLY_MAX + 64;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    memcpy(big + OBJSTORE_LIST_REPLY_MAX + 1, "<Key>k</Key>", 12);
    big[n] = '\0';
    assert_int_equal(objstore_s3_xml_first(big, n, "Key", out, sizeof(out)), 0);
    free(big);
}

static int gcs(const char *body, char *out, size_t cap)
{
    return objstore_gcs_list_first(body, strlen(body), out, cap);
}

static void test_gcs_list_first(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(gcs("{\"items\":[{\"name\":\"a/k\"},{\"name\":\"a/l\"}]}", out, sizeof(out)),
                     1);
    assert_string_equal(out, "a/k");
    assert_int_equal(gcs("{\"kind\":\"storage#objects\"}", out, sizeof(out)), 0);
    assert_int_equal(gcs("{\"items\":[]}", out, sizeof(out)), 0);
    assert_int_equal(gcs("{\"items\":[{\"name\":7}]}", out, sizeof(out)), 0);
    assert_int_equal(gcs("{\"items\":[{\"name\":\"0123456789\"}]}", out, 5), 0); /* too long */
    assert_string_equal(out, "");
    assert_int_equal(gcs("{\"items\":{}}", out, sizeof(out)), -1);
    assert_int_equal(gcs("[1]", out, sizeof(out)), -1);
    assert_int_equal(gcs("<html>", out, sizeof(out)), -1);
    size_t n = OBJSTORE_GCS_LIST_MAX + 1;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    assert_int_equal(objstore_gcs_list_first(big, n, out, sizeof(out)), -1);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xml_first),
        cmocka_unit_test(test_gcs_list_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
