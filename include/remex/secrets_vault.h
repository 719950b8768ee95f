/*
 * secrets_vault: HashiCorp Vault KV (version 1 and 2) as a secrets backend.
 *
 * Reads <mount>/<path> (KV v1: GET /v1/MOUNT/PATH; KV v2: GET
 * /v1/MOUNT/data/PATH) with the token in the X-Vault-Token header (and
 * X-Vault-Namespace when a namespace is set). Authentication: a token (value
 * or file, the file re-read when Vault refuses the token), AppRole (POST
 * /v1/auth/MOUNT/login with role_id and secret_id) or Kubernetes auth (POST
 * /v1/auth/MOUNT/login with the role and the service-account JWT file, re-read
 * at each login).
 *
 * Token lease: a login's lease_duration and renewable flag, or for a given
 * token its lookup-self ttl and renewable (asked once per token read; a
 * policy that forbids lookup-self means no renewal). At two thirds of the
 * lease a renewable token is renewed (POST /v1/auth/token/renew-self); when
 * the renewal fails or the token is not renewable, AppRole and Kubernetes log
 * in again and a token file is read again. A 403 on a read logs in again (or
 * re-reads the token file) and retries once. Blocking HTTP (lib http): call
 * it off any event loop. Replies are capped at SECRETS_VAULT_REPLY_MAX bytes
 * and JSON depth 32. Tokens and secret values never appear in messages.
 * Thread-safety: one thread at a time per backend.
 */
#ifndef REMEX_SECRETS_VAULT_H
#define REMEX_SECRETS_VAULT_H

#include <jansson.h>
#include <stddef.h>

#include "remex/err.h"

#define SECRETS_VAULT_REPLY_MAX (1u << 20)
#define SECRETS_VAULT_TOKEN_MAX 4096

/* Every string borrowed for the open call (copied); NULL: the default named. */
struct secrets_vault_config {
    const char *url;        /* required: "https://vault.internal:8200" */
    const char *mount;      /* KV mount: "secret" */
    int kv_version;         /* 1 or 2 (0: 2) */
    const char *namespace_; /* Vault Enterprise namespace, or NULL */
    const char *token;      /* a token value, or NULL */
    const char *token_file; /* a file holding the token, or NULL */
    const char *role_id;    /* AppRole: role_id (with secret_id or secret_id_file) */
    const char *secret_id;  /* AppRole: secret_id value */
    const char *secret_id_file;
    const char *approle_mount; /* "approle" */
    const char *k8s_role;      /* Kubernetes auth: the Vault role (instead of token/AppRole) */
    const char *k8s_jwt_file;  /* NULL: /var/run/secrets/kubernetes.io/serviceaccount/token */
    const char *k8s_mount;     /* "kubernetes" */
    const char *ca_file;       /* NULL: system store */
};

struct secrets_vault;

remex_err secrets_vault_open(const struct secrets_vault_config *cfg, struct secrets_vault **out,
                             struct remex_error *e);
void secrets_vault_close(struct secrets_vault *v);

/*
 * Reads the secret at path (relative to the mount, "connections/db") into
 * *data (owned object: its key/value pairs). REMEX_ENOTFOUND when Vault has
 * none; REMEX_EAUTH / REMEX_EFORBIDDEN when it refuses; REMEX_EPROTO for a
 * malformed reply. Messages start with "vault" and name the path.
 */
remex_err secrets_vault_read(struct secrets_vault *v, const char *path, json_t **data,
                             struct remex_error *e);

/*
 * Parsers of Vault replies (exposed for tests and fuzzing). body[0..len) is
 * untrusted. read: *data (owned) is the secret's key/value object of a KV v1
 * or v2 read reply. login / auth (login and renew-self replies): token
 * receives auth.client_token (< cap bytes), *lease_s auth.lease_duration (0
 * when absent), *renewable auth.renewable (0 when absent). lookup: data.ttl
 * (required) and data.renewable of a lookup-self reply.
 */
remex_err secrets_vault_parse_read(const char *body, size_t len, int kv_version, json_t **data,
                                   struct remex_error *e);
remex_err secrets_vault_parse_login(const char *body, size_t len, char *token, size_t cap,
                                    long long *lease_s, struct remex_error *e);
remex_err secrets_vault_parse_auth(const char *body, size_t len, char *token, size_t cap,
                                   long long *lease_s, int *renewable, struct remex_error *e);
remex_err secrets_vault_parse_lookup(const char *body, size_t len, long long *ttl_s, int *renewable,
                                     struct remex_error *e);

#endif
