/* cfg: table-driven YAML configuration with environment overrides. */
#include "remex/cfg.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/timeutil.h"
#include "remex/yamltree.h"

#define KEY_MAX 256 /* longest dotted path or display path */

/* The walkers below read the tree of remex/yamltree.h (1-based positions, map kids alternate
 * key, value). */

/* Where a field's value came from, for messages after the fact. */
struct seen {
    unsigned char src; /* 0 default/unset, 1 file, 2 environment */
    unsigned line, col;
};

struct ctx {
    const char *name;
    const char *data; /* whole input, for positions of reader errors */
    size_t len;
    struct cfg_errors *errs;
    const char *prefix;
    cfg_lookup_fn lookup;
    void *lookup_ud;
    int oom;
};

static void add_err(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_err(struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    if (c->errs->n >= CFG_MAX_ERRORS) {
        c->errs->dropped++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(c->errs->msg[c->errs->n], REMEX_ERRMSG_MAX, fmt, ap);
    va_end(ap);
    c->errs->n++;
}

/* Records a warning (never a failure); dropped silently past CFG_MAX_WARNINGS. */
static void node_warn(struct ctx *c, const struct ytree_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void node_warn(struct ctx *c, const struct ytree_node *n, const char *fmt, ...)
{
    char msg[REMEX_ERRMSG_MAX];
    va_list ap;
    if (c->errs->nwarn >= CFG_MAX_WARNINGS)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->errs->warn[c->errs->nwarn++], REMEX_ERRMSG_MAX, "%s:%u:%u: %s", c->name, n->line,
             n->col, msg);
}

static void node_err(struct ctx *c, const struct ytree_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void node_err(struct ctx *c, const struct ytree_node *n, const char *fmt, ...)
{
    char msg[REMEX_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n != NULL)
        add_err(c, "%s:%u:%u: %s", c->name, n->line, n->col, msg);
    else if (c->data != NULL)
        add_err(c, "%s: %s", c->name, msg);
    else
        add_err(c, "%s", msg);
}

static char *dupn(struct ctx *c, const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p == NULL) {
        if (c != NULL)
            c->oom = 1;
        return NULL;
    }
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void wipe_free(char *p)
{
    if (p == NULL)
        return;
    explicit_bzero(p, strlen(p));
    free(p);
}

/* ---- YAML text -> node tree (remex/yamltree.h) ------------------------- */

/* Parses the whole input. Returns the root (NULL for an empty stream) or records an error. */
static int build_tree(struct ctx *c, struct ytree_node **rootp)
{
    static const struct ytree_limits lim = {CFG_MAX_NODES, CFG_MAX_DEPTH, YTREE_ALLOW_TAGS};
    struct ytree_error ye;

    if (ytree_parse(c->data, c->len, &lim, rootp, &ye) == REMEX_OK)
        return 0;
    switch (ye.kind) {
    case YTREE_ENOMEM:
        c->oom = 1;
        break;
    case YTREE_ESYNTAX:
        add_err(c, "%s:%u:%u: YAML syntax error: %s%s%s%s", c->name, ye.line, ye.col,
                ye.problem[0] ? ye.problem : "unknown problem", ye.context[0] ? " (" : "",
                ye.context, ye.context[0] ? ")" : "");
        break;
    case YTREE_EDOCS:
        add_err(c, "%s:%u:%u: only one YAML document is allowed", c->name, ye.line, ye.col);
        break;
    case YTREE_EALIAS:
        add_err(c, "%s:%u:%u: YAML aliases are not supported", c->name, ye.line, ye.col);
        break;
    case YTREE_EANCHOR:
        add_err(c, "%s:%u:%u: YAML anchors are not supported", c->name, ye.line, ye.col);
        break;
    case YTREE_ENODES:
        add_err(c, "%s:%u:%u: more than %d YAML nodes", c->name, ye.line, ye.col, CFG_MAX_NODES);
        break;
    case YTREE_EDEPTH:
        add_err(c, "%s:%u:%u: nesting deeper than %d levels", c->name, ye.line, ye.col,
                CFG_MAX_DEPTH);
        break;
    default:
        add_err(c, "%s:%u:%u: unreadable YAML", c->name, ye.line, ye.col);
        break;
    }
    return -1;
}

/* ---- table helpers ------------------------------------------------------ */

static size_t table_len(const struct cfg_entry *t)
{
    size_t n = 0;
    while (t[n].key != NULL)
        n++;
    return n;
}

static const struct cfg_entry *find_entry(const struct cfg_entry *t, const char *key)
{
    for (; t->key != NULL; t++) {
        if (strcmp(t->key, key) == 0)
            return t;
    }
    return NULL;
}

/* 1 if some key of t starts with "prefix." */
static int is_section(const struct cfg_entry *t, const char *prefix)
{
    size_t n = strlen(prefix);
    for (; t->key != NULL; t++) {
        if (strncmp(t->key, prefix, n) == 0 && t->key[n] == '.')
            return 1;
    }
    return 0;
}

static void *field_of(const struct cfg_entry *e, void *obj)
{
    return (char *)obj + e->offset;
}

static const void *cfield_of(const struct cfg_entry *e, const void *obj)
{
    return (const char *)obj + e->offset;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65];
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Closest key valid under tprefix (one path component), or NULL if none is close. */
static const char *suggest(const struct cfg_entry *t, const char *tprefix, const char *key,
                           char *out, size_t outsz)
{
    size_t plen = strlen(tprefix), best = SIZE_MAX;
    for (; t->key != NULL; t++) {
        char cand[KEY_MAX];
        const char *s, *dot;
        size_t n, d;
        if (strncmp(t->key, tprefix, plen) != 0)
            continue;
        s = t->key + plen;
        dot = strchr(s, '.');
        n = dot ? (size_t)(dot - s) : strlen(s);
        if (n >= sizeof(cand))
            continue;
        memcpy(cand, s, n);
        cand[n] = '\0';
        d = edit_distance(key, cand);
        if (d < best && d <= 2 && d < strlen(key)) {
            best = d;
            snprintf(out, outsz, "%s", cand);
        }
    }
    return best == SIZE_MAX ? NULL : out;
}

static const char *type_word(const struct cfg_entry *e)
{
    switch (e->type) {
    case CFG_STRING:
        return "string";
    case CFG_INT:
        return "integer";
    case CFG_BOOL:
        return "boolean";
    case CFG_DURATION:
        return "duration";
    case CFG_SIZE:
        return "size";
    case CFG_ENUM:
        return "enum";
    case CFG_STRLIST:
        return "list of strings";
    case CFG_URL:
        return "URL";
    case CFG_PATH:
        return "path";
    case CFG_SECRET:
        return "secret";
    case CFG_LIST:
        return "list";
    case CFG_RESERVED:
        return "reserved section";
    }
    return "?";
}

remex_err cfg_env_name(const char *prefix, const char *key, char *out, size_t outsz)
{
    size_t pl = strlen(prefix), kl = strlen(key);
    if (pl + kl + 1 > outsz)
        return REMEX_ETOOBIG;
    memcpy(out, prefix, pl);
    for (size_t i = 0; i < kl; i++) {
        char ch = key[i];
        if (ch == '.' || ch == '-')
            ch = '_';
        else if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        out[pl + i] = ch;
    }
    out[pl + kl] = '\0';
    return REMEX_OK;
}

/* ---- scalar parsing (defaults, YAML scalars, environment) -------------- */

static int parse_i64(const char *s, int64_t *v, int *overflow)
{
    const char *p = s;
    char *end;
    long long x;

    *overflow = 0;
    if (*p == '-' || *p == '+')
        p++;
    if (*p < '0' || *p > '9')
        return -1;
    errno = 0;
    x = strtoll(s, &end, 10);
    if (*end != '\0')
        return -1;
    if (errno == ERANGE) {
        *overflow = 1;
        return -1;
    }
    *v = x;
    return 0;
}

static int parse_bool(const char *s, bool *v)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *v = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *v = false;
            return 0;
        }
    }
    return -1;
}

