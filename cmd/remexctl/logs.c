/*
 * remexctl tasks logs: prints a try's log from where the agent put it. The
 * plane only knows the location (log_uri): a file:// log is read when this
 * machine can (co-located), an s3://, az:// or gs:// log from object storage
 * with the caller's own credentials (AWS_*, AZURE_STORAGE_*,
 * GOOGLE_APPLICATION_CREDENTIALS environment, as the SDKs read them).
 * --follow prints a running try's log as it grows and returns once the try
 * ended, finishing with the stored copy when the worker uploaded one.
 * Logs are streamed in bounded memory whatever their size: a stored log is
 * downloaded (objstore_get_file, the store's MD5 checked) into an unlinked
 * temporary file under $TMPDIR (else /tmp), then copied to stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "remex/objstore.h"

#define FOLLOW_POLL_MS 500

static int ended(const char *state)
{
    static const char *const live[] = {"running", "queued",     "scheduled", "deferred",
                                       "none",    "restarting", NULL};
    if (!state)
        return 0;
    for (size_t i = 0; live[i]; i++)
        if (strcmp(state, live[i]) == 0)
            return 0;
    return 1;
}

/* The try (number want, 0: the current one) of the task instance reply (borrowed). */
static json_t *pick_try(json_t *ti, long want)
{
    json_t *tries = json_object_get(ti, "tries"), *t, *last = NULL;
    size_t i;
    json_array_foreach(tries, i, t)
    {
        if (want && json_integer_value(json_object_get(t, "try_number")) == want)
            return t;
        last = t;
    }
    return want ? NULL : last;
}

/* The task instance with its tries; check_run first asks for the run (clearer errors). */
static int fetch_ti(struct ctl *c, char **argv, int check_run, json_t **reply)
{
    struct buf path = BUF_INIT(4096);
    json_t *run = NULL;
    int rc =
        check_run ? ctl_path(c, &path, "/api/v1/admin/dags/%s/runs/%s", argv[0], argv[1]) : CTL_OK;
    if (rc == CTL_OK && check_run)
        rc = ctl_call(c, "GET", buf_cstr(&path), NULL, &run, NULL);
    json_decref(run);
    buf_reset(&path);
    if (rc == CTL_OK)
        rc =
            ctl_path(c, &path, "/api/v1/admin/dags/%s/runs/%s/tasks/%s", argv[0], argv[1], argv[2]);
    if (rc == CTL_OK)
        rc = ctl_call(c, "GET", buf_cstr(&path), NULL, reply, NULL);
    buf_free(&path);
    return rc;
}

/* Copies fd's bytes from offset *printed to its end onto stdout; *printed advances. Bounded
 * memory (one chunk). REMEX_EIO names what failed: "reading" (the log) or "writing" (stdout). */
static remex_err emit_fd(int fd, uint64_t *printed, const char *what, struct remex_error *e)
{
    char chunk[65536];
    ssize_t n;
    if (lseek(fd, (off_t)*printed, SEEK_SET) < 0)
        return remex_errno(e, REMEX_EIO, "reading %s", what);
    for (;;) {
        n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return remex_errno(e, REMEX_EIO, "reading %s", what);
        if (n == 0)
            break;
        if (fwrite(chunk, 1, (size_t)n, stdout) != (size_t)n)
            return remex_seterr(e, REMEX_ESYS, "writing output failed");
        *printed += (uint64_t)n;
    }
    return fflush(stdout) == 0 ? REMEX_OK : remex_seterr(e, REMEX_ESYS, "writing output failed");
}

/* Downloads the object at uri (s3://, az://, gs://) into a private temporary file (unlinked
 * at once: it goes with *fd) with objstore_get_file, in bounded memory; the store's MD5 is
 * checked on the way. */
