/* remexctl: runs cancel, runs clear, dags delete, dags backfill, agents delete. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "remex/cron.h"
#include "remex/timeutil.h"

#define TXT             512
#define BACKFILL_MAX    1000 /* runs one backfill may create */
#define BACKFILL_ID_MAX 128

/* POSTs (or DELETEs) path and prints "done WHAT" unless -o json. */
static int act(struct ctl *c, const char *method, const struct buf *path, const char *done)
{
    json_t *reply = NULL;
    int rc = ctl_fetch(c, method, buf_cstr(path), NULL, &reply);

    if (rc != CTL_OK || c->json)
        return rc;
    json_decref(reply);
    printf("%s\n", done);
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
}

static int run_verb(struct ctl *c, int argc, char **argv, const char *verb, const char *done)
{
    struct buf path = BUF_INIT(4096);
    char msg[3 * TXT], d[TXT], r[TXT];
    int rc = ctl_positional(c, argc, argv, 2, "DAG and RUN");

    if (rc == CTL_OK)
        rc = ctl_path(c, &path, "/api/v1/admin/dags/%s/runs/%s/", argv[1], argv[2]);
    if (rc == CTL_OK && buf_puts(&path, verb) != REMEX_OK)
        rc = ctl_fail(c, CTL_EUSAGE, "argument too long");
    table_sanitize(d, sizeof(d), argc > 1 ? argv[1] : "");
    table_sanitize(r, sizeof(r), argc > 2 ? argv[2] : "");
    snprintf(msg, sizeof(msg), "%s run %s of %s", done, r, d);
    if (rc == CTL_OK)
        rc = act(c, "POST", &path, msg);
    buf_free(&path);
    return rc;
}

int cmd_runs_cancel(struct ctl *c, int argc, char **argv)
{
    return run_verb(c, argc, argv, "cancel", "cancelled");
}

int cmd_runs_clear(struct ctl *c, int argc, char **argv)
{
    return run_verb(c, argc, argv, "clear", "cleared");
}

/* DELETE fmt with argv[1] (the one argument, named by usage) as its segment: "deleted <what>NAME".
 */
static int delete_named(struct ctl *c, int argc, char **argv, const char *usage, const char *fmt,
                        const char *what)
{
    struct buf path = BUF_INIT(4096);
    char msg[TXT + 32], safe[TXT];
    int rc = ctl_positional(c, argc, argv, 1, usage);

    if (rc == CTL_OK)
        rc = ctl_path(c, &path, fmt, argv[1]);
    table_sanitize(safe, sizeof(safe), argc > 1 ? argv[1] : "");
    snprintf(msg, sizeof(msg), "deleted %s%s", what, safe);
    if (rc == CTL_OK)
        rc = act(c, "DELETE", &path, msg);
    buf_free(&path);
    return rc;
}

int cmd_dags_delete(struct ctl *c, int argc, char **argv)
{
    return delete_named(c, argc, argv, "DAG", "/api/v1/admin/dags/%s", "");
}

int cmd_agents_delete(struct ctl *c, int argc, char **argv)
{
    struct buf path = BUF_INIT(4096);
    char id[32] = "", msg[TXT + 64], safe[TXT];
    int rc = ctl_positional(c, argc, argv, 1, "agent NAME_OR_ID");

    if (rc == CTL_OK)
        rc = ctl_agent_resolve(c, argv[1], id, sizeof(id));
    if (rc == CTL_OK)
        rc = ctl_path(c, &path, "/api/v1/admin/agents/%s", id);
    table_sanitize(safe, sizeof(safe), argc > 1 ? argv[1] : "");
    snprintf(msg, sizeof(msg), "deleted agent %s (%s)", id, safe);
    if (rc == CTL_OK)
        rc = act(c, "DELETE", &path, msg);
    buf_free(&path);
    return rc;
}

/* The DAG's schedule (cron or preset) into sched; usage error when it has none. */
static int dag_schedule(struct ctl *c, const char *dag, char *sched, size_t n)
{
    struct buf path = BUF_INIT(4096);
    json_t *reply = NULL;
    int rc = ctl_path(c, &path, "/api/v1/admin/dags/%s", dag);

    if (rc == CTL_OK)
        rc = ctl_call(c, "GET", buf_cstr(&path), NULL, &reply, NULL);
    buf_free(&path);
    if (rc != CTL_OK)
        return rc;
    const char *s = json_string_value(json_object_get(json_object_get(reply, "dag"), "schedule"));
    int recurring = s && strcmp(s, "@once") != 0;
    if (recurring)
        snprintf(sched, n, "%s", s);
    json_decref(reply); /* s is gone with it */
    if (!recurring)
        return ctl_fail(c, CTL_EFAIL, "DAG '%s' has no recurring schedule to backfill", dag);
    return CTL_OK;
}

