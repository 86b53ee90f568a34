#!/usr/bin/env bash
# Deploy benchmark: for each strategy, 4 replicas of the example app (examples/hello/app.py)
# behind Berth's edge, under a steady loopback load (a small Python client, 150 requests/s of
# `GET /whoami` over keep-alive connections, recording which release answered every request);
# `berth deploy` of a new release (APP_VERSION changes); measured: the time from `berth deploy`
# to 100% of the traffic on the new release, the failed requests, and for the rolling deploy
# the overhead over the sum of health-check time (each new replica's start → healthy, from the
# daemon's log).
#
#   bench/deploy.sh                         # all cases, release build
#   CASES="rolling-1 canary" bench/deploy.sh
#   BERTH=target/debug/berth bench/deploy.sh
#
# Environment: CASES (default "rolling-1 rolling bluegreen canary"; rolling-1 is max_surge = 1,
# one replica at a time, rolling is the default max_surge 100%), REPLICAS (4), RATE (150
# requests/s), THREADS (8), WARMUP (3 s of load before the deploy), AFTER (2 s of load after it),
# EDGE_PORT (18180), ADMIN_PORT (19190), BERTH (a binary to use instead of building),
# SKIP_BUILD=1 (use the existing release binary), KEEP_WORK=1.
#
# Writes bench/results/deploy-<date>.txt. Cleans up everything it started, also on failure.

set -euo pipefail

CASES=${CASES:-"rolling-1 rolling bluegreen canary"}
REPLICAS=${REPLICAS:-4}
RATE=${RATE:-150}
THREADS=${THREADS:-8}
WARMUP=${WARMUP:-3}
AFTER=${AFTER:-2}
EDGE_PORT=${EDGE_PORT:-18180}
ADMIN_PORT=${ADMIN_PORT:-19190}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
RESULTS_DIR="$BENCH_DIR/results"

# The script's stderr, kept on fd 3 for messages of the cleanup trap.
exec 3>&2
log() { printf '\033[1m== %s\033[0m\n' "$*" >&3; }
die() { printf 'deploy.sh: error: %s\n' "$*" >&3; exit 1; }

# ---------------------------------------------------------------------------------------------
# The binary.
# ---------------------------------------------------------------------------------------------
build_berth() {
    if [ -n "${BERTH:-}" ]; then
        BERTH=$(cd "$(dirname "$BERTH")" && pwd)/$(basename "$BERTH")
        [ -x "$BERTH" ] || die "no binary at $BERTH"
        log "using $BERTH (BERTH=...)"
        return
    fi
    local target_dir=${CARGO_TARGET_DIR:-$REPO/target}
    BERTH="$target_dir/release/berth"
    if [ "${SKIP_BUILD:-0}" = 1 ] && [ -x "$BERTH" ]; then
        log "using existing $BERTH (SKIP_BUILD=1)"
        return
    fi
    log "building Berth (cargo build --release -p berth)"
    (cd "$REPO" && cargo build --release -p berth)
    [ -x "$BERTH" ] || die "no binary at $BERTH"
}

# ---------------------------------------------------------------------------------------------
# Cleanup: whatever was started, on any exit.
# ---------------------------------------------------------------------------------------------
WORK=""
STACK=""
UP_PID=""
LOAD_PID=""
BERTH=${BERTH:-}

