/*
 * agentcfg: the one configuration of the agent (agent.yaml).
 *
 * Every role (and the supervisor) loads the whole file with this table and
 * validates the whole file, so that `--check` of any of them gives the same
 * verdict. Shared sections: plane, state_dir, logs, bundles, secrets, xcom.
 * One section per role: worker, triggerer; dag_processor, sentinel and agent
 * are reserved for the roles this version does not include (a mapping is
 * accepted there and named in a warning, never silently read).
 *
 * Derived defaults, applied by agentcfg_load after every source:
 *   worker.state_dir  <state_dir>/worker
 *   worker.log_level  logs.level      worker.log_format  logs.format
 *   triggerer.state_dir  <state_dir>/triggerer
 *   triggerer.log_level  logs.level   triggerer.log_format  logs.format
 *   xcom.store        file://<absolute state_dir>/xcom
 *
 * Every key is overridable from the environment (cfg.h): worker.slots ->
 * REMEX_WORKER_SLOTS. docs/configuration.md documents the keys.
 */
#ifndef REMEX_AGENTCFG_H
#define REMEX_AGENTCFG_H

#include <stdint.h>

#include "remex/buf.h"
#include "remex/cfg.h"

/* worker.task_defaults.memory_enforcement */
enum agentcfg_memenf {
    AGENTCFG_MEM_AUTO = 0, /* cgroup2, else cgroup1, else rlimit */
    AGENTCFG_MEM_CGROUP2,
    AGENTCFG_MEM_CGROUP1,
    AGENTCFG_MEM_RLIMIT,
};
/* Indexed by enum agentcfg_memenf, NULL-terminated. */
extern const char *const agentcfg_memenf_names[];

struct agentcfg_bundle {
    char *name;
    char *path;
};

struct agentcfg_worker {
    char *name;
    struct cfg_strlist queues;
    int64_t slots; /* 0: number of CPUs */
    char *state_dir;
    char *log_dir;
    uint64_t log_max_bytes;
    uint64_t poll_wait_ms;
    uint64_t drain_grace_ms;
    uint64_t grace_ms;      /* task_defaults.grace_period: SIGTERM -> SIGKILL */
    uint64_t memory_limit;  /* bytes, 0: none */
    int memory_enforcement; /* enum agentcfg_memenf */
    uint64_t cpu_time_ms;   /* 0: none */
    int64_t max_processes;  /* 0: none (RLIMIT_NPROC counts per uid) */
    int64_t open_files;     /* 0: none */
    char *cgroup_parent;    /* cgroup v2 parent of per-task cgroups */
    char *socket_dir;       /* parent of the task socket folder; NULL: automatic */
    char *log_level;
    char *log_format;
};

struct agentcfg_triggerer {
    char *name;
    int64_t capacity; /* triggers held at once */
    char *state_dir;
    uint64_t poll_wait_ms;
    uint64_t default_timeout_ms; /* a trigger without a timeout */
    uint64_t poke_ms;            /* checks of polled kinds without poke_interval */
    uint64_t http_timeout_ms;
    uint64_t drain_grace_ms;
    char *log_level;
    char *log_format;
};

/* agent.yaml after defaults, the file, REMEX_* overrides and derived defaults. */
struct agentcfg {
    struct {
        char *url;
        struct cfg_secret token;
        char *ca_file;
    } plane;
    char *state_dir;
    struct {
        char *level;
        char *format;
    } logs;
    struct cfg_list bundles; /* struct agentcfg_bundle */
    struct {
        char *file;
    } secrets;
    struct {
        char *store;
    } xcom;
    struct agentcfg_worker worker;
    struct agentcfg_triggerer triggerer;
};

extern const struct cfg_entry agentcfg_table[];

/*
 * Loads path (NULL: defaults and environment only) into cfg (zeroed or
 * released). errs may be NULL; warnings land in it too. On failure cfg is
 * released. Returns as cfg_load_file.
 */
remex_err agentcfg_load(struct agentcfg *cfg, const char *path, struct cfg_errors *errs);
void agentcfg_free(struct agentcfg *cfg);

/*
 * --check of the whole agent: the table's checks, then what only a start
 * would otherwise find out (bundle folders exist, the secrets file is
 * readable and private). Appends the verdict ("configuration OK" or one
 * "file:line:col: message" per line) to out; returns 0 or REMEX_EXIT_CONFIG.
 */
int agentcfg_check(const char *path, struct buf *out);

#endif
