#!/usr/bin/env bash
# make fuzz: runs each libFuzzer target for N seconds on a copy of its seed
# corpus (test/fuzz/corpus/<target>/ stays as committed). Fails on any crash.
set -uo pipefail
dir=$1 secs=$2; shift 2
fail=0
for t in "$@"; do
    seeds=test/fuzz/corpus/$t
    work=$dir/corpus/$t
    mkdir -p "$work" "$seeds"
    cp -n "$seeds"/* "$work"/ 2>/dev/null || true
    dict=(); [[ -f test/fuzz/$t.dict ]] && dict=(-dict=test/fuzz/$t.dict)
    echo "fuzz: $t for ${secs}s"
    if ! "$dir/$t" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
            -print_final_stats=1 -artifact_prefix="$dir/$t-" "${dict[@]}" "$work" \
            >"$dir/$t.log" 2>&1; then
        echo "fuzz: $t FAILED (log: $dir/$t.log)"; tail -40 "$dir/$t.log"; fail=1
        continue
    fi
    execs=$(grep -E '^stat::number_of_executed_units' "$dir/$t.log" | awk '{print $2}')
    echo "fuzz: $t ok: ${execs:-?} executions, corpus $(ls "$work" | wc -l) inputs"
done
exit $fail
