/*
 * secrets_azkv: Azure Key Vault secrets as a secrets backend.
 *
 * Reads GET VAULT/secrets/NAME?api-version=7.4 ({"value": ...}) with an
 * Entra ID access token for https://vault.azure.net/.default from lib/azauth
 * (remex/azauth.h): the client-credentials flow at
 * AUTHORITY/TENANT/oauth2/v2.0/token with a client secret, or with a
 * federated token file (workload identity: the file's JWT is the client
 * assertion, re-read at every token request). The token is kept until
 * AZAUTH_RENEW_S seconds before it expires and dropped after a 401.
 * Blocking HTTP: call it off any event loop. Replies capped at
 * SECRETS_AZKV_REPLY_MAX bytes; secrets never appear in messages.
 * Thread-safety: one thread at a time per backend.
 */
#ifndef REMEX_SECRETS_AZKV_H
#define REMEX_SECRETS_AZKV_H

#include <stddef.h>

#include "remex/err.h"

#define SECRETS_AZKV_REPLY_MAX (256u * 1024u)

/* Strings borrowed for the open call. */
struct secrets_azkv_config {
    const char *vault_url;            /* required: "https://acme.vault.azure.net" */
    const char *tenant_id;            /* required: [0-9A-Za-z.-], 1-99 characters */
    const char *client_id;            /* required, same characters */
    const char *client_secret;        /* secret, or NULL with federated_token_file */
    const char *federated_token_file; /* AZURE_FEDERATED_TOKEN_FILE */
    const char *authority;            /* NULL: https://login.microsoftonline.com */
    const char *ca_file;
};

struct secrets_azkv;

remex_err secrets_azkv_open(const struct secrets_azkv_config *cfg, struct secrets_azkv **out,
                            struct remex_error *e);
void secrets_azkv_close(struct secrets_azkv *k);
/* *value malloc'd. REMEX_ENOTFOUND for SecretNotFound. name: 1-127 of [0-9A-Za-z-]. */
remex_err secrets_azkv_get(struct secrets_azkv *k, const char *name, char **value,
                           struct remex_error *e);
/* value of a get-secret reply (malloc'd). */
remex_err secrets_azkv_parse_value(const char *body, size_t len, char **value,
                                   struct remex_error *e);

#endif
