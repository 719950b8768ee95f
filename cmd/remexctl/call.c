/* remexctl: plane calls and output helpers (see ctl.h). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "ctl.h"
#include "remex/http.h"
#include "remex/json.h"

#define CTL_REPLY_MAX (16u * 1024u * 1024u)

static int client(struct ctl *c)
{
    struct http_client_opts o;
    struct remex_error e;
    remex_err rc;

    if (c->http != NULL)
        return CTL_OK;
    if (c->token[0] == '\0') {
        int x = ctl_load_token(c);

        if (x != CTL_OK)
            return x;
    }
    memset(&o, 0, sizeof(o));
    o.base_url = c->plane;
    o.connect_timeout_ms = 5000;
    o.timeout_ms = 60000;
    o.max_response_bytes = CTL_REPLY_MAX;
    o.ca_file = c->ca_file;
    o.allow_insecure_http = c->insecure_http;
    o.max_attempts = 3;
    o.backoff_base_ms = 100;
    o.backoff_cap_ms = 1000;
    rc = http_client_new(&o, &c->http, &e);
    if (rc == REMEX_EPERM)
        return ctl_fail(c, CTL_EUSAGE,
                        "refusing plain http:// to a non-loopback plane (%s); use https:// "
                        "or --insecure-http",
                        c->plane);
    if (rc != REMEX_OK)
        return ctl_fail(c, CTL_EUSAGE, "plane URL %s: %s", c->plane, e.msg);
    if (http_client_set_bearer(c->http, c->token) != REMEX_OK)
        return ctl_fail(c, CTL_EUSAGE, "admin token holds invalid characters");
    return CTL_OK;
}

/* "…: connection failed: Failed to connect …: Connection refused" -> "connection refused". */
static const char *reason(const char *msg, char *buf, size_t n)
{
    const char *p = strrchr(msg, ':');

    p = p ? p + 1 : msg;
    while (*p == ' ')
        p++;
    snprintf(buf, n, "%s", p);
    if (buf[0] && buf[1] && !isupper((unsigned char)buf[1]))
        buf[0] = (char)tolower((unsigned char)buf[0]);
    return buf;
}

static int map_error(struct ctl *c, remex_err rc, const struct remex_error *e)
{
    char why[256];

    switch (rc) {
    case REMEX_ECONNECT:
    case REMEX_ETIMEOUT:
        return ctl_fail(c, CTL_EUNREACH, "plane at %s unreachable: %s", c->plane,
                        reason(e->msg, why, sizeof(why)));
    case REMEX_ETLS:
        return ctl_fail(c, CTL_EUNREACH, "plane at %s unreachable: TLS: %s", c->plane,
                        reason(e->msg, why, sizeof(why)));
    case REMEX_EAUTH:
    case REMEX_EFORBIDDEN:
        return ctl_fail(c, CTL_EAUTH, "the plane rejected the admin token (%s)", e->msg);
    case REMEX_EPERM:
        return ctl_fail(c, CTL_EUSAGE, "%s (use https:// or --insecure-http)", e->msg);
    default:
        return ctl_fail(c, CTL_EFAIL, "%s", e->msg);
    }
}

/* Path segment i (0: the one after "/api/v1/admin/" or "/api/v1/"),
 * percent-decoded into buf; "" when absent. */
static const char *segment(const char *path, int i, char *buf, size_t n)
{
    const char *p = strncmp(path, "/api/v1/admin/", 14) == 0 ? path + 14
                    : strncmp(path, "/api/v1/", 8) == 0      ? path + 8
                                                             : path;
    char raw[256];
    size_t o = 0;

    for (; i > 0 && p; i--)
        if ((p = strchr(p, '/')) != NULL)
            p++;
    for (; p && *p && *p != '/' && *p != '?' && o + 1 < sizeof(raw); p++) {
        unsigned v;
        if (p[0] == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2]) &&
            sscanf(p + 1, "%2x", &v) == 1) {
            raw[o++] = (char)v;
            p += 2;
        } else {
            raw[o++] = *p;
        }
    }
    raw[o] = '\0';
    table_sanitize(buf, n, raw);
    return buf;
}

