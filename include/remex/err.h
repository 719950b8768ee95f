/*
 * err: the stable error enum of libremex.
 *
 * Values are part of the ABI: never renumber, only append before
 * REMEX_ERR__COUNT. Functions return a remex_err and, where the caller passes
 * a struct remex_error, a human-readable message naming the file, line and
 * column or the field at fault.
 */
#ifndef REMEX_ERR_H
#define REMEX_ERR_H

#include <stddef.h>

typedef enum remex_err {
    REMEX_OK = 0,
    REMEX_ENOMEM = 1,        /* allocation failed */
    REMEX_EINVAL = 2,        /* invalid argument or value */
    REMEX_ETOOBIG = 3,       /* a size cap was reached */
    REMEX_EIO = 4,           /* read/write failure on a file or socket */
    REMEX_EPARSE = 5,        /* malformed input (YAML, JSON, frame, ...) */
    REMEX_ETIMEOUT = 6,      /* deadline passed */
    REMEX_ECONNECT = 7,      /* could not connect / connection lost */
    REMEX_ETLS = 8,          /* TLS handshake or verification failure */
    REMEX_EHTTP = 9,         /* HTTP error status from a peer */
    REMEX_EAUTH = 10,        /* authentication failed (401) */
    REMEX_EFORBIDDEN = 11,   /* authorised identity lacks the right (403) */
    REMEX_ENOTFOUND = 12,    /* no such object */
    REMEX_ECONFLICT = 13,    /* state conflict (409) */
    REMEX_EPERM = 14,        /* file permission or policy refusal */
    REMEX_ECLOSED = 15,      /* peer closed the connection */
    REMEX_EAGAIN = 16,       /* would block, try again */
    REMEX_ESYS = 17,         /* system call failed, see errno in message */
    REMEX_EPROTO = 18,       /* protocol violation by the peer */
    REMEX_ECONFIG = 19,      /* configuration invalid */
    REMEX_EEXIST = 20,       /* object already exists */
    REMEX_EUNSUPPORTED = 21, /* feature not available on this system */
    REMEX_ERR__COUNT
} remex_err;

/* Maximum length of an error message, NUL included. */
#define REMEX_ERRMSG_MAX 512

/* Error carrier filled by library calls; callers own it (usually on the stack). */
struct remex_error {
    remex_err code;
    char msg[REMEX_ERRMSG_MAX];
};

/* Static, never NULL: a short description of the code ("unknown error" if out of range). */
const char *remex_strerror(remex_err code);

/* Stable symbolic name of the code ("REMEX_EPARSE"), never NULL. */
const char *remex_errname(remex_err code);

/*
 * Records code and a formatted message in e (if e is not NULL) and returns code,
 * so that `return remex_seterr(e, REMEX_EPARSE, "x: %s", why);` reads naturally.
 * Messages longer than REMEX_ERRMSG_MAX are truncated. errno is preserved.
 */
remex_err remex_seterr(struct remex_error *e, remex_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * remex_seterr for a failed system call: the formatted message is followed by
 * ": " and the description of the errno value at entry ("open x: No such file
 * or directory"), truncated as a whole to REMEX_ERRMSG_MAX. Thread-safe
 * (strerror_r); errno is preserved.
 */
remex_err remex_errno(struct remex_error *e, remex_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in e with "prefix: " (for adding context upward). */
void remex_errprefix(struct remex_error *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clears e to REMEX_OK and an empty message. */
void remex_errclear(struct remex_error *e);

#endif
