/* Unit tests: bundle (local folders, content versions). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/bundle.h"
#include "remex/gitbundle.h"

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
    struct bundle_spec specs[] = {{.name = "main", .path = a, .unversioned = 0},
                                  {.name = "other", .path = b2, .unversioned = 0}};
    struct bundle_set *s;
    struct remex_error e;
    const char *p;
    assert_int_equal(bundle_set_new(specs, 2, &s, &e), REMEX_OK);
    assert_string_equal(bundle_name(s, 1), "other");
    assert_null(bundle_name(s, 2));
    assert_int_equal(bundle_path(s, "main", NULL, &p, &e), REMEX_OK);
    assert_string_equal(p, a);
    /* A version the folder does not hold cannot be had (the bug was: any version resolved). */
    assert_int_equal(bundle_path(s, "main", "sha256:abc", &p, &e), REMEX_ECONFLICT);
    assert_non_null(strstr(e.msg, "bundle 'main' at version sha256:abc cannot be had"));
    assert_non_null(strstr(e.msg, "now holds version sha256:"));
    assert_non_null(strstr(e.msg, a));
    assert_int_equal(bundle_path(s, "nope", NULL, &p, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "'nope'"));
    bundle_set_free(s);
}

/* A task runs at its version while the folder still holds it, and fails once it changed. */
static void test_path_at_version(void **state)
{
    (void)state;
    struct bundle_spec specs[] = {{.name = "main", .path = a, .unversioned = 0},
                                  {.name = "loose", .path = a, .unversioned = 1}};
    struct bundle_set *s = NULL;
    struct remex_error e;
    const char *p = NULL;
    char v1[BUNDLE_VERSION_MAX], v2[BUNDLE_VERSION_MAX];
    assert_int_equal(bundle_set_new(specs, 2, &s, &e), REMEX_OK);
    assert_int_equal(bundle_version(s, "main", v1, &e), REMEX_OK);
    assert_int_equal(bundle_path(s, "main", v1, &p, &e), REMEX_OK);
    assert_string_equal(p, a);
    assert_string_equal(bundle_root(s, "main"), a);
    assert_null(bundle_root(s, "nope"));
    put(a, "run.sh", "echo changed\n");
    assert_int_equal(bundle_version(s, "main", v2, &e), REMEX_OK);
    assert_string_not_equal(v1, v2);
    assert_int_equal(bundle_path(s, "main", v1, &p, &e), REMEX_ECONFLICT);
    assert_non_null(strstr(e.msg, v1));
    assert_non_null(strstr(e.msg, v2));
    assert_non_null(strstr(e.msg, "versioned: false"));
    assert_int_equal(bundle_path(s, "main", v2, &p, &e), REMEX_OK);
    /* versioned: false runs in the folder as it is, whatever the version. */
    assert_int_equal(bundle_path(s, "loose", v1, &p, &e), REMEX_OK);
    assert_string_equal(p, a);
    assert_int_equal(bundle_path(s, "loose", "v1", &p, &e), REMEX_OK);
    bundle_set_free(s);
}

