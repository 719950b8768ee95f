/* Request body decoding; see decode.h. */
#include "decode.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const decode_agent_states[] = {
    "starting", "running", "draining", "maintenance", NULL,
};
const char *const decode_agent_roles[] = {
    "worker", "triggerer", "dag-processor", "sentinel", NULL,
};
const char *const decode_desired_states[] = {"run", "drain", "maintenance", NULL};
static const char *const health_states[] = {"ok", "degraded", "failing", NULL};

/* Nesting depth of [ and { outside strings; -1 as soon as max is passed. */
static int scan_depth(const char *p, size_t n, int max)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                return -1;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return 0;
}

remex_err decode_body(const char *data, size_t len, int max_depth, json_t **out,
                      struct remex_error *e)
{
    json_error_t je;
    *out = NULL;
    if (len == 0)
        return remex_seterr(e, REMEX_EPARSE, "body: empty, expected a JSON object");
    if (scan_depth(data, len, max_depth) < 0)
        return remex_seterr(e, REMEX_EPARSE, "body: nested deeper than %d levels", max_depth);
    json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!v)
        return remex_seterr(e, REMEX_EPARSE, "body:%d:%d: %s", je.line, je.column, je.text);
    if (!json_is_object(v)) {
        json_decref(v);
        return remex_seterr(e, REMEX_EINVAL, "body: expected a JSON object");
    }
    *out = v;
    return REMEX_OK;
}

static int in_set(const char *s, const char *const *set)
{
    for (size_t i = 0; set[i]; i++)
        if (strcmp(s, set[i]) == 0)
            return 1;
    return 0;
}

/* A string field: required or not, length cap; *out stays def when absent. */
static remex_err get_str(json_t *o, const char *path, const char *key, int required, size_t max,
                         const char **out, struct remex_error *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            return remex_seterr(e, REMEX_EINVAL, "%s%s: missing", path, key);
        return REMEX_OK;
    }
    if (!json_is_string(v))
        return remex_seterr(e, REMEX_EINVAL, "%s%s: expected string", path, key);
    size_t n = json_string_length(v);
    if (n > max)
        return remex_seterr(e, REMEX_EINVAL, "%s%s: longer than %zu bytes", path, key, max);
    if (memchr(json_string_value(v), '\0', n))
        return remex_seterr(e, REMEX_EINVAL, "%s%s: contains NUL", path, key);
    *out = json_string_value(v);
    return REMEX_OK;
}

static remex_err get_int(json_t *o, const char *path, const char *key, int required, int64_t min,
                         int64_t max, int64_t *out, struct remex_error *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            return remex_seterr(e, REMEX_EINVAL, "%s%s: missing", path, key);
        return REMEX_OK;
    }
    if (!json_is_integer(v))
        return remex_seterr(e, REMEX_EINVAL, "%s%s: expected integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return remex_seterr(e, REMEX_EINVAL, "%s%s: must be between %lld and %lld", path, key,
                            (long long)min, (long long)max);
    *out = (int64_t)x;
    return REMEX_OK;
}

/* An optional array (NULL when absent) of at most max items. */
static remex_err get_array_max(json_t *o, const char *key, size_t max, json_t **out,
                               struct remex_error *e)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return REMEX_OK;
    if (!json_is_array(v))
        return remex_seterr(e, REMEX_EINVAL, "%s: expected array", key);
    if (json_array_size(v) > max)
        return remex_seterr(e, REMEX_EINVAL, "%s: more than %zu items", key, max);
    *out = v;
    return REMEX_OK;
}

static remex_err get_array(json_t *o, const char *key, json_t **out, struct remex_error *e)
{
    return get_array_max(o, key, DECODE_LIST_MAX, out, e);
}

/* An optional object whose serialised size stays under DECODE_OBJ_BYTES. */
static remex_err get_object(json_t *o, const char *key, json_t **out, struct remex_error *e)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return REMEX_OK;
    if (!json_is_object(v))
        return remex_seterr(e, REMEX_EINVAL, "%s: expected object", key);
    size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT);
    if (n == 0 || n > DECODE_OBJ_BYTES)
        return remex_seterr(e, REMEX_EINVAL, "%s: larger than %d bytes", key, DECODE_OBJ_BYTES);
    *out = v;
    return REMEX_OK;
}

