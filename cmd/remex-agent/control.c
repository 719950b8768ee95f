/*
 * The control socket of remex-agent and its status file.
 *
 * Socket: agent.control_socket (default <state_dir>/agent.sock), mode 0600,
 * frames of docs/ipc.md (4-byte big-endian length + JSON object); a peer
 * that does not run as the agent's uid is refused (SO_PEERCRED). Requests:
 *   {"cmd":"status"}                  -> the status document (below), "ok":true
 *   {"cmd":"restart","role":"NAME"}   -> {"ok":true} | {"ok":false,"error":"..."}
 *   {"cmd":"stop"}                    -> {"ok":true}; the agent drains and exits
 * Status document: {"ok":true,"agent":{"pid","state","ready","uptime_s"},
 * "roles":[child_status()...]}; the same is written to
 * <state_dir>/agent.status.json (temporary file + rename) at every change.
 * At most CTL_CONNS_MAX connections; each request frame is at most 4 KiB.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "remex/evloop.h"
#include "remex/exit.h"
#include "remex/fsutil.h"
#include "remex/ipc.h"
#include "remex/log.h"
#include "remex/timeutil.h"

#define CTL_CONNS_MAX 16
#define CTL_FRAME_MAX 4096
#define CTL_REPLY_MAX (256 * 1024)

json_t *control_status_doc(struct agent *a)
{
    const char *st = a->r->state == ROLE_DRAINING   ? "draining"
                     : a->r->state >= ROLE_STOPPING ? "stopping"
                                                    : "running";
    json_t *roles = json_array();
    for (size_t i = 0; i < a->nchildren; i++)
        json_array_append_new(roles, child_status(&a->children[i]));
    return json_pack("{s:b,s:{s:i,s:s,s:b,s:f},s:o}", "ok", 1, "agent", "pid", (int)getpid(),
                     "state", st, "ready", a->r->state == ROLE_READY, "uptime_s",
                     (double)(timeutil_mono_ms() - a->start_ms) / 1000.0, "roles", roles);
}

void control_write_status(struct agent *a)
{
    if (!a->status_path[0])
        return;
    json_t *doc = control_status_doc(a);
    char *s = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (!s)
        return;
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", a->status_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || fsutil_write_all(fd, s, strlen(s)) != 0 || fsutil_write_all(fd, "\n", 1) != 0 ||
        close(fd) != 0 || rename(tmp, a->status_path) != 0) {
        if (fd >= 0)
            unlink(tmp);
        log_warn("status file %s: %s", a->status_path, strerror(errno));
    }
    free(s);
}

static void drop_conn(struct agent *a, size_t i)
{
    evloop_unwatch(a->r->loop, ipc_conn_fd(a->ctl_conns[i]));
    ipc_conn_free(a->ctl_conns[i]);
    a->ctl_conns[i] = a->ctl_conns[--a->nctl];
}

static json_t *handle(struct agent *a, const json_t *req)
{
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    struct remex_error e;
    if (!cmd)
        return json_pack("{s:b,s:s}", "ok", 0, "error", "cmd: expected a string");
    if (strcmp(cmd, "status") == 0)
        return control_status_doc(a);
    if (strcmp(cmd, "restart") == 0) {
        const char *role = json_string_value(json_object_get(req, "role"));
        if (!role)
            return json_pack("{s:b,s:s}", "ok", 0, "error", "role: expected a string");
        if (child_restart(a, role, &e) != REMEX_OK)
            return json_pack("{s:b,s:s}", "ok", 0, "error", e.msg);
        return json_pack("{s:b}", "ok", 1);
    }
    if (strcmp(cmd, "stop") == 0) {
        a->hooks.stop_request(a);
        return json_pack("{s:b}", "ok", 1);
    }
    return json_pack("{s:b,s:s}", "ok", 0, "error", "unknown cmd (status, restart, stop)");
}

static void on_conn(struct evloop *loop, int fd, unsigned ev, void *arg)
{
    (void)loop;
    (void)ev;
    struct agent *a = arg;
    size_t i = 0;
    while (i < a->nctl && ipc_conn_fd(a->ctl_conns[i]) != fd)
        i++;
    if (i == a->nctl)
        return;
    struct ipc_conn *c = a->ctl_conns[i];
    struct remex_error e;
    remex_err rc = ipc_conn_read(c, &e);
    json_t *req = NULL;
    while (rc == REMEX_OK || rc == REMEX_EAGAIN) {
        remex_err prc = ipc_conn_pop(c, &req, NULL, NULL, &e);
        if (prc == REMEX_EAGAIN)
            break;
        if (prc != REMEX_OK) {
            rc = prc;
            break;
        }
        json_t *rep = handle(a, req);
        json_decref(req);
        req = NULL;
        if (!rep || ipc_conn_send(c, rep, NULL, 0, &e) != REMEX_OK ||
            ipc_conn_flush(c, &e) != REMEX_OK) {
            rc = REMEX_EIO;
            json_decref(rep);
            break;
        }
        json_decref(rep);
    }
    if (rc != REMEX_OK && rc != REMEX_EAGAIN)
        drop_conn(a, i);
}

static void on_accept(struct evloop *loop, int lfd, unsigned ev, void *arg)
{
    (void)ev;
    struct agent *a = arg;
    struct remex_error e;
    int fd;
    while (ipc_accept(lfd, &fd, &e) == REMEX_OK) {
        struct ipc_conn *c = NULL;
        if (ipc_peer_check(fd, getuid(), 0, &e) != REMEX_OK) {
            log_warn("control socket: refused a peer: %s", e.msg);
            close(fd);
            continue;
        }
        if (a->nctl >= CTL_CONNS_MAX || !(c = ipc_conn_new(fd, CTL_FRAME_MAX, CTL_REPLY_MAX, &e)) ||
            evloop_watch(loop, fd, EVLOOP_READ, on_conn, a, &e) != REMEX_OK) {
            if (c)
                ipc_conn_free(c);
            else
                close(fd);
            continue;
        }
        a->ctl_conns[a->nctl++] = c;
    }
}

remex_err control_open(struct agent *a, struct remex_error *e)
{
    const char *path = a->r->cfg.agent.control_socket;
    snprintf(a->status_path, sizeof(a->status_path), "%s/agent.status.json", a->r->cfg.state_dir);
    a->ctl_conns = calloc(CTL_CONNS_MAX, sizeof(*a->ctl_conns));
    if (!a->ctl_conns)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    if (fsutil_mkdir_parents(path, 0700) != 0)
        return remex_seterr(e, REMEX_ESYS, "control socket %s: %s", path, strerror(errno));
    remex_err rc = ipc_listen(path, 16, &a->ctl_fd, e);
    if (rc != REMEX_OK) {
        remex_errprefix(e, "control socket %s", path);
        return rc;
    }
    return evloop_watch(a->r->loop, a->ctl_fd, EVLOOP_READ, on_accept, a, e);
}

void control_close(struct agent *a)
{
    while (a->nctl)
        drop_conn(a, a->nctl - 1);
    free(a->ctl_conns);
    a->ctl_conns = NULL;
    if (a->ctl_fd >= 0) {
        evloop_unwatch(a->r->loop, a->ctl_fd);
        close(a->ctl_fd);
        unlink(a->r->cfg.agent.control_socket);
        a->ctl_fd = -1;
    }
}

/* ---- client ---- */

