/* Unit tests: dagyaml (YAML DAG files, diagnostics, docs and example files). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remex/buf.h"
#include "remex/dagyaml.h"
#include "remex/hash.h"

static remex_err parse(const char *yaml, struct dagyaml_result *r)
{
    struct remex_error e = {0};
    return dagyaml_parse(yaml, strlen(yaml), "t.yaml", r, &e);
}

static struct dag *parse_one(const char *yaml, struct dagyaml_result *r)
{
    struct remex_error e = {0};
    if (dagyaml_parse(yaml, strlen(yaml), "t.yaml", r, &e) != REMEX_OK)
        fail_msg("parse failed: %s", e.msg);
    assert_int_equal(r->ndags, 1);
    return r->dags[0];
}

/* Asserts a diagnostic at line:col (0 = any) containing msg. */
static void expect_diag(const char *yaml, unsigned line, unsigned col, const char *msg)
{
    struct dagyaml_result r;
    assert_int_equal(parse(yaml, &r), REMEX_EPARSE);
    assert_int_equal(r.ndags, 0);
    for (size_t i = 0; i < r.ndiags; i++) {
        if ((line == 0 || r.diags[i].line == line) && (col == 0 || r.diags[i].column == col) &&
            strstr(r.diags[i].msg, msg) != NULL) {
            dagyaml_result_free(&r);
            return;
        }
    }
    struct buf b = BUF_INIT(65536);
    dagyaml_format_diags(&r, "t.yaml", &b);
    fail_msg("no diagnostic %u:%u '%s' in:\n%s", line, col, msg, buf_cstr(&b));
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    char *data = malloc(DAGYAML_FILE_MAX + 1);
    assert_non_null(data);
    *len = fread(data, 1, DAGYAML_FILE_MAX, f);
    data[*len] = '\0';
    fclose(f);
    return data;
}

/* Each DAG comes with the canonical text its hash was made of (dag_to_json's), so a
 * caller that uploads it does not encode it again; a file with a diagnostic keeps none. */
static void test_canonical_texts_kept(void **state)
{
    (void)state;
    static const char y[] = "dags:\n"
                            "  - dag_id: one\n    tasks:\n      - {task_id: a, command: [echo]}\n"
                            "  - dag_id: two\n    tasks:\n      - {task_id: b, shell: echo}\n";
    struct dagyaml_result res;
    struct remex_error e;
    assert_int_equal(dagyaml_parse(y, strlen(y), "two.yaml", &res, &e), REMEX_OK);
    assert_int_equal(res.ndags, 2);
    assert_non_null(res.texts);
    for (size_t i = 0; i < res.ndags; i++) {
        char *t = NULL, hex[HASH_SHA256_HEX];
        size_t len = 0;
        assert_int_equal(dag_to_json(res.dags[i], &t, &len, &e), REMEX_OK);
        assert_non_null(res.texts[i]);
        assert_string_equal(res.texts[i], t);
        assert_int_equal(hash_sha256_hex(res.texts[i], strlen(res.texts[i]), hex), REMEX_OK);
        assert_string_equal(hex, res.dags[i]->hash);
        free(t);
    }
    free(res.texts[1]); /* a caller may take a text and leave NULL */
    res.texts[1] = NULL;
    dagyaml_result_free(&res);
    static const char bad[] = "dags:\n  - dag_id: one\n    tasks:\n      - {task_id: a, "
                              "command: [echo]}\n  - dag_id: two\n    tasks: 3\n";
    assert_int_equal(dagyaml_parse(bad, strlen(bad), "bad.yaml", &res, &e), REMEX_EPARSE);
    assert_int_equal(res.ndags, 0);
    assert_null(res.texts);
    dagyaml_result_free(&res);
}

static void test_example_files_parse(void **state)
{
    (void)state;
    DIR *d = opendir("etc/dags");
    struct dirent *de;
    int files = 0;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".yaml") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof(path), "etc/dags/%s", de->d_name);
        struct dagyaml_result r;
        struct remex_error e = {0};
        if (dagyaml_parse_file(path, path, &r, &e) != REMEX_OK)
            fail_msg("%s", e.msg);
        assert_true(r.ndags >= 1);
        assert_string_equal(r.dags[0]->fileloc, path);
        dagyaml_result_free(&r);
        files++;
    }
    closedir(d);
    assert_true(files >= 2);
}

