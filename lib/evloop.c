/* evloop: epoll fd watches, a min-heap of monotonic timers, signalfd signals. */
#include "remex/evloop.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define EVLOOP_BATCH    256
#define TIMER_SLOTS_MAX (1u << 30)
#define TIMER_NONE      UINT32_MAX

/* One watch per fd, indexed by fd. serial tags epoll events so stale ones are dropped. */
struct watch {
    void (*cb)(struct evloop *loop, int fd, unsigned events, void *arg);
    void *arg;
    unsigned mask; /* 0: not watched */
    uint32_t serial;
};

enum timer_state { T_FREE = 0, T_PENDING, T_FIRING, T_CANCELLED };

/*
 * A timer slot. Pending timers are in the heap (heap_pos valid); the one being
 * fired is out of the heap until its callback returns. Free slots are chained
 * through next_free. id = gen << 32 | slot index.
 */
struct timer {
    uint64_t when;
    uint64_t seq;
    uint64_t interval;
    void (*cb)(struct evloop *loop, uint64_t id, void *arg);
    void *arg;
    uint32_t heap_pos;
    uint32_t gen;
    uint32_t next_free;
    uint8_t state;
};

struct sighandler {
    void (*cb)(struct evloop *loop, int signo, void *arg);
    void *arg;
};

struct evloop {
    int epfd;
    int sigfd;
    int stop;
    uint64_t now;
    uint32_t serial;

    struct watch *watches;
    size_t nwatch_slots;
    size_t nwatches;

    struct timer *timers;
    uint32_t ntimer_slots;
    uint32_t free_head;
    uint32_t *heap;
    uint32_t heap_len;
    uint64_t next_seq;

    sigset_t sigs;
    struct sighandler sighandlers[NSIG];
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct evloop *evloop_new(struct remex_error *e)
{
    struct evloop *loop = calloc(1, sizeof(*loop));
    if (loop == NULL) {
        remex_seterr(e, REMEX_ENOMEM, "evloop: out of memory");
        return NULL;
    }
    loop->sigfd = -1;
    loop->free_head = TIMER_NONE;
    sigemptyset(&loop->sigs);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        remex_errno(e, REMEX_ESYS, "evloop: epoll_create1");
        free(loop);
        return NULL;
    }
    loop->now = mono_ms();
    return loop;
}

void evloop_free(struct evloop *loop)
{
    if (loop == NULL)
        return;
    if (loop->sigfd >= 0)
        close(loop->sigfd);
    close(loop->epfd);
    free(loop->watches);
    free(loop->timers);
    free(loop->heap);
    free(loop);
}

uint64_t evloop_now_ms(const struct evloop *loop)
{
    return loop->now;
}

void evloop_update_time(struct evloop *loop)
{
    loop->now = mono_ms();
}

void evloop_stop(struct evloop *loop)
{
    loop->stop = 1;
}

void evloop_get_stats(const struct evloop *loop, struct evloop_stats *st)
{
    st->watches = loop->nwatches;
    st->timers = loop->heap_len;
    st->timer_slots = loop->ntimer_slots;
}

/* ---- fd watches ---- */

static remex_err watch_grow(struct evloop *loop, int fd)
{
    size_t want = loop->nwatch_slots ? loop->nwatch_slots : 64;
    struct watch *w;

    if ((size_t)fd < loop->nwatch_slots)
        return REMEX_OK;
    while (want <= (size_t)fd)
        want *= 2;
    w = realloc(loop->watches, want * sizeof(*w));
    if (w == NULL)
        return REMEX_ENOMEM;
    memset(w + loop->nwatch_slots, 0, (want - loop->nwatch_slots) * sizeof(*w));
    loop->watches = w;
    loop->nwatch_slots = want;
    return REMEX_OK;
}

static int epoll_set(struct evloop *loop, int op, int fd, unsigned mask, uint32_t serial)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = ((mask & EVLOOP_READ) ? EPOLLIN | EPOLLRDHUP : 0u) |
                ((mask & EVLOOP_WRITE) ? EPOLLOUT : 0u);
    ev.data.u64 = ((uint64_t)serial << 32) | (uint32_t)fd;
    return epoll_ctl(loop->epfd, op, fd, &ev);
}

/* Adds or modifies the kernel registration, recovering from a close+reuse behind our back. */
static int epoll_register(struct evloop *loop, int fd, int known, unsigned mask, uint32_t serial)
{
    int rc = epoll_set(loop, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, mask, serial);
    if (rc < 0 && known && errno == ENOENT)
        rc = epoll_set(loop, EPOLL_CTL_ADD, fd, mask, serial);
    else if (rc < 0 && !known && errno == EEXIST)
        rc = epoll_set(loop, EPOLL_CTL_MOD, fd, mask, serial);
    return rc;
}

