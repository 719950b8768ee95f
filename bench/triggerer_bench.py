#!/usr/bin/env python3
"""Triggerer benchmark (figures only, never pass/fail): a real remex-plane and
one real remex-triggerer on loopback, fed by the plane.

  timers100k  100,000 declared timer sensors (100 DAGs x 1,000 tasks): 90,000
              due in a day, then 10,000 due spread over one second. Prints the
              triggerer's memory holding them (goal < 64 MB), its CPU while
              holding them idle (goal ~0) and the fire lateness p50/p99 of the
              10,000 (goal p99 < 10 ms; the triggerer's own histogram, 0.1 ms
              buckets), next to the floor of the same timer load on a bare
              evloop (build/bench/_timer_floor) and the triggerer's memory
              holding nothing.

Run: make bench   (or REMEX_BIN=build/bin python3 bench/triggerer_bench.py)
"""
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.environ.get("REMEX_BIN") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "bin")
BUILD = os.environ.get("REMEX_BUILD") or os.path.dirname(BIN)
PER_DAG = 1000


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Rig:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="remex-bench-trg-")
        self.procs = []
        conf = os.path.join(self.tmp, "plane.yaml")
        with open(conf, "w") as f:
            f.write(f"listen: 127.0.0.1:0\ndb_path: {self.tmp}/plane.db\n"
                    f"admin_token_file: {self.tmp}/admin.token\n"
                    f"signing_key_file: {self.tmp}/signing.key\n"
                    "heartbeat_interval: 5s\nbody_max: 8MiB\nlog:\n  level: warn\n")
        self.plane_log = open(os.path.join(self.tmp, "plane.log"), "w+")
        self.plane = subprocess.Popen([os.path.join(BIN, "remex-plane"), "-c", conf,
                                       "--log-level", "info"],
                                      stdout=self.plane_log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.procs.append(self.plane)
        self.url = None
        for _ in range(400):
            self.plane_log.seek(0)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.plane_log.read())
            if m:
                self.url = f"http://127.0.0.1:{m.group(1)}"
                break
            time.sleep(0.025)
        with open(f"{self.tmp}/admin.token") as f:
            self.admin = f.read().strip()
        tok = self.req("POST", "/api/v1/admin/tokens", {"name": "bench", "expires_in": 7200})
        tokf = os.path.join(self.tmp, "agent.token")
        with open(tokf, "w") as f:
            f.write(tok["value"])
        os.chmod(tokf, 0o600)
        self.state = os.path.join(self.tmp, "state", "triggerer")
        tconf = os.path.join(self.tmp, "agent.yaml")
        with open(tconf, "w") as f:
            f.write(f"plane:\n  url: {self.url}\n  token: {{file: {tokf}}}\n"
                    f"state_dir: {self.tmp}/state\n"
                    "triggerer:\n  capacity: 100000\n  poll_wait: 5s\n")
        self.tlog = open(os.path.join(self.tmp, "triggerer.log"), "w+")
        self.trg = subprocess.Popen([os.path.join(BIN, "remex-triggerer"), "-c", tconf,
                                     "--log-level", "warn"], stdout=self.tlog,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(self.trg)
        for _ in range(400):
            if self.req("GET", "/api/v1/admin/agents").get("agents"):
                break
            time.sleep(0.025)
        time.sleep(0.5)

    def req(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.url + path, data=data, method=method,
                                   headers={"Authorization": "Bearer " + self.admin,
                                            "Content-Type": "application/json"})
        with urllib.request.urlopen(r, timeout=120) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None

    def put_dag(self, dag):
        dag = dict({"fileloc": "bench.yaml"}, **dag)
        self.req("PUT", f"/api/v1/dags/{dag['dag_id']}",
                 {"bundle": {"name": "main", "version": "v1"}, "dag": dag})

    def metrics(self):
        """The triggerer's metrics file as {name{labels}: value}; {} before the first write."""
        try:
            with open(os.path.join(self.state, "metrics.prom")) as f:
                return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1])
                        for ln in f if ln and not ln.startswith("#")}
        except FileNotFoundError:
            return {}

    def held(self):
        return sum(v for k, v in self.metrics().items()
                   if k.startswith("remex_triggerer_triggers_held"))

    def mem_kb(self, pid):
        with open(f"/proc/{pid}/smaps_rollup") as f:
            t = f.read()
        g = lambda k: int(re.search(k + r":\s+(\d+)", t).group(1))  # noqa: E731
        return g("Rss"), g("Pss"), g("Anonymous")

    def cpu_s(self, pid):
        with open(f"/proc/{pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")

    def close(self):
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait(pred, timeout, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def mib(kb):
    return kb / 1024.0


def timers100k():
    floor = subprocess.run([os.path.join(BUILD, "bench", "_timer_floor"), "100000", "10000"],
                           capture_output=True, text=True)
    print(floor.stdout.strip() or f"timer floor failed: {floor.stderr.strip()}")
    r = Rig()
    try:
        empty = r.mem_kb(r.trg.pid)
        far, soon = 90, 10
        t_load = time.monotonic()
        for d in range(far):
            r.put_dag({"dag_id": f"far{d:02d}", "tasks": [
                {"task_id": f"s{k:04d}", "trigger": {"type": "timer", "delta": 86400}}
                for k in range(PER_DAG)]})
            r.req("POST", f"/api/v1/admin/dags/far{d:02d}/runs", {"run_id": "r"})
        for d in range(soon):
            r.put_dag({"dag_id": f"soon{d}", "tasks": [
                {"task_id": f"s{k:04d}", "trigger": {"type": "timer", "at": f"{{{{ conf.a{k} }}}}"}}
                for k in range(PER_DAG)]})
        got = wait(lambda: r.held() >= far * PER_DAG, 600)
        load_s = time.monotonic() - t_load
        if not got:
            print(f"timers100k: only {r.held():.0f} of {far * PER_DAG} held after 600 s; stopped")
            return
        print(f"timers100k: plane -> triggerer: {far * PER_DAG} triggers held after {load_s:.1f} s "
              "(DAG upload, runs, deferral and the polls included)")
        c0, t0 = r.cpu_s(r.trg.pid), time.monotonic()
        time.sleep(10)
        idle_cpu = (r.cpu_s(r.trg.pid) - c0) / (time.monotonic() - t0) * 100
        # The 10,000 that fire: due spread over one second, starting once they are held.
        base = time.time() + 25
        for d in range(soon):
            conf = {f"a{k}": rfc3339(base + (d * PER_DAG + k) / (soon * PER_DAG))
                    for k in range(PER_DAG)}
            r.req("POST", f"/api/v1/admin/dags/soon{d}/runs", {"run_id": "r", "conf": conf})
        ok = wait(lambda: r.held() >= (far + soon) * PER_DAG, base - time.time() - 0.5)
        rss, pss, anon = r.mem_kb(r.trg.pid)
        print(f"timers100k: triggerer holding {r.held():.0f} timers: RSS {mib(rss):.1f} MiB, "
              f"PSS {mib(pss):.1f} MiB, anonymous {mib(anon):.1f} MiB (goal < 64 MB); "
              f"floor: holding none {mib(empty[0]):.1f} / {mib(empty[1]):.1f} / "
              f"{mib(empty[2]):.1f} MiB{'' if ok else ' (not all held before they were due)'}")
        print(f"timers100k: CPU while holding {far * PER_DAG} idle: {idle_cpu:.2f} % of one core "
              "over 10 s (heartbeats and the long poll only; goal ~0)")
        fired = wait(lambda: r.metrics().get(
            'remex_triggerer_events_total{outcome="fired"}', 0) >= soon * PER_DAG and
            r.metrics(), max(5, base - time.time()) + 30)
        if not fired:
            print("timers100k: the 10,000 did not all fire within 30 s of their due time")
            return
        q = {k: v for k, v in fired.items() if "quantile_seconds" in k}
        p50 = q['remex_triggerer_timer_lateness_quantile_seconds{quantile="0.5"}'] * 1000
        p99 = q['remex_triggerer_timer_lateness_quantile_seconds{quantile="0.99"}'] * 1000
        lag = fired.get("remex_triggerer_loop_lag_max_seconds", 0) * 1000
        print(f"timers100k: 10,000 due within one second, 90,000 held: fire lateness p50 "
              f"{p50:.1f} ms, p99 {p99:.1f} ms (goal p99 < 10 ms; 0.1 ms buckets, upper bounds); "
              f"loop lag max {lag:.0f} ms in that metrics period")
    finally:
        r.close()


if __name__ == "__main__":
    for name in sys.argv[1:] or ["timers100k"]:
        {"timers100k": timers100k}[name]()
