#!/usr/bin/env bash
# Starts a release orchestrator (heartbeat $HEARTBEAT_MS, default 1000 ms; the product's default is 5000) on a fresh data dir and runs the
# cluster load generator: N simulated workers join over QUIC, connect with their
# certificates and heartbeat for the given time. One JSON line.
# Usage: benches/run-cluster-load.sh [nodes] [seconds] [extra cluster-load flags]
source "$(dirname "$0")/common.sh"
nodes=${1:-1000}
secs=${2:-20}
hb=${HEARTBEAT_MS:-1000}
start_dispatch agent --role orchestrator --node-heartbeat-ms "$hb"
target/release/cluster-load --server "$url" --admin-token-file "$data/admin-token" --nodes "$nodes" \
  --heartbeat-ms "$hb" --duration-secs "$secs" --pid "$pid" "${@:3}"
