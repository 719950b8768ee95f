/*
 * api: the Remote Execution API client against a scripted plane on loopback
 * (libmicrohttpd in this file: each route answers what the test scripts and
 * every request is recorded in order).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/api.h"
#include "remex/evloop.h"
#include "remex/exit.h"
#include "remex/http.h"
#include "remex/log.h"
#include "remex/timeutil.h"

#define LOG_MAX 256

struct rec {
    char method[8], path[128], auth[128], body[512];
    uint64_t ms; /* monotonic time of arrival */
};

/* The scripted plane. Scripts are arrays of statuses consumed in order; 0 or past the end: 200. */
struct plane {
    struct MHD_Daemon *d;
    unsigned port;
    char url[64];
    pthread_mutex_t mu;
    int reg_script[16], nreg;
    int report_script[16], nreport;
    int report_default; /* once the script is used up */
    int hb_script[16], nhb;
    const char *reg_reply;               /* NULL: a valid reply */
    double interval;                     /* heartbeat_interval of the register reply */
    int64_t exp_in_ms;                   /* session_expires_at = now + this (0: one hour) */
    const char *hb_session;              /* heartbeat replies carry this session token */
    const char *rotate_file, *rotate_to; /* first refused register: rewrite the token file */
    const char *user_reply;              /* /user replies this raw body with 200 */
    int batch_status;                    /* batched start/state routes: 0: 200 */
    int item_script[16], nitem;          /* per-item statuses of batch results (0: 200) */
    struct rec log[LOG_MAX];
    int nlog;
};

struct conn {
    char body[4096];
    size_t len;
};

static int next_status(int *script, int *n, int def)
{
    if (*n <= 0)
        return def;
    int s = script[0];
    memmove(script, script + 1, sizeof(int) * 15);
    (*n)--;
    return s ? s : def;
}

