/* Unit tests: trigspec (kinds, fields, templates, caps, malformed specs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "remex/trigspec.h"

static const struct tmpl_task_vars VARS = {
    .dag_id = "etl",
    .task_id = "wait",
    .run_id = "r1",
    .try_number = 1,
    .map_index = -1,
    .logical_date = 1767225600, /* 2026-01-01T00:00:00Z */
};

/* Parses text; returns rc, with the message in msg. */
static remex_err parse(const char *text, const struct tmpl_task_vars *vars, struct trigspec *t,
                       char *msg)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    struct remex_error e = {0};
    assert_non_null(j);
    remex_err rc = trigspec_parse(j, vars, t, &e);
    snprintf(msg, 512, "%s", rc == REMEX_OK ? "" : e.msg);
    json_decref(j);
    return rc;
}

static void expect_error(const char *text, const struct tmpl_task_vars *vars, const char *want)
{
    struct trigspec t;
    char msg[512];
    remex_err rc = parse(text, vars, &t, msg);
    trigspec_free(&t);
    if (rc == REMEX_OK || !strstr(msg, want))
        fail_msg("%s: got '%s', want '%s'", text, msg, want);
}

static void test_timer(void **state)
{
    (void)state;
    struct trigspec t;
    char msg[512];
    assert_int_equal(parse("{\"type\":\"timer\",\"delta\":\"5m\",\"timeout\":60}", NULL, &t, msg),
                     REMEX_OK);
    assert_int_equal(t.kind, TRIGSPEC_TIMER);
    assert_int_equal(t.delta_ms, 300000);
    assert_int_equal(t.timeout_ms, 60000);
    assert_int_equal(t.on_timeout_skip, 0);
    trigspec_free(&t);
    assert_int_equal(parse("{\"type\":\"timer\",\"at\":\"2026-01-02T00:00:00Z\","
                           "\"on_timeout\":\"skip\",\"delta\":null}",
                           NULL, &t, msg),
                     REMEX_OK);
    assert_int_equal(t.at_ms, 1767312000000LL);
    assert_int_equal(t.delta_ms, -1);
    assert_int_equal(t.on_timeout_skip, 1);
    trigspec_free(&t);
    assert_int_equal(parse("{\"type\":\"timer\",\"delta\":0.25}", NULL, &t, msg), REMEX_OK);
    assert_int_equal(t.delta_ms, 250);
    trigspec_free(&t);
}

static void test_templates(void **state)
{
    (void)state;
    struct trigspec t;
    char msg[512];
    const char *spec = "{\"type\":\"file\",\"path\":\"/in/{{ ds }}/ready\",\"non_empty\":true}";
    assert_int_equal(parse(spec, NULL, &t, msg), REMEX_OK); /* DAG validation: kept as is */
    assert_string_equal(t.path, "/in/{{ ds }}/ready");
    trigspec_free(&t);
    assert_int_equal(parse(spec, &VARS, &t, msg), REMEX_OK);
    assert_string_equal(t.path, "/in/2026-01-01/ready");
    assert_int_equal(t.non_empty, 1);
    trigspec_free(&t);
    assert_int_equal(parse("{\"type\":\"timer\",\"at\":\"{{ ts }}\"}", &VARS, &t, msg), REMEX_OK);
    assert_int_equal(t.at_ms, 1767225600000LL);
    trigspec_free(&t);
    expect_error("{\"type\":\"file\",\"path\":\"/in/{{ nope }}\"}", &VARS, "trigger.path:");
    expect_error("{\"type\":\"timer\",\"at\":\"{{ ds }}\"}", &VARS, "trigger.at: expected");
}

