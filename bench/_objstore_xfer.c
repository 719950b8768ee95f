/*
 * One streamed object-store transfer each way, for bench/objstore_bench.py:
 * objstore_put_file of SRC to KEY, then objstore_get_file of KEY to DST
 * (checksum verified), on the store at URL with ENDPOINT (S3, path style,
 * credentials from the environment). Prints one JSON line: the seconds of
 * each direction, the peak RSS (VmHWM) before and after, and the object size.
 *
 *   _objstore_xfer URL ENDPOINT KEY SRC DST [MULTIPART_THRESHOLD_BYTES]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "remex/objstore.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmHWM of this process in KiB (-1 if unreadable). */
static long hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    struct objstore_opts o = {.path_style = 1};
    struct objstore *s = NULL;
    struct objstore_ref ref, got;
    struct remex_error e;
    double t0, t1, t2;
    long before;
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s URL ENDPOINT KEY SRC DST [MULTIPART_THRESHOLD]\n", argv[0]);
        return 2;
    }
    o.endpoint = argv[2];
    if (argc == 7)
        o.multipart_threshold = strtoull(argv[6], NULL, 10);
    if (objstore_open_opts(argv[1], &o, &s, &e) != REMEX_OK) {
        fprintf(stderr, "open: %s\n", e.msg);
        return 1;
    }
    before = hwm_kib();
    t0 = now_s();
    if (objstore_put_file(s, argv[3], argv[4], &ref, &e) != REMEX_OK) {
        fprintf(stderr, "put: %s\n", e.msg);
        return 1;
    }
    t1 = now_s();
    if (objstore_get_file(s, argv[3], argv[5], ref.checksum, &got, &e) != REMEX_OK) {
        fprintf(stderr, "get: %s\n", e.msg);
        return 1;
    }
    t2 = now_s();
    printf("{\"size\": %llu, \"put_s\": %.3f, \"get_s\": %.3f, \"hwm_before_kib\": %ld, "
           "\"hwm_after_kib\": %ld}\n",
           (unsigned long long)ref.size, t1 - t0, t2 - t1, before, hwm_kib());
    objstore_close(s);
    return 0;
}
