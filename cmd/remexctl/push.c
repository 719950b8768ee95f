/*
 * remexctl: dags push FILE [--bundle NAME].
 *
 * The file is parsed and validated by the dagyaml module (the same parser the
 * dag-processor uses), so every problem is reported as FILE:LINE:COL and
 * nothing is uploaded unless the whole file is valid. The DAGs' canonical JSON
 * is uploaded in one POST /api/v1/dags/bulk (API_DAGS_BULK_MAX DAGs per
 * request); a plane without that route (404, 405), or one whose body_max the
 * request exceeds (413), gets one PUT /api/v1/dags/{dag_id} per DAG instead.
 * The bundle version is the SHA-256 of the file. Templates are kept verbatim
 * (the worker expands them).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "remex/api.h"
#include "remex/dag.h"
#include "remex/dagyaml.h"
#include "remex/hash.h"

/* Uploads one validated DAG. */
static int push_one(struct ctl *c, const struct dag *d, json_t *bundle)
{
    struct buf path = BUF_INIT(4096), raw = BUF_INIT(1024 * 1024);
    json_t *body, *reply = NULL;
    char hash[256];
    int rc;

    body = json_pack("{s:O, s:o}", "bundle", bundle, "dag", dag_to_json_value(d));
    rc = body ? ctl_path(c, &path, "/api/v1/dags/%s", d->dag_id)
              : ctl_fail(c, CTL_EFAIL, "out of memory");
    if (rc == CTL_OK)
        rc = ctl_call(c, "PUT", buf_cstr(&path), body, &reply, &raw);
    if (rc == CTL_OK && c->json) {
        rc = ctl_print_raw(c, &raw);
    } else if (rc == CTL_OK) {
        table_sanitize(hash, sizeof(hash), json_string_value(json_object_get(reply, "hash")));
        printf("pushed %s (hash %s)\n", d->dag_id, hash);
        fflush(stdout);
    }
    json_decref(reply);
    json_decref(body);
    buf_free(&path);
    buf_free(&raw);
    return rc;
}

/* Prints the bulk reply's results: "pushed ID (hash H)" per stored or unchanged DAG, each
 * refused one on stderr (CTL_EFAIL). */
static int bulk_report(struct ctl *c, const struct buf *raw)
{
    json_t *reply = json_loadb(raw->data ? raw->data : "", raw->len, 0, NULL); /* owned */
    json_t *results = json_object_get(reply, "results"), *r;                   /* borrowed */
    char id[256], hash[256], why[512];
    int rc = CTL_OK;
    size_t i;

    if (!json_is_array(results)) {
        json_decref(reply);
        return ctl_fail(c, CTL_EFAIL, "POST /api/v1/dags/bulk: reply without a results array");
    }
    json_array_foreach(results, i, r)
    {
        const char *st = json_string_value(json_object_get(r, "status"));
        table_sanitize(id, sizeof(id), json_string_value(json_object_get(r, "dag_id")));
        if (st && (strcmp(st, "stored") == 0 || strcmp(st, "unchanged") == 0)) {
            table_sanitize(hash, sizeof(hash), json_string_value(json_object_get(r, "hash")));
            printf("pushed %s (hash %s)\n", id, hash);
        } else {
            table_sanitize(why, sizeof(why), json_string_value(json_object_get(r, "error")));
            rc = ctl_fail(c, CTL_EFAIL, "%s: refused by the plane: %s", id[0] ? id : "a DAG",
                          why[0] ? why : "no reason given");
        }
    }
    fflush(stdout);
    json_decref(reply);
    return rc;
}

/*
 * Uploads dags[0..n) with POST /api/v1/dags/bulk, API_DAGS_BULK_MAX per
 * request. *soft: the status of a request the plane refused as a route it
 * lacks (404, 405: a plane older than the bulk route) or as too large (413),
 * for the caller to push the DAGs from first_left on one by one.
 */
