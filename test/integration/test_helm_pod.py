"""The chart's pods as today's binaries run them: the agent.yaml the chart renders, with the
command, environment and probe of its containers, against a real plane on loopback (the pod's
paths moved under a temp folder). Per-role: a worker pod registers under its pod name and its
exec probe answers; all-in-one: one remex-agent runs an instance per worker group."""
import json
import os
import signal
import subprocess

import harness
from planefix import PlaneCase

HELM = os.path.join(harness.ROOT, "build/tools/helm/helm")
CHART = os.path.join(harness.ROOT, "helm/remex-agent")
VALIDATOR = os.path.join(harness.ROOT, "test/integration/k8s_validate.cjs")


class HelmPod(PlaneCase):
    def setUp(self):
        super().setUp()
        self.assertTrue(os.path.exists(HELM), f"{HELM} missing: run 'make helm-tools'")
        self.start_plane()
        self.token = self.create_token("k8s")["value"]
        self.pod = os.path.join(self.tmp, "pod")

    def render(self, values):
        vals = self.write("values.json", json.dumps(values))
        p = subprocess.run([HELM, "template", "rx", CHART, "-f", vals], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120,
                           env={**os.environ, "HELM_CACHE_HOME": self.tmp,
                                "HELM_CONFIG_HOME": self.tmp, "HELM_DATA_HOME": self.tmp})
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        v = json.loads(subprocess.run(["node", VALIDATOR, "validate"], input=p.stdout,
                                      stdout=subprocess.PIPE, check=True, timeout=60).stdout)
        self.assertEqual(v["errors"], [])
        return v["objects"]

    def moved(self, argv):
        """A pod's path, under the temp folder."""
        return [a.replace("/etc/remex/agent.yaml", os.path.join(self.pod, "agent.yaml"))
                for a in argv]

    def container(self, objs, deployment, key):
        """The main container of a Deployment, with its agent.yaml and secrets laid out."""
        dep = [o for o in objs if o["kind"] == "Deployment" and
               o["metadata"]["name"] == deployment][0]
        spec = dep["spec"]["template"]["spec"]
        cm = [o for o in objs if o["kind"] == "ConfigMap"][0]
        items = [v for v in spec["volumes"] if v["name"] == "config"][0]["configMap"]["items"]
        self.assertEqual(items, [{"key": key, "path": "agent.yaml"}])
        text = cm["data"][key]
        for d in ("/run/remex/", "/var/lib/remex", "/var/log/remex"):
            text = text.replace(d, self.pod + d)
        for d in ("run/remex/secrets", "var/lib/remex", "var/log/remex/tasks"):
            os.makedirs(os.path.join(self.pod, d), exist_ok=True)
        self.write(os.path.join(self.pod, "run/remex/secrets/agent-token"), self.token + "\n",
                   mode=0o400)
        self.write(os.path.join(self.pod, "agent.yaml"), text)
        return spec["containers"][0]

    def agents(self):
        st, b = self.req("GET", "/api/v1/admin/agents", None, self.admin)
        self.assertEqual(st, 200, b)
        items = b["agents"] if isinstance(b, dict) else b
        return {a["name"]: a for a in items}

    def probe(self, c, which):
        pr = c[which]
        if "httpGet" in pr:  # the kubelet's GET, to the pod's port (here on loopback)
            ports = {p["name"]: p["containerPort"] for p in c.get("ports") or []}
            port = pr["httpGet"]["port"]
            port = ports.get(port, port)
            try:
                st, _, body = harness.http("GET", f"http://127.0.0.1:{port}{pr['httpGet']['path']}")
            except OSError as e:
                return 1, str(e)
            return (0 if 200 <= st < 400 else 1), body.decode(errors="replace")
        # In the image the binaries are on PATH.
        env = dict(os.environ, PATH=harness.BIN + ":" + os.environ.get("PATH", "/usr/bin"))
        p = subprocess.run(self.moved(c[which]["exec"]["command"]), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=c[which]["timeoutSeconds"], env=env)
        return p.returncode, p.stdout.decode()

    def test_per_role_worker_pod(self):
        objs = self.render({"planeURL": self.url, "agentToken": self.token,
                            "worker": {"healthPort": harness.free_port()},
                            "workers": [{"name": "etl", "queues": ["etl", "default"],
                                         "slots": 2}]})
        c = self.container(objs, "rx-worker-etl", "worker-etl.yaml")
        env = dict(os.environ)
        for e in c["env"]:
            self.assertEqual(e["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")
            env[e["name"]] = "rx-worker-etl-5d9f7c-x2k8q"  # what the downward API gives
        argv = self.moved([os.path.join(harness.BIN, c["command"][0])] + c["args"])
        rc, _ = self.probe(c, "livenessProbe")
        self.assertNotEqual(rc, 0, "the probe passes with no agent running")
        agent = self.spawn("pod", argv, env=env)
        agent.wait_output("agent ready", timeout=30)
        rc, out = self.probe(c, "livenessProbe")  # /livez: the loop answers
        self.assertEqual(rc, 0, out)
        rc, out = harness.wait_for(lambda: (lambda r: r[0] == 0 and r)(
            self.probe(c, "readinessProbe")), 10, 0.1, "the worker's /healthz")  # ready
        self.assertIn('"role":"worker"', out.replace(" ", ""))
        a = self.agents()["rx-worker-etl-5d9f7c-x2k8q"]
        self.assertEqual(sorted(a["queues"]), ["default", "etl"])
        self.assertEqual(a["slots"], 2)
        # The pod's end: SIGTERM drains and exits 0.
        agent.signal(signal.SIGTERM)
        self.assertEqual(agent.wait(30), 0)

    def test_all_in_one_pod(self):
        # Without the sentinel (which would listen on the pod's 0.0.0.0:9464 here), the probes
        # ask the supervisor's control socket.
        objs = self.render({"mode": "allInOne", "planeURL": self.url,
                            "agentToken": self.token, "sentinel": {"enabled": False},
                            "workers": [{"name": "a", "queues": ["qa"], "slots": 1},
                                        {"name": "b", "queues": ["qb"], "slots": 3}]})
        c = self.container(objs, "rx-agent", "agent.yaml")
        # Instances register under fixed names: no pod name in the environment.
        self.assertEqual([e["name"] for e in c.get("env") or []], [])
        argv = self.moved([os.path.join(harness.BIN, c["command"][0])] + c["args"])
        agent = self.spawn("pod", argv)
        agent.wait_output("agent ready", timeout=30)
        rc, out = self.probe(c, "readinessProbe")
        self.assertEqual(rc, 0, out)
        agents = self.agents()
        self.assertEqual((agents["rx-a"]["queues"], agents["rx-a"]["slots"]), (["qa"], 1))
        self.assertEqual((agents["rx-b"]["queues"], agents["rx-b"]["slots"]), (["qb"], 3))
        agent.signal(signal.SIGTERM)
        self.assertEqual(agent.wait(30), 0)
