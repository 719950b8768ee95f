"""Values the plane sends where docs/api/openapi.yaml pins them down: a task
instance waiting for its upstream tasks reads the string "none" (an enum value
of TaskInstanceState, never null), and an agent carries `running`, the number
of task instances offered to or running on it."""
import os
import re

import harness
from schedfix import Agent, SchedCase, dag

SPEC = os.path.join(harness.ROOT, "docs/api/openapi.yaml")


def schema_block(text, name):
    m = re.search(rf"^    {name}:\n((?:      .*\n|\s*\n)+)", text, re.M)
    assert m, f"schema {name} not found"
    return m.group(1)


class SpecValuesTest(SchedCase):
    def setUp(self):
        super().setUp()
        self.boot()
        with open(SPEC) as f:
            self.spec = f.read()

    def test_task_instance_states_are_in_the_spec(self):
        block = schema_block(self.spec, "TaskInstanceState")
        enum = set(re.search(r"enum: \[([^\]]*)\]", block).group(1).replace("\n", " ")
                   .replace(" ", "").split(","))
        ti = schema_block(self.spec, "TaskInstance")
        state = re.search(r"^        state:\n((?:          .*\n)+)", ti, re.M).group(1)
        self.assertNotIn("null", state.replace("never null", ""))
        self.assertIn("#/components/schemas/TaskInstanceState", state)
        self.push_ok(dag("sv", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}]))
        self.trigger("sv", run_id="r")
        ag = Agent(self, "w1")
        (a,) = ag.take(1)
        states = self.ti_states("sv", "r")
        self.assertEqual(states, {"a": "running", "b": "none"})
        self.assertLessEqual(set(states.values()), enum)
        st, b = ag.report(a, "success")
        self.assertEqual(st, 200, b)
        self.assertIn(b["state"], enum)

    def test_agent_running_count(self):
        self.push_ok(dag("rc", [{"task_id": f"t{i}"} for i in range(4)]))
        ag, idle = Agent(self, "w1", slots=4), Agent(self, "w2", beat=False)
        self.trigger("rc", run_id="r")
        got = ag.take(3, free_slots=3)  # three offered, then started

        def running():
            st, b = self.req("GET", "/api/v1/admin/agents", None, self.admin)
            self.assertEqual(st, 200, b)
            return {x["name"]: x["running"] for x in b["agents"]}

        self.assertEqual(running(), {"w1": 3, "w2": 0})
        self.assertEqual(len(harness.wait_for(lambda: ag.work(wait=1, free_slots=1), 10,
                                              what="a fourth offer")), 1)  # offered, not started
        self.assertEqual(running(), {"w1": 4, "w2": 0})
        self.assertEqual(ag.report(got[0], "success")[0], 200)
        self.assertEqual(running(), {"w1": 3, "w2": 0})
        st, b = self.req("GET", f"/api/v1/admin/agents/{ag.id}", None, self.admin)
        self.assertEqual((st, b["running"]), (200, 3))
        self.assertEqual(idle.work(wait=0), [])


if __name__ == "__main__":
    import unittest
    unittest.main()
