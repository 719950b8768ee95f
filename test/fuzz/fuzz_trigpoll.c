/*
 * Fuzz target: the trigger poll's reply as remex-triggerer decodes it
 * (POST /api/v1/triggers/poll): the envelope, each item with its context,
 * then each item's spec expanded with the item's own template variables.
 */
#include <stddef.h>
#include <stdint.h>

#include "remex/trigspec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j =
        json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (!j)
        return 0;
    json_t *items = NULL, *x;
    struct remex_error e;
    size_t i;
    if (trigspec_poll_reply(j, &items, &e) == REMEX_OK) {
        json_array_foreach(items, i, x)
        {
            struct trigspec_item it;
            if (trigspec_poll_item(x, i, &it, &e) != REMEX_OK)
                continue;
            struct trigspec t;
            trigspec_parse(it.spec, &it.vars, &t, &e);
            trigspec_free(&t);
        }
    }
    json_decref(j);
    return 0;
}
