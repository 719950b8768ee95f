/*
 * remex-worker: pulls task instances for its queues from the plane, runs each
 * as an isolated process group, reports their state. See docs/worker.md.
 *
 *   remex-worker -c agent.yaml [--check] [--once] [--instance NAME]
 *                [--log-format text|json] [--log-level error|warn|info|debug]
 *
 * --instance NAME runs the entry NAME of agent.workers (its name, queues and
 * slots; state under <worker.state_dir>/NAME), as remex-agent does for each.
 *
 * The role runtime (remex/role.h) does start-up, signals and the supervisor
 * channel; this file is the worker's part: its hooks, the API hooks and the
 * work long poll. Exit codes (remex/exit.h): 0 done (drained, or --once task
 * succeeded), 1 runtime failure (or --once task did not succeed), 2 usage,
 * 100 bad configuration or agent token refused.
 *
 * Signals: SIGTERM/SIGINT drain (a second one stops running tasks at once),
 * SIGHUP re-reads the agent token file, SIGCHLD reaps tasks.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "remex/api.h"
#include "remex/bundle.h"
#include "remex/evloop.h"
#include "remex/exit.h"
#include "remex/fsutil.h"
#include "remex/log.h"
#include "remex/objstore.h"
#include "remex/promtext.h"
#include "remex/role.h"
#include "remex/rolehttp.h"
#include "remex/secrets.h"
#include "remex/timeutil.h"
#include "remex/version.h"
#include "worker.h"

static struct worker W;

int worker_draining(const struct worker *w)
{
    return w->r->state >= ROLE_DRAINING;
}

/* Finishes a drain, or --once, when nothing is left to do. */
static void check_done(struct worker *w)
{
    struct role *r = w->r;
    if (r->state == ROLE_FINISHED || w->tasks || w->running > 0)
        return;
    size_t spooled = api_reports_spooled(w->api);
    if (api_reports_pending(w->api) > spooled || (spooled && api_reachable(w->api)))
        return; /* a report in flight, or the journal is being replayed: wait for it */
    if (worker_draining(w)) {
        log_info("drained%s; exiting", spooled ? " (undelivered reports stay in the journal)" : "");
        role_finish(r, REMEX_EXIT_OK);
    } else if (r->once && w->once_taken) {
        role_finish(r, w->once_result);
    }
}

/* ---- the work long poll ---- */

static void maybe_poll(struct worker *w);

static void poll_again(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct worker *w = arg;
    w->poll_timer = 0;
    maybe_poll(w);
}

static void poll_done(void *arg, const struct api_result *res)
{
    struct worker *w = arg;
    w->poll_inflight = 0;
    if (res->status == 401 || res->status == 403)
        return; /* the session is being replaced: on_registered polls again */
    json_t *arr = json_object_get(res->reply, "assignments");
    if (res->rc != REMEX_OK || !json_is_array(arr)) {
        if (w->poll_failures++ == 0)
            log_warn("%s%s", res->msg,
                     res->rc == REMEX_OK ? ": reply without an assignments array" : "");
        if (w->r->state != ROLE_FINISHED)
            w->poll_timer =
                evloop_timer_add(w->loop, api_backoff_ms(w->poll_failures), 0, poll_again, w);
        return;
    }
    w->poll_failures = 0;
    size_t i;
    json_t *a;
    json_array_foreach(arr, i, a)
    {
        const char *skip = worker_draining(w)                                ? "draining"
                           : w->r->once && (w->once_taken || w->running > 0) ? "--once"
                           : w->running >= w->slots                          ? "no free slot"
                                                                             : NULL;
        if (skip) {
            log_info("offer %zu not taken: %s", i, skip);
            continue;
        }
        task_offer(w, json_incref(a));
    }
    maybe_poll(w);
}

/*
 * Polls for work when slots are free, the session is up and nothing older is
 * undelivered: a worker that lost the plane keeps its confirmed tasks
 * running and starts none; their reports are replayed before new work.
 */
