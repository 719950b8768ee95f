/* secrets_aws: AWS Secrets Manager and SSM Parameter Store over SigV4-signed JSON 1.1. */
#include "remex/secrets_aws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "remex/awscreds.h"
#include "remex/hash.h"
#include "remex/http.h"
#include "remex/json.h"
#include "remex/sigv4.h"

#define AWS_HOST_MAX 256
#define AWS_NAME_MAX 2048

struct secrets_aws {
    enum secrets_aws_service svc;
    char region[64];
    char host[AWS_HOST_MAX];
    struct awscreds *provider; /* owned */
    struct sigv4_creds creds;  /* current copy from provider; secret: wiped at close */
    struct http_client *http;
};

static const char *std_getenv(const char *n)
{
    return getenv(n);
}

static const char *svc_name(enum secrets_aws_service s)
{
    return s == SECRETS_AWS_SSM ? "ssm" : "secretsmanager";
}

static const char *svc_label(enum secrets_aws_service s)
{
    return s == SECRETS_AWS_SSM ? "aws ssm" : "aws secrets manager";
}

void secrets_aws_close(struct secrets_aws *a)
{
    if (!a)
        return;
    http_client_free(a->http);
    awscreds_close(a->provider);
    sigv4_creds_wipe(&a->creds);
    free(a);
}

/* Sets a->host from endpoint ("scheme://host[:port]" only) and copies the base URL. */
static remex_err set_endpoint(struct secrets_aws *a, const char *endpoint, char *base, size_t cap,
                              struct remex_error *e)
{
    const char *h = strstr(endpoint, "://");
    size_t hn;
    if (!h || (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0))
        return remex_seterr(e, REMEX_EINVAL, "%s: endpoint must be http(s)://host",
                            svc_label(a->svc));
    h += 3;
    hn = strcspn(h, "/?#@");
    if (hn == 0 || h[hn] != '\0' || hn >= sizeof(a->host) || strlen(endpoint) >= cap)
        return remex_seterr(e, REMEX_EINVAL, "%s: endpoint must be scheme://host[:port] only",
                            svc_label(a->svc));
    memcpy(a->host, h, hn);
    a->host[hn] = '\0';
    snprintf(base, cap, "%s", endpoint);
    return REMEX_OK;
}

remex_err secrets_aws_open(const struct secrets_aws_config *cfg, struct secrets_aws **out,
                           struct remex_error *e)
{
    const char *(*g)(const char *) = cfg->getenv_fn ? cfg->getenv_fn : std_getenv;
    const char *region = cfg->region;
    char base[AWS_HOST_MAX + 16], def[AWS_HOST_MAX];
    struct secrets_aws *a = calloc(1, sizeof(*a));
    remex_err rc;
    if (!a)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    a->svc = cfg->service;
    if (!region || !*region)
        region = g("AWS_REGION");
    if (!region || !*region)
        region = g("AWS_DEFAULT_REGION");
    if (!region || !*region)
        region = "us-east-1";
    snprintf(a->region, sizeof(a->region), "%s", region);
    snprintf(def, sizeof(def), "https://%s.%s.amazonaws.com", svc_name(a->svc), a->region);
    rc = set_endpoint(a, cfg->endpoint ? cfg->endpoint : def, base, sizeof(base), e);
    if (rc == REMEX_OK && (rc = awscreds_open(cfg->profile, cfg->credentials_file, cfg->getenv_fn,
                                              cfg->ca_file, &a->provider, e)) != REMEX_OK)
        remex_errprefix(e, "%s", svc_label(a->svc));
    if (rc == REMEX_OK) {
        struct http_client_opts ho = {.base_url = base,
                                      .ca_file = cfg->ca_file,
                                      .max_response_bytes = SECRETS_AWS_REPLY_MAX,
                                      .timeout_ms = 30000,
                                      .max_attempts = 3};
        rc = http_client_new(&ho, &a->http, e);
    }
    if (rc != REMEX_OK) {
        secrets_aws_close(a);
        return rc;
    }
    *out = a;
    return REMEX_OK;
}

/* ---- replies ---- */

