# Sourced by the run-*.sh scripts: builds release binaries and starts `dispatch` with
# the given arguments on a fresh data dir; sets $url, $data and $pid, and stops it on exit.
# NO_BUILD=1 uses the binaries already in target/release (a long run may be using them).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n "${NO_BUILD:-}" ]] || cargo build --release -q -p dispatch -p dispatch-benches
data=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data" "$data.out"' EXIT
start_dispatch() {
  RUST_LOG=warn target/release/dispatch "$@" --data-dir "$data" --http-addr 127.0.0.1:0 --cluster-addr 127.0.0.1:0 > "$data.out" &
  pid=$!
  for _ in $(seq 100); do grep -q "cluster:" "$data.out" 2>/dev/null && break; sleep 0.1; done
  url=$(sed -n 's/^dispatch: listening on //p' "$data.out")
}
