"""Git bundles end to end on loopback: remex-dag-processor fetches through
libgit2 from a real `git daemon` (git://) and `git http-backend` behind basic
auth (http:// with a token), checks each commit out once, syncs it with a real
plane at version = commit SHA; remex-worker runs each task in the checkout of
the commit its DAG was scheduled with."""
import os
import re
import signal
import subprocess
import unittest
import urllib.request

import gitfix
import harness
import workerfix

def dag_yaml(dag_id, tasks=("t",), task_extra=""):
    """A DAG of tasks that each run ./run.sh."""
    return (f"dag_id: {dag_id}\nschedule: null\nstart_date: 2026-01-01\ntasks:\n"
            + "".join(f"  - task_id: {t}\n    command: [./run.sh]\n{task_extra}" for t in tasks))


def agent_yaml(case, name, state, bundle, middle="", worker="w1", worker_extra="", logdir=None):
    """Writes the agent configuration name: case's plane and token (case.tok), one bundle
    (its flow mapping), a 2-slot worker; middle goes before the worker: section."""
    return case.write(name, (
        "plane:\n"
        f"  url: {case.url}\n"
        f"  token: {{file: {case.tok}}}\n"
        f"state_dir: {state}\n"
        f"bundles:\n  - {bundle}\n" + middle +
        f"worker:\n  name: {worker}\n  slots: 2\n" + worker_extra +
        f"  log_dir: {logdir or case.tmp + '/logs'}\n  poll_wait: 10s\n"
        f"xcom:\n  store: file://{case.tmp}/xcom\n"))


DAG = dag_yaml("g")


def files(word):
    return {"dags/g.yaml": (DAG, 0o644), "dags/run.sh": (f"#!/bin/sh\necho {word}\n", 0o755)}


