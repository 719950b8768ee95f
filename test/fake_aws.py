#!/usr/bin/env python3
"""A fake AWS Secrets Manager and SSM Parameter Store for the secrets tests,
on 127.0.0.1.


Why a fake: no AWS endpoint can be reached from the tests and no emulator of
these services is packaged here. This one follows the services' published
JSON 1.1 API for what remex uses (POST / with X-Amz-Target
secretsmanager.GetSecretValue -> {"SecretString"} or AmazonSSM.GetParameter ->
{"Parameter": {"Value"}}; 400 ResourceNotFoundException / ParameterNotFound)
and verifies every request's Signature Version 4 the way AWS does,
recomputed here with Python's hmac and hashlib (independently of remex's
code): the credential scope (date, region, service), the signed headers
(which must include host and x-amz-date), the payload hash and the
signature, compared in constant time. A bad signature gets 400
InvalidSignatureException, an unknown access key 400
UnrecognizedClientException, as AWS answers.

STS: POST / Action=AssumeRoleWithWebIdentity (unsigned; the web identity token
must match) issues temporary credentials (ASIA... key, secret, session token,
expiration); requests signed with them must carry and sign their
X-Amz-Security-Token.

Instance metadata (IMDSv2, as EC2 answers): PUT /latest/api/token needs
X-aws-ec2-metadata-token-ttl-seconds (1..21600) and returns a session token;
GET /latest/meta-data/iam/security-credentials/[ROLE] needs that token in
X-aws-ec2-metadata-token and answers 401 without it or with an unknown one
(IMDSv1 requests are refused, as on an instance with HttpTokens=required);
the credentials are temporary ones as STS issues ("imds": {"role", "ttl"};
"fail": true makes the credentials path answer 500).
Container credentials (ECS / EKS Pod Identity): GET /container-creds needs
the Authorization header to equal "container": {"token"} (401 otherwise).
Temporary credentials past their Expiration are refused with 400
ExpiredTokenException, as AWS does.

Usage: fake_aws.py [--stdin] CONF.json   (CONF: {"access_key", "secret_key",
"region", "secrets": {NAME: STRING}, "parameters": {NAME: STRING},
"web_identity": {"role_arn", "token", "ttl"}, "imds": {"role", "ttl"},
"container": {"token", "ttl"}}). Prints
"port N" once listening. GET /_hits returns the requests per target and name.
"""
import datetime
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.parse

import fakebase

CONF, watch = fakebase.load_conf()
HITS = {}
LOCK = threading.Lock()
TEMP = {}  # temporary access key -> (secret key, session token, expiry), issued by the fakes
IMDS_TOKENS = {}  # IMDSv2 session token -> expiry (epoch seconds)


def issue(ttl):
    """Temporary credentials valid for ttl seconds, as STS issues them."""
    ak = "ASIA" + os.urandom(8).hex().upper()
    sk, tok = os.urandom(20).hex(), os.urandom(48).hex()
    exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=ttl)
    with LOCK:
        TEMP[ak] = (sk, tok, exp)
    return ak, sk, tok, exp.strftime("%Y-%m-%dT%H:%M:%SZ")


def hit(name):
    with LOCK:
        HITS[name] = HITS.get(name, 0) + 1


def sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def expected_signature(secret_key, method, path, query, headers, signed, body, scope_date, region,
                       service, amz_date):
    canon_headers = "".join("%s:%s\n" % (h, " ".join(headers.get(h, "").split()))
                            for h in signed)
    canon = "\n".join([method, urllib.parse.quote(path, safe="/-_.~"), query, canon_headers,
                       ";".join(signed), hashlib.sha256(body).hexdigest()])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date,
                     "%s/%s/%s/aws4_request" % (scope_date, region, service),
                     hashlib.sha256(canon.encode()).hexdigest()])
    k = sign(("AWS4" + secret_key).encode(), scope_date)
    k = sign(k, region)
    k = sign(k, service)
    k = sign(k, "aws4_request")
    return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()


