/* secrets: the chain of connection and variable backends (environment, local file, Vault, AWS,
 * GCP, Azure Key Vault). */
#include "remex/secrets.h"
#include "remex/urlenc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/json.h"
#include "remex/timeutil.h"
#include "remex/yamltree.h"

#define SECRETS_YAML_DEPTH 32
#define SECRETS_YAML_NODES (SECRETS_FILE_MAX / 2) /* "1," is the shortest node */

enum backend { BK_ENV, BK_FILE, BK_VAULT, BK_AWS_SM, BK_AWS_SSM, BK_GCP, BK_AZKV };
static const char *const backend_names[] = {"env",
                                            "file",
                                            "vault",
                                            "aws_secrets_manager",
                                            "aws_ssm",
                                            "gcp_secret_manager",
                                            "azure_key_vault",
                                            NULL};
#define BACKENDS_MAX 8

struct secrets {
    char *file;
    int no_env;
    const char *(*getenv_fn)(const char *);
    enum backend order[BACKENDS_MAX];
    size_t norder;
    struct secrets_vault *vault; /* owned, or NULL */
    char *vault_conn_path;
    char *vault_var_path;
    struct secrets_aws *aws[2]; /* owned, or NULL: [0] Secrets Manager, [1] SSM */
    char *aws_prefix[4][2];     /* [SM, SSM, GCP, Azure KV][0 connections, 1 variables] */
    struct secrets_gcp *gcp;    /* owned, or NULL */
    struct secrets_azkv *azkv;  /* owned, or NULL */
    json_t *cache;              /* owned: "c:<id>" / "v:<key>" -> [expires_ms, data object] */
    uint64_t cache_ttl_ms;
    uint64_t (*now_ms)(void);
    json_t *doc; /* owned: last parsed file */
    struct timespec mtime;
    off_t size;
    int loaded;
};

void secrets_conn_free(struct secrets_conn *c)
{
    if (c == NULL)
        return;
    free(c->conn_type);
    free(c->host);
    free(c->login);
    free(c->password);
    free(c->schema);
    json_decref(c->extra);
    memset(c, 0, sizeof(*c));
}

