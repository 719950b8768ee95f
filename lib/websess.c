/*
 * websess: signed browser sessions, CSRF tokens, Cookie and Origin checks
 * (see include/remex/websess.h). HMAC-SHA256 and base64 are OpenSSL's.
 */
#include "remex/websess.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#define EXP_DIGITS_MAX 12
#define NONCE_BYTES    32

/* base64url of 32 bytes without padding: WEBSESS_TOKEN_LEN chars + NUL. */
static void b64url32(const unsigned char in[32], char out[WEBSESS_TOKEN_LEN + 1])
{
    unsigned char tmp[48];
    int n = EVP_EncodeBlock(tmp, in, 32); /* 44 chars, the last '=' */
    for (int i = 0; i < WEBSESS_TOKEN_LEN && i < n; i++)
        out[i] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
    out[WEBSESS_TOKEN_LEN] = '\0';
}

static int hmac(const unsigned char key[32], const void *msg, size_t n, unsigned char out[32])
{
    unsigned int len = 0;
    return HMAC(EVP_sha256(), key, 32, msg, n, out, &len) != NULL && len == 32 ? 0 : -1;
}

remex_err websess_key_derive(const unsigned char *secret, size_t secret_len, const void *label,
                             size_t label_len, unsigned char out[32])
{
    unsigned int len = 0;
    if (!secret || secret_len == 0 || (!label && label_len))
        return REMEX_EINVAL;
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, label, label_len, out, &len) || len != 32)
        return REMEX_ESYS;
    return REMEX_OK;
}

/* The MAC of the first n bytes of a value ("v1.<exp>.<nonce>") as base64url. */
static remex_err value_mac(const unsigned char key[32], const char *v, size_t n,
                           char out[WEBSESS_TOKEN_LEN + 1])
{
    unsigned char mac[32];
    if (hmac(key, v, n, mac) != 0)
        return REMEX_ESYS;
    b64url32(mac, out);
    OPENSSL_cleanse(mac, sizeof(mac));
    return REMEX_OK;
}

remex_err websess_issue(const unsigned char key[32], int64_t exp_s, char *out, size_t cap)
{
    unsigned char raw[NONCE_BYTES];
    char nonce[WEBSESS_TOKEN_LEN + 1], mac[WEBSESS_TOKEN_LEN + 1];
    if (exp_s < 1 || exp_s >= 1000000000000LL || !out || cap < WEBSESS_VALUE_MAX)
        return REMEX_EINVAL;
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return REMEX_ESYS;
    b64url32(raw, nonce);
    OPENSSL_cleanse(raw, sizeof(raw));
    int n = snprintf(out, cap, "v1.%lld.%s", (long long)exp_s, nonce);
    if (n < 0 || (size_t)n + 1 + WEBSESS_TOKEN_LEN >= cap)
        return REMEX_EINVAL;
    if (value_mac(key, out, (size_t)n, mac) != REMEX_OK)
        return REMEX_ESYS;
    snprintf(out + n, cap - (size_t)n, ".%s", mac);
    return REMEX_OK;
}

static int is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static int all_b64url(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_b64url(s[i]))
            return 0;
    return 1;
}