static void test_http_object_external(void **state)
{
    (void)state;
    struct trigspec t;
    char msg[512];
    assert_int_equal(parse("{\"type\":\"http\",\"url\":\"http://127.0.0.1:1/x\",\"status\":204,"
                           "\"json_path\":\"a.b\",\"json_value\":[1],\"connection\":\"api\"}",
                           NULL, &t, msg),
                     REMEX_OK);
    assert_int_equal(t.status, 204);
    assert_string_equal(t.json_path, "a.b");
    assert_true(json_is_array(t.json_value));
    assert_string_equal(t.connection, "api");
    trigspec_free(&t);
    assert_int_equal(parse("{\"type\":\"object_key\",\"prefix\":\"exports/x/\"}", NULL, &t, msg),
                     REMEX_OK);
    assert_int_equal(t.prefix, 1);
    assert_string_equal(t.key, "exports/x/");
    trigspec_free(&t);
    assert_int_equal(parse("{\"type\":\"external_run\",\"dag_id\":\"up\",\"task_id\":\"t\","
                           "\"state\":\"failed\",\"poke_interval\":2}",
                           NULL, &t, msg),
                     REMEX_OK);
    assert_string_equal(t.dag_id, "up");
    assert_null(t.run_id);
    assert_int_equal(t.poke_ms, 2000);
    trigspec_free(&t);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_error("[]", NULL, "trigger: expected an object");
    expect_error("{\"type\":\"sensor\"}", NULL, "trigger.type: expected timer");
    expect_error("{\"type\":1}", NULL, "trigger.type");
    expect_error("{\"type\":\"timer\"}", NULL, "exactly one of delta and at");
    expect_error("{\"type\":\"timer\",\"delta\":1,\"at\":\"2026-01-01T00:00:00Z\"}", NULL,
                 "exactly one");
    expect_error("{\"type\":\"timer\",\"delta\":-1}", NULL, "trigger.delta: expected seconds");
    expect_error("{\"type\":\"timer\",\"delta\":\"soon\"}", NULL, "trigger.delta");
    expect_error("{\"type\":\"timer\",\"delta\":1e300}", NULL, "trigger.delta");
    expect_error("{\"type\":\"timer\",\"at\":\"tomorrow\"}", NULL, "trigger.at");
    expect_error("{\"type\":\"timer\",\"delta\":1,\"pth\":1}", NULL, "trigger.pth: unknown key");
    expect_error("{\"type\":\"timer\",\"delta\":1,\"on_timeout\":\"retry\"}", NULL,
                 "trigger.on_timeout");
    expect_error("{\"type\":\"file\"}", NULL, "trigger.path: required");
    expect_error("{\"type\":\"file\",\"path\":\"rel/x\"}", NULL, "absolute path");
    expect_error("{\"type\":\"file\",\"path\":\"/x\",\"non_empty\":\"yes\"}", NULL,
                 "trigger.non_empty");
    expect_error("{\"type\":\"file\",\"path\":\"\"}", NULL, "trigger.path: expected a string");
    expect_error("{\"type\":\"file\",\"path\":\"/a\\u0000b\"}", NULL, "trigger.path");
    expect_error("{\"type\":\"http\"}", NULL, "trigger.url: required");
    expect_error("{\"type\":\"http\",\"url\":\"ftp://x\"}", NULL, "trigger.url: expected");
    expect_error("{\"type\":\"http\",\"url\":\"http://x\",\"method\":\"POST\"}", NULL,
                 "trigger.method");
    expect_error("{\"type\":\"http\",\"url\":\"http://x\",\"status\":99}", NULL, "trigger.status");
    expect_error("{\"type\":\"http\",\"url\":\"http://x\",\"json_value\":1}", NULL,
                 "needs json_path");
    expect_error("{\"type\":\"object_key\"}", NULL, "exactly one of key and prefix");
    expect_error("{\"type\":\"object_key\",\"key\":\"../etc/passwd\"}", NULL, "relative key");
    expect_error("{\"type\":\"object_key\",\"key\":\"/abs\"}", NULL, "relative key");
    expect_error("{\"type\":\"external_run\"}", NULL, "trigger.dag_id: required");
    expect_error("{\"type\":\"external_run\",\"dag_id\":\"x\",\"state\":\"done\"}", NULL,
                 "trigger.state");
}

