/*
 * Unit tests: the Vault backend and the secrets chain (order, first hit,
 * TTL cache) against test/fake_vault.py, and Vault reply parsers on
 * malformed input. A fake because no Vault server can be had here (see the
 * fake's header): it follows Vault's HTTP API and checks X-Vault-Token.
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

#include "remex/http.h"
#include "remex/secrets.h"
#include "remex/secrets_vault.h"

#include "helper_fake.h"

static struct test_server srv = {.pid = -1, .stdin_fd = -1};
static char url[64], conf_path[64], token_path[64], sid_path[64], jwt_path[64];

static const char *conf =
    "{\"tokens\": [\"hvs.root-token\"],"
    " \"approle\": {\"role_id\": \"role-1\", \"secret_id\": \"sid-1\", \"lease\": 3600},"
    " \"kubernetes\": {\"role\": \"remex\", \"jwt\": \"eyJhbGciOiJSUzI1NiJ9.sa.sig\"},"
    " \"secret\": {\"connections/warehouse\": {\"conn_uri\": "
    "\"postgres://etl:Vault%20Pw%2F1@db.internal:5432/dw\"},"
    "  \"connections/api\": {\"conn_type\": \"http\", \"host\": \"api.internal\","
    "                        \"password\": \"tok-123456\"},"
    "  \"variables/region\": {\"value\": \"eu-west-1\"},"
    "  \"variables/limits\": {\"value\": {\"rows\": 10}},"
    "  \"variables/novalue\": {\"other\": 1}},"
    " \"kv\": {\"airflow/variables/region\": {\"value\": \"kv1-region\"}}}";

static int start(void **state)
{
    (void)state;
    snprintf(conf_path, sizeof(conf_path), "/tmp/remex-vault-XXXXXX");
    snprintf(token_path, sizeof(token_path), "/tmp/remex-vtok-XXXXXX");
    snprintf(sid_path, sizeof(sid_path), "/tmp/remex-vsid-XXXXXX");
    snprintf(jwt_path, sizeof(jwt_path), "/tmp/remex-vjwt-XXXXXX");
    if (fake_write_tmp(conf_path, conf) || fake_write_tmp(token_path, "hvs.root-token\n") ||
        fake_write_tmp(sid_path, "sid-1\n") ||
        fake_write_tmp(jwt_path, "eyJhbGciOiJSUzI1NiJ9.sa.sig\n"))
        return -1;
    return fake_start(&srv, "fake_vault.py", conf_path, url, sizeof(url));
}

static int stop(void **state)
{
    (void)state;
    return fake_stop(&srv, (const char *const[]){conf_path, token_path, sid_path, jwt_path, NULL});
}

/* GET path on the fake (its test hooks) into out. */
static void fake_get(const char *method, const char *path, struct buf *out)
{
    struct http_client *c;
    struct http_client_opts o = {.base_url = url, .max_attempts = 1};
    struct http_response r;
    struct http_request req = {.method = method, .path = path};
    assert_int_equal(http_client_new(&o, &c, NULL), REMEX_OK);
    assert_int_equal(http_do(c, &req, &r, NULL), REMEX_OK);
    buf_reset(out);
    buf_append(out, r.body.data ? r.body.data : "", r.body.len);
    http_response_free(&r);
    http_client_free(c);
}

static int hits(const char *path)
{
    return fake_counter(url, "/_hits", "hits", path);
}

static uint64_t fake_now;
static uint64_t now_fn(void)
{
    return fake_now;
}

static const char *no_env(const char *n)
{
    (void)n;
    return NULL;
}

static const char *env_db(const char *n)
{
    return strcmp(n, "REMEX_CONN_WAREHOUSE") == 0 ? "mysql://env:envpw@envhost/x" : NULL;
}

