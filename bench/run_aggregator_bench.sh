#!/usr/bin/env bash
# What one child costs an aggregator: one keyless-core node (a dev PKI from `keyless devpki`, data
# in a temporary directory, the Raft log fsynced as by default) and one keyless-aggregator above it,
# on loopback, with mutual TLS 1.3 on every link as deployed; then bench_aggregator plays N children
# (gateways: one root per child per 100 ms round, each child on its own TLS connection unless CONNS
# says otherwise) for each N in NS, RUNS times interleaved, and reports per N the medians of the
# aggregator's CPU per round and per child request, the latency, and the same-run SHA-256 reference.
# Before the first run, the aggregator's idle CPU (no children, its parent link and round timer
# only) is read over IDLE seconds, so the per-child cost can be given net of it.
#
# The aggregator's configuration differs from deploy/aggregator.conf in what N children need and
# nothing else: [round] max_requests = 16384 (the default 4096 would refuse the 4,097th root of a
# round with 0x106; 16384 rather than 8192 because a generator that falls behind, or an
# aggregator that reads a burst of 5,000 roots past its round's close, puts up to two periods'
# roots into one round), [limits] max_connections = 20000 and max_connections_per_address = 0 (every
# child comes from 127.0.0.1), idle_timeout = 10m. Everything stays on 127.0.0.1 and in a temporary
# directory removed at exit; every process started here is stopped (TERM, then KILL after 10 s).
# Not a test: nothing here asserts a timed result (BENCHMARKS.md).
#
# usage: bench/run_aggregator_bench.sh [BUILD_DIR] [-- BENCH_AGGREGATOR_ARGS...]
#   BUILD_DIR  a Release build of this tree (default build-bench next to bench/)
# environment:
#   NS="10 100 1000 5000"  the numbers of children, in order
#   RUNS=3        passes over NS (medians per N)
#   ROUNDS=50 WARM=20  measured and warm-up rounds of 100 ms per run
#   CONNS=        connections per run (empty: one per child); e.g. CONNS=50 multiplexes
#   IDLE=10       seconds of the idle reading
#   PLAIN=1       every link plain TCP ([tls] insecure = yes on the core and the aggregator, no
#                 certificates at the children): what TLS costs, by difference with a TLS run
#   VERIFY=50     bench_aggregator -v
#   PERF=N        record the aggregator with `perf record -g` during the first run of this N
#                 (the report's top entries are printed; needs perf and perf_event_paranoid <= 2)
#   OUT=DIR       keep every output and the daemons' logs in DIR
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
bench_args "$HERE/../build-bench" "$@" || exit 2
set -- "${ARGS[@]}"
CORE=$BUILD/core/keyless-core
AGG=$BUILD/aggregator/keyless-aggregator
KL=$BUILD/cli/keyless
BENCH=$BUILD/bench/bench_aggregator
for b in "$CORE" "$AGG" "$KL" "$BENCH"; do
  [ -x "$b" ] || { echo "$0: $b is not built (cmake --build $BUILD --target keyless-core keyless-aggregator keyless-cli bench_aggregator)" >&2; exit 2; }
