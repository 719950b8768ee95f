/*
 * Load driver for remex-plane dispatch (run by bench/plane_dispatch.sh, which
 * starts the plane and creates the tokens).
 *
 *   _plane_dispatch --url URL --admin TOKEN --agent-token TOKEN
 *                   [--tasks N] [--workers W] [--slots S] [--samples K] [--plane-pid PID]
 *                   [--batch]
 *   _plane_dispatch --floor [--tasks N] [--workers W] [--slots S]
 *
 * Phase 1: W simulated workers (threads, one registered agent and one
 * keep-alive HTTP/1.1 connection each) drain N queued task instances with
 * /work -> start -> state success; prints assignments per second and, with
 * --plane-pid, the plane's CPU time (user + system, /proc/PID/stat) over the
 * phase and per assignment: a figure that does not depend on how much of the
 * shared cores the run got. The phase runs from the first trigger to the
 * answer to the last assignment's state report; workers that polled after
 * the queue ran dry wait out their long poll (wait 1 s) after that, and how
 * long is printed separately. With --batch a worker starts all the
 * assignments of one /work reply in one POST /task-instances/start and
 * reports them in one POST /task-instances/state (as remex-worker does);
 * without it, one start and one state request per assignment.
 * Phase 2: one worker waits in a /work long poll while the driver triggers a
 * one-task run; prints the trigger -> reply latency (p50, p99) over K samples,
 * an upper bound of the plane's enqueue -> reply latency (it also holds the
 * trigger request, the run's creation and both processes' wake-ups), and the
 * plane's own queued -> offer histogram over the same samples from /metrics
 * (millisecond timestamps: the le 0.0005 bucket holds 0 ms, le 0.001 1 ms).
 * Prints figures only.
 *
 * The HTTP client is a minimal blocking HTTP/1.1 one (keep-alive, TCP_NODELAY,
 * Content-Length bodies, one request in flight per connection) so that the
 * driver spends as little CPU per request as it can: on this 2-core machine
 * every microsecond it uses is taken from the plane it measures.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "remex/buf.h"
#include "remex/timeutil.h"

#define DAG_TASKS 2000 /* tasks per DAG run (canonical DAG JSON is capped at 1 MiB) */

struct client {
    int fd;         /* -1: not connected */
    struct buf out; /* reply body of the last call */
    struct buf req; /* request being sent */
    char in[65536]; /* bytes read and not consumed yet: in[ipos, ilen) */
    size_t ipos, ilen;
};

static const char *g_url, *g_admin, *g_agent_token;
static struct sockaddr_in g_addr;
static char g_hostport[128];
static long g_slots = 16;
static atomic_long g_assigned, g_errors;
/* When the last assignment's state report was answered, and the plane's CPU
 * time then (set once, by the worker that completed it). */
static _Atomic uint64_t g_done_ns;
static double g_done_cpu = -1;
static long g_tasks = 10000;
static long g_plane_pid;
static int g_batch; /* --batch: the batched start and state routes */
/* The worker thread's session token (the batched routes' credential). */
static _Thread_local const char *g_session_tls;

/* CPU seconds (user + system) of process pid so far; -1 when unreadable. */
static double proc_cpu(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name, which may hold spaces: state is field 3. */
    char *s = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!s || sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Parses http://A.B.C.D:PORT into g_addr. */
static int parse_url(const char *url)
{
    char host[64];
    unsigned port = 0;
    if (sscanf(url, "http://%63[0-9.]:%u", host, &port) != 2 || port == 0 || port > 65535)
        return -1;
    memset(&g_addr, 0, sizeof(g_addr));
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)port);
    snprintf(g_hostport, sizeof(g_hostport), "%s:%u", host, port);
    return inet_pton(AF_INET, host, &g_addr.sin_addr) == 1 ? 0 : -1;
}

static int client_init(struct client *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    buf_init(&c->out, 64 * 1024 * 1024);
    buf_init(&c->req, 64 * 1024 * 1024);
    return 0;
}

static void client_close(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->ipos = c->ilen = 0;
}

static void client_free(struct client *c)
{
    client_close(c);
    buf_free(&c->out);
    buf_free(&c->req);
}

static int client_connect(struct client *c)
{
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = 60};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(c->fd, (struct sockaddr *)&g_addr, sizeof(g_addr)) != 0) {
        client_close(c);
        return -1;
    }
    return 0;
}

