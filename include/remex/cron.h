/*
 * cron: 5-field cron schedules and Airflow-style data intervals, all in UTC.
 *
 * Syntax: "minute hour day-of-month month day-of-week", fields separated by
 * blanks. Each field is a comma list of items; an item is `*`, a value, a
 * range `a-b`, optionally followed by a step `/n` (`*`/15, `1-30/5`, `5/10`
 * meaning 5-max/10). Months accept jan..dec, days of week sun..sat (case
 * insensitive); day-of-week 0 and 7 are both Sunday. Presets: @once, @hourly,
 * @daily, @midnight, @weekly, @monthly, @yearly, @annually.
 *
 * Day rule (Vixie cron): when both day-of-month and day-of-week are
 * restricted, a day matches if EITHER matches; otherwise the restricted one
 * decides. A field is "restricted" when it does not select every value of its
 * range (so `1-31` counts as `*`, `*`/2 as restricted).
 *
 * Expressions that can never fire (`0 0 30 2 *`) are refused by cron_parse.
 * Times are epoch seconds; the supported range is years 1970..9999.
 *
 * Data intervals follow Airflow's CronDataIntervalTimetable: a scheduled run
 * covers [start, end) where start is a fire time and end = cron_next(start);
 * its logical date is start and it is created once end has passed. @once
 * fires exactly once, at start_date, with an empty interval [start, start].
 *
 * All functions are pure, allocate nothing and are thread-safe.
 */
#ifndef REMEX_CRON_H
#define REMEX_CRON_H

#include <stdint.h>

#include "remex/err.h"

/* Longest expression accepted by cron_parse, bytes. */
#define CRON_EXPR_MAX 256

/* Returned by cron_next/cron_prev when there is no such fire time. */
#define CRON_NONE INT64_MIN

struct cron {
    uint64_t minute; /* bit n = minute n (0-59) */
    uint32_t hour;   /* bit n = hour n (0-23) */
    uint32_t dom;    /* bit n = day n (1-31) */
    uint32_t month;  /* bit n = month n (1-12) */
    uint32_t dow;    /* bit n = weekday n (0-6, 0 = Sunday) */
    int dom_restricted;
    int dow_restricted;
    int once; /* @once: no recurring fire times */
};

/*
 * Parses expr into c. REMEX_EINVAL with a message naming the field and column,
 * e.g. "minute field: value 61 out of range 0-59 (column 1)". c is zeroed on
 * error. The caller adds its own context ("schedule: ...").
 */
remex_err cron_parse(struct cron *c, const char *expr, struct remex_error *e);

/*
 * First fire time strictly after `after` (epoch seconds), or CRON_NONE for
 * @once and past year 9999. Cost is bounded by field-wise jumps (no
 * minute-by-minute scan).
 */
int64_t cron_next(const struct cron *c, int64_t after);

/* Last fire time at or before `at_or_before`, or CRON_NONE. */
int64_t cron_prev(const struct cron *c, int64_t at_or_before);

/* Non-zero when t (epoch seconds) is a fire time. */
int cron_matches(const struct cron *c, int64_t t);

struct cron_interval {
    int64_t start; /* data_interval_start = logical date */
    int64_t end;   /* data_interval_end = when the run may be created */
};

/* No bound / no previous run, for the arguments of cron_next_interval. */
#define CRON_UNBOUNDED INT64_MIN

/*
 * The data interval of the next scheduled run (Airflow's next_dagrun_info):
 *   start_date    DAG start (required: CRON_UNBOUNDED gives 0, no run);
 *   end_date      DAG end or CRON_UNBOUNDED; no run starts after it;
 *   last_start    data_interval_start of the latest scheduled run, or
 *                 CRON_UNBOUNDED when there is none;
 *   catchup       0: skip to the latest complete interval at `now`;
 *   now           current time (epoch seconds), used only when !catchup.
 * Returns 1 and fills out, or 0 when no further run exists. The caller
 * creates the run when out->end <= now.
 */
int cron_next_interval(const struct cron *c, int64_t start_date, int64_t end_date,
                       int64_t last_start, int catchup, int64_t now, struct cron_interval *out);

#endif
