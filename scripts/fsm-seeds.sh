#!/usr/bin/env bash
# Runs the core's Raft FSM cluster test (tests/cluster/test_core_fsm.c) over many seeds of
# random faults: kills, partitions, lossy links, disk faults, snapshots with catch-up. Each
# seed asserts no fork and no acknowledged second lost; a failing seed is printed with the
# command that replays it.
#
# Usage: scripts/fsm-seeds.sh [COUNT [FROM]]   (default 1000 seeds from 100)
# Environment:
#   KL_FSM_BUILD=DIR   build directory (default build/fsm-seeds; configured if needed)
#   KL_SANITIZE=1      build with ASan+UBSan (default directory build/fsm-seeds-asan)
#   KL_FSM_TIMEOUT=S   wall-time bound in seconds (default: 1 s per seed, 5 with sanitizers,
#                      plus 60)
#   KL_BUILD_JOBS=N    make parallelism (default 2)
# CI runs 50 seeds through ctest (cluster/test_core_fsm); this is the long mode.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
count="${1:-1000}"
from="${2:-100}"
[[ "$count" =~ ^[0-9]+$ && "$from" =~ ^[0-9]+$ ]] || { sed -n '7,8p' "$0" | sed 's/^# //' >&2; exit 2; }

opts=(-DKL_WERROR=ON)
per_seed=1
if [ "${KL_SANITIZE:-0}" = 1 ]; then
  build="${KL_FSM_BUILD:-$root/build/fsm-seeds-asan}"
  opts+=(-DCMAKE_BUILD_TYPE=Debug -DKL_SANITIZE=ON)
  per_seed=5
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
else
  build="${KL_FSM_BUILD:-$root/build/fsm-seeds}"
  opts+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
fi
case "$build" in /*) ;; *) build="$root/$build" ;; esac
limit="${KL_FSM_TIMEOUT:-$((count * per_seed + 60))}"

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" "${opts[@]}" >/dev/null
fi
cmake --build "$build" -j"${KL_BUILD_JOBS:-2}" --target cluster_test_core_fsm >/dev/null
bin="$build/tests/cluster/cluster_test_core_fsm"

echo "==> $count seeds from $from ($bin, at most ${limit}s)"
log="$build/fsm-seeds-$from-$count.log"
start=$SECONDS
set +e
KL_FSM_SEEDS="$count" KL_FSM_SEED_FROM="$from" timeout -k 10 "$limit" "$bin" >"$log" 2>&1
rc=$?
set -e
took=$((SECONDS - start))
# The test's own summary: the replay commands of failing seeds, then the totals.
sed -n '/^Failing seeds/,$p' "$log"
grep -q '^random faults:' "$log" || tail -20 "$log"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "==> TIMEOUT after ${took}s (last: $(grep 'RUN' "$log" | tail -1)); full log: $log" >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "==> FAILED (exit $rc) in ${took}s; full log: $log" >&2
  exit 1
fi
echo "==> $count seeds passed in ${took}s"
