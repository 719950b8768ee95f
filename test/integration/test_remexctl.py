"""remexctl against a real remex-plane on loopback.

Parts that need no plane (usage, help, token file checks, DAG file errors,
an unreachable plane) always run; the rest start remex-plane and skip with a
reason while the binary is not built. A scripted agent in this file
registers with an agent token created through remexctl and completes (or
fails) the task instances of a triggered run through the API.
"""
import http.client
import http.server
import json
import os
import re
import subprocess
import threading
import time
import unittest
import urllib.parse
import urllib.request

import harness

CTL = os.path.join(harness.BIN, "remexctl")
PLANE = os.path.join(harness.BIN, "remex-plane")

GOOD_DAG = """\
dag_id: hello
schedule: null
tasks:
  - task_id: extract
    command: [echo, extract]
  - task_id: load
    shell: echo load
    upstream: [extract]
"""

THREE_DAGS = """\
dags:
  - dag_id: one
    tasks:
      - {task_id: a, command: [echo, one]}
  - dag_id: two
    tasks:
      - {task_id: a, command: [echo, two]}
  - dag_id: three
    tasks:
      - {task_id: a, command: [echo, three]}
"""

BROKEN_DAG = """\
dag_id: broken
tasks:
  - task_id: a
    command: [echo, a]
    retires: 2
"""


class Base(harness.TestCase):
    def setUp(self):
        super().setUp()
        if not os.access(CTL, os.X_OK):
            self.fail(f"remexctl not built: {CTL}")
        self.token_file = self.write("admin.token", "not-the-token\n", mode=0o600)
        self.url = f"http://127.0.0.1:{harness.free_port()}"  # nothing listens there

    def ctl(self, *args, env=None, timeout=30):
        full = {k: v for k, v in os.environ.items() if not k.startswith("REMEX_ADMIN_TOKEN")}
        full.pop("REMEX_PLANE_URL", None)
        full.update(env or {})
        argv = [CTL, "--plane", self.url, "--token-file", self.token_file] + list(args)
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full,
                           timeout=timeout * harness.SLOW)
        return p.returncode, p.stdout.decode(), p.stderr.decode()


