"""remex-plane agents, HTTP edge cases, metrics and restart."""
import json
import socket
import subprocess
import time

import harness
from planefix import PlaneCase


class AgentsTest(PlaneCase):
    def setUp(self):
        super().setUp()
        self.start_plane(body_max="4KiB")
        self.tok = self.create_token()["value"]

    def admin_agent(self, aid):
        st, b = self.req("GET", f"/api/v1/admin/agents/{aid}", token=self.admin)
        self.assertEqual(st, 200, b)
        return b

    def test_register_and_heartbeat(self):
        st, b = self.register(self.tok, features={"cgroups": True})
        self.assertEqual(st, 200, b)
        self.assertEqual(set(b), {"agent_id", "session_token", "session_expires_at",
                                  "heartbeat_interval"})
        self.assertEqual(b["heartbeat_interval"], 1)
        aid, sess = b["agent_id"], b["session_token"]
        self.assertEqual(self.admin_agent(aid)["state"], "starting")
        st, hb = self.heartbeat(aid, sess, state="draining", free_slots=2,
                                running=[{"ti_id": 5, "try_number": 1}], triggers=[3],
                                sysinfo={"load1": 0.5})
        self.assertEqual(st, 200, hb)
        self.assertEqual(hb["desired_state"], "run")
        # ti 5 is unknown to the scheduler: the agent is told to stop it.
        self.assertEqual([(c["ti_id"], c["try_number"]) for c in hb["cancel"]], [(5, 1)])
        self.assertNotIn("session_token", hb)  # 15 min session: no refresh yet
        a = self.admin_agent(aid)
        self.assertEqual((a["state"], a["free_slots"], a["sysinfo"]), ("draining", 2,
                                                                        {"load1": 0.5}))
        self.assertEqual(a["features"], {"cgroups": True})
        st, lst = self.req("GET", "/api/v1/admin/agents", token=self.admin)
        self.assertEqual([x["name"] for x in lst["agents"]], ["w1"])
        self.assertEqual(self.req("GET", "/api/v1/admin/agents/99", token=self.admin)[0], 404)
        self.assertEqual(self.req("GET", "/api/v1/admin/agents/x", token=self.admin)[0], 404)

    def test_health_report_shown(self):
        aid, sess = self.agent(self.tok)
        self.assertIsNone(self.admin_agent(aid)["health"])
        rep = {"status": "degraded", "checks": [{"name": "disk", "status": "degraded",
                                                 "message": "91% used"}]}
        st, b = self.req("POST", f"/api/v1/agents/{aid}/health", rep, sess)
        self.assertEqual((st, b), (200, {}))
        h = self.admin_agent(aid)["health"]
        self.assertEqual(h["status"], "degraded")
        self.assertEqual(h["checks"], rep["checks"])
        self.assertIn("reported_at", h)
        st, b = self.req("POST", f"/api/v1/agents/{aid}/health",
                         {"status": "fine", "checks": []}, sess)
        self.assertEqual(st, 400)
        self.assertIn("status", b["error"]["message"])

    def test_reregister_after_crash(self):
        aid, s1 = self.agent(self.tok)
        self.assertEqual(self.heartbeat(aid, s1)[0], 200)
        aid2, s2 = self.agent(self.tok)  # same name, at once: no 409
        self.assertEqual(aid2, aid)
        self.assertEqual(self.heartbeat(aid, s2)[0], 200)
        self.assertEqual(self.heartbeat(aid, s1)[0], 401)  # previous session is dead
        self.assertEqual(self.admin_agent(aid)["session"], 2)

    def test_lost_detection(self):
        aid, sess = self.agent(self.tok)
        self.assertEqual(self.heartbeat(aid, sess)[0], 200)
        t0 = time.monotonic()
        harness.wait_for(lambda: self.admin_agent(aid)["state"] == "lost", timeout=8,
                         interval=0.1, what="agent to be lost")
        dt = time.monotonic() - t0
        self.assertGreater(dt, 2.5)
        self.assertLess(dt, 5.0 * harness.SLOW)
        self.assertIsNotNone(self.admin_agent(aid)["lost_at"])
        self.assertEqual(self.heartbeat(aid, sess)[0], 401)  # a lost session is over
        aid2, s2 = self.agent(self.tok)  # re-registration revives it
        self.assertEqual(aid2, aid)
        self.assertEqual(self.heartbeat(aid, s2)[0], 200)
        self.assertEqual(self.admin_agent(aid)["state"], "running")

    def test_heartbeats_keep_agent_alive(self):
        aid, sess = self.agent(self.tok)
        for _ in range(10):
            self.assertEqual(self.heartbeat(aid, sess)[0], 200)
            time.sleep(0.5)
        self.assertEqual(self.admin_agent(aid)["state"], "running")

    def test_bad_bodies_name_the_field(self):
        aid, sess = self.agent(self.tok)
        cases = [
            ({"state": "running", "free_slots": "4"}, "free_slots"),
            ({"state": "running"}, "free_slots"),
            ({"state": "flying", "free_slots": 1}, "state"),
            ({"state": 7, "free_slots": 1}, "state"),
            ({"state": "running", "free_slots": -1}, "free_slots"),
            ({"state": "running", "free_slots": 1, "running": {}}, "running"),
            ({"state": "running", "free_slots": 1, "running": [{"ti_id": 1}]},
             "running[0].try_number"),
            ({"state": "running", "free_slots": 1, "running": [{"ti_id": "1",
                                                                "try_number": 1}]},
             "running[0].ti_id"),
            ({"state": "running", "free_slots": 1, "triggers": ["x"]}, "triggers[0]"),
            ({"state": "running", "free_slots": 1, "sysinfo": []}, "sysinfo"),
        ]
        for body, field in cases:
            st, b = self.req("POST", f"/api/v1/agents/{aid}/heartbeat", body, sess)
            self.assertEqual(st, 400, (body, b))
            self.assertEqual(b["error"]["code"], "bad_request")
            self.assertIn(field, b["error"]["message"], body)
        for body, field in [({"roles": ["worker"]}, "name"),
                            ({"name": "x y", "roles": [], "version": "1", "queues": [],
                              "slots": 1}, "name"),
                            ({"name": "w", "roles": ["chef"], "version": "1", "queues": [],
                              "slots": 1}, "roles[0]"),
                            ({"name": "w", "roles": [], "version": "1", "queues": [""],
                              "slots": 1}, "queues[0]"),
                            ({"name": "w", "roles": [], "version": "1", "queues": [],
                              "slots": 1.5}, "slots")]:
            st, b = self.req("POST", "/api/v1/agents/register", body, self.tok)
            self.assertEqual(st, 400, (body, b))
            self.assertIn(field, b["error"]["message"])

    def test_malformed_json(self):
        aid, sess = self.agent(self.tok)
        path = f"/api/v1/agents/{aid}/heartbeat"
        for raw, needle in (('{"state": "running",', "body:1:"), ("[1,2]", "object"),
                            ('{"a":1,"a":2}', "duplicate"), ("\x00", "body"),
                            ('{"x":' + "[" * 200 + "]" * 200 + "}", "deeper"),
                            ('{"state":"run\\u0000ning","free_slots":1}', "body")):
            st, b = self.req("POST", path, raw, sess)
            self.assertEqual(st, 400, (raw[:40], b))
            self.assertIn(needle, b["error"]["message"])
        st, b = self.req("POST", path, None, sess)
        self.assertEqual(st, 400, b)

    def test_body_cap_413(self):
        st, b = self.req("POST", "/api/v1/agents/register",
                         {"name": "w", "pad": "x" * 5000}, self.tok)
        self.assertEqual(st, 413, b)
        self.assertEqual(b["error"]["code"], "payload_too_large")
        # Chunked upload without a length: counted and refused at the cap.
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(b"POST /api/v1/agents/register HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\nAuthorization: Bearer " + self.tok.encode()
                  + b"\r\n\r\n")
        for _ in range(6):
            s.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 413"), data[:100])
        self.assertIn("/api/v1/agents/register", self.plane.output())
        self.assertEqual(self.req("GET", "/healthz")[0], 200)  # still serving

    def test_404_405_healthz(self):
        st, b = self.req("GET", "/api/v1/nope")
        self.assertEqual((st, b["error"]["code"]), (404, "not_found"))
        for path in ("//", "/healthz/", "/api/v1/agents//heartbeat",
                     "/api/v1/agents/1/heartbeat/x", "/" + "a/" * 40):
            self.assertEqual(self.req("GET", path)[0], 404, path)
        st, hd, _ = harness.http("GET", self.url + "/")  # the web UI's page (test_plane_ui.py)
        self.assertEqual((st, hd.get("Content-Type")), (200, "text/html; charset=utf-8"))
        st, hd, raw = harness.http("GET", self.url + "/api/v1/agents/register")
        self.assertEqual(st, 405)
        self.assertEqual(hd.get("Allow"), "POST")
        self.assertEqual(json.loads(raw)["error"]["code"], "method_not_allowed")
        st, hd, _ = harness.http("DELETE", self.url + "/api/v1/admin/tokens")
        self.assertEqual(st, 405)
        self.assertEqual(set(hd.get("Allow").split(", ")), {"GET", "POST"})
        self.assertEqual(self.req("GET", "/healthz"), (200, {"status": "ok"}))

    def test_metrics(self):
        aid, sess = self.agent(self.tok)
        self.heartbeat(aid, sess)
        self.req("GET", "/nope")
        st, _, raw = harness.http("GET", self.url + "/metrics")
        self.assertEqual(st, 200)
        text = raw.decode()
        self.assertIn('remex_plane_agents{state="running"} 1', text)
        self.assertIn('remex_plane_agents{state="lost"} 0', text)
        self.assertIn('remex_plane_http_requests_total{method="POST",'
                      'route="/api/v1/agents/{agent_id}/heartbeat",code="200"} 1', text)
        self.assertIn('route="unmatched",code="404"} 1', text)
        self.assertIn("# TYPE remex_plane_http_requests_total counter", text)
        # Request latency is a histogram with the same labels.
        self.assertIn("# TYPE remex_plane_http_request_duration_seconds histogram", text)
        hb = 'method="POST",route="/api/v1/agents/{agent_id}/heartbeat",code="200"'
        self.assertIn(f'remex_plane_http_request_duration_seconds_bucket{{{hb},le="+Inf"}} 1', text)
        self.assertIn(f'remex_plane_http_request_duration_seconds_count{{{hb}}} 1', text)
        self.assertIn(f'remex_plane_http_request_duration_seconds_bucket{{{hb},le="60"}} 1', text)
        self.assertNotIn('status="', text)
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                float(value)


