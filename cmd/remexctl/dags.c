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
    static const char *const hdr[] = {"DAG",    "PAUSED",  "ACTIVE", "SCHEDULE",
                                      "BUNDLE", "VERSION", "TAGS"};
    struct table t;
    json_t *reply, *list, *d;
    char b[7][TXT], sv[CTL_SHORT_VERSION];
    size_t i;
    int rc = ctl_positional(c, argc, argv, 0, "");

    if (rc != CTL_OK ||
        !(list = ctl_list_get(c, "/api/v1/admin/dags", "dags", &t, 7, hdr, &reply, &rc)))
        return rc;
    json_array_foreach(list, i, d)
    {
        const char *row[7] = {
            ctl_field(d, "dag_id", b[0], TXT),
            ctl_field(d, "is_paused", b[1], TXT),
            ctl_field(d, "is_active", b[2], TXT),
            ctl_field(d, "schedule", b[3], TXT),
            ctl_field(json_object_get(d, "bundle"), "name", b[4], TXT),
            ctl_short_version(ctl_field(json_object_get(d, "bundle"), "version", b[6], TXT), sv,
                              sizeof(sv)),
            ctl_field(d, "tags", b[5], TXT),
        };
        if (table_add(&t, row) != REMEX_OK)
            break;
    }
    json_decref(reply);
    return ctl_table_print(c, &t, 0);
}

/* A multi-line shell string shows its first line and the count of the
 * others in the table; print_shells prints it whole below. */
static const char *task_what(const json_t *task, char *buf, size_t n)
{
    const char *sh = json_string_value(json_object_get(task, "shell"));
    const char *nl = sh ? strchr(sh, '\n') : NULL;

    if (nl && nl[1] != '\0') {
        size_t lines = 1;
        for (const char *q = nl; q && q[1]; q = strchr(q + 1, '\n'))
            lines++;
        snprintf(buf, n, "%.*s ... (%zu lines, below)", (int)(nl - sh), sh, lines);
        return buf;
    }
    if (sh) {
        snprintf(buf, n, "%.*s", (int)(nl ? (size_t)(nl - sh) : strlen(sh)), sh);
        return buf;
    }
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
    int rc = ctl_table_print(c, &t, 0);
    json_array_foreach(tasks, i, k)
    {
        const char *sh = json_string_value(json_object_get(k, "shell"));
        const char *nl = sh ? strchr(sh, '\n') : NULL;
        char id[TXT], line[TXT];

        if (rc != CTL_OK || !nl || nl[1] == '\0')
            continue;
        printf("\nshell of %s:\n", ctl_field(k, "task_id", id, sizeof(id)));
        while (sh && *sh) {
            nl = strchr(sh, '\n');
            size_t len = nl ? (size_t)(nl - sh) : strlen(sh);
            char one[TXT];
            snprintf(one, sizeof(one), "%.*s", (int)(len < TXT - 1 ? len : TXT - 1), sh);
            table_sanitize(line, sizeof(line), one);
            printf("  %s\n", line);
            sh = nl ? nl + 1 : NULL;
        }
    }
    return rc;
}

int cmd_dags_show(struct ctl *c, int argc, char **argv)
{
    static const char *const keys[] = {"dag_id",
                                       "is_paused",
                                       "is_active",
                                       "schedule",
                                       "hash",
                                       "tags",
                                       "next_dagrun_create_after",
                                       "description"};
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
    json_t *reply = NULL, *list = NULL, *r;
    char b[6][TXT];
    size_t i;
    int rc = ctl_positional(c, argc, argv, 1, "DAG");

    if (rc == CTL_OK)
        rc = ctl_path(c, &path, "/api/v1/admin/dags/%s/runs", argv[1]);
    if (rc == CTL_OK)
        list = ctl_list_get(c, buf_cstr(&path), "dag_runs", &t, 6, hdr, &reply, &rc);
    buf_free(&path);
    if (list == NULL)
        return rc;
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
    if (rc == CTL_OK && json_array_size(json_object_get(run, "task_instances")) > 0) {
        printf("\n");
        rc = ctl_print_tis(c, run, 0);
    }
    return rc;
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
