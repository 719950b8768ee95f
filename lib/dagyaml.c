/* dagyaml: YAML DAG files into DAG models, with positioned diagnostics. */
#include "remex/dagyaml.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/timeutil.h"
#include "remex/yamltree.h"

#define NODES_MAX (1024 * 1024)

struct ctx {
    const char *file;
    struct dagyaml_result *res;
    int oom;
    uint64_t cpu_deadline_ns; /* 0: no cap (dagyaml_parse_until) */
    unsigned cap_ms;
    int timed_out; /* the cap passed: a diagnostic says so, the walk stops */
};

static void diag(struct ctx *c, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void diag(struct ctx *c, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;
    if (c->res->ndiags >= DAGYAML_DIAGS_MAX) {
        c->res->more_diags = 1;
        return;
    }
    struct dagyaml_diag *d = &c->res->diags[c->res->ndiags++];
    d->line = line;
    d->column = col;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
    va_end(ap);
}

/* 1 (after a diagnostic at n) once the CPU time cap has passed. */
static int out_of_time(struct ctx *c, const struct ytree_node *n)
{
    if (c->timed_out)
        return 1;
    if (!c->cpu_deadline_ns || ytree_thread_cpu_ns() <= c->cpu_deadline_ns)
        return 0;
    c->timed_out = 1;
    diag(c, n ? n->line : 1, n ? n->col : 1, "parsing took longer than the %u ms cap per file",
         c->cap_ms);
    return 1;
}

#define NDIAG(c, node, ...) diag((c), (node)->line, (node)->col, __VA_ARGS__)

/* ------------------------------------------------------------ input checks */

/* 1-based line and column (in characters) of byte offset off. */
static void position_of(const char *s, size_t off, unsigned *line, unsigned *col)
{
    unsigned l = 1, cl = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            l++;
            cl = 1;
        } else if (((unsigned char)s[i] & 0xc0) != 0x80) {
            cl++;
        }
    }
    *line = l;
    *col = cl;
}

/* ------------------------------------------------------------ tree building */

/* Reports a libyaml error. */
static void yaml_diag(struct ctx *c, const struct ytree_error *ye)
{
    const char *what = ye->problem[0] ? ye->problem : "invalid YAML";
    const char *ctx = ye->context;
    /* The usual cause: an unquoted cron expression or preset ("*" / "@" start a token). */
    const char *hint = strstr(ctx, "alias") != NULL || strstr(what, "cannot start any token")
                           ? " (quote values that start with *, @, &, ! or `)"
                           : "";
    diag(c, ye->line, ye->col, "%s%s%s%s", ctx, *ctx ? " " : "", what, hint);
}

/* Parses the single document into a tree; NULL after a diagnostic (or an empty file). */
static struct ytree_node *load(struct ctx *c, const char *data, size_t len)
{
    static const struct ytree_limits lim = {NODES_MAX, DAGYAML_DEPTH_MAX, YTREE_CHECK_SCALARS};
    struct ytree_node *root;
    struct ytree_error ye;

    if (ytree_parse_until(data, len, &lim, c->cpu_deadline_ns, &root, &ye) == REMEX_OK)
        return root;
    switch (ye.kind) {
    case YTREE_ETIME:
        c->timed_out = 1;
        diag(c, ye.line, ye.col, "parsing took longer than the %u ms cap per file", c->cap_ms);
        break;
    case YTREE_ENOMEM:
        c->oom = 1;
        break;
    case YTREE_ESYNTAX:
        yaml_diag(c, &ye);
        break;
    case YTREE_EALIAS:
        diag(c, ye.line, ye.col,
             "aliases are not supported (write the value out, or quote a value starting with *)");
        break;
    case YTREE_EANCHOR:
        diag(c, ye.line, ye.col, "anchors are not supported");
        break;
    case YTREE_ETAG:
        diag(c, ye.line, ye.col, "tags are not supported");
        break;
    case YTREE_EDEPTH:
        diag(c, ye.line, ye.col, "nesting deeper than %d", DAGYAML_DEPTH_MAX);
        break;
    case YTREE_ESCALAR:
        diag(c, ye.line, ye.col, "scalar holds a NUL or invalid character");
        break;
    case YTREE_ENODES:
        diag(c, ye.line, ye.col, "more than %d YAML nodes", NODES_MAX);
        break;
    case YTREE_EDOCS:
        diag(c, ye.line, ye.col, "more than one YAML document (use a top-level `dags:` list)");
        break;
    default:
        diag(c, ye.line, ye.col, "invalid YAML");
        break;
    }
    return NULL;
}

