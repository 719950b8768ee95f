/* secrets_azkv: Azure Key Vault reads with Entra ID client-credentials tokens. */
#include "remex/secrets_azkv.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "remex/buf.h"
#include "remex/gcpauth.h"
#include "remex/http.h"
#include "remex/json.h"

#define AZKV_SCOPE      "https%3A%2F%2Fvault.azure.net%2F.default"
#define AZKV_ASSERT_MAX (16u * 1024u)

struct secrets_azkv {
    char token_path[200];
    char *client_id;
    char *client_secret; /* secret: wiped at close */
    char *fed_file;
    struct http_client *login;
    struct http_client *vault;
    char token[8192]; /* secret: wiped at close */
    time_t expires;
};

static void wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void secrets_azkv_close(struct secrets_azkv *k)
{
    if (!k)
        return;
    http_client_free(k->login);
    http_client_free(k->vault);
    free(k->client_id);
    wipe_free(k->client_secret);
    free(k->fed_file);
    OPENSSL_cleanse(k->token, sizeof(k->token));
    free(k);
}

static int id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n < 100 && strspn(s, "0123456789abcdefABCDEF-.abcdefghijklmnopqrstuvwxyz") == n;
}

remex_err secrets_azkv_open(const struct secrets_azkv_config *cfg, struct secrets_azkv **out,
                            struct remex_error *e)
{
    struct secrets_azkv *k;
    remex_err rc;
    if (!cfg->vault_url || !id_ok(cfg->tenant_id) || !id_ok(cfg->client_id))
        return remex_seterr(e, REMEX_EINVAL,
                            "azure key vault: vault_url, tenant_id and client_id are required");
    if ((cfg->client_secret != NULL) == (cfg->federated_token_file != NULL))
        return remex_seterr(e, REMEX_EINVAL,
                            "azure key vault: exactly one of client_secret or "
                            "federated_token_file is required");
    if (!(k = calloc(1, sizeof(*k))))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    snprintf(k->token_path, sizeof(k->token_path), "/%s/oauth2/v2.0/token", cfg->tenant_id);
    k->client_id = strdup(cfg->client_id);
    k->client_secret = cfg->client_secret ? strdup(cfg->client_secret) : NULL;
    k->fed_file = cfg->federated_token_file ? strdup(cfg->federated_token_file) : NULL;
    struct http_client_opts lo = {.base_url = cfg->authority ? cfg->authority
                                                             : "https://login.microsoftonline.com",
                                  .ca_file = cfg->ca_file,
                                  .max_response_bytes = 64u * 1024u,
                                  .timeout_ms = 30000,
                                  .max_attempts = 3};
    struct http_client_opts vo = {.base_url = cfg->vault_url,
                                  .ca_file = cfg->ca_file,
                                  .max_response_bytes = SECRETS_AZKV_REPLY_MAX,
                                  .timeout_ms = 30000,
                                  .max_attempts = 3};
    if (!k->client_id || (cfg->client_secret && !k->client_secret) ||
        (cfg->federated_token_file && !k->fed_file))
        rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
    else if ((rc = http_client_new(&lo, &k->login, e)) == REMEX_OK)
        rc = http_client_new(&vo, &k->vault, e);
    if (rc != REMEX_OK) {
        remex_errprefix(e, "azure key vault");
        secrets_azkv_close(k);
        return rc;
    }
    *out = k;
    return REMEX_OK;
}

/* Appends "&name=" and the percent-encoded value (form encoding). */
static remex_err form_field(struct buf *b, const char *name, const char *v, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    remex_err rc = buf_printf(b, "&%s=", name);
    for (size_t i = 0; i < n && rc == REMEX_OK; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c))
            rc = buf_putc(b, (char)c);
        else
            rc = buf_append(b, (char[3]){'%', hex[c >> 4], hex[c & 15]}, 3);
    }
    return rc;
}

/* The client credential part of the token request: secret, or the federated token file. */
static remex_err credential(struct secrets_azkv *k, struct buf *form, struct remex_error *e)
{
    char a[AZKV_ASSERT_MAX];
    ssize_t n;
    int fd;
    if (k->client_secret)
        return form_field(form, "client_secret", k->client_secret, strlen(k->client_secret));
    if ((fd = open(k->fed_file, O_RDONLY | O_CLOEXEC)) < 0)
        return remex_errno(e, REMEX_EIO, "azure key vault: federated token file %s", k->fed_file);
    n = read(fd, a, sizeof(a));
    close(fd);
    if (n <= 0 || (size_t)n >= sizeof(a))
        return remex_seterr(e, REMEX_EINVAL,
                            "azure key vault: federated token file %s: empty "
                            "or too large",
                            k->fed_file);
    while (n > 0 && (a[n - 1] == '\n' || a[n - 1] == '\r'))
        n--;
    remex_err rc = buf_puts(form, "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A"
                                  "client-assertion-type%3Ajwt-bearer");
    if (rc == REMEX_OK)
        rc = form_field(form, "client_assertion", a, (size_t)n);
    OPENSSL_cleanse(a, sizeof(a));
    return rc;
}

static remex_err fetch_token(struct secrets_azkv *k, struct remex_error *e)
{
    struct buf form = BUF_INIT(64u * 1024u);
    struct http_response r = {0};
    long long exp = 0;
    remex_err rc = buf_puts(&form, "grant_type=client_credentials&scope=" AZKV_SCOPE);
    if (rc == REMEX_OK)
        rc = form_field(&form, "client_id", k->client_id, strlen(k->client_id));
    if (rc == REMEX_OK)
        rc = credential(k, &form, e);
    else
        remex_seterr(e, rc, "out of memory");
    if (rc != REMEX_OK) {
        buf_free(&form);
        return rc;
    }
    struct http_request req = {.method = "POST",
                               .path = k->token_path,
                               .body = form.data,
                               .body_len = form.len,
                               .content_type = "application/x-www-form-urlencoded",
                               .retry_safe = 1};
    rc = http_do(k->login, &req, &r, e);
    OPENSSL_cleanse(form.data, form.len);
    buf_free(&form);
    if (rc != REMEX_OK)
        remex_errprefix(e, "azure key vault: token");
    else if ((rc = http_check_status("azure key vault: token", r.status, NULL, e)) == REMEX_OK)
        rc = gcpauth_parse_token(r.body.data ? r.body.data : "", r.body.len, k->token,
                                 sizeof(k->token), &exp, e);
    if (r.body.data)
        OPENSSL_cleanse(r.body.data, r.body.len);
    http_response_free(&r);
    k->expires = rc == REMEX_OK ? time(NULL) + (time_t)exp : 0;
    return rc;
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
        if ((!k->expires || time(NULL) >= k->expires - 60) && (rc = fetch_token(k, e)) != REMEX_OK)
            return rc;
        struct http_request req = {.method = "GET", .path = path, .bearer = k->token};
        if ((rc = http_do(k->vault, &req, &r, e)) != REMEX_OK) {
            remex_errprefix(e, "azure key vault: %s", name);
            return rc;
        }
        if (r.status != 401 || attempt == 1)
            break;
        k->expires = 0;
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
