/* secrets_vault: HashiCorp Vault KV v1/v2 reads with token, AppRole or Kubernetes authentication,
 * the token renewed (renew-self) or obtained again before its lease runs out. */
#include "remex/secrets_vault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "remex/http.h"
#include "remex/json.h"

#define VAULT_PATH_MAX 1024
#define VAULT_DEPTH    32

struct secrets_vault {
    struct http_client *http;
    char *mount;
    int kv_version;
    char *namespace_;
    char *token_file;
    char *role_id;
    char *secret_id; /* secret: wiped at close */
    char *secret_id_file;
    char *approle_mount;
    char *k8s_role;
    char *k8s_jwt_file;
    char *k8s_mount;
    char token[SECRETS_VAULT_TOKEN_MAX]; /* secret: wiped at close; "" until known */
    /* Lease of the token: renew (or log in again) from token_renew_at on (0: never, the token
     * has no TTL or it is unknown); renewable as Vault said; looked_up: a given token's TTL was
     * asked for (lookup-self) once since it was read. */
    time_t token_renew_at;
    int renewable;
    int looked_up;
};

static char *dup_or(const char *s, const char *def)
{
    const char *v = s && *s ? s : def;
    return v ? strdup(v) : NULL;
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void secrets_vault_close(struct secrets_vault *v)
{
    if (!v)
        return;
    http_client_free(v->http);
    free(v->mount);
    free(v->namespace_);
    free(v->token_file);
    free(v->role_id);
    wipe_free(v->secret_id);
    free(v->secret_id_file);
    free(v->approle_mount);
    free(v->k8s_role);
    free(v->k8s_jwt_file);
    free(v->k8s_mount);
    explicit_bzero(v->token, sizeof(v->token));
    free(v);
}

/* Reads a one-line secret file (token, secret_id) into out; trailing whitespace dropped. */
static remex_err read_secret_file(const char *path, const char *what, char *out, size_t cap,
                                  struct remex_error *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    if (fd < 0)
        return remex_errno(e, REMEX_EIO, "vault: %s file %s", what, path);
    n = read(fd, out, cap);
    close(fd);
    if (n < 0)
        return remex_errno(e, REMEX_EIO, "vault: %s file %s", what, path);
    if ((size_t)n >= cap) {
        explicit_bzero(out, cap);
        return remex_seterr(e, REMEX_ETOOBIG, "vault: %s file %s: too long", what, path);
    }
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        n--;
    out[n] = '\0';
    for (ssize_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x21 || out[i] == 0x7f) {
            explicit_bzero(out, cap);
            return remex_seterr(e, REMEX_EPARSE, "vault: %s file %s: control character or space",
                                what, path);
        }
    if (n == 0)
        return remex_seterr(e, REMEX_EINVAL, "vault: %s file %s is empty", what, path);
    return REMEX_OK;
}

remex_err secrets_vault_open(const struct secrets_vault_config *cfg, struct secrets_vault **out,
                             struct remex_error *e)
{
    struct secrets_vault *v;
    remex_err rc;
    int approle = cfg->role_id != NULL;
    if (!cfg->url)
        return remex_seterr(e, REMEX_EINVAL, "vault: url is required");
    if (approle + (cfg->token != NULL) + (cfg->token_file != NULL) + (cfg->k8s_role != NULL) != 1)
        return remex_seterr(e, REMEX_EINVAL,
                            "vault: exactly one of token, token_file, role_id "
                            "or a kubernetes role is required");
    if (approle && (cfg->secret_id != NULL) == (cfg->secret_id_file != NULL))
        return remex_seterr(e, REMEX_EINVAL,
                            "vault: approle needs one of secret_id or secret_id_file");
    if (cfg->kv_version != 0 && cfg->kv_version != 1 && cfg->kv_version != 2)
        return remex_seterr(e, REMEX_EINVAL, "vault: kv_version must be 1 or 2");
    if (cfg->token && strlen(cfg->token) >= SECRETS_VAULT_TOKEN_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "vault: token too long");
    if (!(v = calloc(1, sizeof(*v))))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    v->kv_version = cfg->kv_version ? cfg->kv_version : 2;
    v->mount = dup_or(cfg->mount, "secret");
    v->approle_mount = dup_or(cfg->approle_mount, "approle");
    v->namespace_ = dup_or(cfg->namespace_, NULL);
    v->token_file = dup_or(cfg->token_file, NULL);
    v->role_id = dup_or(cfg->role_id, NULL);
    v->secret_id = dup_or(cfg->secret_id, NULL);
    v->secret_id_file = dup_or(cfg->secret_id_file, NULL);
    v->k8s_role = dup_or(cfg->k8s_role, NULL);
    v->k8s_jwt_file =
        dup_or(cfg->k8s_jwt_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
    v->k8s_mount = dup_or(cfg->k8s_mount, "kubernetes");
    if (cfg->token)
        snprintf(v->token, sizeof(v->token), "%s", cfg->token);
    struct http_client_opts ho = {.base_url = cfg->url,
                                  .ca_file = cfg->ca_file,
                                  .max_response_bytes = SECRETS_VAULT_REPLY_MAX,
                                  .timeout_ms = 30000,
                                  .max_attempts = 3};
    if (!v->mount || !v->approle_mount)
        rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
    else if ((rc = http_client_new(&ho, &v->http, e)) != REMEX_OK)
        remex_errprefix(e, "vault");
    else if (v->token_file)
        rc = read_secret_file(v->token_file, "token", v->token, sizeof(v->token), e);
    if (rc != REMEX_OK) {
        secrets_vault_close(v);
        return rc;
    }
    *out = v;
    return REMEX_OK;
}

/* ---- replies ---- */

static remex_err parse_body(const char *body, size_t len, const char *name, json_t **out,
                            struct remex_error *e)
{
    struct json_parse_opts o = {
        .max_bytes = SECRETS_VAULT_REPLY_MAX, .max_depth = VAULT_DEPTH, .name = name};
    struct remex_error tmp;
    /* jansson quotes the input near a syntax error: only the code goes out. */
    if (json_parse(body, len, &o, out, &tmp) != REMEX_OK)
        return remex_seterr(e, REMEX_EPROTO, "%s: not a JSON object", name);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return remex_seterr(e, REMEX_EPROTO, "%s: not a JSON object", name);
    }
    return REMEX_OK;
}

remex_err secrets_vault_parse_read(const char *body, size_t len, int kv_version, json_t **data,
                                   struct remex_error *e)
{
    json_t *doc = NULL, *d;
    remex_err rc = parse_body(body, len, "vault reply", &doc, e);
    *data = NULL;
    if (rc != REMEX_OK)
        return rc;
    d = json_object_get(doc, "data");
    if (kv_version == 2)
        d = json_object_get(d, "data");
    if (!json_is_object(d)) {
        json_decref(doc);
        return remex_seterr(e, REMEX_EPROTO, "vault reply: %s is not an object",
                            kv_version == 2 ? "data.data" : "data");
    }
    *data = json_incref(d);
    json_decref(doc);
    return REMEX_OK;
}

remex_err secrets_vault_parse_auth(const char *body, size_t len, char *token, size_t cap,
                                   long long *lease_s, int *renewable, struct remex_error *e)
{
    json_t *doc = NULL, *auth, *lease, *ren; /* doc owned, the rest borrowed from it */
    const char *t;
    remex_err rc = parse_body(body, len, "vault auth reply", &doc, e);
    if (rc != REMEX_OK)
        return rc;
    auth = json_object_get(doc, "auth");
    t = json_string_value(json_object_get(auth, "client_token"));
    lease = json_object_get(auth, "lease_duration");
    ren = json_object_get(auth, "renewable");
    if (!t || !*t || strlen(t) >= cap || strcspn(t, " \t\r\n") != strlen(t)) {
        rc = remex_seterr(e, REMEX_EPROTO, "vault auth reply: auth.client_token missing or bad");
    } else if (lease && (!json_is_integer(lease) || json_integer_value(lease) < 0)) {
        rc = remex_seterr(e, REMEX_EPROTO, "vault auth reply: auth.lease_duration: bad value");
    } else if (ren && !json_is_boolean(ren)) {
        rc = remex_seterr(e, REMEX_EPROTO, "vault auth reply: auth.renewable: not a boolean");
    } else {
        snprintf(token, cap, "%s", t);
        *lease_s = lease ? (long long)json_integer_value(lease) : 0;
        *renewable = json_is_true(ren);
    }
    json_decref(doc);
    return rc;
}

remex_err secrets_vault_parse_login(const char *body, size_t len, char *token, size_t cap,
                                    long long *lease_s, struct remex_error *e)
{
    int renewable = 0;
    return secrets_vault_parse_auth(body, len, token, cap, lease_s, &renewable, e);
}

remex_err secrets_vault_parse_lookup(const char *body, size_t len, long long *ttl_s, int *renewable,
                                     struct remex_error *e)
{
    json_t *doc = NULL, *data, *ttl, *ren; /* doc owned, the rest borrowed from it */
    remex_err rc = parse_body(body, len, "vault lookup-self reply", &doc, e);
    if (rc != REMEX_OK)
        return rc;
    data = json_object_get(doc, "data");
    ttl = json_object_get(data, "ttl");
    ren = json_object_get(data, "renewable");
    if (!json_is_integer(ttl) || json_integer_value(ttl) < 0)
        rc = remex_seterr(e, REMEX_EPROTO, "vault lookup-self reply: data.ttl missing or bad");
    else if (ren && !json_is_boolean(ren))
        rc =
            remex_seterr(e, REMEX_EPROTO, "vault lookup-self reply: data.renewable: not a boolean");
    else {
        *ttl_s = (long long)json_integer_value(ttl);
        *renewable = json_is_true(ren);
    }
    json_decref(doc);
    return rc;
}

/* ---- requests ---- */

/* One request with the Vault headers; the reply body stays in resp. */
static remex_err vault_do(struct secrets_vault *v, const char *method, const char *path,
                          const char *body, int with_token, struct http_response *resp,
                          struct remex_error *e)
{
    char th[SECRETS_VAULT_TOKEN_MAX + 32], nh[512];
    const char *lines[3];
    size_t n = 0;
    remex_err rc;
    if (with_token) {
        snprintf(th, sizeof(th), "X-Vault-Token: %s", v->token);
        lines[n++] = th;
    }
    if (v->namespace_) {
        snprintf(nh, sizeof(nh), "X-Vault-Namespace: %s", v->namespace_);
        lines[n++] = nh;
    }
    lines[n] = NULL;
    struct http_request req = {.method = method,
                               .path = path,
                               .headers = lines,
                               .body = body,
                               .body_len = body ? strlen(body) : 0};
    rc = http_do(v->http, &req, resp, e);
    explicit_bzero(th, sizeof(th));
    if (rc != REMEX_OK)
        remex_errprefix(e, "vault");
    return rc;
}

/* The next renewal at two thirds of a lease of lease_s seconds, as Vault's agent does; none
 * for a token without TTL. */
static void schedule(struct secrets_vault *v, long long lease_s)
{
    v->token_renew_at = lease_s > 0 ? time(NULL) + (time_t)(lease_s * 2 / 3) : 0;
}

/* Logs in with AppRole or Kubernetes auth: v->token and its renewal time. */
static remex_err approle_login(struct secrets_vault *v, struct remex_error *e)
{
    char sid[SECRETS_VAULT_TOKEN_MAX], path[300];
    struct http_response r = {0};
    long long lease = 0;
    remex_err rc = REMEX_OK;
    int k8s = v->k8s_role != NULL;
    if (k8s)
        rc = read_secret_file(v->k8s_jwt_file, "service account token", sid, sizeof(sid), e);
    else if (v->secret_id_file)
        rc = read_secret_file(v->secret_id_file, "secret_id", sid, sizeof(sid), e);
    else
        snprintf(sid, sizeof(sid), "%s", v->secret_id);
    if (rc != REMEX_OK)
        return rc;
    json_t *b = k8s ? json_pack("{s:s,s:s}", "role", v->k8s_role, "jwt", sid)
                    : json_pack("{s:s,s:s}", "role_id", v->role_id, "secret_id", sid);
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    explicit_bzero(sid, sizeof(sid));
    json_decref(b);
    if (!body)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    snprintf(path, sizeof(path), "/v1/auth/%s/login", k8s ? v->k8s_mount : v->approle_mount);
    rc = vault_do(v, "POST", path, body, 0, &r, e);
    explicit_bzero(body, strlen(body));
    free(body);
    if (rc == REMEX_OK &&
        (rc = http_check_status(k8s ? "vault kubernetes login" : "vault approle login", r.status,
                                NULL, e)) == REMEX_OK)
        rc = secrets_vault_parse_auth(r.body.data ? r.body.data : "", r.body.len, v->token,
                                      sizeof(v->token), &lease, &v->renewable, e);
    if (r.body.data)
        explicit_bzero(r.body.data, r.body.len);
    http_response_free(&r);
    schedule(v, rc == REMEX_OK ? lease : 0);
    return rc;
}

/*
 * renew-self: POST /v1/auth/token/renew-self with the token. The new lease
 * (Vault caps it at the token's max TTL) sets the next renewal. REMEX_EPROTO
 * when Vault grants no time at all.
 */
static remex_err renew_self(struct secrets_vault *v, struct remex_error *e)
{
    char tok[SECRETS_VAULT_TOKEN_MAX];
    struct http_response r = {0};
    long long lease = 0;
    int renewable = 0;
    remex_err rc = vault_do(v, "POST", "/v1/auth/token/renew-self", "{}", 1, &r, e);
    if (rc == REMEX_OK &&
        (rc = http_check_status("vault token renew-self", r.status, NULL, e)) == REMEX_OK)
        rc = secrets_vault_parse_auth(r.body.data ? r.body.data : "", r.body.len, tok, sizeof(tok),
                                      &lease, &renewable, e);
    if (rc == REMEX_OK && lease <= 0)
        rc = remex_seterr(e, REMEX_EPROTO, "vault token renew-self: no time granted");
    if (rc == REMEX_OK) {
        snprintf(v->token, sizeof(v->token), "%s", tok);
        v->renewable = renewable;
        schedule(v, lease);
    }
    explicit_bzero(tok, sizeof(tok));
    if (r.body.data)
        explicit_bzero(r.body.data, r.body.len);
    http_response_free(&r);
    return rc;
}

/* A given token's TTL and renewability (lookup-self), once per token read; when the policy does
 * not allow the lookup, the token is used as it is, without renewal. */
static void lookup_self(struct secrets_vault *v)
{
    struct http_response r = {0};
    struct remex_error e;
    long long ttl = 0;
    int renewable = 0;
    v->looked_up = 1;
    if (vault_do(v, "GET", "/v1/auth/token/lookup-self", NULL, 1, &r, &e) == REMEX_OK &&
        r.status == 200 &&
        secrets_vault_parse_lookup(r.body.data ? r.body.data : "", r.body.len, &ttl, &renewable,
                                   &e) == REMEX_OK) {
        v->renewable = renewable;
        schedule(v, ttl);
    }
    if (r.body.data)
        explicit_bzero(r.body.data, r.body.len);
    http_response_free(&r);
}

/* Gets a fresh token after Vault refused the current one: 0 when there is none to get. */
static int refresh_token(struct secrets_vault *v, struct remex_error *e)
{
    if (v->role_id || v->k8s_role)
        return approle_login(v, e) == REMEX_OK;
    if (v->token_file) {
        v->looked_up = 0;
        v->token_renew_at = 0;
        return read_secret_file(v->token_file, "token", v->token, sizeof(v->token), e) == REMEX_OK;
    }
    return 0;
}

/*
 * Before a read: a token, renewed when its lease is two thirds through. A
 * renewable token is renewed (renew-self); when that fails or the token is
 * not renewable, AppRole / Kubernetes log in again and a token file is read
 * again; a literal token is used until Vault refuses it.
 */
static remex_err ensure_token(struct secrets_vault *v, struct remex_error *e)
{
    int login = v->role_id || v->k8s_role;
    if (login && !v->token[0])
        return approle_login(v, e);
    if (!login && !v->looked_up)
        lookup_self(v);
    if (!v->token_renew_at || time(NULL) < v->token_renew_at)
        return REMEX_OK;
    if (v->renewable && renew_self(v, e) == REMEX_OK)
        return REMEX_OK;
    if (login)
        return approle_login(v, e);
    v->token_renew_at = 0;
    if (v->token_file)
        refresh_token(v, e);
    return REMEX_OK;
}

static int path_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > VAULT_PATH_MAX || p[0] == '/' || strstr(p, ".."))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("/_.-", c)))
            return 0;
    }
    return 1;
}

