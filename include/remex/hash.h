/*
 * hash: SHA-256 digests as lower-case hex (OpenSSL EVP).
 *
 * Outputs are caller buffers of the stated size; nothing is allocated past
 * the call. Thread-safe. On failure (OpenSSL out of memory) out is "" and
 * REMEX_ENOMEM is returned.
 */
#ifndef REMEX_HASH_H
#define REMEX_HASH_H

#include <stddef.h>

#include "remex/err.h"

#define HASH_SHA256_LEN 32 /* raw digest bytes */
#define HASH_SHA256_HEX 65 /* 64 hex digits + NUL */

/* SHA-256 of len bytes at data (borrowed; may be NULL when len is 0) as 64 hex digits. */
remex_err hash_sha256_hex(const void *data, size_t len, char out[HASH_SHA256_HEX]);

/*
 * Lower-case hex of n bytes at md into out, which holds at least 2 * n + 1
 * bytes; NUL-terminated. For digests computed incrementally with EVP_Digest*.
 */
void hash_hex(const unsigned char *md, size_t n, char *out);

#endif
