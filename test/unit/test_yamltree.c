/* Unit tests: yamltree (YAML text -> node tree, positions, caps, refusals). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "remex/buf.h"
#include "remex/yamltree.h"

static const struct ytree_limits lim = {1000, 8, 0};

static struct ytree_node *parse_ok(const char *y, const struct ytree_limits *l)
{
    struct ytree_node *root = NULL;
    struct ytree_error ye;
    assert_int_equal(ytree_parse(y, strlen(y), l ? l : &lim, &root, &ye), REMEX_OK);
    assert_int_equal(ye.kind, YTREE_ENONE);
    return root;
}

/* Parses y expecting an error of kind at line:col (col 0: any column). */
static void parse_err(const char *y, size_t len, const struct ytree_limits *l, remex_err rc,
                      enum ytree_errkind kind, unsigned line, unsigned col)
{
    struct ytree_node *root = (struct ytree_node *)1;
    struct ytree_error ye;
    assert_int_equal(ytree_parse(y, len, l ? l : &lim, &root, &ye), rc);
    assert_null(root);
    assert_int_equal(ye.kind, kind);
    assert_int_equal(ye.line, line);
    if (col != 0)
        assert_int_equal(ye.col, col);
}

static void test_tree_and_positions(void **state)
{
    (void)state;
    struct ytree_node *r = parse_ok("a: 1\nb:\n  - x\n  - 'q'\nc: {d: \"e\"}\n", NULL);
    assert_non_null(r);
    assert_int_equal(r->kind, YTREE_MAP);
    assert_int_equal(r->line, 1);
    assert_int_equal(r->col, 1);
    assert_int_equal(r->n, 6);
    assert_string_equal(r->kids[0]->text, "a");
    assert_true(r->kids[1]->plain);
    assert_string_equal(r->kids[1]->text, "1");
    assert_int_equal(r->kids[1]->line, 1);
    assert_int_equal(r->kids[1]->col, 4);

    const struct ytree_node *b = ytree_map_get(r, "b");
    assert_non_null(b);
    assert_int_equal(b->kind, YTREE_SEQ);
    assert_int_equal(b->n, 2);
    assert_int_equal(b->kids[1]->line, 4);
    assert_int_equal(b->kids[1]->col, 5);
    assert_false(b->kids[1]->plain); /* quoted */
    assert_string_equal(b->kids[1]->text, "q");

    const struct ytree_node *c = ytree_map_get(r, "c");
    assert_int_equal(c->kind, YTREE_MAP);
    assert_int_equal(c->line, 5);
    assert_int_equal(c->col, 4);
    assert_false(ytree_map_get(c, "d")->plain);
    assert_null(ytree_map_get(r, "zz"));
    assert_null(ytree_map_get(b, "x")); /* not a mapping */
    assert_null(ytree_map_get(NULL, "x"));
    ytree_free(r);

    /* Block scalars are not plain; embedded NULs are kept with their length. */
    r = parse_ok("a: |\n  text\nb: \"x\\0y\"\n", NULL);
    assert_false(r->kids[1]->plain);
    assert_string_equal(r->kids[1]->text, "text\n");
    assert_int_equal(r->kids[3]->len, 3);
    assert_int_equal(r->kids[3]->text[1], '\0');
    ytree_free(r);

    /* Empty input, empty document and explicit null. */
    assert_null(parse_ok("", NULL));
    assert_null(parse_ok("# only a comment\n", NULL));
    r = parse_ok("---\n...\n", NULL); /* an explicit document holds an empty scalar */
    assert_int_equal(r->kind, YTREE_SCALAR);
    assert_int_equal(r->len, 0);
    ytree_free(r);
    r = parse_ok("~", NULL);
    assert_int_equal(r->kind, YTREE_SCALAR);
    assert_true(r->plain);
    ytree_free(r);
    ytree_free(NULL);

    /* Data need not be NUL-terminated: only len bytes are read. */
    struct ytree_node *t = NULL;
    assert_int_equal(ytree_parse("a: bc", 4, &lim, &t, NULL), REMEX_OK);
    assert_string_equal(t->kids[1]->text, "b");
    ytree_free(t);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    struct ytree_node *root;
    struct ytree_error ye;
    const char *y = "a: {b: 1\nc: 2\n";
    assert_int_equal(ytree_parse(y, strlen(y), &lim, &root, &ye), REMEX_EPARSE);
    assert_int_equal(ye.kind, YTREE_ESYNTAX);
    assert_int_equal(ye.line, 2);
    assert_int_equal(ye.col, 2);
    assert_string_equal(ye.problem, "did not find expected ',' or '}'");
    assert_string_equal(ye.context, "while parsing a flow mapping");

    parse_err("a: b: c\n", 8, NULL, REMEX_EPARSE, YTREE_ESYNTAX, 1, 5);
    parse_err("a: [1\n", 6, NULL, REMEX_EPARSE, YTREE_ESYNTAX, 2, 1);
    parse_err("a: 'x\n", 6, NULL, REMEX_EPARSE, YTREE_ESYNTAX, 2, 1);
    parse_err("\t- a\n", 5, NULL, REMEX_EPARSE, YTREE_ESYNTAX, 1, 1);
    /* Reader errors are placed at the bad byte (columns in bytes). */
    parse_err("a: 1\nb: \xff\n", 10, NULL, REMEX_EPARSE, YTREE_ESYNTAX, 2, 4);
    parse_err("a: \"\xc3\x28\"\n", 8, NULL, REMEX_EPARSE, YTREE_ESYNTAX, 1, 6);
    parse_err("a: x\x01y\n", 7, NULL, REMEX_EPARSE, YTREE_ESYNTAX, 1, 5);
    parse_err("a: 1\0b: 2\n", 10, NULL, REMEX_EPARSE, YTREE_ESYNTAX, 1, 5);
}

