#!/usr/bin/env python3
"""A fake Microsoft Entra ID token endpoint and Azure Key Vault for the
secrets tests, on 127.0.0.1.


Why a fake: no Azure endpoint can be reached from the tests and Azurite has
no Key Vault. This one follows the published APIs for what remex uses: POST
/TENANT/oauth2/v2.0/token (client_credentials with client_secret, or with a
client_assertion of type jwt-bearer, as workload identity sends it) checks
the tenant, client id, scope and credential (constant-time compare) and
issues a bearer token; GET /secrets/NAME?api-version=7.4 requires a live one
(401 with WWW-Authenticate otherwise) and answers {"value": ...} or 404
{"error": {"code": "SecretNotFound"}}.

Usage: fake_azkv.py [--stdin] CONF.json (CONF: {"tenant", "client_id",
"client_secret", "assertion", "secrets": {NAME: STRING}, "token_ttl"}). Prints
"port N". GET /_stats: tokens issued. POST /_conf merges JSON into CONF (the
tests change token_ttl with it).
"""
import hmac
import json
import secrets as pysecrets
import threading
import time
import urllib.parse

import fakebase

CONF, watch = fakebase.load_conf()
TOKENS = {}
STATS = {"tokens": 0}
LOCK = threading.Lock()


def same(a, b):
    return hmac.compare_digest((a or "").encode(), (b or "").encode())


class H(fakebase.Handler):
    def do_POST(self):
        raw = self.body().decode()
        if self.path == "/_conf":
            with LOCK:
                fakebase.merge_conf(CONF, json.loads(raw))
            return self.send(200, {})
        form = urllib.parse.parse_qs(raw)
        one = lambda k: form.get(k, [None])[0]
        if self.path != "/%s/oauth2/v2.0/token" % CONF["tenant"]:
            return self.send(400, {"error": "invalid_request",
                                   "error_description": "AADSTS90002: Tenant not found."})
        if (one("grant_type") != "client_credentials"
                or one("scope") != "https://vault.azure.net/.default"
                or not same(one("client_id"), CONF["client_id"])):
            return self.send(400, {"error": "invalid_request"})
        if one("client_secret") is not None:
            ok = same(one("client_secret"), CONF.get("client_secret"))
        else:
            ok = (one("client_assertion_type") ==
                  "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                  and same(one("client_assertion"), CONF.get("assertion")))
        if not ok:
            return self.send(401, {"error": "invalid_client",
                                   "error_description": "AADSTS7000215: Invalid client secret "
                                                        "provided."})
        tok = "eyJ0eXAi.fake-" + pysecrets.token_hex(16)
        with LOCK:
            ttl = CONF.get("token_ttl", 3599)
            TOKENS[tok] = time.time() + ttl
            STATS["tokens"] += 1
        return self.send(200, {"token_type": "Bearer", "expires_in": ttl, "access_token": tok})

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/_stats":
            with LOCK:
                return self.send(200, STATS)
        auth = self.headers.get("Authorization", "")
        tok = auth[7:] if auth.startswith("Bearer ") else ""
        with LOCK:
            live = any(same(t, tok) and exp > time.time() for t, exp in TOKENS.items())
        if not live:
            return self.send(401, {"error": {"code": "Unauthorized",
                                             "message": "AKV10000: Request is missing a Bearer "
                                                        "or PoP token."}},
                             [("WWW-Authenticate", 'Bearer authorization="https://login.'
                               'microsoftonline.com/%s", resource="https://vault.azure.net"'
                               % CONF["tenant"])])
        if urllib.parse.parse_qs(u.query).get("api-version") != ["7.4"]:
            return self.send(400, {"error": {"code": "BadParameter", "message": "api-version"}})
        if not u.path.startswith("/secrets/"):
            return self.send(404, {"error": {"code": "NotFound", "message": "no route"}})
        name = u.path[len("/secrets/"):]
        v = CONF.get("secrets", {}).get(name)
        if v is None:
            return self.send(404, {"error": {"code": "SecretNotFound",
                                             "message": "A secret with (name/id) %s was not "
                                                        "found in this key vault." % name}})
        return self.send(200, {"value": v, "id": "https://x.vault.azure.net/secrets/%s/1" % name,
                               "attributes": {"enabled": True}})


fakebase.serve(H, watch)
