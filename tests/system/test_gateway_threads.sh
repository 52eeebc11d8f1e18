#!/usr/bin/env bash
# System test of a gateway on several cores ([gateway] threads = 2, gateway/gw_threads.h): one
# keyless-core node, one aggregator, and a gateway whose two worker loops share its HTTP and
# ksi+tcp ports (SO_REUSEPORT), each collecting its own subtree, joined into one round root.
#
#   1. A bad threads value is refused by --check-config with a message naming the key; SIGHUP
#      reloads the users file in the main loop and in each worker (a new login then signs).
#   2. 8 clients at once (4 over HTTP, 4 over ksi+tcp, 15 documents each, one connection per
#      document so the kernel spreads them over both workers): every request answered, every
#      signature verifies (internal policy), and signatures name both workers ("NAME/w0",
#      "NAME/w1") in the top chain's metadata.
#   3. /metrics: both workers answered requests (keyless_gateway_requests_total{worker}), the
#      PDU counters are summed over them, and the aggregator saw exactly one request
#      per gateway round, while those rounds held more roots than there were rounds (the
#      workers' subtrees were joined into one root, not sent up once per worker).
#      The PDU duration histograms are exported (the workers' merged: a count per PDU answered)
#      and the late-root counter is there.
#   4. A second gateway with per_client = 1: a worker's refusals (0x0105) show on the main
#      loop's /metrics.
#   5. A third gateway whose rounds hold 4 requests: a burst of 240 one-request documents in
#      PDUs of up to 48 requests (more than a worker's round, and more worker roots than the
#      tier's round of 32 holds) with no retries: every request signed (no 0x0106), every
#      signature verifies, worker rounds closed full show on /metrics
#      (keyless_tier_rounds_closed_full_total{tier="gateway_worker"}).
#   6. SIGTERM: the gateway exits 0 and logs event=stopped; no sanitizer report.
#
# usage: test_gateway_threads.sh KEYLESS_CORE KEYLESS_AGGREGATOR KEYLESS_GATEWAY KEYLESS
# "ok - NAME" / "not ok - NAME: ..." per check, then "N passed, M failed". Every wait is a
# bounded poll; nothing asserts a duration.
set -u
if [ $# -ne 4 ]; then
  echo "usage: $0 KEYLESS_CORE KEYLESS_AGGREGATOR KEYLESS_GATEWAY KEYLESS" >&2
  exit 2
fi
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
CORE=$(abs "$1") AGG=$(abs "$2") GW=$(abs "$3") KL=$(abs "$4")
for b in "$CORE" "$AGG" "$GW" "$KL"; do [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }; done
DEPLOY="$(dirname "$(abs "$0")")/../../deploy"
command -v curl >/dev/null || { echo "$0: curl is needed" >&2; exit 2; }

. "$(dirname "$0")/harness.sh" gateway-threads
# (finish, bail, start, logged, metric, tls, start_core, aggregator_conf and gateway_conf: harness.sh)

# ---- the network: core, aggregator (deploy/aggregator.conf), gateway (deploy/gateway.conf) ----
EMAIL=gwthreads@keyless.invalid
run "$KL" devpki -o pki --email "$EMAIL" --nodes core:1,aggregator:agg1,gateway:gw-mt
[ "$RC" -eq 0 ] || bail "devpki: $(short "$OUT")"
start_core

aggregator_conf agg1 >agg.conf
start agg "$AGG" agg.conf || { cat agg.log; bail "keyless-aggregator started"; }
A1=$(logged agg port) A_ADM=$(logged agg admin_port)

printf 'alice:alice-key\n' >users
chmod 600 users
# gw_conf THREADS: deploy/gateway.conf for gw-mt under the aggregator alone, with THREADS loops.
gw_conf() { gateway_conf gw-mt "127.0.0.1:$A1" -e "s#^parent2 =.*#parent2 =#" -e "s#^threads = .*#threads = $1#"; }

# ---- 1. bad input ----
gw_conf 0 >bad.conf
run "$GW" -c bad.conf --check-config
check "threads = 0 is refused" 2 "$RC"
check_has "the message names [gateway] threads" "threads" "$OUT"
gw_conf 2 >gw.conf
check "gw.conf sets threads = 2" 1 "$(grep -c '^threads = 2$' gw.conf)"

# ---- 2. many clients over both transports at once ----
start gw "$GW" gw.conf || { cat gw.log; bail "keyless-gateway started"; }
check "the gateway started with 2 threads" 2 "$(logged gw threads)"
HTTP=$(logged gw http_port) TCP=$(logged gw tcp_port) G_ADM=$(logged gw admin_port)
for _ in $(seq 1 100); do [ "$(metric "$G_ADM" keyless_gateway_parents_up)" = 1 ] && break; sleep 0.1; done
# SIGHUP: the main loop and each worker reload the users file (one users_loaded line each).
printf 'alice:alice-key\nbob:bob-key\n' >users
kill -HUP "${PID[gw]}"
for _ in $(seq 1 50); do [ "$(grep -c 'event=users_loaded logins=2' gw.log)" -ge 3 ] && break; sleep 0.1; done
check "SIGHUP: the main loop and both workers reloaded the users" 3 "$(grep -c 'event=users_loaded logins=2' gw.log)"
bob=0
for k in 1 2 3 4 5 6; do # a new connection each: the kernel spreads them over the workers
  echo "bob $k" >"bob$k"
  url="ksi+tcp://127.0.0.1:$TCP"
  [ $((k % 2)) -eq 0 ] && url="http://127.0.0.1:$HTTP/"
  timeout 40 "$KL" sign -S "$url" --aggr-user bob --aggr-key bob-key -i "bob$k" -o "bob$k.ksig" >/dev/null 2>&1 &&
    bob=$((bob + 1))
done
check "a login added by the reload signs through both transports" 6 "$bob"
BOB=6
CLIENTS=8 DOCS=15
client() { # client I URL: DOCS documents, one `keyless sign` (one connection) each
  local i=$1 url=$2 k
  mkdir -p "docs/$i"
  for k in $(seq 1 "$DOCS"); do
    echo "client $i document $k $RANDOM" >"docs/$i/d$k"
    timeout 40 "$KL" sign -S "$url" --aggr-user alice --aggr-key alice-key --retry-for 20s \
      -i "docs/$i/d$k" -o "docs/$i/d$k.ksig" >"docs/$i/d$k.log" 2>&1
    echo "$?" >>"docs/$i/status"
  done
}
CPIDS=()
for i in $(seq 1 "$CLIENTS"); do
  if [ $((i % 2)) -eq 0 ]; then client "$i" "http://127.0.0.1:$HTTP/" & else client "$i" "ksi+tcp://127.0.0.1:$TCP" & fi
  CPIDS+=("$!")
done
wait "${CPIDS[@]}" # each sign is bounded by timeout 40
TOTAL=$((CLIENTS * DOCS))
check "every request got an answer" "$TOTAL" "$(cat docs/*/status | wc -l)"
check "every request was signed" "$TOTAL" "$(cat docs/*/status | grep -c '^0$')"
bad=0 w0=0 w1=0
for f in docs/*/*.ksig; do
  "$KL" verify -i "$f" -f "${f%.ksig}" --policy internal >/dev/null 2>&1 || bad=$((bad + 1))
  ins=$("$KL" inspect -i "$f" 2>/dev/null)
  case "$ins" in *'client="gw-mt/w0" machine="gw-mt"'*) w0=$((w0 + 1)) ;; esac
  case "$ins" in *'client="gw-mt/w1" machine="gw-mt"'*) w1=$((w1 + 1)) ;; esac
done
check "every signature verifies ($(ls docs/*/*.ksig | wc -l))" 0 "$bad"
check "every signature names its worker in the top chain" "$TOTAL" "$((w0 + w1))"
[ "$w0" -gt 0 ] && [ "$w1" -gt 0 ] && pass "signatures from both workers ($w0 + $w1)" ||
  fail "signatures from both workers" "both > 0" "$w0 + $w1"