/* Next byte-range of input; 0 on EOF/error. */
static int fill(struct client *c)
{
    if (c->ipos == c->ilen)
        c->ipos = c->ilen = 0;
    if (c->ilen == sizeof(c->in)) {
        memmove(c->in, c->in + c->ipos, c->ilen - c->ipos);
        c->ilen -= c->ipos;
        c->ipos = 0;
    }
    ssize_t n;
    do
        n = read(c->fd, c->in + c->ilen, sizeof(c->in) - c->ilen);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return 0;
    c->ilen += (size_t)n;
    return 1;
}

/* Reads one reply: status returned, body in c->out; 0 on failure. */
static long read_reply(struct client *c)
{
    char *end;
    for (;;) {
        end = memmem(c->in + c->ipos, c->ilen - c->ipos, "\r\n\r\n", 4);
        if (end)
            break;
        if (!fill(c))
            return 0;
    }
    *end = '\0';
    char *h = c->in + c->ipos;
    long st = 0;
    if (sscanf(h, "HTTP/1.%*d %ld", &st) != 1)
        return 0;
    size_t clen = 0;
    int keep = 1;
    for (char *l = strstr(h, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, "Content-Length:", 15) == 0)
            clen = strtoull(l + 17, NULL, 10);
        else if (strncasecmp(l + 2, "Connection: close", 17) == 0)
            keep = 0;
    }
    c->ipos = (size_t)(end + 4 - c->in);
    while (c->out.len < clen) {
        if (c->ipos == c->ilen && !fill(c))
            return 0;
        size_t take = c->ilen - c->ipos;
        if (take > clen - c->out.len)
            take = clen - c->out.len;
        if (buf_append(&c->out, c->in + c->ipos, take) != REMEX_OK)
            return 0;
        c->ipos += take;
    }
    if (!keep)
        client_close(c);
    return st;
}

