/*
 * Unit tests: streamed transfers (objstore_put_file / objstore_get_file) of
 * the GCS object store against test/fake_gcp.py. A fake because no Google
 * endpoint or packaged emulator can be had here; it verifies the RS256 JWT
 * of the token request with the test key's public half (Python's
 * cryptography) and requires a live bearer token on every storage call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "remex/http.h"
#include "remex/objstore.h"

#include "helper_server.h"

static struct test_server srv = {.pid = -1, .stdin_fd = -1};
static char dir[64], pem[128], keyjson[128], otherjson[128], conf[128], url[64], token_uri[96];
static int have_crypto;

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* A service-account key JSON for the PEM at pem_path, with the fake's token URI. */
static int write_key(const char *out, const char *pem_path)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import json,sys; print(json.dumps({\"type\": \"service_account\", "
             "\"client_email\": \"remex@proj.iam.gserviceaccount.com\", \"private_key\": "
             "open(sys.argv[1]).read(), \"token_uri\": sys.argv[2]}))' %s %s > %s",
             pem_path, token_uri, out);
    return system(cmd) == 0 ? 0 : -1;
}

static int start(void **state)
{
    (void)state;
    char cmd[512], other[128];
    if (system("python3 -c 'import cryptography' 2>/dev/null") != 0)
        return 0;
    have_crypto = 1;
    snprintf(dir, sizeof(dir), "/tmp/remex-gcp-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(pem, sizeof(pem), "%s/key.pem", dir);
    snprintf(other, sizeof(other), "%s/other.pem", dir);
    snprintf(keyjson, sizeof(keyjson), "%s/key.json", dir);
    snprintf(otherjson, sizeof(otherjson), "%s/other.json", dir);
    snprintf(conf, sizeof(conf), "%s/conf.json", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null && "
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null",
             pem, other);
    if (system(cmd) != 0)
        return -1;
    char text[1024];
    snprintf(text, sizeof(text),
             "{\"key_pem\": \"%s\", \"email\": \"remex@proj.iam.gserviceaccount.com\","
             " \"buckets\": [\"remex-b\"], \"project\": \"proj-1\", \"token_ttl\": 3600,"
             " \"metadata\": {\"ttl\": 3599, \"scopes\": "
             "[\"https://www.googleapis.com/auth/devstorage.read_write\"]}}",
             pem);
    if (write_text(conf, text) != 0)
        return -1;
    char *argv[] = {"python3", "test/fake_gcp.py", "--stdin", conf, NULL};
    if (test_server_start(&srv, argv) != 0)
        return -1;
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", srv.port);
    snprintf(token_uri, sizeof(token_uri), "%s/token", url);
    return write_key(keyjson, pem) || write_key(otherjson, other) ? -1 : 0;
}

static int stop(void **state)
{
    (void)state;
    test_server_stop(&srv);
    if (dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", dir);
    }
    return 0;
}

#define NEED_FAKE()                                                                                \
    do {                                                                                           \
        if (!have_crypto) {                                                                        \
            printf("# python3-cryptography missing: the fake cannot verify RS256\n");              \
            fflush(stdout);                                                                        \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

#define ASSERT_OK(call)                                                                            \
    do {                                                                                           \
        remex_err rc_ = (call);                                                                    \
        if (rc_ != REMEX_OK)                                                                       \
            fail_msg("%s: %s", #call, e.msg);                                                      \
    } while (0)

/* Writes n bytes of a position-dependent pattern to path; its "sha256:<hex>" into sum. */
static void write_pattern(const char *path, size_t n, char sum[72])
{
    FILE *f = fopen(path, "wb");
    char *b = malloc(n ? n : 1);
    assert_non_null(f);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)((i * 131u + i / 4096u) & 0xff);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    objstore_checksum(b, n, sum);
    free(b);
}

static void test_stream_round_trip(void **state)
{
    (void)state;
    NEED_FAKE();
    struct objstore_opts o = {.endpoint = url, .gcp_key_file = keyjson};
    struct objstore *s = NULL;
    struct objstore_ref ref, got;
    struct remex_error e;
    char src[128], dst[128], sum[72], bad[72], cmd[300];
    snprintf(src, sizeof(src), "%s/src", dir);
    snprintf(dst, sizeof(dst), "%s/dst", dir);
    ASSERT_OK(objstore_open_opts("gs://remex-b/agent-1", &o, &s, &e));
    const size_t sizes[] = {0, 1000, (3u << 20) + 5};
    for (size_t i = 0; i < 3; i++) {
        write_pattern(src, sizes[i], sum);
        ASSERT_OK(objstore_put_file(s, "logs/a.log", src, &ref, &e));
        assert_string_equal(ref.uri, "gs://remex-b/agent-1/logs/a.log");
        assert_int_equal(ref.size, sizes[i]);
        assert_string_equal(ref.checksum, sum);
        ASSERT_OK(objstore_get_file(s, "logs/a.log", dst, ref.checksum, &got, &e));
        assert_int_equal(got.size, sizes[i]);
        snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", src, dst);
        assert_int_equal(system(cmd), 0);
    }
    /* A checksum that does not match: REMEX_EPROTO, the target left as it was. */
    snprintf(bad, sizeof(bad), "sha256:%064d", 0);
    assert_int_equal(objstore_get_file(s, "logs/a.log", dst, bad, NULL, &e), REMEX_EPROTO);
    snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", src, dst);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(objstore_get_file(s, "logs/none", dst, NULL, NULL, &e), REMEX_ENOTFOUND);
    objstore_close(s);
}

/* The fake's counter name from /_stats. */
static int fake_stat(const char *name)
{
    struct http_client *c;
    struct http_client_opts o = {.base_url = url, .max_attempts = 1};
    struct http_response r;
    struct http_request req = {.method = "GET", .path = "/_stats"};
    assert_int_equal(http_client_new(&o, &c, NULL), REMEX_OK);
    assert_int_equal(http_do(c, &req, &r, NULL), REMEX_OK);
    json_t *j = json_loadb(r.body.data, r.body.len, 0, NULL); /* owned */
    int n = (int)json_integer_value(json_object_get(j, name));
    json_decref(j);
    http_response_free(&r);
    http_client_free(c);
    return n;
}

/* POST /_conf with json (the fake merges it into its configuration). */
static void fake_conf(const char *json)
{
    struct http_client *c;
    struct http_client_opts o = {.base_url = url, .max_attempts = 1};
    struct http_response r;
    struct http_request req = {.method = "POST",
                               .path = "/_conf",
                               .body = json,
                               .body_len = strlen(json),
                               .content_type = "application/json"};
    assert_int_equal(http_client_new(&o, &c, NULL), REMEX_OK);
    assert_int_equal(http_do(c, &req, &r, NULL), REMEX_OK);
    assert_int_equal(r.status, 200);
    http_response_free(&r);
    http_client_free(c);
}

/* The MD5 GCS states for an object (md5Hash in the upload's reply, x-goog-hash on a media
 * download) is checked against the bytes: a store that states another one is refused. */
static void test_md5_checked(void **state)
{
    (void)state;
    NEED_FAKE();
    struct objstore_opts o = {.endpoint = url, .gcp_key_file = keyjson};
    struct objstore *s = NULL;
    struct objstore_ref ref;
    struct remex_error e;
    struct buf b = BUF_INIT(1u << 20);
    char src[128], dst[128], sum[72], cmd[300];
    snprintf(src, sizeof(src), "%s/md5-src", dir);
    snprintf(dst, sizeof(dst), "%s/md5-dst", dir);
    ASSERT_OK(objstore_open_opts("gs://remex-b/md5", &o, &s, &e));
    write_pattern(src, 70000, sum);
    /* The fake states the right hashes: both directions pass (and were checked). */
    ASSERT_OK(objstore_put_file(s, "a.log", src, &ref, &e));
    ASSERT_OK(objstore_get_file(s, "a.log", dst, NULL, NULL, &e));
    ASSERT_OK(objstore_put(s, "x", "value", 5, NULL, &e));
    ASSERT_OK(objstore_get(s, "x", &b, &e));
    assert_int_equal(b.len, 5);
    buf_free(&b);
    /* A wrong md5Hash in the upload's reply: the upload is refused, naming the key. */
    fake_conf("{\"corrupt\": {\"md5_upload\": true}}");
    assert_int_equal(objstore_put_file(s, "b.log", src, &ref, &e), REMEX_EPROTO);
    assert_non_null(strstr(e.msg, "b.log"));
    assert_non_null(strstr(e.msg, "md5Hash"));
    assert_non_null(strstr(e.msg, "is not the MD5 of what was sent"));
    assert_int_equal(objstore_put(s, "y", "value", 5, NULL, &e), REMEX_EPROTO);
    assert_non_null(strstr(e.msg, "is not the MD5 of what was sent"));
    fake_conf("{\"corrupt\": {\"md5_upload\": false}}");
    /* A wrong md5 in x-goog-hash: the download is refused and the target left as it was. */
    write_pattern(dst, 10, sum);
    fake_conf("{\"corrupt\": {\"md5_download\": true}}");
    assert_int_equal(objstore_get_file(s, "a.log", dst, NULL, NULL, &e), REMEX_EPROTO);
    assert_non_null(strstr(e.msg, "MD5"));
    struct stat st;
    assert_int_equal(stat(dst, &st), 0);
    assert_int_equal(st.st_size, 10);
    assert_int_equal(objstore_get(s, "x", &b, &e), REMEX_EPROTO);
    assert_non_null(strstr(e.msg, "gcs GET x: the body does not match the MD5"));
    assert_int_equal(b.len, 0);
    fake_conf("{\"corrupt\": {\"md5_download\": false}}");
    ASSERT_OK(objstore_get_file(s, "a.log", dst, NULL, NULL, &e));
    snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", src, dst);
    assert_int_equal(system(cmd), 0);
    /* objects.list by prefix, then delete: the object is gone for get and find. */
    char found[256];
    ASSERT_OK(objstore_find(s, "a.l", 0, found, sizeof(found), &e));
    assert_string_equal(found, "a.log");
    ASSERT_OK(objstore_delete(s, "a.log", &e));
    assert_int_equal(objstore_get(s, "a.log", &b, &e), REMEX_ENOTFOUND);
    assert_int_equal(objstore_find(s, "a.l", 0, found, sizeof(found), &e), REMEX_ENOTFOUND);
    buf_free(&b);
    objstore_close(s);
}

/* No key: the store takes its tokens from the metadata server (GCE, GKE Workload Identity). */
static void test_metadata_server_token(void **state)
{
    (void)state;
    NEED_FAKE();
    struct objstore_opts o = {.endpoint = url};
    struct objstore *s = NULL;
    struct objstore_ref ref, got;
    struct remex_error e;
    struct buf b = BUF_INIT(1024);
    char src[128], dst[128], sum[72], host[64], cmd[300];
    char *saved = getenv("GOOGLE_APPLICATION_CREDENTIALS")
                      ? strdup(getenv("GOOGLE_APPLICATION_CREDENTIALS"))
                      : NULL;
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    /* Neither a key nor a metadata server (test/run.py sets NO_GCE_CHECK): a clear error. */
    unsetenv("GCE_METADATA_HOST");
    setenv("NO_GCE_CHECK", "true", 1);
    assert_int_equal(objstore_open_opts("gs://remex-b/md", &o, &s, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "gs://remex-b/md"));
    assert_non_null(strstr(e.msg, "GOOGLE_APPLICATION_CREDENTIALS"));
    assert_non_null(strstr(e.msg, "GCE_METADATA_HOST"));
    snprintf(host, sizeof(host), "127.0.0.1:%u", srv.port);
    setenv("GCE_METADATA_HOST", host, 1);
    int jwt = fake_stat("tokens"), md = fake_stat("metadata_tokens");
    ASSERT_OK(objstore_open_opts("gs://remex-b/md", &o, &s, &e));
    snprintf(src, sizeof(src), "%s/md-src", dir);
    snprintf(dst, sizeof(dst), "%s/md-dst", dir);
    write_pattern(src, (1u << 20) + 7, sum);
    ASSERT_OK(objstore_put_file(s, "logs/m.log", src, &ref, &e));
    assert_string_equal(ref.uri, "gs://remex-b/md/logs/m.log");
    assert_string_equal(ref.checksum, sum);
    ASSERT_OK(objstore_get_file(s, "logs/m.log", dst, ref.checksum, &got, &e));
    snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", src, dst);
    assert_int_equal(system(cmd), 0);
    ASSERT_OK(objstore_put(s, "xcom/v", "{\"n\": 1}", 8, &ref, &e));
    ASSERT_OK(objstore_get(s, "xcom/v", &b, &e));
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "{\"n\": 1}", 8);
    buf_free(&b);
    objstore_close(s);
    assert_int_equal(fake_stat("metadata_tokens"), md + 1); /* one token, kept */
    assert_int_equal(fake_stat("tokens"), jwt);             /* no key, no JWT exchange */
    assert_int_equal(fake_stat("metadata_refused"), 0);
    unsetenv("GCE_METADATA_HOST");
    if (saved)
        setenv("GOOGLE_APPLICATION_CREDENTIALS", saved, 1);
    free(saved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_round_trip),
        cmocka_unit_test(test_metadata_server_token),
        cmocka_unit_test(test_md5_checked),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
