/* json: bounded parsing, typed access with full-path errors, capped serialisation. */
#include "remex/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- parsing ---- */

/*
 * Linear scan for nesting depth outside strings. Stops at the first place the
 * depth passes max and reports its 1-based line and column. Malformed input is
 * left for jansson to diagnose.
 */
static int depth_exceeded(const char *s, size_t len, int max, int *line, int *col)
{
    int depth = 0, in_str = 0, esc = 0;
    int ln = 1, cl = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '\n') {
            ln++;
            cl = 0;
        } else {
            cl++;
        }
        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max) {
                *line = ln;
                *col = cl;
                return 1;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return 0;
}

remex_err json_parse(const char *data, size_t len, const struct json_parse_opts *opts, json_t **out,
                     struct remex_error *e)
{
    struct json_parse_opts o = {0};
    json_error_t jerr;
    size_t flags = JSON_DECODE_ANY;
    int line, col;

    if (out == NULL)
        return remex_seterr(e, REMEX_EINVAL, "json_parse: out is NULL");
    *out = NULL;
    if (opts != NULL)
        o = *opts;
    if (o.max_bytes == 0)
        o.max_bytes = REMEX_JSON_MAX_BYTES_DEFAULT;
    if (o.max_depth <= 0)
        o.max_depth = REMEX_JSON_MAX_DEPTH_DEFAULT;
    if (o.name == NULL)
        o.name = "json";
    if (data == NULL && len > 0)
        return remex_seterr(e, REMEX_EINVAL, "%s: no input", o.name);
    if (len > o.max_bytes)
        return remex_seterr(e, REMEX_ETOOBIG, "%s: document of %zu bytes exceeds the %zu byte cap",
                            o.name, len, o.max_bytes);
    if (depth_exceeded(data ? data : "", len, o.max_depth, &line, &col))
        return remex_seterr(e, REMEX_EPARSE, "%s:%d:%d: nesting deeper than %d", o.name, line, col,
                            o.max_depth);
    if (o.allow_nul)
        flags |= JSON_ALLOW_NUL;
    if (!o.allow_duplicates)
        flags |= JSON_REJECT_DUPLICATES;
    *out = json_loadb(data ? data : "", len, flags, &jerr);
    if (*out == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return remex_seterr(e, REMEX_ENOMEM, "%s: out of memory", o.name);
        return remex_seterr(e, REMEX_EPARSE, "%s:%d:%d: %s", o.name, jerr.line, jerr.column,
                            jerr.text);
    }
    return REMEX_OK;
}

/* ---- paths ---- */

/* Appends part at dst[*n]; 0 when it no longer fits (dst then ends in "..."). */
static int path_append(char *dst, size_t *n, const char *part)
{
    size_t k = strnlen(part, JSON_PATH_MAX);

    if (*n + k >= JSON_PATH_MAX) {
        memcpy(dst + *n, part, JSON_PATH_MAX - 1 - *n);
        memcpy(dst + JSON_PATH_MAX - 4, "...", 4);
        return 0;
    }
    memcpy(dst + *n, part, k);
    *n += k;
    dst[*n] = '\0';
    return 1;
}

/*
 * dst = a + sep + b, truncated to JSON_PATH_MAX - 1 bytes ending in "..." when
 * longer. dst may be a itself (a child path built in place of its parent).
 * Plain copies: decoders build a path for every field they read.
 */
static void path_set(char *dst, const char *a, const char *sep, const char *b)
{
    size_t n = strnlen(a, JSON_PATH_MAX - 1);

    memmove(dst, a, n);
    dst[n] = '\0';
    if (path_append(dst, &n, sep))
        path_append(dst, &n, b);
}

void json_path_init(struct json_path *p, const char *root)
{
    path_set(p->s, root ? root : "", "", "");
}

void json_path_key(struct json_path *child, const struct json_path *parent, const char *key)
{
    path_set(child->s, parent->s, parent->s[0] ? "." : "", key ? key : ""); /* may alias */
}

void json_path_index(struct json_path *child, const struct json_path *parent, size_t i)
{
    char pbuf[JSON_PATH_MAX], idx[32];

    memcpy(pbuf, parent->s, sizeof(pbuf));
    pbuf[sizeof(pbuf) - 1] = '\0';
    snprintf(idx, sizeof(idx), "[%zu]", i);
    path_set(child->s, pbuf, "", idx);
}

