#!/usr/bin/env bash
# make lint: clang-format conformance, banned functions, line length, cppcheck,
# and (when docs/api/openapi.yaml and mk/openapi-lint.sh exist) the API spec.
set -uo pipefail
fail=0
mapfile -t files < <(git ls-files -co --exclude-standard '*.c' '*.h' | sort -u)
[[ ${#files[@]} -gt 0 ]] || { echo "lint: no C files"; exit 0; }

# 1. clang-format
bad=()
for f in "${files[@]}"; do
    [[ -f "$f" ]] || continue
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [[ ${#bad[@]} -gt 0 ]]; then
    echo "lint: not clang-formatted (run 'make format'):"; printf '  %s\n' "${bad[@]}"
    fail=1
fi

# 2. banned functions and long lines (comments and strings included: keep it simple)
banned='\b(sprintf|vsprintf|strcpy|strcat|atoi|atol|atoll|gets|strtok)[[:space:]]*\('
for f in "${files[@]}"; do
    [[ -f "$f" ]] || continue
    if grep -nE "$banned" "$f" | grep -v 'lint:allow'; then
        echo "lint: $f: banned function (use snprintf, memcpy with a length, strtol...)"
        fail=1
    fi
    awk -v f="$f" 'length($0) > 100 { printf "lint: %s:%d: line over 100 columns\n", f, NR; bad=1 }
                    END { exit bad }' "$f" || fail=1
done

# 3. cppcheck, warnings are errors
if ! cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
        --inline-suppr --suppress=missingIncludeSystem --std=c11 -D_GNU_SOURCE -Iinclude \
        --template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
        "${files[@]}"; then
    echo "lint: cppcheck reported problems"
    fail=1
fi

# 4. API spec (arrives with the plane)
if [[ -x mk/openapi-lint.sh && -f docs/api/openapi.yaml ]]; then
    bash mk/openapi-lint.sh || fail=1
fi

if [[ $fail -eq 0 ]]; then echo "lint: OK (${#files[@]} files)"; fi
exit $fail