/* http(s)://host[:port][/path...]; no credentials, no whitespace or control bytes. */
static int check_url(const char *s, char *why, size_t whysz)
{
    const char *p, *host, *end;
    size_t hl;

    for (p = s; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(why, whysz, "URL must not contain spaces or control characters");
            return -1;
        }
    }
    if (strncasecmp(s, "https://", 8) == 0)
        host = s + 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        host = s + 7;
    else {
        snprintf(why, whysz, "URL scheme must be http or https");
        return -1;
    }
    end = host + strcspn(host, "/?#");
    if (memchr(host, '@', (size_t)(end - host)) != NULL) {
        snprintf(why, whysz, "URL must not contain credentials (use a secret)");
        return -1;
    }
    if (*host == '[') {
        const char *rb = memchr(host, ']', (size_t)(end - host));
        if (rb == NULL || rb == host + 1) {
            snprintf(why, whysz, "URL has a malformed IPv6 host");
            return -1;
        }
        p = rb + 1;
    } else {
        p = memchr(host, ':', (size_t)(end - host));
        if (p == NULL)
            p = end;
    }
    hl = (size_t)(p - host);
    if (hl == 0) {
        snprintf(why, whysz, "URL has no host");
        return -1;
    }
    if (p < end) {
        long port = 0;
        if (*p != ':' || p + 1 == end) {
            snprintf(why, whysz, "URL has a malformed port");
            return -1;
        }
        for (p++; p < end; p++) {
            if (*p < '0' || *p > '9' || (port = port * 10 + (*p - '0')) > 65535) {
                snprintf(why, whysz, "URL port must be 1-65535");
                return -1;
            }
        }
        if (port == 0) {
            snprintf(why, whysz, "URL port must be 1-65535");
            return -1;
        }
    }
    return 0;
}

static int check_path(const char *s, char *why, size_t whysz)
{
    size_t n = strlen(s);
    if (n == 0 || n >= PATH_MAX) {
        snprintf(why, whysz, "expected a file path");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < ' ' || s[i] == 0x7f) {
            snprintf(why, whysz, "path must not contain control characters");
            return -1;
        }
    }
    return 0;
}

