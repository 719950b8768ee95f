/*
 * Streamed upload of a cold scan: DAGs go to the plane while the scan goes on.
 *
 * A scan with no previous state (first start, no file-hash cache) parses
 * every file. Rather than holding every parsed DAG until the manifest is
 * answered (10,000 models: ~100 MB, or their texts: ~25 MB), the scan thread
 * moves each parsed file's canonical DAG texts (the parser's) into batches of
 * about b->batch_bytes and queues them; the loop uploads them (api_dags_bulk, bundle
 * and the scan's version, SYNC_WINDOW at once) while the scan goes on, so the
 * plane stores DAGs while the dag-processor parses. Once the scan ended and
 * the queue is empty with nothing in flight, the usual sync runs (sync.c):
 * the manifest, whose answer then lists only what the stream did not store.
 *
 * The stream is an optimisation, never the authority: a refused or failed
 * batch only stops the stream (the manifest answers those DAGs as missing
 * and the sync uploads them, parsing their files again); so does a batch the
 * plane had entirely ("unchanged": a lost cache, the plane kept), so that a
 * populated plane gets one batch, not every DAG again. A DAG id already
 * seen in an earlier file of the scan is not streamed (defined twice: the
 * manifest's import errors decide). Memory: at most DP_STREAM_QUEUE_MAX bytes
 * of queued text; a full queue makes the scan thread wait while uploads
 * complete (they are the slower side), up to DP_STREAM_WAIT_MS, after which
 * the stream stops and the rest of the scan keeps its texts as before.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "dagproc.h"
#include "remex/api.h"
#include "remex/evloop.h"
#include "remex/log.h"
#include "remex/role.h"

#define DP_STREAM_QUEUE_MAX (16u * 1024 * 1024)
#define DP_STREAM_WAIT_MS   10000u
#define STREAM_WINDOW       2

static void batch_free(struct dp_batch *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->n; i++)
        free(x->texts[i]);
    free(x->texts);
    free(x->lens);
    free(x);
}

static struct dp_batch *batch_new(struct dp_stream *st)
{
    struct dp_batch *x = calloc(1, sizeof(*x));
    if (x && (!(x->texts = calloc(API_DAGS_BULK_MAX, sizeof(*x->texts))) ||
              !(x->lens = calloc(API_DAGS_BULK_MAX, sizeof(*x->lens))))) {
        batch_free(x);
        return NULL;
    }
    if (x)
        x->b = st->th_b;
    return x;
}

/* Scan thread: queues the current batch, waiting (bounded) while the queue is full. */
static void flush(struct dp_stream *st)
{
    struct dp_batch *x = st->cur;
    st->cur = NULL;
    if (!x || x->n == 0) {
        batch_free(x);
        return;
    }
    pthread_mutex_lock(&st->mu);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += DP_STREAM_WAIT_MS / 1000;
    while (st->on && !st->stop && st->queued_bytes + x->bytes > DP_STREAM_QUEUE_MAX &&
           st->queued_bytes > 0)
        if (pthread_cond_timedwait(&st->cv, &st->mu, &dl) == ETIMEDOUT) {
            st->on = 0; /* the plane does not take them: the sync uploads the rest */
            break;
        }
    if (st->on && !st->stop) {
        *st->tail = x;
        st->tail = &x->next;
        st->queued_bytes += x->bytes;
        x = NULL;
    }
    pthread_mutex_unlock(&st->mu);
    if (x == NULL) {
        uint64_t one = 1;
        while (write(st->fd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
    }
    batch_free(x);
}

/* dp_scan hook (scan thread): the parsed file's DAG texts move into the batch. */
static void on_parsed(void *ud, struct dp_state *s, size_t i)
{
    struct dp_stream *st = ud;
    struct dp_entry *x = &s->ent[i];
    int all = 1;
    pthread_mutex_lock(&st->mu);
    int on = st->on && !st->stop;
    pthread_mutex_unlock(&st->mu);
    if (!on)
        return;
    for (size_t j = 0; j < x->ndags; j++) {
        const char *id = x->dags[j].dag_id;
        char *t = NULL;
        size_t len = 0;
        if (json_object_get(st->seen, id) || json_object_set_new(st->seen, id, json_true())) {
            all = 0; /* defined twice: left to the manifest's answer */
            continue;
        }
        t = x->texts[j]; /* the parser's canonical text: not encoded again */
        x->texts[j] = NULL;
        len = strlen(t);
        if (st->cur && (st->cur->n == API_DAGS_BULK_MAX ||
                        (st->cur->n > 0 && st->cur->bytes + len > st->batch_bytes)))
            flush(st);
        if (!st->cur) {
            st->cur = batch_new(st);
            if (st->cur)
                snprintf(st->cur->version, sizeof(st->cur->version), "%s",
                         st->th_version[0] ? st->th_version : s->version);
        }
        if (!st->cur) {
            free(t);
            all = 0;
            continue;
        }
        st->cur->texts[st->cur->n] = t;
        st->cur->lens[st->cur->n++] = len;
        st->cur->bytes += len;
    }
    if (all) /* every text went: the entry keeps none (a sync that needs one parses again) */
        dp_entry_drop_texts(x);
}

void dp_stream_begin(struct dagproc *dp, struct dp_bundle *b, const char *version,
                     struct dp_scan_hook *hook)
{
    struct dp_stream *st = &dp->stream;
    st->th_b = b;
    snprintf(st->th_version, sizeof(st->th_version), "%s", version ? version : "");
    st->batch_bytes = b->batch_bytes;
    json_decref(st->seen);
    st->seen = json_object();
    pthread_mutex_lock(&st->mu);
    st->on = st->seen != NULL;
    pthread_mutex_unlock(&st->mu);
    hook->parsed = on_parsed;
    hook->ud = st;
}

void dp_stream_end(struct dagproc *dp)
{
    struct dp_stream *st = &dp->stream;
    flush(st);
    json_decref(st->seen);
    st->seen = NULL;
}

int dp_stream_busy(struct dagproc *dp)
{
    struct dp_stream *st = &dp->stream;
    if (!st->inited)
        return 0;
    pthread_mutex_lock(&st->mu);
    int queued = st->head != NULL;
    pthread_mutex_unlock(&st->mu);
    return st->inflight > 0 || queued;
}

static void stream_done(void *arg, const struct api_result *res)
{
    struct dagproc *dp = arg;
    struct dp_stream *st = &dp->stream;
    size_t i, ok = 0, n = json_array_size(json_object_get(res->reply, "results"));
    size_t same = 0;
    json_t *r;
    if (!st->inited)
        return;
    st->inflight--;
    json_array_foreach(json_object_get(res->reply, "results"), i, r)
    {
        const char *s = json_string_value(json_object_get(r, "status"));
        ok += s && (strcmp(s, "stored") == 0 || strcmp(s, "unchanged") == 0);
        same += s && strcmp(s, "unchanged") == 0;
    }
    st->stored += ok;
    if (res->rc == REMEX_OK && n > 0 && same == n) {
        /* The plane has these already (a cache lost, the plane kept): the manifest asks
         * for what it lacks rather than every DAG being sent again. */
        if (!st->failed++)
            log_info("the plane already has the DAGs streamed so far; the manifest decides "
                     "what else to send");
        pthread_mutex_lock(&st->mu);
        st->on = 0;
        pthread_mutex_unlock(&st->mu);
    } else if (res->rc != REMEX_OK || n == 0 || ok < n) {
        /* Stop streaming: the manifest's answer lists what is missing. */
        if (!st->failed++)
            log_info("streamed upload stopped (%s); the sync uploads what the plane lacks",
                     res->rc != REMEX_OK ? res->msg : "DAGs refused");
        pthread_mutex_lock(&st->mu);
        st->on = 0;
        pthread_mutex_unlock(&st->mu);
    }
    dp_stream_pump(dp);
}

void dp_stream_pump(struct dagproc *dp)
{
    struct dp_stream *st = &dp->stream;
    struct remex_error e;
    enum api_state as = dp->api ? api_state(dp->api) : API_UNREGISTERED;
    int up = as == API_REGISTERED || as == API_REFRESHING;
    /* A plane that cannot be reached, or a drain with no session: the queued batches are
     * dropped (the sync retries with the manifest), so nothing waits on them. Before the
     * first registration they wait for it. */
    int drop = !up && (as == API_LOST || as == API_FATAL || dp->r->state >= ROLE_DRAINING);
    if (drop) {
        pthread_mutex_lock(&st->mu);
        struct dp_batch *x = st->head;
        st->head = NULL;
        st->tail = &st->head;
        st->queued_bytes = 0;
        st->on = 0;
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
        while (x) {
            struct dp_batch *next = x->next;
            batch_free(x);
            x = next;
        }
    }
    while (up && st->inflight < STREAM_WINDOW) {
        pthread_mutex_lock(&st->mu);
        struct dp_batch *x = st->head;
        if (x) {
            st->head = x->next;
            if (!st->head)
                st->tail = &st->head;
            st->queued_bytes -= x->bytes;
            pthread_cond_broadcast(&st->cv);
        }
        int on = st->on;
        pthread_mutex_unlock(&st->mu);
        if (!x)
            break;
        if (on && api_dags_bulk(dp->api, x->b->name, x->version, (const char *const *)x->texts,
                                x->lens, x->n, stream_done, dp, &e) == REMEX_OK)
            st->inflight++;
        batch_free(x);
    }
    if (dp_stream_busy(dp) || !st->sync_after)
        return;
    struct dp_bundle *b = st->sync_after;
    st->sync_after = NULL;
    b->streamed = st->stored;
    log_debug("bundle %s: %zu DAGs streamed while scanning", b->name, st->stored);
    dp_sync_start(b);
}

static void sfd_ready(struct evloop *loop, int fd, unsigned events, void *arg)
{
    (void)loop;
    (void)events;
    uint64_t v;
    while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    dp_stream_pump(arg);
}

remex_err dp_stream_init(struct dagproc *dp, struct remex_error *e)
{
    struct dp_stream *st = &dp->stream;
    st->tail = &st->head;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->inited = 1;
    st->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (st->fd < 0)
        return remex_errno(e, REMEX_EIO, "stream eventfd");
    return evloop_watch(dp->loop, st->fd, EVLOOP_READ, sfd_ready, dp, e);
}

void dp_stream_stop(struct dagproc *dp)
{
    struct dp_stream *st = &dp->stream;
    if (!st->inited)
        return;
    pthread_mutex_lock(&st->mu);
    st->stop = 1;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

void dp_stream_free(struct dagproc *dp)
{
    struct dp_stream *st = &dp->stream;
    if (!st->inited)
        return;
    while (st->head) {
        struct dp_batch *x = st->head;
        st->head = x->next;
        batch_free(x);
    }
    batch_free(st->cur);
    json_decref(st->seen);
    if (st->fd >= 0) {
        evloop_unwatch(dp->loop, st->fd);
        close(st->fd);
    }
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    st->inited = 0;
}
