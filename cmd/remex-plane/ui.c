/*
 * The web UI: its files (compiled in, see ui_assets.h) and its browser
 * session.
 *
 * Files: "/" is index.html (no-cache, ETag); everything else lives under
 * /ui/<ui_version>/<name>, immutable for a year since a new build changes the
 * version. A conditional GET with the current ETag gets 304.
 *
 * Session: POST /api/v1/ui/session {token} trades the admin token (checked
 * like a bearer, in constant time) for a cookie "remex_session" holding a
 * websess value signed with a key derived from the signing key and the admin
 * token; HttpOnly, SameSite=Strict, Path=/, Secure with TLS, valid UI_TTL_S.
 * The reply carries the session's CSRF token, which the page keeps in memory
 * and sends as X-CSRF-Token on every request that is not a GET. A cookie
 * request to an admin route is checked by ui_auth_cookie (server.c calls it
 * when no Authorization header is present). DELETE /api/v1/ui/session logs
 * out: the session's nonce is remembered as revoked until its expiry (in
 * memory, at most UI_REVOKED_MAX; a plane restart forgets them, the cookie
 * is cleared in the browser either way).
 */
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plane.h"
#include "remex/log.h"
#include "remex/websess.h"
#include "ui_assets.h"

#define UI_COOKIE        "remex_session"
#define UI_TTL_S         (12 * 3600)
#define UI_REVOKED_MAX   4096
#define UI_LOGIN_MAX     512 /* admin tokens are at most 127 bytes */
#define UI_CACHE_ASSET   "public, max-age=31536000, immutable"
#define UI_CACHE_INDEX   "no-cache"
#define UI_SESSION_LABEL "remex-plane ui session v1\n"

struct ui_revoked {
    char nonce[WEBSESS_TOKEN_LEN + 1];
    int64_t exp_s;
};

struct ui_state {
    unsigned char key[32];
    pthread_mutex_t mu; /* guards rev and nrev */
    struct ui_revoked rev[UI_REVOKED_MAX];
    size_t nrev;
};

