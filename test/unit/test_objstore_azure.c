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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/objstore.h"
#include "remex/objstore_azure.h"

#include "helper_server.h"

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
    if (test_server_start(&srv, argv) != 0)
        return -1;
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%u/devstoreaccount1", srv.port);
    return 0;
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

#define NEED_SERVER()                                                                              \
    do {                                                                                           \
        if (!endpoint[0]) {                                                                        \
            printf("# azurite not installed (run mk/azurite.sh)\n");                               \
            fflush(stdout);                                                                        \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

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
    /* Delete, then not found. */
    assert_int_equal(objstore_delete(s, key, &e), REMEX_OK);
    assert_int_equal(objstore_get(s, key, &b, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "BlobNotFound"));
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
    };
    return cmocka_run_group_tests(tests, start, stop);
}
