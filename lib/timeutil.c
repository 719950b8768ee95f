/* timeutil: clocks, RFC 3339 timestamps, durations and sizes. */
#include "remex/timeutil.h"

#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <time.h>

uint64_t timeutil_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t timeutil_mono_ms(void)
{
    return timeutil_mono_ns() / 1000000u;
}

void timeutil_sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int64_t timeutil_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t timeutil_real_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

int64_t timeutil_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void timeutil_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Earliest and latest epoch ms of years 0000 and 9999. */
#define RFC3339_MIN_MS (-62167219200000LL)
#define RFC3339_MAX_MS (253402300799999LL)

remex_err timeutil_rfc3339_format(int64_t epoch_ms, int with_ms, char *out, size_t outsz)
{
    int64_t days, secs, y;
    int m, d, n;

    if (outsz > 0)
        out[0] = '\0';
    if (epoch_ms < RFC3339_MIN_MS || epoch_ms > RFC3339_MAX_MS)
        return REMEX_EINVAL;
    /* floor division so that negative times format correctly */
    days = epoch_ms / 86400000;
    if (epoch_ms % 86400000 < 0)
        days--;
    int64_t rem = epoch_ms - days * 86400000;
    secs = rem / 1000;
    timeutil_civil_from_days(days, &y, &m, &d);
    if (with_ms)
        n = snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)y, m, d,
                     (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60),
                     (int)(rem % 1000));
    else
        n = snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)y, m, d, (int)(secs / 3600),
                     (int)(secs / 60 % 60), (int)(secs % 60));
    if (n < 0 || (size_t)n >= outsz) {
        if (outsz > 0)
            out[0] = '\0';
        return REMEX_ETOOBIG;
    }
    return REMEX_OK;
}

/* Reads exactly n decimal digits at *p; returns -1 if any is missing. */
static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    return v;
}

static int expect(const char **p, char c)
{
    if (**p != c)
        return -1;
    (*p)++;
    return 0;
}

static remex_err rfc_fail(struct remex_error *e, const char *why)
{
    return remex_seterr(e, REMEX_EPARSE, "invalid RFC 3339 timestamp: %s", why);
}

remex_err timeutil_rfc3339_parse(const char *s, int64_t *epoch_ms, struct remex_error *e)
{
    const char *p = s;
    int y, mo, d, h, mi, sec, ms = 0, off = 0;

    y = digits(&p, 4);
    if (y < 0 || expect(&p, '-') || (mo = digits(&p, 2)) < 0 || expect(&p, '-') ||
        (d = digits(&p, 2)) < 0)
        return rfc_fail(e, "expected YYYY-MM-DD");
    if (*p != 'T' && *p != 't')
        return rfc_fail(e, "expected 'T' between date and time");
    p++;
    if ((h = digits(&p, 2)) < 0 || expect(&p, ':') || (mi = digits(&p, 2)) < 0 || expect(&p, ':') ||
        (sec = digits(&p, 2)) < 0)
        return rfc_fail(e, "expected HH:MM:SS");
    if (*p == '.') {
        int nd = 0, scale = 100;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (nd < 3)
                ms += (*p - '0') * scale;
            scale /= 10;
            nd++;
            p++;
        }
        if (nd == 0 || nd > 9)
            return rfc_fail(e, "fractional seconds need 1 to 9 digits");
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if ((oh = digits(&p, 2)) < 0 || expect(&p, ':') || (om = digits(&p, 2)) < 0)
            return rfc_fail(e, "offset must be Z or +HH:MM / -HH:MM");
        if (oh > 23 || om > 59)
            return rfc_fail(e, "offset out of range");
        off = sign * (oh * 60 + om);
    } else {
        return rfc_fail(e, "missing time zone (Z or +HH:MM / -HH:MM)");
    }
    if (*p != '\0')
        return rfc_fail(e, "trailing characters");
    if (mo < 1 || mo > 12)
        return rfc_fail(e, "month must be 01-12");
    if (d < 1 || d > days_in_month(y, mo))
        return rfc_fail(e, "day does not exist in that month");
    if (h > 23)
        return rfc_fail(e, "hour must be 00-23");
    if (mi > 59)
        return rfc_fail(e, "minute must be 00-59");
    if (sec > 59)
        return rfc_fail(e, "second must be 00-59 (leap seconds are not supported)");
    int64_t t =
        timeutil_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off * 60;
    *epoch_ms = t * 1000 + ms;
    return REMEX_OK;
}

/* Parses decimal digits at *p into *v (overflow-checked). 0 if none, -1 on overflow. */
static int parse_u64(const char **p, uint64_t *v)
{
    const char *q = *p;
    uint64_t x = 0;
    while (*q >= '0' && *q <= '9') {
        unsigned dgt = (unsigned)(*q - '0');
        if (x > (UINT64_MAX - dgt) / 10)
            return -1;
        x = x * 10 + dgt;
        q++;
    }
    if (q == *p)
        return 0;
    *v = x;
    *p = q;
    return 1;
}

