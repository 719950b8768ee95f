"""The spec and the live plane agree, as judged by a validator written
elsewhere: Stoplight Prism (pinned, build/node/prism/, installed by
mk/prism.sh) runs as a validating proxy in front of a real plane; a real
remex-worker, remexctl and a scripted triggerer / dag-processor / sentinel
drive every route through it. Any response Prism finds outside the spec,
any request of the well-behaved clients it finds outside the spec, and any
served route that the traffic did not reach fails the test."""
import json
import os
import re
import subprocess
import time

import harness
from workerfix import WorkerCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRISM = os.path.join(ROOT, "build/node/prism/node_modules/.bin/prism")
SPEC = os.path.join(ROOT, "docs/api/openapi.yaml")

DAGS_YAML = """\
dag_id: contract
description: every kind of task the worker runs
schedule: null
params: {x: a}
tags: [contract]
tasks:
  - task_id: argv
    command: [sh, -c, "echo {{ params.x }}"]
    execution_timeout: 1m
  - task_id: multi
    shell: |
      echo one
      echo two
    upstream: argv
  - task_id: flaky
    shell: "test -e MARKER || { touch MARKER; exit 3; }"
    retries: 1
    retry_delay: 1s
    max_retry_delay: 10s
    retry_exponential_backoff: true
    upstream: argv
  - task_id: push
    shell: remex-task xcom push answer 42
  - task_id: pull
    shell: remex-task xcom pull --task push answer
    upstream: push
  - task_id: wait
    shell: >-
      test -n "${REMEX_TRIGGER_EVENT:-}" || remex-task defer --resume-with done
      --trigger '{"type": "timer", "at": "2099-01-01T00:00:00Z"}'
"""


