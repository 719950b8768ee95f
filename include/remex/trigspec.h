/*
 * trigspec: the trigger spec of a deferrable task (the `trigger:` of a DAG
 * task, or `remex-task defer --trigger JSON`), parsed and checked.
 *
 * One parser for both places that read specs: DAG validation (lib/dag.c:
 * kinds and field types, templates left as they are) and remex-triggerer
 * (specs that came from the plane: string fields expanded with the run's
 * template variables first, then their values checked).
 *
 * Kinds and fields (docs/dag-format.md):
 *   common       type, timeout (s), on_timeout (fail|skip), poke_interval (s),
 *                resume_with (a run-time deferral's name for the resumed try)
 *   timer        delta (s or "5m") | at (RFC 3339)                 exactly one
 *   file         path (absolute path or glob), non_empty (bool)
 *   http         url, method (GET|HEAD), status (100..599, default 200),
 *                json_path (dotted: "a.b.0.c"), json_value (any), connection
 *   object_key   key | prefix (in the agent's object store)        exactly one
 *   external_run dag_id, run_id (default: the same run_id), task_id,
 *                state (default success)
 * Unknown keys are refused, so a misspelt field never silently changes what a
 * task waits for.
 *
 * Caps: TRIGSPEC_STR_MAX bytes per string (after expansion), TRIGSPEC_KEYS_MAX
 * keys, json_value serialised at most TRIGSPEC_STR_MAX bytes. Durations
 * 0..TRIGSPEC_SECONDS_MAX seconds.
 */
#ifndef REMEX_TRIGSPEC_H
#define REMEX_TRIGSPEC_H

#include <jansson.h>
#include <stdint.h>

#include "remex/err.h"
#include "remex/tmpl.h"

#define TRIGSPEC_STR_MAX     4096
#define TRIGSPEC_KEYS_MAX    16
#define TRIGSPEC_SECONDS_MAX (366LL * 86400LL)

enum trigspec_kind {
    TRIGSPEC_TIMER = 0,
    TRIGSPEC_FILE,
    TRIGSPEC_HTTP,
    TRIGSPEC_OBJECT_KEY,
    TRIGSPEC_EXTERNAL_RUN,
    TRIGSPEC__COUNT,
};

/* Static name of a kind ("timer"); "?" out of range. */
const char *trigspec_kind_name(enum trigspec_kind k);

/* Every string is owned by the spec (NULL when absent); trigspec_free releases them. */
struct trigspec {
    enum trigspec_kind kind;
    int64_t timeout_ms; /* -1: none (the holder's default applies) */
    int on_timeout_skip;
    int64_t poke_ms; /* -1: the holder's default */
    /* timer: one of */
    int64_t delta_ms; /* -1 unset */
    int64_t at_ms;    /* epoch ms, INT64_MIN unset */
    /* file */
    char *path;
    int non_empty;
    /* http */
    char *url;
    char *method; /* "GET" or "HEAD" */
    long status;
    char *json_path;
    json_t *json_value; /* owned, NULL: any value at json_path (presence) */
    char *connection;
    /* object_key */
    char *key;
    int prefix; /* key is a prefix */
    /* external_run */
    char *dag_id;
    char *run_id;
    char *task_id;
    char *state;
};

/*
 * Parses spec (borrowed) into out (zeroed by the call; trigspec_free it, also
 * on failure). vars NULL: DAG validation (strings are not expanded, and
 * value checks are skipped for strings holding "{{"). vars given: each string
 * field is expanded first, then checked. Errors (e: "trigger.FIELD: ..."):
 * REMEX_EINVAL malformed, REMEX_ETOOBIG over a cap, REMEX_ENOMEM.
 */
remex_err trigspec_parse(const json_t *spec, const struct tmpl_task_vars *vars,
                         struct trigspec *out, struct remex_error *e);
void trigspec_free(struct trigspec *t);

/* ---- the trigger poll's reply (POST /api/v1/triggers/poll) ---- */

#define TRIGSPEC_POLL_MAX    1000 /* items per reply (the plane's cap) */
#define TRIGSPEC_CTX_STR_MAX 1024 /* context strings (dag_id, run_id, task_id) */

/* One item of a poll reply. Every pointer is borrowed from the reply. */
struct trigspec_item {
    int64_t trigger_id, ti_id;  /* > 0 */
    const json_t *spec;         /* the spec object (trigspec_parse it with vars) */
    int64_t created_ms;         /* epoch ms, INT64_MIN when null */
    int64_t timeout_at_ms;      /* epoch ms, INT64_MIN when null */
    struct tmpl_task_vars vars; /* the run's template variables, from "context" */
};

/*
 * Checks a poll reply's envelope: an object whose "triggers" is an array of
 * at most TRIGSPEC_POLL_MAX items; *items (borrowed) is that array.
 * REMEX_EPROTO "reply.triggers: ..." otherwise.
 */
remex_err trigspec_poll_reply(const json_t *reply, json_t **items, struct remex_error *e);
/*
 * Decodes item number i of a reply into out (zeroed first): trigger_id and
 * ti_id positive integers, spec an object, timeout_at and created_at RFC 3339
 * or null, context an object (dag_id, run_id, task_id strings of at most
 * TRIGSPEC_CTX_STR_MAX bytes; try_number, map_index integers; logical_date,
 * data_interval_start/end RFC 3339 or null; params and conf objects or null).
 * REMEX_EPROTO "triggers[i].FIELD: ..." otherwise; out->trigger_id is set
 * as soon as it was read (0 before), so that the caller can report a failure
 * for the trigger instead of dropping it.
 */
remex_err trigspec_poll_item(const json_t *item, size_t i, struct trigspec_item *out,
                             struct remex_error *e);

#endif
