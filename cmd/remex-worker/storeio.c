/*
 * storeio: object-store transfers off the event loop.
 *
 * One thread runs the jobs in order: object-store transfers (XCom values, task
 * logs, streamed from their files) and secrets lookups (the chain may call Vault). Once the loop
 * runs, the worker's stores and secrets chain are used by this thread only. Finished jobs come back
 * through an eventfd and their done callback runs on the loop. Each job holds a pending reference
 * on its task (task.c), dropped after done has run. The thread blocks all signals: they stay with
 * the loop.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "remex/evloop.h"
#include "remex/log.h"
#include "remex/objstore.h"
#include "remex/secrets.h"
#include "worker.h"

#define STOREIO_STACK (256u * 1024u)

struct storeio {
    struct worker *w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct store_job *pending, **pending_tail; /* under mu */
    struct store_job *done;                    /* under mu, newest first */
    int stop;                                  /* under mu */
    int efd;
    pthread_t th;
    int started;
};

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

static void run_job(struct store_job *j)
{
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

static void *storeio_main(void *arg)
{
    struct storeio *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !s->pending)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop)
            break;
        struct store_job *j = s->pending;
        s->pending = j->next;
        if (!s->pending)
            s->pending_tail = &s->pending;
        pthread_mutex_unlock(&s->mu);
        run_job(j);
        pthread_mutex_lock(&s->mu);
        j->next = s->done;
        s->done = j;
        if (!j->next) {
            uint64_t one = 1;
            (void)!write(s->efd, &one, sizeof(one));
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Runs done callbacks oldest first, then drops each job's task reference. */
static void deliver(struct store_job *j)
{
    struct store_job *rev = NULL;
    while (j) {
        struct store_job *next = j->next;
        j->next = rev;
        rev = j;
        j = next;
    }
    while (rev) {
        j = rev;
        rev = rev->next;
        struct wtask *t = j->t;
        j->done(j);
        store_job_free(j);
        t->pending--;
        task_release(t);
    }
}

static void on_done(struct evloop *loop, int fd, unsigned ev, void *arg)
{
    (void)loop;
    (void)ev;
    struct storeio *s = arg;
    uint64_t n;
    (void)!read(fd, &n, sizeof(n));
    pthread_mutex_lock(&s->mu);
    struct store_job *j = s->done;
    s->done = NULL;
    pthread_mutex_unlock(&s->mu);
    deliver(j);
}

remex_err storeio_start(struct worker *w, struct remex_error *e)
{
    struct storeio *s = calloc(1, sizeof(*s));
    pthread_attr_t attr;
    sigset_t all, old;
    if (!s)
        return remex_seterr(e, REMEX_ENOMEM, "store thread: out of memory");
    s->w = w;
    s->pending_tail = &s->pending;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->efd < 0 || evloop_watch(w->loop, s->efd, EVLOOP_READ, on_done, s, e) != REMEX_OK) {
        if (s->efd < 0)
            remex_errno(e, REMEX_ESYS, "store thread: eventfd");
        else
            close(s->efd);
        free(s);
        return e->code;
    }
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, STOREIO_STACK);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    s->started = pthread_create(&s->th, &attr, storeio_main, s) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    w->storeio = s;
    if (!s->started) {
        storeio_stop(w);
        return remex_seterr(e, REMEX_ESYS, "store thread: cannot start");
    }
    return REMEX_OK;
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
    struct storeio *s = w->storeio;
    if (!s || !s->started)
        return -1;
    j->t->pending++;
    j->next = NULL;
    pthread_mutex_lock(&s->mu);
    *s->pending_tail = j;
    s->pending_tail = &j->next;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void storeio_stop(struct worker *w)
{
    struct storeio *s = w->storeio;
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->started)
        pthread_join(s->th, NULL);
    evloop_unwatch(w->loop, s->efd);
    close(s->efd);
    /* Finished jobs keep their results; jobs never run fail as "worker stopping". */
    for (struct store_job *j = s->pending; j; j = j->next)
        j->rc = remex_seterr(&j->err, REMEX_ECLOSED, "worker stopping");
    deliver(s->done);
    deliver(s->pending);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    w->storeio = NULL;
}
