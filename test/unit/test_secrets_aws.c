/*
 * Unit tests: AWS Secrets Manager and SSM Parameter Store backends in the
 * secrets chain, against test/fake_aws.py, and their reply parsers on
 * malformed input. A fake because no AWS endpoint or emulator can be had
 * here; it recomputes every request's SigV4 signature with Python's own
 * hmac/hashlib (independently of lib sigv4) and refuses a mismatch. It also
 * plays the EC2 instance metadata service (IMDSv2: no session token, no
 * answer) and a container-credentials endpoint (Authorization checked),
 * since neither exists off AWS; their temporary credentials expire.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/awscreds.h"
#include "remex/http.h"
#include "remex/secrets.h"
#include "remex/secrets_aws.h"

#include "helper_fake.h"

static struct test_server srv = {.pid = -1, .stdin_fd = -1};
static char endpoint[64], conf_path[64];
static const char *secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
static const char *access_key = "AKIDREMEXTEST";
static const char *session_token;
static const char *web_token_file, *sts_endpoint;
/* Instance metadata and container credentials (the fake's endpoints). */
static const char *imds_endpoint, *imds_disabled, *ctr_uri, *ctr_token, *ctr_token_file;

static const char *conf =
    "{\"access_key\": \"AKIDREMEXTEST\", \"secret_key\": "
    "\"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\", \"region\": \"eu-west-1\","
    " \"secrets\": {\"airflow/connections/warehouse\": "
    "\"postgres://etl:Sm%20Pw@db.internal:5432/dw\","
    "               \"airflow/connections/api\": \"{\\\"conn_type\\\": \\\"http\\\", "
    "\\\"host\\\": \\\"api\\\", \\\"password\\\": \\\"tok-98765\\\"}\","
    "               \"airflow/variables/region\": \"eu-west-1-sm\"},"
    " \"web_identity\": {\"role_arn\": \"arn:aws:iam::123456789012:role/remex\","
    "                    \"token\": \"eyJraWQiOi.irsa.sig\", \"ttl\": 3600},"
    " \"parameters\": {\"/airflow/variables/region\": \"eu-west-1-ssm\","
    "                  \"/airflow/variables/only-ssm\": \"from-ssm\"},"
    " \"imds\": {\"role\": \"remex-node\", \"ttl\": 3600},"
    " \"container\": {\"token\": \"ctr-auth-7f3a\", \"ttl\": 3600}}";