/* Calls fn on each ```lang block of docs/dag-format.md; returns the count. */
static int doc_blocks(const char *lang, void (*fn)(const char *block, int idx))
{
    size_t len;
    char *doc = read_all("docs/dag-format.md", &len);
    char fence[32];
    int n = 0;
    snprintf(fence, sizeof(fence), "```%s\n", lang);
    for (char *p = strstr(doc, fence); p != NULL; p = strstr(p, fence)) {
        p += strlen(fence);
        char *end = strstr(p, "```\n");
        assert_non_null(end);
        *end = '\0';
        fn(p, n++);
        p = end + 4;
    }
    free(doc);
    return n;
}

static void check_yaml_block(const char *block, int idx)
{
    struct dagyaml_result r;
    struct remex_error e = {0};
    if (dagyaml_parse(block, strlen(block), "docs/dag-format.md", &r, &e) != REMEX_OK)
        fail_msg("yaml block %d: %s", idx, e.msg);
    assert_true(r.ndags >= 1);
    dagyaml_result_free(&r);
}

static void check_json_block(const char *block, int idx)
{
    struct dag *d = NULL;
    struct remex_error e = {0};
    if (dag_from_json(block, strlen(block), &d, &e) != REMEX_OK)
        fail_msg("json block %d: %s", idx, e.msg);
    dag_free(d);
}

static void test_doc_examples_parse(void **state)
{
    (void)state;
    assert_true(doc_blocks("yaml", check_yaml_block) >= 4);
    assert_true(doc_blocks("json", check_json_block) >= 1);
}

static void test_doc_example_matches_etc(void **state)
{
    (void)state;
    /* The first task of the ETL example and etc/dags/etl.yaml describe the same DAG id. */
    struct dagyaml_result r;
    struct remex_error e = {0};
    assert_int_equal(dagyaml_parse_file("etc/dags/etl.yaml", "etl.yaml", &r, &e), REMEX_OK);
    assert_string_equal(r.dags[0]->dag_id, "etl_daily");
    assert_int_equal(r.dags[0]->ntasks, 6);
    dagyaml_result_free(&r);
}

static void test_single_dag_and_defaults(void **state)
{
    (void)state;
    struct dagyaml_result r;
    struct dag *d = parse_one("dag_id: a\n"
                              "tasks:\n"
                              "  - task_id: t\n"
                              "    command: [sleep, 5]\n",
                              &r);
    assert_string_equal(d->dag_id, "a");
    assert_string_equal(d->fileloc, "t.yaml");
    assert_null(d->schedule);
    assert_int_equal(d->max_active_runs, 16);
    assert_string_equal(d->tasks[0].command.v[1], "5");
    assert_int_equal(d->tasks[0].retry_delay_ms, 300000);
    assert_string_equal(d->tasks[0].queue, "default");
    dagyaml_result_free(&r);
}

/* pool: a task's own, from default_args, or default_pool. */
static void test_pool_key(void **state)
{
    (void)state;
    struct dagyaml_result r;
    struct dag *d = parse_one("dag_id: p\n"
                              "default_args: {pool: warehouse}\n"
                              "tasks:\n"
                              "  - {task_id: a, shell: 'true'}\n"
                              "  - {task_id: b, shell: 'true', pool: reports, pool_slots: 2}\n",
                              &r);
    assert_string_equal(d->tasks[0].pool, "warehouse");
    assert_string_equal(d->tasks[1].pool, "reports");
    assert_int_equal(d->tasks[1].pool_slots, 2);
    dagyaml_result_free(&r);
    d = parse_one("dag_id: q\ntasks:\n  - {task_id: a, shell: 'true'}\n", &r);
    assert_true(d->tasks[0].pool == NULL || strcmp(d->tasks[0].pool, "default_pool") == 0);
    dagyaml_result_free(&r);
    assert_int_not_equal(
        parse("dag_id: x\ntasks:\n  - {task_id: a, shell: 'true', pool: [1]}\n", &r), REMEX_OK);
    dagyaml_result_free(&r);
}

