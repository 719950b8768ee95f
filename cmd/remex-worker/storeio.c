/*
 * storeio: object-store transfers off the event loop.
 *
 * One thread runs the jobs in order (an objstore belongs to one thread at a
 * time; XCom and log stores are only touched here once the loop is running).
 * Finished jobs come back through an eventfd and their done callback runs on
 * the loop. Each job holds a pending reference on its task (task.c), dropped
 * after done has run. The thread blocks all signals: they stay with the loop.
 */
#include <errno.h>
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

/* Reads a whole file (capped by out) for a PUT_FILE job. */
static remex_err read_file(const char *path, struct buf *out, struct remex_error *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    char chunk[65536];
    ssize_t r;
    remex_err rc = REMEX_OK;
    if (fd < 0)
        return remex_errno(e, REMEX_EIO, "%s", path);
    while (rc == REMEX_OK && (r = read(fd, chunk, sizeof(chunk))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = remex_errno(e, REMEX_EIO, "%s", path);
        else if (buf_append(out, chunk, (size_t)r) != REMEX_OK)
            rc = remex_seterr(e, REMEX_ETOOBIG, "%s: larger than %zu bytes", path, out->max);
    }
    close(fd);
    return rc;
}

static void run_job(struct store_job *j)
{
    switch (j->op) {
    case STORE_PUT:
        j->rc = objstore_put(j->store, j->key, j->data.data ? j->data.data : "", j->data.len,
                             &j->ref, &j->err);
        break;
    case STORE_PUT_FILE:
        j->rc = read_file(j->path, &j->data, &j->err);
        if (j->rc == REMEX_OK)
            j->rc = objstore_put(j->store, j->key, j->data.data ? j->data.data : "", j->data.len,
                                 &j->ref, &j->err);
        break;
    case STORE_GET_URI:
        j->rc = objstore_get_uri(j->store, j->key, j->checksum, &j->data, &j->err);
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
