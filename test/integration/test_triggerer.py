"""remex-triggerer end to end: a real remex-plane, remex-worker and
remex-triggerer on loopback. Declared sensors of every trigger kind, run-time
deferral with resume, timeouts, failover of a killed triggerer, drain, and
timers that stay on time while HTTP checks hang."""
import base64
import email.utils
import hashlib
import hmac
import importlib.util
import http.server
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from workerfix import WorkerCase  # noqa: E402


class TriggererCase(WorkerCase):
    def setUp(self):
        super().setUp()
        self.ntrig = 0
        self.xcom = os.path.join(self.tmp, "xcom")

    def start_triggerer(self, name="t1", extra="", token=None, xcom=None):
        self.ntrig += 1
        if token is None:
            token = self.create_token(f"trg{self.ntrig}")["value"]
        tok = self.token_file(token, f"trg{self.ntrig}.token")
        cfg = self.write(f"trg{self.ntrig}.yaml", (
            "plane:\n"
            f"  url: {self.url}\n"
            f"  token: {{file: {tok}}}\n"
            f"state_dir: {self.tmp}/tstate{self.ntrig}\n"
            + (xcom or f"xcom:\n  store: file://{self.xcom}\n") +
            "triggerer:\n"
            f"  name: {name}\n"
            "  poll_wait: 2s\n"
            "  poke_interval: 200ms\n"
            "  drain_grace: 3s\n"
            + extra))
        p = self.spawn(f"triggerer{self.ntrig}", [self.bin("remex-triggerer"), "-c", cfg,
                                                  "--log-level", "debug"])
        p.wait_output("registered as agent", timeout=10 * harness.SLOW)
        p.state_dir = f"{self.tmp}/tstate{self.ntrig}/triggerer"
        self.addCleanup(self.stop_clean, p)
        return p

    def stop_clean(self, p):
        """A triggerer still running drains and exits 0 (under ASan: no leak, no
        undefined behaviour, whatever it held)."""
        if p.alive():
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait(15), 0, p.output()[-3000:])
        if p.p.returncode is not None and p.p.returncode >= 0:
            self.assertNotIn("Sanitizer", p.output())
            self.assertNotIn("runtime error:", p.output())

    def trigger_run(self, dag_id, run_id):
        st, b = self.req("POST", f"/api/v1/admin/dags/{dag_id}/runs", {"run_id": run_id},
                         self.admin)
        self.assertIn(st, (200, 201), b)
        return b["run_id"]

    def metrics(self, trg):
        with open(os.path.join(trg.state_dir, "metrics.prom")) as f:
            return f.read()


