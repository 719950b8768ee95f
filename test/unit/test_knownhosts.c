/* Unit tests: knownhosts (plain, bracketed, wildcard, negated, hashed, revoked, malformed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/knownhosts.h"

#define K1 "AAAAC3NzaC1lZDI1NTE5AAAAICxmVl+B5ah2XS4SZZ+MHSf9ElfndcKSE3s8wQzZoN/A"
#define K2 "AAAAC3NzaC1lZDI1NTE5AAAAINnq6jNQGF+m0mzgYEkVHmspiYMvBDAPZhsGYA0sprcb"
/* ssh-keygen -H of "[127.0.0.1]:2222 ssh-ed25519 K1" */
#define HASHED "|1|Ze+8b4djluU+H1R9U9n7nlPt5Ms=|AwTcAJO4ibeQvPCapIj35k2RrHI="

static unsigned char k1[64], k2[64];
static size_t k1len, k2len;

static size_t decode(const char *b64, unsigned char *out)
{
    int n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)strlen(b64));
    assert_true(n > 0);
    return (size_t)n - (b64[strlen(b64) - 1] == '=');
}

static int setup(void **state)
{
    (void)state;
    k1len = decode(K1, k1);
    k2len = decode(K2, k2);
    return k1len == 51 && k2len == 51 ? 0 : -1;
}

static remex_err check(const char *text, const char *host, int port, const unsigned char *key,
                       struct remex_error *e)
{
    return knownhosts_check_buf(text, strlen(text), "kh", host, port, key, 51, e);
}

static void test_plain_and_ports(void **state)
{
    (void)state;
    struct remex_error e;
    const char *kh = "# comment\n\ngit.example.com,10.0.0.1 ssh-ed25519 " K1 " c1\n"
                     "[127.0.0.1]:2222 ssh-ed25519 " K2 "\n";
    assert_int_equal(check(kh, "git.example.com", 22, k1, &e), REMEX_OK);
    assert_int_equal(check(kh, "GIT.example.com", 22, k1, &e), REMEX_OK);
    assert_int_equal(check(kh, "10.0.0.1", 0, k1, &e), REMEX_OK);
    assert_int_equal(check(kh, "127.0.0.1", 2222, k2, &e), REMEX_OK);
    /* The bracket form is for its port only: '[' is no glob class. */
    assert_int_equal(check(kh, "127.0.0.1", 22, k2, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "kh does not list 127.0.0.1"));
    assert_int_equal(check(kh, "1", 2222, k2, &e), REMEX_ENOTFOUND);
    /* A listed host with another key. */
    assert_int_equal(check(kh, "git.example.com", 22, k2, &e), REMEX_ECONFLICT);
    assert_non_null(strstr(e.msg, "lists another host key for git.example.com"));
    assert_int_equal(check(kh, "127.0.0.1", 2222, k1, &e), REMEX_ECONFLICT);
    assert_non_null(strstr(e.msg, "[127.0.0.1]:2222"));
    /* One matching line among others is enough. */
    const char *two = "h ssh-ed25519 " K2 "\nh ssh-ed25519 " K1 "\n";
    assert_int_equal(check(two, "h", 22, k1, &e), REMEX_OK);
}

static void test_wildcards_negation_hashed(void **state)
{
    (void)state;
    struct remex_error e;
    const char *kh = "*.example.com,!bad.example.com ssh-ed25519 " K1 "\n"
                     "git?.corp ssh-ed25519 " K2 "\n" HASHED " ssh-ed25519 " K1 "\n";
    assert_int_equal(check(kh, "a.example.com", 22, k1, &e), REMEX_OK);
    assert_int_equal(check(kh, "bad.example.com", 22, k1, &e), REMEX_ENOTFOUND);
    assert_int_equal(check(kh, "git1.corp", 22, k2, &e), REMEX_OK);
    assert_int_equal(check(kh, "git12.corp", 22, k2, &e), REMEX_ENOTFOUND);
    assert_int_equal(check(kh, "127.0.0.1", 2222, k1, &e), REMEX_OK);
    assert_int_equal(check(kh, "127.0.0.1", 2223, k1, &e), REMEX_ENOTFOUND);
    assert_int_equal(check(kh, "127.0.0.1", 2222, k2, &e), REMEX_ECONFLICT);
}

static void test_revoked_and_markers(void **state)
{
    (void)state;
    struct remex_error e;
    const char *kh = "@revoked * ssh-ed25519 " K2 "\n"
                     "@cert-authority *.example.com ssh-ed25519 " K1 "\n"
                     "h ssh-ed25519 " K2 "\n";
    assert_int_equal(check(kh, "h", 22, k2, &e), REMEX_EPERM);
    assert_non_null(strstr(e.msg, "@revoked"));
    /* A CA line vouches for nothing here. */
    assert_int_equal(check(kh, "a.example.com", 22, k1, &e), REMEX_ENOTFOUND);
}

static void test_malformed_lines_are_skipped(void **state)
{
    (void)state;
    struct remex_error e;
    char *big = malloc(KNOWNHOSTS_LINE_MAX + 200);
    assert_non_null(big);
    memset(big, 'a', KNOWNHOSTS_LINE_MAX + 100);
    snprintf(big + KNOWNHOSTS_LINE_MAX + 100, 100, "\nh ssh-ed25519 %s\n", K1);
    const char *bad[] = {
        "h\n",                             /* no key */
        "h ssh-ed25519\n",                 /* no key */
        "h ssh-ed25519 !!!notbase64!!!\n", /* bad base64 */
        "h ssh-ed25519 AAAA=\n",           /* short */
        "|1|x|y ssh-ed25519 " K1 "\n",     /* bad hash */
        "|1|"
        "ssh-ed25519 " K1 "\n",       /* truncated hash */
        "@revoked\n",                 /* marker alone */
        "h ssh-ed25519 " K1 "AAAA\n", /* other key */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        assert_int_not_equal(check(bad[i], "h", 22, k1, &e), REMEX_OK);
    /* An over-long line is skipped; the next still counts. */
    assert_int_equal(check(big, "h", 22, k1, &e), REMEX_OK);
    /* A NUL inside a line makes it unusable, not the file. */
    const char nul[] = "h ssh-ed25519 \0x\nh ssh-ed25519 " K1 "\n";
    assert_int_equal(knownhosts_check_buf(nul, sizeof(nul) - 1, "kh", "h", 22, k1, 51, &e),
                     REMEX_OK);
    free(big);
    assert_int_equal(knownhosts_check("/nonexistent/kh", "h", 22, k1, 51, &e), REMEX_EIO);
    assert_non_null(strstr(e.msg, "known_hosts /nonexistent/kh"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_ports),
        cmocka_unit_test(test_wildcards_negation_hashed),
        cmocka_unit_test(test_revoked_and_markers),
        cmocka_unit_test(test_malformed_lines_are_skipped),
    };
    return cmocka_run_group_tests_name("knownhosts", tests, setup, NULL);
}
