/* helper_httpd: libmicrohttpd test server on 127.0.0.1 (see helper_httpd.h). */
#include "helper_httpd.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BODY_MAX (1u << 20)

struct httpd {
    struct MHD_Daemon *d;
    unsigned port;
    char url[64];
    pthread_mutex_t mu;
    int hits;
    int route_hits;
    int connections;
    char method[16], path[256], ua[256], auth[256];
};

struct conn {
    char *body;
    size_t len;
    int too_big;
};

static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body,
                             size_t len, const char *retry_after)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (retry_after)
        MHD_add_response_header(r, "Retry-After", retry_after);
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static ssize_t chunk_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    uint64_t total = (uint64_t)(uintptr_t)cls;
    size_t n;

    if (pos >= total)
        return MHD_CONTENT_READER_END_OF_STREAM;
    n = (size_t)(total - pos) < max ? (size_t)(total - pos) : max;
    if (n > 1000)
        n = 1000;
    memset(buf, 'c', n);
    return (ssize_t)n;
}

static const char *after(const char *url, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(url, prefix, n) == 0 ? url + n : NULL;
}

static long num(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return (*end != '\0' || v < 0) ? 0 : v;
}

static int next_route_hit(struct httpd *h)
{
    int n;
    pthread_mutex_lock(&h->mu);
    n = ++h->route_hits;
    pthread_mutex_unlock(&h->mu);
    return n;
}

static enum MHD_Result route(struct httpd *h, struct MHD_Connection *c, const char *url,
                             struct conn *cn)
{
    static const char ok[] = "{\"ok\":true}";
    char body[256];
    const char *a;

    if (strcmp(url, "/ok") == 0)
        return reply(c, 200, ok, strlen(ok), NULL);
    if (strcmp(url, "/echo") == 0)
        return reply(c, 200, cn->body ? cn->body : "", cn->len, NULL);
    if (strcmp(url, "/text") == 0)
        return reply(c, 200, "not json", 8, NULL);
    if ((a = after(url, "/status/")) != NULL) {
        long st = num(a);
        int n =
            snprintf(body, sizeof(body),
                     "{\"error\":{\"code\":\"c_%ld\",\"message\":\"message for %ld\"}}", st, st);
        return reply(c, (unsigned)st, body, (size_t)n, NULL);
    }
    if ((a = after(url, "/slow/")) != NULL) {
        long ms = num(a);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        return reply(c, 200, ok, strlen(ok), NULL);
    }
    if ((a = after(url, "/big/")) != NULL) {
        size_t n = (size_t)num(a);
        char *p = malloc(n ? n : 1);
        enum MHD_Result r;
        if (p == NULL)
            return MHD_NO;
        memset(p, 'b', n);
        r = reply(c, 200, p, n, NULL);
        free(p);
        return r;
    }
    if ((a = after(url, "/chunked/")) != NULL) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1000, chunk_cb,
                                                                   (void *)(uintptr_t)num(a), NULL);
        enum MHD_Result ret;
        if (r == NULL)
            return MHD_NO;
        ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if ((a = after(url, "/flaky/")) != NULL) {
        int hit = next_route_hit(h);
        if (hit <= num(a))
            return reply(c, 503, "{}", 2, NULL);
        int n = snprintf(body, sizeof(body), "{\"ok\":true,\"hit\":%d}", hit);
        return reply(c, 200, body, (size_t)n, NULL);
    }
    if ((a = after(url, "/retry-after/")) != NULL) {
        if (next_route_hit(h) == 1)
            return reply(c, 503, "{}", 2, a);
        return reply(c, 200, ok, strlen(ok), NULL);
    }
    if ((a = after(url, "/retry-after-date/")) != NULL) {
        if (next_route_hit(h) == 1) {
            char date[64];
            time_t t = time(NULL) + num(a);
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
            return reply(c, 503, "{}", 2, date);
        }
        return reply(c, 200, ok, strlen(ok), NULL);
    }
    return reply(c, 404, "{}", 2, NULL);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    struct httpd *h = cls;
    struct conn *cn = *con_cls;

    (void)version;
    if (cn == NULL) {
        cn = calloc(1, sizeof(*cn));
        if (cn == NULL)
            return MHD_NO;
        *con_cls = cn;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (cn->len + *upload_size > BODY_MAX) {
            cn->too_big = 1;
        } else {
            char *p = realloc(cn->body, cn->len + *upload_size + 1);
            if (p == NULL)
                return MHD_NO;
            memcpy(p + cn->len, upload, *upload_size);
            cn->body = p;
            cn->len += *upload_size;
            cn->body[cn->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&h->mu);
    h->hits++;
    copy_str(h->method, sizeof(h->method), method);
    copy_str(h->path, sizeof(h->path), url);
    copy_str(h->ua, sizeof(h->ua),
             MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_USER_AGENT));
    copy_str(h->auth, sizeof(h->auth),
             MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION));
    pthread_mutex_unlock(&h->mu);
    if (cn->too_big)
        return reply(c, 413, "{}", 2, NULL);
    return route(h, c, url, cn);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct conn *cn = *con_cls;

    (void)cls;
    (void)c;
    (void)toe;
    if (cn != NULL) {
        free(cn->body);
        free(cn);
        *con_cls = NULL;
    }
}

