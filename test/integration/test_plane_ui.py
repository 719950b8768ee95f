"""The plane's web UI.

UiHttpTest (plain HTTP): the page and its files (types, caching, ETag, CSP and
the other security headers, size), the browser session (login with the admin
token for a signed HttpOnly SameSite=Strict cookie, CSRF token and Origin on
every write, logout, tampered and malformed cookies, bearer tokens unchanged)
and the admin views the UI reads (a DAG's grid, a task instance's tries, a
try's log or where it is).

UiBrowserTest: Debian's chromium, headless, driven by playwright-core
(ui_browser.mjs) through the whole scenario against a real plane and worker:
log in, agents, trigger, the grid going green, a failed task's log, clear and
rerun, pause, a wrong token; screenshots under build/ui-screenshots/. It
skips only where chromium cannot be installed (not root and missing); as root
a missing browser is a failure.
"""
import json
import os
import re
import shutil
import ssl
import subprocess
import http.client
import unittest
import urllib.request

import harness
import planefix
import workerfix
from schedfix import Agent, SchedCase, dag
from test_plane_tls import TlsMixin

CHROMIUM = "/usr/bin/chromium"
SHOTS = os.path.join(os.path.dirname(harness.BIN), "ui-screenshots")
PAGE_BUDGET = 100 * 1024


