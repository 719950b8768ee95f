/*
 * helper_fake: what the unit tests of the cloud clients share around their
 * servers: the Python fakes (test/fake_*.py, test/fakebase.py: "port N" on
 * stdout, exit when stdin closes, test hooks /_conf, /_stats, /_hits), the
 * temporary files and directories they are given, and the GCP fixture (two
 * RSA keys, service-account key files, test/fake_gcp.py).
 */
#ifndef REMEX_TEST_HELPER_FAKE_H
#define REMEX_TEST_HELPER_FAKE_H

#include <stddef.h>

#include "helper_server.h"

/* Writes text to path (created or truncated). 0 on success. */
int fake_write_file(const char *path, const char *text);
/* Creates a file from tmpl ("/tmp/...-XXXXXX", completed in place) holding text. 0 on success. */
int fake_write_tmp(char *tmpl, const char *text);
/* Removes the directory tree dir; nothing when dir is empty. */
void fake_rmtree(const char *dir);
/* Stops s, then removes dir (may be empty). Returns 0: a cmocka group teardown. */
int fake_teardown(struct test_server *s, const char *dir);
/* Stops s, then unlinks each file of the NULL-terminated array files. Returns 0. */
int fake_stop(struct test_server *s, const char *const files[]);

/* Starts `argv` (a server announcing "port N") into s and writes
 * "http://127.0.0.1:PORT" followed by suffix (may be "") into url. 0 on success. */
int fake_start_argv(struct test_server *s, char *const argv[], const char *suffix, char *url,
                    size_t cap);
/* Starts `python3 test/<script> --stdin conf_path` the same way. */
int fake_start(struct test_server *s, const char *script, const char *conf_path, char *url,
               size_t cap);

/* GETs path from the fake at url and returns the integer at key, or at
 * group.key when group is not NULL (0 when absent). Asserts a 200 reply. */
int fake_counter(const char *url, const char *path, const char *group, const char *key);
/* POSTs json to the fake's /_conf hook (merged into its configuration); asserts 200. */
void fake_conf(const char *url, const char *json);

/* Writes n bytes of a position-dependent pattern to path; its "sha256:<hex>" into sum. */
void fake_write_pattern(const char *path, size_t n, char sum[72]);
/* 1 when the files a and b hold the same bytes. */
int fake_files_equal(const char *a, const char *b);

/* Skips the current test unless ready, printing why (the runner reports it). */
#define FAKE_NEED(ready, why)                                                                      \
    do {                                                                                           \
        if (!(ready)) {                                                                            \
            printf("# %s\n", why);                                                                 \
            fflush(stdout);                                                                        \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Asserts call returns REMEX_OK, naming the error (in a struct remex_error e) otherwise. */
#define ASSERT_OK(call)                                                                            \
    do {                                                                                           \
        remex_err rc_ = (call);                                                                    \
        if (rc_ != REMEX_OK)                                                                       \
            fail_msg("%s: %s", #call, e.msg);                                                      \
    } while (0)

/* The GCP fixture: test/fake_gcp.py trusting key.pem, and service-account key
 * files for it (keyjson) and for another key it does not trust (otherjson). */
struct gcp_fake {
    struct test_server srv;
    int have_crypto; /* 0: python3-cryptography missing, nothing started */
    char dir[64], pem[128], keyjson[128], otherjson[128], conf[128], url[64], token_uri[96];
};

/* Starts it; conf_extra is appended to the fake's CONF object (members after
 * key_pem, email, buckets ["remex-b"], project "proj-1" and token_ttl 3600).
 * 0 on success, also when the fixture is skipped (have_crypto 0). */
int gcp_fake_start(struct gcp_fake *g, const char *conf_extra);
/* Stops it and removes its files. Returns 0. */
int gcp_fake_stop(struct gcp_fake *g);

/* Skips the current test (with the reason printed) when g has no fake. */
#define GCP_NEED_FAKE(g)                                                                           \
    FAKE_NEED((g).have_crypto, "python3-cryptography missing: the fake cannot verify RS256")

#endif
