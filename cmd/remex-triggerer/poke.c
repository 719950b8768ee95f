/*
 * http and external_run triggers: a check at once, then one per poke
 * interval, never two at a time for one trigger. http checks run on the
 * loop's http_multi (libcurl's threaded resolver: DNS never blocks the
 * loop; each check bounded by triggerer.http_timeout); external_run checks
 * ask the plane on the session (api_dag_run_status).
 *
 * An http trigger's connection (secrets chain) gives its bearer token: the
 * connection's password. Plain http:// to a host other than loopback is
 * refused, as every remex HTTP client does (remex/http.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/api.h"
#include "remex/evloop.h"
#include "remex/http.h"
#include "remex/httploop.h"
#include "remex/log.h"
#include "remex/secrets.h"
#include "triggerer.h"

#define HTTP_BODY_MAX (1024 * 1024) /* a checked response body */
#define JSON_PATH_MAX 32            /* segments of json_path */

uint64_t poke_interval(const struct trg *t, const struct trig *g)
{
    int64_t ms = g->spec.poke_ms >= 0 ? g->spec.poke_ms : (int64_t)t->cfg->poke_ms;
    return ms < 100 ? 100 : (uint64_t)ms; /* a floor: a spec cannot make the loop spin */
}

/* The value at a dotted path ("a.b.0.c"; digits index arrays), borrowed or NULL. */
static json_t *walk(json_t *v, const char *path)
{
    char seg[256];
    const char *p = path;
    for (int depth = 0; v && *p && depth < JSON_PATH_MAX; depth++) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || n >= sizeof(seg))
            return NULL;
        memcpy(seg, p, n);
        seg[n] = '\0';
        char *end;
        unsigned long idx = strtoul(seg, &end, 10);
        v = json_is_array(v) && *end == '\0' ? json_array_get(v, idx) : json_object_get(v, seg);
        p = dot ? dot + 1 : p + n;
    }
    return *p ? NULL : v;
}

static void http_done(remex_err rc, struct http_response *resp, const struct remex_error *e,
                      void *arg)
{
    struct trig *g = arg;
    struct trg *t = g->owner;
    g->inflight = 0;
    if (g->phase == TRIG_GONE) {
        trig_release(t, g);
        return;
    }
    if (g->phase != TRIG_HELD)
        return;
    if (rc != REMEX_OK || resp->status != g->spec.status) {
        log_debug("trigger %" PRId64 ": %s", g->id,
                  rc != REMEX_OK ? e->msg : "status not yet the one awaited");
        return;
    }
    json_t *pl = json_pack("{sI}", "status", (json_int_t)resp->status);
    if (g->spec.json_path) {
        json_t *doc = json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, 0, NULL);
        json_t *v = doc ? walk(doc, g->spec.json_path) : NULL;
        int ok = v && (!g->spec.json_value || json_equal(v, g->spec.json_value));
        if (ok)
            json_object_set(pl, "value", v);
        json_decref(doc);
        if (!ok) {
            json_decref(pl);
            return;
        }
    }
    trig_fire(t, g, pl);
}

static void external_done(void *arg, const struct api_result *res)
{
    struct trig *g = arg;
    struct trg *t = g->owner;
    g->inflight = 0;
    if (g->phase == TRIG_GONE) {
        trig_release(t, g);
        return;
    }
    if (g->phase != TRIG_HELD || res->rc != REMEX_OK)
        return; /* 404: no such run yet; anything else: asked again at the next poke */
    const char *want = g->spec.state ? g->spec.state : "success";
    const char *got = NULL;
    if (!g->spec.task_id) {
        got = json_string_value(json_object_get(res->reply, "state"));
    } else {
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(res->reply, "task_instances"), i, x)
        {
            const char *tid = json_string_value(json_object_get(x, "task_id"));
            if (tid && strcmp(tid, g->spec.task_id) == 0)
                got = json_string_value(json_object_get(x, "state"));
        }
    }
    if (got && strcmp(got, want) == 0)
        trig_fire(t, g,
                  json_pack("{ss ss ss* ss}", "dag_id", g->spec.dag_id, "run_id", g->spec.run_id,
                            "task_id", g->spec.task_id, "state", got));
}

