"""XCom values and task logs in S3: a real remex-plane and remex-worker with
xcom.store and logs.store on @20minutes/s3rver (an S3 server that verifies
SigV4 signatures; installed by mk/s3rver.sh under build/node/s3rver)."""
import glob
import hashlib
import http.client
import http.server
import os
import subprocess
import sys
import threading
import unittest

import harness
from workerfix import WorkerCase

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
S3RVER = os.path.join(ROOT, "build", "node", "s3rver", "node_modules", "@20minutes", "s3rver")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@unittest.skipUnless(os.path.isdir(S3RVER), "s3rver not installed (run mk/s3rver.sh)")
class TestS3Store(WorkerCase):
    def start_s3(self):
        self.s3dir = os.path.join(self.tmp, "s3")
        os.makedirs(self.s3dir)
        p, self.s3port = self.spawn_server(
            "s3rver", ["node", os.path.join(ROOT, "test", "s3rver.js"), self.s3dir, "remex"])
        return p

    def s3_yaml(self, secret):
        creds = self.write("aws-credentials",
                           "[remex-test]\naws_access_key_id = S3RVER\n"
                           f"aws_secret_access_key = {secret}\n", mode=0o600)
        return ("  s3:\n"
                f"    endpoint: http://127.0.0.1:{self.s3port}\n"
                "    region: us-east-1\n"
                "    path_style: path\n"
                "    profile: remex-test\n"
                f"    credentials_file: {creds}\n")

    def xcom_yaml(self):
        return "  store: s3://remex/agent-a\n" + self.xcom_extra

    def ctl_env(self):
        """The environment of remexctl run by a user with their own S3 credentials."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("REMEX_") and not k.startswith("AWS_")}
        env.update({"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER",
                    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.s3port}",
                    "AWS_REGION": "us-east-1"})
        return env

    def ctl(self, *args, timeout=30):
        """remexctl with the caller's own S3 credentials in the environment."""
        return subprocess.Popen([self.bin("remexctl"), "--plane", self.url, "--token-file",
                                 self.conf["admin_token_file"], *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.ctl_env())

    def log_object(self, dag_id, run_id, task_id="log"):
        """Where s3rver keeps the stored log of a task's attempt 1."""
        return os.path.join(self.s3dir, "remex", "logs", "logs", f"dag_id={dag_id}",
                            f"run_id={run_id}", f"task_id={task_id}", "map_index=-1",
                            "attempt=1.log._S3rver_object")

    def objects(self):
        return sorted(os.path.relpath(p, self.s3dir)
                      for p in glob.glob(os.path.join(self.s3dir, "**", "*._S3rver_object"),
                                         recursive=True))

    def test_xcom_round_trip_and_log_upload(self):
        self.start_plane()
        self.start_s3()
        self.xcom_extra = self.s3_yaml("S3RVER")
        secrets = self.write("secrets.json", '{"connections": {"db": '
                             '"postgres://etl:S3cret%2BPw@db:5432/dw"}}', mode=0o600)
        self.put_dag({"dag_id": "s3x", "tasks": [
            {"task_id": "push", "shell": "remex-task xcom push rows '{\"n\": 42}' && echo pushed"},
            {"task_id": "pull", "upstream": ["push"], "connections": ["db"],
             "shell": "v=$(remex-task xcom pull --task push rows) && echo got:$v && "
                      "test \"$v\" = '{\"n\": 42}' && "
                      "p=$(remex-task conn get db --field password) && echo pw=$p && "
                      "echo b64=$(printf %s \"$p\" | base64) && "
                      "echo url=$(python3 -c 'import sys,urllib.parse;"
                      "print(urllib.parse.quote(sys.argv[1], safe=\"\"))' \"$p\") && "
                      "echo json=$(python3 -c 'import sys,json;print(json.dumps(sys.argv[1]))' "
                      "\"$p\")"},
        ]})
        self.start_worker(extra=f"logs:\n  store: s3://remex/logs\n  local_retention: 300ms\n"
                                f"secrets:\n  file: {secrets}\n")
        run_id = self.trigger("s3x")
        run = self.wait_run("s3x", run_id)
        self.assertEqual(run["state"], "success", run)
        objs = self.objects()
        # The value is in the bucket under the XCom layout, and the plane holds its s3:// URI.
        xkeys = [o for o in objs if o.startswith("remex/agent-a/xcom/dag_id=s3x/")]
        self.assertEqual(len(xkeys), 1, objs)
        self.assertIn("/task_id=push/map_index=-1/rows", xkeys[0])
        with open(os.path.join(self.s3dir, xkeys[0])) as f:
            self.assertEqual(f.read(), '{"n": 42}')
        # No local XCom folder was written.
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "xcom")))
        # Both logs were uploaded when their tries ended, and the plane names the S3 copy.
        logs = [o for o in objs if o.startswith("remex/logs/logs/dag_id=s3x/")]
        self.assertEqual(len(logs), 2, objs)
        pull_log = [o for o in logs if "task_id=pull" in o][0]
        with open(os.path.join(self.s3dir, pull_log)) as f:
            stored = f.read()
        # The copy in object storage is masked like the local one: plain, base64,
        # URL-encoded and JSON-escaped forms of the password.
        self.assertIn("got:{\"n\": 42}", stored)
        for line in ("pw=***", "b64=***", "url=***", 'json="***"'):
            self.assertIn(line, stored)
        for leak in ("S3cret+Pw", "UzNjcmV0K1B3", "S3cret%2BPw"):
            self.assertNotIn(leak, stored)
        ti = self.tis(run)["pull"]
        st, b = self.req("GET", f"/api/v1/admin/dags/s3x/runs/{run_id}", None, self.admin)
        text = repr(b)
        self.assertIn("s3://remex/logs/logs/dag_id=s3x/", text, ti)
        # The local copies go once uploaded (logs.local_retention), and remexctl reads the
        # stored log from S3 with the caller's own credentials.
        local = os.path.join(self.logdir, "dag_id=s3x", f"run_id={run_id}", "task_id=pull",
                             "attempt=1.log")
        harness.wait_for(lambda: not os.path.exists(local), 10, what="local log removed")
        p = self.ctl("tasks", "logs", "s3x", run_id, "pull", "--try", "1")
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn(b'got:{"n": 42}', out)
        p = self.ctl("tasks", "logs", "s3x", run_id, "pull", "--try", "2")
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"no try 2", err)

    def test_follow_a_running_task(self):
        """With logs.upload_interval the running try's log is uploaded as it grows and the
        plane names the stored copy from the start: remexctl follows it from S3."""
        self.start_plane()
        self.start_s3()
        self.xcom_extra = self.s3_yaml("S3RVER")
        gate = os.path.join(self.tmp, "gate")
        self.put_dag({"dag_id": "fol", "tasks": [
            {"task_id": "slow", "shell": f"echo first; while [ ! -e {gate} ]; do sleep 0.05; "
                                         "done; echo second"}]})
        self.start_worker(extra="logs:\n  store: s3://remex/logs\n  upload_interval: 200ms\n")
        run_id = self.trigger("fol")
        ti = self.wait_ti("fol", run_id, "slow", ("running",))
        self.assertTrue(ti["log_uri"].startswith("s3://remex/logs/logs/dag_id=fol/"), ti)
        obj = self.log_object("fol", run_id, "slow")

        def partial():
            try:
                with open(obj) as f:
                    return "first" in f.read()
            except FileNotFoundError:
                return False
        harness.wait_for(partial, 10, what="the partial log in S3")
        p = self.ctl("tasks", "logs", "fol", run_id, "slow", "--follow")
        line = p.stdout.readline()
        self.assertIn(b"first", line)
        self.assertIsNone(p.poll())  # still following
        with open(gate, "w"):
            pass
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn(b"second", out)
        self.assertIn(b"[remex] success", out)
        self.assertEqual((line + out).count(b"first"), 1)  # nothing printed twice

    def test_200mb_log_streams_with_flat_rss(self):
        """A task writes a 200 MiB log; the worker uploads it to S3 in parts (multipart
        upload, s3rver checks every part's SigV4 payload hash and Content-MD5) streamed
        from the file: its peak RSS (VmHWM) grows by far less than the object."""
        self.start_plane()
        self.start_s3()
        self.xcom_extra = (self.s3_yaml("S3RVER") +
                           "  multipart_threshold: 32MiB\n  part_size: 16MiB\n")
        size = 200 * 1024 * 1024
        line = "x" * 99  # 100-byte lines
        self.put_dag({"dag_id": "big", "tasks": [
            {"task_id": "log", "shell": f"yes {line} | head -c {size}"}]})
        # Under AddressSanitizer freed blocks sit in its quarantine (256 MiB by
        # default), which RSS would count: a small one keeps the check meaningful.
        env = None
        if harness.SAN:
            env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                   ":quarantine_size_mb=4:thread_local_quarantine_size_kb=64"}
        w = self.start_worker(extra_worker="  log_max_bytes: 300MiB\n",
                              extra="logs:\n  store: s3://remex/logs\n", env=env)
        self.wait_registered(w)

        def hwm():
            with open(f"/proc/{w.p.pid}/status") as f:
                for ln in f:
                    if ln.startswith("VmHWM:"):
                        return int(ln.split()[1]) * 1024
            raise AssertionError("no VmHWM")
        before = hwm()
        run_id = self.trigger("big")
        run = self.wait_run("big", run_id, timeout=300)
        self.assertEqual(run["state"], "success", (run, w.output()[-3000:]))
        growth = hwm() - before
        local = os.path.join(self.logdir, "dag_id=big", f"run_id={run_id}", "task_id=log",
                             "attempt=1.log")
        obj = self.log_object("big", run_id)
        self.assertGreaterEqual(os.path.getsize(local), size)
        self.assertEqual(os.path.getsize(obj), os.path.getsize(local))
        self.assertEqual(sha256_file(obj), sha256_file(local))
        self.assertIn("s3://remex/logs/logs/dag_id=big/", repr(self.tis(run)["log"]))
        sys.stderr.write(f"\n# 200 MiB log: worker VmHWM {before / 2**20:.1f} MiB -> "
                         f"{(before + growth) / 2**20:.1f} MiB (+{growth / 2**20:.1f} MiB)\n")
        self.assertLess(growth, 32 * 1024 * 1024)

    def test_tasks_logs_streams_a_large_log(self):
        """remexctl tasks logs (and --follow on an ended try) streams a 50 MiB stored log
        from S3 to stdout in bounded memory: its peak RSS (ru_maxrss, read by a wrapper
        whose only child it is) stays far below the log's size, and the bytes are equal."""
        self.start_plane()
        self.start_s3()
        self.xcom_extra = (self.s3_yaml("S3RVER") +
                           "  multipart_threshold: 32MiB\n  part_size: 16MiB\n")
        size = 50 * 1024 * 1024
        self.put_dag({"dag_id": "biglog", "tasks": [
            {"task_id": "log", "shell": f"yes {'y' * 99} | head -c {size}"}]})
        self.start_worker(extra_worker="  log_max_bytes: 100MiB\n",
                          extra="logs:\n  store: s3://remex/logs\n")
        run_id = self.trigger("biglog")
        run = self.wait_run("biglog", run_id, timeout=120)
        self.assertEqual(run["state"], "success", run)
        self.assertTrue(self.tis(run)["log"]["log_uri"].startswith("s3://remex/logs/"), run)
        obj = self.log_object("biglog", run_id)
        self.assertGreaterEqual(os.path.getsize(obj), size)
        wrapper = ("import resource, subprocess, sys\n"
                   "rc = subprocess.call(sys.argv[2:])\n"
                   "open(sys.argv[1], 'w').write(str(resource.getrusage("
                   "resource.RUSAGE_CHILDREN).ru_maxrss))\n"
                   "sys.exit(rc)\n")
        env = self.ctl_env()
        for extra in ((), ("--follow",)):
            out = os.path.join(self.tmp, "out.log")
            rss = os.path.join(self.tmp, "rss")
            with open(out, "wb") as f:
                p = subprocess.run(["python3", "-c", wrapper, rss, self.bin("remexctl"),
                                    "--plane", self.url, "--token-file",
                                    self.conf["admin_token_file"], "tasks", "logs", "biglog",
                                    run_id, "log", *extra],
                                   stdout=f, stderr=subprocess.PIPE, env=env, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(rss) as f:
                peak = int(f.read()) * 1024
            self.assertEqual(os.path.getsize(out), os.path.getsize(obj))
            self.assertEqual(sha256_file(out), sha256_file(obj))
            sys.stderr.write(f"\n# remexctl tasks logs {' '.join(extra)} of a 50 MiB log: "
                             f"peak RSS {peak / 2**20:.1f} MiB\n")
            # ~14 MiB (~20 MiB under ASan); a log buffered whole would take over 50 MiB.
            self.assertLess(peak, 32 * 1024 * 1024)

    def start_throttling_proxy(self):
        """A loopback HTTP relay in front of s3rver that answers every UploadPart of part 2
        with 503 SlowDown (S3's throttling reply) and relays everything else unchanged
        (Host header included, so s3rver still checks the client's SigV4 signature)."""
        seen = []
        upstream = self.s3port

        class Relay(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def relay(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n) if n else b""
                seen.append((self.command, self.path, len(body)))
                if self.command == "PUT" and "partNumber=2&" in self.path:
                    err = (b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>"
                           b"Please reduce your request rate.</Message></Error>")
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(err)))
                    self.end_headers()
                    self.wfile.write(err)
                    return
                c = http.client.HTTPConnection("127.0.0.1", upstream, timeout=60)
                c.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    c.putheader(k, v)
                c.endheaders(body)
                r = c.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                c.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = relay

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        return srv.server_address[1], seen

    def test_throttled_multipart_upload_is_retried_then_aborted(self):
        """UploadPart answered 503 SlowDown every time: each retry sends the whole part again
        (re-read from the file), and after the last attempt AbortMultipartUpload is sent
        and nothing is completed; the task still succeeds and the report names the local
        log. (s3rver does not implement AbortMultipartUpload: it takes the DELETE for a
        DeleteObject, so the test checks the request, not the server's cleanup.)"""
        self.start_plane()
        self.start_s3()
        port, seen = self.start_throttling_proxy()
        self.xcom_extra = (self.s3_yaml("S3RVER").replace(
            f"http://127.0.0.1:{self.s3port}", f"http://127.0.0.1:{port}") +
            "  multipart_threshold: 8MiB\n  part_size: 5MiB\n")
        size = 12 * 1024 * 1024
        self.put_dag({"dag_id": "thr", "tasks": [
            {"task_id": "log", "shell": f"yes {'y' * 99} | head -c {size}"}]})
        w = self.start_worker(extra="logs:\n  store: s3://remex/logs\n")
        run_id = self.trigger("thr")
        run = self.wait_run("thr", run_id, timeout=120)
        self.assertEqual(run["state"], "success", run)
        ti = self.tis(run)["log"]
        self.assertTrue(ti["log_uri"].startswith("file://"), ti)
        part2 = [r for r in seen if r[0] == "PUT" and "partNumber=2&" in r[1]]
        self.assertEqual(len(part2), 4, seen)  # 4 attempts in all
        self.assertTrue(all(r[2] == 5 * 1024 * 1024 for r in part2), part2)
        self.assertTrue(any(r[0] == "PUT" and "partNumber=1&" in r[1] for r in seen), seen)
        aborts = [r for r in seen if r[0] == "DELETE" and "uploadId=" in r[1]]
        self.assertEqual(len(aborts), 1, seen)
        self.assertFalse(any(r[0] == "POST" and "uploadId=" in r[1] for r in seen), seen)
        self.assertIn("SlowDown", w.output())
        self.assertEqual([o for o in self.objects() if "dag_id=thr" in o], [])

    def test_wrong_secret_fails_the_task_with_a_clear_reason(self):
        self.start_plane()
        self.start_s3()
        self.xcom_extra = self.s3_yaml("not-the-secret")
        self.put_dag({"dag_id": "s3bad", "tasks": [
            {"task_id": "push", "shell": "remex-task xcom push k v"}]})
        w = self.start_worker()
        run_id = self.trigger("s3bad")
        run = self.wait_run("s3bad", run_id)
        self.assertEqual(run["state"], "failed", run)
        log = self.task_log("s3bad", run_id, "push")
        self.assertIn("403 SignatureDoesNotMatch", log)
        self.assertIn("secret access key", log)
        self.assertNotIn("not-the-secret", log)
        self.assertNotIn("not-the-secret", w.output())
        self.assertEqual(self.objects(), [])
        # The worker stays up and keeps serving.
        self.assertIsNone(w.p.poll())


if __name__ == "__main__":
    unittest.main()
