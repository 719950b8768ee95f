/* gcpauth: service-account JWT (RS256, OpenSSL) traded for an OAuth access token, or the
 * metadata server's token. */
#include "remex/gcpauth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "remex/buf.h"
#include "remex/http.h"
#include "remex/json.h"

#define METADATA_TOKEN_PATH "/computeMetadata/v1/instance/service-accounts/default/token"
#define METADATA_DEFAULT    "metadata.google.internal"

struct gcpauth {
    int metadata; /* 1: tokens from the metadata server (no key) */
    char *email;
    char *token_uri;  /* the JWT's audience */
    char *token_path; /* path part of token_uri */
    char *scope;
    EVP_PKEY *key; /* owned; NULL for the metadata server */
    struct http_client *http;
    char token[GCPAUTH_TOKEN_MAX]; /* secret: wiped at close */
    time_t expires;                /* 0: no token */
};

void gcpauth_close(struct gcpauth *g)
{
    if (!g)
        return;
    http_client_free(g->http);
    EVP_PKEY_free(g->key);
    free(g->email);
    free(g->token_path);
    free(g->token_uri);
    free(g->scope);
    OPENSSL_cleanse(g->token, sizeof(g->token));
    free(g);
}

void gcpauth_invalidate(struct gcpauth *g)
{
    g->expires = 0;
}

static remex_err parse_obj(const char *text, size_t len, const char *name, size_t cap, json_t **out,
                           struct remex_error *e)
{
    struct json_parse_opts o = {.max_bytes = cap, .max_depth = 8, .name = name};
    struct remex_error tmp;
    if (json_parse(text, len, &o, out, &tmp) != REMEX_OK || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return remex_seterr(e, REMEX_EPARSE, "%s: not a JSON object", name);
    }
    return REMEX_OK;
}

