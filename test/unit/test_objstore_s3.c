/*
 * Unit tests: objstore's S3 backend against @20minutes/s3rver (a real S3
 * server that verifies SigV4 signatures, installed by mk/s3rver.sh), and the
 * S3 XML error parser on malformed input.
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

#include "remex/objstore.h"
#include "remex/objstore_s3.h"

#include "helper_fake.h"

static struct test_server srv = {.pid = -1, .stdin_fd = -1};
static char srv_dir[64];
static char endpoint[64];
static const char *secret = "S3RVER";

static const char *fake_getenv(const char *n)
{
    if (strcmp(n, "AWS_ACCESS_KEY_ID") == 0)
        return "S3RVER";
    if (strcmp(n, "AWS_SECRET_ACCESS_KEY") == 0)
        return secret;
    return NULL;
}

static int start_server(void **state)
{
    (void)state;
    if (access("build/node/s3rver/node_modules/@20minutes/s3rver/package.json", R_OK) != 0)
        return 0; /* each test skips with the reason */
    snprintf(srv_dir, sizeof(srv_dir), "/tmp/remex-s3rver-XXXXXX");
    if (!mkdtemp(srv_dir))
        return -1;
    char *argv[] = {"node", "test/s3rver.js", "--stdin", srv_dir, "remex", NULL};
    return fake_start_argv(&srv, argv, "", endpoint, sizeof(endpoint));
}

static int stop_server(void **state)
{
    (void)state;
    return fake_teardown(&srv, srv_dir);
}

#define NEED_SERVER() FAKE_NEED(endpoint[0], "s3rver not installed (run mk/s3rver.sh)")

static struct objstore *open_s3(const char *url)
{
    struct objstore_opts o = {.endpoint = endpoint, .path_style = 1, .getenv_fn = fake_getenv};
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
    struct objstore *s = open_s3("s3://remex/agent-1/");
    struct objstore_ref ref, st;
    struct remex_error e;
    struct buf b = BUF_INIT(1 << 20);
    const char *key = "xcom/dag_id=d/run_id=manual__2026-01-01T00:00:00+00:00/k,v@x";
    const char *val = "{\"rows\": 42, \"note\": \"é\"}";
    assert_true(objstore_is_remote(s));
    assert_int_equal(objstore_put(s, key, val, strlen(val), &ref, &e), REMEX_OK);
    assert_int_equal(strncmp(ref.uri, "s3://remex/agent-1/xcom/dag_id=d/", 33), 0);
    assert_int_equal(ref.size, strlen(val));
    assert_int_equal(objstore_get(s, key, &b, &e), REMEX_OK);
    assert_int_equal(b.len, strlen(val));
    assert_memory_equal(b.data, val, b.len);
    buf_reset(&b);
    assert_int_equal(objstore_get_uri(s, ref.uri, ref.checksum, &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), val);
    assert_int_equal(objstore_stat(s, key, &st, &e), REMEX_OK);
    assert_string_equal(st.checksum, ref.checksum);
    /* The object is on the server, under the prefix. */
    char path[512];
    snprintf(path, sizeof(path), "%s/remex/agent-1/xcom/dag_id=d", srv_dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    /* A wrong checksum and a URI of another store are refused. */
    buf_reset(&b);
    char bad[72];
    snprintf(bad, sizeof(bad), "sha256:%064d", 0);
    assert_int_equal(objstore_get_uri(s, ref.uri, bad, &b, &e), REMEX_EPROTO);
    assert_int_equal(objstore_get_uri(s, "s3://remex/other/x", NULL, &b, &e), REMEX_EPERM);
    assert_int_equal(objstore_get_uri(s, "file:///etc/passwd", NULL, &b, &e), REMEX_EPERM);
    /* Overwrite, then delete. */
    assert_int_equal(objstore_put(s, key, "2", 1, NULL, &e), REMEX_OK);
    buf_reset(&b);
    assert_int_equal(objstore_get(s, key, &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "2");
    char found[512]; /* a listing by prefix finds the key, not the store's prefix */
    assert_int_equal(objstore_find(s, "xcom/dag_id=d/", 0, found, sizeof(found), &e), REMEX_OK);
    assert_string_equal(found, key);
    assert_int_equal(objstore_delete(s, key, &e), REMEX_OK);
    assert_int_equal(objstore_get(s, key, &b, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "NoSuchKey"));
    assert_int_equal(objstore_find(s, "xcom/dag_id=d/", 0, found, sizeof(found), &e),
                     REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "xcom/dag_id=d/: no object"));
    buf_free(&b);
    objstore_close(s);
}

static void test_large_and_empty(void **state)
{
    (void)state;
    NEED_SERVER();
    struct objstore *s = open_s3("s3://remex");
    struct remex_error e;
    size_t n = 3u << 20;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 7 + (i >> 9));
    assert_int_equal(objstore_put(s, "big.bin", big, n, NULL, &e), REMEX_OK);
    struct buf b = BUF_INIT(8u << 20);
    assert_int_equal(objstore_get(s, "big.bin", &b, &e), REMEX_OK);
    assert_int_equal(b.len, n);
    assert_memory_equal(b.data, big, n);
    /* The reader's cap holds. */
    struct buf small = BUF_INIT(1024);
    assert_int_equal(objstore_get(s, "big.bin", &small, &e), REMEX_ETOOBIG);
    assert_int_equal(small.len, 0);
    assert_int_equal(objstore_put(s, "empty", "", 0, NULL, &e), REMEX_OK);
    buf_reset(&b);
    assert_int_equal(objstore_get(s, "empty", &b, &e), REMEX_OK);
    assert_int_equal(b.len, 0);
    buf_free(&b);
    buf_free(&small);
    free(big);
    objstore_close(s);
}

