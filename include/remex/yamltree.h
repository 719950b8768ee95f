/*
 * yamltree: a YAML buffer (libyaml) as an owned tree of mappings, sequences
 * and scalars with 1-based positions. The common lower layer of cfg,
 * dagyaml and secrets; each keeps its own meaning of the tree and its own
 * messages, made from struct ytree_error.
 *
 * Input: len bytes at data (borrowed for the call; need not be
 * NUL-terminated), UTF-8 only. One document at most: a second one is
 * refused. An empty stream (or an empty document) yields a NULL root.
 *
 * Always refused: aliases (*a) -- the alias bomb cannot happen. Refused
 * unless allowed by flags: anchors (&a), tags (!!str).
 *
 * Caps (struct ytree_limits, chosen by the caller, both > 0): at most
 * max_nodes nodes (scalars, mappings and sequences; keys count), and at most
 * max_depth mappings/sequences nested in one another (the root container is
 * level 1; scalars may sit inside the deepest one). The caller caps len.
 *
 * Positions: line and column of a node's first character (of its anchor or
 * tag if any), columns in characters as libyaml counts them. Errors of the
 * byte reader (invalid UTF-8, control characters) are placed at the bad byte,
 * columns in bytes.
 *
 * Thread-safe; no global state.
 */
#ifndef REMEX_YAMLTREE_H
#define REMEX_YAMLTREE_H

#include <stddef.h>
#include <stdint.h>

#include "remex/err.h"

enum ytree_kind { YTREE_SCALAR, YTREE_MAP, YTREE_SEQ };

/*
 * A node. A mapping's kids alternate key, value (n is even); keys may be any
 * node (callers refuse what they do not accept). Everything is owned by the
 * tree and released by ytree_free.
 */
struct ytree_node {
    enum ytree_kind kind;
    unsigned line, col; /* 1-based */
    int plain;          /* scalar written plain: no quotes, not a block scalar */
    char *text;         /* scalar: NUL-terminated copy; may hold NULs (see len) */
    size_t len;         /* scalar: bytes in text */
    struct ytree_node **kids;
    size_t n, cap; /* kids used / allocated */
};

/* Flags of struct ytree_limits. */
#define YTREE_ALLOW_ANCHORS 0x1u /* accept (and ignore) anchors */
#define YTREE_ALLOW_TAGS    0x2u /* accept (and ignore) tags */
#define YTREE_CHECK_SCALARS 0x4u /* refuse scalars holding a NUL or invalid UTF-8 */

struct ytree_limits {
    size_t max_nodes;
    unsigned max_depth;
    unsigned flags;
};

enum ytree_errkind {
    YTREE_ENONE = 0,
    YTREE_ESYNTAX, /* libyaml refused the input: problem and context hold its words */
    YTREE_EALIAS,  /* an alias */
    YTREE_EANCHOR, /* an anchor (without YTREE_ALLOW_ANCHORS) */
    YTREE_ETAG,    /* a tag (without YTREE_ALLOW_TAGS) */
    YTREE_EDOCS,   /* a second document; the position is its start */
    YTREE_EDEPTH,  /* the container that would exceed max_depth */
    YTREE_ENODES,  /* the node that would exceed max_nodes */
    YTREE_ESCALAR, /* a scalar with a NUL or invalid UTF-8 (YTREE_CHECK_SCALARS) */
    YTREE_ENOMEM,
    YTREE_ETIME, /* the CPU time cap of ytree_parse_until passed; the position is the last event */
};

struct ytree_error {
    enum ytree_errkind kind;
    unsigned line, col; /* 1-based; 1:1 for YTREE_ENOMEM */
    char problem[128];  /* YTREE_ESYNTAX: libyaml's problem, "" if it gave none */
    char context[128];  /* YTREE_ESYNTAX: libyaml's context, "" if it gave none */
};

/*
 * Parses data into *root (owned by the caller: ytree_free; NULL for an empty
 * stream). On error *root is NULL, err (if not NULL) says what and where, and
 * the result is REMEX_ENOMEM, REMEX_ETOOBIG (YTREE_EDEPTH, YTREE_ENODES) or
 * REMEX_EPARSE (the rest).
 */
remex_err ytree_parse(const char *data, size_t len, const struct ytree_limits *lim,
                      struct ytree_node **root, struct ytree_error *err);

/*
 * As ytree_parse, and stops with YTREE_ETIME (REMEX_ETIMEOUT) once the
 * calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID, checked every 1024
 * events) passes cpu_deadline_ns; 0: no cap.
 */
remex_err ytree_parse_until(const char *data, size_t len, const struct ytree_limits *lim,
                            uint64_t cpu_deadline_ns, struct ytree_node **root,
                            struct ytree_error *err);

/* The calling thread's CPU time in nanoseconds (for ytree_parse_until's deadline). */
uint64_t ytree_thread_cpu_ns(void);

/* Frees a tree, wiping scalar text first (it may hold secrets). NULL is a no-op. */
void ytree_free(struct ytree_node *root);

/*
 * The value of the first key of mapping m that is a scalar equal to key, or
 * NULL (also when m is NULL or not a mapping). Borrowed from the tree.
 */
const struct ytree_node *ytree_map_get(const struct ytree_node *m, const char *key);

/*
 * Offset of the first NUL byte or invalid UTF-8 sequence (overlong forms,
 * surrogates and code points past U+10FFFF included) in len bytes at data,
 * or len if there is none.
 */
size_t ytree_utf8_check(const void *data, size_t len);

#endif