static void test_dags_list_form(void **state)
{
    (void)state;
    struct dagyaml_result r;
    assert_int_equal(parse("dags:\n"
                           "  - {dag_id: a, tasks: [{task_id: x, shell: 'true'}]}\n"
                           "  - {dag_id: b, tasks: [{task_id: x, shell: 'true'}]}\n",
                           &r),
                     REMEX_OK);
    assert_int_equal(r.ndags, 2);
    assert_string_equal(r.dags[1]->dag_id, "b");
    dagyaml_result_free(&r);
    expect_diag("dags:\n  - {dag_id: a, tasks: [{task_id: x, shell: 'true'}]}\n"
                "  - {dag_id: a, tasks: [{task_id: x, shell: 'true'}]}\n",
                3, 14, "dag_id: duplicate dag id 'a'");
    expect_diag("schedule: '@daily'\ndags: []\n", 1, 1, "unexpected key next to `dags:`");
    expect_diag("dags: {}\n", 1, 7, "dags: expected a list");
}

static void test_default_args_merge(void **state)
{
    (void)state;
    struct dagyaml_result r;
    struct dag *d = parse_one("dag_id: a\n"
                              "default_args:\n"
                              "  retries: 2\n"
                              "  queue: q1\n"
                              "  trigger_rule: all_done\n"
                              "  env: {A: '1', B: '2'}\n"
                              "  limits: {memory: 64MiB, processes: 10}\n"
                              "tasks:\n"
                              "  - task_id: t1\n"
                              "    shell: x\n"
                              "  - task_id: t2\n"
                              "    shell: x\n"
                              "    retries: 0\n"
                              "    env: {B: three, C: '4'}\n"
                              "    limits: {processes: 20}\n",
                              &r);
    const struct dag_task *t1 = &d->tasks[0], *t2 = &d->tasks[1];
    assert_int_equal(t1->retries, 2);
    assert_string_equal(t1->queue, "q1");
    assert_int_equal(t1->trigger_rule, DAG_TR_ALL_DONE);
    assert_int_equal(t2->retries, 0);
    assert_int_equal(t2->nenv, 3);
    assert_string_equal(t2->env[1].value, "three");
    assert_int_equal(t2->limits.memory, 64 * 1024 * 1024);
    assert_int_equal(t2->limits.processes, 20);
    assert_int_equal(t1->limits.processes, 10);
    dagyaml_result_free(&r);
}

static void test_durations_sizes_dates(void **state)
{
    (void)state;
    struct dagyaml_result r;
    struct dag *d = parse_one("dag_id: a\n"
                              "schedule: '*/15 * * * *'\n"
                              "start_date: 2026-03-04\n"
                              "end_date: 2026-03-05 10:00:00+02:00\n"
                              "dagrun_timeout: 1h30m\n"
                              "tasks:\n"
                              "  - task_id: t\n"
                              "    shell: x\n"
                              "    retry_delay: 90\n"
                              "    max_retry_delay: 0.5\n"
                              "    execution_timeout: 250ms\n"
                              "    limits: {memory: 1000, cpu_time: 2d, open_files: null}\n",
                              &r);
    assert_int_equal(d->start_date_ms, 1772582400000LL);
    assert_int_equal(d->end_date_ms, 1772697600000LL);
    assert_int_equal(d->dagrun_timeout_ms, 5400000);
    assert_int_equal(d->tasks[0].retry_delay_ms, 90000);
    assert_int_equal(d->tasks[0].max_retry_delay_ms, 500);
    assert_int_equal(d->tasks[0].execution_timeout_ms, 250);
    assert_int_equal(d->tasks[0].limits.memory, 1000);
    assert_int_equal(d->tasks[0].limits.cpu_time_ms, 2 * 86400000LL);
    assert_true(d->tasks[0].limits.open_files == DAG_UNSET);
    dagyaml_result_free(&r);
    expect_diag("dag_id: a\ntasks:\n  - {task_id: t, shell: x, retry_delay: 5 minutes}\n", 3, 41,
                "retry_delay: expected a duration");
    expect_diag("dag_id: a\ntasks:\n  - {task_id: t, shell: x, retry_delay: -5}\n", 3, 41,
                "retry_delay: expected a duration");
    expect_diag("dag_id: a\ntasks:\n  - task_id: t\n    shell: x\n    limits: {memory: 1.5GiB}\n",
                5, 22, "memory: expected a size");
    expect_diag("dag_id: a\nstart_date: 2026-02-30\ntasks: [{task_id: t, shell: x}]\n", 2, 13,
                "start_date: expected a date");
}

