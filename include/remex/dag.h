/*
 * dag: the DAG model, its canonical JSON form, trigger rules and retry delays.
 *
 * The DAG JSON (docs/dag-format.md) is the contract between the dag-processor
 * / `remexctl dags push` and the plane. dag_from_json decodes it strictly
 * (unknown keys, wrong types and out-of-range values are refused with the
 * field path, e.g. "tasks[2].retries: expected integer >= 0"), fills every
 * default, validates (dag_validate) and computes the content hash.
 * dag_to_json writes the canonical form: every key present, keys sorted,
 * compact, durations as seconds (integers when whole, else up to 3 decimals),
 * times as RFC 3339 UTC, other reals (in params, trigger) with 15 significant
 * digits. Decoding canonical JSON and encoding it again gives
 * the same bytes; the hash is the SHA-256 hex of those bytes.
 *
 * Caps: DAG_JSON_MAX bytes of JSON, DAG_TASKS_MAX tasks, ids match
 * [A-Za-z0-9_.-]{1,250}, durations 0..DAG_SECONDS_MAX seconds, stored as
 * milliseconds (finer fractions are rounded to the millisecond).
 *
 * Ownership: a struct dag and everything it points to are owned by the dag and
 * released by dag_free. json_t members (params, trigger) are owned by the dag:
 * callers may read them (borrowed) but must not decref or modify them.
 * A dag is immutable after decoding; concurrent readers are safe.
 */
#ifndef REMEX_DAG_H
#define REMEX_DAG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "remex/cron.h"
#include "remex/err.h"

/* 8 MiB: a 10,000-task DAG of up to ~830 canonical bytes a task (a task with
 * only an id and a command is ~390: every default is written out). */
#define DAG_JSON_MAX    (8 * 1024 * 1024)
#define DAG_TASKS_MAX   10000
#define DAG_ID_MAX      250
#define DAG_SECONDS_MAX 1000000000LL /* ~31 years */
#define DAG_HASH_HEX    65           /* 64 hex digits + NUL */

/* Marks an absent optional number (JSON null). */
#define DAG_UNSET INT64_MIN

enum dag_trigger_rule {
    DAG_TR_ALL_SUCCESS = 0,
    DAG_TR_ALL_FAILED,
    DAG_TR_ALL_DONE,
    DAG_TR_ALL_SKIPPED,
    DAG_TR_ONE_SUCCESS,
    DAG_TR_ONE_FAILED,
    DAG_TR_ONE_DONE,
    DAG_TR_NONE_FAILED,
    DAG_TR_NONE_SKIPPED,
    DAG_TR_NONE_FAILED_MIN_ONE_SUCCESS,
    DAG_TR_ALWAYS,
    DAG_TR__COUNT
};

/* "all_success", ...; "?" when out of range. */
const char *dag_trigger_rule_name(enum dag_trigger_rule r);
/* 0 and *out set on success, -1 for an unknown name. */
int dag_trigger_rule_parse(const char *s, enum dag_trigger_rule *out);

/*
 * Task instance states (Airflow names). DAG_TI_NONE is Airflow's null state: the
 * instance exists and waits for its dependencies.
 */
enum dag_ti_state {
    DAG_TI_NONE = 0,
    DAG_TI_SCHEDULED,
    DAG_TI_QUEUED,
    DAG_TI_OFFERED,
    DAG_TI_RUNNING,
    DAG_TI_DEFERRED,
    DAG_TI_UP_FOR_RETRY,
    DAG_TI_SUCCESS,
    DAG_TI_FAILED,
    DAG_TI_SKIPPED,
    DAG_TI_UPSTREAM_FAILED,
    DAG_TI_REMOVED,
    DAG_TI__COUNT
};

/* "none", "scheduled", ..., "removed"; "?" when out of range. */
const char *dag_state_name(enum dag_ti_state s);
/* 0 and *out set on success, -1 for an unknown name. */
int dag_state_parse(const char *s, enum dag_ti_state *out);
/* success, failed, skipped, upstream_failed, removed. */
int dag_state_is_terminal(enum dag_ti_state s);

/*
 * States of a task's direct upstream task instances. done counts the terminal
 * ones (success + failed + upstream_failed + skipped + removed).
 */
struct dag_upstream_counts {
    unsigned total;
    unsigned success;
    unsigned failed;
    unsigned upstream_failed;
    unsigned skipped;
    unsigned removed;
    unsigned done;
};

enum dag_rule_decision {
    DAG_RULE_WAIT = 0,        /* not yet decidable, or never runnable as is */
    DAG_RULE_RUN,             /* dependencies met */
    DAG_RULE_SKIP,            /* the task becomes skipped */
    DAG_RULE_UPSTREAM_FAILED, /* the task becomes upstream_failed */
};

/*
 * Airflow's TriggerRuleDep with flag_upstream_failed, for an unmapped task.
 * A task without upstreams (total == 0) and the rule `always` run at once.
 * As in Airflow, a removed upstream counts as done but not as a success, so
 * e.g. all_success then waits forever: the caller detects such a run as
 * deadlocked (no task runnable, none running). Pure function.
 */
enum dag_rule_decision dag_rule_eval(enum dag_trigger_rule r, const struct dag_upstream_counts *c);