class RestartTest(PlaneCase):
    def test_restart_keeps_tokens_and_agents(self):
        self.start_plane(heartbeat_interval="5s")
        tok = self.create_token("keep")["value"]
        aid, sess = self.agent(tok)
        self.assertEqual(self.heartbeat(aid, sess)[0], 200)
        self.assertEqual(self.stop_plane(), 0)
        self.assertIn("stopped", self.plane.output())
        self.restart_plane()
        st, b = self.req("GET", "/api/v1/admin/tokens", token=self.admin)
        self.assertEqual([t["name"] for t in b["tokens"]], ["keep"])
        st, b = self.req("GET", f"/api/v1/admin/agents/{aid}", token=self.admin)
        self.assertEqual((st, b["name"], b["state"]), (200, "w1", "running"))
        self.assertEqual(self.heartbeat(aid, sess)[0], 200)  # same key, session survives
        aid2, _ = self.agent(tok)
        self.assertEqual(aid2, aid)

    def test_routes_flag(self):
        p = subprocess.run([self.bin("remex-plane"), "--routes"], stdout=subprocess.PIPE,
                           timeout=30)
        self.assertEqual(p.returncode, 0)
        lines = p.stdout.decode().splitlines()
        self.assertIn("POST /api/v1/agents/register", lines)
        self.assertIn("GET /healthz", lines)
        self.assertEqual(len(lines), len(set(lines)))


if __name__ == "__main__":
    import unittest
    unittest.main()
