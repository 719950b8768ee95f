/* tmpl: {{ name }} expansion with a caller-supplied lookup. */
#include "remex/tmpl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int is_ident_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_ident_char(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '-';
}

static size_t skip_spaces(const char *s, size_t i, size_t end)
{
    while (i < end && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

/* Length of the well-formed UTF-8 character at s[i] (before end), 0 when
 * the bytes there are not one (so an error shows whole characters). */
static size_t utf8_len(const char *s, size_t i, size_t end)
{
    unsigned char c = (unsigned char)s[i];
    size_t n = c < 0x80                 ? 1
               : c >= 0xc2 && c <= 0xdf ? 2
               : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4
                                        : 0;
    if (n == 0 || i + n > end)
        return 0;
    for (size_t k = 1; k < n; k++)
        if (((unsigned char)s[i + k] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* Parses the expression in s[start..end) (between the braces) and appends it. */
static remex_err expand_expr(const char *s, size_t start, size_t end, tmpl_lookup_fn lookup,
                             void *ctx, struct buf *out, struct remex_error *e)
{
    size_t i = skip_spaces(s, start, end), j;
    remex_err rc;

    if (i < end && (s[i] == '\'' || s[i] == '"')) {
        char q = s[i];
        for (j = i + 1; j < end && s[j] != q; j++)
            ;
        if (j >= end || skip_spaces(s, j + 1, end) != end)
            return remex_seterr(e, REMEX_EPARSE, "column %zu: malformed string literal", start - 1);
        rc = buf_append(out, s + i + 1, j - i - 1);
        return rc == REMEX_OK ? rc : remex_seterr(e, rc, "template expands past its size cap");
    }
    if (i >= end || !is_ident_start(s[i]))
        return remex_seterr(e, REMEX_EPARSE, "column %zu: expected a name after '{{'", i + 1);
    for (j = i; j < end; j++) {
        if (s[j] == '.') {
            if (j + 1 >= end || !is_ident_char(s[j + 1]))
                return remex_seterr(e, REMEX_EPARSE, "column %zu: malformed name", j + 1);
        } else if (!is_ident_char(s[j])) {
            break;
        }
    }
    size_t k = skip_spaces(s, j, end);
    if (k != end) {
        size_t n = utf8_len(s, k, end);
        if (n == 0)
            return remex_seterr(e, REMEX_EPARSE,
                                "column %zu: unexpected byte 0x%02x (not UTF-8) in template", k + 1,
                                (unsigned char)s[k]);
        return remex_seterr(e, REMEX_EPARSE, "column %zu: unexpected '%.*s' in template", k + 1,
                            (int)n, s + k);
    }
    rc = lookup(ctx, s + i, j - i, out, e);
    if (rc == REMEX_ENOTFOUND)
        return remex_seterr(e, REMEX_ENOTFOUND, "column %zu: unknown template variable '%.*s'",
                            i + 1, (int)(j - i), s + i);
    if (rc == REMEX_ETOOBIG)
        return remex_seterr(e, rc, "template expands past its size cap");
    return rc;
}

remex_err tmpl_expand(const char *in, size_t len, tmpl_lookup_fn lookup, void *ctx, struct buf *out,
                      struct remex_error *e)
{
    size_t i = 0;
    remex_err rc;

    while (i < len) {
        const char *open = memmem(in + i, len - i, "{{", 2);
        size_t lit = open ? (size_t)(open - in) - i : len - i;
        if ((rc = buf_append(out, in + i, lit)) != REMEX_OK)
            return remex_seterr(e, rc, "template expands past its size cap");
        if (open == NULL)
            break;
        size_t start = (size_t)(open - in) + 2;
        const char *close = NULL;
        /* A quoted literal may contain "}}": find the closing braces after it. */
        size_t k = skip_spaces(in, start, len);
        if (k < len && (in[k] == '\'' || in[k] == '"')) {
            const char *q = memchr(in + k + 1, in[k], len - k - 1);
            if (q != NULL)
                close = memmem(q + 1, len - (size_t)(q + 1 - in), "}}", 2);
        } else {
            close = memmem(in + start, len - start, "}}", 2);
        }
        if (close == NULL)
            return remex_seterr(e, REMEX_EPARSE, "column %zu: unclosed '{{'", start - 1);
        rc = expand_expr(in, start, (size_t)(close - in), lookup, ctx, out, e);
        if (rc != REMEX_OK)
            return rc;
        i = (size_t)(close - in) + 2;
    }
    return REMEX_OK;
}

static int name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(name, want, len) == 0;
}

/* fmt: 0 = YYYY-MM-DD, 1 = YYYYMMDD, 2 = RFC 3339 +00:00, 3 = YYYYMMDDTHHMMSS */
static remex_err put_time(struct buf *out, long long t, int fmt)
{
    static const char *const f[] = {"%Y-%m-%d", "%Y%m%d", "%Y-%m-%dT%H:%M:%S+00:00",
                                    "%Y%m%dT%H%M%S"};
    char s[64];
    struct tm tm;
    time_t tt = (time_t)t;
    if (gmtime_r(&tt, &tm) == NULL)
        return REMEX_EINVAL;
    size_t n = strftime(s, sizeof(s), f[fmt], &tm);
    return buf_append(out, s, n);
}

static remex_err put_json_field(const json_t *obj, const char *key, size_t len, struct buf *out)
{
    char k[256];
    const json_t *v;
    if (obj == NULL || len >= sizeof(k))
        return REMEX_ENOTFOUND;
    memcpy(k, key, len);
    k[len] = '\0';
    v = json_object_get(obj, k);
    if (v == NULL)
        return REMEX_ENOTFOUND;
    if (json_is_string(v))
        return buf_append(out, json_string_value(v), json_string_length(v));
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s == NULL)
        return REMEX_ENOMEM;
    remex_err rc = buf_puts(out, s);
    free(s);
    return rc;
}

static remex_err task_value(const struct tmpl_task_vars *v, const char *name, size_t len,
                            struct buf *out)
{
    if (name_is(name, len, "ds"))
        return put_time(out, v->logical_date, 0);
    if (name_is(name, len, "ds_nodash"))
        return put_time(out, v->logical_date, 1);
    if (name_is(name, len, "ts") || name_is(name, len, "logical_date"))
        return put_time(out, v->logical_date, 2);
    if (name_is(name, len, "ts_nodash"))
        return put_time(out, v->logical_date, 3);
    if (name_is(name, len, "data_interval_start"))
        return put_time(out, v->data_interval_start, 2);
    if (name_is(name, len, "data_interval_end"))
        return put_time(out, v->data_interval_end, 2);
    if (name_is(name, len, "run_id") && v->run_id)
        return buf_puts(out, v->run_id);
    if (name_is(name, len, "dag_id") && v->dag_id)
        return buf_puts(out, v->dag_id);
    if (name_is(name, len, "task_id") && v->task_id)
        return buf_puts(out, v->task_id);
    if (name_is(name, len, "try_number"))
        return buf_printf(out, "%lld", v->try_number);
    if (name_is(name, len, "map_index"))
        return buf_printf(out, "%lld", v->map_index);
    if (len > 7 && memcmp(name, "params.", 7) == 0)
        return put_json_field(v->params, name + 7, len - 7, out);
    if (len > 5 && memcmp(name, "conf.", 5) == 0)
        return put_json_field(v->conf, name + 5, len - 5, out);
    return REMEX_ENOTFOUND;
}

remex_err tmpl_task_lookup(void *ctx, const char *name, size_t len, struct buf *out,
                           struct remex_error *e)
{
    remex_err rc = task_value(ctx, name, len, out);

    /* The expander words ENOTFOUND and ETOOBIG; anything else is described here. */
    if (rc == REMEX_EINVAL)
        return remex_seterr(e, rc, "'%.*s': date out of range", (int)len, name);
    if (rc != REMEX_OK && rc != REMEX_ENOTFOUND && rc != REMEX_ETOOBIG)
        return remex_seterr(e, rc, "'%.*s': %s", (int)len, name, remex_strerror(rc));
    return rc;
}
