/*
 * Floor of the triggerer's timer benchmark: the same timer load on a bare
 * evloop, without the plane, JSON or reports. N timers, of which FIRE are due
 * spread evenly over one second starting 1 s from now and the rest an hour
 * later; each due time is a wall-clock instant turned into a loop delay the
 * way remex-triggerer does it. Prints lateness p50/p99 (fire time minus due
 * time, CLOCK_REALTIME) and the process's RSS while holding them.
 *
 *   _timer_floor [N [FIRE]]     (default 100000 10000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "remex/evloop.h"

struct tm_ent {
    int64_t due_us;
};

static int64_t *late;
static size_t nlate, want;

static int64_t real_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void fired(struct evloop *loop, uint64_t id, void *arg)
{
    (void)id;
    struct tm_ent *t = arg;
    late[nlate++] = real_us() - t->due_us;
    if (nlate == want)
        evloop_stop(loop);
}

static int cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    want = argc > 2 ? strtoul(argv[2], NULL, 10) : 10000;
    if (want > n || n == 0)
        return 2;
    struct remex_error e;
    struct evloop *loop = evloop_new(&e);
    struct tm_ent *ents = calloc(n, sizeof(*ents));
    late = calloc(want, sizeof(*late));
    if (!loop || !ents || !late)
        return 1;
    int64_t t0 = real_us() + 1000000;
    for (size_t i = 0; i < n; i++) {
        ents[i].due_us = i < want ? t0 + (int64_t)(i * 1000000 / want) : t0 + 3600LL * 1000000;
        evloop_update_time(loop);
        int64_t d = ents[i].due_us - real_us();
        uint64_t delay = d <= 0 ? 0 : (uint64_t)((d + 999) / 1000);
        if (!evloop_timer_add(loop, delay, 0, fired, &ents[i]))
            return 1;
    }
    long held_kb = rss_kb();
    evloop_run(loop, &e);
    qsort(late, nlate, sizeof(*late), cmp);
    printf("timer floor (bare evloop, %zu held, %zu due within one second): lateness p50 %.2f ms, "
           "p99 %.2f ms, max %.2f ms; RSS %.1f MiB\n",
           n, want, late[nlate / 2] / 1000.0, late[nlate * 99 / 100] / 1000.0,
           late[nlate - 1] / 1000.0, held_kb / 1024.0);
    evloop_free(loop);
    free(ents);
    free(late);
    return 0;
}
