/* ipc: length-prefixed JSON frames over Unix stream sockets, SCM_RIGHTS, SO_PEERCRED. */
#include "remex/ipc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "remex/evloop.h"

#define RX_BATCHES_MAX 8  /* fd-carrying reads waiting for their frame */
#define TX_ANCHORS_MAX 64 /* fd-carrying frames waiting to be written */

union cmsg_space {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * IPC_MAX_FDS)];
};

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        fds[i] = -1;
    }
}

static uint32_t be32_get(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void be32_put(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static size_t frame_max(size_t max_frame)
{
    if (max_frame == 0)
        return IPC_FRAME_MAX_DEFAULT;
    return max_frame > IPC_FRAME_MAX_LIMIT ? IPC_FRAME_MAX_LIMIT : max_frame;
}

/* Checks a header's length; REMEX_OK or REMEX_EPROTO. */
static remex_err check_len(uint32_t len, size_t max_frame, struct remex_error *e)
{
    if (len == 0)
        return remex_seterr(e, REMEX_EPROTO, "ipc: zero-length frame");
    if (len > max_frame)
        return remex_seterr(e, REMEX_EPROTO, "ipc: frame of %lu bytes exceeds the %zu byte limit",
                            (unsigned long)len, max_frame);
    return REMEX_OK;
}

/*
 * Parses one payload into an owned object; REMEX_EPARSE on anything else.
 * Payloads may hold secrets (task environments), so jansson's quote of the
 * input "near" the error is left out of the message.
 */
static remex_err parse_payload(const char *p, size_t len, json_t **msg, struct remex_error *e)
{
    json_error_t jerr;
    json_t *j = json_loadb(p, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);

    if (j == NULL) {
        char *near = strstr(jerr.text, " near ");
        if (near != NULL)
            *near = '\0';
        remex_seterr(e, REMEX_EPARSE, "ipc: invalid JSON payload at byte %d: %s", jerr.position,
                     jerr.text);
        explicit_bzero(&jerr, sizeof(jerr));
        return REMEX_EPARSE;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        return remex_seterr(e, REMEX_EPARSE, "ipc: payload top level is not a JSON object");
    }
    *msg = j;
    return REMEX_OK;
}

/* ---- decoder ---- */

void ipc_decoder_init(struct ipc_decoder *d, size_t max_frame)
{
    d->max_frame = frame_max(max_frame);
    buf_init(&d->in, d->max_frame + IPC_HDR_LEN + IPC_READ_CHUNK);
    d->pos = 0;
    d->consumed = 0;
    d->failed = REMEX_OK;
}

void ipc_decoder_free(struct ipc_decoder *d)
{
    buf_free(&d->in);
    d->pos = 0;
}

size_t ipc_decoder_pending(const struct ipc_decoder *d)
{
    return d->in.len - d->pos;
}

static void decoder_compact(struct ipc_decoder *d)
{
    if (d->pos > 0) {
        buf_consume(&d->in, d->pos);
        d->pos = 0;
    }
}

remex_err ipc_decoder_feed(struct ipc_decoder *d, const void *p, size_t n, struct remex_error *e)
{
    remex_err rc;

    if (d->failed != REMEX_OK)
        return remex_seterr(e, d->failed, "ipc: decoder already failed");
    decoder_compact(d);
    rc = buf_append(&d->in, p, n);
    if (rc == REMEX_ETOOBIG)
        return remex_seterr(e, rc, "ipc: %zu more bytes do not fit the input buffer", n);
    if (rc != REMEX_OK)
        return remex_seterr(e, rc, "ipc: out of memory");
    return REMEX_OK;
}

remex_err ipc_decoder_pop(struct ipc_decoder *d, json_t **msg, struct remex_error *e)
{
    const unsigned char *p = (const unsigned char *)d->in.data + d->pos;
    size_t avail = d->in.len - d->pos;
    uint32_t len;
    remex_err rc;

    *msg = NULL;
    if (d->failed != REMEX_OK)
        return remex_seterr(e, d->failed, "ipc: decoder already failed");
    if (avail < IPC_HDR_LEN)
        return REMEX_EAGAIN;
    len = be32_get(p);
    rc = check_len(len, d->max_frame, e);
    if (rc == REMEX_OK && avail - IPC_HDR_LEN < len)
        return REMEX_EAGAIN;
    if (rc == REMEX_OK)
        rc = parse_payload((const char *)p + IPC_HDR_LEN, len, msg, e);
    if (rc != REMEX_OK) {
        d->failed = rc;
        return rc;
    }
    d->pos += IPC_HDR_LEN + (size_t)len;
    d->consumed += IPC_HDR_LEN + (uint64_t)len;
    return REMEX_OK;
}

remex_err ipc_encode(const json_t *msg, size_t max_frame, struct buf *out, struct remex_error *e)
{
    unsigned char hdr[IPC_HDR_LEN];
    size_t len, max = frame_max(max_frame);
    char *s;
    remex_err rc;

    if (!json_is_object(msg))
        return remex_seterr(e, REMEX_EINVAL, "ipc: message is not a JSON object");
    s = json_dumps(msg, JSON_COMPACT);
    if (s == NULL)
        return remex_seterr(e, REMEX_EINVAL, "ipc: message cannot be serialised");
    len = strlen(s);
    if (len > max) {
        free(s);
        return remex_seterr(e, REMEX_ETOOBIG, "ipc: message of %zu bytes exceeds the %zu limit",
                            len, max);
    }
    be32_put(hdr, (uint32_t)len);
    rc = buf_reserve(out, IPC_HDR_LEN + len);
    if (rc == REMEX_OK) {
        buf_append(out, hdr, IPC_HDR_LEN);
        buf_append(out, s, len);
    }
    free(s);
    if (rc == REMEX_ETOOBIG)
        return remex_seterr(e, rc, "ipc: outgoing queue full");
    if (rc != REMEX_OK)
        return remex_seterr(e, rc, "ipc: out of memory");
    return REMEX_OK;
}

/* ---- ancillary data ---- */

/*
 * Moves the SCM_RIGHTS fds of mh into fds (room max), closing any beyond max.
 * Returns how many were stored; *over is set when some were dropped or the
 * control data was truncated.
 */
static size_t take_fds(struct msghdr *mh, int *fds, size_t max, int *over)
{
    size_t n = 0;

    *over = (mh->msg_flags & MSG_CTRUNC) != 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
        size_t cnt;
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        cnt = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < cnt; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (n < max) {
                fds[n++] = fd;
            } else {
                close(fd);
                *over = 1;
            }
        }
    }
    return n;
}