static const char *fake_env(const char *n)
{
    if (strcmp(n, "AWS_ACCESS_KEY_ID") == 0)
        return access_key;
    if (strcmp(n, "AWS_SECRET_ACCESS_KEY") == 0)
        return secret_key;
    if (strcmp(n, "AWS_SESSION_TOKEN") == 0)
        return session_token;
    if (strcmp(n, "AWS_REGION") == 0)
        return "eu-west-1";
    if (web_token_file && strcmp(n, "AWS_WEB_IDENTITY_TOKEN_FILE") == 0)
        return web_token_file;
    if (web_token_file && strcmp(n, "AWS_ROLE_ARN") == 0)
        return "arn:aws:iam::123456789012:role/remex";
    if (web_token_file && strcmp(n, "AWS_ENDPOINT_URL_STS") == 0)
        return sts_endpoint;
    if (strcmp(n, "AWS_EC2_METADATA_SERVICE_ENDPOINT") == 0)
        return imds_endpoint;
    if (strcmp(n, "AWS_EC2_METADATA_DISABLED") == 0)
        return imds_disabled;
    if (strcmp(n, "AWS_CONTAINER_CREDENTIALS_FULL_URI") == 0)
        return ctr_uri;
    if (strcmp(n, "AWS_CONTAINER_AUTHORIZATION_TOKEN") == 0)
        return ctr_token;
    if (strcmp(n, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") == 0)
        return ctr_token_file;
    return NULL;
}

static int start(void **state)
{
    (void)state;
    snprintf(conf_path, sizeof(conf_path), "/tmp/remex-aws-XXXXXX");
    if (fake_write_tmp(conf_path, conf) != 0)
        return -1;
    return fake_start(&srv, "fake_aws.py", conf_path, endpoint, sizeof(endpoint));
}

static int stop(void **state)
{
    (void)state;
    return fake_stop(&srv, (const char *const[]){conf_path, NULL});
}

static int hits(const char *what)
{
    return fake_counter(endpoint, "/_hits", NULL, what);
}

static uint64_t fake_now = 1000;
static uint64_t now_fn(void)
{
    return fake_now;
}

static struct secrets *open_chain(const char *const *order)
{
    static struct secrets_aws_config sm, ssm;
    sm = (struct secrets_aws_config){.endpoint = endpoint, .getenv_fn = fake_env};
    ssm = sm;
    struct secrets_config sc = {.aws_sm = &sm,
                                .aws_ssm = &ssm,
                                .getenv_fn = fake_env,
                                .order = order,
                                .now_ms = now_fn,
                                .cache_ttl_ms = 500};
    struct secrets *s = NULL;
    struct remex_error e;
    if (secrets_open(&sc, &s, &e) != REMEX_OK)
        fail_msg("secrets_open: %s", e.msg);
    return s;
}

static void test_chain_and_cache(void **state)
{
    (void)state;
    const char *order[] = {"aws_secrets_manager", "aws_ssm", NULL};
    struct secrets *s = open_chain(order);
    struct secrets_conn c = {0};
    struct remex_error e;
    char *v = NULL;
    assert_int_equal(secrets_get_conn(s, "warehouse", &c, &e), REMEX_OK);
    assert_string_equal(c.password, "Sm Pw");
    assert_string_equal(c.host, "db.internal");
    secrets_conn_free(&c);
    assert_int_equal(secrets_get_conn(s, "api", &c, &e), REMEX_OK); /* JSON form */
    assert_string_equal(c.password, "tok-98765");
    secrets_conn_free(&c);
    /* First hit wins: Secrets Manager before SSM; SSM when only it has the key. */
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    assert_string_equal(v, "eu-west-1-sm");
    free(v);
    assert_int_equal(secrets_get_var(s, "only-ssm", &v, &e), REMEX_OK);
    assert_string_equal(v, "from-ssm");
    free(v);
    assert_int_equal(hits("AmazonSSM.GetParameter /airflow/variables/only-ssm"), 1);
    /* Cached within the TTL. */
    assert_int_equal(secrets_get_var(s, "only-ssm", &v, &e), REMEX_OK);
    free(v);
    assert_int_equal(hits("AmazonSSM.GetParameter /airflow/variables/only-ssm"), 1);
    fake_now += 501;
    assert_int_equal(secrets_get_var(s, "only-ssm", &v, &e), REMEX_OK);
    free(v);
    assert_int_equal(hits("AmazonSSM.GetParameter /airflow/variables/only-ssm"), 2);
    assert_int_equal(secrets_get_var(s, "nowhere", &v, &e), REMEX_ENOTFOUND);
    secrets_close(s);
    /* The other order. */
    const char *ssm_first[] = {"aws_ssm", "aws_secrets_manager", NULL};
    s = open_chain(ssm_first);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    assert_string_equal(v, "eu-west-1-ssm");
    free(v);
    secrets_close(s);
}

static void test_session_token_signed(void **state)
{
    (void)state;
    /* The token is a signed header: the fake's recomputed signature covers it. */
    session_token = "IQoJb3JpZ2luX2VjEXAMPLETOKEN";
    struct secrets *s = open_chain(NULL);
    struct remex_error e;
    char *v = NULL;
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    free(v);
    secrets_close(s);
    session_token = NULL;
}

/* EKS IRSA: no keys, a web identity token file and a role: STS issues temporary keys. */
static void test_web_identity(void **state)
{
    (void)state;
    char tf[] = "/tmp/remex-irsa-XXXXXX";
    int fd = mkstemp(tf);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "eyJraWQiOi.irsa.sig\n", 20), 20);
    close(fd);
    const char *ak = access_key, *sk = secret_key;
    access_key = NULL;
    secret_key = NULL;
    web_token_file = tf;
    sts_endpoint = endpoint;
    struct secrets *s = open_chain(NULL);
    struct remex_error e;
    char *v = NULL;
    int before = hits("sts");
    assert_int_equal(secrets_get_var(s, "only-ssm", &v, &e), REMEX_OK);
    assert_string_equal(v, "from-ssm");
    free(v);
    assert_int_equal(hits("sts"), before + 2); /* one exchange per backend, then kept */
    fake_now += 1000;
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    free(v);
    assert_int_equal(hits("sts"), before + 2);
    secrets_close(s);
    /* A token STS does not accept: a clear error, no secret in it. */
    fd = open(tf, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "forged", 6), 6);
    close(fd);
    s = open_chain(NULL);
    assert_int_not_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    assert_non_null(strstr(e.msg, "sts"));
    assert_null(strstr(e.msg, "forged"));
    secrets_close(s);
    unlink(tf);
    web_token_file = NULL;
    access_key = ak;
    secret_key = sk;
}

