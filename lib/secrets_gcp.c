/* secrets_gcp: Google Cloud Secret Manager reads with service-account or metadata-server OAuth
 * tokens. */
#include "remex/secrets_gcp.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/gcpauth.h"
#include "remex/http.h"
#include "remex/json.h"

#define GCP_SCOPE "https://www.googleapis.com/auth/cloud-platform"

struct secrets_gcp {
    char project[128];
    struct gcpauth *auth;
    struct http_client *http;
};

void secrets_gcp_close(struct secrets_gcp *g)
{
    if (!g)
        return;
    http_client_free(g->http);
    gcpauth_close(g->auth);
    free(g);
}

remex_err secrets_gcp_open(const struct secrets_gcp_config *cfg, struct secrets_gcp **out,
                           struct remex_error *e)
{
    const char *key = cfg->key_file ? cfg->key_file : getenv("GOOGLE_APPLICATION_CREDENTIALS");
    if (key && !*key)
        key = NULL; /* set but empty: no key */
    struct secrets_gcp *g;
    remex_err rc;
    if (!cfg->project || !*cfg->project || strlen(cfg->project) >= sizeof(g->project) ||
        strspn(cfg->project, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(cfg->project))
        return remex_seterr(e, REMEX_EINVAL, "gcp secret manager: invalid project id");
    if (!(g = calloc(1, sizeof(*g))))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    snprintf(g->project, sizeof(g->project), "%s", cfg->project);
    /* No key: the metadata server's token (GCE, GKE Workload Identity, Cloud Run). */
    rc = gcpauth_open(key, cfg->token_uri, GCP_SCOPE, cfg->ca_file, &g->auth, e);
    if (rc != REMEX_OK)
        remex_errprefix(e, "gcp secret manager");
    if (rc == REMEX_OK) {
        struct http_client_opts ho = {
            .base_url = cfg->endpoint ? cfg->endpoint : "https://secretmanager.googleapis.com",
            .ca_file = cfg->ca_file,
            .max_response_bytes = SECRETS_GCP_REPLY_MAX,
            .timeout_ms = 30000,
            .max_attempts = 3};
        rc = http_client_new(&ho, &g->http, e);
    }
    if (rc != REMEX_OK) {
        secrets_gcp_close(g);
        return rc;
    }
    *out = g;
    return REMEX_OK;
}

remex_err secrets_gcp_parse_access(const char *body, size_t len, char **value,
                                   struct remex_error *e)
{
    struct json_parse_opts o = {
        .max_bytes = SECRETS_GCP_REPLY_MAX, .max_depth = 8, .name = "gcp reply"};
    struct remex_error tmp;
    json_t *doc = NULL;
    const char *d;
    size_t dl;
    remex_err rc = REMEX_OK;
    *value = NULL;
    if (json_parse(body, len, &o, &doc, &tmp) != REMEX_OK || !json_is_object(doc)) {
        json_decref(doc);
        return remex_seterr(e, REMEX_EPROTO, "gcp reply: not a JSON object");
    }
    d = json_string_value(json_object_get(json_object_get(doc, "payload"), "data"));
    dl = d ? strlen(d) : 0;
    if (!d || dl % 4 != 0) {
        json_decref(doc);
        return remex_seterr(e, REMEX_EPROTO, "gcp reply: payload.data missing or not base64");
    }
    unsigned char *v = malloc(dl / 4 * 3 + 1);
    int n = v ? EVP_DecodeBlock(v, (const unsigned char *)d, (int)dl) : -1;
    if (n >= 0 && dl)
        n -= (d[dl - 1] == '=') + (d[dl - 2] == '=');
    if (!v)
        rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
    else if (n < 0)
        rc = remex_seterr(e, REMEX_EPROTO, "gcp reply: payload.data is not base64");
    else if (memchr(v, '\0', (size_t)n))
        rc = remex_seterr(e, REMEX_EPROTO, "gcp reply: binary secrets are not read");
    if (rc == REMEX_OK) {
        v[n] = '\0';
        *value = (char *)v;
    } else if (v) {
        OPENSSL_cleanse(v, dl / 4 * 3 + 1);
        free(v);
    }
    json_decref(doc);
    return rc;
}

remex_err secrets_gcp_get(struct secrets_gcp *g, const char *name, char **value,
                          struct remex_error *e)
{
    char path[512];
    struct http_response r = {0};
    remex_err rc = REMEX_OK;
    *value = NULL;
    if (!*name || strlen(name) > 255 ||
        strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
            strlen(name))
        return remex_seterr(e, REMEX_EINVAL, "gcp secret manager: invalid secret name");
    snprintf(path, sizeof(path), "/v1/projects/%s/secrets/%s/versions/latest:access", g->project,
             name);
    for (int attempt = 0; attempt < 2; attempt++) {
        const char *tok = NULL;
        if ((rc = gcpauth_token(g->auth, &tok, e)) != REMEX_OK)
            return rc;
        struct http_request req = {.method = "GET", .path = path, .bearer = tok};
        if ((rc = http_do(g->http, &req, &r, e)) != REMEX_OK) {
            remex_errprefix(e, "gcp secret manager: %s", name);
            return rc;
        }
        if (r.status != 401 || attempt == 1)
            break;
        gcpauth_invalidate(g->auth);
        http_response_free(&r);
    }
    if (r.status == 404)
        rc = remex_seterr(e, REMEX_ENOTFOUND, "gcp secret manager: %s: not found", name);
    else if ((rc = http_check_status("gcp", r.status, &r.body, e)) != REMEX_OK)
        remex_errprefix(e, "gcp secret manager: %s: HTTP %ld", name, r.status);
    else
        rc = secrets_gcp_parse_access(r.body.data ? r.body.data : "", r.body.len, value, e);
    if (r.body.data)
        OPENSSL_cleanse(r.body.data, r.body.len);
    http_response_free(&r);
    return rc;
}
