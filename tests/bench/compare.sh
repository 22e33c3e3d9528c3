#!/usr/bin/env bash
# Starling against Prosody and ejabberd on the shared load generator (../shared/bench, see its
# README and BASELINE.md): runs `bench.sh prosody` and `bench.sh ejabberd`, runs Starling
# through tests/bench/run.sh, and prints a markdown table (tests/bench/compare.py) with every
# server's figures, Starling's ratio to the better peer, the targets of issue #11 and whether
# they are met. The table goes to stdout and to $OUT; progress and the runners' output to stderr.
#
#   tests/bench/compare.sh                   # peers + Starling, every scenario, 2 reps
#   PEER_RESULTS="../shared/bench/results/prosody-20261122-045548.json
#                 ../shared/bench/results/ejabberd-20261122-052846.json" tests/bench/compare.sh
#                                            # reuse peer result files, run only Starling
#   PG=1 tests/bench/compare.sh              # chat-mam also on PostgreSQL (127.0.0.1:5432)
#   STARTTLS=1 SCENARIOS=connect-scram CONNECT_SCRAM_SIZES="1000 5000 10000" tests/bench/compare.sh
#
# Starling is started afresh for every run (scenario, size, rep), as bench.sh does for the
# peers: with MAM=0 for every selected scenario except chat-mam, with MAM=1 for chat-mam
# (bench.sh cannot switch archiving on an external server), and with PG=1 also MAM=1
# STORAGE=postgres for chat-mam.
# Knobs (environment):
#   SCENARIOS ["connect connect-scram chat chat-paced chat-mam muc"], REPS, STARTTLS,
#     CONNECT_SIZES, CONNECT_SCRAM_SIZES, CONCURRENCY, CHAT_N, CHAT_M, CHAT_WINDOW, CHAT_RATE,
#     CHAT_MAM_M, MUC_K, MUC_M, MUC_WINDOW, QUIET_WAIT: bench.sh's (see its header), used for
#     the peers and Starling alike
#   PEER_RESULTS  peer result files to reuse instead of running the peers (server read from each)
#   PG [0]        1 = also chat-mam on a fresh PostgreSQL database
#   USERS         Starling's accounts u1..uN [the most any selected scenario needs]
#   PORT [15422]  Starling's c2s port; BENCH_DIR [../shared/bench]
#   OUT           table file [$BENCH_DIR/results/compare-DATE.md]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BENCH=$(cd "${BENCH_DIR:-$ROOT/../shared/bench}" && pwd)
export BENCH_DIR=$BENCH
SCENARIOS=${SCENARIOS:-"connect connect-scram chat chat-paced chat-mam muc"}
PG=${PG:-0}
PORT=${PORT:-15422}
export PORT
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=${OUT:-$BENCH/results/compare-$STAMP.md}
LOGS=$(mktemp -d /tmp/starling-compare-XXXXXX)
trap 'rm -rf "$LOGS"' EXIT

log() { echo "[compare $(date -u +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x $BENCH/bench.sh ]] || die "no load generator at $BENCH (set BENCH_DIR)"
for tool in jq python3 taskset; do command -v "$tool" >/dev/null || die "$tool is not installed"; done
if [[ $PG = 1 ]]; then
  psql -qAt -h 127.0.0.1 -U postgres -c 'SELECT 1' >/dev/null || die "PG=1 but PostgreSQL does not answer on 127.0.0.1:5432"
fi

# clients_of SCENARIO: its client counts, one per run (the defaults are bench.sh's).
clients_of() {
  case $1 in
    connect) echo "${CONNECT_SIZES:-1000 5000 10000}" ;;
    connect-scram) echo "${CONNECT_SCRAM_SIZES:-10000}" ;;
    chat*) echo "${CHAT_N:-200}" ;;
    muc) echo "${MUC_K:-200}" ;;
    *) echo 0 ;;
  esac
}

# Accounts Starling needs: the largest client count of the selected scenarios (as bench.sh
# computes it for the peers).
if [[ -z ${USERS:-} ]]; then
  USERS=2
  for sc in $SCENARIOS; do
    for n in $(clients_of "$sc"); do
      if (( n > USERS )); then USERS=$n; fi
    done
  done
fi
export USERS

