/*
 * HTTP front: libmicrohttpd with one thread per connection (long polls block
 * in their handler), routing over the route tables with {param} captures,
 * body cap (413 from Content-Length before anything is read; chunked bodies
 * are counted and dropped past the cap), bounded JSON parsing, credential
 * checks, uniform JSON errors, request log and metrics.
 *
 * Order of checks: 404/405, 413, 401/403, 400 (body), then the handler.
 * MHD percent-decodes the path before routing, so a parameter cannot contain
 * "/" (no identifier in the API may).
 */
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "decode.h"
#include "plane.h"
#include "remex/log.h"

#define MAX_SEGS       16
#define PATH_MAX_BYTES 2048

struct server {
    struct MHD_Daemon *d;
    char *cert, *key; /* PEM contents when TLS is on */
};

/* Per-request state, from the first callback to the completion notice. */
struct rstate {
    const struct plane_route *route; /* NULL: status_pre is 404 or 405 */
    int status_pre;                  /* 0 or an error decided before the handler */
    char allow[64];                  /* 405: methods allowed on the path */
    char *pathcopy;                  /* owned; segments point into it */
    const char *param[PLANE_MAX_PARAMS];
    int nparam;
    struct buf body;
    struct timespec t0;
};

static void healthz(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    (void)rq;
    json_t *b = json_pack("{s:s}", "status", atomic_load(&p->stopping) ? "stopping" : "ok");
    plane_reply(rs, atomic_load(&p->stopping) ? 503 : 200, b);
}

static const struct plane_route routes_core[] = {
    {"GET", "/healthz", AUTHZ_NONE, healthz},
    {"GET", "/metrics", AUTHZ_NONE, metrics_handle},
    {NULL, NULL, AUTHZ_NONE, NULL},
};

static const struct plane_route *const tables[] = {
    routes_core,
    plane_routes_agents,
    plane_routes_tokens,
    plane_routes_sched,
};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))

