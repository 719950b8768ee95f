/* Fuzz target: AWS Secrets Manager / SSM reply and error parsers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remex/secrets_aws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = NULL, type[64], msg[128];
    struct remex_error e;
    for (int s = 0; s < 2; s++) {
        if (secrets_aws_parse_value((enum secrets_aws_service)s, (const char *)data, size, &v,
                                    &e) == REMEX_OK &&
            !v)
            __builtin_trap();
        free(v);
        v = NULL;
    }
    if (secrets_aws_parse_error((const char *)data, size, type, sizeof(type), msg, sizeof(msg)) &&
        (strlen(type) >= sizeof(type) || strlen(msg) >= sizeof(msg)))
        __builtin_trap();
    return 0;
}
