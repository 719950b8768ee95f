/*
 * Task instances: from an offer to the final report.
 *
 * offer -> decode + prepare (argv, env, limits; errors are kept and
 * reported after start) -> start call -> spawn (own session and process
 * group, clean fd table, explicit env, stdout+stderr into one pipe read by
 * the loop) -> exit (SIGCHLD, reaped with WNOHANG) and output EOF -> report.
 *
 * Stopping a task (execution_timeout, cancel from the plane, drain) sends
 * SIGTERM to its process group and SIGKILL after the grace period. When the
 * group leader exits, what is left of its group is killed too, so a task
 * never leaves processes behind.
 *
 * Out of memory. With cgroup v2 the task gets its own cgroup with
 * memory.max and an oom_kill count > 0 in memory.events means out of memory.
 * Otherwise the limit is RLIMIT_AS and the kernel never says why a process
 * died, so the worker uses a documented heuristic: a try that did not
 * succeed, whose limit was RLIMIT_AS, is reported as `out of memory` when
 * (a) it was killed by SIGKILL that the worker did not send (the kernel OOM
 * killer), or (b) its output contained an allocation-failure marker
 * (tasklog.c: "MemoryError", "Cannot allocate memory", "out of memory",
 * "std::bad_alloc", "memory allocation failed", "Out of memory").
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remex/api.h"
#include "remex/bundle.h"
#include "remex/exit.h"
#include "remex/evloop.h"
#include "remex/json.h"
#include "remex/log.h"
#include "remex/mask.h"
#include "remex/secrets.h"
#include "remex/timeutil.h"
#include "remex/tmpl.h"
#include "worker.h"

#define EOF_WAIT_MS  2000
#define ARGV_MAX     4096
#define TMPL_OUT_MAX (128u * 1024u)
#define REASON_MAX   1024

static void task_finish(struct wtask *t);

static struct wtask *find_task(struct worker *w, int64_t ti, int64_t try_number)
{
    for (struct wtask *t = w->tasks; t; t = t->next)
        if (t->ti_id == ti && (try_number < 0 || t->try_number == try_number) &&
            t->phase != WT_DONE)
            return t;
    return NULL;
}

static void unlink_task(struct worker *w, struct wtask *t)
{
    for (struct wtask **pp = &w->tasks; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            return;
        }
}

void task_release(struct wtask *t)
{
    if (t->phase != WT_DONE || t->pending > 0)
        return;
    struct worker *w = t->w;
    unlink_task(w, t);
    tasklog_stream_stop(t);
    tasksock_close(t);
    tasklog_close(t);
    if (t->spawn_wfd >= 0)
        close(t->spawn_wfd);
    for (char **a = t->argv; a && *a; a++)
        free(*a);
    free(t->argv);
    proc_env_free(&t->env);
    free(t->cwd);
    if (t->bundle_fd >= 0)
        close(t->bundle_fd);
    free(t->prep_error);
    free(t->log_path);
    buf_free(&t->line);
    mask_free(t->mask);
    json_decref(t->defer_trigger);
    json_decref(t->asg);
    free(t);
    w->changed(w);
}

/* Gives the slot back (once). */
static void free_slot(struct wtask *t)
{
    if (t->phase == WT_STARTING || t->phase == WT_RUNNING) {
        t->w->running--;
        t->phase = WT_EXITED;
    }
}

/* ---- preparation ---- */