class WithoutPlane(Base):
    def test_did_you_mean(self):
        rc, out, err = self.ctl("dag", "list")
        self.assertEqual(rc, 2)
        self.assertIn("unknown command 'dag'; did you mean 'dags'?", err)
        rc, out, err = self.ctl("dags", "lst")
        self.assertIn("unknown subcommand 'lst'; did you mean 'dags list'?", err)
        rc, out, err = self.ctl("frobnicate")
        self.assertNotIn("did you mean", err)

    def test_help_aligned(self):
        rc, out, err = self.ctl("--help")
        self.assertEqual(rc, 0, err)
        cmds = out.split("Commands:\n")[1].split("\n\n")[0].splitlines()
        starts = {len(ln) - len(ln[2:].split("  ", 1)[1].lstrip()) for ln in cmds}
        self.assertEqual(len(starts), 1, cmds)
        for want in ("tasks mark", "tasks logs", "tasks list", "completion"):
            self.assertIn(want, out)

    def test_completion(self):
        for shell in ("bash", "zsh"):
            rc, out, err = self.ctl("completion", shell)
            self.assertEqual(rc, 0, err)
            self.assertIn("complete -F _remexctl remexctl", out)
        script = self.write("c.bash", self.ctl("completion", "bash")[1])
        p = subprocess.run(["bash", "-c", f"source {script}; COMP_WORDS=(remexctl -o json tasks m);"
                            " COMP_CWORD=4; _remexctl; echo ${COMPREPLY[@]}"],
                           stdout=subprocess.PIPE, timeout=30)
        self.assertEqual(p.stdout.decode().split(), ["mark"])
        rc, out, err = self.ctl("completion", "fish")
        self.assertEqual(rc, 2)

    def test_help_everywhere(self):
        for args in (["--help"], ["tokens", "--help"], ["tokens", "create", "--help"],
                     ["dags", "trigger", "--help"], ["import-errors", "--help"],
                     ["runs", "show", "-h"]):
            rc, out, err = self.ctl(*args)
            self.assertEqual(rc, 0, (args, err))
            self.assertIn("usage: remexctl", out)
        rc, out, _ = self.ctl("--help")
        self.assertIn("Exit codes:", out)
        self.assertIn("4  the plane rejected the admin token", out)

    def test_usage_errors_exit_2(self):
        cases = [[], ["frob"], ["dags"], ["dags", "frob"], ["dags", "show"],
                 ["dags", "show", "a", "b"], ["tokens", "create"], ["tokens", "revoke", "x"],
                 ["tokens", "create", "--name", "n", "--expires", "soon"],
                 ["dags", "trigger", "d", "--conf", "[1]"],
                 ["dags", "trigger", "d", "--logical-date", "yesterday"],
                 ["-o", "xml", "dags", "list"], ["--bogus"], ["dags", "list", "--bogus"],
                 ["dags", "push"]]
        for args in cases:
            rc, out, err = self.ctl(*args)
            self.assertEqual(rc, 2, (args, out, err))
            self.assertIn("remexctl: ", err, args)

    def test_unreachable_exit_3(self):
        rc, out, err = self.ctl("dags", "list")
        self.assertEqual(rc, 3, err)
        self.assertIn(f"remexctl: dags list: plane at {self.url} unreachable:", err)

    def test_token_file_checks(self):
        loose = self.write("loose.token", "x\n", mode=0o644)
        rc, _, err = self.ctl("--token-file", loose, "dags", "list")
        self.assertEqual(rc, 2)
        self.assertIn("accessible by group or others", err)
        rc, _, err = self.ctl("--token-file", os.path.join(self.tmp, "none"), "dags", "list")
        self.assertEqual(rc, 2)
        empty = self.write("empty.token", "\n", mode=0o600)
        rc, _, err = self.ctl("--token-file", empty, "dags", "list")
        self.assertEqual(rc, 2)
        self.assertIn("empty", err)

    def test_token_from_environment(self):
        env = {"REMEX_ADMIN_TOKEN": "abc"}
        p = subprocess.run([CTL, "--plane", self.url, "dags", "list"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env={**os.environ, **env}, timeout=30)
        self.assertEqual(p.returncode, 3, p.stderr)  # got past the token, then unreachable
        p = subprocess.run([CTL, "--plane", self.url, "dags", "list"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30,
                           env={k: v for k, v in os.environ.items()
                                if not k.startswith("REMEX_ADMIN_TOKEN")})
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"no admin token", p.stderr)

    def test_plain_http_only_to_loopback(self):
        rc, _, err = self.ctl("--plane", "http://192.0.2.1:8080", "dags", "list")
        self.assertEqual(rc, 2, err)
        self.assertIn("--insecure-http", err)

    def test_broken_dag_file_names_line_and_column(self):
        path = self.write("broken.yaml", BROKEN_DAG)
        rc, _, err = self.ctl("dags", "push", path)
        self.assertEqual(rc, 1, err)
        self.assertIn(f"remexctl: dags push: {path}:5:5: unknown key 'retires' "
                      "(did you mean 'retries'?)", err)
        path = self.write("syntax.yaml", "dag_id: x\ntasks: [\n")
        rc, _, err = self.ctl("dags", "push", path)
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"syntax\.yaml:\d+:\d+: ")
        rc, _, err = self.ctl("dags", "push", os.path.join(self.tmp, "missing.yaml"))
        self.assertEqual(rc, 1)
        self.assertIn("No such file", err)


