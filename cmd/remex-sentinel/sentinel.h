/*
 * remex-sentinel: internal interfaces between its files.
 *
 *   main.c     role and API hooks, the check tick, the health report to the plane
 *   checks.c   the checks graded from this process (plane, token, secrets, XCom store,
 *              bundles, disk, TLS certificate)
 *   bgcheck.c  the checks that call remote services (secrets, XCom store), each on a
 *              thread of its own, graded on the loop when they end or at their deadline
 *   supctl.c   the supervisor's control socket (status of the co-located roles)
 *   probe.c    roles in their own containers, through their /healthz
 *   tlsprobe.c the plane's TLS certificate (notAfter), non-blocking OpenSSL
 *   expo.c     /health and /metrics
 *
 * Everything runs on the role's loop; nothing here blocks it (file checks
 * are single system calls on local folders; the blocking calls of the
 * secrets and xcom_store checks run on their bgcheck threads).
 */
#ifndef REMEX_SENTINEL_H
#define REMEX_SENTINEL_H

#include <jansson.h>
#include <stdint.h>

#include "remex/agentcfg.h"
#include "remex/buf.h"
#include "remex/health.h"
#include "remex/rolehttp.h"
#include "remex/supstatus.h"

struct role;
struct evloop;
struct api_client;
struct rolehttp;
struct secrets;
struct objstore;
struct supctl;
struct probes;
struct tlsprobe;
struct bgcheck;

#define SENT_DIRS_MAX 64

/* One folder whose free space is watched. */
struct sent_dir {
    char kind[64]; /* "state", "logs", "bundle:<name>" (a bounded metrics label) */
    const char *path;
    int ok; /* statvfs succeeded at the last tick */
    uint64_t avail, total;
};

struct sentinel {
    struct role *r;
    const struct agentcfg_sentinel *cfg;
    struct evloop *loop;
    struct api_client *api;
    struct rolehttp *http;
    struct health_set health;
    uint64_t tick_timer;
    uint64_t ticks;

    /* plane */
    int report_inflight;
    int report_again; /* a grade changed while a report was in flight: send once it ends */
    uint64_t report_started_ms;
    double rtt_s;       /* last health report's round trip, -1 before the first */
    long last_status;   /* HTTP status of the last report (0: none or no response) */
    char last_err[256]; /* why the last report failed, "" when it did not */
    uint64_t reports_ok, reports_failed;

    /* token */
    int64_t token_expires_ms; /* sentinel.token_expires_at, 0: unknown */

    /* roles */
    struct supctl *sup;    /* NULL when sentinel.roles lists /healthz URLs */
    struct probes *probes; /* NULL when the control socket is used */
    struct supstatus status;
    int have_status;      /* status is the supervisor's last answer */
    char status_err[256]; /* why the last query failed */

    /* TLS */
    struct tlsprobe *tls; /* NULL for an http:// plane */
    int64_t tls_not_after_ms;
    char tls_err[256];

    /* backends: the secrets and xcom_store checks, each on its own thread */
    struct bgcheck *secrets_chk;
    struct bgcheck *xcom_chk;

    struct sent_dir dirs[SENT_DIRS_MAX];
    size_t ndirs;

    /* queue depth of the workers' queues (GET /api/v1/queues/depth), last answer */
    int depth_inflight;
    json_t *depth; /* owned: [{name, queued}], or NULL before the first answer */
};

/* main.c: the round period (sentinel.interval, else the plane's heartbeat interval). */
uint64_t sentinel_interval_ms(const struct sentinel *s);
/* main.c: sends the health report now, or once the one in flight has ended. */
void sentinel_report(struct sentinel *s);

/* checks.c: the checks graded from this process, into s->health. */
remex_err checks_init(struct sentinel *s, struct remex_error *e);
void checks_run(struct sentinel *s);
void checks_free(struct sentinel *s);
/* Grades the roles check from the last supervisor status or probes. */
void checks_roles(struct sentinel *s);

/* bgcheck.c: a blocking check on a thread of its own (contract in bgcheck.c). */
struct bgcheck_ops {
    const char *name; /* the check's name in s->health */
    /* On the check's thread: the work, graded into *st and msg; may report bgcheck_step. */
    void (*run)(struct bgcheck *c, void *ctx, enum health_status *st, char *msg, size_t cap);
    /* On the loop at the deadline, during the run: what is still running ("backend vault"),
     * from the step; reads only fields of ctx that no run changes. */
    void (*stuck)(void *ctx, unsigned step, char *out, size_t cap);
    void (*free_ctx)(void *ctx); /* NULL: nothing to free */
};
/* Starts the thread; ctx is owned by the check from now on (freed on failure too). */
struct bgcheck *bgcheck_new(struct sentinel *s, const struct bgcheck_ops *ops, void *ctx,
                            struct remex_error *e);
/* The ctx, for the loop to touch only while bgcheck_busy() is 0. */
void *bgcheck_ctx(struct bgcheck *c);
int bgcheck_busy(const struct bgcheck *c);
/* Starts a run graded fail after deadline_ms unless it ended; 0 (nothing done) while one runs. */
int bgcheck_start(struct bgcheck *c, uint64_t deadline_ms);
/* On the check's thread: the run's progress, passed to ops->stuck at the deadline. */
void bgcheck_step(struct bgcheck *c, unsigned step);
/* Asks the thread to end (a run in flight is not graded any more); no wait. */
void bgcheck_stop(struct bgcheck *c);
/*
 * Stops the thread, waiting for a run to end until until_ms at most (timeutil_mono_ms
 * time); past it the thread is left to free the check when its call returns.
 */
void bgcheck_free(struct bgcheck *c, uint64_t until_ms);

/* supctl.c: the supervisor's status, one query at a time (bounded by 5 s). */
struct supctl *supctl_new(struct sentinel *s, const char *path);
/* Starts a query unless one is in flight; the answer lands in s->status and the roles check. */
void supctl_query(struct supctl *c);
void supctl_free(struct supctl *c);

/* probe.c: GET each sentinel.roles[] URL; results land in s->status (as roles). */
struct probes *probes_new(struct sentinel *s, struct remex_error *e);
void probes_run(struct probes *p);
void probes_free(struct probes *p);

/* tlsprobe.c: the plane's certificate; results land in s->tls_not_after_ms / tls_err. */
struct tlsprobe *tlsprobe_new(struct sentinel *s, const char *url, struct remex_error *e);
void tlsprobe_run(struct tlsprobe *t);
void tlsprobe_free(struct tlsprobe *t);

/* expo.c: the HTTP handler of /health and /metrics. */
void expo_metrics(struct sentinel *s, struct buf *out);
void expo_handler(void *ud, const char *path, struct rolehttp_resp *resp);

#endif
