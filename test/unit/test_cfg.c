/* Unit tests: cfg (YAML + env -> typed structs, positioned errors, secrets). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/cfg.h"

struct bundle {
    char *name;
    char *path;
    char *ref;
};

struct tcfg {
    char *name;
    struct {
        char *url;
        struct cfg_secret token;
    } plane;
    struct {
        int64_t slots;
        uint64_t poll;
        uint64_t max_log;
        struct cfg_strlist queues;
    } worker;
    struct {
        int format;
        bool debug;
    } log;
    char *data_dir;
    struct cfg_list bundles;
};

static int absolute_path(const void *field, char *why, size_t whysz)
{
    const char *p = *(char *const *)field;
    if (p[0] == '/')
        return 0;
    snprintf(why, whysz, "must be an absolute path");
    return -1;
}

static const char *const formats[] = {"text", "json", NULL};

static const struct cfg_entry bundle_table[] = {
    {.key = "name",
     .type = CFG_STRING,
     .offset = offsetof(struct bundle, name),
     .flags = CFG_REQUIRED,
     .desc = "Bundle name."},
    {.key = "path",
     .type = CFG_PATH,
     .offset = offsetof(struct bundle, path),
     .flags = CFG_REQUIRED,
     .desc = "Bundle folder."},
    {.key = "git.ref",
     .type = CFG_STRING,
     .offset = offsetof(struct bundle, ref),
     .def = "main",
     .desc = "Git ref."},
    {0},
};

static const struct cfg_entry table[] = {
    {.key = "name",
     .type = CFG_STRING,
     .offset = offsetof(struct tcfg, name),
     .flags = CFG_REQUIRED,
     .desc = "Agent name."},
    {.key = "plane.url",
     .type = CFG_URL,
     .offset = offsetof(struct tcfg, plane.url),
     .flags = CFG_REQUIRED,
     .desc = "Plane base URL."},
    {.key = "plane.token",
     .type = CFG_SECRET,
     .offset = offsetof(struct tcfg, plane.token),
     .desc = "Agent token."},
    {.key = "worker.slots",
     .type = CFG_INT,
     .offset = offsetof(struct tcfg, worker.slots),
     .def = "4",
     .min = 1,
     .max = 1024,
     .desc = "Concurrent task slots."},
    {.key = "worker.poll_interval",
     .type = CFG_DURATION,
     .offset = offsetof(struct tcfg, worker.poll),
     .def = "30s",
     .min = 1000,
     .max = 3600000,
     .desc = "Poll interval."},
    {.key = "worker.max_log_size",
     .type = CFG_SIZE,
     .offset = offsetof(struct tcfg, worker.max_log),
     .def = "64MiB",
     .desc = "Log size cap."},
    {.key = "worker.queues",
     .type = CFG_STRLIST,
     .offset = offsetof(struct tcfg, worker.queues),
     .def = "default",
     .max_items = 4,
     .desc = "Queues."},
    {.key = "log.format",
     .type = CFG_ENUM,
     .offset = offsetof(struct tcfg, log.format),
     .def = "text",
     .enums = formats,
     .desc = "Log format."},
    {.key = "log.debug",
     .type = CFG_BOOL,
     .offset = offsetof(struct tcfg, log.debug),
     .def = "false",
     .desc = "Debug logging."},
    {.key = "data_dir",
     .type = CFG_PATH,
     .offset = offsetof(struct tcfg, data_dir),
     .def = "/var/lib/remex",
     .validate = absolute_path,
     .desc = "State folder."},
    {.key = "bundles",
     .type = CFG_LIST,
     .offset = offsetof(struct tcfg, bundles),
     .sub = bundle_table,
     .elem_size = sizeof(struct bundle),
     .max_items = 8,
     .desc = "DAG bundles."},
    {0},
};

static const char good_doc[] = "name: agent-1\n"
                               "plane:\n"
                               "  url: https://plane.example:8443/api\n"
                               "worker:\n"
                               "  slots: 8\n"
                               "  poll_interval: 1m30s\n"
                               "  max_log_size: 128MiB\n"
                               "  queues: [default, gpu]\n"
                               "log:\n"
                               "  format: json\n"
                               "  debug: yes\n"
                               "bundles:\n"
                               "  - name: etl\n"
                               "    path: /srv/etl\n"
                               "  - {name: ml, path: /srv/ml, git: {ref: dev}}\n";

/* Fake environment: NULL-terminated name, value pairs. */
static const char *fake_env(const char *name, void *ud)
{
    const char *const *kv = ud;
    for (; kv[0] != NULL; kv += 2) {
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    }
    return NULL;
}

static const char *const no_vars[] = {NULL, NULL};

static struct cfg_opts env_opts(const char *const *vars)
{
    struct cfg_opts o = {.lookup = fake_env, .lookup_ud = (void *)vars};
    return o;
}

static remex_err load(const char *doc, struct tcfg *c, struct cfg_errors *errs,
                      const char *const *vars)
{
    struct cfg_opts o = env_opts(vars ? vars : no_vars);
    memset(c, 0, sizeof(*c));
    return cfg_load_buf(table, c, "agent.yaml", doc, strlen(doc), &o, errs);
}

/* Loads doc, expects failure, and checks that some message equals want. */
static void expect_error(const char *doc, const char *want)
{
    struct tcfg c;
    struct cfg_errors errs;
    assert_int_equal(load(doc, &c, &errs, NULL), REMEX_ECONFIG);
    for (size_t i = 0; i < errs.n; i++) {
        if (strcmp(errs.msg[i], want) == 0)
            return;
    }
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "# got: %s\n", errs.msg[i]);
    fail_msg("expected error: %s", want);
}

