/*
 * remex-plane internal interfaces, shared by the plane's files.
 *
 * Threads: libmicrohttpd runs cfg.threads epoll event loops; a handler runs in
 * the loop thread of its connection and must not block. All database access
 * and all scheduler state are guarded by the one mutex plane.mu; a handler is
 * entered WITHOUT mu held and takes it for its critical section. A long poll
 * with nothing to hand out parks its request (plane_park, mu held) instead of
 * waiting: the connection is suspended and the handler runs again after
 * plane_wake for its kind or when its wait is over.
 * The scheduler runs in its own thread and sleeps on sched_cv until the next
 * due time or until plane_kick() says state changed; it never sleep-polls.
 *
 * Files and what they own:
 *   main.c      flags, plane.yaml, signals, start/stop order
 *   server.c    libmicrohttpd, routing, body cap, auth dispatch, errors, /healthz,
 *               parked long polls
 *   store.c     SQLite open (WAL), migrations (core + sched), helpers
 *   auth.c      admin token, agent tokens (SHA-256 at rest, constant-time compare),
 *               session and task JWTs (HS256, libjwt)
 *   agents.c    register, heartbeat, health reports, lost detection, admin views
 *   tokens.c    admin token routes
 *   metrics.c   /metrics
 *   sched*.c    DAGs, runs, task instances, scheduler thread, dispatch (work long
 *               poll, offers, start, state), triggers, XCom references, admin
 *               routes for dags/runs/tasks/import errors
 */
#ifndef REMEX_PLANE_H
#define REMEX_PLANE_H

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "remex/buf.h"
#include "remex/err.h"
#include "remex/websess.h"

struct MHD_Connection;

/* plane.yaml, after defaults and REMEX_PLANE_* environment overrides. */
struct plane_config {
    char *listen;   /* "127.0.0.1:8080" */
    char *tls_cert; /* PEM file; TLS when set together with tls_key */
    char *tls_key;
    char *tls_priorities;          /* GnuTLS priority string (SERVER_TLS_PRIORITIES) */
    char *db_path;                 /* SQLite file ("var/plane.db") */
    char *admin_token_file;        /* mode 0600; created with a random token if absent */
    char *signing_key_file;        /* mode 0600; 32 random bytes generated if absent */
    int64_t heartbeat_interval_ms; /* 5000 */
    int64_t lost_after_missed;     /* 3 */
    int64_t offer_timeout_ms;      /* 30000 */
    int64_t session_ttl_ms;        /* 900000 */
    int64_t longpoll_max_ms;       /* 30000 */
    int64_t body_max;              /* 1 MiB */
    int64_t threads;               /* HTTP event-loop threads; 0: one per CPU */
    int64_t max_connections;       /* most concurrent connections (1024) */
    int64_t retention_ms;          /* automatic retention (sched_retention.c); 0: off */
    char *log_level;
    char *log_format;
};

struct plane {
    struct plane_config cfg;
    sqlite3 *db;             /* guarded by mu */
    void *stmts;             /* prepared statement cache owned by store.c; guarded by mu */
    void *ckpt;              /* WAL checkpointer thread state owned by store.c */
    pthread_mutex_t mu;      /* the one lock: DB + scheduler state */
    pthread_cond_t sched_cv; /* scheduler wake-up (plane_kick) */
    int sched_dirty;         /* guarded by mu; set by plane_kick */
    unsigned char key[32];   /* JWT signing key */
    char admin_token[128];   /* NUL-terminated; compared in constant time */
    atomic_int stopping;     /* set once on shutdown: long polls return at once */
    void *sched;             /* opaque scheduler state owned by sched*.c */
    void *metrics;           /* opaque counters owned by metrics.c */
    void *server;            /* opaque libmicrohttpd state owned by server.c */
    void *agents;            /* opaque lost-detector state owned by agents.c */
    void *auth;              /* opaque verified-credential cache owned by auth.c */
    void *ui;                /* opaque web UI session state owned by ui.c */
    /* Transactions rolled back since the store opened (store.c's rollback
     * hook: a failed commit, an I/O error): a reply of a request that changed
     * state while one happened may not be a success. Any thread reads it. */
    atomic_uint_fast64_t store_rollbacks;
    int store_resync; /* guarded by mu: set on a rollback; the scheduler reloads
                       * what it caches from the database (sched_pass) */
    /* Guarded by mu: run by store_commit inside the transaction just before
     * its COMMIT (the scheduler writes the persisted state counts there,
     * sched_counts.c); nonzero fails the commit (rolled back). NULL: none. */
    int (*store_precommit)(struct plane *p);
};

