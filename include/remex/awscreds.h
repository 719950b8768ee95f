/*
 * awscreds: AWS credentials that may expire (a provider over remex/sigv4.h).
 *
 * Sources, first found (without a named profile): AWS_ACCESS_KEY_ID +
 * AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN) in the environment; a web
 * identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, as EKS IRSA sets
 * them) traded at STS (AssumeRoleWithWebIdentity; endpoint
 * AWS_ENDPOINT_URL_STS, else https://sts.REGION.amazonaws.com) for temporary
 * credentials, traded again 5 minutes before they expire; then the shared
 * credentials file (sigv4_creds_load). The token file is re-read at each
 * exchange. Blocking HTTP for web identity: call it off any event loop.
 * STS replies are capped at 64 KiB. Secrets never appear in messages.
 * Thread-safety: one thread at a time per provider.
 */
#ifndef REMEX_AWSCREDS_H
#define REMEX_AWSCREDS_H

#include <stddef.h>
#include <time.h>

#include "remex/err.h"
#include "remex/sigv4.h"

struct awscreds;

/* profile, file, getenv_fn, ca_file may be NULL. Static sources are read here. */
remex_err awscreds_open(const char *profile, const char *file,
                        const char *(*getenv_fn)(const char *), const char *ca_file,
                        struct awscreds **out, struct remex_error *e);
void awscreds_close(struct awscreds *a);

/* Copies current credentials into *out (wipe it after use), refreshing them when needed. */
remex_err awscreds_get(struct awscreds *a, struct sigv4_creds *out, struct remex_error *e);

/* Parses an AssumeRoleWithWebIdentity XML reply (untrusted; for tests and fuzzing). */
remex_err awscreds_parse_sts(const char *body, size_t len, struct sigv4_creds *out, time_t *expires,
                             struct remex_error *e);

#endif
