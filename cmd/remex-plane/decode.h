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

#include "remex/err.h"

#define DECODE_MAX_DEPTH   64   /* arrays + objects nesting in a request body */
#define DECODE_NAME_MAX    128  /* agent and token names */
#define DECODE_STR_MAX     1024 /* free-form short strings (version, hostname, ...) */
#define DECODE_LIST_MAX    256  /* roles, queues, running, triggers, checks */
#define DECODE_SLOTS_MAX   100000
#define DECODE_OBJ_BYTES   (64 * 1024)          /* features, sysinfo, health checks serialised */
#define DECODE_EXPIRES_MAX (10LL * 365 * 86400) /* ten years, seconds */

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
    json_t *triggers;   /* array of integers (borrowed); NULL when absent */
    json_t *sysinfo;    /* object (borrowed); NULL when absent */
};
remex_err decode_heartbeat(json_t *body, struct decode_heartbeat *out, struct remex_error *e);

/* Sentinel health report: {status, checks[{name,status,message}]}. */
struct decode_health {
    const char *status; /* "ok" | "degraded" | "failing" */
    json_t *checks;     /* required array (borrowed) */
};
remex_err decode_health(json_t *body, struct decode_health *out, struct remex_error *e);

/* Token creation: {name, expires_in} (integer seconds, 1..DECODE_EXPIRES_MAX). */
struct decode_token_create {
    const char *name;
    int64_t expires_in_s;
};
remex_err decode_token_create(json_t *body, struct decode_token_create *out, struct remex_error *e);

/* States an agent may report in its heartbeat, NULL-terminated. */
extern const char *const decode_agent_states[];
/* Roles an agent may register with, NULL-terminated. */
extern const char *const decode_agent_roles[];

/* Parses a decimal int64 path parameter ("12"); -1 on anything else or <= 0. */
int64_t decode_id(const char *s);

#endif
