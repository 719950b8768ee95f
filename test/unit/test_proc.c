/* Unit tests: proc (spawn, exit status, process groups, reaping, cgroups). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "remex/proc.h"

#define OUT_MAX 8192

/*
 * Not cmocka's skip(): test/run.py counts TAP "not ok N # SKIP" as a failure.
 * The reason is printed and the test returns (counted as passed).
 */
#define SKIP_BECAUSE(...)                                                                          \
    do {                                                                                           \
        print_message("# " __VA_ARGS__);                                                           \
        fflush(stdout);                                                                            \
        skip();                                                                                    \
    } while (0)

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Reads until EOF (or until a newline when line is set), at most 10 s. */
static size_t read_fd(int fd, char *out, size_t cap, int line)
{
    size_t got = 0;
    int64_t deadline = mono_ms() + 10000;

    while (got + 1 < cap && mono_ms() < deadline) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t n;
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        n = read(fd, out + got, line ? 1 : cap - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (line && out[got - 1] == '\n')
            break;
    }
    out[got] = '\0';
    return got;
}

/* Spawns spec with stdout to a pipe, collects the output and the exit status. */
static remex_err run_capture(struct proc_spec *spec, char *out, size_t cap, int *wstatus,
                             struct remex_error *e)
{
    int pfd[2];
    pid_t pid;
    remex_err rc;

    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    spec->stdio[1].kind = PROC_STDIO_FD;
    spec->stdio[1].fd = pfd[1];
    rc = proc_spawn(spec, &pid, e);
    close(pfd[1]);
    if (rc == REMEX_OK) {
        read_fd(pfd[0], out, cap, 0);
        assert_int_equal(proc_wait(pid, -1, wstatus, NULL), REMEX_OK);
    }
    close(pfd[0]);
    return rc;
}

/* Runs argv with an empty environment; returns the status string. */
static void run_status(char *const *argv, const struct proc_rlimit *rl, size_t nrl, char *str,
                       size_t len)
{
    struct proc_spec spec = {.argv = argv, .rlimits = rl, .nrlimits = nrl};
    struct remex_error e;
    int st = -1;
    pid_t pid;

    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_OK);
    assert_int_equal(proc_wait(pid, -1, &st, &e), REMEX_OK);
    proc_status_str(st, str, len);
}

/* 1 once pid no longer runs (gone or a zombie). */
static int pid_dead(pid_t pid)
{
    char path[64], buf[512], *rp;
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 1;
    buf[n] = '\0';
    rp = strrchr(buf, ')');
    return rp == NULL || rp[1] == '\0' || rp[2] == 'Z' || rp[2] == 'X';
}

static int wait_dead(pid_t pid, int ms)
{
    int64_t deadline = mono_ms() + ms;
    while (!pid_dead(pid)) {
        if (mono_ms() >= deadline)
            return 0;
        nap_ms(10);
    }
    return 1;
}

static void test_exit_codes(void **state)
{
    (void)state;
    char s[128];
    char *t[] = {"/bin/true", NULL}, *f[] = {"/bin/false", NULL};
    char *three[] = {"/bin/sh", "-c", "exit 3", NULL};

    run_status(t, NULL, 0, s, sizeof(s));
    assert_string_equal(s, "exit code 0");
    run_status(f, NULL, 0, s, sizeof(s));
    assert_string_equal(s, "exit code 1");
    run_status(three, NULL, 0, s, sizeof(s));
    assert_string_equal(s, "exit code 3");
}

static void test_signal_decode(void **state)
{
    (void)state;
    char s[128];
    char *k[] = {"/bin/sh", "-c", "kill -KILL $$", NULL};
    char *segv[] = {"/bin/sh", "-c", "kill -SEGV $$", NULL};
    struct proc_rlimit nocore = {RLIMIT_CORE, {0, 0}};
    struct proc_status st;

    run_status(k, NULL, 0, s, sizeof(s));
    assert_string_equal(s, "killed by signal 9 (KILL)");
    run_status(segv, &nocore, 1, s, sizeof(s));
    assert_string_equal(s, "killed by signal 11 (SEGV)");
    proc_status_decode(9, &st);
    assert_int_equal(st.exited, 0);
    assert_int_equal(st.signo, 9);
    proc_status_decode(3 << 8, &st);
    assert_int_equal(st.exited, 1);
    assert_int_equal(st.code, 3);
}

static void test_status_strings(void **state)
{
    (void)state;
    char s[128], tiny[8];

    assert_string_equal(proc_status_str(SIGSEGV | 0x80, s, sizeof(s)),
                        "killed by signal 11 (SEGV), core dumped");
    assert_string_equal(proc_status_str((SIGSTOP << 8) | 0x7f, s, sizeof(s)),
                        "stopped by signal 19 (STOP)");
    assert_string_equal(proc_status_str(255 << 8, s, sizeof(s)), "exit code 255");
    assert_string_equal(proc_status_str(255 << 8, tiny, sizeof(tiny)), "exit co");
    assert_string_equal(proc_signame(SIGTERM), "TERM");
    assert_string_equal(proc_signame(0), "?");
    assert_string_equal(proc_signame(1000), "?");
}

static void test_exec_error_reported(void **state)
{
    (void)state;
    char *argv[] = {"/no/such", NULL};
    char path[] = "/tmp/remex-noexec-XXXXXX", msg[128];
    char *noexec[] = {path, NULL};
    struct proc_spec spec = {.argv = argv};
    struct remex_error e;
    pid_t pid = -1;
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, 0644), 0);
    close(fd);

    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_ENOTFOUND);
    assert_string_equal(e.msg, "exec /no/such: No such file or directory");
    assert_int_equal(pid, -1);
    spec.argv = noexec;
    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_EPERM);
    snprintf(msg, sizeof(msg), "exec %s: Permission denied", path);
    assert_string_equal(e.msg, msg);
    unlink(path);
    /* The failed children were reaped by proc_spawn. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void test_chdir_failure_reported(void **state)
{
    (void)state;
    char *argv[] = {"/bin/true", NULL};
    struct proc_spec spec = {.argv = argv, .cwd = "/no/such/dir"};
    struct remex_error e;
    pid_t pid;

    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_ENOTFOUND);
    assert_string_equal(e.msg, "chdir /no/such/dir: No such file or directory");
}

static void test_cwd_and_umask(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c", "pwd; umask", NULL};
    struct proc_spec spec = {.argv = argv, .cwd = "/usr", .set_umask = 1, .umask = 027};
    char out[OUT_MAX];
    int st;

    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, NULL), REMEX_OK);
    assert_string_equal(out, "/usr\n0027\n");
    assert_int_equal(st, 0);
}

static void test_search_path(void **state)
{
    (void)state;
    char *argv[] = {"true", NULL};
    char *env[] = {"PATH=/nonexistent:/usr/bin:/bin", NULL};
    char *badenv[] = {"PATH=/nonexistent", NULL};
    struct proc_spec spec = {.argv = argv, .envp = env, .search_path = 1};
    struct remex_error e;
    int st = -1;
    pid_t pid;

    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_OK);
    assert_int_equal(proc_wait(pid, -1, &st, &e), REMEX_OK);
    assert_int_equal(st, 0);
    spec.envp = badenv;
    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_ENOTFOUND);
    assert_string_equal(e.msg, "exec true: not found in PATH");
    /* Without search_path a bare name is a relative path. */
    spec.search_path = 0;
    spec.cwd = "/";
    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_ENOTFOUND);
    assert_string_equal(e.msg, "exec true: No such file or directory");
}

