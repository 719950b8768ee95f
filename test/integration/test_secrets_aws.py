"""Connections and variables from AWS Secrets Manager and SSM Parameter
Store, end to end: a real remex-plane and remex-worker whose secrets chain
calls test/fake_aws.py. A fake because no AWS endpoint or emulator can be had
here; it recomputes each request's SigV4 signature independently of remex
and refuses a mismatch, as AWS does."""
import json
import os
import re
import unittest
import urllib.request

from workerfix import WorkerCase

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


class TestAwsSecrets(WorkerCase):
    def start_aws(self, **more):
        conf = self.write("aws.json", json.dumps(dict({
            "access_key": "AKIDREMEXIT", "secret_key": SECRET, "region": "eu-west-1",
            "secrets": {"remex/conn/warehouse": "postgres://etl:Aws%20Pw9@db:5432/dw"},
            "parameters": {"/remex/var/region": "eu-west-1-param"}}, **more)))
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


    @staticmethod
    def hits(url):
        with urllib.request.urlopen(url + "/_hits", timeout=5) as r:
            return json.load(r)

    def no_static_credentials(self, **env):
        """The worker's environment with no keys nor credentials file, plus env."""
        home = os.path.join(self.tmp, "home")
        os.makedirs(home, exist_ok=True)
        base = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE",
                                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")}
        base["HOME"] = home
        base.update(env)
        return base

    def chain_yaml(self, url):
        return ("secrets:\n  backends: [aws_secrets_manager, aws_ssm]\n"
                f"  aws_secrets_manager:\n    region: eu-west-1\n    endpoint: {url}\n"
                "    connections_prefix: remex/conn\n"
                f"  aws_ssm:\n    region: eu-west-1\n    endpoint: {url}\n"
                "    variables_prefix: /remex/var\n")

    def test_instance_role_from_imds(self):
        # An EC2 instance role: the worker has no keys and no file; IMDSv2 (the fake refuses
        # requests without a session token, as an instance with HttpTokens=required does)
        # hands out temporary credentials that the fake then checks in each SigV4 signature.
        self.start_plane()
        url = self.start_aws(imds={"role": "remex-node", "ttl": 3600})
        self.put_dag({"dag_id": "imds", "tasks": [
            {"task_id": "use", "connections": ["warehouse"], "variables": ["region"],
             "shell": "echo pw=$(remex-task conn get warehouse --field password)"}]})
        w = self.start_worker(extra=self.chain_yaml(url), env=self.no_static_credentials(
            AWS_EC2_METADATA_SERVICE_ENDPOINT=url, AWS_EC2_METADATA_DISABLED="false"))
        run_id = self.trigger("imds")
        run = self.wait_run("imds", run_id)
        self.assertEqual(run["state"], "success", run)
        self.assertIn("pw=***", self.task_log("imds", run_id, "use"))
        hits = self.hits(url)
        self.assertGreaterEqual(hits.get("imds creds", 0), 1, hits)
        self.assertEqual(hits.get("imds refused", 0), 0, hits)
        self.assertIsNone(w.p.poll())

    def test_container_credentials(self):
        # ECS task role / EKS Pod Identity: the full URI and its token file (the fake endpoint
        # answers only with that token in the Authorization header).
        self.start_plane()
        url = self.start_aws(container={"token": "ctr-auth-9q", "ttl": 3600})
        self.put_dag({"dag_id": "ctr", "tasks": [
            {"task_id": "use", "variables": ["region"], "shell": "echo var=$REMEX_VAR_REGION"}]})
        tok = self.write("ctr-token", "ctr-auth-9q\n", mode=0o600)
        w = self.start_worker(extra=self.chain_yaml(url), env=self.no_static_credentials(
            AWS_CONTAINER_CREDENTIALS_FULL_URI=url + "/container-creds",
            AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=tok))
        run_id = self.trigger("ctr")
        self.assertEqual(self.wait_run("ctr", run_id)["state"], "success")
        self.assertIn("var=***", self.task_log("ctr", run_id, "use"))
        self.assertGreaterEqual(self.hits(url).get("container", 0), 1)
        self.assertIsNone(w.p.poll())
        self.assertNotIn("ctr-auth-9q", w.output())

if __name__ == "__main__":
    unittest.main()
