"""remex-dag-processor against a real remex-plane on loopback: scan, manifest,
upload of only what the plane lacks, import errors with file:line:col, the
file-hash cache across restarts, --once, --lint, DAGs that disappear, DAG ids
defined twice, and a worker that runs a task at the version its DAG was
scheduled with (or fails it, naming both versions)."""
import json
import os
import re
import shutil
import signal
import sqlite3
import unittest

import harness
import workerfix

DAG = """dag_id: {id}
schedule: null
start_date: 2026-01-01
tasks:
  - task_id: t
    command: [./run.sh]
"""

BROKEN = """dag_id: broken
tasks:
  - task_id: a
    command: [true]
    retries: many
"""


def put_counts(text):
    """(manifest posts, DAG upload requests: PUT one and bulk) from the plane's /metrics."""
    def total(route, method):
        n = 0
        for m in re.finditer(r'remex_plane_http_requests_total\{method="%s",route="%s",'
                             r'code="\d+"\} (\d+)' % (method, re.escape(route)), text):
            n += int(m.group(1))
        return n
    return (total("/api/v1/dags/manifest", "POST"),
            total("/api/v1/dags/{dag_id}", "PUT") + total("/api/v1/dags/bulk", "POST"))


def uploaded(out):
    """The DAGs the last sync of a dag-processor's log uploaded."""
    m = re.findall(r"(\d+) uploaded, \d+ import errors", out)
    return int(m[-1]) if m else None