/* Creates one manual run per schedule time in [from, to]: run id
 * backfill__<logical date>, logical date the schedule time. Runs already
 * there (409) are left as they are. */
int cmd_dags_backfill(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    const char *from = NULL, *to = NULL;
    int64_t f_ms = 0, t_ms = 0;
    struct remex_error e;
    char sched[256];
    struct cron cr;
    int ch, rc, made = 0, kept = 0;

    opterr = 0;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'f')
            from = optarg;
        else if (ch == 't')
            to = optarg;
        else
            return ctl_usage(c, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    if (argc - optind != 1)
        return ctl_usage(c, argc - optind < 1 ? "missing DAG" : "unexpected argument");
    if (!from || !to)
        return ctl_usage(c, "--from and --to are required (RFC 3339 or YYYY-MM-DD)");
    if (timeutil_rfc3339_parse(from, &f_ms, &e) != REMEX_OK)
        return ctl_usage(c, "--from: %s", e.msg);
    if (timeutil_rfc3339_parse(to, &t_ms, &e) != REMEX_OK)
        return ctl_usage(c, "--to: %s", e.msg);
    if (t_ms < f_ms)
        return ctl_usage(c, "--to is before --from");
    const char *dag = argv[optind];
    if ((rc = dag_schedule(c, dag, sched, sizeof(sched))) != CTL_OK)
        return rc;
    if (cron_parse(&cr, sched, &e) != REMEX_OK)
        return ctl_fail(c, CTL_EFAIL, "schedule '%s': %s", sched, e.msg);
    for (int64_t t = cron_next(&cr, f_ms / 1000 - 1); t >= 0 && t <= t_ms / 1000;
         t = cron_next(&cr, t)) {
        char date[TIMEUTIL_RFC3339_MAX], id[BACKFILL_ID_MAX];
        struct buf path = BUF_INIT(4096);
        json_t *body, *reply = NULL;

        if (made + kept >= BACKFILL_MAX)
            return ctl_fail(c, CTL_EFAIL, "more than %d runs between --from and --to",
                            BACKFILL_MAX);
        timeutil_rfc3339_format(t * 1000, 0, date, sizeof(date));
        snprintf(id, sizeof(id), "backfill__%s", date);
        body = json_pack("{s:s, s:s}", "logical_date", date, "run_id", id);
        rc = ctl_path(c, &path, "/api/v1/admin/dags/%s/runs", dag);
        if (rc == CTL_OK && body)
            rc = ctl_call(c, "POST", buf_cstr(&path), body, &reply, NULL);
        buf_free(&path);
        json_decref(body);
        json_decref(reply);
        if (rc != CTL_OK)
            return rc;
        printf("triggered %s run %s\n", dag, id);
        made++;
    }
    printf("backfill of %s: %d runs from %s to %s\n", dag, made, from, to);
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
}

int cmd_pools_list(struct ctl *c, int argc, char **argv)
{
    static const char *const hdr[] = {"POOL", "SLOTS", "OCCUPIED", "QUEUED", "OPEN", "DESCRIPTION"};
    json_t *reply = NULL, *list, *x;
    struct table t;
    char b[6][TXT];
    size_t i;
    int rc = ctl_positional(c, argc, argv, 0, "");

    if (rc != CTL_OK ||
        !(list = ctl_list_get(c, "/api/v1/admin/pools", "pools", &t, 6, hdr, &reply, &rc)))
        return rc;
    json_array_foreach(list, i, x)
    {
        const char *row[6] = {
            ctl_field(x, "name", b[0], TXT),     ctl_field(x, "slots", b[1], TXT),
            ctl_field(x, "occupied", b[2], TXT), ctl_field(x, "queued", b[3], TXT),
            ctl_field(x, "open", b[4], TXT),     ctl_field(x, "description", b[5], TXT),
        };
        if (table_add(&t, row) != REMEX_OK)
            break;
    }
    json_decref(reply);
    return ctl_table_print(c, &t, 0);
}

