"""POST /api/v1/dags/bulk on a real remex-plane: many DAGs of one bundle
version per request, a result per DAG in order (stored, unchanged, invalid
naming the field), idempotent per DAG (the same request again writes
nothing), one transaction, malformed bodies refused with 400 naming the field,
the per-request cap, the body cap (413), a running run updated by a new
version, and the role check (dag-processor or admin only)."""
import json
import unittest

import harness

from schedfix import Agent, SchedCase, dag


class DagsBulkTest(SchedCase):
    def setUp(self):
        super().setUp()
        self.boot(body_max="256KiB")

    def bulk(self, dags, bundle="b1", version="v1", token=None):
        return self.req("POST", "/api/v1/dags/bulk",
                        {"bundle": {"name": bundle, "version": version}, "dags": dags},
                        token or self.admin)

    def listed(self):
        st, b = self.req("GET", "/api/v1/admin/dags", None, self.admin)
        self.assertEqual(st, 200, b)
        return {d["dag_id"]: d for d in b["dags"]}

    def refused(self, body, message, token=None):
        st, b = self.req("POST", "/api/v1/dags/bulk", body, token or self.admin)
        self.assertEqual(st, 400, (body, b))
        self.assertEqual(b["error"]["code"], "bad_request")
        self.assertEqual(b["error"]["message"], message, body)

    def test_results_in_order_and_idempotent(self):
        dags = [dag(f"d{i}", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}])
                for i in range(5)]
        bad = dag("bad", [{"task_id": "a", "upstream": ["nope"]}])
        st, b = self.bulk(dags[:2] + [bad] + dags[2:] + [{"tasks": "x"}])
        self.assertEqual(st, 200, b)
        self.assertEqual((b["stored"], b["unchanged"], b["invalid"]), (5, 0, 2))
        res = b["results"]
        self.assertEqual([r["status"] for r in res],
                         ["stored", "stored", "invalid", "stored", "stored", "stored", "invalid"])
        self.assertEqual([r["dag_id"] for r in res],
                         ["d0", "d1", "bad", "d2", "d3", "d4", None])
        self.assertRegex(res[2]["error"], r"^dags\[2\]\.tasks\[0\]\.upstream")
        self.assertIn("nope", res[2]["error"])
        self.assertRegex(res[6]["error"], r"^dags\[6\]\.")
        for r in res[:2] + res[3:6]:
            self.assertRegex(r["hash"], r"^[0-9a-f]{64}$")
        got = self.listed()
        self.assertEqual(set(got), {"d0", "d1", "d2", "d3", "d4"})
        self.assertEqual(got["d3"]["bundle"], {"name": "b1", "version": "v1"})
        updated = {k: self.req("GET", f"/api/v1/admin/dags/{k}", None, self.admin)[1]["hash"]
                   for k in got}
        # The same request again: every DAG unchanged, nothing rewritten.
        st, b = self.bulk(dags)
        self.assertEqual(st, 200, b)
        self.assertEqual((b["stored"], b["unchanged"], b["invalid"]), (0, 5, 0))
        self.assertEqual({r["status"] for r in b["results"]}, {"unchanged"})
        # A new bundle version with the same DAGs: stored again (relabelled), same hashes.
        st, b = self.bulk(dags[:1], version="v2")
        self.assertEqual(st, 200, b)
        self.assertEqual(b["results"][0]["status"], "stored")
        self.assertEqual(b["results"][0]["hash"], updated["d0"])
        self.assertEqual(self.listed()["d0"]["bundle"]["version"], "v2")
        # An upload makes an inactive DAG active again.
        st, b = self.req("POST", "/api/v1/dags/manifest",
                         {"bundle": "b1", "version": "v3", "files": []}, self.admin)
        self.assertEqual(st, 200, b)
        self.assertFalse(self.listed()["d1"]["is_active"])
        st, b = self.bulk(dags[1:2], version="v3")
        self.assertEqual(b["results"][0]["status"], "stored")
        self.assertTrue(self.listed()["d1"]["is_active"])

    def test_a_new_version_updates_a_running_run(self):
        self.bulk([dag("grow", [{"task_id": "a"}])])
        agent = Agent(self, "w1", beat=False)
        run = self.trigger("grow")
        (a,) = agent.take(1)
        st, b = self.bulk([dag("grow", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}])])
        self.assertEqual(b["results"][0]["status"], "stored", b)
        agent.report(a, "success")
        harness.wait_for(lambda: self.ti_states("grow", run["run_id"]).get("b") is not None, 15,
                         0.1, "a task instance for the added task")

    def test_malformed_bodies(self):
        one = [dag("x", [{"task_id": "a"}])]
        self.refused({"bundle": {"name": "b", "version": "v"}}, "dags: missing")
        self.refused({"dags": {}}, "dags: expected array")
        self.refused({"dags": []}, "dags: expected 1 to 1000 DAGs, got 0")
        self.refused({"dags": [{}] * 1001}, "dags: expected 1 to 1000 DAGs, got 1001")
        self.refused({"dags": one + ["x"]}, "dags[1]: expected object")
        self.refused({"dags": one, "bundle": "b"}, "bundle: expected object")
        self.refused({"dags": one, "bundle": {"name": 3}}, "bundle.name: expected string")
        self.refused({"dags": one, "bundle": {"name": "n" * 257}},
                     "bundle.name: longer than 256 bytes")
        self.refused({"dags": one, "bundle": {"name": "b", "versionz": "v"}},
                     "bundle.versionz: unknown field")
        self.refused({"dags": one, "extra": 1}, "extra: unknown field")
        for raw in (b"", b"[]", b"{\"dags\": [", b"not json"):
            st, b = self.req("POST", "/api/v1/dags/bulk", raw, self.admin)
            self.assertEqual(st, 400, (raw, b))
            self.assertTrue(b["error"]["message"].startswith("body"), b)
        # Nothing of the above was stored.
        self.assertEqual(self.listed(), {})

    def test_body_cap(self):
        big = [dag(f"big{i}", [{"task_id": "a"}], description="x" * 2000) for i in range(200)]
        self.assertGreater(len(json.dumps({"dags": big})), 256 * 1024)
        st, b = self.bulk(big)
        self.assertEqual(st, 413, b)
        self.assertEqual(self.listed(), {})
        st, b = self.bulk(big[:100])
        self.assertEqual(st, 200, b)
        self.assertEqual(b["stored"], 100)

    def test_roles(self):
        worker = self.create_token("w", roles=["worker"])["value"]
        st, b = self.register(worker, "w9", roles=["worker"])
        self.assertEqual(st, 200, b)
        st, b = self.bulk([dag("x", [{"task_id": "a"}])], token=b["session_token"])
        self.assertEqual(st, 403, b)
        st, b = self.bulk([dag("x", [{"task_id": "a"}])], token="nope")
        self.assertEqual(st, 401, b)
        dp = self.create_token("dp", roles=["dag-processor"])["value"]
        st, b = self.register(dp, "dp1", roles=["dag-processor"])
        self.assertEqual(st, 200, b)
        st, b = self.bulk([dag("x", [{"task_id": "a"}])], token=b["session_token"])
        self.assertEqual(st, 200, b)
        self.assertEqual(b["stored"], 1)


if __name__ == "__main__":
    unittest.main()
