/* Unit tests: ipc (frame decoder, connections, blocking calls, fd passing, peers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/evloop.h"
#include "remex/ipc.h"

#define MAX_SPINS 10000

/* Appends a raw frame: the given length header, then n payload bytes. */
static void raw_frame(struct buf *b, uint32_t hdr_len, const char *payload, size_t n)
{
    unsigned char h[4] = {(unsigned char)(hdr_len >> 24), (unsigned char)(hdr_len >> 16),
                          (unsigned char)(hdr_len >> 8), (unsigned char)hdr_len};
    assert_int_equal(buf_append(b, h, 4), REMEX_OK);
    assert_int_equal(buf_append(b, payload, n), REMEX_OK);
}

static void frame_str(struct buf *b, const char *payload)
{
    raw_frame(b, (uint32_t)strlen(payload), payload, strlen(payload));
}

static int open_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Decodes a whole stream fed in one call; returns the error of the first failing pop. */
static remex_err decode_all(const void *p, size_t n, size_t max_frame, int *frames,
                            struct remex_error *e)
{
    struct ipc_decoder d;
    json_t *m;
    remex_err rc;
    ipc_decoder_init(&d, max_frame);
    rc = ipc_decoder_feed(&d, p, n, e);
    *frames = 0;
    while (rc == REMEX_OK) {
        rc = ipc_decoder_pop(&d, &m, e);
        if (rc == REMEX_OK) {
            (*frames)++;
            json_decref(m);
        }
    }
    ipc_decoder_free(&d);
    return rc;
}

static void make_pair(struct ipc_conn **a, struct ipc_conn **b, size_t max_frame, size_t max_q)
{
    int sv[2];
    assert_int_equal(ipc_socketpair(sv, NULL), REMEX_OK);
    *a = ipc_conn_new(sv[0], max_frame, max_q, NULL);
    *b = ipc_conn_new(sv[1], max_frame, max_q, NULL);
    assert_non_null(*a);
    assert_non_null(*b);
}

/* Reads from c until a frame pops (bounded); returns the pop result. */
static remex_err pop_one(struct ipc_conn *c, json_t **m, int *fds, size_t *nfds,
                         struct remex_error *e)
{
    for (int i = 0; i < MAX_SPINS; i++) {
        remex_err rc = ipc_conn_pop(c, m, fds, nfds, e);
        if (rc != REMEX_EAGAIN)
            return rc;
        rc = ipc_conn_read(c, e);
        if (rc == REMEX_EAGAIN)
            usleep(1000);
        else if (rc != REMEX_OK)
            return rc;
    }
    return REMEX_ETIMEOUT;
}

static void test_encode_decode(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(1 << 20);
    struct ipc_decoder d;
    json_t *in = json_pack("{s:s, s:i, s:[i,i]}", "op", "xcom.push", "try", 2, "v", 1, 2);
    json_t *out = NULL, *arr = json_array();
    struct remex_error e;

    assert_int_equal(ipc_encode(in, 0, &b, &e), REMEX_OK);
    assert_true(b.len > 4);
    assert_int_equal(((unsigned char)b.data[0] << 24 | (unsigned char)b.data[1] << 16 |
                      (unsigned char)b.data[2] << 8 | (unsigned char)b.data[3]),
                     b.len - 4);
    ipc_decoder_init(&d, 0);
    assert_int_equal(d.max_frame, IPC_FRAME_MAX_DEFAULT);
    assert_int_equal(ipc_decoder_feed(&d, b.data, b.len, &e), REMEX_OK);
    assert_int_equal(ipc_decoder_pop(&d, &out, &e), REMEX_OK);
    assert_true(json_equal(in, out));
    json_decref(out);
    assert_int_equal(ipc_decoder_pending(&d), 0);
    assert_int_equal(ipc_decoder_pop(&d, &out, &e), REMEX_EAGAIN);
    assert_null(out);
    /* Encoding refuses non-objects and payloads over the cap, leaving out unchanged. */
    buf_reset(&b);
    assert_int_equal(ipc_encode(arr, 0, &b, &e), REMEX_EINVAL);
    assert_int_equal(ipc_encode(in, 10, &b, &e), REMEX_ETOOBIG);
    assert_int_equal(b.len, 0);
    ipc_decoder_free(&d);
    json_decref(in);
    json_decref(arr);
    buf_free(&b);
}