static enum MHD_Result respond(struct MHD_Connection *c, int status, const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static int route(struct plane *p, const char *method, const char *url, const char *auth,
                 struct conn *k, char *out, size_t outsz)
{
    struct rec *r = p->nlog < LOG_MAX ? &p->log[p->nlog++] : NULL;
    if (r) {
        snprintf(r->method, sizeof(r->method), "%s", method);
        snprintf(r->path, sizeof(r->path), "%s", url);
        snprintf(r->auth, sizeof(r->auth), "%s", auth ? auth : "");
        snprintf(r->body, sizeof(r->body), "%.*s", (int)k->len, k->body);
        r->ms = timeutil_mono_ms();
    }
    snprintf(out, outsz, "{}");
    if (strcmp(url, "/api/v1/agents/register") == 0) {
        int s = next_status(p->reg_script, &p->nreg, 200);
        if (s == 401 && p->rotate_file) {
            FILE *f = fopen(p->rotate_file, "w");
            fputs(p->rotate_to, f);
            fclose(f);
            p->rotate_file = NULL;
        }
        if (s != 200) {
            snprintf(out, outsz, "{\"error\":{\"code\":\"x\",\"message\":\"scripted %d\"}}", s);
            return s;
        }
        if (p->reg_reply) {
            snprintf(out, outsz, "%s", p->reg_reply);
            p->reg_reply = NULL;
            return 200;
        }
        char exp[40];
        timeutil_rfc3339_format(timeutil_real_ms() + (p->exp_in_ms ? p->exp_in_ms : 3600000), 1,
                                exp, sizeof(exp));
        snprintf(out, outsz,
                 "{\"agent_id\":7,\"session_token\":\"sess-1\",\"session_expires_at\":\"%s\","
                 "\"heartbeat_interval\":%g}",
                 exp, p->interval > 0 ? p->interval : 5.0);
        return 200;
    }
    if (strstr(url, "/heartbeat")) {
        int s = next_status(p->hb_script, &p->nhb, 200);
        if (s == 200 && p->hb_session) {
            char exp[40];
            timeutil_rfc3339_format(timeutil_real_ms() + 3600000, 1, exp, sizeof(exp));
            snprintf(out, outsz, "{\"session_token\":\"%s\",\"session_expires_at\":\"%s\"}",
                     p->hb_session, exp);
        }
        return s;
    }
    if (strcmp(url, "/api/v1/task-instances/state") == 0 ||
        strcmp(url, "/api/v1/task-instances/start") == 0) {
        if (p->batch_status && p->batch_status != 200)
            return p->batch_status;
        json_t *b = json_loadb(k->body, k->len, 0, NULL), *it;
        size_t i, n = 0;
        n += (size_t)snprintf(out, outsz, "{\"results\":[");
        json_array_foreach(json_object_get(b, "items"), i, it)
        {
            int s = next_status(p->item_script, &p->nitem, 200);
            long long ti = (long long)json_integer_value(json_object_get(it, "ti_id"));
            if (n < outsz)
                n += (size_t)snprintf(out + n, outsz - n,
                                      s == 200 ? "%s{\"ti_id\":%lld,\"status\":200,\"state\":\"x\"}"
                                               : "%s{\"ti_id\":%lld,\"status\":%d,\"error\":"
                                                 "{\"code\":\"x\",\"message\":\"item %d\"}}",
                                      i ? "," : "", ti, s, s);
        }
        if (n < outsz)
            snprintf(out + n, outsz - n, "]}");
        json_decref(b);
        return 200;
    }
    if (strstr(url, "/start"))
        return 200;
    if (strstr(url, "/state"))
        return next_status(p->report_script, &p->nreport,
                           p->report_default ? p->report_default : 200);
    if (strcmp(method, "PUT") == 0 && strncmp(url, "/api/v1/dags/", 13) == 0) {
        snprintf(out, outsz, "{\"dag_id\":\"x\",\"hash\":\"h\"}");
        return 200;
    }
    if (strcmp(url, "/user") == 0 && p->user_reply) {
        snprintf(out, outsz, "%s", p->user_reply);
        return 200;
    }
    return 404;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *size, void **ptr)
{
    (void)version;
    struct plane *p = cls;
    struct conn *k = *ptr;
    if (!k) {
        *ptr = calloc(1, sizeof(struct conn));
        return *ptr ? MHD_YES : MHD_NO;
    }
    if (*size) {
        size_t n = *size < sizeof(k->body) - 1 - k->len ? *size : sizeof(k->body) - 1 - k->len;
        memcpy(k->body + k->len, data, n);
        k->len += n;
        *size = 0;
        return MHD_YES;
    }
    char out[1024];
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    pthread_mutex_lock(&p->mu);
    int s = route(p, method, url, auth, k, out, sizeof(out));
    pthread_mutex_unlock(&p->mu);
    return respond(c, s, out);
}

static void done_cb(void *cls, struct MHD_Connection *c, void **ptr,
                    enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    free(*ptr);
    *ptr = NULL;
}

static struct plane *plane_start(void)
{
    struct plane *p = calloc(1, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                MHD_USE_ERROR_LOG,
                            0, NULL, NULL, handler, p, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, done_cb, p, MHD_OPTION_END);
    assert_non_null(p->d);
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(p->d, MHD_DAEMON_INFO_BIND_PORT);
    p->port = i->port;
    snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%u", p->port);
    return p;
}

static void plane_stop(struct plane *p)
{
    MHD_stop_daemon(p->d);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* Requests whose path contains s, in arrival order, copied out under the lock. */
static int count(struct plane *p, const char *s)
{
    int n = 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nlog; i++)
        n += strstr(p->log[i].path, s) != NULL;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* ---- the role side ---- */

struct fixture {
    struct plane *p;
    struct evloop *loop;
    struct api_client *api;
    struct cfg_secret tok;
    char dir[64], tokfile[96], jdir[96];
    int registered, fatal, fatal_code, settled, hb_replies;
    int (*until)(struct fixture *f);
    uint64_t end_ms;
};

static void h_register_body(void *ud, json_t *body)
{
    (void)ud;
    json_object_set_new(body, "queues", json_pack("[s]", "default"));
    json_object_set_new(body, "slots", json_integer(3));
}
static void h_registered(void *ud)
{
    ((struct fixture *)ud)->registered++;
}
static void h_hb_body(void *ud, json_t *body)
{
    (void)ud;
    json_object_set_new(body, "state", json_string("running"));
}
static void h_hb_reply(void *ud, json_t *r)
{
    (void)r;
    ((struct fixture *)ud)->hb_replies++;
}
static void h_fatal(void *ud, int code)
{
    struct fixture *f = ud;
    f->fatal++;
    f->fatal_code = code;
}
static void h_settled(void *ud)
{
    ((struct fixture *)ud)->settled++;
}

static void write_token(const char *path, const char *v)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, v, strlen(v)), (ssize_t)strlen(v));
    close(fd);
}

