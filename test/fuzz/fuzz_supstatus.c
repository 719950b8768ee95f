/*
 * Fuzz target: the supervisor's status reply as the sentinel receives it (an
 * IPC frame payload). Whatever parses must grade without overrunning the
 * message buffer, name only known states, and keep every string within its
 * field; whatever does not parse must leave the result zeroed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remex/supstatus.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct supstatus st;
    struct remex_error e;
    json_error_t je;
    char msg[97];
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return 0;
    if (supstatus_parse(j, &st, &e) == REMEX_OK) {
        if (st.nroles > SUPSTATUS_ROLES_MAX)
            abort();
        for (size_t i = 0; i < st.nroles; i++) {
            const struct supstatus_role *r = &st.roles[i];
            if (!r->role[0] || strlen(r->instance) >= SUPSTATUS_NAME_MAX ||
                r->nqueues > SUPSTATUS_QUEUES_MAX || r->state > SUPSTATUS_STOPPED ||
                (r->slots >= 0 && r->free_slots > r->slots))
                abort();
        }
        int g = supstatus_grade(&st, msg, sizeof(msg));
        if (g < 0 || g > 2 || strlen(msg) >= sizeof(msg))
            abort();
    } else if (st.nroles != 0 || st.pid != 0) {
        abort();
    }
    json_decref(j);
    return 0;
}
