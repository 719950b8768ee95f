/*
 * bundles: each task's bundle at the version its DAG was scheduled with, off
 * the event loop (docs/bundles.md).
 *
 * One thread owns the worker's bundle set (w->bundles) once it runs, and
 * runs two kinds of jobs in order:
 *   resolve   the folder of (bundle, version): a git checkout (fetched through
 *             libgit2 and checked out when this agent lacks it), a local
 *             snapshot (taken now when the folder still holds the version), or
 *             the folder itself (`versioned: false`);
 *   snapshot  every versioned local bundle at its current content, at start
 *             and every dag_processor.refresh_interval, then pruning to
 *             dag_processor.keep_versions.
 * Tasks that need the same (bundle, version) while a resolve is out wait for
 * that one job: one fetch serves them all. Back on the loop (workq) each
 * waiting task gets its cwd and its hold on the version folder, or the reason
 * as its failure, and continues; each holds a pending reference meanwhile.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/agentcfg.h"
#include "remex/bundle.h"
#include "remex/evloop.h"
#include "remex/gitbundle.h"
#include "remex/log.h"
#include "remex/promtext.h"
#include "remex/timeutil.h"
#include "remex/workq.h"
#include "worker.h"

#define BUNDLES_STACK (512u * 1024u) /* libgit2 and its transports run here */
#define REPORT_MAX    1024

enum bjob_kind { BJ_RESOLVE, BJ_SNAPSHOT };

struct bjob {
    struct workq_job wj;
    struct bjob *inflight; /* the loop's list of jobs not delivered yet */
    enum bjob_kind kind;
    char *name, *version; /* owned; resolve only */
    struct wtask **waiters;
    size_t nwait, capwait;
    void (*cont)(struct wtask *t);
    struct bundles *b; /* borrowed: its queue */
    /* results (written by the thread) */
    remex_err rc;
    struct remex_error err;
    char *path;     /* owned: where the tasks run */
    char *hold_dir; /* owned: the version folder to hold, or NULL */
    int fetched;    /* a fetch was made (or tried) for this job */
    int fetch_ok;
    uint64_t fetch_ms;
    char report[REPORT_MAX]; /* snapshot: what to log, "" for nothing */
    int report_warn;
};

struct bundles {
    struct worker *w;
    struct workq *q;
    int cancel;            /* __atomic: stops a fetch in progress */
    int stopping;          /* loop only: jobs coming back fail as "worker stopping" */
    struct bjob *inflight; /* loop only */
    int snapshot_out;      /* loop only: a snapshot job is queued or running */
    uint64_t snap_timer;
    int has_local; /* some bundle takes snapshots */
    /* figures (loop only) */
    uint64_t fetches, fetch_failures, shared_waits, snapshots;
};

static void job_free(struct bjob *j)
{
    if (!j)
        return;
    free(j->name);
    free(j->version);
    free(j->waiters);
    free(j->path);
    free(j->hold_dir);
    free(j);
}

/* The agent.yaml entry of bundle name (borrowed), or NULL. */
static const struct agentcfg_bundle *cfg_bundle(const struct worker *w, const char *name)
{
    const struct agentcfg_bundle *cb = w->r->cfg.bundles.items;
    for (size_t i = 0; i < w->r->cfg.bundles.n; i++)
        if (strcmp(cb[i].name, name) == 0)
            return &cb[i];
    return NULL;
}

/* Fetches and checks out commit j->version of git bundle j->name (thread). */
static remex_err fetch_commit(struct bundles *b, struct bjob *j, const char *dir)
{
    const struct agentcfg_bundle *cb = cfg_bundle(b->w, j->name);
    char sha[GITBUNDLE_SHA_HEX], co[4200];
    if (!cb)
        return remex_seterr(&j->err, REMEX_ENOTFOUND, "bundle '%s' is not configured", j->name);
    struct gitbundle_opts o = {.name = j->name,
                               .url = cb->url,
                               .ref = j->version, /* the commit itself, not tracking_ref */
                               .dir = dir,
                               .token = &cb->token,
                               .ssh_key = cb->ssh_key,
                               .ssh_passphrase = &cb->ssh_passphrase,
                               .ssh_agent = cb->ssh_agent,
                               .known_hosts = cb->known_hosts,
                               .cancel = &b->cancel};
    uint64_t t0 = timeutil_mono_ms();
    remex_err rc = gitbundle_fetch(&o, sha, &j->err);
    if (rc == REMEX_OK)
        rc = gitbundle_checkout(&o, j->version, co, sizeof(co), &j->err);
    j->fetched = 1;
    j->fetch_ok = rc == REMEX_OK;
    j->fetch_ms = timeutil_mono_ms() - t0;
    if (rc == REMEX_OK) { /* old checkouts go, never this one nor one a task holds */
        size_t held = 0;
        const char *spare[] = {j->version};
        int64_t keep = b->w->r->cfg.dag_processor.keep_versions;
        gitbundle_prune(dir, keep > 0 ? (size_t)keep : 5, spare, 1, &held);
    }
    return rc;
}

