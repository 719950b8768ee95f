"""Variables from Google Cloud Secret Manager with the metadata server's
token, end to end: a real remex-plane and remex-worker with no service-account
key, whose secrets chain asks test/fake_gcp.py for a token
(GCE_METADATA_HOST) and then for the secret. A fake because no Google
endpoint or packaged emulator can be reached here; its metadata server
refuses requests without "Metadata-Flavor: Google" (as Google's does) and its
Secret Manager requires a live bearer token it issued."""
import json
import os
import re
import subprocess
import unittest
import urllib.request

from workerfix import WorkerCase

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class TestGcpMetadataSecrets(WorkerCase):
    def test_secret_with_metadata_token(self):
        self.start_plane()
        pem = os.path.join(self.tmp, "sa.pem")  # the fake loads a key even when unused
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", pem], check=True, capture_output=True)
        conf = self.write("gcp.json", json.dumps({
            "key_pem": pem, "email": "unused@proj.iam.gserviceaccount.com",
            "project": "proj-md", "secrets": {"airflow-variables-region": "eu-md-secret"},
            "metadata": {"ttl": 3599,
                         "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}}))
        p = self.spawn("gcp", ["python3", os.path.join(ROOT, "test", "fake_gcp.py"), conf])
        port = re.search(r"port (\d+)", p.wait_output("port ", timeout=10)).group(1)
        url = f"http://127.0.0.1:{port}"
        self.put_dag({"dag_id": "gmd", "tasks": [
            {"task_id": "t", "variables": ["region"],
             "shell": "echo var=$(remex-task var get region)"}]})
        w = self.start_worker(
            extra=("secrets:\n  backends: [gcp_secret_manager]\n  gcp_secret_manager:\n"
                   f"    project: proj-md\n    endpoint: {url}\n"),
            env={"GOOGLE_APPLICATION_CREDENTIALS": "", "GCE_METADATA_HOST": f"127.0.0.1:{port}"})
        run_id = self.trigger("gmd")
        run = self.wait_run("gmd", run_id)
        self.assertEqual(run["state"], "success", run)
        self.assertIn("var=***", self.task_log("gmd", run_id, "t"))
        with urllib.request.urlopen(url + "/_stats", timeout=5) as r:
            stats = json.load(r)
        self.assertGreaterEqual(stats["metadata_tokens"], 1, stats)
        self.assertEqual(stats["tokens"], 0, stats)  # no key, no JWT exchange
        self.assertEqual(stats["metadata_refused"], 0, stats)
        self.assertIsNone(w.p.poll())


if __name__ == "__main__":
    unittest.main()
