/* supervise: readiness and drain frames between a role and its supervisor. */
#include "remex/supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remex/ipc.h"
#include "remex/version.h"

int supervise_fd(struct remex_error *e)
{
    const char *v = getenv(SUPERVISE_ENV);
    char *end;
    long fd;
    int type = 0, domain = 0;
    socklen_t len = sizeof(int);

    if (v == NULL)
        return -1;
    errno = 0;
    fd = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || end == v || fd < 3 || fd > INT_MAX) {
        remex_seterr(e, REMEX_EINVAL, "%s: '%s' is not a descriptor number >= 3", SUPERVISE_ENV, v);
        unsetenv(SUPERVISE_ENV);
        return -1;
    }
    unsetenv(SUPERVISE_ENV);
    if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
        getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || type != SOCK_STREAM ||
        domain != AF_UNIX) {
        remex_seterr(e, REMEX_EINVAL, "%s: descriptor %ld is not a Unix stream socket",
                     SUPERVISE_ENV, fd);
        return -1;
    }
    if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) != 0) {
        remex_seterr(e, REMEX_EINVAL, "%s: descriptor %ld: %s", SUPERVISE_ENV, fd, strerror(errno));
        return -1;
    }
    return (int)fd;
}

remex_err supervise_notify(int fd, const char *role, const char *type, const json_t *extra,
                           struct remex_error *e)
{
    json_t *msg = json_pack("{s:s,s:s,s:I,s:s}", "type", type, "role", role, "pid",
                            (json_int_t)getpid(), "version", REMEX_VERSION);
    remex_err rc;
    if (msg == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if (extra != NULL && json_is_object(extra))
        json_object_update_missing(msg, (json_t *)extra);
    rc = ipc_send(fd, msg, e);
    json_decref(msg);
    return rc;
}
