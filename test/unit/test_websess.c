/* Unit tests: websess (UI session values, CSRF tokens, Cookie and Origin checks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "remex/websess.h"

static const unsigned char KEY[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char KEY2[32] = "fedcba9876543210fedcba9876543210";
#define NOW 1800000000LL

static void test_issue_verify_roundtrip(void **state)
{
    (void)state;
    char v[WEBSESS_VALUE_MAX];
    struct websess s = {0};
    assert_int_equal(websess_issue(KEY, NOW + 60, v, sizeof(v)), REMEX_OK);
    assert_true(strncmp(v, "v1.1800000060.", 14) == 0);
    assert_int_equal(strlen(v), 14 + 43 + 1 + 43);
    assert_int_equal(websess_verify(KEY, v, strlen(v), NOW, &s), REMEX_OK);
    assert_int_equal(s.exp_s, NOW + 60);
    assert_int_equal(strlen(s.nonce), WEBSESS_TOKEN_LEN);
    assert_memory_equal(s.nonce, v + 14, WEBSESS_TOKEN_LEN);
    /* two sessions never share a nonce */
    char w[WEBSESS_VALUE_MAX];
    assert_int_equal(websess_issue(KEY, NOW + 60, w, sizeof(w)), REMEX_OK);
    assert_string_not_equal(v, w);
    /* another key, expiry */
    assert_int_equal(websess_verify(KEY2, v, strlen(v), NOW, &s), REMEX_EAUTH);
    assert_int_equal(websess_verify(KEY, v, strlen(v), NOW + 60, &s), REMEX_ETIMEOUT);
    assert_int_equal(websess_issue(KEY, 0, v, sizeof(v)), REMEX_EINVAL);
    assert_int_equal(websess_issue(KEY, NOW, v, 64), REMEX_EINVAL);
}

