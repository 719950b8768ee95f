#!/usr/bin/env bash
# Installs the pinned playwright-core (the browser driver of the web UI's test,
# test/integration/test_plane_ui.py) under build/node/playwright/, never
# globally and never with a browser download: the test drives Debian's
# chromium (/usr/bin/chromium, mk/deps-extra.txt). Prints the module's folder.
set -euo pipefail
cd "$(dirname "$0")/.."

PLAYWRIGHT_VERSION=1.65.2
PREFIX=build/node/playwright
MOD="$PREFIX/node_modules/playwright-core"

installed_version() {
    node -p "require('./$MOD/package.json').version" 2>/dev/null || true
}

if [[ "$(installed_version)" != "$PLAYWRIGHT_VERSION" ]]; then
    if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
        echo "playwright: node and npm are required; as root run: apt-get install -y nodejs npm" >&2
        exit 1
    fi
    mkdir -p "$PREFIX"
    # playwright-core downloads no browser on install; the variable makes sure.
    if ! PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$PREFIX" --no-audit --no-fund \
            --save-exact "playwright-core@$PLAYWRIGHT_VERSION" >"$PREFIX/npm-install.log" 2>&1; then
        echo "playwright: npm install failed (see $PREFIX/npm-install.log):" >&2
        tail -n 20 "$PREFIX/npm-install.log" >&2
        exit 1
    fi
fi
echo "$(pwd)/$MOD"
