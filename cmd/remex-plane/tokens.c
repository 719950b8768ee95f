/*
 * Admin routes for agent tokens: create (the value is returned once and never
 * stored: only its SHA-256), list (never the value or the hash), revoke.
 * Revocation takes effect on the next request of any session of the token.
 */
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "plane.h"
#include "remex/log.h"
#include "remex/timeutil.h"

static json_t *when(int64_t ms)
{
    char s[TIMEUTIL_RFC3339_MAX];
    if (ms <= 0 || timeutil_rfc3339_format(ms, 1, s, sizeof(s)))
        return json_null();
    return json_string(s);
}

/* Inserts the row, then stores the hash of the value that embeds its id (mu held). */
static remex_err insert_token(struct plane *p, const struct decode_token_create *c, int64_t created,
                              int64_t expires, int64_t *id, char **value, struct remex_error *e)
{
    char *queues = c->queues ? json_dumps(c->queues, JSON_COMPACT) : NULL;
    sqlite3_stmt *st = NULL;
    unsigned char hash[32] = {0};
    remex_err rc;
    int began = store_begin(p); /* may carry a deferred start: committed with the token */
    if (!began)
        return remex_seterr(e, REMEX_EIO, "sqlite: cannot begin: %s", sqlite3_errmsg(p->db));
    if (sqlite3_prepare_v2(p->db,
                           "INSERT INTO tokens(name, hash, created_ms, expires_ms, roles, queues)"
                           " VALUES(?, zeroblob(32), ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, c->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, created);
    sqlite3_bind_int64(st, 3, expires);
    sqlite3_bind_int64(st, 4, c->roles);
    if (queues)
        sqlite3_bind_text(st, 5, queues, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 5);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    st = NULL;
    *id = sqlite3_last_insert_rowid(p->db);
    if ((rc = auth_agent_token_new(*id, value, hash, e)))
        goto undo;
    if (sqlite3_prepare_v2(p->db, "UPDATE tokens SET hash = ? WHERE id = ?", -1, &st, NULL) !=
        SQLITE_OK)
        goto fail;
    sqlite3_bind_blob(st, 1, hash, 32, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, *id);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    if ((rc = store_exec(p, "COMMIT", e)) == REMEX_OK) {
        free(queues);
        return REMEX_OK;
    }
    st = NULL;
    goto undo;
fail:
    rc = remex_seterr(e, REMEX_EIO, "sqlite: %s", sqlite3_errmsg(p->db));
    sqlite3_finalize(st);
undo:
    free(queues);
    store_exec(p, "ROLLBACK", NULL);
    if (*value) {
        memset(*value, 0, strlen(*value));
        free(*value);
        *value = NULL;
    }
    return rc;
}

static void h_create(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    struct decode_token_create c;
    struct remex_error e = {0};
    if (!rq->body) {
        plane_error(rs, 400, "bad_request", "body: missing");
        return;
    }
    if (decode_token_create(rq->body, &c, &e)) {
        plane_error(rs, 400, "bad_request", "%s", e.msg);
        return;
    }
    int64_t now = plane_now_ms(), expires = now + c.expires_in_s * 1000;
    int64_t id = 0;
    char *value = NULL;
    pthread_mutex_lock(&p->mu);
    remex_err rc = insert_token(p, &c, now, expires, &id, &value, &e);
    pthread_mutex_unlock(&p->mu);
    if (rc) {
        log_error("tokens: create %s: %s", c.name, e.msg);
        plane_error(rs, 500, "internal", "cannot create the token");
        return;
    }
    log_info("tokens: created agent token %lld (%s)", (long long)id, c.name);
    json_t *b = json_pack("{s:I,s:s,s:s,s:o,s:o,s:o}", "id", (json_int_t)id, "name", c.name,
                          "value", value, "created_at", when(now), "expires_at", when(expires),
                          "roles", decode_role_names(c.roles));
    if (b && c.queues)
        json_object_set(b, "queues", c.queues);
    plane_reply(rs, 201, b);
    memset(value, 0, strlen(value));
    free(value);
}

#define TOKEN_COLS "id, name, created_ms, expires_ms, revoked_ms, last_used_ms, roles, queues"

/* A token row as the API shows it: queues only when the token names some. */
static json_t *token_json(sqlite3_stmt *st)
{
    json_t *t = json_pack(
        "{s:I,s:s,s:o,s:o,s:o,s:o,s:o}", "id", (json_int_t)sqlite3_column_int64(st, 0), "name",
        (const char *)sqlite3_column_text(st, 1), "created_at", when(sqlite3_column_int64(st, 2)),
        "expires_at", when(sqlite3_column_int64(st, 3)), "revoked_at",
        when(sqlite3_column_int64(st, 4)), "last_used_at", when(sqlite3_column_int64(st, 5)),
        "roles", decode_role_names((unsigned)sqlite3_column_int64(st, 6)));
    if (t && sqlite3_column_type(st, 7) != SQLITE_NULL) {
        json_t *q = json_loads((const char *)sqlite3_column_text(st, 7), 0, NULL);
        if (json_is_array(q))
            json_object_set_new(t, "queues", q);
        else
            json_decref(q);
    }
    return t;
}

static void h_list(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    sqlite3_stmt *st = NULL;
    json_t *list = json_array();
    (void)rq;
    pthread_mutex_lock(&p->mu);
    if (sqlite3_prepare_v2(p->db, "SELECT " TOKEN_COLS " FROM tokens ORDER BY id", -1, &st, NULL) ==
        SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW)
            json_array_append_new(list, token_json(st));
    sqlite3_finalize(st);
    pthread_mutex_unlock(&p->mu);
    plane_reply(rs, 200, json_pack("{s:o}", "tokens", list));
}

static void h_revoke(struct plane *p, struct plane_req *rq, struct plane_resp *rs)
{
    sqlite3_stmt *st = NULL;
    int64_t id = decode_id(rq->param[0]);
    json_t *t = NULL;
    if (id <= 0) {
        plane_error(rs, 400, "bad_request", "token_id: expected a positive integer");
        return;
    }
    pthread_mutex_lock(&p->mu);
    if (sqlite3_prepare_v2(p->db,
                           "UPDATE tokens SET revoked_ms = CASE WHEN revoked_ms = 0 THEN ?2"
                           " ELSE revoked_ms END WHERE id = ?1 RETURNING " TOKEN_COLS,
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, plane_now_ms());
        if (sqlite3_step(st) == SQLITE_ROW)
            t = token_json(st);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&p->mu);
    if (!t) {
        plane_error(rs, 404, "not_found", "no such token");
        return;
    }
    log_info("tokens: revoked agent token %lld", (long long)id);
    plane_reply(rs, 200, t);
}

const struct plane_route plane_routes_tokens[] = {
    {"POST", "/api/v1/admin/tokens", AUTHZ_ADMIN, h_create, 0},
    {"GET", "/api/v1/admin/tokens", AUTHZ_ADMIN, h_list, 0},
    {"DELETE", "/api/v1/admin/tokens/{token_id}", AUTHZ_ADMIN, h_revoke, 0},
    {NULL, NULL, AUTHZ_NONE, NULL, 0},
};
