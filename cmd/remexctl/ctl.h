/*
 * remexctl internal interfaces, shared by the command's files.
 *
 * Files and what they own:
 *   main.c    global flags, environment, admin token loading, command table,
 *             help, dispatch
 *   call.c    plane calls (HTTP client, error to exit code mapping), output
 *             helpers (tables, key/value lists, JSON values as text)
 *   admin.c   tokens, agents, import-errors
 *   dags.c    dags, runs
 *   tasks.c   tasks list, clear, fail, mark, logs; the task instance table
 *   trigger.c dags trigger --wait
 *   manage.c  runs cancel/clear, dags delete/backfill, agents delete, pools
 *   push.c    dags push: DAG YAML file -> canonical DAG JSON -> upload
 *
 * Every command function returns an exit code (enum ctl_exit) and has already
 * printed its message (prefixed "remexctl: <command>: ") when it is not 0.
 */
#ifndef REMEXCTL_CTL_H
#define REMEXCTL_CTL_H

#include <jansson.h>
#include <stddef.h>

#include "remex/buf.h"
#include "remex/err.h"
#include "remex/table.h"

/* Documented exit codes (docs/remexctl.md, remexctl --help). */
enum ctl_exit {
    CTL_OK = 0,       /* success */
    CTL_EFAIL = 1,    /* the plane refused the request, or the run failed */
    CTL_EUSAGE = 2,   /* bad usage or local configuration (token file, URL) */
    CTL_EUNREACH = 3, /* the plane cannot be reached (connect, timeout, TLS) */
    CTL_EAUTH = 4,    /* the plane rejected the admin token (401/403) */
};

#define CTL_DEFAULT_PLANE "http://127.0.0.1:8080"
#define CTL_TOKEN_MAX     1024

struct http_client;

struct ctl {
    const char *plane; /* base URL without trailing '/' (borrowed from argv/env) */
    const char *token_file;
    const char *ca_file;
    int insecure_http;         /* allow http:// to non-loopback hosts */
    int json;                  /* -o json */
    int yaml;                  /* -o yaml (json is set too: the reply, as YAML) */
    int wide;                  /* -o wide: tables with every column */
    int verbose;               /* -v: HTTP detail of refusals */
    const char *cmd;           /* "dags push": prefix of messages (static or argv) */
    char token[CTL_TOKEN_MAX]; /* "" until loaded; wiped at exit */
    struct http_client *http;  /* owned; created on the first call */
};

/* One command: "group name" ("import-errors" has name NULL). */
struct ctl_cmd {
    const char *group;
    const char *name;
    const char *args;                                /* usage after the command words */
    const char *summary;                             /* one line */
    const char *help;                                /* options and details, may be NULL */
    int (*fn)(struct ctl *c, int argc, char **argv); /* argv[0] is the last command word */
};

extern const struct ctl_cmd ctl_cmds[]; /* main.c; ends with group == NULL */

