/*
 * remexctl: dags push FILE [--bundle NAME].
 *
 * The YAML file is read with libyaml into JSON while recording the line and
 * column of every node under its JSON path ("tasks[2].retries"). Each DAG
 * (a document holding a mapping, or a sequence of mappings) is decoded and
 * validated strictly by the dag module; its error message starts with the
 * field path, which is mapped back to FILE:LINE:COL. The canonical DAG JSON is
 * uploaded with PUT /api/v1/dags/{dag_id}; the bundle version is the SHA-256
 * of the file.
 *
 * Scalars follow the YAML 1.2 core schema: plain null/~, true/false, integers
 * (decimal, 0x, 0o) and floats are typed; quoted scalars are strings. Anchors,
 * aliases and tags other than the core ones are refused.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "ctl.h"
#include "remex/dag.h"
#include "remex/json.h"

#define PUSH_FILE_MAX  (4 * 1024 * 1024)
#define PUSH_DEPTH_MAX 64
#define PUSH_MARKS_MAX 200000

struct mark {
    int doc; /* document index in the file */
    char *path;
    unsigned long line, col;
};

struct reader {
    yaml_parser_t p;
    const char *file;
    struct mark *marks; /* owned */
    size_t nmarks, amarks;
    int doc; /* current document */
    char err[REMEX_ERRMSG_MAX];
};

static int fail_at(struct reader *r, const yaml_mark_t *m, const char *msg)
{
    snprintf(r->err, sizeof(r->err), "%s:%lu:%lu: %s", r->file, (unsigned long)m->line + 1,
             (unsigned long)m->column + 1, msg);
    return -1;
}

static int add_mark(struct reader *r, const struct json_path *p, const yaml_mark_t *m)
{
    if (r->nmarks == r->amarks) {
        size_t na = r->amarks ? r->amarks * 2 : 256;
        struct mark *nm = na > PUSH_MARKS_MAX ? NULL : realloc(r->marks, na * sizeof(*nm));

        if (nm == NULL)
            return fail_at(r, m, "file too large");
        r->marks = nm;
        r->amarks = na;
    }
    r->marks[r->nmarks].path = strdup(json_path_str(p));
    if (r->marks[r->nmarks].path == NULL)
        return fail_at(r, m, "out of memory");
    r->marks[r->nmarks].doc = r->doc;
    r->marks[r->nmarks].line = (unsigned long)m->line + 1;
    r->marks[r->nmarks].col = (unsigned long)m->column + 1;
    r->nmarks++;
    return 0;
}

static json_t *plain_scalar(const char *s, size_t len)
{
    char *end;
    long long i;
    double d;

    if (len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
        strcmp(s, "NULL") == 0)
        return json_null();
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
        return json_true();
    if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
        return json_false();
    errno = 0;
    if (strncmp(s, "0x", 2) == 0 || strncmp(s, "0o", 2) == 0)
        i = strtoll(s + 2, &end, s[1] == 'x' ? 16 : 8);
    else
        i = strtoll(s, &end, 10);
    if (errno == 0 && end != s && *end == '\0' &&
        (s[0] != '0' || len == 1 || s[1] == 'x' || s[1] == 'o'))
        return json_integer(i);
    if (strspn(s, "+-0123456789.eE") == len && strpbrk(s, "0123456789")) {
        errno = 0;
        d = strtod(s, &end);
        if (errno == 0 && *end == '\0' && isfinite(d))
            return json_real(d);
    }
    return json_stringn(s, len);
}

static json_t *read_node(struct reader *r, yaml_event_t *ev, const struct json_path *p, int depth);

