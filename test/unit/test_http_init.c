/*
 * Unit tests: http_global_init(0), the start without TLS, in a process of its
 * own (libcurl starts once per process, so test_http cannot cover it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <string.h>

#include "helper_httpd.h"
#include "remex/http.h"

static struct httpd *srv;

static int setup(void **state)
{
    (void)state;
    struct remex_error e = {0};
    if (http_global_init(0, &e) != REMEX_OK)
        return -1;
    srv = httpd_start();
    return srv ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    httpd_stop(srv);
    return 0;
}

static void test_https_refused_before_any_io(void **state)
{
    (void)state;
    struct http_client *c = NULL;
    struct remex_error e = {0};
    struct http_client_opts o = {.base_url = "https://127.0.0.1:1", .proxy = ""};
    assert_int_equal(http_client_new(&o, &c, &e), REMEX_ETLS);
    assert_null(c);
    assert_non_null(strstr(e.msg, "without TLS"));
    /* A later full start request does not change the process's start. */
    assert_int_equal(http_global_init(1, &e), REMEX_OK);
    assert_int_equal(http_client_new(&o, &c, &e), REMEX_ETLS);
    assert_null(c);
}

static void test_plain_http_works(void **state)
{
    (void)state;
    struct http_client *c = NULL;
    struct remex_error e = {0};
    struct http_response r = {0};
    struct http_client_opts o = {.base_url = httpd_url(srv), .proxy = ""};
    assert_int_equal(http_client_new(&o, &c, &e), REMEX_OK);
    struct http_request req = {
        .method = "POST", .path = "/echo", .body = "{\"a\":1}", .body_len = 7};
    assert_int_equal(http_do(c, &req, &r, &e), REMEX_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(buf_cstr(&r.body), "{\"a\":1}");
    http_response_free(&r);
    http_client_free(c);
}

/* OpenSSL without its configuration file and error strings still hashes. */
static void test_digest_without_tls_start(void **state)
{
    (void)state;
    static const unsigned char abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                          0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                          0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                          0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    assert_int_equal(EVP_Digest("abc", 3, md, &n, EVP_sha256(), NULL), 1);
    assert_int_equal(n, 32);
    assert_memory_equal(md, abc, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_https_refused_before_any_io),
        cmocka_unit_test(test_plain_http_works),
        cmocka_unit_test(test_digest_without_tls_start),
    };
    return cmocka_run_group_tests_name("http_init", tests, setup, teardown);
}
