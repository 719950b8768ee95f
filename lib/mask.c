/* mask: replace secret values (and their encodings) in log lines. */
#include "remex/mask.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

struct pat {
    char *s;
    size_t len;
};

struct mask {
    struct pat *pats; /* sorted by length, longest first */
    size_t n, cap;
    unsigned char first[256]; /* 1 if some pattern starts with this byte */
};

struct mask *mask_new(void)
{
    return calloc(1, sizeof(struct mask));
}

void mask_free(struct mask *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        free(m->pats[i].s);
    free(m->pats);
    free(m);
}

size_t mask_count(const struct mask *m)
{
    return m->n;
}

/* Adds one pattern (copied) unless present or too short; keeps longest-first order. */
static remex_err add_pat(struct mask *m, const char *s, size_t len)
{
    size_t i;
    if (len < MASK_MIN_LEN)
        return REMEX_OK;
    for (i = 0; i < m->n; i++)
        if (m->pats[i].len == len && memcmp(m->pats[i].s, s, len) == 0)
            return REMEX_OK;
    if (m->n >= MASK_MAX_PATS)
        return REMEX_ETOOBIG;
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 8;
        struct pat *p = realloc(m->pats, nc * sizeof(*p));
        if (p == NULL)
            return REMEX_ENOMEM;
        m->pats = p;
        m->cap = nc;
    }
    char *copy = malloc(len);
    if (copy == NULL)
        return REMEX_ENOMEM;
    memcpy(copy, s, len);
    for (i = 0; i < m->n && m->pats[i].len >= len; i++)
        ;
    memmove(m->pats + i + 1, m->pats + i, (m->n - i) * sizeof(*m->pats));
    m->pats[i].s = copy;
    m->pats[i].len = len;
    m->n++;
    m->first[(unsigned char)s[0]] = 1;
    return REMEX_OK;
}

/* Adds the base64 forms: standard, URL-safe, each with and without '=' padding. */
static remex_err add_base64(struct mask *m, const char *v, size_t len)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;
    unsigned char *b = malloc(cap);
    remex_err rc;
    if (b == NULL)
        return REMEX_ENOMEM;
    int n = EVP_EncodeBlock(b, (const unsigned char *)v, (int)len);
    size_t unpadded = (size_t)n;
    while (unpadded > 0 && b[unpadded - 1] == '=')
        unpadded--;
    rc = add_pat(m, (char *)b, (size_t)n);
    if (rc == REMEX_OK)
        rc = add_pat(m, (char *)b, unpadded);
    for (int i = 0; i < n; i++) {
        if (b[i] == '+')
            b[i] = '-';
        else if (b[i] == '/')
            b[i] = '_';
    }
    if (rc == REMEX_OK)
        rc = add_pat(m, (char *)b, (size_t)n);
    if (rc == REMEX_OK)
        rc = add_pat(m, (char *)b, unpadded);
    free(b);
    return rc;
}

/* Adds the percent-encoded form (RFC 3986 unreserved characters kept). */
static remex_err add_urlencoded(struct mask *m, const char *v, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    char *u = malloc(len * 3 + 1);
    size_t k = 0;
    remex_err rc;
    if (u == NULL)
        return REMEX_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            u[k++] = (char)c;
        } else {
            u[k++] = '%';
            u[k++] = hex[c >> 4];
            u[k++] = hex[c & 15];
        }
    }
    rc = k != len ? add_pat(m, u, k) : REMEX_OK;
    free(u);
    return rc;
}

remex_err mask_add(struct mask *m, const char *value, size_t len)
{
    remex_err rc;
    if (len < MASK_MIN_LEN)
        return REMEX_OK;
    if (len > MASK_MAX_LEN)
        return REMEX_ETOOBIG;
    /* A multi-line value is masked line by line as well (logs are split by line). */
    const char *nl = memchr(value, '\n', len);
    if (nl != NULL) {
        size_t first = (size_t)(nl - value);
        if ((rc = mask_add(m, value, first)) != REMEX_OK)
            return rc;
        if ((rc = mask_add(m, nl + 1, len - first - 1)) != REMEX_OK)
            return rc;
    }
    if ((rc = add_pat(m, value, len)) != REMEX_OK)
        return rc;
    if ((rc = add_base64(m, value, len)) != REMEX_OK)
        return rc;
    return add_urlencoded(m, value, len);
}

remex_err mask_apply(const struct mask *m, const char *line, size_t len, struct buf *out)
{
    size_t i = 0, lit = 0;
    remex_err rc;

    while (i < len) {
        size_t hit = 0;
        if (!m->first[(unsigned char)line[i]]) {
            i++;
            continue;
        }
        for (size_t p = 0; p < m->n; p++) {
            const struct pat *pt = &m->pats[p];
            if (pt->len <= len - i && line[i] == pt->s[0] &&
                memcmp(line + i, pt->s, pt->len) == 0) {
                hit = pt->len;
                break; /* longest first */
            }
        }
        if (hit == 0) {
            i++;
            continue;
        }
        if ((rc = buf_append(out, line + lit, i - lit)) != REMEX_OK)
            return rc;
        if ((rc = buf_append(out, "***", 3)) != REMEX_OK)
            return rc;
        i += hit;
        lit = i;
    }
    return buf_append(out, line + lit, len - lit);
}
