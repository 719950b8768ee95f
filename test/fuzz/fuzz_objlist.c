/*
 * Fuzz target: the object-store listing replies remex-triggerer's object_key
 * checks read (objstore_find): the first <Key> of an S3 ListObjectsV2 reply,
 * the first <Name> of an Azure List Blobs reply, the first name of a GCS
 * objects.list reply.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "remex/objstore_gcs.h"
#include "remex/objstore_s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[64], big[2056];
    const char *body = (const char *)data;
    if (objstore_s3_xml_first(body, size, "Key", out, sizeof(out)) && strlen(out) >= sizeof(out))
        __builtin_trap();
    if (objstore_s3_xml_first(body, size, "Name", big, sizeof(big)) && !big[0])
        __builtin_trap();
    int got = objstore_gcs_list_first(body, size, out, sizeof(out));
    if ((got == 1 && (!out[0] || strlen(out) >= sizeof(out))) || (got != 1 && out[0]))
        __builtin_trap();
    return 0;
}
