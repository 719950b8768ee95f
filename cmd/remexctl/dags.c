/* remexctl: dags, runs and tasks commands (dags push lives in push.c). */
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

int cmd_dags_list(struct ctl *c, int argc, char **argv)
{
    static const char *const hdr[] = {"DAG", "PAUSED", "ACTIVE", "SCHEDULE", "BUNDLE", "TAGS"};
    struct table t;
    json_t *reply, *list, *d;
    char b[6][TXT];
    size_t i;
    int rc = ctl_positional(c, argc, argv, 0, "");

    if (rc != CTL_OK)
        return rc;
    rc = ctl_fetch(c, "GET", "/api/v1/admin/dags", NULL, &reply);
    if (rc != CTL_OK || reply == NULL)
        return rc;
    if ((list = ctl_list(reply, "dags")) == NULL || table_init(&t, 6, hdr) != REMEX_OK) {
        json_decref(reply);
        return ctl_fail(c, CTL_EFAIL, "unexpected reply from the plane");
    }
    json_array_foreach(list, i, d)
    {
        const char *row[6] = {
            ctl_field(d, "dag_id", b[0], TXT),
            ctl_field(d, "is_paused", b[1], TXT),
            ctl_field(d, "is_active", b[2], TXT),
            ctl_field(d, "schedule", b[3], TXT),
            ctl_field(json_object_get(d, "bundle"), "name", b[4], TXT),
            ctl_field(d, "tags", b[5], TXT),
        };
        if (table_add(&t, row) != REMEX_OK)
            break;
    }
    json_decref(reply);
    return ctl_table_print(c, &t, 0);
}

static const char *task_what(const json_t *task, char *buf, size_t n)
{
    if (json_is_string(json_object_get(task, "shell")))
        return json_string_value(json_object_get(task, "shell"));
    if (json_is_array(json_object_get(task, "command"))) {
        const char *s = ctl_field(task, "command", buf, n);
        size_t i;

        if (s != buf)
            return s;
        for (i = 0; buf[i]; i++) /* argv joined with spaces, not commas */
            if (buf[i] == ',')
                buf[i] = ' ';
        return buf;
    }
    if (json_is_object(json_object_get(task, "trigger")))
        return ctl_field(task, "trigger", buf, n);
    return "-";
}

static int print_tasks(const struct ctl *c, const json_t *dag)
{
    static const char *const hdr[] = {"TASK",  "UPSTREAM", "TRIGGER RULE",
                                      "QUEUE", "RETRIES",  "RUNS"};
    json_t *tasks = json_object_get(dag, "tasks"), *k;
    struct table t;
    char b[6][TXT];
    size_t i;

    if (!json_is_array(tasks))
        return CTL_OK;
    if (table_init(&t, 6, hdr) != REMEX_OK)
        return ctl_fail(c, CTL_EFAIL, "out of memory");
    json_array_foreach(tasks, i, k)
    {
        const char *row[6] = {
            ctl_field(k, "task_id", b[0], TXT),      ctl_field(k, "upstream", b[1], TXT),
            ctl_field(k, "trigger_rule", b[2], TXT), ctl_field(k, "queue", b[3], TXT),
            ctl_field(k, "retries", b[4], TXT),      task_what(k, b[5], TXT),
        };
        if (table_add(&t, row) != REMEX_OK)
            break;
    }
    printf("\n");
    return ctl_table_print(c, &t, 0);
}

