/* Unit tests: err (stable codes, message carrier) and log (levels, formats). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "remex/err.h"
#include "remex/log.h"

static void test_err_stable_values(void **state)
{
    (void)state;
    /* These numbers are ABI: a change here is a breaking change. */
    assert_int_equal(REMEX_OK, 0);
    assert_int_equal(REMEX_ENOMEM, 1);
    assert_int_equal(REMEX_EPARSE, 5);
    assert_int_equal(REMEX_ECONFIG, 19);
    for (int i = 0; i < REMEX_ERR__COUNT; i++) {
        assert_string_not_equal(remex_strerror((remex_err)i), "unknown error");
        assert_string_not_equal(remex_errname((remex_err)i), "REMEX_E?");
    }
    assert_string_equal(remex_strerror((remex_err)999), "unknown error");
    assert_string_equal(remex_strerror((remex_err)-1), "unknown error");
}

static void test_err_seterr_prefix(void **state)
{
    (void)state;
    struct remex_error e;
    remex_errclear(&e);
    errno = EAGAIN;
    assert_int_equal(remex_seterr(&e, REMEX_EPARSE, "line %d: bad", 3), REMEX_EPARSE);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(e.code, REMEX_EPARSE);
    remex_errprefix(&e, "%s", "agent.yaml");
    assert_string_equal(e.msg, "agent.yaml: line 3: bad");
    /* NULL carrier is allowed. */
    assert_int_equal(remex_seterr(NULL, REMEX_EIO, "x"), REMEX_EIO);
    remex_errprefix(NULL, "x");
}

static void test_err_truncates(void **state)
{
    (void)state;
    struct remex_error e;
    char big[2000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    remex_seterr(&e, REMEX_EINVAL, "%s", big);
    assert_int_equal(strlen(e.msg), REMEX_ERRMSG_MAX - 1);
}

static void test_err_errno(void **state)
{
    (void)state;
    struct remex_error e;
    char want[REMEX_ERRMSG_MAX], big[2000];

    remex_errclear(&e);
    errno = ENOENT;
    assert_int_equal(remex_errno(&e, REMEX_EIO, "open %s", "/x/y"), REMEX_EIO);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(e.code, REMEX_EIO);
    snprintf(want, sizeof(want), "open /x/y: %s", strerror(ENOENT));
    assert_string_equal(e.msg, want);

    /* errno at entry counts, even if formatting would touch it. */
    errno = EACCES;
    remex_errno(&e, REMEX_EPERM, "%s", "f");
    snprintf(want, sizeof(want), "f: %s", strerror(EACCES));
    assert_string_equal(e.msg, want);
    assert_int_equal(errno, EACCES);

    /* Unknown errno values still give a description. */
    errno = 99999;
    remex_errno(&e, REMEX_ESYS, "x");
    assert_true(strncmp(e.msg, "x: ", 3) == 0 && strlen(e.msg) > 3);

    /* Truncation covers the whole message; the buffer stays terminated. */
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    errno = EIO;
    remex_errno(&e, REMEX_EIO, "%s", big);
    assert_int_equal(strlen(e.msg), REMEX_ERRMSG_MAX - 1);
    big[REMEX_ERRMSG_MAX - 4] = '\0';
    remex_errno(&e, REMEX_EIO, "%s", big);
    assert_int_equal(strlen(e.msg), REMEX_ERRMSG_MAX - 1);
    assert_int_equal(memcmp(e.msg + REMEX_ERRMSG_MAX - 4, ": ", 2), 0);

    /* NULL carrier: only the code comes back, errno untouched. */
    errno = EINTR;
    assert_int_equal(remex_errno(NULL, REMEX_ESYS, "x"), REMEX_ESYS);
    assert_int_equal(errno, EINTR);
}

/* Captures log output through a pipe. */
static size_t capture(char *out, size_t cap, void (*emit)(void))
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    log_set_fd(p[1]);
    emit();
    log_set_fd(2);
    close(p[1]);
    ssize_t n = read(p[0], out, cap - 1);
    close(p[0]);
    assert_true(n >= 0);
    out[n] = '\0';
    return (size_t)n;
}

