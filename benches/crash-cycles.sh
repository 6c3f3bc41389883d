#!/usr/bin/env bash
# SIGKILLs `dispatch up` under a mixed load N times (node/tests/crash_cycles.rs; `cargo
# test` runs 10) and prints what was checked as JSON on the last line: acknowledged
# commands, retries that returned their original answer, tasks by end state, the job
# containers Docker saw, deadlines and callbacks.
#
#   benches/crash-cycles.sh [CYCLES] [SEED]
#
# CYCLES defaults to 1000. A failure names the cycle and the command; the kill schedule
# is replayed with the printed CRASH_SEED (the process's own timing still varies).
set -euo pipefail
cd "$(dirname "$0")/.."
export CRASH_CYCLES=${1:-1000}
[[ -n "${2:-}" ]] && export CRASH_SEED=$2
PROFILE=${PROFILE:-release}
cargo test -q -p dispatch --profile "$PROFILE" --test crash_cycles -- --nocapture 2>&1 | grep --line-buffered -v '^$'