static void test_wrong_secret(void **state)
{
    (void)state;
    NEED_SERVER();
    struct remex_error e;
    struct buf b = BUF_INIT(1024);
    secret = "not-the-secret";
    struct objstore *s = open_s3("s3://remex/p");
    secret = "S3RVER";
    assert_int_equal(objstore_put(s, "k", "v", 1, NULL, &e), REMEX_EFORBIDDEN);
    assert_non_null(strstr(e.msg, "403"));
    assert_non_null(strstr(e.msg, "SignatureDoesNotMatch"));
    assert_non_null(strstr(e.msg, "secret access key"));
    assert_null(strstr(e.msg, "not-the-secret"));
    assert_int_equal(objstore_get(s, "k", &b, &e), REMEX_EFORBIDDEN);
    objstore_close(s);
    buf_free(&b);
}

static void test_no_bucket_no_server(void **state)
{
    (void)state;
    NEED_SERVER();
    struct remex_error e;
    struct objstore *s = open_s3("s3://missing-bucket");
    assert_int_equal(objstore_put(s, "k", "v", 1, NULL, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "NoSuchBucket"));
    objstore_close(s);
    /* No credentials at all. */
    struct objstore_opts o = {
        .endpoint = endpoint, .getenv_fn = NULL, .credentials_file = "/nonexistent/credentials"};
    const char *saved = getenv("AWS_ACCESS_KEY_ID");
    if (saved == NULL) {
        assert_int_equal(objstore_open_opts("s3://remex", &o, &s, &e), REMEX_ENOTFOUND);
        assert_non_null(strstr(e.msg, "credentials"));
    }
    /* Bad endpoints. */
    o.getenv_fn = fake_getenv;
    o.endpoint = "ftp://127.0.0.1";
    assert_int_equal(objstore_open_opts("s3://remex", &o, &s, &e), REMEX_EINVAL);
    o.endpoint = "http://127.0.0.1:1/path";
    assert_int_equal(objstore_open_opts("s3://remex", &o, &s, &e), REMEX_EINVAL);
}