static void connected(void *cls, struct MHD_Connection *c, void **socket_ctx,
                      enum MHD_ConnectionNotificationCode code)
{
    struct httpd *h = cls;
    (void)c;
    (void)socket_ctx;
    if (code != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    pthread_mutex_lock(&h->mu);
    h->connections++;
    pthread_mutex_unlock(&h->mu);
}

struct httpd *httpd_start(void)
{
    struct httpd *h = calloc(1, sizeof(*h));
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;

    if (h == NULL)
        return NULL;
    pthread_mutex_init(&h->mu, NULL);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    h->d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, handler, h, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, completed,
        h, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_NOTIFY_CONNECTION, connected, h,
        MHD_OPTION_END);
    if (h->d == NULL || (info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT)) == NULL) {
        httpd_stop(h);
        return NULL;
    }
    h->port = info->port;
    snprintf(h->url, sizeof(h->url), "http://127.0.0.1:%u", h->port);
    return h;
}

void httpd_stop(struct httpd *h)
{
    if (h == NULL)
        return;
    if (h->d)
        MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

unsigned httpd_port(const struct httpd *h)
{
    return h->port;
}

const char *httpd_url(const struct httpd *h)
{
    return h->url;
}

void httpd_reset(struct httpd *h)
{
    pthread_mutex_lock(&h->mu);
    h->hits = 0;
    h->route_hits = 0;
    h->connections = 0;
    h->method[0] = h->path[0] = h->ua[0] = h->auth[0] = '\0';
    pthread_mutex_unlock(&h->mu);
}

int httpd_hits(struct httpd *h)
{
    int n;
    pthread_mutex_lock(&h->mu);
    n = h->hits;
    pthread_mutex_unlock(&h->mu);
    return n;
}

int httpd_connections(struct httpd *h)
{
    int n;
    pthread_mutex_lock(&h->mu);
    n = h->connections;
    pthread_mutex_unlock(&h->mu);
    return n;
}

void httpd_last(struct httpd *h, const char *what, char *out, unsigned cap)
{
    const char *src = "";
    pthread_mutex_lock(&h->mu);
    if (strcmp(what, "method") == 0)
        src = h->method;
    else if (strcmp(what, "path") == 0)
        src = h->path;
    else if (strcmp(what, "user-agent") == 0)
        src = h->ua;
    else if (strcmp(what, "authorization") == 0)
        src = h->auth;
    copy_str(out, cap, src);
    pthread_mutex_unlock(&h->mu);
}
