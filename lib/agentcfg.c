/*
 * agentcfg: the agent.yaml table shared by every role (include/remex/agentcfg.h).
 */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/agentcfg.h"
#include "remex/bundle.h"
#include "remex/secrets.h"

#define F(m)        offsetof(struct agentcfg, m)
#define W(m)        offsetof(struct agentcfg, worker.m)
#define D(m)        offsetof(struct agentcfg, dag_processor.m)
#define BUNDLES_MAX 256

const char *const agentcfg_memenf_names[] = {"auto", "cgroup2", "cgroup1", "rlimit", NULL};

static const struct cfg_entry bundle_table[] = {
    {.key = "name",
     .type = CFG_STRING,
     .offset = offsetof(struct agentcfg_bundle, name),
     .flags = CFG_REQUIRED,
     .desc = "Bundle name, as the DAGs' bundle.name."},
    {.key = "path",
     .type = CFG_PATH,
     .offset = offsetof(struct agentcfg_bundle, path),
     .desc = "Local bundle: its folder (tasks run in it). Set path or url."},
    {.key = "url",
     .type = CFG_STRING,
     .offset = offsetof(struct agentcfg_bundle, url),
     .desc = "Git bundle: repository URL (https://, http:// on loopback, git://, file://, path)."},
    {.key = "tracking_ref",
     .type = CFG_STRING,
     .offset = offsetof(struct agentcfg_bundle, tracking_ref),
     .def = "main",
     .desc = "Git bundle: branch, tag or full 40-hex commit SHA (pinned)."},
    {.key = "subdir",
     .type = CFG_STRING,
     .offset = offsetof(struct agentcfg_bundle, subdir),
     .desc = "Git bundle: folder of the repository that is the bundle (default: its root)."},
    {.key = "refresh_interval",
     .type = CFG_DURATION,
     .offset = offsetof(struct agentcfg_bundle, refresh_ms),
     .def = "300s",
     .min = 1000,
     .max = 86400000,
     .desc = "Git bundle: how often the dag-processor fetches tracking_ref."},
    {.key = "token",
     .type = CFG_SECRET,
     .offset = offsetof(struct agentcfg_bundle, token),
     .desc = "Git bundle over HTTPS: token sent as the basic-auth password ({file: PATH}, "
             "{env: VAR})."},
    {.key = "ssh_key",
     .type = CFG_PATH,
     .offset = offsetof(struct agentcfg_bundle, ssh_key),
     .desc = "Git bundle over SSH: private key file."},
    {.key = "ssh_passphrase",
     .type = CFG_SECRET,
     .offset = offsetof(struct agentcfg_bundle, ssh_passphrase),
     .desc = "Git bundle over SSH: passphrase of ssh_key ({file: PATH}, {env: VAR})."},
    {.key = "ssh_agent",
     .type = CFG_BOOL,
     .offset = offsetof(struct agentcfg_bundle, ssh_agent),
     .def = "false",
     .desc = "Git bundle over SSH: authenticate with ssh-agent (SSH_AUTH_SOCK) when no ssh_key."},
    {.key = "known_hosts",
     .type = CFG_PATH,
     .offset = offsetof(struct agentcfg_bundle, known_hosts),
     .desc = "Git bundle over SSH: known_hosts file the server's key must be in "
             "(default: ~/.ssh/known_hosts)."},
    {.key = "versioned",
     .type = CFG_BOOL,
     .offset = offsetof(struct agentcfg_bundle, versioned),
     .def = "true",
     .desc = "A task runs only while the folder holds the version its DAG was scheduled with "
             "(false: in the folder as it is)."},
    {0},
};

static int check_log_level(const void *field, char *why, size_t whysz)
{
    const char *s = *(char *const *)field;
    static const char *const ok[] = {"error", "warn", "info", "debug", NULL};
    for (size_t i = 0; ok[i]; i++)
        if (strcmp(s, ok[i]) == 0)
            return 0;
    snprintf(why, whysz, "expected error, warn, info or debug");
    return -1;
}

