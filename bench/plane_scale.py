#!/usr/bin/env python3
"""remex-plane at scale: one table of figures at growing history and agent
counts, one real plane per row (SQLite on the local disk, log level warn).

For each row "H:A:D": a fresh database gets H finished task instances (runs
of 100 successful task instances of one DAG, written straight into the
database while the plane is stopped, in one transaction); then the plane
starts, D DAGs with a daily schedule starting in 2100 are pushed (each
scheduler pass has them to consider; the push time is printed), A agents
each park a /work long poll on a queue no task uses (as idle workers do),
and the driver measures:
  - /metrics: time of one scrape (median and max of 10);
  - heartbeat: p50 / p99 / max of 300 heartbeats of one agent while another
    thread scrapes /metrics every 50 ms (a scrape holds the plane's lock);
  - the fleet (rows with A > 0): the A agents also heartbeat every 5 s each
    (spread evenly, 20 client threads) and /metrics is scraped every 15 s,
    for WINDOW seconds (default 20) during which bench/_plane_dispatch runs
    at full rate: heartbeat p50 / p99 / max over every fleet heartbeat of
    the window, their p99 while bench/_plane_dispatch ran and outside it,
    and the slowest of the window's scrapes;
  - dispatch and wake-up: bench/_plane_dispatch (TASKS assignments by 4
    workers, runs of 2,000 tasks, then 100 trigger -> waiting long-poll reply
    samples);
  - the longest scheduler pass (remex_plane_scheduler_step_max_seconds: the
    plane's lock is held throughout a pass) and the most CPU time one pass
    used (..._step_max_cpu_seconds; the difference is time the scheduler
    thread waited for a core, lock held, on a loaded machine);
  - DB and WAL size, plane RSS at the end;
  - where a heartbeat's time goes, plane side, over the whole row: p99 of
    its wait for the plane's lock (remex_plane_heartbeat_lock_wait_seconds)
    and of the whole request from its first byte read
    (remex_plane_http_request_duration_seconds), as bucket upper bounds;
    the client's figure less these is time queued for an HTTP thread or a
    core.
The first row (H=0, A=0) is the floor: other rows print their /metrics and
heartbeat p99 as ratios of it. Never asserts; bounded in time and count.

Env: PLANE_SCALE_ROWS "H:A:D,..." (default
"0:0:1,0:200:1,300000:0:1,300000:200:1,0:0:2000"; e.g.
"0:0:1,1000000:0:1,10000000:1000:10000" for a long run), TASKS (20000),
WINDOW (20), PLANE_THREADS (the plane's HTTP threads; 0: its default), DRAIN (1000: one more table, the plane's CPU per task instance
draining 1 DAG x DRAIN runs against DRAIN one-task DAGs x 1 run, each run
triggered first, a fresh plane each; 0: none), LIST_DAGS (10000: one more
table, GET /admin/dags with that many DAGs and a concurrent request's
latency; 0: none), START_HISTORY (0: none; N: one more table, the plane's
start time, exec to /healthz, 3 starts of one database holding N finished
task instances), VIEW_TASKS (0: none; N: one more table, run show and
grid of an N-task run and a concurrent request's latency), REMEX_BIN / REMEX_BUILD (build/bin, build).
"""
import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from _rig import cpu_s, free_port