/* The stat cache: unchanged files are not read; any change of content is seen. */
static void test_scan_cache(void **state)
{
    (void)state;
    struct bundle_files f1, f2, f3;
    struct remex_error e;
    char v1[BUNDLE_VERSION_MAX], v2[BUNDLE_VERSION_MAX], v3[BUNDLE_VERSION_MAX];
    assert_int_equal(bundle_scan_dir(a, NULL, &f1, v1, &e), REMEX_OK);
    assert_int_equal(f1.n, 2);
    assert_int_equal(f1.hashed, 2);
    assert_string_equal(f1.v[0].rel, "dags/etl.yaml");
    assert_string_equal(f1.v[1].rel, "run.sh");
    assert_int_equal(bundle_files_find(&f1, "run.sh"), 1);
    assert_int_equal(bundle_files_find(&f1, "nope"), -1);
    /* Files written just now are racy: the next scan reads them again. */
    assert_int_equal(f1.v[0].racy, 1);
    assert_int_equal(bundle_scan_dir(a, &f1, &f2, v2, &e), REMEX_OK);
    assert_int_equal(f2.hashed, 2);
    assert_string_equal(v1, v2);
    /* Once settled, an unchanged file is taken from the cache. */
    for (size_t i = 0; i < f2.n; i++)
        f2.v[i].racy = 0;
    assert_int_equal(bundle_scan_dir(a, &f2, &f3, v3, &e), REMEX_OK);
    assert_int_equal(f3.hashed, 0);
    assert_string_equal(v1, v3);
    bundle_files_free(&f3);
    /* Same size and mtime, new content: the ctime gives it away. */
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/run.sh", a);
    assert_int_equal(stat(path, &st), 0);
    put(a, "run.sh", "echo HI\n");
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
    assert_int_equal(bundle_scan_dir(a, &f2, &f3, v3, &e), REMEX_OK);
    assert_int_equal(f3.hashed, 1);
    assert_string_not_equal(v1, v3);
    bundle_files_free(&f1);
    bundle_files_free(&f2);
    bundle_files_free(&f3);
}

/* Git bundles: a task runs in its commit's checkout, which must be there. */
static void test_git_paths(void **state)
{
    (void)state;
    char state_dir[128], co[256];
    const char *sha = "0123456789abcdef0123456789abcdef01234567";
    snprintf(state_dir, sizeof(state_dir), "%s/state", dir);
    struct bundle_spec specs[] = {
        {.name = "g", .url = "file:///nowhere", .subdir = "dags", .state_dir = state_dir}};
    struct bundle_set *s = NULL;
    struct remex_error e;
    const char *p = NULL;
    char v[BUNDLE_VERSION_MAX];
    assert_int_equal(bundle_set_new(specs, 1, &s, &e), REMEX_OK);
    snprintf(co, sizeof(co), "%s/bundles/g", state_dir);
    assert_string_equal(bundle_git_dir(s, "g"), co);
    assert_null(bundle_root(s, "g"));
    assert_int_equal(bundle_path(s, "g", "v1", &p, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "version 'v1' is not a commit SHA"));
    assert_int_equal(bundle_path(s, "g", NULL, &p, &e), REMEX_EINVAL);
    assert_int_equal(bundle_path(s, "g", sha, &p, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "is not checked out on this agent"));
    snprintf(co, sizeof(co), "mkdir -p '%s/bundles/g/%s/dags'", state_dir, sha);
    assert_int_equal(system(co), 0);
    assert_int_equal(bundle_path(s, "g", sha, &p, &e), REMEX_OK);
    snprintf(co, sizeof(co), "%s/bundles/g/%s/dags", state_dir, sha);
    assert_string_equal(p, co);
    assert_int_equal(bundle_version(s, "g", v, &e), REMEX_EINVAL);
    bundle_set_free(s);
    /* Refused specs: both sources, neither, a subdir leaving the repository. */
    struct bundle_spec both[] = {{.name = "x", .path = a, .url = "file:///r", .state_dir = dir}};
    assert_int_equal(bundle_set_new(both, 1, &s, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "not both"));
    struct bundle_spec none[] = {{.name = "x"}};
    assert_int_equal(bundle_set_new(none, 1, &s, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "set path (a local folder) or url"));
    const char *bad[] = {"../x", "/abs", "a/../../b", "..", "a/.."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        struct bundle_spec sd[] = {
            {.name = "x", .url = "file:///r", .subdir = bad[i], .state_dir = dir}};
        assert_int_equal(bundle_set_new(sd, 1, &s, &e), REMEX_EINVAL);
        assert_non_null(strstr(e.msg, "subdir: must be a folder inside"));
    }
}

