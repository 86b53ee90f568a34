#!/usr/bin/env bash
# Edge benchmark: Berth's edge against nginx and HAProxy as reverse proxies, all in front of the
# same fixed nginx backend, on loopback. Then the edge's memory with 10,000 idle keep-alive
# client connections.
#
#   bench/edge.sh                      # 20 s per run
#   DURATION=5s bench/edge.sh          # a quick run
#
# Environment: DURATION (wrk -d, default 20s), WARMUP (default 2s, not measured), THREADS (wrk's
# threads; default: one per load core when pinned, else 2: two wrk threads on one core take
# turns in time slices of milliseconds, which shows up as the proxy's p99),
# CONNECTIONS (64), IDLE_CONNS (10000), SKIP_BUILD=1 (use the existing release binary),
# RSS_COMPARE=0 (skip the idle-connection RSS of nginx and HAProxy, measured for comparison),
# BERTH_BIN=path (measure that berth binary instead of building this checkout),
# PATHS ("/ /1k /100k": the cases to run, for a quick look at one), IDLE_CONNS=0 (no memory run),
# COMPRESS=0 (skip the compression rows: a 20 KiB JSON answer with Accept-Encoding, nginx
# `gzip on` level 6 against Berth's gzip and brotli),
# PIN (1: pin the proxy under test to cores of its own with `taskset`, the backend and wrk to the
# others; default 1 on machines with at least 2 cores), PROXY_CORES / LOAD_CORES (taskset lists;
# default: the last half of the cores, at most 4, for the proxy, the rest for the load),
# WORKERS (each proxy's workers/threads; default: as many as PROXY_CORES has, else the cores).
#
# Ports: backend auto (Berth's $PORT), edge 18080 (admin 19090, HTTPS 18443), nginx 18081 (HTTPS
# 18444), HAProxy 18082; each can be moved (EDGE_PORT, ADMIN_PORT, EDGE_TLS_PORT, NGINX_PORT,
# NGINX_TLS_PORT, HAPROXY_PORT) when another run holds them. HTTPS uses a self-signed P-256 certificate made for the run; the WAF-off
# rows go to /nowaf paths, where a [[waf.override]] turns every group off. HTTPS=0 skips HTTPS.
# The cache-hit row (CACHE=0 skips it): /cached/1k, a 1 KiB answer with max-age=3600, kept by
# Berth's [cache] and by nginx's proxy_cache on the same rule, measured once both hold it.
# Writes bench/results/edge-<date>.md. Cleans up everything it started, also on failure.

set -euo pipefail

DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
IDLE_CONNS=${IDLE_CONNS:-10000}
RSS_COMPARE=${RSS_COMPARE:-1}
PATHS=${PATHS:-/ /1k /100k}
CORES=$(nproc)
if [ "$CORES" -ge 2 ]; then PIN=${PIN:-1}; else PIN=0; fi
if [ "$PIN" = 1 ]; then
    # The proxy gets the last half of the cores (at most 4); wrk and the backend the rest.
    proxy_n=$((CORES / 2 < 4 ? CORES / 2 : 4))
    PROXY_CORES=${PROXY_CORES:-$((CORES - proxy_n))-$((CORES - 1))}
    LOAD_CORES=${LOAD_CORES:-0-$((CORES - proxy_n - 1))}
    # taskset lists to a count of cores ("1", "4-7", "0,2").
    count_cores() { python3 -c '
import sys
n = 0
for part in sys.argv[1].split(","):
    a, _, b = part.partition("-")
    n += int(b or a) - int(a) + 1
print(n)' "$1"; }
    WORKERS=${WORKERS:-$(count_cores "$PROXY_CORES")}
    THREADS=${THREADS:-$(count_cores "$LOAD_CORES")}
else
    WORKERS=${WORKERS:-$CORES}
    THREADS=${THREADS:-2}
fi
EDGE_PORT=${EDGE_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19090}
NGINX_PORT=${NGINX_PORT:-18081}
HAPROXY_PORT=${HAPROXY_PORT:-18082}
EDGE_TLS_PORT=${EDGE_TLS_PORT:-18443}
NGINX_TLS_PORT=${NGINX_TLS_PORT:-18444}
HTTPS=${HTTPS:-1}
WRK_EXTRA=()

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
TEMPLATES="$BENCH_DIR/edge"
RESULTS_DIR="$BENCH_DIR/results"
CLK_TCK=$(getconf CLK_TCK)

# The script's stderr, kept on fd 3: messages of the cleanup trap must not follow the redirections
# in force where it fires.
exec 3>&2
log() { printf '\033[1m== %s\033[0m\n' "$*" >&3; }
die() { printf 'edge.sh: error: %s\n' "$*" >&3; exit 1; }

# ---------------------------------------------------------------------------------------------
# 1. Tools and the build.
# ---------------------------------------------------------------------------------------------
install_tools() {
    local missing=()
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
    # Packages start their own daemons on Debian; ours are separate instances on other ports.
    export PATH="$PATH:/usr/sbin:/sbin"
}

build_berth() {
    local target_dir=${CARGO_TARGET_DIR:-$REPO/target}
    BERTH="$target_dir/release/berth"
    if [ -n "${BERTH_BIN:-}" ]; then
        # Another build to compare (e.g. the commit before a change): used as it is.
        BERTH="$BERTH_BIN"
        [ -x "$BERTH" ] || die "no binary at $BERTH"
        log "using $BERTH (BERTH_BIN)"
        return
    fi
    if [ "${SKIP_BUILD:-0}" = 1 ] && [ -x "$BERTH" ]; then
        log "using existing $BERTH (SKIP_BUILD=1)"
        return
    fi
    log "building Berth (cargo build --release)"
    (cd "$REPO" && cargo build --release)
    [ -x "$BERTH" ] || die "no binary at $BERTH"
}

# ---------------------------------------------------------------------------------------------
# Cleanup: whatever was started, on any exit.
# ---------------------------------------------------------------------------------------------
WORK=""
STACK=""
UP_PID=""
NGINX_PID=""
HAPROXY_PID=""
BG_PID=""
BERTH=""

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

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    log "cleaning up"
    [ -n "$BG_PID" ] && kill -TERM "$BG_PID" 2>/dev/null
    if [ -n "$STACK" ] && [ -n "$BERTH" ] && [ -f "$STACK/berth.toml" ]; then
        timeout 60 "$BERTH" down -f "$STACK/berth.toml" >/dev/null 2>&1
    fi
    if [ -n "$UP_PID" ]; then
        local i
        for ((i = 0; i < 100; i++)); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
        stop_pid "$UP_PID" 10
    fi
    # The edge and the backend are Berth's; should `down` have failed, stop them by pid.
    [ -n "${EDGE_PID:-}" ] && stop_pid "$EDGE_PID" 5
    [ -n "${BACKEND_PID:-}" ] && stop_pid "$BACKEND_PID" 5
    stop_pid "$NGINX_PID" 5
    stop_pid "$HAPROXY_PID" 5
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
# Helpers: CPU accounting, wrk output parsing.
# ---------------------------------------------------------------------------------------------

# Sum of utime+stime (clock ticks) of the given pids and their direct children.
cpu_ticks() {
    local total=0 pid all=() c
    for pid in "$@"; do
        [ -n "$pid" ] || continue
        all+=("$pid")
        for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do all+=("$c"); done
    done
    for pid in "${all[@]}"; do
        # Fields after the ")" that ends comm: state is $1, utime $12, stime $13.
        local rest
        rest=$(sed 's/^.*) //' /proc/"$pid"/stat 2>/dev/null) || continue
        [ -n "$rest" ] || continue
        total=$((total + $(awk '{print $12 + $13}' <<<"$rest")))
    done
    echo "$total"
}

# Idle, softirq and total ticks of the whole machine (all cores).
machine_ticks() { awk '/^cpu /{idle=$5+$6; t=0; for(i=2;i<=9;i++) t+=$i; print idle, $8, t}' /proc/stat; }

# "1.23ms" / "456.00us" / "1.01s" -> milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.2f", n }'
}

# Runs a command in the background and waits for it: unlike a foreground command, `wait` returns
# at once on Ctrl-C so the trap cleans up (wrk exits 0 on SIGINT, which a foreground wait ignores).
run_bg() {
    "$@" &
    BG_PID=$!
    wait "$BG_PID" || true
    BG_PID=""
}

# "0m1.234s" -> seconds.
bash_time_s() { awk -v t="$1" 'BEGIN { split(t, a, "m"); sub(/s$/, "", a[2]); print a[1] * 60 + a[2] }'; }

