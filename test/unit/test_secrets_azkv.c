/*
 * Unit tests: Azure Key Vault in the secrets chain (client secret and
 * federated token), against test/fake_azkv.py, and its reply parser. A fake
 * because no Azure endpoint can be reached and Azurite has no Key Vault; it
 * checks the client credential and requires a live bearer token, as Entra
 * ID and Key Vault do.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "remex/azauth.h"
#include "remex/http.h"
#include "remex/secrets.h"
#include "remex/secrets_azkv.h"

#include "helper_fake.h"

static struct test_server srv = {.pid = -1, .stdin_fd = -1};
static char conf_path[64], fed_path[64], url[64];

static const char *conf =
    "{\"tenant\": \"0000aaaa-11bb-cc22-dd33-444444eeeeee\", \"client_id\": \"app-1234\","
    " \"client_secret\": \"s3cr3t~value\", \"assertion\": \"eyJhbGciOi.fed.token\","
    " \"secrets\": {\"airflow-connections-my-db\": \"mysql://etl:Kv%20Pw@db:3306/dw\","
    "               \"airflow-variables-region\": \"westeurope-secret\"}}";

static int start(void **state)
{
    (void)state;
    snprintf(conf_path, sizeof(conf_path), "/tmp/remex-azkv-XXXXXX");
    snprintf(fed_path, sizeof(fed_path), "/tmp/remex-azfed-XXXXXX");
    if (fake_write_tmp(conf_path, conf) || fake_write_tmp(fed_path, "eyJhbGciOi.fed.token\n"))
        return -1;
    return fake_start(&srv, "fake_azkv.py", conf_path, url, sizeof(url));
}

static int stop(void **state)
{
    (void)state;
    return fake_stop(&srv, (const char *const[]){conf_path, fed_path, NULL});
}

static struct secrets *open_chain(const char *secret, const char *fed)
{
    static struct secrets_azkv_config kc;
    kc = (struct secrets_azkv_config){.vault_url = url,
                                      .tenant_id = "0000aaaa-11bb-cc22-dd33-444444eeeeee",
                                      .client_id = "app-1234",
                                      .client_secret = secret,
                                      .federated_token_file = fed,
                                      .authority = url};
    const char *order[] = {"azure_key_vault", NULL};
    struct secrets_config sc = {.azkv = &kc, .order = order};
    struct secrets *s = NULL;
    struct remex_error e;
    if (secrets_open(&sc, &s, &e) != REMEX_OK)
        fail_msg("open: %s", e.msg);
    return s;
}

static void test_client_secret_and_names(void **state)
{
    (void)state;
    struct secrets *s = open_chain("s3cr3t~value", NULL);
    struct secrets_conn c = {0};
    struct remex_error e;
    char *v = NULL;
    /* my_db -> airflow-connections-my-db: Key Vault names use dashes. */
    assert_int_equal(secrets_get_conn(s, "my_db", &c, &e), REMEX_OK);
    assert_string_equal(c.password, "Kv Pw");
    assert_int_equal(c.port, 3306);
    secrets_conn_free(&c);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    assert_string_equal(v, "westeurope-secret");
    free(v);
    assert_int_equal(secrets_get_var(s, "missing", &v, &e), REMEX_ENOTFOUND);
    secrets_close(s);
}

static void test_federated_and_refusals(void **state)
{
    (void)state;
    struct secrets *s = open_chain(NULL, fed_path);
    struct remex_error e;
    char *v = NULL;
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    free(v);
    secrets_close(s);
    s = open_chain("wrong-secret", NULL);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_EAUTH);
    assert_non_null(strstr(e.msg, "secrets backend azure_key_vault: variable 'region'"));
    assert_null(strstr(e.msg, "wrong-secret"));
    secrets_close(s);
    struct secrets_azkv *k;
    struct secrets_azkv_config both = {.vault_url = url,
                                       .tenant_id = "t",
                                       .client_id = "c",
                                       .client_secret = "x",
                                       .federated_token_file = "/f"};
    assert_int_equal(secrets_azkv_open(&both, &k, &e), REMEX_EINVAL);
    struct secrets_azkv_config ok = {.vault_url = url,
                                     .tenant_id = "t",
                                     .client_id = "c",
                                     .client_secret = "x",
                                     .authority = url};
    assert_int_equal(secrets_azkv_open(&ok, &k, &e), REMEX_OK);
    assert_int_equal(secrets_azkv_get(k, "bad/name", &v, &e), REMEX_EINVAL);
    secrets_azkv_close(k);
}

/* One call to the fake: GET /_stats's "tokens", or POST /_conf with json (then 0). */
static int fake_call(const char *json)
{
    if (!json)
        return fake_counter(url, "/_stats", NULL, "tokens");
    fake_conf(url, json);
    return 0;
}

/* Tokens come from lib/azauth, as Azure Blob's do: kept while they have more than
 * AZAUTH_RENEW_S seconds left, fetched again before each use when they have less. */
static void test_token_renewal(void **state)
{
    (void)state;
    static struct secrets_azkv_config kc;
    kc = (struct secrets_azkv_config){.vault_url = url,
                                      .tenant_id = "0000aaaa-11bb-cc22-dd33-444444eeeeee",
                                      .client_id = "app-1234",
                                      .client_secret = "s3cr3t~value",
                                      .authority = url};
    const char *order[] = {"azure_key_vault", NULL};
    struct secrets_config sc = {.azkv = &kc, .order = order, .cache_ttl_ms = 1};
    struct secrets *s = NULL;
    struct remex_error e;
    char *v = NULL, ttl[64];
    for (int short_lived = 0; short_lived < 2; short_lived++) {
        /* AZAUTH_RENEW_S - 100 s: still valid, but within the renewal margin. */
        snprintf(ttl, sizeof(ttl), "{\"token_ttl\": %d}",
                 short_lived ? AZAUTH_RENEW_S - 100 : 3599);
        fake_call(ttl);
        int n = fake_call(NULL);
        assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
        for (int i = 0; i < 3; i++) {
            usleep(2000); /* past the 1 ms cache */
            assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
            assert_string_equal(v, "westeurope-secret");
            free(v);
        }
        assert_int_equal(fake_call(NULL), n + (short_lived ? 3 : 1));
        secrets_close(s);
    }
    fake_call("{\"token_ttl\": 3599}");
}

static void test_parser(void **state)
{
    (void)state;
    char *v = NULL;
    struct remex_error e;
    const char *good = "{\"value\":\"x\",\"id\":\"i\"}";
    assert_int_equal(secrets_azkv_parse_value(good, strlen(good), &v, &e), REMEX_OK);
    assert_string_equal(v, "x");
    free(v);
    const char *bad[] = {"", "[]", "{}", "{\"value\":1}", "{\"value\":\"leak\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(secrets_azkv_parse_value(bad[i], strlen(bad[i]), &v, &e), REMEX_EPROTO);
        assert_null(v);
        assert_null(strstr(e.msg, "leak"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_secret_and_names),
        cmocka_unit_test(test_federated_and_refusals),
        cmocka_unit_test(test_token_renewal),
        cmocka_unit_test(test_parser),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
