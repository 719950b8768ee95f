"""A commit that fails (the database's WAL cannot grow: a real write error
from the kernel, not a mock) is never answered as a success: the state report
gets 503, the plane stays up, serves again once the cause is gone, and loses
nothing it acknowledged across a restart.

The failure is made with RLIMIT_FSIZE, lowered on the running plane (prlimit)
to the current size of its WAL once everything before it is committed, so that
the next commit's WAL write fails with EFBIG (SIGXFSZ is ignored, inherited
through exec). The WAL only grows until a checkpoint (4000 frames), far away
here, so no earlier write is refused; the log file is much smaller than the
WAL and keeps room for the plane's messages."""
import os
import re
import resource
import signal
import sys
import time

import harness
from schedfix import Agent, SchedCase, dag

IGNORE_XFSZ = ("import os, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
               " os.execv(sys.argv[1], sys.argv[1:])")


class StoreFailureTest(SchedCase):
    def restart_plane(self):
        n = getattr(self, "_nstarts", 0) + 1
        self._nstarts = n
        self.plane = self.spawn(f"plane{n}", [sys.executable, "-c", IGNORE_XFSZ,
                                              self.bin("remex-plane"), "-c", self.cfgpath])
        out = self.plane.wait_output("listening on 127.0.0.1:", timeout=20)
        self.port = int(re.findall(r"listening on 127\.0\.0\.1:(\d+)", out)[-1])
        self.url = f"http://127.0.0.1:{self.port}"
        with open(self.conf["admin_token_file"]) as f:
            self.admin = f.read().strip()
        return self.plane

    def fsize(self, limit):
        resource.prlimit(self.plane.pid, resource.RLIMIT_FSIZE,
                         (limit, resource.RLIM_INFINITY))

    def cpu_s(self):
        with open(f"/proc/{self.plane.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def test_failed_commit_is_503_and_nothing_acknowledged_is_lost(self):
        self.boot(log={"level": "info"})
        self.push_ok(dag("sf", [{"task_id": t} for t in ("a", "b", "c", "d")]))
        ag = Agent(self, "w1", beat=False)
        self.trigger("sf", run_id="r")
        got = {a["task_id"]: a for a in ag.take(3, free_slots=3)}
        (d,) = harness.wait_for(lambda: ag.work(wait=1, free_slots=1), 10, what="the 4th offer")
        got[d["task_id"]] = d
        self.assertEqual(ag.report(got["a"], "success"), (200, {"state": "success"}))
        time.sleep(0.2)  # the deferred starts are committed (20 ms at the latest)
        wal = self.conf["db_path"] + "-wal"
        self.fsize(os.path.getsize(wal))

        # A start is deferred (no write yet): 200, and it rides on the next
        # commit, the state report's, which fails and takes it along.
        self.assertEqual(ag.start(d)[0], 200)
        st, b = ag.report(got["b"], "success")
        self.assertEqual(st, 503, b)
        self.assertEqual(b["error"]["code"], "unavailable")
        self.assertNotRegex(b["error"]["message"].lower(), "sqlite|disk|i/o|wal")
        st, b = self.req("POST", "/api/v1/admin/tokens", {"name": "during", "expires_in": 60},
                         self.admin)
        self.assertEqual(st, 503, b)
        self.assertTrue(self.plane.alive())
        # While the disk refuses writes the plane does not spin on retries.
        cpu0 = self.cpu_s()
        time.sleep(1.0)
        self.assertLess(self.cpu_s() - cpu0, 0.5)
        harness.wait_for(lambda: re.search(r"store: .*(I/O|disk|full|write)", self.plane.output(),
                                           re.I), 5, what="the reason in the log")

        # The cause goes away: the same plane serves again.
        self.fsize(resource.RLIM_INFINITY)
        st, b = harness.wait_for(lambda: (lambda r: r if r[0] != 503 else None)(
            ag.report(got["b"], "success")), 10, 0.1, "the report of b to be taken")
        self.assertEqual((st, b), (200, {"state": "success"}))
        self.assertEqual(ag.report(got["c"], "success"), (200, {"state": "success"}))
        # The lost start: the offer is still this worker's, its report is taken.
        self.assertIn(self.ti_states("sf", "r")[d["task_id"]], ("offered", "running"))
        self.assertEqual(ag.report(d, "success"), (200, {"state": "success"}))
        after = self.create_token("after")
        self.assertEqual(self.wait_run("sf", "r")["state"], "success")

        # Acknowledged is durable: kill -9 and restart with room.
        self.plane.signal(signal.SIGKILL)
        self.assertEqual(self.plane.wait(20), -signal.SIGKILL)
        self.restart_plane()
        self.assertEqual(set(self.ti_states("sf", "r").values()), {"success"})
        self.assertEqual(self.show_run("sf", "r")["state"], "success")
        st, b = self.req("GET", "/api/v1/admin/tokens", None, self.admin)
        self.assertEqual(st, 200, b)
        names = [t["name"] for t in b["tokens"]]
        self.assertIn("after", names)
        self.assertEqual(after["name"], "after")


if __name__ == "__main__":
    import unittest
    unittest.main()
