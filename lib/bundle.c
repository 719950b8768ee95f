/* bundle: local folder bundles, their scans and content versions. */
#include "remex/bundle.h"

#include <dirent.h>
#include <ftw.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "remex/fsutil.h"

struct bundle {
    char *name;
    char *path; /* local: the folder; git: NULL */
    int unversioned;
    char *git_dir;            /* git: <state_dir>/bundles/<name> */
    char *subdir;             /* git: NULL or a relative folder */
    char *checkout;           /* git: the last path bundle_path answered */
    struct bundle_files last; /* stat cache: the last scan */
    /* local, versioned, with a state_dir: snapshots in <state_dir>/bundles/<name>/<64 hex> */
    char *snap_dir;
    struct bundle_files snap_prev; /* the files of the last snapshot made (links to reuse) */
    char snap_prev_hex[HASH_SHA256_HEX];
    size_t snap_made, snap_linked; /* snapshots made, files linked rather than copied */
};

struct bundle_set {
    struct bundle *items;
    size_t n;
};

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '-'))
            return 0;
    return 1;
}

/* A git spec: URL, ref, subdir (relative, no ".."), a state dir for its checkouts. */
static remex_err git_check(const struct bundle_spec *specs, size_t i, struct remex_error *e)
{
    const struct bundle_spec *s = &specs[i];
    const char *sd = s->subdir;
    if (s->url[0] == '\0')
        return remex_seterr(e, REMEX_EINVAL, "bundles[%zu].url: empty", i);
    if (s->ref != NULL && s->ref[0] == '\0')
        return remex_seterr(e, REMEX_EINVAL, "bundles[%zu].tracking_ref: empty", i);
    if (sd != NULL && (sd[0] == '/' || strcmp(sd, "..") == 0 || strncmp(sd, "../", 3) == 0 ||
                       strstr(sd, "/../") != NULL ||
                       (strlen(sd) >= 3 && strcmp(sd + strlen(sd) - 3, "/..") == 0)))
        return remex_seterr(e, REMEX_EINVAL,
                            "bundles[%zu].subdir: must be a folder inside the repository", i);
    if (s->state_dir == NULL)
        return remex_seterr(e, REMEX_EINVAL, "bundles[%zu]: a git bundle needs state_dir", i);
    return REMEX_OK;
}

/* <state_dir>/bundles/<name>, absolute (owned), or NULL. */
static char *bundles_dir(const struct bundle_spec *s)
{
    char buf[PATH_MAX];
    char *abs = s->state_dir[0] == '/' ? NULL : realpath(".", NULL);
    int n = snprintf(buf, sizeof(buf), "%s%s%s/bundles/%s", abs ? abs : "", abs ? "/" : "",
                     s->state_dir, s->name);
    free(abs);
    return n < 0 || (size_t)n >= sizeof(buf) ? NULL : strdup(buf);
}

/* Copies a git spec into x; -1 out of memory. */
static int git_copy(const struct bundle_spec *s, struct bundle *x)
{
    x->git_dir = bundles_dir(s);
    x->subdir = s->subdir && *s->subdir ? strdup(s->subdir) : NULL;
    return x->git_dir == NULL || (s->subdir && *s->subdir && x->subdir == NULL) ? -1 : 0;
}

/* Checks spec i against the specs before it and its folder. */
static remex_err spec_check(const struct bundle_spec *specs, size_t i, struct remex_error *e)
{
    struct stat st;
    if (specs[i].name == NULL || !valid_name(specs[i].name))
        return remex_seterr(e, REMEX_EINVAL, "bundles[%zu].name: must match [A-Za-z0-9_.-]{1,64}",
                            i);
    for (size_t j = 0; j < i; j++)
        if (strcmp(specs[j].name, specs[i].name) == 0)
            return remex_seterr(e, REMEX_EINVAL, "bundles[%zu].name: duplicate bundle '%s'", i,
                                specs[i].name);
    if (specs[i].url != NULL && specs[i].path != NULL)
        return remex_seterr(e, REMEX_EINVAL,
                            "bundles[%zu]: set path (a local folder) or url (a git repository), "
                            "not both",
                            i);
    if (specs[i].url != NULL)
        return git_check(specs, i, e);
    if (specs[i].path == NULL)
        return remex_seterr(e, REMEX_EINVAL,
                            "bundles[%zu]: set path (a local folder) or url (a git repository)", i);
    if (stat(specs[i].path, &st) != 0)
        return remex_errno(e, REMEX_EINVAL, "bundles[%zu].path: %s", i, specs[i].path);
    if (!S_ISDIR(st.st_mode))
        return remex_seterr(e, REMEX_EINVAL, "bundles[%zu].path: %s: not a folder", i,
                            specs[i].path);
    return REMEX_OK;
}

