/*
 * agentcfg: the one configuration of the agent (agent.yaml).
 *
 * Every role (and the supervisor) loads the whole file with this table and
 * validates the whole file, so that `--check` of any of them gives the same
 * verdict. Shared sections: plane, state_dir, logs, bundles, secrets, xcom.
 * One section per role: worker, dag_processor, triggerer, sentinel, and agent
 * (the supervisor, with its workers[] instances). The cfg type CFG_RESERVED
 * keeps a section for a part a version does not include (accepted, named in a
 * warning, never silently read); this version has none.
 *
 * Derived defaults, applied by agentcfg_load after every source:
 *   worker.state_dir  <state_dir>/worker
 *   worker.log_level  logs.level      worker.log_format  logs.format
 *   sentinel.agent_socket  <state_dir>/agent.sock
 *   sentinel.log_level logs.level     sentinel.log_format logs.format
 *   dag_processor.state_dir  <state_dir>/dag_processor (and log_level, log_format as worker's)
 *   triggerer.state_dir  <state_dir>/triggerer
 *   triggerer.log_level  logs.level   triggerer.log_format  logs.format
 *   xcom.store        file://<absolute state_dir>/xcom
 *   agent.control_socket  <state_dir>/agent.sock
 *
 * Every key is overridable from the environment (cfg.h): worker.slots ->
 * REMEX_WORKER_SLOTS. docs/configuration.md documents the keys.
 */
#ifndef REMEX_AGENTCFG_H
#define REMEX_AGENTCFG_H

#include <stdbool.h>
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

/* One bundle: local (path) or git (url, tracking_ref, subdir, refresh_interval, token or
 * ssh_key, ssh_passphrase, ssh_agent, known_hosts). */
struct agentcfg_bundle {
    char *name;
    char *path;
    bool versioned; /* false: tasks run in the folder as it is, whatever their version */
    char *url;
    char *tracking_ref;
    char *subdir;
    uint64_t refresh_ms;
    struct cfg_secret token;
    char *ssh_key;
    struct cfg_secret ssh_passphrase;
    bool ssh_agent;
    char *known_hosts;
};

struct agentcfg_dag_processor {
    char *name;
    char *state_dir;       /* file-hash caches */
    uint64_t refresh_ms;   /* rescan interval of local bundles */
    int64_t keep_versions; /* git checkouts kept (newest first) */
    char *log_level;
    char *log_format;
    char *listen; /* its /healthz, /livez and /metrics ("127.0.0.1:9466"); NULL: none */
    uint64_t parse_timeout_ms; /* CPU time cap of one DAG file's parse */
    uint64_t reconcile_ms;     /* an unchanged manifest is sent again after this long */
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
    char *listen; /* /healthz, /livez, /metrics of this worker ("127.0.0.1:9465"); NULL: none */
};

/* One entry of workers: a worker instance of its own (remex-agent starts one per entry). */
struct agentcfg_instance {
    char *name;                /* instance and agent name */
    struct cfg_strlist queues; /* empty: worker.queues */
    int64_t slots;             /* 0: worker.slots */
};

/* agent: the supervisor (remex-agent). */
struct agentcfg_agent {
    struct cfg_strlist roles; /* roles started, in order */
    char *control_socket;     /* default: <state_dir>/agent.sock */
    uint64_t stop_grace_ms;   /* SIGTERM -> SIGKILL of a role's group on a forced stop */
    uint64_t restart_ms;      /* first restart delay (doubles up to 60 times it, capped 60 s) */
    struct cfg_list workers;  /* struct agentcfg_instance; empty: one worker from worker.* */
};

/* sentinel.roles[]: a role running in its own container, watched through its /healthz. */
struct agentcfg_sentinel_role {
    char *name; /* "worker", "triggerer-1": the role label of its metrics */
    char *url;  /* http(s)://host:port/healthz */
};