/* Makes the checkout folder <state>/bundles/g/<sha> with the given mtime (seconds). */
static void make_checkout(const char *gdir, const char *sha, long mtime)
{
    char p[256];
    snprintf(p, sizeof(p), "mkdir -p '%s/%s/dags' && touch '%s/%s/dags/f'", gdir, sha, gdir, sha);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof(p), "%s/%s", gdir, sha);
    struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static int exists(const char *gdir, const char *sha)
{
    char p[256];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", gdir, sha);
    return stat(p, &st) == 0;
}

/* Pruning keeps the newest, the spared, and every checkout a task holds. */
static void test_prune_never_under_a_task(void **state)
{
    (void)state;
    char state_dir[128];
    const char *old = "1111111111111111111111111111111111111111",
               *mid = "2222222222222222222222222222222222222222",
               *spared = "3333333333333333333333333333333333333333",
               *newest = "4444444444444444444444444444444444444444";
    snprintf(state_dir, sizeof(state_dir), "%s/state", dir);
    struct bundle_spec specs[] = {
        {.name = "g", .url = "file:///nowhere", .subdir = "dags", .state_dir = state_dir}};
    struct bundle_set *s = NULL;
    struct remex_error e;
    const char *p;
    int fd = -1, fd2 = -1;
    size_t held = 0;
    assert_int_equal(bundle_set_new(specs, 1, &s, &e), REMEX_OK);
    const char *gdir = bundle_git_dir(s, "g");
    make_checkout(gdir, old, 1000);
    make_checkout(gdir, mid, 2000);
    make_checkout(gdir, spared, 2500);
    make_checkout(gdir, newest, 3000);
    /* A task runs in the oldest checkout. */
    assert_int_equal(bundle_path(s, "g", old, &p, &e), REMEX_OK);
    assert_int_equal(bundle_hold(s, "g", old, &fd, &e), REMEX_OK);
    assert_true(fd >= 0);
    const char *spare[] = {spared};
    assert_int_equal(gitbundle_prune(gdir, 1, spare, 1, &held), 1);
    assert_int_equal(held, 1);
    assert_true(exists(gdir, old));
    assert_false(exists(gdir, mid));
    assert_true(exists(gdir, spared));
    assert_true(exists(gdir, newest));
    /* Two tasks may hold one checkout. */
    assert_int_equal(bundle_hold(s, "g", old, &fd2, &e), REMEX_OK);
    close(fd);
    assert_int_equal(gitbundle_prune(gdir, 1, spare, 1, &held), 0);
    assert_true(exists(gdir, old));
    close(fd2);
    /* Once no task holds it, it goes. */
    assert_int_equal(gitbundle_prune(gdir, 1, spare, 1, &held), 1);
    assert_int_equal(held, 0);
    assert_false(exists(gdir, old));
    assert_int_equal(bundle_hold(s, "g", old, &fd, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "is gone (pruned)"));
    /* A local bundle holds nothing. */
    bundle_set_free(s);
    struct bundle_spec loc[] = {{.name = "l", .path = a}};
    assert_int_equal(bundle_set_new(loc, 1, &s, &e), REMEX_OK);
    assert_int_equal(bundle_hold(s, "l", NULL, &fd, &e), REMEX_OK);
    assert_int_equal(fd, -1);
    bundle_set_free(s);
}

static void test_relative_path_made_absolute(void **state)
{
    (void)state;
    char cwd[256];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    struct bundle_spec specs[] = {{.name = "main", .path = "a", .unversioned = 0}};
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
    struct bundle_spec dup[] = {{.name = "x", .path = a, .unversioned = 0},
                                {.name = "x", .path = b2, .unversioned = 0}};
    assert_int_equal(bundle_set_new(dup, 2, &s, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "bundles[1].name: duplicate"));
    struct bundle_spec badname[] = {{.name = "bad name", .path = a, .unversioned = 0}};
    assert_int_equal(bundle_set_new(badname, 1, &s, &e), REMEX_EINVAL);
    struct bundle_spec missing[] = {{.name = "m", .path = "/nonexistent/folder", .unversioned = 0}};
    assert_int_equal(bundle_set_new(missing, 1, &s, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "bundles[0].path: /nonexistent/folder: No such file"));
    char file[160];
    snprintf(file, sizeof(file), "%s/run.sh", a);
    struct bundle_spec notdir[] = {{.name = "f", .path = file, .unversioned = 0}};
    assert_int_equal(bundle_set_new(notdir, 1, &s, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "not a folder"));
    assert_null(s);
}

