/* err: stable error codes and the message carrier. */
#include "remex/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    const char *desc;
} err_table[REMEX_ERR__COUNT] = {
    [REMEX_OK] = {"REMEX_OK", "success"},
    [REMEX_ENOMEM] = {"REMEX_ENOMEM", "out of memory"},
    [REMEX_EINVAL] = {"REMEX_EINVAL", "invalid argument"},
    [REMEX_ETOOBIG] = {"REMEX_ETOOBIG", "size limit exceeded"},
    [REMEX_EIO] = {"REMEX_EIO", "input/output error"},
    [REMEX_EPARSE] = {"REMEX_EPARSE", "malformed input"},
    [REMEX_ETIMEOUT] = {"REMEX_ETIMEOUT", "timed out"},
    [REMEX_ECONNECT] = {"REMEX_ECONNECT", "connection failed"},
    [REMEX_ETLS] = {"REMEX_ETLS", "TLS error"},
    [REMEX_EHTTP] = {"REMEX_EHTTP", "HTTP error"},
    [REMEX_EAUTH] = {"REMEX_EAUTH", "authentication failed"},
    [REMEX_EFORBIDDEN] = {"REMEX_EFORBIDDEN", "forbidden"},
    [REMEX_ENOTFOUND] = {"REMEX_ENOTFOUND", "not found"},
    [REMEX_ECONFLICT] = {"REMEX_ECONFLICT", "conflict"},
    [REMEX_EPERM] = {"REMEX_EPERM", "permission denied"},
    [REMEX_ECLOSED] = {"REMEX_ECLOSED", "connection closed by peer"},
    [REMEX_EAGAIN] = {"REMEX_EAGAIN", "try again"},
    [REMEX_ESYS] = {"REMEX_ESYS", "system error"},
    [REMEX_EPROTO] = {"REMEX_EPROTO", "protocol error"},
    [REMEX_ECONFIG] = {"REMEX_ECONFIG", "invalid configuration"},
    [REMEX_EEXIST] = {"REMEX_EEXIST", "already exists"},
    [REMEX_EUNSUPPORTED] = {"REMEX_EUNSUPPORTED", "not supported"},
};

const char *remex_strerror(remex_err code)
{
    if ((int)code < 0 || code >= REMEX_ERR__COUNT || err_table[code].desc == NULL)
        return "unknown error";
    return err_table[code].desc;
}

const char *remex_errname(remex_err code)
{
    if ((int)code < 0 || code >= REMEX_ERR__COUNT || err_table[code].name == NULL)
        return "REMEX_E?";
    return err_table[code].name;
}

remex_err remex_seterr(struct remex_error *e, remex_err code, const char *fmt, ...)
{
    int saved = errno;
    if (e != NULL) {
        va_list ap;
        e->code = code;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
        va_end(ap);
    }
    errno = saved;
    return code;
}

remex_err remex_errno(struct remex_error *e, remex_err code, const char *fmt, ...)
{
    int saved = errno;
    if (e != NULL) {
        char sysbuf[128];
        const char *sys = strerror_r(saved, sysbuf, sizeof(sysbuf)); /* GNU: never NULL */
        va_list ap;
        e->code = code;
        va_start(ap, fmt);
        int n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
        va_end(ap);
        size_t used = n < 0 ? 0 : (size_t)n < sizeof(e->msg) ? (size_t)n : sizeof(e->msg) - 1;
        if (n < 0)
            e->msg[0] = '\0';
        snprintf(e->msg + used, sizeof(e->msg) - used, ": %s", sys);
    }
    errno = saved;
    return code;
}

void remex_errprefix(struct remex_error *e, const char *fmt, ...)
{
    char prefix[REMEX_ERRMSG_MAX], old[REMEX_ERRMSG_MAX];
    va_list ap;
    int saved = errno;

    if (e == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof(old));
    old[sizeof(old) - 1] = '\0';
    snprintf(e->msg, sizeof(e->msg), "%s: %s", prefix, old);
    errno = saved;
}

void remex_errclear(struct remex_error *e)
{
    if (e == NULL)
        return;
    e->code = REMEX_OK;
    e->msg[0] = '\0';
}