static void set_prep_error(struct wtask *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_prep_error(struct wtask *t, const char *fmt, ...)
{
    if (t->prep_error)
        return;
    char msg[REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    t->prep_error = strdup(msg);
}

/* NAME upper-cased with every character outside [A-Z0-9_] turned into '_'. */
static void env_key(char *out, size_t outsz, const char *prefix, const char *name)
{
    size_t n = (size_t)snprintf(out, outsz, "%s", prefix);
    for (const char *p = name; *p && n + 1 < outsz; p++) {
        char c = *p;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            c = '_';
        out[n++] = c;
    }
    out[n] = '\0';
}

static int expand(struct wtask *t, struct tmpl_task_vars *vars, const char *what, const char *in,
                  char **out)
{
    struct buf b = BUF_INIT(TMPL_OUT_MAX);
    struct remex_error e;
    if (tmpl_expand(in, strlen(in), tmpl_task_lookup, vars, &b, &e) != REMEX_OK) {
        set_prep_error(t, "template in %s: %s", what, e.msg);
        buf_free(&b);
        return -1;
    }
    *out = buf_detach(&b, NULL);
    return *out ? 0 : -1;
}

static void env_put(struct wtask *t, const char *name, const char *value)
{
    struct remex_error e;
    if (proc_env_set(&t->env, name, value, &e) != REMEX_OK)
        set_prep_error(t, "environment %s: %s", name, e.msg);
}

static void build_env(struct wtask *t, json_t *task, struct tmpl_task_vars *vars, const char *ld)
{
    static const char *const keep[] = {"HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", NULL};
    struct remex_error e;
    proc_env_copy(&t->env, keep, &e);
    env_put(t, "PATH", t->w->task_path);

    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(task, "env"), k, v)
    {
        char *val = NULL;
        char what[300];
        snprintf(what, sizeof(what), "env.%s", k);
        if (!json_is_string(v)) {
            set_prep_error(t, "task.env.%s: expected string", k);
            continue;
        }
        if (expand(t, vars, what, json_string_value(v), &val) == 0)
            env_put(t, k, val);
        free(val);
    }
    char num[32], ds[11] = "";
    env_put(t, "REMEX_DAG_ID", t->dag_id);
    env_put(t, "REMEX_TASK_ID", t->task_id);
    env_put(t, "REMEX_RUN_ID", t->run_id);
    snprintf(num, sizeof(num), "%" PRId64, t->try_number);
    env_put(t, "REMEX_TRY_NUMBER", num);
    snprintf(num, sizeof(num), "%" PRId64, t->map_index);
    env_put(t, "REMEX_MAP_INDEX", num);
    env_put(t, "REMEX_LOGICAL_DATE", ld);
    memcpy(ds, ld, strlen(ld) >= 10 ? 10 : 0);
    env_put(t, "REMEX_DS", ds);
    json_object_foreach(json_object_get(t->asg, "params"), k, v)
    {
        char key[300];
        env_key(key, sizeof(key), "REMEX_PARAM_", k);
        if (json_is_string(v)) {
            env_put(t, key, json_string_value(v));
        } else {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (s)
                env_put(t, key, s);
            free(s);
        }
    }
    json_t *ev = json_object_get(t->asg, "trigger_event");
    if (ev) {
        char *s = json_dumps(ev, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s)
            env_put(t, "REMEX_TRIGGER_EVENT", s);
        free(s);
    }
    const char *rw = json_string_value(json_object_get(t->asg, "resume_with"));
    if (ev && rw)
        env_put(t, "REMEX_RESUME_WITH", rw);
}

static void build_argv(struct wtask *t, json_t *task, struct tmpl_task_vars *vars)
{
    json_t *cmd = json_object_get(task, "command");
    json_t *sh = json_object_get(task, "shell");
    size_t n = json_is_array(cmd) ? json_array_size(cmd) : 0;
    if (json_is_string(sh) && n == 0) {
        t->argv = calloc(4, sizeof(char *));
        if (!t->argv)
            return set_prep_error(t, "out of memory");
        t->argv[0] = strdup("/bin/sh");
        t->argv[1] = strdup("-c");
        expand(t, vars, "shell", json_string_value(sh), &t->argv[2]);
        return;
    }
    if (n == 0 || n > ARGV_MAX)
        return set_prep_error(t, "task has neither a command nor a shell string");
    t->argv = calloc(n + 1, sizeof(char *));
    if (!t->argv)
        return set_prep_error(t, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(cmd, i));
        char what[32];
        snprintf(what, sizeof(what), "command[%zu]", i);
        if (!s)
            return set_prep_error(t, "task.command[%zu]: expected string", i);
        if (expand(t, vars, what, s, &t->argv[i]) != 0)
            return;
    }
}

static int64_t limit_num(json_t *lim, const char *key, double scale)
{
    json_t *v = json_object_get(lim, key);
    return json_is_number(v) && json_number_value(v) > 0 ? (int64_t)(json_number_value(v) * scale)
                                                         : 0;
}

static void add_rlimit(struct wtask *t, int res, uint64_t soft, uint64_t hard)
{
    t->rlim[t->nrlim].resource = res;
    t->rlim[t->nrlim].lim.rlim_cur = soft;
    t->rlim[t->nrlim].lim.rlim_max = hard;
    t->nrlim++;
}

static void build_limits(struct wtask *t, json_t *task)
{
    struct worker *w = t->w;
    json_t *lim = json_object_get(task, "limits");
    int64_t mem = limit_num(lim, "memory", 1);
    int64_t cpu_ms = limit_num(lim, "cpu_time", 1000);
    int64_t nproc = limit_num(lim, "processes", 1);
    int64_t nofile = limit_num(lim, "open_files", 1);
    t->memory_limit = mem > 0 ? (uint64_t)mem : w->cfg->memory_limit;
    if (cpu_ms <= 0)
        cpu_ms = (int64_t)w->cfg->cpu_time_ms;
    if (nproc <= 0)
        nproc = w->cfg->max_processes;
    if (nofile <= 0)
        nofile = w->cfg->open_files;
    if (t->memory_limit) {
        if (w->cg_parent[0] != '\0')
            t->use_cgroup = 1;
        else
            add_rlimit(t, RLIMIT_AS, t->memory_limit, t->memory_limit);
    }
    if (cpu_ms > 0) {
        uint64_t s = ((uint64_t)cpu_ms + 999) / 1000;
        add_rlimit(t, RLIMIT_CPU, s, s + 5); /* SIGXCPU first, SIGKILL 5 s later */
    }
    if (nproc > 0)
        add_rlimit(t, RLIMIT_NPROC, (uint64_t)nproc, (uint64_t)nproc);
    if (nofile > 0)
        add_rlimit(t, RLIMIT_NOFILE, (uint64_t)nofile, (uint64_t)nofile);
    double to = json_is_number(json_object_get(task, "execution_timeout"))
                    ? json_number_value(json_object_get(task, "execution_timeout"))
                    : 0;
    /* Timeouts past the loop's longest timer (~24.8 days) are clamped to it. */
    t->timeout_ms = to <= 0                                    ? 0
                    : to * 1000 >= (double)EVLOOP_TIMER_MAX_MS ? (int64_t)EVLOOP_TIMER_MAX_MS
                                                               : (int64_t)(to * 1000);
}