const char *json_path_str(const struct json_path *p)
{
    return p->s[0] ? p->s : "(root)";
}

/* ---- typed access to a value ---- */

static remex_err missing(const struct json_path *p, struct remex_error *e)
{
    return remex_seterr(e, REMEX_EINVAL, "%s: missing", json_path_str(p));
}

static remex_err expected(const struct json_path *p, const char *what, struct remex_error *e)
{
    return remex_seterr(e, REMEX_EINVAL, "%s: expected %s", json_path_str(p), what);
}

/* REMEX_OK when v is present and is_type (json_is_<what>(v)) holds. */
static remex_err want(const struct json_path *p, const json_t *v, int is_type, const char *what,
                      struct remex_error *e)
{
    if (v == NULL)
        return missing(p, e);
    return is_type ? REMEX_OK : expected(p, what, e);
}

remex_err json_as_str(const struct json_path *p, const json_t *v, size_t max_len, const char **out,
                      struct remex_error *e)
{
    const char *s;
    size_t n;
    remex_err rc = want(p, v, json_is_string(v), "string", e);

    if (rc != REMEX_OK)
        return rc;
    s = json_string_value(v);
    n = json_string_length(v);
    if (n > max_len)
        return remex_seterr(e, REMEX_ETOOBIG, "%s: longer than %zu bytes", json_path_str(p),
                            max_len);
    if (memchr(s, '\0', n) != NULL)
        return remex_seterr(e, REMEX_EINVAL, "%s: contains a NUL byte", json_path_str(p));
    *out = s;
    return REMEX_OK;
}

remex_err json_as_i64(const struct json_path *p, const json_t *v, int64_t min, int64_t max,
                      int64_t *out, struct remex_error *e)
{
    json_int_t n;
    remex_err rc = want(p, v, json_is_integer(v), "integer", e);

    if (rc != REMEX_OK)
        return rc;
    n = json_integer_value(v);
    if (n < min || n > max)
        return remex_seterr(e, REMEX_EINVAL, "%s: must be between %lld and %lld", json_path_str(p),
                            (long long)min, (long long)max);
    *out = (int64_t)n;
    return REMEX_OK;
}

remex_err json_as_bool(const struct json_path *p, const json_t *v, int *out, struct remex_error *e)
{
    remex_err rc = want(p, v, json_is_boolean(v), "boolean", e);
    if (rc != REMEX_OK)
        return rc;
    *out = json_is_true(v);
    return REMEX_OK;
}

remex_err json_as_double(const struct json_path *p, const json_t *v, double min, double max,
                         double *out, struct remex_error *e)
{
    double d;
    remex_err rc = want(p, v, json_is_number(v), "number", e);

    if (rc != REMEX_OK)
        return rc;
    d = json_number_value(v);
    if (!isfinite(d) || d < min || d > max)
        return remex_seterr(e, REMEX_EINVAL, "%s: must be between %g and %g", json_path_str(p), min,
                            max);
    *out = d;
    return REMEX_OK;
}

remex_err json_as_obj(const struct json_path *p, json_t *v, json_t **out, struct remex_error *e)
{
    remex_err rc = want(p, v, json_is_object(v), "object", e);
    if (rc != REMEX_OK)
        return rc;
    *out = v;
    return REMEX_OK;
}

remex_err json_as_arr(const struct json_path *p, json_t *v, size_t max_items, json_t **out,
                      struct remex_error *e)
{
    remex_err rc = want(p, v, json_is_array(v), "array", e);
    if (rc != REMEX_OK)
        return rc;
    if (json_array_size(v) > max_items)
        return remex_seterr(e, REMEX_ETOOBIG, "%s: more than %zu items", json_path_str(p),
                            max_items);
    *out = v;
    return REMEX_OK;
}