class ScriptedAgent(threading.Thread):
    """Registers, polls for work and reports each task instance's outcome."""

    def __init__(self, base, agent_token, fail_task=None, deadline=60.0):
        super().__init__(daemon=True)
        self.base, self.agent_token, self.fail_task = base, agent_token, fail_task
        self.deadline = time.monotonic() + deadline * harness.SLOW
        self.stop = threading.Event()
        self.error = None
        self.done = []
        self.log_dir = None

    def run(self):
        try:
            st, reg = harness.http_json("POST", self.base + "/api/v1/agents/register", {
                "name": "scripted", "roles": ["worker"], "version": "0.1.0",
                "hostname": "test", "queues": ["default"], "slots": 4, "features": {}},
                token=self.agent_token)
            assert st == 200, (st, reg)
            session = reg["session_token"]
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                # Heartbeat like a real agent (each poll waits at most 1 s, under the
                # plane's 1 s interval x 3 missed): a silent agent is lost after 3 s.
                st, hb = harness.http_json(
                    "POST", f"{self.base}/api/v1/agents/{reg['agent_id']}/heartbeat",
                    {"state": "running", "free_slots": 4, "running": []}, token=session)
                assert st == 200, (st, hb)
                st, work = harness.http_json("POST", self.base + "/api/v1/work",
                                             {"queues": ["default"], "free_slots": 4, "wait": 1},
                                             token=session, timeout=15)
                assert st == 200, (st, work)
                for a in work.get("assignments", []):
                    self.complete(a)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def complete(self, a):
        tok, ti = a["task_token"], a["ti_id"]
        st, body = harness.http_json("POST", f"{self.base}/api/v1/task-instances/{ti}/start",
                                     {"try_number": a["try_number"]}, token=tok)
        assert st == 200, (st, body)
        failed = a["task_id"] == self.fail_task
        report = {"try_number": a["try_number"], "state": "failed" if failed else "success",
                  "exit_code": 1 if failed else 0}
        if self.log_dir:
            path = os.path.join(self.log_dir, f"{a['task_id']}.log")
            with open(path, "w") as f:
                f.write(f"log of {a['task_id']}\n")
            report["log_uri"] = "file://" + path
        if failed:
            report["reason"] = "exit code 1: table orders is locked"
        st, body = harness.http_json("POST", f"{self.base}/api/v1/task-instances/{ti}/state",
                                     report, token=tok)
        assert st == 200, (st, body)
        self.done.append(a["task_id"])


