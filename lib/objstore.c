/*
 * objstore: object stores with checksummed references: the local-folder
 * backend (atomic writes) here, and the dispatch to the remote backends.
 */
#include "remex/objstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/fsutil.h"
#include "remex/hash.h"
#include "remex/objstore_azure.h"
#include "remex/objstore_gcs.h"
#include "remex/objstore_http.h"
#include "remex/objstore_s3.h"

struct objstore {
    char root[OBJSTORE_URI_MAX]; /* local: absolute folder, no trailing '/'; else "s3://b/p/" */
    struct objstore_s3 *s3;      /* owned; NULL unless an S3 store */
    struct objstore_azure *az;   /* owned; NULL unless an Azure Blob store */
    struct objstore_gcs *gcs;    /* owned; NULL unless a GCS store */
};

void objstore_checksum(const void *data, size_t len, char out[72])
{
    memcpy(out, "sha256:", 7);
    if (hash_sha256_hex(data, len, out + 7) != REMEX_OK)
        out[0] = '\0';
}

static remex_err open_s3(const char *url, const struct objstore_opts *opts, struct objstore **out,
                         struct remex_error *e)
{
    struct objstore *s = calloc(1, sizeof(*s));
    remex_err rc;
    if (s == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if ((rc = objstore_s3_open(url, opts, &s->s3, e)) != REMEX_OK) {
        free(s);
        return rc;
    }
    objstore_s3_uri_base(s->s3, s->root, sizeof(s->root));
    *out = s;
    return REMEX_OK;
}

static remex_err open_azure(const char *url, const struct objstore_opts *opts,
                            struct objstore **out, struct remex_error *e)
{
    struct objstore *s = calloc(1, sizeof(*s));
    remex_err rc;
    if (s == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if ((rc = objstore_azure_open(url, opts, &s->az, e)) != REMEX_OK) {
        free(s);
        return rc;
    }
    objstore_azure_uri_base(s->az, s->root, sizeof(s->root));
    *out = s;
    return REMEX_OK;
}

static remex_err open_gcs(const char *url, const struct objstore_opts *opts, struct objstore **out,
                          struct remex_error *e)
{
    struct objstore *s = calloc(1, sizeof(*s));
    remex_err rc;
    if (s == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if ((rc = objstore_gcs_open(url, opts, &s->gcs, e)) != REMEX_OK) {
        free(s);
        return rc;
    }
    objstore_gcs_uri_base(s->gcs, s->root, sizeof(s->root));
    *out = s;
    return REMEX_OK;
}

int objstore_is_remote(const struct objstore *s)
{
    return s->s3 != NULL || s->az != NULL || s->gcs != NULL;
}

remex_err objstore_open(const char *url, struct objstore **out, struct remex_error *e)
{
    return objstore_open_opts(url, NULL, out, e);
}

remex_err objstore_open_opts(const char *url, const struct objstore_opts *opts,
                             struct objstore **out, struct remex_error *e)
{
    const char *path = url;
    struct objstore *s;
    size_t n;

