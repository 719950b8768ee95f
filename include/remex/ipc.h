/*
 * ipc: length-prefixed JSON frames over Unix stream sockets, with fd passing.
 *
 * Frame: a 4-byte big-endian unsigned payload length N, then N bytes of UTF-8
 * JSON whose top level is an object. 1 <= N <= max_frame (default
 * IPC_FRAME_MAX_DEFAULT). A zero or oversize length, invalid JSON or UTF-8,
 * duplicate object keys, nesting deeper than jansson's parser limit, or a
 * non-object top level is a protocol error: the connection must be closed.
 * docs/ipc.md describes the format for other languages.
 *
 * File descriptors travel as SCM_RIGHTS ancillary data. The sender attaches
 * them to a sendmsg that starts at the first byte of their frame and ends no
 * later than its last byte; the receiver assigns fds received by a recvmsg to
 * the frame that holds the last byte that recvmsg returned (Linux never joins
 * data after an fd-carrying segment into the same read). At most IPC_MAX_FDS
 * per frame. Received fds are close-on-exec (MSG_CMSG_CLOEXEC). On every error
 * path the library closes the fds it received and has not handed out.
 *
 * Errors: REMEX_EAGAIN (no complete frame yet / would block), REMEX_EPROTO
 * (bad length, fd misuse), REMEX_EPARSE (bad JSON or non-object), REMEX_ETOOBIG
 * (a cap), REMEX_ECLOSED (peer closed; the message says if it was mid-frame),
 * REMEX_ETIMEOUT, REMEX_EPERM (peer credentials refused), REMEX_ESYS (system
 * call failure, errno text in the message), REMEX_ENOMEM, REMEX_EINVAL.
 * The library never logs: callers log the message they get back.
 *
 * jansson: every json_t * argument is borrowed; every json_t ** result is
 * owned by the caller (json_decref). Not thread-safe per object; separate
 * decoders and connections may be used from separate threads.
 */
#ifndef REMEX_IPC_H
#define REMEX_IPC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "remex/buf.h"
#include "remex/err.h"

#define IPC_HDR_LEN           4
#define IPC_FRAME_MAX_DEFAULT ((size_t)1 << 20) /* 1 MiB payload */
#define IPC_FRAME_MAX_LIMIT   ((size_t)1 << 30) /* largest max_frame accepted */
#define IPC_QUEUE_MAX_DEFAULT ((size_t)4 << 20) /* outgoing bytes per connection */
#define IPC_MAX_FDS           16                /* fds per frame */
#define IPC_READ_CHUNK        ((size_t)64 << 10)

/* ---- pure incremental decoder ---- */

/*
 * Bytes go in with ipc_decoder_feed, whole frames come out of ipc_decoder_pop.
 * The decoder owns in.data. After a protocol error it is poisoned: feed and pop
 * return the same error (failed) until freed.
 */
struct ipc_decoder {
    struct buf in;     /* raw stream bytes; unpopped data starts at in.data + pos */
    size_t pos;        /* bytes of in already popped */
    size_t max_frame;  /* payload cap */
    uint64_t consumed; /* stream offset of in.data + pos (bytes popped so far) */
    remex_err failed;  /* REMEX_OK, or the sticky protocol error */
};

/*
 * max_frame 0 means IPC_FRAME_MAX_DEFAULT; larger than IPC_FRAME_MAX_LIMIT is
 * clamped to it. The decoder buffers at most max_frame + IPC_HDR_LEN +
 * IPC_READ_CHUNK bytes.
 */
void ipc_decoder_init(struct ipc_decoder *d, size_t max_frame);
void ipc_decoder_free(struct ipc_decoder *d);

/*
 * Appends n bytes. REMEX_ETOOBIG if they do not fit the buffer cap (pop the
 * complete frames first; the bytes are then not taken), or the sticky error.
 */
remex_err ipc_decoder_feed(struct ipc_decoder *d, const void *p, size_t n, struct remex_error *e);

/*
 * Pops the next complete frame into *msg (owned, always a JSON object).
 * REMEX_EAGAIN: need more bytes (a bad length is reported as soon as the
 * 4 header bytes are in, before waiting for the body). REMEX_EPROTO or
 * REMEX_EPARSE: malformed frame, decoder poisoned. *msg is NULL on any error.
 */
remex_err ipc_decoder_pop(struct ipc_decoder *d, json_t **msg, struct remex_error *e);

/* Bytes buffered and not yet popped (0 at a frame boundary). */
size_t ipc_decoder_pending(const struct ipc_decoder *d);

/*
 * Appends the frame of msg (a JSON object, serialised compact) to out.
 * REMEX_EINVAL if msg is not an object or cannot be serialised, REMEX_ETOOBIG
 * if the payload is over max_frame (0: default) or out's cap is reached
 * (out is then unchanged), REMEX_ENOMEM.
 */
remex_err ipc_encode(const json_t *msg, size_t max_frame, struct buf *out, struct remex_error *e);

/* ---- non-blocking connection ---- */

struct ipc_conn;

/*
 * Wraps a connected Unix stream socket and takes ownership of fd (closed by
 * ipc_conn_free, also on failure here). Makes it non-blocking and
 * close-on-exec. max_frame 0: IPC_FRAME_MAX_DEFAULT; max_queue 0:
 * IPC_QUEUE_MAX_DEFAULT (cap on queued outgoing bytes). NULL on failure.
 */
