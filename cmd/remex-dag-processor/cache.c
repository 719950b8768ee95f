/*
 * The file-hash cache of a bundle on disk, so that a restart re-reads and
 * re-uploads nothing that did not change:
 *
 *   {"format": 1, "remex": VERSION, "root": "/abs/bundle", "version": bundle version,
 *    "files": [{"p": rel, "s": size, "m": mtime_ns, "c": ctime_ns, "i": inode,
 *               "r": racy, "h": sha256, "d": [[dag_id, hash, line, col]...],
 *               "e": [[line, col, message]...]}]}
 *
 * A cache written by another remex version (the parser may have changed) or
 * for another root is ignored. Every field is checked: a damaged cache is
 * refused as a whole (the next scan reads every file again).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dagproc.h"
#include "remex/fsutil.h"
#include "remex/version.h"

#define DP_CACHE_FORMAT 1

static json_t *entry_json(const struct bundle_file *f, const struct dp_entry *x)
{
    json_t *d = json_array(), *er = json_array();
    for (size_t i = 0; i < x->ndags; i++)
        json_array_append_new(d, json_pack("[s,s,i,i]", x->dags[i].dag_id, x->dags[i].hash,
                                           (int)x->dags[i].line, (int)x->dags[i].col));
    for (size_t i = 0; i < x->nerrs; i++)
        json_array_append_new(
            er, json_pack("[i,i,s]", (int)x->errs[i].line, (int)x->errs[i].col, x->errs[i].msg));
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:b,s:s,s:b,s:o,s:o}", "p", f->rel, "s",
                     (json_int_t)f->size, "m", (json_int_t)f->mtime_ns, "c",
                     (json_int_t)f->ctime_ns, "i", (json_int_t)f->ino, "r", f->racy, "h", f->sha256,
                     "g", x->is_dag, "d", d, "e", er);
}

remex_err dp_cache_save(const char *path, const char *root, const struct dp_state *s,
                        struct remex_error *e)
{
    char tmp[PATH_MAX];
    json_t *files = json_array();
    for (size_t i = 0; files && i < s->files.n; i++)
        if (!s->ent[i].is_dag || s->ent[i].sha256[0] != '\0') /* "": parse again (scan.c) */
            json_array_append_new(files, entry_json(&s->files.v[i], &s->ent[i]));
    json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:o}", "format", DP_CACHE_FORMAT, "remex",
                          REMEX_VERSION, "root", root, "version", s->version, "files", files);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    remex_err rc = REMEX_OK;
    if (fd < 0 || fsutil_write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0)
        rc = remex_errno(e, REMEX_EIO, "%s", tmp);
    if (fd >= 0 && close(fd) != 0 && rc == REMEX_OK)
        rc = remex_errno(e, REMEX_EIO, "%s", tmp);
    if (rc == REMEX_OK && rename(tmp, path) != 0)
        rc = remex_errno(e, REMEX_EIO, "%s", path);
    if (rc != REMEX_OK)
        unlink(tmp);
    free(text);
    return rc;
}

/* One position: a 1-based line or column. */
static int pos_ok(json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= INT32_MAX;
}

