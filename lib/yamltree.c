/* yamltree: libyaml events into an owned node tree with positions and caps. */
#include "remex/yamltree.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

struct build {
    const char *data;
    size_t len;
    const struct ytree_limits *lim;
    struct ytree_error *err;
    size_t nodes;
    uint64_t cpu_deadline_ns; /* 0: none */
};

static remex_err fail(struct build *b, enum ytree_errkind kind, unsigned line, unsigned col)
{
    b->err->kind = kind;
    b->err->line = line;
    b->err->col = col;
    switch (kind) {
    case YTREE_ENOMEM:
        return REMEX_ENOMEM;
    case YTREE_EDEPTH:
    case YTREE_ENODES:
        return REMEX_ETOOBIG;
    case YTREE_ETIME:
        return REMEX_ETIMEOUT;
    default:
        return REMEX_EPARSE;
    }
}

size_t ytree_utf8_check(const void *data, size_t len)
{
    const unsigned char *s = data;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c == 0)
            return i;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (i + n > len)
            return i;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n;
    }
    return len;
}

static remex_err syntax_error(struct build *b, const yaml_parser_t *p)
{
    unsigned line = 1, col = 1;
    if (p->error == YAML_MEMORY_ERROR)
        return fail(b, YTREE_ENOMEM, 1, 1);
    if (p->error == YAML_READER_ERROR) {
        /* The reader has no mark; count up to the bad byte. */
        size_t off = p->problem_offset < b->len ? p->problem_offset : b->len;
        for (size_t i = 0; i < off; i++) {
            if (b->data[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
    } else {
        line = (unsigned)p->problem_mark.line + 1;
        col = (unsigned)p->problem_mark.column + 1;
    }
    snprintf(b->err->problem, sizeof(b->err->problem), "%s", p->problem ? p->problem : "");
    snprintf(b->err->context, sizeof(b->err->context), "%s", p->context ? p->context : "");
    return fail(b, YTREE_ESYNTAX, line, col);
}

void ytree_free(struct ytree_node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n; i++)
        ytree_free(n->kids[i]);
    free(n->kids);
    if (n->text != NULL)
        explicit_bzero(n->text, n->len);
    free(n->text);
    free(n);
}

static int node_add(struct ytree_node *parent, struct ytree_node *kid)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        struct ytree_node **k = realloc(parent->kids, cap * sizeof(*k));
        if (k == NULL)
            return -1;
        parent->kids = k;
        parent->cap = cap;
    }
    parent->kids[parent->n++] = kid;
    return 0;
}

/*
 * Makes the node of a scalar or collection-start event after the checks, or
 * returns an error. *out is NULL on error.
 */
static remex_err make_node(struct build *b, const yaml_event_t *ev, size_t depth,
                           struct ytree_node **out)
{
    unsigned line = (unsigned)ev->start_mark.line + 1, col = (unsigned)ev->start_mark.column + 1;
    const yaml_char_t *anchor, *tag;
    struct ytree_node *n;

    *out = NULL;
    if (ev->type == YAML_SCALAR_EVENT) {
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
    } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
    } else {
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
    }
    if (anchor != NULL && !(b->lim->flags & YTREE_ALLOW_ANCHORS))
        return fail(b, YTREE_EANCHOR, line, col);
    if (tag != NULL && !(b->lim->flags & YTREE_ALLOW_TAGS))
        return fail(b, YTREE_ETAG, line, col);
    if (++b->nodes > b->lim->max_nodes)
        return fail(b, YTREE_ENODES, line, col);
    if (ev->type != YAML_SCALAR_EVENT && depth >= b->lim->max_depth)
        return fail(b, YTREE_EDEPTH, line, col);
    if (ev->type == YAML_SCALAR_EVENT && (b->lim->flags & YTREE_CHECK_SCALARS) &&
        ytree_utf8_check(ev->data.scalar.value, ev->data.scalar.length) != ev->data.scalar.length)
        return fail(b, YTREE_ESCALAR, line, col);
    n = calloc(1, sizeof(*n));
    if (n == NULL)
        return fail(b, YTREE_ENOMEM, 1, 1);
    n->line = line;
    n->col = col;
    if (ev->type == YAML_SCALAR_EVENT) {
        n->kind = YTREE_SCALAR;
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n->len = ev->data.scalar.length;
        n->text = malloc(n->len + 1);
        if (n->text == NULL) {
            free(n);
            return fail(b, YTREE_ENOMEM, 1, 1);
        }
        memcpy(n->text, ev->data.scalar.value, n->len);
        n->text[n->len] = '\0';
    } else {
        n->kind = ev->type == YAML_SEQUENCE_START_EVENT ? YTREE_SEQ : YTREE_MAP;
    }
    *out = n;
    return REMEX_OK;
}