done
NS=${NS:-10 100 1000 5000}
RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-50}
WARM=${WARM:-20}
CONNS=${CONNS:-}
IDLE=${IDLE:-10}
VERIFY=${VERIFY:-50}
PERF=${PERF:-}
PLAIN=${PLAIN:-0}
bench_out
MODE=tls
[ "$PLAIN" = 1 ] && MODE=plain
bench_build_type
command -v curl >/dev/null || { echo "$0: needs curl" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keyless-aggbench.XXXXXX") || exit 2
CORE_PID='' AGG_PID='' BENCH_PID='' PERF_PID=''
cleanup() {
  for p in "$PERF_PID" "$BENCH_PID" "$AGG_PID" "$CORE_PID" "${LIB_PIDS[@]}"; do
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  done
  wait 2>/dev/null
  keep_outputs -path './data-*' -prune -o -path ./pki -prune -o
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$TMP" || exit 2

bench_machine "; open files limit $(ulimit -n)"
echo "children: $NS; $RUNS pass(es); $WARM + $ROUNDS rounds of 100 ms per run; connections: ${CONNS:-one per child}; links: $([ "$PLAIN" = 1 ] && echo 'plain TCP' || echo 'mutual TLS 1.3')"
echo "the core, the aggregator and bench_aggregator share this machine's $(nproc) cores"

"$KL" devpki -o "$TMP/pki" --email aggregator-bench@keyless.invalid --nodes core:1,aggregator:1,gateway:1 >/dev/null ||
  { echo "devpki failed"; exit 1; }
CA=$TMP/pki/cluster-ca.crt
start_core1 core "$MODE" ||
  { echo "keyless-core did not become leader:"; tail -n 20 "$TMP/core.log"; exit 1; }
CORE_PID=$C1_PID CORE_INTERNAL=$C1_INTERNAL
echo "keyless-core pid $CORE_PID, internal $CORE_INTERNAL"

start_aggregator aggregator "$MODE" "$CORE_INTERNAL" "" "max_requests = 16384" -- "max_connections = 20000" \
  "max_connections_per_address = 0" "idle_timeout = 10m" ||
  { echo "keyless-aggregator did not start:"; cat "$TMP/aggregator.log"; exit 1; }
AGG_PID=$A_PID AGG_PORT=$A_PORT AGG_ADMIN=$A_ADMIN
echo "keyless-aggregator pid $AGG_PID, children 127.0.0.1:$AGG_PORT; $(grep 'event=started' "$TMP/aggregator.log" | head -n1 | sed 's/.*event=started //')"

# wait until the aggregator's parent is up (its /healthz is green), bounded
for _ in $(seq 1 100); do
  curl -s -f -m 2 "http://127.0.0.1:$AGG_ADMIN/healthz" >/dev/null && break
  sleep 0.1
done

# time on a CPU in ns, summed over the threads (/proc/PID/task/*/schedstat), as bench_aggregator reads it
cpu_of() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }
echo "== idle: the aggregator and the core with no children, $IDLE s (load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
a0=$(cpu_of "$AGG_PID"); c0=$(cpu_of "$CORE_PID"); t0=$(date +%s.%N)
sleep "$IDLE"
a1=$(cpu_of "$AGG_PID"); c1=$(cpu_of "$CORE_PID"); t1=$(date +%s.%N)
IDLE_MS_ROUND=$(awk -v a="$((a1 - a0))" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.4f", a / 1e6 / ((t1 - t0) * 10) }')
IDLE_CORE=$(awk -v a="$((c1 - c0))" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.4f", a / 1e6 / ((t1 - t0) * 10) }')
echo "aggregator idle: $IDLE_MS_ROUND ms of CPU per 100 ms round; core: $IDLE_CORE ms per 100 ms"

STATUS=0
ROWS=$TMP/rows.txt
: >"$ROWS"
run_one() { # N PASS
  local n=$1 pass=$2 out=$TMP/run-p$2-n$1.txt c=$1 rc args
  [ -n "$CONNS" ] && [ "$CONNS" -lt "$n" ] && c=$CONNS
  args=(-a "127.0.0.1:$AGG_PORT" -N "$n" -c "$c" -t "$ROUNDS" -w "$WARM" -v "$VERIFY" -s "$((pass * 100000 + n))"
        -D "aggregator:$AGG_PID,core:$CORE_PID")
  [ "$PLAIN" = 1 ] || args+=(-C "$CA" -P "$TMP/pki/nodes/gateway-1.crt" -k "$TMP/pki/nodes/gateway-1.key")
  echo "== pass $pass: $n children over $c connections (load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
  timeout $(((WARM + ROUNDS) / 10 + 200)) "$BENCH" "${args[@]}" "${EXTRA[@]}" >"$out" 2>&1 &
  BENCH_PID=$!
  if [ "$PERF" = "$n" ] && [ "$pass" = 1 ] && command -v perf >/dev/null; then
    # the measured rounds only, roughly: the connect phase is over once "connected:" is printed
    for _ in $(seq 1 1800); do grep -q '^connected:' "$out" 2>/dev/null && break; sleep 0.1; done
    sleep $(((WARM + 5) / 10))
    perf record -g -F 999 -p "$AGG_PID" -o "$TMP/perf-$n.data" -- sleep $((ROUNDS / 10 - 1)) >"$TMP/perf-$n.log" 2>&1 &
    PERF_PID=$!
  fi
  wait "$BENCH_PID"
  rc=$?
  BENCH_PID=
  if [ -n "$PERF_PID" ]; then
    wait "$PERF_PID"
    PERF_PID=
    echo "-- perf: the aggregator during the measured rounds, $n children (self, top 25) --"
    perf report -i "$TMP/perf-$n.data" --no-children -g none --sort dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -n 25
    echo "-- perf: by shared object --"
    perf report -i "$TMP/perf-$n.data" --no-children -g none --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -n 10
  fi
  grep -v '^result ' "$out" | sed -n '/^connected:/,$p'
  [ $rc -ne 0 ] && { echo "bench_aggregator failed (exit $rc):"; tail -n 5 "$out"; STATUS=1; }
  local res
  res=$(grep '^result ' "$out" | head -n1)
  [ -n "$res" ] && echo "$res pass=$pass load1=$(cut -d' ' -f1 /proc/loadavg)" >>"$ROWS"
  return 0
}

EXTRA=("$@")
for pass in $(seq 1 "$RUNS"); do
  for n in $NS; do run_one "$n" "$pass"; done
done

echo "== medians per N ($RUNS pass(es); aggregator idle $IDLE_MS_ROUND ms per round subtracted in 'net') =="
awk -v idle="$IDLE_MS_ROUND" '
  function f(k,   i, a) { for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return a[2] } return "" }
  function med(N, k,   i, j, t, x, m) {
    m = cnt[N]; for (i = 1; i <= m; i++) x[i] = v[N, k, i] + 0
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
    return m % 2 ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2
  }
  {
    N = f("children"); if (!(N in cnt)) order[++no] = N
    c = ++cnt[N]
    ms = f("aggregator_ms_round"); us = f("aggregator_us_req"); h = f("hash_ns")
    v[N, "ms", c] = ms; v[N, "us", c] = us; v[N, "net", c] = 1000 * (ms - idle) / N
    v[N, "hashes", c] = 1000 * (1000 * (ms - idle) / N) / h
    v[N, "core", c] = f("core_ms_round"); v[N, "gen", c] = f("gen_us_req")
    v[N, "p50", c] = f("p50_ms"); v[N, "p99", c] = f("p99_ms"); v[N, "end99", c] = f("end_p99_ms")
    v[N, "fan", c] = f("fan_p50_ms"); v[N, "fanmax", c] = f("fan_max_ms"); v[N, "hash", c] = h
    v[N, "load", c] = f("load1"); bad[N] += (f("kept_up") != "yes"); ver[N] += f("verified"); conns[N] = f("conns")
  }
  END {
    printf "%6s %6s %4s %9s %9s %9s %8s %8s %8s %8s %8s %8s %8s %7s %6s %5s %6s\n", "N", "conns", "runs", "agg ms/rd",
      "us/child", "net us", "hashes", "core ms", "p50 ms", "p99 ms", "end p99", "fan ms", "fan max", "gen us", "hashns", "load", "!kept"
    for (o = 1; o <= no; o++) { N = order[o]
      printf "%6s %6s %4d %9.3f %9.3f %9.3f %8.0f %8.3f %8.1f %8.1f %8.1f %8.1f %8.1f %7.2f %6.1f %5.2f %6d\n", N, conns[N], cnt[N],
        med(N, "ms"), med(N, "us"), med(N, "net"), med(N, "hashes"), med(N, "core"), med(N, "p50"), med(N, "p99"),
        med(N, "end99"), med(N, "fan"), med(N, "fanmax"), med(N, "gen"), med(N, "hash"), med(N, "load"), bad[N]
    }
    print "(agg ms/rd: the aggregator'"'"'s CPU per 100 ms round; us/child: that over the children; net us: less the idle"
    print " CPU, per child request; hashes: net us in SHA-256 aggregation steps of the same run; core ms: the core'"'"'s CPU"
    print " per round; p50/p99: send to answer; end p99: answer after the end of its second; fan: first to last answer of"
    print " a second; gen us: bench_aggregator'"'"'s CPU per request; load: 1-min load average after the run; !kept: runs"
    print " not kept up; every run verified every '"$VERIFY"'th answer)"
  }' "$ROWS"

echo "== stop =="
stop_pid "$AGG_PID"; AGG_PID=
echo "keyless-aggregator exit status $STOP_RC"; [ "$STOP_RC" = 0 ] || STATUS=1
stop_pid "$CORE_PID"; CORE_PID=
echo "keyless-core exit status $STOP_RC"; [ "$STOP_RC" = 0 ] || STATUS=1
for f in "$TMP"/aggregator.log "$TMP"/core.log; do
  w=$(grep -E 'level=(warn|error)' "$f" | grep -c .)
  [ "$w" -gt 0 ] && echo "$(basename "$f"): $w lines at warn or error, e.g. $(grep -E 'level=(warn|error)' "$f" | head -n1)"
done
exit $STATUS
