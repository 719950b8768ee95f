/*
 * health: checks and grading rules (include/remex/health.h).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "remex/health.h"
#include "remex/timeutil.h"

const char *health_status_name(enum health_status s)
{
    return s == HEALTH_OK ? "ok" : s == HEALTH_WARN ? "warn" : "fail";
}

const char *health_plane_status(enum health_status s)
{
    return s == HEALTH_OK ? "ok" : s == HEALTH_WARN ? "degraded" : "failing";
}

struct health_check *health_set(struct health_set *h, const char *name, enum health_status st,
                                const char *fmt, ...)
{
    struct health_check *c = (struct health_check *)health_get(h, name);
    size_t nl = strlen(name);
    if (!c) {
        if (h->n >= HEALTH_CHECKS_MAX || nl == 0 || nl >= HEALTH_NAME_MAX)
            return NULL;
        c = &h->checks[h->n++];
        memcpy(c->name, name, nl + 1);
    }
    c->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
    return c;
}

const struct health_check *health_get(const struct health_set *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->checks[i].name, name) == 0)
            return &h->checks[i];
    return NULL;
}

enum health_status health_overall(const struct health_set *h)
{
    enum health_status w = HEALTH_OK;
    for (size_t i = 0; i < h->n; i++)
        if (h->checks[i].status > w)
            w = h->checks[i].status;
    return w;
}

static json_t *checks_json(const struct health_set *h, int all,
                           const char *(*name)(enum health_status))
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < h->n; i++) {
        const struct health_check *c = &h->checks[i];
        if (!all && c->status != HEALTH_FAIL)
            continue;
        json_t *o = json_pack("{s:s,s:s}", "name", c->name, "status", name(c->status));
        if (o && c->msg[0])
            json_object_set_new(o, "message", json_string(c->msg));
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *health_json(const struct health_set *h, int all)
{
    json_t *checks = checks_json(h, all, health_status_name);
    if (!checks)
        return NULL;
    return json_pack("{s:s,s:o}", "status", health_status_name(health_overall(h)), "checks",
                     checks);
}

json_t *health_report_body(const struct health_set *h)
{
    json_t *checks = checks_json(h, 1, health_plane_status);
    if (!checks)
        return NULL;
    return json_pack("{s:s,s:o}", "status", health_plane_status(health_overall(h)), "checks",
                     checks);
}

/* "12.3 GiB" */
static void human_bytes(uint64_t v, char *out, size_t outsz)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double d = (double)v;
    size_t u = 0;
    while (d >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        d /= 1024.0;
        u++;
    }
    snprintf(out, outsz, u ? "%.1f %s" : "%.0f %s", d, units[u]);
}

enum health_status health_grade_disk(uint64_t avail, uint64_t total, int64_t warn_pct,
                                     int64_t fail_pct, char *msg, size_t msgsz)
{
    char a[32], t[32];
    if (total == 0) {
        snprintf(msg, msgsz, "no space on this file system");
        return HEALTH_FAIL;
    }
    if (avail > total)
        avail = total;
    double pct = 100.0 * (double)avail / (double)total;
    human_bytes(avail, a, sizeof(a));
    human_bytes(total, t, sizeof(t));
    enum health_status st = pct < (double)fail_pct   ? HEALTH_FAIL
                            : pct < (double)warn_pct ? HEALTH_WARN
                                                     : HEALTH_OK;
    snprintf(msg, msgsz, "%s free of %s (%.1f%%%s)", a, t, pct,
             st == HEALTH_FAIL   ? ", below the failure threshold"
             : st == HEALTH_WARN ? ", below the warning threshold"
                                 : "");
    return st;
}

enum health_status health_grade_expiry(const char *what, int64_t expires_ms, int64_t now_ms,
                                       uint64_t warn_ms, char *msg, size_t msgsz)
{
    char when[TIMEUTIL_RFC3339_MAX];
    if (expires_ms <= 0) {
        snprintf(msg, msgsz, "%s expiry not known", what);
        return HEALTH_OK;
    }
    if (timeutil_rfc3339_format(expires_ms, 0, when, sizeof(when)) != REMEX_OK)
        snprintf(when, sizeof(when), "?");
    int64_t left = expires_ms - now_ms;
    if (left <= 0) {
        snprintf(msg, msgsz, "%s expired at %s", what, when);
        return HEALTH_FAIL;
    }
    int64_t days = left / 86400000, hours = (left % 86400000) / 3600000;
    snprintf(msg, msgsz, "%s expires at %s (in %" PRId64 "d %" PRId64 "h)", what, when, days,
             hours);
    return (uint64_t)left <= warn_ms ? HEALTH_WARN : HEALTH_OK;
}
