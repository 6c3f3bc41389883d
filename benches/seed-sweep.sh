#!/usr/bin/env bash
# Runs every simulation scenario (sim/tests/) over many seeds, in parallel across the
# machine's cores, and prints the failing seeds for replay. `cargo test` runs each
# scenario with 24 seeds (dispatch_sim::CI_SEEDS); this runs any number.
#
#   benches/seed-sweep.sh [SEEDS_PER_SCENARIO] [SCENARIO_FILTER]
#
# SEEDS_PER_SCENARIO defaults to 1000, starting at seed FIRST (default 0), so a long sweep
# can be split into ranges run at different times or on different machines (FIRST=5000
# benches/seed-sweep.sh 5000 covers seeds 5000-9999). JOBS (default: nproc) processes run
# at once, each taking CHUNK (default 25) seeds of one scenario; PROFILE=dev runs unoptimised.
# Replay a failure: SIM_SEED=<seed> cargo test -p dispatch-sim <scenario>
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${1:-1000}
FILTER=${2:-}
JOBS=${JOBS:-$(nproc)}
CHUNK=${CHUNK:-25}
FIRST=${FIRST:-0}
PROFILE=${PROFILE:-release}

binaries=$(cargo test -p dispatch-sim --profile "$PROFILE" --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.profile.test == true and .target.kind == ["test"]) | .executable')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One line per job: binary, scenario, first seed, seeds.
for bin in $binaries; do
    for scenario in $("$bin" --list 2>/dev/null | sed -n 's/: test$//p'); do
        [[ -n "$FILTER" && "$scenario" != *"$FILTER"* ]] && continue
        for ((base = 0; base < SEEDS; base += CHUNK)); do
            echo "$bin $scenario $((FIRST + base)) $((SEEDS - base < CHUNK ? SEEDS - base : CHUNK))"
        done
    done
done >"$work/jobs"

started=$(date +%s)
run_chunk() {
    local bin=$1 scenario=$2 base=$3 count=$4
    SIM_SEED_BASE=$base SIM_SEEDS=$count "$bin" --exact "$scenario" --test-threads 1 >"$5/$scenario.$base.out" 2>&1 || true
}
export -f run_chunk
xargs -P "$JOBS" -L 1 bash -c 'run_chunk "$@" '"$work" _ <"$work/jobs"

echo "scenario seeds failed"
failures=0
for scenario in $(cut -d' ' -f2 "$work/jobs" | sort -u); do
    failed=$(cat "$work/$scenario".*.out | sed -n 's/.*failed with seed \([0-9]*\);.*/\1/p' | sort -n | tr '\n' ' ')
    n=$(echo "$failed" | wc -w)
    # A chunk that died without a verdict (killed, aborted) counts as failed seeds too.
    for out in "$work/$scenario".*.out; do
        if ! grep -q '^test result:' "$out"; then
            echo "!!! $out ended without a result:" >&2
            tail -5 "$out" >&2
            n=$((n + 1))
        fi
    done
    failures=$((failures + n))
    echo "$scenario $SEEDS $n ${failed:+(seeds: $failed)}"
done
elapsed=$(($(date +%s) - started))
scenarios=$(cut -d' ' -f2 "$work/jobs" | sort -u | wc -l)
printf '{"scenarios":%d,"first_seed":%d,"seeds_per_scenario":%d,"runs":%d,"failed_runs":%d,"seconds":%d,"jobs":%d,"profile":"%s"}\n' \
    "$scenarios" "$FIRST" "$SEEDS" $((scenarios * SEEDS)) "$failures" "$elapsed" "$JOBS" "$PROFILE"
[[ $failures -eq 0 ]]
