/* urlenc: percent-decoding (include/remex/urlenc.h). */
#include <stddef.h>

#include "remex/urlenc.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

const char *urlenc_decode(char *dst, const char *s, size_t n, unsigned flags, size_t *outlen)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = -1, lo = -1;
        if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
            (lo = hexval(s[i + 2])) >= 0) {
            if (hi == 0 && lo == 0)
                return "encoded NUL byte";
            dst[k++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (s[i] == '%' && (flags & URLENC_STRICT)) {
            return i + 2 >= n ? "truncated percent-encoding" : "invalid percent-encoding";
        } else if (s[i] == '+' && (flags & URLENC_PLUS_SPACE)) {
            dst[k++] = ' ';
        } else if (s[i] == '\0') {
            return "NUL byte";
        } else {
            dst[k++] = s[i];
        }
    }
    dst[k] = '\0';
    if (outlen)
        *outlen = k;
    return NULL;
}
