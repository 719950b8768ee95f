/*
 * Fuzz target: what the remote object stores read from outside: the XML
 * error and reply fields of S3 / Azure (objstore_http_xml_field), the
 * response headers a streamed download is checked against (ETag,
 * Content-MD5, x-goog-hash), the AWS shared credentials file parser and an
 * Azure SAS token from the configuration.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remex/objstore.h"
#include "remex/objstore_http.h"
#include "remex/objstore_s3.h"
#include "remex/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds every line of data as a response header to a download sink, the data as its body. */
static void fuzz_sink(const uint8_t *data, size_t size)
{
    static char path[64];
    struct objstore_sink k;
    struct remex_error e;
    char sum[72];
    uint64_t n = 0;
    if (!path[0])
        snprintf(path, sizeof(path), "/tmp/remex-fuzz-sink.%ld", (long)getpid());
    if (objstore_sink_open(&k, path, &e) != REMEX_OK)
        return;
    for (size_t i = 0; i < size;) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t len = nl ? (size_t)(nl - (data + i)) : size - i;
        k.st.header((const char *)data + i, len, k.st.ud);
        i += len + 1;
    }
    if (strlen(k.etag) >= sizeof(k.etag) || strlen(k.content_md5) >= sizeof(k.content_md5))
        __builtin_trap();
    k.st.write(data, size, k.st.ud);
    if (objstore_sink_finish(&k, REMEX_OK, NULL, sum, &n, &e) == REMEX_OK && n != size)
        __builtin_trap();
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char code[64], msg[256], id[128];
    struct sigv4_creds c;
    struct remex_error e;
    if (objstore_s3_parse_error((const char *)data, size, code, sizeof(code), msg, sizeof(msg)) &&
        strlen(code) >= sizeof(code))
        __builtin_trap();
    if (objstore_http_xml_field((const char *)data, size, "UploadId", id, sizeof(id)) &&
        strlen(id) >= sizeof(id))
        __builtin_trap();
    objstore_http_xml_field((const char *)data, size, "ETag", id, 8);
    if (sigv4_creds_parse((const char *)data, size, "default", &c, &e) == REMEX_OK &&
        (!c.access_key[0] || !c.secret_key[0]))
        __builtin_trap();
    sigv4_creds_parse((const char *)data, size, "ci", &c, &e);
    sigv4_creds_wipe(&c);
    if (size < 4096) {
        char *sas = malloc(size + 1);
        struct objstore *s = NULL;
        if (sas) {
            memcpy(sas, data, size);
            sas[size] = '\0';
            struct objstore_opts o = {.endpoint = "http://127.0.0.1:1", .azure_sas = sas};
            if (sas[0] && objstore_open_opts("az://acct/cont", &o, &s, &e) == REMEX_OK)
                objstore_close(s);
            free(sas);
        }
    }
    fuzz_sink(data, size);
    return 0;
}
