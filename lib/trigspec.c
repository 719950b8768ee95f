/* trigspec: trigger specs of deferrable tasks (see remex/trigspec.h). */
#include "remex/trigspec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "remex/buf.h"
#include "remex/timeutil.h"

static const char *const kind_names[] = {"timer", "file", "http", "object_key", "external_run"};

const char *trigspec_kind_name(enum trigspec_kind k)
{
    return (int)k >= 0 && k < TRIGSPEC__COUNT ? kind_names[k] : "?";
}

/* Keys each kind accepts besides the common ones. */
static const char *const common_keys[] = {"type",          "timeout",     "on_timeout",
                                          "poke_interval", "resume_with", NULL};
static const char *const kind_keys[TRIGSPEC__COUNT][8] = {
    [TRIGSPEC_TIMER] = {"delta", "at", NULL},
    [TRIGSPEC_FILE] = {"path", "non_empty", NULL},
    [TRIGSPEC_HTTP] = {"url", "method", "status", "json_path", "json_value", "connection", NULL},
    [TRIGSPEC_OBJECT_KEY] = {"key", "prefix", NULL},
    [TRIGSPEC_EXTERNAL_RUN] = {"dag_id", "run_id", "task_id", "state", NULL},
};

static int in_list(const char *const *l, const char *k)
{
    for (; *l; l++)
        if (strcmp(*l, k) == 0)
            return 1;
    return 0;
}

static int has_template(const char *s)
{
    return strstr(s, "{{") != NULL;
}

/* A string field: absent -> *out NULL; expanded with vars when given. */
static remex_err get_str(const json_t *o, const char *key, const struct tmpl_task_vars *vars,
                         char **out, struct remex_error *e)
{
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return REMEX_OK;
    if (!json_is_string(v))
        return remex_seterr(e, REMEX_EINVAL, "trigger.%s: expected string", key);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0 || len > TRIGSPEC_STR_MAX || strlen(s) != len)
        return remex_seterr(e, len > TRIGSPEC_STR_MAX ? REMEX_ETOOBIG : REMEX_EINVAL,
                            "trigger.%s: expected a string of 1..%d bytes", key, TRIGSPEC_STR_MAX);
    if (!vars) {
        *out = strdup(s);
        return *out ? REMEX_OK : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    struct buf b = BUF_INIT(TRIGSPEC_STR_MAX + 1);
    struct remex_error te;
    remex_err rc = tmpl_expand(s, len, tmpl_task_lookup, (void *)vars, &b, &te);
    if (rc == REMEX_OK && (b.len == 0 || b.len > TRIGSPEC_STR_MAX))
        rc = REMEX_ETOOBIG;
    if (rc != REMEX_OK) {
        buf_free(&b);
        return remex_seterr(e, rc == REMEX_ENOMEM ? rc : REMEX_EINVAL, "trigger.%s: %s", key,
                            rc == REMEX_ETOOBIG ? "expands to an empty or too long string"
                                                : te.msg);
    }
    *out = buf_detach(&b, NULL);
    if (!*out)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    return REMEX_OK;
}

/* Seconds as a number or a duration string ("5m"); -1 when absent or null. */
static remex_err get_seconds(const json_t *o, const char *key, int64_t *ms, struct remex_error *e)
{
    const json_t *v = json_object_get(o, key);
    *ms = -1;
    if (!v || json_is_null(v))
        return REMEX_OK;
    if (json_is_string(v)) {
        uint64_t u;
        struct remex_error pe;
        if (timeutil_duration_parse(json_string_value(v), &u, &pe) != REMEX_OK ||
            u > (uint64_t)TRIGSPEC_SECONDS_MAX * 1000)
            return remex_seterr(e, REMEX_EINVAL, "trigger.%s: expected a duration like 30s or 5m",
                                key);
        *ms = (int64_t)u;
        return REMEX_OK;
    }
    double d = json_is_number(v) ? json_number_value(v) : -1;
    if (!json_is_number(v) || !isfinite(d) || d < 0 || d > (double)TRIGSPEC_SECONDS_MAX)
        return remex_seterr(e, REMEX_EINVAL, "trigger.%s: expected seconds (0..%lld)", key,
                            (long long)TRIGSPEC_SECONDS_MAX);
    *ms = (int64_t)llround(d * 1000.0);
    return REMEX_OK;
}

