/* gitbundle: git repositories as bundles through libgit2 (include/remex/gitbundle.h). */
#include "remex/gitbundle.h"

#include <errno.h>
#include <ftw.h>
#include <git2.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remex/bundle.h"
#include "remex/fsutil.h"
#include "remex/knownhosts.h"

int gitbundle_is_sha(const char *s)
{
    size_t n = 0;
    for (; s && s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return 0;
    return n == 40;
}

int gitbundle_checkout_path(const char *dir, const char *sha, char *path, size_t pathsz)
{
    int n = snprintf(path, pathsz, "%s/%s", dir, sha);
    return n > 0 && (size_t)n < pathsz ? 0 : -1;
}

void gitbundle_safe_url(const char *url, char *out, size_t outsz)
{
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
    if (at && (!slash || at < slash))
        snprintf(out, outsz, "%.*s%s", (int)(scheme + 3 - url), url, at + 1);
    else
        snprintf(out, outsz, "%s", url);
}

/* Credential and host key callbacks' state: one attempt per fetch, so a refused credential
 * fails at once. */
struct cred {
    const struct gitbundle_opts *o;
    int cancelled;
    int tries;
    int refused;     /* credentials refused, or none to give */
    int ssh;         /* the credential asked for was an SSH key */
    int hostkey_bad; /* the SSH server's key is not the known one */
    char why[512];   /* not secret */
};

static int refuse(struct cred *c, const char *why)
{
    if (why)
        snprintf(c->why, sizeof(c->why), "%s", why);
    c->refused = 1;
    return GIT_EUSER;
}

static int cred_token(struct cred *c, git_credential **out, const char *user)
{
    char *tok = NULL;
    struct remex_error e;
    if (c->o->token == NULL || c->o->token->kind == CFG_SECRET_NONE)
        return refuse(c, "the server asks for credentials and none are set");
    if (cfg_secret_get(c->o->token, &tok, NULL, &e) != REMEX_OK)
        return refuse(c, e.msg);
    int rc = git_credential_userpass_plaintext_new(out, user && *user ? user : "remex", tok);
    cfg_secret_free(tok);
    return rc;
}

static int cred_ssh(struct cred *c, git_credential **out, const char *user)
{
    const struct gitbundle_opts *o = c->o;
    char *pass = NULL;
    struct remex_error e;
    c->ssh = 1;
    user = user && *user ? user : "git";
    if (o->ssh_key == NULL && o->ssh_agent)
        return git_credential_ssh_key_from_agent(out, user);
    if (o->ssh_key == NULL)
        return refuse(c, "the server asks for an SSH key and neither ssh_key nor ssh_agent "
                         "is set");
    if (o->ssh_passphrase && o->ssh_passphrase->kind != CFG_SECRET_NONE &&
        cfg_secret_get(o->ssh_passphrase, &pass, NULL, &e) != REMEX_OK)
        return refuse(c, e.msg);
    int rc = git_credential_ssh_key_new(out, user, NULL, o->ssh_key, pass);
    cfg_secret_free(pass);
    return rc;
}

static int cred_cb(git_credential **out, const char *url, const char *user, unsigned allowed,
                   void *payload)
{
    struct cred *c = payload;
    (void)url;
    if (allowed & GIT_CREDENTIAL_USERNAME)
        return git_credential_username_new(out, user && *user ? user : "git");
    if (c->tries++ > 0)
        return refuse(c, NULL);
    if (allowed & GIT_CREDENTIAL_SSH_KEY)
        return cred_ssh(c, out, user);
    if (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT)
        return cred_token(c, out, user);
    return refuse(c, "the server asks for a kind of credentials remex does not offer");
}

/* The port of an ssh:// URL (22 for scp-like "host:path" and without one). */
static int url_port(const char *url)
{
    const char *h = strstr(url, "://");
    if (h == NULL)
        return 22;
    h += 3;
    const char *slash = strchr(h, '/'), *at = strchr(h, '@');
    if (at && (!slash || at < slash))
        h = at + 1;
    const char *colon = strchr(h, ':');
    if (colon == NULL || (slash && colon > slash))
        return 22;
    long p = strtol(colon + 1, NULL, 10);
    return p > 0 && p < 65536 ? (int)p : 22;
}

/*
 * SSH host keys are checked against known_hosts (libgit2 1.5 does not); TLS
 * certificates keep libgit2's own verification (GIT_PASSTHROUGH).
 */
static int cert_cb(git_cert *cert, int valid, const char *host, void *payload)
{
    struct cred *c = payload;
    struct remex_error e;
    char kh[PATH_MAX];
    (void)valid;
    if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2)
        return GIT_PASSTHROUGH;
    const git_cert_hostkey *hk = (const git_cert_hostkey *)cert;
    if (c->o->known_hosts)
        snprintf(kh, sizeof(kh), "%s", c->o->known_hosts);
    else
        snprintf(kh, sizeof(kh), "%s/.ssh/known_hosts", getenv("HOME") ? getenv("HOME") : "");
    if (!(hk->type & GIT_CERT_SSH_RAW) || hk->hostkey == NULL) {
        snprintf(c->why, sizeof(c->why), "the server's raw host key is not available");
        c->hostkey_bad = 1;
        return GIT_ECERTIFICATE;
    }
    if (knownhosts_check(kh, host, url_port(c->o->url), (const unsigned char *)hk->hostkey,
                         hk->hostkey_len, &e) != REMEX_OK) {
        snprintf(c->why, sizeof(c->why), "%s", e.msg);
        c->hostkey_bad = 1;
        return GIT_ECERTIFICATE;
    }
    return 0;
}

