/*
 * Task log files: <log_dir>/dag_id=D/run_id=R/task_id=T[/map_index=M]/attempt=N.log.
 *
 * Output is split into lines; each line is masked (secret values handed to
 * the task and their encodings) and written as "<RFC 3339 UTC ms> <line>\n"
 * in one write. A line longer than the line buffer (64 KiB) is written in
 * pieces. Past worker.log_max_bytes a marker line is written and the rest of
 * the try's output is dropped (still read, so the task never blocks).
 * Worker notes (start, stop, outcome) are written as "[remex] ..." lines.
 * With logs.stdout: json every line also goes to the worker's stdout as one
 * JSON object (ts, dag_id, run_id, task_id, map_index, try_number, ti_id,
 * line), masked the same way, for a logging sidecar or the container runtime.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/evloop.h"
#include "remex/log.h"
#include "remex/objstore.h"
#include "remex/mask.h"
#include "remex/timeutil.h"
#include "remex/fsutil.h"
#include "worker.h"

static const char *const oom_markers[] = {"MemoryError",
                                          "Cannot allocate memory",
                                          "out of memory",
                                          "Out of memory",
                                          "std::bad_alloc",
                                          "memory allocation failed",
                                          NULL};

/* Appends one path component, percent-encoding '/', '%', control bytes and a leading '.'. */
static void put_component(struct buf *b, const char *key, const char *v)
{
    buf_printf(b, "/%s=", key);
    for (size_t i = 0; v[i]; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '/' || c == '%' || c < 0x20 || c == 0x7f || (i == 0 && c == '.'))
            buf_printf(b, "%%%02X", c);
        else
            buf_putc(b, (char)c);
    }
}

remex_err tasklog_path(struct wtask *t, struct remex_error *e)
{
    if (t->log_path)
        return REMEX_OK;
    struct buf b = BUF_INIT(4096);
    buf_puts(&b, t->w->cfg->log_dir);
    put_component(&b, "dag_id", t->dag_id);
    put_component(&b, "run_id", t->run_id);
    put_component(&b, "task_id", t->task_id);
    if (t->map_index >= 0)
        buf_printf(&b, "/map_index=%" PRId64, t->map_index);
    if (buf_printf(&b, "/attempt=%" PRId64 ".log", t->try_number) != REMEX_OK) {
        buf_free(&b);
        return remex_seterr(e, REMEX_ETOOBIG, "log path too long");
    }
    if (!(t->log_path = buf_detach(&b, NULL)))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    return REMEX_OK;
}

remex_err tasklog_open(struct wtask *t, struct remex_error *e)
{
    remex_err rc = tasklog_path(t, e);
    if (rc)
        return rc;
    if (fsutil_mkdir_parents(t->log_path, 0750) != 0)
        return remex_seterr(e, REMEX_ESYS, "mkdir for %s: %s", t->log_path ? t->log_path : "?",
                            strerror(errno));
    t->log_fd = open(t->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (t->log_fd < 0)
        return remex_seterr(e, REMEX_ESYS, "open %s: %s", t->log_path, strerror(errno));
    return REMEX_OK;
}

/* Writes one line (no newline in it) with timestamp and masking. */
/* One masked line (text[0..n)) as a JSON object on stdout, in one write. */
static void emit_stdout(struct wtask *t, const char *ts, const char *text, size_t n)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s%}", "ts", ts, "dag_id", t->dag_id,
                          "run_id", t->run_id, "task_id", t->task_id, "map_index",
                          (json_int_t)t->map_index, "try_number", (json_int_t)t->try_number,
                          "ti_id", (json_int_t)t->ti_id, "line", text, n);
    if (!o) /* not UTF-8: the bytes are replaced, the line is kept */
        o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s}", "ts", ts, "dag_id", t->dag_id, "run_id",
                      t->run_id, "task_id", t->task_id, "map_index", (json_int_t)t->map_index,
                      "try_number", (json_int_t)t->try_number, "ti_id", (json_int_t)t->ti_id,
                      "line", "[remex] line is not UTF-8");
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s)
        return;
    size_t l = strlen(s);
    s[l] = '\n'; /* replaces the NUL: one write of the whole line */
    (void)fsutil_write_all(STDOUT_FILENO, s, l + 1);
    free(s);
}

