/*
 * agentcfg: the agent.yaml table shared by every role (include/remex/agentcfg.h).
 */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/agentcfg.h"
#include "remex/bundle.h"
#include "remex/objstore.h"
#include "remex/secrets.h"
#include "remex/timeutil.h"

#define F(m)        offsetof(struct agentcfg, m)
#define W(m)        offsetof(struct agentcfg, worker.m)
#define A(m)        offsetof(struct agentcfg, agent.m)
#define S(m)        offsetof(struct agentcfg, sentinel.m)
#define D(m)        offsetof(struct agentcfg, dag_processor.m)
#define T(m)        offsetof(struct agentcfg, triggerer.m)
#define BUNDLES_MAX 256

const char *const agentcfg_memenf_names[] = {"auto", "cgroup2", "cgroup1", "rlimit", NULL};

static const struct cfg_entry bundle_table[] = {
    {.key = "name",
     .type = CFG_STRING,
     .offset = offsetof(struct agentcfg_bundle, name),
     .flags = CFG_REQUIRED,
     .desc = "Bundle name, as the DAGs' bundle.name."},
    {.key = "path",
     .type = CFG_PATH,
     .offset = offsetof(struct agentcfg_bundle, path),
     .desc = "Local bundle: its folder (tasks run in it). Set path or url."},
    {.key = "url",
     .type = CFG_STRING,
     .offset = offsetof(struct agentcfg_bundle, url),
     .desc = "Git bundle: repository URL (https://, http:// on loopback, git://, file://, path)."},
    {.key = "tracking_ref",
     .type = CFG_STRING,
     .offset = offsetof(struct agentcfg_bundle, tracking_ref),
     .def = "main",
     .desc = "Git bundle: branch, tag or full 40-hex commit SHA (pinned)."},
    {.key = "subdir",
     .type = CFG_STRING,
     .offset = offsetof(struct agentcfg_bundle, subdir),
     .desc = "Git bundle: folder of the repository that is the bundle (default: its root)."},
    {.key = "refresh_interval",
     .type = CFG_DURATION,
     .offset = offsetof(struct agentcfg_bundle, refresh_ms),
     .def = "300s",
     .min = 1000,
     .max = 86400000,
     .desc = "Git bundle: how often the dag-processor fetches tracking_ref."},
    {.key = "token",
     .type = CFG_SECRET,
     .offset = offsetof(struct agentcfg_bundle, token),
     .desc = "Git bundle over HTTPS: token sent as the basic-auth password ({file: PATH}, "
             "{env: VAR})."},
    {.key = "ssh_key",
     .type = CFG_PATH,
     .offset = offsetof(struct agentcfg_bundle, ssh_key),
     .desc = "Git bundle over SSH: private key file."},
    {.key = "ssh_passphrase",
     .type = CFG_SECRET,
     .offset = offsetof(struct agentcfg_bundle, ssh_passphrase),
     .desc = "Git bundle over SSH: passphrase of ssh_key ({file: PATH}, {env: VAR})."},
    {.key = "ssh_agent",
     .type = CFG_BOOL,
     .offset = offsetof(struct agentcfg_bundle, ssh_agent),
     .def = "false",
     .desc = "Git bundle over SSH: authenticate with ssh-agent (SSH_AUTH_SOCK) when no ssh_key."},
    {.key = "known_hosts",
     .type = CFG_PATH,
     .offset = offsetof(struct agentcfg_bundle, known_hosts),
     .desc = "Git bundle over SSH: known_hosts file the server's key must be in "
             "(default: ~/.ssh/known_hosts)."},
    {.key = "versioned",
     .type = CFG_BOOL,
     .offset = offsetof(struct agentcfg_bundle, versioned),
     .def = "true",
     .desc = "A task runs only while the folder holds the version its DAG was scheduled with "
             "(false: in the folder as it is)."},
    {0},
};

static const struct cfg_entry instance_table[] = {
    {.key = "name",
     .type = CFG_STRING,
     .offset = offsetof(struct agentcfg_instance, name),
     .flags = CFG_REQUIRED,
     .desc = "Instance name: [A-Za-z0-9._-], also the agent name it registers with."},
    {.key = "queues",
     .type = CFG_STRLIST,
     .offset = offsetof(struct agentcfg_instance, queues),
     .desc = "Queues of this instance (default: worker.queues)."},
    {.key = "slots",
     .type = CFG_INT,
     .offset = offsetof(struct agentcfg_instance, slots),
     .def = "0",
     .min = 0,
     .max = 4096,
     .desc = "Slots of this instance (0: worker.slots)."},
    {0},
};

/* Names of the roles remex-agent knows, as in agent.roles and on the command line. */
const char *const agentcfg_role_names[] = {"worker", "dag-processor", "triggerer", "sentinel",
                                           NULL};

static int check_roles(const void *field, char *why, size_t whysz)
{
    const struct cfg_strlist *l = field;
    for (size_t i = 0; i < l->n; i++) {
        size_t k = 0;
        while (agentcfg_role_names[k] && strcmp(agentcfg_role_names[k], l->items[i]) != 0)
            k++;
        if (!agentcfg_role_names[k]) {
            snprintf(why, whysz,
                     "unknown role '%.64s' (worker, dag-processor, triggerer, sentinel)",
                     l->items[i]);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(l->items[j], l->items[i]) == 0) {
                snprintf(why, whysz, "role '%.64s' listed twice", l->items[i]);
                return -1;
            }
    }
    return 0;
}

static const struct cfg_entry sentinel_role_table[] = {
    {.key = "name",
     .type = CFG_STRING,
     .offset = offsetof(struct agentcfg_sentinel_role, name),
     .flags = CFG_REQUIRED,
     .desc = "Role label of the watched role (its metrics' role label)."},
    {.key = "url",
     .type = CFG_URL,
     .offset = offsetof(struct agentcfg_sentinel_role, url),
     .flags = CFG_REQUIRED,
     .desc = "The role's /healthz URL (200: up and ready)."},
    {0},
};

