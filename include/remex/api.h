/*
 * api: the Remote Execution API client every role of the agent uses.
 *
 * One struct api_client per role process: it holds the agent's session with
 * the plane and makes every call non-blocking through an httploop on the
 * role's evloop. It owns
 *
 *   - the session, as one state machine (enum api_state):
 *
 *       UNREGISTERED --start/401--> REGISTERING --2xx--> REGISTERED
 *       REGISTERED --session near expiry--> REFRESHING --new token--> REGISTERED
 *       REGISTERED/REFRESHING --connect error, timeout, 5xx--> LOST --2xx--> REGISTERED
 *       any --401/403 on a session call--> REGISTERING (after re-reading the token)
 *       REGISTERING --agent token refused twice, or 3 fresh sessions refused--> FATAL
 *
 *     Registration waits until the report journal is delivered: a new session
 *     makes the plane treat the tries of the previous one as lost.
 *   - the heartbeat, at the interval the plane returns, with the role's fields
 *     (hooks.heartbeat_body) and the plane's answers (hooks.on_heartbeat_reply);
 *   - reports that must not be lost (api_report): sent at once while the plane
 *     is reachable and nothing older waits, otherwise appended to the journal
 *     (fsync'd, journal.h) and replayed oldest first; a report the journal
 *     refuses is kept in memory and retried;
 *   - one retry policy: http_retryable() (http.h, the definition http.c's own
 *     retries use too) with full-jitter backoff api_backoff_ms().
 *
 * Roles plug in through struct api_hooks; the library never calls a role by
 * name. Calls the role makes itself (work long poll, start, task-token calls)
 * go through api_call, which keeps the session and reachability up to date.
 *
 * Logging goes through remex/log.h (the role's logger, stderr); tokens are
 * never logged. Not thread-safe: the loop's thread only.
 */
#ifndef REMEX_API_H
#define REMEX_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "remex/cfg.h"
#include "remex/err.h"

struct evloop;
struct api_client;

enum api_state {
    API_UNREGISTERED = 0, /* no session yet (replaying the journal first) */
    API_REGISTERING,      /* register call in flight or waiting to retry */
    API_REGISTERED,       /* session valid, plane reachable */
    API_REFRESHING,       /* session near expiry: a heartbeat asks for a new token */
    API_LOST,             /* session held, plane unreachable: calls are retried */
    API_FATAL,            /* credentials refused for good: hooks.on_fatal was called */
};

/* Static name of a state ("registered"). */
const char *api_state_name(enum api_state s);

/*
 * Role hooks; any may be NULL. json_t arguments are borrowed; body hooks add
 * their fields to the object they are given.
 */
struct api_hooks {
    void *ud;
    /* Register body: the client sets name, roles, version, hostname; the role adds queues,
     * slots, features and anything else it advertises. */
    void (*register_body)(void *ud, json_t *body);
    /* Registered (agent_id, session and heartbeat interval known). */
    void (*on_registered)(void *ud);
    /* Heartbeat body: the client sets sysinfo; the role sets state, free_slots, running and,
     * for the role that holds triggers, triggers. */
    void (*heartbeat_body)(void *ud, json_t *body);
    /* A 2xx heartbeat reply (after the client took session_token and heartbeat_interval):
     * cancel lists, desired_state, ... */
    void (*on_heartbeat_reply)(void *ud, json_t *reply);
    /* The credentials are refused for good: the role stops with exit_code (100). */
    void (*on_fatal)(void *ud, int exit_code);
    /* Something the role may wait for changed: reachability came back, a report was
     * delivered, journaled or dropped, the journal became empty. */
    void (*on_settled)(void *ud);
};

struct api_opts {
    const char *url;                /* plane base URL (required) */
    const struct cfg_secret *token; /* agent token (borrowed; re-read at each registration) */
    const char *ca_file;            /* NULL: system store */
    const char *name;               /* agent name (required) */
    const char *role;               /* "worker", "triggerer", ... (required) */
    const char *journal_dir;        /* report journal folder; NULL: api_report not available */
    uint64_t long_poll_ms;          /* longest wait asked by a long poll (timeout of those calls) */
    long timeout_ms;                /* other calls (0: 15 s) */
    long connect_timeout_ms;        /* 0: 5 s */
};

/* *out owned: api_free. The journal is opened (its undelivered entries counted). */
remex_err api_new(struct evloop *loop, const struct api_opts *opts, const struct api_hooks *hooks,
                  struct api_client **out, struct remex_error *e);
/* Aborts calls in flight (no callbacks), closes the journal, wipes the session. NULL: no-op. */
void api_free(struct api_client *c);

/* Starts: replays the journal, then registers. */
void api_start(struct api_client *c);
/* No new calls or timers from now on (the role is exiting); calls in flight may complete. */
void api_stop(struct api_client *c);
/* SIGHUP: the token is re-read at the next registration, and a refused one may be retried. */
void api_reload(struct api_client *c);

