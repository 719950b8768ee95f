/*
 * Unit tests: Google service-account OAuth (gcpauth), the GCS object store
 * and Secret Manager in the secrets chain, against test/fake_gcp.py, and
 * their parsers on malformed input. A fake because no Google endpoint or
 * packaged emulator can be had here; it verifies the RS256 JWT with the
 * test key's public half (Python's cryptography) and requires a live bearer
 * token on every call. Its metadata server refuses requests without
 * "Metadata-Flavor: Google", as Google's does.
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

#include "remex/gcpauth.h"
#include "remex/http.h"
#include "remex/objstore.h"
#include "remex/secrets.h"
#include "remex/secrets_gcp.h"

#include "helper_fake.h"

static struct gcp_fake g;

static int start(void **state)
{
    (void)state;
    return gcp_fake_start(&g, " \"secrets\": {\"airflow-connections-warehouse\": "
                              "\"postgres://etl:Gcp%20Pw@db:5432/dw\","
                              " \"airflow-variables-region\": \"europe-west1-secret\"},"
                              " \"metadata\": {\"ttl\": 3599, \"scopes\": "
                              "[\"https://www.googleapis.com/auth/cloud-platform\"]}");
}

static int stop(void **state)
{
    (void)state;
    return gcp_fake_stop(&g);
}

/* The fake's counter name from /_stats. */
static int fake_stat(const char *name)
{
    return fake_counter(g.url, "/_stats", NULL, name);
}

static int stat_tokens(void)
{
    return fake_stat("tokens");
}

static void test_gcs_round_trip(void **state)
{
    (void)state;
    GCP_NEED_FAKE(g);
    struct objstore_opts o = {.endpoint = g.url, .gcp_key_file = g.keyjson};
    struct objstore *s = NULL;
    struct objstore_ref ref;
    struct remex_error e;
    struct buf b = BUF_INIT(1 << 20);
    int tokens = stat_tokens();
    assert_int_equal(objstore_open_opts("gs://remex-b/agent-1", &o, &s, &e), REMEX_OK);
    const char *key = "xcom/dag_id=d/run_id=manual__2026-01-01T00:00:00+00:00/k";
    assert_int_equal(objstore_put(s, key, "{\"n\": 1}", 8, &ref, &e), REMEX_OK);
    assert_int_equal(strncmp(ref.uri, "gs://remex-b/agent-1/xcom/", 26), 0);
    assert_int_equal(objstore_get_uri(s, ref.uri, ref.checksum, &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "{\"n\": 1}");
    assert_int_equal(objstore_delete(s, key, &e), REMEX_OK);
    assert_int_equal(objstore_get(s, key, &b, &e), REMEX_ENOTFOUND);
    assert_int_equal(stat_tokens(), tokens + 1); /* one token for all calls */
    objstore_close(s);
    /* A key the fake does not know: its signature fails and the token is refused. */
    o.gcp_key_file = g.otherjson;
    assert_int_equal(objstore_open_opts("gs://remex-b", &o, &s, &e), REMEX_OK);
    assert_int_not_equal(objstore_put(s, "k", "v", 1, NULL, &e), REMEX_OK);
    assert_non_null(strstr(e.msg, "gcp auth: token"));
    objstore_close(s);
    buf_free(&b);
}

static void test_secret_manager_chain(void **state)
{
    (void)state;
    GCP_NEED_FAKE(g);
    struct secrets_gcp_config gc = {.project = "proj-1", .key_file = g.keyjson, .endpoint = g.url};
    const char *order[] = {"gcp_secret_manager", NULL};
    struct secrets_config sc = {.gcp = &gc, .order = order};
    struct secrets *s;
    struct secrets_conn c = {0};
    struct remex_error e;
    char *v = NULL;
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_conn(s, "warehouse", &c, &e), REMEX_OK);
    assert_string_equal(c.password, "Gcp Pw");
    secrets_conn_free(&c);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    assert_string_equal(v, "europe-west1-secret");
    free(v);
    assert_int_equal(secrets_get_var(s, "missing", &v, &e), REMEX_ENOTFOUND);
    secrets_close(s);
    /* A project the account has no right on. */
    gc.project = "other-proj";
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_EFORBIDDEN);
    assert_non_null(strstr(e.msg, "secrets backend gcp_secret_manager: variable 'region'"));
    secrets_close(s);
    gc.project = "Bad Project";
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_EINVAL);
}