static remex_err parse_obj(const char *body, size_t len, json_t **out, struct remex_error *e)
{
    struct json_parse_opts o = {
        .max_bytes = SECRETS_AWS_REPLY_MAX, .max_depth = 16, .name = "aws reply"};
    struct remex_error tmp;
    if (json_parse(body, len, &o, out, &tmp) != REMEX_OK || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return remex_seterr(e, REMEX_EPROTO, "aws reply: not a JSON object");
    }
    return REMEX_OK;
}

remex_err secrets_aws_parse_value(enum secrets_aws_service svc, const char *body, size_t len,
                                  char **value, struct remex_error *e)
{
    json_t *doc = NULL, *v;
    remex_err rc = parse_obj(body, len, &doc, e);
    *value = NULL;
    if (rc != REMEX_OK)
        return rc;
    v = svc == SECRETS_AWS_SSM ? json_object_get(json_object_get(doc, "Parameter"), "Value")
                               : json_object_get(doc, "SecretString");
    if (!json_is_string(v))
        rc = remex_seterr(e, REMEX_EPROTO, "aws reply: %s is not a string",
                          svc == SECRETS_AWS_SSM ? "Parameter.Value"
                                                 : "SecretString (binary secrets are not read)");
    else if (!(*value = strdup(json_string_value(v))))
        rc = remex_seterr(e, REMEX_ENOMEM, "out of memory");
    json_decref(doc);
    return rc;
}

static void printable(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; s && *s && n + 1 < cap; s++)
        if ((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f)
            out[n++] = *s;
    out[n] = '\0';
}

int secrets_aws_parse_error(const char *body, size_t len, char *type, size_t type_cap, char *msg,
                            size_t msg_cap)
{
    json_t *doc = NULL;
    const char *t, *m, *hash;
    if (type_cap)
        type[0] = '\0';
    if (msg_cap)
        msg[0] = '\0';
    if (parse_obj(body, len, &doc, NULL) != REMEX_OK)
        return 0;
    t = json_string_value(json_object_get(doc, "__type"));
    m = json_string_value(json_object_get(doc, "message"));
    if (!m)
        m = json_string_value(json_object_get(doc, "Message"));
    if (t && (hash = strrchr(t, '#')) != NULL)
        t = hash + 1;
    if (type_cap)
        printable(type, type_cap, t);
    if (msg_cap)
        printable(msg, msg_cap, m);
    json_decref(doc);
    return type_cap && type[0] != '\0';
}

/* ---- requests ---- */

/* Maps a non-2xx reply to an error naming the service, the error type and the secret's name. */
static remex_err aws_status(struct secrets_aws *a, const char *name, const struct http_response *r,
                            struct remex_error *e)
{
    char type[96], msg[200];
    remex_err rc = http_check_status("aws", r->status, NULL, NULL);
    if (rc == REMEX_OK)
        return REMEX_OK;
    if (!secrets_aws_parse_error(r->body.data ? r->body.data : "", r->body.len, type, sizeof(type),
                                 msg, sizeof(msg)))
        return remex_seterr(e, rc, "%s: %s: HTTP %ld", svc_label(a->svc), name, r->status);
    if (strcmp(type, "ResourceNotFoundException") == 0 || strcmp(type, "ParameterNotFound") == 0)
        return remex_seterr(e, REMEX_ENOTFOUND, "%s: %s: not found", svc_label(a->svc), name);
    if (strcmp(type, "InvalidSignatureException") == 0 ||
        strcmp(type, "SignatureDoesNotMatch") == 0)
        return remex_seterr(e, REMEX_EFORBIDDEN,
                            "%s (HTTP %ld) on %s: the secret access key does not match the "
                            "access key id",
                            type, r->status, name);
    if (strcmp(type, "AccessDeniedException") == 0 ||
        strcmp(type, "UnrecognizedClientException") == 0)
        rc = REMEX_EFORBIDDEN;
    return remex_seterr(e, rc, "%s (HTTP %ld) on %s: %s", type, r->status, name, msg);
}