int cmd_dags_show(struct ctl *c, int argc, char **argv)
{
    static const char *const keys[] = {"dag_id",
                                       "is_paused",
                                       "is_active",
                                       "schedule",
                                       "hash",
                                       "tags",
                                       "next_dagrun_logical_date",
                                       "updated_at"};
    struct buf path = BUF_INIT(4096);
    struct table t;
    json_t *reply = NULL, *dag;
    char b[TXT], v[2 * TXT];
    size_t i;
    int rc = ctl_positional(c, argc, argv, 1, "DAG");

    if (rc == CTL_OK)
        rc = ctl_path(c, &path, "/api/v1/admin/dags/%s", argv[1]);
    if (rc == CTL_OK)
        rc = ctl_fetch(c, "GET", buf_cstr(&path), NULL, &reply);
    buf_free(&path);
    if (rc != CTL_OK || reply == NULL)
        return rc;
    if (table_init(&t, 2, (const char *const[]){"", ""}) != REMEX_OK) {
        json_decref(reply);
        return ctl_fail(c, CTL_EFAIL, "out of memory");
    }
    dag = json_object_get(reply, "dag");
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (json_object_get(reply, keys[i]) != NULL)
            ctl_kv(&t, keys[i], ctl_field(reply, keys[i], b, sizeof(b)));
    if (json_is_object(json_object_get(reply, "bundle"))) {
        char n[TXT], ver[TXT];

        snprintf(v, sizeof(v), "%s@%s", ctl_field(json_object_get(reply, "bundle"), "name", n, TXT),
                 ctl_field(json_object_get(reply, "bundle"), "version", ver, TXT));
        ctl_kv(&t, "bundle", v);
    }
    if (json_is_object(dag) && json_object_get(reply, "schedule") == NULL)
        ctl_kv(&t, "schedule", ctl_field(dag, "schedule", b, sizeof(b)));
    rc = ctl_table_print(c, &t, 1);
    if (rc == CTL_OK && json_is_object(dag))
        rc = print_tasks(c, dag);
    json_decref(reply);
    return rc;
}

static int pause_common(struct ctl *c, int argc, char **argv, const char *verb, const char *done)
{
    struct buf path = BUF_INIT(4096);
    json_t *reply = NULL;
    int rc = ctl_positional(c, argc, argv, 1, "DAG");

    if (rc == CTL_OK)
        rc = ctl_path(c, &path, "/api/v1/admin/dags/%s/", argv[1]);
    if (rc == CTL_OK && buf_puts(&path, verb) != REMEX_OK)
        rc = ctl_fail(c, CTL_EUSAGE, "argument too long");
    if (rc == CTL_OK)
        rc = ctl_fetch(c, "POST", buf_cstr(&path), NULL, &reply);
    buf_free(&path);
    if (rc != CTL_OK || c->json)
        return rc;
    json_decref(reply);
    printf("%s %s\n", done, argv[1]);
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
}

int cmd_dags_pause(struct ctl *c, int argc, char **argv)
{
    return pause_common(c, argc, argv, "pause", "paused");
}

int cmd_dags_unpause(struct ctl *c, int argc, char **argv)
{
    return pause_common(c, argc, argv, "unpause", "unpaused");
}

/* ---- runs ---- */

int cmd_runs_list(struct ctl *c, int argc, char **argv)
{
    static const char *const hdr[] = {"RUN", "STATE", "TYPE", "LOGICAL DATE", "START", "END"};
    struct buf path = BUF_INIT(4096);
    struct table t;
    json_t *reply = NULL, *list, *r;
    char b[6][TXT];
    size_t i;
    int rc = ctl_positional(c, argc, argv, 1, "DAG");

    if (rc == CTL_OK)
        rc = ctl_path(c, &path, "/api/v1/admin/dags/%s/runs", argv[1]);
    if (rc == CTL_OK)
        rc = ctl_fetch(c, "GET", buf_cstr(&path), NULL, &reply);
    buf_free(&path);
    if (rc != CTL_OK || reply == NULL)
        return rc;
    if ((list = ctl_list(reply, "dag_runs")) == NULL || table_init(&t, 6, hdr) != REMEX_OK) {
        json_decref(reply);
        return ctl_fail(c, CTL_EFAIL, "unexpected reply from the plane");
    }
    json_array_foreach(list, i, r)
    {
        const char *row[6] = {
            ctl_field(r, "run_id", b[0], TXT),     ctl_field(r, "state", b[1], TXT),
            ctl_field(r, "run_type", b[2], TXT),   ctl_field(r, "logical_date", b[3], TXT),
            ctl_field(r, "start_date", b[4], TXT), ctl_field(r, "end_date", b[5], TXT),
        };
        if (table_add(&t, row) != REMEX_OK)
            break;
    }
    json_decref(reply);
    return ctl_table_print(c, &t, 0);
}