/* Writes an executable script at dir/name that prints word. */
static void put_script(const char *dir, const char *name, const char *word, mode_t mode)
{
    char path[512], text[128];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(text, sizeof(text), "#!/bin/sh\necho %s\n", word);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

/* Runs `prog` through the cache with PATH=path; returns what it printed, or "" if not found. */
static const char *cached_run(struct proc_exe_cache *c, const char *path, char *out, size_t cap)
{
    char *argv[] = {"prog", NULL};
    char env0[600];
    char *env[] = {env0, NULL};
    struct proc_spec spec = {.argv = argv, .envp = env, .search_path = 1, .exe_cache = c};
    struct remex_error e;
    int st = -1;

    snprintf(env0, sizeof(env0), "PATH=%s", path);
    out[0] = '\0';
    if (run_capture(&spec, out, cap, &st, &e) != REMEX_OK) {
        assert_string_equal(e.msg, "exec prog: not found in PATH");
        return out;
    }
    assert_int_equal(st, 0);
    out[strcspn(out, "\n")] = '\0';
    return out;
}

/*
 * A remembered lookup finds what a search would: a program that appears in,
 * loses its mode bits in, or disappears from an earlier folder, an earlier
 * folder that is removed, and a missing folder that appears are all seen.
 */
static void test_exe_cache_follows_changes(void **state)
{
    (void)state;
    char top[] = "/tmp/remex-execache-XXXXXX", d1[600], d2[600], d3[600], path[2000], p1[700];
    char out[OUT_MAX];
    struct proc_exe_cache *c = NULL;

    assert_non_null(mkdtemp(top));
    snprintf(d1, sizeof(d1), "%s/one", top);
    snprintf(d2, sizeof(d2), "%s/two", top);
    snprintf(d3, sizeof(d3), "%s/missing", top);
    snprintf(p1, sizeof(p1), "%s/prog", d1);
    assert_int_equal(mkdir(d1, 0755), 0);
    assert_int_equal(mkdir(d2, 0755), 0);
    put_script(d2, "prog", "two", 0755);
    assert_int_equal(proc_exe_cache_new(&c, NULL), REMEX_OK);
    snprintf(path, sizeof(path), "%s:%s", d1, d2);
    assert_string_equal(cached_run(c, path, out, sizeof(out)), "two");
    assert_string_equal(cached_run(c, path, out, sizeof(out)), "two");
    put_script(d1, "prog", "one", 0755); /* appears earlier in PATH */
    assert_string_equal(cached_run(c, path, out, sizeof(out)), "one");
    assert_int_equal(chmod(p1, 0644), 0); /* no longer executable */
    assert_string_equal(cached_run(c, path, out, sizeof(out)), "two");
    assert_int_equal(chmod(p1, 0755), 0);
    assert_string_equal(cached_run(c, path, out, sizeof(out)), "one");
    assert_int_equal(unlink(p1), 0);
    assert_string_equal(cached_run(c, path, out, sizeof(out)), "two");
    /* A missing folder first: searched every time, so its new program is found. */
    snprintf(path, sizeof(path), "%s:%s", d3, d2);
    assert_string_equal(cached_run(c, path, out, sizeof(out)), "two");
    assert_int_equal(mkdir(d3, 0755), 0);
    put_script(d3, "prog", "three", 0755);
    assert_string_equal(cached_run(c, path, out, sizeof(out)), "three");
    /* The folder that held it goes away: not found any more. */
    snprintf(path, sizeof(path), "%s", d2);
    assert_string_equal(cached_run(c, path, out, sizeof(out)), "two");
    snprintf(p1, sizeof(p1), "%s/prog", d2);
    assert_int_equal(unlink(p1), 0);
    assert_int_equal(rmdir(d2), 0);
    assert_string_equal(cached_run(c, path, out, sizeof(out)), "");
    proc_exe_cache_free(c);
    snprintf(p1, sizeof(p1), "%s/prog", d3);
    unlink(p1);
    rmdir(d3);
    rmdir(d1);
    rmdir(top);
}

static void test_env_is_exact(void **state)
{
    (void)state;
    char *argv[] = {"/usr/bin/env", NULL};
    const char *pairs[] = {"A", "1", "B", "two words", NULL};
    struct proc_env env = {0};
    struct proc_spec spec = {.argv = argv};
    char out[OUT_MAX];
    int st;

    assert_int_equal(setenv("REMEX_TEST_LEAK", "x", 1), 0);
    /* NULL envp: empty, never the parent's. */
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, NULL), REMEX_OK);
    assert_string_equal(out, "");
    assert_int_equal(proc_env_set_pairs(&env, pairs, NULL), REMEX_OK);
    spec.envp = proc_env_array(&env);
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, NULL), REMEX_OK);
    assert_string_equal(out, "A=1\nB=two words\n");
    assert_int_equal(st, 0);
    proc_env_free(&env);
    unsetenv("REMEX_TEST_LEAK");
}

/* "NAME=value" may not pass PROC_ENV_MAX_ENTRY, however long the name alone is. */
static void test_env_entry_cap(void **state)
{
    (void)state;
    struct proc_env env;
    struct remex_error e;
    char *name = malloc(PROC_ENV_MAX_ENTRY + 1);

    assert_non_null(name);
    memset(name, 'A', PROC_ENV_MAX_ENTRY);
    name[PROC_ENV_MAX_ENTRY] = '\0';
    proc_env_init(&env);
    assert_int_equal(proc_env_set(&env, name, "x", &e), REMEX_ETOOBIG);
    assert_int_equal(proc_env_set(&env, name + 2, "x", &e), REMEX_OK);
    assert_int_equal(proc_env_set(&env, name + 1, "x", &e), REMEX_ETOOBIG);
    assert_int_equal(proc_env_set(&env, name + 1, "", &e), REMEX_OK);
    proc_env_free(&env);
    free(name);
}

static void test_env_helpers(void **state)
{
    (void)state;
    struct proc_env env;
    const char *odd[] = {"A", NULL};
    const char *copy[] = {"REMEX_TEST_COPY", "REMEX_TEST_UNSET", NULL};
    struct remex_error e;

    proc_env_init(&env);
    assert_null(proc_env_array(&env)[0]);
    assert_int_equal(proc_env_set(&env, "K", "v1", &e), REMEX_OK);
    assert_int_equal(proc_env_set(&env, "K", "v2", &e), REMEX_OK);
    assert_int_equal(env.n, 1);
    assert_string_equal(proc_env_get(&env, "K"), "v2");
    assert_null(proc_env_get(&env, "KX"));
    assert_int_equal(proc_env_set(&env, "A=B", "v", &e), REMEX_EINVAL);
    assert_int_equal(proc_env_set(&env, "", "v", &e), REMEX_EINVAL);
    assert_int_equal(proc_env_set_pairs(&env, odd, &e), REMEX_EINVAL);
    unsetenv("REMEX_TEST_UNSET");
    assert_int_equal(setenv("REMEX_TEST_COPY", "copied", 1), 0);
    assert_int_equal(proc_env_copy(&env, copy, &e), REMEX_OK);
    assert_string_equal(proc_env_get(&env, "REMEX_TEST_COPY"), "copied");
    assert_null(proc_env_get(&env, "REMEX_TEST_UNSET"));
    assert_int_equal(env.n, 2);
    assert_string_equal(proc_env_array(&env)[1], "REMEX_TEST_COPY=copied");
    assert_null(proc_env_array(&env)[2]);
    for (int i = 0; i < PROC_ENV_MAX_VARS + 5; i++) {
        char name[32];
        snprintf(name, sizeof(name), "V%d", i);
        if (proc_env_set(&env, name, "x", &e) != REMEX_OK)
            break;
    }
    assert_int_equal(env.n, PROC_ENV_MAX_VARS);
    assert_int_equal(e.code, REMEX_ETOOBIG);
    proc_env_free(&env);
    assert_int_equal(env.n, 0);
    unsetenv("REMEX_TEST_COPY");
}