BUILD = os.environ.get("REMEX_BUILD", "build")
BIN = os.environ.get("REMEX_BIN", os.path.join(BUILD, "bin"))
ROWS = os.environ.get("PLANE_SCALE_ROWS", "0:0:1,0:200:1,300000:0:1,300000:200:1,0:0:2000")
TASKS = min(int(os.environ.get("TASKS", "20000")), 200000)
WINDOW = min(max(float(os.environ.get("WINDOW", "20")), 16.0), 120.0)
DRAIN = min(max(int(os.environ.get("DRAIN", "1000")), 0), 10000)
LIST_DAGS = min(max(int(os.environ.get("LIST_DAGS", "10000")), 0), 20000)
START_HISTORY = min(max(int(os.environ.get("START_HISTORY", "0")), 0), 20_000_000)
START_RUNS = 3
VIEW_TASKS = min(max(int(os.environ.get("VIEW_TASKS", "0")), 0), 10000)
VIEWS = 60
THREADS = min(max(int(os.environ.get("PLANE_THREADS", "0")), 0), 64)
HB_EVERY = 5.0       # each fleet agent's heartbeat period, seconds
SCRAPE_EVERY = 15.0  # the fleet's /metrics scrape period, seconds
HB_THREADS = 20
MAX_HISTORY = 20_000_000
MAX_AGENTS = 2000
MAX_DAGS = 20000