def raw(method, url, headers=None, body=None):
    """(status, headers with lower-case names, body bytes); never raises on 4xx."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    hdrs = dict(headers or {})
    if isinstance(body, dict):
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def session_cookie(set_cookie):
    m = re.match(r"remex_session=([^;]*);", set_cookie or "")
    assert m, f"no session cookie in {set_cookie!r}"
    return m.group(1)


class UiMixin:
    def login(self, token=None, origin=True):
        hdrs = {"Origin": self.url} if origin is True else ({"Origin": origin} if origin else {})
        return raw("POST", self.url + "/api/v1/ui/session", hdrs,
                   {"token": self.admin if token is None else token})

    def session(self):
        st, hd, b = self.login()
        self.assertEqual(st, 200, b)
        return session_cookie(hd["set-cookie"]), json.loads(b)["csrf_token"]

    def as_browser(self, method, path, cookie, csrf=None, origin=True, body=None):
        hdrs = {"Cookie": f"remex_session={cookie}"}
        if csrf:
            hdrs["X-CSRF-Token"] = csrf
        if origin:
            hdrs["Origin"] = self.url if origin is True else origin
        return raw(method, self.url + path, hdrs, body)


class UiHttpTest(UiMixin, SchedCase):
    def setUp(self):
        super().setUp()
        self.boot()

    def page_files(self):
        st, hd, page = raw("GET", self.url + "/")
        self.assertEqual(st, 200)
        names = re.findall(rb'(?:src|href)="(/ui/[0-9a-f]{12}/[a-z]+\.(?:js|css|svg))"', page)
        self.assertGreaterEqual(len(names), 3, page)
        return hd, page, [n.decode() for n in names]

    def test_page_and_files_headers(self):
        hd, page, names = self.page_files()
        self.assertEqual(hd["content-type"], "text/html; charset=utf-8")
        self.assertEqual(hd["cache-control"], "no-cache")
        csp = hd["content-security-policy"]
        for part in ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                     "frame-ancestors 'none'"):
            self.assertIn(part, csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertEqual(hd["x-content-type-options"], "nosniff")
        self.assertEqual(hd["x-frame-options"], "DENY")
        # No inline script or style in the page: every script names a file.
        self.assertNotRegex(page, rb"<script(?![^>]*\bsrc=)[^>]*>")
        self.assertNotIn(b"<style", page)
        self.assertNotIn(b" style=", page)
        self.assertNotIn(self.admin.encode(), page)
        st, _, _ = raw("GET", self.url + "/", {"If-None-Match": hd["etag"]})
        self.assertEqual(st, 304)
        # Every module the page loads, and the modules they import.
        seen, todo, total = set(), list(names), len(page)
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            st, h, body = raw("GET", self.url + path)
            self.assertEqual(st, 200, path)
            total += len(body)
            self.assertEqual(h["cache-control"], "public, max-age=31536000, immutable")
            self.assertRegex(h["etag"], r'^"[0-9a-f]{16}"$')
            self.assertEqual(raw("GET", self.url + path, {"If-None-Match": h["etag"]})[0], 304)
            want = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                    ".svg": "image/svg+xml"}[os.path.splitext(path)[1]]
            self.assertEqual(h["content-type"], want)
            if path.endswith(".js"):
                self.assertNotIn(b"http://", body.replace(b"http://www.w3.org/2000/svg", b""))
                self.assertNotIn(b"https://", body)
                for imp in re.findall(rb"from '\./([a-z]+\.js)'", body):
                    todo.append(os.path.dirname(path) + "/" + imp.decode())
        self.assertGreaterEqual(len(seen), 7)
        print(f"\n# first page: {total} bytes in {len(seen) + 1} files (budget {PAGE_BUDGET})")
        self.assertLess(total, PAGE_BUDGET)
        version = names[0].split("/")[2]
        self.assertEqual(raw("GET", self.url + "/ui/000000000000/app.js")[0], 404)
        self.assertEqual(raw("GET", self.url + f"/ui/{version}/nothing.js")[0], 404)
        self.assertEqual(raw("GET", self.url + f"/ui/{version}/..%2Fplane.yaml")[0], 404)

    def test_login_cookie_and_csrf(self):
        st, hd, b = self.login(token="rmxadm_wrong")
        self.assertEqual(st, 401, b)
        self.assertNotIn("set-cookie", hd)
        self.assertEqual(self.login(origin=None)[0], 403)
        self.assertEqual(self.login(origin="http://evil.example")[0], 403)
        self.assertEqual(self.login(token="")[0], 400)
        self.assertEqual(self.login(token="x" * 600)[0], 400)
        st, hd, b = self.login()
        self.assertEqual(st, 200, b)
        sc = hd["set-cookie"]
        for attr in ("Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=43200"):
            self.assertIn(attr, sc)
        self.assertNotIn("Secure", sc)  # plain HTTP
        self.assertNotIn(self.admin, sc)
        cookie, csrf = session_cookie(sc), json.loads(b)["csrf_token"]
        self.assertNotIn(self.admin, b.decode())
        # Reads need only the cookie.
        st, _, b = self.as_browser("GET", "/api/v1/admin/dags", cookie, origin=None)
        self.assertEqual(st, 200, b)
        st, _, b = self.as_browser("GET", "/api/v1/ui/session", cookie, origin=None)
        self.assertEqual((st, json.loads(b)["csrf_token"]), (200, csrf))
        self.push_ok(dag("uip", [{"task_id": "a"}]))
        path = "/api/v1/admin/dags/uip/pause"
        # Writes need the CSRF token and this plane's Origin.
        self.assertEqual(self.as_browser("POST", path, cookie)[0], 403)
        self.assertEqual(self.as_browser("POST", path, cookie, csrf="A" * 43)[0], 403)
        self.assertEqual(self.as_browser("POST", path, cookie, csrf=csrf, origin=None)[0], 403)
        self.assertEqual(self.as_browser("POST", path, cookie, csrf=csrf,
                                         origin="http://evil.example")[0], 403)
        self.assertFalse(self.req("GET", "/api/v1/admin/dags/uip", None, self.admin)[1]
                         ["is_paused"])
        st, _, b = self.as_browser("POST", path, cookie, csrf=csrf)
        self.assertEqual(st, 200, b)
        self.assertTrue(self.req("GET", "/api/v1/admin/dags/uip", None, self.admin)[1]
                        ["is_paused"])
        # Another session's CSRF token does not fit this one.
        _, other = self.session()
        self.assertEqual(self.as_browser("POST", "/api/v1/admin/dags/uip/unpause", cookie,
                                         csrf=other)[0], 403)
        # The cookie is no agent credential, and bearer tokens work as before.
        self.assertEqual(self.as_browser("POST", "/api/v1/work", cookie, csrf=csrf,
                                         body={"queues": ["default"], "free_slots": 1})[0], 401)
        self.assertEqual(self.req("GET", "/api/v1/admin/agents", None, self.admin)[0], 200)
        self.assertEqual(self.req("GET", "/api/v1/ui/session", None, self.admin)[0], 409)
        # Logout ends the session on the plane, not only in the browser.
        st, hd, b = self.as_browser("DELETE", "/api/v1/ui/session", cookie, csrf=csrf)
        self.assertEqual((st, json.loads(b)), (200, {"logged_out": True}))
        self.assertIn("Max-Age=0", hd["set-cookie"])
        self.assertEqual(self.as_browser("GET", "/api/v1/admin/dags", cookie)[0], 401)

    def test_bad_cookies_refused(self):
        cookie, csrf = self.session()
        bad = [cookie[:-1] + ("A" if cookie[-1] != "A" else "B"),  # MAC
               cookie.replace("v1.", "v1.9", 1),                    # expiry
               cookie[:40], "", "v1.1.a.b", "x" * 5000]
        for c in bad:
            st, _, b = self.as_browser("GET", "/api/v1/admin/dags", c)
            self.assertEqual(st, 401, (c[:60], b))
        # Several cookies of the name (another plane on this host sets one too):
        # the one this plane signed counts; none signed by it, 401.
        hdr = {"Cookie": f"remex_session={bad[0]}; other=1; remex_session={cookie}"}
        self.assertEqual(raw("GET", self.url + "/api/v1/admin/dags", hdr)[0], 200)
        hdr = {"Cookie": f"remex_session={bad[0]}; remex_session={bad[1]}"}
        self.assertEqual(raw("GET", self.url + "/api/v1/admin/dags", hdr)[0], 401)
        hdr = {"Cookie": f"nameless; remex_session={cookie}"}
        self.assertEqual(raw("GET", self.url + "/api/v1/admin/dags", hdr)[0], 200)
        hdr = {"Cookie": "; ".join(f"k{i}=v" for i in range(100)) + f"; remex_session={cookie}"}
        self.assertEqual(raw("GET", self.url + "/api/v1/admin/dags", hdr)[0], 401)
        hdr = {"Cookie": f"a=1; remex_session=\"{cookie}\"; b=2"}
        self.assertEqual(raw("GET", self.url + "/api/v1/admin/dags", hdr)[0], 200)
        # A session of another plane (other signing key) is not this plane's.
        log = self.plane.output()
        self.assertNotIn(cookie, log)
        self.assertNotIn(csrf, log)
        self.assertNotIn(self.admin, log)

    def test_grid_tries_and_log_locations(self):
        self.push_ok(dag("ug", [{"task_id": "a", "retries": 1, "retry_delay": 0},
                                {"task_id": "b", "upstream": ["a"]}]))
        run = self.trigger("ug", run_id="r0")["run_id"]
        ag = Agent(self, "w1")
        logf = os.path.join(self.tmp, "a1.log")
        with open(logf, "wb") as f:
            f.write(b"line one\n\xff\xfebad\xc3A bytes\nend \xe2\x82")  # invalid, cut UTF-8
        (a,) = ag.take(1)
        self.assertEqual(ag.report(a, "failed", exit_code=3, log_uri="file://" + logf)[0], 200)
        runs = [run] + [self.trigger("ug", run_id=f"r{i}")["run_id"] for i in (1, 2)]
        # Lists carry what the UI's pages show per row (one request per refresh).
        st, b = self.req("GET", "/api/v1/admin/dags", None, self.admin)
        last = b["dags"][0]["last_run"]
        self.assertEqual(last["run_id"], "r2")
        self.assertIn(last["state"], ("queued", "running"))
        st, b = self.req("GET", "/api/v1/admin/agents", None, self.admin)
        self.assertEqual((b["agents"][0]["health"], b["agents"][0]["triggers_held"]), (None, 0))
        st, g = self.req("GET", "/api/v1/admin/dags/ug/grid?limit=2", None, self.admin)
        self.assertEqual(st, 200, g)
        self.assertEqual([t["task_id"] for t in g["tasks"]], ["a", "b"])
        self.assertEqual(g["tasks"][1]["upstream"], ["a"])
        self.assertEqual([r["run_id"] for r in g["dag_runs"]], runs[1:])  # newest 2, oldest first
        st, g = self.req("GET", "/api/v1/admin/dags/ug/grid", None, self.admin)
        self.assertEqual(g["dag_runs"][0]["run_id"], "r0")
        self.assertIn(g["dag_runs"][0]["tis"]["a"], (["up_for_retry", 1], ["queued", 2]))
        self.assertEqual(g["dag_runs"][0]["tis"]["b"], ["none", 0])
        self.assertEqual(self.req("GET", "/api/v1/admin/dags/ug/grid?limit=0", None,
                                  self.admin)[0], 400)
        self.assertEqual(self.req("GET", "/api/v1/admin/dags/nope/grid", None, self.admin)[0],
                         404)
        base = f"/api/v1/admin/dags/ug/runs/{run}/tasks/a"
        harness.wait_for(lambda: self.req("GET", base, None, self.admin)[1]["try_number"] == 2
                         or None, 10, what="retry queued")
        (a2,) = ag.take(1, free_slots=1)
        self.assertEqual((a2["run_id"], a2["try_number"]), ("r0", 2))
        self.assertEqual(ag.report(a2, "success", log_uri="s3://logs/ug/a/2.log")[0], 200)
        st, t = self.req("GET", base, None, self.admin)
        self.assertEqual(st, 200, t)
        self.assertEqual(t["state"], "success")
        self.assertEqual([(x["try_number"], x["state"]) for x in t["tries"]],
                         [(1, "up_for_retry"), (2, "success")])
        self.assertEqual(t["tries"][0]["exit_code"], 3)
        self.assertEqual(t["tries"][0]["agent_name"], "w1")
        self.assertIsNotNone(t["tries"][1]["duration"])
        st, lg = self.req("GET", base + "/log?try_number=1", None, self.admin)
        self.assertEqual(st, 200, lg)
        self.assertTrue(lg["readable"])
        self.assertEqual(lg["content"], "line one\n\ufffd\ufffdbad\ufffdA bytes\nend ")
        self.assertEqual((lg["size"], lg["next_offset"]), (29, 27))  # the cut sequence waits
        st, lg = self.req("GET", base + "/log?try_number=1&offset=9", None, self.admin)
        self.assertTrue(lg["content"].startswith("\ufffd\ufffdbad"))
        st, lg = self.req("GET", base + "/log", None, self.admin)
        self.assertEqual((lg["try_number"], lg["readable"], lg["location"]),
                         (2, False, "s3://logs/ug/a/2.log"))
        self.assertIn("where its agent put it", lg["reason"])
        for q in ("?try_number=0", "?try_number=x", "?offset=-1", "?offset=1x"):
            self.assertEqual(self.req("GET", base + "/log" + q, None, self.admin)[0], 400, q)
        self.assertEqual(self.req("GET", base + "/log?try_number=7", None, self.admin)[0], 404)
        self.assertEqual(self.req("GET", f"/api/v1/admin/dags/ug/runs/{run}/tasks/zz", None,
                                  self.admin)[0], 404)
        # Only local *.log files are read; anything else is named, not opened.
        got = ag.take(3)  # b of r0, a of r1 and r2
        (b,) = [x for x in got if x["task_id"] == "b"]
        self.assertEqual(ag.report(b, "success", log_uri=f"file://{self.conf['admin_token_file']}")
                         [0], 200)
        st, lg = self.req("GET", f"/api/v1/admin/dags/ug/runs/{run}/tasks/b/log", None, self.admin)
        self.assertFalse(lg["readable"])
        self.assertNotIn("content", lg)


    def test_running_log_followed_and_clear_keeps_tries(self):
        self.push_ok(dag("ur", [{"task_id": "a"}]))
        self.trigger("ur", run_id="r")
        ag = Agent(self, "w1")
        (a,) = harness.wait_for(lambda: ag.work(wait=1) or None, 15, what="an offer")
        with ag.lock:
            ag.running[a["ti_id"]] = a
        logf = os.path.join(self.tmp, "run.log")
        with open(logf, "w") as f:
            f.write("first\n")
        # The start names where the log is being written.
        st, b = self.req("POST", f"/api/v1/task-instances/{a['ti_id']}/start",
                         {"try_number": 1, "pid": 7, "hostname": "h", "log_uri": "file://" + logf},
                         a["task_token"])
        self.assertEqual(st, 200, b)
        base = "/api/v1/admin/dags/ur/runs/r/tasks/a"
        st, lg = self.req("GET", base + "/log", None, self.admin)
        self.assertEqual((lg["readable"], lg["content"], lg["next_offset"]), (True, "first\n", 6))
        with open(logf, "a") as f:
            f.write("second\n")
        st, lg = self.req("GET", base + "/log?offset=6", None, self.admin)
        self.assertEqual((lg["content"], lg["next_offset"], lg["size"]), ("second\n", 13, 13))
        ref = {"uri": "file:///xcom/ur/r/a/total", "size": 4,
               "checksum": "sha256:" + "ab" * 32, "content_type": "application/json"}
        st, b = self.req("PUT", f"/api/v1/task-instances/{a['ti_id']}/xcom/total", ref,
                         a["task_token"])
        self.assertEqual(st, 200, b)
        st, t = self.req("GET", base, None, self.admin)
        self.assertEqual([(x["try_number"], x["state"], x["log_uri"]) for x in t["tries"]],
                         [(1, "running", "file://" + logf)])
        self.assertEqual(t["xcom"], [dict(ref, key="total")])
        self.assertEqual(ag.report(a, "failed", exit_code=1)[0], 200)
        st, b = self.req("POST", base + "/clear", {}, self.admin)
        self.assertEqual(st, 200, b)
        st, t = self.req("GET", base, None, self.admin)
        tries = [(x["try_number"], x["state"]) for x in t["tries"]]
        # Cleared (none, try 1) or already queued again (try 2): try 1 stays failed.
        self.assertIn(tries, ([(1, "failed")], [(1, "failed"), (2, "queued")]), t)
        # The next try starts without the previous try's log location.
        (a2,) = ag.take(1)
        self.assertEqual(a2["try_number"], 2)
        st, lg = self.req("GET", base + "/log", None, self.admin)
        self.assertEqual((lg["try_number"], lg["location"], lg["readable"]), (2, None, False))
        st, lg = self.req("GET", base + "/log?try_number=1", None, self.admin)
        self.assertEqual(lg["content"], "first\nsecond\n")

@unittest.skipUnless(shutil.which("openssl"), "needs the openssl CLI")
class UiTlsTest(TlsMixin, UiMixin, planefix.PlaneCase):
    def test_cookie_secure_with_tls(self):
        self.start_tls_plane()
        c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=self.ctx)
        origin = f"https://127.0.0.1:{self.port}"
        c.request("POST", "/api/v1/ui/session", body=json.dumps({"token": self.admin}),
                  headers={"Content-Type": "application/json", "Origin": origin})
        r = c.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertIn("; Secure", r.getheader("Set-Cookie"))
        # An http:// Origin is not this (https) plane.
        c.request("POST", "/api/v1/ui/session", body=json.dumps({"token": self.admin}),
                  headers={"Content-Type": "application/json",
                           "Origin": f"http://127.0.0.1:{self.port}"})
        r = c.getresponse()
        r.read()
        self.assertEqual(r.status, 403)
        c.close()


def browser_or_skip():
    """The playwright-core module folder; skips only where chromium cannot be
    installed (not root and missing)."""
    if not os.access(CHROMIUM, os.X_OK):
        if os.geteuid() != 0:
            raise unittest.SkipTest(f"{CHROMIUM} missing and not root: as root run "
                                    "apt-get install -y chromium (mk/deps-extra.txt)")
        raise AssertionError(f"{CHROMIUM} missing although root: make deps installs it")
    if not shutil.which("node"):
        if os.geteuid() != 0:
            raise unittest.SkipTest("node missing and not root")
        raise AssertionError("node missing although root")
    p = subprocess.run(["bash", os.path.join(harness.ROOT, "mk/playwright.sh")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    if p.returncode != 0:
        raise AssertionError("mk/playwright.sh failed: " + p.stderr.decode())
    return p.stdout.decode().strip().splitlines()[-1]


class UiBrowserTest(workerfix.WorkerCase):
    def test_browser_scenario(self):
        module = browser_or_skip()
        self.start_plane(heartbeat_interval="1s")
        w = self.start_worker()
        self.wait_registered(w)
        marker = os.path.join(self.tmp, "fixed")
        self.put_dag({"dag_id": "ui_etl", "schedule": None, "description": "extract, three"
                      " transforms, load", "tasks": [
                          {"task_id": "extract", "shell": "echo extracting; sleep 0.3"},
                          *[{"task_id": f"transform_{r}", "upstream": ["extract"],
                             "shell": f"echo transform {r}"} for r in ("eu", "us", "apac")],
                          {"task_id": "load", "upstream": ["transform_eu", "transform_us",
                                                           "transform_apac"],
                           "shell": "echo 'loading {{ params.n }} rows'"}],
                      "params": {"n": 3}})
        self.put_dag({"dag_id": "ui_flaky", "schedule": None, "tasks": [
            {"task_id": "fetch", "shell": f"if [ -f {marker} ]; then echo 'input found, try"
                                          " {{ try_number }}'; else echo 'boom: input missing';"
                                          " exit 3; fi"}]})
        # An import error of another bundle, and a sentinel with a failing check
        # that never heartbeats (so it goes lost).
        st, b = self.req("POST", "/api/v1/dags/manifest",
                         {"bundle": "drafts", "version": "d1", "files": [],
                          "import_errors": [{"file": "bad.yaml", "line": 3, "column": 7,
                                             "message": "tasks[0].upstream: no task 'nope'"}]},
                         self.admin)
        self.assertEqual(st, 200, b)
        st, b = self.register(self.create_token("sentinel")["value"], "s1", roles=["sentinel"])
        self.assertEqual(st, 200, b)
        st, h = self.req("POST", f"/api/v1/agents/{b['agent_id']}/health",
                         {"status": "failing",
                          "checks": [{"name": "disk", "status": "failing",
                                      "message": "/var is 97% full"},
                                     {"name": "plane", "status": "ok", "message": "reachable"}]},
                         b["session_token"])
        self.assertEqual(st, 200, h)
        os.makedirs(SHOTS, exist_ok=True)
        env = dict(os.environ, REMEX_UI_URL=self.url, REMEX_UI_TOKEN=self.admin,
                   REMEX_UI_SHOTS=SHOTS, REMEX_UI_MARKER=marker, REMEX_UI_CHROMIUM=CHROMIUM,
                   REMEX_UI_PROFILE=os.path.join(self.tmp, "chromium-profile"),
                   REMEX_UI_PLAYWRIGHT=module, REMEX_UI_SLOW=str(harness.SLOW))
        script = os.path.join(harness.ROOT, "test/integration/ui_browser.mjs")
        p = subprocess.run(["node", script], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=240 * harness.SLOW)
        out = p.stdout.decode(errors="replace")
        print("\n" + "\n".join(line for line in out.splitlines() if line.startswith("#")))
        self.assertEqual(p.returncode, 0, out)
        res = {}
        for line in out.splitlines():
            if line.startswith("{"):
                res.update(json.loads(line))
        # What the browser did is what the plane holds.
        st, d = self.req("GET", "/api/v1/admin/dags/ui_etl", None, self.admin)
        self.assertTrue(d["is_paused"])
        run = self.run_info("ui_etl", res["etl_run"])
        self.assertEqual(run["state"], "success")
        self.assertEqual(run["conf"], {"rows": 3})
        st, t = self.req("GET", f"/api/v1/admin/dags/ui_flaky/runs/{res['flaky_run']}/tasks/fetch",
                         None, self.admin)
        # Try 1 failed, try 2 succeeded after the clear and was then marked failed.
        self.assertEqual([(x["try_number"], x["state"], x["reason"]) for x in t["tries"]],
                         [(1, "failed", "exit code 3"), (2, "failed", "marked failed")])
        self.assertEqual(t["tries"][1]["exit_code"], 0)
        st, a = self.req("GET", "/api/v1/admin/agents", None, self.admin)
        self.assertEqual(a["agents"][0]["desired_state"], "run")
        for name in ("login", "agents", "dags", "dag-grid", "task-log", "task-rerun"):
            self.assertGreater(os.path.getsize(os.path.join(SHOTS, f"ui-{name}.png")), 1000)
        self.assertLess(res["first_page_bytes"], PAGE_BUDGET)


if __name__ == "__main__":
    unittest.main()
