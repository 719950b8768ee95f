/*
 * The fork+exec floor: spawns `true` N times (default 1000) one after the
 * other through proc_spawn (the worker's own spawn path: new session, clean
 * fd table, explicit environment) and waits for each. Prints the rate and the
 * mean cost per spawn, so worker figures read as ratios to the machine.
 *
 *   _spawn_floor [N]
 */
#include <stdio.h>
#include <stdlib.h>

#include "remex/proc.h"
#include "remex/timeutil.h"

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000;
    if (n <= 0 || n > 1000000)
        n = 1000;
    char *args[] = {"true", NULL};
    char *env[] = {"PATH=/usr/bin:/bin", NULL};
    struct proc_spec s = {.argv = args, .envp = env, .search_path = 1, .new_session = 1};
    uint64_t t0 = timeutil_mono_ns();
    for (long i = 0; i < n; i++) {
        pid_t pid;
        int st;
        struct remex_error e;
        if (proc_spawn(&s, &pid, &e) != REMEX_OK || proc_wait(pid, -1, &st, &e) != REMEX_OK) {
            fprintf(stderr, "spawn_floor: %s\n", e.msg);
            return 1;
        }
    }
    double secs = (double)(timeutil_mono_ns() - t0) / 1e9;
    printf("fork+exec floor: %ld x `true` in %.3f s = %.0f spawns/s (%.0f us each)\n", n, secs,
           (double)n / secs, secs * 1e6 / (double)n);
    return 0;
}
