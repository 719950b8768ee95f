/*
 * Spawner threads: proc_spawn runs off the event loop.
 *
 * A clone-vfork spawn suspends the calling thread until the child has
 * exec'd. On a busy machine that is two scheduler waits in a row (the child's
 * first run, then the caller's), often longer than the loop's own work for
 * a task; on the loop they stalled plane calls, output and the next spawns.
 * Here the loop hands a job (the task's prepared proc_spec: nothing touches
 * it until the job comes back) to a workq of SPAWNERS threads, each with its
 * own PATH cache; the loop finishes the task's start (task_spawned). A task
 * whose spawn is in flight holds a pending reference. Without threads (none
 * could be started, or the queue is full) spawns run on the loop.
 */
#include "remex/workq.h"
#include "worker.h"

#define SPAWNERS      2 /* spawns in flight at once; a third gained nothing */
#define SPAWNER_STACK (256u * 1024u)

/* Thread: its own PATH cache (NULL: PATH searched at every spawn). */
static void *cache_new(void *arg)
{
    struct proc_exe_cache *cache = NULL;
    struct remex_error e;
    (void)arg;
    return proc_exe_cache_new(&cache, &e) == REMEX_OK ? cache : NULL;
}

static void cache_free(void *cache, void *arg)
{
    (void)arg;
    proc_exe_cache_free(cache);
}

static void spawn_run(struct workq_job *wj, void *cache)
{
    struct spawn_job *j = WORKQ_OF(wj, struct spawn_job, wj);
    j->spec.exe_cache = cache;
    j->pid = -1;
    j->rc = proc_spawn(&j->spec, &j->pid, &j->err);
}

/* Loop: a spawn is back; then the children that exited before it was are reaped. At stop
 * (w->spawner already NULL) it is dropped, and a child started for it is killed (running,
 * but its task never learnt its pid). */
static void spawn_done(struct workq_job *wj, enum workq_end how)
{
    struct spawn_job *j = WORKQ_OF(wj, struct spawn_job, wj);
    struct worker *w = j->t->w;
    if (!w->spawner) {
        if (how == WORKQ_RAN && j->rc == REMEX_OK)
            proc_kill_group_now(j->pid, NULL);
        return;
    }
    task_spawned(j);
    task_reap(w);
}

remex_err spawner_start(struct worker *w, struct remex_error *e)
{
    struct workq_opts o = {
        .name = "spawner",
        .threads = SPAWNERS,
        .stack = SPAWNER_STACK,
        .thread_init = cache_new,
        .thread_fini = cache_free,
    };
    w->spawner = workq_new(w->loop, &o, e);
    return w->spawner ? REMEX_OK : e->code;
}

int spawner_submit(struct worker *w, struct spawn_job *j)
{
    if (!w->spawner)
        return -1;
    j->wj.run = spawn_run;
    j->wj.done = spawn_done;
    return workq_submit(w->spawner, &j->wj, NULL) == REMEX_OK ? 0 : -1;
}

/* Joins the threads once their current spawns are done (they borrow the tasks' specs). */
void spawner_stop(struct worker *w)
{
    struct workq *q = w->spawner;
    w->spawner = NULL; /* spawn_done: drop what comes back */
    workq_free(q, WORKQ_FOREVER);
}