static void test_unknown_key_suggestion(void **state)
{
    (void)state;
    expect_diag("dag_id: a\nshedule: '@daily'\ntasks: [{task_id: t, shell: x}]\n", 2, 1,
                "unknown key 'shedule' (did you mean 'schedule'?)");
    expect_diag("dag_id: a\ntasks:\n  - task_id: t\n    shell: x\n    retrys: 3\n", 5, 5,
                "unknown key 'retrys' (did you mean 'retries'?)");
    expect_diag("dag_id: a\ntasks:\n  - task_id: t\n    shell: x\n    colour: red\n", 5, 5,
                "unknown key 'colour'");
    expect_diag("dag_id: a\ndefault_args: {command: [x]}\ntasks: [{task_id: t, shell: x}]\n", 2, 16,
                "unknown key 'command'");
    expect_diag("dag_id: a\ntasks:\n  - {task_id: t, shell: x, trigger_rule: one_sucess}\n", 3, 42,
                "unknown trigger rule (did you mean 'one_success'?)");
}

static void test_wrong_types_positioned(void **state)
{
    (void)state;
    expect_diag("dag_id: a\ncatchup: yes\ntasks: [{task_id: t, shell: x}]\n", 2, 10,
                "catchup: expected boolean");
    expect_diag("dag_id: a\nmax_active_runs: '3'\ntasks: [{task_id: t, shell: x}]\n", 2, 18,
                "max_active_runs: expected integer");
    expect_diag("dag_id: a\ntags: etl\ntasks: [{task_id: t, shell: x}]\n", 2, 7,
                "tags: expected a list of strings");
    expect_diag("dag_id: a\nparams: [1]\ntasks: [{task_id: t, shell: x}]\n", 2, 9,
                "params: expected a mapping");
    expect_diag("dag_id: a\ntasks:\n  - task_id: t\n    command: ls -l\n", 4, 14,
                "use shell: for a command line");
    expect_diag("dag_id: a\ntasks:\n  - task_id: t\n    command: [ls, {a: b}]\n", 4, 19,
                "command[1]: expected string");
    expect_diag("dag_id: a\ntasks:\n  - task_id: t\n    shell: x\n    env: {A: ~}\n", 5, 14,
                "env.A: expected string");
    expect_diag("dag_id: a\ntasks: {t: {shell: x}}\n", 2, 8, "tasks: expected a list");
    expect_diag("dag_id: a\ntasks:\n  - just a string\n", 3, 5, "expected a mapping");
    expect_diag("tasks: [{task_id: t, shell: x}]\n", 1, 1, "dag_id: required");
    expect_diag("dag_id: a\ntasks: [{shell: x}]\n", 2, 9, "task_id: required");
    expect_diag("- a\n- b\n", 1, 1, "expected a DAG mapping");
}

static void test_several_errors_collected(void **state)
{
    (void)state;
    struct dagyaml_result r;
    assert_int_equal(parse("dag_id: a\nfoo: 1\nbar: 2\ntasks:\n  - task_id: t\n    baz: 3\n"
                           "    retries: x\n",
                           &r),
                     REMEX_EPARSE);
    assert_true(r.ndiags >= 4);
    assert_false(r.more_diags);
    dagyaml_result_free(&r);
    struct buf b = BUF_INIT(65536);
    buf_puts(&b, "dag_id: a\n");
    for (int i = 0; i < 30; i++)
        buf_printf(&b, "unknown_%d: 1\n", i);
    buf_puts(&b, "tasks: [{task_id: t, shell: x}]\n");
    assert_int_equal(parse(b.data, &r), REMEX_EPARSE);
    assert_int_equal(r.ndiags, DAGYAML_DIAGS_MAX);
    assert_true(r.more_diags);
    struct buf out = BUF_INIT(65536);
    assert_int_equal(dagyaml_format_diags(&r, "f.yaml", &out), REMEX_OK);
    assert_non_null(strstr(buf_cstr(&out), "f.yaml:2:1: unknown key 'unknown_0'\n"));
    assert_non_null(strstr(buf_cstr(&out), "too many errors"));
    buf_free(&out);
    buf_free(&b);
    dagyaml_result_free(&r);
}

