/* journal: fsync'd append-only spool of JSON records with acks and compaction. */
#include "remex/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/buf.h"
#include "remex/fsutil.h"

#define JOURNAL_LINE_MAX    (4u << 20) /* one record's JSON */
#define JOURNAL_DEFAULT_MAX (64u << 20)

struct jrec {
    uint64_t seq;
    json_t *rec;  /* owned */
    size_t bytes; /* length of its line in the file */
};

struct journal {
    char *dir;
    char *path;
    int fd;
    size_t size;
    size_t max_bytes;
    uint64_t next_seq;
    struct jrec *recs; /* pending, in append order */
    size_t nrecs, cap;
    size_t live; /* bytes of the pending records' lines */
};

static uint32_t crc32_of(const char *p, size_t n)
{
    static uint32_t table[256];
    static int ready;
    uint32_t c = 0xffffffffu;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t x = i;
            for (int k = 0; k < 8; k++)
                x = (x & 1) ? 0xedb88320u ^ (x >> 1) : x >> 1;
            table[i] = x;
        }
        ready = 1;
    }
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ (unsigned char)p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* Formats one line "crc json\n" for obj into b. */
static remex_err format_line(const json_t *obj, struct buf *b)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    remex_err rc;
    if (s == NULL)
        return REMEX_ENOMEM;
    size_t n = strlen(s);
    rc = buf_printf(b, "%08x ", crc32_of(s, n));
    if (rc == REMEX_OK)
        rc = buf_append(b, s, n);
    if (rc == REMEX_OK)
        rc = buf_putc(b, '\n');
    free(s);
    return rc;
}

static remex_err push_rec(struct journal *j, uint64_t seq, json_t *rec, size_t bytes)
{
    if (j->nrecs == j->cap) {
        size_t nc = j->cap ? j->cap * 2 : 16;
        struct jrec *r = realloc(j->recs, nc * sizeof(*r));
        if (r == NULL)
            return REMEX_ENOMEM;
        j->recs = r;
        j->cap = nc;
    }
    j->recs[j->nrecs].seq = seq;
    j->recs[j->nrecs].rec = rec;
    j->recs[j->nrecs].bytes = bytes;
    j->live += bytes;
    j->nrecs++;
    return REMEX_OK;
}

static int drop_rec(struct journal *j, uint64_t seq)
{
    for (size_t i = 0; i < j->nrecs; i++) {
        if (j->recs[i].seq == seq) {
            json_decref(j->recs[i].rec);
            j->live -= j->recs[i].bytes;
            memmove(j->recs + i, j->recs + i + 1, (j->nrecs - i - 1) * sizeof(*j->recs));
            j->nrecs--;
            return 1;
        }
    }
    return 0;
}

/* Applies one decoded entry. Returns 0 if the entry is malformed. */
static int apply_entry(struct journal *j, json_t *o, size_t bytes)
{
    json_t *seq = json_object_get(o, "seq"), *rec = json_object_get(o, "rec");
    json_t *ack = json_object_get(o, "ack");
    if (json_is_integer(seq) && json_is_object(rec) && json_integer_value(seq) > 0) {
        uint64_t s = (uint64_t)json_integer_value(seq);
        if (push_rec(j, s, json_incref(rec), bytes) != REMEX_OK) {
            json_decref(rec);
            return 0;
        }
        if (s >= j->next_seq)
            j->next_seq = s + 1;
        return 1;
    }
    if (json_is_integer(ack) && json_integer_value(ack) > 0) {
        drop_rec(j, (uint64_t)json_integer_value(ack));
        return 1;
    }
    return 0;
}

/* Parses one line (without '\n'). Returns 1 if valid and applied. */
static int replay_line(struct journal *j, const char *line, size_t n)
{
    char hex[9];
    unsigned long want;
    char *end;
    json_error_t jerr;
    if (n < 10 || line[8] != ' ')
        return 0;
    memcpy(hex, line, 8);
    hex[8] = '\0';
    want = strtoul(hex, &end, 16);
    if (*end != '\0' || crc32_of(line + 9, n - 9) != (uint32_t)want)
        return 0;
    json_t *o = json_loadb(line + 9, n - 9, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL)
        return 0;
    int ok = json_is_object(o) && apply_entry(j, o, n + 1);
    json_decref(o);
    return ok;
}

