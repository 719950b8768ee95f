/*
 * remex-dag-processor: shared declarations of its files.
 *
 *   scan.c   one bundle scan: stat-cached file hashes, parse of changed DAG
 *            files only, import errors (including DAG ids defined twice);
 *            pure and thread-safe (runs in the scan thread)
 *   cache.c  the scan's file-hash cache on disk (<state_dir>/<bundle>.cache.json)
 *   sync.c   manifest to the plane, upload of the DAGs it lacks (on the loop)
 *   lint.c   --lint FILE...: offline validation with the plane's messages
 *   metrics.c the figures for the sentinel (<state_dir>/metrics.prom)
 *   watch.c  inotify on local bundles (the periodic rescan stays the fallback)
 *   main.c   the role: timers, the scan thread, --once
 */
#ifndef REMEX_DAGPROC_H
#define REMEX_DAGPROC_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>

#include "remex/bundle.h"
#include "remex/dag.h"
#include "remex/err.h"
#include "remex/gitbundle.h"

#define DP_CACHE_MAX (256u * 1024 * 1024) /* cache file cap */
/* Bulk upload size: half the plane's default body_max (1 MiB); a 413 halves
 * it down to DP_BATCH_BYTES_MIN. */
#define DP_BATCH_BYTES     (512u * 1024)
#define DP_BATCH_BYTES_MIN (16u * 1024)
/* Uploads of one bundle's sync in flight at once (sync.c). */
#define DP_SYNC_WINDOW 2

/* One DAG of a file. */
struct dp_dag {
    char *dag_id;
    char hash[DAG_HASH_HEX];
    unsigned line, col; /* of its dag_id key (1:1 when not found) */
};

/* One import error of a file. */
struct dp_err {
    unsigned line, col;
    char *msg;
};

/* What a DAG file holds, keyed by its content hash. */
struct dp_entry {
    int is_dag;                   /* a .yaml/.yml file: parsed */
    char sha256[HASH_SHA256_HEX]; /* content the entry was made from ("" until parsed) */
    struct dp_dag *dags;
    size_t ndags;
    struct dp_err *errs;
    size_t nerrs;
    /* ndags canonical JSON texts (the parser's, each DAG's hash made of it; owned) when
     * parsed by this scan, for upload; else NULL. An entry holds no model: the text is
     * what is uploaded. */
    char **texts;
};

/* One bundle's scan: ent[i] describes files.v[i]. */
struct dp_state {
    struct bundle_files files;
    struct dp_entry *ent;
    char version[BUNDLE_VERSION_MAX];
    size_t ndagfiles; /* .yaml/.yml files */
    size_t hits;      /* DAG files taken from the cache */
    size_t parsed;    /* DAG files parsed by this scan */
    size_t nerrors;   /* import errors (files' own, before duplicates) */
};

/* ---- scan.c ---- */
int dp_is_dag_file(const char *rel);
/* Parses one file's text into *ent (ent->is_dag and sha256 set by the caller). keep: keep texts.
 * cap_ms: CPU time cap of the parse (dagyaml_parse_until; past it, an import error naming it). */
remex_err dp_parse(const char *data, size_t len, const char *rel, int keep, unsigned cap_ms,
                   struct dp_entry *ent, struct remex_error *e);
/* Reads and parses the file at path (size cap, time cap and read errors become import errors). */
remex_err dp_parse_file(const char *path, const char *rel, int keep, unsigned cap_ms,
                        struct dp_entry *ent, struct remex_error *e);
/* Called by dp_scan (in its thread) for each file it parsed that has texts (s->ent[i]);
 * it may take them (dp_entry_drop_texts: the sync parses the file again if it needs
 * them). out->version is set by then. */
struct dp_scan_hook {
    void (*parsed)(void *ud, struct dp_state *s, size_t i);
    void *ud;
};
/* Scans root into *out, reusing prev's hashes and parse results (prev may be NULL); each file
 * parsed under cap_ms of CPU time; hook (may be NULL) sees each parsed file. */
remex_err dp_scan(const char *root, const struct dp_state *prev, unsigned cap_ms,
                  const struct dp_scan_hook *hook, struct dp_state *out, struct remex_error *e);
/* The cap --lint parses under (dag_processor.parse_timeout's default). */
#define DP_PARSE_CAP_MS 5000u
void dp_entry_free(struct dp_entry *ent);
void dp_state_free(struct dp_state *s);
/* Releases the texts of an entry, or of every entry (after upload). */
void dp_entry_drop_texts(struct dp_entry *x);
void dp_state_drop_texts(struct dp_state *s);

