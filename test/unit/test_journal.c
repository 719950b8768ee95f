/* Unit tests: journal (durable spool of undelivered reports). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/journal.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/remex-journal-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/spool", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct journal *open_ok(size_t max, size_t *corrupt)
{
    struct journal *j = NULL;
    struct remex_error e;
    remex_err rc = journal_open(path, max, &j, corrupt, &e);
    if (rc != REMEX_OK)
        fail_msg("journal_open: %s", e.msg);
    return j;
}

static void append_n(struct journal *j, int from, int to)
{
    struct remex_error e;
    for (int i = from; i < to; i++) {
        json_t *r = json_pack("{s:i,s:s}", "ti_id", i, "state", "success");
        assert_int_equal(journal_append(j, r, NULL, &e), REMEX_OK);
        json_decref(r);
    }
}

static void test_append_reopen_replay(void **state)
{
    (void)state;
    struct journal *j = open_ok(0, NULL);
    struct stat st;
    uint64_t seq;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    append_n(j, 0, 5);
    assert_int_equal(journal_pending(j), 5);
    journal_close(j);

    size_t corrupt = 99;
    j = open_ok(0, &corrupt);
    assert_int_equal(corrupt, 0);
    assert_int_equal(journal_pending(j), 5);
    const json_t *r = journal_get(j, 3, &seq);
    assert_int_equal(seq, 4);
    assert_int_equal(json_integer_value(json_object_get(r, "ti_id")), 3);
    assert_null(journal_get(j, 5, NULL));
    journal_close(j);
}

static void test_ack_survives_reopen(void **state)
{
    (void)state;
    struct remex_error e;
    struct journal *j = open_ok(0, NULL);
    uint64_t seq;
    append_n(j, 0, 3);
    journal_get(j, 1, &seq);
    assert_int_equal(journal_ack(j, seq, &e), REMEX_OK);
    assert_int_equal(journal_ack(j, seq, &e), REMEX_ENOTFOUND);
    journal_close(j);
    j = open_ok(0, NULL);
    assert_int_equal(journal_pending(j), 2);
    journal_get(j, 1, &seq);
    assert_int_equal(seq, 3);
    /* Sequence numbers keep increasing after a reopen. */
    append_n(j, 10, 11);
    journal_get(j, 2, &seq);
    assert_int_equal(seq, 4);
    journal_close(j);
}

static void test_torn_tail_cut(void **state)
{
    (void)state;
    char file[160];
    struct journal *j = open_ok(0, NULL);
    append_n(j, 0, 2);
    size_t good = journal_size(j);
    journal_close(j);
    snprintf(file, sizeof(file), "%s/journal.log", path);
    int fd = open(file, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "1234abcd {\"seq\":3,\"re", 21), 21); /* crash mid-write */
    close(fd);
    j = open_ok(0, NULL);
    assert_int_equal(journal_pending(j), 2);
    assert_int_equal(journal_size(j), good);
    append_n(j, 5, 6);
    journal_close(j);
    j = open_ok(0, NULL);
    assert_int_equal(journal_pending(j), 3);
    journal_close(j);
}

static void test_corrupt_middle_skipped(void **state)
{
    (void)state;
    char file[160];
    struct journal *j = open_ok(0, NULL);
    append_n(j, 0, 3);
    journal_close(j);
    snprintf(file, sizeof(file), "%s/journal.log", path);
    int fd = open(file, O_RDWR);
    assert_true(fd >= 0);
    /* Flip a byte inside the first line's JSON: its CRC no longer matches. */
    assert_int_equal(pwrite(fd, "X", 1, 12), 1);
    close(fd);
    size_t corrupt = 0;
    j = open_ok(0, &corrupt);
    assert_int_equal(corrupt, 1);
    assert_int_equal(journal_pending(j), 2);
    journal_close(j);
}