static int mask_ok(unsigned events)
{
    return events != 0 && (events & ~(EVLOOP_READ | EVLOOP_WRITE)) == 0;
}

remex_err evloop_watch(struct evloop *loop, int fd, unsigned events,
                       void (*cb)(struct evloop *loop, int fd, unsigned events, void *arg),
                       void *arg, struct remex_error *e)
{
    struct watch *w;
    uint32_t serial;
    int known;

    if (fd < 0 || cb == NULL || !mask_ok(events))
        return remex_seterr(e, REMEX_EINVAL, "evloop_watch: invalid fd %d or mask 0x%x", fd,
                            events);
    if (watch_grow(loop, fd) != REMEX_OK)
        return remex_seterr(e, REMEX_ENOMEM, "evloop_watch: out of memory");
    w = &loop->watches[fd];
    known = w->mask != 0;
    /* A new serial: events fetched for the old watch are not delivered to the new one. */
    serial = ++loop->serial;
    if (epoll_register(loop, fd, known, events, serial) < 0)
        return remex_errno(e, REMEX_ESYS, "evloop_watch: epoll_ctl fd %d", fd);
    if (!known)
        loop->nwatches++;
    w->cb = cb;
    w->arg = arg;
    w->mask = events;
    w->serial = serial;
    return REMEX_OK;
}

remex_err evloop_modify(struct evloop *loop, int fd, unsigned events, struct remex_error *e)
{
    struct watch *w;

    if (!mask_ok(events))
        return remex_seterr(e, REMEX_EINVAL, "evloop_modify: invalid mask 0x%x", events);
    if (fd < 0 || (size_t)fd >= loop->nwatch_slots || loop->watches[fd].mask == 0)
        return remex_seterr(e, REMEX_ENOTFOUND, "evloop_modify: fd %d not watched", fd);
    w = &loop->watches[fd];
    if (w->mask == events)
        return REMEX_OK;
    if (epoll_register(loop, fd, 1, events, w->serial) < 0)
        return remex_errno(e, REMEX_ESYS, "evloop_modify: epoll_ctl fd %d", fd);
    w->mask = events;
    return REMEX_OK;
}

remex_err evloop_unwatch(struct evloop *loop, int fd)
{
    struct watch *w;

    if (fd < 0 || (size_t)fd >= loop->nwatch_slots || loop->watches[fd].mask == 0)
        return REMEX_ENOTFOUND;
    w = &loop->watches[fd];
    /* ENOENT/EBADF: the fd was closed already, the kernel dropped it. */
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    memset(w, 0, sizeof(*w));
    loop->nwatches--;
    return REMEX_OK;
}

unsigned evloop_watching(const struct evloop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->nwatch_slots)
        return 0;
    return loop->watches[fd].mask;
}

/* ---- timers: binary min-heap of slot indices ordered by (when, seq) ---- */

static int timer_less(const struct evloop *loop, uint32_t a, uint32_t b)
{
    const struct timer *ta = &loop->timers[a], *tb = &loop->timers[b];
    return ta->when < tb->when || (ta->when == tb->when && ta->seq < tb->seq);
}

static void heap_place(struct evloop *loop, uint32_t pos, uint32_t slot)
{
    loop->heap[pos] = slot;
    loop->timers[slot].heap_pos = pos;
}

static void heap_up(struct evloop *loop, uint32_t pos)
{
    uint32_t slot = loop->heap[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!timer_less(loop, slot, loop->heap[parent]))
            break;
        heap_place(loop, pos, loop->heap[parent]);
        pos = parent;
    }
    heap_place(loop, pos, slot);
}

static void heap_down(struct evloop *loop, uint32_t pos)
{
    uint32_t slot = loop->heap[pos], n = loop->heap_len;
    for (;;) {
        uint32_t c = 2 * pos + 1;
        if (c >= n)
            break;
        if (c + 1 < n && timer_less(loop, loop->heap[c + 1], loop->heap[c]))
            c++;
        if (!timer_less(loop, loop->heap[c], slot))
            break;
        heap_place(loop, pos, loop->heap[c]);
        pos = c;
    }
    heap_place(loop, pos, slot);
}

/* The heap has room for every slot, so a push never allocates. */
static void heap_push(struct evloop *loop, uint32_t slot)
{
    uint32_t pos = loop->heap_len++;
    heap_place(loop, pos, slot);
    heap_up(loop, pos);
}

static void heap_remove(struct evloop *loop, uint32_t pos)
{
    uint32_t last = loop->heap[--loop->heap_len];
    if (pos == loop->heap_len)
        return;
    heap_place(loop, pos, last);
    if (pos > 0 && timer_less(loop, last, loop->heap[(pos - 1) / 2]))
        heap_up(loop, pos);
    else
        heap_down(loop, pos);
}

