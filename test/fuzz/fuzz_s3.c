/* Fuzz target: the S3 XML error parser and the AWS shared credentials file parser. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "remex/objstore_s3.h"
#include "remex/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char code[64], msg[256];
    struct sigv4_creds c;
    struct remex_error e;
    if (objstore_s3_parse_error((const char *)data, size, code, sizeof(code), msg, sizeof(msg)) &&
        strlen(code) >= sizeof(code))
        __builtin_trap();
    if (sigv4_creds_parse((const char *)data, size, "default", &c, &e) == REMEX_OK &&
        (!c.access_key[0] || !c.secret_key[0]))
        __builtin_trap();
    sigv4_creds_parse((const char *)data, size, "ci", &c, &e);
    sigv4_creds_wipe(&c);
    return 0;
}