void plane_reply(struct plane_resp *rs, int status, json_t *body)
{
    json_decref(rs->body);
    rs->status = status;
    rs->body = body ? body : json_object();
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

const char *plane_req_query(const struct plane_req *rq, const char *key)
{
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
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

/* Finds the route for method + path; sets status_pre 404/405 when none. */
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
        if (!slash)
            break;
        *slash = '\0';
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
    if (rs->body) {
        data = json_dumps(rs->body, JSON_COMPACT);
        len = data ? strlen(data) : 0;
        ctype = "application/json";
    } else {
        data = rs->text;
        len = rs->text_len;
        rs->text = NULL;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, data ? data : (void *)"", data ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (rs->status == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, st->allow);
    if (rs->status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)rs->status, r);
    MHD_destroy_response(r);
    const char *pat = st->route ? st->route->pattern : "unmatched";
    double dt = elapsed_s(&st->t0);
    metrics_count(p, method, pat, rs->status, dt);
    log_info("http: %s %s %d %.1fms", method, pat, rs->status, dt * 1000.0);
    json_decref(rs->body);
    free(rs->text);
    return ret;
}

/* Authenticates, parses the body and runs the handler (upload complete). */
static void dispatch(struct plane *p, struct MHD_Connection *c, struct rstate *st,
                     const char *method, const char *url, struct plane_resp *rs)
{
    const struct plane_route *r = st->route;
    struct plane_req rq = {.method = method, .path = url, .nparam = st->nparam, .conn = c};
    char why[256];
    memcpy(rq.param, st->param, sizeof(rq.param));
    const char *authz =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    int code = auth_check(p, authz, r->authz, &rq.who, why, sizeof(why));
    if (code == 0) {
        int ia = param_index(r->pattern, "agent_id"), it = param_index(r->pattern, "ti_id");
        if (rq.who.kind == AUTHZ_SESSION && ia >= 0 && decode_id(rq.param[ia]) != rq.who.agent_id) {
            snprintf(why, sizeof(why), "session of agent %lld used for agent %s",
                     (long long)rq.who.agent_id, rq.param[ia]);
            code = 403;
        } else if (rq.who.kind == AUTHZ_TASK && it >= 0 &&
                   decode_id(rq.param[it]) != rq.who.ti_id) {
            snprintf(why, sizeof(why), "task token of ti %lld used for ti %s",
                     (long long)rq.who.ti_id, rq.param[it]);
            code = 403;
        }
    }
    if (code) {
        log_warn("auth: %s %s refused (%d): %s", method, r->pattern, code, why);
        if (code == 403)
            plane_error(rs, 403, "forbidden", "credential not allowed here");
        else
            plane_error(rs, 401, "unauthorized", "missing or invalid credential");
        return;
    }
    json_t *body = NULL;
    if (st->body.len > 0) {
        struct remex_error e = {0};
        if (decode_body(st->body.data, st->body.len, DECODE_MAX_DEPTH, &body, &e) ||
            decode_known_fields(body, decode_body_fields(r->method, r->pattern), &e)) {
            json_decref(body);
            plane_error(rs, 400, "bad_request", "%s", e.msg);
            return;
        }
    }
    rq.body = body;
    r->fn(p, &rq, rs);
    json_decref(body);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct plane *p = cls;
    struct rstate *st = *con_cls;
    (void)version;
    if (!st) {
        if (!(st = calloc(1, sizeof(*st))))
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &st->t0);
        buf_init(&st->body, (size_t)p->cfg.body_max);
        *con_cls = st;
        route_lookup(st, method, url);
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (st->status_pre == 0 && cl &&
            strtoull(cl, NULL, 10) > (unsigned long long)p->cfg.body_max) {
            struct plane_resp rs = {0};
            st->status_pre = 413;
            plane_error(&rs, 413, "payload_too_large", "body over %lld bytes",
                        (long long)p->cfg.body_max);
            return send_resp(p, c, st, method, &rs);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (st->status_pre == 0 && buf_append(&st->body, upload, *upload_size) != REMEX_OK) {
            st->status_pre = 413;
            buf_free(&st->body);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    struct plane_resp rs = {0};
    if (st->status_pre == 404)
        plane_error(&rs, 404, "not_found", "no such route");
    else if (st->status_pre == 405)
        plane_error(&rs, 405, "method_not_allowed", "method %s not allowed here", method);
    else if (st->status_pre == 413)
        plane_error(&rs, 413, "payload_too_large", "body over %lld bytes",
                    (long long)p->cfg.body_max);
    else
        dispatch(p, c, st, method, url, &rs);
    return send_resp(p, c, st, method, &rs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct rstate *st = *con_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (!st)
        return;
    buf_free(&st->body);
    free(st->pathcopy);
    free(st);
    *con_cls = NULL;
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

static uint16_t bound_port(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : 0;
}

remex_err server_start(struct plane *p, struct remex_error *e)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    remex_err rc = parse_listen(p->cfg.listen, &ss, &sl, e);
    if (rc)
        return rc;
    struct server *s = calloc(1, sizeof(*s));
    if (!s)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES)
        flags |= MHD_USE_POLL;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem tls[3] = {{MHD_OPTION_END, 0, NULL}};
    int want_tls = p->cfg.tls_cert && *p->cfg.tls_cert && p->cfg.tls_key && *p->cfg.tls_key;
    if (want_tls) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            free(s);
            return remex_seterr(e, REMEX_EUNSUPPORTED, "tls: libmicrohttpd built without TLS");
        }
        if ((rc = read_pem(p->cfg.tls_cert, &s->cert, e)) ||
            (rc = read_pem(p->cfg.tls_key, &s->key, e))) {
            free(s->cert);
            free(s);
            return rc;
        }
        flags |= MHD_USE_TLS;
        tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->cert};
        tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->key};
    }
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, p, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)p->cfg.threads, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(p->cfg.longpoll_max_ms / 1000 + 60), MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        p, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    if (!s->d) {
        free(s->cert);
        free(s->key);
        free(s);
        return remex_seterr(e, REMEX_ESYS, "listen %s: cannot start the HTTP server",
                            p->cfg.listen);
    }
    p->server = s;
    char host[256];
    const char *colon = strrchr(p->cfg.listen, ':');
    snprintf(host, sizeof(host), "%.*s", (int)(colon - p->cfg.listen), p->cfg.listen);
    log_info("listening on %s:%u%s", host, bound_port(s->d), want_tls ? " (TLS)" : "");
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

void server_stop(struct plane *p)
{
    struct server *s = p->server;
    if (!s)
        return;
    if (s->d)
        MHD_stop_daemon(s->d);
    if (s->key)
        memset(s->key, 0, strlen(s->key));
    free(s->cert);
    free(s->key);
    free(s);
    p->server = NULL;
}