static void strlist_free(struct cfg_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static void secret_clear(struct cfg_secret *s)
{
    wipe_free(s->value);
    free(s->source);
    s->kind = CFG_SECRET_NONE;
    s->value = NULL;
    s->source = NULL;
}

static int range_fail_u(const struct cfg_entry *e, uint64_t v, char *why, size_t whysz)
{
    char lo[TIMEUTIL_DURATION_MAX], hi[TIMEUTIL_DURATION_MAX];
    if (e->min >= e->max || (v >= (uint64_t)e->min && v <= (uint64_t)e->max))
        return 0;
    if (e->type == CFG_DURATION) {
        timeutil_duration_format((uint64_t)e->min, lo, sizeof(lo));
        timeutil_duration_format((uint64_t)e->max, hi, sizeof(hi));
    } else {
        timeutil_size_format((uint64_t)e->min, lo, sizeof(lo));
        timeutil_size_format((uint64_t)e->max, hi, sizeof(hi));
    }
    snprintf(why, whysz, "must be between %s and %s", lo, hi);
    return -1;
}

/* Splits a comma-separated list (spaces around items trimmed) into l. */
static int parse_csv(const struct cfg_entry *e, const char *s, struct cfg_strlist *l, char *why,
                     size_t whysz)
{
    size_t cap = e->max_items ? e->max_items : CFG_MAX_ITEMS, n = 1;
    struct cfg_strlist nl = {NULL, 0};
    const char *p;

    for (p = s; *p; p++)
        n += *p == ',';
    if (n > cap) {
        snprintf(why, whysz, "more than %zu items", cap);
        return -1;
    }
    nl.items = calloc(n, sizeof(char *));
    if (nl.items == NULL) {
        snprintf(why, whysz, "out of memory");
        return -1;
    }
    for (p = s;;) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
        while (p < end && *p == ' ')
            p++;
        while (end > p && end[-1] == ' ')
            end--;
        if (end == p) {
            strlist_free(&nl);
            snprintf(why, whysz, "empty item in comma-separated list");
            return -1;
        }
        nl.items[nl.n] = dupn(NULL, p, (size_t)(end - p));
        if (nl.items[nl.n] == NULL) {
            strlist_free(&nl);
            snprintf(why, whysz, "out of memory");
            return -1;
        }
        nl.n++;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    strlist_free(l);
    *l = nl;
    return 0;
}

/*
 * Parses text into the field of e (replacing what was there). Returns 0, or -1
 * with a reason in why that never quotes the text.
 */
static int parse_scalar(const struct cfg_entry *e, void *field, const char *s, char *why,
                        size_t whysz)
{
    struct remex_error err;
    uint64_t u;
    int64_t v;
    int overflow;
    char *copy;

    switch (e->type) {
    case CFG_INT:
        if (parse_i64(s, &v, &overflow) != 0 && !overflow) {
            snprintf(why, whysz, "expected integer");
            return -1;
        }
        if (overflow || (e->min < e->max && (v < e->min || v > e->max))) {
            if (e->min < e->max)
                snprintf(why, whysz, "must be between %lld and %lld", (long long)e->min,
                         (long long)e->max);
            else
                snprintf(why, whysz, "integer out of range");
            return -1;
        }
        *(int64_t *)field = v;
        return 0;
    case CFG_BOOL:
        if (parse_bool(s, (bool *)field) != 0) {
            snprintf(why, whysz, "expected boolean (true/false, yes/no, on/off)");
            return -1;
        }
        return 0;
    case CFG_DURATION:
    case CFG_SIZE:
        if ((e->type == CFG_DURATION ? timeutil_duration_parse(s, &u, &err)
                                     : timeutil_size_parse(s, &u, &err)) != REMEX_OK) {
            snprintf(why, whysz, "%s", err.msg);
            return -1;
        }
        if (range_fail_u(e, u, why, whysz))
            return -1;
        *(uint64_t *)field = u;
        return 0;
    case CFG_ENUM:
        for (int i = 0; e->enums != NULL && e->enums[i] != NULL; i++) {
            if (strcmp(s, e->enums[i]) == 0) {
                *(int *)field = i;
                return 0;
            }
        }
        {
            size_t off = (size_t)snprintf(why, whysz, "must be one of: ");
            for (int i = 0; e->enums != NULL && e->enums[i] != NULL && off < whysz; i++)
                off += (size_t)snprintf(why + off, whysz - off, "%s%s", i ? ", " : "", e->enums[i]);
        }
        return -1;
    case CFG_STRLIST:
        return parse_csv(e, s, (struct cfg_strlist *)field, why, whysz);
    case CFG_SECRET:
        if (*s == '\0') {
            snprintf(why, whysz, "secret must not be empty");
            return -1;
        }
        copy = dupn(NULL, s, strlen(s));
        if (copy == NULL)
            break;
        secret_clear((struct cfg_secret *)field);
        ((struct cfg_secret *)field)->kind = CFG_SECRET_VALUE;
        ((struct cfg_secret *)field)->value = copy;
        return 0;
    case CFG_URL:
    case CFG_PATH:
        if ((e->type == CFG_URL ? check_url(s, why, whysz) : check_path(s, why, whysz)) != 0)
            return -1;
        /* fallthrough */
    case CFG_STRING:
        copy = dupn(NULL, s, strlen(s));
        if (copy == NULL)
            break;
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    case CFG_LIST:
        snprintf(why, whysz, "a list of records cannot be given as text");
        return -1;
    case CFG_RESERVED:
        snprintf(why, whysz, "a reserved section cannot be given as text");
        return -1;
    }
    snprintf(why, whysz, "out of memory");
    return -1;
}

/* ---- secrets ------------------------------------------------------------ */

remex_err cfg_secret_read_file(const char *path, size_t max, char **out, size_t *len,
                               struct stat *stp, struct remex_error *e)
{
    struct stat st;
    char *buf;
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    *out = NULL;
    if (stp != NULL)
        memset(stp, 0, sizeof(*stp));
    if (fd < 0)
        return remex_errno(e, errno == EACCES ? REMEX_EPERM : REMEX_EIO, "%s", path);
    if (fstat(fd, &st) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return remex_errno(e, REMEX_EIO, "%s", path);
    }
    if (stp != NULL)
        *stp = st;
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return remex_seterr(e, REMEX_EPERM, "%s: not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return remex_seterr(e, REMEX_EPERM, "%s: permissions %04o are too open; chmod 600 %s", path,
                            (unsigned)(st.st_mode & 07777), path);
    }
    if (max > CFG_SECRET_MAX)
        max = CFG_SECRET_MAX;
    buf = malloc(max + 2);
    if (buf == NULL) {
        close(fd);
        return remex_seterr(e, REMEX_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int saved = errno;
            close(fd);
            explicit_bzero(buf, n);
            free(buf);
            errno = saved;
            return remex_errno(e, REMEX_EIO, "%s", path);
        }
        if (r == 0 || (n += (size_t)r) > max)
            break;
    }
    close(fd);
    if (n > max) {
        explicit_bzero(buf, n);
        free(buf);
        return remex_seterr(e, REMEX_ETOOBIG, "%s: secret file larger than %zu bytes", path, max);
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    if (n == 0 || memchr(buf, '\0', n) != NULL) {
        explicit_bzero(buf, n);
        free(buf);
        return remex_seterr(e, REMEX_EINVAL, "%s: secret file is empty or contains a NUL byte",
                            path);
    }
    *out = buf;
    if (len != NULL)
        *len = n;
    return REMEX_OK;
}

remex_err cfg_secret_get(const struct cfg_secret *s, char **out, size_t *len, struct remex_error *e)
{
    *out = NULL;
    switch (s->kind) {
    case CFG_SECRET_FILE:
        return cfg_secret_read_file(s->source, CFG_SECRET_MAX, out, len, NULL, e);
    case CFG_SECRET_VALUE:
    case CFG_SECRET_ENV:
        if (s->value != NULL) {
            size_t n = strlen(s->value);
            *out = dupn(NULL, s->value, n);
            if (*out == NULL)
                return remex_seterr(e, REMEX_ENOMEM, "secret: out of memory");
            if (len != NULL)
                *len = n;
            return REMEX_OK;
        }
        break;
    case CFG_SECRET_NONE:
        break;
    }
    return remex_seterr(e, REMEX_ENOTFOUND, "secret is not configured");
}

void cfg_secret_free(char *value)
{
    wipe_free(value);
}

/* Checks a file secret now (existence, type, mode, size) without keeping the value. */
static int secret_check_file(const char *path, char *why, size_t whysz)
{
    struct remex_error err;
    char *v = NULL;
    if (cfg_secret_read_file(path, CFG_SECRET_MAX, &v, NULL, NULL, &err) != REMEX_OK) {
        snprintf(why, whysz, "%s", err.msg);
        return -1;
    }
    wipe_free(v);
    return 0;
}

static int env_name_ok(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (s++; *s; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_' ||
              (*s >= '0' && *s <= '9')))
            return 0;
    }
    return 1;
}

