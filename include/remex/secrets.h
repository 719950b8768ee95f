/*
 * secrets: the agent's chain of connection and variable backends.
 *
 * Lookups try, in order: the environment (REMEX_CONN_<ID>, REMEX_VAR_<KEY>,
 * with ID/KEY upper-cased and '-' / '.' turned into '_'), then the local
 * secrets file (JSON, or YAML when it ends in .yaml/.yml):
 *
 *   {"connections": {"warehouse": "postgres://etl:pw@db:5432/dw?sslmode=require",
 *                    "api": {"conn_type": "http", "host": "api.internal",
 *                            "password": "...", "extra": {"timeout": 30}}},
 *    "variables":   {"region": "eu-west-1", "limits": {"rows": 1000}}}
 *
 * A connection is an Airflow-style URI or a JSON object with the fields of
 * struct secrets_conn. The file must not be readable by group or others; it is
 * re-read when its modification time or size changes.
 *
 * Remote backends (HashiCorp Vault: remex/secrets_vault.h; AWS Secrets
 * Manager and SSM Parameter Store: remex/secrets_aws.h; Google Cloud Secret
 * Manager: remex/secrets_gcp.h; Azure Key Vault: remex/secrets_azkv.h) join
 * the chain when configured. The chain's order is cfg->order (default: env,
 * file, vault, aws_secrets_manager, aws_ssm, gcp_secret_manager,
 * azure_key_vault); the first backend that has the key wins. Cloud secret
 * values are the connection's URI or JSON fields, or the variable. A backend
 * that fails (down, refusing) ends the lookup with an error naming the
 * backend and the key. Remote results are cached for cache_ttl_ms (default
 * 60 s); remote lookups block (call them off any event loop). Vault layout
 * (Airflow's): connections at <mount>/<connections_path>/<id> holding
 * conn_uri or the connection's fields, variables at
 * <mount>/<variables_path>/<key> holding value.
 *
 * Values never appear in error messages. Thread-safety: one owner.
 */
#ifndef REMEX_SECRETS_H
#define REMEX_SECRETS_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#include <stdint.h>

#include "remex/buf.h"
#include "remex/err.h"
#include "remex/secrets_aws.h"
#include "remex/secrets_azkv.h"
#include "remex/secrets_gcp.h"
#include "remex/secrets_vault.h"

#define SECRETS_FILE_MAX (1u << 20)
#define SECRETS_URI_MAX  8192

/* A connection; every string owned (NULL when absent), port 0 when absent. */
struct secrets_conn {
    char *conn_type;
    char *host;
    char *login;
    char *password;
    char *schema;
    int port;
    json_t *extra; /* owned object, never NULL after a successful parse */
};

void secrets_conn_free(struct secrets_conn *c);

/*
 * Parses "type://login:password@host:port/schema?k=v&__extra__=JSON" (each part
 * optional after the scheme; percent-decoding applied; query parameters become
 * string fields of extra; __extra__ is a JSON object merged into extra).
 */
remex_err secrets_conn_parse_uri(const char *uri, struct secrets_conn *out, struct remex_error *e);
/* Decodes the JSON object form (borrowed obj). Errors name the field. */
remex_err secrets_conn_from_json(const json_t *obj, struct secrets_conn *out,
                                 struct remex_error *e);
/* Serialises to an Airflow URI (percent-encoding login, password, schema). */
remex_err secrets_conn_uri(const struct secrets_conn *c, struct buf *out);
/* JSON object with every field (owned), or NULL on ENOMEM. */
json_t *secrets_conn_json(const struct secrets_conn *c);

#define SECRETS_CACHE_TTL_MS_DEFAULT 60000
#define SECRETS_CACHE_MAX            4096 /* cached entries; the oldest go first */

struct secrets_config {
    const char *file;                         /* NULL: no file backend */
    int no_env;                               /* 1: skip the environment backend */
    const char *(*getenv_fn)(const char *);   /* NULL: getenv */
    const struct secrets_vault_config *vault; /* NULL: no Vault backend */
    const char *vault_connections_path;       /* NULL: "connections" */
    const char *vault_variables_path;         /* NULL: "variables" */
    /* AWS Secrets Manager / SSM Parameter Store, or NULL; their prefixes (NULL: Airflow's
     * "airflow/connections", "airflow/variables"; SSM: "/airflow/connections", ...). */
    const struct secrets_aws_config *aws_sm;
    const struct secrets_aws_config *aws_ssm;
    const char *aws_sm_connections_prefix, *aws_sm_variables_prefix;
    const char *aws_ssm_connections_prefix, *aws_ssm_variables_prefix;
    /* Google Cloud Secret Manager, or NULL; names <prefix>-<id> (NULL prefixes: Airflow's
     * "airflow-connections", "airflow-variables"). */
    const struct secrets_gcp_config *gcp;
    const char *gcp_connections_prefix, *gcp_variables_prefix;
    /* Azure Key Vault, or NULL; names <prefix>-<id> with '_' and '.' as '-' (NULL prefixes:
     * "airflow-connections", "airflow-variables"). */
    const struct secrets_azkv_config *azkv;
    const char *azkv_connections_prefix, *azkv_variables_prefix;
    /* NULL-terminated backend names ("env", "file", "vault", "aws_secrets_manager",
     * "aws_ssm", "gcp_secret_manager", "azure_key_vault"), or NULL: all, in that order */
    const char *const *order;
    uint64_t cache_ttl_ms;    /* 0: SECRETS_CACHE_TTL_MS_DEFAULT */
    uint64_t (*now_ms)(void); /* NULL: the monotonic clock (tests inject their own) */
};

struct secrets;

remex_err secrets_open(const struct secrets_config *cfg, struct secrets **out,
                       struct remex_error *e);
void secrets_close(struct secrets *s);

/* REMEX_ENOTFOUND when no backend has it. */
remex_err secrets_get_conn(struct secrets *s, const char *conn_id, struct secrets_conn *out,
                           struct remex_error *e);
/* *out is malloc'd (caller frees): strings verbatim, other JSON values compact. */
remex_err secrets_get_var(struct secrets *s, const char *key, char **out, struct remex_error *e);

/*
 * Health probe: looks variable key (one that is never defined) up in each
 * configured backend on its own, in chain order, and calls fn once per backend
 * with its name ("vault", ...), REMEX_OK when it answered (found or not) or
 * its failure with the message (which names the backend's service, never a
 * value). Blocking like the lookups. Returns the number of backends probed.
 */
size_t secrets_probe(struct secrets *s, const char *key,
                     void (*fn)(const char *backend, remex_err rc, const char *msg, void *ud),
                     void *ud);

/*
 * The configured backends in chain order, as secrets_probe visits them:
 * stores up to cap static names ("env", "vault", ...) and returns how many.
 */
size_t secrets_chain(const struct secrets *s, const char **names, size_t cap);

#endif
