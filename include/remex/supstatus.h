/*
 * supstatus: the supervisor's status, as its control socket answers
 * {"cmd":"status"} (docs/sentinel.md, "Control socket"):
 *
 *   {"ok":true,
 *    "agent":{"pid":N,"state":"running|draining|stopping","ready":B,"uptime_s":X},
 *    "roles":[{"role":"worker","instance":"worker","pid":N|null,
 *              "state":"starting|up|backoff|fatal|stopping|stopped","ready":B,
 *              "uptime_s":X,"restarts":N,"last_exit":"exit 1"|"signal 9"|null,
 *              "queues":[...],"slots":N,"free_slots":N}]}
 *
 * queues, slots and free_slots are optional (a worker's capacity, when the
 * supervisor carries it). The reply comes from another process: every field
 * is checked for type and range, strings are capped, unknown fields are
 * ignored, and an unknown state is refused (REMEX_EPROTO names the field).
 * {"ok":false,"error":"..."} is REMEX_EPROTO with the supervisor's message.
 *
 * Thread-safety: touches only its arguments.
 */
#ifndef REMEX_SUPSTATUS_H
#define REMEX_SUPSTATUS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "remex/err.h"

#define SUPSTATUS_ROLES_MAX  64
#define SUPSTATUS_QUEUES_MAX 16
#define SUPSTATUS_NAME_MAX   64

enum supstatus_role_state {
    SUPSTATUS_STARTING = 0,
    SUPSTATUS_UP,
    SUPSTATUS_BACKOFF,
    SUPSTATUS_FATAL,
    SUPSTATUS_STOPPING,
    SUPSTATUS_STOPPED,
};

struct supstatus_role {
    char role[SUPSTATUS_NAME_MAX];
    char instance[SUPSTATUS_NAME_MAX];
    int64_t pid; /* 0: none */
    enum supstatus_role_state state;
    int ready;
    double uptime_s;
    int64_t restarts;
    char last_exit[SUPSTATUS_NAME_MAX]; /* "" when none */
    /* capacity, when carried (slots < 0: not carried) */
    int64_t slots;
    int64_t free_slots;
    size_t nqueues;
    char queues[SUPSTATUS_QUEUES_MAX][SUPSTATUS_NAME_MAX];
};

struct supstatus {
    int64_t pid;
    char state[16]; /* running, draining, stopping (any short string is kept) */
    int ready;
    double uptime_s;
    size_t nroles;
    struct supstatus_role roles[SUPSTATUS_ROLES_MAX];
};

/* Static name of a role state ("fatal"). */
const char *supstatus_state_name(enum supstatus_role_state s);

/* Decodes a status reply (borrowed). On error *out is zeroed and e names the field. */
remex_err supstatus_parse(const json_t *reply, struct supstatus *out, struct remex_error *e);

/*
 * Grades the roles: fail when one is fatal (naming each), warn when one is
 * not up and ready (starting, backoff, stopping, stopped), ok otherwise.
 * Returns 0 ok, 1 warn, 2 fail (enum health_status values).
 */
int supstatus_grade(const struct supstatus *s, char *msg, size_t msgsz);

#endif