static const char *env_get(struct ctx *c, const char *name)
{
    return c->lookup ? c->lookup(name, c->lookup_ud) : getenv(name);
}

/* Sets a secret to FILE or ENV kind after checking it; -1 with why on failure. */
static int secret_set_ref(struct ctx *c, struct cfg_secret *s, int is_file, const char *ref,
                          char *why, size_t whysz)
{
    char *src, *val = NULL;
    if (is_file) {
        if (check_path(ref, why, whysz) != 0 || secret_check_file(ref, why, whysz) != 0)
            return -1;
    } else {
        const char *v;
        if (!env_name_ok(ref)) {
            snprintf(why, whysz, "env: expected a variable name");
            return -1;
        }
        v = env_get(c, ref);
        if (v == NULL || *v == '\0') {
            snprintf(why, whysz, "environment variable %s is not set", ref);
            return -1;
        }
        if ((val = dupn(c, v, strlen(v))) == NULL)
            return -1;
    }
    src = dupn(c, ref, strlen(ref));
    if (src == NULL) {
        wipe_free(val);
        return -1;
    }
    secret_clear(s);
    s->kind = is_file ? CFG_SECRET_FILE : CFG_SECRET_ENV;
    s->source = src;
    s->value = val;
    return 0;
}

/* ---- applying YAML nodes ------------------------------------------------ */

static int is_null(const struct ytree_node *n)
{
    return n->kind == YTREE_SCALAR && n->plain &&
           (n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
            strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0);
}

static void apply_defaults(struct ctx *c, const struct cfg_entry *t, void *obj);
static void finish(struct ctx *c, const struct cfg_entry *t, void *obj, struct seen *seen,
                   const char *dbase, const struct ytree_node *where, int top);
static void walk_map(struct ctx *c, const struct cfg_entry *t, void *obj, struct seen *seen,
                     const char *tprefix, const char *dbase, const struct ytree_node *map,
                     int depth);

static void set_strlist(struct ctx *c, const struct cfg_entry *e, void *field,
                        const struct ytree_node *v, const char *path)
{
    size_t cap = e->max_items ? e->max_items : CFG_MAX_ITEMS;
    struct cfg_strlist nl = {NULL, 0};

    if (v->kind != YTREE_SEQ) {
        node_err(c, v, "%s: expected a list of strings", path);
        return;
    }
    if (v->n > cap) {
        node_err(c, v, "%s: more than %zu items", path, cap);
        return;
    }
    nl.items = calloc(v->n ? v->n : 1, sizeof(char *));
    if (nl.items == NULL) {
        c->oom = 1;
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        const struct ytree_node *it = v->kids[i];
        if (it->kind != YTREE_SCALAR || strlen(it->text) != it->len) {
            node_err(c, it, "%s[%zu]: expected a string", path, i);
            strlist_free(&nl);
            return;
        }
        if ((nl.items[nl.n] = dupn(c, it->text, it->len)) == NULL) {
            strlist_free(&nl);
            return;
        }
        nl.n++;
    }
    strlist_free(field);
    *(struct cfg_strlist *)field = nl;
}

static void set_secret(struct ctx *c, const struct cfg_entry *e, void *field,
                       const struct ytree_node *v, const char *path)
{
    char why[REMEX_ERRMSG_MAX];
    const struct ytree_node *k, *r;
    (void)e;

    if (v->kind == YTREE_SCALAR) {
        if (strlen(v->text) != v->len || v->len == 0) {
            node_err(c, v, "%s: secret must be a non-empty string", path);
            return;
        }
        if (parse_scalar(e, field, v->text, why, sizeof(why)) != 0)
            c->oom = 1;
        return;
    }
    if (v->kind != YTREE_MAP || v->n != 2 || v->kids[0]->kind != YTREE_SCALAR ||
        (strcmp(v->kids[0]->text, "file") != 0 && strcmp(v->kids[0]->text, "env") != 0)) {
        node_err(c, v, "%s: expected a string, {file: PATH} or {env: NAME}", path);
        return;
    }
    k = v->kids[0];
    r = v->kids[1];
    if (r->kind != YTREE_SCALAR || strlen(r->text) != r->len || r->len == 0) {
        node_err(c, r, "%s: %s: expected a string", path, k->text);
        return;
    }
    if (secret_set_ref(c, field, strcmp(k->text, "file") == 0, r->text, why, sizeof(why)) != 0 &&
        !c->oom)
        node_err(c, r, "%s: %s", path, why);
}

