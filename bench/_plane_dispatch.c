/*
 * Load driver for remex-plane dispatch (run by bench/plane_dispatch.sh, which
 * starts the plane and creates the tokens).
 *
 *   _plane_dispatch --url URL --admin TOKEN --agent-token TOKEN
 *                   [--tasks N] [--workers W] [--slots S] [--samples K]
 *
 * Phase 1: W simulated workers (threads, one registered agent and one
 * keep-alive libcurl handle each) drain N queued task instances with
 * /work -> start -> state success; prints assignments per second.
 * Phase 2: one worker waits in a /work long poll while the driver triggers a
 * one-task run; prints the trigger -> reply latency (p50, p99) over K samples,
 * an upper bound of the plane's enqueue -> reply latency. Prints figures only.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "remex/buf.h"
#include "remex/timeutil.h"

#define DAG_TASKS 2000 /* tasks per DAG run (canonical DAG JSON is capped at 1 MiB) */

struct client {
    CURL *h;
    struct curl_slist *hdr;
    struct buf out;
};

static const char *g_url, *g_admin, *g_agent_token;
static long g_slots = 16;
static atomic_long g_assigned, g_errors;
static long g_tasks = 10000;

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    struct buf *b = ud;
    return buf_append(b, p, sz * n) == REMEX_OK ? sz * n : 0;
}

static int client_init(struct client *c)
{
    memset(c, 0, sizeof(*c));
    buf_init(&c->out, 64 * 1024 * 1024);
    c->h = curl_easy_init();
    if (!c->h)
        return -1;
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->out);
    curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 60L);
    return 0;
}

static void client_free(struct client *c)
{
    curl_slist_free_all(c->hdr);
    curl_easy_cleanup(c->h);
    buf_free(&c->out);
}

/* One request; returns the HTTP status (0 on transport failure), reply in c->out. */
static long call(struct client *c, const char *method, const char *path, const char *token,
                 const char *body)
{
    char url[512], auth[4096];
    snprintf(url, sizeof(url), "%s%s", g_url, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    curl_slist_free_all(c->hdr);
    c->hdr = curl_slist_append(NULL, auth);
    c->hdr = curl_slist_append(c->hdr, "Content-Type: application/json");
    buf_reset(&c->out);
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdr);
    curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body ? body : "");
    if (curl_easy_perform(c->h) != CURLE_OK)
        return 0;
    long st = 0;
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &st);
    return st;
}

/* Registers an agent; *session malloc'd. */
static int agent_register(struct client *c, const char *name, char **session)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"name\":\"%s\",\"roles\":[\"worker\"],\"version\":\"bench\",\"hostname\":\"b\","
             "\"queues\":[\"default\"],\"slots\":%ld}",
             name, g_slots);
    if (call(c, "POST", "/api/v1/agents/register", g_agent_token, body) != 200)
        return -1;
    json_t *j = json_loads(buf_cstr(&c->out), 0, NULL);
    const char *s = json_string_value(json_object_get(j, "session_token"));
    *session = s ? strdup(s) : NULL;
    json_decref(j);
    return *session ? 0 : -1;
}

/* Runs every assignment in c->out: start, then success. Returns how many. */
static long run_assignments(struct client *c)
{
    json_t *j = json_loads(buf_cstr(&c->out), 0, NULL);
    json_t *arr = json_object_get(j, "assignments");
    size_t i;
    json_t *a;
    long n = 0;
    json_array_foreach(arr, i, a)
    {
        char path[128], body[128];
        json_int_t ti = json_integer_value(json_object_get(a, "ti_id"));
        json_int_t tr = json_integer_value(json_object_get(a, "try_number"));
        char *tok = strdup(json_string_value(json_object_get(a, "task_token")));
        snprintf(path, sizeof(path), "/api/v1/task-instances/%" JSON_INTEGER_FORMAT "/start", ti);
        snprintf(body, sizeof(body), "{\"try_number\":%" JSON_INTEGER_FORMAT "}", tr);
        if (call(c, "POST", path, tok, body) != 200)
            atomic_fetch_add(&g_errors, 1);
        snprintf(path, sizeof(path), "/api/v1/task-instances/%" JSON_INTEGER_FORMAT "/state", ti);
        snprintf(body, sizeof(body),
                 "{\"try_number\":%" JSON_INTEGER_FORMAT ",\"state\":\"success\"}", tr);
        if (call(c, "POST", path, tok, body) != 200)
            atomic_fetch_add(&g_errors, 1);
        free(tok);
        n++;
    }
    json_decref(j);
    return n;
}

