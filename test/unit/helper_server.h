/*
 * helper_server: starts a test server process (s3rver, fake Vault, ...) that
 * prints "port N" on stdout once listening and exits when its stdin closes.
 */
#ifndef REMEX_TEST_HELPER_SERVER_H
#define REMEX_TEST_HELPER_SERVER_H

#include <sys/types.h>

struct test_server {
    pid_t pid;     /* -1 when not running */
    int stdin_fd;  /* closing it stops the server */
    unsigned port; /* 0 until ready */
};

/* Spawns argv (PATH searched) and waits up to 20 s for "port N". 0 on success. */
int test_server_start(struct test_server *s, char *const argv[]);
/* Closes its stdin, waits up to 5 s, then SIGKILLs it. */
void test_server_stop(struct test_server *s);

#endif