/* Folder nesting is capped: the walk recurses once per level. */
static void test_version_depth_cap(void **state)
{
    (void)state;
    struct bundle_spec specs[] = {{.name = "deep", .path = b2, .unversioned = 0}};
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
    struct bundle_spec specs[] = {{.name = "main", .path = a, .unversioned = 0},
                                  {.name = "empty", .path = b2, .unversioned = 0}};
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

static void slurp(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t k = fread(out, 1, n - 1, f);
    out[k] = '\0';
    fclose(f);
}

/* A versioned local bundle with a state_dir runs each task in a read-only snapshot of the
 * version it was scheduled with, even after the folder changed (the bug was: the folder as
 * it is now, or a failure). */
static void test_snapshot_keeps_the_scheduled_version(void **state)
{
    (void)state;
    char sd[128], v1[BUNDLE_VERSION_MAX], v2[BUNDLE_VERSION_MAX], f[512], text[64], exe[160];
    struct stat st, st2;
    snprintf(sd, sizeof(sd), "%s/state", dir);
    snprintf(exe, sizeof(exe), "%s/run.sh", a);
    chmod(exe, 0755);
    struct bundle_spec specs[] = {{.name = "main", .path = a, .state_dir = sd}};
    struct bundle_set *s = NULL;
    struct remex_error e;
    const char *p = NULL;
    int made = 0, fd = -1;
    size_t nmade, linked;
    assert_int_equal(bundle_set_new(specs, 1, &s, &e), REMEX_OK);
    assert_int_equal(bundle_snapshot(s, "main", v1, &made, &e), REMEX_OK);
    assert_int_equal(made, 1);
    assert_int_equal(bundle_snapshot(s, "main", v1, &made, &e), REMEX_OK);
    assert_int_equal(made, 0); /* already there */
    put(a, "run.sh", "echo changed\n");
    assert_int_equal(bundle_path(s, "main", v1, &p, &e), REMEX_OK);
    snprintf(f, sizeof(f), "%s/bundles/main/%s", sd, v1 + 7);
    assert_string_equal(p, f);
    snprintf(f, sizeof(f), "%s/run.sh", p);
    slurp(f, text, sizeof(text));
    assert_string_equal(text, "echo hi\n");
    /* Read-only, the execute bit kept. */
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0500);
    snprintf(f, sizeof(f), "%s/dags/etl.yaml", p);
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0400);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0500);
    assert_int_equal(bundle_hold(s, "main", v1, &fd, &e), REMEX_OK);
    assert_true(fd >= 0);
    close(fd);
    /* The new version is snapshotted at first use; the unchanged file is linked from the
     * previous snapshot (same inode), the changed one copied. */
    assert_int_equal(bundle_version(s, "main", v2, &e), REMEX_OK);
    assert_string_not_equal(v1, v2);
    assert_int_equal(bundle_path(s, "main", v2, &p, &e), REMEX_OK);
    snprintf(f, sizeof(f), "%s/run.sh", p);
    slurp(f, text, sizeof(text));
    assert_string_equal(text, "echo changed\n");
    snprintf(f, sizeof(f), "%s/dags/etl.yaml", p);
    assert_int_equal(stat(f, &st), 0);
    snprintf(f, sizeof(f), "%s/bundles/main/%s/dags/etl.yaml", sd, v1 + 7);
    assert_int_equal(stat(f, &st2), 0);
    assert_int_equal(st.st_ino, st2.st_ino);
    bundle_snapshot_counts(s, "main", &nmade, &linked);
    assert_int_equal(nmade, 2);
    assert_int_equal(linked, 1);
    bundle_set_free(s);
}

