/*
 * DAGs: the in-memory cache of decoded DAGs, manifest sync, DAG upload, admin
 * dag routes and import errors.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"
#include "remex/log.h"
#include "remex/timeutil.h"
#include "sched.h"

static size_t str_hash(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

long sdag_task_index(const struct sdag *d, const char *task_id)
{
    if (!d->nindex)
        return -1;
    for (size_t i = str_hash(task_id) % d->nindex;; i = (i + 1) % d->nindex) {
        int k = d->index[i];
        if (k < 0)
            return -1;
        if (strcmp(d->dag->tasks[k].task_id, task_id) == 0)
            return k;
    }
}

const char *sdag_task_text(struct sdag *d, long k)
{
    if (k < 0 || (size_t)k >= d->dag->ntasks)
        return "{}";
    if (!d->tasks[k].text) {
        json_t *j = dag_task_to_json_value(&d->dag->tasks[k]); /* owned */
        d->tasks[k].text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
    }
    return d->tasks[k].text ? d->tasks[k].text : "{}";
}

static void sdag_free(struct sdag *d)
{
    if (!d)
        return;
    if (d->tasks)
        for (size_t i = 0; i < d->dag->ntasks; i++)
            free(d->tasks[i].text);
    free(d->tasks);
    free(d->params_text);
    free(d->index);
    free(d->bundle);
    free(d->bundle_version);
    dag_free(d->dag);
    free(d);
}

/* Takes ownership of dag (freed on failure too). */
static struct sdag *sdag_build(struct dag *dag, const char *bundle, const char *version)
{
    struct sdag *d = calloc(1, sizeof(*d));
    if (!d) {
        dag_free(dag);
        return NULL;
    }
    d->dag = dag;
    d->params = dag->params;
    d->next_run_ms = INT64_MIN;
    d->heap_key = INT64_MAX;
    d->heap_pos = SIZE_MAX;
    d->bundle = strdup(bundle ? bundle : "");
    d->bundle_version = strdup(version ? version : "");
    d->tasks = calloc(dag->ntasks ? dag->ntasks : 1, sizeof(*d->tasks));
    d->nindex = dag->ntasks * 2 + 1;
    d->index = malloc(d->nindex * sizeof(int));
    if (!d->bundle || !d->bundle_version || !d->tasks || !d->index)
        goto fail;
    memset(d->index, 0xff, d->nindex * sizeof(int));
    for (size_t i = 0; i < dag->ntasks; i++) {
        size_t h = str_hash(dag->tasks[i].task_id) % d->nindex;
        while (d->index[h] >= 0)
            h = (h + 1) % d->nindex;
        d->index[h] = (int)i;
    }
    return d;
fail:
    sdag_free(d);
    return NULL;
}

struct sdag *sdag_find(struct plane *p, const char *dag_id)
{
    return sdmap_get(SCHED(p), dag_id);
}

static void sdag_link(struct sched *s, struct sdag *d)
{
    d->prev = NULL;
    d->next = s->dags;
    if (s->dags)
        s->dags->prev = d;
    s->dags = d;
}

static void sdag_unlink(struct sched *s, struct sdag *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        s->dags = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->next = d->prev = NULL;
}

/* Replaces (or adds) the cached DAG of the same id: found through the map,
 * so an upload costs the same with 10,000 DAGs as with one. */
static void sdag_install(struct plane *p, struct sdag *n)
{
    struct sched *s = SCHED(p);
    struct sdag *old = sdmap_get(s, n->dag->dag_id);
    if (old) {
        n->next_run_ms = old->next_run_ms;
        n->last_start_ms = old->last_start_ms;
        n->last_known = old->last_known;
        n->manifest_gen = old->manifest_gen;
        sdmap_del(s, old);
        sdag_unlink(s, old);
        sdheap_set(s, old, INT64_MAX);
        sdag_free(old);
    }
    sdag_link(s, n);
    sdmap_put(s, n);
    sruns_touch(p, n);
}

void sdag_free_all(struct sched *s)
{
    sdheap_free(s);
    s->start_run = 0;
    while (s->dags) {
        struct sdag *d = s->dags;
        s->dags = d->next;
        sdag_free(d);
    }
    sdmap_free(s);
}