static void test_roundtrip_socketpair(void **state)
{
    (void)state;
    struct ipc_conn *a, *b;
    json_t *m = json_pack("{s:s, s:s}", "op", "ready", "role", "worker"), *got = NULL;
    struct remex_error e;
    size_t nfds = 99;
    int fds[IPC_MAX_FDS];

    make_pair(&a, &b, 0, 0);
    assert_int_equal(ipc_conn_events(a), EVLOOP_READ);
    assert_int_equal(ipc_conn_send(a, m, NULL, 0, &e), REMEX_OK);
    assert_true(ipc_conn_queued(a) > 0);
    assert_int_equal(ipc_conn_events(a), EVLOOP_READ | EVLOOP_WRITE);
    assert_int_equal(ipc_conn_flush(a, &e), REMEX_OK);
    assert_int_equal(ipc_conn_queued(a), 0);
    assert_int_equal(pop_one(b, &got, fds, &nfds, &e), REMEX_OK);
    assert_int_equal(nfds, 0);
    assert_true(json_equal(m, got));
    json_decref(got);
    /* And back, through the blocking calls on the other end. */
    assert_int_equal(ipc_send(ipc_conn_fd(b), m, &e), REMEX_OK);
    assert_int_equal(pop_one(a, &got, NULL, NULL, &e), REMEX_OK);
    assert_true(json_equal(m, got));
    json_decref(got);
    assert_int_equal(ipc_conn_read(a, &e), REMEX_EAGAIN);
    ipc_conn_free(a);
    ipc_conn_free(b);
    ipc_conn_free(NULL);
    json_decref(m);
}

static void test_many_frames_one_read(void **state)
{
    (void)state;
    enum { N = 300 };
    struct buf b = BUF_INIT(1 << 20);
    struct ipc_conn *c;
    struct remex_error e;
    int sv[2], n = 0;
    json_t *m;

    for (int i = 0; i < N; i++) {
        json_t *j = json_pack("{s:i}", "i", i);
        assert_int_equal(ipc_encode(j, 0, &b, &e), REMEX_OK);
        json_decref(j);
    }
    assert_true(b.len < IPC_READ_CHUNK);
    assert_int_equal(ipc_socketpair(sv, &e), REMEX_OK);
    assert_int_equal(write(sv[1], b.data, b.len), (ssize_t)b.len);
    c = ipc_conn_new(sv[0], 0, 0, &e);
    assert_int_equal(ipc_conn_read(c, &e), REMEX_OK);
    while (ipc_conn_pop(c, &m, NULL, NULL, &e) == REMEX_OK) {
        assert_int_equal(json_integer_value(json_object_get(m, "i")), n);
        n++;
        json_decref(m);
    }
    assert_int_equal(n, N);
    close(sv[1]);
    assert_int_equal(ipc_conn_read(c, &e), REMEX_ECLOSED);
    assert_non_null(strstr(e.msg, "closed the connection"));
    ipc_conn_free(c);
    buf_free(&b);
}

static void test_split_every_offset(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(4096);
    struct remex_error e;
    json_t *m;

    frame_str(&b, "{\"a\":1}");
    frame_str(&b, "{\"b\":\"\xc3\xa9t\xc3\xa9\"}");
    frame_str(&b, "{\"c\":[1,2,{\"d\":null}]}");
    for (size_t k = 0; k <= b.len; k++) {
        struct ipc_decoder d;
        int n = 0;
        ipc_decoder_init(&d, 0);
        assert_int_equal(ipc_decoder_feed(&d, b.data, k, &e), REMEX_OK);
        while (ipc_decoder_pop(&d, &m, &e) == REMEX_OK) {
            n++;
            json_decref(m);
        }
        assert_int_equal(ipc_decoder_feed(&d, b.data + k, b.len - k, &e), REMEX_OK);
        while (ipc_decoder_pop(&d, &m, &e) == REMEX_OK) {
            n++;
            json_decref(m);
        }
        assert_int_equal(n, 3);
        assert_int_equal(ipc_decoder_pending(&d), 0);
        assert_int_equal(d.consumed, b.len);
        ipc_decoder_free(&d);
    }
    /* One byte at a time: a frame pops exactly when its last byte arrives. */
    {
        struct ipc_decoder d;
        size_t ends[3] = {4 + 7, 0, b.len}, popped = 0;
        ends[1] = ends[0] + 4 + strlen("{\"b\":\"\xc3\xa9t\xc3\xa9\"}");
        ipc_decoder_init(&d, 0);
        for (size_t i = 0; i < b.len; i++) {
            assert_int_equal(ipc_decoder_feed(&d, b.data + i, 1, &e), REMEX_OK);
            if (ipc_decoder_pop(&d, &m, &e) == REMEX_OK) {
                assert_true(popped < 3);
                assert_int_equal(i + 1, ends[popped]);
                popped++;
                json_decref(m);
            }
        }
        assert_int_equal(popped, 3);
        ipc_decoder_free(&d);
    }
    buf_free(&b);
}

