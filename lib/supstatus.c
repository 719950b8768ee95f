/*
 * supstatus: the supervisor's status reply (include/remex/supstatus.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "remex/supstatus.h"

static const char *const role_states[] = {"starting", "up",       "backoff",
                                          "fatal",    "stopping", "stopped"};
#define NSTATES (sizeof(role_states) / sizeof(role_states[0]))

const char *supstatus_state_name(enum supstatus_role_state s)
{
    return (size_t)s < NSTATES ? role_states[s] : "?";
}

/* Copies a string field: required or optional (null or absent gives ""). */
static remex_err get_str(const json_t *o, const char *path, const char *key, int required,
                         char *out, size_t outsz, struct remex_error *e)
{
    const json_t *v = json_object_get(o, key);
    out[0] = '\0';
    if (!v || json_is_null(v)) {
        if (required)
            return remex_seterr(e, REMEX_EPROTO, "%s%s: missing", path, key);
        return REMEX_OK;
    }
    size_t n = json_string_length(v);
    if (!json_is_string(v) || n >= outsz || memchr(json_string_value(v), '\0', n))
        return remex_seterr(e, REMEX_EPROTO, "%s%s: expected a string of at most %zu bytes", path,
                            key, outsz - 1);
    memcpy(out, json_string_value(v), n + 1);
    return REMEX_OK;
}

/* Integer field in [0, max]; null or absent gives def (or an error when required). */
static remex_err get_int(const json_t *o, const char *path, const char *key, int required,
                         int64_t def, int64_t max, int64_t *out, struct remex_error *e)
{
    const json_t *v = json_object_get(o, key);
    *out = def;
    if (!v || json_is_null(v))
        return required ? remex_seterr(e, REMEX_EPROTO, "%s%s: missing", path, key) : REMEX_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return remex_seterr(e, REMEX_EPROTO, "%s%s: expected an integer in 0..%lld", path, key,
                            (long long)max);
    *out = json_integer_value(v);
    return REMEX_OK;
}

static remex_err get_num(const json_t *o, const char *path, const char *key, double *out,
                         struct remex_error *e)
{
    const json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v || json_is_null(v))
        return REMEX_OK;
    double d = json_number_value(v);
    if (!json_is_number(v) || !isfinite(d) || d < 0)
        return remex_seterr(e, REMEX_EPROTO, "%s%s: expected a non-negative number", path, key);
    *out = d;
    return REMEX_OK;
}

static remex_err get_bool(const json_t *o, const char *path, const char *key, int *out,
                          struct remex_error *e)
{
    const json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v || json_is_null(v))
        return REMEX_OK;
    if (!json_is_boolean(v))
        return remex_seterr(e, REMEX_EPROTO, "%s%s: expected a boolean", path, key);
    *out = json_is_true(v);
    return REMEX_OK;
}

static remex_err parse_queues(const json_t *o, const char *path, struct supstatus_role *r,
                              struct remex_error *e)
{
    const json_t *q = json_object_get(o, "queues"), *v;
    size_t i;
    if (!q || json_is_null(q))
        return REMEX_OK;
    if (!json_is_array(q) || json_array_size(q) > SUPSTATUS_QUEUES_MAX)
        return remex_seterr(e, REMEX_EPROTO, "%squeues: expected at most %d strings", path,
                            SUPSTATUS_QUEUES_MAX);
    json_array_foreach(q, i, v)
    {
        size_t n = json_string_length(v);
        if (!json_is_string(v) || n == 0 || n >= SUPSTATUS_NAME_MAX ||
            memchr(json_string_value(v), '\0', n))
            return remex_seterr(e, REMEX_EPROTO, "%squeues[%zu]: expected a short string", path, i);
        memcpy(r->queues[i], json_string_value(v), n + 1);
        r->nqueues = i + 1;
    }
    return REMEX_OK;
}