/* A refusal of the plane (4xx other than 401/403, 5xx) in the user's terms
 * first: what was not found and how to get it; the plane's own message
 * otherwise. -v adds the HTTP exchange. Returns CTL_EFAIL. */
static int refused(struct ctl *c, const char *what, const char *path, int status,
                   const struct buf *body)
{
    json_t *b = body->len ? json_loadb(body->data, body->len, 0, NULL) : NULL;
    json_t *err = json_object_get(b, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    const char *code = json_string_value(json_object_get(err, "code"));
    char s0[256], s1[256], s2[256], s3[256], s4[256], m[512];
    const char *kind = segment(path, 0, s0, sizeof(s0));

    table_sanitize(m, sizeof(m), msg ? msg : "");
    if (c->verbose)
        fprintf(stderr, "remexctl: %s: HTTP %d %s: %s\n", what, status, code ? code : "?",
                m[0] ? m : "(no message)");
    if (status == 404 && strcmp(kind, "dags") == 0 && msg && strstr(msg, "task")) {
        ctl_fail(c, CTL_EFAIL,
                 "task '%s' not found in run '%s' of DAG '%s'; see remexctl tasks "
                 "list %s %s",
                 segment(path, 5, s1, sizeof(s1)), segment(path, 3, s2, sizeof(s2)),
                 segment(path, 1, s3, sizeof(s3)), s3, s2);
    } else if (status == 404 && strcmp(kind, "dags") == 0 && msg && strstr(msg, "run")) {
        ctl_fail(c, CTL_EFAIL, "run '%s' of DAG '%s' not found; see remexctl runs list %s",
                 segment(path, 3, s1, sizeof(s1)), segment(path, 1, s2, sizeof(s2)), s2);
    } else if (status == 404 && strcmp(kind, "dags") == 0) {
        ctl_fail(c, CTL_EFAIL, "DAG '%s' not found; push it with remexctl dags push",
                 segment(path, 1, s1, sizeof(s1)));
    } else if (status == 404 && strcmp(kind, "agents") == 0) {
        ctl_fail(c, CTL_EFAIL, "agent '%s' not found; see remexctl agents list",
                 segment(path, 1, s1, sizeof(s1)));
    } else if (status == 404 && strcmp(kind, "tokens") == 0) {
        ctl_fail(c, CTL_EFAIL, "token %s not found; see remexctl tokens list",
                 segment(path, 1, s1, sizeof(s1)));
    } else if (status == 409) {
        ctl_fail(c, CTL_EFAIL, "conflict: %s", m[0] ? m : "the plane refused the change");
    } else if (status >= 500) {
        ctl_fail(c, CTL_EFAIL, "the plane failed to answer (HTTP %d%s%s); try again%s", status,
                 m[0] ? ": " : "", m, c->verbose ? "" : " (-v shows the request)");
    } else {
        ctl_fail(c, CTL_EFAIL, "%s", m[0] ? m : segment(path, 0, s4, sizeof(s4)));
    }
    json_decref(b);
    return CTL_EFAIL;
}

int ctl_call(struct ctl *c, const char *method, const char *path, json_t *body, json_t **reply,
             struct buf *raw)
{
    struct http_request rq;
    struct http_response rs;
    struct remex_error e;
    struct json_parse_opts po;
    char *data = NULL;
    char what[512];
    remex_err rc;
    int x;

    if (reply)
        *reply = NULL;
    x = client(c);
    if (x != CTL_OK)
        return x;
    if (body != NULL && (data = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
        return ctl_fail(c, CTL_EFAIL, "out of memory");
    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.path = path;
    rq.body = data;
    rq.body_len = data ? strlen(data) : 0;
    rc = http_do(c->http, &rq, &rs, &e);
    free(data);
    if (rc != REMEX_OK) {
        http_response_free(&rs);
        return map_error(c, rc, &e);
    }
    snprintf(what, sizeof(what), "%s %s", method, path);
    if (rs.status >= 400 && rs.status != 401 && rs.status != 403) {
        x = refused(c, what, path, rs.status, &rs.body);
        http_response_free(&rs);
        return x;
    }
    rc = http_check_status(what, rs.status, &rs.body, &e);
    if (rc == REMEX_OK && reply != NULL && rs.body.len > 0) {
        memset(&po, 0, sizeof(po));
        po.max_bytes = CTL_REPLY_MAX;
        po.name = "reply";
        rc = json_parse(rs.body.data, rs.body.len, &po, reply, &e);
        if (rc != REMEX_OK)
            remex_errprefix(&e, "%s: unreadable reply", what);
    }
    if (rc == REMEX_OK && raw != NULL &&
        buf_append(raw, rs.body.data ? rs.body.data : "", rs.body.len) != REMEX_OK)
        rc = remex_seterr(&e, REMEX_ETOOBIG, "%s: reply too large", what);
    http_response_free(&rs);
    if (rc != REMEX_OK) {
        if (reply) {
            json_decref(*reply);
            *reply = NULL;
        }
        return map_error(c, rc, &e);
    }
    return CTL_OK;
}

void ctl_close(struct ctl *c)
{
    http_client_free(c->http);
    c->http = NULL;
    explicit_bzero(c->token, sizeof(c->token));
}

remex_err ctl_escape(struct buf *out, const char *s)
{
    remex_err rc = REMEX_OK;

    for (; *s && rc == REMEX_OK; s++) {
        unsigned char ch = (unsigned char)*s;

        if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~')
            rc = buf_putc(out, (char)ch);
        else
            rc = buf_printf(out, "%%%02X", ch);
    }
    return rc;
}

int ctl_path(const struct ctl *c, struct buf *out, const char *fmt, ...)
{
    va_list ap;
    remex_err rc = REMEX_OK;
    const char *p;

    va_start(ap, fmt);
    for (p = fmt; *p && rc == REMEX_OK; p++) {
        if (p[0] == '%' && p[1] == 's') {
            rc = ctl_escape(out, va_arg(ap, const char *));
            p++;
        } else {
            rc = buf_putc(out, *p);
        }
    }
    va_end(ap);
    if (rc != REMEX_OK)
        return ctl_fail(c, CTL_EUSAGE, "argument too long");
    return CTL_OK;
}

const char *ctl_text(const json_t *v, char *buf, size_t n)
{
    size_t i, o = 0;
    char *s;

    if (n == 0)
        return "";
    buf[0] = '\0';
    if (v == NULL || json_is_null(v))
        return "-";
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_true(v))
        return "yes";
    if (json_is_false(v))
        return "no";
    if (json_is_integer(v)) {
        snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    if (json_is_real(v)) {
        snprintf(buf, n, "%g", json_real_value(v));
        return buf;
    }
    if (json_is_array(v)) {
        for (i = 0; i < json_array_size(v) && o + 1 < n; i++) {
            char tmp[512];
            const char *t = ctl_text(json_array_get(v, i), tmp, sizeof(tmp));
            int w = snprintf(buf + o, n - o, "%s%s", i ? "," : "", t);

            o = w < 0 ? o : (o + (size_t)w < n ? o + (size_t)w : n - 1);
        }
        return o ? buf : "-";
    }
    s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    snprintf(buf, n, "%s", s ? s : "?");
    free(s);
    return buf;
}

const char *ctl_field(const json_t *obj, const char *key, char *buf, size_t n)
{
    return ctl_text(json_is_object(obj) ? json_object_get(obj, key) : NULL, buf, n);
}

const char *ctl_short_version(const char *v, char *buf, size_t n)
{
    size_t keep = strncmp(v, "sha256:", 7) == 0 ? 7 + 12 : 12;

    if (v[0] == '\0')
        return "-";
    snprintf(buf, n, "%.*s", (int)keep, v);
    return buf;
}

json_t *ctl_list(json_t *reply, const char *key)
{
    json_t *v;

    if (json_is_array(reply))
        return reply;
    v = json_is_object(reply) ? json_object_get(reply, key) : NULL;
    return json_is_array(v) ? v : NULL;
}

json_t *ctl_list_get(struct ctl *c, const char *path, const char *key, struct table *t,
                     size_t ncols, const char *const *hdr, json_t **reply, int *rc)
{
    json_t *list;

    *reply = NULL;
    if ((*rc = ctl_fetch(c, "GET", path, NULL, reply)) != CTL_OK || *reply == NULL)
        return NULL;
    if ((list = ctl_list(*reply, key)) == NULL || table_init(t, ncols, hdr) != REMEX_OK) {
        json_decref(*reply);
        *reply = NULL;
        *rc = ctl_fail(c, CTL_EFAIL, "unexpected reply from the plane");
        return NULL;
    }
    return list;
}

int ctl_write(const struct ctl *c, const struct buf *out)
{
    if (out->len > 0 && fwrite(out->data, 1, out->len, stdout) != out->len)
        return ctl_fail(c, CTL_EFAIL, "writing output failed");
    if (fflush(stdout) != 0)
        return ctl_fail(c, CTL_EFAIL, "writing output failed");
    return CTL_OK;
}

int ctl_table_print(const struct ctl *c, struct table *t, int no_headers)
{
    struct buf out = BUF_INIT(64u * 1024u * 1024u);
    int rc = CTL_OK;

    if (table_render(t, no_headers, &out) != REMEX_OK)
        rc = ctl_fail(c, CTL_EFAIL, "output too large");
    else
        rc = ctl_write(c, &out);
    buf_free(&out);
    table_free(t);
    return rc;
}

remex_err ctl_kv(struct table *t, const char *key, const char *value)
{
    char k[128];

    snprintf(k, sizeof(k), "%s:", key);
    return table_add(t, (const char *const[]){k, value});
}

/* Emits v as YAML events (block style; strings quoted only when YAML needs
 * it). 0 or -1. */
static int yaml_value(yaml_emitter_t *em, json_t *v)
{
    yaml_event_t ev;
    char num[64];
    const char *k;
    json_t *x;
    size_t i;
    int ok = 1;

    if (json_is_object(v)) {
        ok = yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) &&
             yaml_emitter_emit(em, &ev);
        json_object_foreach(v, k, x)
        {
            if (!ok)
                break;
            ok = yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)k, (int)strlen(k), 1,
                                              1, YAML_ANY_SCALAR_STYLE) &&
                 yaml_emitter_emit(em, &ev) && yaml_value(em, x) == 0;
        }
        return ok && yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev) ? 0 : -1;
    }
    if (json_is_array(v)) {
        ok = yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) &&
             yaml_emitter_emit(em, &ev);
        json_array_foreach(v, i, x)
        {
            if (ok)
                ok = yaml_value(em, x) == 0;
        }
        return ok && yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev) ? 0 : -1;
    }
    if (json_is_string(v))
        return yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)json_string_value(v),
                                            (int)json_string_length(v), 1, 1,
                                            YAML_ANY_SCALAR_STYLE) &&
                       yaml_emitter_emit(em, &ev)
                   ? 0
                   : -1;
    if (json_is_integer(v))
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(num, sizeof(num), "%.17g", json_real_value(v));
    else
        snprintf(num, sizeof(num), "%s",
                 json_is_true(v)    ? "true"
                 : json_is_false(v) ? "false"
                                    : "null");
    return yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)num, (int)strlen(num), 1, 0,
                                        YAML_PLAIN_SCALAR_STYLE) &&
                   yaml_emitter_emit(em, &ev)
               ? 0
               : -1;
}