static void open_api(struct fixture *f, const char *url)
{
    struct api_opts o = {.url = url,
                         .token = &f->tok,
                         .name = "w1",
                         .role = "worker",
                         .journal_dir = f->jdir,
                         .long_poll_ms = 1000,
                         .timeout_ms = 2000};
    struct api_hooks h = {.ud = f,
                          .register_body = h_register_body,
                          .on_registered = h_registered,
                          .heartbeat_body = h_hb_body,
                          .on_heartbeat_reply = h_hb_reply,
                          .on_fatal = h_fatal,
                          .on_settled = h_settled};
    struct remex_error e;
    assert_int_equal(api_new(f->loop, &o, &h, &f->api, &e), REMEX_OK);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/remex-test-api-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->tokfile, sizeof(f->tokfile), "%s/token", f->dir);
    snprintf(f->jdir, sizeof(f->jdir), "%s/journal", f->dir);
    write_token(f->tokfile, "agent-token-1");
    f->tok.kind = CFG_SECRET_FILE;
    f->tok.source = f->tokfile;
    f->p = plane_start();
    f->loop = evloop_new(NULL);
    open_api(f, f->p->url);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    api_free(f->api);
    evloop_free(f->loop);
    plane_stop(f->p);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void on_check(struct evloop *loop, uint64_t id, void *arg)
{
    (void)id;
    struct fixture *f = arg;
    if (f->until(f) || timeutil_mono_ms() >= f->end_ms)
        evloop_stop(loop);
}

/* Runs the loop until pred holds (1) or ms pass (0). */
static int run_until(struct fixture *f, int (*pred)(struct fixture *), uint64_t ms)
{
    f->until = pred;
    f->end_ms = timeutil_mono_ms() + ms;
    uint64_t t1 = evloop_timer_add(f->loop, 5, 5, on_check, f);
    uint64_t t2 = evloop_timer_add(f->loop, ms, 0, on_check, f);
    uint64_t end = timeutil_mono_ms() + ms;
    while (!pred(f) && timeutil_mono_ms() < end)
        assert_int_equal(evloop_run(f->loop, NULL), REMEX_OK);
    evloop_timer_cancel(f->loop, t1);
    evloop_timer_cancel(f->loop, t2);
    return pred(f);
}

static int is_registered(struct fixture *f)
{
    return api_state(f->api) == API_REGISTERED;
}
static int is_fatal(struct fixture *f)
{
    return f->fatal > 0;
}

static void test_register(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(api_state(f->api), API_UNREGISTERED);
    api_start(f->api);
    assert_true(run_until(f, is_registered, 3000));
    assert_int_equal(f->registered, 1);
    assert_string_equal(api_agent_id(f->api), "7");
    assert_int_equal(api_heartbeat_ms(f->api), 5000);
    struct rec *r = &f->p->log[0];
    assert_string_equal(r->path, "/api/v1/agents/register");
    assert_string_equal(r->auth, "Bearer agent-token-1");
    json_t *b = json_loads(r->body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(b, "name")), "w1");
    assert_string_equal(json_string_value(json_array_get(json_object_get(b, "roles"), 0)),
                        "worker");
    assert_int_equal(json_integer_value(json_object_get(b, "slots")), 3);
    assert_non_null(json_object_get(b, "version"));
    json_decref(b);
}

/* 401 -> the token file is read again -> registered with the new token. */
static void test_register_401_rereads_token(void **state)
{
    struct fixture *f = *state;
    f->p->reg_script[0] = 401;
    f->p->nreg = 1;
    f->p->rotate_file = f->tokfile;
    f->p->rotate_to = "agent-token-2";
    api_start(f->api);
    assert_true(run_until(f, is_registered, 5000));
    assert_int_equal(count(f->p, "/register"), 2);
    assert_string_equal(f->p->log[0].auth, "Bearer agent-token-1");
    assert_string_equal(f->p->log[1].auth, "Bearer agent-token-2");
    assert_int_equal(f->fatal, 0);
}

/* Refused twice (after the re-read): FATAL, exit code 100. */
static void test_register_refused_is_fatal(void **state)
{
    struct fixture *f = *state;
    f->p->reg_script[0] = 401;
    f->p->reg_script[1] = 403;
    f->p->nreg = 2;
    api_start(f->api);
    assert_true(run_until(f, is_fatal, 5000));
    assert_int_equal(f->fatal_code, REMEX_EXIT_CONFIG);
    assert_int_equal(api_state(f->api), API_FATAL);
    assert_int_equal(count(f->p, "/register"), 2);
}

