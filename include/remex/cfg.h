/*
 * cfg: table-driven YAML configuration with environment overrides.
 *
 * A binary describes its configuration struct with a table of struct
 * cfg_entry (terminated by an entry whose key is NULL). Keys are dotted paths
 * ("worker.slots"): every dot is one level of YAML mapping ("worker:" holding
 * "slots:"), and offset is offsetof(struct mycfg, worker.slots). Loading runs,
 * in order: defaults (entry.def, parsed with the same rules as YAML values),
 * the YAML file, environment overrides (REMEX_WORKER_SLOTS), then required-key
 * checks and validators. See docs/configuration.md for the accepted forms.
 *
 * Field storage per type (the struct member at offset must have this type):
 *   CFG_STRING, CFG_URL, CFG_PATH  char *            (owned by cfg, NULL if unset)
 *   CFG_INT                        int64_t           (min/max checked when min < max)
 *   CFG_BOOL                       bool
 *   CFG_DURATION                   uint64_t ms       (min/max checked when min < max)
 *   CFG_SIZE                       uint64_t bytes    (min/max checked when min < max)
 *   CFG_ENUM                       int               (index into entry.enums)
 *   CFG_STRLIST                    struct cfg_strlist
 *   CFG_SECRET                     struct cfg_secret
 *   CFG_LIST                       struct cfg_list   (array of elem_size records described
 *                                                     by entry.sub; offsets are relative
 *                                                     to one record)
 *   CFG_RESERVED                   nothing           (a section kept for a part this
 *                                                     version does not include: a mapping
 *                                                     is accepted, not read, and a non-empty
 *                                                     one gets a warning quoting entry.desc;
 *                                                     anything else is an error)
 *
 * Errors are collected (up to CFG_MAX_ERRORS) as "file:line:col: path: message"
 * (line and column 1-based, of the offending node), "VARIABLE: message" for the
 * environment. Messages never contain configuration values, so secrets cannot
 * leak through them. Caps: file CFG_MAX_FILE bytes (default), nesting depth
 * CFG_MAX_DEPTH, CFG_MAX_NODES YAML nodes, CFG_MAX_ITEMS items per list
 * (default); anchors and aliases are refused.
 *
 * Thread-safety: load/free/dump functions touch only their arguments (and the
 * environment through opts->lookup or getenv); tables are read-only.
 */
#ifndef REMEX_CFG_H
#define REMEX_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "remex/buf.h"
#include "remex/err.h"
#include "remex/exit.h"

#define CFG_MAX_ERRORS   20
#define CFG_MAX_WARNINGS 8
#define CFG_MAX_FILE     (1024 * 1024)
#define CFG_MAX_DEPTH    32
#define CFG_MAX_NODES    100000
#define CFG_MAX_ITEMS    1024
#define CFG_SECRET_MAX   (64 * 1024)

enum cfg_type {
    CFG_STRING = 1,
    CFG_INT,
    CFG_BOOL,
    CFG_DURATION,
    CFG_SIZE,
    CFG_ENUM,
    CFG_STRLIST,
    CFG_URL,
    CFG_PATH,
    CFG_SECRET,
    CFG_LIST,
    CFG_RESERVED,
};

/* entry.flags */
#define CFG_REQUIRED 0x1u /* must be set by the file or the environment */

struct cfg_strlist {
    char **items; /* owned; n strings */
    size_t n;
};

struct cfg_list {
    void *items; /* owned; n records of entry.elem_size bytes */
    size_t n;
};

enum cfg_secret_kind {
    CFG_SECRET_NONE = 0, /* not configured */
    CFG_SECRET_VALUE,    /* literal in the file or from the environment */
    CFG_SECRET_FILE,     /* read from a file at every cfg_secret_get */
    CFG_SECRET_ENV,      /* read from a named variable at load time */
};

/* Never print value. source is the file path or the variable name (not secret). */
struct cfg_secret {
    enum cfg_secret_kind kind;
    char *value;  /* owned; VALUE and ENV kinds */
    char *source; /* owned; FILE: the path, ENV: the variable name, else NULL */
};

/*
 * A validator sees the parsed field and returns 0, or -1 after writing a short
 * reason (no value in it if the field is secret) into why.
 */
typedef int (*cfg_validate_fn)(const void *field, char *why, size_t whysz);

struct cfg_entry {
    const char *key;             /* dotted path; NULL terminates the table */
    enum cfg_type type;          /* storage: see above */
    size_t offset;               /* offsetof(target struct, member) */
    const char *def;             /* default as text, NULL for none (strlist: comma-separated) */
    int64_t min, max;            /* range for INT, DURATION (ms), SIZE (bytes) when min < max */
    const char *const *enums;    /* ENUM: NULL-terminated value names */
    cfg_validate_fn validate;    /* optional, after all sources are applied */
    const char *desc;            /* one line, for cfg_usage */
    unsigned flags;              /* CFG_REQUIRED */
    const struct cfg_entry *sub; /* LIST: table of one record */
    size_t elem_size;            /* LIST: sizeof one record */
    size_t max_items;            /* LIST, STRLIST: 0 means CFG_MAX_ITEMS */
};

