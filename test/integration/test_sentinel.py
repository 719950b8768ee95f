"""remex-sentinel against a real plane on loopback: registration, /health and
/metrics, health reports shown by `remexctl agents show`, the supervisor's
control socket (a small fake supervisor here: the sentinel is only its
client, and the fake lets a test make a role FATAL at will), roles watched
through their /healthz, `promtool check metrics`, and a real Prometheus
scraping the sentinel."""
import http.client
import http.server
import json
import time
import os
import shutil
import socket
import struct
import subprocess
import threading
import unittest.mock

import harness
import planefix


class Acceptor:
    """A listening socket served by a thread: handle(conn) gets each accepted
    connection; close() stops the thread, then closes the socket."""

    def __init__(self, sock, backlog):
        self.sock = sock
        sock.listen(backlog)
        sock.settimeout(0.2)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.handle(c)

    def close(self):
        self.stop.set()
        self.t.join(5)
        self.sock.close()


class FakeSupervisor(Acceptor):
    """The server side of <state_dir>/agent.sock: answers {"cmd":"status"} with
    self.status (4-byte big-endian length + JSON frames), mode 0600."""

    def __init__(self, path, status):
        self.path = path
        self.status = status
        self.queries = 0
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o600)
        super().__init__(sock, 8)

    def handle(self, c):
        with c:
            c.settimeout(5)
            try:
                hdr = c.recv(4, socket.MSG_WAITALL)
                n = struct.unpack(">I", hdr)[0]
                req = json.loads(c.recv(n, socket.MSG_WAITALL))
                reply = self.status if req.get("cmd") == "status" else {
                    "ok": False, "error": "unknown command"}
                data = json.dumps(reply).encode()
                c.sendall(struct.pack(">I", len(data)) + data)
                self.queries += 1
            except (OSError, ValueError, struct.error):
                pass


def status(worker_state="up", ready=True, restarts=0, last_exit=None):
    return {"ok": True,
            "agent": {"pid": 1, "state": "running", "ready": ready, "uptime_s": 5},
            "roles": [{"role": "worker", "instance": "worker", "pid": 4242,
                       "state": worker_state, "ready": ready, "uptime_s": 4.5,
                       "restarts": restarts, "last_exit": last_exit,
                       "queues": ["default"], "slots": 4, "free_slots": 3},
                      {"role": "triggerer", "instance": "triggerer", "pid": 4243,
                       "state": "up", "ready": True, "uptime_s": 4.5, "restarts": 0,
                       "last_exit": None}]}


class SilentServer(Acceptor):
    """Accepts TCP connections on loopback, reads what comes and never answers:
    a Vault whose replies are lost. Connections stay open until close()."""

    def __init__(self):
        self.conns = []
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        super().__init__(sock, 16)

    def handle(self, c):
        self.conns.append(c)

    def close(self):
        super().close()
        for c in self.conns:
            c.close()


