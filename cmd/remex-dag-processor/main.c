/*
 * remex-dag-processor: keeps the plane's DAGs in step with the agent's
 * bundles. See docs/bundles.md.
 *
 *   remex-dag-processor -c agent.yaml [--check] [--once] [--log-format text|json]
 *                       [--log-level error|warn|info|debug]
 *   remex-dag-processor --lint FILE...
 *
 * Each bundle is scanned at start and every dag_processor.refresh_interval:
 * a scan stats every file and parses only DAG files whose content changed
 * (file-hash cache in <dag_processor.state_dir>/<bundle>.cache.json, so a
 * restart re-parses nothing). Scans run one at a time in a scan thread, whose
 * result comes back to the loop through an eventfd; the loop then syncs the
 * scan with the plane (sync.c). --once: one scan and sync of every bundle,
 * then exit 0, or 1 when any import error was found or a sync failed.
 *
 * Exit codes (remex/exit.h): 0, 1, 2 usage, 100 bad configuration or agent
 * token refused. Signals: SIGTERM/SIGINT drain (a running scan or sync ends
 * first; a second signal stops at once), SIGHUP re-reads the agent token.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "dagproc.h"
#include "remex/api.h"
#include "remex/evloop.h"
#include "remex/exit.h"
#include "remex/fsutil.h"
#include "remex/log.h"
#include "remex/role.h"
#include "remex/rolehttp.h"
#include "remex/timeutil.h"
#include "remex/version.h"

static struct dagproc DP;

/* Ends a drain, or --once, when no scan or sync is left. */
static void check_done(struct dagproc *dp)
{
    struct role *r = dp->r;
    if (r->state == ROLE_FINISHED || dp->th_running || dp_stream_busy(dp))
        return;
    for (size_t i = 0; i < dp->nb; i++)
        if (dp->b[i].syncing)
            return;
    if (r->state >= ROLE_DRAINING) {
        log_info("drained; exiting");
        role_finish(r, REMEX_EXIT_OK);
        return;
    }
    if (!r->once)
        return;
    for (size_t i = 0; i < dp->nb; i++)
        if (!dp->b[i].once_done)
            return;
    if (dp->once_errors)
        log_warn("--once: %zu import error%s", dp->once_errors, dp->once_errors == 1 ? "" : "s");
    role_finish(r, dp->once_errors || dp->once_failed ? REMEX_EXIT_FAIL : REMEX_EXIT_OK);
}

void dp_synced(struct dp_bundle *b, int ok)
{
    struct dagproc *dp = b->dp;
    if (ok) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        b->m.last_ok_unix_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        if (b->have_cur)
            memcpy(b->m.plane_version, b->cur.version, sizeof(b->m.plane_version));
    } else {
        b->m.failures++;
    }
    dp_metrics_write(dp);
    if (dp->r->once && !b->once_done) {
        b->once_done = 1;
        dp->once_errors += b->nerrors;
        dp->once_failed |= !ok;
    }
    dp_kick(dp); /* a scan that waited for this sync */
    check_done(dp);
}

/* ---- the scan thread ---- */

/* Git: fetches tracking_ref and checks its commit out; the folder to scan, or NULL. */
static char *git_prepare(struct dagproc *dp, struct dp_bundle *b, char sha[GITBUNDLE_SHA_HEX])
{
    char co[4096], root[4200];
    if ((dp->th_rc = gitbundle_fetch(&b->git, sha, &dp->th_err)) != REMEX_OK)
        return NULL;
    /* Unchanged since this process synced it (a restart always sends its manifest once). */
    if (b->have_cur && b->synced[0] != '\0' && strcmp(sha, b->cur.version) == 0) {
        dp->th_same = 1;
        return NULL;
    }
    if ((dp->th_rc = gitbundle_checkout(&b->git, sha, co, sizeof(co), &dp->th_err)) != REMEX_OK)
        return NULL;
    /* The new checkout and the one scanned before (the plane's until this one is synced)
     * are always kept, besides the newest keep_versions. */
    const char *spare[2] = {sha, b->have_cur ? b->cur.version : NULL};
    dp->th_pruned = gitbundle_prune(b->git_dir, (size_t)dp->r->cfg.dag_processor.keep_versions,
                                    spare, 2, &dp->th_held);
    snprintf(root, sizeof(root), "%s%s%s", co, b->subdir ? "/" : "", b->subdir ? b->subdir : "");
    char *r = strdup(root);
    if (r == NULL)
        dp->th_rc = remex_seterr(&dp->th_err, REMEX_ENOMEM, "out of memory");
    return r;
}

