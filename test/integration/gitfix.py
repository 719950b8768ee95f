"""Real git servers on loopback for the git bundle tests: `git daemon`
(git://) and `git http-backend` behind a small threaded HTTP server that asks
for basic auth (the token is the password), plus a working clone to push
commits from. Only 127.0.0.1 is ever used."""
import base64
import http.server
import os
import shutil
import subprocess
import threading
import time

import harness

GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@x", GIT_CONFIG_NOSYSTEM="1", HOME="/nonexistent")


def git(*args, cwd=None):
    out = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True,
                         text=True, timeout=60)
    return out.stdout.strip()


class GitRepo:
    """A bare repository under root/srv/NAME.git and a working clone to commit from."""

    def __init__(self, root, name="repo"):
        self.srv = os.path.join(root, "srv")
        self.bare = os.path.join(self.srv, name + ".git")
        self.work = os.path.join(root, "work-" + name)
        os.makedirs(self.srv, exist_ok=True)
        git("init", "-q", "--bare", "-b", "main", self.bare)
        git("init", "-q", "-b", "main", self.work)
        git("remote", "add", "origin", self.bare, cwd=self.work)

    def commit(self, files, msg="c"):
        for rel, (text, mode) in files.items():
            p = os.path.join(self.work, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)
            os.chmod(p, mode)
        git("add", "-A", cwd=self.work)
        git("commit", "-qm", msg, cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


class GitDaemon:
    def __init__(self, case, srv):
        self.port = harness.free_port()
        self.proc = case.spawn("git-daemon", [
            "git", "daemon", "--export-all", "--reuseaddr", f"--base-path={srv}",
            "--listen=127.0.0.1", f"--port={self.port}", srv])
        harness.wait_port(self.port, 15)
        self.url = f"git://127.0.0.1:{self.port}"


class GitHttp:
    """git http-backend as CGI behind basic auth; counts the requests it refused."""

    def __init__(self, srv, token, delay=0.0):
        """delay: seconds each authorised request waits first (a slow server, so that
        tests can have several tasks wait for one fetch)."""
        self.refused = 0
        self.served = 0
        backend = shutil.which("git-http-backend") or "/usr/lib/git-core/git-http-backend"
        fix = self
        want = "Basic " + base64.b64encode(b"remex:" + token.encode()).decode()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def handle_one(self):
                if self.headers.get("Authorization") != want:
                    fix.refused += 1
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="remex"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                fix.served += 1
                if delay:
                    time.sleep(delay)
                path, _, query = self.path.partition("?")
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                env = dict(GIT_ENV, GIT_PROJECT_ROOT=srv, GIT_HTTP_EXPORT_ALL="1",
                           PATH_INFO=path, QUERY_STRING=query, REQUEST_METHOD=self.command,
                           CONTENT_TYPE=self.headers.get("Content-Type", ""),
                           CONTENT_LENGTH=str(len(body)), REMOTE_USER="remex",
                           REMOTE_ADDR="127.0.0.1")
                out = subprocess.run([backend], input=body, env=env, capture_output=True,
                                     timeout=60).stdout
                head, _, rest = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.split(b"\r\n"):
                    k, _, v = line.decode().partition(":")
                    if k.lower() == "status":
                        status = int(v.strip().split()[0])
                    elif k:
                        headers.append((k, v.strip()))
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(rest)))
                self.end_headers()
                self.wfile.write(rest)

            do_GET = handle_one
            do_POST = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class GitSshd:
    """sshd from Debian on a loopback port: host key and client keys made here, key-only
    login for the current user (StrictModes off: the files live in the test's temp dir).
    As root, sshd needs its privilege separation folder /run/sshd (what the Debian package
    creates at boot); without it, or without sshd, the SSH tests are skipped with the reason."""

    SSHD = "/usr/sbin/sshd"

    @staticmethod
    def unavailable():
        if not os.path.exists(GitSshd.SSHD):
            return "sshd not installed (openssh-server, mk/deps-extra.txt)"
        if os.geteuid() == 0:
            try:
                os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
            except OSError as e:
                return f"sshd needs /run/sshd as root: {e}"
        return None

    def __init__(self, case, root):
        self.dir = os.path.join(root, "sshd")
        os.makedirs(self.dir, mode=0o700)
        self.hostkey = os.path.join(self.dir, "host_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.hostkey],
                       check=True, timeout=30)
        self.user = pwd_name()
        self.auth = os.path.join(self.dir, "authorized_keys")
        open(self.auth, "w").close()
        self.port = harness.free_port()
        cfg = os.path.join(self.dir, "sshd_config")
        with open(cfg, "w") as f:
            f.write(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.hostkey}\n"
                    f"PidFile {self.dir}/sshd.pid\nAuthorizedKeysFile {self.auth}\n"
                    "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
                    f"AllowUsers {self.user}\nLogLevel VERBOSE\n")
        self.proc = case.spawn("sshd", [self.SSHD, "-D", "-e", "-f", cfg])
        harness.wait_port(self.port, 15)
        with open(self.hostkey + ".pub") as f:
            typ, key = f.read().split()[:2]
        self.known_hosts_line = f"[127.0.0.1]:{self.port} {typ} {key}\n"

    def client_key(self, name, passphrase="", authorize=True):
        path = os.path.join(self.dir, name)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", path],
                       check=True, timeout=30)
        if authorize:
            with open(path + ".pub") as src, open(self.auth, "a") as dst:
                dst.write(src.read())
        return path

    def url(self, bare):
        return f"ssh://{self.user}@127.0.0.1:{self.port}{bare}"


def pwd_name():
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name
