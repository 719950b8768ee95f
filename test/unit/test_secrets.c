/* Unit tests: secrets (connection URIs, env and file backends). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/secrets.h"

static char dir[64];

static const char *fake_env(const char *name)
{
    if (strcmp(name, "REMEX_CONN_WAREHOUSE") == 0)
        return "postgresql://etl:p%40ss@db.internal:5432/dw?sslmode=require";
    if (strcmp(name, "REMEX_CONN_API_V2") == 0)
        return "{\"conn_type\":\"http\",\"host\":\"api\",\"password\":\"tok\",\"port\":8443}";
    if (strcmp(name, "REMEX_CONN_BROKEN") == 0)
        return "nonsense";
    if (strcmp(name, "REMEX_CONN_TORN") == 0)
        return "{\"conn_type\":\"http\",\"password\":\"hunter2-env";
    if (strcmp(name, "REMEX_VAR_REGION") == 0)
        return "eu-west-1";
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/remex-secrets-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text, mode_t mode)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
    return path;
}

static void test_uri_full(void **state)
{
    (void)state;
    struct secrets_conn c;
    struct remex_error e;
    assert_int_equal(secrets_conn_parse_uri("postgres://us%3Aer:p%40ss:w@db.example:6543/my%2Fdb"
                                            "?sslmode=require&app=a+b",
                                            &c, &e),
                     REMEX_OK);
    assert_string_equal(c.conn_type, "postgres");
    assert_string_equal(c.login, "us:er");
    assert_string_equal(c.password, "p@ss:w");
    assert_string_equal(c.host, "db.example");
    assert_int_equal(c.port, 6543);
    assert_string_equal(c.schema, "my/db");
    assert_string_equal(json_string_value(json_object_get(c.extra, "sslmode")), "require");
    assert_string_equal(json_string_value(json_object_get(c.extra, "app")), "a b");
    secrets_conn_free(&c);
}

static void test_uri_minimal_and_v6(void **state)
{
    (void)state;
    struct secrets_conn c;
    struct remex_error e;
    assert_int_equal(secrets_conn_parse_uri("aws-s3://", &c, &e), REMEX_OK);
    assert_string_equal(c.conn_type, "aws_s3");
    assert_null(c.host);
    assert_null(c.login);
    assert_int_equal(c.port, 0);
    secrets_conn_free(&c);
    assert_int_equal(secrets_conn_parse_uri("redis://[::1]:6379/0", &c, &e), REMEX_OK);
    assert_string_equal(c.host, "[::1]");
    assert_int_equal(c.port, 6379);
    assert_string_equal(c.schema, "0");
    secrets_conn_free(&c);
}

static void test_uri_extra_json(void **state)
{
    (void)state;
    struct secrets_conn c;
    struct remex_error e;
    assert_int_equal(
        secrets_conn_parse_uri("http://h/?__extra__=%7B%22timeout%22%3A30%7D&x=1", &c, &e),
        REMEX_OK);
    assert_int_equal(json_integer_value(json_object_get(c.extra, "timeout")), 30);
    assert_string_equal(json_string_value(json_object_get(c.extra, "x")), "1");
    secrets_conn_free(&c);
    assert_int_equal(secrets_conn_parse_uri("http://h/?__extra__=%5B1%5D", &c, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "__extra__"));
}

static void test_uri_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "noscheme",
        "://host",
        "1abc://h",
        "pg://h:99999",
        "pg://h:0",
        "pg://h:12x",
        "pg://h:",
        "pg://[::1",
        "pg://[::1]x",
        "pg://u:%4@h",
        "pg://u:%zz@h",
        "pg://u:%00@h",
        "pg://h/db%",
        "pg://h/?a=%G1",
    };
    struct secrets_conn c;
    struct remex_error e;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        remex_err rc = secrets_conn_parse_uri(bad[i], &c, &e);
        if (rc == REMEX_OK)
            fail_msg("accepted '%s'", bad[i]);
        assert_non_null(strstr(e.msg, "connection URI"));
    }
}

static void test_uri_error_hides_password(void **state)
{
    (void)state;
    struct secrets_conn c;
    struct remex_error e;
    assert_int_not_equal(secrets_conn_parse_uri("pg://user:TopSecret%zz@h", &c, &e), REMEX_OK);
    assert_null(strstr(e.msg, "TopSecret"));
}

static void test_uri_round_trip(void **state)
{
    (void)state;
    struct secrets_conn c, d;
    struct remex_error e;
    struct buf b = BUF_INIT(4096);
    assert_int_equal(secrets_conn_parse_uri("mysql://a%20b:c%2Fd%40e@host:3306/s?k=v", &c, &e),
                     REMEX_OK);
    assert_int_equal(secrets_conn_uri(&c, &b), REMEX_OK);
    assert_int_equal(secrets_conn_parse_uri(buf_cstr(&b), &d, &e), REMEX_OK);
    assert_string_equal(d.login, "a b");
    assert_string_equal(d.password, "c/d@e");
    assert_string_equal(d.schema, "s");
    assert_int_equal(d.port, 3306);
    assert_true(json_equal(c.extra, d.extra));
    secrets_conn_free(&c);
    secrets_conn_free(&d);
    /* A host holding '@' (found by fuzzing) must not move text into the password. */
    assert_int_equal(secrets_conn_parse_uri("pg://u:p@db%40x:1/s", &c, &e), REMEX_OK);
    buf_reset(&b);
    assert_int_equal(secrets_conn_uri(&c, &b), REMEX_OK);
    assert_int_equal(secrets_conn_parse_uri(buf_cstr(&b), &d, &e), REMEX_OK);
    assert_string_equal(d.password, "p");
    assert_string_equal(d.host, "db@x");
    secrets_conn_free(&c);
    secrets_conn_free(&d);
    buf_free(&b);
}

