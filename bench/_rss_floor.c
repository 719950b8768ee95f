/*
 * The resident-memory floor of remex-worker: a program linked with exactly the
 * worker's libraries (libcurl, jansson, libyaml, OpenSSL), which starts them
 * the way the worker does against an http plane (gnutls's implicit init
 * skipped, http_global_init(0)) and then does nothing. Whatever it holds
 * resident is the cost of those libraries before remex does any work, so the
 * worker's idle RSS reads as a ratio to it.
 *
 *   _rss_floor        prints "ready" on stdout, then sleeps until killed
 */
#include <stdio.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/ssl.h>
#include <yaml.h>

#include "remex/http.h"

/* Same definition as cmd/remex-worker/main.c: see the comment there. */
int _gnutls_global_init_skip(void);
int _gnutls_global_init_skip(void)
{
    return 1;
}

int main(void)
{
    struct remex_error e;
    if (http_global_init(0, &e) != REMEX_OK) {
        fprintf(stderr, "rss_floor: %s\n", e.msg);
        return 1;
    }
    /* Keep jansson, libyaml and libssl linked under --as-needed, as in the worker. */
    json_t *j = json_object();
    json_decref(j);
    if (yaml_get_version_string() == NULL || OpenSSL_version_num() == 0)
        return 1;
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
