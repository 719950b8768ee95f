/*
 * secrets_gcp: Google Cloud Secret Manager as a secrets backend.
 *
 * Reads GET /v1/projects/PROJECT/secrets/NAME/versions/latest:access with a
 * service account's OAuth token (remex/gcpauth.h: from the key file, else
 * from the metadata server) and decodes payload.data
 * (base64). Endpoint: cfg->endpoint, else https://secretmanager.googleapis.com.
 * Blocking HTTP: call it off any event loop. Replies capped at
 * SECRETS_GCP_REPLY_MAX bytes; values never appear in messages.
 * Thread-safety: one thread at a time per backend.
 */
#ifndef REMEX_SECRETS_GCP_H
#define REMEX_SECRETS_GCP_H

#include <stddef.h>

#include "remex/err.h"

#define SECRETS_GCP_REPLY_MAX (256u * 1024u)

/* Strings borrowed for the open call. */
struct secrets_gcp_config {
    const char *project;   /* required */
    const char *key_file;  /* service-account key (NULL: GOOGLE_APPLICATION_CREDENTIALS, and
                              without it the metadata server) */
    const char *endpoint;  /* NULL: https://secretmanager.googleapis.com */
    const char *token_uri; /* NULL: the key's */
    const char *ca_file;
};

struct secrets_gcp;

remex_err secrets_gcp_open(const struct secrets_gcp_config *cfg, struct secrets_gcp **out,
                           struct remex_error *e);
void secrets_gcp_close(struct secrets_gcp *g);
/* *value malloc'd (caller frees). REMEX_ENOTFOUND when the secret or its versions are missing. */
remex_err secrets_gcp_get(struct secrets_gcp *g, const char *name, char **value,
                          struct remex_error *e);
/* payload.data of an access reply, decoded (malloc'd; must be text without NUL). */
remex_err secrets_gcp_parse_access(const char *body, size_t len, char **value,
                                   struct remex_error *e);

#endif