struct agentcfg_sentinel {
    char *name;             /* agent name registered with the plane */
    char *listen;           /* /health and /metrics: "127.0.0.1:9464", "[::1]:9464" */
    char *agent_socket;     /* the supervisor's control socket */
    struct cfg_list roles;  /* struct agentcfg_sentinel_role; empty: the control socket */
    uint64_t interval_ms;   /* checks and reports; 0: the plane's heartbeat interval */
    int64_t disk_warn_pct;  /* free space below this percentage: warn */
    int64_t disk_fail_pct;  /* free space below this percentage: fail */
    uint64_t token_warn_ms; /* token expiring within this: warn */
    char *token_expires_at; /* RFC 3339, as `remexctl tokens create` printed it; NULL: unknown */
    uint64_t rtt_warn_ms;   /* plane round trip above this: warn */
    uint64_t tls_warn_ms;   /* plane certificate expiring within this: warn */
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
    char *listen; /* its /healthz, /livez and /metrics ("127.0.0.1:9467"); NULL: none */
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
        char *store;                 /* object store URI for task logs; NULL: local files only */
        uint64_t upload_interval_ms; /* 0: upload when the try ends only */
        uint64_t local_retention_ms; /* 0: keep local copies; else remove this long after upload */
        int stdout_format;           /* index into agentcfg_logs_stdout_names: none, json */
    } logs;
    struct cfg_list bundles; /* struct agentcfg_bundle */
    struct {
        char *file;
        struct cfg_strlist backends; /* order of the chain; empty: env, file, vault */
        uint64_t cache_ttl_ms;
        struct {
            char *url;
            char *mount;
            int64_t kv_version;
            char *namespace_;
            struct cfg_secret token; /* value, {file: PATH} (re-read when refused) or {env: VAR} */
            char *role_id;
            struct cfg_secret secret_id;
            char *approle_mount;
            char *k8s_role;
            char *k8s_jwt_file;
            char *k8s_mount;
            char *connections_path;
            char *variables_path;
            char *ca_file;
        } vault;
        /* AWS Secrets Manager ([0]) and SSM Parameter Store ([1]): on when named in backends */
        struct agentcfg_aws_secrets {
            char *region;
            char *endpoint;
            char *profile;
            char *credentials_file;
            char *connections_prefix;
            char *variables_prefix;
        } aws[2];
        struct {
            char *project; /* on when backends names gcp_secret_manager */
            char *key_file;
            char *endpoint;
            char *token_uri;
            char *connections_prefix;
            char *variables_prefix;
        } gcp;
        struct {
            char *vault_url; /* on when backends names azure_key_vault */
            char *tenant_id;
            char *client_id;
            struct cfg_secret client_secret;
            char *federated_token_file;
            char *authority;
            char *connections_prefix;
            char *variables_prefix;
        } azkv;
    } secrets;
    struct {
        char *store;
        char *ca_file; /* remote stores (XCom and logs): CA bundle */
        struct {
            char *endpoint;
            char *region;
            int path_style; /* index into agentcfg_path_style_names: auto, path, virtual */
            char *profile;
            char *credentials_file;
        } s3; /* S3 settings of both xcom.store and logs.store */
        struct {
            char *endpoint;
            struct cfg_secret account_key;
            struct cfg_secret sas_token; /* replaces account_key when set */
            char *tenant_id;             /* Entra ID workload identity (no key, no SAS) */
            char *client_id;
            char *federated_token_file;
            char *authority_host;
        } azure; /* Azure Blob settings of both stores */
        struct {
            char *key_file;
            char *endpoint;
            char *token_uri;
        } gcs;                        /* GCS settings of both stores */
        uint64_t multipart_threshold; /* S3 multipart / Azure blocks from this size on */
        uint64_t part_size;           /* S3 part / Azure block size */
    } xcom;
    struct agentcfg_worker worker;
    struct agentcfg_agent agent;
    struct agentcfg_sentinel sentinel;
    struct agentcfg_dag_processor dag_processor;
    struct agentcfg_triggerer triggerer;
};

extern const struct cfg_entry agentcfg_table[];
/* logs.stdout values, NULL-terminated: "none", "json". */
extern const char *const agentcfg_logs_stdout_names[];
/* xcom.s3.path_style values, NULL-terminated: "auto", "path", "virtual". */
extern const char *const agentcfg_path_style_names[];

struct objstore_opts;
/*
 * Fills o for the store at url from the xcom.* settings (borrowed strings of
 * c). *key (release with cfg_secret_free after the open) holds the Azure
 * account key when one is configured.
 */
remex_err agentcfg_objstore_opts(const struct agentcfg *c, const char *url, struct objstore_opts *o,
                                 char **key, struct remex_error *e);

struct secrets;
/*
 * Opens the secrets chain of the secrets section (file, Vault, order, cache).
 * Literal and environment tokens are copied into the backend and wiped here.
 */
remex_err agentcfg_secrets_open(const struct agentcfg *c, struct secrets **out,
                                struct remex_error *e);
/* The roles remex-agent knows, NULL-terminated: worker, dag-processor, triggerer, sentinel. */
extern const char *const agentcfg_role_names[];

struct bundle_spec;
/* The bundle module's spec of bundle b (borrows from c and b). */
void agentcfg_bundle_spec(const struct agentcfg *c, const struct agentcfg_bundle *b,
                          struct bundle_spec *out);

/*
 * Loads path (NULL: defaults and environment only) into cfg (zeroed or
 * released). errs may be NULL; warnings land in it too. On failure cfg is
 * released. Returns as cfg_load_file.
 */
remex_err agentcfg_load(struct agentcfg *cfg, const char *path, struct cfg_errors *errs);
void agentcfg_free(struct agentcfg *cfg);

/*
 * Applies workers[] entry `instance` to cfg->worker: name, queues and slots
 * of the entry, state_dir <worker.state_dir>/<instance>. REMEX_ENOTFOUND
 * when no entry has that name (e names the known ones).
 */
remex_err agentcfg_instance_apply(struct agentcfg *cfg, const char *instance,
                                  struct remex_error *e);

/*
 * --check of the whole agent: the table's checks, then what only a start
 * would otherwise find out (bundle folders exist, the secrets file is
 * readable and private). Appends the verdict ("configuration OK" or one
 * "file:line:col: message" per line) to out; returns 0 or REMEX_EXIT_CONFIG.
 */
int agentcfg_check(const char *path, struct buf *out);

#endif
