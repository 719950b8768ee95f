/* cron: 5-field cron schedules, fire-time search and data intervals (UTC). */
#include "remex/cron.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "remex/timeutil.h"

#define YEAR_MIN 1970
#define YEAR_MAX 9999

struct field_def {
    const char *name;
    int lo, hi;
    const char *const *names; /* index 0 maps to lo */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

/* Day of week is parsed over 0-7 (7 folded onto Sunday afterwards). */
static const struct field_def fields[5] = {
    {"minute", 0, 59, NULL},          {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},    {"month", 1, 12, month_names},
    {"day-of-week", 0, 7, dow_names},
};

static const struct {
    const char *name;
    const char *expr;
} presets[] = {
    {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},   {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
};

/* Reads a number or a name at *p; returns -1 when there is none. */
static int read_value(const char **p, const struct field_def *f)
{
    const char *s = *p;
    if (isdigit((unsigned char)*s)) {
        int v = 0;
        while (isdigit((unsigned char)*s)) {
            if (v > 1000)
                return 1000; /* reported as out of range */
            v = v * 10 + (*s - '0');
            s++;
        }
        *p = s;
        return v;
    }
    if (f->names != NULL && isalpha((unsigned char)s[0]) && isalpha((unsigned char)s[1]) &&
        isalpha((unsigned char)s[2]) && !isalpha((unsigned char)s[3])) {
        for (int i = 0; f->names[i] != NULL; i++) {
            if (strncasecmp(s, f->names[i], 3) == 0) {
                *p = s + 3;
                return f->lo + i;
            }
        }
    }
    return -1;
}

/* Parses one field (text [s, end)) into a bit mask. col is the 1-based column of s. */
static remex_err parse_field(const struct field_def *f, const char *s, const char *end,
                             const char *expr, uint64_t *mask, struct remex_error *e)
{
    uint64_t m = 0;
    const char *p = s;

    for (;;) {
        const char *item = p;
        int lo, hi, step = 1, star = 0;
        if (*p == '*') {
            star = 1;
            lo = f->lo;
            hi = f->hi;
            p++;
        } else {
            lo = read_value(&p, f);
            if (lo < 0)
                goto syntax;
            hi = lo;
            if (*p == '-') {
                p++;
                hi = read_value(&p, f);
                if (hi < 0)
                    goto syntax;
            }
        }
        int v_bad = lo < f->lo || lo > f->hi ? lo : (hi < f->lo || hi > f->hi ? hi : -1);
        if (v_bad >= 0)
            return remex_seterr(e, REMEX_EINVAL,
                                "%s field: value %d out of range %d-%d (column %d)", f->name, v_bad,
                                f->lo, f->hi, (int)(item - expr) + 1);
        if (hi < lo)
            return remex_seterr(e, REMEX_EINVAL, "%s field: range %d-%d is reversed (column %d)",
                                f->name, lo, hi, (int)(item - expr) + 1);
        if (*p == '/') {
            p++;
            const char *sp = p;
            step = 0;
            while (isdigit((unsigned char)*p) && step <= 1000)
                step = step * 10 + (*p++ - '0');
            if (p == sp || step == 0 || step > f->hi)
                return remex_seterr(e, REMEX_EINVAL, "%s field: bad step (column %d)", f->name,
                                    (int)(sp - expr) + 1);
            if (!star && hi == lo)
                hi = f->hi; /* "5/10" means 5-max/10 */
        }
        for (int v = lo; v <= hi; v += step)
            m |= (uint64_t)1 << v;
        if (p == end)
            break;
        if (*p != ',')
            goto syntax;
        p++;
    }
    *mask = m;
    return REMEX_OK;
syntax:
    return remex_seterr(e, REMEX_EINVAL, "%s field: unexpected '%c' (column %d)", f->name,
                        isprint((unsigned char)*p) ? *p : '?', (int)(p - expr) + 1);
}

static int days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dim[m - 1];
}

remex_err cron_parse(struct cron *c, const char *expr, struct remex_error *e)
{
    uint64_t masks[5];
    const char *p = expr;
    int nf = 0;

    memset(c, 0, sizeof(*c));
    if (strnlen(expr, CRON_EXPR_MAX + 1) > CRON_EXPR_MAX)
        return remex_seterr(e, REMEX_EINVAL, "expression longer than %d bytes", CRON_EXPR_MAX);
    if (expr[0] == '@') {
        if (strcmp(expr, "@once") == 0) {
            c->once = 1;
            return REMEX_OK;
        }
        for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
            if (strcmp(expr, presets[i].name) == 0)
                return cron_parse(c, presets[i].expr, e);
        return remex_seterr(e, REMEX_EINVAL,
                            "unknown preset (expected @once, @hourly, @daily, @midnight, "
                            "@weekly, @monthly, @yearly or @annually)");
    }
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        const char *s = p;
        while (*p != '\0' && *p != ' ' && *p != '\t')
            p++;
        if (nf == 5)
            return remex_seterr(e, REMEX_EINVAL, "more than 5 fields (column %d)",
                                (int)(s - expr) + 1);
        remex_err rc = parse_field(&fields[nf], s, p, expr, &masks[nf], e);
        if (rc != REMEX_OK)
            return rc;
        nf++;
    }
    if (nf != 5)
        return remex_seterr(e, REMEX_EINVAL,
                            "expected 5 fields (minute hour day-of-month month day-of-week), "
                            "got %d",
                            nf);
    if (masks[4] & (1u << 7))
        masks[4] = (masks[4] | 1u) & 0x7fu;
    c->minute = masks[0];
    c->hour = (uint32_t)masks[1];
    c->dom = (uint32_t)masks[2];
    c->month = (uint32_t)masks[3];
    c->dow = (uint32_t)masks[4];
    c->dom_restricted = c->dom != 0xfffffffeu;
    c->dow_restricted = c->dow != 0x7fu;
    if (!c->dow_restricted || !c->dom_restricted) {
        /* Only day-of-month decides: some selected month must have a selected day. */
        int ok = !c->dom_restricted;
        for (int m = 1; m <= 12 && !ok; m++) {
            if (!(c->month & (1u << m)))
                continue;
            for (int d = 1; d <= days_in_month(2000, m) && !ok; d++)
                ok = (c->dom >> d) & 1u;
        }
        if (!ok) {
            memset(c, 0, sizeof(*c));
            return remex_seterr(e, REMEX_EINVAL,
                                "day-of-month field: no selected month has a selected day");
        }
    }
    return REMEX_OK;
}