# run_bench LOG COMMAND...: runs a runner with all its output on stderr (and in LOG), then
# prints the results file it reported ("[HH:MM:SS] wrote PATH", bench.sh's last log line).
run_bench() {
  local logf=$1 out
  shift
  if ! "$@" 2>&1 | tee "$logf" >&2; then
    log "failed: $*"
    return 1
  fi
  out=$(sed -n 's/^\[[0-9:]*\] wrote \(.*\.json\)$/\1/p' "$logf" | tail -n 1)
  if [[ -z $out || ! -s $out ]]; then
    log "no results file reported by: $*"
    return 1
  fi
  printf '%s\n' "$out"
}

# run.sh waits for *something* to accept on $PORT; if another server already listens there,
# Starling fails to bind and the load would go to that server. Refuse to start instead.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# starling LABEL VAR=VALUE...: one tests/bench/run.sh run, prints its results file.
starling() {
  local label=$1 out missing
  shift
  port_free || die "127.0.0.1:$PORT is already in use (another server?); set PORT"
  log "Starling ($label): $*"
  out=$(run_bench "$LOGS/starling-$label.log" env "$@" "$HERE/run.sh") || return 1
  missing=$(jq '[.runs[] | select(.server_cpu_s_run == null)] | length' "$out")
  if (( missing > 0 )); then
    log "warning: $missing runs in $out have no server CPU/RSS figures (Starling exited during the run?)"
  fi
  printf '%s\n' "$out"
}

# starling_fresh LABEL "SCENARIOS" VAR=VALUE...: every run (scenario, size, rep) on a
# freshly started Starling, as bench.sh starts the peers: in one process a second rep
# would find the memory of the first already allocated and report ~0 KiB per session.
# Prints the results files, one per run.
starling_fresh() {
  local label=$1 scenarios=$2 sc n rep size_var
  shift 2
  for sc in $scenarios; do
    case $sc in
      connect) size_var=CONNECT_SIZES ;;
      connect-scram) size_var=CONNECT_SCRAM_SIZES ;;
      *) size_var="" ;;
    esac
    for n in $(clients_of "$sc"); do
      for rep in $(seq 1 "${REPS:-2}"); do
        starling "$label-$sc-$n-$rep" "$@" SCENARIOS="$sc" REPS=1 ${size_var:+"$size_var=$n"} || return 1
      done
    done
  done
}

# Reused peer result files (checked before the long runs start).
peer_args=()
if [[ -n ${PEER_RESULTS:-} ]]; then
  read -r -d '' -a peer_files <<<"$PEER_RESULTS" || true  # space- or newline-separated
  for f in "${peer_files[@]}"; do
    server=$(jq -r .server "$f") || die "cannot read $f"
    case $server in
      prosody | ejabberd) peer_args+=("--$server" "$f") ;;
      *) die "$f is a result file of '$server', not of prosody or ejabberd" ;;
    esac
  done
fi

off_scenarios=""
want_mam=0
for sc in $SCENARIOS; do
  if [[ $sc = chat-mam ]]; then want_mam=1; else off_scenarios+="${off_scenarios:+ }$sc"; fi
done

# Starling first: a failing build or start shows before the long peer runs.
args=()
if [[ -n $off_scenarios ]]; then
  files=$(starling_fresh off "$off_scenarios" MAM=0 STORAGE=sqlite) || die "Starling runs failed"
  args+=(--starling $files)
fi
if [[ $want_mam = 1 ]]; then
  files=$(starling_fresh mam chat-mam MAM=1 STORAGE=sqlite) || die "Starling runs failed"
  args+=(--starling-mam $files)
  if [[ $PG = 1 ]]; then
    files=$(starling_fresh mam-pg chat-mam MAM=1 STORAGE=postgres) || die "Starling runs failed"
    args+=(--starling-pg $files)
  fi
elif [[ $PG = 1 ]]; then
  log "PG=1 ignored: chat-mam is not in SCENARIOS"
fi

if [[ -z ${PEER_RESULTS:-} ]]; then
  for server in prosody ejabberd; do
    log "$server: bench.sh $server"
    args+=("--$server" "$(run_bench "$LOGS/$server.log" env SCENARIOS="$SCENARIOS" "$BENCH/bench.sh" "$server")")
  done
fi
args+=("${peer_args[@]}")

log "table: $HERE/compare.py ${args[*]}"
python3 "$HERE/compare.py" "${args[@]}" | tee "$OUT"
log "wrote $OUT"
