/* awscreds: AWS credentials from the default chain, refreshed before they expire. */
#include "remex/awscreds.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "remex/buf.h"
#include "remex/http.h"
#include "remex/json.h"
#include "remex/timeutil.h"

#define STS_REPLY_MAX     (64u * 1024u)
#define STS_TOKEN_MAX     (16u * 1024u)
#define STS_REFRESH_S     300
#define IMDS_TOKEN_TTL_S  21600
#define IMDS_ROLE_MAX     128
#define IMDS_DEFAULT      "http://169.254.169.254"
#define IMDS_DEFAULT_V6   "http://[fd00:ec2::254]"
#define ECS_RELATIVE_BASE "http://169.254.170.2"

enum source { SRC_STATIC, SRC_WEB, SRC_CONTAINER, SRC_IMDS };

struct awscreds {
    struct sigv4_creds creds; /* secret: wiped at close */
    enum source src;
    time_t expires; /* refreshed sources: 0 until fetched */
    char *token_file;
    char *role_arn;
    struct http_client *sts;
    /* container: the path of the full URI, the Authorization token (value or file) */
    struct http_client *ctr;
    char *ctr_path;
    char *ctr_auth;      /* secret: wiped at close; NULL when none or from a file */
    char *ctr_auth_file; /* re-read at each fetch */
    /* IMDSv2: the session token and when it runs out, the role (found on first use) */
    struct http_client *imds;
    char imds_token[256]; /* secret: wiped at close */
    time_t imds_token_exp;
    char role[IMDS_ROLE_MAX];
};

static const char *std_getenv(const char *n)
{
    return getenv(n);
}

static void wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void awscreds_close(struct awscreds *a)
{
    if (!a)
        return;
    http_client_free(a->sts);
    http_client_free(a->ctr);
    http_client_free(a->imds);
    free(a->token_file);
    free(a->role_arn);
    free(a->ctr_path);
    wipe_free(a->ctr_auth);
    free(a->ctr_auth_file);
    OPENSSL_cleanse(a->imds_token, sizeof(a->imds_token));
    sigv4_creds_wipe(&a->creds);
    free(a);
}

static const char *env(const char *(*g)(const char *), const char *n)
{
    const char *v = g(n);
    return v && *v ? v : NULL;
}

/* A short client to a metadata endpoint: no proxy, quick timeouts, plain http allowed when the
 * host is one of AWS's link-local addresses (or loopback, which lib http always allows). */
static remex_err meta_client(const char *base, int link_local, const char *ca_file,
                             struct http_client **out, struct remex_error *e)
{
    struct http_client_opts ho = {.base_url = base,
                                  .ca_file = ca_file,
                                  .proxy = "",
                                  .allow_insecure_http = link_local,
                                  .max_response_bytes = STS_REPLY_MAX,
                                  .connect_timeout_ms = 1000,
                                  .timeout_ms = 5000,
                                  .max_attempts = 2};
    return http_client_new(&ho, out, e);
}

/* The host of url ("scheme://host[:port]/..."), for the link-local check. */
static int host_is(const char *url, const char *const *hosts)
{
    const char *h = strstr(url, "://");
    if (!h)
        return 0;
    h += 3;
    for (size_t i = 0; hosts[i]; i++) {
        size_t n = strlen(hosts[i]);
        if (strncmp(h, hosts[i], n) == 0 && (h[n] == '\0' || h[n] == ':' || h[n] == '/'))
            return 1;
    }
    return 0;
}