static long long epoch_s(const char *s)
{
    int64_t ms = 0;
    if (!s || timeutil_rfc3339_parse(s, &ms, NULL) != REMEX_OK)
        return 0;
    return (long long)(ms / 1000);
}

static void prepare(struct wtask *t, json_t *task, const char *ld)
{
    json_t *params = json_object_get(t->asg, "params");
    struct tmpl_task_vars vars = {
        .dag_id = t->dag_id,
        .task_id = t->task_id,
        .run_id = t->run_id,
        .try_number = t->try_number,
        .map_index = t->map_index,
        .logical_date = epoch_s(ld),
        .data_interval_start =
            epoch_s(json_string_value(json_object_get(t->asg, "data_interval_start"))),
        .data_interval_end =
            epoch_s(json_string_value(json_object_get(t->asg, "data_interval_end"))),
        .params = json_is_object(params) ? params : NULL,
        .conf = json_object_get(t->asg, "conf"),
    };
    if (!vars.data_interval_start)
        vars.data_interval_start = vars.logical_date;
    if (!vars.data_interval_end)
        vars.data_interval_end = vars.logical_date;
    if (!json_is_object(vars.conf))
        vars.conf = NULL;
    /* Canonical task JSON carries "command": null and "shell": null: presence is not enough. */
    if (json_is_object(json_object_get(task, "trigger")) &&
        !json_is_array(json_object_get(task, "command")) &&
        !json_is_string(json_object_get(task, "shell")))
        set_prep_error(t, "task is a deferrable sensor; a triggerer runs it, not a worker");
    build_argv(t, task, &vars);
    build_env(t, task, &vars, ld);
    build_limits(t, task);
}

/* ---- offers ---- */

static remex_err decode(struct wtask *t, json_t **task, const char **ld, struct remex_error *e)
{
    struct json_path p, bp;
    json_path_init(&p, "assignment");
    json_t *b;
    remex_err rc;
    if ((rc = json_as_obj(&p, t->asg, &b, e)) != REMEX_OK ||
        (rc = json_get_i64(&p, t->asg, "ti_id", 1, INT64_MAX, &t->ti_id, e)) != REMEX_OK ||
        (rc = json_get_i64(&p, t->asg, "try_number", 1, INT32_MAX, &t->try_number, e)) !=
            REMEX_OK ||
        (rc = json_get_str(&p, t->asg, "task_token", 16384, &t->token, e)) != REMEX_OK)
        return rc;
    if ((rc = json_get_str(&p, t->asg, "dag_id", 250, &t->dag_id, e)) != REMEX_OK ||
        (rc = json_get_str(&p, t->asg, "run_id", 250, &t->run_id, e)) != REMEX_OK ||
        (rc = json_get_str(&p, t->asg, "task_id", 250, &t->task_id, e)) != REMEX_OK ||
        (rc = json_get_i64(&p, t->asg, "map_index", -1, INT32_MAX, &t->map_index, e)) != REMEX_OK ||
        (rc = json_get_str(&p, t->asg, "logical_date", 64, ld, e)) != REMEX_OK ||
        (rc = json_get_obj(&p, t->asg, "bundle", &b, e)) != REMEX_OK ||
        (rc = json_get_obj(&p, t->asg, "task", task, e)) != REMEX_OK)
        return rc;
    json_path_key(&bp, &p, "bundle");
    const char *s;
    if ((rc = json_get_str(&bp, b, "name", 250, &s, e)) != REMEX_OK)
        return rc;
    json_t *o;
    if ((rc = json_opt_obj(&p, t->asg, "params", &o, e)) != REMEX_OK ||
        (rc = json_opt_obj(&p, t->asg, "conf", &o, e)) != REMEX_OK)
        return rc;
    int64_t dummy;
    if (timeutil_rfc3339_parse(*ld, &dummy, NULL) != REMEX_OK)
        return remex_seterr(e, REMEX_EINVAL, "assignment.logical_date: expected RFC 3339 time");
    return REMEX_OK;
}

/* ---- calls on the task's token ---- */

struct tcall {
    struct wtask *t;
    task_call_fn fn;
    void *arg;
};

void task_call_done(void *arg, const struct api_result *res)
{
    struct tcall *c = arg;
    struct wtask *t = c->t;
    c->fn(t, c->arg, res);
    free(c);
    t->pending--;
    task_release(t);
}

