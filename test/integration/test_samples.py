"""The README walkthrough runs to success as written: etc/dags/etl.yaml pushed
with --bundle main and triggered with a conf, run by a real remex-worker and
remex-triggerer whose configuration is etc/agent.yaml's (queue default, bundle
main at etc/dags, the sample secrets file); its sensor waits for the export's
marker in the object store. The other sample DAGs run too, and each example
sensor of etc/dags/sensors.yaml (one per trigger kind) runs to success
against what it waits for: a file, a small HTTP server the test starts, an
object, another DAG's run. Samples name only commands that exist."""
import http.server
import json
import os
import shutil
import subprocess
import threading
import time

import harness
from workerfix import WorkerCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAGS = os.path.join(ROOT, "etc/dags")


class SamplesTest(WorkerCase):
    def ctl(self, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("REMEX_")}
        admin = self.write("admin.token", self.admin + "\n", mode=0o600)
        p = subprocess.run([self.bin("remexctl"), "--plane", self.url, "--token-file", admin,
                            *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=120 * harness.SLOW)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def start_sample_worker(self):
        secrets = os.path.join(self.tmp, "secrets.yaml")
        shutil.copy(os.path.join(ROOT, "etc/run/secrets.yaml"), secrets)
        os.chmod(secrets, 0o600)
        self.bundle = DAGS
        w = self.start_worker(extra=f"secrets:\n  file: {secrets}\n")
        self.wait_registered(w)
        # The sensors of the samples (example_sales waits for a file) need a triggerer.
        t = self.spawn("triggerer", [self.bin("remex-triggerer"), "-c", self.worker_cfg])
        t.wait_output("registered", timeout=10)
        return w

    def wait_deferred(self, dag_id, run_id, task_id):
        """Waits for a sensor to be deferred (its run may not exist yet)."""
        seen = {}

        def ok():
            st, b = self.req("GET", f"/api/v1/admin/dags/{dag_id}/runs/{run_id}", None,
                             self.admin)
            seen["last"] = b
            t = self.tis(b).get(task_id) if st == 200 else None
            return t if t and t["state"] == "deferred" else None
        try:
            return harness.wait_for(ok, 20, interval=0.05, what=f"{dag_id}.{task_id} deferred")
        except AssertionError as e:
            raise AssertionError(f"{e}: last seen {seen.get('last')}") from None

    def test_readme_walkthrough(self):
        self.start_plane()
        self.start_sample_worker()
        for f in sorted(os.listdir(DAGS)):
            rc, out, err = self.ctl("dags", "push", "--bundle", "main", os.path.join(DAGS, f))
            self.assertEqual(rc, 0, (f, err))
        # The walkthrough's first task is a sensor: it waits, held by the
        # triggerer, for the export's marker in the agent's object store.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REMEX_")}
        admin = self.write("admin.token", self.admin + "\n", mode=0o600)
        p = subprocess.Popen([self.bin("remexctl"), "--plane", self.url, "--token-file", admin,
                              "dags", "trigger", "etl_daily", "--conf", '{"day": "2026-11-22"}',
                              "--run-id", "walk", "--wait", "--interval", "100ms",
                              "--timeout", "90s"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        self.wait_deferred("etl_daily", "walk", "wait_for_export")
        time.sleep(0.5)
        after = self.tis(self.run_info("etl_daily", "walk")).get("extract_orders") or {}
        self.assertNotIn(after.get("state"), ("queued", "running", "success"))  # not yet
        marker = os.path.join(self.tmp, "xcom", "exports", "2026-11-22", "_SUCCESS")
        os.makedirs(os.path.dirname(marker))
        open(marker, "w").close()
        out, err = p.communicate(timeout=120 * harness.SLOW)
        out, err, rc = out.decode(), err.decode(), p.returncode
        self.assertEqual(rc, 0, out + err)
        tis = self.tis(self.run_info("etl_daily", "walk"))
        self.assertEqual((tis["wait_for_export"]["state"], tis["wait_for_export"]["log_uri"]),
                         ("success", None))  # a sensor: never on a worker
        self.assertIn("run walk: success", out)
        self.assertIn("extracting orders of 2026-11-22 from s3://exports",
                      self.task_log("etl_daily", "walk", "extract_orders"))
        self.assertIn("loading 3600 rows into postgres", self.task_log("etl_daily", "walk", "load"))
        report = self.task_log("etl_daily", "walk", "report")
        self.assertIn("3600 rows", report)
        self.assertIn("(to ***)", report)  # variables are masked like connections
        self.assertNotIn("s3cret-warehouse-pw", self.task_log("etl_daily", "walk", "load"))
        rc, out, err = self.ctl("runs", "list", "etl_daily")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"walk\s+success")
        drop = os.path.join(self.tmp, "drop")
        for dag, conf in (("vacuum_weekly", "{}"), ("backfill_manual", "{}"),
                          ("example_sales", '{"drop_dir": "%s"}' % drop)):
            rc, out, err = self.ctl("dags", "trigger", dag, "--run-id", "walk", "--wait",
                                    "--conf", conf, "--interval", "100ms", "--timeout", "90s")
            self.assertEqual(rc, 0, (dag, out + err))


    def test_sensor_examples_one_per_kind(self):
        self.start_plane()
        self.start_sample_worker()
        rc, out, err = self.ctl("dags", "push", "--bundle", "main",
                                os.path.join(DAGS, "sensors.yaml"))
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("dags", "push", "--bundle", "main",
                                os.path.join(DAGS, "example.yaml"))
        self.assertEqual(rc, 0, err)
        inbox = os.path.join(self.tmp, "inbox")
        drop = os.path.join(self.tmp, "drop")
        # sensor_http polls a small server: 503 twice, then {"status": "ok"}.
        hits = []

        class Status(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                hits.append(self.path)
                code, body = (503, b'{"status": "starting"}') if len(hits) < 3 else (
                    200, b'{"status": "ok"}')
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Status)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.shutdown)
        status_url = f"http://127.0.0.1:{srv.server_address[1]}/status"
        runs = {
            "sensor_timer": "{}",
            "sensor_file": json.dumps({"inbox": inbox}),
            "sensor_http": json.dumps({"status_url": status_url}),
            "sensor_object_key": json.dumps({"day": "2026-11-22"}),
            "sensor_external_run": "{}",
        }
        procs = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("REMEX_")}
        admin = self.write("admin.token", self.admin + "\n", mode=0o600)
        for dag, conf in runs.items():
            procs[dag] = subprocess.Popen(
                [self.bin("remexctl"), "--plane", self.url, "--token-file", admin, "dags",
                 "trigger", dag, "--run-id", "ex", "--conf", conf, "--wait", "--interval",
                 "100ms", "--timeout", "90s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env)
            self.addCleanup(lambda p=procs[dag]: p.poll() is None and p.kill())
        # The file, object and external_run sensors wait until what they watch is there.
        for dag, task in (("sensor_file", "wait_for_file"),
                          ("sensor_object_key", "wait_for_export"),
                          ("sensor_external_run", "wait_for_upstream")):
            self.wait_deferred(dag, "ex", task)
        time.sleep(0.5)
        for dag in ("sensor_file", "sensor_object_key", "sensor_external_run"):
            self.assertIsNone(procs[dag].poll(), dag)
        os.makedirs(inbox)
        with open(os.path.join(inbox, "orders.csv"), "w") as f:
            f.write("1\n")
        marker = os.path.join(self.tmp, "xcom", "exports", "2026-11-22", "_SUCCESS")
        os.makedirs(os.path.dirname(marker))
        open(marker, "w").close()
        rc, out, err = self.ctl("dags", "trigger", "example_sales", "--run-id", "ex", "--wait",
                                "--conf", json.dumps({"drop_dir": drop}), "--interval", "100ms",
                                "--timeout", "90s")
        self.assertEqual(rc, 0, out + err)
        for dag, p in procs.items():
            out, err = p.communicate(timeout=120 * harness.SLOW)
            self.assertEqual(p.returncode, 0, (dag, out.decode() + err.decode()))
        self.assertIn("settled; the timer fired", self.task_log("sensor_timer", "ex", "report"))
        self.assertIn(f'file arrived: {{"path":"{inbox}/orders.csv","size":2',
                      self.task_log("sensor_file", "ex", "wait_for_file"))
        self.assertIn('endpoint ready: {"status":200,"value":"ok"}',
                      self.task_log("sensor_http", "ex", "wait_for_endpoint"))
        self.assertGreaterEqual(len(hits), 3)  # it kept polling through the 503s
        self.assertEqual(hits[0], "/status")
        self.assertIn('"key":"exports/2026-11-22/_SUCCESS"',
                      self.task_log("sensor_object_key", "ex", "wait_for_export"))
        self.assertIn('upstream done: {"dag_id":"example_sales","run_id":"ex",'
                      '"task_id":"publish","state":"success"}',
                      self.task_log("sensor_external_run", "ex", "wait_for_upstream"))


if __name__ == "__main__":
    harness.main()
