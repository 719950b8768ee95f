/* Unit tests: evloop (fd watches, min-heap timers, signalfd, stop). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remex/evloop.h"

/* Every wait loop below is bounded: at most this many iterations. */
#define MAX_SPINS 5000

struct fdrec {
    int calls;
    unsigned last;
    int other_fd; /* fd to unwatch+close from the callback, -1 for none */
    int other_calls_seen;
};

static void fd_cb(struct evloop *loop, int fd, unsigned events, void *arg)
{
    struct fdrec *r = arg;
    char c;
    r->calls++;
    r->last = events;
    if (events & EVLOOP_READ)
        (void)read(fd, &c, 1);
    if (r->other_fd >= 0) {
        assert_int_equal(evloop_unwatch(loop, r->other_fd), REMEX_OK);
        close(r->other_fd);
        r->other_fd = -1;
    }
}

static void fd_unwatch_self_cb(struct evloop *loop, int fd, unsigned events, void *arg)
{
    struct fdrec *r = arg;
    (void)events;
    r->calls++;
    assert_int_equal(evloop_unwatch(loop, fd), REMEX_OK);
}

static void make_pipe(int p[2])
{
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

static void test_pipe_readable(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct fdrec r = {0, 0, -1, 0};
    int p[2];
    make_pipe(p);
    assert_non_null(loop);
    assert_int_equal(evloop_watch(loop, p[0], EVLOOP_READ, fd_cb, &r, NULL), REMEX_OK);
    assert_int_equal(evloop_watching(loop, p[0]), EVLOOP_READ);
    assert_int_equal(evloop_run_once(loop, 0, NULL), REMEX_OK);
    assert_int_equal(r.calls, 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(evloop_run_once(loop, 1000, NULL), REMEX_OK);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.last, EVLOOP_READ);
    /* EOF is reported as readable. */
    close(p[1]);
    assert_int_equal(evloop_run_once(loop, 1000, NULL), REMEX_OK);
    assert_int_equal(r.calls, 2);
    assert_true(r.last & EVLOOP_READ);
    assert_int_equal(evloop_unwatch(loop, p[0]), REMEX_OK);
    assert_int_equal(evloop_unwatch(loop, p[0]), REMEX_ENOTFOUND);
    close(p[0]);
    evloop_free(loop);
}

static void test_write_watch_and_modify(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct fdrec r = {0, 0, -1, 0};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(evloop_watch(loop, sv[0], EVLOOP_WRITE, fd_cb, &r, NULL), REMEX_OK);
    assert_int_equal(evloop_run_once(loop, 1000, NULL), REMEX_OK);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.last, EVLOOP_WRITE);
    /* Switch to read only: nothing to read, so no call. */
    assert_int_equal(evloop_modify(loop, sv[0], EVLOOP_READ, NULL), REMEX_OK);
    assert_int_equal(evloop_run_once(loop, 0, NULL), REMEX_OK);
    assert_int_equal(r.calls, 1);
    assert_int_equal(write(sv[1], "y", 1), 1);
    assert_int_equal(evloop_modify(loop, sv[0], EVLOOP_READ | EVLOOP_WRITE, NULL), REMEX_OK);
    assert_int_equal(evloop_run_once(loop, 1000, NULL), REMEX_OK);
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.last, EVLOOP_READ | EVLOOP_WRITE);
    assert_int_equal(evloop_modify(loop, 999, EVLOOP_READ, NULL), REMEX_ENOTFOUND);
    evloop_unwatch(loop, sv[0]);
    close(sv[0]);
    close(sv[1]);
    evloop_free(loop);
}

static void test_watch_invalid(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct remex_error e;
    struct fdrec r = {0, 0, -1, 0};
    assert_int_equal(evloop_watch(loop, -1, EVLOOP_READ, fd_cb, &r, &e), REMEX_EINVAL);
    assert_int_equal(evloop_watch(loop, 0, 0, fd_cb, &r, &e), REMEX_EINVAL);
    assert_int_equal(evloop_watch(loop, 0, 0x10, fd_cb, &r, &e), REMEX_EINVAL);
    assert_int_equal(evloop_watch(loop, 0, EVLOOP_READ, NULL, &r, &e), REMEX_EINVAL);
    /* A closed fd number cannot be registered. */
    assert_int_equal(evloop_watch(loop, 4000, EVLOOP_READ, fd_cb, &r, &e), REMEX_ESYS);
    assert_int_equal(evloop_watching(loop, 4000), 0);
    evloop_free(loop);
}