static int push_bulk(struct ctl *c, struct dag *const *dags, size_t n, json_t *bundle, int *soft,
                     size_t *first_left)
{
    int rc = CTL_OK;
    *soft = 0;
    for (size_t at = 0; rc == CTL_OK && at < n; at += API_DAGS_BULK_MAX) {
        struct buf raw = BUF_INIT(16u * 1024 * 1024);
        json_t *list = json_array(); /* owned by body once packed */
        for (size_t i = at; list && i < n && i < at + API_DAGS_BULK_MAX; i++)
            if (json_array_append_new(list, dag_to_json_value(dags[i])) != 0) {
                json_decref(list);
                list = NULL;
            }
        json_t *body = list ? json_pack("{s:O, s:o}", "bundle", bundle, "dags", list) : NULL;
        rc = body ? ctl_call_route(c, "POST", "/api/v1/dags/bulk", body, &raw, soft)
                  : ctl_fail(c, CTL_EFAIL, "out of memory");
        json_decref(body);
        if (rc == CTL_OK && *soft) {
            *first_left = at;
            buf_free(&raw);
            return CTL_OK;
        }
        if (rc == CTL_OK)
            rc = c->json ? ctl_print_raw(c, &raw) : bulk_report(c, &raw);
        buf_free(&raw);
    }
    return rc;
}

/* Reads the whole file (dagyaml applies the size cap again). */
static int read_file(struct ctl *c, const char *file, struct buf *out)
{
    FILE *f = fopen(file, "rb");
    char chunk[65536];
    size_t n;

    if (f == NULL)
        return ctl_fail(c, CTL_EFAIL, "%s: %s", file, strerror(errno));
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (buf_append(out, chunk, n) != REMEX_OK) {
            fclose(f);
            return ctl_fail(c, CTL_EFAIL, "%s: larger than %d bytes", file, DAGYAML_FILE_MAX);
        }
    }
    if (ferror(f)) {
        fclose(f);
        return ctl_fail(c, CTL_EFAIL, "%s: cannot read", file);
    }
    fclose(f);
    return CTL_OK;
}

#define PUSH_AGENTS_ASKED 50 /* agents whose bundles a push looks at */

/* Adds the bundle names agent id reports (features.bundles) to served. */
static void agent_bundles(struct ctl *c, json_t *id, json_t *served)
{
    struct buf path = BUF_INIT(256);
    json_t *a = NULL, *b;
    size_t i;

    if (buf_printf(&path, "/api/v1/admin/agents/%" JSON_INTEGER_FORMAT, json_integer_value(id)) ==
            REMEX_OK &&
        ctl_call(c, "GET", buf_cstr(&path), NULL, &a, NULL) == CTL_OK)
        json_array_foreach(json_object_get(json_object_get(a, "features"), "bundles"), i, b)
        {
            if (json_is_string(b))
                json_object_set(served, json_string_value(b), json_true());
        }
    json_decref(a);
    buf_free(&path);
}

/*
 * After a push: when the agents that report their bundles (registration
 * features.bundles) serve none named bundle, says so and which they serve; a
 * push without --bundle that no agent reports on gets a reminder of what a
 * bundle name is for. Only warnings (stderr); the push stands.
 */
