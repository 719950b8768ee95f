"""What the worker loads and starts besides its own code: only the libraries
it calls (not the plane's SQLite, libmicrohttpd, libjwt; libgit2 it calls: a
worker fetches the git bundle commits it lacks itself, docs/bundles.md); gnutls
(pulled in by Debian's libcurl through librtmp) must not run its global
init; and the TLS start-up happens only for an https:// plane, where it must still verify: a worker
that does not trust the plane's self-signed certificate is refused
(test_plane_tls runs a DAG with a worker that trusts it through
plane.ca_file)."""
import http.client
import json
import os
import re
import ssl
import subprocess

import harness
import workerfix


class GnutlsInit(harness.TestCase):
    def test_links_only_the_libraries_it_calls(self):
        exe = self.bin("remex-worker")
        dyn = subprocess.run(["readelf", "-d", exe], capture_output=True, text=True,
                             timeout=30).stdout
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", dyn)
        self.assertTrue(any(n.startswith("libcurl") for n in needed), needed)
        for lib in ("libsqlite3", "libmicrohttpd", "libjwt"):
            self.assertFalse([n for n in needed if n.startswith(lib)], needed)

    def test_gnutls_constructor_sees_the_workers_skip(self):
        exe = self.bin("remex-worker")
        ldd = subprocess.run(["ldd", exe], capture_output=True, text=True, timeout=30).stdout
        if "libgnutls" not in ldd:
            self.skipTest("this libcurl does not pull in libgnutls")
        p = subprocess.run([exe, "--version"], env=dict(os.environ, LD_DEBUG="bindings"),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        binds = [ln for ln in p.stderr.splitlines() if "`_gnutls_global_init_skip'" in ln]
        self.assertTrue(binds, "gnutls's constructor looked up no _gnutls_global_init_skip")
        for ln in binds:
            self.assertRegex(ln, r"binding file \S*libgnutls\S* \[0\] to \S*remex-worker \[0\]")


class HttpsPlane(workerfix.WorkerCase):
    def setUp(self):
        super().setUp()
        self.cert = os.path.join(self.tmp, "tls.crt")
        key = os.path.join(self.tmp, "tls.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", self.cert,
                        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True,
                       timeout=60)
        self.ctx = ssl.create_default_context(cafile=self.cert)
        self.start_plane(tls={"cert": self.cert, "key": key})
        self.url = self.url.replace("http://", "https://")

    def req(self, method, path, body=None, token=None, raw=False):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=20)
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            hdrs["Authorization"] = "Bearer " + token
        c.request(method, path, json.dumps(body) if body is not None else None, hdrs)
        r = c.getresponse()
        data = r.read()
        c.close()
        if raw:
            return r.status, data
        return r.status, (json.loads(data) if data else None)

    def https_worker(self, ca_file):
        tok = self.token_file(self.create_token()["value"])
        cfg = self.worker_yaml(tok, url=self.url)
        if ca_file:
            with open(cfg) as f:
                text = f.read().replace("plane:\n", f"plane:\n  ca_file: {ca_file}\n", 1)
            with open(cfg, "w") as f:
                f.write(text)
        return self.spawn(f"worker{self.nworkers}",
                          [self.bin("remex-worker"), "-c", cfg, "--log-level", "debug"])

    def test_untrusted_certificate_refused(self):
        w = self.https_worker(None)
        out = w.wait_output("certificate", timeout=20)
        self.assertNotIn("registered as agent", out)
        self.assertTrue(re.search(r"(?i)ssl|tls", out), out[-2000:])
