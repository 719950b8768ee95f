/*
 * Unit tests: objstore's Azure Blob backend against Azurite (Microsoft's
 * emulator, which checks Shared Key signatures; installed by mk/azurite.sh),
 * and the Shared Key string to sign.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/objstore.h"
#include "remex/objstore_azure.h"

#include "helper_fake.h"

/* Azurite's well-known development account key (public, documented by Microsoft). */
#define DEV_KEY                                                                                    \
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

static struct test_server srv = {.pid = -1, .stdin_fd = -1};
static char dir[64], endpoint[96];

static int start(void **state)
{
    (void)state;
    if (access("build/node/azurite/node_modules/azurite/package.json", R_OK) != 0)
        return 0;
    snprintf(dir, sizeof(dir), "/tmp/remex-azurite-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char *argv[] = {"node", "test/azurite.js", "--stdin", dir, NULL};
    return fake_start_argv(&srv, argv, "/devstoreaccount1", endpoint, sizeof(endpoint));
}

static int stop(void **state)
{
    (void)state;
    return fake_teardown(&srv, dir);
}

#define NEED_SERVER() FAKE_NEED(endpoint[0], "azurite not installed (run mk/azurite.sh)")

static const char *no_env(const char *n)
{
    (void)n;
    return NULL;
}

static struct objstore *open_az(const char *url, const char *key)
{
    struct objstore_opts o = {.endpoint = endpoint, .azure_key = key, .getenv_fn = no_env};
    struct objstore *s = NULL;
    struct remex_error e;
    if (objstore_open_opts(url, &o, &s, &e) != REMEX_OK)
        fail_msg("open %s: %s", url, e.msg);
    return s;
}

static void test_round_trip(void **state)
{
    (void)state;
    NEED_SERVER();
    struct remex_error e;
    struct objstore_azure *az;
    struct objstore_opts o = {.endpoint = endpoint, .azure_key = DEV_KEY, .getenv_fn = no_env};
    assert_int_equal(objstore_azure_open("az://devstoreaccount1/remex", &o, &az, &e), REMEX_OK);
    assert_int_equal(objstore_azure_create_container(az, &e), REMEX_OK);
    assert_int_equal(objstore_azure_create_container(az, &e), REMEX_OK); /* exists: fine */
    objstore_azure_close(az);

    struct objstore *s = open_az("az://devstoreaccount1/remex/agent-1", DEV_KEY);
    struct objstore_ref ref;
    struct buf b = BUF_INIT(8u << 20);
    const char *key = "xcom/dag_id=d/run_id=manual__2026-01-01T00:00:00+00:00/k,v@x";
    const char *val = "{\"rows\": 42}";
    assert_true(objstore_is_remote(s));
    assert_int_equal(objstore_put(s, key, val, strlen(val), &ref, &e), REMEX_OK);
    assert_int_equal(strncmp(ref.uri, "az://devstoreaccount1/remex/agent-1/xcom/", 41), 0);
    assert_int_equal(objstore_get_uri(s, ref.uri, ref.checksum, &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), val);
    assert_int_equal(objstore_get_uri(s, "az://devstoreaccount1/other/x", NULL, &b, &e),
                     REMEX_EPERM);
    /* Large and empty objects. */
    size_t n = 3u << 20;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 13 + (i >> 11));
    assert_int_equal(objstore_put(s, "big.bin", big, n, NULL, &e), REMEX_OK);
    buf_reset(&b);
    assert_int_equal(objstore_get(s, "big.bin", &b, &e), REMEX_OK);
    assert_int_equal(b.len, n);
    assert_memory_equal(b.data, big, n);
    free(big);
    assert_int_equal(objstore_put(s, "empty", "", 0, NULL, &e), REMEX_OK);
    buf_reset(&b);
    assert_int_equal(objstore_get(s, "empty", &b, &e), REMEX_OK);
    assert_int_equal(b.len, 0);
    char found[512]; /* a listing by prefix finds the key, not the store's prefix */
    assert_int_equal(objstore_find(s, "xcom/dag_id=d/", 0, found, sizeof(found), &e), REMEX_OK);
    assert_string_equal(found, key);
    /* Delete, then not found. */
    assert_int_equal(objstore_delete(s, key, &e), REMEX_OK);
    assert_int_equal(objstore_get(s, key, &b, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "BlobNotFound"));
    assert_int_equal(objstore_find(s, "xcom/dag_id=d/", 0, found, sizeof(found), &e),
                     REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "xcom/dag_id=d/: no object"));
    buf_free(&b);
    objstore_close(s);
}