struct tcall *task_call_new(struct wtask *t, task_call_fn fn, void *arg)
{
    struct tcall *c = calloc(1, sizeof(*c));
    if (!c) {
        struct api_result res = {.rc = REMEX_ENOMEM, .msg = "out of memory"};
        fn(t, arg, &res);
        return NULL;
    }
    *c = (struct tcall){.t = t, .fn = fn, .arg = arg};
    return c;
}

void task_call_started(struct tcall *c, remex_err rc, const struct remex_error *e)
{
    struct wtask *t = c->t;
    if (rc != REMEX_OK) {
        struct api_result res = {.rc = rc, .msg = e->msg};
        task_call_fn fn = c->fn;
        void *arg = c->arg;
        free(c);
        fn(t, arg, &res);
        return;
    }
    t->pending++;
}

/* ---- start: an offer runs only once the plane confirmed it ---- */

/* How long an unanswered start is retried before the offer is given up. */
#define START_RETRY_MS (5 * 60 * 1000)

static void start_call(struct wtask *t);
static void task_started(struct wtask *t);
static void task_gone(struct wtask *t, const char *why);

static void retry_start(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct wtask *t = arg;
    t->start_timer = 0;
    t->pending--; /* the timer's reference */
    if (worker_draining(t->w)) {
        task_gone(t, "draining before the plane confirmed the start");
        return;
    }
    start_call(t);
}

/*
 * A start that got no definitive answer (connection lost, timeout, 5xx) may
 * still have been taken by the plane, which then counts the try as running:
 * it is asked again (the plane answers a repeated start of the same try by
 * the same agent with 200) until it is confirmed or refused (409: the offer
 * expired unstarted and was re-queued). Meanwhile heartbeats list the task,
 * so the plane does not fail it as "not running on its agent".
 */
static void start_done(struct wtask *t, void *arg, const struct api_result *res)
{
    (void)arg;
    struct worker *w = t->w;
    if (res->rc == REMEX_OK) {
        task_started(t);
        return;
    }
    if ((res->status == 0 || res->retryable) && !worker_draining(w) &&
        timeutil_mono_ms() - t->start_first_ms < (uint64_t)START_RETRY_MS) {
        t->start_attempts++;
        t->start_timer =
            evloop_timer_add(w->loop, api_backoff_ms(t->start_attempts), 0, retry_start, t);
        if (t->start_timer) {
            t->pending++;
            log_info("ti %" PRId64 " try %" PRId64 ": start not confirmed (%s); asking again",
                     t->ti_id, t->try_number, res->msg);
            return;
        }
    }
    task_gone(t, res->status == 409 ? "offer gone (409)" : res->msg);
}

static void start_call(struct wtask *t)
{
    struct worker *w = t->w;
    if (t->start_first_ms == 0)
        t->start_first_ms = timeutil_mono_ms();
    json_t *body =
        json_pack("{s:I,s:s}", "try_number", (json_int_t)t->try_number, "hostname", w->hostname);
    if (body && t->log_path) { /* where the plane (its UI) finds the log while the task runs */
        char uri[OBJSTORE_URI_MAX + 8];
        tasklog_start_uri(t, uri, sizeof(uri));
        json_object_set_new(body, "log_uri", json_string(uri));
    }
    char what[96];
    struct remex_error e = {0};
    snprintf(what, sizeof(what), "start ti %" PRId64 " try %" PRId64, t->ti_id, t->try_number);
    /* Starts made in the same loop turn (one work reply's offers) go in one request. */
    struct tcall *c = task_call_new(t, start_done, NULL);
    if (c)
        task_call_started(
            c, api_ti_start(w->api, t->ti_id, t->token, body, what, task_call_done, c, &e), &e);
    json_decref(body);
}

/* After the offer's preparation (and its secrets): the start call. */
static void offer_continue(struct wtask *t)
{
    struct remex_error le;
    if (!t->prep_error && tasklog_path(t, &le) != REMEX_OK) /* then the start names no log */
        log_warn("ti %" PRId64 ": task log path: %s", t->ti_id, le.msg);
    start_call(t);
}

/* The declared connections and variables are back: REMEX_CONN_<ID>, REMEX_VAR_<KEY>, masked. */
static void secrets_fetched(struct store_job *j)
{
    struct wtask *t = j->t;
    const char *err = json_string_value(json_object_get(j->res, "error"));
    const char *k;
    json_t *v;
    size_t i;
    if (j->rc != REMEX_OK)
        set_prep_error(t, "secrets: %s", j->err.msg);
    else if (err)
        set_prep_error(t, "%s", err);
    json_array_foreach(json_object_get(j->res, "mask"), i, v)
    {
        mask_add(t->mask, json_string_value(v), json_string_length(v));
    }
    json_object_foreach(json_object_get(j->res, "env"), k, v)
    {
        env_put(t, k, json_string_value(v));
    }
    offer_continue(t);
}

/*
 * Looks up the task's declared connections and variables on the store
 * thread (the chain may call a remote backend). 1: the offer continues in
 * secrets_fetched; 0: nothing to fetch (or no thread: the try fails).
 */
