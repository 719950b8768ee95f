/* remexctl: tokens, agents and import-errors commands. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "remex/timeutil.h"

#define TXT 512

/* Sets body[key] to the items of the comma-separated list s (non-empty, no
 * empty item); a usage error names the option. */
static int comma_list(struct ctl *c, json_t *body, const char *key, const char *s)
{
    json_t *a = json_array();
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 0) {
            json_decref(a);
            return ctl_usage(c, "--%s: expected NAME[,NAME...], not '%s'", key, s);
        }
        json_array_append_new(a, json_stringn(p, n));
        if (!comma)
            break;
        p = comma + 1;
    }
    json_object_set_new(body, key, a);
    return CTL_OK;
}

int cmd_tokens_create(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'n'},
        {"expires", required_argument, NULL, 'e'},
        {"roles", required_argument, NULL, 'r'},
        {"queues", required_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    const char *name = NULL, *expires = "30d", *roles = NULL, *queues = NULL;
    struct remex_error e;
    uint64_t ms;
    json_t *body, *reply = NULL;
    char t1[TXT], t2[TXT], t3[TXT];
    int ch, rc;

    opterr = 0;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (ch == 'n')
            name = optarg;
        else if (ch == 'e')
            expires = optarg;
        else if (ch == 'r')
            roles = optarg;
        else if (ch == 'q')
            queues = optarg;
        else
            return ctl_usage(c, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    if (optind < argc)
        return ctl_usage(c, "unexpected argument '%s'", argv[optind]);
    if (name == NULL || name[0] == '\0')
        return ctl_usage(c, "--name is required");
    if (timeutil_duration_parse(expires, &ms, &e) != REMEX_OK)
        return ctl_usage(c, "--expires: %s", e.msg);
    if (ms < 1000)
        return ctl_usage(c, "--expires: at least 1s");
    body = json_pack("{s:s, s:I}", "name", name, "expires_in", (json_int_t)(ms / 1000));
    if (body == NULL)
        return ctl_fail(c, CTL_EFAIL, "out of memory");
    if ((roles && (rc = comma_list(c, body, "roles", roles)) != CTL_OK) ||
        (queues && (rc = comma_list(c, body, "queues", queues)) != CTL_OK)) {
        json_decref(body);
        return rc;
    }
    rc = ctl_fetch(c, "POST", "/api/v1/admin/tokens", body, &reply);
    json_decref(body);
    if (rc != CTL_OK || reply == NULL)
        return rc;
    if (!json_is_string(json_object_get(reply, "value"))) {
        json_decref(reply);
        return ctl_fail(c, CTL_EFAIL, "the plane's reply holds no token value");
    }
    fprintf(stderr,
            "remexctl: created token %s \"%s\", expires %s; store the value now, it is not "
            "shown again\n",
            ctl_field(reply, "id", t1, sizeof(t1)), ctl_field(reply, "name", t2, sizeof(t2)),
            ctl_field(reply, "expires_at", t3, sizeof(t3)));
    printf("%s\n", json_string_value(json_object_get(reply, "value")));
    json_decref(reply);
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
}

static const char *token_status(const json_t *tok)
{
    const char *exp = json_string_value(json_object_get(tok, "expires_at"));
    int64_t at;

    if (json_is_string(json_object_get(tok, "revoked_at")) ||
        json_is_true(json_object_get(tok, "revoked")))
        return "revoked";
    if (exp && timeutil_rfc3339_parse(exp, &at, NULL) == REMEX_OK && at <= timeutil_real_ms())
        return "expired";
    return "active";
}

int cmd_tokens_list(struct ctl *c, int argc, char **argv)
{
    static const char *const hdr[] = {"ID",     "NAME",    "STATUS",  "ROLES",
                                      "QUEUES", "CREATED", "EXPIRES", "LAST USED"};
    struct table t;
    json_t *reply, *list, *tok;
    char b[7][TXT];
    size_t i;
    int rc = ctl_positional(c, argc, argv, 0, "");

    if (rc != CTL_OK ||
        !(list = ctl_list_get(c, "/api/v1/admin/tokens", "tokens", &t, 8, hdr, &reply, &rc)))
        return rc;
    json_array_foreach(list, i, tok)
    {
        const char *row[8] = {
            ctl_field(tok, "id", b[0], TXT),
            ctl_field(tok, "name", b[1], TXT),
            token_status(tok),
            ctl_field(tok, "roles", b[5], TXT),
            json_object_get(tok, "queues") ? ctl_field(tok, "queues", b[6], TXT) : "*",
            ctl_field(tok, "created_at", b[2], TXT),
            ctl_field(tok, "expires_at", b[3], TXT),
            ctl_field(tok, "last_used_at", b[4], TXT),
        };
        if (table_add(&t, row) != REMEX_OK)
            break;
    }
    json_decref(reply);
    return ctl_table_print(c, &t, 0);
}

/* Parses a positive decimal id. */
static int parse_id(const struct ctl *c, const char *s, const char *what)
{
    char *end;
    long long v;

    if (s[0] < '0' || s[0] > '9')
        return ctl_usage(c, "%s: expected a positive integer, not '%s'", what, s);
    v = strtoll(s, &end, 10);
    if (*end != '\0' || v <= 0)
        return ctl_usage(c, "%s: expected a positive integer, not '%s'", what, s);
    return CTL_OK;
}

int cmd_tokens_revoke(struct ctl *c, int argc, char **argv)
{
    struct buf path = BUF_INIT(4096);
    json_t *reply;
    int rc = ctl_positional(c, argc, argv, 1, "token ID");

    if (rc == CTL_OK)
        rc = parse_id(c, argv[1], "ID");
    if (rc == CTL_OK)
        rc = ctl_path(c, &path, "/api/v1/admin/tokens/%s", argv[1]);
    if (rc == CTL_OK)
        rc = ctl_fetch(c, "DELETE", buf_cstr(&path), NULL, &reply);
    buf_free(&path);
    if (rc != CTL_OK || c->json)
        return rc;
    json_decref(reply);
    printf("revoked token %s\n", argv[1]);
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
}

int cmd_agents_list(struct ctl *c, int argc, char **argv)
{
    static const char *const hdr[] = {"ID",    "NAME",    "STATE",          "DESIRED", "QUEUES",
                                      "SLOTS", "RUNNING", "LAST HEARTBEAT", "VERSION"};
    struct table t;
    json_t *reply, *list, *a;
    char b[9][TXT], slots[64];
    size_t i;
    int rc = ctl_positional(c, argc, argv, 0, "");

    if (rc != CTL_OK ||
        !(list = ctl_list_get(c, "/api/v1/admin/agents", "agents", &t, 9, hdr, &reply, &rc)))
        return rc;
    json_array_foreach(list, i, a)
    {
        snprintf(slots, sizeof(slots), "%s/%s", ctl_field(a, "free_slots", b[5], TXT),
                 ctl_field(a, "slots", b[6], TXT));
        const char *row[9] = {
            ctl_field(a, "agent_id", b[0], TXT), ctl_field(a, "name", b[1], TXT),
            ctl_field(a, "state", b[2], TXT),    ctl_field(a, "desired_state", b[3], TXT),
            ctl_field(a, "queues", b[4], TXT),   slots,
            ctl_field(a, "running", b[8], TXT),  ctl_field(a, "last_heartbeat_at", b[6], TXT),
            ctl_field(a, "version", b[7], TXT),
        };
        if (table_add(&t, row) != REMEX_OK)
            break;
    }
    json_decref(reply);
    return ctl_table_print(c, &t, 0);
}

static int print_checks(const struct ctl *c, const json_t *health)
{
    static const char *const hdr[] = {"CHECK", "STATUS", "MESSAGE"};
    json_t *checks = json_object_get(health, "checks"), *k;
    struct table t;
    char b[3][TXT];
    size_t i;

    if (!json_is_array(checks) || json_array_size(checks) == 0)
        return CTL_OK;
    if (table_init(&t, 3, hdr) != REMEX_OK)
        return ctl_fail(c, CTL_EFAIL, "out of memory");
    json_array_foreach(checks, i, k)
    {
        const char *row[3] = {ctl_field(k, "name", b[0], TXT), ctl_field(k, "status", b[1], TXT),
                              ctl_field(k, "message", b[2], TXT)};
        if (table_add(&t, row) != REMEX_OK)
            break;
    }
    printf("\n");
    return ctl_table_print(c, &t, 0);
}

/*
 * The agent id of NAME_OR_ID into id (digits only): an agent named so wins,
 * then an agent with that id. Fails (printed) when none matches.
 */
int ctl_agent_resolve(struct ctl *c, const char *arg, char *id, size_t n)
{
    json_t *reply = NULL, *list, *a;
    const json_t *by_id = NULL, *by_name = NULL;
    size_t i;
    int rc = ctl_call(c, "GET", "/api/v1/admin/agents", NULL, &reply, NULL);

    if (rc != CTL_OK)
        return rc;
    if ((list = ctl_list(reply, "agents")) == NULL) {
        json_decref(reply);
        return ctl_fail(c, CTL_EFAIL, "unexpected reply from the plane");
    }
    json_array_foreach(list, i, a)
    {
        const char *name = json_string_value(json_object_get(a, "name"));
        json_t *aid = json_object_get(a, "agent_id");
        char s[32];
        if (name && strcmp(name, arg) == 0)
            by_name = a;
        snprintf(s, sizeof(s), "%" JSON_INTEGER_FORMAT, json_integer_value(aid));
        if (json_is_integer(aid) && strcmp(s, arg) == 0)
            by_id = a;
    }
    a = (json_t *)(by_name ? by_name : by_id);
    if (a)
        snprintf(id, n, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(a, "agent_id")));
    json_decref(reply);
    if (!a) {
        char safe[TXT];
        table_sanitize(safe, sizeof(safe), arg);
        return ctl_fail(c, CTL_EFAIL, "no agent named or numbered '%s'", safe);
    }
    return CTL_OK;
}