static remex_err timer_grow(struct evloop *loop)
{
    uint32_t old = loop->ntimer_slots, want = old ? old * 2 : 64;
    struct timer *t;
    uint32_t *h;

    if (old >= TIMER_SLOTS_MAX)
        return REMEX_ETOOBIG;
    t = realloc(loop->timers, (size_t)want * sizeof(*t));
    if (t == NULL)
        return REMEX_ENOMEM;
    loop->timers = t;
    h = realloc(loop->heap, (size_t)want * sizeof(*h));
    if (h == NULL)
        return REMEX_ENOMEM; /* timers grew but ntimer_slots did not: still consistent */
    loop->heap = h;
    memset(t + old, 0, (size_t)(want - old) * sizeof(*t));
    /* Chain new slots so that the lowest index is handed out first. */
    for (uint32_t i = want; i > old; i--) {
        t[i - 1].next_free = loop->free_head;
        loop->free_head = i - 1;
    }
    loop->ntimer_slots = want;
    return REMEX_OK;
}

static uint64_t timer_id(const struct evloop *loop, uint32_t slot)
{
    return ((uint64_t)loop->timers[slot].gen << 32) | slot;
}

/* The slot of a live timer id, or TIMER_NONE. */
static uint32_t timer_lookup(const struct evloop *loop, uint64_t id)
{
    uint32_t slot = (uint32_t)(id & 0xffffffffu), gen = (uint32_t)(id >> 32);
    if (slot >= loop->ntimer_slots || gen == 0)
        return TIMER_NONE;
    if (loop->timers[slot].gen != gen || loop->timers[slot].state == T_FREE)
        return TIMER_NONE;
    return slot;
}

static void timer_release(struct evloop *loop, uint32_t slot)
{
    struct timer *t = &loop->timers[slot];
    t->state = T_FREE;
    t->cb = NULL;
    t->arg = NULL;
    t->next_free = loop->free_head;
    loop->free_head = slot;
}

uint64_t evloop_timer_add(struct evloop *loop, uint64_t delay_ms, uint64_t interval_ms,
                          void (*cb)(struct evloop *loop, uint64_t id, void *arg), void *arg)
{
    uint32_t slot;
    struct timer *t;

    if (cb == NULL || delay_ms > EVLOOP_TIMER_MAX_MS || interval_ms > EVLOOP_TIMER_MAX_MS)
        return 0;
    if (loop->free_head == TIMER_NONE && timer_grow(loop) != REMEX_OK)
        return 0;
    slot = loop->free_head;
    t = &loop->timers[slot];
    loop->free_head = t->next_free;
    t->gen = t->gen + 1 ? t->gen + 1 : 1;
    t->when = loop->now + delay_ms;
    t->seq = loop->next_seq++;
    t->interval = interval_ms;
    t->cb = cb;
    t->arg = arg;
    t->state = T_PENDING;
    heap_push(loop, slot);
    return timer_id(loop, slot);
}

remex_err evloop_timer_cancel(struct evloop *loop, uint64_t id)
{
    uint32_t slot = timer_lookup(loop, id);
    struct timer *t;

    if (slot == TIMER_NONE)
        return REMEX_ENOTFOUND;
    t = &loop->timers[slot];
    switch (t->state) {
    case T_PENDING:
        heap_remove(loop, t->heap_pos);
        timer_release(loop, slot);
        return REMEX_OK;
    case T_FIRING:
        t->state = T_CANCELLED; /* released when its callback returns */
        return REMEX_OK;
    default:
        return REMEX_ENOTFOUND;
    }
}

remex_err evloop_timer_rearm(struct evloop *loop, uint64_t id, uint64_t delay_ms)
{
    uint32_t slot = timer_lookup(loop, id);
    struct timer *t;

    if (slot == TIMER_NONE)
        return REMEX_ENOTFOUND;
    if (delay_ms > EVLOOP_TIMER_MAX_MS)
        return REMEX_EINVAL;
    t = &loop->timers[slot];
    if (t->state == T_CANCELLED)
        return REMEX_ENOTFOUND;
    if (t->state == T_PENDING)
        heap_remove(loop, t->heap_pos);
    t->when = loop->now + delay_ms;
    t->seq = loop->next_seq++;
    t->state = T_PENDING;
    heap_push(loop, slot);
    return REMEX_OK;
}

/* Fires timers due now that existed before this pass started. */
static void timers_process(struct evloop *loop)
{
    uint64_t seq_limit = loop->next_seq;

    while (loop->heap_len > 0) {
        uint32_t slot = loop->heap[0];
        struct timer *t = &loop->timers[slot];
        uint64_t id;

        if (t->when > loop->now || t->seq >= seq_limit)
            break;
        heap_remove(loop, 0);
        t->state = T_FIRING;
        id = timer_id(loop, slot);
        t->cb(loop, id, t->arg);
        t = &loop->timers[slot]; /* the callback may have grown the slot array */
        if (t->state == T_PENDING)
            continue; /* re-armed by its callback */
        if (t->state == T_FIRING && t->interval > 0) {
            t->when += t->interval;
            if (t->when <= loop->now)
                t->when = loop->now + t->interval;
            t->seq = loop->next_seq++;
            t->state = T_PENDING;
            heap_push(loop, slot);
            continue;
        }
        timer_release(loop, slot);
    }
}