static void test_cap_and_compaction(void **state)
{
    (void)state;
    struct remex_error e;
    struct journal *j = open_ok(4096, NULL);
    json_t *r =
        json_pack("{s:s}", "pad", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    int n = 0;
    while (journal_append(j, r, NULL, &e) == REMEX_OK)
        n++;
    assert_int_equal(e.code, REMEX_ETOOBIG);
    assert_true(n > 10 && n < 100);
    assert_int_equal(journal_pending(j), (size_t)n);
    /* Acking everything compacts the file, so appends work again. */
    uint64_t seq;
    while (journal_pending(j) > 0) {
        journal_get(j, 0, &seq);
        assert_int_equal(journal_ack(j, seq, &e), REMEX_OK);
    }
    assert_true(journal_size(j) < 4096);
    assert_int_equal(journal_append(j, r, &seq, &e), REMEX_OK);
    assert_int_equal(seq, (uint64_t)n + 1);
    journal_close(j);
    json_decref(r);
    j = open_ok(4096, NULL);
    assert_int_equal(journal_pending(j), 1);
    journal_close(j);
}

/* An ack that does not fit a full journal must still survive a reopen. */
static void test_ack_when_full_is_durable(void **state)
{
    (void)state;
    struct remex_error e;
    struct journal *j = open_ok(4096, NULL);
    json_t *r =
        json_pack("{s:s}", "pad", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    uint64_t seq;
    size_t n = 0;

    while (journal_append(j, r, NULL, &e) == REMEX_OK)
        n++;
    json_decref(r);
    /* Fill the tail with short records and ack until an ack line does not fit. */
    r = json_pack("{s:i}", "k", 1);
    for (int tries = 0;; tries++) {
        assert_true(tries < 50);
        while (journal_append(j, r, NULL, &e) == REMEX_OK)
            n++;
        size_t size = journal_size(j);
        journal_get(j, 0, &seq);
        assert_int_equal(journal_ack(j, seq, &e), REMEX_OK);
        n--;
        assert_int_equal(journal_pending(j), n);
        if (journal_size(j) <= size)
            break; /* the ack line was not appended */
    }
    json_decref(r);
    journal_close(j);
    j = open_ok(4096, NULL);
    assert_int_equal(journal_pending(j), n);
    journal_close(j);
}

/* O_APPEND flag of the descriptor open on the journal file, -1 if none is. */
static int journal_fd_appends(void)
{
    char link[64], target[256], info[64], line[128], want[160];
    int flags = -1;

    snprintf(want, sizeof(want), "%s/journal.log", path);

    for (int fd = 3; fd < 1024 && flags < 0; fd++) {
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n < 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, want) != 0)
            continue;
        snprintf(info, sizeof(info), "/proc/self/fdinfo/%d", fd);
        FILE *f = fopen(info, "r");
        assert_non_null(f);
        while (fgets(line, sizeof(line), f))
            if (strncmp(line, "flags:", 6) == 0)
                flags = (strtol(line + 6, NULL, 8) & O_APPEND) != 0;
        fclose(f);
    }
    return flags;
}

/* After compaction appends still go to the end of the file, whatever the offset. */
static void test_compaction_keeps_append_mode(void **state)
{
    (void)state;
    struct remex_error e;
    struct journal *j = open_ok(4096, NULL);
    json_t *r =
        json_pack("{s:s}", "pad", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    uint64_t seq;
    size_t before;

    assert_int_equal(journal_fd_appends(), 1);
    while (journal_append(j, r, NULL, &e) == REMEX_OK)
        ;
    before = journal_size(j);
    while (journal_size(j) >= before) {
        journal_get(j, 0, &seq);
        assert_int_equal(journal_ack(j, seq, &e), REMEX_OK);
    }
    json_decref(r);
    assert_int_equal(journal_fd_appends(), 1);
    journal_close(j);
}

static void test_rejects_non_object(void **state)
{
    (void)state;
    struct remex_error e;
    struct journal *j = open_ok(0, NULL);
    json_t *a = json_array();
    assert_int_equal(journal_append(j, a, NULL, &e), REMEX_EINVAL);
    json_decref(a);
    journal_close(j);
}

static void test_open_error_names_path(void **state)
{
    (void)state;
    struct journal *j = NULL;
    struct remex_error e;
    assert_int_not_equal(journal_open("/proc/nonexistent/spool", 0, &j, NULL, &e), REMEX_OK);
    assert_non_null(strstr(e.msg, "/proc/nonexistent/spool"));
    assert_null(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_reopen_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_when_full_is_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_keeps_append_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_middle_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_and_compaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejects_non_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_error_names_path, setup, teardown),
    };
    return cmocka_run_group_tests_name("journal", tests, NULL, NULL);
}