/* PATCHes the agent's desired state and prints the result. */
static int agent_set_desired(struct ctl *c, int argc, char **argv, const char *desired)
{
    struct buf path = BUF_INIT(4096);
    json_t *body = NULL, *reply = NULL;
    char id[32], b[3][TXT];
    int rc = ctl_positional(c, argc, argv, 1, "agent NAME_OR_ID");

    if (rc == CTL_OK)
        rc = ctl_agent_resolve(c, argv[1], id, sizeof(id));
    if (rc == CTL_OK)
        rc = ctl_path(c, &path, "/api/v1/admin/agents/%s", id);
    if (rc == CTL_OK && (body = json_pack("{s:s}", "desired_state", desired)) == NULL)
        rc = ctl_fail(c, CTL_EFAIL, "out of memory");
    if (rc == CTL_OK)
        rc = ctl_fetch(c, "PATCH", buf_cstr(&path), body, &reply);
    json_decref(body);
    buf_free(&path);
    if (rc != CTL_OK || reply == NULL)
        return rc;
    printf("agent %s (%s): desired state %s, state %s\n", ctl_field(reply, "agent_id", b[0], TXT),
           ctl_field(reply, "name", b[1], TXT), desired, ctl_field(reply, "state", b[2], TXT));
    json_decref(reply);
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
}