static void test_refusals(void **state)
{
    (void)state;
    struct remex_error e;
    char *v = NULL;
    secret_key = "not-the-secret-key";
    struct secrets *s = open_chain(NULL);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_EFORBIDDEN);
    assert_non_null(strstr(e.msg, "secrets backend aws_secrets_manager: variable 'region'"));
    assert_non_null(strstr(e.msg, "InvalidSignatureException"));
    assert_null(strstr(e.msg, "not-the-secret-key"));
    secrets_close(s);
    secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    access_key = "AKIDUNKNOWN";
    s = open_chain(NULL);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_EFORBIDDEN);
    assert_non_null(strstr(e.msg, "UnrecognizedClientException"));
    secrets_close(s);
    access_key = "AKIDREMEXTEST";
    /* Down. */
    struct secrets_aws_config down = {.endpoint = "http://127.0.0.1:1", .getenv_fn = fake_env};
    struct secrets_config sc = {.aws_sm = &down, .getenv_fn = fake_env};
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_OK);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_ECONNECT);
    assert_non_null(strstr(e.msg, "aws_secrets_manager"));
    secrets_close(s);
    /* Bad endpoint, bad order. */
    struct secrets_aws *a;
    struct secrets_aws_config bad = {.endpoint = "http://127.0.0.1:1/x", .getenv_fn = fake_env};
    assert_int_equal(secrets_aws_open(&bad, &a, &e), REMEX_EINVAL);
    const char *order[] = {"aws", NULL};
    sc.order = order;
    assert_int_equal(secrets_open(&sc, &s, &e), REMEX_EINVAL);
}

static void test_parsers(void **state)
{
    (void)state;
    char *v = NULL, type[32], msg[64];
    struct remex_error e;
    const char *sm = "{\"Name\":\"x\",\"SecretString\":\"abc\"}";
    assert_int_equal(secrets_aws_parse_value(SECRETS_AWS_SECRETS_MANAGER, sm, strlen(sm), &v, &e),
                     REMEX_OK);
    assert_string_equal(v, "abc");
    free(v);
    const char *ssm = "{\"Parameter\":{\"Value\":\"p\"}}";
    assert_int_equal(secrets_aws_parse_value(SECRETS_AWS_SSM, ssm, strlen(ssm), &v, &e), REMEX_OK);
    assert_string_equal(v, "p");
    free(v);
    const char *bad[] = {"",
                         "[]",
                         "{\"SecretBinary\":\"AAA=\"}",
                         "{\"SecretString\":1}",
                         "{\"SecretString\":\"leak\"",
                         "{\"Parameter\":{}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_not_equal(
            secrets_aws_parse_value(i == 5 ? SECRETS_AWS_SSM : SECRETS_AWS_SECRETS_MANAGER, bad[i],
                                    strlen(bad[i]), &v, &e),
            REMEX_OK);
        assert_null(v);
        assert_null(strstr(e.msg, "leak"));
    }
    const char *err = "{\"__type\":\"com.amazonaws.secretsmanager#ResourceNotFoundException\","
                      "\"message\":\"can't \\u0001find\"}";
    assert_int_equal(
        secrets_aws_parse_error(err, strlen(err), type, sizeof(type), msg, sizeof(msg)), 1);
    assert_string_equal(type, "ResourceNotFoundException");
    assert_string_equal(msg, "can't find");
    assert_int_equal(secrets_aws_parse_error("nope", 4, type, sizeof(type), msg, sizeof(msg)), 0);
    assert_int_equal(secrets_aws_parse_error("{}", 2, type, sizeof(type), msg, sizeof(msg)), 0);
    /* STS replies. */
    struct sigv4_creds c;
    time_t exp = 0;
    const char *sts = "<R><Credentials><AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>sk"
                      "</SecretAccessKey><SessionToken>tok</SessionToken><Expiration>"
                      "2026-12-07T07:00:00Z</Expiration></Credentials></R>";
    assert_int_equal(awscreds_parse_sts(sts, strlen(sts), &c, &exp, &e), REMEX_OK);
    assert_string_equal(c.access_key, "ASIA1");
    assert_string_equal(c.session_token, "tok");
    assert_int_equal(exp, 1796626800);
    const char *bads[] = {"", "<AccessKeyId>A</AccessKeyId>",
                          "<AccessKeyId>A</AccessKeyId><SecretAccessKey>s</SecretAccessKey>"
                          "<SessionToken>t</SessionToken><Expiration>soon</Expiration>",
                          "<AccessKeyId>A B</AccessKeyId><SecretAccessKey>s</SecretAccessKey>"
                          "<SessionToken>t</SessionToken><Expiration>2026-12-07T07:00:00Z"
                          "</Expiration>"};
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        assert_int_equal(awscreds_parse_sts(bads[i], strlen(bads[i]), &c, &exp, &e), REMEX_EPROTO);
        assert_string_equal(c.secret_key, "");
    }
}

