#!/usr/bin/env bash
# The signing path under load, end to end: one keyless-core node (a dev PKI from `keyless devpki`,
# data in a temporary directory, the Raft log fsynced as libraft does by default; nothing here
# turns that off), one keyless-aggregator above it and one keyless-gateway above that, all on
# loopback; then bench_gateway for each load shape, with the three daemons' CPU over the measured
# window and their RSS (bench_gateway -D reads /proc/PID/stat and /proc/PID/status), and the
# gateway's own /metrics (rounds, their size, the parent's latency, statuses) around each shape.
# The gateway is restarted for every shape, so that its RSS belongs to that shape; the aggregator
# and the core run throughout. The core's ports are chosen free (started again on fresh ones if
# one was taken before it bound it, bench/lib.sh); the aggregator and the gateway listen on port
# 0 and their ports are read from their "event=started" log lines. Everything stays
# on 127.0.0.1 and in a temporary directory that is removed at exit; every process started here is
# stopped (TERM, then KILL after 10 s) at exit. Not a test: nothing here asserts a timed result
# (BENCHMARKS.md).
#
# TLS: by default the chain runs as deployed, every node link mutual TLS 1.3 (each daemon's [tls]
# section with its own certificate from `keyless devpki --nodes`, the cluster CA and its CRL), and
# the gateway also serves https (its [tls] certificate), so one run can load the same gateway over
# ksi+tcp, HTTP and https. KL_BENCH_TLS="1 0" starts a second chain in the plain mode ([tls]
# insecure = yes; https still served, from https_cert/https_key) and runs every shape against
# both, one after the other, so that the two see the same machine. The core and the aggregator
# of both chains run throughout (each sees ten roots a second); the gateway is restarted per
# shape. PASSES=3 runs the whole list of shapes three times, interleaved, and reports the medians
# per shape and mode, and the ratios https / HTTP (same shape otherwise) and TLS / plain.
#
# usage: bench/run_gateway_bench.sh [BUILD_DIR] [-- BENCH_GATEWAY_ARGS...]
#   BUILD_DIR  a Release build of this tree (default build-bench next to bench/)
#   after --   extra flags for every bench_gateway run (e.g. --progress, --seed 7)
# environment:
#   SHAPES="NAME:TRANSPORT:CONNS:INFLIGHT:PER_PDU[:RATE] ..."   the load shapes, in order; TRANSPORT
#              is tcp, http or https; PER_PDU a number or max (bench_gateway --per-pdu max: the
#              max_requests the gateway announces); RATE (requests/s) makes the load open loop,
#              paced, with CONNS x INFLIGHT x PER_PDU as the cap
#   PASSES=1   times the whole list of SHAPES is run (medians per shape when more than one)
#   MAIN="NAME:..."  the main shape, run REPEAT more times after the others (default tcp1-32k)
#   REPEAT=3   runs of MAIN (0: none)
#   KL_BENCH_TLS="1"  the modes, in order: 1 node links over mutual TLS (the default), 0 plain
#              ([tls] insecure = yes); "1 0": both chains, every shape against each
#   DURATION=20 WARMUP=3 DRAIN=10   seconds: the measured window, before it, answers awaited after it
#   VERIFY=100 bench_gateway --verify-sample: every 100th signature is built and verified
#   QUIET=PCT  repeat a shape (at most TRIES times, pausing 5, 10, 15... s) while the rest of the
#              machine used more than PCT% of a core during its window (default 40; "off": never).
#              "The rest" includes interrupt work charged to no process (bench_gateway's "others").
#   TRIES=4
#   THREADS="1"  the gateway's [gateway] threads, in order; "1 2": every shape against a gateway
#              with one loop, then with two (SO_REUSEPORT workers, gateway/gw_threads.h), one
#              after the other, shapes named NAME-t1 and NAME-t2, and the ratios t2 / t1 reported
#   OUT=DIR    also keep every output, metrics snapshot and daemon log in DIR
#   TMPDIR     where the core's data goes (default /tmp)
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
bench_args "$HERE/../build-bench" "$@" || exit 2
set -- "${ARGS[@]}"
CORE=$BUILD/core/keyless-core
AGG=$BUILD/aggregator/keyless-aggregator
GW=$BUILD/gateway/keyless-gateway
KL=$BUILD/cli/keyless
BENCH=$BUILD/bench/bench_gateway
for b in "$CORE" "$AGG" "$GW" "$KL" "$BENCH"; do
  [ -x "$b" ] || { echo "$0: $b is not built (cmake --build $BUILD --target keyless-core keyless-aggregator keyless-gateway keyless-cli bench_gateway)" >&2; exit 2; }
