/* helper_fake: the cloud fakes' servers, hooks, files and the GCP fixture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helper_fake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "remex/http.h"
#include "remex/objstore.h"

int fake_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int fake_write_tmp(char *tmpl, const char *text)
{
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return -1;
    int ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok ? 0 : -1;
}

void fake_rmtree(const char *dir)
{
    char cmd[128];
    if (!dir[0])
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

int fake_teardown(struct test_server *s, const char *dir)
{
    test_server_stop(s);
    fake_rmtree(dir);
    return 0;
}

int fake_stop(struct test_server *s, const char *const files[])
{
    test_server_stop(s);
    for (size_t i = 0; files[i]; i++)
        unlink(files[i]);
    return 0;
}

int fake_start_argv(struct test_server *s, char *const argv[], const char *suffix, char *url,
                    size_t cap)
{
    if (test_server_start(s, argv) != 0)
        return -1;
    snprintf(url, cap, "http://127.0.0.1:%u%s", s->port, suffix);
    return 0;
}

int fake_start(struct test_server *s, const char *script, const char *conf_path, char *url,
               size_t cap)
{
    char path[128];
    snprintf(path, sizeof(path), "test/%s", script);
    char *argv[] = {"python3", path, "--stdin", (char *)conf_path, NULL};
    return fake_start_argv(s, argv, "", url, cap);
}

/* One request to the fake; its reply into r (the caller frees it). */
static void fake_do(const char *url, const char *method, const char *path, const char *json,
                    struct http_response *r)
{
    struct http_client *c;
    struct http_client_opts o = {.base_url = url, .max_attempts = 1};
    struct http_request req = {.method = method,
                               .path = path,
                               .body = json,
                               .body_len = json ? strlen(json) : 0,
                               .content_type = json ? "application/json" : NULL};
    assert_int_equal(http_client_new(&o, &c, NULL), REMEX_OK);
    assert_int_equal(http_do(c, &req, r, NULL), REMEX_OK);
    http_client_free(c);
}

int fake_counter(const char *url, const char *path, const char *group, const char *key)
{
    struct http_response r;
    fake_do(url, "GET", path, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body.data, r.body.len, 0, NULL); /* owned */
    json_t *in = group ? json_object_get(j, group) : j;       /* borrowed */
    int n = (int)json_integer_value(json_object_get(in, key));
    json_decref(j);
    http_response_free(&r);
    return n;
}

void fake_conf(const char *url, const char *json)
{
    struct http_response r;
    fake_do(url, "POST", "/_conf", json, &r);
    assert_int_equal(r.status, 200);
    http_response_free(&r);
}

void fake_write_pattern(const char *path, size_t n, char sum[72])
{
    FILE *f = fopen(path, "wb");
    char *b = malloc(n ? n : 1);
    assert_non_null(f);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)((i * 131u + i / 4096u) & 0xff);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    objstore_checksum(b, n, sum);
    free(b);
}

int fake_files_equal(const char *a, const char *b)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

/* A service-account key JSON for the PEM at pem_path, with the fake's token URI. */
static int write_key(const char *out, const char *pem_path, const char *token_uri)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import json,sys; print(json.dumps({\"type\": \"service_account\", "
             "\"client_email\": \"remex@proj.iam.gserviceaccount.com\", \"private_key\": "
             "open(sys.argv[1]).read(), \"token_uri\": sys.argv[2]}))' %s %s > %s",
             pem_path, token_uri, out);
    return system(cmd) == 0 ? 0 : -1;
}

int gcp_fake_start(struct gcp_fake *g, const char *conf_extra)
{
    char cmd[512], other[128], text[1024];
    g->srv = (struct test_server){.pid = -1, .stdin_fd = -1};
    if (system("python3 -c 'import cryptography' 2>/dev/null") != 0)
        return 0;
    g->have_crypto = 1;
    snprintf(g->dir, sizeof(g->dir), "/tmp/remex-gcp-XXXXXX");
    if (!mkdtemp(g->dir))
        return -1;
    snprintf(g->pem, sizeof(g->pem), "%s/key.pem", g->dir);
    snprintf(other, sizeof(other), "%s/other.pem", g->dir);
    snprintf(g->keyjson, sizeof(g->keyjson), "%s/key.json", g->dir);
    snprintf(g->otherjson, sizeof(g->otherjson), "%s/other.json", g->dir);
    snprintf(g->conf, sizeof(g->conf), "%s/conf.json", g->dir);
    snprintf(cmd, sizeof(cmd),
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null && "
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null",
             g->pem, other);
    if (system(cmd) != 0)
        return -1;
    snprintf(text, sizeof(text),
             "{\"key_pem\": \"%s\", \"email\": \"remex@proj.iam.gserviceaccount.com\","
             " \"buckets\": [\"remex-b\"], \"project\": \"proj-1\", \"token_ttl\": 3600, %s}",
             g->pem, conf_extra);
    if (fake_write_file(g->conf, text) != 0 ||
        fake_start(&g->srv, "fake_gcp.py", g->conf, g->url, sizeof(g->url)) != 0)
        return -1;
    snprintf(g->token_uri, sizeof(g->token_uri), "%s/token", g->url);
    return write_key(g->keyjson, g->pem, g->token_uri) ||
                   write_key(g->otherjson, other, g->token_uri)
               ? -1
               : 0;
}

int gcp_fake_stop(struct gcp_fake *g)
{
    return fake_teardown(&g->srv, g->dir);
}
