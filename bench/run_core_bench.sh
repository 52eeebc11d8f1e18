#!/usr/bin/env bash
# The core benchmark, end to end: a fresh 3-node keyless-core cluster per run on loopback ports
# (a dev PKI from `keyless devpki`, data in a temporary directory, the Raft log fsynced as
# libraft does by default; nothing here turns that off), then, for each rate, bench_core plays
# that many aggregators (one top-level request each per second-round, spread over the three
# nodes) for SECS rounds. Around each rate the script reads every node's /metrics and
# /proc/PID/stat; bench_core also reads the nodes' CPU time over exactly the loaded rounds (-D).
# After the rates the nodes get SIGTERM and must exit 0; their calendars must have the same root
# at the last second they all hold (a root commits to every second before it) and pass
# `keyless calendar audit`. RUNS runs, then the medians. Everything stays on 127.0.0.1 and in a
# temporary directory that is removed at exit; every process started here is killed at exit.
# Not a test: nothing here asserts a timed result (BENCHMARKS.md).
#
# TLS: by default every link is mutual TLS 1.3 as deployed (each node's [tls] section with its
# core-N certificate, the cluster CA and its CRL, from `keyless devpki --nodes`): Raft between
# the nodes, forwards and heartbeats on the internal port, and bench_core's connections, which
# present an aggregator certificate. /status is read over https with the admin certificate,
# /metrics from the plain metrics port. KL_BENCH_TLS="1 0" runs the same rates on a plain
# cluster too ([tls] insecure = yes, bench_core without certificates): within each run, one
# fresh cluster per mode, one after the other, so the two modes see the same machine; then the
# medians per mode and the ratios TLS / plain.
#
# usage: bench/run_core_bench.sh [BUILD_DIR] [-- BENCH_CORE_ARGS...]
#   BUILD_DIR  a Release build of this tree (default build-corebench next to bench/)
#   after --   extra flags for bench_core (-o, -W, -l, -K, -T, -v, -s)
# environment:
#   RATES="100 1000 5000 10000 15000 20000"  requests per second-round, in total over the three nodes
#   SECS=20    second-rounds per rate
#   CONNS=60   connections (aggregator links), spread over the three nodes
#   IDLE=10    seconds of an unloaded cluster measured before the rates (0: skip)
#   RUNS=3     runs, each on a fresh cluster
#   KL_BENCH_TLS="1"  the modes, in order: 1 mutual TLS (the default), 0 plain; "1 0" both
#   OUT=DIR    also keep every output, metrics snapshot and node log in DIR
#   TMPDIR     where the nodes' data go (default /tmp)
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
bench_args "$HERE/../build-corebench" "$@" || exit 2
set -- "${ARGS[@]}"
CORE=$BUILD/core/keyless-core
KL=$BUILD/cli/keyless
BENCH=$BUILD/bench/bench_core
for b in "$CORE" "$KL" "$BENCH"; do
  [ -x "$b" ] || { echo "$0: $b is not built (cmake --build $BUILD)" >&2; exit 2; }
