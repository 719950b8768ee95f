/* helper_server: test server processes announced by "port N" on stdout. */
#include "helper_server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static unsigned read_port(int fd)
{
    char line[64];
    size_t n = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (n + 1 < sizeof(line) && poll(&p, 1, 20000) == 1) {
        if (read(fd, line + n, 1) != 1)
            return 0;
        if (line[n] == '\n') {
            line[n] = '\0';
            return strncmp(line, "port ", 5) == 0 ? (unsigned)strtoul(line + 5, NULL, 10) : 0;
        }
        n++;
    }
    return 0;
}

int test_server_start(struct test_server *s, char *const argv[])
{
    int in[2], out[2];
    posix_spawn_file_actions_t fa;
    s->pid = -1;
    s->stdin_fd = -1;
    s->port = 0;
    if (pipe2(in, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    if (posix_spawnp(&s->pid, argv[0], &fa, NULL, argv, environ) != 0)
        s->pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    s->stdin_fd = in[1];
    s->port = s->pid > 0 ? read_port(out[0]) : 0;
    close(out[0]);
    if (s->port == 0) {
        test_server_stop(s);
        return -1;
    }
    return 0;
}

void test_server_stop(struct test_server *s)
{
    int st;
    if (s->stdin_fd >= 0)
        close(s->stdin_fd);
    s->stdin_fd = -1;
    if (s->pid <= 0)
        return;
    for (int i = 0; i < 50 && waitpid(s->pid, &st, WNOHANG) == 0; i++)
        usleep(100000);
    if (waitpid(s->pid, &st, WNOHANG) == 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &st, 0);
    }
    s->pid = -1;
}