static int three_registers(struct fixture *f)
{
    return count(f->p, "/register") >= 4;
}

/* 5xx: retried with full-jitter backoff; each gap within the policy's bounds. */
static void test_register_5xx_backoff(void **state)
{
    struct fixture *f = *state;
    f->p->reg_script[0] = 503;
    f->p->reg_script[1] = 500;
    f->p->reg_script[2] = 502;
    f->p->nreg = 3;
    api_start(f->api);
    assert_true(run_until(f, three_registers, 8000));
    assert_true(run_until(f, is_registered, 3000));
    for (int i = 1; i < 4; i++) {
        uint64_t gap = f->p->log[i].ms - f->p->log[i - 1].ms;
        assert_true(gap >= 45);              /* the 50 ms floor, less clock granularity */
        assert_true(gap <= 50 + 2000 + 500); /* the 2 s cap, plus scheduling slack */
    }
    for (unsigned a = 0; a < 20; a++) {
        uint64_t d = api_backoff_ms(a);
        uint64_t cap = a < 4 ? (200ull << a) : 2000;
        assert_true(d >= 50 && d < 50 + (cap > 2000 ? 2000 : cap));
    }
}

static int never(struct fixture *f)
{
    (void)f;
    return 0;
}

/* Connection refused: no registration, no crash, retried (bounded by the test's deadline). */
static void test_connection_refused(void **state)
{
    struct fixture *f = *state;
    api_free(f->api);
    open_api(f, "http://127.0.0.1:1");
    api_start(f->api);
    assert_false(run_until(f, never, 700));
    assert_int_equal(api_state(f->api), API_REGISTERING);
    assert_int_equal(f->registered, 0);
    assert_int_equal(f->fatal, 0);
}

static int new_session_used(struct fixture *f)
{
    int n = 0;
    pthread_mutex_lock(&f->p->mu);
    for (int i = 0; i < f->p->nlog; i++)
        n += strstr(f->p->log[i].path, "/heartbeat") &&
             strcmp(f->p->log[i].auth, "Bearer sess-2") == 0;
    pthread_mutex_unlock(&f->p->mu);
    return n > 0;
}

/* A session near expiry is refreshed by a heartbeat; the new token is used from then on. */
static void test_session_refresh(void **state)
{
    struct fixture *f = *state;
    f->p->interval = 0.1;
    f->p->exp_in_ms = 150; /* within two intervals of expiry at the first tick */
    f->p->hb_session = "sess-2";
    api_start(f->api);
    assert_true(run_until(f, is_registered, 3000));
    assert_true(run_until(f, new_session_used, 3000));
    assert_int_equal(api_state(f->api), API_REGISTERED);
    assert_string_equal(f->p->log[1].auth, "Bearer sess-1");
    assert_true(f->hb_replies >= 1);
    assert_int_equal(count(f->p, "/register"), 1);
}

static int two_registrations(struct fixture *f)
{
    return f->registered >= 2;
}

/* A heartbeat refused with 401: the session is replaced by registering again. */
static void test_heartbeat_401_reregisters(void **state)
{
    struct fixture *f = *state;
    f->p->interval = 0.05;
    f->p->hb_script[0] = 401;
    f->p->nhb = 1;
    api_start(f->api);
    assert_true(run_until(f, two_registrations, 3000));
    assert_int_equal(f->fatal, 0);
}

static int one_spooled(struct fixture *f)
{
    return api_reports_spooled(f->api) == 1;
}

static int reports_delivered(struct fixture *f)
{
    return api_reports_pending(f->api) == 0 && count(f->p, "/state") >= 5;
}

static void report(struct fixture *f, int n)
{
    char path[64], what[32];
    snprintf(path, sizeof(path), "/api/v1/task-instances/%d/state", n);
    snprintf(what, sizeof(what), "report %d", n);
    api_report(f->api, path, "task-token", json_pack("{s:i}", "n", n), what);
}