static int fetch_secrets(struct wtask *t, json_t *task)
{
    json_t *conns = json_object_get(task, "connections");
    json_t *vars = json_object_get(task, "variables");
    if (json_array_size(conns) == 0 && json_array_size(vars) == 0)
        return 0;
    struct store_job *j = store_job_new(t, NULL, STORE_SECRETS, 0);
    if (j) {
        j->secrets = t->w->secrets;
        j->req = json_pack("{s:o,s:o}", "connections", conns ? json_deep_copy(conns) : json_array(),
                           "variables", vars ? json_deep_copy(vars) : json_array());
        j->done = secrets_fetched;
    }
    if (!j || !j->req || storeio_submit(t->w, j) != 0) {
        store_job_free(j);
        set_prep_error(t, "secrets: the lookup could not be started");
        return 0;
    }
    return 1;
}

void task_offer(struct worker *w, json_t *asg)
{
    struct wtask *t = calloc(1, sizeof(*t));
    if (!t) {
        json_decref(asg);
        log_error("offer dropped: out of memory");
        return;
    }
    t->w = w;
    t->asg = asg;
    t->out_fd = t->log_fd = t->spawn_wfd = t->bundle_fd = -1;
    t->cg.procs_fd = -1;
    t->phase = WT_STARTING;
    buf_init(&t->line, 64u * 1024u);
    t->mask = mask_new();
    struct remex_error e;
    json_t *task = NULL;
    const char *ld = NULL;
    remex_err rc = decode(t, &task, &ld, &e);
    if (rc != REMEX_OK && (!t->ti_id || !t->try_number || !t->token)) {
        log_error("malformed assignment dropped: %s", e.msg);
        json_decref(asg);
        buf_free(&t->line);
        mask_free(t->mask);
        free(t);
        return;
    }
    t->next = w->tasks;
    w->tasks = t;
    w->running++;
    if (rc != REMEX_OK) {
        /* Identity is known: confirm it and fail the try with the reason. */
        log_error("ti %" PRId64 ": malformed assignment: %s", t->ti_id, e.msg);
        set_prep_error(t, "malformed assignment: %s", e.msg);
        t->dag_id = t->dag_id ? t->dag_id : "unknown";
        t->run_id = t->run_id ? t->run_id : "unknown";
        t->task_id = t->task_id ? t->task_id : "unknown";
    } else if (!t->mask) {
        set_prep_error(t, "out of memory");
    } else {
        prepare(t, task, ld);
    }
    log_debug("offer ti %" PRId64 " %s.%s try %" PRId64, t->ti_id, t->dag_id, t->task_id,
              t->try_number);
    if (t->prep_error || !fetch_secrets(t, task))
        offer_continue(t);
}

static void task_gone(struct wtask *t, const char *why)
{
    struct worker *w = t->w;
    log_info("ti %" PRId64 " (%s.%s try %" PRId64 ") not started: %s", t->ti_id, t->dag_id,
             t->task_id, t->try_number, why);
    free_slot(t);
    t->phase = WT_DONE;
    w->changed(w);
    task_release(t);
}

/* ---- process ---- */

static void on_output(struct evloop *loop, int fd, unsigned ev, void *arg);

static void close_output(struct wtask *t)
{
    if (t->out_fd >= 0) {
        evloop_unwatch(t->w->loop, t->out_fd);
        close(t->out_fd);
        t->out_fd = -1;
    }
    t->out_eof = 1;
    if (t->eof_timer)
        evloop_timer_cancel(t->w->loop, t->eof_timer);
    t->eof_timer = 0;
}

static void on_output(struct evloop *loop, int fd, unsigned ev, void *arg)
{
    (void)loop;
    (void)ev;
    struct wtask *t = arg;
    char chunk[16384];
    for (int i = 0; i < 8; i++) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n > 0) {
            tasklog_feed(t, chunk, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        close_output(t);
        if (t->exited)
            task_finish(t);
        return;
    }
}

static void on_kill_timer(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct wtask *t = arg;
    t->kill_timer = 0;
    if (t->pid > 0 && !proc_group_empty(t->pid)) {
        tasklog_note(t, "grace period over: SIGKILL to the process group");
        proc_kill_group_now(t->pid, NULL);
    }
    if (t->use_cgroup && t->cg.procs_fd >= 0)
        proc_cgroup_kill(&t->cg, NULL);
}

/* SIGTERM to the group now, SIGKILL after the grace period. */
static void stop_task(struct wtask *t, const char *reason)
{
    if (t->stopping || t->exited)
        return;
    t->stopping = 1;
    t->stop_reason = reason;
    tasklog_note(t, "stopping (%s): SIGTERM to the process group", reason);
    log_info("ti %" PRId64 " %s.%s: stopping (%s)", t->ti_id, t->dag_id, t->task_id, reason);
    proc_term_group(t->pid, NULL);
    uint64_t g = t->w->drain_forced && t->w->cfg->grace_ms > 2000 ? 2000 : t->w->cfg->grace_ms;
    t->kill_timer = evloop_timer_add(t->w->loop, g, 0, on_kill_timer, t);
}

static void on_timeout(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct wtask *t = arg;
    t->timeout_timer = 0;
    stop_task(t, "execution_timeout");
}