/* Array of non-empty short strings; when set is given, each must be in it. */
static remex_err check_strings(json_t *a, const char *key, const char *const *set,
                               struct remex_error *e)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v))
            return remex_seterr(e, REMEX_EINVAL, "%s[%zu]: expected string", key, i);
        size_t n = json_string_length(v);
        if (n == 0 || n > DECODE_NAME_MAX || memchr(json_string_value(v), '\0', n))
            return remex_seterr(e, REMEX_EINVAL, "%s[%zu]: must be 1 to %d bytes", key, i,
                                DECODE_NAME_MAX);
        if (set && !in_set(json_string_value(v), set))
            return remex_seterr(e, REMEX_EINVAL, "%s[%zu]: unknown value", key, i);
    }
    return REMEX_OK;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DECODE_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

remex_err decode_register(json_t *body, struct decode_register *out, struct remex_error *e)
{
    remex_err rc;
    memset(out, 0, sizeof(*out));
    out->version = "";
    out->hostname = "";
    if ((rc = get_str(body, "", "name", 1, DECODE_NAME_MAX, &out->name, e)))
        return rc;
    if (!name_ok(out->name))
        return remex_seterr(e, REMEX_EINVAL, "name: must be 1 to %d of A-Z a-z 0-9 . _ -",
                            DECODE_NAME_MAX);
    if ((rc = get_array(body, "roles", &out->roles, e)))
        return rc;
    if (!out->roles)
        return remex_seterr(e, REMEX_EINVAL, "roles: missing");
    if ((rc = check_strings(out->roles, "roles", decode_agent_roles, e)))
        return rc;
    if ((rc = get_str(body, "", "version", 1, DECODE_STR_MAX, &out->version, e)) ||
        (rc = get_str(body, "", "hostname", 0, DECODE_STR_MAX, &out->hostname, e)))
        return rc;
    if ((rc = get_array(body, "queues", &out->queues, e)))
        return rc;
    if (!out->queues)
        return remex_seterr(e, REMEX_EINVAL, "queues: missing");
    if ((rc = check_strings(out->queues, "queues", NULL, e)))
        return rc;
    if ((rc = get_int(body, "", "slots", 1, 0, DECODE_SLOTS_MAX, &out->slots, e)))
        return rc;
    return get_object(body, "features", &out->features, e);
}

remex_err decode_heartbeat(json_t *body, struct decode_heartbeat *out, struct remex_error *e)
{
    remex_err rc;
    size_t i;
    json_t *v;
    memset(out, 0, sizeof(*out));
    if ((rc = get_str(body, "", "state", 1, DECODE_NAME_MAX, &out->state, e)))
        return rc;
    if (!in_set(out->state, decode_agent_states))
        return remex_seterr(e, REMEX_EINVAL, "state: unknown agent state");
    if ((rc = get_int(body, "", "free_slots", 1, 0, DECODE_SLOTS_MAX, &out->free_slots, e)))
        return rc;
    if ((rc = get_array(body, "running", &out->running, e)))
        return rc;
    if (out->running) {
        json_array_foreach(out->running, i, v)
        {
            char path[48];
            int64_t x = 0;
            snprintf(path, sizeof(path), "running[%zu].", i);
            if (!json_is_object(v))
                return remex_seterr(e, REMEX_EINVAL, "running[%zu]: expected object", i);
            if ((rc = get_int(v, path, "ti_id", 1, 1, INT64_MAX, &x, e)) ||
                (rc = get_int(v, path, "try_number", 1, 1, INT32_MAX, &x, e)))
                return rc;
        }
    }
    if ((rc = get_array_max(body, "triggers", DECODE_TRIGGERS_MAX, &out->triggers, e)))
        return rc;
    if (out->triggers) {
        json_array_foreach(out->triggers, i, v)
        {
            if (!json_is_integer(v) || json_integer_value(v) < 1)
                return remex_seterr(e, REMEX_EINVAL, "triggers[%zu]: expected positive integer", i);
        }
    }
    return get_object(body, "sysinfo", &out->sysinfo, e);
}