/* Reads the events of a mapping (after MAPPING_START) into an object. */
static json_t *read_mapping(struct reader *r, const struct json_path *p, int depth)
{
    json_t *obj = json_object();
    yaml_event_t k, v;
    struct json_path cp;

    while (obj) {
        if (!yaml_parser_parse(&r->p, &k))
            goto parse_error;
        if (k.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&k);
            return obj;
        }
        if (k.type != YAML_SCALAR_EVENT) {
            fail_at(r, &k.start_mark, "mapping keys must be strings");
            yaml_event_delete(&k);
            break;
        }
        json_path_key(&cp, p, (const char *)k.data.scalar.value);
        if (json_object_get(obj, (const char *)k.data.scalar.value) != NULL) {
            fail_at(r, &k.start_mark, "duplicate key");
            yaml_event_delete(&k);
            break;
        }
        if (add_mark(r, &cp, &k.start_mark) != 0 || !yaml_parser_parse(&r->p, &v)) {
            yaml_event_delete(&k);
            if (r->err[0])
                break;
            goto parse_error;
        }
        json_t *val = read_node(r, &v, &cp, depth + 1);
        if (val == NULL || json_object_set_new(obj, (const char *)k.data.scalar.value, val) != 0) {
            yaml_event_delete(&k);
            break;
        }
        yaml_event_delete(&k);
    }
    json_decref(obj);
    return NULL;
parse_error:
    fail_at(r, &r->p.problem_mark, r->p.problem ? r->p.problem : "invalid YAML");
    json_decref(obj);
    return NULL;
}

static json_t *read_sequence(struct reader *r, const struct json_path *p, int depth)
{
    json_t *arr = json_array();
    yaml_event_t v;
    struct json_path cp;

    while (arr) {
        if (!yaml_parser_parse(&r->p, &v)) {
            fail_at(r, &r->p.problem_mark, r->p.problem ? r->p.problem : "invalid YAML");
            break;
        }
        if (v.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&v);
            return arr;
        }
        json_path_index(&cp, p, json_array_size(arr));
        if (add_mark(r, &cp, &v.start_mark) != 0)
            break;
        json_t *val = read_node(r, &v, &cp, depth + 1);
        if (val == NULL || json_array_append_new(arr, val) != 0)
            break;
    }
    json_decref(arr);
    return NULL;
}

/* Converts the node starting with ev (consumed and deleted here). */
static json_t *read_node(struct reader *r, yaml_event_t *ev, const struct json_path *p, int depth)
{
    json_t *out = NULL;
    yaml_event_type_t type = ev->type;

    if (depth > PUSH_DEPTH_MAX)
        fail_at(r, &ev->start_mark, "nested too deeply");
    else if (type == YAML_ALIAS_EVENT || (type == YAML_SCALAR_EVENT && ev->data.scalar.anchor) ||
             (type == YAML_MAPPING_START_EVENT && ev->data.mapping_start.anchor) ||
             (type == YAML_SEQUENCE_START_EVENT && ev->data.sequence_start.anchor))
        fail_at(r, &ev->start_mark, "anchors and aliases are not supported");
    else if (type == YAML_SCALAR_EVENT) {
        const char *s = (const char *)ev->data.scalar.value;

        out = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE
                  ? plain_scalar(s, ev->data.scalar.length)
                  : json_stringn(s, ev->data.scalar.length);
        if (out == NULL)
            fail_at(r, &ev->start_mark, "invalid scalar (not UTF-8?)");
    } else if (type == YAML_MAPPING_START_EVENT)
        out = read_mapping(r, p, depth);
    else if (type == YAML_SEQUENCE_START_EVENT)
        out = read_sequence(r, p, depth);
    else
        fail_at(r, &ev->start_mark, "unexpected YAML event");
    yaml_event_delete(ev);
    return out;
}

