/*
 * supervise: a role's side of the supervisor channel.
 *
 * A supervisor (remex-agent) starts each role with a connected Unix stream
 * socket and names its descriptor in REMEX_SUPERVISOR_FD. Over it the role
 * sends ipc frames (4-byte big-endian length + JSON object, see docs/ipc.md):
 *
 *   {"type":"ready","role":"worker","pid":123,"version":"0.1.0"}
 *       once the role can do its work (the worker: registered with the plane)
 *   {"type":"draining","role":"worker","pid":123,"reason":"SIGTERM"}
 *       when it starts to drain
 *   {"type":"capacity","role":"worker","pid":123,"queues":["default"],"slots":4,"free_slots":3}
 *       a worker, once ready, whenever its free slots changed (at most once a second)
 *
 * and reads {"type":"drain"} (start draining). End of file on the socket means
 * the supervisor is gone: the role drains and exits. A role run alone (no
 * variable) skips all of this.
 */
#ifndef REMEX_SUPERVISE_H
#define REMEX_SUPERVISE_H

#include <jansson.h>

#include "remex/err.h"

#define SUPERVISE_ENV "REMEX_SUPERVISOR_FD"

/*
 * The supervisor socket named by REMEX_SUPERVISOR_FD: returns its fd (made
 * close-on-exec so task processes never inherit it), -1 when the variable is
 * unset. The variable is removed from the environment. An invalid value, a
 * closed fd or an fd that is not a Unix stream socket is REMEX_EINVAL (-1 is
 * returned and e says why).
 */
int supervise_fd(struct remex_error *e);

/*
 * Sends {"type":type,"role":role,"pid":getpid(), ...extra} (extra borrowed,
 * an object or NULL) as one frame. Blocking; frames are small.
 */
remex_err supervise_notify(int fd, const char *role, const char *type, const json_t *extra,
                           struct remex_error *e);

#endif
