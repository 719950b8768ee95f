// Validates Kubernetes manifests against the API's schemas with kubernetes-models
// (build/node/kmodels/, installed by mk/helm.sh), and also refuses fields the schemas do not
// know: the models' validators read every known property of an object, so a property of a
// checked object that was never read is unknown to the API (the API server's strict field
// validation refuses it; a lenient one drops it silently).
//
//   node k8s_validate.cjs validate < manifests.yaml   -> JSON {objects: [...], errors: [...]}
//   node k8s_validate.cjs tojson FILE.yaml            -> the YAML document(s) as JSON
'use strict';
const path = require('path');
const fs = require('fs');
const base = path.resolve(__dirname, '../../build/node/kmodels/node_modules');
const req = (m) => require(path.join(base, m));
const YAML = req('yaml');

// apiVersion -> module of its models.
const GROUPS = {
  'v1': 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'policy/v1': 'kubernetes-models/policy/v1',
  'autoscaling/v2': 'kubernetes-models/autoscaling/v2',
  'batch/v1': 'kubernetes-models/batch/v1',
  'networking.k8s.io/v1': 'kubernetes-models/networking.k8s.io/v1',
  'rbac.authorization.k8s.io/v1': 'kubernetes-models/rbac.authorization.k8s.io/v1',
  'keda.sh/v1alpha1': '@kubernetes-models/keda/keda.sh/v1alpha1',
  'monitoring.coreos.com/v1': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
};

function track(v, at, log) {
  if (Array.isArray(v)) return v.map((x, i) => track(x, `${at}/${i}`, log));
  if (!v || typeof v !== 'object') return v;
  const rec = { at, obj: v, read: new Set(), touched: false, enumerated: false };
  log.push(rec);
  const inner = {};
  for (const k of Object.keys(v)) inner[k] = track(v[k], `${at}/${k}`, log);
  return new Proxy(inner, {
    get(t, k, r) {
      if (typeof k === 'string') { rec.touched = true; rec.read.add(k); }
      return Reflect.get(t, k, r);
    },
    has(t, k) {
      if (typeof k === 'string') { rec.touched = true; rec.read.add(k); }
      return Reflect.has(t, k);
    },
    ownKeys(t) { rec.enumerated = true; return Reflect.ownKeys(t); },
  });
}

function check(obj) {
  const id = `${obj && obj.kind}/${obj && obj.metadata && obj.metadata.name}`;
  const mod = GROUPS[obj && obj.apiVersion];
  if (!mod) return [`${id}: no schema for apiVersion ${obj && obj.apiVersion}`];
  const Cls = req(mod)[obj.kind];
  if (!Cls || !Cls.prototype || typeof Cls.prototype.validate !== 'function')
    return [`${id}: no schema for kind ${obj.kind} in ${obj.apiVersion}`];
  const log = [];
  try {
    Cls.prototype.validate.call(track(obj, '', log));
  } catch (e) {
    return [`${id}: ${e.message}`];
  }
  const errs = [];
  for (const r of log) {
    // An object the validator never looked into is free-form (or a map it enumerated).
    if (!r.touched || r.enumerated) continue;
    for (const k of Object.keys(r.obj))
      if (!r.read.has(k)) errs.push(`${id}: ${r.at}/${k}: unknown field`);
  }
  return errs;
}

const mode = process.argv[2];
if (mode === 'tojson') {
  const docs = YAML.parseAllDocuments(fs.readFileSync(process.argv[3], 'utf8'));
  const out = docs.map((d) => d.toJSON());
  process.stdout.write(JSON.stringify(out.length === 1 ? out[0] : out));
} else if (mode === 'validate') {
  const text = fs.readFileSync(0, 'utf8');
  const objects = [];
  const errors = [];
  for (const d of YAML.parseAllDocuments(text)) {
    if (d.errors.length) { errors.push(`YAML: ${d.errors[0].message}`); continue; }
    const o = d.toJSON();
    if (o === null || o === undefined) continue;
    objects.push(o);
    errors.push(...check(o));
  }
  process.stdout.write(JSON.stringify({ objects, errors }));
} else {
  process.stderr.write('usage: k8s_validate.cjs validate < FILE | tojson FILE\n');
  process.exit(2);
}