# Runs wrk; sets W_RPS W_P50 W_P99 W_ERRORS and the CPU shares W_PROXY_CPU W_BACKEND_CPU
# W_WRK_CPU W_SOFTIRQ W_OTHER_CPU W_IDLE (100% = one core; the machine has $(nproc) cores).
run_wrk() { # name url proxy-pids...
    local name=$1 url=$2; shift 2
    local case_name=${url#*://*/}
    case_name=${case_name//\//_}
    local out="$WORK/wrk-$name-${case_name:-root}.txt"
    local on=()
    [ "$PIN" = 1 ] && on=(taskset -c "$LOAD_CORES")
    run_bg "${on[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "${WRK_EXTRA[@]}" "$url" >/dev/null 2>&1
    local p0 b0 m0 p1 b1 m1 t0 t1
    p0=$(cpu_ticks "$@"); b0=$(cpu_ticks "$BACKEND_PID"); m0=$(machine_ticks); t0=$(date +%s.%N)
    # The shell's `times` (a builtin: no fork) adds up the CPU time of the children it reaped;
    # between the two snapshots that is wrk alone.
    times >"$WORK/times.0"
    run_bg "${on[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${WRK_EXTRA[@]}" "$url" >"$out" 2>&1
    times >"$WORK/times.1"
    p1=$(cpu_ticks "$@"); b1=$(cpu_ticks "$BACKEND_PID"); m1=$(machine_ticks); t1=$(date +%s.%N)
    W_RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    W_P50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    W_P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    local non2xx sock
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    sock=$(sed -n 's/^ *Socket errors: *//p' "$out")
    W_ERRORS=""
    [ -n "$non2xx" ] && W_ERRORS="non-2xx: $non2xx"
    [ -n "$sock" ] && W_ERRORS="${W_ERRORS:+$W_ERRORS; }socket: $sock"
    [ -n "$W_ERRORS" ] || W_ERRORS="none"
    local secs wrk_s proxy backend busy idle
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')
    local c0 c1
    read -r -a c0 < <(sed -n 2p "$WORK/times.0")
    read -r -a c1 < <(sed -n 2p "$WORK/times.1")
    wrk_s=$(awk -v a="$(bash_time_s "${c0[0]}")" -v b="$(bash_time_s "${c0[1]}")" \
        -v c="$(bash_time_s "${c1[0]}")" -v d="$(bash_time_s "${c1[1]}")" 'BEGIN{print (c + d) - (a + b)}')
    proxy=$(awk -v a="$p0" -v b="$p1" -v s="$secs" -v h="$CLK_TCK" 'BEGIN{print (b-a)/h/s*100}')
    backend=$(awk -v a="$b0" -v b="$b1" -v s="$secs" -v h="$CLK_TCK" 'BEGIN{print (b-a)/h/s*100}')
    local softirq
    read -r busy idle softirq < <(awk -v a="$m0" -v b="$m1" -v s="$secs" -v h="$CLK_TCK" 'BEGIN{
        split(a,x," "); split(b,y," ");
        idle = (y[1]-x[1])/h/s*100; busy = ((y[3]-x[3]) - (y[1]-x[1]))/h/s*100;
        print busy, idle, (y[2]-x[2])/h/s*100 }')
    W_WRK_CPU=$(awk -v w="$wrk_s" -v s="$secs" 'BEGIN{printf "%.0f%%", w/s*100}')
    W_BACKEND_CPU=$(printf '%.0f%%' "$backend")
    if [ $# -gt 0 ]; then W_PROXY_CPU=$(printf '%.0f%%' "$proxy"); else W_PROXY_CPU="-"; fi
    # Requests per second of proxy CPU: the per-core efficiency.
    W_PER_CPU=$(awk -v r="${W_RPS:-0}" -v p="$proxy" -v n=$# 'BEGIN{ if (n > 0 && p > 0) printf "%.0f", r / (p / 100); else print "-" }')
    W_SOFTIRQ=$(printf '%.0f%%' "$softirq")
    W_OTHER_CPU=$(awk -v b="$busy" -v p="$proxy" -v k="$backend" -v w="$wrk_s" -v s="$secs" -v q="$softirq" \
        'BEGIN{o = b - q - p - k - w/s*100; if (o < 0) o = 0; printf "%.0f%%", o}')
    W_IDLE=$(printf '%.0f%%' "$idle")
    if [ -z "$W_RPS" ]; then
        echo "wrk failed against $url:" >&2
        cat "$out" >&2
        W_RPS=0 W_P50=- W_P99=-
    fi
}

# ---------------------------------------------------------------------------------------------
# 2. The stack: one nginx backend behind Berth's edge.
# ---------------------------------------------------------------------------------------------
start_stack() {
    STACK="$WORK/stack"
    mkdir -p "$STACK/html"
    cp "$TEMPLATES/backend-nginx.conf.tmpl" "$TEMPLATES/backend-start.sh" "$STACK/"
    sed -e "s|@EDGE_PORT@|$EDGE_PORT|g" -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" -e "s|@WORKERS@|$WORKERS|g" \
        "$TEMPLATES/berth.toml.tmpl" >"$STACK/berth.toml"
    # The certificate of the HTTPS rows, for Berth and nginx alike.
    mkdir -p "$WORK/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost \
        -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null
    chmod 600 "$WORK/tls/key.pem"
    sed -i -e "s|@TLS_PORT@|$EDGE_TLS_PORT|g" -e "s|@CERT@|$WORK/tls/cert.pem|g" -e "s|@KEY@|$WORK/tls/key.pem|g" \
        "$STACK/berth.toml"
    head -c 1024 /dev/zero | tr '\0' 'a' >"$STACK/html/1k"
    head -c 102400 /dev/zero | tr '\0' 'b' >"$STACK/html/100k"
    # ~20 KiB of JSON such as an API or a shop page sends: a catalogue of products.
    python3 -c '
import json, random
r = random.Random(12)
words = "red blue green large small cotton wool steel oak classic modern slim shirt table lamp chair mug bag".split()
items = []
while len(json.dumps(items)) < 20300:
    i = len(items)
    items.append({"id": 1000 + i, "sku": "SKU-%06d" % r.randrange(10**6),
                  "name": " ".join(r.choice(words) for _ in range(3)).title(),
                  "price": round(r.uniform(3, 300), 2), "stock": r.randrange(0, 500),
                  "url": "/product/%d" % (1000 + i), "tags": r.sample(words, 3)})
print(json.dumps({"items": items}))' | head -c 20480 >"$STACK/html/page.json"
    "$BERTH" validate -f "$STACK/berth.toml" >/dev/null

    log "berth up (edge on 127.0.0.1:$EDGE_PORT)"
    # The edge inherits this limit: it must hold 10,000 client connections.
    ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    "$BERTH" up -f "$STACK/berth.toml" >"$WORK/berth-up.log" 2>&1 &
    UP_PID=$!

    local status="" i
    for ((i = 0; i < 120; i++)); do
        kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/berth-up.log" >&2; die "berth up exited"; }
        status=$("$BERTH" status --json -f "$STACK/berth.toml" 2>/dev/null) || status=""
        if [ -n "$status" ] && python3 -c '
import json, sys
s = json.loads(sys.argv[1])
ok = s.get("edge") and any(r["service"] == "backend" and r["health"] == "healthy" and r.get("port")
                           for r in s["replicas"])
sys.exit(0 if ok else 1)' "$status"; then
            break
        fi
        status=""
        sleep 0.5
    done
    [ -n "$status" ] || { cat "$WORK/berth-up.log" >&2; die "the backend did not become healthy in 60s"; }
    echo "$status" >"$WORK/status.json"
    read -r BACKEND_PORT BACKEND_PID EDGE_PID < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
r = next(r for r in s["replicas"] if r["service"] == "backend" and r["health"] == "healthy")
print(r["port"], r["pid"] or "", s["edge"]["pid"])' "$WORK/status.json")
    EDGE_LISTEN=$(python3 -c 'import json,sys; print(",".join(json.load(open(sys.argv[1]))["edge"]["listen"]))' "$WORK/status.json")
    EDGE_DIR="$STACK/.berth/default/edge"
    echo "backend on 127.0.0.1:$BACKEND_PORT (pid $BACKEND_PID), edge pid $EDGE_PID on $EDGE_LISTEN" >&2
}

# ---------------------------------------------------------------------------------------------
# 3. nginx and HAProxy as proxies to the same backend.
# ---------------------------------------------------------------------------------------------
render() { # template output port
    sed -e "s|@PORT@|$3|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" -e "s|@RUN@|$(dirname "$2")|g" -e "s|@WORKERS@|$WORKERS|g" \
        -e "s|@TLS_PORT@|$NGINX_TLS_PORT|g" -e "s|@CERT@|$WORK/tls/cert.pem|g" -e "s|@KEY@|$WORK/tls/key.pem|g" \
        -e "s|@USER@|$(id -un)|g" -e "s|@GROUP@|$(id -gn)|g" "$1" >"$2"
}

wait_port() { # port what
    local i
    for ((i = 0; i < 100; i++)); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    die "$2 is not answering on 127.0.0.1:$1"
}

start_proxies() {
    mkdir -p "$WORK/nginx" "$WORK/haproxy"
    render "$TEMPLATES/proxy-nginx.conf.tmpl" "$WORK/nginx/nginx.conf" "$NGINX_PORT"
    nginx -t -q -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf"
    log "nginx proxy on 127.0.0.1:$NGINX_PORT"
    nginx -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' \
        >"$WORK/nginx/stdout.log" 2>&1 &
    NGINX_PID=$!

    render "$TEMPLATES/haproxy.cfg.tmpl" "$WORK/haproxy/haproxy.cfg" "$HAPROXY_PORT"
    haproxy -c -q -f "$WORK/haproxy/haproxy.cfg"
    log "HAProxy on 127.0.0.1:$HAPROXY_PORT"
    # -db: foreground; the access log goes to stdout, the file below.
    haproxy -db -f "$WORK/haproxy/haproxy.cfg" >"$WORK/haproxy/access.log" 2>"$WORK/haproxy/stderr.log" &
    HAPROXY_PID=$!

    wait_port "$NGINX_PORT" nginx
    wait_port "$HAPROXY_PORT" HAProxy
    wait_port "$EDGE_PORT" "Berth's edge"
    pin_all
}

# Every thread of a process and of its children onto the cores of a taskset list.
pin() { # cores pid...
    local cores=$1 pid c; shift
    for pid in "$@"; do
        [ -n "$pid" ] || continue
        taskset -a -p -c "$cores" "$pid" >/dev/null
        for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do taskset -a -p -c "$cores" "$c" >/dev/null; done
    done
}

# With PIN=1: each proxy on PROXY_CORES, the backend on LOAD_CORES (wrk too: see run_wrk).
pin_all() {
    [ "$PIN" = 1 ] || return 0
    log "pinning: proxies on cores $PROXY_CORES ($WORKERS workers each), backend and wrk on $LOAD_CORES"
    pin "$PROXY_CORES" "$EDGE_PID" "$NGINX_PID" "$HAPROXY_PID"
    pin "$LOAD_CORES" "$BACKEND_PID"
}

# Every target answers every case with the right body before anything is measured.
check_targets() {
    local port path want got
    for port in "$BACKEND_PORT" "$EDGE_PORT" "$NGINX_PORT" "$HAPROXY_PORT"; do
        for path in / /1k /100k; do
            case $path in /) want=3 ;; /1k) want=1024 ;; /100k) want=102400 ;; esac
            got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port$path")
            [ "$got" = "200 $want" ] || die "127.0.0.1:$port$path answered '$got', wanted '200 $want'"
        done
    done
    for path in /nowaf /nowaf/1k /nowaf/100k; do
        got=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$EDGE_PORT$path")
        [ "$got" = 200 ] || die "the edge's $path answered $got"
    done
    for port in "$EDGE_TLS_PORT" "$NGINX_TLS_PORT"; do
        got=$(curl -sk -o /dev/null -w '%{http_code} %{size_download}' "https://127.0.0.1:$port/1k")
        [ "$got" = "200 1024" ] || die "https://127.0.0.1:$port/1k answered '$got'"
    done
}

# ---------------------------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------------------------
install_tools
build_berth
command -v python3 >/dev/null || die "python3 is needed"
for port in $EDGE_PORT $ADMIN_PORT $NGINX_PORT $HAPROXY_PORT; do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then die "port $port is already in use"; fi
done

WORK=$(mktemp -d /tmp/berth-edge-bench.XXXXXX)
chmod 755 "$WORK"
start_stack
start_proxies
check_targets

mkdir -p "$RESULTS_DIR"
STAMP=$(date +%Y-%m-%d-%H%M)
REPORT_FINAL="$RESULTS_DIR/edge-$STAMP.md"
REPORT="$WORK/report.md" # moved to $REPORT_FINAL once complete
HAPROXY_VERSION=$( (haproxy -v 2>/dev/null || true) | awk 'NR == 1 {print $3}')
NGINX_VERSION=$( (nginx -v 2>&1 || true) | sed 's|.*nginx/||')
WRK_VERSION=$( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')
BERTH_REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
BERTH_DIRTY=$(cd "$REPO" && [ -n "$(git status --porcelain -- crates 2>/dev/null)" ] && echo " (crates modified)" || true)
if [ -n "${BERTH_BIN:-}" ]; then
    BERTH_REV="$BERTH_BIN"
    BERTH_DIRTY=" (BERTH_BIN)"
fi
{
    echo "# Edge benchmark, $(date '+%Y-%m-%d %H:%M %Z')"
    echo
    echo "- Machine: $(nproc) cores ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)"
    echo "- Load: \`wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency\` (after a $WARMUP warm-up), wrk $WRK_VERSION, all on loopback on the same machine"
    echo "- Backend: one nginx $NGINX_VERSION worker (\`/\` = \"ok\\n\", \`/1k\`, \`/100k\` static files, access log off), started by Berth"
    echo "- Berth edge: git $BERTH_REV$BERTH_DIRTY, release build, $WORKERS edge workers (single-threaded tokio runtimes, each accepting on its own socket duplicate), access log on"
    echo "- nginx $NGINX_VERSION proxy: $WORKERS workers, upstream keepalive 64, HTTP/1.1 to the backend, access log on (file)"
    echo "- HAProxy $HAPROXY_VERSION: nbthread $WORKERS, mode http, http-reuse always, http-keep-alive, httplog to stdout (file)"
    if [ "$PIN" = 1 ]; then
        echo "- Pinned (taskset): each proxy on cores $PROXY_CORES; the backend and wrk on cores $LOAD_CORES"
    else
        echo "- Not pinned: the proxies, the backend and wrk share all cores"
    fi
    echo "- CPU columns: CPU time / wall time during the measured run, 100% = one core, $(nproc) cores in all: the proxy's processes, the backend nginx, wrk, the kernel's softirq time (loopback TCP delivery, charged to no process), everything else on the machine (\"other\": not part of the benchmark), and idle"
    echo "- Load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
} >"$REPORT"

for case_path in $PATHS; do
    case $case_path in /) label="tiny (/)" ;; /1k) label="1 KiB (/1k)" ;; /100k) label="100 KiB (/100k)" ;; esac
    log "case $label"
    rows=()
    direct_rps=""
    waf_on="" waf_off=""
    for target in direct nginx haproxy berth berth-nowaf; do
        url_path=$case_path
        case $target in
        direct) port=$BACKEND_PORT; name="direct (backend)"; pids=() ;;
        nginx) port=$NGINX_PORT; name="nginx"; pids=("$NGINX_PID") ;;
        haproxy) port=$HAPROXY_PORT; name="HAProxy"; pids=("$HAPROXY_PID") ;;
        berth) port=$EDGE_PORT; name="Berth edge (WAF on)"; pids=("$EDGE_PID") ;;
        berth-nowaf)
            port=$EDGE_PORT; name="Berth edge, WAF off"; pids=("$EDGE_PID")
            url_path=/nowaf${case_path%/}
            ;;
        esac
        echo "  $name: wrk http://127.0.0.1:$port$url_path ($DURATION)" >&2
        run_wrk "$target" "http://127.0.0.1:$port$url_path" "${pids[@]}"
        [ "$target" = direct ] && direct_rps=$W_RPS
        [ "$target" = berth ] && waf_on=$W_PER_CPU
        [ "$target" = berth-nowaf ] && waf_off=$W_PER_CPU
        ratio=$(awk -v a="$W_RPS" -v b="$direct_rps" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "-" }')
        rows+=("$name|$W_RPS|$W_P50|$W_P99|$ratio|$W_PROXY_CPU|$W_PER_CPU|$W_BACKEND_CPU|$W_WRK_CPU|$W_SOFTIRQ|$W_OTHER_CPU|$W_IDLE|$W_ERRORS")
    done

    # Terminal table.
    echo
    echo "$label — wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
    printf '%-17s %8s %8s %8s %9s | %6s %9s %8s %5s %7s %6s %5s | %s\n' target req/s p50_ms p99_ms vs_direct proxy req/cpu-s backend wrk softirq other idle "wrk errors"
    for row in "${rows[@]}"; do
        IFS='|' read -r a b c d e f m g h i j k l <<<"$row"
        printf '%-17s %8s %8s %8s %9s | %6s %9s %8s %5s %7s %6s %5s | %s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$m" "$g" "$h" "$i" "$j" "$k" "$l"
    done
    echo

    # Markdown.
    {
        echo "## $label"
        echo
        echo "| target | req/s | p50 (ms) | p99 (ms) | req/s vs direct | proxy CPU | req/s per proxy CPU-s | backend CPU | wrk CPU | softirq | other CPU | idle | wrk errors |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        for row in "${rows[@]}"; do
            IFS='|' read -r a b c d e f m g h i j k l <<<"$row"
            echo "| $a | $b | $c | $d | $e | $f | $m | $g | $h | $i | $j | $k | $l |"
        done
        echo
        echo "The WAF's cost: $(awk -v on="$waf_on" -v off="$waf_off" 'BEGIN{ if (on > 0 && off > 0) printf "%+.1f%%", (off / on - 1) * 100; else print "-" }') edge CPU per request (requests per edge CPU-second: $waf_off with the WAF off, $waf_on with it on)."
        echo
    } >>"$REPORT"
