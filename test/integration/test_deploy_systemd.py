"""deploy/systemd: `make install SYSTEMDUNITDIR=/lib/systemd/system` puts the units there with
ExecStart naming $(PREFIX)/bin; remex-agent.service is Type=notify, delegated and hardened;
every unit passes `systemd-analyze verify` (which does refuse a broken unit)."""
import os
import shutil
import subprocess

import harness

UNITS = ("remex-agent.service", "remex-plane.service", "remex-worker.service")


def directives(path):
    """The [Service]/[Unit]/[Install] assignments of a unit, each key to its list of values."""
    out = {}
    for line in open(path):
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out.setdefault(k.strip(), []).append(v.strip())
    return out


class SystemdUnits(harness.TestCase):
    def install(self):
        dest = os.path.join(self.tmp, "root")
        san = os.environ.get("REMEX_SAN", "0")
        p = subprocess.run(["make", "-s", "--no-print-directory", "install", f"SAN={san}",
                            f"DESTDIR={dest}", "PREFIX=/opt/remex",
                            "SYSTEMDUNITDIR=/lib/systemd/system"], cwd=harness.ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace")[-3000:])
        return dest

    def test_install_and_agent_unit(self):
        dest = self.install()
        unitdir = os.path.join(dest, "lib/systemd/system")
        for u in UNITS:
            path = os.path.join(unitdir, u)
            self.assertTrue(os.path.exists(path), path)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o644, u)
            text = open(path).read()
            self.assertNotIn("/usr/local/", text, u)
            for cmd in directives(path)["ExecStart"]:
                exe = cmd.split()[0]
                self.assertTrue(exe.startswith("/opt/remex/bin/"), cmd)
                self.assertTrue(os.access(dest + exe, os.X_OK), exe)
        d = directives(os.path.join(unitdir, "remex-agent.service"))
        want = {"Type": "notify", "NotifyAccess": "main", "Delegate": "yes",
                "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                "PrivateTmp": "yes", "KillMode": "mixed", "KillSignal": "SIGTERM",
                "User": "remex", "Restart": "on-failure", "RestartPreventExitStatus": "100 2",
                "ExecReload": "/bin/kill -HUP $MAINPID", "CapabilityBoundingSet": ""}
        for k, v in want.items():
            self.assertEqual(d.get(k), [v], k)
        self.assertEqual(d["ExecStart"], [
            "/opt/remex/bin/remex-agent -c /etc/remex/agent.yaml --log-format json"])
        self.assertEqual(d["ExecStartPre"], [
            "/opt/remex/bin/remex-agent -c /etc/remex/agent.yaml --check"])
        rw = " ".join(d["ReadWritePaths"]).split()
        for path in ("/var/lib/remex", "/var/log/remex", "-/srv/remex"):
            self.assertIn(path, rw)
        # The drain (worker.drain_grace, 600 s by default) fits in the stop timeout.
        self.assertGreater(int(d["TimeoutStopSec"][0].rstrip("s")), 600)
        # Delegation needs writable cgroups: never ProtectControlGroups with Delegate.
        self.assertNotIn("ProtectControlGroups", d)

    def test_systemd_analyze_verify(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is not installed (Debian package systemd): "
                          "units not verified")
        dest = self.install()
        checked = []
        for u in UNITS:
            text = open(os.path.join(dest, "lib/systemd/system", u)).read()
            text = text.replace("/opt/remex/bin/", os.path.join(dest, "opt/remex/bin") + "/")
            checked.append(self.write(u, text))
        r = subprocess.run(["systemd-analyze", "verify", *checked], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        text = r.stdout.decode(errors="replace")
        bad = [ln for ln in text.splitlines() if "remex-" in ln]
        self.assertEqual(bad, [], text)
        # The check is real: a misspelt directive and a missing binary are reported.
        broken = open(checked[0]).read().replace("NoNewPrivileges=", "NoNewPrivilege=")
        broken = broken.replace(os.path.join(dest, "opt/remex/bin/remex-agent -c"),
                                "/nonexistent/remex-agent -c")
        path = self.write("remex-broken.service", broken)
        r = subprocess.run(["systemd-analyze", "verify", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        text = r.stdout.decode(errors="replace")
        self.assertIn("NoNewPrivilege", text)
        self.assertIn("/nonexistent/remex-agent", text)
