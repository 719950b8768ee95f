/*
 * storeio: object-store transfers off the event loop.
 *
 * One thread runs the jobs in order: object-store transfers (XCom values, task
 * logs, streamed from their files) and secrets lookups (the chain may call Vault). Once the loop
 * runs, the worker's stores and secrets chain are used by this thread only. The thread is a
 * workq (lib/workq): finished jobs' done callbacks run on the loop. Each job holds a pending
 * reference on its task (task.c), dropped after done has run.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/objstore.h"
#include "remex/secrets.h"
#include "remex/workq.h"
#include "worker.h"

#define STOREIO_STACK (256u * 1024u)
#define STOREIO_CAP   4096u /* queued transfers; past it submit fails and the caller copes */

/* REMEX_CONN_ / REMEX_VAR_ name of an id: upper-cased, [-.] as '_' (ids are checked upstream). */
static void env_name(char *out, size_t cap, const char *prefix, const char *id)
{
    size_t k = (size_t)snprintf(out, cap, "%s", prefix);
    for (; *id && k + 1 < cap; id++)
        out[k++] = (*id == '-' || *id == '.') ? '_' : (char)toupper((unsigned char)*id);
    out[k] = '\0';
}

/* Records the failure of one lookup in res (the first one wins). */
static void secret_fail(json_t *res, remex_err rc, const struct remex_error *e)
{
    if (json_object_get(res, "error"))
        return;
    json_object_set_new(res, "code",
                        json_string(rc == REMEX_ENOTFOUND ? "not_found" : "unavailable"));
    json_object_set_new(res, "error", json_string(e->msg));
}

/* One connection: its URI (and, with as_obj, the whole object) into res; values into mask. */
static void resolve_conn(struct secrets *sec, const char *id, json_t *res, int as_obj)
{
    struct secrets_conn c = {0};
    struct remex_error e;
    struct buf uri = BUF_INIT(SECRETS_URI_MAX);
    json_t *mask = json_object_get(res, "mask");
    remex_err rc = secrets_get_conn(sec, id, &c, &e);
    if (rc == REMEX_OK && (rc = secrets_conn_uri(&c, &uri)) != REMEX_OK)
        remex_seterr(&e, rc, "connection '%s': cannot be written as a URI", id);
    if (rc != REMEX_OK) {
        secret_fail(res, rc, &e);
    } else {
        char name[300];
        if (c.password)
            json_array_append_new(mask, json_string(c.password));
        json_array_append_new(mask, json_string(buf_cstr(&uri)));
        if (as_obj) {
            json_t *cj = secrets_conn_json(&c);
            if (cj)
                json_object_set_new(cj, "uri", json_string(buf_cstr(&uri)));
            json_object_set_new(res, "conn", cj ? cj : json_null());
        } else {
            env_name(name, sizeof(name), "REMEX_CONN_", id);
            json_object_set_new(json_object_get(res, "env"), name, json_string(buf_cstr(&uri)));
        }
    }
    buf_free(&uri);
    secrets_conn_free(&c);
}

static void resolve_var(struct secrets *sec, const char *key, json_t *res, int single)
{
    char *v = NULL, name[300];
    struct remex_error e;
    remex_err rc = secrets_get_var(sec, key, &v, &e);
    if (rc != REMEX_OK) {
        secret_fail(res, rc, &e);
        return;
    }
    json_array_append_new(json_object_get(res, "mask"), json_string(v));
    if (single) {
        json_object_set_new(res, "value", json_string(v));
    } else {
        env_name(name, sizeof(name), "REMEX_VAR_", key);
        json_object_set_new(json_object_get(res, "env"), name, json_string(v));
    }
    free(v);
}

