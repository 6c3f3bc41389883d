#!/usr/bin/env bash
# Starts a release orchestrator (heartbeat 1 s) on a fresh data dir and runs the
# cluster load generator: N simulated workers join over QUIC, connect with their
# certificates and heartbeat for the given time. One JSON line.
# Usage: benches/run-cluster-load.sh [nodes] [seconds] [extra cluster-load flags]
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-1000}
secs=${2:-20}
cargo build --release -q -p dispatch -p dispatch-benches
data=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data" "$data.out"' EXIT
RUST_LOG=warn target/release/dispatch agent --role orchestrator --data-dir "$data" --http-addr 127.0.0.1:0 \
  --cluster-addr 127.0.0.1:0 --node-heartbeat-ms 1000 > "$data.out" &
pid=$!
for _ in $(seq 100); do grep -q "cluster:" "$data.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^dispatch: listening on //p' "$data.out")
target/release/cluster-load --server "$url" --admin-token-file "$data/admin-token" --nodes "$nodes" \
  --heartbeat-ms 1000 --duration-secs "$secs" --pid "$pid" "${@:3}"