class PrismContractTest(WorkerCase):
    def setUp(self):
        super().setUp()
        self.assertTrue(os.access(PRISM, os.X_OK),
                        f"{PRISM} missing: run 'make prism' (bash mk/prism.sh)")
        self.start_plane()
        self.plane_url = self.url
        port = harness.free_port()
        self.prism = self.spawn("prism", [PRISM, "proxy", SPEC, self.plane_url,
                                          "-h", "127.0.0.1", "-p", str(port)])
        self.prism.wait_output("Prism is listening", timeout=120 * harness.SLOW)
        self.url = f"http://127.0.0.1:{port}"
        self.admin_file = self.write("admin.token", self.admin + "\n", mode=0o600)

    # ---- what Prism saw ----

    def prism_log(self):
        return re.sub(r"\x1b\[[0-9;]*m", "", self.prism.output())

    def violations(self, since=0, kinds=("response", "request")):
        # Prism logs a verdict after it relays the reply: let the last one land.
        st, _ = self.req("GET", "/healthz", raw=True)
        self.assertEqual(st, 200)
        time.sleep(0.5)
        out = []
        for line in self.prism_log()[since:].splitlines():
            m = re.search(r"Violation: (\S+) (.*)", line)
            if m and m.group(1).split(".")[0] in kinds:
                out.append(m.group(1) + " " + m.group(2))
        return out

    def mark(self):
        return len(self.prism_log())

    def routes_seen(self):
        seen = set()
        for m in re.finditer(r"\[HTTP SERVER\] (\w+) (\S+) .*Request received", self.prism_log()):
            seen.add((m.group(1).upper(), m.group(2).split("?")[0]))
        return seen

    # ---- clients ----

    def ctl(self, *args, ok=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("REMEX_")}
        p = subprocess.run([self.bin("remexctl"), "--plane", self.url, "--token-file",
                            self.admin_file, *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, timeout=60 * harness.SLOW)
        if ok:
            self.assertEqual(p.returncode, 0, (args, p.stderr.decode()))
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def scripted_agent(self):
        """A triggerer + dag-processor + sentinel agent driven by hand; it
        registers again (same name, new session) at each use, since it sends
        no heartbeats in between."""
        if not hasattr(self, "scripted_tok"):
            self.scripted_tok = self.create_token(
                "scripted", roles=["triggerer", "dag-processor", "sentinel"])
        tok = self.scripted_tok
        st, b = self.register(tok["value"], "scripted", roles=["triggerer", "dag-processor",
                                                                "sentinel"], queues=["default"],
                              slots=0, features={"triggers": True})
        self.assertEqual(st, 200, b)
        return b["agent_id"], b["session_token"]

    def drive_triggers(self, aid, sess):
        """Fires the sensor's trigger through the triggerer routes."""
        def poll():
            st, b = self.heartbeat(aid, sess, free_slots=0)
            self.assertEqual(st, 200, b)
            st, b = self.req("POST", "/api/v1/triggers/poll",
                             {"capacity": 10, "wait": 1, "held": []}, sess)
            self.assertEqual(st, 200, b)
            return b["triggers"] or None
        trig = harness.wait_for(poll, 20, 0.1, "a trigger for the sensor")[0]
        st, b = self.heartbeat(aid, sess, triggers=[trig["trigger_id"]],
                               sysinfo={"load1": 0.1})
        self.assertEqual(st, 200, b)
        st, b = self.req("POST", f"/api/v1/triggers/{trig['trigger_id']}/event",
                         {"payload": {"fired": True}}, sess)
        self.assertEqual(st, 200, b)
        # The batch form: the same trigger again (gone now: its result says so) and one
        # that never was.
        st, b = self.req("POST", "/api/v1/triggers/events",
                         {"events": [{"trigger_id": trig["trigger_id"], "payload": {}},
                                     {"trigger_id": 999999, "timed_out": True}]}, sess)
        self.assertEqual(st, 200, b)
        self.assertEqual(len(b["results"]), 2)
        # What the sentinel reads for its queue-depth metric.
        st, b = self.req("GET", "/api/v1/queues/depth?queues=default,nosuch", None, sess)
        self.assertEqual(st, 200, b)
        self.assertEqual([q["name"] for q in b["queues"]], ["default", "nosuch"])
        # What an external_run trigger reads.
        st, b = self.req("GET", f"/api/v1/dags/contract/runs/{self.run_id}/status", None, sess)
        self.assertEqual(st, 200, b)

    def drive_dag_processor(self, sess):
        man = {"bundle": "main", "version": "v2",
               "files": [{"path": "contract.yaml", "dags": [{"dag_id": "contract",
                                                              "hash": "0" * 64}]}],
               "import_errors": [{"file": "broken.yaml", "line": 3, "column": 5,
                                  "message": "tasks[0].retires: unknown key"}]}
        st, b = self.req("POST", "/api/v1/dags/manifest", man, sess)
        self.assertEqual(st, 200, b)
        dag = {"dag_id": "side", "fileloc": "side.yaml",
               "tasks": [{"task_id": "t", "command": ["true"]}]}
        st, b = self.req("PUT", "/api/v1/dags/side",
                         {"bundle": {"name": "main", "version": "v2"}, "dag": dag}, sess)
        self.assertEqual(st, 200, b)
        # The bulk form: the same DAG again (unchanged) and one the plane refuses
        # (within the schema: an upstream naming no task).
        bad = {"dag_id": "dangling", "fileloc": "d.yaml",
               "tasks": [{"task_id": "t", "command": ["true"], "upstream": ["nope"]}]}
        st, b = self.req("POST", "/api/v1/dags/bulk",
                         {"bundle": {"name": "main", "version": "v2"}, "dags": [dag, bad]}, sess)
        self.assertEqual(st, 200, b)
        self.assertEqual([r["status"] for r in b["results"]], ["unchanged", "invalid"], b)

    def drive_task_routes(self):
        """The single and the batched start and state routes, each with a 200,
        whatever the real worker's timing made it use (a queue it does not serve)."""
        tasks = [{"task_id": t, "command": ["true"], "queue": "scripted"} for t in ("a", "b")]
        st, b = self.req("PUT", "/api/v1/dags/scripted",
                         {"bundle": {"name": "main", "version": "v2"},
                          "dag": {"dag_id": "scripted", "fileloc": "s.yaml", "tasks": tasks}},
                         self.admin)
        self.assertEqual(st, 200, b)
        run_id = self.trigger("scripted")
        tok = self.create_token("scripted-worker", roles=["worker"])["value"]
        st, b = self.register(tok, "scripted-worker", roles=["worker"], queues=["scripted"])
        self.assertEqual(st, 200, b)
        sess = b["session_token"]
        got = []

        def work():
            st, b = self.req("POST", "/api/v1/work",
                             {"queues": ["scripted"], "free_slots": 2, "wait": 1}, sess)
            self.assertEqual(st, 200, b)
            got.extend(b["assignments"])
            return len(got) == 2
        harness.wait_for(work, 20, 0.05, "two scripted assignments")
        a, b2 = got
        item = lambda x, **kw: dict(ti_id=x["ti_id"], try_number=x["try_number"],  # noqa: E731
                                    task_token=x["task_token"], **kw)
        st, r = self.req("POST", f"/api/v1/task-instances/{a['ti_id']}/start",
                         {"try_number": a["try_number"], "pid": 7, "hostname": "h"},
                         a["task_token"])
        self.assertEqual(st, 200, r)
        st, r = self.req("POST", "/api/v1/task-instances/start",
                         {"items": [item(b2, pid=8, hostname="h"), item(a)]}, sess)
        self.assertEqual((st, [x["status"] for x in r["results"]]), (200, [200, 200]), r)
        st, r = self.req("POST", f"/api/v1/task-instances/{a['ti_id']}/state",
                         {"try_number": a["try_number"], "state": "success", "exit_code": 0},
                         a["task_token"])
        self.assertEqual(st, 200, r)
        st, r = self.req("POST", "/api/v1/task-instances/state",
                         {"items": [item(b2, state="success", exit_code=0),
                                    item(a, state="success"),
                                    item(a, state="failed", exit_code=1)]}, sess)
        # Applied, a replay, and a stale report (409 in its result).
        self.assertEqual((st, [x["status"] for x in r["results"]]), (200, [200, 200, 409]), r)
        self.assertEqual(self.wait_run("scripted", run_id)["state"], "success")

    def drive_remexctl(self, run_id):
        for args in (["dags", "list"], ["-o", "json", "dags", "list"], ["dags", "show", "contract"],
                     ["dags", "pause", "contract"], ["dags", "unpause", "contract"],
                     ["runs", "list", "contract"], ["runs", "show", "contract", run_id],
                     ["agents", "list"], ["agents", "show", "w1"], ["agents", "drain", "w1"],
                     ["agents", "resume", "w1"], ["tokens", "list"], ["import-errors"],
                     ["tasks", "clear", "contract", run_id, "multi"],
                     ["tasks", "clear", "--downstream", "contract", run_id, "argv"],
                     ["tasks", "mark", "success", "contract", run_id, "argv"],
                     ["tasks", "mark", "failed", "contract", run_id, "push"],
                     ["tasks", "list", "contract", run_id], ["-o", "yaml", "tasks", "list",
                                                             "contract", run_id],
                     ["tasks", "logs", "contract", run_id, "pull"]):
            self.ctl(*args)
        rc, out, err = self.ctl("dags", "list")
        self.assertRegex(out, r"contract\s+no\s+yes\s+-\s+main\s", "the bundle's name is shown")
        rc, out, err = self.ctl("-o", "json", "dags", "trigger", "contract", "--conf",
                                '{"x": "b"}', "--wait", "--timeout", "3s", ok=False)
        self.assertIn(rc, (0, 1), err)
        self.ctl("dags", "trigger", "contract", "--run-id", "to-cancel")
        self.ctl("runs", "cancel", "contract", "to-cancel")
        self.assertEqual(self.ctl("runs", "cancel", "contract", "to-cancel", ok=False)[0], 1)
        self.ctl("runs", "clear", "contract", "to-cancel")
        self.ctl("runs", "cancel", "contract", "to-cancel")
        self.ctl("dags", "delete", "side")
        self.ctl("pools", "set", "warehouse", "2", "--description", "DB links")
        self.ctl("pools", "list")
        self.ctl("pools", "delete", "warehouse")
        self.ctl("db", "clean", "--older-than", "0s", "--dry-run")
        self.ctl("-o", "json", "db", "clean", "--older-than", "1h")
        self.assertEqual(self.ctl("pools", "delete", "default_pool", ok=False)[0], 1)
        self.assertEqual(self.ctl("agents", "delete", "w1", ok=False)[0], 1)  # 409: running
        rc, value, err = self.ctl("tokens", "create", "--name", "spare", "--roles", "worker")
        rc, out, err = self.ctl("-o", "json", "tokens", "list")
        spare = [t for t in json.loads(out)["tokens"] if t["name"] == "spare"][0]
        self.ctl("tokens", "revoke", str(spare["id"]))

    def drive_errors(self):
        """Refusals: each must be a declared response of its route."""
        sess_tok = self.create_token("e", roles=["worker"])["value"]
        st, b = self.register(sess_tok, "err-worker", roles=["worker"])
        self.assertEqual(st, 200, b)
        aid, wsess = b["agent_id"], b["session_token"]
        cases = [
            ("GET", "/api/v1/admin/dags/nope", None, self.admin, 404),
            ("GET", "/api/v1/admin/dags", None, None, 401),
            ("GET", "/api/v1/admin/dags", None, wsess, 403),
            ("POST", "/api/v1/work", {"free_slots": 1}, wsess, 400),
            ("POST", "/api/v1/work", {"queues": ["default"], "free_slots": 1, "wait": 0},
             wsess, 200),
            ("PUT", "/api/v1/dags/x", {"bundle": {"name": "b", "version": "1"},
                                       "dag": {"dag_id": "x"}}, wsess, 403),
            ("POST", "/api/v1/dags/bulk", {"bundle": {"name": "b", "version": "1"},
                                           "dags": [{"dag_id": "x"}]}, wsess, 403),
            ("POST", "/api/v1/dags/bulk", {"dags": []}, self.admin, 400),
            ("POST", "/api/v1/triggers/poll", {"capacity": 1, "wait": 0}, wsess, 403),
            ("POST", "/api/v1/agents/register", {"name": "r", "roles": ["triggerer"],
                                                 "version": "1", "queues": ["default"],
                                                 "slots": 1}, sess_tok, 403),
            ("POST", f"/api/v1/agents/{aid}/health", {"status": "ok", "checks": []}, wsess, 403),
            ("POST", "/api/v1/admin/dags/nope/runs", {}, self.admin, 404),
            ("GET", "/api/v1/admin/dags/contract/runs/nope", None, self.admin, 404),
            ("POST", "/api/v1/admin/dags/contract/runs/nope/tasks/t/fail", None, self.admin, 404),
            ("POST", "/api/v1/admin/dags/contract/runs/nope/tasks/t/clear", {}, self.admin, 404),
            ("DELETE", "/api/v1/admin/tokens/999", None, self.admin, 404),
            ("DELETE", "/api/v1/admin/tokens/abc", None, self.admin, 400),
            ("POST", "/api/v1/work", {}, wsess, 400),
            ("PATCH", "/api/v1/admin/agents/999", {"desired_state": "drain"}, self.admin, 404),
            ("GET", "/api/v1/admin/agents/999", None, self.admin, 404),
            ("DELETE", "/api/v1/admin/agents/999", None, self.admin, 404),
            ("DELETE", "/api/v1/admin/dags/nope", None, self.admin, 404),
            ("POST", "/api/v1/admin/dags/contract/runs/nope/cancel", None, self.admin, 404),
            ("POST", "/api/v1/admin/dags/contract/runs/nope/clear", None, self.admin, 404),
            ("POST", "/api/v1/admin/tokens", {"name": "x"}, self.admin, 400),
            ("PUT", "/api/v1/admin/pools/p", {"slots": -1}, self.admin, 400),
            ("DELETE", "/api/v1/admin/pools/nope", None, self.admin, 404),
            ("GET", "/api/v1/queues/depth", None, wsess, 400),
            ("GET", "/api/v1/queues/depth?queues=a", None, None, 401),
            ("POST", "/api/v1/admin/db/clean", {"older_than": -1}, self.admin, 400),
            # The web UI's session: a login without an Origin naming the plane, no cookie.
            ("POST", "/api/v1/ui/session", {"token": "not-the-admin-token"}, None, 403),
            ("GET", "/api/v1/ui/session", None, None, 401),
            ("DELETE", "/api/v1/ui/session", None, None, 401),
        ]
        for method, path, body, tok, want in cases:
            st, b = self.req(method, path, body, tok)
            self.assertEqual(st, want, (method, path, b))

    # ---- the test ----

    def test_live_traffic_agrees_with_spec(self):
        marker = os.path.join(self.tmp, "flaky.marker")
        dagfile = self.write("contract.yaml", DAGS_YAML.replace("MARKER", marker))
        self.ctl("dags", "push", "--bundle", "main", dagfile)
        aid, sess = self.scripted_agent()
        st, b = self.req("POST", f"/api/v1/agents/{aid}/health",
                         {"status": "ok", "checks": [{"name": "plane", "status": "ok",
                                                      "message": "reachable"}]}, sess)
        self.assertEqual(st, 200, b)
        w = self.start_worker()
        self.wait_registered(w)
        run_id = self.trigger("contract", {"x": "b"})
        self.run_id = run_id
        self.drive_triggers(aid, sess)
        run = self.wait_run("contract", run_id, timeout=60)
        self.assertEqual(run["state"], "success", run)
        self.assertIn("b", self.task_log("contract", run_id, "argv"))
        self.drive_dag_processor(self.scripted_agent()[1])
        self.drive_task_routes()
        self.drive_remexctl(run_id)
        for path in ("/healthz", "/metrics"):
            st, _ = self.req("GET", path, raw=True)
            self.assertEqual(st, 200, path)
        # What the web UI reads: a DAG's grid, a task instance with its tries, its log.
        for path in ("/api/v1/admin/dags/contract/grid",
                     f"/api/v1/admin/dags/contract/runs/{run_id}/tasks/argv",
                     f"/api/v1/admin/dags/contract/runs/{run_id}/tasks/argv/log"):
            st, b = self.req("GET", path, None, self.admin)
            self.assertEqual(st, 200, (path, b))
        # The web UI's page and one of its files.
        st, _, page = harness.http("GET", self.url + "/")
        self.assertEqual(st, 200)
        asset = re.search(r'(/ui/[^/"]+/[^"]+)"', page.decode()).group(1)
        st, _, _ = harness.http("GET", self.url + asset)
        self.assertEqual(st, 200, asset)
        # The well-behaved clients are done: nothing outside the spec so far.
        self.assertEqual(self.violations(), [], "requests and replies outside the spec")
        before = self.mark()
        self.drive_errors()
        # Refusals of bad requests may follow bad requests; their replies may not.
        self.assertEqual(self.violations(before, kinds=("response",)), [],
                         "error replies outside the spec")
        self.assert_every_route_seen()

    def assert_every_route_seen(self):
        p = subprocess.run([self.bin("remex-plane"), "--routes"], stdout=subprocess.PIPE,
                           check=True, timeout=30)
        seen = self.routes_seen()
        missing = []
        for line in p.stdout.decode().splitlines():
            method, pattern = line.split()
            rx = re.compile("^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(pattern)) + "$")
            if not any(m == method and rx.match(path) for m, path in seen):
                missing.append(line)
        self.assertEqual(missing, [], "routes the contract traffic did not reach")


if __name__ == "__main__":
    harness.main()
