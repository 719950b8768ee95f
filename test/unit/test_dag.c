/* Unit tests: dag (model, strict JSON, canonical form, validation, trigger rules, retries). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "remex/buf.h"
#include "remex/dag.h"

#define MINI                                                                                       \
    "{\"dag_id\":\"d\",\"fileloc\":\"f.yaml\",\"tasks\":[{\"task_id\":\"a\",\"command\":["         \
    "\"true\"]}]}"

/* ------------------------------------------------------------ trigger rules */

struct rule_case {
    enum dag_trigger_rule rule;
    unsigned total, success, failed, upstream_failed, skipped, removed;
    enum dag_rule_decision want;
};

#define W DAG_RULE_WAIT
#define R DAG_RULE_RUN
#define S DAG_RULE_SKIP
#define U DAG_RULE_UPSTREAM_FAILED

static const struct rule_case rule_cases[] = {
    /* rule                      tot  ok fail uf skip rm  decision */
    {DAG_TR_ALL_SUCCESS, 3, 3, 0, 0, 0, 0, R},
    {DAG_TR_ALL_SUCCESS, 3, 2, 0, 0, 0, 0, W},
    {DAG_TR_ALL_SUCCESS, 3, 0, 0, 0, 0, 0, W},
    {DAG_TR_ALL_SUCCESS, 3, 1, 1, 0, 0, 0, U},
    {DAG_TR_ALL_SUCCESS, 3, 0, 0, 1, 0, 0, U},
    {DAG_TR_ALL_SUCCESS, 3, 2, 0, 0, 1, 0, S},
    {DAG_TR_ALL_SUCCESS, 3, 1, 1, 0, 1, 0, U}, /* failure wins over skip */
    {DAG_TR_ALL_FAILED, 2, 0, 2, 0, 0, 0, R},
    {DAG_TR_ALL_FAILED, 2, 0, 1, 1, 0, 0, R},
    {DAG_TR_ALL_FAILED, 2, 0, 1, 0, 0, 0, W},
    {DAG_TR_ALL_FAILED, 2, 1, 1, 0, 0, 0, S},
    {DAG_TR_ALL_FAILED, 2, 0, 1, 0, 1, 0, S},
    {DAG_TR_ALL_DONE, 2, 1, 1, 0, 0, 0, R},
    {DAG_TR_ALL_DONE, 2, 0, 0, 0, 2, 0, R},
    {DAG_TR_ALL_DONE, 2, 0, 0, 1, 0, 1, R},
    {DAG_TR_ALL_DONE, 2, 1, 0, 0, 0, 0, W},
    {DAG_TR_ALL_SKIPPED, 2, 0, 0, 0, 2, 0, R},
    {DAG_TR_ALL_SKIPPED, 2, 0, 0, 0, 1, 0, W},
    {DAG_TR_ALL_SKIPPED, 2, 1, 0, 0, 1, 0, S},
    {DAG_TR_ALL_SKIPPED, 2, 0, 1, 0, 0, 0, S},
    {DAG_TR_ALL_SKIPPED, 2, 0, 0, 1, 0, 0, S},
    {DAG_TR_ONE_SUCCESS, 3, 1, 0, 0, 0, 0, R},
    {DAG_TR_ONE_SUCCESS, 3, 0, 0, 0, 0, 0, W},
    {DAG_TR_ONE_SUCCESS, 3, 0, 1, 0, 1, 0, W},
    {DAG_TR_ONE_SUCCESS, 2, 0, 0, 0, 2, 0, S},
    {DAG_TR_ONE_SUCCESS, 2, 0, 1, 0, 1, 0, U},
    {DAG_TR_ONE_SUCCESS, 2, 0, 2, 0, 0, 0, U},
    {DAG_TR_ONE_SUCCESS, 2, 1, 1, 0, 0, 0, R},
    {DAG_TR_ONE_FAILED, 3, 0, 1, 0, 0, 0, R},
    {DAG_TR_ONE_FAILED, 3, 0, 0, 1, 0, 0, R},
    {DAG_TR_ONE_FAILED, 3, 1, 0, 0, 0, 0, W},
    {DAG_TR_ONE_FAILED, 2, 1, 0, 0, 1, 0, S},
    {DAG_TR_ONE_DONE, 3, 1, 0, 0, 0, 0, R},
    {DAG_TR_ONE_DONE, 3, 0, 1, 0, 0, 0, R},
    {DAG_TR_ONE_DONE, 3, 0, 0, 0, 1, 0, W},
    {DAG_TR_ONE_DONE, 2, 0, 0, 0, 2, 0, S},
    {DAG_TR_ONE_DONE, 2, 0, 0, 1, 1, 0, S},
    {DAG_TR_NONE_FAILED, 2, 1, 0, 0, 1, 0, R},
    {DAG_TR_NONE_FAILED, 2, 0, 0, 0, 2, 0, R},
    {DAG_TR_NONE_FAILED, 2, 1, 0, 0, 0, 0, W},
    {DAG_TR_NONE_FAILED, 3, 1, 1, 0, 0, 0, U},
    {DAG_TR_NONE_FAILED, 3, 0, 0, 1, 0, 0, U},
    {DAG_TR_NONE_SKIPPED, 2, 1, 1, 0, 0, 0, R},
    {DAG_TR_NONE_SKIPPED, 2, 0, 0, 2, 0, 0, R},
    {DAG_TR_NONE_SKIPPED, 2, 1, 0, 0, 0, 0, W},
    {DAG_TR_NONE_SKIPPED, 2, 0, 0, 0, 1, 0, S},
    {DAG_TR_NONE_FAILED_MIN_ONE_SUCCESS, 2, 1, 0, 0, 1, 0, R},
    {DAG_TR_NONE_FAILED_MIN_ONE_SUCCESS, 2, 0, 0, 0, 2, 0, S},
    {DAG_TR_NONE_FAILED_MIN_ONE_SUCCESS, 2, 1, 0, 1, 0, 0, U},
    {DAG_TR_NONE_FAILED_MIN_ONE_SUCCESS, 2, 1, 0, 0, 0, 0, W},
    {DAG_TR_ALWAYS, 3, 0, 0, 0, 0, 0, R},
    {DAG_TR_ALWAYS, 2, 0, 2, 0, 0, 0, R},
    {DAG_TR_ALL_SUCCESS, 0, 0, 0, 0, 0, 0, R}, /* no upstream: runs whatever the rule */
    {DAG_TR_ONE_FAILED, 0, 0, 0, 0, 0, 0, R},
    {DAG_TR_ALL_SKIPPED, 0, 0, 0, 0, 0, 0, R},
};

