#!/usr/bin/env bash
# Backup benchmark: `berth backup now` and `berth restore` of a PostgreSQL database and a volume
# of small and large files, against the same work done by hand on the same data with plain
# `pg_dump -Fc` / `pg_restore` and `tar | zstd` / `zstd -d | tar`. Prints both side by side and
# Berth's overhead (target: under 10%).
#
#   bench/backup.sh                          # 1 GiB database, 1 GiB volume
#   DB_MB=256 VOLUME_MB=256 bench/backup.sh  # a quicker run
#
# Environment: DB_MB (default 1024), VOLUME_MB (default 1024; half in 64 KiB files, half in
# 64 MiB files), SKIP_BUILD=1 (use the existing release binary), CARGO_TARGET_DIR.
# Everything runs on this machine, on loopback; the stack folder is removed at the end.
# Writes bench/results/backup-<date>.md.

set -euo pipefail

DB_MB=${DB_MB:-1024}
VOLUME_MB=${VOLUME_MB:-1024}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
BERTH=$TARGET/release/berth
RESULTS_DIR="$BENCH_DIR/results"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() { printf 'backup.sh: error: %s\n' "$*" >&2; exit 1; }

command -v zstd >/dev/null || die "zstd is missing (apt-get install zstd)"
[ -x "$PG_BIN/pg_dump" ] || die "PostgreSQL is missing (apt-get install postgresql)"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building berth (release)"
  (cd "$REPO" && cargo build --release --locked -p berth >&2)
fi

STACK=$(mktemp -d /tmp/berth-bench-backup-XXXX)
chmod 755 "$STACK"
UP_PID=
cleanup() {
  if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
    "$BERTH" -f "$STACK/berth.toml" down >/dev/null 2>&1 || kill "$UP_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -rf "$STACK"
}
trap cleanup EXIT

mkdir -p "$STACK/app"
cat > "$STACK/berth.toml" <<EOF
[stack]
name = "bench-backup"

[edge]
listen = ["127.0.0.1:18380"]
admin = "127.0.0.1:19390"

[service.writer]
run = "sleep 1000000"
source = "app"
use = ["db"]
volumes = ["files"]

[accessory.db]
engine = "postgres"

[volume.files]
EOF

log "starting the stack"
"$BERTH" up -f "$STACK/berth.toml" >"$STACK/up.log" 2>&1 &
UP_PID=$!
for _ in $(seq 1 600); do
  grep -q "is up" "$STACK/up.log" && break
  kill -0 "$UP_PID" 2>/dev/null || { cat "$STACK/up.log" >&2; die "berth up exited"; }
  sleep 0.2
done
grep -q "is up" "$STACK/up.log" || die "the stack did not come up"

DB_DIR="$STACK/.berth/default/accessories/db"
PORT=$(cat "$DB_DIR/port")
psql_admin() { "$PG_BIN/psql" -X -q -h "$DB_DIR/run" -p "$PORT" -U postgres -v ON_ERROR_STOP=1 "$@"; }

log "filling the database (~${DB_MB} MiB)"
# ~240 bytes per row of hex text (compresses like typical application data, about 2:1).
ROWS=$(( DB_MB * 1024 * 1024 / 240 ))
psql_admin -d db -c "CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, name text, body text, at timestamptz)"
BATCH=500000
for start in $(seq 1 $BATCH "$ROWS"); do
  end=$(( start + BATCH - 1 )); [ "$end" -gt "$ROWS" ] && end=$ROWS
  psql_admin -d db -c "INSERT INTO items SELECT g, 'item ' || g, md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text), now() - g * interval '1 second' FROM generate_series($start, $end) g"
done
psql_admin -d db -c "VACUUM ANALYZE items"
DB_SIZE=$(psql_admin -d db -At -c "SELECT pg_database_size('db')")

log "filling the volume (~${VOLUME_MB} MiB: small and large files)"
VOL="$STACK/.berth/default/volumes/files"
mkdir -p "$VOL/small" "$VOL/large"
SMALL=$(( VOLUME_MB * 1024 / 2 / 64 ))   # 64 KiB files
LARGE=$(( VOLUME_MB / 2 / 64 ))          # 64 MiB files
[ "$LARGE" -ge 1 ] || LARGE=1
# Half random bytes, half text: partly compressible, like uploads of images and documents.
head -c $(( 64 * 1024 * 1024 )) /dev/urandom > "$STACK/seed-random"
head -c $(( 48 * 1024 * 1024 )) "$STACK/seed-random" | base64 -w 120 > "$STACK/seed-text"
for i in $(seq 1 "$LARGE"); do
  if [ $(( i % 2 )) = 0 ]; then cp "$STACK/seed-random" "$VOL/large/f$i.bin"; else cp "$STACK/seed-text" "$VOL/large/f$i.txt"; fi
  # Make each file distinct.
  printf 'file %s\n' "$i" | dd of="$VOL/large/f$i.$( [ $(( i % 2 )) = 0 ] && echo bin || echo txt)" conv=notrunc status=none