/* ------------------------------------------------------------ helpers */

static int is_null(const struct ytree_node *n)
{
    return n->kind == YTREE_SCALAR && n->plain &&
           (n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
            strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0);
}

static int plain_bool(const struct ytree_node *n, int *v)
{
    static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False",
                                                                           "FALSE"};
    if (n->kind != YTREE_SCALAR || !n->plain)
        return 0;
    for (int i = 0; i < 3; i++) {
        if (strcmp(n->text, t[i]) == 0) {
            *v = 1;
            return 1;
        }
        if (strcmp(n->text, f[i]) == 0) {
            *v = 0;
            return 1;
        }
    }
    return 0;
}

static int plain_int(const struct ytree_node *n, long long *v)
{
    const char *s = n->text;
    char *end;
    if (n->kind != YTREE_SCALAR || !n->plain || n->len == 0 || n->len > 20)
        return 0;
    if (*s == '+' || *s == '-')
        s++;
    if (*s < '0' || *s > '9')
        return 0;
    errno = 0;
    *v = strtoll(n->text, &end, 10);
    return errno == 0 && *end == '\0';
}

static int plain_float(const struct ytree_node *n, double *v)
{
    const char *s = n->text;
    char *end;
    int digits = 0;
    if (n->kind != YTREE_SCALAR || !n->plain || n->len == 0 || n->len > 64)
        return 0;
    for (const char *p = s; *p; p++) {
        if (*p >= '0' && *p <= '9')
            digits++;
        else if (!strchr("+-.eE", *p))
            return 0;
    }
    if (!digits)
        return 0;
    errno = 0;
    *v = strtod(s, &end);
    return errno == 0 && *end == '\0' && *v == *v && *v - *v == 0.0;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la >= 63 || lb >= 63)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

/* Value kinds of the known keys. */
enum vkind {
    V_STR,
    V_STR_NULL,
    V_INT,
    V_BOOL,
    V_DUR,
    V_DUR_NULL,
    V_DATE,
    V_STRLIST,
    V_CMD,
    V_UPSTREAM,
    V_ENV,
    V_LIMITS,
    V_TRIGGER,
    V_PARAMS,
    V_TASKS,
    V_DEFAULTS,
    V_SIZE_NULL,
    V_INT_NULL,
    V_RULE,
};

struct keydef {
    const char *name;
    enum vkind kind;
};

static const struct keydef dag_keys[] = {
    {"dag_id", V_STR},
    {"description", V_STR_NULL},
    {"schedule", V_STR_NULL},
    {"start_date", V_DATE},
    {"end_date", V_DATE},
    {"catchup", V_BOOL},
    {"max_active_runs", V_INT},
    {"max_active_tasks", V_INT},
    {"dagrun_timeout", V_DUR_NULL},
    {"params", V_PARAMS},
    {"tags", V_STRLIST},
    {"default_args", V_DEFAULTS},
    {"tasks", V_TASKS},
    {NULL, V_STR},
};

static const struct keydef task_keys[] = {
    {"task_id", V_STR},
    {"command", V_CMD},
    {"shell", V_STR_NULL},
    {"env", V_ENV},
    {"upstream", V_UPSTREAM},
    {"trigger_rule", V_RULE},
    {"retries", V_INT},
    {"retry_delay", V_DUR},
    {"retry_exponential_backoff", V_BOOL},
    {"max_retry_delay", V_DUR_NULL},
    {"execution_timeout", V_DUR_NULL},
    {"queue", V_STR},
    {"priority_weight", V_INT},
    {"pool_slots", V_INT},
    {"pool", V_STR},
    {"connections", V_STRLIST},
    {"variables", V_STRLIST},
    {"limits", V_LIMITS},
    {"trigger", V_TRIGGER},
    {NULL, V_STR},
};

static const struct keydef default_keys[] = {
    {"retries", V_INT},
    {"retry_delay", V_DUR},
    {"retry_exponential_backoff", V_BOOL},
    {"max_retry_delay", V_DUR_NULL},
    {"execution_timeout", V_DUR_NULL},
    {"queue", V_STR},
    {"priority_weight", V_INT},
    {"pool_slots", V_INT},
    {"pool", V_STR},
    {"trigger_rule", V_RULE},
    {"env", V_ENV},
    {"limits", V_LIMITS},
    {NULL, V_STR},
};

