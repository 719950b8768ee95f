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

#include "helper_fake.h"

static struct gcp_fake g;

static int start(void **state)
{
    (void)state;
    return gcp_fake_start(&g, "\"metadata\": {\"ttl\": 3599, \"scopes\": "
                              "[\"https://www.googleapis.com/auth/devstorage.read_write\"]}");
}

static int stop(void **state)
{
    (void)state;
    return gcp_fake_stop(&g);
}

/* The fake's counter name from /_stats. */
static int fake_stat(const char *name)
{
    return fake_counter(g.url, "/_stats", NULL, name);
}

static void test_stream_round_trip(void **state)
{
    (void)state;
    GCP_NEED_FAKE(g);
    struct objstore_opts o = {.endpoint = g.url, .gcp_key_file = g.keyjson};
    struct objstore *s = NULL;
    struct objstore_ref ref, got;
    struct remex_error e;
    char src[128], dst[128], sum[72], bad[72], cmd[300];
    snprintf(src, sizeof(src), "%s/src", g.dir);
    snprintf(dst, sizeof(dst), "%s/dst", g.dir);
    ASSERT_OK(objstore_open_opts("gs://remex-b/agent-1", &o, &s, &e));
    const size_t sizes[] = {0, 1000, (3u << 20) + 5};
    for (size_t i = 0; i < 3; i++) {
        fake_write_pattern(src, sizes[i], sum);
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

/* The MD5 GCS states for an object (md5Hash in the upload's reply, x-goog-hash on a media
 * download) is checked against the bytes: a store that states another one is refused. */
static void test_md5_checked(void **state)
{
    (void)state;
    GCP_NEED_FAKE(g);
    struct objstore_opts o = {.endpoint = g.url, .gcp_key_file = g.keyjson};
    struct objstore *s = NULL;
    struct objstore_ref ref;
    struct remex_error e;
    struct buf b = BUF_INIT(1u << 20);
    char src[128], dst[128], sum[72], cmd[300];
    snprintf(src, sizeof(src), "%s/md5-src", g.dir);
    snprintf(dst, sizeof(dst), "%s/md5-dst", g.dir);
    ASSERT_OK(objstore_open_opts("gs://remex-b/md5", &o, &s, &e));
    fake_write_pattern(src, 70000, sum);
    /* The fake states the right hashes: both directions pass (and were checked). */
    ASSERT_OK(objstore_put_file(s, "a.log", src, &ref, &e));
    ASSERT_OK(objstore_get_file(s, "a.log", dst, NULL, NULL, &e));
    ASSERT_OK(objstore_put(s, "x", "value", 5, NULL, &e));
    ASSERT_OK(objstore_get(s, "x", &b, &e));
    assert_int_equal(b.len, 5);
    buf_free(&b);
    /* A wrong md5Hash in the upload's reply: the upload is refused, naming the key. */
    fake_conf(g.url, "{\"corrupt\": {\"md5_upload\": true}}");
    assert_int_equal(objstore_put_file(s, "b.log", src, &ref, &e), REMEX_EPROTO);
    assert_non_null(strstr(e.msg, "b.log"));
    assert_non_null(strstr(e.msg, "md5Hash"));
    assert_non_null(strstr(e.msg, "is not the MD5 of what was sent"));
    assert_int_equal(objstore_put(s, "y", "value", 5, NULL, &e), REMEX_EPROTO);
    assert_non_null(strstr(e.msg, "is not the MD5 of what was sent"));
    fake_conf(g.url, "{\"corrupt\": {\"md5_upload\": false}}");
    /* A wrong md5 in x-goog-hash: the download is refused and the target left as it was. */
    fake_write_pattern(dst, 10, sum);
    fake_conf(g.url, "{\"corrupt\": {\"md5_download\": true}}");
    assert_int_equal(objstore_get_file(s, "a.log", dst, NULL, NULL, &e), REMEX_EPROTO);
    assert_non_null(strstr(e.msg, "MD5"));
    struct stat st;
    assert_int_equal(stat(dst, &st), 0);
    assert_int_equal(st.st_size, 10);
    assert_int_equal(objstore_get(s, "x", &b, &e), REMEX_EPROTO);
    assert_non_null(strstr(e.msg, "gcs GET x: the body does not match the MD5"));
    assert_int_equal(b.len, 0);
    fake_conf(g.url, "{\"corrupt\": {\"md5_download\": false}}");
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
    GCP_NEED_FAKE(g);
    struct objstore_opts o = {.endpoint = g.url};
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
    snprintf(host, sizeof(host), "127.0.0.1:%u", g.srv.port);
    setenv("GCE_METADATA_HOST", host, 1);
    int jwt = fake_stat("tokens"), md = fake_stat("metadata_tokens");
    ASSERT_OK(objstore_open_opts("gs://remex-b/md", &o, &s, &e));
    snprintf(src, sizeof(src), "%s/md-src", g.dir);
    snprintf(dst, sizeof(dst), "%s/md-dst", g.dir);
    fake_write_pattern(src, (1u << 20) + 7, sum);
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
