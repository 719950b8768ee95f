"""remex-worker end to end against a real remex-plane: DAG shapes, failures,
retries, timeouts, cancellation, memory limits, logs, XCom and connections."""
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from workerfix import WorkerCase, lines  # noqa: E402


class TestWorkerRuns(WorkerCase):
    def test_diamond_fanout_success(self):
        self.start_plane()
        out = os.path.join(self.tmp, "order.txt")
        sh = f"echo {{{{ task_id }}}} {{{{ ds }}}} $REMEX_TRY_NUMBER >> {out}"
        dag = {"dag_id": "diamond", "tasks": [
            {"task_id": "a", "shell": sh},
            {"task_id": "b", "shell": sh, "upstream": ["a"]},
            {"task_id": "c", "shell": sh, "upstream": ["a"]},
            {"task_id": "d", "shell": sh, "upstream": ["b", "c"]},
            {"task_id": "e1", "command": ["/bin/sh", "-c", sh], "upstream": ["d"]},
            {"task_id": "e2", "command": ["sh", "-c", sh], "upstream": ["d"]},
        ]}
        self.put_dag(dag)
        w = self.start_worker()
        self.wait_registered(w)
        run_id = self.trigger("diamond")
        run = self.wait_run("diamond", run_id)
        self.assertEqual(run["state"], "success", run)
        got = lines(out)
        self.assertEqual(len(got), 6, got)
        order = [g.split()[0] for g in got]
        self.assertEqual(order[0], "a")
        self.assertEqual(order[3], "d")
        self.assertEqual(sorted(order[1:3]), ["b", "c"])
        self.assertEqual(sorted(order[4:]), ["e1", "e2"])
        for t in self.tis(run).values():
            self.assertEqual(t["state"], "success")
            self.assertTrue(t["log_uri"].startswith("file://" + self.logdir), t)
        log = self.task_log("diamond", run_id, "a")
        self.assertRegex(log, r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[remex\] success")
        self.assertTrue(w.alive())


if __name__ == "__main__":
    unittest.main()
