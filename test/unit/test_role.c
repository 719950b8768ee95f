/*
 * role: a tiny test role built on role_main goes through start, readiness over
 * the supervisor channel, drain on request, on EOF and on SIGTERM, a second
 * SIGTERM, --check, and the exit codes. Each case runs the role in a child
 * process (role_main owns signals and the process's exit path).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remex/evloop.h"
#include "remex/exit.h"
#include "remex/ipc.h"
#include "remex/role.h"
#include "remex/supervise.h"

static char dir[64], cfg[96], bad[96], reserved[96];
static int parent_end = -1; /* the supervisor's end: closed in the role's process */

/* ---- the test role ---- */

static int stop_now_code = 42, grace_code = 43;

static int t_start(struct role *r)
{
    role_ready(r);
    return -1;
}

/* Draining takes one loop turn, so a second SIGTERM can arrive meanwhile only when asked to
 * (ud 1); with ud 2 the drain lasts until its 50 ms grace is over. */
static void t_drain(struct role *r, const char *why)
{
    if (r->ud == (void *)2) {
        role_drain_grace(r, 50);
        role_drain_grace(r, 60000); /* armed already: no change */
        return;
    }
    if (strcmp(why, "SIGTERM") == 0 && r->ud)
        return; /* keeps draining until a second SIGTERM */
    role_finish(r, REMEX_EXIT_OK);
}

static void t_grace_over(struct role *r)
{
    role_finish(r, grace_code);
}

static void t_stop_now(struct role *r)
{
    role_finish(r, stop_now_code);
}

static const struct role_ops test_ops = {
    .name = "testrole",
    .start = t_start,
    .drain = t_drain,
    .stop_now = t_stop_now,
    .grace_over = t_grace_over,
};

/* Runs role_main(args) in a child with its supervisor socket (or none); returns the pid. */
static pid_t spawn_role(int sup_fd, int hold, char **args, int quiet)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char v[16];
        if (parent_end >= 0)
            close(parent_end);
        if (sup_fd >= 0) {
            snprintf(v, sizeof(v), "%d", sup_fd);
            setenv(SUPERVISE_ENV, v, 1);
        }
        if (quiet) {
            int n = open("/dev/null", O_WRONLY);
            dup2(n, 1);
            dup2(n, 2);
        }
        int argc = 0;
        while (args[argc])
            argc++;
        exit(role_main(&test_ops, (void *)(intptr_t)hold, argc, args));
    }
    return pid;
}

static int wait_code(pid_t pid)
{
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* Reads one frame from the supervisor's end (blocking, with a 5 s alarm). */
static json_t *read_frame(struct ipc_conn *c)
{
    json_t *m = NULL;
    struct remex_error e;
    for (int i = 0; i < 500; i++) {
        remex_err rc = ipc_conn_pop(c, &m, NULL, NULL, &e);
        if (rc == REMEX_OK)
            return m;
        assert_int_equal(rc, REMEX_EAGAIN);
        struct pollfd p = {.fd = ipc_conn_fd(c), .events = POLLIN};
        poll(&p, 1, 10);
        rc = ipc_conn_read(c, &e);
        assert_true(rc == REMEX_OK || rc == REMEX_EAGAIN);
    }
    fail_msg("no frame from the role within 5 s");
    return NULL;
}

static void expect_frame(struct ipc_conn *c, const char *type, const char *reason)
{
    json_t *m = read_frame(c);
    assert_string_equal(json_string_value(json_object_get(m, "type")), type);
    assert_string_equal(json_string_value(json_object_get(m, "role")), "testrole");
    if (reason)
        assert_string_equal(json_string_value(json_object_get(m, "reason")), reason);
    json_decref(m);
}

struct sup {
    int fds[2];
    struct ipc_conn *c;
};

static void sup_open(struct sup *s)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s->fds), 0);
    fcntl(s->fds[0], F_SETFL, O_NONBLOCK);
    parent_end = s->fds[0];
    s->c = ipc_conn_new(s->fds[0], 65536, 65536, NULL);
    assert_non_null(s->c);
}

