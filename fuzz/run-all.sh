#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) each, one after another, seeding
# each corpus from tests/fuzz-seeds/<target>/, and prints the coverage libFuzzer
# reached per target. Usage: fuzz/run-all.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
RUSTC_BOOTSTRAP=1 cargo fuzz build -O
mkdir -p logs
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  if [ -d "../tests/fuzz-seeds/$target" ]; then
    cp -n "../tests/fuzz-seeds/$target"/* "corpus/$target/"
  fi
  echo "== $target: ${seconds}s"
  status=0
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 > "logs/$target.log" 2>&1 || status=$?
  grep -E "^#[0-9]+.*(DONE|pulse|NEW)" "logs/$target.log" | tail -n 1 || true
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "logs/$target.log" || true
  if [ "$status" -ne 0 ]; then
    echo "$target FAILED (exit $status): see fuzz/logs/$target.log and fuzz/artifacts/$target/"
  fi
done
