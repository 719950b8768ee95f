"""remex-plane at scale, checked for what it must keep true (never timed):
the counts /metrics shows are kept incrementally, persisted in the
transactions that change them (state_counts, read at start instead of a
full count) and equal a full count of the database after a mixed workload,
a kill -9 and a restart; a queued task
instance resumes only parked work polls of its queue, and no more of them
than there is work."""
import datetime
import http.client
import json
import re
import signal
import sqlite3
import threading
import time

import harness
from schedfix import Agent, SchedCase, dag, drive


def metric_values(text, name):
    """{label value: number} of a one-label gauge or counter in /metrics."""
    out = {}
    for m in re.finditer(r'^' + name + r'\{\w+="([^"]*)"\} (\d+)$', text, re.M):
        out[m.group(1)] = int(m.group(2))
    return out


class CountsTest(SchedCase):
    def setUp(self):
        super().setUp()
        self.boot(offer_timeout="2s", heartbeat_interval="500ms", lost_after_missed=100)

    def metrics(self):
        st, data = self.req("GET", "/metrics", raw=True)
        self.assertEqual(st, 200)
        return data.decode()

    def full_counts(self):
        """The truth, by scanning the tables."""
        db = sqlite3.connect(self.conf["db_path"], timeout=10)
        try:
            tis = dict(db.execute("SELECT state, count(*) FROM task_instances GROUP BY state"))
            queued = dict(db.execute("SELECT queue, count(*) FROM task_instances"
                                     " WHERE state = 'queued' GROUP BY queue"))
            runs = dict(db.execute("SELECT state, count(*) FROM dag_runs GROUP BY state"))
        finally:
            db.close()
        return tis, queued, runs

    def persisted_counts(self):
        """What the plane keeps in state_counts (read at its start)."""
        db = sqlite3.connect(self.conf["db_path"], timeout=10)
        try:
            rows = db.execute("SELECT kind, state, n FROM state_counts").fetchall()
        finally:
            db.close()
        return ({s: n for k, s, n in rows if k == "ti" and n},
                {s: n for k, s, n in rows if k == "run" and n})

    def assert_counts_match(self):
        # One scheduler pass may be between the scrape and the scan: compare
        # once the plane is idle (two equal scrapes in a row).
        def counts():
            return "\n".join(x for x in self.metrics().splitlines()
                             if x.startswith(("remex_plane_task_instances",
                                              "remex_plane_dag_runs")))

        def settled():
            a = counts()
            time.sleep(0.2)
            b = counts()
            return b if a == b else None
        text = harness.wait_for(settled, 20, 0.1, "the plane to settle")
        # The plane holds its database exclusively: count with it stopped.
        self.assertEqual(self.stop_plane(), 0)
        # Every commit that changed states wrote state_counts itself.
        self.assertNotIn("commit outside store_commit", self.plane.output())
        tis, queued, runs = self.full_counts()
        self.assertEqual(self.persisted_counts(), (tis, runs))
        self.restart_plane()
        got = metric_values(text, "remex_plane_task_instances")
        self.assertEqual({k: v for k, v in got.items() if v}, tis, text)
        got_q = metric_values(text, "remex_plane_task_instances_queued")
        self.assertEqual({k: v for k, v in got_q.items() if v}, queued, text)
        got_r = metric_values(text, "remex_plane_dag_runs")
        self.assertEqual({k: v for k, v in got_r.items() if v},
                         {k: v for k, v in runs.items() if k in got_r}, text)
        return tis

    def kill9_and_restart(self):
        self.plane.signal(signal.SIGKILL)
        self.assertEqual(self.plane.wait(20), -signal.SIGKILL)
        self.restart_plane()

    def test_counts_equal_a_full_count_after_mixed_work_kill_9_and_restart(self):
        tasks = [{"task_id": f"ok{i}"} for i in range(6)]
        tasks += [{"task_id": "bad", "retries": 1, "retry_delay": 0}]
        tasks += [{"task_id": "after_bad", "upstream": ["bad"]}]
        tasks += [{"task_id": f"other{i}", "queue": "q2"} for i in range(3)]
        self.push_ok(dag("mix", tasks, max_active_tasks=50))
        ag = Agent(self, "w1", slots=16)
        for r in ("r1", "r2", "r3"):
            self.trigger("mix", run_id=r)
        # r1: every default-queue task runs; "bad" fails twice (one retry).
        harness.wait_for(lambda: len(self.show_run("mix", "r1")["task_instances"]) == 11, 20)
        # 3 runs x (6 ok + 2 tries of bad); after_bad ends upstream_failed.
        done = 0
        deadline = time.monotonic() + 30 * harness.SLOW
        while done < 24 and time.monotonic() < deadline:
            for a in ag.work(wait=0.3, free_slots=16):
                self.assertEqual(ag.start(a)[0], 200)
                done += 1
                if a["task_id"] == "bad":
                    self.assertEqual(ag.report(a, "failed", exit_code=1)[0], 200)
                elif a["run_id"] == "r3" and a["task_id"] in ("ok0", "ok1"):
                    continue  # left running across the crash
                else:
                    self.assertEqual(ag.report(a, "success")[0], 200)
        self.assertEqual(done, 24)
        before = self.assert_counts_match()
        self.assertGreater(before.get("queued", 0), 0, before)  # q2 has no worker
        self.assertGreater(before.get("success", 0), 0, before)
        # A clear moves finished task instances back; then kill -9 at once.
        st, b = self.req("POST", "/api/v1/admin/dags/mix/runs/r1/clear", {}, self.admin)
        self.assertEqual(st, 200, b)
        self.kill9_and_restart()
        # What the kill left on disk, before the restarted plane changes it.
        self.assertEqual(self.stop_plane(), 0)
        tis, _, runs = self.full_counts()
        self.assertEqual(self.persisted_counts(), (tis, runs))
        self.restart_plane()
        self.assert_counts_match()
        # More work after the restart: the q2 tasks of every run, then a count.
        ag2 = Agent(self, "w2", queues=("q2",), slots=16)
        for a in ag2.take(9, free_slots=16):
            self.assertEqual(ag2.report(a, "success")[0], 200)
        self.assert_counts_match()


    def test_a_start_reads_the_persisted_counts_instead_of_counting_the_history(self):
        self.push_ok(dag("few", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}]))
        self.trigger("few", run_id="r1")
        ag = Agent(self, "w1")
        for a in ag.take(1):
            self.assertEqual(ag.report(a, "success")[0], 200)
        tis = self.assert_counts_match()
        self.assertEqual(tis, {"success": 1, "queued": 1}, tis)
        # Rows the plane never saw, counted only in state_counts: a start
        # that counted the tables would not show them; one reading the
        # table does, and keeps them in step with later changes.
        self.assertEqual(self.stop_plane(), 0)
        db = sqlite3.connect(self.conf["db_path"], timeout=10)
        db.execute("UPDATE state_counts SET n = n + 1000000"
                   " WHERE kind = 'ti' AND state = 'success'")
        db.commit()
        db.close()
        self.restart_plane()
        for a in ag.take(1):
            self.assertEqual(ag.report(a, "success")[0], 200)
        text = self.metrics()
        got = metric_values(text, "remex_plane_task_instances")
        self.assertEqual(got.get("success"), 1000002, text)
        self.assertEqual(got.get("queued"), 0, text)
        self.assertEqual(self.stop_plane(), 0)
        self.assertEqual(self.persisted_counts()[0], {"success": 1000002})
        self.restart_plane()