static void test_validation_errors_at_node(void **state)
{
    (void)state;
    const char *y = "dag_id: a\n"
                    "tasks:\n"
                    "  - task_id: extract\n"
                    "    shell: x\n"
                    "  - task_id: load\n"
                    "    shell: x\n"
                    "    upstream: [extract, extarct]\n";
    expect_diag(y, 7, 25, "tasks[1].upstream[1]: unknown task 'extarct'");
    expect_diag("dag_id: a\ntasks:\n  - {task_id: a, shell: x}\n  - {task_id: a, shell: y}\n", 4,
                15, "tasks[1].task_id: duplicate task id 'a'");
    expect_diag("dag_id: a\ntasks:\n  - task_id: a\n    upstream: b\n    shell: x\n"
                "  - task_id: b\n    upstream: a\n    shell: x\n",
                3, 5, "tasks: cycle a -> b -> a");
    expect_diag("dag_id: a\ntasks:\n  - task_id: a\n    shell: x\n    command: [y]\n", 3, 5,
                "tasks[0]: command and shell are mutually exclusive");
    expect_diag("dag_id: a\nschedule: 0 25 * * *\nstart_date: 2026-01-01\n"
                "tasks: [{task_id: t, shell: x}]\n",
                2, 11, "schedule: hour field: value 25 out of range 0-23 (column 3)");
    expect_diag("dag_id: a\nschedule: '@daily'\ntasks: [{task_id: t, shell: x}]\n", 1, 1,
                "start_date: required when schedule is set");
    expect_diag("dag_id: a\ndefault_args: {retries: -2}\ntasks: [{task_id: t, shell: x}]\n", 2, 25,
                "tasks[0].retries: expected integer >= 0");
    expect_diag("dag_id: a b\ntasks: [{task_id: t, shell: x}]\n", 1, 9,
                "dag_id: expected id matching");
}

static void test_refusals(void **state)
{
    (void)state;
    expect_diag("dag_id: a\ndefault_args: &d {retries: 1}\ntasks: [{task_id: t, shell: x}]\n", 2,
                15, "anchors are not supported");
    expect_diag("dag_id: a\ntasks: [{task_id: t, shell: x}]\nx: *d\n", 0, 0, "");
    expect_diag("dag_id: !!str a\ntasks: [{task_id: t, shell: x}]\n", 1, 9,
                "tags are not supported");
    expect_diag("dag_id: a\n---\ndag_id: b\n", 2, 1, "more than one YAML document");
    expect_diag("dag_id: a\ndag_id: b\ntasks: [{task_id: t, shell: x}]\n", 2, 1,
                "duplicate key 'dag_id'");
    expect_diag("dag_id: a\nparams: {x: 1, x: 2}\ntasks: [{task_id: t, shell: x}]\n", 2, 16,
                "duplicate key 'x'");
    expect_diag("dag_id: a\ntasks: [{task_id: t, shell: \"a\xff\"}]\n", 2, 31, "invalid UTF-8");
    expect_diag("dag_id: a\ntasks: [{task_id: t, shell: \"\xc0\xaf\"}]\n", 2, 30, "invalid UTF-8");
    expect_diag("dag_id: a\n  : [\n", 0, 0, "");
    expect_diag("dag_id: \"a\\0b\"\ntasks: [{task_id: t, shell: x}]\n", 1, 9, "scalar holds a NUL");
}

static void test_unquoted_cron_hint(void **state)
{
    (void)state;
    expect_diag("dag_id: a\nschedule: */15 * * * *\nstart_date: 2026-01-01\n"
                "tasks: [{task_id: t, shell: x}]\n",
                2, 0, "quote values that start with *");
    expect_diag("dag_id: a\nschedule: @daily\nstart_date: 2026-01-01\n"
                "tasks: [{task_id: t, shell: x}]\n",
                2, 11, "quote values that start with *, @");
}

static void test_nul_byte(void **state)
{
    (void)state;
    const char y[] = "dag_id: a\0\ntasks: []\n";
    struct dagyaml_result r;
    struct remex_error e = {0};
    assert_int_equal(dagyaml_parse(y, sizeof(y) - 1, "n.yaml", &r, &e), REMEX_EPARSE);
    assert_string_equal(e.msg, "n.yaml:1:10: NUL byte");
    dagyaml_result_free(&r);
}

static void test_anchor_alias_message(void **state)
{
    (void)state;
    expect_diag("dag_id: a\ntasks:\n  - task_id: t\n    shell: x\n  - *t\n", 5, 5, "");
}