static void set_list(struct ctx *c, const struct cfg_entry *e, void *field,
                     const struct ytree_node *v, const char *path, int depth)
{
    size_t cap = e->max_items ? e->max_items : CFG_MAX_ITEMS, n = table_len(e->sub);
    struct cfg_list *l = field;

    if (v->kind != YTREE_SEQ) {
        node_err(c, v, "%s: expected a list", path);
        return;
    }
    if (v->n > cap) {
        node_err(c, v, "%s: more than %zu items", path, cap);
        return;
    }
    if (v->n == 0)
        return;
    l->items = calloc(v->n, e->elem_size);
    if (l->items == NULL) {
        c->oom = 1;
        return;
    }
    l->n = v->n;
    for (size_t i = 0; i < v->n; i++) {
        void *rec = (char *)l->items + i * e->elem_size;
        char dbase[KEY_MAX];
        struct seen *seen = calloc(n ? n : 1, sizeof(*seen));
        if (seen == NULL) {
            c->oom = 1;
            return;
        }
        snprintf(dbase, sizeof(dbase), "%s[%zu].", path, i);
        apply_defaults(c, e->sub, rec);
        if (v->kids[i]->kind != YTREE_MAP) {
            node_err(c, v->kids[i], "%s[%zu]: expected a mapping", path, i);
        } else {
            walk_map(c, e->sub, rec, seen, "", dbase, v->kids[i], depth + 1);
            finish(c, e->sub, rec, seen, dbase, v->kids[i], 0);
        }
        free(seen);
    }
}

static void set_from_node(struct ctx *c, const struct cfg_entry *e, void *obj, struct seen *sn,
                          const struct ytree_node *v, const char *dbase, int depth)
{
    char path[KEY_MAX], why[REMEX_ERRMSG_MAX];
    void *field = field_of(e, obj);

    snprintf(path, sizeof(path), "%s%s", dbase, e->key);
    if (is_null(v))
        return; /* "key:" or "key: ~" keeps the default */
    sn->src = 1;
    sn->line = v->line;
    sn->col = v->col;
    switch (e->type) {
    case CFG_RESERVED:
        if (v->kind != YTREE_MAP)
            node_err(c, v, "%s: expected a mapping", path);
        else if (v->n > 0)
            node_warn(c, v, "%s: %s; its keys are not read", path, e->desc);
        return;
    case CFG_STRLIST:
        set_strlist(c, e, field, v, path);
        return;
    case CFG_SECRET:
        set_secret(c, e, field, v, path);
        return;
    case CFG_LIST:
        set_list(c, e, field, v, path, depth);
        return;
    default:
        break;
    }
    if (v->kind != YTREE_SCALAR) {
        node_err(c, v, "%s: expected %s", path, type_word(e));
        return;
    }
    if (strlen(v->text) != v->len) {
        node_err(c, v, "%s: value contains a NUL byte", path);
        return;
    }
    if (parse_scalar(e, field, v->text, why, sizeof(why)) != 0)
        node_err(c, v, "%s: %s", path, why);
}

static void walk_map(struct ctx *c, const struct cfg_entry *t, void *obj, struct seen *seen,
                     const char *tprefix, const char *dbase, const struct ytree_node *map,
                     int depth)
{
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct ytree_node *k = map->kids[i], *v = map->kids[i + 1];
        const struct cfg_entry *e;
        char full[KEY_MAX], sugg[KEY_MAX];
        size_t j;

        if (c->oom)
            return;
        if (k->kind != YTREE_SCALAR) {
            node_err(c, k, "mapping keys must be strings");
            continue;
        }
        for (j = 0; j < i; j += 2) {
            const struct ytree_node *o = map->kids[j];
            if (o->kind == YTREE_SCALAR && o->len == k->len &&
                memcmp(o->text, k->text, k->len) == 0)
                break;
        }
        if (j < i) {
            node_err(c, k, "duplicate key '%s%s%s' (first at line %u)", dbase, tprefix, k->text,
                     map->kids[j]->line);
            continue;
        }
        if (strlen(k->text) != k->len || k->len == 0 || memchr(k->text, '.', k->len) != NULL ||
            (size_t)snprintf(full, sizeof(full), "%s%s", tprefix, k->text) >= sizeof(full)) {
            node_err(c, k, "invalid key");
            continue;
        }
        if ((e = find_entry(t, full)) != NULL) {
            set_from_node(c, e, obj, &seen[e - t], v, dbase, depth);
        } else if (is_section(t, full)) {
            if (v->kind == YTREE_MAP) {
                char sub[KEY_MAX];
                snprintf(sub, sizeof(sub), "%s.", full);
                walk_map(c, t, obj, seen, sub, dbase, v, depth + 1);
            } else if (!is_null(v)) {
                node_err(c, v, "%s%s: expected a mapping", dbase, full);
            }
        } else if (suggest(t, tprefix, k->text, sugg, sizeof(sugg)) != NULL) {
            node_err(c, k, "unknown key '%s' (did you mean '%s'?)", k->text, sugg);
        } else {
            node_err(c, k, "unknown key '%s'", k->text);
        }
    }
}

/* ---- load pipeline ------------------------------------------------------ */

static void apply_defaults(struct ctx *c, const struct cfg_entry *t, void *obj)
{
    char why[REMEX_ERRMSG_MAX];
    for (; t->key != NULL; t++) {
        if (t->def == NULL || t->type == CFG_LIST || t->type == CFG_SECRET ||
            t->type == CFG_RESERVED)
            continue;
        if (parse_scalar(t, field_of(t, obj), t->def, why, sizeof(why)) != 0)
            add_err(c, "%s: invalid default: %s", t->key, why);
    }
}