/* Resolve job (thread): the folder and the version folder to hold. */
static void run_resolve(struct bundles *b, struct bjob *j)
{
    struct bundle_set *set = b->w->bundles;
    const char *path = NULL, *gd = bundle_git_dir(set, j->name);
    const char *sd = bundle_snapshot_dir(set, j->name);
    const char *v = j->version && *j->version ? j->version : NULL;
    char hold[4200] = "";
    j->rc = bundle_path(set, j->name, v, &path, &j->err);
    if (j->rc == REMEX_ENOTFOUND && gd && v && gitbundle_is_sha(v)) {
        j->rc = fetch_commit(b, j, gd);
        if (j->rc == REMEX_OK)
            j->rc = bundle_path(set, j->name, v, &path, &j->err);
        else if (j->rc == REMEX_ECLOSED) /* cancelled: the worker stops at once */
            remex_seterr(&j->err, j->rc, "worker shutdown (the fetch of commit %s was stopped)", v);
        else { /* the reason the try fails with */
            char why[REMEX_ERRMSG_MAX], pfx[96];
            int n = snprintf(pfx, sizeof(pfx), "bundle '%s': ", j->name);
            const char *m = j->err.msg;
            if (n > 0 && (size_t)n < sizeof(pfx) && strncmp(m, pfx, (size_t)n) == 0)
                m += n; /* the bundle is named once */
            snprintf(why, sizeof(why), "%s", m);
            remex_seterr(&j->err, j->rc, "commit %s of git bundle '%s' cannot be had: %s", v,
                         j->name, why);
        }
    }
    if (j->rc != REMEX_OK)
        return;
    if (gd && v)
        snprintf(hold, sizeof(hold), "%s/%s", gd, v);
    else if (sd && v && strncmp(v, "sha256:", 7) == 0)
        snprintf(hold, sizeof(hold), "%s/%s", sd, v + 7);
    j->path = strdup(path);
    j->hold_dir = hold[0] ? strdup(hold) : NULL;
    if (!j->path || (hold[0] && !j->hold_dir))
        j->rc = remex_seterr(&j->err, REMEX_ENOMEM, "out of memory");
}

/* Snapshot job (thread): every versioned local bundle at its current content. */
static void run_snapshot(struct bundles *b, struct bjob *j)
{
    struct bundle_set *set = b->w->bundles;
    size_t len = 0;
    int64_t keep = b->w->r->cfg.dag_processor.keep_versions;
    for (size_t i = 0; bundle_name(set, i); i++) {
        const char *name = bundle_name(set, i), *dir = bundle_snapshot_dir(set, name);
        char version[BUNDLE_VERSION_MAX];
        struct remex_error e;
        int made = 0;
        size_t held = 0, pruned = 0;
        if (!dir)
            continue;
        if (bundle_snapshot(set, name, version, &made, &e) != REMEX_OK) {
            len += (size_t)snprintf(j->report + len, len < REPORT_MAX ? REPORT_MAX - len : 0,
                                    "%sbundle '%s': no snapshot: %s", len ? "; " : "", name, e.msg);
            j->report_warn = 1;
        } else if (made) {
            const char *spare[] = {version};
            pruned = bundle_prune_dir(dir, keep > 0 ? (size_t)keep : 5, spare, 1, &held);
            j->fetched++; /* snapshots made, counted on the loop */
            len += (size_t)snprintf(j->report + len, len < REPORT_MAX ? REPORT_MAX - len : 0,
                                    "%sbundle '%s': snapshot of version %s taken (%zu pruned, "
                                    "%zu kept for running tasks)",
                                    len ? "; " : "", name, version, pruned, held);
        }
        if (len >= REPORT_MAX)
            len = REPORT_MAX - 1;
    }
}

