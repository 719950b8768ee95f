/* Unit tests: json (bounded parsing, typed access with paths, capped serialisation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/json.h"

static const char ASSIGNMENT[] =
    "{\"assignment\":{\"dag_id\":\"etl\",\"task_id\":\"load\",\"try_number\":2,"
    "\"map_index\":-1,\"pool_slots\":1.5,\"deferrable\":false,\"state\":\"queued\","
    "\"task\":{\"command\":[\"/bin/echo\",\"hi\"],\"env\":{\"FOO\":\"bar\",\"N\":3}},"
    "\"note\":null}}";

static json_t *parse_ok(const char *s)
{
    json_t *v = NULL;
    struct remex_error e = {0};
    remex_err rc = json_parse(s, strlen(s), NULL, &v, &e);
    if (rc != REMEX_OK)
        fail_msg("parse failed: %s", e.msg);
    return v;
}

static remex_err parse_err(const char *s, size_t len, const struct json_parse_opts *o,
                           struct remex_error *e)
{
    json_t *v = (json_t *)1;
    remex_err rc = json_parse(s, len, o, &v, e);
    assert_null(v);
    return rc;
}

static void test_parse_valid(void **state)
{
    (void)state;
    json_t *v = parse_ok(ASSIGNMENT);
    assert_true(json_is_object(v));
    json_decref(v);
    v = parse_ok("42");
    assert_int_equal(json_integer_value(v), 42);
    json_decref(v);
}

static void test_parse_error_line_col(void **state)
{
    (void)state;
    struct remex_error e = {0};
    struct json_parse_opts o = {.name = "reply"};
    const char *s = "{\n  \"a\": 1,\n  \"b\": x\n}";
    assert_int_equal(parse_err(s, strlen(s), &o, &e), REMEX_EPARSE);
    assert_int_equal(e.code, REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "reply:3:"));
}

static void test_parse_empty_and_garbage(void **state)
{
    (void)state;
    struct remex_error e = {0};
    assert_int_equal(parse_err("", 0, NULL, &e), REMEX_EPARSE);
    assert_int_equal(parse_err(NULL, 0, NULL, &e), REMEX_EPARSE);
    assert_int_equal(parse_err("{}x", 3, NULL, &e), REMEX_EPARSE);
    assert_int_equal(parse_err("\xff\xfe", 2, NULL, &e), REMEX_EPARSE);
}

static void test_size_cap_exact_and_over(void **state)
{
    (void)state;
    struct remex_error e = {0};
    struct json_parse_opts o = {.max_bytes = 8};
    json_t *v = NULL;
    /* Exactly 8 bytes parses; 9 bytes is refused before parsing (even if valid). */
    assert_int_equal(json_parse("[1,2,34]", 8, &o, &v, &e), REMEX_OK);
    assert_int_equal(json_array_size(v), 3);
    json_decref(v);
    assert_int_equal(parse_err("[1,2,345]", 9, &o, &e), REMEX_ETOOBIG);
    assert_non_null(strstr(e.msg, "cap"));
}

static void test_default_size_cap(void **state)
{
    (void)state;
    struct remex_error e = {0};
    size_t n = REMEX_JSON_MAX_BYTES_DEFAULT + 1;
    char *s = malloc(n);
    assert_non_null(s);
    memset(s, ' ', n);
    s[0] = '1';
    assert_int_equal(parse_err(s, n, NULL, &e), REMEX_ETOOBIG);
    free(s);
}

static void test_depth_bomb(void **state)
{
    (void)state;
    struct remex_error e = {0};
    size_t n = 1024 * 1024;
    char *s = malloc(n);
    assert_non_null(s);
    memset(s, '[', n);
    assert_int_equal(parse_err(s, n, NULL, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "nesting deeper than 64"));
    assert_non_null(strstr(e.msg, "json:1:65"));
    memset(s, '{', n);
    assert_int_equal(parse_err(s, n, NULL, &e), REMEX_EPARSE);
    free(s);
}

