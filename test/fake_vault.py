#!/usr/bin/env python3
"""A fake HashiCorp Vault for the secrets tests, on 127.0.0.1.

Why a fake: Vault itself is not packaged for Debian nor on npm, and no real
server can be had here. This one follows Vault's published HTTP API for what
remex uses: KV v2 reads (GET /v1/secret/data/PATH -> {"data": {"data": {...},
"metadata": {...}}}), KV v1 reads (GET /v1/kv/PATH -> {"data": {...}}), AppRole
login (POST /v1/auth/approle/login -> {"auth": {"client_token", "lease_duration",
"renewable"}}), Kubernetes login (POST /v1/auth/kubernetes/login with role and
the service account JWT), 404 {"errors": []} for a missing secret, and 403 {"errors":
["permission denied"]} for a request without a valid X-Vault-Token header, as
Vault checks it (tokens compared in constant time). With a namespace set, the
X-Vault-Namespace header must carry it.

Usage: fake_vault.py [--stdin] SECRETS.json   (SECRETS: {"secret": {PATH: {...}},
"kv": {PATH: {...}}, "tokens": [...], "approle": {"role_id", "secret_id",
"lease"}, "kubernetes": {"role", "jwt"}, "namespace": NAME}). Prints "port N" once listening. Test hooks (no
auth): GET /_hits (requests per path and the headers last seen), POST /_revoke
(every token becomes invalid). With --stdin it exits when stdin closes.
"""
import hmac
import http.server
import json
import os
import sys
import threading

args = sys.argv[1:]
watch = args and args[0] == "--stdin"
if watch:
    args = args[1:]
with open(args[0]) as f:
    CONF = json.load(f)
TOKENS = list(CONF.get("tokens", []))
HITS = {}
LAST = {}
LOCK = threading.Lock()
COUNTER = [0]


def token_ok(tok):
    ok = False
    for t in TOKENS:  # every candidate compared, in constant time each
        ok |= hmac.compare_digest(t.encode(), (tok or "").encode())
    return ok


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def record(self):
        with LOCK:
            HITS[self.path] = HITS.get(self.path, 0) + 1
            LAST["token_header"] = "X-Vault-Token" in self.headers
            LAST["authorization"] = self.headers.get("Authorization", "")
            LAST["namespace"] = self.headers.get("X-Vault-Namespace", "")

    def do_GET(self):
        if self.path == "/_hits":
            with LOCK:
                return self.send(200, {"hits": HITS, "last": LAST})
        self.record()
        ns = CONF.get("namespace")
        if ns and self.headers.get("X-Vault-Namespace") != ns:
            return self.send(403, {"errors": ["permission denied"]})
        if not token_ok(self.headers.get("X-Vault-Token")):
            return self.send(403, {"errors": ["permission denied"]})
        p = self.path
        if p.startswith("/v1/secret/data/"):
            d = CONF.get("secret", {}).get(p[len("/v1/secret/data/"):])
            if d is None:
                return self.send(404, {"errors": []})
            return self.send(200, {"request_id": "r", "lease_duration": 0, "data": {
                "data": d, "metadata": {"version": 3, "destroyed": False}}})
        if p.startswith("/v1/kv/"):
            d = CONF.get("kv", {}).get(p[len("/v1/kv/"):])
            if d is None:
                return self.send(404, {"errors": []})
            return self.send(200, {"request_id": "r", "lease_duration": 2764800, "data": d})
        if p.startswith("/v1/broken/data/"):
            body = b'{"data": {"data": "not an object"'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.wfile.write(body)
        return self.send(404, {"errors": []})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n) if n else b""
        if self.path == "/_revoke":
            TOKENS.clear()
            return self.send(200, {})
        self.record()
        if self.path == "/v1/auth/kubernetes/login":
            kc = CONF.get("kubernetes", {})
            try:
                b = json.loads(raw)
            except ValueError:
                return self.send(400, {"errors": ["failed to parse JSON input"]})
            if b.get("role") != kc.get("role"):
                return self.send(400, {"errors": ["invalid role name"]})
            if not hmac.compare_digest(str(b.get("jwt", "")).encode(), kc.get("jwt", "").encode()):
                return self.send(403, {"errors": ["permission denied"]})
            with LOCK:
                COUNTER[0] += 1
                tok = "hvs.k8s-%d" % COUNTER[0]
                TOKENS.append(tok)
            return self.send(200, {"auth": {"client_token": tok, "policies": ["remex"],
                                            "lease_duration": 3600, "renewable": True}})
        if self.path == "/v1/auth/approle/login":
            ar = CONF.get("approle", {})
            try:
                b = json.loads(raw)
            except ValueError:
                return self.send(400, {"errors": ["failed to parse JSON input"]})
            if not (hmac.compare_digest(str(b.get("role_id", "")).encode(),
                                        ar.get("role_id", "").encode()) and
                    hmac.compare_digest(str(b.get("secret_id", "")).encode(),
                                        ar.get("secret_id", "").encode())):
                return self.send(400, {"errors": ["invalid role or secret ID"]})
            with LOCK:
                COUNTER[0] += 1
                tok = "hvs.approle-%d" % COUNTER[0]
                TOKENS.append(tok)
            return self.send(200, {"auth": {"client_token": tok, "accessor": "a",
                                            "policies": ["remex"],
                                            "lease_duration": ar.get("lease", 3600),
                                            "renewable": True}})
        return self.send(405, {"errors": []})


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
sys.stdout.write("port %d\n" % srv.server_address[1])
sys.stdout.flush()
if watch:
    def stdin_watch():
        sys.stdin.read()
        os._exit(0)
    threading.Thread(target=stdin_watch, daemon=True).start()
srv.serve_forever()
