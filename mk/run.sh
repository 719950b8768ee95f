#!/usr/bin/env bash
# make run: the whole system on this machine.
#
# Starts remex-plane (SQLite and credentials under var/), creates an agent
# token, starts remex-worker with etc/run/agent.yaml, pushes the DAGs in
# etc/dags/, triggers example_sales and waits for it, then shows where its logs
# are. Without RUN_ONCE it keeps running with both logs on screen until Ctrl-C,
# which drains the worker and stops everything. RUN_ONCE=1 exits after the run
# with the run's outcome as exit code. RUN_PORT picks the plane's port
# (default 8080; 0 = any free port); RUN_VAR the state folder (default var/).
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=${REMEX_BIN:-build/bin}
VAR=${RUN_VAR:-var}
PORT=${RUN_PORT:-8080}
DAG=${RUN_DAG:-example_sales}
# Everything under $VAR (logs, tokens, the database) is private: 0600 / 0700.
umask 077
mkdir -p "$VAR/log"
chmod 700 "$VAR"
VAR=$(cd "$VAR" && pwd)

# The plane and the worker run in their own sessions, so Ctrl-C reaches only this
# script, which then drains the worker before it stops the plane.
plane_pid= worker_pid= tail_pids=()
say() { printf '\033[1mrun:\033[0m %s\n' "$*" 2>/dev/null || echo "run: $*"; }
[[ -t 1 ]] || say() { echo "run: $*"; }

stop_all() {
    trap - INT TERM
    for p in "${tail_pids[@]}"; do kill "$p" 2>/dev/null; done
    if [[ -n $worker_pid ]] && kill -0 "$worker_pid" 2>/dev/null; then
        say "draining the worker"
        kill -TERM "$worker_pid"
        wait "$worker_pid" 2>/dev/null
    fi
    if [[ -n $plane_pid ]] && kill -0 "$plane_pid" 2>/dev/null; then
        say "stopping the plane"
        kill -TERM "$plane_pid"
        wait "$plane_pid" 2>/dev/null
    fi
}

fail() {
    echo "run: $*" >&2
    for f in "$VAR/log/plane.log" "$VAR/log/worker.log"; do
        [[ -s $f ]] && { echo "---- last lines of $f" >&2; tail -n 20 "$f" >&2; }
    done
    stop_all
    exit 1
}

trap 'echo; stop_all; exit 130' INT TERM

for b in remex-plane remex-worker remex-task remexctl; do
    [[ -x $BIN/$b ]] || fail "$BIN/$b is not built (run make)"
done

# 1. The plane.
: >"$VAR/log/plane.log"
REMEX_PLANE_LISTEN=127.0.0.1:$PORT REMEX_PLANE_DB_PATH=$VAR/plane.db \
    REMEX_PLANE_ADMIN_TOKEN_FILE=$VAR/admin.token REMEX_PLANE_SIGNING_KEY_FILE=$VAR/signing.key \
    setsid "$BIN/remex-plane" -c etc/plane.yaml >>"$VAR/log/plane.log" 2>&1 &
plane_pid=$!
for _ in $(seq 1 100); do
    addr=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$VAR/log/plane.log" | tail -n1)
    [[ -n $addr ]] && break
    kill -0 "$plane_pid" 2>/dev/null || fail "remex-plane exited"
    sleep 0.1
done
[[ -n ${addr:-} ]] || fail "remex-plane did not start listening"
export REMEX_PLANE_URL=http://$addr REMEX_ADMIN_TOKEN_FILE=$VAR/admin.token
unset REMEX_ADMIN_TOKEN
say "plane on $REMEX_PLANE_URL (state in $VAR/plane.db, admin token in $VAR/admin.token)"
CTL=("$BIN/remexctl")