done
# closed loop: one-request PDUs (one SDK call per document), batching SDKs with 16 requests per PDU
# (32 no longer surely fits one 65,535-byte response, so the gateway refuses it with 0x0101: it
# announces what fits, gw_fit.c, 24 before its rounds fill, and takes no more than 19 once its
# rounds hold 10,000 requests; 16 stays under that; PER_PDU "max" takes the number announced when
# bench_gateway starts, which a fuller round can lower), HTTP; open loop (paced) around the knees
DEFAULT_SHAPES="tcp1-4k:tcp:64:64:1 tcp1-16k:tcp:256:64:1 tcp1-32k:tcp:512:64:1 tcp1-64k:tcp:1024:64:1
tcp16-32k:tcp:64:32:16 tcp16-64k:tcp:128:32:16 tcp16-96k:tcp:192:32:16
http1-4k:http:4096:1:1 http16-32k:http:2048:1:16 http16-64k:http:4096:1:16
https1-4k:https:4096:1:1 https16-32k:https:2048:1:16 https16-64k:https:4096:1:16
tcp1-rate10k:tcp:1024:64:1:10000 tcp1-rate20k:tcp:1024:64:1:20000 tcp1-rate25k:tcp:1024:64:1:25000
tcp1-rate27k:tcp:1024:64:1:27500 tcp1-rate30k:tcp:1024:64:1:30000
tcp16-rate50k:tcp:512:32:16:50000 tcp16-rate80k:tcp:512:32:16:80000 tcp16-rate100k:tcp:512:32:16:100000
tcp16-rate120k:tcp:512:32:16:120000 http16-rate60k:http:6144:1:16:60000 https16-rate60k:https:6144:1:16:60000"
SHAPES=${SHAPES:-$DEFAULT_SHAPES}
PASSES=${PASSES:-1}
bench_modes
THREADS=${THREADS:-1}
for t in $THREADS; do
  case $t in [1-9]|[1-9][0-9]) ;; *) echo "$0: THREADS: '$t' is not a number of threads" >&2; exit 2 ;; esac
