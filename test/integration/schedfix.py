"""Fixture of the scheduler/dispatch integration tests: a real plane (see
planefix.PlaneCase), DAG upload and run helpers, and a scripted agent that
speaks the Remote Execution API (register, heartbeat, work, start, state)."""
import threading
import time

import harness
from planefix import PlaneCase


def dag(dag_id, tasks, **kw):
    """DAG JSON: tasks is a list of task dicts (command defaults to ["true"])."""
    d = {"dag_id": dag_id, "fileloc": f"dags/{dag_id}.yaml", "schedule": None, "tasks": []}
    for t in tasks:
        t = dict(t)
        if "shell" not in t and "trigger" not in t:
            t.setdefault("command", ["true"])
        d["tasks"].append(t)
    d.update(kw)
    return d


class Agent:
    """A scripted agent: every call returns (status, body)."""

    def __init__(self, case, name, queues=("default",), slots=4, beat=True):
        self.case = case
        st, b = case.register(case.tok, name, queues=list(queues), slots=slots)
        case.assertEqual(st, 200, b)
        self.id, self.session = b["agent_id"], b["session_token"]
        self.queues = list(queues)
        self.running = {}  # ti_id -> assignment, as a worker would list them
        self.cancels = []
        self.lock = threading.Lock()
        self.beating = threading.Event()
        if beat:
            self.beating.set()
            threading.Thread(target=self._beat, daemon=True).start()
        case.addCleanup(self.beating.clear)

    def _beat(self):
        while self.beating.is_set():
            try:
                with self.lock:
                    running = list(self.running.values())
                st, b = self.heartbeat(running)
                if st == 200:
                    self.cancels.extend(b.get("cancel", []))
            except Exception:  # noqa: BLE001 - the plane may be restarting
                pass
            time.sleep(0.3)

    def stop_beating(self):
        self.beating.clear()

    def work(self, wait=0, free_slots=4, queues=None):
        st, b = self.case.req("POST", "/api/v1/work",
                              {"queues": queues or self.queues, "free_slots": free_slots,
                               "wait": wait}, self.session)
        self.case.assertEqual(st, 200, b)
        return b["assignments"]

    def start(self, a):
        with self.lock:
            self.running[a["ti_id"]] = a
        return self.case.req("POST", f"/api/v1/task-instances/{a['ti_id']}/start",
                             {"try_number": a["try_number"], "pid": 1, "hostname": "h"},
                             a["task_token"])

    def report(self, a, state, **kw):
        with self.lock:
            self.running.pop(a["ti_id"], None)
        body = {"try_number": a["try_number"], "state": state}
        body.update(kw)
        return self.case.req("POST", f"/api/v1/task-instances/{a['ti_id']}/state", body,
                             a["task_token"])

    def heartbeat(self, running=(), **extra):
        return self.case.heartbeat(self.id, self.session,
                                   running=[{"ti_id": a["ti_id"], "try_number": a["try_number"]}
                                            for a in running], **extra)

    def take(self, n=1, timeout=15.0, **kw):
        """Polls until n assignments arrived (all started); returns them."""
        got = []
        deadline = time.monotonic() + timeout * harness.SLOW
        while len(got) < n and time.monotonic() < deadline:
            for a in self.work(wait=1, **kw):
                st, b = self.start(a)
                self.case.assertEqual(st, 200, b)
                got.append(a)
        self.case.assertEqual(len(got), n, f"expected {n} assignments, got {got}")
        return got


class SchedCase(PlaneCase):
    def boot(self, **cfg):
        self.start_plane(**cfg)
        self.tok = self.create_token()["value"]

    def push(self, d, bundle="b1", version="v1", token=None):
        return self.req("PUT", f"/api/v1/dags/{d['dag_id']}",
                        {"bundle": {"name": bundle, "version": version}, "dag": d},
                        token or self.admin)

    def push_ok(self, d):
        st, b = self.push(d)
        self.assertEqual(st, 200, b)
        return b

    def trigger(self, dag_id, **body):
        st, b = self.req("POST", f"/api/v1/admin/dags/{dag_id}/runs", body, self.admin)
        self.assertEqual(st, 200, b)
        return b

    def show_run(self, dag_id, run_id):
        st, b = self.req("GET", f"/api/v1/admin/dags/{dag_id}/runs/{run_id}", None, self.admin)
        self.assertEqual(st, 200, b)
        return b

    def ti_states(self, dag_id, run_id):
        return {t["task_id"]: t["state"] for t in self.show_run(dag_id, run_id)["task_instances"]}

    def wait_run(self, dag_id, run_id, timeout=20.0):
        return harness.wait_for(
            lambda: (lambda r: r if r["state"] in ("success", "failed") else None)(
                self.show_run(dag_id, run_id)), timeout, 0.05, f"run {run_id} to finish")

    def runs(self, dag_id):
        st, b = self.req("GET", f"/api/v1/admin/dags/{dag_id}/runs?limit=1000", None, self.admin)
        self.assertEqual(st, 200, b)
        return b["dag_runs"]


def drive(case, agent, dag_id, run_id, outcomes=None, timeout=30.0):
    """Runs every assignment of agent: start, then report outcomes.get(task_id,
    "success") until the run finishes. Returns the finished run."""
    outcomes = outcomes or {}
    deadline = time.monotonic() + timeout * harness.SLOW
    while time.monotonic() < deadline:
        for a in agent.work(wait=0.2, free_slots=16):
            st, b = agent.start(a)
            case.assertEqual(st, 200, b)
            state = outcomes.get(a["task_id"], "success")
            kw = {"exit_code": 1} if state == "failed" else {}
            st, b = agent.report(a, state, **kw)
            case.assertEqual(st, 200, b)
        r = case.show_run(dag_id, run_id)
        if r["state"] in ("success", "failed"):
            return r
    case.fail(f"run {run_id} did not finish: {case.show_run(dag_id, run_id)}")