static void bjob_run(struct workq_job *wj, void *tctx)
{
    struct bjob *j = WORKQ_OF(wj, struct bjob, wj);
    (void)tctx; /* no per-thread state */
    if (j->kind == BJ_RESOLVE)
        run_resolve(j->b, j);
    else
        run_snapshot(j->b, j);
}

static void unlink_inflight(struct bundles *b, struct bjob *j)
{
    for (struct bjob **pp = &b->inflight; *pp; pp = &(*pp)->inflight)
        if (*pp == j) {
            *pp = j->inflight;
            return;
        }
}

/* A resolve job is back: each waiting task gets its folder (and hold) or the reason. */
static void deliver_resolve(struct bundles *b, struct bjob *j)
{
    if (j->fetched) {
        if (j->fetch_ok) {
            b->fetches++;
            log_info("bundle '%s': fetched commit %s in %" PRIu64 " ms (%zu task%s waited)",
                     j->name, j->version, j->fetch_ms, j->nwait, j->nwait == 1 ? "" : "s");
        } else {
            b->fetch_failures++;
            log_warn("%s", j->err.msg);
        }
    }
    if (j->nwait > 1)
        b->shared_waits += j->nwait - 1;
    for (size_t i = 0; i < j->nwait; i++) {
        struct wtask *t = j->waiters[i];
        const char *why = j->rc == REMEX_OK ? NULL : j->err.msg;
        if (!why && j->hold_dir && bundle_hold_dir(j->hold_dir, &t->bundle_fd) != REMEX_OK)
            why = "the version folder was pruned before the task could hold it: keep more "
                  "versions (dag_processor.keep_versions)";
        if (!why && !(t->cwd = strdup(j->path)))
            why = "out of memory";
        if (why && !t->prep_error)
            t->prep_error = strdup(why);
        j->cont(t);
        t->pending--;
        task_release(t);
    }
}

static void deliver_snapshot(struct bundles *b, struct bjob *j)
{
    b->snapshot_out = 0;
    b->snapshots += (uint64_t)j->fetched;
    if (j->report[0] && j->report_warn)
        log_warn("%s", j->report);
    else if (j->report[0])
        log_info("%s", j->report);
}

/* Loop: a job is back. While the worker stops, waiting tasks fail as "worker stopping",
 * also those whose job finished (nothing may be spawned). */
static void bjob_done(struct workq_job *wj, enum workq_end how)
{
    struct bjob *j = WORKQ_OF(wj, struct bjob, wj);
    struct bundles *b = j->b;
    if (how == WORKQ_CANCELLED || (b->stopping && j->kind == BJ_RESOLVE))
        j->rc = remex_seterr(&j->err, REMEX_ECLOSED, "worker stopping");
    unlink_inflight(b, j);
    if (j->kind == BJ_RESOLVE)
        deliver_resolve(b, j);
    else
        deliver_snapshot(b, j);
    job_free(j);
}

/* Queues j (and lists it in flight); non-zero with j not taken (queue full). */
static int submit(struct bundles *b, struct bjob *j)
{
    j->b = b;
    j->wj.run = bjob_run;
    j->wj.done = bjob_done;
    if (workq_submit(b->q, &j->wj, NULL) != REMEX_OK)
        return -1;
    j->inflight = b->inflight;
    b->inflight = j;
    return 0;
}

static void snapshot_now(struct bundles *b)
{
    struct bjob *j;
    if (b->snapshot_out || !(j = calloc(1, sizeof(*j))))
        return;
    j->kind = BJ_SNAPSHOT;
    if (submit(b, j) != 0)
        job_free(j); /* the next round tries again */
    else
        b->snapshot_out = 1;
}

static void on_snap_timer(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    snapshot_now(arg);
}

static int add_waiter(struct bjob *j, struct wtask *t)
{
    if (j->nwait == j->capwait) {
        size_t nc = j->capwait ? j->capwait * 2 : 4;
        struct wtask **v = realloc(j->waiters, nc * sizeof(*v));
        if (!v)
            return -1;
        j->waiters = v;
        j->capwait = nc;
    }
    j->waiters[j->nwait++] = t;
    t->pending++;
    return 0;
}