/* Percent-decodes s[0..n) into a new string; plus_space turns '+' into ' '. NULL on error. */
static char *pct_decode(const char *s, size_t n, int plus_space, const char **why)
{
    char *out = malloc(n + 1);
    if (out == NULL) {
        *why = "out of memory";
        return NULL;
    }
    *why = urlenc_decode(out, s, n, URLENC_STRICT | (plus_space ? URLENC_PLUS_SPACE : 0), NULL);
    if (*why) {
        free(out);
        return NULL;
    }
    return out;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/*
 * json_parse for documents that hold secret values: jansson quotes the input
 * "near" a syntax error, so that part of the message is cut and only the
 * name, line, column and reason remain.
 */
static remex_err parse_secret_json(const char *data, size_t len, const struct json_parse_opts *o,
                                   json_t **out, struct remex_error *e)
{
    struct remex_error tmp;
    remex_err rc = json_parse(data, len, o, out, &tmp);
    size_t skip = o->name ? strlen(o->name) : 0;
    char *near;

    if (rc == REMEX_OK)
        return REMEX_OK;
    near = strstr(tmp.msg + (skip < sizeof(tmp.msg) ? skip : 0), " near ");
    if (near != NULL)
        *near = '\0';
    explicit_bzero(tmp.msg + strlen(tmp.msg), sizeof(tmp.msg) - strlen(tmp.msg));
    return remex_seterr(e, rc, "%s", tmp.msg);
}

/* Parses the query string into extra (string values); __extra__ is merged JSON. */
static remex_err parse_query(const char *q, struct secrets_conn *c, struct remex_error *e)
{
    while (*q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        const char *why = NULL;
        char *k = pct_decode(q, eq ? (size_t)(eq - q) : n, 1, &why);
        char *v = k && eq ? pct_decode(eq + 1, n - (size_t)(eq + 1 - q), 1, &why) : NULL;
        if (k == NULL || (eq && v == NULL)) {
            free(k);
            return remex_seterr(e, REMEX_EPARSE, "connection URI: query: %s", why);
        }
        if (strcmp(k, "__extra__") == 0) {
            json_t *x = NULL;
            struct json_parse_opts o = {.name = "connection URI: __extra__"};
            if (parse_secret_json(v ? v : "", v ? strlen(v) : 0, &o, &x, e) != REMEX_OK ||
                !json_is_object(x)) {
                if (x)
                    remex_seterr(e, REMEX_EPARSE, "connection URI: __extra__: expected object");
                json_decref(x);
                free(k);
                free(v);
                return REMEX_EPARSE;
            }
            json_object_update(c->extra, x);
            json_decref(x);
        } else if (*k) {
            json_object_set_new(c->extra, k, json_string(v ? v : ""));
        }
        free(k);
        free(v);
        q += n;
        if (*q == '&')
            q++;
    }
    return REMEX_OK;
}

/* Splits host[:port] or [v6]:port of authority a[0..n). */
static remex_err parse_hostport(const char *a, size_t n, struct secrets_conn *c,
                                struct remex_error *e)
{
    const char *colon = NULL, *why = NULL;
    size_t hlen = n;
    if (n > 0 && a[0] == '[') {
        const char *rb = memchr(a, ']', n);
        if (rb == NULL)
            return remex_seterr(e, REMEX_EPARSE, "connection URI: unclosed '[' in host");
        hlen = (size_t)(rb - a) + 1;
        if (hlen < n) {
            if (a[hlen] != ':')
                return remex_seterr(e, REMEX_EPARSE, "connection URI: junk after ']'");
            colon = a + hlen;
        }
    } else {
        colon = memchr(a, ':', n);
        if (colon)
            hlen = (size_t)(colon - a);
    }
    if (colon) {
        size_t plen = n - (size_t)(colon + 1 - a);
        long port = 0;
        if (plen == 0 || plen > 5)
            return remex_seterr(e, REMEX_EPARSE, "connection URI: invalid port");
        for (size_t i = 0; i < plen; i++) {
            if (!isdigit((unsigned char)colon[1 + i]))
                return remex_seterr(e, REMEX_EPARSE, "connection URI: invalid port");
            port = port * 10 + (colon[1 + i] - '0');
        }
        if (port < 1 || port > 65535)
            return remex_seterr(e, REMEX_EPARSE, "connection URI: port out of range 1-65535");
        c->port = (int)port;
    }
    if (hlen > 0 && (c->host = pct_decode(a, hlen, 0, &why)) == NULL)
        return remex_seterr(e, REMEX_EPARSE, "connection URI: host: %s", why);
    return REMEX_OK;
}

static remex_err parse_uri(const char *uri, struct secrets_conn *c, struct remex_error *e)
{
    const char *sep = strstr(uri, "://"), *why = NULL;
    size_t slen;
    if (strlen(uri) > SECRETS_URI_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "connection URI: longer than %d bytes",
                            SECRETS_URI_MAX);
    if (sep == NULL || sep == uri)
        return remex_seterr(e, REMEX_EPARSE, "connection URI: expected 'type://...'");
    slen = (size_t)(sep - uri);
    for (size_t i = 0; i < slen; i++) {
        char ch = uri[i];
        if (!(isalnum((unsigned char)ch) || ch == '+' || ch == '.' || ch == '-' || ch == '_') ||
            (i == 0 && !isalpha((unsigned char)ch)))
            return remex_seterr(e, REMEX_EPARSE, "connection URI: invalid scheme");
    }
    c->conn_type = dup_n(uri, slen);
    if (c->conn_type == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    for (char *p = c->conn_type; *p; p++)
        *p = *p == '-' ? '_' : (char)tolower((unsigned char)*p);
    if (strcmp(c->conn_type, "postgresql") == 0)
        memcpy(c->conn_type, "postgres", sizeof("postgres"));

    const char *a = sep + 3;
    size_t alen = strcspn(a, "/?");
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (a[i] == '@')
            at = a + i; /* last '@': passwords may contain a raw '@' */
    if (at) {
        size_t ulen = (size_t)(at - a);
        const char *colon = memchr(a, ':', ulen);
        size_t llen = colon ? (size_t)(colon - a) : ulen;
        if (llen > 0 && (c->login = pct_decode(a, llen, 0, &why)) == NULL)
            return remex_seterr(e, REMEX_EPARSE, "connection URI: login: %s", why);
        if (colon && (c->password = pct_decode(colon + 1, ulen - llen - 1, 0, &why)) == NULL)
            return remex_seterr(e, REMEX_EPARSE, "connection URI: password: %s", why);
        alen -= ulen + 1;
        a = at + 1;
    }
    remex_err rc = parse_hostport(a, alen, c, e);
    if (rc != REMEX_OK)
        return rc;
    const char *rest = a + alen;
    if (*rest == '/') {
        size_t plen = strcspn(rest + 1, "?");
        if (plen > 0 && (c->schema = pct_decode(rest + 1, plen, 0, &why)) == NULL)
            return remex_seterr(e, REMEX_EPARSE, "connection URI: schema: %s", why);
        rest += 1 + plen;
    }
    if (*rest == '?')
        return parse_query(rest + 1, c, e);
    return REMEX_OK;
}

remex_err secrets_conn_parse_uri(const char *uri, struct secrets_conn *out, struct remex_error *e)
{
    memset(out, 0, sizeof(*out));
    out->extra = json_object();
    if (out->extra == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    remex_err rc = parse_uri(uri, out, e);
    if (rc != REMEX_OK)
        secrets_conn_free(out);
    return rc;
}

/* Copies an optional string field of obj into *dst. */
static remex_err take_str(const json_t *obj, const char *key, char **dst, struct remex_error *e)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return REMEX_OK;
    if (!json_is_string(v))
        return remex_seterr(e, REMEX_EINVAL, "connection.%s: expected string", key);
    *dst = dup_n(json_string_value(v), json_string_length(v));
    return *dst ? REMEX_OK : remex_seterr(e, REMEX_ENOMEM, "out of memory");
}

static remex_err conn_from_json(const json_t *obj, struct secrets_conn *c, struct remex_error *e)
{
    static const char *const known[] = {"conn_type", "host", "login", "password",
                                        "schema",    "port", "extra", "description"};
    const char *key;
    const json_t *v;
    remex_err rc;
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i;
        for (i = 0; i < sizeof(known) / sizeof(known[0]) && strcmp(key, known[i]) != 0; i++)
            ;
        if (i == sizeof(known) / sizeof(known[0]))
            return remex_seterr(e, REMEX_EINVAL, "connection.%s: unknown field", key);
    }
    if ((rc = take_str(obj, "conn_type", &c->conn_type, e)) != REMEX_OK ||
        (rc = take_str(obj, "host", &c->host, e)) != REMEX_OK ||
        (rc = take_str(obj, "login", &c->login, e)) != REMEX_OK ||
        (rc = take_str(obj, "password", &c->password, e)) != REMEX_OK ||
        (rc = take_str(obj, "schema", &c->schema, e)) != REMEX_OK)
        return rc;
    if (c->conn_type == NULL)
        return remex_seterr(e, REMEX_EINVAL, "connection.conn_type: missing");
    v = json_object_get(obj, "port");
    if (json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 65535)
        c->port = (int)json_integer_value(v);
    else if (v != NULL && !json_is_null(v))
        return remex_seterr(e, REMEX_EINVAL, "connection.port: expected integer 1-65535");
    v = json_object_get(obj, "extra");
    if (json_is_object(v)) {
        json_object_update(c->extra, (json_t *)v);
    } else if (json_is_string(v)) {
        json_t *x = NULL;
        struct json_parse_opts o = {.name = "connection.extra"};
        if (json_parse(json_string_value(v), json_string_length(v), &o, &x, e) != REMEX_OK ||
            !json_is_object(x)) {
            json_decref(x);
            return remex_seterr(e, REMEX_EINVAL, "connection.extra: expected a JSON object");
        }
        json_object_update(c->extra, x);
        json_decref(x);
    } else if (v != NULL && !json_is_null(v)) {
        return remex_seterr(e, REMEX_EINVAL, "connection.extra: expected object");
    }
    return REMEX_OK;
}

remex_err secrets_conn_from_json(const json_t *obj, struct secrets_conn *out, struct remex_error *e)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(obj))
        return remex_seterr(e, REMEX_EINVAL, "connection: expected object");
    out->extra = json_object();
    if (out->extra == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    remex_err rc = conn_from_json(obj, out, e);
    if (rc != REMEX_OK)
        secrets_conn_free(out);
    return rc;
}