static const struct keydef limit_keys[] = {
    {"memory", V_SIZE_NULL},
    {"cpu_time", V_DUR_NULL},
    {"processes", V_INT_NULL},
    {"open_files", V_INT_NULL},
    {NULL, V_STR},
};

/* Copies at most 48 bytes of k into out, non-printable and non-ASCII bytes as '?'. */
static const char *safe_key(const char *k, char out[64])
{
    size_t i = 0;
    for (; i < 48 && k[i] != '\0'; i++)
        out[i] = (k[i] >= 0x20 && k[i] < 0x7f) ? k[i] : '?';
    out[i] = '\0';
    return out;
}

static void unknown_key(struct ctx *c, const struct ytree_node *k, const struct keydef *defs)
{
    const char *best = NULL;
    size_t bd = 99;
    for (size_t i = 0; defs[i].name != NULL; i++) {
        size_t d = edit_distance(k->text, defs[i].name);
        if (d < bd) {
            bd = d;
            best = defs[i].name;
        }
    }
    char pk[64];
    safe_key(k->text, pk);
    if (best != NULL && bd <= 2 && bd < strlen(k->text))
        NDIAG(c, k, "unknown key '%s' (did you mean '%s'?)", pk, best);
    else
        NDIAG(c, k, "unknown key '%s'", pk);
}

static json_t *jnomem(struct ctx *c)
{
    c->oom = 1;
    return NULL;
}

static json_t *seconds_json(int64_t ms)
{
    return ms % 1000 == 0 ? json_integer(ms / 1000) : json_real((double)ms / 1000.0);
}

/* ------------------------------------------------------------ conversion */

static json_t *convert(struct ctx *c, const struct ytree_node *n, enum vkind kind,
                       const char *what);

static json_t *scalar_str(struct ctx *c, const struct ytree_node *n, const char *what)
{
    if (n->kind != YTREE_SCALAR || is_null(n)) {
        NDIAG(c, n, "%s: expected string", what);
        return NULL;
    }
    json_t *j = json_stringn(n->text, n->len);
    return j != NULL ? j : jnomem(c);
}

static json_t *conv_duration(struct ctx *c, const struct ytree_node *n, const char *what)
{
    long long iv;
    double dv;
    uint64_t ms;
    if (n->kind == YTREE_SCALAR && plain_int(n, &iv) && iv >= 0 && iv <= DAG_SECONDS_MAX)
        return json_integer(iv);
    if (n->kind == YTREE_SCALAR && plain_float(n, &dv) && dv >= 0 && dv <= (double)DAG_SECONDS_MAX)
        return json_real(dv);
    if (n->kind == YTREE_SCALAR && !is_null(n) &&
        timeutil_duration_parse(n->text, &ms, NULL) == 0 && ms <= (uint64_t)DAG_SECONDS_MAX * 1000)
        return seconds_json((int64_t)ms);
    NDIAG(c, n, "%s: expected a duration like 30s, 5m, 1h30m or a number of seconds", what);
    return NULL;
}

static json_t *conv_size(struct ctx *c, const struct ytree_node *n, const char *what)
{
    long long iv;
    uint64_t b;
    if (n->kind == YTREE_SCALAR && plain_int(n, &iv) && iv >= 0)
        return json_integer(iv);
    if (n->kind == YTREE_SCALAR && !is_null(n) && timeutil_size_parse(n->text, &b, NULL) == 0 &&
        b <= (uint64_t)INT64_MAX)
        return json_integer((json_int_t)b);
    NDIAG(c, n, "%s: expected a size like 64MiB or a number of bytes", what);
    return NULL;
}

static json_t *conv_date(struct ctx *c, const struct ytree_node *n, const char *what)
{
    char buf[64], out[TIMEUTIL_RFC3339_MAX];
    int64_t ms;
    if (n->kind == YTREE_SCALAR && n->len < 40) {
        memcpy(buf, n->text, n->len + 1);
        if (n->len == 10)
            snprintf(buf + 10, sizeof(buf) - 10, "T00:00:00Z");
        else if (n->len > 10 && buf[10] == ' ')
            buf[10] = 'T';
        if (timeutil_rfc3339_parse(buf, &ms, NULL) == 0 && ms >= 0 &&
            timeutil_rfc3339_format(ms, ms % 1000 != 0, out, sizeof(out)) == 0)
            return json_string(out);
    }
    NDIAG(c, n,
          "%s: expected a date like 2026-01-01 or an RFC 3339 time like "
          "2026-01-01T06:00:00Z",
          what);
    return NULL;
}