/* Runs every case of rule r from the table. */
static void run_rule_cases(enum dag_trigger_rule r)
{
    int n = 0;
    for (size_t i = 0; i < sizeof(rule_cases) / sizeof(rule_cases[0]); i++) {
        const struct rule_case *k = &rule_cases[i];
        if (k->rule != r)
            continue;
        struct dag_upstream_counts c = {
            .total = k->total,
            .success = k->success,
            .failed = k->failed,
            .upstream_failed = k->upstream_failed,
            .skipped = k->skipped,
            .removed = k->removed,
            .done = k->success + k->failed + k->upstream_failed + k->skipped + k->removed,
        };
        enum dag_rule_decision got = dag_rule_eval(k->rule, &c);
        if (got != k->want)
            fail_msg("case %zu (%s): got %d want %d", i, dag_trigger_rule_name(k->rule), got,
                     k->want);
        n++;
    }
    assert_true(n >= 2);
}

static void test_rule_all_success(void **state)
{
    (void)state;
    run_rule_cases(DAG_TR_ALL_SUCCESS);
}

static void test_rule_all_failed(void **state)
{
    (void)state;
    run_rule_cases(DAG_TR_ALL_FAILED);
}

static void test_rule_all_done(void **state)
{
    (void)state;
    run_rule_cases(DAG_TR_ALL_DONE);
}

static void test_rule_all_skipped(void **state)
{
    (void)state;
    run_rule_cases(DAG_TR_ALL_SKIPPED);
}

static void test_rule_one_success(void **state)
{
    (void)state;
    run_rule_cases(DAG_TR_ONE_SUCCESS);
}

static void test_rule_one_failed(void **state)
{
    (void)state;
    run_rule_cases(DAG_TR_ONE_FAILED);
}

static void test_rule_one_done(void **state)
{
    (void)state;
    run_rule_cases(DAG_TR_ONE_DONE);
}

static void test_rule_none_failed(void **state)
{
    (void)state;
    run_rule_cases(DAG_TR_NONE_FAILED);
}

static void test_rule_none_skipped(void **state)
{
    (void)state;
    run_rule_cases(DAG_TR_NONE_SKIPPED);
}

static void test_rule_none_failed_min_one_success(void **state)
{
    (void)state;
    run_rule_cases(DAG_TR_NONE_FAILED_MIN_ONE_SUCCESS);
}

static void test_rule_always(void **state)
{
    (void)state;
    run_rule_cases(DAG_TR_ALWAYS);
}

static void test_rule_every_rule_covered(void **state)
{
    (void)state;
    for (int r = 0; r < DAG_TR__COUNT; r++) {
        int seen = 0;
        for (size_t i = 0; i < sizeof(rule_cases) / sizeof(rule_cases[0]); i++)
            seen += rule_cases[i].rule == (enum dag_trigger_rule)r;
        assert_true(seen >= 2);
        enum dag_trigger_rule back;
        assert_int_equal(dag_trigger_rule_parse(dag_trigger_rule_name(r), &back), 0);
        assert_int_equal(back, r);
    }
    enum dag_trigger_rule x;
    assert_int_equal(dag_trigger_rule_parse("all_sucess", &x), -1);
    assert_string_equal(dag_trigger_rule_name(DAG_TR__COUNT), "?");
}

