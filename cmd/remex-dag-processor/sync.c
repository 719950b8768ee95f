/*
 * Sync of one bundle's scan with the plane, on the loop:
 *
 *   manifest (api_dags_manifest: files, DAG ids and hashes, import errors)
 *   -> the plane answers the DAG ids it lacks -> they are uploaded in
 *   batches (api_dags_bulk: up to API_DAGS_BULK_MAX DAGs and about
 *   b->batch_bytes of JSON each, SYNC_WINDOW batches at once) with the
 *   bundle name and version.
 *
 * Too large (HTTP 413): the plane's body_max (1 MiB by default) caps the
 * bulk route, while PUT /api/v1/dags/{dag_id} takes one DAG up to 8 MiB. The
 * rule: a batch answered 413 that held one DAG, or several while the batch
 * cap is already at DP_BATCH_BYTES_MIN, has its DAGs uploaded one by one
 * with PUT (api_dag_put); a batch of several above the minimum halves the
 * cap and its DAGs are batched again (before the rest). A PUT's answer is
 * final (200: uploaded; anything else: refused, the sync fails and the next
 * one tries again), and the cap halves at most log2(DP_BATCH_BYTES /
 * DP_BATCH_BYTES_MIN) times, so each DAG is sent at most a bounded number
 * of times and the sync ends.
 *
 * A manifest identical to the last one the plane took (same digest) is not
 * sent again: an unchanged rescan costs no request, until
 * dag_processor.reconcile_interval has passed since the plane took it (then
 * it is sent, and the plane answers what it lacks). A failed manifest or
 * upload retries the whole sync with backoff; the plane keeps what it had.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dagproc.h"
#include "remex/api.h"
#include "remex/evloop.h"
#include "remex/hash.h"
#include "remex/log.h"
#include "remex/role.h"

/* Bulk uploads in flight at once: one being stored while the next is built
 * and sent (the plane stores one request at a time). */
#define SYNC_WINDOW  DP_SYNC_WINDOW
#define DP_BATCH_MAX API_DAGS_BULK_MAX

static void pump(struct dp_bundle *b);

/* Drops the sync's queues and the ids of the uploads in flight (their
 * callbacks find their slot empty only after the client is gone). */
static void drop_queues(struct dp_bundle *b)
{
    json_decref(b->redo);
    json_decref(b->alone);
    b->redo = b->alone = NULL;
    b->next_redo = b->next_alone = 0;
    for (size_t i = 0; i < SYNC_WINDOW; i++) {
        json_decref(b->up[i].ids);
        b->up[i].ids = NULL;
    }
}

void dp_sync_free(struct dp_bundle *b)
{
    json_decref(b->missing);
    json_decref(b->where);
    b->missing = b->where = NULL;
    drop_queues(b);
    if (b->retry_timer)
        evloop_timer_cancel(b->dp->loop, b->retry_timer);
    b->retry_timer = 0;
}

static void finish(struct dp_bundle *b, int ok)
{
    json_decref(b->missing);
    json_decref(b->where);
    b->missing = b->where = NULL;
    b->syncing = 0;
    drop_queues(b);
    dp_state_drop_texts(&b->cur);
    if (ok) {
        memcpy(b->synced, b->sending, sizeof(b->synced));
        b->synced_ms = evloop_now_ms(b->dp->loop);
        b->sync_failures = 0;
    }
    dp_synced(b, ok);
}

static void retry_fire(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct dp_bundle *b = arg;
    b->retry_timer = 0;
    dp_sync_start(b);
}

/* The sync failed: the plane keeps what it had; tried again after a backoff. */
static void fail(struct dp_bundle *b, const char *what, const char *msg)
{
    log_warn("bundle %s: %s: %s; retrying", b->name, what, msg);
    b->synced[0] = '\0';
    finish(b, 0);
    if (b->dp->r->state < ROLE_DRAINING && !b->dp->r->once)
        b->retry_timer =
            evloop_timer_add(b->dp->loop, api_backoff_ms(b->sync_failures++ + 4), 0, retry_fire, b);
}