/* One sendmsg of len bytes with nfds fds; returns bytes sent or -1 (errno). */
static ssize_t send_chunk(int fd, const void *p, size_t len, const int *fds, size_t nfds)
{
    union cmsg_space cs;
    struct iovec iov = {(void *)(uintptr_t)p, len};
    struct msghdr mh;

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (nfds > 0) {
        struct cmsghdr *cm;
        memset(&cs, 0, sizeof(cs));
        mh.msg_control = cs.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }
    return sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* One recvmsg into p (room len) with fds; returns bytes or -1 (errno). */
static ssize_t recv_chunk(int fd, void *p, size_t len, int *fds, size_t maxfds, size_t *nfds,
                          int *over)
{
    union cmsg_space cs;
    struct iovec iov = {p, len};
    struct msghdr mh;
    ssize_t n;

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cs.buf;
    mh.msg_controllen = sizeof(cs.buf);
    do {
        n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    *nfds = 0;
    *over = 0;
    if (n >= 0)
        *nfds = take_fds(&mh, fds, maxfds, over);
    return n;
}

static int fds_valid(const int *fds, size_t nfds)
{
    if (nfds > IPC_MAX_FDS || (nfds > 0 && fds == NULL))
        return 0;
    for (size_t i = 0; i < nfds; i++)
        if (fds[i] < 0)
            return 0;
    return 1;
}

/* ---- connection ---- */

/* fds received by a read whose last byte is at stream offset end - 1. */
struct rx_batch {
    uint64_t end;
    size_t nfds;
    int fds[IPC_MAX_FDS];
};

/* fds to send with the frame at stream offsets [start, end) (our duplicates). */
struct tx_anchor {
    uint64_t start;
    uint64_t end;
    size_t nfds;
    int fds[IPC_MAX_FDS];
};

struct ipc_conn {
    int fd;
    struct ipc_decoder dec;
    struct rx_batch rx[RX_BATCHES_MAX];
    size_t nrx;

    struct buf out;    /* queued bytes; out.data[0] is at stream offset out_base */
    size_t out_off;    /* bytes of out already written */
    uint64_t out_base; /* stream offset of out.data[0] */
    struct tx_anchor tx[TX_ANCHORS_MAX];
    size_t ntx;
};

struct ipc_conn *ipc_conn_new(int fd, size_t max_frame, size_t max_queue, struct remex_error *e)
{
    struct ipc_conn *c;
    int fl;

    if (fd < 0) {
        remex_seterr(e, REMEX_EINVAL, "ipc: invalid fd %d", fd);
        return NULL;
    }
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        remex_errno(e, REMEX_ESYS, "ipc: fcntl fd %d", fd);
        close(fd);
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        remex_seterr(e, REMEX_ENOMEM, "ipc: out of memory");
        close(fd);
        return NULL;
    }
    c->fd = fd;
    ipc_decoder_init(&c->dec, max_frame);
    buf_init(&c->out, max_queue ? max_queue : IPC_QUEUE_MAX_DEFAULT);
    return c;
}

void ipc_conn_free(struct ipc_conn *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nrx; i++)
        close_fds(c->rx[i].fds, c->rx[i].nfds);
    for (size_t i = 0; i < c->ntx; i++)
        close_fds(c->tx[i].fds, c->tx[i].nfds);
    ipc_decoder_free(&c->dec);
    buf_free(&c->out);
    close(c->fd);
    free(c);
}

