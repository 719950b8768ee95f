/* azauth: Entra ID access tokens by client credentials (secret or federated token). */
#include "remex/azauth.h"

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

struct azauth {
    char token_path[160]; /* "/TENANT/oauth2/v2.0/token" */
    char *client_id;
    char *client_secret; /* secret: wiped at close */
    char *fed_file;
    char *scope;
    char token[AZAUTH_TOKEN_MAX]; /* secret: wiped at close */
    time_t expires;               /* 0: no token */
    struct http_client *login;
};

static void wipe_free(char *s)
{
    if (s)
        OPENSSL_cleanse(s, strlen(s));
    free(s);
}

void azauth_close(struct azauth *a)
{
    if (!a)
        return;
    http_client_free(a->login);
    free(a->client_id);
    wipe_free(a->client_secret);
    free(a->fed_file);
    free(a->scope);
    OPENSSL_cleanse(a->token, sizeof(a->token));
    free(a);
}

static int id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n < 100 &&
           strspn(s, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-.") == n;
}

remex_err azauth_open(const struct azauth_config *cfg, struct azauth **out, struct remex_error *e)
{
    struct azauth *a;
    remex_err rc = REMEX_OK;
    if (!id_ok(cfg->tenant_id) || !id_ok(cfg->client_id) || !cfg->scope || !cfg->scope[0])
        return remex_seterr(e, REMEX_EINVAL,
                            "azure auth: tenant_id and client_id ([0-9A-Za-z.-]) and a scope "
                            "are required");
    if ((cfg->client_secret != NULL) == (cfg->federated_token_file != NULL))
        return remex_seterr(e, REMEX_EINVAL,
                            "azure auth: exactly one of client_secret or federated_token_file "
                            "is required");
    if (!(a = calloc(1, sizeof(*a))))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    snprintf(a->token_path, sizeof(a->token_path), "/%s/oauth2/v2.0/token", cfg->tenant_id);
    a->client_id = strdup(cfg->client_id);
    a->scope = strdup(cfg->scope);
    a->client_secret = cfg->client_secret ? strdup(cfg->client_secret) : NULL;
    a->fed_file = cfg->federated_token_file ? strdup(cfg->federated_token_file) : NULL;
    struct http_client_opts lo = {.base_url = cfg->authority && cfg->authority[0]
                                                  ? cfg->authority
                                                  : "https://login.microsoftonline.com",
                                  .ca_file = cfg->ca_file,
                                  .max_response_bytes = 64u * 1024u,
                                  .timeout_ms = 30000,
                                  .max_attempts = 3};
    if (!a->client_id || !a->scope || (cfg->client_secret && !a->client_secret) ||
        (cfg->federated_token_file && !a->fed_file))
        rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
    else
        rc = http_client_new(&lo, &a->login, e);
    if (rc != REMEX_OK) {
        remex_errprefix(e, "azure auth");
        azauth_close(a);
        return rc;
    }
    *out = a;
    return REMEX_OK;
}

/* Appends "&name=" and the form-encoded value. */
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

/* The client's credential: its secret, or the federated token file's current JWT. */
static remex_err credential(struct azauth *a, struct buf *form, struct remex_error *e)
{
    char *tok;
    ssize_t n;
    int fd;
    remex_err rc;
    if (a->client_secret)
        return form_field(form, "client_secret", a->client_secret, strlen(a->client_secret));
    if ((fd = open(a->fed_file, O_RDONLY | O_CLOEXEC)) < 0)
        return remex_errno(e, REMEX_EIO, "azure auth: federated token file %s", a->fed_file);
    if (!(tok = malloc(AZAUTH_ASSERTION_MAX + 1))) {
        close(fd);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    n = read(fd, tok, AZAUTH_ASSERTION_MAX + 1);
    close(fd);
    while (n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
        n--;
    if (n <= 0 || (size_t)n > AZAUTH_ASSERTION_MAX) {
        free(tok);
        return remex_seterr(e, REMEX_EINVAL,
                            "azure auth: federated token file %s: empty or over %u bytes",
                            a->fed_file, AZAUTH_ASSERTION_MAX);
    }
    rc = buf_puts(form, "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A"
                        "client-assertion-type%3Ajwt-bearer");
    if (rc == REMEX_OK)
        rc = form_field(form, "client_assertion", tok, (size_t)n);
    OPENSSL_cleanse(tok, (size_t)n);
    free(tok);
    return rc == REMEX_OK ? rc : remex_seterr(e, rc, "azure auth: out of memory");
}

static remex_err fetch_token(struct azauth *a, struct remex_error *e)
{
    struct buf form = BUF_INIT(4 * AZAUTH_ASSERTION_MAX);
    struct http_response r = {0};
    long long exp = 0;
    remex_err rc = buf_puts(&form, "grant_type=client_credentials");
    if (rc == REMEX_OK)
        rc = form_field(&form, "scope", a->scope, strlen(a->scope));
    if (rc == REMEX_OK)
        rc = form_field(&form, "client_id", a->client_id, strlen(a->client_id));
    if (rc == REMEX_OK)
        rc = credential(a, &form, e);
    else
        remex_seterr(e, rc, "azure auth: out of memory");
    if (rc != REMEX_OK) {
        if (form.data)
            OPENSSL_cleanse(form.data, form.len);
        buf_free(&form);
        return rc;
    }
    struct http_request req = {.method = "POST",
                               .path = a->token_path,
                               .body = form.data,
                               .body_len = form.len,
                               .content_type = "application/x-www-form-urlencoded",
                               .retry_safe = 1};
    rc = http_do(a->login, &req, &r, e);
    OPENSSL_cleanse(form.data, form.len);
    buf_free(&form);
    if (rc != REMEX_OK)
        remex_errprefix(e, "azure auth: token");
    else if ((rc = http_check_status("azure auth: token", r.status, NULL, e)) == REMEX_OK)
        rc = gcpauth_parse_token(r.body.data ? r.body.data : "", r.body.len, a->token,
                                 sizeof(a->token), &exp, e);
    if (r.body.data)
        OPENSSL_cleanse(r.body.data, r.body.len);
    http_response_free(&r);
    a->expires = rc == REMEX_OK ? time(NULL) + (time_t)exp : 0;
    return rc;
}

remex_err azauth_token(struct azauth *a, const char **token, struct remex_error *e)
{
    remex_err rc;
    if (a->expires == 0 || time(NULL) + AZAUTH_RENEW_S >= a->expires) {
        if ((rc = fetch_token(a, e)) != REMEX_OK)
            return rc;
    }
    *token = a->token;
    return REMEX_OK;
}

void azauth_invalidate(struct azauth *a)
{
    a->expires = 0;
}