static char tmpdir[64];

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_full_document(void **state)
{
    (void)state;
    struct tcfg c;
    struct cfg_errors errs;
    struct bundle *b;
    assert_int_equal(load(good_doc, &c, &errs, NULL), REMEX_OK);
    assert_int_equal(errs.n, 0);
    assert_string_equal(c.name, "agent-1");
    assert_string_equal(c.plane.url, "https://plane.example:8443/api");
    assert_int_equal(c.plane.token.kind, CFG_SECRET_NONE);
    assert_int_equal(c.worker.slots, 8);
    assert_int_equal(c.worker.poll, 90000);
    assert_int_equal(c.worker.max_log, 128ULL << 20);
    assert_int_equal(c.worker.queues.n, 2);
    assert_string_equal(c.worker.queues.items[1], "gpu");
    assert_int_equal(c.log.format, 1);
    assert_true(c.log.debug);
    assert_string_equal(c.data_dir, "/var/lib/remex");
    assert_int_equal(c.bundles.n, 2);
    b = c.bundles.items;
    assert_string_equal(b[0].name, "etl");
    assert_string_equal(b[0].ref, "main");
    assert_string_equal(b[1].path, "/srv/ml");
    assert_string_equal(b[1].ref, "dev");
    cfg_free(table, &c);
    assert_null(c.name);
    assert_null(c.bundles.items);
    cfg_free(table, &c); /* idempotent */
}

/* A reserved section: a mapping is accepted, not read, and named in a warning; a scalar is an
 * error; an empty mapping says nothing; the environment cannot set it. */
struct rcfg {
    char *name;
};
static const struct cfg_entry reserved_table[] = {
    {.key = "name", .type = CFG_STRING, .offset = offsetof(struct rcfg, name), .def = "x"},
    {.key = "later", .type = CFG_RESERVED, .desc = "reserved for remex-later"},
    {0},
};

static void test_reserved_section(void **state)
{
    (void)state;
    struct rcfg c = {0};
    struct cfg_errors errs;
    const char *doc = "name: a\nlater:\n  anything: [1, 2]\n  deep: {x: y}\n";
    assert_int_equal(cfg_load_buf(reserved_table, &c, "r.yaml", doc, strlen(doc), NULL, &errs),
                     REMEX_OK);
    assert_string_equal(c.name, "a");
    assert_int_equal(errs.nwarn, 1);
    assert_string_equal(errs.warn[0], "r.yaml:3:3: later: reserved for remex-later; its keys are "
                                      "not read");
    struct buf out = BUF_INIT(4096);
    assert_int_equal(cfg_check_report(REMEX_OK, &errs, &out), 0);
    assert_non_null(strstr(buf_cstr(&out), "warning: r.yaml:3:3: later:"));
    assert_non_null(strstr(buf_cstr(&out), "configuration OK"));
    buf_free(&out);
    cfg_free(reserved_table, &c);
    doc = "later: {}\n";
    assert_int_equal(cfg_load_buf(reserved_table, &c, "r.yaml", doc, strlen(doc), NULL, &errs),
                     REMEX_OK);
    assert_int_equal(errs.nwarn, 0);
    cfg_free(reserved_table, &c);
    doc = "later: 12\n";
    assert_int_equal(cfg_load_buf(reserved_table, &c, "r.yaml", doc, strlen(doc), NULL, &errs),
                     REMEX_ECONFIG);
    assert_string_equal(errs.msg[0], "r.yaml:1:8: later: expected a mapping");
}

static void test_defaults(void **state)
{
    (void)state;
    struct tcfg c;
    assert_int_equal(load("name: a\nplane: {url: 'http://127.0.0.1:8080'}\n", &c, NULL, NULL),
                     REMEX_OK);
    assert_int_equal(c.worker.slots, 4);
    assert_int_equal(c.worker.poll, 30000);
    assert_int_equal(c.worker.max_log, 64ULL << 20);
    assert_int_equal(c.worker.queues.n, 1);
    assert_string_equal(c.worker.queues.items[0], "default");
    assert_int_equal(c.log.format, 0);
    assert_false(c.log.debug);
    assert_int_equal(c.bundles.n, 0);
    cfg_free(table, &c);
}

static void test_null_keeps_default(void **state)
{
    (void)state;
    struct tcfg c;
    assert_int_equal(
        load("name: a\nplane: {url: 'http://h'}\nworker:\n  slots:\nlog: ~\n", &c, NULL, NULL),
        REMEX_OK);
    assert_int_equal(c.worker.slots, 4);
    cfg_free(table, &c);
}

static void test_unknown_key_suggestion(void **state)
{
    (void)state;
    expect_error("name: a\nplane:\n  url: http://h\nworker:\n  slotz: 3\n",
                 "agent.yaml:5:3: unknown key 'slotz' (did you mean 'slots'?)");
    expect_error("name: a\nplane: {url: 'http://h'}\nwrker: {}\n",
                 "agent.yaml:3:1: unknown key 'wrker' (did you mean 'worker'?)");
    expect_error("name: a\nplane: {url: 'http://h'}\ncompletely_else: 1\n",
                 "agent.yaml:3:1: unknown key 'completely_else'");
    expect_error("name: a\nplane: {url: 'http://h'}\nworker.slots: 1\n",
                 "agent.yaml:3:1: invalid key");
}

static void test_int_errors(void **state)
{
    (void)state;
    expect_error("name: a\nplane: {url: 'http://h'}\nworker:\n  slots: many\n",
                 "agent.yaml:4:10: worker.slots: expected integer");
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {slots: 0}\n",
                 "agent.yaml:3:17: worker.slots: must be between 1 and 1024");
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {slots: 99999999999999999999999}\n",
                 "agent.yaml:3:17: worker.slots: must be between 1 and 1024");
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {slots: [1]}\n",
                 "agent.yaml:3:17: worker.slots: expected integer");
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {slots: 1.5}\n",
                 "agent.yaml:3:17: worker.slots: expected integer");
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {slots: ' 5'}\n",
                 "agent.yaml:3:17: worker.slots: expected integer");
}