/* Signs and sends one JSON 1.1 call; resp holds the reply. */
static remex_err aws_call(struct secrets_aws *a, const char *target, const char *body,
                          struct http_response *resp, struct remex_error *e)
{
    static const char *ctype = "application/x-amz-json-1.1";
    struct buf authz = BUF_INIT(2048);
    char phash[HASH_SHA256_HEX], date[17], hh[AWS_HOST_MAX + 8], dh[40], th[128], ah[2200];
    char tokh[SIGV4_TOKEN_MAX + 32];
    struct sigv4_header sh[5];
    size_t nh = 0, nl = 0;
    const char *lines[6];
    remex_err rc = hash_sha256_hex(body, strlen(body), phash);
    if (rc == REMEX_OK && (rc = awscreds_get(a->provider, &a->creds, e)) != REMEX_OK)
        return rc;
    sigv4_amz_date(time(NULL), date);
    sh[nh++] = (struct sigv4_header){"content-type", ctype};
    sh[nh++] = (struct sigv4_header){"host", a->host};
    sh[nh++] = (struct sigv4_header){"x-amz-date", date};
    sh[nh++] = (struct sigv4_header){"x-amz-target", target};
    if (a->creds.session_token[0])
        sh[nh++] = (struct sigv4_header){"x-amz-security-token", a->creds.session_token};
    struct sigv4_input in = {.method = "POST",
                             .path = "/",
                             .query = "",
                             .headers = sh,
                             .nheaders = nh,
                             .payload_hash = phash,
                             .region = a->region,
                             .service = svc_name(a->svc),
                             .amz_date = date};
    if (rc == REMEX_OK)
        rc = sigv4_authorization(&a->creds, &in, &authz);
    if (rc != REMEX_OK || authz.len + 32 > sizeof(ah)) {
        buf_free(&authz);
        return remex_seterr(e, rc ? rc : REMEX_ETOOBIG, "%s: cannot sign the request",
                            svc_label(a->svc));
    }
    snprintf(hh, sizeof(hh), "Host: %s", a->host);
    snprintf(dh, sizeof(dh), "X-Amz-Date: %s", date);
    snprintf(th, sizeof(th), "X-Amz-Target: %s", target);
    snprintf(ah, sizeof(ah), "Authorization: %s", buf_cstr(&authz));
    lines[nl++] = hh;
    lines[nl++] = dh;
    lines[nl++] = th;
    lines[nl++] = ah;
    if (a->creds.session_token[0]) {
        snprintf(tokh, sizeof(tokh), "X-Amz-Security-Token: %s", a->creds.session_token);
        lines[nl++] = tokh;
    }
    lines[nl] = NULL;
    struct http_request req = {.method = "POST",
                               .path = "/",
                               .body = body,
                               .body_len = strlen(body),
                               .content_type = ctype,
                               .headers = lines,
                               .retry_safe = 1};
    rc = http_do(a->http, &req, resp, e);
    explicit_bzero(ah, sizeof(ah));
    explicit_bzero(tokh, sizeof(tokh));
    buf_free(&authz);
    if (rc != REMEX_OK)
        remex_errprefix(e, "%s", svc_label(a->svc));
    return rc;
}

remex_err secrets_aws_get(struct secrets_aws *a, const char *name, char **value,
                          struct remex_error *e)
{
    struct http_response r = {0};
    json_t *req;
    char *body;
    remex_err rc;
    *value = NULL;
    if (!*name || strlen(name) > AWS_NAME_MAX)
        return remex_seterr(e, REMEX_EINVAL, "%s: invalid secret name", svc_label(a->svc));
    req = a->svc == SECRETS_AWS_SSM ? json_pack("{s:s,s:b}", "Name", name, "WithDecryption", 1)
                                    : json_pack("{s:s}", "SecretId", name);
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    rc = aws_call(
        a, a->svc == SECRETS_AWS_SSM ? "AmazonSSM.GetParameter" : "secretsmanager.GetSecretValue",
        body, &r, e);
    free(body);
    if (rc == REMEX_OK && (rc = aws_status(a, name, &r, e)) == REMEX_OK)
        rc = secrets_aws_parse_value(a->svc, r.body.data ? r.body.data : "", r.body.len, value, e);
    if (r.body.data)
        explicit_bzero(r.body.data, r.body.len);
    http_response_free(&r);
    return rc;
}
