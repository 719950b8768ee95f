/*
 * secrets_aws: AWS Secrets Manager and SSM Parameter Store as secrets backends.
 *
 * Secrets Manager: POST / with X-Amz-Target secretsmanager.GetSecretValue
 * ({"SecretId": NAME} → SecretString). Parameter Store: AmazonSSM.GetParameter
 * ({"Name": NAME, "WithDecryption": true} → Parameter.Value). JSON 1.1
 * protocol, signed with SigV4 (remex/sigv4.h) with credentials from
 * remex/awscreds.h (environment, web identity, shared file, container
 * endpoint, IMDSv2; temporary ones refreshed before they expire). Endpoint:
 * cfg->endpoint, else https://secretsmanager.REGION.amazonaws.com /
 * https://ssm.REGION.amazonaws.com. Blocking HTTP: call it off any event
 * loop. Replies are capped at SECRETS_AWS_REPLY_MAX bytes. Keys and values
 * never appear in messages. Thread-safety: one thread at a time per backend.
 */
#ifndef REMEX_SECRETS_AWS_H
#define REMEX_SECRETS_AWS_H

#include <stddef.h>

#include "remex/err.h"

#define SECRETS_AWS_REPLY_MAX (256u * 1024u)

enum secrets_aws_service { SECRETS_AWS_SECRETS_MANAGER = 0, SECRETS_AWS_SSM = 1 };

/* Strings borrowed for the open call; NULL: the default. */
struct secrets_aws_config {
    enum secrets_aws_service service;
    const char *region;           /* NULL: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1 */
    const char *endpoint;         /* "https://host[:port]" */
    const char *profile;          /* shared credentials profile */
    const char *credentials_file; /* shared credentials file */
    const char *ca_file;
    const char *(*getenv_fn)(const char *); /* NULL: getenv */
};

struct secrets_aws;

remex_err secrets_aws_open(const struct secrets_aws_config *cfg, struct secrets_aws **out,
                           struct remex_error *e);
void secrets_aws_close(struct secrets_aws *a);

/*
 * The secret string (Secrets Manager) or parameter value (SSM) of name, in
 * *value (malloc'd; the caller frees). REMEX_ENOTFOUND when the service has
 * none (ResourceNotFoundException, ParameterNotFound); REMEX_EFORBIDDEN /
 * REMEX_EAUTH when it refuses, with the service's error type in the message.
 */
remex_err secrets_aws_get(struct secrets_aws *a, const char *name, char **value,
                          struct remex_error *e);

/*
 * Parsers of replies (exposed for tests and fuzzing); body[0..len) is
 * untrusted. value: *value (malloc'd) from a 2xx reply. error: the "__type"
 * (the part after '#', printable ASCII) and "message" of an error reply;
 * 1 when a type was found.
 */
remex_err secrets_aws_parse_value(enum secrets_aws_service svc, const char *body, size_t len,
                                  char **value, struct remex_error *e);
int secrets_aws_parse_error(const char *body, size_t len, char *type, size_t type_cap, char *msg,
                            size_t msg_cap);

#endif
