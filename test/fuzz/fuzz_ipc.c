/*
 * Fuzz target: the ipc frame decoder. The first input byte seeds the chunk
 * sizes; the rest is the byte stream, fed in chunks of 1..64 bytes with every
 * complete frame popped after each feed. Every popped message must re-encode
 * and decode to an equal object.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "remex/ipc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_roundtrip(const json_t *m)
{
    struct buf b = BUF_INIT(IPC_FRAME_MAX_LIMIT);
    struct ipc_decoder d;
    json_t *again = NULL;

    ipc_decoder_init(&d, 0);
    if (ipc_encode(m, 0, &b, NULL) != REMEX_OK || ipc_decoder_feed(&d, b.data, b.len, NULL) ||
        ipc_decoder_pop(&d, &again, NULL) != REMEX_OK || !json_equal(m, again))
        abort();
    json_decref(again);
    ipc_decoder_free(&d);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ipc_decoder d;
    uint32_t seed;
    size_t off = 1;

    if (size == 0)
        return 0;
    seed = data[0] * 2654435761u + 1u;
    ipc_decoder_init(&d, 4096);
    while (off < size) {
        size_t n = 1 + (seed >> 24) % 64;
        json_t *m;
        remex_err rc;

        seed = seed * 1103515245u + 12345u;
        if (n > size - off)
            n = size - off;
        if (ipc_decoder_feed(&d, data + off, n, NULL) != REMEX_OK)
            break;
        off += n;
        while ((rc = ipc_decoder_pop(&d, &m, NULL)) == REMEX_OK) {
            if (!json_is_object(m))
                abort();
            check_roundtrip(m);
            json_decref(m);
        }
        if (rc != REMEX_EAGAIN)
            break;
    }
    ipc_decoder_free(&d);
    return 0;
}
