/* dag: DAG model, strict JSON decoding, canonical encoding, validation, rules. */
#include "remex/dag.h"
#include "remex/trigspec.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/buf.h"
#include "remex/hash.h"
#include "remex/timeutil.h"

#define DAY_MS     (24LL * 3600 * 1000)
#define PATH_MAX_  96
#define STR_MAX    65536 /* any single string field, bytes */
#define DUMP_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15))

static const char *const rule_names[DAG_TR__COUNT] = {
    [DAG_TR_ALL_SUCCESS] = "all_success",
    [DAG_TR_ALL_FAILED] = "all_failed",
    [DAG_TR_ALL_DONE] = "all_done",
    [DAG_TR_ALL_SKIPPED] = "all_skipped",
    [DAG_TR_ONE_SUCCESS] = "one_success",
    [DAG_TR_ONE_FAILED] = "one_failed",
    [DAG_TR_ONE_DONE] = "one_done",
    [DAG_TR_NONE_FAILED] = "none_failed",
    [DAG_TR_NONE_SKIPPED] = "none_skipped",
    [DAG_TR_NONE_FAILED_MIN_ONE_SUCCESS] = "none_failed_min_one_success",
    [DAG_TR_ALWAYS] = "always",
};

static const char *const state_names[DAG_TI__COUNT] = {
    [DAG_TI_NONE] = "none",
    [DAG_TI_SCHEDULED] = "scheduled",
    [DAG_TI_QUEUED] = "queued",
    [DAG_TI_OFFERED] = "offered",
    [DAG_TI_RUNNING] = "running",
    [DAG_TI_DEFERRED] = "deferred",
    [DAG_TI_UP_FOR_RETRY] = "up_for_retry",
    [DAG_TI_SUCCESS] = "success",
    [DAG_TI_FAILED] = "failed",
    [DAG_TI_SKIPPED] = "skipped",
    [DAG_TI_UPSTREAM_FAILED] = "upstream_failed",
    [DAG_TI_REMOVED] = "removed",
};

/* names[i] for 0 <= i < n, else "?". */
static const char *enum_name(const char *const *names, int n, int i)
{
    return i < 0 || i >= n ? "?" : names[i];
}

/* The index of s in names[0..n), or -1. */
static int enum_parse(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

const char *dag_trigger_rule_name(enum dag_trigger_rule r)
{
    return enum_name(rule_names, DAG_TR__COUNT, (int)r);
}

int dag_trigger_rule_parse(const char *s, enum dag_trigger_rule *out)
{
    int i = enum_parse(rule_names, DAG_TR__COUNT, s);
    if (i >= 0)
        *out = (enum dag_trigger_rule)i;
    return i < 0 ? -1 : 0;
}

const char *dag_state_name(enum dag_ti_state s)
{
    return enum_name(state_names, DAG_TI__COUNT, (int)s);
}

int dag_state_parse(const char *s, enum dag_ti_state *out)
{
    int i = enum_parse(state_names, DAG_TI__COUNT, s);
    if (i >= 0)
        *out = (enum dag_ti_state)i;
    return i < 0 ? -1 : 0;
}

int dag_state_is_terminal(enum dag_ti_state s)
{
    return s == DAG_TI_SUCCESS || s == DAG_TI_FAILED || s == DAG_TI_SKIPPED ||
           s == DAG_TI_UPSTREAM_FAILED || s == DAG_TI_REMOVED;
}

/* The state change forced by the upstream states, if any (flag_upstream_failed). */
static enum dag_rule_decision rule_flag(enum dag_trigger_rule r,
                                        const struct dag_upstream_counts *c)
{
    int done = c->done >= c->total;
    switch (r) {
    case DAG_TR_ALL_SUCCESS:
        if (c->upstream_failed || c->failed)
            return DAG_RULE_UPSTREAM_FAILED;
        if (c->skipped)
            return DAG_RULE_SKIP;
        break;
    case DAG_TR_ALL_FAILED:
        if (c->success || c->skipped)
            return DAG_RULE_SKIP;
        break;
    case DAG_TR_ONE_SUCCESS:
        if (done && c->done == c->skipped)
            return DAG_RULE_SKIP;
        if (done && c->success == 0)
            return DAG_RULE_UPSTREAM_FAILED;
        break;
    case DAG_TR_ONE_FAILED:
        if (done && !(c->failed || c->upstream_failed))
            return DAG_RULE_SKIP;
        break;
    case DAG_TR_ONE_DONE:
        if (done && !(c->failed || c->success))
            return DAG_RULE_SKIP;
        break;
    case DAG_TR_NONE_FAILED:
        if (c->upstream_failed || c->failed)
            return DAG_RULE_UPSTREAM_FAILED;
        break;
    case DAG_TR_NONE_FAILED_MIN_ONE_SUCCESS:
        if (c->upstream_failed || c->failed)
            return DAG_RULE_UPSTREAM_FAILED;
        if (c->skipped == c->total)
            return DAG_RULE_SKIP;
        break;
    case DAG_TR_NONE_SKIPPED:
        if (c->skipped)
            return DAG_RULE_SKIP;
        break;
    case DAG_TR_ALL_SKIPPED:
        if (c->success || c->failed || c->upstream_failed)
            return DAG_RULE_SKIP;
        break;
    default:
        break;
    }
    return DAG_RULE_WAIT;
}

enum dag_rule_decision dag_rule_eval(enum dag_trigger_rule r, const struct dag_upstream_counts *c)
{
    long long total = c->total;
    int met;

    if (r == DAG_TR_ALWAYS || c->total == 0)
        return DAG_RULE_RUN;
    enum dag_rule_decision forced = rule_flag(r, c);
    if (forced != DAG_RULE_WAIT)
        return forced;
    switch (r) {
    case DAG_TR_ALL_SUCCESS:
        met = total - (long long)c->success <= 0;
        break;
    case DAG_TR_ALL_FAILED:
        met = total - (long long)c->failed - (long long)c->upstream_failed <= 0;
        break;
    case DAG_TR_ALL_DONE:
        met = c->done >= c->total;
        break;
    case DAG_TR_ALL_SKIPPED:
        met = total - (long long)c->skipped <= 0;
        break;
    case DAG_TR_ONE_SUCCESS:
        met = c->success > 0;
        break;
    case DAG_TR_ONE_FAILED:
        met = c->failed > 0 || c->upstream_failed > 0;
        break;
    case DAG_TR_ONE_DONE:
        met = c->success + (long long)c->failed > 0;
        break;
    case DAG_TR_NONE_FAILED:
    case DAG_TR_NONE_FAILED_MIN_ONE_SUCCESS:
        met = total - (long long)c->success - (long long)c->skipped <= 0;
        break;
    case DAG_TR_NONE_SKIPPED:
        met = c->done >= c->total && c->skipped == 0;
        break;
    default:
        met = 0;
        break;
    }
    return met ? DAG_RULE_RUN : DAG_RULE_WAIT;
}

int64_t dag_retry_delay_ms(const struct dag_task *t, int64_t try_number)
{
    int64_t d = t->retry_delay_ms < 0 ? 0 : t->retry_delay_ms;
    if (!t->retry_exponential_backoff || try_number <= 1)
        return d;
    int64_t cap = DAY_MS;
    if (t->max_retry_delay_ms != DAG_UNSET && t->max_retry_delay_ms >= 0 &&
        t->max_retry_delay_ms < cap)
        cap = t->max_retry_delay_ms;
    if (d == 0)
        return 0;
    int64_t shift = try_number - 1;
    if (shift >= 62 || d > (cap >> shift))
        return cap;
    int64_t r = d << shift;
    return r > cap ? cap : r;
}

int dag_id_valid(const char *id)
{
    size_t n = 0;
    for (const char *p = id; *p != '\0'; p++, n++) {
        if (n >= DAG_ID_MAX)
            return 0;
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
            return 0;
    }
    return n > 0;
}

static void strv_free(struct dag_strv *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i]);
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

