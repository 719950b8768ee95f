/* awscreds: static AWS credentials, or STS web-identity credentials refreshed before expiry. */
#include "remex/awscreds.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/buf.h"
#include "remex/http.h"
#include "remex/timeutil.h"

#define STS_REPLY_MAX (64u * 1024u)
#define STS_TOKEN_MAX (16u * 1024u)
#define STS_REFRESH_S 300

struct awscreds {
    struct sigv4_creds creds; /* secret: wiped at close */
    int web;                  /* 1: web identity, refreshed */
    time_t expires;
    char *token_file;
    char *role_arn;
    struct http_client *sts;
};

static const char *std_getenv(const char *n)
{
    return getenv(n);
}

void awscreds_close(struct awscreds *a)
{
    if (!a)
        return;
    http_client_free(a->sts);
    free(a->token_file);
    free(a->role_arn);
    sigv4_creds_wipe(&a->creds);
    free(a);
}

static const char *env(const char *(*g)(const char *), const char *n)
{
    const char *v = g(n);
    return v && *v ? v : NULL;
}

remex_err awscreds_open(const char *profile, const char *file,
                        const char *(*getenv_fn)(const char *), const char *ca_file,
                        struct awscreds **out, struct remex_error *e)
{
    const char *(*g)(const char *) = getenv_fn ? getenv_fn : std_getenv;
    const char *tf = env(g, "AWS_WEB_IDENTITY_TOKEN_FILE"), *role = env(g, "AWS_ROLE_ARN");
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
        a->web = 1;
        a->token_file = strdup(tf);
        a->role_arn = strdup(role);
        rc = a->token_file && a->role_arn ? http_client_new(&ho, &a->sts, e)
                                          : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    } else {
        rc = sigv4_creds_load(profile, file, getenv_fn, &a->creds, e);
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

remex_err awscreds_get(struct awscreds *a, struct sigv4_creds *out, struct remex_error *e)
{
    if (a->web && (!a->expires || time(NULL) >= a->expires - STS_REFRESH_S)) {
        remex_err rc = exchange(a, e);
        if (rc != REMEX_OK)
            return rc;
    }
    memcpy(out, &a->creds, sizeof(*out));
    return REMEX_OK;
}
