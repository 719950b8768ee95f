#!/usr/bin/env bash
# Installs a pinned Stoplight Prism CLI under build/node/prism/ (never
# globally) for test/integration/test_openapi_prism.py, which runs it as a
# validating proxy in front of a live plane. Called by `make test`; prints
# nothing when the pinned version is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PRISM_VERSION=5.14.2 # 5.15 and later need Node 24
PREFIX=build/node/prism
CLI="$PREFIX/node_modules/.bin/prism"

installed_version() {
    node -p "require('./$PREFIX/node_modules/@stoplight/prism-cli/package.json').version" \
        2>/dev/null || true
}

if [[ -x "$CLI" && "$(installed_version)" == "$PRISM_VERSION" ]]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "prism: node and npm are required; as root run:" >&2
    echo "  apt-get install -y nodejs npm" >&2
    exit 1
fi
echo "prism: installing @stoplight/prism-cli@$PRISM_VERSION into $PREFIX/"
mkdir -p "$PREFIX"
if ! npm install --prefix "$PREFIX" --no-audit --no-fund --save-exact \
        "@stoplight/prism-cli@$PRISM_VERSION" >"$PREFIX/npm-install.log" 2>&1; then
    echo "prism: npm install failed (see $PREFIX/npm-install.log):" >&2
    tail -n 20 "$PREFIX/npm-install.log" >&2
    exit 1
fi