static void test_unwatch_self_in_callback(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct fdrec r = {0, 0, -1, 0};
    int p[2];
    make_pipe(p);
    assert_int_equal(write(p[1], "z", 1), 1);
    assert_int_equal(evloop_watch(loop, p[0], EVLOOP_READ, fd_unwatch_self_cb, &r, NULL), REMEX_OK);
    assert_int_equal(evloop_run_once(loop, 1000, NULL), REMEX_OK);
    assert_int_equal(r.calls, 1);
    /* Still readable, but no longer watched: no more calls, and run() returns at once. */
    assert_int_equal(evloop_run_once(loop, 0, NULL), REMEX_OK);
    assert_int_equal(r.calls, 1);
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    close(p[0]);
    close(p[1]);
    evloop_free(loop);
}

static void test_unwatch_other_pending_in_batch(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    int a[2], b[2];
    struct fdrec ra = {0, 0, -1, 0}, rb = {0, 0, -1, 0};
    make_pipe(a);
    make_pipe(b);
    ra.other_fd = b[0];
    rb.other_fd = a[0];
    assert_int_equal(evloop_watch(loop, a[0], EVLOOP_READ, fd_cb, &ra, NULL), REMEX_OK);
    assert_int_equal(evloop_watch(loop, b[0], EVLOOP_READ, fd_cb, &rb, NULL), REMEX_OK);
    /* Both readable before the wait: both events come in one epoll batch. */
    assert_int_equal(write(a[1], "1", 1), 1);
    assert_int_equal(write(b[1], "2", 1), 1);
    assert_int_equal(evloop_run_once(loop, 1000, NULL), REMEX_OK);
    /* Whichever ran first removed (and closed) the other: exactly one call in all. */
    assert_int_equal(ra.calls + rb.calls, 1);
    if (ra.calls) {
        assert_int_equal(evloop_unwatch(loop, a[0]), REMEX_OK);
        close(a[0]);
    } else {
        assert_int_equal(evloop_unwatch(loop, b[0]), REMEX_OK);
        close(b[0]);
    }
    close(a[1]);
    close(b[1]);
    evloop_free(loop);
}

/* ---- timers ---- */

struct order {
    int *seen;
    int n;
    int cap;
};

struct tref {
    struct order *o;
    int idx;
};

static void order_cb(struct evloop *loop, uint64_t id, void *arg)
{
    struct tref *t = arg;
    (void)loop;
    (void)id;
    assert_true(t->o->n < t->o->cap);
    t->o->seen[t->o->n++] = t->idx;
}

static void run_until(struct evloop *loop, const int *counter, int want)
{
    for (int i = 0; i < MAX_SPINS && *counter < want; i++)
        assert_int_equal(evloop_run_once(loop, 100, NULL), REMEX_OK);
}

static void test_timer_order(void **state)
{
    (void)state;
    enum { N = 200 };
    struct evloop *loop = evloop_new(NULL);
    int seen[N], delay[N];
    struct order o = {seen, 0, N};
    struct tref refs[N];
    for (int i = 0; i < N; i++) {
        delay[i] = (i * 37) % 23;
        refs[i].o = &o;
        refs[i].idx = i;
        assert_true(evloop_timer_add(loop, (uint64_t)delay[i], 0, order_cb, &refs[i]) != 0);
    }
    run_until(loop, &o.n, N);
    assert_int_equal(o.n, N);
    /* Due order, and insertion order among timers due at the same ms. */
    for (int i = 1; i < N; i++) {
        int p = seen[i - 1], c = seen[i], dp = delay[p], dc = delay[c];
        assert_true(dp < dc || (dp == dc && p < c));
    }
    evloop_free(loop);
}