int cmd_pools_set(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"description", required_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    const char *desc = NULL;
    struct buf path = BUF_INIT(4096);
    json_t *body = NULL, *reply = NULL;
    char *end = NULL, b[3][TXT];
    int ch, rc;

    opterr = 0;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch != 'd')
            return ctl_usage(c, "unknown or incomplete option '%s'", argv[optind - 1]);
        desc = optarg;
    }
    if (argc - optind != 2)
        return ctl_usage(c, argc - optind < 2 ? "missing NAME and SLOTS" : "unexpected argument");
    long long slots = strtoll(argv[optind + 1], &end, 10);
    if (!*argv[optind + 1] || *end || slots < 0 || slots > 1000000)
        return ctl_usage(c, "SLOTS: expected an integer 0..1000000, not '%s'", argv[optind + 1]);
    body = json_pack("{s:I}", "slots", (json_int_t)slots);
    if (body && desc)
        json_object_set_new(body, "description", json_string(desc));
    rc = ctl_path(c, &path, "/api/v1/admin/pools/%s", argv[optind]);
    if (rc == CTL_OK)
        rc = ctl_fetch(c, "PUT", buf_cstr(&path), body, &reply);
    json_decref(body);
    buf_free(&path);
    if (rc != CTL_OK || reply == NULL)
        return rc;
    printf("pool %s: %s slots (%s occupied)\n", ctl_field(reply, "name", b[0], TXT),
           ctl_field(reply, "slots", b[1], TXT), ctl_field(reply, "occupied", b[2], TXT));
    json_decref(reply);
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
}

int cmd_pools_delete(struct ctl *c, int argc, char **argv)
{
    return delete_named(c, argc, argv, "NAME", "/api/v1/admin/pools/%s", "pool ");
}

/* db clean: POST /api/v1/admin/db/clean until the plane reports no runs
 * left (each call deletes a bounded slice); a dry run is one call. Stops
 * when a call makes no progress, so the loop is bounded by the history. */
int cmd_db_clean(struct ctl *c, int argc, char **argv)
{
    enum { O_OLDER = 1, O_DRY };
    static const struct option opts[] = {
        {"older-than", required_argument, NULL, O_OLDER},
        {"dry-run", no_argument, NULL, O_DRY},
        {NULL, 0, NULL, 0},
    };
    const char *older = NULL;
    int dry = 0, ch, rc = CTL_OK, more = 1;
    uint64_t ms = 0;
    json_int_t runs = 0, tis = 0;
    char cutoff[TXT] = "";
    struct remex_error e = {0};

    opterr = 0;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (ch == O_OLDER)
            older = optarg;
        else if (ch == O_DRY)
            dry = 1;
        else
            return ctl_usage(c, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    if (optind < argc)
        return ctl_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!older)
        return ctl_usage(c, "--older-than is required (e.g. 30d)");
    if (timeutil_duration_parse(older, &ms, &e) != REMEX_OK)
        return ctl_usage(c, "--older-than: %s", e.msg);
    json_t *body = json_pack("{s:I, s:b}", "older_than", (json_int_t)(ms / 1000), "dry_run", dry);
    if (!body)
        return ctl_fail(c, CTL_EFAIL, "out of memory");
    while (rc == CTL_OK && more) {
        json_t *reply = NULL;
        rc = ctl_call(c, "POST", "/api/v1/admin/db/clean", body, &reply, NULL);
        if (rc != CTL_OK)
            break;
        json_int_t n = json_integer_value(json_object_get(reply, "dag_runs"));
        runs += n;
        tis += json_integer_value(json_object_get(reply, "task_instances"));
        ctl_field(reply, "cutoff", cutoff, sizeof(cutoff));
        more = !dry && n > 0 && json_is_true(json_object_get(reply, "more"));
        json_decref(reply);
    }
    json_decref(body);
    if (rc != CTL_OK)
        return rc;
    if (c->json)
        printf("{\"cutoff\":\"%s\",\"dry_run\":%s,\"dag_runs\":%" JSON_INTEGER_FORMAT
               ",\"task_instances\":%" JSON_INTEGER_FORMAT "}\n",
               cutoff, dry ? "true" : "false", runs, tis);
    else
        printf("%s %" JSON_INTEGER_FORMAT " dag runs and %" JSON_INTEGER_FORMAT
               " task instances that ended before %s\n",
               dry ? "would delete" : "deleted", runs, tis, cutoff);
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
}