static void test_states(void **state)
{
    (void)state;
    int terminal = 0;
    for (int s = 0; s < DAG_TI__COUNT; s++) {
        enum dag_ti_state back;
        assert_int_equal(dag_state_parse(dag_state_name(s), &back), 0);
        assert_int_equal(back, s);
        terminal += dag_state_is_terminal(s);
    }
    assert_int_equal(terminal, 5);
    assert_true(dag_state_is_terminal(DAG_TI_UPSTREAM_FAILED));
    assert_false(dag_state_is_terminal(DAG_TI_UP_FOR_RETRY));
    assert_false(dag_state_is_terminal(DAG_TI_DEFERRED));
    assert_string_equal(dag_state_name(DAG_TI_UP_FOR_RETRY), "up_for_retry");
    enum dag_ti_state x;
    assert_int_equal(dag_state_parse("done", &x), -1);
}

/* ------------------------------------------------------------ retry delay */

static void test_retry_delay(void **state)
{
    (void)state;
    struct dag_task t;
    memset(&t, 0, sizeof(t));
    t.retry_delay_ms = 300000;
    t.max_retry_delay_ms = DAG_UNSET;
    assert_int_equal(dag_retry_delay_ms(&t, 1), 300000);
    assert_int_equal(dag_retry_delay_ms(&t, 7), 300000);
    t.retry_exponential_backoff = 1;
    assert_int_equal(dag_retry_delay_ms(&t, 0), 300000);
    assert_int_equal(dag_retry_delay_ms(&t, 1), 300000);
    assert_int_equal(dag_retry_delay_ms(&t, 2), 600000);
    assert_int_equal(dag_retry_delay_ms(&t, 4), 2400000);
    assert_int_equal(dag_retry_delay_ms(&t, 12), 24LL * 3600 * 1000); /* 24 h cap */
    assert_int_equal(dag_retry_delay_ms(&t, 63), 24LL * 3600 * 1000);
    assert_int_equal(dag_retry_delay_ms(&t, INT64_MAX), 24LL * 3600 * 1000);
    t.max_retry_delay_ms = 1000000;
    assert_int_equal(dag_retry_delay_ms(&t, 3), 1000000);
    t.retry_delay_ms = 0;
    assert_int_equal(dag_retry_delay_ms(&t, 50), 0);
    t.retry_delay_ms = 1;
    t.max_retry_delay_ms = DAG_UNSET;
    assert_int_equal(dag_retry_delay_ms(&t, 11), 1024);
}

/* ------------------------------------------------------------ JSON */

static struct dag *decode_ok(const char *json)
{
    struct dag *d = NULL;
    struct remex_error e = {0};
    if (dag_from_json(json, strlen(json), &d, &e) != REMEX_OK)
        fail_msg("decode failed: %s", e.msg);
    return d;
}

static void expect_err(const char *json, remex_err code, const char *msg)
{
    struct dag *d = NULL;
    struct remex_error e = {0};
    remex_err rc = dag_from_json(json, strlen(json), &d, &e);
    if (rc != code || strstr(e.msg, msg) == NULL)
        fail_msg("got %s '%s', want %s '%s'", remex_errname(rc), e.msg, remex_errname(code), msg);
    assert_null(d);
}

static void test_minimal_canonical(void **state)
{
    (void)state;
    struct dag *d = decode_ok(MINI);
    char *s = NULL;
    assert_int_equal(dag_to_json(d, &s, NULL, NULL), REMEX_OK);
    assert_string_equal(
        s, "{\"catchup\":false,\"dag_id\":\"d\",\"dagrun_timeout\":null,\"description\":null,"
           "\"end_date\":null,\"fileloc\":\"f.yaml\",\"max_active_runs\":16,"
           "\"max_active_tasks\":16,\"params\":{},\"schedule\":null,\"start_date\":null,"
           "\"tags\":[],\"tasks\":[{\"command\":[\"true\"],\"connections\":[],\"env\":{},"
           "\"execution_timeout\":null,\"limits\":{\"cpu_time\":null,\"memory\":null,"
           "\"open_files\":null,\"processes\":null},\"max_retry_delay\":null,"
           "\"pool_slots\":1,\"priority_weight\":1,\"queue\":\"default\",\"retries\":0,"
           "\"retry_delay\":300,\"retry_exponential_backoff\":false,\"shell\":null,"
           "\"task_id\":\"a\",\"trigger\":null,\"trigger_rule\":\"all_success\","
           "\"upstream\":[],\"variables\":[]}]}");
    free(s);
    assert_int_equal(strlen(d->hash), 64);
    dag_free(d);
}