static int yaml_out(void *data, unsigned char *buffer, size_t size)
{
    return buf_append(data, buffer, size) == REMEX_OK;
}

/* The JSON document raw as a YAML document on stdout. */
static int print_yaml(const struct ctl *c, const struct buf *raw)
{
    json_t *v = json_loadb(raw->data ? raw->data : "null", raw->len ? raw->len : 4,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    struct buf out = BUF_INIT(64u * 1024u * 1024u);
    yaml_emitter_t em;
    yaml_event_t ev;
    int ok = v != NULL && yaml_emitter_initialize(&em);

    if (ok) {
        yaml_emitter_set_output(&em, yaml_out, &out);
        yaml_emitter_set_unicode(&em, 1);
        ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
             yaml_emitter_emit(&em, &ev) &&
             yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
             yaml_emitter_emit(&em, &ev) && yaml_value(&em, v) == 0 &&
             yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&em, &ev) &&
             yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&em, &ev);
        yaml_emitter_delete(&em);
    }
    json_decref(v);
    int rc = ok ? ctl_write(c, &out) : ctl_fail(c, CTL_EFAIL, "cannot write the reply as YAML");
    buf_free(&out);
    return rc;
}

int ctl_print_raw(const struct ctl *c, struct buf *raw)
{
    if (c->yaml)
        return print_yaml(c, raw);
    if ((raw->len == 0 || raw->data[raw->len - 1] != '\n') && buf_putc(raw, '\n') != REMEX_OK)
        return ctl_fail(c, CTL_EFAIL, "output too large");
    return ctl_write(c, raw);
}

