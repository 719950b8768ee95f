"""An agent's desired state (run, drain, maintenance): set by
PATCH /api/v1/admin/agents/{agent_id}, shown by the admin views, carried by
heartbeat replies, kept across plane restarts and re-registrations, and
enforced by the plane: a drained or maintenance agent gets no new work from
/work nor new triggers from /triggers/poll."""
import threading
import time

import harness
from schedfix import Agent, SchedCase, dag


class DesiredStateTest(SchedCase):
    def setUp(self):
        super().setUp()
        self.boot()
        self.push_ok(dag("d1", [{"task_id": "a"}]))

    def set_desired(self, agent_id, desired):
        return self.req("PATCH", f"/api/v1/admin/agents/{agent_id}", {"desired_state": desired},
                        self.admin)

    def desired(self, agent_id):
        st, b = self.req("GET", f"/api/v1/admin/agents/{agent_id}", None, self.admin)
        self.assertEqual(st, 200, b)
        return b["desired_state"]

    def test_set_shown_and_sent_in_heartbeats(self):
        ag = Agent(self, "w1", beat=False)
        self.assertEqual(self.desired(ag.id), "run")
        st, b = self.set_desired(ag.id, "drain")
        self.assertEqual(st, 200, b)
        self.assertEqual((b["agent_id"], b["name"], b["desired_state"]), (ag.id, "w1", "drain"))
        st, lst = self.req("GET", "/api/v1/admin/agents", None, self.admin)
        self.assertEqual([a["desired_state"] for a in lst["agents"]], ["drain"])
        st, hb = ag.heartbeat()
        self.assertEqual((st, hb["desired_state"]), (200, "drain"))
        self.assertEqual(self.set_desired(ag.id, "maintenance")[0], 200)
        self.assertEqual(ag.heartbeat()[1]["desired_state"], "maintenance")
        self.assertEqual(self.set_desired(ag.id, "run")[0], 200)
        self.assertEqual(ag.heartbeat()[1]["desired_state"], "run")

    def test_refusals(self):
        ag = Agent(self, "w1", beat=False)
        for body, msg in (({"desired_state": "pause"},
                           "desired_state: must be run, drain or maintenance"),
                          ({"desired_state": 1}, "desired_state: expected string"),
                          ({}, "desired_state: missing"),
                          ({"desired_state": "drain", "why": "x"}, "why: unknown field")):
            st, b = self.req("PATCH", f"/api/v1/admin/agents/{ag.id}", body, self.admin)
            self.assertEqual((st, b["error"]["message"]), (400, msg), body)
        st, b = self.set_desired(9999, "drain")
        self.assertEqual(st, 404, b)
        st, b = self.req("PATCH", f"/api/v1/admin/agents/{ag.id}", {"desired_state": "drain"},
                         ag.session)
        self.assertEqual(st, 403, b)
        self.assertEqual(self.desired(ag.id), "run")

    def test_drained_agent_gets_no_work(self):
        ag = Agent(self, "w1", beat=False)
        other = Agent(self, "w2", beat=False)
        for desired in ("drain", "maintenance"):
            self.assertEqual(self.set_desired(ag.id, desired)[0], 200)
            run = self.trigger("d1")
            self.assertEqual(ag.work(wait=0), [])
            t0 = time.monotonic()
            self.assertEqual(ag.work(wait=1), [])  # the long poll waits, then nothing
            self.assertGreater(time.monotonic() - t0, 0.8)
            self.assertEqual(self.ti_states("d1", run["run_id"]), {"a": "queued"})
            # Another agent takes it.
            (a,) = other.take(1)
            self.assertEqual(other.report(a, "success")[0], 200)
            self.assertEqual(self.wait_run("d1", run["run_id"])["state"], "success")

    def test_resume_wakes_a_waiting_poll(self):
        ag = Agent(self, "w1", beat=False)
        self.assertEqual(self.set_desired(ag.id, "drain")[0], 200)
        self.trigger("d1")
        got = {}

        def poll():
            t0 = time.monotonic()
            got["a"] = ag.work(wait=20)
            got["dt"] = time.monotonic() - t0

        t = threading.Thread(target=poll, daemon=True)
        t.start()
        time.sleep(0.5)
        self.assertTrue(t.is_alive(), "a drained agent's poll returned at once")
        self.assertEqual(self.set_desired(ag.id, "run")[0], 200)
        t.join(15 * harness.SLOW)
        self.assertEqual(len(got.get("a", [])), 1, got)
        self.assertLess(got["dt"], 10)

    def test_kept_across_restart_and_reregistration(self):
        ag = Agent(self, "w1", beat=False)
        self.assertEqual(self.set_desired(ag.id, "maintenance")[0], 200)
        self.stop_plane()
        self.restart_plane()
        self.assertEqual(self.desired(ag.id), "maintenance")
        again = Agent(self, "w1", beat=False)  # same name: same agent, new session
        self.assertEqual(again.id, ag.id)
        self.assertEqual(self.desired(ag.id), "maintenance")
        self.trigger("d1")
        self.assertEqual(again.work(wait=0), [])
        self.assertEqual(again.heartbeat()[1]["desired_state"], "maintenance")

    def test_drained_triggerer_gets_no_triggers(self):
        self.push_ok(dag("dd", [{"task_id": "s", "trigger": {"type": "timer",
                                                             "at": "2099-01-01T00:00:00Z"}}]))
        trig = Agent(self, "t1", beat=False)
        run = self.trigger("dd")
        harness.wait_for(lambda: self.ti_states("dd", run["run_id"]) == {"s": "deferred"}, 10,
                         0.05, "the sensor deferred")
        self.assertEqual(self.set_desired(trig.id, "drain")[0], 200)
        st, b = self.req("POST", "/api/v1/triggers/poll", {"capacity": 10, "wait": 0},
                         trig.session)
        self.assertEqual((st, b["triggers"]), (200, []))
        self.assertEqual(self.set_desired(trig.id, "run")[0], 200)
        st, b = self.req("POST", "/api/v1/triggers/poll", {"capacity": 10, "wait": 1},
                         trig.session)
        self.assertEqual(st, 200, b)
        self.assertEqual([t["spec"]["type"] for t in b["triggers"]], ["timer"])
        self.assertEqual(self.ti_states("dd", run["run_id"]), {"s": "deferred"})


if __name__ == "__main__":
    import unittest
    unittest.main()
