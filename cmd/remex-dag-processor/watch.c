/*
 * inotify on local bundles: a change in a watched folder schedules a scan of
 * its bundle after a short quiet period (WATCH_DEBOUNCE_MS), so that an editor
 * saving several files costs one scan. Watched: each bundle's root and every
 * folder holding a file of the last scan (a new folder is seen through its
 * parent; a file in a folder made after the last scan waits for the periodic
 * rescan, which remains the fallback for everything inotify cannot see:
 * network file systems, watch limits, queue overflows are rescanned at once).
 * Dot-files are ignored, as the scan ignores them.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "dagproc.h"
#include "remex/evloop.h"
#include "remex/log.h"
#include "remex/role.h"

#define WATCH_DEBOUNCE_MS 250
#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF |       \
     IN_ATTRIB)

static void debounce_fire(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct dp_bundle *b = arg;
    b->watch_timer = 0;
    log_debug("bundle %s: changed on disk: rescanning", b->name);
    b->pending = 1;
    dp_kick(b->dp);
}

static void touched(struct dp_bundle *b)
{
    if (b->watch_timer == 0 && b->dp->r->state < ROLE_DRAINING)
        b->watch_timer = evloop_timer_add(b->dp->loop, WATCH_DEBOUNCE_MS, 0, debounce_fire, b);
}

static void on_events(struct evloop *loop, int fd, unsigned events, void *arg)
{
    (void)loop;
    (void)events;
    struct dagproc *dp = arg;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                for (size_t i = 0; i < dp->nb; i++)
                    if (!dp->b[i].is_git)
                        touched(&dp->b[i]);
                continue;
            }
            if (ev->len > 0 && ev->name[0] == '.')
                continue;
            for (size_t i = 0; i < dp->nwatch; i++)
                if (dp->watch[i].wd == ev->wd)
                    touched(dp->watch[i].b);
        }
    }
}

remex_err dp_watch_start(struct dagproc *dp, struct remex_error *e)
{
    dp->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (dp->ifd < 0)
        return remex_errno(e, REMEX_ESYS, "inotify_init1");
    return evloop_watch(dp->loop, dp->ifd, EVLOOP_READ, on_events, dp, e);
}

static void add_one(struct dp_bundle *b, const char *dir)
{
    struct dagproc *dp = b->dp;
    int wd = inotify_add_watch(dp->ifd, dir, WATCH_MASK);
    if (wd < 0) {
        if (!b->watch_warned++)
            log_warn("bundle %s: cannot watch %s (%s): changes are seen by the periodic rescan",
                     b->name, dir, strerror(errno));
        return;
    }
    for (size_t i = 0; i < dp->nwatch; i++)
        if (dp->watch[i].wd == wd && dp->watch[i].b == b)
            return;
    if (dp->nwatch == dp->capwatch) {
        size_t nc = dp->capwatch ? dp->capwatch * 2 : 64;
        struct dp_watch *v = realloc(dp->watch, nc * sizeof(*v));
        if (v == NULL)
            return;
        dp->watch = v;
        dp->capwatch = nc;
    }
    dp->watch[dp->nwatch++] = (struct dp_watch){.wd = wd, .b = b};
}

void dp_watch_bundle(struct dp_bundle *b)
{
    char dir[PATH_MAX], last[PATH_MAX] = "";
    if (b->dp->ifd < 0 || b->is_git)
        return;
    add_one(b, b->root);
    for (size_t i = 0; i < b->cur.files.n; i++) {
        const char *rel = b->cur.files.v[i].rel, *slash = strrchr(rel, '/');
        if (slash == NULL)
            continue;
        int n = snprintf(dir, sizeof(dir), "%s/%.*s", b->root, (int)(slash - rel), rel);
        if (n < 0 || (size_t)n >= sizeof(dir) || strcmp(dir, last) == 0)
            continue; /* files are sorted: a folder's files are together */
        memcpy(last, dir, (size_t)n + 1);
        add_one(b, dir);
    }
}

void dp_watch_stop(struct dagproc *dp)
{
    for (size_t i = 0; i < dp->nb; i++)
        if (dp->b[i].watch_timer)
            evloop_timer_cancel(dp->loop, dp->b[i].watch_timer);
    if (dp->ifd >= 0) {
        evloop_unwatch(dp->loop, dp->ifd);
        close(dp->ifd);
        dp->ifd = -1;
    }
    free(dp->watch);
    dp->watch = NULL;
    dp->nwatch = dp->capwatch = 0;
}