class HeartbeatWaitTest(SchedCase):
    """remex_plane_heartbeat_lock_wait_seconds counts every heartbeat's wait
    for the plane's lock (a cumulative histogram)."""

    def test_each_heartbeat_is_counted_in_the_lock_wait_histogram(self):
        self.boot()
        ag = Agent(self, "w1", beat=False)
        text = self.req("GET", "/metrics", raw=True)[1].decode()
        n0 = metric(text, "remex_plane_heartbeat_lock_wait_seconds_count")
        self.assertIsNotNone(n0, "no remex_plane_heartbeat_lock_wait_seconds")
        for _ in range(5):
            self.assertEqual(ag.heartbeat()[0], 200)
        text = self.req("GET", "/metrics", raw=True)[1].decode()
        self.assertEqual(metric(text, "remex_plane_heartbeat_lock_wait_seconds_count"), n0 + 5)
        buckets = [int(v) for v in re.findall(
            r'^remex_plane_heartbeat_lock_wait_seconds_bucket\{le="[^"]+"\} (\d+)$', text, re.M)]
        self.assertEqual(len(buckets), 13, text)
        self.assertEqual(buckets, sorted(buckets))
        self.assertEqual(buckets[-1], n0 + 5)


class WakeupTest(SchedCase):
    def setUp(self):
        super().setUp()
        self.boot()

    def scrape(self):
        text = self.req("GET", "/metrics", raw=True)[1].decode()
        parked = metric_values(text, "remex_plane_long_polls_parked").get("work")
        woken = metric_values(text, "remex_plane_long_poll_wakeups_total").get("work")
        self.assertIsNotNone(parked, "no remex_plane_long_polls_parked{kind=\"work\"}")
        self.assertIsNotNone(woken, "no remex_plane_long_poll_wakeups_total{kind=\"work\"}")
        return parked, woken

    def test_a_queued_task_wakes_only_polls_of_its_queue_and_no_more_than_its_work(self):
        self.push_ok(dag("qa", [{"task_id": "t", "queue": "a"}]))
        self.push_ok(dag("qb", [{"task_id": f"t{i}", "queue": "b"} for i in range(2)],
                         max_active_tasks=10))
        agents = [Agent(self, f"a{i}", queues=("a",)) for i in range(4)]
        agents += [Agent(self, f"b{i}", queues=("b",)) for i in range(4)]
        got = {}
        lock = threading.Lock()

        def poll(ag):
            # Bounded: one long poll of 20 s, repeated only while nothing came.
            for _ in range(2):
                try:
                    a = ag.work(wait=20, free_slots=1)
                except (AssertionError, OSError):
                    return  # the plane stopped at the end of the test
                if a:
                    with lock:
                        got[ag.id] = a
                    return

        threads = [threading.Thread(target=poll, args=(ag,), daemon=True) for ag in agents]
        for t in threads:
            t.start()
        harness.wait_for(lambda: self.scrape()[0] == 8, 20, 0.05, "8 parked work polls")
        _, woken0 = self.scrape()
        self.trigger("qa", run_id="r")
        harness.wait_for(lambda: len(got) == 1, 20, 0.02, "one assignment on queue a")
        parked, woken1 = self.scrape()
        self.assertEqual(woken1 - woken0, 1, "one queued task instance woke more than one poll")
        a_ids = {ag.id for ag in agents[:4]}
        self.assertTrue(set(got) <= a_ids, got)
        harness.wait_for(lambda: self.scrape()[0] == 7, 20, 0.05, "7 polls parked again")
        # Two task instances on b: at most two b polls resumed, none of a.
        self.trigger("qb", run_id="r")
        harness.wait_for(lambda: len(got) == 3, 20, 0.02, "two assignments on queue b")
        _, woken2 = self.scrape()
        self.assertLessEqual(woken2 - woken1, 2)
        b_ids = {ag.id for ag in agents[4:]}
        self.assertEqual(len(set(got) & b_ids), 2, got)
        harness.wait_for(lambda: self.scrape()[0] == 5, 20, 0.05, "5 polls parked again")
        self.stop_plane()  # answers the parked polls at once
        for t in threads:
            t.join(30)