/* A report the plane cannot take goes to the journal; replay is oldest first. */
static void test_journal_replay_order(void **state)
{
    struct fixture *f = *state;
    api_start(f->api);
    assert_true(run_until(f, is_registered, 3000));
    f->p->report_script[0] = 503;
    f->p->report_script[1] = 503;
    f->p->nreport = 2;
    report(f, 1);
    assert_true(run_until(f, one_spooled, 3000));
    report(f, 2); /* behind the journaled one */
    report(f, 3);
    assert_int_equal(api_reports_spooled(f->api), 3);
    assert_true(run_until(f, reports_delivered, 5000));
    int order[8], n = 0;
    for (int i = 0; i < f->p->nlog && n < 8; i++)
        if (strstr(f->p->log[i].path, "/state")) {
            json_t *b = json_loads(f->p->log[i].body, 0, NULL);
            order[n++] = (int)json_integer_value(json_object_get(b, "n"));
            assert_string_equal(f->p->log[i].auth, "Bearer task-token");
            json_decref(b);
        }
    assert_int_equal(n, 5);
    assert_int_equal(order[0], 1); /* 503: journaled */
    assert_int_equal(order[1], 1); /* replay, 503 again: retried after a backoff */
    assert_int_equal(order[2], 1);
    assert_int_equal(order[3], 2);
    assert_int_equal(order[4], 3);
}

static int journal_drained(struct fixture *f)
{
    return api_reports_pending(f->api) == 0 && f->registered == 1;
}

/* Reports journaled by a previous process are delivered before the next registration. */
static void test_journal_survives_restart(void **state)
{
    struct fixture *f = *state;
    f->p->report_default = 503;
    api_start(f->api);
    assert_true(run_until(f, is_registered, 3000));
    report(f, 1);
    assert_true(run_until(f, one_spooled, 3000));
    report(f, 2); /* straight to the journal: an older report waits */
    assert_int_equal(api_reports_spooled(f->api), 2);
    api_free(f->api);
    f->registered = 0;
    f->p->report_default = 200;
    pthread_mutex_lock(&f->p->mu);
    f->p->nlog = 0;
    pthread_mutex_unlock(&f->p->mu);
    open_api(f, f->p->url);
    assert_int_equal(api_reports_spooled(f->api), 2);
    api_start(f->api);
    assert_true(run_until(f, journal_drained, 5000));
    assert_true(strstr(f->p->log[0].path, "/1/state") != NULL);
    assert_true(strstr(f->p->log[1].path, "/2/state") != NULL);
    assert_string_equal(f->p->log[2].path, "/api/v1/agents/register");
}

static int nothing_pending(struct fixture *f)
{
    return api_reports_pending(f->api) == 0 && count(f->p, "/state") >= 1;
}

/* A refused report (4xx) is dropped, not retried. */
static void test_report_refused_dropped(void **state)
{
    struct fixture *f = *state;
    api_start(f->api);
    assert_true(run_until(f, is_registered, 3000));
    f->p->report_script[0] = 409;
    f->p->nreport = 1;
    report(f, 5);
    assert_true(run_until(f, nothing_pending, 1500));
    assert_int_equal(api_reports_pending(f->api), 0);
    assert_int_equal(count(f->p, "/state"), 1);
}

static struct api_result last;
static char last_msg[512];
static int user_done;

static void user_cb(void *arg, const struct api_result *r)
{
    (void)arg;
    last = *r;
    last.reply = NULL;
    snprintf(last_msg, sizeof(last_msg), "%s", r->msg);
    user_done = 1;
}

static int got_user(struct fixture *f)
{
    (void)f;
    return user_done;
}

/* Malformed replies: an unreadable register reply is retried; a user call sees 502. */
static void test_malformed_replies(void **state)
{
    struct fixture *f = *state;
    f->p->reg_reply = "{\"agent_id\": \"not a number\"}";
    api_start(f->api);
    assert_true(run_until(f, is_registered, 3000));
    assert_int_equal(count(f->p, "/register"), 2);
    f->p->user_reply = "{not json";
    struct api_call c = {.method = "GET", .path = "/user", .done = user_cb};
    user_done = 0;
    assert_int_equal(api_call(f->api, &c, NULL), REMEX_OK);
    assert_true(run_until(f, got_user, 3000));
    assert_int_equal(last.status, 502);
    assert_int_equal(last.rc, REMEX_EPROTO);
    assert_non_null(strstr(last_msg, "GET /user"));
}

/* ---- batched starts and state reports ---- */

static void ti_report(struct fixture *f, int ti)
{
    char what[32];
    snprintf(what, sizeof(what), "report %d", ti);
    char tok[32];
    snprintf(tok, sizeof(tok), "task-token-%d", ti);
    api_ti_report(f->api, ti, tok, json_pack("{s:i,s:s}", "try_number", 1, "state", "success"),
                  what);
}

static int reports_settled(struct fixture *f)
{
    return api_reports_pending(f->api) == 0;
}

