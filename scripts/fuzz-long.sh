#!/usr/bin/env bash
# Long fuzzing campaign: builds the libFuzzer drivers with clang and runs each for DURATION of
# CPU time, then merges the inputs that add coverage into the committed corpus.
#
# Usage: scripts/fuzz-long.sh DURATION [DRIVER...]
#   DURATION  CPU time per driver: 600, 600s, 10m, 1h
#   DRIVER    tlv, sig, ... or fuzz_tlv (default: every tests/fuzz/fuzz_*.c)
# Environment:
#   KL_FUZZ_JOBS=N     parallel libFuzzer jobs per driver (-jobs=N -workers=N, each for DURATION/N
#                      wall time); default 1
#   KL_FUZZ_BUILD=DIR  build directory (default build/fuzz-long)
#   KL_BUILD_JOBS=N    make parallelism for the build (default 2)
#   KL_FUZZ_NO_MERGE=1 leave tests/fuzz/corpus/ untouched
#
# Per driver: a fresh working corpus <build>/long/<driver>/corpus starts from
# tests/fuzz/corpus/<driver>/ (when present); the vector folders the CMake test uses
# (<build>/tests/fuzz/<driver>.seeds) are read as extra seeds, with the test's options
# (<driver>.options: -max_len, -timeout, -dict). At the end, -merge=1 picks the working-corpus
# inputs that add coverage beyond the committed corpus and the vector seeds, and copies them
# (each <= max_len) into tests/fuzz/corpus/<driver>/; coverage there means edges, not hit
# counts (-use_counters=0), which keeps the committed corpus to about half the files.
# Crashes, leaks, timeouts and OOMs are copied to tests/fuzz/crashes/<driver>/, and the script
# then exits 1 naming them. A summary per driver is printed and appended to
# tests/fuzz/LONG-RUNS.md. Every step is bounded in time (timeout(1) around each libFuzzer run
# and merge).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in
  *h) secs=$(( ${1%h} * 3600 )) ;;
  *m) secs=$(( ${1%m} * 60 )) ;;
  *s) secs=${1%s} ;;
  *) secs=$1 ;;