static const char *full_json =
    "{\"dag_id\":\"etl.daily\",\"fileloc\":\"dags/etl.yaml\",\"description\":\"ETL\","
    "\"schedule\":\"30 2 * * mon-fri\",\"start_date\":\"2026-01-01T00:00:00Z\","
    "\"end_date\":\"2027-01-01T00:00:00.250Z\",\"catchup\":true,\"max_active_runs\":2,"
    "\"max_active_tasks\":8,\"dagrun_timeout\":3600.5,"
    "\"params\":{\"z\":1,\"a\":{\"y\":[1,2.5,\"x\"],\"b\":null}},\"tags\":[\"etl\",\"daily\"],"
    "\"tasks\":["
    "{\"task_id\":\"wait\",\"trigger\":{\"type\":\"file\",\"path\":\"/data/in\",\"timeout\":60}},"
    "{\"task_id\":\"extract\",\"command\":[\"extract\",\"--ds\",\"{{ ds }}\"],"
    "\"env\":{\"Z\":\"1\",\"A\":\"2\"},\"upstream\":[\"wait\"],\"retries\":3,"
    "\"retry_delay\":0.1,\"retry_exponential_backoff\":true,\"max_retry_delay\":600,"
    "\"execution_timeout\":1800,\"queue\":\"etl\",\"priority_weight\":-5,\"pool_slots\":2,"
    "\"connections\":[\"pg\"],\"variables\":[\"bucket\"],"
    "\"limits\":{\"memory\":67108864,\"cpu_time\":60,\"processes\":64,\"open_files\":1024}},"
    "{\"task_id\":\"load\",\"shell\":\"load.sh | tee log\",\"upstream\":[\"extract\",\"wait\"],"
    "\"trigger_rule\":\"none_failed_min_one_success\"}]}";