int ipc_conn_fd(const struct ipc_conn *c)
{
    return c->fd;
}

size_t ipc_conn_queued(const struct ipc_conn *c)
{
    return c->out.len - c->out_off;
}

unsigned ipc_conn_events(const struct ipc_conn *c)
{
    return EVLOOP_READ | (ipc_conn_queued(c) > 0 ? EVLOOP_WRITE : 0u);
}

/* Records fds that arrived with a read ending at stream offset end. */
static remex_err rx_record(struct ipc_conn *c, uint64_t end, int *fds, size_t nfds, int over,
                           struct remex_error *e)
{
    struct rx_batch *b;

    if (over || c->nrx == RX_BATCHES_MAX) {
        close_fds(fds, nfds);
        c->dec.failed = REMEX_EPROTO;
        return remex_seterr(e, REMEX_EPROTO, "ipc: peer passed too many file descriptors");
    }
    b = &c->rx[c->nrx++];
    b->end = end;
    b->nfds = nfds;
    memcpy(b->fds, fds, nfds * sizeof(int));
    return REMEX_OK;
}

remex_err ipc_conn_read(struct ipc_conn *c, struct remex_error *e)
{
    struct ipc_decoder *d = &c->dec;
    int fds[IPC_MAX_FDS];
    size_t room, nfds;
    ssize_t n;
    int over;

    if (d->failed != REMEX_OK)
        return remex_seterr(e, d->failed, "ipc: connection already failed");
    decoder_compact(d);
    room = d->in.max - d->in.len;
    if (room == 0)
        return remex_seterr(e, REMEX_ETOOBIG, "ipc: input buffer full, pop frames first");
    if (room > IPC_READ_CHUNK)
        room = IPC_READ_CHUNK;
    if (buf_reserve(&d->in, room) != REMEX_OK)
        return remex_seterr(e, REMEX_ENOMEM, "ipc: out of memory");
    n = recv_chunk(c->fd, d->in.data + d->in.len, room, fds, IPC_MAX_FDS, &nfds, &over);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return REMEX_EAGAIN;
        if (errno == ECONNRESET)
            return remex_seterr(e, REMEX_ECLOSED, "ipc: connection reset by peer");
        return remex_errno(e, REMEX_ESYS, "ipc: recvmsg");
    }
    d->in.len += (size_t)n;
    d->in.data[d->in.len] = '\0';
    if (nfds > 0 || over) {
        if (n == 0) {
            close_fds(fds, nfds);
        } else {
            remex_err rc = rx_record(c, d->consumed + d->in.len, fds, nfds, over, e);
            if (rc != REMEX_OK)
                return rc;
        }
    }
    if (n == 0) {
        if (ipc_decoder_pending(d) > 0)
            return remex_seterr(e, REMEX_ECLOSED, "ipc: peer closed mid-frame (%zu bytes pending)",
                                ipc_decoder_pending(d));
        return remex_seterr(e, REMEX_ECLOSED, "ipc: peer closed the connection");
    }
    return REMEX_OK;
}