/* Reports made in one loop turn go in one batched request, one item each
 * with its ti_id and task token; items refused in the results are dropped
 * as single refusals are; a report alone goes to its single route. */
static void test_batched_reports(void **state)
{
    struct fixture *f = *state;
    api_start(f->api);
    assert_true(run_until(f, is_registered, 3000));
    f->p->item_script[1] = 409;
    f->p->item_script[2] = 403;
    f->p->nitem = 3;
    ti_report(f, 11);
    ti_report(f, 12);
    ti_report(f, 13);
    assert_int_equal(api_reports_pending(f->api), 3);
    assert_true(run_until(f, reports_settled, 3000));
    assert_int_equal(api_reports_spooled(f->api), 0);
    assert_int_equal(count(f->p, "/api/v1/task-instances/state"), 1);
    assert_int_equal(count(f->p, "/11/state") + count(f->p, "/12/state"), 0);
    int seen = 0;
    for (int i = 0; i < f->p->nlog; i++) {
        if (strcmp(f->p->log[i].path, "/api/v1/task-instances/state") != 0)
            continue;
        seen = 1;
        assert_string_equal(f->p->log[i].auth, "Bearer sess-1"); /* the session's */
        json_t *b = json_loads(f->p->log[i].body, 0, NULL);
        json_t *items = json_object_get(b, "items");
        assert_int_equal(json_array_size(items), 3);
        json_t *it = json_array_get(items, 1);
        assert_int_equal(json_integer_value(json_object_get(it, "ti_id")), 12);
        assert_string_equal(json_string_value(json_object_get(it, "task_token")), "task-token-12");
        assert_string_equal(json_string_value(json_object_get(it, "state")), "success");
        json_decref(b);
    }
    assert_true(seen);
    ti_report(f, 14); /* alone: the single route */
    assert_true(run_until(f, reports_settled, 3000));
    assert_int_equal(count(f->p, "/api/v1/task-instances/14/state"), 1);
    assert_int_equal(count(f->p, "/api/v1/task-instances/state"), 1);
}

static int singles_replayed(struct fixture *f)
{
    return api_reports_pending(f->api) == 0 && count(f->p, "/22/state") == 1;
}

/* A batch the plane does not settle (503, then a plane without the batched
 * route) leaves its reports in the journal as single reports, replayed alone. */
static void test_batched_reports_unsettled(void **state)
{
    struct fixture *f = *state;
    api_start(f->api);
    assert_true(run_until(f, is_registered, 3000));
    f->p->batch_status = 503;
    ti_report(f, 21);
    ti_report(f, 22);
    assert_true(run_until(f, singles_replayed, 5000));
    assert_int_equal(count(f->p, "/api/v1/task-instances/state"), 1);
    assert_int_equal(count(f->p, "/api/v1/task-instances/21/state"), 1);
    /* An older plane: 404 for the batch, single reports from then on. */
    f->p->batch_status = 404;
    ti_report(f, 31);
    ti_report(f, 32);
    assert_true(run_until(f, reports_settled, 5000));
    assert_int_equal(count(f->p, "/api/v1/task-instances/state"), 2);
    assert_int_equal(count(f->p, "/31/state") + count(f->p, "/32/state"), 2);
    ti_report(f, 33);
    ti_report(f, 34);
    assert_true(run_until(f, reports_settled, 5000));
    assert_int_equal(count(f->p, "/api/v1/task-instances/state"), 2);
    assert_int_equal(count(f->p, "/33/state") + count(f->p, "/34/state"), 2);
}

static struct api_result starts[4];
static int nstarts;

static void start_cb(void *arg, const struct api_result *r)
{
    int i = (int)(intptr_t)arg;
    starts[i] = *r;
    starts[i].reply = NULL;
    starts[i].msg = NULL;
    nstarts++;
}

static int got_two_starts(struct fixture *f)
{
    (void)f;
    return nstarts == 2;
}

static int starts_done(struct fixture *f)
{
    (void)f;
    return nstarts == 3;
}

/* Starts made in one loop turn go in one batched request; each callback gets
 * its item's status as the single route's answer. */
