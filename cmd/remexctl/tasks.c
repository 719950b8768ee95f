/* remexctl: tasks list, clear, fail, mark (logs: logs.c); the task instance table of
 * runs show and of a failed dags trigger --wait. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

#define TXT 512

/* 1 when some task instance of the run is mapped (map_index >= 0). */
static int any_mapped(const json_t *tis)
{
    size_t i;
    json_t *ti;

    json_array_foreach(tis, i, ti)
    {
        if (json_integer_value(json_object_get(ti, "map_index")) >= 0)
            return 1;
    }
    return 0;
}

int ctl_print_tis(const struct ctl *c, const json_t *run, int failed_only)
{
    static const char *const all[] = {"TASK",  "MAP", "TRY",    "STATE", "AGENT",
                                      "START", "END", "REASON", "LOG"};
    json_t *tis = json_object_get(run, "task_instances"), *ti;
    const char *hdr[9];
    struct table t;
    char b[9][TXT];
    size_t i, ncol = 0;
    int mapped = any_mapped(tis), wide = c->wide || failed_only;

    for (i = 0; i < 9; i++)
        if ((i != 1 || mapped) && (i != 8 || wide) &&
            (!failed_only || i == 0 || i == 2 || i == 3 || i == 7 || i == 8))
            hdr[ncol++] = all[i];
    if (table_init(&t, ncol, hdr) != REMEX_OK)
        return ctl_fail(c, CTL_EFAIL, "out of memory");
    json_array_foreach(tis, i, ti)
    {
        const char *state = json_string_value(json_object_get(ti, "state"));
        const char *agent =
            json_is_string(json_object_get(ti, "agent_name")) ? "agent_name" : "agent_id";
        const char *cell[9] = {
            ctl_field(ti, "task_id", b[0], TXT),    ctl_field(ti, "map_index", b[1], TXT),
            ctl_field(ti, "try_number", b[2], TXT), ctl_field(ti, "state", b[3], TXT),
            ctl_field(ti, agent, b[4], TXT),        ctl_field(ti, "start_date", b[5], TXT),
            ctl_field(ti, "end_date", b[6], TXT),   ctl_field(ti, "reason", b[7], TXT),
            ctl_field(ti, "log_uri", b[8], TXT),
        };
        const char *row[9];
        size_t k, n = 0;

        if (failed_only &&
            (!state || (strcmp(state, "failed") != 0 && strcmp(state, "upstream_failed") != 0)))
            continue;
        for (k = 0; k < 9; k++)
            if ((k != 1 || mapped) && (k != 8 || wide) &&
                (!failed_only || k == 0 || k == 2 || k == 3 || k == 7 || k == 8))
                row[n++] = cell[k];
        if (table_add(&t, row) != REMEX_OK)
            break;
    }
    return ctl_table_print(c, &t, 0);
}

/* GET the run DAG RUN into *reply (owned). */
static int fetch_run(struct ctl *c, const char *dag, const char *run, json_t **reply)
{
    struct buf path = BUF_INIT(4096);
    int rc = ctl_path(c, &path, "/api/v1/admin/dags/%s/runs/%s", dag, run);

    if (rc == CTL_OK)
        rc = ctl_call(c, "GET", buf_cstr(&path), NULL, reply, NULL);
    buf_free(&path);
    return rc;
}

int cmd_tasks_list(struct ctl *c, int argc, char **argv)
{
    json_t *reply = NULL;
    int rc = ctl_positional(c, argc, argv, 2, "DAG and RUN");

    if (rc == CTL_OK)
        rc = c->json ? CTL_OK : fetch_run(c, argv[1], argv[2], &reply);
    if (rc == CTL_OK && c->json) {
        struct buf path = BUF_INIT(4096);

        rc = ctl_path(c, &path, "/api/v1/admin/dags/%s/runs/%s", argv[1], argv[2]);
        if (rc == CTL_OK)
            rc = ctl_fetch(c, "GET", buf_cstr(&path), NULL, &reply);
        buf_free(&path);
        return rc;
    }
    if (rc == CTL_OK)
        rc = ctl_print_tis(c, reply, 0);
    json_decref(reply);
    return rc;
}

/* POST .../tasks/TASK/VERB with body (borrowed, may be NULL). */
static int task_post(struct ctl *c, char **argv, const char *verb, json_t *body, const char *done)
{
    struct buf path = BUF_INIT(4096);
    json_t *reply = NULL, *v;
    char b[TXT];
    size_t i;
    int rc =
        ctl_path(c, &path, "/api/v1/admin/dags/%s/runs/%s/tasks/%s/", argv[0], argv[1], argv[2]);

    if (rc == CTL_OK && buf_puts(&path, verb) != REMEX_OK)
        rc = ctl_fail(c, CTL_EUSAGE, "argument too long");
    if (rc == CTL_OK)
        rc = ctl_fetch(c, "POST", buf_cstr(&path), body, &reply);
    buf_free(&path);
    if (rc != CTL_OK || c->json)
        return rc;
    printf("%s %s %s %s", done, argv[0], argv[1], argv[2]);
    if (json_is_string(json_object_get(reply, "state")))
        printf(" (state %s)", ctl_field(reply, "state", b, sizeof(b)));
    if (json_array_size(json_object_get(reply, "cleared")) > 1) {
        printf("; cleared:");
        json_array_foreach(json_object_get(reply, "cleared"), i, v)
        {
            printf(" %s", ctl_text(v, b, sizeof(b)));
        }
    }
    printf("\n");
    json_decref(reply);
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
}

int cmd_tasks_clear(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"downstream", no_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    int ch, downstream = 0, rc;
    json_t *body;

    opterr = 0;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch != 'd')
            return ctl_usage(c, "unknown option '%s'", argv[optind - 1]);
        downstream = 1;
    }
    if (argc - optind != 3)
        return ctl_usage(c,
                         argc - optind < 3 ? "missing DAG, RUN and TASK" : "unexpected argument");
    body = json_pack("{sb}", "downstream", downstream);
    rc = task_post(c, argv + optind, "clear", body, "cleared");
    json_decref(body);
    return rc;
}

int cmd_tasks_fail(struct ctl *c, int argc, char **argv)
{
    int rc = ctl_positional(c, argc, argv, 3, "DAG, RUN and TASK");

    return rc == CTL_OK ? task_post(c, argv + 1, "fail", NULL, "marked failed") : rc;
}

int cmd_tasks_mark(struct ctl *c, int argc, char **argv)
{
    int rc = ctl_positional(c, argc, argv, 4, "success|failed, DAG, RUN and TASK");

    if (rc != CTL_OK)
        return rc;
    if (strcmp(argv[1], "success") == 0)
        return task_post(c, argv + 2, "success", NULL, "marked success");
    if (strcmp(argv[1], "failed") == 0)
        return task_post(c, argv + 2, "fail", NULL, "marked failed");
    return ctl_usage(c, "expected success or failed, not '%s'", argv[1]);
}
