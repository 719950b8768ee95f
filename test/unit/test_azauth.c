/*
 * Unit tests: lib/azauth (Entra ID client-credentials tokens, with a client
 * secret or a workload-identity federated token file) against
 * test/fake_azkv.py's token endpoint. A fake because no Entra ID endpoint can
 * be reached here; it checks tenant, client id, scope and the credential
 * (constant-time) as Entra ID does, and counts the tokens it issues.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/azauth.h"
#include "remex/http.h"

#include "helper_fake.h"

#define TENANT "0000aaaa-11bb-cc22-dd33-444444eeeeee"
#define SCOPE  "https://vault.azure.net/.default"

static struct test_server srv = {.pid = -1, .stdin_fd = -1};
static char conf_path[64], fed_path[64], url[64];

static const char *conf = "{\"tenant\": \"" TENANT "\", \"client_id\": \"app-1234\","
                          " \"client_secret\": \"s3cr3t~value\","
                          " \"assertion\": \"eyJhbGciOi.fed.token\", \"secrets\": {}}";

static int start(void **state)
{
    (void)state;
    snprintf(conf_path, sizeof(conf_path), "/tmp/remex-azauth-XXXXXX");
    snprintf(fed_path, sizeof(fed_path), "/tmp/remex-azauthfed-XXXXXX");
    if (fake_write_tmp(conf_path, conf) || fake_write_tmp(fed_path, ""))
        return -1;
    return fake_start(&srv, "fake_azkv.py", conf_path, url, sizeof(url));
}

static int stop(void **state)
{
    (void)state;
    return fake_stop(&srv, (const char *const[]){conf_path, fed_path, NULL});
}

/* Tokens the fake has issued. */
static int issued(void)
{
    return fake_counter(url, "/_stats", NULL, "tokens");
}

static struct azauth_config cfg(const char *secret, const char *fed)
{
    return (struct azauth_config){.tenant_id = TENANT,
                                  .client_id = "app-1234",
                                  .client_secret = secret,
                                  .federated_token_file = fed,
                                  .authority = url,
                                  .scope = SCOPE};
}

/* Client secret: a token is fetched once, kept, and fetched again after azauth_invalidate. */
static void test_client_secret(void **state)
{
    (void)state;
    struct azauth_config c = cfg("s3cr3t~value", NULL);
    struct azauth *a;
    struct remex_error e;
    const char *tok = NULL;
    char first[AZAUTH_TOKEN_MAX];
    int n = issued();
    assert_int_equal(azauth_open(&c, &a, &e), REMEX_OK);
    assert_int_equal(issued(), n); /* nothing is fetched before it is needed */
    assert_int_equal(azauth_token(a, &tok, &e), REMEX_OK);
    assert_non_null(strstr(tok, ".fake-"));
    snprintf(first, sizeof(first), "%s", tok);
    assert_int_equal(azauth_token(a, &tok, &e), REMEX_OK);
    assert_string_equal(tok, first);
    assert_int_equal(issued(), n + 1);
    azauth_invalidate(a);
    assert_int_equal(azauth_token(a, &tok, &e), REMEX_OK);
    assert_string_not_equal(tok, first);
    assert_int_equal(issued(), n + 2);
    azauth_close(a);
    /* A wrong secret: refused by the token endpoint, the secret never in the message. */
    c = cfg("wrong-secret", NULL);
    assert_int_equal(azauth_open(&c, &a, &e), REMEX_OK);
    assert_int_equal(azauth_token(a, &tok, &e), REMEX_EAUTH);
    assert_non_null(strstr(e.msg, "azure auth: token"));
    assert_null(strstr(e.msg, "wrong-secret"));
    azauth_close(a);
    /* A scope the application may not have: refused too. */
    c = cfg("s3cr3t~value", NULL);
    c.scope = "https://storage.azure.com/.default";
    assert_int_equal(azauth_open(&c, &a, &e), REMEX_OK);
    assert_int_not_equal(azauth_token(a, &tok, &e), REMEX_OK);
    azauth_close(a);
}

/* Federated token file: re-read for every token request (AKS renews it in place). */
static void test_federated_file(void **state)
{
    (void)state;
    struct azauth_config c = cfg(NULL, fed_path);
    struct azauth *a;
    struct remex_error e;
    const char *tok = NULL;
    assert_int_equal(fake_write_file(fed_path, "eyJhbGciOi.old.token\n"), 0);
    assert_int_equal(azauth_open(&c, &a, &e), REMEX_OK);
    assert_int_equal(azauth_token(a, &tok, &e), REMEX_EAUTH);
    assert_null(strstr(e.msg, "eyJhbGciOi"));
    assert_int_equal(fake_write_file(fed_path, "eyJhbGciOi.fed.token\n"), 0);
    assert_int_equal(azauth_token(a, &tok, &e), REMEX_OK);
    assert_int_equal(fake_write_file(fed_path, ""), 0);
    azauth_invalidate(a);
    assert_int_equal(azauth_token(a, &tok, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, fed_path));
    azauth_close(a);
    c.federated_token_file = "/nonexistent/remex-fed";
    assert_int_equal(azauth_open(&c, &a, &e), REMEX_OK);
    assert_int_equal(azauth_token(a, &tok, &e), REMEX_EIO);
    assert_non_null(strstr(e.msg, "/nonexistent/remex-fed"));
    azauth_close(a);
}

static void test_config_refused(void **state)
{
    (void)state;
    struct azauth *a = NULL;
    struct remex_error e;
    struct azauth_config both = cfg("x", "/f"), none = cfg(NULL, NULL), c;
    assert_int_equal(azauth_open(&both, &a, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "exactly one of client_secret or federated_token_file"));
    assert_int_equal(azauth_open(&none, &a, &e), REMEX_EINVAL);
    c = cfg("x", NULL);
    c.tenant_id = "a/b";
    assert_int_equal(azauth_open(&c, &a, &e), REMEX_EINVAL);
    c = cfg("x", NULL);
    c.client_id = "";
    assert_int_equal(azauth_open(&c, &a, &e), REMEX_EINVAL);
    c = cfg("x", NULL);
    c.scope = NULL;
    assert_int_equal(azauth_open(&c, &a, &e), REMEX_EINVAL);
    assert_null(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_secret),
        cmocka_unit_test(test_federated_file),
        cmocka_unit_test(test_config_refused),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