/* EC2 instance role: no keys, no file; IMDSv2 (the fake refuses requests without a session
 * token, as an instance with HttpTokens=required does). */
static void test_imds(void **state)
{
    (void)state;
    const char *ak = access_key, *sk = secret_key;
    struct remex_error e;
    char *v = NULL;
    access_key = secret_key = NULL;
    imds_endpoint = endpoint;
    int tokens = hits("imds token"), roles = hits("imds role"), creds = hits("imds creds");
    struct secrets *s = open_chain(NULL);
    assert_int_equal(secrets_get_var(s, "only-ssm", &v, &e), REMEX_OK);
    assert_string_equal(v, "from-ssm");
    free(v);
    /* One provider per backend: each gets a session token, the role and credentials once. */
    assert_int_equal(hits("imds token"), tokens + 2);
    assert_int_equal(hits("imds role"), roles + 2);
    assert_int_equal(hits("imds creds"), creds + 2);
    fake_now += 1000;
    assert_int_equal(secrets_get_var(s, "only-ssm", &v, &e), REMEX_OK);
    free(v);
    assert_int_equal(hits("imds creds"), creds + 2); /* kept while far from Expiration */
    secrets_close(s);
    /* Credentials within 5 minutes of their Expiration are fetched again before use, with the
     * session token kept. */
    fake_conf(endpoint, "{\"imds\": {\"ttl\": 200}}");
    s = open_chain(NULL);
    assert_int_equal(secrets_get_var(s, "only-ssm", &v, &e), REMEX_OK);
    free(v);
    tokens = hits("imds token");
    creds = hits("imds creds");
    fake_now += 1000;
    assert_int_equal(secrets_get_var(s, "only-ssm", &v, &e), REMEX_OK);
    free(v);
    assert_int_equal(hits("imds creds"), creds + 2);
    assert_int_equal(hits("imds token"), tokens);
    /* Session tokens revoked: a 401, a new token, the same call succeeds. */
    fake_conf(endpoint, "{\"revoke_imds_tokens\": true}");
    int refused = hits("imds refused");
    fake_now += 1000;
    assert_int_equal(secrets_get_var(s, "only-ssm", &v, &e), REMEX_OK);
    free(v);
    assert_int_equal(hits("imds refused"), refused + 2);
    assert_int_equal(hits("imds token"), tokens + 2);
    fake_conf(endpoint, "{\"imds\": {\"ttl\": 3600}}");
    secrets_close(s);
    /* AWS_EC2_METADATA_DISABLED=true: no source, a clear error at open. */
    imds_disabled = "true";
    struct secrets_aws *a = NULL;
    struct secrets_aws_config c = {.endpoint = endpoint, .getenv_fn = fake_env};
    assert_int_equal(secrets_aws_open(&c, &a, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "credentials"));
    imds_disabled = NULL;
    /* A metadata service that is down: the lookup fails naming the backend and the key. */
    imds_endpoint = "http://127.0.0.1:1";
    s = open_chain(NULL);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_ECONNECT);
    assert_non_null(strstr(e.msg, "secrets backend aws_secrets_manager: variable 'region'"));
    assert_non_null(strstr(e.msg, "aws imds"));
    secrets_close(s);
    imds_endpoint = NULL;
    access_key = ak;
    secret_key = sk;
}