class TestDeclaredSensors(TriggererCase):
    def test_declared_sensor_never_reaches_a_worker(self):
        """The bug this role fixes: a sensor (trigger, no command) was offered to
        a worker, which failed it with "task has neither a command nor a shell
        string". It must wait on a triggerer and succeed there."""
        self.start_plane()
        out = os.path.join(self.tmp, "after.txt")
        self.put_dag({"dag_id": "ds", "tasks": [
            {"task_id": "wait", "trigger": {"type": "timer", "delta": 1}},
            {"task_id": "after", "shell": f"echo ran > {out}", "upstream": ["wait"]}]})
        w = self.start_worker()
        self.wait_registered(w)
        run_id = self.trigger("ds")
        ti = self.wait_ti("ds", run_id, "wait", ("deferred", "failed"))
        self.assertEqual(ti["state"], "deferred", ti)  # no triggerer yet: it waits
        time.sleep(0.5)
        self.assertNotIn("neither a command nor a shell", w.output())
        self.start_triggerer()
        run = self.wait_run("ds", run_id)
        self.assertEqual(run["state"], "success", run)
        tis = self.tis(run)
        self.assertEqual((tis["wait"]["state"], tis["wait"]["try_number"]), ("success", 1))
        self.assertIsNone(tis["wait"]["log_uri"])  # it never ran on a worker
        with open(out) as f:
            self.assertEqual(f.read(), "ran\n")

    def test_sensor_with_command_runs_with_the_event(self):
        self.start_plane()
        out = os.path.join(self.tmp, "ev.txt")
        self.put_dag({"dag_id": "sc", "tasks": [
            {"task_id": "wait", "shell": f"echo \"$REMEX_TRIGGER_EVENT\" > {out}",
             "trigger": {"type": "timer", "delta": 0}}]})
        self.start_worker()
        self.start_triggerer()
        run = self.wait_run("sc", self.trigger("sc"))
        self.assertEqual(run["state"], "success", run)
        with open(out) as f:
            ev = json.loads(f.read())
        self.assertLessEqual(ev["due_at"], ev["fired_at"])

    def test_file_sensor_with_template_and_non_empty(self):
        self.start_plane()
        inbox = os.path.join(self.tmp, "in")
        os.makedirs(os.path.join(inbox, "r1"))
        self.put_dag({"dag_id": "fs", "tasks": [
            {"task_id": "wait", "shell": "echo \"$REMEX_TRIGGER_EVENT\"",
             "trigger": {"type": "file", "path": inbox + "/{{ run_id }}/*.csv",
                         "non_empty": True, "poke_interval": 60}}]})
        self.start_worker()
        trg = self.start_triggerer()
        self.trigger_run("fs", "r1")
        trg.wait_output("trigger poll: 1 new", timeout=10)
        open(os.path.join(inbox, "r1", "a.csv"), "w").close()  # empty: not yet
        time.sleep(0.5)
        self.assertEqual(self.tis(self.run_info("fs", "r1"))["wait"]["state"], "deferred")
        with open(os.path.join(inbox, "r1", "b.csv"), "w") as f:
            f.write("x\n")
        # poke_interval is 60 s: only inotify can have seen it this soon.
        run = self.wait_run("fs", "r1", timeout=10)
        self.assertEqual(run["state"], "success", run)
        log = self.task_log("fs", "r1", "wait")
        self.assertIn(f'"path":"{inbox}/r1/b.csv"', log)
        self.assertIn('"size":2', log)

    def test_file_sensor_polls_a_folder_that_appears_later(self):
        self.start_plane()
        late = os.path.join(self.tmp, "late", "ready")
        self.put_dag({"dag_id": "fl", "tasks": [
            {"task_id": "wait", "trigger": {"type": "file", "path": late,
                                             "poke_interval": 0.2}}]})
        self.start_triggerer()
        run_id = self.trigger("fl")
        self.wait_ti("fl", run_id, "wait", ("deferred",))
        time.sleep(0.5)
        os.makedirs(os.path.dirname(late))
        open(late, "w").close()
        self.assertEqual(self.wait_run("fl", run_id, timeout=10)["state"], "success")

    def test_object_key_in_the_agent_store(self):
        self.start_plane()
        self.put_dag({"dag_id": "ok", "params": {"bucket": "exports"}, "tasks": [
            {"task_id": "wait", "trigger": {"type": "object_key",
                                             "key": "{{ params.bucket }}/{{ run_id }}/_SUCCESS"}},
            {"task_id": "any", "trigger": {"type": "object_key", "prefix": "exports/p/"}}]})
        self.start_triggerer()
        self.trigger_run("ok", "r1")
        self.wait_ti("ok", "r1", "wait", ("deferred",))
        os.makedirs(os.path.join(self.xcom, "exports", "r1"))
        os.makedirs(os.path.join(self.xcom, "exports", "p"))
        open(os.path.join(self.xcom, "exports", "r1", "_SUCCESS"), "w").close()
        open(os.path.join(self.xcom, "exports", "p", "part-0"), "w").close()
        self.assertEqual(self.wait_run("ok", "r1", timeout=10)["state"], "success")

    def test_http_sensor_status_and_json_field(self):
        self.start_plane()
        hits = []

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                hits.append((self.path, self.headers.get("Authorization")))
                n = len(hits)
                code, body = (503, b"{}") if n < 2 else (200, json.dumps(
                    {"job": {"state": "running" if n < 4 else "done"}}).encode())
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.shutdown)
        url = f"http://127.0.0.1:{srv.server_address[1]}/jobs/{{{{ run_id }}}}?x=1"
        self.put_dag({"dag_id": "hs", "tasks": [
            {"task_id": "wait", "shell": "echo \"$REMEX_TRIGGER_EVENT\"",
             "trigger": {"type": "http", "url": url, "json_path": "job.state",
                         "json_value": "done", "poke_interval": 0.1}}]})
        self.start_worker()
        self.start_triggerer()
        self.trigger_run("hs", "r1")
        run = self.wait_run("hs", "r1", timeout=20)
        self.assertEqual(run["state"], "success", run)
        self.assertEqual(len(hits), 4)
        self.assertEqual(hits[0], ("/jobs/r1?x=1", None))
        self.assertIn('"value":"done"', self.task_log("hs", "r1", "wait"))

    def test_http_sensor_bearer_from_connection(self):
        self.start_plane()
        seen = []

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_HEAD(self):
                seen.append(self.headers.get("Authorization"))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.shutdown)
        sec = self.write("secrets.yaml", "connections:\n  api: http://svc:t0k3n-val@127.0.0.1\n",
                         mode=0o600)
        self.put_dag({"dag_id": "hc", "tasks": [
            {"task_id": "wait", "trigger": {
                "type": "http", "method": "HEAD", "status": 204, "connection": "api",
                "url": f"http://127.0.0.1:{srv.server_address[1]}/ready"}},
            {"task_id": "nope", "trigger": {
                "type": "http", "connection": "missing",
                "url": f"http://127.0.0.1:{srv.server_address[1]}/ready"}}]})
        trg = self.start_triggerer(extra=f"secrets:\n  file: {sec}\n")
        run = self.wait_run("hc", self.trigger("hc"), timeout=20)
        tis = self.tis(run)
        self.assertEqual(tis["wait"]["state"], "success")
        self.assertEqual(seen[0], "Bearer t0k3n-val")
        self.assertEqual(tis["nope"]["state"], "failed")
        self.assertIn("connection missing", tis["nope"]["reason"])
        self.assertNotIn("t0k3n-val", trg.output())

    def test_external_run(self):
        self.start_plane()
        self.put_dag({"dag_id": "up", "tasks": [{"task_id": "a", "shell": "sleep 1"}]})
        self.put_dag({"dag_id": "down", "tasks": [
            {"task_id": "wait", "trigger": {"type": "external_run", "dag_id": "up",
                                             "task_id": "a", "poke_interval": 0.2}}]})
        self.start_worker()
        self.start_triggerer()
        self.trigger_run("down", "r1")
        self.wait_ti("down", "r1", "wait", ("deferred",))
        time.sleep(0.6)  # no run "r1" of "up" yet: it keeps asking
        self.assertEqual(self.tis(self.run_info("down", "r1"))["wait"]["state"], "deferred")
        self.trigger_run("up", "r1")
        self.assertEqual(self.wait_run("up", "r1")["state"], "success")
        self.assertEqual(self.wait_run("down", "r1", timeout=10)["state"], "success")

    def test_unknown_kind_refused_at_validation(self):
        self.start_plane()
        st, b = self.req("PUT", "/api/v1/dags/bad", {
            "bundle": {"name": "main", "version": "v1"},
            "dag": {"dag_id": "bad", "fileloc": "d.yaml", "tasks": [
                {"task_id": "w", "trigger": {"type": "sql", "sql": "select 1"}}]}}, self.admin)
        self.assertEqual(st, 400, b)
        self.assertIn("tasks[0].trigger.type: expected timer, file", b["error"]["message"])


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
S3RVER = os.path.join(ROOT, "build", "node", "s3rver", "node_modules", "@20minutes", "s3rver")
AZURITE = os.path.join(ROOT, "build", "node", "azurite", "node_modules", "azurite")
# Azurite's well-known development account (public, documented by Microsoft).
AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
          "KBHBeksoGMGw==")


