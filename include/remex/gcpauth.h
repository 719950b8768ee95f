/*
 * gcpauth: Google OAuth 2.0 access tokens for a service account.
 *
 * From a service-account key file (JSON: client_email, private_key (PEM),
 * token_uri), an RS256-signed JWT assertion (OpenSSL) is traded at token_uri
 * (grant_type urn:ietf:params:oauth:grant-type:jwt-bearer) for an access
 * token, kept until a minute before it expires. token_uri may be overridden
 * (tests, private endpoints).
 *
 * Without a key file, tokens come from the metadata server of GCE, GKE
 * (Workload Identity) or Cloud Run (there with GCE_METADATA_HOST set): GET
 * http://HOST/computeMetadata/v1/instance/service-accounts/default/token with
 * "Metadata-Flavor: Google", HOST being GCE_METADATA_HOST (as google-auth
 * reads it, "127.0.0.1:8080") else metadata.google.internal, reached without
 * proxy. Without GCE_METADATA_HOST the server is used only when the machine's
 * DMI product name says Google, and never when NO_GCE_CHECK=true; otherwise
 * open fails with REMEX_ENOTFOUND. The scope goes in ?scopes=; the
 * instance's access scopes (or the Workload Identity service account's
 * roles) still bound what the token may do.
 *
 * Tokens are fetched on first use and again a minute before they expire.
 * Blocking HTTP: call it off any event loop. Key
 * files are capped at GCPAUTH_KEY_MAX bytes; token replies at 64 KiB. Keys and
 * tokens never appear in messages. Thread-safety: one thread at a time.
 */
#ifndef REMEX_GCPAUTH_H
#define REMEX_GCPAUTH_H

#include <stddef.h>

#include "remex/err.h"

#define GCPAUTH_KEY_MAX   (64u * 1024u)
#define GCPAUTH_TOKEN_MAX 4096

struct gcpauth;

/* key_file: service-account key, or NULL for the metadata server (gcpauth_open_metadata);
 * token_uri: NULL for the key's own; ca_file may be NULL. */
remex_err gcpauth_open(const char *key_file, const char *token_uri, const char *scope,
                       const char *ca_file, struct gcpauth **out, struct remex_error *e);
void gcpauth_close(struct gcpauth *g);
/* Tokens from the metadata server (see above), asked for scope (?scopes=). */
remex_err gcpauth_open_metadata(const char *scope, struct gcpauth **out, struct remex_error *e);

/* The current access token (borrowed until the next call), fetched when missing or expiring. */
remex_err gcpauth_token(struct gcpauth *g, const char **token, struct remex_error *e);
/* Forgets the token (after a 401) so the next gcpauth_token fetches a new one. */
void gcpauth_invalidate(struct gcpauth *g);

/*
 * Parsers (exposed for tests and fuzzing; input untrusted): the key file's
 * fields (client_email, private_key, token_uri; each malloc'd into out[3],
 * caller frees), and a token reply's access_token (< cap) and expires_in.
 */
remex_err gcpauth_parse_key(const char *text, size_t len, char *out[3], struct remex_error *e);
remex_err gcpauth_parse_token(const char *body, size_t len, char *token, size_t cap,
                              long long *expires_in, struct remex_error *e);

#endif