/*
 * A check across keys, run once every source is applied and every key is
 * valid on its own: returns 0, or -1 after writing a short reason into why and
 * pointing *key at the table key (dotted path) to blame; the message is then
 * prefixed like a validator's, with that key's position in the file (or its
 * environment variable).
 */
typedef int (*cfg_cross_fn)(const void *obj, const char **key, char *why, size_t whysz);

/* Environment lookup: returns a borrowed string or NULL. */
typedef const char *(*cfg_lookup_fn)(const char *name, void *ud);

struct cfg_opts {
    cfg_lookup_fn lookup; /* NULL: getenv(3) */
    void *lookup_ud;
    const char *env_prefix; /* NULL: "REMEX_" */
    int no_env;             /* non-zero: skip environment overrides */
    size_t max_file;        /* 0: CFG_MAX_FILE */
    cfg_cross_fn cross;     /* optional, see cfg_cross_fn */
};

struct cfg_errors {
    size_t n;       /* messages in msg[] */
    size_t dropped; /* further errors not recorded */
    char msg[CFG_MAX_ERRORS][REMEX_ERRMSG_MAX];
    size_t nwarn; /* warnings in warn[] (a load with warnings only succeeds) */
    char warn[CFG_MAX_WARNINGS][REMEX_ERRMSG_MAX];
};

/*
 * Loads path (NULL: defaults and environment only) into obj. obj must be
 * zeroed or released by cfg_free; every field named in the table is written.
 * opts may be NULL, errs may be NULL. Returns REMEX_OK, REMEX_ECONFIG (errors
 * in errs), REMEX_EIO (unreadable file, in errs) or REMEX_ENOMEM. On failure
 * obj has been released (cfg_free) already.
 */
remex_err cfg_load_file(const struct cfg_entry *table, void *obj, const char *path,
                        const struct cfg_opts *opts, struct cfg_errors *errs);

/* Same from memory; name is used in messages ("agent.yaml"). data need not be NUL-terminated. */
remex_err cfg_load_buf(const struct cfg_entry *table, void *obj, const char *name, const char *data,
                       size_t len, const struct cfg_opts *opts, struct cfg_errors *errs);

/* Releases everything the loader allocated in obj and zeroes those fields. Idempotent. */
void cfg_free(const struct cfg_entry *table, void *obj);

/*
 * Returns the current secret value in *out (malloc'd, NUL-terminated, length
 * in *len if len is not NULL); release it with cfg_secret_free. FILE secrets
 * are re-read now (so they can be rotated) and refused unless a regular file
 * with no group/other permission bits; one trailing "\n" or "\r\n" is
 * stripped. REMEX_ENOTFOUND if not configured, REMEX_EPERM, REMEX_EIO,
 * REMEX_ETOOBIG (over CFG_SECRET_MAX), REMEX_EINVAL (empty). The message in e
 * names the file or variable, never the value.
 */
remex_err cfg_secret_get(const struct cfg_secret *s, char **out, size_t *len,
                         struct remex_error *e);

/*
 * The file part of cfg_secret_get, for any credential file (remexctl's admin
 * token): opens path (O_NONBLOCK, so a FIFO cannot hang it), refuses anything
 * but a regular file with no group/other permission bits (REMEX_EPERM),
 * reads at most max bytes (capped at CFG_SECRET_MAX; more is REMEX_ETOOBIG),
 * strips one trailing "\n" or "\r\n" and refuses an empty value or a NUL
 * byte (REMEX_EINVAL). *out is malloc'd and NUL-terminated (release with
 * cfg_secret_free), NULL on error; *len (if len is not NULL) is its length.
 * st, if not NULL, receives the file's fstat (zeroed when the file could not
 * be opened), so that a caller can word its own message about a mode.
 * Messages name the path, never the content.
 */
remex_err cfg_secret_read_file(const char *path, size_t max, char **out, size_t *len,
                               struct stat *st, struct remex_error *e);

/* Wipes and frees a value returned by cfg_secret_get. NULL is a no-op. */
void cfg_secret_free(char *value);

/* Appends "path: value" lines of the whole configuration; secrets print as <secret>. */
remex_err cfg_dump(const struct cfg_entry *table, const void *obj, struct buf *out);

/* Appends one block per key: path, type, range, default, env variable, description. */
remex_err cfg_usage(const struct cfg_entry *table, const struct cfg_opts *opts, struct buf *out);

/* Environment variable name of a dotted key: "worker.slots" -> "REMEX_WORKER_SLOTS". */
remex_err cfg_env_name(const char *prefix, const char *key, char *out, size_t outsz);

/*
 * --check support. Formats the outcome of a load: its warnings ("warning: ..."
 * lines), then "configuration OK\n" and
 * returns 0 when rc is REMEX_OK, else one line per error and returns
 * REMEX_EXIT_CONFIG. The binary prints out to stdout (0) or stderr (100).
 */
int cfg_check_report(remex_err rc, const struct cfg_errors *errs, struct buf *out);

/* Loads path into a scratch object of objsize bytes, reports as above, releases it. */
int cfg_check(const struct cfg_entry *table, size_t objsize, const char *path,
              const struct cfg_opts *opts, struct buf *out);

#endif
