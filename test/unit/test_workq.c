/* Unit tests: workq (threads, bounded queue, done on the loop, cancel, bounded stop). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "remex/evloop.h"
#include "remex/timeutil.h"
#include "remex/workq.h"

/* Every wait below is bounded: at most this many 10 ms loop passes. */
#define MAX_SPINS 1000

/* A gate jobs can wait on (thread side) until the test opens it. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
    int waiting; /* jobs blocked in gate_wait now */
};

static void gate_init(struct gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = 0;
    g->waiting = 0;
}

static void gate_wait(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->waiting++;
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    g->waiting--;
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static int gate_waiting(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    int n = g->waiting;
    pthread_mutex_unlock(&g->mu);
    return n;
}

struct ctx {
    pthread_t loop_thread;
    int ndone, ncancelled, off_loop, on_loop_runs;
    int order[256];
    int ran_seq;      /* __atomic: order of run calls */
    int orphans;      /* __atomic */
    int inits, finis; /* __atomic */
    int finished;     /* __atomic: run calls that returned */
};

struct tjob {
    struct workq_job wj;
    struct ctx *c;
    int id;
    int run_at;
    struct gate *gate; /* run waits on it when set */
    struct gate *meet; /* run waits until meet_n jobs wait on it, bounded */
    int meet_n;
    int met;
};

static void tjob_run(struct workq_job *wj, void *tctx)
{
    struct tjob *j = WORKQ_OF(wj, struct tjob, wj);
    if (pthread_equal(pthread_self(), j->c->loop_thread))
        j->run_at = -1;
    else if (!tctx || *(int *)tctx != 42)
        j->run_at = -100; /* thread context not passed */
    else
        j->run_at = __atomic_fetch_add(&j->c->ran_seq, 1, __ATOMIC_SEQ_CST);
    if (j->meet) {
        pthread_mutex_lock(&j->meet->mu);
        j->meet->waiting++;
        pthread_mutex_unlock(&j->meet->mu);
        for (int i = 0; i < 2000 && gate_waiting(j->meet) < j->meet_n; i++) {
            struct timespec ts = {0, 1000000L};
            nanosleep(&ts, NULL);
        }
        j->met = gate_waiting(j->meet) >= j->meet_n;
    }
    if (j->gate)
        gate_wait(j->gate);
    __atomic_fetch_add(&j->c->finished, 1, __ATOMIC_SEQ_CST);
}

static void tjob_done(struct workq_job *wj, enum workq_end how)
{
    struct tjob *j = WORKQ_OF(wj, struct tjob, wj);
    struct ctx *c = j->c;
    if (!pthread_equal(pthread_self(), c->loop_thread))
        c->off_loop++;
    if (how == WORKQ_CANCELLED) {
        c->ncancelled++;
        return;
    }
    if (c->ndone < 256)
        c->order[c->ndone] = j->id;
    c->ndone++;
}

static void tjob_orphan(struct workq_job *wj)
{
    struct ctx *c = WORKQ_OF(wj, struct tjob, wj)->c;
    __atomic_fetch_add(&c->orphans, 1, __ATOMIC_SEQ_CST);
}

static void *tinit(void *arg)
{
    struct ctx *c = arg;
    int *v = malloc(sizeof(*v));
    if (v)
        *v = 42;
    __atomic_fetch_add(&c->inits, 1, __ATOMIC_SEQ_CST);
    return v;
}

static void tfini(void *tctx, void *arg)
{
    struct ctx *c = arg;
    free(tctx);
    __atomic_fetch_add(&c->finis, 1, __ATOMIC_SEQ_CST);
}

static void tjob_init(struct tjob *j, struct ctx *c, int id)
{
    memset(j, 0, sizeof(*j));
    j->wj.run = tjob_run;
    j->wj.done = tjob_done;
    j->c = c;
    j->id = id;
}

/* Runs the loop until *count reaches want (bounded); returns *count. */
static int run_until(struct evloop *loop, const int *count, int want)
{
    for (int i = 0; i < MAX_SPINS && *count < want; i++)
        assert_int_equal(evloop_run_once(loop, 10, NULL), REMEX_OK);
    return *count;
}

static struct workq *mk(struct evloop *loop, struct ctx *c, unsigned threads, size_t cap)
{
    struct remex_error e;
    struct workq_opts o = {.name = "test queue",
                           .threads = threads,
                           .cap = cap,
                           .thread_init = tinit,
                           .thread_fini = tfini,
                           .orphan = tjob_orphan,
                           .arg = c};
    memset(c, 0, sizeof(*c));
    c->loop_thread = pthread_self();
    struct workq *q = workq_new(loop, &o, &e);
    assert_non_null(q);
    return q;
}

/* One thread: jobs run, and come back, in submission order; done on the loop thread. */
static void test_order(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct ctx c;
    struct workq *q = mk(loop, &c, 1, 0);
    static struct tjob jobs[100];
    for (int i = 0; i < 100; i++) {
        tjob_init(&jobs[i], &c, i);
        assert_int_equal(workq_submit(q, &jobs[i].wj, NULL), REMEX_OK);
    }
    assert_int_equal(run_until(loop, &c.ndone, 100), 100);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(c.order[i], i);
        assert_int_equal(jobs[i].run_at, i);
    }
    assert_int_equal(c.off_loop, 0);
    assert_int_equal(workq_free(q, timeutil_mono_ms() + 2000), 0);
    assert_int_equal(c.inits, 1);
    assert_int_equal(c.finis, 1);
    evloop_free(loop);
}

