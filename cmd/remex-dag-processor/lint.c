/*
 * --lint FILE...: the checks the dag-processor makes, offline. Each problem is
 * printed as "FILE:LINE:COL: message" (the plane shows the same), including a
 * DAG id defined in two of the files given. Exit 0 when every file is valid,
 * 1 otherwise, 2 without a file.
 */
#include <stdio.h>
#include <stdlib.h>

#include "dagproc.h"
#include "remex/exit.h"

static void print_dup(void *ud, size_t file, unsigned line, unsigned col, const char *msg)
{
    char **names = ud;
    printf("%s:%u:%u: %s\n", names[file], line, col, msg);
}

int dp_lint(int argc, char **argv)
{
    struct dp_entry *ent = calloc((size_t)argc + 1, sizeof(*ent));
    const struct dp_entry **ep = calloc((size_t)argc + 1, sizeof(*ep));
    size_t nerr = 0, ndags = 0;
    int code = REMEX_EXIT_OK;
    struct remex_error e;
    if (argc < 1) {
        fprintf(stderr, "usage: remex-dag-processor --lint FILE...\n");
        code = REMEX_EXIT_USAGE;
        goto out;
    }
    if (ent == NULL || ep == NULL) {
        fprintf(stderr, "remex-dag-processor: out of memory\n");
        code = REMEX_EXIT_FAIL;
        goto out;
    }
    for (int i = 0; i < argc; i++) {
        ep[i] = &ent[i];
        if (dp_parse_file(argv[i], argv[i], 0, DP_PARSE_CAP_MS, &ent[i], &e) != REMEX_OK) {
            fprintf(stderr, "remex-dag-processor: %s: %s\n", argv[i], e.msg);
            code = REMEX_EXIT_FAIL;
            goto out;
        }
        for (size_t j = 0; j < ent[i].nerrs; j++)
            printf("%s:%u:%u: %s\n", argv[i], ent[i].errs[j].line, ent[i].errs[j].col,
                   ent[i].errs[j].msg);
        nerr += ent[i].nerrs;
        ndags += ent[i].ndags;
    }
    nerr += dp_duplicates((const char *const *)argv, ep, (size_t)argc, print_dup, argv);
    if (nerr > 0)
        code = REMEX_EXIT_FAIL;
    else
        printf("%d file%s OK (%zu DAG%s)\n", argc, argc == 1 ? "" : "s", ndags,
               ndags == 1 ? "" : "s");
out:
    for (int i = 0; ent && i < argc; i++)
        dp_entry_free(&ent[i]);
    free(ent);
    free(ep);
    return code;
}