done

# ---------------------------------------------------------------------------------------------
# Cache hits: Berth's response cache against nginx's proxy_cache, the same 1 KiB answer kept by
# both; the backend answering directly beside them (a hit should beat it: no backend at all).
# ---------------------------------------------------------------------------------------------
if [ "${CACHE:-1}" = 1 ]; then
    log "case cache hit (/cached/1k)"
    for port in "$EDGE_PORT" "$NGINX_PORT"; do
        curl -s -o /dev/null "http://127.0.0.1:$port/cached/1k"
        got=$(curl -s -o /dev/null -D - "http://127.0.0.1:$port/cached/1k" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache" {print $2}')
        [ "$got" = HIT ] || die "127.0.0.1:$port/cached/1k is not a cache hit (X-Cache: '$got')"
    done
    rows=()
    direct_rps=""
    for target in direct nginx berth; do
        case $target in
        direct) port=$BACKEND_PORT; name="direct (backend)"; pids=() ;;
        nginx) port=$NGINX_PORT; name="nginx proxy_cache"; pids=("$NGINX_PID") ;;
        berth) port=$EDGE_PORT; name="Berth edge cache"; pids=("$EDGE_PID") ;;
        esac
        echo "  $name: wrk http://127.0.0.1:$port/cached/1k ($DURATION)" >&2
        run_wrk "$target-cache" "http://127.0.0.1:$port/cached/1k" "${pids[@]}"
        [ "$target" = direct ] && direct_rps=$W_RPS
        ratio=$(awk -v a="$W_RPS" -v b="$direct_rps" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "-" }')
        rows+=("$name|$W_RPS|$W_P50|$W_P99|$ratio|$W_PROXY_CPU|$W_PER_CPU|$W_BACKEND_CPU|$W_ERRORS")
    done
    echo
    printf '%-18s %8s %8s %8s %9s | %6s %9s %8s | %s\n' "cache hit /1k" req/s p50_ms p99_ms vs_direct proxy req/cpu-s backend "wrk errors"
    for row in "${rows[@]}"; do
        IFS='|' read -r a b c d e f g h i <<<"$row"
        printf '%-18s %8s %8s %8s %9s | %6s %9s %8s | %s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i"
    done
    {
        echo "## Cache hits (1 KiB, \`Cache-Control: public, max-age=3600\`)"
        echo
        echo "Berth's \`[cache]\` rule \`/cached/*\` against nginx \`proxy_cache\` (\`proxy_cache_valid 200 1h\`, \`proxy_cache_lock on\`), both warmed and checked for \`X-Cache: HIT\` first; the backend answering directly beside them."
        echo
        echo "| target | req/s | p50 (ms) | p99 (ms) | req/s vs direct | proxy CPU | req/s per proxy CPU-s | backend CPU | wrk errors |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
        for row in "${rows[@]}"; do
            IFS='|' read -r a b c d e f g h i <<<"$row"
            echo "| $a | $b | $c | $d | $e | $f | $g | $h | $i |"
        done
        echo
    } >>"$REPORT"
