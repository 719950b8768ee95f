/*
 * Fuzz target: ytree_parse on arbitrary bytes. The first byte picks the
 * flags and small caps (so that the caps themselves are exercised).
 * Invariants: no crash or leak; a tree respects its caps, mappings hold
 * key/value pairs, scalars are NUL-terminated at len and every position is
 * 1-based; an error leaves no tree and has a kind and a position.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "remex/yamltree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t check(const struct ytree_node *n, unsigned depth, const struct ytree_limits *lim)
{
    size_t count = 1;
    if (n->line == 0 || n->col == 0)
        __builtin_trap();
    if (n->kind == YTREE_SCALAR) {
        if (n->text == NULL || n->text[n->len] != '\0' || n->n != 0)
            __builtin_trap();
        if ((lim->flags & YTREE_CHECK_SCALARS) && ytree_utf8_check(n->text, n->len) != n->len)
            __builtin_trap();
        return 1;
    }
    if (depth > lim->max_depth || n->text != NULL || (n->kind == YTREE_MAP && n->n % 2 != 0))
        __builtin_trap();
    for (size_t i = 0; i < n->n; i++)
        count += check(n->kids[i], depth + 1, lim);
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ytree_limits lim = {100000, 64, 0};
    struct ytree_node *root = NULL;
    struct ytree_error ye;

    if (size > 0) {
        lim.flags = data[0] & 7u;
        if (data[0] & 8u) {
            lim.max_depth = 1 + (data[0] >> 4);
            lim.max_nodes = 1 + 8u * (data[0] >> 4);
        }
        data++;
        size--;
    }
    remex_err rc = ytree_parse((const char *)data, size, &lim, &root, &ye);
    if (rc == REMEX_OK) {
        if (ye.kind != YTREE_ENONE || (root != NULL && check(root, 1, &lim) > lim.max_nodes))
            __builtin_trap();
    } else if (root != NULL || ye.kind == YTREE_ENONE || ye.line == 0 || ye.col == 0) {
        __builtin_trap();
    }
    ytree_free(root);
    return 0;
}
