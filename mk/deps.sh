#!/usr/bin/env bash
# Verifies the Debian packages remex builds and tests with. As root, installs
# what is missing (one apt-get update, one install); otherwise prints the exact
# command and fails.
set -euo pipefail

pkgs=(build-essential pkg-config clang libclang-rt-14-dev clang-format cppcheck
      python3 git curl ca-certificates
      libcurl4-openssl-dev libjansson-dev libyaml-dev libssl-dev libgit2-dev
      libjwt-dev libmicrohttpd-dev libgnutls28-dev libsqlite3-dev libcmocka-dev sqlite3 procps)
# Extra packages requested by later modules (one per line, '#' comments).
if [[ -f mk/deps-extra.txt ]]; then
    while read -r p _; do
        [[ -z "$p" || "$p" == \#* ]] || pkgs+=("$p")
    done < mk/deps-extra.txt
fi

missing=()
for p in "${pkgs[@]}"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$st" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps: missing Debian packages: ${missing[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then
    echo "deps: run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
