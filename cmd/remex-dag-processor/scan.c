/*
 * One bundle scan: every file stat'ed (bundle_scan_dir), DAG files parsed
 * only when their content hash is not the one the previous scan parsed.
 * Nothing here touches the loop or logs: the scan runs in its own thread.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dagproc.h"
#include "remex/dagyaml.h"

int dp_is_dag_file(const char *rel)
{
    size_t n = strlen(rel);
    return (n > 5 && strcmp(rel + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(rel + n - 4, ".yml") == 0);
}

void dp_entry_free(struct dp_entry *ent)
{
    for (size_t i = 0; i < ent->ndags; i++) {
        free(ent->dags[i].dag_id);
        if (ent->texts)
            free(ent->texts[i]);
    }
    free(ent->texts);
    for (size_t i = 0; i < ent->nerrs; i++)
        free(ent->errs[i].msg);
    free(ent->dags);
    free(ent->errs);
    memset(ent, 0, sizeof(*ent));
}

void dp_state_free(struct dp_state *s)
{
    for (size_t i = 0; s->ent && i < s->files.n; i++)
        dp_entry_free(&s->ent[i]);
    free(s->ent);
    bundle_files_free(&s->files);
    memset(s, 0, sizeof(*s));
}

void dp_entry_drop_texts(struct dp_entry *x)
{
    for (size_t j = 0; x->texts && j < x->ndags; j++)
        free(x->texts[j]);
    free(x->texts);
    x->texts = NULL;
}

void dp_state_drop_texts(struct dp_state *s)
{
    for (size_t i = 0; s->ent && i < s->files.n; i++)
        dp_entry_drop_texts(&s->ent[i]);
}

/* Is c a character that ends a plain YAML scalar on a line? */
static int ends_scalar(char c)
{
    return c == '\0' || c == '\n' || c == '\r' || c == ' ' || c == '\t' || c == '#' || c == '"' ||
           c == '\'' || c == ',' || c == '}';
}

/*
 * Line and column of the `dag_id: <id>` key that defines id in data (the
 * parser's models carry no positions). 1:1 when not found.
 */
static void find_dag_id(const char *data, size_t len, const char *id, unsigned *line, unsigned *col)
{
    size_t idlen = strlen(id);
    unsigned ln = 1;
    const char *bol = data;
    *line = *col = 1;
    for (const char *p = data; p + 6 <= data + len; p++) {
        if (*p == '\n') {
            ln++;
            bol = p + 1;
            continue;
        }
        if (memcmp(p, "dag_id", 6) != 0)
            continue;
        const char *q = p + 6, *end = data + len;
        while (q < end && (*q == ' ' || *q == '"' || *q == '\''))
            q++;
        if (q >= end || *q != ':')
            continue;
        q++;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '"' || *q == '\''))
            q++;
        if ((size_t)(end - q) >= idlen && memcmp(q, id, idlen) == 0 &&
            ((size_t)(end - q) == idlen || ends_scalar(q[idlen]))) {
            *line = ln;
            *col = (unsigned)(p - bol) + 1;
            return;
        }
    }
}