remex_err json_as_enum(const struct json_path *p, const json_t *v, const char *const *names,
                       size_t n, int *out, struct remex_error *e)
{
    char list[256];
    size_t used = 0;
    const char *s;
    remex_err rc = want(p, v, json_is_string(v), "string", e);

    if (rc != REMEX_OK)
        return rc;
    s = json_string_value(v);
    for (size_t i = 0; i < n; i++) {
        if (strlen(names[i]) == json_string_length(v) && strcmp(s, names[i]) == 0) {
            *out = (int)i;
            return REMEX_OK;
        }
    }
    list[0] = '\0';
    for (size_t i = 0; i < n && used < sizeof(list); i++) {
        int k = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", names[i]);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    return remex_seterr(e, REMEX_EINVAL, "%s: must be one of: %s", json_path_str(p), list);
}

/* ---- typed access to obj[key] ---- */

/*
 * Resolves obj[key] and the child path. Returns REMEX_OK with *v NULL when the
 * key is absent or null, so the caller decides between "missing" and default.
 */
static remex_err field(const struct json_path *p, const json_t *obj, const char *key,
                       struct json_path *child, json_t **v, struct remex_error *e)
{
    json_path_key(child, p, key);
    *v = NULL;
    if (obj == NULL || !json_is_object(obj))
        return expected(p, "object", e);
    *v = json_object_get(obj, key);
    if (*v != NULL && json_is_null(*v))
        *v = NULL;
    return REMEX_OK;
}

/* Required field lookup: null is a wrong type, absent is missing. */
static remex_err field_req(const struct json_path *p, const json_t *obj, const char *key,
                           struct json_path *child, json_t **v, struct remex_error *e)
{
    remex_err rc = field(p, obj, key, child, v, e);
    if (rc != REMEX_OK)
        return rc;
    if (*v == NULL) {
        if (json_object_get(obj, key) != NULL)
            *v = json_null(); /* static singleton: the as_* call reports the type */
        else
            return missing(child, e);
    }
    return REMEX_OK;
}

/*
 * Bodies of json_get_* and json_opt_*, which differ only in the conversion:
 * look obj[key] up into v (child path c), then return as_call, an expression
 * over c and v. GET_BODY requires the key; OPT_BODY stores dflt in *out and
 * returns REMEX_OK when the key is absent or null (*out untouched on error).
 */
#define GET_BODY(as_call)                                                                          \
    struct json_path c;                                                                            \
    json_t *v;                                                                                     \
    remex_err rc = field_req(p, obj, key, &c, &v, e);                                              \
    return rc ? rc : (as_call)

#define OPT_BODY(dflt, as_call)                                                                    \
    struct json_path c;                                                                            \
    json_t *v;                                                                                     \
    remex_err rc = field(p, obj, key, &c, &v, e);                                                  \
    if (rc == REMEX_OK && v == NULL)                                                               \
        *out = (dflt);                                                                             \
    return rc != REMEX_OK || v == NULL ? rc : (as_call)

remex_err json_get_str(const struct json_path *p, const json_t *obj, const char *key,
                       size_t max_len, const char **out, struct remex_error *e)
{
    GET_BODY(json_as_str(&c, v, max_len, out, e));
}

remex_err json_get_i64(const struct json_path *p, const json_t *obj, const char *key, int64_t min,
                       int64_t max, int64_t *out, struct remex_error *e)
{
    GET_BODY(json_as_i64(&c, v, min, max, out, e));
}

remex_err json_get_bool(const struct json_path *p, const json_t *obj, const char *key, int *out,
                        struct remex_error *e)
{
    GET_BODY(json_as_bool(&c, v, out, e));
}

remex_err json_get_double(const struct json_path *p, const json_t *obj, const char *key, double min,
                          double max, double *out, struct remex_error *e)
{
    GET_BODY(json_as_double(&c, v, min, max, out, e));
}

remex_err json_get_obj(const struct json_path *p, const json_t *obj, const char *key, json_t **out,
                       struct remex_error *e)
{
    GET_BODY(json_as_obj(&c, v, out, e));
}

remex_err json_get_arr(const struct json_path *p, const json_t *obj, const char *key,
                       size_t max_items, json_t **out, struct remex_error *e)
{
    GET_BODY(json_as_arr(&c, v, max_items, out, e));
}

remex_err json_get_enum(const struct json_path *p, const json_t *obj, const char *key,
                        const char *const *names, size_t n, int *out, struct remex_error *e)
{
    GET_BODY(json_as_enum(&c, v, names, n, out, e));
}

remex_err json_opt_str(const struct json_path *p, const json_t *obj, const char *key,
                       size_t max_len, const char *def, const char **out, struct remex_error *e)
{
    OPT_BODY(def, json_as_str(&c, v, max_len, out, e));
}

remex_err json_opt_i64(const struct json_path *p, const json_t *obj, const char *key, int64_t min,
                       int64_t max, int64_t def, int64_t *out, struct remex_error *e)
{
    OPT_BODY(def, json_as_i64(&c, v, min, max, out, e));
}

remex_err json_opt_bool(const struct json_path *p, const json_t *obj, const char *key, int def,
                        int *out, struct remex_error *e)
{
    OPT_BODY(def, json_as_bool(&c, v, out, e));
}

remex_err json_opt_double(const struct json_path *p, const json_t *obj, const char *key, double min,
                          double max, double def, double *out, struct remex_error *e)
{
    OPT_BODY(def, json_as_double(&c, v, min, max, out, e));
}

remex_err json_opt_obj(const struct json_path *p, const json_t *obj, const char *key, json_t **out,
                       struct remex_error *e)
{
    OPT_BODY(NULL, json_as_obj(&c, v, out, e));
}

remex_err json_opt_arr(const struct json_path *p, const json_t *obj, const char *key,
                       size_t max_items, json_t **out, struct remex_error *e)
{
    OPT_BODY(NULL, json_as_arr(&c, v, max_items, out, e));
}

remex_err json_opt_enum(const struct json_path *p, const json_t *obj, const char *key,
                        const char *const *names, size_t n, int def, int *out,
                        struct remex_error *e)
{
    OPT_BODY(def, json_as_enum(&c, v, names, n, out, e));
}

/* ---- building ---- */

remex_err json_build(json_t **out, struct remex_error *e, const char *fmt, ...)
{
    json_error_t jerr;
    va_list ap;

    va_start(ap, fmt);
    *out = json_vpack_ex(&jerr, 0, fmt, ap);
    va_end(ap);
    if (*out == NULL)
        return remex_seterr(e, REMEX_EINVAL, "json_build: %s", jerr.text);
    return REMEX_OK;
}

remex_err json_put_new(json_t *obj, const char *key, json_t *value)
{
    if (obj == NULL || key == NULL || !json_is_object(obj)) {
        json_decref(value);
        return REMEX_EINVAL;
    }
    if (value == NULL)
        return REMEX_ENOMEM;
    return json_object_set_new(obj, key, value) == 0 ? REMEX_OK : REMEX_ENOMEM;
}

remex_err json_put_str(json_t *obj, const char *key, const char *value)
{
    if (value == NULL)
        return json_put_new(obj, key, json_null());
    return json_put_new(obj, key, json_string(value));
}

remex_err json_put_i64(json_t *obj, const char *key, int64_t value)
{
    return json_put_new(obj, key, json_integer((json_int_t)value));
}

remex_err json_put_bool(json_t *obj, const char *key, int value)
{
    return json_put_new(obj, key, json_boolean(value));
}

remex_err json_put_double(json_t *obj, const char *key, double value)
{
    if (!isfinite(value))
        return REMEX_EINVAL;
    return json_put_new(obj, key, json_real(value));
}

/* ---- serialising ---- */

struct ser_ctx {
    struct buf *out;
    remex_err rc;
};

static int ser_cb(const char *chunk, size_t size, void *data)
{
    struct ser_ctx *c = data;
    c->rc = buf_append(c->out, chunk, size);
    return c->rc == REMEX_OK ? 0 : -1;
}

remex_err json_serialize(const json_t *v, int flags, struct buf *out, struct remex_error *e)
{
    struct ser_ctx c = {out, REMEX_OK};
    size_t start = out->len;
    size_t jflags = JSON_ENCODE_ANY | JSON_REAL_PRECISION(17);

    if (v == NULL)
        return remex_seterr(e, REMEX_EINVAL, "json_serialize: no value");
    jflags |= (flags & JSON_SER_PRETTY) ? JSON_INDENT(2) : JSON_COMPACT;
    if (flags & JSON_SER_SORT_KEYS)
        jflags |= JSON_SORT_KEYS;
    if (json_dump_callback(v, ser_cb, &c, jflags) != 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        if (c.rc == REMEX_ETOOBIG)
            return remex_seterr(e, REMEX_ETOOBIG, "json: serialised value exceeds %zu bytes",
                                out->max);
        if (c.rc == REMEX_OK)
            return remex_seterr(e, REMEX_EINVAL, "json: value cannot be serialised");
        return remex_seterr(e, c.rc, "json: %s", remex_strerror(c.rc));
    }
    return REMEX_OK;
}
