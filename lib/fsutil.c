/* fsutil: write_all and mkdir -p. */
#include "remex/fsutil.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fsutil_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Creates the parents of path[] (writable copy), last parent first. */
static int parents(char *path, mode_t mode)
{
    char *slash = strrchr(path, '/');
    int rc;
    if (slash == NULL || slash == path)
        return 0;
    *slash = '\0';
    rc = mkdir(path, mode);
    if (rc != 0 && errno == ENOENT && parents(path, mode) == 0)
        rc = mkdir(path, mode);
    if (rc != 0 && errno == EEXIST)
        rc = 0;
    *slash = '/';
    return rc;
}

int fsutil_mkdir_parents(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, path, n + 1);
    return parents(tmp, mode);
}

int fsutil_mkdir_p(const char *path, mode_t mode)
{
    if (fsutil_mkdir_parents(path, mode) != 0)
        return -1;
    return mkdir(path, mode) != 0 && errno != EEXIST ? -1 : 0;
}