remex_err websess_verify(const unsigned char key[32], const char *value, size_t len, int64_t now_s,
                         struct websess *s)
{
    char mac[WEBSESS_TOKEN_LEN + 1];
    if (!value || len > WEBSESS_VALUE_MAX || len < 3 || memcmp(value, "v1.", 3) != 0)
        return REMEX_EPARSE;
    /* exp digits */
    size_t i = 3, d0 = 3;
    int64_t exp = 0;
    while (i < len && value[i] >= '0' && value[i] <= '9' && i - d0 < EXP_DIGITS_MAX)
        exp = exp * 10 + (value[i++] - '0');
    if (i == d0 || i >= len || value[i] != '.' || value[d0] == '0')
        return REMEX_EPARSE;
    size_t nonce_at = i + 1, mac_at = nonce_at + WEBSESS_TOKEN_LEN + 1;
    if (len != mac_at + WEBSESS_TOKEN_LEN || value[mac_at - 1] != '.' ||
        !all_b64url(value + nonce_at, WEBSESS_TOKEN_LEN) ||
        !all_b64url(value + mac_at, WEBSESS_TOKEN_LEN))
        return REMEX_EPARSE;
    if (value_mac(key, value, mac_at - 1, mac) != REMEX_OK)
        return REMEX_ESYS;
    if (CRYPTO_memcmp(mac, value + mac_at, WEBSESS_TOKEN_LEN) != 0)
        return REMEX_EAUTH;
    if (exp <= now_s)
        return REMEX_ETIMEOUT;
    s->exp_s = exp;
    memcpy(s->nonce, value + nonce_at, WEBSESS_TOKEN_LEN);
    s->nonce[WEBSESS_TOKEN_LEN] = '\0';
    return REMEX_OK;
}

remex_err websess_csrf(const unsigned char key[32], const struct websess *s,
                       char out[WEBSESS_TOKEN_LEN + 1])
{
    char msg[5 + WEBSESS_TOKEN_LEN + 1];
    unsigned char mac[32];
    memcpy(msg, "csrf.", 5);
    memcpy(msg + 5, s->nonce, WEBSESS_TOKEN_LEN);
    if (hmac(key, msg, 5 + WEBSESS_TOKEN_LEN, mac) != 0)
        return REMEX_ESYS;
    b64url32(mac, out);
    OPENSSL_cleanse(mac, sizeof(mac));
    return REMEX_OK;
}

int websess_csrf_ok(const unsigned char key[32], const struct websess *s, const char *presented)
{
    char want[WEBSESS_TOKEN_LEN + 1];
    if (!presented || strnlen(presented, WEBSESS_TOKEN_LEN + 1) != WEBSESS_TOKEN_LEN)
        return 0;
    if (websess_csrf(key, s, want) != REMEX_OK)
        return 0;
    int ok = CRYPTO_memcmp(want, presented, WEBSESS_TOKEN_LEN) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    return ok;
}

static int ows(char c)
{
    return c == ' ' || c == '\t';
}

remex_err websess_cookie_find(const char *header, const char *name, int nth, const char **val,
                              size_t *len)
{
    if (!header || !name || !*name || nth < 0)
        return REMEX_ENOTFOUND;
    size_t hl = strnlen(header, WEBSESS_HEADER_MAX + 1), nl = strlen(name);
    if (hl > WEBSESS_HEADER_MAX)
        return REMEX_ETOOBIG;
    const char *p = header, *end = header + hl;
    int pairs = 0, seen = 0;
    while (p < end) {
        while (p < end && (ows(*p) || *p == ';'))
            p++;
        if (p == end)
            break;
        if (++pairs > WEBSESS_COOKIES_MAX)
            return REMEX_ETOOBIG;
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *pe = semi ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ne = eq ? eq : p;
        while (ne > p && ows(ne[-1]))
            ne--;
        if (eq && (size_t)(ne - p) == nl && memcmp(p, name, nl) == 0 && seen++ == nth) {
            const char *v = eq + 1, *ve = pe;
            while (v < ve && ows(*v))
                v++;
            while (ve > v && ows(ve[-1]))
                ve--;
            if (ve - v >= 2 && *v == '"' && ve[-1] == '"') {
                v++;
                ve--;
            }
            *val = v;
            *len = (size_t)(ve - v);
            return REMEX_OK;
        }
        p = pe;
    }
    return REMEX_ENOTFOUND;
}

int websess_origin_ok(const char *origin, const char *host, int tls)
{
    const char *scheme = tls ? "https://" : "http://";
    size_t sl = strlen(scheme);
    if (!origin || !host || !*host || strncmp(origin, scheme, sl) != 0)
        return 0;
    return strcmp(origin + sl, host) == 0;
}
