"""remex-sentinel reports each secrets backend of the agent's chain: a real
remex-plane and remex-sentinel whose agent.yaml names HashiCorp Vault, served
by test/fake_vault.py (a fake because no Vault server can be had here; it
refuses requests without the right X-Vault-Token, as Vault does). While Vault
answers, the secrets check is healthy and names the backends; when Vault goes
away, the check fails naming the vault backend and why, and the sentinel stays
up."""
import json
import os
import re

import harness
import test_sentinel

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class SecretsBackends(test_sentinel.SentinelCase):
    def test_vault_down_is_reported_by_name(self):
        conf = self.write("vault.json", json.dumps({"tokens": ["hvs.sentinel-token"]}))
        vault = self.spawn("vault", ["python3", os.path.join(ROOT, "test", "fake_vault.py"),
                                     conf])
        url = "http://127.0.0.1:%s" % re.search(r"port (\d+)",
                                                vault.wait_output("port ", timeout=10)).group(1)
        tok = self.write("vault.token", "hvs.sentinel-token\n", mode=0o600)
        self.start_sentinel("secrets:\n  backends: [env, vault]\n  vault:\n"
                            f"    url: {url}\n    token: {{file: {tok}}}\n")

        def check_is(status):
            c = self.check("secrets")
            return c if c and c["status"] == status else None
        ok = harness.wait_for(lambda: check_is("ok"), 15, 0.2, "the secrets check to pass")
        self.assertEqual(ok["message"], "backends answering: env, vault")
        vault.kill()
        bad = harness.wait_for(lambda: check_is("fail"), 15, 0.2, "the secrets check to fail")
        self.assertIn("backend vault: vault", bad["message"])
        self.assertNotIn("env", bad["message"].split("backend vault")[0])
        self.assertNotIn("hvs.sentinel-token", bad["message"] + self.sentinel.output())
        st, _ = self.health()
        self.assertEqual(st, 503)
        self.assertIsNone(self.sentinel.p.poll())


if __name__ == "__main__":
    import unittest
    unittest.main()
