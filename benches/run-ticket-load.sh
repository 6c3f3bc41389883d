#!/usr/bin/env bash
# Starts a release orchestrator on a fresh data dir and runs the ticket load
# generator at concurrency 1, 16 and 64 (10 s each), one JSON line per run.
# Usage: benches/run-ticket-load.sh [seconds-per-run]
source "$(dirname "$0")/common.sh"
secs=${1:-10}
start_dispatch up
for c in 1 16 64; do
  target/release/ticket-load --server "$url" --admin-token-file "$data/admin-token" --concurrency "$c" --duration-secs "$secs" --pid "$pid"
done