int cmd_agents_drain(struct ctl *c, int argc, char **argv)
{
    return agent_set_desired(c, argc, argv, "drain");
}

int cmd_agents_maintenance(struct ctl *c, int argc, char **argv)
{
    return agent_set_desired(c, argc, argv, "maintenance");
}

int cmd_agents_resume(struct ctl *c, int argc, char **argv)
{
    return agent_set_desired(c, argc, argv, "run");
}

int cmd_agents_show(struct ctl *c, int argc, char **argv)
{
    static const char *const keys[] = {"agent_id",      "name",
                                       "state",         "desired_state",
                                       "hostname",      "version",
                                       "roles",         "queues",
                                       "slots",         "free_slots",
                                       "running",       "token_id",
                                       "registered_at", "last_heartbeat_at",
                                       "features",      "sysinfo"};
    struct buf path = BUF_INIT(4096);
    struct table t;
    json_t *reply = NULL, *health;
    char b[TXT];
    size_t i;
    char id[32];
    int rc = ctl_positional(c, argc, argv, 1, "agent NAME_OR_ID");

    if (rc == CTL_OK)
        rc = ctl_agent_resolve(c, argv[1], id, sizeof(id));
    if (rc == CTL_OK)
        rc = ctl_path(c, &path, "/api/v1/admin/agents/%s", id);
    if (rc == CTL_OK)
        rc = ctl_fetch(c, "GET", buf_cstr(&path), NULL, &reply);
    buf_free(&path);
    if (rc != CTL_OK || reply == NULL)
        return rc;
    if (table_init(&t, 2, (const char *const[]){"", ""}) != REMEX_OK) {
        json_decref(reply);
        return ctl_fail(c, CTL_EFAIL, "out of memory");
    }
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (json_object_get(reply, keys[i]) != NULL)
            ctl_kv(&t, keys[i], ctl_field(reply, keys[i], b, sizeof(b)));
    health = json_object_get(reply, "health");
    if (json_is_object(health)) {
        ctl_kv(&t, "health", ctl_field(health, "status", b, sizeof(b)));
        ctl_kv(&t, "health_reported_at", ctl_field(health, "reported_at", b, sizeof(b)));
    } else {
        ctl_kv(&t, "health", "-");
    }
    rc = ctl_table_print(c, &t, 1);
    if (rc == CTL_OK && json_is_object(health))
        rc = print_checks(c, health);
    json_decref(reply);
    return rc;
}

int cmd_import_errors(struct ctl *c, int argc, char **argv)
{
    static const char *const hdr[] = {"BUNDLE", "VERSION", "LOCATION", "MESSAGE"};
    struct table t;
    json_t *reply, *list, *ie;
    char b[6][TXT], loc[3 * TXT], sv[CTL_SHORT_VERSION];
    size_t i;
    int rc = ctl_positional(c, argc, argv, 0, "");

    if (rc != CTL_OK || !(list = ctl_list_get(c, "/api/v1/admin/import-errors", "import_errors", &t,
                                              4, hdr, &reply, &rc)))
        return rc;
    json_array_foreach(list, i, ie)
    {
        snprintf(loc, sizeof(loc), "%s:%s:%s", ctl_field(ie, "file", b[1], TXT),
                 ctl_field(ie, "line", b[2], TXT), ctl_field(ie, "column", b[3], TXT));
        const char *row[4] = {
            ctl_field(ie, "bundle", b[0], TXT),
            ctl_short_version(ctl_field(ie, "version", b[5], TXT), sv, sizeof(sv)), loc,
            ctl_field(ie, "message", b[4], TXT)};
        if (table_add(&t, row) != REMEX_OK)
            break;
    }
    json_decref(reply);
    return ctl_table_print(c, &t, 0);
}