static void test_depth_cap(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(65536);
    buf_puts(&b, "dag_id: a\nparams: {x: ");
    for (int i = 0; i < 100; i++)
        buf_putc(&b, '[');
    for (int i = 0; i < 100; i++)
        buf_putc(&b, ']');
    buf_puts(&b, "}\ntasks: [{task_id: t, shell: x}]\n");
    expect_diag(b.data, 2, 0, "nesting deeper than");
    buf_free(&b);
}

static void test_size_cap(void **state)
{
    (void)state;
    size_t n = DAGYAML_FILE_MAX + 1;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, '#', n);
    big[n] = '\0';
    struct dagyaml_result r;
    struct remex_error e = {0};
    assert_int_equal(dagyaml_parse(big, n, "big.yaml", &r, &e), REMEX_EPARSE);
    assert_non_null(strstr(e.msg, "big.yaml:1:1: file larger than"));
    dagyaml_result_free(&r);
    free(big);
}

static void test_templates_verbatim(void **state)
{
    (void)state;
    struct dagyaml_result r;
    struct dag *d = parse_one("dag_id: a\n"
                              "params: {n: 3}\n"
                              "tasks:\n"
                              "  - task_id: t\n"
                              "    command: [run, '{{ ds }}', \"{{ params.n }}\"]\n",
                              &r);
    assert_string_equal(d->tasks[0].command.v[1], "{{ ds }}");
    assert_string_equal(d->tasks[0].command.v[2], "{{ params.n }}");
    dagyaml_result_free(&r);
    /* An unquoted template in flow style is a YAML mapping: reported, not crashed. */
    expect_diag("dag_id: a\ntasks:\n  - task_id: t\n    command: [run, {{ ts }}]\n", 4, 20,
                "command[1]: expected string");
    d = parse_one("dag_id: a\n"
                  "tasks:\n"
                  "  - task_id: t\n"
                  "    shell: echo {{ run_id }} {{ try_number }} {{ task_id }}\n",
                  &r);
    assert_string_equal(d->tasks[0].shell, "echo {{ run_id }} {{ try_number }} {{ task_id }}");
    dagyaml_result_free(&r);
}

static void test_upstream_forms_and_sensor(void **state)
{
    (void)state;
    struct dagyaml_result r;
    struct dag *d = parse_one("dag_id: a\n"
                              "tasks:\n"
                              "  - task_id: w\n"
                              "    trigger: {type: timer, delta: 5m, timeout: 1h}\n"
                              "  - task_id: x\n"
                              "    upstream: w\n"
                              "    shell: x\n",
                              &r);
    assert_int_equal(d->tasks[1].upstream.n, 1);
    assert_int_equal(d->tasks[1].upstream_idx[0], 0);
    json_t *tj = dag_task_to_json_value(&d->tasks[0]);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(tj, "trigger"), "timeout")),
                     3600);
    assert_string_equal(json_string_value(json_object_get(json_object_get(tj, "trigger"), "delta")),
                        "5m");
    json_decref(tj);
    dagyaml_result_free(&r);
}

static void test_empty_and_comment_only(void **state)
{
    (void)state;
    struct dagyaml_result r;
    assert_int_equal(parse("", &r), REMEX_OK);
    assert_int_equal(r.ndags, 0);
    dagyaml_result_free(&r);
    assert_int_equal(parse("# nothing here\n", &r), REMEX_OK);
    assert_int_equal(r.ndags, 0);
    dagyaml_result_free(&r);
}

static void test_parse_file_errors(void **state)
{
    (void)state;
    struct dagyaml_result r;
    struct remex_error e = {0};
    assert_int_equal(dagyaml_parse_file("etc/dags/no-such.yaml", "x.yaml", &r, &e), REMEX_EIO);
    assert_int_equal(r.ndiags, 1);
    dagyaml_result_free(&r);
    assert_int_equal(dagyaml_parse_file("etc/dags", "dir.yaml", &r, &e), REMEX_EIO);
    dagyaml_result_free(&r);
}