/* The canonical text of dag_id in the current scan (borrowed), parsing its file again when
 * the scan kept none (the stream took them, or a cached entry); NULL when the file changed
 * since the scan (the next scan has it). */
static const char *text_of(struct dp_bundle *b, const char *dag_id)
{
    struct remex_error e;
    if (b->where == NULL) {
        b->where = json_object();
        for (size_t i = 0; b->where && i < b->cur.files.n; i++)
            for (size_t j = 0; j < b->cur.ent[i].ndags; j++)
                json_object_set_new(b->where, b->cur.ent[i].dags[j].dag_id,
                                    json_integer((json_int_t)i));
    }
    json_t *k = json_object_get(b->where, dag_id);
    if (!json_is_integer(k))
        return NULL;
    size_t i = (size_t)json_integer_value(k), at = 0;
    struct dp_entry *x = &b->cur.ent[i];
    while (at < x->ndags && strcmp(x->dags[at].dag_id, dag_id) != 0)
        at++;
    if (at == x->ndags)
        return NULL;
    if (x->texts == NULL || x->texts[at] == NULL) { /* none kept, or the stream took it */
        dp_entry_drop_texts(x);
        char path[PATH_MAX];
        struct dp_entry fresh = {0};
        snprintf(path, sizeof(path), "%s/%s", b->root, b->cur.files.v[i].rel);
        if (dp_parse_file(path, b->cur.files.v[i].rel, 1, dp_parse_cap_ms(b->dp), &fresh, &e) !=
                REMEX_OK ||
            fresh.ndags != x->ndags || fresh.texts == NULL) {
            dp_entry_free(&fresh);
            return NULL;
        }
        for (size_t j = 0; j < x->ndags; j++)
            if (strcmp(fresh.dags[j].dag_id, x->dags[j].dag_id) ||
                strcmp(fresh.dags[j].hash, x->dags[j].hash)) {
                dp_entry_free(&fresh);
                return NULL;
            }
        x->texts = fresh.texts;
        fresh.texts = NULL;
        dp_entry_free(&fresh);
    }
    return x->texts[at];
}

/* Logs a refused DAG (the first few of a sync only); the sync fails. */
static void refused(struct dp_bundle *b, const char *dag_id, const char *why)
{
    if (b->upload_failed++ < 5)
        log_warn("bundle %s: the plane refused %s: %s", b->name, dag_id ? dag_id : "a DAG",
                 why ? why : "no reason given");
}

/* Logs a refused item of a bulk reply. */
static void item_refused(struct dp_bundle *b, json_t *r)
{
    refused(b, json_string_value(json_object_get(r, "dag_id")),
            json_string_value(json_object_get(r, "error")));
}

/* A free upload slot (its ids NULL), NULL when SYNC_WINDOW are in flight. */
static struct dp_upload *slot_take(struct dp_bundle *b)
{
    for (size_t i = 0; i < SYNC_WINDOW; i++)
        if (b->up[i].ids == NULL) {
            b->up[i].b = b;
            return &b->up[i];
        }
    return NULL;
}

/* Appends the ids (borrowed) to *q (created when NULL); -1 out of memory. */
static int enqueue(json_t **q, json_t *ids)
{
    if (*q == NULL && (*q = json_array()) == NULL)
        return -1;
    return json_array_extend(*q, ids) == 0 ? 0 : -1;
}

/* A batch answered 413 (the rule is at the top of this file): its ids (borrowed) go
 * one by one with PUT, or are batched again under a halved cap. */