unsigned dp_parse_cap_ms(const struct dagproc *dp)
{
    uint64_t ms = dp->r->cfg.dag_processor.parse_timeout_ms;
    return ms > UINT_MAX ? UINT_MAX : (unsigned)ms;
}

/*
 * Versioned local bundle with snapshots: the snapshot of the scan's version, taken
 * before the version is synced so that every version the plane schedules has one,
 * however soon the folder changes again. A file changed since the scan
 * (REMEX_ECONFLICT) means the folder moved on: it is scanned again (up to
 * SNAP_TRIES times) and the new version is the one snapshotted and synced.
 */
#define SNAP_TRIES 3
static void snapshot_scan(struct dagproc *dp, struct dp_bundle *b)
{
    const char *dir = bundle_snapshot_dir(dp->set, b->name);
    int made = 0;
    if (dir == NULL)
        return;
    for (int i = 0; i < SNAP_TRIES; i++) {
        dp->th_rc = bundle_snapshot_scan(dp->set, b->name, &dp->th_out.files, dp->th_out.version,
                                         &made, &dp->th_err);
        if (dp->th_rc != REMEX_ECONFLICT || i + 1 == SNAP_TRIES)
            break;
        struct dp_state again = {0};
        dp->th_rc = dp_scan(b->root, &dp->th_out, dp_parse_cap_ms(dp), NULL, &again, &dp->th_err);
        if (dp->th_rc != REMEX_OK)
            return;
        dp_state_free(&dp->th_out);
        dp->th_out = again;
    }
    if (dp->th_rc != REMEX_OK || !made)
        return;
    /* The new snapshot and the plane's current version are always kept, besides the newest
     * keep_versions; never one a task holds. */
    size_t held = 0;
    int64_t keep = dp->r->cfg.dag_processor.keep_versions;
    const char *spare[2] = {dp->th_out.version, b->have_cur ? b->cur.version : NULL};
    dp->th_snap = 1;
    dp->th_snap_pruned = bundle_prune_dir(dir, keep > 0 ? (size_t)keep : 5, spare, 2, &held);
}

