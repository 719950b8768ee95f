/*
 * Memory limits of tasks: which mechanism enforces them, and the cgroups it
 * needs.
 *
 * auto picks the first usable of:
 *  - cgroup2: worker.cgroup_parent is a writable cgroup v2 directory with the
 *    memory controller enabled for its children; task cgroups go directly
 *    under it (ti<ID>-<TRY>).
 *  - cgroup1: the cgroup v1 memory controller is mounted and this process's
 *    own memory cgroup (from /proc/self/cgroup and /proc/self/mountinfo)
 *    accepts children. The worker creates remex-worker-<pid> there and the
 *    task cgroups below it; it removes the whole subtree at exit. A worker
 *    that crashed leaves its remex-worker-<pid>: the next start in the same
 *    cgroup removes every one whose pid no longer runs (or is its own pid,
 *    reused), killing what is left in them. Workers sharing a memory cgroup
 *    are assumed to share a pid namespace.
 *  - rlimit: RLIMIT_AS per task.
 * The choice and why the better ones were not usable is logged once
 * ("memory limits: cgroup1 (/sys/fs/cgroup/memory/...); cgroup2: ...").
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/evloop.h"
#include "remex/log.h"
#include "worker.h"

#define CG_OWN_PREFIX     "remex-worker-"
#define CG_RETRY_EVERY_MS 50
#define CG_RETRY_MAX      100  /* 5 s of retries, then left for the exit cleanup */
#define CG_PURGE_MS       3000 /* bounded wait for a subtree's processes at start/exit */

struct cg_retry {
    struct cg_retry *next;
    struct proc_cgroup cg;
    int tries;
};

/* Removes remex-worker-<pid> folders under dir whose worker is gone. */
static void sweep_stale(const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *d;

    if (dp == NULL)
        return;
    while ((d = readdir(dp)) != NULL) {
        const char *num = d->d_name + strlen(CG_OWN_PREFIX);
        char *end, path[4096 + 300];
        struct remex_error e;
        if (strncmp(d->d_name, CG_OWN_PREFIX, strlen(CG_OWN_PREFIX)) != 0 || *num < '1' ||
            *num > '9')
            continue;
        errno = 0;
        long pid = strtol(num, &end, 10);
        if (errno != 0 || *end != '\0' || pid <= 0 || pid > INT32_MAX)
            continue;
        if (pid != (long)getpid() && !(kill((pid_t)pid, 0) != 0 && errno == ESRCH))
            continue; /* a running worker's */
        snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
        if (proc_cgroup_purge(path, CG_PURGE_MS, &e) == REMEX_OK)
            log_info("memory limits: removed stale cgroup %s of a worker that is gone", path);
        else
            log_warn("memory limits: stale cgroup %s: %s", path, e.msg);
    }
    closedir(dp);
}

static remex_err setup_cgroup1(struct worker *w, struct remex_error *e)
{
    char own[4096], name[64];
    remex_err rc;

    rc = proc_cgroup_v1_locate(NULL, NULL, own, sizeof(own), e);
    if (rc == REMEX_OK)
        rc = proc_cgroup_v1_probe(own, e);
    if (rc != REMEX_OK)
        return rc;
    sweep_stale(own);
    snprintf(name, sizeof(name), CG_OWN_PREFIX "%d", (int)getpid());
    rc = proc_cgroup_create(&w->cg_own, own, name, NULL, e);
    if (rc != REMEX_OK)
        return rc;
    close(w->cg_own.procs_fd); /* nothing joins the parent itself */
    w->cg_own.procs_fd = -1;
    snprintf(w->cg_parent, sizeof(w->cg_parent), "%s", w->cg_own.path);
    return REMEX_OK;
}