static void task_free(struct dag_task *t)
{
    free(t->task_id);
    strv_free(&t->command);
    free(t->shell);
    for (size_t i = 0; i < t->nenv; i++) {
        free(t->env[i].key);
        free(t->env[i].value);
    }
    free(t->env);
    strv_free(&t->upstream);
    free(t->queue);
    free(t->pool);
    strv_free(&t->connections);
    strv_free(&t->variables);
    json_decref(t->trigger);
    free(t->upstream_idx);
    free(t->downstream_idx);
}

void dag_free(struct dag *d)
{
    if (d == NULL)
        return;
    free(d->dag_id);
    free(d->fileloc);
    free(d->description);
    free(d->schedule);
    json_decref(d->params);
    strv_free(&d->tags);
    for (size_t i = 0; i < d->ntasks; i++)
        task_free(&d->tasks[i]);
    free(d->tasks);
    free(d->topo);
    free(d);
}

/* ---------------------------------------------------------------- decoding */

/* Copies a key into out, safe to print (non-printable bytes become '?', cut at 48). */
static void printable_key(const char *k, char *out, size_t outsz)
{
    size_t i = 0;
    for (; k[i] != '\0' && i + 1 < outsz && i < 48; i++)
        out[i] = isprint((unsigned char)k[i]) ? k[i] : '?';
    out[i] = '\0';
}

static remex_err check_keys(const json_t *o, const char *path, const char *const *allowed,
                            struct remex_error *e)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(k, allowed[i]) == 0;
        if (!ok) {
            char pk[64];
            printable_key(k, pk, sizeof(pk));
            return remex_seterr(e, REMEX_EINVAL, "%s%s%s: unknown key", path, *path ? "." : "", pk);
        }
    }
    return REMEX_OK;
}

static char *xstrdup(const char *s, struct remex_error *e, remex_err *rc)
{
    char *p = strdup(s);
    if (p == NULL)
        *rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
    return p;
}

#define FIELD_FMT        "%s%s%s"
#define FIELD(path, key) (path), *(path) ? "." : "", (key)

/* A string (or null when nullable: *out = NULL). Absent gives def (may be NULL). */
static remex_err get_str(const json_t *o, const char *path, const char *key, int nullable,
                         const char *def, char **out, struct remex_error *e)
{
    remex_err rc = REMEX_OK;
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (v == NULL || (nullable && json_is_null(v))) {
        if (v == NULL && def != NULL)
            *out = xstrdup(def, e, &rc);
        return rc;
    }
    if (!json_is_string(v))
        return remex_seterr(e, REMEX_EINVAL, FIELD_FMT ": expected string%s", FIELD(path, key),
                            nullable ? " or null" : "");
    if (json_string_length(v) > STR_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, FIELD_FMT ": longer than %d bytes", FIELD(path, key),
                            STR_MAX);
    *out = xstrdup(json_string_value(v), e, &rc);
    return rc;
}

static remex_err get_int(const json_t *o, const char *path, const char *key, int nullable,
                         int64_t def, int64_t min, int64_t max, int64_t *out, struct remex_error *e)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL || (nullable && json_is_null(v))) {
        *out = v == NULL ? def : DAG_UNSET;
        return REMEX_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min)
        return remex_seterr(e, REMEX_EINVAL, FIELD_FMT ": expected integer >= %lld%s",
                            FIELD(path, key), (long long)min, nullable ? " or null" : "");
    if (json_integer_value(v) > max)
        return remex_seterr(e, REMEX_EINVAL, FIELD_FMT ": expected integer <= %lld",
                            FIELD(path, key), (long long)max);
    *out = json_integer_value(v);
    return REMEX_OK;
}