remex_err ipc_conn_pop(struct ipc_conn *c, json_t **msg, int *fds, size_t *nfds,
                       struct remex_error *e)
{
    int got[RX_BATCHES_MAX * IPC_MAX_FDS];
    size_t ngot = 0, used = 0;
    remex_err rc;

    if (nfds)
        *nfds = 0;
    rc = ipc_decoder_pop(&c->dec, msg, e);
    if (rc != REMEX_OK)
        return rc;
    /* Every batch whose last byte lies in this frame belongs to it. */
    while (used < c->nrx && c->rx[used].end <= c->dec.consumed) {
        memcpy(got + ngot, c->rx[used].fds, c->rx[used].nfds * sizeof(int));
        ngot += c->rx[used].nfds;
        used++;
    }
    if (used > 0) {
        memmove(c->rx, c->rx + used, (c->nrx - used) * sizeof(c->rx[0]));
        c->nrx -= used;
    }
    if (ngot > 0 && (fds == NULL || ngot > IPC_MAX_FDS)) {
        close_fds(got, ngot);
        json_decref(*msg);
        *msg = NULL;
        c->dec.failed = REMEX_EPROTO;
        return remex_seterr(e, REMEX_EPROTO, "ipc: unexpected file descriptors with a frame");
    }
    if (ngot > 0) {
        memcpy(fds, got, ngot * sizeof(int));
        if (nfds)
            *nfds = ngot;
    }
    return REMEX_OK;
}

remex_err ipc_conn_send(struct ipc_conn *c, const json_t *msg, const int *fds, size_t nfds,
                        struct remex_error *e)
{
    struct tx_anchor *a = NULL;
    uint64_t start;
    remex_err rc;

    if (!fds_valid(fds, nfds))
        return remex_seterr(e, REMEX_EINVAL, "ipc: invalid file descriptors to pass");
    if (nfds > 0 && c->ntx == TX_ANCHORS_MAX)
        return remex_seterr(e, REMEX_ETOOBIG, "ipc: too many queued frames with fds");
    if (c->out_off > 0) {
        buf_consume(&c->out, c->out_off);
        c->out_base += c->out_off;
        c->out_off = 0;
    }
    start = c->out_base + c->out.len;
    if (nfds > 0) {
        a = &c->tx[c->ntx];
        for (size_t i = 0; i < nfds; i++)
            a->fds[i] = -1;
        for (size_t i = 0; i < nfds; i++) {
            a->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
            if (a->fds[i] < 0) {
                rc = remex_errno(e, errno == EBADF ? REMEX_EINVAL : REMEX_ESYS, "ipc: dup of fd %d",
                                 fds[i]);
                close_fds(a->fds, nfds);
                return rc;
            }
        }
    }
    rc = ipc_encode(msg, c->dec.max_frame, &c->out, e);
    if (rc != REMEX_OK) {
        if (a)
            close_fds(a->fds, nfds);
        return rc;
    }
    if (a) {
        a->start = start;
        a->end = c->out_base + c->out.len;
        a->nfds = nfds;
        c->ntx++;
    }
    return REMEX_OK;
}