int bundles_resolve(struct wtask *t, void (*cont)(struct wtask *t))
{
    struct bundles *b = t->w->bundlesq;
    json_t *bo = json_object_get(t->asg, "bundle"); /* borrowed */
    const char *name = json_string_value(json_object_get(bo, "name"));
    const char *version = json_string_value(json_object_get(bo, "version"));
    if (t->cwd || t->prep_error)
        return 0;
    if (!name || !t->w->bundles || !b) {
        char msg[320];
        snprintf(msg, sizeof(msg), "bundle '%.250s' is not configured on this worker",
                 name ? name : "");
        t->prep_error = strdup(msg);
        return 0;
    }
    version = version ? version : "";
    for (struct bjob *j = b->inflight; j; j = j->inflight)
        if (j->kind == BJ_RESOLVE && strcmp(j->name, name) == 0 && strcmp(j->version, version) == 0)
            return add_waiter(j, t) == 0 ? 1 : (t->prep_error = strdup("out of memory"), 0);
    struct bjob *j = calloc(1, sizeof(*j));
    if (!j || !(j->name = strdup(name)) || !(j->version = strdup(version)) ||
        add_waiter(j, t) != 0) {
        job_free(j);
        t->prep_error = strdup("out of memory");
        return 0;
    }
    j->kind = BJ_RESOLVE;
    j->cont = cont;
    if (submit(b, j) != 0) {
        t->pending--;
        job_free(j);
        t->prep_error = strdup("too many bundle versions waiting to be fetched on this worker");
        return 0;
    }
    return 1;
}

remex_err bundles_start(struct worker *w, struct remex_error *e)
{
    struct bundles *b = calloc(1, sizeof(*b));
    if (!b)
        return remex_seterr(e, REMEX_ENOMEM, "bundle thread: out of memory");
    struct workq_opts o = {.name = "bundle thread", .threads = 1, .stack = BUNDLES_STACK};
    b->w = w;
    if (!(b->q = workq_new(w->loop, &o, e))) {
        free(b);
        return e->code;
    }
    w->bundlesq = b;
    for (size_t i = 0; bundle_name(w->bundles, i); i++)
        b->has_local |= bundle_snapshot_dir(w->bundles, bundle_name(w->bundles, i)) != NULL;
    if (b->has_local) {
        uint64_t every =
            w->r->cfg.dag_processor.refresh_ms ? w->r->cfg.dag_processor.refresh_ms : 30000;
        snapshot_now(b);
        b->snap_timer = evloop_timer_add(w->loop, every, every, on_snap_timer, b);
    }
    return REMEX_OK;
}

void bundles_cancel(struct worker *w)
{
    if (w->bundlesq)
        __atomic_store_n(&w->bundlesq->cancel, 1, __ATOMIC_RELAXED);
}

/* Joins the thread (it owns w->bundles), a fetch in progress cancelled first. */
void bundles_stop(struct worker *w)
{
    struct bundles *b = w->bundlesq;
    if (!b)
        return;
    if (b->snap_timer)
        evloop_timer_cancel(w->loop, b->snap_timer);
    __atomic_store_n(&b->cancel, 1, __ATOMIC_RELAXED);
    b->stopping = 1;
    workq_free(b->q, WORKQ_FOREVER);
    free(b);
    w->bundlesq = NULL;
}

void bundles_metrics(struct worker *w, struct buf *out)
{
    const struct bundles *b = w->bundlesq;
    if (!b)
        return;
    promtext_family(out, "remex_worker_bundle_fetches_total", "counter",
                    "Git bundle commits this worker fetched itself (missing checkouts).");
    promtext_sample(out, "remex_worker_bundle_fetches_total", NULL, 0, (double)b->fetches);
    promtext_family(out, "remex_worker_bundle_fetch_failures_total", "counter",
                    "Fetches of a missing commit that failed (the tasks failed with the reason).");
    promtext_sample(out, "remex_worker_bundle_fetch_failures_total", NULL, 0,
                    (double)b->fetch_failures);
    promtext_family(out, "remex_worker_bundle_shared_waits_total", "counter",
                    "Tasks that waited for a fetch or snapshot another task had started.");
    promtext_sample(out, "remex_worker_bundle_shared_waits_total", NULL, 0,
                    (double)b->shared_waits);
    promtext_family(out, "remex_worker_bundle_snapshots_total", "counter",
                    "Snapshots of versioned local bundles this worker took.");
    promtext_sample(out, "remex_worker_bundle_snapshots_total", NULL, 0, (double)b->snapshots);
}