static void print_status(const json_t *doc)
{
    const json_t *ag = json_object_get(doc, "agent");
    printf("agent pid %lld, %s, %s, up %.0f s\n",
           (long long)json_integer_value(json_object_get(ag, "pid")),
           json_string_value(json_object_get(ag, "state")),
           json_is_true(json_object_get(ag, "ready")) ? "ready" : "not ready",
           json_number_value(json_object_get(ag, "uptime_s")));
    printf("%-24s %-8s %-9s %-6s %9s %8s  %s\n", "ROLE", "PID", "STATE", "READY", "UPTIME",
           "RESTARTS", "LAST EXIT");
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(doc, "roles"), i, r)
    {
        const char *role = json_string_value(json_object_get(r, "role"));
        const char *inst = json_string_value(json_object_get(r, "instance"));
        char label[160], pid[16] = "-";
        if (inst && role && strcmp(inst, role) != 0)
            snprintf(label, sizeof(label), "%s/%s", role, inst);
        else
            snprintf(label, sizeof(label), "%s", role ? role : "?");
        if (json_is_integer(json_object_get(r, "pid")))
            snprintf(pid, sizeof(pid), "%lld",
                     (long long)json_integer_value(json_object_get(r, "pid")));
        const char *last = json_string_value(json_object_get(r, "last_exit"));
        const char *reason = json_string_value(json_object_get(r, "reason"));
        printf("%-24s %-8s %-9s %-6s %8.0fs %8lld  %s%s%s\n", label, pid,
               json_string_value(json_object_get(r, "state")),
               json_is_true(json_object_get(r, "ready")) ? "yes" : "no",
               json_number_value(json_object_get(r, "uptime_s")),
               (long long)json_integer_value(json_object_get(r, "restarts")), last ? last : "-",
               reason ? ": " : "", reason ? reason : "");
    }
}

int control_client(const char *path, int argc, char **argv)
{
    struct remex_error e;
    int fd = -1, json = argc > 1 && strcmp(argv[argc - 1], "--json") == 0;
    json_t *req;
    if (json)
        argc--;
    if (strcmp(argv[0], "status") == 0 && argc == 1)
        req = json_pack("{s:s}", "cmd", "status");
    else if (strcmp(argv[0], "stop") == 0 && argc == 1)
        req = json_pack("{s:s}", "cmd", "stop");
    else if (strcmp(argv[0], "restart") == 0 && argc == 2)
        req = json_pack("{s:s,s:s}", "cmd", "restart", "role", argv[1]);
    else {
        fprintf(stderr,
                "usage: remex-agent [-c agent.yaml] status [--json] | restart ROLE | stop\n");
        return REMEX_EXIT_USAGE;
    }
    json_t *rep = NULL;
    remex_err rc = ipc_connect(path, &fd, &e);
    if (rc == REMEX_OK)
        rc = ipc_send(fd, req, &e);
    if (rc == REMEX_OK)
        rc = ipc_recv(fd, &rep, 10000, &e);
    if (fd >= 0)
        close(fd);
    json_decref(req);
    if (rc != REMEX_OK) {
        fprintf(stderr, "remex-agent: %s: %s (is remex-agent running with this agent.yaml?)\n",
                path, e.msg);
        return REMEX_EXIT_FAIL;
    }
    int ok = json_is_true(json_object_get(rep, "ok"));
    if (!ok) {
        const char *err = json_string_value(json_object_get(rep, "error"));
        fprintf(stderr, "remex-agent: %s\n", err ? err : "refused");
    } else if (json || strcmp(argv[0], "status") != 0) {
        char *s = json_dumps(rep, JSON_COMPACT);
        if (json && s)
            printf("%s\n", s);
        free(s);
    } else {
        print_status(rep);
    }
    json_decref(rep);
    return ok ? REMEX_EXIT_OK : REMEX_EXIT_FAIL;
}