class SentinelCase(planefix.PlaneCase):
    def setUp(self):
        super().setUp()
        self.start_plane()
        self.state = os.path.join(self.tmp, "state")
        self.bundle = os.path.join(self.tmp, "bundle")
        os.makedirs(self.state)
        os.makedirs(self.bundle)
        os.makedirs(os.path.join(self.tmp, "logs"))
        self.sock = os.path.join(self.state, "agent.sock")
        self.hport = harness.free_port()
        self.base = f"http://127.0.0.1:{self.hport}"
        tok = self.create_token("sentinel")
        self.token_path = self.write("agent.token", tok["value"] + "\n", mode=0o600)
        self.fakes = []

    def tearDown(self):
        for f in self.fakes:
            f.close()

    def config(self, extra_sentinel=""):
        return self.write("agent.yaml", (
            "plane:\n"
            f"  url: {self.url}\n"
            f"  token: {{file: {self.token_path}}}\n"
            + (f"  ca_file: {self.cert}\n" if getattr(self, "cert", None) else "") +
            f"state_dir: {self.state}\n"
            "bundles:\n"
            f"  - {{name: main, path: {self.bundle}}}\n"
            "worker:\n"
            f"  log_dir: {self.tmp}/logs\n"
            "sentinel:\n"
            f"  listen: 127.0.0.1:{self.hport}\n"
            "  interval: 1s\n"
            + extra_sentinel))

    def start_sentinel(self, extra_sentinel=""):
        cfg = self.config(extra_sentinel)
        self.sentinel = self.spawn("sentinel", [self.bin("remex-sentinel"), "-c", cfg])
        self.sentinel.wait_output("registered as agent", timeout=20)
        harness.wait_port(self.hport)
        return self.sentinel

    def health(self):
        st, _, raw = harness.http("GET", self.base + "/health")
        return st, json.loads(raw)

    def check(self, name):
        _, h = self.health()
        return next((c for c in h["checks"] if c["name"] == name), None)

    def metrics(self):
        st, hd, raw = harness.http("GET", self.base + "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(hd["Content-Type"].startswith("text/plain; version=0.0.4"), hd)
        return raw.decode()

    def fake(self, st):
        f = FakeSupervisor(self.sock, st)
        self.fakes.append(f)
        return f


class Registration(SentinelCase):
    def test_registers_serves_health_and_reports_to_the_plane(self):
        self.start_sentinel()
        st, h = self.health()
        self.assertEqual(st, 200, h)
        names = [c["name"] for c in h["checks"]]
        for n in ("plane", "token_expiry", "roles", "secrets", "xcom_store", "bundles", "disk"):
            self.assertIn(n, names)
        self.assertNotIn("tls_certificate", names)  # plain http plane
        # no supervisor here: the roles are unknown, a warning and not a failure
        self.assertEqual(self.check("roles")["status"], "warn")
        self.assertIn("no such socket", self.check("roles")["message"])
        # secrets and xcom_store answer from their own threads, just after the first round
        harness.wait_for(lambda: all(self.check(n)["message"] != "not checked yet"
                                     for n in ("xcom_store", "secrets")), 10, 0.05,
                         "the first answers of the secrets and xcom_store checks")
        for n in ("xcom_store", "bundles", "disk", "secrets"):
            self.assertEqual(self.check(n)["status"], "ok", self.check(n))
        # the plane holds the report
        st, agents = self.req("GET", "/api/v1/admin/agents", token=self.admin)
        self.assertEqual(st, 200)
        ag = next(a for a in agents["agents"] if a["name"] == "sentinel")
        self.assertEqual(ag["roles"], ["sentinel"])
        self.assertEqual(ag["slots"], 0)

        def reported():
            # the secrets and xcom_store checks run on their own threads: a report that
            # left before their first answer says "not checked yet"; their answer is
            # reported as soon as it changes the grade
            _, a = self.req("GET", f"/api/v1/admin/agents/{ag['agent_id']}", token=self.admin)
            checks = {c["name"]: c for c in (a.get("health") or {}).get("checks", [])}
            return checks and checks["xcom_store"]["status"] != "degraded" and a
        a = harness.wait_for(reported, 15, 0.1, "a health report with the XCom store's answer")
        self.assertEqual(a["health"]["status"], "degraded")  # roles: warn -> degraded
        checks = {c["name"]: c for c in a["health"]["checks"]}
        self.assertEqual(checks["xcom_store"]["status"], "ok")
        self.assertEqual(checks["roles"]["status"], "degraded")
        out = subprocess.run(
            [self.bin("remexctl"), "agents", "show", str(ag["agent_id"])], capture_output=True,
            text=True, timeout=30,
            env=dict(os.environ, REMEX_PLANE_URL=self.url,
                     REMEX_ADMIN_TOKEN_FILE=self.conf["admin_token_file"]))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r"xcom_store\s+ok\s+a probe object round-trips")
        self.assertRegex(out.stdout, r"roles\s+degraded\s+supervisor ")
        # the probe object is gone again
        self.assertFalse(os.path.exists(os.path.join(self.state, "xcom", "_sentinel", "probe")))
        m = self.metrics()
        self.assertIn('remex_sentinel_check_status{check="roles"} 1\n', m)
        self.assertIn("remex_agent_plane_up 1\n", m)
        self.assertIn("remex_sentinel_healthy 1\n", m)
        self.assertRegex(m, r"remex_agent_plane_rtt_seconds \d")
        self.assertRegex(m, r'remex_agent_disk_free_bytes\{folder="bundle:main",path="[^"]+"\} \d')
        # SIGTERM: nothing to drain, a clean exit
        self.sentinel.signal(15)
        self.assertEqual(self.sentinel.wait(20), 0)

    def test_token_expiry_and_failing_backends(self):
        shutil.rmtree(self.bundle)
        soon = "2000-01-01T00:00:00Z"
        self.start_sentinel(f"  token_expires_at: '{soon}'\n")
        st, h = self.health()
        self.assertEqual(st, 503, h)
        failing = {c["name"]: c for c in h["checks"]}
        self.assertIn("bundles", failing)
        self.assertIn(self.bundle, failing["bundles"]["message"])
        self.assertEqual(failing["token_expiry"]["message"],
                         "agent token expired at 2000-01-01T00:00:00Z")
        self.assertNotIn("plane", failing)  # a 503 names only what fails
        os.makedirs(self.bundle)

        def bundles_ok():
            _, h = self.health()
            return [c["name"] for c in h["checks"]] == ["token_expiry"]
        harness.wait_for(bundles_ok, 10, 0.1, "the bundle folder to be seen again")
        self.assertIn("remex_agent_token_expiry_timestamp_seconds 946684800\n", self.metrics())

    def test_bundle_freshness_from_the_dag_processor(self):
        # The dag-processor publishes each bundle's last refresh in its metrics file; the
        # sentinel warns when it is older than three intervals (local: 30 s by default).
        dp = os.path.join(self.state, "dag_processor")
        os.makedirs(dp, exist_ok=True)
        prom = os.path.join(dp, "metrics.prom")

        def publish(ts):
            with open(prom + ".tmp", "w") as f:
                f.write('remex_dag_processor_last_refresh_timestamp_seconds{bundle="main"} '
                        f"{ts:.3f}\n")
            os.rename(prom + ".tmp", prom)
        publish(time.time() - 3600)
        self.start_sentinel()
        stale = harness.wait_for(lambda: (lambda c: c and c["status"] == "warn" and c)(
            self.check("bundles")), 15, 0.1, "a stale bundle warning")
        self.assertIn("bundle main: last refreshed", stale["message"])
        publish(time.time())
        fresh = harness.wait_for(lambda: (lambda c: c and c["status"] == "ok" and c)(
            self.check("bundles")), 15, 0.1, "the bundle fresh again")
        self.assertIn("refreshed", fresh["message"])

    def test_plane_gone_fails_health(self):
        self.start_sentinel()
        self.assertEqual(self.check("plane")["status"], "ok")
        self.assertEqual(self.stop_plane(), 0)

        def plane_failing():
            st, h = self.health()
            c = next((c for c in h["checks"] if c["name"] == "plane"), None)
            return st == 503 and c and c["status"] == "fail" and c
        c = harness.wait_for(plane_failing, 20, 0.1, "the plane check to fail")
        self.assertTrue(c["message"].startswith("unreachable"), c)
        m = self.metrics()
        self.assertIn("remex_agent_plane_up 0\n", m)
        self.assertIn('remex_sentinel_check_status{check="plane"} 2\n', m)
        self.assertTrue(self.sentinel.alive())  # it keeps watching and serving

    def test_check_refuses_inconsistent_thresholds(self):
        cfg = self.config("  disk_warn_free: 5\n  disk_fail_free: 20\n")
        p = subprocess.run([self.bin("remex-sentinel"), "-c", cfg, "--check"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 100, p.stdout + p.stderr)
        self.assertIn("sentinel.disk_fail_free: above sentinel.disk_warn_free", p.stderr)
        cfg = self.config().replace(f"listen: 127.0.0.1:{self.hport}", "listen: nowhere")
        with open(cfg, "w") as f:
            f.write(open(self.config()).read().replace(f"127.0.0.1:{self.hport}", "nowhere"))
        p = subprocess.run([self.bin("remex-sentinel"), "-c", cfg, "--check"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 100, p.stdout + p.stderr)
        self.assertRegex(p.stderr, r"agent\.yaml:\d+:\d+: sentinel\.listen: expected ADDRESS:PORT")


class Supervisor(SentinelCase):
    def test_queue_depth_of_the_workers_queues(self):
        # Three task instances wait on the worker's queue (no worker takes them here): the
        # sentinel asks the plane and exposes the depth for an autoscaler.
        self.fake(status())
        st, b = self.req("PUT", "/api/v1/dags/deep",
                         {"bundle": {"name": "main", "version": "v1"},
                          "dag": {"dag_id": "deep", "fileloc": "d.yaml",
                                  "tasks": [{"task_id": f"t{i}", "shell": "true"}
                                            for i in range(3)]}}, self.admin)
        self.assertIn(st, (200, 201), b)
        st, b = self.req("POST", "/api/v1/admin/dags/deep/runs", {}, self.admin)
        self.assertIn(st, (200, 201), b)
        self.start_sentinel()
        harness.wait_for(lambda: 'remex_agent_queue_depth{queue="default"} 3\n' in self.metrics(),
                         15, 0.1, "the queue depth metric")

    def test_fatal_role_turns_health_503(self):
        sup = self.fake(status())
        self.start_sentinel()
        harness.wait_for(lambda: self.check("roles")["status"] == "ok", 15, 0.1,
                         "the roles check to read the supervisor")
        self.assertEqual(self.check("roles")["message"], "2 of 2 roles up and ready")
        self.assertEqual(self.health()[0], 200)
        m = self.metrics()
        self.assertIn('remex_agent_role_up{role="worker",role_instance="worker"} 1\n', m)
        self.assertIn('remex_agent_role_restarts_total{role="worker",role_instance="worker"} 0\n', m)
        self.assertIn('remex_agent_queue_slots_free{queue="default"} 3\n', m)
        self.assertIn('remex_agent_queue_slots_busy{queue="default"} 1\n', m)
        self.assertIn("remex_agent_supervisor_up 1\n", m)
        sup.status = status("fatal", ready=False, restarts=6, last_exit="exit 1")

        def unhealthy():
            st, h = self.health()
            return st == 503 and h
        h = harness.wait_for(unhealthy, 15, 0.1, "/health to turn 503")
        self.assertEqual(h["status"], "fail")
        self.assertEqual([c["name"] for c in h["checks"]], ["roles"])
        self.assertEqual(h["checks"][0]["message"], "worker fatal, last exit 1")
        m = self.metrics()
        self.assertIn('remex_agent_role_state{role="worker",role_instance="worker",state="fatal"} 1\n',
                      m)
        self.assertIn('remex_agent_role_restarts_total{role="worker",role_instance="worker"} 6\n', m)
        self.assertIn('remex_agent_role_up{role="worker",role_instance="worker"} 0\n', m)
        self.assertIn('remex_agent_queue_slots_free{queue="default"} 0\n', m)
        self.assertIn("remex_sentinel_healthy 0\n", m)
        # the plane hears it too
        st, agents = self.req("GET", "/api/v1/admin/agents", token=self.admin)
        aid = next(a for a in agents["agents"] if a["name"] == "sentinel")["agent_id"]

        def plane_failing():
            _, a = self.req("GET", f"/api/v1/admin/agents/{aid}", token=self.admin)
            return (a.get("health") or {}).get("status") == "failing"
        harness.wait_for(plane_failing, 15, 0.1, "the plane to hold a failing report")

    def test_malformed_reply_is_not_trusted(self):
        self.fake({"ok": True, "agent": {"pid": 1, "state": "running"},
                   "roles": [{"role": "worker", "state": "exploded"}]})
        self.start_sentinel()
        harness.wait_for(lambda: "unknown role state" in self.check("roles")["message"], 15, 0.1,
                         "the roles check to refuse the reply")
        self.assertEqual(self.check("roles")["status"], "warn")
        self.assertIn("remex_agent_supervisor_up 0\n", self.metrics())


class _Healthz(http.server.BaseHTTPRequestHandler):
    code = 200

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(self.server.code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


class XcomStore(SentinelCase):
    def test_a_store_that_never_answers_does_not_stall_the_sentinel(self):
        """xcom.store on S3 whose endpoint accepts and never answers. The store is
        opened with the xcom.s3.* settings, as the worker opens it: the
        environment's endpoint (a closed loopback port) is not the one probed."""
        silent = SilentServer()
        self.fakes.append(silent)
        env = {"AWS_ACCESS_KEY_ID": "AKIDSENTINEL", "AWS_SECRET_ACCESS_KEY": "sentinel-secret",
               "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{harness.free_port()}",
               "AWS_EC2_METADATA_DISABLED": "true"}
        with unittest.mock.patch.dict(os.environ, env):
            self.start_sentinel("xcom:\n  store: s3://probe-bucket/xcom\n  s3:\n"
                                f"    endpoint: http://127.0.0.1:{silent.port}\n"
                                "    region: us-east-1\n")
        harness.wait_for(lambda: silent.conns, 15, 0.05, "the xcom_store check to reach S3")

        def failed():
            c = self.check("xcom_store")
            return c if c and c["status"] == "fail" else None
        bad = harness.wait_for(failed, 10, 0.1, "the xcom_store check to fail at its deadline")
        self.assertEqual(bad["message"], "put of _sentinel/probe: no answer within 1 s")
        t0 = time.monotonic()
        st, _, _ = harness.http("GET", self.base + "/metrics", timeout=5)
        self.assertEqual(st, 200)
        self.assertLess(time.monotonic() - t0, 0.5)
        self.assertEqual(len(silent.conns), 1)  # not started twice
        self.sentinel.signal(15)
        self.assertEqual(self.sentinel.wait(10), 0)
        self.assertIn("xcom_store: still running at stop, not waited for", self.sentinel.output())


class Probes(SentinelCase):
    def test_roles_in_their_own_containers(self):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
        srv.code = 200
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        dead = harness.free_port()
        self.start_sentinel(
            "  roles:\n"
            f"    - {{name: worker, url: 'http://127.0.0.1:{srv.server_port}/healthz'}}\n")
        harness.wait_for(lambda: self.check("roles")["status"] == "ok", 15, 0.1,
                         "the worker's /healthz to be read")
        self.assertIn('remex_agent_role_ready{role="worker",role_instance="worker"} 1\n',
                      self.metrics())
        srv.code = 503
        harness.wait_for(lambda: self.check("roles")["status"] == "warn", 15, 0.1,
                         "a not-ready role to be a warning")
        self.assertEqual(self.check("roles")["message"], "worker: HTTP 503")
        self.sentinel.kill()
        self.start_sentinel(
            "  roles:\n"
            f"    - {{name: worker, url: 'http://127.0.0.1:{srv.server_port}/healthz'}}\n"
            f"    - {{name: triggerer, url: 'http://127.0.0.1:{dead}/healthz'}}\n")

        def down():
            st, h = self.health()
            return st == 503 and h
        h = harness.wait_for(down, 15, 0.1, "an unreachable role to fail /health")
        self.assertIn("triggerer: ", h["checks"][0]["message"])


class Prometheus(SentinelCase):
    def test_promtool_and_a_real_prometheus(self):
        # mk/deps-extra.txt installs it (make deps): missing is a failure, not a skip.
        self.assertTrue(shutil.which("promtool") and shutil.which("prometheus"),
                        "prometheus (Debian package) is not installed: run make deps as root")
        self.fake(status())
        self.start_sentinel()
        harness.wait_for(lambda: self.check("roles")["status"] == "ok", 15, 0.1, "roles")
        m = self.metrics()
        p = subprocess.run(["promtool", "check", "metrics"], input=m, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        pport = harness.free_port()
        cfg = self.write("prometheus.yml", (
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            "  - job_name: remex-sentinel\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{self.hport}']\n"))
        self.spawn("prometheus", [
            "prometheus", f"--config.file={cfg}",
            f"--storage.tsdb.path={self.tmp}/tsdb", f"--web.listen-address=127.0.0.1:{pport}",
            "--log.level=warn"])
        api = f"http://127.0.0.1:{pport}/api/v1"

        def target_up():
            _, t = harness.http_json("GET", api + "/targets")
            act = t["data"]["activeTargets"]
            return act and act[0]["health"] == "up" and act[0]
        harness.wait_for(target_up, 60, 0.5, "Prometheus to scrape the sentinel")

        def queried():
            _, r = harness.http_json(
                "GET", api + "/query?query=remex_agent_role_up%7Brole%3D%22worker%22%7D")
            res = r["data"]["result"]
            return res and res
        res = harness.wait_for(queried, 30, 0.5, "remex_agent_role_up to be queryable")
        # the target's own instance label stays Prometheus's
        self.assertEqual(res[0]["metric"]["role_instance"], "worker")
        self.assertEqual(res[0]["metric"]["instance"], f"127.0.0.1:{self.hport}")
        self.assertEqual(res[0]["value"][1], "1")


class TlsPlane(SentinelCase):
    def setUp(self):
        harness.TestCase.setUp(self)
        self.cert = os.path.join(self.tmp, "tls.crt")
        key = os.path.join(self.tmp, "tls.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", self.cert,
                        "-days", "3", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True,
                       timeout=60)
        self.start_plane(tls={"cert": self.cert, "key": key})
        self.url = self.url.replace("http://", "https://")
        self.state = os.path.join(self.tmp, "state")
        self.bundle = os.path.join(self.tmp, "bundle")
        for d in (self.state, self.bundle, os.path.join(self.tmp, "logs")):
            os.makedirs(d)
        self.sock = os.path.join(self.state, "agent.sock")
        self.hport = harness.free_port()
        self.base = f"http://127.0.0.1:{self.hport}"
        self.fakes = []
        st, tok = self.req("POST", "/api/v1/admin/tokens", {"name": "s", "expires_in": 3600},
                           self.admin)
        self.assertEqual(st, 201, tok)
        self.token_path = self.write("agent.token", tok["value"] + "\n", mode=0o600)

    def req(self, method, path, body=None, token=None, raw=False):
        import ssl
        ctx = ssl.create_default_context(cafile=self.cert)
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=20)
        hdrs = {"Authorization": "Bearer " + token} if token else {}
        data = json.dumps(body).encode() if body is not None else None
        if data:
            hdrs["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)

    def test_certificate_expiry_is_watched(self):
        self.start_sentinel("  tls_warn: 7d\n")

        def read():
            c = self.check("tls_certificate")
            return c and "expires" in c.get("message", "") and c
        c = harness.wait_for(read, 15, 0.1, "the certificate to be read")
        self.assertEqual(c["status"], "warn", c)  # 3 days left, warned at 7
        self.assertRegex(c["message"], r"^plane certificate expires at \S+ \(in 2d 23h\)$")
        m = self.metrics()
        self.assertRegex(m, r"remex_agent_plane_certificate_expiry_timestamp_seconds \d{10}\n")
        self.assertEqual(self.check("plane")["status"], "ok")