static int evaluated;
static int side_effect(void)
{
    evaluated++;
    return 1;
}

static void emit_levels(void)
{
    log_init("worker", LOG_LEVEL_WARN, LOG_FORMAT_TEXT);
    log_debug("debug %d", side_effect());
    log_info("info %d", side_effect());
    log_warn("warn %d", 2);
    log_error("error %s", "x");
}

static void test_log_level_filter_and_lazy_args(void **state)
{
    (void)state;
    char out[4096];
    evaluated = 0;
    capture(out, sizeof(out), emit_levels);
    assert_int_equal(evaluated, 0);
    assert_null(strstr(out, "info 1"));
    assert_non_null(strstr(out, " warn worker: warn 2\n"));
    assert_non_null(strstr(out, " error worker: error x\n"));
}

static void emit_json(void)
{
    log_init("plane", LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);
    log_info("quote \" backslash \\ newline\n ctl \x01 bad utf8 \xff\xfe ok \xc3\xa9");
}

static void test_log_json_valid(void **state)
{
    (void)state;
    char out[4096];
    capture(out, sizeof(out), emit_json);
    json_error_t err;
    json_t *o = json_loads(out, 0, &err);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(o, "role")), "plane");
    const char *msg = json_string_value(json_object_get(o, "msg"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, "quote \" backslash \\ newline\n"));
    assert_non_null(strstr(msg, "\xef\xbf\xbd")); /* U+FFFD for invalid bytes */
    assert_non_null(strstr(msg, "ok \xc3\xa9"));  /* valid UTF-8 kept */
    assert_non_null(json_string_value(json_object_get(o, "ts")));
    json_decref(o);
}

static void emit_text_newline(void)
{
    log_init("sentinel", LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    log_info("two\nlines");
}

static void test_log_text_one_line(void **state)
{
    (void)state;
    char out[4096];
    capture(out, sizeof(out), emit_text_newline);
    assert_non_null(strstr(out, "two lines\n"));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
}

static void emit_long(void)
{
    static char big[LOG_LINE_MAX * 3];
    memset(big, 'z', sizeof(big) - 1);
    log_init("w", LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    log_info("%s", big);
}

static void test_log_truncates_long(void **state)
{
    (void)state;
    static char out[LOG_LINE_MAX * 4];
    size_t n = capture(out, sizeof(out), emit_long);
    assert_true(n < LOG_LINE_MAX + 256);
    assert_int_equal(out[n - 1], '\n');
}

static void emit_errno(void)
{
    errno = ENOENT;
    log_error("keeps errno");
    assert_int_equal(errno, ENOENT);
}

static void test_log_preserves_errno(void **state)
{
    (void)state;
    char out[1024];
    capture(out, sizeof(out), emit_errno);
}

static void test_log_parse_names(void **state)
{
    (void)state;
    enum log_level l;
    enum log_format f;
    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, LOG_LEVEL_DEBUG);
    assert_int_equal(log_level_parse("WARNING", &l), 0);
    assert_int_equal(l, LOG_LEVEL_WARN);
    assert_int_equal(log_level_parse("loud", &l), -1);
    assert_int_equal(log_format_parse("json", &f), 0);
    assert_int_equal(f, LOG_FORMAT_JSON);
    assert_int_equal(log_format_parse("xml", &f), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_stable_values),
        cmocka_unit_test(test_err_seterr_prefix),
        cmocka_unit_test(test_err_truncates),
        cmocka_unit_test(test_err_errno),
        cmocka_unit_test(test_log_level_filter_and_lazy_args),
        cmocka_unit_test(test_log_json_valid),
        cmocka_unit_test(test_log_text_one_line),
        cmocka_unit_test(test_log_truncates_long),
        cmocka_unit_test(test_log_preserves_errno),
        cmocka_unit_test(test_log_parse_names),
    };
    return cmocka_run_group_tests_name("err_log", tests, NULL, NULL);
}