/* A snapshot from the caller's scan (the dag-processor's): no second hashing pass; a version
 * that is not the scan's is refused, and a file changed since the scan fails it. */
static void test_snapshot_from_a_scan(void **state)
{
    (void)state;
    char sd[128], v1[BUNDLE_VERSION_MAX], f[512], text[64];
    snprintf(sd, sizeof(sd), "%s/state", dir);
    struct bundle_spec specs[] = {{.name = "main", .path = a, .state_dir = sd},
                                  {.name = "loose", .path = b2, .unversioned = 1}};
    struct bundle_set *s = NULL;
    struct bundle_files scan = {0};
    struct remex_error e;
    const char *p = NULL;
    int made = 0;
    assert_int_equal(bundle_set_new(specs, 2, &s, &e), REMEX_OK);
    assert_int_equal(bundle_scan_dir(a, NULL, &scan, v1, &e), REMEX_OK);
    assert_int_equal(bundle_snapshot_scan(s, "loose", &scan, v1, &made, &e), REMEX_EINVAL);
    assert_int_equal(bundle_snapshot_scan(s, "main", &scan, "sha256:00", &made, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "is not the scan's"));
    assert_int_equal(bundle_snapshot_scan(s, "main", &scan, v1, &made, &e), REMEX_OK);
    assert_int_equal(made, 1);
    assert_int_equal(bundle_snapshot_scan(s, "main", &scan, v1, &made, &e), REMEX_OK);
    assert_int_equal(made, 0);
    /* The folder moves on: tasks at v1 run the snapshot. */
    put(a, "run.sh", "echo moved on\n");
    assert_int_equal(bundle_path(s, "main", v1, &p, &e), REMEX_OK);
    snprintf(f, sizeof(f), "%s/run.sh", p);
    slurp(f, text, sizeof(text));
    assert_string_equal(text, "echo hi\n");
    /* A scan taken before a change cannot snapshot the changed folder. */
    bundle_files_free(&scan);
    assert_int_equal(bundle_scan_dir(a, NULL, &scan, v1, &e), REMEX_OK);
    put(a, "run.sh", "echo again, same size\n");
    assert_int_equal(bundle_snapshot_scan(s, "main", &scan, v1, &made, &e), REMEX_ECONFLICT);
    assert_int_equal(made, 0);
    assert_non_null(strstr(e.msg, "changed while the snapshot was taken"));
    bundle_files_free(&scan);
    bundle_set_free(s);
}

/* No snapshot of the scheduled version and the folder changed: the reason names both. */
static void test_snapshot_missing_names_both_versions(void **state)
{
    (void)state;
    char sd[128], v1[BUNDLE_VERSION_MAX], v2[BUNDLE_VERSION_MAX];
    snprintf(sd, sizeof(sd), "%s/state", dir);
    struct bundle_spec specs[] = {{.name = "main", .path = a, .state_dir = sd},
                                  {.name = "loose", .path = a, .unversioned = 1, .state_dir = sd}};
    struct bundle_set *s = NULL;
    struct remex_error e;
    const char *p = NULL;
    int fd = 7;
    assert_int_equal(bundle_set_new(specs, 2, &s, &e), REMEX_OK);
    assert_int_equal(bundle_version(s, "main", v1, &e), REMEX_OK);
    put(a, "run.sh", "echo other\n");
    assert_int_equal(bundle_version(s, "main", v2, &e), REMEX_OK);
    assert_int_equal(bundle_path(s, "main", v1, &p, &e), REMEX_ECONFLICT);
    assert_non_null(strstr(e.msg, "bundle 'main' at version"));
    assert_non_null(strstr(e.msg, v1));
    assert_non_null(strstr(e.msg, v2));
    assert_non_null(strstr(e.msg, "no snapshot"));
    assert_int_equal(bundle_path(s, "main", "sha256:zz", &p, &e), REMEX_EINVAL);
    assert_non_null(strstr(e.msg, "not a local bundle version"));
    /* versioned: false runs in the folder as it is and takes no snapshot. */
    assert_int_equal(bundle_path(s, "loose", v1, &p, &e), REMEX_OK);
    assert_string_equal(p, a);
    assert_int_equal(bundle_hold(s, "loose", v1, &fd, &e), REMEX_OK);
    assert_int_equal(fd, -1);
    assert_null(bundle_snapshot_dir(s, "loose"));
    bundle_set_free(s);
}