run "$KL" inspect -i docs/1/d1.ksig
check_has "the login in the worker's chain" 'identity client="alice" machine="gw-mt"' "$OUT"
check_has "the gateway named in the aggregator's chain" 'identity client="gw-mt" machine="agg1"' "$OUT"

# ---- 3. metrics: per worker, summed, and one parent request per round ----
r0=0 r1=0
for _ in $(seq 1 50); do # the workers' counters reach the main loop at its next round tick
  r0=$(metric "$G_ADM" 'keyless_gateway_requests_total{status="0x0000",worker="0"}')
  r1=$(metric "$G_ADM" 'keyless_gateway_requests_total{status="0x0000",worker="1"}')
  [ $((r0 + r1)) = $((TOTAL + BOB)) ] && break
  sleep 0.1
done
[ "$r0" -gt 0 ] && [ "$r1" -gt 0 ] && pass "both workers served requests ($r0 + $r1)" ||
  fail "both workers served requests" "both > 0" "$r0 + $r1"
check "the per-worker counts add up (and bob's $BOB)" "$((TOTAL + BOB))" "$((r0 + r1))"
# Each `keyless sign` sends two PDUs (a configuration request, then the signing request), each on
# a connection of its own: the main loop's sums of the workers' counters must show them all.
ph=$(metric "$G_ADM" 'keyless_gateway_pdus_total{transport="http",status="0x0000"}')
pt=$(metric "$G_ADM" 'keyless_gateway_pdus_total{transport="tcp",status="0x0000"}')
ch=$(metric "$G_ADM" 'keyless_net_connections_accepted_total{server="http"}')
ct=$(metric "$G_ADM" 'keyless_net_connections_accepted_total{server="tcp"}')
echo "# PDUs answered: http $ph, tcp $pt; connections accepted: http $ch, tcp $ct"
[ "$ph" -ge $((TOTAL / 2)) ] && [ "$pt" -ge $((TOTAL / 2)) ] && pass "PDUs summed over the workers, by transport" ||
  fail "PDUs summed over the workers, by transport" "each >= $((TOTAL / 2))" "http $ph, tcp $pt"