static void test_token_kv2_and_cache(void **state)
{
    (void)state;
    struct secrets_vault_config vc = {.url = url, .token = "hvs.root-token"};
    struct secrets_config sc = {
        .vault = &vc, .getenv_fn = no_env, .now_ms = now_fn, .cache_ttl_ms = 1000};
    struct secrets *s;
    struct secrets_conn c = {0};
    struct remex_error e;
    char *v = NULL;
    fake_now = 1000;
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_conn(s, "warehouse", &c, &e), REMEX_OK);
    assert_string_equal(c.conn_type, "postgres");
    assert_string_equal(c.login, "etl");
    assert_string_equal(c.password, "Vault Pw/1");
    assert_int_equal(c.port, 5432);
    secrets_conn_free(&c);
    /* The fields form. */
    assert_int_equal(secrets_get_conn(s, "api", &c, &e), REMEX_OK);
    assert_string_equal(c.host, "api.internal");
    assert_string_equal(c.password, "tok-123456");
    secrets_conn_free(&c);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    assert_string_equal(v, "eu-west-1");
    free(v);
    assert_int_equal(secrets_get_var(s, "limits", &v, &e), REMEX_OK);
    assert_string_equal(v, "{\"rows\":10}");
    free(v);
    /* Served from the cache within the TTL, fetched again after it. */
    int before = hits("/v1/secret/data/connections/warehouse");
    assert_int_equal(before, 1);
    fake_now += 999;
    assert_int_equal(secrets_get_conn(s, "warehouse", &c, &e), REMEX_OK);
    secrets_conn_free(&c);
    assert_int_equal(hits("/v1/secret/data/connections/warehouse"), 1);
    fake_now += 2;
    assert_int_equal(secrets_get_conn(s, "warehouse", &c, &e), REMEX_OK);
    secrets_conn_free(&c);
    assert_int_equal(hits("/v1/secret/data/connections/warehouse"), 2);
    /* Missing: not found, naming the key only. */
    assert_int_equal(secrets_get_var(s, "nope", &v, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "'nope'"));
    assert_int_equal(secrets_get_var(s, "novalue", &v, &e), REMEX_EPROTO);
    assert_non_null(strstr(e.msg, "secrets backend vault"));
    /* The token went in X-Vault-Token, never as a bearer. */
    struct buf b = BUF_INIT(1 << 20);
    fake_get("GET", "/_hits", &b);
    assert_non_null(strstr(buf_cstr(&b), "\"token_header\": true"));
    assert_non_null(strstr(buf_cstr(&b), "\"authorization\": \"\""));
    buf_free(&b);
    secrets_close(s);
    /* KV v1 on another mount, the token read from a file, a custom variables prefix. */
    struct secrets_vault_config v1 = {
        .url = url, .token_file = token_path, .mount = "kv", .kv_version = 1};
    struct secrets_config sc1 = {
        .vault = &v1, .getenv_fn = no_env, .vault_variables_path = "airflow/variables"};
    assert_int_equal(secrets_open(&sc1, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    assert_string_equal(v, "kv1-region");
    free(v);
    assert_int_equal(hits("/v1/kv/airflow/variables/region"), 1);
    secrets_close(s);
}

static void test_chain_order(void **state)
{
    (void)state;
    struct secrets_vault_config vc = {.url = url, .token = "hvs.root-token"};
    const char *vault_first[] = {"vault", "env", NULL};
    struct secrets_config sc = {.vault = &vc, .getenv_fn = env_db};
    struct secrets *s;
    struct secrets_conn c = {0};
    struct remex_error e;
    /* Default order: the environment comes first. */
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_conn(s, "warehouse", &c, &e), REMEX_OK);
    assert_string_equal(c.login, "env");
    secrets_conn_free(&c);
    secrets_close(s);
    sc.order = vault_first;
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_conn(s, "warehouse", &c, &e), REMEX_OK);
    assert_string_equal(c.login, "etl");
    secrets_conn_free(&c);
    secrets_close(s);
    const char *bad[] = {"env", "consul", NULL};
    sc.order = bad;
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "consul"));
    const char *twice[] = {"env", "env", NULL};
    sc.order = twice;
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_EINVAL);
}