static void test_bool_forms(void **state)
{
    (void)state;
    static const char *const t[] = {"true", "yes", "on", "True", "YES", "On"};
    static const char *const f[] = {"false", "no", "off", "False", "NO", "Off"};
    char doc[128];
    struct tcfg c;
    for (size_t i = 0; i < 6; i++) {
        snprintf(doc, sizeof(doc), "name: a\nplane: {url: 'http://h'}\nlog: {debug: %s}\n", t[i]);
        assert_int_equal(load(doc, &c, NULL, NULL), REMEX_OK);
        assert_true(c.log.debug);
        cfg_free(table, &c);
        snprintf(doc, sizeof(doc), "name: a\nplane: {url: 'http://h'}\nlog: {debug: %s}\n", f[i]);
        assert_int_equal(load(doc, &c, NULL, NULL), REMEX_OK);
        assert_false(c.log.debug);
        cfg_free(table, &c);
    }
    expect_error("name: a\nplane: {url: 'http://h'}\nlog: {debug: 1}\n",
                 "agent.yaml:3:14: log.debug: expected boolean (true/false, yes/no, on/off)");
}

static void test_duration_and_size(void **state)
{
    (void)state;
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {poll_interval: 30}\n",
                 "agent.yaml:3:25: worker.poll_interval: expected a duration like 30s, 5m, "
                 "1h30m, 250ms or 2d (a number needs a unit)");
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {poll_interval: 500ms}\n",
                 "agent.yaml:3:25: worker.poll_interval: must be between 1s and 1h");
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {max_log_size: 64mb}\n",
                 "agent.yaml:3:24: worker.max_log_size: expected a size like 123, 512KiB, 64MiB, "
                 "1GiB or 100MB (units: B, kB, MB, GB, TB, PB, EB, KiB ... EiB)");
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {max_log_size: 99999EiB}\n",
                 "agent.yaml:3:24: worker.max_log_size: size too large");
}

static void test_enum_and_strlist(void **state)
{
    (void)state;
    expect_error("name: a\nplane: {url: 'http://h'}\nlog:\n  format: xml\n",
                 "agent.yaml:4:11: log.format: must be one of: text, json");
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {queues: gpu}\n",
                 "agent.yaml:3:18: worker.queues: expected a list of strings");
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {queues: [a, {b: c}]}\n",
                 "agent.yaml:3:22: worker.queues[1]: expected a string");
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {queues: [a, b, c, d, e]}\n",
                 "agent.yaml:3:18: worker.queues: more than 4 items");
}

static void test_url_and_path(void **state)
{
    (void)state;
    expect_error("name: a\nplane: {url: 'ftp://h'}\n",
                 "agent.yaml:2:14: plane.url: URL scheme must be http or https");
    expect_error("name: a\nplane: {url: 'https:///x'}\n",
                 "agent.yaml:2:14: plane.url: URL has no host");
    expect_error("name: a\nplane: {url: 'https://u:p@h/'}\n",
                 "agent.yaml:2:14: plane.url: URL must not contain credentials (use a secret)");
    expect_error("name: a\nplane: {url: 'https://h:99999/'}\n",
                 "agent.yaml:2:14: plane.url: URL port must be 1-65535");
    expect_error("name: a\nplane: {url: 'https://h x/'}\n",
                 "agent.yaml:2:14: plane.url: URL must not contain spaces or control characters");
    expect_error("name: a\nplane: {url: 'http://h'}\ndata_dir: relative/dir\n",
                 "agent.yaml:3:11: data_dir: must be an absolute path");
    expect_error("name: a\nplane: {url: 'http://h'}\ndata_dir: ''\n",
                 "agent.yaml:3:11: data_dir: expected a file path");
    struct tcfg c;
    assert_int_equal(load("name: a\nplane: {url: 'HTTPS://[::1]:8443/x?y#z'}\n", &c, NULL, NULL),
                     REMEX_OK);
    cfg_free(table, &c);
}

static void test_sections_and_structure(void **state)
{
    (void)state;
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: 5\n",
                 "agent.yaml:3:9: worker: expected a mapping");
    expect_error("name: a\nplane: {url: 'http://h'}\nname: b\n",
                 "agent.yaml:3:1: duplicate key 'name' (first at line 1)");
    expect_error("name: a\nplane: {url: 'http://h', url: 'http://i'}\n",
                 "agent.yaml:2:26: duplicate key 'plane.url' (first at line 2)");
    expect_error("- a\n- b\n", "agent.yaml:1:1: top level must be a mapping");
    expect_error("just text\n", "agent.yaml:1:1: top level must be a mapping");
    expect_error("name: a\nplane: {url: 'http://h'}\n? [x]\n: 1\n",
                 "agent.yaml:3:3: mapping keys must be strings");
    expect_error("name: a\n---\nname: b\n", "agent.yaml:2:1: only one YAML document is allowed");
    expect_error("name: &x a\nplane: {url: 'http://h'}\n",
                 "agent.yaml:1:7: YAML anchors are not supported");
    expect_error("name: \"a\\0b\"\nplane: {url: 'http://h'}\n",
                 "agent.yaml:1:7: name: value contains a NUL byte");
}

static void test_missing_required(void **state)
{
    (void)state;
    struct tcfg c;
    struct cfg_errors errs;
    assert_int_equal(load("worker: {slots: 2}\n", &c, &errs, NULL), REMEX_ECONFIG);
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.msg[0], "agent.yaml:1:1: missing required key 'name' (or set "
                                     "REMEX_NAME)");
    assert_string_equal(errs.msg[1], "agent.yaml:1:1: missing required key 'plane.url' (or set "
                                     "REMEX_PLANE_URL)");
    /* obj was released on failure */
    assert_null(c.worker.queues.items);
    /* empty file: all defaults, required keys missing */
    assert_int_equal(load("", &c, &errs, NULL), REMEX_ECONFIG);
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.msg[0], "agent.yaml: missing required key 'name' (or set "
                                     "REMEX_NAME)");
}

