/*
 * Roles in their own containers (sentinel.roles): GET of each /healthz URL,
 * all at once on the role's loop, one attempt each within PROBE_TIMEOUT_MS.
 * 200 is up and ready; another status is up and not ready (warn); no answer
 * is down (fail). Probes carry no credentials, so plain http:// is allowed
 * to any host (pods are reached by their cluster addresses).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/http.h"
#include "remex/httploop.h"
#include "remex/log.h"
#include "remex/role.h"
#include "sentinel.h"

#define PROBE_TIMEOUT_MS 5000

struct probe {
    struct probes *ps;
    size_t idx;
    struct http_client *client;
    char path[1024];
    int inflight;
    long status; /* last answer, 0: none */
    char err[160];
    int answered; /* at least one round finished */
};

struct probes {
    struct sentinel *s;
    struct httploop *hl;
    size_t n;
    struct probe *p;
};

/* Splits "scheme://host[:port]/path" into a base and a path ("/" when absent). */
static int split_url(const char *url, char *base, size_t basesz, char *path, size_t pathsz)
{
    const char *sep = strstr(url, "://");
    if (!sep)
        return -1;
    const char *slash = strchr(sep + 3, '/');
    size_t bl = slash ? (size_t)(slash - url) : strlen(url);
    if (bl >= basesz || snprintf(path, pathsz, "%s", slash ? slash : "/") >= (int)pathsz)
        return -1;
    memcpy(base, url, bl);
    base[bl] = '\0';
    return 0;
}

struct probes *probes_new(struct sentinel *s, struct remex_error *e)
{
    const struct agentcfg_sentinel_role *rl = s->cfg->roles.items;
    struct probes *ps = calloc(1, sizeof(*ps));
    if (!ps || !(ps->p = calloc(s->cfg->roles.n, sizeof(*ps->p)))) {
        free(ps);
        remex_seterr(e, REMEX_ENOMEM, "out of memory");
        return NULL;
    }
    ps->s = s;
    ps->n = s->cfg->roles.n;
    if (!(ps->hl = httploop_new(s->loop, e))) {
        probes_free(ps);
        return NULL;
    }
    for (size_t i = 0; i < ps->n; i++) {
        char base[1024];
        struct probe *p = &ps->p[i];
        p->ps = ps;
        p->idx = i;
        if (split_url(rl[i].url, base, sizeof(base), p->path, sizeof(p->path)) != 0) {
            remex_seterr(e, REMEX_EINVAL, "%s: url: expected scheme://host:port/path", rl[i].name);
            probes_free(ps);
            return NULL;
        }
        struct http_client_opts o = {.base_url = base,
                                     .connect_timeout_ms = PROBE_TIMEOUT_MS,
                                     .timeout_ms = PROBE_TIMEOUT_MS,
                                     .max_response_bytes = 64 << 10,
                                     .ca_file = s->r->cfg.plane.ca_file,
                                     .proxy = "",
                                     .allow_insecure_http = 1,
                                     .max_attempts = 1};
        if (http_client_new(&o, &p->client, e) != REMEX_OK) {
            probes_free(ps);
            return NULL;
        }
    }
    return ps;
}

/* The roles check and s->status from the latest answers. */
static void grade(struct probes *ps)
{
    struct sentinel *s = ps->s;
    const struct agentcfg_sentinel_role *rl = s->cfg->roles.items;
    enum health_status worst = HEALTH_OK;
    char msg[HEALTH_MSG_MAX] = "";
    size_t len = 0, up = 0;
    memset(&s->status, 0, sizeof(s->status));
    for (size_t i = 0; i < ps->n && i < SUPSTATUS_ROLES_MAX; i++) {
        struct probe *p = &ps->p[i];
        struct supstatus_role *r = &s->status.roles[s->status.nroles++];
        snprintf(r->role, sizeof(r->role), "%s", rl[i].name);
        snprintf(r->instance, sizeof(r->instance), "%s", rl[i].name);
        r->slots = -1;
        r->state = p->status ? SUPSTATUS_UP : SUPSTATUS_STOPPED;
        r->ready = p->status == 200;
        enum health_status st = !p->answered ? HEALTH_WARN
                                : !p->status ? HEALTH_FAIL
                                : r->ready   ? HEALTH_OK
                                             : HEALTH_WARN;
        up += st == HEALTH_OK;
        if (st == HEALTH_OK)
            continue;
        if (st > worst)
            worst = st;
        if (len < sizeof(msg)) {
            int n = !p->answered ? snprintf(msg + len, sizeof(msg) - len, "%s%s: not probed yet",
                                            len ? "; " : "", rl[i].name)
                    : p->status  ? snprintf(msg + len, sizeof(msg) - len, "%s%s: HTTP %ld",
                                           len ? "; " : "", rl[i].name, p->status)
                                 : snprintf(msg + len, sizeof(msg) - len, "%s%s: %s",
                                           len ? "; " : "", rl[i].name, p->err);
            if (n > 0)
                len += (size_t)n;
        }
    }
    if (worst == HEALTH_OK)
        snprintf(msg, sizeof(msg), "%zu of %zu roles up and ready", up, ps->n);
    s->have_status = 1;
    health_set(&s->health, "roles", worst, "%s", msg);
}

static void probe_done(remex_err rc, struct http_response *resp, const struct remex_error *e,
                       void *arg)
{
    struct probe *p = arg;
    p->inflight = 0;
    p->answered = 1;
    p->status = rc == REMEX_OK ? resp->status : 0;
    if (rc != REMEX_OK)
        snprintf(p->err, sizeof(p->err), "%s", e ? e->msg : "no answer");
    grade(p->ps);
}

void probes_run(struct probes *ps)
{
    struct remex_error e;
    for (size_t i = 0; i < ps->n; i++) {
        struct probe *p = &ps->p[i];
        if (p->inflight)
            continue;
        struct http_request rq = {.method = "GET", .path = p->path};
        struct http_multi_done d = {.fn = probe_done, .arg = p};
        if (http_multi_start(httploop_multi(ps->hl), p->client, &rq, d, &e) == REMEX_OK) {
            p->inflight = 1;
        } else {
            p->answered = 1;
            p->status = 0;
            snprintf(p->err, sizeof(p->err), "%s", e.msg);
        }
    }
    grade(ps);
}

void probes_free(struct probes *ps)
{
    if (!ps)
        return;
    httploop_free(ps->hl); /* aborts transfers before their clients go */
    for (size_t i = 0; ps->p && i < ps->n; i++)
        http_client_free(ps->p[i].client);
    free(ps->p);
    free(ps);
}
