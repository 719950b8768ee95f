/*
 * Fuzz target: YAML DAG files (dagyaml) and DAG JSON (dag_from_json).
 * Invariants: no crash or leak; a parsed DAG's canonical JSON decodes to the
 * same bytes and hash; every diagnostic has a position.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remex/dag.h"
#include "remex/dagyaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(const struct dag *d)
{
    char *s1 = NULL, *s2 = NULL;
    struct dag *d2 = NULL;
    if (dag_to_json(d, &s1, NULL, NULL) != REMEX_OK)
        return;
    if (dag_from_json(s1, strlen(s1), &d2, NULL) != REMEX_OK)
        __builtin_trap();
    if (dag_to_json(d2, &s2, NULL, NULL) != REMEX_OK || strcmp(s1, s2) != 0 ||
        strcmp(d->hash, d2->hash) != 0)
        __builtin_trap();
    free(s1);
    free(s2);
    dag_free(d2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dagyaml_result r;
    struct remex_error e;
    remex_err rc = dagyaml_parse((const char *)data, size, "fuzz.yaml", &r, &e);
    if (rc == REMEX_EPARSE) {
        if (r.ndiags == 0 || r.ndags != 0)
            __builtin_trap();
        for (size_t i = 0; i < r.ndiags; i++)
            if (r.diags[i].line == 0 || r.diags[i].column == 0)
                __builtin_trap();
    }
    for (size_t i = 0; i < r.ndags; i++)
        check_round_trip(r.dags[i]);
    dagyaml_result_free(&r);

    struct dag *d = NULL;
    if (dag_from_json((const char *)data, size, &d, &e) == REMEX_OK) {
        check_round_trip(d);
        dag_free(d);
    }
    return 0;
}