static void test_list_of_records(void **state)
{
    (void)state;
    static const char doc[] = "name: a\n"
                              "plane: {url: 'http://h'}\n"
                              "bundles:\n"
                              "  - name: x\n"
                              "    path: /x\n"
                              "  - path: /y\n"
                              "    pth: 1\n"
                              "  - just-a-string\n"
                              "  - name: z\n"
                              "    path: /z\n"
                              "    git: {ref: [1]}\n";
    struct tcfg c;
    struct cfg_errors errs;
    assert_int_equal(load(doc, &c, &errs, NULL), REMEX_ECONFIG);
    assert_int_equal(errs.n, 4);
    assert_string_equal(errs.msg[0], "agent.yaml:7:5: unknown key 'pth' (did you mean 'path'?)");
    assert_string_equal(errs.msg[1], "agent.yaml:6:5: missing required key 'bundles[1].name'");
    assert_string_equal(errs.msg[2], "agent.yaml:8:5: bundles[2]: expected a mapping");
    assert_string_equal(errs.msg[3], "agent.yaml:11:16: bundles[3].git.ref: expected string");
    expect_error("name: a\nplane: {url: 'http://h'}\nbundles: {name: x}\n",
                 "agent.yaml:3:10: bundles: expected a list");
    expect_error("name: a\nplane: {url: 'http://h'}\nbundles: [{name: a, path: /a}, {name: b, "
                 "path: /b}, {name: c, path: /c}, {name: d, path: /d}, {name: e, path: /e}, "
                 "{name: f, path: /f}, {name: g, path: /g}, {name: h, path: /h}, {name: i, "
                 "path: /i}]\n",
                 "agent.yaml:3:10: bundles: more than 8 items");
}

static void test_collects_all_errors_capped(void **state)
{
    (void)state;
    char doc[4096];
    size_t off = 0;
    struct tcfg c;
    struct cfg_errors errs;
    off += (size_t)snprintf(doc + off, sizeof(doc) - off, "name: a\nplane: {url: 'http://h'}\n");
    for (int i = 0; i < 30; i++)
        off += (size_t)snprintf(doc + off, sizeof(doc) - off, "bad%d: 1\n", i);
    assert_int_equal(load(doc, &c, &errs, NULL), REMEX_ECONFIG);
    assert_int_equal(errs.n, CFG_MAX_ERRORS);
    assert_int_equal(errs.dropped, 10);
    assert_string_equal(errs.msg[0], "agent.yaml:3:1: unknown key 'bad0'");
    assert_string_equal(errs.msg[19], "agent.yaml:22:1: unknown key 'bad19'");
    struct buf out = BUF_INIT(1 << 16);
    assert_int_equal(cfg_check_report(REMEX_ECONFIG, &errs, &out), REMEX_EXIT_CONFIG);
    assert_non_null(strstr(buf_cstr(&out), "(10 more errors not shown)\n"));
    buf_free(&out);
}

static void test_yaml_syntax_error(void **state)
{
    (void)state;
    expect_error("name: a\nplane: {url: 'http://h'\n",
                 "agent.yaml:3:1: YAML syntax error: did not find expected ',' or '}' (while "
                 "parsing a flow mapping)");
    expect_error("name: a\n  bad: indent\n",
                 "agent.yaml:2:6: YAML syntax error: mapping values are not allowed in this "
                 "context");
    expect_error("name: \"unterminated\n",
                 "agent.yaml:2:1: YAML syntax error: found unexpected end of stream (while "
                 "scanning a quoted scalar)");
}

static void test_truncated_everywhere(void **state)
{
    (void)state;
    size_t len = strlen(good_doc);
    for (size_t cut = 0; cut <= len; cut++) {
        struct tcfg c;
        struct cfg_errors errs;
        char *doc = malloc(cut + 1);
        assert_non_null(doc);
        memcpy(doc, good_doc, cut);
        struct cfg_opts o = env_opts(no_vars);
        memset(&c, 0, sizeof(c));
        remex_err rc = cfg_load_buf(table, &c, "agent.yaml", doc, cut, &o, &errs);
        if (rc == REMEX_OK) {
            assert_int_equal(errs.n, 0);
            cfg_free(table, &c);
        } else {
            assert_int_equal(rc, REMEX_ECONFIG);
            assert_true(errs.n > 0);
            for (size_t i = 0; i < errs.n; i++)
                assert_int_equal(strncmp(errs.msg[i], "agent.yaml:", 11), 0);
            assert_null(c.name);
        }
        free(doc);
    }
}

static void test_depth_bomb(void **state)
{
    (void)state;
    char doc[2048];
    size_t n = 0;
    memcpy(doc, "name: ", 6);
    n = 6;
    for (int i = 0; i < 1000; i++)
        doc[n++] = '[';
    doc[n] = '\0';
    expect_error(doc, "agent.yaml:1:38: nesting deeper than 32 levels");
    /* deep but legal nesting of unknown keys is still reported, not crashed on */
    expect_error("a: {b: {c: {d: {e: 1}}}}\nname: x\nplane: {url: 'http://h'}\n",
                 "agent.yaml:1:1: unknown key 'a'");
}

static void test_alias_bomb(void **state)
{
    (void)state;
    static const char doc[] = "name: x\n"
                              "plane: {url: 'http://h'}\n"
                              "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
                              "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                              "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                              "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n";
    expect_error(doc, "agent.yaml:3:4: YAML anchors are not supported");
    expect_error("name: x\nplane: {url: 'http://h'}\nworker: {queues: [*q]}\n",
                 "agent.yaml:3:19: YAML aliases are not supported");
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    expect_error("name: a\nplane: {url: 'http://h'}\nworker: {queues: [ok, \"\xc3\x28\"]}\n",
                 "agent.yaml:3:25: YAML syntax error: invalid trailing UTF-8 octet");
    expect_error("name: \xff\n", "agent.yaml:1:7: YAML syntax error: invalid leading UTF-8 octet");
    struct tcfg c;
    assert_int_equal(
        load("name: \"\xc3\xa9t\xc3\xa9\"\nplane: {url: 'http://h'}\n", &c, NULL, NULL), REMEX_OK);
    assert_string_equal(c.name, "\xc3\xa9t\xc3\xa9");
    cfg_free(table, &c);
}

