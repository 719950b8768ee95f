/*
 * file and object_key triggers: the parent folder of each path is watched
 * through one inotify fd on the loop (one watch per folder, shared by the
 * triggers in it), and every trigger is also checked at its poke interval,
 * for file systems that send no inotify events (NFS, SMB, FUSE) and folders
 * that do not exist yet. A check is one stat(2), or one glob(3) of one
 * folder for patterns: local metadata calls, never the network.
 *
 * object_key triggers on a file:// object store (xcom.store) are watched
 * here: key K is the file <store>/K, prefix P matches the objects <store>/P*.
 * Remote stores (s3://, az://, gs://) are checked by store.c.
 */
#include <errno.h>
#include <fnmatch.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/evloop.h"
#include "remex/log.h"
#include "remex/timeutil.h"
#include "triggerer.h"

#define WATCH_MASK (IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB)

struct fwatch {
    struct fwatch *next;
    int wd;
    struct trig *list; /* triggers whose path is in this folder (fw_next chain) */
};

static int has_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

/* 1 when g's path (or one match of its pattern) is there: fires g. */
static int check(struct trg *t, struct trig *g)
{
    const char *p = g->file_path;
    char found[PATH_MAX];
    struct stat st;
    int hit = 0;
    if (!has_glob(p)) {
        hit = stat(p, &st) == 0 && (!g->spec.non_empty || st.st_size > 0);
        if (hit)
            snprintf(found, sizeof(found), "%s", p);
    } else {
        glob_t gl;
        if (glob(p, GLOB_NOSORT, NULL, &gl) == 0) {
            for (size_t i = 0; i < gl.gl_pathc && !hit; i++)
                if (stat(gl.gl_pathv[i], &st) == 0 && S_ISREG(st.st_mode) &&
                    (!g->spec.non_empty || st.st_size > 0)) {
                    hit = 1;
                    snprintf(found, sizeof(found), "%s", gl.gl_pathv[i]);
                }
        }
        globfree(&gl);
    }
    if (!hit)
        return 0;
    char mtime[40];
    timeutil_rfc3339_format((int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000, 1,
                            mtime, sizeof(mtime));
    json_t *pl =
        json_pack("{ss sI ss}", "path", found, "size", (json_int_t)st.st_size, "mtime", mtime);
    if (g->spec.kind == TRIGSPEC_OBJECT_KEY && t->store_dir)
        json_object_set_new(pl, "key", json_string(found + strlen(t->store_dir) + 1));
    trig_fire(t, g, pl);
    return 1;
}

static void on_inotify(struct evloop *loop, int fd, unsigned events, void *arg)
{
    (void)loop;
    (void)events;
    struct trg *t = arg;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (int rounds = 0; rounds < 64; rounds++) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            return; /* EAGAIN: drained */
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            struct fwatch *w = t->watches;
            while (w && w->wd != ev->wd)
                w = w->next;
            if (!w)
                continue;
            if (ev->mask & IN_IGNORED) {
                w->wd = -1; /* folder gone: its triggers keep their poll */
                continue;
            }
            for (struct trig *g = w->list, *nx; g; g = nx) {
                nx = g->fw_next;
                const char *base = strrchr(g->file_path, '/');
                if (ev->len == 0 || fnmatch(base + 1, ev->name, 0) == 0)
                    check(t, g);
            }
        }
    }
}

remex_err watch_init(struct trg *t, struct remex_error *e)
{
    t->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (t->ino_fd < 0) {
        log_warn("inotify: %s: file triggers are polled only", strerror(errno));
        return REMEX_OK;
    }
    return evloop_watch(t->loop, t->ino_fd, EVLOOP_READ, on_inotify, t, e);
}

void watch_shutdown(struct trg *t)
{
    while (t->watches) {
        struct fwatch *w = t->watches;
        t->watches = w->next;
        free(w);
    }
    if (t->ino_fd >= 0) {
        evloop_unwatch(t->loop, t->ino_fd);
        close(t->ino_fd);
        t->ino_fd = -1;
    }
}

/* Lists g on the watch of its folder (added when needed); no watch is fine. */
static void attach(struct trg *t, struct trig *g)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(g->file_path, '/');
    size_t n = slash ? (size_t)(slash - g->file_path) : 0;
    if (t->ino_fd < 0 || n == 0 || n >= sizeof(dir))
        return;
    memcpy(dir, g->file_path, n);
    dir[n] = '\0';
    if (has_glob(dir))
        return; /* a pattern of folders: the poll only */
    int wd = inotify_add_watch(t->ino_fd, dir, WATCH_MASK);
    if (wd < 0)
        return; /* missing folder, or out of watches: the poll only */
    struct fwatch *w = t->watches;
    while (w && w->wd != wd)
        w = w->next;
    if (!w) {
        w = calloc(1, sizeof(*w));
        if (!w) {
            inotify_rm_watch(t->ino_fd, wd);
            return;
        }
        w->wd = wd;
        w->next = t->watches;
        t->watches = w;
    }
    g->fw = w;
    g->fw_next = w->list;
    w->list = g;
}

void watch_disarm(struct trg *t, struct trig *g)
{
    struct fwatch *w = g->fw;
    if (!w)
        return;
    for (struct trig **pp = &w->list; *pp; pp = &(*pp)->fw_next)
        if (*pp == g) {
            *pp = g->fw_next;
            break;
        }
    g->fw = NULL;
    g->fw_next = NULL;
    if (w->list)
        return;
    if (w->wd >= 0 && t->ino_fd >= 0)
        inotify_rm_watch(t->ino_fd, w->wd);
    for (struct fwatch **pp = &t->watches; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    free(w);
}

static void on_poll(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct trig *g = arg;
    if (g->phase == TRIG_HELD && !g->fw)
        attach(g->owner, g); /* the folder may exist by now */
    if (g->phase == TRIG_HELD)
        check(g->owner, g);
}

/* g->file_path from the spec; -1 after trig_fail. */
static int resolve(struct trg *t, struct trig *g)
{
    char p[PATH_MAX];
    int n;
    if (g->spec.kind == TRIGSPEC_FILE) {
        n = snprintf(p, sizeof(p), "%s", g->spec.path);
    } else if (!t->store_dir) {
        trig_fail(t, g, "object_key: the agent has no object store (xcom.store)");
        return -1;
    } else {
        n = snprintf(p, sizeof(p), "%s/%s%s", t->store_dir, g->spec.key, g->spec.prefix ? "*" : "");
    }
    if (n < 0 || (size_t)n >= sizeof(p)) {
        trig_fail(t, g, "trigger path too long");
        return -1;
    }
    g->file_path = strdup(p);
    if (!g->file_path) {
        trig_fail(t, g, "out of memory");
        return -1;
    }
    return 0;
}

int watch_arm(struct trg *t, struct trig *g)
{
    if (resolve(t, g) != 0)
        return -1;
    attach(t, g);
    if (check(t, g))
        return 0;
    uint64_t every = poke_interval(t, g);
    g->poke_timer = evloop_timer_add(t->loop, every, every, on_poll, g);
    return 0;
}