static void test_fd_table_clean(void **state)
{
    (void)state;
    char *argv[] = {"/bin/ls", "/proc/self/fd", NULL};
    int extra[3], map[2];
    struct proc_fdmap fm;
    struct proc_spec spec = {.argv = argv, .fds = &fm, .nfds = 1};
    char out[OUT_MAX];
    int st;

    /* Leaked on purpose: no CLOEXEC, the child must still not see them. */
    for (int i = 0; i < 3; i++)
        extra[i] = open("/dev/null", O_RDONLY);
    assert_int_equal(pipe(map), 0);
    fm.parent_fd = map[1];
    fm.child_fd = 3;
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, NULL), REMEX_OK);
    /* 0-2, the mapped 3, and 4: the directory ls itself opened. */
    assert_string_equal(out, "0\n1\n2\n3\n4\n");
    for (int i = 0; i < 3; i++)
        close(extra[i]);
    close(map[0]);
    close(map[1]);
}

static void test_fd_mapping(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c", "echo three >&3; echo four >&4", NULL};
    int a[2], b[2];
    struct proc_fdmap fm[2];
    struct proc_spec spec = {.argv = argv, .fds = fm, .nfds = 2};
    struct remex_error e;
    char out[OUT_MAX];
    int st;

    assert_int_equal(pipe2(a, O_CLOEXEC), 0);
    assert_int_equal(pipe2(b, O_CLOEXEC), 0);
    /* Swap: a's write end (some fd) goes to 4, b's to 3; and vice versa numbers collide. */
    fm[0].parent_fd = a[1];
    fm[0].child_fd = 3;
    fm[1].parent_fd = b[1];
    fm[1].child_fd = 4;
    if (a[1] == 4 || b[1] == 3) {
        fm[0].child_fd = 4;
        fm[1].child_fd = 3;
    }
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, &e), REMEX_OK);
    close(a[1]);
    close(b[1]);
    read_fd(fm[0].child_fd == 3 ? a[0] : b[0], out, sizeof(out), 0);
    assert_string_equal(out, "three\n");
    read_fd(fm[0].child_fd == 3 ? b[0] : a[0], out, sizeof(out), 0);
    assert_string_equal(out, "four\n");
    close(a[0]);
    close(b[0]);
    assert_int_equal(st, 0);
}

static void test_bad_spec_rejected(void **state)
{
    (void)state;
    char *argv[] = {"/bin/true", NULL}, *empty[] = {NULL};
    struct proc_fdmap fm[2] = {{1, 3}, {2, 3}};
    struct proc_rlimit rl = {9999, {1, 1}};
    struct proc_spec spec = {.argv = empty};
    struct remex_error e;
    pid_t pid;

    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_EINVAL);
    spec.argv = argv;
    spec.fds = fm;
    spec.nfds = 2;
    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_EINVAL);
    assert_string_equal(e.msg, "fds[1]: child fd 3 mapped twice");
    fm[1].child_fd = 2;
    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_EINVAL);
    fm[1].child_fd = 5;
    fm[1].parent_fd = 999;
    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_EINVAL);
    assert_string_equal(e.msg, "fds[1]: parent fd 999 is not open");
    spec.nfds = 0;
    spec.rlimits = &rl;
    spec.nrlimits = 1;
    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_EINVAL);
    spec.nrlimits = 0;
    spec.stdio[1].kind = PROC_STDIO_FILE;
    spec.stdio[1].path = "/no/such/dir/log";
    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_ENOTFOUND);
    assert_string_equal(e.msg, "open /no/such/dir/log: No such file or directory");
}

static void test_new_session(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sleep", "30", NULL};
    struct proc_spec spec = {.argv = argv, .new_session = 1};
    pid_t pid;
    int st;

    assert_int_equal(proc_spawn(&spec, &pid, NULL), REMEX_OK);
    assert_int_equal(getpgid(pid), pid);
    assert_int_equal(getsid(pid), pid);
    assert_int_not_equal(getsid(0), pid);
    assert_int_equal(proc_kill_group(pid, 2000, &st, NULL), REMEX_OK);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGTERM);
}

static void test_signals_reset(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status", NULL};
    struct proc_spec spec = {.argv = argv};
    sigset_t usr1, old;
    char out[OUT_MAX];
    int st;

    /* Kernel sigaction for signal 32 (libc-reserved, glibc refuses it): SIG_IGN, then back. */
    unsigned long ign[8] = {(unsigned long)SIG_IGN}, prev[8] = {0};
    long raw = syscall(SYS_rt_sigaction, 32, ign, prev, (size_t)((NSIG - 1) / 8));

    signal(SIGUSR2, SIG_IGN);
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &old);
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, NULL), REMEX_OK);
    sigprocmask(SIG_SETMASK, &old, NULL);
    signal(SIGUSR2, SIG_DFL);
    if (raw == 0)
        syscall(SYS_rt_sigaction, 32, prev, NULL, (size_t)((NSIG - 1) / 8));
    assert_string_equal(out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

static pid_t spawn_grouped(char *const *argv, int *outfd)
{
    struct proc_spec spec = {.argv = argv, .new_session = 1};
    int pfd[2];
    pid_t pid;

    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    spec.stdio[1].kind = PROC_STDIO_FD;
    spec.stdio[1].fd = pfd[1];
    assert_int_equal(proc_spawn(&spec, &pid, NULL), REMEX_OK);
    close(pfd[1]);
    *outfd = pfd[0];
    return pid;
}

static void test_kill_group_grandchild(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c", "sleep 100 & echo $!; sleep 100", NULL};
    char line[64], s[64];
    int fd, st;
    pid_t pid, gpid;

    pid = spawn_grouped(argv, &fd);
    assert_true(read_fd(fd, line, sizeof(line), 1) > 0);
    gpid = (pid_t)strtol(line, NULL, 10);
    assert_true(gpid > 1);
    assert_int_equal(getpgid(gpid), pid);
    assert_int_equal(proc_kill_group(pid, 5000, &st, NULL), REMEX_OK);
    assert_string_equal(proc_status_str(st, s, sizeof(s)), "killed by signal 15 (TERM)");
    assert_true(wait_dead(gpid, 5000));
    close(fd);
}

static void test_term_ignored_gets_kill(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c", "trap '' TERM; echo ready; exec sleep 100", NULL};
    char line[64], s[64];
    int fd, st;
    int64_t t0;
    pid_t pid;

    pid = spawn_grouped(argv, &fd);
    assert_string_equal((read_fd(fd, line, sizeof(line), 1), line), "ready\n");
    t0 = mono_ms();
    assert_int_equal(proc_kill_group(pid, 300, &st, NULL), REMEX_OK);
    assert_true(mono_ms() - t0 >= 250);
    assert_string_equal(proc_status_str(st, s, sizeof(s)), "killed by signal 9 (KILL)");
    close(fd);
}

/* The event-loop form: term, track a deadline, then kill. */
static void test_term_then_kill_split(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c", "trap '' TERM; echo ready; exec sleep 100", NULL};
    struct remex_error e;
    char line[64];
    int fd, st = 0;
    pid_t pid;

    pid = spawn_grouped(argv, &fd);
    read_fd(fd, line, sizeof(line), 1);
    assert_int_equal(proc_term_group(pid, &e), REMEX_OK);
    assert_int_equal(proc_wait(pid, 200, &st, &e), REMEX_ETIMEOUT);
    assert_false(proc_group_empty(pid));
    assert_int_equal(proc_kill_group_now(pid, &e), REMEX_OK);
    assert_int_equal(proc_wait(pid, -1, &st, &e), REMEX_OK);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_true(proc_group_empty(pid));
    assert_int_equal(proc_term_group(pid, &e), REMEX_ENOTFOUND);
    assert_int_equal(proc_term_group(1, &e), REMEX_EINVAL);
    assert_int_equal(proc_kill_group_now(0, &e), REMEX_EINVAL);
    close(fd);
}

static void test_rlimit_nofile(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c", "ulimit -n; ulimit -c", NULL};
    struct proc_rlimit rl[2] = {{RLIMIT_NOFILE, {17, 17}}, {RLIMIT_CORE, {0, 0}}};
    struct proc_spec spec = {.argv = argv, .rlimits = rl, .nrlimits = 2};
    char out[OUT_MAX];
    int st;

    /* memcheck emulates setrlimit(RLIMIT_NOFILE) in the forked child: EPERM, never applied. */
    if (getenv("REMEX_VALGRIND") != NULL && strcmp(getenv("REMEX_VALGRIND"), "1") == 0)
        SKIP_BECAUSE("valgrind refuses RLIMIT_NOFILE changes in traced processes\n");
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, NULL), REMEX_OK);
    assert_string_equal(out, "17\n0\n");
}