static remex_err get_bool(const json_t *o, const char *key, int *out, struct remex_error *e)
{
    const json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v || json_is_null(v))
        return REMEX_OK;
    if (!json_is_boolean(v))
        return remex_seterr(e, REMEX_EINVAL, "trigger.%s: expected true or false", key);
    *out = json_is_true(v);
    return REMEX_OK;
}

static remex_err check_keys(const json_t *o, enum trigspec_kind k, struct remex_error *e)
{
    const char *key;
    const json_t *v;
    if (json_object_size(o) > TRIGSPEC_KEYS_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "trigger: more than %d keys", TRIGSPEC_KEYS_MAX);
    json_object_foreach((json_t *)o, key, v)
    {
        if (!in_list(common_keys, key) && !in_list(kind_keys[k], key))
            return remex_seterr(e, REMEX_EINVAL, "trigger.%.64s: unknown key for type %s", key,
                                kind_names[k]);
    }
    return REMEX_OK;
}

static remex_err parse_timer(const json_t *o, const struct tmpl_task_vars *vars, struct trigspec *t,
                             struct remex_error *e)
{
    char *at = NULL;
    remex_err rc = get_seconds(o, "delta", &t->delta_ms, e);
    if (rc == REMEX_OK)
        rc = get_str(o, "at", vars, &at, e);
    if (rc != REMEX_OK)
        return rc;
    if ((t->delta_ms >= 0) == (at != NULL)) {
        free(at);
        return remex_seterr(e, REMEX_EINVAL, "trigger: a timer needs exactly one of delta and at");
    }
    if (at && !(vars == NULL && has_template(at))) {
        struct remex_error pe;
        if (timeutil_rfc3339_parse(at, &t->at_ms, &pe) != REMEX_OK)
            rc = remex_seterr(e, REMEX_EINVAL, "trigger.at: expected an RFC 3339 time: %s", pe.msg);
    }
    free(at);
    return rc;
}

static remex_err parse_file(const json_t *o, const struct tmpl_task_vars *vars, struct trigspec *t,
                            struct remex_error *e)
{
    remex_err rc = get_str(o, "path", vars, &t->path, e);
    if (rc == REMEX_OK)
        rc = get_bool(o, "non_empty", &t->non_empty, e);
    if (rc != REMEX_OK)
        return rc;
    if (!t->path)
        return remex_seterr(e, REMEX_EINVAL, "trigger.path: required for a file trigger");
    if (t->path[0] != '/' && !(vars == NULL && strncmp(t->path, "{{", 2) == 0))
        return remex_seterr(e, REMEX_EINVAL, "trigger.path: expected an absolute path");
    return REMEX_OK;
}