remex_err sdag_load_all(struct plane *p, struct remex_error *e)
{
    /* A row that follows its bundle's version reads it from bundles (sched.c, migration 150). */
    sqlite3_stmt *st = sq(p,
                          "SELECT d.dag_id, d.json, d.bundle,"
                          " CASE WHEN d.version_follows = 1 AND b.version IS NOT NULL"
                          " THEN b.version ELSE d.bundle_version END,"
                          " d.is_active, d.is_paused, d.next_run_ms,"
                          " d.version_follows = 1 AND b.version IS NOT NULL"
                          " FROM dags d LEFT JOIN bundles b ON b.name = d.bundle",
                          "");
    if (!st)
        return remex_seterr(e, REMEX_EIO, "sched: cannot read dags");
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct dag *dag = NULL;
        struct remex_error de;
        const char *txt = sq_text(st, 1);
        if (dag_from_json(txt, strlen(txt), &dag, &de) != REMEX_OK) {
            log_error("sched: stored dag %s no longer decodes: %s", sq_text(st, 0), de.msg);
            continue;
        }
        struct sdag *d = sdag_build(dag, sq_text(st, 2), sq_text(st, 3));
        if (!d) {
            sqlite3_reset(st);
            return remex_seterr(e, REMEX_ENOMEM, "sched: out of memory loading dags");
        }
        d->is_active = (int)sqlite3_column_int64(st, 4);
        d->is_paused = (int)sqlite3_column_int64(st, 5);
        d->next_run_ms = sq_col_int(st, 6, INT64_MIN);
        d->version_follows = (int)sqlite3_column_int64(st, 7);
        sdag_link(SCHED(p), d);
        sdmap_put(SCHED(p), d);
        sdheap_set(SCHED(p), d, INT64_MIN); /* looked at once, in the first passes */
    }
    sqlite3_reset(st);
    return REMEX_OK;
}

/* ---- PUT /dags/{dag_id}, POST /dags/bulk ---- */

/* Outcome of storing one DAG. */
enum dag_store {
    DAG_STORED = 0, /* new, or a new hash: written and cached */
    DAG_UNCHANGED,  /* same hash, bundle and version, active: nothing written */
    DAG_RELABELED,  /* same hash, the bundle, version or activity moved: row updated */
    DAG_FAILED,     /* encode, store or memory failure (msg says which) */
};

/* 1 when version is bundle's current one (bundles.version, set by the manifest
 * the dag-processor sent before this upload): the DAG's row then follows it,
 * and a later manifest that moves the bundle rewrites no row. mu held. */
static int follows_bundle(struct plane *p, const char *bundle, const char *version)
{
    return sq_int(p, 0, "SELECT count(*) FROM bundles WHERE name = ?1 AND version = ?2", "tt",
                  bundle, version) > 0;
}

/*
 * Stores dag (owned: consumed in every case) for bundle@version, with
 * p->mu held and inside the caller's transaction or autocommit. text is its
 * canonical JSON (owned, consumed; dag_from_json_value_canon), or NULL to
 * encode it here. Does not kick the scheduler: *changed is set when the
 * caller must (runs_changed). On DAG_FAILED *msg is a static reason.
 */
