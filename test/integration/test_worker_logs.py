"""The worker's task log lines on stdout as JSON (logs.stdout: json), for a
logging sidecar or the container runtime: one object per line with the
task's identifiers, masked like the log file."""
import json
import unittest

from workerfix import WorkerCase


class TestStdoutJson(WorkerCase):
    def test_task_lines_as_json(self):
        self.start_plane()
        secrets = self.write("secrets.json", '{"variables": {"token": "tok-Secret-42"}}',
                             mode=0o600)
        self.put_dag({"dag_id": "sj", "tasks": [
            {"task_id": "t", "variables": ["token"],
             "shell": "echo hello stdout; echo tok=$REMEX_VAR_TOKEN; printf 'no newline'"}]})
        w = self.start_worker(extra=f"secrets:\n  file: {secrets}\nlogs:\n  stdout: json\n")
        run_id = self.trigger("sj")
        self.assertEqual(self.wait_run("sj", run_id)["state"], "success")
        objs = []
        for ln in w.output().splitlines():
            if ln.startswith("{") and '"line"' in ln:
                objs.append(json.loads(ln))
        lines = [o["line"] for o in objs]
        self.assertIn("hello stdout", lines)
        self.assertIn("tok=***", lines)
        self.assertIn("no newline", lines)
        self.assertTrue(any(x.startswith("[remex] success") for x in lines), lines)
        self.assertNotIn("tok-Secret-42", w.output())
        o = objs[0]
        self.assertEqual((o["dag_id"], o["run_id"], o["task_id"], o["try_number"],
                          o["map_index"]), ("sj", run_id, "t", 1, -1))
        self.assertRegex(o["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        # The log file has the same lines.
        self.assertIn("tok=***", self.task_log("sj", run_id, "t"))


if __name__ == "__main__":
    unittest.main()