static void maybe_poll(struct worker *w)
{
    enum api_state st = api_state(w->api);
    if (w->poll_inflight || w->poll_timer || worker_draining(w) || w->plane_hold ||
        (st != API_REGISTERED && st != API_REFRESHING && st != API_LOST))
        return;
    if (w->r->once && (w->once_taken || w->running > 0))
        return; /* --once: one offer at a time until one is confirmed */
    if (api_reports_spooled(w->api) > 0 || w->running >= w->slots)
        return;
    int64_t free_slots = w->r->once ? 1 : w->slots - w->running;
    json_t *q = json_array();
    for (size_t i = 0; i < w->cfg->queues.n; i++)
        json_array_append_new(q, json_string(w->cfg->queues.items[i]));
    /* While the plane looks unreachable the poll is a short probe. */
    double wait = st != API_LOST ? (double)w->cfg->poll_wait_ms / 1000.0 : 0;
    json_t *body =
        json_pack("{s:o,s:I,s:f}", "queues", q, "free_slots", (json_int_t)free_slots, "wait", wait);
    struct remex_error e;
    if (body && api_work_poll(w->api, body, poll_done, w, &e) == REMEX_OK)
        w->poll_inflight = 1;
    json_decref(body);
    if (!w->poll_inflight)
        w->poll_timer =
            evloop_timer_add(w->loop, api_backoff_ms(w->poll_failures++), 0, poll_again, w);
}

/*
 * The worker's capacity for the supervisor (its status, the sentinel's
 * per-queue slot metrics): {"type":"capacity","queues":[..],"slots":N,
 * "free_slots":M}, at most once per CAP_PERIOD_MS and only when it changed.
 */
#define CAP_PERIOD_MS 1000

static int64_t free_slots(const struct worker *w)
{
    return worker_draining(w) || w->plane_hold || w->running >= w->slots ? 0
                                                                         : w->slots - w->running;
}

static void send_capacity(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct worker *w = arg;
    w->cap_timer = 0;
    if (!w->r->sup || free_slots(w) == w->cap_sent)
        return;
    json_t *q = json_array();
    for (size_t i = 0; i < w->cfg->queues.n; i++)
        json_array_append_new(q, json_string(w->cfg->queues.items[i]));
    json_t *x = json_pack("{s:o,s:I,s:I}", "queues", q, "slots", (json_int_t)w->slots, "free_slots",
                          (json_int_t)free_slots(w));
    role_notify(w->r, "capacity", x);
    json_decref(x);
    w->cap_sent = free_slots(w);
}

static void capacity_changed(struct worker *w)
{
    if (w->r->sup && !w->cap_timer && free_slots(w) != w->cap_sent && w->r->state >= ROLE_READY &&
        w->r->state != ROLE_FINISHED)
        w->cap_timer =
            evloop_timer_add(w->loop, w->cap_sent < 0 ? 0 : CAP_PERIOD_MS, 0, send_capacity, w);
}

/* task.c's hook: a slot was freed or a task ended. */
static void on_changed(struct worker *w)
{
    maybe_poll(w);
    capacity_changed(w);
    check_done(w);
}

/* ---- API hooks ---- */

static void hook_register_body(void *ud, json_t *body)
{
    struct worker *w = ud;
    json_t *q = json_array();
    for (size_t i = 0; i < w->cfg->queues.n; i++)
        json_array_append_new(q, json_string(w->cfg->queues.items[i]));
    json_object_set_new(body, "queues", q);
    json_object_set_new(body, "slots", json_integer(w->slots));
    /* XCom is advertised only when its store opened; bundles by name, so that remexctl can
     * tell a push to a bundle no agent serves. */
    json_t *bundles = json_array();
    const struct agentcfg_bundle *b = w->r->cfg.bundles.items;
    for (size_t i = 0; i < w->r->cfg.bundles.n; i++)
        json_array_append_new(bundles, json_string(b[i].name));
    json_object_set_new(body, "features",
                        json_pack("{s:b,s:s,s:o}", "xcom", w->xstore != NULL, "memory_limit",
                                  w->memlimit_mech, "bundles", bundles));
}

static void hook_registered(void *ud)
{
    struct worker *w = ud;
    log_info("registered as agent %s (heartbeat every %" PRId64 " ms, %" PRId64
             " slots, memory limits: %s)",
             api_agent_id(w->api), api_heartbeat_ms(w->api), w->slots, w->memlimit_mech);
    role_ready(w->r);
    capacity_changed(w);
}

