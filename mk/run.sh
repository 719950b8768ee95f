#!/usr/bin/env bash
# make run: the whole system on this machine.
#
# Starts remex-plane (SQLite and credentials under var/), creates an agent
# token, starts remex-agent (the supervisor and its roles) with
# etc/run/agent.yaml, pushes the DAGs in etc/dags/, triggers example_sales and
# waits for it, then runs the README's walkthrough DAG etl_daily (writing the
# export marker its sensor waits for; RUN_SKIP_ETL=1 skips it), then shows the
# runs, the agent's status and where the logs are.
# Without RUN_ONCE it ends by naming the web UI's address ("open
# http://127.0.0.1:8080/"), then shows the agent's log until Ctrl-C, which
# drains the agent, stops the plane and exits 0. RUN_ONCE=1 exits after the runs
# with their outcome as exit code (0: both succeeded). RUN_PORT picks the plane's port
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

# The plane and the agent run in their own sessions, so Ctrl-C reaches only this
# script, which then drains the agent before it stops the plane.
plane_pid= agent_pid= tail_pids=()
say() { printf '\033[1mrun:\033[0m %s\n' "$*" 2>/dev/null || echo "run: $*"; }
[[ -t 1 ]] || say() { echo "run: $*"; }

stop_all() {
    trap - INT TERM
    for p in "${tail_pids[@]}"; do kill "$p" 2>/dev/null; done
    if [[ -n $agent_pid ]] && kill -0 "$agent_pid" 2>/dev/null; then
        say "draining the agent"
        kill -TERM "$agent_pid"
        wait "$agent_pid" 2>/dev/null
    fi
    if [[ -n $plane_pid ]] && kill -0 "$plane_pid" 2>/dev/null; then
        say "stopping the plane"
        kill -TERM "$plane_pid"
        wait "$plane_pid" 2>/dev/null
    fi
}

fail() {
    echo "run: $*" >&2
    for f in "$VAR/log/plane.log" "$VAR/log/agent.log"; do
        [[ -s $f ]] && { echo "---- last lines of $f" >&2; tail -n 20 "$f" >&2; }
    done
    stop_all
    exit 1
}

# Ctrl-C is how an interactive run ends: a clean stop, exit 0.
trap 'echo; stop_all; exit 0' INT TERM

for b in remex-plane remex-agent remex-worker remex-task remexctl; do
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

# 2. An agent token for the agent (kept across runs while it is valid).
umask 077
if [[ ! -s $VAR/agent.token ]] || ! grep -q . "$VAR/agent.token"; then
    tok=$("${CTL[@]}" tokens create --name local-worker --expires 30d 2>/dev/null) ||
        fail "could not create an agent token"
    printf '%s\n' "$tok" >"$VAR/agent.token"
    say "created agent token file $VAR/agent.token (mode 0600)"
fi
cp etc/run/secrets.yaml "$VAR/secrets.yaml"
chmod 600 "$VAR/secrets.yaml" "$VAR/agent.token"

# 3. The agent: the supervisor and its roles (agent.roles in etc/run/agent.yaml).
: >"$VAR/log/agent.log"
export REMEX_STATE_DIR="$VAR" REMEX_WORKER_LOG_DIR="$VAR/task-logs"
export REMEX_PLANE_TOKEN_FILE="$VAR/agent.token" REMEX_SECRETS_FILE="$VAR/secrets.yaml"
# The sentinel's /health and /metrics: RUN_SENTINEL_PORT, else 9464 (any free port with RUN_PORT=0).
SPORT=${RUN_SENTINEL_PORT:-9464}
if [[ $PORT == 0 && -z ${RUN_SENTINEL_PORT:-} ]]; then
    SPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