stop_pid() { # pid [grace seconds]
    local pid=$1 grace=${2:-5} i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

stop_stack() {
    if [ -n "$LOAD_PID" ]; then
        [ -n "$STACK" ] && touch "$STACK/stop-load"
        stop_pid "$LOAD_PID" 20
        LOAD_PID=""
    fi
    if [ -n "$STACK" ] && [ -n "$BERTH" ] && [ -f "$STACK/berth.toml" ] && [ -n "$UP_PID" ]; then
        timeout 60 "$BERTH" down -f "$STACK/berth.toml" >/dev/null 2>&1 || true
    fi
    if [ -n "$UP_PID" ]; then
        local i
        for ((i = 0; i < 150; i++)); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
        stop_pid "$UP_PID" 10
        UP_PID=""
    fi
    # Should `down` have failed: the shims, apps and edge of this stack (their command line or
    # working folder is inside the stack folder), by pid.
    if [ -n "$STACK" ] && [ -d "$STACK" ]; then
        local pid cwd
        for pid in $(ls /proc | grep -E '^[0-9]+$'); do
            [ "$pid" = $$ ] && continue
            cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null || true)
            if { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$STACK/" ||
                [ "$cwd" = "$STACK" ] || [ "${cwd#"$STACK/"}" != "$cwd" ]; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    log "cleaning up"
    stop_stack
    if [ -n "$WORK" ] && [ -d "$WORK" ] && [ "${KEEP_WORK:-0}" != 1 ]; then
        rm -rf "$WORK"
    elif [ -n "$WORK" ]; then
        echo "kept $WORK" >&3
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# The stack of one case.
# ---------------------------------------------------------------------------------------------
deploy_table() { # case
    case $1 in
    rolling-1) printf 'strategy = "rolling"\nmax_surge = 1\n' ;;
    rolling) printf 'strategy = "rolling"\n' ;;
    bluegreen) printf 'strategy = "bluegreen"\ntermination_wait = "3s"\n' ;;
    canary) printf 'strategy = "canary"\nsteps = [{ weight = 10, pause = "4s" }, { weight = 50, pause = "4s" }]\ntermination_wait = "3s"\n' ;;
    *) die "unknown case $1 (rolling-1, rolling, bluegreen, canary)" ;;
    esac
}

write_spec() { # case version
    cat >"$STACK/berth.toml" <<EOF
[stack]
name = "deploybench"

[edge]
listen = ["127.0.0.1:$EDGE_PORT"]
admin = "127.0.0.1:$ADMIN_PORT"

[service.web]
run = "python3 app.py"
source = "app"
port = "auto"
replicas = $REPLICAS
stop_timeout = "5s"
env = { APP_VERSION = "$2" }

[service.web.health]
path = "/health"
interval = "1s"
timeout = "1s"
healthy_threshold = 1
unhealthy_threshold = 2
grace_period = "5s"

[service.web.deploy]
$(deploy_table "$1")
[[service.web.deploy.check]]
path = "/health"
status = 200

[service.web.deploy.analysis]
window = "3s"
min_requests = 20

[[route]]
path = "/"
service = "web"
EOF
}

start_stack() { # case
    STACK="$WORK/$1"
    mkdir -p "$STACK/app"
    cp "$REPO/examples/hello/app.py" "$REPO/examples/hello/pg.py" "$STACK/app/"
    write_spec "$1" 1
    "$BERTH" validate -f "$STACK/berth.toml" >/dev/null
    BERTH_LOG=info "$BERTH" up -f "$STACK/berth.toml" >"$STACK/up.out" 2>"$STACK/up.log" &
    UP_PID=$!
    local i
    for ((i = 0; i < 120; i++)); do
        kill -0 "$UP_PID" 2>/dev/null || { cat "$STACK/up.out" "$STACK/up.log" >&2; die "berth up exited"; }
        if "$BERTH" ps --json -f "$STACK/berth.toml" 2>/dev/null | python3 2>/dev/null -c '
import json, sys
rs = [r for r in json.load(sys.stdin) if r["service"] == "web"]
sys.exit(0 if len(rs) == int(sys.argv[1]) and all(r["health"] == "healthy" for r in rs) else 1)' "$REPLICAS" &&
            curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$EDGE_PORT/whoami"; then
            return 0
        fi
        sleep 0.5
    done
    cat "$STACK/up.log" >&2
    die "web did not reach $REPLICAS healthy replicas in 60 s"
}

# The load client: writes "sent_ms took_ms status release" lines to $STACK/load.txt when stopped.
start_load() {
    cat >"$WORK/loadgen.py" <<'PY'
import http.client, json, os, sys, threading, time

port, rate, nthreads, out, stop_file = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
interval = nthreads / rate
start = time.monotonic()
stop = threading.Event()
results = [[] for _ in range(nthreads)]

def worker(n):
    conn, rows = None, results[n]
    next_at = start + interval * n / nthreads
    while not stop.is_set() and time.monotonic() - start < 600:
        now = time.monotonic()
        if next_at > now:
            time.sleep(next_at - now)
        next_at = max(next_at + interval, time.monotonic() - interval)
        sent, t0, status, release = time.time(), time.monotonic(), 0, "-"
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/whoami", headers={"User-Agent": "berth-bench-load"})
            resp = conn.getresponse()
            body = resp.read()
            status = resp.status
            if status == 200:
                try:
                    release = json.loads(body).get("release", "-")
                except ValueError:
                    pass
            if resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            conn = None
        rows.append((int(sent * 1000), (time.monotonic() - t0) * 1000, status, release))

threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(nthreads)]
for t in threads:
    t.start()
