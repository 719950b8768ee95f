/*
 * Fuzz target: trigspec_parse on arbitrary JSON, as DAG validation reads it
 * (no templates) and as remex-triggerer reads a spec from the plane
 * (templates expanded with a run's variables).
 */
#include <stddef.h>
#include <stdint.h>

#include "remex/trigspec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct tmpl_task_vars vars = {
        .dag_id = "d",
        .task_id = "t",
        .run_id = "r",
        .try_number = 1,
        .map_index = -1,
        .logical_date = 1767225600,
        .data_interval_start = 1767225600,
        .data_interval_end = 1767312000,
    };
    json_t *j =
        json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (!j)
        return 0;
    struct trigspec t;
    struct remex_error e;
    trigspec_parse(j, NULL, &t, &e);
    trigspec_free(&t);
    trigspec_parse(j, &vars, &t, &e);
    trigspec_free(&t);
    json_decref(j);
    return 0;
}
