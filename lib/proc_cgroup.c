/*
 * proc: cgroup placement of children (cgroup v2, and the memory controller of
 * cgroup v1). The contract is in include/remex/proc.h.
 */
#include "remex/proc.h"
#include "remex/timeutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
#ifndef CGROUP_SUPER_MAGIC
#define CGROUP_SUPER_MAGIC 0x27e0eb
#endif

#define CG_SMALL_MAX   4096         /* one control file (memory.events, memory.oom_control) */
#define CG_PROCS_MAX   (256 * 1024) /* cgroup.procs: about 36000 pids */
#define CG_PURGE_DEPTH 16           /* nesting proc_cgroup_purge descends into */
#define CG_KILL_ROUNDS 4            /* re-reads of cgroup.procs in one proc_cgroup_kill */

/*
 * Reads all of path into *out (malloc'd, NUL-terminated, *len bytes before
 * the NUL). A file of more than cap bytes is REMEX_ETOOBIG; every message
 * names the file.
 */
static remex_err read_capped(const char *path, size_t cap, char **out, size_t *len,
                             struct remex_error *e)
{
    size_t got = 0;
    char *buf;
    int fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return remex_errno(e, proc_errno_code(errno), "%s", path);
    buf = malloc(cap + 2);
    if (buf == NULL) {
        close(fd);
        return remex_seterr(e, REMEX_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, cap + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            remex_err rc = remex_errno(e, proc_errno_code(errno), "%s", path);
            close(fd);
            free(buf);
            return rc;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > cap) {
            close(fd);
            free(buf);
            return remex_seterr(e, REMEX_ETOOBIG, "%s: larger than %zu bytes", path, cap);
        }
    }
    close(fd);
    buf[got] = '\0';
    if (memchr(buf, '\0', got) != NULL) {
        free(buf);
        return remex_seterr(e, REMEX_EPARSE, "%s: NUL byte in a text file", path);
    }
    *out = buf;
    if (len != NULL)
        *len = got;
    return REMEX_OK;
}

static int write_file(const char *dir, const char *file, const char *val)
{
    char path[4096 + 64];
    size_t vl = strlen(val);
    ssize_t n;
    int fd, saved;

    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    do {
        n = write(fd, val, vl);
    } while (n < 0 && errno == EINTR);
    saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)vl ? 0 : -1;
}

static int has_word(const char *list, const char *word, char sep)
{
    size_t wl = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p += wl) {
        int start = p == list || p[-1] == ' ' || p[-1] == '\n' || p[-1] == sep;
        int end = p[wl] == '\0' || p[wl] == ' ' || p[wl] == '\n' || p[wl] == sep;
        if (start && end)
            return 1;
    }
    return 0;
}

static long fs_type(const char *path)
{
    struct statfs sfs;
    return statfs(path, &sfs) == 0 ? (long)sfs.f_type : -1;
}

/*
 * The value of the "key N" line of a flat-keyed control file (memory.events,
 * memory.oom_control). REMEX_ENOTFOUND when no line has the key, REMEX_EPARSE
 * for a value that is not a plain decimal in range.
 */
static remex_err keyed_counter(const char *text, const char *key, const char *path,
                               unsigned long long *count, struct remex_error *e)
{
    size_t kl = strlen(key);

    for (const char *line = text; *line != '\0';) {
        const char *nl = strchrnul(line, '\n');
        if (strncmp(line, key, kl) == 0 && line[kl] == ' ') {
            const char *num = line + kl + 1;
            char *end;
            errno = 0;
            unsigned long long v = strtoull(num, &end, 10);
            if (errno != 0 || end == num || end != nl || *num < '0' || *num > '9')
                return remex_seterr(e, REMEX_EPARSE, "%s: %s: bad number", path, key);
            *count = v;
            return REMEX_OK;
        }
        line = *nl != '\0' ? nl + 1 : nl;
    }
    return remex_seterr(e, REMEX_ENOTFOUND, "%s: no %s counter", path, key);
}