static void test_timer_not_early(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    int seen[1];
    struct order o = {seen, 0, 1};
    struct tref ref = {&o, 0};
    uint64_t t0, id;
    evloop_update_time(loop);
    t0 = evloop_now_ms(loop);
    id = evloop_timer_add(loop, 30, 0, order_cb, &ref);
    assert_true(id != 0);
    run_until(loop, &o.n, 1);
    assert_int_equal(o.n, 1);
    assert_true(evloop_now_ms(loop) >= t0 + 30);
    /* A fired one-shot is gone. */
    assert_int_equal(evloop_timer_cancel(loop, id), REMEX_ENOTFOUND);
    assert_int_equal(evloop_timer_rearm(loop, id, 1), REMEX_ENOTFOUND);
    evloop_free(loop);
}

struct rep {
    int fired;
    int stop_after;
    uint64_t id;
};

static void rep_cb(struct evloop *loop, uint64_t id, void *arg)
{
    struct rep *r = arg;
    assert_int_equal(id, r->id);
    if (++r->fired == r->stop_after)
        assert_int_equal(evloop_timer_cancel(loop, id), REMEX_OK);
}

static void test_repeating_timer(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct rep r = {0, 5, 0};
    struct evloop_stats st;
    r.id = evloop_timer_add(loop, 1, 2, rep_cb, &r);
    assert_true(r.id != 0);
    /* run() returns once the repeating timer cancelled itself: nothing left to wait for. */
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    assert_int_equal(r.fired, 5);
    evloop_get_stats(loop, &st);
    assert_int_equal(st.timers, 0);
    assert_int_equal(evloop_timer_cancel(loop, r.id), REMEX_ENOTFOUND);
    assert_int_equal(evloop_timer_add(loop, 0, EVLOOP_TIMER_MAX_MS + 1, rep_cb, &r), 0);
    assert_int_equal(evloop_timer_add(loop, 0, 0, NULL, &r), 0);
    evloop_free(loop);
}

struct canceller {
    uint64_t victim;
    int fired;
};

static void cancel_other_cb(struct evloop *loop, uint64_t id, void *arg)
{
    struct canceller *c = arg;
    (void)id;
    c->fired++;
    assert_int_equal(evloop_timer_cancel(loop, c->victim), REMEX_OK);
}

static void count_cb(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    (*(int *)arg)++;
}

static void test_timer_cancel(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    int victim_fired = 0, other = 0;
    struct canceller c = {0, 0};
    uint64_t a, keep;
    /* A pending timer cancelled before it is due never fires. */
    a = evloop_timer_add(loop, 5, 0, count_cb, &victim_fired);
    keep = evloop_timer_add(loop, 10, 0, count_cb, &other);
    assert_int_equal(evloop_timer_cancel(loop, a), REMEX_OK);
    assert_int_equal(evloop_timer_cancel(loop, a), REMEX_ENOTFOUND);
    assert_int_equal(evloop_timer_cancel(loop, 0), REMEX_ENOTFOUND);
    assert_int_equal(evloop_timer_cancel(loop, 0xdeadbeef00000001ull), REMEX_ENOTFOUND);
    /* Both due in the same pass: the first cancels the second from its callback. */
    assert_true(evloop_timer_add(loop, 3, 0, cancel_other_cb, &c) != 0);
    c.victim = evloop_timer_add(loop, 3, 0, count_cb, &victim_fired);
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    assert_int_equal(c.fired, 1);
    assert_int_equal(victim_fired, 0);
    assert_int_equal(other, 1);
    (void)keep;
    evloop_free(loop);
}

struct rearmer {
    int fired;
};

static void rearm_self_cb(struct evloop *loop, uint64_t id, void *arg)
{
    struct rearmer *r = arg;
    if (++r->fired < 3)
        assert_int_equal(evloop_timer_rearm(loop, id, 0), REMEX_OK);
}

