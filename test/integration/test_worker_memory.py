"""remex-worker memory limits: the mechanism the worker picks for this machine
(cgroup v2, the cgroup v1 memory controller, RLIMIT_AS) and a forced one, a task
past its limit failing alone with `out of memory`, and the worker's cgroups
removed at exit and after a crash."""
import os
import re
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from workerfix import WorkerCase  # noqa: E402

CGROUP_PARENT = "/sys/fs/cgroup/remex"  # worker.cgroup_parent's default
MECH_RE = r"memory limits: (cgroup2|cgroup1|rlimit-as)\b"


def unescape(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts():
    """(root, mount point, fstype, super options) of every mount of this process."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, post = line.rstrip("\n").split(" - ", 1)
            a, b = pre.split(" "), post.split(" ")
            out.append((unescape(a[3]), unescape(a[4]), b[0], b[2].split(",")))
    return out


def cgroup2_usable(parent):
    best = None
    for _root, point, fstype, _opts in mounts():
        if (parent == point or parent.startswith(point.rstrip("/") + "/")) and (
                best is None or len(point) >= len(best[0])):
            best = (point, fstype)
    if best is None or best[1] != "cgroup2" or not os.access(parent, os.W_OK):
        return False
    try:
        with open(os.path.join(parent, "cgroup.subtree_control")) as f:
            return "memory" in f.read().split()
    except OSError:
        return False


def own_memory_cgroup_v1():
    """This process's cgroup v1 memory directory, or None."""
    path = None
    with open("/proc/self/cgroup") as f:
        for line in f:
            _id, ctl, p = line.rstrip("\n").split(":", 2)
            if "memory" in ctl.split(","):
                path = p
    if path is None:
        return None
    for root, point, fstype, opts in mounts():
        if fstype != "cgroup" or "memory" not in opts:
            continue
        if root == "/":
            d = point + ("" if path == "/" else path)
        elif path == root or path.startswith(root + "/"):
            d = point + path[len(root):]
        else:
            continue
        if os.path.exists(os.path.join(d, "memory.limit_in_bytes")) and os.access(d, os.W_OK):
            return d
        return None
    return None


def expected_mechanism():
    if cgroup2_usable(CGROUP_PARENT):
        return "cgroup2"
    if own_memory_cgroup_v1() is not None:
        return "cgroup1"
    return "rlimit-as"


HOG_DAG = {"dag_id": "oom", "tasks": [
    {"task_id": "hog", "limits": {"memory": 64 * 1024 * 1024},
     "command": ["python3", "-c", "b = bytearray(256 * 1024 * 1024); print(len(b))"]},
    {"task_id": "ok1", "limits": {"memory": 64 * 1024 * 1024},
     "shell": "sleep 0.3; echo 'handled a MemoryError'"},
    {"task_id": "ok2", "shell": "sleep 0.3; echo fine"},
]}


class TestWorkerMemory(WorkerCase):
    def run_hog(self, w):
        """Runs HOG_DAG: the hog fails with `out of memory`, the others succeed."""
        self.put_dag(HOG_DAG)
        run_id = self.trigger("oom")
        run = self.wait_run("oom", run_id)
        tis = self.tis(run)
        self.assertEqual(tis["hog"]["state"], "failed")
        self.assertEqual(tis["hog"]["reason"], "out of memory")
        self.assertEqual(tis["ok1"]["state"], "success")
        self.assertEqual(tis["ok2"]["state"], "success")
        log = self.task_log("oom", run_id, "hog")
        self.assertIn("out of memory", log)  # the log is kept, with the outcome
        self.assertTrue(w.alive())
        return log

    def test_oom_isolated_with_this_machines_layout(self):
        want = expected_mechanism()
        self.start_plane()
        w = self.start_worker(slots=3)
        # Not just "memory limits:": a stale cgroup of a worker killed by another test
        # is logged first with that prefix.
        out = harness.wait_for(lambda: re.search(MECH_RE, w.output()) and w.output(), 10,
                               what="the memory limits line")
        self.assertEqual(re.search(MECH_RE, out).group(1), want, out)
        log = self.run_hog(w)
        if want == "rlimit-as":
            self.assertIn("MemoryError", log)
        else:  # the kernel's OOM killer, inside the task's cgroup
            self.assertIn("killed by signal 9 (KILL)", log)
            self.assertNotIn("MemoryError", log)
        if want == "cgroup1":
            own = own_memory_cgroup_v1()
            mine = os.path.join(own, f"remex-worker-{w.pid}")
            self.assertIn(f"memory limits: cgroup1 ({mine}); cgroup v2 not used (", out)
            self.assertTrue(os.path.isdir(mine))
            # Task cgroups are removed when their try ends.
            harness.wait_for(lambda: not [d for d in os.listdir(mine)
                                          if os.path.isdir(os.path.join(mine, d))],
                             5, what="task cgroups to be removed")
            w.signal(signal.SIGTERM)
            self.assertEqual(w.wait(20), 0)
            self.assertFalse(os.path.exists(mine))

    def test_forced_rlimit(self):
        self.start_plane()
        w = self.start_worker(slots=3, extra_worker="    memory_enforcement: rlimit\n")
        out = w.wait_output("memory limits: rlimit-as")
        self.assertIn("memory limits: rlimit-as (RLIMIT_AS per task) (forced by "
                      "memory_enforcement)", out)
        self.assertIn("MemoryError", self.run_hog(w))

    def test_forced_mechanism_unusable_stops_the_start(self):
        self.start_plane()
        w = self.start_worker(extra_worker=("    memory_enforcement: cgroup2\n"
                                            f"  cgroup_parent: {self.tmp}\n"))
        self.assertEqual(w.wait(20), 100)
        self.assertIn("memory_enforcement is cgroup2 but cgroup v2 is not usable: "
                      f"{self.tmp}: not a cgroup2 mount", w.output())

    def test_bad_enforcement_value_names_the_line(self):
        tok = self.token_file("x" * 40)
        cfg = self.worker_yaml(tok, url="http://127.0.0.1:1",
                               extra_worker="    memory_enforcement: cgroup3\n")
        p = self.spawn("check", [self.bin("remex-worker"), "-c", cfg, "--check"])
        self.assertEqual(p.wait(10), 100)
        self.assertRegex(p.output(), r"agent\d+\.yaml:12:\d+: .*memory_enforcement")

    def _private_cgroup(self, own):
        """A memory cgroup of this test's own under `own`: workers started in it
        see it as their cgroup, so a worker of another test running at the same
        time (which purges stale remex-worker-PID folders of its own parent)
        cannot remove the folder this test leaves behind before w2 does."""
        path = os.path.join(own, f"remex-it-{os.getpid()}-{os.path.basename(self.tmp)}")
        os.mkdir(path)

        def purge():
            for root, dirs, _files in os.walk(path, topdown=False):
                with open(os.path.join(root, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                harness.wait_for(lambda: _try_rmdir(root), 5, what=f"rmdir {root}")

        self.addCleanup(purge)
        return path

    def _start_worker_in(self, cgroup, name):
        """start_worker, with the worker moved into `cgroup` before it execs."""
        tok = self.token_file(self.create_token()["value"], name=f"{name}.token")
        cfg = self.worker_yaml(tok, None, 4, "", "", None, name)
        script = 'g=$1; shift; echo $$ > "$g/cgroup.procs" && exec "$@"'
        return self.spawn(name, ["/bin/sh", "-c", script, "sh", cgroup,
                                 self.bin("remex-worker"), "-c", cfg, "--log-level", "debug"])

    def test_stale_cgroup1_parent_of_a_crashed_worker(self):
        own = own_memory_cgroup_v1()
        if own is None or expected_mechanism() != "cgroup1":
            self.skipTest("no usable cgroup v1 memory controller (cgroup1 path not in force)")
        mine = self._private_cgroup(own)
        self.start_plane()
        self.put_dag({"dag_id": "long", "tasks": [
            {"task_id": "t", "limits": {"memory": 64 * 1024 * 1024}, "shell": "sleep 300"}]})
        w1 = self._start_worker_in(mine, "w1")
        run_id = self.trigger("long")
        self.wait_ti("long", run_id, "t", ("running",))
        stale = os.path.join(mine, f"remex-worker-{w1.pid}")
        harness.wait_for(lambda: any(d.startswith("ti") for d in os.listdir(stale)), 5,
                         what="the task's cgroup")
        os.kill(w1.pid, signal.SIGKILL)  # no cleanup: the cgroups stay behind
        w1.wait(10)
        self.assertTrue(os.path.isdir(stale))
        w2 = self._start_worker_in(mine, "w2")
        # The stale cgroup is removed (and logged) before the mechanism line.
        out = w2.wait_output("memory limits: cgroup1 (")
        self.assertIn(f"removed stale cgroup {stale} of a worker that is gone", out)
        self.assertIn(f"memory limits: cgroup1 ({mine}/remex-worker-{w2.pid})", out)
        self.assertFalse(os.path.exists(stale))
        self.wait_registered(w2)  # its signal handling is in place: SIGTERM drains
        w2.signal(signal.SIGTERM)
        self.assertEqual(w2.wait(20), 0)
        self.assertFalse(os.path.exists(os.path.join(mine, f"remex-worker-{w2.pid}")))


def _try_rmdir(path):
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


if __name__ == "__main__":
    unittest.main()