/* The output pipe is watched and the timeout armed once the child runs. */
static void spawn_done(struct wtask *t, int rfd)
{
    struct worker *w = t->w;
    struct remex_error e;
    t->out_fd = rfd;
    fcntl(t->out_fd, F_SETFL, O_RDONLY | O_NONBLOCK); /* the read end's only status flags */
    if (evloop_watch(w->loop, t->out_fd, EVLOOP_READ, on_output, t, &e) != REMEX_OK) {
        close(t->out_fd);
        t->out_fd = -1;
        t->out_eof = 1;
    }
    if (t->timeout_ms > 0)
        t->timeout_timer = evloop_timer_add(w->loop, (uint64_t)t->timeout_ms, 0, on_timeout, t);
    tasklog_stream_start(t);
}

/*
 * Spawns t: on a spawner thread when there is one (t->spawning; task_spawned
 * continues), else right here.
 */
static remex_err spawn(struct wtask *t, struct remex_error *e)
{
    struct worker *w = t->w;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return remex_seterr(e, REMEX_ESYS, "pipe: %s", strerror(errno));
    if (t->use_cgroup) {
        char name[64];
        struct proc_cgroup_limits cl = {.memory_max = t->memory_limit};
        snprintf(name, sizeof(name), "ti%" PRId64 "-%" PRId64, t->ti_id, t->try_number);
        struct remex_error ce;
        if (proc_cgroup_create(&t->cg, w->cg_parent, name, &cl, &ce) != REMEX_OK) {
            log_warn("ti %" PRId64 ": cgroup: %s; using RLIMIT_AS", t->ti_id, ce.msg);
            t->use_cgroup = 0;
            add_rlimit(t, RLIMIT_AS, t->memory_limit, t->memory_limit);
        }
    }
    t->job.t = t;
    t->job.spec = (struct proc_spec){
        .argv = t->argv,
        .envp = proc_env_array(&t->env),
        .search_path = 1,
        .cwd = t->cwd,
        .new_session = 1,
        .pdeathsig = SIGKILL, /* a worker that dies takes its tasks' leaders along */
        .stdio = {{.kind = w->devnull >= 0 ? PROC_STDIO_FD : PROC_STDIO_NULL, .fd = w->devnull},
                  {.kind = PROC_STDIO_FD, .fd = pfd[1]},
                  {.kind = PROC_STDIO_FD, .fd = pfd[1]}},
        .rlimits = t->rlim,
        .nrlimits = t->nrlim,
        .cgroup = t->use_cgroup ? &t->cg : NULL,
        .exe_cache = w->exe_cache,
    };
    t->spawn_wfd = pfd[1];
    t->out_fd = pfd[0]; /* not watched until the child runs */
    if (spawner_submit(w, &t->job) == 0) {
        t->spawning = 1;
        t->pending++;
        w->spawns_inflight++;
        return REMEX_OK;
    }
    remex_err rc = proc_spawn(&t->job.spec, &t->pid, e);
    close(t->spawn_wfd);
    t->spawn_wfd = -1;
    t->out_fd = -1;
    if (rc != REMEX_OK) {
        close(pfd[0]);
        return rc;
    }
    spawn_done(t, pfd[0]);
    return REMEX_OK;
}

/* A try that cannot run: its reason goes to the log and the report. */
static void fail_before_exec(struct wtask *t)
{
    log_warn("ti %" PRId64 " %s.%s try %" PRId64 " failed before exec: %s", t->ti_id, t->dag_id,
             t->task_id, t->try_number, t->prep_error);
    tasklog_note(t, "failed before exec: %s", t->prep_error);
    t->exited = 1;
    t->out_eof = 1;
    t->wstatus = -1;
    task_finish(t);
}

static void on_exit_status(struct wtask *t, int wstatus);

void task_spawned(struct spawn_job *j)
{
    struct wtask *t = j->t;
    struct worker *w = t->w;
    int rfd = t->out_fd;
    t->spawning = 0;
    t->pending--;
    w->spawns_inflight--;
    close(t->spawn_wfd);
    t->spawn_wfd = -1;
    t->out_fd = -1;
    if (j->rc != REMEX_OK) {
        close(rfd);
        set_prep_error(t, "%s", j->err.msg);
        fail_before_exec(t);
        task_release(t);
        return;
    }
    t->pid = j->pid;
    spawn_done(t, rfd);
    tasksock_resume(t);
    log_info("ti %" PRId64 " %s.%s try %" PRId64 " running as pid %d", t->ti_id, t->dag_id,
             t->task_id, t->try_number, (int)t->pid);
    if (t->cancel_reason[0])
        stop_task(t, t->cancel_reason);
    else if (w->drain_forced)
        stop_task(t, "worker shutdown");
}