static void test_file_caps_and_errors(void **state)
{
    (void)state;
    struct tcfg c;
    struct cfg_errors errs;
    struct cfg_opts o = {.max_file = 16, .no_env = 1};
    char path[128];

    memset(&c, 0, sizeof(c));
    assert_int_equal(cfg_load_buf(table, &c, "agent.yaml", good_doc, strlen(good_doc), &o, &errs),
                     REMEX_ECONFIG);
    assert_string_equal(errs.msg[0], "agent.yaml: file is larger than 16 bytes");

    snprintf(path, sizeof(path), "%s/big.yaml", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 100000; i++)
        fputs("# padding.\n", f);
    fclose(f);
    assert_int_equal(cfg_load_file(table, &c, path, NULL, &errs), REMEX_ECONFIG);
    assert_non_null(strstr(errs.msg[0], "file is larger than 1048576 bytes"));

    snprintf(path, sizeof(path), "%s/nope.yaml", tmpdir);
    assert_int_equal(cfg_load_file(table, &c, path, NULL, &errs), REMEX_EIO);
    assert_non_null(strstr(errs.msg[0], "No such file or directory"));
    assert_int_equal(cfg_load_file(table, &c, tmpdir, NULL, &errs), REMEX_EIO);
    assert_non_null(strstr(errs.msg[0], "not a regular file"));

    snprintf(path, sizeof(path), "%s/agent.yaml", tmpdir);
    write_file(path, good_doc, 0644);
    assert_int_equal(cfg_load_file(table, &c, path, &o, &errs), REMEX_ECONFIG);
    o.max_file = 0;
    assert_int_equal(cfg_load_file(table, &c, path, &o, &errs), REMEX_OK);
    assert_int_equal(c.worker.slots, 8);
    cfg_free(table, &c);
}

static void test_env_overrides(void **state)
{
    (void)state;
    static const char *const vars[] = {
        "REMEX_WORKER_SLOTS",
        "16",
        "REMEX_WORKER_QUEUES",
        " a , b,c",
        "REMEX_LOG_FORMAT",
        "json",
        "REMEX_LOG_DEBUG",
        "off",
        "REMEX_WORKER_POLL_INTERVAL",
        "5m",
        "REMEX_NAME",
        "from-env",
        "REMEX_DATA_DIR",
        "",
        NULL,
        NULL,
    };
    struct tcfg c;
    struct cfg_errors errs;
    assert_int_equal(load(good_doc, &c, &errs, vars), REMEX_OK);
    assert_int_equal(c.worker.slots, 16);
    assert_int_equal(c.worker.queues.n, 3);
    assert_string_equal(c.worker.queues.items[0], "a");
    assert_string_equal(c.worker.queues.items[2], "c");
    assert_int_equal(c.log.format, 1);
    assert_false(c.log.debug);
    assert_int_equal(c.worker.poll, 300000);
    assert_string_equal(c.name, "from-env");
    assert_string_equal(c.data_dir, "/var/lib/remex"); /* empty variable is ignored */
    cfg_free(table, &c);

    /* no file at all: defaults + environment satisfy the required keys */
    static const char *const req[] = {"REMEX_NAME",       "n",  "REMEX_PLANE_URL",
                                      "http://127.0.0.1", NULL, NULL};
    struct cfg_opts o = env_opts(req);
    memset(&c, 0, sizeof(c));
    assert_int_equal(cfg_load_file(table, &c, NULL, &o, &errs), REMEX_OK);
    assert_string_equal(c.plane.url, "http://127.0.0.1");
    cfg_free(table, &c);
    o.no_env = 1;
    assert_int_equal(cfg_load_file(table, &c, NULL, &o, &errs), REMEX_ECONFIG);
    assert_string_equal(errs.msg[0], "missing required key 'name' (or set REMEX_NAME)");

    char name[64];
    assert_int_equal(cfg_env_name("REMEX_", "worker.poll-interval", name, sizeof(name)), REMEX_OK);
    assert_string_equal(name, "REMEX_WORKER_POLL_INTERVAL");
    assert_int_equal(cfg_env_name("REMEX_", "worker.slots", name, 10), REMEX_ETOOBIG);
}

/* Cross-key check: slots may not exceed the number of queues times 4. */
static int slots_vs_queues(const void *obj, const char **key, char *why, size_t whysz)
{
    const struct tcfg *c = obj;
    if (c->worker.slots <= (int64_t)(4 * c->worker.queues.n))
        return 0;
    *key = "worker.slots";
    snprintf(why, whysz, "worker.slots must be at most 4 x the number of worker.queues");
    return -1;
}

static void test_cross_check(void **state)
{
    (void)state;
    static const char *const vars[] = {"REMEX_WORKER_SLOTS", "9", NULL, NULL};
    struct tcfg c;
    struct cfg_errors errs;
    struct cfg_opts o = env_opts(no_vars);
    o.cross = slots_vs_queues;
    memset(&c, 0, sizeof(c));
    /* good_doc: slots 8 and two queues */
    assert_int_equal(cfg_load_buf(table, &c, "agent.yaml", good_doc, strlen(good_doc), &o, &errs),
                     REMEX_OK);
    cfg_free(table, &c);
    o = env_opts(vars);
    o.cross = slots_vs_queues;
    assert_int_equal(cfg_load_buf(table, &c, "agent.yaml", good_doc, strlen(good_doc), &o, &errs),
                     REMEX_ECONFIG);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msg[0], "REMEX_WORKER_SLOTS: worker.slots must be at most 4 x the "
                                     "number of worker.queues");
    const char *doc = "name: a\nplane: {url: 'http://h'}\nworker:\n  slots: 5\n";
    o = env_opts(no_vars);
    o.cross = slots_vs_queues;
    assert_int_equal(cfg_load_buf(table, &c, "agent.yaml", doc, strlen(doc), &o, &errs),
                     REMEX_ECONFIG);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msg[0],
                        "agent.yaml:4:10: worker.slots: worker.slots must be at most 4 "
                        "x the number of worker.queues");
    /* not run while single keys are invalid */
    doc = "name: a\nplane: {url: 'http://h'}\nworker:\n  slots: x\n";
    assert_int_equal(cfg_load_buf(table, &c, "agent.yaml", doc, strlen(doc), &o, &errs),
                     REMEX_ECONFIG);
    assert_int_equal(errs.n, 1);
}

