"""What the benchmarks share: where the binaries are, a real remex-plane on
loopback (its configuration, start, readiness, admin token, minted agent
tokens), calls to it, and the figures they take from /proc.

A plane started here listens on a port the kernel chooses (its log says
"listening on 127.0.0.1:N", read to learn it) unless the caller's extra
configuration sets listen itself; its state lives in the caller's folder.
"""
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

BIN = os.environ.get("REMEX_BIN") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "bin")
BUILD = os.environ.get("REMEX_BUILD") or os.path.dirname(BIN)


def http(method, url, body=None, token=None, timeout=60, ctx=None):
    """One request; the reply body (bytes). body is sent as JSON when not None."""
    data = json.dumps(body).encode() if body is not None else None
    rq = urllib.request.Request(url, data=data, method=method)
    if token:
        rq.add_header("Authorization", "Bearer " + token)
    if data is not None:
        rq.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(rq, timeout=timeout, context=ctx) as r:
        return r.read()


def free_port():
    """A TCP port on 127.0.0.1 free at the time of the call."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def ts(s):
    """Epoch seconds of an RFC 3339 timestamp of the plane."""
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def wait(pred, timeout, step=0.02):
    """pred()'s first true value within timeout seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def mem_kb(pid):
    """(RSS, PSS, anonymous) in KiB: shared library pages count fully in RSS only;
    anonymous memory (heap, stacks) is what this process itself allocated."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        t = f.read()
    g = lambda k: int(re.search(k + r":\s+(\d+)", t).group(1))  # noqa: E731
    return g("Rss"), g("Pss"), g("Anonymous")


def cpu_s(pid, children=False):
    """CPU seconds (user + system) pid used so far; with children, the pair
    (own, reaped children)."""
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    own = (int(v[11]) + int(v[12])) / hz
    return (own, (int(v[13]) + int(v[14])) / hz) if children else own


def write(folder, name, text):
    """Writes text to folder/name; returns its path."""
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def start(log_path, argv, session=False):
    """Starts argv with its stdout and stderr in log_path (opened w+, kept for reading);
    in its own session with session. Returns (Popen, the log file)."""
    log = open(log_path, "w+")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=session), log


def stop(procs, group=False):
    """Ends procs, last started first: SIGKILL to each one's process group
    (group: they were started in their own session, with their task
    children), else SIGTERM and 30 s to exit before SIGKILL."""
    for p in reversed(procs):
        if group:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
            continue
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Plane:
    """A remex-plane in folder tmp. extra: more lines of its configuration;
    scheme "https" when extra configures TLS (ctx then trusts its certificate);
    session: in its own session (stop(..., group=True) ends it); timeout: of
    each call, seconds."""

    def __init__(self, tmp, extra="", scheme="http", ctx=None, session=False, timeout=60):
        self.tmp, self.ctx, self.timeout = tmp, ctx, timeout
        conf = write(tmp, "plane.yaml", f'listen: "127.0.0.1:0"\ndb_path: "{tmp}/plane.db"\n'
                     f'admin_token_file: "{tmp}/admin.token"\n'
                     f'signing_key_file: "{tmp}/signing.key"\n' + extra)
        self.proc, self.log = start(os.path.join(tmp, "plane.log"), [
            os.path.join(BIN, "remex-plane"), "-c", conf, "--log-level", "info"], session)
        self.url = None
        for _ in range(400):
            self.log.seek(0)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log.read())
            if m:
                self.url = f"{scheme}://127.0.0.1:{m.group(1)}"
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.025)
        if self.url is None:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("remex-plane did not start: " + self.logtext()[-2000:])
        with open(os.path.join(tmp, "admin.token")) as f:
            self.admin = f.read().strip()

    def logtext(self):
        self.log.seek(0)
        return self.log.read()

    def req(self, method, path, body=None):
        """An admin call: the JSON reply, or None for an empty one."""
        raw = http(method, self.url + path, body, self.admin, self.timeout, self.ctx)
        return json.loads(raw) if raw else None

    def put_dag(self, dag):
        """Stores dag as bundle main's version v1 (as a dag-processor would)."""
        dag = dict({"fileloc": "bench.yaml"}, **dag)
        self.req("PUT", f"/api/v1/dags/{dag['dag_id']}",
                 {"bundle": {"name": "main", "version": "v1"}, "dag": dag})

    def wait_agents(self, n, timeout=10):
        """Waits (up to timeout seconds) until n agents are registered."""
        return wait(lambda: len(self.req("GET", "/api/v1/admin/agents").get("agents", [])) >= n,
                    timeout, 0.025)

    def agent_token(self, name="bench", expires_in=3600):
        """Mints an agent token; the path of the file (mode 0600) that holds it."""
        tok = self.req("POST", "/api/v1/admin/tokens", {"name": name, "expires_in": expires_in})
        self.token_file = write(self.tmp, "agent.token", tok["value"] + "\n")
        os.chmod(self.token_file, 0o600)
        return self.token_file

    def agent_yaml(self, name, body):
        """Writes the agent configuration tmp/name: the plane: section (this plane,
        the last token minted) followed by body (which may go on with more plane:
        keys, indented). Returns its path."""
        return write(self.tmp, name, f"plane:\n  url: {self.url}\n"
                     f"  token: {{file: {self.token_file}}}\n" + body)