export REMEX_SENTINEL_LISTEN=127.0.0.1:$SPORT
AGENT=("$BIN/remex-agent" -c etc/run/agent.yaml)
start_agent() {
    setsid "${AGENT[@]}" >>"$VAR/log/agent.log" 2>&1 &
    agent_pid=$!
    for _ in $(seq 1 100); do
        grep -q "agent ready" "$VAR/log/agent.log" && return 0
        grep -q "is FATAL" "$VAR/log/agent.log" && return 1
        kill -0 "$agent_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
if ! start_agent; then
    # A token left from an older database is refused: make a new one once.
    if grep -qiE 'revoked|expired|invalid' "$VAR/log/agent.log"; then
        kill -TERM "$agent_pid" 2>/dev/null
        wait "$agent_pid" 2>/dev/null
        rm -f "$VAR/agent.token"
        tok=$("${CTL[@]}" tokens create --name local-worker --expires 30d 2>/dev/null) ||
            fail "could not create an agent token"
        printf '%s\n' "$tok" >"$VAR/agent.token"
        say "the old agent token was refused; created a new one"
        start_agent || fail "remex-agent did not become ready"
    else
        fail "remex-agent did not become ready"
    fi
fi
say "agent ready (log: $VAR/log/agent.log, task logs under $VAR/task-logs/)"

# 4. DAGs: the dag-processor uploads the examples bundle (etc/dags/) on its first
# scan; wait until the plane has the example.
for _ in $(seq 1 100); do
    "${CTL[@]}" dags show "$DAG" >/dev/null 2>&1 && break
    sleep 0.1
done
"${CTL[@]}" dags show "$DAG" >/dev/null 2>&1 || fail "the dag-processor did not upload $DAG"
say "the dag-processor synced etc/dags/ ($("${CTL[@]}" -o json dags list 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["dags"]))' 2>/dev/null) DAGs)"

# 5. Trigger the example and wait for it.
say "triggering $DAG"
mkdir -p "$VAR/drop"
"${CTL[@]}" dags trigger "$DAG" --conf "{\"drop_dir\": \"$VAR/drop\"}" --wait --timeout 5m
rc=$?
run_id=$("${CTL[@]}" -o json runs list "$DAG" 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["dag_runs"]; print(max(r, key=lambda x: x["id"])["run_id"] if r else "")' 2>/dev/null)
if [[ -n $run_id ]]; then
    "${CTL[@]}" runs show "$DAG" "$run_id"
    say "task logs: $VAR/task-logs/dag_id=$DAG/run_id=$run_id/"
fi
if [[ $rc -eq 0 ]]; then say "run succeeded"; else say "run did not succeed (exit $rc)"; fi

# 6. The README's walkthrough DAG etl_daily: its sensor waits (held by the
# triggerer) for the export's marker in the agent's object store (var/xcom/);
# this script plays the exporter and writes the marker once the sensor waits.
if [[ $DAG == example_sales && -z ${RUN_SKIP_ETL:-} ]]; then
    DAY=2026-11-22
    MARK=$VAR/xcom/exports/$DAY/_SUCCESS
    rm -f "$MARK"
    mkdir -p "$(dirname "$MARK")"
    say "triggering etl_daily for $DAY: wait_for_export waits for $MARK"
    "${CTL[@]}" dags trigger etl_daily --conf "{\"day\": \"$DAY\"}" --wait --timeout 5m \
        >"$VAR/log/etl_daily.trigger" 2>&1 &
    etl_pid=$!
    for _ in $(seq 1 100); do
        "${CTL[@]}" -o json runs list etl_daily 2>/dev/null | grep -q '"state": *"running"' && break
        sleep 0.1
    done
    sleep 1
    say "the export landed: writing $MARK"
    : >"$MARK"
    wait "$etl_pid"
    etl_rc=$?
    cat "$VAR/log/etl_daily.trigger"
    etl_run=$("${CTL[@]}" -o json runs list etl_daily 2>/dev/null |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["dag_runs"]; print(max(r, key=lambda x: x["id"])["run_id"] if r else "")' 2>/dev/null)
    [[ -n $etl_run ]] && "${CTL[@]}" runs show etl_daily "$etl_run"
    if [[ $etl_rc -eq 0 ]]; then say "etl_daily succeeded"; else say "etl_daily did not succeed (exit $etl_rc)"; fi
    [[ $rc -eq 0 ]] && rc=$etl_rc
fi
"${AGENT[@]}" status || true

if [[ -n ${RUN_ONCE:-} ]]; then
    stop_all
    exit "$rc"
fi
say "running; remexctl works against it with:"
echo "  export REMEX_PLANE_URL=$REMEX_PLANE_URL REMEX_ADMIN_TOKEN_FILE=$VAR/admin.token"
echo "  ${AGENT[*]} status    # the agent's roles"
echo "  curl http://$REMEX_SENTINEL_LISTEN/health    # the sentinel's checks; /metrics for Prometheus"
say "web UI: log in with the admin token in $VAR/admin.token at"
say "open $REMEX_PLANE_URL/"
say "press Ctrl-C to drain and stop; the agent's log follows"
tail -n0 -F "$VAR/log/agent.log" 2>/dev/null &
tail_pids+=($!)
while kill -0 "$plane_pid" 2>/dev/null && kill -0 "$agent_pid" 2>/dev/null; do
    sleep 1
done
say "the plane or the agent stopped on its own (see $VAR/log/)"
stop_all
exit 1
fail "a process exited unexpectedly"