static remex_err put_pct(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    remex_err rc = REMEX_OK;
    for (const unsigned char *p = (const unsigned char *)s; *p && rc == REMEX_OK; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            rc = buf_putc(b, (char)*p);
        } else {
            char t[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            rc = buf_append(b, t, 3);
        }
    }
    return rc;
}

remex_err secrets_conn_uri(const struct secrets_conn *c, struct buf *out)
{
    remex_err rc = buf_printf(out, "%s://", c->conn_type ? c->conn_type : "generic");
    if (rc == REMEX_OK && (c->login || c->password)) {
        if (c->login)
            rc = put_pct(out, c->login);
        if (rc == REMEX_OK && c->password) {
            rc = buf_putc(out, ':');
            if (rc == REMEX_OK)
                rc = put_pct(out, c->password);
        }
        if (rc == REMEX_OK)
            rc = buf_putc(out, '@');
    }
    if (rc == REMEX_OK && c->host)
        rc = c->host[0] == '[' ? buf_puts(out, c->host) : put_pct(out, c->host);
    if (rc == REMEX_OK && c->port)
        rc = buf_printf(out, ":%d", c->port);
    if (rc == REMEX_OK && c->schema) {
        rc = buf_putc(out, '/');
        if (rc == REMEX_OK)
            rc = put_pct(out, c->schema);
    }
    if (rc == REMEX_OK && c->extra && json_object_size(c->extra) > 0) {
        char *x = json_dumps(c->extra, JSON_COMPACT | JSON_SORT_KEYS);
        if (x == NULL)
            return REMEX_ENOMEM;
        rc = buf_puts(out, c->schema ? "?__extra__=" : "/?__extra__=");
        if (rc == REMEX_OK)
            rc = put_pct(out, x);
        free(x);
    }
    return rc;
}

json_t *secrets_conn_json(const struct secrets_conn *c)
{
    json_t *o = json_pack("{s:s?,s:s?,s:s?,s:s?,s:s?,s:O?}", "conn_type", c->conn_type, "host",
                          c->host, "login", c->login, "password", c->password, "schema", c->schema,
                          "extra", c->extra);
    if (o && c->port)
        json_object_set_new(o, "port", json_integer(c->port));
    return o;
}

/* ---- YAML file → JSON (mappings, sequences, scalars; no aliases) ---- */

static json_t *yaml_scalar(const struct ytree_node *n)
{
    const char *v = n->text;
    if (n->plain) {
        char *end;
        if (n->len == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0)
            return json_null();
        if (strcmp(v, "true") == 0)
            return json_true();
        if (strcmp(v, "false") == 0)
            return json_false();
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (*end == '\0' && errno == 0 && (isdigit((unsigned char)v[0]) || v[0] == '-'))
            return json_integer(x);
    }
    return json_stringn(v, n->len);
}

/* The JSON of node n into *out (owned by the caller). Recursion is bounded by the depth cap. */
static remex_err yaml_json(const char *path, const struct ytree_node *n, json_t **out,
                           struct remex_error *e)
{
    json_t *j = n->kind == YTREE_SCALAR ? yaml_scalar(n)
                : n->kind == YTREE_SEQ  ? json_array()
                                        : json_object();
    remex_err rc = REMEX_OK;