static void test_wrong_key_and_missing_container(void **state)
{
    (void)state;
    NEED_SERVER();
    struct remex_error e;
    /* A valid base64 key of the right size that is not the account's. */
    const char *wrong = "AAAAvdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
                        "KBHBeksoGMGw==";
    struct objstore *s = open_az("az://devstoreaccount1/remex", wrong);
    assert_int_equal(objstore_put(s, "k", "v", 1, NULL, &e), REMEX_EFORBIDDEN);
    assert_non_null(strstr(e.msg, "HTTP 403 "));
    assert_non_null(strstr(e.msg, "account key"));
    assert_null(strstr(e.msg, "AAAAvdM"));
    objstore_close(s);
    s = open_az("az://devstoreaccount1/no-such-container", DEV_KEY);
    assert_int_equal(objstore_put(s, "k", "v", 1, NULL, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "ContainerNotFound"));
    objstore_close(s);
    /* Bad configurations. */
    struct objstore_opts o = {.endpoint = endpoint, .getenv_fn = no_env};
    assert_int_equal(objstore_open_opts("az://devstoreaccount1/remex", &o, &s, &e),
                     REMEX_ENOTFOUND);
    o.azure_key = "not base64!";
    assert_int_equal(objstore_open_opts("az://devstoreaccount1/remex", &o, &s, &e), REMEX_EINVAL);
    o.azure_key = DEV_KEY;
    assert_int_equal(objstore_open_opts("az://devstoreaccount1", &o, &s, &e), REMEX_EINVAL);
    assert_int_equal(objstore_open_opts("az://Bad_Account/remex", &o, &s, &e), REMEX_EINVAL);
}

/* put_file / get_file through s: one Put Blob below the threshold, blocks above it. */
static void stream_round_trips(struct objstore *s, const char *tmpdir)
{
    struct objstore_ref ref, got;
    struct remex_error e;
    char src[128], dst[128], sum[72];
    snprintf(src, sizeof(src), "%s/src", tmpdir);
    snprintf(dst, sizeof(dst), "%s/dst", tmpdir);
    const size_t sizes[] = {0, 70000, (11u << 20) + 777};
    for (size_t i = 0; i < 3; i++) {
        fake_write_pattern(src, sizes[i], sum);
        ASSERT_OK(objstore_put_file(s, "st/obj", src, &ref, &e));
        assert_int_equal(ref.size, sizes[i]);
        assert_string_equal(ref.checksum, sum);
        ASSERT_OK(objstore_get_file(s, "st/obj", dst, ref.checksum, &got, &e));
        assert_string_equal(got.checksum, sum);
        assert_true(fake_files_equal(src, dst));
    }
}

