"""remex-worker under failure: refused credentials, a plane that dies or a
network that is cut mid-run, and a plane that sends a malformed assignment."""
import datetime
import http.server
import json
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from workerfix import WorkerCase, lines  # noqa: E402


def epoch(rfc3339):
    """Seconds since the epoch of the plane's "YYYY-MM-DDTHH:MM:SS.mmmZ"."""
    return datetime.datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def slurp(path):
    with open(path) as f:
        return f.read()


class TestWorkerAuth(WorkerCase):
    def test_revoked_token_exits_100(self):
        self.start_plane()
        tok = self.create_token("revokeme")
        w = self.start_worker(token=tok["value"])
        self.wait_registered(w)
        st, b = self.req("DELETE", f"/api/v1/admin/tokens/{tok['id']}", None, self.admin)
        self.assertIn(st, (200, 204), b)
        self.assertEqual(w.wait(20), 100)
        self.assertIn("revoked, expired or invalid", w.output())

    def test_expired_token_exits_100(self):
        self.start_plane()
        tok = self.create_token("shortlived", expires_in=1)
        time.sleep(1.5)
        w = self.start_worker(token=tok["value"])
        self.assertEqual(w.wait(20), 100)
        self.assertIn("revoked, expired or invalid", w.output())

    def test_tampered_token_exits_100(self):
        self.start_plane()
        v = self.create_token("t")["value"]
        bad = v[:-1] + ("A" if v[-1] != "A" else "B")
        w = self.start_worker(token=bad)
        self.assertEqual(w.wait(20), 100)
        self.assertIn("revoked, expired or invalid", w.output())

    def test_rotated_token_file_is_reread_on_401(self):
        """A refused token is read again from its file once before giving up."""
        self.start_plane()
        good = self.create_token("rot")["value"]
        w = self.start_worker(token="rmx_not_a_valid_token_at_all_0000000000")
        w.wait_output("re-reading the token", timeout=10)
        self.token_file(good)
        # The retry happens 0.5 s after the refusal; the file may be replaced in between.
        try:
            self.wait_registered(w, timeout=5)
        except AssertionError:
            self.assertEqual(w.wait(5), 100)
            return
        self.assertTrue(w.alive())


class TestWorkerOutage(WorkerCase):
    def chain_dag(self, dag_id, out, n=6, sleep=1.0):
        """Each task appends "t<i> <epoch seconds>" to out when it starts."""
        tasks = []
        for i in range(n):
            t = {"task_id": f"t{i}", "shell": f"echo t{i} $(date +%s.%N) >> {out}; sleep {sleep}"}
            if i:
                t["upstream"] = [f"t{i - 1}"] if i % 2 == 0 else []
            tasks.append(t)
        return {"dag_id": dag_id, "tasks": tasks}

    def check_once_each(self, out, n):
        got = [ln.split()[0] for ln in lines(out)]
        self.assertEqual(sorted(got), sorted(set(got)), f"a task ran twice: {got}")
        self.assertEqual(len(got), n, got)

    def test_plane_killed_and_restarted(self):
        port = harness.free_port()
        self.start_plane(listen=f"127.0.0.1:{port}", heartbeat_interval="5s",
                         lost_after_missed=4)
        out = os.path.join(self.tmp, "ran.txt")
        self.put_dag(self.chain_dag("outage", out))
        w = self.start_worker()
        run_id = self.trigger("outage")
        harness.wait_for(lambda: len(lines(out)) >= 2, 10, what="tasks to start")
        self.plane.signal(signal.SIGKILL)
        self.plane.wait(5)
        time.sleep(10)
        self.restart_plane()
        run = self.wait_run("outage", run_id, timeout=40)
        self.assertEqual(run["state"], "success", run)
        self.check_once_each(out, 6)
        self.assertIn("journaled", w.output())
        self.assertTrue(w.alive())

    def test_journal_replayed_after_worker_restart(self):
        """A report journaled while the plane was down is delivered by the next
        worker process using the same state dir, before it takes new work."""
        port = harness.free_port()
        self.start_plane(listen=f"127.0.0.1:{port}", heartbeat_interval="5s",
                         lost_after_missed=6)
        out = os.path.join(self.tmp, "ran.txt")
        self.put_dag({"dag_id": "jr", "tasks": [
            {"task_id": "a", "shell": f"sleep 1; echo a >> {out}"},
            {"task_id": "b", "shell": f"echo b >> {out}", "upstream": ["a"]}]})
        state = os.path.join(self.tmp, "wstate")
        w = self.start_worker(state=state)
        run_id = self.trigger("jr")
        self.wait_ti("jr", run_id, "a", ("running",))
        self.plane.signal(signal.SIGKILL)
        self.plane.wait(5)
        w.wait_output("journaled", timeout=10)
        w.signal(signal.SIGKILL)
        w.wait(5)
        self.restart_plane()
        w2 = self.start_worker(state=state, token=slurp(self.agent_token_path).strip())
        run = self.wait_run("jr", run_id, timeout=30)
        self.assertEqual(run["state"], "success", run)
        self.assertEqual(lines(out), ["a", "b"])
        self.assertIn("undelivered reports to replay", w2.output())

    def test_network_cut_20s(self):
        self.start_plane(heartbeat_interval="5s", lost_after_missed=10)
        px = self.proxy(self.port)
        out = os.path.join(self.tmp, "ran.txt")
        self.put_dag(self.chain_dag("cut", out, sleep=1.5))
        w = self.start_worker(url=f"http://127.0.0.1:{px.port}")
        run_id = self.trigger("cut")
        harness.wait_for(lambda: len(lines(out)) >= 2, 10, what="tasks to start")
        px.cut()
        cut_at = time.time()
        time.sleep(20)  # the outage
        resumed_at = time.time()
        px.resume()
        run = self.wait_run("cut", run_id, timeout=40)
        self.assertEqual(run["state"], "success", run)
        self.check_once_each(out, 6)
        self.assertIn("plane unreachable", w.output())
        # While cut, nothing new started: a task that began running during the cut
        # is one whose start the plane had confirmed before it (however late the
        # worker spawned it), and the plane confirmed no start during the cut.
        started = {t["task_id"]: epoch(t["start_date"]) for t in run["task_instances"]}
        for ln in lines(out):
            task, ran_at = ln.split()[0], float(ln.split()[1])
            self.assertFalse(cut_at <= started[task] < resumed_at,
                             f"{task}: start confirmed during the cut")
            if cut_at <= ran_at < resumed_at:
                self.assertLess(started[task], cut_at, f"{task} started during the cut")
        self.assertTrue(any(t < cut_at for t in started.values()), started)


