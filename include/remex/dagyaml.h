/*
 * dagyaml: YAML DAG files (docs/dag-format.md) into DAG models.
 *
 * A file holds one YAML document whose top level is either one DAG mapping
 * or a mapping with the single key `dags` listing DAG mappings. Tasks are a
 * list of mappings, each with `task_id`. `default_args` apply to every task
 * that does not set the key itself (env and limits are merged key by key).
 * Durations accept seconds (number) or "30s", "5m", "1h30m"; sizes accept
 * bytes or "64MiB"; dates accept "2026-01-01" (midnight UTC) or RFC 3339.
 * Where a string is expected, any non-null scalar is taken verbatim.
 *
 * Every problem becomes a diagnostic with a 1-based line and column (unknown
 * keys with a did-you-mean suggestion, wrong types, validation errors at the
 * node at fault). Up to DAGYAML_DIAGS_MAX diagnostics are kept. A file with
 * any diagnostic yields no DAG. Refused: files over DAGYAML_FILE_MAX bytes,
 * invalid UTF-8 or NUL bytes, anchors and aliases, tags, nesting deeper than
 * DAGYAML_DEPTH_MAX, more than one document, duplicate mapping keys.
 *
 * Templates ({{ ds }}, ...) are kept verbatim. Thread-safe (no globals).
 */
#ifndef REMEX_DAGYAML_H
#define REMEX_DAGYAML_H

#include <stddef.h>

#include "remex/buf.h"
#include "remex/dag.h"
#include "remex/err.h"

#define DAGYAML_FILE_MAX  (1024 * 1024)
#define DAGYAML_DIAGS_MAX 20
#define DAGYAML_DEPTH_MAX 32
#define DAGYAML_DAGS_MAX  1000 /* DAGs per file */

struct dagyaml_diag {
    unsigned line;   /* 1-based */
    unsigned column; /* 1-based */
    char msg[REMEX_ERRMSG_MAX];
};

/* Owned by the caller; release with dagyaml_result_free. */
struct dagyaml_result {
    struct dag **dags; /* ndags owned models, in file order; none when ndiags > 0 */
    size_t ndags;
    /* texts[i]: dags[i]'s canonical JSON (dag_to_json's text, the one its hash was
     * made of; owned, NULL-able: a caller may take one and leave NULL). */
    char **texts;
    struct dagyaml_diag diags[DAGYAML_DIAGS_MAX];
    size_t ndiags;
    int more_diags; /* diagnostics beyond the cap were dropped */
};

/*
 * Parses len bytes of YAML. fileloc (borrowed) is the file's path in the
 * bundle, recorded in each DAG and used as the file name in messages.
 * Returns REMEX_OK (no diagnostics), REMEX_EPARSE (see res->diags; e holds
 * the first as "file:line:col: message"), or REMEX_ENOMEM. res is always
 * initialised and must be freed.
 */
remex_err dagyaml_parse(const char *data, size_t len, const char *fileloc,
                        struct dagyaml_result *res, struct remex_error *e);

/*
 * As dagyaml_parse, with a cap of cap_ms milliseconds of the calling
 * thread's CPU time (0: none) on the whole parse (YAML, conversion,
 * validation), checked every 1024 YAML events, every 64 tasks and around
 * each DAG's validation: past it the file gets one diagnostic, at the
 * position reached, "parsing took longer than the N ms cap per file", and
 * no DAG. CPU time, not wall time: a loaded machine does not trip it.
 */
remex_err dagyaml_parse_until(const char *data, size_t len, const char *fileloc, unsigned cap_ms,
                              struct dagyaml_result *res, struct remex_error *e);

/*
 * Reads the regular file at path (at most DAGYAML_FILE_MAX bytes) and parses
 * it. REMEX_EIO / REMEX_ETOOBIG when it cannot be read (res then has one
 * diagnostic at 1:1), else as dagyaml_parse.
 */
remex_err dagyaml_parse_file(const char *path, const char *fileloc, struct dagyaml_result *res,
                             struct remex_error *e);

/* Appends "file:line:col: message\n" for each diagnostic to out. */
remex_err dagyaml_format_diags(const struct dagyaml_result *res, const char *file, struct buf *out);

void dagyaml_result_free(struct dagyaml_result *res);

#endif
