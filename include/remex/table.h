/*
 * table: aligned plain-text tables for command-line output.
 *
 *     struct table t;
 *     table_init(&t, 3, (const char *const[]){"ID", "NAME", "STATE"});
 *     table_add(&t, (const char *const[]){"1", "agent-eu-1", "running"});
 *     table_render(&t, &out, NULL);   // "ID  NAME        STATE\n1   agent-eu-1  running\n"
 *     table_free(&t);
 *
 * Columns are separated by two spaces and padded to the widest cell, counted
 * in UTF-8 code points; the last column is never padded. Cells come from
 * untrusted peers, so they are sanitised when added: C0/C1 control bytes and
 * DEL (tabs, newlines and terminal escapes included) become '?', and invalid
 * UTF-8 bytes become '?'. A NULL cell renders as "-". Cells longer than
 * TABLE_CELL_MAX bytes are cut (on a code point boundary) and end in "...".
 *
 * Ownership: table_init and table_add copy every string; the table owns its
 * copies until table_free. Errors: REMEX_EINVAL (ncols 0 or over
 * TABLE_MAX_COLS, NULL headers), REMEX_ETOOBIG (more than TABLE_MAX_ROWS rows,
 * or out's cap), REMEX_ENOMEM. On error the table and out are unchanged.
 * Thread-safety: a table belongs to one thread at a time.
 */
#ifndef REMEX_TABLE_H
#define REMEX_TABLE_H

#include <stddef.h>

#include "remex/buf.h"
#include "remex/err.h"

#define TABLE_MAX_COLS 32
#define TABLE_MAX_ROWS 1000000
#define TABLE_CELL_MAX 4096

struct table {
    size_t ncols;
    size_t nrows;  /* rows added, headers not included */
    size_t alloc;  /* rows allocated */
    char **cells;  /* (nrows + 1) * ncols owned strings; row 0 holds the headers */
    size_t *width; /* per column, in code points */
};

/* headers: ncols strings (copied). */
remex_err table_init(struct table *t, size_t ncols, const char *const *headers);
/* cells: t->ncols strings or NULLs (copied). */
remex_err table_add(struct table *t, const char *const *cells);
/* Appends the table to out; headers are omitted when no_headers is set. */
remex_err table_render(const struct table *t, int no_headers, struct buf *out);
void table_free(struct table *t);

/*
 * Copies src into dst (dstsz bytes, NUL-terminated) with the sanitising rules
 * above. Returns the number of code points written. dstsz 0 writes nothing.
 */
size_t table_sanitize(char *dst, size_t dstsz, const char *src);

#endif