/* j when the conversion went well (!bad); else j is released and NULL returned. */
static json_t *unless_bad(json_t *j, int bad)
{
    if (!bad)
        return j;
    json_decref(j);
    return NULL;
}

static json_t *conv_strlist(struct ctx *c, const struct ytree_node *n, const char *what)
{
    if (n->kind != YTREE_SEQ) {
        NDIAG(c, n, "%s: expected a list of strings", what);
        return NULL;
    }
    json_t *a = json_array();
    int bad = a == NULL;
    for (size_t i = 0; a != NULL && i < n->n; i++) {
        char w[96];
        snprintf(w, sizeof(w), "%s[%zu]", what, i);
        json_t *s = scalar_str(c, n->kids[i], w);
        if (s == NULL || json_array_append_new(a, s) != 0)
            bad = 1;
    }
    return unless_bad(a, bad);
}

/* Any YAML value as JSON: plain scalars resolve to null, booleans and numbers. */
static json_t *conv_generic(struct ctx *c, const struct ytree_node *n, const char *what)
{
    long long iv;
    double dv;
    int bv;
    json_t *j;

    if (n->kind == YTREE_SCALAR) {
        if (is_null(n))
            return json_null();
        if (plain_bool(n, &bv))
            return json_boolean(bv);
        if (plain_int(n, &iv))
            return json_integer(iv);
        if (plain_float(n, &dv))
            return json_real(dv);
        j = json_stringn(n->text, n->len);
        return j != NULL ? j : jnomem(c);
    }
    j = n->kind == YTREE_SEQ ? json_array() : json_object();
    if (j == NULL)
        return jnomem(c);
    int bad = 0;
    for (size_t i = 0; i < n->n; i += n->kind == YTREE_SEQ ? 1 : 2) {
        json_t *v;
        if (n->kind == YTREE_SEQ) {
            v = conv_generic(c, n->kids[i], what);
            if (v == NULL || json_array_append_new(j, v) != 0)
                bad = 1;
            continue;
        }
        const struct ytree_node *k = n->kids[i];
        if (k->kind != YTREE_SCALAR) {
            NDIAG(c, k, "%s: mapping keys must be scalars", what);
            bad = 1;
            continue;
        }
        if (json_object_get(j, k->text) != NULL) {
            char sk[64];
            NDIAG(c, k, "%s: duplicate key '%s'", what, safe_key(k->text, sk));
            bad = 1;
            continue;
        }
        v = conv_generic(c, n->kids[i + 1], what);
        if (v == NULL || json_object_set_new(j, k->text, v) != 0)
            bad = 1;
    }
    return unless_bad(j, bad);
}

/* A mapping of known keys. Keys of kind V_TASKS / V_DEFAULTS are left to the caller. */
static json_t *conv_map(struct ctx *c, const struct ytree_node *n, const struct keydef *defs,
                        const char *what)
{
    unsigned seen = 0;
    int bad = 0;
    if (n->kind != YTREE_MAP) {
        NDIAG(c, n, "%s: expected a mapping", what);
        return NULL;
    }
    json_t *o = json_object();
    if (o == NULL)
        return jnomem(c);
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const struct ytree_node *k = n->kids[i];
        size_t d = 0;
        if (k->kind != YTREE_SCALAR) {
            NDIAG(c, k, "mapping keys must be scalars");
            bad = 1;
            continue;
        }
        while (defs[d].name != NULL && strcmp(defs[d].name, k->text) != 0)
            d++;
        if (defs[d].name == NULL) {
            unknown_key(c, k, defs);
            bad = 1;
            continue;
        }
        if (seen & (1u << d)) {
            NDIAG(c, k, "duplicate key '%s'", defs[d].name);
            bad = 1;
            continue;
        }
        seen |= 1u << d;
        if (defs[d].kind == V_TASKS || defs[d].kind == V_DEFAULTS)
            continue;
        json_t *v = convert(c, n->kids[i + 1], defs[d].kind, defs[d].name);
        if (v == NULL || json_object_set_new(o, defs[d].name, v) != 0)
            bad = 1;
    }
    return unless_bad(o, bad);
}