static void test_env_overrides_bad(void **state)
{
    (void)state;
    static const char *const vars[] = {
        "REMEX_WORKER_SLOTS",
        "sixteen",
        "REMEX_LOG_FORMAT",
        "xml",
        "REMEX_WORKER_QUEUES",
        "a,,b",
        "REMEX_PLANE_URL",
        "ftp://x",
        "REMEX_DATA_DIR",
        "rel",
        NULL,
        NULL,
    };
    struct tcfg c;
    struct cfg_errors errs;
    assert_int_equal(load(good_doc, &c, &errs, vars), REMEX_ECONFIG);
    assert_int_equal(errs.n, 5);
    assert_string_equal(errs.msg[0], "REMEX_PLANE_URL: URL scheme must be http or https");
    assert_string_equal(errs.msg[1], "REMEX_WORKER_SLOTS: expected integer");
    assert_string_equal(errs.msg[2], "REMEX_WORKER_QUEUES: empty item in comma-separated list");
    assert_string_equal(errs.msg[3], "REMEX_LOG_FORMAT: must be one of: text, json");
    assert_string_equal(errs.msg[4], "REMEX_DATA_DIR: must be an absolute path");
}

static const char secret_value[] = "s3cr3t-t0ken-VALUE";

static void assert_no_secret(const struct cfg_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        assert_null(strstr(errs->msg[i], "s3cr3t"));
}

static void test_secret_literal_and_dump(void **state)
{
    (void)state;
    char doc[256];
    struct tcfg c;
    struct buf out = BUF_INIT(1 << 16);
    char *v;
    size_t n;
    snprintf(doc, sizeof(doc), "name: a\nplane: {url: 'http://h', token: '%s'}\n", secret_value);
    assert_int_equal(load(doc, &c, NULL, NULL), REMEX_OK);
    assert_int_equal(c.plane.token.kind, CFG_SECRET_VALUE);
    assert_int_equal(cfg_secret_get(&c.plane.token, &v, &n, NULL), REMEX_OK);
    assert_string_equal(v, secret_value);
    assert_int_equal(n, strlen(secret_value));
    cfg_secret_free(v);
    assert_int_equal(cfg_dump(table, &c, &out), REMEX_OK);
    assert_non_null(strstr(buf_cstr(&out), "plane.token: <secret>\n"));
    assert_non_null(strstr(buf_cstr(&out), "worker.slots: 4\n"));
    assert_non_null(strstr(buf_cstr(&out), "worker.poll_interval: 30s\n"));
    assert_non_null(strstr(buf_cstr(&out), "worker.max_log_size: 64MiB\n"));
    assert_non_null(strstr(buf_cstr(&out), "worker.queues: [\"default\"]\n"));
    assert_non_null(strstr(buf_cstr(&out), "bundles: []\n"));
    assert_null(strstr(buf_cstr(&out), "s3cr3t"));
    cfg_free(table, &c);
    buf_free(&out);

    struct cfg_secret none = {0};
    struct remex_error e;
    assert_int_equal(cfg_secret_get(&none, &v, NULL, &e), REMEX_ENOTFOUND);
    assert_null(v);
}

static void test_secret_file_permissions(void **state)
{
    (void)state;
    char path[128], doc[512], want[512];
    struct tcfg c;
    struct cfg_errors errs;
    snprintf(path, sizeof(path), "%s/token-open", tmpdir);
    write_file(path, secret_value, 0644);
    snprintf(doc, sizeof(doc), "name: a\nplane:\n  url: http://h\n  token: {file: %s}\n", path);
    snprintf(want, sizeof(want),
             "agent.yaml:4:17: plane.token: %s: permissions 0644 are too open; chmod 600 %s", path,
             path);
    expect_error(doc, want);
    assert_int_equal(load(doc, &c, &errs, NULL), REMEX_ECONFIG);
    assert_no_secret(&errs);

    /* a directory is not a secret file */
    snprintf(doc, sizeof(doc), "name: a\nplane: {url: 'http://h', token: {file: %s}}\n", tmpdir);
    assert_int_equal(load(doc, &c, &errs, NULL), REMEX_ECONFIG);
    assert_non_null(strstr(errs.msg[0], "permissions") ? errs.msg[0]
                                                       : strstr(errs.msg[0], "not a"));

    /* and the check is made again at use time */
    struct cfg_secret s = {.kind = CFG_SECRET_FILE, .source = path};
    struct remex_error e;
    char *v = (char *)"x";
    assert_int_equal(cfg_secret_get(&s, &v, NULL, &e), REMEX_EPERM);
    assert_null(v);
    assert_null(strstr(e.msg, "s3cr3t"));
}

