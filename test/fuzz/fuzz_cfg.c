/* Fuzz target: cfg_load_buf on arbitrary bytes against a representative table, then against
 * the agent's own table (agentcfg: every type, reserved sections and their warnings). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remex/agentcfg.h"
#include "remex/cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rec {
    char *name;
    char *path;
    int64_t weight;
    struct cfg_strlist tags;
};

struct fcfg {
    char *name;
    char *url;
    struct cfg_secret token;
    int64_t slots;
    bool debug;
    uint64_t poll;
    uint64_t max_log;
    int format;
    struct cfg_strlist queues;
    char *dir;
    struct cfg_list bundles;
};

static const char *const formats[] = {"text", "json", NULL};

static const struct cfg_entry rec_table[] = {
    {.key = "name",
     .type = CFG_STRING,
     .offset = offsetof(struct rec, name),
     .flags = CFG_REQUIRED},
    {.key = "path", .type = CFG_PATH, .offset = offsetof(struct rec, path)},
    {.key = "opts.weight",
     .type = CFG_INT,
     .offset = offsetof(struct rec, weight),
     .def = "1",
     .min = 0,
     .max = 100},
    {.key = "tags", .type = CFG_STRLIST, .offset = offsetof(struct rec, tags)},
    {0},
};

static const struct cfg_entry table[] = {
    {.key = "name", .type = CFG_STRING, .offset = offsetof(struct fcfg, name)},
    {.key = "plane.url", .type = CFG_URL, .offset = offsetof(struct fcfg, url)},
    {.key = "plane.token", .type = CFG_SECRET, .offset = offsetof(struct fcfg, token)},
    {.key = "worker.slots",
     .type = CFG_INT,
     .offset = offsetof(struct fcfg, slots),
     .def = "4",
     .min = 1,
     .max = 1024},
    {.key = "worker.debug", .type = CFG_BOOL, .offset = offsetof(struct fcfg, debug)},
    {.key = "worker.poll_interval",
     .type = CFG_DURATION,
     .offset = offsetof(struct fcfg, poll),
     .def = "30s"},
    {.key = "worker.max_log_size",
     .type = CFG_SIZE,
     .offset = offsetof(struct fcfg, max_log),
     .def = "64MiB",
     .min = 1,
     .max = INT64_MAX},
    {.key = "log.format",
     .type = CFG_ENUM,
     .offset = offsetof(struct fcfg, format),
     .def = "text",
     .enums = formats},
    {.key = "worker.queues",
     .type = CFG_STRLIST,
     .offset = offsetof(struct fcfg, queues),
     .def = "default"},
    {.key = "data_dir", .type = CFG_PATH, .offset = offsetof(struct fcfg, dir)},
    {.key = "bundles",
     .type = CFG_LIST,
     .offset = offsetof(struct fcfg, bundles),
     .sub = rec_table,
     .elem_size = sizeof(struct rec)},
    {0},
};

static const char *no_env(const char *name, void *ud)
{
    (void)ud;
    return strcmp(name, "AGENT_TOKEN") == 0 ? "t0ken" : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cfg_errors errs;
    struct cfg_opts o = {.lookup = no_env};
    struct fcfg c;
    struct buf out = BUF_INIT(1 << 20);

    memset(&c, 0, sizeof(c));
    if (cfg_load_buf(table, &c, "fuzz.yaml", (const char *)data, size, &o, &errs) == REMEX_OK) {
        cfg_dump(table, &c, &out);
        cfg_free(table, &c);
    } else {
        /* every error is positioned or names the file */
        for (size_t i = 0; i < errs.n; i++) {
            if (strncmp(errs.msg[i], "fuzz.yaml", 9) != 0)
                abort();
        }
        cfg_check_report(REMEX_ECONFIG, &errs, &out);
    }
    struct agentcfg ac;
    memset(&ac, 0, sizeof(ac));
    o.no_env = 1;
    if (cfg_load_buf(agentcfg_table, &ac, "fuzz.yaml", (const char *)data, size, &o, &errs) ==
        REMEX_OK)
        cfg_free(agentcfg_table, &ac);
    /* warnings, like errors, are positioned in the file */
    for (size_t i = 0; i < errs.nwarn; i++)
        if (strncmp(errs.warn[i], "fuzz.yaml:", 10) != 0)
            abort();
    buf_free(&out);
    return 0;
}