remex_err ipc_conn_flush(struct ipc_conn *c, struct remex_error *e)
{
    while (c->out_off < c->out.len) {
        uint64_t pos = c->out_base + c->out_off;
        size_t len = c->out.len - c->out_off;
        struct tx_anchor *a = c->ntx > 0 ? &c->tx[0] : NULL;
        int with_fds = a != NULL && a->start == pos;
        ssize_t n;

        /* An fd-carrying write covers its own frame only; others stop before it. */
        if (with_fds)
            len = (size_t)(a->end - pos);
        else if (a != NULL)
            len = (size_t)(a->start - pos);
        n = send_chunk(c->fd, c->out.data + c->out_off, len, with_fds ? a->fds : NULL,
                       with_fds ? a->nfds : 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return REMEX_EAGAIN;
            if (errno == EPIPE || errno == ECONNRESET)
                return remex_seterr(e, REMEX_ECLOSED, "ipc: peer closed the connection");
            return remex_errno(e, REMEX_ESYS, "ipc: sendmsg");
        }
        if (with_fds && n > 0) {
            close_fds(a->fds, a->nfds);
            memmove(c->tx, c->tx + 1, (c->ntx - 1) * sizeof(c->tx[0]));
            c->ntx--;
        }
        c->out_off += (size_t)n;
    }
    c->out_base += c->out.len;
    c->out_off = 0;
    buf_reset(&c->out);
    return REMEX_OK;
}

/* ---- blocking calls ---- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits for events on fd until deadline (0: none). REMEX_OK, ETIMEOUT or ESYS. */
static remex_err wait_fd(int fd, short events, uint64_t deadline, struct remex_error *e)
{
    for (;;) {
        struct pollfd pfd = {fd, events, 0};
        int timeout = -1, n;
        if (deadline != 0) {
            uint64_t now = mono_ms();
            if (now >= deadline)
                return remex_seterr(e, REMEX_ETIMEOUT, "ipc: timed out");
            timeout = deadline - now > INT32_MAX ? INT32_MAX : (int)(deadline - now);
        }
        n = poll(&pfd, 1, timeout);
        if (n > 0)
            return REMEX_OK;
        if (n == 0)
            return remex_seterr(e, REMEX_ETIMEOUT, "ipc: timed out");
        if (errno != EINTR)
            return remex_errno(e, REMEX_ESYS, "ipc: poll");
    }
}

remex_err ipc_send_fds(int fd, const json_t *msg, const int *fds, size_t nfds,
                       struct remex_error *e)
{
    struct buf b = BUF_INIT(IPC_FRAME_MAX_DEFAULT + IPC_HDR_LEN);
    size_t off = 0;
    remex_err rc;

    if (!fds_valid(fds, nfds))
        return remex_seterr(e, REMEX_EINVAL, "ipc: invalid file descriptors to pass");
    rc = ipc_encode(msg, 0, &b, e);
    while (rc == REMEX_OK && off < b.len) {
        ssize_t n =
            send_chunk(fd, b.data + off, b.len - off, off == 0 ? fds : NULL, off == 0 ? nfds : 0);
        if (n >= 0)
            off += (size_t)n;
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            rc = wait_fd(fd, POLLOUT, 0, e);
        else if (errno == EPIPE || errno == ECONNRESET)
            rc = remex_seterr(e, REMEX_ECLOSED, "ipc: peer closed the connection");
        else if (errno != EINTR)
            rc = remex_errno(e, REMEX_ESYS, "ipc: sendmsg");
    }
    buf_free(&b);
    return rc;
}

remex_err ipc_send(int fd, const json_t *msg, struct remex_error *e)
{
    return ipc_send_fds(fd, msg, NULL, 0, e);
}

