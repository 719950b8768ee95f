/* Unit tests: gitbundle (fetch, refs, pinned SHAs, checkouts) against local repositories. */
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

#include "remex/gitbundle.h"

static char dir[64], repo[128], cache[128], url[160];

static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

/* Output of a git command in the source repository (one line). */
static void git_out(const char *args, char *out, size_t outsz)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "git -C '%s' %s", repo, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(out, (int)outsz, p));
    out[strcspn(out, "\n")] = '\0';
    pclose(p);
}

static void commit(const char *file, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", repo, file);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    sh("git -C '%s' add -A && git -C '%s' -c user.name=t -c user.email=t@x commit -qm c", repo,
       repo);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/remex-gitb-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(repo, sizeof(repo), "%s/src", dir);
    snprintf(cache, sizeof(cache), "%s/cache/main", dir);
    snprintf(url, sizeof(url), "file://%s", repo);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "git init -q -b main '%s'", repo);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void read_file(const char *path, char *out, size_t outsz)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, outsz - 1, f);
    out[n] = '\0';
    fclose(f);
}

static void test_fetch_branch_tag_and_pinned(void **state)
{
    (void)state;
    char sha1[64], sha2[64], got[GITBUNDLE_SHA_HEX], path[512], file[600], text[64];
    struct remex_error e;
    commit("a.yaml", "one\n");
    git_out("rev-parse HEAD", sha1, sizeof(sha1));
    sh("git -C '%s' tag v1", repo);
    commit("a.yaml", "two\n");
    git_out("rev-parse HEAD", sha2, sizeof(sha2));
    struct gitbundle_opts o = {.name = "main", .url = url, .ref = "main", .dir = cache};
    assert_int_equal(gitbundle_fetch(&o, got, &e), REMEX_OK);
    assert_string_equal(got, sha2);
    assert_int_equal(gitbundle_checkout(&o, got, path, sizeof(path), &e), REMEX_OK);
    snprintf(file, sizeof(file), "%s/a.yaml", path);
    read_file(file, text, sizeof(text));
    assert_string_equal(text, "two\n");
    /* The older commit's checkout stays beside it. */
    assert_int_equal(gitbundle_checkout(&o, sha1, path, sizeof(path), &e), REMEX_OK);
    snprintf(file, sizeof(file), "%s/a.yaml", path);
    read_file(file, text, sizeof(text));
    assert_string_equal(text, "one\n");
    /* A tag, and a pinned SHA that does not move when the branch does. */
    o.ref = "v1";
    assert_int_equal(gitbundle_fetch(&o, got, &e), REMEX_OK);
    assert_string_equal(got, sha1);
    o.ref = sha1;
    commit("a.yaml", "three\n");
    assert_int_equal(gitbundle_fetch(&o, got, &e), REMEX_OK);
    assert_string_equal(got, sha1);
    o.ref = "main";
    assert_int_equal(gitbundle_fetch(&o, got, &e), REMEX_OK);
    assert_string_not_equal(got, sha2);
}

static void test_errors_name_the_url(void **state)
{
    (void)state;
    char got[GITBUNDLE_SHA_HEX], path[512];
    struct remex_error e;
    commit("a.yaml", "one\n");
    struct gitbundle_opts o = {.name = "main", .url = url, .ref = "nope", .dir = cache};
    assert_int_equal(gitbundle_fetch(&o, got, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "tracking_ref 'nope' is no branch, tag or commit of file://"));
    char missing[200];
    snprintf(missing, sizeof(missing), "https://user:secret@127.0.0.1:1/%s", "x.git");
    o.url = missing;
    o.ref = "main";
    assert_int_not_equal(gitbundle_fetch(&o, got, &e), REMEX_OK);
    assert_non_null(strstr(e.msg, "https://127.0.0.1:1/x.git"));
    assert_null(strstr(e.msg, "secret"));
    assert_int_equal(gitbundle_checkout(&o, "not-a-sha", path, sizeof(path), &e), REMEX_EINVAL);
    assert_int_equal(
        gitbundle_checkout(&o, "0123456789012345678901234567890123456789", path, sizeof(path), &e),
        REMEX_ENOTFOUND);
    assert_true(gitbundle_is_sha("0123456789abcdef0123456789abcdef01234567"));
    assert_false(gitbundle_is_sha("0123456789ABCDEF0123456789abcdef01234567"));
    assert_false(gitbundle_is_sha("abc"));
}

/* The worker's fetch of one commit into an empty cache: a commit on a side branch is had;
 * a commit on no branch or tag fails with the reason; a cancelled fetch stops. */
static void test_fetch_one_commit(void **state)
{
    (void)state;
    char sha1[64], side[64], lost[64], got[GITBUNDLE_SHA_HEX], path[512], file[600], text[64];
    struct remex_error e;
    commit("a.yaml", "one\n");
    git_out("rev-parse HEAD", sha1, sizeof(sha1));
    sh("git -C '%s' checkout -qb side", repo);
    commit("a.yaml", "side\n");
    git_out("rev-parse HEAD", side, sizeof(side));
    commit("a.yaml", "lost\n");
    git_out("rev-parse HEAD", lost, sizeof(lost));
    sh("git -C '%s' reset -q --hard HEAD~1 && git -C '%s' checkout -q main", repo, repo);
    struct gitbundle_opts o = {.name = "main", .url = url, .ref = side, .dir = cache};
    assert_int_equal(gitbundle_fetch(&o, got, &e), REMEX_OK);
    assert_string_equal(got, side);
    assert_int_equal(gitbundle_checkout(&o, side, path, sizeof(path), &e), REMEX_OK);
    snprintf(file, sizeof(file), "%s/a.yaml", path);
    read_file(file, text, sizeof(text));
    assert_string_equal(text, "side\n");
    o.ref = lost;
    assert_int_equal(gitbundle_fetch(&o, got, &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, lost));
    assert_non_null(strstr(e.msg, "is on no branch or tag of file://"));
    /* A fresh cache whose fetch is cancelled before it starts stops with REMEX_ECLOSED. */
    int cancel = 1;
    char other[160];
    snprintf(other, sizeof(other), "%s/cache/other", dir);
    struct gitbundle_opts c = {
        .name = "o", .url = url, .ref = sha1, .dir = other, .cancel = &cancel};
    remex_err rc = gitbundle_fetch(&c, got, &e);
    assert_int_equal(rc, REMEX_ECLOSED);
    assert_non_null(strstr(e.msg, "stopped"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fetch_branch_tag_and_pinned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_name_the_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_one_commit, setup, teardown),
    };
    return cmocka_run_group_tests_name("gitbundle", tests, NULL, NULL);
}