remex_err memlimit_init(struct worker *w, struct remex_error *e)
{
    int mode = w->cfg->memory_enforcement;
    const char *forced = mode == AGENTCFG_MEM_AUTO ? "" : " (forced by memory_enforcement)";
    char why2[REMEX_ERRMSG_MAX + 16] = "", why1[REMEX_ERRMSG_MAX + 16] = "";
    struct remex_error ce;

    w->cg_parent[0] = '\0';
    w->cg_own.path[0] = '\0';
    w->cg_own.procs_fd = -1;
    if (mode == AGENTCFG_MEM_AUTO || mode == AGENTCFG_MEM_CGROUP2) {
        if (proc_cgroup_probe(w->cfg->cgroup_parent, PROC_CG_MEMORY, &ce) == REMEX_OK) {
            w->memlimit_mech = "cgroup2";
            snprintf(w->cg_parent, sizeof(w->cg_parent), "%s", w->cfg->cgroup_parent);
            log_info("memory limits: cgroup2 (%s)%s", w->cg_parent, forced);
            return REMEX_OK;
        }
        if (mode == AGENTCFG_MEM_CGROUP2)
            return remex_seterr(e, REMEX_EUNSUPPORTED,
                                "memory_enforcement is cgroup2 but cgroup v2 is not usable: %s",
                                ce.msg);
        snprintf(why2, sizeof(why2), "; cgroup v2 not used (%s)", ce.msg);
    }
    if (mode == AGENTCFG_MEM_AUTO || mode == AGENTCFG_MEM_CGROUP1) {
        if (setup_cgroup1(w, &ce) == REMEX_OK) {
            w->memlimit_mech = "cgroup1";
            log_info("memory limits: cgroup1 (%s)%s%s", w->cg_parent, forced, why2);
            return REMEX_OK;
        }
        if (mode == AGENTCFG_MEM_CGROUP1)
            return remex_seterr(e, REMEX_EUNSUPPORTED,
                                "memory_enforcement is cgroup1 but cgroup v1 is not usable: %s",
                                ce.msg);
        snprintf(why1, sizeof(why1), "; cgroup v1 not used (%s)", ce.msg);
    }
    w->memlimit_mech = "rlimit-as";
    log_info("memory limits: rlimit-as (RLIMIT_AS per task)%s%s%s", forced, why2, why1);
    return REMEX_OK;
}

static void on_retry_timer(struct evloop *loop, uint64_t id, void *arg)
{
    (void)id;
    struct worker *w = arg;
    struct cg_retry **pp = &w->cg_retry;

    while (*pp != NULL) {
        struct cg_retry *r = *pp;
        struct remex_error e;
        remex_err rc = proc_cgroup_remove(&r->cg, &e);
        if (rc == REMEX_EAGAIN && ++r->tries < CG_RETRY_MAX) {
            proc_cgroup_kill(&r->cg, NULL);
            pp = &r->next;
            continue;
        }
        if (rc != REMEX_OK)
            log_warn("%s; left for the exit cleanup", e.msg);
        *pp = r->next;
        free(r);
    }
    if (w->cg_retry == NULL && w->cg_timer) {
        evloop_timer_cancel(loop, w->cg_timer);
        w->cg_timer = 0;
    }
}

void memlimit_release(struct worker *w, struct proc_cgroup *cg)
{
    struct remex_error e;
    struct cg_retry *r;
    remex_err rc = proc_cgroup_remove(cg, &e);

    if (rc == REMEX_OK)
        return;
    if (rc != REMEX_EAGAIN) {
        log_warn("%s", e.msg);
        return;
    }
    /* Members killed with the task may still be exiting. */
    proc_cgroup_kill(cg, NULL);
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        log_warn("%s; left for the exit cleanup", e.msg);
        return;
    }
    r->cg = *cg;
    r->next = w->cg_retry;
    w->cg_retry = r;
    cg->path[0] = '\0';
    if (!w->cg_timer && w->loop)
        w->cg_timer =
            evloop_timer_add(w->loop, CG_RETRY_EVERY_MS, CG_RETRY_EVERY_MS, on_retry_timer, w);
}

void memlimit_shutdown(struct worker *w)
{
    struct remex_error e;

    if (w->cg_timer && w->loop)
        evloop_timer_cancel(w->loop, w->cg_timer);
    w->cg_timer = 0;
    while (w->cg_retry != NULL) {
        struct cg_retry *r = w->cg_retry;
        w->cg_retry = r->next;
        if (proc_cgroup_purge(r->cg.path, CG_PURGE_MS, &e) != REMEX_OK)
            log_warn("%s", e.msg);
        free(r);
    }
    if (w->cg_own.path[0] == '\0')
        return;
    if (proc_cgroup_purge(w->cg_own.path, CG_PURGE_MS, &e) != REMEX_OK)
        log_warn("memory limits: %s", e.msg);
    w->cg_own.path[0] = '\0';
}