static void test_ready_then_drain_request(void **state)
{
    (void)state;
    struct sup s;
    sup_open(&s);
    char *args[] = {"remex-testrole", "-c", cfg, NULL};
    pid_t pid = spawn_role(s.fds[1], 0, args, getenv("ROLE_DEBUG") == NULL);
    close(s.fds[1]);
    expect_frame(s.c, "ready", NULL);
    json_t *d = json_pack("{s:s}", "type", "drain");
    assert_int_equal(ipc_conn_send(s.c, d, NULL, 0, NULL), REMEX_OK);
    assert_int_equal(ipc_conn_flush(s.c, NULL), REMEX_OK);
    json_decref(d);
    expect_frame(s.c, "draining", "supervisor request");
    assert_int_equal(wait_code(pid), REMEX_EXIT_OK);
    ipc_conn_free(s.c);
}

static void test_supervisor_eof_drains(void **state)
{
    (void)state;
    struct sup s;
    sup_open(&s);
    char *args[] = {"remex-testrole", "-c", cfg, NULL};
    pid_t pid = spawn_role(s.fds[1], 0, args, 1);
    close(s.fds[1]);
    expect_frame(s.c, "ready", NULL);
    ipc_conn_free(s.c); /* closes the supervisor's end */
    assert_int_equal(wait_code(pid), REMEX_EXIT_OK);
}

static void test_sigterm_twice(void **state)
{
    (void)state;
    struct sup s;
    sup_open(&s);
    char *args[] = {"remex-testrole", "-c", cfg, NULL};
    pid_t pid = spawn_role(s.fds[1], 1, args, 1);
    close(s.fds[1]);
    expect_frame(s.c, "ready", NULL);
    kill(pid, SIGTERM);
    expect_frame(s.c, "draining", "SIGTERM");
    kill(pid, SIGTERM);
    assert_int_equal(wait_code(pid), stop_now_code);
    ipc_conn_free(s.c);
}

/* role_drain_grace: the grace's end calls ops.grace_over, which ends this role. */
static void test_drain_grace(void **state)
{
    (void)state;
    struct sup s;
    sup_open(&s);
    char *args[] = {"remex-testrole", "-c", cfg, NULL};
    pid_t pid = spawn_role(s.fds[1], 2, args, 1);
    close(s.fds[1]);
    expect_frame(s.c, "ready", NULL);
    kill(pid, SIGTERM);
    expect_frame(s.c, "draining", "SIGTERM");
    int st = 0, i = 0;
    while (i++ < 500 && waitpid(pid, &st, WNOHANG) == 0) /* 5 s at most */
        poll(NULL, 0, 10);
    if (i > 500) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        fail_msg("the drain grace did not end the role within 5 s");
    }
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), grace_code);
    ipc_conn_free(s.c);
}

static void test_exit_codes(void **state)
{
    (void)state;
    char *version[] = {"remex-testrole", "--version", NULL};
    assert_int_equal(wait_code(spawn_role(-1, 0, version, 1)), REMEX_EXIT_OK);
    char *badflag[] = {"remex-testrole", "--nope", NULL};
    assert_int_equal(wait_code(spawn_role(-1, 0, badflag, 1)), REMEX_EXIT_USAGE);
    char *once[] = {"remex-testrole", "-c", cfg, "--once", NULL};
    assert_int_equal(wait_code(spawn_role(-1, 0, once, 1)), REMEX_EXIT_USAGE);
    char *badcfg[] = {"remex-testrole", "-c", bad, NULL};
    assert_int_equal(wait_code(spawn_role(-1, 0, badcfg, 1)), REMEX_EXIT_CONFIG);
    char *check[] = {"remex-testrole", "-c", cfg, "--check", NULL};
    assert_int_equal(wait_code(spawn_role(-1, 0, check, 1)), REMEX_EXIT_OK);
    char *checkbad[] = {"remex-testrole", "-c", bad, "--check", NULL};
    assert_int_equal(wait_code(spawn_role(-1, 0, checkbad, 1)), REMEX_EXIT_CONFIG);
    /* An invalid REMEX_SUPERVISOR_FD is a configuration error. */
    pid_t pid = fork();
    if (pid == 0) {
        setenv(SUPERVISE_ENV, "nonsense", 1);
        int n = open("/dev/null", O_WRONLY);
        dup2(n, 2);
        char *args[] = {"remex-testrole", "-c", cfg, NULL};
        exit(role_main(&test_ops, NULL, 3, args));
    }
    assert_int_equal(wait_code(pid), REMEX_EXIT_CONFIG);
}

