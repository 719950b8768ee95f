"""remex-plane dispatch over the API: long-poll wake-up, offers and their
expiry, start/state conflicts and idempotency, agent loss re-routing,
heartbeat reconciliation and execution timeouts, deferral and trigger
events, XCom reference scoping, and 8 concurrent pollers draining 10,000
task instances with every one assigned exactly once."""
import base64
import hashlib
import hmac
import http.client
import json
import threading
import time

import harness
from schedfix import Agent, SchedCase, dag, drive


class DispatchTest(SchedCase):
    def setUp(self):
        super().setUp()
        self.boot(offer_timeout="2s")

    def test_longpoll_wakes_on_queue(self):
        self.push_ok(dag("lp", [{"task_id": "t"}]))
        ag = Agent(self, "w1")
        t0 = time.monotonic()
        self.assertEqual(ag.work(wait=0.5), [])
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        got = {}

        def poll():
            got["a"] = ag.work(wait=20)
            got["t"] = time.monotonic()

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.5)
        t1 = time.monotonic()
        self.trigger("lp")
        th.join(25)
        self.assertEqual(len(got["a"]), 1)
        self.assertLess(got["t"] - t1, 1.0 * harness.SLOW)
        a = got["a"][0]
        for k in ("ti_id", "dag_id", "run_id", "task_id", "map_index", "try_number",
                  "logical_date", "data_interval_start", "data_interval_end",
                  "offer_expires_at", "task_token", "bundle", "task", "params", "conf"):
            self.assertIn(k, a)
        self.assertEqual(a["bundle"], {"name": "b1", "version": "v1"})
        self.assertEqual(a["task"]["command"], ["true"])

    def test_queue_matching_priority_and_slots(self):
        self.push_ok(dag("pq", [{"task_id": "lo", "priority_weight": 1},
                                {"task_id": "hi", "priority_weight": 9},
                                {"task_id": "big", "priority_weight": 50, "pool_slots": 3},
                                {"task_id": "other", "queue": "gpu"}]))
        ag = Agent(self, "w1")
        self.trigger("pq")
        time.sleep(0.3)
        got = ag.work(wait=2, free_slots=2)
        self.assertEqual([a["task_id"] for a in got], ["hi", "lo"])
        got = ag.work(wait=0, free_slots=3)
        self.assertEqual([a["task_id"] for a in got], ["big"])
        self.assertEqual(ag.work(wait=0.2, free_slots=8), [])
        got = ag.work(wait=1, free_slots=8, queues=["gpu"])
        self.assertEqual([a["task_id"] for a in got], ["other"])

    def test_offer_expiry_requeues(self):
        self.push_ok(dag("oe", [{"task_id": "t"}]))
        ag = Agent(self, "w1")
        ag2 = Agent(self, "w2")
        self.trigger("oe")
        (a,) = ag.work(wait=5)
        t0 = time.monotonic()
        (b,) = ag2.work(wait=10)  # re-offered once the 2 s offer expires
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)
        self.assertEqual((b["ti_id"], b["try_number"]), (a["ti_id"], a["try_number"]))
        st, body = ag.start(a)
        self.assertEqual(st, 409, body)
        self.assertEqual(ag2.start(b)[0], 200)
        self.assertEqual(ag2.start(b)[0], 200)  # idempotent for the holder

    def test_stale_try_and_idempotent_reports(self):
        self.push_ok(dag("st", [{"task_id": "t", "retries": 1, "retry_delay": 1}]))
        ag = Agent(self, "w1")
        run = self.trigger("st")
        (a,) = ag.take(1)
        self.assertEqual(ag.report(a, "failed", exit_code=2), (200, {"state": "up_for_retry"}))
        self.assertEqual(ag.report(a, "failed", exit_code=2)[0], 200)  # replayed report
        (b,) = ag.take(1)
        self.assertEqual(b["try_number"], 2)
        st, body = ag.report(a, "success")  # the old try's token
        self.assertEqual(st, 409, body)
        bad = dict(b, try_number=1)
        self.assertEqual(ag.report(bad, "success")[0], 409)
        self.assertEqual(ag.report(b, "bogus")[0], 400)
        self.assertEqual(ag.report(b, "success"), (200, {"state": "success"}))
        self.assertEqual(ag.report(b, "success"), (200, {"state": "success"}))
        self.assertEqual(ag.report(b, "failed")[0], 409)
        # A task token only speaks for its own task instance.
        st, body = self.req("POST", f"/api/v1/task-instances/{b['ti_id'] + 1}/state",
                            {"try_number": 2, "state": "success"}, b["task_token"])
        self.assertIn(st, (403, 404))
        self.assertEqual(self.wait_run("st", run["run_id"])["state"], "success")

    def test_task_token_checks_after_first_use(self):
        # Verified task tokens are remembered; a tampered copy, a revoked agent
        # token and another task instance's path must still be refused.
        self.push_ok(dag("tt", [{"task_id": "a"}, {"task_id": "b"}]))
        ag = Agent(self, "w1")
        self.trigger("tt")
        a, b = ag.take(2)
        h, c, s = a["task_token"].split(".")
        bad = dict(a, task_token=f"{h}.{c}.{'A' if s[0] != 'A' else 'B'}{s[1:]}")
        self.assertEqual(ag.report(bad, "success")[0], 401)
        wrong = dict(b, task_token=a["task_token"])
        self.assertEqual(ag.report(wrong, "success")[0], 403)
        st, body = ag.report(a, "success")
        self.assertEqual(st, 200, body)
        tid = int(self.tok.split("_")[1])
        self.assertEqual(self.req("DELETE", f"/api/v1/admin/tokens/{tid}", token=self.admin)[0],
                         200)
        st, body = ag.report(b, "success")
        self.assertEqual(st, 401, body)
        self.assertEqual(ag.report(a, "success")[0], 401)

    def test_task_token_is_an_hs256_jwt(self):
        self.push_ok(dag("tj", [{"task_id": "a"}]))
        ag = Agent(self, "w1")
        self.trigger("tj")
        (a,) = ag.take(1)
        h, c, s = a["task_token"].split(".")

        def unb64(x):
            return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))

        self.assertEqual(json.loads(unb64(h)), {"alg": "HS256", "typ": "JWT"})
        claims = json.loads(unb64(c))
        self.assertEqual({k: claims[k] for k in ("typ", "agent", "ti", "try")},
                         {"typ": "task", "agent": ag.id, "ti": a["ti_id"],
                          "try": a["try_number"]})
        self.assertGreater(claims["exp"], time.time() + 86400)
        with open(self.conf["signing_key_file"], "rb") as f:
            key = f.read()
        mac = hmac.new(key, f"{h}.{c}".encode(), hashlib.sha256).digest()
        self.assertEqual(unb64(s), mac)

    def test_assignment_json_escapes_and_splices(self):
        odd = 'v"1\\ \n\t\u00e9\u2603\u0001/'
        st, b = self.push(dag("esc", [{"task_id": "a", "env": {"K": odd}}],
                              params={"p": odd}), version=odd)
        self.assertEqual(st, 200, b)
        conf = {"s": odd, "n": [1, 2.5, None, True, {"x": []}]}
        self.trigger("esc", run_id="r:+/x", conf=conf)
        ag = Agent(self, "w1")
        (a,) = ag.take(1)
        self.assertEqual(a["bundle"], {"name": "b1", "version": odd})
        self.assertEqual(a["conf"], conf)
        self.assertEqual(a["run_id"], "r:+/x")
        self.assertEqual(a["task"]["env"], {"K": odd})
        self.assertEqual(a["params"]["p"], odd)

    def test_agent_loss_reroutes(self):
        self.push_ok(dag("loss", [{"task_id": "run", "retries": 1, "retry_delay": 0},
                                  {"task_id": "offer"}]))
        a_ag = Agent(self, "wa", beat=False)
        self.trigger("loss", run_id="r")
        got = a_ag.work(wait=5, free_slots=2)
        harness.wait_for(lambda: len(got) == 2 or got.extend(a_ag.work(wait=1)), 10, 0.01)
        by = {a["task_id"]: a for a in got}
        self.assertEqual(a_ag.start(by["run"])[0], 200)
        b_ag = Agent(self, "wb")
        t0 = time.monotonic()
        rerouted = {}
        deadline = time.monotonic() + 20 * harness.SLOW
        while len(rerouted) < 2 and time.monotonic() < deadline:
            for a in b_ag.work(wait=2, free_slots=2):
                self.assertEqual(b_ag.start(a)[0], 200)
                rerouted[a["task_id"]] = a
        self.assertLess(time.monotonic() - t0, 10 * harness.SLOW)
        tries = {k: a["try_number"] for k, a in rerouted.items()}
        self.assertEqual(tries, {"run": 2, "offer": 1})
        # The lost agent's late report for its old try is refused.
        self.assertEqual(a_ag.report(by["run"], "success")[0], 409)
        for a in rerouted.values():
            self.assertEqual(b_ag.report(a, "success")[0], 200)
        self.assertEqual(self.wait_run("loss", "r")["state"], "success")

    def test_heartbeat_reconciles_running_list(self):
        self.push_ok(dag("hb", [{"task_id": "t", "retries": 0}]))
        ag = Agent(self, "w1", beat=False)
        self.trigger("hb", run_id="r")
        (a,) = ag.take(1)
        st, hb = ag.heartbeat([])  # the agent does not list it: failed after the grace
        self.assertEqual(st, 200, hb)
        harness.wait_for(lambda: ag.heartbeat([])[0] == 200 and
                         self.ti_states("hb", "r")["t"] == "failed", 10, 0.2, "TI failed")
        st, hb = ag.heartbeat([a, {"ti_id": 99999, "try_number": 1}])
        self.assertEqual(sorted(c["ti_id"] for c in hb["cancel"]), sorted([a["ti_id"], 99999]))

    def test_execution_timeout_cancels(self):
        self.push_ok(dag("et", [{"task_id": "t", "execution_timeout": 1}]))
        ag = Agent(self, "w1")
        self.trigger("et", run_id="r")
        (a,) = ag.take(1)
        c = harness.wait_for(lambda: [x for x in ag.cancels if x["ti_id"] == a["ti_id"]], 10,
                             0.05, "cancel of the timed-out TI")
        self.assertEqual(c[0]["reason"], "execution_timeout")
        self.assertEqual(ag.report(a, "failed", signal=15)[0], 200)
        r = self.wait_run("et", "r")
        self.assertEqual(r["state"], "failed")
        self.assertEqual(r["task_instances"][0]["reason"], "execution_timeout")

    def test_deferral_and_trigger_event(self):
        self.push_ok(dag("df", [{"task_id": "wait", "command": ["sensor"]},
                                {"task_id": "after", "upstream": ["wait"]}]))
        ag = Agent(self, "w1")
        trg = Agent(self, "t1")
        self.trigger("df", run_id="r")
        (a,) = ag.take(1)
        spec = {"type": "timer", "at": "2030-01-01T00:00:00Z", "timeout": 30}
        self.assertEqual(ag.report(a, "deferred", trigger=spec), (200, {"state": "deferred"}))
        self.assertEqual(ag.work(wait=0.2), [])  # the slot is free, nothing to run
        st, b = self.req("POST", "/api/v1/triggers/poll", {"capacity": 10, "wait": 5, "held": []},
                         trg.session)
        self.assertEqual(st, 200, b)
        (t,) = b["triggers"]
        self.assertEqual((t["ti_id"], t["spec"]["type"]), (a["ti_id"], "timer"))
        st, b = self.req("POST", f"/api/v1/triggers/{t['trigger_id']}/event",
                         {"payload": {"fired": True}}, ag.session)
        self.assertEqual(st, 409, b)  # not held by that agent
        st, b = self.req("POST", f"/api/v1/triggers/{t['trigger_id']}/event",
                         {"payload": {"fired": True}}, trg.session)
        self.assertEqual(st, 200, b)
        (r,) = ag.take(1)
        self.assertEqual((r["ti_id"], r["try_number"]), (a["ti_id"], a["try_number"]))
        self.assertEqual(r["trigger_event"], {"fired": True})
        self.assertEqual(ag.report(r, "success")[0], 200)
        self.assertEqual(drive(self, ag, "df", "r")["state"], "success")

    def poll_triggers(self, agent, n, wait=5):
        st, b = self.req("POST", "/api/v1/triggers/poll", {"capacity": 10, "wait": wait,
                                                          "held": []}, agent.session)
        self.assertEqual(st, 200, b)
        self.assertEqual(len(b["triggers"]), n, b)
        return b["triggers"]

    def event(self, agent, trig, **body):
        return self.req("POST", f"/api/v1/triggers/{trig['trigger_id']}/event", body,
                        agent.session)

    def test_declared_sensor_never_takes_a_worker_slot(self):
        spec = {"type": "timer", "delta": 1, "timeout": 60}
        self.push_ok(dag("ds", [{"task_id": "s", "trigger": spec},
                                {"task_id": "after", "upstream": ["s"]}]))
        ag = Agent(self, "w1")
        trg = Agent(self, "t1")
        self.trigger("ds", run_id="r")
        self.assertEqual(ag.work(wait=0.5), [])  # a sensor is no worker's work
        self.assertEqual(self.ti_states("ds", "r"), {"s": "deferred", "after": "none"})
        (t,) = self.poll_triggers(trg, 1)
        self.assertEqual(t["spec"], spec)
        self.assertIsNotNone(t["timeout_at"])
        self.assertEqual(self.event(trg, t, payload={"at": 1})[0], 200)
        self.assertEqual(self.event(trg, t, payload={"at": 2})[0], 404)  # fires once
        (a,) = ag.take(1)
        self.assertEqual(a["task_id"], "after")
        self.assertEqual(ag.report(a, "success")[0], 200)
        r = self.wait_run("ds", "r")
        self.assertEqual(r["state"], "success")
        s = [x for x in r["task_instances"] if x["task_id"] == "s"][0]
        self.assertEqual((s["state"], s["try_number"]), ("success", 1))

    def test_declared_sensor_with_command_runs_with_the_payload(self):
        self.push_ok(dag("dc", [{"task_id": "s", "command": ["true"],
                                 "trigger": {"type": "timer", "delta": 0}}]))
        ag = Agent(self, "w1")
        trg = Agent(self, "t1")
        self.trigger("dc", run_id="r")
        (t,) = self.poll_triggers(trg, 1)
        self.assertEqual(ag.work(wait=0), [])
        self.assertEqual(self.event(trg, t, payload={"k": "v"})[0], 200)
        (a,) = ag.take(1)
        self.assertEqual((a["task_id"], a["try_number"], a["trigger_event"]), ("s", 1, {"k": "v"}))
        self.assertEqual(ag.report(a, "success")[0], 200)
        self.assertEqual(self.wait_run("dc", "r")["state"], "success")

    def test_declared_sensor_retry_defers_again(self):
        self.push_ok(dag("dr", [{"task_id": "s", "retries": 1, "retry_delay": 0,
                                 "trigger": {"type": "timer", "delta": 5}}]))
        trg = Agent(self, "t1")
        self.trigger("dr", run_id="r")
        (t,) = self.poll_triggers(trg, 1)
        self.assertEqual(self.event(trg, t, timed_out=True)[0], 200)
        (t2,) = self.poll_triggers(trg, 1)  # try 2: deferred again, not queued
        self.assertEqual(t2["ti_id"], t["ti_id"])
        r = self.show_run("dr", "r")
        self.assertEqual([(x["state"], x["try_number"]) for x in r["task_instances"]],
                         [("deferred", 2)])
        self.assertEqual(self.event(trg, t2, timed_out=True)[0], 200)
        r = self.wait_run("dr", "r")
        self.assertEqual((r["state"], r["task_instances"][0]["reason"]),
                         ("failed", "trigger timeout"))

    def test_trigger_on_timeout_skip(self):
        self.push_ok(dag("sk", [{"task_id": "s", "trigger": {"type": "timer", "delta": 3600,
                                                             "timeout": 1, "on_timeout": "skip"}},
                                {"task_id": "t", "trigger": {"type": "timer", "delta": 3600,
                                                             "on_timeout": "skip"}}]))
        trg = Agent(self, "t1")
        self.trigger("sk", run_id="r")
        ts = {x["spec"]["timeout"]: x for x in self.poll_triggers(trg, 2)}
        self.assertEqual(self.event(trg, ts[None], timed_out=True)[0], 200)  # the holder's default
        r = self.wait_run("sk", "r", timeout=10)  # "s": the plane's own clock
        self.assertEqual({x["task_id"]: (x["state"], x["reason"]) for x in r["task_instances"]},
                         {"s": ("skipped", "trigger timeout"), "t": ("skipped", "trigger timeout")})
        self.assertEqual(r["state"], "success")

    def test_trigger_event_body_refused(self):
        self.push_ok(dag("eb", [{"task_id": "s", "trigger": {"type": "timer", "delta": 1}}]))
        trg = Agent(self, "t1")
        self.trigger("eb", run_id="r")
        (t,) = self.poll_triggers(trg, 1)
        for body in ({"timed_out": 1}, {"payload": []}, {"extra": 1}):
            st, b = self.event(trg, t, **body)
            self.assertEqual(st, 400, (body, b))
        self.assertEqual(self.ti_states("eb", "r"), {"s": "deferred"})

    def test_trigger_events_batch_and_run_status(self):
        self.push_ok(dag("eb2", [{"task_id": f"s{i}", "trigger": {"type": "timer", "delta": 1}}
                                 for i in range(3)]))
        t1, t2 = Agent(self, "t1"), Agent(self, "t2")
        self.trigger("eb2", run_id="r")
        got = self.poll_triggers(t1, 3)
        ids = sorted(t["trigger_id"] for t in got)
        ctx = got[0]["context"]
        self.assertEqual((ctx["dag_id"], ctx["run_id"], ctx["try_number"]), ("eb2", "r", 1))
        self.assertIsNotNone(got[0]["created_at"])
        body = {"events": [{"trigger_id": ids[0], "payload": {"n": 0}},
                           {"trigger_id": ids[1], "timed_out": True}]}
        st, b = self.req("POST", "/api/v1/triggers/events", body, t2.session)
        self.assertEqual(st, 200, b)
        self.assertEqual([r["result"] for r in b["results"]], ["not_held", "not_held"])
        st, b = self.req("POST", "/api/v1/triggers/events", body, t1.session)
        self.assertEqual([r["result"] for r in b["results"]], ["applied", "applied"])
        st, b = self.req("POST", "/api/v1/triggers/events", body, t1.session)
        self.assertEqual([r["result"] for r in b["results"]], ["gone", "gone"])  # once only
        for bad in ({"events": [{"trigger_id": 0}]}, {"events": [{"trigger_id": ids[2],
                                                                  "payload": 1}]},
                    {"events": [{"trigger_id": ids[2], "x": 1}]}, {"events": {}},
                    {"events": [{"trigger_id": ids[2]}] * 1001}):
            st, b = self.req("POST", "/api/v1/triggers/events", bad, t1.session)
            self.assertEqual(st, 400, (bad if len(str(bad)) < 200 else "1001 events", b))
        st, b = self.req("GET", "/api/v1/dags/eb2/runs/r/status", None, t1.session)
        self.assertEqual(st, 200, b)
        states = {x["task_id"]: x["state"] for x in b["task_instances"]}
        self.assertEqual(sorted(states.values()), ["deferred", "failed", "success"])
        self.assertEqual(b["state"], "running")
        st, b = self.req("GET", "/api/v1/dags/eb2/runs/nope/status", None, t1.session)
        self.assertEqual(st, 404, b)

    def test_trigger_poll_reply_bounded_by_run_conf(self):
        """Each handed-out trigger carries its run's conf: 1,000 of them with a
        large conf once made a reply the triggerer refused (over 16 MiB)."""
        self.push_ok(dag("bc", [{"task_id": f"s{i}", "trigger": {"type": "timer", "delta": 1}}
                                for i in range(100)]))
        trg = Agent(self, "t1")
        big = {"blob": "x" * 60000}
        st, b = self.req("POST", "/api/v1/admin/dags/bc/runs", {"run_id": "r", "conf": big},
                         self.admin)
        self.assertEqual(st, 200, b)
        harness.wait_for(lambda: set(self.ti_states("bc", "r").values()) == {"deferred"}, 10,
                         0.05, "100 deferred")
        got, sizes = [], []
        for _ in range(5):
            st, _, raw = harness.http("POST", self.url + "/api/v1/triggers/poll",
                                      {"capacity": 1000, "wait": 0}, trg.session)
            self.assertEqual(st, 200)
            sizes.append(len(raw))
            got += json.loads(raw)["triggers"]
            if len(got) == 100:
                break
        self.assertEqual(len({t["trigger_id"] for t in got}), 100)
        self.assertGreater(len(sizes), 1)
        self.assertLess(max(sizes), 5 * 1024 * 1024)
        self.assertEqual(got[0]["context"]["conf"], big)

    def test_trigger_timeout_fails(self):
        self.push_ok(dag("tt", [{"task_id": "wait"}]))
        ag = Agent(self, "w1")
        self.trigger("tt", run_id="r")
        (a,) = ag.take(1)
        self.assertEqual(ag.report(a, "deferred", trigger={"type": "file", "timeout": 1})[0], 200)
        r = self.wait_run("tt", "r", timeout=10)
        self.assertEqual(r["state"], "failed")
        self.assertEqual(r["task_instances"][0]["reason"], "trigger timeout")

    def test_lost_triggerer_releases_triggers(self):
        self.push_ok(dag("lt", [{"task_id": "wait"}]))
        ag = Agent(self, "w1")
        t1 = Agent(self, "t1", beat=False)
        t2 = Agent(self, "t2")
        self.trigger("lt", run_id="r")
        (a,) = ag.take(1)
        self.assertEqual(ag.report(a, "deferred", trigger={"type": "timer"})[0], 200)
        st, b = self.req("POST", "/api/v1/triggers/poll", {"capacity": 5, "wait": 5}, t1.session)
        self.assertEqual(len(b["triggers"]), 1)
        st, b = self.req("POST", "/api/v1/triggers/poll", {"capacity": 5, "wait": 15},
                         t2.session, )
        self.assertEqual((st, len(b["triggers"])), (200, 1))

    def test_xcom_scoped_to_the_run(self):
        self.push_ok(dag("xc", [{"task_id": "p"}, {"task_id": "c", "upstream": ["p"]}]))
        ag = Agent(self, "w1")
        self.trigger("xc", run_id="r1")
        self.trigger("xc", run_id="r2")
        ps = ag.take(2)
        p1 = [a for a in ps if a["run_id"] == "r1"][0]
        p2 = [a for a in ps if a["run_id"] == "r2"][0]
        ref = {"uri": "file:///x/1", "size": 3, "checksum": "sha256:ab",
               "content_type": "application/json"}
        path = f"/api/v1/task-instances/{p1['ti_id']}/xcom/out"
        self.assertEqual(self.req("PUT", path, ref, p1["task_token"]), (200, {}))
        self.assertEqual(self.req("GET", path, None, p1["task_token"]), (200, ref))
        # Another run's token can neither read nor write it.
        self.assertEqual(self.req("GET", path, None, p2["task_token"])[0], 403)
        self.assertEqual(self.req("PUT", path, ref, p2["task_token"])[0], 403)
        self.assertEqual(self.req("PUT", path, {"uri": 1}, p1["task_token"])[0], 400)
        for a in ps:
            self.assertEqual(ag.report(a, "success")[0], 200)
        cs = ag.take(2)
        c1 = [a for a in cs if a["run_id"] == "r1"][0]
        c2 = [a for a in cs if a["run_id"] == "r2"][0]
        q = "?task_id=p&map_index=-1"
        st, b = self.req("GET", f"/api/v1/task-instances/{c1['ti_id']}/xcom/out{q}", None,
                         c1["task_token"])
        self.assertEqual((st, b), (200, ref))
        st, b = self.req("GET", f"/api/v1/task-instances/{c2['ti_id']}/xcom/out{q}", None,
                         c2["task_token"])
        self.assertEqual(st, 404, b)  # run r2 has no such XCom
        st, b = self.req("GET", f"/api/v1/task-instances/{c1['ti_id']}/xcom/out{q}", None,
                         c2["task_token"])
        self.assertEqual(st, 403, b)
        # Once its try is over the token no longer reads either.
        self.assertEqual(ag.report(p1, "success")[0], 200)
        self.assertEqual(self.req("GET", path, None, p1["task_token"])[0], 403)