fi

# ---------------------------------------------------------------------------------------------
# Compression: a 20 KiB JSON answer to clients that take gzip (and brotli). nginx compresses
# with gzip level 6 (no brotli module), HAProxy with libslz's gzip; Berth's edge picks brotli for "gzip, br" and gzip for
# "gzip" alone. Bytes: the body as sent (compressed), per answer.
# ---------------------------------------------------------------------------------------------
if [ "${COMPRESS:-1}" = 1 ]; then
    log "case compression (20 KiB JSON)"
    rows=()
    for target in direct nginx haproxy berth-gzip berth-br; do
        case $target in
        direct) port=$BACKEND_PORT; name="direct (backend, none)"; pids=(); accept="gzip, br" ;;
        nginx) port=$NGINX_PORT; name="nginx, gzip 6"; pids=("$NGINX_PID"); accept="gzip, br" ;;
        haproxy) port=$HAPROXY_PORT; name="HAProxy, gzip (libslz)"; pids=("$HAPROXY_PID"); accept="gzip, br" ;;
        berth-gzip) port=$EDGE_PORT; name="Berth edge, gzip 6"; pids=("$EDGE_PID"); accept="gzip" ;;
        berth-br) port=$EDGE_PORT; name="Berth edge, brotli 4"; pids=("$EDGE_PID"); accept="gzip, br" ;;
        esac
        url="http://127.0.0.1:$port/page.json"
        read -r bytes coding < <(curl -s -o /dev/null -H "Accept-Encoding: $accept" \
            -w '%{size_download} %header{content-encoding}\n' "$url" 2>/dev/null ||
            curl -s -o /dev/null -H "Accept-Encoding: $accept" -w '%{size_download} -\n' "$url")
        echo "  $name: wrk $url, Accept-Encoding: $accept ($DURATION; $bytes bytes, ${coding:--})" >&2
        WRK_EXTRA=(-H "Accept-Encoding: $accept")
        run_wrk "$target-compress" "$url" "${pids[@]}"
        WRK_EXTRA=()
        rows+=("$name|$accept|${coding:--}|$bytes|$W_RPS|$W_P50|$W_P99|$W_PROXY_CPU|$W_PER_CPU|$W_ERRORS")
    done
    echo
    printf '%-24s %-9s %-6s %7s %8s %8s %8s | %6s %9s | %s\n' "JSON 20 KiB" accept coding bytes req/s p50_ms p99_ms proxy req/cpu-s "wrk errors"
    for row in "${rows[@]}"; do
        IFS='|' read -r a b c d e f g h i j <<<"$row"
        printf '%-24s %-9s %-6s %7s %8s %8s %8s | %6s %9s | %s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i" "$j"
    done
    {
        echo "## Compression (a 20 KiB JSON answer)"
        echo
        echo "wrk sends \`Accept-Encoding\` as shown; bytes: the body as sent, per answer. nginx: \`gzip on\`, \`gzip_comp_level 6\`; HAProxy: \`compression algo gzip\` (libslz, stateless: no level); Berth's edge: its defaults (brotli quality 4, gzip level 6)."
        echo
        echo "| target | Accept-Encoding | coding | bytes | req/s | p50 (ms) | p99 (ms) | proxy CPU | req/s per proxy CPU-s | wrk errors |"
        echo "|---|---|---|---:|---:|---:|---:|---:|---:|---|"
        for row in "${rows[@]}"; do
            IFS='|' read -r a b c d e f g h i j <<<"$row"
            echo "| $a | $b | $c | $d | $e | $f | $g | $h | $i | $j |"
        done
        echo
    } >>"$REPORT"