static remex_err add_err(struct dp_entry *ent, unsigned line, unsigned col, const char *msg,
                         struct remex_error *e)
{
    struct dp_err *v = realloc(ent->errs, (ent->nerrs + 1) * sizeof(*v));
    if (v == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    ent->errs = v;
    v[ent->nerrs] = (struct dp_err){.line = line, .col = col, .msg = strdup(msg)};
    if (v[ent->nerrs].msg == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    ent->nerrs++;
    return REMEX_OK;
}

/* Takes res's DAGs (and, when keep, their canonical texts: the models are freed) into ent. */
static remex_err take_dags(struct dagyaml_result *res, const char *data, size_t len, int keep,
                           struct dp_entry *ent, struct remex_error *e)
{
    ent->dags = calloc(res->ndags ? res->ndags : 1, sizeof(*ent->dags));
    if (ent->dags == NULL ||
        (keep && (ent->texts = calloc(res->ndags ? res->ndags : 1, sizeof(*ent->texts))) == NULL))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    for (size_t i = 0; i < res->ndags; i++) {
        struct dp_dag *d = &ent->dags[i];
        if ((d->dag_id = strdup(res->dags[i]->dag_id)) == NULL)
            return remex_seterr(e, REMEX_ENOMEM, "out of memory");
        memcpy(d->hash, res->dags[i]->hash, sizeof(d->hash));
        if (data)
            find_dag_id(data, len, d->dag_id, &d->line, &d->col);
        else
            d->line = d->col = 1;
        ent->ndags++;
        if (keep && res->texts && res->texts[i]) {
            ent->texts[i] = res->texts[i];
            res->texts[i] = NULL;
        } else if (keep && dag_to_json(res->dags[i], &ent->texts[i], NULL, e) != REMEX_OK) {
            return e->code;
        }
    }
    return REMEX_OK;
}

/* Turns a parse outcome into the entry: DAGs, or import errors. */
static remex_err take_result(remex_err prc, struct dagyaml_result *res, const char *data,
                             size_t len, int keep, struct dp_entry *ent, struct remex_error *pe,
                             struct remex_error *e)
{
    remex_err rc = REMEX_OK;
    if (prc == REMEX_ENOMEM)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if (prc == REMEX_OK && res->ndags == 0)
        return add_err(ent, 1, 1, "no DAG in the file", e);
    if (prc == REMEX_OK)
        return take_dags(res, data, len, keep, ent, e);
    for (size_t i = 0; i < res->ndiags && rc == REMEX_OK; i++)
        rc = add_err(ent, res->diags[i].line, res->diags[i].column, res->diags[i].msg, e);
    if (rc == REMEX_OK && res->ndiags == 0)
        rc = add_err(ent, 1, 1, pe->msg, e);
    if (rc == REMEX_OK && res->more_diags)
        rc = add_err(ent, 1, 1, "more errors in this file were not shown", e);
    return rc;
}

remex_err dp_parse(const char *data, size_t len, const char *rel, int keep, unsigned cap_ms,
                   struct dp_entry *ent, struct remex_error *e)
{
    struct dagyaml_result res;
    struct remex_error pe;
    remex_err prc = dagyaml_parse_until(data, len, rel, cap_ms, &res, &pe);
    remex_err rc = take_result(prc, &res, data, len, keep, ent, &pe, e);
    dagyaml_result_free(&res);
    return rc;
}

remex_err dp_parse_file(const char *path, const char *rel, int keep, unsigned cap_ms,
                        struct dp_entry *ent, struct remex_error *e)
{
    FILE *f = fopen(path, "rb");
    char *data;
    size_t n;
    if (f == NULL) {
        struct remex_error fe;
        remex_errno(&fe, REMEX_EIO, "cannot read the file");
        return add_err(ent, 1, 1, fe.msg, e);
    }
    if ((data = malloc(DAGYAML_FILE_MAX + 1)) == NULL) {
        fclose(f);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    n = fread(data, 1, DAGYAML_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    remex_err rc;
    if (bad)
        rc = add_err(ent, 1, 1, "cannot read the file", e);
    else if (n > DAGYAML_FILE_MAX)
        rc = add_err(ent, 1, 1, "file larger than 1048576 bytes", e);
    else
        rc = dp_parse(data, n, rel, keep, cap_ms, ent, e);
    free(data);
    return rc;
}

/* Copies a cached entry's DAGs and errors (no models). */
static remex_err copy_entry(const struct dp_entry *from, struct dp_entry *to, struct remex_error *e)
{
    remex_err rc = REMEX_OK;
    to->dags = calloc(from->ndags ? from->ndags : 1, sizeof(*to->dags));
    if (to->dags == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    for (size_t i = 0; i < from->ndags; i++) {
        to->dags[i] = from->dags[i];
        if ((to->dags[i].dag_id = strdup(from->dags[i].dag_id)) == NULL)
            return remex_seterr(e, REMEX_ENOMEM, "out of memory");
        to->ndags++;
    }
    for (size_t i = 0; i < from->nerrs && rc == REMEX_OK; i++)
        rc = add_err(to, from->errs[i].line, from->errs[i].col, from->errs[i].msg, e);
    return rc;
}

/* Fills the entry of DAG file i: from prev when its content is the same, else parsed. */
static remex_err scan_one(const char *root, const struct dp_state *prev, unsigned cap_ms,
                          struct dp_state *s, size_t i, struct remex_error *e)
{
    const struct bundle_file *f = &s->files.v[i];
    struct dp_entry *x = &s->ent[i];
    char path[PATH_MAX];
    x->is_dag = 1;
    memcpy(x->sha256, f->sha256, sizeof(x->sha256));
    s->ndagfiles++;
    long j = prev ? bundle_files_find(&prev->files, f->rel) : -1;
    if (j >= 0 && prev->ent[j].is_dag && strcmp(prev->ent[j].sha256, f->sha256) == 0) {
        s->hits++;
        return copy_entry(&prev->ent[j], x, e);
    }
    s->parsed++;
    snprintf(path, sizeof(path), "%s/%s", root, f->rel);
    remex_err rc = dp_parse_file(path, f->rel, 1, cap_ms, x, e);
    /* A file past the time cap is not remembered as parsed (its entry's
     * hash stays empty, in the cache too): the next scan tries it again, so
     * that a raised parse_timeout or a quieter machine takes it. */
    for (size_t k = 0; rc == REMEX_OK && k < x->nerrs; k++)
        if (strstr(x->errs[k].msg, "ms cap per file") != NULL)
            x->sha256[0] = '\0';
    return rc;
}

remex_err dp_scan(const char *root, const struct dp_state *prev, unsigned cap_ms,
                  const struct dp_scan_hook *hook, struct dp_state *out, struct remex_error *e)
{
    remex_err rc;
    memset(out, 0, sizeof(*out));
    rc = bundle_scan_dir(root, prev ? &prev->files : NULL, &out->files, out->version, e);
    if (rc != REMEX_OK)
        return rc;
    out->ent = calloc(out->files.n ? out->files.n : 1, sizeof(*out->ent));
    if (out->ent == NULL)
        rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
    for (size_t i = 0; rc == REMEX_OK && i < out->files.n; i++) {
        if (!dp_is_dag_file(out->files.v[i].rel))
            continue;
        size_t parsed = out->parsed;
        rc = scan_one(root, prev, cap_ms, out, i, e);
        out->nerrors += out->ent[i].nerrs;
        if (rc == REMEX_OK && hook && out->parsed > parsed && out->ent[i].texts)
            hook->parsed(hook->ud, out, i);
    }
    if (rc != REMEX_OK)
        dp_state_free(out);
    return rc;
}

/* ---- duplicates and the manifest ---- */

size_t dp_duplicates(const char *const *names, const struct dp_entry *const *ent, size_t n,
                     dp_dup_fn fn, void *ud)
{
    json_t *first = json_object(); /* dag_id -> index of the first file defining it */
    size_t ndup = 0;
    char msg[REMEX_ERRMSG_MAX];
    if (first == NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < ent[i]->ndags; j++) {
            const char *id = ent[i]->dags[j].dag_id;
            json_t *k = json_object_get(first, id);
            if (k == NULL) {
                json_object_set_new(first, id, json_integer((json_int_t)i));
                continue;
            }
            size_t o = (size_t)json_integer_value(k);
            if (o == i)
                continue; /* the parser refuses an id twice in one file */
            /* Both definitions are errors; the first file's is reported once. */
            const struct dp_entry *fo = ent[o];
            for (size_t m = 0; m < fo->ndags; m++)
                if (strcmp(fo->dags[m].dag_id, id) == 0 && fo->dags[m].line != 0) {
                    snprintf(msg, sizeof(msg), "dag_id '%s' is also defined in %s", id, names[i]);
                    fn(ud, o, fo->dags[m].line, fo->dags[m].col, msg);
                    ndup++;
                    break;
                }
            snprintf(msg, sizeof(msg), "dag_id '%s' is also defined in %s", id, names[o]);
            fn(ud, i, ent[i]->dags[j].line, ent[i]->dags[j].col, msg);
            ndup++;
        }
    json_decref(first);
    return ndup;
}

struct mf {
    json_t *errs;
    const struct dp_state *s; /* files.v indexed like dp_duplicates' files */
};

static void mf_dup(void *ud, size_t file, unsigned line, unsigned col, const char *msg)
{
    struct mf *m = ud;
    json_array_append_new(m->errs,
                          json_pack("{s:s,s:i,s:i,s:s}", "file", m->s->files.v[file].rel, "line",
                                    (int)line, "column", (int)col, "message", msg));
}

/* Ids defined in more than one file (json object used as a set). */
static json_t *dup_ids(const struct dp_entry *const *ent, size_t n)
{
    json_t *seen = json_object(), *dup = json_object();
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < ent[i]->ndags; j++) {
            const char *id = ent[i]->dags[j].dag_id;
            if (json_object_get(seen, id))
                json_object_set_new(dup, id, json_true());
            else
                json_object_set_new(seen, id, json_true());
        }
    json_decref(seen);
    return dup;
}

json_t *dp_manifest(const char *bundle, const struct dp_state *s, size_t *nerrors)
{
    size_t n = 0;
    const char **names = calloc(s->ndagfiles ? s->ndagfiles : 1, sizeof(*names));
    const struct dp_entry **ents = calloc(s->ndagfiles ? s->ndagfiles : 1, sizeof(*ents));
    size_t *idx = calloc(s->ndagfiles ? s->ndagfiles : 1, sizeof(*idx));
    json_t *files = json_array(), *errs = json_array(), *m = NULL;
    if (!names || !ents || !idx || !files || !errs)
        goto out;
    for (size_t i = 0; i < s->files.n; i++) {
        const struct dp_entry *x = &s->ent[i];
        if (!x->is_dag)
            continue;
        names[n] = s->files.v[i].rel;
        ents[n] = x;
        idx[n++] = i;
        for (size_t j = 0; j < x->nerrs; j++)
            json_array_append_new(errs, json_pack("{s:s,s:i,s:i,s:s}", "file", s->files.v[i].rel,
                                                  "line", (int)x->errs[j].line, "column",
                                                  (int)x->errs[j].col, "message", x->errs[j].msg));
    }
    struct mf st = {.errs = errs, .s = s};
    /* dp_duplicates reports file indexes among the DAG files: map them back. */
    struct dp_state view = *s;
    struct bundle_file *vf = calloc(n ? n : 1, sizeof(*vf));
    if (vf == NULL)
        goto out;
    for (size_t i = 0; i < n; i++)
        vf[i] = s->files.v[idx[i]];
    view.files.v = vf;
    view.files.n = n;
    st.s = &view;
    dp_duplicates(names, ents, n, mf_dup, &st);
    free(vf);
    json_t *dup = dup_ids(ents, n);
    for (size_t i = 0; i < n; i++) {
        json_t *dags = json_array();
        for (size_t j = 0; j < ents[i]->ndags; j++)
            if (!json_object_get(dup, ents[i]->dags[j].dag_id))
                json_array_append_new(dags,
                                      json_pack("{s:s,s:s}", "dag_id", ents[i]->dags[j].dag_id,
                                                "hash", ents[i]->dags[j].hash));
        json_array_append_new(files, json_pack("{s:s,s:o}", "path", names[i], "dags", dags));
    }
    json_decref(dup);
    if (nerrors)
        *nerrors = json_array_size(errs);
    m = json_pack("{s:s,s:s,s:O,s:O}", "bundle", bundle, "version", s->version, "files", files,
                  "import_errors", errs);
out:
    json_decref(files);
    json_decref(errs);
    free(names);
    free(ents);
    free(idx);
    return m;
}