class DagProcessorTest(workerfix.WorkerCase):
    def setUp(self):
        super().setUp()
        self.start_plane()
        self.tok = self.token_file(self.create_token()["value"], "dp.token")
        self.state = os.path.join(self.tmp, "dpstate")
        self.ndp = 0

    def dp_yaml(self, extra_bundle="", refresh="1s", extra_dp=""):
        return self.write("dp.yaml", (
            "plane:\n"
            f"  url: {self.url}\n"
            f"  token: {{file: {self.tok}}}\n"
            f"state_dir: {self.state}\n"
            "bundles:\n"
            f"  - {{name: main, path: {self.bundle}{extra_bundle}}}\n"
            "dag_processor:\n"
            f"  refresh_interval: {refresh}\n" + extra_dp))

    def start_dp(self, *args, refresh="1s"):
        self.ndp += 1
        return self.spawn(f"dp{self.ndp}", [self.bin("remex-dag-processor"), "-c",
                                            self.dp_yaml(refresh=refresh), "--log-level", "debug",
                                            *args])

    def once(self, extra_dp=""):
        self.ndp += 1
        p = self.spawn(f"dp{self.ndp}", [self.bin("remex-dag-processor"), "-c",
                                         self.dp_yaml(extra_dp=extra_dp), "--log-level", "debug",
                                         "--once"])
        rc = p.wait(30)
        return rc, p.output()

    def counts(self):
        return put_counts(self.req("GET", "/metrics", raw=True)[1].decode())

    def dags(self):
        st, b = self.req("GET", "/api/v1/admin/dags", None, self.admin)
        self.assertEqual(st, 200, b)
        return {d["dag_id"]: d for d in b["dags"]}

    def import_errors(self):
        st, b = self.req("GET", "/api/v1/admin/import-errors", None, self.admin)
        self.assertEqual(st, 200, b)
        return b["import_errors"]

    def test_once_uploads_only_what_changed(self):
        self.write("bundle/a.yaml", DAG.format(id="a"))
        self.write("bundle/sub/b.yml", DAG.format(id="b"))
        self.write("bundle/run.sh", "#!/bin/sh\necho one\n", mode=0o755)
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.counts(), (1, 1))  # both DAGs in one bulk upload
        self.assertEqual(uploaded(out), 2)
        dags = self.dags()
        self.assertEqual(set(dags), {"a", "b"})
        ver = dags["a"]["bundle"]["version"]
        self.assertRegex(ver, r"^sha256:[0-9a-f]{64}$")
        self.assertEqual(dags["a"]["bundle"]["name"], "main")
        self.assertEqual(dags["b"]["bundle"]["version"], ver)
        # The figures for the sentinel.
        with open(os.path.join(self.state, "dag_processor", "metrics.prom")) as f:
            prom = f.read()
        self.assertIn('remex_dag_processor_files_parsed_total{bundle="main"} 2.000', prom)
        self.assertIn('remex_dag_processor_uploads_total{bundle="main"} 2.000', prom)
        self.assertIn('remex_dag_processor_import_errors{bundle="main"} 0.000', prom)
        self.assertIn('remex_dag_processor_bundle_version{bundle="main",version="%s"} 1' % ver,
                      prom)
        self.assertRegex(prom, r'last_refresh_timestamp_seconds\{bundle="main"\} 1\d{9}\.\d{3}')
        # A restart with nothing changed reads no file (cache on disk) and uploads nothing.
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertIn("0 parsed", out)
        with open(os.path.join(self.state, "dag_processor", "metrics.prom")) as f:
            self.assertIn('remex_dag_processor_cache_hits_total{bundle="main"} 2.000', f.read())
        self.assertEqual(self.counts()[1], 1)
        self.assertEqual(uploaded(out), 0)
        # One DAG changed: one upload. The other DAG moves to the new version unchanged.
        self.write("bundle/a.yaml", DAG.format(id="a") + "tags: [x]\n")
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.counts()[1], 2)
        self.assertEqual(uploaded(out), 1)
        dags = self.dags()
        self.assertNotEqual(dags["a"]["bundle"]["version"], ver)
        self.assertEqual(dags["b"]["bundle"]["version"], dags["a"]["bundle"]["version"])
        # A DAG file removed: its DAG becomes inactive.
        os.unlink(os.path.join(self.bundle, "sub/b.yml"))
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        dags = self.dags()
        self.assertFalse(dags["b"]["is_active"])
        self.assertTrue(dags["a"]["is_active"])

    def test_import_errors_positioned_and_cleared(self):
        self.write("bundle/good.yaml", DAG.format(id="good"))
        self.write("bundle/broken.yaml", BROKEN)
        rc, out = self.once()
        self.assertEqual(rc, 1, out)  # --once: non-zero with any import error
        self.assertIn("broken.yaml:5:14:", out)
        errs = self.import_errors()
        self.assertEqual(len(errs), 1, errs)
        e = errs[0]
        self.assertEqual((e["bundle"], e["file"], e["line"], e["column"]),
                         ("main", "broken.yaml", 5, 14))
        self.assertIn("retries", e["message"])
        # The error carries the bundle version it was found in: the good DAG's.
        ver = self.dags()["good"]["bundle"]["version"]
        self.assertRegex(ver, r"^sha256:[0-9a-f]{64}$")
        self.assertEqual(e["version"], ver)
        # remexctl shows it with its position and the version.
        ctl = self.spawn("ctl", [self.bin("remexctl"), "--plane", self.url, "--token-file",
                                 self.conf["admin_token_file"], "import-errors"])
        self.assertEqual(ctl.wait(15), 0, ctl.output())
        self.assertRegex(ctl.output(), r"main\s+%s\s+broken\.yaml:5:14\s+.*retries"
                         % re.escape(ver[:19]))
        # The broken file hides no other DAG.
        self.assertIn("good", self.dags())
        self.assertNotIn("broken", self.dags())
        # Fixed: the error is cleared.
        self.write("bundle/broken.yaml", BROKEN.replace("many", "2"))
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.import_errors(), [])
        self.assertIn("broken", self.dags())

    def test_one_file_per_rule_exact_messages(self):
        # Each file breaks one rule; the plane shows each problem with its exact position
        # and message, and the valid file's DAG is synced beside them.
        bad = {
            "unknown_key.yaml": ("dag_id: a\ntasks:\n  - task_id: t\n    comand: [true]\n",
                                 [(4, 5, "unknown key 'comand' (did you mean 'command'?)")]),
            "unknown_upstream.yaml": (
                "dag_id: b\ntasks:\n  - task_id: t\n    command: [true]\n    upstream: [nope]\n",
                [(5, 16, "tasks[0].upstream[0]: unknown task 'nope'")]),
            "cycle.yaml": ("dag_id: c\ntasks:\n  - task_id: x\n    command: [true]\n"
                           "    upstream: [y]\n  - task_id: y\n    command: [true]\n"
                           "    upstream: [x]\n", [(3, 5, "tasks: cycle x -> y -> x")]),
            "bad_cron.yaml": ("dag_id: d\nschedule: \"61 * * * *\"\ntasks:\n  - task_id: t\n"
                              "    command: [true]\n",
                              [(2, 11, "schedule: minute field: value 61 out of range 0-59 "
                                       "(column 1)")]),
            "bad_id.yaml": ("dag_id: \"bad id!\"\ntasks:\n  - task_id: t\n    command: [true]\n",
                            [(1, 9, "dag_id: expected id matching [A-Za-z0-9_.-]{1,250}")]),
            "bad_duration.yaml": ("dag_id: f\ntasks:\n  - task_id: t\n    command: [true]\n"
                                  "    retry_delay: soon\n",
                                  [(5, 18, "retry_delay: expected a duration like 30s, 5m, 1h30m "
                                           "or a number of seconds")]),
            "no_command.yaml": ("dag_id: g\ntasks:\n  - task_id: t\n",
                                [(3, 5, "tasks[0]: exactly one of command and shell is required")]),
            "dup_task.yaml": ("dag_id: h\ntasks:\n  - task_id: t\n    command: [true]\n"
                              "  - task_id: t\n    command: [true]\n",
                              [(5, 14, "tasks[1].task_id: duplicate task id 't'")]),
            "bad_rule.yaml": ("dag_id: k\ntasks:\n  - task_id: t\n    command: [true]\n"
                              "    trigger_rule: sometimes\n",
                              [(5, 19, "trigger_rule: unknown trigger rule (see "
                                       "docs/dag-format.md)")]),
            "alias.yaml": ("a: &x 1\nb: *x\n", [(1, 4, "anchors are not supported")]),
            "empty.yaml": ("", [(1, 1, "no DAG in the file")]),
        }
        for name, (text, _) in bad.items():
            self.write("bundle/" + name, text)
        self.write("bundle/ok.yaml", DAG.format(id="ok"))
        rc, out = self.once()
        self.assertEqual(rc, 1, out)
        want = sorted((f, l, c, m) for f, (_, errs) in bad.items() for (l, c, m) in errs)
        got = sorted((e["file"], e["line"], e["column"], e["message"])
                     for e in self.import_errors())
        self.assertEqual(got, want)
        self.assertEqual(set(self.dags()), {"ok"})
        # --lint says the same, file by file.
        p = self.spawn("lint-all", [self.bin("remex-dag-processor"), "--lint",
                                    *[os.path.join(self.bundle, n) for n in sorted(bad)]])
        self.assertEqual(p.wait(15), 1)
        for f, l, c, m in want:
            self.assertIn(f"{os.path.join(self.bundle, f)}:{l}:{c}: {m}\n", p.output())

    def test_dag_id_in_two_files(self):
        self.write("bundle/one.yaml", DAG.format(id="same"))
        self.write("bundle/two.yaml", "# another copy\n" + DAG.format(id="same"))
        self.write("bundle/other.yaml", DAG.format(id="other"))
        rc, out = self.once()
        self.assertEqual(rc, 1, out)
        errs = sorted((e["file"], e["line"], e["column"], e["message"])
                      for e in self.import_errors())
        self.assertEqual(errs, [
            ("one.yaml", 1, 1, "dag_id 'same' is also defined in two.yaml"),
            ("two.yaml", 2, 1, "dag_id 'same' is also defined in one.yaml"),
        ])
        # A first scan uploads DAGs while it reads the files (streamed): the copy read
        # first may reach the plane before the second is read; the manifest then leaves
        # it out, so it is never active (never scheduled).
        dags = self.dags()
        self.assertEqual({d for d, x in dags.items() if x["is_active"]}, {"other"})
        self.assertLessEqual(set(dags), {"other", "same"})

    def test_running_rescans_and_syncs_changes(self):
        self.write("bundle/a.yaml", DAG.format(id="a"))
        p = self.start_dp()
        p.wait_output("registered as agent", 15)
        harness.wait_for(lambda: "a" in self.dags(), 15, 0.1, "dag a on the plane")
        # The first scan's DAGs reach the plane while it reads them; the sync ends after.
        harness.wait_for(lambda: " on the plane: " in p.output(), 15, 0.1, "the first sync")
        before = self.counts()
        # Unchanged rescans send nothing: no manifest, no upload (the plane's counters).
        n = p.output().count("unchanged (version")
        harness.wait_for(lambda: p.output().count("unchanged (version") >= n + 2, 15, 0.1,
                         "two unchanged rescans")
        self.assertEqual(self.counts(), before)
        self.write("bundle/c.yaml", DAG.format(id="c"))
        harness.wait_for(lambda: "c" in self.dags(), 15, 0.1, "dag c on the plane")
        self.write("bundle/bad.yaml", "dag_id: [\n")
        harness.wait_for(lambda: self.import_errors(), 15, 0.1, "the import error")
        self.assertEqual(self.import_errors()[0]["file"], "bad.yaml")
        p.signal(signal.SIGTERM)
        self.assertEqual(p.wait(15), 0, p.output())
        self.assertIn("drained", p.output())
        self.assertNotIn(open(self.tok).read().strip(), p.output())

    def test_inotify_sees_changes_between_rescans(self):
        # The periodic rescan is an hour away: only inotify can see these changes.
        self.write("bundle/a.yaml", DAG.format(id="a"))
        self.write("bundle/sub/x.yaml", DAG.format(id="x"))
        p = self.start_dp(refresh="1h")
        harness.wait_for(lambda: "x" in self.dags(), 15, 0.1, "dags on the plane")
        # The first scan's DAGs reach the plane while it reads them; the sync ends after.
        harness.wait_for(lambda: " on the plane: " in p.output(), 15, 0.1, "the first sync")
        self.write("bundle/b.yaml", DAG.format(id="b"))           # new file in the root
        self.write("bundle/sub/y.yaml", DAG.format(id="y"))       # new file in a sub-folder
        harness.wait_for(lambda: {"b", "y"} <= set(self.dags()), 15, 0.1, "new dags")
        os.rename(os.path.join(self.bundle, "sub/x.yaml"),
                  os.path.join(self.bundle, "sub/.x.yaml.bak"))   # moved away (now a dot-file)
        harness.wait_for(lambda: not self.dags()["x"]["is_active"], 15, 0.1, "x inactive")
        self.write("bundle/.swap", "editor scratch\n")            # dot-files change nothing
        self.assertIn("changed on disk: rescanning", p.output())
        p.signal(signal.SIGTERM)
        self.assertEqual(p.wait(15), 0, p.output())

    def test_plane_unreachable_then_back(self):
        # Through a TCP proxy the test can pause: a manifest that cannot be delivered is
        # retried with backoff, and the change reaches the plane once it is back.
        prox = self.proxy(self.port)
        real = self.url
        self.url = f"http://127.0.0.1:{prox.port}"
        cfg = self.dp_yaml(refresh="1h")
        self.url = real
        self.write("bundle/a.yaml", DAG.format(id="a"))
        p = self.spawn("dp-proxy", [self.bin("remex-dag-processor"), "-c", cfg, "--log-level",
                                    "debug"])
        harness.wait_for(lambda: "a" in self.dags(), 15, 0.1, "dag a on the plane")
        # The first scan's DAGs reach the plane while it reads them; the sync ends after.
        harness.wait_for(lambda: " on the plane: " in p.output(), 15, 0.1, "the first sync")
        prox.cut()
        prox.pause()
        self.write("bundle/b.yaml", DAG.format(id="b"))
        # It keeps trying while the plane is away (a retry that found the session "lost"
        # once waited for a re-registration that never came).
        harness.wait_for(lambda: p.output().count("retrying") >= 2, 20, 0.1, "two failed syncs")
        self.assertNotIn("b", self.dags())
        prox.resume()
        harness.wait_for(lambda: "b" in self.dags(), 30, 0.1, "dag b once the plane is back")
        p.signal(signal.SIGTERM)
        self.assertEqual(p.wait(15), 0, p.output())

    def test_drain_with_no_plane_drops_the_streamed_batches(self):
        # The plane cannot be reached: the first scan's batches wait for a session that
        # never comes. SIGTERM drops them and the role exits (before, the drain waited on
        # them until a second signal).
        prox = self.proxy(self.port)
        prox.pause()
        real = self.url
        self.url = f"http://127.0.0.1:{prox.port}"
        cfg = self.dp_yaml(refresh="1h")
        self.url = real
        for i in range(20):
            self.write(f"bundle/d{i:02d}.yaml", DAG.format(id=f"d{i:02d}"))
        p = self.spawn("dp-nop", [self.bin("remex-dag-processor"), "-c", cfg, "--log-level",
                                  "debug"])
        p.wait_output("20 DAG files (20 parsed)", 15)
        p.signal(signal.SIGTERM)
        self.assertEqual(p.wait(15), 0, p.output())
        self.assertIn("drained", p.output())
        prox.resume()

    def test_corrupt_cache_is_ignored(self):
        self.write("bundle/a.yaml", DAG.format(id="a"))
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        with open(os.path.join(self.state, "dag_processor", "main.cache.json"), "w") as f:
            f.write('{"format": 1, "files": [')
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertIn("file-hash cache ignored", out)
        self.assertIn("1 parsed", out)

    def test_bulk_upload_in_batches(self):
        # 1,100 DAGs: more than one bulk request may carry (1,000), so two requests, and
        # every DAG on the plane at the bundle's version.
        for i in range(1100):
            self.write(f"bundle/g{i // 100}/d{i:04d}.yaml", DAG.format(id=f"d{i:04d}"))
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.counts(), (1, 2))
        self.assertEqual(uploaded(out), 1100)
        dags = self.dags()
        self.assertEqual(len(dags), 1100)
        self.assertEqual(len({d["bundle"]["version"] for d in dags.values()}), 1)
        # A restart with one file changed uploads that DAG alone.
        self.write("bundle/g3/d0342.yaml", DAG.format(id="d0342") + "tags: [new]\n")
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.counts(), (2, 3))
        self.assertEqual(uploaded(out), 1)
        # Every other DAG moved to the new version with the manifest (one UPDATE).
        vers = {d["bundle"]["version"] for d in self.dags().values()}
        self.assertEqual(len(vers), 1, vers)
        self.assertNotIn(dags["d0000"]["bundle"]["version"], vers)

    def test_batches_shrink_when_the_plane_refuses_their_size(self):
        # A plane with a small body cap: the first batch (about 512 KiB) is refused with
        # 413; the dag-processor names body_max, halves its batches and gets there.
        self.stop_plane()
        self.start_plane(body_max="96KiB")
        self.tok = self.token_file(self.create_token()["value"], "dp.token")
        pad = "# " + "x" * 200 + "\n"
        for i in range(300):
            self.write(f"bundle/d{i:03d}.yaml", DAG.format(id=f"d{i:03d}") +
                       f"description: {'y' * 600}\n" + pad)
        p = self.start_dp()
        harness.wait_for(lambda: len(self.dags()) == 300, 60, 0.2, "300 dags on the plane")
        self.assertIn("refused", p.output())
        self.assertIn("(HTTP 413): raise body_max", p.output())
        # The first scan's streamed batch was refused too: the stream stopped and the
        # sync after the manifest uploaded what the plane lacked.
        self.assertIn("streamed upload stopped", p.output())
        p.signal(signal.SIGTERM)
        self.assertEqual(p.wait(15), 0, p.output())

    def test_dag_larger_than_body_max_goes_alone_with_put(self):
        # A plane whose body_max (64 KiB) is smaller than one DAG (~200 KiB canonical):
        # the bulk route refuses every batch holding it (413), so it goes alone through
        # PUT /api/v1/dags/{dag_id} (which takes up to 8 MiB); the small DAGs go in bulk.
        self.stop_plane()
        self.start_plane(body_max="64KiB")
        self.tok = self.token_file(self.create_token()["value"], "dp.token")
        tasks = "".join(f"  - task_id: t{i:04d}\n    command: [./run.sh, {'a' * 100}]\n"
                        for i in range(400))
        self.write("bundle/big.yaml", "dag_id: big\nschedule: null\nstart_date: 2026-01-01\n"
                   "tasks:\n" + tasks)
        for i in range(3):
            self.write(f"bundle/s{i}.yaml", DAG.format(id=f"s{i}"))
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertIn("(HTTP 413)", out)
        self.assertIn("big is too large for a bulk request: uploading it alone (PUT)", out)
        self.assertEqual(uploaded(out), 4, out)
        dags = self.dags()
        self.assertEqual(set(dags), {"big", "s0", "s1", "s2"})
        metrics = self.req("GET", "/metrics", raw=True)[1].decode()
        puts = [int(m.group(2)) for m in re.finditer(
            r'remex_plane_http_requests_total\{method="PUT",route="/api/v1/dags/\{dag_id\}",'
            r'code="(\d+)"\} (\d+)', metrics)]
        self.assertEqual(sum(puts), 1, metrics)  # one PUT, for the big DAG only
        self.assertIn('method="PUT",route="/api/v1/dags/{dag_id}",code="200"} 1', metrics)
        st, b = self.req("GET", "/api/v1/admin/dags/big", None, self.admin)
        self.assertEqual(st, 200, b)
        self.assertGreater(len(json.dumps(b)), 150 * 1024)
        self.assertEqual(len(b["dag"]["tasks"]), 400)
        self.assertEqual(dags["big"]["bundle"]["version"], dags["s0"]["bundle"]["version"])
        # The plane holds each DAG at the hash the dag-processor lists: a restart's
        # manifest is answered with nothing missing, so nothing is uploaded again.
        manifests, _ = self.counts()
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.counts()[0], manifests + 1)
        self.assertEqual(uploaded(out), 0, out)
        self.assertEqual(sum(int(m.group(2)) for m in re.finditer(
            r'remex_plane_http_requests_total\{method="PUT",route="/api/v1/dags/\{dag_id\}",'
            r'code="(\d+)"\} (\d+)', self.req("GET", "/metrics", raw=True)[1].decode())), 1)

    def test_batches_refused_at_the_smallest_size_go_one_by_one(self):
        # body_max (12 KiB) below the smallest batch (16 KiB): each 413 halves the batches
        # down to 16 KiB, then a refused batch's DAGs go one by one with PUT; the sync
        # ends with every DAG on the plane (no endless halving or retry).
        self.stop_plane()
        self.start_plane(body_max="12KiB")
        self.tok = self.token_file(self.create_token()["value"], "dp.token")
        for i in range(30):
            self.write(f"bundle/d{i:02d}.yaml", DAG.format(id=f"d{i:02d}") +
                       f"description: {'y' * 900}\n")
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertIn("uploading the", out)
        self.assertIn("DAGs of a refused batch one by one (PUT)", out)
        self.assertEqual(uploaded(out), 30, out)
        self.assertEqual(set(self.dags()), {f"d{i:02d}" for i in range(30)})
        metrics = self.req("GET", "/metrics", raw=True)[1].decode()
        puts = {m.group(1): int(m.group(2)) for m in re.finditer(
            r'remex_plane_http_requests_total\{method="PUT",route="/api/v1/dags/\{dag_id\}",'
            r'code="(\d+)"\} (\d+)', metrics)}
        self.assertEqual(set(puts), {"200"}, metrics)
        self.assertGreaterEqual(puts["200"], 10, metrics)
        self.assertLessEqual(puts["200"], 30, metrics)

    def test_parse_time_cap(self):
        # A file that takes far more CPU than the cap to parse (80,000 params, about 1 MB)
        # becomes an import error naming the cap; the other file's DAG is synced.
        self.write("bundle/good.yaml", DAG.format(id="good"))
        self.write("bundle/huge.yaml", DAG.format(id="huge") + "params:\n" +
                   "".join(f"  k{i}: 1\n" for i in range(80000)))
        rc, out = self.once(extra_dp="  parse_timeout: 5ms\n")
        self.assertEqual(rc, 1, out)
        errs = self.import_errors()
        self.assertEqual(len(errs), 1, errs)
        self.assertEqual(errs[0]["file"], "huge.yaml")
        self.assertEqual(errs[0]["message"], "parsing took longer than the 5 ms cap per file")
        self.assertGreater(errs[0]["line"], 1)  # where the parse was when the cap passed
        self.assertEqual(set(self.dags()), {"good"})
        # The timed-out file is not cached as broken: with the default cap it parses.
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.import_errors(), [])
        self.assertEqual(set(self.dags()), {"good", "huge"})

    def test_reconciliation_brings_back_a_deleted_dag(self):
        # Unchanged rescans send nothing until reconcile_interval has passed since the
        # plane took the manifest; then it goes again and the plane gets back a DAG an
        # admin deleted.
        self.write("bundle/a.yaml", DAG.format(id="a"))
        self.write("bundle/b.yaml", DAG.format(id="b"))
        self.ndp += 1
        p = self.spawn(f"dp{self.ndp}", [self.bin("remex-dag-processor"), "-c",
                                         self.dp_yaml(extra_dp="  reconcile_interval: 3s\n"),
                                         "--log-level", "debug"])
        harness.wait_for(lambda: {"a", "b"} <= set(self.dags()), 15, 0.1, "dags on the plane")
        st, b = self.req("DELETE", "/api/v1/admin/dags/b", None, self.admin)
        self.assertEqual(st, 200, b)
        manifests = self.counts()[0]
        harness.wait_for(lambda: "b" in self.dags(), 20, 0.1, "dag b back on the plane")
        self.assertEqual(self.counts()[0], manifests + 1)
        self.assertIn("unchanged (version", p.output())  # rescans in between sent nothing
        p.signal(signal.SIGTERM)
        self.assertEqual(p.wait(15), 0, p.output())

    def test_lint(self):
        good = self.write("good.yaml", DAG.format(id="g"))
        bad = self.write("bad.yaml", BROKEN)
        dup = self.write("dup.yaml", DAG.format(id="g"))
        p = self.spawn("lint1", [self.bin("remex-dag-processor"), "--lint", good])
        self.assertEqual(p.wait(10), 0, p.output())
        self.assertIn("1 file OK (1 DAG)", p.output())
        p = self.spawn("lint2", [self.bin("remex-dag-processor"), "--lint", good, bad, dup])
        self.assertEqual(p.wait(10), 1, p.output())
        out = p.output()
        self.assertIn(bad + ":5:14: ", out)
        self.assertIn(good + ":1:1: dag_id 'g' is also defined in " + dup, out)
        self.assertIn(dup + ":1:1: dag_id 'g' is also defined in " + good, out)
        p = self.spawn("lint3", [self.bin("remex-dag-processor"), "--lint"])
        self.assertEqual(p.wait(10), 2, p.output())
        p = self.spawn("lint4", [self.bin("remex-dag-processor"), "--lint",
                                 os.path.join(self.tmp, "nope.yaml")])
        self.assertEqual(p.wait(10), 1, p.output())
        self.assertIn("nope.yaml:1:1: cannot read the file", p.output())

    def test_task_runs_at_its_version(self):
        self.write("bundle/v.yaml", DAG.format(id="v"))
        self.script("run.sh", "#!/bin/sh\necho version-one\n")
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        ver1 = self.dags()["v"]["bundle"]["version"]
        tok = self.create_token()["value"]
        self.agent_token_path = self.token_file(tok)
        cfg = self.write("w.yaml", (
            "plane:\n"
            f"  url: {self.url}\n"
            f"  token: {{file: {self.agent_token_path}}}\n"
            f"state_dir: {self.tmp}/agentstate\n"
            "worker:\n  name: w1\n  slots: 2\n"
            f"  state_dir: {self.tmp}/wstate\n  log_dir: {self.tmp}/logs\n  poll_wait: 10s\n"
            "bundles:\n"
            f"  - {{name: main, path: {self.bundle}}}\n"
            f"xcom:\n  store: file://{self.tmp}/xcom\n"))
        self.logdir = os.path.join(self.tmp, "logs")
        w = self.spawn("worker", [self.bin("remex-worker"), "-c", cfg, "--log-level", "debug"])
        self.wait_registered(w)
        st, _ = self.req("POST", "/api/v1/admin/dags/v/unpause", {}, self.admin)
        run = self.trigger("v")
        b = self.wait_run("v", run)
        self.assertEqual(b["state"], "success", b)
        self.assertIn("version-one", self.task_log("v", run, "t"))
        # The folder changes after the DAG was scheduled at ver1: the task runs the snapshot of
        # ver1 the worker took (the failure without one: test_git_bundle.LocalSnapshotTest).
        self.script("run.sh", "#!/bin/sh\necho version-two\n")
        run2 = self.trigger("v")
        b = self.wait_run("v", run2)
        self.assertEqual(b["state"], "success", b)
        self.assertIn("version-one", self.task_log("v", run2, "t"))
        # Once the dag-processor synced the new version, tasks run the new code.
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertNotEqual(self.dags()["v"]["bundle"]["version"], ver1)
        run3 = self.trigger("v")
        b = self.wait_run("v", run3)
        self.assertEqual(b["state"], "success", b)
        self.assertIn("version-two", self.task_log("v", run3, "t"))

    def test_middle_version_has_a_snapshot(self):
        # The folder changes twice between two looks of the worker (its own snapshots come
        # every hour here): the version in between was synced by the dag-processor, which
        # took its snapshot before sending it, so tasks scheduled on it run it. Before, they
        # failed naming both versions (no snapshot of the middle version on this agent).
        self.write("bundle/v.yaml", DAG.format(id="v"))
        self.script("run.sh", "#!/bin/sh\necho version-one\n")
        tok = self.create_token()["value"]
        self.agent_token_path = self.token_file(tok)
        cfg = self.write("agent.yaml", (
            "plane:\n"
            f"  url: {self.url}\n"
            f"  token: {{file: {self.agent_token_path}}}\n"
            f"state_dir: {self.state}\n"
            "worker:\n  name: w1\n  slots: 2\n"
            f"  state_dir: {self.tmp}/wstate\n  log_dir: {self.tmp}/logs\n  poll_wait: 10s\n"
            "bundles:\n"
            f"  - {{name: main, path: {self.bundle}}}\n"
            "dag_processor:\n  refresh_interval: 1h\n"
            f"xcom:\n  store: file://{self.tmp}/xcom\n"))
        self.logdir = os.path.join(self.tmp, "logs")

        def once():
            self.ndp += 1
            p = self.spawn(f"dp{self.ndp}", [self.bin("remex-dag-processor"), "-c", cfg,
                                             "--log-level", "debug", "--once"])
            self.assertEqual(p.wait(30), 0, p.output())
            return p.output()
        once()
        ver1 = self.dags()["v"]["bundle"]["version"]
        w = self.spawn("worker", [self.bin("remex-worker"), "-c", cfg, "--log-level", "debug"])
        self.wait_registered(w)
        self.req("POST", "/api/v1/admin/dags/v/unpause", {}, self.admin)
        self.script("run.sh", "#!/bin/sh\necho version-two\n")
        out = once()
        ver2 = self.dags()["v"]["bundle"]["version"]
        self.assertNotEqual(ver2, ver1)
        self.script("run.sh", "#!/bin/sh\necho version-three\n")
        run = self.trigger("v")
        b = self.wait_run("v", run)
        self.assertEqual(b["state"], "success", b)
        self.assertIn("version-two", self.task_log("v", run, "t"))
        self.assertIn("snapshot of version %s taken" % ver2, out)
        snaps = os.path.join(self.state, "bundles", "main")
        self.assertTrue(os.path.isdir(os.path.join(snaps, ver2[7:])), os.listdir(snaps))
        # An unchanged rescan takes no second snapshot of the same version.
        self.script("run.sh", "#!/bin/sh\necho version-two\n")
        out = once()
        self.assertNotIn("snapshot of version", out)

    def test_cold_scan_uploads_while_it_scans(self):
        # With no file-hash cache every file is parsed: the DAGs go to the plane in bulk
        # batches while the scan goes on (their models freed once encoded), so the manifest
        # that follows finds nothing missing. Before, every model was held until the
        # manifest's answer listed all of them as missing.
        for i in range(40):
            self.write(f"bundle/d{i:02d}.yaml", DAG.format(id=f"d{i:02d}"))
        rc, out = self.once(extra_dp="  # streamed\n")
        self.assertEqual(rc, 0, out)
        self.assertIn("40 DAGs streamed while scanning", out)
        self.assertEqual(uploaded(out), 40)
        self.assertRegex(self.plane.output(), r"manifest of bundle main at sha256:[0-9a-f]{64}: "
                                              r"0 DAGs missing")
        dags = self.dags()
        self.assertEqual(len(dags), 40)
        self.assertTrue(all(d["is_active"] for d in dags.values()))
        self.assertEqual({d["bundle"]["version"] for d in dags.values()},
                         {dags["d00"]["bundle"]["version"]})
        # A restart with the cache parses nothing and streams nothing.
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertNotIn("streamed while scanning", out)
        self.assertEqual(uploaded(out), 0)

    def test_lost_cache_streams_one_batch_to_a_plane_that_has_the_dags(self):
        # About 2 MB of DAGs: several streamed batches of about 512 KiB. With the cache lost
        # and the plane keeping every DAG, the first batch comes back all "unchanged": the
        # stream stops there (the batch in flight beside it is answered too) and the
        # manifest finds nothing missing (before: every batch was sent again).
        for i in range(1000):
            self.write(f"bundle/d{i:04d}.yaml", DAG.format(id=f"d{i:04d}") +
                       f"description: {'z' * 1500}\n")
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertIn("1000 DAGs streamed while scanning", out)
        first = self.counts()
        self.assertGreaterEqual(first[1], 5, out)
        shutil.rmtree(os.path.join(self.state, "dag_processor"))
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertIn("the plane already has the DAGs streamed so far", out)
        again = self.counts()
        self.assertEqual(again[0], first[0] + 1)
        self.assertLessEqual(again[1] - first[1], 2)  # the stream's window
        self.assertEqual(len(self.dags()), 1000)

    def rows(self):
        """dag_id -> (bundle_version, version_follows) of the plane's dags rows, read with
        the plane stopped (it holds its database exclusively), which is then started again
        (so the versions are read back from the store each time)."""
        self.assertEqual(self.stop_plane(), 0)
        db = sqlite3.connect("file:%s?mode=ro" % self.conf["db_path"], uri=True, timeout=10)
        try:
            return {r[0]: (r[1], r[2]) for r in db.execute(
                "SELECT dag_id, bundle_version, version_follows FROM dags")}
        finally:
            db.close()
            self.restart_plane()

    def test_version_move_rewrites_no_dag_row(self):
        # A new version of a bundle whose DAGs did not change writes the bundles row only:
        # the rows of unchanged DAGs (each carrying its DAG's JSON) are left as they are
        # and follow the bundle's version; every reader still sees the new version, after
        # a restart of the plane too. Before, the manifest rewrote every such row.
        for d in ("a", "b", "c"):
            self.write(f"bundle/{d}.yaml", DAG.format(id=d))
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        v1 = self.dags()["a"]["bundle"]["version"]
        self.assertEqual({d: r[1] for d, r in self.rows().items()}, {"a": 1, "b": 1, "c": 1})
        self.write("bundle/a.yaml", DAG.format(id="a") + "tags: [x]\n")
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        dags = self.dags()
        v2 = dags["a"]["bundle"]["version"]
        self.assertNotEqual(v1, v2)
        self.assertEqual({d: dags[d]["bundle"]["version"] for d in "abc"},
                         {"a": v2, "b": v2, "c": v2})
        rows = self.rows()
        self.assertEqual(rows["b"], (v1, 1))  # not rewritten: follows the bundle
        self.assertEqual(rows["c"], (v1, 1))
        self.assertEqual(rows["a"], (v2, 1))  # uploaded at the bundle's version
        # A DAG left out stops following and keeps the version it was last listed at.
        os.unlink(os.path.join(self.bundle, "c.yaml"))
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        dags = self.dags()
        v3 = dags["a"]["bundle"]["version"]
        self.assertEqual(self.rows()["c"], (v2, 0))
        self.assertFalse(dags["c"]["is_active"])
        self.assertEqual(dags["c"]["bundle"]["version"], v2)
        # The plane read the versions back from its store (rows() restarted it).
        dags = self.dags()
        self.assertEqual({d: dags[d]["bundle"]["version"] for d in "abc"},
                         {"a": v3, "b": v3, "c": v2})
        st, b = self.req("GET", "/api/v1/admin/dags/b", None, self.admin)
        self.assertEqual((st, b["bundle"]["version"]), (200, v3))
        # A DAG back in the bundle follows its version again.
        self.write("bundle/c.yaml", DAG.format(id="c"))
        rc, out = self.once()
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.rows()["c"][1], 1)
        self.assertTrue(self.dags()["c"]["is_active"])


if __name__ == "__main__":
    unittest.main()
