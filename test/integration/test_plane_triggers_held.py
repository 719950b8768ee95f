"""A triggerer's heartbeat lists the triggers it holds (`triggers`); the
plane reconciles that list with the triggers it assigned to the agent:
assigned but not listed once a heartbeat interval (1 s here) has passed goes
back to the pool; listed but not assigned to it (gone, or handed to another
triggerer after a loss) comes back in `cancel_triggers`."""
import threading
import time

import harness
from schedfix import Agent, SchedCase, dag

GRACE = 1.0  # heartbeat_interval of planefix


class TriggersHeldTest(SchedCase):
    def setUp(self):
        super().setUp()
        self.boot()
        self.push_ok(dag("df", [{"task_id": "s"}]))
        self.worker = Agent(self, "w1")

    def defer(self, run_id):
        self.trigger("df", run_id=run_id)
        (a,) = self.worker.take(1)
        st, b = self.worker.report(a, "deferred", trigger={"type": "timer",
                                                             "at": "2099-01-01T00:00:00Z"})
        self.assertEqual((st, b), (200, {"state": "deferred"}))
        return a

    def poll(self, agent, wait=0):
        st, b = self.req("POST", "/api/v1/triggers/poll", {"capacity": 10, "wait": wait},
                         agent.session)
        self.assertEqual(st, 200, b)
        return [t["trigger_id"] for t in b["triggers"]]

    def beat(self, agent, held):
        st, b = agent.heartbeat(triggers=held)
        self.assertEqual(st, 200, b)
        return b["cancel_triggers"]

    def test_assigned_not_held_goes_back_after_the_grace(self):
        t1, t2 = Agent(self, "t1", beat=False), Agent(self, "t2", beat=False)
        a = self.defer("r1")
        (tid,) = self.poll(t1, wait=5)
        # Within the grace: a heartbeat built before the poll reply arrived.
        self.assertEqual(self.beat(t1, []), [])
        self.assertEqual(self.poll(t2), [])
        time.sleep(GRACE + 0.2)
        self.assertEqual(self.beat(t1, []), [])
        self.assertEqual(self.poll(t2), [tid])
        # The new holder fires it; the old one may not.
        st, b = self.req("POST", f"/api/v1/triggers/{tid}/event", {"payload": {}}, t1.session)
        self.assertEqual(st, 409, b)
        st, b = self.req("POST", f"/api/v1/triggers/{tid}/event", {"payload": {"x": 1}},
                         t2.session)
        self.assertEqual(st, 200, b)
        (r,) = self.worker.take(1)
        self.assertEqual((r["ti_id"], r["trigger_event"]), (a["ti_id"], {"x": 1}))

    def test_trigger_ids_are_never_reused(self):
        t1 = Agent(self, "t1", beat=False)
        a = self.defer("r1")
        (tid,) = self.poll(t1, wait=5)
        st, b = self.req("POST", f"/api/v1/triggers/{tid}/event", {"payload": {"n": 1}},
                         t1.session)
        self.assertEqual(st, 200, b)
        # The task resumes and defers again: a new trigger, handed to the same
        # triggerer, while the fired one (the highest id) is gone.
        (r,) = self.worker.take(1)
        self.assertEqual(r["ti_id"], a["ti_id"])
        st, b = self.worker.report(r, "deferred", trigger={"type": "timer",
                                                            "at": "2099-01-01T00:00:00Z"})
        self.assertEqual((st, b), (200, {"state": "deferred"}))
        (tid2,) = self.poll(t1, wait=5)
        self.assertGreater(tid2, tid)
        # A late copy of the first event (a retry whose reply was lost) and a
        # heartbeat still listing the old trigger do not reach the new one.
        st, b = self.req("POST", f"/api/v1/triggers/{tid}/event", {"payload": {"n": 1}},
                         t1.session)
        self.assertEqual(st, 404, b)
        self.assertEqual(self.ti_states("df", "r1")["s"], "deferred")
        self.assertEqual(self.beat(t1, [tid, tid2]), [tid])
        # Nor after a restart.
        st, b = self.req("POST", f"/api/v1/triggers/{tid2}/event", {"payload": {"n": 2}},
                         t1.session)
        self.assertEqual(st, 200, b)
        (r,) = self.worker.take(1)
        self.assertEqual(self.stop_plane(), 0)
        self.restart_plane()
        st, b = self.worker.report(r, "deferred", trigger={"type": "timer",
                                                            "at": "2099-01-01T00:00:00Z"})
        self.assertEqual((st, b), (200, {"state": "deferred"}))
        (tid3,) = self.poll(t1, wait=5)
        self.assertGreater(tid3, tid2)

    def test_held_stays_assigned(self):
        t1, t2 = Agent(self, "t1", beat=False), Agent(self, "t2", beat=False)
        self.defer("r1")
        (tid,) = self.poll(t1, wait=5)
        for _ in range(3):
            time.sleep(GRACE / 2)
            self.assertEqual(self.beat(t1, [tid]), [])
        self.assertEqual(self.poll(t2), [])

    def test_held_but_not_assigned_is_cancelled(self):
        t1, t2 = Agent(self, "t1", beat=False), Agent(self, "t2", beat=False)
        self.defer("r1")
        (tid,) = self.poll(t1, wait=5)
        # t1 crashes and registers again: its triggers go back to the pool...
        again = Agent(self, "t1", beat=False)
        self.assertEqual(again.id, t1.id)
        self.assertEqual(self.poll(t2), [tid])
        # ...and when it still lists the old one it is told to drop it, with
        # an id that never existed.
        self.assertEqual(sorted(self.beat(again, [tid, 999999, tid])), [tid, 999999])
        self.assertEqual(self.beat(t2, [tid]), [])

    def test_fired_trigger_listed_is_cancelled(self):
        t1 = Agent(self, "t1", beat=False)
        self.defer("r1")
        (tid,) = self.poll(t1, wait=5)
        st, b = self.req("POST", f"/api/v1/triggers/{tid}/event", {"payload": {}}, t1.session)
        self.assertEqual(st, 200, b)
        self.assertEqual(self.beat(t1, [tid]), [tid])

    def test_heartbeat_without_triggers_changes_nothing(self):
        t1, t2 = Agent(self, "t1", beat=False), Agent(self, "t2", beat=False)
        self.defer("r1")
        (tid,) = self.poll(t1, wait=5)
        time.sleep(GRACE + 0.2)
        st, b = t1.heartbeat()  # no "triggers" key: not a triggerer's heartbeat
        self.assertEqual((st, b["cancel_triggers"]), (200, []))
        self.assertEqual(self.poll(t2), [])

    def test_many_triggers(self):
        t1 = Agent(self, "t1", beat=False)
        held = list(range(1, 5001))
        self.assertEqual(len(self.beat(t1, held)), 5000)
        # A triggerer at 100,000 held lists them all (within the 1 MiB body cap).
        self.assertEqual(len(self.beat(t1, list(range(1, 100001)))), 100000)
        st, b = t1.heartbeat(triggers=[1] * 2 + ["x"])
        self.assertEqual(st, 400, b)

    def test_released_trigger_wakes_a_waiting_poll(self):
        t1, t2 = Agent(self, "t1", beat=False), Agent(self, "t2", beat=False)
        self.defer("r1")
        (tid,) = self.poll(t1, wait=5)
        time.sleep(GRACE + 0.2)
        got = {}
        th = threading.Thread(target=lambda: got.update(ids=self.poll(t2, wait=20)), daemon=True)
        th.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        self.beat(t1, [])
        th.join(15 * harness.SLOW)
        self.assertEqual(got.get("ids"), [tid])
        self.assertLess(time.monotonic() - t0, 5)


if __name__ == "__main__":
    import unittest
    unittest.main()
