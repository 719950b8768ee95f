/*
 * remexctl: command-line client of remex-plane's admin API.
 *
 *   remexctl [--plane URL] [--token-file F] [--ca-file F] [--insecure-http]
 *            [-o table|json] COMMAND [SUBCOMMAND] [ARGS...]
 *
 * Exit codes: see enum ctl_exit in ctl.h (documented in docs/remexctl.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "remex/cfg.h"
#include "remex/version.h"

static int cmd_completion(struct ctl *c, int argc, char **argv);

const struct ctl_cmd ctl_cmds[] = {
    {"tokens", "create", "--name NAME [--expires DURATION] [--roles R,...] [--queues Q,...]",
     "create an agent token",
     "  --name NAME          token name (shown in lists)\n"
     "  --expires DURATION   lifetime, e.g. 30d, 12h, 1d12h (default 30d)\n"
     "  --roles R,...        roles its agents may register: worker, dag-processor,\n"
     "                       triggerer, sentinel (default: all)\n"
     "  --queues Q,...       queues its workers may serve (default: every queue)\n"
     "The token value is printed once on stdout; the plane keeps only its hash.\n",
     cmd_tokens_create},
    {"tokens", "list", "", "list agent tokens (never their values)", NULL, cmd_tokens_list},
    {"tokens", "revoke", "ID", "revoke an agent token (its sessions end at once)", NULL,
     cmd_tokens_revoke},
    {"agents", "list", "", "list agents", NULL, cmd_agents_list},
    {"agents", "show", "NAME_OR_ID", "show an agent with its last health report", NULL,
     cmd_agents_show},
    {"agents", "drain", "NAME_OR_ID", "ask an agent to take no new work (running tasks finish)",
     "The agent stays registered; the plane gives it no new task instances or triggers\n"
     "until 'agents resume'. The desired state survives plane restarts.\n",
     cmd_agents_drain},
    {"agents", "maintenance", "NAME_OR_ID", "put an agent in maintenance (no new work, as drain)",
     NULL, cmd_agents_maintenance},
    {"agents", "resume", "NAME_OR_ID", "let a drained or maintenance agent take work again", NULL,
     cmd_agents_resume},
    {"agents", "delete", "NAME_OR_ID", "forget a lost or offline agent", NULL, cmd_agents_delete},
    {"dags", "list", "", "list DAGs", NULL, cmd_dags_list},
    {"dags", "show", "DAG", "show a DAG and its tasks", NULL, cmd_dags_show},
    {"dags", "push", "FILE.yaml [--bundle NAME]", "upload the DAGs of a YAML DAG file",
     "  --bundle NAME   bundle name recorded with the DAGs (default \"cli\"); the\n"
     "                  version is the SHA-256 of the file\n"
     "Errors in the file are reported as FILE:LINE:COL: message.\n",
     cmd_dags_push},
    {"dags", "delete", "DAG", "delete a DAG with its runs (none may be queued or running)",
     "A DAG still in a bundle comes back with the next manifest or push.\n", cmd_dags_delete},
    {"dags", "backfill", "DAG --from T --to T", "create the scheduled runs of a past period",
     "  --from T   first logical date (RFC 3339 or YYYY-MM-DD), included\n"
     "  --to T     last logical date, included\n"
     "One manual run per schedule time, run id backfill__<logical date>.\n",
     cmd_dags_backfill},
    {"dags", "pause", "DAG", "pause a DAG (no new scheduled runs)", NULL, cmd_dags_pause},
    {"dags", "unpause", "DAG", "unpause a DAG", NULL, cmd_dags_unpause},
    {"dags", "trigger", "DAG [--conf JSON] [--logical-date T] [--run-id R] [--wait]",
     "trigger a manual DAG run",
     "  --conf JSON          run configuration, a JSON object\n"
     "  --logical-date T     RFC 3339 logical date (default: now)\n"
     "  --run-id R           run id (default: chosen by the plane)\n"
     "  --wait               wait for the run to finish; exit 0 on success, 1 on failure\n"
     "  --timeout DURATION   with --wait: give up after DURATION (exit 1)\n"
     "  --interval DURATION  with --wait: poll interval (default 500ms)\n"
     "On a terminal --wait redraws one progress line:\n"
     "  run R: 3/6 done, 1 running, 0 failed\n",
     cmd_dags_trigger},
    {"runs", "list", "DAG", "list the runs of a DAG", NULL, cmd_runs_list},
    {"runs", "show", "DAG RUN", "show a run and its task instances", NULL, cmd_runs_show},
    {"runs", "cancel", "DAG RUN", "cancel a queued or running run (it ends failed)",
     "Running task instances are stopped and failed, the others skipped.\n", cmd_runs_cancel},
    {"runs", "clear", "DAG RUN", "clear every task instance of a run so that it runs again", NULL,
     cmd_runs_clear},
    {"tasks", "list", "DAG RUN", "list the task instances of a run", NULL, cmd_tasks_list},
    {"tasks", "clear", "DAG RUN TASK [--downstream]", "clear a task instance so that it runs again",
     "  --downstream   clear the tasks downstream of TASK as well\n", cmd_tasks_clear},
    {"tasks", "mark", "success|failed DAG RUN TASK", "mark a task instance success or failed",
     "A running try is stopped; its run is evaluated again (downstream tasks follow).\n",
     cmd_tasks_mark},
    {"tasks", "fail", "DAG RUN TASK", "mark a task instance failed (as tasks mark failed)", NULL,
     cmd_tasks_fail},
    {"tasks", "logs", "DAG RUN TASK [--try N] [--follow]",
     "print a task's log, or where it is when not readable here",
     "Task logs stay on the agent's side: the plane knows where a log is\n"
     "(log_uri). A file:// log readable from this machine is printed; an s3://,\n"
     "az:// or gs:// log is read with your own credentials (AWS_ACCESS_KEY_ID,\n"
     "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL;\n"
     "AZURE_STORAGE_KEY, AZURE_STORAGE_ENDPOINT; GOOGLE_APPLICATION_CREDENTIALS).\n"
     "  --try N      the log of try N (default: the current try)\n"
     "  --follow     print a running try's log as it grows, until the try ends\n",
     cmd_tasks_logs},
    {"pools", "list", "", "list pools with their occupied, queued and open slots", NULL,
     cmd_pools_list},
    {"pools", "set", "NAME SLOTS [--description TEXT]", "create or resize a pool",
     "Task instances of a pool (the DAG task key pool:, default default_pool)\n"
     "share its slots, each taking its pool_slots while offered or running,\n"
     "across DAGs, runs and agents. default_pool starts unbounded (1000000).\n",
     cmd_pools_set},
    {"pools", "delete", "NAME", "delete a pool (its task instances wait until it exists)", NULL,
     cmd_pools_delete},
    {"import-errors", NULL, "", "list DAG files that failed to parse", NULL, cmd_import_errors},
    {"db", "clean", "--older-than DURATION [--dry-run]",
     "delete finished runs that ended longer ago, with their task instances",
     "  --older-than D  e.g. 30d: runs that ended before now minus D\n"
     "  --dry-run       count what would be deleted, delete nothing\n"
     "Kept: runs not finished, and the latest scheduled run of each DAG.\n"
     "The plane deletes in bounded slices; remexctl calls it until none is left.\n",
     cmd_db_clean},
    {"completion", NULL, "bash|zsh", "print a shell completion script",
     "  bash:  source <(remexctl completion bash)   (or save it in\n"
     "         /etc/bash_completion.d/remexctl)\n"
     "  zsh:   source <(remexctl completion zsh)\n",
     cmd_completion},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

static const char MAIN_HELP[] =
    "usage: remexctl [OPTIONS] COMMAND [SUBCOMMAND] [ARGS...]\n"
    "\n"
    "Command-line client of remex-plane.\n"
    "\n"
    "Options:\n"
    "  --plane URL          plane base URL (env REMEX_PLANE_URL, default " CTL_DEFAULT_PLANE ")\n"
    "  --token-file FILE    admin token file, mode 0600 or stricter\n"
    "                       (else env REMEX_ADMIN_TOKEN, then REMEX_ADMIN_TOKEN_FILE)\n"
    "  --ca-file FILE       CA bundle for verifying the plane's TLS certificate\n"
    "  --insecure-http      allow plain http:// to a non-loopback plane\n"
    "  -o, --output FORMAT  table (default), wide (every column), json (the plane's\n"
    "                       reply as is) or yaml; accepted anywhere on the line\n"
    "  -v, --verbose        with a refusal, also print the HTTP request and status\n"
    "  -h, --help           this help; COMMAND --help for a command's\n"
    "  --version            print the version\n";

static const char EXIT_HELP[] =
    "Exit codes:\n"
    "  0  success\n"
    "  1  the plane refused the request (not found, conflict, ...) or the run failed\n"
    "  2  usage error or bad local configuration (token file, URL)\n"
    "  3  the plane cannot be reached (connection, timeout, TLS)\n"
    "  4  the plane rejected the admin token\n";

static void vmsg(const struct ctl *c, const char *fmt, va_list ap)
{
    fputs("remexctl: ", stderr);
    if (c != NULL && c->cmd != NULL)
        fprintf(stderr, "%s: ", c->cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int ctl_usage(const struct ctl *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg(c, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'remexctl %s%s--help'.\n", c && c->cmd ? c->cmd : "",
            c && c->cmd ? " " : "");
    return CTL_EUSAGE;
}

int ctl_fail(const struct ctl *c, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg(c, fmt, ap);
    va_end(ap);
    return code;
}

int ctl_positional(const struct ctl *c, int argc, char **argv, int want, const char *what)
{
    int i;

    for (i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1] != '\0' && strcmp(argv[i], "--") != 0)
            return ctl_usage(c, "unknown option '%s'", argv[i]);
    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "--") == 0) {
            memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof(char *));
            argc--;
            break;
        }
    if (argc - 1 < want)
        return ctl_usage(c, "missing %s", what);
    if (argc - 1 > want)
        return ctl_usage(c, "unexpected argument '%s'", argv[want + 1]);
    return CTL_OK;
}

static void print_cmd_usage(FILE *f, const struct ctl_cmd *k)
{
    fprintf(f, "usage: remexctl %s%s%s%s%s\n", k->group, k->name ? " " : "", k->name ? k->name : "",
            k->args[0] ? " " : "", k->args);
}

static void print_main_help(void)
{
    const struct ctl_cmd *k;
    char words[64];

    int w = 0;

    for (k = ctl_cmds; k->group; k++) {
        int n = snprintf(words, sizeof(words), "%s%s%s", k->group, k->name ? " " : "",
                         k->name ? k->name : "");
        w = n > w ? n : w;
    }
    fputs(MAIN_HELP, stdout);
    fputs("\nCommands:\n", stdout);
    for (k = ctl_cmds; k->group; k++) {
        snprintf(words, sizeof(words), "%s%s%s", k->group, k->name ? " " : "",
                 k->name ? k->name : "");
        printf("  %-*s  %s\n", w, words, k->summary);
    }
    fputs("\n", stdout);
    fputs(EXIT_HELP, stdout);
}

static void print_group_help(const char *group)
{
    const struct ctl_cmd *k;

    int wn = 0, wa = 0;

    for (k = ctl_cmds; k->group; k++)
        if (strcmp(k->group, group) == 0 && k->name) {
            wn = (int)strlen(k->name) > wn ? (int)strlen(k->name) : wn;
            wa = (int)strlen(k->args) > wa ? (int)strlen(k->args) : wa;
        }
    printf("usage: remexctl %s SUBCOMMAND ...\n\nSubcommands:\n", group);
    for (k = ctl_cmds; k->group; k++)
        if (strcmp(k->group, group) == 0 && k->name)
            printf("  %-*s  %-*s  %s\n", wn, k->name, wa, k->args, k->summary);
    printf("\nRun 'remexctl %s SUBCOMMAND --help' for details.\n", group);
}

static void print_cmd_help(const struct ctl_cmd *k)
{
    print_cmd_usage(stdout, k);
    printf("\n%s.\n", k->summary);
    if (k->help)
        printf("\n%s", k->help);
    printf("\nGlobal options (before COMMAND) are listed by 'remexctl --help'.\n\n%s", EXIT_HELP);
}

/* 1 when argv holds -h or --help before any "--". */
static int wants_help(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return 0;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    }
    return 0;
}