static void test_approle_and_relogin(void **state)
{
    (void)state;
    struct secrets_vault_config vc = {.url = url, .role_id = "role-1", .secret_id_file = sid_path};
    struct secrets_vault *v;
    struct remex_error e;
    json_t *d = NULL;
    assert_int_equal(secrets_vault_open(&vc, &v, &e), REMEX_OK);
    int logins = hits("/v1/auth/approle/login");
    assert_int_equal(secrets_vault_read(v, "variables/region", &d, &e), REMEX_OK);
    assert_string_equal(json_string_value(json_object_get(d, "value")), "eu-west-1");
    json_decref(d);
    assert_int_equal(hits("/v1/auth/approle/login"), logins + 1);
    /* Vault forgets every token: the backend logs in again and carries on. */
    struct buf b = BUF_INIT(4096);
    fake_get("POST", "/_revoke", &b);
    buf_free(&b);
    assert_int_equal(secrets_vault_read(v, "variables/region", &d, &e), REMEX_OK);
    json_decref(d);
    assert_int_equal(hits("/v1/auth/approle/login"), logins + 2);
    secrets_vault_close(v);
    /* A wrong secret_id: the login fails with Vault's status. */
    vc.secret_id_file = NULL;
    vc.secret_id = "wrong-secret-id";
    assert_int_equal(secrets_vault_open(&vc, &v, &e), REMEX_OK);
    assert_int_not_equal(secrets_vault_read(v, "variables/region", &d, &e), REMEX_OK);
    assert_non_null(strstr(e.msg, "approle login"));
    assert_null(strstr(e.msg, "wrong-secret-id"));
    secrets_vault_close(v);
}

static void test_kubernetes_auth(void **state)
{
    (void)state;
    struct secrets_vault_config vc = {.url = url, .k8s_role = "remex", .k8s_jwt_file = jwt_path};
    struct secrets_vault *v;
    struct remex_error e;
    json_t *d = NULL;
    int logins = hits("/v1/auth/kubernetes/login");
    assert_int_equal(secrets_vault_open(&vc, &v, &e), REMEX_OK);
    assert_int_equal(secrets_vault_read(v, "variables/region", &d, &e), REMEX_OK);
    assert_string_equal(json_string_value(json_object_get(d, "value")), "eu-west-1");
    json_decref(d);
    assert_int_equal(hits("/v1/auth/kubernetes/login"), logins + 1);
    secrets_vault_close(v);
    vc.k8s_role = "other-role";
    assert_int_equal(secrets_vault_open(&vc, &v, &e), REMEX_OK);
    assert_int_not_equal(secrets_vault_read(v, "variables/region", &d, &e), REMEX_OK);
    assert_non_null(strstr(e.msg, "kubernetes login"));
    assert_null(strstr(e.msg, "eyJhbGci"));
    secrets_vault_close(v);
}

static void test_refused_down_and_kv1(void **state)
{
    (void)state;
    struct secrets_vault_config vc = {.url = url, .token = "hvs.bad-token-value"};
    struct secrets_config sc = {.vault = &vc, .getenv_fn = no_env};
    struct secrets *s;
    struct remex_error e;
    char *v = NULL;
    /* Tokens were revoked by the previous test: a token file is re-read on 403. */
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_EFORBIDDEN);
    assert_non_null(strstr(e.msg, "secrets backend vault: variable 'region'"));
    assert_non_null(strstr(e.msg, "403"));
    assert_null(strstr(e.msg, "bad-token-value"));
    secrets_close(s);
    /* Down: a clear connection error naming the backend and the key. */
    struct secrets_vault_config down = {.url = "http://127.0.0.1:1", .token = "t"};
    sc.vault = &down;
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_ECONNECT);
    assert_non_null(strstr(e.msg, "secrets backend vault: variable 'region'"));
    secrets_close(s);
    /* KV v1 on another mount and prefix. */
    struct secrets_vault *vv;
    json_t *d;
    struct secrets_vault_config v1 = {
        .url = url, .token_file = token_path, .mount = "kv", .kv_version = 1};
    assert_int_equal(secrets_vault_open(&v1, &vv, &e), REMEX_OK);
    /* The fake revoked its tokens: that read is refused (and the file re-read). */
    assert_int_equal(secrets_vault_read(vv, "airflow/variables/region", &d, &e), REMEX_EFORBIDDEN);
    secrets_vault_close(vv);
    /* Bad configurations. */
    struct secrets_vault_config none = {.url = url};
    assert_int_equal(secrets_vault_open(&none, &vv, &e), REMEX_EINVAL);
    struct secrets_vault_config both = {.url = url, .token = "a", .role_id = "r"};
    assert_int_equal(secrets_vault_open(&both, &vv, &e), REMEX_EINVAL);
    struct secrets_vault_config kv3 = {.url = url, .token = "a", .kv_version = 3};
    assert_int_equal(secrets_vault_open(&kv3, &vv, &e), REMEX_EINVAL);
    /* Paths that would leave the mount are refused before any request. */
    struct secrets_vault_config ok = {.url = url, .token = "a"};
    assert_int_equal(secrets_vault_open(&ok, &vv, &e), REMEX_OK);
    assert_int_equal(secrets_vault_read(vv, "../sys/seal", &d, &e), REMEX_EINVAL);
    assert_int_equal(secrets_vault_read(vv, "a?b", &d, &e), REMEX_EINVAL);
    secrets_vault_close(vv);
}