/* ---- signals ---- */

static void signals_dispatch(struct evloop *loop, int fd, unsigned events, void *arg)
{
    struct signalfd_siginfo si;
    (void)events;
    (void)arg;

    for (int i = 0; i < 64; i++) {
        ssize_t n = read(fd, &si, sizeof(si));
        if (n != (ssize_t)sizeof(si))
            return; /* EAGAIN: drained */
        if (si.ssi_signo < NSIG && loop->sighandlers[si.ssi_signo].cb != NULL)
            loop->sighandlers[si.ssi_signo].cb(loop, (int)si.ssi_signo,
                                               loop->sighandlers[si.ssi_signo].arg);
    }
}

remex_err evloop_signal(struct evloop *loop, int signo,
                        void (*cb)(struct evloop *loop, int signo, void *arg), void *arg,
                        struct remex_error *e)
{
    sigset_t one, next;
    int fd;
    remex_err rc;

    if (signo <= 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP)
        return remex_seterr(e, REMEX_EINVAL, "evloop_signal: signal %d cannot be handled", signo);
    next = loop->sigs;
    sigaddset(&next, signo);
    sigemptyset(&one);
    sigaddset(&one, signo);
    if (sigprocmask(SIG_BLOCK, &one, NULL) < 0)
        return remex_errno(e, REMEX_ESYS, "evloop_signal: sigprocmask");
    fd = signalfd(loop->sigfd, &next, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return remex_errno(e, REMEX_ESYS, "evloop_signal: signalfd");
    if (loop->sigfd < 0) {
        rc = evloop_watch(loop, fd, EVLOOP_READ, signals_dispatch, NULL, e);
        if (rc != REMEX_OK) {
            close(fd);
            return rc;
        }
        loop->sigfd = fd;
    }
    loop->sigs = next;
    loop->sighandlers[signo].cb = cb;
    loop->sighandlers[signo].arg = cb ? arg : NULL;
    return REMEX_OK;
}

/* ---- the loop ---- */

static int wait_timeout(const struct evloop *loop, int timeout_ms)
{
    uint64_t due, left;
    if (loop->heap_len == 0)
        return timeout_ms;
    due = loop->timers[loop->heap[0]].when;
    left = due > loop->now ? due - loop->now : 0;
    if (left > INT32_MAX)
        left = INT32_MAX;
    if (timeout_ms < 0 || (uint64_t)timeout_ms > left)
        return (int)left;
    return timeout_ms;
}

static void dispatch(struct evloop *loop, const struct epoll_event *ev)
{
    int fd = (int)(uint32_t)(ev->data.u64 & 0xffffffffu);
    uint32_t serial = (uint32_t)(ev->data.u64 >> 32);
    struct watch *w;
    unsigned got = 0;

    if ((size_t)fd >= loop->nwatch_slots)
        return;
    w = &loop->watches[fd];
    if (w->mask == 0 || w->serial != serial)
        return; /* removed or replaced earlier in this batch */
    if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        got |= EVLOOP_READ;
    if (ev->events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        got |= EVLOOP_WRITE;
    got &= w->mask;
    if (ev->events & (EPOLLHUP | EPOLLERR))
        got |= EVLOOP_ERROR;
    if (got != 0)
        w->cb(loop, fd, got, w->arg);
}

remex_err evloop_run_once(struct evloop *loop, int timeout_ms, struct remex_error *e)
{
    struct epoll_event evs[EVLOOP_BATCH];
    int n;

    loop->now = mono_ms();
    n = epoll_wait(loop->epfd, evs, EVLOOP_BATCH, wait_timeout(loop, timeout_ms));
    if (n < 0 && errno != EINTR)
        return remex_errno(e, REMEX_ESYS, "evloop: epoll_wait");
    loop->now = mono_ms();
    for (int i = 0; i < n; i++)
        dispatch(loop, &evs[i]);
    timers_process(loop);
    return REMEX_OK;
}

remex_err evloop_run(struct evloop *loop, struct remex_error *e)
{
    loop->stop = 0;
    while (!loop->stop) {
        remex_err rc;
        if (loop->nwatches == 0 && loop->heap_len == 0)
            break;
        rc = evloop_run_once(loop, -1, e);
        if (rc != REMEX_OK)
            return rc;
    }
    loop->stop = 0;
    return REMEX_OK;
}
