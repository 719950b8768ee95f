/*
 * fsutil: the small file-system steps several modules share.
 * Both functions return 0 or -1 with errno set, and never log.
 */
#ifndef REMEX_FSUTIL_H
#define REMEX_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Writes all n bytes, retrying short writes and EINTR. */
int fsutil_write_all(int fd, const void *p, size_t n);

/*
 * Creates the missing parent folders of path (not path itself) with mode.
 * The common case, where only the last parent is new, costs one mkdir;
 * missing ancestors are created on the way back. Existing folders are fine.
 * Paths of PATH_MAX bytes or more fail with ENAMETOOLONG.
 */
int fsutil_mkdir_parents(const char *path, mode_t mode);

/* fsutil_mkdir_parents, then path itself. */
int fsutil_mkdir_p(const char *path, mode_t mode);

#endif
