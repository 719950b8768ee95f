/*
 * health: the sentinel's checks as data, and the pure rules that grade them.
 *
 * A health set holds up to HEALTH_CHECKS_MAX named checks, each ok, warn or
 * fail with a one-line message (truncated to HEALTH_MSG_MAX - 1 bytes).
 * The overall status is the worst check. Checks render as the sentinel's
 * /health body ({"status":"ok|warn|fail","checks":[...]}) and as the plane's
 * HealthReport (docs/api/openapi.yaml), whose vocabulary is ok, degraded,
 * failing: warn maps to degraded and fail to failing.
 *
 * The grading functions take numbers and return a status with a message;
 * they read no clock and no file, so tests give them any situation.
 * Thread-safety: touches only its arguments.
 */
#ifndef REMEX_HEALTH_H
#define REMEX_HEALTH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define HEALTH_CHECKS_MAX 16
#define HEALTH_NAME_MAX   32
#define HEALTH_MSG_MAX    512

enum health_status { HEALTH_OK = 0, HEALTH_WARN = 1, HEALTH_FAIL = 2 };

struct health_check {
    char name[HEALTH_NAME_MAX];
    enum health_status status;
    char msg[HEALTH_MSG_MAX];
};

struct health_set {
    struct health_check checks[HEALTH_CHECKS_MAX];
    size_t n;
};

/* "ok", "warn", "fail". */
const char *health_status_name(enum health_status s);
/* The plane's vocabulary: "ok", "degraded", "failing". */
const char *health_plane_status(enum health_status s);

/*
 * Sets check name (added at the end when new; replaced in place otherwise).
 * Returns the check, or NULL when the set is full or name is too long.
 */
struct health_check *health_set(struct health_set *h, const char *name, enum health_status st,
                                const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Borrowed, NULL when absent. */
const struct health_check *health_get(const struct health_set *h, const char *name);
/* The worst status (HEALTH_OK for an empty set). */
enum health_status health_overall(const struct health_set *h);

/*
 * The sentinel's /health body (owned): every check when all is 1, else only
 * the failing ones (what a 503 names).
 */
json_t *health_json(const struct health_set *h, int all);
/* The plane's HealthReport body (owned). */
json_t *health_report_body(const struct health_set *h);

/* ---- grading rules ---- */

/*
 * Free space of one folder: avail and total in bytes (statvfs: f_bavail and
 * f_blocks times f_frsize). Below fail_pct percent free: fail; below
 * warn_pct: warn. A total of 0 is a failure (nothing to write on).
 */
enum health_status health_grade_disk(uint64_t avail, uint64_t total, int64_t warn_pct,
                                     int64_t fail_pct, char *msg, size_t msgsz);

/*
 * An expiry (epoch ms) seen at now_ms: past it fail, within warn_ms warn,
 * else ok. what names the thing ("agent token"). expires_ms 0: unknown (ok,
 * saying so).
 */
enum health_status health_grade_expiry(const char *what, int64_t expires_ms, int64_t now_ms,
                                       uint64_t warn_ms, char *msg, size_t msgsz);

#endif
