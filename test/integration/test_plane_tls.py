"""remex-plane over TLS (tls.cert + tls.key): a self-signed certificate made
with the openssl CLI in the test's temp dir. A client verifying with that
certificate as its CA is served; one using the system store is refused at
verification; a long poll over TLS wakes at once; a remex-worker with
plane.ca_file runs a DAG against it."""
import http.client
import json
import os
import shutil
import ssl
import subprocess
import threading
import time
import unittest

from planefix import PlaneCase

import harness
from schedfix import Agent, SchedCase, dag
from workerfix import WorkerCase


class TlsMixin:
    def make_cert(self):
        self.cert = os.path.join(self.tmp, "plane.crt")
        self.key = os.path.join(self.tmp, "plane.key")
        p = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.ctx = ssl.create_default_context(cafile=self.cert)

    def start_tls_plane(self, **cfg):
        self.make_cert()
        self.start_plane(tls={"cert": self.cert, "key": self.key}, **cfg)
        self.assertIn("(TLS)", self.plane.output())
        self.url = f"https://127.0.0.1:{self.port}"

    def req(self, method, path, body=None, token=None, raw=False, ctx=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                        context=ctx or self.ctx)
        hdrs = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if token:
            hdrs["Authorization"] = "Bearer " + token
        try:
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            out = r.read()
        finally:
            c.close()
        if raw:
            return r.status, out
        return r.status, (json.loads(out) if out else None)


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl CLI")
class TlsPlaneTest(TlsMixin, SchedCase):
    def setUp(self):
        super().setUp()
        self.start_tls_plane()
        self.tok = self.create_token()["value"]

    def test_verified_client_served_unverified_refused(self):
        self.assertEqual(self.req("GET", "/healthz"), (200, {"status": "ok"}))
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.req("GET", "/healthz", ctx=ssl.create_default_context())
        # Plain HTTP on the TLS port gets no HTTP reply.
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        with self.assertRaises((http.client.HTTPException, OSError)):
            c.request("GET", "/healthz")
            c.getresponse().read()
        c.close()
        self.assertEqual(self.req("GET", "/healthz")[0], 200)  # still serving

    def handshake(self, version, ciphers=None):
        """Negotiated (version, cipher) of a handshake limited to version, or
        the ssl.SSLError the plane's refusal raised. SECLEVEL=0 lets this
        client offer what OpenSSL 3 would refuse by itself: the refusal seen
        is the plane's."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.cert)
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_ciphers((ciphers or "ALL") + ":@SECLEVEL=0")
        import socket
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as t:
                return t.version(), t.cipher()[0]

    def test_only_tls12_13_with_forward_secret_aead(self):
        v = ssl.TLSVersion
        self.assertEqual(self.handshake(v.TLSv1_3)[0], "TLSv1.3")
        self.assertEqual(self.handshake(v.TLSv1_2), ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"))
        self.assertEqual(self.handshake(v.TLSv1_2, "ECDHE-ECDSA-CHACHA20-POLY1305")[0],
                         "TLSv1.2")
        for version, ciphers in [(v.TLSv1, None), (v.TLSv1_1, None),
                                 (v.TLSv1_2, "ECDHE-ECDSA-AES128-SHA"),
                                 (v.TLSv1_2, "ECDHE-ECDSA-AES256-SHA384"),
                                 (v.TLSv1_2, "AES128-GCM-SHA256")]:
            with self.assertRaises(ssl.SSLError, msg=(version, ciphers)):
                self.handshake(version, ciphers)
        self.assertEqual(self.req("GET", "/healthz")[0], 200)

    def test_long_poll_over_tls_wakes_at_once(self):
        self.push_ok(dag("tl", [{"task_id": "t"}]))
        ag = Agent(self, "w1")
        got = {}

        def poll():
            got["a"] = ag.work(wait=20)
            got["t"] = time.monotonic()

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.5 * harness.SLOW)
        t1 = time.monotonic()
        self.trigger("tl")
        th.join(25)
        self.assertEqual([a["task_id"] for a in got["a"]], ["t"])
        self.assertLess(got["t"] - t1, 1.0 * harness.SLOW)
        st, b = ag.start(got["a"][0])
        self.assertEqual((st, b), (200, {"state": "running"}))


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl CLI")
class TlsWorkerTest(TlsMixin, WorkerCase):
    def test_worker_with_ca_file(self):
        self.start_tls_plane()
        out = os.path.join(self.tmp, "ran.txt")
        self.put_dag({"dag_id": "tw", "tasks": [
            {"task_id": "a", "command": ["sh", "-c", f"echo a >> {out}"]},
            {"task_id": "b", "command": ["sh", "-c", f"echo b >> {out}"], "upstream": ["a"]}]})
        tok = self.create_token()["value"]
        cfg = self.worker_yaml(self.token_file(tok))
        with open(cfg) as f:
            text = f.read()
        line = f"  url: {self.url}\n"
        self.assertIn(line, text)
        with open(cfg, "w") as f:
            f.write(text.replace(line, line + f"  ca_file: {self.cert}\n"))
        w = self.spawn("worker-tls", [self.bin("remex-worker"), "-c", cfg, "--log-level", "debug"])
        self.wait_registered(w)
        run = self.wait_run("tw", self.trigger("tw"))
        self.assertEqual(run["state"], "success", run)
        with open(out) as f:
            self.assertEqual(f.read().split(), ["a", "b"])


class PlaneConfigCheckTest(PlaneCase):
    """--check refuses what start would refuse, and start refuses it with
    exit 100 before creating any file."""

    def test_check_catches_what_start_refuses(self):
        base = {"db_path": os.path.join(self.tmp, "var/plane.db"),
                "admin_token_file": os.path.join(self.tmp, "admin.token"),
                "signing_key_file": os.path.join(self.tmp, "signing.key")}
        for extra, key in [({"listen": "localhost:8080"}, "listen"),
                           ({"listen": "127.0.0.1"}, "listen"),
                           ({"tls": {"cert": "/x.crt"}}, "tls.key"),
                           ({"tls": {"key": "/x.key"}}, "tls.cert"),
                           ({"tls": {"priorities": "NORMAL:+BOGUS"}}, "tls.priorities"),
                           ({"tls": {"cert": os.path.join(self.tmp, "no.crt"),
                                     "key": os.path.join(self.tmp, "no.key")}}, "tls.cert")]:
            conf = dict(base, listen="127.0.0.1:0")
            conf.update(extra)
            lines = []
            for k, v in conf.items():
                if isinstance(v, dict):
                    lines.append(f"{k}:")
                    lines.extend(f"  {k2}: {json.dumps(v2)}" for k2, v2 in v.items())
                else:
                    lines.append(f"{k}: {json.dumps(v)}")
            path = self.write("bad.yaml", "\n".join(lines) + "\n")
            for args in (["--check"], []):
                p = subprocess.run([self.bin("remex-plane"), "-c", path] + args,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
                self.assertEqual(p.returncode, 100, (extra, args, p.stderr))
                self.assertIn(f"{key}: ", p.stderr.decode(), extra)
                self.assertNotIn(b"configuration OK", p.stdout)
            for k in ("admin_token_file", "signing_key_file"):
                self.assertFalse(os.path.exists(base[k]), (extra, k))
        path = self.write("good.yaml", f"listen: 127.0.0.1:0\ndb_path: {base['db_path']}\n")
        p = subprocess.run([self.bin("remex-plane"), "-c", path, "--check"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, b"configuration OK"), p.stderr)


if __name__ == "__main__":
    unittest.main()
