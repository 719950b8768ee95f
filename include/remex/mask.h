/*
 * mask: redaction of secret values in task logs.
 *
 * A mask holds the secret values handed to one task (connection passwords,
 * variables marked secret, tokens). For each value it also masks the forms
 * tasks commonly print: its standard and URL-safe base64 encodings (with and
 * without padding, and at each of the three byte alignments the value can
 * have inside a longer encoded text, as in HTTP Basic "login:password"), its
 * JSON string escapes (plain, '/' escaped, non-ASCII as \uXXXX) and its
 * percent-encodings (RFC 3986, '/' kept, form encoding with '+' for space,
 * JavaScript's encodeURIComponent; upper- and lower-case hex). Values shorter than
 * MASK_MIN_LEN are not masked (masking "a" would destroy the log; same rule
 * as Airflow's min_length_masked_secret). Masking works on one line at a time:
 * the worker splits output into lines before it timestamps them, so a secret
 * never spans two calls unless it contains a newline itself; such a value is
 * also registered line by line.
 * Replacement text is "***". Longest patterns are matched first so a value
 * that contains another never leaves a partial secret behind.
 */
#ifndef REMEX_MASK_H
#define REMEX_MASK_H

#include <stddef.h>

#include "remex/buf.h"
#include "remex/err.h"

#define MASK_MIN_LEN  5
#define MASK_MAX_PATS 8192 /* patterns per mask (each value adds up to 30) */
#define MASK_MAX_LEN  8192 /* longest value masked */

struct mask;

/* Returns NULL on ENOMEM. */
struct mask *mask_new(void);
void mask_free(struct mask *m);

/*
 * Registers a secret value (copied) and its encodings. Values shorter than
 * MASK_MIN_LEN are ignored (REMEX_OK). REMEX_ETOOBIG past the caps.
 */
remex_err mask_add(struct mask *m, const char *value, size_t len);

/* Number of registered patterns (for tests and metrics). */
size_t mask_count(const struct mask *m);

/* Appends line[0..len) to out with every registered pattern replaced by "***". */
remex_err mask_apply(const struct mask *m, const char *line, size_t len, struct buf *out);

#endif