class TestObjectKeyRemoteStores(TriggererCase):
    """object_key on the remote object stores, checked on the triggerer's store
    thread (one listing of page size 1 per check): S3 against @20minutes/s3rver
    (it verifies SigV4), Azure Blob against Azurite (it verifies Shared Key).
    Objects are written by the test with its own requests, so the triggerer's
    signing is checked by the servers independently."""

    def start_node(self, script, *args):
        d = os.path.join(self.tmp, os.path.basename(script))
        os.makedirs(d)
        p = self.spawn(os.path.basename(script), ["node", os.path.join(ROOT, "test", script), d,
                                                  *args])
        return int(re.search(r"port (\d+)", p.wait_output("port ", timeout=30)).group(1))

    def s3_put(self, port, key):
        # s3rver takes anonymous writes; the triggerer's reads are signed (and checked).
        req = urllib.request.Request(f"http://127.0.0.1:{port}/remex/{key}", data=b"ok",
                                     method="PUT")
        self.assertEqual(urllib.request.urlopen(req, timeout=10).status, 200)

    def az_put(self, port, path, container=False):
        """A Shared Key signed PUT (Blob service REST API) of a container or a blob."""
        body = b"" if container else b"ok"
        hdr = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
        if not container:
            hdr["x-ms-blob-type"] = "BlockBlob"
        res = f"/{AZ_ACCOUNT}/{AZ_ACCOUNT}{path}" + ("\nrestype:container" if container else "")
        sts = "\n".join(["PUT", "", "", str(len(body)) if body else "", "",
                         "application/octet-stream", "", "", "", "", "", ""]) + "\n"
        sts += "".join(f"{k}:{v}\n" for k, v in sorted(hdr.items())) + res
        mac = hmac.new(base64.b64decode(AZ_KEY), sts.encode(), hashlib.sha256).digest()
        hdr["Authorization"] = f"SharedKey {AZ_ACCOUNT}:{base64.b64encode(mac).decode()}"
        hdr["Content-Type"] = "application/octet-stream"
        url = f"http://127.0.0.1:{port}/{AZ_ACCOUNT}{path}" + ("?restype=container"
                                                              if container else "")
        req = urllib.request.Request(url, data=body, method="PUT", headers=hdr)
        self.assertEqual(urllib.request.urlopen(req, timeout=10).status, 201)

    def run_sensors(self, xcom, put, uri_base):
        """A key sensor (templated, with a command that logs its event) and a
        prefix sensor wait on the store; objects outside the store's prefix or
        before the awaited ones do not fire them; writing the objects does."""
        self.start_plane()
        put("exports/p/part-0")  # the bucket's root: outside the store's prefix agent-a/
        put("agent-a/exports/r1/_SUCCES")  # a shorter name: not the key
        self.put_dag({"dag_id": "ok", "params": {"dir": "exports"}, "tasks": [
            {"task_id": "wait", "shell": "echo \"event=$REMEX_TRIGGER_EVENT\"",
             "trigger": {"type": "object_key", "key": "{{ params.dir }}/{{ run_id }}/_SUCCESS"}},
            {"task_id": "any", "trigger": {"type": "object_key", "prefix": "exports/p/"}}]})
        self.start_worker()
        trg = self.start_triggerer(xcom=xcom)
        self.trigger_run("ok", "r1")
        self.wait_ti("ok", "r1", "wait", ("deferred",))
        self.wait_ti("ok", "r1", "any", ("deferred",))
        time.sleep(1)  # five checks of each at poke_interval 200ms: nothing there yet
        tis = self.tis(self.run_info("ok", "r1"))
        self.assertEqual((tis["wait"]["state"], tis["any"]["state"]), ("deferred", "deferred"))
        put("agent-a/exports/r1/_SUCCESS")
        put("agent-a/exports/p/part-7")
        run = self.wait_run("ok", "r1", timeout=20)
        self.assertEqual(run["state"], "success", run)
        log = self.task_log("ok", "r1", "wait")
        self.assertIn('"key":"exports/r1/_SUCCESS"', log)
        self.assertIn(f'"uri":"{uri_base}exports/r1/_SUCCESS"', log)
        self.assertNotIn("Sanitizer", trg.output())
        self.assertNotIn("object store", trg.output())  # no failed check was logged

    @unittest.skipUnless(os.path.isdir(S3RVER), "s3rver not installed (run mk/s3rver.sh)")
    def test_object_key_on_s3(self):
        port = self.start_node("s3rver.js", "remex")
        creds = self.write("aws-credentials", "[remex-test]\naws_access_key_id = S3RVER\n"
                           "aws_secret_access_key = S3RVER\n", mode=0o600)
        xcom = ("xcom:\n  store: s3://remex/agent-a\n  s3:\n"
                f"    endpoint: http://127.0.0.1:{port}\n    region: us-east-1\n"
                f"    path_style: path\n    profile: remex-test\n    credentials_file: {creds}\n")
        self.run_sensors(xcom, lambda k: self.s3_put(port, k), "s3://remex/agent-a/")

    @unittest.skipUnless(os.path.isdir(AZURITE), "azurite not installed (run mk/azurite.sh)")
    def test_object_key_on_azure_blob(self):
        port = self.start_node("azurite.js")
        self.az_put(port, "/remex", container=True)
        xcom = (f"xcom:\n  store: az://{AZ_ACCOUNT}/remex/agent-a\n  azure:\n"
                f"    endpoint: http://127.0.0.1:{port}/{AZ_ACCOUNT}\n"
                f"    account_key: {AZ_KEY}\n")
        self.run_sensors(xcom, lambda k: self.az_put(port, "/remex/" + k),
                         f"az://{AZ_ACCOUNT}/remex/agent-a/")

    @unittest.skipUnless(importlib.util.find_spec("cryptography"),
                         "python3-cryptography missing: the fake cannot verify RS256")
    def test_object_key_on_gcs(self):
        """GCS against test/fake_gcp.py (a fake: no GCS emulator is packaged here;
        it verifies the service account's RS256 JWT and every call's token)."""
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        email_ = "remex@proj.iam.gserviceaccount.com"
        pem_path = self.write("sa.pem", pem, mode=0o600)
        conf = self.write("gcp.json", json.dumps({"key_pem": pem_path, "email": email_,
                                                   "buckets": ["remex"], "project": "p"}))
        p = self.spawn("fake_gcp", [sys.executable, os.path.join(ROOT, "test", "fake_gcp.py"),
                                    conf])
        port = int(re.search(r"port (\d+)", p.wait_output("port ", timeout=20)).group(1))
        base = f"http://127.0.0.1:{port}"
        keyfile = self.write("sa.json", json.dumps({
            "type": "service_account", "client_email": email_, "private_key": pem,
            "token_uri": base + "/token"}), mode=0o600)

        def b64(b):
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        now = int(time.time())
        signing = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "." + b64(
            json.dumps({"iss": email_, "scope": "https://www.googleapis.com/auth/"
                        "devstorage.read_write", "aud": base + "/token", "iat": now,
                        "exp": now + 600}).encode())
        sig = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        form = urllib.parse.urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                       "assertion": signing + "." + b64(sig)}).encode()
        tok = json.load(urllib.request.urlopen(base + "/token", data=form,
                                               timeout=10))["access_token"]

        def put(name):
            req = urllib.request.Request(
                f"{base}/upload/storage/v1/b/remex/o?uploadType=media&name="
                + urllib.parse.quote(name, safe=""), data=b"ok", method="POST",
                headers={"Authorization": "Bearer " + tok,
                         "Content-Type": "application/octet-stream"})
            self.assertEqual(urllib.request.urlopen(req, timeout=10).status, 200)
        xcom = (f"xcom:\n  store: gs://remex/agent-a\n  gcs:\n    key_file: {keyfile}\n"
                f"    endpoint: {base}\n    token_uri: {base}/token\n")
        self.run_sensors(xcom, put, "gs://remex/agent-a/")

    def test_hanging_store_holds_up_neither_timers_nor_exit(self):
        """A store that accepts connections and never answers: its check hangs
        on the store thread while timers fire on time; SIGTERM exits within
        drain_grace (3 s here) instead of waiting for the store's client."""
        self.start_plane()
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)  # never accepted, never answered
        self.addCleanup(srv.close)
        creds = self.write("aws-credentials", "[remex-test]\naws_access_key_id = S3RVER\n"
                           "aws_secret_access_key = S3RVER\n", mode=0o600)
        xcom = ("xcom:\n  store: s3://remex/agent-a\n  s3:\n"
                f"    endpoint: http://127.0.0.1:{srv.getsockname()[1]}\n"
                "    region: us-east-1\n    path_style: path\n    profile: remex-test\n"
                f"    credentials_file: {creds}\n")
        self.put_dag({"dag_id": "hst", "tasks": [
            {"task_id": "wait", "trigger": {"type": "object_key", "key": "x/_SUCCESS"}},
            {"task_id": "tick", "trigger": {"type": "timer", "delta": 0.5}}]})
        trg = self.start_triggerer(xcom=xcom)
        run_id = self.trigger("hst")
        t0 = time.time()
        self.wait_ti("hst", run_id, "tick", ("success",), timeout=10)
        self.assertLess(time.time() - t0, 5)
        self.assertEqual(self.tis(self.run_info("hst", run_id))["wait"]["state"], "deferred")
        trg.signal(signal.SIGTERM)
        t0 = time.time()
        self.assertEqual(trg.wait(20), 0, trg.output()[-3000:])
        self.assertLess(time.time() - t0, 8)
        self.assertIn("object store check is still running", trg.output())

    def test_object_key_store_failure_is_logged_once_and_retried(self):
        """An unreachable store: the check fails (logged once), the trigger stays
        armed and times out by its own timeout; the loop is never held up."""
        self.start_plane()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there
        creds = self.write("aws-credentials", "[remex-test]\naws_access_key_id = S3RVER\n"
                           "aws_secret_access_key = S3RVER\n", mode=0o600)
        xcom = ("xcom:\n  store: s3://remex/agent-a\n  s3:\n"
                f"    endpoint: http://127.0.0.1:{port}\n    region: us-east-1\n"
                f"    path_style: path\n    profile: remex-test\n    credentials_file: {creds}\n")
        self.put_dag({"dag_id": "of", "tasks": [
            {"task_id": "wait", "trigger": {"type": "object_key", "key": "x/_SUCCESS",
                                             "timeout": 2, "on_timeout": "skip"}},
            {"task_id": "tick", "trigger": {"type": "timer", "delta": 0.5}}]})
        trg = self.start_triggerer(xcom=xcom)
        run = self.wait_run("of", self.trigger("of"), timeout=20)
        tis = self.tis(run)
        self.assertEqual((tis["wait"]["state"], tis["tick"]["state"]), ("skipped", "success"))
        self.assertEqual(trg.output().count("object store: looking for x/_SUCCESS"), 1,
                         trg.output()[-3000:])