remex_err bundle_set_new(const struct bundle_spec *specs, size_t n, struct bundle_set **out,
                         struct remex_error *e)
{
    struct bundle_set *b = calloc(1, sizeof(*b));
    remex_err rc = REMEX_OK;
    if (b == NULL || (n > 0 && (b->items = calloc(n, sizeof(*b->items))) == NULL)) {
        free(b);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n && rc == REMEX_OK; i++) {
        if ((rc = spec_check(specs, i, e)) != REMEX_OK)
            break;
        b->items[i].name = strdup(specs[i].name);
        b->items[i].unversioned = specs[i].unversioned;
        b->n = i + 1;
        if (specs[i].url != NULL) {
            if (b->items[i].name == NULL || git_copy(&specs[i], &b->items[i]) != 0)
                rc = remex_seterr(e, REMEX_ENOMEM, "bundles[%zu]: out of memory or path too long",
                                  i);
            continue;
        }
        b->items[i].path = realpath(specs[i].path, NULL);
        if (b->items[i].name == NULL || b->items[i].path == NULL)
            rc = remex_errno(e, REMEX_ENOMEM, "bundles[%zu]", i);
        else if (!specs[i].unversioned && specs[i].state_dir != NULL &&
                 (b->items[i].snap_dir = bundles_dir(&specs[i])) == NULL)
            rc = remex_seterr(e, REMEX_ENOMEM, "bundles[%zu]: out of memory or path too long", i);
    }
    if (rc != REMEX_OK) {
        bundle_set_free(b);
        return rc;
    }
    *out = b;
    return REMEX_OK;
}

void bundle_set_free(struct bundle_set *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++) {
        free(b->items[i].name);
        free(b->items[i].path);
        free(b->items[i].git_dir);
        free(b->items[i].subdir);
        free(b->items[i].checkout);
        free(b->items[i].snap_dir);
        bundle_files_free(&b->items[i].last);
        bundle_files_free(&b->items[i].snap_prev);
    }
    free(b->items);
    free(b);
}

const char *bundle_name(const struct bundle_set *b, size_t i)
{
    return i < b->n ? b->items[i].name : NULL;
}

static struct bundle *find(const struct bundle_set *b, const char *name)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->items[i].name, name) == 0)
            return &b->items[i];
    return NULL;
}

const char *bundle_root(const struct bundle_set *b, const char *name)
{
    const struct bundle *x = find(b, name);
    return x ? x->path : NULL;
}

const char *bundle_git_dir(const struct bundle_set *b, const char *name)
{
    const struct bundle *x = find(b, name);
    return x ? x->git_dir : NULL;
}

/* A full 40-hex lower-case commit SHA (as gitbundle_is_sha; no libgit2 in the worker). */
static int is_sha(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return 0;
    return n == 40;
}

