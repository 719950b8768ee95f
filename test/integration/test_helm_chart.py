"""helm/remex-agent: `helm lint --strict` and `helm template` of several values files (Helm
3.17, build/tools/helm/, from mk/helm.sh), every rendered object validated against the
Kubernetes API schemas by kubernetes-models (test/integration/k8s_validate.cjs, unknown fields
refused too), assertions on the rendered objects, and the rendered agent.yaml checked by
remex-agent --check itself."""
import base64
import glob
import json
import os
import re
import subprocess

import harness

ROOT = harness.ROOT
HELM = os.path.join(ROOT, "build/tools/helm/helm")
CHART = os.path.join(ROOT, "helm/remex-agent")
VALUES = os.path.join(ROOT, "test/integration/helm")
VALIDATOR = os.path.join(ROOT, "test/integration/k8s_validate.cjs")
KMODELS = os.path.join(ROOT, "build/node/kmodels/node_modules/kubernetes-models")

SECURE_POD = {"runAsNonRoot": True, "runAsUser": 50000, "runAsGroup": 50000, "fsGroup": 50000,
              "seccompProfile": {"type": "RuntimeDefault"}}
SECURE_CONTAINER = {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def values_file(name):
    return os.path.join(VALUES, name + ".yaml")


class HelmChart(harness.TestCase):
    def setUp(self):
        super().setUp()
        for path, what in ((HELM, "helm"), (KMODELS, "kubernetes-models")):
            self.assertTrue(os.path.exists(path),
                            f"{path} missing ({what}): run 'make helm-tools' (bash mk/helm.sh)")

    # ---- helpers ----

    def helm(self, *args, ok=True):
        p = subprocess.run([HELM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=120, env={**os.environ, "HELM_CACHE_HOME": self.tmp,
                                             "HELM_CONFIG_HOME": self.tmp,
                                             "HELM_DATA_HOME": self.tmp})
        out, err = p.stdout.decode(), p.stderr.decode()
        if ok:
            self.assertEqual(p.returncode, 0, f"helm {' '.join(args)}:\n{err}\n{out[-2000:]}")
        return p.returncode, out, err

    def validate(self, manifest):
        p = subprocess.run(["node", VALIDATOR, "validate"], input=manifest.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        return json.loads(p.stdout)

    def render(self, name=None, sets=(), files=()):
        """helm template of a values file: the objects, each valid against the API schemas."""
        args = ["template", "rx", CHART, "--namespace", "remex"]
        for f in ([values_file(name)] if name else []) + list(files):
            args += ["-f", f]
        for s in sets:
            args += ["--set", s]
        _, out, _ = self.helm(*args)
        v = self.validate(out)
        self.assertEqual(v["errors"], [], f"{name}: objects the API would refuse")
        self.assertTrue(v["objects"], f"{name}: nothing rendered")
        return v["objects"]

    @staticmethod
    def by_kind(objs, kind):
        return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}

    def config(self, objs, key):
        cms = list(self.by_kind(objs, "ConfigMap").values())
        self.assertEqual(len(cms), 1)
        self.assertIn(key, cms[0]["data"])
        return cms[0]["data"][key]

    @staticmethod
    def pod(dep):
        return dep["spec"]["template"]["spec"]

    def assert_secure(self, dep):
        spec = self.pod(dep)
        self.assertEqual(spec["securityContext"], SECURE_POD, dep["metadata"]["name"])
        self.assertFalse(spec["automountServiceAccountToken"])
        for c in spec["containers"] + spec.get("initContainers", []):
            self.assertEqual(c["securityContext"], SECURE_CONTAINER, c["name"])
            self.assertNotIn("privileged", c["securityContext"])
        # A read-only root needs writable folders: state, task logs, /tmp.
        main = spec["containers"][0]
        mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
        vols = {v["name"]: v for v in spec["volumes"]}
        for path in ("/var/lib/remex", "/var/log/remex/tasks", "/tmp"):
            self.assertIn(path, mounts)
            self.assertIn("emptyDir", vols[mounts[path]], path)
        # Every Secret volume is 0400.
        for v in spec["volumes"]:
            if "secret" in v:
                want = 0o444 if v["name"] == "plane-ca" else 0o400
                self.assertEqual(v["secret"]["defaultMode"], want, v["name"])

    def check_config(self, text, bundle_dirs=()):
        """remex-agent --check on a rendered agent.yaml, its pod paths moved under tmp."""
        root = os.path.join(self.tmp, "pod")
        for rel in ("run/remex/secrets", "var/lib/remex", "var/log/remex/tasks"):
            os.makedirs(os.path.join(root, rel), exist_ok=True)
        for rel in ("agent-token", "secrets.yaml"):
            self.write(os.path.join(root, "run/remex/secrets", rel), "x\n" if rel ==
                       "agent-token" else "{}\n", mode=0o400)
        for d in bundle_dirs:
            os.makedirs(root + d, exist_ok=True)
        for d in ("/run/remex/", "/var/lib/remex", "/var/log/remex", "/srv/", "/etc/remex/"):
            text = text.replace(d, root + d)
        cfg = self.write("agent.yaml", text)
        p = subprocess.run([self.bin("remex-agent"), "-c", cfg, "--check"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, f"{out}\n{text}")
        self.assertIn("configuration OK", out)
        return out

    # ---- lint and schema ----

    def test_lint_strict_every_values_file(self):
        files = sorted(glob.glob(os.path.join(VALUES, "*.yaml")))
        self.assertGreaterEqual(len(files), 7)
        for f in files:
            _, out, _ = self.helm("lint", "--strict", CHART, "-f", f)
            self.assertIn("0 chart(s) failed", out, f)

    def test_every_values_file_renders_valid_objects(self):
        kinds = set()
        for f in sorted(glob.glob(os.path.join(VALUES, "*.yaml"))):
            objs = self.render(files=[f])
            kinds |= {o["kind"] for o in objs}
            for o in objs:
                if o["kind"] == "Deployment":
                    self.assert_secure(o)
        for k in ("ConfigMap", "Secret", "ServiceAccount", "Deployment", "PodDisruptionBudget",
                  "HorizontalPodAutoscaler", "ScaledObject", "Service", "ServiceMonitor",
                  "Namespace"):
            self.assertIn(k, kinds)

    def test_validator_refuses_what_the_api_would(self):
        bad = [
            # a field the API does not know
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "dat": {}},
            # a string where the API wants an integer
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "b"},
             "spec": {"replicas": "2", "selector": {}, "template": {"spec": {"containers": []}}}},
            # a container without its name
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"},
             "spec": {"containers": [{"image": "x"}]}},
            # KEDA: a trigger without its type
            {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "d"},
             "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [{"metadata": {}}]}},
            # a kind nobody knows
            {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "e"}},
        ]
        v = self.validate("\n---\n".join(json.dumps(o) for o in bad))
        text = "\n".join(v["errors"])
        for want in ("ConfigMap/a: /dat: unknown field", "Deployment/b", "Pod/c",
                     "ScaledObject/d", "Thing/e"):
            self.assertIn(want, text)

    def test_schema_refuses_two_token_sources_readably(self):
        rc, _, err = self.helm("template", "rx", CHART, "--set", "planeURL=https://p.example",
                               "--set", "agentToken=abc", "--set", "agentTokenSecretName=s",
                               ok=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("only one of agentToken, agentTokenSecretName, agentTokenFile", err)
        self.assertIn("agentTokenSecretName", err)
        rc, _, err = self.helm("template", "rx", CHART, "--set", "planeURL=https://p.example",
                               ok=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("set one of agentToken, agentTokenSecretName, agentTokenFile", err)
        rc, _, err = self.helm("template", "rx", CHART, "--set", "agentToken=a", ok=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("planeURL", err)
        # Types and unknown keys.
        for bad, word in (("workers[0].name=Bad_Name", "workers.0.name"),
                          ("mode=sidecar", "mode"), ("workerz.slots=1", "workerz"),
                          ("worker.pollWait=30", "pollWait")):
            rc, _, err = self.helm("template", "rx", CHART, "--set",
                                   "planeURL=https://p.example", "--set", "agentToken=a",
                                   "--set", bad, ok=False)
            self.assertNotEqual(rc, 0, bad)
            self.assertIn(word, err, bad)

    # ---- per-role mode ----

    def test_per_role_default(self):
        objs = self.render("perrole-default")
        deps = self.by_kind(objs, "Deployment")
        self.assertEqual(sorted(deps), ["rx-sentinel", "rx-worker-default"])
        self.assertEqual(self.by_kind(objs, "Secret"), {})  # the token is an existing Secret
        dep = deps["rx-worker-default"]
        spec = self.pod(dep)
        self.assertEqual(spec["terminationGracePeriodSeconds"], 600)
        c = spec["containers"][0]
        self.assertEqual(c["command"], ["remex-agent"])
        self.assertEqual(c["args"], ["-c", "/etc/remex/agent.yaml", "--roles", "worker"])
        env = {e["name"]: e for e in c["env"]}
        self.assertEqual(env["REMEX_WORKER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
                         "metadata.name")
        # Probes on the worker's own endpoints (worker.listen in its config).
        self.assertEqual(c["ports"], [{"name": "health", "containerPort": 9465, "protocol": "TCP"}])
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/healthz", "port": "health"})
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/livez", "port": "health"})
        cm = self.by_kind(objs, "ConfigMap")["rx-config"]["data"]["worker-default.yaml"]
        self.assertIn('listen: "0.0.0.0:9465"', cm)
        # The token: the Secret is mounted in the init container only, copied 0400.
        vols = {v["name"]: v for v in spec["volumes"]}
        self.assertEqual(vols["src-token"]["secret"],
                         {"secretName": "remex-agent-token", "defaultMode": 0o400,
                          "items": [{"key": "token", "path": "agent-token"}]})
        self.assertEqual(vols["secret-files"]["emptyDir"]["medium"], "Memory")
        init = spec["initContainers"][0]
        self.assertEqual(init["command"], ["install", "-m", "0400", "-t", "/run/remex/secrets"])
        self.assertEqual(init["args"], ["/etc/remex/secret-src/src-token/agent-token"])
        self.assertNotIn("src-token", [m["name"] for m in c["volumeMounts"]])
        self.assertEqual(vols["config"]["configMap"]["items"],
                         [{"key": "worker-default.yaml", "path": "agent.yaml"}])
        cfg = self.config(objs, "worker-default.yaml")
        self.assertIn("token: {file: /run/remex/secrets/agent-token}", cfg)
        self.assertIn('queues: ["default"]', cfg)
        ann = dep["spec"]["template"]["metadata"]["annotations"]
        self.assertRegex(ann["checksum/config"], r"^[0-9a-f]{64}$")
        pdbs = self.by_kind(objs, "PodDisruptionBudget")
        self.assertEqual(pdbs["rx-worker-default"]["spec"]["maxUnavailable"], 1)
        self.assertEqual(pdbs["rx-worker-default"]["spec"]["selector"]["matchLabels"],
                         dep["spec"]["selector"]["matchLabels"])
        self.check_config(cfg)
        self.check_config(self.config(objs, "agent.yaml"))

    def test_two_worker_groups(self):
        objs = self.render("two-groups")
        deps = self.by_kind(objs, "Deployment")
        self.assertEqual(sorted(deps), ["rx-sentinel", "rx-worker-default", "rx-worker-gpu"])
        self.assertEqual(deps["rx-worker-default"]["spec"]["replicas"], 3)
        gpu = deps["rx-worker-gpu"]
        spec = self.pod(gpu)
        self.assertEqual(spec["terminationGracePeriodSeconds"], 3600)
        self.assertEqual(spec["nodeSelector"], {"accelerator": "nvidia"})
        self.assertEqual(spec["tolerations"][0]["key"], "nvidia.com/gpu")
        c = spec["containers"][0]
        self.assertEqual(c["resources"]["limits"]["nvidia.com/gpu"], 1)
        env = {e["name"]: e.get("value") for e in c["env"]}
        self.assertEqual(env["TZ"], "UTC")
        self.assertEqual(env["CUDA_VISIBLE_DEVICES"], "0")
        # Each group mounts its own agent.yaml, holding its queues and slots.
        seen = {}
        for name, queues, slots in (("default", '["default"]', 4),
                                    ("gpu", '["gpu","gpu-large"]', 1)):
            vol = {v["name"]: v for v in self.pod(deps[f"rx-worker-{name}"])["volumes"]}
            self.assertEqual(vol["config"]["configMap"]["items"][0]["key"], f"worker-{name}.yaml")
            cfg = self.config(objs, f"worker-{name}.yaml")
            self.assertIn(f"queues: {queues}", cfg)
            self.assertIn(f"slots: {slots}", cfg)
            self.assertIn('poll_wait: "20s"', cfg)
            self.assertIn('memory_limit: "2GiB"', cfg)
            self.assertIn("file: /run/remex/secrets/secrets.yaml", cfg)
            self.assertIn('store: "s3://acme-remex/xcom"', cfg)
            seen[name] = deps[f"rx-worker-{name}"]["spec"]["template"]["metadata"][
                "annotations"]["checksum/config"]
        self.assertNotEqual(seen["default"], seen["gpu"])
        # The connections file: a Secret copied 0400 like the token.
        init = self.pod(gpu)["initContainers"][0]
        self.assertIn("/etc/remex/secret-src/src-secrets/secrets.yaml", init["args"])
        pdbs = self.by_kind(objs, "PodDisruptionBudget")
        self.assertEqual(list(pdbs), ["rx-worker-default"])
        self.assertEqual(pdbs["rx-worker-default"]["spec"], {
            "minAvailable": 2, "selector": deps["rx-worker-default"]["spec"]["selector"]})
        # The chart's token Secret; rolling on a token change.
        sec = self.by_kind(objs, "Secret")["rx-token"]
        self.assertEqual(base64.b64decode(sec["data"]["token"]).decode(),
                         "tok-groups-SECRET-93be")
        self.assertIn("checksum/token", gpu["spec"]["template"]["metadata"]["annotations"])
        # A hand-set replicas count and an autoscaler never fight: no HPA here.
        self.assertEqual(self.by_kind(objs, "HorizontalPodAutoscaler"), {})
        self.check_config(self.config(objs, "worker-gpu.yaml"))

    def test_no_secret_in_any_configmap(self):
        token = "tok-never-in-a-configmap-9d41"
        objs = self.render("two-groups", sets=[f"agentToken={token}", "agentTokenSecretName=null"],
                           files=[values_file("git-ssh")])
        for cm in self.by_kind(objs, "ConfigMap").values():
            blob = json.dumps(cm)
            self.assertNotIn(token, blob)
            self.assertNotIn(base64.b64encode(token.encode()).decode(), blob)
            for text in cm["data"].values():
                # Every secret key of agent.yaml is a {file: ...} reference.
                for m in re.finditer(r"^\s*token:\s*(.*)$", text, re.M):
                    self.assertTrue(m.group(1).startswith("{file: "), m.group(0))
        for name in ("allinone", "keda", "two-groups"):
            objs = self.render(name)
            secret = [v for v in (open(values_file(name)).read().split())
                      if "-SECRET-" in v][0]
            for cm in self.by_kind(objs, "ConfigMap").values():
                self.assertNotIn(secret, json.dumps(cm), name)
            self.assertIn(base64.b64encode(secret.encode()).decode(),
                          json.dumps(self.by_kind(objs, "Secret")), name)

    def test_keda(self):
        objs = self.render("keda")
        so = self.by_kind(objs, "ScaledObject")["rx-worker-batch"]
        self.assertEqual(so["spec"]["scaleTargetRef"]["name"], "rx-worker-batch")
        self.assertEqual((so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]), (1, 20))
        trig = so["spec"]["triggers"][0]
        self.assertEqual(trig["type"], "prometheus")
        self.assertEqual(trig["metadata"]["serverAddress"],
                         "http://prometheus.monitoring.svc:9090")
        self.assertEqual(trig["metadata"]["query"],
                         'sum(remex_queue_depth{queue=~"batch|backfill"})')
        self.assertEqual(trig["metadata"]["threshold"], "8")
        # The autoscaler owns replicas.
        dep = self.by_kind(objs, "Deployment")["rx-worker-batch"]
        self.assertNotIn("replicas", dep["spec"])
        # The sentinel: its own Deployment, probed on /health, scraped by a ServiceMonitor.
        sen = self.by_kind(objs, "Deployment")["rx-sentinel"]
        c = self.pod(sen)["containers"][0]
        self.assertEqual(c["args"][-2:], ["--roles", "sentinel"])
        self.assertEqual(c["ports"], [{"name": "health", "containerPort": 9464, "protocol": "TCP"}])
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertEqual(c[probe]["httpGet"], {"path": "/health", "port": "health"})
        self.assertIn('listen: 0.0.0.0:9464', self.config(objs, "agent.yaml"))
        svc = self.by_kind(objs, "Service")["rx-sentinel"]
        labels = self.pod_labels(sen)
        for k, v in svc["spec"]["selector"].items():
            self.assertEqual(labels[k], v)
        sm = self.by_kind(objs, "ServiceMonitor")["rx-sentinel"]
        self.assertEqual(sm["metadata"]["labels"]["release"], "prometheus")
        self.assertEqual(sm["spec"]["endpoints"][0]["port"], svc["spec"]["ports"][0]["name"])
        for k, v in sm["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(svc["metadata"]["labels"][k], v)

    @staticmethod
    def pod_labels(dep):
        return dep["spec"]["template"]["metadata"]["labels"]

    def test_hpa(self):
        objs = self.render("hpa")
        hpa = self.by_kind(objs, "HorizontalPodAutoscaler")["rx-worker-default"]
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        self.assertEqual((hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]), (2, 12))
        m = hpa["spec"]["metrics"][0]["external"]
        self.assertEqual(m["metric"]["name"], "remex_queue_depth")
        self.assertEqual(m["metric"]["selector"]["matchExpressions"][0]["values"], ["default"])
        self.assertEqual(m["target"], {"type": "AverageValue", "averageValue": "5"})
        self.assertNotIn("replicas", self.by_kind(objs, "Deployment")["rx-worker-default"]["spec"])

    # ---- all-in-one mode ----

    def test_all_in_one(self):
        objs = self.render("allinone")
        deps = self.by_kind(objs, "Deployment")
        self.assertEqual(list(deps), ["rx-agent"])
        dep = deps["rx-agent"]
        self.assertEqual(dep["spec"]["replicas"], 1)
        self.assertEqual(dep["spec"]["strategy"], {"type": "Recreate"})
        spec = self.pod(dep)
        self.assertEqual(spec["terminationGracePeriodSeconds"], 900)  # the longest group's
        c = spec["containers"][0]
        self.assertEqual(c["args"], ["-c", "/etc/remex/agent.yaml"])
        self.assertEqual(c["ports"][0]["containerPort"], 9470)
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertEqual(c[probe]["httpGet"], {"path": "/health", "port": "health"})
        self.assertEqual(c["resources"]["limits"]["memory"], "8Gi")
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        self.assertTrue(mounts["/srv/dags/main"]["readOnly"])
        cfg = self.config(objs, "agent.yaml")
        self.assertIn('roles: ["worker","dag-processor","triggerer","sentinel"]', cfg)
        self.assertIn('- name: "rx-etl"\n      queues: ["default","etl"]\n      slots: 8', cfg)
        self.assertIn('- name: "rx-gpu"\n      queues: ["gpu"]\n      slots: 1', cfg)
        self.assertIn("capacity: 5000", cfg)
        self.assertIn('listen: 0.0.0.0:9470', cfg)
        self.assertIn('- {name: "main", path: "/srv/dags/main"}', cfg)
        svc = self.by_kind(objs, "Service")["rx-sentinel"]
        self.assertEqual(svc["spec"]["selector"]["app.kubernetes.io/component"], "agent")
        self.assertEqual(svc["spec"]["ports"][0]["port"], 9470)
        # No worker Deployments, PDBs or autoscalers in this mode.
        for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler", "ScaledObject"):
            self.assertEqual(self.by_kind(objs, kind), {}, kind)
        # Today's remex-agent reads it: every section, no warning.
        out = self.check_config(cfg, bundle_dirs=["/srv/dags/main"])
        self.assertNotIn("warning", out)

    def test_all_in_one_without_sentinel_probes_the_control_socket(self):
        objs = self.render(sets=["mode=allInOne", "planeURL=https://p.example",
                                 "agentToken=t", "sentinel.enabled=false"])
        c = self.pod(self.by_kind(objs, "Deployment")["rx-agent"])["containers"][0]
        self.assertEqual(c["readinessProbe"]["exec"]["command"],
                         ["remex-agent", "-c", "/etc/remex/agent.yaml", "status"])
        self.assertNotIn("ports", c)
        cfg = self.config(objs, "agent.yaml")
        self.assertIn('roles: ["worker"]', cfg)
        self.assertNotIn("sentinel:", cfg)
        self.assertEqual(self.by_kind(objs, "Service"), {})
        self.check_config(cfg)

    # ---- the rest ----

    def test_readme_documents_every_value(self):
        gen = os.path.join(ROOT, "mk/helm-readme.cjs")
        p = subprocess.run(["node", gen, "--check"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout.decode())
        # And the generator is not vacuous: a value without a description, or a README row
        # that values.yaml does not have, fails it.
        readme = open(os.path.join(CHART, "README.md")).read()
        rows = re.findall(r"^\| `([^`]+)` \| `(.*?)` \|", readme, re.M)
        keys = {k for k, _ in rows}
        for k in ("agentTokenSecretName", "workers[].autoscaling.keda.query", "sentinel.port",
                  "podSecurityContext", "worker.taskDefaults.memoryEnforcement"):
            self.assertIn(k, keys)
        self.assertIn(("workers[].terminationGracePeriodSeconds", "600"), rows)
        values = json.loads(subprocess.run(
            ["node", VALIDATOR, "tojson", os.path.join(CHART, "values.yaml")],
            stdout=subprocess.PIPE, check=True, timeout=60).stdout)

        def leaves(v, prefix=""):
            for k, x in v.items():
                key = prefix + k
                if isinstance(x, dict) and x and key not in ("podSecurityContext",
                                                             "containerSecurityContext"):
                    yield from leaves(x, key + ".")
                elif isinstance(x, list) and x and isinstance(x[0], dict):
                    yield from leaves(x[0], key + "[].")
                else:
                    yield key, x
        got = dict(leaves(values))
        self.assertEqual(set(got), keys)
        for k, default in rows:
            self.assertEqual(json.loads(default.replace("\\|", "|")), got[k], k)

    def test_restricted_namespace(self):
        objs = self.render("restricted-namespace")
        ns = self.by_kind(objs, "Namespace")["remex-prod"]
        self.assertEqual(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
                         "restricted")
        for o in objs:
            if o["kind"] != "Namespace":
                self.assertEqual(o["metadata"]["namespace"], "remex-prod", o["metadata"]["name"])
            self.assertTrue(o["metadata"]["name"].startswith("acme-") or o["kind"] == "Namespace")
            self.assertEqual(o["metadata"]["labels"]["team"], "data-platform")
        sa = self.by_kind(objs, "ServiceAccount")["acme-agent"]
        self.assertEqual(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
                         "arn:aws:iam::123456789012:role/remex-agent")
        dep = self.by_kind(objs, "Deployment")["acme-worker-default"]
        spec = self.pod(dep)
        self.assertEqual(spec["serviceAccountName"], "acme-agent")
        self.assertEqual(spec["imagePullSecrets"], [{"name": "regcred"}])
        c = spec["containers"][0]
        self.assertEqual(c["image"], "registry.example.com/remex/remex:0.1.0-rc1")
        self.assertEqual(c["imagePullPolicy"], "Always")
        # A token file: no Secret, no copy; the CA from its Secret.
        self.assertEqual(self.by_kind(objs, "Secret"), {})
        self.assertNotIn("initContainers", spec)
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        self.assertEqual(mounts["/mnt/secrets-store"], "secrets-store")
        self.assertEqual(mounts["/etc/remex/ca"], "plane-ca")
        cfg = self.config(objs, "worker-default.yaml")
        self.assertIn('token: {file: "/mnt/secrets-store/agent-token"}', cfg)
        self.assertIn("ca_file: /etc/remex/ca/ca.crt", cfg)

    def test_git_bundles(self):
        objs = self.render("git-ssh")
        deps = self.by_kind(objs, "Deployment")
        self.assertEqual(sorted(deps), ["rx-dag-processor", "rx-sentinel", "rx-worker-default"])
        dp = deps["rx-dag-processor"]
        c = self.pod(dp)["containers"][0]
        self.assertEqual(c["args"][-2:], ["--roles", "dag-processor"])
        vols = {v["name"]: v for v in self.pod(dp)["volumes"]}
        self.assertEqual(vols["src-git-ssh-0"]["secret"],
                         {"secretName": "pipelines-deploy-key", "defaultMode": 0o400,
                          "items": [{"key": "ssh-privatekey", "path": "git-pipelines-ssh-key"}]})
        self.assertEqual(vols["src-git-token-1"]["secret"]["secretName"], "ml-dags-token")
        init = self.pod(dp)["initContainers"][0]
        self.assertEqual(init["args"], [
            "/etc/remex/secret-src/src-token/agent-token",
            "/etc/remex/secret-src/src-git-ssh-0/git-pipelines-ssh-key",
            "/etc/remex/secret-src/src-git-token-1/git-ml-token"])
        cfg = self.config(objs, "agent.yaml")
        self.assertIn('url: "git@github.com:acme/pipelines.git"\n    tracking_ref: "main"', cfg)
        self.assertIn('subdir: "dags"', cfg)
        self.assertIn('refresh_interval: "60s"', cfg)
        self.assertIn('token: {file: "/run/remex/secrets/git-ml-token"}', cfg)
        # The SSH key reaches the dag-processor as ssh_key, with its known_hosts; task logs go to
        # the object store.
        self.assertIn('ssh_key: "/run/remex/secrets/git-pipelines-ssh-key"', cfg)
        self.assertIn('known_hosts: "/etc/remex/known_hosts/github"', cfg)
        self.assertIn('store: "s3://acme-remex/logs"', cfg)
        self.assertIn("secrets:\n  backends:\n  - env\n  - vault\n  vault:\n", cfg)
        self.assertIn("dag_processor:\n  listen: 0.0.0.0:9466", cfg)
        dpc = self.pod(dp)["containers"][0]
        self.assertEqual(dpc["readinessProbe"]["httpGet"], {"path": "/healthz", "port": "health"})

    def test_secret_files_copy_makes_them_readable_for_remex(self):
        """What the kubelet makes of a Secret volume under fsGroup 50000 (files root:50000,
        mode 0440) is refused by remex; the chart's init container, run as uid 50000 with the
        rendered command, turns it into a 0400 file of uid 50000 that remex accepts."""
        if os.geteuid() != 0:
            self.skipTest("needs root to act as the kubelet (chown) and as uid 50000")
        objs = self.render("two-groups")
        spec = self.pod(self.by_kind(objs, "Deployment")["rx-worker-default"])
        init = spec["initContainers"][0]
        uid = spec["securityContext"]["runAsUser"]
        gid = spec["securityContext"]["fsGroup"]
        pod = os.path.join(self.tmp, "pod")
        os.chmod(self.tmp, 0o755)

        def at(path):
            return pod + path

        for arg in init["args"]:
            os.makedirs(os.path.dirname(at(arg)), exist_ok=True)
            with open(at(arg), "w") as f:
                f.write("tok-groups\n" if arg.endswith("agent-token") else "{}\n")
            os.chown(at(arg), 0, gid)
            os.chmod(at(arg), 0o440)
        dest = init["command"][-1]
        os.makedirs(at(dest))
        os.chmod(at(dest), 0o1777)  # an emptyDir
        for d in ("/var/lib/remex", "/var/log/remex/tasks"):
            os.makedirs(at(d))
            os.chown(at(d), uid, gid)

        def as_pod_user():
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)

        cmd = [init["command"][0], *init["command"][1:-1], at(dest)]
        p = subprocess.run(cmd + [at(a) for a in init["args"]], preexec_fn=as_pod_user,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout.decode())
        for name in ("agent-token", "secrets.yaml"):
            st = os.stat(os.path.join(at(dest), name))
            self.assertEqual((st.st_uid, st.st_mode & 0o777), (uid, 0o400), name)
        text = self.config(objs, "worker-default.yaml")
        for d in ("/run/remex/", "/var/lib/remex", "/var/log/remex"):
            text = text.replace(d, pod + d)
        cfg = self.write("agent.yaml", text)
        check = [self.bin("remex-agent"), "-c", cfg, "--check"]
        p = subprocess.run(check, preexec_fn=as_pod_user, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout.decode())
        # The Secret volume's own file, as the kubelet leaves it, is refused.
        src = [a for a in init["args"] if a.endswith("agent-token")][0]
        bad = self.write("agent-bad.yaml", text.replace(
            pod + "/run/remex/secrets/agent-token", at(src)))
        p = subprocess.run(check[:2] + [bad, "--check"], preexec_fn=as_pod_user,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 100, p.stdout.decode())
        self.assertIn("too open", p.stdout.decode())

    def test_plain_manifests_are_the_charts(self):
        """deploy/kubernetes/remex-agent.yaml is the chart rendered with its values file."""
        d = os.path.join(ROOT, "deploy/kubernetes")
        _, out, _ = self.helm("template", "remex", CHART, "--namespace", "remex",
                              "-f", os.path.join(d, "values.yaml"))
        self.assertEqual(open(os.path.join(d, "remex-agent.yaml")).read(), out,
                         "deploy/kubernetes/remex-agent.yaml is stale: regenerate it with the "
                         "command in deploy/kubernetes/values.yaml")
        self.assertEqual(self.validate(out)["errors"], [])

    def test_optional_blocks_absent(self):
        objs = self.render("absent")
        dep = self.by_kind(objs, "Deployment")["rx-worker-default"]
        self.assert_secure(dep)
        self.assertEqual(self.pod(dep)["containers"][0]["image"], "ghcr.io/remex/remex:0.1.0")
        self.check_config(self.config(objs, "worker-default.yaml"))
