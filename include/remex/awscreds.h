/*
 * awscreds: AWS credentials that may expire (a provider over remex/sigv4.h).
 *
 * Sources, first found (the AWS SDKs' default chain; without a named
 * profile): AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)
 * in the environment; a web identity (AWS_WEB_IDENTITY_TOKEN_FILE +
 * AWS_ROLE_ARN, as EKS IRSA sets them) traded at STS
 * (AssumeRoleWithWebIdentity; endpoint AWS_ENDPOINT_URL_STS, else
 * https://sts.REGION.amazonaws.com); the shared credentials file
 * (sigv4_creds_load); the container credentials endpoint
 * (AWS_CONTAINER_CREDENTIALS_FULL_URI, or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
 * under http://169.254.170.2, as ECS and EKS Pod Identity set them; the
 * Authorization header from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, re-read
 * at each fetch, else AWS_CONTAINER_AUTHORIZATION_TOKEN); then the EC2
 * instance metadata service, IMDSv2 (PUT /latest/api/token with a 6 h TTL,
 * then GET /latest/meta-data/iam/security-credentials/ for the role and
 * .../ROLE for its credentials, the session token in
 * X-aws-ec2-metadata-token). IMDS is tried when
 * AWS_EC2_METADATA_SERVICE_ENDPOINT names it (e.g. "http://127.0.0.1:8111")
 * or when the machine's DMI/hypervisor data says EC2 (then at
 * http://169.254.169.254, or http://[fd00:ec2::254] with
 * AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6), and never when
 * AWS_EC2_METADATA_DISABLED=true.
 * Metadata endpoints are reached without proxy, plain http allowed only to
 * AWS's link-local addresses, loopback or the configured IMDS endpoint.
 *
 * Temporary credentials (web identity, container, IMDS) are fetched on first
 * use and again 5 minutes before their Expiration; when a refresh fails while
 * the old ones are still valid, those are used and the refresh is tried again
 * at the next call. When no source has credentials, open fails with
 * REMEX_ENOTFOUND (as sigv4_creds_load). Blocking HTTP for the fetched
 * sources: call awscreds_get off any event loop. Replies are capped at
 * 64 KiB. Secrets never appear in messages; messages name the source ("aws
 * web identity", "aws container credentials", "aws imds").
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

/*
 * Parses a container-credentials or IMDS credentials reply (JSON: AccessKeyId,
 * SecretAccessKey, Token, Expiration (RFC 3339), and for IMDS Code "Success").
 * Untrusted input; exposed for tests and fuzzing.
 */
remex_err awscreds_parse_json(const char *body, size_t len, struct sigv4_creds *out,
                              time_t *expires, struct remex_error *e);

#endif