/* Broken-down UTC minute. */
struct tmm {
    int y, mo, d, h, mi;
};

static void to_tmm(int64_t t, struct tmm *tm)
{
    int64_t z = (t >= 0 ? t / 86400 : (t - 86399) / 86400);
    int64_t sod = t - z * 86400;
    tm->h = (int)(sod / 3600);
    tm->mi = (int)(sod % 3600 / 60);
    int64_t y;
    timeutil_civil_from_days(z, &y, &tm->mo, &tm->d);
    tm->y = (int)y;
}

static int64_t from_tmm(const struct tmm *tm)
{
    return timeutil_days_from_civil(tm->y, tm->mo, tm->d) * 86400 + tm->h * 3600 + tm->mi * 60;
}

static int weekday(int y, int m, int d)
{
    int64_t z = timeutil_days_from_civil(y, m, d);
    return (int)((z % 7 + 11) % 7); /* 1970-01-01 was a Thursday (4) */
}

static int day_matches(const struct cron *c, int y, int m, int d)
{
    int dom = (c->dom >> d) & 1u;
    int dow = (c->dow >> weekday(y, m, d)) & 1u;
    if (c->dom_restricted && c->dow_restricted)
        return dom || dow;
    return dom && dow;
}

/* Lowest set bit >= from in mask (bits up to 63), or -1. */
static int next_bit(uint64_t mask, int from)
{
    if (from > 63)
        return -1;
    mask &= ~(uint64_t)0 << from;
    return mask ? __builtin_ctzll(mask) : -1;
}

/* Highest set bit <= from in mask, or -1. */
static int prev_bit(uint64_t mask, int from)
{
    if (from < 0)
        return -1;
    if (from < 63)
        mask &= ((uint64_t)1 << (from + 1)) - 1;
    return mask ? 63 - __builtin_clzll(mask) : -1;
}

int cron_matches(const struct cron *c, int64_t t)
{
    struct tmm tm;
    if (c->once || t % 60 != 0)
        return 0;
    to_tmm(t, &tm);
    return ((c->month >> tm.mo) & 1u) && day_matches(c, tm.y, tm.mo, tm.d) &&
           ((c->hour >> tm.h) & 1u) && ((c->minute >> tm.mi) & 1u);
}