static void test_timer_rearm(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct rearmer r = {0};
    int fired = 0;
    uint64_t id = evloop_timer_add(loop, 0, 0, count_cb, &fired);
    /* curl-style: push a pending timer later, keeping its id. */
    assert_int_equal(evloop_timer_rearm(loop, id, 100000), REMEX_OK);
    assert_int_equal(evloop_run_once(loop, 0, NULL), REMEX_OK);
    assert_int_equal(fired, 0);
    assert_int_equal(evloop_timer_rearm(loop, id, 0), REMEX_OK);
    assert_int_equal(evloop_run_once(loop, 0, NULL), REMEX_OK);
    assert_int_equal(fired, 1);
    /* A one-shot re-armed from its own callback with delay 0 fires once per pass. */
    assert_true(evloop_timer_add(loop, 0, 0, rearm_self_cb, &r) != 0);
    assert_int_equal(evloop_run_once(loop, 0, NULL), REMEX_OK);
    assert_int_equal(r.fired, 1);
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    assert_int_equal(r.fired, 3);
    evloop_free(loop);
}

struct big {
    int *delay;
    int fired;
    int last;
    int bad;
};

static void big_cb(struct evloop *loop, uint64_t id, void *arg)
{
    struct big *b = arg;
    (void)loop;
    (void)id;
    b->fired++;
}

struct big_ref {
    struct big *b;
    int idx;
};

static void big_order_cb(struct evloop *loop, uint64_t id, void *arg)
{
    struct big_ref *r = arg;
    struct big *b = r->b;
    (void)loop;
    (void)id;
    if (b->last >= 0) {
        int p = b->last, c = r->idx, dp = b->delay[p], dc = b->delay[c];
        if (!(dp < dc || (dp == dc && p < c)))
            b->bad++;
    }
    b->last = r->idx;
    b->fired++;
}

static void test_100k_timers(void **state)
{
    (void)state;
    enum { N = 100000 };
    struct evloop *loop = evloop_new(NULL);
    struct big b = {NULL, 0, -1, 0};
    struct big_ref *refs = calloc(N, sizeof(*refs));
    struct evloop_stats st;
    size_t slots;
    uint32_t x = 12345;

    b.delay = calloc(N, sizeof(int));
    assert_non_null(refs);
    assert_non_null(b.delay);
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        b.delay[i] = (int)((x >> 16) % 50);
        refs[i].b = &b;
        refs[i].idx = i;
        assert_true(evloop_timer_add(loop, (uint64_t)b.delay[i], 0, big_order_cb, &refs[i]) != 0);
    }
    evloop_get_stats(loop, &st);
    assert_int_equal(st.timers, N);
    slots = st.timer_slots;
    assert_true(slots >= N && slots <= 2 * (size_t)N);
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    assert_int_equal(b.fired, N);
    assert_int_equal(b.bad, 0);
    evloop_get_stats(loop, &st);
    assert_int_equal(st.timers, 0);
    /* A second round reuses the slots: memory stays bounded by the peak. */
    b.fired = 0;
    for (int i = 0; i < N; i++)
        assert_true(evloop_timer_add(loop, (uint64_t)(i % 7), 0, big_cb, &b) != 0);
    evloop_get_stats(loop, &st);
    assert_int_equal(st.timer_slots, slots);
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    assert_int_equal(b.fired, N);
    free(refs);
    free(b.delay);
    evloop_free(loop);
}

static void add_zero_cb(struct evloop *loop, uint64_t id, void *arg)
{
    int *n = arg;
    (void)id;
    (*n)++;
    assert_true(evloop_timer_add(loop, 0, 0, count_cb, n) != 0);
}

static void test_timer_added_in_callback_waits_a_pass(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    int n = 0;
    assert_true(evloop_timer_add(loop, 0, 0, add_zero_cb, &n) != 0);
    assert_int_equal(evloop_run_once(loop, 0, NULL), REMEX_OK);
    assert_int_equal(n, 1);
    assert_int_equal(evloop_run_once(loop, 0, NULL), REMEX_OK);
    assert_int_equal(n, 2);
    evloop_free(loop);
}

/* ---- signals, stop, time ---- */

struct sigrec {
    int count;
    int signo;
};

static void sig_cb(struct evloop *loop, int signo, void *arg)
{
    struct sigrec *s = arg;
    s->count++;
    s->signo = signo;
    evloop_stop(loop);
}

