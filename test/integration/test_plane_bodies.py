"""Request bodies are closed (docs/api/openapi.yaml: additionalProperties:
false): the plane refuses an unknown key, top-level or nested, with 400 naming
it, on every route that takes a body; wrong types are still named; a body with
every documented key is accepted."""
import unittest

from schedfix import Agent, SchedCase, dag


class BodiesTest(SchedCase):
    def setUp(self):
        super().setUp()
        self.boot()
        self.push_ok(dag("d1", [{"task_id": "a"}]))
        self.agent = Agent(self, "w1", beat=False)

    def assert_refused(self, method, path, body, token, field, why="unknown field"):
        st, b = self.req(method, path, body, token)
        self.assertEqual(st, 400, (method, path, body, b))
        self.assertEqual(b["error"]["code"], "bad_request")
        self.assertEqual(b["error"]["message"], f"{field}: {why}", (path, body))

    def assignment(self):
        run = self.trigger("d1")
        (a,) = self.agent.take(1)
        self.assertEqual(a["run_id"], run["run_id"])
        return a

    def test_unknown_top_level_field_on_every_route(self):
        aid, sess = self.agent.id, self.agent.session
        a = self.assignment()
        ti, task = a["ti_id"], a["task_token"]
        cases = [
            ("POST", "/api/v1/agents/register", self.tok,
             {"name": "w2", "roles": [], "version": "1", "queues": [], "slots": 1}),
            ("POST", f"/api/v1/agents/{aid}/heartbeat", sess, {"state": "running",
                                                                "free_slots": 1}),
            ("POST", f"/api/v1/agents/{aid}/health", sess, {"status": "ok", "checks": []}),
            ("POST", "/api/v1/work", sess, {"queues": ["default"], "free_slots": 1}),
            ("POST", f"/api/v1/task-instances/{ti}/start", task, {"try_number": 1}),
            ("POST", f"/api/v1/task-instances/{ti}/state", task,
             {"try_number": 1, "state": "success"}),
            ("PUT", f"/api/v1/task-instances/{ti}/xcom/k", task, {"uri": "file:///x", "size": 1}),
            ("POST", "/api/v1/triggers/poll", sess, {"capacity": 1}),
            ("POST", "/api/v1/triggers/1/event", sess, {"payload": {}}),
            ("POST", "/api/v1/dags/manifest", self.admin, {"bundle": "b1", "files": []}),
            ("PUT", "/api/v1/dags/d1", self.admin, {"bundle": {"name": "b1", "version": "v"},
                                                    "dag": dag("d1", [{"task_id": "a"}])}),
            ("POST", "/api/v1/admin/tokens", self.admin, {"name": "t2", "expires_in": 60}),
            ("POST", "/api/v1/admin/dags/d1/runs", self.admin, {"conf": {}}),
            ("POST", f"/api/v1/admin/dags/d1/runs/{a['run_id']}/tasks/a/clear", self.admin,
             {"downstream": False}),
            # routes without a body: any key is unknown
            ("POST", "/api/v1/admin/dags/d1/pause", self.admin, {}),
            ("POST", f"/api/v1/admin/dags/d1/runs/{a['run_id']}/tasks/a/fail", self.admin, {}),
        ]
        for method, path, token, body in cases:
            self.assert_refused(method, path, dict(body, free_slotz=1), token, "free_slotz")
        # Nothing was applied: the try is still running, no second token exists.
        self.assertEqual(self.ti_states("d1", a["run_id"]), {"a": "running"})
        st, b = self.req("GET", "/api/v1/admin/tokens", None, self.admin)
        self.assertEqual([t["name"] for t in b["tokens"]], ["agents"])

    def test_unknown_nested_field(self):
        aid, sess = self.agent.id, self.agent.session
        self.assert_refused("POST", f"/api/v1/agents/{aid}/heartbeat",
                            {"state": "running", "free_slots": 1,
                             "running": [{"ti_id": 1, "try_number": 1},
                                         {"ti_id": 2, "try_number": 1, "tryn": 1}]},
                            sess, "running[1].tryn")
        self.assert_refused("POST", f"/api/v1/agents/{aid}/health",
                            {"status": "ok", "checks": [{"name": "n", "status": "ok",
                                                         "msg": "x"}]},
                            sess, "checks[0].msg")
        self.assert_refused("POST", "/api/v1/dags/manifest",
                            {"bundle": "b1", "files": [{"path": "f", "dags": [
                                {"dag_id": "d1", "hash": "h", "size": 1}]}]},
                            self.admin, "files[0].dags[0].size")
        self.assert_refused("POST", "/api/v1/dags/manifest",
                            {"bundle": "b1", "files": [{"path": "f", "dags": [], "x": 1}]},
                            self.admin, "files[0].x")
        self.assert_refused("POST", "/api/v1/dags/manifest",
                            {"bundle": "b1", "files": [], "import_errors": [
                                {"file": "f", "line": 1, "column": 1, "message": "m",
                                 "col": 2}]},
                            self.admin, "import_errors[0].col")
        self.assert_refused("PUT", "/api/v1/dags/d1",
                            {"bundle": {"name": "b1", "version": "v", "commit": "c"},
                             "dag": dag("d1", [{"task_id": "a"}])},
                            self.admin, "bundle.commit")

    def test_free_form_objects_stay_open(self):
        aid, sess = self.agent.id, self.agent.session
        st, b = self.heartbeat(aid, sess, sysinfo={"anything": {"nested": [1]}})
        self.assertEqual(st, 200, b)
        st, b = self.register(self.tok, "w3", features={"gpu": True, "x": {"y": 1}})
        self.assertEqual(st, 200, b)
        st, b = self.req("POST", "/api/v1/admin/dags/d1/runs", {"conf": {"k": {"deep": 1}}},
                         self.admin)
        self.assertEqual(st, 200, b)

    def test_wrong_types_still_named(self):
        aid, sess = self.agent.id, self.agent.session
        self.assert_refused("POST", "/api/v1/work", {"queues": ["default"], "free_slots": "1"},
                            sess, "free_slots", "expected integer")
        self.assert_refused("POST", f"/api/v1/agents/{aid}/heartbeat",
                            {"state": "running", "free_slots": 1, "running": [7]},
                            sess, "running[0]", "expected object")
        # A closed key holding a value of the wrong type is the decoder's to name.
        st, b = self.req("PUT", "/api/v1/dags/d1", {"bundle": "b1", "dag": dag("d1", [
            {"task_id": "a"}])}, self.admin)
        self.assertEqual(st, 400, b)
        self.assertIn("bundle", b["error"]["message"])
        a = self.assignment()
        st, b = self.req("POST", f"/api/v1/task-instances/{a['ti_id']}/start",
                         {"try_number": "1"}, a["task_token"])
        self.assertEqual(st, 400, b)
        self.assertIn("try_number", b["error"]["message"])

    def test_every_documented_key_accepted(self):
        aid, sess = self.agent.id, self.agent.session
        a = self.assignment()
        ti, task = a["ti_id"], a["task_token"]
        st, b = self.req("POST", f"/api/v1/task-instances/{ti}/start",
                         {"try_number": 1, "pid": 42, "hostname": "h"}, task)
        self.assertEqual(st, 200, b)
        st, b = self.req("PUT", f"/api/v1/task-instances/{ti}/xcom/k",
                         {"uri": "file:///x", "size": 1, "checksum": "sha256:00",
                          "content_type": "text/plain"}, task)
        self.assertEqual(st, 200, b)
        st, b = self.req("POST", f"/api/v1/task-instances/{ti}/state",
                         {"try_number": 1, "state": "success", "exit_code": 0, "reason": "r",
                          "log_uri": "file:///l"}, task)
        self.assertEqual(st, 200, b)
        st, b = self.req("POST", "/api/v1/triggers/poll", {"capacity": 1, "wait": 0, "held": []},
                         sess)
        self.assertEqual(st, 200, b)
        st, b = self.heartbeat(aid, sess, triggers=[], sysinfo={}, running=[])
        self.assertEqual(st, 200, b)
        st, b = self.req("POST", f"/api/v1/agents/{aid}/health",
                         {"status": "ok", "checks": [{"name": "n", "status": "ok",
                                                      "message": "m"}]}, sess)
        self.assertEqual(st, 200, b)
        st, b = self.req("POST", "/api/v1/dags/manifest",
                         {"bundle": "b2", "version": "v", "files": [{"path": "f", "dags": []}],
                          "import_errors": [{"file": "f", "line": 1, "column": 2,
                                             "message": "m"}]}, self.admin)
        self.assertEqual(st, 200, b)
        st, b = self.req("POST", "/api/v1/admin/dags/d1/runs",
                         {"conf": {}, "logical_date": "2025-01-30T00:00:00Z", "run_id": "r1"},
                         self.admin)
        self.assertEqual(st, 200, b)


if __name__ == "__main__":
    unittest.main()