static void hook_heartbeat_body(void *ud, json_t *body)
{
    struct worker *w = ud;
    json_t *run = json_array();
    /* A finished try whose report waits for its log upload is still the agent's: listed. */
    for (struct wtask *t = w->tasks; t; t = t->next)
        if (t->phase == WT_RUNNING || t->phase == WT_STARTING || t->report_waits_upload)
            json_array_append_new(run, json_pack("{s:I,s:I}", "ti_id", (json_int_t)t->ti_id,
                                                 "try_number", (json_int_t)t->try_number));
    int idle = worker_draining(w) || w->plane_hold;
    json_object_set_new(body, "state", json_string(role_beat_state(w->r, w->plane_hold)));
    json_object_set_new(body, "free_slots", json_integer(idle ? 0 : w->slots - w->running));
    json_object_set_new(body, "running", run);
}

/*
 * The plane's desired state: "drain" and "maintenance" stop new work (running
 * tasks go on, the worker stays registered and keeps beating); "run" takes
 * work again. Unknown values change nothing.
 */
static void plane_desired(struct worker *w, const char *ds)
{
    int hold = role_plane_hold(ds, w->plane_hold);
    if (hold == w->plane_hold)
        return;
    if (hold)
        log_info("the plane asked this worker for %s: taking no new work", ds);
    else
        log_info("the plane asked this worker to run: taking work again");
    w->plane_hold = hold;
}

static void hook_heartbeat_reply(void *ud, json_t *r)
{
    struct worker *w = ud;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(r, "cancel"), i, x)
    {
        json_t *ti = json_object_get(x, "ti_id"), *tr = json_object_get(x, "try_number");
        const char *why = json_string_value(json_object_get(x, "reason"));
        if (json_is_integer(ti) && json_is_integer(tr))
            task_cancel(w, json_integer_value(ti), json_integer_value(tr), why ? why : "cancelled");
    }
    plane_desired(w, json_string_value(json_object_get(r, "desired_state")));
}

static void hook_fatal(void *ud, int code)
{
    struct worker *w = ud;
    role_finish(w->r, code);
}

static void hook_settled(void *ud)
{
    on_changed(ud);
}

/* ---- role hooks ---- */

static void role_grace_over_hook(struct role *r)
{
    struct worker *w = r->ud;
    log_warn("drain grace period over: stopping running tasks");
    w->drain_forced = 1;
    task_stop_all(w, "worker shutdown");
}

static void role_drain_hook(struct role *r, const char *why)
{
    struct worker *w = r->ud;
    char grace[32];
    timeutil_duration_format(w->cfg->drain_grace_ms, grace, sizeof(grace));
    log_info("%s: draining (running tasks get %s; send SIGTERM again to stop them now)", why,
             grace);
    role_drain_grace(r, w->cfg->drain_grace_ms);
    check_done(w);
}

static void role_stop_now_hook(struct role *r)
{
    struct worker *w = r->ud;
    if (!w->drain_forced) {
        log_warn("stopping running tasks now");
        w->drain_forced = 1;
        task_stop_all(w, "worker shutdown");
        bundles_cancel(w); /* a fetch in transfer stops; its tries fail as shut down */
    }
    check_done(w);
}

static void role_child_hook(struct role *r)
{
    struct worker *w = r->ud;
    task_reap(w);
    if (w->running == 0)
        role_idle_trim(r);
}

static void role_log_config(const struct agentcfg *c, const char **level, const char **format)
{
    *level = c->worker.log_level;
    *format = c->worker.log_format;
}

/* Creates (or accepts) a folder only this uid can enter. */
static int private_dir(const char *path)
{
    struct stat st;
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -1;
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid() ||
        (st.st_mode & 077) != 0) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

/*
 * The folder of the task sockets: <base>/remex-<uid>/w<pid> with base =
 * worker.socket_dir, else $XDG_RUNTIME_DIR, else /dev/shm when it is a tmpfs
 * (sockets on tmpfs cost no disk inode churn per task), else <state_dir>/sock.
 */
