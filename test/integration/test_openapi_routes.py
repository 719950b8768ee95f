"""The API spec and the plane agree: every route remex-plane serves is in
docs/api/openapi.yaml and every operation of the spec is served.

`remex-plane --routes` prints one `METHOD PATTERN` line per route. Path
parameter names are compared loosely (`{dag_id}` == `{id}`), methods exactly.
"""
import os
import re
import subprocess
import unittest

import harness

SPEC = os.path.join(harness.ROOT, "docs/api/openapi.yaml")
PLANE = os.path.join(harness.BIN, "remex-plane")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def normalise(path):
    return re.sub(r"\{[^}/]*\}", "{}", path)


def spec_routes(text):
    """{(METHOD, normalised path)} of the spec's paths object. The spec is kept
    in block style: path keys at indent 2 under `paths:`, methods at indent 4."""
    routes, path, in_paths = set(), None, False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            in_paths = line.rstrip() == "paths:"
            path = None
            continue
        if not in_paths:
            continue
        m = re.match(r"^  (['\"]?)(/[^'\"]*)\1:\s*$", line)
        if m:
            path = m.group(2)
            continue
        m = re.match(r"^    ([a-z]+):\s*$", line)
        if m and path and m.group(1) in METHODS:
            routes.add((m.group(1).upper(), normalise(path)))
    return routes


def plane_routes(out):
    routes = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isupper() and parts[1].startswith("/"):
            routes.add((parts[0], normalise(parts[1])))
    return routes


class SpecParse(unittest.TestCase):
    """The spec reader itself (runs without the plane)."""

    def test_spec_has_routes(self):
        with open(SPEC) as f:
            routes = spec_routes(f.read())
        self.assertIn(("POST", "/api/v1/agents/register"), routes)
        self.assertIn(("GET", "/api/v1/task-instances/{}/xcom/{}"), routes)
        self.assertIn(("PUT", "/api/v1/task-instances/{}/xcom/{}"), routes)
        self.assertIn(("GET", "/healthz"), routes)
        self.assertGreaterEqual(len(routes), 29)

    def test_reader_ignores_non_paths(self):
        text = ("paths:\n  /a/{x}:\n    parameters: []\n    get:\n      summary: s\n"
                "  '/b':\n    post:\n      x: 1\ncomponents:\n  /c:\n    get: {}\n")
        self.assertEqual(spec_routes(text), {("GET", "/a/{}"), ("POST", "/b")})
        self.assertEqual(plane_routes("GET /a/{id}\nnoise\nPOST /b\n"),
                         {("GET", "/a/{}"), ("POST", "/b")})


class SpecMatchesPlane(unittest.TestCase):
    def test_routes_match(self):
        if not os.access(PLANE, os.X_OK):
            self.skipTest(f"remex-plane is not built ({PLANE} missing)")
        p = subprocess.run([PLANE, "--routes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30 * harness.SLOW)
        self.assertEqual(p.returncode, 0, f"remex-plane --routes failed: {p.stderr.decode()}")
        served = plane_routes(p.stdout.decode())
        self.assertTrue(served, "remex-plane --routes printed no routes")
        with open(SPEC) as f:
            documented = spec_routes(f.read())
        missing = sorted(served - documented)
        unserved = sorted(documented - served)
        msg = []
        if missing:
            msg.append("served but not in docs/api/openapi.yaml:\n  "
                       + "\n  ".join(f"{m} {p}" for m, p in missing))
        if unserved:
            msg.append("in docs/api/openapi.yaml but not served:\n  "
                       + "\n  ".join(f"{m} {p}" for m, p in unserved))
        self.assertFalse(msg, "\n".join(msg))


if __name__ == "__main__":
    unittest.main()