static void test_refusals(void **state)
{
    (void)state;
    const struct ytree_limits open = {1000, 8, YTREE_ALLOW_ANCHORS | YTREE_ALLOW_TAGS};
    const struct ytree_limits check = {1000, 8, YTREE_CHECK_SCALARS};

    /* Aliases, always; anchors and tags unless allowed. */
    parse_err("a: &x 1\nb: *x\n", 14, &open, REMEX_EPARSE, YTREE_EALIAS, 2, 4);
    parse_err("a: [*x]\n", 8, &open, REMEX_EPARSE, YTREE_EALIAS, 1, 5);
    parse_err("a: &x 1\n", 8, NULL, REMEX_EPARSE, YTREE_EANCHOR, 1, 4);
    parse_err("a: &x [1]\n", 10, NULL, REMEX_EPARSE, YTREE_EANCHOR, 1, 4);
    parse_err("a: !!str 1\n", 11, NULL, REMEX_EPARSE, YTREE_ETAG, 1, 4);
    parse_err("a: !t {b: 1}\n", 13, NULL, REMEX_EPARSE, YTREE_ETAG, 1, 4);
    struct ytree_node *r = parse_ok("a: &x !!str 1\n", &open);
    assert_string_equal(r->kids[1]->text, "1");
    ytree_free(r);

    /* One document. */
    parse_err("a: 1\n---\nb: 2\n", 14, NULL, REMEX_EPARSE, YTREE_EDOCS, 2, 1);
    parse_err("--- 1\n--- 2\n", 12, NULL, REMEX_EPARSE, YTREE_EDOCS, 2, 1);

    /* Scalars holding a NUL (escape) or a lone surrogate, when asked. */
    parse_err("a: \"x\\0y\"\n", 10, &check, REMEX_EPARSE, YTREE_ESCALAR, 1, 4);
    parse_err("a: [\"\\0\"]\n", 10, &check, REMEX_EPARSE, YTREE_ESCALAR, 1, 5);
    parse_err("a: \"\\ud800\"\n", 12, &check, REMEX_EPARSE, YTREE_ESYNTAX, 1, 0); /* libyaml's */
    r = parse_ok("a: \"\\u00e9t\\u00e9\"\n", &check);
    assert_string_equal(r->kids[1]->text, "\xc3\xa9t\xc3\xa9");
    ytree_free(r);
}