static void test_oversized_length(void **state)
{
    (void)state;
    struct ipc_decoder d;
    struct remex_error e;
    unsigned char hdr[4] = {0, 0, 0x10, 0x01}; /* 4097 */
    unsigned char huge[4] = {0xff, 0xff, 0xff, 0xff};
    json_t *m;
    int n;

    ipc_decoder_init(&d, 4096);
    /* Reported as soon as the header is in, without waiting for 4 KiB of body. */
    assert_int_equal(ipc_decoder_feed(&d, hdr, 4, &e), REMEX_OK);
    assert_int_equal(ipc_decoder_pop(&d, &m, &e), REMEX_EPROTO);
    assert_non_null(strstr(e.msg, "4097"));
    assert_null(m);
    /* Poisoned: everything after fails the same way. */
    assert_int_equal(ipc_decoder_feed(&d, "x", 1, &e), REMEX_EPROTO);
    assert_int_equal(ipc_decoder_pop(&d, &m, &e), REMEX_EPROTO);
    ipc_decoder_free(&d);
    assert_int_equal(decode_all(huge, 4, 0, &n, &e), REMEX_EPROTO);
    assert_int_equal(n, 0);
}

static void test_zero_length(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(64);
    struct remex_error e;
    int n;
    frame_str(&b, "{}");
    raw_frame(&b, 0, "", 0);
    frame_str(&b, "{}");
    assert_int_equal(decode_all(b.data, b.len, 0, &n, &e), REMEX_EPROTO);
    assert_int_equal(n, 1);
    assert_non_null(strstr(e.msg, "zero-length"));
    buf_free(&b);
}

static void test_invalid_json(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{",           "{\"a\":}", "{\"a\":1}x",          "{'a':1}", "{\"a\":1,\"a\":2}",
        "{\"a\":NaN}", "nul",      "{\"a\":\"\\u0000\"}",
    };
    struct remex_error e;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf b = BUF_INIT(256);
        int n;
        frame_str(&b, bad[i]);
        assert_int_equal(decode_all(b.data, b.len, 0, &n, &e), REMEX_EPARSE);
        assert_int_equal(n, 0);
        assert_non_null(strstr(e.msg, "invalid JSON"));
        buf_free(&b);
    }
}

/* Frames carry task secrets: a parse error names the position, never the payload. */
static void test_invalid_json_hides_payload(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"env\":{\"DB_PASSWORD\":\"hunter2",
        "{\"env\":{\"DB_PASSWORD\":\"hunter2\x01\"}}",
        "{\"token\":hunter2}",
    };
    struct remex_error e;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf b = BUF_INIT(256);
        int n;
        frame_str(&b, bad[i]);
        assert_int_equal(decode_all(b.data, b.len, 0, &n, &e), REMEX_EPARSE);
        assert_non_null(strstr(e.msg, "invalid JSON payload at byte"));
        assert_null(strstr(e.msg, "hunter2"));
        buf_free(&b);
    }
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"a\":\"\xff\"}",
        "{\"a\":\"\xc3\"}",
        "{\"\xed\xa0\x80\":1}",
        "{\"a\":\"\xc0\xaf\"}",
    };
    struct remex_error e;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf b = BUF_INIT(256);
        int n;
        frame_str(&b, bad[i]);
        assert_int_equal(decode_all(b.data, b.len, 0, &n, &e), REMEX_EPARSE);
        buf_free(&b);
    }
}

static void test_non_object(void **state)
{
    (void)state;
    static const char *const bad[] = {"[]", "[1,2]", "\"s\"", "1", "true", "null"};
    struct remex_error e;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf b = BUF_INIT(256);
        int n;
        frame_str(&b, bad[i]);
        assert_int_equal(decode_all(b.data, b.len, 0, &n, &e), REMEX_EPARSE);
        assert_non_null(strstr(e.msg, "not a JSON object"));
        buf_free(&b);
    }
}

