#!/usr/bin/env python3
"""A fake Microsoft Entra ID (Azure AD) token endpoint for the Azure Blob
bearer-token tests, on 127.0.0.1.


Why a fake: no Entra ID endpoint can be reached from the tests and none is
packaged. It follows the published client credentials grant
(POST /TENANT/oauth2/v2.0/token, form-encoded) with a workload-identity
client assertion and checks it as Entra ID does for a federated credential:
grant_type client_credentials, the expected client_id and scope,
client_assertion_type jwt-bearer, and an assertion issued by the trusted
issuer: here the test plays the issuer, so the assertion must be the token
it wrote (CONF "assertion_file", read at each request, compared in constant
time). It answers with an access token shaped like Entra ID's (a JWT with
aud https://storage.azure.com, iss https://sts.windows.net/TENANT/, nbf,
exp): Azurite started with `--oauth basic` checks those claims (not the
signature). A client id listed in "wrong_audience" gets a token for
https://vault.azure.net instead, which Azurite must refuse.

Usage: fake_aad.py [--stdin] CONF.json (CONF: {"tenant", "client_id",
"assertion_file", "wrong_audience": [...]}). Prints "port N".
GET /_stats: tokens issued.
"""
import base64
import hmac
import json
import threading
import time
import urllib.parse

import fakebase

CONF, watch = fakebase.load_conf()
STATS = {"tokens": 0}
LOCK = threading.Lock()


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def access_token(aud):
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "kid": "fake"}
    claims = {"aud": aud, "iss": "https://sts.windows.net/%s/" % CONF["tenant"],
              "iat": now, "nbf": now - 60, "exp": now + 3600, "appid": CONF["client_id"],
              "oid": "00000000-0000-0000-0000-000000000001", "tid": CONF["tenant"]}
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()),
                     b64url(b"not-signed-azurite-basic-does-not-check")])


class H(fakebase.Handler):
    def do_GET(self):
        if self.path == "/_stats":
            with LOCK:
                return self.send(200, STATS)
        return self.send(404, {"error": "not_found"})

    def do_POST(self):
        form = urllib.parse.parse_qs(self.body().decode())
        if self.path != "/%s/oauth2/v2.0/token" % CONF["tenant"]:
            return self.send(400, {"error": "invalid_request",
                                   "error_description": "AADSTS90002: Tenant not found."})
        one = lambda k: (form.get(k) or [""])[0]  # noqa: E731
        if one("grant_type") != "client_credentials":
            return self.send(400, {"error": "unsupported_grant_type"})
        if one("scope") != "https://storage.azure.com/.default":
            return self.send(400, {"error": "invalid_scope"})
        client = one("client_id")
        if client != CONF["client_id"] and client not in CONF.get("wrong_audience", []):
            return self.send(400, {"error": "unauthorized_client",
                                   "error_description": "AADSTS700016: Application not found."})
        if one("client_assertion_type") != \
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return self.send(400, {"error": "invalid_client"})
        with open(CONF["assertion_file"], "rb") as f:
            want = f.read().strip()
        if not hmac.compare_digest(one("client_assertion").encode(), want):
            return self.send(401, {"error": "invalid_client",
                                   "error_description": "AADSTS700211: No matching federated "
                                                        "identity record found."})
        aud = "https://vault.azure.net" if client in CONF.get("wrong_audience", []) \
            else "https://storage.azure.com"
        with LOCK:
            STATS["tokens"] += 1
        return self.send(200, {"token_type": "Bearer", "expires_in": 3599,
                               "access_token": access_token(aud)})


fakebase.serve(H, watch)