/* Reads every document of the file into *docs (array of documents, owned). */
static int read_documents(struct reader *r, const char *data, size_t len, json_t **docs)
{
    yaml_event_t ev;
    struct json_path root;
    int done = 0;

    *docs = json_array();
    yaml_parser_set_input_string(&r->p, (const unsigned char *)data, len);
    while (*docs && !done) {
        if (!yaml_parser_parse(&r->p, &ev))
            return fail_at(r, &r->p.problem_mark, r->p.problem ? r->p.problem : "invalid YAML");
        if (ev.type == YAML_STREAM_END_EVENT)
            done = 1;
        if (ev.type != YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        yaml_event_delete(&ev);
        if (!yaml_parser_parse(&r->p, &ev))
            return fail_at(r, &r->p.problem_mark, r->p.problem ? r->p.problem : "invalid YAML");
        json_path_init(&root, "");
        r->doc = (int)json_array_size(*docs);
        if (add_mark(r, &root, &ev.start_mark) != 0) {
            yaml_event_delete(&ev);
            return -1;
        }
        json_t *doc = read_node(r, &ev, &root, 0);
        if (doc == NULL || json_array_append_new(*docs, doc) != 0)
            return -1;
    }
    return *docs ? 0 : fail_at(r, &r->p.mark, "out of memory");
}

/* FILE:LINE:COL of the field the dag module's message names (msg starts with
 * the path relative to the DAG, whose own path is prefix in document doc). */
static void locate(const struct reader *r, int doc, const char *prefix, const char *msg, char *out,
                   size_t n)
{
    size_t i, best_len = 0, plen = strlen(prefix);
    const struct mark *best = NULL;

    for (i = 0; i < r->nmarks; i++) {
        const struct mark *m = &r->marks[i];
        const char *rel;
        size_t rl;

        if (m->doc != doc || strncmp(m->path, prefix, plen) != 0)
            continue;
        rel = m->path + plen;
        if (*rel == '.')
            rel++;
        rl = strlen(rel);
        if (strcmp(m->path, "(root)") == 0 || rl == 0) {
            if (best == NULL)
                best = m;
            continue;
        }
        if (strncmp(msg, rel, rl) == 0 && strchr(":.[ ", msg[rl]) && msg[rl] != '\0' &&
            rl > best_len) {
            best = m;
            best_len = rl;
        }
    }
    if (best)
        snprintf(out, n, "%s:%lu:%lu: %s", r->file, best->line, best->col, msg);
    else
        snprintf(out, n, "%s: %s", r->file, msg);
}

static int sha256_hex(const char *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;

    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return -1;
    for (i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* Decodes one DAG object, uploads its canonical JSON. */
static int push_one(struct ctl *c, const struct reader *r, int doc, const char *prefix,
                    const json_t *obj, json_t *bundle)
{
    struct remex_error e;
    struct dag *d = NULL;
    struct buf path = BUF_INIT(4096), raw = BUF_INIT(1024 * 1024);
    json_t *body = NULL, *reply = NULL, *copy;
    char where[REMEX_ERRMSG_MAX + 256], hash[256];
    int rc;

    if (!json_is_object(obj)) {
        locate(r, doc, prefix, "expected a mapping (a DAG)", where, sizeof(where));
        return ctl_fail(c, CTL_EFAIL, "%s", where);
    }
    if ((copy = json_copy((json_t *)obj)) == NULL)
        return ctl_fail(c, CTL_EFAIL, "out of memory");
    if (json_object_get(copy, "fileloc") == NULL)
        json_object_set_new(copy, "fileloc", json_string(r->file));
    if (dag_from_json_value(copy, &d, &e) != REMEX_OK) {
        json_decref(copy);
        locate(r, doc, prefix, e.msg, where, sizeof(where));
        return ctl_fail(c, CTL_EFAIL, "%s", where);
    }
    json_decref(copy);
    body = json_pack("{s:O, s:o}", "bundle", bundle, "dag", dag_to_json_value(d));
    rc = body ? ctl_path(c, &path, "/api/v1/dags/%s", d->dag_id)
              : ctl_fail(c, CTL_EFAIL, "out of memory");
    if (rc == CTL_OK)
        rc = ctl_call(c, "PUT", buf_cstr(&path), body, &reply, &raw);
    if (rc == CTL_OK && c->json)
        rc = ctl_print_raw(c, &raw);
    else if (rc == CTL_OK) {
        table_sanitize(hash, sizeof(hash), json_string_value(json_object_get(reply, "hash")));
        printf("pushed %s (hash %s)\n", d->dag_id, hash);
        fflush(stdout);
    }
    json_decref(reply);
    json_decref(body);
    buf_free(&path);
    buf_free(&raw);
    dag_free(d);
    return rc;
}

static int read_file(struct ctl *c, const char *file, char **data, size_t *len)
{
    FILE *f = fopen(file, "rb");
    size_t n;

    *data = NULL;
    if (f == NULL)
        return ctl_fail(c, CTL_EFAIL, "%s: %s", file, strerror(errno));
    *data = malloc(PUSH_FILE_MAX + 1);
    n = *data ? fread(*data, 1, PUSH_FILE_MAX + 1, f) : 0;
    if (*data == NULL || ferror(f) || n > PUSH_FILE_MAX) {
        fclose(f);
        return ctl_fail(c, CTL_EFAIL, "%s: %s", file,
                        n > PUSH_FILE_MAX ? "larger than 4 MiB" : "cannot read");
    }
    fclose(f);
    (*data)[n] = '\0';
    *len = n;
    return CTL_OK;
}

static int push_docs(struct ctl *c, struct reader *r, json_t *docs, json_t *bundle)
{
    json_t *doc, *item;
    size_t i, k;
    char prefix[64];
    int rc = CTL_OK, pushed = 0;

    json_array_foreach(docs, i, doc)
    {
        if (json_is_array(doc)) {
            json_array_foreach(doc, k, item)
            {
                snprintf(prefix, sizeof(prefix), "[%zu]", k);
                rc = push_one(c, r, (int)i, prefix, item, bundle);
                if (rc != CTL_OK)
                    return rc;
                pushed++;
            }
        } else if (!json_is_null(doc)) {
            rc = push_one(c, r, (int)i, "", doc, bundle);
            if (rc != CTL_OK)
                return rc;
            pushed++;
        }
    }
    return pushed ? CTL_OK : ctl_fail(c, CTL_EFAIL, "%s: no DAG in the file", r->file);
}

int cmd_dags_push(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"bundle", required_argument, NULL, 'b'},
        {NULL, 0, NULL, 0},
    };
    const char *bundle_name = "cli";
    struct reader r;
    json_t *docs = NULL, *bundle = NULL;
    char *data = NULL, hex[65], version[80];
    size_t len = 0, i;
    int ch, rc;

    opterr = 0;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch != 'b')
            return ctl_usage(c, "unknown or incomplete option '%s'", argv[optind - 1]);
        bundle_name = optarg;
    }
    if (optind >= argc)
        return ctl_usage(c, "missing FILE");
    if (optind + 1 < argc)
        return ctl_usage(c, "unexpected argument '%s'", argv[optind + 1]);
    if (bundle_name[0] == '\0')
        return ctl_usage(c, "--bundle: empty");
    memset(&r, 0, sizeof(r));
    r.file = argv[optind];
    rc = read_file(c, r.file, &data, &len);
    if (rc == CTL_OK && !yaml_parser_initialize(&r.p))
        rc = ctl_fail(c, CTL_EFAIL, "out of memory");
    else if (rc == CTL_OK) {
        if (read_documents(&r, data, len, &docs) != 0)
            rc = ctl_fail(c, CTL_EFAIL, "%s", r.err[0] ? r.err : "cannot read the file");
        yaml_parser_delete(&r.p);
    }
    if (rc == CTL_OK && sha256_hex(data, len, hex) != 0)
        rc = ctl_fail(c, CTL_EFAIL, "sha256 failed");
    if (rc == CTL_OK) {
        snprintf(version, sizeof(version), "sha256:%s", hex);
        bundle = json_pack("{s:s, s:s}", "name", bundle_name, "version", version);
        rc = bundle ? push_docs(c, &r, docs, bundle) : ctl_fail(c, CTL_EFAIL, "out of memory");
    }
    for (i = 0; i < r.nmarks; i++)
        free(r.marks[i].path);
    free(r.marks);
    json_decref(bundle);
    json_decref(docs);
    free(data);
    return rc;
}