class TestDeferralSemantics(TriggererCase):
    def test_runtime_deferral_resumes_same_try_with_payload(self):
        self.start_plane()
        out = os.path.join(self.tmp, "resume.txt")
        sh = ('if [ -z "$REMEX_TRIGGER_EVENT" ]; then '
              'remex-task defer --resume-with step2 --trigger \'{"type":"timer","delta":0.3}\'; '
              f'else echo "$REMEX_TRY_NUMBER $REMEX_RESUME_WITH $REMEX_TRIGGER_EVENT" > {out}; fi')
        self.put_dag({"dag_id": "rt", "tasks": [{"task_id": "t", "shell": sh}]})
        self.start_worker(slots=1)
        self.start_triggerer()
        run = self.wait_run("rt", self.trigger("rt"), timeout=20)
        self.assertEqual(run["state"], "success", run)
        self.assertEqual(self.tis(run)["t"]["try_number"], 1)
        with open(out) as f:
            try_no, name, ev = f.read().split(" ", 2)
        self.assertEqual((try_no, name), ("1", "step2"))
        self.assertIn("fired_at", json.loads(ev))

    def test_bad_runtime_trigger_refused_by_remex_task(self):
        self.start_plane()
        self.put_dag({"dag_id": "bt", "tasks": [{"task_id": "t", "shell": (
            "remex-task defer --trigger '{\"type\":\"timer\"}'; echo rc=$?")}]})
        self.start_worker()
        run = self.wait_run("bt", self.trigger("bt"))
        self.assertEqual(run["state"], "success", run)  # the defer was refused: ran through
        log = self.task_log("bt", run["run_id"], "t")
        self.assertIn("exactly one of delta and at", log)
        self.assertNotIn("rc=0", log)

    def test_timeouts_skip_and_default(self):
        self.start_plane()
        self.put_dag({"dag_id": "to", "tasks": [
            {"task_id": "skip", "trigger": {"type": "timer", "delta": 3600, "timeout": 1,
                                             "on_timeout": "skip"}},
            {"task_id": "dflt", "trigger": {"type": "file", "path": "/nonexistent/x"}}]})
        self.start_triggerer(extra="  default_timeout: 2s\n")
        run = self.wait_run("to", self.trigger("to"), timeout=20)
        tis = self.tis(run)
        self.assertEqual((tis["skip"]["state"], tis["skip"]["reason"]),
                         ("skipped", "trigger timeout"))
        self.assertEqual((tis["dflt"]["state"], tis["dflt"]["reason"]),
                         ("failed", "trigger timeout"))
        self.assertEqual(run["state"], "failed")

    def test_template_error_fails_the_try(self):
        self.start_plane()
        self.put_dag({"dag_id": "te", "tasks": [
            {"task_id": "w", "retries": 2,
             "trigger": {"type": "file", "path": "/in/{{ params.nope }}"}}]})
        self.start_triggerer()
        run = self.wait_run("te", self.trigger("te"), timeout=20)
        ti = self.tis(run)["w"]
        self.assertEqual((ti["state"], ti["try_number"]), ("failed", 1))  # no retry
        self.assertIn("trigger: trigger.path:", ti["reason"])