static enum dag_store dag_store_locked(struct plane *p, struct dag *dag, char *text,
                                       const char *bundle, const char *version, int *changed,
                                       const char **msg)
{
    struct sdag *old = sdag_find(p, dag->dag_id);
    int follows;
    if (old && strcmp(old->dag->hash, dag->hash) == 0) {
        free(text); /* the row keeps its JSON: same hash, same text */
        /* Idempotent: the same DAG again is not rewritten. */
        if (old->is_active && strcmp(old->bundle, bundle) == 0 &&
            strcmp(old->bundle_version, version) == 0) {
            dag_free(dag);
            return DAG_UNCHANGED;
        }
        follows = follows_bundle(p, bundle, version);
        char *nb = strdup(bundle), *nv = strdup(version);
        if (!nb || !nv ||
            sq_run(p,
                   "UPDATE dags SET bundle = ?2, bundle_version = ?3, is_active = 1,"
                   " updated_ms = ?4, version_follows = ?5 WHERE dag_id = ?1",
                   "tttii", dag->dag_id, bundle, version, plane_now_ms(),
                   (int64_t)follows) != SQLITE_DONE) {
            free(nb);
            free(nv);
            dag_free(dag);
            *msg = "cannot store the dag";
            return DAG_FAILED;
        }
        free(old->bundle);
        free(old->bundle_version);
        old->bundle = nb;
        old->bundle_version = nv;
        old->version_follows = follows;
        old->is_active = 1;
        sruns_touch(p, old);
        dag_free(dag);
        *changed = 1;
        return DAG_RELABELED;
    }
    struct remex_error e;
    if (!text && dag_to_json(dag, &text, NULL, &e) != REMEX_OK) {
        dag_free(dag);
        *msg = "cannot encode the dag";
        return DAG_FAILED;
    }
    const char *fileloc = dag->fileloc ? dag->fileloc : "";
    follows = follows_bundle(p, bundle, version);
    int rc =
        sq_run(p,
               "INSERT INTO dags (dag_id, bundle, bundle_version, fileloc, hash, json,"
               " is_active, updated_ms, version_follows) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7,"
               " ?8) ON CONFLICT (dag_id) DO UPDATE SET bundle = ?2, bundle_version = ?3,"
               " fileloc = ?4, hash = ?5, json = ?6, is_active = 1, updated_ms = ?7,"
               " version_follows = ?8",
               "ttttttii", dag->dag_id, bundle, version, fileloc, dag->hash, text, plane_now_ms(),
               (int64_t)follows);
    free(text);
    if (rc != SQLITE_DONE) {
        dag_free(dag);
        *msg = "cannot store the dag";
        return DAG_FAILED;
    }
    int paused =
        old ? old->is_paused
            : (int)sq_int(p, 0, "SELECT is_paused FROM dags WHERE dag_id = ?1", "t", dag->dag_id);
    if (old) {
        /* A new version: running runs get task instances for added tasks and
         * lose those of removed ones (see load_tis in sched_runs.c). */
        sqlite3_stmt *st = sq(p, "SELECT id FROM dag_runs WHERE dag_id = ?1 AND state = 'running'",
                              "t", dag->dag_id);
        while (st && sqlite3_step(st) == SQLITE_ROW)
            sched_mark_run(p, sqlite3_column_int64(st, 0), SDIRTY_EVAL);
        if (st)
            sqlite3_reset(st);
    }
    struct sdag *d = sdag_build(dag, bundle, version);
    if (!d) {
        *msg = "out of memory";
        return DAG_FAILED;
    }
    d->is_active = 1;
    d->is_paused = paused;
    d->version_follows = follows;
    sdag_install(p, d);
    *changed = 1;
    return DAG_STORED;
}

static void dag_put_locked(struct plane *p, struct dag *dag, char *text, const char *bundle,
                           const char *version, struct plane_resp *rs)
{
    char hash[DAG_HASH_HEX];
    const char *msg = "";
    int changed = 0;
    memcpy(hash, dag->hash, sizeof(hash));
    json_t *reply = json_pack("{ss ss}", "dag_id", dag->dag_id, "hash", hash);
    if (dag_store_locked(p, dag, text, bundle, version, &changed, &msg) == DAG_FAILED) {
        json_decref(reply);
        plane_error(rs, 500, "internal", "%s", msg);
        return;
    }
    if (changed) {
        SCHED(p)->runs_changed = 1;
        plane_kick(p);
    }
    plane_reply(rs, 200, reply);
}

void sched_h_dag_put(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    json_t *b = NULL, *dj = NULL;
    const char *bname = "", *bver = "";
    if (!rq->body || !json_is_object(rq->body)) {
        plane_error(rs, 400, "bad_request", "body: expected object");
        return;
    }
    if (rq_obj(rs, rq->body, "bundle", &b) < 0)
        return;
    if (b &&
        (rq_str(rs, b, "name", 0, 256, &bname) < 0 || rq_str(rs, b, "version", 0, 256, &bver) < 0))
        return;
    bname = bname ? bname : "";
    bver = bver ? bver : "";
    dj = json_object_get(rq->body, "dag");
    if (!dj || !json_is_object(dj)) {
        plane_error(rs, 400, "bad_request", "dag: expected object");
        return;
    }
    struct dag *dag = NULL;
    char *text = NULL;
    struct remex_error e;
    if (dag_from_json_value_canon(dj, &dag, NULL, &text, &e) != REMEX_OK) {
        plane_error(rs, 400, "bad_request", "dag.%s", e.msg);
        return;
    }
    if (strcmp(dag->dag_id, rq->param[0]) != 0) {
        dag_free(dag);
        free(text);
        plane_error(rs, 400, "bad_request", "dag.dag_id: does not match the path");
        return;
    }
    pthread_mutex_lock(&p->mu);
    dag_put_locked(p, dag, text, bname, bver, rs);
    pthread_mutex_unlock(&p->mu);
}

/* Decodes and validates each DAG of a bulk upload (outside the lock):
 * dags[i] and texts[i] (its canonical JSON) for a valid one, with a null
 * placeholder in results; an "invalid" result naming the field otherwise.
 * Returns the number of invalid DAGs. */