/* The message of refused credentials: what to check, never a secret. */
static remex_err auth_fail(const struct gitbundle_opts *o, const struct cred *c, const char *url,
                           struct remex_error *e)
{
    if (c->hostkey_bad)
        return remex_seterr(e, REMEX_EAUTH, "bundle '%s': host key check failed for %s: %s",
                            o->name, url, c->why);
    if (c->why[0])
        return remex_seterr(e, REMEX_EAUTH, "bundle '%s': authentication failed for %s: %s",
                            o->name, url, c->why);
    if (c->ssh && o->ssh_key)
        return remex_seterr(e, REMEX_EAUTH,
                            "bundle '%s': authentication failed for %s: check the SSH key in %s "
                            "(and its passphrase)",
                            o->name, url, o->ssh_key);
    if (c->ssh)
        return remex_seterr(e, REMEX_EAUTH,
                            "bundle '%s': authentication failed for %s: check the keys "
                            "ssh-agent holds (SSH_AUTH_SOCK)",
                            o->name, url);
    const char *src = o->token && o->token->source ? o->token->source : "the configuration";
    return remex_seterr(e, REMEX_EAUTH,
                        "bundle '%s': authentication failed for %s: check the token in %s", o->name,
                        url, src);
}

/* The remex error for a failed libgit2 call. */
static remex_err git_fail(const struct gitbundle_opts *o, const struct cred *c, const char *what,
                          struct remex_error *e)
{
    char url[1024];
    const git_error *ge = git_error_last();
    const char *msg = ge && ge->message ? ge->message : "unknown error";
    gitbundle_safe_url(o->url, url, sizeof(url));
    if (c && (c->refused || c->hostkey_bad))
        return auth_fail(o, c, url, e);
    if (ge &&
        (ge->klass == GIT_ERROR_NET || ge->klass == GIT_ERROR_HTTP || ge->klass == GIT_ERROR_SSL ||
         ge->klass == GIT_ERROR_OS || ge->klass == GIT_ERROR_SSH))
        return remex_seterr(e, REMEX_ECONNECT, "bundle '%s': %s %s: %s", o->name, what, url, msg);
    return remex_seterr(e, REMEX_EIO, "bundle '%s': %s %s: %s", o->name, what, url, msg);
}

static remex_err open_cache(const struct gitbundle_opts *o, git_repository **repo,
                            struct remex_error *e)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/repo.git", o->dir);
    if (n < 0 || (size_t)n >= sizeof(path))
        return remex_seterr(e, REMEX_EINVAL, "bundle '%s': %s: path too long", o->name, o->dir);
    if (fsutil_mkdir_p(o->dir, 0700) != 0)
        return remex_errno(e, REMEX_EIO, "bundle '%s': %s", o->name, o->dir);
    if (git_repository_open_bare(repo, path) == 0)
        return REMEX_OK;
    if (git_repository_init(repo, path, 1) == 0)
        return REMEX_OK;
    return git_fail(o, NULL, "cannot create the cache of", e);
}

