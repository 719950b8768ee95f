/*
 * HTTP front: libmicrohttpd with epoll and a pool of cfg.threads event-loop
 * threads (MHD_USE_EPOLL_INTERNAL_THREAD, MHD_OPTION_THREAD_POOL_SIZE); a
 * request is read, handled and answered by the thread that owns its
 * connection. Routing over the route tables with {param} captures, body cap
 * (413 from Content-Length before anything is read; chunked bodies are counted
 * and dropped past the cap), bounded JSON parsing, credential checks, uniform
 * JSON errors, request log and metrics.
 *
 * Order of checks: 404/405, 413, 401/403, 400 (body), then the handler.
 * Routing splits the raw path on "/" and then percent-decodes each segment
 * (the unescape callback leaves the path alone), so a parameter may hold "/"
 * as %2F; query values are decoded by plane_req_query.
 *
 * Long polls hold no thread: a handler with nothing to hand out calls
 * plane_park (mu held) and returns without a reply; the connection is then
 * suspended (MHD_suspend_connection) until plane_wake for its kind or its
 * deadline (a timer thread sleeping until the earliest one) resumes it, and
 * the handler runs again with the same request. The parked lists and every
 * park state change are guarded by plane.mu; a connection is only resumed
 * after its suspend call returned (PARK_PARKING defers the wake-up to the
 * thread that suspends it).
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "decode.h"
#include "plane.h"
#include "remex/log.h"
#include "remex/timeutil.h"
#include "remex/urlenc.h"

#define MAX_SEGS       16
#define PATH_MAX_BYTES 2048
#define QUERY_DECODED  8 /* decoded query values kept per request */
/* Per-connection memory of libmicrohttpd (its default is 32 KiB): request
 * line and headers (a path is at most PATH_MAX_BYTES, a bearer 4 KiB), the
 * read buffer bodies stream through, reply headers. libmicrohttpd zeroes it
 * for every request, so it is kept small. */
#define CONN_MEMORY  (16 * 1024)
#define DRAIN_MAX_NS 10000000000LL /* shutdown waits this long for in-flight requests */
#define SECURITY_CSP                                                                               \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"                     \
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

enum park_state {
    PARK_IDLE,      /* not parked */
    PARK_PARKING,   /* linked; the handler returned, suspend not done yet */
    PARK_SUSPENDED, /* linked; connection suspended */
    PARK_RESUMING,  /* unlinked; resume requested, the handler runs again next */
};

/* A request's long-poll state; every field but conn guarded by plane.mu. */
struct park {
    struct park *prev, *next; /* in server.parked[kind] while PARKING or SUSPENDED */
    struct MHD_Connection *conn;
    enum park_state state;
    int wake;            /* released while PARKING: resume right after suspending */
    int armed;           /* deadline_ns set (first park of the request) */
    int64_t deadline_ns; /* CLOCK_MONOTONIC */
    /* What the request waits for (plane_park_keys; borrowed from its body,
     * kept for the request): a keyed wake-up resumes it only when one of
     * them equals the key. No keys: any wake-up of its kind resumes it. */
    const char *keys[PLANE_PARK_KEYS];
    int nkeys;
};

struct server {
    struct MHD_Daemon *d;
    char *cert, *key; /* PEM contents when TLS is on */
    /* Parked requests of each kind, oldest first (a keyed wake-up resumes
     * the longest waiting ones); counts and wake-ups for /metrics. All
     * guarded by plane.mu. */
    struct park *parked[PLANE_WAIT_KINDS], *parked_tail[PLANE_WAIT_KINDS];
    size_t nparked[PLANE_WAIT_KINDS];
    uint64_t woken[PLANE_WAIT_KINDS]; /* parks resumed by a wake-up (not by their deadline) */
    pthread_t timer;
    int timer_started;
    int timer_stop;           /* guarded by plane.mu */
    int64_t timer_at;         /* deadline the timer sleeps until (INT64_MAX none); plane.mu */
    pthread_cond_t timer_cv;  /* CLOCK_MONOTONIC, waited on with plane.mu */
    atomic_int inflight;      /* requests between their first callback and completion */
    pthread_mutex_t drain_mu; /* with drain_cv: shutdown waits for inflight == 0 */
    pthread_cond_t drain_cv;
};

