"""remex-plane HTTP server model: long polls parked without a thread each,
woken at once or at their deadline, answered at shutdown; keep-alive; the
connection limit; path segments percent-decoded after routing (so an
identifier may contain "/" as %2F) and percent-decoded query values."""
import http.client
import os
import signal
import socket
import threading
import time

import harness
from schedfix import Agent, SchedCase, dag


def threads_of(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


class LongPollTest(SchedCase):
    def setUp(self):
        super().setUp()
        self.boot(threads=1, heartbeat_interval="60s", offer_timeout="2m")  # agents without heartbeats stay

    def poll_all(self, agents, wait):
        """Starts one work long poll per agent; returns (threads, results dict)."""
        res = {}

        def poll(ag):
            t0 = time.monotonic()
            a = ag.work(wait=wait, queues=["lp"])
            res[ag.name] = (a, time.monotonic() - t0)

        ths = []
        for ag in agents:
            th = threading.Thread(target=poll, args=(ag,))
            th.start()
            ths.append(th)
        return ths, res

    def test_parked_polls_hold_no_thread(self):
        self.push_ok(dag("lp", [{"task_id": f"t{i}", "queue": "lp"} for i in range(3)]))
        agents = []
        for i in range(24):
            ag = Agent(self, f"w{i}", queues=["lp"], beat=False)
            ag.name = f"w{i}"
            agents.append(ag)
        before = threads_of(self.plane.pid)
        ths, res = self.poll_all(agents, wait=5)
        time.sleep(0.5 * harness.SLOW)
        # 24 waiting polls on one event-loop thread: no thread per poll, and
        # other requests are still answered at once.
        self.assertEqual(len(res), 0)
        self.assertLessEqual(threads_of(self.plane.pid), before + 1)
        t0 = time.monotonic()
        self.assertEqual(self.req("GET", "/healthz")[0], 200)
        self.assertLess(time.monotonic() - t0, 0.5 * harness.SLOW)
        t1 = time.monotonic()
        self.trigger("lp")
        harness.wait_for(lambda: sum(len(a) for a, _ in res.values()) == 3, 10,
                         what="3 assignments handed out")
        self.assertLess(time.monotonic() - t1, 2.0 * harness.SLOW)
        got = sorted(x["task_id"] for a, _ in res.values() for x in a)
        self.assertEqual(got, ["t0", "t1", "t2"])
        # The other 21 went back to waiting; their wait ends on time, empty.
        for th in ths:
            th.join(30)
        self.assertEqual(len(res), 24)
        for name, (a, dt) in res.items():
            if not a:
                self.assertGreaterEqual(dt, 4.9, name)
                self.assertLess(dt, 5 + 3 * harness.SLOW, name)

    def test_wait_expires_and_stop_answers_parked_polls(self):
        ag = Agent(self, "w1", queues=["lp"], beat=False)
        ag.name = "w1"
        t0 = time.monotonic()
        self.assertEqual(ag.work(wait=0.3, queues=["lp"]), [])
        self.assertGreaterEqual(time.monotonic() - t0, 0.28)
        st, b = self.req("POST", "/api/v1/triggers/poll", {"capacity": 5, "wait": 0.3},
                         ag.session)
        self.assertEqual((st, b), (200, {"triggers": []}))
        ths, res = self.poll_all([ag], wait=30)
        trig = {}

        def tpoll():
            trig["r"] = self.req("POST", "/api/v1/triggers/poll", {"capacity": 5, "wait": 30},
                                 ag.session)

        th = threading.Thread(target=tpoll)
        th.start()
        time.sleep(0.5 * harness.SLOW)
        t1 = time.monotonic()
        self.plane.signal(signal.SIGTERM)
        for t in ths + [th]:
            t.join(15)
        self.assertEqual(res["w1"][0], [])
        self.assertEqual(trig["r"], (200, {"triggers": []}))
        self.assertLess(time.monotonic() - t1, 5 * harness.SLOW)
        self.assertEqual(self.plane.wait(20), 0)


class ConnectionTest(SchedCase):
    def test_keep_alive_and_connection_limit(self):
        self.boot(threads=1, max_connections=4)
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        for _ in range(3):
            c.request("GET", "/healthz")
            r = c.getresponse()
            self.assertEqual((r.status, r.getheader("Connection")), (200, None))
            r.read()
        sock = c.sock
        c.request("GET", "/healthz")
        c.getresponse().read()
        self.assertIs(c.sock, sock)  # one connection served all four
        held = [socket.create_connection(("127.0.0.1", self.port), timeout=10) for _ in range(3)]
        # A fifth connection is over max_connections: not served while four are open...
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.settimeout(1.0)
        with self.assertRaises(TimeoutError):
            s.recv(4096)
        # ...and served as soon as one of them closes.
        held.pop().close()
        s.settimeout(10 * harness.SLOW)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:100])
        for h in held:
            h.close()
        c.close()
        harness.wait_for(lambda: self.req("GET", "/healthz")[0] == 200, 10,
                         what="a free connection slot")


