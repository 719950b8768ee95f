"""remex-worker sends the starts of one work reply and the state reports of
tasks that end together in one request each (the plane's batched routes),
counted on the plane's own request counter; a report refused in a batch is
dropped as the single route's refusal is, and reports journaled while the
plane was down replay as single reports."""
import fcntl
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from workerfix import PlaneRelay, WorkerCase  # noqa: E402

ROUTES = {
    "bstart": "/api/v1/task-instances/start",
    "sstart": "/api/v1/task-instances/{ti_id}/start",
    "bstate": "/api/v1/task-instances/state",
    "sstate": "/api/v1/task-instances/{ti_id}/state",
}


class BatchRelay(PlaneRelay):
    """A loopback relay to the real plane that answers the batched routes
    itself while told to: `refuse[path]` = status to answer instead of
    relaying (404 as a plane without the route, 503 as an overloaded one),
    for `left[path]` requests (None: all). Every request's path is recorded."""

    def __init__(self, plane_port):
        self.refuse, self.left, self.seen = {}, {}, []
        self.lock = threading.Lock()
        super().__init__(plane_port)

    def intercept(self, method, path):
        with self.lock:
            self.seen.append((method, path))
            st = self.refuse.get(path)
            left = self.left.get(path)
            if st and left is not None:
                if left <= 0:
                    st = None
                else:
                    self.left[path] = left - 1
        if st:
            return st, json.dumps({"error": {"code": "x", "message": "relay"}}).encode()
        return None

    def count(self, path):
        with self.lock:
            return sum(1 for m, p in self.seen if p == path)


class TestWorkerBatch(WorkerCase):
    def requests(self):
        st, text = self.req("GET", "/metrics", raw=True)
        self.assertEqual(st, 200)
        out = {}
        for k, route in ROUTES.items():
            rx = (r'^remex_plane_http_requests_total\{method="POST",route="' + re.escape(route)
                  + r'",code="(\d+)"\} (\d+)$')
            out[k] = {int(c): int(n) for c, n in re.findall(rx, text.decode(), re.M)}
        return out

    def fanout(self, n, url=None):
        """A root and n leaves that start together (one work reply) and end
        together: each leaf waits for a shared lock on a file the test holds
        exclusively, then all get it at once when the test lets go. Returns
        the finished run."""
        lock = self.write("gate.lock", "")
        tasks = [{"task_id": "root", "command": ["true"]}]
        tasks += [{"task_id": f"leaf{i:02d}", "command": ["sh", "-c", f"exec 9<{lock}; flock -s 9"],
                   "upstream": ["root"]} for i in range(n)]
        self.put_dag({"dag_id": "fan", "max_active_tasks": 64, "tasks": tasks})
        gate = os.open(lock, os.O_RDONLY)
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            w = self.start_worker(slots=32, url=url)
            self.wait_registered(w)
            run_id = self.trigger("fan")
            harness.wait_for(lambda: sum(1 for t in self.tis(self.run_info("fan", run_id)).values()
                                         if t["state"] == "running") == n, 30, 0.05,
                             "every leaf running")
            time.sleep(0.5 * harness.SLOW)  # each leaf's flock waits on the gate
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
            os.close(gate)
        run = self.wait_run("fan", run_id, timeout=60)
        self.assertEqual(run["state"], "success", run)
        for t in self.tis(run).values():
            self.assertEqual(t["state"], "success", t)
        self.assertTrue(w.alive())
        return run

    def test_older_plane_gets_single_calls(self):
        """A plane without the batched routes (404): the worker falls back to
        the single routes and every task runs and is reported once."""
        self.start_plane()
        relay = BatchRelay(self.port)
        self.addCleanup(relay.close)
        for path in ROUTES.values():
            if "{" not in path:
                relay.refuse[path] = 404
        n = 8
        self.fanout(n, url=relay.url)
        r = self.requests()
        self.assertEqual(r["bstart"], {}, r)
        self.assertEqual(r["bstate"], {}, r)
        self.assertEqual(r["sstart"], {200: n + 1}, r)
        self.assertEqual(r["sstate"], {200: n + 1}, r)
        # It asked once for the batched start route, then no more.
        self.assertEqual(relay.count(ROUTES["bstart"]), 1, relay.seen)

    def test_unanswered_batch_reports_replay_as_single_reports(self):
        """A batch of reports answered 503 goes to the journal as single
        reports, replayed one by one: each task instance reported once."""
        self.start_plane()
        relay = BatchRelay(self.port)
        self.addCleanup(relay.close)
        relay.refuse[ROUTES["bstate"]] = 503
        relay.left[ROUTES["bstate"]] = 1
        n = 12
        self.fanout(n, url=relay.url)
        r = self.requests()
        self.assertGreaterEqual(relay.count(ROUTES["bstate"]), 1, relay.seen)
        singles = r["sstate"].get(200, 0)
        batched = relay.count(ROUTES["bstate"]) - 1  # those that reached the plane
        self.assertEqual(set(r["sstate"]) | set(r["bstate"]), {200}, r)
        self.assertGreaterEqual(singles, 2, r)  # the refused batch, replayed alone
        self.assertEqual(r["bstate"].get(200, 0), batched, r)
        self.assertIn("journaled", self.workers_output())

    def workers_output(self):
        return "".join(p.output() for p in self._procs if "worker" in p.name)

    def test_fanout_runs_through_batched_reports(self):
        self.start_plane()
        n = 24
        run = self.fanout(n)
        tis = self.tis(run)
        self.assertEqual(len(tis), n + 1)
        for t in tis.values():
            self.assertEqual(t["state"], "success", t)
        r = self.requests()
        # Nothing refused, and fewer requests than task instances on each route pair.
        for k in ROUTES:
            self.assertEqual(set(r[k]) - {200}, set(), (k, r))
        starts = r["bstart"].get(200, 0) + r["sstart"].get(200, 0)
        states = r["bstate"].get(200, 0) + r["sstate"].get(200, 0)
        self.assertGreaterEqual(r["bstart"].get(200, 0), 1, r)
        self.assertGreaterEqual(r["bstate"].get(200, 0), 1, r)
        self.assertLess(starts, n + 1, r)
        self.assertLess(states, n + 1, r)


if __name__ == "__main__":
    harness.main()
