/* Unit tests: mask (secret redaction in task logs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <openssl/evp.h>
#include <stdio.h>

#include "remex/mask.h"

static const char *apply(struct mask *m, const char *line, struct buf *out)
{
    buf_reset(out);
    assert_int_equal(mask_apply(m, line, strlen(line), out), REMEX_OK);
    return buf_cstr(out);
}

static void test_plain_value_masked(void **state)
{
    (void)state;
    struct mask *m = mask_new();
    struct buf b = BUF_INIT(4096);
    assert_int_equal(mask_add(m, "hunter22", 8), REMEX_OK);
    assert_string_equal(apply(m, "password=hunter22; again hunter22!", &b),
                        "password=***; again ***!");
    assert_string_equal(apply(m, "nothing here", &b), "nothing here");
    assert_string_equal(apply(m, "hunter2", &b), "hunter2");
    buf_free(&b);
    mask_free(m);
}

static void test_base64_forms_masked(void **state)
{
    (void)state;
    struct mask *m = mask_new();
    struct buf b = BUF_INIT(4096);
    /* "s3cr3t>?" -> standard base64 "czNjcjN0Pj8=" ; url-safe "czNjcjN0Pj8=" same here */
    assert_int_equal(mask_add(m, "s3cr3t>?", 8), REMEX_OK);
    assert_string_equal(apply(m, "b64 czNjcjN0Pj8= end", &b), "b64 *** end");
    assert_string_equal(apply(m, "nopad czNjcjN0Pj8 end", &b), "nopad *** end");
    /* A value whose base64 has '+' and '/' : 0xfb 0xff -> "+/8" */
    assert_int_equal(mask_add(m, "\xfb\xff\xfe\xfb\xff\xfe", 6), REMEX_OK);
    assert_string_equal(apply(m, "std +//++//+ url -__--__-", &b), "std *** url ***");
    buf_free(&b);
    mask_free(m);
}

static void test_urlencoded_masked(void **state)
{
    (void)state;
    struct mask *m = mask_new();
    struct buf b = BUF_INIT(4096);
    assert_int_equal(mask_add(m, "p@ss w/rd", 9), REMEX_OK);
    assert_string_equal(apply(m, "postgres://u:p%40ss%20w%2Frd@db/x", &b), "postgres://u:***@db/x");
    assert_string_equal(apply(m, "raw p@ss w/rd", &b), "raw ***");
    buf_free(&b);
    mask_free(m);
}

static void test_short_values_ignored(void **state)
{
    (void)state;
    struct mask *m = mask_new();
    struct buf b = BUF_INIT(4096);
    assert_int_equal(mask_add(m, "abcd", 4), REMEX_OK);
    assert_int_equal(mask_count(m), 0);
    assert_string_equal(apply(m, "abcd abcd", &b), "abcd abcd");
    buf_free(&b);
    mask_free(m);
}

static void test_longest_first(void **state)
{
    (void)state;
    struct mask *m = mask_new();
    struct buf b = BUF_INIT(4096);
    assert_int_equal(mask_add(m, "token", 5), REMEX_OK);
    assert_int_equal(mask_add(m, "token-extended", 14), REMEX_OK);
    assert_string_equal(apply(m, "x token-extended y token z", &b), "x *** y *** z");
    buf_free(&b);
    mask_free(m);
}

static void test_multiline_value(void **state)
{
    (void)state;
    struct mask *m = mask_new();
    struct buf b = BUF_INIT(4096);
    const char *key = "-----BEGIN KEY-----\nMIIEabcdefgh\n-----END KEY-----";
    assert_int_equal(mask_add(m, key, strlen(key)), REMEX_OK);
    assert_string_equal(apply(m, "MIIEabcdefgh", &b), "***");
    assert_string_equal(apply(m, "-----END KEY-----", &b), "***");
    buf_free(&b);
    mask_free(m);
}

/* What a task prints after `remex-task conn get ID`: the value inside a JSON string. */
static void test_json_escaped_masked(void **state)
{
    (void)state;
    struct mask *m = mask_new();
    struct buf b = BUF_INIT(4096);
    assert_int_equal(mask_add(m, "pa\"ss\\wd/1", 10), REMEX_OK);
    assert_string_equal(apply(m, "{\"password\": \"pa\\\"ss\\\\wd/1\"}", &b),
                        "{\"password\": \"***\"}");
    assert_string_equal(apply(m, "{\"password\":\"pa\\\"ss\\\\wd\\/1\"}", &b),
                        "{\"password\":\"***\"}");
    assert_int_equal(mask_add(m, "na\xc3\xafve-pw", 9), REMEX_OK);
    assert_string_equal(apply(m, "\"na\\u00efve-pw\"", &b), "\"***\"");
    assert_string_equal(apply(m, "\"na\\u00EFve-pw\"", &b), "\"***\"");
    assert_int_equal(mask_add(m, "line1\nline2", 11), REMEX_OK);
    assert_string_equal(apply(m, "{\"v\": \"line1\\nline2\"}", &b), "{\"v\": \"***\"}");
    buf_free(&b);
    mask_free(m);
}

