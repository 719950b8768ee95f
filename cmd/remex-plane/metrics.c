/*
 * /metrics in the Prometheus text format (version 0.0.4): HTTP requests by
 * route pattern, method and status code (count and duration histogram),
 * agents by state,
 * then whatever the scheduler appends. Counters live behind their own mutex so
 * counting never takes plane.mu.
 */
#include <stdlib.h>
#include <string.h>

#include "plane.h"
#include "remex/log.h"

#define METRICS_MAX_SERIES 1024
#define METRICS_OUT_MAX    (4 * 1024 * 1024)

/* Upper bounds (seconds) of the request duration histogram; long polls
 * take up to longpoll_max (30 s by default). */
static const double req_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                     0.5,   1,      2.5,   5,    10,    30,   60};
#define REQ_BUCKETS (sizeof(req_buckets) / sizeof(req_buckets[0]))

struct series {
    const char *method;  /* static (MHD or route table) */
    const char *pattern; /* static */
    int status;
    uint64_t count;
    double seconds;
    uint64_t le[REQ_BUCKETS]; /* requests of at most req_buckets[i] seconds */
};

/* Upper bounds (seconds) of the heartbeat lock-wait histogram. */
static const double wait_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                      0.01,   0.025,   0.05,   0.1,   0.25,   1};
#define WAIT_BUCKETS (sizeof(wait_buckets) / sizeof(wait_buckets[0]))

struct metrics {
    pthread_mutex_t mu;
    uint64_t hb_wait_le[WAIT_BUCKETS]; /* heartbeats that waited at most wait_buckets[i] */
    uint64_t hb_wait_count;
    double hb_wait_sum;
    size_t n;
    uint64_t dropped; /* requests not counted: series table full */
    struct series s[METRICS_MAX_SERIES];
};

remex_err metrics_init(struct plane *p)
{
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return REMEX_ENOMEM;
    pthread_mutex_init(&m->mu, NULL);
    p->metrics = m;
    return REMEX_OK;
}

void metrics_free(struct plane *p)
{
    struct metrics *m = p->metrics;
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
    p->metrics = NULL;
}

/* Methods are interned to static strings so that series keys compare by value. */
static const char *method_name(const char *m)
{
    static const char *const known[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(m, known[i]) == 0)
            return known[i];
    return "other";
}

void metrics_count(struct plane *p, const char *method, const char *pattern, int status,
                   double seconds)
{
    struct metrics *m = p->metrics;
    if (!m)
        return;
    method = method_name(method);
    pthread_mutex_lock(&m->mu);
    size_t i;
    for (i = 0; i < m->n; i++)
        if (m->s[i].status == status && m->s[i].method == method &&
            strcmp(m->s[i].pattern, pattern) == 0)
            break;
    if (i == m->n) {
        if (m->n == METRICS_MAX_SERIES) {
            m->dropped++;
            pthread_mutex_unlock(&m->mu);
            return;
        }
        m->s[m->n++] = (struct series){method, pattern, status, 0, 0.0, {0}};
    }
    m->s[i].count++;
    m->s[i].seconds += seconds;
    for (size_t b = 0; b < REQ_BUCKETS; b++)
        if (seconds <= req_buckets[b])
            m->s[i].le[b]++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_heartbeat_wait(struct plane *p, double seconds)
{
    struct metrics *m = p->metrics;
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->hb_wait_count++;
    m->hb_wait_sum += seconds;
    for (size_t b = 0; b < WAIT_BUCKETS; b++)
        if (seconds <= wait_buckets[b])
            m->hb_wait_le[b]++;
    pthread_mutex_unlock(&m->mu);
}

/* remex_plane_heartbeat_lock_wait_seconds: where a heartbeat's time goes,
 * against remex_plane_http_request_duration_seconds of its route (the
 * plane's part) and the client's figure (the rest: waiting for its HTTP
 * thread or a core). Under m->mu. */
static void wait_metrics(struct metrics *m, struct buf *out)
{
    buf_puts(out, "# HELP remex_plane_heartbeat_lock_wait_seconds Time a heartbeat waited for"
                  " the plane's lock.\n"
                  "# TYPE remex_plane_heartbeat_lock_wait_seconds histogram\n");
    for (size_t b = 0; b < WAIT_BUCKETS; b++)
        buf_printf(out, "remex_plane_heartbeat_lock_wait_seconds_bucket{le=\"%g\"} %llu\n",
                   wait_buckets[b], (unsigned long long)m->hb_wait_le[b]);
    buf_printf(out,
               "remex_plane_heartbeat_lock_wait_seconds_bucket{le=\"+Inf\"} %llu\n"
               "remex_plane_heartbeat_lock_wait_seconds_sum %.6f\n"
               "remex_plane_heartbeat_lock_wait_seconds_count %llu\n",
               (unsigned long long)m->hb_wait_count, m->hb_wait_sum,
               (unsigned long long)m->hb_wait_count);
}

/* Requests by method, route pattern and status code (label "code", as
 * Prometheus' own client libraries name it), and their duration as a
 * histogram with the same labels. */
static void http_metrics(struct metrics *m, struct buf *out)
{
    buf_puts(out, "# HELP remex_plane_http_requests_total HTTP requests by route and status.\n"
                  "# TYPE remex_plane_http_requests_total counter\n");
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n; i++)
        buf_printf(out,
                   "remex_plane_http_requests_total{method=\"%s\",route=\"%s\",code=\"%d\"}"
                   " %llu\n",
                   m->s[i].method, m->s[i].pattern, m->s[i].status,
                   (unsigned long long)m->s[i].count);
    buf_puts(out, "# HELP remex_plane_http_request_duration_seconds Time to serve a request (a long"
                  " poll's included).\n"
                  "# TYPE remex_plane_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < m->n; i++) {
        const struct series *x = &m->s[i];
        for (size_t b = 0; b < REQ_BUCKETS; b++)
            buf_printf(out,
                       "remex_plane_http_request_duration_seconds_bucket{method=\"%s\","
                       "route=\"%s\",code=\"%d\",le=\"%g\"} %llu\n",
                       x->method, x->pattern, x->status, req_buckets[b],
                       (unsigned long long)x->le[b]);
        buf_printf(out,
                   "remex_plane_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                   "code=\"%d\",le=\"+Inf\"} %llu\n"
                   "remex_plane_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\","
                   "code=\"%d\"} %.6f\n"
                   "remex_plane_http_request_duration_seconds_count{method=\"%s\",route=\"%s\","
                   "code=\"%d\"} %llu\n",
                   x->method, x->pattern, x->status, (unsigned long long)x->count, x->method,
                   x->pattern, x->status, x->seconds, x->method, x->pattern, x->status,
                   (unsigned long long)x->count);
    }
    buf_printf(out,
               "# HELP remex_plane_http_requests_uncounted_total Requests past the series cap.\n"
               "# TYPE remex_plane_http_requests_uncounted_total counter\n"
               "remex_plane_http_requests_uncounted_total %llu\n",
               (unsigned long long)m->dropped);
    wait_metrics(m, out);
    pthread_mutex_unlock(&m->mu);
}