    *out = NULL;
    if (j == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    for (size_t i = 0; n->kind == YTREE_SEQ && i < n->n && rc == REMEX_OK; i++) {
        json_t *v;
        if ((rc = yaml_json(path, n->kids[i], &v, e)) == REMEX_OK &&
            json_array_append_new(j, v) != 0)
            rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    for (size_t i = 0; n->kind == YTREE_MAP && i + 1 < n->n && rc == REMEX_OK; i += 2) {
        const struct ytree_node *k = n->kids[i];
        json_t *kj = k->kind == YTREE_SCALAR ? yaml_scalar(k) : NULL, *v;
        char tmp[32];
        const char *key = tmp;
        if (k->kind != YTREE_SCALAR)
            rc = remex_seterr(e, REMEX_EPARSE, "%s:%u:%u: invalid key", path, k->line, k->col);
        else if (json_is_string(kj))
            key = json_string_value(kj);
        else if (json_is_integer(kj))
            snprintf(tmp, sizeof(tmp), "%lld", (long long)json_integer_value(kj));
        else
            rc = remex_seterr(e, REMEX_EPARSE, "%s:%u:%u: mapping keys must be scalars", path,
                              k->line, k->col);
        if (rc == REMEX_OK && (rc = yaml_json(path, n->kids[i + 1], &v, e)) == REMEX_OK &&
            json_object_set_new(j, key, v) != 0)
            rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
        json_decref(kj);
    }
    if (rc != REMEX_OK) {
        json_decref(j);
        return rc;
    }
    *out = j;
    return REMEX_OK;
}

static remex_err yaml_to_json(const char *path, const char *data, size_t len, json_t **out,
                              struct remex_error *e)
{
    static const struct ytree_limits lim = {SECRETS_YAML_NODES, SECRETS_YAML_DEPTH,
                                            YTREE_ALLOW_ANCHORS | YTREE_ALLOW_TAGS};
    struct ytree_node *root;
    struct ytree_error ye;
    remex_err rc = ytree_parse(data, len, &lim, &root, &ye);

    if (rc != REMEX_OK) {
        switch (ye.kind) {
        case YTREE_ENOMEM:
            return remex_seterr(e, REMEX_ENOMEM, "out of memory");
        case YTREE_EALIAS:
            return remex_seterr(e, REMEX_EPARSE, "%s:%u:%u: aliases are not allowed", path, ye.line,
                                ye.col);
        case YTREE_EDEPTH:
            return remex_seterr(e, REMEX_EPARSE, "%s:%u:%u: nested too deeply", path, ye.line,
                                ye.col);
        case YTREE_ENODES:
            return remex_seterr(e, REMEX_EPARSE, "%s:%u:%u: more than %u YAML nodes", path, ye.line,
                                ye.col, (unsigned)SECRETS_YAML_NODES);
        case YTREE_EDOCS:
            return remex_seterr(e, REMEX_EPARSE, "%s:%u:%u: more than one YAML document", path,
                                ye.line, ye.col);
        default:
            return remex_seterr(e, REMEX_EPARSE, "%s:%u:%u: %s", path, ye.line, ye.col,
                                ye.problem[0] ? ye.problem : "YAML error");
        }
    }
    if (root == NULL) {
        *out = json_object();
        return *out != NULL ? REMEX_OK : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    rc = yaml_json(path, root, out, e);
    ytree_free(root);
    return rc;
}

/* ---- file backend ---- */

static remex_err read_file(struct secrets *s, char **data, size_t *len, struct stat *st,
                           struct remex_error *e)
{
    int fd = open(s->file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return remex_errno(e, REMEX_EIO, "%s", s->file);
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return remex_seterr(e, REMEX_EIO, "%s: not a regular file", s->file);
    }
    if (st->st_mode & 077) {
        close(fd);
        return remex_seterr(e, REMEX_EPERM, "%s: permissions %04o are too open; chmod 600 %s",
                            s->file, (unsigned)(st->st_mode & 07777), s->file);
    }
    if (st->st_size > SECRETS_FILE_MAX) {
        close(fd);
        return remex_seterr(e, REMEX_ETOOBIG, "%s: larger than %u bytes", s->file,
                            SECRETS_FILE_MAX);
    }
    *data = malloc((size_t)st->st_size + 1);
    if (*data == NULL) {
        close(fd);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    ssize_t n = 0, r;
    while (n < st->st_size && (r = read(fd, *data + n, (size_t)(st->st_size - n))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            free(*data);
            return remex_errno(e, REMEX_EIO, "%s", s->file);
        }
        n += r;
    }
    close(fd);
    (*data)[n] = '\0';
    *len = (size_t)n;
    return REMEX_OK;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Re-reads the file when it changed. */
static remex_err load_file(struct secrets *s, struct remex_error *e)
{
    struct stat st;
    char *data = NULL;
    size_t len = 0;
    json_t *doc = NULL;
    remex_err rc;

    if (s->loaded && stat(s->file, &st) == 0 && st.st_size == s->size &&
        st.st_mtim.tv_sec == s->mtime.tv_sec && st.st_mtim.tv_nsec == s->mtime.tv_nsec)
        return REMEX_OK;
    if ((rc = read_file(s, &data, &len, &st, e)) != REMEX_OK)
        return rc;
    if (ends_with(s->file, ".yaml") || ends_with(s->file, ".yml")) {
        rc = yaml_to_json(s->file, data, len, &doc, e);
    } else {
        struct json_parse_opts o = {.name = s->file, .max_bytes = SECRETS_FILE_MAX};
        rc = parse_secret_json(data, len, &o, &doc, e);
    }
    free(data);
    if (rc == REMEX_OK && !json_is_object(doc))
        rc = remex_seterr(e, REMEX_EPARSE, "%s: expected a mapping at the top", s->file);
    const char *key;
    json_t *v;
    if (rc == REMEX_OK) {
        json_object_foreach(doc, key, v)
        {
            if (strcmp(key, "connections") != 0 && strcmp(key, "variables") != 0) {
                rc = remex_seterr(e, REMEX_EPARSE,
                                  "%s: unknown key '%s' (expected connections, variables)", s->file,
                                  key);
                break;
            }
            if (!json_is_object(v) && !json_is_null(v)) {
                rc = remex_seterr(e, REMEX_EPARSE, "%s: %s: expected a mapping", s->file, key);
                break;
            }
        }
    }
    if (rc != REMEX_OK) {
        json_decref(doc);
        return rc;
    }
    json_decref(s->doc);
    s->doc = doc;
    s->mtime = st.st_mtim;
    s->size = st.st_size;
    s->loaded = 1;
    return REMEX_OK;
}

/* Fills s->order from cfg->order (names) or the default: every backend, in backend_names order. */
static remex_err set_order(struct secrets *s, const struct secrets_config *cfg,
                           struct remex_error *e)
{
    const char *const *o = cfg->order ? cfg->order : backend_names;
    for (size_t i = 0; o[i]; i++) {
        size_t b = 0;
        while (backend_names[b] && strcmp(o[i], backend_names[b]) != 0)
            b++;
        if (!backend_names[b])
            return remex_seterr(e, REMEX_EINVAL,
                                "secrets: unknown backend '%s' (expected env, file, vault, "
                                "aws_secrets_manager, aws_ssm, gcp_secret_manager or "
                                "azure_key_vault)",
                                o[i]);
        for (size_t j = 0; j < s->norder; j++)
            if (s->order[j] == (enum backend)b)
                return remex_seterr(e, REMEX_EINVAL, "secrets: backend '%s' listed twice", o[i]);
        if (s->norder == BACKENDS_MAX)
            return remex_seterr(e, REMEX_EINVAL, "secrets: too many backends");
        s->order[s->norder++] = (enum backend)b;
    }
    return REMEX_OK;
}

/* Opens Google Cloud Secret Manager and Azure Key Vault when configured, with their prefixes
 * (Airflow's by default); their prefixes sit in aws_prefix[2] and [3]. */
static remex_err open_cloud(struct secrets *s, const struct secrets_config *cfg,
                            struct remex_error *e)
{
    const void *c[2] = {cfg->gcp, cfg->azkv};
    const char *pre[2][2] = {{cfg->gcp_connections_prefix, cfg->gcp_variables_prefix},
                             {cfg->azkv_connections_prefix, cfg->azkv_variables_prefix}};
    static const char *const def[2] = {"airflow-connections", "airflow-variables"};
    remex_err rc = REMEX_OK;
    for (int i = 0; i < 2 && rc == REMEX_OK; i++) {
        if (!c[i])
            continue;
        for (int k = 0; k < 2; k++)
            if (!(s->aws_prefix[2 + i][k] = strdup(pre[i][k] ? pre[i][k] : def[k])))
                return remex_seterr(e, REMEX_ENOMEM, "out of memory");
        rc = i == 0 ? secrets_gcp_open(cfg->gcp, &s->gcp, e)
                    : secrets_azkv_open(cfg->azkv, &s->azkv, e);
    }
    return rc;
}

/* Opens the AWS backends that are configured, with their prefixes. */
static remex_err open_aws(struct secrets *s, const struct secrets_config *cfg,
                          struct remex_error *e)
{
    const struct secrets_aws_config *c[2] = {cfg->aws_sm, cfg->aws_ssm};
    const char *pre[2][2] = {{cfg->aws_sm_connections_prefix, cfg->aws_sm_variables_prefix},
                             {cfg->aws_ssm_connections_prefix, cfg->aws_ssm_variables_prefix}};
    static const char *const def[2][2] = {{"airflow/connections", "airflow/variables"},
                                          {"/airflow/connections", "/airflow/variables"}};
    for (int i = 0; i < 2; i++) {
        if (!c[i])
            continue;
        for (int k = 0; k < 2; k++)
            if (!(s->aws_prefix[i][k] = strdup(pre[i][k] ? pre[i][k] : def[i][k])))
                return remex_seterr(e, REMEX_ENOMEM, "out of memory");
        struct secrets_aws_config one = *c[i];
        one.service = i == 0 ? SECRETS_AWS_SECRETS_MANAGER : SECRETS_AWS_SSM;
        remex_err rc = secrets_aws_open(&one, &s->aws[i], e);
        if (rc != REMEX_OK)
            return rc;
    }
    return REMEX_OK;
}

remex_err secrets_open(const struct secrets_config *cfg, struct secrets **out,
                       struct remex_error *e)
{
    struct secrets *s = calloc(1, sizeof(*s));
    remex_err rc = REMEX_OK;
    if (s == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    s->no_env = cfg->no_env;
    s->getenv_fn = cfg->getenv_fn ? cfg->getenv_fn : (const char *(*)(const char *))getenv;
    s->cache_ttl_ms = cfg->cache_ttl_ms ? cfg->cache_ttl_ms : SECRETS_CACHE_TTL_MS_DEFAULT;
    s->now_ms = cfg->now_ms ? cfg->now_ms : timeutil_mono_ms;
    s->vault_conn_path =
        strdup(cfg->vault_connections_path ? cfg->vault_connections_path : "connections");
    s->vault_var_path = strdup(cfg->vault_variables_path ? cfg->vault_variables_path : "variables");
    s->cache = json_object();
    if (!s->vault_conn_path || !s->vault_var_path || !s->cache)
        rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if (rc == REMEX_OK)
        rc = set_order(s, cfg, e);
    if (rc == REMEX_OK && cfg->file) {
        s->file = strdup(cfg->file);
        rc = s->file ? load_file(s, e) : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    if (rc == REMEX_OK && cfg->vault)
        rc = secrets_vault_open(cfg->vault, &s->vault, e);
    if (rc == REMEX_OK)
        rc = open_aws(s, cfg, e);
    if (rc == REMEX_OK)
        rc = open_cloud(s, cfg, e);
    if (rc != REMEX_OK) {
        secrets_close(s);
        return rc;
    }
    *out = s;
    return REMEX_OK;
}

void secrets_close(struct secrets *s)
{
    if (s == NULL)
        return;
    json_decref(s->doc);
    json_decref(s->cache);
    secrets_vault_close(s->vault);
    for (int i = 0; i < 4; i++) {
        if (i < 2)
            secrets_aws_close(s->aws[i]);
        free(s->aws_prefix[i][0]);
        free(s->aws_prefix[i][1]);
    }
    secrets_gcp_close(s->gcp);
    secrets_azkv_close(s->azkv);
    free(s->vault_conn_path);
    free(s->vault_var_path);
    free(s->file);
    free(s);
}

/* REMEX_<kind>_<ID> with ID upper-cased and [-.] → '_'. 0 if the id is invalid. */
static int env_name(char *out, size_t cap, const char *kind, const char *id)
{
    int n = snprintf(out, cap, "REMEX_%s_", kind);
    size_t k = (size_t)n;
    if (*id == '\0')
        return 0;
    for (const char *p = id; *p; p++) {
        char ch = *p;
        if (k + 1 >= cap || !(isalnum((unsigned char)ch) || ch == '_' || ch == '-' || ch == '.'))
            return 0;
        out[k++] = (ch == '-' || ch == '.') ? '_' : (char)toupper((unsigned char)ch);
    }
    out[k] = '\0';
    return 1;
}

/* ---- the cache of remote answers ---- */

/* The value cached under ck while fresh (borrowed, valid until the next cache_put), else NULL;
 * a stale entry is dropped. */
static json_t *cache_get(struct secrets *s, const char *ck, uint64_t now)
{
    json_t *hit = json_object_get(s->cache, ck); /* borrowed */
    if (hit && (uint64_t)json_integer_value(json_array_get(hit, 0)) > now)
        return json_array_get(hit, 1);
    json_object_del(s->cache, ck);
    return NULL;
}

/* Caches value (a new reference, stolen; NULL is ignored) under ck for cache_ttl_ms; 0 on
 * ENOMEM. The cache is bounded: full, it is emptied (entries are cheap to fetch again). */
static int cache_put(struct secrets *s, const char *ck, uint64_t now, json_t *value)
{
    if (!value)
        return 1;
    if (json_object_size(s->cache) >= SECRETS_CACHE_MAX)
        json_object_clear(s->cache);
    json_t *entry = json_pack("[I,o]", (json_int_t)(now + s->cache_ttl_ms), value); /* owned */
    return entry && json_object_set_new(s->cache, ck, entry) == 0;
}

/* ---- the Vault backend, with the cache ---- */

/*
 * The Vault secret at <base>/<id> (borrowed from the cache, valid until the
 * next lookup), through the cache. REMEX_ENOTFOUND when Vault has none.
 */
static remex_err vault_get(struct secrets *s, char kind, const char *base, const char *id,
                           json_t **data, struct remex_error *e)
{
    char ck[320], path[1100];
    uint64_t now = s->now_ms();
    json_t *hit, *fresh = NULL;
    remex_err rc;
    snprintf(ck, sizeof(ck), "%c:%s", kind, id);
    if ((hit = cache_get(s, ck, now)) != NULL) {
        *data = hit;
        return REMEX_OK;
    }
    snprintf(path, sizeof(path), "%s/%s", base, id);
    if ((rc = secrets_vault_read(s->vault, path, &fresh, e)) != REMEX_OK)
        return rc;
    *data = fresh;
    if (!cache_put(s, ck, now, fresh))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    return REMEX_OK;
}

static remex_err vault_conn(struct secrets *s, const char *conn_id, struct secrets_conn *out,
                            struct remex_error *e)
{
    json_t *d = NULL;
    remex_err rc = vault_get(s, 'c', s->vault_conn_path, conn_id, &d, e);
    if (rc != REMEX_OK)
        return rc;
    const char *uri = json_string_value(json_object_get(d, "conn_uri"));
    rc = uri ? secrets_conn_parse_uri(uri, out, e) : secrets_conn_from_json(d, out, e);
    if (rc != REMEX_OK)
        remex_errprefix(e, "vault: %s/%s", s->vault_conn_path, conn_id);
    return rc;
}

static remex_err vault_var(struct secrets *s, const char *key, char **out, struct remex_error *e)
{
    json_t *d = NULL, *v;
    remex_err rc = vault_get(s, 'v', s->vault_var_path, key, &d, e);
    if (rc != REMEX_OK)
        return rc;
    v = json_object_get(d, "value");
    if (!v)
        return remex_seterr(e, REMEX_EPROTO, "vault: %s/%s: no 'value' field", s->vault_var_path,
                            key);
    *out = json_is_string(v) ? strdup(json_string_value(v))
                             : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    return *out ? REMEX_OK : remex_seterr(e, REMEX_ENOMEM, "out of memory");
}

/* ---- the AWS backends, with the cache ---- */

/* The value of <prefix>/<id> in AWS backend i (0, 1), or <prefix>-<id> in Google Cloud Secret
 * Manager (i = 2) or Azure Key Vault (i = 3), malloc'd into *out, through the cache. */
static remex_err aws_get(struct secrets *s, int i, int var, const char *id, char **out,
                         struct remex_error *e)
{
    char ck[320], name[1100];
    uint64_t now = s->now_ms();
    json_t *hit;
    remex_err rc;
    snprintf(ck, sizeof(ck), "%c%d:%s", var ? 'v' : 'c', i + 2, id);
    if ((hit = cache_get(s, ck, now)) != NULL) {
        *out = strdup(json_string_value(hit));
        return *out ? REMEX_OK : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    snprintf(name, sizeof(name), "%s%s%s", s->aws_prefix[i][var], i >= 2 ? "-" : "/", id);
    if (i == 3) /* Key Vault names: [0-9A-Za-z-], so Airflow's dashes for '_' and '.' */
        for (char *p = name; *p; p++)
            *p = (*p == '_' || *p == '.') ? '-' : *p;
    rc = i == 3   ? secrets_azkv_get(s->azkv, name, out, e)
         : i == 2 ? secrets_gcp_get(s->gcp, name, out, e)
                  : secrets_aws_get(s->aws[i], name, out, e);
    if (rc != REMEX_OK)
        return rc;
    cache_put(s, ck, now, json_string(*out)); /* a value that is not UTF-8 is not cached */
    return REMEX_OK;
}

/* A connection held as text: a JSON object when it starts with '{' (parse errors
 * name name), else a connection URI. */
static remex_err conn_from_text(const char *v, const char *name, struct secrets_conn *out,
                                struct remex_error *e)
{
    json_t *o = NULL;
    struct json_parse_opts jo = {.name = name, .max_bytes = SECRETS_URI_MAX};
    if (v[0] != '{')
        return secrets_conn_parse_uri(v, out, e);
    remex_err rc = parse_secret_json(v, strlen(v), &jo, &o, e);
    if (rc == REMEX_OK)
        rc = secrets_conn_from_json(o, out, e);
    json_decref(o);
    return rc;
}

static remex_err aws_conn(struct secrets *s, int i, const char *conn_id, struct secrets_conn *out,
                          struct remex_error *e)
{
    char *v = NULL;
    remex_err rc = aws_get(s, i, 0, conn_id, &v, e);
    if (rc != REMEX_OK)
        return rc;
    rc = conn_from_text(v, conn_id, out, e);
    explicit_bzero(v, strlen(v));
    free(v);
    return rc;
}

/* ---- the local backends ---- */

static remex_err env_conn(struct secrets *s, const char *name, struct secrets_conn *out,
                          struct remex_error *e)
{
    const char *v = s->no_env ? NULL : s->getenv_fn(name);
    remex_err rc;
    if (v == NULL)
        return REMEX_ENOTFOUND;
    rc = conn_from_text(v, name, out, e);
    if (rc != REMEX_OK)
        remex_errprefix(e, "%s", name);
    return rc;
}

static remex_err file_conn(struct secrets *s, const char *conn_id, struct secrets_conn *out,
                           struct remex_error *e)
{
    remex_err rc;
    if (!s->file)
        return REMEX_ENOTFOUND;
    if ((rc = load_file(s, e)) != REMEX_OK)
        return rc;
    const json_t *c = json_object_get(json_object_get(s->doc, "connections"), conn_id);
    if (json_is_string(c))
        rc = secrets_conn_parse_uri(json_string_value(c), out, e);
    else if (c != NULL)
        rc = secrets_conn_from_json(c, out, e);
    else
        rc = REMEX_ENOTFOUND;
    if (rc != REMEX_OK && rc != REMEX_ENOTFOUND)
        remex_errprefix(e, "%s: connections.%s", s->file, conn_id);
    return rc;
}

static remex_err file_var(struct secrets *s, const char *key, char **out, struct remex_error *e)
{
    remex_err rc;
    if (!s->file)
        return REMEX_ENOTFOUND;
    if ((rc = load_file(s, e)) != REMEX_OK)
        return rc;
    const json_t *v = json_object_get(json_object_get(s->doc, "variables"), key);
    if (v == NULL)
        return REMEX_ENOTFOUND;
    *out = json_is_string(v) ? strdup(json_string_value(v))
                             : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    return *out ? REMEX_OK : remex_seterr(e, REMEX_ENOMEM, "out of memory");
}

static remex_err env_var(struct secrets *s, const char *name, char **out, struct remex_error *e)
{
    const char *v = s->no_env ? NULL : s->getenv_fn(name);
    if (v == NULL)
        return REMEX_ENOTFOUND;
    return (*out = strdup(v)) ? REMEX_OK : remex_seterr(e, REMEX_ENOMEM, "out of memory");
}

/* ---- the chain ---- */

/* The index of a cloud backend in aws_get's numbering, or -1 when b is not configured. */
static int remote_index(const struct secrets *s, enum backend b)
{
    switch (b) {
    case BK_AWS_SM:
    case BK_AWS_SSM:
        return s->aws[b - BK_AWS_SM] ? (int)(b - BK_AWS_SM) : -1;
    case BK_GCP:
        return s->gcp ? 2 : -1;
    case BK_AZKV:
        return s->azkv ? 3 : -1;
    default:
        return -1;
    }
}

/*
 * Backend b's answer for connection id (conn != NULL) or variable id (into *str);
 * env is the REMEX_CONN_/REMEX_VAR_ name. REMEX_ENOTFOUND, without a message,
 * when b has none or is not configured.
 */
static remex_err lookup_one(struct secrets *s, enum backend b, const char *env, const char *id,
                            struct secrets_conn *conn, char **str, struct remex_error *e)
{
    int i;
    if (b == BK_ENV)
        return conn ? env_conn(s, env, conn, e) : env_var(s, env, str, e);
    if (b == BK_FILE)
        return conn ? file_conn(s, id, conn, e) : file_var(s, id, str, e);
    if (b == BK_VAULT)
        return !s->vault ? REMEX_ENOTFOUND
               : conn    ? vault_conn(s, id, conn, e)
                         : vault_var(s, id, str, e);
    if ((i = remote_index(s, b)) < 0)
        return REMEX_ENOTFOUND;
    return conn ? aws_conn(s, i, id, conn, e) : aws_get(s, i, 1, id, str, e);
}

/* Walks the chain for a connection (conn) or a variable (str): the first answer wins. */
static remex_err chain_get(struct secrets *s, const char *id, struct secrets_conn *conn, char **str,
                           struct remex_error *e)
{
    const char *what = conn ? "connection" : "variable";
    char name[300];
    remex_err rc = REMEX_ENOTFOUND;
    if (!env_name(name, sizeof(name), conn ? "CONN" : "VAR", id))
        return remex_seterr(e, REMEX_EINVAL,
                            conn ? "invalid connection id" : "invalid variable key");
    for (size_t i = 0; i < s->norder && rc == REMEX_ENOTFOUND; i++) {
        rc = lookup_one(s, s->order[i], name, id, conn, str, e);
        if (rc != REMEX_OK && rc != REMEX_ENOTFOUND)
            remex_errprefix(e, "secrets backend %s: %s '%s'", backend_names[s->order[i]], what, id);
    }
    if (rc == REMEX_ENOTFOUND)
        return remex_seterr(e, REMEX_ENOTFOUND, "%s '%s' not found", what, id);
    return rc;
}

remex_err secrets_get_conn(struct secrets *s, const char *conn_id, struct secrets_conn *out,
                           struct remex_error *e)
{
    return chain_get(s, conn_id, out, NULL, e);
}

remex_err secrets_get_var(struct secrets *s, const char *key, char **out, struct remex_error *e)
{
    return chain_get(s, key, NULL, out, e);
}

/* A backend of the order that the chain skips: named but not configured. */
static bool skipped(const struct secrets *s, enum backend b)
{
    return (b == BK_FILE && !s->file) || (b == BK_ENV && s->no_env) ||
           (b == BK_VAULT && !s->vault) || (b > BK_VAULT && remote_index(s, b) < 0);
}

size_t secrets_chain(const struct secrets *s, const char **names, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < s->norder && n < cap; i++)
        if (!skipped(s, s->order[i]))
            names[n++] = backend_names[s->order[i]];
    return n;
}

size_t secrets_probe(struct secrets *s, const char *key,
                     void (*fn)(const char *backend, remex_err rc, const char *msg, void *ud),
                     void *ud)
{
    char name[300];
    size_t n = 0;
    if (!env_name(name, sizeof(name), "VAR", key))
        return 0;
    for (size_t i = 0; i < s->norder; i++) {
        enum backend b = s->order[i];
        struct remex_error e = {0};
        char *v = NULL;
        if (skipped(s, b))
            continue;
        remex_err rc = lookup_one(s, b, name, key, NULL, &v, &e);
        if (v) {
            explicit_bzero(v, strlen(v));
            free(v);
        }
        n++;
        fn(backend_names[b], rc == REMEX_ENOTFOUND ? REMEX_OK : rc,
           rc == REMEX_OK || rc == REMEX_ENOTFOUND ? "" : e.msg, ud);
    }
    return n;
}
