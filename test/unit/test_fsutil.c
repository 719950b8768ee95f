/* Unit tests: fsutil (write_all, mkdir -p). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remex/fsutil.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/remex-fsutil-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_mkdir_parents_and_p(void **state)
{
    (void)state;
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/a/b/c/file.log", dir);
    assert_int_equal(fsutil_mkdir_parents(path, 0750), 0);
    snprintf(path, sizeof(path), "%s/a/b/c", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0007, 0); /* mode 0750 asked: nothing for others */
    snprintf(path, sizeof(path), "%s/a/b/c/file.log", dir);
    assert_int_not_equal(stat(path, &st), 0); /* the last component is not created */
    /* Existing folders are fine; mkdir_p also creates the last component. */
    assert_int_equal(fsutil_mkdir_parents(path, 0750), 0);
    snprintf(path, sizeof(path), "%s/x/y", dir);
    assert_int_equal(fsutil_mkdir_p(path, 0700), 0);
    assert_int_equal(fsutil_mkdir_p(path, 0700), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
}

static void test_mkdir_errors(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof(path), "%s/plain", dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(path, sizeof(path), "%s/plain/sub/file", dir);
    assert_int_equal(fsutil_mkdir_parents(path, 0700), -1);
    assert_int_equal(errno, ENOTDIR);
    static char big[PATH_MAX + 8];
    memset(big, 'a', sizeof(big) - 1);
    big[0] = '/';
    assert_int_equal(fsutil_mkdir_p(big, 0700), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    assert_int_equal(fsutil_mkdir_parents("relative", 0700), 0);
}

static void test_write_all_through_pipe(void **state)
{
    (void)state;
    int p[2];
    static char data[200000], back[200000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7);
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        _exit(fsutil_write_all(p[1], data, sizeof(data)) == 0 ? 0 : 1);
    }
    close(p[1]);
    size_t got = 0;
    ssize_t r;
    while ((r = read(p[0], back + got, sizeof(back) - got)) > 0)
        got += (size_t)r;
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(got, sizeof(data));
    assert_memory_equal(back, data, sizeof(data));
    assert_int_equal(fsutil_write_all(-1, "x", 1), -1);
    assert_int_equal(errno, EBADF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mkdir_parents_and_p, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mkdir_errors, setup, teardown),
        cmocka_unit_test(test_write_all_through_pipe),
    };
    return cmocka_run_group_tests_name("fsutil", tests, NULL, NULL);
}