static void too_large(struct dp_bundle *b, json_t *ids)
{
    size_t n = json_array_size(ids);
    int alone = n == 1 || b->batch_bytes <= DP_BATCH_BYTES_MIN;
    if (b->too_large++ == 0)
        log_warn("bundle %s: the plane refused a batch of %zu DAGs (up to %zu bytes) as too "
                 "large (HTTP 413): raise body_max in the plane's plane.yaml; %s",
                 b->name, n, b->batch_bytes,
                 alone ? "uploading them one by one (PUT)" : "retrying in smaller batches");
    if (n == 1)
        log_info("bundle %s: %s is too large for a bulk request: uploading it alone (PUT)", b->name,
                 json_string_value(json_array_get(ids, 0)));
    else if (alone)
        log_info("bundle %s: uploading the %zu DAGs of a refused batch one by one (PUT)", b->name,
                 n);
    else
        b->batch_bytes /= 2;
    if (enqueue(alone ? &b->alone : &b->redo, ids) < 0) {
        b->upload_failed++;
        log_error("bundle %s: out of memory queueing %zu DAGs again", b->name, n);
    }
}

static void bulk_done(void *arg, const struct api_result *res)
{
    struct dp_upload *u = arg;
    struct dp_bundle *b = u->b;
    json_t *ids = u->ids; /* owned from here: the slot is free again */
    size_t i;
    json_t *r;
    u->ids = NULL;
    b->inflight--;
    if (res->status == 413) {
        too_large(b, ids);
    } else if (res->rc != REMEX_OK || !json_is_array(json_object_get(res->reply, "results"))) {
        if (b->upload_failed++ == 0)
            log_warn("bundle %s: upload: %s", b->name,
                     res->rc != REMEX_OK ? res->msg : "reply without a results array");
    } else {
        log_debug("bundle %s: %zu DAGs uploaded, %" PRIu64 " ms into the sync", b->name,
                  json_array_size(json_object_get(res->reply, "results")),
                  evloop_now_ms(b->dp->loop) - b->sync_start_ms);
        json_array_foreach(json_object_get(res->reply, "results"), i, r)
        {
            const char *st = json_string_value(json_object_get(r, "status"));
            if (st && (strcmp(st, "stored") == 0 || strcmp(st, "unchanged") == 0))
                b->uploaded++;
            else
                item_refused(b, r);
        }
    }
    json_decref(ids);
    pump(b);
}

static void put_done(void *arg, const struct api_result *res)
{
    struct dp_upload *u = arg;
    struct dp_bundle *b = u->b;
    json_t *ids = u->ids; /* owned from here */
    u->ids = NULL;
    b->inflight--;
    if (res->rc == REMEX_OK) {
        log_debug("bundle %s: %s uploaded alone", b->name,
                  json_string_value(json_array_get(ids, 0)));
        b->uploaded++;
    } else {
        refused(b, json_string_value(json_array_get(ids, 0)), res->msg);
    }
    json_decref(ids);
    pump(b);
}

/* Starts the PUT of the next DAG of b->alone. 0 when started, -1 when not
 * (b->upload_failed set). */
static int put_alone(struct dp_bundle *b, struct dp_upload *u)
{
    struct remex_error e;
    const char *id = json_string_value(json_array_get(b->alone, b->next_alone++));
    const char *kept = id ? text_of(b, id) : NULL;
    if (kept == NULL) {
        b->upload_failed++;
        log_warn("bundle %s: %s changed while it was synced; the next scan sends it", b->name,
                 id ? id : "a DAG");
        return -1;
    }
    if ((u->ids = json_pack("[s]", id)) == NULL) {
        b->upload_failed++;
        return -1;
    }
    if (api_dag_put(b->dp->api, id, b->name, b->cur.version, kept, strlen(kept), put_done, u, &e) !=
        REMEX_OK) {
        json_decref(u->ids);
        u->ids = NULL;
        refused(b, id, e.msg);
        return -1;
    }
    b->inflight++;
    return 0;
}

/* The next DAG id to batch into *id (borrowed; NULL for an item that is no string):
 * batches answered 413 first, then the missing ones. 0 when none is left. */
