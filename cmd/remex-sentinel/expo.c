/*
 * /health and /metrics, built from the sentinel's last round (never from a
 * call made while the request waits).
 *
 *   /health   200 with every check while none fails; 503 with the failing
 *             ones ({"status":"fail","checks":[...]}), JSON
 *   /metrics  Prometheus text format (docs/sentinel.md lists every family)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/api.h"
#include "remex/evloop.h"
#include "remex/promtext.h"
#include "remex/role.h"
#include "sentinel.h"

/* Queues seen in the supervisor's status, with their summed capacity. */
struct queue_cap {
    const char *name;
    int64_t slots, free_slots;
};

#define FAMILY(b, n, t, h) promtext_family(b, n, t, h)

static void role_metrics(const struct sentinel *s, struct buf *b)
{
    const struct supstatus *st = &s->status;
    if (!st->nroles)
        return; /* a family without samples says nothing */
    FAMILY(b, "remex_agent_role_up", "gauge",
           "1 while the role's process is up (supervisor state up, or its /healthz answers).");
    for (size_t i = 0; i < st->nroles; i++) {
        const char *l[] = {"role", st->roles[i].role, "role_instance", st->roles[i].instance};
        promtext_sample(b, "remex_agent_role_up", l, 2, st->roles[i].state == SUPSTATUS_UP);
    }
    FAMILY(b, "remex_agent_role_ready", "gauge", "1 while the role is up and ready.");
    for (size_t i = 0; i < st->nroles; i++) {
        const char *l[] = {"role", st->roles[i].role, "role_instance", st->roles[i].instance};
        promtext_sample(b, "remex_agent_role_ready", l, 2,
                        st->roles[i].state == SUPSTATUS_UP && st->roles[i].ready);
    }
    if (s->probes)
        return; /* a /healthz answer carries no state, restarts or uptime */
    FAMILY(b, "remex_agent_role_state", "gauge",
           "The role's supervisor state: 1 for the current one of starting, up, backoff, "
           "fatal, stopping, stopped.");
    for (size_t i = 0; i < st->nroles; i++)
        for (int k = SUPSTATUS_STARTING; k <= SUPSTATUS_STOPPED; k++) {
            const char *l[] = {"role",          st->roles[i].role,
                               "role_instance", st->roles[i].instance,
                               "state",         supstatus_state_name((enum supstatus_role_state)k)};
            promtext_sample(b, "remex_agent_role_state", l, 3, (int)st->roles[i].state == k);
        }
    FAMILY(b, "remex_agent_role_restarts_total", "counter",
           "Restarts of the role by the supervisor.");
    for (size_t i = 0; i < st->nroles; i++) {
        const char *l[] = {"role", st->roles[i].role, "role_instance", st->roles[i].instance};
        promtext_sample(b, "remex_agent_role_restarts_total", l, 2, (double)st->roles[i].restarts);
    }
    FAMILY(b, "remex_agent_role_uptime_seconds", "gauge", "Time since the role last started.");
    for (size_t i = 0; i < st->nroles; i++) {
        const char *l[] = {"role", st->roles[i].role, "role_instance", st->roles[i].instance};
        promtext_sample(b, "remex_agent_role_uptime_seconds", l, 2, st->roles[i].uptime_s);
    }
}

/* Free and busy slots per queue, summed over the workers serving it (when carried). */
static void slot_metrics(const struct sentinel *s, struct buf *b)
{
    struct queue_cap q[SUPSTATUS_ROLES_MAX];
    size_t nq = 0;
    for (size_t i = 0; i < s->status.nroles; i++) {
        const struct supstatus_role *r = &s->status.roles[i];
        for (size_t k = 0; r->slots >= 0 && k < r->nqueues; k++) {
            size_t j = 0;
            while (j < nq && strcmp(q[j].name, r->queues[k]) != 0)
                j++;
            if (j == nq) {
                if (nq == SUPSTATUS_ROLES_MAX)
                    continue;
                q[nq++] = (struct queue_cap){.name = r->queues[k]};
            }
            q[j].slots += r->slots;
            q[j].free_slots += r->state == SUPSTATUS_UP ? r->free_slots : 0;
        }
    }
    if (!nq)
        return;
    FAMILY(b, "remex_agent_queue_slots_free", "gauge",
           "Free worker slots serving the queue (workers that are not up count none).");
    for (size_t j = 0; j < nq; j++)
        promtext_sample(b, "remex_agent_queue_slots_free", (const char *[]){"queue", q[j].name}, 1,
                        (double)q[j].free_slots);
    FAMILY(b, "remex_agent_queue_slots_busy", "gauge", "Worker slots serving the queue in use.");
    for (size_t j = 0; j < nq; j++)
        promtext_sample(b, "remex_agent_queue_slots_busy", (const char *[]){"queue", q[j].name}, 1,
                        (double)(q[j].slots - q[j].free_slots));
}

