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
#define T(m)        offsetof(struct agentcfg, triggerer.m)
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
     .flags = CFG_REQUIRED,
     .desc = "Local folder of the bundle (tasks run in it)."},
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
     .desc = "DAG bundles: [{name, path}]."},
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
    /* ---- triggerer ---- */
    {.key = "triggerer.name",
     .type = CFG_STRING,
     .offset = T(name),
     .def = "triggerer",
     .desc = "Agent name of the triggerer shown by the plane."},
    {.key = "triggerer.capacity",
     .type = CFG_INT,
     .offset = T(capacity),
     .def = "10000",
     .min = 1,
     .max = 1000000,
     .desc = "Triggers held at once; the plane hands out no more."},
    {.key = "triggerer.state_dir",
     .type = CFG_PATH,
     .offset = T(state_dir),
     .desc = "Event journal (default: <state_dir>/triggerer)."},
    {.key = "triggerer.poll_wait",
     .type = CFG_DURATION,
     .offset = T(poll_wait_ms),
     .def = "30s",
     .min = 1000,
     .max = 60000,
     .desc = "Long-poll wait asked from the plane."},
    {.key = "triggerer.default_timeout",
     .type = CFG_DURATION,
     .offset = T(default_timeout_ms),
     .def = "7d",
     .min = 1000,
     .max = 31622400000,
     .desc = "Timeout of a trigger that declares none; then the task fails (or is skipped "
             "with on_timeout: skip)."},
    {.key = "triggerer.poke_interval",
     .type = CFG_DURATION,
     .offset = T(poke_ms),
     .def = "30s",
     .min = 100,
     .max = 86400000,
     .desc = "Check interval of http, external_run and object_key triggers, and the fallback "
             "poll of file triggers, when the trigger declares none."},
    {.key = "triggerer.http_timeout",
     .type = CFG_DURATION,
     .offset = T(http_timeout_ms),
     .def = "10s",
     .min = 100,
     .max = 600000,
     .desc = "Time one check of an http trigger may take (connect included)."},
    {.key = "triggerer.drain_grace",
     .type = CFG_DURATION,
     .offset = T(drain_grace_ms),
     .def = "5s",
     .min = 0,
     .max = 600000,
     .desc = "SIGTERM: time to deliver fired events before exiting (held triggers go back "
             "to the plane at once)."},
    {.key = "triggerer.log_level",
     .type = CFG_STRING,
     .offset = T(log_level),
     .validate = check_log_level,
     .desc = "The triggerer's log level (default: logs.level)."},
    {.key = "triggerer.log_format",
     .type = CFG_STRING,
     .offset = T(log_format),
     .validate = check_log_format,
     .desc = "The triggerer's log format (default: logs.format)."},
    /* ---- reserved for the roles this version does not include ---- */
    {.key = "dag_processor",
     .type = CFG_RESERVED,
     .desc = "reserved for remex-dag-processor, which this version does not include"},
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
    snprintf(buf, sizeof(buf), "%s/triggerer", c->state_dir);
    if (derive(&c->triggerer.state_dir, buf) != 0 ||
        derive(&c->triggerer.log_level, c->logs.level) ||
        derive(&c->triggerer.log_format, c->logs.format))
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
        specs[i] = (struct bundle_spec){.name = b[i].name, .path = b[i].path};
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
