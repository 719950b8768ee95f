/* Unit tests: bundle (local folders, content versions). */
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

#include "remex/bundle.h"

static char dir[64], a[128], b2[128];

static void put(const char *base, const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", base, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/remex-bundle-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(a, sizeof(a), "%s/a", dir);
    snprintf(b2, sizeof(b2), "%s/b", dir);
    mkdir(a, 0755);
    mkdir(b2, 0755);
    char sub[160];
    snprintf(sub, sizeof(sub), "%s/dags", a);
    mkdir(sub, 0755);
    put(a, "dags/etl.yaml", "dag_id: etl\n");
    put(a, "run.sh", "echo hi\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_paths(void **state)
{
    (void)state;
    struct bundle_spec specs[] = {{"main", a}, {"other", b2}};
    struct bundle_set *s;
    struct remex_error e;
    const char *p;
    assert_int_equal(bundle_set_new(specs, 2, &s, &e), REMEX_OK);
    assert_string_equal(bundle_name(s, 1), "other");
    assert_null(bundle_name(s, 2));
    assert_int_equal(bundle_path(s, "main", NULL, &p, &e), REMEX_OK);
    assert_string_equal(p, a);
    assert_int_equal(bundle_path(s, "main", "sha256:abc", &p, &e), REMEX_OK);
    assert_int_equal(bundle_path(s, "nope", NULL, &p, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "'nope'"));
    bundle_set_free(s);
}

static void test_relative_path_made_absolute(void **state)
{
    (void)state;
    char cwd[256];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    struct bundle_spec specs[] = {{"main", "a"}};
    struct bundle_set *s;
    struct remex_error e;
    const char *p;
    assert_int_equal(bundle_set_new(specs, 1, &s, &e), REMEX_OK);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(bundle_path(s, "main", NULL, &p, &e), REMEX_OK);
    assert_string_equal(p, a);
    bundle_set_free(s);
}

static void test_invalid_specs(void **state)
{
    (void)state;
    struct bundle_set *s = NULL;
    struct remex_error e;
    struct bundle_spec dup[] = {{"x", a}, {"x", b2}};
    assert_int_equal(bundle_set_new(dup, 2, &s, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "bundles[1].name: duplicate"));
    struct bundle_spec badname[] = {{"bad name", a}};
    assert_int_equal(bundle_set_new(badname, 1, &s, &e), REMEX_EINVAL);
    struct bundle_spec missing[] = {{"m", "/nonexistent/folder"}};
    assert_int_equal(bundle_set_new(missing, 1, &s, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "bundles[0].path: /nonexistent/folder: No such file"));
    char file[160];
    snprintf(file, sizeof(file), "%s/run.sh", a);
    struct bundle_spec notdir[] = {{"f", file}};
    assert_int_equal(bundle_set_new(notdir, 1, &s, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "not a folder"));
    assert_null(s);
}

/* Folder nesting is capped: the walk recurses once per level. */
static void test_version_depth_cap(void **state)
{
    (void)state;
    struct bundle_spec specs[] = {{"deep", b2}};
    struct bundle_set *s;
    struct remex_error e;
    char v[72], path[1024];
    size_t n = (size_t)snprintf(path, sizeof(path), "%s", b2);

    for (int i = 0; i < BUNDLE_MAX_DEPTH; i++) {
        n += (size_t)snprintf(path + n, sizeof(path) - n, "/d");
        assert_int_equal(mkdir(path, 0755), 0);
    }
    put(path, "f", "x");
    assert_int_equal(bundle_set_new(specs, 1, &s, &e), REMEX_OK);
    assert_int_equal(bundle_version(s, "deep", v, &e), REMEX_OK);
    n += (size_t)snprintf(path + n, sizeof(path) - n, "/d");
    assert_int_equal(mkdir(path, 0755), 0);
    put(path, "f", "x");
    assert_int_equal(bundle_version(s, "deep", v, &e), REMEX_ETOOBIG);
    assert_non_null(strstr(e.msg, "nested deeper"));
    bundle_set_free(s);
}

static void test_version_tracks_content(void **state)
{
    (void)state;
    struct bundle_spec specs[] = {{"main", a}, {"empty", b2}};
    struct bundle_set *s;
    struct remex_error e;
    char v1[72], v2[72], v3[72], v4[72], ve[72];
    assert_int_equal(bundle_set_new(specs, 2, &s, &e), REMEX_OK);
    assert_int_equal(bundle_version(s, "main", v1, &e), REMEX_OK);
    assert_int_equal(strlen(v1), 71);
    assert_int_equal(strncmp(v1, "sha256:", 7), 0);
    assert_int_equal(bundle_version(s, "main", v2, &e), REMEX_OK);
    assert_string_equal(v1, v2);
    /* Dot-files (e.g. .git) do not change the version. */
    put(a, ".hidden", "x");
    assert_int_equal(bundle_version(s, "main", v2, &e), REMEX_OK);
    assert_string_equal(v1, v2);
    put(a, "run.sh", "echo bye\n");
    assert_int_equal(bundle_version(s, "main", v3, &e), REMEX_OK);
    assert_string_not_equal(v1, v3);
    /* Moving content between files changes the version too. */
    put(a, "run.sh", "echo hi\n");
    assert_int_equal(bundle_version(s, "main", v4, &e), REMEX_OK);
    assert_string_equal(v1, v4);
    assert_int_equal(bundle_version(s, "empty", ve, &e), REMEX_OK);
    assert_string_not_equal(ve, v1);
    assert_int_equal(bundle_version(s, "nope", ve, &e), REMEX_ENOTFOUND);
    bundle_set_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relative_path_made_absolute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_specs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_tracks_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_depth_cap, setup, teardown),
    };
    return cmocka_run_group_tests_name("bundle", tests, NULL, NULL);
}