static int next_id(struct dp_bundle *b, const char **id)
{
    json_t *q = b->next_redo < json_array_size(b->redo) ? b->redo : b->missing;
    size_t at = q == b->redo ? b->next_redo : b->next_missing;
    if (at >= json_array_size(q))
        return 0;
    *id = json_string_value(json_array_get(q, at));
    return 1;
}

static void id_taken(struct dp_bundle *b)
{
    if (b->next_redo < json_array_size(b->redo))
        b->next_redo++;
    else
        b->next_missing++;
}

/* Uploads are left to start. */
static int more(const struct dp_bundle *b)
{
    return b->next_alone < json_array_size(b->alone) || b->next_redo < json_array_size(b->redo) ||
           b->next_missing < json_array_size(b->missing);
}

/* Starts the upload of the next batch (next_id: batches answered 413, then the missing DAGs) into
 * u: at most API_DAGS_BULK_MAX of them and about b->batch_bytes of JSON (a single larger DAG goes
 * alone). Each DAG is encoded once (dag_to_json), its text sized and sent as it is; u->ids holds
 * the batch's ids. 0 when started, -1 when none was (b->upload_failed set). */
static int put_batch(struct dp_bundle *b, struct dp_upload *u)
{
    size_t bytes = 0, k = 0;
    struct remex_error e;
    char **texts = calloc(DP_BATCH_MAX, sizeof(*texts));
    size_t *lens = calloc(DP_BATCH_MAX, sizeof(*lens));
    json_t *ids = json_array(); /* owned, then the slot's */
    if (!texts || !lens || !ids) {
        free(texts);
        free(lens);
        json_decref(ids);
        b->upload_failed++;
        return -1;
    }
    const char *id = NULL;
    while (k < DP_BATCH_MAX && next_id(b, &id)) {
        const char *kept = id ? text_of(b, id) : NULL; /* the parser's canonical text */
        if (kept == NULL) {
            b->upload_failed++;
            log_warn("bundle %s: %s changed while it was synced; the next scan sends it", b->name,
                     id ? id : "a DAG");
            id_taken(b);
            continue;
        }
        size_t len = strlen(kept);
        if (k > 0 && bytes + len > b->batch_bytes)
            break;
        char *t = strdup(kept);
        if (t == NULL || json_array_append_new(ids, json_string(id)) != 0) {
            free(t);
            b->upload_failed++;
            break;
        }
        texts[k] = t;
        lens[k++] = len;
        bytes += len;
        id_taken(b);
    }
    remex_err rc = REMEX_OK;
    if (k > 0)
        rc = api_dags_bulk(b->dp->api, b->name, b->cur.version, (const char *const *)texts, lens, k,
                           bulk_done, u, &e);
    for (size_t i = 0; i < k; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    if (k == 0 || rc != REMEX_OK) {
        json_decref(ids);
        if (k > 0 && b->upload_failed++ == 0)
            log_warn("bundle %s: upload of %zu DAGs: %s", b->name, k, e.msg);
        return -1;
    }
    u->ids = ids;
    b->inflight++;
    return 0;
}

static void pump(struct dp_bundle *b)
{
    size_t n = json_array_size(b->missing);
    struct dp_upload *u;
    while (b->upload_failed == 0 && more(b) && (u = slot_take(b)) != NULL)
        if ((b->next_alone < json_array_size(b->alone) ? put_alone(b, u) : put_batch(b, u)) < 0)
            break;
    if (b->inflight > 0)
        return;
    if (b->upload_failed > 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%zu of %zu DAG uploads failed", b->upload_failed, n);
        fail(b, "sync", msg);
        return;
    }
    uint64_t ms = evloop_now_ms(b->dp->loop) - b->sync_start_ms;
    b->uploaded += b->streamed; /* stored while the scan went on (stream.c) */
    b->streamed = 0;
    b->m.uploads += b->uploaded;
    b->m.sync_ms = ms;
    log_info("bundle %s: version %s on the plane: %zu DAG files (%zu parsed, %zu from the "
             "cache), %zu uploaded, %zu import errors, %" PRIu64 " ms",
             b->name, b->cur.version, b->cur.ndagfiles, b->cur.parsed, b->cur.hits, b->uploaded,
             b->nerrors, ms);
    finish(b, 1);
}

static void manifest_done(void *arg, const struct api_result *res)
{
    struct dp_bundle *b = arg;
    json_t *missing = json_object_get(res->reply, "missing");
    if (res->status == 413) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "the plane refused a manifest of %zu DAG files as too large (HTTP 413): raise "
                 "body_max in the plane's plane.yaml",
                 b->cur.ndagfiles);
        fail(b, "manifest", msg);
        return;
    }
    if (res->rc != REMEX_OK || !json_is_array(missing)) {
        fail(b, "manifest", res->rc != REMEX_OK ? res->msg : "reply without a missing array");
        return;
    }
    log_debug("bundle %s: manifest answered after %" PRIu64 " ms: %zu DAGs missing", b->name,
              evloop_now_ms(b->dp->loop) - b->sync_start_ms, json_array_size(missing));
    b->missing = json_incref(missing);
    b->next_missing = 0;
    pump(b);
}