done
T=${THREADS%% *} # the threads of the gateway started next
MAIN=${MAIN:-tcp1-32k:tcp:512:64:1}
REPEAT=${REPEAT:-3}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
DRAIN=${DRAIN:-10}
VERIFY=${VERIFY:-100}
QUIET=${QUIET:-40}
TRIES=${TRIES:-4}
bench_out
bench_build_type
command -v curl >/dev/null || { echo "$0: needs curl" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keyless-gwbench.XXXXXX") || exit 2
declare -A CORE_PID=() AGG_PID=() AGG_PORT=() CORE_INTERNAL=()
GW_PID='' BENCH_PID=''
cleanup() {
  for p in "$BENCH_PID" "$GW_PID" "${AGG_PID[@]}" "${CORE_PID[@]}" "${LIB_PIDS[@]}"; do
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  done
  wait 2>/dev/null
  keep_outputs -path './data-*' -prune -o -path ./pki -prune -o ! -name users
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$TMP" || exit 2 # nothing this script writes can land elsewhere

bench_machine "; TMPDIR filesystem: $(tmpdir_fs); open files limit $(ulimit -n)"
echo "window $DURATION s after $WARMUP s of warm-up, drain up to $DRAIN s; verify every $VERIFY; $PASSES pass(es) over the shapes; main shape $MAIN x $REPEAT; modes: $MODES"
echo "the core, the aggregator, the gateway and bench_gateway share this machine's $(nproc) cores"

"$KL" devpki -o "$TMP/pki" --email gateway-bench@keyless.invalid --nodes core:1,aggregator:1,gateway:1 >/dev/null ||
  { echo "devpki failed"; exit 1; }
CA=$TMP/pki/cluster-ca.crt

# ---- per mode: one core node (ports chosen free, bench/lib.sh) and one aggregator (port 0) ----
start_chain() { # MODE
  local m=$1
  start_core1 "core-$m" "$m" "$m" ||
    { echo "keyless-core ($m) did not become leader:"; tail -n 20 "$TMP/core-$m.log"; return 1; }
  CORE_PID[$m]=$C1_PID CORE_INTERNAL[$m]=$C1_INTERNAL
  echo "keyless-core ($m) pid ${CORE_PID[$m]}, internal ${CORE_INTERNAL[$m]}, metrics $C1_METRICS"

  start_aggregator "aggregator-$m" "$m" "${CORE_INTERNAL[$m]}" "$m" ||
    { echo "keyless-aggregator ($m) did not start:"; cat "$TMP/aggregator-$m.log"; return 1; }
  AGG_PID[$m]=$A_PID AGG_PORT[$m]=$A_PORT
  echo "keyless-aggregator ($m) pid ${AGG_PID[$m]}, children 127.0.0.1:${AGG_PORT[$m]}"

  # the gateway's configuration: https is served in both modes (in the plain mode from
  # https_cert/https_key, as the node links have no certificate then); no per-address connection
  # cap, since every client connection comes from 127.0.0.1; an idle timeout longer than any
  # connect phase (16,000 TLS handshakes took up to 43 s on a busy 2-core VM, and a connection
  # opened early waits for all the others before its first request)
  local https_files=""
  [ "$m" = plain ] && https_files="https_cert = $TMP/pki/nodes/gateway-1.crt
https_key = $TMP/pki/nodes/gateway-1.key"
  cat >"$TMP/gateway-$m.conf" <<CONF
# written by run_gateway_bench.sh ($m); every other key is deploy/gateway.conf's default
[server]
http_listen = 127.0.0.1:0
tcp_listen = 127.0.0.1:0
https_listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
$https_files
[auth]
users_file = $TMP/users
[round]
name = bench-gw
[parents]
parent1 = 127.0.0.1:${AGG_PORT[$m]}
[limits]
max_connections = 19000
max_connections_per_address = 0
idle_timeout = 10m
$(tls_section "$m" gateway-1)
CONF
}

KEY=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
printf 'bench:%s\n' "$KEY" >"$TMP/users"
chmod 600 "$TMP/users"
for m in $MODES; do start_chain "$m" || exit 1; done

# ---- the gateway: restarted for every shape ----
GW_N=0
start_gateway() { # MODE
  GW_N=$((GW_N + 1))
  GW_LOG=$TMP/gateway$GW_N-$1-t$T.log
  { cat "$TMP/gateway-$1.conf"; printf '[gateway]\nthreads = %s\n' "$T"; } >"$TMP/gateway-$1-t$T.conf"
  "$GW" -c "$TMP/gateway-$1-t$T.conf" >"$GW_LOG" 2>&1 &
  GW_PID=$!
  wait_started "$GW_LOG" "$GW_PID" || { echo "keyless-gateway did not start:"; cat "$GW_LOG"; return 1; }
  GW_HTTP=$(started_field "$GW_LOG" http_port)
  GW_HTTPS=$(started_field "$GW_LOG" https_port)
  GW_TCP=$(started_field "$GW_LOG" tcp_port)
  GW_ADMIN=$(started_field "$GW_LOG" admin_port)
  # it answers once a real signature comes back (bounded: 30 tries)
  for _ in $(seq 1 30); do
    timeout 30 "$BENCH" -a "127.0.0.1:$GW_TCP" --user bench --key "$KEY" -c 1 --inflight 1 --count 1 --drain 5 \
      --verify-sample 1 >"$TMP/probe.txt" 2>&1 && grep -q '^result .* ok=1 ' "$TMP/probe.txt" && return 0
    sleep 1
  done
  echo "keyless-gateway does not sign:"; cat "$TMP/probe.txt"; tail -n 20 "$GW_LOG"
  return 1
}
stop_gateway() {
  stop_pid "$GW_PID"
  GW_PID=
  [ "$STOP_RC" = 0 ] || echo "  (keyless-gateway exit status $STOP_RC)"
}
metrics() { curl -s -m 10 "http://127.0.0.1:$GW_ADMIN/metrics"; }
# mval FILE NAME-WITH-LABELS: the sample's value (0 if absent)
mval() { awk -v k="$2" '$1 == k { v = $2 } END { print v + 0 }' "$1"; }

STATUS=0
ROWS=$TMP/rows.txt
: >"$ROWS"
run_shape() { # NAME:TRANSPORT:CONNS:INFLIGHT:PER_PDU[:RATE] LABEL MODE: tried again while the machine is busy
  local t others
  for t in $(seq 1 "$TRIES"); do
    TRY=$t
    run_once "$1" "$2" "$3" || return 1
    [ "$QUIET" = off ] && return 0
    others=$(grep '^result ' "$TMP/$2.txt" | sed -n 's/.* others_cpu=\([0-9.]*\).*/\1/p')
    [ -z "$others" ] && return 0
    awk -v o="$others" -v q="$QUIET" 'BEGIN { exit !(o > q) }' || return 0
    if [ "$t" -lt "$TRIES" ]; then
      echo "  (the rest of the machine used $others% of a core: tried again after $((5 * t)) s)"
      sed -i '$d' "$ROWS"
      sleep $((5 * t))
    else
      echo "  (the rest of the machine used $others% of a core in all $TRIES tries; the last is kept)"
    fi
  done
}
run_once() {
  local spec=$1 mode=$3 name transport conns inflight per rate port args out rc
  IFS=: read -r name transport conns inflight per rate <<<"$spec"
  [ "$THREADS" = 1 ] || name="$name-t$T"
  out=$TMP/$2.txt
  start_gateway "$mode" || { STATUS=1; return 1; }
  case $transport in
    tcp) port=$GW_TCP ;; http) port=$GW_HTTP ;; https) port=$GW_HTTPS ;;
    *) echo "shape $spec: transport '$transport' is not tcp, http or https"; STATUS=1; stop_gateway; return 1 ;;
  esac
  args=(-a "127.0.0.1:$port" --transport "$transport" -c "$conns" --per-pdu "$per" --user bench --key "$KEY"
        --duration "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" --verify-sample "$VERIFY"
        -D "gateway:$GW_PID,aggregator:${AGG_PID[$mode]},core:${CORE_PID[$mode]}")
  [ "$transport" = tcp ] && args+=(--inflight "$inflight")
  [ "$transport" = https ] && args+=(--ca "$CA")
  [ -n "$rate" ] && args+=(--rate "$rate")
  echo "== $2: $spec, $mode node links, threads $T, try $TRY (load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
  metrics >"$TMP/$2.metrics0"
  # bounded twice: bench_gateway by its connect guard, window, drain and stall guard, and this
  # timeout; in the background so that Ctrl-C or TERM reaches the traps at once
  timeout $((WARMUP + DURATION + DRAIN + 180)) "$BENCH" "${args[@]}" "${EXTRA[@]}" >"$out" 2>&1 &
  BENCH_PID=$!
  wait "$BENCH_PID"
  rc=$?
  BENCH_PID=
  metrics >"$TMP/$2.metrics1"
  cat "$out"
  if [ $rc -ne 0 ]; then
    echo "bench_gateway failed (exit $rc)"
    STATUS=1
  fi
  local m0=$TMP/$2.metrics0 m1=$TMP/$2.metrics1 k c s l d
  k='keyless_tier_round_requests_count{tier="gateway"}'
  c=$(($(mval "$m1" "$k") - $(mval "$m0" "$k")))
  k='keyless_tier_round_requests_sum{tier="gateway"}'
  s=$(($(mval "$m1" "$k") - $(mval "$m0" "$k")))
  l=$(awk -v a="$(mval "$m0" 'keyless_tier_parent_latency_seconds_sum{tier="gateway"}')" \
          -v b="$(mval "$m1" 'keyless_tier_parent_latency_seconds_sum{tier="gateway"}')" -v n="$c" \
          'BEGIN { if (n > 0) printf "%.0f", 1000 * (b - a) / n; else printf "-" }')
  # the gateway counts https PDUs under transport="http" (one histogram for both)
  k="keyless_gateway_pdu_duration_seconds_sum{transport=\"${transport/https/http}\"}"
  d=$(awk -v a="$(mval "$m0" "$k")" -v b="$(mval "$m1" "$k")" \
          -v n0="$(mval "$m0" "${k/_sum/_count}")" -v n1="$(mval "$m1" "${k/_sum/_count}")" \
          'BEGIN { if (n1 > n0) printf "%.0f", 1000 * (b - a) / (n1 - n0); else printf "-" }')
  echo "gateway /metrics over the whole shape (warm-up, drain and the probe included): $c rounds, $s requests," \
    "mean round $( [ "$c" -gt 0 ] && echo $((s / c)) || echo -) requests, mean parent latency $l ms," \
    "mean PDU time in the gateway $d ms;" \
    "by status: $(grep '^keyless_gateway_requests_total' "$m1" | sed 's/keyless_gateway_requests_total{status="\(0x[0-9A-F]*\)"} /\1=/' | tr '\n' ' ')"
  local res
  res=$(grep '^result ' "$out" | head -n1)
  [ -n "$res" ] || echo "$2 result shape=$name mode=$mode transport=$transport conns=$conns failed=1 tries=$TRY" >>"$ROWS"
  [ -n "$res" ] && echo "$2 $res shape=$name mode=$mode rounds=$c round_mean=$( [ "$c" -gt 0 ] && echo $((s / c)) || echo 0) parent_ms=$l gw_pdu_ms=$d tries=$TRY" >>"$ROWS"
  stop_gateway
  return 0
}