static void test_parsers(void **state)
{
    (void)state;
    char *f[3], tok[64], *v = NULL;
    long long exp;
    struct remex_error e;
    const char *key = "{\"client_email\":\"a@b\",\"private_key\":\"-----BEGIN\",\"token_uri\":"
                      "\"https://oauth2.googleapis.com/token\"}";
    assert_int_equal(gcpauth_parse_key(key, strlen(key), f, &e), REMEX_OK);
    assert_string_equal(f[0], "a@b");
    for (int i = 0; i < 3; i++)
        free(f[i]);
    const char *badk[] = {"", "[]", "{\"client_email\":\"a\"}", "{\"client_email\":1}"};
    for (size_t i = 0; i < sizeof(badk) / sizeof(badk[0]); i++) {
        assert_int_equal(gcpauth_parse_key(badk[i], strlen(badk[i]), f, &e), REMEX_EPARSE);
        assert_null(f[0]);
    }
    const char *t = "{\"access_token\":\"ya29.x\",\"expires_in\":3599}";
    assert_int_equal(gcpauth_parse_token(t, strlen(t), tok, sizeof(tok), &exp, &e), REMEX_OK);
    assert_string_equal(tok, "ya29.x");
    assert_int_equal(exp, 3599);
    const char *badt[] = {"{}", "{\"access_token\":\"a b\",\"expires_in\":1}",
                          "{\"access_token\":\"a\",\"expires_in\":0}", "{\"access_token\":\"a\"}",
                          "nope"};
    for (size_t i = 0; i < sizeof(badt) / sizeof(badt[0]); i++)
        assert_int_equal(gcpauth_parse_token(badt[i], strlen(badt[i]), tok, sizeof(tok), &exp, &e),
                         REMEX_EPROTO);
    const char *a = "{\"payload\":{\"data\":\"aGVsbG8=\"}}";
    assert_int_equal(secrets_gcp_parse_access(a, strlen(a), &v, &e), REMEX_OK);
    assert_string_equal(v, "hello");
    free(v);
    const char *bada[] = {"{}", "{\"payload\":{\"data\":\"abc\"}}",
                          "{\"payload\":{\"data\":\"AAAA\"}}", /* NUL bytes */
                          "{\"payload\":{\"data\":\"!!!!\"}}"};
    for (size_t i = 0; i < sizeof(bada) / sizeof(bada[0]); i++) {
        assert_int_equal(secrets_gcp_parse_access(bada[i], strlen(bada[i]), &v, &e), REMEX_EPROTO);
        assert_null(v);
    }
}

/* No key: Secret Manager with the metadata server's token (GCE, GKE Workload Identity). */
static void test_metadata_server(void **state)
{
    (void)state;
    GCP_NEED_FAKE(g);
    char host[64];
    struct remex_error e;
    struct secrets *s;
    char *v = NULL;
    char *saved = getenv("GOOGLE_APPLICATION_CREDENTIALS")
                      ? strdup(getenv("GOOGLE_APPLICATION_CREDENTIALS"))
                      : NULL;
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    snprintf(host, sizeof(host), "127.0.0.1:%u", g.srv.port);
    setenv("GCE_METADATA_HOST", host, 1);
    struct secrets_gcp_config gc = {.project = "proj-1", .endpoint = g.url};
    const char *order[] = {"gcp_secret_manager", NULL};
    struct secrets_config sc = {.gcp = &gc, .order = order, .cache_ttl_ms = 1};
    int jwt = fake_stat("tokens"), md = fake_stat("metadata_tokens"),
        refused = fake_stat("metadata_refused");
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    assert_string_equal(v, "europe-west1-secret");
    free(v);
    usleep(2000); /* past the 1 ms cache */
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    free(v);
    assert_int_equal(fake_stat("metadata_tokens"), md + 1); /* kept until a minute before expiry */
    assert_int_equal(fake_stat("tokens"), jwt);             /* no key, no JWT */
    assert_int_equal(fake_stat("metadata_refused"), refused);
    secrets_close(s);
    /* Tokens that expire within the minute are fetched again before each use. */
    fake_conf(g.url, "{\"metadata\": {\"ttl\": 30}}");
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    md = fake_stat("metadata_tokens");
    for (int i = 0; i < 2; i++) {
        usleep(2000);
        assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
        free(v);
    }
    assert_int_equal(fake_stat("metadata_tokens"), md + 2);
    fake_conf(g.url, "{\"metadata\": {\"ttl\": 3599}}");
    secrets_close(s);
    /* The server refuses a request without Metadata-Flavor (what lib sends it is proven above). */
    struct http_client *c;
    struct http_client_opts o = {.base_url = g.url, .max_attempts = 1};
    struct http_response r;
    struct http_request req = {
        .method = "GET", .path = "/computeMetadata/v1/instance/service-accounts/default/token"};
    assert_int_equal(http_client_new(&o, &c, NULL), REMEX_OK);
    assert_int_equal(http_do(c, &req, &r, NULL), REMEX_OK);
    assert_int_equal(r.status, 403);
    http_response_free(&r);
    http_client_free(c);
    /* A metadata server that is down: the lookup fails naming the backend and the key. */
    setenv("GCE_METADATA_HOST", "127.0.0.1:1", 1);
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_ECONNECT);
    assert_non_null(strstr(e.msg, "secrets backend gcp_secret_manager: variable 'region'"));
    assert_non_null(strstr(e.msg, "metadata server"));
    secrets_close(s);
    /* Neither a key nor a metadata server: a clear error at open. */
    unsetenv("GCE_METADATA_HOST");
    setenv("NO_GCE_CHECK", "true", 1);
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "GOOGLE_APPLICATION_CREDENTIALS"));
    setenv("GCE_METADATA_HOST", "evil/path", 1);
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_EINVAL);
    unsetenv("GCE_METADATA_HOST");
    unsetenv("NO_GCE_CHECK");
    if (saved)
        setenv("GOOGLE_APPLICATION_CREDENTIALS", saved, 1);
    free(saved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcs_round_trip),
        cmocka_unit_test(test_secret_manager_chain),
        cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_metadata_server),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