/* Container credentials (ECS task role, EKS Pod Identity), as the SDKs read them. */
static remex_err open_container(struct awscreds *a, const char *(*g)(const char *),
                                const char *ca_file, struct remex_error *e)
{
    static const char *const ecs[] = {"169.254.170.2", "169.254.170.23", "[fd00:ec2::23]", NULL};
    const char *full = env(g, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *rel = env(g, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *tf = env(g, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *tok = env(g, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    char url[2048], base[1024];
    const char *p, *path;
    if ((size_t)snprintf(url, sizeof(url), "%s%s", rel ? ECS_RELATIVE_BASE : "",
                         rel ? rel : full) >= sizeof(url) ||
        (rel && rel[0] != '/'))
        return remex_seterr(e, REMEX_EINVAL, "aws container credentials: URI too long or invalid");
    p = strstr(url, "://");
    path = p ? strchr(p + 3, '/') : NULL;
    if (!p || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return remex_seterr(e, REMEX_EINVAL,
                            "aws container credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI is "
                            "not an http(s) URL");
    if (!path)
        path = url + strlen(url);
    if ((size_t)(path - url) >= sizeof(base))
        return remex_seterr(e, REMEX_EINVAL, "aws container credentials: host too long");
    snprintf(base, sizeof(base), "%.*s", (int)(path - url), url);
    if (!*path)
        path = "/";
    a->src = SRC_CONTAINER;
    a->ctr_path = strdup(path);
    if (tf)
        a->ctr_auth_file = strdup(tf);
    else if (tok)
        a->ctr_auth = strdup(tok);
    if (!a->ctr_path || (tf && !a->ctr_auth_file) || (!tf && tok && !a->ctr_auth))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    remex_err rc = meta_client(base, host_is(url, ecs), ca_file, &a->ctr, e);
    if (rc != REMEX_OK)
        remex_errprefix(e, "aws container credentials");
    return rc;
}

/* 1 when the machine says it is an EC2 instance (DMI, or the Xen hypervisor's uuid). */
static int on_ec2(void)
{
    static const char *const files[] = {"/sys/devices/virtual/dmi/id/sys_vendor",
                                        "/sys/devices/virtual/dmi/id/bios_vendor",
                                        "/sys/hypervisor/uuid", NULL};
    for (size_t i = 0; files[i]; i++) {
        char b[64] = {0};
        int fd = open(files[i], O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, b, sizeof(b) - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (n > 0 && (strncmp(b, "Amazon EC2", 10) == 0 || strncasecmp(b, "ec2", 3) == 0))
            return 1;
    }
    return 0;
}

remex_err awscreds_open(const char *profile, const char *file,
                        const char *(*getenv_fn)(const char *), const char *ca_file,
                        struct awscreds **out, struct remex_error *e)
{
    const char *(*g)(const char *) = getenv_fn ? getenv_fn : std_getenv;
    const char *tf = env(g, "AWS_WEB_IDENTITY_TOKEN_FILE"), *role = env(g, "AWS_ROLE_ARN");
    const char *off = env(g, "AWS_EC2_METADATA_DISABLED");
    const char *imds = env(g, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
    struct awscreds *a = calloc(1, sizeof(*a));
    remex_err rc;
    if (!a)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if (!profile && tf && role && !env(g, "AWS_ACCESS_KEY_ID")) {
        const char *ep = env(g, "AWS_ENDPOINT_URL_STS"), *region = env(g, "AWS_REGION");
        char def[128];
        snprintf(def, sizeof(def), "https://sts.%s.amazonaws.com", region ? region : "us-east-1");
        struct http_client_opts ho = {.base_url = ep ? ep : def,
                                      .ca_file = ca_file,
                                      .max_response_bytes = STS_REPLY_MAX,
                                      .timeout_ms = 30000,
                                      .max_attempts = 3};
        a->src = SRC_WEB;
        a->token_file = strdup(tf);
        a->role_arn = strdup(role);
        rc = a->token_file && a->role_arn ? http_client_new(&ho, &a->sts, e)
                                          : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    } else {
        rc = sigv4_creds_load(profile, file, getenv_fn, &a->creds, e);
        /* Nothing in the environment nor the file: the container endpoint, then IMDS. */
        if (rc == REMEX_ENOTFOUND && !profile &&
            (env(g, "AWS_CONTAINER_CREDENTIALS_FULL_URI") ||
             env(g, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")))
            rc = open_container(a, g, ca_file, e);
        else if (rc == REMEX_ENOTFOUND && !profile && !(off && strcasecmp(off, "true") == 0) &&
                 (imds || on_ec2())) {
            const char *mode = env(g, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
            const char *def =
                mode && strcasecmp(mode, "IPv6") == 0 ? IMDS_DEFAULT_V6 : IMDS_DEFAULT;
            a->src = SRC_IMDS;
            if ((rc = meta_client(imds ? imds : def, 1, NULL, &a->imds, e)) != REMEX_OK)
                remex_errprefix(e, "aws imds");
        }
    }
    if (rc != REMEX_OK) {
        awscreds_close(a);
        return rc;
    }
    *out = a;
    return REMEX_OK;
}
/* The text of <tag>...</tag> (printable ASCII, no markup) into out; 0 when absent or too long. */
static int xml_text(const char *body, size_t len, const char *tag, char *out, size_t cap)
{
    char o[48], c[48];
    size_t ol = (size_t)snprintf(o, sizeof(o), "<%s>", tag);
    size_t cl = (size_t)snprintf(c, sizeof(c), "</%s>", tag);
    const char *p = memmem(body, len, o, ol), *q;
    if (!p)
        return 0;
    p += ol;
    q = memmem(p, len - (size_t)(p - body), c, cl);
    if (!q || (size_t)(q - p) >= cap || q == p)
        return 0;
    for (const char *x = p; x < q; x++)
        if ((unsigned char)*x < 0x21 || (unsigned char)*x > 0x7e || *x == '<' || *x == '&')
            return 0;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
    return 1;
}

remex_err awscreds_parse_sts(const char *body, size_t len, struct sigv4_creds *out, time_t *expires,
                             struct remex_error *e)
{
    char exp[64];
    int64_t ms = 0;
    if (len > STS_REPLY_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "sts reply: too large");
    memset(out, 0, sizeof(*out));
    if (!xml_text(body, len, "AccessKeyId", out->access_key, sizeof(out->access_key)) ||
        !xml_text(body, len, "SecretAccessKey", out->secret_key, sizeof(out->secret_key)) ||
        !xml_text(body, len, "SessionToken", out->session_token, sizeof(out->session_token)) ||
        !xml_text(body, len, "Expiration", exp, sizeof(exp)) ||
        timeutil_rfc3339_parse(exp, &ms, NULL) != REMEX_OK) {
        sigv4_creds_wipe(out);
        return remex_seterr(e, REMEX_EPROTO, "sts reply: credentials missing or malformed");
    }
    *expires = (time_t)(ms / 1000);
    return REMEX_OK;
}

/* Appends '&name=value' percent-encoded. */
static remex_err form(struct buf *b, const char *name, const char *v, size_t n)
{
    remex_err rc = buf_printf(b, "&%s=", name);
    return rc == REMEX_OK ? sigv4_uri_encode(b, v, n, 0) : rc;
}

/* AssumeRoleWithWebIdentity with the token file's JWT. */
static remex_err exchange(struct awscreds *a, struct remex_error *e)
{
    char tok[STS_TOKEN_MAX], session[64];
    struct buf body = BUF_INIT(64u * 1024u);
    struct http_response r = {0};
    ssize_t n;
    int fd = open(a->token_file, O_RDONLY | O_CLOEXEC);
    remex_err rc;
    if (fd < 0)
        return remex_errno(e, REMEX_EIO, "aws web identity: token file %s", a->token_file);
    n = read(fd, tok, sizeof(tok));
    close(fd);
    while (n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == '\r'))
        n--;
    if (n <= 0 || (size_t)n >= sizeof(tok))
        return remex_seterr(e, REMEX_EINVAL,
                            "aws web identity: token file %s: empty or too "
                            "large",
                            a->token_file);
    snprintf(session, sizeof(session), "remex-%ld", (long)getpid());
    rc = buf_puts(&body, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15");
    if (rc == REMEX_OK)
        rc = form(&body, "RoleArn", a->role_arn, strlen(a->role_arn));
    if (rc == REMEX_OK)
        rc = form(&body, "RoleSessionName", session, strlen(session));
    if (rc == REMEX_OK)
        rc = form(&body, "WebIdentityToken", tok, (size_t)n);
    OPENSSL_cleanse(tok, sizeof(tok));
    struct http_request req = {.method = "POST",
                               .path = "/",
                               .body = body.data,
                               .body_len = body.len,
                               .retry_safe = 1,
                               .content_type = "application/x-www-form-urlencoded"};
    if (rc == REMEX_OK && (rc = http_do(a->sts, &req, &r, e)) != REMEX_OK)
        remex_errprefix(e, "aws web identity");
    else if (rc == REMEX_OK &&
             (rc = http_check_status("aws web identity: sts", r.status, NULL, e)) == REMEX_OK)
        rc = awscreds_parse_sts(r.body.data ? r.body.data : "", r.body.len, &a->creds, &a->expires,
                                e);
    if (body.data)
        OPENSSL_cleanse(body.data, body.len);
    if (r.body.data)
        OPENSSL_cleanse(r.body.data, r.body.len);
    buf_free(&body);
    http_response_free(&r);
    return rc;
}

/* Copies the JSON string field name of obj (borrowed) into out: printable ASCII, < cap. */
static int json_field(const json_t *obj, const char *name, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(obj, name));
    size_t n = v ? strlen(v) : 0;
    if (n == 0 || n >= cap)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e)
            return 0;
    memcpy(out, v, n + 1);
    return 1;
}

remex_err awscreds_parse_json(const char *body, size_t len, struct sigv4_creds *out,
                              time_t *expires, struct remex_error *e)
{
    struct json_parse_opts o = {.max_bytes = STS_REPLY_MAX, .max_depth = 4, .name = "credentials"};
    struct remex_error tmp;
    json_t *doc = NULL; /* owned */
    const char *code;
    char exp[64];
    int64_t ms = 0;
    remex_err rc = REMEX_OK;
    memset(out, 0, sizeof(*out));
    /* jansson quotes the input near a syntax error: the message stays ours. */
    if (len > STS_REPLY_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "credentials reply: too large");
    if (json_parse(body, len, &o, &doc, &tmp) != REMEX_OK || !json_is_object(doc)) {
        json_decref(doc);
        return remex_seterr(e, REMEX_EPROTO, "credentials reply: not a JSON object");
    }
    code = json_string_value(json_object_get(doc, "Code")); /* IMDS only */
    if (code && strcmp(code, "Success") != 0)
        rc = remex_seterr(e, REMEX_EPROTO, "credentials reply: Code is not Success");
    else if (!json_field(doc, "AccessKeyId", out->access_key, sizeof(out->access_key)) ||
             !json_field(doc, "SecretAccessKey", out->secret_key, sizeof(out->secret_key)) ||
             !json_field(doc, "Token", out->session_token, sizeof(out->session_token)))
        rc =
            remex_seterr(e, REMEX_EPROTO,
                         "credentials reply: AccessKeyId, SecretAccessKey or Token missing or bad");
    else if (!json_field(doc, "Expiration", exp, sizeof(exp)) ||
             timeutil_rfc3339_parse(exp, &ms, NULL) != REMEX_OK || ms <= 0)
        rc = remex_seterr(e, REMEX_EPROTO, "credentials reply: Expiration missing or bad");
    json_decref(doc);
    if (rc != REMEX_OK) {
        sigv4_creds_wipe(out);
        return rc;
    }
    *expires = (time_t)(ms / 1000);
    return REMEX_OK;
}

/* Parses a 2xx credentials reply in r into a->creds, wiping and freeing the reply. rc: http_do's
 * (already reported in e when not REMEX_OK). */
static remex_err take_json(struct awscreds *a, const char *what, remex_err rc,
                           struct http_response *r, struct remex_error *e)
{
    if (rc == REMEX_OK && (rc = http_check_status(what, r->status, NULL, e)) == REMEX_OK &&
        (rc = awscreds_parse_json(r->body.data ? r->body.data : "", r->body.len, &a->creds,
                                  &a->expires, e)) != REMEX_OK)
        remex_errprefix(e, "%s", what);
    if (r->body.data)
        OPENSSL_cleanse(r->body.data, r->body.len);
    http_response_free(r);
    return rc;
}

/* GET the container endpoint with its Authorization token (the file re-read each time). */
static remex_err fetch_container(struct awscreds *a, struct remex_error *e)
{
    char tok[STS_TOKEN_MAX + 32], line[STS_TOKEN_MAX + 48];
    const char *lines[2] = {NULL, NULL};
    struct http_response r = {0};
    remex_err rc = REMEX_OK;
    tok[0] = '\0';
    if (a->ctr_auth_file) {
        int fd = open(a->ctr_auth_file, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, tok, STS_TOKEN_MAX) : -1;
        if (fd >= 0)
            close(fd);
        while (n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == '\r'))
            n--;
        if (n <= 0 || n >= (ssize_t)STS_TOKEN_MAX)
            return remex_seterr(e, REMEX_EIO,
                                "aws container credentials: token file %s: unreadable, empty or "
                                "too large",
                                a->ctr_auth_file);
        tok[n] = '\0';
    } else if (a->ctr_auth) {
        snprintf(tok, sizeof(tok), "%s", a->ctr_auth);
    }
    if (tok[0]) {
        snprintf(line, sizeof(line), "Authorization: %s", tok);
        lines[0] = line;
    }
    struct http_request req = {.method = "GET", .path = a->ctr_path, .headers = lines};
    if ((rc = http_do(a->ctr, &req, &r, e)) != REMEX_OK)
        remex_errprefix(e, "aws container credentials");
    OPENSSL_cleanse(tok, sizeof(tok));
    OPENSSL_cleanse(line, sizeof(line));
    return take_json(a, "aws container credentials", rc, &r, e);
}

/* An IMDSv2 session token (PUT /latest/api/token), kept until a minute before it runs out. */
static remex_err imds_session(struct awscreds *a, struct remex_error *e)
{
    static const char *const ttl[] = {"X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL};
    struct http_response r = {0};
    struct http_request req = {.method = "PUT", .path = "/latest/api/token", .headers = ttl};
    remex_err rc;
    if (a->imds_token[0] && time(NULL) < a->imds_token_exp)
        return REMEX_OK;
    rc = http_do(a->imds, &req, &r, e);
    if (rc == REMEX_OK && (rc = http_check_status("aws imds: PUT /latest/api/token", r.status, NULL,
                                                  e)) == REMEX_OK) {
        size_t n = r.body.len;
        while (n > 0 && (r.body.data[n - 1] == '\n' || r.body.data[n - 1] == '\r'))
            n--;
        int ok = n > 0 && n < sizeof(a->imds_token);
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)r.body.data[i] >= 0x21 && (unsigned char)r.body.data[i] <= 0x7e;
        if (ok) {
            memcpy(a->imds_token, r.body.data, n);
            a->imds_token[n] = '\0';
            a->imds_token_exp = time(NULL) + IMDS_TOKEN_TTL_S - 60;
        } else {
            rc = remex_seterr(e, REMEX_EPROTO, "aws imds: session token: empty or malformed");
        }
    } else if (rc != REMEX_OK) {
        remex_errprefix(e, "aws imds");
    }
    if (r.body.data)
        OPENSSL_cleanse(r.body.data, r.body.len);
    http_response_free(&r);
    return rc;
}

/* GET path with the session token; a 401 (token expired) gets a new token once. */
static remex_err imds_get(struct awscreds *a, const char *path, struct http_response *r,
                          struct remex_error *e)
{
    char line[sizeof(a->imds_token) + 40];
    remex_err rc = REMEX_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((rc = imds_session(a, e)) != REMEX_OK)
            return rc;
        snprintf(line, sizeof(line), "X-aws-ec2-metadata-token: %s", a->imds_token);
        const char *lines[] = {line, NULL};
        struct http_request req = {.method = "GET", .path = path, .headers = lines};
        rc = http_do(a->imds, &req, r, e);
        OPENSSL_cleanse(line, sizeof(line));
        if (rc != REMEX_OK || r->status != 401 || attempt == 1)
            break;
        http_response_free(r);
        a->imds_token[0] = '\0';
    }
    if (rc != REMEX_OK)
        remex_errprefix(e, "aws imds: GET %s", path);
    return rc;
}

/* The instance role (first line of the listing), then its credentials. */
static remex_err fetch_imds(struct awscreds *a, struct remex_error *e)
{
    static const char base[] = "/latest/meta-data/iam/security-credentials/";
    char path[sizeof(base) + IMDS_ROLE_MAX];
    struct http_response r = {0};
    remex_err rc;
    if (!a->role[0]) {
        rc = imds_get(a, base, &r, e);
        if (rc == REMEX_OK && r.status == 404)
            rc = remex_seterr(e, REMEX_ENOTFOUND, "aws imds: the instance has no IAM role");
        else if (rc == REMEX_OK)
            rc = http_check_status("aws imds: role", r.status, NULL, e);
        size_t n = rc == REMEX_OK ? strcspn(r.body.data ? r.body.data : "", "\r\n") : 0;
        if (rc == REMEX_OK && (n == 0 || n >= sizeof(a->role) || !r.body.data ||
                               strspn(r.body.data, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                                                   "tuvwxyz0123456789+=,.@_-") != n))
            rc = remex_seterr(e, REMEX_EPROTO, "aws imds: role name missing or malformed");
        if (rc == REMEX_OK) {
            memcpy(a->role, r.body.data, n);
            a->role[n] = '\0';
        }
        http_response_free(&r);
        if (rc != REMEX_OK)
            return rc;
    }
    snprintf(path, sizeof(path), "%s%s", base, a->role);
    rc = imds_get(a, path, &r, e);
    if (rc == REMEX_OK && r.status == 404)
        a->role[0] = '\0'; /* the role was changed: list it again next time */
    return take_json(a, "aws imds: credentials", rc, &r, e);
}

remex_err awscreds_get(struct awscreds *a, struct sigv4_creds *out, struct remex_error *e)
{
    if (a->src != SRC_STATIC && (!a->expires || time(NULL) >= a->expires - STS_REFRESH_S)) {
        struct sigv4_creds old = a->creds;
        time_t old_exp = a->expires;
        remex_err rc = a->src == SRC_WEB         ? exchange(a, e)
                       : a->src == SRC_CONTAINER ? fetch_container(a, e)
                                                 : fetch_imds(a, e);
        if (rc != REMEX_OK && old_exp && time(NULL) < old_exp) {
            /* Still valid: keep them and try again on the next call, as the SDKs do. */
            a->creds = old;
            a->expires = old_exp;
            rc = REMEX_OK;
        }
        sigv4_creds_wipe(&old);
        if (rc != REMEX_OK)
            return rc;
    }
    memcpy(out, &a->creds, sizeof(*out));
    return REMEX_OK;
}
