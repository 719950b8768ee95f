/*
 * bundle: named folders of DAG files and task code, at a version.
 *
 * A bundle set is built from the agent configuration (`bundles: [{name, path,
 * versioned}]`). A local bundle is a folder; its version is a content hash
 * (bundle_version). Names match [A-Za-z0-9_.-]{1,64} and are unique within a
 * set.
 *
 * Versions (docs/bundles.md): a task is scheduled with the version of the
 * bundle its DAG was read from. For a versioned local bundle (the default),
 * bundle_path answers the folder only while the folder's content is still that
 * version; once the folder changed, the version cannot be had and the task
 * fails with both versions named. A bundle marked `versioned: false` runs
 * every task in the folder as it is, whatever version it was scheduled with.
 *
 * Scanning: bundle_scan_dir walks a folder once, stats every regular file
 * and hashes the content of only those whose (size, mtime, ctime, inode)
 * changed since a previous scan the caller hands in; a file changed less than
 * BUNDLE_RACY_NS before a scan is never trusted by the next one (the racy
 * file problem of stat caches). The set keeps its last scan per bundle, so a
 * worker computes an unchanged bundle's version with stat calls only.
 *
 * Snapshots: a versioned local bundle whose spec has a state_dir runs each
 * task in a read-only snapshot of the version it was scheduled with,
 * <state_dir>/bundles/<name>/<64 hex>/, taken while the folder held that
 * version (bundle_snapshot, or bundle_path at first use). Files are copied and
 * checked against the scan's content hashes; a file unchanged since the
 * previous snapshot this set made is hard-linked from it (snapshots are never
 * written to, so sharing their inodes is safe; the live folder's files are
 * never linked, since an editor writing in place would change the snapshot).
 * Without a state_dir the folder itself is used while it holds the version.
 *
 * Git bundles (gitbundle.h): the version is a commit SHA and tasks run in
 * that commit's checkout, <state_dir>/bundles/<name>/<sha>/<subdir>, made by
 * the dag-processor before it syncs the version, or by the worker
 * (gitbundle_fetch + gitbundle_checkout) when it is missing. bundle_path only
 * looks the checkout up (no network, no libgit2 here).
 *
 * Not thread-safe: one set per thread.
 */
#ifndef REMEX_BUNDLE_H
#define REMEX_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "remex/err.h"
#include "remex/hash.h"

#define BUNDLE_MAX_FILES   100000
#define BUNDLE_MAX_BYTES   (1ull << 30)
#define BUNDLE_MAX_DEPTH   64 /* nested folders below a bundle root */
#define BUNDLE_VERSION_MAX 72 /* "sha256:" + 64 hex + NUL fits */
#define BUNDLE_RACY_NS     2000000000LL

struct cfg_secret;

/* A local bundle sets path; a git bundle sets url (and state_dir), never both. */
struct bundle_spec {
    const char *name;
    const char *path; /* folder; made absolute when the set is built */
    int unversioned;  /* `versioned: false`: tasks run in the folder as it is */
    /* git (gitbundle.h) */
    const char *url;
    const char *ref;                /* tracking_ref (NULL: "main") */
    const char *subdir;             /* relative folder of the repository, NULL: root */
    const char *state_dir;          /* the agent's; checkouts in <state_dir>/bundles/<name> */
    const struct cfg_secret *token; /* borrowed for the set's life, may be NULL */
};

/* One regular file of a scan. */
struct bundle_file {
    char *rel; /* path below the root, '/'-separated (owned) */
    uint64_t size;
    int64_t mtime_ns; /* st_mtim */
    int64_t ctime_ns; /* st_ctim */
    uint64_t ino;
    uint32_t mode;                /* st_mode (snapshots keep the owner's execute bit) */
    int racy;                     /* changed within BUNDLE_RACY_NS of the scan: rehash next time */
    char sha256[HASH_SHA256_HEX]; /* content */
};

/* A scan: files sorted by rel (strcmp). */
struct bundle_files {
    struct bundle_file *v;
    size_t n;
    size_t hashed; /* files whose content was read by this scan */
};

struct bundle_set;

/* Validates every spec (name, folder exists) and copies them. */
remex_err bundle_set_new(const struct bundle_spec *specs, size_t n, struct bundle_set **out,
                         struct remex_error *e);
void bundle_set_free(struct bundle_set *b);
/* Name of the i-th bundle (borrowed), NULL past the end. */
const char *bundle_name(const struct bundle_set *b, size_t i);
/* Absolute folder of local bundle name (borrowed), NULL for an unknown or git bundle. */
const char *bundle_root(const struct bundle_set *b, const char *name);
/* The git cache folder of bundle name, <state_dir>/bundles/<name>; NULL unless a git bundle. */
const char *bundle_git_dir(const struct bundle_set *b, const char *name);

