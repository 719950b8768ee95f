/*
 * promtext: Prometheus text exposition (include/remex/promtext.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "remex/promtext.h"

static int name_char(char c, int first, int colon)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':'))
        return 1;
    return !first && c >= '0' && c <= '9';
}

static int valid(const char *s, int colon)
{
    if (!s || !*s)
        return 0;
    for (size_t i = 0; s[i]; i++)
        if (!name_char(s[i], i == 0, colon))
            return 0;
    return 1;
}

int promtext_name_ok(const char *name)
{
    return valid(name, 1);
}

int promtext_label_ok(const char *name)
{
    return valid(name, 0) && strncmp(name, "__", 2) != 0;
}

/* Appends s escaped: backslash and newline always, double quote when quote is set. */
static remex_err put_escaped(struct buf *out, const char *s, int quote)
{
    remex_err rc = REMEX_OK;
    for (; *s && rc == REMEX_OK; s++) {
        if (*s == '\\')
            rc = buf_puts(out, "\\\\");
        else if (*s == '\n')
            rc = buf_puts(out, "\\n");
        else if (quote && *s == '"')
            rc = buf_puts(out, "\\\"");
        else
            rc = buf_putc(out, *s);
    }
    return rc;
}

remex_err promtext_family(struct buf *out, const char *name, const char *type, const char *help)
{
    if (!promtext_name_ok(name) || !type ||
        (strcmp(type, "gauge") && strcmp(type, "counter") && strcmp(type, "untyped")))
        return REMEX_EINVAL;
    size_t mark = out->len;
    remex_err rc = buf_printf(out, "# HELP %s ", name);
    if (rc == REMEX_OK)
        rc = put_escaped(out, help ? help : "", 0);
    if (rc == REMEX_OK)
        rc = buf_printf(out, "\n# TYPE %s %s\n", name, type);
    if (rc != REMEX_OK)
        out->len = mark;
    if (out->data)
        out->data[out->len] = '\0';
    return rc;
}

static remex_err put_value(struct buf *out, double v)
{
    if (isnan(v))
        return buf_puts(out, "NaN\n");
    if (isinf(v))
        return buf_puts(out, v > 0 ? "+Inf\n" : "-Inf\n");
    if (v == (double)(long long)v && fabs(v) < 9007199254740992.0)
        return buf_printf(out, "%lld\n", (long long)v);
    return buf_printf(out, "%.17g\n", v);
}

remex_err promtext_sample(struct buf *out, const char *name, const char *const *labels,
                          size_t nlabels, double value)
{
    if (!promtext_name_ok(name) || (nlabels && !labels))
        return REMEX_EINVAL;
    for (size_t i = 0; i < nlabels; i++)
        if (!promtext_label_ok(labels[2 * i]) || !labels[2 * i + 1])
            return REMEX_EINVAL;
    size_t mark = out->len;
    remex_err rc = buf_puts(out, name);
    for (size_t i = 0; i < nlabels && rc == REMEX_OK; i++) {
        rc = buf_printf(out, "%s%s=\"", i ? "," : "{", labels[2 * i]);
        if (rc == REMEX_OK)
            rc = put_escaped(out, labels[2 * i + 1], 1);
        if (rc == REMEX_OK)
            rc = buf_puts(out, i + 1 == nlabels ? "\"}" : "\"");
    }
    if (rc == REMEX_OK)
        rc = buf_putc(out, ' ');
    if (rc == REMEX_OK)
        rc = put_value(out, value);
    if (rc != REMEX_OK) {
        out->len = mark;
        if (out->data)
            out->data[out->len] = '\0';
    }
    return rc;
}
