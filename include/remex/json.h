/*
 * json: bounded parsing, typed field access with full-path errors, and
 * capped serialisation over jansson.
 *
 * Parsing checks the size cap before touching the input, bounds nesting depth
 * with a linear pre-scan (so a 1 MB "[[[[..." bomb is refused without deep
 * recursion), rejects "\u0000" inside strings and duplicate object keys unless
 * asked, and reports jansson's line and column:
 *     "reply:1:17: invalid token near 'x'"
 *
 * Typed accessors name the full path of the offending field:
 *     "assignment.try_number: expected integer"
 *     "assignment.dag_id: missing"
 *     "agent.slots: must be between 1 and 1024"
 *     "tasks[3].task_id: longer than 250 bytes"
 * Paths are built with struct json_path values on the caller's stack; a child
 * path is a copy of its parent plus ".key" or "[i]", so nested decoders never
 * have to undo anything. Paths longer than JSON_PATH_MAX are truncated with
 * "...".
 *
 * Ownership: every json_t * returned through an out-parameter is marked
 * *owned* (caller must json_decref) or *borrowed* (valid while the container
 * it came from is alive; caller must not decref). Strings returned as
 * const char * are borrowed from the json_t they came from.
 *
 * Errors: REMEX_ETOOBIG (size caps: input bytes, string length, array items,
 * output buffer), REMEX_EPARSE (malformed JSON, depth), REMEX_EINVAL (missing
 * field, wrong type, out of range, unknown enum value, bad argument),
 * REMEX_ENOMEM. JSON null counts as missing for the json_opt_* variants and
 * as a wrong type for the required ones.
 *
 * Thread-safety: no global state; a json_t must not be shared between threads
 * without external locking (jansson's rule).
 */
#ifndef REMEX_JSON_H
#define REMEX_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "remex/buf.h"
#include "remex/err.h"

#define REMEX_JSON_MAX_BYTES_DEFAULT (4u * 1024u * 1024u)
#define REMEX_JSON_MAX_DEPTH_DEFAULT 64
#define JSON_PATH_MAX                256

/* ---- parsing ---- */

/* Zero-initialised options mean the safe defaults. */
struct json_parse_opts {
    size_t max_bytes;     /* input cap; 0 = REMEX_JSON_MAX_BYTES_DEFAULT */
    int max_depth;        /* arrays + objects nesting cap; 0 = REMEX_JSON_MAX_DEPTH_DEFAULT */
    int allow_nul;        /* accept "\u0000" inside strings */
    int allow_duplicates; /* accept duplicate object keys (last one wins) */
    const char *name;     /* prefix for error messages ("reply"); NULL = "json" */
};

/*
 * Parses len bytes at data (need not be NUL-terminated) into *out (owned).
 * Any top-level value is accepted; callers check its type with json_as_obj.
 * On error *out is NULL. opts may be NULL (defaults).
 */
remex_err json_parse(const char *data, size_t len, const struct json_parse_opts *opts, json_t **out,
                     struct remex_error *e);

/* ---- paths ---- */

struct json_path {
    char s[JSON_PATH_MAX]; /* "" for the root, else "assignment.task.env.FOO" */
};

/* Sets p to root (NULL or "" for an unnamed root). */
void json_path_init(struct json_path *p, const char *root);
/* child = parent + ".key" (or "key" when parent is the unnamed root). */
void json_path_key(struct json_path *child, const struct json_path *parent, const char *key);
/* child = parent + "[i]". */
void json_path_index(struct json_path *child, const struct json_path *parent, size_t i);
/* The path as a string; "(root)" for the unnamed root. Never NULL. */
const char *json_path_str(const struct json_path *p);

/* ---- typed access to a value (p is the path of v itself; v may be NULL) ---- */

/* *out is borrowed from v. Strings with an embedded NUL are refused. */
remex_err json_as_str(const struct json_path *p, const json_t *v, size_t max_len, const char **out,
                      struct remex_error *e);
/* Integers only (3.0 is not an integer). */
remex_err json_as_i64(const struct json_path *p, const json_t *v, int64_t min, int64_t max,
                      int64_t *out, struct remex_error *e);