static void sha256_hex(const char *s, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void test_round_trip_byte_identical(void **state)
{
    (void)state;
    struct dag *d1 = decode_ok(full_json);
    char *s1 = NULL, *s2 = NULL, h[65];
    assert_int_equal(dag_to_json(d1, &s1, NULL, NULL), REMEX_OK);
    struct dag *d2 = decode_ok(s1);
    assert_int_equal(dag_to_json(d2, &s2, NULL, NULL), REMEX_OK);
    assert_string_equal(s1, s2);
    assert_string_equal(d1->hash, d2->hash);
    sha256_hex(s1, h);
    assert_string_equal(d1->hash, h);
    assert_string_equal(d2->hash, h);
    /* Canonical details. */
    assert_non_null(strstr(s1, "\"retry_delay\":0.1,"));
    assert_non_null(strstr(s1, "\"dagrun_timeout\":3600.5,"));
    assert_non_null(strstr(s1, "\"end_date\":\"2027-01-01T00:00:00.250Z\""));
    assert_non_null(strstr(s1, "\"env\":{\"A\":\"2\",\"Z\":\"1\"}"));
    assert_non_null(strstr(s1, "\"params\":{\"a\":{\"b\":null,\"y\":[1,2.5,\"x\"]},\"z\":1}"));
    assert_non_null(strstr(s1, "\"trigger\":{\"path\":\"/data/in\",\"timeout\":60,\"type\":"));
    free(s1);
    free(s2);
    dag_free(d1);
    dag_free(d2);
}

static void test_hash_changes_with_content(void **state)
{
    (void)state;
    struct dag *a = decode_ok(MINI);
    struct dag *b = decode_ok("{\"tasks\":[{\"command\":[\"true\"],\"task_id\":\"a\"}],"
                              "\"fileloc\":\"f.yaml\",\"dag_id\":\"d\",\"catchup\":false}");
    struct dag *c = decode_ok("{\"dag_id\":\"d\",\"fileloc\":\"f.yaml\",\"tasks\":"
                              "[{\"task_id\":\"a\",\"command\":[\"false\"]}]}");
    assert_string_equal(a->hash, b->hash); /* key order and explicit defaults do not matter */
    assert_string_not_equal(a->hash, c->hash);
    dag_free(a);
    dag_free(b);
    dag_free(c);
}

static void test_model_fields(void **state)
{
    (void)state;
    struct dag *d = decode_ok(full_json);
    assert_int_equal(d->ntasks, 3);
    assert_true(d->catchup);
    assert_int_equal(d->dagrun_timeout_ms, 3600500);
    assert_int_equal(d->end_date_ms % 1000, 250);
    const struct dag_task *t = &d->tasks[1];
    assert_int_equal(t->retry_delay_ms, 100);
    assert_int_equal(t->limits.memory, 67108864);
    assert_int_equal(t->limits.cpu_time_ms, 60000);
    assert_int_equal(t->priority_weight, -5);
    assert_string_equal(t->env[0].key, "A");
    assert_int_equal(d->tasks[0].has_command, 0);
    assert_non_null(d->tasks[0].trigger);
    assert_int_equal(d->tasks[2].trigger_rule, DAG_TR_NONE_FAILED_MIN_ONE_SUCCESS);
    assert_string_equal(d->tasks[2].task_id, "load");
    /* topological order and downstream lists */
    assert_int_equal(d->topo[0], 0);
    assert_int_equal(d->topo[1], 1);
    assert_int_equal(d->topo[2], 2);
    assert_int_equal(d->tasks[0].ndownstream, 2);
    assert_int_equal(d->tasks[1].ndownstream, 1);
    assert_int_equal(d->tasks[1].downstream_idx[0], 2);
    assert_int_equal(d->tasks[2].upstream_idx[1], 0);
    json_t *tj = dag_task_to_json_value(&d->tasks[2]);
    assert_non_null(tj);
    assert_string_equal(json_string_value(json_object_get(tj, "shell")), "load.sh | tee log");
    json_decref(tj);
    dag_free(d);
}

/* Replaces the value of key in task 1 (or the DAG when task < 0) of a valid DAG. */
static void expect_field(int task, const char *key, const char *value, const char *msg)
{
    json_t *o = json_loads(full_json, 0, NULL);
    json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
    assert_non_null(o);
    assert_non_null(v);
    json_t *target = task < 0 ? o : json_array_get(json_object_get(o, "tasks"), (size_t)task);
    json_object_set_new(target, key, v);
    char *s = json_dumps(o, 0);
    json_decref(o);
    expect_err(s, REMEX_EINVAL, msg);
    free(s);
}

static void test_wrong_types_name_the_path(void **state)
{
    (void)state;
    expect_field(-1, "dag_id", "1", "dag_id: expected string");
    expect_field(-1, "fileloc", "null", "fileloc: expected string");
    expect_field(-1, "description", "[]", "description: expected string or null");
    expect_field(-1, "schedule", "5", "schedule: expected string or null");
    expect_field(-1, "start_date", "\"2026-01-01\"", "start_date: ");
    expect_field(-1, "end_date", "7", "end_date: expected RFC 3339 string or null");
    expect_field(-1, "catchup", "\"yes\"", "catchup: expected boolean");
    expect_field(-1, "max_active_runs", "0", "max_active_runs: expected integer >= 1");
    expect_field(-1, "max_active_tasks", "2.5", "max_active_tasks: expected integer >= 1");
    expect_field(-1, "dagrun_timeout", "-1", "dagrun_timeout: expected seconds");
    expect_field(-1, "params", "[]", "params: expected object");
    expect_field(-1, "tags", "[1]", "tags[0]: expected string");
    expect_field(-1, "tasks", "{}", "tasks: expected list of tasks");
    expect_field(1, "task_id", "3", "tasks[1].task_id: expected string");
    expect_field(1, "command", "\"ls -l\"", "tasks[1].command: expected list of strings");
    expect_field(1, "command", "[\"ls\",2]", "tasks[1].command[1]: expected string");
    expect_field(2, "shell", "[]", "tasks[2].shell: expected string or null");
    expect_field(1, "env", "{\"A\":1}", "tasks[1].env.A: expected string");
    expect_field(1, "env", "{\"1A\":\"x\"}", "tasks[1].env.1A: expected a variable name");
    expect_field(1, "env", "[]", "tasks[1].env: expected object of strings");
    expect_field(1, "upstream", "\"wait\"", "tasks[1].upstream: expected list of strings");
    expect_field(1, "trigger_rule", "\"sometimes\"", "tasks[1].trigger_rule: unknown trigger");
    expect_field(1, "retries", "-1", "tasks[1].retries: expected integer >= 0");
    expect_field(1, "retries", "\"3\"", "tasks[1].retries: expected integer >= 0");
    expect_field(1, "retry_delay", "\"5m\"", "tasks[1].retry_delay: expected seconds");
    expect_field(1, "retry_delay", "null", "tasks[1].retry_delay: expected seconds");
    expect_field(1, "retry_exponential_backoff", "1",
                 "tasks[1].retry_exponential_backoff: expected boolean");
    expect_field(1, "max_retry_delay", "true", "tasks[1].max_retry_delay: expected seconds");
    expect_field(1, "execution_timeout", "1e12", "tasks[1].execution_timeout: expected seconds");
    expect_field(1, "queue", "\"a b\"", "tasks[1].queue: expected name matching");
    expect_field(1, "priority_weight", "1.5", "tasks[1].priority_weight: expected integer");
    expect_field(1, "pool_slots", "0", "tasks[1].pool_slots: expected integer >= 1");
    expect_field(1, "connections", "[\"bad id\"]", "tasks[1].connections[0]: expected id");
    expect_field(1, "variables", "{}", "tasks[1].variables: expected list of strings");
    expect_field(1, "limits", "7", "tasks[1].limits: expected object or null");
    expect_field(1, "limits", "{\"memory\":-1}", "tasks[1].limits.memory: expected integer >= 0");
    expect_field(1, "limits", "{\"cpu_time\":\"1m\"}", "tasks[1].limits.cpu_time: expected sec");
    expect_field(1, "limits", "{\"processes\":0}", "tasks[1].limits.processes: expected integer");
    expect_field(1, "limits", "{\"open_files\":[]}", "tasks[1].limits.open_files: expected int");
    expect_field(0, "trigger", "[]", "tasks[0].trigger: expected object or null");
    expect_field(0, "trigger", "{\"timeout\":1}", "tasks[0].trigger.type: expected trigger type");
    expect_field(0, "trigger", "{\"type\":\"file\",\"timeout\":\"1h\"}",
                 "tasks[0].trigger.timeout: expected seconds");
}

static void test_unknown_keys_rejected(void **state)
{
    (void)state;
    expect_field(-1, "shedule", "\"@daily\"", "shedule: unknown key");
    expect_field(1, "retrys", "3", "tasks[1].retrys: unknown key");
    expect_field(1, "limits", "{\"mem\":1}", "tasks[1].limits.mem: unknown key");
}

static void test_required_fields(void **state)
{
    (void)state;
    expect_err("{\"fileloc\":\"f\",\"tasks\":[]}", REMEX_EINVAL, "dag_id: required");
    expect_err("{\"dag_id\":\"d\",\"tasks\":[]}", REMEX_EINVAL, "fileloc: required");
    expect_err("{\"dag_id\":\"d\",\"fileloc\":\"f\"}", REMEX_EINVAL, "tasks: expected list");
    expect_err("{\"dag_id\":\"d\",\"fileloc\":\"f\",\"tasks\":[]}", REMEX_EINVAL,
               "tasks: expected at least one task");
    expect_err("{\"dag_id\":\"d\",\"fileloc\":\"f\",\"tasks\":[{\"command\":[\"x\"]}]}",
               REMEX_EINVAL, "tasks[0].task_id: required");
    expect_err("[]", REMEX_EINVAL, "dag: expected object");
}

static void test_malformed_json(void **state)
{
    (void)state;
    expect_err("{\"dag_id\":", REMEX_EPARSE, "invalid JSON");
    expect_err("{\"dag_id\":\"d\",\"dag_id\":\"e\"}", REMEX_EPARSE, "invalid JSON");
    expect_err("", REMEX_EPARSE, "invalid JSON");
}

static void test_command_shell_exclusive(void **state)
{
    (void)state;
    expect_err("{\"dag_id\":\"d\",\"fileloc\":\"f\",\"tasks\":[{\"task_id\":\"a\"}]}", REMEX_EINVAL,
               "tasks[0]: exactly one of command and shell is required");
    expect_err("{\"dag_id\":\"d\",\"fileloc\":\"f\",\"tasks\":[{\"task_id\":\"a\","
               "\"command\":[\"x\"],\"shell\":\"x\"}]}",
               REMEX_EINVAL, "tasks[0]: command and shell are mutually exclusive");
    expect_err("{\"dag_id\":\"d\",\"fileloc\":\"f\",\"tasks\":[{\"task_id\":\"a\","
               "\"command\":[]}]}",
               REMEX_EINVAL, "tasks[0].command: expected a non-empty list");
}

static void test_ids(void **state)
{
    (void)state;
    char id[300];
    memset(id, 'x', 250);
    id[250] = '\0';
    assert_true(dag_id_valid(id));
    id[250] = 'x';
    id[251] = '\0';
    assert_false(dag_id_valid(id));
    assert_false(dag_id_valid(""));
    assert_false(dag_id_valid("a/b"));
    assert_false(dag_id_valid("é"));
    assert_true(dag_id_valid("A-z_0.9"));
    expect_err("{\"dag_id\":\"a b\",\"fileloc\":\"f\",\"tasks\":[{\"task_id\":\"a\","
               "\"command\":[\"x\"]}]}",
               REMEX_EINVAL, "dag_id: expected id matching");
    expect_err("{\"dag_id\":\"d\",\"fileloc\":\"f\",\"tasks\":[{\"task_id\":\"a;b\","
               "\"command\":[\"x\"]}]}",
               REMEX_EINVAL, "tasks[0].task_id: expected id matching");
}

#define T2(a, up)   "{\"task_id\":\"" a "\",\"command\":[\"x\"],\"upstream\":[" up "]}"
#define DAGT(tasks) "{\"dag_id\":\"d\",\"fileloc\":\"f\",\"tasks\":[" tasks "]}"

static void test_cycle_named(void **state)
{
    (void)state;
    expect_err(DAGT(T2("a", "\"c\"") "," T2("b", "\"a\"") "," T2("c", "\"b\"")), REMEX_EINVAL,
               "tasks: cycle a -> b -> c -> a");
    expect_err(DAGT(T2("s", "") "," T2("x", "\"s\",\"y\"") "," T2("y", "\"x\"")), REMEX_EINVAL,
               "tasks: cycle x -> y -> x");
    /* dag_validate on a model edited into a cycle: bad_task points at a task on it. */
    struct dag *d = decode_ok(DAGT(T2("p", "") "," T2("q", "\"p\"") "," T2("r", "\"q\"")));
    struct remex_error e = {0};
    size_t bad = 0;
    d->tasks[0].upstream.v = calloc(1, sizeof(char *));
    assert_non_null(d->tasks[0].upstream.v);
    d->tasks[0].upstream.v[0] = strdup("r");
    d->tasks[0].upstream.n = 1;
    assert_int_equal(dag_validate(d, &bad, &e), REMEX_EINVAL);
    assert_string_equal(e.msg, "tasks: cycle p -> q -> r -> p");
    assert_true(bad < 3);
    assert_null(d->topo);
    dag_free(d);
}

static void test_unknown_upstream_and_self(void **state)
{
    (void)state;
    expect_err(DAGT(T2("a", "") "," T2("b", "\"a\",\"zz\"")), REMEX_EINVAL,
               "tasks[1].upstream[1]: unknown task 'zz'");
    expect_err(DAGT(T2("a", "\"a\"")), REMEX_EINVAL,
               "tasks[0].upstream[0]: task depends on itself");
    expect_err(DAGT(T2("a", "") "," T2("b", "\"a\",\"a\"")), REMEX_EINVAL,
               "tasks[1].upstream[1]: duplicate upstream 'a'");
}

static void test_duplicate_ids(void **state)
{
    (void)state;
    expect_err(DAGT(T2("a", "") "," T2("b", "") "," T2("a", "")), REMEX_EINVAL,
               "tasks[2].task_id: duplicate task id 'a'");
}

static void test_schedule_validated(void **state)
{
    (void)state;
    expect_err("{\"dag_id\":\"d\",\"fileloc\":\"f\",\"schedule\":\"61 * * * *\","
               "\"start_date\":\"2026-01-01T00:00:00Z\",\"tasks\":[" T2("a", "") "]}",
               REMEX_EINVAL, "schedule: minute field: value 61 out of range 0-59 (column 1)");
    expect_err(
        "{\"dag_id\":\"d\",\"fileloc\":\"f\",\"schedule\":\"@daily\",\"tasks\":[" T2("a", "") "]}",
        REMEX_EINVAL, "start_date: required when schedule is set");
    expect_err("{\"dag_id\":\"d\",\"fileloc\":\"f\",\"start_date\":\"2026-01-02T00:00:00Z\","
               "\"end_date\":\"2026-01-01T00:00:00Z\",\"tasks\":[" T2("a", "") "]}",
               REMEX_EINVAL, "end_date: before start_date");
    struct dag *d =
        decode_ok("{\"dag_id\":\"d\",\"fileloc\":\"f\",\"schedule\":\"@daily\","
                  "\"start_date\":\"2026-01-01T00:00:00+02:00\",\"tasks\":[" T2("a", "") "]}");
    assert_int_equal(d->cron.minute, 1);
    assert_int_equal(d->start_date_ms, 1767218400000LL);
    char *s;
    assert_int_equal(dag_to_json(d, &s, NULL, NULL), REMEX_OK);
    assert_non_null(strstr(s, "\"start_date\":\"2025-12-31T22:00:00Z\""));
    free(s);
    dag_free(d);
}

static void test_sensor_task_without_command(void **state)
{
    (void)state;
    struct dag *d = decode_ok(DAGT("{\"task_id\":\"w\",\"trigger\":{\"type\":\"timer\","
                                   "\"delta\":30}}"));
    char *s;
    assert_int_equal(dag_to_json(d, &s, NULL, NULL), REMEX_OK);
    assert_non_null(strstr(s, "\"trigger\":{\"delta\":30,\"timeout\":null,\"type\":\"timer\"}"));
    free(s);
    dag_free(d);
}

static void test_cap_tasks(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4 * 1024 * 1024);
    buf_puts(&b, "{\"dag_id\":\"d\",\"fileloc\":\"f\",\"tasks\":[");
    for (int i = 0; i <= DAG_TASKS_MAX; i++)
        buf_printf(&b, "%s{\"task_id\":\"t%d\",\"shell\":\"x\"}", i ? "," : "", i);
    buf_puts(&b, "]}");
    assert_true(b.len < DAG_JSON_MAX);
    struct dag *d = NULL;
    struct remex_error e = {0};
    assert_int_equal(dag_from_json(b.data, b.len, &d, &e), REMEX_ETOOBIG);
    assert_non_null(strstr(e.msg, "tasks: more than 10000 tasks"));
    buf_free(&b);
}

