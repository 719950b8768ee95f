"""Git bundles end to end on loopback: remex-dag-processor fetches through
libgit2 from a real `git daemon` (git://) and `git http-backend` behind basic
auth (http:// with a token), checks each commit out once, syncs it with a real
plane at version = commit SHA; remex-worker runs each task in the checkout of
the commit its DAG was scheduled with."""
import os
import signal
import subprocess
import unittest

import gitfix
import harness
import workerfix

DAG = """dag_id: g
schedule: null
start_date: 2026-01-01
tasks:
  - task_id: t
    command: [./run.sh]
"""


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
        return self.write(f"agent{self.n}.yaml", (
            "plane:\n"
            f"  url: {self.url}\n"
            f"  token: {{file: {self.tok}}}\n"
            f"state_dir: {self.state}\n"
            "bundles:\n"
            f"  - {{name: main, url: \"{url}\", tracking_ref: \"{ref}\", subdir: dags, "
            f"refresh_interval: {refresh}{tok}}}\n"
            f"dag_processor:\n  keep_versions: {keep}\n"
            "worker:\n  name: w1\n  slots: 2\n"
            f"  log_dir: {self.tmp}/logs\n  poll_wait: 10s\n"
            f"xcom:\n  store: file://{self.tmp}/xcom\n"))

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


if __name__ == "__main__":
    unittest.main()
