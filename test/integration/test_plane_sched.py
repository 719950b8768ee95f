"""remex-plane scheduler semantics, end to end over the API: trigger rules,
retries with backoff, cron data intervals and catchup, max_active_runs,
pause, DAG sync (manifest, upload, import errors), clear / mark failed, and
a plane restart in the middle of a run."""
import datetime
import time

import harness
import schedfix
from schedfix import Agent, SchedCase, dag, drive

# (rule, upstream combination, expected state of the checker task)
RULE_CASES = [
    ("all_success", "ss", "success"), ("all_success", "sf", "upstream_failed"),
    ("all_success", "sk", "skipped"),
    ("all_failed", "ff", "success"), ("all_failed", "sf", "skipped"),
    ("all_done", "sf", "success"), ("all_done", "fk", "success"),
    ("all_skipped", "kk", "success"), ("all_skipped", "sk", "skipped"),
    ("one_success", "sf", "success"), ("one_success", "ff", "upstream_failed"),
    ("one_success", "kk", "skipped"),
    ("one_failed", "sf", "success"), ("one_failed", "ss", "skipped"),
    ("one_done", "sk", "success"), ("one_done", "kk", "skipped"),
    ("none_failed", "sk", "success"), ("none_failed", "sf", "upstream_failed"),
    ("none_skipped", "sf", "success"), ("none_skipped", "sk", "skipped"),
    ("none_failed_min_one_success", "sk", "success"),
    ("none_failed_min_one_success", "kk", "skipped"),
    ("none_failed_min_one_success", "sf", "upstream_failed"),
    ("always", "ff", "success"),
]
UPS = {"ss": ["s1", "s2"], "sf": ["s1", "f1"], "sk": ["s1", "k1"], "ff": ["f1", "f2"],
       "kk": ["k1", "k2"], "fk": ["f1", "k1"]}


def midnight(days_ago):
    now = datetime.datetime.now(datetime.timezone.utc)
    d = datetime.datetime(now.year, now.month, now.day, tzinfo=datetime.timezone.utc)
    return d - datetime.timedelta(days=days_ago)


