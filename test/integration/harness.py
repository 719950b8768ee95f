"""Integration test harness for remex.

Starts real binaries on free loopback ports, waits for readiness, collects
their logs when a test fails, and always kills what it started (whole process
groups, so grandchildren go too). Only 127.0.0.0/8 is ever contacted.

    class T(harness.TestCase):
        def test_x(self):
            port = harness.free_port()
            p = self.spawn("plane", [self.bin("remex-plane"), "-c", cfg])
            harness.wait_port(port)
"""
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

ROOT = os.environ.get("REMEX_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("REMEX_BUILD") or os.path.join(ROOT, "build")
BIN = os.environ.get("REMEX_BIN") or os.path.join(BUILD, "bin")
SAN = os.environ.get("REMEX_SAN", "0") == "1"
# Sanitizer builds run slower: scale every readiness deadline.
SLOW = 3.0 if SAN else 1.0


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    """Polls pred() until it returns a truthy value (returned) or times out (AssertionError)."""
    deadline = time.monotonic() + timeout * SLOW
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - readiness probes fail in many ways
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout * SLOW:.1f}s waiting for {what}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port, timeout=10.0):
    wait_for(lambda: port_open(port), timeout, what=f"127.0.0.1:{port} to accept")


def http(method, url, body=None, token=None, headers=None, timeout=10.0):
    """Loopback HTTP request. Returns (status, headers, body bytes); never raises on 4xx/5xx."""
    assert url.startswith("http://127.") or url.startswith("https://127."), url
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
    if token:
        hdrs["Authorization"] = "Bearer " + token
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except urllib.error.URLError as e:
        # A server may answer (413, 401) and close before it has read a large
        # body: the send fails, the answer is there to read.
        if data is None or not isinstance(e.reason, (BrokenPipeError, ConnectionResetError)):
            raise
        return _http_early_answer(method, url, data, hdrs, timeout)


def _http_early_answer(method, url, data, hdrs, timeout):
    """Sends the request over a plain socket, tolerating a close while the body
    is sent, and reads the answer that came before it (Connection: close)."""
    hostport, _, path = url.split("://", 1)[1].partition("/")
    host, _, port = hostport.partition(":")
    head = [f"{method} /{path} HTTP/1.1", f"Host: {hostport}", "Connection: close",
            f"Content-Length: {len(data)}"] + [f"{k}: {v}" for k, v in hdrs.items()]
    s = socket.create_connection((host, int(port or 80)), timeout=timeout)
    try:
        try:
            s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            raw += chunk
    finally:
        s.close()
    head_b, _, body = raw.partition(b"\r\n\r\n")
    lines = head_b.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        raise ConnectionError(f"no answer from {url} before the connection closed")
    status = int(lines[0].split()[1])
    headers = dict(ln.split(": ", 1) for ln in lines[1:] if ": " in ln)
    n = headers.get("Content-Length") or headers.get("content-length")
    return status, headers, body[: int(n)] if n else body


def http_json(method, url, body=None, token=None, timeout=10.0):
    """Like http() but decodes a JSON reply (None when the body is empty)."""
    st, hd, raw = http(method, url, body, token, timeout=timeout)
    return st, (json.loads(raw) if raw else None)