/* Seconds (integer or real) into milliseconds. */
static remex_err get_seconds(const json_t *o, const char *path, const char *key, int nullable,
                             int64_t def_ms, int64_t *out_ms, struct remex_error *e)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL || (nullable && json_is_null(v))) {
        *out_ms = v == NULL ? def_ms : DAG_UNSET;
        return REMEX_OK;
    }
    double x = json_is_number(v) ? json_number_value(v) : -1.0;
    if (!json_is_number(v) || !(x >= 0.0) || x > (double)DAG_SECONDS_MAX)
        return remex_seterr(e, REMEX_EINVAL, FIELD_FMT ": expected seconds 0..%lld%s",
                            FIELD(path, key), DAG_SECONDS_MAX, nullable ? " or null" : "");
    if (json_is_integer(v))
        *out_ms = json_integer_value(v) * 1000;
    else
        *out_ms = llround(x * 1000.0);
    return REMEX_OK;
}

static remex_err get_bool(const json_t *o, const char *path, const char *key, int def, int *out,
                          struct remex_error *e)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL) {
        *out = def;
        return REMEX_OK;
    }
    if (!json_is_boolean(v))
        return remex_seterr(e, REMEX_EINVAL, FIELD_FMT ": expected boolean", FIELD(path, key));
    *out = json_is_true(v);
    return REMEX_OK;
}

static remex_err get_time(const json_t *o, const char *path, const char *key, int64_t *out_ms,
                          struct remex_error *e)
{
    const json_t *v = json_object_get(o, key);
    struct remex_error sub = {0};
    *out_ms = DAG_UNSET;
    if (v == NULL || json_is_null(v))
        return REMEX_OK;
    if (!json_is_string(v))
        return remex_seterr(e, REMEX_EINVAL, FIELD_FMT ": expected RFC 3339 string or null",
                            FIELD(path, key));
    if (timeutil_rfc3339_parse(json_string_value(v), out_ms, &sub) != REMEX_OK)
        return remex_seterr(e, REMEX_EINVAL, FIELD_FMT ": %s", FIELD(path, key), sub.msg);
    if (*out_ms < 0)
        return remex_seterr(e, REMEX_EINVAL, FIELD_FMT ": before 1970", FIELD(path, key));
    return REMEX_OK;
}

/* A list of strings; with ids != 0 each must be a valid id. */
static remex_err get_strv(const json_t *o, const char *path, const char *key, int ids,
                          struct dag_strv *out, struct remex_error *e)
{
    const json_t *v = json_object_get(o, key);
    out->v = NULL;
    out->n = 0;
    if (v == NULL)
        return REMEX_OK;
    if (!json_is_array(v))
        return remex_seterr(e, REMEX_EINVAL, FIELD_FMT ": expected list of strings",
                            FIELD(path, key));
    size_t n = json_array_size(v);
    if (n > DAG_TASKS_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, FIELD_FMT ": more than %d entries", FIELD(path, key),
                            DAG_TASKS_MAX);
    if (n == 0)
        return REMEX_OK;
    out->v = calloc(n, sizeof(char *));
    if (out->v == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(v, i);
        remex_err rc = REMEX_OK;
        if (!json_is_string(s) || json_string_length(s) > STR_MAX ||
            strlen(json_string_value(s)) != json_string_length(s))
            return remex_seterr(e, REMEX_EINVAL, FIELD_FMT "[%zu]: expected string",
                                FIELD(path, key), i);
        if (ids && !dag_id_valid(json_string_value(s)))
            return remex_seterr(e, REMEX_EINVAL,
                                FIELD_FMT "[%zu]: expected id matching [A-Za-z0-9_.-]{1,250}",
                                FIELD(path, key), i);
        out->v[i] = xstrdup(json_string_value(s), e, &rc);
        if (rc != REMEX_OK)
            return rc;
        out->n = i + 1;
    }
    return REMEX_OK;
}

static int env_name_valid(const char *k)
{
    if (!isalpha((unsigned char)k[0]) && k[0] != '_')
        return 0;
    for (const char *p = k; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return 0;
    return strlen(k) <= 256;
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dag_kv *)a)->key, ((const struct dag_kv *)b)->key);
}

static remex_err get_env(const json_t *o, const char *path, struct dag_task *t,
                         struct remex_error *e)
{
    const json_t *v = json_object_get(o, "env");
    const char *k;
    json_t *s;
    if (v == NULL)
        return REMEX_OK;
    if (!json_is_object(v))
        return remex_seterr(e, REMEX_EINVAL, "%s.env: expected object of strings", path);
    if (json_object_size(v) > DAG_TASKS_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "%s.env: more than %d entries", path, DAG_TASKS_MAX);
    if (json_object_size(v) == 0)
        return REMEX_OK;
    t->env = calloc(json_object_size(v), sizeof(*t->env));
    if (t->env == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    json_object_foreach((json_t *)v, k, s)
    {
        char pk[64];
        printable_key(k, pk, sizeof(pk));
        if (!env_name_valid(k))
            return remex_seterr(e, REMEX_EINVAL,
                                "%s.env.%s: expected a variable name [A-Za-z_][A-Za-z0-9_]*", path,
                                pk);
        if (!json_is_string(s) || strlen(json_string_value(s)) != json_string_length(s))
            return remex_seterr(e, REMEX_EINVAL, "%s.env.%s: expected string", path, pk);
        remex_err rc = REMEX_OK;
        struct dag_kv *kv = &t->env[t->nenv];
        kv->key = xstrdup(k, e, &rc);
        if (rc == REMEX_OK)
            kv->value = xstrdup(json_string_value(s), e, &rc);
        t->nenv++;
        if (rc != REMEX_OK)
            return rc;
    }
    qsort(t->env, t->nenv, sizeof(*t->env), kv_cmp);
    return REMEX_OK;
}

static const char *const limit_keys[] = {"memory", "cpu_time", "processes", "open_files", NULL};

static remex_err get_limits(const json_t *o, const char *path, struct dag_limits *l,
                            struct remex_error *e)
{
    const json_t *v = json_object_get(o, "limits");
    char sub[PATH_MAX_ + 16];
    remex_err rc;

