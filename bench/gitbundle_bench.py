#!/usr/bin/env python3
"""Git bundle benchmark (figures only, never pass/fail): a repository of 1,000
commits (100 DAG files, each commit changes one) served by `git daemon` on
loopback, a real remex-plane, and remex-dag-processor.

  clone     --once with no cache: clone the 1,000 commits, check out, parse, sync
  push      one commit pushed, --once: fetch, check out, scan (parse results taken
            from the cache by content hash), sync (1 upload)
  live      a running dag-processor (refresh_interval 1s): push -> the new version's
            DAGs on the plane, polled every 20 ms (mean of 5 pushes; includes the
            wait for the next fetch, 0.5 s on average)

Run: make bench   (or REMEX_BIN=build/bin python3 bench/gitbundle_bench.py)
"""
import json
import random
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import _rig
from _rig import BIN, Plane, free_port, start, stop
ENV = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b",
           GIT_COMMITTER_EMAIL="b@x", GIT_CONFIG_NOSYSTEM="1", HOME="/nonexistent")

DAG = """dag_id: d{i:03d}
schedule: null
start_date: 2026-01-01
description: "rev {rev}"
tasks:
  - task_id: a
    command: [echo, a]
  - task_id: b
    command: [echo, b]
    upstream: [a]
"""


def git(*args, cwd=None, inp=None):
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True,
                          input=inp, timeout=600).stdout


def make_repo(bare, commits, nfiles=100):
    """fast-import: commit 0 adds nfiles DAG files, each later commit changes one."""
    git("init", "-q", "--bare", "-b", "main", bare)
    out = []
    t = 1700000000
    for c in range(commits):
        out.append(f"commit refs/heads/main\ncommitter b <b@x> {t + c} +0000\n"
                   f"data <<EOM\nc{c}\nEOM\n")
        files = range(nfiles) if c == 0 else [c % nfiles]
        for i in files:
            body = DAG.format(i=i, rev=c).encode()
            out.append(f"M 100644 inline dags/d{i:03d}.yaml\ndata {len(body)}\n")
            out.append(body.decode() + "\n")
    git("fast-import", "--quiet", cwd=bare, inp="".join(out).encode())


def http(method, url, body=None, token=None):
    return json.loads(_rig.http(method, url, body, token) or b"null")


def wait(pred, timeout):
    return bool(_rig.wait(pred, timeout))


def run_once(url, admin, dag_id, timeout=300):
    """Triggers dag_id and waits for its run to end: (seconds, state)."""
    t0 = time.monotonic()
    run = http("POST", f"{url}/api/v1/admin/dags/{dag_id}/runs", {}, admin)["run_id"]
    state = None
    end = t0 + timeout
    while time.monotonic() < end:
        state = http("GET", f"{url}/api/v1/admin/dags/{dag_id}/runs/{run}", None, admin)["state"]
        if state in ("success", "failed"):
            break
        time.sleep(0.01)
    return time.monotonic() - t0, state


def worker_fetch(tmp, plane, gport, push, version, procs):
    """A worker whose state_dir holds no checkout runs a task of the plane's commit: it
    fetches the commit itself (clone of the 1,000 commits), then a run of the same commit
    (the floor: the checkout is there), then a run of a newly pushed commit (an
    incremental fetch)."""
    url, admin = plane.url, plane.admin
    cfg = plane.agent_yaml("worker.yaml", (
        f"state_dir: {tmp}/wstate\n"
        f"bundles:\n  - {{name: g, url: \"git://127.0.0.1:{gport}/repo.git\", "
        f"subdir: dags}}\nworker:\n  name: wb\n  slots: 2\n  poll_wait: 10s\n"
        f"  log_dir: {tmp}/tasklogs\nxcom:\n  store: file://{tmp}/xcom\n"))
    w, wlog = start(os.path.join(tmp, "worker.log"),
                    [os.path.join(BIN, "remex-worker"), "-c", cfg, "--log-level", "info"])
    procs.append(w)

    def logtext():
        wlog.seek(0)
        return wlog.read()

    if not wait(lambda: "registered as agent" in logtext(), 30):
        print("worker: did not register")
        return
    # Warm-up: the first run after the worker registered, of a DAG whose version is no
    # commit (it fails at once, nothing fetched): start-up costs stay out of the figures.
    http("PUT", url + "/api/v1/dags/warm", {"bundle": {"name": "g", "version": "none"}, "dag": {
        "dag_id": "warm", "fileloc": "warm.yaml",
        "tasks": [{"task_id": "a", "command": ["true"]}]}}, admin)
    wall, state = run_once(url, admin, "warm")
    print(f"worker warm  trigger->run done={wall:.3f}s state={state} (warm-up, version 'none')")
    rows = [("miss", "a commit this worker never saw: clone + checkout + task")]
    rows.append(("hit", "the same commit again: checkout there (floor)"))
    rows.append(("miss2", "cache and checkouts removed, worker warm: clone + checkout + task"))
    rows.append(("new", "a newly pushed commit: incremental fetch + checkout + task"))
    for what, desc in rows:
        if what == "miss2":
            shutil.rmtree(os.path.join(tmp, "wstate", "bundles"))
        if what == "new":
            sha = push(99)
            if not wait(lambda: version() == sha, 30):
                print("worker: the new commit did not reach the plane")
                return
        n0 = logtext().count("fetched commit")
        wall, state = run_once(url, admin, "d000")
        if what != "hit":  # the log line may reach the file a moment after the run ended
            wait(lambda: logtext().count("fetched commit") > n0, 5)
        fetched = re.findall(r"fetched commit [0-9a-f]{40} in (\d+) ms", logtext())
        fetch = fetched[-1] + "ms" if logtext().count("fetched commit") > n0 else "none"
        print(f"worker {what:5s} trigger->run done={wall:.3f}s fetch={fetch} state={state} "
              f"({desc})")
        sys.stdout.flush()


