/* Fuzz target: AWS Secrets Manager / SSM reply and error parsers, STS web-identity replies,
 * container-credentials and IMDS credentials replies. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remex/awscreds.h"
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
    struct sigv4_creds c;
    time_t exp;
    if (awscreds_parse_sts((const char *)data, size, &c, &exp, &e) == REMEX_OK &&
        (!c.access_key[0] || !c.secret_key[0] || !c.session_token[0]))
        __builtin_trap();
    sigv4_creds_wipe(&c);
    if (awscreds_parse_json((const char *)data, size, &c, &exp, &e) == REMEX_OK &&
        (!c.access_key[0] || !c.secret_key[0] || !c.session_token[0] || exp <= 0))
        __builtin_trap();
    sigv4_creds_wipe(&c);
    return 0;
}