/* Snapshots are pruned like checkouts: newest K kept, never one a task holds; read-only trees
 * are removed whole. */
static void test_snapshot_prune(void **state)
{
    (void)state;
    char sd[128], v[3][BUNDLE_VERSION_MAX], path[512];
    snprintf(sd, sizeof(sd), "%s/state", dir);
    struct bundle_spec specs[] = {{.name = "main", .path = a, .state_dir = sd}};
    struct bundle_set *s = NULL;
    struct remex_error e;
    int made = 0, fd = -1;
    size_t held = 9;
    struct stat st;
    assert_int_equal(bundle_set_new(specs, 1, &s, &e), REMEX_OK);
    const char *texts[] = {"echo 1\n", "echo 2\n", "echo 3\n"};
    for (int i = 0; i < 3; i++) {
        put(a, "run.sh", texts[i]);
        assert_int_equal(bundle_snapshot(s, "main", v[i], &made, &e), REMEX_OK);
        assert_int_equal(made, 1);
        snprintf(path, sizeof(path), "%s/%s", bundle_snapshot_dir(s, "main"), v[i] + 7);
        struct timespec ts[2] = {{.tv_sec = 1000 + i}, {.tv_sec = 1000 + i}};
        utimensat(AT_FDCWD, path, ts, 0);
    }
    assert_int_equal(bundle_hold(s, "main", v[0], &fd, &e), REMEX_OK);
    /* A crashed snapshot's work folder (no such pid) goes; this process's own stays. */
    char stale[600], mine[600];
    snprintf(stale, sizeof(stale), "%s/.tmp-abc-%d", bundle_snapshot_dir(s, "main"), INT32_MAX);
    snprintf(mine, sizeof(mine), "%s/.tmp-abc-%d", bundle_snapshot_dir(s, "main"), (int)getpid());
    assert_int_equal(mkdir(stale, 0500), 0);
    assert_int_equal(mkdir(mine, 0700), 0);
    assert_int_equal(bundle_prune_dir(bundle_snapshot_dir(s, "main"), 1, NULL, 0, &held), 1);
    assert_int_not_equal(stat(stale, &st), 0);
    assert_int_equal(stat(mine, &st), 0);
    assert_int_equal(held, 1);
    snprintf(path, sizeof(path), "%s/%s", bundle_snapshot_dir(s, "main"), v[1] + 7);
    assert_int_not_equal(stat(path, &st), 0);
    close(fd);
    const char *spare[] = {v[0]}; /* "sha256:<hex>" names the folder <hex> */
    assert_int_equal(bundle_prune_dir(bundle_snapshot_dir(s, "main"), 1, spare, 1, &held), 0);
    assert_int_equal(bundle_prune_dir(bundle_snapshot_dir(s, "main"), 1, NULL, 0, &held), 1);
    snprintf(path, sizeof(path), "%s/%s", bundle_snapshot_dir(s, "main"), v[0] + 7);
    assert_int_not_equal(stat(path, &st), 0);
    assert_int_equal(bundle_hold(s, "main", v[0], &fd, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "snapshot of"));
    bundle_set_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_at_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_git_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_never_under_a_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relative_path_made_absolute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_specs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_tracks_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_depth_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_keeps_the_scheduled_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_missing_names_both_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_from_a_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_prune, setup, teardown),
    };
    return cmocka_run_group_tests_name("bundle", tests, NULL, NULL);
}
