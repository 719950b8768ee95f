"""remex-plane credentials: every auth failure is 401/403 with a generic
message; revocation and expiry take effect on the very next request."""
import base64
import json
import os
import stat
import time

import harness
from planefix import PlaneCase


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class AuthTest(PlaneCase):
    def setUp(self):
        super().setUp()
        self.start_plane()
        self.tok = self.create_token()["value"]

    def assertAuthError(self, st, body, code=401):
        self.assertEqual(st, code, body)
        want = "unauthorized" if code == 401 else "forbidden"
        self.assertEqual(body["error"]["code"], want)
        self.assertNotIn("revoked", body["error"]["message"])
        self.assertNotIn("expired", body["error"]["message"])

    def test_files_created_private(self):
        for k in ("admin_token_file", "signing_key_file", "db_path"):
            mode = stat.S_IMODE(os.stat(self.conf[k]).st_mode)
            self.assertEqual(mode, 0o600, k)
        # SQLite gives the WAL the database's mode, whatever the umask (022 here).
        self.assertEqual(stat.S_IMODE(os.stat(self.conf["db_path"] + "-wal").st_mode), 0o600)
        self.assertEqual(os.path.getsize(self.conf["signing_key_file"]), 32)
        self.assertGreaterEqual(len(self.admin), 16)

    def test_missing_and_malformed_headers(self):
        self.assertAuthError(*self.req("GET", "/api/v1/admin/tokens"))
        st, _, body = harness.http("GET", self.url + "/api/v1/admin/tokens",
                                   headers={"Authorization": "Basic " + self.admin})
        self.assertAuthError(st, json.loads(body))
        st, _, body = harness.http("GET", self.url + "/api/v1/admin/tokens",
                                   headers={"Authorization": "Bearer"})
        self.assertAuthError(st, json.loads(body))
        self.assertAuthError(*self.req("GET", "/api/v1/admin/tokens", token="x" * 5000))
        self.assertAuthError(*self.req("GET", "/api/v1/admin/tokens", token=self.admin + "x"))
        self.assertAuthError(*self.req("GET", "/api/v1/admin/tokens", token=self.admin[:-1]))

    def test_garbage_jwt_and_agent_tokens(self):
        for bad in ("a.b.c", "eyJ.eyJ.", "...", "rmx_", "rmx_1_", "rmx_x_abc", "rmx_999_abc",
                    self.tok[:-2] + "AA", "rmx_-1_" + self.tok.split("_", 2)[2]):
            st, b = self.register(bad)
            self.assertAuthError(st, b)
            st, b = self.heartbeat(1, bad)
            self.assertAuthError(st, b)

    def test_alg_none_and_tampered_signature(self):
        aid, sess = self.agent(self.tok)
        st, b = self.heartbeat(aid, sess)
        self.assertEqual(st, 200, b)
        h, c, s = sess.split(".")
        flipped = ("A" if s[0] != "A" else "B") + s[1:]
        self.assertAuthError(*self.heartbeat(aid, f"{h}.{c}.{flipped}"))
        claims = json.loads(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)))
        claims["exp"] += 3600
        forged = b64url(json.dumps(claims).encode())
        self.assertAuthError(*self.heartbeat(aid, f"{h}.{forged}.{s}"))
        none = b64url(b'{"alg":"none","typ":"JWT"}')
        self.assertAuthError(*self.heartbeat(aid, f"{none}.{c}."))

    def test_wrong_kind_is_403(self):
        aid, sess = self.agent(self.tok)
        self.assertAuthError(*self.req("GET", "/api/v1/admin/agents", token=self.tok), code=403)
        self.assertAuthError(*self.req("GET", "/api/v1/admin/agents", token=sess), code=403)
        self.assertAuthError(*self.register(sess), code=403)
        self.assertAuthError(*self.register(self.admin), code=403)
        self.assertAuthError(*self.heartbeat(aid, self.tok), code=403)
        self.assertAuthError(*self.heartbeat(aid, self.admin), code=403)

    def test_task_route_with_session_is_403(self):
        aid, sess = self.agent(self.tok)
        st, b = self.req("POST", "/api/v1/task-instances/1/start", {"try_number": 1}, sess)
        if st == 404:
            self.skipTest("task routes not served by this build")
        self.assertAuthError(st, b, code=403)

    def test_session_of_other_agent_is_403(self):
        a, sa = self.agent(self.tok, "wa")
        b, sb = self.agent(self.tok, "wb")
        self.assertEqual(self.heartbeat(b, sb)[0], 200)
        self.assertAuthError(*self.heartbeat(b, sa), code=403)
        self.assertAuthError(*self.req("POST", f"/api/v1/agents/{b}/health",
                                       {"status": "ok", "checks": []}, sa), code=403)
        self.assertEqual(self.heartbeat(a, sa)[0], 200)

    def test_revocation_takes_effect_on_next_request(self):
        aid, sess = self.agent(self.tok)
        tid = int(self.tok.split("_")[1])
        self.assertEqual(self.heartbeat(aid, sess)[0], 200)
        st, b = self.req("DELETE", f"/api/v1/admin/tokens/{tid}", token=self.admin)
        self.assertEqual(st, 200, b)
        self.assertIsNotNone(b["revoked_at"])
        self.assertAuthError(*self.heartbeat(aid, sess))
        self.assertAuthError(*self.register(self.tok))
        self.assertIn("revoked", self.plane.output())  # precise reason logged
        st, b = self.req("DELETE", f"/api/v1/admin/tokens/{tid}", token=self.admin)
        self.assertEqual(st, 200, b)
        self.assertEqual(self.req("DELETE", "/api/v1/admin/tokens/999", token=self.admin)[0], 404)

    def test_expired_agent_token(self):
        short = self.create_token("short", expires_in=1)["value"]
        aid, sess = self.agent(short)
        self.assertEqual(self.heartbeat(aid, sess)[0], 200)
        time.sleep(1.3)
        self.assertAuthError(*self.heartbeat(aid, sess))
        self.assertAuthError(*self.register(short))

    def test_secrets_never_logged(self):
        aid, sess = self.agent(self.tok)
        self.heartbeat(aid, sess)
        self.req("GET", "/api/v1/admin/tokens", token=self.admin)
        out = self.plane.output()
        for secret in (self.tok, sess, self.admin):
            self.assertNotIn(secret, out)

    def test_token_list_never_shows_values(self):
        st, b = self.req("GET", "/api/v1/admin/tokens", token=self.admin)
        self.assertEqual(st, 200)
        self.assertEqual(len(b["tokens"]), 1)
        t = b["tokens"][0]
        self.assertEqual(set(t), {"id", "name", "created_at", "expires_at", "last_used_at",
                                  "revoked_at", "roles"})
        # The secret is everything after "rmx_<id>_" (base64url may itself hold "_").
        secret = self.tok.split("_", 2)[2]
        self.assertGreaterEqual(len(secret), 32)
        self.assertNotIn(secret, json.dumps(b))

    def test_bad_token_create(self):
        for body in ({}, {"name": "x"}, {"name": 1, "expires_in": 5},
                     {"name": "x", "expires_in": "5"}, {"name": "x", "expires_in": 0},
                     {"name": "a b", "expires_in": 5}):
            st, b = self.req("POST", "/api/v1/admin/tokens", body, self.admin)
            self.assertEqual(st, 400, (body, b))
            self.assertEqual(b["error"]["code"], "bad_request")