static size_t bulk_decode(json_t *items, struct dag **dags, char **texts, json_t *results)
{
    size_t nbad = 0;
    struct remex_error e;
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *item = json_array_get(items, i); /* borrowed */
        if (dag_from_json_value_canon(item, &dags[i], NULL, &texts[i], &e) != REMEX_OK) {
            char msg[sizeof(e.msg) + 32];
            json_t *id = json_object_get(item, "dag_id"); /* borrowed */
            dags[i] = NULL;
            snprintf(msg, sizeof(msg), "dags[%zu].%s", i, e.msg);
            json_array_append_new(results, json_pack("{sO ss ss}", "dag_id",
                                                     json_is_string(id) ? id : json_null(),
                                                     "status", "invalid", "error", msg));
            nbad++;
            continue;
        }
        json_array_append_new(results, json_null()); /* set once stored */
    }
    return nbad;
}

/*
 * POST /dags/bulk: up to DECODE_BULK_DAGS_MAX DAGs of one bundle@version in
 * one request and one transaction. Each item is decoded and validated on its
 * own (outside the lock) and answered in results[i], in order: "stored" (new
 * or changed), "unchanged" (same hash, bundle and version: nothing written,
 * so a repeated request is harmless), or "invalid" with the field's message.
 * An invalid item does not stop the others. A store failure answers 503 for
 * the whole request (the transaction is rolled back and the cache reloaded).
 */
void sched_h_dags_bulk(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    struct decode_dags_bulk in;
    struct remex_error e;
    if (!rq->body || decode_dags_bulk(rq->body, &in, &e) != REMEX_OK) {
        plane_error(rs, 400, "bad_request", "%s", rq->body ? e.msg : "body: expected object");
        return;
    }
    size_t n = json_array_size(in.dags), nstored = 0, nsame = 0;
    struct dag **dags = calloc(n, sizeof(*dags));
    char **texts = calloc(n, sizeof(*texts)); /* canonical JSON of dags[i] (owned) */
    json_t *results = json_array();
    if (!dags || !texts || !results) {
        free(dags);
        free(texts);
        json_decref(results);
        plane_error(rs, 500, "internal", "out of memory");
        return;
    }
    size_t nbad = bulk_decode(in.dags, dags, texts, results);
    int changed = 0, failed = 0;
    const char *why = "";
    pthread_mutex_lock(&p->mu);
    int began = sq_begin(p);
    for (size_t i = 0; i < n; i++) {
        if (!dags[i])
            continue;
        char hash[DAG_HASH_HEX];
        json_t *id = json_string(dags[i]->dag_id);
        memcpy(hash, dags[i]->hash, sizeof(hash));
        enum dag_store st =
            failed ? DAG_FAILED
                   : dag_store_locked(p, dags[i], texts[i], in.bundle, in.version, &changed, &why);
        if (failed) {
            dag_free(dags[i]);
            free(texts[i]);
        }
        dags[i] = NULL;
        texts[i] = NULL;
        if (st == DAG_FAILED) {
            failed = 1;
            json_decref(id);
            continue;
        }
        nstored += st != DAG_UNCHANGED;
        nsame += st == DAG_UNCHANGED;
        json_array_set_new(results, i,
                           json_pack("{so ss ss}", "dag_id", id, "hash", hash, "status",
                                     st == DAG_UNCHANGED ? "unchanged" : "stored"));
    }
    if (failed && began && !sqlite3_get_autocommit(p->db)) {
        sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
        p->store_resync = 1; /* the cache took DAGs the store did not keep */
    }
    if (!failed && sq_commit(p, began) != 0)
        failed = 1;
    if (changed || failed) {
        SCHED(p)->runs_changed = 1;
        plane_kick(p);
    }
    pthread_mutex_unlock(&p->mu);
    free(dags);
    free(texts);
    if (failed) {
        json_decref(results);
        log_warn("sched: bulk DAG upload of bundle %s not stored: %s", in.bundle, why);
        plane_store_failed(rs);
        return;
    }
    plane_reply(rs, 200,
                json_pack("{so sI sI sI}", "results", results, "stored", (json_int_t)nstored,
                          "unchanged", (json_int_t)nsame, "invalid", (json_int_t)nbad));
}

/* ---- POST /dags/manifest ---- */