static json_t *conv_env(struct ctx *c, const struct ytree_node *n, const char *what)
{
    int bad = 0;
    if (n->kind != YTREE_MAP) {
        NDIAG(c, n, "%s: expected a mapping of names to strings", what);
        return NULL;
    }
    json_t *o = json_object();
    if (o == NULL)
        return jnomem(c);
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const struct ytree_node *k = n->kids[i];
        if (k->kind != YTREE_SCALAR || json_object_get(o, k->text) != NULL) {
            NDIAG(c, k, "%s: %s", what,
                  k->kind != YTREE_SCALAR ? "keys must be scalars" : "duplicate key");
            bad = 1;
            continue;
        }
        char w[96], sk[64];
        snprintf(w, sizeof(w), "%s.%s", what, safe_key(k->text, sk));
        json_t *v = scalar_str(c, n->kids[i + 1], w);
        if (v == NULL || json_object_set_new(o, k->text, v) != 0)
            bad = 1;
    }
    return unless_bad(o, bad);
}

static json_t *conv_trigger(struct ctx *c, const struct ytree_node *n, const char *what)
{
    if (n->kind != YTREE_MAP) {
        NDIAG(c, n, "%s: expected a mapping with a type", what);
        return NULL;
    }
    json_t *o = conv_generic(c, n, what);
    const struct ytree_node *t = ytree_map_get(n, "timeout");
    if (o != NULL && t != NULL && !is_null(t)) {
        json_t *v = conv_duration(c, t, "trigger.timeout");
        if (v == NULL || json_object_set_new(o, "timeout", v) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static json_t *conv_rule(struct ctx *c, const struct ytree_node *n, const char *what)
{
    enum dag_trigger_rule r;
    const char *best = NULL;
    size_t bd = 99;
    if (n->kind == YTREE_SCALAR && dag_trigger_rule_parse(n->text, &r) == 0)
        return json_string(n->text);
    for (int i = 0; n->kind == YTREE_SCALAR && i < DAG_TR__COUNT; i++) {
        size_t d = edit_distance(n->text, dag_trigger_rule_name((enum dag_trigger_rule)i));
        if (d < bd) {
            bd = d;
            best = dag_trigger_rule_name((enum dag_trigger_rule)i);
        }
    }
    if (best != NULL && bd <= 3)
        NDIAG(c, n, "%s: unknown trigger rule (did you mean '%s'?)", what, best);
    else
        NDIAG(c, n, "%s: unknown trigger rule (see docs/dag-format.md)", what);
    return NULL;
}

static json_t *convert(struct ctx *c, const struct ytree_node *n, enum vkind kind, const char *what)
{
    long long iv;
    int bv;
    int nullable = kind == V_STR_NULL || kind == V_DUR_NULL || kind == V_DATE ||
                   kind == V_SIZE_NULL || kind == V_INT_NULL || kind == V_LIMITS ||
                   kind == V_TRIGGER || kind == V_CMD;
    if (nullable && is_null(n))
        return json_null();
    switch (kind) {
    case V_STR:
    case V_STR_NULL:
        return scalar_str(c, n, what);
    case V_INT:
    case V_INT_NULL:
        if (plain_int(n, &iv))
            return json_integer(iv);
        NDIAG(c, n, "%s: expected integer", what);
        return NULL;
    case V_BOOL:
        if (plain_bool(n, &bv))
            return json_boolean(bv);
        NDIAG(c, n, "%s: expected boolean (true or false)", what);
        return NULL;
    case V_DUR:
    case V_DUR_NULL:
        return conv_duration(c, n, what);
    case V_SIZE_NULL:
        return conv_size(c, n, what);
    case V_DATE:
        return conv_date(c, n, what);
    case V_CMD:
        if (n->kind == YTREE_SCALAR) {
            NDIAG(c, n, "command: expected a list of arguments (use shell: for a command line)");
            return NULL;
        }
        return conv_strlist(c, n, what);
    case V_UPSTREAM:
        if (n->kind == YTREE_SCALAR) {
            json_t *s = scalar_str(c, n, what), *a = s != NULL ? json_array() : NULL;
            if (a == NULL || json_array_append_new(a, s) != 0) {
                json_decref(a);
                return NULL;
            }
            return a;
        }
        return conv_strlist(c, n, what);
    case V_STRLIST:
        return conv_strlist(c, n, what);
    case V_RULE:
        return conv_rule(c, n, what);
    case V_ENV:
        return conv_env(c, n, what);
    case V_LIMITS:
        return conv_map(c, n, limit_keys, what);
    case V_TRIGGER:
        return conv_trigger(c, n, what);
    case V_PARAMS:
        if (n->kind != YTREE_MAP) {
            NDIAG(c, n, "%s: expected a mapping", what);
            return NULL;
        }
        return conv_generic(c, n, what);
    default:
        NDIAG(c, n, "%s: unsupported value", what);
        return NULL;
    }
}

/* Fills keys of defaults missing from task; env and limits merge key by key. */
static int apply_defaults(json_t *task, const json_t *defaults)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)defaults, k, v)
    {
        json_t *tv = json_object_get(task, k);
        if (tv == NULL) {
            if (json_object_set_new(task, k, json_deep_copy(v)) != 0)
                return -1;
        } else if ((strcmp(k, "env") == 0 || strcmp(k, "limits") == 0) && json_is_object(tv) &&
                   json_is_object(v)) {
            json_t *merged = json_deep_copy(v);
            if (merged == NULL || json_object_update(merged, tv) != 0 ||
                json_object_set_new(task, k, merged) != 0)
                return -1;
        }
    }
    return 0;
}

