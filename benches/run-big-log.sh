#!/usr/bin/env bash
# Cost of history: the ticket load (c=64, 15 s) on a fresh log, then the log filled for
# [seconds] with ticket lifecycles and lane events (checkpoints, handoffs, decisions) at
# once, then three restarts timed from exec to the `listening on` line and to the first
# answer that needs the log (a ticket read), then the same ticket load on the big log.
# Events are counted by `dispatch audit verify` on the stopped data dir. JSON lines,
# the last one the summary.
# Usage: benches/run-big-log.sh [seconds-of-fill] [concurrency-each-while-filling]
source "$(dirname "$0")/common.sh"
secs=${1:-60}
conc=${2:-32}
ticket_load() {
  target/release/ticket-load --server "$url" --admin-token-file "$data/admin-token" --concurrency 64 --duration-secs 15 |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["commands_per_second"], r["p99_ms"])'
}
start_dispatch agent --role orchestrator
read -r empty_cps empty_p99 < <(ticket_load)
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
  [ "$round" = 3 ] || { kill "$pid"; wait "$pid" || true; }
done
read -r big_cps big_p99 < <(ticket_load)
# Resident memory after the load (its tickets end CLOSED, whose actors stop at once).
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
echo "{\"events\":$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events"])' "$audit"),\"log_bytes\":$bytes,\"chains_ok\":$(python3 -c 'import json,sys; print(str(json.loads(sys.argv[1])["ok"]).lower())' "$audit"),\"ticket_load_empty\":{\"commands_per_second\":$empty_cps,\"p99_ms\":$empty_p99},\"ticket_load_big\":{\"commands_per_second\":$big_cps,\"p99_ms\":$big_p99},\"rss_mib\":$((rss / 1024)),\"big_over_empty\":$(awk "BEGIN { printf \"%.3f\", $big_cps / $empty_cps }")}"
