/* table: aligned plain-text tables (see include/remex/table.h). */
#include "remex/table.h"

#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *s)
{
    size_t n, i;
    unsigned cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        n = 2;
        cp = s[0] & 0x1Fu;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        n = 3;
        cp = s[0] & 0x0Fu;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        n = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0; /* overlong or out of range */
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return 0; /* surrogate */
    if (cp >= 0x80 && cp <= 0x9F)
        return 0; /* C1 control */
    return n;
}

/* Writes at most limit bytes of sanitised src into dst (no NUL); *cut is set
 * when src did not fit. Returns the bytes written; *cps gets code points. */
static size_t sanitize_into(char *dst, size_t limit, const unsigned char *s, size_t *cps, int *cut)
{
    size_t o = 0;

    *cps = 0;
    *cut = 0;
    while (*s) {
        size_t n = utf8_seq(s);
        int bad = n == 0 || (n == 1 && (*s < 0x20 || *s == 0x7F));

        if (o + (bad ? 1 : n) > limit) {
            *cut = 1;
            break;
        }
        if (bad) {
            dst[o++] = '?';
            s++;
        } else {
            memcpy(dst + o, s, n);
            o += n;
            s += n;
        }
        (*cps)++;
    }
    return o;
}

size_t table_sanitize(char *dst, size_t dstsz, const char *src)
{
    const unsigned char *s = (const unsigned char *)(src ? src : "-");
    size_t limit, o, cps;
    int cut;

    if (dstsz == 0)
        return 0;
    limit = (dstsz < TABLE_CELL_MAX ? dstsz : TABLE_CELL_MAX) - 1;
    o = sanitize_into(dst, limit, s, &cps, &cut);
    if (cut && limit >= 3) {
        o = sanitize_into(dst, limit - 3, s, &cps, &cut);
        memcpy(dst + o, "...", 3);
        o += 3;
        cps += 3;
    }
    dst[o] = '\0';
    return cps;
}

static void free_cells(char **cells, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(cells[i]);
        cells[i] = NULL;
    }
}

/* Copies n sanitised cells into row (owned strings) and widens widths. */
static remex_err copy_row(char **row, size_t *width, size_t n, const char *const *cells)
{
    char tmp[TABLE_CELL_MAX];
    size_t w[TABLE_MAX_COLS];
    size_t i;

    for (i = 0; i < n; i++) {
        w[i] = table_sanitize(tmp, sizeof(tmp), cells[i]);
        row[i] = strdup(tmp);
        if (row[i] == NULL) {
            free_cells(row, i);
            return REMEX_ENOMEM;
        }
    }
    for (i = 0; i < n; i++)
        if (w[i] > width[i])
            width[i] = w[i];
    return REMEX_OK;
}

remex_err table_init(struct table *t, size_t ncols, const char *const *headers)
{
    remex_err rc;

    memset(t, 0, sizeof(*t));
    if (ncols == 0 || ncols > TABLE_MAX_COLS || headers == NULL)
        return REMEX_EINVAL;
    t->cells = calloc(8 * ncols, sizeof(char *));
    t->width = calloc(ncols, sizeof(size_t));
    if (t->cells == NULL || t->width == NULL) {
        table_free(t);
        return REMEX_ENOMEM;
    }
    t->ncols = ncols;
    t->alloc = 8;
    rc = copy_row(t->cells, t->width, ncols, headers);
    if (rc != REMEX_OK)
        table_free(t);
    return rc;
}

remex_err table_add(struct table *t, const char *const *cells)
{
    size_t saved[TABLE_MAX_COLS];
    remex_err rc;

    if (t->cells == NULL || cells == NULL)
        return REMEX_EINVAL;
    if (t->nrows >= TABLE_MAX_ROWS)
        return REMEX_ETOOBIG;
    if (t->nrows + 1 >= t->alloc) {
        size_t na = t->alloc * 2;
        char **nc = realloc(t->cells, na * t->ncols * sizeof(char *));

        if (nc == NULL)
            return REMEX_ENOMEM;
        t->cells = nc;
        t->alloc = na;
    }
    memcpy(saved, t->width, t->ncols * sizeof(size_t));
    rc = copy_row(t->cells + (t->nrows + 1) * t->ncols, t->width, t->ncols, cells);
    if (rc != REMEX_OK) {
        memcpy(t->width, saved, t->ncols * sizeof(size_t));
        return rc;
    }
    t->nrows++;
    return REMEX_OK;
}

static size_t cps_of(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

remex_err table_render(const struct table *t, int no_headers, struct buf *out)
{
    size_t saved = out->len, r, c;
    remex_err rc = REMEX_OK;

    if (t->cells == NULL)
        return REMEX_EINVAL;
    for (r = no_headers ? 1 : 0; r <= t->nrows && rc == REMEX_OK; r++) {
        for (c = 0; c < t->ncols && rc == REMEX_OK; c++) {
            const char *cell = t->cells[r * t->ncols + c];

            rc = buf_puts(out, cell);
            if (c + 1 < t->ncols)
                rc = rc ? rc : buf_printf(out, "%*s", (int)(t->width[c] - cps_of(cell) + 2), "");
        }
        rc = rc ? rc : buf_putc(out, '\n');
    }
    if (rc != REMEX_OK) {
        out->len = saved;
        if (out->data)
            out->data[saved] = '\0';
    }
    return rc;
}

void table_free(struct table *t)
{
    if (t->cells)
        free_cells(t->cells, (t->nrows + 1) * t->ncols);
    free(t->cells);
    free(t->width);
    memset(t, 0, sizeof(*t));
}