static remex_err replay(struct journal *j, size_t *corrupt, struct remex_error *e)
{
    struct buf b = BUF_INIT(j->max_bytes + JOURNAL_LINE_MAX);
    char chunk[65536];
    ssize_t r;
    size_t good_end = 0, bad = 0, pos = 0;

    while ((r = read(j->fd, chunk, sizeof(chunk))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || buf_append(&b, chunk, (size_t)r) != REMEX_OK) {
            buf_free(&b);
            return remex_seterr(e, REMEX_EIO, "%s: cannot read journal: %s", j->path,
                                r < 0 ? strerror(errno) : "too large");
        }
    }
    while (pos < b.len) {
        char *nl = memchr(b.data + pos, '\n', b.len - pos);
        if (nl == NULL)
            break; /* torn final line */
        size_t n = (size_t)(nl - (b.data + pos));
        if (replay_line(j, b.data + pos, n)) {
            good_end = pos + n + 1;
        } else if (memchr(nl + 1, '\n', b.len - (size_t)(nl + 1 - b.data)) != NULL) {
            bad++; /* corrupt line in the middle: skip it */
            good_end = pos + n + 1;
        } else {
            break; /* corrupt final line: cut it */
        }
        pos += n + 1;
    }
    buf_free(&b);
    if (good_end != (size_t)lseek(j->fd, 0, SEEK_END)) {
        if (ftruncate(j->fd, (off_t)good_end) != 0 || fdatasync(j->fd) != 0)
            return remex_errno(e, REMEX_EIO, "%s: cannot cut torn tail", j->path);
    }
    lseek(j->fd, 0, SEEK_END);
    j->size = good_end;
    if (corrupt)
        *corrupt = bad;
    return REMEX_OK;
}

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

remex_err journal_open(const char *dir, size_t max_bytes, struct journal **out, size_t *corrupt,
                       struct remex_error *e)
{
    struct journal *j = calloc(1, sizeof(*j));
    remex_err rc;
    if (j == NULL)
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    j->fd = -1;
    j->next_seq = 1;
    j->max_bytes = max_bytes ? max_bytes : JOURNAL_DEFAULT_MAX;
    j->dir = strdup(dir);
    j->path = join_path(dir, "journal.log");
    if (j->dir == NULL || j->path == NULL) {
        journal_close(j);
        return remex_seterr(e, REMEX_ENOMEM, "out of memory");
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = remex_errno(e, REMEX_EIO, "%s: cannot create journal directory", dir);
        journal_close(j);
        return rc;
    }
    j->fd = open(j->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (j->fd < 0) {
        rc = remex_errno(e, REMEX_EIO, "%s", j->path);
        journal_close(j);
        return rc;
    }
    rc = replay(j, corrupt, e);
    if (rc != REMEX_OK) {
        journal_close(j);
        return rc;
    }
    *out = j;
    return REMEX_OK;
}

/* Rewrites the file with only the pending records. */
static remex_err compact(struct journal *j, struct remex_error *e)
{
    struct buf b = BUF_INIT(j->max_bytes);
    char *tmp = join_path(j->dir, "journal.tmp");
    remex_err rc = tmp ? REMEX_OK : REMEX_ENOMEM;
    int fd = -1, dfd;

    for (size_t i = 0; rc == REMEX_OK && i < j->nrecs; i++) {
        json_t *o =
            json_pack("{s:I,s:O}", "seq", (json_int_t)j->recs[i].seq, "rec", j->recs[i].rec);
        rc = o ? format_line(o, &b) : REMEX_ENOMEM;
        json_decref(o);
    }
    if (rc == REMEX_OK) {
        fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0 || fsutil_write_all(fd, b.data ? b.data : "", b.len) != 0 || fsync(fd) != 0 ||
            rename(tmp, j->path) != 0)
            rc = REMEX_EIO;
    }
    if (rc == REMEX_OK) {
        dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        close(j->fd);
        j->fd = fd;
        fd = -1;
        lseek(j->fd, 0, SEEK_END);
        j->size = b.len;
    } else {
        remex_errno(e, rc, "%s: compaction failed", j->path);
        if (tmp)
            unlink(tmp);
    }
    if (fd >= 0)
        close(fd);
    free(tmp);
    buf_free(&b);
    return rc;
}

