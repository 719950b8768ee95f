/* Fuzz target: OAuth token replies (GCP token endpoint and metadata server, Entra ID), the GCP
 * service-account key, Secret Manager and Azure Key Vault reply parsers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remex/gcpauth.h"
#include "remex/secrets_azkv.h"
#include "remex/secrets_gcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *f[3], tok[256], *v = NULL;
    long long exp = 0;
    struct remex_error e;
    if (gcpauth_parse_key((const char *)data, size, f, &e) == REMEX_OK)
        for (int i = 0; i < 3; i++)
            free(f[i]);
    if (gcpauth_parse_token((const char *)data, size, tok, sizeof(tok), &exp, &e) == REMEX_OK &&
        (exp <= 0 || strlen(tok) >= sizeof(tok)))
        __builtin_trap();
    if (secrets_gcp_parse_access((const char *)data, size, &v, &e) == REMEX_OK && !v)
        __builtin_trap();
    free(v);
    v = NULL;
    if (secrets_azkv_parse_value((const char *)data, size, &v, &e) == REMEX_OK && !v)
        __builtin_trap();
    free(v);
    return 0;
}
