#!/usr/bin/env bash
# The extender benchmark, end to end: a calendar of realistic size (bench_mkcal, checked with
# `keyless calendar stat`), keyless-extender on kernel-chosen loopback ports (port 0; the ports
# are read from its "event=started" log line, as tests/system/test_extender.sh does), RUNS runs
# of bench_extender over HTTP and ksi+tcp with the daemon's CPU use, the medians of the runs,
# and a clean SIGTERM. Everything stays on 127.0.0.1 and in a temporary directory that is
# removed at exit. Not a test: nothing here asserts a timed result (BENCHMARKS.md).
#
# usage: bench/run_extender_bench.sh [BUILD_DIR] [-- BENCH_EXTENDER_ARGS...]
#   BUILD_DIR  a Release build of this tree (default build-extbench next to bench/)
#   after --    extra flags for bench_extender (-c, -d, -t, -n, -w, -P, -v, -s)
# environment:
#   N=SECONDS  calendar size (default 10000000, about 116 days; about 1 GB in TMPDIR)
#   RUNS=K     runs of bench_extender (default 3)
#   OUT=DIR    also keep each run's output and the daemon's log in DIR
#   QUIET=PCT  bench_extender -q: repeat a measurement (at most 6 tries) while the rest of the
#              machine used more than PCT% of a core (default 40; "off" keeps every measurement).
#              "The rest" includes interrupt work charged to no process: 5-15% of a core here
#              under this load on an otherwise idle machine.
#   TMPDIR     where the calendar goes (default /tmp)
#   WORKERS=W  [server] workers of the daemon (default: the key left out, i.e. one per CPU)
#   DAEMONS="LABEL=PATH[@W] ..."  several keyless-extender binaries (e.g. an older commit's build)
#              on the same calendar, each with its own config (workers = W when @W is given; an
#              older binary may not know the key), all started at once and idle but for the one
#              measured: each run measures them one after the other, in the order given, so that
#              they share the machine's state (A/B). Default: "this=BUILD's keyless-extender[@WORKERS]".
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
bench_args "$HERE/../build-extbench" "$@" || exit 2
set -- "${ARGS[@]}"
EXT=$BUILD/extender/keyless-extender
KEYLESS=$BUILD/cli/keyless
BENCH=$BUILD/bench/bench_extender
MKCAL=$BUILD/bench/bench_mkcal
for b in "$EXT" "$KEYLESS" "$BENCH" "$MKCAL"; do
  [ -x "$b" ] || { echo "$0: $b is not built (cmake --build $BUILD)" >&2; exit 2; }
