/*
 * Request body decoding for remex-plane: bounded JSON parsing and the pure
 * field decoders of the agent and token routes. No I/O, no locks, no global
 * state: test/fuzz/fuzz_plane_body.c includes decode.c directly.
 *
 * Errors name the field ("running[2].try_number: expected integer") and are
 * written to e; the caller replies 400 bad_request with that message.
 * Decoded structs borrow their strings and arrays from the json_t they came
 * from: keep the body alive while using them.
 */
#ifndef REMEX_PLANE_DECODE_H
#define REMEX_PLANE_DECODE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "remex/buf.h"
#include "remex/err.h"

/* Trigger ids a heartbeat may list (body_max bounds it too). */
#define DECODE_TRIGGERS_MAX 1000000
#define DECODE_MAX_DEPTH    64   /* arrays + objects nesting in a request body */
#define DECODE_NAME_MAX     128  /* agent and token names */
#define DECODE_STR_MAX      1024 /* free-form short strings (version, hostname, ...) */
#define DECODE_LIST_MAX     256  /* roles, queues, running, triggers, checks */
#define DECODE_SLOTS_MAX    100000
#define DECODE_OBJ_BYTES    (64 * 1024)          /* features, sysinfo, health checks serialised */
#define DECODE_EXPIRES_MAX  (10LL * 365 * 86400) /* ten years, seconds */

/*
 * Parses len bytes at data (need not be NUL-terminated) into *out (owned).
 * Refuses: more than max_depth nested arrays/objects (linear pre-scan, before
 * jansson recurses), "\u0000" in strings, duplicate keys, a top level that is
 * not an object. Messages carry jansson's text and position:
 * "body:1:17: invalid token near 'x'". REMEX_EPARSE or REMEX_EINVAL on error.
 */
remex_err decode_body(const char *data, size_t len, int max_depth, json_t **out,
                      struct remex_error *e);

/* Register body. Strings borrowed from the body; arrays borrowed. */
struct decode_register {
    const char *name;     /* required, 1..DECODE_NAME_MAX of [A-Za-z0-9._-] */
    json_t *roles;        /* required array of role names (borrowed); may be empty */
    const char *version;  /* required */
    const char *hostname; /* optional ("" when absent) */
    json_t *queues;       /* required array of strings (borrowed) */
    int64_t slots;        /* required, 0..DECODE_SLOTS_MAX */
    json_t *features;     /* object (borrowed); NULL when absent */
};
remex_err decode_register(json_t *body, struct decode_register *out, struct remex_error *e);

/* Heartbeat body. */
struct decode_heartbeat {
    const char *state;  /* required: one of decode_agent_states */
    int64_t free_slots; /* required, 0..DECODE_SLOTS_MAX */
    json_t *running;    /* array of {ti_id, try_number >= 1} (borrowed); NULL when absent */
    json_t *triggers;   /* array of up to DECODE_TRIGGERS_MAX ids (borrowed); NULL when absent */
    json_t *sysinfo;    /* object (borrowed); NULL when absent */
};
remex_err decode_heartbeat(json_t *body, struct decode_heartbeat *out, struct remex_error *e);

/* Sentinel health report: {status, checks[{name,status,message}]}. */
struct decode_health {
    const char *status; /* "ok" | "degraded" | "failing" */
    json_t *checks;     /* required array (borrowed) */
};
remex_err decode_health(json_t *body, struct decode_health *out, struct remex_error *e);

/* Token creation: {name, expires_in (integer seconds, 1..DECODE_EXPIRES_MAX),
 * roles, queues}. roles: optional non-empty array of decode_agent_roles
 * (absent: all); queues: optional non-empty array of queue names (absent:
 * every queue). */
struct decode_token_create {
    const char *name;
    int64_t expires_in_s;
    unsigned roles; /* bit i: decode_agent_roles[i] */
    json_t *queues; /* borrowed; NULL: every queue */
};
#define DECODE_ROLES_ALL 15u
remex_err decode_token_create(json_t *body, struct decode_token_create *out, struct remex_error *e);

/* Admin change of an agent: {desired_state}. */
struct decode_agent_patch {
    const char *desired_state; /* required: one of decode_desired_states */
};
remex_err decode_agent_patch(json_t *body, struct decode_agent_patch *out, struct remex_error *e);

/*
 * Bulk DAG upload (POST /api/v1/dags/bulk): {bundle: {name, version}, dags:
 * [DAG JSON, ...]}. bundle optional (name and version "" when absent), each
 * at most DECODE_BUNDLE_STR_MAX bytes; dags 1..DECODE_BULK_DAGS_MAX objects,
 * each decoded and validated by the route (dag_from_json_value), item by
 * item. The body as a whole is capped by the plane's body_max.
 */
#define DECODE_BULK_DAGS_MAX  1000
#define DECODE_BUNDLE_STR_MAX 256
struct decode_dags_bulk {
    const char *bundle;  /* borrowed; "" when absent */
    const char *version; /* borrowed; "" when absent */
    json_t *dags;        /* borrowed array of objects */
};
remex_err decode_dags_bulk(json_t *body, struct decode_dags_bulk *out, struct remex_error *e);

/* Desired states the plane can ask of an agent ("run", "drain", "maintenance"), NULL-terminated. */
extern const char *const decode_desired_states[];
/* States an agent may report in its heartbeat, NULL-terminated. */
extern const char *const decode_agent_states[];
/* Roles an agent may register with, NULL-terminated; role i is bit 1 << i
 * (the order of enum plane_role). */
extern const char *const decode_agent_roles[];
/* Bits of the known role names in the array roles (others ignored). */
unsigned decode_role_mask(json_t *roles);
/* New array of the role names of mask (owned). */
json_t *decode_role_names(unsigned mask);

/*
 * The keys a request body may carry, route by route (docs/api/openapi.yaml:
 * every request schema is closed, additionalProperties: false). A field whose
 * value is a closed object, or an array of closed objects, lists the keys
 * allowed inside; other values (free-form objects such as sysinfo, conf or
 * the DAG JSON, scalars, arrays of scalars) are not looked into.
 */
enum decode_kind {
    DECODE_ANY = 0, /* any value: its type is checked by the route's decoder */
    DECODE_OBJ,     /* a closed object: keys in sub */
    DECODE_ARR_OBJ, /* an array whose object items are closed: keys in sub */
};
struct decode_field {
    const char *name;
    enum decode_kind kind;
    const struct decode_field *sub; /* DECODE_OBJ, DECODE_ARR_OBJ; {NULL}-ended */
};
struct decode_route_body {
    const char *method;
    const char *pattern;               /* the route pattern, as served */
    const struct decode_field *fields; /* {NULL}-ended */
};
/* Every route that takes a body, {NULL}-ended. */
extern const struct decode_route_body decode_route_bodies[];

/* The allowed keys of method + pattern's body; an empty list for a route
 * without a body (any key is then unknown). */
const struct decode_field *decode_body_fields(const char *method, const char *pattern);

/*
 * Refuses a key of body not in fields, at the top level and inside closed
 * objects: "free_slotz: unknown field", "running[0].tryn: unknown field".
 * Values of the wrong type are left to the route's decoder. REMEX_EINVAL.
 */
remex_err decode_known_fields(json_t *body, const struct decode_field *fields,
                              struct remex_error *e);

/* Appends one line per route with a body: "METHOD PATTERN key key.sub key[].sub ...". */
remex_err decode_bodies_print(struct buf *out);

/* Parses a decimal int64 path parameter ("12"); -1 on anything else or <= 0. */
int64_t decode_id(const char *s);

#endif