static void *scan_thread(void *arg)
{
    struct dagproc *dp = arg;
    struct dp_bundle *b = dp->th_bundle;
    struct remex_error ce;
    char sha[GITBUNDLE_SHA_HEX];
    uint64_t one = 1;
    uint64_t t0 = timeutil_mono_ns();
    const char *root = b->root;
    if (b->is_git)
        root = dp->th_root = git_prepare(dp, b, sha);
    if (root != NULL) {
        struct dp_scan_hook hook = {0};
        if (dp->th_stream)
            dp_stream_begin(dp, b, b->is_git ? sha : NULL, &hook);
        dp->th_rc = dp_scan(root, b->have_cur ? &b->cur : NULL, dp_parse_cap_ms(dp),
                            dp->th_stream ? &hook : NULL, &dp->th_out, &dp->th_err);
        if (dp->th_stream)
            dp_stream_end(dp);
        if (dp->th_rc == REMEX_OK && b->is_git)
            snprintf(dp->th_out.version, sizeof(dp->th_out.version), "%s", sha);
        else if (dp->th_rc == REMEX_OK)
            snapshot_scan(dp, b);
        if (dp->th_rc == REMEX_OK &&
            dp_cache_save(b->cache_path, b->cache_id, &dp->th_out, &ce) != REMEX_OK) {
            /* Not fatal: the next start parses again. Reported by the loop. */
            dp->th_err = ce;
            dp->th_err.code = REMEX_OK;
        }
    }
    dp->th_ms = (timeutil_mono_ns() - t0) / 1000000;
    while (write(dp->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    return NULL;
}

static pthread_t scan_tid;

static void scan_done(struct dagproc *dp)
{
    struct dp_bundle *b = dp->th_bundle;
    pthread_join(scan_tid, NULL);
    dp->th_running = 0;
    dp->th_bundle = NULL;
    b->scanning = 0;
    if (dp->th_same) {
        log_debug("bundle %s: %s still at %s", b->name, b->git.ref, b->cur.version);
        if (evloop_now_ms(dp->loop) - b->synced_ms >= dp->r->cfg.dag_processor.reconcile_ms)
            dp_sync_start(b); /* reconciliation: the same manifest again (sync.c) */
        else
            dp_synced(b, 1);
        return;
    }
    if (dp->th_rc != REMEX_OK) {
        dp_state_free(&dp->th_out);
        free(dp->th_root);
        dp->th_root = NULL;
        char where[1024];
        if (b->is_git)
            gitbundle_safe_url(b->git.url, where, sizeof(where));
        else
            snprintf(where, sizeof(where), "%s", b->root);
        log_error("bundle %s: scan of %s failed: %s%s%s", b->name, where, dp->th_err.msg,
                  b->m.plane_version[0] ? "; the plane keeps version " : "", b->m.plane_version);
        dp_synced(b, 0);
        return;
    }
    if (dp->th_snap)
        log_info("bundle %s: snapshot of version %s taken (%zu old snapshot%s pruned)", b->name,
                 dp->th_out.version, dp->th_snap_pruned, dp->th_snap_pruned == 1 ? "" : "s");
    if (dp->th_pruned || dp->th_held)
        log_info("bundle %s: pruned %zu old checkout%s (%zu kept: a task runs in them)", b->name,
                 dp->th_pruned, dp->th_pruned == 1 ? "" : "s", dp->th_held);
    if (b->is_git) {
        free(b->root);
        b->root = dp->th_root;
        dp->th_root = NULL;
    }
    if (dp->th_err.msg[0] != '\0' && dp->th_err.code == REMEX_OK)
        log_warn("bundle %s: file-hash cache not saved: %s", b->name, dp->th_err.msg);
    if (b->have_cur)
        dp_state_free(&b->cur);
    b->cur = dp->th_out;
    b->have_cur = 1;
    b->m.parsed += b->cur.parsed;
    b->m.hits += b->cur.hits;
    b->m.scan_ms = dp->th_ms;
    memset(&dp->th_out, 0, sizeof(dp->th_out));
    if (!dp->r->once)
        dp_watch_bundle(b);
    log_debug("bundle %s: scanned %zu files (%zu hashed), %zu DAG files (%zu parsed) in %" PRIu64
              " ms, version %s",
              b->name, b->cur.files.n, b->cur.files.hashed, b->cur.ndagfiles, b->cur.parsed,
              dp->th_ms, b->cur.version);
    if (dp_stream_busy(dp)) { /* the manifest goes once the streamed batches are stored */
        dp->stream.sync_after = b;
        dp_stream_pump(dp);
        return;
    }
    b->streamed = dp->th_stream ? dp->stream.stored : 0;
    if (b->streamed)
        log_debug("bundle %s: %zu DAGs streamed while scanning", b->name, b->streamed);
    dp_sync_start(b);
}

static void efd_ready(struct evloop *loop, int fd, unsigned events, void *arg)
{
    (void)loop;
    (void)events;
    struct dagproc *dp = arg;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v) && dp->th_running)
        scan_done(dp);
    dp_kick(dp);
    check_done(dp);
}