/* Checks the manifest's shape; 0 or -1 after replying 400. */
static int manifest_check(json_t *body, struct plane_resp *rs)
{
    json_t *files = json_object_get(body, "files"), *errs = json_object_get(body, "import_errors");
    size_t i, j;
    json_t *f, *x;
    if (files && !json_is_array(files)) {
        plane_error(rs, 400, "bad_request", "files: expected array");
        return -1;
    }
    json_array_foreach(files, i, f)
    {
        json_t *dags = json_object_get(f, "dags");
        if (!json_is_object(f) || !json_is_string(json_object_get(f, "path"))) {
            plane_error(rs, 400, "bad_request", "files[%zu].path: expected string", i);
            return -1;
        }
        if (dags && !json_is_array(dags)) {
            plane_error(rs, 400, "bad_request", "files[%zu].dags: expected array", i);
            return -1;
        }
        json_array_foreach(dags, j, x)
        {
            json_t *id = json_object_get(x, "dag_id"), *h = json_object_get(x, "hash");
            if (!json_is_string(id) || !dag_id_valid(json_string_value(id))) {
                plane_error(rs, 400, "bad_request", "files[%zu].dags[%zu].dag_id: invalid", i, j);
                return -1;
            }
            if (!json_is_string(h)) {
                plane_error(rs, 400, "bad_request", "files[%zu].dags[%zu].hash: expected string", i,
                            j);
                return -1;
            }
        }
    }
    if (errs && !json_is_array(errs)) {
        plane_error(rs, 400, "bad_request", "import_errors: expected array");
        return -1;
    }
    json_array_foreach(errs, i, x)
    {
        json_t *l = json_object_get(x, "line"), *c = json_object_get(x, "column");
        if (!json_is_string(json_object_get(x, "file")) ||
            !json_is_string(json_object_get(x, "message")) || (l && !json_is_integer(l)) ||
            (c && !json_is_integer(c))) {
            plane_error(rs, 400, "bad_request",
                        "import_errors[%zu]: expected {file, line, column, message}", i);
            return -1;
        }
    }
    return 0;
}

/* Replaces *dst by a copy of v; -1 out of memory (*dst kept). */
static int set_str(char **dst, const char *v)
{
    char *n = strdup(v);
    if (!n)
        return -1;
    free(*dst);
    *dst = n;
    return 0;
}

/* A DAG whose row followed its bundle's version stops following it: the row
 * keeps the version the DAG has now (its DAG changed: the upload sets the
 * next one). mu held; -1 when the statement failed. */
static int freeze(struct plane *p, struct sdag *d)
{
    d->version_follows = 0;
    return sq_run(p, "UPDATE dags SET version_follows = 0, bundle_version = ?2 WHERE dag_id = ?1",
                  "tt", d->dag->dag_id, d->bundle_version) == SQLITE_DONE
               ? 0
               : -1;
}

/*
 * Applies a checked manifest with p->mu held, inside a transaction. Costs one
 * index look-up per listed DAG (sdmap), one walk of the cached DAGs for those
 * left out, and one UPDATE for the DAGs that moved to this bundle or became
 * active again (their ids as a JSON array through json_each). A DAG of this
 * bundle whose row follows the bundle's version (version_follows, migration
 * 150) and is listed unchanged costs no row write: the bundles row's version
 * is its version, so a new version of an unchanged bundle writes one row, not
 * one per DAG (each row carries the DAG's JSON). A DAG left out, or whose
 * hash changed, stops following and keeps its version in its own row.
 * Returns 0, or -1 when a statement failed (the caller's commit then fails).
 */