check "connections summed over the workers (one per PDU)" "$((ph + pt))" "$((ch + ct))"
for f in bob*.ksig; do
  ins=$("$KL" inspect -i "$f" 2>/dev/null)
  case "$ins" in *'client="gw-mt/w0" machine="gw-mt"'*) w0=$((w0 + 1)) ;; esac
  case "$ins" in *'client="gw-mt/w1" machine="gw-mt"'*) w1=$((w1 + 1)) ;; esac
done
check "signatures per worker match its counter" "$r0 $r1" "$w0 $w1"
rounds=$(metric "$G_ADM" 'keyless_tier_rounds_total{tier="gateway",outcome="answered"}')
roots=$(metric "$G_ADM" 'keyless_tier_round_requests_sum{tier="gateway"}')
parent=$(metric "$A_ADM" 'keyless_aggregator_requests_total{status="0x0000"}')
echo "# gateway rounds $rounds, worker roots in them $roots, aggregator requests $parent"
check "the aggregator got one request per gateway round" "$rounds" "$parent"
[ "$roots" -gt "$rounds" ] && pass "rounds joined both workers' roots ($roots roots in $rounds rounds)" ||
  fail "rounds joined both workers' roots" "roots > rounds" "$roots roots in $rounds rounds"
check "no tier round failed" 0 "$(metric "$G_ADM" 'keyless_tier_rounds_total{tier="gateway",outcome="failed"}')"
# The workers' PDU durations, merged on the main loop: one observation per PDU answered.
dh=0 dt=0
for _ in $(seq 1 50); do
  dh=$(metric "$G_ADM" 'keyless_gateway_pdu_duration_seconds_count{transport="http"}')
  dt=$(metric "$G_ADM" 'keyless_gateway_pdu_duration_seconds_count{transport="tcp"}')
  [ "$dh" -ge "$ph" ] && [ "$dt" -ge "$pt" ] && break
  sleep 0.1
done
[ "$dh" -ge "$ph" ] && [ "$dt" -ge "$pt" ] && [ "$ph" -gt 0 ] &&
  pass "PDU durations exported with threads (http $dh, tcp $dt observations)" ||
  fail "PDU durations exported with threads" "http >= $ph, tcp >= $pt" "http $dh, tcp $dt"
inf=$(metric "$G_ADM" 'keyless_gateway_pdu_duration_seconds_bucket{transport="tcp",le="+Inf"}')
check "the merged histogram's +Inf bucket is its count" "$dt" "$inf"
body=$(curl -s -m 5 "http://127.0.0.1:$G_ADM/metrics")
check_has "the late worker roots are counted" "keyless_gateway_worker_roots_late_total " "$body"
echo "# worker roots late: $(metric "$G_ADM" keyless_gateway_worker_roots_late_total)"

# ---- refused requests reach the main loop's /metrics too (by worker) ----
# A second gateway, threads 2, one request per client and round: a PDU of 4 requests has 3 refused
# with 0x0105 (over quota) by the worker that took it.
gw_conf 2 | sed -e 's#^per_client = .*#per_client = 1#' >gw2.conf
start gw2 "$GW" gw2.conf || { cat gw2.log; bail "the second gateway started"; }
G2_ADM=$(logged gw2 admin_port)
for _ in $(seq 1 100); do [ "$(metric "$G2_ADM" keyless_gateway_parents_up)" = 1 ] && break; sleep 0.1; done
for k in 1 2 3 4; do echo "quota $k" >"q$k"; done
run timeout 40 "$KL" sign -S "ksi+tcp://127.0.0.1:$(logged gw2 tcp_port)" --aggr-user alice --aggr-key alice-key \
  --max-lvl 0 --retry-for 0 -i q1 -i q2 -i q3 -i q4
[ "$RC" -ne 0 ] && pass "over quota: the client is told (exit $RC)" || fail "over quota: the client is told" "a failure" "exit 0"
q=0
for _ in $(seq 1 50); do
  q=$(( $(metric "$G2_ADM" 'keyless_gateway_requests_total{status="0x0105",worker="0"}') + \
    $(metric "$G2_ADM" 'keyless_gateway_requests_total{status="0x0105",worker="1"}') ))
  [ "$q" -ge 1 ] && break
  sleep 0.1
