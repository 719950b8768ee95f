/*
 * rolehttp: a small HTTP server for a role's probes and metrics (/health,
 * /healthz, /metrics), run by libmicrohttpd inside the role's evloop.
 *
 * libmicrohttpd runs in its external-loop epoll mode (MHD_USE_EPOLL without
 * a polling thread): its epoll fd is one evloop watch and its timeout one
 * evloop timer, so every request is answered from the loop's thread, with no
 * thread of its own. Only GET and HEAD are served (405 otherwise), request
 * bodies are refused (413), at most ROLEHTTP_CONN_MAX connections, each idle
 * one closed after 10 s.
 *
 * A role that has no server configured never calls rolehttp_new, so the
 * library (and libmicrohttpd) stays out of its process image: link-time
 * selection from libremex.a.
 *
 * The handler builds the whole response from memory (it must not block):
 * status, content type (static string) and body. Ownership: the server owns
 * its daemon, watch and timer; loop and ud are borrowed and must outlive it.
 * Not thread-safe: the loop's thread only.
 */
#ifndef REMEX_ROLEHTTP_H
#define REMEX_ROLEHTTP_H

#include <stdint.h>
#include <sys/socket.h>

#include "remex/buf.h"
#include "remex/err.h"

#define ROLEHTTP_CONN_MAX 64
#define ROLEHTTP_BODY_MAX ((size_t)4 << 20)

struct evloop;
struct rolehttp;

struct rolehttp_resp {
    int status;               /* default 200 */
    const char *content_type; /* static; default "text/plain; charset=utf-8" */
    struct buf body;          /* capped at ROLEHTTP_BODY_MAX; owned by the server */
};

/* path excludes the query string; method is "GET" or "HEAD". */
typedef void (*rolehttp_handler_fn)(void *ud, const char *path, struct rolehttp_resp *resp);

/*
 * Parses "ADDRESS:PORT" (IPv4, or bracketed IPv6: "[::1]:9464"; no host
 * names: a listening address is never resolved). *len receives the size of
 * the address written into out. REMEX_EINVAL otherwise.
 */
remex_err rolehttp_parse_listen(const char *s, struct sockaddr_storage *out, socklen_t *len,
                                struct remex_error *e);

/* Listens on listen ("127.0.0.1:9464"; port 0 picks a free one). NULL on error (e filled). */
struct rolehttp *rolehttp_new(struct evloop *loop, const char *listen, rolehttp_handler_fn fn,
                              void *ud, struct remex_error *e);
/* The port it listens on (useful with port 0). */
uint16_t rolehttp_port(const struct rolehttp *h);
/* Closes every connection and the listening socket. NULL: no-op. */
void rolehttp_free(struct rolehttp *h);

/* ---- a role's own probe endpoint ---- */

struct role;

/* Appends the role's own metric families (promtext.h) to out. */
typedef void (*rolehttp_metrics_fn)(void *ud, struct buf *out);

/*
 * The endpoint of one role process, for Kubernetes probes and scraping one
 * container per role. A role calls it from its start hook when its
 * configuration names an address, and frees it (rolehttp_free) in its stop
 * hook; the runtime never starts it by itself. Serves
 *
 *   /healthz  200 {"role":..,"state":"ready"} while the role is READY, else 503
 *             with its state (starting, draining, stopping): readiness
 *   /livez    200 while the loop answers: liveness
 *   /metrics  remex_role_ready{role}, remex_role_state{role,state}, and with
 *             an API client remex_role_plane_up{role} and
 *             remex_role_reports_pending{role}; then fn's families (fn may be NULL)
 *
 * r, fn and ud are borrowed and must outlive the server.
 */
struct rolehttp *rolehttp_role(struct role *r, const char *listen, rolehttp_metrics_fn fn, void *ud,
                               struct remex_error *e);

#endif