class GitBundleTest(workerfix.WorkerCase):
    def setUp(self):
        super().setUp()
        self.start_plane()
        self.tok = self.token_file(self.create_token()["value"], "dp.token")
        self.state = os.path.join(self.tmp, "agentstate")
        self.repo = gitfix.GitRepo(self.tmp)
        self.n = 0

    def cfg(self, url, ref="main", token=None, refresh="1s", keep=5, extra=""):
        tok = f", token: {{file: {token}}}" if token else ""
        tok += extra
        self.n += 1
        return agent_yaml(self, f"agent{self.n}.yaml", self.state,
                          f"{{name: main, url: \"{url}\", tracking_ref: \"{ref}\", subdir: dags, "
                          f"refresh_interval: {refresh}{tok}}}",
                          f"dag_processor:\n  keep_versions: {keep}\n")

    def once(self, cfg):
        p = self.spawn(f"dp{self.n}", [self.bin("remex-dag-processor"), "-c", cfg, "--once",
                                       "--log-level", "debug"])
        return p.wait(60), p.output()

    def dag(self):
        st, b = self.req("GET", "/api/v1/admin/dags/g", None, self.admin)
        return b if st == 200 else None

    def run_g(self):
        run = self.trigger("g")
        b = self.wait_run("g", run)
        self.logdir = os.path.join(self.tmp, "logs")
        return b["state"], self.task_log("g", run, "t") if b["state"] == "success" else ""

    def test_git_daemon_versions_and_pinned_sha(self):
        d = gitfix.GitDaemon(self, self.repo.srv)
        sha1 = self.repo.commit(files("one"))
        cfg = self.cfg(d.url + "/repo.git")
        rc, out = self.once(cfg)
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.dag()["bundle"]["version"], sha1)
        co1 = os.path.join(self.state, "bundles", "main", sha1, "dags", "run.sh")
        self.assertTrue(os.path.exists(co1))
        w = self.spawn("worker", [self.bin("remex-worker"), "-c", cfg, "--log-level", "debug"])
        self.wait_registered(w)
        self.assertEqual(self.run_g()[0], "success")
        self.assertIn("one", self.run_g()[1])
        # A running dag-processor picks the pushed commit up within its interval.
        p = self.spawn("dp-run", [self.bin("remex-dag-processor"), "-c", cfg, "--log-level",
                                  "debug"])
        sha2 = self.repo.commit(files("two"))
        harness.wait_for(lambda: self.dag()["bundle"]["version"] == sha2, 20, 0.1,
                         "the new commit on the plane")
        state, log = self.run_g()
        self.assertEqual(state, "success")
        self.assertIn("two", log)
        # A run scheduled at the old commit keeps its checkout.
        self.assertTrue(os.path.exists(co1))
        p.signal(signal.SIGTERM)
        self.assertEqual(p.wait(15), 0, p.output())
        # A pinned SHA stays where it is while the branch moves.
        self.repo.commit(files("three"))
        rc, out = self.once(self.cfg(d.url + "/repo.git", ref=sha1))
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.dag()["bundle"]["version"], sha1)
        state, log = self.run_g()
        self.assertIn("one", log)

    def test_pruning_never_removes_a_running_tasks_checkout(self):
        d = gitfix.GitDaemon(self, self.repo.srv)
        slow = dict(files("one"))
        marker = os.path.join(self.tmp, "started")
        release = os.path.join(self.tmp, "release")
        slow["dags/run.sh"] = (f"#!/bin/sh\ntouch {marker}\n"
                               f"while [ ! -e {release} ]; do sleep 0.05; done\necho one\n", 0o755)
        sha1 = self.repo.commit(slow)
        cfg = self.cfg(d.url + "/repo.git", keep=1)
        rc, out = self.once(cfg)
        self.assertEqual(rc, 0, out)
        w = self.spawn("worker", [self.bin("remex-worker"), "-c", cfg, "--log-level", "debug"])
        self.wait_registered(w)
        run = self.trigger("g")
        harness.wait_for(lambda: os.path.exists(marker), 20, 0.05, "the task to start")
        co = lambda sha: os.path.exists(os.path.join(self.state, "bundles", "main", sha))
        # Two commits later, with one version kept, the running task's checkout stays.
        sha2 = self.repo.commit(files("two"))
        rc, out = self.once(cfg)
        self.assertEqual(rc, 0, out)
        sha3 = self.repo.commit(files("three"))
        rc, out = self.once(cfg)
        self.assertEqual(rc, 0, out)
        self.assertIn("1 kept: a task runs in them", out)
        self.assertTrue(co(sha1))
        self.assertTrue(co(sha2))  # the plane's version until sha3 was synced
        self.assertTrue(co(sha3))
        with open(release, "w"):
            pass
        b = self.wait_run("g", run)
        self.assertEqual(b["state"], "success", b)
        self.logdir = os.path.join(self.tmp, "logs")
        self.assertIn("one", self.task_log("g", run, "t"))
        # The task is done: the next sync prunes its checkout and the superseded one.
        sha4 = self.repo.commit(files("four"))
        rc, out = self.once(cfg)
        self.assertEqual(rc, 0, out)
        self.assertFalse(co(sha1))
        self.assertFalse(co(sha2))
        self.assertTrue(co(sha3) and co(sha4))

    def test_http_token_auth(self):
        token = "s3cret-token-" + "x" * 20
        h = gitfix.GitHttp(self.repo.srv, token)
        self.addCleanup(h.close)
        sha1 = self.repo.commit(files("one"))
        good = self.write("git.token", token + "\n", mode=0o600)
        rc, out = self.once(self.cfg(h.url + "/repo.git", token=good))
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.dag()["bundle"]["version"], sha1)
        # A wrong token: a clear error naming the URL and the token's file, never the token;
        # the plane keeps the version it had.
        self.repo.commit(files("two"))
        bad = self.write("bad.token", "wrong-token-value\n", mode=0o600)
        rc, out = self.once(self.cfg(h.url + "/repo.git", token=bad))
        self.assertNotEqual(rc, 0, out)
        self.assertIn(f"authentication failed for {h.url}/repo.git: check the token in {bad}",
                      out)
        self.assertNotIn("wrong-token-value", out)
        self.assertNotIn(token, out)
        self.assertGreater(h.refused, 0)
        self.assertEqual(self.dag()["bundle"]["version"], sha1)
        # No token at all.
        rc, out = self.once(self.cfg(h.url + "/repo.git"))
        self.assertNotEqual(rc, 0, out)
        self.assertIn("authentication failed", out)
        self.assertIn("none are set", out)


    def test_ssh_key_and_known_hosts(self):
        why = gitfix.GitSshd.unavailable()
        if why:
            self.skipTest(why)
        sshd = gitfix.GitSshd(self, self.tmp)
        sha1 = self.repo.commit(files("one"))
        url = sshd.url(self.repo.bare)
        shown = url.replace(sshd.user + "@", "")  # messages carry no user info
        key = sshd.client_key("id_plain")
        kh = self.write("known_hosts", "# test\n" + sshd.known_hosts_line)
        rc, out = self.once(self.cfg(url, extra=f", ssh_key: {key}, known_hosts: {kh}"))
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.dag()["bundle"]["version"], sha1)
        # A key with a passphrase, read from a file.
        sha2 = self.repo.commit(files("two"))
        pkey = sshd.client_key("id_pass", passphrase="correct horse")
        pf = self.write("pass", "correct horse\n", mode=0o600)
        rc, out = self.once(self.cfg(url, extra=f", ssh_key: {pkey}, known_hosts: {kh}, "
                                                f"ssh_passphrase: {{file: {pf}}}"))
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.dag()["bundle"]["version"], sha2)
        self.assertNotIn("correct horse", out)
        # A key the server does not know: what to check, and the plane keeps its version.
        self.repo.commit(files("three"))
        stranger = sshd.client_key("id_stranger", authorize=False)
        rc, out = self.once(self.cfg(url, extra=f", ssh_key: {stranger}, known_hosts: {kh}"))
        self.assertNotEqual(rc, 0, out)
        self.assertIn(f"authentication failed for {shown}: check the SSH key in {stranger}", out)
        self.assertEqual(self.dag()["bundle"]["version"], sha2)
        # A server known_hosts does not list, or lists with another key: no connection.
        empty = self.write("kh_empty", "")
        rc, out = self.once(self.cfg(url, extra=f", ssh_key: {key}, known_hosts: {empty}"))
        self.assertNotEqual(rc, 0, out)
        self.assertIn(f"host key check failed for {shown}: {empty} does not list "
                      f"[127.0.0.1]:{sshd.port}", out)
        other = sshd.client_key("id_other", authorize=False)
        with open(other + ".pub") as f:
            typ, k = f.read().split()[:2]
        wrong = self.write("kh_wrong", f"[127.0.0.1]:{sshd.port} {typ} {k}\n")
        rc, out = self.once(self.cfg(url, extra=f", ssh_key: {key}, known_hosts: {wrong}"))
        self.assertNotEqual(rc, 0, out)
        self.assertIn("lists another host key for [127.0.0.1]:%d" % sshd.port, out)
        self.assertEqual(self.dag()["bundle"]["version"], sha2)

    def test_ssh_agent(self):
        why = gitfix.GitSshd.unavailable()
        if why:
            self.skipTest(why)
        sshd = gitfix.GitSshd(self, self.tmp)
        sha1 = self.repo.commit(files("one"))
        key = sshd.client_key("id_agent")
        sock = os.path.join(self.tmp, "agent.sock")
        agent = self.spawn("ssh-agent", ["ssh-agent", "-D", "-a", sock])
        harness.wait_for(lambda: os.path.exists(sock), 10, 0.05, "ssh-agent's socket")
        env = dict(os.environ, SSH_AUTH_SOCK=sock)
        subprocess.run(["ssh-add", "-q", key], env=env, check=True, timeout=30,
                       capture_output=True)
        kh = self.write("known_hosts", sshd.known_hosts_line)
        cfg = self.cfg(sshd.url(self.repo.bare), extra=f", ssh_agent: true, known_hosts: {kh}")
        p = self.spawn("dp-agent", [self.bin("remex-dag-processor"), "-c", cfg, "--once"],
                       env=env)
        self.assertEqual(p.wait(60), 0, p.output())
        self.assertEqual(self.dag()["bundle"]["version"], sha1)
        agent.signal(signal.SIGTERM)