static int setup_sockdir(struct worker *w)
{
    const char *base = w->cfg->socket_dir;
    struct statfs sf;
    char parent[4096];
    if (!base)
        base = getenv("XDG_RUNTIME_DIR");
    if (!base && statfs("/dev/shm", &sf) == 0 && sf.f_type == TMPFS_MAGIC &&
        access("/dev/shm", W_OK) == 0)
        base = "/dev/shm";
    if (base && *base) {
        snprintf(parent, sizeof(parent), "%s/remex-%u", base, (unsigned)getuid());
        int n = snprintf(w->sock_dir, sizeof(w->sock_dir), "%s/w%d", parent, (int)getpid());
        if (n > 0 && (size_t)n < sizeof(w->sock_dir) && private_dir(parent) == 0 &&
            private_dir(w->sock_dir) == 0) {
            w->sock_dir_tmp = 1;
            return 0;
        }
        log_warn("task sockets: cannot use %s: %s; using the state dir", parent, strerror(errno));
    }
    int n = snprintf(w->sock_dir, sizeof(w->sock_dir), "%s/sock", w->cfg->state_dir);
    if (n < 0 || (size_t)n >= sizeof(w->sock_dir) || private_dir(w->sock_dir) != 0) {
        log_error("task sockets: state_dir path too long or folder not private (set "
                  "worker.socket_dir)");
        return -1;
    }
    return 0;
}

static void setup_task_path(struct worker *w)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    const char *sp = getenv("PATH");
    snprintf(w->task_path, sizeof(w->task_path), "%s%s%s", self, self[0] ? ":" : "",
             sp && *sp ? sp : "/usr/local/bin:/usr/bin:/bin");
}

/* The worker's own metric families on its /metrics (worker.listen). */
static void worker_metrics(void *ud, struct buf *out)
{
    struct worker *w = ud;
    const char *busy[] = {"state", "busy"}, *idle[] = {"state", "free"};
    promtext_family(out, "remex_worker_slots", "gauge", "Task slots of this worker by state.");
    promtext_sample(out, "remex_worker_slots", busy, 1, (double)w->running);
    promtext_sample(out, "remex_worker_slots", idle, 1,
                    (double)(w->slots > w->running ? w->slots - w->running : 0));
    bundles_metrics(w, out);
}

/* Opens everything the worker needs; returns an exit code, or -1 to run. */
/* Opens the object store at url with the agent.yaml settings of its backend. */
static remex_err open_store(const struct agentcfg *ac, const char *url, struct objstore **out,
                            struct remex_error *e)
{
    struct objstore_opts so;
    char *key = NULL;
    remex_err rc = agentcfg_objstore_opts(ac, url, &so, &key, e);
    if (rc == REMEX_OK)
        rc = objstore_open_opts(url, &so, out, e);
    cfg_secret_free(key);
    return rc;
}

static int setup(struct worker *w)
{
    struct remex_error e;
    if (w->cfg->slots == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        w->slots = n > 0 ? n : 1;
    } else {
        w->slots = w->cfg->slots;
    }
    if (fsutil_mkdir_p(w->cfg->state_dir, 0700) != 0 ||
        fsutil_mkdir_p(w->cfg->log_dir, 0750) != 0) {
        log_error("cannot create state_dir %s or log_dir %s: %s", w->cfg->state_dir,
                  w->cfg->log_dir, strerror(errno));
        return REMEX_EXIT_CONFIG;
    }
    if (setup_sockdir(w) != 0)
        return REMEX_EXIT_CONFIG;
    setup_task_path(w);
    memset(w->hostname, 0, sizeof(w->hostname));
    gethostname(w->hostname, sizeof(w->hostname) - 1);
    w->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (proc_exe_cache_new(&w->exe_cache, &e) != REMEX_OK)
        log_warn("%s: PATH is searched at every spawn", e.msg);
    const struct agentcfg *ac = &w->r->cfg;
    struct bundle_spec specs[256];
    const struct agentcfg_bundle *wb = ac->bundles.items;
    for (size_t i = 0; i < ac->bundles.n && i < 256; i++)
        agentcfg_bundle_spec(ac, &wb[i], &specs[i]);
    if (bundle_set_new(specs, ac->bundles.n, &w->bundles, &e) != REMEX_OK) {
        log_error("bundles: %s", e.msg);
        return REMEX_EXIT_CONFIG;
    }
    if (agentcfg_secrets_open(ac, &w->secrets, &e) != REMEX_OK) {
        log_error("secrets: %s", e.msg);
        return REMEX_EXIT_CONFIG;
    }
    if (open_store(ac, ac->xcom.store, &w->xstore, &e) != REMEX_OK)
        log_warn("xcom store: %s: XCom requests will fail", e.msg);
    if (ac->logs.store && open_store(ac, ac->logs.store, &w->lstore, &e) != REMEX_OK)
        log_warn("logs store: %s: task logs stay in local files only", e.msg);
    if (memlimit_init(w, &e) != REMEX_OK) {
        log_error("worker.task_defaults.memory_enforcement: %s", e.msg);
        return REMEX_EXIT_CONFIG;
    }
    struct api_hooks h = {.ud = w,
                          .register_body = hook_register_body,
                          .on_registered = hook_registered,
                          .heartbeat_body = hook_heartbeat_body,
                          .on_heartbeat_reply = hook_heartbeat_reply,
                          .on_fatal = hook_fatal,
                          .on_settled = hook_settled};
    if (role_api(w->r, w->cfg->name, w->cfg->state_dir, w->cfg->poll_wait_ms, &h, &e) != REMEX_OK) {
        log_error("%s", e.msg);
        return REMEX_EXIT_FAIL;
    }
    w->api = w->r->api;
    if (w->cfg->listen && !(w->http = rolehttp_role(w->r, w->cfg->listen, worker_metrics, w, &e))) {
        log_error("worker.listen %s: %s", w->cfg->listen, e.msg);
        return REMEX_EXIT_CONFIG;
    }
    if (spawner_start(w, &e) != REMEX_OK)
        log_warn("%s: tasks are spawned on the event loop", e.msg);
    if (storeio_start(w, &e) != REMEX_OK) {
        log_error("%s", e.msg);
        return REMEX_EXIT_FAIL;
    }
    if (bundles_start(w, &e) != REMEX_OK) {
        log_error("%s", e.msg);
        return REMEX_EXIT_FAIL;
    }
    return -1;
}