done
RATES=${RATES:-100 1000 5000 10000 15000 20000}
SECS=${SECS:-20}
CONNS=${CONNS:-60}
IDLE=${IDLE:-10}
RUNS=${RUNS:-3}
bench_modes
bench_out
bench_build_type
command -v curl >/dev/null || { echo "$0: needs curl" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keyless-corebench.XXXXXX") || exit 2
declare -A PID=()
cleanup() {
  for i in "${!PID[@]}"; do
    p=${PID[$i]}
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  done
  wait 2>/dev/null
  keep_outputs -path '*/data*' -prune -o # everything but the nodes' data directories
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$TMP" || exit 2 # nothing this script writes can land elsewhere
TCK=$(getconf CLK_TCK)

bench_machine "; TMPDIR filesystem: $(tmpdir_fs)"
echo "rates: $RATES; $SECS rounds each; $CONNS connections; idle $IDLE s; $RUNS runs; modes: $MODES; bench_core extra flags: ${*:-none}"
echo "the three nodes and bench_core share this machine's $(nproc) cores"

# Loopback ports: base + 10 * node + {0 raft, 1 internal, 2 replication, 3 admin, 4 metrics}, a
# block chosen free (bench/lib.sh) for each cluster.
OFFSETS=$(for i in 1 2 3; do for k in 0 1 2 3 4; do echo $((i * 10 + k)); done; done)
raft() { echo 127.0.0.1:$((base + $1 * 10)); }
internal() { echo 127.0.0.1:$((base + $1 * 10 + 1)); }
repl() { echo 127.0.0.1:$((base + $1 * 10 + 2)); }
admin() { echo 127.0.0.1:$((base + $1 * 10 + 3)); }
mport() { echo 127.0.0.1:$((base + $1 * 10 + 4)); }

"$KL" devpki -o "$TMP/pki" --email core-bench@keyless.invalid \
  --nodes core:1,core:2,core:3,aggregator:1,admin:operator >/dev/null || { echo "devpki failed"; exit 1; }
MODE=tls # the mode of the cluster running now
ADMIN_TLS=(--cacert "$TMP/pki/cluster-ca.crt" --cert "$TMP/pki/nodes/admin-operator.crt" --key "$TMP/pki/nodes/admin-operator.key")
# /status: on the admin port, mutual TLS with the operator's admin certificate (plain http in
# the plain mode)
status() {
  if [ "$MODE" = tls ]; then curl -s -m 2 "${ADMIN_TLS[@]}" "https://$(admin "$1")/status"
  else curl -s -m 2 "http://$(admin "$1")/status"; fi
}
role_of() { status "$1" | grep -o '"role":"[a-z]*"' | head -n 1 | cut -d'"' -f4; } # the node's own: members[] have roles too
leader() { for i in 1 2 3; do [ "$(role_of "$i")" = leader ] && { echo "$i"; return; }; done; }
last_of() { status "$1" | grep -o '"calendar_last":[0-9-]*' | cut -d: -f2; }

# start_cluster D: a fresh cluster on a free block of ports, its files in D; 1 when it does not
# come up. A node that could not bind a port chosen free (taken meanwhile) has the cluster
# started again on a fresh block (5 tries at most).
start_cluster() {
  local D=$1 try i taken
  for try in 1 2 3 4 5; do
    # shellcheck disable=SC2086
    next_free_base $OFFSETS || return 1
    start_nodes "$D" && return 0
    taken=0
    for i in 1 2 3; do bind_failed "$D/core$i.log" "${PID[$i]}" && taken=1; done
    [ $taken -eq 1 ] || return 1
    for i in 1 2 3; do
      stop_pid "${PID[$i]}"; PID[$i]=""
      retire_log "$D/core$i.log" "$try" >/dev/null
    done
    rm -rf "$D"/data1 "$D"/data2 "$D"/data3
    echo "(a port chosen free was taken before a node bound it: the cluster started again on fresh ports)"
  done
  return 1
}

start_nodes() { # $1: the run's directory
  local D=$1 genesis=$(($(date +%s) - 2))
  for i in 1 2 3; do
    cat >"$D/core$i.conf" <<CONF
# written by run_core_bench.sh; every other key is deploy/core.conf's default (fsync on)
[node]
id = $i
data_dir = $D/data$i
[cluster]
member1 = $(raft 1) $(internal 1) $(repl 1)
member2 = $(raft 2) $(internal 2) $(repl 2)
member3 = $(raft 3) $(internal 3) $(repl 3)
[server]
admin_listen = $(admin "$i")
metrics_listen = $(mport "$i")
[calendar]
genesis = $genesis
[keys]
calendar_auth_cert = $TMP/pki/calendar-auth.crt
calendar_auth_key = $TMP/pki/calendar-auth.key
allow_clear_key = yes
$(tls_section "$MODE" "core-$i")
CONF
    "$CORE" -c "$D/core$i.conf" >>"$D/core$i.log" 2>&1 &
    PID[$i]=$!
  done
  for _ in $(seq 1 150); do [ -n "$(leader)" ] && break; sleep 0.1; done
  [ -n "$(leader)" ] || { echo "no leader within 15 s"; return 1; }
  for i in 1 2 3; do kill -0 "${PID[$i]}" 2>/dev/null || { echo "node $i exited"; return 1; }; done
  for _ in $(seq 1 50); do
    ok=0
    for i in 1 2 3; do curl -sf -m 2 "http://$(mport "$i")/healthz" >/dev/null && ok=$((ok + 1)); done
    [ $ok -eq 3 ] && break
    sleep 0.1
  done
  sleep 3 # a few empty rounds before anything is measured
}

stop_cluster() { # $1: the run's directory; prints a line, returns 1 on an unclean exit
  local D=$1 rc=0 codes=""
  for i in 1 2 3; do kill -TERM "${PID[$i]}" 2>/dev/null; done
  for i in 1 2 3; do
    for _ in $(seq 1 100); do kill -0 "${PID[$i]}" 2>/dev/null || break; sleep 0.1; done
    kill -0 "${PID[$i]}" 2>/dev/null && kill -KILL "${PID[$i]}"
    wait "${PID[$i]}"
    e=$?
    codes="$codes $e"
    [ $e -eq 0 ] || rc=1
    PID[$i]=""
  done
  echo "nodes stopped, exit statuses:$codes"
  return $rc
}

# snap D NAME: every node's /metrics, CPU ticks and role
snap() {
  for i in 1 2 3; do
    curl -s -m 5 "http://$(mport "$i")/metrics" >"$1/$2.metrics$i"
    awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/${PID[$i]}/stat" >"$1/$2.cpu$i"
    role_of "$i" >"$1/$2.role$i"
  done
  date +%s.%N >"$1/$2.time"
}

# delta D BEFORE AFTER: the metric deltas and CPU per round between two snapshots, as key=value
delta() {
  local D=$1 a=$2 b=$3 L="" Lb=""
  for i in 1 2 3; do [ "$(cat "$D/$a.role$i")" = leader ] && Lb=$i; [ "$(cat "$D/$b.role$i")" = leader ] && L=$i; done
  local wall
  wall=$(awk -v t0="$(cat "$D/$a.time")" -v t1="$(cat "$D/$b.time")" 'BEGIN {printf "%.1f", t1 - t0}')
  printf 'leader=%s leader_changed=%s window_s=%s' "${L:-none}" "$([ "$L" = "$Lb" ] && echo no || echo yes)" "$wall"
  for i in 1 2 3; do
    awk -v tck="$TCK" -v i="$i" -v c0="$(cat "$D/$a.cpu$i")" -v c1="$(cat "$D/$b.cpu$i")" '
      FNR == 1 { f++ }
      /^keyless_core_rounds_total / { r[f] = $2 }
      END { n = r[2] - r[1]; cpu = (c1 - c0) / tck
            printf " rounds_%d=%d win_cpu_s_%d=%.2f win_cpu_ms_round_%d=%.1f", i, n, i, cpu, i, (n > 0 ? 1e3 * cpu / n : 0) }' \
      "$D/$a.metrics$i" "$D/$b.metrics$i"
  done
  [ -n "$L" ] || { echo; return; }
  # The leader's histograms: keyless_core_commit_seconds (proposal to commit: durable on a quorum),
  # keyless_core_apply_seconds (applying it: calendar, tree, the leader's own answers) and
  # keyless_core_round_requests (requests per proposed round). Quantiles are interpolated within
  # the bucket, as Prometheus's histogram_quantile does.
  awk '
    FNR == 1 { f++ }
    match($0, /^keyless_core_(commit_seconds|apply_seconds|round_requests)_bucket\{le="([^"]*)"\} /) {
      split($0, kv, "le=\""); split(kv[2], q, "\""); name = ($0 ~ /commit/) ? "c" : ($0 ~ /apply/) ? "a" : "r"
      le = q[1]; if (f == 1) { if (!((name, le) in seen)) { seen[name, le] = 1; ord[name, ++n[name]] = le } }
      v[f, name, le] = $NF
    }
    /^keyless_core_commit_seconds_sum / { cs[f] = $2 } /^keyless_core_commit_seconds_count / { cc[f] = $2 }
    /^keyless_core_apply_seconds_sum / { as[f] = $2 } /^keyless_core_apply_seconds_count / { ac[f] = $2 }
    /^keyless_core_round_requests_sum / { rs[f] = $2 } /^keyless_core_round_requests_count / { rc[f] = $2 }
    function quant(name, p,   k, tot, prev, lo, le, cnt, c0) {
      tot = v[2, name, "+Inf"] - v[1, name, "+Inf"]; if (tot <= 0) return "nan"
      prev = 0; lo = 0
      for (k = 1; k <= n[name]; k++) {
        le = ord[name, k]; cnt = v[2, name, le] - v[1, name, le]
        if (cnt >= p * tot) {
          if (le == "+Inf") return "inf"
          if (cnt == prev) return le
          return lo + (le - lo) * (p * tot - prev) / (cnt - prev)
        }
        prev = cnt; lo = le
      }
      return "nan"
    }
    function bucket(name, p,   k, tot, le, cnt, lo) {
      tot = v[2, name, "+Inf"] - v[1, name, "+Inf"]; lo = 0
      for (k = 1; k <= n[name]; k++) { le = ord[name, k]; cnt = v[2, name, le] - v[1, name, le]
        if (cnt >= p * tot) return lo "-" le; lo = le }
      return "?"
    }
    END {
      dc = cc[2] - cc[1]; dr = rc[2] - rc[1]
      printf " commits=%d commit_mean_ms=%.2f commit_p50_ms=%.2f commit_p50_bucket_ms=%s commit_p99_ms=%.2f commit_p99_bucket_ms=%s commit_max_bucket_ms=%s",
        dc, (dc > 0 ? 1e3 * (cs[2] - cs[1]) / dc : 0), 1e3 * quant("c", 0.5), bucket1k(bucket("c", 0.5)),
        1e3 * quant("c", 0.99), bucket1k(bucket("c", 0.99)), bucket1k(bucket("c", 1))
      da = ac[2] - ac[1]
      printf " apply_mean_ms=%.2f apply_p99_ms=%.2f", (da > 0 ? 1e3 * (as[2] - as[1]) / da : 0), 1e3 * quant("a", 0.99)
      printf " proposals=%d requests_per_round_mean=%.0f\n", dr, (dr > 0 ? (rs[2] - rs[1]) / dr : 0)
    }
    function bucket1k(s,   a) { split(s, a, "-"); return (a[1] * 1e3) "-" (a[2] == "+Inf" ? "inf" : a[2] * 1e3) }
  ' "$D/$a.metrics$L" "$D/$b.metrics$L"
}

STATUS=0
for run in $(seq 1 "$RUNS"); do
 for MODE in $MODES; do
  D="$TMP/run$run-$MODE"
  mkdir -p "$D"
  echo "== run $run of $RUNS, $MODE (load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
  if ! start_cluster "$D"; then STATUS=1; break; fi
  echo "cluster ($MODE): nodes ${PID[1]} ${PID[2]} ${PID[3]} on $(internal 1) $(internal 2) $(internal 3); leader $(leader)"
  if [ "$IDLE" -gt 0 ]; then
    snap "$D" idle0
    sleep "$IDLE"
    snap "$D" idle1
    echo "row run=$run mode=$MODE rate=0 $(delta "$D" idle0 idle1)" | tee -a "$TMP/rows.txt"
  fi
  TLSARGS=()
  [ "$MODE" = tls ] && TLSARGS=(-C "$TMP/pki/cluster-ca.crt" -P "$TMP/pki/nodes/aggregator-1.crt" -k "$TMP/pki/nodes/aggregator-1.key")
  for R in $RATES; do
    snap "$D" "r$R.0"
    # bounded twice: bench_core by its rounds, drain (-T) and guard, and this timeout
    timeout $((SECS + 90)) "$BENCH" -a "$(internal 1),$(internal 2),$(internal 3)" -R "$R" -t "$SECS" -c "$CONNS" \
      -D "${PID[1]},${PID[2]},${PID[3]}" -s "$((run * 1000 + R))" "${TLSARGS[@]}" "$@" >"$D/bench$R.txt" 2>"$D/bench$R.err"
    rc=$?
    snap "$D" "r$R.1"
    sed 's/^/  /' "$D/bench$R.txt" | grep -v '^  result '
    [ -s "$D/bench$R.err" ] && sed 's/^/  stderr: /' "$D/bench$R.err" | head -20
    if [ $rc -ne 0 ]; then
      echo "bench_core failed (exit $rc) at rate $R"
      STATUS=1
      break
    fi
    echo "row run=$run mode=$MODE $(grep '^result ' "$D/bench$R.txt" | cut -d' ' -f2-) $(delta "$D" "r$R.0" "r$R.1")" |
      tee -a "$TMP/rows.txt"
    sleep 2
  done
  # Calendars: the same root at the last second all three hold, and each audits clean.
  min=""
  for i in 1 2 3; do l=$(last_of "$i"); [ -z "$min" ] || [ "${l:-0}" -lt "$min" ] && min=${l:-0}; done
  stop_cluster "$D" || STATUS=1
  roots=$(for i in 1 2 3; do "$KL" calendar root -D "$D/data$i/calendar" --time "$min" 2>&1; done | sort -u | wc -l)
  audits=0
  for i in 1 2 3; do "$KL" calendar audit -D "$D/data$i/calendar" >/dev/null 2>&1 && audits=$((audits + 1)); done
  echo "calendars: root at $min identical on all three: $([ "$roots" -eq 1 ] && echo yes || echo NO); audits clean: $audits of 3"
  [ "$roots" -eq 1 ] && [ $audits -eq 3 ] || STATUS=1
  for i in 1 2 3; do # the plain mode's start-up warning (event=INSECURE) is expected, not counted
    n=$(grep -E 'level=(warn|error)' "$D/core$i.log" | grep -vc 'event=INSECURE')
    echo "node $i log: $n lines at warn or error$([ "$n" -gt 0 ] && echo ':')"
    grep -E 'level=(warn|error)' "$D/core$i.log" | grep -v 'event=INSECURE' | head -5 | sed 's/^/  /'
  done
  [ $STATUS -eq 0 ] || break
 done
 [ $STATUS -eq 0 ] || break
done

# Medians over the runs, per rate. CPU per round: bench_core's reading over the loaded rounds
# (cpu_ms_round_N; for the idle row the window reading), split into the leader and the mean of
# the two followers (which node leads differs between runs).
echo "== medians of $(grep -c '^row .* rate=0 ' "$TMP/rows.txt" 2>/dev/null) idle and $(grep -vc ' rate=0 ' "$TMP/rows.txt" 2>/dev/null) loaded rows =="
[ -s "$TMP/rows.txt" ] && awk '
  { delete kv; for (k = 2; k <= NF; k++) { split($k, a, "="); kv[a[1]] = a[2] }
    R = kv["mode"] ":" kv["rate"]; if (!(R in seen)) { seen[R] = 1; order[++nr] = R }; n[R]++; m = n[R]
    mode[R] = kv["mode"]; rate[R] = kv["rate"]
    L = kv["leader"]; pre = (kv["rate"] == 0) ? "win_cpu_ms_round_" : "cpu_ms_round_"
    lc = kv[pre L]; fc = 0; for (i = 1; i <= 3; i++) if (i != L) fc += kv[pre i] / 2
    val[R, "lead", m] = lc; val[R, "foll", m] = fc
    split("ok retry err lost moved p50_ms p99_ms max_ms end_p50_ms end_p99_ms end_max_ms commit_mean_ms commit_p50_ms commit_p99_ms apply_mean_ms apply_p99_ms requests_per_round_mean gen_cpu", ks, " ")
    for (k in ks) { v = kv[ks[k]]; sub(/%$/, "", v); val[R, ks[k], m] = v }
    up[R] += (kv["kept_up"] == "yes"); lch[R] += (kv["leader_changed"] == "yes")
    bk[R] = bk[R] " " kv["commit_p99_bucket_ms"]
  }
  function med(R, k,   i, j, t, x, c) {
    c = n[R]; for (i = 1; i <= c; i++) x[i] = val[R, k, i]
    if (x[1] == "") return "-"
    for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (x[j] + 0 < x[i] + 0) { t = x[i]; x[i] = x[j]; x[j] = t }
    return c % 2 ? x[(c + 1) / 2] : (x[c / 2] + x[c / 2 + 1]) / 2
  }
  END {
    printf "%-5s %6s %4s %7s %6s %6s %5s %8s %8s %8s %7s %7s %7s %7s %7s %7s %7s %7s %7s %8s %8s %5s %s\n", "mode", "rate", "runs", "kept_up",
      "retry", "lost", "moved", "p50 ms", "p99 ms", "max ms", "end50", "end99", "endmax", "commit", "c p50", "c p99", "apply", "a p99",
      "req/rd", "lead ms", "foll ms", "gen%", "leader changed"
    for (o = 1; o <= nr; o++) { R = order[o]
      printf "%-5s %6s %4d %4d/%-2d %6s %6s %5s %8s %8s %8s %7s %7s %7s %7s %7s %7s %7s %7s %7s %8s %8s %5s %d\n", mode[R], rate[R], n[R], up[R], n[R],
        med(R, "retry"), med(R, "lost"), med(R, "moved"), med(R, "p50_ms"), med(R, "p99_ms"), med(R, "max_ms"),
        med(R, "end_p50_ms"), med(R, "end_p99_ms"), med(R, "end_max_ms"), med(R, "commit_mean_ms"),
        med(R, "commit_p50_ms"), med(R, "commit_p99_ms"), med(R, "apply_mean_ms"), med(R, "apply_p99_ms"),
        med(R, "requests_per_round_mean"), med(R, "lead"),
        med(R, "foll"), med(R, "gen_cpu"), lch[R] }
    print "(latencies in ms: p50/p99/max from send to the OK answer; end50/end99/endmax: after the end of the answer'"'"'s"
    print " second; commit: the leader'"'"'s keyless_core_commit_seconds mean, p50, p99 (interpolated in its buckets):"
    print " proposal to commit, durable on a quorum; apply, a p99: keyless_core_apply_seconds, the leader applying it;"
    print " req/rd: mean requests per proposed round; lead/foll ms: CPU ms per round of the leader and the mean of the"
    print " followers; gen%: bench_core CPU, % of one core; rate 0: the idle cluster)"
    # TLS / plain, from the medians above, where both modes ran the rate
    hdr = 0
    for (o = 1; o <= nr; o++) { R = order[o]; if (mode[R] != "tls" || !(("plain:" rate[R]) in seen)) continue
      P = "plain:" rate[R]
      if (!hdr++) printf "\n== TLS / plain, ratio of the medians ==\n%6s %8s %8s %8s %8s %8s %8s %8s\n", "rate", "commit",
        "c p50", "c p99", "end50", "end99", "lead ms", "foll ms"
      printf "%6s %8s %8s %8s %8s %8s %8s %8s\n", rate[R], ratio(R, P, "commit_mean_ms"), ratio(R, P, "commit_p50_ms"),
        ratio(R, P, "commit_p99_ms"), ratio(R, P, "end_p50_ms"), ratio(R, P, "end_p99_ms"), ratio(R, P, "lead"),
        ratio(R, P, "foll")
    }
    if (hdr) print "(1.00: TLS costs nothing measurable; end50/end99: answers after the end of their second)"
  }
  function ratio(A, B, k,   x, y) { x = med(A, k); y = med(B, k); return (x == "-" || y == "-" || y + 0 == 0) ? "-" : sprintf("%.2f", x / y) }
  ' "$TMP/rows.txt"
exit $STATUS
