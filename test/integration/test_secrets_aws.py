"""Connections and variables from AWS Secrets Manager and SSM Parameter
Store, end to end: a real remex-plane and remex-worker whose secrets chain
calls test/fake_aws.py. A fake because no AWS endpoint or emulator can be had
here; it recomputes each request's SigV4 signature independently of remex
and refuses a mismatch, as AWS does."""
import json
import os
import re
import unittest

from workerfix import WorkerCase

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


class TestAwsSecrets(WorkerCase):
    def start_aws(self):
        conf = self.write("aws.json", json.dumps({
            "access_key": "AKIDREMEXIT", "secret_key": SECRET, "region": "eu-west-1",
            "secrets": {"remex/conn/warehouse": "postgres://etl:Aws%20Pw9@db:5432/dw"},
            "parameters": {"/remex/var/region": "eu-west-1-param"}}))
        p = self.spawn("aws", ["python3", os.path.join(ROOT, "test", "fake_aws.py"), conf])
        out = p.wait_output("port ", timeout=10)
        return "http://127.0.0.1:%s" % re.search(r"port (\d+)", out).group(1)

    def aws_yaml(self, url, secret):
        creds = self.write("aws-credentials", "[remex]\naws_access_key_id = AKIDREMEXIT\n"
                                              f"aws_secret_access_key = {secret}\n", mode=0o600)
        common = (f"    region: eu-west-1\n    endpoint: {url}\n    profile: remex\n"
                  f"    credentials_file: {creds}\n")
        return ("secrets:\n  backends: [env, aws_secrets_manager, aws_ssm]\n"
                "  aws_secrets_manager:\n" + common + "    connections_prefix: remex/conn\n"
                "  aws_ssm:\n" + common + "    variables_prefix: /remex/var\n")

    def test_connection_and_parameter(self):
        self.start_plane()
        url = self.start_aws()
        self.put_dag({"dag_id": "aws", "tasks": [
            {"task_id": "use", "connections": ["warehouse"], "variables": ["region"],
             "shell": "echo conn=$REMEX_CONN_WAREHOUSE; echo var=$REMEX_VAR_REGION; "
                      "echo pw=$(remex-task conn get warehouse --field password)"}]})
        self.start_worker(extra=self.aws_yaml(url, SECRET))
        run_id = self.trigger("aws")
        run = self.wait_run("aws", run_id)
        self.assertEqual(run["state"], "success", run)
        log = self.task_log("aws", run_id, "use")
        for line in ("conn=***", "var=***", "pw=***"):
            self.assertIn(line, log)
        self.assertNotIn("Aws Pw9", log)
        self.assertNotIn("eu-west-1-param", log)

    def test_wrong_secret_key(self):
        self.start_plane()
        url = self.start_aws()
        self.put_dag({"dag_id": "awsbad", "tasks": [
            {"task_id": "use", "variables": ["region"], "shell": "true"}]})
        w = self.start_worker(extra=self.aws_yaml(url, "not-the-secret-key"))
        run_id = self.trigger("awsbad")
        run = self.wait_run("awsbad", run_id)
        self.assertEqual(run["state"], "failed")
        reason = self.tis(run)["use"]["reason"]
        self.assertIn("secrets backend aws_secrets_manager: variable 'region'", reason)
        self.assertIn("InvalidSignatureException", reason)
        self.assertNotIn("not-the-secret-key", reason + w.output())
        self.assertIsNone(w.p.poll())


if __name__ == "__main__":
    unittest.main()