static void emit(struct wtask *t, const char *line, size_t n)
{
    if (t->memory_limit && !t->use_cgroup && !t->oom_hint)
        for (int i = 0; oom_markers[i]; i++)
            if (memmem(line, n, oom_markers[i], strlen(oom_markers[i]))) {
                t->oom_hint = 1;
                break;
            }
    if (t->log_fd < 0 || t->truncated)
        return;
    char ts[TIMEUTIL_RFC3339_MAX];
    timeutil_rfc3339_format(timeutil_real_ms(), 1, ts, sizeof(ts));
    struct buf out = BUF_INIT(256u * 1024u);
    buf_puts(&out, ts);
    buf_putc(&out, ' ');
    if (!t->mask || mask_apply(t->mask, line, n, &out) != REMEX_OK) {
        buf_free(&out);
        return;
    }
    if (t->w->r->cfg.logs.stdout_format == 1)
        emit_stdout(t, ts, out.data + strlen(ts) + 1, out.len - strlen(ts) - 1);
    buf_putc(&out, '\n');
    if (t->log_bytes + out.len > t->w->cfg->log_max_bytes) {
        t->truncated = 1;
        buf_reset(&out);
        buf_printf(&out, "%s [remex] log truncated: size cap of %" PRIu64 " bytes reached\n", ts,
                   t->w->cfg->log_max_bytes);
    }
    (void)fsutil_write_all(t->log_fd, out.data,
                           out.len); /* a full disk loses lines, not the task */
    t->log_bytes += out.len;
    buf_free(&out);
}

void tasklog_feed(struct wtask *t, const char *p, size_t n)
{
    if (n == 0) { /* flush a last line without newline */
        if (t->line.len)
            emit(t, t->line.data, t->line.len);
        buf_reset(&t->line);
        return;
    }
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        size_t room = t->line.max - t->line.len;
        if (take > room)
            take = room;
        buf_append(&t->line, p, take);
        p += take;
        n -= take;
        if (nl && p == nl) {
            p++;
            n--;
        } else if (t->line.len < t->line.max) {
            continue; /* partial line: wait for more */
        }
        emit(t, t->line.data ? t->line.data : "", t->line.len);
        buf_reset(&t->line);
    }
}

