/*
 * promtext: the Prometheus text exposition format (version 0.0.4), written
 * into a struct buf.
 *
 * A family is announced once (# HELP, # TYPE), then its samples follow.
 * Names must match [a-zA-Z_:][a-zA-Z0-9_:]* and label names
 * [a-zA-Z_][a-zA-Z0-9_]*: a caller passes constant names, so a bad one is a
 * bug and the sample is dropped (REMEX_EINVAL). Label values and HELP text
 * are escaped (backslash, double quote, newline). Values: integers print
 * exactly, other finite numbers with 17 significant digits, NaN and the
 * infinities as NaN, +Inf, -Inf.
 *
 * Errors: REMEX_EINVAL (a bad name), REMEX_ETOOBIG / REMEX_ENOMEM (the
 * buffer's cap or memory). Thread-safety: touches only its arguments.
 */
#ifndef REMEX_PROMTEXT_H
#define REMEX_PROMTEXT_H

#include <stddef.h>

#include "remex/buf.h"
#include "remex/err.h"

/* Content type of the format. */
#define PROMTEXT_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* type: "gauge", "counter", "untyped". */
remex_err promtext_family(struct buf *out, const char *name, const char *type, const char *help);

/*
 * One sample: name{k1="v1",...} value. labels holds nlabels pairs
 * (name, value), i.e. 2 * nlabels strings; NULL with nlabels 0.
 */
remex_err promtext_sample(struct buf *out, const char *name, const char *const *labels,
                          size_t nlabels, double value);

/* 1 if name is a valid metric name (label names: promtext_label_ok). */
int promtext_name_ok(const char *name);
int promtext_label_ok(const char *name);

#endif
