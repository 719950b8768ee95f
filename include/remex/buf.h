/*
 * buf: an owned, growable byte buffer with a hard cap.
 *
 * Invariants: len <= alloc - 1 when data != NULL, data[len] == '\0' (so the
 * contents can be used as a C string when they hold no NUL), len <= max.
 * An append that would pass max fails with REMEX_ETOOBIG and leaves the
 * buffer unchanged. buf_free releases the memory and leaves the buffer empty
 * and reusable with the same cap. The owner of the struct owns data.
 */
#ifndef REMEX_BUF_H
#define REMEX_BUF_H

#include <stddef.h>

#include "remex/err.h"

struct buf {
    char *data;   /* NULL until the first append */
    size_t len;   /* bytes in use */
    size_t alloc; /* bytes allocated (including the NUL slot) */
    size_t max;   /* hard cap on len */
};

/* Static initialiser: struct buf b = BUF_INIT(64 * 1024); */
#define BUF_INIT(cap)                                                                              \
    {                                                                                              \
        NULL, 0, 0, (cap)                                                                          \
    }

void buf_init(struct buf *b, size_t max);
remex_err buf_append(struct buf *b, const void *p, size_t n);
remex_err buf_puts(struct buf *b, const char *s);
remex_err buf_putc(struct buf *b, char c);
remex_err buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Ensures room for n more bytes without changing len. */
remex_err buf_reserve(struct buf *b, size_t n);
/* The contents as a C string; "" for an empty buffer, never NULL. */
const char *buf_cstr(const struct buf *b);
/* Drops the first n bytes (n > len drops all). */
void buf_consume(struct buf *b, size_t n);
/* Sets len to 0, keeps the memory. */
void buf_reset(struct buf *b);
/* Releases the memory; the buffer stays usable with the same cap. */
void buf_free(struct buf *b);
/*
 * Hands the contents to the caller (who must free() them) and leaves the buffer
 * empty. Returns a NUL-terminated string ("" allocated if empty), or NULL on ENOMEM.
 */
char *buf_detach(struct buf *b, size_t *len);

#endif