static void test_batched_starts(void **state)
{
    struct fixture *f = *state;
    api_start(f->api);
    assert_true(run_until(f, is_registered, 3000));
    f->p->item_script[1] = 409;
    f->p->nitem = 2;
    nstarts = 0;
    json_t *body = json_pack("{s:i}", "try_number", 1);
    for (int i = 0; i < 2; i++)
        assert_int_equal(api_ti_start(f->api, 40 + i, "task-token", body, "start", start_cb,
                                      (void *)(intptr_t)i, NULL),
                         REMEX_OK);
    assert_true(run_until(f, got_two_starts, 3000));
    assert_int_equal(count(f->p, "/api/v1/task-instances/start"), 1);
    assert_int_equal(starts[0].rc, REMEX_OK);
    assert_int_equal(starts[0].status, 200);
    assert_int_equal(starts[1].rc, REMEX_ECONFLICT);
    assert_int_equal(starts[1].status, 409);
    assert_false(starts[1].retryable);
    assert_int_equal(
        api_ti_start(f->api, 42, "task-token", body, "start", start_cb, (void *)(intptr_t)2, NULL),
        REMEX_OK);
    assert_true(run_until(f, starts_done, 3000));
    assert_int_equal(count(f->p, "/api/v1/task-instances/42/start"), 1);
    assert_int_equal(starts[2].rc, REMEX_OK);
    json_decref(body);
}

/* The sentinel's calls: the health report goes to the agent's own route, the
 * queue depth lists its queues; bad inputs start nothing. */
static void test_health_and_depth(void **state)
{
    struct fixture *f = *state;
    struct remex_error e;
    json_t *report = json_pack("{s:s}", "status", "ok");
    assert_int_equal(api_agent_health(f->api, report, user_cb, NULL, &e), REMEX_EINVAL);
    api_start(f->api);
    assert_true(run_until(f, is_registered, 3000));
    user_done = 0;
    assert_int_equal(api_agent_health(f->api, report, user_cb, NULL, &e), REMEX_OK);
    assert_true(run_until(f, got_user, 3000));
    char want[128];
    snprintf(want, sizeof(want), "/api/v1/agents/%s/health", api_agent_id(f->api));
    assert_int_equal(count(f->p, want), 1);
    const char *q[] = {"default", "gpu large"};
    user_done = 0;
    assert_int_equal(api_queues_depth(f->api, q, 2, user_cb, NULL, &e), REMEX_OK);
    assert_true(run_until(f, got_user, 3000));
    assert_int_equal(count(f->p, "/api/v1/queues/depth"), 1);
    assert_int_equal(api_queues_depth(f->api, q, 0, user_cb, NULL, &e), REMEX_EINVAL);
    char name[200];
    memset(name, 'q', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    const char *many[40];
    for (size_t i = 0; i < 40; i++)
        many[i] = name;
    assert_int_equal(api_queues_depth(f->api, many, 40, user_cb, NULL, &e), REMEX_ETOOBIG);
    json_decref(report);
}

/* The one retry policy. */
/* The DAG sync calls: the manifest goes to its route as JSON; a bulk upload's
 * texts are copied into {bundle, dags} as they are, the bundle escaped; an
 * empty or oversized list starts nothing. */
static void test_dag_sync_calls(void **state)
{
    struct fixture *f = *state;
    struct remex_error e;
    api_start(f->api);
    assert_true(run_until(f, is_registered, 3000));
    const char *t[] = {"{\"dag_id\":\"a\"}", "{\"dag_id\":\"b\",\"tags\":[\"x\"]}"};
    size_t l[] = {strlen(t[0]), strlen(t[1])};
    user_done = 0;
    assert_int_equal(api_dags_bulk(f->api, "main", "v\"1", t, l, 2, user_cb, NULL, &e), REMEX_OK);
    assert_true(run_until(f, got_user, 3000));
    json_t *m = json_pack("{s:s, s:s, s:[]}", "bundle", "main", "version", "v1", "files");
    user_done = 0;
    assert_int_equal(api_dags_manifest(f->api, m, user_cb, NULL, &e), REMEX_OK);
    json_decref(m);
    assert_true(run_until(f, got_user, 3000));
    const struct rec *bulk = NULL, *man = NULL;
    pthread_mutex_lock(&f->p->mu); /* recorded entries are not written again */
    for (int i = 0; i < f->p->nlog; i++) {
        if (strcmp(f->p->log[i].path, "/api/v1/dags/bulk") == 0)
            bulk = &f->p->log[i];
        if (strcmp(f->p->log[i].path, "/api/v1/dags/manifest") == 0)
            man = &f->p->log[i];
    }
    pthread_mutex_unlock(&f->p->mu);
    assert_non_null(bulk);
    assert_string_equal(bulk->method, "POST");
    assert_string_equal(bulk->auth, "Bearer sess-1");
    assert_string_equal(bulk->body,
                        "{\"bundle\":{\"name\":\"main\",\"version\":\"v\\\"1\"},"
                        "\"dags\":[{\"dag_id\":\"a\"},{\"dag_id\":\"b\",\"tags\":[\"x\"]}]}");
    assert_non_null(man);
    assert_string_equal(man->method, "POST");
    json_t *got = json_loads(man->body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(got, "bundle")), "main");
    json_decref(got);
    assert_int_equal(api_dags_bulk(f->api, "m", "v", t, l, 0, user_cb, NULL, &e), REMEX_EINVAL);
    assert_int_equal(
        api_dags_bulk(f->api, "m", "v", t, l, API_DAGS_BULK_MAX + 1, user_cb, NULL, &e),
        REMEX_EINVAL);
}

