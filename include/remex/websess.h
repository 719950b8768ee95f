/*
 * websess: signed browser sessions for the plane's web UI.
 *
 * A session is a cookie value "v1.<exp>.<nonce>.<mac>": exp the expiry in
 * seconds since the epoch (decimal, at most 12 digits), nonce 32 random bytes
 * and mac the HMAC-SHA256 (OpenSSL) of "v1.<exp>.<nonce>" under a 32-byte key,
 * both base64url without padding (43 characters). Nothing is stored on the
 * server: whoever holds the key can check a value. The CSRF token of a
 * session is base64url(HMAC-SHA256(key, "csrf." nonce)): it cannot be derived
 * without the key, so a page of another site that can send the cookie cannot
 * produce it.
 *
 * Every comparison of a presented value with a computed one is constant-time
 * (CRYPTO_memcmp). Parsers take untrusted input and cap it: a Cookie header
 * over WEBSESS_HEADER_MAX bytes or with more than WEBSESS_COOKIES_MAX pairs is
 * refused, a session value over WEBSESS_VALUE_MAX bytes is refused.
 * Nothing here logs, allocates or keeps state; all functions are thread-safe.
 */
#ifndef REMEX_WEBSESS_H
#define REMEX_WEBSESS_H

#include <stddef.h>
#include <stdint.h>

#include "remex/err.h"

#define WEBSESS_HEADER_MAX  8192 /* Cookie header bytes */
#define WEBSESS_COOKIES_MAX 64   /* name=value pairs in one Cookie header */
#define WEBSESS_VALUE_MAX   128  /* a session value: "v1." 12 "." 43 "." 43 fits */
#define WEBSESS_TOKEN_LEN   43   /* nonce, mac and CSRF token in base64url */

/* A verified session. */
struct websess {
    int64_t exp_s;                     /* expiry, seconds since the epoch */
    char nonce[WEBSESS_TOKEN_LEN + 1]; /* identifies the session (e.g. for logout) */
};

/* out = HMAC-SHA256(secret, label): a key of its own for sessions, derived
 * from a longer-lived secret and a context (label bytes, any content). */
remex_err websess_key_derive(const unsigned char *secret, size_t secret_len, const void *label,
                             size_t label_len, unsigned char out[32]);

/* Writes a new session value expiring at exp_s into out (cap bytes, at least
 * WEBSESS_VALUE_MAX); the nonce comes from RAND_bytes. REMEX_EINVAL for an
 * exp_s outside [1, 10^12), REMEX_ESYS when the random generator or HMAC fails. */
remex_err websess_issue(const unsigned char key[32], int64_t exp_s, char *out, size_t cap);

/* Checks a presented session value (len bytes, need not be NUL-terminated):
 * format, MAC (constant time), expiry against now_s. REMEX_OK and *s filled,
 * REMEX_EPARSE when malformed or over WEBSESS_VALUE_MAX, REMEX_EAUTH when the
 * MAC does not match, REMEX_ETIMEOUT when expired (exp_s <= now_s). */
remex_err websess_verify(const unsigned char key[32], const char *value, size_t len, int64_t now_s,
                         struct websess *s);

/* The CSRF token of session s into out (WEBSESS_TOKEN_LEN + 1 bytes). */
remex_err websess_csrf(const unsigned char key[32], const struct websess *s,
                       char out[WEBSESS_TOKEN_LEN + 1]);

/* 1 when presented (may be NULL) is the CSRF token of s, compared in constant
 * time; 0 otherwise. */
int websess_csrf_ok(const unsigned char key[32], const struct websess *s, const char *presented);

/* Finds the nth (from 0) cookie called name in a Cookie request header
 * ("a=1; b=2"). A browser may send several of one name (set for other
 * paths, or by another server on the same host: cookies ignore the port), so
 * the caller tries each in turn. REMEX_OK with *val and *len pointing into
 * header (borrowed, not NUL-terminated; surrounding double quotes removed);
 * REMEX_ENOTFOUND when there are not that many; REMEX_ETOOBIG over
 * WEBSESS_HEADER_MAX bytes or WEBSESS_COOKIES_MAX pairs. Pairs without '='
 * (nameless cookies) and with an empty name are skipped. */
remex_err websess_cookie_find(const char *header, const char *name, int nth, const char **val,
                              size_t *len);

/* 1 when origin (the Origin request header) names this server: exactly
 * "http://" (or "https://" when tls) followed by host (the Host request
 * header). 0 when either is NULL, empty, "null" or different. */
int websess_origin_ok(const char *origin, const char *host, int tls);

#endif
