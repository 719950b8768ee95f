"""remex-worker follows the plane's desired state: set by an operator with
remexctl (agents drain / maintenance / resume), it takes no new work while
drained or in maintenance (what runs finishes, the worker keeps beating and
does not exit) and takes work again on resume."""
import os
import subprocess
import time

import harness
from workerfix import WorkerCase

CTL = os.path.join(harness.BIN, "remexctl")


class WorkerDesiredStateTest(WorkerCase):
    def ctl(self, *args):
        p = subprocess.run([CTL, "--plane", self.url, "--token-file",
                            self.conf["admin_token_file"], *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30 * harness.SLOW)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        return p.stdout.decode()

    def agent(self):
        st, b = self.req("GET", "/api/v1/admin/agents", None, self.admin)
        self.assertEqual(st, 200, b)
        (a,) = b["agents"]
        return a

    def wait_agent_state(self, state):
        return harness.wait_for(lambda: self.agent()["state"] == state, 10, 0.05,
                                f"agent state {state}")

    def test_drain_stops_new_work_and_resume_takes_it_again(self):
        self.start_plane()
        self.put_dag({"dag_id": "slow", "tasks": [{"task_id": "t", "shell": "sleep 1.5"}]})
        self.put_dag({"dag_id": "quick", "tasks": [{"task_id": "t", "command": ["true"]}]})
        w = self.start_worker(name="w1")
        self.wait_registered(w)
        slow = self.trigger("slow")
        self.wait_ti("slow", slow, "t", ("running",))
        out = self.ctl("agents", "drain", "w1")
        self.assertIn("desired state drain", out)
        w.wait_output("taking no new work")
        self.wait_agent_state("draining")
        # What ran goes on to the end; nothing new starts.
        self.assertEqual(self.wait_run("slow", slow)["state"], "success")
        quick = self.trigger("quick")
        time.sleep(3)
        self.assertEqual(self.tis(self.run_info("quick", quick))["t"]["state"], "queued")
        self.assertTrue(w.alive(), "a drained worker exited")
        self.assertEqual(self.agent()["free_slots"], 0)

        self.ctl("agents", "resume", "w1")
        self.assertEqual(self.wait_run("quick", quick)["state"], "success")
        self.wait_agent_state("running")
        self.assertIn("taking work again", w.output())

        self.ctl("agents", "maintenance", str(self.agent()["agent_id"]))
        self.wait_agent_state("maintenance")
        quick2 = self.trigger("quick")
        time.sleep(2)
        self.assertEqual(self.tis(self.run_info("quick", quick2))["t"]["state"], "queued")
        self.ctl("agents", "resume", "w1")
        self.assertEqual(self.wait_run("quick", quick2)["state"], "success")
        self.assertTrue(w.alive())
