/*
 * Sync of one bundle's scan with the plane, on the loop:
 *
 *   manifest (POST /api/v1/dags/manifest: files, DAG ids and hashes, import
 *   errors) -> the plane answers the DAG ids it lacks -> each is uploaded
 *   (PUT /api/v1/dags/{dag_id}, at most SYNC_WINDOW at once) with the bundle
 *   name and version.
 *
 * A manifest identical to the last one the plane took (same digest) is not
 * sent again: an unchanged rescan costs no request. A failed manifest or
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

#define SYNC_WINDOW 8

static void pump(struct dp_bundle *b);

void dp_sync_free(struct dp_bundle *b)
{
    json_decref(b->missing);
    json_decref(b->where);
    b->missing = b->where = NULL;
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
    dp_state_drop_models(&b->cur);
    if (ok) {
        memcpy(b->synced, b->sending, sizeof(b->synced));
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

/* The model of dag_id in the current scan (parsing its file again when the scan kept none). */
static const struct dag *model_of(struct dp_bundle *b, const char *dag_id)
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
    size_t i = (size_t)json_integer_value(k);
    struct dp_entry *x = &b->cur.ent[i];
    if (x->models == NULL) {
        char path[PATH_MAX];
        struct dp_entry fresh = {0};
        snprintf(path, sizeof(path), "%s/%s", b->root, b->cur.files.v[i].rel);
        if (dp_parse_file(path, b->cur.files.v[i].rel, 1, &fresh, &e) != REMEX_OK ||
            fresh.ndags != x->ndags || fresh.models == NULL) {
            dp_entry_free(&fresh);
            return NULL; /* changed since the scan: the next scan has it */
        }
        for (size_t j = 0; j < x->ndags; j++)
            if (strcmp(fresh.dags[j].dag_id, x->dags[j].dag_id) ||
                strcmp(fresh.dags[j].hash, x->dags[j].hash)) {
                dp_entry_free(&fresh);
                return NULL;
            }
        x->models = fresh.models;
        fresh.models = NULL;
        dp_entry_free(&fresh);
    }
    for (size_t j = 0; j < x->ndags; j++)
        if (strcmp(x->dags[j].dag_id, dag_id) == 0)
            return x->models[j];
    return NULL;
}

static void put_done(void *arg, const struct api_result *res)
{
    struct dp_bundle *b = arg;
    b->inflight--;
    if (res->rc == REMEX_OK) {
        b->uploaded++;
    } else {
        if (b->upload_failed++ == 0)
            log_warn("bundle %s: upload: %s", b->name, res->msg);
    }
    pump(b);
}

/* Starts the upload of one DAG; 0 when started. */
static int put_one(struct dp_bundle *b, const char *dag_id)
{
    const struct dag *d = model_of(b, dag_id);
    char path[512];
    struct remex_error e;
    if (d == NULL) {
        b->upload_failed++;
        log_warn("bundle %s: %s changed while it was synced; the next scan sends it", b->name,
                 dag_id);
        return -1;
    }
    json_t *body = json_pack("{s:{s:s,s:s},s:o}", "bundle", "name", b->name, "version",
                             b->cur.version, "dag", dag_to_json_value(d));
    snprintf(path, sizeof(path), "/api/v1/dags/%s", dag_id);
    struct api_call c = {.method = "PUT",
                         .path = path,
                         .body = body,
                         .what = "dag upload",
                         .done = put_done,
                         .arg = b};
    remex_err rc = body ? api_call(b->dp->api, &c, &e) : REMEX_ENOMEM;
    json_decref(body);
    if (rc != REMEX_OK) {
        if (b->upload_failed++ == 0)
            log_warn("bundle %s: upload of %s: %s", b->name, dag_id,
                     rc == REMEX_ENOMEM ? "out of memory" : e.msg);
        return -1;
    }
    b->inflight++;
    return 0;
}

static void pump(struct dp_bundle *b)
{
    size_t n = json_array_size(b->missing);
    while (b->inflight < SYNC_WINDOW && b->next_missing < n && b->upload_failed == 0) {
        const char *id = json_string_value(json_array_get(b->missing, b->next_missing++));
        if (id)
            put_one(b, id);
    }
    if (b->inflight > 0)
        return;
    if (b->upload_failed > 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%zu of %zu DAG uploads failed", b->upload_failed, n);
        fail(b, "sync", msg);
        return;
    }
    uint64_t ms = evloop_now_ms(b->dp->loop) - b->sync_start_ms;
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
    if (strcmp(b->sending, b->synced) == 0) {
        json_decref(m);
        log_debug("bundle %s: unchanged (version %s): nothing to send", b->name, b->cur.version);
        dp_state_drop_models(&b->cur);
        dp_synced(b, 1);
        return;
    }
    log_errors(b, m);
    b->syncing = 1;
    b->uploaded = b->upload_failed = b->inflight = 0;
    b->sync_start_ms = evloop_now_ms(dp->loop);
    struct api_call c = {.method = "POST",
                         .path = "/api/v1/dags/manifest",
                         .body = m,
                         .what = "manifest",
                         .done = manifest_done,
                         .arg = b};
    remex_err rc = api_call(dp->api, &c, &e);
    json_decref(m);
    if (rc != REMEX_OK)
        fail(b, "manifest", e.msg);
}

void dp_sync_registered(struct dagproc *dp)
{
    for (size_t i = 0; i < dp->nb; i++)
        if (dp->b[i].sync_wanted)
            dp_sync_start(&dp->b[i]);
}