done
[ "$q" -ge 1 ] && pass "a worker's 0x0105 refusals are on the main /metrics ($q)" ||
  fail "a worker's 0x0105 refusals are on the main /metrics" ">= 1" "$q"
kill -TERM "${PID[gw2]}"

# ---- 5. a burst bigger than a worker's round: full rounds close early, nothing is refused ----
gw_conf 2 | sed -e '/^\[round\]/,/^\[/ s#^max_requests = .*#max_requests = 4#' >gw3.conf
check "gw3.conf: rounds of 4 requests" 1 "$(grep -c '^max_requests = 4$' gw3.conf)"
start gw3 "$GW" gw3.conf || { cat gw3.log; bail "the third gateway started"; }
G3_ADM=$(logged gw3 admin_port) G3_TCP=$(logged gw3 tcp_port)
for _ in $(seq 1 100); do [ "$(metric "$G3_ADM" keyless_gateway_parents_up)" = 1 ] && break; sleep 0.1; done
BURST=240
mkdir -p burst
for k in $(seq 1 "$BURST"); do echo "burst $k $RANDOM" >"burst/b$k"; done
# One request per document (--max-lvl 0), 48 per PDU, 4 PDUs in flight on their own
# connections; --retry-for 0: a single refusal fails the run.
run timeout 60 "$KL" sign -S "ksi+tcp://127.0.0.1:$G3_TCP" --aggr-user alice --aggr-key alice-key --max-lvl 0 \
  --retry-for 0 --max-in-flight 4 -i burst/b*
check "the burst: every request signed at once (exit 0)" 0 "$RC"
[ "$RC" -eq 0 ] || echo "# $(short "$OUT")"
bad=0 n=0
for f in burst/b*.ksig; do
  [ -f "$f" ] || continue
  n=$((n + 1))
  "$KL" verify -i "$f" -f "${f%.ksig}" --policy internal >/dev/null 2>&1 || bad=$((bad + 1))
done
check "the burst: a signature per document" "$BURST" "$n"
check "the burst: every signature verifies" 0 "$bad"
full=0
for _ in $(seq 1 50); do
  full=$(metric "$G3_ADM" 'keyless_tier_rounds_closed_full_total{tier="gateway_worker"}')
  [ "$full" -ge 1 ] && break
  sleep 0.1
done
[ "$full" -ge 1 ] && pass "full worker rounds closed early ($full), on the main /metrics" ||
  fail "full worker rounds closed early, on the main /metrics" ">= 1" "$full"
ok3=0
for _ in $(seq 1 50); do
  ok3=$(( $(metric "$G3_ADM" 'keyless_gateway_requests_total{status="0x0000",worker="0"}') + \
    $(metric "$G3_ADM" 'keyless_gateway_requests_total{status="0x0000",worker="1"}') ))
  [ "$ok3" -ge "$BURST" ] && break
  sleep 0.1
done
check "the burst: answered 0x0000 by the workers" "$BURST" "$ok3"
check "the burst: no 0x0106 refusal" 0 "$(( $(metric "$G3_ADM" 'keyless_gateway_requests_total{status="0x0106",worker="0"}') + \
  $(metric "$G3_ADM" 'keyless_gateway_requests_total{status="0x0106",worker="1"}') ))"
echo "# gw3: worker rounds closed full $full, tier rounds closed full" \
  "$(metric "$G3_ADM" 'keyless_tier_rounds_closed_full_total{tier="gateway"}'), roots late" \
  "$(metric "$G3_ADM" keyless_gateway_worker_roots_late_total)"
kill -TERM "${PID[gw3]}"
rc3=""
for _ in $(seq 1 100); do kill -0 "${PID[gw3]}" 2>/dev/null || { wait "${PID[gw3]}"; rc3=$?; break; }; sleep 0.1; done
check "SIGTERM: the third gateway exits 0 (its log complete for the sanitizer check)" 0 "$rc3"

# ---- 6. graceful stop ----
kill -TERM "${PID[gw]}"
rc=""
for _ in $(seq 1 100); do kill -0 "${PID[gw]}" 2>/dev/null || { wait "${PID[gw]}"; rc=$?; break; }; sleep 0.1; done
check "SIGTERM: the gateway exits 0" 0 "$rc"
check "the gateway logged event=stopped" 1 "$(grep -c 'event=stopped' gw.log)"
kill -TERM "${PID[agg]}" "${PID[core]}" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "${PID[agg]}" 2>/dev/null || kill -0 "${PID[core]}" 2>/dev/null || break; sleep 0.1; done
check "no sanitizer report in any log" 0 "$(cat ./*.log | grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer')"
finish
