#!/usr/bin/env bash
# Starts a release orchestrator on a fresh data dir and runs the ticket load
# generator at concurrency 1, 16 and 64 (10 s each), one JSON line per run.
# Usage: benches/run-ticket-load.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
cargo build --release -q -p dispatch -p dispatch-benches
data=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
RUST_LOG=warn target/release/dispatch up --data-dir "$data" --http-addr 127.0.0.1:0 --cluster-addr 127.0.0.1:0 > "$data.out" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$data.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^dispatch: listening on //p' "$data.out")
for c in 1 16 64; do
  target/release/ticket-load --server "$url" --admin-token-file "$data/admin-token" --concurrency "$c" --duration-secs "$secs"
done