class Proc:
    """A started process (own session/process group) with its output in a log file."""

    def __init__(self, name, argv, env=None, cwd=None, logdir=None, stdin=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.logpath = os.path.join(logdir or tempfile.gettempdir(), f"{name}.log")
        self._log = open(self.logpath, "ab")
        full_env = dict(os.environ)
        if env:
            full_env.update({k: str(v) for k, v in env.items()})
        self.p = subprocess.Popen(self.argv, env=full_env, cwd=cwd, stdout=self._log,
                                  stderr=subprocess.STDOUT, stdin=stdin or subprocess.DEVNULL,
                                  start_new_session=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def wait(self, timeout=10.0):
        """Waits for exit; returns the exit code (negative: killed by that signal)."""
        return self.p.wait(timeout=timeout * SLOW)

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self, grace=3.0):
        """SIGTERM to the whole group, SIGKILL after grace seconds. Idempotent."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.p.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # leftover grandchildren in the group
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()

    def output(self):
        if not self._log.closed:
            self._log.flush()
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_output(self, needle, timeout=10.0):
        """Waits until needle appears in the output; returns the whole output."""
        return wait_for(lambda: needle in self.output() and self.output(), timeout,
                        what=f"{self.name} to print {needle!r}")


class TcpProxy:
    """A loopback TCP proxy the test can pause (stop forwarding, keep sockets)
    or cut (drop every connection and refuse new ones) to simulate partitions."""

    def __init__(self, target_port, listen_port=None):
        self.target = ("127.0.0.1", target_port)
        self.port = listen_port or free_port()
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", self.port))
        self.srv.listen(128)
        self.paused = threading.Event()
        self.cutting = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.conns = []
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.stopping.is_set():
            r, _, _ = select.select([self.srv], [], [], 0.1)
            if not r:
                continue
            try:
                c, _ = self.srv.accept()
            except OSError:
                continue
            if self.cutting.is_set():
                c.close()
                continue
            try:
                u = socket.create_connection(self.target, timeout=2)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns.append((c, u))
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()

    def _pump(self, a, b):
        socks = [a, b]
        try:
            while not self.stopping.is_set() and not self.cutting.is_set():
                if self.paused.is_set():
                    time.sleep(0.05)
                    continue
                r, _, _ = select.select(socks, [], [], 0.1)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            pass
        finally:
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass

    def pause(self):
        self.paused.set()

    def resume(self):
        self.paused.clear()
        self.cutting.clear()

    def cut(self):
        """Closes all current connections and refuses new ones until resume()."""
        self.cutting.set()
        with self.lock:
            for c, u in self.conns:
                for s in (c, u):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self.conns.clear()

    def close(self):
        self.stopping.set()
        self.cut()
        self.srv.close()


class TestCase(unittest.TestCase):
    """Gives each test a temp dir, spawn()/proxy() that are always cleaned up,
    and dumps the logs of every started process when the test fails."""

    def bin(self, name):
        path = os.path.join(BIN, name)
        if not os.access(path, os.X_OK):
            self.fail(f"binary not built: {path}")
        return path

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="remex-it-")
        self._procs = []
        self._proxies = []

    def spawn(self, name, argv, env=None, cwd=None):
        p = Proc(name, argv, env=env, cwd=cwd, logdir=self.tmp)
        self._procs.append(p)
        return p

    def spawn_server(self, name, argv, timeout=20):
        """Spawns a server that prints "port N" once listening (test/fakebase.py,
        s3rver.js, azurite.js): (its Proc, N)."""
        p = self.spawn(name, argv)
        out = p.wait_output("port ", timeout=timeout)
        return p, int(re.search(r"port (\d+)", out).group(1))

    def proxy(self, target_port):
        px = TcpProxy(target_port)
        self._proxies.append(px)
        return px

    def write(self, rel, text, mode=0o644):
        path = os.path.join(self.tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def _cleanup_all(self):
        for px in self._proxies:
            px.close()
        for p in reversed(self._procs):
            p.kill()

    def run(self, result=None):
        result = result or self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            super().run(result)
        finally:
            procs = getattr(self, "_procs", [])
            try:
                self._cleanup_all()
            except AttributeError:
                pass
            if len(result.failures) + len(result.errors) > before:
                for p in procs:
                    try:
                        out = p.output()
                    except (OSError, ValueError):
                        continue
                    sys.stdout.write(f"\n---- log of {p.name} ({' '.join(p.argv)}) ----\n")
                    sys.stdout.write(out[-8000:])
                    sys.stdout.write(f"\n---- end of {p.name} ----\n")
            if getattr(self, "tmp", None):
                shutil.rmtree(self.tmp, ignore_errors=True)
        return result