static void test_depth_limit_exact(void **state)
{
    (void)state;
    struct remex_error e = {0};
    struct json_parse_opts o = {.max_depth = 3};
    json_t *v = NULL;
    assert_int_equal(json_parse("[[[1]]]", 7, &o, &v, &e), REMEX_OK);
    json_decref(v);
    assert_int_equal(parse_err("[[[[1]]]]", 9, &o, &e), REMEX_EPARSE);
    /* Brackets inside strings (with escaped quotes) do not count. */
    const char *s = "[\"[[[[\\\"[[[[\"]";
    assert_int_equal(json_parse(s, strlen(s), &o, &v, &e), REMEX_OK);
    json_decref(v);
}

static void test_truncated_every_offset(void **state)
{
    (void)state;
    size_t n = strlen(ASSIGNMENT);
    for (size_t i = 0; i <= n; i++) {
        struct remex_error e = {0};
        json_t *v = NULL;
        remex_err rc = json_parse(ASSIGNMENT, i, NULL, &v, &e);
        if (i < n) {
            assert_int_equal(rc, REMEX_EPARSE);
            assert_null(v);
            assert_true(e.msg[0] != '\0');
        } else {
            assert_int_equal(rc, REMEX_OK);
            json_decref(v);
        }
    }
    /* A valid prefix that is itself a value (a number) is accepted as that value. */
    json_t *v = NULL;
    assert_int_equal(json_parse("12345", 3, NULL, &v, NULL), REMEX_OK);
    assert_int_equal(json_integer_value(v), 123);
    json_decref(v);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    struct remex_error e = {0};
    const char *bad[] = {"\"\xc3\x28\"", "\"\xed\xa0\x80\"", "\"\xf8\x88\x80\x80\x80\"",
                         "{\"\xff\":1}", "\"\xc0\xaf\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse_err(bad[i], strlen(bad[i]), NULL, &e), REMEX_EPARSE);
}

static void test_nul_in_string(void **state)
{
    (void)state;
    struct remex_error e = {0};
    struct json_parse_opts o = {.allow_nul = 1};
    const char *s = "{\"k\":\"a\\u0000b\"}";
    json_t *v = NULL;
    struct json_path p;
    const char *out;

    assert_int_equal(parse_err(s, strlen(s), NULL, &e), REMEX_EPARSE);
    assert_int_equal(json_parse(s, strlen(s), &o, &v, &e), REMEX_OK);
    /* Even when parsing allowed it, the string accessor refuses a NUL. */
    json_path_init(&p, "doc");
    assert_int_equal(json_get_str(&p, v, "k", 100, &out, &e), REMEX_EINVAL);
    assert_string_equal(e.msg, "doc.k: contains a NUL byte");
    json_decref(v);
    /* A raw NUL byte in the input is never valid JSON. */
    assert_int_equal(parse_err("\"a\0b\"", 5, &o, &e), REMEX_EPARSE);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    struct remex_error e = {0};
    struct json_parse_opts o = {.allow_duplicates = 1};
    const char *s = "{\"a\":1,\"a\":2}";
    json_t *v = NULL;
    assert_int_equal(parse_err(s, strlen(s), NULL, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "duplicate"));
    assert_int_equal(json_parse(s, strlen(s), &o, &v, &e), REMEX_OK);
    json_decref(v);
}

static void test_huge_numbers(void **state)
{
    (void)state;
    struct remex_error e = {0};
    const char *big = "[123456789012345678901234567890]";
    const char *huge = "[1e999]";
    json_t *v = NULL;
    struct json_path p;
    int64_t i;

    assert_int_equal(parse_err(big, strlen(big), NULL, &e), REMEX_EPARSE);
    assert_int_equal(parse_err(huge, strlen(huge), NULL, &e), REMEX_EPARSE);
    v = parse_ok("{\"n\":9223372036854775807,\"m\":-9223372036854775808}");
    json_path_init(&p, "x");
    assert_int_equal(json_get_i64(&p, v, "n", INT64_MIN, INT64_MAX, &i, &e), REMEX_OK);
    assert_true(i == INT64_MAX);
    assert_int_equal(json_get_i64(&p, v, "m", INT64_MIN, INT64_MAX, &i, &e), REMEX_OK);
    assert_true(i == INT64_MIN);
    assert_int_equal(json_get_i64(&p, v, "n", 0, 100, &i, &e), REMEX_EINVAL);
    assert_string_equal(e.msg, "x.n: must be between 0 and 100");
    json_decref(v);
}

static void test_paths(void **state)
{
    (void)state;
    struct json_path root, a, t, env, foo, tasks, t3, id;
    json_path_init(&root, NULL);
    assert_string_equal(json_path_str(&root), "(root)");
    json_path_key(&a, &root, "assignment");
    json_path_key(&t, &a, "task");
    json_path_key(&env, &t, "env");
    json_path_key(&foo, &env, "FOO");
    assert_string_equal(json_path_str(&foo), "assignment.task.env.FOO");
    json_path_key(&tasks, &root, "tasks");
    json_path_index(&t3, &tasks, 3);
    json_path_key(&id, &t3, "task_id");
    assert_string_equal(json_path_str(&id), "tasks[3].task_id");
    /* Aliasing child and parent is allowed. */
    json_path_key(&id, &id, "x");
    assert_string_equal(json_path_str(&id), "tasks[3].task_id.x");
}

static void test_path_truncation(void **state)
{
    (void)state;
    struct json_path p;
    char key[400];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    json_path_init(&p, "root");
    json_path_key(&p, &p, key);
    assert_int_equal(strlen(p.s), JSON_PATH_MAX - 1);
    assert_string_equal(p.s + JSON_PATH_MAX - 4, "...");
    /* "root." + key of exactly the room left fits whole; one byte more does not. */
    key[JSON_PATH_MAX - 1 - 5] = '\0';
    json_path_init(&p, "root");
    json_path_key(&p, &p, key);
    assert_int_equal(strlen(p.s), JSON_PATH_MAX - 1);
    assert_string_equal(p.s + JSON_PATH_MAX - 4, "kkk");
    key[JSON_PATH_MAX - 1 - 5] = 'k';
    key[JSON_PATH_MAX - 5] = '\0';
    json_path_init(&p, "root");
    json_path_key(&p, &p, key);
    assert_int_equal(strlen(p.s), JSON_PATH_MAX - 1);
    assert_string_equal(p.s + JSON_PATH_MAX - 4, "...");
    assert_int_equal(strncmp(p.s, "root.kkk", 8), 0);
}

static void test_typed_fields_ok(void **state)
{
    (void)state;
    static const char *const states[] = {"none", "queued", "running"};
    json_t *doc = parse_ok(ASSIGNMENT), *a, *task, *cmd, *env;
    struct json_path root, pa, pt;
    struct remex_error e = {0};
    const char *s;
    int64_t i;
    double d;
    int b, st;

    json_path_init(&root, NULL);
    assert_int_equal(json_get_obj(&root, doc, "assignment", &a, &e), REMEX_OK);
    json_path_key(&pa, &root, "assignment");
    assert_int_equal(json_get_str(&pa, a, "dag_id", 250, &s, &e), REMEX_OK);
    assert_string_equal(s, "etl");
    assert_int_equal(json_get_i64(&pa, a, "try_number", 1, 1000, &i, &e), REMEX_OK);
    assert_int_equal(i, 2);
    assert_int_equal(json_get_double(&pa, a, "pool_slots", 0, 100, &d, &e), REMEX_OK);
    assert_true(d == 1.5);
    assert_int_equal(json_get_double(&pa, a, "try_number", 0, 100, &d, &e), REMEX_OK);
    assert_true(d == 2.0);
    assert_int_equal(json_get_bool(&pa, a, "deferrable", &b, &e), REMEX_OK);
    assert_int_equal(b, 0);
    assert_int_equal(json_get_enum(&pa, a, "state", states, 3, &st, &e), REMEX_OK);
    assert_int_equal(st, 1);
    assert_int_equal(json_get_obj(&pa, a, "task", &task, &e), REMEX_OK);
    json_path_key(&pt, &pa, "task");
    assert_int_equal(json_get_arr(&pt, task, "command", 16, &cmd, &e), REMEX_OK);
    assert_int_equal(json_array_size(cmd), 2);
    assert_int_equal(json_get_obj(&pt, task, "env", &env, &e), REMEX_OK);
    json_decref(doc);
}

static void test_missing_fields(void **state)
{
    (void)state;
    json_t *doc = parse_ok("{\"note\":null}");
    struct json_path p;
    struct remex_error e = {0};
    const char *s;
    int64_t i;
    json_path_init(&p, "assignment");
    assert_int_equal(json_get_str(&p, doc, "dag_id", 10, &s, &e), REMEX_EINVAL);
    assert_string_equal(e.msg, "assignment.dag_id: missing");
    assert_int_equal(json_get_i64(&p, doc, "try_number", 0, 9, &i, &e), REMEX_EINVAL);
    assert_string_equal(e.msg, "assignment.try_number: missing");
    /* Explicit null for a required field is a wrong type. */
    assert_int_equal(json_get_str(&p, doc, "note", 10, &s, &e), REMEX_EINVAL);
    assert_string_equal(e.msg, "assignment.note: expected string");
    json_decref(doc);
}

/* Every field of the assignment fetched with every wrong accessor fails cleanly. */
static void test_wrong_types_everywhere(void **state)
{
    (void)state;
    static const char *const names[] = {"x"};
    json_t *doc = parse_ok(ASSIGNMENT), *a, *o;
    struct json_path root;
    struct remex_error e;
    const char *key;
    json_t *val;
    const char *s;
    int64_t i;
    double d;
    int b;

    json_path_init(&root, "assignment");
    a = json_object_get(doc, "assignment");
    json_object_foreach(a, key, val)
    {
        char want[128];
        remex_errclear(&e);
        if (!json_is_string(val)) {
            assert_int_equal(json_get_str(&root, a, key, 100, &s, &e), REMEX_EINVAL);
            snprintf(want, sizeof(want), "assignment.%s: expected string", key);
            assert_string_equal(e.msg, want);
            assert_int_equal(json_get_enum(&root, a, key, names, 1, &b, &e), REMEX_EINVAL);
        }
        if (!json_is_integer(val)) {
            assert_int_equal(json_get_i64(&root, a, key, 0, 10, &i, &e), REMEX_EINVAL);
            snprintf(want, sizeof(want), "assignment.%s: expected integer", key);
            assert_string_equal(e.msg, want);
        }
        if (!json_is_number(val))
            assert_int_equal(json_get_double(&root, a, key, 0, 10, &d, &e), REMEX_EINVAL);
        if (!json_is_boolean(val))
            assert_int_equal(json_get_bool(&root, a, key, &b, &e), REMEX_EINVAL);
        if (!json_is_object(val))
            assert_int_equal(json_get_obj(&root, a, key, &o, &e), REMEX_EINVAL);
        if (!json_is_array(val))
            assert_int_equal(json_get_arr(&root, a, key, 10, &o, &e), REMEX_EINVAL);
    }
    /* Accessors on a non-object container report the container's path. */
    assert_int_equal(json_get_str(&root, json_object_get(a, "dag_id"), "x", 9, &s, &e),
                     REMEX_EINVAL);
    assert_string_equal(e.msg, "assignment: expected object");
    assert_int_equal(json_get_str(&root, NULL, "x", 9, &s, &e), REMEX_EINVAL);
    json_decref(doc);
}

static void test_string_and_array_caps(void **state)
{
    (void)state;
    json_t *doc = parse_ok("{\"s\":\"abcd\",\"a\":[1,2,3]}"), *arr;
    struct json_path p;
    struct remex_error e = {0};
    const char *s;
    json_path_init(&p, "x");
    assert_int_equal(json_get_str(&p, doc, "s", 4, &s, &e), REMEX_OK);
    assert_int_equal(json_get_str(&p, doc, "s", 3, &s, &e), REMEX_ETOOBIG);
    assert_string_equal(e.msg, "x.s: longer than 3 bytes");
    assert_int_equal(json_get_arr(&p, doc, "a", 3, &arr, &e), REMEX_OK);
    assert_int_equal(json_get_arr(&p, doc, "a", 2, &arr, &e), REMEX_ETOOBIG);
    assert_string_equal(e.msg, "x.a: more than 2 items");
    json_decref(doc);
}

static void test_range_message(void **state)
{
    (void)state;
    json_t *doc = parse_ok("{\"slots\":0,\"ratio\":2.5}");
    struct json_path p;
    struct remex_error e = {0};
    int64_t i;
    double d;
    json_path_init(&p, "agent");
    assert_int_equal(json_get_i64(&p, doc, "slots", 1, 1024, &i, &e), REMEX_EINVAL);
    assert_string_equal(e.msg, "agent.slots: must be between 1 and 1024");
    assert_int_equal(json_get_double(&p, doc, "ratio", 0, 1, &d, &e), REMEX_EINVAL);
    assert_string_equal(e.msg, "agent.ratio: must be between 0 and 1");
    json_decref(doc);
}

static void test_enum(void **state)
{
    (void)state;
    static const char *const levels[] = {"error", "warn", "info"};
    json_t *doc = parse_ok("{\"level\":\"debug\",\"ok\":\"warn\"}");
    struct json_path p;
    struct remex_error e = {0};
    int v;
    json_path_init(&p, "log");
    assert_int_equal(json_get_enum(&p, doc, "ok", levels, 3, &v, &e), REMEX_OK);
    assert_int_equal(v, 1);
    assert_int_equal(json_get_enum(&p, doc, "level", levels, 3, &v, &e), REMEX_EINVAL);
    assert_string_equal(e.msg, "log.level: must be one of: error, warn, info");
    assert_int_equal(json_opt_enum(&p, doc, "absent", levels, 3, 2, &v, &e), REMEX_OK);
    assert_int_equal(v, 2);
    json_decref(doc);
}

static void test_optional_defaults(void **state)
{
    (void)state;
    json_t *doc = parse_ok("{\"n\":null,\"s\":\"v\",\"bad\":\"x\"}"), *o;
    struct json_path p;
    struct remex_error e = {0};
    const char *s;
    int64_t i;
    double d;
    int b;
    json_path_init(&p, "cfg");
    assert_int_equal(json_opt_str(&p, doc, "absent", 10, "dflt", &s, &e), REMEX_OK);
    assert_string_equal(s, "dflt");
    assert_int_equal(json_opt_str(&p, doc, "s", 10, "dflt", &s, &e), REMEX_OK);
    assert_string_equal(s, "v");
    assert_int_equal(json_opt_i64(&p, doc, "n", 0, 10, 7, &i, &e), REMEX_OK);
    assert_int_equal(i, 7);
    assert_int_equal(json_opt_bool(&p, doc, "absent", 1, &b, &e), REMEX_OK);
    assert_int_equal(b, 1);
    assert_int_equal(json_opt_double(&p, doc, "absent", 0, 1, 0.5, &d, &e), REMEX_OK);
    assert_true(d == 0.5);
    o = (json_t *)1;
    assert_int_equal(json_opt_obj(&p, doc, "absent", &o, &e), REMEX_OK);
    assert_null(o);
    o = (json_t *)1;
    assert_int_equal(json_opt_arr(&p, doc, "n", 4, &o, &e), REMEX_OK);
    assert_null(o);
    /* Present but wrong type is still an error. */
    assert_int_equal(json_opt_i64(&p, doc, "bad", 0, 10, 7, &i, &e), REMEX_EINVAL);
    assert_string_equal(e.msg, "cfg.bad: expected integer");
    json_decref(doc);
}

/* A nested decoder over arrays and objects producing indexed paths. */
static void test_nested_decoder_paths(void **state)
{
    (void)state;
    json_t *doc =
        parse_ok("{\"tasks\":[{\"task_id\":\"a\"},{\"task_id\":\"b\"},{\"task_id\":\"c\"},"
                 "{\"task_id\":5}],\"env\":{\"FOO\":1}}");
    json_t *tasks, *t, *env, *v;
    struct json_path root, pt, pi, pe, pk;
    struct remex_error e = {0};
    const char *s, *key;
    remex_err rc = REMEX_OK;
    size_t i;

    json_path_init(&root, NULL);
    assert_int_equal(json_get_arr(&root, doc, "tasks", 100, &tasks, &e), REMEX_OK);
    json_path_key(&pt, &root, "tasks");
    json_array_foreach(tasks, i, v)
    {
        json_path_index(&pi, &pt, i);
        rc = json_as_obj(&pi, v, &t, &e);
        if (rc == REMEX_OK)
            rc = json_get_str(&pi, t, "task_id", 250, &s, &e);
        if (rc != REMEX_OK)
            break;
    }
    assert_int_equal(rc, REMEX_EINVAL);
    assert_string_equal(e.msg, "tasks[3].task_id: expected string");

    assert_int_equal(json_get_obj(&root, doc, "env", &env, &e), REMEX_OK);
    json_path_key(&pe, &root, "env");
    json_object_foreach(env, key, v)
    {
        json_path_key(&pk, &pe, key);
        assert_int_equal(json_as_str(&pk, v, 100, &s, &e), REMEX_EINVAL);
    }
    assert_string_equal(e.msg, "env.FOO: expected string");
    json_decref(doc);
}

static void test_build_and_put(void **state)
{
    (void)state;
    json_t *o = NULL;
    struct remex_error e = {0};
    struct buf b = BUF_INIT(1024);
    assert_int_equal(json_build(&o, &e, "{s:s, s:i}", "name", "w1", "slots", 4), REMEX_OK);
    assert_int_equal(json_put_str(o, "queue", "default"), REMEX_OK);
    assert_int_equal(json_put_str(o, "none", NULL), REMEX_OK);
    assert_int_equal(json_put_i64(o, "big", INT64_MAX), REMEX_OK);
    assert_int_equal(json_put_bool(o, "drain", 1), REMEX_OK);
    assert_int_equal(json_put_double(o, "load", 0.25), REMEX_OK);
    assert_int_equal(json_put_double(o, "nan", 0.0 / 0.0), REMEX_EINVAL);
    assert_int_equal(json_put_new(NULL, "x", json_integer(1)), REMEX_EINVAL);
    assert_int_equal(json_serialize(o, JSON_SER_SORT_KEYS, &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "{\"big\":9223372036854775807,\"drain\":true,\"load\":0.25,"
                                      "\"name\":\"w1\",\"none\":null,\"queue\":\"default\","
                                      "\"slots\":4}");
    json_decref(o);
    assert_int_equal(json_build(&o, &e, "{s:", "x"), REMEX_EINVAL);
    assert_null(o);
    buf_free(&b);
}

static void test_serialize_cap(void **state)
{
    (void)state;
    json_t *v = parse_ok("[1,2,3]");
    struct remex_error e = {0};
    struct buf b = BUF_INIT(10);
    assert_int_equal(buf_puts(&b, "xx"), REMEX_OK);
    assert_int_equal(json_serialize(v, 0, &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "xx[1,2,3]");
    /* The next one does not fit: the buffer is left exactly as it was. */
    assert_int_equal(json_serialize(v, 0, &b, &e), REMEX_ETOOBIG);
    assert_string_equal(buf_cstr(&b), "xx[1,2,3]");
    assert_int_equal(b.len, 9);
    buf_reset(&b);
    assert_int_equal(json_serialize(v, 0, &b, &e), REMEX_OK); /* exactly 7 of 10 */
    buf_free(&b);
    json_decref(v);
}

static void test_round_trip_unicode(void **state)
{
    (void)state;
    const char *s = "{\"k\":\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\"\"}";
    json_t *v = parse_ok(s), *w;
    struct buf b = BUF_INIT(256);
    struct remex_error e = {0};
    assert_int_equal(json_serialize(v, JSON_SER_PRETTY, &b, &e), REMEX_OK);
    assert_non_null(strchr(buf_cstr(&b), '\n'));
    assert_int_equal(json_parse(b.data, b.len, NULL, &w, &e), REMEX_OK);
    assert_true(json_equal(v, w));
    json_decref(v);
    json_decref(w);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_error_line_col),
        cmocka_unit_test(test_parse_empty_and_garbage),
        cmocka_unit_test(test_size_cap_exact_and_over),
        cmocka_unit_test(test_default_size_cap),
        cmocka_unit_test(test_depth_bomb),
        cmocka_unit_test(test_depth_limit_exact),
        cmocka_unit_test(test_truncated_every_offset),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_nul_in_string),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_huge_numbers),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_path_truncation),
        cmocka_unit_test(test_typed_fields_ok),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_wrong_types_everywhere),
        cmocka_unit_test(test_string_and_array_caps),
        cmocka_unit_test(test_range_message),
        cmocka_unit_test(test_enum),
        cmocka_unit_test(test_optional_defaults),
        cmocka_unit_test(test_nested_decoder_paths),
        cmocka_unit_test(test_build_and_put),
        cmocka_unit_test(test_serialize_cap),
        cmocka_unit_test(test_round_trip_unicode),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