static void test_depth_bomb(void **state)
{
    (void)state;
    enum { DEPTH = 200000 };
    struct buf payload = BUF_INIT(4 * DEPTH + 16), b = BUF_INIT(4 * DEPTH + 32);
    struct remex_error e;
    int n;
    /* {"a":{"a":{"a": ... and [[[[ ...: both must fail cleanly, not overflow the stack. */
    for (int i = 0; i < DEPTH / 4; i++)
        buf_puts(&payload, "{\"a\":");
    frame_str(&b, buf_cstr(&payload));
    assert_int_equal(decode_all(b.data, b.len, 0, &n, &e), REMEX_EPARSE);
    buf_reset(&payload);
    buf_reset(&b);
    buf_putc(&payload, '{');
    buf_puts(&payload, "\"x\":");
    for (int i = 0; i < DEPTH; i++)
        buf_putc(&payload, '[');
    for (int i = 0; i < DEPTH; i++)
        buf_putc(&payload, ']');
    buf_putc(&payload, '}');
    frame_str(&b, buf_cstr(&payload));
    assert_int_equal(decode_all(b.data, b.len, 0, &n, &e), REMEX_EPARSE);
    buf_free(&payload);
    buf_free(&b);
}

static void test_eof_mid_frame(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(256);
    struct remex_error e;
    struct ipc_conn *c;
    json_t *m;
    int sv[2];

    frame_str(&b, "{\"whole\":true}");
    frame_str(&b, "{\"cut\":true}");
    assert_int_equal(ipc_socketpair(sv, &e), REMEX_OK);
    assert_int_equal(write(sv[1], b.data, b.len - 3), (ssize_t)(b.len - 3));
    close(sv[1]);
    c = ipc_conn_new(sv[0], 0, 0, &e);
    assert_int_equal(ipc_conn_read(c, &e), REMEX_OK);
    assert_int_equal(ipc_conn_pop(c, &m, NULL, NULL, &e), REMEX_OK);
    json_decref(m);
    assert_int_equal(ipc_conn_pop(c, &m, NULL, NULL, &e), REMEX_EAGAIN);
    assert_int_equal(ipc_conn_read(c, &e), REMEX_ECLOSED);
    assert_non_null(strstr(e.msg, "mid-frame"));
    ipc_conn_free(c);

    /* The blocking receiver says the same. */
    assert_int_equal(ipc_socketpair(sv, &e), REMEX_OK);
    assert_int_equal(write(sv[1], b.data, 6), 6);
    close(sv[1]);
    assert_int_equal(ipc_recv(sv[0], &m, 1000, &e), REMEX_ECLOSED);
    assert_non_null(strstr(e.msg, "mid-frame"));
    assert_null(m);
    close(sv[0]);
    buf_free(&b);
}

static void test_outgoing_queue_cap(void **state)
{
    (void)state;
    struct ipc_conn *a, *b;
    struct remex_error e;
    json_t *m = json_pack("{s:s}", "pad", "0123456789012345678901234567890123456789");
    size_t before;
    int sent = 0;

    make_pair(&a, &b, 0, 1024);
    while (ipc_conn_send(a, m, NULL, 0, &e) == REMEX_OK)
        sent++;
    assert_int_equal(e.code, REMEX_ETOOBIG);
    assert_true(sent > 10 && sent < 30);
    before = ipc_conn_queued(a);
    assert_true(before <= 1024);
    assert_int_equal(ipc_conn_send(a, m, NULL, 0, &e), REMEX_ETOOBIG);
    assert_int_equal(ipc_conn_queued(a), before);
    /* Flushing makes room again. */
    assert_int_equal(ipc_conn_flush(a, &e), REMEX_OK);
    assert_int_equal(ipc_conn_send(a, m, NULL, 0, &e), REMEX_OK);
    ipc_conn_free(a);
    ipc_conn_free(b);
    json_decref(m);
}