static remex_err parse_role(const json_t *o, size_t idx, struct supstatus_role *r,
                            struct remex_error *e)
{
    char path[32], state[16];
    remex_err rc;
    snprintf(path, sizeof(path), "roles[%zu].", idx);
    if (!json_is_object(o))
        return remex_seterr(e, REMEX_EPROTO, "roles[%zu]: expected an object", idx);
    if ((rc = get_str(o, path, "role", 1, r->role, sizeof(r->role), e)) ||
        (rc = get_str(o, path, "instance", 0, r->instance, sizeof(r->instance), e)) ||
        (rc = get_int(o, path, "pid", 0, 0, INT32_MAX, &r->pid, e)) ||
        (rc = get_str(o, path, "state", 1, state, sizeof(state), e)) ||
        (rc = get_bool(o, path, "ready", &r->ready, e)) ||
        (rc = get_num(o, path, "uptime_s", &r->uptime_s, e)) ||
        (rc = get_int(o, path, "restarts", 0, 0, INT64_MAX, &r->restarts, e)) ||
        (rc = get_str(o, path, "last_exit", 0, r->last_exit, sizeof(r->last_exit), e)) ||
        (rc = get_int(o, path, "slots", 0, -1, 1 << 20, &r->slots, e)) ||
        (rc = get_int(o, path, "free_slots", 0, 0, 1 << 20, &r->free_slots, e)) ||
        (rc = parse_queues(o, path, r, e)))
        return rc;
    if (!r->role[0])
        return remex_seterr(e, REMEX_EPROTO, "%srole: empty", path);
    if (!r->instance[0])
        memcpy(r->instance, r->role, sizeof(r->instance));
    size_t s = 0;
    while (s < NSTATES && strcmp(state, role_states[s]) != 0)
        s++;
    if (s == NSTATES)
        return remex_seterr(e, REMEX_EPROTO, "%sstate: unknown role state", path);
    r->state = (enum supstatus_role_state)s;
    if (r->slots >= 0 && r->free_slots > r->slots)
        return remex_seterr(e, REMEX_EPROTO, "%sfree_slots: more than slots", path);
    return REMEX_OK;
}

static remex_err parse_agent(const json_t *a, struct supstatus *out, struct remex_error *e)
{
    remex_err rc;
    if (!json_is_object(a))
        return remex_seterr(e, REMEX_EPROTO, "agent: expected an object");
    if ((rc = get_int(a, "agent.", "pid", 1, 0, INT32_MAX, &out->pid, e)) ||
        (rc = get_str(a, "agent.", "state", 1, out->state, sizeof(out->state), e)) ||
        (rc = get_bool(a, "agent.", "ready", &out->ready, e)) ||
        (rc = get_num(a, "agent.", "uptime_s", &out->uptime_s, e)))
        return rc;
    return out->state[0] ? REMEX_OK : remex_seterr(e, REMEX_EPROTO, "agent.state: empty");
}

static remex_err parse(const json_t *reply, struct supstatus *out, struct remex_error *e)
{
    const json_t *ok = json_object_get(reply, "ok"), *roles, *v;
    size_t i;
    remex_err rc;
    if (!json_is_object(reply) || !json_is_boolean(ok))
        return remex_seterr(e, REMEX_EPROTO, "ok: expected a boolean");
    if (!json_is_true(ok)) {
        const char *why = json_string_value(json_object_get(reply, "error"));
        char msg[200];
        snprintf(msg, sizeof(msg), "%s", why ? why : "no reason given");
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = ' ';
        return remex_seterr(e, REMEX_EPROTO, "the supervisor refused: %s", msg);
    }
    if ((rc = parse_agent(json_object_get(reply, "agent"), out, e)))
        return rc;
    roles = json_object_get(reply, "roles");
    if (!json_is_array(roles) || json_array_size(roles) > SUPSTATUS_ROLES_MAX)
        return remex_seterr(e, REMEX_EPROTO, "roles: expected an array of at most %d",
                            SUPSTATUS_ROLES_MAX);
    json_array_foreach(roles, i, v)
    {
        if ((rc = parse_role(v, i, &out->roles[i], e)))
            return rc;
        out->nroles = i + 1;
    }
    return REMEX_OK;
}

remex_err supstatus_parse(const json_t *reply, struct supstatus *out, struct remex_error *e)
{
    memset(out, 0, sizeof(*out));
    remex_err rc = parse(reply, out, e);
    if (rc != REMEX_OK)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* Appends "sep name (state)" to msg within msgsz. */
static void name_role(char *msg, size_t msgsz, size_t *len, const struct supstatus_role *r,
                      const char *extra)
{
    if (*len >= msgsz)
        return;
    int n = snprintf(msg + *len, msgsz - *len, "%s%s %s%s%s", *len ? "; " : "", r->instance,
                     supstatus_state_name(r->state), extra[0] ? ", last " : "", extra);
    if (n > 0)
        *len += (size_t)n;
}

int supstatus_grade(const struct supstatus *s, char *msg, size_t msgsz)
{
    size_t len = 0, up = 0;
    int worst = 0;
    msg[0] = '\0';
    for (size_t pass = 2; pass >= 1; pass--) { /* fatal roles named first */
        for (size_t i = 0; i < s->nroles; i++) {
            const struct supstatus_role *r = &s->roles[i];
            int bad = r->state == SUPSTATUS_FATAL ? 2 : (r->state != SUPSTATUS_UP || !r->ready);
            if (bad != (int)pass)
                continue;
            name_role(msg, msgsz, &len, r, r->last_exit);
            if (bad > worst)
                worst = bad;
        }
    }
    for (size_t i = 0; i < s->nroles; i++)
        up += s->roles[i].state == SUPSTATUS_UP && s->roles[i].ready;
    if (!worst && len < msgsz)
        snprintf(msg, msgsz, "%zu of %zu roles up and ready", up, s->nroles);
    return worst;
}