static void read_ok(struct secrets_vault *v)
{
    struct remex_error e;
    json_t *d = NULL;
    if (secrets_vault_read(v, "variables/region", &d, &e) != REMEX_OK)
        fail_msg("vault read: %s", e.msg);
    assert_string_equal(json_string_value(json_object_get(d, "value")), "eu-west-1");
    json_decref(d);
}

/*
 * Leases that run out: the fake expires tokens after their lease (2 s) and
 * caps renewals at max_ttl (3 s), as Vault does. Three backends side by side:
 * AppRole with a renewable token (renewed, then logged in again once the max
 * TTL leaves no time), AppRole with a token that is not renewable (logged in
 * again), and a literal renewable token (renewed past its first lease).
 */
static void test_token_renewal(void **state)
{
    (void)state;
    fake_conf(url, "{\"approle\": {\"lease\": 2, \"max_ttl\": 3, \"renewable\": true},"
                   " \"kubernetes\": {\"lease\": 2, \"renewable\": false},"
                   " \"add_token\": {\"token\": \"hvs.literal-ttl\", \"ttl\": 2}}");
    struct secrets_vault_config ar = {.url = url, .role_id = "role-1", .secret_id = "sid-1"};
    struct secrets_vault_config k8s = {.url = url, .k8s_role = "remex", .k8s_jwt_file = jwt_path};
    struct secrets_vault_config lit = {.url = url, .token = "hvs.literal-ttl"};
    struct secrets_vault *va, *vk, *vl;
    struct remex_error e;
    assert_int_equal(secrets_vault_open(&ar, &va, &e), REMEX_OK);
    assert_int_equal(secrets_vault_open(&k8s, &vk, &e), REMEX_OK);
    assert_int_equal(secrets_vault_open(&lit, &vl, &e), REMEX_OK);
    int al = hits("/v1/auth/approle/login"), kl = hits("/v1/auth/kubernetes/login");
    int renew = hits("/v1/auth/token/renew-self"), look = hits("/v1/auth/token/lookup-self");
    read_ok(va);
    read_ok(vk);
    read_ok(vl);
    assert_int_equal(hits("/v1/auth/approle/login"), al + 1);
    assert_int_equal(hits("/v1/auth/kubernetes/login"), kl + 1);
    /* The literal token's TTL: lookup-self says 1 s left (whole seconds, rounded down), past two
     * thirds of it already: renewed at once. */
    assert_int_equal(hits("/v1/auth/token/lookup-self"), look + 1);
    assert_int_equal(hits("/v1/auth/token/renew-self"), renew + 1);
    usleep(1100 * 1000); /* two thirds of the 2 s lease */
    read_ok(va);
    read_ok(vk);
    read_ok(vl);
    /* Renewable tokens renewed, the other one replaced by a new login. */
    assert_int_equal(hits("/v1/auth/token/renew-self"), renew + 3);
    assert_int_equal(hits("/v1/auth/approle/login"), al + 1);
    assert_int_equal(hits("/v1/auth/kubernetes/login"), kl + 2);
    usleep(1100 * 1000); /* 2.2 s: the literal token lives on only because it was renewed */
    read_ok(va);
    read_ok(vl);
    /* The AppRole token hit its 3 s max TTL: renewal granted (almost) nothing, a new login. */
    assert_int_equal(hits("/v1/auth/approle/login"), al + 2);
    secrets_vault_close(va);
    secrets_vault_close(vk);
    secrets_vault_close(vl);
    fake_conf(url, "{\"approle\": {\"lease\": 3600, \"max_ttl\": 0},"
                   " \"kubernetes\": {\"lease\": 3600, \"renewable\": true}}");
}

