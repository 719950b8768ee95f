/*
 * httploop: an http_multi driven by an evloop.
 *
 * The glue every role needs between libcurl's socket interface and the event
 * loop: the multi's sockets become evloop watches, its single timer an evloop
 * timer. Transfers started on httploop_multi() complete from inside the loop's
 * callbacks (see http.h, struct http_multi_done).
 *
 * Ownership: the httploop owns its multi; the loop is borrowed and must
 * outlive it. Not thread-safe: the loop's thread only.
 */
#ifndef REMEX_HTTPLOOP_H
#define REMEX_HTTPLOOP_H

#include "remex/err.h"

struct evloop;
struct http_multi;
struct httploop;

/* NULL on failure (e filled). */
struct httploop *httploop_new(struct evloop *loop, struct remex_error *e);
/* Borrowed: valid until httploop_free. */
struct http_multi *httploop_multi(struct httploop *h);
/* Aborts unfinished transfers without calling their callbacks, frees the multi. NULL: no-op. */
void httploop_free(struct httploop *h);

#endif