/* Four threads run four jobs at once; many jobs all come back once, on the loop. */
static void test_many_threads(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct ctx c;
    struct workq *q = mk(loop, &c, 4, 0);
    static struct tjob jobs[204];
    struct gate meet;
    gate_init(&meet);
    for (int i = 0; i < 4; i++) { /* each waits until all four run together */
        tjob_init(&jobs[i], &c, i);
        jobs[i].meet = &meet;
        jobs[i].meet_n = 4;
        assert_int_equal(workq_submit(q, &jobs[i].wj, NULL), REMEX_OK);
    }
    for (int i = 4; i < 204; i++) {
        tjob_init(&jobs[i], &c, i);
        assert_int_equal(workq_submit(q, &jobs[i].wj, NULL), REMEX_OK);
    }
    assert_int_equal(run_until(loop, &c.ndone, 204), 204);
    for (int i = 0; i < 4; i++)
        assert_int_equal(jobs[i].met, 1);
    int seen[204] = {0};
    for (int i = 0; i < 204; i++)
        seen[c.order[i]]++;
    for (int i = 0; i < 204; i++) {
        assert_int_equal(seen[i], 1);
        assert_true(jobs[i].run_at >= 0); /* ran off the loop, with its thread context */
    }
    assert_int_equal(c.off_loop, 0);
    assert_int_equal(workq_free(q, timeutil_mono_ms() + 2000), 0);
    assert_int_equal(c.inits, 4);
    assert_int_equal(c.finis, 4);
    evloop_free(loop);
}

/* A full queue refuses at once with REMEX_EAGAIN; the running job is not counted. */
static void test_full_queue(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct ctx c;
    struct workq *q = mk(loop, &c, 1, 2);
    struct tjob a, b, d, x;
    struct gate g;
    struct remex_error e;
    gate_init(&g);
    tjob_init(&a, &c, 0);
    a.gate = &g;
    tjob_init(&b, &c, 1);
    tjob_init(&d, &c, 2);
    tjob_init(&x, &c, 3);
    assert_int_equal(workq_submit(q, &a.wj, NULL), REMEX_OK);
    for (int i = 0; i < MAX_SPINS && gate_waiting(&g) < 1; i++)
        evloop_run_once(loop, 1, NULL);
    assert_int_equal(workq_submit(q, &b.wj, NULL), REMEX_OK);
    assert_int_equal(workq_submit(q, &d.wj, NULL), REMEX_OK);
    uint64_t t0 = timeutil_mono_ms();
    assert_int_equal(workq_submit(q, &x.wj, &e), REMEX_EAGAIN);
    assert_true(timeutil_mono_ms() - t0 < 1000); /* refused, not waited */
    assert_non_null(strstr(e.msg, "test queue: queue full"));
    assert_int_equal(workq_submit(q, &b.wj, &e), REMEX_EINVAL); /* already queued */
    gate_open(&g);
    assert_int_equal(run_until(loop, &c.ndone, 3), 3);
    assert_int_equal(workq_submit(q, &x.wj, NULL), REMEX_OK); /* room again */
    assert_int_equal(run_until(loop, &c.ndone, 4), 4);
    assert_int_equal(c.order[0], 0);
    assert_int_equal(c.order[3], 3);
    assert_int_equal(workq_free(q, timeutil_mono_ms() + 2000), 0);
    evloop_free(loop);
}

/* A queued job can be taken back (no done); a running one cannot. */
static void test_cancel(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct ctx c;
    struct workq *q = mk(loop, &c, 1, 0);
    struct tjob a, b, d;
    struct gate g;
    gate_init(&g);
    tjob_init(&a, &c, 0);
    a.gate = &g;
    tjob_init(&b, &c, 1);
    tjob_init(&d, &c, 2);
    assert_int_equal(workq_submit(q, &a.wj, NULL), REMEX_OK);
    assert_int_equal(workq_submit(q, &b.wj, NULL), REMEX_OK);
    assert_int_equal(workq_submit(q, &d.wj, NULL), REMEX_OK);
    for (int i = 0; i < MAX_SPINS && gate_waiting(&g) < 1; i++)
        evloop_run_once(loop, 1, NULL);
    assert_int_equal(workq_cancel(q, &a.wj), 0);              /* running */
    assert_int_equal(workq_cancel(q, &d.wj), 1);              /* the tail */
    assert_int_equal(workq_cancel(q, &d.wj), 0);              /* not queued any more */
    assert_int_equal(workq_submit(q, &d.wj, NULL), REMEX_OK); /* the tail link was fixed */
    assert_int_equal(workq_cancel(q, &b.wj), 1);              /* the head */
    gate_open(&g);
    assert_int_equal(run_until(loop, &c.ndone, 2), 2);
    for (int i = 0; i < 20; i++)
        evloop_run_once(loop, 5, NULL);
    assert_int_equal(c.ndone, 2);
    assert_int_equal(c.order[0], 0);
    assert_int_equal(c.order[1], 2);
    assert_int_equal(b.run_at, 0); /* never ran */
    assert_int_equal(c.ncancelled, 0);
    assert_int_equal(workq_free(q, timeutil_mono_ms() + 2000), 0);
    evloop_free(loop);
}

