/* libFuzzer target: the UI's Cookie header parser and session value check (websess). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remex/websess.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char key[32] = "fuzz-key-fuzz-key-fuzz-key-fuzz";
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    const char *v = NULL;
    size_t n = 0;
    for (int k = 0; websess_cookie_find(s, "remex_session", k, &v, &n) == REMEX_OK; k++) {
        /* The value lies inside the header. */
        if (v < s || v + n > s + strlen(s))
            abort();
        struct websess w;
        if (websess_verify(key, v, n, 0, &w) == REMEX_OK && strlen(w.nonce) != WEBSESS_TOKEN_LEN)
            abort();
    }
    struct websess w;
    (void)websess_verify(key, (const char *)data, size, 0, &w);
    (void)websess_origin_ok(s, "127.0.0.1:8080", 0);
    free(s);
    return 0;
}