/* ---- main.c ---- */
/* Prints "remexctl: <cmd>: <msg>" and a hint to --help; returns CTL_EUSAGE. */
int ctl_usage(const struct ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "remexctl: <cmd>: <msg>"; returns code. */
int ctl_fail(const struct ctl *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Loads the admin token (--token-file, REMEX_ADMIN_TOKEN, REMEX_ADMIN_TOKEN_FILE). */
int ctl_load_token(struct ctl *c);

/* ---- call.c ---- */
/*
 * Sends method path with body (borrowed, may be NULL) and the admin token.
 * On 2xx: *reply (owned, may be NULL for an empty body) and, when raw is not
 * NULL, the reply's bytes appended to raw. Otherwise prints the error and
 * returns the exit code. reply may be NULL when the caller needs only raw.
 */
int ctl_call(struct ctl *c, const char *method, const char *path, json_t *body, json_t **reply,
             struct buf *raw);
/* ctl_call for display: with -o json prints the raw reply and leaves *reply
 * NULL (the caller prints nothing more); otherwise *reply as ctl_call. */
int ctl_fetch(struct ctl *c, const char *method, const char *path, json_t *body, json_t **reply);
/*
 * ctl_call for a route an older plane may lack: a 404 or 405 (no such route)
 * or a 413 (body over the plane's body_max) sets *soft to the status and
 * returns CTL_OK with nothing printed (-v says so), for the caller to fall
 * back; otherwise *soft = 0 and as ctl_call, the 2xx reply's bytes appended
 * to raw.
 */
int ctl_call_route(struct ctl *c, const char *method, const char *path, json_t *body,
                   struct buf *raw, int *soft);
/* Frees the client and wipes the token. */
void ctl_close(struct ctl *c);
/* Appends the percent-encoded path segment s (RFC 3986 unreserved kept). */
remex_err ctl_escape(struct buf *out, const char *s);
/* Builds a path from fmt where each "%s" is a percent-encoded segment. */
int ctl_path(const struct ctl *c, struct buf *out, const char *fmt, ...);
/* A JSON value as display text: strings as is, null/missing as "-", numbers,
 * booleans ("yes"/"no"), arrays of scalars comma-joined, objects compact. */
const char *ctl_text(const json_t *v, char *buf, size_t n);
/* obj[key] as display text (ctl_text). */
const char *ctl_field(const json_t *obj, const char *key, char *buf, size_t n);
/* A bundle version for a table column, in buf (n >= CTL_SHORT_VERSION): a
 * content hash as "sha256:" and its first 12 hex digits, a git commit SHA as
 * its first 12; "-" when empty. Full versions: -o json, dags show. */
#define CTL_SHORT_VERSION 24
const char *ctl_short_version(const char *v, char *buf, size_t n);
/* reply itself when it is an array, else reply[key] when that is an array; NULL otherwise. */
json_t *ctl_list(json_t *reply, const char *key);
/*
 * The start of a list command: GETs path and, when its list (ctl_list of
 * key) is there, readies t (ncols columns under hdr) and returns the list,
 * borrowed from *reply (owned by the caller). Else NULL, *reply NULL and *rc
 * the exit code: the call's failure, CTL_OK when the reply was printed as is
 * (-o json), or CTL_EFAIL (printed) for a reply without the list.
 */
json_t *ctl_list_get(struct ctl *c, const char *path, const char *key, struct table *t,
                     size_t ncols, const char *const *hdr, json_t **reply, int *rc);
/* Writes out to stdout; CTL_EFAIL with a message when stdout fails. */
int ctl_write(const struct ctl *c, const struct buf *out);
/* Renders t (and frees it) to stdout, without the header row when no_headers. */
int ctl_table_print(const struct ctl *c, struct table *t, int no_headers);
/* -o json: writes raw and a final newline when it lacks one. */
int ctl_print_raw(const struct ctl *c, struct buf *raw);
/* Key/value list: a headerless two-column table of "key:" and value. */
remex_err ctl_kv(struct table *t, const char *key, const char *value);

/* ---- admin.c ---- */
/* The agent id (digits) of NAME_OR_ID into id: an agent so named wins, then
 * the agent with that id; the failure is printed. */
int ctl_agent_resolve(struct ctl *c, const char *arg, char *id, size_t n);

/* ---- tasks.c ---- */
/* Prints the task instances of run (a DagRunDetail) as a table: MAP only
 * when a task is mapped, LOG with -o wide; failed_only: the failed ones with
 * their reason and log. */
int ctl_print_tis(const struct ctl *c, const json_t *run, int failed_only);

/* ---- command functions ---- */
int cmd_tokens_create(struct ctl *c, int argc, char **argv);
int cmd_tokens_list(struct ctl *c, int argc, char **argv);
int cmd_tokens_revoke(struct ctl *c, int argc, char **argv);
int cmd_agents_list(struct ctl *c, int argc, char **argv);
int cmd_agents_show(struct ctl *c, int argc, char **argv);
int cmd_agents_drain(struct ctl *c, int argc, char **argv);
int cmd_agents_maintenance(struct ctl *c, int argc, char **argv);
int cmd_agents_resume(struct ctl *c, int argc, char **argv);
int cmd_import_errors(struct ctl *c, int argc, char **argv);
int cmd_dags_list(struct ctl *c, int argc, char **argv);
int cmd_dags_show(struct ctl *c, int argc, char **argv);
int cmd_dags_pause(struct ctl *c, int argc, char **argv);
int cmd_dags_unpause(struct ctl *c, int argc, char **argv);
int cmd_dags_trigger(struct ctl *c, int argc, char **argv);
int cmd_dags_push(struct ctl *c, int argc, char **argv);
int cmd_runs_list(struct ctl *c, int argc, char **argv);
int cmd_runs_show(struct ctl *c, int argc, char **argv);
int cmd_tasks_clear(struct ctl *c, int argc, char **argv);
int cmd_tasks_fail(struct ctl *c, int argc, char **argv);
int cmd_tasks_mark(struct ctl *c, int argc, char **argv);
int cmd_tasks_list(struct ctl *c, int argc, char **argv);
int cmd_tasks_logs(struct ctl *c, int argc, char **argv);
int cmd_runs_cancel(struct ctl *c, int argc, char **argv);
int cmd_runs_clear(struct ctl *c, int argc, char **argv);
int cmd_dags_delete(struct ctl *c, int argc, char **argv);
int cmd_dags_backfill(struct ctl *c, int argc, char **argv);
int cmd_agents_delete(struct ctl *c, int argc, char **argv);
int cmd_pools_list(struct ctl *c, int argc, char **argv);
int cmd_pools_set(struct ctl *c, int argc, char **argv);
int cmd_pools_delete(struct ctl *c, int argc, char **argv);
int cmd_db_clean(struct ctl *c, int argc, char **argv);

/* Commands without options: rejects any option, checks the positional count. */
int ctl_positional(const struct ctl *c, int argc, char **argv, int want, const char *what);

#endif
