/*
 * The store's SQLite VFS: the default one ("unix") with the writes to the WAL
 * gathered. SQLite writes each WAL frame with two calls (its 24-byte header,
 * then the page); this layer keeps contiguous WAL writes in memory and hands
 * them to the kernel in one pwritev when the transaction commits (SQLite
 * reports the end of a commit to the database file with
 * SQLITE_FCNTL_COMMIT_PHASETWO), and before anything reads, syncs, truncates,
 * sizes or closes the WAL, or writes elsewhere in it. So a commit is in the
 * operating system before SQLite returns from it, as without this layer: a
 * crash of the plane loses nothing committed, and a commit cut short is a torn
 * WAL tail that SQLite's recovery drops by its checksums, as before. A failed
 * write keeps the bytes buffered and fails every later access until a retry
 * succeeds, so the connection never reads a frame the file does not hold.
 *
 * One database per process (the plane's): the open WAL is a global. Every
 * call comes with plane.mu held, as for all database access.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "plane.h"

#define WAL_BUF_MAX (4 * 1024 * 1024) /* larger transactions are written as they grow */
#define WAL_IOV_MAX 256

struct vfile {
    sqlite3_file base; /* methods: &db_io or &wal_io */
    sqlite3_file *real;
    int wal;
    /* WAL only: buffered bytes for [off, off + len) of the file. */
    sqlite3_int64 off;
    size_t len;
    int nv;
    struct iovec v[WAL_IOV_MAX]; /* each owned (malloc'd copy of one write) */
    int fd;                      /* our own descriptor of the WAL (-1: none) */
};

static sqlite3_vfs g_vfs;
static sqlite3_vfs *g_base;
static struct vfile *g_wal;
static sqlite3_io_methods g_db_io, g_wal_io;

static sqlite3_file *R(sqlite3_file *f)
{
    return ((struct vfile *)f)->real;
}

static void drop(struct vfile *w)
{
    for (int i = 0; i < w->nv; i++)
        free(w->v[i].iov_base);
    w->nv = 0;
    w->len = 0;
}

/* Writes the buffered bytes. SQLITE_OK, or SQLITE_IOERR_WRITE (kept). */
static int flush(struct vfile *w)
{
    if (!w || w->nv == 0)
        return SQLITE_OK;
    if (w->fd < 0) {
        /* No descriptor: the real file writes piece by piece. */
        sqlite3_int64 o = w->off;
        for (int i = 0; i < w->nv; i++) {
            int rc = w->real->pMethods->xWrite(w->real, w->v[i].iov_base, (int)w->v[i].iov_len, o);
            if (rc != SQLITE_OK)
                return rc;
            o += (sqlite3_int64)w->v[i].iov_len;
        }
        drop(w);
        return SQLITE_OK;
    }
    size_t done = 0;
    while (done < w->len) {
        /* Skip what a short write already wrote. */
        size_t skip = done;
        int i = 0;
        while (skip >= w->v[i].iov_len) {
            skip -= w->v[i].iov_len;
            i++;
        }
        struct iovec first = w->v[i];
        w->v[i].iov_base = (char *)w->v[i].iov_base + skip;
        w->v[i].iov_len -= skip;
        ssize_t n = pwritev(w->fd, w->v + i, w->nv - i, (off_t)(w->off + (sqlite3_int64)done));
        w->v[i] = first;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return SQLITE_IOERR_WRITE;
        done += (size_t)n;
    }
    drop(w);
    return SQLITE_OK;
}