static void test_cap_json_size(void **state)
{
    (void)state;
    size_t n = DAG_JSON_MAX + 10;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    memcpy(big, MINI, strlen(MINI));
    struct dag *d = NULL;
    struct remex_error e = {0};
    assert_int_equal(dag_from_json(big, n, &d, &e), REMEX_ETOOBIG);
    free(big);
    /* Canonical form over the cap (valid input under it, every default
     * written out: ~390 bytes a task besides the command) is refused too. */
    char cmd[501];
    memset(cmd, 'x', sizeof(cmd) - 1);
    cmd[sizeof(cmd) - 1] = '\0';
    struct buf b = BUF_INIT(16 * 1024 * 1024);
    buf_puts(&b, "{\"dag_id\":\"d\",\"fileloc\":\"f\",\"tasks\":[");
    for (int i = 0; i < DAG_TASKS_MAX; i++)
        buf_printf(&b, "%s{\"task_id\":\"t%d\",\"shell\":\"%s\"}", i ? "," : "", i, cmd);
    buf_puts(&b, "]}");
    assert_true(b.len < DAG_JSON_MAX);
    assert_int_equal(dag_from_json(b.data, b.len, &d, &e), REMEX_ETOOBIG);
    assert_non_null(strstr(e.msg, "canonical JSON larger than"));
    buf_free(&b);
}

