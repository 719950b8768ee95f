/* mask: replace secret values (and their encodings) in log lines. */
#include "remex/mask.h"

#include <jansson.h>
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

/* Adds b[0..n) in the standard and the URL-safe base64 alphabets. */
static remex_err add_b64_both(struct mask *m, unsigned char *b, size_t n)
{
    remex_err rc = add_pat(m, (char *)b, n);
    for (size_t i = 0; i < n; i++) {
        if (b[i] == '+')
            b[i] = '-';
        else if (b[i] == '/')
            b[i] = '_';
    }
    if (rc == REMEX_OK)
        rc = add_pat(m, (char *)b, n);
    for (size_t i = 0; i < n; i++) {
        if (b[i] == '-')
            b[i] = '+';
        else if (b[i] == '_')
            b[i] = '/';
    }
    return rc;
}

/*
 * Adds the base64 forms of the value at each of the three alignments it can
 * have inside a longer encoded text ("login:" + password in HTTP Basic):
 * with shift s bytes before it, the characters that depend only on the
 * value's bytes (the first ceil(8s/6) depend on what precedes it, the last
 * one of an unfinished group on what follows). At shift 0 the complete
 * encoding, padded and unpadded, is added as well. Standard and URL-safe.
 */
static remex_err add_base64(struct mask *m, const char *v, size_t len)
{
    size_t cap = 4 * ((len + 2 + 2) / 3) + 1;
    unsigned char *in = malloc(len + 2), *b = malloc(cap);
    remex_err rc = REMEX_OK;
    if (in == NULL || b == NULL) {
        free(in);
        free(b);
        return REMEX_ENOMEM;
    }
    for (size_t shift = 0; shift < 3 && rc == REMEX_OK; shift++) {
        static const size_t skip[3] = {0, 2, 3};
        memset(in, 0, shift);
        memcpy(in + shift, v, len);
        size_t total = shift + len;
        size_t n = (size_t)EVP_EncodeBlock(b, in, (int)total), body = n;
        while (body > 0 && b[body - 1] == '=')
            body--;
        if (shift == 0)
            rc = add_b64_both(m, b, n);
        if (rc == REMEX_OK && shift == 0)
            rc = add_b64_both(m, b, body);
        if (total % 3 != 0 && body > 0)
            body--; /* its last character also holds bits of what follows */
        if (rc == REMEX_OK && body > skip[shift])
            rc = add_b64_both(m, b + skip[shift], body - skip[shift]);
    }
    free(in);
    free(b);
    return rc;
}

/* Percent-encoding flavours: which bytes stay literal besides RFC 3986's
 * unreserved ones, and whether a space is '+' (HTML forms). */
struct pct_style {
    const char *keep;
    int plus;
};

static const struct pct_style pct_styles[] = {
    {"", 0},      /* RFC 3986, Go url.PathEscape-like, Python quote(safe='') */
    {"/", 0},     /* Python urllib.parse.quote (safe='/') */
    {"", 1},      /* application/x-www-form-urlencoded, Python quote_plus */
    {"*", 1},     /* Java URLEncoder */
    {"!'()*", 0}, /* JavaScript encodeURIComponent */
};

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

/* Adds the value's percent-encoded forms (each style, upper- and
 * lower-case hex digits) that differ from the value. */
static remex_err add_urlencoded(struct mask *m, const char *v, size_t len)
{
    char *u = malloc(len * 3 + 1);
    remex_err rc = REMEX_OK;
    if (u == NULL)
        return REMEX_ENOMEM;
    for (size_t st = 0; st < sizeof(pct_styles) / sizeof(pct_styles[0]); st++) {
        for (int lower = 0; lower < 2 && rc == REMEX_OK; lower++) {
            const char *hex = lower ? "0123456789abcdef" : "0123456789ABCDEF";
            size_t k = 0;
            for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)v[i];
                if (unreserved(c) || (c && strchr(pct_styles[st].keep, c))) {
                    u[k++] = (char)c;
                } else if (c == ' ' && pct_styles[st].plus) {
                    u[k++] = '+';
                } else {
                    u[k++] = '%';
                    u[k++] = hex[c >> 4];
                    u[k++] = hex[c & 15];
                }
            }
            if (k != len || memcmp(u, v, len) != 0)
                rc = add_pat(m, u, k);
        }
    }
    free(u);
    return rc;
}

/* Adds the value as it appears inside a JSON string (quotes excluded):
 * jansson's escaping, with '/' escaped, and with non-ASCII as \uXXXX. */
static remex_err add_json(struct mask *m, const char *v, size_t len)
{
    static const size_t flags[] = {0, JSON_ESCAPE_SLASH, JSON_ENSURE_ASCII};
    json_t *s = json_stringn_nocheck(v, len);
    remex_err rc = s ? REMEX_OK : REMEX_ENOMEM;
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]) && rc == REMEX_OK; i++) {
        char *d = json_dumps(s, JSON_ENCODE_ANY | flags[i]);
        size_t n = d ? strlen(d) : 0;
        /* NULL: not encodable that way (invalid UTF-8): no such form */
        if (d != NULL && n >= 2 && (n - 2 != len || memcmp(d + 1, v, len) != 0))
            rc = add_pat(m, d + 1, n - 2);
        if (d != NULL && rc == REMEX_OK && flags[i] == JSON_ENSURE_ASCII && strstr(d, "\\u")) {
            /* jansson writes \u00EF, Python and JavaScript \u00ef */
            for (char *u = strstr(d, "\\u"); u; u = strstr(u + 2, "\\u"))
                for (size_t k = 2; k < 6 && u[k]; k++)
                    if (u[k] >= 'A' && u[k] <= 'F')
                        u[k] = (char)(u[k] - 'A' + 'a');
            rc = add_pat(m, d + 1, n - 2);
        }
        free(d);
    }
    json_decref(s);
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
    if ((rc = add_json(m, value, len)) != REMEX_OK)
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
