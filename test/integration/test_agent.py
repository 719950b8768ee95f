"""remex-agent, the supervisor: a real plane, the agent and its real roles on
loopback. Readiness, status, restarts after kill -9, crash loops turned FATAL,
drain with a running task, PID 1 in a PID namespace, bad configuration and
SIGHUP, systemd notification and the output of the roles."""
import json
import re
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
import unittest

import harness
import workerfix


class AgentCase(workerfix.WorkerCase):
    def agent_yaml(self, roles=("worker",), workers=None, extra="", drain_grace="30s",
                   logs_format="text", restart_delay="1s"):
        self.state = os.path.join(self.tmp, "agentstate")
        self.logdir = os.path.join(self.tmp, "logs")
        tok = self.token_file(self.create_token()["value"])
        text = (
            f"plane:\n  url: {self.url}\n  token: {{file: {tok}}}\n"
            f"state_dir: {self.state}\n"
            f"logs:\n  format: {logs_format}\n"
            f"bundles:\n  - {{name: main, path: {self.bundle}, versioned: false}}\n"
            f"xcom:\n  store: file://{self.tmp}/xcom\n"
            f"worker:\n  log_dir: {self.logdir}\n  poll_wait: 5s\n  drain_grace: {drain_grace}\n"
            f"  task_defaults:\n    grace_period: 1s\n"
            f"agent:\n  roles: [{', '.join(roles)}]\n  restart_delay: {restart_delay}\n"
            f"  stop_grace: 2s\n")
        if workers:
            text += "  workers:\n" + "".join(
                f"    - {{name: {n}, queues: [{q}], slots: {s}}}\n" for n, q, s in workers)
        return self.write("agent.yaml", text + extra)

    def start_agent(self, cfg, args=(), env=None, binary=None, name="agent"):
        return self.spawn(name, [binary or self.bin("remex-agent"), "-c", cfg, *args], env=env)

    def status(self, cfg):
        out = subprocess.run([self.bin("remex-agent"), "-c", cfg, "status", "--json"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)

    def role(self, cfg, label):
        for r in self.status(cfg)["roles"]:
            name = r["role"] if r["instance"] == r["role"] else f"{r['role']}/{r['instance']}"
            if name == label:
                return r
        self.fail(f"no role {label} in the status")

    def wait_role(self, cfg, label, pred, timeout=10, what=""):
        return harness.wait_for(lambda: (lambda r: pred(r) and r)(self.role(cfg, label)),
                                timeout, what=f"{label} {what}")


class TestAgent(AgentCase):
    def test_two_workers_ready_status_and_drain(self):
        self.start_plane()
        cfg = self.agent_yaml(workers=[("w1", "default", 2), ("w2", "etl", 1)])
        a = self.start_agent(cfg)
        a.wait_output("agent ready: 2 of 2 roles up", timeout=15)
        st = self.status(cfg)
        self.assertEqual(st["agent"]["state"], "running")
        self.assertTrue(st["agent"]["ready"])
        self.assertEqual([(r["instance"], r["state"], r["ready"]) for r in st["roles"]],
                         [("w1", "up", True), ("w2", "up", True)])
        # The plane sees two agents with their own queues.
        s, agents = self.req("GET", "/api/v1/admin/agents", token=self.admin)
        names = {x["name"]: x["queues"] for x in agents["agents"]}
        self.assertEqual(names.get("w1"), ["default"])
        self.assertEqual(names.get("w2"), ["etl"])
        # The roles' lines come out with their label, whole.
        out = a.output()
        self.assertIn("[worker/w1] ", out)
        self.assertIn("[worker/w2] ", out)
        for line in out.splitlines():
            self.assertTrue(line.startswith("[worker/w") or " agent: " in line, line)
        # Status file and control socket are private.
        doc = json.load(open(os.path.join(self.state, "agent.status.json")))
        self.assertEqual(len(doc["roles"]), 2)
        sock = os.path.join(self.state, "agent.sock")
        self.assertEqual(stat.S_IMODE(os.stat(sock).st_mode), 0o600)
        # Each worker tells the agent its capacity (for the sentinel's per-queue slot metrics).
        w1 = self.wait_role(cfg, "worker/w1", lambda r: "free_slots" in r, what="capacity")
        self.assertEqual((w1["queues"], w1["slots"], w1["free_slots"]), (["default"], 2, 2))
        w2 = self.wait_role(cfg, "worker/w2", lambda r: "free_slots" in r, what="capacity")
        self.assertEqual((w2["queues"], w2["slots"], w2["free_slots"]), (["etl"], 1, 1))
        # A task runs through the supervised worker.
        self.put_dag({"dag_id": "hello", "tasks": [{"task_id": "t", "shell": "echo hi"}]})
        run = self.trigger("hello")
        self.assertEqual(self.wait_run("hello", run)["state"], "success")
        a.signal(signal.SIGTERM)
        self.assertEqual(a.wait(20), 0)
        self.assertIn("every role stopped; exiting", a.output())
        self.assertFalse(os.path.exists(sock))

    def test_kill_9_twenty_times(self):
        self.start_plane()
        roles = ("worker", "dag-processor", "triggerer", "sentinel")
        cfg = self.agent_yaml(roles=roles, restart_delay="100ms",
                              extra=f"sentinel:\n  listen: 127.0.0.1:{harness.free_port()}\n")
        a = self.start_agent(cfg)
        a.wait_output("agent ready: 4 of 4 roles up", timeout=15)
        for role in roles:
            for i in range(20):
                r = self.wait_role(cfg, role, lambda r: r["state"] == "up" and r["ready"],
                                   timeout=5, what="up")
                t0 = time.monotonic()
                os.kill(r["pid"], signal.SIGKILL)
                r2 = self.wait_role(cfg, role, lambda r, old=r["pid"]: r["ready"] and
                                    r["pid"] not in (None, old), timeout=5, what="restarted")
                self.assertLess(time.monotonic() - t0, 2.0 * harness.SLOW)
                self.assertEqual(r2["restarts"], i + 1)
                self.assertEqual(r2["last_exit"], "killed by signal 9 (KILL)")
        # Killed while working is not a crash loop, and no task is lost afterwards.
        self.put_dag({"dag_id": "after", "tasks": [{"task_id": f"t{i}", "shell": "true"}
                                                   for i in range(10)]})
        run = self.trigger("after")
        self.assertEqual(self.wait_run("after", run)["state"], "success")
        self.assertNotIn("FATAL", a.output())

    def test_crash_loop_is_fatal_and_others_keep_running(self):
        self.start_plane()
        # A copy of remex-agent beside a real worker and a triggerer that exits at once.
        bindir = os.path.join(self.tmp, "bin")
        os.makedirs(bindir)
        for b in ("remex-agent", "remex-worker", "remex-task", "remex-sentinel"):
            shutil.copy(self.bin(b), os.path.join(bindir, b))
        crash = os.path.join(bindir, "remex-triggerer")
        with open(crash, "w") as f:
            f.write("#!/bin/sh\necho 'boom: cannot start' >&2\nexit 3\n")
        os.chmod(crash, 0o755)
        sport = harness.free_port()
        cfg = self.agent_yaml(roles=("worker", "triggerer", "sentinel"), restart_delay="20ms",
                              extra=f"sentinel:\n  listen: 127.0.0.1:{sport}\n  interval: 200ms\n")
        a = self.start_agent(cfg, binary=os.path.join(bindir, "remex-agent"))
        a.wait_output("triggerer is FATAL", timeout=20)
        # The sentinel reads the supervisor's status: /health is 503 naming the FATAL role.
        def failing():
            st, hd, body = harness.http("GET", f"http://127.0.0.1:{sport}/health")
            return st == 503 and b"triggerer" in body and json.loads(body)
        health = harness.wait_for(failing, 10, what="/health 503")
        self.assertEqual(health["status"], "fail")
        # The worker's capacity reaches the sentinel's metrics through the agent.
        def slots():
            st, hd, body = harness.http("GET", f"http://127.0.0.1:{sport}/metrics")
            return st == 200 and re.search(r'remex_agent_queue_slots_free\{queue="default"\} [1-9]',
                                           body.decode())
        harness.wait_for(slots, 10, what="slot metrics")
        r = self.role(cfg, "triggerer")
        self.assertEqual(r["state"], "fatal")
        self.assertIn("crash loop: 6 exits within 60 s", r["reason"])
        self.assertEqual(r["restarts"], 5)
        self.assertIn("[triggerer] boom: cannot start", a.output())
        w = self.wait_role(cfg, "worker", lambda r: r["state"] == "up", what="up")
        self.assertTrue(w["ready"])
        self.assertFalse(self.status(cfg)["agent"]["ready"])
        # restart clears FATAL (and it crashes again: FATAL after 6 more exits).
        out = subprocess.run([self.bin("remex-agent"), "-c", cfg, "restart", "triggerer"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        harness.wait_for(lambda: a.output().count("triggerer is FATAL") == 2, 20,
                         what="FATAL again")
        out = subprocess.run([self.bin("remex-agent"), "-c", cfg, "restart", "nosuch"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 1)
        self.assertIn("no role or instance 'nosuch'", out.stderr)

    def test_missing_binary_and_exit_100_are_fatal_at_once(self):
        self.start_plane()
        bindir = os.path.join(self.tmp, "bin")
        os.makedirs(bindir)
        shutil.copy(self.bin("remex-agent"), os.path.join(bindir, "remex-agent"))
        cfg = self.agent_yaml(roles=("worker", "sentinel"))
        # No remex-worker beside this copy and none in PATH; the worker in PATH would be found.
        a = self.start_agent(cfg, binary=os.path.join(bindir, "remex-agent"),
                             env={"PATH": "/usr/bin:/bin"})
        a.wait_output("sentinel is FATAL", timeout=10)
        self.assertIn("remex-sentinel is not installed", self.role(cfg, "sentinel")["reason"])
        self.assertIn("remex-worker is not installed", self.role(cfg, "worker")["reason"])
        a.kill()
        # A revoked token: the worker exits 100 and is not restarted.
        cfg = self.agent_yaml()
        with open(os.path.join(self.tmp, "agent.token"), "w") as f:
            f.write("not-a-valid-token\n")
        a = self.start_agent(cfg, name="agent2")
        a.wait_output("worker is FATAL: exit code 100", timeout=15)
        self.assertEqual(self.role(cfg, "worker")["restarts"], 0)

    def test_roles_exit_when_the_agent_dies(self):
        # SIGKILL leaves the agent no time to stop its roles: the channel's end of file and
        # the parent-death signal make each role drain and exit by itself.
        self.start_plane()
        cfg = self.agent_yaml(workers=[("w1", "default", 1), ("w2", "default", 1)])
        a = self.start_agent(cfg)
        a.wait_output("agent ready", timeout=15)
        pids = [r["pid"] for r in self.status(cfg)["roles"]]
        os.kill(a.pid, signal.SIGKILL)
        a.wait(5)

        def gone():
            for p in pids:
                try:
                    with open(f"/proc/{p}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                            return False
                except FileNotFoundError:
                    pass
            return True
        harness.wait_for(gone, 10, what="the roles to exit")

    def test_sigterm_lets_a_running_task_finish(self):
        self.start_plane()
        cfg = self.agent_yaml()
        a = self.start_agent(cfg)
        a.wait_output("agent ready", timeout=15)
        self.put_dag({"dag_id": "slow", "tasks": [{"task_id": "t", "shell": "sleep 5; echo done"}]})
        run = self.trigger("slow")
        harness.wait_for(lambda: self.run_info("slow", run)["state"] == "running" and
                         any(t["state"] == "running" for t in self.run_info("slow", run)
                             ["task_instances"]), 10, what="task running")
        t0 = time.monotonic()
        a.signal(signal.SIGTERM)
        self.assertEqual(a.wait(30), 0)
        self.assertGreater(time.monotonic() - t0, 2.0)
        # The report reached the plane before the agent exited.
        self.assertEqual(self.run_info("slow", run)["state"], "success")

    def test_second_sigterm_stops_now(self):
        self.start_plane()
        cfg = self.agent_yaml(drain_grace="600s")
        a = self.start_agent(cfg)
        a.wait_output("agent ready", timeout=15)
        self.put_dag({"dag_id": "long", "tasks": [{"task_id": "t", "shell": "sleep 60"}]})
        run = self.trigger("long")
        harness.wait_for(lambda: any(t["state"] == "running" for t in
                                     self.run_info("long", run)["task_instances"]), 10,
                         what="task running")
        a.signal(signal.SIGTERM)
        a.wait_output("draining the roles", timeout=5)
        a.signal(signal.SIGTERM)
        self.assertEqual(a.wait(20), 0)
        self.assertIn("stopping every role now", a.output())

    def test_bad_config_and_sighup(self):
        self.start_plane()
        bad = self.write("bad.yaml", "plane:\n  url: http://127.0.0.1:1\n  token: x\n"
                                     "agent:\n  roles: [worker, sentinal]\n")
        p = self.spawn("bad", [self.bin("remex-agent"), "-c", bad])
        self.assertEqual(p.wait(10), 100)
        self.assertRegex(p.output(), r"bad\.yaml:5:\d+: agent\.roles: unknown role 'sentinal'")
        p = self.spawn("badroles", [self.bin("remex-agent"), "-c", bad, "--check"])
        self.assertEqual(p.wait(10), 100)
        cfg = self.agent_yaml()
        p = self.spawn("badopt", [self.bin("remex-agent"), "-c", cfg, "--roles", "worker,nope"])
        self.assertEqual(p.wait(10), 100)
        self.assertIn("--roles: unknown role 'nope'", p.output())
        a = self.start_agent(cfg)
        a.wait_output("agent ready", timeout=15)
        pid = self.role(cfg, "worker")["pid"]
        good = open(cfg).read()
        with open(cfg, "w") as f:
            f.write(good + "worker:\n  slots: 2\n")  # duplicate key
        a.signal(signal.SIGHUP)
        a.wait_output("SIGHUP: agent.yaml is invalid; nothing changed", timeout=5)
        self.assertIn("duplicate key", a.output())
        doc = json.load(open(os.path.join(self.state, "agent.status.json")))
        self.assertEqual(doc["roles"][0]["pid"], pid)  # the client needs a valid file
        with open(cfg, "w") as f:
            f.write(good)
        a.signal(signal.SIGHUP)
        a.wait_output("passing SIGHUP on to the roles", timeout=5)
        a.wait_output("SIGHUP: agent token re-read", timeout=5)
        self.assertEqual(self.role(cfg, "worker")["pid"], pid)

    def test_systemd_notify_and_json_output(self):
        self.start_plane()
        path = os.path.join(self.tmp, "notify.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        srv.bind(path)
        srv.settimeout(15 * harness.SLOW)
        cfg = self.agent_yaml(logs_format="json")
        a = self.start_agent(cfg, env={"NOTIFY_SOCKET": path})
        msgs = []
        while not any("READY=1" in m for m in msgs):
            msgs.append(srv.recv(4096).decode())
        self.assertIn("STATUS=1 of 1 roles up", [m for m in msgs if "READY=1" in m][0])
        srv.close()
        a.wait_output('"instance":"worker"', timeout=5)
        for line in a.output().splitlines():
            doc = json.loads(line)  # every line is one JSON object
            self.assertIn(doc.get("role"), ("agent", "worker"))


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare"),
                     "needs root and unshare(1) for a PID namespace")
class TestAgentPid1(AgentCase):
    def test_pid1_reaps_orphans(self):
        self.start_plane()
        cfg = self.agent_yaml()
        a = self.spawn("agent", ["unshare", "--fork", "--pid", "--mount-proc",
                                 self.bin("remex-agent"), "-c", cfg])
        a.wait_output("as PID 1", timeout=10)
        a.wait_output("agent ready", timeout=15)
        # A task that leaves orphans behind in a group of their own.
        self.put_dag({"dag_id": "orph", "tasks": [{"task_id": "t", "shell":
                      "for i in 1 2 3; do setsid sh -c 'sleep 0.5' & done; echo left"}]})
        run = self.trigger("orph")
        self.assertEqual(self.wait_run("orph", run)["state"], "success")
        time.sleep(1.5 * harness.SLOW)
        # No zombie anywhere in the namespace: look through the agent's /proc.
        ns_pid = int(subprocess.check_output(["pgrep", "-P", str(a.pid)]).split()[0])
        root = f"/proc/{ns_pid}/root/proc"
        zombies = []
        for d in os.listdir(root):
            if d.isdigit():
                try:
                    with open(f"{root}/{d}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                            zombies.append(d)
                except OSError:
                    pass
        self.assertEqual(zombies, [])
        os.kill(ns_pid, signal.SIGTERM)  # unshare(1) does not pass signals on
        self.assertEqual(a.wait(20), 0)


if __name__ == "__main__":
    unittest.main()