uint64_t ytree_thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

remex_err ytree_parse(const char *data, size_t len, const struct ytree_limits *lim,
                      struct ytree_node **rootp, struct ytree_error *err)
{
    return ytree_parse_until(data, len, lim, 0, rootp, err);
}

remex_err ytree_parse_until(const char *data, size_t len, const struct ytree_limits *lim,
                            uint64_t cpu_deadline_ns, struct ytree_node **rootp,
                            struct ytree_error *err)
{
    struct ytree_error spare;
    struct build b = {data, len, lim, err != NULL ? err : &spare, 0, cpu_deadline_ns};
    yaml_parser_t p;
    yaml_event_t ev;
    struct ytree_node **stack, *root = NULL;
    size_t depth = 0, events = 0;
    int docs = 0, done = 0;
    remex_err rc = REMEX_OK;

    *rootp = NULL;
    memset(b.err, 0, sizeof(*b.err));
    if (lim->max_depth == 0 || lim->max_nodes == 0)
        return fail(&b, YTREE_EDEPTH, 1, 1);
    stack = malloc(lim->max_depth * sizeof(*stack));
    if (stack == NULL)
        return fail(&b, YTREE_ENOMEM, 1, 1);
    if (!yaml_parser_initialize(&p)) {
        free(stack);
        return fail(&b, YTREE_ENOMEM, 1, 1);
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
    yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);
    while (!done && rc == REMEX_OK) {
        struct ytree_node *n = NULL;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = syntax_error(&b, &p);
            break;
        }
        if (b.cpu_deadline_ns && (++events & 1023) == 0 &&
            ytree_thread_cpu_ns() > b.cpu_deadline_ns) {
            rc = fail(&b, YTREE_ETIME, (unsigned)ev.start_mark.line + 1,
                      (unsigned)ev.start_mark.column + 1);
            yaml_event_delete(&ev);
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                rc = fail(&b, YTREE_EDOCS, (unsigned)ev.start_mark.line + 1,
                          (unsigned)ev.start_mark.column + 1);
            break;
        case YAML_ALIAS_EVENT:
            rc = fail(&b, YTREE_EALIAS, (unsigned)ev.start_mark.line + 1,
                      (unsigned)ev.start_mark.column + 1);
            break;
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            rc = make_node(&b, &ev, depth, &n);
            if (rc != REMEX_OK)
                break;
            if (depth == 0 && root != NULL) { /* libyaml gives one root per document */
                ytree_free(n);
                rc = fail(&b, YTREE_ESYNTAX, (unsigned)ev.start_mark.line + 1,
                          (unsigned)ev.start_mark.column + 1);
                break;
            }
            if (depth > 0 && node_add(stack[depth - 1], n) != 0) {
                ytree_free(n);
                rc = fail(&b, YTREE_ENOMEM, 1, 1);
                break;
            }
            if (depth == 0)
                root = n;
            if (n->kind != YTREE_SCALAR)
                stack[depth++] = n;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0)
                depth--;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    free(stack);
    if (rc != REMEX_OK) {
        ytree_free(root);
        return rc;
    }
    *rootp = root;
    return REMEX_OK;
}

const struct ytree_node *ytree_map_get(const struct ytree_node *m, const char *key)
{
    if (m == NULL || m->kind != YTREE_MAP)
        return NULL;
    for (size_t i = 0; i + 1 < m->n; i += 2)
        if (m->kids[i]->kind == YTREE_SCALAR && strcmp(m->kids[i]->text, key) == 0)
            return m->kids[i + 1];
    return NULL;
}