TWO = dag_yaml("g2", ("t", "u"))

RETRY = dag_yaml("r", task_extra="    retries: 1\n    retry_delay: 1s\n")


class WorkerFetchTest(GitBundleTest):
    """A worker on another host: its state_dir has none of the dag-processor's checkouts,
    so it fetches the commit each task was scheduled with itself (libgit2, on its bundle
    thread), once for all the tasks that wait for it."""

    def worker_cfg(self, url, token=None, listen=None):
        tok = f", token: {{file: {token}}}" if token else ""
        lst = f"  listen: 127.0.0.1:{listen}\n" if listen else ""
        return agent_yaml(self, "worker.yaml", f"{self.tmp}/wstate",
                          f"{{name: main, url: \"{url}\", tracking_ref: main, subdir: dags{tok}}}",
                          worker="w2", worker_extra=lst)

    def metric(self, port, name):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
        self.assertIsNotNone(m, text)
        return float(m.group(1))

    def start(self, cfg):
        w = self.spawn("worker", [self.bin("remex-worker"), "-c", cfg, "--log-level", "debug"])
        self.wait_registered(w)
        return w

    def test_worker_fetches_a_commit_it_never_saw_once_for_two_tasks(self):
        d = gitfix.GitDaemon(self, self.repo.srv)
        f = files("one")
        f["dags/g2.yaml"] = (TWO, 0o644)
        sha1 = self.repo.commit(f)
        rc, out = self.once(self.cfg(d.url + "/repo.git"))
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.dag()["bundle"]["version"], sha1)
        # The worker reads through a slow HTTP server with a token: both tasks of the run
        # are offered while the one fetch runs.
        token = "worker-token-" + "y" * 20
        h = gitfix.GitHttp(self.repo.srv, token, delay=1.0)
        self.addCleanup(h.close)
        good = self.write("w.token", token + "\n", mode=0o600)
        wstate = os.path.join(self.tmp, "wstate", "bundles", "main")
        mport = harness.free_port()
        w = self.start(self.worker_cfg(h.url + "/repo.git", token=good, listen=mport))
        self.assertFalse(os.path.exists(os.path.join(wstate, sha1)))
        run = self.trigger("g2")
        b = self.wait_run("g2", run, timeout=60)
        self.assertEqual(b["state"], "success", b)
        self.logdir = os.path.join(self.tmp, "logs")
        self.assertIn("one", self.task_log("g2", run, "t"))
        self.assertIn("one", self.task_log("g2", run, "u"))
        fetched = [ln for ln in w.output().splitlines() if "fetched commit" in ln]
        self.assertEqual(len(fetched), 1, fetched)
        self.assertIn(f"bundle 'main': fetched commit {sha1}", fetched[0])
        self.assertIn("(2 tasks waited)", fetched[0])
        self.assertEqual(self.metric(mport, "remex_worker_bundle_fetches_total"), 1)
        self.assertEqual(self.metric(mport, "remex_worker_bundle_shared_waits_total"), 1)
        self.assertEqual(self.metric(mport, "remex_worker_bundle_fetch_failures_total"), 0)
        self.assertTrue(os.path.isdir(os.path.join(wstate, sha1, "dags")))
        # The checkout is there now: the next run fetches nothing.
        served = h.served
        run = self.trigger("g")
        self.assertEqual(self.wait_run("g", run)["state"], "success")
        self.assertEqual(h.served, served)
        self.assertEqual(len([ln for ln in w.output().splitlines() if "fetched commit" in ln]),
                         1)
        self.assertNotIn(token, w.output())
        # A new commit: the next run executes the new code while the old checkout stays.
        sha2 = self.repo.commit(files("two"))
        rc, out = self.once(self.cfg(d.url + "/repo.git"))
        self.assertEqual(rc, 0, out)
        run = self.trigger("g")
        self.assertEqual(self.wait_run("g", run, timeout=60)["state"], "success")
        self.assertIn("two", self.task_log("g", run, "t"))
        self.assertTrue(os.path.isdir(os.path.join(wstate, sha1)))
        self.assertTrue(os.path.isdir(os.path.join(wstate, sha2)))

    def test_unreachable_commit_fails_the_try_with_the_reason_and_retries(self):
        d = gitfix.GitDaemon(self, self.repo.srv)
        sha0 = self.repo.commit(files("zero"))
        f = files("one")
        f["dags/r.yaml"] = (RETRY, 0o644)
        sha1 = self.repo.commit(f)
        rc, out = self.once(self.cfg(d.url + "/repo.git"))
        self.assertEqual(rc, 0, out)
        # The branch is force-pushed back: the scheduled commit is on no branch any more.
        gitfix.git("update-ref", "refs/heads/main", sha0, cwd=self.repo.bare)
        w = self.start(self.worker_cfg(d.url + "/repo.git"))
        run = self.trigger("r")
        b = self.wait_run("r", run, timeout=60)
        self.assertEqual(b["state"], "failed", b)
        ti = self.tis(b)["t"]
        self.assertEqual(ti["try_number"], 2)  # retried by its retry rules
        self.assertIn(f"commit {sha1} of git bundle 'main' cannot be had", ti["reason"])
        self.assertIn(f"is on no branch or tag of {d.url}/repo.git", ti["reason"])
        tries = [ln for ln in w.output().splitlines() if "failed before exec: commit "
                 f"{sha1} of git bundle 'main' cannot be had" in ln]
        self.assertEqual(len(tries), 2, tries)  # each try fetched again and failed
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "wstate", "bundles", "main",
                                                     sha1)))

    def test_worker_stopped_during_a_fetch_fails_the_waiting_try(self):
        d = gitfix.GitDaemon(self, self.repo.srv)
        self.repo.commit(files("one"))
        rc, out = self.once(self.cfg(d.url + "/repo.git"))
        self.assertEqual(rc, 0, out)
        token = "slow-token-" + "z" * 20
        h = gitfix.GitHttp(self.repo.srv, token, delay=2.0)
        self.addCleanup(h.close)
        good = self.write("w.token", token + "\n", mode=0o600)
        w = self.start(self.worker_cfg(h.url + "/repo.git", token=good))
        run = self.trigger("g")
        harness.wait_for(lambda: h.served >= 1, 20, 0.05, "the worker's fetch to start")
        w.signal(signal.SIGTERM)  # drain: a try waiting for its fetch would be let finish
        w.wait_output("draining", 10)
        w.signal(signal.SIGTERM)  # the second one stops at once: the fetch is cancelled
        self.assertEqual(w.wait(20), 0, w.output())
        # The fetch ends (cancelled once data flows; here the server holds each answer 2 s),
        # and the try fails instead of starting: its retry rules apply.
        self.assertIn("ti 1 g.t try 1 failed before exec: worker shutdown (the fetch of commit",
                      w.output())
        self.assertNotIn("running as pid", w.output())
        b = self.wait_run("g", run)
        self.assertTrue(self.tis(b)["t"]["reason"].startswith("worker shutdown"), b)

    def test_worker_fetch_with_a_wrong_token_is_clear(self):
        d = gitfix.GitDaemon(self, self.repo.srv)
        self.repo.commit(files("one"))
        rc, out = self.once(self.cfg(d.url + "/repo.git"))
        self.assertEqual(rc, 0, out)
        h = gitfix.GitHttp(self.repo.srv, "the-right-token")
        self.addCleanup(h.close)
        bad = self.write("bad.token", "wrong-token-value\n", mode=0o600)
        w = self.start(self.worker_cfg(h.url + "/repo.git", token=bad))
        run = self.trigger("g")
        b = self.wait_run("g", run, timeout=60)
        self.assertEqual(b["state"], "failed", b)
        reason = self.tis(b)["t"]["reason"]
        self.assertIn(f"authentication failed for {h.url}/repo.git: check the token in {bad}",
                      reason)
        self.assertNotIn("wrong-token-value", reason + w.output())