/* put_file / get_file: single PUT below the threshold, 3-part multipart above it. */
static void test_stream_multipart(void **state)
{
    (void)state;
    NEED_SERVER();
    struct objstore_opts o = {.endpoint = endpoint,
                              .path_style = 1,
                              .getenv_fn = fake_getenv,
                              .multipart_threshold = 6u << 20,
                              .part_size = 5u << 20};
    struct objstore *s = NULL;
    struct objstore_ref ref, got;
    struct remex_error e;
    char dir[64] = "/tmp/remex-s3file-XXXXXX", src[128], dst[128], sum[72], bad[72];
    assert_non_null(mkdtemp(dir));
    assert_int_equal(objstore_open_opts("s3://remex/st", &o, &s, &e), REMEX_OK);
    snprintf(src, sizeof(src), "%s/src", dir);
    snprintf(dst, sizeof(dst), "%s/out/dst", dir);
    char outdir[128];
    snprintf(outdir, sizeof(outdir), "%s/out", dir);
    assert_int_equal(mkdir(outdir, 0700), 0);
    const size_t sizes[] = {0, 1000, (13u << 20) + 12345};
    for (size_t i = 0; i < 3; i++) {
        fake_write_pattern(src, sizes[i], sum);
        ASSERT_OK(objstore_put_file(s, "big/obj", src, &ref, &e));
        assert_int_equal(ref.size, sizes[i]);
        assert_string_equal(ref.checksum, sum);
        assert_string_equal(ref.uri, "s3://remex/st/big/obj");
        ASSERT_OK(objstore_get_file(s, "big/obj", dst, ref.checksum, &got, &e));
        assert_int_equal(got.size, sizes[i]);
        assert_string_equal(got.checksum, sum);
        assert_true(fake_files_equal(src, dst));
    }
    /* The multipart object is one object on the server (parts assembled, upload gone). */
    char meta[256];
    snprintf(meta, sizeof(meta), "%s/remex/st/big/obj._S3rver_object", srv_dir);
    struct stat sb;
    assert_int_equal(stat(meta, &sb), 0);
    assert_int_equal((size_t)sb.st_size, sizes[2]);
    /* A wrong expected checksum: REMEX_EPROTO and the target is left as it was. */
    snprintf(bad, sizeof(bad), "sha256:%064d", 0);
    assert_int_equal(objstore_get_file(s, "big/obj", dst, bad, NULL, &e), REMEX_EPROTO);
    assert_non_null(strstr(e.msg, "checksum mismatch"));
    assert_true(fake_files_equal(src, dst));
    /* Missing objects and files. */
    assert_int_equal(objstore_get_file(s, "big/none", dst, NULL, NULL, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "NoSuchKey"));
    assert_int_equal(objstore_put_file(s, "big/x", "/nonexistent/file", NULL, &e), REMEX_ENOTFOUND);
    assert_int_equal(objstore_put_file(s, "big/x", dir, NULL, &e), REMEX_EINVAL);
    objstore_close(s);
    /* A part size under S3's 5 MiB minimum is refused at open. */
    o.part_size = 1u << 20;
    assert_int_equal(objstore_open_opts("s3://remex/st", &o, &s, &e), REMEX_EINVAL);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Virtual-host addressing: "remex.s3.localhost" (libcurl resolves *.localhost to loopback). */
static void test_virtual_host(void **state)
{
    (void)state;
    NEED_SERVER();
    char vh[64];
    snprintf(vh, sizeof(vh), "http://s3.localhost:%u", srv.port);
    struct objstore_opts o = {.endpoint = vh, .path_style = 0, .getenv_fn = fake_getenv};
    struct objstore *s = NULL;
    struct remex_error e;
    struct buf b = BUF_INIT(1 << 16);
    assert_int_equal(objstore_open_opts("s3://remex/vh", &o, &s, &e), REMEX_OK);
    ASSERT_OK(objstore_put(s, "k/v", "hello", 5, NULL, &e));
    ASSERT_OK(objstore_get(s, "k/v", &b, &e));
    assert_string_equal(buf_cstr(&b), "hello");
    char meta[256];
    struct stat sb;
    snprintf(meta, sizeof(meta), "%s/remex/vh/k/v._S3rver_object", srv_dir);
    assert_int_equal(stat(meta, &sb), 0);
    /* A bucket that does not exist, by virtual host: NoSuchBucket. */
    objstore_close(s);
    assert_int_equal(objstore_open_opts("s3://nobucket/vh", &o, &s, &e), REMEX_OK);
    assert_int_equal(objstore_put(s, "k/v", "x", 1, NULL, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "NoSuchBucket"));
    objstore_close(s);
    buf_free(&b);
}

static void test_parse_error(void **state)
{
    (void)state;
    char code[32], msg[64];
    const char *ok = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>"
                     "<Message>Access \x01 Denied</Message></Error>";
    assert_int_equal(objstore_s3_parse_error(ok, strlen(ok), code, sizeof(code), msg, sizeof(msg)),
                     1);
    assert_string_equal(code, "AccessDenied");
    assert_string_equal(msg, "Access  Denied"); /* control characters dropped */
    const char *bad[] = {
        "", "<Code>", "<Code>x", "</Code><Code>", "<Error><Code></Code></Error>", "not xml at all"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(
            objstore_s3_parse_error(bad[i], strlen(bad[i]), code, sizeof(code), msg, sizeof(msg)),
            0);
    /* Truncated to the caps. */
    const char *lng = "<Code>ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOPQRSTUVWXYZ</Code>";
    assert_int_equal(objstore_s3_parse_error(lng, strlen(lng), code, 8, msg, sizeof(msg)), 1);
    assert_string_equal(code, "ABCDEFG");
    /* Not NUL-terminated input is read within its length only. */
    char raw[12];
    memcpy(raw, "<Code>AB</Co", 12);
    assert_int_equal(
        objstore_s3_parse_error(raw, sizeof(raw), code, sizeof(code), msg, sizeof(msg)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_large_and_empty),
        cmocka_unit_test(test_wrong_secret), cmocka_unit_test(test_no_bucket_no_server),
        cmocka_unit_test(test_parse_error),  cmocka_unit_test(test_stream_multipart),
        cmocka_unit_test(test_virtual_host),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
