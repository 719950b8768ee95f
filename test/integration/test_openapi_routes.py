"""The API spec and the plane agree: every route remex-plane serves is in
docs/api/openapi.yaml and every operation of the spec is served; every request
schema is closed and names exactly the keys the plane accepts.

`remex-plane --routes` prints one `METHOD PATTERN` line per route,
`remex-plane --bodies` one `METHOD PATTERN KEY...` line per route with a body
(nested keys as `running[].ti_id`, `bundle.name`). Path parameter names are
compared loosely (`{dag_id}` == `{id}`), methods exactly.

The plane refuses a request key it does not know, so a key sent by remex-worker,
remexctl or a test fixture but missing from the spec fails their own tests (the
plane answers 400 `KEY: unknown field`), and this test keeps the plane's keys
equal to the spec's.
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


def _is_key(s):
    """True when s ("key: v", "key:", "'k': v") starts a mapping entry."""
    if s[:1] in "{[":
        return False
    if s[:1] in "'\"":
        end = s.find(s[0], 1)
        return end > 0 and s[end + 1:end + 2] == ":"
    return ": " in s or s.endswith(":")


def _split_key(s):
    if s[:1] in "'\"":
        end = s.find(s[0], 1)
        return s[1:end], s[end + 2:].strip()
    k, _, v = s.partition(":")
    return k.strip(), v.strip()


def _scalar(v):
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return v[1:-1]
    return v


def load_yaml(text):
    """Block-style YAML as nested dicts and lists; scalars and flow collections
    stay strings (`[a, b]`, `false`). Enough for the spec's structure: block
    mappings and sequences, `|` blocks and wrapped flow values are skipped."""
    lines = []
    for raw in text.splitlines():
        s = raw.rstrip()
        if s.strip() and not s.lstrip().startswith("#"):
            lines.append([len(s) - len(s.lstrip(" ")), s.strip()])
    pos = 0

    def item_at(i, ind):
        return i < len(lines) and lines[i][0] == ind and (lines[i][1] == "-"
                                                          or lines[i][1].startswith("- "))

    def skip_deeper(ind):
        nonlocal pos
        while pos < len(lines) and lines[pos][0] > ind:
            pos += 1

    def node(ind):
        nonlocal pos
        if not item_at(pos, ind):
            return mapping(ind)
        seq = []
        while item_at(pos, ind):
            rest = lines[pos][1][1:].strip()
            if not rest:
                pos += 1
                deeper = pos < len(lines) and lines[pos][0] > ind
                seq.append(node(lines[pos][0]) if deeper else None)
            elif _is_key(rest):
                lines[pos] = [ind + 2, rest]
                seq.append(mapping(ind + 2))
            else:
                pos += 1
                skip_deeper(ind)
                seq.append(_scalar(rest))
        return seq

    def mapping(ind):
        nonlocal pos
        m = {}
        while pos < len(lines) and lines[pos][0] == ind and not item_at(pos, ind):
            k, v = _split_key(lines[pos][1])
            pos += 1
            if v:
                skip_deeper(ind)
                m[k] = _scalar(v)
            elif pos < len(lines) and (lines[pos][0] > ind or item_at(pos, ind)):
                m[k] = node(lines[pos][0])
            else:
                m[k] = None
        return m

    return node(lines[0][0]) if lines else {}


def resolve(spec, s):
    """s with its $ref followed (local references only)."""
    while isinstance(s, dict) and "$ref" in s:
        node = spec
        for part in s["$ref"].lstrip("#/").split("/"):
            node = node[part]
        s = node
    return s if isinstance(s, dict) else {}


def closed(s):
    return s.get("additionalProperties") == "false"


def body_keys(spec, schema, prefix=""):
    """Keys of a request schema, nested ones of closed objects as
    `name.sub` / `name[].sub` (the format of remex-plane --bodies)."""
    s = resolve(spec, schema)
    keys = []
    for name, sub in (s.get("properties") or {}).items():
        keys.append(prefix + name)
        r = resolve(spec, sub)
        if r.get("type") == "array":
            r, name = resolve(spec, r.get("items")), name + "[]"
        if closed(r) and r.get("properties"):
            keys += body_keys(spec, r, prefix + name + ".")
    return keys


def spec_bodies(spec):
    """{(METHOD, normalised path): (schema name, closed, frozenset of keys)}."""
    out = {}
    for path, ops in (spec.get("paths") or {}).items():
        for method, op in (ops or {}).items():
            if method not in METHODS or not isinstance(op, dict) or "requestBody" not in op:
                continue
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            name = schema.get("$ref", "(inline)").rsplit("/", 1)[-1]
            out[(method.upper(), normalise(path))] = (
                name, closed(resolve(spec, schema)), frozenset(body_keys(spec, schema)))
    return out


def plane_bodies(out):
    bodies = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isupper() and parts[1].startswith("/"):
            bodies[(parts[0], normalise(parts[1]))] = frozenset(parts[2:])
    return bodies


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
        self.assertIn(("GET", "/"), routes)  # the web UI (docs/ui.md)
        self.assertIn(("GET", "/ui/{}/{}"), routes)
        self.assertIn(("DELETE", "/api/v1/ui/session"), routes)
        self.assertIn(("GET", "/api/v1/admin/dags/{}/runs/{}/tasks/{}/log"), routes)
        self.assertGreaterEqual(len(routes), 29)

    def test_reader_ignores_non_paths(self):
        text = ("paths:\n  /a/{x}:\n    parameters: []\n    get:\n      summary: s\n"
                "  '/b':\n    post:\n      x: 1\ncomponents:\n  /c:\n    get: {}\n")
        self.assertEqual(spec_routes(text), {("GET", "/a/{}"), ("POST", "/b")})
        self.assertEqual(plane_routes("GET /a/{id}\nnoise\nPOST /b\n"),
                         {("GET", "/a/{}"), ("POST", "/b")})


class YamlReader(unittest.TestCase):
    """The small block-YAML reader the body comparison uses."""

    def test_structure(self):
        text = ("a:\n  b: 1\n  c: 'x: y'\n  d: [p, q,\n      r]\n  e: |\n    text\n    - no\n"
                "  f:\n    - $ref: '#/x'\n    - name: n\n      in: path\n    - plain\n"
                "  g:\n  - {k: v}\n  '200':\n    h: false\n")
        self.assertEqual(load_yaml(text), {"a": {
            "b": "1", "c": "x: y", "d": "[p, q,", "e": "|",
            "f": [{"$ref": "#/x"}, {"name": "n", "in": "path"}, "plain"],
            "g": ["{k: v}"], "200": {"h": "false"}}})

    def test_body_keys(self):
        spec = load_yaml(
            "components:\n  schemas:\n    R:\n      type: object\n"
            "      additionalProperties: false\n      properties:\n"
            "        a:\n          type: integer\n        l:\n          type: array\n"
            "          items:\n            $ref: '#/components/schemas/T'\n"
            "        o:\n          type: object\n          additionalProperties: true\n"
            "        b:\n          $ref: '#/components/schemas/T'\n"
            "    T:\n      type: object\n      additionalProperties: false\n"
            "      properties:\n        x:\n          type: string\n")
        self.assertEqual(body_keys(spec, {"$ref": "#/components/schemas/R"}),
                         ["a", "l", "l[].x", "o", "b", "b.x"])


def run_plane(flag):
    if not os.access(PLANE, os.X_OK):
        raise unittest.SkipTest(f"remex-plane is not built ({PLANE} missing)")
    p = subprocess.run([PLANE, flag], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30 * harness.SLOW)
    if p.returncode != 0:
        raise AssertionError(f"remex-plane {flag} failed: {p.stderr.decode()}")
    return p.stdout.decode()


class SpecMatchesPlane(unittest.TestCase):
    def test_bodies_match(self):
        with open(SPEC) as f:
            spec = load_yaml(f.read())
        documented = spec_bodies(spec)
        self.assertIn(("POST", "/api/v1/agents/{}/heartbeat"), documented)
        served = plane_bodies(run_plane("--bodies"))
        msg = []
        for route, (name, is_closed, keys) in sorted(documented.items()):
            if not is_closed:
                msg.append(f"{' '.join(route)}: request schema {name} is not"
                           " additionalProperties: false")
            if route not in served:
                msg.append(f"{' '.join(route)}: has a request body in the spec, the plane"
                           " accepts none")
                continue
            if served[route] - keys:
                msg.append(f"{' '.join(route)}: accepted by the plane but not in {name}: "
                           + ", ".join(sorted(served[route] - keys)))
            if keys - served[route]:
                msg.append(f"{' '.join(route)}: in {name} but refused by the plane: "
                           + ", ".join(sorted(keys - served[route])))
        for route in sorted(set(served) - set(documented)):
            msg.append(f"{' '.join(route)}: the plane accepts a body the spec does not describe")
        self.assertFalse(msg, "\n".join(msg))

    def test_routes_match(self):
        served = plane_routes(run_plane("--routes"))
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