/* One request; returns the HTTP status (0 on transport failure), reply in c->out. */
static long call(struct client *c, const char *method, const char *path, const char *token,
                 const char *body)
{
    size_t blen = body ? strlen(body) : 0;
    buf_reset(&c->req);
    buf_printf(&c->req,
               "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
               method, path, g_hostport, token, blen);
    if (blen && buf_append(&c->req, body, blen) != REMEX_OK)
        return 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        buf_reset(&c->out);
        int reused = c->fd >= 0;
        if (!reused && client_connect(c) < 0)
            return 0;
        size_t off = 0;
        while (off < c->req.len) {
            ssize_t n = send(c->fd, c->req.data + off, c->req.len - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        long st = off == c->req.len ? read_reply(c) : 0;
        if (st)
            return st;
        client_close(c);
        if (!reused || c->out.len > 0)
            break; /* only a kept-alive connection the server closed is retried */
    }
    return 0;
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

/* Runs every assignment in c->out with the batched routes: one
 * POST /task-instances/start for all of them, then one
 * POST /task-instances/state with their success reports. Returns how many. */
static long run_assignments_batch(struct client *c)
{
    json_t *j = json_loads(buf_cstr(&c->out), 0, NULL);
    json_t *arr = json_object_get(j, "assignments");
    size_t i, n = json_array_size(arr);
    json_t *a;
    if (n == 0) {
        json_decref(j);
        return 0;
    }
    struct buf sb = BUF_INIT(16 * 1024 * 1024), rb = BUF_INIT(16 * 1024 * 1024);
    buf_puts(&sb, "{\"items\":[");
    buf_puts(&rb, "{\"items\":[");
    json_array_foreach(arr, i, a)
    {
        json_int_t ti = json_integer_value(json_object_get(a, "ti_id"));
        json_int_t tr = json_integer_value(json_object_get(a, "try_number"));
        const char *tok = json_string_value(json_object_get(a, "task_token"));
        buf_printf(&sb,
                   "%s{\"ti_id\":%" JSON_INTEGER_FORMAT ",\"try_number\":%" JSON_INTEGER_FORMAT
                   ",\"task_token\":\"%s\"}",
                   i ? "," : "", ti, tr, tok ? tok : "");
        buf_printf(&rb,
                   "%s{\"ti_id\":%" JSON_INTEGER_FORMAT ",\"try_number\":%" JSON_INTEGER_FORMAT
                   ",\"task_token\":\"%s\",\"state\":\"success\"}",
                   i ? "," : "", ti, tr, tok ? tok : "");
    }
    buf_puts(&sb, "]}");
    buf_puts(&rb, "]}");
    json_decref(j);
    /* Every item must come back 200: count the others as errors. */
    const char *bodies[2] = {buf_cstr(&sb), buf_cstr(&rb)};
    const char *paths[2] = {"/api/v1/task-instances/start", "/api/v1/task-instances/state"};
    for (int k = 0; k < 2; k++) {
        if (call(c, "POST", paths[k], g_session_tls, bodies[k]) != 200) {
            atomic_fetch_add(&g_errors, (long)n);
            continue;
        }
        /* The plane writes each result as {"ti_id":N,"status":S,...}
         * (compact): counting the 200s takes a scan, not a parse. */
        long ok = 0;
        for (const char *x = buf_cstr(&c->out); (x = strstr(x, "\"status\":200")); x += 13)
            ok++;
        atomic_fetch_add(&g_errors, (long)n - ok);
    }
    buf_free(&sb);
    buf_free(&rb);
    return (long)n;
}

/* Runs every assignment in c->out: start, then success. Returns how many. */
static long run_assignments(struct client *c)
{
    if (g_batch)
        return run_assignments_batch(c);
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
    g_session_tls = session;
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
        long before = atomic_fetch_add(&g_assigned, n);
        if (before < g_tasks && before + n >= g_tasks) {
            g_done_cpu = g_plane_pid ? proc_cpu(g_plane_pid) : -1;
            atomic_store(&g_done_ns, timeutil_mono_ns());
        }
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
    g_session_tls = l->session;
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

/* The plane's own queued -> offer histogram (/metrics): cumulative counts of
 * remex_plane_dispatch_latency_seconds for le 0.0005, 0.001, 0.0025 and all
 * observations, into h[4]. 0 or -1. */
static int plane_hist(struct client *c, long h[4])
{
    static const char *const le[3] = {"0.0005", "0.001", "0.0025"};
    if (call(c, "GET", "/metrics", g_admin, NULL) != 200)
        return -1;
    const char *m = buf_cstr(&c->out);
    for (int i = 0; i < 4; i++) {
        char key[96];
        if (i < 3)
            snprintf(key, sizeof(key), "remex_plane_dispatch_latency_seconds_bucket{le=\"%s\"} ",
                     le[i]);
        else
            snprintf(key, sizeof(key), "remex_plane_dispatch_latency_seconds_count ");
        const char *at = strstr(m, key);
        if (!at)
            return -1;
        h[i] = strtol(at + strlen(key), NULL, 10);
    }
    return 0;
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
    long h0[4], h1[4];
    int have_hist = plane_hist(c, h0) == 0;
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
    if (have_hist && plane_hist(c, h1) == 0) {
        long n = h1[3] - h0[3];
        printf("plane_dispatch: the plane's own queued->offer times over those runs "
               "(/metrics; its clock has 1 ms steps, so <= 1 ms means under 2 ms): %ld of %ld "
               "at 0 ms, %ld at <= 1 ms, %ld at <= 2 ms\n",
               h1[0] - h0[0], n, h1[1] - h0[1], h1[2] - h0[2]);
    }
    free(v);
    free(l.session);
}

/* ---- --floor: the same requests against a canned HTTP server ----
 *
 * The floor of the dispatch figure on this machine: the driver's workers make
 * exactly the requests of --batch (register, /work, batched start, batched
 * state), over the same keep-alive loopback connections, to a libmicrohttpd
 * server configured as the plane's (epoll, one event loop per CPU) that
 * answers each with a reply of the plane's shape and size from memory: no
 * database, no scheduler, no credential checks. Server and driver share this
 * process, so the CPU printed is both. */

static atomic_long g_floor_left; /* assignments the canned server still hands out */
static char *g_floor_asg;        /* one assignment's JSON text, "%ld" for its ti_id */

struct floor_req {
    struct buf body;
};

static enum MHD_Result floor_reply(struct MHD_Connection *c, int status, char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The canned reply to one request (malloc'd). */
static char *floor_answer(const char *url, const struct buf *body)
{
    struct buf out = BUF_INIT(16 * 1024 * 1024);
    static atomic_long next_ti;
    if (strcmp(url, "/api/v1/agents/register") == 0) {
        buf_puts(&out, "{\"agent_id\":1,\"session_token\":\"floor\",\"heartbeat_interval\":5}");
    } else if (strcmp(url, "/api/v1/work") == 0) {
        long n = g_slots, left = atomic_fetch_sub(&g_floor_left, n);
        n = left <= 0 ? 0 : left < n ? left : n;
        buf_puts(&out, "{\"assignments\":[");
        for (long i = 0; i < n; i++) {
            buf_puts(&out, i ? "," : "");
            buf_printf(&out, g_floor_asg, atomic_fetch_add(&next_ti, 1) + 1);
        }
        buf_puts(&out, "]}");
    } else { /* a batch: one result per item */
        int start = strstr(url, "/start") != NULL;
        buf_puts(&out, "{\"results\":[");
        const char *x = body->data ? buf_cstr((struct buf *)body) : "";
        for (int i = 0; (x = strstr(x, "\"ti_id\":")); i++) {
            long ti = strtol(x + 8, NULL, 10);
            buf_printf(&out, "%s{\"ti_id\":%ld,\"status\":200,\"state\":\"%s\"}", i ? "," : "", ti,
                       start ? "running" : "success");
            x += 8;
        }
        buf_puts(&out, "]}");
    }
    return buf_detach(&out, NULL);
}

static enum MHD_Result floor_handler(void *cls, struct MHD_Connection *c, const char *url,
                                     const char *method, const char *version, const char *data,
                                     size_t *size, void **ptr)
{
    (void)cls;
    (void)method;
    (void)version;
    struct floor_req *q = *ptr;
    if (!q) {
        q = calloc(1, sizeof(*q));
        if (!q)
            return MHD_NO;
        buf_init(&q->body, 1024 * 1024);
        *ptr = q;
        return MHD_YES;
    }
    if (*size) {
        buf_append(&q->body, data, *size);
        *size = 0;
        return MHD_YES;
    }
    char *text = floor_answer(url, &q->body);
    return text ? floor_reply(c, 200, text) : MHD_NO;
}

static void floor_done(void *cls, struct MHD_Connection *c, void **ptr,
                       enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    struct floor_req *q = *ptr;
    if (q) {
        buf_free(&q->body);
        free(q);
    }
    *ptr = NULL;
}

/* Starts the canned server on a free loopback port and points g_url at it. */
static struct MHD_Daemon *floor_start(char *url, size_t urlsz)
{
    /* An assignment as the plane writes it (same keys, similar sizes), with
     * a task token of a real one's length. */
    struct buf a = BUF_INIT(64 * 1024);
    buf_puts(&a, "{\"ti_id\":%ld,\"dag_id\":\"bench\",\"run_id\":"
                 "\"manual__2026-12-07T08:00:00.000000+00:00\",\"task_id\":\"t00001\","
                 "\"map_index\":-1,\"try_number\":1,\"queue\":\"default\","
                 "\"logical_date\":\"2026-12-07T08:00:00Z\",\"data_interval_start\":"
                 "\"2026-12-07T08:00:00Z\",\"data_interval_end\":\"2026-12-07T08:00:00Z\","
                 "\"offer_expires_at\":\"2026-12-07T08:00:30.000Z\",\"bundle\":{\"name\":"
                 "\"bench\",\"version\":\"1\"},\"task\":{\"task_id\":\"t00001\","
                 "\"command\":[\"true\"]},\"params\":{},\"conf\":{},\"task_token\":\"");
    for (int i = 0; i < 180; i++)
        buf_putc(&a, "abcdefghijklmnopqrstuvwxyz0123456789._"[i % 38]);
    buf_puts(&a, "\"}");
    g_floor_asg = buf_detach(&a, NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                         floor_handler, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(ncpu > 0 && ncpu < 64 ? ncpu : 1),
                         MHD_OPTION_NOTIFY_COMPLETED, floor_done, NULL, MHD_OPTION_END);
    if (!d)
        return NULL;
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(url, urlsz, "http://127.0.0.1:%u", i ? (unsigned)i->port : 0u);
    return d;
}

/* --floor: the dispatch phase of --batch against the canned server. */
static int floor_run(long workers)
{
    char url[64];
    struct MHD_Daemon *d = floor_start(url, sizeof(url));
    if (!d || parse_url(url) < 0) {
        fprintf(stderr, "plane_dispatch: floor server did not start\n");
        return 1;
    }
    g_batch = 1;
    g_agent_token = "floor";
    atomic_store(&g_floor_left, g_tasks);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    pthread_t *th = calloc((size_t)workers, sizeof(*th));
    uint64_t t0 = timeutil_mono_ns();
    for (long i = 0; i < workers; i++)
        pthread_create(&th[i], NULL, worker, (void *)i);
    for (long i = 0; i < workers; i++)
        pthread_join(th[i], NULL);
    uint64_t done = atomic_load(&g_done_ns);
    double secs = (double)((done ? done : timeutil_mono_ns()) - t0) / 1e9;
    getrusage(RUSAGE_SELF, &r1);
    double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
                 (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
                 (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
                 (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    long n = (long)atomic_load(&g_assigned);
    printf("plane_dispatch: floor (the batched requests to a canned HTTP server, no plane): "
           "%ld assignments by %ld workers in %.2f s: %.0f assignments/s, %ld errors "
           "(driver + server CPU %.2f s, %.1f us per assignment)\n",
           n, workers, secs, n / secs, (long)atomic_load(&g_errors), cpu,
           n ? cpu * 1e6 / (double)n : 0.0);
    MHD_stop_daemon(d);
    free(th);
    free(g_floor_asg);
    return 0;
}

int main(int argc, char **argv)
{
    long workers = 8, samples = 200;
    int floor_mode = 0;
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"admin", required_argument, NULL, 'a'},
        {"agent-token", required_argument, NULL, 't'},
        {"tasks", required_argument, NULL, 'n'},
        {"workers", required_argument, NULL, 'w'},
        {"slots", required_argument, NULL, 's'},
        {"samples", required_argument, NULL, 'k'},
        {"plane-pid", required_argument, NULL, 'p'},
        {"batch", no_argument, NULL, 'b'},
        {"floor", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
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
        case 'b':
            g_batch = 1;
            break;
        case 'f':
            floor_mode = 1;
            break;
        case 'p':
            if (!(optarg && *optarg && !*end && v > 0)) {
                fprintf(stderr, "plane_dispatch: bad pid %s\n", optarg);
                return 2;
            }
            g_plane_pid = v;
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
    if (floor_mode)
        return floor_run(workers);
    if (!g_url || !g_admin || !g_agent_token) {
        fprintf(stderr, "usage: _plane_dispatch --url URL --admin TOKEN --agent-token TOKEN "
                        "[--tasks N] [--workers W] [--slots S] [--samples K] [--batch]\n"
                        "       _plane_dispatch --floor [--tasks N] [--workers W] [--slots S]\n");
        return 2;
    }
    if (parse_url(g_url) < 0) {
        fprintf(stderr, "plane_dispatch: --url must be http://A.B.C.D:PORT\n");
        return 2;
    }
    struct client c;
    if (client_init(&c) < 0)
        return 1;
    long runs = (g_tasks + DAG_TASKS - 1) / DAG_TASKS;
    long per = g_tasks < DAG_TASKS ? g_tasks : DAG_TASKS;
    g_tasks = runs * per;
    if (push_dag(&c, "bench", per) < 0)
        return 1;
    pthread_t *th = calloc((size_t)workers, sizeof(*th));
    double pc0 = g_plane_pid ? proc_cpu(g_plane_pid) : -1;
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
    /* The phase ends with the last assignment's state report: a worker that
     * polled after the queue ran dry waits out its long poll (wait 1 s) with
     * nothing left to hand out, which is idle time, not dispatch. */
    uint64_t t1 = timeutil_mono_ns(), done = atomic_load(&g_done_ns);
    double secs = (double)((done ? done : t1) - t0) / 1e9;
    double pc1 = done ? g_done_cpu : pc0 >= 0 ? proc_cpu(g_plane_pid) : -1;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double dcpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("plane_dispatch: %s %ld assignments (work+start+success) by %ld workers in %.2f s: "
           "%.0f assignments/s, %ld errors (driver CPU %.2f s)\n",
           g_batch ? "batched routes:" : "single routes:", (long)atomic_load(&g_assigned), workers,
           secs, atomic_load(&g_assigned) / secs, (long)atomic_load(&g_errors), dcpu);
    printf("plane_dispatch: workers back %.2f s after the last assignment (idle long polls)\n",
           (double)(t1 - (done ? done : t1)) / 1e9);
    long nassigned = (long)atomic_load(&g_assigned);
    if (pc0 >= 0 && pc1 >= 0 && nassigned > 0)
        printf("plane_dispatch: plane CPU over the assignments: %.2f s, %.1f us per assignment "
               "(%.0f assignments per plane CPU second)\n",
               pc1 - pc0, (pc1 - pc0) * 1e6 / (double)nassigned, (double)nassigned / (pc1 - pc0));
    latency_phase(&c, (int)samples);
    free(th);
    client_free(&c);
    return 0;
}