/*
 * DAG ids defined in more than one file: for each such definition calls
 * fn(ud, file index, line, col, message naming the other file). names[i] is
 * file i's name; ent[i] its entry. Returns the number of duplicate definitions.
 */
typedef void (*dp_dup_fn)(void *ud, size_t file, unsigned line, unsigned col, const char *msg);
size_t dp_duplicates(const char *const *names, const struct dp_entry *const *ent, size_t n,
                     dp_dup_fn fn, void *ud);

/* The manifest of a scan: {bundle, version, files: [{path, dags}], import_errors}. */
json_t *dp_manifest(const char *bundle, const struct dp_state *s, size_t *nerrors);

/* ---- cache.c ---- */
/* Loads path into *out (files and entries, no texts); REMEX_ENOTFOUND when absent. */
remex_err dp_cache_load(const char *path, const char *root, struct dp_state *out,
                        struct remex_error *e);
/* Writes s to path atomically (temporary file, fsync, rename). */
remex_err dp_cache_save(const char *path, const char *root, const struct dp_state *s,
                        struct remex_error *e);

/* ---- lint.c ---- */
/* --lint FILE...: prints file:line:col: message lines; returns an exit code. */
int dp_lint(int argc, char **argv);

#endif

/* ---- the role (main.c, sync.c) ---- */

struct role;
struct api_client;
struct evloop;
struct dagproc;

/* A bundle's figures (metrics.c). */
struct dp_counters {
    uint64_t parsed, hits, uploads, failures;
    uint64_t scan_ms, sync_ms;
    int64_t last_ok_unix_ms;
    char plane_version[BUNDLE_VERSION_MAX];
};

/* One configured bundle. */
struct dp_bundle {
    struct dagproc *dp;
    char *name;
    char *root; /* absolute; git: the checkout (and subdir) of the last scan, NULL before */
    char cache_path[4096];
    char *cache_id; /* what the cache is of: the folder, or "git:<url>#<subdir>" */
    int is_git;
    struct gitbundle_opts git; /* git: borrows from the configuration */
    char *git_dir;             /* <state_dir>/bundles/<name> */
    const char *subdir;
    struct dp_state cur; /* the last good scan (its cache is on disk) */
    int have_cur;
    int pending;  /* a scan is wanted */
    int scanning; /* the scan thread holds this bundle */
    uint64_t refresh_timer;
    /* sync (sync.c) */
    int syncing;
    int sync_wanted;               /* a scan is waiting for the session */
    char synced[HASH_SHA256_HEX];  /* digest of the last manifest the plane took */
    uint64_t synced_ms;            /* when it took it (loop clock) */
    char sending[HASH_SHA256_HEX]; /* digest of the manifest being synced */
    json_t *missing;               /* dag ids the plane asked for */
    json_t *where;                 /* dag_id -> file index, built when needed */
    size_t next_missing, inflight, uploaded, upload_failed, nerrors;
    size_t streamed; /* DAGs the stream stored before this sync's manifest */
    json_t *redo;    /* dag ids of batches answered 413, to batch again (owned) */
    json_t *alone;   /* dag ids to upload one by one with PUT (owned) */
    size_t next_redo, next_alone, too_large;
    struct dp_upload { /* the uploads in flight (sync.c; SYNC_WINDOW of them) */
        struct dp_bundle *b;
        json_t *ids; /* its dag ids (owned), NULL: the slot is free */
    } up[DP_SYNC_WINDOW];
    size_t batch_bytes; /* JSON bytes per bulk upload (DP_BATCH_BYTES, halved on a 413) */
    unsigned sync_failures;
    uint64_t retry_timer;
    uint64_t sync_start_ms;
    int once_done;
    struct dp_counters m;
    uint64_t watch_timer; /* watch.c: debounce of inotify events */
    int watch_warned;
};

/* An inotify watch descriptor and the bundle it belongs to. */
struct dp_watch {
    int wd;
    struct dp_bundle *b;
};

struct rolehttp;

/* stream.c: one batch of encoded DAGs of a cold scan (owned texts). */
struct dp_batch {
    struct dp_batch *next;
    struct dp_bundle *b;
    char version[BUNDLE_VERSION_MAX];
    char **texts; /* API_DAGS_BULK_MAX slots, n used (owned) */
    size_t *lens;
    size_t n, bytes;
};

