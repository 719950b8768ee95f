/*
 * bundle: named folders of DAG files and task code, at a version.
 *
 * A bundle set is built from the agent configuration (`bundles: [{name, path}]`).
 * Local bundles are folders used in place: tasks run in the folder as it is,
 * and the bundle's version is a content hash (see bundle_version). Git bundles
 * plug in behind the same calls (resolve a version to a checkout folder).
 * Names match [A-Za-z0-9_.-]{1,64} and are unique within a set.
 */
#ifndef REMEX_BUNDLE_H
#define REMEX_BUNDLE_H

#include <stddef.h>

#include "remex/err.h"

#define BUNDLE_MAX_FILES 100000
#define BUNDLE_MAX_BYTES (1ull << 30)
#define BUNDLE_MAX_DEPTH 64 /* nested folders below a bundle root */

struct bundle_spec {
    const char *name;
    const char *path; /* folder; made absolute when the set is built */
};

struct bundle_set;

/* Validates every spec (name, folder exists) and copies them. */
remex_err bundle_set_new(const struct bundle_spec *specs, size_t n, struct bundle_set **out,
                         struct remex_error *e);
void bundle_set_free(struct bundle_set *b);
/* Name of the i-th bundle (borrowed), NULL past the end. */
const char *bundle_name(const struct bundle_set *b, size_t i);

/*
 * Folder in which tasks of bundle `name` at `version` run (borrowed, valid
 * until bundle_set_free). version may be NULL (current). Local bundles have
 * only their current content: any version resolves to the folder.
 * REMEX_ENOTFOUND for an unknown bundle.
 */
remex_err bundle_path(const struct bundle_set *b, const char *name, const char *version,
                      const char **path, struct remex_error *e);

/*
 * Content version of a local bundle: "sha256:<hex>" over the sorted relative
 * paths, sizes and contents of its regular files (".git" and dot-files skipped,
 * symlinks not followed). Caps: BUNDLE_MAX_FILES files, BUNDLE_MAX_BYTES bytes,
 * BUNDLE_MAX_DEPTH levels of folders (REMEX_ETOOBIG past any of them).
 */
remex_err bundle_version(const struct bundle_set *b, const char *name, char out[72],
                         struct remex_error *e);

#endif