/* Agent states are short [a-z] words (decode.c and agents.c), safe as label values. */
static void agent_metrics(struct plane *p, struct buf *out)
{
    sqlite3_stmt *st = NULL;
    static const char *const always[] = {"lost", "offline"};
    int seen[2] = {0, 0};
    buf_puts(out, "# HELP remex_plane_agents Agents by state.\n# TYPE remex_plane_agents gauge\n");
    if (sqlite3_prepare_v2(p->db, "SELECT state, COUNT(*) FROM agents GROUP BY state ORDER BY 1",
                           -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *s = (const char *)sqlite3_column_text(st, 0);
            if (!s || strspn(s, "abcdefghijklmnopqrstuvwxyz_") != strlen(s))
                continue;
            for (int i = 0; i < 2; i++)
                seen[i] |= strcmp(s, always[i]) == 0;
            buf_printf(out, "remex_plane_agents{state=\"%s\"} %lld\n", s,
                       (long long)sqlite3_column_int64(st, 1));
        }
    }
    sqlite3_finalize(st);
    for (int i = 0; i < 2; i++)
        if (!seen[i])
            buf_printf(out, "remex_plane_agents{state=\"%s\"} 0\n", always[i]);
}

/* Parked long polls and how many were resumed by a wake-up (their deadline
 * aside): with targeted wake-ups the second grows with the work handed out,
 * not with work times polls. */
static void park_metrics(struct plane *p, struct buf *out)
{
    static const char *const kinds[PLANE_WAIT_KINDS] = {"work", "trigger"};
    size_t parked[PLANE_WAIT_KINDS];
    uint64_t woken[PLANE_WAIT_KINDS];
    for (int k = 0; k < PLANE_WAIT_KINDS; k++)
        plane_park_stats(p, (enum plane_wait)k, &parked[k], &woken[k]);
    buf_puts(out, "# HELP remex_plane_long_polls_parked Long polls waiting, by kind.\n"
                  "# TYPE remex_plane_long_polls_parked gauge\n");
    for (int k = 0; k < PLANE_WAIT_KINDS; k++)
        buf_printf(out, "remex_plane_long_polls_parked{kind=\"%s\"} %zu\n", kinds[k], parked[k]);
    buf_puts(out, "# HELP remex_plane_long_poll_wakeups_total Long polls resumed by a wake-up.\n"
                  "# TYPE remex_plane_long_poll_wakeups_total counter\n");
    for (int k = 0; k < PLANE_WAIT_KINDS; k++)
        buf_printf(out, "remex_plane_long_poll_wakeups_total{kind=\"%s\"} %llu\n", kinds[k],
                   (unsigned long long)woken[k]);
}

void metrics_handle(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    struct buf out = BUF_INIT(METRICS_OUT_MAX);
    (void)rq;
    if (p->metrics)
        http_metrics(p->metrics, &out);
    pthread_mutex_lock(&p->mu);
    agent_metrics(p, &out);
    park_metrics(p, &out);
    sched_metrics(p, &out);
    pthread_mutex_unlock(&p->mu);
    size_t len = 0;
    char *text = buf_detach(&out, &len);
    if (!text) {
        plane_error(rs, 500, "internal", "out of memory");
        return;
    }
    rs->status = 200;
    rs->text = text;
    rs->text_len = len;
    rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