    if (strncmp(url, "s3://", 5) == 0)
        return open_s3(url, opts, out, e);
    if (strncmp(url, "az://", 5) == 0)
        return open_azure(url, opts, out, e);
    if (strncmp(url, "gs://", 5) == 0)
        return open_gcs(url, opts, out, e);
    if (strncmp(url, "file://", 7) == 0)
        path = url + 7;
    else if (strstr(url, "://") != NULL)
        return remex_seterr(e, REMEX_EUNSUPPORTED, "object store '%.*s': backend not available",
                            (int)(strstr(url, "://") - url), url);
    if (path[0] != '/')
        return remex_seterr(e, REMEX_EINVAL, "object store: '%s' is not an absolute path", url);
    n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n + 1 + OBJSTORE_KEY_MAX + 16 >= OBJSTORE_URI_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "object store: path too long");
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    memcpy(s->root, path, n);
    s->root[n] = '\0';
    char tmp[OBJSTORE_URI_MAX];
    snprintf(tmp, sizeof(tmp), "%s/", s->root);
    if (fsutil_mkdir_parents(tmp, 0700) != 0) {
        remex_err rc = remex_errno(e, REMEX_EIO, "object store %s", s->root);
        free(s);
        return rc;
    }
    *out = s;
    return REMEX_OK;
}

void objstore_close(struct objstore *s)
{
    if (s) {
        objstore_s3_close(s->s3);
        objstore_azure_close(s->az);
        objstore_gcs_close(s->gcs);
    }
    free(s);
}

remex_err objstore_check_key(const char *key, struct remex_error *e)
{
    size_t n = strlen(key), seg = 0;
    if (n == 0 || n > OBJSTORE_KEY_MAX)
        return remex_seterr(e, REMEX_EINVAL, "object key: length must be 1-%d", OBJSTORE_KEY_MAX);
    if (key[0] == '/')
        return remex_seterr(e, REMEX_EINVAL, "object key: must not start with '/'");
    for (size_t i = 0; i <= n; i++) {
        char c = key[i];
        if (c == '/' || c == '\0') {
            size_t len = i - seg;
            if (len == 0 || (len == 1 && key[seg] == '.') ||
                (len == 2 && key[seg] == '.' && key[seg + 1] == '.'))
                return remex_seterr(e, REMEX_EINVAL, "object key: empty, '.' or '..' segment");
            seg = i + 1;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._=:+@,-", c) != NULL))
            return remex_seterr(e, REMEX_EINVAL, "object key: character 0x%02x not allowed",
                                (unsigned char)c);
    }
    return REMEX_OK;
}

void objstore_uri(const struct objstore *s, const char *key, char *out, size_t cap)
{
    if (objstore_is_remote(s))
        snprintf(out, cap, "%s%s", s->root, key);
    else
        snprintf(out, cap, "file://%s/%s", s->root, key);
}

static void make_ref(const struct objstore *s, const char *key, uint64_t size, const char *sum,
                     struct objstore_ref *ref)
{
    memset(ref, 0, sizeof(*ref));
    objstore_uri(s, key, ref->uri, sizeof(ref->uri));
    ref->size = size;
    snprintf(ref->checksum, sizeof(ref->checksum), "%s", sum);
}

remex_err objstore_put(struct objstore *s, const char *key, const void *data, size_t len,
                       struct objstore_ref *ref, struct remex_error *e)
{
    char path[OBJSTORE_URI_MAX], tmp[OBJSTORE_URI_MAX + 32], sum[72];
    remex_err rc = objstore_check_key(key, e);
    int fd;
    if (rc != REMEX_OK)
        return rc;
    if (objstore_is_remote(s)) {
        rc = s->s3   ? objstore_s3_put(s->s3, key, data, len, e)
             : s->az ? objstore_azure_put(s->az, key, data, len, e)
                     : objstore_gcs_put(s->gcs, key, data, len, e);
        if (rc == REMEX_OK && ref) {
            objstore_checksum(data, len, sum);
            make_ref(s, key, len, sum, ref);
        }
        return rc;
    }
    snprintf(path, sizeof(path), "%s/%s", s->root, key);
    if (fsutil_mkdir_parents(path, 0700) != 0)
        return remex_errno(e, REMEX_EIO, "object store: %s", key);
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return remex_errno(e, REMEX_EIO, "object store: %s", key);
    if (fsutil_write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        rc = remex_errno(e, REMEX_EIO, "object store: %s: write", key);
        close(fd);
        unlink(tmp);
        return rc;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        rc = remex_errno(e, REMEX_EIO, "object store: %s", key);
        unlink(tmp);
        return rc;
    }
    if (ref) {
        objstore_checksum(data, len, sum);
        make_ref(s, key, len, sum, ref);
    }
    return REMEX_OK;
}

/* Appends the file to out; on any error out is left as it was. */
static remex_err read_path(const char *path, const char *key, struct buf *out,
                           struct remex_error *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    char chunk[65536];
    size_t start = out->len;
    remex_err rc = REMEX_OK;
    ssize_t r;
    if (fd < 0)
        return errno == ENOENT
                   ? remex_seterr(e, REMEX_ENOTFOUND, "object store: %s: not found", key)
                   : remex_errno(e, REMEX_EIO, "object store: %s", key);
    while (rc == REMEX_OK && (r = read(fd, chunk, sizeof(chunk))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = remex_errno(e, REMEX_EIO, "object store: %s", key);
        else if ((rc = buf_append(out, chunk, (size_t)r)) == REMEX_ETOOBIG)
            rc = remex_seterr(e, rc, "object store: %s: larger than %zu bytes", key, out->max);
        else if (rc != REMEX_OK)
            rc = remex_seterr(e, rc, "object store: %s: out of memory", key);
    }
    close(fd);
    if (rc != REMEX_OK) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

remex_err objstore_get(struct objstore *s, const char *key, struct buf *out, struct remex_error *e)
{
    char path[OBJSTORE_URI_MAX];
    remex_err rc = objstore_check_key(key, e);
    if (rc != REMEX_OK)
        return rc;
    if (s->s3)
        return objstore_s3_get(s->s3, key, out, e);
    if (s->az)
        return objstore_azure_get(s->az, key, out, e);
    if (s->gcs)
        return objstore_gcs_get(s->gcs, key, out, e);
    snprintf(path, sizeof(path), "%s/%s", s->root, key);
    return read_path(path, key, out, e);
}

remex_err objstore_get_uri(struct objstore *s, const char *uri, const char *checksum,
                           struct buf *out, struct remex_error *e)
{
    size_t rl = strlen(s->root);
    const char *key;
    size_t start = out->len;
    char sum[72];
    remex_err rc;
    if (objstore_is_remote(s)) {
        if (strncmp(uri, s->root, rl) != 0)
            return remex_seterr(e, REMEX_EPERM, "object reference outside this store");
        key = uri + rl;
    } else {
        if (strncmp(uri, "file://", 7) != 0 || strncmp(uri + 7, s->root, rl) != 0 ||
            uri[7 + rl] != '/')
            return remex_seterr(e, REMEX_EPERM, "object reference outside this store");
        key = uri + 7 + rl + 1;
    }
    if ((rc = objstore_get(s, key, out, e)) != REMEX_OK)
        return rc;
    if (checksum != NULL) {
        objstore_checksum(out->data ? out->data + start : "", out->len - start, sum);
        if (strcmp(sum, checksum) != 0) {
            out->len = start;
            if (out->data)
                out->data[start] = '\0';
            return remex_seterr(e, REMEX_EPROTO, "object store: %s: checksum mismatch", key);
        }
    }
    return REMEX_OK;
}

remex_err objstore_stat(struct objstore *s, const char *key, struct objstore_ref *ref,
                        struct remex_error *e)
{
    /* read through once, in bounded memory, to measure and checksum it */
    return objstore_get_file(s, key, NULL, NULL, ref, e);
}

remex_err objstore_delete(struct objstore *s, const char *key, struct remex_error *e)
{
    char path[OBJSTORE_URI_MAX];
    remex_err rc = objstore_check_key(key, e);
    if (rc != REMEX_OK)
        return rc;
    if (s->s3)
        return objstore_s3_delete(s->s3, key, e);
    if (s->az)
        return objstore_azure_delete(s->az, key, e);
    if (s->gcs)
        return objstore_gcs_delete(s->gcs, key, e);
    snprintf(path, sizeof(path), "%s/%s", s->root, key);
    if (unlink(path) != 0)
        return errno == ENOENT
                   ? remex_seterr(e, REMEX_ENOTFOUND, "object store: %s: not found", key)
                   : remex_errno(e, REMEX_EIO, "object store: %s", key);
    return REMEX_OK;
}

/* ---- streaming ---- */

/* Copies fd[0, size) to the sink (local stores). */
static remex_err copy_to_sink(int fd, uint64_t size, struct objstore_sink *k, struct remex_error *e)
{
    char *chunk = malloc(1u << 18);
    uint64_t done = 0;
    remex_err rc = chunk ? REMEX_OK : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    while (rc == REMEX_OK && done < size) {
        size_t want = size - done < (1u << 18) ? (size_t)(size - done) : (1u << 18);
        ssize_t r = pread(fd, chunk, want, (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = r < 0 ? remex_errno(e, REMEX_EIO, "read")
                       : remex_seterr(e, REMEX_EIO, "the file shrank while being read");
        else if (k->st.write(chunk, (size_t)r, k->st.ud) != 0)
            rc = remex_errno(e, REMEX_EIO, "write %s", k->tmp);
        else
            done += (uint64_t)r;
    }
    free(chunk);
    return rc;
}

/* Opens a regular file for reading and gives its size. */
static remex_err open_regular(const char *path, int *fd, uint64_t *size, struct remex_error *e)
{
    struct stat st;
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (*fd < 0)
        return errno == ENOENT ? remex_seterr(e, REMEX_ENOTFOUND, "%s: not found", path)
                               : remex_errno(e, REMEX_EIO, "%s", path);
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(*fd);
        *fd = -1;
        return remex_seterr(e, REMEX_EINVAL, "%s: not a regular file", path);
    }
    *size = (uint64_t)st.st_size;
    return REMEX_OK;
}

remex_err objstore_put_file(struct objstore *s, const char *key, const char *path,
                            struct objstore_ref *ref, struct remex_error *e)
{
    char dst[OBJSTORE_URI_MAX], sum[72];
    uint64_t size = 0;
    int fd = -1;
    remex_err rc = objstore_check_key(key, e);
    if (rc == REMEX_OK)
        rc = open_regular(path, &fd, &size, e);
    if (rc != REMEX_OK)
        return rc;
    if (s->s3) {
        rc = objstore_s3_put_file(s->s3, key, fd, size, sum, e);
    } else if (s->az) {
        rc = objstore_azure_put_file(s->az, key, fd, size, sum, e);
    } else if (s->gcs) {
        rc = objstore_gcs_put_file(s->gcs, key, fd, size, sum, e);
    } else {
        struct objstore_sink k;
        snprintf(dst, sizeof(dst), "%s/%s", s->root, key);
        if (fsutil_mkdir_parents(dst, 0700) != 0)
            rc = remex_errno(e, REMEX_EIO, "object store: %s", key);
        else if ((rc = objstore_sink_open(&k, dst, e)) == REMEX_OK)
            rc = objstore_sink_finish(&k, copy_to_sink(fd, size, &k, e), NULL, sum, NULL, e);
        if (rc != REMEX_OK)
            remex_errprefix(e, "object store: %s", key);
    }
    close(fd);
    if (rc == REMEX_OK && ref)
        make_ref(s, key, size, sum, ref);
    return rc;
}

remex_err objstore_get_file(struct objstore *s, const char *key, const char *path,
                            const char *checksum, struct objstore_ref *ref, struct remex_error *e)
{
    char src[OBJSTORE_URI_MAX], sum[72];
    struct objstore_sink k;
    uint64_t size = 0;
    int fd = -1;
    remex_err rc = objstore_check_key(key, e);
    if (rc != REMEX_OK || (rc = objstore_sink_open(&k, path, e)) != REMEX_OK)
        return rc;
    if (s->s3) {
        rc = objstore_s3_get_stream(s->s3, key, &k.st, e);
    } else if (s->az) {
        rc = objstore_azure_get_stream(s->az, key, &k.st, e);
    } else if (s->gcs) {
        rc = objstore_gcs_get_stream(s->gcs, key, &k.st, e);
    } else {
        snprintf(src, sizeof(src), "%s/%s", s->root, key);
        if ((rc = open_regular(src, &fd, &size, e)) == REMEX_OK) {
            rc = copy_to_sink(fd, size, &k, e);
            close(fd);
        } else if (rc == REMEX_ENOTFOUND) {
            remex_seterr(e, rc, "object store: %s: not found", key);
        }
    }
    rc = objstore_sink_finish(&k, rc, checksum, sum, &size, e);
    if (rc == REMEX_EPROTO)
        remex_errprefix(e, "object store: %s", key);
    if (rc != REMEX_OK)
        return rc;
    if (ref)
        make_ref(s, key, size, sum, ref);
    return REMEX_OK;
}
/* The file store's objstore_find: key's folder, one level. */
static remex_err find_local(struct objstore *s, const char *key, int exact, char *found, size_t cap,
                            struct remex_error *e)
{
    char path[OBJSTORE_URI_MAX];
    struct stat st;
    const char *slash = strrchr(key, '/');
    const char *base = slash ? slash + 1 : key;
    size_t dl = slash ? (size_t)(slash - key) : 0, bl = strlen(base);
    if (exact || bl == 0) {
        snprintf(path, sizeof(path), "%s/%s", s->root, key);
        if (exact && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            snprintf(found, cap, "%s", key);
            return REMEX_OK;
        }
        if (exact)
            return remex_seterr(e, REMEX_ENOTFOUND, "object store: %s: not found", key);
    }
    snprintf(path, sizeof(path), "%s/%.*s", s->root, (int)dl, key);
    DIR *d = opendir(path);
    if (!d)
        return remex_seterr(e, REMEX_ENOTFOUND, "object store: %s: no object", key);
    const struct dirent *de;
    char best[256] = "";
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strncmp(de->d_name, base, bl) != 0 ||
            strstr(de->d_name, ".tmp.") || (best[0] && strcmp(de->d_name, best) >= 0))
            continue;
        char f[OBJSTORE_URI_MAX + 256];
        snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
        if (stat(f, &st) == 0 && S_ISREG(st.st_mode))
            snprintf(best, sizeof(best), "%s", de->d_name);
    }
    closedir(d);
    if (!best[0])
        return remex_seterr(e, REMEX_ENOTFOUND, "object store: %s: no object", key);
    snprintf(found, cap, "%.*s%s%s", (int)dl, key, slash ? "/" : "", best);
    return REMEX_OK;
}

remex_err objstore_find(struct objstore *s, const char *key, int exact, char *found, size_t cap,
                        struct remex_error *e)
{
    char k[2 * OBJSTORE_KEY_MAX + 8];
    remex_err rc;
    if (strlen(key) > OBJSTORE_KEY_MAX)
        return remex_seterr(e, REMEX_EINVAL, "object store: key over %d bytes", OBJSTORE_KEY_MAX);
    if (exact && (rc = objstore_check_key(key, e)) != REMEX_OK)
        return rc;
    if (!exact && key[0]) { /* a prefix: a valid key once its trailing '/' is dropped */
        snprintf(k, sizeof(k), "%s", key);
        size_t n = strlen(k);
        if (k[n - 1] == '/')
            k[n - 1] = '\0';
        if ((rc = objstore_check_key(k, e)) != REMEX_OK)
            return rc;
    }
    if (!s->s3 && !s->az && !s->gcs)
        return find_local(s, key, exact, found, cap, e);
    rc = s->s3   ? objstore_s3_first(s->s3, key, k, sizeof(k), e)
         : s->az ? objstore_azure_first(s->az, key, k, sizeof(k), e)
                 : objstore_gcs_first(s->gcs, key, k, sizeof(k), e);
    if (rc != REMEX_OK && rc != REMEX_ENOTFOUND)
        remex_errprefix(e, "object store: looking for %s", key);
    if (rc == REMEX_OK && exact && strcmp(k, key) != 0)
        return remex_seterr(e, REMEX_ENOTFOUND, "object store: %s: not found", key);
    if (rc == REMEX_OK)
        snprintf(found, cap, "%s", k);
    return rc;
}