remex_err decode_health(json_t *body, struct decode_health *out, struct remex_error *e)
{
    remex_err rc;
    size_t i;
    json_t *v;
    memset(out, 0, sizeof(*out));
    if ((rc = get_str(body, "", "status", 1, DECODE_NAME_MAX, &out->status, e)))
        return rc;
    if (!in_set(out->status, health_states))
        return remex_seterr(e, REMEX_EINVAL, "status: must be ok, degraded or failing");
    if ((rc = get_array(body, "checks", &out->checks, e)))
        return rc;
    if (!out->checks)
        return remex_seterr(e, REMEX_EINVAL, "checks: missing");
    json_array_foreach(out->checks, i, v)
    {
        char path[48];
        const char *s = NULL;
        snprintf(path, sizeof(path), "checks[%zu].", i);
        if (!json_is_object(v))
            return remex_seterr(e, REMEX_EINVAL, "checks[%zu]: expected object", i);
        if ((rc = get_str(v, path, "name", 1, DECODE_NAME_MAX, &s, e)) ||
            (rc = get_str(v, path, "status", 1, DECODE_NAME_MAX, &s, e)))
            return rc;
        if (!in_set(s, health_states))
            return remex_seterr(e, REMEX_EINVAL, "%sstatus: must be ok, degraded or failing", path);
        if ((rc = get_str(v, path, "message", 0, DECODE_STR_MAX, &s, e)))
            return rc;
    }
    size_t n = json_dumpb(out->checks, NULL, 0, JSON_COMPACT);
    if (n > DECODE_OBJ_BYTES)
        return remex_seterr(e, REMEX_EINVAL, "checks: larger than %d bytes", DECODE_OBJ_BYTES);
    return REMEX_OK;
}

unsigned decode_role_mask(json_t *roles)
{
    unsigned mask = 0;
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
        for (unsigned b = 0; json_is_string(v) && decode_agent_roles[b]; b++)
            if (strcmp(json_string_value(v), decode_agent_roles[b]) == 0)
                mask |= 1u << b;
    }
    return mask;
}

json_t *decode_role_names(unsigned mask)
{
    json_t *a = json_array();
    for (unsigned b = 0; a && decode_agent_roles[b]; b++)
        if (mask & (1u << b))
            json_array_append_new(a, json_string(decode_agent_roles[b]));
    return a;
}

remex_err decode_token_create(json_t *body, struct decode_token_create *out, struct remex_error *e)
{
    remex_err rc;
    memset(out, 0, sizeof(*out));
    out->roles = DECODE_ROLES_ALL;
    if ((rc = get_str(body, "", "name", 1, DECODE_NAME_MAX, &out->name, e)))
        return rc;
    if (!name_ok(out->name))
        return remex_seterr(e, REMEX_EINVAL, "name: must be 1 to %d of A-Z a-z 0-9 . _ -",
                            DECODE_NAME_MAX);
    if ((rc = get_int(body, "", "expires_in", 1, 1, DECODE_EXPIRES_MAX, &out->expires_in_s, e)))
        return rc;
    json_t *roles = NULL;
    if ((rc = get_array(body, "roles", &roles, e)))
        return rc;
    if (roles) {
        if (json_array_size(roles) == 0)
            return remex_seterr(e, REMEX_EINVAL, "roles: must name at least one role");
        if ((rc = check_strings(roles, "roles", decode_agent_roles, e)))
            return rc;
        out->roles = decode_role_mask(roles);
    }
    if ((rc = get_array(body, "queues", &out->queues, e)))
        return rc;
    if (out->queues && json_array_size(out->queues) == 0)
        return remex_seterr(e, REMEX_EINVAL, "queues: must name at least one queue");
    return out->queues ? check_strings(out->queues, "queues", NULL, e) : REMEX_OK;
}