int ctl_fetch(struct ctl *c, const char *method, const char *path, json_t *body, json_t **reply)
{
    struct buf raw = BUF_INIT(CTL_REPLY_MAX);
    int rc;

    *reply = NULL;
    if (!c->json)
        return ctl_call(c, method, path, body, reply, NULL);
    rc = ctl_call(c, method, path, body, NULL, &raw);
    if (rc == CTL_OK)
        rc = ctl_print_raw(c, &raw);
    buf_free(&raw);
    return rc;
}

int ctl_call_route(struct ctl *c, const char *method, const char *path, json_t *body,
                   struct buf *raw, int *soft)
{
    struct http_request rq;
    struct http_response rs;
    struct remex_error e;
    char *data = NULL;
    char what[512];
    remex_err rc;
    int x;

    *soft = 0;
    if ((x = client(c)) != CTL_OK)
        return x;
    if (body != NULL && (data = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
        return ctl_fail(c, CTL_EFAIL, "out of memory");
    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.path = path;
    rq.body = data;
    rq.body_len = data ? strlen(data) : 0;
    rc = http_do(c->http, &rq, &rs, &e);
    free(data);
    if (rc != REMEX_OK) {
        http_response_free(&rs);
        return map_error(c, rc, &e);
    }
    snprintf(what, sizeof(what), "%s %s", method, path);
    if (rs.status == 404 || rs.status == 405 || rs.status == 413) {
        if (c->verbose)
            fprintf(stderr, "remexctl: %s: HTTP %ld: %s\n", what, rs.status,
                    rs.status == 413 ? "body too large" : "the plane has no such route");
        *soft = (int)rs.status;
        http_response_free(&rs);
        return CTL_OK;
    }
    if (rs.status >= 400 && rs.status != 401 && rs.status != 403) {
        x = refused(c, what, path, rs.status, &rs.body);
        http_response_free(&rs);
        return x;
    }
    rc = http_check_status(what, rs.status, &rs.body, &e);
    if (rc == REMEX_OK &&
        buf_append(raw, rs.body.data ? rs.body.data : "", rs.body.len) != REMEX_OK)
        rc = remex_seterr(&e, REMEX_ETOOBIG, "%s: reply too large", what);
    http_response_free(&rs);
    return rc == REMEX_OK ? CTL_OK : map_error(c, rc, &e);
}