static void test_yaml_json_hash_stable(void **state)
{
    (void)state;
    struct dagyaml_result r1, r2;
    struct remex_error e = {0};
    assert_int_equal(dagyaml_parse_file("etc/dags/etl.yaml", "etl.yaml", &r1, &e), REMEX_OK);
    assert_int_equal(dagyaml_parse_file("etc/dags/etl.yaml", "etl.yaml", &r2, &e), REMEX_OK);
    assert_string_equal(r1.dags[0]->hash, r2.dags[0]->hash);
    char *s = NULL;
    assert_int_equal(dag_to_json(r1.dags[0], &s, NULL, NULL), REMEX_OK);
    struct dag *d = NULL;
    assert_int_equal(dag_from_json(s, strlen(s), &d, &e), REMEX_OK);
    assert_string_equal(d->hash, r1.dags[0]->hash);
    dag_free(d);
    free(s);
    dagyaml_result_free(&r1);
    dagyaml_result_free(&r2);
}

static void test_truncation_every_offset(void **state)
{
    (void)state;
    size_t len;
    char *data = read_all("etc/dags/etl.yaml", &len);
    int ok = 0, bad = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        struct dagyaml_result r;
        struct remex_error e = {0};
        char *copy = malloc(cut + 1);
        assert_non_null(copy);
        memcpy(copy, data, cut);
        copy[cut] = '\0';
        remex_err rc = dagyaml_parse(copy, cut, "etl.yaml", &r, &e);
        if (rc == REMEX_OK) {
            ok++;
        } else {
            assert_int_equal(rc, REMEX_EPARSE);
            assert_true(r.ndiags >= 1);
            assert_true(r.diags[0].line >= 1 && r.diags[0].column >= 1);
            assert_int_equal(r.ndags, 0);
            bad++;
        }
        dagyaml_result_free(&r);
        free(copy);
    }
    assert_true(ok >= 2 && bad >= 100);
    free(data);
}

/* dagyaml_parse_until: a file past the CPU time cap gets one diagnostic naming
 * the cap and no DAG; without a cap (0) or with a generous one it parses. */
static void test_time_cap(void **state)
{
    (void)state;
    struct buf b;
    struct dagyaml_result res;
    struct remex_error e;
    buf_init(&b, DAGYAML_FILE_MAX);
    assert_int_equal(buf_puts(&b, "dag_id: big\nparams:\n"), 0);
    for (int i = 0; i < 80000; i++)
        assert_int_equal(buf_printf(&b, "  k%d: 1\n", i), 0);
    assert_int_equal(buf_puts(&b, "tasks:\n  - task_id: t\n    command: [x]\n"), 0);
    assert_int_equal(dagyaml_parse_until(b.data, b.len, "big.yaml", 1, &res, &e), REMEX_EPARSE);
    assert_int_equal(res.ndiags, 1);
    assert_int_equal(res.ndags, 0);
    assert_string_equal(res.diags[0].msg, "parsing took longer than the 1 ms cap per file");
    assert_true(res.diags[0].line > 1);
    dagyaml_result_free(&res);
    assert_int_equal(dagyaml_parse_until(b.data, b.len, "big.yaml", 0, &res, &e), REMEX_OK);
    assert_int_equal(res.ndags, 1);
    dagyaml_result_free(&res);
    assert_int_equal(dagyaml_parse_until(b.data, b.len, "big.yaml", 60000, &res, &e), REMEX_OK);
    assert_int_equal(res.ndags, 1);
    dagyaml_result_free(&res);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_texts_kept),
        cmocka_unit_test(test_example_files_parse),
        cmocka_unit_test(test_doc_examples_parse),
        cmocka_unit_test(test_doc_example_matches_etc),
        cmocka_unit_test(test_single_dag_and_defaults),
        cmocka_unit_test(test_dags_list_form),
        cmocka_unit_test(test_pool_key),
        cmocka_unit_test(test_default_args_merge),
        cmocka_unit_test(test_durations_sizes_dates),
        cmocka_unit_test(test_unknown_key_suggestion),
        cmocka_unit_test(test_wrong_types_positioned),
        cmocka_unit_test(test_several_errors_collected),
        cmocka_unit_test(test_validation_errors_at_node),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_unquoted_cron_hint),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_anchor_alias_message),
        cmocka_unit_test(test_depth_cap),
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_templates_verbatim),
        cmocka_unit_test(test_upstream_forms_and_sensor),
        cmocka_unit_test(test_empty_and_comment_only),
        cmocka_unit_test(test_parse_file_errors),
        cmocka_unit_test(test_yaml_json_hash_stable),
        cmocka_unit_test(test_truncation_every_offset),
        cmocka_unit_test(test_time_cap),
    };
    return cmocka_run_group_tests_name("dagyaml", tests, NULL, NULL);
}