static void test_rlimit_failure_reported(void **state)
{
    (void)state;
    char *argv[] = {"/bin/true", NULL};
    /* soft above hard is always EINVAL. */
    struct proc_rlimit rl = {RLIMIT_NOFILE, {64, 32}};
    struct proc_spec spec = {.argv = argv, .rlimits = &rl, .nrlimits = 1};
    struct remex_error e;
    pid_t pid;

    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_ESYS);
    assert_string_equal(e.msg, "setrlimit RLIMIT_NOFILE: Invalid argument");
}

static void test_rlimit_as_big_alloc_fails(void **state)
{
    (void)state;
    char *shv[] = {"/bin/sh", "-c", "ulimit -v", NULL};
    char *py[] = {"/usr/bin/python3", "-c", "bytearray(400 * 1024 * 1024)", NULL};
    struct proc_rlimit rl = {RLIMIT_AS, {200u << 20, 200u << 20}};
    struct proc_spec spec = {.argv = shv, .rlimits = &rl, .nrlimits = 1};
    char out[OUT_MAX], s[64];
    int st;

    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, NULL), REMEX_OK);
    assert_string_equal(out, "204800\n");
    if (access(py[0], X_OK) != 0) {
        print_message("# SKIP python3 not found: the allocation half is not run\n");
        return;
    }
    spec.argv = py;
    spec.stdio[2].kind = PROC_STDIO_NULL;
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, NULL), REMEX_OK);
    assert_string_equal(proc_status_str(st, s, sizeof(s)), "exit code 1"); /* MemoryError */
    spec.nrlimits = 0;
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, NULL), REMEX_OK);
    assert_string_equal(proc_status_str(st, s, sizeof(s)), "exit code 0");
}

static void test_output_to_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/remex-proc-XXXXXX", path[128], out[OUT_MAX];
    char *argv[] = {"/bin/sh", "-c", "echo out; echo err >&2; read x || echo eof", NULL};
    struct proc_spec spec = {.argv = argv};
    struct stat sb;
    pid_t pid;
    int fd, st;
    size_t n;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/task.log", dir);
    spec.stdio[0].kind = PROC_STDIO_NULL;
    spec.stdio[1].kind = PROC_STDIO_FILE;
    spec.stdio[1].path = path;
    spec.stdio[2] = spec.stdio[1];
    assert_int_equal(proc_spawn(&spec, &pid, NULL), REMEX_OK);
    assert_int_equal(proc_wait(pid, -1, &st, NULL), REMEX_OK);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0640);
    /* Appends on a second run. */
    assert_int_equal(proc_spawn(&spec, &pid, NULL), REMEX_OK);
    assert_int_equal(proc_wait(pid, -1, &st, NULL), REMEX_OK);
    fd = open(path, O_RDONLY);
    n = read_fd(fd, out, sizeof(out), 0);
    close(fd);
    assert_int_equal(n, 24);
    assert_string_equal(out, "out\nerr\neof\nout\nerr\neof\n");
    unlink(path);
    rmdir(dir);
}

struct reap_seen {
    pid_t want;
    int seen;
};

static void reap_cb(pid_t pid, int wstatus, void *arg)
{
    struct reap_seen *rs = arg;
    if (pid == rs->want && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0)
        rs->seen = 1;
}

/* Runs in a forked copy of the test process so the subreaper flag stays there. */
static int subreaper_body(void)
{
    char *argv[] = {"/bin/sh", "-c", "sleep 0.2 & echo $!", NULL};
    struct proc_spec spec = {.argv = argv};
    struct reap_seen rs = {0, 0};
    char line[64];
    int pfd[2], st;
    int64_t deadline;
    pid_t pid;

    if (proc_set_subreaper(NULL) != REMEX_OK || pipe2(pfd, O_CLOEXEC) != 0)
        return 2;
    spec.stdio[1].kind = PROC_STDIO_FD;
    spec.stdio[1].fd = pfd[1];
    if (proc_spawn(&spec, &pid, NULL) != REMEX_OK)
        return 3;
    close(pfd[1]);
    if (read_fd(pfd[0], line, sizeof(line), 1) == 0)
        return 4;
    rs.want = (pid_t)strtol(line, NULL, 10);
    if (proc_wait(pid, -1, &st, NULL) != REMEX_OK || st != 0)
        return 5;
    /* sh is gone: its orphan is now ours. */
    if (getppid() == rs.want)
        return 6;
    for (deadline = mono_ms() + 10000; !rs.seen && mono_ms() < deadline; nap_ms(20))
        proc_reap_all(reap_cb, &rs);
    return rs.seen ? 0 : 7;
}

static void test_subreaper_reaps_orphan(void **state)
{
    (void)state;
    int st;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0)
        _exit(subreaper_body());
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(proc_reap_all(NULL, NULL), 0);
}

static void test_cgroup_probe_reports(void **state)
{
    (void)state;
    struct remex_error why;
    char v1[4096];

    if (proc_cgroup_probe("/sys/fs/cgroup", PROC_CG_MEMORY, &why) == REMEX_OK)
        print_message("# cgroup2 memory: usable under /sys/fs/cgroup\n");
    else
        print_message("# cgroup2 memory: %s\n", why.msg);
    if (proc_cgroup_v1_locate(NULL, NULL, v1, sizeof(v1), &why) == REMEX_OK &&
        proc_cgroup_v1_probe(v1, &why) == REMEX_OK)
        print_message("# cgroup v1 memory: usable in %s\n", v1);
    else
        print_message("# cgroup v1 memory: %s\n", why.msg);
    assert_int_equal(proc_cgroup_probe("relative", 0, &why), REMEX_EINVAL);
    assert_int_equal(proc_cgroup_probe("/tmp", 0, &why), REMEX_EUNSUPPORTED);
    assert_string_equal(why.msg, "/tmp: not a cgroup2 mount");
    assert_int_equal(proc_cgroup_v1_probe("/tmp", &why), REMEX_EUNSUPPORTED);
    assert_string_equal(why.msg, "/tmp: not a cgroup v1 mount");
}

/* A cgroup2 directory we may create children in (controllers not required). */
static const char *cgroup_parent(unsigned need, struct remex_error *why)
{
    static const char *const cands[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (size_t i = 0; i < 2; i++)
        if (proc_cgroup_probe(cands[i], need, why) == REMEX_OK)
            return cands[i];
    return NULL;
}

static void test_cgroup_placement(void **state)
{
    (void)state;
    char *argv[] = {"/bin/cat", "/proc/self/cgroup", NULL};
    struct proc_cgroup cg, dup;
    struct proc_spec spec = {.argv = argv, .cgroup = &cg};
    struct remex_error e;
    const char *parent = cgroup_parent(0, &e);
    char name[64], want[96], out[OUT_MAX];
    int st;

    if (parent == NULL)
        SKIP_BECAUSE("cgroup v2 placement unavailable: %s\n", e.msg);
    snprintf(name, sizeof(name), "remex-test-%d", (int)getpid());
    assert_int_equal(proc_cgroup_create(&cg, parent, "../x", NULL, &e), REMEX_EINVAL);
    if (proc_cgroup_create(&cg, parent, name, NULL, &e) != REMEX_OK)
        SKIP_BECAUSE("cgroup create under %s failed: %s\n", parent, e.msg);
    /* A second create of the same name fails and leaves the first intact. */
    assert_int_equal(proc_cgroup_create(&dup, parent, name, NULL, &e), REMEX_EEXIST);
    assert_int_equal(dup.procs_fd, -1);
    assert_int_equal(proc_cgroup_remove(&dup, &e), REMEX_OK);
    assert_int_equal(access(cg.path, F_OK), 0);
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, &e), REMEX_OK);
    snprintf(want, sizeof(want), "0::/%s\n", name);
    assert_non_null(strstr(out, want));
    assert_int_equal(proc_cgroup_remove(&cg, &e), REMEX_OK);
    assert_int_equal(access(cg.path, F_OK), -1);
}