void tasklog_note(struct wtask *t, const char *fmt, ...)
{
    char msg[1200];
    int k = snprintf(msg, sizeof(msg), "[remex] ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + k, sizeof(msg) - (size_t)k, fmt, ap);
    va_end(ap);
    int saved = t->oom_hint;
    emit(t, msg, strlen(msg));
    t->oom_hint = saved;
}

void tasklog_close(struct wtask *t)
{
    if (t->log_fd >= 0)
        close(t->log_fd);
    t->log_fd = -1;
}

/* ---- uploads to logs.store ---- */

static void key_part(struct buf *b, const char *s)
{
    for (; *s; s++) {
        char c = *s;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 strchr("._=:+@,-", c);
        buf_putc(b, ok ? c : '_');
    }
}

remex_err tasklog_store_key(struct wtask *t, struct buf *b)
{
    buf_puts(b, "logs/dag_id=");
    key_part(b, t->dag_id);
    buf_puts(b, "/run_id=");
    key_part(b, t->run_id);
    buf_puts(b, "/task_id=");
    key_part(b, t->task_id);
    return buf_printf(b, "/map_index=%" PRId64 "/attempt=%" PRId64 ".log", t->map_index,
                      t->try_number);
}

static int streaming(const struct wtask *t)
{
    return t->w->lstore && t->w->r->cfg.logs.upload_interval_ms > 0;
}

void tasklog_start_uri(struct wtask *t, char *out, size_t cap)
{
    struct buf k = BUF_INIT(OBJSTORE_KEY_MAX);
    if (streaming(t) && tasklog_store_key(t, &k) == REMEX_OK)
        objstore_uri(t->w->lstore, buf_cstr(&k), out, cap);
    else
        snprintf(out, cap, "file://%s", t->log_path);
    buf_free(&k);
}

static void partial_done(struct store_job *j)
{
    struct wtask *t = j->t;
    t->log_upload_busy = 0;
    if (j->rc != REMEX_OK)
        log_debug("ti %" PRId64 ": partial log upload: %s", t->ti_id, j->err.msg);
}

/* Timer: hands the log as it is now to the store thread (one upload at a time). */
static void on_upload_timer(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct wtask *t = arg;
    struct store_job *j;
    struct buf k = BUF_INIT(OBJSTORE_KEY_MAX);
    if (t->log_upload_busy || !t->log_path ||
        !(j = store_job_new(t, t->w->lstore, STORE_PUT_FILE, TASKLOG_UPLOAD_MAX))) {
        buf_free(&k);
        return;
    }
    j->done = partial_done;
    if (tasklog_store_key(t, &k) != REMEX_OK || !(j->key = buf_detach(&k, NULL)) ||
        !(j->path = strdup(t->log_path)) || storeio_submit(t->w, j) != 0) {
        store_job_free(j);
        buf_free(&k);
        return;
    }
    t->log_upload_busy = 1;
}

void tasklog_stream_start(struct wtask *t)
{
    uint64_t ms = t->w->r->cfg.logs.upload_interval_ms;
    if (streaming(t) && !t->log_upload_timer)
        t->log_upload_timer = evloop_timer_add(t->w->loop, ms, ms, on_upload_timer, t);
}

void tasklog_stream_stop(struct wtask *t)
{
    if (t->log_upload_timer)
        evloop_timer_cancel(t->w->loop, t->log_upload_timer);
    t->log_upload_timer = 0;
}

/* ---- local copies of uploaded logs ---- */

struct log_expiry {
    struct log_expiry *next;
    uint64_t due_ms;
    char path[]; /* owned with the entry */
};

static void on_expiry_timer(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct worker *w = arg;
    uint64_t now = timeutil_mono_ms();
    while (w->log_expiry && w->log_expiry->due_ms <= now) {
        struct log_expiry *x = w->log_expiry;
        w->log_expiry = x->next;
        if (unlink(x->path) != 0 && errno != ENOENT)
            log_warn("removing uploaded log %s: %s", x->path, strerror(errno));
        free(x);
    }
    if (!w->log_expiry) {
        evloop_timer_cancel(w->loop, w->log_expiry_timer);
        w->log_expiry_timer = 0;
    }
}

void tasklog_expire_later(struct worker *w, const char *path)
{
    uint64_t ret = w->r->cfg.logs.local_retention_ms;
    size_t n = strlen(path) + 1;
    struct log_expiry *x, **pp = &w->log_expiry;
    if (ret == 0 || !(x = malloc(sizeof(*x) + n)))
        return;
    x->next = NULL;
    x->due_ms = timeutil_mono_ms() + ret;
    memcpy(x->path, path, n);
    while (*pp) /* same retention for all: the list stays ordered by due time */
        pp = &(*pp)->next;
    *pp = x;
    if (!w->log_expiry_timer) {
        uint64_t tick = ret < 1000 ? ret : 1000;
        w->log_expiry_timer = evloop_timer_add(w->loop, tick, tick, on_expiry_timer, w);
    }
}

void tasklog_expiry_free(struct worker *w)
{
    if (w->log_expiry_timer)
        evloop_timer_cancel(w->loop, w->log_expiry_timer);
    w->log_expiry_timer = 0;
    while (w->log_expiry) {
        struct log_expiry *x = w->log_expiry;
        w->log_expiry = x->next;
        free(x);
    }
}
