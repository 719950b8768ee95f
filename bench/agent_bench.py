#!/usr/bin/env python3
"""remex-agent benchmarks (figures only, never pass/fail): a real remex-plane
and remex-agent with its roles on loopback.

  ready      remex-agent start -> every role READY (target < 300 ms), 5 starts,
             next to the floor of one fork+exec of `true` (build/bench/_spawn_floor)
  memory     the idle agent (supervisor + its roles): sum of RSS and of PSS from
             /proc/PID/smaps_rollup (target < 15 MB PSS in all), next to the floor of
             the libraries each process loads (build/bench/_rss_floor, times the processes)
  restart    kill -9 of the worker -> restarted and taking work again: from the kill to
             the plane's start of a task queued at the kill (target < 1.5 s), 5 times

Run: make bench   (or REMEX_BIN=build/bin python3 bench/agent_bench.py [ready|memory|restart])
The roles started are those of agent.roles whose binaries are built (ROLES=a,b overrides).
"""
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import worker_bench  # noqa: E402  (the plane rig and helpers)
from _rig import BIN, BUILD, mem_kb, start, ts  # noqa: E402
ALL = [("worker", "remex-worker"), ("dag-processor", "remex-dag-processor"),
       ("triggerer", "remex-triggerer"), ("sentinel", "remex-sentinel")]


def roles():
    if os.environ.get("ROLES"):
        return os.environ["ROLES"].split(",")
    return [r for r, b in ALL if os.access(os.path.join(BIN, b), os.X_OK)]


class AgentRig(worker_bench.Rig):
    """The plane of worker_bench's rig, with remex-agent in place of a bare worker."""

    def __init__(self):
        super().__init__(4)
        os.killpg(self.worker.pid, signal.SIGKILL)  # the rig's own worker: not used here
        self.worker.wait()
        self.procs.remove(self.worker)
        self.conf = os.path.join(self.tmp, "agent.yaml")
        with open(self.conf, "a") as f:
            f.write(f"state_dir: {self.tmp}/agentstate\nlogs:\n  level: warn\n"
                    f"agent:\n  roles: [{', '.join(roles())}]\n  restart_delay: 1s\n")
        self.agent = None

    def start_agent(self):
        t0 = time.monotonic()
        self.agent, self.alog = start(os.path.join(self.tmp, "agent.log"), [
            os.path.join(BIN, "remex-agent"), "-c", self.conf, "--log-level", "info"], True)
        self.procs.append(self.agent)
        for _ in range(2000):
            self.alog.seek(0)
            m = re.search(r"agent ready: .* \((\d+) ms after start\)", self.alog.read())
            if m:
                return time.monotonic() - t0, int(m.group(1))
            time.sleep(0.002)
        raise RuntimeError("agent not ready: " + open(self.alog.name).read()[-2000:])

    def stop_agent(self):
        self.agent.send_signal(signal.SIGTERM)
        self.agent.wait(30)
        self.procs.remove(self.agent)
        self.alog.close()

    def status(self):
        out = subprocess.run([os.path.join(BIN, "remex-agent"), "-c", self.conf, "status",
                              "--json"], capture_output=True, text=True, timeout=10)
        import json
        return json.loads(out.stdout)


def spawn_floor_us():
    exe = os.path.join(BUILD, "bench", "_spawn_floor")
    if not os.access(exe, os.X_OK):
        return None
    out = subprocess.run([exe, "200"], capture_output=True, text=True).stdout
    m = re.search(r"([\d.]+) (?:us|µs)", out)
    return float(m.group(1)) if m else None


def ready():
    r = AgentRig()
    try:
        walls, own = [], []
        for _ in range(5):
            wall, ms = r.start_agent()
            walls.append(wall * 1000)
            own.append(ms)
            r.stop_agent()
        fl = spawn_floor_us()
        print(f"ready: remex-agent start -> {len(roles())} roles ready ({', '.join(roles())}): "
              f"median {statistics.median(walls):.0f} ms wall from exec "
              f"({statistics.median(own)} ms by the agent's clock; runs "
              f"{', '.join(f'{w:.0f}' for w in walls)} ms; target < 300 ms)"
              + (f"; floor: one fork+exec {fl:.0f} us" if fl else ""))
    finally:
        r.close()


def memory():
    floor = worker_bench.rss_floor()
    r = AgentRig()
    try:
        r.start_agent()
        time.sleep(3.0)  # idle: heaps trimmed
        pids = [r.agent.pid] + [x["pid"] for x in r.status()["roles"] if x["pid"]]
        rows = [(p, *mem_kb(p)[:2]) for p in pids]
        names = ["remex-agent"] + [x["role"] for x in r.status()["roles"] if x["pid"]]
        for (p, rss, pss), n in zip(rows, names):
            print(f"memory: {n} (pid {p}): RSS {rss / 1024:.2f} MiB, PSS {pss / 1024:.2f} MiB")
        rss_sum = sum(x[1] for x in rows)
        pss_sum = sum(x[2] for x in rows)
        print(f"memory: idle agent, {len(rows)} processes: PSS {pss_sum / 1024:.2f} MiB in all "
              f"(target < 15 MB), RSS {rss_sum / 1024:.2f} MiB in all"
              + (f"; floor: {len(rows)} x the libraries alone = {len(rows) * floor / 1024:.2f} "
                 f"MiB RSS" if floor else ""))
    finally:
        r.close()


def restart():
    r = AgentRig()
    try:
        r.start_agent()
        r.put_dag({"dag_id": "one", "tasks": [{"task_id": "t", "command": ["true"]}]})
        figs = []
        for _ in range(5):
            w = [x for x in r.status()["roles"] if x["role"] == "worker"][0]
            time.sleep(0.5)
            t_kill = time.time()
            os.kill(w["pid"], signal.SIGKILL)
            run_id = r.req("POST", "/api/v1/admin/dags/one/runs", {})["run_id"]
            for _ in range(5000):
                run = r.req("GET", f"/api/v1/admin/dags/one/runs/{run_id}")
                ti = (run["task_instances"] or [{}])[0]  # none until the scheduler's pass
                if ti.get("start_date"):
                    figs.append(ts(ti["start_date"]) - t_kill)
                    break
                time.sleep(0.005)
            for _ in range(2000):
                if r.req("GET", f"/api/v1/admin/dags/one/runs/{run_id}")["state"] == "success":
                    break
                time.sleep(0.005)
        print(f"restart: kill -9 of the worker -> a task queued at the kill started on the "
              f"restarted worker: median {statistics.median(figs) * 1000:.0f} ms "
              f"(runs {', '.join(f'{f * 1000:.0f}' for f in figs)} ms; restart delay 1 s + "
              f"jitter up to 0.25 s; target < 1.5 s)")
    finally:
        r.close()


def main():
    which = sys.argv[1:] or ["ready", "memory", "restart"]
    for w in which:
        globals()[w]()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
