/*
 * urlenc: percent-decoding (RFC 3986 section 2.1), the one decoder of the
 * library and its binaries (URIs of connections, request paths and queries).
 */
#ifndef REMEX_URLENC_H
#define REMEX_URLENC_H

#include <stddef.h>

#define URLENC_PLUS_SPACE 0x1u /* '+' decodes to ' ' (form encoding, query strings) */
#define URLENC_STRICT     0x2u /* a '%' not followed by two hex digits is an error (else kept) */

/*
 * Decodes s[0..n) into dst, which has room for n + 1 bytes and may be s itself
 * (the result is never longer). The result is NUL-terminated; its length goes
 * to *outlen when not NULL. Returns NULL on success, else a static reason:
 * "encoded NUL byte" or "NUL byte" (never allowed: the result is a C string),
 * "truncated percent-encoding" or "invalid percent-encoding" (URLENC_STRICT).
 */
const char *urlenc_decode(char *dst, const char *s, size_t n, unsigned flags, size_t *outlen);

#endif