/* Stop with a job that hangs: bounded; queued jobs come back cancelled; the thread frees. */
static void test_stop_hung_job_bounded(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    static struct ctx c; /* the detached thread uses it after the test returns */
    static struct tjob a, b;
    static struct gate g;
    struct workq *q = mk(loop, &c, 1, 0);
    gate_init(&g);
    tjob_init(&a, &c, 0);
    a.gate = &g;
    tjob_init(&b, &c, 1);
    assert_int_equal(workq_submit(q, &a.wj, NULL), REMEX_OK);
    assert_int_equal(workq_submit(q, &b.wj, NULL), REMEX_OK);
    for (int i = 0; i < MAX_SPINS && gate_waiting(&g) < 1; i++)
        evloop_run_once(loop, 1, NULL);
    uint64_t t0 = timeutil_mono_ms();
    assert_int_equal(workq_free(q, t0 + 200), 1); /* one thread detached */
    uint64_t took = timeutil_mono_ms() - t0;
    assert_true(took >= 190);
    assert_true(took < 3000);
    assert_int_equal(c.ncancelled, 1); /* b, on the loop thread */
    assert_int_equal(c.ndone, 0);
    assert_int_equal(c.off_loop, 0);
    assert_int_equal(__atomic_load_n(&c.orphans, __ATOMIC_SEQ_CST), 0);
    gate_open(&g); /* the hung call returns: the thread hands a to orphan and frees */
    for (int i = 0; i < MAX_SPINS && __atomic_load_n(&c.finis, __ATOMIC_SEQ_CST) < 1; i++) {
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(__atomic_load_n(&c.orphans, __ATOMIC_SEQ_CST), 1);
    assert_int_equal(c.ndone, 0); /* done never called for the orphan */
    /* the last thread frees the queue right after thread_fini: let it */
    struct timespec ts = {0, 50000000L};
    nanosleep(&ts, NULL);
    evloop_free(loop);
}

/* Jobs finished but not delivered at stop come back as RAN from workq_free; no more from
 * the loop after workq_stop; submit then refuses. */
static void test_stop_delivers(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct ctx c;
    struct workq *q = mk(loop, &c, 2, 0);
    struct tjob jobs[6];
    struct remex_error e;
    for (int i = 0; i < 6; i++) {
        tjob_init(&jobs[i], &c, i);
        assert_int_equal(workq_submit(q, &jobs[i].wj, NULL), REMEX_OK);
    }
    /* all run, none delivered: the loop does not run */
    for (int i = 0; i < MAX_SPINS && __atomic_load_n(&c.finished, __ATOMIC_SEQ_CST) < 6; i++) {
        struct timespec ts = {0, 2000000L};
        nanosleep(&ts, NULL);
    }
    workq_stop(q);
    assert_int_equal(workq_submit(q, &jobs[0].wj, &e), REMEX_EINVAL); /* not idle */
    for (int i = 0; i < 5; i++)
        evloop_run_once(loop, 5, NULL);
    assert_int_equal(c.ndone, 0); /* the eventfd is no longer watched */
    assert_int_equal(workq_free(q, WORKQ_FOREVER), 0);
    assert_int_equal(c.ndone, 6);
    assert_int_equal(c.ncancelled, 0);
    assert_int_equal(c.off_loop, 0);
    evloop_free(loop);
}

static void test_invalid(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct remex_error e;
    struct workq_opts o = {.name = "bad", .threads = 0};
    assert_null(workq_new(loop, &o, &e));
    assert_int_equal(e.code, REMEX_EINVAL);
    o.threads = WORKQ_THREADS_MAX + 1;
    assert_null(workq_new(loop, &o, &e));
    struct ctx c;
    struct workq *q = mk(loop, &c, 1, 0);
    struct workq_job bare = {0};
    assert_int_equal(workq_submit(q, &bare, &e), REMEX_EINVAL);
    workq_stop(q);
    struct tjob j;
    tjob_init(&j, &c, 0);
    assert_int_equal(workq_submit(q, &j.wj, &e), REMEX_ECLOSED);
    assert_int_equal(workq_free(q, timeutil_mono_ms() + 2000), 0);
    assert_int_equal(workq_free(NULL, 0), 0);
    evloop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_many_threads),
        cmocka_unit_test(test_full_queue),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_stop_delivers),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_stop_hung_job_bounded),
    };
    return cmocka_run_group_tests_name("workq", tests, NULL, NULL);
}
