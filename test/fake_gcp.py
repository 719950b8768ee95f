#!/usr/bin/env python3
"""A fake Google OAuth token endpoint, Cloud Storage JSON API and Secret
Manager for the GCP tests, on 127.0.0.1.


Why a fake: no Google endpoint can be reached from the tests and no emulator
of these services is packaged here (fake-gcs-server is not on Debian or npm).
This one follows the published APIs for what remex uses and checks auth as
Google does: POST /token takes a jwt-bearer assertion and verifies its RS256
signature against the test service account's public key (Python's
`cryptography`, independently of remex), its audience (this token URI),
issuer, scope and expiry, then issues an access token; every storage and
secret call must carry a live one as "Authorization: Bearer", else 401.

Storage: POST /upload/storage/v1/b/B/o?uploadType=media&name=N (replies with
the object resource: bucket, name, size, md5Hash and crc32c, both base64 as
GCS gives them), GET /storage/v1/b/B/o/N?alt=media (the bytes, with
"x-goog-hash: crc32c=...,md5=..." as GCS sends it), GET without alt=media
(the object resource), DELETE /storage/v1/b/B/o/N, GET
/storage/v1/b/B/o?prefix=P&maxResults=N (objects.list). With "corrupt":
{"md5_upload": true} or {"md5_download": true} in CONF (POST /_conf), the
upload reply's md5Hash or the download's x-goog-hash md5 is that of other
bytes, so a test can prove remex checks them. Secret Manager:
GET /v1/projects/P/secrets/S/versions/latest:access -> {"payload": {"data":
base64}}. Errors: {"error": {"code", "message", "status"}}.

Metadata server (GCE, GKE Workload Identity): GET
/computeMetadata/v1/instance/service-accounts/default/token answers only with
"Metadata-Flavor: Google" and without X-Forwarded-For (403 otherwise, as the
real server does), checks ?scopes= against "metadata": {"scopes": [...]}
and issues an access token valid for "metadata": {"ttl"} seconds
({"access_token", "expires_in", "token_type"}); without "metadata" in CONF
the path is 404 (no metadata server). POST /_conf merges JSON into CONF
(the tests change TTLs with it).

Usage: fake_gcp.py [--stdin] CONF.json (CONF: {"key_pem": PATH, "email",
"buckets": [...], "project", "secrets": {NAME: STRING}, "token_ttl"}).
Prints "port N". GET /_stats: tokens issued (JWT and metadata), metadata refusals,
requests per path. GET /_objects: {bucket: {name: base64 content}}.
"""
import base64
import hashlib
import hmac
import json
import secrets as pysecrets
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

import fakebase

CONF, watch = fakebase.load_conf()
with open(CONF["key_pem"], "rb") as f:
    PUB = serialization.load_pem_private_key(f.read(), password=None).public_key()
