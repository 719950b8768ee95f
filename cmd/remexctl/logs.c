/*
 * remexctl tasks logs: prints a try's log from where the agent put it. The
 * plane only knows the location (log_uri): a file:// log is read when this
 * machine can (co-located), an s3://, az:// or gs:// log from object storage
 * with the caller's own credentials (AWS_*, AZURE_STORAGE_*,
 * GOOGLE_APPLICATION_CREDENTIALS environment, as the SDKs read them).
 * --follow prints a running try's log as it grows and returns once the try
 * ended, finishing with the stored copy when the worker uploaded one.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "remex/objstore.h"

#define LOG_FETCH_MAX  (256u * 1024u * 1024u) /* largest stored log printed */
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

/* Writes data[from..len) to stdout; *printed becomes len. */
static int emit(const char *data, size_t len, size_t *printed)
{
    if (len > *printed && fwrite(data + *printed, 1, len - *printed, stdout) != len - *printed)
        return -1;
    if (len > *printed)
        *printed = len;
    return fflush(stdout) == 0 ? 0 : -1;
}

/* Reads the log at uri into out. REMEX_EUNSUPPORTED for a location this machine cannot read. */
static remex_err read_log(const char *uri, struct buf *out, struct remex_error *e)
{
    char store[OBJSTORE_URI_MAX];
    const char *p;
    struct objstore *s = NULL;
    remex_err rc;
    int parts = strncmp(uri, "az://", 5) == 0 ? 2 : 1; /* account/container, or bucket */
    if (strncmp(uri, "file://", 7) == 0) {
        FILE *f = fopen(uri + 7, "r");
        char chunk[65536];
        size_t n;
        if (!f)
            return remex_errno(e, errno == ENOENT ? REMEX_ENOTFOUND : REMEX_EIO, "%s", uri + 7);
        rc = REMEX_OK;
        while (rc == REMEX_OK && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            rc = buf_append(out, chunk, n);
        fclose(f);
        return rc == REMEX_OK ? REMEX_OK : remex_seterr(e, rc, "%s: too large", uri + 7);
    }
    if (strncmp(uri, "s3://", 5) != 0 && strncmp(uri, "az://", 5) != 0 &&
        strncmp(uri, "gs://", 5) != 0)
        return remex_seterr(e, REMEX_EUNSUPPORTED, "no reader for this location");
    p = uri + 5;
    for (int i = 0; i < parts && p; i++)
        p = strchr(p + 1, '/');
    if (!p || (size_t)(p - uri) >= sizeof(store))
        return remex_seterr(e, REMEX_EINVAL, "malformed log location");
    memcpy(store, uri, (size_t)(p - uri));
    store[p - uri] = '\0';
    if ((rc = objstore_open(store, &s, e)) == REMEX_OK)
        rc = objstore_get_uri(s, uri, NULL, out, e);
    objstore_close(s);
    return rc;
}

/* Prints the log of one try once (no follow). */
static int print_once(struct ctl *c, json_t *t)
{
    const char *uri = json_string_value(json_object_get(t, "log_uri"));
    struct buf b = BUF_INIT(LOG_FETCH_MAX);
    struct remex_error e;
    size_t printed = 0;
    int rc = CTL_OK;
    if (!uri) {
        char s[64];
        return ctl_fail(c, CTL_EFAIL, "try %lld has no log yet (state %s)",
                        (long long)json_integer_value(json_object_get(t, "try_number")),
                        ctl_field(t, "state", s, sizeof(s)));
    }
    if (read_log(uri, &b, &e) == REMEX_OK) {
        if (emit(b.data ? b.data : "", b.len, &printed) != 0)
            rc = ctl_fail(c, CTL_EFAIL, "writing output failed");
    } else {
        fprintf(stderr, "remexctl: %s: %s (the log stays on the agent's side)\n", c->cmd, e.msg);
        printf("%s\n", uri);
        rc = fflush(stdout) == 0 ? CTL_OK : ctl_fail(c, CTL_EFAIL, "writing output failed");
    }
    buf_free(&b);
    return rc;
}

/*
 * Follows one try: prints what its log location holds beyond what was
 * printed, until the try ended; then once more from the final location.
 */
static int follow(struct ctl *c, char **argv, long want)
{
    size_t printed = 0;
    int rc = CTL_OK, first = 1;
    for (;;) {
        json_t *ti = NULL, *t;
        struct buf b = BUF_INIT(LOG_FETCH_MAX);
        struct remex_error e;
        if ((rc = fetch_ti(c, argv, first, &ti)) != CTL_OK)
            return rc;
        first = 0;
        t = pick_try(ti, want);
        const char *uri = t ? json_string_value(json_object_get(t, "log_uri")) : NULL;
        int done = t && ended(json_string_value(json_object_get(t, "state")));
        remex_err r = uri ? read_log(uri, &b, &e) : REMEX_ENOTFOUND;
        if (r == REMEX_OK && emit(b.data ? b.data : "", b.len, &printed) != 0)
            rc = ctl_fail(c, CTL_EFAIL, "writing output failed");
        else if (done && r != REMEX_OK && uri)
            rc = ctl_fail(c, CTL_EFAIL, "%s: %s", uri, e.msg);
        else if (done && !uri)
            rc = ctl_fail(c, CTL_EFAIL, "the try ended without a log");
        buf_free(&b);
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