static void *worker(void *arg)
{
    long id = (long)arg;
    struct client c;
    char name[64], *session = NULL, body[128];
    if (client_init(&c) < 0)
        return NULL;
    snprintf(name, sizeof(name), "bench-w%ld", id);
    if (agent_register(&c, name, &session) < 0) {
        fprintf(stderr, "plane_dispatch: register failed\n");
        atomic_fetch_add(&g_errors, 1);
        client_free(&c);
        return NULL;
    }
    snprintf(body, sizeof(body), "{\"queues\":[\"default\"],\"free_slots\":%ld,\"wait\":1}",
             g_slots);
    int idle = 0;
    while (atomic_load(&g_assigned) < g_tasks && idle < 5) {
        if (call(&c, "POST", "/api/v1/work", session, body) != 200) {
            atomic_fetch_add(&g_errors, 1);
            break;
        }
        long n = run_assignments(&c);
        idle = n ? 0 : idle + 1;
        atomic_fetch_add(&g_assigned, n);
    }
    free(session);
    client_free(&c);
    return NULL;
}

static int push_dag(struct client *c, const char *dag_id, long ntasks)
{
    struct buf b = BUF_INIT(8 * 1024 * 1024);
    buf_printf(&b,
               "{\"bundle\":{\"name\":\"bench\",\"version\":\"1\"},\"dag\":{\"dag_id\":\"%s\","
               "\"fileloc\":\"bench.yaml\",\"max_active_runs\":1000,"
               "\"max_active_tasks\":1000000,\"tasks\":[",
               dag_id);
    for (long i = 0; i < ntasks; i++)
        buf_printf(&b, "%s{\"task_id\":\"t%05ld\",\"command\":[\"true\"]}", i ? "," : "", i);
    buf_puts(&b, "]}}");
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/dags/%s", dag_id);
    long st = call(c, "PUT", path, g_admin, buf_cstr(&b));
    buf_free(&b);
    if (st != 200)
        fprintf(stderr, "plane_dispatch: push %s: HTTP %ld %s\n", dag_id, st, buf_cstr(&c->out));
    return st == 200 ? 0 : -1;
}

static int trigger(struct client *c, const char *dag_id)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/admin/dags/%s/runs", dag_id);
    long st = call(c, "POST", path, g_admin, "{}");
    if (st != 200)
        fprintf(stderr, "plane_dispatch: trigger: HTTP %ld %s\n", st, buf_cstr(&c->out));
    return st == 200 ? 0 : -1;
}

/* ---- phase 2: wake-up latency ---- */

struct lat {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go;  /* main -> poller: send one long poll */
    int got; /* poller -> main: 1 work arrived, -1 none */
    int done;
    uint64_t reply_ns;
    char *session;
};

