#!/usr/bin/env python3
"""Object-store streaming benchmark (figures only, never pass/fail): a 200 MiB
object put to and got from @20minutes/s3rver on loopback (SigV4 checked by the
server) through lib objstore's streamed calls (bench/_objstore_xfer.c:
objstore_put_file, multipart above the default 64 MiB threshold in 16 MiB
parts; objstore_get_file, checksum verified), with the transfer process's
peak RSS. Floors measured in the same run on the same bytes: curl
(--aws-sigv4, UNSIGNED-PAYLOAD, one PUT and one GET, no checksum) to the same
server, and a plain file copy (cp) on the same disk.

Run: make bench   (or REMEX_BUILD=build python3 bench/objstore_bench.py)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("REMEX_BUILD") or os.path.join(ROOT, "build")
XFER = os.path.join(BUILD, "bench", "_objstore_xfer")
S3RVER = os.path.join(ROOT, "build", "node", "s3rver", "node_modules", "@20minutes", "s3rver")
SIZE = 200 * 1024 * 1024
MIB = 1024 * 1024


def timed(argv, env=None):
    t = time.monotonic()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - t


def main():
    if not os.path.isdir(S3RVER):
        print("objstore bench: s3rver not installed (make s3rver)")
        return 1
    tmp = tempfile.mkdtemp(prefix="remex-objbench-")
    srv = None
    try:
        src = os.path.join(tmp, "src.bin")
        with open(src, "wb") as f:  # incompressible, written once, read from the page cache
            for _ in range(SIZE // MIB):
                f.write(os.urandom(MIB))
        os.makedirs(os.path.join(tmp, "s3"))
        srv = subprocess.Popen(["node", os.path.join(ROOT, "test", "s3rver.js"), "--stdin",
                                os.path.join(tmp, "s3"), "remex"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE)
        port = int(re.search(rb"port (\d+)", srv.stdout.readline()).group(1))
        endpoint = f"http://127.0.0.1:{port}"
        env = dict(os.environ, AWS_ACCESS_KEY_ID="S3RVER", AWS_SECRET_ACCESS_KEY="S3RVER",
                   AWS_REGION="us-east-1")
        def xfer(*extra):
            out = subprocess.run([XFER, "s3://remex/bench", endpoint, "obj", src,
                                  os.path.join(tmp, "got.bin"), *extra], check=True, env=env,
                                 capture_output=True, text=True).stdout
            return json.loads(out)
        r = xfer()
        one = xfer(str(SIZE + 1))  # threshold above the size: one streamed PUT
        curl = ["curl", "-sSf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "S3RVER:S3RVER",
                "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
        curl_put = timed(curl + ["-T", src, f"{endpoint}/remex/curl-obj"])
        curl_get = timed(curl + ["-o", os.path.join(tmp, "curl.bin"),
                                 f"{endpoint}/remex/curl-obj"])
        cp = timed(["cp", src, os.path.join(tmp, "cp.bin")])
        mb = SIZE / MIB
        print(f"objstore 200 MiB via s3rver (127.0.0.1:{port}):")
        print(f"  remex put_file  {r['put_s']:.2f} s  {mb / r['put_s']:.0f} MiB/s"
              f"  (multipart, 16 MiB parts, SHA-256 + MD5 per part)")
        print(f"  remex put_file  {one['put_s']:.2f} s  {mb / one['put_s']:.0f} MiB/s"
              f"  (one PUT, SHA-256 + MD5 of the file first)")
        print(f"  remex get_file  {r['get_s']:.2f} s  {mb / r['get_s']:.0f} MiB/s"
              f"  (SHA-256 verified)")
        print(f"  peak RSS (VmHWM) {r['hwm_before_kib'] / 1024:.1f} MiB before,"
              f" {r['hwm_after_kib'] / 1024:.1f} MiB after both transfers"
              f" ({one['hwm_after_kib'] / 1024:.1f} MiB with the single PUT)")
        print(f"  floor: curl PUT {curl_put:.2f} s  {mb / curl_put:.0f} MiB/s,"
              f" curl GET {curl_get:.2f} s  {mb / curl_get:.0f} MiB/s (one request each)")
        print(f"  floor: cp        {cp:.2f} s  {mb / cp:.0f} MiB/s")
        return 0
    finally:
        if srv:
            srv.stdin.close()
            try:
                srv.wait(timeout=10)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