static void test_env_backend(void **state)
{
    (void)state;
    struct secrets_config cfg = {.getenv_fn = fake_env};
    struct secrets *s;
    struct secrets_conn c;
    struct remex_error e;
    char *v;
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_conn(s, "warehouse", &c, &e), REMEX_OK);
    assert_string_equal(c.conn_type, "postgres");
    assert_string_equal(c.password, "p@ss");
    secrets_conn_free(&c);
    assert_int_equal(secrets_get_conn(s, "api-v2", &c, &e), REMEX_OK);
    assert_int_equal(c.port, 8443);
    assert_string_equal(c.password, "tok");
    secrets_conn_free(&c);
    assert_int_equal(secrets_get_conn(s, "broken", &c, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "REMEX_CONN_BROKEN"));
    assert_int_equal(secrets_get_conn(s, "absent", &c, &e), REMEX_ENOTFOUND);
    assert_int_equal(secrets_get_conn(s, "bad id!", &c, &e), REMEX_EINVAL);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    assert_string_equal(v, "eu-west-1");
    free(v);
    assert_int_equal(secrets_get_var(s, "nope", &v, &e), REMEX_ENOTFOUND);
    secrets_close(s);
}

static void test_json_file_backend_and_reload(void **state)
{
    (void)state;
    const char *path = write_file(
        "secrets.json",
        "{\"connections\":{\"db\":\"postgres://u:pw@h/d\",\"api\":{\"conn_type\":\"http\","
        "\"host\":\"x\",\"extra\":\"{\\\"a\\\":1}\"}},\"variables\":{\"n\":5,\"s\":\"txt\"}}",
        0600);
    struct secrets_config cfg = {.file = path, .no_env = 1};
    struct secrets *s;
    struct secrets_conn c;
    struct remex_error e;
    char *v;
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_conn(s, "db", &c, &e), REMEX_OK);
    assert_string_equal(c.password, "pw");
    secrets_conn_free(&c);
    assert_int_equal(secrets_get_conn(s, "api", &c, &e), REMEX_OK);
    assert_int_equal(json_integer_value(json_object_get(c.extra, "a")), 1);
    secrets_conn_free(&c);
    assert_int_equal(secrets_get_var(s, "n", &v, &e), REMEX_OK);
    assert_string_equal(v, "5");
    free(v);
    /* Rotation: the file is re-read when it changes. */
    write_file("secrets.json", "{\"variables\":{\"s\":\"rotated-value\"}}", 0600);
    assert_int_equal(secrets_get_var(s, "s", &v, &e), REMEX_OK);
    assert_string_equal(v, "rotated-value");
    free(v);
    secrets_close(s);
}

static void test_yaml_file_backend(void **state)
{
    (void)state;
    const char *path = write_file("secrets.yaml",
                                  "connections:\n"
                                  "  warehouse: postgres://etl:pw@db:5432/dw\n"
                                  "  api:\n"
                                  "    conn_type: http\n"
                                  "    host: api.internal\n"
                                  "    port: 8080\n"
                                  "    extra: {retries: 3}\n"
                                  "variables:\n"
                                  "  region: eu-west-1\n"
                                  "  list: [1, two]\n",
                                  0600);
    struct secrets_config cfg = {.file = path, .no_env = 1};
    struct secrets *s;
    struct secrets_conn c;
    struct remex_error e;
    char *v;
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_conn(s, "api", &c, &e), REMEX_OK);
    assert_int_equal(c.port, 8080);
    assert_int_equal(json_integer_value(json_object_get(c.extra, "retries")), 3);
    secrets_conn_free(&c);
    assert_int_equal(secrets_get_var(s, "list", &v, &e), REMEX_OK);
    assert_string_equal(v, "[1,\"two\"]");
    free(v);
    secrets_close(s);
}

