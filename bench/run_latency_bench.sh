#!/usr/bin/env bash
# Signing latency through the whole hierarchy, as deployed: deploy/local-network (3 core nodes
# with Raft and fsync, 2 aggregators, 2 gateways, an extender, mutual TLS between them), then
# bench_gateway against gateway 1's ksi+tcp port in open loop at each RATE (one request per PDU,
# paced every 2 ms, so arrivals fall evenly over the second, as random ones do on average;
# 128 connections x 64 PDUs in flight, as the gateway reads at most 64 per connection).
# Several builds can be compared in one sitting: each gets its own network, one after the
# other, RUNS times interleaved. Not a test: nothing here asserts a time (BENCHMARKS.md).
#
# usage: bench/run_latency_bench.sh LABEL=BUILD_DIR [LABEL=BUILD_DIR ...]
#   BUILD_DIR  a Release build tree (keyless-core, -aggregator, -gateway, -extender, keyless,
#              bench_gateway built)
# environment: RATES="50 5000" DURATION=20 WARMUP=3 RUNS=2 BASE=21000 (first port block)
#              CONNS=128 (connections; 64 PDUs in flight on each: CONNS*64 requests in flight
#              at most, which caps the rate at about CONNS*64 per second of latency)
#              OUT=DIR (keep every bench_gateway output and the networks' logs)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
NETSCRIPT="$HERE/../deploy/local-network"
RATES=${RATES:-"50 5000"} DURATION=${DURATION:-20} WARMUP=${WARMUP:-3} RUNS=${RUNS:-2} BASE=${BASE:-21000}
CONNS=${CONNS:-128}
OUT=${OUT:-}
[ $# -ge 1 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/keyless-latency.XXXXXX")
NET=""
trap '[ -n "$NET" ] && KL_BUILD="$B" "$NETSCRIPT" down "$NET" >/dev/null 2>&1; rm -rf "$TMP"' EXIT
printf '%-8s %6s %4s %9s %7s %7s %7s %7s %7s\n' build rate run 'sigs/s' p50_ms p90_ms p99_ms max_ms errors
for run in $(seq 1 "$RUNS"); do
  for spec in "$@"; do
    label=${spec%%=*} B=$(cd "${spec#*=}" && pwd)
    NET="$TMP/net-$label-$run"
    # local-network picks a free block of ports; a port taken before its daemon bound it fails
    # the start: then the network is started again on a fresh block (3 tries)
    for try in 1 2 3; do
      KL_BUILD="$B" KL_BASE_PORT=$BASE "$NETSCRIPT" up "$NET" >"$TMP/up.log" 2>&1 && break
      if [ "$try" -lt 3 ] && cat "$NET"/log/*.log 2>/dev/null | grep -qi 'address already in use'; then
        KL_BUILD="$B" "$NETSCRIPT" down "$NET" >/dev/null 2>&1
        rm -rf "$NET"
        echo "($label: a port chosen free was taken before a daemon bound it: started again on fresh ports)"
        continue
      fi
      echo "$label: the network did not come up:"; tail -5 "$TMP/up.log"; exit 1
    done
    # shellcheck disable=SC1091
    . "$NET/network.env"
    read -r -a GWT <<<"$KL_GATEWAY_TCP_URLS"
    addr=${GWT[0]#ksi+tcp://}
    sleep 2
    for rate in $RATES; do
      out="$TMP/$label-$run-$rate.out"
      "$B/bench/bench_gateway" -a "$addr" --user "$KL_USER" --key "$KL_KEY" -c "$CONNS" --inflight 64 --rate "$rate" \
        --duration "$DURATION" --warmup "$WARMUP" --verify-sample 50 >"$out" 2>&1
      # bench_gateway's last line: "result ... sigs_per_s=… p50_ms=… p90_ms=… p99_ms=… max_ms=… errors=…"
      r=$(grep '^result ' "$out" | tail -n 1)
      f() { printf '%s' "$r" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
      printf '%-8s %6s %4s %9s %7s %7s %7s %7s %7s\n' "$label" "$rate" "$run" "$(f sigs_per_s)" "$(f p50_ms)" \
        "$(f p90_ms)" "$(f p99_ms)" "$(f max_ms)" "$(f errors)"
    done
    [ -n "$OUT" ] && { mkdir -p "$OUT"; cp "$TMP"/"$label-$run"-*.out "$OUT/" 2>/dev/null; cp -r "$NET/log" "$OUT/log-$label-$run"; }
    KL_BUILD="$B" "$NETSCRIPT" down "$NET" >/dev/null 2>&1
    NET=""
  done
done