static void apply_env(struct ctx *c, const struct cfg_entry *t, void *obj, struct seen *seen)
{
    char name[KEY_MAX], fname[KEY_MAX + 8], why[REMEX_ERRMSG_MAX];
    for (size_t i = 0; t[i].key != NULL; i++) {
        const struct cfg_entry *e = &t[i];
        const char *v, *fv = NULL;
        if (e->type == CFG_LIST || e->type == CFG_RESERVED ||
            cfg_env_name(c->prefix, e->key, name, sizeof(name)) != 0)
            continue;
        v = env_get(c, name);
        if (e->type == CFG_SECRET) {
            snprintf(fname, sizeof(fname), "%s_FILE", name);
            fv = env_get(c, fname);
            if (fv != NULL && *fv != '\0' && v != NULL && *v != '\0') {
                add_err(c, "%s and %s are both set; use one", name, fname);
                continue;
            }
        }
        if (fv != NULL && *fv != '\0') {
            if (secret_set_ref(c, field_of(e, obj), 1, fv, why, sizeof(why)) != 0) {
                if (!c->oom)
                    add_err(c, "%s: %s", fname, why);
                continue;
            }
        } else if (v != NULL && *v != '\0') {
            if (parse_scalar(e, field_of(e, obj), v, why, sizeof(why)) != 0) {
                add_err(c, "%s: %s", name, why);
                continue;
            }
        } else {
            continue;
        }
        seen[i].src = 2;
    }
}

static int is_unset(const struct cfg_entry *e, const void *field)
{
    switch (e->type) {
    case CFG_STRING:
    case CFG_URL:
    case CFG_PATH:
        return *(char *const *)field == NULL;
    case CFG_SECRET:
        return ((const struct cfg_secret *)field)->kind == CFG_SECRET_NONE;
    case CFG_LIST:
        return ((const struct cfg_list *)field)->n == 0;
    case CFG_STRLIST:
        return ((const struct cfg_strlist *)field)->n == 0;
    default:
        return 0;
    }
}

/* Reports why against entry e: its position in the file, its environment
 * variable, or the file name, by where its value came from. */
static void blame(struct ctx *c, const struct cfg_entry *e, const struct seen *sn,
                  const char *dbase, const char *why)
{
    char name[KEY_MAX];
    if (sn->src == 1)
        add_err(c, "%s:%u:%u: %s%s: %s", c->name, sn->line, sn->col, dbase, e->key, why);
    else if (sn->src == 2 && cfg_env_name(c->prefix, e->key, name, sizeof(name)) == 0)
        add_err(c, "%s: %s", name, why);
    else
        add_err(c, "%s: %s%s: %s", c->name, dbase, e->key, why);
}

/* Required keys and validators, once all sources are applied. */
static void finish(struct ctx *c, const struct cfg_entry *t, void *obj, struct seen *seen,
                   const char *dbase, const struct ytree_node *where, int top)
{
    char why[REMEX_ERRMSG_MAX], name[KEY_MAX];
    for (size_t i = 0; t[i].key != NULL; i++) {
        const struct cfg_entry *e = &t[i];
        void *field = field_of(e, obj);
        int unset = seen[i].src == 0 && (e->def == NULL || is_unset(e, field));

        if ((e->flags & CFG_REQUIRED) && (unset || is_unset(e, field))) {
            if (top && e->type != CFG_LIST &&
                cfg_env_name(c->prefix, e->key, name, sizeof(name)) == REMEX_OK)
                node_err(c, where, "missing required key '%s%s' (or set %s)", dbase, e->key, name);
            else
                node_err(c, where, "missing required key '%s%s'", dbase, e->key);
            continue;
        }
        if (e->validate == NULL || unset)
            continue;
        why[0] = '\0';
        if (e->validate(field, why, sizeof(why)) == 0)
            continue;
        blame(c, e, &seen[i], dbase, why);
    }
}

/* The cross-key check of opts, when everything else passed. */
static void cross_check(struct ctx *c, const struct cfg_entry *t, const void *obj,
                        const struct seen *seen, cfg_cross_fn fn)
{
    char why[REMEX_ERRMSG_MAX] = "";
    const char *key = NULL;
    if (fn(obj, &key, why, sizeof(why)) == 0)
        return;
    for (size_t i = 0; key && t[i].key != NULL; i++) {
        if (strcmp(t[i].key, key) == 0) {
            blame(c, &t[i], &seen[i], "", why);
            return;
        }
    }
    add_err(c, "%s: %s", c->name, why);
}

remex_err cfg_load_buf(const struct cfg_entry *table, void *obj, const char *name, const char *data,
                       size_t len, const struct cfg_opts *opts, struct cfg_errors *errs)
{
    struct cfg_errors local = {0};
    struct ctx c;
    struct ytree_node *root = NULL;
    struct seen *seen;
    size_t max = opts && opts->max_file ? opts->max_file : CFG_MAX_FILE;
    int tree_ok = 1;

    memset(&c, 0, sizeof(c));
    c.errs = errs ? errs : &local;
    c.errs->n = 0;
    c.errs->dropped = 0;
    c.errs->nwarn = 0;
    c.name = name ? name : "<config>";
    c.data = data;
    c.len = len;
    c.prefix = opts && opts->env_prefix ? opts->env_prefix : "REMEX_";
    c.lookup = opts ? opts->lookup : NULL;
    c.lookup_ud = opts ? opts->lookup_ud : NULL;

    seen = calloc(table_len(table) + 1, sizeof(*seen));
    if (seen == NULL)
        return REMEX_ENOMEM;
    apply_defaults(&c, table, obj);
    if (data != NULL) {
        if (len > max) {
            add_err(&c, "%s: file is larger than %zu bytes", c.name, max);
            tree_ok = 0;
        } else if (build_tree(&c, &root) != 0) {
            tree_ok = 0;
        } else if (root != NULL && !is_null(root) && root->kind != YTREE_MAP) {
            node_err(&c, root, "top level must be a mapping");
            tree_ok = 0;
        } else if (root != NULL && root->kind == YTREE_MAP) {
            walk_map(&c, table, obj, seen, "", "", root, 1);
        }
    }
    if (!tree_ok && !c.oom && c.errs->n == 0)
        add_err(&c, "%s: unreadable YAML", c.name); /* never leave a failure unexplained */
    if (tree_ok && !(opts && opts->no_env))
        apply_env(&c, table, obj, seen);
    if (tree_ok && !c.oom)
        finish(&c, table, obj, seen, "", root, 1);
    if (tree_ok && !c.oom && c.errs->n == 0 && opts && opts->cross)
        cross_check(&c, table, obj, seen, opts->cross);
    ytree_free(root);
    free(seen);
    if (c.oom || c.errs->n > 0) {
        cfg_free(table, obj);
        return c.oom ? REMEX_ENOMEM : REMEX_ECONFIG;
    }
    return REMEX_OK;
}