static void test_cgroup_memory_limit(void **state)
{
    (void)state;
    char *argv[] = {"/usr/bin/python3", "-c", "bytearray(200 * 1024 * 1024)", NULL};
    struct proc_cgroup_limits lim = {64u << 20, 64};
    struct proc_cgroup cg;
    struct proc_spec spec = {.argv = argv, .cgroup = &cg};
    struct remex_error e;
    const char *parent = cgroup_parent(PROC_CG_MEMORY | PROC_CG_PIDS, &e);
    unsigned long long ooms = 0;
    char name[64];
    pid_t pid;
    int st;

    if (parent == NULL || access(argv[0], X_OK) != 0)
        SKIP_BECAUSE("cgroup v2 memory limit not testable (cgroup v1 and RLIMIT_AS paths tested "
                     "instead): %s\n",
                     parent == NULL ? e.msg : "no python3");
    snprintf(name, sizeof(name), "remex-mem-%d", (int)getpid());
    assert_int_equal(proc_cgroup_create(&cg, parent, name, &lim, &e), REMEX_OK);
    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_OK);
    assert_int_equal(proc_wait(pid, -1, &st, &e), REMEX_OK);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(proc_cgroup_oom_kills(&cg, &ooms, &e), REMEX_OK);
    assert_true(ooms >= 1);
    assert_int_equal(proc_cgroup_remove(&cg, &e), REMEX_OK);
}

/* Runs in a forked copy: spawns a pdeathsig child, reports its pid, exits. */
static void __attribute__((noreturn)) pdeath_body(int wfd)
{
    char *argv[] = {"/bin/sleep", "30", NULL};
    struct proc_spec spec = {.argv = argv, .pdeathsig = SIGKILL};
    pid_t pid = 0;

    if (proc_spawn(&spec, &pid, NULL) != REMEX_OK)
        pid = 0;
    if (write(wfd, &pid, sizeof(pid)) != (ssize_t)sizeof(pid))
        _exit(2);
    _exit(0);
}

static void test_parent_death_signal(void **state)
{
    (void)state;
    int pfd[2], st;
    pid_t mid, child = 0;

    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    mid = fork();
    assert_true(mid >= 0);
    if (mid == 0)
        pdeath_body(pfd[1]);
    close(pfd[1]);
    assert_int_equal(read(pfd[0], &child, sizeof(child)), sizeof(child));
    close(pfd[0]);
    assert_true(child > 0);
    assert_int_equal(waitpid(mid, &st, 0), mid);
    assert_int_equal(st, 0);
    assert_true(wait_dead(child, 5000));
}

static void test_drop_ids(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c", "id -u; id -g; id -G", NULL};
    char *env[] = {"PATH=/usr/bin:/bin", NULL};
    struct proc_spec spec = {.argv = argv, .envp = env, .drop_ids = 1};
    char out[OUT_MAX];
    int st;

    if (geteuid() != 0)
        SKIP_BECAUSE("not root: cannot change ids\n");
    spec.uid = 65534;
    spec.gid = 65533;
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, NULL), REMEX_OK);
    assert_string_equal(out, "65534\n65533\n65533\n");
}

static void test_more_rlimits(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c", "ulimit -t; ulimit -p", NULL};
    struct proc_rlimit rl[2] = {{RLIMIT_CPU, {7, 9}}, {RLIMIT_NPROC, {4000, 4000}}};
    struct proc_spec spec = {.argv = argv, .rlimits = rl, .nrlimits = 2};
    char out[OUT_MAX];
    int st;

    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, NULL), REMEX_OK);
    assert_string_equal(out, "7\n4000\n");
}

/* Runs in a forked copy with fd 0 closed. */
static int closed_stdin_body(void)
{
    char *argv[] = {"/bin/readlink", "/proc/self/fd/0", NULL};
    struct proc_spec spec = {.argv = argv};
    char out[OUT_MAX];
    int pfd[2], st;
    pid_t pid;

    /* The pipe first, so that it does not take the freed fd 0. */
    if (pipe2(pfd, O_CLOEXEC) != 0 || pfd[0] == 0 || pfd[1] == 0)
        return 2;
    close(0);
    spec.stdio[1].kind = PROC_STDIO_FD;
    spec.stdio[1].fd = pfd[1];
    if (proc_spawn(&spec, &pid, NULL) != REMEX_OK)
        return 3;
    close(pfd[1]);
    read_fd(pfd[0], out, sizeof(out), 0);
    if (proc_wait(pid, -1, &st, NULL) != REMEX_OK || st != 0)
        return 4;
    return strcmp(out, "/dev/null\n") == 0 ? 0 : 5;
}

static void test_inherit_closed_stdin(void **state)
{
    (void)state;
    int st;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0)
        _exit(closed_stdin_body());
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_int_equal(st, 0);
}

static void test_search_path_skips_dirs(void **state)
{
    (void)state;
    char dir[] = "/tmp/remex-path-XXXXXX", sub[64], pathvar[96];
    char *argv[] = {"true", NULL};
    char *env[] = {pathvar, NULL};
    struct proc_spec spec = {.argv = argv, .envp = env, .search_path = 1};
    pid_t pid;
    int st = -1;

    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof(sub), "%s/true", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(pathvar, sizeof(pathvar), "PATH=%s:/bin", dir);
    assert_int_equal(proc_spawn(&spec, &pid, NULL), REMEX_OK);
    assert_int_equal(proc_wait(pid, -1, &st, NULL), REMEX_OK);
    assert_int_equal(st, 0);
    rmdir(sub);
    rmdir(dir);
}

static void test_cgroup_join_failure_reported(void **state)
{
    (void)state;
    char *argv[] = {"/bin/true", NULL};
    struct proc_cgroup cg;
    struct proc_spec spec = {.argv = argv, .cgroup = &cg};
    struct remex_error e;
    const char *parent = cgroup_parent(0, &e);
    char name[64], want[160];
    pid_t pid;

    if (parent == NULL)
        SKIP_BECAUSE("cgroup v2 placement unavailable: %s\n", e.msg);
    snprintf(name, sizeof(name), "remex-gone-%d", (int)getpid());
    if (proc_cgroup_create(&cg, parent, name, NULL, &e) != REMEX_OK)
        SKIP_BECAUSE("cgroup create under %s failed: %s\n", parent, e.msg);
    /* Removed behind the handle's back: joining must fail before exec. */
    assert_int_equal(rmdir(cg.path), 0);
    assert_int_not_equal(proc_spawn(&spec, &pid, &e), REMEX_OK);
    snprintf(want, sizeof(want), "cgroup %s: join: ", cg.path);
    assert_memory_equal(e.msg, want, strlen(want));
    assert_int_equal(proc_cgroup_remove(&cg, &e), REMEX_OK);
    spec.cgroup = &cg; /* procs_fd is now -1 */
    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_EINVAL);
}