static int group_known(const char *g)
{
    const struct ctl_cmd *k;

    for (k = ctl_cmds; k->group; k++)
        if (strcmp(k->group, g) == 0)
            return 1;
    return 0;
}

/* Edit distance of a and b (both short), capped at 9. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[33], cur[33];

    if (la > 32 || lb > 32)
        return 9;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(cur));
    }
    return prev[lb] > 9 ? 9 : prev[lb];
}

/* The known group (group == NULL) or subcommand of group closest to word,
 * when close enough to be a typo; NULL otherwise. */
static const char *suggest(const char *group, const char *word)
{
    const struct ctl_cmd *k;
    const char *best = NULL;
    size_t bd = 3;

    for (k = ctl_cmds; k->group; k++) {
        const char *cand = group ? k->name : k->group;
        size_t d;
        if (cand == NULL || (group && strcmp(k->group, group) != 0))
            continue;
        d = distance(word, cand);
        if (d < bd || (strncmp(cand, word, strlen(word)) == 0 && strlen(word) >= 2 && bd > 1)) {
            bd = d < bd ? d : 1;
            best = cand;
        }
    }
    return best;
}

/* Finds and runs the command at argv[0..]. */
static int dispatch(struct ctl *c, int argc, char **argv)
{
    static char cmdname[64];
    const struct ctl_cmd *k;
    const char *sub = argc > 1 ? argv[1] : NULL;

    if (!group_known(argv[0])) {
        const char *s = suggest(NULL, argv[0]);
        if (s)
            return ctl_usage(c, "unknown command '%s'; did you mean '%s'?", argv[0], s);
        return ctl_usage(c, "unknown command '%s'", argv[0]);
    }
    for (k = ctl_cmds; k->group; k++) {
        if (strcmp(k->group, argv[0]) != 0)
            continue;
        if (k->name == NULL || (sub != NULL && strcmp(k->name, sub) == 0))
            break;
    }
    if (k->group == NULL) {
        c->cmd = argv[0];
        if (sub == NULL || strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
            if (sub == NULL) {
                print_group_help(argv[0]);
                return ctl_usage(c, "missing subcommand");
            }
            print_group_help(argv[0]);
            return CTL_OK;
        }
        if (suggest(argv[0], sub))
            return ctl_usage(c, "unknown subcommand '%s'; did you mean '%s %s'?", sub, argv[0],
                             suggest(argv[0], sub));
        return ctl_usage(c, "unknown subcommand '%s'", sub);
    }
    snprintf(cmdname, sizeof(cmdname), "%s%s%s", k->group, k->name ? " " : "",
             k->name ? k->name : "");
    c->cmd = cmdname;
    if (k->name != NULL) {
        argc--;
        argv++;
    }
    if (wants_help(argc, argv)) {
        print_cmd_help(k);
        return CTL_OK;
    }
    return k->fn(c, argc, argv);
}

