"""XCom values and task logs in GCS with the metadata server's token, end to
end: a real remex-plane and remex-worker with no service-account key, whose
xcom.store and logs.store are gs:// on test/fake_gcp.py, and remexctl reading
the stored log the same way. A fake because no Google endpoint or packaged
emulator (fake-gcs-server is not on Debian or npm) can be reached here; its
metadata server refuses requests without "Metadata-Flavor: Google" (as
Google's does) and its storage API requires a live bearer token it issued."""
import base64
import json
import os
import subprocess
import unittest
import urllib.request

import harness
from workerfix import WorkerCase

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"


class TestGcsMetadataToken(WorkerCase):
    def start_gcp(self):
        pem = os.path.join(self.tmp, "sa.pem")  # the fake loads a key even when unused
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", pem], check=True, capture_output=True)
        conf = self.write("gcp.json", json.dumps({
            "key_pem": pem, "email": "unused@proj.iam.gserviceaccount.com",
            "buckets": ["remex-gcs"], "metadata": {"ttl": 3599, "scopes": [SCOPE]}}))
        _, self.gport = self.spawn_server(
            "gcp", ["python3", os.path.join(ROOT, "test", "fake_gcp.py"), conf], timeout=10)
        self.gurl = f"http://127.0.0.1:{self.gport}"

    def fake(self, path):
        with urllib.request.urlopen(self.gurl + path, timeout=5) as r:
            return json.load(r)

    def xcom_yaml(self):
        return f"  store: gs://remex-gcs/agent-g\n  gcs:\n    endpoint: {self.gurl}\n"

    def test_xcom_and_logs_with_metadata_token(self):
        self.start_plane()
        self.start_gcp()
        self.put_dag({"dag_id": "gx", "tasks": [
            {"task_id": "push", "shell": "remex-task xcom push rows '{\"n\": 42}' && echo pushed"},
            {"task_id": "pull", "upstream": ["push"],
             "shell": "v=$(remex-task xcom pull --task push rows) && echo got:$v && "
                      "test \"$v\" = '{\"n\": 42}'"}]})
        w = self.start_worker(
            extra="logs:\n  store: gs://remex-gcs/logs\n  local_retention: 300ms\n",
            env={"GOOGLE_APPLICATION_CREDENTIALS": "",
                 "GCE_METADATA_HOST": f"127.0.0.1:{self.gport}"})
        run_id = self.trigger("gx")
        run = self.wait_run("gx", run_id)
        self.assertEqual(run["state"], "success", run)
        objs = self.fake("/_objects")["remex-gcs"]
        xkeys = [o for o in objs if o.startswith("agent-g/xcom/dag_id=gx/")]
        self.assertEqual(len(xkeys), 1, objs)
        self.assertIn("/task_id=push/map_index=-1/rows", xkeys[0])
        self.assertEqual(base64.b64decode(objs[xkeys[0]]), b'{"n": 42}')
        logs = [o for o in objs if o.startswith("logs/logs/dag_id=gx/")]
        self.assertEqual(len(logs), 2, objs)
        pull_log = [o for o in logs if "task_id=pull" in o][0]
        self.assertIn(b'got:{"n": 42}', base64.b64decode(objs[pull_log]))
        self.assertIn("gs://remex-gcs/logs/logs/dag_id=gx/",
                      repr(self.tis(run)["pull"]), self.tis(run)["pull"])
        stats = self.fake("/_stats")
        self.assertGreaterEqual(stats["metadata_tokens"], 1, stats)
        self.assertEqual(stats["tokens"], 0, stats)  # no key, no JWT exchange
        self.assertEqual(stats["metadata_refused"], 0, stats)
        # remexctl reads the stored log with the caller's metadata-server token too.
        local = os.path.join(self.logdir, "dag_id=gx", f"run_id={run_id}", "task_id=pull",
                             "attempt=1.log")
        harness.wait_for(lambda: not os.path.exists(local), 10, what="local log removed")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("REMEX_") and k != "GOOGLE_APPLICATION_CREDENTIALS"}
        env.update({"GCE_METADATA_HOST": f"127.0.0.1:{self.gport}",
                    "STORAGE_EMULATOR_HOST": self.gurl})
        p = subprocess.run([self.bin("remexctl"), "--plane", self.url, "--token-file",
                            self.conf["admin_token_file"], "tasks", "logs", "gx", run_id, "pull"],
                           capture_output=True, env=env, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b'got:{"n": 42}', p.stdout)
        self.assertIsNone(w.p.poll())


if __name__ == "__main__":
    unittest.main()
