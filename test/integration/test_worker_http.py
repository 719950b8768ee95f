"""Each role's own /healthz, /livez and /metrics (worker.listen,
dag_processor.listen, triggerer.listen), for Kubernetes probes and scraping
one container per role: served from the role's event loop by libmicrohttpd,
which is loaded only when configured; every /metrics passes promtool."""
import os
import shutil
import signal
import subprocess

import harness
import workerfix


def maps_has(pid, name):
    with open(f"/proc/{pid}/maps") as f:
        return name in f.read()


class WorkerHttp(workerfix.WorkerCase):
    def test_probes_and_metrics(self):
        self.start_plane()
        port = harness.free_port()
        w = self.start_worker(extra_worker=f"  listen: 127.0.0.1:{port}\n")
        self.wait_registered(w)
        st, hd, body = harness.http("GET", f"http://127.0.0.1:{port}/healthz")
        self.assertEqual(st, 200, body)
        self.assertIn(b'"state":"ready"', body.replace(b" ", b""))
        st, hd, body = harness.http("GET", f"http://127.0.0.1:{port}/livez")
        self.assertEqual(st, 200)
        st, hd, body = harness.http("GET", f"http://127.0.0.1:{port}/metrics")
        self.assertEqual(st, 200)
        text = body.decode()
        self.assertIn('remex_worker_slots{state="free"} 4', text)
        self.assertIn('remex_worker_slots{state="busy"} 0', text)
        self.assertIn("remex_role_ready", text)
        self.assertTrue(shutil.which("promtool"), "promtool (Debian prometheus) is a test dependency")
        p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertTrue(maps_has(w.pid, "libmicrohttpd"))
        # Only GET and HEAD.
        st, hd, body = harness.http("POST", f"http://127.0.0.1:{port}/healthz", {})
        self.assertEqual(st, 405)
        # Draining is not ready.
        w.signal(signal.SIGTERM)
        self.assertEqual(w.wait(10), 0)

    def test_unconfigured_loads_nothing(self):
        self.start_plane()
        w = self.start_worker()
        self.wait_registered(w)
        self.assertFalse(maps_has(w.pid, "libmicrohttpd"))

    def test_bad_address_is_bad_configuration(self):
        tok = self.token_file("x" * 40)
        cfg = self.worker_yaml(tok, url="http://127.0.0.1:1", extra_worker="  listen: localhost\n")
        p = self.spawn("check", [self.bin("remex-worker"), "-c", cfg, "--check"])
        self.assertEqual(p.wait(10), 100)
        self.assertRegex(p.output(), r"worker\.listen: expected ADDRESS:PORT")


class OtherRolesHttp(workerfix.WorkerCase):
    def promtool(self, body):
        self.assertTrue(shutil.which("promtool"), "promtool (Debian prometheus) is a test dependency")
        p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_dag_processor_and_triggerer_endpoints(self):
        self.start_plane()
        dport, tport = harness.free_port(), harness.free_port()
        tok = self.token_file(self.create_token()["value"])
        cfg = self.worker_yaml(tok, extra=(f"dag_processor:\n  listen: 127.0.0.1:{dport}\n"
                                           f"triggerer:\n  listen: 127.0.0.1:{tport}\n"))
        with open(os.path.join(self.bundle, "d.yaml"), "w") as f:
            f.write("dag_id: d\ntasks:\n  - {task_id: t, shell: 'true'}\n")
        dp = self.spawn("dp", [self.bin("remex-dag-processor"), "-c", cfg])
        tr = self.spawn("tr", [self.bin("remex-triggerer"), "-c", cfg])
        for port, role, family in ((dport, "dag-processor", "remex_dag_processor_uploads_total"),
                                   (tport, "triggerer", "remex_triggerer_")):
            harness.wait_for(lambda: harness.http("GET", f"http://127.0.0.1:{port}/healthz")[0]
                             == 200, 15, 0.1, f"{role} ready")
            st, hd, body = harness.http("GET", f"http://127.0.0.1:{port}/healthz")
            self.assertIn(role.encode(), body)
            st, hd, body = harness.http("GET", f"http://127.0.0.1:{port}/metrics")
            self.assertEqual(st, 200)
            self.assertIn(family, body.decode())
            self.assertIn("remex_role_ready", body.decode())
            self.promtool(body)
        for p in (dp, tr):
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait(15), 0)


if __name__ == "__main__":
    harness.main()