static void test_caps(void **state)
{
    (void)state;
    static char big[TRIGSPEC_STR_MAX + 200];
    int n = snprintf(big, sizeof(big), "{\"type\":\"file\",\"path\":\"/");
    memset(big + n, 'a', TRIGSPEC_STR_MAX);
    memcpy(big + n + TRIGSPEC_STR_MAX, "\"}", 3);
    expect_error(big, NULL, "trigger.path: expected a string of 1..");
    expect_error("{\"type\":\"timer\",\"delta\":1,\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,"
                 "\"g\":1,\"h\":1,\"i\":1,\"j\":1,\"k\":1,\"l\":1,\"m\":1,\"n\":1,\"o\":1,\"p\":1}",
                 NULL, "more than 16 keys");
    /* A template may not expand past the cap either. */
    n = snprintf(big, sizeof(big), "{\"type\":\"file\",\"path\":\"/");
    for (int i = 0; i < 500; i++)
        n += snprintf(big + n, sizeof(big) - (size_t)n, "{{ ds }}");
    snprintf(big + n, sizeof(big) - (size_t)n, "\"}");
    expect_error(big, &VARS, "too long");
}

/* The reply poll0 decoded last: the item's pointers borrow from it. */
static json_t *last_reply;

/* Decodes reply text: the envelope, then item 0; rc and message in msg. */
static remex_err poll0(const char *text, struct trigspec_item *it, char *msg)
{
    json_decref(last_reply);
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL), *items = NULL;
    struct remex_error e = {0};
    assert_non_null(j);
    remex_err rc = trigspec_poll_reply(j, &items, &e);
    if (rc == REMEX_OK)
        rc = trigspec_poll_item(json_array_get(items, 0), 0, it, &e);
    snprintf(msg, 512, "%s", rc == REMEX_OK ? "" : e.msg);
    last_reply = j;
    return rc;
}

static void expect_poll_error(const char *text, const char *want, int64_t want_id)
{
    struct trigspec_item it;
    char msg[512];
    remex_err rc = poll0(text, &it, msg);
    if (rc != REMEX_EPROTO || !strstr(msg, want))
        fail_msg("%s: got '%s', want '%s'", text, msg, want);
    if (!strstr(want, "reply") && it.trigger_id != want_id)
        fail_msg("%s: trigger_id %lld, want %lld", text, (long long)it.trigger_id,
                 (long long)want_id);
}