enum api_state api_state(const struct api_client *c);
/* 1 while the last call reached the plane (REGISTERED, REFRESHING; not LOST). */
int api_reachable(const struct api_client *c);
/* Borrowed, NULL before the first registration. */
const char *api_agent_id(const struct api_client *c);
int64_t api_heartbeat_ms(const struct api_client *c);
/* Reports not yet delivered: in flight, journaled or held in memory. */
size_t api_reports_pending(const struct api_client *c);
/* Reports journaled or held in memory (not counting those in flight). */
size_t api_reports_spooled(const struct api_client *c);

/* ---- calls ---- */

/* Outcome of a call; everything is borrowed for the duration of the callback. */
struct api_result {
    remex_err rc;    /* REMEX_OK for a 2xx; else the transfer error or the status's mapping */
    long status;     /* HTTP status, 0 without a complete response, 502 for an unreadable reply */
    json_t *reply;   /* parsed 2xx body, or NULL (json_incref to keep it) */
    const char *msg; /* "<what>: ok", or what went wrong (server message included) */
    int retryable;   /* http_retryable(rc, status) */
};

typedef void (*api_done_fn)(void *arg, const struct api_result *res);

struct api_call {
    const char *method;
    const char *path;
    const json_t *body;   /* borrowed (serialized at once), NULL: none */
    const char *bearer;   /* a task token; NULL: the session token */
    int long_poll;        /* 1: the long-poll timeout (api_opts.long_poll_ms + 15 s) */
    const char *what;     /* for messages ("work poll"); NULL: "METHOD PATH" */
    api_done_fn done;     /* called exactly once unless the client is freed first */
    void *arg;            /* borrowed */
    const char *raw_body; /* with body NULL: JSON text sent as it is (borrowed, copied at once) */
    size_t raw_len;
};

/*
 * Starts a call. A 401/403 on a session call sends the client back to
 * registration (the callback still sees it). Returns REMEX_OK, or an error
 * (nothing started, done not called): no session yet for a session call
 * (REMEX_EAUTH), the client is stopping (REMEX_ECLOSED), or the request could
 * not be built.
 */
remex_err api_call(struct api_client *c, const struct api_call *call, struct remex_error *e);

/*
 * A report that must not be lost: POST body (owned by the client from now on)
 * to path with bearer (a task token; NULL: the session token at delivery).
 * Delivered, or journaled and replayed oldest first across restarts, until the
 * plane answers 2xx or refuses it with a definitive status (4xx other than
 * 408/429: dropped, logged). Never fails: a report the journal refuses is kept
 * in memory (and logged as lost if the process exits first).
 */
void api_report(struct api_client *c, const char *path, const char *bearer, json_t *body,
                const char *what);

/* ---- typed calls of the work routes (the role builds no route path) ---- */

/* POST /api/v1/work (long poll) with body {queues, free_slots, wait}; as api_call. */
remex_err api_work_poll(struct api_client *c, const json_t *body, api_done_fn done, void *arg,
                        struct remex_error *e);

/*
 * Start of an offered try: body {try_number, pid, hostname, log_uri}
 * (borrowed, copied), on the assignment's task token (copied). The start is
 * queued and sent on the next loop turn: two or more queued starts go in one
 * POST /api/v1/task-instances/start (batches of up to 256), one alone to its
 * single route. done is called exactly once per start, unless the client is
 * freed first, with what the single route would have answered: the item's
 * status (200, 401, 403, 409...) and its result object as reply, or the
 * whole call's failure (transfer error, 5xx, session refused). A plane
 * without the batched route (404/405) gets single calls from then on.
 * REMEX_ECLOSED when the client is stopping (done not called).
 */
remex_err api_ti_start(struct api_client *c, int64_t ti_id, const char *task_token,
                       const json_t *body, const char *what, api_done_fn done, void *arg,
                       struct remex_error *e);

/*
 * The state report of a try (body owned from now on: {try_number, state,
 * exit_code, ...}) on its task token: api_report of
 * POST /api/v1/task-instances/{ti_id}/state, except that reports made in the
 * same loop turn, or while another report call is in flight, go together in
 * one POST /api/v1/task-instances/state (while the plane is reachable and no
 * report is spooled; a report alone goes at once). Its journal record is the single
 * route's: a report the batch does not settle (no answer, 5xx, the session
 * refused, 404/405/413 for the batch) is journaled and replayed alone; an
 * item refused in the batch's result (400, 401/403 of its task token, 409)
 * is dropped and logged as the single route's refusal is.
 */
void api_ti_report(struct api_client *c, int64_t ti_id, const char *task_token, json_t *body,
                   const char *what);

/* PUT /api/v1/task-instances/{ti_id}/xcom/{key} with ref {uri, size, checksum,
 * content_type} and GET of the XCom of task_id/map_index in the same run, on
 * the task token. key and task_id: 1-250 of [A-Za-z0-9._-], else REMEX_EINVAL
 * (done not called). As api_call. */
remex_err api_xcom_put(struct api_client *c, int64_t ti_id, const char *task_token, const char *key,
                       const json_t *ref, api_done_fn done, void *arg, struct remex_error *e);
