#!/usr/bin/env python3
"""dag-processor benchmarks (figures only, never pass/fail): a real remex-plane
on loopback and remex-dag-processor --once over generated local bundles.

  cold      10,000 DAG files (10 tasks each), empty cache, empty plane:
            scan + parse + manifest + 10,000 uploads (goal < 5 s)
  warm      the same again, nothing changed: the cache answers every file,
            the plane lacks nothing (goal < 0.3 s for the rescan, 0 uploads)
  one       one file changed among 10,000 (goal < 0.5 s, 1 upload)
  floor     libyaml parsing the same files, events only (build/bench/_yaml_floor)

Each line gives the wall time of the whole --once process (start, register,
scan, sync, exit), the scan and sync times the dag-processor logs, the DAGs
uploaded (as the dag-processor logs them), the upload requests (PUT and bulk)
counted by the plane's /metrics, the plane's own time for the manifest (its
log line), the CPU time of the dag-processor and of the plane during the case (these do not grow with the machine's load as the wall
times do), and the dag-processor's peak RSS.

Run: make bench   (or REMEX_BIN=build/bin python3 bench/dagproc_bench.py [N])
"""
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from _rig import BIN, BUILD, Plane, cpu_s, http, stop

DAG = """dag_id: d{i:05d}
schedule: "@daily"
start_date: 2026-01-01
tags: [bench]
default_args:
  retries: 1
  retry_delay: 30s
tasks:
{tasks}"""


def task(j):
    up = f"\n    upstream: [t{j - 1}]" if j else ""
    return f"  - task_id: t{j}\n    command: [echo, \"{{{{ ds }}}}\", \"{j}\"]{up}\n"


def gen(root, n):
    for i in range(n):
        sub = os.path.join(root, f"g{i // 1000:02d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"d{i:05d}.yaml"), "w") as f:
            f.write(DAG.format(i=i, tasks="".join(task(j) for j in range(10))))


def uploads(url):
    text = http("GET", url + "/metrics").decode()
    return sum(int(m.group(1)) for m in re.finditer(
        r'remex_plane_http_requests_total\{method="(?:PUT|POST)",'
        r'route="/api/v1/dags/(?:\{dag_id\}|bulk)",code="\d+"\} (\d+)', text))


def manifest_ms(log):
    """The plane's own time for the last manifest it took (its info log line)."""
    log.seek(0)
    m = re.findall(r"manifest of bundle \S+ at \S+: \d+ DAGs missing, ([\d.]+) ms", log.read())
    return m[-1] if m else "-"


def run_once(cfg, url, what, plane_pid, log):
    before = uploads(url)
    cpu0 = cpu_s(plane_pid)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.Popen([os.path.join(BIN, "remex-dag-processor"), "-c", cfg, "--once",
                          "--log-level", "debug"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out, _ = p.communicate(timeout=600)
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    dp_cpu = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
    if p.returncode != 0:
        print(out[-2000:])
    if os.environ.get("VERBOSE"):
        print(out)
    scan = re.search(r"scanned \d+ files .* in (\d+) ms", out)
    sync = re.search(r"(\d+) uploaded, \d+ import errors, (\d+) ms", out)
    print(f"{what:5s} wall={wall:.3f}s scan={scan.group(1) if scan else '?'}ms "
          f"sync={sync.group(2) if sync else '-'}ms dags_uploaded={sync.group(1) if sync else 0} "
          f"upload_requests={uploads(url) - before} "
          f"cpu_dp={dp_cpu:.3f}s cpu_plane={cpu_s(plane_pid) - cpu0:.3f}s "
          f"plane_manifest={manifest_ms(log)}ms "
          f"rc={p.returncode} peak_rss_children={ru.ru_maxrss / 1024:.1f}MB")
    sys.stdout.flush()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    tmp = tempfile.mkdtemp(prefix="remex-dpbench-")
    plane = None
    try:
        bundle = os.path.join(tmp, "bundle")
        gen(bundle, n)
        # A manifest of 10,000 files is about 1.3 MB: over the default cap.
        plane = Plane(tmp, "body_max: 64MiB\n")
        url, log = plane.url, plane.log
        plane.agent_token()
        cfg = plane.agent_yaml("agent.yaml", f"state_dir: {tmp}/state\nlogs:\n  level: warn\n"
                               f"bundles:\n  - {{name: bench, path: {bundle}, versioned: false}}\n")
        print(f"dagproc: {n} DAG files of 10 tasks, plane + dag-processor --once on loopback")
        time.sleep(2.1)  # files older than the racy window, as in a bundle nobody edits
        run_once(cfg, url, "cold", plane.proc.pid, log)
        run_once(cfg, url, "warm", plane.proc.pid, log)
        with open(os.path.join(bundle, "g00", "d00000.yaml"), "a") as f:
            f.write("description: changed\n")
        run_once(cfg, url, "one", plane.proc.pid, log)
        floor = os.path.join(BUILD, "bench", "_yaml_floor")
        if os.path.exists(floor):
            t0 = time.monotonic()
            out = subprocess.run([floor, bundle], capture_output=True, text=True).stdout.strip()
            print(f"floor {out} wall={time.monotonic() - t0:.3f}s")
    finally:
        if plane:
            stop([plane.proc])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
