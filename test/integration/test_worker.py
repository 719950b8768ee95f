"""remex-worker end to end against a real remex-plane: DAG shapes, failures,
retries, timeouts, cancellation, logs, XCom and connections (memory limits:
test_worker_memory.py)."""
import json
import os
import signal
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from workerfix import PlaneRelay, WorkerCase, lines  # noqa: E402


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

    def test_many_short_tasks(self):
        """Tasks that exit at once, many at a time: each one's own exit status is
        reported (a child may be reaped before its spawn is back on the loop), and
        one that talks to its socket at once is served."""
        self.start_plane()
        tasks = []
        for i in range(90):
            if i % 10 == 0:
                t = {"shell": "remex-task var get nosuch; test $? -eq 1"}
            elif i % 2:
                t = {"command": ["sh", "-c", f"exit {i % 7 + 1}"]}
            else:
                t = {"command": ["true"]}
            tasks.append(dict(t, task_id=f"t{i:02d}"))
        self.put_dag({"dag_id": "short", "tasks": tasks})
        w = self.start_worker(slots=16)
        run_id = self.trigger("short")
        tis = self.tis(self.wait_run("short", run_id, timeout=60))
        for i in range(90):
            ti = tis[f"t{i:02d}"]
            if i % 2 and i % 10:
                self.assertEqual((ti["state"], ti["exit_code"]), ("failed", i % 7 + 1), ti)
            else:
                self.assertEqual((ti["state"], ti["exit_code"]), ("success", 0), ti)
        self.assertTrue(w.alive())




def slurp(path):
    with open(path) as f:
        return f.read()