static void warn_bundle(struct ctl *c, const char *bundle, int named)
{
    json_t *reply = NULL, *served = json_object(), *a;
    size_t i, asked = 0;
    const char *k;
    json_t *v;

    if (ctl_call(c, "GET", "/api/v1/admin/agents", NULL, &reply, NULL) != CTL_OK) {
        json_decref(served);
        return;
    }
    json_array_foreach(ctl_list(reply, "agents"), i, a)
    {
        const char *st = json_string_value(json_object_get(a, "state"));
        if (asked < PUSH_AGENTS_ASKED && st && strcmp(st, "lost") && strcmp(st, "offline")) {
            agent_bundles(c, json_object_get(a, "agent_id"), served);
            asked++;
        }
    }
    json_decref(reply);
    if (json_object_size(served) > 0 && !json_object_get(served, bundle)) {
        struct buf list = BUF_INIT(4096);
        char safe[256];
        json_object_foreach(served, k, v)
        {
            table_sanitize(safe, sizeof(safe), k);
            buf_printf(&list, "%s%s", list.len ? ", " : "", safe);
        }
        table_sanitize(safe, sizeof(safe), bundle);
        fprintf(stderr,
                "remexctl: dags push: warning: no agent serves bundle '%s' (agents serve: %s); "
                "its tasks wait for one%s\n",
                safe, buf_cstr(&list), named ? "" : "; name the bundle with --bundle NAME");
        buf_free(&list);
    } else if (json_object_size(served) == 0 && !named) {
        fprintf(stderr,
                "remexctl: dags push: warning: no --bundle: the DAGs are recorded in bundle "
                "'%s'; a worker runs a task only from a bundle of that name in its agent.yaml "
                "(bundles:)\n",
                bundle);
    }
    json_decref(served);
}

int cmd_dags_push(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"bundle", required_argument, NULL, 'b'},
        {NULL, 0, NULL, 0},
    };
    const char *bundle_name = "cli", *file;
    int named = 0;
    struct buf data = BUF_INIT(DAGYAML_FILE_MAX);
    struct dagyaml_result res;
    struct remex_error e;
    json_t *bundle = NULL;
    char hex[65], version[80];
    int ch, rc;

    opterr = 0;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch != 'b')
            return ctl_usage(c, "unknown or incomplete option '%s'", argv[optind - 1]);
        bundle_name = optarg;
        named = 1;
    }
    if (optind >= argc)
        return ctl_usage(c, "missing FILE");
    if (optind + 1 < argc)
        return ctl_usage(c, "unexpected argument '%s'", argv[optind + 1]);
    if (bundle_name[0] == '\0')
        return ctl_usage(c, "--bundle: empty");
    file = argv[optind];
    if ((rc = read_file(c, file, &data)) != CTL_OK) {
        buf_free(&data);
        return rc;
    }
    if (dagyaml_parse(buf_cstr(&data), data.len, file, &res, &e) != REMEX_OK) {
        /* One line per diagnostic: FILE:LINE:COL: message. */
        for (size_t i = 0; i < res.ndiags; i++)
            fprintf(stderr, "remexctl: dags push: %s:%u:%u: %s\n", file, res.diags[i].line,
                    res.diags[i].column, res.diags[i].msg);
        rc = res.ndiags ? CTL_EFAIL : ctl_fail(c, CTL_EFAIL, "%s", e.msg);
    } else if (res.ndags == 0) {
        rc = ctl_fail(c, CTL_EFAIL, "%s: no DAG in the file", file);
    } else if (hash_sha256_hex(buf_cstr(&data), data.len, hex) != REMEX_OK) {
        rc = ctl_fail(c, CTL_EFAIL, "out of memory");
    } else {
        snprintf(version, sizeof(version), "sha256:%s", hex);
        bundle = json_pack("{s:s, s:s}", "name", bundle_name, "version", version);
        rc = bundle ? CTL_OK : ctl_fail(c, CTL_EFAIL, "out of memory");
        int soft = 0;
        size_t left = 0;
        if (rc == CTL_OK)
            rc = push_bulk(c, res.dags, res.ndags, bundle, &soft, &left);
        if (rc == CTL_OK && soft && c->verbose)
            fprintf(stderr, "remexctl: dags push: %s; one PUT per DAG\n",
                    soft == 413 ? "the batch is over the plane's body_max"
                                : "the plane has no bulk upload route");
        for (size_t i = left; rc == CTL_OK && soft && i < res.ndags; i++)
            rc = push_one(c, res.dags[i], bundle);
        if (rc == CTL_OK && !c->json)
            warn_bundle(c, bundle_name, named);
    }
    json_decref(bundle);
    dagyaml_result_free(&res);
    buf_free(&data);
    return rc;
}