static void task_started(struct wtask *t)
{
    struct worker *w = t->w;
    struct remex_error e;
    /* The task runs in its bundle at the version its DAG was scheduled with, or not at all:
     * the bundle thread finds (or fetches) that version, then calls this again. */
    if (bundles_resolve(t, task_started))
        return;
    t->phase = WT_RUNNING;
    if (w->r->once)
        w->once_taken = 1;
    if (tasklog_open(t, &e) != REMEX_OK)
        set_prep_error(t, "task log: %s", e.msg); /* never run a task whose output is lost */
    if (!t->prep_error && t->cancel_reason[0])
        set_prep_error(t, "%s", t->cancel_reason);
    if (!t->prep_error && w->drain_forced) /* confirmed while the worker was being stopped */
        set_prep_error(t, "worker shutdown");
    if (!t->prep_error && tasksock_open(t, &e) != REMEX_OK)
        set_prep_error(t, "task socket: %s", e.msg);
    if (!t->prep_error && spawn(t, &e) != REMEX_OK)
        set_prep_error(t, "%s", e.msg);
    if (t->prep_error) {
        fail_before_exec(t);
        return;
    }
    if (!t->spawning)
        log_info("ti %" PRId64 " %s.%s try %" PRId64 " running as pid %d", t->ti_id, t->dag_id,
                 t->task_id, t->try_number, (int)t->pid);
    w->changed(w);
}

static void on_eof_timer(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct wtask *t = arg;
    t->eof_timer = 0;
    /* Something outside the group still holds the pipe: stop waiting for it. */
    close_output(t);
    task_finish(t);
}

static void on_exit_status(struct wtask *t, int wstatus)
{
    t->exited = 1;
    t->wstatus = wstatus;
    if (t->timeout_timer)
        evloop_timer_cancel(t->w->loop, t->timeout_timer);
    t->timeout_timer = 0;
    /* Whatever the leader left in its group goes with it. */
    if (!proc_group_empty(t->pid))
        proc_kill_group_now(t->pid, NULL);
    if (t->use_cgroup && t->cg.procs_fd >= 0)
        proc_cgroup_kill(&t->cg, NULL);
    if (t->kill_timer)
        evloop_timer_cancel(t->w->loop, t->kill_timer);
    t->kill_timer = 0;
    if (t->out_eof)
        task_finish(t);
    else
        t->eof_timer = evloop_timer_add(t->w->loop, EOF_WAIT_MS, 0, on_eof_timer, t);
}

/*
 * Reaps the children that exited. Each one is looked at first (WNOWAIT) and
 * reaped only once its task is known: a child whose spawn has not come back
 * from its spawner thread yet stays a zombie until it has (task_spawned, then
 * spawner.c calls this again), and one whose spawn failed is left to that
 * spawn, which reaps it itself. A child no spawn can claim is reaped and
 * dropped once no spawn is in flight.
 */
void task_reap(struct worker *w)
{
    for (;;) {
        siginfo_t si = {0};
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0)
            return;
        pid_t pid = si.si_pid;
        struct wtask *t = w->tasks;
        while (t && !(t->pid == pid && !t->exited))
            t = t->next;
        if (!t && w->spawns_inflight > 0)
            return;
        int st;
        pid_t got = waitpid(pid, &st, WNOHANG);
        if (got == 0)
            return;
        if (got < 0)
            continue; /* reaped meanwhile by its failed spawn */
        if (t)
            on_exit_status(t, st);
    }
}

/* ---- outcome ---- */

static int oom_detected(struct wtask *t, const struct proc_status *ps)
{
    unsigned long long n = 0;
    if (t->use_cgroup && proc_cgroup_oom_kills(&t->cg, &n, NULL) == REMEX_OK)
        return n > 0;
    /* No counter (cgroup v1 before Linux 4.13): the SIGKILL heuristic below. */
    if (!t->memory_limit || t->stop_reason)
        return 0;
    return (!ps->exited && ps->signo == SIGKILL) || t->oom_hint;
}

/* Hands the final state report (body owned) to the report journal. */
static void send_report(struct wtask *t, json_t *body)
{
    char what[96];
    snprintf(what, sizeof(what), "state report ti %" PRId64, t->ti_id);
    if (body) /* reports made in the same loop turn go in one request */
        api_ti_report(t->w->api, t->ti_id, t->token, body, what); /* takes body */
    else
        log_error("%s: out of memory: not reported", what);
}

static void log_uploaded(struct store_job *j)
{
    struct wtask *t = j->t;
    json_t *body = j->arg;
    if (j->rc == REMEX_OK) {
        json_object_set_new(body, "log_uri", json_string(j->ref.uri));
        tasklog_expire_later(t->w, t->log_path);
    } else
        log_warn("ti %" PRId64 " %s.%s try %" PRId64 ": log upload: %s; the log stays in %s",
                 t->ti_id, t->dag_id, t->task_id, t->try_number, j->err.msg, t->log_path);
    t->report_waits_upload = 0;
    send_report(t, body);
}

/*
 * With a logs store, uploads the closed log file off the loop and sends the
 * report (body taken) once that is done, naming the stored copy. 0: no
 * upload (the caller sends the report).
 */