remex_err decode_agent_patch(json_t *body, struct decode_agent_patch *out, struct remex_error *e)
{
    remex_err rc;
    memset(out, 0, sizeof(*out));
    if ((rc = get_str(body, "", "desired_state", 1, DECODE_NAME_MAX, &out->desired_state, e)))
        return rc;
    if (!in_set(out->desired_state, decode_desired_states))
        return remex_seterr(e, REMEX_EINVAL, "desired_state: must be run, drain or maintenance");
    return REMEX_OK;
}

remex_err decode_dags_bulk(json_t *body, struct decode_dags_bulk *out, struct remex_error *e)
{
    remex_err rc;
    json_t *b = json_object_get(body, "bundle");
    memset(out, 0, sizeof(*out));
    out->bundle = out->version = "";
    if (b && !json_is_null(b)) {
        if (!json_is_object(b))
            return remex_seterr(e, REMEX_EINVAL, "bundle: expected object");
        if ((rc = get_str(b, "bundle.", "name", 0, DECODE_BUNDLE_STR_MAX, &out->bundle, e)) ||
            (rc = get_str(b, "bundle.", "version", 0, DECODE_BUNDLE_STR_MAX, &out->version, e)))
            return rc;
    }
    json_t *dags = json_object_get(body, "dags");
    if (!dags || json_is_null(dags))
        return remex_seterr(e, REMEX_EINVAL, "dags: missing");
    if (!json_is_array(dags))
        return remex_seterr(e, REMEX_EINVAL, "dags: expected array");
    size_t n = json_array_size(dags);
    if (n == 0 || n > DECODE_BULK_DAGS_MAX)
        return remex_seterr(e, REMEX_EINVAL, "dags: expected 1 to %d DAGs, got %zu",
                            DECODE_BULK_DAGS_MAX, n);
    for (size_t i = 0; i < n; i++)
        if (!json_is_object(json_array_get(dags, i)))
            return remex_seterr(e, REMEX_EINVAL, "dags[%zu]: expected object", i);
    out->dags = dags;
    return REMEX_OK;
}

int64_t decode_id(const char *s)
{
    char *end = NULL;
    if (!s || !*s || *s < '0' || *s > '9' || strlen(s) > 19)
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0)
        return -1;
    return (int64_t)v;
}

/* ---- closed request bodies ---- */

#define F_END                                                                                      \
    {                                                                                              \
        NULL, DECODE_ANY, NULL                                                                     \
    }