done
N=${N:-10000000}
RUNS=${RUNS:-3}
QUIET=${QUIET:-40}
QFLAG=(-q "$QUIET")
[ "$QUIET" = off ] && QFLAG=()
bench_build_type

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keyless-extbench.XXXXXX") || exit 2
PID=
PIDS_ALL=()
cleanup() {
  for p in "${PIDS_ALL[@]}"; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_machine "; loopback MTU $(cat /sys/class/net/lo/mtu 2>/dev/null || echo '?')"

echo "== calendar =="
"$MKCAL" -D "$TMP/cal" -N "$N" || exit 1
"$KEYLESS" calendar stat -D "$TMP/cal" || exit 1

KEY=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
printf 'bench:%s\n' "$KEY" >"$TMP/users"
chmod 600 "$TMP/users"
DAEMONS=${DAEMONS:-"this=$EXT${WORKERS:+@$WORKERS}"}
LABELS=()
declare -A D_PID D_HTTP D_TCP D_ADMIN
echo "== daemons =="
for spec in $DAEMONS; do
  label=${spec%%=*}
  bin=${spec#*=}
  w=
  case $bin in *@*) w=${bin##*@}; bin=${bin%@*} ;; esac
  [ -x "$bin" ] || { echo "$0: $bin is not an executable ($spec)" >&2; exit 2; }
  cat >"$TMP/ext-$label.conf" <<EOF
# written by run_extender_bench.sh; the other keys are deploy/extender.conf's defaults
[server]
http_listen = 127.0.0.1:0
tcp_listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
${w:+workers = $w}
[calendar]
dir = $TMP/cal
[auth]
users_file = $TMP/users
EOF
  "$bin" -c "$TMP/ext-$label.conf" 2>"$TMP/ext-$label.log" &
  PID=$!
  PIDS_ALL+=("$PID")
  wait_started "$TMP/ext-$label.log" "$PID" 200
  LINE=$(grep 'event=started' "$TMP/ext-$label.log")
  HTTP=$(started_field "$TMP/ext-$label.log" http_port)
  TCP=$(started_field "$TMP/ext-$label.log" tcp_port)
  ADMIN=$(started_field "$TMP/ext-$label.log" admin_port)
  if [ -z "$HTTP" ] || [ -z "$TCP" ]; then
    echo "keyless-extender $label did not start:"
    cat "$TMP/ext-$label.log"
    exit 1
  fi
  LABELS+=("$label")
  D_PID[$label]=$PID D_HTTP[$label]=$HTTP D_TCP[$label]=$TCP D_ADMIN[$label]=$ADMIN
  echo "$label: $bin pid $PID, http 127.0.0.1:$HTTP, ksi+tcp 127.0.0.1:$TCP, admin 127.0.0.1:$ADMIN," \
    "$(printf '%s' "$LINE" | grep -o 'workers=[0-9]*' || echo 'no workers key (one loop thread)') (log level info)"
done

STATUS=0
for r in $(seq 1 "$RUNS"); do
  for label in "${LABELS[@]}"; do
    echo "== run $r of $RUNS, daemon $label (load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
    # bounded twice: bench_extender by -t/-n and its stall guard, and this timeout
    timeout 900 "$BENCH" -H "127.0.0.1:${D_HTTP[$label]}" -T "127.0.0.1:${D_TCP[$label]}" -u bench -k "$KEY" \
      -D "${D_PID[$label]}" "${QFLAG[@]}" -s "$r" "$@" >"$TMP/run$r-$label.txt"
    rc=$?
    cat "$TMP/run$r-$label.txt"
    if [ $rc -ne 0 ]; then
      echo "bench_extender failed (exit $rc)"
      STATUS=1
      break 2
    fi
  done
done

for label in "${LABELS[@]}"; do
if [ $STATUS -eq 0 ] && [ "$RUNS" -gt 1 ]; then
  echo "== daemon $label: medians of $RUNS runs, column by column (answers/s, latency in us, cpu, us of CPU per answer) =="
  # key = mode conns depth; columns 6 (answers/s), 7-10 (p50 p90 p99 max), 12-14 (cpu %: bench_extender,
  # daemon, others), 15-16 (us of CPU per answer: bench_extender, daemon)
  cat "$TMP"/run*-"$label".txt | awk '
    $1 ~ /^(http|ksi\+tcp)$/ && $2 ~ /^[0-9]+$/ {
      k = $1 " " $2 " " $3
      if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
      n[k]++
      for (c = 6; c <= 16; c++) { v = $c; sub(/%$/, "", v); val[k, c, n[k]] = v }
    }
    function med(k, c,   i, j, t, a, m) {
      m = n[k]
      for (i = 1; i <= m; i++) a[i] = val[k, c, i] + 0
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    END {
      printf "%-8s %5s %5s %4s %10s %8s %8s %8s %9s %6s %6s %6s %9s %9s\n", "mode", "conns", "depth", "runs",
             "answers/s", "p50 us", "p90 us", "p99 us", "max us", "cpu", "daemon", "others", "us/req cl", "us/req dm"
      for (i = 1; i <= nk; i++) {
        k = order[i]; split(k, f, " ")
        printf "%-8s %5s %5s %4d %10.0f %8.1f %8.1f %8.1f %9.1f %5.0f%% %5.0f%% %5.0f%% %9.1f %9.1f\n",
               f[1], f[2], f[3], n[k], med(k, 6), med(k, 7), med(k, 8), med(k, 9), med(k, 10), med(k, 12), med(k, 13),
               med(k, 14), med(k, 15), med(k, 16)
      }
    }'
fi
done

if [ $STATUS -eq 0 ] && [ -n "${QFLAG[*]}" ]; then
  echo "measurements kept although the rest of the machine used more than $QUIET% of a core in every try:" \
    "$(cat "$TMP"/run*.txt | grep -c 'in all [0-9]* tries')"
fi

EXIT=0
for label in "${LABELS[@]}"; do
  PID=${D_PID[$label]}
  if command -v curl >/dev/null; then
    echo "== daemon $label: its own counters =="
    curl -s --max-time 10 "http://127.0.0.1:${D_ADMIN[$label]}/metrics" |
      grep -E '^keyless_extender_(requests|pdus)_total|^keyless_net_(bad_input|connections_rejected)_total' |
      grep -v ' 0$'
  fi
  echo "== daemon $label: stop =="
  stop_pid "$PID"
  rc=$STOP_RC
  [ $rc -eq 0 ] || EXIT=$rc
  echo "keyless-extender $label exit status $rc; log lines at warn or error:" \
    "$(grep -cE 'level=(warn|error)' "$TMP/ext-$label.log")"
done
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && cp "$TMP"/run*.txt "$TMP"/ext-*.log "$OUT"/ && echo "outputs kept in $OUT"
fi
[ $STATUS -eq 0 ] && [ $EXIT -eq 0 ]