remex_err cfg_load_file(const struct cfg_entry *table, void *obj, const char *path,
                        const struct cfg_opts *opts, struct cfg_errors *errs)
{
    struct cfg_errors local = {0};
    struct cfg_errors *er = errs ? errs : &local;
    size_t max = opts && opts->max_file ? opts->max_file : CFG_MAX_FILE;
    struct stat st;
    char *data;
    size_t n = 0;
    remex_err rc;
    int fd;

    if (path == NULL)
        return cfg_load_buf(table, obj, NULL, NULL, 0, opts, errs);
    er->n = 0;
    er->dropped = 0;
    er->nwarn = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(er->msg[0], REMEX_ERRMSG_MAX, "%s: %s", path, strerror(errno));
        er->n = 1;
        return REMEX_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(er->msg[0], REMEX_ERRMSG_MAX, "%s: not a regular file", path);
        er->n = 1;
        close(fd);
        return REMEX_EIO;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        snprintf(er->msg[0], REMEX_ERRMSG_MAX, "%s: file is larger than %zu bytes", path, max);
        er->n = 1;
        return REMEX_ECONFIG;
    }
    data = malloc(max + 1);
    if (data == NULL) {
        close(fd);
        return REMEX_ENOMEM;
    }
    for (;;) {
        ssize_t r = read(fd, data + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(er->msg[0], REMEX_ERRMSG_MAX, "%s: %s", path, strerror(errno));
            er->n = 1;
            close(fd);
            free(data);
            return REMEX_EIO;
        }
        if (r == 0 || (n += (size_t)r) > max)
            break;
    }
    close(fd);
    rc = cfg_load_buf(table, obj, path, data, n, opts, errs);
    free(data);
    return rc;
}

void cfg_free(const struct cfg_entry *table, void *obj)
{
    for (const struct cfg_entry *e = table; e->key != NULL; e++) {
        void *field = field_of(e, obj);
        switch (e->type) {
        case CFG_STRING:
        case CFG_URL:
        case CFG_PATH:
            free(*(char **)field);
            *(char **)field = NULL;
            break;
        case CFG_STRLIST:
            strlist_free(field);
            break;
        case CFG_SECRET:
            secret_clear(field);
            break;
        case CFG_LIST: {
            struct cfg_list *l = field;
            for (size_t i = 0; i < l->n; i++)
                cfg_free(e->sub, (char *)l->items + i * e->elem_size);
            free(l->items);
            l->items = NULL;
            l->n = 0;
            break;
        }
        default:
            break;
        }
    }
}

/* ---- dump, usage, --check ----------------------------------------------- */

static remex_err put_quoted(struct buf *b, const char *s)
{
    remex_err rc = buf_putc(b, '"');
    for (; rc == REMEX_OK && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            rc = buf_printf(b, "\\%c", ch);
        else if (ch < ' ' || ch == 0x7f)
            rc = buf_printf(b, "\\x%02x", ch);
        else
            rc = buf_putc(b, (char)ch);
    }
    return rc == REMEX_OK ? buf_putc(b, '"') : rc;
}

static remex_err dump_value(const struct cfg_entry *e, const void *field, struct buf *out)
{
    char tmp[TIMEUTIL_DURATION_MAX];
    switch (e->type) {
    case CFG_STRING:
    case CFG_URL:
    case CFG_PATH: {
        const char *s = *(char *const *)field;
        return s ? put_quoted(out, s) : buf_puts(out, "~");
    }
    case CFG_INT:
        return buf_printf(out, "%lld", (long long)*(const int64_t *)field);
    case CFG_BOOL:
        return buf_puts(out, *(const bool *)field ? "true" : "false");
    case CFG_DURATION:
        timeutil_duration_format(*(const uint64_t *)field, tmp, sizeof(tmp));
        return buf_puts(out, tmp);
    case CFG_SIZE:
        timeutil_size_format(*(const uint64_t *)field, tmp, sizeof(tmp));
        return buf_puts(out, tmp);
    case CFG_ENUM: {
        int i = *(const int *)field;
        return buf_puts(out, e->enums && i >= 0 ? e->enums[i] : "?");
    }
    case CFG_STRLIST: {
        const struct cfg_strlist *l = field;
        remex_err rc = buf_putc(out, '[');
        for (size_t i = 0; rc == REMEX_OK && i < l->n; i++) {
            if (i > 0)
                rc = buf_puts(out, ", ");
            if (rc == REMEX_OK)
                rc = put_quoted(out, l->items[i]);
        }
        return rc == REMEX_OK ? buf_putc(out, ']') : rc;
    }
    case CFG_SECRET: {
        const struct cfg_secret *s = field;
        if (s->kind == CFG_SECRET_NONE)
            return buf_puts(out, "~");
        if (s->kind == CFG_SECRET_FILE)
            return buf_printf(out, "<secret> (file %s)", s->source);
        if (s->kind == CFG_SECRET_ENV)
            return buf_printf(out, "<secret> (env %s)", s->source);
        return buf_puts(out, "<secret>");
    }
    case CFG_LIST:
    case CFG_RESERVED:
        break;
    }
    return REMEX_OK;
}