static int wal_write(sqlite3_file *f, const void *data, int n, sqlite3_int64 off)
{
    struct vfile *w = (struct vfile *)f;
    int rc;
    if (w->nv > 0 &&
        (off != w->off + (sqlite3_int64)w->len || w->nv == WAL_IOV_MAX ||
         w->len + (size_t)n > WAL_BUF_MAX) &&
        (rc = flush(w)) != SQLITE_OK)
        return rc;
    void *copy = malloc((size_t)n);
    if (!copy) {
        if ((rc = flush(w)) != SQLITE_OK)
            return rc;
        return w->real->pMethods->xWrite(w->real, data, n, off);
    }
    memcpy(copy, data, (size_t)n);
    if (w->nv == 0)
        w->off = off;
    w->v[w->nv].iov_base = copy;
    w->v[w->nv].iov_len = (size_t)n;
    w->nv++;
    w->len += (size_t)n;
    return SQLITE_OK;
}

static int x_close(sqlite3_file *f)
{
    struct vfile *v = (struct vfile *)f;
    int rc = v->wal ? flush(v) : SQLITE_OK;
    if (v->wal) {
        drop(v);
        if (g_wal == v)
            g_wal = NULL;
    }
    if (v->fd >= 0)
        close(v->fd);
    v->fd = -1;
    int rc2 = v->real->pMethods ? v->real->pMethods->xClose(v->real) : SQLITE_OK;
    return rc != SQLITE_OK ? rc : rc2;
}

static int x_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    struct vfile *v = (struct vfile *)f;
    int rc = v->wal ? flush(v) : SQLITE_OK;
    return rc != SQLITE_OK ? rc : R(f)->pMethods->xRead(R(f), p, n, off);
}

static int x_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    return R(f)->pMethods->xWrite(R(f), p, n, off);
}

static int x_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    struct vfile *v = (struct vfile *)f;
    int rc = v->wal ? flush(v) : SQLITE_OK;
    return rc != SQLITE_OK ? rc : R(f)->pMethods->xTruncate(R(f), size);
}

static int x_sync(sqlite3_file *f, int flags)
{
    struct vfile *v = (struct vfile *)f;
    int rc = v->wal ? flush(v) : SQLITE_OK;
    return rc != SQLITE_OK ? rc : R(f)->pMethods->xSync(R(f), flags);
}

static int x_size(sqlite3_file *f, sqlite3_int64 *size)
{
    struct vfile *v = (struct vfile *)f;
    int rc = v->wal ? flush(v) : SQLITE_OK;
    return rc != SQLITE_OK ? rc : R(f)->pMethods->xFileSize(R(f), size);
}

static int x_lock(sqlite3_file *f, int l)
{
    return R(f)->pMethods->xLock(R(f), l);
}

static int x_unlock(sqlite3_file *f, int l)
{
    return R(f)->pMethods->xUnlock(R(f), l);
}

static int x_reserved(sqlite3_file *f, int *out)
{
    return R(f)->pMethods->xCheckReservedLock(R(f), out);
}

static int x_fcntl(sqlite3_file *f, int op, void *arg)
{
    struct vfile *v = (struct vfile *)f;
    if (!v->wal && op == SQLITE_FCNTL_COMMIT_PHASETWO) {
        int rc = flush(g_wal); /* the commit's frames, before SQLite returns */
        if (rc != SQLITE_OK)
            return rc;
    }
    if (v->wal && op != SQLITE_FCNTL_LOCKSTATE) {
        int rc = flush(v);
        if (rc != SQLITE_OK)
            return rc;
    }
    return R(f)->pMethods->xFileControl(R(f), op, arg);
}

static int x_sector(sqlite3_file *f)
{
    return R(f)->pMethods->xSectorSize(R(f));
}

static int x_devchar(sqlite3_file *f)
{
    return R(f)->pMethods->xDeviceCharacteristics(R(f));
}

static int x_shmmap(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
    return R(f)->pMethods->xShmMap(R(f), pg, sz, ext, pp);
}

static int x_shmlock(sqlite3_file *f, int off, int n, int flags)
{
    return R(f)->pMethods->xShmLock(R(f), off, n, flags);
}

static void x_shmbarrier(sqlite3_file *f)
{
    R(f)->pMethods->xShmBarrier(R(f));
}

static int x_shmunmap(sqlite3_file *f, int del)
{
    return R(f)->pMethods->xShmUnmap(R(f), del);
}

