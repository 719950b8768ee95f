/* buf: owned growable buffer with a hard cap. */
#include "remex/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->max = max;
}

remex_err buf_reserve(struct buf *b, size_t n)
{
    size_t need, want;
    char *p;

    /* len + n + 1 must fit both the cap and size_t (the NUL slot). */
    if (n > b->max || b->len > b->max - n || n >= SIZE_MAX - b->len)
        return REMEX_ETOOBIG;
    need = b->len + n + 1;
    if (need <= b->alloc)
        return REMEX_OK;
    want = b->alloc ? b->alloc : 64;
    while (want < need)
        want = want > SIZE_MAX / 2 ? need : want * 2;
    if (b->max < SIZE_MAX && want > b->max + 1)
        want = b->max + 1;
    p = realloc(b->data, want);
    if (p == NULL)
        return REMEX_ENOMEM;
    b->data = p;
    b->alloc = want;
    return REMEX_OK;
}

remex_err buf_append(struct buf *b, const void *p, size_t n)
{
    remex_err rc = buf_reserve(b, n);
    if (rc != REMEX_OK)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return REMEX_OK;
}

remex_err buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

remex_err buf_putc(struct buf *b, char c)
{
    return buf_append(b, &c, 1);
}

remex_err buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    remex_err rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return REMEX_EINVAL;
    rc = buf_reserve(b, (size_t)n);
    if (rc != REMEX_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return REMEX_OK;
}

const char *buf_cstr(const struct buf *b)
{
    return b->data ? b->data : "";
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
}

char *buf_detach(struct buf *b, size_t *len)
{
    char *p = b->data;
    if (p == NULL) {
        p = calloc(1, 1);
        if (p == NULL)
            return NULL;
    }
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    return p;
}