EXTRA=("$@")
for pass in $(seq 1 "$PASSES"); do
  n=0
  for spec in $SHAPES; do
    n=$((n + 1))
    for m in $MODES; do
      for T in $THREADS; do
        run_shape "$spec" "$(printf 'p%d-s%02d-%s-%s-t%s' "$pass" "$n" "${spec%%:*}" "$m" "$T")" "$m"
      done
    done
  done
done
for r in $(seq 1 "$REPEAT"); do
  for m in $MODES; do
    for T in $THREADS; do
      run_shape "$MAIN" "main$r-${MAIN%%:*}-$m-t$T" "$m"
    done
  done
done

echo "== table =="
# the fields of a result line, by name
awk '
  function f(k,   i, a) { for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return a[2] } return "-" }
  BEGIN {
    printf "%-26s %-5s %5s %4s %4s %6s %6s %8s %7s %7s %7s %7s %7s %7s %8s %5s %5s %5s %5s %5s %6s %6s %6s %6s %6s %3s\n",
      "run", "tr", "conns", "infl", "/pdu", "rate", "flight", "sigs/s", "PDUs/s", "p50ms", "p90ms", "p99ms",
      "p99.9", "maxms", "errors", "cl%", "gw%", "agg%", "core%", "oth%", "gwMiB", "gwconn", "round", "parent", "gwpdu", "try"
  }
  {
    printf "%-26s %-5s %5s %4s %4s %6s %6s %8.0f %7.0f %7.0f %7.0f %7.0f %7.0f %7.0f %8s %5.0f %5.0f %5.0f %5.0f %5.0f %6.0f %6s %6s %6s %6s %3s\n",
      $1, f("transport"), f("conns"), f("inflight"), f("per_pdu"), f("rate"), f("in_flight"),
      f("sigs_per_s"), f("pdus_per_s"), f("p50_ms"), f("p90_ms"), f("p99_ms"), f("p999_ms"), f("max_ms"),
      f("errors"), f("client_cpu"), f("gateway_cpu"), f("aggregator_cpu"), f("core_cpu"), f("others_cpu"),
      f("gateway_peak_mib"), f("gateway_conn_us"), f("round_mean"), f("parent_ms"), f("gw_pdu_ms"), f("tries")
  }' "$ROWS"
