#!/usr/bin/env bash
# Starts a release orchestrator on a fresh data dir and soaks lane intake: sustained
# events/s, intake p50/p99 and server memory every 5 s. One JSON line.
# Usage: benches/run-lane-soak.sh [seconds] [concurrency] [lanes]
source "$(dirname "$0")/common.sh"
secs=${1:-60}
conc=${2:-32}
lanes=${3:-200}
start_dispatch agent --role orchestrator
target/release/lane-soak --server "$url" --admin-token-file "$data/admin-token" --duration-secs "$secs" \
  --concurrency "$conc" --lanes "$lanes" --pid "$pid"