static remex_err parse_http(const json_t *o, const struct tmpl_task_vars *vars, struct trigspec *t,
                            struct remex_error *e)
{
    remex_err rc;
    if ((rc = get_str(o, "url", vars, &t->url, e)) != REMEX_OK ||
        (rc = get_str(o, "method", vars, &t->method, e)) != REMEX_OK ||
        (rc = get_str(o, "json_path", vars, &t->json_path, e)) != REMEX_OK ||
        (rc = get_str(o, "connection", vars, &t->connection, e)) != REMEX_OK)
        return rc;
    if (!t->url)
        return remex_seterr(e, REMEX_EINVAL, "trigger.url: required for an http trigger");
    if (!(vars == NULL && has_template(t->url)) && strncmp(t->url, "http://", 7) != 0 &&
        strncmp(t->url, "https://", 8) != 0)
        return remex_seterr(e, REMEX_EINVAL, "trigger.url: expected an http:// or https:// URL");
    if (t->method && strcmp(t->method, "GET") != 0 && strcmp(t->method, "HEAD") != 0)
        return remex_seterr(e, REMEX_EINVAL, "trigger.method: expected GET or HEAD");
    const json_t *st = json_object_get(o, "status");
    t->status = 200;
    if (st && !json_is_null(st)) {
        if (!json_is_integer(st) || json_integer_value(st) < 100 || json_integer_value(st) > 599)
            return remex_seterr(e, REMEX_EINVAL, "trigger.status: expected an HTTP status");
        t->status = (long)json_integer_value(st);
    }
    const json_t *jv = json_object_get(o, "json_value");
    if (jv) {
        char *s = json_dumps(jv, JSON_COMPACT | JSON_ENCODE_ANY);
        size_t n = s ? strlen(s) : 0;
        free(s);
        if (n == 0 || n > TRIGSPEC_STR_MAX)
            return remex_seterr(e, REMEX_ETOOBIG, "trigger.json_value: over %d bytes",
                                TRIGSPEC_STR_MAX);
        if (!t->json_path)
            return remex_seterr(e, REMEX_EINVAL, "trigger.json_value: needs json_path");
        t->json_value = json_deep_copy(jv);
        if (!t->json_value)
            return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    return REMEX_OK;
}

static remex_err parse_object_key(const json_t *o, const struct tmpl_task_vars *vars,
                                  struct trigspec *t, struct remex_error *e)
{
    char *prefix = NULL;
    remex_err rc = get_str(o, "key", vars, &t->key, e);
    if (rc == REMEX_OK)
        rc = get_str(o, "prefix", vars, &prefix, e);
    if (rc != REMEX_OK)
        return rc;
    if ((t->key != NULL) == (prefix != NULL)) {
        free(prefix);
        return remex_seterr(e, REMEX_EINVAL,
                            "trigger: an object_key trigger needs exactly one of key and prefix");
    }
    if (prefix) {
        t->key = prefix;
        t->prefix = 1;
    }
    const char *k = t->key;
    if (!(vars == NULL && has_template(k)) &&
        (k[0] == '/' || strstr(k, "..") != NULL || strstr(k, "//") != NULL))
        return remex_seterr(e, REMEX_EINVAL,
                            "trigger.%s: expected a relative key without '..' or '//'",
                            t->prefix ? "prefix" : "key");
    return REMEX_OK;
}

static remex_err parse_external(const json_t *o, const struct tmpl_task_vars *vars,
                                struct trigspec *t, struct remex_error *e)
{
    remex_err rc;
    if ((rc = get_str(o, "dag_id", vars, &t->dag_id, e)) != REMEX_OK ||
        (rc = get_str(o, "run_id", vars, &t->run_id, e)) != REMEX_OK ||
        (rc = get_str(o, "task_id", vars, &t->task_id, e)) != REMEX_OK ||
        (rc = get_str(o, "state", vars, &t->state, e)) != REMEX_OK)
        return rc;
    if (!t->dag_id)
        return remex_seterr(e, REMEX_EINVAL,
                            "trigger.dag_id: required for an external_run trigger");
    static const char *const states[] = {"success", "failed", "skipped", "upstream_failed", NULL};
    if (t->state && !in_list(states, t->state))
        return remex_seterr(e, REMEX_EINVAL,
                            "trigger.state: expected success, failed, skipped or upstream_failed");
    return REMEX_OK;
}

static remex_err parse_common(const json_t *spec, struct trigspec *t, struct remex_error *e)
{
    remex_err rc;
    if ((rc = get_seconds(spec, "timeout", &t->timeout_ms, e)) != REMEX_OK ||
        (rc = get_seconds(spec, "poke_interval", &t->poke_ms, e)) != REMEX_OK)
        return rc;
    const json_t *rw = json_object_get(spec, "resume_with");
    if (rw && !json_is_null(rw) &&
        (!json_is_string(rw) || json_string_length(rw) == 0 || json_string_length(rw) > 255))
        return remex_seterr(e, REMEX_EINVAL,
                            "trigger.resume_with: expected a name of 1..255 bytes");
    const json_t *ot = json_object_get(spec, "on_timeout");
    if (ot && !json_is_null(ot)) {
        const char *s = json_string_value(ot);
        if (!s || (strcmp(s, "skip") != 0 && strcmp(s, "fail") != 0))
            return remex_seterr(e, REMEX_EINVAL, "trigger.on_timeout: expected skip or fail");
        t->on_timeout_skip = strcmp(s, "skip") == 0;
    }
    return REMEX_OK;
}

remex_err trigspec_parse(const json_t *spec, const struct tmpl_task_vars *vars,
                         struct trigspec *out, struct remex_error *e)
{
    memset(out, 0, sizeof(*out));
    out->timeout_ms = out->poke_ms = out->delta_ms = -1;
    out->at_ms = INT64_MIN;
    if (!json_is_object(spec))
        return remex_seterr(e, REMEX_EINVAL, "trigger: expected an object");
    const char *type = json_string_value(json_object_get(spec, "type"));
    int k = 0;
    while (type && k < TRIGSPEC__COUNT && strcmp(kind_names[k], type) != 0)
        k++;
    if (!type || k == TRIGSPEC__COUNT)
        return remex_seterr(e, REMEX_EINVAL,
                            "trigger.type: expected timer, file, http, object_key or external_run");
    out->kind = (enum trigspec_kind)k;
    remex_err rc = check_keys(spec, out->kind, e);
    if (rc == REMEX_OK)
        rc = parse_common(spec, out, e);
    if (rc != REMEX_OK)
        return rc;
    switch (out->kind) {
    case TRIGSPEC_TIMER:
        return parse_timer(spec, vars, out, e);
    case TRIGSPEC_FILE:
        return parse_file(spec, vars, out, e);
    case TRIGSPEC_HTTP:
        return parse_http(spec, vars, out, e);
    case TRIGSPEC_OBJECT_KEY:
        return parse_object_key(spec, vars, out, e);
    default:
        return parse_external(spec, vars, out, e);
    }
}

void trigspec_free(struct trigspec *t)
{
    if (!t)
        return;
    free(t->path);
    free(t->url);
    free(t->method);
    free(t->json_path);
    json_decref(t->json_value);
    free(t->connection);
    free(t->key);
    free(t->dag_id);
    free(t->run_id);
    free(t->task_id);
    free(t->state);
    memset(t, 0, sizeof(*t));
}

/* ---- the trigger poll's reply ---- */

remex_err trigspec_poll_reply(const json_t *reply, json_t **items, struct remex_error *e)
{
    json_t *arr = json_is_object(reply) ? json_object_get(reply, "triggers") : NULL;
    *items = NULL;
    if (!json_is_object(reply))
        return remex_seterr(e, REMEX_EPROTO, "reply: expected an object");
    if (!json_is_array(arr))
        return remex_seterr(e, REMEX_EPROTO, "reply.triggers: expected an array");
    if (json_array_size(arr) > TRIGSPEC_POLL_MAX)
        return remex_seterr(e, REMEX_EPROTO, "reply.triggers: %zu items, more than %d",
                            json_array_size(arr), TRIGSPEC_POLL_MAX);
    *items = arr;
    return REMEX_OK;
}

/* A positive integer member k of o into *v; REMEX_EPROTO naming it otherwise. */
static remex_err item_id(const json_t *o, const char *k, size_t i, int64_t *v,
                         struct remex_error *e)
{
    json_t *x = json_object_get(o, k);
    if (!json_is_integer(x) || json_integer_value(x) <= 0)
        return remex_seterr(e, REMEX_EPROTO, "triggers[%zu].%s: expected a positive integer", i, k);
    *v = json_integer_value(x);
    return REMEX_OK;
}

/* An RFC 3339 (or null/absent: INT64_MIN) member k of o; where names o for errors. */
static remex_err item_time(const json_t *o, const char *k, size_t i, const char *where, int64_t *v,
                           struct remex_error *e)
{
    json_t *x = json_object_get(o, k);
    *v = INT64_MIN;
    if (!x || json_is_null(x))
        return REMEX_OK;
    const char *s = json_string_value(x);
    struct remex_error te;
    if (!s || json_string_length(x) > 64 || timeutil_rfc3339_parse(s, v, &te) != REMEX_OK)
        return remex_seterr(e, REMEX_EPROTO, "triggers[%zu].%s%s: expected RFC 3339 time or null",
                            i, where, k);
    return REMEX_OK;
}

/* A context string member k (absent: ""), capped. */
static remex_err ctx_str(const json_t *ctx, const char *k, size_t i, const char **v,
                         struct remex_error *e)
{
    json_t *x = json_object_get(ctx, k);
    *v = "";
    if (!x)
        return REMEX_OK;
    if (!json_is_string(x) || json_string_length(x) > TRIGSPEC_CTX_STR_MAX ||
        strlen(json_string_value(x)) != json_string_length(x))
        return remex_seterr(e, REMEX_EPROTO,
                            "triggers[%zu].context.%s: expected a string of at most %d bytes", i, k,
                            TRIGSPEC_CTX_STR_MAX);
    *v = json_string_value(x);
    return REMEX_OK;
}

/* A context integer member k (absent: def). */
static remex_err ctx_int(const json_t *ctx, const char *k, size_t i, long long def, long long *v,
                         struct remex_error *e)
{
    json_t *x = json_object_get(ctx, k);
    *v = def;
    if (!x)
        return REMEX_OK;
    if (!json_is_integer(x))
        return remex_seterr(e, REMEX_EPROTO, "triggers[%zu].context.%s: expected an integer", i, k);
    *v = (long long)json_integer_value(x);
    return REMEX_OK;
}

/* A context object member k (absent or null: NULL). */
static remex_err ctx_obj(const json_t *ctx, const char *k, size_t i, const json_t **v,
                         struct remex_error *e)
{
    json_t *x = json_object_get(ctx, k);
    *v = NULL;
    if (!x || json_is_null(x))
        return REMEX_OK;
    if (!json_is_object(x))
        return remex_seterr(e, REMEX_EPROTO, "triggers[%zu].context.%s: expected an object", i, k);
    *v = x;
    return REMEX_OK;
}

static remex_err item_context(const json_t *ctx, size_t i, struct tmpl_task_vars *v,
                              struct remex_error *e)
{
    int64_t ld, dis, die;
    const json_t *params, *conf;
    remex_err rc = REMEX_OK;
    if (ctx && !json_is_object(ctx))
        return remex_seterr(e, REMEX_EPROTO, "triggers[%zu].context: expected an object", i);
    /* absent: every member takes its default (json_object_get(NULL, k) is NULL) */
    if ((rc = ctx_str(ctx, "dag_id", i, &v->dag_id, e)) != REMEX_OK ||
        (rc = ctx_str(ctx, "task_id", i, &v->task_id, e)) != REMEX_OK ||
        (rc = ctx_str(ctx, "run_id", i, &v->run_id, e)) != REMEX_OK ||
        (rc = ctx_int(ctx, "try_number", i, 1, &v->try_number, e)) != REMEX_OK ||
        (rc = ctx_int(ctx, "map_index", i, -1, &v->map_index, e)) != REMEX_OK ||
        (rc = item_time(ctx, "logical_date", i, "context.", &ld, e)) != REMEX_OK ||
        (rc = item_time(ctx, "data_interval_start", i, "context.", &dis, e)) != REMEX_OK ||
        (rc = item_time(ctx, "data_interval_end", i, "context.", &die, e)) != REMEX_OK ||
        (rc = ctx_obj(ctx, "params", i, &params, e)) != REMEX_OK ||
        (rc = ctx_obj(ctx, "conf", i, &conf, e)) != REMEX_OK)
        return rc;
    if (ld == INT64_MIN)
        ld = 0;
    v->logical_date = ld / 1000;
    v->data_interval_start = (dis == INT64_MIN ? ld : dis) / 1000;
    v->data_interval_end = (die == INT64_MIN ? ld : die) / 1000;
    v->params = params;
    v->conf = conf;
    return REMEX_OK;
}

remex_err trigspec_poll_item(const json_t *item, size_t i, struct trigspec_item *out,
                             struct remex_error *e)
{
    memset(out, 0, sizeof(*out));
    out->created_ms = out->timeout_at_ms = INT64_MIN;
    if (!json_is_object(item))
        return remex_seterr(e, REMEX_EPROTO, "triggers[%zu]: expected an object", i);
    int64_t id = 0;
    remex_err rc = item_id(item, "trigger_id", i, &id, e);
    if (rc != REMEX_OK)
        return rc;
    out->trigger_id = id;
    if ((rc = item_id(item, "ti_id", i, &out->ti_id, e)) != REMEX_OK)
        return rc;
    out->spec = json_object_get(item, "spec");
    if (!json_is_object(out->spec))
        return remex_seterr(e, REMEX_EPROTO, "triggers[%zu].spec: expected an object", i);
    if ((rc = item_time(item, "created_at", i, "", &out->created_ms, e)) != REMEX_OK ||
        (rc = item_time(item, "timeout_at", i, "", &out->timeout_at_ms, e)) != REMEX_OK)
        return rc;
    return item_context(json_object_get(item, "context"), i, &out->vars, e);
}