/* ECS task role / EKS Pod Identity: the full URI and its Authorization token (value or file). */
static void test_container(void **state)
{
    (void)state;
    const char *ak = access_key, *sk = secret_key;
    struct remex_error e;
    char *v = NULL, uri[128];
    access_key = secret_key = NULL;
    snprintf(uri, sizeof(uri), "%s/container-creds", endpoint);
    ctr_uri = uri;
    ctr_token = "ctr-auth-7f3a";
    int n = hits("container");
    struct secrets *s = open_chain(NULL);
    assert_int_equal(secrets_get_var(s, "only-ssm", &v, &e), REMEX_OK);
    assert_string_equal(v, "from-ssm");
    free(v);
    assert_int_equal(hits("container"), n + 2);
    secrets_close(s);
    /* The token file wins over the value and is read at each fetch. */
    char tf[] = "/tmp/remex-ctr-XXXXXX";
    int fd = mkstemp(tf);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "ctr-auth-7f3a\n", 14), 14);
    close(fd);
    ctr_token = "wrong-value";
    ctr_token_file = tf;
    s = open_chain(NULL);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_OK);
    free(v);
    secrets_close(s);
    /* A token the endpoint refuses: the error names the source, never the token. */
    ctr_token_file = NULL;
    n = hits("container refused");
    s = open_chain(NULL);
    assert_int_equal(secrets_get_var(s, "region", &v, &e), REMEX_EAUTH);
    assert_non_null(strstr(e.msg, "aws container credentials"));
    assert_non_null(strstr(e.msg, "variable 'region'"));
    assert_null(strstr(e.msg, "wrong-value"));
    assert_int_equal(hits("container refused"), n + 1);
    secrets_close(s);
    /* A URI without a path asks for "/" on that host (the fake has nothing there). */
    ctr_uri = endpoint;
    ctr_token = "ctr-auth-7f3a";
    struct awscreds *ac = NULL;
    struct sigv4_creds sc;
    assert_int_equal(awscreds_open(NULL, NULL, fake_env, NULL, &ac, &e), REMEX_OK);
    assert_int_equal(awscreds_get(ac, &sc, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "aws container credentials"));
    awscreds_close(ac);
    /* Plain http to a host that is neither loopback nor AWS's link-local endpoint: refused
     * before any request, so the token never travels in clear text. */
    ctr_uri = "http://creds.example.com/x";
    assert_int_equal(awscreds_open(NULL, NULL, fake_env, NULL, &ac, &e), REMEX_EPERM);
    /* Not an http(s) URL. */
    ctr_uri = "file:///etc/passwd";
    struct secrets_aws *a = NULL;
    struct secrets_aws_config c = {.endpoint = endpoint, .getenv_fn = fake_env};
    assert_int_equal(secrets_aws_open(&c, &a, &e), REMEX_EINVAL);
    unlink(tf);
    ctr_uri = ctr_token = NULL;
    access_key = ak;
    secret_key = sk;
}

