/*
 * The dag-processor's figures for the sentinel, as a Prometheus text file
 * (<dag_processor.state_dir>/metrics.prom, replaced atomically after each
 * scan and sync; a sentinel or node_exporter's textfile collector serves it):
 *
 *   remex_dag_processor_files_parsed_total{bundle}       DAG files parsed
 *   remex_dag_processor_cache_hits_total{bundle}         DAG files taken from the cache
 *   remex_dag_processor_import_errors{bundle}            import errors of the last scan
 *   remex_dag_processor_uploads_total{bundle}            DAGs uploaded
 *   remex_dag_processor_sync_failures_total{bundle}      scans or syncs that failed
 *   remex_dag_processor_scan_seconds{bundle}             duration of the last scan
 *   remex_dag_processor_sync_seconds{bundle}             duration of the last sync
 *   remex_dag_processor_last_refresh_timestamp_seconds{bundle}  last good sync (Unix time)
 *   remex_dag_processor_bundle_version{bundle,version}   1 for the version on the plane
 *
 * Bundle names ([A-Za-z0-9_.-]) and versions (hex) need no label escaping.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dagproc.h"
#include "remex/buf.h"
#include "remex/fsutil.h"
#include "remex/log.h"
#include "remex/role.h"

struct metric {
    const char *name, *type, *help;
};

static const struct metric M[] = {
    {"files_parsed_total", "counter", "DAG files parsed."},
    {"cache_hits_total", "counter", "DAG files taken from the file-hash cache."},
    {"import_errors", "gauge", "Import errors of the last scan."},
    {"uploads_total", "counter", "DAGs uploaded to the plane."},
    {"sync_failures_total", "counter", "Scans or syncs that failed."},
    {"scan_seconds", "gauge", "Duration of the last scan."},
    {"sync_seconds", "gauge", "Duration of the last sync with the plane."},
    {"last_refresh_timestamp_seconds", "gauge", "Unix time of the last good sync."},
};

static double value(const struct dp_bundle *b, size_t i)
{
    const struct dp_counters *c = &b->m;
    switch (i) {
    case 0:
        return (double)c->parsed;
    case 1:
        return (double)c->hits;
    case 2:
        return (double)b->nerrors;
    case 3:
        return (double)c->uploads;
    case 4:
        return (double)c->failures;
    case 5:
        return (double)c->scan_ms / 1000.0;
    case 6:
        return (double)c->sync_ms / 1000.0;
    default:
        return (double)c->last_ok_unix_ms / 1000.0;
    }
}

void dp_metrics_text(struct dagproc *dp, struct buf *out)
{
    for (size_t i = 0; i < sizeof(M) / sizeof(*M); i++) {
        buf_printf(out, "# HELP remex_dag_processor_%s %s\n# TYPE remex_dag_processor_%s %s\n",
                   M[i].name, M[i].help, M[i].name, M[i].type);
        for (size_t j = 0; j < dp->nb; j++)
            buf_printf(out, "remex_dag_processor_%s{bundle=\"%s\"} %.3f\n", M[i].name,
                       dp->b[j].name, value(&dp->b[j], i));
    }
    buf_puts(out, "# HELP remex_dag_processor_bundle_version The bundle version on the plane.\n"
                  "# TYPE remex_dag_processor_bundle_version gauge\n");
    for (size_t j = 0; j < dp->nb; j++)
        if (dp->b[j].m.plane_version[0])
            buf_printf(out, "remex_dag_processor_bundle_version{bundle=\"%s\",version=\"%s\"} 1\n",
                       dp->b[j].name, dp->b[j].m.plane_version);
}

void dp_metrics_write(struct dagproc *dp)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    struct buf out = BUF_INIT(1024 * 1024);
    const char *dir = dp->r->cfg.dag_processor.state_dir;
    dp_metrics_text(dp, &out);
    snprintf(path, sizeof(path), "%s/metrics.prom", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int bad = fd < 0 || fsutil_write_all(fd, out.data, out.len) != 0;
    if (fd >= 0 && close(fd) != 0)
        bad = 1;
    if (bad || rename(tmp, path) != 0) {
        if (!dp->metrics_warned++)
            log_warn("metrics: cannot write %s", path);
    }
    buf_free(&out);
}