/* ---- cgroup v2 ------------------------------------------------------------------- */

remex_err proc_cgroup_probe(const char *parent, unsigned need, struct remex_error *e)
{
    static const struct {
        unsigned bit;
        const char *name;
    } ctl[] = {{PROC_CG_MEMORY, "memory"}, {PROC_CG_PIDS, "pids"}};
    char path[4096 + 64], *list;
    struct remex_error why;
    struct statfs sfs;
    remex_err rc;

    if (parent == NULL || parent[0] != '/')
        return remex_seterr(e, REMEX_EINVAL, "cgroup: parent must be an absolute path");
    if (statfs(parent, &sfs) != 0)
        return remex_errno(e, REMEX_EUNSUPPORTED, "%s", parent);
    if (sfs.f_type != CGROUP2_SUPER_MAGIC)
        return remex_seterr(e, REMEX_EUNSUPPORTED, "%s: not a cgroup2 mount", parent);
    if (access(parent, W_OK | X_OK) != 0)
        return remex_errno(e, REMEX_EPERM, "%s: not writable", parent);
    snprintf(path, sizeof(path), "%s/cgroup.subtree_control", parent);
    rc = read_capped(path, CG_SMALL_MAX, &list, NULL, &why);
    if (rc != REMEX_OK)
        return remex_seterr(e, REMEX_EUNSUPPORTED, "%s", why.msg);
    for (size_t i = 0; i < sizeof(ctl) / sizeof(ctl[0]); i++)
        if ((need & ctl[i].bit) && !has_word(list, ctl[i].name, ' ')) {
            free(list);
            return remex_seterr(e, REMEX_EUNSUPPORTED,
                                "%s: controller '%s' not enabled in cgroup.subtree_control", parent,
                                ctl[i].name);
        }
    free(list);
    return REMEX_OK;
}