/* Logs each import error of a manifest about to be sent (only when it changed). */
static void log_errors(const struct dp_bundle *b, json_t *m)
{
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(m, "import_errors"), i, x) log_warn(
        "bundle %s: import error: %s:%" JSON_INTEGER_FORMAT ":%" JSON_INTEGER_FORMAT ": %s",
        b->name, json_string_value(json_object_get(x, "file")),
        json_integer_value(json_object_get(x, "line")),
        json_integer_value(json_object_get(x, "column")),
        json_string_value(json_object_get(x, "message")));
}

void dp_sync_start(struct dp_bundle *b)
{
    struct dagproc *dp = b->dp;
    struct remex_error e;
    if (b->syncing || !b->have_cur)
        return;
    enum api_state st = api_state(dp->api);
    /* While the plane looks unreachable (LOST) calls go on and fail fast into the retry. */
    if (st != API_REGISTERED && st != API_REFRESHING && st != API_LOST) {
        b->sync_wanted = 1; /* dp_sync_registered starts it */
        return;
    }
    b->sync_wanted = 0;
    json_t *m = dp_manifest(b->name, &b->cur, &b->nerrors);
    char *text = m ? json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (text == NULL || hash_sha256_hex(text, strlen(text), b->sending) != REMEX_OK) {
        free(text);
        json_decref(m);
        log_error("bundle %s: out of memory building the manifest", b->name);
        dp_synced(b, 0);
        return;
    }
    free(text);
    /* Reconciliation: an unchanged manifest goes again once reconcile_interval
     * has passed since the plane took it (a plane restored from a backup, or
     * a DAG deleted by an admin, gets its DAGs back). */
    uint64_t age = evloop_now_ms(dp->loop) - b->synced_ms;
    if (strcmp(b->sending, b->synced) == 0 && age < dp->r->cfg.dag_processor.reconcile_ms) {
        json_decref(m);
        log_debug("bundle %s: unchanged (version %s): nothing to send", b->name, b->cur.version);
        dp_state_drop_texts(&b->cur);
        b->streamed = 0;
        dp_synced(b, 1);
        return;
    }
    log_errors(b, m);
    b->syncing = 1;
    b->uploaded = b->upload_failed = b->inflight = b->too_large = 0;
    b->sync_start_ms = evloop_now_ms(dp->loop);
    remex_err rc = api_dags_manifest(dp->api, m, manifest_done, b, &e);
    json_decref(m);
    if (rc != REMEX_OK)
        fail(b, "manifest", e.msg);
}

void dp_sync_registered(struct dagproc *dp)
{
    dp_stream_pump(dp);
    for (size_t i = 0; i < dp->nb; i++)
        if (dp->b[i].sync_wanted)
            dp_sync_start(&dp->b[i]);
}
