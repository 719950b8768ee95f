"""remex-plane batched starts and state reports (POST /api/v1/task-instances/start
and /state): one result per item in order, each item authorized by its own
task token (a wrong one refused alone), idempotent replays, per-item field
errors next to applied items, the whole-request checks (session, role, body
cap, malformed JSON, unknown keys, too many items), and a 200 batch of state
reports surviving kill -9 of the plane."""
import json
import signal
import time

import harness
from schedfix import Agent, SchedCase, dag

START = "/api/v1/task-instances/start"
STATE = "/api/v1/task-instances/state"


def item(a, **kw):
    d = {"ti_id": a["ti_id"], "try_number": a["try_number"], "task_token": a["task_token"]}
    d.update(kw)
    return d


class BatchTest(SchedCase):
    def setUp(self):
        super().setUp()
        self.boot(offer_timeout="30s", heartbeat_interval="500ms", lost_after_missed=100)

    def offers(self, ag, dag_id, n):
        self.push_ok(dag(dag_id, [{"task_id": f"t{i}"} for i in range(n)], max_active_tasks=100))
        run = self.trigger(dag_id, run_id="r")
        got = []
        deadline = time.monotonic() + 15 * harness.SLOW
        while len(got) < n and time.monotonic() < deadline:
            got += ag.work(wait=1, free_slots=n)
        self.assertEqual(len(got), n)
        return sorted(got, key=lambda a: a["task_id"]), run

    def batch(self, path, items, token):
        return self.req("POST", path, {"items": items}, token)

    def test_start_and_state_batches_mixed_items(self):
        ag = Agent(self, "w1", slots=8, beat=False)
        other = Agent(self, "w2", slots=8, beat=False)
        got, _ = self.offers(ag, "mix", 4)
        a, b, c, d = got
        # d's start is refused: its token is c's (another task instance).
        st, body = self.batch(START, [item(a, pid=7, hostname="h"), item(b), item(c),
                                      dict(item(d), task_token=c["task_token"])], ag.session)
        self.assertEqual(st, 200, body)
        res = body["results"]
        self.assertEqual([r["ti_id"] for r in res], [a["ti_id"], b["ti_id"], c["ti_id"],
                                                      d["ti_id"]])
        self.assertEqual([r["status"] for r in res], [200, 200, 200, 403])
        self.assertEqual(res[0]["state"], "running")
        self.assertEqual(res[3]["error"]["code"], "forbidden")
        states = self.ti_states("mix", "r")
        self.assertEqual([states[x["task_id"]] for x in got],
                         ["running", "running", "running", "offered"])
        # A start repeated in a batch is idempotent for its holder.
        st, body = self.batch(START, [item(a), item(d)], ag.session)
        self.assertEqual([r["status"] for r in body["results"]], [200, 200])
        # Another agent's session cannot carry these task tokens.
        st, body = self.batch(STATE, [item(a, state="success")], other.session)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["results"][0]["status"], 403)
        self.assertEqual(self.ti_states("mix", "r")["t0"], "running")
        # Mixed: applied, bad field, stale try, bad token signature, failed.
        h, p, s = b["task_token"].split(".")
        tampered = f"{h}.{p}.{'A' if s[0] != 'A' else 'B'}{s[1:]}"
        st, body = self.batch(STATE, [
            item(a, state="success", exit_code=0),
            item(b, state="bogus"),
            dict(item(c, state="success"), try_number=2),
            dict(item(b, state="success"), task_token=tampered),
            item(d, state="failed", exit_code=3),
            {"try_number": 1, "task_token": "x", "state": "success"},
            "not an object",
        ], ag.session)
        self.assertEqual(st, 200, body)
        res = body["results"]
        self.assertEqual([r["status"] for r in res], [200, 400, 409, 401, 200, 400, 400])
        self.assertEqual(res[0]["state"], "success")
        self.assertEqual(res[1]["error"]["message"],
                         "items[1].state: expected one of success, failed, deferred, skipped")
        self.assertEqual(res[2]["error"]["code"], "conflict")
        self.assertEqual(res[4]["state"], "failed")
        self.assertEqual(res[5]["ti_id"], None)
        self.assertEqual(res[5]["error"]["message"], "items[5].ti_id: required")
        self.assertEqual(res[6]["error"]["message"], "items[6]: expected object")
        states = self.ti_states("mix", "r")
        self.assertEqual([states[x["task_id"]] for x in got],
                         ["success", "running", "running", "failed"])
        # Replayed: the same report answers as it did; a different one is stale.
        st, body = self.batch(STATE, [item(a, state="success"), item(a, state="failed"),
                                      item(b, state="success"), item(c, state="success")],
                              ag.session)
        self.assertEqual([(r["status"], r.get("state")) for r in body["results"]],
                         [(200, "success"), (409, None), (200, "success"), (200, "success")])
        self.assertEqual(self.wait_run("mix", "r")["state"], "failed")

    def test_batch_state_reports_offered_try_and_deferral(self):
        ag = Agent(self, "w1", slots=8, beat=False)
        got, _ = self.offers(ag, "def", 2)
        a, b = got
        # Reports of offered tries (their starts lost) are accepted, as the single route's.
        st, body = self.batch(STATE, [
            item(a, state="deferred", trigger={"type": "timer", "at": "2099-01-01T00:00:00Z"}),
            item(b, state="skipped")], ag.session)
        self.assertEqual(st, 200, body)
        self.assertEqual([r["state"] for r in body["results"]], ["deferred", "skipped"])
        # A replay answers as the first report did, and deferred still needs its trigger.
        st, body = self.batch(STATE, [
            item(a, state="deferred", trigger={"type": "timer", "at": "2099-01-01T00:00:00Z"}),
            item(a, state="deferred")], ag.session)
        self.assertEqual([(r["status"], r.get("state")) for r in body["results"]],
                         [(200, "deferred"), (400, None)])
        self.assertEqual(body["results"][1]["error"]["message"],
                         "items[1].trigger: required when state is deferred")
        self.assertEqual(self.ti_states("def", "r"), {"t0": "deferred", "t1": "skipped"})

    def test_whole_request_refusals(self):
        ag = Agent(self, "w1", slots=8, beat=False)
        got, _ = self.offers(ag, "ref", 1)
        (a,) = got
        # No credential, a task token instead of a session, the admin token.
        self.assertEqual(self.batch(START, [item(a)], None)[0], 401)
        self.assertEqual(self.batch(START, [item(a)], a["task_token"])[0], 403)
        self.assertEqual(self.batch(START, [item(a)], self.admin)[0], 403)
        # A session without the worker role.
        st, b = self.register(self.tok, "trig", roles=["triggerer"])
        self.assertEqual(st, 200, b)
        st, body = self.batch(START, [item(a)], b["session_token"])
        self.assertEqual(st, 403, body)
        self.assertIn("worker role", body["error"]["message"])
        # Body shape.
        for bad, msg in (({}, "items: expected array of up to 1000 items"),
                         ({"items": {}}, "items: expected array of up to 1000 items"),
                         ({"items": [item(a, tryn=1)]}, "items[0].tryn: unknown field"),
                         ({"items": [item(a)], "x": 1}, "x: unknown field"),
                         ({"items": [item(a)] * 1001},
                          "items: expected array of up to 1000 items")):
            st, body = self.req("POST", START, bad, ag.session)
            self.assertEqual((st, body["error"]["message"]), (400, msg), bad)
        st, data = self.raw_post(START, b'{"items": [', ag.session)
        self.assertEqual(st, 400, data)
        self.assertTrue(json.loads(data)["error"]["message"].startswith("body:1:11: "), data)
        st, data = self.raw_post(STATE, b'{"items": [' + b'1,' * 600000 + b'1]}', ag.session)
        self.assertEqual(st, 413, data)
        # Nothing of the refused requests was applied.
        self.assertEqual(self.ti_states("ref", "r")["t0"], "offered")
        # An empty batch is a no-op.
        self.assertEqual(self.batch(STATE, [], ag.session), (200, {"results": []}))

    def raw_post(self, path, data, token):
        st, _, out = harness.http("POST", self.url + path, data, token, timeout=20)
        return st, out

    def test_batch_state_survives_kill_9(self):
        ag = Agent(self, "w1", slots=20, beat=False)
        got, _ = self.offers(ag, "k9", 20)
        st, body = self.batch(START, [item(a) for a in got], ag.session)
        self.assertEqual([r["status"] for r in body["results"]], [200] * 20)
        st, body = self.batch(STATE, [item(a, state="success") for a in got[:12]], ag.session)
        self.assertEqual([r["status"] for r in body["results"]], [200] * 12)
        self.plane.signal(signal.SIGKILL)
        self.assertEqual(self.plane.wait(20), -signal.SIGKILL)
        self.restart_plane()
        states = self.ti_states("k9", "r")
        for a in got[:12]:
            self.assertEqual(states[a["task_id"]], "success", states)
        for a in got[12:]:
            self.assertIn(states[a["task_id"]], ("running", "offered"), states)
        # The rest report in a batch after the restart (their starts may be lost).
        st, body = self.batch(STATE, [item(a, state="success") for a in got[12:]], ag.session)
        self.assertEqual(st, 200, body)
        self.assertEqual([r["status"] for r in body["results"]], [200] * 8)
        self.assertEqual(self.wait_run("k9", "r")["state"], "success")


if __name__ == "__main__":
    harness.main()