struct ipc_conn *ipc_conn_new(int fd, size_t max_frame, size_t max_queue, struct remex_error *e);

/* Closes the socket and any fds queued or received and not handed out; NULL is a no-op. */
void ipc_conn_free(struct ipc_conn *c);

/* The socket (still owned by the connection), for evloop_watch. */
int ipc_conn_fd(const struct ipc_conn *c);

/*
 * One recvmsg of up to IPC_READ_CHUNK bytes into the decoder. Call it when the
 * socket is readable, then ipc_conn_pop until REMEX_EAGAIN. REMEX_OK: bytes
 * (maybe no complete frame) were read; REMEX_EAGAIN: nothing to read;
 * REMEX_ECLOSED: end of stream; REMEX_ETOOBIG: frames left unpopped fill the
 * buffer; REMEX_EPROTO: fds were truncated or over the per-connection cap;
 * REMEX_ESYS.
 */
remex_err ipc_conn_read(struct ipc_conn *c, struct remex_error *e);

/*
 * Pops the next complete frame. *msg is owned by the caller. fds (room for
 * IPC_MAX_FDS) receives the frame's fds, owned by the caller, and *nfds their
 * count; with fds NULL a frame carrying fds is REMEX_EPROTO (they are closed).
 * Errors as ipc_decoder_pop.
 */
remex_err ipc_conn_pop(struct ipc_conn *c, json_t **msg, int *fds, size_t *nfds,
                       struct remex_error *e);

/*
 * Queues a frame, and with nfds > 0 the fds to pass along (duplicated: the
 * caller keeps its own). Nothing is written until ipc_conn_flush.
 * REMEX_ETOOBIG if the queue cap would be passed (nothing queued),
 * REMEX_EINVAL (not an object, nfds > IPC_MAX_FDS, bad fd), REMEX_ENOMEM.
 */
remex_err ipc_conn_send(struct ipc_conn *c, const json_t *msg, const int *fds, size_t nfds,
                        struct remex_error *e);

/*
 * Writes as much of the queue as the socket takes. REMEX_OK: queue empty;
 * REMEX_EAGAIN: bytes remain (watch for EVLOOP_WRITE); REMEX_ECLOSED: the peer
 * is gone (EPIPE/ECONNRESET); REMEX_ESYS.
 */
remex_err ipc_conn_flush(struct ipc_conn *c, struct remex_error *e);

/* Outgoing bytes queued. */
size_t ipc_conn_queued(const struct ipc_conn *c);

/* The evloop mask the socket needs: EVLOOP_READ, plus EVLOOP_WRITE while bytes are queued. */
unsigned ipc_conn_events(const struct ipc_conn *c);

/* ---- blocking calls for simple clients (blocking or non-blocking fds) ---- */

/* Sends one frame (max IPC_FRAME_MAX_DEFAULT) with nfds fds (borrowed, may be 0). */
remex_err ipc_send(int fd, const json_t *msg, struct remex_error *e);
remex_err ipc_send_fds(int fd, const json_t *msg, const int *fds, size_t nfds,
                       struct remex_error *e);

/*
 * Receives exactly one frame (never reads past it) within timeout_ms (-1: no
 * limit). *msg is owned by the caller. ipc_recv_fds stores up to maxfds
 * (at most IPC_MAX_FDS) received fds, owned by the caller, in fds and their
 * count in *nfds; more than that (any at all for ipc_recv) is REMEX_EPROTO,
 * with every received fd closed. Frames are capped at IPC_FRAME_MAX_DEFAULT.
 */
remex_err ipc_recv(int fd, json_t **msg, int timeout_ms, struct remex_error *e);
remex_err ipc_recv_fds(int fd, json_t **msg, int *fds, size_t maxfds, size_t *nfds, int timeout_ms,
                       struct remex_error *e);

/* ---- sockets and peers ---- */

/*
 * Binds and listens on a Unix socket path, mode 0600, non-blocking and
 * close-on-exec, into *out. A stale socket at path is unlinked; any other kind
 * of file there is REMEX_EEXIST, and so is a socket someone listens on (probed
 * with a connect, which that listener sees as a connection closed at once).
 * REMEX_ETOOBIG if the path does not fit.
 */
remex_err ipc_listen(const char *path, int backlog, int *out, struct remex_error *e);

/* Accepts one connection (non-blocking, close-on-exec) into *out; REMEX_EAGAIN if none. */
remex_err ipc_accept(int lfd, int *out, struct remex_error *e);

/* Connects to a Unix socket path; *out is blocking and close-on-exec. */
remex_err ipc_connect(const char *path, int *out, struct remex_error *e);

/*
 * A connected pair, both ends blocking and close-on-exec (the child's end
 * loses close-on-exec when dup2'd to its fixed fd before exec).
 */
remex_err ipc_socketpair(int sv[2], struct remex_error *e);

/* SO_PEERCRED of a connected socket; any out pointer may be NULL. */
remex_err ipc_peer_cred(int fd, pid_t *pid, uid_t *uid, gid_t *gid, struct remex_error *e);

/* REMEX_OK if the peer runs as uid (and is process pid, unless pid is 0); else REMEX_EPERM. */
remex_err ipc_peer_check(int fd, uid_t uid, pid_t pid, struct remex_error *e);

#endif