static const struct decode_field f_register[] = {
    {"name", DECODE_ANY, NULL},     {"roles", DECODE_ANY, NULL},
    {"version", DECODE_ANY, NULL},  {"hostname", DECODE_ANY, NULL},
    {"queues", DECODE_ANY, NULL},   {"slots", DECODE_ANY, NULL},
    {"features", DECODE_ANY, NULL}, F_END,
};
static const struct decode_field f_try_ref[] = {
    {"ti_id", DECODE_ANY, NULL},
    {"try_number", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_heartbeat[] = {
    {"state", DECODE_ANY, NULL},
    {"free_slots", DECODE_ANY, NULL},
    {"running", DECODE_ARR_OBJ, f_try_ref},
    {"triggers", DECODE_ANY, NULL},
    {"sysinfo", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_check[] = {
    {"name", DECODE_ANY, NULL},
    {"status", DECODE_ANY, NULL},
    {"message", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_health[] = {
    {"status", DECODE_ANY, NULL},
    {"checks", DECODE_ARR_OBJ, f_check},
    F_END,
};
static const struct decode_field f_work[] = {
    {"queues", DECODE_ANY, NULL},
    {"free_slots", DECODE_ANY, NULL},
    {"wait", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_start[] = {
    {"try_number", DECODE_ANY, NULL},
    {"pid", DECODE_ANY, NULL},
    {"hostname", DECODE_ANY, NULL},
    {"log_uri", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_state[] = {
    {"try_number", DECODE_ANY, NULL}, {"state", DECODE_ANY, NULL},
    {"exit_code", DECODE_ANY, NULL},  {"signal", DECODE_ANY, NULL},
    {"reason", DECODE_ANY, NULL},     {"trigger", DECODE_ANY, NULL},
    {"log_uri", DECODE_ANY, NULL},    F_END,
};
static const struct decode_field f_start_item[] = {
    {"ti_id", DECODE_ANY, NULL},
    {"try_number", DECODE_ANY, NULL},
    {"task_token", DECODE_ANY, NULL},
    {"pid", DECODE_ANY, NULL},
    {"hostname", DECODE_ANY, NULL},
    {"log_uri", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_start_batch[] = {
    {"items", DECODE_ARR_OBJ, f_start_item},
    F_END,
};
static const struct decode_field f_state_item[] = {
    {"ti_id", DECODE_ANY, NULL},      {"try_number", DECODE_ANY, NULL},
    {"task_token", DECODE_ANY, NULL}, {"state", DECODE_ANY, NULL},
    {"exit_code", DECODE_ANY, NULL},  {"signal", DECODE_ANY, NULL},
    {"reason", DECODE_ANY, NULL},     {"trigger", DECODE_ANY, NULL},
    {"log_uri", DECODE_ANY, NULL},    F_END,
};
static const struct decode_field f_state_batch[] = {
    {"items", DECODE_ARR_OBJ, f_state_item},
    F_END,
};
static const struct decode_field f_xcom[] = {
    {"uri", DECODE_ANY, NULL},
    {"size", DECODE_ANY, NULL},
    {"checksum", DECODE_ANY, NULL},
    {"content_type", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_trigger_poll[] = {
    {"capacity", DECODE_ANY, NULL},
    {"wait", DECODE_ANY, NULL},
    {"held", DECODE_ANY, NULL},
    {"release", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_trigger_event[] = {
    {"payload", DECODE_ANY, NULL},
    {"timed_out", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_trigger_event_item[] = {
    {"trigger_id", DECODE_ANY, NULL},
    {"error", DECODE_ANY, NULL},
    {"payload", DECODE_ANY, NULL},
    {"timed_out", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_trigger_events[] = {
    {"events", DECODE_ARR_OBJ, f_trigger_event_item},
    F_END,
};
static const struct decode_field f_manifest_dag[] = {
    {"dag_id", DECODE_ANY, NULL},
    {"hash", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_manifest_file[] = {
    {"path", DECODE_ANY, NULL},
    {"dags", DECODE_ARR_OBJ, f_manifest_dag},
    F_END,
};
static const struct decode_field f_import_error[] = {
    {"file", DECODE_ANY, NULL},
    {"line", DECODE_ANY, NULL},
    {"column", DECODE_ANY, NULL},
    {"message", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_manifest[] = {
    {"bundle", DECODE_ANY, NULL},
    {"version", DECODE_ANY, NULL},
    {"files", DECODE_ARR_OBJ, f_manifest_file},
    {"import_errors", DECODE_ARR_OBJ, f_import_error},
    F_END,
};
static const struct decode_field f_bundle[] = {
    {"name", DECODE_ANY, NULL},
    {"version", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_dag_put[] = {
    {"bundle", DECODE_OBJ, f_bundle},
    {"dag", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_dags_bulk[] = {
    {"bundle", DECODE_OBJ, f_bundle},
    {"dags", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_token_create[] = {
    {"name", DECODE_ANY, NULL},
    {"expires_in", DECODE_ANY, NULL},
    {"roles", DECODE_ANY, NULL},
    {"queues", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_agent_patch[] = {
    {"desired_state", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_run_trigger[] = {
    {"conf", DECODE_ANY, NULL},
    {"logical_date", DECODE_ANY, NULL},
    {"run_id", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_task_clear[] = {
    {"downstream", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_ui_login[] = {
    {"token", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_pool_put[] = {
    {"slots", DECODE_ANY, NULL},
    {"description", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_db_clean[] = {
    {"older_than", DECODE_ANY, NULL},
    {"dry_run", DECODE_ANY, NULL},
    F_END,
};
static const struct decode_field f_none[] = {F_END};

const struct decode_route_body decode_route_bodies[] = {
    {"POST", "/api/v1/agents/register", f_register},
    {"POST", "/api/v1/agents/{agent_id}/heartbeat", f_heartbeat},
    {"POST", "/api/v1/agents/{agent_id}/health", f_health},
    {"POST", "/api/v1/work", f_work},
    {"POST", "/api/v1/task-instances/{ti_id}/start", f_start},
    {"POST", "/api/v1/task-instances/{ti_id}/state", f_state},
    {"PUT", "/api/v1/task-instances/{ti_id}/xcom/{key}", f_xcom},
    {"POST", "/api/v1/task-instances/start", f_start_batch},
    {"POST", "/api/v1/task-instances/state", f_state_batch},
    {"POST", "/api/v1/triggers/poll", f_trigger_poll},
    {"POST", "/api/v1/triggers/{trigger_id}/event", f_trigger_event},
    {"POST", "/api/v1/triggers/events", f_trigger_events},
    {"POST", "/api/v1/dags/manifest", f_manifest},
    {"PUT", "/api/v1/dags/{dag_id}", f_dag_put},
    {"POST", "/api/v1/dags/bulk", f_dags_bulk},
    {"POST", "/api/v1/admin/tokens", f_token_create},
    {"PATCH", "/api/v1/admin/agents/{agent_id}", f_agent_patch},
    {"POST", "/api/v1/admin/dags/{dag_id}/runs", f_run_trigger},
    {"POST", "/api/v1/admin/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear", f_task_clear},
    {"POST", "/api/v1/ui/session", f_ui_login},
    {"PUT", "/api/v1/admin/pools/{pool}", f_pool_put},
    {"POST", "/api/v1/admin/db/clean", f_db_clean},
    {NULL, NULL, NULL},
};

const struct decode_field *decode_body_fields(const char *method, const char *pattern)
{
    for (const struct decode_route_body *r = decode_route_bodies; r->method; r++)
        if (strcmp(r->method, method) == 0 && strcmp(r->pattern, pattern) == 0)
            return r->fields;
    return f_none;
}

static const struct decode_field *field_find(const struct decode_field *fields, const char *key)
{
    for (const struct decode_field *f = fields; f->name; f++)
        if (strcmp(f->name, key) == 0)
            return f;
    return NULL;
}

/* Checks the keys of object o against fields; path prefixes the names ("running[0]."). */
static remex_err known_in(json_t *o, const struct decode_field *fields, const char *path,
                          struct remex_error *e)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        const struct decode_field *f = field_find(fields, key);
        char sub[256];
        if (!f)
            return remex_seterr(e, REMEX_EINVAL, "%s%.128s: unknown field", path, key);
        if (f->kind == DECODE_OBJ && json_is_object(v)) {
            snprintf(sub, sizeof(sub), "%s%s.", path, key);
            remex_err rc = known_in(v, f->sub, sub, e);
            if (rc)
                return rc;
        } else if (f->kind == DECODE_ARR_OBJ && json_is_array(v)) {
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x)
            {
                if (!json_is_object(x))
                    continue;
                snprintf(sub, sizeof(sub), "%s%s[%zu].", path, key, i);
                remex_err rc = known_in(x, f->sub, sub, e);
                if (rc)
                    return rc;
            }
        }
    }
    return REMEX_OK;
}

remex_err decode_known_fields(json_t *body, const struct decode_field *fields,
                              struct remex_error *e)
{
    if (!json_is_object(body))
        return REMEX_OK;
    return known_in(body, fields, "", e);
}

static remex_err print_fields(struct buf *out, const struct decode_field *fields,
                              const char *prefix)
{
    for (const struct decode_field *f = fields; f->name; f++) {
        char sub[256];
        if (buf_printf(out, " %s%s", prefix, f->name))
            return REMEX_ENOMEM;
        if (f->kind == DECODE_ANY)
            continue;
        snprintf(sub, sizeof(sub), "%s%s%s", prefix, f->name, f->kind == DECODE_OBJ ? "." : "[].");
        if (print_fields(out, f->sub, sub))
            return REMEX_ENOMEM;
    }
    return REMEX_OK;
}

remex_err decode_bodies_print(struct buf *out)
{
    for (const struct decode_route_body *r = decode_route_bodies; r->method; r++)
        if (buf_printf(out, "%s %s", r->method, r->pattern) || print_fields(out, r->fields, "") ||
            buf_puts(out, "\n"))
            return REMEX_ENOMEM;
    return REMEX_OK;
}