struct probe_seen {
    char names[8][32];
    remex_err rc[8];
    char msg[8][256];
    size_t n;
};

static void probe_fn(const char *backend, remex_err rc, const char *msg, void *ud)
{
    struct probe_seen *p = ud;
    if (p->n < 8) {
        snprintf(p->names[p->n], sizeof(p->names[0]), "%s", backend);
        snprintf(p->msg[p->n], sizeof(p->msg[0]), "%s", msg);
        p->rc[p->n++] = rc;
    }
}

/* secrets_probe: each configured backend on its own, a failing one named with its reason. */
static void test_probe(void **state)
{
    (void)state;
    struct secrets_vault_config ok = {.url = url, .role_id = "role-1", .secret_id = "sid-1"};
    struct secrets_vault_config down = {.url = "http://127.0.0.1:1", .token = "hvs.t"};
    const char *order[] = {"vault", "env", NULL};
    struct secrets_config sc = {.vault = &ok, .getenv_fn = env_db, .order = order};
    struct secrets *s;
    struct remex_error e;
    struct probe_seen p = {0};
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    assert_int_equal(secrets_probe(s, "remex-sentinel-probe", probe_fn, &p), 2);
    assert_string_equal(p.names[0], "vault");
    assert_int_equal(p.rc[0], REMEX_OK); /* not found is an answer */
    assert_string_equal(p.names[1], "env");
    assert_int_equal(p.rc[1], REMEX_OK);
    secrets_close(s);
    sc.vault = &down;
    memset(&p, 0, sizeof(p));
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    assert_int_equal(secrets_probe(s, "remex-sentinel-probe", probe_fn, &p), 2);
    assert_int_equal(p.rc[0], REMEX_ECONNECT);
    assert_non_null(strstr(p.msg[0], "vault"));
    assert_null(strstr(p.msg[0], "hvs.t"));
    assert_int_equal(p.rc[1], REMEX_OK); /* the next backend is still probed */
    secrets_close(s);
    /* No vault configured: only what is. */
    struct secrets_config none = {.getenv_fn = env_db};
    memset(&p, 0, sizeof(p));
    assert_int_equal(secrets_open(&none, &s, &e), REMEX_OK);
    assert_int_equal(secrets_probe(s, "remex-sentinel-probe", probe_fn, &p), 1);
    assert_string_equal(p.names[0], "env");
    assert_int_equal(secrets_probe(s, "not a key!", probe_fn, &p), 0);
    secrets_close(s);
}