# 2. An agent token for the worker (kept across runs while it is valid).
umask 077
if [[ ! -s $VAR/agent.token ]] || ! grep -q . "$VAR/agent.token"; then
    tok=$("${CTL[@]}" tokens create --name local-worker --expires 30d 2>/dev/null) ||
        fail "could not create an agent token"
    printf '%s\n' "$tok" >"$VAR/agent.token"
    say "created agent token file $VAR/agent.token (mode 0600)"
fi
cp etc/run/secrets.yaml "$VAR/secrets.yaml"
chmod 600 "$VAR/secrets.yaml" "$VAR/agent.token"

# 3. The worker.
: >"$VAR/log/worker.log"
# Folders the worker hands to task processes (which run in the bundle folder)
# are given as absolute paths.
export REMEX_XCOM_STORE="file://$VAR/xcom" REMEX_WORKER_STATE_DIR="$VAR/worker"
export REMEX_WORKER_LOG_DIR="$VAR/logs" REMEX_PLANE_TOKEN_FILE="$VAR/agent.token"
export REMEX_SECRETS_FILE="$VAR/secrets.yaml"
setsid "$BIN/remex-worker" -c etc/run/agent.yaml >>"$VAR/log/worker.log" 2>&1 &
worker_pid=$!
sleep 0.3
if ! kill -0 "$worker_pid" 2>/dev/null; then
    # A token left from an older database is refused: make a new one once.
    if grep -qiE 'revoked|expired|unauthori|401' "$VAR/log/worker.log"; then
        rm -f "$VAR/agent.token"
        tok=$("${CTL[@]}" tokens create --name local-worker --expires 30d 2>/dev/null) ||
            fail "could not create an agent token"
        printf '%s\n' "$tok" >"$VAR/agent.token"
        setsid "$BIN/remex-worker" -c etc/run/agent.yaml >>"$VAR/log/worker.log" 2>&1 &
        worker_pid=$!
        sleep 0.3
    fi
    kill -0 "$worker_pid" 2>/dev/null || fail "remex-worker exited"
fi
say "worker running (logs: $VAR/log/worker.log, task logs under $VAR/logs/)"

# 4. DAGs: the runnable examples (the other files in etc/dags/ are format
# references whose tools, such as psql, are not on this machine).
for f in etc/dags/example*.yaml; do
    "${CTL[@]}" dags push --bundle examples "$f" >/dev/null || fail "could not push $f"
done
say "pushed $(ls etc/dags/example*.yaml | tr '\n' ' ')"

if [[ -z ${RUN_ONCE:-} ]]; then
    tail -n0 -F "$VAR/log/plane.log" 2>/dev/null | sed -u 's/^/[plane]  /' &
    tail_pids+=($!)
    tail -n0 -F "$VAR/log/worker.log" 2>/dev/null | sed -u 's/^/[worker] /' &
    tail_pids+=($!)
fi

# 5. Trigger the example and wait for it.
say "triggering $DAG"
"${CTL[@]}" dags trigger "$DAG" --wait --timeout 5m
rc=$?
run_id=$("${CTL[@]}" -o json runs list "$DAG" 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["dag_runs"]; print(max(r, key=lambda x: x["id"])["run_id"] if r else "")' 2>/dev/null)
if [[ -n $run_id ]]; then
    "${CTL[@]}" runs show "$DAG" "$run_id"
    say "task logs: $VAR/logs/dag_id=$DAG/run_id=$run_id/"
fi
if [[ $rc -eq 0 ]]; then say "run succeeded"; else say "run did not succeed (exit $rc)"; fi

if [[ -n ${RUN_ONCE:-} ]]; then
    stop_all
    exit "$rc"
fi
say "running; remexctl works against it with:"
echo "  export REMEX_PLANE_URL=$REMEX_PLANE_URL REMEX_ADMIN_TOKEN_FILE=$VAR/admin.token"
say "press Ctrl-C to drain and stop"
while kill -0 "$plane_pid" 2>/dev/null && kill -0 "$worker_pid" 2>/dev/null; do
    sleep 1
done
fail "a process exited unexpectedly"