/* Reads exactly len bytes into p, collecting fds; bounded by deadline. */
static remex_err recv_exact(int fd, char *p, size_t len, int *fds, size_t maxfds, size_t *nfds,
                            uint64_t deadline, int at_start, struct remex_error *e)
{
    size_t off = 0;

    while (off < len) {
        int got[IPC_MAX_FDS], over;
        size_t ngot;
        remex_err rc = wait_fd(fd, POLLIN, deadline, e);
        ssize_t n;
        if (rc != REMEX_OK)
            return rc;
        n = recv_chunk(fd, p + off, len - off, got, IPC_MAX_FDS, &ngot, &over);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n < 0)
            return remex_errno(e, errno == ECONNRESET ? REMEX_ECLOSED : REMEX_ESYS, "ipc: recvmsg");
        if (over || *nfds + ngot > maxfds) {
            close_fds(got, ngot);
            return remex_seterr(e, REMEX_EPROTO, "ipc: peer passed too many file descriptors");
        }
        memcpy(fds + *nfds, got, ngot * sizeof(int));
        *nfds += ngot;
        if (n == 0)
            return remex_seterr(e, REMEX_ECLOSED, "ipc: peer closed %s",
                                at_start && off == 0 ? "the connection" : "mid-frame");
        off += (size_t)n;
    }
    return REMEX_OK;
}

remex_err ipc_recv_fds(int fd, json_t **msg, int *fds, size_t maxfds, size_t *nfds, int timeout_ms,
                       struct remex_error *e)
{
    unsigned char hdr[IPC_HDR_LEN];
    int got[IPC_MAX_FDS];
    size_t ngot = 0, cap = fds == NULL ? 0 : (maxfds > IPC_MAX_FDS ? IPC_MAX_FDS : maxfds);
    uint64_t deadline = timeout_ms < 0 ? 0 : mono_ms() + (uint64_t)timeout_ms + 1;
    char *payload = NULL;
    uint32_t len = 0;
    remex_err rc;

    *msg = NULL;
    if (nfds)
        *nfds = 0;
    rc = recv_exact(fd, (char *)hdr, IPC_HDR_LEN, got, cap, &ngot, deadline, 1, e);
    if (rc == REMEX_OK) {
        len = be32_get(hdr);
        rc = check_len(len, IPC_FRAME_MAX_DEFAULT, e);
    }
    if (rc == REMEX_OK) {
        payload = malloc(len);
        if (payload == NULL)
            rc = remex_seterr(e, REMEX_ENOMEM, "ipc: out of memory");
    }
    if (rc == REMEX_OK)
        rc = recv_exact(fd, payload, len, got, cap, &ngot, deadline, 0, e);
    if (rc == REMEX_OK)
        rc = parse_payload(payload, len, msg, e);
    free(payload);
    if (rc != REMEX_OK) {
        close_fds(got, ngot);
        return rc;
    }
    if (ngot > 0) {
        memcpy(fds, got, ngot * sizeof(int));
        if (nfds)
            *nfds = ngot;
    }
    return REMEX_OK;
}

remex_err ipc_recv(int fd, json_t **msg, int timeout_ms, struct remex_error *e)
{
    return ipc_recv_fds(fd, msg, NULL, 0, NULL, timeout_ms, e);
}

/* ---- sockets and peers ---- */

static remex_err make_addr(const char *path, struct sockaddr_un *sa, struct remex_error *e)
{
    size_t n = path ? strlen(path) : 0;
    if (n == 0)
        return remex_seterr(e, REMEX_EINVAL, "ipc: empty socket path");
    if (n >= sizeof(sa->sun_path))
        return remex_seterr(e, REMEX_ETOOBIG, "ipc: socket path too long (%zu bytes)", n);
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, n);
    return REMEX_OK;
}

