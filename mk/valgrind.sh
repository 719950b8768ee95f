#!/usr/bin/env bash
# make valgrind: runs every unit test binary in $BUILD/test/ under memcheck.
#
# A binary is clean when its tests pass, memcheck reports no error (invalid
# access, uninitialised read, definite or indirect leak) and no file descriptor
# opened by the binary is still open at exit (valgrind 3.19 only lists those, so
# they are counted here from the log). Third-party one-time allocations are
# suppressed in mk/valgrind.supp, each with its reason.
#
# usage: mk/valgrind.sh BUILD [regex]      env: VALGRIND_JOBS (default 2)
# Tests see REMEX_VALGRIND=1: one too slow under memcheck may shrink its loop
# counts (never skip); one that memcheck cannot emulate skips with its reason.
# Prints one line per binary and closes with "N clean, N with errors".
set -uo pipefail
build=${1:-build}
only=${2:-}
jobs=${VALGRIND_JOBS:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ ${SAN:-0} == 1 || $(basename "$build") == san ]]; then
    echo "valgrind: needs the plain build (ASan binaries cannot run under valgrind): make valgrind"
    exit 2
fi
build=$(cd "$build" && pwd)
logs=$build/valgrind
rm -rf "$logs" && mkdir -p "$logs"

export CMOCKA_MESSAGE_OUTPUT=TAP REMEX_VALGRIND=1 REMEX_BUILD=$build REMEX_BIN=$build/bin \
    REMEX_ROOT=$root REMEX_SAN=0

# run_one BIN: writes $logs/NAME.out (test output), .vg (memcheck log), .status (one line).
run_one() {
    local bin=$1 name t0 rc fds errs status
    name=$(basename "$bin")
    t0=$(date +%s.%N)
    (cd "$root" && timeout 900 valgrind --tool=memcheck --leak-check=full \
        --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --track-fds=yes \
        --child-silent-after-fork=yes --num-callers=30 \
        --suppressions="$root/mk/valgrind.supp" --log-file="$logs/$name.vg" \
        "$bin" >"$logs/$name.out" 2>&1)
    rc=$?
    # Descriptors still open at exit that the binary opened itself (not inherited).
    fds=$(awk '/== Open .*[0-9]+:/ { open = 1; next }
               open && /<inherited from parent>/ { open = 0; next }
               open && /==[0-9]+== *$/ { n++; open = 0 }
               END { print n + 0 }' "$logs/$name.vg")
    errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$logs/$name.vg" | tail -1)
    local secs
    secs=$(echo "$(date +%s.%N) - $t0" | bc)
    if [[ $rc -eq 0 && $fds -eq 0 ]]; then
        status=clean
    elif [[ $rc -eq 99 || $fds -ne 0 ]]; then
        status="errors (${errs:-?} memcheck, $fds fd)"
    elif [[ $rc -eq 124 ]]; then
        status="timeout"
    else
        status="tests failed (exit $rc)"
    fi
    printf '%-6s %s: %s (%.1fs)\n' "$([[ $status == clean ]] && echo ok || echo FAIL)" \
        "$name" "$status" "$secs" >"$logs/$name.status"
}
export -f run_one
export logs root

mapfile -t bins < <(find "$build/test" -maxdepth 1 -name 'test_*' -type f -perm -u+x | sort)
if [[ -n "$only" ]]; then
    mapfile -t bins < <(printf '%s\n' "${bins[@]}" | grep -E "$only")
fi
[[ ${#bins[@]} -gt 0 && -n "${bins[0]}" ]] || { echo "valgrind: no unit test binaries"; exit 1; }

t0=$(date +%s)
echo "== valgrind memcheck (${#bins[@]} binaries, $jobs at a time)"
printf '%s\n' "${bins[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$1"; cat "$logs/$(basename "$1").status"' _ {}

clean=0 bad=0
for b in "${bins[@]}"; do
    name=$(basename "$b")
    if grep -q '^ok ' "$logs/$name.status"; then
        clean=$((clean + 1))
    else
        bad=$((bad + 1))
        echo "---- $name: memcheck log $logs/$name.vg, test output $logs/$name.out ----"
        grep -vE '^==[0-9]+== *$' "$logs/$name.vg" | tail -60
        grep -E '^not ok' "$logs/$name.out" | head -20
    fi
done
echo "(valgrind took $(($(date +%s) - t0))s)"
echo "$clean clean, $bad with errors"
[[ $bad -eq 0 ]]