LOCAL_DAG = dag_yaml("l")


class LocalSnapshotTest(workerfix.WorkerCase):
    """Local bundles: a task runs in a read-only snapshot of the version it was scheduled
    with, taken by the worker while the folder held it."""

    def setUp(self):
        super().setUp()
        self.start_plane()
        self.tok = self.token_file(self.create_token()["value"], "dp.token")
        self.state = os.path.join(self.tmp, "agentstate")
        self.folder = os.path.join(self.tmp, "dags")
        os.makedirs(self.folder)
        self.logdir = os.path.join(self.tmp, "logs")
        self.put_files("one")

    def put_files(self, word):
        with open(os.path.join(self.folder, "l.yaml"), "w") as f:
            f.write(LOCAL_DAG)
        p = os.path.join(self.folder, "run.sh")
        with open(p, "w") as f:
            f.write(f"#!/bin/sh\necho {word}\n")
        os.chmod(p, 0o755)

    def cfg(self, versioned=True, state=None, name="agent.yaml"):
        v = "" if versioned else ", versioned: false"
        return agent_yaml(self, name, state or self.state,
                          f"{{name: main, path: {self.folder}{v}}}",
                          "dag_processor:\n  refresh_interval: 1h\n", logdir=self.logdir)

    def sync(self, cfg):
        p = self.spawn("dp", [self.bin("remex-dag-processor"), "-c", cfg, "--once"])
        self.assertEqual(p.wait(60), 0, p.output())
        st, b = self.req("GET", "/api/v1/admin/dags/l", None, self.admin)
        self.assertEqual(st, 200, b)
        return b["bundle"]["version"]

    def run_l(self):
        run = self.trigger("l")
        b = self.wait_run("l", run, timeout=60)
        ti = self.tis(b)["t"]
        return b["state"], ti, (self.task_log("l", run, "t") if b["state"] == "success" else "")

    def test_changed_folder_runs_the_snapshot_and_without_one_fails_naming_both(self):
        cfg = self.cfg()
        w = self.spawn("worker", [self.bin("remex-worker"), "-c", cfg, "--log-level", "debug"])
        self.wait_registered(w)
        w.wait_output("snapshot of version sha256:", 20)
        v1 = self.sync(cfg)
        self.assertIn(f"snapshot of version {v1} taken", w.output())
        snap = os.path.join(self.state, "bundles", "main", v1[len("sha256:"):])
        self.assertTrue(os.path.isfile(os.path.join(snap, "run.sh")))
        # The folder changes between scheduling and running: the task runs the snapshot.
        self.put_files("two")
        state, ti, log = self.run_l()
        self.assertEqual(state, "success", ti)
        self.assertIn("one", log)
        self.assertNotIn("two", log)
        # The plane takes the new version; the folder changes again before any task ran
        # and before the worker looked: the dag-processor snapshotted the version it synced,
        # so the task runs it.
        v2 = self.sync(cfg)
        self.assertNotEqual(v1, v2)
        self.put_files("three")
        state, ti, log = self.run_l()
        self.assertEqual(state, "success", ti)
        self.assertIn("two", log)
        # Synced by a dag-processor with another state_dir (no snapshot on the worker's
        # agent), then changed before the worker looked: the task fails naming both.
        other = self.cfg(state=os.path.join(self.tmp, "otherstate"), name="other.yaml")
        v3 = self.sync(other)
        self.put_files("four")
        state, ti, _ = self.run_l()
        self.assertEqual(state, "failed", ti)
        v4 = self.sync(other)
        self.assertIn(f"bundle 'main' at version {v3} cannot be had", ti["reason"])
        self.assertIn(f"now holds version {v4}", ti["reason"])
        # The folder holds the plane's version again: the task snapshots it at first use.
        snap4 = os.path.join(self.state, "bundles", "main", v4[len("sha256:"):])
        self.assertFalse(os.path.isdir(snap4))
        state, ti, log = self.run_l()
        self.assertEqual(state, "success", ti)
        self.assertIn("four", log)
        self.assertTrue(os.path.isdir(snap4))

    def test_unversioned_runs_the_folder_as_it_is(self):
        cfg = self.cfg(versioned=False)
        w = self.spawn("worker", [self.bin("remex-worker"), "-c", cfg, "--log-level", "debug"])
        self.wait_registered(w)
        self.sync(cfg)
        self.put_files("two")
        state, ti, log = self.run_l()
        self.assertEqual(state, "success", ti)
        self.assertIn("two", log)
        self.assertFalse(os.path.exists(os.path.join(self.state, "bundles", "main")))


if __name__ == "__main__":
    unittest.main()
