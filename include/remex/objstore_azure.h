/*
 * objstore_azure: the Azure Blob Storage backend of objstore (Shared Key,
 * SAS token or Entra ID bearer token).
 *
 * A store is "az://ACCOUNT/CONTAINER[/PREFIX]". Requests are signed with the
 * storage account's Shared Key (HMAC-SHA256 of the canonical request, as the
 * Blob service's "Authorize with Shared Key" defines it, service version
 * OBJSTORE_AZURE_VERSION). Endpoint: opts->endpoint (Azurite:
 * "http://127.0.0.1:10000/devstoreaccount1"), else AZURE_STORAGE_ENDPOINT, else
 * https://ACCOUNT.blob.core.windows.net. Key: opts->azure_key, else
 * AZURE_STORAGE_KEY (base64, as the portal shows it). Instead of a key: a SAS
 * token (opts->azure_sas_file, opts->azure_sas, else AZURE_STORAGE_SAS_TOKEN),
 * appended to every request's query; or, with no key, a workload-identity
 * federated token file (opts->azure_federated_token_file, else
 * AZURE_FEDERATED_TOKEN_FILE, with the AZURE_TENANT_ID / AZURE_CLIENT_ID /
 * AZURE_AUTHORITY_HOST defaults) traded for Entra ID bearer tokens
 * (remex/azauth.h); a 401 makes the next request fetch a new token. Blocking HTTP (lib
 * http): call it off any event loop. Errors carry the service's XML
 * <Code>/<Message>: 403 → REMEX_EFORBIDDEN ("AuthenticationFailed"; Azurite
 * says "AuthorizationFailure"), 404 →
 * REMEX_ENOTFOUND ("BlobNotFound", "ContainerNotFound"). The key never
 * appears in messages. Thread-safety: one thread at a time per store.
 */
#ifndef REMEX_OBJSTORE_AZURE_H
#define REMEX_OBJSTORE_AZURE_H

#include <stddef.h>
#include <stdint.h>

#include "remex/buf.h"
#include "remex/err.h"
#include "remex/http.h"
#include "remex/objstore.h"

#define OBJSTORE_AZURE_VERSION "2021-08-06"
#define OBJSTORE_AZURE_KEY_MAX 128  /* decoded key bytes (accounts use 64) */
#define OBJSTORE_AZURE_SAS_MAX 2048 /* SAS token bytes */
#define OBJSTORE_AZURE_SCOPE   "https://storage.azure.com/.default" /* Entra ID token scope */

struct objstore_azure;

remex_err objstore_azure_open(const char *url, const struct objstore_opts *opts,
                              struct objstore_azure **out, struct remex_error *e);
void objstore_azure_close(struct objstore_azure *s);

remex_err objstore_azure_put(struct objstore_azure *s, const char *key, const void *data,
                             size_t len, struct remex_error *e);
remex_err objstore_azure_get(struct objstore_azure *s, const char *key, struct buf *out,
                             struct remex_error *e);
remex_err objstore_azure_delete(struct objstore_azure *s, const char *key, struct remex_error *e);
/* Streams fd[0, size) into key (see objstore_put_file); sum receives its "sha256:<hex>". */
remex_err objstore_azure_put_file(struct objstore_azure *s, const char *key, int fd, uint64_t size,
                                  char sum[72], struct remex_error *e);
/* Get Blob of key with its body streamed to sink. */
remex_err objstore_azure_get_stream(struct objstore_azure *s, const char *key,
                                    const struct http_stream *sink, struct remex_error *e);
/* Creates the container (REMEX_OK when it exists already): for set-up tools and tests. */
/* The first blob name (store prefix removed) that starts with prefix, into
 * found; REMEX_ENOTFOUND when none (List Blobs, maxresults=1). */
remex_err objstore_azure_first(struct objstore_azure *s, const char *prefix, char *found,
                               size_t cap, struct remex_error *e);
remex_err objstore_azure_create_container(struct objstore_azure *s, struct remex_error *e);
/* "az://ACCOUNT/CONTAINER/PREFIX/" (or without PREFIX) into out. */
void objstore_azure_uri_base(const struct objstore_azure *s, char *out, size_t cap);

/*
 * The Shared Key string to sign (exposed for tests): verb, content length
 * (0 signs as ""), content type, the x-ms-* headers (lower-case "name:value"
 * lines, any order) and the canonical resource ("/ACCOUNT/PATH" plus sorted
 * "\nname:value" query lines). Appended to out.
 */
remex_err objstore_azure_string_to_sign(const char *verb, size_t content_length,
                                        const char *content_type, const char *const *ms_headers,
                                        const char *canonical_resource, struct buf *out);

#endif