remex_err gcpauth_parse_key(const char *text, size_t len, char *out[3], struct remex_error *e)
{
    static const char *const fields[3] = {"client_email", "private_key", "token_uri"};
    json_t *doc = NULL;
    remex_err rc = parse_obj(text, len, "service account key", GCPAUTH_KEY_MAX, &doc, e);
    out[0] = out[1] = out[2] = NULL;
    for (int i = 0; rc == REMEX_OK && i < 3; i++) {
        const char *v = json_string_value(json_object_get(doc, fields[i]));
        if (!v || !*v)
            rc = remex_seterr(e, REMEX_EPARSE, "service account key: %s missing", fields[i]);
        else if (!(out[i] = strdup(v)))
            rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    json_decref(doc);
    if (rc != REMEX_OK) {
        for (int i = 0; i < 3; i++) {
            if (out[i])
                OPENSSL_cleanse(out[i], strlen(out[i]));
            free(out[i]);
            out[i] = NULL;
        }
    }
    return rc;
}

remex_err gcpauth_parse_token(const char *body, size_t len, char *token, size_t cap,
                              long long *expires_in, struct remex_error *e)
{
    json_t *doc = NULL, *exp;
    const char *t;
    remex_err rc = parse_obj(body, len, "token reply", 64u * 1024u, &doc, e);
    if (rc != REMEX_OK)
        return remex_seterr(e, REMEX_EPROTO, "token reply: not a JSON object");
    t = json_string_value(json_object_get(doc, "access_token"));
    exp = json_object_get(doc, "expires_in");
    if (!t || !*t || strlen(t) >= cap || strcspn(t, " \t\r\n") != strlen(t))
        rc = remex_seterr(e, REMEX_EPROTO, "token reply: access_token missing or bad");
    else if (!json_is_integer(exp) || json_integer_value(exp) <= 0)
        rc = remex_seterr(e, REMEX_EPROTO, "token reply: expires_in missing or bad");
    else {
        snprintf(token, cap, "%s", t);
        *expires_in = (long long)json_integer_value(exp);
    }
    json_decref(doc);
    return rc;
}

static remex_err read_key_file(const char *path, struct buf *b, struct remex_error *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char chunk[4096];
    ssize_t r;
    if (fd < 0)
        return remex_errno(e, REMEX_EIO, "service account key %s", path);
    while ((r = read(fd, chunk, sizeof(chunk))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || buf_append(b, chunk, (size_t)r) != REMEX_OK) {
            close(fd);
            OPENSSL_cleanse(chunk, sizeof(chunk));
            return r < 0
                       ? remex_errno(e, REMEX_EIO, "service account key %s", path)
                       : remex_seterr(e, REMEX_ETOOBIG, "service account key %s: too large", path);
        }
    }
    close(fd);
    OPENSSL_cleanse(chunk, sizeof(chunk));
    return REMEX_OK;
}

/* Splits uri into the client's base ("scheme://host[:port]") and the path. */
static remex_err split_uri(const char *uri, char *base, size_t cap, char **path,
                           struct remex_error *e)
{
    const char *h = strstr(uri, "://"), *p;
    if (!h)
        return remex_seterr(e, REMEX_EINVAL, "token_uri: not a URL");
    p = strchr(h + 3, '/');
    if (!p || (size_t)(p - uri) >= cap)
        return remex_seterr(e, REMEX_EINVAL, "token_uri: not a URL with a path");
    memcpy(base, uri, (size_t)(p - uri));
    base[p - uri] = '\0';
    *path = strdup(p);
    return *path ? REMEX_OK : remex_seterr(e, REMEX_ENOMEM, "out of memory");
}

/* 1 when the machine says it runs on Google Compute Engine (DMI product name), as google-auth
 * checks it. */
static int on_gce(void)
{
    char b[64] = {0};
    int fd = open("/sys/class/dmi/id/product_name", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, b, sizeof(b) - 1) : -1;
    if (fd >= 0)
        close(fd);
    return n > 0 && (strncmp(b, "Google", 6) == 0);
}

remex_err gcpauth_open_metadata(const char *scope, struct gcpauth **out, struct remex_error *e)
{
    const char *host = getenv("GCE_METADATA_HOST"), *off = getenv("NO_GCE_CHECK");
    char base[300];
    struct gcpauth *g;
    remex_err rc;
    if (host && !*host)
        host = NULL;
    if (!host && ((off && strcasecmp(off, "true") == 0) || !on_gce()))
        return remex_seterr(e, REMEX_ENOTFOUND,
                            "gcp auth: no service-account key (GOOGLE_APPLICATION_CREDENTIALS) "
                            "and no metadata server (not on GCE, GCE_METADATA_HOST unset)");
    if (strlen(host ? host : METADATA_DEFAULT) > 255 ||
        strcspn(host ? host : METADATA_DEFAULT, "/?#@ \t\r\n") !=
            strlen(host ? host : METADATA_DEFAULT))
        return remex_seterr(e, REMEX_EINVAL, "gcp auth: GCE_METADATA_HOST: not a host[:port]");
    snprintf(base, sizeof(base), "http://%s", host ? host : METADATA_DEFAULT);
    if (!(g = calloc(1, sizeof(*g))))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    g->metadata = 1;
    g->scope = strdup(scope);
    /* ?scopes=SCOPE (percent-encoded), as google-auth asks for them. */
    struct buf p = BUF_INIT(1024);
    rc = buf_puts(&p, METADATA_TOKEN_PATH "?scopes=");
    for (const char *c = scope; rc == REMEX_OK && *c; c++)
        rc = strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~", *c)
                 ? buf_putc(&p, *c)
                 : buf_printf(&p, "%%%02X", (unsigned char)*c);
    g->token_path = rc == REMEX_OK ? strdup(buf_cstr(&p)) : NULL;
    buf_free(&p);
    /* The metadata server speaks plain http on a link-local address, never through a proxy. */
    struct http_client_opts ho = {.base_url = base,
                                  .proxy = "",
                                  .allow_insecure_http = 1,
                                  .max_response_bytes = 64u * 1024u,
                                  .connect_timeout_ms = 1000,
                                  .timeout_ms = 5000,
                                  .max_attempts = 3};
    rc = g->token_path && g->scope ? http_client_new(&ho, &g->http, e)
                                   : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if (rc != REMEX_OK) {
        remex_errprefix(e, "gcp auth: metadata server");
        gcpauth_close(g);
        return rc;
    }
    *out = g;
    return REMEX_OK;
}

remex_err gcpauth_open(const char *key_file, const char *token_uri, const char *scope,
                       const char *ca_file, struct gcpauth **out, struct remex_error *e)
{
    if (!key_file)
        return gcpauth_open_metadata(scope, out, e);
    struct buf b = BUF_INIT(GCPAUTH_KEY_MAX + 1);
    char *f[3] = {NULL, NULL, NULL}, base[512];
    struct gcpauth *g = calloc(1, sizeof(*g));
    remex_err rc;
    if (!g)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    rc = read_key_file(key_file, &b, e);
    if (rc == REMEX_OK)
        rc = gcpauth_parse_key(b.data ? b.data : "", b.len, f, e);
    if (b.data)
        OPENSSL_cleanse(b.data, b.len);
    buf_free(&b);
    if (rc == REMEX_OK) {
        BIO *bio = BIO_new_mem_buf(f[1], -1);
        g->key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        if (!g->key || EVP_PKEY_get_base_id(g->key) != EVP_PKEY_RSA)
            rc =
                remex_seterr(e, REMEX_EPARSE, "service account key: private_key is not an RSA key");
    }
    if (rc == REMEX_OK)
        rc = split_uri(token_uri ? token_uri : f[2], base, sizeof(base), &g->token_path, e);
    if (rc == REMEX_OK) {
        struct http_client_opts ho = {.base_url = base,
                                      .ca_file = ca_file,
                                      .max_response_bytes = 64u * 1024u,
                                      .timeout_ms = 30000,
                                      .max_attempts = 3};
        g->email = f[0];
        f[0] = NULL;
        g->scope = strdup(scope);
        g->token_uri = strdup(token_uri ? token_uri : f[2]);
        rc = g->scope && g->token_uri ? http_client_new(&ho, &g->http, e)
                                      : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    for (int i = 0; i < 3; i++) {
        if (f[i])
            OPENSSL_cleanse(f[i], strlen(f[i]));
        free(f[i]);
    }
    if (rc != REMEX_OK) {
        remex_errprefix(e, "gcp auth");
        gcpauth_close(g);
        return rc;
    }
    *out = g;
    return REMEX_OK;
}

/* Appends base64url (no padding) of data to out. */
static remex_err b64url(struct buf *out, const void *data, size_t len)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;
    unsigned char *t = malloc(cap);
    remex_err rc;
    if (!t)
        return REMEX_ENOMEM;
    int n = EVP_EncodeBlock(t, data, (int)len);
    while (n > 0 && t[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++)
        t[i] = t[i] == '+' ? '-' : t[i] == '/' ? '_' : t[i];
    rc = buf_append(out, t, (size_t)n);
    free(t);
    return rc;
}

/* header.claims.signature, RS256 (SHA-256 with PKCS#1 v1.5). */
static remex_err make_assertion(struct gcpauth *g, struct buf *jwt)
{
    static const char hdr[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    time_t now = time(NULL);
    unsigned char sig[1024];
    size_t sl = sizeof(sig);
    remex_err rc;
    json_t *claims =
        json_pack("{s:s,s:s,s:s,s:I,s:I}", "iss", g->email, "scope", g->scope, "aud", g->token_uri,
                  "iat", (json_int_t)now, "exp", (json_int_t)(now + 3600));
    char *cs = claims ? json_dumps(claims, JSON_COMPACT) : NULL;
    json_decref(claims);
    if (!cs)
        return REMEX_ENOMEM;
    rc = b64url(jwt, hdr, sizeof(hdr) - 1);
    if (rc == REMEX_OK)
        rc = buf_putc(jwt, '.');
    if (rc == REMEX_OK)
        rc = b64url(jwt, cs, strlen(cs));
    free(cs);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (rc == REMEX_OK &&
        (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, g->key) != 1 ||
         EVP_DigestSign(ctx, sig, &sl, (const unsigned char *)jwt->data, jwt->len) != 1))
        rc = REMEX_ENOMEM;
    EVP_MD_CTX_free(ctx);
    if (rc == REMEX_OK)
        rc = buf_putc(jwt, '.');
    if (rc == REMEX_OK)
        rc = b64url(jwt, sig, sl);
    return rc;
}

/* Builds the request that asks for a token: a signed assertion, or the metadata server's GET. */
static remex_err token_request(struct gcpauth *g, struct buf *form, struct http_request *req,
                               struct remex_error *e)
{
    static const char *const flavor[] = {"Metadata-Flavor: Google", NULL};
    struct buf jwt = BUF_INIT(16384);
    remex_err rc;
    if (g->metadata) {
        *req = (struct http_request){.method = "GET", .path = g->token_path, .headers = flavor};
        return REMEX_OK;
    }
    rc = make_assertion(g, &jwt);
    if (rc == REMEX_OK)
        rc = buf_printf(form,
                        "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-"
                        "bearer&assertion=%s",
                        buf_cstr(&jwt));
    buf_free(&jwt);
    if (rc != REMEX_OK)
        return remex_seterr(e, rc, "gcp auth: cannot sign the assertion");
    *req = (struct http_request){.method = "POST",
                                 .path = g->token_path,
                                 .body = form->data,
                                 .body_len = form->len,
                                 .content_type = "application/x-www-form-urlencoded",
                                 .retry_safe = 1};
    return REMEX_OK;
}

remex_err gcpauth_token(struct gcpauth *g, const char **token, struct remex_error *e)
{
    struct buf form = BUF_INIT(20000);
    struct http_response r = {0};
    struct http_request req;
    const char *what = g->metadata ? "gcp auth: metadata server token" : "gcp auth: token";
    long long exp = 0;
    remex_err rc;
    if (g->expires && time(NULL) < g->expires - 60) {
        *token = g->token;
        return REMEX_OK;
    }
    if ((rc = token_request(g, &form, &req, e)) != REMEX_OK) {
        buf_free(&form);
        return rc;
    }
    rc = http_do(g->http, &req, &r, e);
    buf_free(&form);
    if (rc == REMEX_OK && (rc = http_check_status(what, r.status, NULL, e)) == REMEX_OK)
        rc = gcpauth_parse_token(r.body.data ? r.body.data : "", r.body.len, g->token,
                                 sizeof(g->token), &exp, e);
    else if (rc != REMEX_OK && r.status == 0)
        remex_errprefix(e, "%s", what);
    if (r.body.data)
        OPENSSL_cleanse(r.body.data, r.body.len);
    http_response_free(&r);
    if (rc != REMEX_OK)
        return rc;
    g->expires = time(NULL) + (time_t)exp;
    *token = g->token;
    return REMEX_OK;
}
