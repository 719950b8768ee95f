/* libFuzzer target: known_hosts text (knownhosts_check_buf) against a fixed host and key. */
#include <stddef.h>
#include <stdint.h>

#include "remex/knownhosts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char key[51] = {0,   0,   0,   11,  's', 's', 'h', '-', 'e', 'd', '2',
                                          '5', '5', '1', '9', 0,   0,   0,   32,  44,  102, 86};
    struct remex_error e;
    if (size > KNOWNHOSTS_FILE_MAX)
        return 0;
    knownhosts_check_buf((const char *)data, size, "fuzz", "127.0.0.1", 2222, key, sizeof(key), &e);
    knownhosts_check_buf((const char *)data, size, "fuzz", "git.example.com", 22, key, sizeof(key),
                         &e);
    return 0;
}
