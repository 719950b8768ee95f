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
    };
    return cmocka_run_group_tests_name("objstore", tests, NULL, NULL);
}