TOKENS = {}
OBJECTS = {b: {} for b in CONF.get("buckets", [])}
STATS = {"tokens": 0, "metadata_tokens": 0, "metadata_refused": 0, "paths": {}}
METADATA_TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token"
LOCK = threading.Lock()


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC32C = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), as GCS computes it; no Python module for it is packaged here."""
    c = 0xFFFFFFFF
    t = CRC32C
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def gcs_hashes(data, corrupt=False):
    """(md5Hash, crc32c) of data as GCS states them: base64 of the MD5 digest and of the
    big-endian CRC-32C. corrupt: the MD5 of other bytes."""
    md5 = hashlib.md5(data + (b"corrupt" if corrupt else b"")).digest()
    return (base64.b64encode(md5).decode(),
            base64.b64encode(crc32c(data).to_bytes(4, "big")).decode())


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class H(fakebase.Handler):
    def send(self, status, obj=None, raw=None, headers=()):
        """obj as JSON, or raw bytes as application/octet-stream."""
        if raw is None:
            return super().send(status, obj, headers)
        return self.send_raw(status, raw, "application/octet-stream", headers)

    def error(self, code, status, message):
        return self.send(code, {"error": {"code": code, "message": message, "status": status}})

    def authorized(self):
        auth = self.headers.get("Authorization", "")
        tok = auth[7:] if auth.startswith("Bearer ") else ""
        with LOCK:
            for t, exp in TOKENS.items():
                if hmac.compare_digest(t.encode(), tok.encode()) and exp > time.time():
                    return True
        return False

    def token(self, raw):
        form = urllib.parse.parse_qs(raw.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return self.send(400, {"error": "unsupported_grant_type"})
        try:
            h, c, sig = form["assertion"][0].split(".")
            PUB.verify(b64url_decode(sig), (h + "." + c).encode(), padding.PKCS1v15(),
                       hashes.SHA256())
            header, claims = json.loads(b64url_decode(h)), json.loads(b64url_decode(c))
        except Exception:
            return self.send(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        aud = "http://127.0.0.1:%d/token" % self.server.server_address[1]
        now = time.time()
        if (header.get("alg") != "RS256" or claims.get("aud") != aud
                or claims.get("iss") != CONF["email"] or not claims.get("scope")
                or not claims.get("iat", 0) - 300 <= now <= claims.get("exp", 0)):
            return self.send(400, {"error": "invalid_grant", "error_description": "bad claims"})
        tok = "ya29.fake-" + pysecrets.token_hex(16)
        ttl = CONF.get("token_ttl", 3600)
        with LOCK:
            TOKENS[tok] = now + ttl
            STATS["tokens"] += 1
        return self.send(200, {"access_token": tok, "expires_in": ttl, "token_type": "Bearer"})

    def corrupt(self, what):
        with LOCK:
            return bool(what and CONF.get("corrupt", {}).get(what))

    def resource(self, bucket, name, data, corrupt_what):
        """The object resource (storage#object) with GCS's hashes."""
        md5, crc = gcs_hashes(data, self.corrupt(corrupt_what))
        return {"kind": "storage#object", "bucket": bucket, "name": name,
                "size": str(len(data)), "md5Hash": md5, "crc32c": crc}

    def metadata_token(self, q):
        md = CONF.get("metadata")
        if md is None:
            return self.send(404, raw=b"Not Found")
        if self.headers.get("Metadata-Flavor") != "Google" or "X-Forwarded-For" in self.headers:
            with LOCK:
                STATS["metadata_refused"] += 1
            return self.send(403, raw=b"Missing Metadata-Flavor:Google header.")
        for scope in ",".join(q.get("scopes", [])).split(","):
            if scope and scope not in md.get("scopes", []):
                return self.send(400, raw=b"invalid scope")
        tok = "ya29.meta-" + pysecrets.token_hex(16)
        ttl = md.get("ttl", 3599)
        with LOCK:
            TOKENS[tok] = time.time() + ttl
            STATS["metadata_tokens"] += 1
        return self.send(200, {"access_token": tok, "expires_in": ttl, "token_type": "Bearer"})

    def route(self, method):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        raw = self.body()
        if method == "GET" and u.path == "/_stats":
            with LOCK:
                return self.send(200, STATS)
        if method == "GET" and u.path == "/_objects":
            with LOCK:
                return self.send(200, {b: {n: base64.b64encode(v).decode() for n, v in o.items()}
                                       for b, o in OBJECTS.items()})
        if method == "POST" and u.path == "/token":
            return self.token(raw)
        if method == "GET" and u.path == METADATA_TOKEN:
            return self.metadata_token(q)
        if method == "POST" and u.path == "/_conf":
            with LOCK:
                fakebase.merge_conf(CONF, json.loads(raw))
            return self.send(200, {})
        with LOCK:
            STATS["paths"][u.path] = STATS["paths"].get(u.path, 0) + 1
        if not self.authorized():
            return self.error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                                                      "credentials.")
        parts = u.path.split("/")
        if method == "POST" and u.path.startswith("/upload/storage/v1/b/"):
            b = parts[5]
            if b not in OBJECTS:
                return self.error(404, "NOT_FOUND", "The specified bucket does not exist.")
            OBJECTS[b][q["name"][0]] = raw
            return self.send(200, self.resource(b, q["name"][0], raw, "md5_upload"))
        if method == "GET" and len(parts) == 6 and parts[5] == "o" and parts[3] == "b":
            # objects.list: names in lexicographic order, "items" absent when none
            objs = OBJECTS.get(parts[4])
            if objs is None:
                return self.error(404, "NOT_FOUND", "The specified bucket does not exist.")
            pre = q.get("prefix", [""])[0]
            names = sorted(n for n in objs if n.startswith(pre))
            names = names[:int(q.get("maxResults", ["1000"])[0])]
            out = {"kind": "storage#objects"}
            if names:
                out["items"] = [{"bucket": parts[4], "name": n, "size": str(len(objs[n]))}
                                for n in names]
            return self.send(200, out)
        if u.path.startswith("/storage/v1/b/") and len(parts) >= 7:
            b, name = parts[4], urllib.parse.unquote(parts[6])
            objs = OBJECTS.get(b)
            if objs is None or name not in objs:
                return self.error(404, "NOT_FOUND", "No such object: %s/%s" % (b, name))
            if method == "DELETE":
                del objs[name]
                return self.send(204, raw=b"")
            if q.get("alt") != ["media"]:
                return self.send(200, self.resource(b, name, objs[name], None))
            md5, crc = gcs_hashes(objs[name], self.corrupt("md5_download"))
            return self.send(200, raw=objs[name],
                             headers=[("x-goog-hash", "crc32c=%s,md5=%s" % (crc, md5))])
        if method == "GET" and u.path.startswith("/v1/projects/"):
            # /v1/projects/P/secrets/S/versions/latest:access
            if len(parts) != 8 or parts[4] != "secrets" or parts[7] != "latest:access":
                return self.error(400, "INVALID_ARGUMENT", "bad path")
            if parts[3] != CONF.get("project"):
                return self.error(403, "PERMISSION_DENIED", "Permission denied on project")
            v = CONF.get("secrets", {}).get(parts[5])
            if v is None:
                return self.error(404, "NOT_FOUND", "Secret [%s] not found or has no versions."
                                  % parts[5])
            return self.send(200, {"name": self.path, "payload": {
                "data": base64.b64encode(v.encode()).decode()}})
        return self.error(404, "NOT_FOUND", "no route")

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")


fakebase.serve(H, watch)
