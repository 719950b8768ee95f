#!/usr/bin/env bash
# remex-plane dispatch benchmark: starts a plane on a free loopback port with
# its DB in a temp dir, creates an agent token, then runs the C driver
# (bench/_plane_dispatch.c): N simulated workers drain queued task instances
# (/work -> start -> state), then the wake-up latency of a waiting long poll.
# Prints figures (with the machine's load and the plane's CPU time, since the
# cores are shared); never asserts. Runs twice, each on a fresh plane: with
# the single start/state routes (one request per task instance each) and with
# the batched ones (one request per /work reply each); first the floor: the
# batched requests against a canned HTTP server in the driver (no plane), the
# ceiling the transport and the driver leave. Env: TASKS (20000), WORKERS
# (8), SLOTS (16), MODES ("floor single batch").
set -euo pipefail
build=${REMEX_BUILD:-build}
bin=${REMEX_BIN:-$build/bin}
driver=$build/bench/_plane_dispatch
[[ -x $bin/remex-plane && -x $driver ]] || { echo "plane_dispatch: build first (make bench)"; exit 1; }
tmp=$(mktemp -d /tmp/remex-bench-plane.XXXXXX)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$tmp/plane.yaml" <<YAML
listen: "127.0.0.1:$port"
db_path: "$tmp/plane.db"
admin_token_file: "$tmp/admin.token"
signing_key_file: "$tmp/signing.key"
log:
  level: "warn"
YAML
# One plane per mode, so that neither run inherits the other's history.
run_mode() { # $1: "" (single start/state routes) or --batch
    rm -f "$tmp"/plane.db* "$tmp"/admin.token "$tmp"/signing.key
    "$bin/remex-plane" -c "$tmp/plane.yaml" 2>"$tmp/plane.log" &
    pid=$!
    local up=
    for _ in $(seq 1 200); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && { up=1; break; }
        sleep 0.05
    done
    [[ -n $up ]] || { echo "plane_dispatch: plane did not start"; cat "$tmp/plane.log"; exit 1; }
    local url=http://127.0.0.1:$port admin tok c0
    admin=$(cat "$tmp/admin.token")
    tok=$(curl -sf -X POST -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
        -d '{"name":"bench","expires_in":3600}' "$url/api/v1/admin/tokens" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])')
    echo "plane_dispatch: $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    c0=$(cpu)
    "$driver" --url "$url" --admin "$admin" --agent-token "$tok" --tasks "${TASKS:-20000}" \
        --workers "${WORKERS:-8}" --slots "${SLOTS:-16}" --plane-pid "$pid" $1
    echo "plane_dispatch: plane CPU (user+sys) over both phases: $(awk -v a="$c0" -v b="$(cpu)" 'BEGIN {printf "%.2f", b - a}') s;" \
        "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    pid=
}
cpu() { awk '{printf "%.2f", ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$pid/stat"; }
modes=${MODES:-floor single batch}
for m in $modes; do
    case $m in
    floor) "$driver" --floor --tasks "${TASKS:-20000}" --workers "${WORKERS:-8}" \
        --slots "${SLOTS:-16}" ;;
    single) run_mode "" ;;
    batch) run_mode --batch ;;
    *) echo "plane_dispatch: unknown mode $m (floor, single, batch)"; exit 2 ;;
    esac
done
