#!/usr/bin/env bash
# make bench: runs every benchmark driver; each prints its own figures.
# Drivers are bench/*.c (built to $BUILD/bench/) and bench/*.sh / bench/*.py.
set -uo pipefail
build=$1
export REMEX_BUILD=$(cd "$build" && pwd) REMEX_BIN=$(cd "$build" && pwd)/bin
ran=0
for d in bench/*.sh bench/*.py; do
    [[ -f "$d" ]] || continue
    # Tools the drivers or people call with arguments carry a leading underscore.
    [[ $(basename "$d") == _* ]] && continue
    echo "== $d"; ran=1
    case "$d" in *.py) python3 "$d" ;; *) bash "$d" ;; esac || echo "bench: $d failed"
done
for b in "$build"/bench/*; do
    [[ -x "$b" ]] || continue
    # Drivers invoked by the scripts above carry a leading underscore.
    [[ $(basename "$b") == _* ]] && continue
    echo "== $b"; ran=1
    "$b" || echo "bench: $b failed"
done
[[ $ran -eq 1 ]] || echo "bench: no drivers yet"