/* The plane's queued task instances on the workers' queues (the autoscaler's signal). */
static void depth_metrics(const struct sentinel *s, struct buf *b)
{
    size_t i;
    json_t *q;
    if (!json_array_size(s->depth))
        return;
    FAMILY(b, "remex_agent_queue_depth", "gauge",
           "Task instances queued on the plane for the queue (the workers' queues).");
    json_array_foreach(s->depth, i, q)
    {
        const char *name = json_string_value(json_object_get(q, "name"));
        json_t *n = json_object_get(q, "queued");
        if (name && json_is_integer(n))
            promtext_sample(b, "remex_agent_queue_depth", (const char *[]){"queue", name}, 1,
                            (double)json_integer_value(n));
    }
}

static void check_metrics(const struct sentinel *s, struct buf *b)
{
    FAMILY(b, "remex_sentinel_check_status", "gauge",
           "Status of each health check: 0 ok, 1 warn, 2 fail.");
    for (size_t i = 0; i < s->health.n; i++)
        promtext_sample(b, "remex_sentinel_check_status",
                        (const char *[]){"check", s->health.checks[i].name}, 1,
                        (double)s->health.checks[i].status);
    FAMILY(b, "remex_sentinel_healthy", "gauge", "1 while no check fails (/health answers 200).");
    promtext_sample(b, "remex_sentinel_healthy", NULL, 0,
                    health_overall(&s->health) != HEALTH_FAIL);
}

static void plane_metrics(const struct sentinel *s, struct buf *b)
{
    FAMILY(b, "remex_agent_plane_up", "gauge", "1 while the plane answers the sentinel's calls.");
    promtext_sample(b, "remex_agent_plane_up", NULL, 0, api_reachable(s->api));
    if (s->rtt_s >= 0) {
        FAMILY(b, "remex_agent_plane_rtt_seconds", "gauge",
               "Round trip of the sentinel's last health report to the plane.");
        promtext_sample(b, "remex_agent_plane_rtt_seconds", NULL, 0, s->rtt_s);
    }
    FAMILY(b, "remex_sentinel_reports_total", "counter", "Health reports sent to the plane.");
    promtext_sample(b, "remex_sentinel_reports_total", (const char *[]){"result", "ok"}, 1,
                    (double)s->reports_ok);
    promtext_sample(b, "remex_sentinel_reports_total", (const char *[]){"result", "failed"}, 1,
                    (double)s->reports_failed);
    if (s->token_expires_ms) {
        FAMILY(b, "remex_agent_token_expiry_timestamp_seconds", "gauge",
               "When the agent token expires (sentinel.token_expires_at), Unix time.");
        promtext_sample(b, "remex_agent_token_expiry_timestamp_seconds", NULL, 0,
                        (double)(s->token_expires_ms / 1000));
    }
    if (s->tls_not_after_ms) {
        FAMILY(b, "remex_agent_plane_certificate_expiry_timestamp_seconds", "gauge",
               "When the plane's TLS certificate expires (notAfter), Unix time.");
        promtext_sample(b, "remex_agent_plane_certificate_expiry_timestamp_seconds", NULL, 0,
                        (double)(s->tls_not_after_ms / 1000));
    }
    if (!s->sup)
        return;
    FAMILY(b, "remex_agent_supervisor_up", "gauge",
           "1 while the supervisor's control socket answers.");
    promtext_sample(b, "remex_agent_supervisor_up", NULL, 0, s->have_status);
}

static void disk_metrics(const struct sentinel *s, struct buf *b)
{
    FAMILY(b, "remex_agent_disk_free_bytes", "gauge",
           "Space available to the agent in the file system of a watched folder.");
    for (size_t i = 0; i < s->ndirs; i++)
        if (s->dirs[i].ok)
            promtext_sample(b, "remex_agent_disk_free_bytes",
                            (const char *[]){"folder", s->dirs[i].kind, "path", s->dirs[i].path}, 2,
                            (double)s->dirs[i].avail);
    FAMILY(b, "remex_agent_disk_size_bytes", "gauge",
           "Size of the file system of a watched folder.");
    for (size_t i = 0; i < s->ndirs; i++)
        if (s->dirs[i].ok)
            promtext_sample(b, "remex_agent_disk_size_bytes",
                            (const char *[]){"folder", s->dirs[i].kind, "path", s->dirs[i].path}, 2,
                            (double)s->dirs[i].total);
}

void expo_metrics(struct sentinel *s, struct buf *out)
{
    role_metrics(s, out);
    slot_metrics(s, out);
    depth_metrics(s, out);
    check_metrics(s, out);
    plane_metrics(s, out);
    disk_metrics(s, out);
}

void expo_handler(void *ud, const char *path, struct rolehttp_resp *resp)
{
    struct sentinel *s = ud;
    if (strcmp(path, "/metrics") == 0) {
        resp->content_type = PROMTEXT_CONTENT_TYPE;
        expo_metrics(s, &resp->body);
        return;
    }
    if (strcmp(path, "/health") == 0 || strcmp(path, "/healthz") == 0) {
        int failing = health_overall(&s->health) == HEALTH_FAIL;
        json_t *j = health_json(&s->health, !failing);
        char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        resp->status = txt ? (failing ? 503 : 200) : 500;
        resp->content_type = "application/json";
        buf_puts(&resp->body, txt ? txt : "{\"status\":\"fail\",\"checks\":[]}");
        buf_putc(&resp->body, '\n');
        free(txt);
        return;
    }
    resp->status = 404;
    buf_puts(&resp->body, "not found: try /health or /metrics\n");
}