static int upload_log(struct wtask *t, json_t *body)
{
    struct worker *w = t->w;
    if (!w->lstore || !t->log_path)
        return 0;
    struct store_job *j = store_job_new(t, w->lstore, STORE_PUT_FILE, TASKLOG_UPLOAD_MAX);
    struct buf k = BUF_INIT(OBJSTORE_KEY_MAX);
    tasklog_store_key(t, &k);
    if (!j || !(j->path = strdup(t->log_path)) || !(j->key = buf_detach(&k, NULL))) {
        store_job_free(j);
        buf_free(&k);
        return 0;
    }
    j->done = log_uploaded;
    j->arg = body;
    if (storeio_submit(w, j) != 0) {
        store_job_free(j);
        return 0;
    }
    t->report_waits_upload = 1;
    return 1;
}

static void task_finish(struct wtask *t)
{
    struct worker *w = t->w;
    if (t->phase != WT_RUNNING || !t->exited || !t->out_eof)
        return;
    tasklog_feed(t, "", 0);
    struct proc_status ps = {0};
    char desc[128] = "not started";
    const char *state = "failed";
    char reason[REASON_MAX] = "";
    if (t->wstatus != -1) {
        proc_status_decode(t->wstatus, &ps);
        proc_status_str(t->wstatus, desc, sizeof(desc));
    }
    int ok = t->wstatus != -1 && ps.exited && ps.code == 0;
    if (t->prep_error)
        snprintf(reason, sizeof(reason), "%s", t->prep_error);
    else if (!ok && oom_detected(t, &ps))
        snprintf(reason, sizeof(reason), "out of memory");
    else if (t->stop_reason)
        snprintf(reason, sizeof(reason), "%s", t->stop_reason);
    else if (!ok)
        snprintf(reason, sizeof(reason), "%s", desc);
    if (ok && !reason[0])
        state = t->defer_trigger ? "deferred" : "success";
    json_t *body = json_pack("{s:I,s:s}", "try_number", (json_int_t)t->try_number, "state", state);
    if (t->wstatus != -1 && ps.exited)
        json_object_set_new(body, "exit_code", json_integer(ps.code));
    else if (t->wstatus != -1 && ps.signo > 0)
        json_object_set_new(body, "signal", json_integer(ps.signo));
    if (reason[0])
        json_object_set_new(body, "reason", json_string(reason));
    if (strcmp(state, "deferred") == 0)
        json_object_set(body, "trigger", t->defer_trigger);
    if (t->log_path) {
        char uri[4200];
        snprintf(uri, sizeof(uri), "file://%s", t->log_path);
        json_object_set_new(body, "log_uri", json_string(uri));
    }
    tasklog_note(t, "%s (%s)%s%s", state, desc, reason[0] ? ": " : "", reason);
    log_info("ti %" PRId64 " %s.%s try %" PRId64 ": %s (%s)%s%s", t->ti_id, t->dag_id, t->task_id,
             t->try_number, state, desc, reason[0] ? ": " : "", reason);
    tasklog_stream_stop(t);
    tasklog_close(t);
    tasksock_close(t);
    if (t->use_cgroup)
        memlimit_release(w, &t->cg);
    if (w->r->once)
        w->once_result = strcmp(state, "failed") == 0 ? REMEX_EXIT_FAIL : REMEX_EXIT_OK;
    free_slot(t);
    t->phase = WT_DONE;
    if (!body || !upload_log(t, body))
        send_report(t, body);
    w->changed(w);
    task_release(t);
}

/* The plane's execution_timeout cancel and the worker's own timer are the same
 * event seen by two clocks: either way the stop reason is "execution_timeout". */
void task_cancel(struct worker *w, int64_t ti, int64_t try_number, const char *reason)
{
    struct wtask *t = find_task(w, ti, try_number);
    if (!t)
        return;
    if (t->phase != WT_STARTING && !(t->phase == WT_RUNNING && (t->pid > 0 || t->spawning)))
        return;
    if (strcmp(reason, "execution_timeout") == 0)
        snprintf(t->cancel_reason, sizeof(t->cancel_reason), "execution_timeout");
    else
        snprintf(t->cancel_reason, sizeof(t->cancel_reason), "cancelled: %s", reason);
    if (t->phase == WT_RUNNING && t->pid > 0) /* a spawn in flight stops when it is back */
        stop_task(t, t->cancel_reason);
}

void task_stop_all(struct worker *w, const char *reason)
{
    for (struct wtask *t = w->tasks; t; t = t->next)
        if (t->phase == WT_RUNNING && t->pid > 0 && !t->exited) {
            if (t->stopping && w->drain_forced && t->kill_timer) {
                evloop_timer_rearm(w->loop, t->kill_timer, 0);
                continue;
            }
            stop_task(t, reason);
        }
}

void task_free_all(struct worker *w)
{
    while (w->tasks) {
        struct wtask *t = w->tasks;
        if (t->pid > 0 && !t->exited && !proc_group_empty(t->pid))
            proc_kill_group_now(t->pid, NULL);
        if (t->use_cgroup && t->cg.path[0] != '\0') {
            proc_cgroup_kill(&t->cg, NULL);
            memlimit_release(w, &t->cg);
        }
        t->phase = WT_DONE;
        t->pending = 0;
        close_output(t);
        task_release(t);
    }
}