static int manifest_locked(struct plane *p, json_t *body, const char *bundle, const char *version,
                           json_t *missing)
{
    struct sched *s = SCHED(p);
    int64_t now = plane_now_ms();
    uint64_t gen = ++s->manifest_gen;
    json_t *moved = json_array(); /* ids whose bundle, version or activity changes */
    size_t i, j, nfiles = 0, ndags = 0;
    json_t *f, *x;
    int rc = moved ? 0 : -1;
    json_array_foreach(json_object_get(body, "files"), i, f)
    {
        nfiles++;
        json_array_foreach(json_object_get(f, "dags"), j, x)
        {
            const char *id = json_string_value(json_object_get(x, "dag_id"));
            const char *h = json_string_value(json_object_get(x, "hash"));
            struct sdag *d = sdag_find(p, id);
            ndags++;
            if (d)
                d->manifest_gen = gen; /* listed: stays active */
            if (!d || strcmp(d->dag->hash, h) != 0) {
                json_array_append_new(missing, json_string(id));
                if (d && d->version_follows && freeze(p, d) != 0)
                    rc = -1;
                continue;
            }
            if (d->is_active && d->version_follows && strcmp(d->bundle, bundle) == 0) {
                /* Its row follows the bundle: the bundles row below moves it. */
                if (strcmp(d->bundle_version, version) != 0 && set_str(&d->bundle_version, version))
                    rc = -1;
                continue;
            }
            char *nb = strdup(bundle), *nv = strdup(version);
            if (nb && nv && moved && json_array_append_new(moved, json_string(id)) == 0) {
                free(d->bundle);
                free(d->bundle_version);
                d->bundle = nb;
                d->bundle_version = nv;
                d->is_active = 1;
                d->version_follows = 1;
                sruns_touch(p, d);
            } else {
                free(nb);
                free(nv);
                rc = -1;
            }
        }
    }
    if (json_array_size(moved) > 0) {
        char *ids = json_dumps(moved, JSON_COMPACT);
        if (!ids || sq_run(p,
                           "UPDATE dags SET bundle = ?2, bundle_version = ?3, is_active = 1,"
                           " version_follows = 1 WHERE dag_id IN (SELECT value FROM json_each(?1))",
                           "ttt", ids, bundle, version) != SQLITE_DONE)
            rc = -1;
        free(ids);
    }
    json_decref(moved);
    for (struct sdag *d = s->dags; d; d = d->next) {
        if (d->is_active && d->manifest_gen != gen && strcmp(d->bundle, bundle) == 0) {
            d->is_active = 0;
            d->version_follows = 0; /* keeps the version it was last listed at */
            sruns_touch(p, d);
            if (sq_run(p,
                       "UPDATE dags SET is_active = 0, version_follows = 0, bundle_version = ?2"
                       " WHERE dag_id = ?1",
                       "tt", d->dag->dag_id, d->bundle_version) != SQLITE_DONE)
                rc = -1;
        }
    }
    sq_run(p, "DELETE FROM import_errors WHERE bundle = ?1", "t", bundle);
    json_array_foreach(json_object_get(body, "import_errors"), i, x)
    {
        json_t *l = json_object_get(x, "line"), *c = json_object_get(x, "column");
        if (sq_run(p,
                   "INSERT INTO import_errors (bundle, file, line, col, message, created_ms,"
                   " version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                   "ttiitit", bundle, json_string_value(json_object_get(x, "file")),
                   (int64_t)(l ? json_integer_value(l) : 0),
                   (int64_t)(c ? json_integer_value(c) : 0),
                   json_string_value(json_object_get(x, "message")), now, version) != SQLITE_DONE)
            rc = -1;
    }
    /* What the bundle last sent, in figures (the manifest itself is the
     * dag-processor's: 1.3 MB for 10,000 files, not worth a rewrite each time). */
    char summary[128];
    snprintf(summary, sizeof(summary), "{\"files\":%zu,\"dags\":%zu,\"import_errors\":%zu}", nfiles,
             ndags, json_array_size(json_object_get(body, "import_errors")));
    if (sq_run(p,
               "INSERT INTO bundles (name, version, manifest, updated_ms) VALUES (?1, ?2, ?3, ?4)"
               " ON CONFLICT (name) DO UPDATE SET version = ?2, manifest = ?3, updated_ms = ?4",
               "ttti", bundle, version, summary, now) != SQLITE_DONE)
        rc = -1;
    return rc;
}

void sched_h_manifest(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    const char *bundle, *version;
    if (!rq->body || !json_is_object(rq->body)) {
        plane_error(rs, 400, "bad_request", "body: expected object");
        return;
    }
    if (rq_str(rs, rq->body, "bundle", 1, 256, &bundle) < 0 ||
        rq_str(rs, rq->body, "version", 0, 256, &version) < 0 || manifest_check(rq->body, rs) < 0)
        return;
    json_t *missing = json_array();
    uint64_t t0 = timeutil_mono_ns();
    pthread_mutex_lock(&p->mu);
    int began = sq_begin(p);
    int failed = manifest_locked(p, rq->body, bundle, version ? version : "", missing) != 0;
    if (failed && began && !sqlite3_get_autocommit(p->db)) {
        sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
        p->store_resync = 1; /* the cache took changes the store did not keep */
    }
    if (!failed && sq_commit(p, began) != 0)
        failed = 1;
    if (failed)
        plane_kick(p); /* the scheduler reloads the cache from the store */
    pthread_mutex_unlock(&p->mu);
    if (failed) {
        json_decref(missing);
        log_warn("sched: manifest of bundle %s not stored", bundle);
        plane_store_failed(rs);
        return;
    }
    log_info("sched: manifest of bundle %s at %s: %zu DAGs missing, %.1f ms", bundle,
             version ? version : "", json_array_size(missing),
             (double)(timeutil_mono_ns() - t0) / 1e6);
    plane_reply(rs, 200, json_pack("{so}", "missing", missing));
}