/* Removes a socket file nobody listens on; EEXIST for a live socket or another file type. */
static remex_err unlink_stale(const char *path, const struct sockaddr_un *sa, struct remex_error *e)
{
    struct stat st;
    int fd, rc;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? REMEX_OK : remex_errno(e, REMEX_ESYS, "ipc: %s", path);
    if (!S_ISSOCK(st.st_mode))
        return remex_seterr(e, REMEX_EEXIST, "ipc: %s exists and is not a socket", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return remex_errno(e, REMEX_ESYS, "ipc: socket");
    rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    close(fd);
    if (rc == 0)
        return remex_seterr(e, REMEX_EEXIST, "ipc: %s: another process is listening", path);
    if (unlink(path) < 0 && errno != ENOENT)
        return remex_errno(e, REMEX_ESYS, "ipc: unlink %s", path);
    return REMEX_OK;
}

remex_err ipc_listen(const char *path, int backlog, int *out, struct remex_error *e)
{
    struct sockaddr_un sa;
    remex_err rc = make_addr(path, &sa, e);
    int fd;

    *out = -1;
    if (rc == REMEX_OK)
        rc = unlink_stale(path, &sa, e);
    if (rc != REMEX_OK)
        return rc;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return remex_errno(e, REMEX_ESYS, "ipc: socket");
    /* Nobody can connect before listen(), so the chmod closes the umask window. */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = remex_errno(e, REMEX_ESYS, "ipc: bind %s", path);
        close(fd);
        return rc;
    }
    if (chmod(path, 0600) < 0 || listen(fd, backlog > 0 ? backlog : 64) < 0) {
        rc = remex_errno(e, REMEX_ESYS, "ipc: listen %s", path);
        close(fd);
        unlink(path);
        return rc;
    }
    *out = fd;
    return REMEX_OK;
}

remex_err ipc_accept(int lfd, int *out, struct remex_error *e)
{
    int fd;
    do {
        fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    *out = fd;
    if (fd >= 0)
        return REMEX_OK;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED)
        return REMEX_EAGAIN;
    return remex_errno(e, REMEX_ESYS, "ipc: accept");
}

remex_err ipc_connect(const char *path, int *out, struct remex_error *e)
{
    struct sockaddr_un sa;
    remex_err rc = make_addr(path, &sa, e);
    int fd;

    *out = -1;
    if (rc != REMEX_OK)
        return rc;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return remex_errno(e, REMEX_ESYS, "ipc: socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = remex_errno(e, errno == ENOENT || errno == ECONNREFUSED ? REMEX_ECONNECT : REMEX_ESYS,
                         "ipc: connect %s", path);
        close(fd);
        return rc;
    }
    *out = fd;
    return REMEX_OK;
}

remex_err ipc_socketpair(int sv[2], struct remex_error *e)
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return remex_errno(e, REMEX_ESYS, "ipc: socketpair");
    return REMEX_OK;
}

remex_err ipc_peer_cred(int fd, pid_t *pid, uid_t *uid, gid_t *gid, struct remex_error *e)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || len != sizeof(cr))
        return remex_errno(e, REMEX_ESYS, "ipc: SO_PEERCRED");
    if (pid)
        *pid = cr.pid;
    if (uid)
        *uid = cr.uid;
    if (gid)
        *gid = cr.gid;
    return REMEX_OK;
}

remex_err ipc_peer_check(int fd, uid_t uid, pid_t pid, struct remex_error *e)
{
    pid_t ppid = 0;
    uid_t puid = (uid_t)-1;
    remex_err rc = ipc_peer_cred(fd, &ppid, &puid, NULL, e);

    if (rc != REMEX_OK)
        return rc;
    if (puid != uid)
        return remex_seterr(e, REMEX_EPERM, "ipc: peer uid %lu is not the expected %lu",
                            (unsigned long)puid, (unsigned long)uid);
    if (pid != 0 && ppid != pid)
        return remex_seterr(e, REMEX_EPERM, "ipc: peer pid %ld is not the expected %ld", (long)ppid,
                            (long)pid);
    return REMEX_OK;
}