static void test_poll_reply(void **state)
{
    (void)state;
    struct trigspec_item it;
    char msg[512];
    assert_int_equal(
        poll0("{\"triggers\":[{\"trigger_id\":7,\"ti_id\":3,\"spec\":{\"type\":\"timer\","
              "\"delta\":1},\"timeout_at\":null,\"created_at\":\"2026-01-01T00:00:01Z\","
              "\"context\":{\"dag_id\":\"etl\",\"run_id\":\"r1\",\"task_id\":\"w\","
              "\"try_number\":2,\"map_index\":-1,\"logical_date\":\"2026-01-01T00:00:00Z\","
              "\"data_interval_start\":null,\"data_interval_end\":\"2026-01-02T00:00:00Z\","
              "\"params\":{\"a\":1},\"conf\":null}}]}",
              &it, msg),
        REMEX_OK);
    assert_int_equal(it.trigger_id, 7);
    assert_int_equal(it.ti_id, 3);
    assert_int_equal(it.created_ms, 1767225601000LL);
    assert_true(it.timeout_at_ms == INT64_MIN);
    assert_string_equal(it.vars.dag_id, "etl");
    assert_string_equal(it.vars.run_id, "r1");
    assert_int_equal(it.vars.try_number, 2);
    assert_int_equal(it.vars.logical_date, 1767225600);
    assert_int_equal(it.vars.data_interval_start, 1767225600); /* null: the logical date */
    assert_int_equal(it.vars.data_interval_end, 1767312000);
    assert_non_null(it.vars.params);
    assert_null(it.vars.conf);
    /* The spec decoded with the item's variables. */
    struct trigspec t;
    struct remex_error e;
    assert_int_equal(trigspec_parse(it.spec, &it.vars, &t, &e), REMEX_OK);
    assert_int_equal(t.delta_ms, 1000);
    trigspec_free(&t);
    /* An empty reply and an item without context are fine. */
    assert_int_equal(poll0("{\"triggers\":[{\"trigger_id\":1,\"ti_id\":1,\"spec\":{}}]}", &it, msg),
                     REMEX_OK);
    assert_string_equal(it.vars.run_id, "");
    assert_int_equal(it.vars.map_index, -1);

    /* Malformed envelopes. */
    expect_poll_error("[]", "reply: expected an object", 0);
    expect_poll_error("{}", "reply.triggers: expected an array", 0);
    expect_poll_error("{\"triggers\":{}}", "reply.triggers: expected an array", 0);
    /* Malformed items: the field is named; trigger_id kept once read. */
    expect_poll_error("{\"triggers\":[3]}", "triggers[0]: expected an object", 0);
    expect_poll_error("{\"triggers\":[{\"ti_id\":1}]}", "triggers[0].trigger_id", 0);
    expect_poll_error("{\"triggers\":[{\"trigger_id\":-4,\"ti_id\":1}]}", "triggers[0].trigger_id",
                      0);
    expect_poll_error("{\"triggers\":[{\"trigger_id\":\"4\",\"ti_id\":1}]}",
                      "triggers[0].trigger_id", 0);
    expect_poll_error("{\"triggers\":[{\"trigger_id\":4}]}", "triggers[0].ti_id", 4);
    expect_poll_error("{\"triggers\":[{\"trigger_id\":4,\"ti_id\":1,\"spec\":\"x\"}]}",
                      "triggers[0].spec: expected an object", 4);
    expect_poll_error("{\"triggers\":[{\"trigger_id\":4,\"ti_id\":1,\"spec\":{},"
                      "\"timeout_at\":\"soon\"}]}",
                      "triggers[0].timeout_at: expected RFC 3339", 4);
    expect_poll_error("{\"triggers\":[{\"trigger_id\":4,\"ti_id\":1,\"spec\":{},"
                      "\"context\":[]}]}",
                      "triggers[0].context: expected an object", 4);
    expect_poll_error("{\"triggers\":[{\"trigger_id\":4,\"ti_id\":1,\"spec\":{},"
                      "\"context\":{\"run_id\":5}}]}",
                      "triggers[0].context.run_id: expected a string", 4);
    expect_poll_error("{\"triggers\":[{\"trigger_id\":4,\"ti_id\":1,\"spec\":{},"
                      "\"context\":{\"try_number\":\"1\"}}]}",
                      "triggers[0].context.try_number: expected an integer", 4);
    expect_poll_error("{\"triggers\":[{\"trigger_id\":4,\"ti_id\":1,\"spec\":{},"
                      "\"context\":{\"logical_date\":17}}]}",
                      "triggers[0].context.logical_date", 4);
    expect_poll_error("{\"triggers\":[{\"trigger_id\":4,\"ti_id\":1,\"spec\":{},"
                      "\"context\":{\"params\":[1]}}]}",
                      "triggers[0].context.params: expected an object", 4);
    /* Caps: a context string over TRIGSPEC_CTX_STR_MAX, more than TRIGSPEC_POLL_MAX items. */
    char big[TRIGSPEC_CTX_STR_MAX + 200];
    int n = snprintf(big, sizeof(big),
                     "{\"triggers\":[{\"trigger_id\":4,\"ti_id\":1,\"spec\":{},"
                     "\"context\":{\"dag_id\":\"");
    memset(big + n, 'd', TRIGSPEC_CTX_STR_MAX + 1);
    snprintf(big + n + TRIGSPEC_CTX_STR_MAX + 1, sizeof(big) - (size_t)n - TRIGSPEC_CTX_STR_MAX - 1,
             "\"}}]}");
    expect_poll_error(big, "triggers[0].context.dag_id", 4);
    json_t *many = json_array(), *env;
    for (int k = 0; k <= TRIGSPEC_POLL_MAX; k++)
        json_array_append_new(many, json_integer(k));
    env = json_pack("{so}", "triggers", many);
    json_t *items = NULL;
    struct remex_error pe = {0};
    assert_int_equal(trigspec_poll_reply(env, &items, &pe), REMEX_EPROTO);
    assert_non_null(strstr(pe.msg, "more than 1000"));
    assert_null(items);
    json_decref(env);
    json_decref(last_reply);
    last_reply = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_http_object_external),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_poll_reply),
    };
    return cmocka_run_group_tests_name("trigspec", tests, NULL, NULL);
}