static const struct {
    const char *name;
    uint64_t ms;
} dur_units[] = {
    {"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1},
};
#define N_DUR_UNITS (sizeof(dur_units) / sizeof(dur_units[0]))

remex_err timeutil_duration_parse(const char *s, uint64_t *ms, struct remex_error *e)
{
    static const char syntax[] = "expected a duration like 30s, 5m, 1h30m, 250ms or 2d";
    const char *p = s;
    uint64_t total = 0;
    size_t next = 0; /* index of the smallest unit still allowed */

    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return REMEX_OK;
    }
    if (*p == '\0')
        return remex_seterr(e, REMEX_EPARSE, "%s", syntax);
    while (*p != '\0') {
        uint64_t v;
        size_t u, ulen = 0;
        int r = parse_u64(&p, &v);
        if (r < 0)
            return remex_seterr(e, REMEX_ETOOBIG, "duration too large");
        if (r == 0)
            return remex_seterr(e, REMEX_EPARSE, "%s", syntax);
        if (*p == '\0')
            return remex_seterr(e, REMEX_EPARSE, "%s (a number needs a unit)", syntax);
        if (p[0] == 'm' && p[1] == 's') {
            u = N_DUR_UNITS - 1;
            ulen = 2;
        } else {
            for (u = 0; u < N_DUR_UNITS - 1; u++) {
                if (p[0] == dur_units[u].name[0])
                    break;
            }
            if (u == N_DUR_UNITS - 1)
                u = N_DUR_UNITS; /* no single-letter unit matched */
            ulen = 1;
        }
        if (u == N_DUR_UNITS)
            return remex_seterr(e, REMEX_EPARSE, "%s (units: d, h, m, s, ms)", syntax);
        if (u < next)
            return remex_seterr(e, REMEX_EPARSE, "%s (units must appear once, largest first)",
                                syntax);
        next = u + 1;
        p += ulen;
        if (v > (uint64_t)INT64_MAX / dur_units[u].ms)
            return remex_seterr(e, REMEX_ETOOBIG, "duration too large");
        v *= dur_units[u].ms;
        if (total > (uint64_t)INT64_MAX - v)
            return remex_seterr(e, REMEX_ETOOBIG, "duration too large");
        total += v;
    }
    *ms = total;
    return REMEX_OK;
}

remex_err timeutil_duration_format(uint64_t ms, char *out, size_t outsz)
{
    size_t len = 0;

    if (outsz > 0)
        out[0] = '\0';
    if (ms == 0) {
        if (outsz < 3)
            return REMEX_ETOOBIG;
        memcpy(out, "0s", 3);
        return REMEX_OK;
    }
    for (size_t u = 0; u < N_DUR_UNITS; u++) {
        uint64_t v = ms / dur_units[u].ms;
        if (v == 0)
            continue;
        ms -= v * dur_units[u].ms;
        int n =
            snprintf(out + len, outsz - len, "%llu%s", (unsigned long long)v, dur_units[u].name);
        if (n < 0 || (size_t)n >= outsz - len) {
            if (outsz > 0)
                out[0] = '\0';
            return REMEX_ETOOBIG;
        }
        len += (size_t)n;
    }
    return REMEX_OK;
}

static const struct {
    const char *name;
    uint64_t mult;
} size_units[] = {
    {"EiB", 1ULL << 60},
    {"PiB", 1ULL << 50},
    {"TiB", 1ULL << 40},
    {"GiB", 1ULL << 30},
    {"MiB", 1ULL << 20},
    {"KiB", 1ULL << 10},
    {"EB", 1000000000000000000ULL},
    {"PB", 1000000000000000ULL},
    {"TB", 1000000000000ULL},
    {"GB", 1000000000ULL},
    {"MB", 1000000ULL},
    {"kB", 1000ULL},
    {"KB", 1000ULL},
    {"B", 1},
};
#define N_SIZE_UNITS (sizeof(size_units) / sizeof(size_units[0]))

remex_err timeutil_size_parse(const char *s, uint64_t *bytes, struct remex_error *e)
{
    static const char syntax[] = "expected a size like 123, 512KiB, 64MiB, 1GiB or 100MB";
    const char *p = s;
    uint64_t v;
    int r = parse_u64(&p, &v);

    if (r < 0)
        return remex_seterr(e, REMEX_ETOOBIG, "size too large");
    if (r == 0)
        return remex_seterr(e, REMEX_EPARSE, "%s", syntax);
    if (*p == '\0') {
        *bytes = v;
        return REMEX_OK;
    }
    if (*p == ' ')
        p++;
    for (size_t u = 0; u < N_SIZE_UNITS; u++) {
        if (strcmp(p, size_units[u].name) != 0)
            continue;
        if (v > UINT64_MAX / size_units[u].mult)
            return remex_seterr(e, REMEX_ETOOBIG, "size too large");
        *bytes = v * size_units[u].mult;
        return REMEX_OK;
    }
    return remex_seterr(e, REMEX_EPARSE, "%s (units: B, kB, MB, GB, TB, PB, EB, KiB ... EiB)",
                        syntax);
}

remex_err timeutil_size_format(uint64_t bytes, char *out, size_t outsz)
{
    char best[TIMEUTIL_SIZE_MAX], cand[TIMEUTIL_SIZE_MAX];
    size_t bestlen;

    if (outsz > 0)
        out[0] = '\0';
    bestlen = (size_t)snprintf(best, sizeof(best), "%lluB", (unsigned long long)bytes);
    for (size_t u = 0; bytes != 0 && u < N_SIZE_UNITS; u++) {
        if (strcmp(size_units[u].name, "KB") == 0 || bytes % size_units[u].mult != 0)
            continue;
        size_t n =
            (size_t)snprintf(cand, sizeof(cand), "%llu%s",
                             (unsigned long long)(bytes / size_units[u].mult), size_units[u].name);
        if (n < bestlen) {
            memcpy(best, cand, n + 1);
            bestlen = n;
        }
    }
    if (bestlen >= outsz)
        return REMEX_ETOOBIG;
    memcpy(out, best, bestlen + 1);
    return REMEX_OK;
}