class Plane:
    def __init__(self, tmp):
        self.tmp = tmp
        self.port = free_port()
        self.cfg = os.path.join(tmp, "plane.yaml")
        with open(self.cfg, "w") as f:
            f.write(f'listen: "127.0.0.1:{self.port}"\ndb_path: "{tmp}/plane.db"\n'
                    f'admin_token_file: "{tmp}/admin.token"\n'
                    f'signing_key_file: "{tmp}/signing.key"\n'
                    f'max_connections: {MAX_AGENTS + 200}\nlongpoll_max: "30s"\n'
                    f'body_max: "16MiB"\n'
                    + (f'threads: {THREADS}\n' if THREADS else "") +
                    'log:\n  level: "warn"\n')
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.tmp, "plane.log"), "ab")
        self.proc = subprocess.Popen([os.path.join(BIN, "remex-plane"), "-c", self.cfg],
                                     stdout=self.log, stderr=self.log)
        for _ in range(600):
            try:
                if self.call("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError("plane did not start")
        with open(os.path.join(self.tmp, "admin.token")) as f:
            self.admin = f.read().strip()

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
            self.proc = None
            self.log.close()

    def call(self, method, path, body=None, token=None, timeout=60, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdr = {"Content-Type": "application/json"}
        if token:
            hdr["Authorization"] = "Bearer " + token
        c.request(method, path, json.dumps(body) if body is not None else None, hdr)
        r = c.getresponse()
        data = r.read()
        if not conn:
            c.close()
        return r.status, data

    def mint(self):
        """A new agent token's value."""
        st, b = self.call("POST", "/api/v1/admin/tokens", {"name": "bench", "expires_in": 3600},
                          self.admin)
        return json.loads(b)["value"]

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            m = re.search(r"VmRSS:\s+(\d+)", f.read())
        return int(m.group(1)) / 1024 if m else 0.0


def add_history(db_path, n):
    """n finished task instances (runs of 100) written directly, one transaction."""
    if n <= 0:
        return
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    now = int(time.time() * 1000)
    runs = (n + 99) // 100
    cur = db.cursor()
    cur.execute("BEGIN")
    base = (cur.execute("SELECT COALESCE(MAX(id), 0) FROM dag_runs").fetchone()[0])
    cur.executemany(
        "INSERT INTO dag_runs (id, dag_id, run_id, run_type, logical_date, state, created_ms,"
        " started_ms, ended_ms) VALUES (?, 'history', ?, 'manual', ?, 'success', ?, ?, ?)",
        ((base + r + 1, f"h{r}", now - r, now, now, now) for r in range(runs)))
    cur.executemany(
        "INSERT INTO task_instances (run, task_id, try_number, state, queue, started_ms,"
        " ended_ms) VALUES (?, ?, 1, 'success', 'default', ?, ?)",
        ((base + i // 100 + 1, f"t{i % 100}", now, now) for i in range(n)))
    # The plane's persisted counts by state (migration 140), when the schema
    # has them: a start reads them instead of counting these rows.
    if cur.execute("SELECT 1 FROM sqlite_master WHERE name = 'state_counts'").fetchone():
        for kind, k in (("ti", n), ("run", runs)):
            cur.execute("INSERT INTO state_counts (kind, state, n) VALUES (?, 'success', ?)"
                        " ON CONFLICT (kind, state) DO UPDATE SET n = n + excluded.n", (kind, k))
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * q))] if v else float("nan")


def park_idle(plane, tok, n, stop):
    """n agents, each keeping a /work long poll parked on queue 'idle';
    returns their (agent_id, session token)."""
    agents = []
    for i in range(n):
        st, b = plane.call("POST", "/api/v1/agents/register",
                           {"name": f"idle{i}", "roles": ["worker"], "version": "0.1.0",
                            "hostname": "h", "queues": ["idle"], "slots": 1}, tok)
        if st != 200:
            raise RuntimeError(f"register: {st} {b[:200]}")
        b = json.loads(b)
        agents.append((b["agent_id"], b["session_token"]))
    sessions = [sess for _, sess in agents]

    def loop(sess):
        conn = http.client.HTTPConnection("127.0.0.1", plane.port, timeout=60)
        while not stop.is_set():
            try:
                plane.call("POST", "/api/v1/work",
                           {"queues": ["idle"], "free_slots": 1, "wait": 20}, sess, conn=conn)
            except OSError:
                return
    threads = [threading.Thread(target=loop, args=(s,), daemon=True) for s in sessions]
    for t in threads:
        t.start()
    return agents


def fleet(plane, agents, stop, hb_ms, scrape_ms):
    """Every agent heartbeats every HB_EVERY s (evenly spread over the period,
    HB_THREADS client threads with a kept-alive connection each) and one
    thread scrapes /metrics every SCRAPE_EVERY s, until stop; (perf_counter
    at the start, latency in ms) of each heartbeat is appended to hb_ms and
    each scrape's latency in ms to scrape_ms. Returns the threads."""
    t0 = time.monotonic()

    def beat(mine):
        conn = http.client.HTTPConnection("127.0.0.1", plane.port, timeout=60)
        for k in range(1_000_000):
            for j, (idx, aid, sess) in enumerate(mine):
                due = t0 + k * HB_EVERY + idx * HB_EVERY / len(agents)
                wait = due - time.monotonic()
                if stop.wait(wait) if wait > 0 else stop.is_set():
                    return
                t = time.perf_counter()
                try:
                    plane.call("POST", f"/api/v1/agents/{aid}/heartbeat",
                               {"state": "running", "free_slots": 1, "running": []}, sess,
                               conn=conn)
                except OSError:
                    return
                hb_ms.append((t, (time.perf_counter() - t) * 1000))

    def scrape():
        for k in range(1_000_000):
            if stop.wait(max(0.0, t0 + k * SCRAPE_EVERY - time.monotonic())):
                return
            t = time.perf_counter()
            plane.call("GET", "/metrics")
            scrape_ms.append((time.perf_counter() - t) * 1000)

    indexed = [(i, aid, sess) for i, (aid, sess) in enumerate(agents)]
    threads = [threading.Thread(target=beat, args=(indexed[k::HB_THREADS],), daemon=True)
               for k in range(min(HB_THREADS, len(agents)))]
    threads.append(threading.Thread(target=scrape, daemon=True))
    for t in threads:
        t.start()
    return threads


def sched_stat(plane, name, prefix="remex_plane_scheduler_"):
    text = plane.call("GET", "/metrics")[1].decode()
    m = re.search(r"^" + prefix + name + r" ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def hist_q(text, name, match, q):
    """Upper bound (ms) of the bucket holding quantile q of a /metrics
    histogram (series whose labels contain match); nan when absent."""
    les = []
    for m in re.finditer(r"^" + name + r"_bucket\{(.*)le=\"([^\"]+)\"\} (\d+)$", text, re.M):
        if match in m.group(1):
            les.append((float("inf") if m.group(2) == "+Inf" else float(m.group(2)),
                        int(m.group(3))))
    if not les or les[-1][1] == 0:
        return float("nan")
    total = max(n for _, n in les)
    for le, n in sorted(les):
        if n >= q * total:
            return le * 1000
    return float("nan")


def parked(plane):
    text = plane.call("GET", "/metrics")[1].decode()
    m = re.search(r'remex_plane_long_polls_parked\{kind="work"\} (\d+)', text)
    return int(m.group(1)) if m else None


def metrics_times(plane):
    ts = []
    for _ in range(10):
        t0 = time.perf_counter()
        plane.call("GET", "/metrics")
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts), max(ts)


def heartbeats(plane, tok):
    st, b = plane.call("POST", "/api/v1/agents/register",
                       {"name": "hb", "roles": ["sentinel"], "version": "0.1.0",
                        "hostname": "h", "queues": [], "slots": 0}, tok)
    b = json.loads(b)
    aid, sess = b["agent_id"], b["session_token"]
    stop = threading.Event()

    def scraper():
        while not stop.is_set():
            plane.call("GET", "/metrics")
            time.sleep(0.05)
    th = threading.Thread(target=scraper, daemon=True)
    th.start()
    conn = http.client.HTTPConnection("127.0.0.1", plane.port, timeout=60)
    ts = []
    for _ in range(300):
        t0 = time.perf_counter()
        plane.call("POST", f"/api/v1/agents/{aid}/heartbeat",
                   {"state": "running", "free_slots": 0, "running": []}, sess, conn=conn)
        ts.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.002)
    stop.set()
    th.join(30)
    return pct(ts, 0.5), pct(ts, 0.99), max(ts)


def dispatch(plane, tok):
    out = subprocess.run(
        [os.path.join(BUILD, "bench", "_plane_dispatch"), "--url", f"http://127.0.0.1:{plane.port}",
         "--admin", plane.admin, "--agent-token", tok, "--tasks", str(TASKS), "--workers", "4",
         "--slots", "16", "--samples", "100", "--plane-pid", str(plane.proc.pid)],
        capture_output=True, text=True, timeout=600).stdout
    rate = re.search(r"([\d.]+) assignments/s", out)
    lat = re.search(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms", out)
    return (float(rate.group(1)) if rate else float("nan"),
            float(lat.group(1)) if lat else float("nan"),
            float(lat.group(2)) if lat else float("nan"))


def push_dags(plane, n):
    """n one-task DAGs, scheduled daily from 2100 (never due here); seconds taken."""
    conn = http.client.HTTPConnection("127.0.0.1", plane.port, timeout=60)
    t0 = time.monotonic()
    for i in range(n):
        d = {"dag_id": f"idle{i:05d}", "fileloc": f"dags/idle{i}.yaml", "schedule": "@daily",
             "start_date": "2100-01-01T00:00:00Z", "tasks": [{"task_id": "t",
                                                              "command": ["true"]}]}
        st, b = plane.call("PUT", f"/api/v1/dags/{d['dag_id']}",
                           {"bundle": {"name": "idle", "version": "1"}, "dag": d}, plane.admin,
                           conn=conn)
        if st != 200:
            raise RuntimeError(f"push: {st} {b[:200]}")
    return time.monotonic() - t0


def drain(plane, tok, ndags, nruns, tag):
    """ndags one-task DAGs (queue "drain"), nruns manual runs each, all
    triggered, then drained by one worker (start, success); returns the
    plane's CPU time per task instance in µs over the drain, and the
    wall-clock rate (bounded by this Python client)."""
    conn = http.client.HTTPConnection("127.0.0.1", plane.port, timeout=60)
    for i in range(ndags):
        d = {"dag_id": f"{tag}{i:05d}", "fileloc": "dags/drain.yaml", "schedule": None,
             "max_active_runs": nruns,
             "tasks": [{"task_id": "t", "command": ["true"], "queue": "drain"}]}
        st, b = plane.call("PUT", f"/api/v1/dags/{d['dag_id']}",
                           {"bundle": {"name": "drain", "version": "1"}, "dag": d}, plane.admin,
                           conn=conn)
        if st != 200:
            raise RuntimeError(f"push: {st} {b[:200]}")
    st, b = plane.call("POST", "/api/v1/agents/register",
                       {"name": f"drain-{tag}", "roles": ["worker"], "version": "0.1.0",
                        "hostname": "h", "queues": ["drain"], "slots": 64}, tok, conn=conn)
    sess = json.loads(b)["session_token"]
    c0, t0 = cpu_s(plane.proc.pid), time.monotonic()
    for i in range(ndags):
        for r in range(nruns):
            st, b = plane.call("POST", f"/api/v1/admin/dags/{tag}{i:05d}/runs",
                               {"run_id": f"r{r}"}, plane.admin, conn=conn)
            if st != 200:
                raise RuntimeError(f"trigger: {st} {b[:200]}")
    total, done = ndags * nruns, 0
    deadline = time.monotonic() + 300
    while done < total and time.monotonic() < deadline:
        st, b = plane.call("POST", "/api/v1/work",
                           {"queues": ["drain"], "free_slots": 64, "wait": 1}, sess, conn=conn)
        for a in json.loads(b)["assignments"]:
            path = f"/api/v1/task-instances/{a['ti_id']}"
            plane.call("POST", path + "/start",
                       {"try_number": a["try_number"], "pid": 1, "hostname": "h"},
                       a["task_token"], conn=conn)
            plane.call("POST", path + "/state",
                       {"try_number": a["try_number"], "state": "success"}, a["task_token"],
                       conn=conn)
            done += 1
    cpu, wall = cpu_s(plane.proc.pid) - c0, time.monotonic() - t0
    conn.close()
    return cpu / max(done, 1) * 1e6, done / wall


def size_mib(path):
    try:
        return os.path.getsize(path) / 1048576
    except OSError:
        return 0.0


def row(history, agents, ndags):
    tmp = tempfile.mkdtemp(prefix="remex-bench-scale.")
    plane = Plane(tmp)
    stop = threading.Event()
    try:
        plane.start()  # creates the schema
        plane.stop()
        t0 = time.monotonic()
        add_history(os.path.join(tmp, "plane.db"), history)
        fill = time.monotonic() - t0
        t0 = time.monotonic()
        plane.start()
        start = time.monotonic() - t0
        tok = plane.mint()
        push = push_dags(plane, ndags)
        fleet_agents = park_idle(plane, tok, agents, stop)
        deadline = time.monotonic() + 60
        while agents and time.monotonic() < deadline:
            n = parked(plane)
            if n is None:  # a plane without the gauge: give the polls time to park
                time.sleep(2)
                break
            if n >= agents:
                break
            time.sleep(0.1)
        m50, mmax = metrics_times(plane)
        h50, h99, hmax = heartbeats(plane, tok)
        hb_ms, scrape_ms, fstop = [], [], threading.Event()
        if fleet_agents:
            fthreads = fleet(plane, fleet_agents, fstop, hb_ms, scrape_ms)
            t0 = time.monotonic()
            time.sleep(2)
        d0 = time.perf_counter()
        rate, w50, w99 = dispatch(plane, tok)
        d1 = time.perf_counter()
        if fleet_agents:
            fstop.wait(max(0.0, t0 + WINDOW - time.monotonic()))
            fstop.set()
            for t in fthreads:
                t.join(60)
        text = plane.call("GET", "/metrics")[1].decode()
        hb_route = 'route="/api/v1/agents/{agent_id}/heartbeat",code="200"'
        waits = (hist_q(text, "remex_plane_heartbeat_lock_wait_seconds", "", 0.99),
                 hist_q(text, "remex_plane_http_request_duration_seconds", hb_route, 0.99))
        all_ms = [ms for _, ms in hb_ms]
        during = [ms for t, ms in hb_ms if d0 <= t < d1]
        outside = [ms for t, ms in hb_ms if not d0 <= t < d1]
        db = os.path.join(tmp, "plane.db")
        r = dict(history=history, agents=agents, push=push, fill=fill, start=start, m50=m50, mmax=mmax, h50=h50,
                 h99=h99, hmax=hmax, rate=rate, w50=w50, w99=w99, db=size_mib(db),
                 wal=size_mib(db + "-wal"), rss=plane.rss_mib(),
                 f50=pct(all_ms, 0.5), f99=pct(all_ms, 0.99),
                 fmax=max(all_ms, default=float("nan")), fn=len(all_ms),
                 fd99=pct(during, 0.99), fo99=pct(outside, 0.99), fdn=len(during), smax=max(scrape_ms, default=float("nan")), ns=len(scrape_ms),
                 step=sched_stat(plane, "step_max_seconds") * 1000,
                 step_cpu=sched_stat(plane, "step_max_cpu_seconds") * 1000,
                 slices=sched_stat(plane, "slices_total"), waits=waits)
    finally:
        stop.set()
        plane.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return r


def start_row():
    """Plane start (exec -> /healthz answers) at START_HISTORY finished task
    instances: one seeded database, START_RUNS starts, each after a clean stop."""
    tmp = tempfile.mkdtemp(prefix="remex-bench-start.")
    plane = Plane(tmp)
    try:
        plane.start()  # creates the schema
        plane.stop()
        t0 = time.monotonic()
        add_history(os.path.join(tmp, "plane.db"), START_HISTORY)
        fill = time.monotonic() - t0
        times = []
        for _ in range(START_RUNS):
            t0 = time.monotonic()
            plane.start()
            times.append(time.monotonic() - t0)
            plane.stop()
        print("| finished TIs (fill s) | plane start s, median (each) | DB MiB |")
        print("|---:|---:|---|")
        print(f"| {START_HISTORY:,} ({fill:.0f}) | {statistics.median(times):.3f}"
              f" ({', '.join(f'{t:.3f}' for t in times)})"
              f" | {size_mib(os.path.join(tmp, 'plane.db')):.1f} |", flush=True)
    finally:
        plane.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def drain_rows():
    """1 DAG x DRAIN runs against DRAIN DAGs x 1 run, a fresh plane each."""
    print("| shape | plane CPU µs per task instance | drained /s (bound by this Python client) |")
    print("|---|---:|---:|")
    for ndags, nruns in ((1, DRAIN), (DRAIN, 1)):
        tmp = tempfile.mkdtemp(prefix="remex-bench-drain.")
        plane = Plane(tmp)
        try:
            plane.start()
            us, rate = drain(plane, plane.mint(), ndags, nruns, "dr")
        finally:
            plane.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"| {ndags:,} DAG{'s' if ndags > 1 else ''} x {nruns:,} run{'s' if nruns > 1 else ''}"
              f" | {us:.0f} | {rate:,.0f} |", flush=True)


def list_row():
    """LIST_DAGS DAGs in a fresh plane: 20 GET /admin/dags back to back while
    four other connections in turn read one DAG (GET /admin/dags/{id}, which
    takes the plane's lock) every millisecond. Each connection's p50 / p99 is
    printed: the plane serves a connection on one of its HTTP threads, so a
    connection on the lister's thread waits for whole lists whatever the
    lock does, and the others show the lock's holds."""
    tmp = tempfile.mkdtemp(prefix="remex-bench-list.")
    plane = Plane(tmp)
    try:
        plane.start()
        push_dags(plane, LIST_DAGS)
        lists, done = [], threading.Event()

        def lister():
            conn = http.client.HTTPConnection("127.0.0.1", plane.port, timeout=60)
            for _ in range(20):
                t = time.perf_counter()
                plane.call("GET", "/api/v1/admin/dags", None, plane.admin, conn=conn)
                lists.append((time.perf_counter() - t) * 1000)
            done.set()
        th = threading.Thread(target=lister, daemon=True)
        th.start()
        conns = [http.client.HTTPConnection("127.0.0.1", plane.port, timeout=60)
                 for _ in range(4)]
        shows = [[] for _ in conns]
        for k in range(100000):
            if done.is_set():
                break
            t = time.perf_counter()
            plane.call("GET", "/api/v1/admin/dags/idle00001", None, plane.admin,
                       conn=conns[k % 4])
            shows[k % 4].append((time.perf_counter() - t) * 1000)
            time.sleep(0.001)
        th.join(120)
    finally:
        plane.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    per = ", ".join(f"{pct(v, 0.5):.2f} / {pct(v, 0.99):.2f}" for v in shows)
    print(f"| DAGs | GET /admin/dags p50 ms | GET /admin/dags/{{id}} while listing, p50 / p99 ms"
          f" of each of 4 connections ({sum(map(len, shows)):,} requests) |\n|---:|---:|---|\n"
          f"| {LIST_DAGS:,} | {pct(lists, 0.5):.1f} | {per} |", flush=True)


def view_row():
    """A run of VIEW_TASKS tasks in a fresh plane: 30 GET .../runs/{run_id}
    and 30 GET .../grid, alternated back to back on one connection, while
    four other connections in turn read one DAG every millisecond (each
    takes the plane's lock): the others' p99 shows how long a view holds
    the lock (a connection on the viewer's HTTP thread waits for whole views
    whatever the lock does)."""
    tmp = tempfile.mkdtemp(prefix="remex-bench-view.")
    plane = Plane(tmp)
    try:
        plane.start()
        push_dags(plane, 1)
        d = {"dag_id": "wide", "fileloc": "dags/wide.yaml", "max_active_tasks": VIEW_TASKS,
             "tasks": [{"task_id": f"t{i:05d}", "command": ["true"]} for i in range(VIEW_TASKS)]}
        st, b = plane.call("PUT", "/api/v1/dags/wide",
                           {"bundle": {"name": "wide", "version": "1"}, "dag": d}, plane.admin)
        if st != 200:
            raise RuntimeError(f"push wide: {st} {b[:200]}")
        plane.call("POST", "/api/v1/admin/dags/wide/runs", {"run_id": "r"}, plane.admin)
        for _ in range(600):
            st, b = plane.call("GET", "/api/v1/admin/dags/wide/runs/r", None, plane.admin)
            if st == 200 and len(json.loads(b)["task_instances"]) == VIEW_TASKS:
                break
            time.sleep(0.1)
        views, done = {"show": [], "grid": []}, threading.Event()

        def viewer():
            conn = http.client.HTTPConnection("127.0.0.1", plane.port, timeout=60)
            for k in range(VIEWS):
                kind = "show" if k % 2 == 0 else "grid"
                path = "/api/v1/admin/dags/wide/" + ("runs/r" if kind == "show" else "grid")
                t = time.perf_counter()
                plane.call("GET", path, None, plane.admin, conn=conn)
                views[kind].append((time.perf_counter() - t) * 1000)
            done.set()
        th = threading.Thread(target=viewer, daemon=True)
        th.start()
        conns = [http.client.HTTPConnection("127.0.0.1", plane.port, timeout=60)
                 for _ in range(4)]
        reads = [[] for _ in conns]
        for k in range(100000):
            if done.is_set():
                break
            t = time.perf_counter()
            plane.call("GET", "/api/v1/admin/dags/idle00000", None, plane.admin,
                       conn=conns[k % 4])
            reads[k % 4].append((time.perf_counter() - t) * 1000)
            time.sleep(0.001)
        th.join(120)
        hold = sched_stat(plane, "view_hold_max_seconds", "remex_plane_") * 1000
    finally:
        plane.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    per = ", ".join(f"{pct(v, 0.5):.2f} / {pct(v, 0.99):.2f}" for v in reads)
    print(f"| run tasks | run show p50 ms | grid p50 ms | longest lock hold of a view ms"
          f" | DAG read while viewing, p50 / p99 ms"
          f" of each of 4 connections ({sum(map(len, reads)):,} requests) |\n"
          f"|---:|---:|---:|---:|---|\n"
          f"| {VIEW_TASKS:,} | {pct(views['show'], 0.5):.1f} | {pct(views['grid'], 0.5):.1f}"
          f" | {hold:.2f} | {per} |", flush=True)


def main():
    if not os.access(os.path.join(BIN, "remex-plane"), os.X_OK) or \
            not os.access(os.path.join(BUILD, "bench", "_plane_dispatch"), os.X_OK):
        print("plane_scale: build first (make bench)")
        return 1
    rows = []
    for spec in filter(None, ROWS.split(",")):
        h, a, d = ([int(x) for x in spec.split(":")] + [1, 1])[:3]
        rows.append((min(max(h, 0), MAX_HISTORY), min(max(a, 0), MAX_AGENTS),
                     min(max(d, 0), MAX_DAGS)))
    print(f"plane_scale: {os.cpu_count()} cores, load average before:"
          f" {' '.join(open('/proc/loadavg').read().split()[:3])}; binary {BIN}/remex-plane")
    if rows:
        print("| finished TIs (fill s, plane start s) | agents | DAGs (push s) "
              "| /metrics p50 / max ms (x floor) "
              "| heartbeat p50 / p99 / max ms, one agent scraped every 50 ms (p99 x floor) "
              "| fleet heartbeat p50 / p99 / max ms (n) | fleet heartbeat p99 ms during dispatch (n) / outside "
              "| fleet scrape max ms (n) "
              "| dispatch /s | wake-up p50 / p99 ms | longest scheduler pass ms: wall / CPU (slices) "
              "| DB / WAL MiB | plane RSS MiB "
              "| heartbeat p99 ms (bucket bound), plane side: lock wait / whole request |")
        print("|---:|---:|---:|---|---|---|---|---|---:|---|---|---|---:|---|")
        floor = None
        for h, a, d in rows:
            r = row(h, a, d)
            floor = floor or r
            fl = (f"{r['f50']:.2f} / {r['f99']:.2f} / {r['fmax']:.2f} ({r['fn']:,})" if r["fn"]
                  else "-")
            sc = f"{r['smax']:.2f} ({r['ns']})" if r["ns"] else "-"
            fd = f"{r['fd99']:.2f} ({r['fdn']:,}) / {r['fo99']:.2f}" if r["fn"] else "-"
            print(f"| {h:,} ({r['fill']:.0f}, {r['start']:.2f}) | {a:,} | {d:,} ({r['push']:.2f})"
                  f" | {r['m50']:.2f} / {r['mmax']:.2f} ({r['m50'] / floor['m50']:.1f}x)"
                  f" | {r['h50']:.2f} / {r['h99']:.2f} / {r['hmax']:.2f} "
                  f"({r['h99'] / floor['h99']:.1f}x) | {fl} | {fd} | {sc} | {r['rate']:,.0f}"
                  f" | {r['w50']:.2f} / {r['w99']:.2f} | {r['step']:.2f} / {r['step_cpu']:.2f}"
                  f" ({r['slices']:.0f})"
                  f" | {r['db']:.1f} / {r['wal']:.1f} | {r['rss']:.1f}"
                  f" | {r['waits'][0]:g} / {r['waits'][1]:g} |", flush=True)
    if START_HISTORY:
        start_row()
    if DRAIN:
        drain_rows()
    if LIST_DAGS:
        list_row()
    if VIEW_TASKS:
        view_row()
    print(f"plane_scale: load average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
