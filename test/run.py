#!/usr/bin/env python3
"""remex test runner: unit tests (cmocka, TAP), then integration tests (Python).

Prints one closing line `N passed, N failed[, N skipped]` and exits non-zero on
any failure. Each unit binary and each integration file runs in its own process
with a time limit, so a hang or a crash is a counted failure, not a stuck CI.
"""
import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT_TIMEOUT = 300
INTEGRATION_TIMEOUT = 600


def run_unit(path, env):
    name = os.path.basename(path)
    t0 = time.monotonic()
    try:
        p = subprocess.run([path], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=UNIT_TIMEOUT)
        out, rc = p.stdout.decode(errors="replace"), p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") + "\n# TIMEOUT\n"
        rc = -1
    passed = failed = 0
    skipped = []
    reason = ""
    for line in out.splitlines():
        m = re.match(r"^not ok \d+ # SKIP\s*(.*)$", line)
        if m:
            # cmocka prints no reason: tests print "# <reason>" just before skip().
            skipped.append([f"{name}: {m.group(1)}", reason or "skipped (no reason printed)"])
        elif re.match(r"^not ok \d+", line):
            failed += 1
        elif re.match(r"^ok \d+", line):
            passed += 1
        reason = line[2:].strip() if line.startswith("# ") else ""
    planned = re.search(r"^1\.\.(\d+)", out, re.M)
    if rc != 0 and failed == 0:
        failed = 1  # crashed, sanitizer report or timeout outside a test case
    if planned and passed + failed + len(skipped) < int(planned.group(1)):
        failed = int(planned.group(1)) - passed - len(skipped)
    return name, passed, failed, skipped, out, time.monotonic() - t0


def run_integration(path, env):
    name = os.path.relpath(path, ROOT)
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, os.path.join(ROOT, "test/integration/runone.py"), path],
                           env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=INTEGRATION_TIMEOUT)
        out, rc = p.stdout.decode(errors="replace"), p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") + "\n# TIMEOUT\n"
        rc = -1
    m = re.findall(r"^@@RESULT (.*)$", out, re.M)
    if m:
        r = json.loads(m[-1])
        passed, failed, skipped = r["passed"], r["failed"], r["skipped"]
        if rc != 0 and failed == 0:
            failed = 1
    else:
        passed, failed, skipped = 0, 1, []
    return name, passed, failed, skipped, out, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--san", default="0")
    ap.add_argument("--only", default="", help="regex on test file names")
    ap.add_argument("--unit-only", action="store_true")
    ap.add_argument("-j", type=int, default=int(os.environ.get("REMEX_TEST_JOBS", "2")))
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    env = dict(os.environ)
    env["CMOCKA_MESSAGE_OUTPUT"] = "TAP"
    env["REMEX_BUILD"] = build
    env["REMEX_BIN"] = os.path.join(build, "bin")
    env["REMEX_SAN"] = args.san
    env["REMEX_ROOT"] = ROOT
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # Tests never reach a real cloud metadata service (tests that want one point at a fake).
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["NO_GCE_CHECK"] = "True"
    if args.san == "1":
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
        env.setdefault("LSAN_OPTIONS", "suppressions=" + os.path.join(ROOT, "test", "lsan.supp"))
        env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1:exitcode=87")
    only = re.compile(args.only) if args.only else None

    tdir = os.path.join(build, "test")
    units = sorted(os.path.join(tdir, f) for f in os.listdir(tdir)
                   if f.startswith("test_") and os.access(os.path.join(tdir, f), os.X_OK)) \
        if os.path.isdir(tdir) else []
    idir = os.path.join(ROOT, "test/integration")
    integ = sorted(os.path.join(idir, f) for f in os.listdir(idir)
                   if f.startswith("test_") and f.endswith(".py")) if os.path.isdir(idir) else []
    if only:
        units = [u for u in units if only.search(os.path.basename(u))]
        integ = [i for i in integ if only.search(os.path.basename(i))]
    if args.unit_only:
        integ = []

    total_p = total_f = 0
    skipped_all = []
    t0 = time.monotonic()

    def report(res):
        nonlocal total_p, total_f
        name, p, f, sk, out, dt = res
        total_p += p
        total_f += f
        skipped_all.extend(sk)
        status = "FAIL" if f else "ok"
        extra = f", {len(sk)} skipped" if sk else ""
        print(f"{status:4} {name}: {p} passed, {f} failed{extra} ({dt:.1f}s)", flush=True)
        if f:
            print("---- output of " + name + " ----")
            print(out[-20000:])
            print("---- end of " + name + " ----", flush=True)

    print(f"== unit tests ({len(units)} binaries)", flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.j)) as ex:
        for res in ex.map(lambda u: run_unit(u, env), units):
            report(res)
    if integ:
        print(f"== integration tests ({len(integ)} files)", flush=True)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.j)) as ex:
            for res in ex.map(lambda i: run_integration(i, env), integ):
                report(res)

    for name, reason in skipped_all:
        print(f"skipped: {name}: {reason}")
    line = f"{total_p} passed, {total_f} failed"
    if skipped_all:
        line += f", {len(skipped_all)} skipped"
    print(f"(suite took {time.monotonic() - t0:.1f}s)")
    print(line, flush=True)
    return 1 if total_f else 0


if __name__ == "__main__":
    sys.exit(main())