/* Returns the node a "path: message" error refers to. */
static const struct ytree_node *resolve_path(const struct ytree_node *dag,
                                             const struct ytree_node *defaults, const char *msg,
                                             size_t bad_task)
{
    const struct ytree_node *cur = dag, *tasks = ytree_map_get(dag, "tasks");
    const char *p = msg;
    int in_task = 0;
    while (*p != '\0' && *p != ':' && *p != ' ') {
        char key[64];
        size_t n = 0;
        if (*p == '[') {
            char *end;
            unsigned long idx = strtoul(p + 1, &end, 10);
            if (*end != ']' || cur->kind != YTREE_SEQ || idx >= cur->n)
                break;
            in_task = cur == tasks;
            cur = cur->kids[idx];
            p = end + 1;
            continue;
        }
        if (*p == '.')
            p++;
        while (*p != '\0' && *p != '.' && *p != '[' && *p != ':' && *p != ' ' && n + 1 < 64)
            key[n++] = *p++;
        key[n] = '\0';
        const struct ytree_node *next = ytree_map_get(cur, key);
        if (next == NULL && in_task)
            next = ytree_map_get(defaults, key);
        in_task = 0;
        if (next == NULL)
            break;
        cur = next;
    }
    if ((cur == dag || cur == tasks) && tasks != NULL && tasks->kind == YTREE_SEQ &&
        bad_task < tasks->n)
        cur = tasks->kids[bad_task];
    return cur;
}

