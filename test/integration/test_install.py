"""`make install`: binaries, library, headers, systemd units and docs land
under DESTDIR/PREFIX, and the units pass `systemd-analyze verify`."""
import os
import shutil
import subprocess
import unittest

import harness


class Install(harness.TestCase):
    def test_install_tree_and_units(self):
        dest = os.path.join(self.tmp, "root")
        san = os.environ.get("REMEX_SAN", "0")
        p = subprocess.run(["make", "-s", "--no-print-directory", "install", f"SAN={san}",
                            f"DESTDIR={dest}", "PREFIX=/usr/local"], cwd=harness.ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace")[-3000:])
        pre = os.path.join(dest, "usr/local")
        for b in ("remex-plane", "remex-worker", "remex-task", "remexctl"):
            path = os.path.join(pre, "bin", b)
            self.assertTrue(os.access(path, os.X_OK), path)
        self.assertTrue(os.path.exists(os.path.join(pre, "lib/libremex.a")))
        self.assertTrue(os.path.exists(os.path.join(pre, "include/remex/err.h")))
        for d in ("plane.md", "worker.md", "README.md"):
            self.assertTrue(os.path.exists(os.path.join(pre, "share/doc/remex", d)), d)
        units = [os.path.join(pre, "lib/systemd/system", u)
                 for u in ("remex-plane.service", "remex-worker.service")]
        for u in units:
            self.assertTrue(os.path.exists(u), u)
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is not installed: units not verified")
        # Point the units at the installed binaries, then let systemd check them.
        checked = []
        for u in units:
            text = open(u).read().replace("/usr/local/bin/", os.path.join(pre, "bin") + "/")
            out = os.path.join(self.tmp, os.path.basename(u))
            with open(out, "w") as f:
                f.write(text)
            checked.append(out)
        r = subprocess.run(["systemd-analyze", "verify", *checked], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        text = r.stdout.decode(errors="replace")
        # Only the unit files themselves are judged (not unrelated units on the host).
        bad = [ln for ln in text.splitlines() if "remex-" in ln]
        self.assertEqual(bad, [], text)


if __name__ == "__main__":
    unittest.main()
