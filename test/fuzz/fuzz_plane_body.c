/*
 * Fuzz target: the plane's request body decoding. The first byte selects the
 * route whose closed key set the body is checked against (decode_route_bodies)
 * and the decoder (register, heartbeat, health, token create, bulk DAG upload
 * envelope); the rest is the
 * body, parsed with the plane's caps, checked for unknown keys, then decoded.
 * Nothing may crash, leak or read out of bounds; every failure must carry a
 * message.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../cmd/remex-plane/decode.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct remex_error e = {0};
    json_t *body = NULL;
    if (size < 1)
        return 0;
    unsigned sel = data[0] % 5;
    if (decode_body((const char *)data + 1, size - 1, DECODE_MAX_DEPTH, &body, &e)) {
        if (e.msg[0] == '\0')
            __builtin_trap();
        return 0;
    }
    size_t nroutes = 0;
    while (decode_route_bodies[nroutes].method)
        nroutes++;
    const struct decode_route_body *route = &decode_route_bodies[data[0] % nroutes];
    remex_err rc = decode_known_fields(body, route->fields, &e);
    if (rc != REMEX_OK && e.msg[0] == '\0')
        __builtin_trap();
    if (decode_body_fields(route->method, route->pattern) != route->fields)
        __builtin_trap();
    switch (sel) {
    case 0: {
        struct decode_register r;
        rc = decode_register(body, &r, &e);
        break;
    }
    case 1: {
        struct decode_heartbeat h;
        rc = decode_heartbeat(body, &h, &e);
        break;
    }
    case 2: {
        struct decode_health h;
        rc = decode_health(body, &h, &e);
        break;
    }
    case 3: {
        struct decode_dags_bulk b;
        rc = decode_dags_bulk(body, &b, &e);
        break;
    }
    default: {
        struct decode_token_create c;
        rc = decode_token_create(body, &c, &e);
        break;
    }
    }
    if (rc != REMEX_OK && e.msg[0] == '\0')
        __builtin_trap();
    json_decref(body);
    char id[32];
    size_t n = size - 1 < sizeof(id) - 1 ? size - 1 : sizeof(id) - 1;
    memcpy(id, data + 1, n);
    id[n] = '\0';
    int64_t v = decode_id(id);
    if (v == 0 || v < -1)
        __builtin_trap();
    return 0;
}
