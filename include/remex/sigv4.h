/*
 * sigv4: AWS Signature Version 4 request signing and AWS credentials.
 *
 * sigv4_authorization builds the Authorization header value for one request
 * from its canonical parts (the caller encodes the path and query with
 * sigv4_uri_encode). HMAC-SHA256 and SHA-256 come from OpenSSL.
 *
 * Credentials come, in order, from the environment (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or from the shared credentials
 * file (AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials) section of the
 * profile (argument, else AWS_PROFILE, else "default"). The file is capped at
 * SIGV4_CREDS_FILE_MAX bytes. Secret keys and session tokens never appear in
 * error messages. Thread-safety: functions are reentrant.
 */
#ifndef REMEX_SIGV4_H
#define REMEX_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "remex/buf.h"
#include "remex/err.h"

#define SIGV4_CREDS_FILE_MAX (64u * 1024u)
#define SIGV4_KEY_MAX        256
#define SIGV4_TOKEN_MAX      4096
#define SIGV4_MAX_HEADERS    16

/* Secret: wipe with sigv4_creds_wipe before release. */
struct sigv4_creds {
    char access_key[SIGV4_KEY_MAX];
    char secret_key[SIGV4_KEY_MAX];
    char session_token[SIGV4_TOKEN_MAX]; /* "" when none */
};

void sigv4_creds_wipe(struct sigv4_creds *c);

/*
 * Loads credentials as described above. profile and file may be NULL (the
 * defaults apply); getenv_fn NULL means getenv. REMEX_ENOTFOUND when no source
 * has them, REMEX_EPARSE for a malformed file (message names the line).
 */
remex_err sigv4_creds_load(const char *profile, const char *file,
                           const char *(*getenv_fn)(const char *), struct sigv4_creds *out,
                           struct remex_error *e);

/*
 * Parses an AWS shared credentials / config file held in text[0..len) and
 * fills out from the [profile] (or "[profile NAME]") section.
 * REMEX_ETOOBIG over SIGV4_CREDS_FILE_MAX, REMEX_EPARSE for malformed lines,
 * REMEX_ENOTFOUND if the section or its keys are missing.
 */
remex_err sigv4_creds_parse(const char *text, size_t len, const char *profile,
                            struct sigv4_creds *out, struct remex_error *e);

/* A header to sign: name lower-case, value trimmed; both borrowed. */
struct sigv4_header {
    const char *name;
    const char *value;
};

struct sigv4_input {
    const char *method;
    const char *path;  /* canonical URI, already encoded ("/" at least) */
    const char *query; /* canonical query string ("" when none), already sorted and encoded */
    const struct sigv4_header *headers; /* must include host and x-amz-date */
    size_t nheaders;                    /* at most SIGV4_MAX_HEADERS */
    const char *payload_hash;           /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
    const char *region;
    const char *service;
    const char *amz_date; /* "YYYYMMDDTHHMMSSZ" */
};

/*
 * Appends "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."
 * to out. REMEX_EINVAL for a malformed input (too many headers, a bad date).
 */
remex_err sigv4_authorization(const struct sigv4_creds *c, const struct sigv4_input *in,
                              struct buf *out);

/* "YYYYMMDDTHHMMSSZ" of t (UTC) into out. */
void sigv4_amz_date(time_t t, char out[17]);

/*
 * Appends s[0..n) percent-encoded as SigV4 wants (unreserved A-Z a-z 0-9 - . _ ~
 * kept, upper-case hex); keep_slash keeps '/' (object keys in paths).
 */
remex_err sigv4_uri_encode(struct buf *out, const char *s, size_t n, int keep_slash);

#endif
