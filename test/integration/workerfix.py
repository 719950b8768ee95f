"""Fixture of the remex-worker integration tests: a real remex-plane (through
planefix) plus real remex-worker processes on loopback, a local bundle folder,
agent tokens created through the plane's admin API, and helpers to upload DAGs,
trigger runs and wait for their outcome."""
import http.client
import http.server
import json
import os
import threading
import time

import harness
import planefix

TERMINAL = ("success", "failed")


class WorkerCase(planefix.PlaneCase):
    def setUp(self):
        super().setUp()
        self.bundle = os.path.join(self.tmp, "bundle")
        os.makedirs(self.bundle, exist_ok=True)
        self.nworkers = 0

    def token_file(self, value, name="agent.token"):
        return self.write(name, value + "\n", mode=0o600)

    def xcom_yaml(self):
        """The lines of the worker's xcom: section; a test of another store overrides it."""
        return f"  store: file://{self.tmp}/xcom\n"

    def worker_yaml(self, token_path, url=None, slots=4, extra_worker="", extra="",
                    state=None, name="w1"):
        self.nworkers += 1
        state = state or os.path.join(self.tmp, f"state{self.nworkers}")
        self.logdir = os.path.join(self.tmp, "logs")
        return self.write(f"agent{self.nworkers}.yaml", (
            "plane:\n"
            f"  url: {url or self.url}\n"
            f"  token: {{file: {token_path}}}\n"
            "worker:\n"
            f"  name: {name}\n"
            f"  slots: {slots}\n"
            f"  state_dir: {state}\n"
            f"  log_dir: {self.logdir}\n"
            "  poll_wait: 10s\n"
            "  task_defaults:\n"
            "    grace_period: 1s\n"
            + extra_worker +
            "bundles:\n"
            # DAGs are put by hand here (version "v1"), not read by a dag-processor.
            f"  - {{name: main, path: {self.bundle}, versioned: false}}\n"
            "xcom:\n"
            + self.xcom_yaml()
            + extra))

    def start_worker(self, token=None, url=None, slots=4, extra_worker="", extra="", args=(),
                     state=None, env=None, name="w1"):
        if token is None:
            token = self.create_token()["value"]
        self.agent_token_path = self.token_file(token)
        cfg = self.worker_yaml(self.agent_token_path, url, slots, extra_worker, extra, state,
                               name)
        self.worker_cfg = cfg
        w = self.spawn(f"worker{self.nworkers}",
                       [self.bin("remex-worker"), "-c", cfg, "--log-level", "debug", *args],
                       env=env)
        return w

    def wait_registered(self, w, timeout=10):
        w.wait_output("registered as agent", timeout=timeout)

    def put_dag(self, dag):
        st, b = self.req("PUT", f"/api/v1/dags/{dag['dag_id']}",
                         {"bundle": {"name": "main", "version": "v1"},
                          "dag": dict({"fileloc": "dags.yaml"}, **dag)}, self.admin)
        self.assertIn(st, (200, 201), b)

    def trigger(self, dag_id, conf=None):
        body = {} if conf is None else {"conf": conf}
        st, b = self.req("POST", f"/api/v1/admin/dags/{dag_id}/runs", body, self.admin)
        self.assertIn(st, (200, 201), b)
        return b["run_id"]

    def run_info(self, dag_id, run_id):
        st, b = self.req("GET", f"/api/v1/admin/dags/{dag_id}/runs/{run_id}", None, self.admin)
        self.assertEqual(st, 200, b)
        return b

    def wait_run(self, dag_id, run_id, timeout=30, states=TERMINAL):
        def done():
            b = self.run_info(dag_id, run_id)
            return b if b["state"] in states else None
        return harness.wait_for(done, timeout, interval=0.05, what=f"run {run_id} to finish")

    def tis(self, run):
        return {t["task_id"]: t for t in run["task_instances"]}

    def wait_ti(self, dag_id, run_id, task_id, states, timeout=20):
        def ok():
            t = self.tis(self.run_info(dag_id, run_id)).get(task_id)
            return t if t and t["state"] in states else None
        return harness.wait_for(ok, timeout, interval=0.05, what=f"{task_id} in {states}")

    def task_log(self, dag_id, run_id, task_id, attempt=1):
        p = os.path.join(self.logdir, f"dag_id={dag_id}", f"run_id={run_id}",
                         f"task_id={task_id}", f"attempt={attempt}.log")
        with open(p) as f:
            return f.read()

    def script(self, name, text):
        return self.write(os.path.join("bundle", name), text, mode=0o755)


class PlaneRelay:
    """A loopback HTTP relay to the plane. Once cancel_reason is set it adds a
    cancel of every running try (with that reason) to each heartbeat reply.
    A subclass may answer requests itself: intercept(method, path) returns the
    (status, JSON bytes) to send instead of relaying, or None to relay."""

    def __init__(self, plane_port):
        tap = self
        self.cancel_reason = None

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self, status, data, headers=(("Content-Type", "application/json"),)):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def relay(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                mine = tap.intercept(self.command, self.path)
                if mine:
                    return self.answer(*mine)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() in ("authorization", "content-type", "accept")}
                c = http.client.HTTPConnection("127.0.0.1", plane_port, timeout=60)
                try:
                    c.request(self.command, self.path, body=body, headers=hdrs)
                    r = c.getresponse()
                    data = tap.reply(self.path, body, r.status, r.read())
                    self.answer(r.status, data, [
                        (k, v) for k, v in r.getheaders()
                        if k.lower() not in ("content-length", "transfer-encoding", "connection")])
                except OSError:  # the worker or the plane went away (test teardown)
                    self.close_connection = True
                finally:
                    c.close()

            do_GET = do_POST = do_PUT = do_DELETE = relay

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def intercept(self, method, path):
        return None

    def reply(self, path, sent, status, data):
        """The plane's reply data as relayed: with the cancels once cancel_reason is set."""
        reason = self.cancel_reason
        if not (reason and status == 200 and path.endswith("/heartbeat")):
            return data
        reply = json.loads(data)
        reply.setdefault("cancel", []).extend(
            {"ti_id": x["ti_id"], "try_number": x["try_number"], "reason": reason}
            for x in json.loads(sent).get("running", []))
        return json.dumps(reply).encode()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def lines(path):
    try:
        with open(path) as f:
            return [ln.strip() for ln in f if ln.strip()]
    except FileNotFoundError:
        return []


def now():
    return time.monotonic()


def dumps(x):
    return json.dumps(x, sort_keys=True)