/* --check of a file with every role's section: OK, no warning (every section is read). */
static void test_check_every_section(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        char *args[] = {"remex-testrole", "-c", reserved, "--check", NULL};
        exit(role_main(&test_ops, NULL, 4, args));
    }
    close(p[1]);
    char out[2048] = "";
    size_t n = 0;
    ssize_t k;
    while ((k = read(p[0], out + n, sizeof(out) - 1 - n)) > 0)
        n += (size_t)k;
    out[n] = '\0';
    close(p[0]);
    assert_int_equal(wait_code(pid), REMEX_EXIT_OK);
    assert_null(strstr(out, "warning"));
    assert_non_null(strstr(out, "configuration OK"));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/remex-test-role-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cfg, sizeof(cfg), "%s/agent.yaml", dir);
    snprintf(bad, sizeof(bad), "%s/bad.yaml", dir);
    snprintf(reserved, sizeof(reserved), "%s/reserved.yaml", dir);
    char text[512];
    snprintf(text, sizeof(text),
             "plane:\n  url: http://127.0.0.1:1\n  token: t0k3n\nstate_dir: %s/state\n", dir);
    write_file(cfg, text);
    write_file(bad, "plane:\n  url: http://127.0.0.1:1\n  token: t\nworker:\n  slotz: 3\n");
    snprintf(text, sizeof(text),
             "plane:\n  url: http://127.0.0.1:1\n  token: t0k3n\n"
             "sentinel:\n  listen: 127.0.0.1:9000\ntriggerer:\n  capacity: 1000\n"
             "dag_processor:\n  refresh_interval: 5s\nagent:\n  roles: [worker]\n");
    write_file(reserved, text);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

/* The plane's desired_state as a hold, and the state a heartbeat reports under it. */
static void test_plane_hold_and_beat_state(void **state)
{
    struct role r = {.state = ROLE_READY};
    (void)state;
    assert_int_equal(role_plane_hold("run", ROLE_HOLD_DRAIN), ROLE_HOLD_NONE);
    assert_int_equal(role_plane_hold("drain", ROLE_HOLD_NONE), ROLE_HOLD_DRAIN);
    assert_int_equal(role_plane_hold("maintenance", ROLE_HOLD_NONE), ROLE_HOLD_MAINTENANCE);
    assert_int_equal(role_plane_hold(NULL, ROLE_HOLD_MAINTENANCE), ROLE_HOLD_MAINTENANCE);
    assert_int_equal(role_plane_hold("pause", ROLE_HOLD_DRAIN), ROLE_HOLD_DRAIN); /* unknown */
    assert_int_equal(role_plane_hold("drai", ROLE_HOLD_NONE), ROLE_HOLD_NONE);
    assert_string_equal(role_beat_state(&r, ROLE_HOLD_NONE), "running");
    assert_string_equal(role_beat_state(&r, ROLE_HOLD_DRAIN), "draining");
    assert_string_equal(role_beat_state(&r, ROLE_HOLD_MAINTENANCE), "maintenance");
    r.state = ROLE_DRAINING;
    assert_string_equal(role_beat_state(&r, ROLE_HOLD_NONE), "draining");
    assert_string_equal(role_beat_state(&r, ROLE_HOLD_MAINTENANCE), "draining");
    r.state = ROLE_STOPPING;
    assert_string_equal(role_beat_state(&r, ROLE_HOLD_NONE), "draining");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_then_drain_request),
        cmocka_unit_test(test_supervisor_eof_drains),
        cmocka_unit_test(test_sigterm_twice),
        cmocka_unit_test(test_drain_grace),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_check_every_section),
        cmocka_unit_test(test_plane_hold_and_beat_state),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
