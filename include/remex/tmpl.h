/*
 * tmpl: template expansion for task commands, shell strings and env values.
 *
 * Syntax: `{{ NAME }}` where NAME is an identifier path
 * `[A-Za-z_][A-Za-z0-9_]*(.[A-Za-z0-9_-]+)*`, with optional spaces inside the
 * braces. `{{ '...' }}` or `{{ "..." }}` expands to the quoted text verbatim (the
 * way to write a literal `{{`). Everything else is copied unchanged. An unknown
 * name, an unclosed `{{` or a malformed expression is an error naming the column
 * (1-based byte offset) — a template never silently expands to empty.
 * Expansion is single pass: values are not re-expanded.
 */
#ifndef REMEX_TMPL_H
#define REMEX_TMPL_H

#include <jansson.h>
#include <stddef.h>

#include "remex/buf.h"
#include "remex/err.h"

/*
 * Resolves one name (not NUL-terminated: name[0..len)) by appending its value
 * to out. Returns REMEX_OK, REMEX_ENOTFOUND for an unknown name (the expander
 * writes the message), or another error with e filled.
 */
typedef remex_err (*tmpl_lookup_fn)(void *ctx, const char *name, size_t len, struct buf *out,
                                    struct remex_error *e);

/* Appends the expansion of in[0..len) to out (whose cap bounds the result). */
remex_err tmpl_expand(const char *in, size_t len, tmpl_lookup_fn lookup, void *ctx, struct buf *out,
                      struct remex_error *e);

/* The variables of one task instance try. All strings borrowed. */
struct tmpl_task_vars {
    const char *dag_id;
    const char *task_id;
    const char *run_id;
    long long try_number;
    long long map_index;
    long long logical_date;        /* epoch seconds, UTC */
    long long data_interval_start; /* epoch seconds, UTC */
    long long data_interval_end;   /* epoch seconds, UTC */
    const json_t *params;          /* borrowed object or NULL */
    const json_t *conf;            /* borrowed object or NULL (dag run conf) */
};

/*
 * Lookup for struct tmpl_task_vars (ctx). Names: ds (YYYY-MM-DD), ds_nodash,
 * ts (RFC 3339, +00:00 offset as Airflow), ts_nodash, logical_date,
 * data_interval_start, data_interval_end, run_id, dag_id, task_id, try_number,
 * map_index, params.NAME, conf.NAME (strings verbatim, other JSON values
 * serialised compactly). Unknown names and missing params are REMEX_ENOTFOUND.
 */
remex_err tmpl_task_lookup(void *ctx, const char *name, size_t len, struct buf *out,
                           struct remex_error *e);

#endif