def rfc(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class SchedTest(SchedCase):
    def setUp(self):
        super().setUp()
        self.boot()

    def test_every_trigger_rule(self):
        tasks = [{"task_id": t} for t in ("s1", "s2", "f1", "f2", "k1", "k2")]
        for i, (rule, combo, _) in enumerate(RULE_CASES):
            tasks.append({"task_id": f"c{i}_{rule}_{combo}", "upstream": UPS[combo],
                          "trigger_rule": rule})
        self.push_ok(dag("rules", tasks))
        ag = Agent(self, "w1")
        run = self.trigger("rules")
        outcomes = {"f1": "failed", "f2": "failed", "k1": "skipped", "k2": "skipped"}
        r = drive(self, ag, "rules", run["run_id"], outcomes)
        states = {t["task_id"]: t["state"] for t in r["task_instances"]}
        for i, (rule, combo, want) in enumerate(RULE_CASES):
            self.assertEqual(states[f"c{i}_{rule}_{combo}"], want, (rule, combo))
        self.assertEqual(r["state"], "failed")  # some leaves are upstream_failed

    def test_run_success_and_chain_order(self):
        self.push_ok(dag("chain", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]},
                                   {"task_id": "c", "upstream": ["b"]}]))
        ag = Agent(self, "w1")
        run = self.trigger("chain", conf={"k": "v"})
        seen = []
        for _ in range(3):
            (a,) = ag.take(1)
            self.assertEqual(a["conf"], {"k": "v"})
            self.assertEqual(ag.report(a, "success")[0], 200)
            seen.append(a["task_id"])
        self.assertEqual(seen, ["a", "b", "c"])
        self.assertEqual(self.wait_run("chain", run["run_id"])["state"], "success")

    def test_retries_with_exponential_backoff(self):
        self.push_ok(dag("retry", [{"task_id": "t", "retries": 2, "retry_delay": 1,
                                    "retry_exponential_backoff": True, "max_retry_delay": 10}]))
        ag = Agent(self, "w1")
        run = self.trigger("retry")
        gaps = []
        (a,) = ag.take(1)
        self.assertEqual(a["try_number"], 1)
        for want_try in (2, 3):
            st, b = ag.report(a, "failed", exit_code=3)
            self.assertEqual((st, b["state"]), (200, "up_for_retry"))
            t0 = time.monotonic()
            (a,) = ag.take(1)
            gaps.append(time.monotonic() - t0)
            self.assertEqual(a["try_number"], want_try)
        self.assertGreaterEqual(gaps[0], 0.9)
        self.assertGreaterEqual(gaps[1], 1.9)
        self.assertLess(gaps[1], 6 * harness.SLOW)
        st, b = ag.report(a, "failed", exit_code=3)
        self.assertEqual((st, b["state"]), (200, "failed"))
        r = self.wait_run("retry", run["run_id"])
        self.assertEqual(r["state"], "failed")
        self.assertEqual(r["task_instances"][0]["exit_code"], 3)

    def test_catchup_data_intervals(self):
        start = midnight(3)
        self.push_ok(dag("daily", [{"task_id": "t"}], schedule="@daily", start_date=rfc(start),
                         catchup=True))
        runs = harness.wait_for(lambda: (lambda r: r if len(r) >= 3 else None)(
            self.runs("daily")), 10, 0.05, "3 catchup runs")
        runs = sorted(runs, key=lambda r: r["logical_date"])
        self.assertEqual(len(runs), 3)
        for i, r in enumerate(runs):
            s, e = start + datetime.timedelta(days=i), start + datetime.timedelta(days=i + 1)
            self.assertEqual(r["run_type"], "scheduled")
            self.assertEqual(r["logical_date"], rfc(s))
            self.assertEqual(r["data_interval_start"], rfc(s))
            self.assertEqual(r["data_interval_end"], rfc(e))
            self.assertEqual(r["run_id"], "scheduled__" + rfc(s))

    def test_no_catchup_only_latest_interval(self):
        self.push_ok(dag("nocatch", [{"task_id": "t"}], schedule="@daily",
                         start_date=rfc(midnight(5)), catchup=False))
        runs = harness.wait_for(lambda: self.runs("nocatch"), 10, 0.05, "a run")
        time.sleep(0.3)
        runs = self.runs("nocatch")
        self.assertEqual(len(runs), 1, runs)
        self.assertEqual(runs[0]["data_interval_start"], rfc(midnight(1)))
        self.assertEqual(runs[0]["data_interval_end"], rfc(midnight(0)))

    def test_max_active_runs(self):
        self.push_ok(dag("mar", [{"task_id": "t"}], max_active_runs=1))
        ag = Agent(self, "w1")
        ids = [self.trigger("mar", run_id=f"r{i}")["run_id"] for i in range(3)]
        (a,) = ag.take(1)
        time.sleep(0.3)
        states = [self.show_run("mar", i)["state"] for i in ids]
        self.assertEqual(states, ["running", "queued", "queued"])
        self.assertEqual(ag.work(wait=0.3), [])
        self.assertEqual(ag.report(a, "success")[0], 200)
        (b,) = ag.take(1)
        self.assertEqual(b["run_id"], "r1")
        self.assertEqual(self.show_run("mar", "r2")["state"], "queued")

    def test_max_active_tasks(self):
        self.push_ok(dag("mat", [{"task_id": f"t{i}"} for i in range(4)], max_active_tasks=2))
        ag = Agent(self, "w1")
        self.trigger("mat", run_id="r")
        got = ag.take(2, free_slots=8)
        self.assertEqual(ag.work(wait=0.3, free_slots=8), [])
        waiting = {}
        th = __import__("threading").Thread(
            target=lambda: waiting.setdefault("a", ag.work(wait=10, free_slots=8)))
        th.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        self.assertEqual(ag.report(got[0], "success")[0], 200)
        th.join(15)
        self.assertLess(time.monotonic() - t0, 2 * harness.SLOW)
        self.assertEqual(len(waiting["a"]), 1)

    def test_pools_shared_across_dags_and_agents(self):
        """A pool's slots bound its task instances across DAGs, runs and agents
        (pool_slots each); a task naming an unknown pool waits until it exists."""
        st, b = self.req("PUT", "/api/v1/admin/pools/db", {"slots": 3, "description": "the DB"},
                         self.admin)
        self.assertEqual((st, b["slots"], b["open"]), (200, 3, 3), b)
        self.push_ok(dag("pa", [{"task_id": "heavy", "pool": "db", "pool_slots": 2},
                                {"task_id": "free"}]))
        self.push_ok(dag("pb", [{"task_id": "light", "pool": "db"},
                                {"task_id": "other", "pool": "db"},
                                {"task_id": "late", "pool": "nosuch"}]))
        self.assertEqual(self.req("GET", "/api/v1/admin/dags/pa", None, self.admin)[1]["dag"]
                         ["tasks"][0]["pool"], "db")
        w1, w2 = Agent(self, "w1"), Agent(self, "w2")
        self.trigger("pa", run_id="r")
        self.trigger("pb", run_id="r")
        time.sleep(0.3)
        got = [a["task_id"] for a in w1.work(wait=1, free_slots=8)]
        got += [a["task_id"] for a in w2.work(wait=1, free_slots=8)]
        pooled = [t for t in got if t in ("heavy", "light", "other")]
        # 3 slots: heavy (2) + one light one, or light + other; never all three.
        self.assertIn(sorted(pooled), (["heavy", "light"], ["heavy", "other"], ["light", "other"]))
        self.assertIn("free", got)
        self.assertNotIn("late", got)
        st, b = self.req("GET", "/api/v1/admin/pools", None, self.admin)
        db = [x for x in b["pools"] if x["name"] == "db"][0]
        self.assertEqual(db["occupied"], 3 if "heavy" in pooled else 2)
        text = self.req("GET", "/metrics", raw=True)[1].decode()
        self.assertIn(f'remex_plane_pool_slots{{pool="db",state="occupied"}} {db["occupied"]}',
                      text)
        self.assertIn('remex_plane_pool_slots{pool="db",state="total"} 3', text)
        # Creating the missing pool lets its task instance go at once.
        self.assertEqual(self.req("PUT", "/api/v1/admin/pools/nosuch", {"slots": 1},
                                  self.admin)[0], 200)
        self.assertEqual([a["task_id"] for a in w2.work(wait=2, free_slots=8)], ["late"])
        for bad in ({"slots": -1}, {"slots": "3"}, {}, {"slots": 1, "extra": 1}):
            st, b = self.req("PUT", "/api/v1/admin/pools/db", bad, self.admin)
            self.assertEqual(st, 400, (bad, b))
        self.assertEqual(self.req("DELETE", "/api/v1/admin/pools/default_pool", None,
                                  self.admin)[0], 409)
        self.assertEqual(self.req("DELETE", "/api/v1/admin/pools/nosuch", None, self.admin)[0],
                         200)

    def test_pool_slot_freed_wakes_a_waiting_poll(self):
        self.assertEqual(self.req("PUT", "/api/v1/admin/pools/one", {"slots": 1}, self.admin)[0],
                         200)
        self.push_ok(dag("po", [{"task_id": "a", "pool": "one"}, {"task_id": "b", "pool": "one"}]))
        ag = Agent(self, "w1")
        self.trigger("po", run_id="r")
        (first,) = ag.take(1, free_slots=8)
        waiting = {}
        th = __import__("threading").Thread(
            target=lambda: waiting.setdefault("a", ag.work(wait=10, free_slots=8)))
        th.start()
        time.sleep(0.3)
        self.assertNotIn("a", waiting)
        t0 = time.monotonic()
        self.assertEqual(ag.report(first, "success")[0], 200)
        th.join(15)
        self.assertLess(time.monotonic() - t0, 2 * harness.SLOW)
        self.assertEqual([a["task_id"] for a in waiting["a"]],
                         [t for t in ("a", "b") if t != first["task_id"]])

    def test_dagrun_timeout(self):
        self.push_ok(dag("drt", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}],
                         dagrun_timeout=1))
        ag = Agent(self, "w1")
        self.trigger("drt", run_id="r")
        (a,) = ag.take(1)
        r = self.wait_run("drt", "r", timeout=10)
        self.assertEqual(r["state"], "failed")
        self.assertEqual(self.ti_states("drt", "r"), {"a": "skipped", "b": "skipped"})
        harness.wait_for(lambda: [c for c in ag.cancels if c["ti_id"] == a["ti_id"]], 10, 0.05,
                         "cancel of the running TI")
        self.assertEqual(ag.report(a, "success")[0], 409)

    def test_pause_holds_runs(self):
        self.push_ok(dag("p", [{"task_id": "t"}], schedule="@daily",
                         start_date=rfc(midnight(2)), catchup=True))
        st, b = self.req("POST", "/api/v1/admin/dags/p/pause", None, self.admin)
        self.assertEqual((st, b["is_paused"]), (200, True))
        # Runs created before the pause took effect are not started while paused.
        ag = Agent(self, "w1")
        before = len(self.runs("p"))
        manual = self.trigger("p", run_id="m1")
        time.sleep(0.3)
        self.assertEqual(self.show_run("p", "m1")["state"], "queued")
        self.assertEqual(len(self.runs("p")), before + 1)
        self.assertEqual(self.req("POST", "/api/v1/admin/dags/p/unpause", None,
                                  self.admin)[0], 200)
        drive(self, ag, "p", manual["run_id"])

    def test_manifest_and_upload(self):
        d1 = dag("m1", [{"task_id": "t"}])
        st, b = self.req("POST", "/api/v1/dags/manifest",
                         {"bundle": "b1", "version": "v1",
                          "files": [{"path": "m1.yaml", "dags": [{"dag_id": "m1", "hash": "x"}]}],
                          "import_errors": [{"file": "bad.yaml", "line": 3, "column": 7,
                                             "message": "tasks[0]: boom"}]}, self.admin)
        self.assertEqual((st, b), (200, {"missing": ["m1"]}))
        h = self.push_ok(d1)["hash"]
        self.assertEqual(len(h), 64)
        man = {"bundle": "b1", "version": "v2",
               "files": [{"path": "m1.yaml", "dags": [{"dag_id": "m1", "hash": h}]}]}
        st, b = self.req("POST", "/api/v1/dags/manifest", man, self.admin)
        self.assertEqual((st, b), (200, {"missing": []}))
        st, b = self.req("GET", "/api/v1/admin/import-errors", None, self.admin)
        self.assertEqual(b["import_errors"], [])
        st, b = self.req("GET", "/api/v1/admin/dags/m1", None, self.admin)
        self.assertEqual((b["bundle"]["version"], b["is_active"]), ("v2", True))
        self.assertEqual(b["dag"]["tasks"][0]["task_id"], "t")
        st, b = self.req("POST", "/api/v1/dags/manifest",
                         {"bundle": "b1", "version": "v3", "files": [],
                          "import_errors": [{"file": "m1.yaml", "line": 1, "column": 1,
                                             "message": "gone"}]}, self.admin)
        self.assertEqual(st, 200)
        st, b = self.req("GET", "/api/v1/admin/dags", None, self.admin)
        self.assertEqual([(d["dag_id"], d["is_active"]) for d in b["dags"]], [("m1", False)])
        st, b = self.req("GET", "/api/v1/admin/import-errors", None, self.admin)
        self.assertEqual([(e["file"], e["line"], e["column"]) for e in b["import_errors"]],
                         [("m1.yaml", 1, 1)])
        # An inactive DAG still runs what it is asked to.
        ag = Agent(self, "w1")
        run = self.trigger("m1")
        self.assertEqual(drive(self, ag, "m1", run["run_id"])["state"], "success")

    def test_upload_validation_names_the_field(self):
        bad = dag("v", [{"task_id": "t", "retries": "many"}])
        st, b = self.push(bad)
        self.assertEqual(st, 400, b)
        self.assertIn("tasks[0].retries", b["error"]["message"])
        st, b = self.push(dag("v", [{"task_id": "t", "upstream": ["nope"]}]))
        self.assertEqual(st, 400, b)
        st, b = self.req("PUT", "/api/v1/dags/other",
                         {"dag": dag("x", [{"task_id": "t"}])}, self.admin)
        self.assertEqual(st, 400, b)
        st, b = self.req("PUT", "/api/v1/dags/v", {"dag": "no"}, self.admin)
        self.assertEqual(st, 400, b)
        self.assertEqual(self.req("GET", "/api/v1/admin/dags/v", None, self.admin)[0], 404)
        st, b = self.req("POST", "/api/v1/admin/dags/nope/runs", {}, self.admin)
        self.assertEqual(st, 404, b)
        self.push_ok(dag("v", [{"task_id": "t"}]))
        st, b = self.req("POST", "/api/v1/admin/dags/v/runs", {"conf": [1]}, self.admin)
        self.assertEqual(st, 400, b)
        self.assertIn("conf", b["error"]["message"])
        self.trigger("v", run_id="dup")
        st, b = self.req("POST", "/api/v1/admin/dags/v/runs", {"run_id": "dup"}, self.admin)
        self.assertEqual(st, 409, b)

    def test_clear_and_mark_failed(self):
        self.push_ok(dag("cl", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}]))
        ag = Agent(self, "w1")
        run = self.trigger("cl", run_id="r")
        drive(self, ag, "cl", "r")
        st, b = self.req("POST", "/api/v1/admin/dags/cl/runs/r/tasks/a/clear",
                         {"downstream": True}, self.admin)
        self.assertEqual((st, sorted(b["cleared"])), (200, ["a", "b"]))
        (a,) = ag.take(1)
        self.assertEqual((a["task_id"], a["try_number"]), ("a", 2))
        self.assertEqual(self.show_run("cl", "r")["state"], "running")
        st, b = self.req("POST", "/api/v1/admin/dags/cl/runs/r/tasks/a/fail", None, self.admin)
        self.assertEqual(st, 200, b)
        # The agent still running it is told to cancel; its report is refused.
        st, hb = ag.heartbeat([a])
        self.assertEqual(st, 200, hb)
        self.assertEqual([c["ti_id"] for c in hb["cancel"]], [a["ti_id"]])
        self.assertEqual(ag.report(a, "success")[0], 409)
        r = self.wait_run("cl", run["run_id"])
        self.assertEqual(r["state"], "failed")
        self.assertEqual(self.ti_states("cl", "r"), {"a": "failed", "b": "upstream_failed"})

    def test_restart_mid_run_keeps_state(self):
        self.push_ok(dag("rs", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]},
                                {"task_id": "c", "upstream": ["b"]}]))
        ag = Agent(self, "w1")
        self.trigger("rs", run_id="r", conf={"n": 1})
        (a,) = ag.take(1)
        self.assertEqual(ag.report(a, "success")[0], 200)
        (b,) = ag.take(1)  # running when the plane stops
        self.assertEqual(self.stop_plane(), 0)
        self.restart_plane()
        self.assertEqual(self.ti_states("rs", "r"),
                         {"a": "success", "b": "running", "c": "none"})
        st, hb = ag.heartbeat([b])
        self.assertEqual((st, hb["cancel"]), (200, []))
        self.assertEqual(ag.report(b, "success")[0], 200)
        (c,) = ag.take(1)
        self.assertEqual((c["task_id"], c["conf"]), ("c", {"n": 1}))
        self.assertEqual(ag.report(c, "success")[0], 200)
        self.assertEqual(self.wait_run("rs", "r")["state"], "success")

    def test_metrics(self):
        self.push_ok(dag("mx", [{"task_id": "t", "queue": "q1"}]))
        self.trigger("mx")
        harness.wait_for(lambda: 'remex_plane_task_instances_queued{queue="q1"} 1' in
                         self.req("GET", "/metrics", raw=True)[1].decode(), 10, 0.05,
                         "queued metric")
        text = self.req("GET", "/metrics", raw=True)[1].decode()
        for name in ("remex_plane_dispatch_latency_seconds_bucket",
                     "remex_plane_scheduler_loop_seconds_count", 'remex_plane_dag_runs{state="running"} 1',
                     'remex_plane_task_instances{state="queued"} 1'):
            self.assertIn(name, text)
        # Once taken, the queue keeps its series at 0; an agent's queue has one too.
        ag = Agent(self, "w1", queues=("q1", 'odd"q'))
        ag.take(1, queues=["q1"])
        text = self.req("GET", "/metrics", raw=True)[1].decode()
        self.assertIn('remex_plane_task_instances_queued{queue="q1"} 0', text)
        self.assertIn('remex_plane_task_instances_queued{queue="odd\\"q"} 0', text)


if __name__ == "__main__":
    import unittest
    unittest.main()