/* Converts one DAG mapping; on success appends the model to res. */
static void one_dag(struct ctx *c, const struct ytree_node *n)
{
    size_t before = c->res->ndiags;
    int bad = 0;

    json_t *o = conv_map(c, n, dag_keys, "dag");
    if (o == NULL)
        bad = 1;
    const struct ytree_node *dn = ytree_map_get(n, "default_args"), *tn = ytree_map_get(n, "tasks");
    json_t *defaults = NULL, *tasks = json_array();
    if (tasks == NULL) {
        json_decref(o);
        c->oom = 1;
        return;
    }
    if (n->kind == YTREE_MAP && dn != NULL && !is_null(dn)) {
        defaults = conv_map(c, dn, default_keys, "default_args");
        bad |= defaults == NULL;
    }
    if (n->kind == YTREE_MAP && ytree_map_get(n, "dag_id") == NULL) {
        NDIAG(c, n, "dag_id: required");
        bad = 1;
    }
    if (n->kind == YTREE_MAP && (tn == NULL || tn->kind != YTREE_SEQ)) {
        NDIAG(c, tn != NULL ? tn : n, "tasks: expected a list of task mappings");
        bad = 1;
    }
    for (size_t i = 0; tn != NULL && tn->kind == YTREE_SEQ && i < tn->n; i++) {
        char w[48];
        snprintf(w, sizeof(w), "tasks[%zu]", i);
        if (c->res->ndiags >= DAGYAML_DIAGS_MAX || ((i & 63) == 63 && out_of_time(c, tn->kids[i])))
            break;
        json_t *t = conv_map(c, tn->kids[i], task_keys, w);
        if (t != NULL && ytree_map_get(tn->kids[i], "task_id") == NULL) {
            NDIAG(c, tn->kids[i], "task_id: required");
            json_decref(t);
            t = NULL;
        }
        if (t == NULL || (defaults != NULL && apply_defaults(t, defaults) != 0) ||
            json_array_append_new(tasks, t) != 0)
            bad = 1;
    }
    if (!bad && !c->oom && c->res->ndiags == before &&
        (json_object_set_new(o, "tasks", tasks) != 0 ||
         json_object_set_new(o, "fileloc", json_string(c->file)) != 0)) {
        c->oom = 1;
        bad = 1;
    } else if (bad || c->oom || c->res->ndiags != before) {
        json_decref(tasks);
        bad = 1;
    }
    json_decref(defaults);
    if (bad || out_of_time(c, n)) {
        json_decref(o);
        return;
    }
    struct dag *d = NULL;
    struct remex_error e = {0};
    size_t bad_task = (size_t)-1;
    char *text = NULL; /* the canonical text its hash is made of, kept for the caller */
    remex_err rc = dag_from_json_value_canon(o, &d, &bad_task, &text, &e);
    json_decref(o);
    if (rc == REMEX_ENOMEM) {
        c->oom = 1;
        return;
    }
    if (rc != REMEX_OK) {
        const struct ytree_node *at = resolve_path(n, dn, e.msg, bad_task);
        NDIAG(c, at, "%s", e.msg);
        return;
    }
    if (out_of_time(c, n)) {
        dag_free(d);
        free(text);
        return;
    }
    struct dag **nd = realloc(c->res->dags, (c->res->ndags + 1) * sizeof(*nd));
    if (nd != NULL)
        c->res->dags = nd;
    char **nt = nd ? realloc(c->res->texts, (c->res->ndags + 1) * sizeof(*nt)) : NULL;
    if (nt == NULL) {
        dag_free(d);
        free(text);
        c->oom = 1;
        return;
    }
    c->res->texts = nt;
    c->res->texts[c->res->ndags] = text;
    c->res->dags[c->res->ndags++] = d;
}

static void walk_root(struct ctx *c, const struct ytree_node *root)
{
    const struct ytree_node *list = ytree_map_get(root, "dags");
    if (root->kind != YTREE_MAP) {
        NDIAG(c, root, "expected a DAG mapping or a mapping with `dags:`");
        return;
    }
    if (list == NULL) {
        one_dag(c, root);
        return;
    }
    for (size_t i = 0; i + 1 < root->n; i += 2)
        if (root->kids[i + 1] != list)
            NDIAG(c, root->kids[i], "unexpected key next to `dags:` (put it inside a DAG)");
    if (list->kind != YTREE_SEQ) {
        NDIAG(c, list, "dags: expected a list of DAG mappings");
        return;
    }
    if (list->n > DAGYAML_DAGS_MAX) {
        NDIAG(c, list, "dags: more than %d DAGs in one file", DAGYAML_DAGS_MAX);
        return;
    }
    for (size_t i = 0; i < list->n && c->res->ndiags < DAGYAML_DIAGS_MAX && !c->oom; i++) {
        size_t had = c->res->ndags;
        if (out_of_time(c, list->kids[i]))
            break;
        one_dag(c, list->kids[i]);
        if (c->res->ndags == had)
            continue;
        for (size_t j = 0; j < had; j++) {
            if (strcmp(c->res->dags[j]->dag_id, c->res->dags[had]->dag_id) == 0) {
                const struct ytree_node *id = ytree_map_get(list->kids[i], "dag_id");
                NDIAG(c, id != NULL ? id : list->kids[i], "dag_id: duplicate dag id '%s'",
                      c->res->dags[had]->dag_id);
                break;
            }
        }
    }
}

static void result_init(struct dagyaml_result *res)
{
    memset(res, 0, sizeof(*res));
}

void dagyaml_result_free(struct dagyaml_result *res)
{
    if (res == NULL)
        return;
    for (size_t i = 0; i < res->ndags; i++) {
        dag_free(res->dags[i]);
        if (res->texts)
            free(res->texts[i]);
    }
    free(res->dags);
    free(res->texts);
    result_init(res);
}