/* The checkout of a git bundle at a commit: dir/<sha>[/subdir], which must exist. */
static remex_err git_path(struct bundle *x, const char *version, const char **path,
                          struct remex_error *e)
{
    char p[PATH_MAX];
    struct stat st;
    if (version == NULL || !is_sha(version))
        return remex_seterr(e, REMEX_EINVAL,
                            "git bundle '%s': version '%s' is not a commit SHA (was the DAG "
                            "uploaded by hand rather than by a dag-processor?)",
                            x->name, version ? version : "");
    int n = snprintf(p, sizeof(p), "%s/%s%s%s", x->git_dir, version, x->subdir ? "/" : "",
                     x->subdir ? x->subdir : "");
    if (n < 0 || (size_t)n >= sizeof(p))
        return remex_seterr(e, REMEX_EINVAL, "git bundle '%s': path too long", x->name);
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
        return remex_seterr(e, REMEX_ENOTFOUND,
                            "git bundle '%s': commit %s is not checked out on this agent (%s): "
                            "the agent's dag-processor checks out each version it syncs; check "
                            "that it runs with the same state_dir",
                            x->name, version, p);
    free(x->checkout);
    if ((x->checkout = strdup(p)) == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    *path = x->checkout;
    return REMEX_OK;
}

/* Rescans x with its own last scan as the stat cache. */
static remex_err rescan(struct bundle *x, char version[BUNDLE_VERSION_MAX], struct remex_error *e)
{
    struct bundle_files nf;
    remex_err rc = bundle_scan_dir(x->path, &x->last, &nf, version, e);
    if (rc != REMEX_OK)
        return rc;
    bundle_files_free(&x->last);
    x->last = nf;
    return REMEX_OK;
}

/* The snapshot folder of version "sha256:<hex>" of x: snap_dir/<hex>; -1 when not such a version.
 */
static int snap_path(const struct bundle *x, const char *version, char *p, size_t n)
{
    if (strncmp(version, "sha256:", 7) != 0 || strlen(version) != 7 + 64)
        return -1;
    for (const char *h = version + 7; *h; h++)
        if (!((*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'f')))
            return -1;
    int k = snprintf(p, n, "%s/%s", x->snap_dir, version + 7);
    return k > 0 && (size_t)k < n ? 0 : -1;
}

static remex_err make_snapshot(struct bundle *x, const struct bundle_files *f, const char *version,
                               const char *dst, struct remex_error *e);

/* A versioned local bundle with snapshots: the snapshot of version, made now when the folder
 * holds it. */
static remex_err local_path(struct bundle *x, const char *version, const char **path,
                            struct remex_error *e)
{
    char p[PATH_MAX], cur[BUNDLE_VERSION_MAX];
    struct stat st;
    remex_err rc;
    if (snap_path(x, version, p, sizeof(p)) != 0)
        return remex_seterr(e, REMEX_EINVAL,
                            "bundle '%s': version '%s' is not a local bundle version "
                            "(sha256:<64 hex>; was the DAG pushed by hand? mark the bundle "
                            "'versioned: false' to run tasks in the folder as it is)",
                            x->name, version);
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if ((rc = rescan(x, cur, e)) != REMEX_OK)
            return rc;
        if (strcmp(cur, version) != 0)
            return remex_seterr(
                e, REMEX_ECONFLICT,
                "bundle '%s' at version %s cannot be had: its folder %s now holds "
                "version %s and no snapshot of %s was taken on this agent (the DAG's "
                "files changed before the worker saw them; mark the bundle 'versioned: "
                "false' to run tasks in the folder as it is)",
                x->name, version, x->path, cur, version);
        if ((rc = make_snapshot(x, &x->last, version, p, e)) != REMEX_OK)
            return rc;
    }
    free(x->checkout);
    if ((x->checkout = strdup(p)) == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    *path = x->checkout;
    return REMEX_OK;
}

remex_err bundle_path(struct bundle_set *b, const char *name, const char *version,
                      const char **path, struct remex_error *e)
{
    struct bundle *x = find(b, name);
    char cur[BUNDLE_VERSION_MAX];
    remex_err rc;
    if (x == NULL)
        return remex_seterr(e, REMEX_ENOTFOUND, "bundle '%s' is not configured on this agent",
                            name);
    if (x->git_dir != NULL)
        return git_path(x, version, path, e);
    if (version != NULL && *version != '\0' && x->snap_dir != NULL)
        return local_path(x, version, path, e);
    if (version != NULL && *version != '\0' && !x->unversioned) {
        if ((rc = rescan(x, cur, e)) != REMEX_OK)
            return rc;
        if (strcmp(cur, version) != 0)
            return remex_seterr(
                e, REMEX_ECONFLICT,
                "bundle '%s' at version %s cannot be had: its folder %s now holds "
                "version %s (the DAG's files changed since it was scheduled; mark "
                "the bundle 'versioned: false' to run tasks in the folder as it is)",
                name, version, x->path, cur);
    }
    *path = x->path;
    return REMEX_OK;
}

remex_err bundle_hold_dir(const char *dir, int *fd)
{
    struct stat a, c;
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    *fd = -1;
    /* The pruner holds the folder exclusively while it renames it away; a folder opened
     * just before that rename is caught by comparing it with what the path holds now. */
    if (d < 0 || flock(d, LOCK_SH | LOCK_NB) != 0 || fstat(d, &a) != 0 || stat(dir, &c) != 0 ||
        a.st_ino != c.st_ino || a.st_dev != c.st_dev) {
        if (d >= 0)
            close(d);
        return REMEX_ENOTFOUND;
    }
    *fd = d;
    return REMEX_OK;
}

remex_err bundle_hold(const struct bundle_set *b, const char *name, const char *version, int *fd,
                      struct remex_error *e)
{
    const struct bundle *x = find(b, name);
    char p[PATH_MAX];
    *fd = -1;
    if (x == NULL || (x->git_dir == NULL && x->snap_dir == NULL) || version == NULL ||
        (x->git_dir == NULL && *version == '\0'))
        return REMEX_OK;
    if (x->git_dir == NULL) {
        if (snap_path(x, version, p, sizeof(p)) != 0)
            return remex_seterr(e, REMEX_EINVAL,
                                "bundle '%s': version '%s' is not a local "
                                "bundle version",
                                name, version);
    } else {
        if (!is_sha(version))
            return remex_seterr(e, REMEX_EINVAL,
                                "git bundle '%s': version '%s' is not a commit SHA", name, version);
        snprintf(p, sizeof(p), "%s/%s", x->git_dir, version);
    }
    if (bundle_hold_dir(p, fd) != REMEX_OK)
        return remex_seterr(e, REMEX_ENOTFOUND,
                            "bundle '%s': the %s of %s is gone (pruned): keep more versions "
                            "(dag_processor.keep_versions)",
                            name, x->git_dir ? "checkout" : "snapshot", version);
    return REMEX_OK;
}

remex_err bundle_version(struct bundle_set *b, const char *name, char out[BUNDLE_VERSION_MAX],
                         struct remex_error *e)
{
    struct bundle *x = find(b, name);
    if (x == NULL)
        return remex_seterr(e, REMEX_ENOTFOUND, "bundle '%s' is not configured on this agent",
                            name);
    if (x->git_dir != NULL)
        return remex_seterr(e, REMEX_EINVAL,
                            "bundle '%s' is a git bundle: its version is the commit its "
                            "tracking_ref points to",
                            name);
    return rescan(x, out, e);
}

/* ---- scans ---- */

/* Walk state of a scan. */
struct walk {
    const char *root;
    struct bundle_files *f;
    size_t cap;
    uint64_t bytes;
};

static remex_err walk_add(struct walk *w, const char *rel, const struct stat *st,
                          struct remex_error *e)
{
    struct bundle_files *f = w->f;
    if (f->n >= BUNDLE_MAX_FILES || (w->bytes += (uint64_t)st->st_size) > BUNDLE_MAX_BYTES)
        return remex_seterr(e, REMEX_ETOOBIG, "%s: bundle larger than %d files or 1 GiB", w->root,
                            BUNDLE_MAX_FILES);
    if (f->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 64;
        struct bundle_file *v = realloc(f->v, nc * sizeof(*v));
        if (v == NULL)
            return remex_seterr(e, REMEX_ENOMEM, "out of memory");
        f->v = v;
        w->cap = nc;
    }
    struct bundle_file *x = &f->v[f->n];
    memset(x, 0, sizeof(*x));
    if ((x->rel = strdup(rel)) == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    x->size = (uint64_t)st->st_size;
    x->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
    x->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
    x->ino = (uint64_t)st->st_ino;
    x->mode = (uint32_t)st->st_mode;
    f->n++;
    return REMEX_OK;
}

/* Recursion is bounded by BUNDLE_MAX_DEPTH (each level holds a DIR and ~8 KiB of stack). */
static remex_err walk_dir(struct walk *w, const char *rel, int depth, struct remex_error *e)
{
    char path[PATH_MAX];
    if (depth > BUNDLE_MAX_DEPTH)
        return remex_seterr(e, REMEX_ETOOBIG, "%s: folders nested deeper than %d levels", w->root,
                            BUNDLE_MAX_DEPTH);
    snprintf(path, sizeof(path), "%s%s%s", w->root, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    struct dirent *de;
    remex_err rc = REMEX_OK;
    if (d == NULL)
        return remex_errno(e, REMEX_EIO, "%s", path);
    while (rc == REMEX_OK && (de = readdir(d)) != NULL) {
        char sub[PATH_MAX];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        int n = snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        if (n < 0 || (size_t)n >= sizeof(sub))
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            rc = walk_dir(w, sub, depth + 1, e);
        else if (S_ISREG(st.st_mode))
            rc = walk_add(w, sub, &st, e);
    }
    closedir(d);
    return rc;
}

/* SHA-256 of a file's content into hex; the file must still have the scanned size. */
static remex_err hash_file(EVP_MD_CTX *ctx, const char *root, struct bundle_file *x,
                           struct remex_error *e)
{
    char path[PATH_MAX];
    unsigned char chunk[65536], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    uint64_t total = 0;
    ssize_t r;
    snprintf(path, sizeof(path), "%s/%s", root, x->rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return remex_errno(e, REMEX_EIO, "%s", path);
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((r = read(fd, chunk, sizeof(chunk))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || (total += (uint64_t)r) > x->size) {
            close(fd);
            return r < 0 ? remex_errno(e, REMEX_EIO, "%s", path)
                         : remex_seterr(e, REMEX_EAGAIN, "%s: changed while it was read", path);
        }
        EVP_DigestUpdate(ctx, chunk, (size_t)r);
    }
    close(fd);
    if (total != x->size)
        return remex_seterr(e, REMEX_EAGAIN, "%s: changed while it was read", path);
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    hash_hex(md, mdlen < HASH_SHA256_LEN ? mdlen : HASH_SHA256_LEN, x->sha256);
    return REMEX_OK;
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const struct bundle_file *)a)->rel, ((const struct bundle_file *)b)->rel);
}

/* prev's entry for x when its stat signature still holds, else NULL; *j walks prev in order. */
static const struct bundle_file *reuse(const struct bundle_files *prev, size_t *j,
                                       const struct bundle_file *x)
{
    int c = 1;
    if (prev == NULL)
        return NULL;
    while (*j < prev->n && (c = strcmp(prev->v[*j].rel, x->rel)) < 0)
        (*j)++;
    if (*j >= prev->n || c != 0)
        return NULL;
    const struct bundle_file *p = &prev->v[*j];
    if (p->racy || p->size != x->size || p->mtime_ns != x->mtime_ns || p->ctime_ns != x->ctime_ns ||
        p->ino != x->ino || p->sha256[0] == '\0')
        return NULL;
    return p;
}

/* Fills every file's content hash (reused or read); marks racy files. */
static remex_err hash_all(const char *root, const struct bundle_files *prev, struct bundle_files *f,
                          struct remex_error *e)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t racy_after = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec - BUNDLE_RACY_NS;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t j = 0;
    remex_err rc = REMEX_OK;
    if (ctx == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    for (size_t i = 0; i < f->n && rc == REMEX_OK; i++) {
        struct bundle_file *x = &f->v[i];
        const struct bundle_file *p = reuse(prev, &j, x);
        x->racy = x->mtime_ns > racy_after || x->ctime_ns > racy_after;
        if (p != NULL) {
            memcpy(x->sha256, p->sha256, sizeof(x->sha256));
            continue;
        }
        rc = hash_file(ctx, root, x, e);
        f->hashed++;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

remex_err bundle_files_version(const struct bundle_files *f, char version[BUNDLE_VERSION_MAX],
                               struct remex_error *e)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hdr[24];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; i < f->n; i++) {
        int n = snprintf(hdr, sizeof(hdr), "%llu", (unsigned long long)f->v[i].size);
        EVP_DigestUpdate(ctx, f->v[i].rel, strlen(f->v[i].rel) + 1);
        EVP_DigestUpdate(ctx, hdr, (size_t)n + 1);
        EVP_DigestUpdate(ctx, f->v[i].sha256, strlen(f->v[i].sha256) + 1);
    }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    memcpy(version, "sha256:", 7);
    hash_hex(md, mdlen < HASH_SHA256_LEN ? mdlen : HASH_SHA256_LEN, version + 7);
    return REMEX_OK;
}

remex_err bundle_scan_dir(const char *root, const struct bundle_files *prev,
                          struct bundle_files *out, char version[BUNDLE_VERSION_MAX],
                          struct remex_error *e)
{
    struct walk w = {.root = root, .f = out};
    remex_err rc;
    memset(out, 0, sizeof(*out));
    /* A file rewritten while it is read is read again, a few times at most. */
    for (int attempt = 0;; attempt++) {
        rc = walk_dir(&w, "", 0, e);
        if (rc == REMEX_OK && out->n > 1)
            qsort(out->v, out->n, sizeof(*out->v), cmp_file);
        if (rc == REMEX_OK)
            rc = hash_all(root, prev, out, e);
        if (rc != REMEX_EAGAIN || attempt == 3)
            break;
        bundle_files_free(out);
        w.cap = 0;
        w.bytes = 0;
    }
    if (rc == REMEX_EAGAIN)
        rc = REMEX_EIO;
    if (rc == REMEX_OK)
        rc = bundle_files_version(out, version, e);
    if (rc != REMEX_OK)
        bundle_files_free(out);
    return rc;
}

long bundle_files_find(const struct bundle_files *f, const char *rel)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->v[mid].rel, rel);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