static void test_parse_json_creds(void **state)
{
    (void)state;
    struct sigv4_creds c;
    time_t exp = 0;
    struct remex_error e;
    const char *ok = "{\"Code\":\"Success\",\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"ASIA2\","
                     "\"SecretAccessKey\":\"sk2\",\"Token\":\"t2\","
                     "\"Expiration\":\"2026-12-07T07:00:00Z\"}";
    assert_int_equal(awscreds_parse_json(ok, strlen(ok), &c, &exp, &e), REMEX_OK);
    assert_string_equal(c.access_key, "ASIA2");
    assert_string_equal(c.secret_key, "sk2");
    assert_string_equal(c.session_token, "t2");
    assert_int_equal(exp, 1796626800);
    const char *bad[] = {"",
                         "[]",
                         "{\"AccessKeyId\":\"A\"}",
                         "{\"Code\":\"Failure\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"leak\","
                         "\"Token\":\"t\",\"Expiration\":\"2026-12-07T07:00:00Z\"}",
                         "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"leak\",\"Token\":\"t\","
                         "\"Expiration\":\"tomorrow\"}",
                         "{\"AccessKeyId\":\"A B\",\"SecretAccessKey\":\"leak\",\"Token\":\"t\","
                         "\"Expiration\":\"2026-12-07T07:00:00Z\"}",
                         "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"leak\",\"Token\":1,"
                         "\"Expiration\":\"2026-12-07T07:00:00Z\"}",
                         "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"leak\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(awscreds_parse_json(bad[i], strlen(bad[i]), &c, &exp, &e), REMEX_EPROTO);
        assert_string_equal(c.secret_key, "");
        assert_null(strstr(e.msg, "leak"));
    }
    char big[70 * 1024];
    memset(big, ' ', sizeof(big));
    assert_int_equal(awscreds_parse_json(big, sizeof(big), &c, &exp, &e), REMEX_ETOOBIG);
}

/* A refresh that fails while the credentials are still valid: they are used, and the refresh is
 * tried again at the next call, as the SDKs do. */
static void test_refresh_failure_keeps_valid_credentials(void **state)
{
    (void)state;
    const char *ak = access_key, *sk = secret_key;
    struct awscreds *a = NULL;
    struct sigv4_creds c1, c2;
    struct remex_error e;
    access_key = secret_key = NULL;
    imds_endpoint = endpoint;
    fake_conf(endpoint,
              "{\"imds\": {\"ttl\": 200}}"); /* within the 5 min margin: every call refreshes */
    assert_int_equal(awscreds_open(NULL, NULL, fake_env, NULL, &a, &e), REMEX_OK);
    assert_int_equal(awscreds_get(a, &c1, &e), REMEX_OK);
    fake_conf(endpoint, "{\"imds\": {\"fail\": true}}");
    int failed = hits("imds failed");
    assert_int_equal(awscreds_get(a, &c2, &e), REMEX_OK);
    int after = hits("imds failed");
    assert_true(after > failed); /* a 500 is retried once by lib http */
    assert_string_equal(c2.access_key, c1.access_key);
    assert_int_equal(awscreds_get(a, &c2, &e), REMEX_OK); /* tried again */
    assert_true(hits("imds failed") > after);
    fake_conf(endpoint, "{\"imds\": {\"fail\": false}}");
    assert_int_equal(awscreds_get(a, &c2, &e), REMEX_OK);
    assert_string_not_equal(c2.access_key, c1.access_key);
    awscreds_close(a);
    /* No credentials yet and the service fails: an error naming IMDS. */
    fake_conf(endpoint, "{\"imds\": {\"fail\": true}}");
    assert_int_equal(awscreds_open(NULL, NULL, fake_env, NULL, &a, &e), REMEX_OK);
    assert_int_not_equal(awscreds_get(a, &c2, &e), REMEX_OK);
    assert_non_null(strstr(e.msg, "aws imds"));
    awscreds_close(a);
    fake_conf(endpoint, "{\"imds\": {\"fail\": false, \"ttl\": 3600}}");
    sigv4_creds_wipe(&c1);
    sigv4_creds_wipe(&c2);
    imds_endpoint = NULL;
    access_key = ak;
    secret_key = sk;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_and_cache),
        cmocka_unit_test(test_session_token_signed),
        cmocka_unit_test(test_web_identity),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_imds),
        cmocka_unit_test(test_container),
        cmocka_unit_test(test_parse_json_creds),
        cmocka_unit_test(test_refresh_failure_keeps_valid_credentials),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