/* "HOST:PORT" with HOST an IPv4 address or a bracketed IPv6 one, PORT 1..65535. */
static int check_listen(const void *field, char *why, size_t whysz)
{
    const char *s = *(char *const *)field;
    const char *colon = strrchr(s, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || colon == s || !end || *end || end == colon + 1 || port < 1 || port > 65535) {
        snprintf(why, whysz, "expected ADDRESS:PORT (127.0.0.1:9464, [::1]:9464)");
        return -1;
    }
    return 0;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static int check_instances(const void *field, char *why, size_t whysz)
{
    const struct cfg_list *l = field;
    const struct agentcfg_instance *w = l->items;
    for (size_t i = 0; i < l->n; i++) {
        if (!name_ok(w[i].name)) {
            snprintf(why, whysz, "workers[%zu].name: expected 1-64 characters of [A-Za-z0-9._-]",
                     i);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(w[j].name, w[i].name) == 0) {
                snprintf(why, whysz, "workers[%zu].name: '%s' is also workers[%zu]", i, w[i].name,
                         j);
                return -1;
            }
    }
    return 0;
}

static int check_rfc3339(const void *field, char *why, size_t whysz)
{
    int64_t ms;
    if (timeutil_rfc3339_parse(*(char *const *)field, &ms, NULL) == REMEX_OK)
        return 0;
    snprintf(why, whysz, "expected an RFC 3339 time (2026-01-31T00:00:00Z)");
    return -1;
}

static int check_log_level(const void *field, char *why, size_t whysz)
{
    const char *s = *(char *const *)field;
    static const char *const ok[] = {"error", "warn", "info", "debug", NULL};
    for (size_t i = 0; ok[i]; i++)
        if (strcmp(s, ok[i]) == 0)
            return 0;
    snprintf(why, whysz, "expected error, warn, info or debug");
    return -1;
}

static int check_log_format(const void *field, char *why, size_t whysz)
{
    const char *s = *(char *const *)field;
    if (strcmp(s, "text") == 0 || strcmp(s, "json") == 0)
        return 0;
    snprintf(why, whysz, "expected text or json");
    return -1;
}

const char *const agentcfg_path_style_names[] = {"auto", "path", "virtual", NULL};
const char *const agentcfg_logs_stdout_names[] = {"none", "json", NULL};

remex_err agentcfg_objstore_opts(const struct agentcfg *c, const char *url, struct objstore_opts *o,
                                 char **key, struct remex_error *e)
{
    int az = url && strncmp(url, "az://", 5) == 0, gs = url && strncmp(url, "gs://", 5) == 0;
    memset(o, 0, sizeof(*o));
    *key = NULL;
    o->endpoint = az ? c->xcom.azure.endpoint : gs ? c->xcom.gcs.endpoint : c->xcom.s3.endpoint;
    o->gcp_key_file = c->xcom.gcs.key_file;
    o->token_uri = c->xcom.gcs.token_uri;
    o->region = c->xcom.s3.region;
    o->path_style = c->xcom.s3.path_style == 1 ? 1 : c->xcom.s3.path_style == 2 ? 0 : -1;
    o->profile = c->xcom.s3.profile;
    o->credentials_file = c->xcom.s3.credentials_file;
    o->ca_file = c->xcom.ca_file;
    o->azure_tenant_id = c->xcom.azure.tenant_id;
    o->azure_client_id = c->xcom.azure.client_id;
    o->azure_federated_token_file = c->xcom.azure.federated_token_file;
    o->azure_authority = c->xcom.azure.authority_host;
    o->multipart_threshold = c->xcom.multipart_threshold;
    o->part_size = c->xcom.part_size;
    if (az && c->xcom.azure.sas_token.kind != CFG_SECRET_NONE) {
        remex_err rc = cfg_secret_get(&c->xcom.azure.sas_token, key, NULL, e);
        if (rc != REMEX_OK)
            return rc;
        o->azure_sas = *key; /* a SAS token replaces the account key */
    } else if (az && c->xcom.azure.account_key.kind != CFG_SECRET_NONE) {
        remex_err rc = cfg_secret_get(&c->xcom.azure.account_key, key, NULL, e);
        if (rc != REMEX_OK)
            return rc;
        o->azure_key = *key;
    }
    return REMEX_OK;
}

/* A secret's value for a backend: NULL when unset; *path set instead for a file secret. */
static remex_err secret_value(const struct cfg_secret *sec, char **val, const char **path,
                              struct remex_error *e)
{
    *val = NULL;
    *path = NULL;
    if (sec->kind == CFG_SECRET_NONE)
        return REMEX_OK;
    if (sec->kind == CFG_SECRET_FILE) {
        *path = sec->source;
        return REMEX_OK;
    }
    return cfg_secret_get(sec, val, NULL, e);
}

remex_err agentcfg_secrets_open(const struct agentcfg *c, struct secrets **out,
                                struct remex_error *e)
{
    const char *order[16];
    size_t n = 0;
    int named[4] = {0, 0, 0, 0};
    char *azsec = NULL;
    char *tok = NULL, *sid = NULL;
    const char *tok_file = NULL, *sid_file = NULL;
    remex_err rc;
    for (size_t i = 0; i < c->secrets.backends.n && n + 1 < 16; i++) {
        order[n++] = c->secrets.backends.items[i];
        named[0] |= strcmp(order[n - 1], "aws_secrets_manager") == 0;
        named[1] |= strcmp(order[n - 1], "aws_ssm") == 0;
        named[2] |= strcmp(order[n - 1], "gcp_secret_manager") == 0;
        named[3] |= strcmp(order[n - 1], "azure_key_vault") == 0;
    }
    order[n] = NULL;
    struct secrets_gcp_config gcp = {.project = c->secrets.gcp.project,
                                     .key_file = c->secrets.gcp.key_file,
                                     .endpoint = c->secrets.gcp.endpoint,
                                     .token_uri = c->secrets.gcp.token_uri};
    const char *fed = c->secrets.azkv.federated_token_file;
    if (!fed && c->secrets.azkv.client_secret.kind == CFG_SECRET_NONE)
        fed = getenv("AZURE_FEDERATED_TOKEN_FILE");
    struct secrets_azkv_config azkv = {
        .vault_url = c->secrets.azkv.vault_url,
        .tenant_id =
            c->secrets.azkv.tenant_id ? c->secrets.azkv.tenant_id : getenv("AZURE_TENANT_ID"),
        .client_id =
            c->secrets.azkv.client_id ? c->secrets.azkv.client_id : getenv("AZURE_CLIENT_ID"),
        .federated_token_file = fed,
        .authority =
            c->secrets.azkv.authority ? c->secrets.azkv.authority : getenv("AZURE_AUTHORITY_HOST")};
    struct secrets_aws_config aws[2];
    for (int i = 0; i < 2; i++) {
        const struct agentcfg_aws_secrets *a = &c->secrets.aws[i];
        aws[i] = (struct secrets_aws_config){.region = a->region,
                                             .endpoint = a->endpoint,
                                             .profile = a->profile,
                                             .credentials_file = a->credentials_file};
    }
    struct secrets_vault_config vc = {.url = c->secrets.vault.url,
                                      .mount = c->secrets.vault.mount,
                                      .kv_version = (int)c->secrets.vault.kv_version,
                                      .namespace_ = c->secrets.vault.namespace_,
                                      .role_id = c->secrets.vault.role_id,
                                      .approle_mount = c->secrets.vault.approle_mount,
                                      .k8s_role = c->secrets.vault.k8s_role,
                                      .k8s_jwt_file = c->secrets.vault.k8s_jwt_file,
                                      .k8s_mount = c->secrets.vault.k8s_mount,
                                      .ca_file = c->secrets.vault.ca_file};
    struct secrets_config sc = {.file = c->secrets.file,
                                .vault = c->secrets.vault.url ? &vc : NULL,
                                .vault_connections_path = c->secrets.vault.connections_path,
                                .vault_variables_path = c->secrets.vault.variables_path,
                                .order = n ? order : NULL,
                                .cache_ttl_ms = c->secrets.cache_ttl_ms,
                                .aws_sm = named[0] ? &aws[0] : NULL,
                                .aws_ssm = named[1] ? &aws[1] : NULL,
                                .aws_sm_connections_prefix = c->secrets.aws[0].connections_prefix,
                                .aws_sm_variables_prefix = c->secrets.aws[0].variables_prefix,
                                .aws_ssm_connections_prefix = c->secrets.aws[1].connections_prefix,
                                .aws_ssm_variables_prefix = c->secrets.aws[1].variables_prefix,
                                .gcp = named[2] ? &gcp : NULL,
                                .gcp_connections_prefix = c->secrets.gcp.connections_prefix,
                                .gcp_variables_prefix = c->secrets.gcp.variables_prefix,
                                .azkv = named[3] ? &azkv : NULL,
                                .azkv_connections_prefix = c->secrets.azkv.connections_prefix,
                                .azkv_variables_prefix = c->secrets.azkv.variables_prefix};
    rc = secret_value(&c->secrets.vault.token, &tok, &tok_file, e);
    if (rc == REMEX_OK)
        rc = secret_value(&c->secrets.vault.secret_id, &sid, &sid_file, e);
    if (rc == REMEX_OK && named[3] && c->secrets.azkv.client_secret.kind != CFG_SECRET_NONE)
        rc = cfg_secret_get(&c->secrets.azkv.client_secret, &azsec, NULL, e);
    azkv.client_secret = azsec;
    if (rc == REMEX_OK) {
        vc.token = tok;
        vc.token_file = tok_file;
        vc.secret_id = sid;
        vc.secret_id_file = sid_file;
        rc = secrets_open(&sc, out, e);
    }
    cfg_secret_free(tok);
    cfg_secret_free(sid);
    cfg_secret_free(azsec);
    return rc;
}

const struct cfg_entry agentcfg_table[] = {
    /* ---- shared ---- */
    {.key = "plane.url",
     .type = CFG_URL,
     .offset = F(plane.url),
     .flags = CFG_REQUIRED,
     .desc = "Base URL of the orchestration plane."},
    {.key = "plane.token",
     .type = CFG_SECRET,
     .offset = F(plane.token),
     .flags = CFG_REQUIRED,
     .desc = "Agent token: value, {file: PATH} (re-read on SIGHUP and on 401) or {env: VAR}."},
    {.key = "plane.ca_file",
     .type = CFG_PATH,
     .offset = F(plane.ca_file),
     .desc = "CA bundle for TLS verification (default: system store)."},
    {.key = "state_dir",
     .type = CFG_PATH,
     .offset = F(state_dir),
     .def = "/var/lib/remex",
     .desc = "Agent state; each role keeps its own below it (<state_dir>/worker, ...)."},
    {.key = "logs.level",
     .type = CFG_STRING,
     .offset = F(logs.level),
     .def = "info",
     .validate = check_log_level,
     .desc = "Log level of every role: error, warn, info or debug."},
    {.key = "logs.format",
     .type = CFG_STRING,
     .offset = F(logs.format),
     .def = "text",
     .validate = check_log_format,
     .desc = "Log format of every role: text or json."},
    {.key = "bundles",
     .type = CFG_LIST,
     .offset = F(bundles),
     .sub = bundle_table,
     .elem_size = sizeof(struct agentcfg_bundle),
     .max_items = BUNDLES_MAX,
     .desc = "DAG bundles: [{name, path, versioned}]."},
    {.key = "secrets.file",
     .type = CFG_PATH,
     .offset = F(secrets.file),
     .desc = "Local connections/variables file (JSON or YAML, mode 0600)."},
    {.key = "secrets.backends",
     .type = CFG_STRLIST,
     .offset = F(secrets.backends),
     .desc = "Order of the secrets chain: env, file, vault, aws_secrets_manager, aws_ssm, "
             "gcp_secret_manager, azure_key_vault (default: env, file, vault; the first backend "
             "that has the "
             "key wins)."},
    {.key = "secrets.cache_ttl",
     .type = CFG_DURATION,
     .offset = F(secrets.cache_ttl_ms),
     .def = "60s",
     .min = 1,
     .max = 86400000,
     .desc = "How long values from remote backends (Vault) are cached."},
    {.key = "secrets.vault.url",
     .type = CFG_URL,
     .offset = F(secrets.vault.url),
     .desc = "HashiCorp Vault address (https://vault.internal:8200); unset: no Vault backend."},
    {.key = "secrets.vault.mount",
     .type = CFG_STRING,
     .offset = F(secrets.vault.mount),
     .def = "secret",
     .desc = "KV secrets engine mount."},
    {.key = "secrets.vault.kv_version",
     .type = CFG_INT,
     .offset = F(secrets.vault.kv_version),
     .def = "2",
     .min = 1,
     .max = 2,
     .desc = "KV engine version: 1 or 2."},
    {.key = "secrets.vault.namespace",
     .type = CFG_STRING,
     .offset = F(secrets.vault.namespace_),
     .desc = "Vault Enterprise namespace (X-Vault-Namespace)."},
    {.key = "secrets.vault.token",
     .type = CFG_SECRET,
     .offset = F(secrets.vault.token),
     .desc = "Vault token: value, {file: PATH} (re-read when Vault refuses it) or {env: VAR}."},
    {.key = "secrets.vault.role_id",
     .type = CFG_STRING,
     .offset = F(secrets.vault.role_id),
     .desc = "AppRole role_id (instead of a token)."},
    {.key = "secrets.vault.secret_id",
     .type = CFG_SECRET,
     .offset = F(secrets.vault.secret_id),
     .desc = "AppRole secret_id: value, {file: PATH} or {env: VAR}."},
    {.key = "secrets.vault.approle_mount",
     .type = CFG_STRING,
     .offset = F(secrets.vault.approle_mount),
     .def = "approle",
     .desc = "Mount of the AppRole auth method."},
    {.key = "secrets.vault.kubernetes_role",
     .type = CFG_STRING,
     .offset = F(secrets.vault.k8s_role),
     .desc = "Kubernetes auth: the Vault role (instead of a token or AppRole)."},
    {.key = "secrets.vault.kubernetes_jwt_file",
     .type = CFG_PATH,
     .offset = F(secrets.vault.k8s_jwt_file),
     .desc = "Kubernetes auth: the service account token file (default: "
             "/var/run/secrets/kubernetes.io/serviceaccount/token)."},
    {.key = "secrets.vault.kubernetes_mount",
     .type = CFG_STRING,
     .offset = F(secrets.vault.k8s_mount),
     .def = "kubernetes",
     .desc = "Mount of the Kubernetes auth method."},
    {.key = "secrets.vault.connections_path",
     .type = CFG_STRING,
     .offset = F(secrets.vault.connections_path),
     .def = "connections",
     .desc = "Path of connections under the mount (<mount>/<path>/<conn_id>)."},
    {.key = "secrets.vault.variables_path",
     .type = CFG_STRING,
     .offset = F(secrets.vault.variables_path),
     .def = "variables",
     .desc = "Path of variables under the mount (<mount>/<path>/<key>)."},
    {.key = "secrets.vault.ca_file",
     .type = CFG_PATH,
     .offset = F(secrets.vault.ca_file),
     .desc = "CA bundle for Vault's TLS certificate (default: system store)."},
    {.key = "secrets.aws_secrets_manager.region",
     .type = CFG_STRING,
     .offset = F(secrets.aws[0].region),
     .desc =
         "AWS Secrets Manager region (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1); "
         "the backend is used when secrets.backends names aws_secrets_manager."},
    {.key = "secrets.aws_secrets_manager.endpoint",
     .type = CFG_URL,
     .offset = F(secrets.aws[0].endpoint),
     .desc = "AWS Secrets Manager endpoint, scheme://host[:port] (default: the region's)."},
    {.key = "secrets.aws_secrets_manager.profile",
     .type = CFG_STRING,
     .offset = F(secrets.aws[0].profile),
     .desc = "Shared credentials profile (default: environment keys, AWS_PROFILE, default)."},
    {.key = "secrets.aws_secrets_manager.credentials_file",
     .type = CFG_PATH,
     .offset = F(secrets.aws[0].credentials_file),
     .desc = "Shared credentials file (default: AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials)."},
    {.key = "secrets.aws_secrets_manager.connections_prefix",
     .type = CFG_STRING,
     .offset = F(secrets.aws[0].connections_prefix),
     .def = "airflow/connections",
     .desc = "Name prefix of connections (<prefix>/<conn_id>)."},
    {.key = "secrets.aws_secrets_manager.variables_prefix",
     .type = CFG_STRING,
     .offset = F(secrets.aws[0].variables_prefix),
     .def = "airflow/variables",
     .desc = "Name prefix of variables (<prefix>/<key>)."},
    {.key = "secrets.aws_ssm.region",
     .type = CFG_STRING,
     .offset = F(secrets.aws[1].region),
     .desc =
         "SSM Parameter Store region (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1); "
         "the backend is used when secrets.backends names aws_ssm."},
    {.key = "secrets.aws_ssm.endpoint",
     .type = CFG_URL,
     .offset = F(secrets.aws[1].endpoint),
     .desc = "SSM Parameter Store endpoint, scheme://host[:port] (default: the region's)."},
    {.key = "secrets.aws_ssm.profile",
     .type = CFG_STRING,
     .offset = F(secrets.aws[1].profile),
     .desc = "Shared credentials profile (default: environment keys, AWS_PROFILE, default)."},
    {.key = "secrets.aws_ssm.credentials_file",
     .type = CFG_PATH,
     .offset = F(secrets.aws[1].credentials_file),
     .desc = "Shared credentials file (default: AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials)."},
    {.key = "secrets.aws_ssm.connections_prefix",
     .type = CFG_STRING,
     .offset = F(secrets.aws[1].connections_prefix),
     .def = "/airflow/connections",
     .desc = "Name prefix of connections (<prefix>/<conn_id>)."},
    {.key = "secrets.aws_ssm.variables_prefix",
     .type = CFG_STRING,
     .offset = F(secrets.aws[1].variables_prefix),
     .def = "/airflow/variables",
     .desc = "Name prefix of variables (<prefix>/<key>)."},
    {.key = "secrets.gcp_secret_manager.project",
     .type = CFG_STRING,
     .offset = F(secrets.gcp.project),
     .desc = "Google Cloud project of the secrets; the backend is used when secrets.backends "
             "names gcp_secret_manager."},
    {.key = "secrets.gcp_secret_manager.key_file",
     .type = CFG_PATH,
     .offset = F(secrets.gcp.key_file),
     .desc = "Service-account key file (default: GOOGLE_APPLICATION_CREDENTIALS)."},
    {.key = "secrets.gcp_secret_manager.endpoint",
     .type = CFG_URL,
     .offset = F(secrets.gcp.endpoint),
     .desc = "Secret Manager endpoint (default: https://secretmanager.googleapis.com)."},
    {.key = "secrets.gcp_secret_manager.token_uri",
     .type = CFG_URL,
     .offset = F(secrets.gcp.token_uri),
     .desc = "OAuth token endpoint (default: the key file's token_uri)."},
    {.key = "secrets.gcp_secret_manager.connections_prefix",
     .type = CFG_STRING,
     .offset = F(secrets.gcp.connections_prefix),
     .def = "airflow-connections",
     .desc = "Secret name prefix of connections (<prefix>-<conn_id>)."},
    {.key = "secrets.gcp_secret_manager.variables_prefix",
     .type = CFG_STRING,
     .offset = F(secrets.gcp.variables_prefix),
     .def = "airflow-variables",
     .desc = "Secret name prefix of variables (<prefix>-<key>)."},
    {.key = "secrets.azure_key_vault.vault_url",
     .type = CFG_URL,
     .offset = F(secrets.azkv.vault_url),
     .desc = "Key Vault URL (https://NAME.vault.azure.net); the backend is used when "
             "secrets.backends names azure_key_vault."},
    {.key = "secrets.azure_key_vault.tenant_id",
     .type = CFG_STRING,
     .offset = F(secrets.azkv.tenant_id),
     .desc = "Entra ID tenant (default: AZURE_TENANT_ID)."},
    {.key = "secrets.azure_key_vault.client_id",
     .type = CFG_STRING,
     .offset = F(secrets.azkv.client_id),
     .desc = "Application (client) id (default: AZURE_CLIENT_ID)."},
    {.key = "secrets.azure_key_vault.client_secret",
     .type = CFG_SECRET,
     .offset = F(secrets.azkv.client_secret),
     .desc = "Client secret: value, {file: PATH} or {env: VAR} (or a federated token file)."},
    {.key = "secrets.azure_key_vault.federated_token_file",
     .type = CFG_PATH,
     .offset = F(secrets.azkv.federated_token_file),
     .desc = "Workload identity token file (default: AZURE_FEDERATED_TOKEN_FILE when no "
             "client secret)."},
    {.key = "secrets.azure_key_vault.authority",
     .type = CFG_URL,
     .offset = F(secrets.azkv.authority),
     .desc = "Entra ID authority (default: AZURE_AUTHORITY_HOST, else "
             "https://login.microsoftonline.com)."},
    {.key = "secrets.azure_key_vault.connections_prefix",
     .type = CFG_STRING,
     .offset = F(secrets.azkv.connections_prefix),
     .def = "airflow-connections",
     .desc = "Secret name prefix of connections (<prefix>-<conn_id>, '_' and '.' as '-')."},
    {.key = "secrets.azure_key_vault.variables_prefix",
     .type = CFG_STRING,
     .offset = F(secrets.azkv.variables_prefix),
     .def = "airflow-variables",
     .desc = "Secret name prefix of variables (<prefix>-<key>)."},
    {.key = "xcom.store",
     .type = CFG_STRING,
     .offset = F(xcom.store),
     .desc = "Object store URI for XCom values: file:///dir, s3://bucket/prefix, "
             "az://account/container/prefix or gs://bucket/prefix "
             "(default: file://<state_dir>/xcom)."},
    {.key = "xcom.ca_file",
     .type = CFG_PATH,
     .offset = F(xcom.ca_file),
     .desc = "CA bundle for the remote object stores (default: system store)."},
    {.key = "xcom.s3.endpoint",
     .type = CFG_URL,
     .offset = F(xcom.s3.endpoint),
     .desc = "S3-compatible endpoint, scheme://host[:port] (default: AWS_ENDPOINT_URL_S3, "
             "AWS_ENDPOINT_URL, else https://s3.<region>.amazonaws.com)."},
    {.key = "xcom.s3.region",
     .type = CFG_STRING,
     .offset = F(xcom.s3.region),
     .desc = "S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)."},
    {.key = "xcom.s3.path_style",
     .type = CFG_ENUM,
     .offset = F(xcom.s3.path_style),
     .def = "auto",
     .enums = agentcfg_path_style_names,
     .desc = "S3 addressing: path (/bucket/key), virtual (bucket.host/key) or auto (path "
             "with a custom endpoint, else virtual)."},
    {.key = "xcom.s3.profile",
     .type = CFG_STRING,
     .offset = F(xcom.s3.profile),
     .desc = "Profile of the shared credentials file (default: environment keys, AWS_PROFILE, "
             "else default)."},
    {.key = "xcom.s3.credentials_file",
     .type = CFG_PATH,
     .offset = F(xcom.s3.credentials_file),
     .desc = "Shared credentials file (default: AWS_SHARED_CREDENTIALS_FILE, else "
             "~/.aws/credentials)."},
    {.key = "logs.stdout",
     .type = CFG_ENUM,
     .offset = F(logs.stdout_format),
     .def = "none",
     .enums = agentcfg_logs_stdout_names,
     .desc = "Also write task log lines to the worker's stdout: none, or json (one object per "
             "line with the task's identifiers, masked like the log file)."},
    {.key = "logs.local_retention",
     .type = CFG_DURATION,
     .offset = F(logs.local_retention_ms),
     .def = "0s",
     .min = 0,
     .max = 31536000000,
     .desc = "With logs.store: remove a try's local log file this long after its upload "
             "succeeded (0: keep local files)."},
    {.key = "logs.upload_interval",
     .type = CFG_DURATION,
     .offset = F(logs.upload_interval_ms),
     .def = "0s",
     .min = 0,
     .max = 86400000,
     .desc = "With logs.store: also upload a running try's log this often, so its partial log "
             "can be read (0: only when the try ends)."},
    {.key = "xcom.azure.endpoint",
     .type = CFG_URL,
     .offset = F(xcom.azure.endpoint),
     .desc = "Azure Blob endpoint (default: AZURE_STORAGE_ENDPOINT, else "
             "https://<account>.blob.core.windows.net)."},
    {.key = "xcom.azure.account_key",
     .type = CFG_SECRET,
     .offset = F(xcom.azure.account_key),
     .desc = "Storage account key (Shared Key): value, {file: PATH} or {env: VAR} "
             "(default: AZURE_STORAGE_KEY)."},
    {.key = "xcom.azure.sas_token",
     .type = CFG_SECRET,
     .offset = F(xcom.azure.sas_token),
     .desc = "SAS token (account or service SAS, \"sv=...&sig=...\"): value, {file: PATH} or "
             "{env: VAR}; replaces account_key (default: AZURE_STORAGE_SAS_TOKEN)."},
    {.key = "xcom.azure.tenant_id",
     .type = CFG_STRING,
     .offset = F(xcom.azure.tenant_id),
     .desc = "Entra ID tenant for bearer tokens (workload identity; default: AZURE_TENANT_ID)."},
    {.key = "xcom.azure.client_id",
     .type = CFG_STRING,
     .offset = F(xcom.azure.client_id),
     .desc = "Client id of the workload identity (default: AZURE_CLIENT_ID)."},
    {.key = "xcom.azure.federated_token_file",
     .type = CFG_PATH,
     .offset = F(xcom.azure.federated_token_file),
     .desc = "Federated token file traded for Entra ID bearer tokens when neither account_key "
             "nor sas_token is set (default: AZURE_FEDERATED_TOKEN_FILE)."},
    {.key = "xcom.azure.authority_host",
     .type = CFG_URL,
     .offset = F(xcom.azure.authority_host),
     .desc = "Entra ID token endpoint host (default: AZURE_AUTHORITY_HOST, else "
             "https://login.microsoftonline.com)."},
    {.key = "xcom.multipart_threshold",
     .type = CFG_SIZE,
     .offset = F(xcom.multipart_threshold),
     .def = "64MiB",
     .min = 1,
     .max = INT64_MAX,
     .desc = "Objects of this size or more are uploaded in parts (S3 multipart upload, Azure "
             "Put Block + Put Block List)."},
    {.key = "xcom.part_size",
     .type = CFG_SIZE,
     .offset = F(xcom.part_size),
     .def = "16MiB",
     .min = 5 * 1024 * 1024,
     .max = 5368709120,
     .desc = "Size of one part (S3) or block (Azure) of a multipart upload, 5MiB-5GiB; raised "
             "as needed to stay within 10000 parts."},
    {.key = "xcom.gcs.key_file",
     .type = CFG_PATH,
     .offset = F(xcom.gcs.key_file),
     .desc = "GCS service-account key file (default: GOOGLE_APPLICATION_CREDENTIALS)."},
    {.key = "xcom.gcs.endpoint",
     .type = CFG_URL,
     .offset = F(xcom.gcs.endpoint),
     .desc = "GCS endpoint (default: STORAGE_EMULATOR_HOST, else https://storage.googleapis.com)."},
    {.key = "xcom.gcs.token_uri",
     .type = CFG_URL,
     .offset = F(xcom.gcs.token_uri),
     .desc = "OAuth token endpoint (default: the key file's token_uri)."},
    {.key = "logs.store",
     .type = CFG_STRING,
     .offset = F(logs.store),
     .desc = "Object store URI task logs are uploaded to when a try ends (file:///dir or "
             "s3://bucket/prefix or az://account/container/prefix, with the xcom.s3 / xcom.azure "
             "settings); unset: local files only."},
    /* ---- worker ---- */
    {.key = "worker.name",
     .type = CFG_STRING,
     .offset = W(name),
     .def = "worker",
     .desc = "Agent name shown by the plane."},
    {.key = "worker.queues",
     .type = CFG_STRLIST,
     .offset = W(queues),
     .def = "default",
     .desc = "Queues this worker takes work from."},
    {.key = "worker.slots",
     .type = CFG_INT,
     .offset = W(slots),
     .def = "0",
     .min = 0,
     .max = 4096,
     .desc = "Task instances run at once (0: number of CPUs)."},
    {.key = "worker.state_dir",
     .type = CFG_PATH,
     .offset = W(state_dir),
     .desc = "Report journal and task sockets (default: <state_dir>/worker)."},
    {.key = "worker.log_dir",
     .type = CFG_PATH,
     .offset = W(log_dir),
     .def = "/var/log/remex/tasks",
     .desc = "Task logs (dag_id=/run_id=/task_id=/attempt=N.log)."},
    {.key = "worker.log_max_bytes",
     .type = CFG_SIZE,
     .offset = W(log_max_bytes),
     .def = "100MiB",
     .min = 4096,
     .max = INT64_MAX,
     .desc = "Size cap of one try's log; the rest is dropped."},
    {.key = "worker.poll_wait",
     .type = CFG_DURATION,
     .offset = W(poll_wait_ms),
     .def = "30s",
     .min = 1000,
     .max = 60000,
     .desc = "Long-poll wait asked from the plane."},
    {.key = "worker.drain_grace",
     .type = CFG_DURATION,
     .offset = W(drain_grace_ms),
     .def = "600s",
     .min = 0,
     .max = 86400000,
     .desc = "SIGTERM: time running tasks get."},
    {.key = "worker.task_defaults.grace_period",
     .type = CFG_DURATION,
     .offset = W(grace_ms),
     .def = "10s",
     .min = 0,
     .max = 3600000,
     .desc = "SIGTERM to SIGKILL of a task group."},
    {.key = "worker.task_defaults.memory_limit",
     .type = CFG_SIZE,
     .offset = W(memory_limit),
     .def = "0",
     .desc = "Memory limit of a task that declares none (0: none)."},
    {.key = "worker.task_defaults.memory_enforcement",
     .type = CFG_ENUM,
     .offset = W(memory_enforcement),
     .def = "auto",
     .enums = agentcfg_memenf_names,
     .desc = "How memory limits are enforced: auto (cgroup2, else cgroup1, else rlimit), "
             "cgroup2, cgroup1 or rlimit (RLIMIT_AS). A forced mechanism that is not usable "
             "stops the start."},
    {.key = "worker.task_defaults.cpu_time",
     .type = CFG_DURATION,
     .offset = W(cpu_time_ms),
     .def = "0",
     .desc = "CPU time limit of a task that declares none (0: none)."},
    {.key = "worker.task_defaults.processes",
     .type = CFG_INT,
     .offset = W(max_processes),
     .def = "0",
     .min = 0,
     .max = 1000000,
     .desc = "RLIMIT_NPROC (per uid!) (0: none)."},
    {.key = "worker.task_defaults.open_files",
     .type = CFG_INT,
     .offset = W(open_files),
     .def = "0",
     .min = 0,
     .max = 1048576,
     .desc = "RLIMIT_NOFILE of a task (0: inherit)."},
    {.key = "worker.cgroup_parent",
     .type = CFG_PATH,
     .offset = W(cgroup_parent),
     .def = "/sys/fs/cgroup/remex",
     .desc = "cgroup v2 parent of per-task cgroups, when usable (cgroup v1 needs no setting: "
             "the worker's own memory cgroup is found in /proc/self)."},
    {.key = "worker.socket_dir",
     .type = CFG_PATH,
     .offset = W(socket_dir),
     .desc = "Parent folder of the task sockets (default: $XDG_RUNTIME_DIR, /dev/shm if it "
             "is tmpfs, else the worker's state_dir)."},
    {.key = "worker.log_level",
     .type = CFG_STRING,
     .offset = W(log_level),
     .validate = check_log_level,
     .desc = "The worker's log level (default: logs.level)."},
    {.key = "worker.listen",
     .type = CFG_STRING,
     .offset = W(listen),
     .validate = check_listen,
     .desc = "Address of the worker's own /healthz, /livez and /metrics (ADDRESS:PORT), for "
             "probes and scraping one container per role; unset: none."},
    {.key = "worker.log_format",
     .type = CFG_STRING,
     .offset = W(log_format),
     .validate = check_log_format,
     .desc = "The worker's log format (default: logs.format)."},
    /* ---- dag_processor ---- */
    {.key = "dag_processor.name",
     .type = CFG_STRING,
     .offset = D(name),
     .def = "dag-processor",
     .desc = "Agent name of the dag-processor shown by the plane."},
    {.key = "dag_processor.state_dir",
     .type = CFG_PATH,
     .offset = D(state_dir),
     .desc = "File-hash cache of each bundle (default: <state_dir>/dag_processor)."},
    {.key = "dag_processor.refresh_interval",
     .type = CFG_DURATION,
     .offset = D(refresh_ms),
     .def = "30s",
     .min = 1000,
     .max = 86400000,
     .desc = "Rescan of each local bundle (unchanged files cost one stat each); the worker "
             "snapshots versioned local bundles at the same interval."},
    {.key = "dag_processor.keep_versions",
     .type = CFG_INT,
     .offset = D(keep_versions),
     .def = "5",
     .min = 1,
     .max = 1000,
     .desc = "Git checkouts and local snapshots kept besides the current one (never one a "
             "task runs in)."},
    {.key = "dag_processor.parse_timeout",
     .type = CFG_DURATION,
     .offset = D(parse_timeout_ms),
     .def = "5s",
     .min = 1,
     .max = 600000,
     .desc = "CPU time cap of one DAG file's parse: a file past it becomes an import error "
             "naming the cap."},
    {.key = "dag_processor.reconcile_interval",
     .type = CFG_DURATION,
     .offset = D(reconcile_ms),
     .def = "10m",
     .min = 1000,
     .max = 86400000,
     .desc = "An unchanged bundle's manifest is sent again after this long, so that a plane "
             "that lost DAGs gets them back."},
    {.key = "dag_processor.listen",
     .type = CFG_STRING,
     .offset = D(listen),
     .validate = check_listen,
     .desc = "Address of the dag-processor's own /healthz, /livez and /metrics (ADDRESS:PORT); "
             "unset: none."},
    {.key = "dag_processor.log_level",
     .type = CFG_STRING,
     .offset = D(log_level),
     .validate = check_log_level,
     .desc = "The dag-processor's log level (default: logs.level)."},
    {.key = "dag_processor.log_format",
     .type = CFG_STRING,
     .offset = D(log_format),
     .validate = check_log_format,
     .desc = "The dag-processor's log format (default: logs.format)."},
    /* ---- sentinel ---- */
    {.key = "sentinel.name",
     .type = CFG_STRING,
     .offset = S(name),
     .def = "sentinel",
     .desc = "Agent name the sentinel registers with (health reports are shown under it)."},
    {.key = "sentinel.listen",
     .type = CFG_STRING,
     .offset = S(listen),
     .def = "127.0.0.1:9464",
     .validate = check_listen,
     .desc = "Address of /health and /metrics (ADDRESS:PORT; all interfaces only when given "
             "as 0.0.0.0 or [::])."},
    {.key = "sentinel.agent_socket",
     .type = CFG_PATH,
     .offset = S(agent_socket),
     .desc = "The supervisor's control socket (default: <state_dir>/agent.sock)."},
    {.key = "sentinel.roles",
     .type = CFG_LIST,
     .offset = S(roles),
     .sub = sentinel_role_table,
     .elem_size = sizeof(struct agentcfg_sentinel_role),
     .max_items = 64,
     .desc = "Roles in their own containers, watched through their /healthz: [{name, url}] "
             "(empty: the supervisor's control socket)."},
    {.key = "sentinel.interval",
     .type = CFG_DURATION,
     .offset = S(interval_ms),
     .def = "0",
     .max = 3600000,
     .desc = "Checks and health reports (0: the plane's heartbeat interval)."},
    {.key = "sentinel.disk_warn_free",
     .type = CFG_INT,
     .offset = S(disk_warn_pct),
     .def = "10",
     .min = 0,
     .max = 100,
     .desc = "Free space (percent) below which a folder's disk is a warning."},
    {.key = "sentinel.disk_fail_free",
     .type = CFG_INT,
     .offset = S(disk_fail_pct),
     .def = "5",
     .min = 0,
     .max = 100,
     .desc = "Free space (percent) below which a folder's disk fails the check."},
    {.key = "sentinel.token_warn",
     .type = CFG_DURATION,
     .offset = S(token_warn_ms),
     .def = "7d",
     .desc = "Agent token expiring within this is a warning."},
    {.key = "sentinel.token_expires_at",
     .type = CFG_STRING,
     .offset = S(token_expires_at),
     .validate = check_rfc3339,
     .desc = "The agent token's expiry as `remexctl tokens create` printed it (the plane does "
             "not tell agents)."},
    {.key = "sentinel.plane_rtt_warn",
     .type = CFG_DURATION,
     .offset = S(rtt_warn_ms),
     .def = "2s",
     .desc = "Round trip of a plane call above this is a warning."},
    {.key = "sentinel.tls_warn",
     .type = CFG_DURATION,
     .offset = S(tls_warn_ms),
     .def = "14d",
     .desc = "The plane's TLS certificate expiring within this is a warning."},
    {.key = "sentinel.log_level",
     .type = CFG_STRING,
     .offset = S(log_level),
     .validate = check_log_level,
     .desc = "The sentinel's log level (default: logs.level)."},
    {.key = "sentinel.log_format",
     .type = CFG_STRING,
     .offset = S(log_format),
     .validate = check_log_format,
     .desc = "The sentinel's log format (default: logs.format)."},
    /* ---- agent (the supervisor) ---- */
    {.key = "agent.roles",
     .type = CFG_STRLIST,
     .offset = A(roles),
     .def = "worker,dag-processor,triggerer,sentinel",
     .validate = check_roles,
     .desc = "Roles remex-agent starts: worker, dag-processor, triggerer, sentinel."},
    {.key = "agent.control_socket",
     .type = CFG_PATH,
     .offset = A(control_socket),
     .desc =
         "Control socket of remex-agent (status, restart, stop; default <state_dir>/agent.sock)."},
    {.key = "agent.stop_grace",
     .type = CFG_DURATION,
     .offset = A(stop_grace_ms),
     .def = "10s",
     .min = 0,
     .max = 3600000,
     .desc = "Forced stop: SIGTERM to a role's process group, SIGKILL after this long."},
    {.key = "agent.restart_delay",
     .type = CFG_DURATION,
     .offset = A(restart_ms),
     .def = "1s",
     .min = 10,
     .max = 60000,
     .desc = "First delay before a role is restarted; it doubles at each crash, up to 60 s."},
    {.key = "agent.workers",
     .type = CFG_LIST,
     .offset = A(workers),
     .sub = instance_table,
     .elem_size = sizeof(struct agentcfg_instance),
     .max_items = 64,
     .validate = check_instances,
     .desc = "Worker instances of their own: [{name, queues, slots}] (default: one, worker.*)."},
    /* ---- triggerer ---- */
    {.key = "triggerer.name",
     .type = CFG_STRING,
     .offset = T(name),
     .def = "triggerer",
     .desc = "Agent name of the triggerer shown by the plane."},
    {.key = "triggerer.capacity",
     .type = CFG_INT,
     .offset = T(capacity),
     .def = "10000",
     .min = 1,
     .max = 1000000,
     .desc = "Triggers held at once; the plane hands out no more."},
    {.key = "triggerer.state_dir",
     .type = CFG_PATH,
     .offset = T(state_dir),
     .desc = "Event journal (default: <state_dir>/triggerer)."},
    {.key = "triggerer.poll_wait",
     .type = CFG_DURATION,
     .offset = T(poll_wait_ms),
     .def = "30s",
     .min = 1000,
     .max = 60000,
     .desc = "Long-poll wait asked from the plane."},
    {.key = "triggerer.default_timeout",
     .type = CFG_DURATION,
     .offset = T(default_timeout_ms),
     .def = "7d",
     .min = 1000,
     .max = 31622400000,
     .desc = "Timeout of a trigger that declares none; then the task fails (or is skipped "
             "with on_timeout: skip)."},
    {.key = "triggerer.poke_interval",
     .type = CFG_DURATION,
     .offset = T(poke_ms),
     .def = "30s",
     .min = 100,
     .max = 86400000,
     .desc = "Check interval of http, external_run and object_key triggers, and the fallback "
             "poll of file triggers, when the trigger declares none."},
    {.key = "triggerer.http_timeout",
     .type = CFG_DURATION,
     .offset = T(http_timeout_ms),
     .def = "10s",
     .min = 100,
     .max = 600000,
     .desc = "Time one check of an http trigger may take (connect included)."},
    {.key = "triggerer.drain_grace",
     .type = CFG_DURATION,
     .offset = T(drain_grace_ms),
     .def = "5s",
     .min = 0,
     .max = 600000,
     .desc = "SIGTERM: time to deliver fired events before exiting (held triggers go back "
             "to the plane at once)."},
    {.key = "triggerer.listen",
     .type = CFG_STRING,
     .offset = T(listen),
     .validate = check_listen,
     .desc = "Address of the triggerer's own /healthz, /livez and /metrics (ADDRESS:PORT); "
             "unset: none."},
    {.key = "triggerer.log_level",
     .type = CFG_STRING,
     .offset = T(log_level),
     .validate = check_log_level,
     .desc = "The triggerer's log level (default: logs.level)."},
    {.key = "triggerer.log_format",
     .type = CFG_STRING,
     .offset = T(log_format),
     .validate = check_log_format,
     .desc = "The triggerer's log format (default: logs.format)."},
    {0},
};

/* Sets *field to a copy of s when it is unset; -1 out of memory. */
static int derive(char **field, const char *s)
{
    if (*field)
        return 0;
    *field = strdup(s);
    return *field ? 0 : -1;
}

static int derive_defaults(struct agentcfg *c)
{
    char buf[PATH_MAX + 64], cwd[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s/worker", c->state_dir);
    if (derive(&c->worker.state_dir, buf) != 0 || derive(&c->worker.log_level, c->logs.level) ||
        derive(&c->worker.log_format, c->logs.format))
        return -1;
    snprintf(buf, sizeof(buf), "%s/agent.sock", c->state_dir);
    if (derive(&c->sentinel.agent_socket, buf) != 0 ||
        derive(&c->sentinel.log_level, c->logs.level) ||
        derive(&c->sentinel.log_format, c->logs.format))
        return -1;
    snprintf(buf, sizeof(buf), "%s/dag_processor", c->state_dir);
    if (derive(&c->dag_processor.state_dir, buf) != 0 ||
        derive(&c->dag_processor.log_level, c->logs.level) ||
        derive(&c->dag_processor.log_format, c->logs.format))
        return -1;
    snprintf(buf, sizeof(buf), "%s/triggerer", c->state_dir);
    if (derive(&c->triggerer.state_dir, buf) != 0 ||
        derive(&c->triggerer.log_level, c->logs.level) ||
        derive(&c->triggerer.log_format, c->logs.format))
        return -1;
    if (c->state_dir[0] == '/')
        snprintf(buf, sizeof(buf), "file://%s/xcom", c->state_dir);
    else if (getcwd(cwd, sizeof(cwd)))
        snprintf(buf, sizeof(buf), "file://%s/%s/xcom", cwd, c->state_dir);
    else
        return -1;
    if (derive(&c->xcom.store, buf) != 0)
        return -1;
    snprintf(buf, sizeof(buf), "%s/agent.sock", c->state_dir);
    return derive(&c->agent.control_socket, buf);
}

/* Replaces a strlist with a copy of src; -1 out of memory (dst unchanged). */
static int strlist_copy(struct cfg_strlist *dst, const struct cfg_strlist *src)
{
    char **items = calloc(src->n ? src->n : 1, sizeof(char *));
    if (!items)
        return -1;
    for (size_t i = 0; i < src->n; i++)
        if (!(items[i] = strdup(src->items[i]))) {
            while (i--)
                free(items[i]);
            free(items);
            return -1;
        }
    for (size_t i = 0; i < dst->n; i++)
        free(dst->items[i]);
    free(dst->items);
    dst->items = items;
    dst->n = src->n;
    return 0;
}

remex_err agentcfg_instance_apply(struct agentcfg *cfg, const char *instance, struct remex_error *e)
{
    const struct agentcfg_instance *w = cfg->agent.workers.items;
    size_t i = 0;
    while (i < cfg->agent.workers.n && strcmp(w[i].name, instance) != 0)
        i++;
    if (i == cfg->agent.workers.n)
        return remex_seterr(e, REMEX_ENOTFOUND,
                            "--instance %.64s: no such entry in agent.workers (%zu entries)",
                            instance, cfg->agent.workers.n);
    char dir[PATH_MAX + 80];
    snprintf(dir, sizeof(dir), "%s/%s", cfg->worker.state_dir, w[i].name);
    char *name = strdup(w[i].name), *state = strdup(dir);
    if (!name || !state || (w[i].queues.n && strlist_copy(&cfg->worker.queues, &w[i].queues))) {
        free(name);
        free(state);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    free(cfg->worker.name);
    cfg->worker.name = name;
    free(cfg->worker.state_dir);
    cfg->worker.state_dir = state;
    if (w[i].slots)
        cfg->worker.slots = w[i].slots;
    return REMEX_OK;
}

remex_err agentcfg_load(struct agentcfg *cfg, const char *path, struct cfg_errors *errs)
{
    remex_err rc = cfg_load_file(agentcfg_table, cfg, path, NULL, errs);
    if (rc == REMEX_OK && derive_defaults(cfg) != 0) {
        agentcfg_free(cfg);
        return REMEX_ENOMEM;
    }
    return rc;
}

void agentcfg_free(struct agentcfg *cfg)
{
    cfg_free(agentcfg_table, cfg);
}

void agentcfg_bundle_spec(const struct agentcfg *c, const struct agentcfg_bundle *b,
                          struct bundle_spec *out)
{
    *out = (struct bundle_spec){.name = b->name,
                                .path = b->path,
                                .unversioned = !b->versioned,
                                .url = b->url,
                                .ref = b->tracking_ref,
                                .subdir = b->subdir,
                                .state_dir = c->state_dir,
                                .token = &b->token};
}

/* The resources a start would open: bundle folders and the secrets file. */
static int check_resources(const struct agentcfg *c, const char *path, struct buf *out)
{
    struct bundle_spec specs[BUNDLES_MAX];
    const struct agentcfg_bundle *b = c->bundles.items;
    struct bundle_set *bs = NULL;
    struct secrets *sec = NULL;
    struct remex_error e;
    int rc = 0;
    for (size_t i = 0; i < c->bundles.n && i < BUNDLES_MAX; i++)
        agentcfg_bundle_spec(c, &b[i], &specs[i]);
    if (bundle_set_new(specs, c->bundles.n, &bs, &e) != REMEX_OK) {
        buf_printf(out, "%s: bundles: %s\n", path ? path : "(defaults)", e.msg);
        rc = REMEX_EXIT_CONFIG;
    } else if (agentcfg_secrets_open(c, &sec, &e) != REMEX_OK) {
        buf_printf(out, "%s: secrets%s: %s\n", path ? path : "(defaults)",
                   strncmp(e.msg, "vault", 5) == 0 ? "" : ".file", e.msg);
        rc = REMEX_EXIT_CONFIG;
    }
    bundle_set_free(bs);
    secrets_close(sec);
    return rc;
}

int agentcfg_check(const char *path, struct buf *out)
{
    struct agentcfg c = {0};
    struct cfg_errors *errs = calloc(1, sizeof(*errs));
    if (!errs)
        return cfg_check_report(REMEX_ENOMEM, NULL, out);
    remex_err rc = agentcfg_load(&c, path, errs);
    int code = rc == REMEX_OK ? check_resources(&c, path, out) : 0;
    if (code == 0)
        code = cfg_check_report(rc, errs, out);
    agentcfg_free(&c);
    free(errs);
    return code;
}
