/*
 * Spawner threads: proc_spawn runs off the event loop.
 *
 * A clone-vfork spawn suspends the calling thread until the child has
 * exec'd. On a busy machine that is two scheduler waits in a row (the child's
 * first run, then the caller's), often longer than the loop's own work for
 * a task; on the loop they stalled plane calls, output and the next spawns.
 * Here the loop hands a job (the task's prepared proc_spec: nothing touches
 * it until the job comes back) to a queue, a spawner thread runs proc_spawn
 * and moves the job to the done list, and an eventfd tells the loop, which
 * finishes the task's start (task_spawned) in its own thread.
 *
 * Threads see only their job, the queue (under mu) and their own PATH cache;
 * they never log and block every signal (the loop's signalfd takes them).
 * A task whose spawn is in flight holds a pending reference, so it is not
 * freed under its job. Without threads (none could be started) spawns run
 * on the loop as before.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "remex/evloop.h"
#include "remex/log.h"
#include "worker.h"

#define SPAWNERS      2 /* spawns in flight at once; a third gained nothing */
#define SPAWNER_STACK (256u * 1024u)

struct spawner {
    struct worker *w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct spawn_job *pending, **pending_tail;
    struct spawn_job *done;
    int stop;
    int efd;
    pthread_t th[SPAWNERS];
    int nth;
};

static void *spawner_main(void *arg)
{
    struct spawner *s = arg;
    struct proc_exe_cache *cache = NULL;
    struct remex_error e;
    if (proc_exe_cache_new(&cache, &e) != REMEX_OK)
        cache = NULL; /* PATH searched at every spawn */
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !s->pending)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop)
            break;
        struct spawn_job *j = s->pending;
        s->pending = j->next;
        if (!s->pending)
            s->pending_tail = &s->pending;
        pthread_mutex_unlock(&s->mu);
        j->spec.exe_cache = cache;
        j->pid = -1;
        j->rc = proc_spawn(&j->spec, &j->pid, &j->err);
        pthread_mutex_lock(&s->mu);
        j->next = s->done;
        s->done = j;
        if (!j->next) { /* else the loop has a wake-up pending already */
            uint64_t one = 1;
            (void)!write(s->efd, &one, sizeof(one));
        }
    }
    pthread_mutex_unlock(&s->mu);
    proc_exe_cache_free(cache);
    return NULL;
}

/* Done jobs, oldest first, handed to task_spawned. */
static void on_done(struct evloop *loop, int fd, unsigned ev, void *arg)
{
    (void)loop;
    (void)ev;
    struct spawner *s = arg;
    uint64_t n;
    (void)!read(fd, &n, sizeof(n));
    pthread_mutex_lock(&s->mu);
    struct spawn_job *j = s->done, *rev = NULL;
    s->done = NULL;
    pthread_mutex_unlock(&s->mu);
    while (j) {
        struct spawn_job *next = j->next;
        j->next = rev;
        rev = j;
        j = next;
    }
    while (rev) {
        j = rev;
        rev = rev->next;
        task_spawned(j);
    }
    task_reap(s->w); /* children that exited before their spawn was back */
}

remex_err spawner_start(struct worker *w, struct remex_error *e)
{
    struct spawner *s = calloc(1, sizeof(*s));
    if (!s)
        return remex_seterr(e, REMEX_ENOMEM, "spawner: out of memory");
    s->w = w;
    s->pending_tail = &s->pending;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->efd < 0 || evloop_watch(w->loop, s->efd, EVLOOP_READ, on_done, s, e) != REMEX_OK) {
        if (s->efd < 0)
            remex_seterr(e, REMEX_ESYS, "spawner: eventfd: %s", strerror(errno));
        else
            close(s->efd);
        free(s);
        return e->code;
    }
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, SPAWNER_STACK);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* inherited: signals stay with the loop */
    for (int i = 0; i < SPAWNERS; i++)
        if (pthread_create(&s->th[s->nth], &attr, spawner_main, s) == 0)
            s->nth++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    w->spawner = s;
    if (s->nth == 0) {
        spawner_stop(w);
        return remex_seterr(e, REMEX_ESYS, "spawner: no thread could be started");
    }
    return REMEX_OK;
}

int spawner_submit(struct worker *w, struct spawn_job *j)
{
    struct spawner *s = w->spawner;
    if (!s)
        return -1;
    j->next = NULL;
    pthread_mutex_lock(&s->mu);
    *s->pending_tail = j;
    s->pending_tail = &j->next;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Joins the threads once their current spawns are done; queued and done jobs are dropped. */
void spawner_stop(struct worker *w)
{
    struct spawner *s = w->spawner;
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nth; i++)
        pthread_join(s->th[i], NULL);
    for (struct spawn_job *j = s->done; j; j = j->next)
        if (j->rc == REMEX_OK)
            proc_kill_group_now(j->pid, NULL); /* running, but its task never learnt its pid */
    evloop_unwatch(w->loop, s->efd);
    close(s->efd);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    w->spawner = NULL;
}
