/* Unit tests for hash: SHA-256 hex. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "remex/hash.h"

static void test_sha256_known(void **state)
{
    (void)state;
    char out[HASH_SHA256_HEX];
    assert_int_equal(hash_sha256_hex("", 0, out), REMEX_OK);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(hash_sha256_hex(NULL, 0, out), REMEX_OK);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(hash_sha256_hex("abc", 3, out), REMEX_OK);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* Embedded NUL bytes are data, not terminators. */
    assert_int_equal(hash_sha256_hex("a\0b", 3, out), REMEX_OK);
    assert_int_not_equal(
        strcmp(out, "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"), 0);
    assert_int_equal(strlen(out), 64);
}

static void test_hex(void **state)
{
    (void)state;
    static const unsigned char md[] = {0x00, 0x0f, 0xa5, 0xff};
    char out[9];
    memset(out, 'x', sizeof(out));
    hash_hex(md, sizeof(md), out);
    assert_string_equal(out, "000fa5ff");
    hash_hex(md, 0, out);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_known),
        cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests_name("hash", tests, NULL, NULL);
}
