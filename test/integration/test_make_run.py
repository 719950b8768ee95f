"""`make run`: the whole system on one machine (plane + remex-agent + example DAG).

Runs the real Makefile target with RUN_ONCE=1 and checks the example
pipeline's outcome and logs and the README's walkthrough DAG etl_daily (its
sensor included), then the interactive mode with a Ctrl-C."""
import glob
import re
import os
import signal
import subprocess
import sys
import time

import harness

PASSWORD = "s3cret-warehouse-pw"


class MakeRun(harness.TestCase):
    def env(self, var):
        e = dict(os.environ)
        e.update(RUN_PORT="0", RUN_VAR=var, REMEX_BIN=harness.BIN)
        return e

    def test_run_once_succeeds_with_logs_masked(self):
        var = os.path.join(self.tmp, "var")
        p = subprocess.run(["make", "-s", "--no-print-directory", "run", "RUN_ONCE=1",
                            "SAN=" + os.environ.get("REMEX_SAN", "0")],
                           cwd=harness.ROOT, env=self.env(var), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=240 * harness.SLOW)
        out = p.stdout.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out[-4000:])
        self.assertIn("run succeeded", out)
        self.assertIn("agent ready", out)
        for role in ("worker", "dag-processor", "triggerer", "sentinel"):
            self.assertRegex(out, role + r" +\d+ +up +yes")
        # The sensor waited for the file extract dropped, held by the triggerer.
        self.assertRegex(out, r"wait_for_orders +1 +success")
        # The README's walkthrough DAG ran too: its sensor waited (held by the
        # triggerer) for the export marker make run wrote into the object store.
        self.assertIn("etl_daily succeeded", out)
        self.assertRegex(out, r"wait_for_export +1 +success")
        self.assertTrue(os.path.exists(os.path.join(var, "xcom", "exports", "2026-11-22",
                                                    "_SUCCESS")))
        etl = glob.glob(os.path.join(var, "task-logs", "dag_id=etl_daily", "run_id=*"))
        self.assertEqual(len(etl), 1, etl)
        # A sensor never runs on a worker: no log of it; the tasks after it ran.
        self.assertFalse(os.path.exists(os.path.join(etl[0], "task_id=wait_for_export")))
        with open(os.path.join(etl[0], "task_id=load", "attempt=1.log")) as f:
            self.assertIn("loading 3600 rows into postgres", f.read())
        self.assertTrue(glob.glob(os.path.join(var, "drop", "orders_*.csv")))
        runs = glob.glob(os.path.join(var, "task-logs", "dag_id=example_sales", "run_id=*"))
        self.assertEqual(len(runs), 1, runs)
        run = runs[0]
        # The flaky region failed once and succeeded on its retry.
        self.assertTrue(os.path.exists(os.path.join(run, "task_id=sum_apac", "attempt=2.log")))
        with open(os.path.join(run, "task_id=sum_apac", "attempt=1.log")) as f:
            self.assertIn("failing this try", f.read())
        # XCom flowed through the fan-out into the report, and the connection's
        # password was masked in the task log.
        with open(os.path.join(run, "task_id=publish", "attempt=1.log")) as f:
            log = f.read()
        self.assertIn("publishing total 1200", log)
        self.assertIn("to warehouse.internal", log)
        self.assertIn("connecting with password ***", log)
        self.assertNotIn(PASSWORD, log)
        # Credentials were created with mode 0600.
        for name in ("admin.token", "agent.token", "signing.key", "secrets.yaml"):
            self.assertEqual(os.stat(os.path.join(var, name)).st_mode & 0o777, 0o600, name)
        # Every file and folder under var/ is private (logs and the database too).
        for top, dirs, files in os.walk(var):
            for n in dirs + files:
                path = os.path.join(top, n)
                self.assertEqual(os.lstat(path).st_mode & 0o077, 0, path)
        # Nothing is left running: both ports closed and no process holds the DB.
        plane_log = open(os.path.join(var, "log", "plane.log")).read()
        port = int(plane_log.split("listening on 127.0.0.1:")[1].split()[0])
        self.assertFalse(harness.port_open(port))

    def test_ctrl_c_drains_and_stops(self):
        var = os.path.join(self.tmp, "var")
        # As from a terminal: SIGINT at its default disposition. A suite started
        # in the background inherits it ignored, and bash cannot trap a signal
        # that was ignored when it started.
        reset = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                 "os.execv('/bin/bash', ['bash', sys.argv[1]])")
        p = self.spawn("run", [sys.executable, "-c", reset,
                               os.path.join(harness.ROOT, "mk", "run.sh")],
                       env=self.env(var), cwd=harness.ROOT)
        p.wait_output("press Ctrl-C", timeout=120)
        plane_log = open(os.path.join(var, "log", "plane.log")).read()
        port = int(plane_log.split("listening on 127.0.0.1:")[1].split()[0])
        self.assertTrue(harness.port_open(port))
        # It ends by naming the web UI, which the plane serves there.
        p.wait_output(f"open http://127.0.0.1:{port}/", timeout=10)
        st, hd, page = harness.http("GET", f"http://127.0.0.1:{port}/")
        self.assertEqual(st, 200)
        self.assertIn(b'<script type="module"', page)
        out = p.output()
        # The agent's status is shown; the plane's per-request log is not.
        self.assertRegex(out, r"worker +\d+ +up +yes")
        self.assertRegex(out, r"sentinel +\d+ +up +yes")
        self.assertNotIn("http: POST", out)
        # The sentinel answers where the run said.
        url = re.search(r"curl (http://127\.0\.0\.1:\d+/health)", out).group(1)
        st, hd, body = harness.http("GET", url)
        self.assertIn(st, (200, 503), body)
        self.assertIn(b'"checks"', body)
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        self.assertEqual(p.wait(timeout=60), 0)  # Ctrl-C is the normal end: no make error
        out = p.output()
        self.assertIn("draining the agent", out)
        self.assertIn("stopping the plane", out)
        with open(os.path.join(var, "log", "agent.log")) as f:
            log = f.read()
        self.assertIn("[worker] ", log)
        self.assertIn("every role stopped; exiting", log)
        harness.wait_for(lambda: not harness.port_open(port), timeout=10,
                         what="the plane to stop listening")