static void test_secret_read_file(void **state)
{
    (void)state;
    char path[128];
    struct remex_error e;
    struct stat st;
    char *v = (char *)"x";
    size_t n = 0;

    snprintf(path, sizeof(path), "%s/read-file", tmpdir);
    write_file(path, "abcd\r\n", 0600);
    assert_int_equal(cfg_secret_read_file(path, 6, &v, &n, &st, &e), REMEX_OK);
    assert_string_equal(v, "abcd");
    assert_int_equal(n, 4);
    assert_true(S_ISREG(st.st_mode));
    cfg_secret_free(v);

    /* The cap counts the raw bytes, newline included. */
    assert_int_equal(cfg_secret_read_file(path, 5, &v, &n, NULL, &e), REMEX_ETOOBIG);
    assert_null(v);
    assert_non_null(strstr(e.msg, "larger than 5 bytes"));

    /* The mode reaches the caller so that it can word its own message. */
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(cfg_secret_read_file(path, 64, &v, &n, &st, &e), REMEX_EPERM);
    assert_null(v);
    assert_int_equal(st.st_mode & 07777, 0640);

    /* Only one trailing newline goes; a NUL byte or nothing left is refused. */
    write_file(path, "\n", 0600);
    assert_int_equal(cfg_secret_read_file(path, 64, &v, &n, NULL, &e), REMEX_EINVAL);
    write_file(path, "a\n\n", 0600);
    assert_int_equal(cfg_secret_read_file(path, 64, &v, &n, NULL, &e), REMEX_OK);
    assert_int_equal(n, 2);
    cfg_secret_free(v);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fwrite("a\0b", 1, 3, f);
    fclose(f);
    assert_int_equal(cfg_secret_read_file(path, 64, &v, &n, NULL, &e), REMEX_EINVAL);
    assert_null(v);

    /* Missing file: errno text, st zeroed. */
    snprintf(path, sizeof(path), "%s/no-such-file", tmpdir);
    assert_int_equal(cfg_secret_read_file(path, 64, &v, &n, &st, &e), REMEX_EIO);
    assert_int_equal(st.st_mode, 0);
    assert_non_null(strstr(e.msg, "No such file"));

    /* A directory is not a secret file. */
    assert_int_equal(cfg_secret_read_file(tmpdir, 64, &v, &n, &st, &e), REMEX_EPERM);
    assert_non_null(strstr(e.msg, "not a regular file"));
}

static void test_secret_file_rotation(void **state)
{
    (void)state;
    char path[128], doc[512];
    struct tcfg c;
    char *v;
    size_t n;
    snprintf(path, sizeof(path), "%s/token", tmpdir);
    write_file(path, "first-value\n", 0600);
    snprintf(doc, sizeof(doc), "name: a\nplane: {url: 'http://h', token: {file: '%s'}}\n", path);
    assert_int_equal(load(doc, &c, NULL, NULL), REMEX_OK);
    assert_int_equal(c.plane.token.kind, CFG_SECRET_FILE);
    assert_null(c.plane.token.value);
    assert_int_equal(cfg_secret_get(&c.plane.token, &v, &n, NULL), REMEX_OK);
    assert_string_equal(v, "first-value");
    assert_int_equal(n, 11);
    cfg_secret_free(v);
    write_file(path, "second-value\r\n", 0400);
    assert_int_equal(cfg_secret_get(&c.plane.token, &v, NULL, NULL), REMEX_OK);
    assert_string_equal(v, "second-value");
    cfg_secret_free(v);
    /* rotated to a bad state: refused at use time */
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(cfg_secret_get(&c.plane.token, &v, NULL, NULL), REMEX_EPERM);
    assert_int_equal(chmod(path, 0600), 0);
    write_file(path, "\n", 0600);
    assert_int_equal(cfg_secret_get(&c.plane.token, &v, NULL, NULL), REMEX_EINVAL);

    struct buf out = BUF_INIT(1 << 16);
    assert_int_equal(cfg_dump(table, &c, &out), REMEX_OK);
    assert_non_null(strstr(buf_cstr(&out), "plane.token: <secret> (file "));
    buf_free(&out);
    cfg_free(table, &c);
}

static void test_secret_env(void **state)
{
    (void)state;
    static const char *const vars[] = {"AGENT_TOKEN", secret_value, NULL, NULL};
    struct tcfg c;
    struct cfg_errors errs;
    char *v;
    assert_int_equal(
        load("name: a\nplane: {url: 'http://h', token: {env: AGENT_TOKEN}}\n", &c, &errs, vars),
        REMEX_OK);
    assert_int_equal(c.plane.token.kind, CFG_SECRET_ENV);
    assert_int_equal(cfg_secret_get(&c.plane.token, &v, NULL, NULL), REMEX_OK);
    assert_string_equal(v, secret_value);
    cfg_secret_free(v);
    struct buf out = BUF_INIT(1 << 16);
    assert_int_equal(cfg_dump(table, &c, &out), REMEX_OK);
    assert_non_null(strstr(buf_cstr(&out), "plane.token: <secret> (env AGENT_TOKEN)\n"));
    assert_null(strstr(buf_cstr(&out), "s3cr3t"));
    buf_free(&out);
    cfg_free(table, &c);

    expect_error("name: a\nplane: {url: 'http://h', token: {env: MISSING_TOKEN}}\n",
                 "agent.yaml:2:39: plane.token: environment variable MISSING_TOKEN is not set");
    expect_error("name: a\nplane: {url: 'http://h', token: {env: 'bad name'}}\n",
                 "agent.yaml:2:39: plane.token: env: expected a variable name");
    expect_error("name: a\nplane: {url: 'http://h', token: {vault: x}}\n",
                 "agent.yaml:2:33: plane.token: expected a string, {file: PATH} or {env: NAME}");
    expect_error("name: a\nplane: {url: 'http://h', token: {file: a, env: b}}\n",
                 "agent.yaml:2:33: plane.token: expected a string, {file: PATH} or {env: NAME}");
    expect_error("name: a\nplane: {url: 'http://h', token: [x]}\n",
                 "agent.yaml:2:33: plane.token: expected a string, {file: PATH} or {env: NAME}");
}

