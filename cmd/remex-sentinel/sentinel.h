/*
 * remex-sentinel: internal interfaces between its files.
 *
 *   main.c     role and API hooks, the check tick, the health report to the plane
 *   checks.c   the checks graded from this process (plane, token, secrets, XCom store,
 *              bundles, disk, TLS certificate)
 *   supctl.c   the supervisor's control socket (status of the co-located roles)
 *   probe.c    roles in their own containers, through their /healthz
 *   tlsprobe.c the plane's TLS certificate (notAfter), non-blocking OpenSSL
 *   expo.c     /health and /metrics
 *
 * Everything runs on the role's loop; nothing here blocks it (file checks
 * are single system calls on local folders).
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

    /* backends */
    struct secrets *secrets;
    struct objstore *xstore;

    struct sent_dir dirs[SENT_DIRS_MAX];
    size_t ndirs;

    /* queue depth of the workers' queues (GET /api/v1/queues/depth), last answer */
    int depth_inflight;
    json_t *depth; /* owned: [{name, queued}], or NULL before the first answer */
};

/* checks.c: the checks graded from this process, into s->health. */
void checks_init(struct sentinel *s);
void checks_run(struct sentinel *s);
void checks_free(struct sentinel *s);
/* Grades the roles check from the last supervisor status or probes. */
void checks_roles(struct sentinel *s);

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