remex_err secrets_vault_read(struct secrets_vault *v, const char *path, json_t **data,
                             struct remex_error *e)
{
    char url[VAULT_PATH_MAX * 2 + 64];
    struct http_response r = {0};
    remex_err rc = REMEX_OK;
    *data = NULL;
    if (!path_ok(path))
        return remex_seterr(e, REMEX_EINVAL, "vault: invalid secret path");
    snprintf(url, sizeof(url), "/v1/%s/%s%s", v->mount, v->kv_version == 2 ? "data/" : "", path);
    rc = ensure_token(v, e);
    for (int attempt = 0; rc == REMEX_OK; attempt++) {
        rc = vault_do(v, "GET", url, NULL, 1, &r, e);
        if (rc == REMEX_OK && r.status == 403 && attempt == 0 && refresh_token(v, e)) {
            http_response_free(&r);
            continue;
        }
        if (rc == REMEX_OK && r.status == 404)
            rc = remex_seterr(e, REMEX_ENOTFOUND, "vault: %s/%s: not found", v->mount, path);
        else if (rc == REMEX_OK && (rc = http_check_status("vault", r.status, NULL, e)) != REMEX_OK)
            remex_seterr(e, rc, "vault: GET %s/%s: HTTP %ld%s", v->mount, path, r.status,
                         r.status == 403 ? " permission denied (token or policy)" : "");
        else if (rc == REMEX_OK)
            rc = secrets_vault_parse_read(r.body.data ? r.body.data : "", r.body.len, v->kv_version,
                                          data, e);
        if (r.body.data)
            explicit_bzero(r.body.data, r.body.len);
        http_response_free(&r);
        break;
    }
    return rc;
}