class FakePlane(http.server.BaseHTTPRequestHandler):
    """The one fake in these tests: a real plane never sends a malformed
    assignment, so this stands in for a buggy or hostile plane."""
    reports = []
    polls = 0

    def log_message(self, *a):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 - http.server naming
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        p = self.path
        if p.endswith("/register"):
            return self.reply(200, {"agent_id": 1, "session_token": "s" * 40,
                                    "session_expires_at": "2099-01-01T00:00:00Z",
                                    "heartbeat_interval": 1})
        if p.endswith("/heartbeat"):
            return self.reply(200, {"heartbeat_interval": 1, "desired_state": "running",
                                    "cancel": []})
        if p == "/api/v1/work":
            FakePlane.polls += 1
            if FakePlane.polls == 1:
                return self.reply(200, {"assignments": [
                    {"ti_id": 7, "try_number": 1, "task_token": "t" * 30, "dag_id": 5},
                    {"garbage": True}, "not an object"]})
            if FakePlane.polls == 2:
                return self.reply(200, {"assignments": "nope"})
            time.sleep(0.2)
            return self.reply(200, {"assignments": []})
        if p.endswith("/start"):
            return self.reply(200, {"state": "running"})
        if p.endswith("/state"):
            FakePlane.reports.append((p, body))
            return self.reply(200, {"state": body.get("state")})
        return self.reply(404, {"error": {"code": "not_found", "message": p}})


class RefusingPlane(FakePlane):
    """Issues sessions and then refuses them, as a plane refuses a tampered
    session token (the real plane cannot be made to hand out a bad one)."""

    def do_POST(self):  # noqa: N802 - http.server naming
        if self.path.endswith("/register"):
            RefusingPlane.registers += 1
            return super().do_POST()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return self.reply(401, {"error": {"code": "unauthorized", "message": "unauthorized"}})


class TestWorkerSession(WorkerCase):
    def test_refused_sessions_exit_100(self):
        RefusingPlane.registers = 0
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RefusingPlane)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.shutdown)
        w = self.start_worker(token="x" * 40, url=f"http://127.0.0.1:{srv.server_port}")
        self.assertEqual(w.wait(20), 100)
        self.assertIn("the session is tampered or invalid", w.output())
        self.assertLessEqual(RefusingPlane.registers, 3)


class TestWorkerMalformed(WorkerCase):
    def test_malformed_assignment(self):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakePlane)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.shutdown)
        w = self.start_worker(token="x" * 40, url=f"http://127.0.0.1:{srv.server_port}")
        harness.wait_for(lambda: FakePlane.reports, 10, what="a state report")
        path, body = FakePlane.reports[0]
        self.assertEqual(path, "/api/v1/task-instances/7/state")
        self.assertEqual(body["state"], "failed")
        self.assertIn("assignment.dag_id", body["reason"])
        harness.wait_for(lambda: FakePlane.polls >= 4, 10, what="the worker to poll on")
        out = w.output()
        self.assertIn("malformed assignment dropped", out)
        self.assertIn("reply without an assignments array", out)
        self.assertTrue(w.alive())


if __name__ == "__main__":
    unittest.main()