/* ---- admin ---- */

static json_t *dag_summary(const struct sdag *d)
{
    const struct dag *g = d->dag;
    json_t *tags = json_array();
    for (size_t i = 0; i < g->tags.n; i++)
        json_array_append_new(tags, json_string(g->tags.v[i]));
    return json_pack("{ss s{ssss} ss s:s* s:s* sb sb so si so}", "dag_id", g->dag_id, "bundle",
                     "name", d->bundle, "version", d->bundle_version, "hash", g->hash,
                     "description", g->description, "schedule", g->schedule, "is_active",
                     d->is_active, "is_paused", d->is_paused, "tags", tags, "tasks", (int)g->ntasks,
                     "next_dagrun_create_after",
                     sched_time_json(d->next_run_ms > 0 ? d->next_run_ms : 0));
}

/* DAGs listed per hold of the lock: 256 summaries and newest-run lookups
 * take about a millisecond; 10,000 DAGs in one hold took tens. */
#define DAGS_LIST_CHUNK 256

/* Appends the summaries of up to DAGS_LIST_CHUNK DAGs after *after (by
 * dag_id; "" from the first) to arr, each with its newest run
 * (dag_runs_dag index), and moves *after to the last; mu held. Returns how
 * many DAG ids it read. */
static int dags_list_chunk(struct plane *p, json_t *arr, char *after, size_t cap)
{
    int n = 0;
    sqlite3_stmt *st = sq(p, "SELECT dag_id FROM dags WHERE dag_id > ?1 ORDER BY dag_id LIMIT ?2",
                          "ti", after, (int64_t)DAGS_LIST_CHUNK);
    size_t first = json_array_size(arr);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        n++;
        snprintf(after, cap, "%s", sq_text(st, 0));
        struct sdag *d = sdag_find(p, after);
        if (d)
            json_array_append_new(arr, dag_summary(d));
    }
    if (st)
        sqlite3_reset(st);
    for (size_t i = first; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i), *last = json_null();
        st = sq(p,
                "SELECT run_id, state FROM dag_runs WHERE dag_id = ?1 ORDER BY logical_date DESC,"
                " id DESC LIMIT 1",
                "t", json_string_value(json_object_get(o, "dag_id")));
        if (st && sqlite3_step(st) == SQLITE_ROW)
            last = json_pack("{ss ss}", "run_id", sq_text(st, 0), "state", sq_text(st, 1));
        if (st)
            sqlite3_reset(st);
        json_object_set_new(o, "last_run", last);
    }
    return n;
}

/* Every DAG by dag_id with its newest run (the web UI's DAGs page reads it
 * per refresh), in chunks with the lock let go between them: each DAG's
 * entry is as of its chunk, and a DAG added or deleted meanwhile may be in
 * the list or not. Bounded: the cursor only moves forward. */
void sched_h_dags_list(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    (void)rq;
    json_t *arr = json_array();
    char after[DAG_ID_MAX + 1] = "";
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int n = dags_list_chunk(p, arr, after, sizeof(after));
        pthread_mutex_unlock(&p->mu);
        if (n < DAGS_LIST_CHUNK)
            break;
        /* Let the requests waiting for mu in (a mutex taken straight back
         * would starve them). */
        struct timespec gap = {0, 100000L};
        nanosleep(&gap, NULL);
    }
    plane_reply(rs, 200, json_pack("{so}", "dags", arr));
}

void sched_h_dag_show(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    pthread_mutex_lock(&p->mu);
    struct sdag *d = sdag_find(p, rq->param[0]);
    if (!d) {
        pthread_mutex_unlock(&p->mu);
        plane_error(rs, 404, "not_found", "no such dag");
        return;
    }
    json_t *o = dag_summary(d);
    json_object_set_new(o, "dag", dag_to_json_value(d->dag));
    pthread_mutex_unlock(&p->mu);
    plane_reply(rs, 200, o);
}

