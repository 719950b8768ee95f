/* remexctl: dags trigger [--wait]. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "remex/json.h"
#include "remex/timeutil.h"

#define TXT 512

struct trigger_opts {
    const char *dag;
    json_t *conf; /* owned */
    const char *logical_date;
    const char *run_id;
    int wait;
    uint64_t timeout_ms; /* 0: none */
    uint64_t interval_ms;
};

/* Task instance counts of a run, for the progress line. */
struct ti_counts {
    size_t total, done, running, failed;
};

static int parse_trigger(struct ctl *c, int argc, char **argv, struct trigger_opts *o)
{
    enum { O_CONF = 256, O_DATE, O_RUN, O_WAIT, O_TIMEOUT, O_INTERVAL };
    static const struct option opts[] = {
        {"conf", required_argument, NULL, O_CONF},
        {"logical-date", required_argument, NULL, O_DATE},
        {"run-id", required_argument, NULL, O_RUN},
        {"wait", no_argument, NULL, O_WAIT},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"interval", required_argument, NULL, O_INTERVAL},
        {NULL, 0, NULL, 0},
    };
    struct remex_error e;
    int64_t at;
    int ch;

    opterr = 0;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case O_CONF:
            json_decref(o->conf);
            o->conf = NULL;
            if (json_parse(optarg, strlen(optarg), NULL, &o->conf, &e) != REMEX_OK)
                return ctl_usage(c, "--conf: %s", e.msg);
            if (!json_is_object(o->conf))
                return ctl_usage(c, "--conf: expected a JSON object");
            break;
        case O_DATE:
            if (timeutil_rfc3339_parse(optarg, &at, &e) != REMEX_OK)
                return ctl_usage(c, "--logical-date: %s", e.msg);
            o->logical_date = optarg;
            break;
        case O_RUN:
            if (optarg[0] == '\0')
                return ctl_usage(c, "--run-id: empty");
            o->run_id = optarg;
            break;
        case O_WAIT:
            o->wait = 1;
            break;
        case O_TIMEOUT:
        case O_INTERVAL:
            if (timeutil_duration_parse(optarg, ch == O_TIMEOUT ? &o->timeout_ms : &o->interval_ms,
                                        &e) != REMEX_OK)
                return ctl_usage(c, "%s: %s", argv[optind - 1], e.msg);
            break;
        default:
            return ctl_usage(c, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return ctl_usage(c, "missing DAG");
    if (optind + 1 < argc)
        return ctl_usage(c, "unexpected argument '%s'", argv[optind + 1]);
    if (o->interval_ms < 50)
        return ctl_usage(c, "--interval: at least 50ms");
    o->dag = argv[optind];
    return CTL_OK;
}

static void count_tis(const json_t *run, struct ti_counts *n)
{
    static const char *const done[] = {"success", "failed", "skipped", "upstream_failed",
                                       "removed"};
    json_t *tis = json_object_get(run, "task_instances"), *ti;
    size_t i, k;

    memset(n, 0, sizeof(*n));
    json_array_foreach(tis, i, ti)
    {
        const char *s = json_string_value(json_object_get(ti, "state"));

        n->total++;
        if (s == NULL)
            continue;
        for (k = 0; k < sizeof(done) / sizeof(done[0]); k++)
            if (strcmp(s, done[k]) == 0)
                n->done++;
        if (strcmp(s, "running") == 0 || strcmp(s, "offered") == 0 || strcmp(s, "deferred") == 0)
            n->running++;
        if (strcmp(s, "failed") == 0 || strcmp(s, "upstream_failed") == 0)
            n->failed++;
    }
}

/* Polls the run until it is success or failed. On a terminal one line is
 * redrawn in place; otherwise a line is printed whenever the counts change. */