cat <<'LEGEND'
(infl: PDUs in flight per connection (cap); flight: requests in flight, the window's mean; rate: open-loop offered
 requests/s (0: closed loop); sigs/s: status-0 answers in the window / window; p*: PDU latency at the client, ms;
 errors: answers not OK over the whole shape, warm-up and drain included; cl/gw/agg/core/oth: CPU over the window,
 % of one core (oth: the rest of the machine); gwMiB: the gateway's peak RSS; gwconn: the gateway's CPU in the
 connect phase per connection, us (https: mostly the TLS handshake; 10 ms ticks over all connections); from the
 gateway's /metrics over the whole shape: round: mean requests per gateway round; parent: mean ms from a round's
 close to its parent's answer; gwpdu: mean ms from a PDU's arrival at the gateway to its response; try: the try
 kept, see QUIET)
LEGEND

# Medians per shape and mode over the passes, then the ratios: https / http (the same shape
# otherwise, in the same mode) and tls / plain (the same shape).
echo "== medians per shape and mode ($PASSES pass(es)) =="
awk '
  function f(k,   i, a) { for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return a[2] } return "" }
  $1 ~ /^main/ || f("failed") == 1 { if (f("failed") == 1) failed[f("shape") "|" f("mode")]++; next }
  {
    K = f("shape") "|" f("mode"); if (!(K in n)) { order[++nk] = K }
    c = ++n[K]
    ok = f("ok"); sigs = f("sigs_per_s"); win = f("window_s")
    v[K, "sigs", c] = sigs; v[K, "p50", c] = f("p50_ms"); v[K, "p99", c] = f("p99_ms")
    v[K, "gw", c] = f("gateway_cpu"); v[K, "cl", c] = f("client_cpu")
    # CPU per signature in us: % of a core / signatures per second
    v[K, "gwus", c] = (sigs > 0) ? 1e4 * f("gateway_cpu") / sigs : ""
    v[K, "clus", c] = (sigs > 0) ? 1e4 * f("client_cpu") / sigs : ""
    v[K, "conn", c] = f("gateway_conn_us"); v[K, "mib", c] = f("gateway_peak_mib"); v[K, "err", c] = f("errors")
    v[K, "oth", c] = f("others_cpu")
    tr[K] = f("transport"); sh[K] = f("conns") ":" f("inflight") ":" f("per_pdu") ":" f("rate"); md[K] = f("mode")
    nm[K] = f("shape")
  }
  function med(K, k,   i, j, t, x, m) {
    m = n[K]; for (i = 1; i <= m; i++) x[i] = v[K, k, i]
    for (i = 1; i <= m; i++) if (x[i] == "") return ""
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (x[j] + 0 < x[i] + 0) { t = x[i]; x[i] = x[j]; x[j] = t }
    return m % 2 ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2
  }
  function rng(K, k,   i, lo, hi) {
    lo = hi = v[K, k, 1]; for (i = 2; i <= n[K]; i++) { if (v[K, k, i] + 0 < lo + 0) lo = v[K, k, i]; if (v[K, k, i] + 0 > hi + 0) hi = v[K, k, i] }
    return sprintf("%.0f-%.0f", lo, hi)
  }
  function r(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
  END {
    for (K in failed) printf "(%s: %d run(s) failed, left out of the medians)\n", K, failed[K]
    printf "%-18s %-5s %-5s %4s %8s %13s %7s %7s %6s %7s %6s %7s %7s %6s %6s %5s\n", "shape", "mode", "tr", "runs",
      "sigs/s", "(range)", "p50ms", "p99ms", "gw%", "gw us", "cl%", "cl us", "gwconn", "gwMiB", "errors", "oth%"
    for (o = 1; o <= nk; o++) { K = order[o]
      printf "%-18s %-5s %-5s %4d %8.0f %13s %7.0f %7.0f %6.1f %7.1f %6.1f %7.1f %7.1f %6.0f %6.0f %5.0f\n", nm[K], md[K], tr[K], n[K],
        med(K, "sigs"), rng(K, "sigs"), med(K, "p50"), med(K, "p99"), med(K, "gw"), med(K, "gwus"), med(K, "cl"),
        med(K, "clus"), med(K, "conn"), med(K, "mib"), med(K, "err"), med(K, "oth")
    }
    print "(medians over the passes; gw us / cl us: CPU per signature of the gateway / bench_gateway, each run'"'"'s % of a"
    print " core over its signatures/s; gwconn: the gateway'"'"'s CPU per connection in the connect phase, us)"
    hdr = 0
    for (o = 1; o <= nk; o++) { K = order[o]; if (tr[K] != "https") continue
      for (q = 1; q <= nk; q++) { H = order[q]; if (tr[H] != "http" || sh[H] != sh[K] || md[H] != md[K]) continue
        if (!hdr++) printf "\n== https / http, ratio of the medians (same connections, in flight, requests per PDU, rate) ==\n%-36s %-5s %7s %7s %7s %7s %7s %7s\n", "https vs http", "mode", "sigs/s", "p50", "p99", "gw us", "cl us", "gw%"
        printf "%-36s %-5s %7s %7s %7s %7s %7s %7s\n", nm[K] " / " nm[H], md[K], r(med(K, "sigs"), med(H, "sigs")),
          r(med(K, "p50"), med(H, "p50")), r(med(K, "p99"), med(H, "p99")), r(med(K, "gwus"), med(H, "gwus")),
          r(med(K, "clus"), med(H, "clus")), r(med(K, "gw"), med(H, "gw"))
      }
    }
    hdr = 0
    for (o = 1; o <= nk; o++) { K = order[o]; if (md[K] != "tls") continue; P = nm[K] "|plain"; if (!(P in n)) continue
      if (!hdr++) printf "\n== node links TLS / plain, ratio of the medians (same shape) ==\n%-18s %-5s %7s %7s %7s %7s %7s %7s\n", "shape", "tr", "sigs/s", "p50", "p99", "gw us", "cl us", "gw%"
      printf "%-18s %-5s %7s %7s %7s %7s %7s %7s\n", nm[K], tr[K], r(med(K, "sigs"), med(P, "sigs")), r(med(K, "p50"), med(P, "p50")),
        r(med(K, "p99"), med(P, "p99")), r(med(K, "gwus"), med(P, "gwus")), r(med(K, "clus"), med(P, "clus")), r(med(K, "gw"), med(P, "gw"))
    }
    hdr = 0 # THREADS: a gateway of N loops against one loop (NAME-tN / NAME-t1, same mode)
    for (o = 1; o <= nk; o++) { K = order[o]; if (!match(nm[K], /-t[0-9]+$/) || substr(nm[K], RSTART) == "-t1") continue
      B = substr(nm[K], 1, RSTART - 1) "-t1|" md[K]; if (!(B in n)) continue
      if (!hdr++) printf "\n== threads N / 1, ratio of the medians (same shape and mode) ==\n%-22s %-5s %7s %7s %7s %7s %7s %7s\n", "shape", "mode", "sigs/s", "p50", "p99", "gw us", "gw%", "cl us"
      printf "%-22s %-5s %7s %7s %7s %7s %7s %7s\n", nm[K], md[K], r(med(K, "sigs"), med(B, "sigs")), r(med(K, "p50"), med(B, "p50")),
        r(med(K, "p99"), med(B, "p99")), r(med(K, "gwus"), med(B, "gwus")), r(med(K, "gw"), med(B, "gw")), r(med(K, "clus"), med(B, "clus"))
    }
  }' "$ROWS"