struct dag_strv {
    char **v;
    size_t n;
};

struct dag_kv {
    char *key;
    char *value;
};

/* Resource limits of a task process; DAG_UNSET = no limit. */
struct dag_limits {
    int64_t memory;      /* bytes */
    int64_t cpu_time_ms; /* CPU time, milliseconds */
    int64_t processes;
    int64_t open_files;
};

#define DAG_DEFAULT_POOL "default_pool"

struct dag_task {
    char *task_id;
    int has_command;         /* command is a list (possibly empty) rather than null */
    struct dag_strv command; /* argv */
    char *shell;             /* NULL = null */
    struct dag_kv *env;      /* sorted by key, unique keys */
    size_t nenv;
    struct dag_strv upstream; /* task ids, in the order given */
    enum dag_trigger_rule trigger_rule;
    int64_t retries;
    int64_t retry_delay_ms;
    int retry_exponential_backoff;
    int64_t max_retry_delay_ms;   /* DAG_UNSET = none */
    int64_t execution_timeout_ms; /* DAG_UNSET = none */
    char *queue;
    int64_t priority_weight;
    int64_t pool_slots;
    char *pool; /* named pool (Airflow's); NULL: DAG_DEFAULT_POOL */
    struct dag_strv connections;
    struct dag_strv variables;
    struct dag_limits limits;
    json_t *trigger; /* owned object or NULL; has "type" (string) and "timeout" */

    /* Filled by dag_validate: indexes into dag.tasks. */
    size_t *upstream_idx; /* upstream.n entries */
    size_t *downstream_idx;
    size_t ndownstream;
};

struct dag {
    char *dag_id;
    char *fileloc;
    char *description;     /* NULL = null */
    char *schedule;        /* NULL = manual runs only */
    struct cron cron;      /* parsed schedule when schedule != NULL */
    int64_t start_date_ms; /* DAG_UNSET = null */
    int64_t end_date_ms;   /* DAG_UNSET = null */
    int catchup;
    int64_t max_active_runs;
    int64_t max_active_tasks;
    int64_t dagrun_timeout_ms; /* DAG_UNSET = none */
    json_t *params;            /* owned object */
    struct dag_strv tags;
    struct dag_task *tasks;
    size_t ntasks;

    /* Filled by dag_validate. */
    size_t *topo; /* ntasks task indexes, every task after its upstreams */
    char hash[DAG_HASH_HEX];
};

/*
 * Decodes, validates and hashes DAG JSON text (at most DAG_JSON_MAX bytes;
 * duplicate keys refused). *out is owned by the caller (dag_free).
 * REMEX_EPARSE for malformed JSON, REMEX_EINVAL for a wrong field (message is
 * "path: reason"), REMEX_ETOOBIG for caps, REMEX_ENOMEM.
 */
remex_err dag_from_json(const char *text, size_t len, struct dag **out, struct remex_error *e);

/* Same from a parsed object (borrowed; nothing is retained from it). */
remex_err dag_from_json_value(const json_t *obj, struct dag **out, struct remex_error *e);

/*
 * Same as dag_from_json_value; on a task-level error *bad_task (when not NULL)
 * is the index of the task at fault, else (size_t)-1.
 */
remex_err dag_from_json_value_ex(const json_t *obj, struct dag **out, size_t *bad_task,
                                 struct remex_error *e);

/*
 * Same as dag_from_json_value_ex; *canonical (owned: free()) also takes the
 * canonical JSON text the hash was made of (what dag_to_json would give),
 * NULL on error. For a caller that stores that text: no second encoding.
 */
remex_err dag_from_json_value_canon(const json_t *obj, struct dag **out, size_t *bad_task,
                                    char **canonical, struct remex_error *e);

/* Canonical JSON text, NUL-terminated, owned by the caller (free()). len may be NULL. */
remex_err dag_to_json(const struct dag *d, char **out, size_t *len, struct remex_error *e);

/* Canonical JSON value of the DAG / of one task: owned by the caller (json_decref). NULL on ENOMEM.
 */
json_t *dag_to_json_value(const struct dag *d);
json_t *dag_task_to_json_value(const struct dag_task *t);

/*
 * Checks the invariants (ids, unique task ids, upstreams exist, no cycle,
 * command xor shell unless trigger, schedule parses, caps) and fills
 * upstream_idx, downstream_idx, topo and hash. On a task-level error and when
 * bad_task is not NULL, *bad_task is the index of the task at fault, else
 * (size_t)-1. A cycle is reported as "tasks: cycle a -> b -> a".
 */
remex_err dag_validate(struct dag *d, size_t *bad_task, struct remex_error *e);

/*
 * Delay before the next try after try try_number (1-based) failed, in ms:
 * retry_delay, or with exponential backoff retry_delay * 2^(try_number-1)
 * capped by max_retry_delay and by 24 h. Overflow-safe.
 */
int64_t dag_retry_delay_ms(const struct dag_task *t, int64_t try_number);

/* Checks an id against [A-Za-z0-9_.-]{1,250}. Returns 1 when valid. */
int dag_id_valid(const char *id);

/* Releases d and everything it owns. NULL is a no-op. */
void dag_free(struct dag *d);

#endif