static void test_signalfd(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct sigrec s = {0, 0};
    struct remex_error e;
    sigset_t cur;
    int guard = 0;
    uint64_t id;
    assert_int_equal(evloop_signal(loop, SIGKILL, sig_cb, &s, &e), REMEX_EINVAL);
    assert_int_equal(evloop_signal(loop, 0, sig_cb, &s, &e), REMEX_EINVAL);
    assert_int_equal(evloop_signal(loop, SIGUSR1, sig_cb, &s, &e), REMEX_OK);
    assert_int_equal(evloop_signal(loop, SIGUSR2, sig_cb, &s, &e), REMEX_OK);
    sigprocmask(SIG_BLOCK, NULL, &cur);
    assert_true(sigismember(&cur, SIGUSR1));
    /* A guard timer keeps a broken signal path from hanging the test. */
    id = evloop_timer_add(loop, 10000, 0, count_cb, &guard);
    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.signo, SIGUSR1);
    assert_int_equal(raise(SIGUSR2), 0);
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.signo, SIGUSR2);
    assert_int_equal(guard, 0);
    /* Removing the callback: the signal is read and dropped. */
    assert_int_equal(evloop_signal(loop, SIGUSR1, NULL, NULL, &e), REMEX_OK);
    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(evloop_run_once(loop, 100, NULL), REMEX_OK);
    assert_int_equal(s.count, 2);
    evloop_timer_cancel(loop, id);
    evloop_free(loop);
}

/* A signal ignored on entry (background jobs inherit SIGINT ignored) still
 * reaches the loop: a blocked signal is queued whatever its disposition. */
static void test_signal_ignored_on_entry(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct sigrec s = {0, 0};
    struct remex_error e;
    int guard = 0;
    signal(SIGWINCH, SIG_IGN);
    assert_int_equal(evloop_signal(loop, SIGWINCH, sig_cb, &s, &e), REMEX_OK);
    uint64_t id = evloop_timer_add(loop, 2000, 0, count_cb, &guard);
    assert_int_equal(raise(SIGWINCH), 0);
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.signo, SIGWINCH);
    assert_int_equal(guard, 0);
    evloop_timer_cancel(loop, id);
    evloop_free(loop);
}

struct stopper {
    int ticks;
};

static void stop_cb(struct evloop *loop, uint64_t id, void *arg)
{
    struct stopper *s = arg;
    (void)id;
    if (++s->ticks == 3)
        evloop_stop(loop);
}

static void test_stop(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct stopper s = {0};
    struct evloop_stats st;
    uint64_t id = evloop_timer_add(loop, 0, 1, stop_cb, &s);
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    assert_int_equal(s.ticks, 3);
    /* The repeating timer is still pending: run() again continues it. */
    evloop_get_stats(loop, &st);
    assert_int_equal(st.timers, 1);
    s.ticks = 0;
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    assert_int_equal(s.ticks, 3);
    assert_int_equal(evloop_timer_cancel(loop, id), REMEX_OK);
    /* Nothing left: run() returns at once. */
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    evloop_free(loop);
}

static void test_now_cached(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    uint64_t a = evloop_now_ms(loop), b;
    usleep(20000);
    assert_int_equal(evloop_now_ms(loop), a); /* cached until the loop wakes */
    assert_int_equal(evloop_run_once(loop, 0, NULL), REMEX_OK);
    b = evloop_now_ms(loop);
    assert_true(b >= a + 20);
    evloop_free(loop);
    evloop_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipe_readable),
        cmocka_unit_test(test_write_watch_and_modify),
        cmocka_unit_test(test_watch_invalid),
        cmocka_unit_test(test_unwatch_self_in_callback),
        cmocka_unit_test(test_unwatch_other_pending_in_batch),
        cmocka_unit_test(test_timer_order),
        cmocka_unit_test(test_timer_not_early),
        cmocka_unit_test(test_repeating_timer),
        cmocka_unit_test(test_timer_cancel),
        cmocka_unit_test(test_timer_rearm),
        cmocka_unit_test(test_100k_timers),
        cmocka_unit_test(test_timer_added_in_callback_waits_a_pass),
        cmocka_unit_test(test_signalfd),
        cmocka_unit_test(test_signal_ignored_on_entry),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_now_cached),
    };
    return cmocka_run_group_tests_name("evloop", tests, NULL, NULL);
}
