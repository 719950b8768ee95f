"""Role-scoped agent tokens: a token names the roles and queues it allows;
registration outside them is refused (403 naming the role or queue), and a
session may only use the routes of the roles its agent registered with."""
import harness
from planefix import PlaneCase

DAG = {"dag_id": "d1", "fileloc": "d1.yaml", "schedule": None, "tasks": [{"task_id": "t", "command": ["true"]}]}


class RolesTest(PlaneCase):
    def setUp(self):
        super().setUp()
        self.start_plane()

    def session(self, token, roles, queues=("default",), name="a1"):
        st, b = self.register(token, name, roles=list(roles), queues=list(queues))
        self.assertEqual(st, 200, b)
        return b["session_token"]

    def assertForbidden(self, st, b, words=()):
        self.assertEqual(st, 403, b)
        self.assertEqual(b["error"]["code"], "forbidden")
        for w in words:
            self.assertIn(w, b["error"]["message"])

    def test_token_roles_and_queues_shown(self):
        t = self.create_token("etl", roles=["worker", "dag-processor"], queues=["etl", "default"])
        self.assertEqual(t["roles"], ["worker", "dag-processor"])
        self.assertEqual(t["queues"], ["etl", "default"])
        every = self.create_token("all")
        self.assertEqual(every["roles"], self.ALL_ROLES)
        self.assertNotIn("queues", every)
        st, b = self.req("GET", "/api/v1/admin/tokens", None, self.admin)
        self.assertEqual(st, 200, b)
        by = {x["name"]: x for x in b["tokens"]}
        self.assertEqual(by["etl"]["queues"], ["etl", "default"])
        self.assertEqual(by["etl"]["roles"], ["worker", "dag-processor"])
        self.assertNotIn("queues", by["all"])

    def test_token_create_bad_roles_and_queues(self):
        for extra, field in [({"roles": []}, "roles"), ({"roles": ["chef"]}, "roles[0]"),
                             ({"roles": "worker"}, "roles"), ({"queues": []}, "queues"),
                             ({"queues": [""]}, "queues[0]")]:
            body = {"name": "x", "expires_in": 60}
            body.update(extra)
            st, b = self.req("POST", "/api/v1/admin/tokens", body, self.admin)
            self.assertEqual(st, 400, (extra, b))
            self.assertTrue(b["error"]["message"].startswith(field), b)

    def test_register_refused_for_role_not_allowed(self):
        tok = self.create_token("w", roles=["worker"])["value"]
        st, b = self.register(tok, "p1", roles=["worker", "dag-processor"])
        self.assertForbidden(st, b, ["roles[1]", "dag-processor"])
        self.assertNotIn(tok, b["error"]["message"])
        self.session(tok, ["worker"])  # its own role is fine

    def test_register_refused_for_queue_not_allowed(self):
        tok = self.create_token("w", roles=["worker"], queues=["etl"])["value"]
        st, b = self.register(tok, "w1", roles=["worker"], queues=["etl", "default"])
        self.assertForbidden(st, b, ["queues[1]", "default"])
        self.session(tok, ["worker"], queues=["etl"])

    def test_worker_session_cannot_upload_dags(self):
        sess = self.session(self.create_token()["value"], ["worker"])
        up = {"bundle": {"name": "b", "version": "1"}, "dag": DAG}
        self.assertForbidden(*self.req("PUT", "/api/v1/dags/d1", up, sess), ["dag-processor"])
        man = {"bundle": "b", "version": "1", "files": []}
        self.assertForbidden(*self.req("POST", "/api/v1/dags/manifest", man, sess),
                             ["dag-processor"])
        # a dag-processor session of the same token may, and the admin token too
        dp = self.session(self.create_token()["value"], ["dag-processor"], name="dp")
        st, b = self.req("PUT", "/api/v1/dags/d1", up, dp)
        self.assertEqual(st, 200, b)
        st, b = self.req("PUT", "/api/v1/dags/d1", up, self.admin)
        self.assertEqual(st, 200, b)

    def test_trigger_routes_need_triggerer(self):
        sess = self.session(self.create_token()["value"], ["worker"])
        self.assertForbidden(*self.req("POST", "/api/v1/triggers/poll",
                                       {"capacity": 1, "wait": 0}, sess), ["triggerer"])
        self.assertForbidden(*self.req("POST", "/api/v1/triggers/1/event", {"payload": {}},
                                       sess), ["triggerer"])
        trg = self.session(self.create_token()["value"], ["triggerer"], name="t1")
        st, b = self.req("POST", "/api/v1/triggers/poll", {"capacity": 1, "wait": 0}, trg)
        self.assertEqual(st, 200, b)

    def test_work_needs_worker_role(self):
        trg = self.session(self.create_token()["value"], ["triggerer"])
        self.assertForbidden(*self.req("POST", "/api/v1/work",
                                       {"queues": ["default"], "free_slots": 1, "wait": 0}, trg),
                             ["worker"])

    def test_health_needs_sentinel_role(self):
        tok = self.create_token()["value"]
        st, b = self.register(tok, "w1", roles=["worker"])
        self.assertEqual(st, 200, b)
        self.assertForbidden(*self.req("POST", f"/api/v1/agents/{b['agent_id']}/health",
                                       {"status": "ok", "checks": []}, b["session_token"]),
                             ["sentinel"])

    def test_work_refuses_queue_outside_token(self):
        tok = self.create_token("etl", roles=["worker"], queues=["etl"])["value"]
        sess = self.session(tok, ["worker"], queues=["etl"])
        st, b = self.req("POST", "/api/v1/work",
                         {"queues": ["etl", "default"], "free_slots": 1, "wait": 0}, sess)
        self.assertForbidden(st, b, ["queues[1]", "default"])
        st, b = self.req("POST", "/api/v1/work", {"queues": ["etl"], "free_slots": 1, "wait": 0},
                         sess)
        self.assertEqual(st, 200, b)
        self.assertEqual(b["assignments"], [])

    def test_work_requires_queues_and_free_slots(self):
        sess = self.session(self.create_token()["value"], ["worker"])
        for body, field in [({}, "queues"), ({"queues": [], "free_slots": 1}, "queues"),
                            ({"queues": ["default"]}, "free_slots")]:
            st, b = self.req("POST", "/api/v1/work", body, sess)
            self.assertEqual(st, 400, (body, b))
            self.assertTrue(b["error"]["message"].startswith(field), b)

    def test_roles_survive_restart(self):
        tok = self.create_token()["value"]
        st, b = self.register(tok, "w1", roles=["worker"])
        self.assertEqual(st, 200, b)
        self.assertEqual(self.stop_plane(), 0)
        self.restart_plane()
        up = {"bundle": {"name": "b", "version": "1"}, "dag": DAG}
        self.assertForbidden(*self.req("PUT", "/api/v1/dags/d1", up, b["session_token"]))


if __name__ == "__main__":
    harness.main()