/*
 * Folder in which tasks of bundle `name` at `version` run (borrowed, valid
 * until bundle_set_free). version NULL or "" means the current content.
 * REMEX_ENOTFOUND for an unknown bundle; REMEX_ECONFLICT when the bundle is
 * versioned and its folder no longer holds `version` (the message names the
 * bundle, the version asked and the folder's current version); a scan error
 * otherwise (REMEX_EIO, REMEX_ETOOBIG). With snapshots (see above): the
 * snapshot folder of version, made now when the folder holds version;
 * REMEX_ECONFLICT naming both versions when there is no snapshot and the
 * folder holds another; REMEX_EINVAL for a version that is no
 * "sha256:<64 hex>". Git bundles: REMEX_EINVAL without a commit SHA,
 * REMEX_ENOTFOUND when that commit is not checked out here.
 */
remex_err bundle_path(struct bundle_set *b, const char *name, const char *version,
                      const char **path, struct remex_error *e);

/*
 * Keeps the checkout of a git bundle's version, or the snapshot of a local
 * one's, from being pruned while a task runs in it: *fd is the folder opened
 * (O_CLOEXEC) with a shared flock(2), held until the caller closes it;
 * bundle_prune_dir never removes a folder someone holds. Local bundles without
 * snapshots (`versioned: false`, no state_dir) and an empty local version:
 * *fd = -1 (nothing to hold). REMEX_ENOTFOUND when the folder is gone or
 * being pruned.
 */
remex_err bundle_hold(const struct bundle_set *b, const char *name, const char *version, int *fd,
                      struct remex_error *e);

/*
 * Holds the version folder dir (a checkout or a snapshot) as bundle_hold does:
 * *fd gets it with a shared flock; REMEX_ENOTFOUND (no message) when it is gone
 * or being pruned.
 */
remex_err bundle_hold_dir(const char *dir, int *fd);

/*
 * Snapshot of versioned local bundle name at the folder's current version
 * (written to version): made unless it exists (*made = 1 when made now).
 * REMEX_EINVAL for a bundle without snapshots; REMEX_ECONFLICT when a file
 * changed while it was copied (try again later); scan errors as bundle_version.
 */
remex_err bundle_snapshot(struct bundle_set *b, const char *name, char version[BUNDLE_VERSION_MAX],
                          int *made, struct remex_error *e);
/*
 * Snapshot of versioned local bundle name at version, from scan (a
 * bundle_scan_dir of its folder whose version is version): made unless it
 * exists (*made = 1 when made now), each file checked against the scan's
 * hash, so no second hashing pass. REMEX_EINVAL for a bundle without
 * snapshots or a version that is not the scan's; REMEX_ECONFLICT when a file
 * no longer holds the scan's content (the folder changed: scan again).
 */
remex_err bundle_snapshot_scan(struct bundle_set *b, const char *name,
                               const struct bundle_files *scan, const char *version, int *made,
                               struct remex_error *e);
/* Folder of the snapshots of name (<state_dir>/bundles/<name>, borrowed), or NULL. */
const char *bundle_snapshot_dir(const struct bundle_set *b, const char *name);
/* Snapshots this set made of name, and the files they linked from the previous one. */
void bundle_snapshot_counts(const struct bundle_set *b, const char *name, size_t *made,
                            size_t *linked);

/*
 * Removes the version folders of dir (40-hex commit checkouts and 64-hex local
 * snapshots) beyond the newest keep (by folder mtime, the time it was made),
 * never one named in spare (n names: a SHA, "sha256:<hex>" or <hex>) and
 * never one a task holds (bundle_hold's shared flock: the pruner takes it
 * exclusively, renames the folder away, then deletes it). Returns the number
 * removed; *held counts those skipped because a task holds them. Work folders
 * (".tmp-…-PID", ".prune-…-PID") of processes that no longer exist are removed too.
 */
size_t bundle_prune_dir(const char *dir, size_t keep, const char *const *spare, size_t n,
                        size_t *held);
/* Removes a folder tree (read-only folders in it included); never follows links. */
void bundle_remove_tree(const char *path);

/*
 * Content version of a local bundle: "sha256:<hex>" over, for each regular
 * file in rel order, "rel\0size\0<sha256 hex of content>\0" (".git" and
 * dot-files skipped, symlinks not followed). Caps: BUNDLE_MAX_FILES files,
 * BUNDLE_MAX_BYTES bytes, BUNDLE_MAX_DEPTH levels of folders (REMEX_ETOOBIG
 * past any of them). Uses and refreshes the set's stat cache.
 */
remex_err bundle_version(struct bundle_set *b, const char *name, char out[BUNDLE_VERSION_MAX],
                         struct remex_error *e);

/*
 * Scans the folder root into *out (initialised here; free with
 * bundle_files_free) and writes its version as bundle_version does. prev
 * (sorted, may be NULL) lends content hashes of unchanged files. Caps and
 * skipped entries as bundle_version.
 */
remex_err bundle_scan_dir(const char *root, const struct bundle_files *prev,
                          struct bundle_files *out, char version[BUNDLE_VERSION_MAX],
                          struct remex_error *e);
/* The version of a scan (as bundle_version). */
remex_err bundle_files_version(const struct bundle_files *f, char version[BUNDLE_VERSION_MAX],
                               struct remex_error *e);
/* Index of rel in f, or -1. */
long bundle_files_find(const struct bundle_files *f, const char *rel);
void bundle_files_free(struct bundle_files *f);

#endif