static int check_log_format(const void *field, char *why, size_t whysz)
{
    const char *s = *(char *const *)field;
    if (strcmp(s, "text") == 0 || strcmp(s, "json") == 0)
        return 0;
    snprintf(why, whysz, "expected text or json");
    return -1;
}

const struct cfg_entry agentcfg_table[] = {
    /* ---- shared ---- */
    {.key = "plane.url",
     .type = CFG_URL,
     .offset = F(plane.url),
     .flags = CFG_REQUIRED,
     .desc = "Base URL of the orchestration plane."},
    {.key = "plane.token",
     .type = CFG_SECRET,
     .offset = F(plane.token),
     .flags = CFG_REQUIRED,
     .desc = "Agent token: value, {file: PATH} (re-read on SIGHUP and on 401) or {env: VAR}."},
    {.key = "plane.ca_file",
     .type = CFG_PATH,
     .offset = F(plane.ca_file),
     .desc = "CA bundle for TLS verification (default: system store)."},
    {.key = "state_dir",
     .type = CFG_PATH,
     .offset = F(state_dir),
     .def = "/var/lib/remex",
     .desc = "Agent state; each role keeps its own below it (<state_dir>/worker, ...)."},
    {.key = "logs.level",
     .type = CFG_STRING,
     .offset = F(logs.level),
     .def = "info",
     .validate = check_log_level,
     .desc = "Log level of every role: error, warn, info or debug."},
    {.key = "logs.format",
     .type = CFG_STRING,
     .offset = F(logs.format),
     .def = "text",
     .validate = check_log_format,
     .desc = "Log format of every role: text or json."},
    {.key = "bundles",
     .type = CFG_LIST,
     .offset = F(bundles),
     .sub = bundle_table,
     .elem_size = sizeof(struct agentcfg_bundle),
     .max_items = BUNDLES_MAX,
     .desc = "DAG bundles: [{name, path, versioned}]."},
    {.key = "secrets.file",
     .type = CFG_PATH,
     .offset = F(secrets.file),
     .desc = "Local connections/variables file (JSON or YAML, mode 0600)."},
    {.key = "xcom.store",
     .type = CFG_STRING,
     .offset = F(xcom.store),
     .desc = "Object store URI for XCom values (default: file://<state_dir>/xcom)."},
    /* ---- worker ---- */
    {.key = "worker.name",
     .type = CFG_STRING,
     .offset = W(name),
     .def = "worker",
     .desc = "Agent name shown by the plane."},
    {.key = "worker.queues",
     .type = CFG_STRLIST,
     .offset = W(queues),
     .def = "default",
     .desc = "Queues this worker takes work from."},
    {.key = "worker.slots",
     .type = CFG_INT,
     .offset = W(slots),
     .def = "0",
     .min = 0,
     .max = 4096,
     .desc = "Task instances run at once (0: number of CPUs)."},
    {.key = "worker.state_dir",
     .type = CFG_PATH,
     .offset = W(state_dir),
     .desc = "Report journal and task sockets (default: <state_dir>/worker)."},
    {.key = "worker.log_dir",
     .type = CFG_PATH,
     .offset = W(log_dir),
     .def = "/var/log/remex/tasks",
     .desc = "Task logs (dag_id=/run_id=/task_id=/attempt=N.log)."},
    {.key = "worker.log_max_bytes",
     .type = CFG_SIZE,
     .offset = W(log_max_bytes),
     .def = "100MiB",
     .min = 4096,
     .max = INT64_MAX,
     .desc = "Size cap of one try's log; the rest is dropped."},
    {.key = "worker.poll_wait",
     .type = CFG_DURATION,
     .offset = W(poll_wait_ms),
     .def = "30s",
     .min = 1000,
     .max = 60000,
     .desc = "Long-poll wait asked from the plane."},
    {.key = "worker.drain_grace",
     .type = CFG_DURATION,
     .offset = W(drain_grace_ms),
     .def = "600s",
     .min = 0,
     .max = 86400000,
     .desc = "SIGTERM: time running tasks get."},
    {.key = "worker.task_defaults.grace_period",
     .type = CFG_DURATION,
     .offset = W(grace_ms),
     .def = "10s",
     .min = 0,
     .max = 3600000,
     .desc = "SIGTERM to SIGKILL of a task group."},
    {.key = "worker.task_defaults.memory_limit",
     .type = CFG_SIZE,
     .offset = W(memory_limit),
     .def = "0",
     .desc = "Memory limit of a task that declares none (0: none)."},
    {.key = "worker.task_defaults.memory_enforcement",
     .type = CFG_ENUM,
     .offset = W(memory_enforcement),
     .def = "auto",
     .enums = agentcfg_memenf_names,
     .desc = "How memory limits are enforced: auto (cgroup2, else cgroup1, else rlimit), "
             "cgroup2, cgroup1 or rlimit (RLIMIT_AS). A forced mechanism that is not usable "
             "stops the start."},
    {.key = "worker.task_defaults.cpu_time",
     .type = CFG_DURATION,
     .offset = W(cpu_time_ms),
     .def = "0",
     .desc = "CPU time limit of a task that declares none (0: none)."},
    {.key = "worker.task_defaults.processes",
     .type = CFG_INT,
     .offset = W(max_processes),
     .def = "0",
     .min = 0,
     .max = 1000000,
     .desc = "RLIMIT_NPROC (per uid!) (0: none)."},
    {.key = "worker.task_defaults.open_files",
     .type = CFG_INT,
     .offset = W(open_files),
     .def = "0",
     .min = 0,
     .max = 1048576,
     .desc = "RLIMIT_NOFILE of a task (0: inherit)."},
    {.key = "worker.cgroup_parent",
     .type = CFG_PATH,
     .offset = W(cgroup_parent),
     .def = "/sys/fs/cgroup/remex",
     .desc = "cgroup v2 parent of per-task cgroups, when usable (cgroup v1 needs no setting: "
             "the worker's own memory cgroup is found in /proc/self)."},
    {.key = "worker.socket_dir",
     .type = CFG_PATH,
     .offset = W(socket_dir),
     .desc = "Parent folder of the task sockets (default: $XDG_RUNTIME_DIR, /dev/shm if it "
             "is tmpfs, else the worker's state_dir)."},
    {.key = "worker.log_level",
     .type = CFG_STRING,
     .offset = W(log_level),
     .validate = check_log_level,
     .desc = "The worker's log level (default: logs.level)."},
    {.key = "worker.log_format",
     .type = CFG_STRING,
     .offset = W(log_format),
     .validate = check_log_format,
     .desc = "The worker's log format (default: logs.format)."},
    /* ---- dag_processor ---- */
    {.key = "dag_processor.name",
     .type = CFG_STRING,
     .offset = D(name),
     .def = "dag-processor",
     .desc = "Agent name of the dag-processor shown by the plane."},
    {.key = "dag_processor.state_dir",
     .type = CFG_PATH,
     .offset = D(state_dir),
     .desc = "File-hash cache of each bundle (default: <state_dir>/dag_processor)."},
    {.key = "dag_processor.refresh_interval",
     .type = CFG_DURATION,
     .offset = D(refresh_ms),
     .def = "30s",
     .min = 1000,
     .max = 86400000,
     .desc = "Rescan of each local bundle (unchanged files cost one stat each)."},
    {.key = "dag_processor.keep_versions",
     .type = CFG_INT,
     .offset = D(keep_versions),
     .def = "5",
     .min = 1,
     .max = 1000,
     .desc = "Git bundles: checkouts kept besides the current one (never one a task runs in)."},
    {.key = "dag_processor.log_level",
     .type = CFG_STRING,
     .offset = D(log_level),
     .validate = check_log_level,
     .desc = "The dag-processor's log level (default: logs.level)."},
    {.key = "dag_processor.log_format",
     .type = CFG_STRING,
     .offset = D(log_format),
     .validate = check_log_format,
     .desc = "The dag-processor's log format (default: logs.format)."},
    /* ---- reserved for the roles this version does not include ---- */
    {.key = "triggerer",
     .type = CFG_RESERVED,
     .desc = "reserved for remex-triggerer, which this version does not include"},
    {.key = "sentinel",
     .type = CFG_RESERVED,
     .desc = "reserved for remex-sentinel, which this version does not include"},
    {.key = "agent",
     .type = CFG_RESERVED,
     .desc = "reserved for the remex-agent supervisor, which this version does not include"},
    {0},
};