remex_err api_xcom_get(struct api_client *c, int64_t ti_id, const char *task_token, const char *key,
                       const char *task_id, int64_t map_index, api_done_fn done, void *arg,
                       struct remex_error *e);

/* ---- the retry policy ---- */

/* Delay before retry number attempt (0-based): full jitter in [50, 50 + min(2 s, 200 ms << a)). */
uint64_t api_backoff_ms(unsigned attempt);

/* ---- triggers (remex-triggerer) ---- */

/*
 * POST /api/v1/triggers/poll: up to capacity (1..1000) triggers, the plane
 * parking the call up to wait_s seconds (a long poll). done gets the reply
 * envelope {"triggers": [...]} (decode it with trigspec_poll_reply).
 * Errors as api_call.
 */
remex_err api_trigger_poll(struct api_client *c, int64_t capacity, double wait_s, api_done_fn done,
                           void *arg, struct remex_error *e);
/* Hands triggers back (ids: owned json array of trigger ids) in a report: a
 * capacity-0 poll that releases them, so another triggerer takes them at once. */
void api_trigger_release(struct api_client *c, json_t *ids);
/* Reports trigger events (events: owned json array of {trigger_id, payload |
 * error | timed_out}) to POST /api/v1/triggers/events, journaled until delivered. */
void api_trigger_events(struct api_client *c, json_t *events);
/*
 * GET /api/v1/dags/{dag_id}/runs/{run_id}/status (ids percent-encoded):
 * the run's state and its task instances' states. REMEX_ETOOBIG (nothing
 * started) when an id is over 1024 bytes; other errors as api_call.
 */
remex_err api_dag_run_status(struct api_client *c, const char *dag_id, const char *run_id,
                             api_done_fn done, void *arg, struct remex_error *e);
/* ---- DAG sync (remex-dag-processor) ---- */

/* Most DAGs one api_dags_bulk call may carry (the plane's cap per request). */
#define API_DAGS_BULK_MAX 1000

/*
 * POST /api/v1/dags/manifest: manifest (borrowed; {bundle, version, files,
 * import_errors}). A 2xx reply is {missing: [dag_id, ...]}: the DAGs the
 * plane lacks at their listed hash. Errors as api_call.
 */
remex_err api_dags_manifest(struct api_client *c, const json_t *manifest, api_done_fn done,
                            void *arg, struct remex_error *e);

/*
 * POST /api/v1/dags/bulk: n (1..API_DAGS_BULK_MAX) DAGs of bundle@version
 * (borrowed; NULL: ""). dags[i] is DAG i's JSON text, lens[i] bytes, each one
 * JSON object (dag_to_json's canonical text; copied into the body as it is,
 * so it must be valid JSON). A 2xx reply is {results: [{dag_id, status:
 * "stored" | "unchanged" | "invalid", hash, error}], stored, unchanged,
 * invalid}, one result per DAG in order. The body must fit the plane's
 * body_max (413 otherwise). REMEX_EINVAL (nothing started) for an empty or
 * oversized list; otherwise errors as api_call.
 */
remex_err api_dags_bulk(struct api_client *c, const char *bundle, const char *version,
                        const char *const *dags, const size_t *lens, size_t n, api_done_fn done,
                        void *arg, struct remex_error *e);

/* Largest body api_dag_put sends: the plane's PUT cap (DAG_JSON_MAX, 8 MiB, plus 64 KiB). */
#define API_DAG_PUT_MAX (8u * 1024u * 1024u + 64u * 1024u)

/*
 * PUT /api/v1/dags/{dag_id} (dag_id percent-encoded in the path): one DAG of
 * bundle@version (borrowed; NULL: "") alone, for a DAG too large for the
 * bulk route (the plane takes up to API_DAG_PUT_MAX here from a credential
 * that verifies, body_max elsewhere). dag is its canonical JSON text, len
 * bytes, copied into {"bundle": {name, version}, "dag": text} as it is (so it
 * must be one valid JSON object whose dag_id is dag_id). A 2xx reply is
 * {dag_id, hash}. REMEX_ETOOBIG (nothing started) for a dag_id empty or over
 * 1024 bytes or a body over API_DAG_PUT_MAX, REMEX_EINVAL for no text;
 * otherwise errors as api_call.
 */
remex_err api_dag_put(struct api_client *c, const char *dag_id, const char *bundle,
                      const char *version, const char *dag, size_t len, api_done_fn done, void *arg,
                      struct remex_error *e);

/* ---- agent health and queue depth (remex-sentinel) ---- */

/* POST /api/v1/agents/{own id}/health with report (borrowed, serialized at
 * once). REMEX_EINVAL (nothing sent) before the agent has an id. */
remex_err api_agent_health(struct api_client *c, const json_t *report, api_done_fn done, void *arg,
                           struct remex_error *e);
/* GET /api/v1/queues/depth?queues=a,b for the n queue names (each percent-encoded).
 * REMEX_EINVAL for n 0; REMEX_ETOOBIG (nothing sent) when the list is over 4 KiB. */
remex_err api_queues_depth(struct api_client *c, const char *const *queues, size_t n,
                           api_done_fn done, void *arg, struct remex_error *e);

#endif