static int hex64(const char *s)
{
    if (s == NULL || strlen(s) != HASH_SHA256_HEX - 1)
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

static int load_dags(json_t *d, struct dp_entry *x)
{
    size_t i;
    json_t *v;
    if (!json_is_array(d) || (x->dags = calloc(json_array_size(d) + 1, sizeof(*x->dags))) == NULL)
        return -1;
    json_array_foreach(d, i, v)
    {
        const char *id = json_string_value(json_array_get(v, 0));
        const char *h = json_string_value(json_array_get(v, 1));
        if (json_array_size(v) != 4 || id == NULL || !dag_id_valid(id) || h == NULL ||
            strlen(h) >= DAG_HASH_HEX || !pos_ok(json_array_get(v, 2)) ||
            !pos_ok(json_array_get(v, 3)))
            return -1;
        struct dp_dag *g = &x->dags[x->ndags];
        if ((g->dag_id = strdup(id)) == NULL)
            return -1;
        memcpy(g->hash, h, strlen(h) + 1);
        g->line = (unsigned)json_integer_value(json_array_get(v, 2));
        g->col = (unsigned)json_integer_value(json_array_get(v, 3));
        x->ndags++;
    }
    return 0;
}

static int load_errs(json_t *er, struct dp_entry *x)
{
    size_t i;
    json_t *v;
    if (!json_is_array(er) || (x->errs = calloc(json_array_size(er) + 1, sizeof(*x->errs))) == NULL)
        return -1;
    json_array_foreach(er, i, v)
    {
        const char *msg = json_string_value(json_array_get(v, 2));
        if (json_array_size(v) != 3 || !pos_ok(json_array_get(v, 0)) ||
            !pos_ok(json_array_get(v, 1)) || msg == NULL || strlen(msg) >= REMEX_ERRMSG_MAX)
            return -1;
        struct dp_err *r = &x->errs[x->nerrs];
        if ((r->msg = strdup(msg)) == NULL)
            return -1;
        r->line = (unsigned)json_integer_value(json_array_get(v, 0));
        r->col = (unsigned)json_integer_value(json_array_get(v, 1));
        x->nerrs++;
    }
    return 0;
}

/* One file record; -1 when any field is wrong. */
static int load_file(json_t *o, struct bundle_file *f, struct dp_entry *x)
{
    const char *rel = json_string_value(json_object_get(o, "p"));
    const char *h = json_string_value(json_object_get(o, "h"));
    json_t *s = json_object_get(o, "s"), *m = json_object_get(o, "m"), *c = json_object_get(o, "c");
    json_t *ino = json_object_get(o, "i"), *r = json_object_get(o, "r");
    json_t *g = json_object_get(o, "g");
    if (rel == NULL || *rel == '\0' || strlen(rel) >= PATH_MAX || !hex64(h) ||
        !json_is_integer(s) || json_integer_value(s) < 0 || !json_is_integer(m) ||
        !json_is_integer(c) || !json_is_integer(ino) || !json_is_boolean(r) || !json_is_boolean(g))
        return -1;
    if ((f->rel = strdup(rel)) == NULL)
        return -1;
    f->size = (uint64_t)json_integer_value(s);
    f->mtime_ns = json_integer_value(m);
    f->ctime_ns = json_integer_value(c);
    f->ino = (uint64_t)json_integer_value(ino);
    f->racy = json_is_true(r);
    memcpy(f->sha256, h, sizeof(f->sha256));
    x->is_dag = json_is_true(g);
    if (x->is_dag)
        memcpy(x->sha256, h, sizeof(x->sha256));
    return load_dags(json_object_get(o, "d"), x) == 0 && load_errs(json_object_get(o, "e"), x) == 0
               ? 0
               : -1;
}

static remex_err load_files(const char *path, json_t *files, struct dp_state *out,
                            struct remex_error *e)
{
    size_t n = json_array_size(files), i;
    json_t *v;
    if (n > BUNDLE_MAX_FILES)
        return remex_seterr(e, REMEX_ETOOBIG, "%s: more than %d files", path, BUNDLE_MAX_FILES);
    out->files.v = calloc(n + 1, sizeof(*out->files.v));
    out->ent = calloc(n + 1, sizeof(*out->ent));
    if (out->files.v == NULL || out->ent == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    json_array_foreach(files, i, v)
    {
        out->files.n = i + 1; /* entry i is released with the state even when half-loaded */
        if (!json_is_object(v) || load_file(v, &out->files.v[i], &out->ent[i]) != 0)
            return remex_seterr(e, REMEX_EPARSE, "%s: files[%zu]: malformed entry", path, i);
        if (i > 0 && strcmp(out->files.v[i - 1].rel, out->files.v[i].rel) >= 0)
            return remex_seterr(e, REMEX_EPARSE, "%s: files[%zu]: out of order", path, i);
    }
    return REMEX_OK;
}

remex_err dp_cache_load(const char *path, const char *root, struct dp_state *out,
                        struct remex_error *e)
{
    struct stat st;
    json_error_t je;
    memset(out, 0, sizeof(*out));
    if (stat(path, &st) != 0)
        return errno == ENOENT ? remex_seterr(e, REMEX_ENOTFOUND, "%s: no cache yet", path)
                               : remex_errno(e, REMEX_EIO, "%s", path);
    if ((uint64_t)st.st_size > DP_CACHE_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "%s: larger than %u bytes", path, DP_CACHE_MAX);
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (o == NULL)
        return remex_seterr(e, REMEX_EPARSE, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    json_t *fmt = json_object_get(o, "format"), *files = json_object_get(o, "files");
    const char *ver = json_string_value(json_object_get(o, "remex"));
    const char *r = json_string_value(json_object_get(o, "root"));
    const char *v = json_string_value(json_object_get(o, "version"));
    remex_err rc;
    if (!json_is_integer(fmt) || json_integer_value(fmt) != DP_CACHE_FORMAT || ver == NULL ||
        strcmp(ver, REMEX_VERSION) != 0 || r == NULL || strcmp(r, root) != 0)
        rc = remex_seterr(e, REMEX_ENOTFOUND, "%s: made by another version or for another folder",
                          path);
    else if (!json_is_array(files))
        rc = remex_seterr(e, REMEX_EPARSE, "%s: files: expected an array", path);
    else if (v == NULL || strlen(v) >= sizeof(out->version))
        rc = remex_seterr(e, REMEX_EPARSE, "%s: version: expected a bundle version", path);
    else
        rc = load_files(path, files, out, e);
    if (rc == REMEX_OK)
        memcpy(out->version, v, strlen(v) + 1);
    json_decref(o);
    if (rc != REMEX_OK)
        dp_state_free(out);
    return rc;
}
