/*
 * SQLite store: opening (WAL, synchronous=NORMAL, exclusive locking, foreign
 * keys, busy timeout), the prepared statement cache, the WAL checkpointer
 * and numbered migrations from store_migrations_core and store_migrations_sched,
 * applied in version order, each in its own transaction, recorded in
 * schema_version. All functions are called with plane.mu held (or before any
 * other thread exists).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "plane.h"
#include "remex/log.h"

const struct store_migration store_migrations_core[] = {
    {1, "CREATE TABLE tokens ("
        " id INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " hash BLOB NOT NULL,"
        " created_ms INTEGER NOT NULL,"
        " expires_ms INTEGER NOT NULL DEFAULT 0," /* 0: never */
        " revoked_ms INTEGER NOT NULL DEFAULT 0," /* 0: not revoked */
        " last_used_ms INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE agents ("
        " id INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL UNIQUE,"
        " token_id INTEGER NOT NULL REFERENCES tokens(id),"
        " session INTEGER NOT NULL DEFAULT 0,"
        " state TEXT NOT NULL DEFAULT 'starting',"
        " desired_state TEXT NOT NULL DEFAULT 'run',"
        " roles TEXT NOT NULL DEFAULT '[]',"
        " queues TEXT NOT NULL DEFAULT '[]',"
        " version TEXT NOT NULL DEFAULT '',"
        " hostname TEXT NOT NULL DEFAULT '',"
        " slots INTEGER NOT NULL DEFAULT 0,"
        " free_slots INTEGER NOT NULL DEFAULT 0,"
        " features TEXT NOT NULL DEFAULT '{}',"
        " sysinfo TEXT NOT NULL DEFAULT '{}',"
        " health TEXT,"
        " health_ms INTEGER NOT NULL DEFAULT 0,"
        " registered_ms INTEGER NOT NULL,"
        " last_heartbeat_ms INTEGER NOT NULL,"
        " lost_ms INTEGER NOT NULL DEFAULT 0);"
        "CREATE INDEX agents_heartbeat ON agents(state, last_heartbeat_ms);"},
    /* Role-scoped agent tokens: tokens.roles holds the PLANE_ROLE_* bits the
     * token allows (existing tokens: all), tokens.queues the JSON array of
     * queues it may serve (NULL: every queue); agents.role_mask the bits the
     * agent registered with (computed for existing rows from agents.roles). */
    {2, "ALTER TABLE tokens ADD COLUMN roles INTEGER NOT NULL DEFAULT 15;"
        "ALTER TABLE tokens ADD COLUMN queues TEXT;"
        "ALTER TABLE agents ADD COLUMN role_mask INTEGER NOT NULL DEFAULT 0;"
        "UPDATE agents SET role_mask = (instr(roles, '\"worker\"') > 0)"
        " | ((instr(roles, '\"triggerer\"') > 0) << 1)"
        " | ((instr(roles, '\"dag-processor\"') > 0) << 2)"
        " | ((instr(roles, '\"sentinel\"') > 0) << 3);"},
    {0, NULL},
};

int64_t plane_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