/* Per-request state, from the first callback to the completion notice. */
struct rstate {
    const struct plane_route *route; /* NULL: status_pre is 404 or 405 */
    int status_pre;                  /* 0 or an error decided before the handler */
    int entered;                     /* the handler ran once: rq is complete */
    char allow[64];                  /* 405: methods allowed on the path */
    char *pathcopy;                  /* owned; segments point into it */
    const char *param[PLANE_MAX_PARAMS];
    int nparam;
    struct buf body;
    int64_t body_max; /* this request's body cap (body_cap) */
    json_t *json;     /* owned; the decoded body the handler borrows */
    struct plane_req rq;
    struct park park;
    char *query[QUERY_DECODED]; /* owned decoded query values */
    int nquery;
    struct timespec t0;
    uint_fast64_t rollbacks; /* store_rollbacks when the handler last ran */
};

static void healthz(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    (void)rq;
    json_t *b = json_pack("{s:s}", "status", atomic_load(&p->stopping) ? "stopping" : "ok");
    plane_reply(rs, atomic_load(&p->stopping) ? 503 : 200, b);
}

static const struct plane_route routes_core[] = {
    {"GET", "/healthz", AUTHZ_NONE, healthz, 0},
    {"GET", "/metrics", AUTHZ_NONE, metrics_handle, 0},
    {NULL, NULL, AUTHZ_NONE, NULL, 0},
};

static const struct plane_route *const tables[] = {
    routes_core, plane_routes_agents, plane_routes_tokens, plane_routes_sched, plane_routes_ui,
};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))

void plane_reply(struct plane_resp *rs, int status, json_t *body)
{
    json_decref(rs->body);
    rs->status = status;
    rs->body = body ? body : json_object();
}

void plane_store_failed(struct plane_resp *rs)
{
    plane_error(rs, 503, "unavailable", "the change could not be saved; retry later");
}

