#!/usr/bin/env bash
# Restart to ready on a log that holds history: fills a fresh data dir for [seconds]
# with ticket lifecycles and lane events (checkpoints, handoffs, decisions) at once,
# stops the node, counts the events (`dispatch audit verify` on the stopped dir), then
# starts it three times and measures, from exec: the `listening on` line, and the
# first answer that needs the log (a ticket read). JSON: one line per restart, then a summary.
# Usage: benches/run-restart.sh [seconds-of-load] [concurrency-each]
source "$(dirname "$0")/common.sh"
secs=${1:-60}
conc=${2:-32}
start_dispatch agent --role orchestrator
target/release/ticket-load --server "$url" --admin-token-file "$data/admin-token" --concurrency "$conc" --duration-secs "$secs" >/dev/null &
load=$!
target/release/lane-soak --server "$url" --admin-token-file "$data/admin-token" --concurrency "$conc" --duration-secs "$secs" --lanes 2000 >/dev/null
wait "$load"
ticket=$(curl -sf -H "authorization: Bearer $(cat "$data/admin-token")" "$url/v1/tickets?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tickets"][0]["id"])')
kill "$pid"; wait "$pid" || true
audit=$(target/release/dispatch audit verify --data-dir "$data" -o json | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))')
bytes=$(stat -c %s "$data/dispatch.redb")
now() { date +%s.%N; }
secs_between() { awk "BEGIN { printf \"%.3f\", $2 - $1 }"; }
for round in 1 2 3; do
  t0=$(now)
  RUST_LOG=warn target/release/dispatch agent --role orchestrator --data-dir "$data" --http-addr 127.0.0.1:0 --cluster-addr 127.0.0.1:0 > "$data.out" 2>&1 &
  pid=$!
  until grep -q "^dispatch: listening on" "$data.out" 2>/dev/null; do sleep 0.005; done
  t1=$(now)
  url=$(sed -n 's/^dispatch: listening on //p' "$data.out")
  until curl -sf -o /dev/null -H "authorization: Bearer $(cat "$data/admin-token")" "$url/v1/tickets/$ticket"; do sleep 0.005; done
  t2=$(now)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  echo "{\"round\":$round,\"listening_s\":$(secs_between "$t0" "$t1"),\"first_ticket_read_s\":$(secs_between "$t0" "$t2"),\"rss_mib\":$((rss / 1024))}"
  kill "$pid"; wait "$pid" || true
done
echo "{\"audit\":$audit,\"log_bytes\":$bytes}"
