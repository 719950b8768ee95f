"""deploy/Containerfile. Without a container engine: its shape (Debian 12 in both stages, uid
50000, remex-agent as entry point), that its runtime stage installs the Debian package of every
library the built binaries link, and that `make -o deps` (its build stage's way of skipping the
test tools of mk/deps.sh) builds without mk/deps.sh. With podman or buildah and the Debian 12
base image already in local storage (no registry is contacted), the image is built and its
remex-agent checks a configuration and runs all roles against a plane on the host's loopback."""
import os
import re
import shutil
import subprocess

import harness
from planefix import PlaneCase

CONTAINERFILE = os.path.join(harness.ROOT, "deploy/Containerfile")
BASE = "docker.io/library/debian:12-slim"


def runtime_packages(text):
    final = text[text.rindex("\nFROM "):]
    m = re.search(r"apt-get install -y -qq --no-install-recommends(.*?)&&", final, re.S)
    return set(m.group(1).replace("\\", " ").split())


class Containerfile(PlaneCase):
    def test_shape(self):
        text = open(CONTAINERFILE).read()
        self.assertIn(f"ARG DEBIAN_IMAGE={BASE}", text)
        self.assertEqual(re.findall(r"^FROM (\S+)", text, re.M),
                         ["${DEBIAN_IMAGE}", "${DEBIAN_IMAGE}"])
        final = text[text.rindex("\nFROM "):]
        self.assertIn("useradd --uid 50000 --gid 50000", final)
        self.assertRegex(final, r"(?m)^USER 50000:50000$")
        self.assertRegex(final, r'(?m)^ENTRYPOINT \["remex-agent"\]$')
        self.assertNotIn("tini", text)
        # The runtime stage carries no compiler and no -dev package.
        for p in runtime_packages(text):
            self.assertFalse(p.endswith("-dev") or p in ("build-essential", "gcc"), p)

    def test_runtime_stage_has_every_linked_library(self):
        pkgs = runtime_packages(open(CONTAINERFILE).read())
        missing = []
        for b in sorted(os.listdir(harness.BIN)):
            out = subprocess.run(["readelf", "-d", os.path.join(harness.BIN, b)],
                                 stdout=subprocess.PIPE, check=True).stdout.decode()
            for soname in re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out):
                if re.match(r"lib(c|m|pthread|dl|rt|resolv)\.so", soname) or "asan" in soname \
                        or "ubsan" in soname or soname.startswith(("libgcc_s", "libstdc++")):
                    continue
                p = subprocess.run(["dpkg", "-S", f"*/{soname}"], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL).stdout.decode()
                owners = {ln.split(":")[0] for ln in p.splitlines()
                          if not ln.split(":")[0].endswith("-dev")}
                if not owners & pkgs:
                    missing.append(f"{b}: {soname} ({', '.join(sorted(owners)) or '?'})")
        self.assertEqual(missing, [], "libraries the runtime stage does not install")

    def test_make_without_deps(self):
        p = subprocess.run(["make", "-n", "-o", "deps", "bins", "BUILD=" + self.tmp],
                           cwd=harness.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out[-2000:])
        self.assertNotIn("mk/deps.sh", out)
        self.assertIn("remex-agent", out)

    def engine(self):
        for e in ("podman", "buildah"):
            if shutil.which(e):
                break
        else:
            self.skipTest("no podman or buildah on this machine (Debian packages podman, "
                          "buildah): the image is not built")
        if subprocess.run([e, "image", "exists", BASE]).returncode != 0:
            self.skipTest(f"{BASE} is not in local storage and no registry may be contacted: "
                          f"'{e} pull {BASE}' (or import a debootstrap root) to build the image")
        return e

    def test_build_and_run(self):
        engine = self.engine()
        tag = f"localhost/remex-test:{os.getpid()}"
        p = subprocess.run([engine, "build" if engine == "podman" else "bud", "--pull=never",
                            "-f", CONTAINERFILE, "--ignorefile",
                            os.path.join(harness.ROOT, "deploy/containerignore"), "-t", tag,
                            harness.ROOT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=1800)
        self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace")[-4000:])
        self.addCleanup(subprocess.run, [engine, "rmi", "-f", tag], stdout=subprocess.DEVNULL)
        if not shutil.which("podman"):
            return  # buildah builds; running it needs podman
        self.start_plane()
        tok = self.create_token("image")["value"]
        cfgdir = os.path.join(self.tmp, "etc")
        os.makedirs(cfgdir)
        self.write(os.path.join(cfgdir, "agent.token"), tok + "\n", mode=0o400)
        self.write(os.path.join(cfgdir, "agent.yaml"),
                   f"plane: {{url: {self.url}, token: {{file: /etc/remex/agent.token}}}}\n"
                   "state_dir: /var/lib/remex\nworker: {name: image-w, log_dir: /tmp/logs}\n"
                   "agent: {roles: [worker]}\n")
        os.chown(os.path.join(cfgdir, "agent.token"), 50000, 50000)
        run = ["podman", "run", "--rm", "--network", "host", "--read-only", "--tmpfs",
               "/tmp", "--tmpfs", "/var/lib/remex:uid=50000,gid=50000",
               "-v", f"{cfgdir}:/etc/remex:ro"]
        p = subprocess.run(run + [tag, "-c", "/etc/remex/agent.yaml", "--check"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        self.assertIn("configuration OK", p.stdout.decode(errors="replace"))
        agent = self.spawn("image", run + ["--name", f"remex-test-{os.getpid()}", tag])
        self.addCleanup(subprocess.run, ["podman", "rm", "-f", f"remex-test-{os.getpid()}"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        agent.wait_output("agent ready", timeout=60)

        def registered():
            st, b = self.req("GET", "/api/v1/admin/agents", None, self.admin)
            return st == 200 and "image-w" in str(b)
        harness.wait_for(registered, 30, what="the image's worker to register")
