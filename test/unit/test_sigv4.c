/* Unit tests for sigv4: AWS's published signing examples, URI encoding, credentials files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/sigv4.h"

static struct sigv4_creds creds(const char *ak, const char *sk)
{
    struct sigv4_creds c;
    memset(&c, 0, sizeof(c));
    snprintf(c.access_key, sizeof(c.access_key), "%s", ak);
    snprintf(c.secret_key, sizeof(c.secret_key), "%s", sk);
    return c;
}

/* The "get-vanilla" case of AWS's Signature Version 4 test suite. */
static void test_get_vanilla(void **state)
{
    (void)state;
    struct sigv4_creds c = creds("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    struct sigv4_header h[] = {{"x-amz-date", "20150830T123600Z"},
                               {"host", "example.amazonaws.com"}};
    struct sigv4_input in = {.method = "GET",
                             .path = "/",
                             .query = "",
                             .headers = h,
                             .nheaders = 2,
                             .payload_hash =
                                 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                             .region = "us-east-1",
                             .service = "service",
                             .amz_date = "20150830T123600Z"};
    struct buf out = BUF_INIT(4096);
    assert_int_equal(sigv4_authorization(&c, &in, &out), REMEX_OK);
    assert_string_equal(buf_cstr(&out),
                        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                        "aws4_request, SignedHeaders=host;x-amz-date, Signature="
                        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    buf_free(&out);
}

/* The GET Object example of the Amazon S3 API reference (Signature V4, header auth). */
static void test_s3_get_object(void **state)
{
    (void)state;
    struct sigv4_creds c =
        creds("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    const char *empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    struct sigv4_header h[] = {{"host", "examplebucket.s3.amazonaws.com"},
                               {"range", "bytes=0-9"},
                               {"x-amz-content-sha256", empty},
                               {"x-amz-date", "20130524T000000Z"}};
    struct sigv4_input in = {.method = "GET",
                             .path = "/test.txt",
                             .query = "",
                             .headers = h,
                             .nheaders = 4,
                             .payload_hash = empty,
                             .region = "us-east-1",
                             .service = "s3",
                             .amz_date = "20130524T000000Z"};
    struct buf out = BUF_INIT(4096);
    assert_int_equal(sigv4_authorization(&c, &in, &out), REMEX_OK);
    assert_non_null(strstr(buf_cstr(&out), "SignedHeaders=host;range;x-amz-content-sha256;"
                                           "x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed"
                                           "310bd44f0170aba48dd91039c6036bdb41"));
    /* A different secret gives a different signature. */
    c.secret_key[0] = 'x';
    buf_reset(&out);
    assert_int_equal(sigv4_authorization(&c, &in, &out), REMEX_OK);
    assert_null(strstr(buf_cstr(&out), "f0e8bdb87c96"));
    buf_free(&out);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct sigv4_creds c = creds("A", "B");
    struct sigv4_header h[] = {{"Host", "x"}};
    struct sigv4_input in = {.method = "GET",
                             .path = "/",
                             .query = "",
                             .headers = h,
                             .nheaders = 1,
                             .payload_hash = "x",
                             .region = "r",
                             .service = "s",
                             .amz_date = "20130524T000000Z"};
    struct buf out = BUF_INIT(4096);
    assert_int_equal(sigv4_authorization(&c, &in, &out), REMEX_EINVAL); /* upper-case name */
    h[0].name = "host";
    in.amz_date = "2013";
    assert_int_equal(sigv4_authorization(&c, &in, &out), REMEX_EINVAL);
    in.amz_date = "20130524T000000Z";
    in.nheaders = SIGV4_MAX_HEADERS + 1;
    assert_int_equal(sigv4_authorization(&c, &in, &out), REMEX_EINVAL);
    buf_free(&out);
}

static void test_uri_encode(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(1024);
    const char *s = "a b/c~d=e+f%é";
    assert_int_equal(sigv4_uri_encode(&b, s, strlen(s), 1), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "a%20b/c~d%3De%2Bf%25%C3%A9");
    buf_reset(&b);
    assert_int_equal(sigv4_uri_encode(&b, "x/y", 3, 0), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "x%2Fy");
    buf_free(&b);
    char d[17];
    sigv4_amz_date(1369353600, d);
    assert_string_equal(d, "20130524T000000Z");
}

static const char *ini = "# comment\n"
                         "[default]\n"
                         "aws_access_key_id = AKDEF\n"
                         "aws_secret_access_key=SKDEF\r\n"
                         "\n"
                         "[profile ci]\n"
                         "  aws_access_key_id =AKCI  \n"
                         "aws_secret_access_key = SKCI\n"
                         "aws_session_token = TOK\n"
                         "region = eu-west-1\n"
                         "[empty]\n"
                         "region = x\n";

static void test_creds_parse(void **state)
{
    (void)state;
    struct sigv4_creds c;
    struct remex_error e;
    assert_int_equal(sigv4_creds_parse(ini, strlen(ini), "default", &c, &e), REMEX_OK);
    assert_string_equal(c.access_key, "AKDEF");
    assert_string_equal(c.secret_key, "SKDEF");
    assert_string_equal(c.session_token, "");
    assert_int_equal(sigv4_creds_parse(ini, strlen(ini), "ci", &c, &e), REMEX_OK);
    assert_string_equal(c.access_key, "AKCI");
    assert_string_equal(c.secret_key, "SKCI");
    assert_string_equal(c.session_token, "TOK");
    assert_int_equal(sigv4_creds_parse(ini, strlen(ini), "empty", &c, &e), REMEX_ENOTFOUND);
    assert_int_equal(sigv4_creds_parse(ini, strlen(ini), "nope", &c, &e), REMEX_ENOTFOUND);
    assert_string_equal(c.access_key, "");
}

static void test_creds_malformed(void **state)
{
    (void)state;
    struct sigv4_creds c;
    struct remex_error e;
    const char *bad[] = {"[default\naws_access_key_id=x\n", "[default]\njust words\n", "[]\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sigv4_creds_parse(bad[i], strlen(bad[i]), "default", &c, &e),
                         REMEX_EPARSE);
        assert_non_null(strstr(e.msg, ":"));
    }
    const char nul[] = "[default]\naws_access_key_id=a\0b\n";
    assert_int_equal(sigv4_creds_parse(nul, sizeof(nul) - 1, "default", &c, &e), REMEX_EPARSE);
    /* Over the cap. */
    size_t n = SIGV4_CREDS_FILE_MAX + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, '#', n);
    assert_int_equal(sigv4_creds_parse(big, n, "default", &c, &e), REMEX_ETOOBIG);
    free(big);
    /* A value over its field's size; the message never holds the value. */
    struct buf b = BUF_INIT(1u << 16);
    buf_puts(&b, "[default]\naws_access_key_id=a\naws_secret_access_key=");
    for (int i = 0; i < SIGV4_KEY_MAX; i++)
        buf_putc(&b, 'S');
    buf_putc(&b, '\n');
    assert_int_equal(sigv4_creds_parse(b.data, b.len, "default", &c, &e), REMEX_ETOOBIG);
    assert_null(strstr(e.msg, "SSSS"));
    buf_free(&b);
}

