#!/usr/bin/env bash
# Runs the fuzz targets (property-based: cluster/tests/fuzz.rs, node/tests/fuzz.rs)
# round after round with fresh random seeds until SECONDS have passed, and prints how
# many cases each target ran clean. CI runs every target once with FUZZ_CASES unset
# (2,000 cases per decoder target, 500 per HTTP target).
#
#   fuzz/run.sh [SECONDS=300] [CASES_PER_ROUND=20000]
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-300}
per_round=${2:-20000}
cargo test --release -p dispatch-cluster --test fuzz --no-run -q
cargo test --release -p dispatch --test fuzz --no-run -q
start=$(date +%s)
rounds=0
while (( $(date +%s) - start < budget )); do
  FUZZ_CASES=$per_round cargo test --release -q -p dispatch-cluster --test fuzz >/dev/null
  FUZZ_CASES=$per_round cargo test --release -q -p dispatch --test fuzz >/dev/null
  rounds=$((rounds + 1))
done
http=$(( per_round / 4 ))
echo "fuzz: $rounds rounds in $(( $(date +%s) - start ))s, all clean"
echo "  wire frames, random bytes (4 decoders each):   $(( rounds * per_round )) cases"
echo "  wire frames, mutated valid frames:             $(( rounds * per_round )) cases"
echo "  join tokens:                                   $(( rounds * per_round )) cases"
echo "  access tokens (JWT):                           $(( rounds * per_round )) cases"
echo "  event envelopes over HTTP:                     $(( rounds * http )) cases"
echo "  ticket command bodies over HTTP:               $(( rounds * http )) cases"