static int wait_run(struct ctl *c, const struct trigger_opts *o, const char *run_id)
{
    struct buf path = BUF_INIT(4096);
    struct ti_counts n, last = {(size_t)-1, 0, 0, 0};
    uint64_t deadline = o->timeout_ms ? timeutil_mono_ms() + o->timeout_ms : 0;
    int tty = isatty(STDOUT_FILENO) && !c->json;
    char safe[TXT];
    json_t *run = NULL;
    const char *state = NULL;
    int rc;

    table_sanitize(safe, sizeof(safe), run_id);
    rc = ctl_path(c, &path, "/api/v1/admin/dags/%s/runs/%s", o->dag, run_id);
    for (;;) {
        if (rc != CTL_OK)
            break;
        json_decref(run);
        rc = ctl_call(c, "GET", buf_cstr(&path), NULL, &run, NULL);
        if (rc != CTL_OK)
            break;
        state = json_string_value(json_object_get(run, "state"));
        count_tis(run, &n);
        if (!c->json && (tty || memcmp(&n, &last, sizeof(n)) != 0)) {
            printf("%srun %s: %zu/%zu done, %zu running, %zu failed%s", tty ? "\r\033[K" : "", safe,
                   n.done, n.total, n.running, n.failed, tty ? "" : "\n");
            fflush(stdout);
            last = n;
        }
        if (state && (strcmp(state, "success") == 0 || strcmp(state, "failed") == 0))
            break;
        if (deadline && timeutil_mono_ms() >= deadline) {
            if (tty)
                printf("\n");
            rc = ctl_fail(c, CTL_EFAIL, "run %s: still %s after --timeout", safe,
                          state ? state : "unknown");
            break;
        }
        timeutil_sleep_ms(o->interval_ms);
    }
    buf_free(&path);
    if (rc == CTL_OK) {
        if (c->json) {
            char *s = json_dumps(run, JSON_COMPACT | JSON_PRESERVE_ORDER);
            struct buf raw = BUF_INIT(64u * 1024u * 1024u);

            buf_puts(&raw, s ? s : "null");
            ctl_print_raw(c, &raw);
            buf_free(&raw);
            free(s);
        } else {
            printf("%srun %s: %s\n", tty ? "\n" : "", safe, state);
        }
        fflush(stdout);
        if (strcmp(state, "success") != 0 && !c->json) {
            printf("failed task instances:\n");
            ctl_print_tis(c, run, 1);
        }
        if (strcmp(state, "success") != 0)
            rc =
                ctl_fail(c, CTL_EFAIL, "run %s failed; remexctl tasks logs %s %s TASK prints a log",
                         safe, o->dag, safe);
    }
    json_decref(run);
    return rc;
}

int cmd_dags_trigger(struct ctl *c, int argc, char **argv)
{
    struct trigger_opts o = {NULL, NULL, NULL, NULL, 0, 0, 500};
    struct buf path = BUF_INIT(4096), raw = BUF_INIT(16u * 1024u * 1024u);
    json_t *body = NULL, *reply = NULL;
    char run[TXT], st[TXT], tmp[TXT];
    int rc = parse_trigger(c, argc, argv, &o);

    if (rc == CTL_OK && (body = json_object()) == NULL)
        rc = ctl_fail(c, CTL_EFAIL, "out of memory");
    if (rc == CTL_OK && o.conf)
        json_object_set(body, "conf", o.conf);
    if (rc == CTL_OK && o.logical_date)
        json_object_set_new(body, "logical_date", json_string(o.logical_date));
    if (rc == CTL_OK && o.run_id)
        json_object_set_new(body, "run_id", json_string(o.run_id));
    if (rc == CTL_OK)
        rc = ctl_path(c, &path, "/api/v1/admin/dags/%s/runs", o.dag);
    if (rc == CTL_OK)
        rc = ctl_call(c, "POST", buf_cstr(&path), body, &reply, &raw);
    if (rc == CTL_OK && !json_is_string(json_object_get(reply, "run_id")))
        rc = ctl_fail(c, CTL_EFAIL, "the plane's reply holds no run_id");
    if (rc == CTL_OK && c->json && !o.wait)
        rc = ctl_print_raw(c, &raw);
    else if (rc == CTL_OK && !c->json) {
        table_sanitize(run, sizeof(run), json_string_value(json_object_get(reply, "run_id")));
        table_sanitize(st, sizeof(st), ctl_field(reply, "state", tmp, sizeof(tmp)));
        printf("triggered %s run %s (%s)\n", o.dag, run, st);
        fflush(stdout);
    }
    if (rc == CTL_OK && o.wait)
        rc = wait_run(c, &o, json_string_value(json_object_get(reply, "run_id")));
    json_decref(reply);
    json_decref(body);
    json_decref(o.conf);
    buf_free(&path);
    buf_free(&raw);
    return rc;
}
