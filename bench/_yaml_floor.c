/*
 * The parse-only floor of the dag-processor: reads every .yaml file below a
 * folder and runs libyaml's parser over it (events only, no model, no
 * validation, no hashing). Prints files, bytes and milliseconds, so the
 * dag-processor's cold scan reads as a ratio to the machine.
 *
 *   _yaml_floor DIR
 */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "remex/timeutil.h"

static long nfiles, nbytes, nbad;
static unsigned char filebuf[1 << 20];

static void parse_one(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        nbad++;
        return;
    }
    size_t n = fread(filebuf, 1, sizeof(filebuf), f);
    fclose(f);
    yaml_parser_t p;
    yaml_event_t ev;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, filebuf, n);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev)) {
            nbad++;
            break;
        }
        int end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (end)
            break;
    }
    yaml_parser_delete(&p);
    nfiles++;
    nbytes += (long)n;
}

static void walk(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (d == NULL || depth > 64) {
        if (d)
            closedir(d);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char path[PATH_MAX];
        struct stat st;
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            walk(path, depth + 1);
        else if (S_ISREG(st.st_mode) && len > 5 && strcmp(de->d_name + len - 5, ".yaml") == 0)
            parse_one(path);
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: _yaml_floor DIR\n");
        return 2;
    }
    uint64_t t0 = timeutil_mono_ns();
    walk(argv[1], 0);
    double ms = (double)(timeutil_mono_ns() - t0) / 1e6;
    printf("yaml_floor files=%ld bytes=%ld errors=%ld ms=%.1f\n", nfiles, nbytes, nbad, ms);
    return 0;
}
