/*
 * The plane's TLS certificate: a TLS handshake with the plane's host and
 * port, non-blocking on the role's loop, reading the leaf certificate's
 * notAfter. Verification is not its job (the API client verifies every
 * call); this probe only reads the date. It runs at start and then every
 * TLS_EVERY_MS, each attempt bounded by TLS_TIMEOUT_MS. A host name is
 * resolved once, at start (the loop never waits on DNS afterwards); an IP
 * literal needs no resolution.
 */
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "remex/evloop.h"
#include "remex/log.h"
#include "sentinel.h"

#define TLS_EVERY_MS   600000
#define TLS_TIMEOUT_MS 10000

struct tlsprobe {
    struct sentinel *s;
    char host[256];
    int numeric;
    struct sockaddr_storage sa;
    socklen_t salen;
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
    uint64_t timer;
    uint64_t last_ms; /* start of the last attempt, 0: never */
};

/* host and port of an https URL ("[v6]" brackets removed; port 443 when absent). */
static int parse_url(const char *url, char *host, size_t hostsz, char *port, size_t portsz)
{
    const char *h = url + strlen("https://"), *end = h + strcspn(h, "/?#");
    const char *hs = h, *he, *ps = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb || (rb + 1 < end && rb[1] != ':'))
            return -1;
        hs = h + 1;
        he = rb;
        ps = rb + 1 < end ? rb + 2 : NULL;
    } else {
        const char *c = memchr(h, ':', (size_t)(end - h));
        he = c ? c : end;
        ps = c ? c + 1 : NULL;
    }
    size_t hl = (size_t)(he - hs), pl = ps ? (size_t)(end - ps) : 3;
    if (hl == 0 || hl >= hostsz || pl == 0 || pl >= portsz)
        return -1;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    memcpy(port, ps ? ps : "443", pl);
    port[pl] = '\0';
    return 0;
}

struct tlsprobe *tlsprobe_new(struct sentinel *s, const char *url, struct remex_error *e)
{
    char port[16];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    struct tlsprobe *t = calloc(1, sizeof(*t));
    if (!t) {
        remex_seterr(e, REMEX_ENOMEM, "out of memory");
        return NULL;
    }
    t->s = s;
    t->fd = -1;
    if (parse_url(url, t->host, sizeof(t->host), port, sizeof(port)) != 0) {
        remex_seterr(e, REMEX_EINVAL, "cannot read host and port of the plane URL");
        goto fail;
    }
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    t->numeric = getaddrinfo(t->host, port, &hints, &ai) == 0;
    if (!t->numeric) {
        hints.ai_flags = AI_NUMERICSERV;
        int rc = getaddrinfo(t->host, port, &hints, &ai);
        if (rc != 0) {
            remex_seterr(e, REMEX_ECONNECT, "%s: %s", t->host, gai_strerror(rc));
            goto fail;
        }
    }
    memcpy(&t->sa, ai->ai_addr, ai->ai_addrlen);
    t->salen = ai->ai_addrlen;
    freeaddrinfo(ai);
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (!t->ctx || !SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION)) {
        remex_seterr(e, REMEX_ETLS, "cannot set up a TLS context");
        goto fail;
    }
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
    return t;
fail:
    tlsprobe_free(t);
    return NULL;
}

static void close_conn(struct tlsprobe *t)
{
    if (t->timer)
        evloop_timer_cancel(t->s->loop, t->timer);
    t->timer = 0;
    if (t->fd >= 0) {
        evloop_unwatch(t->s->loop, t->fd);
        close(t->fd);
    }
    t->fd = -1;
    SSL_free(t->ssl);
    t->ssl = NULL;
}

static void fail(struct tlsprobe *t, const char *why)
{
    snprintf(t->s->tls_err, sizeof(t->s->tls_err), "plane certificate of %s: %s", t->host, why);
    close_conn(t);
}

static void got_cert(struct tlsprobe *t, X509 *cert)
{
    struct tm tm;
    const ASN1_TIME *na = cert ? X509_get0_notAfter(cert) : NULL;
    if (!na || !ASN1_TIME_to_tm(na, &tm)) {
        fail(t, "no readable certificate");
        return;
    }
    t->s->tls_not_after_ms = (int64_t)timegm(&tm) * 1000;
    t->s->tls_err[0] = '\0';
    SSL_shutdown(t->ssl); /* close_notify (non-blocking: sent or not, the probe is done) */
    close_conn(t);
}

static void step(struct tlsprobe *t)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        X509 *cert = SSL_get1_peer_certificate(t->ssl);
        got_cert(t, cert);
        X509_free(cert);
        return;
    }
    int err = SSL_get_error(t->ssl, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        evloop_modify(t->s->loop, t->fd, err == SSL_ERROR_WANT_READ ? EVLOOP_READ : EVLOOP_WRITE,
                      NULL);
        return;
    }
    char buf[160];
    unsigned long code = ERR_peek_last_error();
    if (code)
        ERR_error_string_n(code, buf, sizeof(buf));
    else
        snprintf(buf, sizeof(buf), "handshake failed");
    ERR_clear_error();
    fail(t, buf);
}

static void on_io(struct evloop *loop, int fd, unsigned events, void *arg)
{
    (void)loop;
    (void)events;
    struct tlsprobe *t = arg;
    if (!t->ssl) { /* the connect finished */
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(t, strerror(err));
            return;
        }
        if (!(t->ssl = SSL_new(t->ctx)) || !SSL_set_fd(t->ssl, fd) ||
            (!t->numeric && !SSL_set_tlsext_host_name(t->ssl, t->host))) {
            fail(t, "cannot start TLS");
            return;
        }
        SSL_set_connect_state(t->ssl);
    }
    step(t);
}

static void on_timeout(struct evloop *loop, uint64_t id, void *arg)
{
    (void)loop;
    (void)id;
    struct tlsprobe *t = arg;
    t->timer = 0;
    fail(t, "no handshake within 10 s");
}

void tlsprobe_run(struct tlsprobe *t)
{
    uint64_t now = evloop_now_ms(t->s->loop);
    if (t->fd >= 0 || (t->last_ms && now - t->last_ms < TLS_EVERY_MS && !t->s->tls_err[0]))
        return;
    if (t->last_ms && now - t->last_ms < TLS_TIMEOUT_MS)
        return;
    t->last_ms = now;
    t->fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (t->fd < 0) {
        fail(t, strerror(errno));
        return;
    }
    if (connect(t->fd, (struct sockaddr *)&t->sa, t->salen) != 0 && errno != EINPROGRESS) {
        fail(t, strerror(errno));
        return;
    }
    struct remex_error e;
    if (evloop_watch(t->s->loop, t->fd, EVLOOP_WRITE, on_io, t, &e) != REMEX_OK) {
        fail(t, e.msg);
        return;
    }
    t->timer = evloop_timer_add(t->s->loop, TLS_TIMEOUT_MS, 0, on_timeout, t);
}

void tlsprobe_free(struct tlsprobe *t)
{
    if (!t)
        return;
    close_conn(t);
    SSL_CTX_free(t->ctx);
    free(t);
}