class WithPlane(Base):
    def setUp(self):
        super().setUp()
        if not os.access(PLANE, os.X_OK):
            self.skipTest(f"remex-plane is not built ({PLANE} missing)")
        port = harness.free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.token_file = os.path.join(self.tmp, "admin.token")
        cfg = self.write("plane.yaml", f"""\
listen: 127.0.0.1:{port}
db_path: {self.tmp}/plane.db
admin_token_file: {self.token_file}
signing_key_file: {self.tmp}/signing.key
heartbeat_interval: 1s
""")
        self.plane = self.spawn("plane", [PLANE, "-c", cfg])
        harness.wait_port(port, timeout=20)
        harness.wait_for(lambda: os.path.exists(self.token_file), what="admin token file")

    def push(self, text, name="dag.yaml"):
        rc, out, err = self.ctl("dags", "push", self.write(name, text))
        self.assertEqual(rc, 0, err)
        return out

    def upload_counts(self):
        """(bulk POSTs, PUTs of one DAG) from the plane's /metrics."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            text = r.read().decode()

        def total(method, route):
            return sum(int(m.group(1)) for m in re.finditer(
                r'remex_plane_http_requests_total\{method="%s",route="%s",code="\d+"\} (\d+)'
                % (method, re.escape(route)), text))
        return total("POST", "/api/v1/dags/bulk"), total("PUT", "/api/v1/dags/{dag_id}")

    def test_push_uploads_a_file_in_one_bulk_request(self):
        before = self.upload_counts()
        out = self.push(THREE_DAGS, "three.yaml")
        for d in ("one", "two", "three"):
            self.assertIn(f"pushed {d} (hash ", out)
        self.assertEqual(self.upload_counts(), (before[0] + 1, before[1]))
        rc, out, err = self.ctl("-o", "json", "dags", "list")
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        dags = {d["dag_id"]: d for d in (doc["dags"] if isinstance(doc, dict) else doc)}
        self.assertEqual(set(dags) & {"one", "two", "three"}, {"one", "two", "three"})
        self.assertEqual(dags["one"]["bundle"]["name"], "cli")
        self.assertRegex(dags["one"]["bundle"]["version"], r"^sha256:[0-9a-f]{64}$")
        self.assertEqual(dags["two"]["bundle"]["version"], dags["one"]["bundle"]["version"])
        # The same file again: the plane answers "unchanged", still one request.
        out = self.push(THREE_DAGS, "three.yaml")
        self.assertIn("pushed three (hash ", out)
        self.assertEqual(self.upload_counts(), (before[0] + 2, before[1]))
        # -o json prints the plane's bulk reply.
        rc, out, err = self.ctl("-o", "json", "dags", "push", self.write("three.yaml", THREE_DAGS))
        self.assertEqual(rc, 0, err)
        self.assertEqual([r["status"] for r in json.loads(out)["results"]], ["unchanged"] * 3)

    def test_push_falls_back_to_put_on_a_plane_without_the_bulk_route(self):
        # A plane older than the bulk route cannot be started here (one build of the plane):
        # a forwarding proxy in front of the real plane answers the bulk route as such a
        # plane does (404 for an unknown route, or 405) and passes everything else on.
        real = self.url

        class Proxy(http.server.BaseHTTPRequestHandler):
            code = 404

            def log_message(self, *a):
                pass

            def forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                if self.command == "POST" and self.path == "/api/v1/dags/bulk":
                    data = b'{"error":{"code":"not_found","message":"no such route"}}'
                    self.send_response(Proxy.code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                u = urllib.parse.urlsplit(real)
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() in ("authorization", "content-type", "accept")}
                c.request(self.command, self.path, body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
                self.send_response(r.status)
                self.send_header("Content-Type", r.getheader("Content-Type") or "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                c.close()

            do_GET = do_POST = do_PUT = forward

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        self.url = f"http://127.0.0.1:{srv.server_address[1]}"
        try:
            # 413: a batch over the plane's body_max goes one DAG per request.
            for code, text, why in (
                    (404, THREE_DAGS, "the plane has no bulk upload route"),
                    (405, THREE_DAGS.replace("echo", "echo x"), "the plane has no bulk upload route"),
                    (413, THREE_DAGS.replace("echo", "echo y"), "the batch is over the plane's "
                                                                "body_max")):
                Proxy.code = code
                before = self.upload_counts_of(real)
                rc, out, err = self.ctl("-v", "dags", "push", self.write("three.yaml", text))
                self.assertEqual(rc, 0, err)
                for d in ("one", "two", "three"):
                    self.assertIn(f"pushed {d} (hash ", out)
                self.assertIn(f"{why}; one PUT per DAG", err)
                self.assertEqual(self.upload_counts_of(real), (before[0], before[1] + 3))
        finally:
            self.url = real

    def upload_counts_of(self, url):
        saved, self.url = self.url, url
        try:
            return self.upload_counts()
        finally:
            self.url = saved

    def test_tokens_roles_and_queues(self):
        rc, value, err = self.ctl("tokens", "create", "--name", "etl", "--roles",
                                  "worker,dag-processor", "--queues", "etl,default")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("tokens", "list")
        self.assertEqual(rc, 0, err)
        row = [l for l in out.splitlines() if " etl " in l][0]
        self.assertIn("worker,dag-processor", row)
        self.assertIn("etl,default", row)
        st, b = harness.http_json("POST", self.url + "/api/v1/agents/register", {
            "name": "t", "roles": ["triggerer"], "version": "0", "queues": ["etl"],
            "slots": 1}, token=value.strip())
        self.assertEqual(st, 403, b)
        self.assertIn("triggerer", b["error"]["message"])
        for bad in (["--roles", "worker,,x"], ["--roles", "chef"], ["--queues", ""]):
            rc, out, err = self.ctl("tokens", "create", "--name", "b", *bad)
            self.assertIn(rc, (1, 2), (bad, err))
            self.assertIn("roles" if bad[0] == "--roles" else "queues", err)

    def test_tokens(self):
        rc, value, err = self.ctl("tokens", "create", "--name", "agents-eu", "--expires", "30d")
        self.assertEqual(rc, 0, err)
        value = value.strip()
        self.assertTrue(value and "\n" not in value)
        rc, out, err = self.ctl("tokens", "list")
        self.assertEqual(rc, 0, err)
        self.assertIn("agents-eu", out)
        self.assertIn("active", out)
        self.assertNotIn(value, out)
        rc, out, err = self.ctl("-o", "json", "tokens", "list")
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        toks = doc["tokens"] if isinstance(doc, dict) else doc
        tid = [t for t in toks if t["name"] == "agents-eu"][0]["id"]
        rc, out, err = self.ctl("tokens", "revoke", str(tid))
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("tokens", "list")
        self.assertIn("revoked", out)
        st, _ = harness.http_json("POST", self.url + "/api/v1/agents/register", {
            "name": "x", "roles": ["worker"], "version": "0", "queues": ["default"],
            "slots": 1}, token=value)
        self.assertEqual(st, 401)
        rc, out, err = self.ctl("tokens", "revoke", "999999")
        self.assertEqual(rc, 1, err)

    def test_bad_admin_token_exit_4(self):
        bad = self.write("bad.token", "wrong\n", mode=0o600)
        rc, _, err = self.ctl("--token-file", bad, "dags", "list")
        self.assertEqual(rc, 4, err)
        self.assertIn("rejected the admin token", err)

    def test_dags_push_list_show_pause(self):
        out = self.push(GOOD_DAG)
        self.assertIn("pushed hello", out)
        rc, out, err = self.ctl("dags", "list")
        self.assertEqual(rc, 0, err)
        self.assertIn("hello", out)
        rc, out, err = self.ctl("dags", "show", "hello")
        self.assertEqual(rc, 0, err)
        self.assertIn("extract", out)
        self.assertIn("load", out)
        for verb, want in (("pause", True), ("unpause", False)):
            rc, out, err = self.ctl("dags", verb, "hello")
            self.assertEqual(rc, 0, err)
            rc, out, err = self.ctl("-o", "json", "dags", "show", "hello")
            self.assertEqual(json.loads(out)["is_paused"], want)
        rc, out, err = self.ctl("dags", "show", "nope")
        self.assertEqual(rc, 1)
        rc, _, err = self.ctl("dags", "push", self.write("broken.yaml", BROKEN_DAG))
        self.assertEqual(rc, 1)
        self.assertIn("broken.yaml:5:5:", err)
        rc, out, err = self.ctl("import-errors")
        self.assertEqual(rc, 0, err)

    def test_push_shipped_examples(self):
        # Every DAG file shipped in etc/dags/ (durations, default_args, dates,
        # sensors) goes through the same parser and is accepted by the plane.
        etc = os.path.join(harness.ROOT, "etc", "dags")
        for name in sorted(os.listdir(etc)):
            rc, out, err = self.ctl("dags", "push", "--bundle", "examples",
                                    os.path.join(etc, name))
            self.assertEqual(rc, 0, f"{name}: {err}")
            self.assertIn("pushed ", out)
        rc, out, err = self.ctl("-o", "json", "dags", "show", "etl_daily")
        self.assertEqual(rc, 0, err)
        dag = json.loads(out)
        self.assertEqual(dag["schedule"], "30 2 * * *")

    def test_trigger_with_conf(self):
        self.push(GOOD_DAG)
        rc, out, err = self.ctl("dags", "trigger", "hello", "--conf", '{"table": "orders"}',
                                "--run-id", "manual_1")
        self.assertEqual(rc, 0, err)
        self.assertIn("manual_1", out)
        rc, out, err = self.ctl("runs", "list", "hello")
        self.assertEqual(rc, 0, err)
        self.assertIn("manual_1", out)
        rc, out, err = self.ctl("-o", "json", "runs", "show", "hello", "manual_1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["conf"], {"table": "orders"})
        rc, out, err = self.ctl("runs", "show", "hello", "manual_1")
        self.assertEqual(rc, 0, err)
        self.assertIn("extract", out)

    def agent(self, fail_task=None, log_dir=None):
        rc, value, err = self.ctl("tokens", "create", "--name", "scripted", "--expires", "1h")
        self.assertEqual(rc, 0, err)
        a = ScriptedAgent(self.url, value.strip(), fail_task)
        a.log_dir = log_dir
        a.start()
        self.addCleanup(a.stop.set)
        return a

    def test_wait_success(self):
        self.push(GOOD_DAG)
        a = self.agent()
        rc, out, err = self.ctl("dags", "trigger", "hello", "--wait", "--interval", "100ms",
                                "--timeout", "60s", timeout=90)
        self.assertIsNone(a.error)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("2/2 done, 0 running, 0 failed", out)
        self.assertIn(": success", out)

    def test_wait_failure(self):
        self.push(GOOD_DAG)
        a = self.agent(fail_task="extract")
        rc, out, err = self.ctl("dags", "trigger", "hello", "--wait", "--interval", "100ms",
                                "--timeout", "60s", timeout=90)
        self.assertIsNone(a.error)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("failed", out + err)

    def test_failure_explained(self):
        """A failed --wait lists the failed tasks with their reason and log;
        runs show has REASON and the agent's name, no MAP column for unmapped
        tasks; tasks logs prints a readable log; mark success re-evaluates."""
        self.push(GOOD_DAG)
        logs = os.path.join(self.tmp, "tasklogs")
        os.makedirs(logs)
        a = self.agent(fail_task="extract", log_dir=logs)
        rc, out, err = self.ctl("dags", "trigger", "hello", "--run-id", "r1", "--wait",
                                "--interval", "100ms", "--timeout", "60s", timeout=90)
        self.assertIsNone(a.error)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("failed task instances:", out)
        row = [ln for ln in out.splitlines() if ln.startswith("extract")][0]
        self.assertIn("table orders is locked", row)
        self.assertIn("file://" + os.path.join(logs, "extract.log"), row)
        self.assertIn("remexctl tasks logs hello r1 TASK", err)
        rc, out, err = self.ctl("runs", "show", "hello", "r1")
        self.assertEqual(rc, 0, err)
        hdr = [ln for ln in out.splitlines() if ln.startswith("TASK")][0].split()
        self.assertEqual(hdr, ["TASK", "TRY", "STATE", "AGENT", "START", "END", "REASON"])
        self.assertRegex(out, r"extract\s+1\s+failed\s+scripted\s")
        rc, out, err = self.ctl("tasks", "list", "hello", "r1", "-o", "wide")
        self.assertEqual(rc, 0, err)
        self.assertIn("LOG", out.splitlines()[0])
        rc, out, err = self.ctl("tasks", "logs", "hello", "r1", "extract")
        self.assertEqual((rc, out), (0, "log of extract\n"), err)
        rc, out, err = self.ctl("tasks", "mark", "success", "hello", "r1", "extract")
        self.assertEqual(rc, 0, err)
        self.assertIn("marked success hello r1 extract (state success)", out)
        run = harness.wait_for(lambda: (lambda r: r if r["state"] == "success" else None)(
            json.loads(self.ctl("runs", "show", "hello", "r1", "-o", "json")[1])), 20, 0.1,
            "the run to succeed after mark success")
        self.assertEqual({t["task_id"]: t["state"] for t in run["task_instances"]},
                         {"extract": "success", "load": "success"})
        rc, out, err = self.ctl("tasks", "mark", "failed", "hello", "r1", "load")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("tasks", "mark", "done", "hello", "r1", "load")
        self.assertEqual(rc, 2, err)

    def test_runs_cancel_clear_dags_delete_backfill(self):
        self.push(GOOD_DAG)
        rc, out, err = self.ctl("dags", "trigger", "hello", "--run-id", "c1")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("runs", "cancel", "hello", "c1")
        self.assertEqual((rc, out), (0, "cancelled run c1 of hello\n"), err)
        run = json.loads(self.ctl("runs", "show", "hello", "c1", "-o", "json")[1])
        self.assertEqual(run["state"], "failed")
        self.assertEqual({t["state"] for t in run["task_instances"]}, {"skipped"})
        self.assertEqual({t["reason"] for t in run["task_instances"]}, {"run cancelled"})
        rc, out, err = self.ctl("runs", "cancel", "hello", "c1")
        self.assertEqual(rc, 1)
        self.assertIn("conflict: the run is already failed", err)
        rc, out, err = self.ctl("runs", "clear", "hello", "c1")
        self.assertEqual((rc, out), (0, "cleared run c1 of hello\n"), err)
        run = json.loads(self.ctl("runs", "show", "hello", "c1", "-o", "json")[1])
        self.assertIn(run["state"], ("running", "queued"))
        self.assertFalse({t["state"] for t in run["task_instances"]} & {"skipped", "failed"})
        # A DAG with an active run is not deleted; once cancelled it is, runs included.
        rc, out, err = self.ctl("dags", "delete", "hello")
        self.assertEqual(rc, 1)
        self.assertIn("queued or running runs", err)
        self.assertEqual(self.ctl("runs", "cancel", "hello", "c1")[0], 0)
        rc, out, err = self.ctl("dags", "delete", "hello")
        self.assertEqual((rc, out), (0, "deleted hello\n"), err)
        rc, out, err = self.ctl("runs", "list", "hello")
        self.assertIn("DAG 'hello' not found", err)
        # Backfill: one run per schedule time in [from, to].
        self.push(GOOD_DAG.replace("schedule: null", "schedule: '@daily'\nstart_date: 2026-01-01"))
        rc, out, err = self.ctl("dags", "pause", "hello")
        rc, out, err = self.ctl("dags", "backfill", "hello", "--from", "2026-01-03T00:00:00Z",
                                "--to", "2026-01-05T00:00:00Z")
        self.assertEqual(rc, 0, err)
        self.assertIn("backfill of hello: 3 runs", out)
        runs = json.loads(self.ctl("runs", "list", "hello", "-o", "json")[1])["dag_runs"]
        ids = sorted(r["run_id"] for r in runs if r["run_id"].startswith("backfill__"))
        self.assertEqual(ids, ["backfill__2026-01-03T00:00:00Z", "backfill__2026-01-04T00:00:00Z",
                               "backfill__2026-01-05T00:00:00Z"])
        rc, out, err = self.ctl("dags", "backfill", "hello", "--from", "2026-01-05T00:00:00Z")
        self.assertEqual(rc, 2)

    def test_push_warns_of_a_bundle_no_agent_serves(self):
        path = self.write("dag.yaml", GOOD_DAG)
        rc, out, err = self.ctl("dags", "push", path)
        self.assertEqual(rc, 0, err)
        self.assertIn("warning: no --bundle: the DAGs are recorded in bundle 'cli'", err)
        rc, value, err = self.ctl("tokens", "create", "--name", "b")
        st, b = harness.http_json("POST", self.url + "/api/v1/agents/register", {
            "name": "w", "roles": ["worker"], "version": "0", "queues": ["default"], "slots": 1,
            "features": {"bundles": ["main", "etl"]}}, token=value.strip())
        self.assertEqual(st, 200, b)
        rc, out, err = self.ctl("dags", "push", path)
        self.assertEqual(rc, 0, err)
        self.assertIn("warning: no agent serves bundle 'cli' (agents serve: main, etl)", err)
        self.assertIn("--bundle NAME", err)
        rc, out, err = self.ctl("dags", "push", "--bundle", "main", path)
        self.assertEqual((rc, err), (0, ""))

    def test_pools(self):
        rc, out, err = self.ctl("pools", "set", "warehouse", "4", "--description", "DB links")
        self.assertEqual((rc, out), (0, "pool warehouse: 4 slots (0 occupied)\n"), err)
        rc, out, err = self.ctl("pools", "list")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines()[0].split(),
                         ["POOL", "SLOTS", "OCCUPIED", "QUEUED", "OPEN", "DESCRIPTION"])
        self.assertRegex(out, r"warehouse\s+4\s+0\s+0\s+4\s+DB links")
        self.assertRegex(out, r"default_pool\s+1000000\s")
        for bad in (["pools", "set", "x"], ["pools", "set", "x", "-1"], ["pools", "set", "x", "a"]):
            self.assertEqual(self.ctl(*bad)[0], 2, bad)
        rc, out, err = self.ctl("pools", "delete", "default_pool")
        self.assertEqual(rc, 1)
        self.assertIn("default_pool cannot be deleted", err)
        rc, out, err = self.ctl("pools", "delete", "warehouse")
        self.assertEqual((rc, out), (0, "deleted pool warehouse\n"), err)

    def test_agents_delete(self):
        rc, value, err = self.ctl("tokens", "create", "--name", "gone")
        st, b = harness.http_json("POST", self.url + "/api/v1/agents/register", {
            "name": "gone", "roles": ["worker"], "version": "0", "queues": ["default"],
            "slots": 1}, token=value.strip())
        self.assertEqual(st, 200, b)
        rc, out, err = self.ctl("agents", "delete", "gone")
        self.assertEqual(rc, 1)
        self.assertIn("only a lost or offline agent can be deleted", err)
        # A silent agent is lost after 3 missed heartbeats (1 s each here).
        harness.wait_for(lambda: "lost" in self.ctl("agents", "show", "gone")[1], 15, 0.2,
                         "the agent to be lost")
        rc, out, err = self.ctl("agents", "delete", "gone")
        self.assertEqual((rc, out), (0, f"deleted agent {b['agent_id']} (gone)\n"), err)
        rc, out, err = self.ctl("agents", "list")
        self.assertNotIn("gone", out)

    def test_output_anywhere_and_errors_in_words(self):
        self.push(GOOD_DAG.replace("shell: echo load", "shell: |\n      echo one\n      echo two"))
        rc, out, err = self.ctl("dags", "list", "-o", "json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["dags"][0]["bundle"]["name"], "cli")
        rc, out, err = self.ctl("dags", "show", "hello", "--output=yaml")
        self.assertEqual(rc, 0, err)
        self.assertIn("dag_id: hello\n", out)
        self.assertRegex(out, r"bundle:\n  name: cli\n")
        rc, out, err = self.ctl("dags", "show", "hello")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("?", out)
        self.assertIn("echo one ... (2 lines, below)", out)
        self.assertIn("shell of load:\n  echo one\n  echo two\n", out)
        rc, out, err = self.ctl("dags", "show", "nope")
        self.assertEqual(rc, 1)
        self.assertEqual(err, "remexctl: dags show: DAG 'nope' not found; push it with remexctl "
                              "dags push\n")
        rc, out, err = self.ctl("-v", "runs", "show", "hello", "nope")
        self.assertEqual(rc, 1)
        self.assertIn("HTTP 404", err)
        self.assertIn("run 'nope' of DAG 'hello' not found; see remexctl runs list hello", err)
        rc, out, err = self.ctl("tasks", "logs", "hello", "nope", "x")
        self.assertIn("run 'nope' of DAG 'hello' not found", err)
        rc, out, err = self.ctl("dags", "list", "-o", "xml")
        self.assertEqual(rc, 2)
        self.assertIn("expected table, wide, json or yaml", err)

    def test_agents_drain_resume_maintenance(self):
        rc, value, err = self.ctl("tokens", "create", "--name", "agents")
        self.assertEqual(rc, 0, err)
        ids = {}
        for name in ("w1", "7"):  # a name of digits is looked up as a name first
            st, b = harness.http_json("POST", self.url + "/api/v1/agents/register", {
                "name": name, "roles": ["worker"], "version": "0", "queues": ["default"],
                "slots": 1}, token=value.strip())
            self.assertEqual(st, 200, b)
            ids[name] = b["agent_id"]
        rc, out, err = self.ctl("agents", "drain", "w1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, f"agent {ids['w1']} (w1): desired state drain, state starting\n")
        rc, out, err = self.ctl("agents", "list")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines()[0].split()[:7],
                         ["ID", "NAME", "STATE", "DESIRED", "QUEUES", "SLOTS", "RUNNING"])
        row = [ln.split() for ln in out.splitlines() if " w1 " in ln][0]
        self.assertEqual(row[2:4], ["starting", "drain"])
        self.assertEqual(row[6], "0")
        rc, out, err = self.ctl("agents", "show", "w1")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"desired_state:\s+drain")
        # A name made of digits wins over the same number as an id.
        rc, out, err = self.ctl("agents", "maintenance", "7")
        self.assertEqual(rc, 0, err)
        self.assertIn(f"agent {ids['7']} (7): desired state maintenance", out)
        rc, out, err = self.ctl("agents", "resume", str(ids["w1"]))
        self.assertEqual(rc, 0, err)
        self.assertIn("(w1): desired state run", out)
        rc, out, err = self.ctl("-o", "json", "agents", "show", "w1")
        self.assertEqual(json.loads(out)["desired_state"], "run")
        rc, out, err = self.ctl("agents", "drain", "nosuch")
        self.assertEqual(rc, 1, err)
        self.assertIn("no agent named or numbered 'nosuch'", err)
        for args in (["agents", "drain"], ["agents", "resume", "a", "b"]):
            rc, out, err = self.ctl(*args)
            self.assertEqual(rc, 2, (args, err))


if __name__ == "__main__":
    unittest.main()
