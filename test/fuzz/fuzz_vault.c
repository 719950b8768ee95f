/* Fuzz target: Vault reply parsers (KV v1 and v2 reads, AppRole / Kubernetes login and
 * renew-self auth replies, lookup-self). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "remex/secrets_vault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *d = NULL;
    char tok[128];
    long long lease = 0;
    struct remex_error e;
    for (int v = 1; v <= 2; v++) {
        if (secrets_vault_parse_read((const char *)data, size, v, &d, &e) == REMEX_OK &&
            !json_is_object(d))
            __builtin_trap();
        json_decref(d);
        d = NULL;
    }
    if (secrets_vault_parse_login((const char *)data, size, tok, sizeof(tok), &lease, &e) ==
            REMEX_OK &&
        (strlen(tok) == 0 || strlen(tok) >= sizeof(tok) || lease < 0))
        __builtin_trap();
    int ren = -1;
    if (secrets_vault_parse_auth((const char *)data, size, tok, sizeof(tok), &lease, &ren, &e) ==
            REMEX_OK &&
        (strlen(tok) == 0 || strlen(tok) >= sizeof(tok) || lease < 0 || (ren != 0 && ren != 1)))
        __builtin_trap();
    ren = -1;
    if (secrets_vault_parse_lookup((const char *)data, size, &lease, &ren, &e) == REMEX_OK &&
        (lease < 0 || (ren != 0 && ren != 1)))
        __builtin_trap();
    return 0;
}
