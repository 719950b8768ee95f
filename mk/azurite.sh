#!/usr/bin/env bash
# Installs a pinned azurite (Microsoft's Azure Storage emulator, which checks
# Shared Key signatures) under build/node/azurite/ (never globally) for
# test/unit/test_objstore_azure.c. Called by `make test`; prints nothing when
# the pinned version is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

AZURITE_VERSION=3.35.0 # 3.36 and later need Node 22
PREFIX=build/node/azurite

installed_version() {
    node -p "require('./$PREFIX/node_modules/azurite/package.json').version" \
        2>/dev/null || true
}

if [[ "$(installed_version)" == "$AZURITE_VERSION" ]]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "azurite: node and npm are required; as root run:" >&2
    echo "  apt-get install -y nodejs npm" >&2
    exit 1
fi
echo "azurite: installing azurite@$AZURITE_VERSION into $PREFIX/"
mkdir -p "$PREFIX"
if ! npm install --prefix "$PREFIX" --no-audit --no-fund --save-exact \
        "azurite@$AZURITE_VERSION" >"$PREFIX/npm-install.log" 2>&1; then
    echo "azurite: npm install failed (see $PREFIX/npm-install.log):" >&2
    tail -n 20 "$PREFIX/npm-install.log" >&2
    exit 1
fi