remex_err json_as_bool(const struct json_path *p, const json_t *v, int *out, struct remex_error *e);
/* Integers and reals. */
remex_err json_as_double(const struct json_path *p, const json_t *v, double min, double max,
                         double *out, struct remex_error *e);
/* *out borrowed. */
remex_err json_as_obj(const struct json_path *p, json_t *v, json_t **out, struct remex_error *e);
/* *out borrowed; more than max_items elements is REMEX_ETOOBIG. */
remex_err json_as_arr(const struct json_path *p, json_t *v, size_t max_items, json_t **out,
                      struct remex_error *e);
/* A string that must equal names[i] for some i < n; *out = i. */
remex_err json_as_enum(const struct json_path *p, const json_t *v, const char *const *names,
                       size_t n, int *out, struct remex_error *e);

/* ---- typed access to obj[key] (p is the path of obj; errors name p.key) ---- */

remex_err json_get_str(const struct json_path *p, const json_t *obj, const char *key,
                       size_t max_len, const char **out, struct remex_error *e);
remex_err json_get_i64(const struct json_path *p, const json_t *obj, const char *key, int64_t min,
                       int64_t max, int64_t *out, struct remex_error *e);
remex_err json_get_bool(const struct json_path *p, const json_t *obj, const char *key, int *out,
                        struct remex_error *e);
remex_err json_get_double(const struct json_path *p, const json_t *obj, const char *key, double min,
                          double max, double *out, struct remex_error *e);
remex_err json_get_obj(const struct json_path *p, const json_t *obj, const char *key, json_t **out,
                       struct remex_error *e);
remex_err json_get_arr(const struct json_path *p, const json_t *obj, const char *key,
                       size_t max_items, json_t **out, struct remex_error *e);
remex_err json_get_enum(const struct json_path *p, const json_t *obj, const char *key,
                        const char *const *names, size_t n, int *out, struct remex_error *e);

/* Optional variants: a missing key or null yields the default (or NULL for objects/arrays). */
remex_err json_opt_str(const struct json_path *p, const json_t *obj, const char *key,
                       size_t max_len, const char *def, const char **out, struct remex_error *e);
remex_err json_opt_i64(const struct json_path *p, const json_t *obj, const char *key, int64_t min,
                       int64_t max, int64_t def, int64_t *out, struct remex_error *e);
remex_err json_opt_bool(const struct json_path *p, const json_t *obj, const char *key, int def,
                        int *out, struct remex_error *e);
remex_err json_opt_double(const struct json_path *p, const json_t *obj, const char *key, double min,
                          double max, double def, double *out, struct remex_error *e);
remex_err json_opt_obj(const struct json_path *p, const json_t *obj, const char *key, json_t **out,
                       struct remex_error *e);
remex_err json_opt_arr(const struct json_path *p, const json_t *obj, const char *key,
                       size_t max_items, json_t **out, struct remex_error *e);
remex_err json_opt_enum(const struct json_path *p, const json_t *obj, const char *key,
                        const char *const *names, size_t n, int def, int *out,
                        struct remex_error *e);

/* ---- building ---- */

/*
 * json_pack() with an error message: *out owned. Use "s?" / "o" etc. as in
 * jansson's pack format; "o" steals its argument even on failure.
 */
remex_err json_build(json_t **out, struct remex_error *e, const char *fmt, ...);
/* obj[key] = value. json_put_new steals value (owned) even on failure. */
remex_err json_put_new(json_t *obj, const char *key, json_t *value);
remex_err json_put_str(json_t *obj, const char *key, const char *value);
remex_err json_put_i64(json_t *obj, const char *key, int64_t value);
remex_err json_put_bool(json_t *obj, const char *key, int value);
remex_err json_put_double(json_t *obj, const char *key, double value);

/* ---- serialising ---- */

#define JSON_SER_SORT_KEYS 0x1 /* sort object keys (stable output for hashes and tests) */
#define JSON_SER_PRETTY    0x2 /* indent by 2 instead of compact */

/*
 * Appends the serialisation of v (borrowed) to out, within out->max.
 * On any error out is left exactly as it was. REMEX_ETOOBIG when over the cap.
 */
remex_err json_serialize(const json_t *v, int flags, struct buf *out, struct remex_error *e);

#endif