/* Starts the next wanted scan when the thread is free (never one of a bundle being synced). */
void dp_kick(struct dagproc *dp)
{
    if (dp->th_running || dp->r->state >= ROLE_DRAINING || dp_stream_busy(dp))
        return;
    for (size_t i = 0; i < dp->nb; i++) {
        struct dp_bundle *b = &dp->b[i];
        if (!b->pending || b->syncing)
            continue;
        b->pending = 0;
        b->scanning = 1;
        dp->th_bundle = b;
        dp->th_same = 0;
        dp->th_root = NULL;
        dp->th_pruned = dp->th_held = 0;
        dp->th_snap = 0;
        dp->th_snap_pruned = 0;
        /* A scan with nothing to start from parses every file: its DAGs are uploaded while
         * it goes on (stream.c) rather than all held until the manifest is answered. */
        dp->th_stream = !b->have_cur;
        dp->stream.stored = dp->stream.failed = 0;
        memset(&dp->th_err, 0, sizeof(dp->th_err));
        dp->th_err.code = REMEX_OK;
        int err = pthread_create(&scan_tid, NULL, scan_thread, dp);
        if (err != 0) {
            log_error("bundle %s: cannot start the scan thread: %s", b->name, strerror(err));
            b->scanning = 0;
            dp->th_bundle = NULL;
            dp_synced(b, 0);
            return;
        }
        dp->th_running = 1;
        return;
    }
}

static void refresh_fire(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct dp_bundle *b = arg;
    b->pending = 1;
    dp_kick(b->dp);
}

/* ---- API hooks ---- */

/* The dag-processor takes no work: no queues, no slots. */
static void hook_register_body(void *ud, json_t *body)
{
    (void)ud;
    json_object_set_new(body, "queues", json_array());
    json_object_set_new(body, "slots", json_integer(0));
}

static void hook_heartbeat_body(void *ud, json_t *body)
{
    struct dagproc *dp = ud;
    json_object_set_new(body, "state",
                        json_string(dp->r->state >= ROLE_DRAINING ? "draining" : "running"));
    json_object_set_new(body, "free_slots", json_integer(0));
}

static void hook_registered(void *ud)
{
    struct dagproc *dp = ud;
    log_info("registered as agent %s (heartbeat every %" PRId64 " ms)", api_agent_id(dp->api),
             api_heartbeat_ms(dp->api));
    role_ready(dp->r);
    dp_sync_registered(dp);
}

/* Reachability came back (or a report settled): syncs that waited for the session go. */
static void hook_settled(void *ud)
{
    dp_sync_registered(ud);
}

static void hook_fatal(void *ud, int code)
{
    struct dagproc *dp = ud;
    role_finish(dp->r, code);
}

/* ---- role hooks ---- */

static void role_log_config(const struct agentcfg *c, const char **level, const char **format)
{
    *level = c->dag_processor.log_level;
    *format = c->dag_processor.log_format;
}

/* Git fields of b from the configuration; -1 out of memory. */
static int setup_git(struct dagproc *dp, struct dp_bundle *b, const struct agentcfg_bundle *cb)
{
    char dir[4200], id[8192];
    const struct agentcfg *ac = &dp->r->cfg;
    char *abs = ac->state_dir[0] == '/' ? NULL : realpath(".", NULL);
    snprintf(dir, sizeof(dir), "%s%s%s/bundles/%s", abs ? abs : "", abs ? "/" : "", ac->state_dir,
             cb->name);
    free(abs);
    snprintf(id, sizeof(id), "git:%s#%s", cb->url, cb->subdir ? cb->subdir : "");
    b->is_git = 1;
    b->subdir = cb->subdir && *cb->subdir ? cb->subdir : NULL;
    b->git_dir = strdup(dir);
    b->cache_id = strdup(id);
    b->git = (struct gitbundle_opts){.name = b->name,
                                     .url = cb->url,
                                     .ref = cb->tracking_ref,
                                     .dir = b->git_dir,
                                     .token = &cb->token,
                                     .ssh_key = cb->ssh_key,
                                     .ssh_passphrase = &cb->ssh_passphrase,
                                     .ssh_agent = cb->ssh_agent,
                                     .known_hosts = cb->known_hosts};
    return b->git_dir && b->cache_id ? 0 : -1;
}