class SessionExpiryTest(PlaneCase):
    def test_expired_session_and_refresh(self):
        # "exp" is in whole seconds, so a session lives between TTL - 1 s and TTL.
        # With 3 s a refreshed token outlives the 1.2 s wait below by at least 0.8 s
        # (with 2 s it lived 1-1.67 s, and a delayed heartbeat left it too little).
        self.start_plane(session_ttl="3s")
        tok = self.create_token()["value"]
        aid, sess = self.agent(tok)
        st, b = self.heartbeat(aid, sess)
        self.assertEqual(st, 200, b)
        time.sleep(3.2)
        st, b = self.heartbeat(aid, sess)
        self.assertEqual(st, 401, b)
        # A fresh session is refreshed by heartbeats once under a third of its life is left.
        aid, sess = self.agent(tok)
        got = None
        for _ in range(40):
            st, b = self.heartbeat(aid, sess)
            self.assertEqual(st, 200, b)
            if "session_token" in b:
                got = b
                break
            time.sleep(0.1)
        self.assertIsNotNone(got, "no refreshed session token")
        self.assertIn("session_expires_at", got)
        time.sleep(1.2)
        self.assertEqual(self.heartbeat(aid, got["session_token"])[0], 200)


class FilesTest(PlaneCase):
    def test_refuses_group_readable_admin_token(self):
        self.write("admin.token", "rmxadm_0123456789abcdefghij\n", mode=0o640)
        p = self.spawn("plane", [self.bin("remex-plane"), "-c", self.write("plane.yaml", (
            f"listen: 127.0.0.1:0\ndb_path: {self.tmp}/p.db\n"
            f"admin_token_file: {self.tmp}/admin.token\n"
            f"signing_key_file: {self.tmp}/signing.key\n"))])
        self.assertEqual(p.wait(20), 1)
        self.assertIn("chmod 600", p.output())

    def test_too_short_admin_token_refused(self):
        self.write("admin.token", "short\n", mode=0o600)
        p = self.spawn("plane", [self.bin("remex-plane"), "-c", self.write("plane.yaml", (
            f"listen: 127.0.0.1:0\ndb_path: {self.tmp}/p.db\n"
            f"admin_token_file: {self.tmp}/admin.token\n"
            f"signing_key_file: {self.tmp}/signing.key\n"))])
        self.assertEqual(p.wait(20), 1)
        self.assertIn("admin token must be 8 to 127 bytes", p.output())

    def test_existing_admin_token_is_used(self):
        self.write("admin.token", "rmxadm_0123456789abcdefghij\n", mode=0o600)
        self.start_plane()
        self.assertEqual(self.admin, "rmxadm_0123456789abcdefghij")
        self.assertEqual(self.req("GET", "/api/v1/admin/agents", token=self.admin)[0], 200)

    def test_check_flag(self):
        good = self.write("good.yaml", "listen: 127.0.0.1:0\nheartbeat_interval: 2s\n")
        p = self.spawn("check1", [self.bin("remex-plane"), "-c", good, "--check"])
        self.assertEqual(p.wait(20), 0)
        self.assertIn("configuration OK", p.output())
        bad = self.write("bad.yaml", "listen: 127.0.0.1:0\nheartbeat_interval: soon\n")
        p = self.spawn("check2", [self.bin("remex-plane"), "-c", bad, "--check"])
        self.assertEqual(p.wait(20), 100)
        self.assertIn("bad.yaml:2:", p.output())
        p = self.spawn("check3", [self.bin("remex-plane"), "-c", good, "--check"],
                       env={"REMEX_PLANE_LOST_AFTER_MISSED": "0"})
        self.assertEqual(p.wait(20), 100)
        self.assertIn("REMEX_PLANE_LOST_AFTER_MISSED", p.output())

    def test_offer_timeout_below_two_heartbeats_is_refused(self):
        # After a restart an unrecorded start comes back from a heartbeat
        # within offer_timeout: two heartbeats must fit in it.
        bad = self.write("short.yaml", "listen: 127.0.0.1:0\nheartbeat_interval: 20s\n"
                                       "offer_timeout: 30s\n")
        for n, extra in enumerate(({}, {"REMEX_PLANE_OFFER_TIMEOUT": "39s"})):
            p = self.spawn(f"short{n}", [self.bin("remex-plane"), "-c", bad], env=extra)
            self.assertEqual(p.wait(20), 100)
            out = p.output()
            self.assertIn("offer_timeout", out)
            self.assertIn("heartbeat_interval", out)
            self.assertNotIn("listening on", out)
        self.assertIn("REMEX_PLANE_OFFER_TIMEOUT:", out)
        p = self.spawn("short2", [self.bin("remex-plane"), "-c", bad, "--check"])
        self.assertEqual(p.wait(20), 100)
        self.assertIn("short.yaml:3:16: offer_timeout:", p.output())
        for ok, env in (("40s", {}), ("1m", {"REMEX_PLANE_HEARTBEAT_INTERVAL": "30s"})):
            env = dict(env, REMEX_PLANE_OFFER_TIMEOUT=ok)
            p = self.spawn(f"ok{ok}", [self.bin("remex-plane"), "-c", bad, "--check"], env=env)
            self.assertEqual(p.wait(20), 0, p.output())


if __name__ == "__main__":
    import unittest
    unittest.main()