static int x_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    struct vfile *v = (struct vfile *)f;
    int rc = v->wal ? flush(v) : SQLITE_OK;
    return rc != SQLITE_OK ? rc : R(f)->pMethods->xFetch(R(f), off, n, pp);
}

static int x_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return R(f)->pMethods->xUnfetch(R(f), off, p);
}

static int x_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    struct vfile *v = (struct vfile *)f;
    (void)vfs;
    memset(v, 0, sizeof(*v));
    v->real = (sqlite3_file *)(v + 1);
    v->fd = -1;
    int rc = g_base->xOpen(g_base, name, v->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        v->base.pMethods = NULL;
        return rc;
    }
    v->wal = (flags & SQLITE_OPEN_WAL) != 0 && !g_wal && name;
    if (v->wal) {
        /* A descriptor of our own for pwritev: the same file, the same page
         * cache as SQLite's own descriptor. Without it the buffered bytes go
         * through the real file's xWrite, piece by piece. */
        v->fd = open(name, O_WRONLY | O_CLOEXEC);
        g_wal = v;
    }
    v->base.pMethods = v->wal ? &g_wal_io : &g_db_io;
    return SQLITE_OK;
}

static int x_delete(sqlite3_vfs *vfs, const char *name, int sync)
{
    (void)vfs;
    return g_base->xDelete(g_base, name, sync);
}

static int x_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return g_base->xAccess(g_base, name, flags, out);
}

static int x_fullpath(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return g_base->xFullPathname(g_base, name, n, out);
}

static int x_random(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return g_base->xRandomness(g_base, n, out);
}

static int x_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return g_base->xSleep(g_base, us);
}

static int x_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return g_base->xCurrentTimeInt64(g_base, out);
}

static int x_lasterr(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return g_base->xGetLastError ? g_base->xGetLastError(g_base, n, out) : 0;
}

const char *store_vfs_name(void)
{
    if (g_base)
        return g_vfs.zName;
    sqlite3_vfs *base = sqlite3_vfs_find("unix");
    if (!base || base->iVersion < 2 || !base->xCurrentTimeInt64)
        return NULL; /* SQLite's default VFS is used as it is */
    static const sqlite3_io_methods io = {
        .iVersion = 3,
        .xClose = x_close,
        .xRead = x_read,
        .xWrite = x_write,
        .xTruncate = x_truncate,
        .xSync = x_sync,
        .xFileSize = x_size,
        .xLock = x_lock,
        .xUnlock = x_unlock,
        .xCheckReservedLock = x_reserved,
        .xFileControl = x_fcntl,
        .xSectorSize = x_sector,
        .xDeviceCharacteristics = x_devchar,
        .xShmMap = x_shmmap,
        .xShmLock = x_shmlock,
        .xShmBarrier = x_shmbarrier,
        .xShmUnmap = x_shmunmap,
        .xFetch = x_fetch,
        .xUnfetch = x_unfetch,
    };
    g_db_io = io;
    g_wal_io = io;
    g_wal_io.xWrite = wal_write;
    g_base = base;
    g_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct vfile) + base->szOsFile,
        .mxPathname = base->mxPathname,
        .zName = "remex-wal",
        .xOpen = x_open,
        .xDelete = x_delete,
        .xAccess = x_access,
        .xFullPathname = x_fullpath,
        .xDlOpen = base->xDlOpen,
        .xDlError = base->xDlError,
        .xDlSym = base->xDlSym,
        .xDlClose = base->xDlClose,
        .xRandomness = x_random,
        .xSleep = x_sleep,
        .xCurrentTime = base->xCurrentTime,
        .xGetLastError = x_lasterr,
        .xCurrentTimeInt64 = x_time64,
    };
    if (sqlite3_vfs_register(&g_vfs, 0) != SQLITE_OK) {
        g_base = NULL;
        return NULL;
    }
    return g_vfs.zName;
}