remex_err store_exec(struct plane *p, const char *sql, struct remex_error *e)
{
    char *msg = NULL;
    if (sqlite3_exec(p->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        remex_seterr(e, REMEX_EIO, "sqlite: %s", msg ? msg : sqlite3_errmsg(p->db));
        sqlite3_free(msg);
        return REMEX_EIO;
    }
    return REMEX_OK;
}

/* Open-addressing table keyed by the SQL string's address; never shrinks. */
#define STMT_SLOTS 256

struct stmt_slot {
    const char *sql;
    sqlite3_stmt *st;
};

sqlite3_stmt *store_stmt(struct plane *p, const char *sql)
{
    struct stmt_slot *t = p->stmts;
    if (!t && !(t = p->stmts = calloc(STMT_SLOTS, sizeof(*t)))) {
        log_error("store: out of memory");
        return NULL;
    }
    uintptr_t h = (uintptr_t)sql;
    h ^= h >> 17;
    size_t i = (size_t)(h * 0x9E3779B97F4A7C15ull >> 32) % STMT_SLOTS;
    for (size_t k = 0; k < STMT_SLOTS; k++, i = (i + 1) % STMT_SLOTS) {
        if (t[i].sql == sql) {
            sqlite3_reset(t[i].st);
            sqlite3_clear_bindings(t[i].st);
            return t[i].st;
        }
        if (!t[i].sql)
            break;
    }
    if (t[i].sql) {
        log_error("store: statement cache full");
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(p->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        log_error("store: prepare: %s: %s", sqlite3_errmsg(p->db), sql);
        return NULL;
    }
    t[i].sql = sql;
    t[i].st = st;
    return st;
}

static void stmts_free(struct plane *p)
{
    struct stmt_slot *t = p->stmts;
    for (size_t i = 0; t && i < STMT_SLOTS; i++)
        sqlite3_finalize(t[i].st);
    free(t);
    p->stmts = NULL;
}

/*
 * WAL checkpoints. SQLite's automatic checkpoint ran inside the commit that
 * crossed the threshold, with mu held: fsync of the whole WAL, copy of the
 * pages into the database file, fsync of that file - 10-15 ms during which
 * every request waited. Instead, a commit that leaves CKPT_FRAMES or more
 * frames in the WAL wakes a thread that first fdatasyncs the WAL through its
 * own descriptor without mu (the bulk of the I/O), then runs the checkpoint
 * with mu held; SQLite's own WAL sync in it then has little left to flush.
 * The protocol, and so the durability, is SQLite's unchanged. Before the
 * thread runs, or when it falls CKPT_INLINE frames behind, the committing
 * thread checkpoints itself as before.
 */
#define CKPT_FRAMES 4000
#define CKPT_INLINE (4 * CKPT_FRAMES)

/*
 * Deferred commits. A change that need not survive a crash of the plane on
 * its own (a task instance's start) is left in an open transaction by
 * store_commit_later; the next store_begin takes that transaction over, so
 * the next commit of any request or of the scheduler carries it, and the
 * store thread commits it STORE_DEFER_NS after the first deferred change at
 * the latest. Outside a deferred transaction, a transaction is only ever open
 * within one holder of plane.mu.
 */
#define STORE_DEFER_NS 20000000LL

struct ckpt {
    pthread_t th;
    pthread_mutex_t mu; /* guards want, stop, armed, due_ns; never held while taking plane.mu */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC */
    int want, stop, started;
    int armed;      /* the thread commits a deferred transaction at due_ns */
    int64_t due_ns; /* CLOCK_MONOTONIC */
    int deferred;   /* guarded by plane.mu: the open transaction is a deferred one */
    int walfd;      /* -1 until opened (the WAL file appears with the first write) */
    char *walpath;  /* owned */
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int run_simple(struct plane *p, const char *sql)
{
    sqlite3_stmt *st = store_stmt(p, sql);
    int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
    if (st)
        sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        log_error("store: %s: %s", sql, sqlite3_errmsg(p->db));
    return rc == SQLITE_DONE ? 0 : -1;
}

int store_begin(struct plane *p)
{
    struct ckpt *c = p->ckpt;
    if (!sqlite3_get_autocommit(p->db)) {
        if (c && c->deferred) {
            c->deferred = 0;
            return 1;
        }
        return 0;
    }
    return run_simple(p, "BEGIN") == 0;
}

int store_commit(struct plane *p, int began)
{
    if (!began)
        return 0;
    if (sqlite3_get_autocommit(p->db))
        return -1; /* an error already rolled the transaction back (rollback_hook) */
    if ((!p->store_precommit || p->store_precommit(p) == 0) && run_simple(p, "COMMIT") == 0)
        return 0;
    /* SQLite rolls back a transaction whose COMMIT failed on I/O (disk
     * full, write error); anything else that left it open is undone here. */
    if (!sqlite3_get_autocommit(p->db))
        sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

void store_commit_later(struct plane *p, int began)
{
    struct ckpt *c = p->ckpt;
    if (!began)
        return;
    if (!c || !c->started) {
        store_commit(p, began);
        return;
    }
    c->deferred = 1;
    pthread_mutex_lock(&c->mu);
    if (!c->armed) {
        c->armed = 1;
        c->due_ns = mono_ns() + STORE_DEFER_NS;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

int store_settle(struct plane *p)
{
    struct ckpt *c = p->ckpt;
    if (c && c->deferred) {
        c->deferred = 0;
        return store_commit(p, 1);
    }
    return 0;
}

/* Any transaction rolled back once the store is open: an explicit ROLLBACK,
 * or SQLite undoing one after an error (a failed COMMIT, an I/O error in a
 * statement). What the plane keeps in memory may be ahead of the database. */
static void rollback_hook(void *arg)
{
    struct plane *p = arg;
    struct ckpt *c = p->ckpt;
    if (c)
        c->deferred = 0; /* a deferred transaction, if open, is gone too */
    p->store_resync = 1;
    atomic_fetch_add(&p->store_rollbacks, 1);
    log_warn("store: transaction rolled back");
}

static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct plane *p = arg;
    struct ckpt *c = p->ckpt;
    if (frames < CKPT_FRAMES)
        return SQLITE_OK;
    if (!c || !c->started || frames >= CKPT_INLINE) {
        sqlite3_wal_checkpoint(db, name);
        return SQLITE_OK;
    }
    pthread_mutex_lock(&c->mu);
    c->want = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return SQLITE_OK;
}

static void checkpoint(struct plane *p, struct ckpt *c)
{
    if (c->walfd < 0 && c->walpath)
        c->walfd = open(c->walpath, O_RDONLY | O_CLOEXEC);
    if (c->walfd >= 0)
        fdatasync(c->walfd);
    pthread_mutex_lock(&p->mu);
    store_settle(p); /* a checkpoint needs the connection outside a transaction */
    int frames = 0, done = 0;
    if (sqlite3_wal_checkpoint_v2(p->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, &done) !=
        SQLITE_OK)
        log_warn("store: checkpoint: %s", sqlite3_errmsg(p->db));
    pthread_mutex_unlock(&p->mu);
}

/* The store thread: checkpoints on request, commits deferred transactions
 * when they are due. */
static void *ckpt_main(void *arg)
{
    struct plane *p = arg;
    struct ckpt *c = p->ckpt;
    for (;;) {
        int fire = 0;
        pthread_mutex_lock(&c->mu);
        while (!c->want && !c->stop) {
            if (c->armed && mono_ns() >= c->due_ns) {
                fire = 1;
                c->armed = 0;
                break;
            }
            if (c->armed) {
                struct timespec ts = {.tv_sec = c->due_ns / 1000000000,
                                      .tv_nsec = c->due_ns % 1000000000};
                pthread_cond_timedwait(&c->cv, &c->mu, &ts);
            } else {
                pthread_cond_wait(&c->cv, &c->mu);
            }
        }
        int stop = c->stop, want = c->want;
        c->want = 0;
        pthread_mutex_unlock(&c->mu);
        if (stop)
            break;
        if (fire) {
            pthread_mutex_lock(&p->mu);
            store_settle(p);
            pthread_mutex_unlock(&p->mu);
        }
        if (want)
            checkpoint(p, c);
    }
    return NULL;
}

remex_err store_checkpointer_start(struct plane *p, struct remex_error *e)
{
    struct ckpt *c = calloc(1, sizeof(*c));
    pthread_condattr_t ca;
    if (!c)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    c->walfd = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_lock(&p->mu);
    const char *wal = sqlite3_filename_wal(sqlite3_db_filename(p->db, "main"));
    c->walpath = wal && *wal ? strdup(wal) : NULL;
    p->ckpt = c;
    pthread_mutex_unlock(&p->mu);
    int rc = pthread_create(&c->th, NULL, ckpt_main, p);
    if (rc != 0)
        return remex_seterr(e, REMEX_ESYS, "store: pthread_create: %s", strerror(rc));
    pthread_mutex_lock(&p->mu);
    c->started = 1;
    pthread_mutex_unlock(&p->mu);
    return REMEX_OK;
}

void store_checkpointer_stop(struct plane *p)
{
    struct ckpt *c = p->ckpt;
    if (!c)
        return;
    if (c->started) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->th, NULL);
    }
    pthread_mutex_lock(&p->mu);
    store_settle(p);
    p->ckpt = NULL;
    pthread_mutex_unlock(&p->mu);
    if (c->walfd >= 0)
        close(c->walfd);
    free(c->walpath);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static int current_version(struct plane *p)
{
    sqlite3_stmt *st = NULL;
    int v = 0;
    if (sqlite3_prepare_v2(p->db, "SELECT COALESCE(MAX(version),0) FROM schema_version", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* 1 when migration version is recorded in schema_version. */
static int applied(struct plane *p, int version)
{
    sqlite3_stmt *st = NULL;
    int yes = 0;
    if (sqlite3_prepare_v2(p->db, "SELECT 1 FROM schema_version WHERE version = ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, version);
        yes = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return yes;
}

static remex_err apply_one(struct plane *p, const struct store_migration *m, struct remex_error *e)
{
    char rec[96];
    remex_err rc = store_exec(p, "BEGIN IMMEDIATE", e);
    if (rc)
        return rc;
    snprintf(rec, sizeof(rec), "INSERT INTO schema_version(version, applied_ms) VALUES(%d, %lld)",
             m->version, (long long)plane_now_ms());
    if ((rc = store_exec(p, m->sql, e)) || (rc = store_exec(p, rec, e))) {
        remex_errprefix(e, "migration %d", m->version);
        store_exec(p, "ROLLBACK", NULL);
        return rc;
    }
    if ((rc = store_exec(p, "COMMIT", e)))
        return rc;
    log_info("store: applied migration %d", m->version);
    return REMEX_OK;
}

/* Applies pending migrations of both arrays, merged in version order. A
 * migration is pending when schema_version does not record it: a core
 * migration added after scheduler ones were applied still runs once. */
static remex_err migrate(struct plane *p, struct remex_error *e)
{
    const struct store_migration *a = store_migrations_core, *b = store_migrations_sched;
    int have = current_version(p), last = 0;
    while (a->sql || b->sql) {
        const struct store_migration *m;
        if (a->sql && (!b->sql || a->version < b->version))
            m = a++;
        else
            m = b++;
        if (m->version <= last)
            return remex_seterr(e, REMEX_EINVAL, "migration %d: versions not increasing",
                                m->version);
        last = m->version;
        if (m->version <= have && applied(p, m->version))
            continue;
        remex_err rc = apply_one(p, m, e);
        if (rc)
            return rc;
    }
    if (have > last)
        return remex_seterr(e, REMEX_EINVAL,
                            "database schema version %d is newer than this binary (%d)", have,
                            last);
    return REMEX_OK;
}

/* Creates the parent directory of path (one level) when it is missing. */
static remex_err make_parent(const char *path, struct remex_error *e)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return REMEX_OK;
    size_t n = (size_t)(slash - path);
    if (n >= sizeof(dir))
        return remex_seterr(e, REMEX_EINVAL, "db_path: too long");
    memcpy(dir, path, n);
    dir[n] = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return remex_seterr(e, REMEX_ESYS, "%s: mkdir: %s", dir, strerror(errno));
    return REMEX_OK;
}

remex_err store_open(struct plane *p, struct remex_error *e)
{
    /* No allocation statistics: they take a global mutex around every
     * sqlite3_malloc and sqlite3_free. Only possible before SQLite is
     * initialised (first store_open); later calls change nothing. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    remex_err rc = make_parent(p->cfg.db_path, e);
    if (rc)
        return rc;
    /* Created here with mode 0600 whatever the umask: SQLite gives the -wal
     * and -shm files the mode of the database file. */
    int fd = open(p->cfg.db_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return remex_seterr(e, REMEX_EIO, "%s: %s", p->cfg.db_path, strerror(errno));
    close(fd);
    /* NOMUTEX: every use of the connection is under the plane's mutex
     * (plane.h), so SQLite's own per-call connection mutex only costs time
     * (about 8% of the plane's CPU per assignment, measured with perf). */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(p->cfg.db_path, &p->db, flags, store_vfs_name()) != SQLITE_OK) {
        rc = remex_seterr(e, REMEX_EIO, "%s: %s", p->cfg.db_path,
                          p->db ? sqlite3_errmsg(p->db) : "cannot open");
        sqlite3_close(p->db);
        p->db = NULL;
        return rc;
    }
    sqlite3_busy_timeout(p->db, 5000);
    sqlite3_wal_hook(p->db, wal_hook, p);
    sqlite3_extended_result_codes(p->db, 1);
    /* locking_mode=EXCLUSIVE: the plane is the only process using the file, so
     * no file-lock round trips per transaction and the WAL index lives in heap
     * memory (another process cannot open the DB while the plane runs).
     * Checkpoints every CKPT_FRAMES (4000) pages, see wal_hook. */
    if ((rc = store_exec(p,
                         "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL;"
                         " PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                         " CREATE TABLE IF NOT EXISTS schema_version("
                         " version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL);",
                         e)) ||
        (rc = migrate(p, e))) {
        remex_errprefix(e, "%s", p->cfg.db_path);
        store_close(p);
        return rc;
    }
    chmod(p->cfg.db_path, 0600);
    sqlite3_rollback_hook(p->db, rollback_hook, p);
    return REMEX_OK;
}

void store_close(struct plane *p)
{
    stmts_free(p);
    if (!p->db)
        return;
    if (sqlite3_close(p->db) != SQLITE_OK) {
        log_warn("store: close: %s (statements still open)", sqlite3_errmsg(p->db));
        sqlite3_close_v2(p->db);
    }
    p->db = NULL;
}