static void write_events(const char *dir, const char *text)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/memory.events", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_cgroup_oom_events_parse(void **state)
{
    (void)state;
    char dir[] = "/tmp/remex-cg-XXXXXX";
    struct proc_cgroup cg = {.procs_fd = -1};
    struct remex_error e;
    unsigned long long n = 99;

    assert_non_null(mkdtemp(dir));
    snprintf(cg.path, sizeof(cg.path), "%s", dir);
    assert_int_equal(proc_cgroup_oom_kills(&cg, &n, &e), REMEX_ENOTFOUND);
    write_events(dir, "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n");
    assert_int_equal(proc_cgroup_oom_kills(&cg, &n, &e), REMEX_OK);
    assert_int_equal(n, 2);
    write_events(dir, "oom_kill 7");
    assert_int_equal(proc_cgroup_oom_kills(&cg, &n, &e), REMEX_OK);
    assert_int_equal(n, 7);
    write_events(dir, "oom 1\noom_kill_x 5\n");
    assert_int_equal(proc_cgroup_oom_kills(&cg, &n, &e), REMEX_EPARSE);
    write_events(dir, "oom_kill -1\n");
    assert_int_equal(proc_cgroup_oom_kills(&cg, &n, &e), REMEX_EPARSE);
    write_events(dir, "oom_kill 3x\n");
    assert_int_equal(proc_cgroup_oom_kills(&cg, &n, &e), REMEX_EPARSE);
    write_events(dir, "oom_kill 99999999999999999999999\n");
    assert_int_equal(proc_cgroup_oom_kills(&cg, &n, &e), REMEX_EPARSE);
    write_events(dir, "");
    assert_int_equal(proc_cgroup_oom_kills(&cg, &n, &e), REMEX_EPARSE);
    snprintf(cg.path, sizeof(cg.path), "%s/memory.events", dir);
    unlink(cg.path);
    rmdir(dir);
}

/* ---- cgroup v1 memory ------------------------------------------------------------ */

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* proc_cgroup_v1_locate on a mountinfo and a cgroup file written into dir. */
static remex_err locate(const char *dir, const char *mountinfo, const char *cgroup, char *out,
                        struct remex_error *e)
{
    char mi[128], cg[128];

    write_text(dir, "mountinfo", mountinfo);
    write_text(dir, "cgroup", cgroup);
    snprintf(mi, sizeof(mi), "%s/mountinfo", dir);
    snprintf(cg, sizeof(cg), "%s/cgroup", dir);
    return proc_cgroup_v1_locate(mi, cg, out, 4096, e);
}

#define MI_ROOT  "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
#define MI_CPU   "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
#define MI_MEM   "35 31 0:32 / /sys/fs/cgroup/memory rw shared:9 - cgroup cgroup rw,memory\n"
#define MI_UNI   "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
#define CG_LINES "5:devices:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n"

static void test_cgroup_v1_locate_parse(void **state)
{
    (void)state;
    char dir[] = "/tmp/remex-cg1-XXXXXX", out[4096], want[256], *big;
    struct remex_error e;

    assert_non_null(mkdtemp(dir));
    assert_int_equal(locate(dir, MI_ROOT MI_CPU MI_MEM MI_UNI, CG_LINES, out, &e), REMEX_OK);
    assert_string_equal(out, "/sys/fs/cgroup/memory/process_api/abc");
    /* Root cgroup; controllers sharing one hierarchy. */
    assert_int_equal(
        locate(dir, "1 0 0:1 / /cg rw - cgroup x rw,cpu,memory\n", "3:cpu,memory:/\n", out, &e),
        REMEX_OK);
    assert_string_equal(out, "/cg");
    /* A bind mount of a subtree (a container's view); an escaped mount point. */
    assert_int_equal(locate(dir, "1 0 0:1 /docker/abc /mnt/my\\040cg rw - cgroup c rw,memory\n",
                            "4:memory:/docker/abc/job\n", out, &e),
                     REMEX_OK);
    assert_string_equal(out, "/mnt/my cg/job");
    assert_int_equal(locate(dir, "1 0 0:1 /docker/abc /m rw - cgroup c rw,memory\n",
                            "4:memory:/docker/abc\n", out, &e),
                     REMEX_OK);
    assert_string_equal(out, "/m");
    /* Nothing usable: each case says why. */
    assert_int_equal(locate(dir, MI_ROOT MI_UNI, "0::/user.slice\n", out, &e), REMEX_EUNSUPPORTED);
    snprintf(want, sizeof(want), "%s/cgroup: no cgroup v1 memory controller", dir);
    assert_string_equal(e.msg, want);
    assert_string_equal(out, "");
    assert_int_equal(locate(dir, MI_ROOT MI_CPU MI_UNI, CG_LINES, out, &e), REMEX_EUNSUPPORTED);
    snprintf(want, sizeof(want), "%s/mountinfo: no cgroup v1 memory mount", dir);
    assert_string_equal(e.msg, want);
    assert_int_equal(locate(dir, "1 0 0:1 / /m rw - cgroup c rw,memoryx\n", CG_LINES, out, &e),
                     REMEX_EUNSUPPORTED);
    assert_int_equal(locate(dir, "1 0 0:1 /docker/abc /m rw - cgroup c rw,memory\n",
                            "4:memory:/docker/abcd\n", out, &e),
                     REMEX_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "is not under any cgroup v1 memory mount"));
    assert_int_equal(locate(dir, MI_MEM, "4:memory:/../other\n", out, &e), REMEX_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "outside this cgroup namespace"));
    /* Malformed input names the file and line. */
    assert_int_equal(
        locate(dir, MI_ROOT "35 31 0:32 / /x rw cgroup cgroup rw,memory\n", CG_LINES, out, &e),
        REMEX_EPARSE);
    snprintf(want, sizeof(want), "%s/mountinfo:2: malformed mount line", dir);
    assert_string_equal(e.msg, want);
    assert_int_equal(locate(dir, "1 0 0:1 / /a\\09 rw - cgroup c memory\n", CG_LINES, out, &e),
                     REMEX_EPARSE);
    assert_int_equal(locate(dir, "", CG_LINES, out, &e), REMEX_EPARSE);
    assert_int_equal(locate(dir, MI_MEM, "5:devices:/\nmemory\n", out, &e), REMEX_EPARSE);
    snprintf(want, sizeof(want), "%s/cgroup:2: expected ID:CONTROLLERS:/PATH", dir);
    assert_string_equal(e.msg, want);
    big = malloc((2u << 20) + 1);
    assert_non_null(big);
    memset(big, 'x', 2u << 20);
    big[2u << 20] = '\0';
    assert_int_equal(locate(dir, big, CG_LINES, out, &e), REMEX_ETOOBIG);
    assert_non_null(strstr(e.msg, "mountinfo: larger than"));
    free(big);
    snprintf(want, sizeof(want), "%s/nosuch", dir);
    assert_int_equal(proc_cgroup_v1_locate(want, NULL, out, sizeof(out), &e), REMEX_ENOTFOUND);
    assert_non_null(strstr(e.msg, "nosuch: No such file or directory"));
    for (const char *const *f = (const char *const[]){"mountinfo", "cgroup", NULL}; *f; f++) {
        snprintf(want, sizeof(want), "%s/%s", dir, *f);
        unlink(want);
    }
    rmdir(dir);
}

static void test_cgroup_v1_oom_control_parse(void **state)
{
    (void)state;
    char dir[] = "/tmp/remex-cg1-XXXXXX", path[128];
    struct proc_cgroup cg = {.procs_fd = -1, .v1 = 1};
    struct remex_error e;
    unsigned long long n = 99;

    assert_non_null(mkdtemp(dir));
    snprintf(cg.path, sizeof(cg.path), "%s", dir);
    write_text(dir, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
    assert_int_equal(proc_cgroup_oom_kills(&cg, &n, &e), REMEX_OK);
    assert_int_equal(n, 3);
    write_text(dir, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
    assert_int_equal(proc_cgroup_oom_kills(&cg, &n, &e), REMEX_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "memory.oom_control: no oom_kill counter (Linux < 4.13)"));
    write_text(dir, "memory.oom_control", "oom_kill 1x\n");
    assert_int_equal(proc_cgroup_oom_kills(&cg, &n, &e), REMEX_EPARSE);
    snprintf(path, sizeof(path), "%s/memory.oom_control", dir);
    unlink(path);
    rmdir(dir);
}

/* This process's v1 memory cgroup, when children can be made there. */
static int v1_own(char *own, size_t len, struct remex_error *e)
{
    return proc_cgroup_v1_locate(NULL, NULL, own, len, e) == REMEX_OK &&
           proc_cgroup_v1_probe(own, e) == REMEX_OK;
}

static unsigned long long read_ull(const char *dir, const char *name)
{
    char path[4200], buf[64] = "";
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fgets(buf, sizeof(buf), f) == NULL)
        buf[0] = '\0';
    fclose(f);
    return strtoull(buf, NULL, 10);
}