static int print_tis(const struct ctl *c, const json_t *run)
{
    static const char *const hdr[] = {"TASK", "MAP", "TRY", "STATE", "AGENT", "START", "END"};
    json_t *tis = json_object_get(run, "task_instances"), *ti;
    struct table t;
    char b[7][TXT];
    size_t i;

    if (!json_is_array(tis))
        return CTL_OK;
    if (table_init(&t, 7, hdr) != REMEX_OK)
        return ctl_fail(c, CTL_EFAIL, "out of memory");
    json_array_foreach(tis, i, ti)
    {
        const char *row[7] = {
            ctl_field(ti, "task_id", b[0], TXT),    ctl_field(ti, "map_index", b[1], TXT),
            ctl_field(ti, "try_number", b[2], TXT), ctl_field(ti, "state", b[3], TXT),
            ctl_field(ti, "agent_id", b[4], TXT),   ctl_field(ti, "start_date", b[5], TXT),
            ctl_field(ti, "end_date", b[6], TXT),
        };
        if (table_add(&t, row) != REMEX_OK)
            break;
    }
    printf("\n");
    return ctl_table_print(c, &t, 0);
}

static int print_run(const struct ctl *c, const json_t *run)
{
    static const char *const keys[] = {"dag_id",
                                       "run_id",
                                       "state",
                                       "run_type",
                                       "logical_date",
                                       "data_interval_start",
                                       "data_interval_end",
                                       "conf",
                                       "queued_at",
                                       "start_date",
                                       "end_date"};
    struct table t;
    char b[TXT];
    size_t i;
    int rc;

    if (table_init(&t, 2, (const char *const[]){"", ""}) != REMEX_OK)
        return ctl_fail(c, CTL_EFAIL, "out of memory");
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (json_object_get(run, keys[i]) != NULL)
            ctl_kv(&t, keys[i], ctl_field(run, keys[i], b, sizeof(b)));
    rc = ctl_table_print(c, &t, 1);
    return rc == CTL_OK ? print_tis(c, run) : rc;
}

static int run_path(const struct ctl *c, struct buf *path, const char *dag, const char *run)
{
    return ctl_path(c, path, "/api/v1/admin/dags/%s/runs/%s", dag, run);
}

int cmd_runs_show(struct ctl *c, int argc, char **argv)
{
    struct buf path = BUF_INIT(4096);
    json_t *reply = NULL;
    int rc = ctl_positional(c, argc, argv, 2, "DAG and RUN");

    if (rc == CTL_OK)
        rc = run_path(c, &path, argv[1], argv[2]);
    if (rc == CTL_OK)
        rc = ctl_fetch(c, "GET", buf_cstr(&path), NULL, &reply);
    buf_free(&path);
    if (rc != CTL_OK || reply == NULL)
        return rc;
    rc = print_run(c, reply);
    json_decref(reply);
    return rc;
}

static int task_action(struct ctl *c, int argc, char **argv, const char *verb, const char *done)
{
    struct buf path = BUF_INIT(4096);
    json_t *reply = NULL;
    char b[TXT];
    int rc = ctl_positional(c, argc, argv, 3, "DAG, RUN and TASK");

    if (rc == CTL_OK)
        rc = ctl_path(c, &path, "/api/v1/admin/dags/%s/runs/%s/tasks/%s/", argv[1], argv[2],
                      argv[3]);
    if (rc == CTL_OK && buf_puts(&path, verb) != REMEX_OK)
        rc = ctl_fail(c, CTL_EUSAGE, "argument too long");
    if (rc == CTL_OK)
        rc = ctl_fetch(c, "POST", buf_cstr(&path), NULL, &reply);
    buf_free(&path);
    if (rc != CTL_OK || c->json)
        return rc;
    printf("%s %s %s %s", done, argv[1], argv[2], argv[3]);
    if (json_is_string(json_object_get(reply, "state")))
        printf(" (state %s)", ctl_field(reply, "state", b, sizeof(b)));
    printf("\n");
    json_decref(reply);
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
}

int cmd_tasks_clear(struct ctl *c, int argc, char **argv)
{
    return task_action(c, argc, argv, "clear", "cleared");
}

int cmd_tasks_fail(struct ctl *c, int argc, char **argv)
{
    return task_action(c, argc, argv, "fail", "marked failed");
}
