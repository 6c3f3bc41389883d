#!/usr/bin/env bash
# Starts a release `dispatch up` (orchestrator + local worker on Docker) on a fresh
# data dir and compares `dispatch task` with a bare `docker run --rm` of the same
# image and command, interleaved. One JSON line. Needs a Docker Engine and
# /bin/busybox (Debian's busybox-static) for the default image.
# Usage: benches/run-task-overhead.sh [runs]
source "$(dirname "$0")/common.sh"
runs=${1:-30}
start_dispatch up
target/release/task-overhead --server "$url" --admin-token-file "$data/admin-token" --runs "$runs"