static void test_caps(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(1 << 20);
    const struct ytree_limits three = {1000, 3, 0};

    /* Depth: at most max_depth containers nested; scalars may sit in the deepest. */
    struct ytree_node *r = parse_ok("a: [[x]]\n", &three);
    ytree_free(r);
    parse_err("a: [[[x]]]\n", 11, &three, REMEX_ETOOBIG, YTREE_EDEPTH, 1, 6);
    parse_err("- - - - x\n", 10, &three, REMEX_ETOOBIG, YTREE_EDEPTH, 1, 7);
    for (int i = 0; i < 100000; i++)
        buf_putc(&b, '[');
    parse_err(b.data, b.len, NULL, REMEX_ETOOBIG, YTREE_EDEPTH, 1, 9);

    /* Nodes: keys, values and containers all count. */
    const struct ytree_limits five = {5, 8, 0};
    r = parse_ok("a: 1\nb: 2\n", &five);
    ytree_free(r);
    parse_err("a: 1\nb: 2\nc: 3\n", 15, &five, REMEX_ETOOBIG, YTREE_ENODES, 3, 1);
    buf_reset(&b);
    buf_puts(&b, "[");
    for (int i = 0; i < 5000; i++)
        buf_puts(&b, "1,");
    buf_puts(&b, "1]");
    parse_err(b.data, b.len, NULL, REMEX_ETOOBIG, YTREE_ENODES, 1, 0);

    /* Zero caps are refused rather than read as "unlimited". */
    const struct ytree_limits zero = {0, 0, 0};
    parse_err("a", 1, &zero, REMEX_ETOOBIG, YTREE_EDEPTH, 1, 1);
    buf_free(&b);
}

static void test_utf8_check(void **state)
{
    (void)state;
    assert_int_equal(ytree_utf8_check("abc", 3), 3);
    assert_int_equal(ytree_utf8_check("", 0), 0);
    assert_int_equal(ytree_utf8_check("\xc3\xa9\xf0\x9f\x98\x80", 6), 6);
    assert_int_equal(ytree_utf8_check("ab\0c", 4), 2);
    assert_int_equal(ytree_utf8_check("a\xff", 2), 1);
    assert_int_equal(ytree_utf8_check("a\xc0\xaf", 3), 1);         /* overlong '/' */
    assert_int_equal(ytree_utf8_check("a\xed\xa0\x80", 4), 1);     /* surrogate */
    assert_int_equal(ytree_utf8_check("a\xf4\x90\x80\x80", 5), 1); /* past U+10FFFF */
    assert_int_equal(ytree_utf8_check("a\xe2\x82", 3), 1);         /* truncated */
}

/* ytree_parse_until: a passed CPU deadline stops the parse at the 1024th event
 * (one scalar per line here: line 1024); 0 is no cap. */
static void test_cpu_deadline(void **state)
{
    (void)state;
    static const struct ytree_limits big = {100000, 8, 0};
    struct buf b;
    struct ytree_node *root = (struct ytree_node *)1;
    struct ytree_error ye;
    buf_init(&b, 1 << 20);
    for (int i = 0; i < 3000; i++)
        assert_int_equal(buf_printf(&b, "- %d\n", i), 0);
    assert_int_equal(ytree_parse_until(b.data, b.len, &big, 1, &root, &ye), REMEX_ETIMEOUT);
    assert_null(root);
    assert_int_equal(ye.kind, YTREE_ETIME);
    assert_true(ye.line > 1000 && ye.line < 1030);
    assert_int_equal(ytree_parse_until(b.data, b.len, &big, 0, &root, &ye), REMEX_OK);
    assert_int_equal(root->n, 3000);
    ytree_free(root);
    uint64_t far = ytree_thread_cpu_ns() + 60ull * 1000000000u;
    assert_int_equal(ytree_parse_until(b.data, b.len, &big, far, &root, &ye), REMEX_OK);
    ytree_free(root);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_and_positions), cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_refusals),           cmocka_unit_test(test_caps),
        cmocka_unit_test(test_utf8_check),         cmocka_unit_test(test_cpu_deadline),
    };
    return cmocka_run_group_tests_name("yamltree", tests, NULL, NULL);
}
