#!/usr/bin/env bash
# Container vs process replicas: the same app (busybox httpd serving a folder) run by Berth as a
# local process and as a container (Podman through its Docker API service), measured the same way:
#
# - start time: `berth scale web 2` from 1 replica, until the new replica's own port answers
#   `GET /health` (polled every 10 ms from outside, so the health-check cadence does not count);
#   ROUNDS times, each followed by `berth scale web 1`;
# - memory per replica: 1 → 1+EXTRA replicas, then the average over the new ones of (a) the
#   proportional set size (PSS) of the replica's processes (process: its `berth shim` and the app;
#   container: its `conmon`, the init and the app) and (b) what its memory control group is
#   charged (`memory.usage_in_bytes`, cgroups v1: process: shim + app; container: init + app,
#   with the kernel memory and page cache charged to them). Both kinds get `memory = "256M"`, so
#   both have a memory cgroup.
#
#   bench/containers.sh                 # ROUNDS=10 EXTRA=5
#   ROUNDS=5 EXTRA=3 bench/containers.sh
#
# Needs podman + runc configured as .ci/run does, busybox-static, curl, python3. Starts its own
# Podman API service on a temporary socket and stops it; uses target/debug/berth unless BERTH is
# set (the replicas' start is the engine's and the kernel's work, not the daemon's).
# Writes bench/results/containers-<date>.md.

set -euo pipefail

ROUNDS=${ROUNDS:-10}
EXTRA=${EXTRA:-5}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
BERTH=${BERTH:-${CARGO_TARGET_DIR:-$REPO/target}/debug/berth}
RESULTS_DIR="$BENCH_DIR/results"

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() { printf 'containers.sh: error: %s\n' "$*" >&2; exit 1; }

command -v podman >/dev/null || die "podman is missing (apt-get install podman runc)"
[ -x /bin/busybox ] || die "a static busybox is missing (apt-get install busybox-static)"
[ -x "$BERTH" ] || die "no berth binary at $BERTH (cargo build -p berth)"

