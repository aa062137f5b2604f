#!/usr/bin/env bash
# The suite as another machine would run it (docs/testing.md, "Portability"): the tests marked `numeric` again
# on other CPU code paths (ATEN_CPU_CAPABILITY=avx2 and =default) at one and two threads, and the tests marked
# `timing` again beside two busy processes this script starts and stops. Fails if any run fails, and also when
# a marker selects no test (pytest's exit 5: a subset that selects nothing is a bug, not a pass).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
failed=()

run() {  # run LABEL MARKER [VAR=VALUE ...]
    local label=$1 marker=$2
    shift 2
    echo "portability: $label"
    env "$@" "$PY" -m pytest -q -p no:cacheprovider -m "$marker and not slow and not gpu"
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -eq 5 ] && echo "portability: $label selected no test (pytest exit 5)"
        failed+=("$label (pytest exit $rc)")
    fi
}

for capability in avx2 default; do
    for threads in 1 2; do
        run "numeric, ATEN_CPU_CAPABILITY=$capability, $threads thread(s)" numeric \
            ATEN_CPU_CAPABILITY=$capability OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads \
            OPENBLAS_NUM_THREADS=$threads
    done
done

# Two busy processes, ended however this script ends.
load=()
stop_load() { for pid in "${load[@]}"; do kill "$pid" 2>/dev/null; done; }
trap stop_load EXIT
for _ in 1 2; do
    yes > /dev/null &
    load+=($!)
done
run "timing, beside two busy processes" timing
stop_load
load=()

if [ ${#failed[@]} -gt 0 ]; then
    printf 'portability: failed: %s\n' "${failed[@]}"
    exit 1
fi
echo "portability: all runs passed"