done
python3 - "$VOL/small" "$SMALL" "$STACK/seed-random" "$STACK/seed-text" <<'PY'
import os, sys
folder, count = sys.argv[1], int(sys.argv[2])
rand = open(sys.argv[3], "rb").read()
text = open(sys.argv[4], "rb").read()
for i in range(count):
    src = rand if i % 2 else text
    off = (i * 65537) % (len(src) - 65536)
    d = os.path.join(folder, f"d{i // 1000}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(src[off:off + 65536])
PY
rm -f "$STACK/seed-random" "$STACK/seed-text"
VOL_SIZE=$(du -sb "$VOL" | cut -f1)
sync

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }

log "plain tools: pg_dump -Fc and tar | zstd"
PLAIN="$STACK/plain"; mkdir -p "$PLAIN"
t0=$(now)
"$PG_BIN/pg_dump" -h "$DB_DIR/run" -p "$PORT" -U postgres -d db -Fc --compress=6 > "$PLAIN/db.pgdump"
t1=$(now)
tar -C "$VOL" -cf - . | zstd -3 -q -T2 > "$PLAIN/files.tar.zst"
sync
t2=$(now)
PLAIN_DUMP=$(elapsed "$t0" "$t1"); PLAIN_TAR=$(elapsed "$t1" "$t2"); PLAIN_BACKUP=$(elapsed "$t0" "$t2")

log "berth backup now"
t0=$(now)
"$BERTH" -f "$STACK/berth.toml" backup now --json > "$STACK/backup.json"
t1=$(now)
BERTH_BACKUP=$(elapsed "$t0" "$t1")
ID=$(python3 -c "import json; print(json.load(open('$STACK/backup.json'))['id'])")
BERTH_BYTES=$(python3 -c "import json; print(json.load(open('$STACK/backup.json'))['total_bytes'])")
PLAIN_BYTES=$(( $(stat -c %s "$PLAIN/db.pgdump") + $(stat -c %s "$PLAIN/files.tar.zst") ))

log "plain tools: pg_restore and zstd -d | tar"
t0=$(now)
psql_admin -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'db' AND pid <> pg_backend_pid()" >/dev/null
"$PG_BIN/pg_restore" -h "$DB_DIR/run" -p "$PORT" -U postgres -d db --clean --if-exists --exit-on-error --single-transaction "$PLAIN/db.pgdump"
t1=$(now)
rm -rf "$PLAIN/restored"; mkdir "$PLAIN/restored"
zstd -dc -q "$PLAIN/files.tar.zst" | tar -C "$PLAIN/restored" -xf -
sync
t2=$(now)
PLAIN_RESTORE_DB=$(elapsed "$t0" "$t1"); PLAIN_UNTAR=$(elapsed "$t1" "$t2"); PLAIN_RESTORE=$(elapsed "$t0" "$t2")
rm -rf "$PLAIN/restored"

log "berth restore"
t0=$(now)
"$BERTH" -f "$STACK/berth.toml" restore "$ID" --yes >/dev/null
sync
t1=$(now)
BERTH_RESTORE=$(elapsed "$t0" "$t1")

ROWS_AFTER=$(psql_admin -d db -At -c "SELECT count(*) FROM items")
[ "$ROWS_AFTER" = "$ROWS" ] || die "the restored database has $ROWS_AFTER rows, not $ROWS"

ratio() { python3 -c "print(f'{$1 / $2:.3f}')"; }
mib() { python3 -c "print(f'{$1 / 1048576:.0f} MiB')"; }
mbps() { python3 -c "print(f'{($2) / 1048576 / $1:.0f} MiB/s')"; }
DATA=$(( DB_SIZE + VOL_SIZE ))
REPORT=$(cat <<EOF
Backup benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; database $(mib "$DB_SIZE") (pg_database_size), volume $(mib "$VOL_SIZE") ($SMALL files of 64 KiB, $LARGE of 64 MiB).

| step | plain tools | Berth | Berth / plain |
|---|---:|---:|---:|
| backup (db + volume) | ${PLAIN_BACKUP} s ($(mbps "$PLAIN_BACKUP" "$DATA")) | ${BERTH_BACKUP} s ($(mbps "$BERTH_BACKUP" "$DATA")) | $(ratio "$BERTH_BACKUP" "$PLAIN_BACKUP") |
| restore (db + volume) | ${PLAIN_RESTORE} s | ${BERTH_RESTORE} s | $(ratio "$BERTH_RESTORE" "$PLAIN_RESTORE") |
| backup size | $(mib "$PLAIN_BYTES") | $(mib "$BERTH_BYTES") | $(ratio "$BERTH_BYTES" "$PLAIN_BYTES") |

Plain parts: pg_dump ${PLAIN_DUMP} s, tar | zstd ${PLAIN_TAR} s; pg_restore ${PLAIN_RESTORE_DB} s, zstd -d | tar ${PLAIN_UNTAR} s.
Berth's backup also hashes every byte (sha256) and fsyncs; its restore checks the checksums first
and stops and restarts the service using the data.
EOF
)
echo "$REPORT"
mkdir -p "$RESULTS_DIR"
echo "$REPORT" > "$RESULTS_DIR/backup-$(date -u +%Y-%m-%d-%H%M).md"
