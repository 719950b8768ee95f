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

Token leases, as Vault keeps them: a token issued by a login lives for its
lease ("lease" seconds, renewable unless "renewable": false) and never past
"max_ttl" seconds after the login; POST /v1/auth/token/renew-self extends it
by the lease again (capped at max_ttl; 400 "lease is not renewable" for a
token that is not), GET /v1/auth/token/lookup-self reports data.ttl and
data.renewable. An expired token is refused with 403 like any unknown one.
The configured "tokens" never expire unless "token_ttl" is set.

Usage: fake_vault.py [--stdin] SECRETS.json   (SECRETS: {"secret": {PATH: {...}},
"kv": {PATH: {...}}, "tokens": [...], "token_ttl", "token_renewable",
"approle": {"role_id", "secret_id", "lease", "renewable", "max_ttl"},
"kubernetes": {"role", "jwt", "lease", "renewable", "max_ttl"}, "namespace": NAME}).
Prints "port N" once listening. Test hooks (no auth): GET /_hits (requests
per path and the headers last seen), POST /_revoke (every token becomes
invalid), POST /_conf (merges JSON into SECRETS; {"add_token": {"token", "ttl",
"renewable"}} issues a token). With --stdin it exits when stdin closes.
"""
import hmac
import json
import threading
import time

import fakebase

CONF, watch = fakebase.load_conf()
# token -> {"exp": epoch seconds or None (never), "lease", "renewable", "max": epoch or None}
TOKENS = {}


def issue(tok, lease, renewable, max_ttl):
    now = time.time()
    TOKENS[tok] = {"exp": now + lease if lease else None, "lease": lease,
                   "renewable": renewable, "max": now + max_ttl if max_ttl else None}


for _t in CONF.get("tokens", []):
    issue(_t, CONF.get("token_ttl", 0), CONF.get("token_renewable", True), 0)
HITS = {}
LAST = {}
LOCK = threading.Lock()
COUNTER = [0]


def find_token(tok):
    """The live token's record, else None; every candidate compared in constant time."""
    found = None
    now = time.time()
    for t, rec in TOKENS.items():
        if hmac.compare_digest(t.encode(), (tok or "").encode()) and (
                rec["exp"] is None or rec["exp"] > now):
            found = (t, rec)
    return found


def token_ok(tok):
    with LOCK:
        return find_token(tok) is not None


class H(fakebase.Handler):
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
        if p == "/v1/auth/token/lookup-self":
            with LOCK:
                t, rec = find_token(self.headers.get("X-Vault-Token"))
                ttl = 0 if rec["exp"] is None else max(0, int(rec["exp"] - time.time()))
                return self.send(200, {"data": {"ttl": ttl, "renewable": rec["renewable"],
                                                "policies": ["remex"]}})
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
            return self.send_raw(200, b'{"data": {"data": "not an object"', None)
        return self.send(404, {"errors": []})

    def do_POST(self):
        raw = self.body()
        if self.path == "/_conf":  # test hook: merge into CONF; add_token issues a token
            req = json.loads(raw)
            with LOCK:
                add = req.pop("add_token", None)
                if add:
                    issue(add["token"], add.get("ttl", 0), add.get("renewable", True), 0)
                fakebase.merge_conf(CONF, req)
            return self.send(200, {})
        if self.path == "/_revoke":
            with LOCK:
                TOKENS.clear()
            return self.send(200, {})
        self.record()
        if self.path == "/v1/auth/token/renew-self":
            with LOCK:
                found = find_token(self.headers.get("X-Vault-Token"))
                if found is None:
                    return self.send(403, {"errors": ["permission denied"]})
                t, rec = found
                if not rec["renewable"]:
                    return self.send(400, {"errors": ["lease is not renewable"]})
                now = time.time()
                exp = now + rec["lease"] if rec["lease"] else None
                if rec["max"] is not None and (exp is None or exp > rec["max"]):
                    exp = rec["max"]
                rec["exp"] = exp
                left = 0 if exp is None else int(exp - now)
            return self.send(200, {"auth": {"client_token": t, "policies": ["remex"],
                                            "lease_duration": left, "renewable": True}})
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
                issue(tok, kc.get("lease", 3600), kc.get("renewable", True), kc.get("max_ttl", 0))
            return self.send(200, {"auth": {"client_token": tok, "policies": ["remex"],
                                            "lease_duration": kc.get("lease", 3600),
                                            "renewable": kc.get("renewable", True)}})
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
                issue(tok, ar.get("lease", 3600), ar.get("renewable", True), ar.get("max_ttl", 0))
            return self.send(200, {"auth": {"client_token": tok, "accessor": "a",
                                            "policies": ["remex"],
                                            "lease_duration": ar.get("lease", 3600),
                                            "renewable": ar.get("renewable", True)}})
        return self.send(405, {"errors": []})


fakebase.serve(H, watch)