fi

# ---------------------------------------------------------------------------------------------
# HTTPS: Berth's edge against nginx on the same certificate, keep-alive and a new TLS
# connection per request (Connection: close: one full handshake each).
# ---------------------------------------------------------------------------------------------
if [ "$HTTPS" = 1 ]; then
    log "case HTTPS"
    rows=()
    for mode in keep-alive handshake; do
        for target in nginx berth; do
            case $target in
            nginx) port=$NGINX_TLS_PORT; name="nginx"; pids=("$NGINX_PID") ;;
            berth) port=$EDGE_TLS_PORT; name="Berth edge"; pids=("$EDGE_PID") ;;
            esac
            url="https://127.0.0.1:$port/1k"
            echo "  $name, $mode: wrk $url ($DURATION)" >&2
            if [ "$mode" = handshake ]; then
                WRK_EXTRA=(-H "Connection: close")
                run_wrk "$target-tls-$mode" "$url" "${pids[@]}"
                WRK_EXTRA=()
            else
                run_wrk "$target-tls-$mode" "$url" "${pids[@]}"
            fi
            rows+=("$name, $mode|$W_RPS|$W_P50|$W_P99|$W_PROXY_CPU|$W_PER_CPU|$W_ERRORS")
        done
    done
    echo
    printf '%-24s %8s %8s %8s | %6s %9s | %s\n' "HTTPS /1k" req/s p50_ms p99_ms proxy req/cpu-s "wrk errors"
    for row in "${rows[@]}"; do
        IFS='|' read -r a b c d e f g <<<"$row"
        printf '%-24s %8s %8s %8s | %6s %9s | %s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g"
    done
    {
        echo "## HTTPS (1 KiB answers, the same self-signed P-256 certificate)"
        echo
        echo "keep-alive: requests over kept-alive TLS connections; handshake: \`Connection: close\`, one TLS connection (one full handshake) per request."
        echo
        echo "| target | req/s | p50 (ms) | p99 (ms) | proxy CPU | req/s per proxy CPU-s | wrk errors |"
        echo "|---|---:|---:|---:|---:|---:|---|"
        for row in "${rows[@]}"; do
            IFS='|' read -r a b c d e f g <<<"$row"
            echo "| $a | $b | $c | $d | $e | $f | $g |"
        done
        echo
    } >>"$REPORT"
