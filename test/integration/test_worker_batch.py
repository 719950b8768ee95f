"""remex-worker sends the starts of one work reply and the state reports of
tasks that end together in one request each (the plane's batched routes),
counted on the plane's own request counter; a report refused in a batch is
dropped as the single route's refusal is, and reports journaled while the
plane was down replay as single reports."""
import fcntl
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from workerfix import WorkerCase  # noqa: E402

ROUTES = {
    "bstart": "/api/v1/task-instances/start",
    "sstart": "/api/v1/task-instances/{ti_id}/start",
    "bstate": "/api/v1/task-instances/state",
    "sstate": "/api/v1/task-instances/{ti_id}/state",
}


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

    def test_fanout_runs_through_batched_reports(self):
        self.start_plane()
        n = 24
        # The leaves start together (one work reply) and end together: each
        # waits for a shared lock on a file the test holds exclusively, then
        # all get it at once when the test lets go.
        lock = self.write("gate.lock", "")
        tasks = [{"task_id": "root", "command": ["true"]}]
        tasks += [{"task_id": f"leaf{i:02d}", "command": ["sh", "-c", f"exec 9<{lock}; flock -s 9"],
                   "upstream": ["root"]} for i in range(n)]
        self.put_dag({"dag_id": "fan", "max_active_tasks": 64, "tasks": tasks})
        gate = os.open(lock, os.O_RDONLY)
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            w = self.start_worker(slots=32)
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
        self.assertTrue(w.alive())


if __name__ == "__main__":
    harness.main()
