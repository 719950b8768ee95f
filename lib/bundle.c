/* bundle: local folder bundles and their content versions. */
#include "remex/bundle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/hash.h"

struct bundle {
    char *name;
    char *path;
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
        struct stat st;
        if (specs[i].name == NULL || !valid_name(specs[i].name)) {
            rc = remex_seterr(e, REMEX_EINVAL, "bundles[%zu].name: must match [A-Za-z0-9_.-]{1,64}",
                              i);
            break;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(specs[j].name, specs[i].name) == 0)
                rc = remex_seterr(e, REMEX_EINVAL, "bundles[%zu].name: duplicate bundle '%s'", i,
                                  specs[i].name);
        if (rc != REMEX_OK)
            break;
        if (specs[i].path == NULL) {
            rc = remex_seterr(e, REMEX_EINVAL, "bundles[%zu].path: missing", i);
            break;
        }
        if (stat(specs[i].path, &st) != 0) {
            rc = remex_errno(e, REMEX_EINVAL, "bundles[%zu].path: %s", i, specs[i].path);
            break;
        }
        if (!S_ISDIR(st.st_mode)) {
            rc = remex_seterr(e, REMEX_EINVAL, "bundles[%zu].path: %s: not a folder", i,
                              specs[i].path);
            break;
        }
        b->items[i].name = strdup(specs[i].name);
        b->items[i].path = realpath(specs[i].path, NULL);
        b->n = i + 1;
        if (b->items[i].name == NULL || b->items[i].path == NULL)
            rc = remex_errno(e, REMEX_ENOMEM, "bundles[%zu]", i);
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
    }
    free(b->items);
    free(b);
}

const char *bundle_name(const struct bundle_set *b, size_t i)
{
    return i < b->n ? b->items[i].name : NULL;
}

static const struct bundle *find(const struct bundle_set *b, const char *name)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->items[i].name, name) == 0)
            return &b->items[i];
    return NULL;
}

remex_err bundle_path(const struct bundle_set *b, const char *name, const char *version,
                      const char **path, struct remex_error *e)
{
    const struct bundle *x = find(b, name);
    (void)version;
    if (x == NULL)
        return remex_seterr(e, REMEX_ENOTFOUND, "bundle '%s' is not configured on this agent",
                            name);
    *path = x->path;
    return REMEX_OK;
}

/* Walk state for bundle_version. */
struct walk {
    char **files; /* relative paths, owned */
    size_t n, cap;
    uint64_t bytes;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Recursion is bounded by BUNDLE_MAX_DEPTH (each level holds a DIR and ~8 KiB of stack). */
static remex_err walk_dir(const char *root, const char *rel, int depth, struct walk *w,
                          struct remex_error *e)
{
    char path[PATH_MAX];
    if (depth > BUNDLE_MAX_DEPTH)
        return remex_seterr(e, REMEX_ETOOBIG, "%s: folders nested deeper than %d levels", root,
                            BUNDLE_MAX_DEPTH);
    snprintf(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel);
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
        if (S_ISDIR(st.st_mode)) {
            rc = walk_dir(root, sub, depth + 1, w, e);
        } else if (S_ISREG(st.st_mode)) {
            if (w->n >= BUNDLE_MAX_FILES || (w->bytes += (uint64_t)st.st_size) > BUNDLE_MAX_BYTES) {
                rc = remex_seterr(e, REMEX_ETOOBIG, "%s: bundle larger than %d files or 1 GiB",
                                  root, BUNDLE_MAX_FILES);
                break;
            }
            if (w->n == w->cap) {
                size_t nc = w->cap ? w->cap * 2 : 64;
                char **f = realloc(w->files, nc * sizeof(*f));
                if (f == NULL) {
                    rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
                    break;
                }
                w->files = f;
                w->cap = nc;
            }
            if ((w->files[w->n] = strdup(sub)) == NULL)
                rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
            else
                w->n++;
        }
    }
    closedir(d);
    return rc;
}

/* Feeds "relpath\0size\0<content>" of one file into the digest. */
static remex_err hash_file(EVP_MD_CTX *ctx, const char *root, const char *rel,
                           struct remex_error *e)
{
    char path[PATH_MAX], hdr[40];
    unsigned char chunk[65536];
    ssize_t r;
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return remex_errno(e, REMEX_EIO, "%s", path);
    }
    int n = snprintf(hdr, sizeof(hdr), "%lld", (long long)st.st_size);
    EVP_DigestUpdate(ctx, rel, strlen(rel) + 1);
    EVP_DigestUpdate(ctx, hdr, (size_t)n + 1);
    while ((r = read(fd, chunk, sizeof(chunk))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return remex_errno(e, REMEX_EIO, "%s", path);
        }
        EVP_DigestUpdate(ctx, chunk, (size_t)r);
    }
    close(fd);
    return REMEX_OK;
}

remex_err bundle_version(const struct bundle_set *b, const char *name, char out[72],
                         struct remex_error *e)
{
    const struct bundle *x = find(b, name);
    struct walk w = {0};
    remex_err rc;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (x == NULL)
        return remex_seterr(e, REMEX_ENOTFOUND, "bundle '%s' is not configured on this agent",
                            name);
    rc = walk_dir(x->path, "", 0, &w, e);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (rc == REMEX_OK && ctx == NULL)
        rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if (rc == REMEX_OK) {
        if (w.n > 1)
            qsort(w.files, w.n, sizeof(*w.files), cmp_str);
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        for (size_t i = 0; i < w.n && rc == REMEX_OK; i++)
            rc = hash_file(ctx, x->path, w.files[i], e);
        EVP_DigestFinal_ex(ctx, md, &mdlen);
    }
    if (rc == REMEX_OK) {
        memcpy(out, "sha256:", 7);
        hash_hex(md, mdlen < HASH_SHA256_LEN ? mdlen : HASH_SHA256_LEN, out + 7);
    }
    EVP_MD_CTX_free(ctx);
    for (size_t i = 0; i < w.n; i++)
        free(w.files[i]);
    free(w.files);
    return rc;
}
