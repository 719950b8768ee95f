#!/usr/bin/env python3
"""Worker benchmarks (figures only, never pass/fail): a real remex-plane and
one real remex-worker on loopback.

  chain40     40 sequential `true` tasks, trigger -> run success (target < 0.2 s),
              per-task hop enqueue (queued_at) -> start (start_date) p50/p99
  fanout10k   10,000 independent `true` tasks (10 DAGs x 1,000), 16 slots
              (target > 1,000 tasks/s)
  rss         remex-worker resident memory idle (target < 3 MB) and with 16 running tasks,
              against a plain-HTTP plane and against a TLS plane (self-signed
              certificate made with the openssl CLI, worker plane.ca_file), next to
              the floor of the worker's own libraries (build/bench/_rss_floor)
  floor       fork+exec of `true` 1,000 times (build/bench/_spawn_floor)

Run: make bench   (or REMEX_BIN=build/bin python3 bench/worker_bench.py [chain40|fanout10k|rss])
Env: LOGS=DIR puts the task logs under DIR instead of the temporary folder;
STATE=DIR the worker's state dir.
"""
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

from _rig import BIN, BUILD, Plane, cpu_s, mem_kb, pct, start, stop, ts


def self_signed(folder):
    """(cert, key) paths of a fresh P-256 certificate for 127.0.0.1, made by the openssl CLI."""
    cert, key = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class Rig:
    def __init__(self, slots, tls=False):
        self.tmp = tempfile.mkdtemp(prefix="remex-bench-")
        # LOGS=DIR puts the task logs in a fresh folder under DIR (e.g. /dev/shm, to take
        # the file system's inode allocation out of the worker's figures).
        self.logs = (tempfile.mkdtemp(prefix="remex-bench-logs-", dir=os.environ["LOGS"])
                     if os.environ.get("LOGS") else os.path.join(self.tmp, "logs"))
        extra, ctx = "heartbeat_interval: 5s\nbody_max: 8MiB\nlog:\n  level: warn\n", None
        if tls:
            cert, key = self_signed(self.tmp)
            extra += f"tls:\n  cert: {cert}\n  key: {key}\n"
            ctx = ssl.create_default_context(cafile=cert)
        self.plane = Plane(self.tmp, extra, "https" if tls else "http", ctx, session=True)
        self.procs = [self.plane.proc]
        self.url, self.req, self.put_dag = self.plane.url, self.plane.req, self.plane.put_dag
        self.plane.agent_token()
        os.makedirs(f"{self.tmp}/bundle")
        wconf = self.plane.agent_yaml("agent.yaml", (
            (f"  ca_file: {cert}\n" if tls else "") +
            f"worker:\n  slots: {slots}\n  state_dir: {os.environ.get('STATE', self.tmp)}/state\n"
            f"  log_dir: {self.logs}\n"
            f"bundles:\n  - {{name: main, path: {self.tmp}/bundle, versioned: false}}\n"
            f"xcom:\n  store: file://{self.tmp}/xcom\n"))
        self.worker, self.wlog = start(os.path.join(self.tmp, "worker.log"), [
            os.path.join(BIN, "remex-worker"), "-c", wconf, "--log-level", "warn"], True)
        self.procs.append(self.worker)
        self.plane.wait_agents(1)
        time.sleep(0.2)

    def run(self, dag_id, timeout=600, poll=0.002):
        t0 = time.monotonic()
        run_id = self.req("POST", f"/api/v1/admin/dags/{dag_id}/runs", {})["run_id"]
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            st = self.req("GET", f"/api/v1/admin/dags/{dag_id}/runs?limit=1")
            runs = [r for r in st["dag_runs"] if r["run_id"] == run_id]
            if runs and runs[0]["state"] in ("success", "failed"):
                break
            time.sleep(poll)
        wall = time.monotonic() - t0
        return wall, self.req("GET", f"/api/v1/admin/dags/{dag_id}/runs/{run_id}")

    def close(self):
        stop(self.procs, group=True)
        shutil.rmtree(self.logs, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def chain40():
    r = Rig(4)
    try:
        tasks = [{"task_id": f"t{i:02d}", "command": ["true"]} for i in range(40)]
        for i in range(1, 40):
            tasks[i]["upstream"] = [f"t{i - 1:02d}"]
        r.put_dag({"dag_id": "chain40", "tasks": tasks})
        r.run("chain40")  # warm-up (connections, page cache)
        wall, run = r.run("chain40")
        plane = ts(run["end_date"]) - ts(run["queued_at"])
        hops = [(ts(t["start_date"]) - ts(t["queued_at"])) * 1000 for t in run["task_instances"]]
        print(f"chain40: {run['state']}: trigger -> success {wall:.3f} s wall "
              f"({plane:.3f} s by the plane's timestamps; target < 0.2 s)")
        print(f"chain40: per-task enqueue -> start p50 {pct(hops, 50):.2f} ms, "
              f"p99 {pct(hops, 99):.2f} ms (target p99 < 5 ms; plane timestamps, ms resolution)")
    finally:
        r.close()


def fanout10k():
    """10 DAGs of 1,000 independent tasks (the plane caps a DAG's canonical JSON
    at 1 MiB, about 6,000 tasks), all triggered at once."""
    r = Rig(16)
    try:
        n, ndags = 10000, 10
        per = n // ndags
        for d in range(ndags):
            r.put_dag({"dag_id": f"fan{d}",
                       "tasks": [{"task_id": f"t{i:04d}", "command": ["true"]}
                                 for i in range(per)]})
        w0, p0 = cpu_s(r.worker.pid, True), cpu_s(r.procs[0].pid, True)
        t0 = time.monotonic()
        runs = [(f"fan{d}", r.req("POST", f"/api/v1/admin/dags/fan{d}/runs", {})["run_id"])
                for d in range(ndags)]
        done = {}
        while len(done) < ndags and time.monotonic() - t0 < 900:
            for dag_id, run_id in runs:
                if dag_id in done:
                    continue
                st = r.req("GET", f"/api/v1/admin/dags/{dag_id}/runs?limit=1")
                if st["dag_runs"] and st["dag_runs"][0]["state"] in ("success", "failed"):
                    done[dag_id] = r.req("GET", f"/api/v1/admin/dags/{dag_id}/runs/{run_id}")
            time.sleep(0.05)
        wall = time.monotonic() - t0
        w1, p1 = cpu_s(r.worker.pid, True), cpu_s(r.procs[0].pid, True)
        ok = sum(1 for run in done.values() for t in run["task_instances"]
                 if t["state"] == "success")
        first = min(ts(run["queued_at"]) for run in done.values())
        last = max(ts(run["end_date"]) for run in done.values())
        print(f"fanout10k: {ok}/{n} tasks succeeded in {wall:.2f} s = {n / wall:.0f} tasks/s "
              f"wall ({n / (last - first):.0f} tasks/s by the plane's timestamps; 16 slots; "
              f"target > 1,000 tasks/s)")
        print(f"fanout10k: CPU for the run: worker {w1[0] - w0[0]:.2f} s "
              f"({(w1[0] - w0[0]) / n * 1e6:.0f} us/task), its tasks {w1[1] - w0[1]:.2f} s, "
              f"plane {p1[0] - p0[0]:.2f} s ({(p1[0] - p0[0]) / n * 1e6:.0f} us/task); "
              f"load average {os.getloadavg()[0]:.2f}")
    finally:
        r.close()


def rss_floor():
    """RSS of bench/_rss_floor: the worker's libraries started as the worker
    starts them, and nothing else (the floor the worker's idle RSS sits on)."""
    exe = os.path.join(BUILD, "bench", "_rss_floor")
    if not os.access(exe, os.X_OK):
        print(f"rss: {exe} not built")
        return None
    p = subprocess.Popen([exe], stdout=subprocess.PIPE, text=True)
    try:
        if p.stdout.readline().strip() != "ready":
            print("rss: _rss_floor did not start")
            return None
        time.sleep(0.5)
        rss, pss, anon = mem_kb(p.pid)
        print(f"rss: floor (the worker's libraries loaded and started, no remex code running): "
              f"RSS {rss / 1024:.2f} MiB, PSS {pss / 1024:.2f} MiB, "
              f"anonymous {anon / 1024:.2f} MiB")
        return rss
    finally:
        p.kill()
        p.wait()


def rss():
    floor_kb = rss_floor()
    for tls in (False, True):
        r = Rig(16, tls=tls)
        try:
            time.sleep(1.0)
            idle = mem_kb(r.worker.pid)
            r.put_dag({"dag_id": "sleep16",
                       "tasks": [{"task_id": f"s{i:02d}", "command": ["sleep", "3"]}
                                 for i in range(16)]})
            r.req("POST", "/api/v1/admin/dags/sleep16/runs", {})
            busy = (0, 0, 0)
            for _ in range(100):
                time.sleep(0.05)
                kids = subprocess.run(["pgrep", "-c", "-P", str(r.worker.pid)],
                                      capture_output=True, text=True).stdout.strip()
                if kids and int(kids) >= 16:
                    busy = mem_kb(r.worker.pid)
                    break
            plane = "https plane" if tls else "http plane"
            for name, m in (("idle", idle), ("16 running tasks", busy)):
                print(f"rss: remex-worker {name}, {plane}: RSS {m[0] / 1024:.2f} MiB, "
                      f"PSS {m[1] / 1024:.2f} MiB, anonymous {m[2] / 1024:.2f} MiB "
                      "(target < 3 MB; worker process only)"
                      + (f"; floor + {(m[0] - floor_kb) / 1024:.2f} MiB" if floor_kb else ""))
        finally:
            r.close()


def floor():
    exe = os.path.join(BUILD, "bench", "_spawn_floor")
    if os.access(exe, os.X_OK):
        subprocess.run([exe, "1000"])
    else:
        print(f"floor: {exe} not built")


def main():
    which = sys.argv[1:] or ["floor", "chain40", "fanout10k", "rss"]
    for w in which:
        globals()[w]()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