esac
[[ "$secs" =~ ^[0-9]+$ ]] && [ "$secs" -gt 0 ] || { echo "fuzz-long: bad DURATION '$1'" >&2; usage; }
shift
jobs="${KL_FUZZ_JOBS:-1}"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz-long: bad KL_FUZZ_JOBS '$jobs'" >&2; exit 2; }
build="${KL_FUZZ_BUILD:-$root/build/fuzz-long}"
case "$build" in /*) ;; *) build="$root/$build" ;; esac
wall=$(( (secs + jobs - 1) / jobs )) # wall time of each job, if it gets a whole CPU

drivers=()
if [ $# -eq 0 ]; then
  for f in "$root"/tests/fuzz/fuzz_*.c; do drivers+=("$(basename "$f" .c | sed 's/^fuzz_//')"); done
else
  for d in "$@"; do
    d="${d#fuzz_}"
    [ -f "$root/tests/fuzz/fuzz_$d.c" ] || { echo "fuzz-long: no driver tests/fuzz/fuzz_$d.c" >&2; exit 2; }
    drivers+=("$d")
  done
fi

command -v clang >/dev/null || { echo "fuzz-long: clang not found" >&2; exit 2; }
echo "==> build ($build)"
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DKL_FUZZ=ON -DKL_WERROR=ON >/dev/null
targets=()
for d in "${drivers[@]}"; do targets+=(--target "fuzz_$d"); done
cmake --build "$build" -j"${KL_BUILD_JOBS:-2}" "${targets[@]}" >/dev/null

commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$root" status --porcelain -- tests/fuzz lib calendar core proto 2>/dev/null | grep -v '^??' || true)" ]; then
  commit="$commit+dirty"
fi
log="$root/tests/fuzz/LONG-RUNS.md"
if [ ! -f "$log" ]; then
  cat >"$log" <<'EOF'
# Long fuzzing runs

Appended by scripts/fuzz-long.sh, one line per driver and run. CPU-minutes are user + system
time of the fuzzing processes (ASan+UBSan builds); exec/s is executions per CPU-second.

| date (UTC) | commit | driver | jobs | CPU-min | execs | exec/s | corpus | crashes |
|---|---|---|---|---|---|---|---|---|
EOF
fi

summary=()
all_crashes=()
for d in "${drivers[@]}"; do
  bin="$build/tests/fuzz/fuzz_$d"
  dir="$build/long/$d"
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/logs"
  committed="$root/tests/fuzz/corpus/$d"
  [ -d "$committed" ] && cp -p "$committed"/* "$dir/corpus/" 2>/dev/null || true
  opts=() seeds=()
  while IFS= read -r l; do [ -n "$l" ] && opts+=("$l"); done <"$build/tests/fuzz/$d.options"
  while IFS= read -r l; do [ -n "$l" ] && [ -d "$l" ] && seeds+=("$l"); done <"$build/tests/fuzz/$d.seeds"
  max_len=70000
  for o in "${opts[@]}"; do case "$o" in -max_len=*) max_len="${o#-max_len=}" ;; esac; done
  per_input=10
  for o in "${opts[@]}"; do case "$o" in -timeout=*) per_input="${o#-timeout=}" ;; esac; done

  echo "==> $d: ${secs}s CPU ($jobs job(s)), corpus $(ls "$dir/corpus" | wc -l) file(s) + ${#seeds[@]} seed folder(s)"
  par=()
  [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
  # libFuzzer limits wall time, not CPU time: on a shared machine a round gets less CPU than
  # its wall time, so rounds continue from the same working corpus until the CPU budget is
  # spent (at most 4 rounds, and no new round after 3 x DURATION/jobs of wall time). Each round
  # is bounded: libFuzzer stops itself after -max_total_time, and timeout(1) is the backstop
  # (a hung input is killed by -timeout; the margin covers that plus startup over the seeds).
  cpu=0 rc=0 round=0 start=$SECONDS slack=$((secs / 20 > 5 ? secs / 20 : 5))
  while [ "$rc" -eq 0 ] && [ "$round" -lt 4 ] && [ $((secs - cpu)) -gt "$slack" ] &&
        [ $((SECONDS - start)) -lt $((3 * wall)) ]; do
    round=$((round + 1))
    left=$(( (secs - cpu + jobs - 1) / jobs ))
    [ "$left" -ge 10 ] || left=10
    mkdir -p "$dir/logs/r$round"
    set +e
    # `times` in the subshell: the CPU time of everything it waited for.
    (cd "$dir/logs/r$round" && timeout -k 30 $((left + 4 * per_input + 120)) "$bin" "${par[@]}" \
        -max_total_time="$left" -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "${opts[@]}" \
        "$dir/corpus" "${seeds[@]}" >fuzz.log 2>&1
     r=$?; times >../times; exit $r)
    rc=$?
    set -e
    used=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } printf "%.0f", t }' "$dir/logs/times")
    cpu=$((cpu + used))
    [ "$round" -eq 1 ] || echo "    round $round: ${left}s wall, ${used}s CPU"
  done
  execs=$(cat "$dir"/logs/r*/*.log | awk '/stat::number_of_executed_units/ { n += $2 } END { print n + 0 }')
  rate=$(awk -v n="$execs" -v c="$cpu" 'BEGIN { printf "%.0f", (c > 0 ? n / c : 0) }')

  crashes=()
  for f in "$dir"/artifacts/crash-* "$dir"/artifacts/leak-* "$dir"/artifacts/timeout-* "$dir"/artifacts/oom-*; do
    [ -e "$f" ] || continue
    mkdir -p "$root/tests/fuzz/crashes/$d"
    cp -p "$f" "$root/tests/fuzz/crashes/$d/"
    crashes+=("tests/fuzz/crashes/$d/$(basename "$f")")
  done
  if [ "$rc" -ne 0 ] && [ ${#crashes[@]} -eq 0 ]; then
    echo "    libFuzzer exited $rc without an artifact: see $dir/logs/" >&2
    crashes+=("exit-$rc(see $dir/logs)")
  fi

  added=0
  if [ "${KL_FUZZ_NO_MERGE:-0}" != 1 ]; then
    # Base = committed corpus + vector seeds; merge adds to it the working inputs with new coverage.
    base="$dir/merge-base"
    rm -rf "$base" && mkdir -p "$base"
    [ -d "$committed" ] && cp -p "$committed"/* "$base/" 2>/dev/null || true
    for s in "${seeds[@]}"; do
      find "$s" -type f -size -$((max_len + 1))c -print0 | while IFS= read -r -d '' f; do
        cp "$f" "$base/seed-$(sha1sum "$f" | cut -c1-40)"
      done
    done
    ls "$base" | sort >"$dir/before"
    set +e
    (cd "$dir/logs" && exec timeout -k 30 $((secs / 2 + 600)) "$bin" -merge=1 -use_counters=0 "${opts[@]}" \
      -merge_control_file="$dir/merge.ctl" "$base" "$dir/corpus" >"$dir/logs/merge.log" 2>&1)
    mrc=$?
    set -e
    if [ "$mrc" -ne 0 ]; then
      echo "    merge exited $mrc: committed corpus unchanged (see $dir/logs/merge.log)" >&2
    else
      mkdir -p "$committed"
      while IFS= read -r f; do
        [ "$(stat -c %s "$base/$f")" -le "$max_len" ] || continue
        cp -p "$base/$f" "$committed/$f"
        added=$((added + 1))
      done < <(ls "$base" | sort | comm -13 "$dir/before" -)
    fi
  fi
  work_n=$(ls "$dir/corpus" | wc -l)
  committed_n=$(ls "$committed" 2>/dev/null | wc -l)
  c_text="${#crashes[@]}"
  [ ${#crashes[@]} -gt 0 ] && c_text="${#crashes[@]}: ${crashes[*]}"
  line=$(printf '%-10s CPU %6ss  execs %11s  exec/s %7s  corpus: working %5s, committed %4s (+%s)  crashes %s' \
    "$d" "$cpu" "$execs" "$rate" "$work_n" "$committed_n" "$added" "$c_text")
  echo "    $line"
  summary+=("$line")
  printf '| %s | %s | %s | %s | %s | %s | %s | %s (+%s) | %s |\n' "$(date -u '+%Y-%m-%d %H:%M')" "$commit" "$d" "$jobs" \
    "$(awk -v c="$cpu" 'BEGIN { printf "%.1f", (c / 60) }')" "$execs" "$rate" "$committed_n" "$added" "$c_text" >>"$log"
  all_crashes+=("${crashes[@]}")
done

echo "==> summary (${secs}s CPU per driver, $jobs job(s); log: tests/fuzz/LONG-RUNS.md)"
for l in "${summary[@]}"; do echo "    $l"; done
if [ ${#all_crashes[@]} -gt 0 ]; then
  echo "==> FAILED: ${#all_crashes[@]} crash(es):" >&2
  for c in "${all_crashes[@]}"; do echo "    $c" >&2; done
  echo "    replay one with: $build/tests/fuzz/fuzz_<driver> <file>" >&2
  exit 1
fi
echo "==> no crashes"
