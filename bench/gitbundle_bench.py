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
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.environ.get("REMEX_BIN") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "bin")
ENV = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b",
           GIT_COMMITTER_EMAIL="b@x", GIT_CONFIG_NOSYSTEM="1", HOME="/nonexistent")

DAG = """dag_id: d{i:03d}
schedule: "@daily"
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
    data = json.dumps(body).encode() if body is not None else None
    rq = urllib.request.Request(url, data=data, method=method)
    if token:
        rq.add_header("Authorization", "Bearer " + token)
    if data:
        rq.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(rq, timeout=60) as r:
        return json.loads(r.read() or b"null")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


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
        conf = os.path.join(tmp, "plane.yaml")
        with open(conf, "w") as f:
            f.write(f'listen: "127.0.0.1:0"\ndb_path: "{tmp}/plane.db"\n'
                    f'admin_token_file: "{tmp}/admin.token"\n'
                    f'signing_key_file: "{tmp}/signing.key"\n')
        log = open(os.path.join(tmp, "plane.log"), "w+")
        procs.append(subprocess.Popen([os.path.join(BIN, "remex-plane"), "-c", conf], stdout=log,
                                      stderr=subprocess.STDOUT))
        port = None
        for _ in range(400):
            log.seek(0)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read())
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        admin = open(os.path.join(tmp, "admin.token")).read().strip()
        tok = http("POST", url + "/api/v1/admin/tokens", {"name": "b", "expires_in": 3600},
                   admin)["value"]
        tokf = os.path.join(tmp, "agent.token")
        with open(tokf, "w") as f:
            f.write(tok + "\n")
        os.chmod(tokf, 0o600)
        cfg = os.path.join(tmp, "agent.yaml")
        with open(cfg, "w") as f:
            f.write(f"plane:\n  url: {url}\n  token: {{file: {tokf}}}\nstate_dir: {tmp}/state\n"
                    f"logs:\n  level: warn\nbundles:\n  - {{name: g, url: "
                    f"\"git://127.0.0.1:{gport}/repo.git\", subdir: dags, "
                    f"refresh_interval: 1s}}\n")
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
            return http("GET", url + "/api/v1/admin/dags/d000", None, admin)["bundle_version"]

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
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