/* Drops the DAGs of a file with diagnostics; sets e from the first one. */
static remex_err finish(struct ctx *c, struct remex_error *e)
{
    struct dagyaml_result *res = c->res;
    if (c->oom) {
        dagyaml_result_free(res);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    if (res->ndiags == 0)
        return REMEX_OK;
    for (size_t i = 0; i < res->ndags; i++) {
        dag_free(res->dags[i]);
        if (res->texts)
            free(res->texts[i]);
    }
    free(res->dags);
    free(res->texts);
    res->dags = NULL;
    res->texts = NULL;
    res->ndags = 0;
    return remex_seterr(e, REMEX_EPARSE, "%s:%u:%u: %s", c->file, res->diags[0].line,
                        res->diags[0].column, res->diags[0].msg);
}

remex_err dagyaml_parse(const char *data, size_t len, const char *fileloc,
                        struct dagyaml_result *res, struct remex_error *e)
{
    return dagyaml_parse_until(data, len, fileloc, 0, res, e);
}

remex_err dagyaml_parse_until(const char *data, size_t len, const char *fileloc, unsigned cap_ms,
                              struct dagyaml_result *res, struct remex_error *e)
{
    unsigned line, col;

    result_init(res);
    struct ctx c = {fileloc, res, 0, 0, cap_ms, 0};
    if (cap_ms > 0)
        c.cpu_deadline_ns = ytree_thread_cpu_ns() + (uint64_t)cap_ms * 1000000u;
    if (len > DAGYAML_FILE_MAX) {
        diag(&c, 1, 1, "file larger than %d bytes", DAGYAML_FILE_MAX);
        return finish(&c, e);
    }
    size_t bad = ytree_utf8_check(data, len);
    if (bad < len) {
        position_of(data, bad, &line, &col);
        diag(&c, line, col, data[bad] == '\0' ? "NUL byte" : "invalid UTF-8");
        return finish(&c, e);
    }
    struct ytree_node *root = load(&c, data, len);
    if (root != NULL && res->ndiags == 0 && !c.oom)
        walk_root(&c, root);
    ytree_free(root);
    return finish(&c, e);
}

remex_err dagyaml_parse_file(const char *path, const char *fileloc, struct dagyaml_result *res,
                             struct remex_error *e)
{
    struct stat st;
    char *data = NULL;
    size_t len = 0;

    result_init(res);
    struct ctx c = {fileloc, res, 0, 0, 0, 0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int err = fd < 0 ? errno : EINVAL;
        if (fd >= 0)
            close(fd);
        diag(&c, 1, 1, "cannot read file: %s", strerror(err));
        remex_seterr(e, REMEX_EIO, "%s: cannot read file: %s", fileloc, strerror(err));
        return REMEX_EIO;
    }
    if (st.st_size > DAGYAML_FILE_MAX) {
        close(fd);
        diag(&c, 1, 1, "file larger than %d bytes", DAGYAML_FILE_MAX);
        return remex_seterr(e, REMEX_ETOOBIG, "%s: file larger than %d bytes", fileloc,
                            DAGYAML_FILE_MAX);
    }
    data = malloc(DAGYAML_FILE_MAX + 1);
    if (data == NULL) {
        close(fd);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    for (;;) {
        ssize_t r = read(fd, data + len, DAGYAML_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int err = errno;
            close(fd);
            free(data);
            diag(&c, 1, 1, "cannot read file: %s", strerror(err));
            return remex_seterr(e, REMEX_EIO, "%s: read: %s", fileloc, strerror(err));
        }
        if (r == 0 || (len += (size_t)r) > DAGYAML_FILE_MAX)
            break;
    }
    close(fd);
    remex_err rc = dagyaml_parse(data, len, fileloc, res, e);
    free(data);
    return rc;
}

remex_err dagyaml_format_diags(const struct dagyaml_result *res, const char *file, struct buf *out)
{
    for (size_t i = 0; i < res->ndiags; i++) {
        remex_err rc = buf_printf(out, "%s:%u:%u: %s\n", file, res->diags[i].line,
                                  res->diags[i].column, res->diags[i].msg);
        if (rc != REMEX_OK)
            return rc;
    }
    if (res->more_diags)
        return buf_printf(out, "%s: too many errors, stopped after %d\n", file, DAGYAML_DIAGS_MAX);
    return REMEX_OK;
}