static int v1_seq;

static void test_cgroup_v1_memory_limit(void **state)
{
    (void)state;
    char *hog[] = {"/usr/bin/python3", "-c", "b = bytearray(200 * 1024 * 1024)", NULL};
    char *fine[] = {"/usr/bin/python3", "-c", "b = bytearray(8 * 1024 * 1024)", NULL};
    char *cat[] = {"/bin/cat", "/proc/self/cgroup", NULL};
    struct proc_cgroup_limits lim = {64u << 20, 0};
    struct proc_cgroup top, cg;
    struct proc_spec spec = {.argv = hog, .cgroup = &cg, .stdio = {[2] = {PROC_STDIO_NULL}}};
    struct remex_error e;
    unsigned long long ooms = 99;
    char own[4096], name[64], want[4200], out[OUT_MAX];
    int st;

    if (!v1_own(own, sizeof(own), &e))
        SKIP_BECAUSE("cgroup v1 memory not available: %s\n", e.msg);
    if (access(hog[0], X_OK) != 0)
        SKIP_BECAUSE("no python3 to allocate with\n");
    snprintf(name, sizeof(name), "remex-test-%d-%d", (int)getpid(), ++v1_seq);
    assert_int_equal(proc_cgroup_create(&top, own, name, NULL, &e), REMEX_OK);
    assert_true(top.v1);
    /* pids.max has no place in the memory hierarchy. */
    struct proc_cgroup_limits pids = {0, 10};
    assert_int_equal(proc_cgroup_create(&cg, top.path, "p", &pids, &e), REMEX_EUNSUPPORTED);
    assert_string_equal(cg.path, "");
    assert_int_equal(proc_cgroup_create(&cg, top.path, "hog", &lim, &e), REMEX_OK);
    assert_int_equal(read_ull(cg.path, "memory.limit_in_bytes"), 64u << 20);
    if (read_ull(cg.path, "memory.memsw.limit_in_bytes") != 0)
        assert_int_equal(read_ull(cg.path, "memory.memsw.limit_in_bytes"), 64u << 20);
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, &e), REMEX_OK);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(proc_cgroup_oom_kills(&cg, &ooms, &e), REMEX_OK);
    assert_true(ooms >= 1);
    snprintf(want, sizeof(want), "%s", cg.path);
    assert_int_equal(proc_cgroup_remove(&cg, &e), REMEX_OK);
    assert_string_equal(cg.path, "");
    assert_int_equal(access(want, F_OK), -1);
    /* Well-behaved under the same limit: not killed, no OOM counted; runs inside. */
    assert_int_equal(proc_cgroup_create(&cg, top.path, "fine", &lim, &e), REMEX_OK);
    spec.argv = fine;
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, &e), REMEX_OK);
    assert_int_equal(st, 0);
    assert_int_equal(proc_cgroup_oom_kills(&cg, &ooms, &e), REMEX_OK);
    assert_int_equal(ooms, 0);
    spec.argv = cat;
    assert_int_equal(run_capture(&spec, out, sizeof(out), &st, &e), REMEX_OK);
    snprintf(want, sizeof(want), "/%s/fine\n", name);
    assert_non_null(strstr(out, want));
    assert_int_equal(proc_cgroup_remove(&cg, &e), REMEX_OK);
    assert_int_equal(proc_cgroup_remove(&top, &e), REMEX_OK);
    assert_int_equal(access(top.path, F_OK), -1);
}

/* Spawns a shell in cg (new session) that leaves a background sleep behind. */
static pid_t spawn_sleepers(struct proc_cgroup *cg)
{
    char *argv[] = {"/bin/sh", "-c", "sleep 100 & exec sleep 100", NULL};
    struct proc_spec spec = {.argv = argv, .cgroup = cg, .new_session = 1};
    pid_t pid;

    assert_int_equal(proc_spawn(&spec, &pid, NULL), REMEX_OK);
    return pid;
}

static void test_cgroup_v1_kill_remove_purge(void **state)
{
    (void)state;
    struct proc_cgroup top, cg;
    struct remex_error e;
    char own[4096], name[64], sub[4200];
    int64_t deadline;
    remex_err rc;
    pid_t pid;
    int st;

    if (!v1_own(own, sizeof(own), &e))
        SKIP_BECAUSE("cgroup v1 memory not available: %s\n", e.msg);
    snprintf(name, sizeof(name), "remex-test-%d-%d", (int)getpid(), ++v1_seq);
    assert_int_equal(proc_cgroup_create(&top, own, name, NULL, &e), REMEX_OK);
    assert_int_equal(proc_cgroup_create(&cg, top.path, "t", NULL, &e), REMEX_OK);
    pid = spawn_sleepers(&cg);
    nap_ms(100); /* the background sleep is forked */
    assert_int_equal(proc_cgroup_remove(&cg, &e), REMEX_EAGAIN);
    assert_string_equal(cg.path + strlen(cg.path) - 2, "/t"); /* kept for a retry */
    assert_int_equal(proc_cgroup_kill(&cg, &e), REMEX_OK);
    assert_int_equal(proc_wait(pid, 5000, &st, &e), REMEX_OK);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    deadline = mono_ms() + 5000; /* the orphaned sleep exits on its own time */
    while ((rc = proc_cgroup_remove(&cg, &e)) == REMEX_EAGAIN && mono_ms() < deadline)
        nap_ms(10);
    assert_int_equal(rc, REMEX_OK);
    /* purge: a nested subtree with live processes goes in one call. */
    assert_int_equal(proc_cgroup_create(&cg, top.path, "a", NULL, &e), REMEX_OK);
    snprintf(sub, sizeof(sub), "%s/a/b", top.path);
    assert_int_equal(mkdir(sub, 0755), 0);
    pid = spawn_sleepers(&cg);
    proc_cgroup_remove(&cg, NULL); /* closes the fd; busy */
    assert_int_equal(proc_cgroup_purge(top.path, 5000, &e), REMEX_OK);
    assert_int_equal(access(top.path, F_OK), -1);
    assert_int_equal(proc_wait(pid, 5000, &st, &e), REMEX_OK);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(proc_cgroup_purge(top.path, 100, &e), REMEX_OK); /* gone: nothing to do */
    assert_int_equal(proc_cgroup_purge("/tmp", 100, &e), REMEX_EINVAL);
    assert_int_equal(proc_cgroup_purge("rel", 100, &e), REMEX_EINVAL);
}

/* The mechanism this group asked for, or "fork" where proc forces it. */
static const char *want_mechanism = "clone-vfork";

static int forced_fork(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#else
    return getenv("REMEX_VALGRIND") != NULL && strcmp(getenv("REMEX_VALGRIND"), "1") == 0;
#endif
}

static int setup_vfork(void **state)
{
    (void)state;
    want_mechanism = forced_fork() ? "fork" : "clone-vfork";
    return unsetenv("REMEX_SPAWN");
}

static int setup_fork(void **state)
{
    (void)state;
    want_mechanism = "fork";
    return setenv("REMEX_SPAWN", "fork", 1);
}

static void test_spawn_mechanism(void **state)
{
    (void)state;
    assert_string_equal(proc_spawn_mechanism(), want_mechanism);
}