/* One DAG alone: PUT to its route with the id percent-encoded (a '?' or '#' stays in
 * the path), the text copied into {bundle, dag} as it is; a bad id, no text or a body
 * over API_DAG_PUT_MAX starts nothing. */
static void test_dag_put(void **state)
{
    struct fixture *f = *state;
    struct remex_error e;
    api_start(f->api);
    assert_true(run_until(f, is_registered, 3000));
    const char *t = "{\"dag_id\":\"x y?z#1\",\"tasks\":[]}";
    user_done = 0;
    assert_int_equal(
        api_dag_put(f->api, "x y?z#1", "main", "v\"1", t, strlen(t), user_cb, NULL, &e), REMEX_OK);
    assert_true(run_until(f, got_user, 3000));
    assert_int_equal(last.rc, REMEX_OK);
    assert_int_equal(last.status, 200);
    const struct rec *put = NULL;
    pthread_mutex_lock(&f->p->mu);
    for (int i = 0; i < f->p->nlog; i++)
        if (strcmp(f->p->log[i].method, "PUT") == 0)
            put = &f->p->log[i];
    pthread_mutex_unlock(&f->p->mu);
    assert_non_null(put);
    assert_string_equal(put->path, "/api/v1/dags/x y?z#1"); /* the server decodes it */
    assert_string_equal(put->auth, "Bearer sess-1");
    assert_string_equal(put->body, "{\"bundle\":{\"name\":\"main\",\"version\":\"v\\\"1\"},"
                                   "\"dag\":{\"dag_id\":\"x y?z#1\",\"tasks\":[]}}");
    char id[1026];
    memset(id, 'a', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    assert_int_equal(api_dag_put(f->api, id, "m", "v", t, strlen(t), user_cb, NULL, &e),
                     REMEX_ETOOBIG);
    assert_int_equal(api_dag_put(f->api, "", "m", "v", t, strlen(t), user_cb, NULL, &e),
                     REMEX_ETOOBIG);
    assert_int_equal(api_dag_put(f->api, "a", "m", "v", NULL, 0, user_cb, NULL, &e), REMEX_EINVAL);
    char *big = malloc(API_DAG_PUT_MAX);
    assert_non_null(big);
    memset(big, ' ', API_DAG_PUT_MAX);
    assert_int_equal(api_dag_put(f->api, "a", "m", "v", big, API_DAG_PUT_MAX, user_cb, NULL, &e),
                     REMEX_ETOOBIG);
    free(big);
}

/* The one retry policy. */
static void test_retryable(void **state)
{
    (void)state;
    assert_true(http_retryable(REMEX_ECONNECT, 0));
    assert_true(http_retryable(REMEX_ETIMEOUT, 0));
    assert_true(http_retryable(REMEX_EIO, 0));
    assert_false(http_retryable(REMEX_ETLS, 0));
    assert_false(http_retryable(REMEX_ETOOBIG, 0));
    static const long yes[] = {408, 429, 500, 502, 503, 504};
    static const long no[] = {200, 400, 401, 403, 404, 409, 413, 501};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(http_retryable(REMEX_OK, yes[i]));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(http_retryable(REMEX_OK, no[i]));
}

int main(void)
{
    log_init("test", LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    assert_int_equal(http_global_init(0, NULL), REMEX_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_401_rereads_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_refused_is_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_5xx_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_401_reregisters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_replay_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_refused_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batched_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batched_reports_unsettled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batched_starts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dag_sync_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dag_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_and_depth, setup, teardown),
        cmocka_unit_test(test_retryable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
