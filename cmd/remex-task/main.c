/*
 * remex-task: the task process's client of its worker (REMEX_SOCKET).
 *
 *   remex-task xcom push KEY VALUE|-        (- reads the value from stdin)
 *   remex-task xcom pull [--task T] [--map-index N] KEY
 *   remex-task conn get ID [--field host|login|password|port|schema|extra|uri|conn_type]
 *   remex-task var get KEY
 *   remex-task defer --trigger JSON [--resume-with NAME]
 *
 * Values are printed on stdout followed by a newline (conn get without
 * --field prints the connection as one JSON object).
 * Exit codes: 0 ok, 1 not found, 2 usage, 3 cannot reach the worker
 * (REMEX_SOCKET unset, connect or protocol failure), 4 refused or failed
 * (message on stderr). The protocol is docs/task-protocol.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/ipc.h"

#define EXIT_NOTFOUND 1
#define EXIT_USAGE    2
#define EXIT_CONNECT  3
#define EXIT_REFUSED  4
#define VALUE_MAX     (512 * 1024)

static int usage(void)
{
    fputs("usage: remex-task xcom push KEY VALUE|-\n"
          "       remex-task xcom pull [--task T] [--map-index N] KEY\n"
          "       remex-task conn get ID [--field host|login|password|port|schema|extra|uri]\n"
          "       remex-task var get KEY\n"
          "       remex-task defer --trigger JSON [--resume-with NAME]\n",
          stderr);
    return EXIT_USAGE;
}

/* Sends req (stolen), stores the reply in *rep; returns an exit code. */
static int call(json_t *req, json_t **rep)
{
    const char *path = getenv("REMEX_SOCKET");
    struct remex_error e;
    int fd = -1, code = 0;
    if (!req)
        return EXIT_USAGE;
    if (!path || !*path) {
        fputs("remex-task: REMEX_SOCKET is not set (not running under remex-worker?)\n", stderr);
        code = EXIT_CONNECT;
    } else if (ipc_connect(path, &fd, &e) != REMEX_OK || ipc_send(fd, req, &e) != REMEX_OK ||
               ipc_recv(fd, rep, 120000, &e) != REMEX_OK) {
        fprintf(stderr, "remex-task: %s\n", e.msg);
        code = EXIT_CONNECT;
    }
    if (fd >= 0)
        close(fd);
    json_decref(req);
    if (code)
        return code;
    if (json_is_true(json_object_get(*rep, "ok")))
        return 0;
    json_t *err = json_object_get(*rep, "error");
    const char *c = json_string_value(json_object_get(err, "code"));
    const char *m = json_string_value(json_object_get(err, "message"));
    fprintf(stderr, "remex-task: %s\n", m ? m : "request failed");
    return c && strcmp(c, "not_found") == 0 ? EXIT_NOTFOUND : EXIT_REFUSED;
}

static void print_value(json_t *v)
{
    if (json_is_string(v)) {
        fwrite(json_string_value(v), 1, json_string_length(v), stdout);
    } else if (json_is_integer(v)) {
        printf("%lld", (long long)json_integer_value(v));
    } else if (v && !json_is_null(v)) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fputs(s ? s : "", stdout);
        free(s);
    }
    putchar('\n');
}

static int xcom(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[0], "push") == 0 && argc == 3) {
        json_t *val;
        if (strcmp(argv[2], "-") == 0) {
            static char b[VALUE_MAX + 1];
            size_t n = fread(b, 1, sizeof(b), stdin);
            if (n > VALUE_MAX) {
                fputs("remex-task: value over 512 KiB\n", stderr);
                return EXIT_USAGE;
            }
            val = json_stringn(b, n);
        } else {
            val = json_string(argv[2]);
        }
        if (!val) {
            fputs("remex-task: value must be UTF-8 text\n", stderr);
            return EXIT_USAGE;
        }
        json_t *rep = NULL;
        int rc =
            call(json_pack("{s:s,s:s,s:o}", "op", "xcom.push", "key", argv[1], "value", val), &rep);
        json_decref(rep);
        return rc;
    }
    if (argc >= 2 && strcmp(argv[0], "pull") == 0) {
        const char *task = NULL, *key = NULL;
        long long mi = -1;
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--task") == 0 && i + 1 < argc)
                task = argv[++i];
            else if (strcmp(argv[i], "--map-index") == 0 && i + 1 < argc)
                mi = strtoll(argv[++i], NULL, 10);
            else if (!key && argv[i][0] != '-')
                key = argv[i];
            else
                return usage();
        }
        if (!key)
            return usage();
        json_t *req =
            json_pack("{s:s,s:s,s:I}", "op", "xcom.pull", "key", key, "map_index", (json_int_t)mi);
        if (req && task)
            json_object_set_new(req, "task_id", json_string(task));
        json_t *rep = NULL;
        int rc = call(req, &rep);
        if (rc == 0)
            print_value(json_object_get(rep, "value"));
        json_decref(rep);
        return rc;
    }
    return usage();
}

static int conn(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[0], "get") != 0)
        return usage();
    const char *field = NULL;
    if (argc == 4 && strcmp(argv[2], "--field") == 0)
        field = argv[3];
    else if (argc != 2)
        return usage();
    json_t *rep = NULL;
    int rc = call(json_pack("{s:s,s:s}", "op", "conn.get", "conn_id", argv[1]), &rep);
    if (rc == 0) {
        json_t *c = json_object_get(rep, "conn");
        if (field && !json_object_get(c, field) &&
            !strstr(" conn_type host login password port "
                    "schema extra uri ",
                    field)) {
            fprintf(stderr, "remex-task: unknown field '%s'\n", field);
            rc = EXIT_USAGE;
        } else {
            print_value(field ? json_object_get(c, field) : c);
        }
    }
    json_decref(rep);
    return rc;
}

static int var(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[0], "get") != 0)
        return usage();
    json_t *rep = NULL;
    int rc = call(json_pack("{s:s,s:s}", "op", "var.get", "key", argv[1]), &rep);
    if (rc == 0)
        print_value(json_object_get(rep, "value"));
    json_decref(rep);
    return rc;
}

static int defer(int argc, char **argv)
{
    const char *trig = NULL, *resume = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--trigger") == 0 && i + 1 < argc)
            trig = argv[++i];
        else if (strcmp(argv[i], "--resume-with") == 0 && i + 1 < argc)
            resume = argv[++i];
        else
            return usage();
    }
    if (!trig)
        return usage();
    json_error_t je;
    json_t *t = json_loads(trig, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(t)) {
        fprintf(stderr, "remex-task: --trigger: expected a JSON object (%s)\n", je.text);
        json_decref(t);
        return EXIT_USAGE;
    }
    json_t *req = json_pack("{s:s,s:o}", "op", "defer", "trigger", t);
    if (req && resume)
        json_object_set_new(req, "resume_with", json_string(resume));
    json_t *rep = NULL;
    int rc = call(req, &rep);
    json_decref(rep);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "xcom") == 0)
        return xcom(argc - 2, argv + 2);
    if (strcmp(argv[1], "conn") == 0)
        return conn(argc - 2, argv + 2);
    if (strcmp(argv[1], "var") == 0)
        return var(argc - 2, argv + 2);
    if (strcmp(argv[1], "defer") == 0)
        return defer(argc - 2, argv + 2);
    return usage();
}
