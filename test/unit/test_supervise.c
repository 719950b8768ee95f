/* Unit tests: supervise (role side of the supervisor channel). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remex/ipc.h"
#include "remex/supervise.h"

static void test_unset_is_not_supervised(void **state)
{
    (void)state;
    struct remex_error e;
    unsetenv(SUPERVISE_ENV);
    assert_int_equal(supervise_fd(&e), -1);
}

static void test_valid_socket_and_frames(void **state)
{
    (void)state;
    struct remex_error e;
    int sv[2];
    char num[16];
    json_t *msg = NULL, *extra = json_pack("{s:s,s:s}", "reason", "SIGTERM", "type", "ignored");
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    snprintf(num, sizeof(num), "%d", sv[1]);
    setenv(SUPERVISE_ENV, num, 1);
    int fd = supervise_fd(&e);
    assert_int_equal(fd, sv[1]);
    assert_null(getenv(SUPERVISE_ENV)); /* never passed on to task processes */
    assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    assert_int_equal(supervise_notify(fd, "worker", "draining", extra, &e), REMEX_OK);
    assert_int_equal(ipc_recv(sv[0], &msg, 2000, &e), REMEX_OK);
    assert_string_equal(json_string_value(json_object_get(msg, "type")), "draining");
    assert_string_equal(json_string_value(json_object_get(msg, "role")), "worker");
    assert_string_equal(json_string_value(json_object_get(msg, "reason")), "SIGTERM");
    assert_int_equal(json_integer_value(json_object_get(msg, "pid")), getpid());
    assert_non_null(json_object_get(msg, "version"));
    json_decref(msg);
    json_decref(extra);
    close(sv[0]);
    close(sv[1]);
}

static void test_invalid_values(void **state)
{
    (void)state;
    struct remex_error e;
    static const char *bad[] = {"", "abc", "2", "-1", "3x", "99999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv(SUPERVISE_ENV, bad[i], 1);
        assert_int_equal(supervise_fd(&e), -1);
        assert_non_null(strstr(e.msg, SUPERVISE_ENV));
        assert_null(getenv(SUPERVISE_ENV));
    }
    /* A pipe or a closed descriptor is not a supervisor socket. */
    int p[2];
    char num[16];
    assert_int_equal(pipe(p), 0);
    snprintf(num, sizeof(num), "%d", p[0]);
    setenv(SUPERVISE_ENV, num, 1);
    assert_int_equal(supervise_fd(&e), -1);
    assert_non_null(strstr(e.msg, "not a Unix stream socket"));
    close(p[0]);
    close(p[1]);
    setenv(SUPERVISE_ENV, num, 1);
    assert_int_equal(supervise_fd(&e), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unset_is_not_supervised),
        cmocka_unit_test(test_valid_socket_and_frames),
        cmocka_unit_test(test_invalid_values),
    };
    return cmocka_run_group_tests_name("supervise", tests, NULL, NULL);
}