/* The cap is what a 10,000-task DAG needs: DAG_TASKS_MAX tasks of an id and
 * a 60-byte command (each with a retry count and one upstream) are taken. */
static void test_cap_holds_10000_tasks(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(16 * 1024 * 1024);
    buf_puts(&b, "{\"dag_id\":\"d\",\"fileloc\":\"f\",\"tasks\":[");
    for (int i = 0; i < DAG_TASKS_MAX; i++) {
        buf_printf(&b,
                   "%s{\"task_id\":\"extract_partition_%05d\",\"retries\":2,"
                   "\"shell\":\"python3 -m etl.load --partition %05d --date 2026-12-07 --x\"",
                   i ? "," : "", i, i);
        if (i)
            buf_printf(&b, ",\"upstream\":[\"extract_partition_%05d\"]", i - 1);
        buf_puts(&b, "}");
    }
    buf_puts(&b, "]}");
    struct dag *d = NULL;
    struct remex_error e = {0};
    assert_int_equal(dag_from_json(b.data, b.len, &d, &e), REMEX_OK);
    assert_int_equal(d->ntasks, DAG_TASKS_MAX);
    char *s = NULL;
    size_t len = 0;
    assert_int_equal(dag_to_json(d, &s, &len, &e), REMEX_OK);
    assert_true(len > 4 * 1024 * 1024 && len < DAG_JSON_MAX); /* over the old 1 MiB cap */
    free(s);
    dag_free(d);
    buf_free(&b);
}