void bundle_files_free(struct bundle_files *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i].rel);
    free(f->v);
    memset(f, 0, sizeof(*f));
}

/* ---- snapshots of local bundles ---- */

/* Creates the folders of rel inside root (rel's last component excluded). */
static int mkdirs_in(const char *root, const char *rel)
{
    char p[PATH_MAX];
    int n = snprintf(p, sizeof(p), "%s/%s", root, rel);
    if (n < 0 || (size_t)n >= sizeof(p))
        return -1;
    return fsutil_mkdir_parents(p, 0700);
}

/* Copies src to dst (created, mode) while hashing it; the content must hash to want. */
static remex_err copy_checked(EVP_MD_CTX *ctx, const char *src, const char *dst, mode_t mode,
                              const struct bundle_file *want, struct remex_error *e)
{
    unsigned char chunk[65536], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[HASH_SHA256_HEX];
    uint64_t total = 0;
    ssize_t r;
    remex_err rc = REMEX_OK;
    int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return remex_errno(e, REMEX_EAGAIN, "%s", src);
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return remex_errno(e, REMEX_EIO, "%s", dst);
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while (rc == REMEX_OK && (r = read(in, chunk, sizeof(chunk))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = remex_errno(e, REMEX_EIO, "%s", src);
        else if ((total += (uint64_t)r) > want->size)
            rc = remex_seterr(e, REMEX_EAGAIN, "%s: changed while it was copied", src);
        else if (fsutil_write_all(out, chunk, (size_t)r) != 0)
            rc = remex_errno(e, REMEX_EIO, "%s", dst);
        else
            EVP_DigestUpdate(ctx, chunk, (size_t)r);
    }
    close(in);
    if (rc == REMEX_OK && (fchmod(out, mode) != 0 || close(out) != 0))
        return remex_errno(e, REMEX_EIO, "%s", dst);
    if (rc != REMEX_OK) {
        close(out);
        return rc;
    }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    hash_hex(md, mdlen < HASH_SHA256_LEN ? mdlen : HASH_SHA256_LEN, hex);
    if (total != want->size || strcmp(hex, want->sha256) != 0)
        return remex_seterr(e, REMEX_EAGAIN, "%s: changed while it was copied", src);
    return REMEX_OK;
}

/* Read-only and private like the rest of the state_dir: owner r, x kept, nothing else. */
static mode_t ro_mode(uint32_t m)
{
    return (m & S_IXUSR) ? 0500 : 0400;
}

/* Links rel from the previous snapshot when it holds the same content and mode. */
static int link_prev(const struct bundle *x, const struct bundle_file *f, const char *dst)
{
    char src[PATH_MAX];
    long i = x->snap_prev_hex[0] ? bundle_files_find(&x->snap_prev, f->rel) : -1;
    if (i < 0 || strcmp(x->snap_prev.v[i].sha256, f->sha256) != 0 ||
        ro_mode(x->snap_prev.v[i].mode) != ro_mode(f->mode))
        return -1;
    int n = snprintf(src, sizeof(src), "%s/%s/%s", x->snap_dir, x->snap_prev_hex, f->rel);
    return n > 0 && (size_t)n < sizeof(src) ? link(src, dst) : -1;
}

static int ro_dir(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        chmod(path, 0500);
    return 0;
}

static int rw_dir(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_D && (st->st_mode & 0700) != 0700)
        chmod(path, 0700);
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0; /* best effort: go on with the rest */
}

