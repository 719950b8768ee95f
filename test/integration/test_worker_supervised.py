"""remex-worker under a supervisor: readiness and drain over the socket named
by REMEX_SUPERVISOR_FD (lib/supervise.c, docs/ipc.md frames). The test plays
the supervisor's side of the socket itself."""
import json
import os
import socket
import struct
import subprocess

import harness
import workerfix


def read_frame(sock, timeout):
    """The next frame other than "capacity" (which a worker sends whenever its free slots
    change, at most once a second; test_agent checks its content)."""
    while True:
        msg = read_any_frame(sock, timeout)
        if msg.get("type") != "capacity":
            return msg


def read_any_frame(sock, timeout):
    sock.settimeout(timeout * harness.SLOW)
    hdr = b""
    while len(hdr) < 4:
        chunk = sock.recv(4 - len(hdr))
        if not chunk:
            raise EOFError("supervisor socket closed")
        hdr += chunk
    n = struct.unpack(">I", hdr)[0]
    body = b""
    while len(body) < n:
        body += sock.recv(n - len(body))
    return json.loads(body)


def write_frame(sock, obj):
    data = json.dumps(obj).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


class Supervised(workerfix.WorkerCase):
    def start_supervised(self):
        self.start_plane()
        tok = self.create_token()["value"]
        cfg = self.worker_yaml(self.token_file(tok))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(ours.close)
        env = dict(os.environ, REMEX_SUPERVISOR_FD=str(theirs.fileno()))
        log = open(os.path.join(self.tmp, "worker.log"), "wb")
        self.addCleanup(log.close)
        p = subprocess.Popen([self.bin("remex-worker"), "-c", cfg], env=env,
                             pass_fds=(theirs.fileno(),), stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        theirs.close()
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        return p, ours

    def test_ready_after_registration_then_drain_request(self):
        p, sup = self.start_supervised()
        msg = read_frame(sup, 20)
        self.assertEqual(msg["type"], "ready")
        self.assertEqual(msg["role"], "worker")
        self.assertEqual(msg["pid"], p.pid)
        # Ready means registered: the plane lists the agent.
        st, b = self.req("GET", "/api/v1/admin/agents", None, self.admin)
        self.assertEqual(st, 200, b)
        self.assertEqual(len(b["agents"]), 1)
        write_frame(sup, {"type": "drain"})
        msg = read_frame(sup, 10)
        self.assertEqual(msg["type"], "draining")
        self.assertEqual(msg["reason"], "supervisor request")
        self.assertEqual(p.wait(timeout=20 * harness.SLOW), 0)

    def test_supervisor_gone_drains(self):
        p, sup = self.start_supervised()
        self.assertEqual(read_frame(sup, 20)["type"], "ready")
        sup.close()
        self.assertEqual(p.wait(timeout=20 * harness.SLOW), 0)
        with open(os.path.join(self.tmp, "worker.log")) as f:
            log = f.read()
        self.assertIn("supervisor closed its socket", log)
        self.assertIn("supervisor gone: draining", log)

    def test_task_processes_never_see_the_socket(self):
        p, sup = self.start_supervised()
        self.assertEqual(read_frame(sup, 20)["type"], "ready")
        out = os.path.join(self.tmp, "env.txt")
        self.put_dag({"dag_id": "envcheck", "tasks": [
            {"task_id": "t", "shell": f"env > {out}; ls -l /proc/self/fd >> {out}"}]})
        run = self.trigger("envcheck")
        self.assertEqual(self.wait_run("envcheck", run)["state"], "success")
        with open(out) as f:
            text = f.read()
        self.assertNotIn("REMEX_SUPERVISOR_FD", text)
        self.assertNotIn("socket:", text)

    def test_bad_descriptor_is_a_configuration_error(self):
        self.start_plane()
        cfg = self.worker_yaml(self.token_file("rmx_1_x"))
        w = self.spawn("worker", [self.bin("remex-worker"), "-c", cfg],
                       env={"REMEX_SUPERVISOR_FD": "notanumber"})
        self.assertEqual(w.wait(timeout=10), 100)
        self.assertIn("REMEX_SUPERVISOR_FD", w.output())