static int cg_name_ok(const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;

    if (n == 0 || n > 255 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static remex_err cg_write(const char *dir, const char *file, const char *val, struct remex_error *e)
{
    if (write_file(dir, file, val) != 0)
        return remex_errno(e, proc_errno_code(errno), "%s/%s", dir, file);
    return REMEX_OK;
}

static remex_err cg_limits_v2(const char *dir, const struct proc_cgroup_limits *lim,
                              struct remex_error *e)
{
    char v[32];
    remex_err rc;

    if (lim->memory_max > 0) {
        snprintf(v, sizeof(v), "%llu", lim->memory_max);
        rc = cg_write(dir, "memory.max", v, e);
        if (rc != REMEX_OK)
            return rc;
        /* Without swap accounting the file is absent: nothing to disable. */
        if (write_file(dir, "memory.swap.max", "0") != 0 && errno != ENOENT)
            return remex_errno(e, proc_errno_code(errno), "%s/memory.swap.max", dir);
    }
    if (lim->pids_max > 0) {
        snprintf(v, sizeof(v), "%llu", lim->pids_max);
        return cg_write(dir, "pids.max", v, e);
    }
    return REMEX_OK;
}

/*
 * cgroup v1 memory: memory.limit_in_bytes, then memory.memsw.limit_in_bytes
 * (memory + swap; it may not go below the memory limit, so it comes second)
 * to the same value so swapping cannot dodge the limit, and the OOM killer
 * enabled (memory.oom_control inherits oom_kill_disable from the parent).
 */
static remex_err cg_limits_v1(const char *dir, const struct proc_cgroup_limits *lim,
                              struct remex_error *e)
{
    char v[32];
    remex_err rc;

    if (lim->pids_max > 0)
        return remex_seterr(e, REMEX_EUNSUPPORTED,
                            "%s: pids.max: no pids controller in the cgroup v1 memory hierarchy",
                            dir);
    if (lim->memory_max == 0)
        return REMEX_OK;
    snprintf(v, sizeof(v), "%llu", lim->memory_max);
    rc = cg_write(dir, "memory.limit_in_bytes", v, e);
    if (rc != REMEX_OK)
        return rc;
    /* Absent without swap accounting (swapaccount=0): no swap to dodge with. */
    if (write_file(dir, "memory.memsw.limit_in_bytes", v) != 0 && errno != ENOENT)
        return remex_errno(e, proc_errno_code(errno), "%s/memory.memsw.limit_in_bytes", dir);
    return cg_write(dir, "memory.oom_control", "0", e);
}

remex_err proc_cgroup_create(struct proc_cgroup *cg, const char *parent, const char *name,
                             const struct proc_cgroup_limits *lim, struct remex_error *e)
{
    char procs[sizeof(cg->path) + 16];
    remex_err rc = REMEX_OK;
    long type;

    cg->procs_fd = -1;
    cg->path[0] = '\0';
    cg->v1 = 0;
    if (parent == NULL || parent[0] != '/' || !cg_name_ok(name))
        return remex_seterr(e, REMEX_EINVAL, "cgroup: bad parent or name");
    type = fs_type(parent);
    if (type != CGROUP2_SUPER_MAGIC && type != CGROUP_SUPER_MAGIC)
        return remex_seterr(e, type < 0 ? proc_errno_code(errno) : REMEX_EUNSUPPORTED,
                            "cgroup %s: %s", parent,
                            type < 0 ? strerror(errno) : "not on a cgroup mount");
    if (snprintf(cg->path, sizeof(cg->path), "%s/%s", parent, name) >= (int)sizeof(cg->path)) {
        cg->path[0] = '\0';
        return remex_seterr(e, REMEX_EINVAL, "cgroup: path too long");
    }
    if (mkdir(cg->path, 0755) != 0) {
        rc = remex_errno(e, proc_errno_code(errno), "cgroup %s: mkdir", cg->path);
        cg->path[0] = '\0'; /* not ours: a later remove must not touch it */
        return rc;
    }
    cg->v1 = type == CGROUP_SUPER_MAGIC;
    if (lim != NULL)
        rc = cg->v1 ? cg_limits_v1(cg->path, lim, e) : cg_limits_v2(cg->path, lim, e);
    if (rc == REMEX_OK) {
        snprintf(procs, sizeof(procs), "%s/cgroup.procs", cg->path);
        cg->procs_fd = open(procs, O_WRONLY | O_CLOEXEC);
        if (cg->procs_fd < 0)
            rc = remex_errno(e, proc_errno_code(errno), "%s", procs);
    }
    if (rc != REMEX_OK) {
        (void)rmdir(cg->path);
        cg->path[0] = '\0';
        cg->v1 = 0;
    }
    return rc;
}

remex_err proc_cgroup_oom_kills(const struct proc_cgroup *cg, unsigned long long *count,
                                struct remex_error *e)
{
    char path[sizeof(cg->path) + 32], *text;
    remex_err rc;

    snprintf(path, sizeof(path), "%s/%s", cg->path,
             cg->v1 ? "memory.oom_control" : "memory.events");
    rc = read_capped(path, CG_SMALL_MAX, &text, NULL, e);
    if (rc != REMEX_OK)
        return rc;
    rc = keyed_counter(text, "oom_kill", path, count, e);
    free(text);
    if (rc == REMEX_ENOTFOUND)
        return remex_seterr(e, cg->v1 ? REMEX_EUNSUPPORTED : REMEX_EPARSE,
                            "%s: no oom_kill counter%s", path, cg->v1 ? " (Linux < 4.13)" : "");
    return rc;
}

/*
 * SIGKILL to every process listed in dir/cgroup.procs except this one.
 * *listed receives how many were listed (this process included). Errors name
 * the file; REMEX_ENOTFOUND when dir no longer exists.
 */
static remex_err kill_members(const char *dir, size_t *listed, struct remex_error *e)
{
    char path[4096 + 32], *text;
    pid_t self = getpid();
    size_t n = 0;
    remex_err rc;

    *listed = 0;
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    rc = read_capped(path, CG_PROCS_MAX, &text, NULL, e);
    if (rc != REMEX_OK)
        return rc;
    for (const char *line = text; *line != '\0';) {
        const char *nl = strchrnul(line, '\n');
        char *end;
        errno = 0;
        long pid = strtol(line, &end, 10);
        if (errno != 0 || end != nl || pid <= 1 || pid > INT32_MAX || *line < '0' || *line > '9') {
            free(text);
            return remex_seterr(e, REMEX_EPARSE, "%s: bad pid line", path);
        }
        n++;
        if ((pid_t)pid != self)
            (void)kill((pid_t)pid, SIGKILL);
        line = *nl != '\0' ? nl + 1 : nl;
    }
    free(text);
    *listed = n;
    return REMEX_OK;
}

remex_err proc_cgroup_kill(const struct proc_cgroup *cg, struct remex_error *e)
{
    size_t listed = 1;

    if (cg->path[0] == '\0')
        return remex_seterr(e, REMEX_EINVAL, "cgroup: not created");
    if (!cg->v1) {
        if (write_file(cg->path, "cgroup.kill", "1") == 0)
            return REMEX_OK;
        if (errno != ENOENT)
            return remex_errno(e, proc_errno_code(errno), "%s/cgroup.kill", cg->path);
        /* Linux < 5.14: no cgroup.kill, signal the members instead. */
    }
    /* A member forking while it is signalled is caught by the next round. */
    for (int round = 0; round < CG_KILL_ROUNDS && listed > 0; round++) {
        remex_err rc = kill_members(cg->path, &listed, e);
        if (rc != REMEX_OK)
            return rc;
    }
    return REMEX_OK;
}

remex_err proc_cgroup_remove(struct proc_cgroup *cg, struct remex_error *e)
{
    if (cg->procs_fd >= 0) {
        close(cg->procs_fd);
        cg->procs_fd = -1;
    }
    if (cg->path[0] == '\0')
        return REMEX_OK;
    if (rmdir(cg->path) != 0) {
        if (errno == EBUSY)
            return remex_seterr(e, REMEX_EAGAIN, "cgroup %s: still has processes", cg->path);
        if (errno != ENOENT)
            return remex_errno(e, proc_errno_code(errno), "cgroup %s: rmdir", cg->path);
    }
    cg->path[0] = '\0';
    return REMEX_OK;
}

/* ---- purge ---------------------------------------------------------------------- */

/*
 * One pass over the subtree at dir: children first, then the members of dir
 * get SIGKILL and dir is removed. 1: dir is gone; 0: something is still
 * there (processes still exiting); -1: error in e.
 */
static int purge_pass(const char *dir, int depth, struct remex_error *e)
{
    struct dirent *d;
    size_t listed = 0;
    int gone = 1;
    remex_err rc;
    DIR *dp;

    if (depth > CG_PURGE_DEPTH) {
        remex_seterr(e, REMEX_ETOOBIG, "cgroup %s: nested deeper than %d", dir, CG_PURGE_DEPTH);
        return -1;
    }
    dp = opendir(dir);
    if (dp == NULL) {
        if (errno == ENOENT)
            return 1;
        remex_errno(e, proc_errno_code(errno), "cgroup %s", dir);
        return -1;
    }
    while ((d = readdir(dp)) != NULL) {
        char sub[4096];
        struct stat sb;
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
            continue;
        if (snprintf(sub, sizeof(sub), "%s/%s", dir, d->d_name) >= (int)sizeof(sub) ||
            lstat(sub, &sb) != 0 || !S_ISDIR(sb.st_mode))
            continue;
        int r = purge_pass(sub, depth + 1, e);
        if (r < 0) {
            closedir(dp);
            return -1;
        }
        gone &= r;
    }
    closedir(dp);
    rc = kill_members(dir, &listed, e);
    if (rc == REMEX_ENOTFOUND)
        return 1;
    if (rc != REMEX_OK)
        return -1;
    if (!gone)
        return 0;
    if (rmdir(dir) == 0 || errno == ENOENT)
        return 1;
    if (errno == EBUSY)
        return 0;
    remex_errno(e, proc_errno_code(errno), "cgroup %s: rmdir", dir);
    return -1;
}

remex_err proc_cgroup_purge(const char *dir, int timeout_ms, struct remex_error *e)
{
    int64_t deadline = (int64_t)timeutil_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    char up[4096 + 4];
    struct stat a, b;
    long type;

    if (dir == NULL || dir[0] != '/')
        return remex_seterr(e, REMEX_EINVAL, "cgroup purge: path must be absolute");
    type = fs_type(dir);
    if (type < 0 && errno == ENOENT)
        return REMEX_OK;
    if (type != CGROUP2_SUPER_MAGIC && type != CGROUP_SUPER_MAGIC)
        return remex_seterr(e, REMEX_EINVAL, "cgroup purge %s: not a cgroup", dir);
    /* A hierarchy's root holds every process of the system: never that. */
    snprintf(up, sizeof(up), "%s/..", dir);
    if (stat(dir, &a) != 0 || stat(up, &b) != 0 || a.st_dev != b.st_dev)
        return remex_seterr(e, REMEX_EINVAL, "cgroup purge %s: refusing a hierarchy root", dir);
    for (;;) {
        int r = purge_pass(dir, 0, e);
        if (r < 0)
            return e != NULL ? e->code : REMEX_ESYS;
        if (r > 0)
            return REMEX_OK;
        if ((int64_t)timeutil_mono_ms() >= deadline)
            return remex_seterr(e, REMEX_EAGAIN, "cgroup %s: still has processes after %d ms", dir,
                                timeout_ms);
        timeutil_sleep_ms(10);
    }
}

/* ---- cgroup v1: where this process's memory cgroup is ----------------------------- */

#define CG_TEXT_MAX (1024 * 1024) /* mountinfo and /proc/self/cgroup */

/*
 * Copies one space-separated mountinfo field starting at *p into out,
 * decoding the kernel's octal escapes (\040 space, \011 tab, \012 newline,
 * \134 backslash). Returns 0, or -1 for a missing, overlong or badly escaped
 * field. *p is left after the field and its separator.
 */
static int mi_field(const char **p, const char *eol, char *out, size_t cap)
{
    const char *s = *p;
    size_t n = 0;

    if (s >= eol || *s == ' ')
        return -1;
    while (s < eol && *s != ' ') {
        char c = *s++;
        if (c == '\\') {
            if (eol - s < 3 || s[0] < '0' || s[0] > '3' || s[1] < '0' || s[1] > '7' || s[2] < '0' ||
                s[2] > '7')
                return -1;
            c = (char)((s[0] - '0') * 64 + (s[1] - '0') * 8 + (s[2] - '0'));
            s += 3;
        }
        if (n + 1 >= cap)
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    if (s < eol)
        s++;
    *p = s;
    return 0;
}

/* Skips one field; -1 if there is none. */
static int mi_skip(const char **p, const char *eol)
{
    const char *s = *p;
    if (s >= eol || *s == ' ')
        return -1;
    while (s < eol && *s != ' ')
        s++;
    *p = s < eol ? s + 1 : s;
    return 0;
}

struct v1_mount {
    char root[4096];
    char point[4096];
};

/*
 * Parses one mountinfo line: "ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...]
 * - FSTYPE SOURCE SUPEROPTS". 1 when it is a cgroup v1 mount whose super
 * options list "memory" (m filled), 0 for any other mount, -1 if malformed.
 */
static int mi_line(const char *line, const char *eol, struct v1_mount *m)
{
    char fstype[64], source[256], opts[1024];
    const char *p = line;

    for (int i = 0; i < 3; i++)
        if (mi_skip(&p, eol) != 0)
            return -1;
    if (mi_field(&p, eol, m->root, sizeof(m->root)) != 0 ||
        mi_field(&p, eol, m->point, sizeof(m->point)) != 0 || mi_skip(&p, eol) != 0)
        return -1;
    for (;;) { /* optional fields up to the "-" separator */
        if (p >= eol)
            return -1;
        if (p[0] == '-' && (p + 1 == eol || p[1] == ' ')) {
            p = p + 1 < eol ? p + 2 : eol;
            break;
        }
        if (mi_skip(&p, eol) != 0)
            return -1;
    }
    if (mi_field(&p, eol, fstype, sizeof(fstype)) != 0 ||
        mi_field(&p, eol, source, sizeof(source)) != 0 ||
        mi_field(&p, eol, opts, sizeof(opts)) != 0)
        return -1;
    return strcmp(fstype, "cgroup") == 0 && has_word(opts, "memory", ',');
}

/*
 * The path of this process's memory cgroup from /proc/self/cgroup lines
 * "ID:CONTROLLERS:PATH" (CONTROLLERS comma-separated). REMEX_ENOTFOUND when no
 * line names the memory controller.
 */
static remex_err own_memory_cgroup(const char *file, const char *text, char *out, size_t cap,
                                   struct remex_error *e)
{
    int lineno = 0;

    for (const char *line = text; *line != '\0';) {
        const char *nl = strchrnul(line, '\n');
        const char *c1 = memchr(line, ':', (size_t)(nl - line));
        const char *c2 = c1 != NULL ? memchr(c1 + 1, ':', (size_t)(nl - c1 - 1)) : NULL;
        char ctl[1024];
        lineno++;
        if (c1 == NULL || c2 == NULL || c1 == line || c2[1] != '/')
            return remex_seterr(e, REMEX_EPARSE, "%s:%d: expected ID:CONTROLLERS:/PATH", file,
                                lineno);
        if ((size_t)(c2 - c1 - 1) < sizeof(ctl)) {
            memcpy(ctl, c1 + 1, (size_t)(c2 - c1 - 1));
            ctl[c2 - c1 - 1] = '\0';
            if (has_word(ctl, "memory", ',')) {
                size_t pl = (size_t)(nl - c2 - 1);
                if (pl >= cap)
                    return remex_seterr(e, REMEX_ETOOBIG, "%s:%d: path too long", file, lineno);
                memcpy(out, c2 + 1, pl);
                out[pl] = '\0';
                return REMEX_OK;
            }
        }
        line = *nl != '\0' ? nl + 1 : nl;
    }
    return remex_seterr(e, REMEX_ENOTFOUND, "%s: no memory controller line", file);
}

/* 1 if path has a "." or ".." component (outside this cgroup namespace). */
static int has_dot_component(const char *path)
{
    for (const char *p = path; *p != '\0';) {
        const char *end = strchrnul(p + 1, '/');
        size_t n = (size_t)(end - p - 1);
        if (*p == '/' && ((n == 1 && p[1] == '.') || (n == 2 && p[1] == '.' && p[2] == '.')))
            return 1;
        p = end;
    }
    return 0;
}

/*
 * dir = m's mount point + cg (our cgroup path) relative to m's root. 1 when
 * cg is at or below the mount's root, 0 otherwise (a bind mount of another
 * subtree), -1 when the result does not fit.
 */
static int join_mount(const struct v1_mount *m, const char *cg, char *dir, size_t len)
{
    size_t rl = strcmp(m->root, "/") == 0 ? 0 : strlen(m->root);
    const char *rest;

    if (rl > 0 && (strncmp(cg, m->root, rl) != 0 || (cg[rl] != '/' && cg[rl] != '\0')))
        return 0;
    rest = cg + rl;
    if (strcmp(rest, "/") == 0)
        rest = "";
    return snprintf(dir, len, "%s%s", m->point, rest) < (int)len ? 1 : -1;
}

static remex_err scan_mountinfo(const char *file, const char *text, const char *cg, char *dir,
                                size_t len, struct remex_error *e)
{
    struct v1_mount *m = malloc(sizeof(*m));
    int lineno = 0, seen = 0, found = 0;
    remex_err rc = REMEX_OK;

    if (m == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "%s: out of memory", file);
    for (const char *line = text; *line != '\0' && !found && rc == REMEX_OK;) {
        const char *nl = strchrnul(line, '\n');
        int r = mi_line(line, nl, m);
        lineno++;
        if (r < 0)
            rc = remex_seterr(e, REMEX_EPARSE, "%s:%d: malformed mount line", file, lineno);
        else if (r > 0) {
            seen = 1;
            found = join_mount(m, cg, dir, len);
            if (found < 0)
                rc = remex_seterr(e, REMEX_ETOOBIG, "%s:%d: cgroup path too long", file, lineno);
        }
        line = *nl != '\0' ? nl + 1 : nl;
    }
    free(m);
    if (rc != REMEX_OK || found)
        return rc;
    if (lineno == 0)
        return remex_seterr(e, REMEX_EPARSE, "%s: empty", file);
    if (seen)
        return remex_seterr(e, REMEX_EUNSUPPORTED,
                            "%s: memory cgroup %s is not under any cgroup v1 memory mount", file,
                            cg);
    return remex_seterr(e, REMEX_EUNSUPPORTED, "%s: no cgroup v1 memory mount", file);
}

remex_err proc_cgroup_v1_locate(const char *mountinfo, const char *cgroup_file, char *dir,
                                size_t len, struct remex_error *e)
{
    char *mi = NULL, *cgt = NULL, cg[4096];
    remex_err rc;

    if (dir == NULL || len == 0)
        return remex_seterr(e, REMEX_EINVAL, "cgroup v1: no output buffer");
    dir[0] = '\0';
    if (mountinfo == NULL)
        mountinfo = "/proc/self/mountinfo";
    if (cgroup_file == NULL)
        cgroup_file = "/proc/self/cgroup";
    rc = read_capped(cgroup_file, CG_TEXT_MAX, &cgt, NULL, e);
    if (rc == REMEX_OK)
        rc = own_memory_cgroup(cgroup_file, cgt, cg, sizeof(cg), e);
    if (rc == REMEX_ENOTFOUND)
        rc = remex_seterr(e, REMEX_EUNSUPPORTED, "%s: no cgroup v1 memory controller", cgroup_file);
    if (rc == REMEX_OK && has_dot_component(cg))
        rc = remex_seterr(e, REMEX_EUNSUPPORTED,
                          "%s: memory cgroup %s is outside this cgroup namespace", cgroup_file, cg);
    if (rc == REMEX_OK)
        rc = read_capped(mountinfo, CG_TEXT_MAX, &mi, NULL, e);
    if (rc == REMEX_OK)
        rc = scan_mountinfo(mountinfo, mi, cg, dir, len, e);
    if (rc != REMEX_OK)
        dir[0] = '\0';
    free(mi);
    free(cgt);
    return rc;
}

remex_err proc_cgroup_v1_probe(const char *dir, struct remex_error *e)
{
    char path[4096 + 64];

    if (dir == NULL || dir[0] != '/')
        return remex_seterr(e, REMEX_EINVAL, "cgroup: parent must be an absolute path");
    long type = fs_type(dir);
    if (type < 0)
        return remex_errno(e, REMEX_EUNSUPPORTED, "%s", dir);
    if (type != CGROUP_SUPER_MAGIC)
        return remex_seterr(e, REMEX_EUNSUPPORTED, "%s: not a cgroup v1 mount", dir);
    snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", dir);
    if (access(path, F_OK) != 0)
        return remex_seterr(e, REMEX_EUNSUPPORTED, "%s: no memory controller (%s)", dir,
                            strerror(errno));
    if (access(dir, W_OK | X_OK) != 0)
        return remex_errno(e, REMEX_EPERM, "%s: not writable", dir);
    return REMEX_OK;
}