    l->memory = l->cpu_time_ms = l->processes = l->open_files = DAG_UNSET;
    if (v == NULL || json_is_null(v))
        return REMEX_OK;
    snprintf(sub, sizeof(sub), "%s.limits", path);
    if (!json_is_object(v))
        return remex_seterr(e, REMEX_EINVAL, "%s: expected object or null", sub);
    if ((rc = check_keys(v, sub, limit_keys, e)) != REMEX_OK ||
        (rc = get_int(v, sub, "memory", 1, DAG_UNSET, 0, INT64_MAX, &l->memory, e)) != REMEX_OK ||
        (rc = get_seconds(v, sub, "cpu_time", 1, DAG_UNSET, &l->cpu_time_ms, e)) != REMEX_OK ||
        (rc = get_int(v, sub, "processes", 1, DAG_UNSET, 1, INT32_MAX, &l->processes, e)) !=
            REMEX_OK ||
        (rc = get_int(v, sub, "open_files", 1, DAG_UNSET, 1, INT32_MAX, &l->open_files, e)) !=
            REMEX_OK)
        return rc;
    return REMEX_OK;
}

/* Milliseconds as canonical JSON seconds: an integer when whole, null when unset. */
static json_t *seconds_json(int64_t ms)
{
    if (ms == DAG_UNSET)
        return json_null();
    if (ms % 1000 == 0)
        return json_integer(ms / 1000);
    return json_real((double)ms / 1000.0);
}

static remex_err get_trigger(const json_t *o, const char *path, json_t **out, struct remex_error *e)
{
    const json_t *v = json_object_get(o, "trigger");
    char sub[PATH_MAX_ + 16];
    int64_t timeout;
    remex_err rc;

    *out = NULL;
    if (v == NULL || json_is_null(v))
        return REMEX_OK;
    snprintf(sub, sizeof(sub), "%s.trigger", path);
    if (!json_is_object(v))
        return remex_seterr(e, REMEX_EINVAL, "%s: expected object or null", sub);
    const json_t *type = json_object_get(v, "type");
    if (!json_is_string(type) || !dag_id_valid(json_string_value(type)))
        return remex_seterr(e, REMEX_EINVAL, "%s.type: expected trigger type string", sub);
    if ((rc = get_seconds(v, sub, "timeout", 1, DAG_UNSET, &timeout, e)) != REMEX_OK)
        return rc;
    struct trigspec ts;
    struct remex_error te;
    rc = trigspec_parse(v, NULL, &ts, &te);
    trigspec_free(&ts);
    if (rc != REMEX_OK)
        return remex_seterr(e, rc, "%s.%s", path, te.msg);
    *out = json_deep_copy(v);
    if (*out == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    /* Canonical: timeout always present, in the canonical seconds form. */
    json_t *tv = seconds_json(timeout);
    if (tv == NULL || json_object_set_new(*out, "timeout", tv) != 0)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    return REMEX_OK;
}

static const char *const task_keys[] = {"task_id",
                                        "command",
                                        "shell",
                                        "env",
                                        "upstream",
                                        "trigger_rule",
                                        "retries",
                                        "retry_delay",
                                        "retry_exponential_backoff",
                                        "max_retry_delay",
                                        "execution_timeout",
                                        "queue",
                                        "priority_weight",
                                        "pool_slots",
                                        "pool",
                                        "connections",
                                        "variables",
                                        "limits",
                                        "trigger",
                                        NULL};

static remex_err decode_task(const json_t *o, const char *path, struct dag_task *t,
                             struct remex_error *e)
{
    remex_err rc;
    char *rule = NULL;

    if (!json_is_object(o))
        return remex_seterr(e, REMEX_EINVAL, "%s: expected object", path);
    if ((rc = check_keys(o, path, task_keys, e)) != REMEX_OK)
        return rc;
    if ((rc = get_str(o, path, "task_id", 0, NULL, &t->task_id, e)) != REMEX_OK)
        return rc;
    if (t->task_id == NULL)
        return remex_seterr(e, REMEX_EINVAL, "%s.task_id: required", path);
    const json_t *cmd = json_object_get(o, "command");
    if (cmd != NULL && !json_is_null(cmd)) {
        t->has_command = 1;
        if ((rc = get_strv(o, path, "command", 0, &t->command, e)) != REMEX_OK)
            return rc;
    }
    if ((rc = get_str(o, path, "shell", 1, NULL, &t->shell, e)) != REMEX_OK ||
        (rc = get_env(o, path, t, e)) != REMEX_OK ||
        (rc = get_strv(o, path, "upstream", 1, &t->upstream, e)) != REMEX_OK ||
        (rc = get_str(o, path, "trigger_rule", 0, "all_success", &rule, e)) != REMEX_OK)
        return rc;
    int bad_rule = dag_trigger_rule_parse(rule, &t->trigger_rule) != 0;
    free(rule);
    if (bad_rule)
        return remex_seterr(e, REMEX_EINVAL, "%s.trigger_rule: unknown trigger rule", path);
    if ((rc = get_int(o, path, "retries", 0, 0, 0, 1000000, &t->retries, e)) != REMEX_OK ||
        (rc = get_seconds(o, path, "retry_delay", 0, 300000, &t->retry_delay_ms, e)) != REMEX_OK ||
        (rc = get_bool(o, path, "retry_exponential_backoff", 0, &t->retry_exponential_backoff,
                       e)) != REMEX_OK ||
        (rc = get_seconds(o, path, "max_retry_delay", 1, DAG_UNSET, &t->max_retry_delay_ms, e)) !=
            REMEX_OK ||
        (rc = get_seconds(o, path, "execution_timeout", 1, DAG_UNSET, &t->execution_timeout_ms,
                          e)) != REMEX_OK ||
        (rc = get_str(o, path, "queue", 0, "default", &t->queue, e)) != REMEX_OK ||
        (rc = get_int(o, path, "priority_weight", 0, 1, INT32_MIN, INT32_MAX, &t->priority_weight,
                      e)) != REMEX_OK ||
        (rc = get_int(o, path, "pool_slots", 0, 1, 1, 1000000, &t->pool_slots, e)) != REMEX_OK ||
        (rc = get_str(o, path, "pool", 1, NULL, &t->pool, e)) != REMEX_OK ||
        (rc = get_strv(o, path, "connections", 1, &t->connections, e)) != REMEX_OK ||
        (rc = get_strv(o, path, "variables", 1, &t->variables, e)) != REMEX_OK ||
        (rc = get_limits(o, path, &t->limits, e)) != REMEX_OK ||
        (rc = get_trigger(o, path, &t->trigger, e)) != REMEX_OK)
        return rc;
    return REMEX_OK;
}

static const char *const dag_keys[] = {"dag_id",
                                       "fileloc",
                                       "description",
                                       "schedule",
                                       "start_date",
                                       "end_date",
                                       "catchup",
                                       "max_active_runs",
                                       "max_active_tasks",
                                       "dagrun_timeout",
                                       "params",
                                       "tags",
                                       "tasks",
                                       NULL};

static remex_err decode_dag(const json_t *o, struct dag *d, struct remex_error *e)
{
    remex_err rc;

    if (!json_is_object(o))
        return remex_seterr(e, REMEX_EINVAL, "dag: expected object");
    if ((rc = check_keys(o, "", dag_keys, e)) != REMEX_OK)
        return rc;
    if ((rc = get_str(o, "", "dag_id", 0, NULL, &d->dag_id, e)) != REMEX_OK ||
        (rc = get_str(o, "", "fileloc", 0, NULL, &d->fileloc, e)) != REMEX_OK ||
        (rc = get_str(o, "", "description", 1, NULL, &d->description, e)) != REMEX_OK ||
        (rc = get_str(o, "", "schedule", 1, NULL, &d->schedule, e)) != REMEX_OK ||
        (rc = get_time(o, "", "start_date", &d->start_date_ms, e)) != REMEX_OK ||
        (rc = get_time(o, "", "end_date", &d->end_date_ms, e)) != REMEX_OK ||
        (rc = get_bool(o, "", "catchup", 0, &d->catchup, e)) != REMEX_OK ||
        (rc = get_int(o, "", "max_active_runs", 0, 16, 1, 1000000, &d->max_active_runs, e)) !=
            REMEX_OK ||
        (rc = get_int(o, "", "max_active_tasks", 0, 16, 1, 1000000, &d->max_active_tasks, e)) !=
            REMEX_OK ||
        (rc = get_seconds(o, "", "dagrun_timeout", 1, DAG_UNSET, &d->dagrun_timeout_ms, e)) !=
            REMEX_OK ||
        (rc = get_strv(o, "", "tags", 0, &d->tags, e)) != REMEX_OK)
        return rc;
    if (d->dag_id == NULL)
        return remex_seterr(e, REMEX_EINVAL, "dag_id: required");
    if (d->fileloc == NULL)
        return remex_seterr(e, REMEX_EINVAL, "fileloc: required");
    const json_t *params = json_object_get(o, "params");
    if (params != NULL && !json_is_object(params))
        return remex_seterr(e, REMEX_EINVAL, "params: expected object");
    d->params = params != NULL ? json_deep_copy(params) : json_object();
    if (d->params == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    const json_t *tasks = json_object_get(o, "tasks");
    if (!json_is_array(tasks))
        return remex_seterr(e, REMEX_EINVAL, "tasks: expected list of tasks");
    if (json_array_size(tasks) > DAG_TASKS_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "tasks: more than %d tasks", DAG_TASKS_MAX);
    if (json_array_size(tasks) > 0) {
        d->tasks = calloc(json_array_size(tasks), sizeof(*d->tasks));
        if (d->tasks == NULL)
            return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < json_array_size(tasks); i++) {
        char path[PATH_MAX_];
        snprintf(path, sizeof(path), "tasks[%zu]", i);
        d->ntasks = i + 1;
        if ((rc = decode_task(json_array_get(tasks, i), path, &d->tasks[i], e)) != REMEX_OK)
            return rc;
    }
    return REMEX_OK;
}

remex_err dag_from_json_value(const json_t *obj, struct dag **out, struct remex_error *e)
{
    return dag_from_json_value_ex(obj, out, NULL, e);
}

static remex_err validate_keep(struct dag *d, size_t *bad_task, char **keep, struct remex_error *e);

/* Decodes and validates obj into *out (owned); keep as in validate_keep (NULL: not kept). */
static remex_err from_json_value(const json_t *obj, struct dag **out, size_t *bad_task, char **keep,
                                 struct remex_error *e)
{
    struct dag *d = calloc(1, sizeof(*d));
    remex_err rc;

    *out = NULL;
    if (keep != NULL)
        *keep = NULL;
    if (bad_task != NULL)
        *bad_task = (size_t)-1;
    if (d == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if ((rc = decode_dag(obj, d, e)) != REMEX_OK ||
        (rc = validate_keep(d, bad_task, keep, e)) != REMEX_OK) {
        dag_free(d);
        return rc;
    }
    *out = d;
    return REMEX_OK;
}

remex_err dag_from_json_value_ex(const json_t *obj, struct dag **out, size_t *bad_task,
                                 struct remex_error *e)
{
    return from_json_value(obj, out, bad_task, NULL, e);
}

remex_err dag_from_json_value_canon(const json_t *obj, struct dag **out, size_t *bad_task,
                                    char **canonical, struct remex_error *e)
{
    return from_json_value(obj, out, bad_task, canonical, e);
}

remex_err dag_from_json(const char *text, size_t len, struct dag **out, struct remex_error *e)
{
    json_error_t je;

    *out = NULL;
    if (len > DAG_JSON_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "dag: JSON larger than %d bytes", DAG_JSON_MAX);
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (o == NULL)
        return remex_seterr(e, REMEX_EPARSE, "dag: invalid JSON at line %d column %d: %s", je.line,
                            je.column, je.text);
    remex_err rc = dag_from_json_value(o, out, e);
    json_decref(o);
    return rc;
}

/* ---------------------------------------------------------------- encoding */

static json_t *opt_int_json(int64_t v)
{
    return v == DAG_UNSET ? json_null() : json_integer(v);
}

static json_t *opt_str_json(const char *s)
{
    return s == NULL ? json_null() : json_string(s);
}

static json_t *time_json(int64_t ms)
{
    char buf[TIMEUTIL_RFC3339_MAX];
    if (ms == DAG_UNSET || timeutil_rfc3339_format(ms, ms % 1000 != 0, buf, sizeof(buf)) != 0)
        return json_null();
    return json_string(buf);
}

static json_t *strv_json(const struct dag_strv *v)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < v->n; i++) {
        if (json_array_append_new(a, json_string(v->v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* Sets key to v (stolen); records failure (NULL v or set error) in *ok. */
static void put(json_t *o, const char *key, json_t *v, int *ok)
{
    if (v == NULL || json_object_set_new(o, key, v) != 0)
        *ok = 0;
}

json_t *dag_task_to_json_value(const struct dag_task *t)
{
    json_t *o = json_object(), *env = json_object(), *lim = json_object();
    int ok = o != NULL && env != NULL && lim != NULL;

    for (size_t i = 0; ok && i < t->nenv; i++)
        put(env, t->env[i].key, json_string(t->env[i].value), &ok);
    if (ok) {
        put(lim, "memory", opt_int_json(t->limits.memory), &ok);
        put(lim, "cpu_time", seconds_json(t->limits.cpu_time_ms), &ok);
        put(lim, "processes", opt_int_json(t->limits.processes), &ok);
        put(lim, "open_files", opt_int_json(t->limits.open_files), &ok);
    }
    if (!ok) {
        json_decref(o);
        json_decref(env);
        json_decref(lim);
        return NULL;
    }
    put(o, "env", env, &ok);
    put(o, "limits", lim, &ok);
    put(o, "task_id", json_string(t->task_id), &ok);
    put(o, "command", t->has_command ? strv_json(&t->command) : json_null(), &ok);
    put(o, "shell", opt_str_json(t->shell), &ok);
    put(o, "upstream", strv_json(&t->upstream), &ok);
    put(o, "trigger_rule", json_string(dag_trigger_rule_name(t->trigger_rule)), &ok);
    put(o, "retries", json_integer(t->retries), &ok);
    put(o, "retry_delay", seconds_json(t->retry_delay_ms), &ok);
    put(o, "retry_exponential_backoff", json_boolean(t->retry_exponential_backoff), &ok);
    put(o, "max_retry_delay", seconds_json(t->max_retry_delay_ms), &ok);
    put(o, "execution_timeout", seconds_json(t->execution_timeout_ms), &ok);
    put(o, "queue", json_string(t->queue), &ok);
    put(o, "priority_weight", json_integer(t->priority_weight), &ok);
    put(o, "pool_slots", json_integer(t->pool_slots), &ok);
    if (t->pool != NULL && strcmp(t->pool, DAG_DEFAULT_POOL) != 0)
        put(o, "pool", json_string(t->pool), &ok); /* absent: the default pool */
    put(o, "connections", strv_json(&t->connections), &ok);
    put(o, "variables", strv_json(&t->variables), &ok);
    put(o, "trigger", t->trigger != NULL ? json_deep_copy(t->trigger) : json_null(), &ok);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *dag_to_json_value(const struct dag *d)
{
    json_t *o = json_object(), *tasks = json_array();
    int ok = o != NULL && tasks != NULL;

    for (size_t i = 0; ok && i < d->ntasks; i++) {
        json_t *t = dag_task_to_json_value(&d->tasks[i]);
        if (t == NULL || json_array_append_new(tasks, t) != 0)
            ok = 0;
    }
    if (!ok) {
        json_decref(o);
        json_decref(tasks);
        return NULL;
    }
    put(o, "tasks", tasks, &ok);
    put(o, "dag_id", json_string(d->dag_id), &ok);
    put(o, "fileloc", json_string(d->fileloc), &ok);
    put(o, "description", opt_str_json(d->description), &ok);
    put(o, "schedule", opt_str_json(d->schedule), &ok);
    put(o, "start_date", time_json(d->start_date_ms), &ok);
    put(o, "end_date", time_json(d->end_date_ms), &ok);
    put(o, "catchup", json_boolean(d->catchup), &ok);
    put(o, "max_active_runs", json_integer(d->max_active_runs), &ok);
    put(o, "max_active_tasks", json_integer(d->max_active_tasks), &ok);
    put(o, "dagrun_timeout", seconds_json(d->dagrun_timeout_ms), &ok);
    put(o, "params", d->params != NULL ? json_deep_copy(d->params) : json_object(), &ok);
    put(o, "tags", strv_json(&d->tags), &ok);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

remex_err dag_to_json(const struct dag *d, char **out, size_t *len, struct remex_error *e)
{
    *out = NULL;
    json_t *o = dag_to_json_value(d);
    if (o == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    char *s = json_dumps(o, DUMP_FLAGS);
    json_decref(o);
    if (s == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if (len != NULL)
        *len = strlen(s);
    *out = s;
    return REMEX_OK;
}

/* Checks the canonical size cap and records the hash in d->hash; when keep
 * is not NULL and all went well, *keep takes the canonical text (owned). */
static remex_err finish_hash(struct dag *d, char **keep, struct remex_error *e)
{
    size_t len;
    char *s;
    remex_err rc = dag_to_json(d, &s, &len, e);

    if (rc != REMEX_OK)
        return rc;
    if (len > DAG_JSON_MAX)
        rc = remex_seterr(e, REMEX_ETOOBIG, "dag: canonical JSON larger than %d bytes",
                          DAG_JSON_MAX);
    else
        rc = hash_sha256_hex(s, len, d->hash) == REMEX_OK
                 ? REMEX_OK
                 : remex_seterr(e, REMEX_ENOMEM, "sha256 failed");
    if (rc == REMEX_OK && keep != NULL) {
        *keep = s;
        return REMEX_OK;
    }
    free(s);
    return rc;
}

/* ---------------------------------------------------------------- validation */

static remex_err validate_task_fields(const struct dag_task *t, size_t i, struct remex_error *e)
{
    if (!dag_id_valid(t->task_id))
        return remex_seterr(e, REMEX_EINVAL,
                            "tasks[%zu].task_id: expected id matching [A-Za-z0-9_.-]{1,250}", i);
    if (!dag_id_valid(t->queue))
        return remex_seterr(e, REMEX_EINVAL,
                            "tasks[%zu].queue: expected name matching [A-Za-z0-9_.-]{1,250}", i);
    if (t->pool != NULL && !dag_id_valid(t->pool))
        return remex_seterr(e, REMEX_EINVAL,
                            "tasks[%zu].pool: expected name matching [A-Za-z0-9_.-]{1,250}", i);
    if (t->has_command && t->command.n == 0)
        return remex_seterr(e, REMEX_EINVAL, "tasks[%zu].command: expected a non-empty list", i);
    if (t->has_command && t->shell != NULL)
        return remex_seterr(e, REMEX_EINVAL, "tasks[%zu]: command and shell are mutually exclusive",
                            i);
    if (!t->has_command && t->shell == NULL && t->trigger == NULL)
        return remex_seterr(e, REMEX_EINVAL,
                            "tasks[%zu]: exactly one of command and shell is required", i);
    if (t->shell != NULL && t->shell[0] == '\0')
        return remex_seterr(e, REMEX_EINVAL, "tasks[%zu].shell: expected a non-empty string", i);
    if ((int)t->trigger_rule < 0 || t->trigger_rule >= DAG_TR__COUNT)
        return remex_seterr(e, REMEX_EINVAL, "tasks[%zu].trigger_rule: unknown trigger rule", i);
    return REMEX_OK;
}

/* qsort_r comparator: task indexes by task id. */
static int idx_cmp(const void *a, const void *b, void *arg)
{
    const struct dag *d = arg;
    return strcmp(d->tasks[*(const size_t *)a].task_id, d->tasks[*(const size_t *)b].task_id);
}

/* Index of id through sorted (task indexes sorted by id), or -1. */
static long lookup(const struct dag *d, const size_t *sorted, const char *id)
{
    size_t lo = 0, hi = d->ntasks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(d->tasks[sorted[mid]].task_id, id);
        if (c == 0)
            return (long)sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Reports the cycle among the tasks left with pending upstreams (pending[i] > 0). */
static remex_err report_cycle(const struct dag *d, const size_t *pending, size_t *bad_task,
                              struct remex_error *e)
{
    size_t *seen = calloc(d->ntasks, sizeof(size_t)), *walk = calloc(d->ntasks + 1, sizeof(size_t));
    size_t n = 0, cur = 0;
    struct buf msg = BUF_INIT(REMEX_ERRMSG_MAX * 2);

    if (seen == NULL || walk == NULL) {
        free(seen);
        free(walk);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    while (cur < d->ntasks && pending[cur] == 0)
        cur++;
    /* Each pending task has a pending upstream: walk upstream until a task repeats. */
    while (cur < d->ntasks && seen[cur] == 0) {
        seen[cur] = ++n;
        walk[n - 1] = cur;
        const struct dag_task *t = &d->tasks[cur];
        size_t next = d->ntasks;
        for (size_t j = 0; j < t->upstream.n && next == d->ntasks; j++)
            if (pending[t->upstream_idx[j]] > 0)
                next = t->upstream_idx[j];
        cur = next;
    }
    if (cur < d->ntasks) {
        /* walk[seen[cur]-1 .. n-1] is the cycle, in upstream direction: print it reversed. */
        size_t first = seen[cur] - 1;
        buf_puts(&msg, d->tasks[cur].task_id);
        for (size_t k = n; k-- > first;) {
            buf_puts(&msg, " -> ");
            buf_puts(&msg, d->tasks[walk[k]].task_id);
        }
        if (bad_task != NULL)
            *bad_task = cur;
    }
    remex_seterr(e, REMEX_EINVAL, "tasks: cycle %s", buf_cstr(&msg));
    buf_free(&msg);
    free(seen);
    free(walk);
    return REMEX_EINVAL;
}

/* Kahn's algorithm: fills d->topo and the downstream lists; reports a cycle. */
static remex_err order_tasks(struct dag *d, size_t *bad_task, struct remex_error *e)
{
    size_t n = d->ntasks, head = 0, tail = 0;
    size_t *pending = calloc(n ? n : 1, sizeof(size_t));
    d->topo = calloc(n ? n : 1, sizeof(size_t));
    if (pending == NULL || d->topo == NULL) {
        free(pending);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        pending[i] = d->tasks[i].upstream.n;
    for (size_t i = 0; i < n; i++)
        if (pending[i] == 0)
            d->topo[tail++] = i;
    while (head < tail) {
        const struct dag_task *t = &d->tasks[d->topo[head++]];
        for (size_t j = 0; j < t->ndownstream; j++)
            if (--pending[t->downstream_idx[j]] == 0)
                d->topo[tail++] = t->downstream_idx[j];
    }
    remex_err rc = tail == n ? REMEX_OK : report_cycle(d, pending, bad_task, e);
    free(pending);
    return rc;
}

/* Resolves upstream ids to indexes and builds the downstream lists. */
static remex_err link_tasks(struct dag *d, const size_t *sorted, size_t *bad_task,
                            struct remex_error *e)
{
    size_t *ndown = calloc(d->ntasks, sizeof(size_t));
    if (ndown == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    for (size_t i = 0; i < d->ntasks; i++) {
        struct dag_task *t = &d->tasks[i];
        if (t->upstream.n == 0)
            continue;
        t->upstream_idx = calloc(t->upstream.n, sizeof(size_t));
        if (t->upstream_idx == NULL) {
            free(ndown);
            return remex_seterr(e, REMEX_ENOMEM, "out of memory");
        }
        for (size_t j = 0; j < t->upstream.n; j++) {
            long u = lookup(d, sorted, t->upstream.v[j]);
            const char *why = u < 0            ? "unknown task"
                              : (size_t)u == i ? "task depends on itself"
                                               : NULL;
            for (size_t k = 0; why == NULL && k < j; k++)
                if (t->upstream_idx[k] == (size_t)u)
                    why = "duplicate upstream";
            if (why != NULL) {
                char pk[64];
                free(ndown);
                printable_key(t->upstream.v[j], pk, sizeof(pk));
                if (bad_task != NULL)
                    *bad_task = i;
                return remex_seterr(e, REMEX_EINVAL, "tasks[%zu].upstream[%zu]: %s '%s'", i, j, why,
                                    pk);
            }
            t->upstream_idx[j] = (size_t)u;
            ndown[u]++;
        }
    }
    for (size_t i = 0; i < d->ntasks; i++) {
        if (ndown[i] == 0)
            continue;
        d->tasks[i].downstream_idx = calloc(ndown[i], sizeof(size_t));
        if (d->tasks[i].downstream_idx == NULL) {
            free(ndown);
            return remex_seterr(e, REMEX_ENOMEM, "out of memory");
        }
    }
    free(ndown);
    for (size_t i = 0; i < d->ntasks; i++) {
        const struct dag_task *t = &d->tasks[i];
        for (size_t j = 0; j < t->upstream.n; j++) {
            struct dag_task *u = &d->tasks[t->upstream_idx[j]];
            u->downstream_idx[u->ndownstream++] = i;
        }
    }
    return REMEX_OK;
}

static void unlink_tasks(struct dag *d)
{
    for (size_t i = 0; i < d->ntasks; i++) {
        free(d->tasks[i].upstream_idx);
        free(d->tasks[i].downstream_idx);
        d->tasks[i].upstream_idx = d->tasks[i].downstream_idx = NULL;
        d->tasks[i].ndownstream = 0;
    }
    free(d->topo);
    d->topo = NULL;
}

static remex_err validate_dag_fields(struct dag *d, struct remex_error *e)
{
    struct remex_error sub = {0};
    if (!dag_id_valid(d->dag_id))
        return remex_seterr(e, REMEX_EINVAL, "dag_id: expected id matching [A-Za-z0-9_.-]{1,250}");
    if (d->fileloc[0] == '\0' || strlen(d->fileloc) > 4096)
        return remex_seterr(e, REMEX_EINVAL, "fileloc: expected a path of 1..4096 bytes");
    if (d->schedule != NULL) {
        if (cron_parse(&d->cron, d->schedule, &sub) != REMEX_OK)
            return remex_seterr(e, REMEX_EINVAL, "schedule: %s", sub.msg);
        if (d->start_date_ms == DAG_UNSET)
            return remex_seterr(e, REMEX_EINVAL, "start_date: required when schedule is set");
    }
    if (d->start_date_ms != DAG_UNSET && d->end_date_ms != DAG_UNSET &&
        d->end_date_ms < d->start_date_ms)
        return remex_seterr(e, REMEX_EINVAL, "end_date: before start_date");
    for (size_t i = 0; i < d->tags.n; i++)
        if (d->tags.v[i][0] == '\0' || strlen(d->tags.v[i]) > 100)
            return remex_seterr(e, REMEX_EINVAL, "tags[%zu]: expected 1..100 bytes", i);
    if (d->ntasks == 0)
        return remex_seterr(e, REMEX_EINVAL, "tasks: expected at least one task");
    if (d->ntasks > DAG_TASKS_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "tasks: more than %d tasks", DAG_TASKS_MAX);
    return REMEX_OK;
}

remex_err dag_validate(struct dag *d, size_t *bad_task, struct remex_error *e)
{
    return validate_keep(d, bad_task, NULL, e);
}

/* dag_validate; *keep (when not NULL) takes the canonical text the hash was made of. */
static remex_err validate_keep(struct dag *d, size_t *bad_task, char **keep, struct remex_error *e)
{
    remex_err rc;
    size_t *sorted = NULL;

    if (bad_task != NULL)
        *bad_task = (size_t)-1;
    unlink_tasks(d);
    if ((rc = validate_dag_fields(d, e)) != REMEX_OK)
        return rc;
    for (size_t i = 0; i < d->ntasks; i++) {
        if ((rc = validate_task_fields(&d->tasks[i], i, e)) != REMEX_OK) {
            if (bad_task != NULL)
                *bad_task = i;
            return rc;
        }
    }
    sorted = calloc(d->ntasks, sizeof(size_t));
    if (sorted == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    for (size_t i = 0; i < d->ntasks; i++)
        sorted[i] = i;
    qsort_r(sorted, d->ntasks, sizeof(size_t), idx_cmp, d);
    for (size_t i = 1; i < d->ntasks; i++) {
        if (strcmp(d->tasks[sorted[i]].task_id, d->tasks[sorted[i - 1]].task_id) == 0) {
            size_t dup = sorted[i] > sorted[i - 1] ? sorted[i] : sorted[i - 1];
            if (bad_task != NULL)
                *bad_task = dup;
            free(sorted);
            return remex_seterr(e, REMEX_EINVAL, "tasks[%zu].task_id: duplicate task id '%s'", dup,
                                d->tasks[dup].task_id);
        }
    }
    rc = link_tasks(d, sorted, bad_task, e);
    free(sorted);
    if (rc == REMEX_OK)
        rc = order_tasks(d, bad_task, e);
    if (rc == REMEX_OK)
        rc = finish_hash(d, keep, e);
    if (rc != REMEX_OK)
        unlink_tasks(d);
    return rc;
}