WORK=$(mktemp -d /tmp/berth-bench-containers-XXXX)
chmod 755 "$WORK"
PODMAN_PID=
UP_PID=
MODE=process
cleanup() {
  if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
    "$BERTH" down -f "$WORK/stack-$MODE/berth.toml" >/dev/null 2>&1 || kill "$UP_PID" 2>/dev/null || true
    wait "$UP_PID" 2>/dev/null || true
  fi
  local left
  left=$(podman ps -aq --filter label=berth.stack=bench-containers 2>/dev/null || true)
  [ -n "$left" ] && podman rm -f -t 0 $left >/dev/null 2>&1 || true
  local tags
  tags=$(podman images --format '{{.Repository}}:{{.Tag}}' --filter reference=berth/bench-containers-web 2>/dev/null || true)
  [ -n "$tags" ] && podman rmi $tags >/dev/null 2>&1 || true
  [ -n "$PODMAN_PID" ] && kill "$PODMAN_PID" 2>/dev/null && wait "$PODMAN_PID" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

SOCKET="$WORK/podman.sock"
podman system service --time=0 "unix://$SOCKET" >/dev/null 2>&1 &
PODMAN_PID=$!
for _ in $(seq 200); do [ -S "$SOCKET" ] && break; sleep 0.05; done
[ -S "$SOCKET" ] || die "podman's API socket did not appear"

APP="$WORK/app"
mkdir -p "$APP/www"
cp /bin/busybox "$APP/busybox"
echo ok > "$APP/www/health"
cat > "$APP/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
CMD ["/bin/sh", "-c", "exec httpd -f -p \"$PORT\" -h /www"]
EOF

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
EDGE_PORT=$(free_port)
ADMIN_PORT=$(free_port)

spec() { # MODE
  local service
  if [ "$1" = process ]; then
    service='run = "exec ./busybox httpd -f -p $PORT -h www"'
  else
    service='dockerfile = "Dockerfile"'
  fi
  mkdir -p "$WORK/stack-$1"
  cat > "$WORK/stack-$1/berth.toml" <<EOF
[stack]
name = "bench-containers"

[edge]
listen = ["127.0.0.1:$EDGE_PORT"]
admin = "127.0.0.1:$ADMIN_PORT"

[containers]
socket = "$SOCKET"

[service.web]
$service
source = "../app"
port = "auto"
replicas = 1
stop_timeout = "2s"
memory = "256M"
deregistration_delay = "0s"

[service.web.health]
path = "/health"
interval = "1s"
timeout = "1s"
healthy_threshold = 1
grace_period = "1s"
EOF
}

now_ms() { date +%s%3N; }
ps_json() { "$BERTH" ps --json -f "$WORK/stack-$MODE/berth.toml"; }
replica_field() { # REPLICA FIELD
  ps_json | python3 -c "import json,sys
for r in json.load(sys.stdin):
    if r['replica'] == '$1' and r.get('$2') is not None: print(r['$2'])"
}
count_replicas() { ps_json | python3 -c "import json,sys; print(len(json.load(sys.stdin)))"; }
count_healthy() { ps_json | python3 -c "import json,sys; print(sum(r['health']=='healthy' for r in json.load(sys.stdin)))"; }
wait_count() { # N
  for _ in $(seq 600); do [ "$(count_replicas)" = "$1" ] && return 0; sleep 0.05; done
  die "web did not reach $1 replicas"
}
wait_healthy() { # N
  for _ in $(seq 600); do [ "$(count_healthy)" = "$1" ] && return 0; sleep 0.05; done
  ps_json >&2; die "web did not reach $1 healthy replicas"
}
pss_kib() { # PID...: the sum of their PSS
  local total=0 kib
  for pid in "$@"; do
    kib=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}
descendants() { # PID: it and all its descendants
  echo "$1"
  for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do descendants "$child"; done
}
cgroup_kib() { # PID: memory charged to its memory control group (v1), in KiB
  local path
  path=$(awk -F: '$2 == "memory" {print $3}' "/proc/$1/cgroup")
  if [ -r "/sys/fs/cgroup/memory$path/memory.usage_in_bytes" ]; then
    echo $(( $(cat "/sys/fs/cgroup/memory$path/memory.usage_in_bytes") / 1024 ))
  else
    echo 0
  fi
}

declare -A START_MS MEDIAN P90 PSS CGROUP
measure() { # MODE
  local mode=$1
  MODE=$mode
  log "$mode: berth up"
  spec "$mode"
  (cd "$WORK/stack-$MODE" && "$BERTH" up -f berth.toml >"$WORK/up-$mode.log" 2>&1) &
  UP_PID=$!
  for _ in $(seq 1200); do grep -q "is up" "$WORK/up-$mode.log" && break; sleep 0.05; done
  grep -q "is up" "$WORK/up-$mode.log" || { cat "$WORK/up-$mode.log" >&2; die "berth up did not come up"; }
  wait_healthy 1

  local times=()
  for round in $(seq "$ROUNDS"); do
    local t0 port t1
    t0=$(now_ms)
    "$BERTH" scale web 2 -f "$WORK/stack-$MODE/berth.toml" >/dev/null
    port=
    while :; do
      [ -z "$port" ] && port=$(replica_field web.2 port || true)
      if [ -n "$port" ] && curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$port/health"; then break; fi
      [ $(( $(now_ms) - t0 )) -gt 30000 ] && die "$mode: web.2 did not answer within 30s"
      sleep 0.01
    done
    t1=$(now_ms)
    times+=($((t1 - t0)))
    "$BERTH" scale web 1 -f "$WORK/stack-$MODE/berth.toml" >/dev/null
    wait_count 1
    log "$mode: round $round: $((t1 - t0)) ms"
  done
  START_MS[$mode]="${times[*]}"
  MEDIAN[$mode]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  P90[$mode]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {i=int(NR*0.9+0.5); if (i<1) i=1; print a[i]}')

  log "$mode: memory of $EXTRA more replicas"
  "$BERTH" scale web $((EXTRA + 1)) -f "$WORK/stack-$MODE/berth.toml" >/dev/null
  wait_healthy $((EXTRA + 1))
  sleep 2
  local total=0 charged=0 n=0
  for i in $(seq 2 $((EXTRA + 1))); do
    local pid parent pids
    pid=$(replica_field "web.$i" pid)
    parent=$(awk '{print $4}' "/proc/$pid/stat")   # the shim, or the container's conmon
    pids=$(descendants "$parent")
    total=$((total + $(pss_kib $pids)))
    charged=$((charged + $(cgroup_kib "$pid")))
    n=$((n + 1))
  done
  PSS[$mode]=$((total / n))
  CGROUP[$mode]=$((charged / n))

  "$BERTH" down -f "$WORK/stack-$MODE/berth.toml" >/dev/null
  wait "$UP_PID" 2>/dev/null || true
  UP_PID=
}

measure process
measure container

DATE=$(date -u +%Y-%m-%d)
mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/containers-$DATE.md"
{
  echo "# Container vs process replicas ($DATE)"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -r);"
  echo "$(podman --version) with $(runc --version | head -1), cgroupfs; berth: $BERTH."
  echo "App: busybox httpd serving a folder. $ROUNDS start rounds, $EXTRA extra replicas for memory."
  echo
  echo "| | process | container |"
  echo "|---|---|---|"
  echo "| start: \`berth scale\` → the replica's port answers, median | ${MEDIAN[process]} ms | ${MEDIAN[container]} ms |"
  echo "| start, p90 | ${P90[process]} ms | ${P90[container]} ms |"
  echo "| memory per replica, PSS of its processes | ${PSS[process]} KiB | ${PSS[container]} KiB |"
  echo "| memory per replica, charged to its memory cgroup | ${CGROUP[process]} KiB | ${CGROUP[container]} KiB |"
  echo
  echo "Start times (ms), process: ${START_MS[process]}"
  echo
  echo "Start times (ms), container: ${START_MS[container]}"
} > "$OUT"
cat "$OUT"