remex_err ui_init(struct plane *p, struct remex_error *e)
{
    struct ui_state *u = calloc(1, sizeof(*u));
    size_t ll = strlen(UI_SESSION_LABEL), tl = strlen(p->admin_token);
    unsigned char label[sizeof(UI_SESSION_LABEL) + sizeof(p->admin_token)];
    if (!u || pthread_mutex_init(&u->mu, NULL) != 0) {
        free(u);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    memcpy(label, UI_SESSION_LABEL, ll);
    memcpy(label + ll, p->admin_token, tl);
    remex_err rc = websess_key_derive(p->key, sizeof(p->key), label, ll + tl, u->key);
    OPENSSL_cleanse(label, sizeof(label));
    if (rc) {
        pthread_mutex_destroy(&u->mu);
        free(u);
        return remex_seterr(e, rc, "ui: cannot derive the session key");
    }
    p->ui = u;
    return REMEX_OK;
}

void ui_free(struct plane *p)
{
    struct ui_state *u = p->ui;
    if (!u)
        return;
    pthread_mutex_destroy(&u->mu);
    OPENSSL_cleanse(u, sizeof(*u));
    free(u);
    p->ui = NULL;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static int tls_on(const struct plane *p)
{
    return p->cfg.tls_cert && *p->cfg.tls_cert && p->cfg.tls_key && *p->cfg.tls_key;
}

/* Remembers a logged-out session until it expires; when full, the entry that
 * expires first gives way. */
static void ui_revoke(struct ui_state *u, const struct websess *s)
{
    int64_t now = now_s();
    pthread_mutex_lock(&u->mu);
    size_t w = 0, soonest = 0;
    for (size_t i = 0; i < u->nrev; i++)
        if (u->rev[i].exp_s > now)
            u->rev[w++] = u->rev[i];
    u->nrev = w;
    if (u->nrev == UI_REVOKED_MAX) {
        for (size_t i = 1; i < u->nrev; i++)
            if (u->rev[i].exp_s < u->rev[soonest].exp_s)
                soonest = i;
        u->rev[soonest] = u->rev[--u->nrev];
    }
    memcpy(u->rev[u->nrev].nonce, s->nonce, sizeof(s->nonce));
    u->rev[u->nrev++].exp_s = s->exp_s;
    pthread_mutex_unlock(&u->mu);
}

static int ui_is_revoked(struct ui_state *u, const struct websess *s)
{
    int hit = 0;
    pthread_mutex_lock(&u->mu);
    for (size_t i = 0; i < u->nrev && !hit; i++)
        hit = CRYPTO_memcmp(u->rev[i].nonce, s->nonce, WEBSESS_TOKEN_LEN) == 0;
    pthread_mutex_unlock(&u->mu);
    return hit;
}

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

int ui_has_cookie(struct MHD_Connection *c)
{
    const char *v;
    size_t n;
    return websess_cookie_find(header(c, MHD_HTTP_HEADER_COOKIE), UI_COOKIE, 0, &v, &n) !=
           REMEX_ENOTFOUND;
}

/* 1 when the request's Origin header names this server. */
static int same_origin(struct plane *p, struct MHD_Connection *c)
{
    return websess_origin_ok(header(c, "Origin"), header(c, MHD_HTTP_HEADER_HOST), tls_on(p));
}

int ui_auth_cookie(struct plane *p, struct MHD_Connection *c, const char *method,
                   struct plane_principal *who, char *why, size_t whysz)
{
    struct ui_state *u = p->ui;
    const char *v = NULL, *cookies = header(c, MHD_HTTP_HEADER_COOKIE);
    size_t n = 0;
    remex_err rc = REMEX_EINVAL;
    memset(who, 0, sizeof(*who));
    /* The first of the cookies so named that this plane signed (another
     * server on the same host may have set one too: cookies ignore ports). */
    for (int k = 0;
         u && rc != REMEX_OK && websess_cookie_find(cookies, UI_COOKIE, k, &v, &n) == REMEX_OK;
         k++) {
        remex_err r = websess_verify(u->key, v, n, now_s(), &who->ui_sess);
        if (r == REMEX_OK || rc == REMEX_EINVAL || r == REMEX_ETIMEOUT)
            rc = r; /* the reason logged: expired over forged over malformed */
    }
    if (rc != REMEX_OK || !u) {
        snprintf(why, whysz, "ui session cookie %s",
                 rc == REMEX_ETIMEOUT ? "expired"
                 : rc == REMEX_EAUTH  ? "not signed by this plane"
                                      : "malformed");
        return 401;
    }
    if (ui_is_revoked(u, &who->ui_sess)) {
        snprintf(why, whysz, "ui session logged out");
        return 401;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        if (!same_origin(p, c)) {
            snprintf(why, whysz, "ui session: Origin missing or not this plane");
            return 403;
        }
        if (!websess_csrf_ok(u->key, &who->ui_sess, header(c, "X-CSRF-Token"))) {
            snprintf(why, whysz, "ui session: X-CSRF-Token missing or wrong");
            return 403;
        }
    }
    who->kind = AUTHZ_ADMIN;
    who->ui = 1;
    return 0;
}

/* {csrf_token, expires_at} of session s. */
static json_t *session_json(struct ui_state *u, const struct websess *s)
{
    char csrf[WEBSESS_TOKEN_LEN + 1], at[32];
    time_t t = (time_t)s->exp_s;
    struct tm tm;
    if (websess_csrf(u->key, s, csrf) != REMEX_OK || !gmtime_r(&t, &tm))
        return NULL;
    strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *o = json_pack("{ss ss}", "csrf_token", csrf, "expires_at", at);
    OPENSSL_cleanse(csrf, sizeof(csrf));
    return o;
}

static void set_cookie(struct plane *p, struct plane_resp *rs, const char *value, long max_age)
{
    snprintf(rs->set_cookie, sizeof(rs->set_cookie),
             UI_COOKIE "=%s; Path=/; Max-Age=%ld; HttpOnly; SameSite=Strict%s", value, max_age,
             tls_on(p) ? "; Secure" : "");
}

/* POST /api/v1/ui/session {token}: the admin token for a browser session. */
static void h_login(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    struct ui_state *u = p->ui;
    json_t *t = rq->body ? json_object_get(rq->body, "token") : NULL;
    char bearer[7 + UI_LOGIN_MAX + 1], why[256];
    struct plane_principal who;
    if (!same_origin(p, rq->conn)) {
        log_warn("ui: login refused: Origin missing or not this plane");
        plane_error(rs, 403, "forbidden", "cross-origin login refused");
        return;
    }
    if (!json_is_string(t) || json_string_length(t) == 0 || json_string_length(t) > UI_LOGIN_MAX) {
        plane_error(rs, 400, "bad_request", "token: expected a string of 1 to %d bytes",
                    UI_LOGIN_MAX);
        return;
    }
    snprintf(bearer, sizeof(bearer), "Bearer %s", json_string_value(t));
    int code = auth_check(p, bearer, AUTHZ_ADMIN, &who, why, sizeof(why));
    OPENSSL_cleanse(bearer, sizeof(bearer));
    if (code || !u) {
        log_warn("ui: login refused: %s", code == 403 ? "not the admin token" : why);
        plane_error(rs, 401, "unauthorized", "wrong admin token");
        return;
    }
    char value[WEBSESS_VALUE_MAX];
    struct websess s;
    json_t *out = NULL;
    if (websess_issue(u->key, now_s() + UI_TTL_S, value, sizeof(value)) == REMEX_OK &&
        websess_verify(u->key, value, strlen(value), now_s(), &s) == REMEX_OK)
        out = session_json(u, &s);
    if (!out) {
        plane_error(rs, 500, "internal", "cannot create a session");
        return;
    }
    set_cookie(p, rs, value, UI_TTL_S);
    OPENSSL_cleanse(value, sizeof(value));
    log_info("ui: session opened");
    plane_reply(rs, 200, out);
}

/* GET /api/v1/ui/session: the current browser session's CSRF token. */
static void h_session(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    json_t *out = rq->who.ui ? session_json(p->ui, &rq->who.ui_sess) : NULL;
    if (!rq->who.ui)
        plane_error(rs, 409, "conflict", "no browser session (a bearer credential was used)");
    else if (!out)
        plane_error(rs, 500, "internal", "cannot derive the CSRF token");
    else
        plane_reply(rs, 200, out);
}

/* DELETE /api/v1/ui/session: logout. */
static void h_logout(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    if (rq->who.ui)
        ui_revoke(p->ui, &rq->who.ui_sess);
    set_cookie(p, rs, "", 0);
    if (rq->who.ui)
        log_info("ui: session closed");
    plane_reply(rs, 200, json_pack("{sb}", "logged_out", rq->who.ui));
}

static void send_asset(struct plane_req *rq, struct plane_resp *rs, const struct ui_asset *a,
                       const char *cache)
{
    const char *inm = header(rq->conn, MHD_HTTP_HEADER_IF_NONE_MATCH);
    rs->cache_control = cache;
    rs->etag = a->etag;
    rs->content_type = a->content_type;
    if (inm && strcmp(inm, a->etag) == 0) {
        rs->status = 304;
        return;
    }
    rs->status = 200;
    rs->static_data = a->data;
    rs->static_len = a->len;
}

/* GET / */
static void h_index(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    (void)p;
    send_asset(rq, rs, &ui_index, UI_CACHE_INDEX);
}

/* GET /ui/{version}/{file} */
static void h_asset(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    (void)p;
    if (strcmp(rq->param[0], ui_version) == 0)
        for (size_t i = 0; i < ui_nassets; i++)
            if (strcmp(ui_assets[i].name, rq->param[1]) == 0) {
                send_asset(rq, rs, &ui_assets[i], UI_CACHE_ASSET);
                return;
            }
    plane_error(rs, 404, "not_found", "no such file");
}

const struct plane_route plane_routes_ui[] = {
    {"GET", "/", AUTHZ_NONE, h_index, 0},
    {"GET", "/ui/{version}/{file}", AUTHZ_NONE, h_asset, 0},
    {"POST", "/api/v1/ui/session", AUTHZ_NONE, h_login, 0},
    {"GET", "/api/v1/ui/session", AUTHZ_ADMIN, h_session, 0},
    {"DELETE", "/api/v1/ui/session", AUTHZ_ADMIN, h_logout, 0},
    {NULL, NULL, AUTHZ_NONE, NULL, 0},
};