/* stream.c: the upload of a cold scan while it goes on. */
struct dp_stream {
    int inited;
    pthread_mutex_t mu;
    pthread_cond_t cv;                   /* the queue shrank, or stop */
    int fd;                              /* eventfd: batches queued */
    struct dp_batch *head;               /* under mu: queued batches (the loop pops) */
    struct dp_batch **tail;              /* under mu */
    size_t queued_bytes;                 /* under mu */
    int on;                              /* under mu: batches are taken (off: stopped or failed) */
    int stop;                            /* under mu: the role stops */
    struct dp_batch *cur;                /* scan thread: the batch being filled */
    json_t *seen;                        /* scan thread: DAG ids streamed (owned) */
    struct dp_bundle *th_b;              /* scan thread: the bundle scanned */
    char th_version[BUNDLE_VERSION_MAX]; /* scan thread: git: the commit, else "" */
    size_t batch_bytes;                  /* scan thread */
    size_t inflight, stored, failed;     /* loop */
    struct dp_bundle *sync_after;        /* loop: its sync starts once the stream drained */
};

struct dagproc {
    struct rolehttp *http; /* dag_processor.listen: its probes and metrics, or NULL */
    struct role *r;
    struct api_client *api;
    struct evloop *loop;
    struct dp_bundle *b;
    size_t nb;
    int efd;        /* the scan thread's completion eventfd */
    int th_running; /* a scan thread exists (joined on completion) */
    struct dp_bundle *th_bundle;
    struct dp_state th_out;
    char *th_root;             /* git: the folder scanned */
    int th_same;               /* git: tracking_ref still at the scanned commit, nothing scanned */
    size_t th_pruned, th_held; /* git: checkouts removed, and kept because a task holds them */
    remex_err th_rc;
    uint64_t th_ms; /* the scan's duration */
    struct remex_error th_err;
    int ifd; /* inotify (watch.c), -1 when unavailable */
    int metrics_warned;
    struct dp_watch *watch;
    size_t nwatch, capwatch;
    /* The agent's bundles (lib bundle): snapshots of versioned local bundles, taken by the
     * scan thread only (one scan at a time) before their version is synced. */
    struct bundle_set *set;
    struct dp_stream stream;
    int th_stream;         /* this scan streams its DAGs (stream.c) */
    int th_snap;           /* the scan made a snapshot of its version */
    size_t th_snap_pruned; /* old snapshots removed after it */
    size_t once_errors;    /* import errors seen by --once */
    int once_failed;       /* a scan or sync failed under --once */
};

/* stream.c */
remex_err dp_stream_init(struct dagproc *dp, struct remex_error *e);
/* Scan thread: the stream of b's scan starts (version: git's commit, NULL: the scan's);
 * *hook is to be passed to dp_scan. dp_stream_end queues the last batch. */
void dp_stream_begin(struct dagproc *dp, struct dp_bundle *b, const char *version,
                     struct dp_scan_hook *hook);
void dp_stream_end(struct dagproc *dp);
/* Loop: batches queued or in flight. */
int dp_stream_busy(struct dagproc *dp);
/* Loop: sends queued batches (session up); starts stream.sync_after's sync once drained. */
void dp_stream_pump(struct dagproc *dp);
/* Wakes a scan thread waiting on a full queue (before joining it); then free. */
void dp_stream_stop(struct dagproc *dp);
void dp_stream_free(struct dagproc *dp);

/* sync.c: starts syncing b->cur with the plane (once registered). */
void dp_sync_start(struct dp_bundle *b);
/* sync.c: the session is up, or the plane reachable again: runs the syncs that waited. */
void dp_sync_registered(struct dagproc *dp);
void dp_sync_free(struct dp_bundle *b);
/* metrics.c: rewrites <dag_processor.state_dir>/metrics.prom. */
void dp_metrics_write(struct dagproc *dp);
/* The dag-processor's metric families (Prometheus text) appended to out. */
void dp_metrics_text(struct dagproc *dp, struct buf *out);

/* watch.c */
remex_err dp_watch_start(struct dagproc *dp, struct remex_error *e);
/* Watches b's root and the folders of its last scan (local bundles). */
void dp_watch_bundle(struct dp_bundle *b);
void dp_watch_stop(struct dagproc *dp);
/* main.c: dag_processor.parse_timeout in ms (the per-file CPU time cap of a parse). */
unsigned dp_parse_cap_ms(const struct dagproc *dp);
/* main.c: starts the next wanted scan when the scan thread is free. */
void dp_kick(struct dagproc *dp);
/* main.c: a bundle's sync ended (ok: the plane has the manifest and every DAG). */
void dp_synced(struct dp_bundle *b, int ok);