fi

# ---------------------------------------------------------------------------------------------
# 6. Memory: 10,000 idle keep-alive connections.
# ---------------------------------------------------------------------------------------------
if [ "$IDLE_CONNS" -gt 0 ]; then
log "Berth edge RSS with $IDLE_CONNS idle keep-alive connections"
# The edge's pid, as Berth reports it now.
EDGE_PID=$("$BERTH" status --json -f "$STACK/berth.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["edge"]["pid"])')
echo "edge fd limit: $(awk '/Max open files/{print $4" soft / "$5" hard"}' /proc/"$EDGE_PID"/limits)" >&2
sleep 3 # let the keep-alive connections of the last wrk run go
(
    ulimit -n 20000 2>/dev/null || true
    python3 "$TEMPLATES/idle_conns.py" --port "$EDGE_PORT" --count "$IDLE_CONNS" --pid "$EDGE_PID" \
        --metrics "http://127.0.0.1:$ADMIN_PORT/metrics" --label "Berth edge"
) 2>&1 | tee "$WORK/rss-berth.txt" || true

if [ "$RSS_COMPARE" = 1 ]; then
    log "for comparison: nginx (master + workers) and HAProxy with $IDLE_CONNS idle connections"
    (
        ulimit -n 20000 2>/dev/null || true
        python3 "$TEMPLATES/idle_conns.py" --port "$NGINX_PORT" --count "$IDLE_CONNS" --pid "$NGINX_PID" \
            --children --label "nginx"
    ) 2>&1 | tee "$WORK/rss-nginx.txt" || true
    # HAProxy's maxconn is 9990 (see edge/haproxy.cfg.tmpl): at most 9900 here.
    (
        ulimit -n 20000 2>/dev/null || true
        python3 "$TEMPLATES/idle_conns.py" --port "$HAPROXY_PORT" --count "$((IDLE_CONNS < 9900 ? IDLE_CONNS : 9900))" \
            --pid "$HAPROXY_PID" --label "HAProxy"
    ) 2>&1 | tee "$WORK/rss-haproxy.txt" || true
fi

{
    echo "## Memory with $IDLE_CONNS idle keep-alive client connections"
    echo
    echo "Each connection sent one \`GET / HTTP/1.1\` (keep-alive), read the answer, then stayed open and idle; VmRSS from /proc. HAProxy gets at most 9900 (its maxconn must fit the 20000 fd limit). RSS is read within a few seconds of the first connection, well inside every proxy's keep-alive timeout (Berth: \`idle_timeout\`, 60 s by default)."
    echo
    echo '```'
    cat "$WORK/rss-berth.txt"
    if [ "$RSS_COMPARE" = 1 ]; then cat "$WORK/rss-nginx.txt" "$WORK/rss-haproxy.txt"; fi
    echo '```'
    echo
} >>"$REPORT"
fi

# ---------------------------------------------------------------------------------------------
# What the logs say.
# ---------------------------------------------------------------------------------------------
{
    echo "## Logs"
    echo
    edge_log="$EDGE_DIR/edge.log"
    if [ -f "$edge_log" ]; then
        echo "- Berth edge log (\`.berth/default/edge/edge.log\` of the temporary stack): $(wc -l <"$edge_log") lines, $(grep -c -E 'WARN|ERROR' "$edge_log" || true) WARN/ERROR"
        if grep -q -E 'WARN|ERROR' "$edge_log"; then
            echo
            echo '```'
            # (head closes the pipe early: not a failure)
            { grep -E 'WARN|ERROR' "$edge_log" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^[0-9T:.-]*Z *//' | sort | uniq -c | sort -rn | head -20; } || true
            echo '```'
        fi
    else
        echo "- Berth edge log: not found at $edge_log"
    fi
    [ -f "$EDGE_DIR/access.log" ] && echo "- Berth edge access log: $(cat "$EDGE_DIR"/access.log* | wc -l) lines on disk (rotated files included; rotation keeps 4 files of 50 MiB, so the oldest lines of a long run are gone)"
    echo "- nginx proxy access log: $(wc -l <"$WORK/nginx/access.log") lines; error log: $(wc -l <"$WORK/nginx/error.log") lines"
    echo "- HAProxy access log: $(wc -l <"$WORK/haproxy/access.log") lines; stderr: $(wc -l <"$WORK/haproxy/stderr.log") lines"
    echo "- Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
} >>"$REPORT"
if [ -s "$WORK/nginx/error.log" ]; then echo "nginx proxy error log (tail):" >&2; tail -5 "$WORK/nginx/error.log" >&2; fi
if [ -s "$WORK/haproxy/stderr.log" ]; then echo "HAProxy stderr (tail):" >&2; tail -5 "$WORK/haproxy/stderr.log" >&2; fi
if [ -f "$EDGE_DIR/edge.log" ]; then echo "Berth edge log (tail):" >&2; tail -5 "$EDGE_DIR/edge.log" | sed 's/\x1b\[[0-9;]*m//g' >&2; fi

mv "$REPORT" "$REPORT_FINAL"
echo
echo "report: $REPORT_FINAL"
