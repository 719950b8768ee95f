"""The harness itself: processes are started, found ready, and killed with
their whole group; the TCP proxy forwards, pauses and cuts."""
import os
import socket
import sys
import threading
import time

import harness


class HarnessTest(harness.TestCase):
    def test_spawn_waits_and_kills_group(self):
        port = harness.free_port()
        # A parent that forks a grandchild; both must die with kill().
        script = ("import os, http.server, socketserver, time\n"
                  "pid = os.fork()\n"
                  "if pid == 0:\n"
                  "    time.sleep(600)\n"
                  "    os._exit(0)\n"
                  "print('child', pid, flush=True)\n"
                  f"http.server.HTTPServer(('127.0.0.1', {port}),"
                  " http.server.SimpleHTTPRequestHandler).serve_forever()\n")
        p = self.spawn("srv", [sys.executable, "-c", script], cwd=self.tmp)
        harness.wait_port(port)
        st, _, _ = harness.http("GET", f"http://127.0.0.1:{port}/")
        self.assertEqual(st, 200)
        child = int(p.wait_output("child ").split("child ")[1].split()[0])
        p.kill()
        self.assertFalse(p.alive())
        harness.wait_for(lambda: not os.path.exists(f"/proc/{child}") or
                         open(f"/proc/{child}/stat").read().split()[2] == "Z",
                         timeout=5, what="grandchild to die")

    def test_wait_for_times_out(self):
        with self.assertRaises(AssertionError):
            harness.wait_for(lambda: False, timeout=0.2, what="never")

    def test_proxy_forwards_pauses_and_cuts(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        target = srv.getsockname()[1]

        def echo():
            while True:
                try:
                    c, _ = srv.accept()
                except OSError:
                    return
                threading.Thread(target=lambda s=c: [s.sendall(d) for d in iter(
                    lambda: s.recv(100), b"")], daemon=True).start()
        threading.Thread(target=echo, daemon=True).start()
        px = self.proxy(target)
        c = socket.create_connection(("127.0.0.1", px.port), timeout=2)
        c.sendall(b"ping")
        self.assertEqual(c.recv(10), b"ping")
        px.pause()
        c.sendall(b"held")
        c.settimeout(0.3)
        with self.assertRaises(socket.timeout):
            c.recv(10)
        px.resume()
        c.settimeout(2)
        self.assertEqual(c.recv(10), b"held")
        px.cut()
        time.sleep(0.2)
        self.assertIn(c.recv(10), (b"",))
        c2 = socket.create_connection(("127.0.0.1", px.port), timeout=2)
        c2.settimeout(1)
        self.assertEqual(c2.recv(10), b"")  # refused while cut: closed at once
        srv.close()