static int setup_bundle(struct dagproc *dp, struct dp_bundle *b, const struct agentcfg_bundle *cb)
{
    const struct agentcfg_dag_processor *cfg = &dp->r->cfg.dag_processor;
    struct remex_error e;
    uint64_t every = cfg->refresh_ms;
    b->dp = dp;
    b->batch_bytes = DP_BATCH_BYTES;
    b->name = strdup(cb->name);
    if (b->name == NULL)
        return REMEX_EXIT_FAIL;
    if (cb->url != NULL) {
        if (setup_git(dp, b, cb) != 0)
            return REMEX_EXIT_FAIL;
        every = cb->refresh_ms;
    } else if ((b->root = realpath(cb->path, NULL)) == NULL ||
               (b->cache_id = strdup(b->root)) == NULL) {
        log_error("bundles: %s: %s", cb->path, strerror(errno));
        return REMEX_EXIT_CONFIG;
    }
    int n = snprintf(b->cache_path, sizeof(b->cache_path), "%s/%s.cache.json", cfg->state_dir,
                     cb->name);
    if (n < 0 || (size_t)n >= sizeof(b->cache_path)) {
        log_error("dag_processor.state_dir: path too long");
        return REMEX_EXIT_CONFIG;
    }
    remex_err rc = dp_cache_load(b->cache_path, b->cache_id, &b->cur, &e);
    if (rc == REMEX_OK)
        b->have_cur = 1;
    else if (rc != REMEX_ENOTFOUND)
        log_warn("bundle %s: file-hash cache ignored (every file is read again): %s", b->name,
                 e.msg);
    b->pending = 1;
    b->refresh_timer = evloop_timer_add(dp->loop, every, every, refresh_fire, b);
    return -1;
}

static void dp_metrics_fn(void *ud, struct buf *out)
{
    dp_metrics_text(ud, out);
}

static int setup(struct dagproc *dp)
{
    const struct agentcfg *ac = &dp->r->cfg;
    struct remex_error e;
    int code;
    if (fsutil_mkdir_p(ac->dag_processor.state_dir, 0700) != 0) {
        log_error("cannot create dag_processor.state_dir %s: %s", ac->dag_processor.state_dir,
                  strerror(errno));
        return REMEX_EXIT_CONFIG;
    }
    if (ac->bundles.n == 0) {
        log_error("bundles: none configured: the dag-processor has nothing to read");
        return REMEX_EXIT_CONFIG;
    }
    dp->b = calloc(ac->bundles.n, sizeof(*dp->b));
    if (dp->b == NULL)
        return REMEX_EXIT_FAIL;
    const struct agentcfg_bundle *cb = ac->bundles.items;
    struct bundle_spec *specs = calloc(ac->bundles.n, sizeof(*specs));
    if (specs == NULL)
        return REMEX_EXIT_FAIL;
    for (size_t i = 0; i < ac->bundles.n; i++)
        agentcfg_bundle_spec(ac, &cb[i], &specs[i]);
    remex_err brc = bundle_set_new(specs, ac->bundles.n, &dp->set, &e);
    free(specs);
    if (brc != REMEX_OK) {
        log_error("bundles: %s", e.msg);
        return REMEX_EXIT_CONFIG;
    }
    for (size_t i = 0; i < ac->bundles.n; i++) {
        dp->nb = i + 1;
        if ((code = setup_bundle(dp, &dp->b[i], &cb[i])) >= 0)
            return code;
    }
    if (!dp->r->once && dp_watch_start(dp, &e) != REMEX_OK)
        log_warn("inotify: %s: bundles are rescanned every interval only", e.msg);
    if (dp_stream_init(dp, &e) != REMEX_OK) {
        log_error("stream channel: %s", e.msg);
        return REMEX_EXIT_FAIL;
    }
    dp->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (dp->efd < 0 ||
        evloop_watch(dp->loop, dp->efd, EVLOOP_READ, efd_ready, dp, &e) != REMEX_OK) {
        log_error("scan thread channel: %s", dp->efd < 0 ? strerror(errno) : e.msg);
        return REMEX_EXIT_FAIL;
    }
    struct api_hooks h = {.ud = dp,
                          .register_body = hook_register_body,
                          .on_registered = hook_registered,
                          .heartbeat_body = hook_heartbeat_body,
                          .on_fatal = hook_fatal,
                          .on_settled = hook_settled};
    if (role_api(dp->r, ac->dag_processor.name, NULL, 0, &h, &e) != REMEX_OK) {
        log_error("%s", e.msg);
        return REMEX_EXIT_FAIL;
    }
    dp->api = dp->r->api;
    if (ac->dag_processor.listen &&
        !(dp->http = rolehttp_role(dp->r, ac->dag_processor.listen, dp_metrics_fn, dp, &e))) {
        log_error("dag_processor.listen %s: %s", ac->dag_processor.listen, e.msg);
        return REMEX_EXIT_CONFIG;
    }
    return -1;
}