static void test_parsers(void **state)
{
    (void)state;
    json_t *d = NULL;
    char tok[64];
    long long lease = -1;
    struct remex_error e;
    const char *v2 = "{\"data\":{\"data\":{\"value\":\"x\"},\"metadata\":{}}}";
    assert_int_equal(secrets_vault_parse_read(v2, strlen(v2), 2, &d, &e), REMEX_OK);
    assert_string_equal(json_string_value(json_object_get(d, "value")), "x");
    json_decref(d);
    assert_int_equal(secrets_vault_parse_read(v2, strlen(v2), 1, &d, &e), REMEX_OK);
    assert_non_null(json_object_get(d, "data")); /* v1 sees the outer data */
    json_decref(d);
    const char *bad[] = {"",
                         "[]",
                         "{\"data\":1}",
                         "{\"data\":{\"data\":[1]}}",
                         "{\"data\":",
                         "{\"data\":{\"data\":{\"value\":\"secret-in-bad-json\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(secrets_vault_parse_read(bad[i], strlen(bad[i]), 2, &d, &e), REMEX_EPROTO);
        assert_null(d);
        assert_null(strstr(e.msg, "secret-in-bad-json"));
    }
    const char *login = "{\"auth\":{\"client_token\":\"hvs.x\",\"lease_duration\":60}}";
    assert_int_equal(secrets_vault_parse_login(login, strlen(login), tok, sizeof(tok), &lease, &e),
                     REMEX_OK);
    assert_string_equal(tok, "hvs.x");
    assert_int_equal(lease, 60);
    const char *badl[] = {"{}",
                          "{\"auth\":{\"client_token\":\"\"}}",
                          "{\"auth\":{\"client_token\":\"a b\"}}",
                          "{\"auth\":{\"client_token\":\"x\",\"lease_duration\":-1}}",
                          "{\"auth\":{\"client_token\":\"x\",\"lease_duration\":\"1\"}}",
                          "{\"auth\":{\"client_token\":"
                          "\"0123456789012345678901234567890123456789012345678901234567890123456789"
                          "\"}}"};
    for (size_t i = 0; i < sizeof(badl) / sizeof(badl[0]); i++)
        assert_int_equal(
            secrets_vault_parse_login(badl[i], strlen(badl[i]), tok, sizeof(tok), &lease, &e),
            REMEX_EPROTO);
    /* renew-self replies (auth) and lookup-self replies. */
    int ren = 0;
    const char *rs = "{\"auth\":{\"client_token\":\"hvs.y\",\"lease_duration\":30,"
                     "\"renewable\":true}}";
    assert_int_equal(secrets_vault_parse_auth(rs, strlen(rs), tok, sizeof(tok), &lease, &ren, &e),
                     REMEX_OK);
    assert_int_equal(lease, 30);
    assert_int_equal(ren, 1);
    const char *nr = "{\"auth\":{\"client_token\":\"hvs.y\",\"renewable\":\"yes\"}}";
    assert_int_equal(secrets_vault_parse_auth(nr, strlen(nr), tok, sizeof(tok), &lease, &ren, &e),
                     REMEX_EPROTO);
    long long ttl = -1;
    const char *lk = "{\"data\":{\"ttl\":42,\"renewable\":false,\"policies\":[]}}";
    assert_int_equal(secrets_vault_parse_lookup(lk, strlen(lk), &ttl, &ren, &e), REMEX_OK);
    assert_int_equal(ttl, 42);
    assert_int_equal(ren, 0);
    const char *badk[] = {"",
                          "{}",
                          "{\"data\":{}}",
                          "{\"data\":{\"ttl\":-5}}",
                          "{\"data\":{\"ttl\":\"5m\"}}",
                          "{\"data\":{\"ttl\":5,\"renewable\":1}}",
                          "{\"data\":{\"ttl\":5"};
    for (size_t i = 0; i < sizeof(badk) / sizeof(badk[0]); i++)
        assert_int_equal(secrets_vault_parse_lookup(badk[i], strlen(badk[i]), &ttl, &ren, &e),
                         REMEX_EPROTO);
    /* Depth and size caps. */
    struct buf deep = BUF_INIT(1 << 16);
    for (int i = 0; i < 100; i++)
        buf_puts(&deep, "{\"a\":");
    assert_int_equal(secrets_vault_parse_read(deep.data, deep.len, 2, &d, &e), REMEX_EPROTO);
    buf_free(&deep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_kv2_and_cache),  cmocka_unit_test(test_chain_order),
        cmocka_unit_test(test_kubernetes_auth),      cmocka_unit_test(test_approle_and_relogin),
        cmocka_unit_test(test_refused_down_and_kv1), cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_token_renewal),        cmocka_unit_test(test_probe),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
