"""Shared fixture of the remex-plane integration tests: a real plane on a free
loopback port (listen 127.0.0.1:0, port read from its "listening on" line)
with its database and credential files in the test's temp dir."""
import json
import os
import re
import signal

import harness


class PlaneCase(harness.TestCase):
    def start_plane(self, **cfg):
        conf = {
            "listen": "127.0.0.1:0",
            "db_path": os.path.join(self.tmp, "var/plane.db"),
            "admin_token_file": os.path.join(self.tmp, "admin.token"),
            "signing_key_file": os.path.join(self.tmp, "signing.key"),
            "heartbeat_interval": "1s",
            "log": {"level": "debug"},
        }
        conf.update(cfg)
        self.conf = conf
        lines = []
        for k, v in conf.items():
            if isinstance(v, dict):
                lines.append(f"{k}:")
                lines.extend(f"  {k2}: {json.dumps(v2)}" for k2, v2 in v.items())
            else:
                lines.append(f"{k}: {json.dumps(v)}")
        self.cfgpath = self.write("plane.yaml", "\n".join(lines) + "\n")
        return self.restart_plane()

    def restart_plane(self):
        n = getattr(self, "_nstarts", 0) + 1
        self._nstarts = n
        self.plane = self.spawn(f"plane{n}", [self.bin("remex-plane"), "-c", self.cfgpath])
        out = self.plane.wait_output("listening on 127.0.0.1:", timeout=20)
        self.port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", out).group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        with open(self.conf["admin_token_file"]) as f:
            self.admin = f.read().strip()
        return self.plane

    def stop_plane(self):
        self.plane.signal(signal.SIGTERM)
        return self.plane.wait(20)

    def req(self, method, path, body=None, token=None, raw=False):
        st, _, data = harness.http(method, self.url + path, body, token, timeout=20)
        if raw:
            return st, data
        return st, (json.loads(data) if data else None)

    def create_token(self, name="agents", expires_in=3600, **extra):
        body = {"name": name, "expires_in": expires_in}
        body.update(extra)
        st, b = self.req("POST", "/api/v1/admin/tokens", body, self.admin)
        self.assertEqual(st, 201, b)
        return b

    # Roles a fixture agent registers with: all of them, so that one session
    # can drive every agent route (test_plane_roles.py tests narrower ones).
    ALL_ROLES = ["worker", "triggerer", "dag-processor", "sentinel"]

    def register(self, token, name="w1", **extra):
        body = {"name": name, "roles": self.ALL_ROLES, "version": "0.1.0", "hostname": "h",
                "queues": ["default"], "slots": 4}
        body.update(extra)
        return self.req("POST", "/api/v1/agents/register", body, token)

    def heartbeat(self, agent_id, session, **extra):
        body = {"state": "running", "free_slots": 4, "running": []}
        body.update(extra)
        return self.req("POST", f"/api/v1/agents/{agent_id}/heartbeat", body, session)

    def agent(self, token_value, name="w1"):
        st, b = self.register(token_value, name)
        self.assertEqual(st, 200, b)
        return b["agent_id"], b["session_token"]