static void test_file_errors(void **state)
{
    (void)state;
    struct secrets *s = NULL;
    struct remex_error e;
    struct secrets_config cfg = {.no_env = 1};
    cfg.file = write_file("open.json", "{}", 0644);
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_EPERM);
    assert_non_null(strstr(e.msg, "permissions 0644 are too open; chmod 600"));
    cfg.file = write_file("bad.yaml", "connections:\n  a: [1\n", 0600);
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "bad.yaml:"));
    cfg.file = write_file("alias.yaml", "a: &x 1\nvariables: {b: *x}\n", 0600);
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "aliases are not allowed"));
    cfg.file = write_file("keys.yaml", "variables:\n  ? [a]\n  : 1\n", 0600);
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "keys.yaml:2:5: invalid key"));
    cfg.file = write_file("keys.yaml", "variables: {null: 1}\n", 0600);
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "keys.yaml:1:13: mapping keys must be scalars"));
    cfg.file = write_file("docs.yaml", "variables: {}\n---\nvariables: {}\n", 0600);
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "docs.yaml:2:1: more than one YAML document"));
    cfg.file = write_file(
        "deep.yaml",
        "variables: {a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}\n",
        0600);
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "nested too deeply"));
    cfg.file = write_file("unknown.json", "{\"connectoins\":{}}", 0600);
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "unknown key 'connectoins'"));
    cfg.file = write_file("badconn.json", "{\"connections\":{\"x\":{\"port\":\"80\"}}}", 0600);
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_OK);
    struct secrets_conn c;
    assert_int_equal(secrets_get_conn(s, "x", &c, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "connections.x"));
    secrets_close(s);
    cfg.file = "/nonexistent/secrets.json";
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_EIO);
}

/* jansson quotes the input "near" a syntax error: no secret value may ride along. */
static void test_json_errors_hide_values(void **state)
{
    (void)state;
    struct secrets_config cfg = {.getenv_fn = fake_env};
    struct secrets *s;
    struct secrets_conn c;
    struct remex_error e;

    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_conn(s, "torn", &c, &e), REMEX_EPARSE);
    assert_null(strstr(e.msg, "hunter2"));
    assert_non_null(strstr(e.msg, "REMEX_CONN_TORN"));
    secrets_close(s);

    assert_int_equal(
        secrets_conn_parse_uri("http://h/?__extra__=%7B%22key%22%3A%22hunter2-extra", &c, &e),
        REMEX_EPARSE);
    assert_null(strstr(e.msg, "hunter2"));
    assert_non_null(strstr(e.msg, "__extra__"));

    cfg.getenv_fn = NULL;
    cfg.no_env = 1;
    cfg.file = write_file("torn.json", "{\"variables\":{\"k\":\"hunter2-file\n\"}}", 0600);
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_EPARSE);
    assert_null(strstr(e.msg, "hunter2"));
    assert_non_null(strstr(e.msg, "torn.json:1:"));
}

static void test_env_wins_over_file(void **state)
{
    (void)state;
    const char *path = write_file("s.json", "{\"variables\":{\"region\":\"from-file\"}}", 0600);
    struct secrets_config cfg = {.file = path, .getenv_fn = fake_env};
    struct secrets *s;
    struct remex_error e;
    char *v;
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    assert_string_equal(v, "eu-west-1");
    free(v);
    secrets_close(s);
}

/* secrets_chain names the configured backends in the chain's order, skipping the ones the
 * order names but the configuration lacks (what the sentinel reports a hung probe with). */
static void test_chain_names(void **state)
{
    (void)state;
    const char *path = write_file("c.json", "{\"variables\":{}}", 0600);
    static const char *const order[] = {"vault", "file", "env", NULL};
    struct secrets_config cfg = {.file = path, .getenv_fn = fake_env, .order = order};
    struct secrets *s;
    struct remex_error e;
    const char *names[4];
    assert_int_equal(secrets_open(&cfg, &s, &e), REMEX_OK);
    assert_int_equal(secrets_chain(s, names, 4), 2);
    assert_string_equal(names[0], "file");
    assert_string_equal(names[1], "env");
    assert_int_equal(secrets_chain(s, names, 1), 1);
    secrets_close(s);
    struct secrets_config none = {.no_env = 1};
    assert_int_equal(secrets_open(&none, &s, &e), REMEX_OK);
    assert_int_equal(secrets_chain(s, names, 4), 0);
    secrets_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uri_full),
        cmocka_unit_test(test_uri_minimal_and_v6),
        cmocka_unit_test(test_uri_extra_json),
        cmocka_unit_test(test_uri_malformed),
        cmocka_unit_test(test_uri_error_hides_password),
        cmocka_unit_test(test_uri_round_trip),
        cmocka_unit_test(test_env_backend),
        cmocka_unit_test_setup_teardown(test_json_file_backend_and_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_yaml_file_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_wins_over_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_errors_hide_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_names, setup, teardown),
    };
    return cmocka_run_group_tests_name("secrets", tests, NULL, NULL);
}