/* Who made a request, filled by server.c before the handler runs. */
enum plane_authz {
    AUTHZ_NONE = 0,    /* no credential needed */
    AUTHZ_ADMIN,       /* admin token */
    AUTHZ_AGENT_TOKEN, /* agent token (register only) */
    AUTHZ_SESSION,     /* session JWT of a registered, non-lost agent */
    AUTHZ_SESSION_OR_ADMIN,
    AUTHZ_TASK, /* task JWT; agent/ti/try from its claims */
};

/* Agent roles as bits: an agent token allows a set, a session holds the
 * roles its agent registered with (always within its token's). */
enum plane_role {
    PLANE_ROLE_WORKER = 1,
    PLANE_ROLE_TRIGGERER = 2,
    PLANE_ROLE_DAG_PROCESSOR = 4,
    PLANE_ROLE_SENTINEL = 8,
};
#define PLANE_ROLES_ALL 15u

struct plane_principal {
    enum plane_authz kind;  /* what was presented and verified */
    unsigned roles;         /* session: PLANE_ROLE_* bits of its agent's registration */
    int64_t token_id;       /* agent token id (agent token or session) */
    int64_t agent_id;       /* session or task token */
    int64_t session;        /* session sequence number */
    int64_t ti_id;          /* task token */
    int64_t try_number;     /* task token */
    int64_t run_id;         /* task token */
    int64_t exp_ms;         /* expiry of the presented JWT (ms since the epoch); 0 otherwise */
    int ui;                 /* AUTHZ_ADMIN through the web UI's session cookie (ui.c) */
    struct websess ui_sess; /* that session, when ui */
};

#define PLANE_MAX_PARAMS 4

struct plane_req {
    const char *method;
    const char *path;
    const char *param[PLANE_MAX_PARAMS]; /* {x} captures of the route, URL-decoded */
    int nparam;
    json_t *body;                /* borrowed; NULL when the request had none */
    struct MHD_Connection *conn; /* for plane_req_query */
    struct plane_principal who;
    void *server_state; /* server.c's per-request state (plane_park, plane_req_query) */
};

struct plane_resp {
    int status;
    json_t *body; /* owned; serialised as JSON */
    char *text;   /* owned; sent as is when body is NULL (e.g. /metrics) */
    size_t text_len;
    const char *content_type;         /* static string; default application/json */
    const unsigned char *static_data; /* borrowed static bytes, sent when body and text are NULL */
    size_t static_len;
    const char *cache_control; /* static string; default "no-store" */
    const char *etag;          /* static string or NULL */
    char set_cookie[256];      /* Set-Cookie value when not empty */
    int committed;             /* set by a handler that committed what it wrote (or may leave it
                                * deferred): the server then sends the reply without settling */
};

typedef void (*plane_handler_fn)(struct plane *p, struct plane_req *rq, struct plane_resp *rs);

/* A route: pattern segments in braces capture one path segment ("{dag_id}").
 * role: a session must hold this PLANE_ROLE_* bit (0: any session); the
 * admin token, where authz allows it, needs none. */
struct plane_route {
    const char *method;
    const char *pattern;
    enum plane_authz authz;
    plane_handler_fn fn;
    unsigned role;
};

/* Routes whose body cap is above the configured body_max (a DAG upload),
 * granted only to a request whose bearer credential verifies for the route
 * (server.c); terminated by an entry with method == NULL. */
struct plane_body_cap {
    const char *method;
    const char *pattern;
    int64_t max;
};
extern const struct plane_body_cap plane_body_caps[]; /* sched.c */

