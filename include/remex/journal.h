/*
 * journal: an fsync'd append-only spool of JSON records (reports that could not
 * be delivered yet). A record survives a crash once journal_append returned
 * REMEX_OK; it stays pending until journal_ack. Reopening replays the file:
 * pending records come back in append order with their sequence numbers.
 *
 * File: <dir>/journal.log, one line per entry: 8 hex digits of CRC-32 of the
 * JSON text, a space, compact JSON, '\n'. Entries are {"seq":N,"rec":{...}} and
 * {"ack":N}. A torn or corrupt final line (crash mid-write) is cut off at open;
 * a corrupt line elsewhere is skipped and counted. The file is rewritten with
 * only the pending records (temp file, fsync, rename, fsync of the directory)
 * when it has grown past its compaction threshold.
 * Not thread-safe: one owner.
 */
#ifndef REMEX_JOURNAL_H
#define REMEX_JOURNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "remex/err.h"

struct journal;

/*
 * Opens (creating dir with mode 0700 and the file with 0600 when absent) and
 * replays. max_bytes caps the file (appends past it fail with REMEX_ETOOBIG);
 * 0 means 64 MiB. *corrupt (may be NULL) receives the number of skipped lines.
 */
remex_err journal_open(const char *dir, size_t max_bytes, struct journal **out, size_t *corrupt,
                       struct remex_error *e);
/* Durably appends rec (borrowed; must be a JSON object). *seq (may be NULL) gets its number. */
remex_err journal_append(struct journal *j, const json_t *rec, uint64_t *seq,
                         struct remex_error *e);
/* Marks seq delivered (durably). Unknown or already acked seq: REMEX_ENOTFOUND. */
remex_err journal_ack(struct journal *j, uint64_t seq, struct remex_error *e);
/* Number of pending records. */
size_t journal_pending(const struct journal *j);
/* The i-th pending record in append order (borrowed, valid until the next ack/close), or NULL. */
const json_t *journal_get(const struct journal *j, size_t i, uint64_t *seq);
/* Current size of the file in bytes. */
size_t journal_size(const struct journal *j);
void journal_close(struct journal *j);

#endif