/* Reads the admin token from path into c->token. */
static int read_token_file(struct ctl *c, const char *path)
{
    struct remex_error e;
    struct stat st;
    char *v = NULL;
    size_t len = 0;
    remex_err rc = cfg_secret_read_file(path, sizeof(c->token) - 2, &v, &len, &st, &e);

    if (rc == REMEX_EPERM && S_ISREG(st.st_mode) && (st.st_mode & 077))
        return ctl_fail(c, CTL_EUSAGE,
                        "token file %s is accessible by group or others (mode %04o); "
                        "run: chmod 600 %s",
                        path, (unsigned)(st.st_mode & 07777), path);
    if (rc != REMEX_OK)
        return ctl_fail(c, CTL_EUSAGE, "token file %s", e.msg);
    while (len > 0 &&
           (v[len - 1] == '\n' || v[len - 1] == '\r' || v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    memcpy(c->token, v, len);
    c->token[len] = '\0';
    cfg_secret_free(v);
    return CTL_OK;
}

int ctl_load_token(struct ctl *c)
{
    const char *v = getenv("REMEX_ADMIN_TOKEN");
    const char *f = c->token_file;
    const char *saved = c->cmd;
    size_t i;
    int rc = CTL_OK;

    c->cmd = NULL;
    if (f == NULL && v != NULL && v[0] != '\0') {
        if (strlen(v) >= sizeof(c->token))
            rc = ctl_fail(c, CTL_EUSAGE, "REMEX_ADMIN_TOKEN: too long");
        else
            memcpy(c->token, v, strlen(v) + 1);
    } else {
        if (f == NULL)
            f = getenv("REMEX_ADMIN_TOKEN_FILE");
        if (f == NULL || f[0] == '\0')
            rc = ctl_fail(c, CTL_EUSAGE,
                          "no admin token: use --token-file FILE, REMEX_ADMIN_TOKEN or "
                          "REMEX_ADMIN_TOKEN_FILE");
        else
            rc = read_token_file(c, f);
    }
    for (i = 0; rc == CTL_OK && c->token[i]; i++)
        if ((unsigned char)c->token[i] < 0x21 || (unsigned char)c->token[i] == 0x7F)
            rc = ctl_fail(c, CTL_EUSAGE, "admin token holds spaces or control characters");
    if (rc == CTL_OK && c->token[0] == '\0')
        rc = ctl_fail(c, CTL_EUSAGE, "admin token is empty");
    c->cmd = saved;
    return rc;
}

/* -o FORMAT: table, wide, json or yaml. */
static int set_output(struct ctl *c, const char *f)
{
    if (strcmp(f, "table") && strcmp(f, "wide") && strcmp(f, "json") && strcmp(f, "yaml"))
        return ctl_usage(c, "-o: expected table, wide, json or yaml, not '%s'", f);
    c->json = strcmp(f, "json") == 0 || strcmp(f, "yaml") == 0;
    c->yaml = strcmp(f, "yaml") == 0;
    c->wide = strcmp(f, "wide") == 0;
    return CTL_OK;
}

/* Takes -o FORMAT, -oFORMAT, --output FORMAT and --output=FORMAT from
 * anywhere on the line before "--" (so "dags list -o json" works), and
 * removes them from argv. Returns CTL_OK or the usage exit code. */
static int take_output(struct ctl *c, int *argc, char **argv)
{
    int i = 1;

    while (i < *argc && strcmp(argv[i], "--") != 0) {
        const char *a = argv[i], *v = NULL;
        int used = 0;

        if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (i + 1 >= *argc)
                return ctl_usage(c, "%s needs an argument", a);
            v = argv[i + 1];
            used = 2;
        } else if (strncmp(a, "--output=", 9) == 0) {
            v = a + 9;
            used = 1;
        } else if (strncmp(a, "-o", 2) == 0 && a[2] != '\0') {
            v = a + 2;
            used = 1;
        }
        if (!used) {
            i++;
            continue;
        }
        if (set_output(c, v) != CTL_OK)
            return CTL_EUSAGE;
        memmove(&argv[i], &argv[i + used], (size_t)(*argc - i - used + 1) * sizeof(char *));
        *argc -= used;
    }
    return CTL_OK;
}

/* Global options; returns the index of COMMAND in argv or -exit code. */
static int parse_global(struct ctl *c, int argc, char **argv)
{
    enum { O_PLANE = 256, O_TOKEN_FILE, O_CA_FILE, O_INSECURE, O_VERSION };
    static const struct option opts[] = {
        {"plane", required_argument, NULL, O_PLANE},
        {"token-file", required_argument, NULL, O_TOKEN_FILE},
        {"ca-file", required_argument, NULL, O_CA_FILE},
        {"insecure-http", no_argument, NULL, O_INSECURE},
        {"output", required_argument, NULL, 'o'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    int ch;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+o:hv", opts, NULL)) != -1) {
        switch (ch) {
        case O_PLANE:
            c->plane = optarg;
            break;
        case O_TOKEN_FILE:
            c->token_file = optarg;
            break;
        case O_CA_FILE:
            c->ca_file = optarg;
            break;
        case O_INSECURE:
            c->insecure_http = 1;
            break;
        case 'o':
            if (set_output(c, optarg) != CTL_OK)
                return -CTL_EUSAGE;
            break;
        case 'v':
            c->verbose = 1;
            break;
        case 'h':
            print_main_help();
            return -CTL_OK - 1000;
        case O_VERSION:
            printf("remexctl %s\n", REMEX_VERSION);
            return -CTL_OK - 1000;
        default:
            if (optopt != 0 && strchr("o", optopt))
                return -ctl_usage(c, "option '-%c' needs an argument", optopt);
            return -ctl_usage(c, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    return optind;
}

int main(int argc, char **argv)
{
    struct ctl c;
    const char *env_plane = getenv("REMEX_PLANE_URL");
    int first, rc;

    memset(&c, 0, sizeof(c));
    c.plane = env_plane && env_plane[0] ? env_plane : CTL_DEFAULT_PLANE;
    if ((rc = take_output(&c, &argc, argv)) != CTL_OK)
        return rc;
    first = parse_global(&c, argc, argv);
    if (first <= -1000)
        return CTL_OK;
    if (first < 0)
        return -first;
    if (first >= argc) {
        fputs(MAIN_HELP, stderr);
        return ctl_usage(&c, "missing command");
    }
    if (strcmp(argv[first], "help") == 0) {
        print_main_help();
        return CTL_OK;
    }
    rc = dispatch(&c, argc - first, argv + first);
    ctl_close(&c);
    return rc;
}

/* Words of the command table for completion: the groups (group == NULL) or
 * the subcommands of group, space-separated. */
static void words_of(const char *group, char *out, size_t n)
{
    const struct ctl_cmd *k, *j;
    size_t o = 0;

    out[0] = '\0';
    for (k = ctl_cmds; k->group; k++) {
        const char *w = group ? k->name : k->group;
        int seen = 0;
        if (!w || (group && strcmp(k->group, group) != 0))
            continue;
        for (j = ctl_cmds; j < k && !group; j++)
            seen |= strcmp(j->group, w) == 0;
        if (!seen && o + strlen(w) + 2 < n)
            o += (size_t)snprintf(out + o, n - o, "%s%s", o ? " " : "", w);
    }
}

static int cmd_completion(struct ctl *c, int argc, char **argv)
{
    const struct ctl_cmd *k;
    char words[1024];
    int rc = ctl_positional(c, argc, argv, 1, "the shell (bash or zsh)");

    if (rc != CTL_OK)
        return rc;
    if (strcmp(argv[1], "bash") != 0 && strcmp(argv[1], "zsh") != 0)
        return ctl_usage(c, "expected bash or zsh, not '%s'", argv[1]);
    if (strcmp(argv[1], "zsh") == 0)
        printf("# remexctl completion for zsh (bash's, through bashcompinit)\n"
               "autoload -U +X bashcompinit && bashcompinit\n");
    else
        printf("# remexctl completion for bash\n");
    words_of(NULL, words, sizeof(words));
    printf("_remexctl() {\n"
           "    local cur=\"${COMP_WORDS[COMP_CWORD]}\" i n=0 group=\n"
           "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
           "        case \"${COMP_WORDS[i]}\" in\n"
           "        --plane|--token-file|--ca-file|-o|--output) ((i++)) ;;\n"
           "        -*) ;;\n"
           "        *) ((n++)); [ $n -eq 1 ] && group=\"${COMP_WORDS[i]}\" ;;\n"
           "        esac\n"
           "    done\n"
           "    case \"${COMP_WORDS[COMP_CWORD-1]}\" in\n"
           "    -o|--output) COMPREPLY=($(compgen -W \"table wide json yaml\" -- \"$cur\")); "
           "return ;;\n"
           "    --token-file|--ca-file) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
           "    esac\n"
           "    if [ $n -eq 0 ]; then\n"
           "        COMPREPLY=($(compgen -W \"%s --plane --token-file --ca-file --insecure-http"
           " -o --output -v --verbose --help --version\" -- \"$cur\"))\n"
           "        return\n"
           "    fi\n"
           "    if [ $n -eq 1 ]; then\n"
           "        case \"$group\" in\n",
           words);
    for (k = ctl_cmds; k->group; k++) {
        if (!k->name || (k != ctl_cmds && k[-1].group && strcmp(k[-1].group, k->group) == 0))
            continue;
        words_of(k->group, words, sizeof(words));
        printf("        %s) COMPREPLY=($(compgen -W \"%s --help\" -- \"$cur\")) ;;\n", k->group,
               words);
    }
    printf("        completion) COMPREPLY=($(compgen -W \"bash zsh\" -- \"$cur\")) ;;\n"
           "        esac\n"
           "        return\n"
           "    fi\n"
           "    case \"$cur\" in\n"
           "    -*) COMPREPLY=($(compgen -W \"--help --wait --conf --timeout --bundle --downstream"
           " --name --expires --roles --queues\" -- \"$cur\")) ;;\n"
           "    *) COMPREPLY=($(compgen -f -- \"$cur\")) ;;\n"
           "    esac\n"
           "}\n"
           "complete -F _remexctl remexctl\n");
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
}
