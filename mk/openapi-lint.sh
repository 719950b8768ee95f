#!/usr/bin/env bash
# Lints docs/api/openapi.yaml with a pinned Redocly CLI installed under build/node/
# (never globally). Called by mk/lint.sh; runnable alone from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

REDOCLY_VERSION=2.77.0 # newer releases need Node 22
PREFIX=build/node
CLI="$PREFIX/node_modules/.bin/redocly"
SPEC=docs/api/openapi.yaml

installed_version() {
    node -p "require('./$PREFIX/node_modules/@redocly/cli/package.json').version" 2>/dev/null || true
}

if [[ ! -x "$CLI" || "$(installed_version)" != "$REDOCLY_VERSION" ]]; then
    if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
        echo "openapi-lint: node and npm are required; as root run:" >&2
        echo "  apt-get install -y nodejs npm" >&2
        exit 1
    fi
    echo "openapi-lint: installing @redocly/cli@$REDOCLY_VERSION into $PREFIX/"
    mkdir -p "$PREFIX"
    if ! npm install --prefix "$PREFIX" --no-audit --no-fund --save-exact \
            "@redocly/cli@$REDOCLY_VERSION" >"$PREFIX/npm-install.log" 2>&1; then
        echo "openapi-lint: npm install failed (see $PREFIX/npm-install.log):" >&2
        tail -n 20 "$PREFIX/npm-install.log" >&2
        exit 1
    fi
fi

export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
if ! "$CLI" lint --config redocly.yaml --format stylish "$SPEC"; then
    echo "openapi-lint: $SPEC has problems" >&2
    exit 1
fi
echo "openapi-lint: OK ($SPEC)"