static void *lat_poller(void *arg)
{
    struct lat *l = arg;
    struct client c;
    if (client_init(&c) < 0)
        return NULL;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (!l->go && !l->done)
            pthread_cond_wait(&l->cv, &l->mu);
        int done = l->done;
        l->go = 0;
        pthread_mutex_unlock(&l->mu);
        if (done)
            break;
        long st = call(&c, "POST", "/api/v1/work", l->session,
                       "{\"queues\":[\"lat\"],\"free_slots\":1,\"wait\":10}");
        uint64_t t = timeutil_mono_ns();
        long n = st == 200 ? run_assignments(&c) : 0;
        pthread_mutex_lock(&l->mu);
        l->reply_ns = t;
        l->got = n > 0 ? 1 : -1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    client_free(&c);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void latency_phase(struct client *c, int samples)
{
    struct buf b = BUF_INIT(4096);
    buf_puts(&b, "{\"bundle\":{\"name\":\"bench\",\"version\":\"1\"},\"dag\":{\"dag_id\":\"lat\","
                 "\"fileloc\":\"lat.yaml\",\"max_active_runs\":1000,\"tasks\":[{\"task_id\":\"t\","
                 "\"command\":[\"true\"],\"queue\":\"lat\"}]}}");
    long st = call(c, "PUT", "/api/v1/dags/lat", g_admin, buf_cstr(&b));
    buf_free(&b);
    struct lat l = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    if (st != 200 || agent_register(c, "bench-lat", &l.session) < 0) {
        fprintf(stderr, "plane_dispatch: latency setup failed\n");
        return;
    }
    uint64_t *v = calloc((size_t)samples, sizeof(*v));
    pthread_t th;
    pthread_create(&th, NULL, lat_poller, &l);
    int k = 0;
    for (int i = 0; i < samples; i++) {
        pthread_mutex_lock(&l.mu);
        l.got = 0;
        l.go = 1;
        pthread_cond_broadcast(&l.cv);
        pthread_mutex_unlock(&l.mu);
        usleep(3000); /* let the poll reach the plane and block */
        uint64_t t0 = timeutil_mono_ns();
        int ok = trigger(c, "lat") == 0;
        pthread_mutex_lock(&l.mu);
        while (!l.got)
            pthread_cond_wait(&l.cv, &l.mu);
        if (l.got > 0 && ok)
            v[k++] = l.reply_ns - t0;
        pthread_mutex_unlock(&l.mu);
        if (!ok)
            break;
    }
    pthread_mutex_lock(&l.mu);
    l.done = 1;
    pthread_cond_broadcast(&l.cv);
    pthread_mutex_unlock(&l.mu);
    pthread_join(th, NULL);
    if (k > 0) {
        qsort(v, (size_t)k, sizeof(*v), cmp_u64);
        printf("plane_dispatch: trigger->long-poll reply latency over %d runs: p50 %.3f ms, "
               "p99 %.3f ms, max %.3f ms\n",
               k, v[k / 2] / 1e6, v[(k * 99) / 100 < k ? (k * 99) / 100 : k - 1] / 1e6,
               v[k - 1] / 1e6);
    }
    free(v);
    free(l.session);
}

int main(int argc, char **argv)
{
    long workers = 8, samples = 200;
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},         {"admin", required_argument, NULL, 'a'},
        {"agent-token", required_argument, NULL, 't'}, {"tasks", required_argument, NULL, 'n'},
        {"workers", required_argument, NULL, 'w'},     {"slots", required_argument, NULL, 's'},
        {"samples", required_argument, NULL, 'k'},     {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        long v = optarg ? strtol(optarg, &end, 10) : 0;
        int num = optarg && *optarg && !*end && v > 0 && v <= 1000000;
        switch (ch) {
        case 'u':
            g_url = optarg;
            break;
        case 'a':
            g_admin = optarg;
            break;
        case 't':
            g_agent_token = optarg;
            break;
        case 'n':
        case 'w':
        case 's':
        case 'k':
            if (!num) {
                fprintf(stderr, "plane_dispatch: bad number %s\n", optarg);
                return 2;
            }
            *(ch == 'n' ? &g_tasks : ch == 'w' ? &workers : ch == 's' ? &g_slots : &samples) = v;
            break;
        default:
            return 2;
        }
    }
    if (!g_url || !g_admin || !g_agent_token) {
        fprintf(stderr, "usage: _plane_dispatch --url URL --admin TOKEN --agent-token TOKEN "
                        "[--tasks N] [--workers W] [--slots S] [--samples K]\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct client c;
    if (client_init(&c) < 0)
        return 1;
    long runs = (g_tasks + DAG_TASKS - 1) / DAG_TASKS;
    long per = g_tasks < DAG_TASKS ? g_tasks : DAG_TASKS;
    g_tasks = runs * per;
    if (push_dag(&c, "bench", per) < 0)
        return 1;
    pthread_t *th = calloc((size_t)workers, sizeof(*th));
    uint64_t t0 = timeutil_mono_ns();
    for (long i = 0; i < runs; i++)
        if (trigger(&c, "bench") < 0) {
            fprintf(stderr, "plane_dispatch: trigger failed\n");
            return 1;
        }
    for (long i = 0; i < workers; i++)
        pthread_create(&th[i], NULL, worker, (void *)i);
    for (long i = 0; i < workers; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(timeutil_mono_ns() - t0) / 1e9;
    printf("plane_dispatch: %ld assignments (work+start+success) by %ld workers in %.2f s: "
           "%.0f assignments/s, %ld errors\n",
           (long)atomic_load(&g_assigned), workers, secs, atomic_load(&g_assigned) / secs,
           (long)atomic_load(&g_errors));
    latency_phase(&c, (int)samples);
    free(th);
    client_free(&c);
    curl_global_cleanup();
    return 0;
}
