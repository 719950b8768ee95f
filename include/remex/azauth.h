/*
 * azauth: Microsoft Entra ID (Azure AD) access tokens for a service, by the
 * OAuth 2.0 client credentials grant at AUTHORITY/TENANT/oauth2/v2.0/token:
 * with a client secret, or with a workload-identity federated token (the
 * file AKS's webhook mounts and renews, AZURE_FEDERATED_TOKEN_FILE) sent as
 * a jwt-bearer client assertion, re-read for every token request.
 *
 * Tokens are cached and renewed AZAUTH_RENEW_S seconds before they expire,
 * or at once after azauth_invalidate (a 401 from the service). Tokens,
 * secrets and assertions never appear in messages. Blocking HTTP (lib
 * http): call it off any event loop. Thread-safety: one thread at a time.
 */
#ifndef REMEX_AZAUTH_H
#define REMEX_AZAUTH_H

#include "remex/err.h"

#define AZAUTH_RENEW_S       300
#define AZAUTH_ASSERTION_MAX (16u * 1024u) /* federated token file bytes */
#define AZAUTH_TOKEN_MAX     8192

/* All strings borrowed for the call (copied). */
struct azauth_config {
    const char *tenant_id;            /* required: [0-9A-Za-z.-], 1-99 characters */
    const char *client_id;            /* required, same characters */
    const char *client_secret;        /* secret; exactly one of it and the file */
    const char *federated_token_file; /* workload identity */
    const char *authority;            /* NULL: https://login.microsoftonline.com */
    const char *scope;                /* required, e.g. "https://storage.azure.com/.default" */
    const char *ca_file;              /* NULL: system store */
};

struct azauth;

remex_err azauth_open(const struct azauth_config *cfg, struct azauth **out, struct remex_error *e);
void azauth_close(struct azauth *a);
/* A live access token (borrowed until the next call on a). Errors name the token endpoint. */
remex_err azauth_token(struct azauth *a, const char **token, struct remex_error *e);
/* Forgets the cached token (the service refused it). */
void azauth_invalidate(struct azauth *a);

#endif
