#!/usr/bin/env bash
# Soak test (issue: reliability): CLIENTS clients (default 10,000) chat at a steady
# RATE (default 2,000 msg/s in all) for SEGMENTS segments of SEGMENT_SECONDS (default
# 6 x 300 s = 30 minutes) against one Starling process started by run.sh (release
# build, pinned to CPU 1, archive on). Each segment is one run of the shared load
# generator (10,000 fresh logins, then the paced chat); the server's RSS is sampled
# every 15 s throughout. Prints, per segment, p50/p99 latency, lost messages and RSS,
# then the RSS range and every WARN/ERROR line the server logged.
#
#   tests/bench/soak.sh                          # the full 30 minutes
#   SEGMENTS=2 SEGMENT_SECONDS=60 tests/bench/soak.sh   # a quick look
#   STORAGE=postgres tests/bench/soak.sh         # the same on PostgreSQL
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLIENTS=${CLIENTS:-10000}
RATE=${RATE:-2000}
SEGMENTS=${SEGMENTS:-6}
SEGMENT_SECONDS=${SEGMENT_SECONDS:-300}
export CLIENTS RATE SEGMENTS SEGMENT_SECONDS

if [[ ${1:-} != --inner ]]; then
  OUT=${OUT:-$ROOT/target/soak-$(date -u +%Y%m%d-%H%M%S)}
  mkdir -p "$OUT"
  export OUT
  USERS=$CLIENTS MAM=${MAM:-1} SERVER_LOG="$OUT/server.log" exec "$ROOT/tests/bench/run.sh" "$0" --inner
fi

# Inside run.sh: HOST, PORT, DOMAIN, SERVER_PID and BENCH are set.
LG=$BENCH/loadgen/target/release/xmpp-loadgen
[[ -x $LG ]] || (cd "$BENCH/loadgen" && cargo build --release)
( while kill -0 "$SERVER_PID" 2>/dev/null; do
    echo "$(date +%s) $(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")"
    sleep 15
  done ) > "$OUT/rss.txt" &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null || true' EXIT
MESSAGES=$(( RATE * SEGMENT_SECONDS / CLIENTS ))
(( MESSAGES > 0 )) || { echo "RATE * SEGMENT_SECONDS must be at least CLIENTS" >&2; exit 2; }
for seg in $(seq 1 "$SEGMENTS"); do
  echo "== segment $seg/$SEGMENTS: $CLIENTS clients, $MESSAGES messages each at $RATE msg/s" >&2
  taskset -c "${LOADGEN_CPU:-0}" "$LG" --scenario chat --host "$HOST" --port "$PORT" --domain "$DOMAIN" \
    --clients "$CLIENTS" --messages "$MESSAGES" --rate "$RATE" --window 16 \
    --timeout $(( SEGMENT_SECONDS + 120 )) --server-pid "$SERVER_PID" --label "soak-$seg" \
    > "$OUT/segment-$seg.json"
done
kill "$SAMPLER" 2>/dev/null || true
python3 - "$OUT" "$SEGMENTS" <<'PY'
import json, sys, pathlib
out, segments = pathlib.Path(sys.argv[1]), int(sys.argv[2])
print(f"| segment | logins ok | sent | lost | msgs/s | p50 ms | p99 ms | server RSS KiB |")
print("|---|---|---|---|---|---|---|---|")
for seg in range(1, segments + 1):
    r = json.loads((out / f"segment-{seg}.json").read_text())
    lat = r.get("latency_ms", {})
    print(f"| {seg} | {r['login']['ok']} | {r['sent']} | {r['lost']} | {r['msgs_per_s']} | "
          f"{lat.get('p50')} | {lat.get('p99')} | {r['server']['rss_kib']} |")
rss = [int(line.split()[1]) for line in (out / "rss.txt").read_text().splitlines() if len(line.split()) == 2]
if rss:
    half = rss[len(rss) // 2:]
    print(f"\nRSS samples every 15 s: {len(rss)}, min {min(rss)} KiB, max {max(rss)} KiB, "
          f"second half {min(half)}..{max(half)} KiB")
# The development certificate's warning at start-up is expected here.
problems = [l for l in (out / "server.log").read_text(errors="replace").splitlines()
            if (" WARN " in l or " ERROR " in l) and "SELF-SIGNED" not in l]
print(f"server log: {len(problems)} WARN/ERROR lines (besides the self-signed certificate's)")
for line in problems[:20]:
    print("  " + line)
print(f"\nraw results in {out}")
PY