class PathTest(SchedCase):
    def test_run_id_with_slash_and_decoded_segments(self):
        self.boot()
        self.push_ok(dag("pd", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}]))
        self.trigger("pd", run_id="backfill/2025-01")
        r = self.show_run("pd", "backfill%2F2025-01")
        self.assertEqual((r["run_id"], r["dag_id"]), ("backfill/2025-01", "pd"))
        # Percent-escapes of ordinary characters decode too; a raw "/" still splits.
        self.assertEqual(self.show_run("%70d", "backfill%2f2025-01")["run_id"], "backfill/2025-01")
        st, b = self.req("GET", "/api/v1/admin/dags/pd/runs/backfill/2025-01", None, self.admin)
        self.assertEqual(st, 404, b)
        st, b = self.req("GET", "/api/v1/admin/dags/pd/runs/a%00b", None, self.admin)
        self.assertEqual(st, 404, b)
        ag = Agent(self, "w1")
        (a,) = ag.take(1)
        self.assertEqual(a["run_id"], "backfill/2025-01")
        ref = {"uri": "file:///x/1", "size": 3, "checksum": "sha256:ab",
               "content_type": "application/json"}
        path = f"/api/v1/task-instances/{a['ti_id']}/xcom/out%2Fpart%201"
        self.assertEqual(self.req("PUT", path, ref, a["task_token"]), (200, {}))
        self.assertEqual(self.req("GET", path, None, a["task_token"]), (200, ref))
        self.assertEqual(ag.report(a, "success")[0], 200)
        (b,) = ag.take(1)
        # Query values are percent-decoded as well.
        q = "?task_id=%61&map_index=-%31"
        st, got = self.req("GET", f"/api/v1/task-instances/{b['ti_id']}/xcom/out%2Fpart%201{q}",
                           None, b["task_token"])
        self.assertEqual((st, got), (200, ref))
        st, got = self.req("POST", "/api/v1/admin/dags/pd/runs/backfill%2F2025-01/tasks/b/fail",
                           {}, self.admin)
        self.assertEqual(st, 200, got)
        self.assertEqual(self.ti_states("pd", "backfill%2F2025-01"),
                         {"a": "success", "b": "failed"})


if __name__ == "__main__":
    import unittest
    unittest.main()


class ThreadPoolTest(SchedCase):
    """Without `threads`, the plane runs 4 HTTP threads per CPU, at least 8
    (a connection is served by its thread only: with one per CPU a
    heartbeat queued behind dispatch requests on its thread)."""

    def test_default_pool_is_four_threads_per_cpu_at_least_eight(self):
        self.boot()
        want = min(64, max(8, 4 * os.cpu_count()))
        out = self.plane.wait_output("listening on 127.0.0.1:")
        self.assertIn(f"({want} threads)", out)
        self.assertGreaterEqual(threads_of(self.plane.pid), want)

    def test_threads_setting_is_kept(self):
        self.boot(threads=3)
        out = self.plane.wait_output("listening on 127.0.0.1:")
        self.assertIn("(3 threads)", out)