static const char *fake_env_file;
static const char *fake_env_keys;
static const char *fake_getenv(const char *n)
{
    if (strcmp(n, "AWS_SHARED_CREDENTIALS_FILE") == 0)
        return fake_env_file;
    if (fake_env_keys && strcmp(n, "AWS_ACCESS_KEY_ID") == 0)
        return "AKENV";
    if (fake_env_keys && strcmp(n, "AWS_SECRET_ACCESS_KEY") == 0)
        return fake_env_keys;
    return NULL;
}

static void test_creds_load(void **state)
{
    (void)state;
    char path[] = "/tmp/remex-sigv4-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, ini, strlen(ini)), (ssize_t)strlen(ini));
    close(fd);
    struct sigv4_creds c;
    struct remex_error e;
    fake_env_file = path;
    fake_env_keys = "SKENV";
    assert_int_equal(sigv4_creds_load(NULL, NULL, fake_getenv, &c, &e), REMEX_OK);
    assert_string_equal(c.access_key, "AKENV"); /* the environment comes first */
    assert_int_equal(sigv4_creds_load("ci", NULL, fake_getenv, &c, &e), REMEX_OK);
    assert_string_equal(c.access_key, "AKCI"); /* a named profile reads the file */
    fake_env_keys = NULL;
    assert_int_equal(sigv4_creds_load(NULL, NULL, fake_getenv, &c, &e), REMEX_OK);
    assert_string_equal(c.secret_key, "SKDEF");
    assert_int_equal(sigv4_creds_load("nope", NULL, fake_getenv, &c, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "nope"));
    unlink(path);
    assert_int_equal(sigv4_creds_load(NULL, NULL, fake_getenv, &c, &e), REMEX_ENOTFOUND);
    sigv4_creds_wipe(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_vanilla), cmocka_unit_test(test_s3_get_object),
        cmocka_unit_test(test_bad_input),   cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_creds_parse), cmocka_unit_test(test_creds_malformed),
        cmocka_unit_test(test_creds_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
