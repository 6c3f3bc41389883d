#!/usr/bin/env bash
# Side by side on one machine, in one run: the Postgres design (Debian's PostgreSQL,
# fsync and synchronous_commit on, one transaction per command: benches/postgres/)
# driven by pgbench, and dispatch (ticket lifecycles over HTTP, every command fsynced
# before its answer) driven by ticket-load — alternated twice at the same concurrency.
# One JSON line per run, then the ratio of the means.
# Usage: benches/vs-postgres.sh [seconds-per-run] [concurrency]
source "$(dirname "$0")/common.sh"
secs=${1:-15}
conc=${2:-64}
tickets=10000
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "no PostgreSQL server: apt-get install postgresql" >&2; exit 1; }
pg=$(mktemp -d)
# initdb refuses root: the cluster runs as Debian's postgres user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$pg"
trap 'as_pg "$pgbin/pg_ctl" -D "$pg/db" -m fast stop >/dev/null 2>&1 || true; rm -rf "$pg"
      kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data" "$data.out"' EXIT
as_pg "$pgbin/initdb" -D "$pg/db" -A trust -U bench >/dev/null
as_pg "$pgbin/pg_ctl" -D "$pg/db" -l "$pg/server.log" -w start \
  -o "-k $pg -p 5499 -c listen_addresses='' -c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_buffers=256MB" >/dev/null
psql=(psql -q -h "$pg" -p 5499 -U bench -d postgres)
"${psql[@]}" -v tickets=$tickets -f benches/postgres/schema.sql >/dev/null
"${psql[@]}" -Atc "SHOW fsync; SHOW synchronous_commit;" | tr '\n' ' ' | grep -q "on on" || { echo "fsync is off" >&2; exit 1; }

run_postgres() {
  local out
  out=$(cd "$pg" && as_pg pgbench -h "$pg" -p 5499 -U bench -n -M prepared -c "$conc" -j 2 -T "$secs" \
    -D tickets=$tickets -f "$OLDPWD/benches/postgres/command.sql" -l --log-prefix=tx postgres 2>&1)
  local tps p50 p99
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
  # Per-transaction log: column 3 is the latency in microseconds.
  read -r p50 p99 < <(cat "$pg"/tx.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "%.2f %.2f\n", a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000}')
  rm -f "$pg"/tx.*
  # Postgres defers page writes to its checkpointer: they land now, not in dispatch's run.
  "${psql[@]}" -c CHECKPOINT >/dev/null
  echo "{\"system\":\"postgres\",\"concurrency\":$conc,\"seconds\":$secs,\"commands_per_second\":$tps,\"p50_ms\":$p50,\"p99_ms\":$p99}"
}

run_dispatch() {
  target/release/ticket-load --server "$url" --admin-token-file "$data/admin-token" --concurrency "$conc" \
    --duration-secs "$secs" --pid "$pid" | sed 's/^{/{"system":"dispatch",/'
}

start_dispatch agent --role orchestrator
results=$(for round in 1 2; do run_postgres; run_dispatch; done | tee /dev/stderr)
python3 - "$results" <<'PY'
import json, sys
runs = [json.loads(l) for l in sys.argv[1].splitlines() if l.startswith("{")]
mean = lambda s: sum(r["commands_per_second"] for r in runs if r["system"] == s) / 2
print(json.dumps({"postgres_mean": mean("postgres"), "dispatch_mean": mean("dispatch"),
                  "ratio": round(mean("dispatch") / mean("postgres"), 2)}))
PY