class ConcurrencyTest(SchedCase):
    N = 10000
    POLLERS = 8

    def test_10000_tis_8_pollers_each_assigned_once(self):
        self.boot()
        # Canonical DAG JSON is capped at 1 MiB: 5 runs of 2,000 independent tasks.
        tasks = [{"task_id": f"t{i:04d}", "command": ["true"]} for i in range(self.N // 5)]
        self.push_ok({"dag_id": "big", "fileloc": "big.yaml", "tasks": tasks,
                      "max_active_runs": 5, "max_active_tasks": 100000})
        agents = [Agent(self, f"w{i}") for i in range(self.POLLERS)]
        assigned = []
        lock = threading.Lock()
        errors = []

        def worker(ag):
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

            def call(path, body, token):
                c.request("POST", path, json.dumps(body),
                          {"Authorization": "Bearer " + token,
                           "Content-Type": "application/json"})
                r = c.getresponse()
                return r.status, json.loads(r.read() or b"null")

            # Poll until all N were handed out (however slowly the plane queues them
            # on a loaded machine), then until 3 polls in a row find nothing more.
            idle = 0
            deadline = time.monotonic() + 90 * harness.SLOW
            while idle < 3 and time.monotonic() < deadline:
                st, b = call("/api/v1/work", {"queues": ["default"], "free_slots": 32,
                                              "wait": 0.5}, ag.session)
                if st != 200:
                    errors.append((st, b))
                    return
                if not b["assignments"]:
                    with lock:
                        if len(assigned) >= self.N:
                            idle += 1
                    continue
                idle = 0
                with lock:
                    assigned.extend(a["ti_id"] for a in b["assignments"])
                for a in b["assignments"]:
                    path = f"/api/v1/task-instances/{a['ti_id']}"
                    for sfx, body in (("/start", {"try_number": a["try_number"]}),
                                      ("/state", {"try_number": a["try_number"],
                                                  "state": "success"})):
                        st, rb = call(path + sfx, body, a["task_token"])
                        if st != 200:
                            errors.append((sfx, st, rb))
            c.close()

        t0 = time.monotonic()
        for i in range(5):
            self.trigger("big", run_id=f"r{i}")
        ths = [threading.Thread(target=worker, args=(ag,)) for ag in agents]
        for t in ths:
            t.start()
        for t in ths:
            t.join(120)
        dt = time.monotonic() - t0
        self.assertEqual(errors, [])
        self.assertEqual(len(assigned), self.N)
        self.assertEqual(len(set(assigned)), self.N)
        for i in range(5):
            self.assertEqual(self.wait_run("big", f"r{i}", timeout=30)["state"], "success")
        print(f"\n10000 TIs through {self.POLLERS} pollers in {dt:.1f}s", flush=True)


if __name__ == "__main__":
    import unittest
    unittest.main()