if [ "$REPEAT" -gt 0 ]; then
  for m in $MODES; do for T in $THREADS; do
    echo "== the main shape, $REPEAT runs, $m node links, threads $T: ${MAIN} =="
    grep "^main.*-$m-t$T " "$ROWS" | awk '
      function f(k,   i, a) { for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return a[2] } return "" }
      { s[NR] = f("sigs_per_s"); p50[NR] = f("p50_ms"); p99[NR] = f("p99_ms"); e[NR] = f("errors") }
      function med(v, n,   i, j, t, a) {
        for (i = 1; i <= n; i++) a[i] = v[i] + 0
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      }
      END {
        for (i = 1; i <= NR; i++) printf "run %d: %.0f signatures/s, p50 %.0f ms, p99 %.0f ms, errors %s\n", i, s[i], p50[i], p99[i], e[i]
        if (NR) printf "median: %.0f signatures/s, p50 %.0f ms, p99 %.0f ms\n", med(s, NR), med(p50, NR), med(p99, NR)
      }'
  done; done
fi

echo "== stop =="
for m in $MODES; do
  stop_pid "${AGG_PID[$m]}"; AGG_PID[$m]=
  echo "keyless-aggregator ($m) exit status $STOP_RC"
  [ "$STOP_RC" = 0 ] || STATUS=1
  stop_pid "${CORE_PID[$m]}"; CORE_PID[$m]=
  echo "keyless-core ($m) exit status $STOP_RC"
  [ "$STOP_RC" = 0 ] || STATUS=1
done
for f in "$TMP"/gateway*.log "$TMP"/aggregator-*.log "$TMP"/core-*.log; do # the plain mode's INSECURE warning is expected
  w=$(grep -E 'level=(warn|error)' "$f" | grep -vc 'event=INSECURE')
  [ "$w" -gt 0 ] && echo "$(basename "$f"): $w lines at warn or error, e.g. $(grep -E 'level=(warn|error)' "$f" | grep -v 'event=INSECURE' | head -n1)"
done
exit $STATUS
