"""A DAG uploaded again while runs of it are going (Airflow's
verify_integrity): running runs get task instances for the tasks the new
version adds, scheduled by their trigger rules; task instances of removed
tasks that have not started become `removed`, a running one runs to its end;
a task added back gets its task instance back. Finished runs are left alone,
and runs complete correctly afterwards."""
import time

from schedfix import Agent, SchedCase, dag, drive


class DagVersionTest(SchedCase):
    def setUp(self):
        super().setUp()
        self.boot()
        self.ag = Agent(self, "w1")

    def tis(self, dag_id, run_id):
        return {t["task_id"]: t for t in self.show_run(dag_id, run_id)["task_instances"]}

    def wait_states(self, dag_id, run_id, want, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.ti_states(dag_id, run_id)
            if all(got.get(k) == v for k, v in want.items()):
                return got
            time.sleep(0.05)
        self.fail(f"{want} not reached: {self.ti_states(dag_id, run_id)}")

    def test_added_tasks_join_running_runs(self):
        v1 = [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}]
        self.push_ok(dag("d", v1))
        self.trigger("d", run_id="done")
        self.assertEqual(drive(self, self.ag, "d", "done")["state"], "success")
        self.trigger("d", run_id="r")
        (a,) = self.ag.take(1)
        self.assertEqual(a["task_id"], "a")
        # v2: c after a, d after c, e with no upstream, f after b, all_done.
        self.push_ok(dag("d", v1 + [{"task_id": "c", "upstream": ["a"]},
                                    {"task_id": "d", "upstream": ["c"]},
                                    {"task_id": "e"},
                                    {"task_id": "f", "upstream": ["b"],
                                     "trigger_rule": "all_done"}]))
        got = self.wait_states("d", "r", {"a": "running", "b": "none", "c": "none",
                                          "d": "none", "e": "queued", "f": "none"})
        self.assertEqual(len(got), 6)
        (e,) = self.ag.take(1)
        self.assertEqual((e["task_id"], e["task"]["task_id"]), ("e", "e"))
        self.assertEqual(self.ag.report(e, "success")[0], 200)
        self.assertEqual(self.ag.report(a, "failed", exit_code=1)[0], 200)
        # f (all_done after b) still runs once b is upstream_failed.
        self.assertEqual(drive(self, self.ag, "d", "r")["state"], "failed")
        self.assertEqual(self.ti_states("d", "r"), {
            "a": "failed", "b": "upstream_failed", "c": "upstream_failed",
            "d": "upstream_failed", "e": "success", "f": "success"})
        # The finished run of v1 kept its two task instances.
        self.assertEqual(sorted(self.ti_states("d", "done")), ["a", "b"])

    def test_added_task_runs_and_run_succeeds(self):
        self.push_ok(dag("d", [{"task_id": "a"}]))
        self.trigger("d", run_id="r")
        (a,) = self.ag.take(1)
        self.push_ok(dag("d", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}]))
        self.wait_states("d", "r", {"b": "none"})
        self.assertEqual(self.ag.report(a, "success")[0], 200)
        (b,) = self.ag.take(1)
        self.assertEqual(b["task_id"], "b")
        # The run is not finished while the added task runs.
        self.assertEqual(self.show_run("d", "r")["state"], "running")
        self.assertEqual(self.ag.report(b, "success")[0], 200)
        self.assertEqual(self.wait_run("d", "r")["state"], "success")
        self.assertEqual(self.ti_states("d", "r"), {"a": "success", "b": "success"})

    def test_removed_tasks(self):
        v1 = [{"task_id": "a"}, {"task_id": "run"}, {"task_id": "offer"},
              {"task_id": "wait", "upstream": ["a"]}, {"task_id": "b", "upstream": ["a"]}]
        self.push_ok(dag("d", v1))
        self.trigger("d", run_id="r")
        offers = {x["task_id"]: x for x in self.ag.work(wait=2, free_slots=16)}
        self.assertEqual(sorted(offers), ["a", "offer", "run"])
        for t in ("a", "run"):
            self.assertEqual(self.ag.start(offers[t])[0], 200)
        # v2 drops "run" (running), "offer" (offered, not started) and "wait" (waiting).
        self.push_ok(dag("d", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}]))
        self.wait_states("d", "r", {"offer": "removed", "wait": "removed", "run": "running"})
        st, b = self.ag.start(offers["offer"])
        self.assertEqual(st, 409, b)  # the offer went with its task
        self.assertEqual(self.ag.report(offers["a"], "success")[0], 200)
        (b,) = self.ag.take(1)
        self.assertEqual(self.ag.report(b, "success")[0], 200)
        # The running try of the removed task holds the run open, then ends it.
        time.sleep(0.5)
        self.assertEqual(self.show_run("d", "r")["state"], "running")
        self.assertEqual(self.ag.report(offers["run"], "success")[0], 200)
        self.assertEqual(self.wait_run("d", "r")["state"], "success")
        self.assertEqual(self.ti_states("d", "r"), {
            "a": "success", "b": "success", "run": "success", "offer": "removed",
            "wait": "removed"})

    def test_removed_deferred_and_retrying_tasks(self):
        self.push_ok(dag("d", [{"task_id": "keep"}, {"task_id": "sensor"},
                               {"task_id": "flaky", "retries": 3, "retry_delay": 60}]))
        self.trigger("d", run_id="r")
        got = {x["task_id"]: x for x in self.ag.take(3)}
        st, _ = self.ag.report(got["sensor"], "deferred", trigger={"type": "timer",
                                                                   "at": "2099-01-01T00:00:00Z"})
        self.assertEqual(st, 200)
        st, b = self.ag.report(got["flaky"], "failed", exit_code=1)
        self.assertEqual((st, b["state"]), (200, "up_for_retry"))
        self.push_ok(dag("d", [{"task_id": "keep"}]))
        self.wait_states("d", "r", {"sensor": "removed", "flaky": "removed"})
        t = Agent(self, "t1", beat=False)
        st, b = self.req("POST", "/api/v1/triggers/poll", {"capacity": 5, "wait": 0}, t.session)
        self.assertEqual(b["triggers"], [])  # the trigger went with its task instance
        self.assertEqual(self.ag.report(got["keep"], "success")[0], 200)
        self.assertEqual(self.wait_run("d", "r")["state"], "success")

    def test_task_added_back(self):
        self.push_ok(dag("d", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}]))
        self.trigger("d", run_id="r")
        (a,) = self.ag.take(1)
        self.push_ok(dag("d", [{"task_id": "a"}]))
        self.wait_states("d", "r", {"b": "removed"})
        self.push_ok(dag("d", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}]))
        self.wait_states("d", "r", {"b": "none"})
        self.assertEqual(self.ag.report(a, "success")[0], 200)
        self.assertEqual(drive(self, self.ag, "d", "r")["state"], "success")
        self.assertEqual(self.ti_states("d", "r"), {"a": "success", "b": "success"})

    def test_same_version_changes_nothing(self):
        d = dag("d", [{"task_id": "a"}])
        self.push_ok(d)
        self.trigger("d", run_id="r")
        (a,) = self.ag.take(1)
        self.push_ok(d)
        self.assertEqual(self.ag.report(a, "success")[0], 200)
        self.assertEqual(self.wait_run("d", "r")["state"], "success")
        self.assertEqual(self.ti_states("d", "r"), {"a": "success"})

    def test_kept_across_restart(self):
        self.push_ok(dag("d", [{"task_id": "a"}]))
        self.trigger("d", run_id="r")
        (a,) = self.ag.take(1)
        self.push_ok(dag("d", [{"task_id": "a"}, {"task_id": "n"}]))
        self.wait_states("d", "r", {"n": "queued"})
        self.stop_plane()
        self.restart_plane()
        self.assertEqual(self.ag.report(a, "success")[0], 200)
        self.assertEqual(drive(self, self.ag, "d", "r")["state"], "success")
        self.assertEqual(self.ti_states("d", "r"), {"a": "success", "n": "success"})
