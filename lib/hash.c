/* hash: SHA-256 digests as hex. */
#include "remex/hash.h"

#include <openssl/evp.h>

void hash_hex(const unsigned char *md, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * n] = '\0';
}

remex_err hash_sha256_hex(const void *data, size_t len, char out[HASH_SHA256_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const unsigned char empty;

    out[0] = '\0';
    if (EVP_Digest(data != NULL ? data : &empty, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != HASH_SHA256_LEN)
        return REMEX_ENOMEM;
    hash_hex(md, mdlen, out);
    return REMEX_OK;
}