static remex_err fetch_object(const char *uri, int *fd, struct remex_error *e)
{
    char store[OBJSTORE_URI_MAX], back[OBJSTORE_URI_MAX], dir[4096], path[4200];
    const char *p = uri + 5, *tmp = getenv("TMPDIR");
    struct objstore *s = NULL;
    remex_err rc;
    int parts = strncmp(uri, "az://", 5) == 0 ? 2 : 1; /* account/container, or bucket */
    for (int i = 0; i < parts && p; i++)
        p = strchr(p + 1, '/');
    if (!p || !p[1] || (size_t)(p - uri) >= sizeof(store))
        return remex_seterr(e, REMEX_EINVAL, "malformed log location");
    memcpy(store, uri, (size_t)(p - uri));
    store[p - uri] = '\0';
    if ((rc = objstore_open(store, &s, e)) != REMEX_OK)
        return rc;
    objstore_uri(s, p + 1, back, sizeof(back));
    if (strcmp(back, uri) != 0) {
        objstore_close(s);
        return remex_seterr(e, REMEX_EINVAL, "malformed log location");
    }
    snprintf(dir, sizeof(dir), "%s/remexctl-log-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        objstore_close(s);
        return remex_errno(e, REMEX_EIO, "temporary folder in %s", tmp && *tmp ? tmp : "/tmp");
    }
    snprintf(path, sizeof(path), "%s/log", dir);
    rc = objstore_get_file(s, p + 1, path, NULL, NULL, e);
    objstore_close(s);
    if (rc == REMEX_OK && (*fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        rc = remex_errno(e, REMEX_EIO, "%s", path);
    unlink(path);
    rmdir(dir);
    return rc;
}

/*
 * Prints the log at uri from offset *printed to its end, streamed (bounded memory):
 * a file:// log read in place, a stored one fetched to a temporary file first.
 * REMEX_EUNSUPPORTED for a location this machine cannot read; REMEX_ESYS when
 * stdout failed (the other errors are the log's).
 */
static remex_err print_log(const char *uri, uint64_t *printed, struct remex_error *e)
{
    int fd = -1;
    remex_err rc;
    if (strncmp(uri, "file://", 7) == 0) {
        if ((fd = open(uri + 7, O_RDONLY | O_CLOEXEC)) < 0)
            return remex_errno(e, errno == ENOENT ? REMEX_ENOTFOUND : REMEX_EIO, "%s", uri + 7);
    } else if (strncmp(uri, "s3://", 5) != 0 && strncmp(uri, "az://", 5) != 0 &&
               strncmp(uri, "gs://", 5) != 0) {
        return remex_seterr(e, REMEX_EUNSUPPORTED, "no reader for this location");
    } else if ((rc = fetch_object(uri, &fd, e)) != REMEX_OK) {
        return rc;
    }
    rc = emit_fd(fd, printed, uri, e);
    close(fd);
    return rc;
}

/* Prints the log of one try once (no follow). */
static int print_once(struct ctl *c, json_t *t)
{
    const char *uri = json_string_value(json_object_get(t, "log_uri"));
    struct remex_error e;
    uint64_t printed = 0;
    remex_err r;
    if (!uri) {
        char s[64];
        return ctl_fail(c, CTL_EFAIL, "try %lld has no log yet (state %s)",
                        (long long)json_integer_value(json_object_get(t, "try_number")),
                        ctl_field(t, "state", s, sizeof(s)));
    }
    if ((r = print_log(uri, &printed, &e)) == REMEX_OK)
        return CTL_OK;
    if (r == REMEX_ESYS)
        return ctl_fail(c, CTL_EFAIL, "%s", e.msg);
    if (printed > 0) /* cut short: say so rather than leave a silently partial log */
        return ctl_fail(c, CTL_EFAIL, "%s: %s (after %llu bytes)", uri, e.msg,
                        (unsigned long long)printed);
    fprintf(stderr, "remexctl: %s: %s (the log stays on the agent's side)\n", c->cmd, e.msg);
    printf("%s\n", uri);
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
}

/*
 * Follows one try: prints what its log location holds beyond what was
 * printed, until the try ended; then once more from the final location.
 */
static int follow(struct ctl *c, char **argv, long want)
{
    uint64_t printed = 0;
    int rc = CTL_OK, first = 1;
    for (;;) {
        json_t *ti = NULL, *t;
        struct remex_error e;
        if ((rc = fetch_ti(c, argv, first, &ti)) != CTL_OK)
            return rc;
        first = 0;
        t = pick_try(ti, want);
        const char *uri = t ? json_string_value(json_object_get(t, "log_uri")) : NULL;
        int done = t && ended(json_string_value(json_object_get(t, "state")));
        remex_err r = uri ? print_log(uri, &printed, &e) : REMEX_ENOTFOUND;
        if (r == REMEX_ESYS)
            rc = ctl_fail(c, CTL_EFAIL, "%s", e.msg);
        else if (done && r != REMEX_OK && uri)
            rc = ctl_fail(c, CTL_EFAIL, "%s: %s", uri, e.msg);
        else if (done && !uri)
            rc = ctl_fail(c, CTL_EFAIL, "the try ended without a log");
        json_decref(ti);
        if (done || rc != CTL_OK)
            return rc;
        struct timespec ts = {0, FOLLOW_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int cmd_tasks_logs(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"try", required_argument, NULL, 't'},
        {"follow", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    int ch, fol = 0, rc;
    long want = 0;
    char *end;
    json_t *ti = NULL, *t;

    opterr = 0;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
        if (ch == 'f') {
            fol = 1;
        } else if (ch == 't') {
            errno = 0;
            want = strtol(optarg, &end, 10);
            if (errno || *end || want < 1 || want > 1000000)
                return ctl_usage(c, "--try: expected a try number");
        } else {
            return ctl_usage(c, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 3)
        return ctl_usage(c,
                         argc - optind < 3 ? "missing DAG, RUN and TASK" : "unexpected argument");
    if (fol)
        return follow(c, argv + optind, want);
    if ((rc = fetch_ti(c, argv + optind, 1, &ti)) != CTL_OK)
        return rc;
    if (!(t = pick_try(ti, want)))
        rc = want ? ctl_fail(c, CTL_EFAIL, "%s has no try %ld", argv[optind + 2], want)
                  : ctl_fail(c, CTL_EFAIL, "%s has not run yet", argv[optind + 2]);
    else
        rc = print_once(c, t);
    json_decref(ti);
    return rc;
}