static void test_fd_passing_conn(void **state)
{
    (void)state;
    struct ipc_conn *a, *b;
    struct remex_error e;
    json_t *plain = json_pack("{s:s}", "op", "plain");
    json_t *with = json_pack("{s:s}", "op", "log-pipe");
    json_t *m;
    int p[2], fds[IPC_MAX_FDS], baseline = open_fd_count();
    size_t nfds;
    char rd[16] = {0};

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    make_pair(&a, &b, 0, 0);
    /* plain, with-fd, plain in one flush: the fd lands on the middle frame. */
    assert_int_equal(ipc_conn_send(a, plain, NULL, 0, &e), REMEX_OK);
    assert_int_equal(ipc_conn_send(a, with, &p[1], 1, &e), REMEX_OK);
    assert_int_equal(ipc_conn_send(a, plain, NULL, 0, &e), REMEX_OK);
    close(p[1]); /* the connection holds its own duplicate until sent */
    assert_int_equal(ipc_conn_flush(a, &e), REMEX_OK);
    assert_int_equal(pop_one(b, &m, fds, &nfds, &e), REMEX_OK);
    assert_int_equal(nfds, 0);
    assert_string_equal(json_string_value(json_object_get(m, "op")), "plain");
    json_decref(m);
    assert_int_equal(pop_one(b, &m, fds, &nfds, &e), REMEX_OK);
    assert_string_equal(json_string_value(json_object_get(m, "op")), "log-pipe");
    json_decref(m);
    assert_int_equal(nfds, 1);
    assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
    assert_int_equal(write(fds[0], "through", 7), 7);
    close(fds[0]);
    assert_int_equal(read(p[0], rd, sizeof(rd) - 1), 7);
    assert_string_equal(rd, "through");
    assert_int_equal(pop_one(b, &m, fds, &nfds, &e), REMEX_OK);
    assert_int_equal(nfds, 0);
    json_decref(m);
    /* Invalid fds are refused before anything is queued. */
    {
        int badfd = -1, nine[IPC_MAX_FDS + 1];
        assert_int_equal(ipc_conn_send(a, with, &badfd, 1, &e), REMEX_EINVAL);
        assert_int_equal(ipc_conn_send(a, with, nine, IPC_MAX_FDS + 1, &e), REMEX_EINVAL);
        assert_int_equal(ipc_conn_queued(a), 0);
    }
    close(p[0]);
    ipc_conn_free(a);
    ipc_conn_free(b);
    assert_int_equal(open_fd_count(), baseline);
    json_decref(plain);
    json_decref(with);
}

static void test_fd_passing_blocking(void **state)
{
    (void)state;
    struct remex_error e;
    json_t *m = json_pack("{s:s}", "op", "fds"), *got;
    int sv[2], p[2], q[2], fds[4];
    size_t nfds;
    int baseline = open_fd_count();
    char rd[8] = {0};

    assert_int_equal(ipc_socketpair(sv, &e), REMEX_OK);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(pipe2(q, O_CLOEXEC), 0);
    {
        int two[2] = {p[1], q[1]};
        assert_int_equal(ipc_send_fds(sv[0], m, two, 2, &e), REMEX_OK);
    }
    assert_int_equal(ipc_recv_fds(sv[1], &got, fds, 4, &nfds, 1000, &e), REMEX_OK);
    assert_int_equal(nfds, 2);
    assert_true(json_equal(m, got));
    json_decref(got);
    assert_int_equal(write(fds[1], "q", 1), 1);
    assert_int_equal(read(q[0], rd, 1), 1);
    assert_int_equal(rd[0], 'q');
    close(fds[0]);
    close(fds[1]);
    /* A receiver that expects no fds refuses them, and closes them. */
    assert_int_equal(ipc_send_fds(sv[0], m, &p[1], 1, &e), REMEX_OK);
    assert_int_equal(ipc_recv(sv[1], &got, 1000, &e), REMEX_EPROTO);
    assert_null(got);
    close(sv[0]);
    close(sv[1]);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
    assert_int_equal(open_fd_count(), baseline);
    json_decref(m);
}

static void test_unexpected_fds_conn(void **state)
{
    (void)state;
    struct ipc_conn *a, *b;
    struct remex_error e;
    json_t *m = json_pack("{}"), *got;
    int p[2], baseline;

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    make_pair(&a, &b, 0, 0);
    baseline = open_fd_count();
    assert_int_equal(ipc_conn_send(a, m, &p[0], 1, &e), REMEX_OK);
    assert_int_equal(ipc_conn_flush(a, &e), REMEX_OK);
    assert_int_equal(pop_one(b, &got, NULL, NULL, &e), REMEX_EPROTO);
    assert_null(got);
    assert_int_equal(open_fd_count(), baseline);
    ipc_conn_free(a);
    ipc_conn_free(b);
    close(p[0]);
    close(p[1]);
    json_decref(m);
}