class ManyDagsTest(SchedCase):
    def test_dags_are_found_after_the_table_grows_and_after_replace_and_delete(self):
        self.boot()
        n = 300  # past several doublings of the DAG table
        for i in range(n):
            self.push_ok(dag(f"d{i:03d}", [{"task_id": "t"}]))
        self.push_ok(dag("d007", [{"task_id": "t"}, {"task_id": "u"}]))  # a new version
        for i in (0, 150, 299):
            st, b = self.req("DELETE", f"/api/v1/admin/dags/d{i:03d}", None, self.admin)
            self.assertEqual(st, 200, b)
        for i in range(n):
            st, b = self.req("GET", f"/api/v1/admin/dags/d{i:03d}", None, self.admin)
            self.assertEqual(st, 404 if i in (0, 150, 299) else 200, (i, b))
        st, b = self.req("GET", "/api/v1/admin/dags/d007", None, self.admin)
        self.assertEqual(b["tasks"], 2, b)
        # The list is read in chunks of 256 DAGs: every DAG once, in order.
        st, b = self.req("GET", "/api/v1/admin/dags", None, self.admin)
        self.assertEqual(st, 200, b)
        ids = [d["dag_id"] for d in b["dags"]]
        self.assertEqual(ids, [f"d{i:03d}" for i in range(n) if i not in (0, 150, 299)])
        self.assertEqual(b["dags"][ids.index("d007")]["tasks"], 2)
        ag = Agent(self, "w1")
        self.trigger("d298", run_id="r")
        self.assertEqual(drive(self, ag, "d298", "r")["state"], "success")
        st, b = self.req("GET", "/api/v1/admin/dags", None, self.admin)
        last = {d["dag_id"]: d["last_run"] for d in b["dags"]}
        self.assertEqual(last["d298"], {"run_id": "r", "state": "success"})
        self.assertIsNone(last["d297"])
        self.restart_after_stop()
        st, b = self.req("GET", "/api/v1/admin/dags/d298", None, self.admin)
        self.assertEqual(st, 200, b)

    def restart_after_stop(self):
        self.assertEqual(self.stop_plane(), 0)
        self.restart_plane()