static void test_stream_blocks(void **state)
{
    (void)state;
    NEED_SERVER();
    struct remex_error e;
    struct objstore_opts o = {.endpoint = endpoint,
                              .azure_key = DEV_KEY,
                              .getenv_fn = no_env,
                              .multipart_threshold = 6u << 20,
                              .part_size = 5u << 20};
    struct objstore *s = NULL;
    struct objstore_azure *az;
    char tmp[64] = "/tmp/remex-azfile-XXXXXX", cmd[128];
    assert_non_null(mkdtemp(tmp));
    assert_int_equal(objstore_azure_open("az://devstoreaccount1/remex", &o, &az, &e), REMEX_OK);
    assert_int_equal(objstore_azure_create_container(az, &e), REMEX_OK);
    objstore_azure_close(az);
    ASSERT_OK(objstore_open_opts("az://devstoreaccount1/remex/blk", &o, &s, &e));
    stream_round_trips(s, tmp);
    /* The block blob carries its MD5 (x-ms-blob-content-md5): a download is checked against it. */
    char bad[72];
    snprintf(bad, sizeof(bad), "sha256:%064d", 0);
    char dst[128];
    snprintf(dst, sizeof(dst), "%s/dst", tmp);
    assert_int_equal(objstore_get_file(s, "st/obj", dst, bad, NULL, &e), REMEX_EPROTO);
    assert_int_equal(objstore_get_file(s, "st/none", dst, NULL, NULL, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "BlobNotFound"));
    objstore_close(s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    assert_int_equal(system(cmd), 0);
}

/* An account SAS for devstoreaccount1 (blob service, all resource types) signed with key. */
static void make_sas(const char *key_b64, const char *perms, char *out, size_t cap)
{
    unsigned char key[64], mac[32], sig[48];
    unsigned int ml = sizeof(mac);
    char sts[512], enc[128];
    size_t k = 0;
    int kl = EVP_DecodeBlock(key, (const unsigned char *)key_b64, (int)strlen(key_b64));
    assert_true(kl >= 64);
    /* account, permissions, services, resource types, start, expiry, IP, protocol, version,
     * encryption scope (service version 2020-12-06 and later), each followed by "\n". */
    snprintf(sts, sizeof(sts),
             "devstoreaccount1\n%s\nb\nsco\n\n2099-01-01T00:00:00Z\n\nhttps,http\n"
             "%s\n\n",
             perms, OBJSTORE_AZURE_VERSION);
    assert_non_null(HMAC(EVP_sha256(), key, 64, (const unsigned char *)sts, strlen(sts), mac, &ml));
    EVP_EncodeBlock(sig, mac, 32);
    for (const unsigned char *p = sig; *p && k + 4 < sizeof(enc); p++)
        k += (size_t)(isalnum(*p) ? snprintf(enc + k, sizeof(enc) - k, "%c", *p)
                                  : snprintf(enc + k, sizeof(enc) - k, "%%%02X", *p));
    snprintf(out, cap, "sv=%s&ss=b&srt=sco&sp=%s&se=2099-01-01T00:00:00Z&spr=https,http&sig=%s",
             OBJSTORE_AZURE_VERSION, perms, enc);
}

/* SAS tokens: given directly and from a file; a token with a wrong signature is refused. */
static void test_sas(void **state)
{
    (void)state;
    NEED_SERVER();
    struct remex_error e;
    char sas[512], tmp[64] = "/tmp/remex-azsas-XXXXXX", path[128], cmd[128];
    struct objstore *s = NULL;
    struct buf b = BUF_INIT(1 << 16);
    assert_non_null(mkdtemp(tmp));
    make_sas(DEV_KEY, "rwdlac", sas, sizeof(sas));
    struct objstore_opts o = {.endpoint = endpoint,
                              .azure_sas = sas,
                              .getenv_fn = no_env,
                              .multipart_threshold = 6u << 20,
                              .part_size = 5u << 20};
    ASSERT_OK(objstore_open_opts("az://devstoreaccount1/remex/sas", &o, &s, &e));
    stream_round_trips(s, tmp);
    ASSERT_OK(objstore_put(s, "small", "v1", 2, NULL, &e));
    ASSERT_OK(objstore_get(s, "small", &b, &e));
    assert_string_equal(buf_cstr(&b), "v1");
    objstore_close(s);
    /* From a file (with a leading '?' and a trailing newline, as portals hand it out). */
    snprintf(path, sizeof(path), "%s/sas", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "?%s\n", sas);
    fclose(f);
    o.azure_sas = NULL;
    o.azure_sas_file = path;
    ASSERT_OK(objstore_open_opts("az://devstoreaccount1/remex/sas", &o, &s, &e));
    buf_reset(&b);
    ASSERT_OK(objstore_get(s, "small", &b, &e));
    assert_string_equal(buf_cstr(&b), "v1");
    objstore_close(s);
    /* Signed with another key: 403, an error that names the SAS and never shows it. */
    make_sas("AAAAvdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
             "KBHBeksoGMGw==",
             "rwdlac", sas, sizeof(sas));
    o.azure_sas = sas;
    o.azure_sas_file = NULL;
    ASSERT_OK(objstore_open_opts("az://devstoreaccount1/remex/sas", &o, &s, &e));
    assert_int_equal(objstore_put(s, "k", "v", 1, NULL, &e), REMEX_EFORBIDDEN);
    assert_non_null(strstr(e.msg, "HTTP 403 "));
    assert_non_null(strstr(e.msg, "the SAS token was refused"));
    assert_null(strstr(e.msg, "sig="));
    assert_null(strstr(e.msg, strstr(sas, "sig=") + 4));
    objstore_close(s);
    /* Malformed tokens are refused at open. */
    o.azure_sas = "sv=2021-08-06&sp=r";
    assert_int_equal(objstore_open_opts("az://devstoreaccount1/remex", &o, &s, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "sig="));
    o.azure_sas = "sv=1&sig=a b";
    assert_int_equal(objstore_open_opts("az://devstoreaccount1/remex", &o, &s, &e), REMEX_EINVAL);
    buf_free(&b);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    assert_int_equal(system(cmd), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/*
 * Bearer tokens by workload identity: Azurite over HTTPS (a certificate the
 * test makes, trusted through ca_file) with --oauth basic, and test/fake_aad.py
 * (why a fake: see its header) trading the federated token for an access
 * token.
 */
static void test_bearer_workload_identity(void **state)
{
    (void)state;
    NEED_SERVER();
    struct test_server az = {.pid = -1, .stdin_fd = -1}, aad = {.pid = -1, .stdin_fd = -1};
    char tmp[64] = "/tmp/remex-azbearer-XXXXXX", cert[128], key[128], fed[128], conf[128];
    char trusted[128];
    char data[128], cmd[600], ep[96], authority[64];
    struct remex_error e;
    struct objstore *s = NULL;
    struct objstore_azure *raw = NULL;
    assert_non_null(mkdtemp(tmp));
    snprintf(cert, sizeof(cert), "%s/cert.pem", tmp);
    snprintf(key, sizeof(key), "%s/key.pem", tmp);
    snprintf(fed, sizeof(fed), "%s/azure-identity-token", tmp);
    snprintf(conf, sizeof(conf), "%s/aad.json", tmp);
    snprintf(trusted, sizeof(trusted), "%s/issued-token", tmp);
    snprintf(data, sizeof(data), "%s/data", tmp);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null && mkdir %s",
             key, cert, data);
    assert_int_equal(system(cmd), 0);
    /* The token the (test's) issuer minted, as the fake identity provider knows it, and the
     * copy the worker finds in its federated token file. */
    write_file(trusted, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cmVtZXg6"
                        "d29ya2VyIn0.c2lnbmF0dXJl\n");
    write_file(fed, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cmVtZXg6d29y"
                    "a2VyIn0.c2lnbmF0dXJl\n");
    snprintf(cmd, sizeof(cmd),
             "{\"tenant\": \"72f988bf-86f1-41af-91ab-2d7cd011db47\", \"client_id\": "
             "\"11111111-2222-3333-4444-555555555555\", \"assertion_file\": \"%s\", "
             "\"wrong_audience\": [\"99999999-2222-3333-4444-555555555555\"]}",
             trusted);
    write_file(conf, cmd);
    char *aargv[] = {"python3", "test/fake_aad.py", "--stdin", conf, NULL};
    char *zargv[] = {"node", "test/azurite.js", "--stdin", data, "--cert", cert, "--key",
                     key,    "--oauth",         "basic",   NULL};
    assert_int_equal(test_server_start(&aad, aargv), 0);
    assert_int_equal(test_server_start(&az, zargv), 0);
    snprintf(ep, sizeof(ep), "https://127.0.0.1:%u/devstoreaccount1", az.port);
    snprintf(authority, sizeof(authority), "http://127.0.0.1:%u", aad.port);
    struct objstore_opts o = {.endpoint = ep,
                              .ca_file = cert,
                              .getenv_fn = no_env,
                              .azure_tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47",
                              .azure_client_id = "11111111-2222-3333-4444-555555555555",
                              .azure_federated_token_file = fed,
                              .azure_authority = authority};
    ASSERT_OK(objstore_azure_open("az://devstoreaccount1/remex", &o, &raw, &e));
    ASSERT_OK(objstore_azure_create_container(raw, &e));
    objstore_azure_close(raw);
    ASSERT_OK(objstore_open_opts("az://devstoreaccount1/remex/wi", &o, &s, &e));
    stream_round_trips(s, tmp);
    objstore_close(s);
    /* A federated token the identity provider does not accept: the token request fails. */
    write_file(fed, "eyJhbGciOiJSUzI1NiJ9.bm90LXRydXN0ZWQ.c2ln\n");
    ASSERT_OK(objstore_open_opts("az://devstoreaccount1/remex/wi", &o, &s, &e));
    assert_int_equal(objstore_put(s, "k", "v", 1, NULL, &e), REMEX_EAUTH);
    assert_non_null(strstr(e.msg, "azure auth: token"));
    assert_null(strstr(e.msg, "bm90LXRydXN0ZWQ"));
    objstore_close(s);
    /* A token for another audience: Azurite refuses it. */
    write_file(fed, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cmVtZXg6d29y"
                    "a2VyIn0.c2lnbmF0dXJl\n");
    o.azure_client_id = "99999999-2222-3333-4444-555555555555";
    ASSERT_OK(objstore_open_opts("az://devstoreaccount1/remex/wi", &o, &s, &e));
    assert_int_not_equal(objstore_put(s, "k", "v", 1, NULL, &e), REMEX_OK);
    assert_non_null(strstr(e.msg, "HTTP 40"));
    objstore_close(s);
    /* Without the CA, TLS verification refuses Azurite's certificate. */
    o.ca_file = NULL;
    o.azure_client_id = "11111111-2222-3333-4444-555555555555";
    ASSERT_OK(objstore_open_opts("az://devstoreaccount1/remex/wi", &o, &s, &e));
    assert_int_equal(objstore_put(s, "k", "v", 1, NULL, &e), REMEX_ETLS);
    objstore_close(s);
    test_server_stop(&az);
    test_server_stop(&aad);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    assert_int_equal(system(cmd), 0);
}

/* The string to sign follows the Blob service's layout: 12 standard headers, x-ms-* sorted. */
static void test_string_to_sign(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    const char *ms[] = {"x-ms-version:2021-08-06", "x-ms-date:Mon, 07 Dec 2026 05:00:00 GMT",
                        "x-ms-blob-type:BlockBlob", NULL};
    assert_int_equal(
        objstore_azure_string_to_sign("PUT", 11, "text/plain", ms, "/acct/acct/c/k%20x", &b),
        REMEX_OK);
    assert_string_equal(buf_cstr(&b), "PUT\n\n\n11\n\ntext/plain\n\n\n\n\n\n\n"
                                      "x-ms-blob-type:BlockBlob\n"
                                      "x-ms-date:Mon, 07 Dec 2026 05:00:00 GMT\n"
                                      "x-ms-version:2021-08-06\n/acct/acct/c/k%20x");
    buf_reset(&b);
    assert_int_equal(objstore_azure_string_to_sign("GET", 0, NULL, NULL, "/a/c", &b), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "GET\n\n\n\n\n\n\n\n\n\n\n\n/a/c");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wrong_key_and_missing_container),
        cmocka_unit_test(test_string_to_sign),
        cmocka_unit_test(test_stream_blocks),
        cmocka_unit_test(test_sas),
        cmocka_unit_test(test_bearer_workload_identity),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