static remex_err append_line(struct journal *j, const json_t *o, size_t *bytes,
                             struct remex_error *e)
{
    struct buf b = BUF_INIT(JOURNAL_LINE_MAX);
    remex_err rc = format_line(o, &b);
    if (rc != REMEX_OK) {
        buf_free(&b);
        return remex_seterr(e, rc, "journal record too large");
    }
    if (j->size + b.len > j->max_bytes) {
        buf_free(&b);
        return remex_seterr(e, REMEX_ETOOBIG, "%s: journal full (%zu bytes)", j->path,
                            j->max_bytes);
    }
    if (fsutil_write_all(j->fd, b.data, b.len) != 0 || fdatasync(j->fd) != 0) {
        rc = remex_errno(e, REMEX_EIO, "%s: write failed", j->path);
        /* Drop a partial line so the next append starts clean. */
        if (ftruncate(j->fd, (off_t)j->size) != 0)
            rc = remex_seterr(e, REMEX_EIO, "%s: write failed and cannot truncate", j->path);
        buf_free(&b);
        return rc;
    }
    j->size += b.len;
    if (bytes)
        *bytes = b.len;
    buf_free(&b);
    return REMEX_OK;
}

remex_err journal_append(struct journal *j, const json_t *rec, uint64_t *seq, struct remex_error *e)
{
    if (!json_is_object(rec))
        return remex_seterr(e, REMEX_EINVAL, "journal record must be a JSON object");
    json_t *copy = json_deep_copy(rec);
    json_t *o = copy ? json_pack("{s:I,s:O}", "seq", (json_int_t)j->next_seq, "rec", copy) : NULL;
    size_t bytes = 0;
    remex_err rc =
        o ? append_line(j, o, &bytes, e) : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    json_decref(o);
    if (rc == REMEX_OK && (rc = push_rec(j, j->next_seq, json_incref(copy), bytes)) != REMEX_OK) {
        json_decref(copy);
        rc = remex_seterr(e, rc, "out of memory");
    }
    json_decref(copy);
    if (rc != REMEX_OK)
        return rc;
    if (seq)
        *seq = j->next_seq;
    j->next_seq++;
    return REMEX_OK;
}

remex_err journal_ack(struct journal *j, uint64_t seq, struct remex_error *e)
{
    int found = 0;
    for (size_t i = 0; i < j->nrecs && !found; i++)
        found = j->recs[i].seq == seq;
    if (!found)
        return remex_seterr(e, REMEX_ENOTFOUND, "journal: no pending record %llu",
                            (unsigned long long)seq);
    json_t *o = json_pack("{s:I}", "ack", (json_int_t)seq);
    remex_err rc = o ? append_line(j, o, NULL, e) : remex_seterr(e, REMEX_ENOMEM, "out of memory");
    int full = rc == REMEX_ETOOBIG;
    json_decref(o);
    if (rc != REMEX_OK && !full)
        return rc;
    drop_rec(j, seq);
    /*
     * Compact when delivered entries dominate a file worth rewriting, and always
     * when the ack line did not fit: the rewrite is then what persists the ack.
     */
    if (full || ((j->size > 64 * 1024 || j->size > j->max_bytes / 2) && j->live * 2 < j->size))
        return compact(j, e);
    return REMEX_OK;
}

size_t journal_pending(const struct journal *j)
{
    return j->nrecs;
}

const json_t *journal_get(const struct journal *j, size_t i, uint64_t *seq)
{
    if (i >= j->nrecs)
        return NULL;
    if (seq)
        *seq = j->recs[i].seq;
    return j->recs[i].rec;
}

size_t journal_size(const struct journal *j)
{
    return j->size;
}

void journal_close(struct journal *j)
{
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->nrecs; i++)
        json_decref(j->recs[i].rec);
    free(j->recs);
    if (j->fd >= 0)
        close(j->fd);
    free(j->dir);
    free(j->path);
    free(j);
}