static void test_tampered_and_malformed(void **state)
{
    (void)state;
    char v[WEBSESS_VALUE_MAX], t[WEBSESS_VALUE_MAX + 8];
    struct websess s;
    assert_int_equal(websess_issue(KEY, NOW + 60, v, sizeof(v)), REMEX_OK);
    size_t n = strlen(v);
    /* a later expiry with the old MAC */
    snprintf(t, sizeof(t), "%s", v);
    t[5] = '9';
    assert_int_equal(websess_verify(KEY, t, n, NOW, &s), REMEX_EAUTH);
    /* one nonce character changed */
    snprintf(t, sizeof(t), "%s", v);
    t[20] = t[20] == 'A' ? 'B' : 'A';
    assert_int_equal(websess_verify(KEY, t, n, NOW, &s), REMEX_EAUTH);
    /* one MAC character changed */
    snprintf(t, sizeof(t), "%s", v);
    t[n - 1] = t[n - 1] == 'A' ? 'B' : 'A';
    assert_int_equal(websess_verify(KEY, t, n, NOW, &s), REMEX_EAUTH);
    /* truncated, extended, wrong characters, wrong version, leading zero */
    assert_int_equal(websess_verify(KEY, v, n - 1, NOW, &s), REMEX_EPARSE);
    snprintf(t, sizeof(t), "%sA", v);
    assert_int_equal(websess_verify(KEY, t, n + 1, NOW, &s), REMEX_EPARSE);
    snprintf(t, sizeof(t), "%s", v);
    t[30] = '+';
    assert_int_equal(websess_verify(KEY, t, n, NOW, &s), REMEX_EPARSE);
    snprintf(t, sizeof(t), "%s", v);
    t[1] = '2';
    assert_int_equal(websess_verify(KEY, t, n, NOW, &s), REMEX_EPARSE);
    const char *bad[] = {"",
                         "v1.",
                         "v1..",
                         "v1.0123.x.y",
                         "v1.12.a.b",
                         "v2.1.a.b",
                         "v1.99999999999999999999.aaaa.bbbb"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(websess_verify(KEY, bad[i], strlen(bad[i]), NOW, &s), REMEX_EPARSE);
    char big[WEBSESS_VALUE_MAX + 2];
    memset(big, 'v', sizeof(big));
    assert_int_equal(websess_verify(KEY, big, sizeof(big), NOW, &s), REMEX_EPARSE);
    assert_int_equal(websess_verify(KEY, NULL, 0, NOW, &s), REMEX_EPARSE);
}

static void test_csrf(void **state)
{
    (void)state;
    char v[WEBSESS_VALUE_MAX], c[WEBSESS_TOKEN_LEN + 1], c2[WEBSESS_TOKEN_LEN + 1];
    struct websess s, s2;
    assert_int_equal(websess_issue(KEY, NOW + 60, v, sizeof(v)), REMEX_OK);
    assert_int_equal(websess_verify(KEY, v, strlen(v), NOW, &s), REMEX_OK);
    assert_int_equal(websess_csrf(KEY, &s, c), REMEX_OK);
    assert_int_equal(strlen(c), WEBSESS_TOKEN_LEN);
    assert_true(websess_csrf_ok(KEY, &s, c));
    assert_false(websess_csrf_ok(KEY2, &s, c));
    assert_false(websess_csrf_ok(KEY, &s, NULL));
    assert_false(websess_csrf_ok(KEY, &s, ""));
    char longer[WEBSESS_TOKEN_LEN + 2];
    snprintf(longer, sizeof(longer), "%sx", c);
    assert_false(websess_csrf_ok(KEY, &s, longer));
    c[0] = c[0] == 'A' ? 'B' : 'A';
    assert_false(websess_csrf_ok(KEY, &s, c));
    /* another session's token does not fit */
    assert_int_equal(websess_issue(KEY, NOW + 60, v, sizeof(v)), REMEX_OK);
    assert_int_equal(websess_verify(KEY, v, strlen(v), NOW, &s2), REMEX_OK);
    assert_int_equal(websess_csrf(KEY, &s2, c2), REMEX_OK);
    assert_false(websess_csrf_ok(KEY, &s, c2));
    /* the CSRF token is not the session's MAC or nonce */
    assert_true(strstr(v, c2) == NULL);
}

static void test_cookie_find(void **state)
{
    (void)state;
    const char *v;
    size_t n;
    assert_int_equal(websess_cookie_find("a=1; remex_session=xyz; b=2", "remex_session", 0, &v, &n),
                     REMEX_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "xyz", 3);
    assert_int_equal(websess_cookie_find("remex_session=\"q\"", "remex_session", 0, &v, &n),
                     REMEX_OK);
    assert_int_equal(n, 1);
    assert_memory_equal(v, "q", 1);
    assert_int_equal(websess_cookie_find(" ;; s = 7 ;", "s", 0, &v, &n), REMEX_OK);
    assert_int_equal(n, 1);
    assert_int_equal(websess_cookie_find("s=", "s", 0, &v, &n), REMEX_OK);
    assert_int_equal(n, 0);
    assert_int_equal(websess_cookie_find("s=\"", "s", 0, &v, &n), REMEX_OK);
    assert_int_equal(n, 1); /* a lone quote stays */
    /* prefixes and suffixes of the name do not match */
    assert_int_equal(websess_cookie_find("xs=1; sx=2", "s", 0, &v, &n), REMEX_ENOTFOUND);
    assert_int_equal(websess_cookie_find("", "s", 0, &v, &n), REMEX_ENOTFOUND);
    assert_int_equal(websess_cookie_find(NULL, "s", 0, &v, &n), REMEX_ENOTFOUND);
    assert_int_equal(websess_cookie_find("s=1", "s", -1, &v, &n), REMEX_ENOTFOUND);
    /* nameless cookies and empty names are skipped, not fatal */
    assert_int_equal(websess_cookie_find("s", "s", 0, &v, &n), REMEX_ENOTFOUND);
    assert_int_equal(websess_cookie_find("=1", "s", 0, &v, &n), REMEX_ENOTFOUND);
    assert_int_equal(websess_cookie_find("junk; =x; s=5", "s", 0, &v, &n), REMEX_OK);
    assert_memory_equal(v, "5", 1);
    /* several of one name: each in turn */
    assert_int_equal(websess_cookie_find("s=1; t=0; s=2", "s", 0, &v, &n), REMEX_OK);
    assert_memory_equal(v, "1", 1);
    assert_int_equal(websess_cookie_find("s=1; t=0; s=2", "s", 1, &v, &n), REMEX_OK);
    assert_memory_equal(v, "2", 1);
    assert_int_equal(websess_cookie_find("s=1; t=0; s=2", "s", 2, &v, &n), REMEX_ENOTFOUND);
    /* caps */
    char big[WEBSESS_HEADER_MAX + 16];
    memset(big, 'a', sizeof(big) - 1);
    big[0] = 's';
    big[1] = '=';
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(websess_cookie_find(big, "s", 0, &v, &n), REMEX_ETOOBIG);
    char many[WEBSESS_COOKIES_MAX * 6 + 32];
    size_t o = 0;
    for (int i = 0; i <= WEBSESS_COOKIES_MAX; i++)
        o += (size_t)snprintf(many + o, sizeof(many) - o, "k%d=1;", i);
    assert_int_equal(websess_cookie_find(many, "s", 0, &v, &n), REMEX_ETOOBIG);
}

static void test_origin(void **state)
{
    (void)state;
    assert_true(websess_origin_ok("http://127.0.0.1:8080", "127.0.0.1:8080", 0));
    assert_true(websess_origin_ok("https://plane.example:443", "plane.example:443", 1));
    assert_false(websess_origin_ok("https://127.0.0.1:8080", "127.0.0.1:8080", 0));
    assert_false(websess_origin_ok("http://127.0.0.1:8080", "127.0.0.1:8080", 1));
    assert_false(websess_origin_ok("http://evil.example", "127.0.0.1:8080", 0));
    assert_false(websess_origin_ok("http://127.0.0.1:8080.evil", "127.0.0.1:8080", 0));
    assert_false(websess_origin_ok("null", "127.0.0.1:8080", 0));
    assert_false(websess_origin_ok(NULL, "127.0.0.1:8080", 0));
    assert_false(websess_origin_ok("http://", "", 0));
    assert_false(websess_origin_ok("http://x", NULL, 0));
}

static void test_key_derive(void **state)
{
    (void)state;
    unsigned char a[32], b[32];
    assert_int_equal(websess_key_derive(KEY, 32, "ui", 2, a), REMEX_OK);
    assert_int_equal(websess_key_derive(KEY, 32, "ui2", 3, b), REMEX_OK);
    assert_memory_not_equal(a, b, 32);
    assert_int_equal(websess_key_derive(KEY, 32, "ui", 2, b), REMEX_OK);
    assert_memory_equal(a, b, 32);
    assert_int_equal(websess_key_derive(KEY, 0, "ui", 2, b), REMEX_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_verify_roundtrip),
        cmocka_unit_test(test_tampered_and_malformed),
        cmocka_unit_test(test_csrf),
        cmocka_unit_test(test_cookie_find),
        cmocka_unit_test(test_origin),
        cmocka_unit_test(test_key_derive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