/* Route tables, each terminated by an entry with method == NULL. */
extern const struct plane_route plane_routes_agents[]; /* agents.c */
extern const struct plane_route plane_routes_tokens[]; /* tokens.c */
extern const struct plane_route plane_routes_sched[];  /* sched*.c */

/* Query-string argument, percent-decoded, or NULL (also when it would hold a
 * NUL byte). Borrowed for the request. */
const char *plane_req_query(const struct plane_req *rq, const char *key);

/* Sets status and body (ownership of body moves to rs). */
void plane_reply(struct plane_resp *rs, int status, json_t *body);
/* 503 "unavailable": what the request changed was not committed and is
 * rolled back (the reason is logged by the store). */
void plane_store_failed(struct plane_resp *rs);
/* {"error":{"code":code,"message":...}} with status. */
void plane_error(struct plane_resp *rs, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- store.c (call with mu held) ---- */
/* Core migrations use versions 1-99, the scheduler's 100 and up; store_open
 * applies every pending one of both arrays in version order. */
struct store_migration {
    int version; /* strictly increasing across all arrays */
    const char *sql;
};
extern const struct store_migration store_migrations_core[];  /* store.c, {0,NULL}-ended */
extern const struct store_migration store_migrations_sched[]; /* sched*.c, {0,NULL}-ended */
remex_err store_open(struct plane *p, struct remex_error *e);
/* The VFS store_open uses (store_vfs.c): SQLite's "unix" with WAL writes
 * gathered into one write per commit; NULL when unavailable (then the default
 * VFS). Registers it on first call; mu held or before other threads. */
const char *store_vfs_name(void);
void store_close(struct plane *p);
/* Starts / stops the WAL checkpointer thread (mu not held). Until it runs,
 * and when it falls far behind, commits checkpoint inline. */
remex_err store_checkpointer_start(struct plane *p, struct remex_error *e);
void store_checkpointer_stop(struct plane *p);
int64_t plane_now_ms(void); /* wall clock, ms since the epoch */

/* Transactions (mu held). store_begin begins one, or takes over a deferred
 * one, and returns 1: the caller then ends it with store_commit or
 * store_commit_later. It returns 0 inside another holder's transaction (the
 * outer holder commits). store_commit_later leaves the transaction open: the
 * next store_begin takes it over (so the next commit of any request or of the
 * scheduler carries it), store_settle commits it, and the store thread commits
 * it at most 20 ms after the first deferred change. A crash of the plane
 * before then loses the deferred changes: only a change that is recovered
 * otherwise may be deferred (a start, see sched_dispatch.c). Writes outside
 * store_begin join an open deferred transaction. */
int store_begin(struct plane *p);
/* store_commit and store_settle return 0 when committed (or nothing to
 * commit), -1 when the commit failed (disk full, I/O error): the transaction,
 * with a deferred one it took over, is rolled back (logged, counted in
 * store_rollbacks) and the caller must not report success. */
int store_commit(struct plane *p, int began);
void store_commit_later(struct plane *p, int began);
int store_settle(struct plane *p);
/* Runs one or more SQL statements (no results). */
remex_err store_exec(struct plane *p, const char *sql, struct remex_error *e);
/* Prepared statement for sql, cached by the ADDRESS of sql (pass a string
 * literal, never a built string), reset and with its bindings cleared. The
 * statement is owned by the store (finalized by store_close); the caller
 * resets it when done with its rows. NULL on error (logged). */
sqlite3_stmt *store_stmt(struct plane *p, const char *sql);

/* ---- server.c ---- */
/* TLS 1.2 and 1.3 only, forward-secret key exchange, AEAD ciphers only (no
 * CBC, no SHA-1 MACs), the server's order first. */
#define SERVER_TLS_PRIORITIES                                                                      \
    "SECURE:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+CHACHA20-POLY1305:"      \
    "+AES-128-GCM:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:+DHE-RSA:%SERVER_PRECEDENCE"
/* Configuration checks of what server_start refuses; 0, or -1 with why set
 * (no key name in it). Any thread, no state. */
int server_check_listen(const char *listen, char *why, size_t whysz);
int server_check_tls_priorities(const char *prio, char *why, size_t whysz);
/* Starts libmicrohttpd (logs "listening on ADDR:PORT"); mu not held. */
remex_err server_start(struct plane *p, struct remex_error *e);
/* Stops accepting new connections (in-flight requests continue). */
void server_quiesce(struct plane *p);
/* Resumes parked requests, waits (bounded) for in-flight ones, stops the
 * event loops and frees the server. */
void server_stop(struct plane *p);
/* Appends one "METHOD PATTERN\n" line per served route (for --routes). */
remex_err server_routes(struct buf *out);

/* Long polls. A handler with nothing to hand out calls plane_park (mu held)
 * and returns without replying when it returns 0: the request is parked and
 * its connection suspended (no thread waits). The server runs the handler
 * again, with the same request (rq->body and rq->who kept), after plane_wake
 * for that kind or once wait_ms (counted from the first park of the request)
 * is over. plane_park returns -1 when the handler must reply now: the wait is
 * over or 0, or the plane is stopping. plane_wake (mu held) resumes every
 * request parked on kind; each re-checks its own condition. */
enum plane_wait {
    PLANE_WAIT_WORK,    /* a task instance became queued or a DAG got room */
    PLANE_WAIT_TRIGGER, /* a trigger needs a triggerer */
};
#define PLANE_WAIT_KINDS 2
int plane_park(struct plane *p, struct plane_req *rq, enum plane_wait kind, int64_t wait_ms);
void plane_wake(struct plane *p, enum plane_wait kind);
/* Keyed long polls: plane_park_keys parks as plane_park, waiting for one of
 * keys (strings borrowed for the life of the request, e.g. from rq->body;
 * at most PLANE_PARK_KEYS). plane_wake_key (mu held) resumes at most max of
 * the requests parked on kind that wait for key (or for no key in
 * particular), the longest waiting first, and returns how many: one
 * queued task instance on a queue resumes one poll of that queue, not all
 * of them. plane_wake still resumes every one. */
#define PLANE_PARK_KEYS 8
int plane_park_keys(struct plane *p, struct plane_req *rq, enum plane_wait kind, int64_t wait_ms,
                    const char *const *keys, int nkeys);
size_t plane_wake_key(struct plane *p, enum plane_wait kind, const char *key, size_t max);
/* Requests parked on kind now, and parks resumed by a wake-up so far (mu held). */
void plane_park_stats(struct plane *p, enum plane_wait kind, size_t *parked, uint64_t *woken);

/* ---- auth.c ---- */
/* Loads or creates the admin token file and the signing key file (mode 0600). */
remex_err auth_init(struct plane *p, struct remex_error *e);
/* Frees what auth_init allocated (no other thread may use auth any more). */
void auth_free(struct plane *p);
/*
 * Verifies the bearer credential bearer (may be NULL) for a route needing want.
 * Returns 0 and fills who, 401 (missing, malformed, unknown, expired, revoked,
 * tampered) or 403 (valid credential of the wrong kind). why gets the precise
 * reason for the log (never the credential). Takes mu itself.
 */
int auth_check(struct plane *p, const char *bearer, enum plane_authz want,
               struct plane_principal *who, char *why, size_t whysz);
/* auth_check for a credential given as a value rather than an Authorization
 * header (e.g. a task token inside a batch item); same results. */
int auth_check_token(struct plane *p, const char *token, enum plane_authz want,
                     struct plane_principal *who, char *why, size_t whysz);
/* New agent token "rmx_<id>_<secret>" for row id; *out malloc'd; hash written (32 bytes). */
remex_err auth_agent_token_new(int64_t id, char **out, unsigned char hash[32],
                               struct remex_error *e);
/* Session JWT (claims sub, tid, sid, typ, iat, exp); *out malloc'd, *exp_ms set. */
remex_err auth_session_token(struct plane *p, int64_t agent_id, int64_t token_id, int64_t session,
                             char **out, int64_t *exp_ms, struct remex_error *e);
/* Issues a task token for one try; *out is malloc'd and owned by the caller. */
remex_err auth_task_token(struct plane *p, int64_t agent_id, int64_t ti_id, int64_t try_number,
                          int64_t run_id, char **out, struct remex_error *e);

/* ---- sched*.c: called by the other files (mu held unless noted) ---- */
remex_err sched_init(struct plane *p, struct remex_error *e);  /* after store_open */
remex_err sched_start(struct plane *p, struct remex_error *e); /* starts the thread; mu not held */
void sched_stop(struct plane *p);                              /* joins it; mu not held */
void sched_free(struct plane *p);
/* Wakes the scheduler: state changed. */
void plane_kick(struct plane *p);
/* An agent was declared lost: re-queue its offers, fail+retry its running TIs,
 * release its triggers. */
void sched_agent_lost(struct plane *p, int64_t agent_id);
/* An agent re-registered (new session): reconcile work of its previous session. */
void sched_agent_reregistered(struct plane *p, int64_t agent_id);
/* Heartbeat: reconcile the agent's running list; append {ti_id,try_number,reason}
 * objects to cancel (borrowed array) for TIs the agent must stop. */
void sched_heartbeat(struct plane *p, int64_t agent_id, json_t *running, json_t *cancel);
/* Heartbeat of an agent listing the triggers it holds (held: array of ids):
 * a trigger assigned to it for longer than a heartbeat interval and not
 * listed goes back to the pool; a listed id that is not assigned to it (gone,
 * reassigned) is appended to cancel (borrowed array) for the agent to drop. */
void strig_heartbeat(struct plane *p, int64_t agent_id, json_t *held, json_t *cancel);
/* Appends the scheduler's Prometheus metrics (queued TIs per queue, dispatch
 * latency histogram, scheduler loop duration, runs by state). */
void sched_metrics(struct plane *p, struct buf *out);

/* ---- ui.c: the web UI (mu not held) ---- */
extern const struct plane_route plane_routes_ui[];
/* Derives the session key from the signing key and the admin token (so that
 * changing either ends every browser session); after auth_init. */
remex_err ui_init(struct plane *p, struct remex_error *e);
void ui_free(struct plane *p);
/* 1 when the request carries the UI's session cookie (then it is checked by
 * ui_auth_cookie instead of a bearer credential). */
int ui_has_cookie(struct MHD_Connection *c);
/* Checks the session cookie of a request to an admin route: signature, expiry,
 * not logged out; for a method other than GET and HEAD also the Origin header
 * (this server) and the X-CSRF-Token header (constant-time). Returns 0 with
 * who filled as AUTHZ_ADMIN (who->ui set), 401 or 403; why as auth_check. */
int ui_auth_cookie(struct plane *p, struct MHD_Connection *c, const char *method,
                   struct plane_principal *who, char *why, size_t whysz);

/* ---- agents.c (mu held) ---- */
/* 1 if the agent exists and is not lost/offline and session is its current
 * one; *roles (may be NULL) gets the PLANE_ROLE_* bits it registered with. */
int agents_session_valid(struct plane *p, int64_t agent_id, int64_t session, unsigned *roles);
/* The queues the agent's token allows: 1 and *queues (owned JSON array) set
 * when the token names queues, 0 when it allows every queue, -1 on error. */
int agents_token_queues(struct plane *p, int64_t agent_id, json_t **queues);
/* For a work or trigger poll: -1 when the session is not valid (as
 * agents_session_valid), 0 when the agent's desired state is drain or
 * maintenance (it gets no new work), 1 when it may take work. */
int agents_work_allowed(struct plane *p, int64_t agent_id, int64_t session);
/* Starts / stops the lost-agent detector thread (mu not held). */
remex_err agents_start(struct plane *p, struct remex_error *e);
void agents_stop(struct plane *p);

/* ---- metrics.c ---- */
remex_err metrics_init(struct plane *p);
void metrics_free(struct plane *p);
/* Counts one request; pattern is a static route pattern or "unmatched". Any thread. */
void metrics_count(struct plane *p, const char *method, const char *pattern, int status,
                   double seconds);
/* Counts how long a heartbeat waited for plane.mu (seconds). Any thread. */
void metrics_heartbeat_wait(struct plane *p, double seconds);
/* GET /metrics (AUTHZ_NONE); takes mu for the agent and scheduler figures. */
void metrics_handle(struct plane *p, struct plane_req *rq, struct plane_resp *rs);

#endif