/* Sets *field to a copy of s when it is unset; -1 out of memory. */
static int derive(char **field, const char *s)
{
    if (*field)
        return 0;
    *field = strdup(s);
    return *field ? 0 : -1;
}

static int derive_defaults(struct agentcfg *c)
{
    char buf[PATH_MAX + 64], cwd[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s/worker", c->state_dir);
    if (derive(&c->worker.state_dir, buf) != 0 || derive(&c->worker.log_level, c->logs.level) ||
        derive(&c->worker.log_format, c->logs.format))
        return -1;
    snprintf(buf, sizeof(buf), "%s/dag_processor", c->state_dir);
    if (derive(&c->dag_processor.state_dir, buf) != 0 ||
        derive(&c->dag_processor.log_level, c->logs.level) ||
        derive(&c->dag_processor.log_format, c->logs.format))
        return -1;
    if (c->state_dir[0] == '/')
        snprintf(buf, sizeof(buf), "file://%s/xcom", c->state_dir);
    else if (getcwd(cwd, sizeof(cwd)))
        snprintf(buf, sizeof(buf), "file://%s/%s/xcom", cwd, c->state_dir);
    else
        return -1;
    return derive(&c->xcom.store, buf);
}

remex_err agentcfg_load(struct agentcfg *cfg, const char *path, struct cfg_errors *errs)
{
    remex_err rc = cfg_load_file(agentcfg_table, cfg, path, NULL, errs);
    if (rc == REMEX_OK && derive_defaults(cfg) != 0) {
        agentcfg_free(cfg);
        return REMEX_ENOMEM;
    }
    return rc;
}

void agentcfg_free(struct agentcfg *cfg)
{
    cfg_free(agentcfg_table, cfg);
}

void agentcfg_bundle_spec(const struct agentcfg *c, const struct agentcfg_bundle *b,
                          struct bundle_spec *out)
{
    *out = (struct bundle_spec){.name = b->name,
                                .path = b->path,
                                .unversioned = !b->versioned,
                                .url = b->url,
                                .ref = b->tracking_ref,
                                .subdir = b->subdir,
                                .state_dir = c->state_dir,
                                .token = &b->token};
}

/* The resources a start would open: bundle folders and the secrets file. */
static int check_resources(const struct agentcfg *c, const char *path, struct buf *out)
{
    struct bundle_spec specs[BUNDLES_MAX];
    const struct agentcfg_bundle *b = c->bundles.items;
    struct bundle_set *bs = NULL;
    struct secrets *sec = NULL;
    struct remex_error e;
    int rc = 0;
    for (size_t i = 0; i < c->bundles.n && i < BUNDLES_MAX; i++)
        agentcfg_bundle_spec(c, &b[i], &specs[i]);
    struct secrets_config sc = {.file = c->secrets.file};
    if (bundle_set_new(specs, c->bundles.n, &bs, &e) != REMEX_OK) {
        buf_printf(out, "%s: bundles: %s\n", path ? path : "(defaults)", e.msg);
        rc = REMEX_EXIT_CONFIG;
    } else if (secrets_open(&sc, &sec, &e) != REMEX_OK) {
        buf_printf(out, "%s: secrets.file: %s\n", path ? path : "(defaults)", e.msg);
        rc = REMEX_EXIT_CONFIG;
    }
    bundle_set_free(bs);
    secrets_close(sec);
    return rc;
}

int agentcfg_check(const char *path, struct buf *out)
{
    struct agentcfg c = {0};
    struct cfg_errors *errs = calloc(1, sizeof(*errs));
    if (!errs)
        return cfg_check_report(REMEX_ENOMEM, NULL, out);
    remex_err rc = agentcfg_load(&c, path, errs);
    int code = rc == REMEX_OK ? check_resources(&c, path, out) : 0;
    if (code == 0)
        code = cfg_check_report(rc, errs, out);
    agentcfg_free(&c);
    free(errs);
    return code;
}
