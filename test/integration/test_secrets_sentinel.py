"""remex-sentinel reports each secrets backend of the agent's chain: a real
remex-plane and remex-sentinel whose agent.yaml names HashiCorp Vault, served
by test/fake_vault.py (a fake because no Vault server can be had here; it
refuses requests without the right X-Vault-Token, as Vault does). While Vault
answers, the secrets check is healthy and names the backends; when Vault goes
away, the check fails naming the vault backend and why, and the sentinel stays
up. A Vault that accepts connections and never answers (a backend dropping
packets) stalls only the secrets check's own thread: /health and /metrics keep
answering, the check fails at its deadline naming vault, and SIGTERM does not
wait for the hung call."""
import json
import os
import re
import signal
import time

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

    def test_a_vault_that_never_answers_does_not_stall_the_sentinel(self):
        silent = test_sentinel.SilentServer()
        self.fakes.append(silent)
        tok = self.write("vault.token", "hvs.sentinel-token\n", mode=0o600)
        # interval 1s: the secrets check's deadline is the round interval (at most 10 s)
        self.start_sentinel("secrets:\n  backends: [env, vault]\n  vault:\n"
                            f"    url: http://127.0.0.1:{silent.port}\n"
                            f"    token: {{file: {tok}}}\n")
        harness.wait_for(lambda: silent.conns, 15, 0.05, "the secrets check to reach Vault")
        # While the check's call hangs (Vault's client would wait 30 s x 3 attempts),
        # the loop answers: every request within 0.5 s, over several rounds.
        worst = 0.0
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            for path in ("/health", "/metrics"):
                t0 = time.monotonic()
                st, _, _ = harness.http("GET", self.base + path, timeout=5)
                worst = max(worst, time.monotonic() - t0)
                self.assertIn(st, (200, 503), path)
            time.sleep(0.05)
        self.assertLess(worst, 0.5, "a request waited for the hung check")

        def failed():
            c = self.check("secrets")
            return c if c and c["status"] == "fail" else None
        bad = harness.wait_for(failed, 10, 0.1, "the secrets check to fail at its deadline")
        self.assertEqual(bad["message"], "backend vault: no answer within 1 s")
        self.assertIn("secrets: backend vault: no answer within 1 s", self.sentinel.output())
        st, body = self.health()
        self.assertEqual(st, 503)
        self.assertIn("secrets", [c["name"] for c in body["checks"]])
        self.assertIn('remex_sentinel_check_status{check="secrets"} 2', self.metrics())
        # Rounds kept coming (interval 1 s) but the hung run was never started twice.
        self.assertEqual(len(silent.conns), 1)
        self.assertIsNone(self.sentinel.p.poll())
        t0 = time.monotonic()
        self.sentinel.signal(signal.SIGTERM)
        code = self.sentinel.wait(10)
        took = time.monotonic() - t0
        self.assertEqual(code, 0, self.sentinel.output())
        self.assertLess(took, 5.0, "SIGTERM waited for the hung check")
        self.assertIn("secrets: still running at stop, not waited for",
                      self.sentinel.output())


if __name__ == "__main__":
    import unittest
    unittest.main()