def metric(text, name):
    """The value of an unlabelled gauge or counter in /metrics (None if absent)."""
    m = re.search(r'^' + name + r' ([0-9.e+-]+)$', text, re.M)
    return float(m.group(1)) if m else None


class DueHeapTest(SchedCase):
    """10,000 DAGs with schedules: a scheduler pass looks only at the DAGs
    that are due; pause, unpause, a new version and delete keep the due heap
    right; a due DAG gets its run on time after a restart and after its
    schedule changed."""
    NDAGS = 10000

    def sched_stats(self):
        text = self.req("GET", "/metrics", raw=True)[1].decode()
        stats = {k: metric(text, "remex_plane_scheduler_" + k) for k in
                 ("dags_examined_total", "dags_due", "loop_seconds_count",
                  "step_max_seconds", "step_max_cpu_seconds")}
        for k, v in stats.items():
            self.assertIsNotNone(v, f"no remex_plane_scheduler_{k} in /metrics")
        return stats

    def seed_dags(self, template_id, n):
        """n copies of a pushed DAG, written straight into the stopped plane's
        database (pushing 10,000 over HTTP would time the client)."""
        db = sqlite3.connect(self.conf["db_path"])
        with db:
            row = db.execute("SELECT bundle, bundle_version, fileloc, hash, json, updated_ms"
                             " FROM dags WHERE dag_id = ?", (template_id,)).fetchone()
            db.executemany(
                "INSERT INTO dags (dag_id, bundle, bundle_version, fileloc, hash, json,"
                " updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((f"s{i:05d}", row[0], row[1], row[2], row[3],
                  row[4].replace(f'"{template_id}"', f'"s{i:05d}"'), row[5])
                 for i in range(n)))
        db.close()

    def settled(self):
        """Stats once two scrapes 0.3 s apart see no DAG examined."""
        def still():
            a = self.sched_stats()
            time.sleep(0.3)
            b = self.sched_stats()
            return b if a["dags_examined_total"] == b["dags_examined_total"] else None
        return harness.wait_for(still, 60, 0.1, "the first passes over the DAGs")

    def test_passes_look_only_at_due_dags_and_due_dags_run_on_time(self):
        self.boot()
        never = {"schedule": "0 0 1 1 *", "start_date": "2100-01-01T00:00:00Z"}
        self.push_ok(dag("tpl", [{"task_id": "t"}], **never))
        self.push_ok(dag("manual", [{"task_id": f"t{i}"} for i in range(3)]))
        self.assertEqual(self.stop_plane(), 0)
        self.seed_dags("tpl", self.NDAGS)
        self.restart_plane()
        s0 = self.settled()
        # Every scheduled DAG was looked at once after the start, and stays in
        # the heap (due in 2101); the DAG without a schedule is not in it.
        self.assertEqual(s0["dags_due"], self.NDAGS + 1, s0)
        self.assertGreaterEqual(s0["dags_examined_total"], self.NDAGS + 1, s0)
        self.assertLess(s0["dags_examined_total"], self.NDAGS + 50, s0)
        # A run of the manual DAG: several passes, none looks at a DAG.
        ag = Agent(self, "w1")
        self.trigger("manual", run_id="r1")
        self.assertEqual(drive(self, ag, "manual", "r1")["state"], "success")
        s1 = self.sched_stats()
        self.assertGreater(s1["loop_seconds_count"], s0["loop_seconds_count"] + 2, (s0, s1))
        self.assertEqual(s1["dags_examined_total"], s0["dags_examined_total"], (s0, s1))
        # Pause takes a DAG out of the heap, unpause puts it back; delete
        # takes it out for good.
        for path, due in (("s00007/pause", self.NDAGS), ("s00007/unpause", self.NDAGS + 1)):
            st, b = self.req("POST", f"/api/v1/admin/dags/{path}", {}, self.admin)
            self.assertEqual(st, 200, b)
            harness.wait_for(lambda: self.sched_stats()["dags_due"] == due, 10, 0.05,
                             f"{due} DAGs due after {path}")
        st, b = self.req("DELETE", "/api/v1/admin/dags/s00008", None, self.admin)
        self.assertEqual(st, 200, b)
        self.assertEqual(self.sched_stats()["dags_due"], self.NDAGS)
        # A schedule change: the new version of s00042 runs every minute; its
        # latest complete interval gets a run at once (catchup off).
        self.push_ok(dag("s00042", [{"task_id": "t"}], schedule="* * * * *",
                         start_date="2020-01-01T00:00:00Z", catchup=False))
        first = harness.wait_for(lambda: self.runs("s00042"), 10, 0.05, "the first run")[0]
        s2 = self.sched_stats()
        self.assertLess(s2["dags_examined_total"] - s1["dags_examined_total"], 10, (s1, s2))
        # Across a restart, the next interval's run is created when it ends.
        self.assertEqual(self.stop_plane(), 0)
        self.restart_plane()
        end = first["data_interval_end"]
        nxt = harness.wait_for(
            lambda: [r for r in self.runs("s00042") if r["data_interval_start"] == end],
            75, 0.2, "the next minute's run")[0]
        created = _rfc3339(nxt["queued_at"])
        due = _rfc3339(nxt["data_interval_end"])
        self.assertGreaterEqual(created, due, nxt)
        self.assertLess(created - due, 3.0, nxt)  # looked at when due, not at a later pass
        s3 = self.settled()
        self.assertEqual(s3["dags_due"], self.NDAGS, s3)