/* Resolves ref in the cache: a SHA, a fetched branch, a tag. */
static int resolve(git_repository *repo, const char *ref, git_oid *oid)
{
    char name[512];
    git_object *obj = NULL;
    if (gitbundle_is_sha(ref)) {
        git_oid id;
        if (git_oid_fromstr(&id, ref) != 0 || git_object_lookup(&obj, repo, &id, GIT_OBJECT_ANY))
            return -1;
    } else {
        snprintf(name, sizeof(name), "refs/remotes/origin/%s^{commit}", ref);
        if (git_revparse_single(&obj, repo, name) != 0) {
            snprintf(name, sizeof(name), "refs/tags/%s^{commit}", ref);
            if (git_revparse_single(&obj, repo, name) != 0)
                return -1;
        }
    }
    git_object *commit = NULL;
    int rc = git_object_peel(&commit, obj, GIT_OBJECT_COMMIT);
    git_object_free(obj);
    if (rc != 0)
        return -1;
    git_oid_cpy(oid, git_object_id(commit));
    git_object_free(commit);
    return 0;
}

/* Stops a fetch once o->cancel is set. */
static int progress_cb(const git_indexer_progress *st, void *payload)
{
    struct cred *c = payload;
    (void)st;
    if (c->o->cancel && __atomic_load_n(c->o->cancel, __ATOMIC_RELAXED)) {
        c->cancelled = 1;
        return -1;
    }
    return 0;
}

/* The cache's lock (dir/.lock, held exclusively) or -1 with e set. */
static int lock_cache(const struct gitbundle_opts *o, struct remex_error *e)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/.lock", o->dir);
    if (fsutil_mkdir_p(o->dir, 0700) != 0) {
        remex_errno(e, REMEX_EIO, "bundle '%s': %s", o->name, o->dir);
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        remex_errno(e, REMEX_EIO, "bundle '%s': %s", o->name, path);
        return -1;
    }
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            remex_errno(e, REMEX_EIO, "bundle '%s': lock %s", o->name, path);
            close(fd);
            return -1;
        }
    return fd;
}

static remex_err do_fetch(const struct gitbundle_opts *o, git_repository *repo,
                          struct remex_error *e)
{
    git_remote *remote = NULL;
    struct cred c = {.o = o};
    char *specs[] = {"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"};
    git_strarray rs = {specs, 2};
    git_fetch_options fo;
    git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
    fo.callbacks.credentials = cred_cb;
    fo.callbacks.certificate_check = cert_cb;
    fo.callbacks.transfer_progress = progress_cb;
    fo.callbacks.payload = &c;
    fo.prune = GIT_FETCH_PRUNE;
    fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    git_remote_create_options ro;
    git_remote_create_options_init(&ro, GIT_REMOTE_CREATE_OPTIONS_VERSION);
    ro.repository = repo;
    /* url.*.insteadOf rewriting is skipped: the URL is the configured one (and libgit2
     * 1.5 leaks a PCRE2 match block per config key it tests for it). */
    ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    if (git_remote_create_with_opts(&remote, o->url, &ro) != 0)
        return git_fail(o, NULL, "bad repository URL", e);
    int rc = git_remote_fetch(remote, &rs, &fo, "remex fetch");
    git_remote_free(remote);
    if (rc != 0 && c.cancelled)
        return remex_seterr(e, REMEX_ECLOSED, "bundle '%s': fetch stopped (shutting down)",
                            o->name);
    return rc == 0 ? REMEX_OK : git_fail(o, &c, "cannot fetch", e);
}

