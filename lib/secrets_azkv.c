/* secrets_azkv: Azure Key Vault reads with Entra ID tokens from lib/azauth. */
#include "remex/secrets_azkv.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/azauth.h"
#include "remex/http.h"
#include "remex/json.h"

#define AZKV_SCOPE "https://vault.azure.net/.default"

struct secrets_azkv {
    struct azauth *auth; /* owned: client-credentials tokens for AZKV_SCOPE */
    struct http_client *vault;
};

void secrets_azkv_close(struct secrets_azkv *k)
{
    if (!k)
        return;
    azauth_close(k->auth);
    http_client_free(k->vault);
    free(k);
}

remex_err secrets_azkv_open(const struct secrets_azkv_config *cfg, struct secrets_azkv **out,
                            struct remex_error *e)
{
    struct secrets_azkv *k;
    remex_err rc;
    if (!cfg->vault_url || !cfg->vault_url[0])
        return remex_seterr(e, REMEX_EINVAL, "azure key vault: vault_url is required");
    if (!(k = calloc(1, sizeof(*k))))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    struct azauth_config ac = {.tenant_id = cfg->tenant_id,
                               .client_id = cfg->client_id,
                               .client_secret = cfg->client_secret,
                               .federated_token_file = cfg->federated_token_file,
                               .authority = cfg->authority,
                               .scope = AZKV_SCOPE,
                               .ca_file = cfg->ca_file};
    struct http_client_opts vo = {.base_url = cfg->vault_url,
                                  .ca_file = cfg->ca_file,
                                  .max_response_bytes = SECRETS_AZKV_REPLY_MAX,
                                  .timeout_ms = 30000,
                                  .max_attempts = 3};
    if ((rc = azauth_open(&ac, &k->auth, e)) == REMEX_OK)
        rc = http_client_new(&vo, &k->vault, e);
    if (rc != REMEX_OK) {
        remex_errprefix(e, "azure key vault");
        secrets_azkv_close(k);
        return rc;
    }
    *out = k;
    return REMEX_OK;
}

remex_err secrets_azkv_parse_value(const char *body, size_t len, char **value,
                                   struct remex_error *e)
{
    struct json_parse_opts o = {
        .max_bytes = SECRETS_AZKV_REPLY_MAX, .max_depth = 8, .name = "azure key vault reply"};
    struct remex_error tmp;
    json_t *doc = NULL;
    const char *v;
    *value = NULL;
    if (json_parse(body, len, &o, &doc, &tmp) != REMEX_OK || !json_is_object(doc)) {
        json_decref(doc);
        return remex_seterr(e, REMEX_EPROTO, "azure key vault reply: not a JSON object");
    }
    v = json_string_value(json_object_get(doc, "value"));
    if (v)
        *value = strdup(v);
    json_decref(doc);
    if (!v)
        return remex_seterr(e, REMEX_EPROTO, "azure key vault reply: value missing");
    return *value ? REMEX_OK : remex_seterr(e, REMEX_ENOMEM, "out of memory");
}

remex_err secrets_azkv_get(struct secrets_azkv *k, const char *name, char **value,
                           struct remex_error *e)
{
    char path[256];
    struct http_response r = {0};
    remex_err rc = REMEX_OK;
    size_t n = strlen(name);
    *value = NULL;
    if (n == 0 || n > 127 ||
        strspn(name, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-") != n)
        return remex_seterr(e, REMEX_EINVAL, "azure key vault: invalid secret name");
    snprintf(path, sizeof(path), "/secrets/%s?api-version=7.4", name);
    for (int attempt = 0; attempt < 2; attempt++) {
        const char *tok = NULL; /* borrowed from k->auth until its next call */
        if ((rc = azauth_token(k->auth, &tok, e)) != REMEX_OK) {
            remex_errprefix(e, "azure key vault: %s", name);
            return rc;
        }
        struct http_request req = {.method = "GET", .path = path, .bearer = tok};
        if ((rc = http_do(k->vault, &req, &r, e)) != REMEX_OK) {
            remex_errprefix(e, "azure key vault: %s", name);
            return rc;
        }
        if (r.status != 401 || attempt == 1)
            break;
        azauth_invalidate(k->auth); /* refused: one more try with a new token */
        http_response_free(&r);
    }
    if (r.status == 404)
        rc = remex_seterr(e, REMEX_ENOTFOUND, "azure key vault: %s: not found", name);
    else if ((rc = http_check_status("azure key vault", r.status, &r.body, e)) != REMEX_OK)
        remex_errprefix(e, "azure key vault: %s: HTTP %ld", name, r.status);
    else
        rc = secrets_azkv_parse_value(r.body.data ? r.body.data : "", r.body.len, value, e);
    if (r.body.data)
        OPENSSL_cleanse(r.body.data, r.body.len);
    http_response_free(&r);
    return rc;
}