int64_t cron_next(const struct cron *c, int64_t after)
{
    struct tmm tm;
    int b;

    if (c->once || c->month == 0)
        return CRON_NONE;
    if (after < 0)
        after = -60;
    to_tmm(after - ((after % 60) + 60) % 60 + 60, &tm);
    /* Every step moves forward to a candidate; at most a few per day of the search. */
    while (tm.y <= YEAR_MAX) {
        if (!((c->month >> tm.mo) & 1u)) {
            b = next_bit(c->month, tm.mo);
            if (b < 0) {
                tm.y++;
                b = next_bit(c->month, 1);
            }
            tm.mo = b;
            tm.d = 1;
            tm.h = tm.mi = 0;
            continue;
        }
        if (!day_matches(c, tm.y, tm.mo, tm.d)) {
            tm.h = tm.mi = 0;
            if (++tm.d > days_in_month(tm.y, tm.mo)) {
                tm.d = 1;
                if (++tm.mo > 12) {
                    tm.mo = 1;
                    tm.y++;
                }
            }
            continue;
        }
        if (!((c->hour >> tm.h) & 1u)) {
            b = next_bit(c->hour, tm.h);
            tm.mi = 0;
            if (b < 0) {
                tm.h = 24; /* forces the day rollover below */
            } else {
                tm.h = b;
                continue;
            }
        } else if (!((c->minute >> tm.mi) & 1u)) {
            b = next_bit(c->minute, tm.mi);
            if (b >= 0) {
                tm.mi = b;
                return from_tmm(&tm);
            }
            tm.mi = 0;
            tm.h++;
        } else {
            return from_tmm(&tm);
        }
        if (tm.h > 23) {
            tm.h = 0;
            if (++tm.d > days_in_month(tm.y, tm.mo)) {
                tm.d = 1;
                if (++tm.mo > 12) {
                    tm.mo = 1;
                    tm.y++;
                }
            }
        }
    }
    return CRON_NONE;
}

/* Moves tm to 23:59 of the previous day. */
static void prev_day(struct tmm *tm)
{
    tm->h = 23;
    tm->mi = 59;
    if (--tm->d < 1) {
        if (--tm->mo < 1) {
            tm->mo = 12;
            tm->y--;
        }
        tm->d = days_in_month(tm->y, tm->mo);
    }
}

int64_t cron_prev(const struct cron *c, int64_t at_or_before)
{
    struct tmm tm;
    int b;

    if (c->once || c->month == 0 || at_or_before < 0)
        return CRON_NONE;
    to_tmm(at_or_before - at_or_before % 60, &tm);
    if (tm.y > YEAR_MAX)
        return CRON_NONE;
    while (tm.y >= YEAR_MIN) {
        if (!((c->month >> tm.mo) & 1u)) {
            b = prev_bit(c->month, tm.mo);
            if (b < 1) {
                tm.y--;
                b = prev_bit(c->month, 12);
            }
            tm.mo = b;
            tm.d = days_in_month(tm.y, tm.mo);
            tm.h = 23;
            tm.mi = 59;
            continue;
        }
        if (!day_matches(c, tm.y, tm.mo, tm.d)) {
            prev_day(&tm);
            continue;
        }
        if (!((c->hour >> tm.h) & 1u)) {
            b = prev_bit(c->hour, tm.h);
            if (b < 0) {
                prev_day(&tm);
                continue;
            }
            tm.h = b;
            tm.mi = 59;
            continue;
        }
        b = prev_bit(c->minute, tm.mi);
        if (b >= 0) {
            tm.mi = b;
            return from_tmm(&tm);
        }
        tm.mi = 59;
        if (--tm.h < 0)
            prev_day(&tm);
    }
    return CRON_NONE;
}

/* Airflow's _align_to_next: t itself when it is a fire time, else the next one. */
static int64_t align_next(const struct cron *c, int64_t t)
{
    return cron_matches(c, t) ? t : cron_next(c, t);
}

int cron_next_interval(const struct cron *c, int64_t start_date, int64_t end_date,
                       int64_t last_start, int catchup, int64_t now, struct cron_interval *out)
{
    int64_t start;

    if (start_date == CRON_UNBOUNDED)
        return 0;
    if (c->once) {
        if (last_start != CRON_UNBOUNDED)
            return 0;
        if (end_date != CRON_UNBOUNDED && start_date > end_date)
            return 0;
        out->start = out->end = start_date;
        return 1;
    }
    int64_t earliest = align_next(c, start_date);
    if (earliest == CRON_NONE)
        return 0;
    if (!catchup) {
        /* The latest complete interval at now: [fire before E, E], E = last fire <= now. */
        int64_t e_end = cron_prev(c, now);
        int64_t latest = e_end == CRON_NONE ? CRON_NONE : cron_prev(c, e_end - 1);
        if (latest != CRON_NONE && latest > earliest)
            earliest = latest;
    }
    if (last_start == CRON_UNBOUNDED) {
        start = earliest;
    } else {
        start = cron_next(c, last_start);
        if (start == CRON_NONE)
            return 0;
        if (earliest > start)
            start = earliest;
    }
    if (end_date != CRON_UNBOUNDED && start > end_date)
        return 0;
    int64_t end = cron_next(c, start);
    if (end == CRON_NONE)
        return 0;
    out->start = start;
    out->end = end;
    return 1;
}