void plane_error(struct plane_resp *rs, int status, const char *code, const char *fmt, ...)
{
    char msg[REMEX_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    plane_reply(rs, status, json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

/* Decodes %HH sequences of s in place (others are kept as they are); -1 when
 * the result would hold a NUL byte. */
static int pct_decode(char *s)
{
    return urlenc_decode(s, s, strlen(s), 0, NULL) == NULL ? 0 : -1;
}

/* The unescape callback: values stay raw (the path is decoded per segment
 * after routing, query values by plane_req_query). */
static size_t keep_raw(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

const char *plane_req_query(const struct plane_req *rq, const char *key)
{
    const char *raw = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
    struct rstate *st = rq->server_state;
    if (!raw || !strchr(raw, '%') || !st)
        return raw;
    if (st->nquery == QUERY_DECODED)
        return NULL;
    char *d = strdup(raw);
    if (!d || pct_decode(d) < 0) {
        free(d);
        return NULL;
    }
    st->query[st->nquery++] = d;
    return d;
}

remex_err server_routes(struct buf *out)
{
    for (size_t t = 0; t < NTABLES; t++)
        for (const struct plane_route *r = tables[t]; r->method; r++)
            if (buf_printf(out, "%s %s\n", r->method, r->pattern))
                return REMEX_ENOMEM;
    return REMEX_OK;
}

/* Matches segs against pattern; captures {x} segments into params. */
static int pattern_match(const char *pat, char **segs, int nseg, const char **params, int *np)
{
    int i = 0, n = 0;
    if (*pat != '/')
        return 0;
    if (pat[1] == '\0') { /* "/": the root, one empty segment */
        *np = 0;
        return nseg == 1 && segs[0][0] == '\0';
    }
    pat++;
    while (*pat) {
        const char *end = strchr(pat, '/');
        size_t len = end ? (size_t)(end - pat) : strlen(pat);
        if (i >= nseg)
            return 0;
        if (len >= 2 && pat[0] == '{' && pat[len - 1] == '}') {
            if (n >= PLANE_MAX_PARAMS || segs[i][0] == '\0')
                return 0;
            params[n++] = segs[i];
        } else if (strlen(segs[i]) != len || memcmp(segs[i], pat, len) != 0) {
            return 0;
        }
        i++;
        pat += len;
        if (*pat == '/')
            pat++;
    }
    if (i != nseg)
        return 0;
    *np = n;
    return 1;
}

/* Index of the {name} capture in pattern, or -1. */
static int param_index(const char *pattern, const char *name)
{
    int idx = 0;
    size_t nl = strlen(name);
    for (const char *s = strchr(pattern, '{'); s; s = strchr(s + 1, '{'), idx++)
        if (strncmp(s + 1, name, nl) == 0 && s[1 + nl] == '}')
            return idx;
    return -1;
}

/* Finds the route for method + raw path; sets status_pre 404/405 when none.
 * Segments are split on "/" first, then percent-decoded. */
static void route_lookup(struct rstate *st, const char *method, const char *url)
{
    char *segs[MAX_SEGS];
    int nseg = 0;
    st->status_pre = 404;
    if (strlen(url) > PATH_MAX_BYTES || url[0] != '/' || !(st->pathcopy = strdup(url + 1)))
        return;
    for (char *s = st->pathcopy;;) {
        if (nseg == MAX_SEGS)
            return;
        segs[nseg++] = s;
        char *slash = strchr(s, '/');
        if (slash)
            *slash = '\0';
        if (pct_decode(s) < 0)
            return; /* no identifier holds a NUL byte */
        if (!slash)
            break;
        s = slash + 1;
    }
    size_t alen = 0;
    for (size_t t = 0; t < NTABLES; t++) {
        for (const struct plane_route *r = tables[t]; r->method; r++) {
            const char *params[PLANE_MAX_PARAMS];
            int np = 0;
            if (!pattern_match(r->pattern, segs, nseg, params, &np))
                continue;
            if (strcmp(r->method, method) == 0) {
                st->route = r;
                st->status_pre = 0;
                memcpy(st->param, params, sizeof(params));
                st->nparam = np;
                return;
            }
            st->status_pre = 405;
            if (!strstr(st->allow, r->method) && alen + strlen(r->method) + 3 < sizeof(st->allow))
                alen += (size_t)snprintf(st->allow + alen, sizeof(st->allow) - alen, "%s%s",
                                         alen ? ", " : "", r->method);
        }
    }
}

static double elapsed_s(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static enum MHD_Result send_resp(struct plane *p, struct MHD_Connection *c, struct rstate *st,
                                 const char *method, struct plane_resp *rs)
{
    char *data;
    size_t len;
    const char *ctype = rs->content_type ? rs->content_type : "application/json";
    if (rs->status < 100 || rs->status > 599)
        plane_error(rs, 500, "internal", "handler produced no reply");
    if (!rs->committed) {
        /* What the request wrote may sit in a deferred transaction. A write
         * request succeeds only if no transaction was rolled back meanwhile
         * (its own writes may have been in it); a handler's own 500 for a
         * failed write is the same 503. */
        pthread_mutex_lock(&p->mu);
        int lost = store_settle(p) != 0 || atomic_load(&p->store_rollbacks) != st->rollbacks;
        pthread_mutex_unlock(&p->mu);
        if (lost && st->entered && strcmp(method, "GET") != 0 &&
            (rs->status < 300 || rs->status == 500))
            plane_store_failed(rs);
    }
    if (rs->body) {
        data = json_dumps(rs->body, JSON_COMPACT);
        len = data ? strlen(data) : 0;
        ctype = "application/json";
    } else {
        data = rs->text;
        len = rs->text_len;
        rs->text = NULL;
    }
    struct MHD_Response *r =
        !data && rs->static_data
            ? MHD_create_response_from_buffer(rs->static_len, (void *)rs->static_data,
                                              MHD_RESPMEM_PERSISTENT)
            : MHD_create_response_from_buffer(len, data ? data : (void *)"",
                                              data ? MHD_RESPMEM_MUST_FREE
                                                   : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
                            rs->cache_control ? rs->cache_control : "no-store");
    if (rs->etag)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, rs->etag);
    if (rs->set_cookie[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, rs->set_cookie);
    /* Every reply, API or UI: nothing runs but the plane's own scripts and
     * styles, no framing, no MIME sniffing, no Referer leaving the plane. */
    MHD_add_response_header(r, "Content-Security-Policy", SECURITY_CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    if (rs->status == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, st->allow);
    if (rs->status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)rs->status, r);
    MHD_destroy_response(r);
    const char *pat = st->route ? st->route->pattern : "unmatched";
    double dt = elapsed_s(&st->t0);
    metrics_count(p, method, pat, rs->status, dt);
    log_debug("http: %s %s %d %.1fms", method, pat, rs->status, dt * 1000.0);
    json_decref(rs->body);
    free(rs->text);
    return ret;
}

/* Name of one PLANE_ROLE_* bit. */
static const char *role_name(unsigned bit)
{
    for (unsigned b = 0; decode_agent_roles[b]; b++)
        if (bit == 1u << b)
            return decode_agent_roles[b];
    return "?";
}

/* Authenticates, parses the body and runs the handler (upload complete); the
 * request is kept in st->rq for a parked handler's next run. */
static void dispatch(struct plane *p, struct MHD_Connection *c, struct rstate *st,
                     const char *method, const char *url, struct plane_resp *rs)
{
    const struct plane_route *r = st->route;
    struct plane_req *rq = &st->rq;
    char why[256];
    unsigned role = 0;
    *rq = (struct plane_req){
        .method = method, .path = url, .nparam = st->nparam, .conn = c, .server_state = st};
    memcpy(rq->param, st->param, sizeof(rq->param));
    const char *authz =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    int code;
    /* A browser session stands for the admin token on admin routes; a bearer
     * credential, when present, is what counts. */
    if (!authz && (r->authz == AUTHZ_ADMIN || r->authz == AUTHZ_SESSION_OR_ADMIN) &&
        ui_has_cookie(c))
        code = ui_auth_cookie(p, c, method, &rq->who, why, sizeof(why));
    else
        code = auth_check(p, authz, r->authz, &rq->who, why, sizeof(why));
    if (code == 0) {
        int ia = param_index(r->pattern, "agent_id"), it = param_index(r->pattern, "ti_id");
        if (rq->who.kind == AUTHZ_SESSION && ia >= 0 &&
            decode_id(rq->param[ia]) != rq->who.agent_id) {
            snprintf(why, sizeof(why), "session of agent %lld used for agent %s",
                     (long long)rq->who.agent_id, rq->param[ia]);
            code = 403;
        } else if (rq->who.kind == AUTHZ_TASK && it >= 0 &&
                   decode_id(rq->param[it]) != rq->who.ti_id) {
            snprintf(why, sizeof(why), "task token of ti %lld used for ti %s",
                     (long long)rq->who.ti_id, rq->param[it]);
            code = 403;
        } else if (rq->who.kind == AUTHZ_SESSION && r->role && !(rq->who.roles & r->role)) {
            snprintf(why, sizeof(why), "session of agent %lld has no %s role",
                     (long long)rq->who.agent_id, role_name(r->role));
            code = 403;
            role = r->role;
        }
    }
    if (code) {
        log_warn("auth: %s %s refused (%d): %s", method, r->pattern, code, why);
        if (role) /* the agent's own registration: no credential detail in it */
            plane_error(rs, 403, "forbidden",
                        "this route needs the %s role: the agent did not register it",
                        role_name(role));
        else if (code == 403)
            plane_error(rs, 403, "forbidden", "credential not allowed here");
        else
            plane_error(rs, 401, "unauthorized", "missing or invalid credential");
        return;
    }
    if (st->body.len > 0) {
        struct remex_error e = {0};
        if (decode_body(st->body.data, st->body.len, DECODE_MAX_DEPTH, &st->json, &e) ||
            decode_known_fields(st->json, decode_body_fields(r->method, r->pattern), &e)) {
            plane_error(rs, 400, "bad_request", "%s", e.msg);
            return;
        }
    }
    rq->body = st->json;
    st->entered = 1;
    st->rollbacks = atomic_load(&p->store_rollbacks);
    r->fn(p, rq, rs);
}

/* ---- long polls ---- */

static void park_unlink(struct server *s, struct park *k, int kind)
{
    if (k->prev)
        k->prev->next = k->next;
    else
        s->parked[kind] = k->next;
    if (k->next)
        k->next->prev = k->prev;
    else
        s->parked_tail[kind] = k->prev;
    k->prev = k->next = NULL;
    s->nparked[kind]--;
}

/* Ends a park (mu held): resumes the connection, or has its suspending
 * thread do so when the suspend is not done yet. */
static void park_release(struct server *s, struct park *k, int kind)
{
    park_unlink(s, k, kind);
    if (k->state == PARK_SUSPENDED) {
        k->state = PARK_RESUMING;
        MHD_resume_connection(k->conn);
    } else {
        k->wake = 1;
    }
}

int plane_park(struct plane *p, struct plane_req *rq, enum plane_wait kind, int64_t wait_ms)
{
    return plane_park_keys(p, rq, kind, wait_ms, NULL, 0);
}

int plane_park_keys(struct plane *p, struct plane_req *rq, enum plane_wait kind, int64_t wait_ms,
                    const char *const *keys, int nkeys)
{
    struct server *s = p->server;
    struct rstate *st = rq->server_state;
    if (!s || !st || atomic_load(&p->stopping) || (unsigned)kind >= PLANE_WAIT_KINDS || nkeys < 0 ||
        nkeys > PLANE_PARK_KEYS)
        return -1;
    struct park *k = &st->park;
    int64_t now = (int64_t)timeutil_mono_ns();
    if (!k->armed) {
        k->armed = 1;
        k->deadline_ns = now + (wait_ms > 0 ? wait_ms : 0) * 1000000;
    }
    if (now >= k->deadline_ns)
        return -1;
    k->conn = rq->conn;
    k->state = PARK_PARKING;
    k->wake = 0;
    for (int i = 0; i < nkeys; i++)
        k->keys[i] = keys[i];
    k->nkeys = nkeys;
    k->next = NULL;
    k->prev = s->parked_tail[kind];
    if (k->prev)
        k->prev->next = k;
    else
        s->parked[kind] = k;
    s->parked_tail[kind] = k;
    s->nparked[kind]++;
    if (k->deadline_ns < s->timer_at) {
        s->timer_at = k->deadline_ns;
        pthread_cond_signal(&s->timer_cv);
    }
    return 0;
}

void plane_wake(struct plane *p, enum plane_wait kind)
{
    struct server *s = p->server;
    if (!s || (unsigned)kind >= PLANE_WAIT_KINDS)
        return;
    while (s->parked[kind]) {
        park_release(s, s->parked[kind], kind);
        s->woken[kind]++;
    }
}

static int park_matches(const struct park *k, const char *key)
{
    if (k->nkeys == 0)
        return 1;
    for (int i = 0; i < k->nkeys; i++)
        if (k->keys[i] && strcmp(k->keys[i], key) == 0)
            return 1;
    return 0;
}

size_t plane_wake_key(struct plane *p, enum plane_wait kind, const char *key, size_t max)
{
    struct server *s = p->server;
    size_t n = 0;
    if (!s || (unsigned)kind >= PLANE_WAIT_KINDS || !key)
        return 0;
    for (struct park *k = s->parked[kind], *nk; k && n < max; k = nk) {
        nk = k->next;
        if (park_matches(k, key)) {
            park_release(s, k, kind);
            n++;
        }
    }
    s->woken[kind] += n;
    return n;
}

void plane_park_stats(struct plane *p, enum plane_wait kind, size_t *parked, uint64_t *woken)
{
    struct server *s = p->server;
    *parked = s && (unsigned)kind < PLANE_WAIT_KINDS ? s->nparked[kind] : 0;
    *woken = s && (unsigned)kind < PLANE_WAIT_KINDS ? s->woken[kind] : 0;
}

/* The handler parked the request: suspend its connection (called from the
 * access handler, as libmicrohttpd requires). */
static enum MHD_Result park_suspend(struct plane *p, struct MHD_Connection *c, struct rstate *st)
{
    MHD_suspend_connection(c);
    pthread_mutex_lock(&p->mu);
    if (st->park.wake) {
        st->park.wake = 0;
        st->park.state = PARK_RESUMING;
        MHD_resume_connection(c);
    } else {
        st->park.state = PARK_SUSPENDED;
    }
    pthread_mutex_unlock(&p->mu);
    return MHD_YES;
}

/* Resumes parked requests whose deadline passed; sleeps until the next one. */
static void *timer_main(void *arg)
{
    struct plane *p = arg;
    struct server *s = p->server;
    pthread_mutex_lock(&p->mu);
    while (!s->timer_stop) {
        int64_t now = (int64_t)timeutil_mono_ns(), next = INT64_MAX;
        for (int kind = 0; kind < PLANE_WAIT_KINDS; kind++) {
            struct park *k = s->parked[kind], *nk;
            for (; k; k = nk) {
                nk = k->next;
                if (k->deadline_ns <= now)
                    park_release(s, k, kind);
                else if (k->deadline_ns < next)
                    next = k->deadline_ns;
            }
        }
        s->timer_at = next;
        if (next == INT64_MAX) {
            pthread_cond_wait(&s->timer_cv, &p->mu);
        } else {
            struct timespec ts = {.tv_sec = next / 1000000000, .tv_nsec = next % 1000000000};
            pthread_cond_timedwait(&s->timer_cv, &p->mu, &ts);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- libmicrohttpd callbacks ---- */

/* The body cap of a request: body_max, or the route's larger cap when the
 * body may need it (Content-Length over body_max or absent) and the bearer
 * credential verifies for the route, so that only a caller allowed to use
 * the route can make the plane hold a body that large. */
static int64_t body_cap(struct plane *p, struct MHD_Connection *c, const struct plane_route *r,
                        const char *cl)
{
    if (!r || (cl && strtoull(cl, NULL, 10) <= (unsigned long long)p->cfg.body_max))
        return p->cfg.body_max;
    int64_t max = p->cfg.body_max;
    for (const struct plane_body_cap *b = plane_body_caps; b->method; b++)
        if (strcmp(b->method, r->method) == 0 && strcmp(b->pattern, r->pattern) == 0)
            max = b->max;
    if (max <= p->cfg.body_max)
        return p->cfg.body_max;
    struct plane_principal who;
    char why[256];
    const char *authz =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!authz || auth_check(p, authz, r->authz, &who, why, sizeof(why)) != 0)
        return p->cfg.body_max;
    return max;
}

/* First callback of a request: routing and the Content-Length cap. */
static enum MHD_Result on_begin(struct plane *p, struct MHD_Connection *c, const char *url,
                                const char *method, void **con_cls)
{
    struct server *s = p->server;
    struct rstate *st = calloc(1, sizeof(*st));
    if (!st)
        return MHD_NO;
    atomic_fetch_add(&s->inflight, 1);
    clock_gettime(CLOCK_MONOTONIC, &st->t0);
    *con_cls = st;
    route_lookup(st, method, url);
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    st->body_max = body_cap(p, c, st->route, cl);
    buf_init(&st->body, (size_t)st->body_max);
    if (st->status_pre == 0 && cl && strtoull(cl, NULL, 10) > (unsigned long long)st->body_max) {
        struct plane_resp rs = {0};
        st->status_pre = 413;
        plane_error(&rs, 413, "payload_too_large", "body over %lld bytes", (long long)st->body_max);
        return send_resp(p, c, st, method, &rs);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct plane *p = cls;
    struct rstate *st = *con_cls;
    (void)version;
    if (!st)
        return on_begin(p, c, url, method, con_cls);
    if (*upload_size > 0) {
        if (st->status_pre == 0 && buf_append(&st->body, upload, *upload_size) != REMEX_OK) {
            st->status_pre = 413;
            buf_free(&st->body);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    struct plane_resp rs = {0};
    if (st->status_pre == 404) {
        plane_error(&rs, 404, "not_found", "no such route");
    } else if (st->status_pre == 405) {
        plane_error(&rs, 405, "method_not_allowed", "method %s not allowed here", method);
    } else if (st->status_pre == 413) {
        plane_error(&rs, 413, "payload_too_large", "body over %lld bytes", (long long)st->body_max);
    } else if (st->entered) {
        st->park.state = PARK_IDLE; /* resumed: unlinked by whoever released it */
        st->rollbacks = atomic_load(&p->store_rollbacks);
        st->route->fn(p, &st->rq, &rs);
    } else {
        dispatch(p, c, st, method, url, &rs);
    }
    if (st->park.state == PARK_PARKING) {
        json_decref(rs.body);
        free(rs.text);
        return park_suspend(p, c, st);
    }
    return send_resp(p, c, st, method, &rs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct plane *p = cls;
    struct server *s = p->server;
    struct rstate *st = *con_cls;
    (void)c;
    (void)toe;
    if (!st)
        return;
    if (st->park.state == PARK_PARKING || st->park.state == PARK_SUSPENDED) {
        /* Only when the daemon closes a parked connection. */
        pthread_mutex_lock(&p->mu);
        for (int kind = 0; kind < PLANE_WAIT_KINDS; kind++)
            for (struct park *k = s->parked[kind]; k; k = k->next)
                if (k == &st->park) {
                    park_unlink(s, k, kind);
                    break;
                }
        pthread_mutex_unlock(&p->mu);
    }
    buf_free(&st->body);
    json_decref(st->json);
    for (int i = 0; i < st->nquery; i++)
        free(st->query[i]);
    free(st->pathcopy);
    free(st);
    *con_cls = NULL;
    if (atomic_fetch_sub(&s->inflight, 1) == 1 && atomic_load(&p->stopping)) {
        pthread_mutex_lock(&s->drain_mu);
        pthread_cond_broadcast(&s->drain_cv);
        pthread_mutex_unlock(&s->drain_mu);
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    log_vwrite(LOG_LEVEL_WARN, fmt, ap);
}

static remex_err read_pem(const char *path, char **out, struct remex_error *e)
{
    FILE *f = fopen(path, "re");
    struct buf b = BUF_INIT(1024 * 1024);
    char chunk[4096];
    size_t n;
    if (!f)
        return remex_seterr(e, REMEX_EIO, "%s: cannot open", path);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (buf_append(&b, chunk, n)) {
            fclose(f);
            buf_free(&b);
            return remex_seterr(e, REMEX_ETOOBIG, "%s: larger than 1 MiB", path);
        }
    fclose(f);
    if (!(*out = buf_detach(&b, NULL)))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    return REMEX_OK;
}

/* Resolves "HOST:PORT" or "[V6]:PORT" (numeric hosts only). */
static remex_err parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *sl,
                              struct remex_error *e)
{
    char host[256];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof(host) || !colon[1])
        return remex_seterr(e, REMEX_ECONFIG, "listen: expected HOST:PORT");
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[' && s[hl - 1] == ']') {
        memcpy(host, s + 1, hl - 2);
        host[hl - 2] = '\0';
    } else {
        memcpy(host, s, hl);
        host[hl] = '\0';
    }
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || !ai)
        return remex_seterr(e, REMEX_ECONFIG, "listen: expected a numeric HOST:PORT");
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *sl = ai->ai_addrlen;
    freeaddrinfo(ai);
    return REMEX_OK;
}

int server_check_listen(const char *listen, char *why, size_t whysz)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    struct remex_error e = {0};
    if (!listen || parse_listen(listen, &ss, &sl, &e) == REMEX_OK)
        return 0;
    /* parse_listen's message starts with "listen: " */
    snprintf(why, whysz, "%s (got '%s'; a name such as localhost is not resolved)",
             strncmp(e.msg, "listen: ", 8) == 0 ? e.msg + 8 : e.msg, listen);
    return -1;
}

int server_check_tls_priorities(const char *prio, char *why, size_t whysz)
{
    gnutls_priority_t pc;
    const char *at = NULL;
    if (!prio)
        return 0;
    int rc = gnutls_priority_init(&pc, prio, &at);
    if (rc == GNUTLS_E_SUCCESS) {
        gnutls_priority_deinit(pc);
        return 0;
    }
    snprintf(why, whysz, "not a valid GnuTLS priority string (%s at '%.40s')", gnutls_strerror(rc),
             at ? at : prio);
    return -1;
}

static uint16_t bound_port(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : 0;
}

/* Lets the process hold max_connections sockets besides its other files. */
static void fd_room(int64_t max_connections)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)max_connections + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need)
        log_warn("max_connections %lld: the open-file limit (%llu) leaves room for fewer",
                 (long long)max_connections, (unsigned long long)rl.rlim_cur);
}

/* HTTP threads: cfg.threads, or by default 4 per CPU, at least 8 and at
 * most 64. A connection is served by its thread only, and a request holds
 * its thread while it waits for plane.mu or serializes a large reply: with
 * one thread per CPU, a heartbeat on a thread busy with dispatch requests
 * waited for them (p99 31 ms during full-rate dispatch on 2 cores, 3.9 ms
 * with 8 threads; docs/BENCHMARKS.md). Idle threads cost an epoll wait. */
static unsigned pool_size(const struct plane *p)
{
    if (p->cfg.threads > 0)
        return (unsigned)p->cfg.threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    n = n > 0 ? 4 * n : 8;
    return (unsigned)(n < 8 ? 8 : n > 64 ? 64 : n);
}

static void server_free(struct server *s)
{
    if (s->key)
        memset(s->key, 0, strlen(s->key));
    free(s->cert);
    free(s->key);
    pthread_cond_destroy(&s->timer_cv);
    pthread_cond_destroy(&s->drain_cv);
    pthread_mutex_destroy(&s->drain_mu);
    free(s);
}

static struct server *server_new(void)
{
    struct server *s = calloc(1, sizeof(*s));
    pthread_condattr_t ca;
    if (!s)
        return NULL;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->timer_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->drain_mu, NULL);
    pthread_cond_init(&s->drain_cv, NULL);
    atomic_init(&s->inflight, 0);
    s->timer_at = INT64_MAX;
    return s;
}

/* Reads the PEM files into s and adds the TLS options to opts. */
static remex_err tls_setup(struct plane *p, struct server *s, struct MHD_OptionItem *opts,
                           unsigned *flags, struct remex_error *e)
{
    remex_err rc;
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return remex_seterr(e, REMEX_EUNSUPPORTED, "tls: libmicrohttpd built without TLS");
    if ((rc = read_pem(p->cfg.tls_cert, &s->cert, e)) ||
        (rc = read_pem(p->cfg.tls_key, &s->key, e)))
        return rc;
    *flags |= MHD_USE_TLS;
    opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->cert};
    opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->key};
    opts[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                      p->cfg.tls_priorities ? p->cfg.tls_priorities
                                                            : SERVER_TLS_PRIORITIES};
    return REMEX_OK;
}

remex_err server_start(struct plane *p, struct remex_error *e)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    remex_err rc = parse_listen(p->cfg.listen, &ss, &sl, e);
    if (rc)
        return rc;
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) != MHD_YES)
        return remex_seterr(e, REMEX_EUNSUPPORTED, "libmicrohttpd built without epoll");
    struct server *s = server_new();
    if (!s)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem tls[4] = {{MHD_OPTION_END, 0, NULL}};
    int want_tls = p->cfg.tls_cert && *p->cfg.tls_cert && p->cfg.tls_key && *p->cfg.tls_key;
    if (want_tls && (rc = tls_setup(p, s, tls, &flags, e))) {
        server_free(s);
        return rc;
    }
    fd_room(p->cfg.max_connections);
    pthread_mutex_lock(&p->mu);
    p->server = s; /* before the first request can park */
    pthread_mutex_unlock(&p->mu);
    int trc = pthread_create(&s->timer, NULL, timer_main, p);
    s->timer_started = trc == 0;
    if (trc == 0)
        s->d = MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, p, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, pool_size(p),
            MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->cfg.max_connections,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(p->cfg.longpoll_max_ms / 1000 + 60),
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_UNESCAPE_CALLBACK,
            keep_raw, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, p, MHD_OPTION_ARRAY, tls,
            MHD_OPTION_END);
    if (!s->d) {
        server_stop(p);
        return remex_seterr(e, REMEX_ESYS, "listen %s: cannot start the HTTP server",
                            p->cfg.listen);
    }
    char host[256];
    const char *colon = strrchr(p->cfg.listen, ':');
    snprintf(host, sizeof(host), "%.*s", (int)(colon - p->cfg.listen), p->cfg.listen);
    log_info("listening on %s:%u%s (%u threads)", host, bound_port(s->d), want_tls ? " (TLS)" : "",
             pool_size(p));
    (void)sl;
    return REMEX_OK;
}

void server_quiesce(struct plane *p)
{
    struct server *s = p->server;
    if (!s || !s->d)
        return;
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

/* Waits (bounded) until no request is in flight; stopping is set and every
 * park was released, so the handlers answer at once. */
static void drain(struct server *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += DRAIN_MAX_NS / 1000000000;
    pthread_mutex_lock(&s->drain_mu);
    while (atomic_load(&s->inflight) > 0)
        if (pthread_cond_timedwait(&s->drain_cv, &s->drain_mu, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&s->drain_mu);
}

void server_stop(struct plane *p)
{
    struct server *s = p->server;
    if (!s)
        return;
    pthread_mutex_lock(&p->mu);
    for (int kind = 0; kind < PLANE_WAIT_KINDS; kind++)
        plane_wake(p, (enum plane_wait)kind);
    s->timer_stop = 1;
    pthread_cond_signal(&s->timer_cv);
    pthread_mutex_unlock(&p->mu);
    if (s->timer_started)
        pthread_join(s->timer, NULL);
    if (s->d) {
        drain(s);
        MHD_stop_daemon(s->d);
    }
    pthread_mutex_lock(&p->mu);
    p->server = NULL;
    pthread_mutex_unlock(&p->mu);
    server_free(s);
}