remex_err gitbundle_fetch(const struct gitbundle_opts *o, char sha[GITBUNDLE_SHA_HEX],
                          struct remex_error *e)
{
    git_repository *repo = NULL;
    const char *ref = o->ref && *o->ref ? o->ref : "main";
    git_oid oid;
    remex_err rc;
    int lk = lock_cache(o, e);
    if (lk < 0)
        return e->code;
    git_libgit2_init();
    if ((rc = open_cache(o, &repo, e)) != REMEX_OK) {
        git_libgit2_shutdown();
        close(lk);
        return rc;
    }
    /* A pinned commit already in the cache needs no network. */
    if (!gitbundle_is_sha(ref) || resolve(repo, ref, &oid) != 0) {
        rc = do_fetch(o, repo, e);
        if (rc == REMEX_OK && resolve(repo, ref, &oid) != 0) {
            char url[1024];
            gitbundle_safe_url(o->url, url, sizeof(url));
            if (gitbundle_is_sha(ref))
                rc = remex_seterr(e, REMEX_ENOTFOUND,
                                  "bundle '%s': commit %s is on no branch or tag of %s (was it "
                                  "force-pushed away?)",
                                  o->name, ref, url);
            else
                rc = remex_seterr(e, REMEX_ENOTFOUND,
                                  "bundle '%s': tracking_ref '%s' is no branch, tag or commit "
                                  "of %s",
                                  o->name, ref, url);
        }
    }
    if (rc == REMEX_OK)
        git_oid_tostr(sha, GITBUNDLE_SHA_HEX, &oid);
    git_repository_free(repo);
    git_libgit2_shutdown();
    close(lk);
    return rc;
}

static remex_err checkout_into(const struct gitbundle_opts *o, git_repository *repo,
                               const char *sha, const char *tmp, struct remex_error *e)
{
    git_oid oid;
    git_commit *commit = NULL;
    git_tree *tree = NULL;
    git_checkout_options co;
    remex_err rc = REMEX_OK;
    if (git_oid_fromstr(&oid, sha) != 0 || git_commit_lookup(&commit, repo, &oid) != 0)
        return remex_seterr(e, REMEX_ENOTFOUND, "bundle '%s': commit %s is not in the cache",
                            o->name, sha);
    git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
    co.checkout_strategy = GIT_CHECKOUT_FORCE;
    co.target_directory = tmp;
    if (git_commit_tree(&tree, commit) != 0 ||
        git_checkout_tree(repo, (git_object *)tree, &co) != 0)
        rc = git_fail(o, NULL, "cannot check out", e);
    git_tree_free(tree);
    git_commit_free(commit);
    return rc;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0; /* best effort: go on with the rest */
}

/* Removes a temporary checkout that failed half-way (or lost a race); never follows links. */
static void remove_tree(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

remex_err gitbundle_checkout(const struct gitbundle_opts *o, const char *sha, char *path,
                             size_t pathsz, struct remex_error *e)
{
    struct stat st;
    char tmp[PATH_MAX];
    git_repository *repo = NULL;
    remex_err rc;
    if (!gitbundle_is_sha(sha))
        return remex_seterr(e, REMEX_EINVAL, "bundle '%s': version '%s' is not a commit SHA",
                            o->name, sha);
    if (gitbundle_checkout_path(o->dir, sha, path, pathsz) != 0)
        return remex_seterr(e, REMEX_EINVAL, "bundle '%s': %s: path too long", o->name, o->dir);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return REMEX_OK;
    snprintf(tmp, sizeof(tmp), "%s/.tmp-%s-%d", o->dir, sha, (int)getpid());
    int lk = lock_cache(o, e);
    if (lk < 0)
        return e->code;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) { /* made while this call waited */
        close(lk);
        return REMEX_OK;
    }
    git_libgit2_init();
    if ((rc = open_cache(o, &repo, e)) == REMEX_OK) {
        rc = checkout_into(o, repo, sha, tmp, e);
        if (rc == REMEX_OK && rename(tmp, path) != 0 && errno != EEXIST && errno != ENOTEMPTY)
            rc = remex_errno(e, REMEX_EIO, "bundle '%s': %s", o->name, path);
        if (stat(tmp, &st) == 0)
            remove_tree(tmp); /* failed, or another process made the same checkout first */
    }
    git_repository_free(repo);
    git_libgit2_shutdown();
    close(lk);
    return rc;
}

size_t gitbundle_prune(const char *dir, size_t keep, const char *const *spare, size_t n,
                       size_t *held)
{
    return bundle_prune_dir(dir, keep, spare, n, held);
}
