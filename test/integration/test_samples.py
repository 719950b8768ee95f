"""The README walkthrough runs to success as written: etc/dags/etl.yaml pushed
with --bundle main and triggered with a conf, run by a real remex-worker
whose configuration is etc/agent.yaml's (queue default, bundle main at
etc/dags, the sample secrets file); the other sample DAGs run too. Samples
name only commands that exist."""
import os
import shutil
import subprocess

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

    def test_readme_walkthrough(self):
        self.start_plane()
        self.start_sample_worker()
        for f in sorted(os.listdir(DAGS)):
            rc, out, err = self.ctl("dags", "push", "--bundle", "main", os.path.join(DAGS, f))
            self.assertEqual(rc, 0, (f, err))
        rc, out, err = self.ctl("dags", "trigger", "etl_daily", "--conf", '{"day": "2026-11-22"}',
                                "--run-id", "walk", "--wait", "--interval", "100ms",
                                "--timeout", "90s")
        self.assertEqual(rc, 0, out + err)
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


if __name__ == "__main__":
    harness.main()