static void set_paused(struct plane *p, struct plane_req *rq, struct plane_resp *rs, int paused)
{
    pthread_mutex_lock(&p->mu);
    struct sdag *d = sdag_find(p, rq->param[0]);
    if (!d) {
        pthread_mutex_unlock(&p->mu);
        plane_error(rs, 404, "not_found", "no such dag");
        return;
    }
    d->is_paused = paused;
    sruns_touch(p, d);
    sq_run(p, "UPDATE dags SET is_paused = ?2 WHERE dag_id = ?1", "ti", d->dag->dag_id,
           (int64_t)paused);
    if (!paused) {
        /* Running runs resume their evaluation. */
        sqlite3_stmt *st = sq(p, "SELECT id FROM dag_runs WHERE dag_id = ?1 AND state = 'running'",
                              "t", d->dag->dag_id);
        while (st && sqlite3_step(st) == SQLITE_ROW)
            sched_mark_run(p, sqlite3_column_int64(st, 0), SDIRTY_EVAL);
        if (st)
            sqlite3_reset(st);
    }
    SCHED(p)->runs_changed = 1;
    plane_kick(p);
    json_t *o = json_pack("{ss sb}", "dag_id", d->dag->dag_id, "is_paused", paused);
    pthread_mutex_unlock(&p->mu);
    plane_reply(rs, 200, o);
}

void sched_h_dag_pause(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    set_paused(p, rq, rs, 1);
}

void sched_h_dag_unpause(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    set_paused(p, rq, rs, 0);
}

void sched_h_import_errors(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    (void)rq;
    json_t *arr = json_array();
    pthread_mutex_lock(&p->mu);
    sqlite3_stmt *st = sq(p,
                          "SELECT bundle, file, line, col, message, created_ms, version"
                          " FROM import_errors"
                          " ORDER BY bundle, file, line",
                          "");
    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, json_pack("{ss ss sI sI ss so ss}", "bundle", sq_text(st, 0),
                                             "file", sq_text(st, 1), "line",
                                             (json_int_t)sqlite3_column_int64(st, 2), "column",
                                             (json_int_t)sqlite3_column_int64(st, 3), "message",
                                             sq_text(st, 4), "timestamp", sched_col_time(st, 5),
                                             "version", sq_text(st, 6)));
    if (st)
        sqlite3_reset(st);
    pthread_mutex_unlock(&p->mu);
    plane_reply(rs, 200, json_pack("{so}", "import_errors", arr));
}

/* Forgets a DAG: its row, runs, task instances, triggers and XCom
 * references (the values stay in the agents' object storage). Refused (409)
 * while it has a queued or running run: pause it and cancel those first.
 * A DAG still in a bundle comes back with the next manifest or push. */
void sched_h_dag_delete(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    pthread_mutex_lock(&p->mu);
    struct sched *s = SCHED(p);
    struct sdag *gone = sdmap_get(s, rq->param[0]);
    if (!gone) {
        pthread_mutex_unlock(&p->mu);
        plane_error(rs, 404, "not_found", "no such dag");
        return;
    }
    int64_t active = sq_int(p, 0,
                            "SELECT count(*) FROM dag_runs WHERE dag_id = ?1 AND"
                            " state IN ('queued', 'running')",
                            "t", rq->param[0]);
    if (active > 0) {
        pthread_mutex_unlock(&p->mu);
        plane_error(rs, 409, "conflict",
                    "the DAG has %lld queued or running runs: pause it and cancel them first",
                    (long long)active);
        return;
    }
    int began = sq_begin(p);
    static const char *const del[] = {
        "DELETE FROM triggers WHERE ti IN (SELECT t.id FROM task_instances t JOIN dag_runs r"
        " ON r.id = t.run WHERE r.dag_id = ?1)",
        "DELETE FROM xcom WHERE run IN (SELECT id FROM dag_runs WHERE dag_id = ?1)",
        "DELETE FROM task_instances WHERE run IN (SELECT id FROM dag_runs WHERE dag_id = ?1)",
        "DELETE FROM dag_runs WHERE dag_id = ?1",
        "DELETE FROM dags WHERE dag_id = ?1",
    };
    for (size_t i = 0; i < sizeof(del) / sizeof(del[0]); i++)
        sq_run(p, del[i], "t", rq->param[0]);
    int failed = sq_commit(p, began);
    if (!failed) {
        sdmap_del(s, gone);
        sdag_unlink(s, gone);
        sdheap_set(s, gone, INT64_MAX);
        sdag_free(gone);
        s->runs_changed = 1;
        plane_kick(p);
    }
    pthread_mutex_unlock(&p->mu);
    if (failed) {
        plane_store_failed(rs);
        return;
    }
    log_info("sched: DAG %s deleted", rq->param[0]);
    plane_reply(rs, 200, json_pack("{ss sb}", "dag_id", rq->param[0], "deleted", 1));
}
