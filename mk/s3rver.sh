#!/usr/bin/env bash
# Installs a pinned @20minutes/s3rver (an S3 server that verifies SigV4
# signatures) under build/node/s3rver/ (never globally) for
# test/integration/test_objstore_s3.py. Called by `make test`; prints nothing
# when the pinned version is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

S3RVER_VERSION=4.0.4 # 5.x needs Node 24
PREFIX=build/node/s3rver

installed_version() {
    node -p "require('./$PREFIX/node_modules/@20minutes/s3rver/package.json').version" \
        2>/dev/null || true
}

if [[ "$(installed_version)" == "$S3RVER_VERSION" ]]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "s3rver: node and npm are required; as root run:" >&2
    echo "  apt-get install -y nodejs npm" >&2
    exit 1
fi
echo "s3rver: installing @20minutes/s3rver@$S3RVER_VERSION into $PREFIX/"
mkdir -p "$PREFIX"
if ! npm install --prefix "$PREFIX" --no-audit --no-fund --save-exact \
        "@20minutes/s3rver@$S3RVER_VERSION" >"$PREFIX/npm-install.log" 2>&1; then
    echo "s3rver: npm install failed (see $PREFIX/npm-install.log):" >&2
    tail -n 20 "$PREFIX/npm-install.log" >&2
    exit 1
fi
