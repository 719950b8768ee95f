/* Unit tests: objstore (local backend, keys, references). */
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
#include "remex/objstore_http.h"

static char dir[64], root[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/remex-obj-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(root, sizeof(root), "%s/store/", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct objstore *open_store(void)
{
    struct objstore *s = NULL;
    struct remex_error e;
    char url[160];
    snprintf(url, sizeof(url), "file://%s", root);
    if (objstore_open(url, &s, &e) != REMEX_OK)
        fail_msg("open: %s", e.msg);
    return s;
}

static void test_put_get_ref(void **state)
{
    (void)state;
    struct objstore *s = open_store();
    struct objstore_ref ref;
    struct remex_error e;
    struct buf b = BUF_INIT(1024);
    const char *key = "xcom/etl/manual__2026-11-22T10:00:00+00:00/extract/-1/rows";
    assert_int_equal(objstore_put(s, key, "1234", 4, &ref, &e), REMEX_OK);
    assert_int_equal(ref.size, 4);
    /* sha256("1234") */
    assert_string_equal(ref.checksum,
                        "sha256:03ac674216f3e15c761ee1a5e255f067953623c8b388b4459e13f978d7c846f4");
    assert_non_null(strstr(ref.uri, "file:///tmp/remex-obj-"));
    assert_non_null(strstr(ref.uri, "/store/xcom/etl/"));
    assert_int_equal(objstore_get(s, key, &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "1234");
    buf_reset(&b);
    assert_int_equal(objstore_get_uri(s, ref.uri, ref.checksum, &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "1234");
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s%s", root, key);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    buf_free(&b);
    objstore_close(s);
}

static void test_replace_and_delete(void **state)
{
    (void)state;
    struct objstore *s = open_store();
    struct objstore_ref ref;
    struct remex_error e;
    struct buf b = BUF_INIT(1024);
    assert_int_equal(objstore_put(s, "k", "old", 3, NULL, &e), REMEX_OK);
    assert_int_equal(objstore_put(s, "k", "newer", 5, NULL, &e), REMEX_OK);
    assert_int_equal(objstore_stat(s, "k", &ref, &e), REMEX_OK);
    assert_int_equal(ref.size, 5);
    assert_int_equal(objstore_get(s, "k", &b, &e), REMEX_OK);
    assert_string_equal(buf_cstr(&b), "newer");
    assert_int_equal(objstore_delete(s, "k", &e), REMEX_OK);
    assert_int_equal(objstore_delete(s, "k", &e), REMEX_ENOTFOUND);
    assert_int_equal(objstore_get(s, "k", &b, &e), REMEX_ENOTFOUND);
    buf_free(&b);
    objstore_close(s);
}

static void test_bad_keys(void **state)
{
    (void)state;
    static const char *bad[] = {"",    "/abs",   "a//b",      "a/../b", "..",  "./a",
                                "a/.", "sp ace", "new\nline", "a\\b",   "x?y", "trail/"};
    struct remex_error e;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (objstore_check_key(bad[i], &e) != REMEX_EINVAL)
            fail_msg("accepted key '%s'", bad[i]);
    char big[OBJSTORE_KEY_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(objstore_check_key(big, &e), REMEX_EINVAL);
    assert_int_equal(objstore_check_key("a.b/c_d=e:f+g@h,i-j", &e), REMEX_OK);
}

static void test_uri_outside_store_refused(void **state)
{
    (void)state;
    struct objstore *s = open_store();
    struct remex_error e;
    struct buf b = BUF_INIT(1 << 20);
    char uri[256];
    assert_int_equal(objstore_get_uri(s, "file:///etc/passwd", NULL, &b, &e), REMEX_EPERM);
    snprintf(uri, sizeof(uri), "file://%s../escape", root);
    assert_int_not_equal(objstore_get_uri(s, uri, NULL, &b, &e), REMEX_OK);
    /* A sibling folder sharing the prefix is outside too. */
    snprintf(uri, sizeof(uri), "file://%.*s-other/x", (int)strlen(root) - 1, root);
    assert_int_equal(objstore_get_uri(s, uri, NULL, &b, &e), REMEX_EPERM);
    assert_int_equal(objstore_get_uri(s, "s3://bucket/key", NULL, &b, &e), REMEX_EPERM);
    assert_int_equal(b.len, 0);
    buf_free(&b);
    objstore_close(s);
}

static void test_checksum_mismatch(void **state)
{
    (void)state;
    struct objstore *s = open_store();
    struct objstore_ref ref;
    struct remex_error e;
    struct buf b = BUF_INIT(1024);
    assert_int_equal(objstore_put(s, "v", "value", 5, &ref, &e), REMEX_OK);
    assert_int_equal(objstore_put(s, "v", "tampered", 8, NULL, &e), REMEX_OK);
    assert_int_equal(objstore_get_uri(s, ref.uri, ref.checksum, &b, &e), REMEX_EPROTO);
    assert_int_equal(b.len, 0);
    assert_non_null(strstr(e.msg, "checksum mismatch"));
    buf_free(&b);
    objstore_close(s);
}

static void test_size_cap(void **state)
{
    (void)state;
    struct objstore *s = open_store();
    struct remex_error e;
    struct buf b = BUF_INIT(4);
    assert_int_equal(objstore_put(s, "big", "0123456789", 10, NULL, &e), REMEX_OK);
    assert_int_equal(objstore_get(s, "big", &b, &e), REMEX_ETOOBIG);
    buf_free(&b);
    objstore_close(s);
}

/* An object over the cap leaves out as it was, even after whole chunks fit. */
static void test_size_cap_leaves_out_unchanged(void **state)
{
    (void)state;
    struct objstore *s = open_store();
    struct remex_error e;
    struct buf b = BUF_INIT(100 * 1024);
    size_t n = 200 * 1024;
    char *data = malloc(n);

    assert_non_null(data);
    memset(data, 'x', n);
    assert_int_equal(objstore_put(s, "huge", data, n, NULL, &e), REMEX_OK);
    assert_int_equal(buf_puts(&b, "prefix"), REMEX_OK);
    assert_int_equal(objstore_get(s, "huge", &b, &e), REMEX_ETOOBIG);
    assert_int_equal(b.len, 6);
    assert_string_equal(buf_cstr(&b), "prefix");
    buf_free(&b);
    free(data);
    objstore_close(s);
}

/* put_file / get_file on a folder store: same references, atomic results, checks. */
static void test_put_get_file(void **state)
{
    (void)state;
    struct objstore *s = open_store();
    struct objstore_ref ref, got;
    struct remex_error e;
    char src[128], dst[128], bad[72], text[64] = "";
    snprintf(src, sizeof(src), "%s/src.txt", dir);
    snprintf(dst, sizeof(dst), "%s/dst.txt", dir);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs("1234", f);
    fclose(f);
    assert_int_equal(objstore_put_file(s, "logs/a.log", src, &ref, &e), REMEX_OK);
    assert_int_equal(ref.size, 4);
    assert_string_equal(ref.checksum,
                        "sha256:03ac674216f3e15c761ee1a5e255f067953623c8b388b4459e13f978d7c846f4");
    assert_non_null(strstr(ref.uri, "/store/logs/a.log"));
    assert_int_equal(objstore_get_file(s, "logs/a.log", dst, ref.checksum, &got, &e), REMEX_OK);
    assert_string_equal(got.checksum, ref.checksum);
    f = fopen(dst, "r");
    assert_non_null(f);
    assert_non_null(fgets(text, sizeof(text), f));
    fclose(f);
    assert_string_equal(text, "1234");
    /* A wrong checksum leaves the target as it was and no temporary file behind. */
    snprintf(bad, sizeof(bad), "sha256:%064d", 0);
    assert_int_equal(objstore_get_file(s, "logs/a.log", dst, bad, NULL, &e), REMEX_EPROTO);
    assert_non_null(strstr(e.msg, "checksum mismatch"));
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.part.%ld", dst, (long)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(objstore_get_file(s, "logs/none", dst, NULL, NULL, &e), REMEX_ENOTFOUND);
    assert_int_equal(objstore_get_file(s, "../x", dst, NULL, NULL, &e), REMEX_EINVAL);
    /* stat reads the object through without keeping it: same size and checksum. */
    struct objstore_ref st;
    assert_int_equal(objstore_stat(s, "logs/a.log", &st, &e), REMEX_OK);
    assert_int_equal(st.size, 4);
    assert_string_equal(st.checksum, ref.checksum);
    assert_int_equal(objstore_stat(s, "logs/none", &st, &e), REMEX_ENOTFOUND);
    assert_int_equal(objstore_put_file(s, "logs/b", "/nonexistent", NULL, &e), REMEX_ENOTFOUND);
    assert_int_equal(objstore_put_file(s, "logs/b", dir, NULL, &e), REMEX_EINVAL);
    objstore_close(s);
}

/* A download sink checks the body against the MD5 the store states (ETag, Content-MD5,
 * x-goog-hash). */
static void sink_case(const char *header, remex_err want)
{
    struct objstore_sink k;
    struct remex_error e;
    char path[128], sum[72];
    uint64_t n = 0;
    snprintf(path, sizeof(path), "%s/sink.out", dir);
    assert_int_equal(objstore_sink_open(&k, path, &e), REMEX_OK);
    k.st.header(header, strlen(header), k.st.ud);
    assert_int_equal(k.st.write("1234", 4, k.st.ud), 0);
    assert_int_equal(objstore_sink_finish(&k, REMEX_OK, NULL, sum, &n, &e), want);
    assert_int_equal(access(path, F_OK) == 0, want == REMEX_OK);
    unlink(path);
}

static void test_sink_store_md5(void **state)
{
    (void)state;
    /* md5("1234") = 81dc9bdb52d04dc20036dbd8313ed055 = gdyb21LQTcIANtvYMT7QVQ== */
    sink_case("ETag: \"81dc9bdb52d04dc20036dbd8313ed055\"", REMEX_OK);
    sink_case("ETag: \"81dc9bdb52d04dc20036dbd8313ed056\"", REMEX_EPROTO);
    sink_case("ETag: \"81dc9bdb52d04dc20036dbd8313ed056-2\"", REMEX_OK); /* multipart: not an MD5 */
    sink_case("ETag: \"0x8DC1234567890AB\"", REMEX_OK);                  /* Azure: not an MD5 */
    sink_case("Content-MD5: gdyb21LQTcIANtvYMT7QVQ==", REMEX_OK);
    sink_case("content-md5: AAAAAAAAAAAAAAAAAAAAAA==", REMEX_EPROTO);
    sink_case("x-goog-hash: crc32c=n03x6A==, md5=gdyb21LQTcIANtvYMT7QVQ==", REMEX_OK);
    sink_case("x-goog-hash: crc32c=n03x6A==,md5=AAAAAAAAAAAAAAAAAAAAAA==", REMEX_EPROTO);
}

static void test_find(void **state)
{
    (void)state;
    struct objstore *s = open_store();
    struct remex_error e;
    char found[OBJSTORE_KEY_MAX + 1];
    assert_int_equal(objstore_put(s, "exports/d1/part-2", "x", 1, NULL, &e), REMEX_OK);
    assert_int_equal(objstore_put(s, "exports/d1/part-1", "x", 1, NULL, &e), REMEX_OK);
    assert_int_equal(objstore_put(s, "exports/d1/_SUCCESS", "", 0, NULL, &e), REMEX_OK);
    /* A key: itself only (a longer or shorter name is not it). */
    assert_int_equal(objstore_find(s, "exports/d1/_SUCCESS", 1, found, sizeof(found), &e),
                     REMEX_OK);
    assert_string_equal(found, "exports/d1/_SUCCESS");
    assert_int_equal(objstore_find(s, "exports/d1/_SUCC", 1, found, sizeof(found), &e),
                     REMEX_ENOTFOUND);
    assert_int_equal(objstore_find(s, "exports/d1", 1, found, sizeof(found), &e),
                     REMEX_ENOTFOUND); /* a folder is not an object */
    /* A prefix: the first object in key order. */
    assert_int_equal(objstore_find(s, "exports/d1/part-", 0, found, sizeof(found), &e), REMEX_OK);
    assert_string_equal(found, "exports/d1/part-1");
    assert_int_equal(objstore_find(s, "exports/d1/", 0, found, sizeof(found), &e), REMEX_OK);
    assert_string_equal(found, "exports/d1/_SUCCESS");
    assert_int_equal(objstore_find(s, "exports/d2/", 0, found, sizeof(found), &e), REMEX_ENOTFOUND);
    assert_int_equal(objstore_find(s, "exports/d1/x", 0, found, sizeof(found), &e),
                     REMEX_ENOTFOUND);
    /* Keys are checked as everywhere else. */
    assert_int_equal(objstore_find(s, "../etc/passwd", 1, found, sizeof(found), &e), REMEX_EINVAL);
    assert_int_equal(objstore_find(s, "../", 0, found, sizeof(found), &e), REMEX_EINVAL);
    assert_int_equal(objstore_find(s, "a//b", 0, found, sizeof(found), &e), REMEX_EINVAL);
    objstore_close(s);
}

static void test_open_errors(void **state)
{
    (void)state;
    struct objstore *s = NULL;
    struct remex_error e;
    assert_int_equal(objstore_open("relative/dir", &s, &e), REMEX_EINVAL);
    assert_int_equal(objstore_open("ftp://bucket/prefix", &s, &e), REMEX_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "'ftp'"));
    assert_int_equal(objstore_open("s3://BAD_bucket/prefix", &s, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "bucket"));
    assert_int_equal(objstore_open("/proc/forbidden/store", &s, &e), REMEX_EIO);
    assert_null(s);
}

/* The end of a buffered remote call: the body goes into out within its cap, the reply is freed. */
static void test_http_done(void **state)
{
    struct http_response r = {.status = 200, .body = BUF_INIT(1024)};
    struct buf out = BUF_INIT(4);
    struct remex_error e = {0};
    (void)state;
    assert_int_equal(buf_append(&r.body, "abc", 3), REMEX_OK);
    assert_int_equal(objstore_http_done(REMEX_OK, &r, "k", &out, &e), REMEX_OK);
    assert_int_equal(out.len, 3);
    assert_memory_equal(out.data, "abc", 3);
    assert_null(r.body.data);
    assert_int_equal(buf_append(&r.body, "defgh", 5), REMEX_OK);
    assert_int_equal(objstore_http_done(REMEX_OK, &r, "big/key", &out, &e), REMEX_ETOOBIG);
    assert_non_null(strstr(e.msg, "big/key: larger than 4 bytes"));
    assert_int_equal(out.len, 3);
    assert_int_equal(buf_append(&r.body, "x", 1), REMEX_OK);
    remex_seterr(&e, REMEX_ENOTFOUND, "s3 GET k: HTTP 404");
    assert_int_equal(objstore_http_done(REMEX_ENOTFOUND, &r, "k", &out, &e), REMEX_ENOTFOUND);
    assert_string_equal(e.msg, "s3 GET k: HTTP 404"); /* the call's error stays */
    assert_int_equal(out.len, 3);
    assert_null(r.body.data);
    assert_int_equal(objstore_http_done(REMEX_OK, &r, "k", NULL, &e), REMEX_OK); /* put, delete */
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_ref, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_and_delete, setup, teardown),
        cmocka_unit_test(test_bad_keys),
        cmocka_unit_test_setup_teardown(test_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uri_outside_store_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checksum_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_cap_leaves_out_unchanged, setup, teardown),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_http_done),
        cmocka_unit_test_setup_teardown(test_put_get_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_store_md5, setup, teardown),
    };
    return cmocka_run_group_tests_name("objstore", tests, NULL, NULL);
}