while not os.path.exists(stop_file) and time.monotonic() - start < 600:
    time.sleep(0.05)
stop.set()
for t in threads:
    t.join(timeout=15)
with open(out + ".tmp", "w") as f:
    for sent, took, status, release in sorted(r for rows in results for r in rows):
        f.write(f"{sent} {took:.2f} {status} {release}\n")
os.replace(out + ".tmp", out)
PY
    rm -f "$STACK/stop-load"
    python3 "$WORK/loadgen.py" "$EDGE_PORT" "$RATE" "$THREADS" "$STACK/load.txt" "$STACK/stop-load" &
    LOAD_PID=$!
}

stop_load() {
    touch "$STACK/stop-load"
    local i
    for ((i = 0; i < 300; i++)); do kill -0 "$LOAD_PID" 2>/dev/null || break; sleep 0.1; done
    stop_pid "$LOAD_PID" 5
    LOAD_PID=""
    [ -f "$STACK/load.txt" ] || die "the load client wrote nothing"
}

now_ms() { date +%s%3N; }

# Prints one result line "case|to100|deploy|rollout|health_sum|health_max|overhead|requests|failed|exit|state"
# from the load record, the deploy record and the daemon's log.
analyse() { # case t0 t1 exit
    python3 - "$STACK/load.txt" "$STACK/record.json" "$STACK/up.log" "$1" "$2" "$3" "$4" <<'PY'
import json, re, sys
from datetime import datetime

load_file, record_file, log_file, case, t0, t1, code = sys.argv[1:8]
t0, t1 = int(t0), int(t1)
rows = []
for line in open(load_file):
    sent, took, status, release = line.split()
    rows.append((int(sent), float(took), int(status), release))
try:
    record = json.load(open(record_file))
except ValueError:
    record = {}
new = record.get("to_release") or "?"
state = record.get("state", "?")
failed = sum(1 for r in rows if r[2] != 200)

# 100% on the new release: the first request after the last one (sent after t0) that it did not answer.
after = [r for r in rows if r[0] >= t0]
last_other = max((i for i, r in enumerate(after) if r[3] != new), default=None)
if last_other is None:
    to100 = (after[0][0] - t0) if after else None
elif last_other + 1 < len(after):
    to100 = after[last_other + 1][0] - t0
else:
    to100 = None

steps = record.get("steps", [])
def step(prefix):
    return next((s for s in steps if s["name"].startswith(prefix)), None)
rollout = None
if case.startswith("rolling"):
    s = step("rolling")
    if s and s.get("finished_ms"):
        rollout = s["finished_ms"] - s["started_ms"]
else:
    a, b = step("start "), step("switch all traffic")
    if a and b and b.get("finished_ms"):
        rollout = b["finished_ms"] - a["started_ms"]

# Each new replica's start → healthy, from the daemon's log.
def ts(line):
    stamp = line.split()[0].rstrip("Z")
    return datetime.fromisoformat(stamp[:26]).timestamp() * 1000
started, healthy = {}, {}
for line in open(log_file):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.search(r" (web\.\d+): started pid \d+ port \d+ release (\S+)", line)
    if m and m.group(2) == new:
        started[m.group(1)] = ts(line)
        continue
    m = re.search(r" (web\.\d+): healthy$", line.rstrip())
    if m and m.group(1) in started and m.group(1) not in healthy:
        healthy[m.group(1)] = ts(line)
checks = [healthy[k] - started[k] for k in started if k in healthy]
hsum = sum(checks) if checks else None
hmax = max(checks) if checks else None
overhead = None
if rollout is not None and hsum is not None:
    overhead = rollout - (hsum if case == "rolling-1" else hmax)

fmt = lambda v: "-" if v is None else f"{v / 1000:.2f}"
print("|".join([case, fmt(to100), fmt(t1 - t0), fmt(rollout), fmt(hsum), fmt(hmax),
                fmt(overhead), str(len(rows)), str(failed), code, state,
                str(len(checks))]))
PY
}