static void test_peer_credentials(void **state)
{
    (void)state;
    struct remex_error e;
    int sv[2];
    pid_t pid;
    uid_t uid;
    gid_t gid;

    assert_int_equal(ipc_socketpair(sv, &e), REMEX_OK);
    assert_int_equal(ipc_peer_cred(sv[0], &pid, &uid, &gid, &e), REMEX_OK);
    assert_int_equal(uid, getuid());
    assert_int_equal(gid, getgid());
    assert_int_equal(pid, getpid());
    assert_int_equal(ipc_peer_check(sv[0], getuid(), 0, &e), REMEX_OK);
    assert_int_equal(ipc_peer_check(sv[0], getuid(), getpid(), &e), REMEX_OK);
    assert_int_equal(ipc_peer_check(sv[0], getuid() + 1, 0, &e), REMEX_EPERM);
    assert_non_null(strstr(e.msg, "uid"));
    assert_int_equal(ipc_peer_check(sv[0], getuid(), getpid() + 100000, &e), REMEX_EPERM);
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(ipc_peer_cred(sv[0], NULL, NULL, NULL, &e), REMEX_ESYS);
}

static void test_partial_writes(void **state)
{
    (void)state;
    enum { N = 40, SZ = 100000 };
    struct ipc_conn *a, *b;
    struct remex_error e;
    char *big = malloc(SZ + 1);
    json_t *m, *got;
    int sndbuf = 4096, popped = 0, partial = 0;
    remex_err rc;

    memset(big, 'x', SZ);
    big[SZ] = '\0';
    make_pair(&a, &b, 0, 16u << 20);
    setsockopt(ipc_conn_fd(a), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    for (int i = 0; i < N; i++) {
        m = json_pack("{s:i, s:s}", "i", i, "data", big);
        assert_int_equal(ipc_conn_send(a, m, NULL, 0, &e), REMEX_OK);
        json_decref(m);
    }
    /* The socket buffer fills: the flush stops with bytes left. */
    rc = ipc_conn_flush(a, &e);
    assert_int_equal(rc, REMEX_EAGAIN);
    assert_true(ipc_conn_queued(a) > 0);
    for (int spin = 0; spin < MAX_SPINS && popped < N; spin++) {
        rc = ipc_conn_flush(a, &e);
        assert_true(rc == REMEX_OK || rc == REMEX_EAGAIN);
        partial += rc == REMEX_EAGAIN;
        rc = ipc_conn_read(b, &e);
        assert_true(rc == REMEX_OK || rc == REMEX_EAGAIN);
        while (ipc_conn_pop(b, &got, NULL, NULL, &e) == REMEX_OK) {
            assert_int_equal(json_integer_value(json_object_get(got, "i")), popped);
            assert_int_equal(strlen(json_string_value(json_object_get(got, "data"))), SZ);
            popped++;
            json_decref(got);
        }
    }
    assert_int_equal(popped, N);
    assert_true(partial > 0);
    assert_int_equal(ipc_conn_queued(a), 0);
    /* Writing to a closed peer is ECLOSED, not SIGPIPE. */
    ipc_conn_free(b);
    m = json_pack("{}");
    assert_int_equal(ipc_conn_send(a, m, NULL, 0, &e), REMEX_OK);
    assert_int_equal(ipc_conn_flush(a, &e), REMEX_ECLOSED);
    json_decref(m);
    ipc_conn_free(a);
    free(big);
}

static void test_listen_connect_path(void **state)
{
    (void)state;
    char dir[] = "/tmp/remex-ipc-XXXXXX", path[256], file[256];
    struct remex_error e;
    struct stat st;
    int lfd, lfd2, cfd, sfd;
    json_t *m = json_pack("{s:s}", "op", "hello"), *got;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/agent.sock", dir);
    snprintf(file, sizeof(file), "%s/plain", dir);
    assert_int_equal(ipc_listen(path, 16, &lfd, &e), REMEX_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ipc_accept(lfd, &sfd, &e), REMEX_EAGAIN);
    assert_int_equal(ipc_connect(path, &cfd, &e), REMEX_OK);
    assert_int_equal(ipc_accept(lfd, &sfd, &e), REMEX_OK);
    assert_int_equal(ipc_peer_check(sfd, getuid(), getpid(), &e), REMEX_OK);
    assert_int_equal(ipc_send(cfd, m, &e), REMEX_OK);
    assert_int_equal(ipc_recv(sfd, &got, 1000, &e), REMEX_OK);
    assert_true(json_equal(m, got));
    json_decref(got);
    /* Nothing more: a bounded wait times out. */
    assert_int_equal(ipc_recv(sfd, &got, 50, &e), REMEX_ETIMEOUT);
    close(cfd);
    close(sfd);
    /* A live socket is not stolen (the probe shows up as a connection closed at once). */
    assert_int_equal(ipc_listen(path, 16, &lfd2, &e), REMEX_EEXIST);
    assert_int_equal(ipc_accept(lfd, &sfd, &e), REMEX_OK);
    assert_int_equal(ipc_recv(sfd, &got, 1000, &e), REMEX_ECLOSED);
    close(sfd);
    close(lfd);
    /* The stale socket file left behind is replaced. */
    assert_int_equal(ipc_listen(path, 16, &lfd, &e), REMEX_OK);
    close(lfd);
    /* A regular file is never removed. */
    close(open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    assert_int_equal(ipc_listen(file, 16, &lfd, &e), REMEX_EEXIST);
    assert_int_equal(ipc_connect(file, &cfd, &e) != REMEX_OK, 1);
    {
        char longp[200];
        memset(longp, 'a', sizeof(longp) - 1);
        longp[sizeof(longp) - 1] = '\0';
        assert_int_equal(ipc_listen(longp, 16, &lfd, &e), REMEX_ETOOBIG);
    }
    unlink(path);
    unlink(file);
    rmdir(dir);
    json_decref(m);
}

struct loop_ctx {
    struct ipc_conn *c;
    int got;
};

static void conn_cb(struct evloop *loop, int fd, unsigned events, void *arg)
{
    struct loop_ctx *x = arg;
    json_t *m;
    (void)fd;
    (void)events;
    if (ipc_conn_read(x->c, NULL) == REMEX_ECLOSED) {
        evloop_stop(loop);
        return;
    }
    while (ipc_conn_pop(x->c, &m, NULL, NULL, NULL) == REMEX_OK) {
        x->got++;
        json_decref(m);
    }
}

static void test_evloop_integration(void **state)
{
    (void)state;
    struct evloop *loop = evloop_new(NULL);
    struct loop_ctx x = {NULL, 0};
    json_t *m = json_pack("{s:s}", "op", "heartbeat");
    int sv[2];

    assert_int_equal(ipc_socketpair(sv, NULL), REMEX_OK);
    x.c = ipc_conn_new(sv[0], 0, 0, NULL);
    assert_int_equal(evloop_watch(loop, ipc_conn_fd(x.c), ipc_conn_events(x.c), conn_cb, &x, NULL),
                     REMEX_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ipc_send(sv[1], m, NULL), REMEX_OK);
    close(sv[1]);
    assert_int_equal(evloop_run(loop, NULL), REMEX_OK);
    assert_int_equal(x.got, 5);
    evloop_unwatch(loop, ipc_conn_fd(x.c));
    ipc_conn_free(x.c);
    evloop_free(loop);
    json_decref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_decode),
        cmocka_unit_test(test_roundtrip_socketpair),
        cmocka_unit_test(test_many_frames_one_read),
        cmocka_unit_test(test_split_every_offset),
        cmocka_unit_test(test_oversized_length),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_invalid_json_hides_payload),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_non_object),
        cmocka_unit_test(test_depth_bomb),
        cmocka_unit_test(test_eof_mid_frame),
        cmocka_unit_test(test_outgoing_queue_cap),
        cmocka_unit_test(test_fd_passing_conn),
        cmocka_unit_test(test_fd_passing_blocking),
        cmocka_unit_test(test_unexpected_fds_conn),
        cmocka_unit_test(test_peer_credentials),
        cmocka_unit_test(test_partial_writes),
        cmocka_unit_test(test_listen_connect_path),
        cmocka_unit_test(test_evloop_integration),
    };
    return cmocka_run_group_tests_name("ipc", tests, NULL, NULL);
}