class KeepAlive:
    """One loopback HTTP/1.1 connection kept open (a worker's client does the
    same): draining 10,000 task instances one urllib connection each would
    time the client."""

    def __init__(self, case):
        self.conn = http.client.HTTPConnection("127.0.0.1", case.port, timeout=30)

    def call(self, method, path, body, token):
        self.conn.request(method, path, json.dumps(body),
                          {"Content-Type": "application/json", "Authorization": "Bearer " + token})
        r = self.conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)

    def close(self):
        self.conn.close()


class SliceTest(SchedCase):
    """Runs are created in bounded slices: until its last task instance
    exists a run stays queued with every task instance in state none (a
    kill -9 between slices leaves it so, never a running run with part of
    its task instances), and after a restart it is completed, runs and
    succeeds. 2,000 tasks a run (TenThousandTest: 10,000)."""
    NTASKS = 2000
    NRUNS = 10

    def scrape(self):
        text = self.req("GET", "/metrics", raw=True)[1].decode()
        return (metric_values(text, "remex_plane_task_instances"),
                metric_values(text, "remex_plane_dag_runs"), text)

    def db_rows(self, sql, *args):
        db = sqlite3.connect(self.conf["db_path"])
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def runs_in_db(self):
        """{run_id: (run state, task instances, {ti states})} of the stopped plane."""
        out = {}
        for run_id, rstate, tstate, n in self.db_rows(
                "SELECT r.run_id, r.state, t.state, count(t.id) FROM dag_runs r LEFT JOIN"
                " task_instances t ON t.run = r.id GROUP BY r.id, t.state"):
            _, total, states = out.get(run_id, (rstate, 0, set()))
            if tstate is not None:
                states.add(tstate)
            out[run_id] = (rstate, total + n, states)
        return out

    def kill_mid_creation(self, tries=5):
        """Triggers NRUNS runs and kill -9s the plane while they are being
        created; returns the runs as the database holds them, once a run
        was caught half created (bounded: tries rounds)."""
        for k in range(tries):
            for i in range(self.NRUNS):
                self.trigger("big", run_id=f"k{k}r{i}")
            deadline = time.monotonic() + 20 * harness.SLOW
            while time.monotonic() < deadline:
                _, runs, _ = self.scrape()
                if 0 < runs.get("queued", 0) < self.NRUNS:
                    break
            self.plane.signal(signal.SIGKILL)
            self.assertEqual(self.plane.wait(20), -signal.SIGKILL)
            got = self.runs_in_db()
            half = [r for r, (st, n, _) in got.items() if st == "queued" and 0 < n]
            if half:
                return got, half[0]
            self.restart_plane()
            for r, (st, _, _) in got.items():
                if st in ("queued", "running"):
                    self.req("POST", f"/api/v1/admin/dags/big/runs/{r}/cancel", {}, self.admin)
        self.fail(f"no run caught half created in {tries} tries")

    def drain(self, ag, n):
        """Runs n assignments to success over one kept-alive connection."""
        c = KeepAlive(self)
        done = 0
        deadline = time.monotonic() + 60 * harness.SLOW
        try:
            while done < n and time.monotonic() < deadline:
                st, b = c.call("POST", "/api/v1/work",
                               {"queues": ["default"], "free_slots": 500, "wait": 1}, ag.session)
                self.assertEqual(st, 200, b)
                for a in b["assignments"]:
                    path = f"/api/v1/task-instances/{a['ti_id']}"
                    st, r = c.call("POST", path + "/start",
                                   {"try_number": a["try_number"], "pid": 1, "hostname": "h"},
                                   a["task_token"])
                    self.assertEqual(st, 200, r)
                    st, r = c.call("POST", path + "/state",
                                   {"try_number": a["try_number"], "state": "success"},
                                   a["task_token"])
                    self.assertEqual(st, 200, r)
                    done += 1
        finally:
            c.close()
        self.assertEqual(done, n)

    def test_runs_are_created_in_slices_and_a_kill_9_between_them_leaves_no_half_run(self):
        self.boot()
        self.push_ok(dag("big", [{"task_id": f"t{i:04d}"} for i in range(self.NTASKS)],
                         max_active_tasks=self.NTASKS, max_active_runs=self.NRUNS))
        got, half = self.kill_mid_creation()
        # The invariant, as the crash left it: a running run has all of its
        # task instances; a queued one has part of them, every one none.
        for r, (st, n, states) in got.items():
            if st == "running":
                self.assertEqual(n, self.NTASKS, (r, got[r]))
            elif st == "queued":
                self.assertLess(n, self.NTASKS, (r, got[r]))
                self.assertLessEqual(states, {"none"}, (r, got[r]))
        self.restart_plane()
        # Completed after the restart, in slices; the others are cancelled,
        # the half-created one runs to success.
        def running():
            r = self.show_run("big", half)
            return r if r["state"] == "running" else None
        r = harness.wait_for(running, 60, 0.1, f"run {half} to be running")
        self.assertEqual(len(r["task_instances"]), self.NTASKS)
        for other, (st, _, _) in got.items():
            if other != half and st in ("queued", "running"):
                st, b = self.req("POST", f"/api/v1/admin/dags/big/runs/{other}/cancel", {},
                                 self.admin)
                self.assertEqual(st, 200, b)
        _, _, text = self.scrape()
        self.assertGreater(metric(text, "remex_plane_scheduler_slices_total"), 0)
        ag = Agent(self, "w1", slots=500)
        self.drain(ag, self.NTASKS)
        self.assertEqual(self.wait_run("big", half, 30)["state"], "success")
        self.assertEqual(self.stop_plane(), 0)
        rows = self.db_rows("SELECT t.state, count(*) FROM dag_runs r JOIN task_instances t"
                            " ON t.run = r.id WHERE r.run_id = ? GROUP BY t.state", half)
        self.assertEqual(rows, [("success", self.NTASKS)])
        self.restart_plane()


