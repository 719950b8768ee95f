/*
 * Credentials: the admin token file, the JWT signing key file, agent tokens
 * (SHA-256 at rest, constant-time compare), session and task JWTs (HS256).
 * Verification runs on every request: revocation and expiry take effect on the
 * very next one. Failure reasons go to the caller's why buffer for the log;
 * no credential value is ever logged or stored.
 */
#include <errno.h>
#include <fcntl.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plane.h"
#include "remex/log.h"

#define TOKEN_SECRET_BYTES 32
#define BEARER_MAX         4096
#define ADMIN_TOKEN_MIN    8  /* an operator-chosen admin token, at least */
#define ADMIN_TOKEN_WEAK   32 /* shorter ones are accepted with a warning */
#define TASK_TOKEN_TTL_MS  (30LL * 86400 * 1000)

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = tab[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = tab[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

static EVP_MD *g_sha256; /* fetched once by auth_init: no provider lookup per digest */

static void sha256(const void *data, size_t n, unsigned char out[32])
{
    unsigned int len = 32;
    if (EVP_Digest(data, n, out, &len, g_sha256 ? g_sha256 : EVP_sha256(), NULL) != 1)
        memset(out, 0, 32); /* never equal to a stored hash of a real value */
}

/*
 * Verified JWTs, remembered by their full text (direct-mapped on the last
 * characters, the signature; a colliding token replaces the entry): the
 * signature, algorithm, typ and claims of a token are checked once, when the
 * plane issues it or at its first use, and a later use compares the text in
 * constant time. Expiry, the session being current and the agent token being
 * neither revoked nor expired are still checked on every request. The signing
 * key never changes while the plane runs, so a remembered verdict cannot go
 * stale.
 */
#define JWT_CACHE_N 8192 /* direct-mapped: room for many more tokens than are in use at once */

struct jwt_ent {
    char *tok; /* owned; NULL: unused */
    size_t len;
    struct plane_principal who; /* kind, ids and exp_ms as decoded */
};

struct authc {
    pthread_mutex_t mu; /* guards ent and mac; never held with plane.mu wanted */
    unsigned char admin_hash[32];
    struct jwt_ent ent[JWT_CACHE_N];
    EVP_MAC_CTX *mac; /* HMAC-SHA256 keyed with the signing key (NULL: use libjwt) */
};

static struct jwt_ent *jwt_slot(struct authc *c, const char *tok, size_t n)
{
    size_t h = 0;
    for (size_t i = n > 8 ? n - 8 : 0; i < n; i++)
        h = h * 131 + (unsigned char)tok[i];
    return &c->ent[h % JWT_CACHE_N];
}

/* 1 and *who filled when tok is a remembered verified token. */
static int jwt_cache_get(struct plane *p, const char *tok, size_t n, struct plane_principal *who)
{
    struct authc *c = p->auth;
    int hit = 0;
    if (!c)
        return 0;
    pthread_mutex_lock(&c->mu);
    struct jwt_ent *x = jwt_slot(c, tok, n);
    if (x->tok && x->len == n && CRYPTO_memcmp(x->tok, tok, n) == 0) {
        *who = x->who;
        hit = 1;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

static void jwt_cache_put(struct plane *p, const char *tok, size_t n,
                          const struct plane_principal *who)
{
    struct authc *c = p->auth;
    char *copy = c ? malloc(n + 1) : NULL;
    if (!copy)
        return;
    memcpy(copy, tok, n + 1);
    pthread_mutex_lock(&c->mu);
    struct jwt_ent *x = jwt_slot(c, tok, n);
    char *old = x->tok;
    x->tok = copy;
    x->len = n;
    x->who = *who;
    pthread_mutex_unlock(&c->mu);
    free(old);
}

/*
 * Reads a secret file of at most cap bytes into buf; refuses files that are not
 * regular or that group/others may access. Returns REMEX_ENOTFOUND if absent.
 */
static remex_err read_secret_file(const char *path, unsigned char *buf, size_t cap, size_t *n,
                                  struct remex_error *e)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        if (errno == ENOENT)
            return REMEX_ENOTFOUND;
        return remex_seterr(e, REMEX_EIO, "%s: %s", path, strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return remex_seterr(e, REMEX_EPERM, "%s: not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return remex_seterr(e, REMEX_EPERM,
                            "%s: must not be accessible by group or others (chmod 600)", path);
    }
    ssize_t r = read(fd, buf, cap);
    close(fd);
    if (r < 0)
        return remex_seterr(e, REMEX_EIO, "%s: %s", path, strerror(errno));
    *n = (size_t)r;
    return REMEX_OK;
}

/* Creates path with mode 0600 holding n bytes; fails if it appeared meanwhile. */
static remex_err write_secret_file(const char *path, const void *data, size_t n,
                                   struct remex_error *e)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return remex_seterr(e, REMEX_EIO, "%s: create: %s", path, strerror(errno));
    ssize_t w = write(fd, data, n);
    int ok = w == (ssize_t)n && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        unlink(path);
        return remex_seterr(e, REMEX_EIO, "%s: write failed", path);
    }
    return REMEX_OK;
}

static remex_err load_admin_token(struct plane *p, struct remex_error *e)
{
    unsigned char buf[sizeof(p->admin_token)];
    size_t n = 0;
    remex_err rc = read_secret_file(p->cfg.admin_token_file, buf, sizeof(buf), &n, e);
    if (rc == REMEX_ENOTFOUND) {
        unsigned char raw[TOKEN_SECRET_BYTES];
        char tok[80];
        if (RAND_bytes(raw, sizeof(raw)) != 1)
            return remex_seterr(e, REMEX_ESYS, "RAND_bytes failed");
        memcpy(tok, "rmxadm_", 7);
        b64url(raw, sizeof(raw), tok + 7);
        OPENSSL_cleanse(raw, sizeof(raw));
        size_t len = strlen(tok);
        tok[len] = '\n';
        rc = write_secret_file(p->cfg.admin_token_file, tok, len + 1, e);
        OPENSSL_cleanse(tok, sizeof(tok));
        if (rc)
            return rc;
        log_info("auth: created admin token file %s (mode 0600)", p->cfg.admin_token_file);
        rc = read_secret_file(p->cfg.admin_token_file, buf, sizeof(buf), &n, e);
    }
    if (rc)
        return rc;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    if (n < ADMIN_TOKEN_MIN || n >= sizeof(p->admin_token) || memchr(buf, '\0', n))
        return remex_seterr(e, REMEX_EINVAL, "%s: admin token must be %d to %zu bytes",
                            p->cfg.admin_token_file, ADMIN_TOKEN_MIN, sizeof(p->admin_token) - 1);
    if (n < ADMIN_TOKEN_WEAK)
        log_warn("auth: %s: admin token shorter than %d bytes; prefer a generated one",
                 p->cfg.admin_token_file, ADMIN_TOKEN_WEAK);
    memcpy(p->admin_token, buf, n);
    p->admin_token[n] = '\0';
    OPENSSL_cleanse(buf, sizeof(buf));
    return REMEX_OK;
}

static remex_err load_signing_key(struct plane *p, struct remex_error *e)
{
    unsigned char buf[64];
    size_t n = 0;
    remex_err rc = read_secret_file(p->cfg.signing_key_file, buf, sizeof(buf), &n, e);
    if (rc == REMEX_ENOTFOUND) {
        if (RAND_bytes(buf, sizeof(p->key)) != 1)
            return remex_seterr(e, REMEX_ESYS, "RAND_bytes failed");
        rc = write_secret_file(p->cfg.signing_key_file, buf, sizeof(p->key), e);
        if (rc)
            return rc;
        log_info("auth: created signing key file %s (mode 0600)", p->cfg.signing_key_file);
        n = sizeof(p->key);
    } else if (rc) {
        return rc;
    }
    if (n != sizeof(p->key))
        return remex_seterr(e, REMEX_EINVAL, "%s: signing key must be exactly %zu bytes",
                            p->cfg.signing_key_file, sizeof(p->key));
    memcpy(p->key, buf, sizeof(p->key));
    OPENSSL_cleanse(buf, sizeof(buf));
    return REMEX_OK;
}

/* An HMAC-SHA256 context keyed with the signing key, or NULL (libjwt signs). */
static EVP_MAC_CTX *mac_new(const unsigned char *key, size_t n)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    EVP_MAC_free(mac); /* the context keeps its own reference */
    if (ctx && EVP_MAC_init(ctx, key, n, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

remex_err auth_init(struct plane *p, struct remex_error *e)
{
    struct authc *c = calloc(1, sizeof(*c));
    if (!c || pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    p->auth = c;
    if (!g_sha256)
        g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    remex_err rc = load_admin_token(p, e);
    if (rc)
        return rc;
    sha256(p->admin_token, strlen(p->admin_token), c->admin_hash);
    if ((rc = load_signing_key(p, e)))
        return rc;
    c->mac = mac_new(p->key, sizeof(p->key));
    return REMEX_OK;
}

void auth_free(struct plane *p)
{
    struct authc *c = p->auth;
    if (!c)
        return;
    pthread_mutex_destroy(&c->mu);
    for (size_t i = 0; i < JWT_CACHE_N; i++)
        if (c->ent[i].tok) {
            OPENSSL_cleanse(c->ent[i].tok, c->ent[i].len);
            free(c->ent[i].tok);
        }
    EVP_MAC_CTX_free(c->mac);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
    p->auth = NULL;
    EVP_MD_free(g_sha256);
    g_sha256 = NULL;
}

remex_err auth_agent_token_new(int64_t id, char **out, unsigned char hash[32],
                               struct remex_error *e)
{
    unsigned char raw[TOKEN_SECRET_BYTES];
    char secret[64], *tok;
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return remex_seterr(e, REMEX_ESYS, "RAND_bytes failed");
    b64url(raw, sizeof(raw), secret);
    OPENSSL_cleanse(raw, sizeof(raw));
    if (asprintf(&tok, "rmx_%lld_%s", (long long)id, secret) < 0)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    OPENSSL_cleanse(secret, sizeof(secret));
    sha256(tok, strlen(tok), hash);
    *out = tok;
    return REMEX_OK;
}

static remex_err sign(struct plane *p, jwt_t *j, char **out, struct remex_error *e)
{
    if (jwt_set_alg(j, JWT_ALG_HS256, p->key, (int)sizeof(p->key)) != 0)
        return remex_seterr(e, REMEX_EINVAL, "jwt: cannot set HS256");
    char *s = jwt_encode_str(j);
    if (!s)
        return remex_seterr(e, REMEX_ENOMEM, "jwt: encode failed");
    *out = s;
    return REMEX_OK;
}

remex_err auth_session_token(struct plane *p, int64_t agent_id, int64_t token_id, int64_t session,
                             char **out, int64_t *exp_ms, struct remex_error *e)
{
    jwt_t *j = NULL;
    int64_t now = plane_now_ms();
    int64_t exp = (now + p->cfg.session_ttl_ms) / 1000;
    if (jwt_new(&j) != 0)
        return remex_seterr(e, REMEX_ENOMEM, "jwt: out of memory");
    remex_err rc = REMEX_OK;
    if (jwt_add_grant_int(j, "sub", (long)agent_id) ||
        jwt_add_grant_int(j, "tid", (long)token_id) || jwt_add_grant_int(j, "sid", (long)session) ||
        jwt_add_grant(j, "typ", "session") || jwt_add_grant_int(j, "iat", (long)(now / 1000)) ||
        jwt_add_grant_int(j, "exp", (long)exp))
        rc = remex_seterr(e, REMEX_ENOMEM, "jwt: cannot add claims");
    else
        rc = sign(p, j, out, e);
    jwt_free(j);
    if (!rc)
        *exp_ms = exp * 1000;
    return rc;
}

/* HS256 over the n bytes at in, as base64url into out (44 bytes). 0 or -1. */
static int hs256(struct authc *c, const char *in, size_t n, char *out)
{
    unsigned char mac[32];
    size_t len = 0;
    pthread_mutex_lock(&c->mu);
    int ok = EVP_MAC_init(c->mac, NULL, 0, NULL) == 1 &&
             EVP_MAC_update(c->mac, (const unsigned char *)in, n) == 1 &&
             EVP_MAC_final(c->mac, mac, &len, sizeof(mac)) == 1 && len == sizeof(mac);
    pthread_mutex_unlock(&c->mu);
    if (ok)
        b64url(mac, sizeof(mac), out);
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok ? 0 : -1;
}

/* The task JWT built directly: the header libjwt writes, the claims of
 * auth_task_token, the HS256 signature. *out malloc'd. */
static remex_err task_jwt(struct authc *c, const struct plane_principal *w, int64_t iat, char **out,
                          struct remex_error *e)
{
    /* {"alg":"HS256","typ":"JWT"} */
    static const char head[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
    char claims[256], tok[512];
    int cn = snprintf(claims, sizeof(claims),
                      "{\"agent\":%lld,\"exp\":%lld,\"iat\":%lld,\"run\":%lld,\"ti\":%lld,"
                      "\"try\":%lld,\"typ\":\"task\"}",
                      (long long)w->agent_id, (long long)(w->exp_ms / 1000), (long long)iat,
                      (long long)w->run_id, (long long)w->ti_id, (long long)w->try_number);
    if (cn < 0 || (size_t)cn >= sizeof(claims))
        return remex_seterr(e, REMEX_EINVAL, "jwt: claims too long");
    size_t n = sizeof(head) - 1;
    memcpy(tok, head, n);
    tok[n++] = '.';
    b64url((const unsigned char *)claims, (size_t)cn, tok + n);
    n += strlen(tok + n);
    tok[n++] = '.';
    if (hs256(c, tok, n - 1, tok + n) != 0)
        return remex_seterr(e, REMEX_ESYS, "jwt: HMAC failed");
    if (!(*out = strdup(tok)))
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    return REMEX_OK;
}

remex_err auth_task_token(struct plane *p, int64_t agent_id, int64_t ti_id, int64_t try_number,
                          int64_t run_id, char **out, struct remex_error *e)
{
    struct authc *c = p->auth;
    int64_t now = plane_now_ms();
    long exp = (long)((now + TASK_TOKEN_TTL_MS) / 1000);
    struct plane_principal who = {.kind = AUTHZ_TASK,
                                  .agent_id = agent_id,
                                  .ti_id = ti_id,
                                  .try_number = try_number,
                                  .run_id = run_id,
                                  .exp_ms = (int64_t)exp * 1000};
    remex_err rc;
    if (c && c->mac) {
        rc = task_jwt(c, &who, now / 1000, out, e);
    } else {
        jwt_t *j = NULL;
        if (jwt_new(&j) != 0)
            return remex_seterr(e, REMEX_ENOMEM, "jwt: out of memory");
        if (jwt_add_grant(j, "typ", "task") || jwt_add_grant_int(j, "agent", (long)agent_id) ||
            jwt_add_grant_int(j, "ti", (long)ti_id) ||
            jwt_add_grant_int(j, "try", (long)try_number) ||
            jwt_add_grant_int(j, "run", (long)run_id) ||
            jwt_add_grant_int(j, "iat", (long)(now / 1000)) || jwt_add_grant_int(j, "exp", exp))
            rc = remex_seterr(e, REMEX_ENOMEM, "jwt: cannot add claims");
        else
            rc = sign(p, j, out, e);
        jwt_free(j);
    }
    /* What verify_jwt would decode from it: its first use skips the HMAC. */
    if (rc == REMEX_OK && agent_id > 0 && ti_id > 0 && try_number >= 0)
        jwt_cache_put(p, *out, strlen(*out), &who);
    return rc;
}

/* ---- verification ---- */

/* h: SHA-256 of the presented token. Constant time. */
static int is_admin(struct plane *p, const unsigned char h[32])
{
    const struct authc *c = p->auth;
    return p->admin_token[0] && c && CRYPTO_memcmp(h, c->admin_hash, 32) == 0;
}

/* Checks that an agent token is neither revoked nor expired (mu held): token
 * *id, or with agent > 0 the token of that agent (its id stored in *id, one
 * query for both). hash, when set, must match. 0 or 401. */
static int token_usable(struct plane *p, int64_t *id, int64_t agent, const unsigned char *hash,
                        char *why, size_t whysz)
{
    int status = 401;
    int64_t now = plane_now_ms(), last_used = now;
    sqlite3_stmt *st =
        agent > 0
            ? store_stmt(p, "SELECT t.hash, t.expires_ms, t.revoked_ms, t.last_used_ms, t.id"
                            " FROM agents a JOIN tokens t ON t.id = a.token_id WHERE a.id = ?")
            : store_stmt(p, "SELECT hash, expires_ms, revoked_ms, last_used_ms, id FROM tokens"
                            " WHERE id = ?");
    if (!st) {
        snprintf(why, whysz, "token lookup: %s", sqlite3_errmsg(p->db));
        return 401;
    }
    sqlite3_bind_int64(st, 1, agent > 0 ? agent : *id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        if (agent > 0)
            snprintf(why, whysz, "task token for unknown agent %lld", (long long)agent);
        else
            snprintf(why, whysz, "agent token %lld does not exist", (long long)*id);
    } else if ((*id = sqlite3_column_int64(st, 4)) <= 0) {
        snprintf(why, whysz, "agent token lookup: no id");
    } else if (hash && (sqlite3_column_bytes(st, 0) != 32 ||
                        CRYPTO_memcmp(sqlite3_column_blob(st, 0), hash, 32) != 0)) {
        snprintf(why, whysz, "agent token %lld: value does not match", (long long)*id);
    } else if (sqlite3_column_int64(st, 2) != 0) {
        snprintf(why, whysz, "agent token %lld is revoked", (long long)*id);
    } else if (sqlite3_column_int64(st, 1) != 0 && sqlite3_column_int64(st, 1) <= now) {
        snprintf(why, whysz, "agent token %lld is expired", (long long)*id);
    } else {
        status = 0;
        last_used = sqlite3_column_int64(st, 3);
    }
    sqlite3_reset(st);
    if (status == 0 && now - last_used >= 1000 &&
        (st = store_stmt(p, "UPDATE tokens SET last_used_ms = ? WHERE id = ?"))) {
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_int64(st, 2, *id);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    return status;
}

static int verify_agent_token(struct plane *p, const char *tok, const unsigned char hash[32],
                              struct plane_principal *who, char *why, size_t whysz)
{
    const char *s = tok + 4, *us = strchr(s, '_');
    char num[24];
    if (!us || us == s || (size_t)(us - s) >= sizeof(num)) {
        snprintf(why, whysz, "malformed agent token");
        return 401;
    }
    memcpy(num, s, (size_t)(us - s));
    num[us - s] = '\0';
    char *end = NULL;
    errno = 0;
    long long id = strtoll(num, &end, 10);
    if (errno || *end || id <= 0) {
        snprintf(why, whysz, "malformed agent token id");
        return 401;
    }
    int64_t tid = id;
    pthread_mutex_lock(&p->mu);
    int st = token_usable(p, &tid, 0, hash, why, whysz);
    pthread_mutex_unlock(&p->mu);
    if (st)
        return st;
    who->kind = AUTHZ_AGENT_TOKEN;
    who->token_id = id;
    return 0;
}

/* Claim as int64, -1 when missing. */
static int64_t claim(jwt_t *j, const char *name)
{
    errno = 0;
    long v = jwt_get_grant_int(j, name);
    if (errno)
        return -1;
    return (int64_t)v;
}

/* Session: the session must be current and its agent token usable (mu held). */
static int session_current(struct plane *p, struct plane_principal *who, char *why, size_t whysz)
{
    if (!agents_session_valid(p, who->agent_id, who->session, &who->roles)) {
        snprintf(why, whysz,
                 "session %lld of agent %lld is not current (superseded, lost or"
                 " offline)",
                 (long long)who->session, (long long)who->agent_id);
        return 401;
    }
    int64_t tid = who->token_id;
    return token_usable(p, &tid, 0, NULL, why, whysz);
}

/* Task: its agent must exist and hold a usable agent token (mu held). */
static int task_agent_ok(struct plane *p, struct plane_principal *who, char *why, size_t whysz)
{
    return token_usable(p, &who->token_id, who->agent_id, NULL, why, whysz);
}

/* Signature (HS256 only), typ and claims of tok; fills who (exp_ms included,
 * not compared with the clock). 0 or 401. */
static int decode_jwt(struct plane *p, const char *tok, struct plane_principal *who, char *why,
                      size_t whysz)
{
    jwt_t *j = NULL;
    if (jwt_decode(&j, tok, p->key, (int)sizeof(p->key)) != 0 || !j) {
        snprintf(why, whysz, "JWT malformed or signature invalid");
        return 401;
    }
    int status = 401;
    const char *typ = jwt_get_grant(j, "typ");
    int64_t exp = claim(j, "exp");
    if (jwt_get_alg(j) != JWT_ALG_HS256) {
        snprintf(why, whysz, "JWT alg is not HS256");
    } else if (exp < 0) {
        snprintf(why, whysz, "JWT expired or without exp");
    } else if (typ && strcmp(typ, "session") == 0) {
        who->kind = AUTHZ_SESSION;
        who->agent_id = claim(j, "sub");
        who->token_id = claim(j, "tid");
        who->session = claim(j, "sid");
        status = 0;
    } else if (typ && strcmp(typ, "task") == 0) {
        who->kind = AUTHZ_TASK;
        who->agent_id = claim(j, "agent");
        who->ti_id = claim(j, "ti");
        who->try_number = claim(j, "try");
        who->run_id = claim(j, "run");
        status = 0;
    } else {
        snprintf(why, whysz, "JWT typ missing or unknown");
    }
    jwt_free(j);
    if (status)
        return status;
    who->exp_ms = exp * 1000;
    if (who->agent_id <= 0 ||
        (who->kind == AUTHZ_SESSION && (who->token_id <= 0 || who->session <= 0)) ||
        (who->kind == AUTHZ_TASK && (who->ti_id <= 0 || who->try_number < 0))) {
        snprintf(why, whysz, "JWT claims missing or invalid");
        return 401;
    }
    return 0;
}

/* cached: tok was found in the verified-token cache (who filled). */
static int verify_jwt(struct plane *p, const char *tok, size_t n, int cached,
                      struct plane_principal *who, char *why, size_t whysz)
{
    if (!cached) {
        int status = decode_jwt(p, tok, who, why, whysz);
        if (status)
            return status;
        jwt_cache_put(p, tok, n, who);
    }
    if (who->exp_ms <= plane_now_ms()) {
        snprintf(why, whysz, "JWT expired or without exp");
        return 401;
    }
    pthread_mutex_lock(&p->mu);
    int status = who->kind == AUTHZ_SESSION ? session_current(p, who, why, whysz)
                                            : task_agent_ok(p, who, why, whysz);
    pthread_mutex_unlock(&p->mu);
    return status;
}

static const char *kind_name(enum plane_authz k)
{
    switch (k) {
    case AUTHZ_ADMIN:
        return "admin token";
    case AUTHZ_AGENT_TOKEN:
        return "agent token";
    case AUTHZ_SESSION:
        return "session token";
    case AUTHZ_SESSION_OR_ADMIN:
        return "session or admin token";
    case AUTHZ_TASK:
        return "task token";
    default:
        return "none";
    }
}

int auth_check(struct plane *p, const char *bearer, enum plane_authz want,
               struct plane_principal *who, char *why, size_t whysz)
{
    memset(who, 0, sizeof(*who));
    why[0] = '\0';
    if (want == AUTHZ_NONE)
        return 0;
    if (!bearer || !*bearer) {
        snprintf(why, whysz, "missing Authorization header");
        return 401;
    }
    if (strncasecmp(bearer, "Bearer ", 7) != 0) {
        snprintf(why, whysz, "Authorization is not a Bearer credential");
        return 401;
    }
    const char *tok = bearer + 7;
    while (*tok == ' ')
        tok++;
    size_t n = strlen(tok);
    if (n == 0 || n > BEARER_MAX) {
        snprintf(why, whysz, "bearer credential empty or over %d bytes", BEARER_MAX);
        return 401;
    }
    int st;
    unsigned char h[32];
    /* A remembered JWT is the plane's own: neither the admin token nor an
     * agent token, so no digest is needed to tell. */
    int cached = strncmp(tok, "rmx_", 4) != 0 && jwt_cache_get(p, tok, n, who);
    if (!cached)
        sha256(tok, n, h);
    if (cached) {
        st = verify_jwt(p, tok, n, 1, who, why, whysz);
    } else if (is_admin(p, h)) {
        who->kind = AUTHZ_ADMIN;
        st = 0;
    } else if (strncmp(tok, "rmx_", 4) == 0) {
        st = verify_agent_token(p, tok, h, who, why, whysz);
    } else if (strchr(tok, '.')) {
        st = verify_jwt(p, tok, n, 0, who, why, whysz);
    } else {
        snprintf(why, whysz, "unrecognised credential");
        st = 401;
    }
    if (st)
        return st;
    int ok = who->kind == want || (want == AUTHZ_SESSION_OR_ADMIN &&
                                   (who->kind == AUTHZ_SESSION || who->kind == AUTHZ_ADMIN));
    if (!ok) {
        snprintf(why, whysz, "%s presented on a route that needs a %s", kind_name(who->kind),
                 kind_name(want));
        return 403;
    }
    return 0;
}

int auth_check_token(struct plane *p, const char *token, enum plane_authz want,
                     struct plane_principal *who, char *why, size_t whysz)
{
    char bearer[BEARER_MAX + 8];
    size_t n = token ? strlen(token) : 0;
    if (n == 0 || n > BEARER_MAX) {
        memset(who, 0, sizeof(*who));
        snprintf(why, whysz, "credential empty or over %d bytes", BEARER_MAX);
        return 401;
    }
    memcpy(bearer, "Bearer ", 7);
    memcpy(bearer + 7, token, n + 1);
    int st = auth_check(p, bearer, want, who, why, whysz);
    OPENSSL_cleanse(bearer, sizeof(bearer));
    return st;
}