static remex_err dump_table(const struct cfg_entry *t, const void *obj, const char *base,
                            struct buf *out)
{
    remex_err rc = REMEX_OK;
    for (; rc == REMEX_OK && t->key != NULL; t++) {
        const void *field = cfield_of(t, obj);
        if (t->type == CFG_RESERVED)
            continue;
        if (t->type == CFG_LIST) {
            const struct cfg_list *l = field;
            if (l->n == 0)
                rc = buf_printf(out, "%s%s: []\n", base, t->key);
            for (size_t i = 0; rc == REMEX_OK && i < l->n; i++) {
                char sub[KEY_MAX];
                snprintf(sub, sizeof(sub), "%s%s[%zu].", base, t->key, i);
                rc = dump_table(t->sub, (const char *)l->items + i * t->elem_size, sub, out);
            }
            continue;
        }
        rc = buf_printf(out, "%s%s: ", base, t->key);
        if (rc == REMEX_OK)
            rc = dump_value(t, field, out);
        if (rc == REMEX_OK)
            rc = buf_putc(out, '\n');
    }
    return rc;
}

remex_err cfg_dump(const struct cfg_entry *table, const void *obj, struct buf *out)
{
    return dump_table(table, obj, "", out);
}

static remex_err usage_table(const struct cfg_entry *t, const char *prefix, const char *base,
                             struct buf *out)
{
    remex_err rc = REMEX_OK;
    for (; rc == REMEX_OK && t->key != NULL; t++) {
        char env[KEY_MAX];
        rc = buf_printf(out, "%s%s (%s", base, t->key, type_word(t));
        if (rc == REMEX_OK && t->type == CFG_ENUM && t->enums != NULL) {
            for (int i = 0; rc == REMEX_OK && t->enums[i] != NULL; i++)
                rc = buf_printf(out, "%s%s", i ? "|" : ": ", t->enums[i]);
        }
        if (rc == REMEX_OK && t->min < t->max && t->type == CFG_INT)
            rc = buf_printf(out, ", %lld..%lld", (long long)t->min, (long long)t->max);
        if (rc == REMEX_OK && t->min < t->max && (t->type == CFG_DURATION || t->type == CFG_SIZE)) {
            char lo[TIMEUTIL_DURATION_MAX], hi[TIMEUTIL_DURATION_MAX];
            if (t->type == CFG_DURATION) {
                timeutil_duration_format((uint64_t)t->min, lo, sizeof(lo));
                timeutil_duration_format((uint64_t)t->max, hi, sizeof(hi));
            } else {
                timeutil_size_format((uint64_t)t->min, lo, sizeof(lo));
                timeutil_size_format((uint64_t)t->max, hi, sizeof(hi));
            }
            rc = buf_printf(out, ", %s..%s", lo, hi);
        }
        if (rc == REMEX_OK && t->def != NULL)
            rc = buf_printf(out, ", default %s", t->def);
        if (rc == REMEX_OK && (t->flags & CFG_REQUIRED))
            rc = buf_puts(out, ", required");
        if (rc == REMEX_OK && *base == '\0' && t->type != CFG_LIST && t->type != CFG_RESERVED &&
            cfg_env_name(prefix, t->key, env, sizeof(env)) == REMEX_OK)
            rc = buf_printf(out, t->type == CFG_SECRET ? ", env %s or %s_FILE" : ", env %s", env,
                            env);
        if (rc == REMEX_OK)
            rc = buf_printf(out, ")\n    %s\n", t->desc ? t->desc : "");
        if (rc == REMEX_OK && t->type == CFG_LIST && t->sub != NULL) {
            char sub[KEY_MAX];
            snprintf(sub, sizeof(sub), "%s%s[].", base, t->key);
            rc = usage_table(t->sub, prefix, sub, out);
        }
    }
    return rc;
}

remex_err cfg_usage(const struct cfg_entry *table, const struct cfg_opts *opts, struct buf *out)
{
    return usage_table(table, opts && opts->env_prefix ? opts->env_prefix : "REMEX_", "", out);
}

int cfg_check_report(remex_err rc, const struct cfg_errors *errs, struct buf *out)
{
    for (size_t i = 0; errs != NULL && i < errs->nwarn; i++)
        buf_printf(out, "warning: %s\n", errs->warn[i]);
    if (rc == REMEX_OK) {
        buf_puts(out, "configuration OK\n");
        return 0;
    }
    if (errs == NULL || errs->n == 0)
        buf_printf(out, "configuration invalid: %s\n", remex_strerror(rc));
    for (size_t i = 0; errs != NULL && i < errs->n; i++)
        buf_printf(out, "%s\n", errs->msg[i]);
    if (errs != NULL && errs->dropped > 0)
        buf_printf(out, "(%zu more errors not shown)\n", errs->dropped);
    return REMEX_EXIT_CONFIG;
}

int cfg_check(const struct cfg_entry *table, size_t objsize, const char *path,
              const struct cfg_opts *opts, struct buf *out)
{
    struct cfg_errors *errs = calloc(1, sizeof(*errs));
    void *obj = calloc(1, objsize ? objsize : 1);
    remex_err rc;
    int code;

    if (errs == NULL || obj == NULL) {
        free(errs);
        free(obj);
        return cfg_check_report(REMEX_ENOMEM, NULL, out);
    }
    rc = cfg_load_file(table, obj, path, opts, errs);
    code = cfg_check_report(rc, errs, out);
    cfg_free(table, obj);
    free(obj);
    free(errs);
    return code;
}
