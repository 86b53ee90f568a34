#!/usr/bin/env bash
# Metrics benchmark: what the collector costs and what the store grows by.
#
# 1. Disk: the real store (crates/berth-metrics/examples/growth.rs) fed one replica's series
#    (cpu, memory, fds, restarts + 2 of the app's own) every 10 s for 8 simulated days: the file
#    size at the end of each day.
# 2. CPU: a stack of REPLICAS replicas of the hello app (each scraped on /metrics) runs for
#    WINDOW seconds with the collector at 10 s and again at 1 s; the daemon's CPU time in each
#    window gives the cost of one collector round (the difference divided by the extra rounds),
#    hence the collector's share of one core at the default 10 s.
#
#   bench/metrics.sh                       # release build, 8 replicas, 60 s windows
#   REPLICAS=4 WINDOW=30 bench/metrics.sh  # quicker
#   BERTH=target/debug/berth SKIP_BUILD=1 bench/metrics.sh   # an existing binary (a debug one
#                                          # gives an upper bound on the CPU)
#
# Everything runs on loopback; the stack folder is removed at the end. Writes
# bench/results/metrics-<date>.md.

set -euo pipefail

REPLICAS=${REPLICAS:-8}
WINDOW=${WINDOW:-60}
DAYS=${DAYS:-8}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
PROFILE=${PROFILE:-release}
BERTH=${BERTH:-$TARGET/$PROFILE/berth}
RESULTS_DIR="$BENCH_DIR/results"
RESULT="$RESULTS_DIR/metrics-$(date -u +%Y-%m-%d-%H%M).md"

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() { printf 'metrics.sh: error: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is missing (apt-get install python3)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building berth ($PROFILE)"
  CARGO_PROFILE=$PROFILE
  [ "$PROFILE" = debug ] && CARGO_PROFILE=dev
  (cd "$REPO" && cargo build --locked --profile "$CARGO_PROFILE" -p berth >&2)
fi
[ -x "$BERTH" ] || die "no berth binary at $BERTH"
BERTH=$(realpath "$BERTH")
PROFILE_FLAG=--release
[ "$PROFILE" = release ] || PROFILE_FLAG=

log "disk: $DAYS simulated days of one replica"
GROWTH=$(cd "$REPO" && cargo run -q $PROFILE_FLAG --locked -p berth-metrics --example growth -- "$DAYS" 2)

STACK=$(mktemp -d /tmp/berth-bench-metrics-XXXX)
chmod 755 "$STACK"
UP_PID=
stop_stack() {
  if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
    "$BERTH" -f "$STACK/berth.toml" down >/dev/null 2>&1 || kill "$UP_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.2; done
  fi
  UP_PID=
}
cleanup() { stop_stack; rm -rf "$STACK"; }
trap cleanup EXIT

mkdir -p "$STACK/app"
cp "$REPO"/examples/hello/*.py "$STACK/app/"
cat > "$STACK/berth.toml" <<EOF2
[stack]
name = "bench-metrics"

[edge]
listen = ["127.0.0.1:18480"]
admin = "127.0.0.1:19490"

[service.web]
run = "python3 app.py"
source = "app"
port = "auto"
replicas = $REPLICAS
metrics = { path = "/metrics" }

[service.web.health]
path = "/health"
interval = "10s"

[[route]]
path = "/"
service = "web"
EOF2

# CPU ticks (utime + stime) of a process.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# Runs the stack with the collector every $1; prints the daemon's CPU seconds over WINDOW.
measure() {
  local interval=$1
  (cd "$STACK" && exec env BERTH_METRICS_INTERVAL="$interval" "$BERTH" up >"$STACK/up-$interval.log" 2>&1) &
  UP_PID=$!
  for _ in $(seq 1 300); do
    grep -q "is up" "$STACK/up-$interval.log" 2>/dev/null && break
    kill -0 "$UP_PID" 2>/dev/null || die "berth up failed: $(tail -5 "$STACK/up-$interval.log")"
    sleep 0.2
  done
  sleep 5 # first health verdicts, first rounds
  local before after
  before=$(ticks "$UP_PID")
  sleep "$WINDOW"
  after=$(ticks "$UP_PID")
  stop_stack
  python3 -c "print(($after - $before) / $HZ)"
}

log "cpu: $REPLICAS replicas, collector every 10s, $WINDOW s"
SLOW=$(measure 10s)
log "cpu: $REPLICAS replicas, collector every 1s, $WINDOW s"
FAST=$(measure 1s)
DB_BYTES=$(cat "$STACK"/.berth/default/metrics.db "$STACK"/.berth/default/metrics.db-wal 2>/dev/null | wc -c)

REPORT=$(python3 - "$SLOW" "$FAST" "$WINDOW" "$REPLICAS" <<'PY'
import sys
slow, fast, window, replicas = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
extra_rounds = window / 1 - window / 10
per_round = max(fast - slow, 0) / extra_rounds
print(f"- daemon CPU over {window:.0f} s: {slow:.2f} s with the collector every 10 s, {fast:.2f} s every 1 s")
print(f"- one collector round ({replicas} replicas, their /metrics, the edge, the host): {per_round * 1000:.1f} ms of CPU")
print(f"- the collector at the default 10 s: {per_round / 10 * 100:.3f} % of one core ({per_round / 10 / replicas * 100:.4f} % per replica)")
PY
)

mkdir -p "$RESULTS_DIR"
{
  echo "# Metrics benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "binary: $BERTH; $(nproc) cores; replicas: $REPLICAS; window: $WINDOW s"
  echo
  echo "## Collector CPU"
  echo "$REPORT"
  echo
  echo "## Store growth for one replica (4 series + 2 app series, every 10 s)"
  echo
  echo '```'
  echo "$GROWTH"
  echo '```'
  echo
  echo "live store (database + WAL) after both runs: $DB_BYTES bytes"
} | tee "$RESULT"
