/*
 * timeutil: clocks, RFC 3339 timestamps, durations and sizes.
 *
 * All functions are thread-safe and allocate nothing. Parsers take a
 * NUL-terminated string, never echo it into the error message (it may come
 * from a secret-bearing place), and fill e (when not NULL) with a short reason
 * such as "expected a duration like 30s, 5m, 1h30m". Formatters write into a
 * caller buffer and fail with REMEX_ETOOBIG (buffer left "") when it is short.
 *
 * RFC 3339 (strict): YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM).
 *   'T' and 'Z' may be lower case (RFC 3339 section 5.6 note). Years 0000-9999.
 *   The fraction has 1-9 digits; digits past milliseconds are truncated.
 *   Refused: calendar-invalid dates (Feb 30, Feb 29 of a non-leap year),
 *   hour 24, minute or second 60 (leap seconds are not representable), offsets
 *   without a colon (-0530), a space instead of 'T', trailing bytes.
 *
 * Durations: one or more <digits><unit> groups, units d, h, m, s, ms, each unit
 *   at most once and in that (descending) order: "30s", "5m", "1h30m", "250ms",
 *   "2d", "1h30m15s", "1s500ms". The bare number "0" is accepted (zero); any
 *   other bare number is refused because its unit would be a guess. No sign,
 *   no spaces, no fractions. The total must fit in INT64_MAX milliseconds.
 *
 * Sizes: <digits>[optional single space][unit]. No unit means bytes. Units:
 *   B; SI (powers of 1000) kB KB MB GB TB PB EB; IEC (powers of 1024) KiB MiB
 *   GiB TiB PiB EiB. Units are case-sensitive except that "KB" equals "kB".
 *   No sign, no fractions. The total must fit in uint64_t.
 */
#ifndef REMEX_TIMEUTIL_H
#define REMEX_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "remex/err.h"

/* Buffer sizes (NUL included) that always suffice for the formatters. */
#define TIMEUTIL_RFC3339_MAX  32
#define TIMEUTIL_DURATION_MAX 48
#define TIMEUTIL_SIZE_MAX     32

/* CLOCK_MONOTONIC in milliseconds / nanoseconds (arbitrary origin). */
uint64_t timeutil_mono_ms(void);
uint64_t timeutil_mono_ns(void);

/* Sleeps ms milliseconds on CLOCK_MONOTONIC, resuming after signals. */
void timeutil_sleep_ms(uint64_t ms);

/* CLOCK_REALTIME as milliseconds / seconds since the Unix epoch. */
int64_t timeutil_real_ms(void);
int64_t timeutil_real_s(void);

/*
 * Civil dates of the proleptic Gregorian calendar (any year, negative ones
 * included; m 1-12, d 1-31, not range-checked): days since 1970-01-01 of
 * y-m-d, and its inverse.
 */
int64_t timeutil_days_from_civil(int64_t y, int m, int d);
void timeutil_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

/*
 * Formats epoch_ms as UTC "2026-11-22T10:00:00Z" (with_ms == 0) or
 * "2026-11-22T10:00:00.123Z" (with_ms != 0; the value is floored to the second
 * otherwise). Years outside 0000-9999 give REMEX_EINVAL.
 */
remex_err timeutil_rfc3339_format(int64_t epoch_ms, int with_ms, char *out, size_t outsz);

/* Parses an RFC 3339 timestamp into epoch milliseconds. REMEX_EPARSE on error. */
remex_err timeutil_rfc3339_parse(const char *s, int64_t *epoch_ms, struct remex_error *e);

/* Parses a duration into milliseconds. REMEX_EPARSE on error, REMEX_ETOOBIG on overflow. */
remex_err timeutil_duration_parse(const char *s, uint64_t *ms, struct remex_error *e);

/*
 * Formats ms as the shortest duration string that parses back to the same
 * value: 0 -> "0s", 90000 -> "1m30s", 1500 -> "1s500ms", 86400000 -> "1d".
 */
remex_err timeutil_duration_format(uint64_t ms, char *out, size_t outsz);

/* Parses a size into bytes. REMEX_EPARSE on error, REMEX_ETOOBIG on overflow. */
remex_err timeutil_size_parse(const char *s, uint64_t *bytes, struct remex_error *e);

/*
 * Formats bytes exactly with the unit that gives the shortest string, IEC
 * preferred on a tie: 67108864 -> "64MiB", 100000000 -> "100MB", 123 -> "123B",
 * 0 -> "0B".
 */
remex_err timeutil_size_format(uint64_t bytes, char *out, size_t outsz);

#endif