def pid_dead(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


class TestWorkerFailures(WorkerCase):
    def test_upstream_failure_and_retry_delay(self):
        self.start_plane()
        mark = os.path.join(self.tmp, "tries.txt")
        flaky = (f"date +%s.%N >> {mark}; "
                 f"[ $(wc -l < {mark}) -ge 2 ]")
        self.put_dag({"dag_id": "fail", "tasks": [
            {"task_id": "boom", "command": ["sh", "-c", "echo going down; exit 3"]},
            {"task_id": "after", "shell": "true", "upstream": ["boom"]},
            {"task_id": "flaky", "shell": flaky, "retries": 2, "retry_delay": 1},
        ]})
        w = self.start_worker()
        run_id = self.trigger("fail")
        run = self.wait_run("fail", run_id)
        tis = self.tis(run)
        self.assertEqual(run["state"], "failed")
        self.assertEqual(tis["boom"]["state"], "failed")
        self.assertEqual(tis["boom"]["exit_code"], 3)
        self.assertEqual(tis["after"]["state"], "upstream_failed")
        flaky_ti = self.wait_ti("fail", run_id, "flaky", ("success",))
        self.assertEqual(flaky_ti["try_number"], 2)
        t = [float(x) for x in lines(mark)]
        self.assertEqual(len(t), 2)
        self.assertGreaterEqual(t[1] - t[0], 0.95, "retry came before retry_delay")
        self.assertIn("going down", self.task_log("fail", run_id, "boom"))
        self.assertTrue(w.alive())

    def test_timeout_kills_group_with_grandchild(self):
        self.start_plane()
        gc = os.path.join(self.tmp, "gc.pid")
        self.put_dag({"dag_id": "slow", "tasks": [
            {"task_id": "hang", "execution_timeout": 1,
             "shell": f"sh -c 'sleep 300 & echo $! > {gc}; wait' ; sleep 300"}]})
        self.start_worker()
        run_id = self.trigger("slow")
        t0 = time.monotonic()
        run = self.wait_run("slow", run_id, timeout=20)
        ti = self.tis(run)["hang"]
        self.assertEqual(ti["state"], "failed")
        self.assertIn("execution_timeout", ti["reason"])
        self.assertLess(time.monotonic() - t0, 10 * harness.SLOW)
        pid = int(slurp(gc))
        harness.wait_for(lambda: pid_dead(pid), 5, what="grandchild to die")
        self.assertIn("stopping (execution_timeout)", self.task_log("slow", run_id, "hang"))

    def test_plane_timeout_cancel_reads_as_execution_timeout(self):
        # The plane's execution_timeout cancel can reach the worker before the
        # worker's own timer fires; the try must stop for the same reason.
        self.start_plane()
        tap = PlaneRelay(self.port)
        self.addCleanup(tap.close)
        self.put_dag({"dag_id": "ptmo", "tasks": [{"task_id": "t", "shell": "exec sleep 300"}]})
        self.start_worker(url=tap.url)
        run_id = self.trigger("ptmo")
        self.wait_ti("ptmo", run_id, "t", ("running",))
        tap.cancel_reason = "execution_timeout"
        run = self.wait_run("ptmo", run_id, timeout=20)
        self.assertEqual(self.tis(run)["t"]["state"], "failed")
        self.assertEqual(self.tis(run)["t"]["reason"], "execution_timeout")
        log = self.task_log("ptmo", run_id, "t")
        self.assertIn("stopping (execution_timeout)", log)
        self.assertNotIn("cancelled", log)

    def test_cancel_from_plane_stops_task(self):
        self.start_plane()
        pidf = os.path.join(self.tmp, "t.pid")
        self.put_dag({"dag_id": "cancel", "tasks": [
            {"task_id": "long", "shell": f"echo $$ > {pidf}; exec sleep 300"}]})
        self.start_worker()
        run_id = self.trigger("cancel")
        self.wait_ti("cancel", run_id, "long", ("running",))
        harness.wait_for(lambda: os.path.exists(pidf) and slurp(pidf).strip(), 5)
        pid = int(slurp(pidf))
        st, b = self.req("POST", f"/api/v1/admin/dags/cancel/runs/{run_id}/tasks/long/fail", {},
                         self.admin)
        self.assertEqual(st, 200, b)
        harness.wait_for(lambda: pid_dead(pid), 10, what="cancelled task to stop")
        harness.wait_for(lambda: "stopping (cancelled" in self.task_log("cancel", run_id, "long"),
                         5, what="cancel note in the task log")

    def test_clear_from_plane_stops_and_reruns(self):
        self.start_plane()
        self.put_dag({"dag_id": "clr", "tasks": [
            {"task_id": "t", "shell": "[ $REMEX_TRY_NUMBER -ge 2 ] || exec sleep 300"}]})
        w = self.start_worker()
        run_id = self.trigger("clr")
        self.wait_ti("clr", run_id, "t", ("running",))
        st, b = self.req("POST", f"/api/v1/admin/dags/clr/runs/{run_id}/tasks/t/clear", {},
                         self.admin)
        self.assertEqual(st, 200, b)
        # The plane queues try 2 at once and cancels try 1 at the next heartbeat.
        run = self.wait_run("clr", run_id, timeout=20)
        self.assertEqual(run["state"], "success", run)
        harness.wait_for(lambda: "stopping (cancelled" in self.task_log("clr", run_id, "t", 1),
                         10, what="try 1 to be stopped")
        self.assertTrue(w.alive())

    def test_unknown_template_fails_with_reason(self):
        self.start_plane()
        self.put_dag({"dag_id": "tmpl", "tasks": [
            {"task_id": "bad", "command": ["echo", "{{ nosuch }}"]}]})
        self.start_worker()
        run_id = self.trigger("tmpl")
        run = self.wait_run("tmpl", run_id)
        ti = self.tis(run)["bad"]
        self.assertEqual(ti["state"], "failed")
        self.assertIn("nosuch", ti["reason"])
        self.assertIn("template in command[1]", ti["reason"])


class TestWorkerData(WorkerCase):
    def test_xcom_and_masked_connection(self):
        self.start_plane()
        secrets = self.write("secrets.json", (
            '{"connections": {"db": "postgres://etl:Sup3rSecretPw@db.internal:5432/dw"},'
            ' "variables": {"region": "eu-west-1-secret"}}'), mode=0o600)
        self.put_dag({"dag_id": "xc", "params": {"who": "world"}, "tasks": [
            {"task_id": "push", "shell": "remex-task xcom push greeting \"hello {{ params.who }}\""},
            {"task_id": "pull", "upstream": ["push"], "connections": ["db"],
             "shell": "v=$(remex-task xcom pull --task push greeting) && echo got:$v && "
                      "test \"$v\" = 'hello world' && echo uri=$REMEX_CONN_DB && "
                      "p=$(remex-task conn get db --field password) && echo pw=$p && "
                      "echo b64=$(printf %s \"$p\" | base64) && "
                      "echo var=$(remex-task var get region) && "
                      "echo param=$REMEX_PARAM_WHO; remex-task xcom pull nope; echo rc=$?"},
        ]})
        self.start_worker(extra=f"secrets:\n  file: {secrets}\n")
        run_id = self.trigger("xc")
        run = self.wait_run("xc", run_id)
        self.assertEqual(run["state"], "success", run)
        log = self.task_log("xc", run_id, "pull")
        self.assertIn("got:hello world", log)
        self.assertIn("param=world", log)
        self.assertIn("pw=***", log)
        self.assertIn("var=***", log)
        self.assertIn("rc=1", log)
        self.assertNotIn("Sup3rSecretPw", log)
        self.assertNotIn("U3VwM3JTZWNyZXRQdw", log)  # base64 of the password
        self.assertNotIn("eu-west-1-secret", log)


class TestWorkerLifecycle(WorkerCase):
    def test_check_config(self):
        tok = self.token_file("x" * 40)
        good = self.worker_yaml(tok, url="http://127.0.0.1:1")
        p = self.spawn("check", [self.bin("remex-worker"), "-c", good, "--check"])
        self.assertEqual(p.wait(10), 0)
        self.assertIn("configuration OK", p.output())
        bad = self.write("bad.yaml", "plane:\n  url: http://127.0.0.1:1\n  token: x\n"
                                     "worker:\n  slotz: 3\n")
        p = self.spawn("check2", [self.bin("remex-worker"), "-c", bad, "--check"])
        self.assertEqual(p.wait(10), 100)
        self.assertRegex(p.output(), r"bad\.yaml:5:3: .*slotz")
        nob = self.worker_yaml(tok, url="http://127.0.0.1:1")
        os.rmdir(self.bundle)
        p = self.spawn("check3", [self.bin("remex-worker"), "-c", nob, "--check"])
        self.assertEqual(p.wait(10), 100)
        self.assertIn("bundles:", p.output())

    def test_one_agent_yaml_with_every_section(self):
        # Every role validates the whole agent.yaml: a file with the sections of roles
        # this version does not include passes, with a warning naming each reserved one;
        # the dag_processor section is read (and checked), not reserved.
        tok = self.token_file("x" * 40)
        state = os.path.join(self.tmp, "agentstate")
        full = self.write("full.yaml", (
            "plane:\n  url: http://127.0.0.1:1\n  token: {file: %s}\n"
            "state_dir: %s\n"
            "logs:\n  level: debug\n  format: json\n"
            "bundles:\n  - {name: main, path: %s}\n"
            "xcom:\n  store: file://%s/x\n"
            "worker:\n  queues: [default]\n"
            "dag_processor:\n  refresh_interval: 5m\n"
            "triggerer:\n  capacity: 1000\n"
            "sentinel: {}\n"
            "agent:\n  roles: [worker]\n") % (tok, state, self.bundle, state))
        p = self.spawn("full", [self.bin("remex-worker"), "-c", full, "--check"])
        self.assertEqual(p.wait(10), 0, p.output())
        out = p.output()
        self.assertIn("configuration OK", out)
        self.assertNotIn("warning", out)  # every section is read: none is reserved
        self.assertNotIn("sentinel", out)  # an empty mapping needs no warning
        # A reserved section is a mapping or nothing.
        bad = self.write("badres.yaml", "plane:\n  url: http://127.0.0.1:1\n  token: x\n"
                                        "sentinel: 12\n")
        p = self.spawn("badres", [self.bin("remex-worker"), "-c", bad, "--check"])
        self.assertEqual(p.wait(10), 100)
        self.assertIn("badres.yaml:4:11: sentinel: expected a mapping", p.output())
        # The dag_processor section is checked like the worker's.
        bad = self.write("baddp.yaml", "plane:\n  url: http://127.0.0.1:1\n  token: x\n"
                                       "dag_processor:\n  refresh_interval: 10ms\n")
        p = self.spawn("baddp", [self.bin("remex-worker"), "-c", bad, "--check"])
        self.assertEqual(p.wait(10), 100)
        self.assertIn("baddp.yaml:5:21: dag_processor.refresh_interval", p.output())

    def test_messages_read_well(self):
        # Queue names rather than a count, durations as an operator writes them, no doubled
        # prefixes, and the memory mechanism's alternatives not worded as errors.
        self.start_plane()
        w = self.start_worker()
        self.wait_registered(w)
        out = w.output()
        self.assertRegex(out, r"starting: plane http://127\.0\.0\.1:\d+, queues \[default\], 4 slots")
        self.assertNotRegex(out, r"cgroup2: /")
        w.signal(signal.SIGTERM)
        self.assertEqual(w.wait(10), 0)
        out = w.output()
        self.assertIn("SIGTERM: draining (running tasks get 10m;", out)
        for line in out.splitlines():
            words = line.split()
            self.assertFalse(any(a.endswith(":") and a == b for a, b in zip(words, words[1:])),
                             line)

    def test_derived_defaults_and_shared_log_settings(self):
        # logs.level applies to every role; the worker's state sits under state_dir.
        self.start_plane()
        tok = self.token_file(self.create_token()["value"])
        self.logdir = os.path.join(self.tmp, "logs")
        state = os.path.join(self.tmp, "shared")
        cfg = self.write("shared.yaml", (
            "plane:\n  url: http://127.0.0.1:%d\n  token: {file: %s}\n"
            "state_dir: %s\nlogs:\n  level: debug\n  format: json\n"
            "bundles:\n  - {name: main, path: %s}\n"
            "worker:\n  log_dir: %s\n") % (self.port, tok, state, self.bundle, self.logdir))
        w = self.spawn("sharedw", [self.bin("remex-worker"), "-c", cfg])
        w.wait_output("registered as agent", timeout=10)
        self.assertTrue(os.path.isdir(os.path.join(state, "worker", "journal")))
        # Registration advertises what this worker has: its bundles, and XCom (the derived
        # file://<state_dir>/xcom store opened).
        st, agents = self.req("GET", "/api/v1/admin/agents", token=self.admin)
        st, a = self.req("GET", f"/api/v1/admin/agents/{agents['agents'][0]['agent_id']}",
                         token=self.admin)
        self.assertEqual(a["features"]["bundles"], ["main"])
        self.assertTrue(a["features"]["xcom"])
        first = [l for l in w.output().splitlines() if l.startswith("{")]
        self.assertTrue(first, w.output())
        self.assertEqual(json.loads(first[0])["role"], "worker")
        w.signal(signal.SIGTERM)
        self.assertEqual(w.wait(10), 0)

    def test_session_refreshed_past_its_ttl(self):
        # The plane refreshes a session in the last third of its TTL. With 3 s that
        # window was exactly one 1 s heartbeat wide and a heartbeat delayed by load
        # could miss it; with 6 s it spans two heartbeats.
        self.start_plane(session_ttl="6s")
        self.put_dag({"dag_id": "ttl", "tasks": [{"task_id": "t", "shell": "true"}]})
        w = self.start_worker()
        self.wait_registered(w)
        time.sleep(7)  # past the first session's expiry
        run = self.wait_run("ttl", self.trigger("ttl"))
        self.assertEqual(run["state"], "success", run)
        self.assertNotIn("session refused", w.output())

    def test_drain_lets_running_task_finish(self):
        self.start_plane()
        self.put_dag({"dag_id": "drain", "tasks": [
            {"task_id": "t", "shell": "sleep 1.5; echo finished"}]})
        w = self.start_worker()
        run_id = self.trigger("drain")
        self.wait_ti("drain", run_id, "t", ("running",))
        w.signal(signal.SIGTERM)
        self.assertEqual(w.wait(20), 0)
        ti = self.tis(self.run_info("drain", run_id))["t"]
        self.assertEqual(ti["state"], "success")
        self.assertIn("draining", w.output())

    def test_second_sigterm_stops_tasks(self):
        self.start_plane()
        self.put_dag({"dag_id": "drain2", "tasks": [{"task_id": "t", "shell": "sleep 300"}]})
        w = self.start_worker()
        run_id = self.trigger("drain2")
        self.wait_ti("drain2", run_id, "t", ("running",))
        w.signal(signal.SIGTERM)
        # Signals do not queue: send the second only once the first was handled.
        w.wait_output("SIGTERM: draining")
        w.signal(signal.SIGTERM)
        self.assertEqual(w.wait(20), 0)
        ti = self.wait_ti("drain2", run_id, "t", ("failed", "up_for_retry"))
        self.assertIn("worker shutdown", ti["reason"] or "")


class TestWorkerTaskInterface(WorkerCase):
    def test_env_cwd_and_log_cap(self):
        self.start_plane()
        self.put_dag({"dag_id": "envd", "params": {"limit": 5, "name-x": "v"}, "tasks": [
            {"task_id": "env", "env": {"MINE": "{{ dag_id }}-{{ try_number }}"},
             "shell": "pwd; env | grep -E '^(REMEX_|MINE=)' | sort"},
            {"task_id": "loud", "shell": "i=0; while [ $i -lt 500 ]; do "
                                         "echo line-$i-xxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"},
        ]})
        self.start_worker(extra_worker="  log_max_bytes: 4096\n")
        run_id = self.trigger("envd")
        run = self.wait_run("envd", run_id)
        self.assertEqual(run["state"], "success", run)
        log = self.task_log("envd", run_id, "env")
        for want in (self.bundle, "MINE=envd-1", "REMEX_DAG_ID=envd", "REMEX_TASK_ID=env",
                     f"REMEX_RUN_ID={run_id}", "REMEX_TRY_NUMBER=1", "REMEX_MAP_INDEX=-1",
                     "REMEX_DS=", "REMEX_LOGICAL_DATE=", "REMEX_SOCKET=", "REMEX_PARAM_LIMIT=5",
                     "REMEX_PARAM_NAME_X=v"):
            self.assertIn(want, log)
        self.assertNotIn("token", log.lower())
        loud = self.task_log("envd", run_id, "loud")
        self.assertIn("[remex] log truncated", loud)
        self.assertLess(len(loud), 4096 + 200)

    def test_conf_overrides_params(self):
        """A manual run's conf overrides params in templates and REMEX_PARAM_*
        (docs/dag-format.md); keys only in the conf are params too."""
        self.start_plane()
        self.put_dag({"dag_id": "pc", "params": {"x": "a", "y": "keep"}, "tasks": [
            {"task_id": "t", "shell": 'echo "x={{ params.x }} y={{ params.y }}"'
                                      ' "z=$REMEX_PARAM_Z env=$REMEX_PARAM_X"'}]})
        self.start_worker()
        plain = self.trigger("pc")
        conf = self.trigger("pc", {"x": "b", "z": 3})
        for run_id, want in ((plain, "x=a y=keep z= env=a"), (conf, "x=b y=keep z=3 env=b")):
            run = self.wait_run("pc", run_id)
            self.assertEqual(run["state"], "success", run)
            self.assertIn(want, self.task_log("pc", run_id, "t"))

    def test_defer_and_peer_check(self):
        self.start_plane()
        self.put_dag({"dag_id": "dfr", "tasks": [
            {"task_id": "outsider", "shell": "setsid remex-task var get x; echo rc=$?"},
            {"task_id": "wait", "shell": "remex-task defer --resume-with done --trigger "
                                         "'{\"type\": \"timer\", \"at\": \"2099-01-01T00:00:00Z\"}'"},
        ]})
        w = self.start_worker()
        run_id = self.trigger("dfr")
        ti = self.wait_ti("dfr", run_id, "wait", ("deferred",))
        self.assertEqual(ti["state"], "deferred")
        self.wait_ti("dfr", run_id, "outsider", ("success",))
        self.assertIn("rc=3", self.task_log("dfr", run_id, "outsider"))
        self.assertIn("not in the task's process group", w.output())

    def test_task_socket_pool(self):
        """Tries in a row share one pooled socket; each try is served on it, and a
        connection to it while no try is using it is refused."""
        self.start_plane()
        sh = "echo sock=$REMEX_SOCKET; remex-task var get nosuch; echo rc=$?"
        self.put_dag({"dag_id": "socks", "tasks": [
            {"task_id": "a", "shell": sh},
            {"task_id": "b", "shell": sh, "upstream": ["a"]},
            {"task_id": "c", "shell": sh, "upstream": ["b"]},
        ]})
        w = self.start_worker(slots=1)
        run_id = self.trigger("socks")
        self.assertEqual(self.wait_run("socks", run_id)["state"], "success")
        paths = set()
        for t in ("a", "b", "c"):
            log = self.task_log("socks", run_id, t)
            self.assertIn("rc=1", log)  # served: "not found", not 3 (cannot reach the worker)
            paths.add(log.split("sock=", 1)[1].split()[0])
        self.assertEqual(len(paths), 1, paths)
        path = paths.pop()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            req = json.dumps({"op": "var.get", "key": "nosuch"}).encode()
            try:
                s.sendall(struct.pack(">I", len(req)) + req)
                got = s.recv(4)
            except (BrokenPipeError, ConnectionResetError):  # closed before or after the send
                got = b""
            self.assertEqual(got, b"")  # closed without a reply
        w.wait_output("no try is using it", timeout=5)
        self.assertTrue(w.alive())

    def test_once_and_sighup(self):
        self.start_plane()
        self.put_dag({"dag_id": "one", "tasks": [
            {"task_id": "a", "shell": "true"}, {"task_id": "b", "shell": "true"}]})
        w = self.start_worker(args=("--once",))
        self.wait_registered(w)
        w.signal(signal.SIGHUP)
        w.wait_output("agent token re-read", timeout=5)
        run_id = self.trigger("one")
        self.assertEqual(w.wait(20), 0)
        states = sorted(t["state"] for t in self.tis(self.run_info("one", run_id)).values())
        self.assertEqual(states[-1], "success")
        self.assertNotEqual(states[0], "success")


if __name__ == "__main__":
    unittest.main()