static void test_secret_env_override(void **state)
{
    (void)state;
    char path[128];
    struct tcfg c;
    struct cfg_errors errs;
    char *v;
    snprintf(path, sizeof(path), "%s/token-env", tmpdir);
    write_file(path, "from-file\n", 0600);
    const char *const vars[] = {"REMEX_PLANE_TOKEN_FILE", path, NULL, NULL};
    assert_int_equal(load(good_doc, &c, &errs, vars), REMEX_OK);
    assert_int_equal(c.plane.token.kind, CFG_SECRET_FILE);
    assert_int_equal(cfg_secret_get(&c.plane.token, &v, NULL, NULL), REMEX_OK);
    assert_string_equal(v, "from-file");
    cfg_secret_free(v);
    cfg_free(table, &c);

    const char *const lit[] = {"REMEX_PLANE_TOKEN", secret_value, NULL, NULL};
    assert_int_equal(load(good_doc, &c, &errs, lit), REMEX_OK);
    assert_int_equal(c.plane.token.kind, CFG_SECRET_VALUE);
    cfg_free(table, &c);

    /* a secret in the environment never shows up in other errors */
    const char *const both[] = {"REMEX_PLANE_TOKEN",
                                secret_value,
                                "REMEX_PLANE_TOKEN_FILE",
                                path,
                                "REMEX_WORKER_SLOTS",
                                secret_value,
                                NULL,
                                NULL};
    assert_int_equal(load(good_doc, &c, &errs, both), REMEX_ECONFIG);
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.msg[0],
                        "REMEX_PLANE_TOKEN and REMEX_PLANE_TOKEN_FILE are both set; use one");
    assert_string_equal(errs.msg[1], "REMEX_WORKER_SLOTS: expected integer");
    assert_no_secret(&errs);
}

static void test_secret_never_in_messages(void **state)
{
    (void)state;
    /* every kind of error around a secret-shaped value: nothing echoes it */
    static const char *const docs[] = {
        "name: a\nplane: {url: 'http://h', token: {env: s3cr3t-x}}\n",
        "name: a\nplane: {url: 's3cr3t://h'}\n",
        "name: a\nplane: {url: 'http://h', token: 's3cr3t\n",
        "name: a\nplane: {url: 'http://h', token: s3cr3t}\nworker: {slots: s3cr3t}\n",
        "name: a\nplane: {url: 'http://h', token: s3cr3t}\nlog: {format: s3cr3t}\n",
        "name: a\nplane: {url: 'http://h', token: s3cr3t}\nworker: {max_log_size: s3cr3t}\n",
        "name: a\nplane: {url: 'http://h', token: s3cr3t}\nworker: {poll_interval: s3cr3t}\n",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        struct tcfg c;
        struct cfg_errors errs;
        assert_int_equal(load(docs[i], &c, &errs, NULL), REMEX_ECONFIG);
        assert_true(errs.n > 0);
        assert_no_secret(&errs);
    }
}

static void test_check_and_usage(void **state)
{
    (void)state;
    char path[128];
    struct buf out = BUF_INIT(1 << 16);
    static const char *const req[] = {NULL, NULL};
    struct cfg_opts o = env_opts(req);

    snprintf(path, sizeof(path), "%s/check.yaml", tmpdir);
    write_file(path, good_doc, 0644);
    assert_int_equal(cfg_check(table, sizeof(struct tcfg), path, &o, &out), 0);
    assert_string_equal(buf_cstr(&out), "configuration OK\n");
    buf_reset(&out);
    write_file(path, "name: a\nplane: {url: 'http://h'}\nworker: {slotz: 1}\n", 0644);
    assert_int_equal(cfg_check(table, sizeof(struct tcfg), path, &o, &out), REMEX_EXIT_CONFIG);
    char want[512];
    snprintf(want, sizeof(want), "%s:3:10: unknown key 'slotz' (did you mean 'slots'?)\n", path);
    assert_string_equal(buf_cstr(&out), want);
    buf_reset(&out);
    assert_int_equal(cfg_check_report(REMEX_ENOMEM, NULL, &out), REMEX_EXIT_CONFIG);
    assert_string_equal(buf_cstr(&out), "configuration invalid: out of memory\n");
    buf_reset(&out);

    assert_int_equal(cfg_usage(table, NULL, &out), REMEX_OK);
    assert_non_null(strstr(buf_cstr(&out), "worker.slots (integer, 1..1024, default 4, env "
                                           "REMEX_WORKER_SLOTS)\n    Concurrent task slots.\n"));
    assert_non_null(strstr(buf_cstr(&out), "plane.token (secret, env REMEX_PLANE_TOKEN or "
                                           "REMEX_PLANE_TOKEN_FILE)\n"));
    assert_non_null(strstr(buf_cstr(&out), "log.format (enum: text|json, default text"));
    assert_non_null(strstr(buf_cstr(&out), "worker.poll_interval (duration, 1s..1h, default 30s"));
    assert_non_null(strstr(buf_cstr(&out), "bundles[].name (string, required)\n"));
    buf_free(&out);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/remex-test-cfg-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    static const char *const files[] = {"big.yaml",  "agent.yaml", "token-open", "token",
                                        "token-env", "check.yaml", "read-file"};
    char path[128];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_document),
        cmocka_unit_test(test_reserved_section),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_null_keeps_default),
        cmocka_unit_test(test_unknown_key_suggestion),
        cmocka_unit_test(test_int_errors),
        cmocka_unit_test(test_bool_forms),
        cmocka_unit_test(test_duration_and_size),
        cmocka_unit_test(test_enum_and_strlist),
        cmocka_unit_test(test_url_and_path),
        cmocka_unit_test(test_sections_and_structure),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_list_of_records),
        cmocka_unit_test(test_collects_all_errors_capped),
        cmocka_unit_test(test_yaml_syntax_error),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_depth_bomb),
        cmocka_unit_test(test_alias_bomb),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_file_caps_and_errors),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_cross_check),
        cmocka_unit_test(test_env_overrides_bad),
        cmocka_unit_test(test_secret_literal_and_dump),
        cmocka_unit_test(test_secret_file_permissions),
        cmocka_unit_test(test_secret_file_rotation),
        cmocka_unit_test(test_secret_read_file),
        cmocka_unit_test(test_secret_env),
        cmocka_unit_test(test_secret_env_override),
        cmocka_unit_test(test_secret_never_in_messages),
        cmocka_unit_test(test_check_and_usage),
    };
    return cmocka_run_group_tests_name("cfg", tests, setup, teardown);
}
