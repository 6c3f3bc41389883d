#!/usr/bin/env bash
# Starts a release `dispatch up` (orchestrator + local worker on Docker) on a fresh
# data dir and compares `dispatch task` with a bare `docker run --rm` of the same
# image and command, interleaved. One JSON line. Needs a Docker Engine and
# /bin/busybox (Debian's busybox-static) for the default image.
# Usage: benches/run-task-overhead.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
cargo build --release -q -p dispatch -p dispatch-benches
data=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data" "$data.out"' EXIT
RUST_LOG=warn target/release/dispatch up --data-dir "$data" --http-addr 127.0.0.1:0 --cluster-addr 127.0.0.1:0 > "$data.out" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$data.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^dispatch: listening on //p' "$data.out")
target/release/task-overhead --server "$url" --admin-token-file "$data/admin-token" --runs "$runs"