static int role_start_hook(struct role *r)
{
    struct dagproc *dp = r->ud;
    dp->r = r;
    dp->loop = r->loop;
    dp->efd = -1;
    dp->ifd = -1;
    int code = setup(dp);
    if (code >= 0)
        return code;
    log_info("remex-dag-processor %s starting: plane %s, %zu bundle%s, rescan every %" PRIu64 " ms",
             REMEX_VERSION, r->cfg.plane.url, dp->nb, dp->nb == 1 ? "" : "s",
             r->cfg.dag_processor.refresh_ms);
    api_start(dp->api);
    dp_kick(dp); /* scans run while the session is being set up */
    return -1;
}

static void role_drain_hook(struct role *r, const char *why)
{
    struct dagproc *dp = r->ud;
    log_info("%s: draining (a scan or sync in progress ends first)", why);
    for (size_t i = 0; i < dp->nb; i++) {
        if (dp->b[i].refresh_timer)
            evloop_timer_cancel(dp->loop, dp->b[i].refresh_timer);
        dp->b[i].refresh_timer = 0;
        dp->b[i].pending = 0;
        dp->b[i].sync_wanted = 0;
        if (dp->b[i].watch_timer)
            evloop_timer_cancel(dp->loop, dp->b[i].watch_timer);
        dp->b[i].watch_timer = 0;
        /* A sync in flight completes; one waiting to be retried is not. */
        if (dp->b[i].retry_timer)
            evloop_timer_cancel(dp->loop, dp->b[i].retry_timer);
        dp->b[i].retry_timer = 0;
    }
    dp_stream_pump(dp); /* batches that cannot be sent now are dropped */
    check_done(dp);
}

static void role_stop_now_hook(struct role *r)
{
    log_warn("stopping now");
    role_finish(r, REMEX_EXIT_OK);
}

static void role_stop_hook(struct role *r)
{
    struct dagproc *dp = r->ud;
    rolehttp_free(dp->http);
    dp->http = NULL;
    dp_stream_stop(dp); /* a scan waiting on a full queue goes on without it */
    if (dp->th_running) {
        pthread_join(scan_tid, NULL); /* a scan is bounded by the bundle caps */
        dp_state_free(&dp->th_out);
        free(dp->th_root);
        dp->th_running = 0;
    }
    for (size_t i = 0; i < dp->nb; i++) {
        struct dp_bundle *b = &dp->b[i];
        if (b->refresh_timer)
            evloop_timer_cancel(dp->loop, b->refresh_timer);
        dp_sync_free(b);
        if (b->have_cur)
            dp_state_free(&b->cur);
        free(b->name);
        free(b->root);
        free(b->cache_id);
        free(b->git_dir);
    }
    dp_watch_stop(dp);
    dp_stream_free(dp);
    bundle_set_free(dp->set);
    dp->set = NULL;
    free(dp->b);
    if (dp->efd >= 0) {
        evloop_unwatch(dp->loop, dp->efd);
        close(dp->efd);
    }
}

static const struct role_ops dagproc_ops = {
    .name = "dag-processor",
    .flags = ROLE_HAS_ONCE,
    .log_config = role_log_config,
    .start = role_start_hook,
    .drain = role_drain_hook,
    .stop_now = role_stop_now_hook,
    .stop = role_stop_hook,
};

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--lint") == 0)
        return dp_lint(argc - 2, argv + 2);
    return role_main(&dagproc_ops, &DP, argc, argv);
}
