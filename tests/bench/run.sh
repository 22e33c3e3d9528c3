#!/usr/bin/env bash
# Benchmarks Starling with the shared XMPP load generator (../shared/bench, see its
# README): builds a release binary, starts it on 127.0.0.1:$PORT for bench.test with
# accounts u1..u$USERS (password pw) on a fresh SQLite database, pinned to CPU 1, runs
# `bench.sh external` with the given scenarios, and stops the server.
#
#   tests/bench/run.sh                       # every scenario of bench.sh
#   SCENARIOS="connect" CONNECT_SIZES=1000 REPS=1 tests/bench/run.sh
#   STARTTLS=1 SCENARIOS=connect-scram tests/bench/run.sh
#   ROSTER=50 SCENARIOS=connect tests/bench/run.sh   # every account has 50 contacts (both)
#   MAM=1 SCENARIOS=chat tests/bench/run.sh          # archive every message
#   STORAGE=postgres MAM=1 SCENARIOS=chat tests/bench/run.sh   # on a fresh PostgreSQL
#                                                    # database at 127.0.0.1:5432
#   tests/bench/run.sh COMMAND...                    # run COMMAND instead of bench.sh, with
#                                                    # HOST, PORT, DOMAIN, SERVER_PID, BENCH set
#   SERVER_LOG=FILE tests/bench/run.sh               # keep the server's log in FILE
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${BENCH_DIR:-$ROOT/../shared/bench}
PORT=${PORT:-15422}
USERS=${USERS:-10000}
ROSTER=${ROSTER:-0}
MAM=${MAM:-0}
STORAGE=${STORAGE:-sqlite}
MODULES='"disco", "roster", "offline", "carbons", "vcard", "blocking", "adhoc", "admin", "ping", "version", "time", "muc"'
[[ $MAM = 1 ]] && MODULES="$MODULES, \"mam\""
[[ -x $BENCH/bench.sh ]] || { echo "no load generator at $BENCH (set BENCH_DIR)" >&2; exit 2; }

(cd "$ROOT" && cargo build --release --locked)
BIN=$ROOT/target/release/starling
WORK=$(mktemp -d /tmp/starling-bench-XXXXXX)
PGDB=starling_bench_$$
cleanup() {
  kill "${PID:-}" 2>/dev/null || true
  wait "${PID:-}" 2>/dev/null || true
  rm -rf "$WORK"
  if [[ $STORAGE = postgres ]]; then dropdb -h 127.0.0.1 -U postgres --if-exists "$PGDB" || true; fi
}
trap cleanup EXIT
case $STORAGE in
  sqlite) STORAGE_URL="sqlite://$WORK/db.sqlite" ;;
  postgres)
    createdb -h 127.0.0.1 -U postgres "$PGDB"
    STORAGE_URL="postgres://postgres@127.0.0.1:5432/$PGDB" ;;
  *) echo "STORAGE is sqlite or postgres" >&2; exit 2 ;;
esac

cat > "$WORK/starling.toml" <<TOML
[server]
hosts = ["bench.test"]
admin_socket = "$WORK/admin.sock"
[listen]
c2s = ["127.0.0.1:$PORT"]
c2s_direct_tls = []
[s2s]
enabled = false
listen = []
listen_direct_tls = []
[tls]
cert_dir = "$WORK/certs"
generate_self_signed = true
[storage]
url = "$STORAGE_URL"
[c2s]
allow_plaintext_auth_on_loopback = true
[limits]
max_connections = 19000
auth_failures = 1000000
[log]
level = "warn"
[modules]
enabled = [$MODULES]
TOML

echo pw | "$BIN" --config "$WORK/starling.toml" user add-range u 1 "$USERS" bench.test
if [[ $ROSTER -gt 0 && $STORAGE = postgres ]]; then
  psql -q -h 127.0.0.1 -U postgres -d "$PGDB" -c "
    INSERT INTO roster_items (host, username, contact, subscription)
    SELECT 'bench.test', 'u' || i, 'u' || ((i + j - 1) % $USERS + 1) || '@bench.test', 'both'
    FROM generate_series(1, $USERS) AS i, generate_series(1, $ROSTER) AS j"
elif [[ $ROSTER -gt 0 ]]; then
  # Mutual subscriptions with the next $ROSTER accounts, written straight into the
  # roster module's table (the server is not running yet).
  python3 - "$WORK/db.sqlite" "$USERS" "$ROSTER" <<'PY'
import sqlite3, sys
db, users, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = sqlite3.connect(db)
rows = (("bench.test", f"u{i}", f"u{(i + j - 1) % users + 1}@bench.test", "both")
        for i in range(1, users + 1) for j in range(1, k + 1))
conn.executemany("INSERT INTO roster_items (host, username, contact, subscription) VALUES (?, ?, ?, ?)", rows)
conn.commit()
PY
fi
ulimit -n "$(ulimit -Hn)"
if [[ -n ${SERVER_LOG:-} ]]; then
  taskset -c "${SERVER_CPU:-1}" "$BIN" --config "$WORK/starling.toml" 2>"$SERVER_LOG" &
else
  taskset -c "${SERVER_CPU:-1}" "$BIN" --config "$WORK/starling.toml" &
fi
PID=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
if [[ $# -gt 0 ]]; then
  HOST=127.0.0.1 PORT=$PORT DOMAIN=bench.test SERVER_PID=$PID BENCH=$BENCH "$@"
else
  HOST=127.0.0.1 PORT=$PORT DOMAIN=bench.test SERVER_PID=$PID "$BENCH/bench.sh" external
fi
