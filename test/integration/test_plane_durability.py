"""remex-plane durability across kill -9: a state report answered 200 is kept;
a start may be committed lazily and lost, and then the plane takes the task
instance back as running from its worker's heartbeat or state report, without
handing it to anyone else."""
import signal
import time

import harness
from schedfix import Agent, SchedCase, dag


class KillTest(SchedCase):
    def setUp(self):
        super().setUp()
        # Agents here heartbeat by hand; 100 missed heartbeats (50 s) keep them
        # from being lost.
        self.boot(offer_timeout="1s", heartbeat_interval="500ms", lost_after_missed=100)

    def kill9_and_restart(self):
        self.plane.signal(signal.SIGKILL)
        self.assertEqual(self.plane.wait(20), -signal.SIGKILL)
        self.restart_plane()

    def test_state_report_survives_kill_9(self):
        self.push_ok(dag("k9", [{"task_id": f"t{i}"} for i in range(20)], max_active_tasks=50))
        ag = Agent(self, "w1", slots=20, beat=False)
        self.trigger("k9", run_id="r")
        got = ag.take(20, free_slots=20)
        for a in got[:10]:
            self.assertEqual(ag.report(a, "success")[0], 200)
        self.kill9_and_restart()
        states = self.ti_states("k9", "r")
        for a in got[:10]:
            self.assertEqual(states[a["task_id"]], "success", states)
        for a in got[10:]:
            self.assertIn(states[a["task_id"]], ("running", "offered"), states)
        # The rest report after the restart (their starts may be lost): accepted.
        for a in got[10:]:
            st, b = ag.report(a, "success")
            self.assertEqual((st, b), (200, {"state": "success"}))
        self.assertEqual(self.wait_run("k9", "r")["state"], "success")

    def test_upload_and_trigger_survive_kill_9(self):
        # Transactions of many WAL frames: written out before the reply too.
        tasks = [{"task_id": f"t{i:04d}", "env": {"PAD": "x" * 200}} for i in range(1500)]
        self.push_ok(dag("big", tasks, max_active_tasks=5000))
        self.trigger("big", run_id="r1")
        harness.wait_for(lambda: len(self.show_run("big", "r1")["task_instances"]) == 1500, 20,
                         what="1500 task instances")
        self.trigger("big", run_id="r2")
        self.kill9_and_restart()
        st, b = self.req("GET", "/api/v1/admin/dags/big", None, self.admin)
        self.assertEqual(st, 200, b)
        self.assertEqual(len(self.show_run("big", "r1")["task_instances"]), 1500)
        self.assertEqual(self.show_run("big", "r2")["run_id"], "r2")
        harness.wait_for(lambda: len(self.show_run("big", "r2")["task_instances"]) == 1500, 20,
                         what="the second run's task instances")

    def test_lost_start_comes_back_from_heartbeat_or_report(self):
        self.push_ok(dag("k8", [{"task_id": "t"}, {"task_id": "u"}]))
        ag = Agent(self, "w1", beat=False)
        other = Agent(self, "w2", beat=False)
        self.trigger("k8", run_id="r")
        a, b = sorted(ag.take(2), key=lambda x: x["task_id"])
        self.kill9_and_restart()
        states = self.ti_states("k8", "r")
        self.assertIn(states["t"], ("running", "offered"))
        self.assertIn(states["u"], ("running", "offered"))
        # u comes back from its state report...
        self.assertEqual(ag.report(b, "success"), (200, {"state": "success"}))
        # ...t from the heartbeat's running list.
        st, hb = ag.heartbeat([a])
        self.assertEqual((st, hb["cancel"]), (200, []))
        self.assertEqual(self.ti_states("k8", "r")["t"], "running")
        # Past offer_timeout t is still this worker's: nobody else gets it.
        time.sleep(1.5 * harness.SLOW)
        self.assertEqual(other.work(wait=0.2), [])
        st, hb = ag.heartbeat([a])
        self.assertEqual((st, hb["cancel"]), (200, []))
        self.assertEqual(ag.report(a, "success"), (200, {"state": "success"}))
        self.assertEqual(self.wait_run("k8", "r")["state"], "success")


if __name__ == "__main__":
    import unittest
    unittest.main()
