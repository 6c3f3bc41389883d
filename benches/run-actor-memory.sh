#!/usr/bin/env bash
# Resident memory per awake ticket actor, and of an idle orchestrator after touching
# many tickets. One JSON line.
#
# 1. An orchestrator that keeps up to AWAKE ticket actors awake (and none goes to sleep
#    for an hour) gets AWAKE tickets created in four steps (one actor each); its RSS and
#    awake actors are read after each step. The cost per actor is the slope from the
#    first step to the last: the log's 64 MiB page cache is full after the first.
# 2. The same data dir restarted with the defaults (10,000 awake) and actors sleeping
#    after IDLE_SECS unused gets tickets created up to TOUCHED in all; once every actor
#    sleeps and freed memory went back to the OS (node/src/memory.rs), its RSS is read.
#
#   benches/run-actor-memory.sh [AWAKE] [TOUCHED] [IDLE_SECS]
source "$(dirname "$0")/common.sh"
awake=${1:-200000}
touched=${2:-1000000}
idle=${3:-30}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status"; }
live() { curl -s "$url/metrics" | awk '/^dispatch_live_actors\{kind="ticket"\}/ { print $2 }'; }
create() {  # prints how many were created
  target/release/ticket-load --server "$url" --admin-token-file "$data/admin-token" --creates-only \
    --limit "$1" --concurrency 32 --duration-secs 3600 | python3 -c 'import json,sys; print(json.load(sys.stdin)["commands"])'
}

start_dispatch agent --role orchestrator --max-awake-actors "$awake" --actor-idle-secs 3600
steps="" created=0
for _ in 1 2 3 4; do
  created=$((created + $(create $((awake / 4)))))
  steps="$steps{\"created\":$created,\"awake\":$(live),\"rss_mib\":$(rss_mib)},"
done
per_actor=$(python3 - "${steps%,}" <<'EOF'
import json, sys
s = json.loads("[" + sys.argv[1] + "]")
kib = (s[-1]["rss_mib"] - s[0]["rss_mib"]) * 1024 / (s[-1]["awake"] - s[0]["awake"])
print(json.dumps({"kib": round(kib, 2), "per_gib": round(1024 * 1024 / kib)}))
EOF
)
kill "$pid"; wait "$pid" || true

start_dispatch agent --role orchestrator --actor-idle-secs "$idle"
while ((created < touched)); do
  created=$((created + $(create $((touched - created < awake ? touched - created : awake)))))
done
busy=$(rss_mib)
# Actors sleep in sweeps every IDLE_SECS/2 and the trim runs at the same pace: wait for
# every actor to sleep, then for one more sweep.
for _ in $(seq $((idle * 8))); do [[ "$(live)" == "0" ]] && break; sleep 0.5; done
sleep $((idle / 2 + 1))
printf '{"steps":[%s],"per_awake_actor":%s,"touched":%d,"rss_mib_after_touching":%s,"awake_after_idle":%s,"rss_mib_idle":%s}\n' \
  "${steps%,}" "$per_actor" "$created" "$busy" "$(live)" "$(rss_mib)"