static int role_start_hook(struct role *r)
{
    struct worker *w = r->ud;
    struct remex_error e;
    if (r->instance && agentcfg_instance_apply(&r->cfg, r->instance, &e) != REMEX_OK) {
        log_error("%s", e.msg);
        return REMEX_EXIT_CONFIG;
    }
    w->r = r;
    w->cfg = &r->cfg.worker;
    w->loop = r->loop;
    w->devnull = -1;
    w->once_result = REMEX_EXIT_FAIL;
    w->changed = on_changed;
    w->cap_sent = -1;
    int code = setup(w);
    if (code >= 0)
        return code;
    char qs[512] = "";
    size_t ql = 0;
    for (size_t i = 0; i < w->cfg->queues.n && ql < sizeof(qs); i++)
        ql += (size_t)snprintf(qs + ql, sizeof(qs) - ql, "%s%s", i ? ", " : "",
                               w->cfg->queues.items[i]);
    log_info("remex-worker %s starting: plane %s, queues [%s], %lld slots", REMEX_VERSION,
             r->cfg.plane.url, qs, (long long)w->slots);
    api_start(w->api); /* registers once the journal is delivered */
    return -1;
}

static void role_stop_hook(struct role *r)
{
    struct worker *w = r->ud;
    if (w->poll_timer)
        evloop_timer_cancel(w->loop, w->poll_timer);
    rolehttp_free(w->http);
    w->http = NULL;
    if (w->cap_timer)
        evloop_timer_cancel(w->loop, w->cap_timer);
    spawner_stop(w);
    bundles_stop(w);
    storeio_stop(w);
    task_free_all(w);
    tasklog_expiry_free(w);
    memlimit_shutdown(w);
    tasksock_pool_free(w);
    secrets_close(w->secrets);
    bundle_set_free(w->bundles);
    objstore_close(w->xstore);
    objstore_close(w->lstore);
    if (w->sock_dir_tmp)
        rmdir(w->sock_dir);
    if (w->devnull >= 0)
        close(w->devnull);
    proc_exe_cache_free(w->exe_cache);
}

static const struct role_ops worker_ops = {
    .name = "worker",
    .flags = ROLE_HAS_ONCE | ROLE_HAS_CHILDREN | ROLE_HAS_INSTANCE,
    .log_config = role_log_config,
    .start = role_start_hook,
    .drain = role_drain_hook,
    .stop_now = role_stop_now_hook,
    .grace_over = role_grace_over_hook,
    .child = role_child_hook,
    .stop = role_stop_hook,
};

int main(int argc, char **argv)
{
    return role_main(&worker_ops, &W, argc, argv);
}
