/* libFuzzer target: connection URIs and JSON connection objects (secrets module). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remex/json.h"
#include "remex/secrets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct secrets_conn c;
    struct remex_error e;
    struct buf b = BUF_INIT(1 << 16);
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (secrets_conn_parse_uri(s, &c, &e) == REMEX_OK) {
        /* A parsed connection must serialise and parse back to the same fields. */
        struct secrets_conn d;
        if (secrets_conn_uri(&c, &b) == REMEX_OK &&
            secrets_conn_parse_uri(buf_cstr(&b), &d, &e) == REMEX_OK) {
            if ((c.password == NULL) != (d.password == NULL) ||
                (c.password && strcmp(c.password, d.password) != 0) || c.port != d.port)
                abort();
            secrets_conn_free(&d);
        }
        secrets_conn_free(&c);
    }
    json_t *o = NULL;
    if (json_parse(s, size, NULL, &o, &e) == REMEX_OK) {
        if (secrets_conn_from_json(o, &c, &e) == REMEX_OK)
            secrets_conn_free(&c);
        json_decref(o);
    }
    buf_free(&b);
    free(s);
    return 0;
}