class TestTriggererProcess(TriggererCase):
    def dag_of_timers(self, dag_id, n, delta):
        self.put_dag({"dag_id": dag_id, "tasks": [
            {"task_id": f"s{i}", "trigger": {"type": "timer", "delta": delta}}
            for i in range(n)]})

    def test_sigkill_with_1000_triggers_all_reassigned_once(self):
        self.start_plane()
        self.dag_of_timers("many", 1000, 6)
        t1 = self.start_triggerer("t1")
        self.trigger_run("many", "r1")
        harness.wait_for(lambda: "1000 held" in t1.output() or None, 20 * harness.SLOW,
                         0.1, "t1 holding 1000 triggers")
        t1.signal(signal.SIGKILL)
        t1.wait(5)
        self.start_triggerer("t2")
        run = self.wait_run("many", "r1", timeout=40)
        self.assertEqual(run["state"], "success")
        tis = run["task_instances"]
        self.assertEqual(len(tis), 1000)
        self.assertEqual({(t["state"], t["try_number"]) for t in tis}, {("success", 1)})

    def test_drain_hands_triggers_back_at_once(self):
        self.start_plane(heartbeat_interval="20s", offer_timeout="60s")  # no loss detection
        self.dag_of_timers("dr", 50, 2)
        t1 = self.start_triggerer("t1")
        self.trigger_run("dr", "r1")
        harness.wait_for(lambda: "50 held" in t1.output() or None, 10, 0.05, "50 held")
        t1.signal(signal.SIGTERM)
        self.assertEqual(t1.wait(5), 0, t1.output())
        self.assertIn("handing 50 triggers back", t1.output())
        self.start_triggerer("t2")
        run = self.wait_run("dr", "r1", timeout=15)  # well within a 30 s heartbeat
        self.assertEqual(run["state"], "success")

    def test_hanging_http_checks_do_not_delay_timers(self):
        self.start_plane()
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(256)  # accepts (in the kernel) and never answers
        self.addCleanup(lsock.close)
        url = f"http://127.0.0.1:{lsock.getsockname()[1]}/never"
        self.put_dag({"dag_id": "hang", "tasks": [
            {"task_id": f"h{i}", "trigger": {"type": "http", "url": url, "poke_interval": 0.1,
                                              "timeout": 60}} for i in range(100)]})
        self.dag_of_timers("tick", 200, 3)
        trg = self.start_triggerer(extra="  http_timeout: 30s\n")
        self.trigger_run("hang", "r1")
        harness.wait_for(lambda: "100 held" in trg.output() or None, 10, 0.05, "100 held")
        self.trigger_run("tick", "r1")
        run = self.wait_run("tick", "r1", timeout=20)
        self.assertEqual(run["state"], "success")
        self.assertEqual(self.tis(self.run_info("hang", "r1"))["h0"]["state"], "deferred")
        trg.signal(signal.SIGTERM)  # metrics are written at exit
        self.assertEqual(trg.wait(10), 0)  # checks in flight are aborted and freed
        m = self.metrics(trg)
        q99 = float([ln for ln in m.splitlines()
                     if 'q="0.99"' in ln][0].split()[-1])
        count = int([ln for ln in m.splitlines()
                     if ln.startswith("remex_triggerer_timer_lateness_seconds_count")][0]
                    .split()[-1])
        self.assertEqual(count, 200)
        # While 100 checks hang (each may take its 30 s), timers fire on time:
        # a blocked loop would show seconds here.
        self.assertLess(q99, 0.25, m)


if __name__ == "__main__":
    unittest.main()