/* The lookups of a SECRETS job, on the store thread (the only user of the chain). */
static void resolve_secrets(struct store_job *j)
{
    json_t *res = json_pack("{s:{},s:[]}", "env", "mask"), *v;
    size_t i;
    j->res = res;
    if (!res) {
        j->rc = remex_seterr(&j->err, REMEX_ENOMEM, "out of memory");
        return;
    }
    if (!j->secrets) {
        struct remex_error e;
        remex_seterr(&e, REMEX_ENOTFOUND, "no secrets backend");
        secret_fail(res, REMEX_ENOTFOUND, &e);
        return;
    }
    json_array_foreach(json_object_get(j->req, "connections"), i, v)
    {
        if (json_is_string(v))
            resolve_conn(j->secrets, json_string_value(v), res, 0);
    }
    json_array_foreach(json_object_get(j->req, "variables"), i, v)
    {
        if (json_is_string(v))
            resolve_var(j->secrets, json_string_value(v), res, 0);
    }
    if ((v = json_object_get(j->req, "conn")) && json_is_string(v))
        resolve_conn(j->secrets, json_string_value(v), res, 1);
    if ((v = json_object_get(j->req, "var")) && json_is_string(v))
        resolve_var(j->secrets, json_string_value(v), res, 1);
}

static void store_run(struct workq_job *wj, void *tctx)
{
    struct store_job *j = WORKQ_OF(wj, struct store_job, wj);
    (void)tctx; /* no per-thread state */
    switch (j->op) {
    case STORE_PUT:
        j->rc = objstore_put(j->store, j->key, j->data.data ? j->data.data : "", j->data.len,
                             &j->ref, &j->err);
        break;
    case STORE_PUT_FILE:
        /* streamed from the file: memory stays bounded whatever the log's size */
        j->rc = objstore_put_file(j->store, j->key, j->path, &j->ref, &j->err);
        break;
    case STORE_GET_URI:
        j->rc = objstore_get_uri(j->store, j->key, j->checksum, &j->data, &j->err);
        break;
    case STORE_SECRETS:
        resolve_secrets(j);
        break;
    default:
        j->rc = remex_seterr(&j->err, REMEX_EINVAL, "store job: unknown operation");
    }
}

/* Loop: the job's done (unrun: "worker stopping"), then its task reference goes. */
static void store_done(struct workq_job *wj, enum workq_end how)
{
    struct store_job *j = WORKQ_OF(wj, struct store_job, wj);
    struct wtask *t = j->t;
    if (how == WORKQ_CANCELLED)
        j->rc = remex_seterr(&j->err, REMEX_ECLOSED, "worker stopping");
    j->done(j);
    store_job_free(j);
    t->pending--;
    task_release(t);
}

remex_err storeio_start(struct worker *w, struct remex_error *e)
{
    struct workq_opts o = {
        .name = "store thread", .threads = 1, .cap = STOREIO_CAP, .stack = STOREIO_STACK};
    w->storeio = workq_new(w->loop, &o, e);
    return w->storeio ? REMEX_OK : e->code;
}

struct store_job *store_job_new(struct wtask *t, struct objstore *store, enum store_op op,
                                size_t cap)
{
    struct store_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->t = t;
    j->store = store;
    j->op = op;
    buf_init(&j->data, cap);
    return j;
}

void store_job_free(struct store_job *j)
{
    if (!j)
        return;
    free(j->key);
    free(j->path);
    free(j->checksum);
    json_decref(j->req);
    json_decref(j->res);
    buf_free(&j->data);
    free(j);
}

int storeio_submit(struct worker *w, struct store_job *j)
{
    if (!w->storeio)
        return -1;
    j->wj.run = store_run;
    j->wj.done = store_done;
    if (workq_submit(w->storeio, &j->wj, NULL) != REMEX_OK)
        return -1;
    j->t->pending++;
    return 0;
}

/* Joins the thread after its transfer (it borrows the worker's stores and secrets). */
void storeio_stop(struct worker *w)
{
    workq_free(w->storeio, WORKQ_FOREVER);
    w->storeio = NULL;
}