class TenThousandTest(SchedCase):
    """A 10,000-task run (DAG_TASKS_MAX; its DAG is over the former 1 MiB
    cap) is created in bounded slices and runs to success; only a caller
    whose credential verifies may send a DAG body over body_max."""
    NTASKS = 10000
    scrape = SliceTest.scrape
    db_rows = SliceTest.db_rows
    drain = SliceTest.drain

    def big_dag(self):
        return dag("huge", [{"task_id": f"extract_partition_{i:05d}", "retries": 2,
                             "shell": f"python3 -m etl.load --partition {i:05d} --date 2026-12-07"}
                            for i in range(self.NTASKS)], max_active_tasks=self.NTASKS)

    def check_views(self, tstate):
        """Run show and grid of the 10,000-task run: every task instance once,
        read in chunks of 256 rows per hold of the plane's lock (counted by
        remex_plane_view_chunks_total)."""
        def chunks():
            text = self.req("GET", "/metrics", raw=True)[1].decode()
            v = metric(text, "remex_plane_view_chunks_total")
            self.assertIsNotNone(v, "no remex_plane_view_chunks_total")
            return v
        c0 = chunks()
        st, r = self.req("GET", "/api/v1/admin/dags/huge/runs/r", None, self.admin)
        self.assertEqual(st, 200, r)
        tis = r["task_instances"]
        self.assertEqual(len(tis), self.NTASKS)
        ids = [t["ti_id"] for t in tis]
        self.assertEqual(ids, sorted(set(ids)))  # each once, in id order
        self.assertEqual({t["task_id"] for t in tis},
                         {f"extract_partition_{i:05d}" for i in range(self.NTASKS)})
        if tstate == "success":
            self.assertEqual({t["state"] for t in tis}, {"success"})
        c1 = chunks()
        self.assertGreaterEqual(c1 - c0, self.NTASKS // 256)
        st, g = self.req("GET", "/api/v1/admin/dags/huge/grid", None, self.admin)
        self.assertEqual(st, 200, g)
        self.assertEqual(len(g["tasks"]), self.NTASKS)
        [run] = g["dag_runs"]
        self.assertEqual(len(run["tis"]), self.NTASKS)
        if tstate == "success":
            self.assertEqual({v[0] for v in run["tis"].values()}, {"success"})
        self.assertGreaterEqual(chunks() - c1, self.NTASKS // 256)

    def test_a_dag_body_over_body_max_needs_a_valid_credential(self):
        self.boot()
        d = self.big_dag()
        body = json.dumps({"bundle": {"name": "b1", "version": "v1"}, "dag": d})
        self.assertGreater(len(body), 1024 * 1024)  # body_max's default
        for tok, want in ((None, 413), ("not-a-token", 413)):
            st, b = self.req("PUT", "/api/v1/dags/huge",
                             {"bundle": {"name": "b1", "version": "v1"}, "dag": d}, tok)
            self.assertEqual(st, want, b)
        # The other routes keep body_max.
        st, b = self.req("POST", "/api/v1/admin/dags/huge/runs",
                         {"conf": {"pad": "x" * (2 * 1024 * 1024)}}, self.admin)
        self.assertEqual(st, 413, b)

    def test_a_10000_task_run_is_created_in_slices_and_completes(self):
        self.boot()
        self.push_ok(self.big_dag())
        self.trigger("huge", run_id="r")

        def running():
            r = self.show_run("huge", "r")
            return r if r["state"] == "running" else None
        r = harness.wait_for(running, 60, 0.1, "the run to be running")
        self.assertEqual(len(r["task_instances"]), self.NTASKS)
        _, _, text = self.scrape()
        self.assertGreater(metric(text, "remex_plane_scheduler_slices_total"), 0)
        # CPU time of the longest pass, not its wall time (a loaded machine
        # moves that): creating 10,000 task instances in one pass takes
        # about 100 ms of CPU here; a slice is cut at 2 ms.
        cpu = metric(text, "remex_plane_scheduler_step_max_cpu_seconds")
        self.assertLess(cpu, 0.02 * harness.SLOW, text)
        self.check_views("running")
        ag = Agent(self, "w1", slots=500)
        self.drain(ag, self.NTASKS)
        self.assertEqual(self.wait_run("huge", "r", 60)["state"], "success")
        self.check_views("success")
        _, _, text = self.scrape()
        cpu = metric(text, "remex_plane_scheduler_step_max_cpu_seconds")
        self.assertLess(cpu, 0.02 * harness.SLOW, text)
        self.assertEqual(self.stop_plane(), 0)
        rows = self.db_rows("SELECT t.state, count(*) FROM dag_runs r JOIN task_instances t"
                            " ON t.run = r.id WHERE r.run_id = 'r' GROUP BY t.state")
        self.assertEqual(rows, [("success", self.NTASKS)])
        self.restart_plane()


class SlicedWorkTest(SchedCase):
    """A catch-up of 1,000 runs and a new version of a DAG under a running
    2,000-task run are done across many passes, with every run and task
    instance where it must be in the end."""

    def slices(self):
        text = self.req("GET", "/metrics", raw=True)[1].decode()
        return metric(text, "remex_plane_scheduler_slices_total")

    def test_a_catch_up_of_1000_runs_creates_each_once(self):
        self.boot()
        start = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0) \
            - datetime.timedelta(minutes=1000)
        self.push_ok(dag("cu", [{"task_id": "t"}], schedule="* * * * *",
                         start_date=start.strftime("%Y-%m-%dT%H:%M:%SZ"), catchup=True,
                         max_active_runs=1))
        runs = harness.wait_for(lambda: (lambda r: r if len(r) >= 1000 else None)(self.runs("cu")),
                                60, 0.2, "1,000 catch-up runs")
        starts = sorted(r["data_interval_start"] for r in runs)
        self.assertEqual(len(set(starts)), len(starts))  # each interval once
        first = _rfc3339(starts[0])
        self.assertEqual(first, start.timestamp())
        for i, v in enumerate(starts[:1000]):
            self.assertEqual(_rfc3339(v), first + 60 * i)  # no gap

    def test_a_new_version_under_a_running_2000_task_run_is_applied_in_slices(self):
        self.boot()
        n = 2000
        self.push_ok(dag("upd", [{"task_id": f"a{i:04d}"} for i in range(n)],
                         max_active_tasks=10))
        self.trigger("upd", run_id="r")
        harness.wait_for(lambda: self.show_run("upd", "r")["state"] == "running", 30, 0.1,
                         "the run to be running")
        before = self.slices()
        # Every task replaced: 2,000 task instances removed, 2,000 added.
        self.push_ok(dag("upd", [{"task_id": f"b{i:04d}"} for i in range(n)],
                         max_active_tasks=10))

        def applied():
            tis = self.show_run("upd", "r")["task_instances"]
            old = {t["state"] for t in tis if t["task_id"].startswith("a")}
            new = [t for t in tis if t["task_id"].startswith("b")]
            return tis if old <= {"removed"} and len(new) == n else None
        tis = harness.wait_for(applied, 60, 0.2, "the new version applied to the run")
        self.assertEqual(len(tis), 2 * n)
        self.assertGreater(self.slices(), before)
        self.assertEqual(self.show_run("upd", "r")["state"], "running")


def _rfc3339(v):
    """Seconds since the epoch of an RFC 3339 UTC time ("...Z")."""
    return datetime.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()


class RetentionTest(SchedCase):
    DAY_MS = 86400 * 1000

    def age_runs(self, run_ids, days):
        """Ends the runs days ago (the plane stopped: it holds the file)."""
        self.assertEqual(self.stop_plane(), 0)
        db = sqlite3.connect(self.conf["db_path"])
        with db:
            for r in run_ids:
                db.execute("UPDATE dag_runs SET ended_ms = ended_ms - ? WHERE run_id = ?",
                           (days * self.DAY_MS, r))
        db.close()
        self.restart_plane()

    def counts_agree(self):
        text = self.req("GET", "/metrics", raw=True)[1].decode()
        kept = {k: v for k, v in metric_values(text, "remex_plane_task_instances").items() if v}
        self.assertEqual(self.stop_plane(), 0)
        db = sqlite3.connect(self.conf["db_path"])
        try:
            full = dict(db.execute("SELECT state, count(*) FROM task_instances GROUP BY state"))
            orphans = db.execute("SELECT count(*) FROM task_instances t WHERE NOT EXISTS"
                                 " (SELECT 1 FROM dag_runs r WHERE r.id = t.run)").fetchone()[0]
        finally:
            db.close()
        self.restart_plane()
        self.assertEqual(kept, full)
        self.assertEqual(orphans, 0)

    def clean(self, older_than, dry_run=False):
        st, b = self.req("POST", "/api/v1/admin/db/clean",
                         {"older_than": older_than, "dry_run": dry_run}, self.admin)
        self.assertEqual(st, 200, b)
        return b

    def test_db_clean_deletes_old_finished_runs_only(self):
        self.boot()
        self.push_ok(dag("old", [{"task_id": f"t{i}"} for i in range(3)]))
        ag = Agent(self, "w1")
        for r in ("r1", "r2", "r3", "r4"):
            self.trigger("old", run_id=r)
            drive(self, ag, "old", r)
        self.trigger("old", run_id="open")  # queued/running: kept at any age
        self.age_runs(["r1", "r2", "r3", "open"], 40)
        b = self.clean(30 * 86400, dry_run=True)
        self.assertEqual((b["dag_runs"], b["task_instances"], b["dry_run"], b["more"]),
                         (3, 9, True, False), b)
        self.assertEqual(len(self.runs("old")), 5)
        b = self.clean(30 * 86400)
        self.assertEqual((b["dag_runs"], b["task_instances"], b["more"]), (3, 9, False), b)
        self.assertEqual(sorted(r["run_id"] for r in self.runs("old")), ["open", "r4"])
        self.assertEqual(self.clean(30 * 86400)["dag_runs"], 0)
        st, b = self.req("POST", "/api/v1/admin/db/clean", {"older_than": "30d"}, self.admin)
        self.assertEqual(st, 400, b)
        self.counts_agree()

    def test_latest_scheduled_run_is_kept_and_automatic_retention_runs(self):
        self.boot(retention={"older_than": "30d"})
        self.push_ok(dag("sch", [{"task_id": "t"}], schedule="@daily",
                         start_date="2020-01-01T00:00:00Z", catchup=False))
        ag = Agent(self, "w1")
        run = harness.wait_for(lambda: self.runs("sch"), 20, 0.05, "the scheduled run")[0]
        drive(self, ag, "sch", run["run_id"])
        self.trigger("sch", run_id="m1")
        drive(self, ag, "sch", "m1")
        self.age_runs([run["run_id"], "m1"], 40)
        # The automatic retention deletes the manual run; the latest scheduled
        # one stays (the next data interval follows from it).
        harness.wait_for(lambda: [r["run_id"] for r in self.runs("sch")] == [run["run_id"]],
                         20, 0.1, "the retention to delete m1")
        self.assertEqual(self.clean(0, dry_run=True)["dag_runs"], 0)
        self.counts_agree()


if __name__ == "__main__":
    import unittest
    unittest.main()