void bundle_remove_tree(const char *path)
{
    nftw(path, rw_dir, 16, FTW_PHYS); /* read-only snapshot folders first become writable */
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Deep copy of scan f into *out (empty on failure); -1 out of memory. */
static int files_copy(const struct bundle_files *f, struct bundle_files *out)
{
    memset(out, 0, sizeof(*out));
    if ((out->v = calloc(f->n ? f->n : 1, sizeof(*out->v))) == NULL)
        return -1;
    for (size_t i = 0; i < f->n; i++) {
        out->v[i] = f->v[i];
        if ((out->v[i].rel = strdup(f->v[i].rel)) == NULL) {
            bundle_files_free(out);
            return -1;
        }
        out->n = i + 1;
    }
    out->hashed = f->hashed;
    return 0;
}

/* Copies the files of scan f (of x's folder) into tmp, each checked against its hash. */
static remex_err fill_snapshot(struct bundle *x, const struct bundle_files *f, const char *tmp,
                               size_t *linked, struct remex_error *e)
{
    char src[PATH_MAX], dst[PATH_MAX];
    remex_err rc = REMEX_OK;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    for (size_t i = 0; i < f->n && rc == REMEX_OK; i++) {
        snprintf(src, sizeof(src), "%s/%s", x->path, f->v[i].rel);
        if (snprintf(dst, sizeof(dst), "%s/%s", tmp, f->v[i].rel) >= (int)sizeof(dst) ||
            mkdirs_in(tmp, f->v[i].rel) != 0)
            rc = remex_errno(e, REMEX_EIO, "bundle '%s': snapshot %s", x->name, dst);
        else if (link_prev(x, &f->v[i], dst) == 0)
            (*linked)++;
        else
            rc = copy_checked(ctx, src, dst, ro_mode(f->v[i].mode), &f->v[i], e);
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

/*
 * Snapshot of x's folder at version into dst: the files are copied (or linked from the
 * previous snapshot, which is never written to) into a temporary folder, each checked
 * against the content hash of the scan that gave version, then made read-only and renamed
 * into place. A file changed meanwhile fails it (REMEX_ECONFLICT).
 */
static remex_err make_snapshot(struct bundle *x, const struct bundle_files *f, const char *version,
                               const char *dst, struct remex_error *e)
{
    char tmp[PATH_MAX];
    size_t linked = 0;
    remex_err rc;
    if (fsutil_mkdir_p(x->snap_dir, 0700) != 0)
        return remex_errno(e, REMEX_EIO, "bundle '%s': %s", x->name, x->snap_dir);
    snprintf(tmp, sizeof(tmp), "%s/.tmp-%s-%d", x->snap_dir, version + 7, (int)getpid());
    bundle_remove_tree(tmp); /* a crashed try of this pid's predecessor */
    if (mkdir(tmp, 0700) != 0)
        return remex_errno(e, REMEX_EIO, "bundle '%s': %s", x->name, tmp);
    rc = fill_snapshot(x, f, tmp, &linked, e);
    if (rc == REMEX_EAGAIN) {
        char why[REMEX_ERRMSG_MAX];
        snprintf(why, sizeof(why), "%s", e->msg);
        rc = remex_seterr(e, REMEX_ECONFLICT,
                          "bundle '%s' at version %s cannot be had: its folder %s changed "
                          "while the snapshot was taken (%s)",
                          x->name, version, x->path, why);
    }
    if (rc == REMEX_OK) {
        nftw(tmp, ro_dir, 16, FTW_DEPTH | FTW_PHYS);
        if (rename(tmp, dst) != 0 && errno != EEXIST && errno != ENOTEMPTY)
            rc = remex_errno(e, REMEX_EIO, "bundle '%s': %s", x->name, dst);
    }
    struct stat st;
    if (stat(tmp, &st) == 0)
        bundle_remove_tree(tmp); /* failed, or another process made the same snapshot */
    if (rc != REMEX_OK)
        return rc;
    /* The files of this snapshot: the next one links what did not change. */
    struct bundle_files copy;
    bundle_files_free(&x->snap_prev);
    x->snap_prev_hex[0] = '\0';
    if (files_copy(f, &copy) == 0) {
        x->snap_prev = copy;
        memcpy(x->snap_prev_hex, version + 7, HASH_SHA256_HEX);
    }
    x->snap_made++;
    x->snap_linked += linked;
    return REMEX_OK;
}

remex_err bundle_snapshot(struct bundle_set *b, const char *name, char version[BUNDLE_VERSION_MAX],
                          int *made, struct remex_error *e)
{
    struct bundle *x = find(b, name);
    char p[PATH_MAX];
    struct stat st;
    remex_err rc;
    *made = 0;
    if (x == NULL || x->snap_dir == NULL)
        return remex_seterr(e, REMEX_EINVAL,
                            "bundle '%s' is no versioned local bundle with a state_dir", name);
    if ((rc = rescan(x, version, e)) != REMEX_OK)
        return rc;
    if (snap_path(x, version, p, sizeof(p)) != 0)
        return remex_seterr(e, REMEX_EINVAL, "bundle '%s': bad version %s", name, version);
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
        return REMEX_OK;
    if ((rc = make_snapshot(x, &x->last, version, p, e)) == REMEX_OK)
        *made = 1;
    return rc;
}

remex_err bundle_snapshot_scan(struct bundle_set *b, const char *name,
                               const struct bundle_files *scan, const char *version, int *made,
                               struct remex_error *e)
{
    struct bundle *x = find(b, name);
    char p[PATH_MAX], check[BUNDLE_VERSION_MAX];
    struct stat st;
    remex_err rc;
    *made = 0;
    if (x == NULL || x->snap_dir == NULL)
        return remex_seterr(e, REMEX_EINVAL,
                            "bundle '%s' is no versioned local bundle with a state_dir", name);
    if ((rc = bundle_files_version(scan, check, e)) != REMEX_OK)
        return rc;
    if (strcmp(check, version) != 0 || snap_path(x, version, p, sizeof(p)) != 0)
        return remex_seterr(e, REMEX_EINVAL, "bundle '%s': version %s is not the scan's (%s)", name,
                            version, check);
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
        return REMEX_OK;
    if ((rc = make_snapshot(x, scan, version, p, e)) == REMEX_OK)
        *made = 1;
    return rc;
}

const char *bundle_snapshot_dir(const struct bundle_set *b, const char *name)
{
    const struct bundle *x = find(b, name);
    return x ? x->snap_dir : NULL;
}

void bundle_snapshot_counts(const struct bundle_set *b, const char *name, size_t *made,
                            size_t *linked)
{
    const struct bundle *x = find(b, name);
    *made = x ? x->snap_made : 0;
    *linked = x ? x->snap_linked : 0;
}

/* ---- pruning (git checkouts and local snapshots) ---- */

/* A version folder's name: 40 hex (a commit) or 64 hex (a local content version). */
static int version_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return 0;
    return n == 40 || n == 64;
}

/* One version folder found by bundle_prune_dir. */
struct vdir {
    char name[HASH_SHA256_HEX];
    int64_t mtime_ns;
};

static int newest_first(const void *a, const void *b)
{
    int64_t x = ((const struct vdir *)a)->mtime_ns, y = ((const struct vdir *)b)->mtime_ns;
    return x < y   ? 1
           : x > y ? -1
                   : strcmp(((const struct vdir *)a)->name, ((const struct vdir *)b)->name);
}

/* Removes dir/name unless someone holds it; 1 removed, 0 held, -1 failed. */
static int prune_one(const char *dir, const char *name)
{
    char path[PATH_MAX], gone[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(gone, sizeof(gone), "%s/.prune-%s-%d", dir, name, (int)getpid());
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return 0;
    }
    int rc = rename(path, gone) == 0 ? 1 : -1;
    close(fd);
    if (rc == 1)
        bundle_remove_tree(gone);
    return rc;
}

/* A ".tmp-…-PID" or ".prune-…-PID" folder left by a process that is gone (it crashed
 * half-way): 1 when it may be removed. */
static int stale_work_dir(const char *name)
{
    const char *dash = strrchr(name, '-');
    char *end = NULL;
    if ((strncmp(name, ".tmp-", 5) != 0 && strncmp(name, ".prune-", 7) != 0) || dash == NULL)
        return 0;
    long pid = strtol(dash + 1, &end, 10);
    if (end == dash + 1 || *end != '\0' || pid <= 0 || pid > INT_MAX)
        return 0;
    return pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

size_t bundle_prune_dir(const char *dir, size_t keep, const char *const *spare, size_t n,
                        size_t *held)
{
    DIR *d = opendir(dir);
    struct vdir *v = NULL;
    size_t nv = 0, cap = 0, removed = 0;
    struct dirent *de;
    *held = 0;
    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (stale_work_dir(de->d_name)) {
            char p[PATH_MAX];
            snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
            bundle_remove_tree(p);
            continue;
        }
        if (!version_name(de->d_name) || fstatat(dirfd(d), de->d_name, &st, 0) != 0 ||
            !S_ISDIR(st.st_mode))
            continue;
        if (nv == cap) {
            struct vdir *nvp = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));
            if (nvp == NULL)
                break;
            v = nvp;
        }
        snprintf(v[nv].name, sizeof(v[nv].name), "%s", de->d_name);
        v[nv++].mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    }
    closedir(d);
    if (nv > 1)
        qsort(v, nv, sizeof(*v), newest_first);
    for (size_t i = keep; i < nv; i++) {
        int spared = 0;
        for (size_t j = 0; j < n && !spared; j++)
            spared = spare[j] &&
                     (strcmp(spare[j], v[i].name) == 0 || (strncmp(spare[j], "sha256:", 7) == 0 &&
                                                           strcmp(spare[j] + 7, v[i].name) == 0));
        if (spared)
            continue;
        int r = prune_one(dir, v[i].name);
        if (r == 1)
            removed++;
        else if (r == 0)
            (*held)++;
    }
    free(v);
    return removed;
}