/* Every signal blocked in the caller before proc_spawn is blocked after it, and only those. */
static void test_parent_sigmask_restored(void **state)
{
    (void)state;
    char *ok[] = {"/bin/true", NULL}, *bad[] = {"/no/such", NULL};
    struct proc_spec spec = {.argv = ok};
    sigset_t set, old, after;
    pid_t pid;
    int st;

    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
    assert_int_equal(proc_spawn(&spec, &pid, NULL), REMEX_OK);
    assert_int_equal(proc_wait(pid, -1, &st, NULL), REMEX_OK);
    assert_int_equal(st, 0);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &after), 0);
    for (int sig = 1; sig < SIGRTMIN; sig++)
        assert_int_equal(sigismember(&after, sig), sig == SIGUSR1 || sig == SIGTERM);
    spec.argv = bad;
    assert_int_equal(proc_spawn(&spec, &pid, NULL), REMEX_ENOTFOUND);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &after), 0);
    for (int sig = 1; sig < SIGRTMIN; sig++)
        assert_int_equal(sigismember(&after, sig), sig == SIGUSR1 || sig == SIGTERM);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

/*
 * The deepest child path (64 fd mappings, 16 rlimits, cwd, umask, session,
 * parent-death signal, exec failure after all of them) fits the child's
 * stack: touching the guard page would kill the child with SIGSEGV and
 * proc_spawn would fail with "child killed by signal 11 (SEGV) before exec".
 * Errors still arrive synchronously and leave no child behind.
 */
static void test_deep_child_path(void **state)
{
    (void)state;
    char *bad[] = {"/no/such", NULL};
    char *ok[] = {"/bin/sh", "-c", "echo x >&9; exit 7", NULL};
    struct proc_fdmap fm[PROC_MAX_FDMAP];
    struct proc_rlimit rl[PROC_MAX_RLIMITS];
    static const int res[] = {RLIMIT_NOFILE, RLIMIT_CORE, RLIMIT_CPU, RLIMIT_FSIZE};
    struct proc_spec spec = {.argv = bad,
                             .fds = fm,
                             .nfds = PROC_MAX_FDMAP,
                             .rlimits = rl,
                             .nrlimits = PROC_MAX_RLIMITS,
                             .cwd = "/",
                             .set_umask = 1,
                             .umask = 077,
                             .new_session = 1,
                             .pdeathsig = SIGKILL};
    struct remex_error e;
    char out[OUT_MAX];
    int pfd[2], st;
    pid_t pid = -1;

    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    for (int i = 0; i < PROC_MAX_FDMAP; i++) {
        fm[i].parent_fd = pfd[1];
        fm[i].child_fd = 3 + i;
    }
    for (int i = 0; i < PROC_MAX_RLIMITS; i++) {
        rl[i].resource = res[i % 4];
        assert_int_equal(getrlimit(rl[i].resource, &rl[i].lim), 0);
    }
    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_ENOTFOUND);
    assert_string_equal(e.msg, "exec /no/such: No such file or directory");
    assert_int_equal(pid, -1);
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    spec.argv = ok;
    assert_int_equal(proc_spawn(&spec, &pid, &e), REMEX_OK);
    close(pfd[1]);
    read_fd(pfd[0], out, sizeof(out), 0);
    close(pfd[0]);
    assert_string_equal(out, "x\n");
    assert_int_equal(proc_wait(pid, -1, &st, NULL), REMEX_OK);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 7);
}

/* Many spawns in a row: no stack, fd or child leaks on either path. */
static void test_spawn_many(void **state)
{
    (void)state;
    char *argv[] = {"/bin/true", NULL};
    struct proc_spec spec = {.argv = argv};
    int n = getenv("REMEX_VALGRIND") != NULL ? 20 : 300;
    int low = dup(0), low2;

    assert_true(low >= 0);
    close(low);
    for (int i = 0; i < n; i++) {
        pid_t pid;
        int st = -1;
        assert_int_equal(proc_spawn(&spec, &pid, NULL), REMEX_OK);
        assert_int_equal(proc_wait(pid, -1, &st, NULL), REMEX_OK);
        assert_int_equal(st, 0);
    }
    /* The lowest free fd is unchanged: no pipe end or stdio fd leaked. */
    low2 = dup(0);
    close(low2);
    assert_int_equal(low2, low);
}

/*
 * Spawns from two threads at once (the second one finds the kept child stack
 * taken and maps its own), successes and exec failures interleaved: each
 * spawn gets its own outcome and message, and no child is left behind.
 */
static void *spawn_mixed(void *arg)
{
    long fails = 0;
    char *ok[] = {"/bin/true", NULL};
    char *bad[] = {"/no/such", NULL};

    (void)arg;
    for (int i = 0; i < 60; i++) {
        struct proc_spec spec = {.argv = i % 3 == 0 ? bad : ok};
        struct remex_error e;
        pid_t pid = -1;
        int st = -1;
        remex_err rc = proc_spawn(&spec, &pid, &e);
        if (i % 3 == 0) {
            if (rc != REMEX_ENOTFOUND || pid != -1 ||
                strcmp(e.msg, "exec /no/such: No such file or directory") != 0)
                fails++;
        } else if (rc != REMEX_OK || waitpid(pid, &st, 0) != pid || st != 0) {
            fails++;
        }
    }
    return (void *)fails;
}

static void test_spawn_threads(void **state)
{
    (void)state;
    pthread_t th[2];
    void *fails[2];

    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, spawn_mixed, NULL), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], &fails[i]), 0);
        assert_int_equal((long)fails[i], 0);
    }
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_signal_decode),
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_exec_error_reported),
        cmocka_unit_test(test_chdir_failure_reported),
        cmocka_unit_test(test_cwd_and_umask),
        cmocka_unit_test(test_search_path),
        cmocka_unit_test(test_exe_cache_follows_changes),
        cmocka_unit_test(test_env_is_exact),
        cmocka_unit_test(test_env_helpers),
        cmocka_unit_test(test_env_entry_cap),
        cmocka_unit_test(test_fd_table_clean),
        cmocka_unit_test(test_fd_mapping),
        cmocka_unit_test(test_bad_spec_rejected),
        cmocka_unit_test(test_new_session),
        cmocka_unit_test(test_signals_reset),
        cmocka_unit_test(test_kill_group_grandchild),
        cmocka_unit_test(test_term_ignored_gets_kill),
        cmocka_unit_test(test_term_then_kill_split),
        cmocka_unit_test(test_rlimit_nofile),
        cmocka_unit_test(test_rlimit_failure_reported),
        cmocka_unit_test(test_rlimit_as_big_alloc_fails),
        cmocka_unit_test(test_output_to_file),
        cmocka_unit_test(test_subreaper_reaps_orphan),
        cmocka_unit_test(test_cgroup_probe_reports),
        cmocka_unit_test(test_cgroup_placement),
        cmocka_unit_test(test_cgroup_memory_limit),
        cmocka_unit_test(test_cgroup_oom_events_parse),
        cmocka_unit_test(test_cgroup_v1_locate_parse),
        cmocka_unit_test(test_cgroup_v1_oom_control_parse),
        cmocka_unit_test(test_cgroup_v1_memory_limit),
        cmocka_unit_test(test_cgroup_v1_kill_remove_purge),
        cmocka_unit_test(test_parent_death_signal),
        cmocka_unit_test(test_drop_ids),
        cmocka_unit_test(test_more_rlimits),
        cmocka_unit_test(test_inherit_closed_stdin),
        cmocka_unit_test(test_search_path_skips_dirs),
        cmocka_unit_test(test_cgroup_join_failure_reported),
        cmocka_unit_test(test_spawn_mechanism),
        cmocka_unit_test(test_parent_sigmask_restored),
        cmocka_unit_test(test_deep_child_path),
        cmocka_unit_test(test_spawn_many),
        cmocka_unit_test(test_spawn_threads),
    };
    int failed;

    umask(022);
    /* The same cases on both spawn paths: clone-vfork (the default), then fork. */
    failed = cmocka_run_group_tests_name("proc (clone-vfork)", tests, setup_vfork, NULL);
    failed += cmocka_run_group_tests_name("proc (fork)", tests, setup_fork, NULL);
    return failed;
}