def main():
    tmp = tempfile.mkdtemp(prefix="remex-gitbench-")
    procs = []
    try:
        srv = os.path.join(tmp, "srv")
        bare = os.path.join(srv, "repo.git")
        os.makedirs(srv)
        t0 = time.monotonic()
        make_repo(bare, 1000)
        print(f"gitbundle: 1,000 commits, 100 DAG files (made in {time.monotonic() - t0:.1f}s)")
        gport = free_port()
        procs.append(subprocess.Popen(
            ["git", "daemon", "--export-all", "--reuseaddr", f"--base-path={srv}",
             "--listen=127.0.0.1", f"--port={gport}", srv], env=ENV,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        plane = Plane(tmp)
        procs.append(plane.proc)
        url, admin = plane.url, plane.admin
        plane.agent_token("b")
        cfg = plane.agent_yaml("agent.yaml", (
            f"state_dir: {tmp}/state\n"
            f"logs:\n  level: warn\nbundles:\n  - {{name: g, url: "
            f"\"git://127.0.0.1:{gport}/repo.git\", subdir: dags, refresh_interval: 1s}}\n"))
        work = os.path.join(tmp, "work")
        git("clone", "-q", bare, work)

        def push(n):
            p = os.path.join(work, "dags", "d000.yaml")
            with open(p, "w") as f:
                f.write(DAG.format(i=0, rev=f"push{n}"))
            git("commit", "-qam", f"push {n}", cwd=work)
            git("push", "-q", "origin", "main", cwd=work)
            return git("rev-parse", "HEAD", cwd=work).decode().strip()

        def version():
            return http("GET", url + "/api/v1/admin/dags/d000", None, admin)["bundle"]["version"]

        for what in ("clone", "push"):
            if what == "push":
                push(0)
            t0 = time.monotonic()
            r = subprocess.run([os.path.join(BIN, "remex-dag-processor"), "-c", cfg, "--once",
                                "--log-level", "debug"], capture_output=True, text=True,
                               timeout=600)
            wall = time.monotonic() - t0
            scan = re.search(r"in (\d+) ms, version", r.stderr)
            sync = re.search(r"(\d+) uploaded, \d+ import errors, (\d+) ms", r.stderr)
            print(f"{what:5s} wall={wall:.3f}s fetch+checkout+scan={scan.group(1) if scan else '?'}"
                  f"ms sync={sync.group(2) if sync else '?'}ms "
                  f"uploads={sync.group(1) if sync else '?'} rc={r.returncode}")
            sys.stdout.flush()
        dp = subprocess.Popen([os.path.join(BIN, "remex-dag-processor"), "-c", cfg],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(dp)
        time.sleep(2)
        lat = []
        for n in range(1, 6):
            time.sleep(random.random())  # pushes at random phases of the fetch interval
            t0 = time.monotonic()
            sha = push(n)
            if wait(lambda: version() == sha, 30):
                lat.append(time.monotonic() - t0)
        if lat:
            print(f"live  push->plane mean={sum(lat) / len(lat):.3f}s min={min(lat):.3f}s "
                  f"max={max(lat):.3f}s n={len(lat)} (refresh_interval 1s)")
        worker_fetch(tmp, plane, gport, push, version, procs)
    finally:
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