static void test_url_encodings_masked(void **state)
{
    (void)state;
    struct mask *m = mask_new();
    struct buf b = BUF_INIT(4096);
    assert_int_equal(mask_add(m, "my pass/w*rd!", 13), REMEX_OK);
    /* form encoding: space as '+' */
    assert_string_equal(apply(m, "password=my+pass%2Fw%2Ard%21&x=1", &b), "password=***&x=1");
    /* Java URLEncoder keeps '*' */
    assert_string_equal(apply(m, "password=my+pass%2Fw*rd%21&x=1", &b), "password=***&x=1");
    /* Python quote(): '/' kept */
    assert_string_equal(apply(m, "/login/my%20pass/w%2Ard%21", &b), "/login/***");
    /* encodeURIComponent keeps ! ' ( ) * */
    assert_string_equal(apply(m, "?p=my%20pass%2Fw*rd!", &b), "?p=***");
    /* lower-case hex digits */
    assert_string_equal(apply(m, "?p=my%20pass%2fw%2ard%21", &b), "?p=***");
    buf_free(&b);
    mask_free(m);
}

/* base64 of "login:" + password (HTTP Basic) at every prefix length. */
static void test_base64_any_alignment_masked(void **state)
{
    (void)state;
    static const char *const logins[] = {"", "a:", "ab:", "abc:", "user1:", "admin:x"};
    for (size_t i = 0; i < sizeof(logins) / sizeof(logins[0]); i++) {
        struct mask *m = mask_new();
        struct buf b = BUF_INIT(4096);
        char plain[64], enc[128], line[160];
        const char *pw = "correct-horse-battery";
        assert_int_equal(mask_add(m, pw, strlen(pw)), REMEX_OK);
        int n = snprintf(plain, sizeof(plain), "%s%s%s", logins[i], pw, i % 2 ? "@host" : "");
        EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)plain, n);
        snprintf(line, sizeof(line), "Authorization: Basic %s", enc);
        const char *got = apply(m, line, &b);
        assert_non_null(strstr(got, "***"));
        /* at most the 3 characters on each side that mix in other bytes stay */
        size_t kept = strlen(got) - strlen("Authorization: Basic ***");
        size_t b64_login = 4 * ((strlen(logins[i]) + 2) / 3);
        size_t b64_tail = i % 2 ? 4 * ((strlen("@host") + 2) / 3) : 0;
        assert_true(kept <= b64_login + b64_tail + 4);
        /* none of the password's own 4-character groups survives */
        char pwenc[64];
        EVP_EncodeBlock((unsigned char *)pwenc, (const unsigned char *)pw + 3, 12);
        assert_null(strstr(got, pwenc));
        buf_free(&b);
        mask_free(m);
    }
}

static void test_duplicates_and_caps(void **state)
{
    (void)state;
    struct mask *m = mask_new();
    static char big[MASK_MAX_LEN + 2];
    memset(big, 'q', sizeof(big) - 1);
    assert_int_equal(mask_add(m, "repeat-me", 9), REMEX_OK);
    size_t n = mask_count(m);
    assert_int_equal(mask_add(m, "repeat-me", 9), REMEX_OK);
    assert_int_equal(mask_count(m), n);
    assert_int_equal(mask_add(m, big, MASK_MAX_LEN + 1), REMEX_ETOOBIG);
    mask_free(m);
}

static void test_output_cap(void **state)
{
    (void)state;
    struct mask *m = mask_new();
    struct buf b = BUF_INIT(8);
    assert_int_equal(mask_add(m, "secret", 6), REMEX_OK);
    assert_int_equal(mask_apply(m, "0123456789", 10, &b), REMEX_ETOOBIG);
    buf_free(&b);
    mask_free(m);
}

static void test_binary_line(void **state)
{
    (void)state;
    struct mask *m = mask_new();
    struct buf b = BUF_INIT(4096);
    const char line[] = {'a', '\0', 's', 'e', 'c', 'r', 'e', 't', '\0', 'b'};
    assert_int_equal(mask_add(m, "secret", 6), REMEX_OK);
    assert_int_equal(mask_apply(m, line, sizeof(line), &b), REMEX_OK);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "a\0***\0b", 7);
    buf_free(&b);
    mask_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_value_masked),
        cmocka_unit_test(test_base64_forms_masked),
        cmocka_unit_test(test_urlencoded_masked),
        cmocka_unit_test(test_short_values_ignored),
        cmocka_unit_test(test_longest_first),
        cmocka_unit_test(test_multiline_value),
        cmocka_unit_test(test_duplicates_and_caps),
        cmocka_unit_test(test_output_cap),
        cmocka_unit_test(test_binary_line),
        cmocka_unit_test(test_json_escaped_masked),
        cmocka_unit_test(test_url_encodings_masked),
        cmocka_unit_test(test_base64_any_alignment_masked),
    };
    return cmocka_run_group_tests_name("mask", tests, NULL, NULL);
}
