/*
 * Fuzz target: json_parse on arbitrary bytes, then a typed decoder of an
 * "assignment" document (nested objects, arrays, enums, optional fields) and
 * a serialise/re-parse round trip that must reproduce an equal value.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remex/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const states[] = {"queued", "running", "success", "failed", "deferred"};

static remex_err decode_task(const struct json_path *p, const json_t *task, struct remex_error *e)
{
    struct json_path pc, pe, pk, pi;
    json_t *cmd, *env, *v;
    const char *s, *key;
    int64_t n;
    size_t i;
    remex_err rc;

    if ((rc = json_opt_arr(p, task, "command", 256, &cmd, e)) != REMEX_OK)
        return rc;
    json_path_key(&pc, p, "command");
    json_array_foreach(cmd, i, v)
    {
        json_path_index(&pi, &pc, i);
        if ((rc = json_as_str(&pi, v, 4096, &s, e)) != REMEX_OK)
            return rc;
    }
    if ((rc = json_opt_str(p, task, "shell", 65536, NULL, &s, e)) != REMEX_OK)
        return rc;
    if ((rc = json_opt_i64(p, task, "execution_timeout", 0, 86400 * 365, 0, &n, e)) != REMEX_OK)
        return rc;
    if ((rc = json_opt_obj(p, task, "env", &env, e)) != REMEX_OK)
        return rc;
    json_path_key(&pe, p, "env");
    json_object_foreach(env, key, v)
    {
        json_path_key(&pk, &pe, key);
        if ((rc = json_as_str(&pk, v, 32768, &s, e)) != REMEX_OK)
            return rc;
    }
    return REMEX_OK;
}

static remex_err decode_assignment(json_t *doc, struct remex_error *e)
{
    struct json_path root, pa, pt;
    json_t *a, *task;
    const char *s;
    int64_t n;
    double d;
    int b, st;
    remex_err rc;

    json_path_init(&root, NULL);
    if ((rc = json_as_obj(&root, doc, &doc, e)) != REMEX_OK)
        return rc;
    if ((rc = json_get_obj(&root, doc, "assignment", &a, e)) != REMEX_OK)
        return rc;
    json_path_key(&pa, &root, "assignment");
    if ((rc = json_get_str(&pa, a, "dag_id", 250, &s, e)) != REMEX_OK ||
        (rc = json_get_str(&pa, a, "task_id", 250, &s, e)) != REMEX_OK ||
        (rc = json_get_i64(&pa, a, "try_number", 1, 1000, &n, e)) != REMEX_OK ||
        (rc = json_opt_i64(&pa, a, "map_index", -1, 1 << 20, -1, &n, e)) != REMEX_OK ||
        (rc = json_opt_double(&pa, a, "pool_slots", 0, 1e6, 1, &d, e)) != REMEX_OK ||
        (rc = json_opt_bool(&pa, a, "deferrable", 0, &b, e)) != REMEX_OK ||
        (rc = json_get_enum(&pa, a, "state", states, 5, &st, e)) != REMEX_OK)
        return rc;
    if ((rc = json_get_obj(&pa, a, "task", &task, e)) != REMEX_OK)
        return rc;
    json_path_key(&pt, &pa, "task");
    return decode_task(&pt, task, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct json_parse_opts o = {.max_bytes = 65536, .max_depth = 32, .name = "fuzz"};
    struct remex_error e = {0};
    struct buf out = BUF_INIT(1 << 20);
    json_t *doc = NULL, *again = NULL;

    o.allow_nul = size > 0 && (data[0] & 1);
    if (json_parse((const char *)data, size, &o, &doc, &e) != REMEX_OK) {
        if (doc != NULL || e.msg[0] == '\0')
            abort();
        return 0;
    }
    (void)decode_assignment(doc, &e);
    if (json_serialize(doc, JSON_SER_SORT_KEYS, &out, &e) == REMEX_OK) {
        o.max_bytes = out.len + 1;
        o.allow_nul = 1;
        o.max_depth = 64;
        if (json_parse(out.data, out.len, &o, &again, &e) != REMEX_OK || !json_equal(doc, again))
            abort();
        json_decref(again);
    }
    buf_free(&out);
    json_decref(doc);
    return 0;
}