static void check(struct trg *t, struct trig *g)
{
    struct remex_error e = {0};
    if (g->inflight || g->phase != TRIG_HELD)
        return;
    if (g->spec.kind == TRIGSPEC_HTTP) {
        struct http_request req = {.method = g->spec.method ? g->spec.method : "GET",
                                   .path = g->http_path,
                                   .bearer = g->bearer};
        struct http_multi_done d = {.fn = http_done, .arg = g};
        if (http_multi_start(httploop_multi(t->hl), g->hc, &req, d, &e) == REMEX_OK)
            g->inflight = 1;
        else
            log_warn("trigger %" PRId64 ": %s", g->id, e.msg);
        return;
    }
    remex_err rc = api_dag_run_status(t->api, g->spec.dag_id, g->spec.run_id, external_done, g, &e);
    if (rc == REMEX_OK)
        g->inflight = 1;
    else if (rc == REMEX_ETOOBIG)
        trig_fail(t, g, "external_run: dag_id or run_id too long");
}

static void on_poke(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct trig *g = arg;
    check(g->owner, g);
}

/* The client and path of g's URL, and its connection's token; -1 after trig_fail. */
static int http_setup(struct trg *t, struct trig *g)
{
    const char *u = g->spec.url, *host = strstr(u, "://");
    const char *slash = host ? strchr(host + 3, '/') : NULL;
    size_t blen = slash ? (size_t)(slash - u) : strlen(u);
    char base[TRIGSPEC_STR_MAX + 1];
    struct remex_error e = {0};
    memcpy(base, u, blen);
    base[blen] = '\0';
    g->http_path = strdup(slash ? slash : "/");
    char *hash = g->http_path ? strchr(g->http_path, '#') : NULL;
    if (hash)
        *hash = '\0';
    struct http_client_opts o = {.base_url = base,
                                 .timeout_ms = (long)t->cfg->http_timeout_ms,
                                 .connect_timeout_ms = (long)t->cfg->http_timeout_ms,
                                 .max_response_bytes = HTTP_BODY_MAX,
                                 .max_attempts = 1};
    if (!g->http_path || http_client_new(&o, &g->hc, &e) != REMEX_OK) {
        trig_fail(t, g, g->http_path ? e.msg : "out of memory");
        return -1;
    }
    if (!g->spec.connection)
        return 0;
    struct secrets_conn conn = {0};
    if (!t->secrets || secrets_get_conn(t->secrets, g->spec.connection, &conn, &e) != REMEX_OK) {
        char why[300];
        snprintf(why, sizeof(why), "connection %.64s: %s", g->spec.connection,
                 t->secrets ? e.msg : "no secrets backend");
        trig_fail(t, g, why);
        return -1;
    }
    g->bearer = conn.password ? strdup(conn.password) : NULL;
    secrets_conn_free(&conn);
    return 0;
}

int poke_arm(struct trg *t, struct trig *g)
{
    if (g->spec.kind == TRIGSPEC_HTTP && http_setup(t, g) != 0)
        return -1;
    uint64_t every = poke_interval(t, g);
    g->poke_timer = evloop_timer_add(t->loop, every, every, on_poke, g);
    check(t, g);
    return 0;
}

void poke_disarm(struct trg *t, struct trig *g)
{
    (void)t;
    if (g->inflight)
        return; /* the client stays until the check completes (trig_release) */
    http_client_free(g->hc);
    g->hc = NULL;
    if (g->bearer) {
        explicit_bzero(g->bearer, strlen(g->bearer));
        free(g->bearer);
        g->bearer = NULL;
    }
}