static void test_large_chain_topo(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4 * 1024 * 1024);
    buf_puts(&b, "{\"dag_id\":\"d\",\"fileloc\":\"f\",\"tasks\":[");
    for (int i = 999; i >= 0; i--) {
        buf_printf(&b, "{\"task_id\":\"t%d\",\"shell\":\"x\",\"upstream\":[", i);
        if (i > 0)
            buf_printf(&b, "\"t%d\"", i - 1);
        buf_printf(&b, "]}%s", i ? "," : "");
    }
    buf_puts(&b, "]}");
    struct dag *d = decode_ok(b.data);
    for (size_t k = 0; k < d->ntasks; k++)
        assert_int_equal(d->topo[k], d->ntasks - 1 - k);
    dag_free(d);
    buf_free(&b);
}

/* dag_from_json_value_canon hands over the canonical text the hash was made
 * of: dag_to_json's output, byte for byte; NULL on error. */
static void test_canon_text(void **state)
{
    (void)state;
    json_error_t je;
    json_t *o = json_loads("{\"dag_id\": \"c\", \"fileloc\": \"c.yaml\", \"tasks\":"
                           " [{\"task_id\": \"b\", \"command\": [\"true\"], \"upstream\": [\"a\"]},"
                           " {\"task_id\": \"a\", \"command\": [\"true\"]}]}",
                           0, &je);
    struct dag *d = NULL, *d2 = NULL;
    char *canon = NULL, *again = NULL;
    struct remex_error e;
    assert_non_null(o);
    assert_int_equal(dag_from_json_value_canon(o, &d, NULL, &canon, &e), REMEX_OK);
    assert_non_null(canon);
    assert_int_equal(dag_to_json(d, &again, NULL, &e), REMEX_OK);
    assert_string_equal(canon, again);
    assert_int_equal(dag_from_json_value(o, &d2, &e), REMEX_OK);
    assert_string_equal(d->hash, d2->hash);
    free(canon);
    free(again);
    dag_free(d);
    dag_free(d2);
    json_object_set_new(o, "tasks", json_array());
    canon = (char *)1;
    assert_int_not_equal(dag_from_json_value_canon(o, &d, NULL, &canon, &e), REMEX_OK);
    assert_null(canon);
    assert_null(d);
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_all_success),
        cmocka_unit_test(test_rule_all_failed),
        cmocka_unit_test(test_rule_all_done),
        cmocka_unit_test(test_rule_all_skipped),
        cmocka_unit_test(test_rule_one_success),
        cmocka_unit_test(test_rule_one_failed),
        cmocka_unit_test(test_rule_one_done),
        cmocka_unit_test(test_rule_none_failed),
        cmocka_unit_test(test_rule_none_skipped),
        cmocka_unit_test(test_rule_none_failed_min_one_success),
        cmocka_unit_test(test_rule_always),
        cmocka_unit_test(test_rule_every_rule_covered),
        cmocka_unit_test(test_states),
        cmocka_unit_test(test_retry_delay),
        cmocka_unit_test(test_minimal_canonical),
        cmocka_unit_test(test_round_trip_byte_identical),
        cmocka_unit_test(test_hash_changes_with_content),
        cmocka_unit_test(test_model_fields),
        cmocka_unit_test(test_wrong_types_name_the_path),
        cmocka_unit_test(test_unknown_keys_rejected),
        cmocka_unit_test(test_required_fields),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_command_shell_exclusive),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_cycle_named),
        cmocka_unit_test(test_unknown_upstream_and_self),
        cmocka_unit_test(test_duplicate_ids),
        cmocka_unit_test(test_schedule_validated),
        cmocka_unit_test(test_sensor_task_without_command),
        cmocka_unit_test(test_cap_tasks),
        cmocka_unit_test(test_cap_json_size),
        cmocka_unit_test(test_cap_holds_10000_tasks),
        cmocka_unit_test(test_large_chain_topo),
        cmocka_unit_test(test_canon_text),
    };
    return cmocka_run_group_tests_name("dag", tests, NULL, NULL);
}