# ---------------------------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------------------------
command -v python3 >/dev/null || die "python3 is needed"
command -v curl >/dev/null || die "curl is needed"
build_berth
for port in $EDGE_PORT $ADMIN_PORT; do
    if (exec 4<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then die "port $port is already in use"; fi
done
WORK=$(mktemp -d /tmp/berth-deploy-bench.XXXXXX)
chmod 755 "$WORK"

ROWS=()
for case_name in $CASES; do
    deploy_table "$case_name" >/dev/null
    log "case $case_name: $REPLICAS replicas, $RATE requests/s"
    start_stack "$case_name"
    start_load
    sleep "$WARMUP"
    write_spec "$case_name" 2
    t0=$(now_ms)
    code=0
    "$BERTH" deploy web --json -f "$STACK/berth.toml" >"$STACK/record.json" 2>"$STACK/deploy.txt" || code=$?
    t1=$(now_ms)
    sed 's/^/    /' "$STACK/deploy.txt" >&2
    sleep "$AFTER"
    stop_load
    row=$(analyse "$case_name" "$t0" "$t1" "$code")
    echo "    $row" >&2
    ROWS+=("$row")
    cp "$STACK/deploy.txt" "$WORK/deploy-$case_name.txt"
    stop_stack
    sleep 1
done

# ---------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
STAMP=$(date +%Y-%m-%d-%H%M)
REPORT="$RESULTS_DIR/deploy-$STAMP.txt"
BERTH_REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
BERTH_DIRTY=$(cd "$REPO" && [ -n "$(git status --porcelain -- crates 2>/dev/null)" ] && echo " (crates modified)" || true)
{
    echo "Deploy benchmark, $(date '+%Y-%m-%d %H:%M %Z')"
    echo
    echo "Machine: $(nproc) cores ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)"
    echo "Berth: git $BERTH_REV$BERTH_DIRTY, $BERTH"
    echo "Stack: $REPLICAS replicas of examples/hello/app.py behind the edge; health checks every 1 s while starting, healthy_threshold 1"
    echo "Load: $RATE requests/s of GET /whoami from $THREADS keep-alive threads (Python), ${WARMUP}s before the deploy, ${AFTER}s after it; every response recorded"
    echo "Deploy: APP_VERSION 1 -> 2; one /health smoke check; analysis window 3 s; bluegreen/canary termination_wait 3 s; canary steps 10% 4 s, 50% 4 s"
    echo
    echo "to 100%:  from \`berth deploy\` to the first request after which every request was answered by the new release"
    echo "deploy:   wall time of \`berth deploy\` (includes the 3 s analysis window after the new release takes traffic)"
    echo "rollout:  rolling: the rolling step; bluegreen/canary: from starting the new group to the switch"
    echo "hc sum / hc max: each new replica's start -> healthy (daemon log), summed / the longest"
    echo "overhead: rolling-1 (one at a time): rollout - hc sum (the rolling overhead over the sum of health-check time);"
    echo "          rolling (max_surge 100%, all at once): rollout - hc max; bluegreen/canary: rollout - hc max (includes canary pauses)"
    echo
    printf '%-10s %8s %8s %8s %8s %8s %9s %9s %7s %5s %-12s\n' case "to 100%" deploy rollout "hc sum" "hc max" overhead requests failed exit state
    for row in "${ROWS[@]}"; do
        IFS='|' read -r c a b r s m o n f e st k <<<"$row"
        printf '%-10s %7ss %7ss %7ss %7ss %7ss %8ss %9s %7s %5s %-12s\n' "$c" "$a" "$b" "$r" "$s" "$m" "$o" "$n" "$f" "$e" "$st"
    done
    echo
    for case_name in $CASES; do
        echo "--- berth deploy ($case_name) ---"
        cat "$WORK/deploy-$case_name.txt"
        echo
    done
} >"$REPORT"
echo
sed -n '/^case /,/^$/p' "$REPORT"
echo "report: $REPORT"