class H(fakebase.Handler):
    content_type = "application/x-amz-json-1.1"

    def creds_json(self, ttl, imds):
        ak, sk, tok, exp = issue(ttl)
        obj = {"AccessKeyId": ak, "SecretAccessKey": sk, "Token": tok, "Expiration": exp}
        if imds:
            obj.update({"Code": "Success", "Type": "AWS-HMAC",
                        "LastUpdated": datetime.datetime.now(
                            datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
        return self.send(200, obj)

    def do_PUT(self):
        """IMDSv2 session tokens."""
        if self.path != "/latest/api/token" or "imds" not in CONF:
            return self.send_text(404, "Not Found")
        try:
            ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= 21600:
            return self.send_text(400, "Bad Request")
        tok = os.urandom(24).hex()
        with LOCK:
            IMDS_TOKENS[tok] = time.time() + min(ttl, CONF["imds"].get("token_ttl", ttl))
        hit("imds token")
        return self.send_text(200, tok)

    def imds(self):
        tok = self.headers.get("X-aws-ec2-metadata-token", "")
        with LOCK:
            good = [t for t, exp in IMDS_TOKENS.items()
                    if hmac.compare_digest(t.encode(), tok.encode()) and exp > time.time()]
        if not good:
            hit("imds refused")
            return self.send_text(401, "Unauthorized")
        base = "/latest/meta-data/iam/security-credentials/"
        role = CONF["imds"].get("role", "remex-node")
        if self.path == base:
            hit("imds role")
            return self.send_text(200, role)
        if self.path == base + role and CONF["imds"].get("fail"):
            hit("imds failed")
            return self.send_text(500, "Internal Server Error")
        if self.path == base + role:
            hit("imds creds")
            return self.creds_json(CONF["imds"].get("ttl", 3600), True)
        return self.send_text(404, "Not Found")

    def do_GET(self):
        if self.path == "/_hits":
            with LOCK:
                return self.send(200, HITS)
        if self.path.startswith("/latest/") and "imds" in CONF:
            return self.imds()
        if self.path == "/container-creds" and "container" in CONF:
            want = CONF["container"].get("token", "")
            if not hmac.compare_digest(self.headers.get("Authorization", "").encode(),
                                       want.encode()):
                hit("container refused")
                return self.send(401, {"message": "Unauthorized"})
            hit("container")
            return self.creds_json(CONF["container"].get("ttl", 3600), False)
        return self.send(404, {})

    def check_auth(self, body):
        """None when the signature holds, else the error reply (status, object)."""
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return 400, {"__type": "MissingAuthenticationTokenException",
                         "message": "Missing Authentication Token"}
        parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        cred = parts.get("Credential", "").split("/")
        signed = parts.get("SignedHeaders", "").split(";")
        if len(cred) != 5 or cred[4] != "aws4_request":
            return 400, {"__type": "IncompleteSignatureException", "message": "bad credential"}
        with LOCK:
            temp = TEMP.get(cred[0])
        if temp:
            secret = temp[0]
            if not hmac.compare_digest(temp[1].encode(),
                                       self.headers.get("X-Amz-Security-Token", "").encode()):
                return 400, {"__type": "UnrecognizedClientException",
                             "message": "The security token included in the request is invalid."}
            if datetime.datetime.now(datetime.timezone.utc) >= temp[2]:
                return 400, {"__type": "ExpiredTokenException",
                             "message": "The security token included in the request is expired"}
        elif hmac.compare_digest(cred[0].encode(), CONF["access_key"].encode()):
            secret = CONF["secret_key"]
        else:
            return 400, {"__type": "UnrecognizedClientException",
                         "message": "The security token included in the request is invalid."}
        amz_date = self.headers.get("X-Amz-Date", "")
        target = self.headers.get("X-Amz-Target", "")
        service = "ssm" if target.startswith("AmazonSSM.") else "secretsmanager"
        if ("host" not in signed or "x-amz-date" not in signed or cred[2] != CONF["region"]
                or cred[3] != service or cred[1] != amz_date[:8]):
            return 400, {"__type": "IncompleteSignatureException", "message": "bad scope"}
        try:
            t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            return 400, {"__type": "IncompleteSignatureException", "message": "bad date"}
        if abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) > 900:
            return 400, {"__type": "InvalidSignatureException", "message": "Signature expired"}
        headers = {k.lower(): v for k, v in self.headers.items()}
        if temp and "x-amz-security-token" not in signed:
            return 400, {"__type": "IncompleteSignatureException", "message": "token not signed"}
        want = expected_signature(secret, "POST", self.path, "", headers, signed, body, cred[1],
                                  cred[2], cred[3], amz_date)
        if not hmac.compare_digest(want.encode(), parts.get("Signature", "").encode()):
            return 400, {"__type": "InvalidSignatureException",
                         "message": "The request signature we calculated does not match the "
                                    "signature you provided."}
        return None

    def sts(self, body):
        """AssumeRoleWithWebIdentity: unsigned, the web identity token is the credential."""
        form = urllib.parse.parse_qs(body.decode())
        one = lambda k: form.get(k, [""])[0]
        wi = CONF.get("web_identity", {})
        if one("Action") != "AssumeRoleWithWebIdentity" or one("Version") != "2011-06-15":
            return self.send_xml(400, "<ErrorResponse><Error><Code>InvalidAction</Code>"
                                      "</Error></ErrorResponse>")
        if (one("RoleArn") != wi.get("role_arn") or not one("RoleSessionName") or
                not hmac.compare_digest(one("WebIdentityToken").encode(),
                                        wi.get("token", "").encode())):
            return self.send_xml(400, "<ErrorResponse><Error><Code>InvalidIdentityToken</Code>"
                                      "<Message>bad token</Message></Error></ErrorResponse>")
        ak, sk, tok, exp = issue(wi.get("ttl", 3600))
        hit("sts")
        return self.send_xml(200, (
            '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<AssumeRoleWithWebIdentityResult><Credentials>"
            "<AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey>"
            "<SessionToken>%s</SessionToken><Expiration>%s</Expiration>"
            "</Credentials></AssumeRoleWithWebIdentityResult>"
            "</AssumeRoleWithWebIdentityResponse>")
            % (ak, sk, tok, exp))

    def send_xml(self, status, text):
        return self.send_text(status, text, "text/xml")

    def do_POST(self):
        body = self.body()
        if self.path == "/_conf":  # the tests' control: merge into CONF, or revoke tokens
            req = json.loads(body)
            with LOCK:
                if req.pop("revoke_imds_tokens", False):
                    IMDS_TOKENS.clear()
                fakebase.merge_conf(CONF, req)
            return self.send(200, {})
        if "X-Amz-Target" not in self.headers and body.startswith(b"Action="):
            return self.sts(body)
        refused = self.check_auth(body)
        if refused:
            return self.send(*refused)
        target = self.headers.get("X-Amz-Target", "")
        req = json.loads(body)
        if target == "secretsmanager.GetSecretValue":
            name = req.get("SecretId")
            with LOCK:
                HITS[target + " " + name] = HITS.get(target + " " + name, 0) + 1
            v = CONF.get("secrets", {}).get(name)
            if v is None:
                return self.send(400, {"__type": "ResourceNotFoundException",
                                       "message": "Secrets Manager can't find the specified "
                                                  "secret."})
            return self.send(200, {"ARN": "arn:aws:secretsmanager:x", "Name": name,
                                   "SecretString": v, "VersionId": "v1"})
        if target == "AmazonSSM.GetParameter":
            name = req.get("Name")
            with LOCK:
                HITS[target + " " + name] = HITS.get(target + " " + name, 0) + 1
            if req.get("WithDecryption") is not True:
                return self.send(400, {"__type": "ValidationException", "message": "decrypt"})
            v = CONF.get("parameters", {}).get(name)
            if v is None:
                return self.send(400, {"__type": "ParameterNotFound", "message": ""})
            return self.send(200, {"Parameter": {"Name": name, "Type": "SecureString",
                                                 "Value": v, "Version": 1}})
        return self.send(400, {"__type": "UnknownOperationException", "message": target})


fakebase.serve(H, watch)
