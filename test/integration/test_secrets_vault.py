"""Connections and variables from HashiCorp Vault, end to end: a real
remex-plane and remex-worker whose secrets chain reads a fake Vault
(test/fake_vault.py). A fake because no Vault server can be had here: it
follows Vault's HTTP API (KV v2, AppRole) and refuses any request without the
right X-Vault-Token, as Vault does."""
import json
import os
import re
import time
import unittest
import urllib.request

from workerfix import WorkerCase

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PASSWORD = "Vault Pw/1+é\"x"


class TestVaultSecrets(WorkerCase):
    def start_vault(self, lease=3600, max_ttl=0):
        conf = self.write("vault.json", json.dumps({
            "tokens": ["hvs.worker-token"],
            "approle": {"role_id": "remex-role", "secret_id": "sid-42", "lease": lease,
                        "max_ttl": max_ttl},
            "secret": {
                "connections/warehouse": {"conn_type": "postgres", "host": "db.internal",
                                          "login": "etl", "password": PASSWORD, "port": 5432},
                "variables/region": {"value": "eu-west-1-secret"},
            }}))
        p = self.spawn("vault", ["python3", os.path.join(ROOT, "test", "fake_vault.py"), conf])
        out = p.wait_output("port ", timeout=10)
        self.vault_url = "http://127.0.0.1:%s" % re.search(r"port (\d+)", out).group(1)

    def test_connection_and_variable_masked(self):
        self.start_plane()
        self.start_vault()
        tok = self.write("vault.token", "hvs.worker-token\n", mode=0o600)
        self.put_dag({"dag_id": "vx", "tasks": [
            {"task_id": "use", "connections": ["warehouse"], "variables": ["region"],
             "shell": "echo env=$REMEX_CONN_WAREHOUSE; "
                      "p=$(remex-task conn get warehouse --field password) && echo pw=$p && "
                      "echo b64=$(printf %s \"$p\" | base64) && "
                      "echo url=$(python3 -c 'import sys,urllib.parse;"
                      "print(urllib.parse.quote(sys.argv[1], safe=\"\"))' \"$p\") && "
                      "echo json=$(python3 -c 'import sys,json;print(json.dumps(sys.argv[1]))' "
                      "\"$p\") && echo var=$(remex-task var get region) && echo env2=$REMEX_VAR_REGION"},
        ]})
        self.start_worker(extra=(f"secrets:\n  backends: [vault, env]\n  vault:\n"
                                 f"    url: {self.vault_url}\n    token: {{file: {tok}}}\n"))
        run_id = self.trigger("vx")
        run = self.wait_run("vx", run_id)
        self.assertEqual(run["state"], "success", run)
        log = self.task_log("vx", run_id, "use")
        for line in ("env=***", "pw=***", "b64=***", "url=***", "json=\"***\"", "var=***",
                     "env2=***"):
            self.assertIn(line, log)
        self.assertNotIn("Vault Pw", log)
        self.assertNotIn("eu-west-1-secret", log)

    def test_approle_and_backend_down(self):
        self.start_plane()
        self.start_vault()
        sid = self.write("sid", "sid-42\n", mode=0o600)
        self.put_dag({"dag_id": "vok", "tasks": [
            {"task_id": "t", "variables": ["region"], "shell": "echo var=$REMEX_VAR_REGION"}]})
        self.put_dag({"dag_id": "vmiss", "tasks": [
            {"task_id": "t", "connections": ["nope"], "shell": "true"}]})
        w = self.start_worker(extra=(f"secrets:\n  vault:\n    url: {self.vault_url}\n"
                                     f"    role_id: remex-role\n    secret_id: {{file: {sid}}}\n"))
        run_id = self.trigger("vok")
        self.assertEqual(self.wait_run("vok", run_id)["state"], "success")
        self.assertIn("var=***", self.task_log("vok", run_id, "t"))
        run_id = self.trigger("vmiss")
        run = self.wait_run("vmiss", run_id)
        self.assertEqual(run["state"], "failed")
        self.assertIn("connection 'nope' not found", self.tis(run)["t"]["reason"])
        # Vault goes away: the task fails naming the backend and the key; the worker stays up.
        for p in self._procs:
            if p.name == "vault":
                p.kill()
        self.put_dag({"dag_id": "vdown", "tasks": [
            {"task_id": "t", "connections": ["warehouse"], "shell": "true"}]})
        run_id = self.trigger("vdown")
        run = self.wait_run("vdown", run_id, timeout=60)
        self.assertEqual(run["state"], "failed")
        reason = self.tis(run)["t"]["reason"]
        self.assertIn("secrets backend vault: connection 'warehouse'", reason)
        self.assertIsNone(w.p.poll())
        self.assertNotIn("sid-42", w.output())


    def vault_hits(self):
        with urllib.request.urlopen(self.vault_url + "/_hits", timeout=5) as r:
            return json.load(r)["hits"]

    def test_tokens_that_expire(self):
        # The fake Vault gives AppRole tokens a 2 s lease and a 3 s max TTL and refuses them
        # once expired: the worker renews them (renew-self), logs in again when the max TTL
        # leaves nothing to renew, and its tasks keep reading secrets across several leases.
        self.start_plane()
        self.start_vault(lease=2, max_ttl=3)
        self.put_dag({"dag_id": "vexp", "tasks": [
            {"task_id": "t", "variables": ["region"],
             "shell": "echo var=$(remex-task var get region)"}]})
        w = self.start_worker(extra=(f"secrets:\n  cache_ttl: 100ms\n  vault:\n"
                                     f"    url: {self.vault_url}\n"
                                     f"    role_id: remex-role\n    secret_id: sid-42\n"))
        end = time.monotonic() + 5
        runs = 0
        while time.monotonic() < end or runs < 3:
            run_id = self.trigger("vexp")
            run = self.wait_run("vexp", run_id)
            self.assertEqual(run["state"], "success", (runs, self.tis(run)["t"].get("reason")))
            self.assertIn("var=***", self.task_log("vexp", run_id, "t"))
            runs += 1
            time.sleep(0.7)
            if runs > 20:
                break
        hits = self.vault_hits()
        self.assertGreaterEqual(hits.get("/v1/auth/token/renew-self", 0), 1, hits)
        self.assertGreaterEqual(hits.get("/v1/auth/approle/login", 0), 2, hits)
        self.assertIsNone(w.p.poll())
        self.assertNotIn("sid-42", w.output())


if __name__ == "__main__":
    unittest.main()
