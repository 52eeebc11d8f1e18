#!/usr/bin/env bash
# System test of the aggregation hierarchy with the real daemons on kernel-chosen loopback
# ports in the harness's scratch directory:
#
#   clients ─► G1 "gw-all"      (parents A1, A2; mode all)      ─┐
#           ─► G2 "gw-failover" (parents A1, A2; mode failover) ─┴─► A1 "agg1", A2 "agg2" ─► core ─► extender
#
# one keyless-core node (calendar-auth key from `keyless devpki`), two keyless-aggregator,
# two keyless-gateway (configurations made from the documented samples deploy/gateway.conf and
# deploy/aggregator.conf), one keyless-extender following the core, and a users file.
#
#   1. 1,000 documents signed with `keyless sign` through both gateways (local trees of
#      --max-lvl 3 and 7, and one file per request; HTTP, ksi+http and ksi+tcp); every
#      signature verified with the internal and key-based policies; then calendar-based against
#      the extender, extended to a fresh publication (`keyless publish`, `keyless extend`) and
#      verified publication-based: all of them, or an evenly spread sample when the measured
#      cost of a full pass would be over SLOW_BUDGET_S (the output says which).
#   2. A1 killed with SIGKILL while clients sign continuously through G1 and G2 (gw_badclient
#      stream): G1 loses nothing; G2 at most one round, answered with a retryable status; every
#      answer is a valid signature; the failed count and the time without service are printed.
#      A1 is restarted on its port and both gateways reconnect.
#   3. Misbehaving clients (gw_badclient send/slow, `keyless sign` with a wrong key) against
#      G2, whose [limits] are small (max_pdu_size 8k, idle_timeout 2s, write_watermark 4k):
#      statuses 0x102, 0x103, 0x104, HTTP 413, closed connections, a client that never reads
#      its answers; a good client signs meanwhile; G2's /metrics count it all.
#   4. Conformance: a raw gateway response has the layout of Guardtime's (KSI vectors), turns
#      into a signature through the same client path as a canned Guardtime response, and
#      `keyless inspect` shows the login and the gateway's name in its metadata.
#   5. SIGTERM: every daemon exits 0 and logs event=stopped, with no sanitizer report.
#
# usage: test_hierarchy.sh KEYLESS_CORE KEYLESS_AGGREGATOR KEYLESS_GATEWAY KEYLESS_EXTENDER
#                          KEYLESS GW_BADCLIENT [KSI_VECTORS]
#
# Each check prints "ok - NAME" or "not ok - NAME: expected X got Y"; lines starting with "#"
# are measurements; the last line is "N passed, M failed" and the exit status is non-zero if
# any check failed. Every wait is a bounded poll; logs of a failed run are kept in
# ${TMPDIR:-/tmp}/keyless-hierarchy-logs. Needs bash, curl, GNU coreutils and /proc/net/tcp.
set -u

if [ $# -lt 6 ] || [ $# -gt 7 ]; then
  echo "usage: $0 KEYLESS_CORE KEYLESS_AGGREGATOR KEYLESS_GATEWAY KEYLESS_EXTENDER KEYLESS GW_BADCLIENT [KSI_VECTORS]" >&2
  exit 2
fi
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
CORE=$(abs "$1") AGG=$(abs "$2") GW=$(abs "$3") EXT=$(abs "$4") KL=$(abs "$5") BAD=$(abs "$6")
VECTORS=${7:-}
for b in "$CORE" "$AGG" "$GW" "$EXT" "$KL" "$BAD"; do
  [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }
done
DEPLOY="$(dirname "$(abs "$0")")/../../deploy"
for f in gateway.conf aggregator.conf; do
  [ -f "$DEPLOY/$f" ] || { echo "$0: $DEPLOY/$f not found" >&2; exit 2; }
done
command -v curl >/dev/null || { echo "$0: curl is needed" >&2; exit 2; }

SLOW_BUDGET_S=20 # calendar + extend + publication passes together, projected from the key pass

. "$(dirname "$0")/harness.sh" hierarchy
START_MS=$(date +%s%3N)
now_ms() { date +%s%3N; }
note() { echo "# $*"; }
finish() {
  note "total time $(( ($(now_ms) - START_MS) / 1000 )) s"
  [ "$FAILED" -eq 0 ] || keep_logs "$TMP"/*.out
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
  exit
}
# field KEY LINE: the value of KEY=value in a line of key=value pairs.
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }
# (start, logged, metric, wait_metric, tls, start_core, start_follower, aggregator_conf and
# gateway_conf: harness.sh)

# ---------------------------------------------------------------- the network
EMAIL=hierarchy@keyless.invalid
TRUST=(-V pki/ca.crt --cnstr "E=$EMAIL")
run "$KL" devpki -o pki --email "$EMAIL" \
  --nodes core:1,aggregator:agg1,aggregator:agg2,gateway:gw-all,gateway:gw-failover,extender:1
[ "$RC" -eq 0 ] || bail "devpki: $(short "$OUT")"
start_core
start_follower

for a in 1 2; do
  aggregator_conf "agg$a" >"agg$a.conf"
  check "agg$a.conf sets the 4 keys it needs" 4 \
    "$(grep -cE "^(listen = 127.0.0.1:0|admin_listen = 127.0.0.1:0|name = agg$a|parent1 = 127.0.0.1:$CORE_INT)\$" "agg$a.conf")"
  start "agg$a" "$AGG" "agg$a.conf" || { cat "agg$a.log"; bail "keyless-aggregator agg$a started"; }
done
A1=$(logged agg1 port) A2=$(logged agg2 port)
A1_ADM=$(logged agg1 admin_port) A2_ADM=$(logged agg2 admin_port)

printf '# gateway logins\nalice:alice-key\nbob:b0b secret:with colon\n' >users
chmod 600 users
BOBKEY='b0b secret:with colon'
# gateway2_conf NAME MODE [SED-ARGS...]: a gateway under both aggregators in MODE.
gateway2_conf() {
  local name=$1 mode=$2
  shift 2
  gateway_conf "$name" "127.0.0.1:$A1" -e "s#^parent2 =.*#parent2 = 127.0.0.1:$A2#" -e "s#^mode = .*#mode = $mode#" "$@"
}
gateway2_conf gw-all all >g1.conf
gateway2_conf gw-failover failover -e 's#^max_pdu_size = .*#max_pdu_size = 8k#' \
  -e 's#^idle_timeout = .*#idle_timeout = 2s#' -e 's#^write_watermark = .*#write_watermark = 4k#' >g2.conf
check "g1.conf sets the 8 keys it needs" 8 "$(grep -cE "^(http_listen|tcp_listen|admin_listen) = 127.0.0.1:0\$|^users_file = $TMP/users\$|^name = gw-all\$|^parent1 = 127.0.0.1:$A1\$|^parent2 = 127.0.0.1:$A2\$|^mode = all\$" g1.conf)"
check "g2.conf sets the 11 keys it needs" 11 "$(grep -cE "^(http_listen|tcp_listen|admin_listen) = 127.0.0.1:0\$|^users_file = $TMP/users\$|^name = gw-failover\$|^parent1 = 127.0.0.1:$A1\$|^parent2 = 127.0.0.1:$A2\$|^mode = failover\$|^max_pdu_size = 8k\$|^idle_timeout = 2s\$|^write_watermark = 4k\$" g2.conf)"
run "$GW" -c g2.conf --check-config
check "keyless-gateway --check-config accepts g2.conf" 0 "$RC"
start g1 "$GW" g1.conf || { cat g1.log; bail "keyless-gateway gw-all started"; }
start g2 "$GW" g2.conf || { cat g2.log; bail "keyless-gateway gw-failover started"; }
G1_HTTP=$(logged g1 http_port) G1_TCP=$(logged g1 tcp_port) G1_ADM=$(logged g1 admin_port)
G2_HTTP=$(logged g2 http_port) G2_TCP=$(logged g2 tcp_port) G2_ADM=$(logged g2 admin_port)
MAXLVL=$(logged g1 max_level) ANNOUNCED=$(logged g1 announced_max_level)
for g in G1 G2; do
  adm=${g}_ADM
  wait_metric "${!adm}" keyless_gateway_parents_up 2 100
  check "$g is connected to both aggregators" 2 "$(metric "${!adm}" keyless_gateway_parents_up)"
  check "$g /healthz: 200" 200 "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:${!adm}/healthz")"
done
for a in "agg1 $A1_ADM" "agg2 $A2_ADM"; do
  read -r name adm <<<"$a"
  wait_metric "$adm" 'keyless_tier_parent_up{tier="aggregator",parent="127.0.0.1:'"$CORE_INT"'"}' 1 50
  check "$name /healthz: 200 (the core is connected)" 200 \
    "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$adm/healthz")"
done
# Versions: every binary says which build it is, the log and /metrics too.
for b in "$CORE" "$AGG" "$GW" "$EXT"; do
  v=$("$b" --version 2>&1)
  check_has "$(basename "$b") --version: the version and the commit" "$(basename "$b") 0." "$v"
done
check_has "keyless --version" "(commit " "$("$KL" --version)"
check_has "the gateway logs its version at start" "event=version version=" "$(cat g1.log)"
check "the gateway's /metrics has keyless_build_info 1" 1 "$(curl -s -m 5 "http://127.0.0.1:$G1_ADM/metrics" | awk '/^keyless_build_info[{]/ { print $NF }')"
note "network up in $(( $(now_ms) - START_MS )) ms: core :$CORE_INT, agg1 :$A1, agg2 :$A2," \
  "gw-all http :$G1_HTTP tcp :$G1_TCP, gw-failover http :$G2_HTTP tcp :$G2_TCP, extender $EXT_URL"

G1H="http://127.0.0.1:$G1_HTTP/" G1T="ksi+tcp://127.0.0.1:$G1_TCP"
G2H="http://127.0.0.1:$G2_HTTP/" G2T="ksi+tcp://127.0.0.1:$G2_TCP"
ALICE=(--aggr-user alice --aggr-key alice-key)
BOB=(--aggr-user bob --aggr-key "$BOBKEY")

# ---------------------------------------------------------------- 4. conformance
run "$KL" sign --dump-conf -S "$G1H" "${ALICE[@]}"
check "sign --dump-conf: exit 0" 0 "$RC"
check_has "sign --dump-conf: the max level the gateway announces ($ANNOUNCED)" "max level:        $ANNOUNCED" "$OUT"
check_has "sign --dump-conf: the 100 ms round" "aggregation period: 100 ms" "$OUT"
printf 'conformance document\n' >conf.txt
run "$BAD" capture "$G1H" alice alice-key conf.txt conf.tlv
check "a raw response from gw-all (request id 1): signed, HMAC ok" "0 http=200 id=1 status=0x0000 sig=ok hmac=ok" "$RC $OUT"
# The layout, with the optional header fields and status/message elements left out.
shape() { "$BAD" shape "$1" | sed -E -e 's/01\[01[^]]*\]/01[01]/' -e 's/ 0[45]( |\])/\1/g' -e 's/ 0[45]( |\])/\1/g'; }
GT_RESP="$VECTORS/pdu/ok-sig-2017-07-14.1-aggr_response.tlv"
if [ -n "$VECTORS" ] && [ -f "$GT_RESP" ]; then
  check "the response's layout is Guardtime's: header, aggr_resp {id, chains, calendar chain, auth record}, HMAC" \
    "$(shape "$GT_RESP")" "$(shape conf.tlv)"
  note "layouts: ours $("$BAD" shape conf.tlv), Guardtime's $("$BAD" shape "$GT_RESP")"
else
  fail "the KSI vectors' Guardtime aggregation response" "$GT_RESP" "missing"
fi
run "$KL" sign -i conf.txt -S file://conf.tlv "${ALICE[@]}"
check "sign with the saved response (the canned-response path of Guardtime's): exit 0" 0 "$RC"
run "$KL" inspect -i conf.txt.ksig
check_has "inspect: the login and gw-all in the metadata" 'identity client="alice" machine="gw-all"' "$OUT"
check_has "inspect: gw-all named in an aggregator's metadata" 'identity client="gw-all" machine="agg' "$OUT"
check_has "inspect: three aggregation chains (gateway, aggregator, core)" "aggregation hash chains: 3" "$OUT"
check_has "inspect: a calendar authentication record" "calendar authentication record:" "$OUT"
run "$KL" verify -i conf.txt.ksig -f conf.txt --policy internal
check "the saved-response signature verifies (internal)" "0 OK: signature verified (internal policy)" "$RC $OUT"

# ---------------------------------------------------------------- 1. 1,000 documents
# Groups (directory, gateway URL, login, --max-lvl, invocations x files each):
#   g1tree  G1 http      alice  3   8 x 32   local trees of 8
#   g1big   G1 ksi+tcp   alice  7   1 x 100  one local tree of 100 in one request
#   g1one   G1 ksi+http  alice  0  24 x 6    one file per request (credentials in the URL)
#   g2tree  G2 ksi+tcp   bob    3   8 x 32
#   g2big   G2 http      bob    7   1 x 100
#   g2one   G2 ksi+tcp   bob    0  24 x 6
GROUPS_=(
  "g1tree $G1H alice 3 8 32"
  "g1big $G1T alice 7 1 100"
  "g1one ksi+http://alice:alice-key@127.0.0.1:$G1_HTTP/ alice 0 24 6"
  "g2tree $G2T bob 3 8 32"
  "g2big $G2H bob 7 1 100"
  "g2one $G2T bob 0 24 6"
)
n=0
for g in "${GROUPS_[@]}"; do
  read -r dir url login lvl inv files <<<"$g"
  for ((i = 0; i < inv; i++)); do
    mkdir -p "docs/$dir/$i"
    for ((k = 0; k < files; k++)); do
      n=$((n + 1))
      printf 'hierarchy document %d (%s, invocation %d) %d%d\n' "$n" "$dir" "$i" "$RANDOM" "$RANDOM" >"docs/$dir/$i/d$k.txt"
    done
  done
done
check "1,000 documents written" 1000 "$n"
t0=$(now_ms)
jobs_=()
for g in "${GROUPS_[@]}"; do
  read -r dir url login lvl inv files <<<"$g"
  if [ "$login" = alice ]; then cred=("${ALICE[@]}"); else cred=("${BOB[@]}"); fi
  case $url in ksi+http://*) cred=() ;; esac
  for ((i = 0; i < inv; i++)); do
    ( "$KL" sign -S "$url" "${cred[@]}" --max-lvl "$lvl" -i "docs/$dir/$i"/*.txt >"sign-$dir-$i.out" 2>&1
      echo $? >"sign-$dir-$i.rc" ) &
    jobs_+=($!)
  done
done
wait "${jobs_[@]}"
SIGN_MS=$(( $(now_ms) - t0 ))
bad_rc=0 n_inv=0
for f in sign-*.rc; do
  n_inv=$((n_inv + 1))
  [ "$(cat "$f")" = 0 ] && continue
  bad_rc=$((bad_rc + 1))
  [ $bad_rc -le 3 ] && note "$f: exit $(cat "$f"): $(short "$(cat "${f%.rc}.out")")"
done
check "all $n_inv keyless sign invocations exit 0 ($bad_rc do not)" 0 "$bad_rc"
find docs -name '*.ksig' | sort >sigs.list
check "1,000 signatures written" 1000 "$(wc -l <sigs.list)"
for g in "${GROUPS_[@]}"; do
  read -r dir url login lvl inv files <<<"$g"
  check "$dir ($url, $login, --max-lvl $lvl): $((inv * files)) signatures" $((inv * files)) \
    "$(find "docs/$dir" -name '*.ksig' | wc -l)"
done
note "1,000 documents signed in $SIGN_MS ms by $n_inv concurrent keyless sign invocations"
run "$KL" inspect -i docs/g2one/0/d0.txt.ksig
check_has "a gw-failover signature names bob and gw-failover" 'identity client="bob" machine="gw-failover"' "$OUT"
check_has "gw-failover asked its first parent, agg1" 'identity client="gw-failover" machine="agg1"' "$OUT"
run "$KL" inspect -i docs/g1big/0/d0.txt.ksig
check_has "a local-tree signature: 4 chains (local tree, gateway, aggregator, core)" "aggregation hash chains: 4" "$OUT"

# ---------------------------------------------------------------- 2. an aggregator killed
rounds_lost() { # PORT: the gateway's rounds that failed or timed out
  echo $(( $(metric "$1" 'keyless_tier_rounds_total{tier="gateway",outcome="failed"}') +
           $(metric "$1" 'keyless_tier_rounds_total{tier="gateway",outcome="timeout"}') ))
}
lost1=$(rounds_lost "$G1_ADM") lost2=$(rounds_lost "$G2_ADM")
mkdir stream1 stream2
"$BAD" stream "$G1H" alice alice-key stream1 8 25000 stream.stop kill.ms >stream1.out 2>&1 &
s1=$!
"$BAD" stream "$G2T" bob "$BOBKEY" stream2 8 25000 stream.stop kill.ms >stream2.out 2>&1 &
s2=$!
PIDS+=("$s1" "$s2")
sleep 3
kill -KILL "${PID[agg1]}"
now_ms >kill.ms
{ wait "${PID[agg1]}"; } 2>/dev/null # (no "Killed" message)
note "agg1 killed with SIGKILL at $(cat kill.ms), clients signing through both gateways"
sleep 3
touch stream.stop
wait "$s1" "$s2"
S1=$(head -n 1 stream1.out) S2=$(head -n 1 stream2.out)
note "gw-all (mode all, http):           $S1"
note "gw-failover (mode failover, tcp):  $S2"
for v in "gw-all S1" "gw-failover S2"; do
  read -r gw v <<<"$v"
  line=${!v}
  check "$gw: signing went on after the kill (signed requests sent after it > 0)" 1 "$([ "$(field ok_after "$line")" -gt 0 ] 2>/dev/null && echo 1 || echo 0)"
  check "$gw: every answer is a valid signature of its document (no wrong chain)" 0 "$(field bad "$line")"
  check "$gw: every request got an answer" 0 "$(field io "$line")"
  check "$gw: any failure has a retryable status (0x300/0x301)" 0 "$(field nonretryable "$line")"
done
check "gw-all (mode all) lost no request when agg1 died" 0 "$(field failed "$S1")"
check "gw-all lost no round" "$lost1" "$(rounds_lost "$G1_ADM")"
l2=$(( $(rounds_lost "$G2_ADM") - lost2 ))
check "gw-failover lost at most one round ($l2)" 1 "$([ "$l2" -le 1 ] && echo 1 || echo 0)"
note "failed requests: gw-all $(field failed "$S1") of $(field sent "$S1"), gw-failover $(field failed "$S2") of" \
  "$(field sent "$S2") (statuses: $(field statuses "$S2"), sent within $(field failed_span_ms "$S2") ms);" \
  "rounds lost: gw-all $(( $(rounds_lost "$G1_ADM") - lost1 )), gw-failover $l2"
note "time without service after the kill (longest wait between two signed answers; one core round, ~1 s, is" \
  "normal): gw-all $(field gap_after_ms "$S1") ms, gw-failover $(field gap_after_ms "$S2") ms (before the kill:" \
  "$(field gap_before_ms "$S1") / $(field gap_before_ms "$S2") ms); from a failed request to the next signed one:" \
  "gw-all $(field outage_ms "$S1") ms, gw-failover $(field outage_ms "$S2") ms"
for g in G1 G2; do
  adm=${g}_ADM
  check "$g still healthy with one aggregator (/healthz 200)" 200 \
    "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:${!adm}/healthz")"
done
after=0
for f in stream2/*.ksig; do
  [ -e "$f" ] || continue
  "$KL" inspect -i "$f" 2>/dev/null | grep -q 'client="gw-failover" machine="agg2"' && after=$((after + 1))
done
check "gw-failover failed over: $after of its signatures came through agg2" 1 "$([ "$after" -gt 0 ] && echo 1 || echo 0)"
# agg1 back on its port: the gateways reconnect (checked after the next section).
aggregator_conf agg1 -e "s#^listen = .*#listen = 127.0.0.1:$A1#" >agg1r.conf
start agg1r "$AGG" agg1r.conf || { tail -3 agg1r.log; fail "agg1 restarted on port $A1" started "not started"; }

# ---------------------------------------------------------------- 3. bad clients (G2)
m2() { metric "$G2_ADM" "$1"; }
PDU_SERIES=()
for t in http tcp; do
  for s in 0x0102 0x0103; do PDU_SERIES+=("keyless_gateway_pdus_total{transport=\"$t\",status=\"$s\"}"); done
done
PDU_SERIES+=('keyless_net_bad_input_total{server="http"}' 'keyless_net_bad_input_total{server="tcp"}'
  'keyless_gateway_requests_total{status="0x0104"}')
declare -A BEFORE
for s in "${PDU_SERIES[@]}"; do BEFORE[$s]=$(m2 "$s"); done

# Clients that never read their answers, in the background: one sends 4 PDUs (the gateway reads
# them all at once), one pipelines far more than the gateway takes: its answers fill the kernel's
# buffers in a few rounds, the gateway stops reading with its input unread behind the watermark.
"$BAD" slow "127.0.0.1:$G2_TCP" bob "$BOBKEY" 4 64 9000 >slow-few.out 2>&1 &
sf=$!
"$BAD" slow "127.0.0.1:$G2_TCP" bob "$BOBKEY" 2000 16 12000 >slow-many.out 2>&1 &
sm=$!
PIDS+=("$sf" "$sm")

for u in "$G2H" "$G2T"; do
  tr=${u%%:*}
  run "$BAD" send "$u" bob "$BOBKEY" wrongkey
  check_has "$tr, wrong HMAC key: 0x102" "error=0x0102" "$OUT"
  run "$BAD" send "$u" bob "$BOBKEY" unknownlogin
  check_has "$tr, unknown login: 0x102" "error=0x0102" "$OUT"
  run "$BAD" send "$u" bob "$BOBKEY" truncated
  check_has "$tr, truncated PDU: 0x103" "error=0x0103" "$OUT"
  run "$BAD" send "$u" bob "$BOBKEY" garbage
  case "$OUT" in
    *error=0x0103*|*closed=1*) pass "$tr, garbage: 0x103 or closed ($OUT)" ;;
    *) fail "$tr, garbage" "error=0x0103 or closed=1" "$OUT" ;;
  esac
  run "$BAD" send "$u" bob "$BOBKEY" level "$MAXLVL"
  check "$tr, request_level max_level+1 ($MAXLVL+1): 0x104 for it; the one at max_level is signed" \
    "max_level=$ANNOUNCED status=0x0000 sig=ok status=0x0104 hmac=ok" "$(printf '%s' "$OUT" | sed -E 's/http=[0-9]+ //; s/id=[0-9]+ //g')"
done
run "$BAD" send "$G2H" bob "$BOBKEY" oversize 10000
check "http, a 10,000-byte PDU (max_pdu_size 8k): HTTP 413" "http=413" "$(printf '%s' "$OUT" | grep -o 'http=[0-9]*')"
run "$BAD" send "$G2T" bob "$BOBKEY" oversize 10000
check "tcp, a 10,000-byte PDU: connection closed" "closed=1" "$OUT"
run "$BAD" send "$G2T" bob "$BOBKEY" cut
check "tcp, half a PDU then EOF: connection closed, no answer" "closed=1" "$OUT"
run "$BAD" send "$G1H" alice alice-key oversize 8000
check "gw-all (max_pdu_size 65539) takes 8,000 bytes and refuses the content: HTTP 400, 0x103" "http=400 error=0x0103 hmac=none" "$OUT"
printf 'wrong key document\n' >wrong.txt
run "$KL" sign -i wrong.txt -S "$G2H" --aggr-user bob --aggr-key wrong
check "keyless sign with a wrong key: exit 14 (authentication)" 14 "$RC"
check_has "keyless sign with a wrong key: the gateway's 0x102" "0x102" "$OUT"
if [ -e wrong.txt.ksig ]; then fail "wrong key: no signature written" absent present; else pass "wrong key: no signature written"; fi

# A good client meanwhile (the slow clients are still connected).
printf 'good client, http\n' >good1.txt
printf 'good client, tcp\n' >good2.txt
run "$KL" sign -i good1.txt -S "$G2H" "${BOB[@]}"
check "a good client signs over http meanwhile" 0 "$RC"
run "$KL" sign -i good2.txt -S "$G2T" "${BOB[@]}"
check "a good client signs over ksi+tcp meanwhile" 0 "$RC"
wait "$sf" "$sm"
FEW=$(tail -n 1 slow-few.out) MANY=$(tail -n 1 slow-many.out)
note "client sending 4 PDUs, never reading:      $FEW"
note "client sending 2,000 PDUs, never reading: $MANY"
check "a client that never reads is disconnected (idle_timeout 2s)" 1 "$(field server_closed "$FEW")"
taken=$(field pdus_taken "$MANY") ended=$(field sending "$MANY")
check "a pipelining client that never reads: the gateway stops reading it ($taken of 2000 PDUs taken, sending $ended)" 1 \
  "$([ "${taken:-2000}" -lt 2000 ] && { [ "$ended" = stalled ] || [ "$ended" = closed ]; } && echo 1 || echo 0)"
# Its disconnection waits until the kernel's socket buffers are full and the gateway's own queue
# passes write_watermark; within this client's 9 s that depends on the machine, so it is reported,
# not asserted (the 4-PDU client above checks the idle close).
note "the pipelining client was disconnected by the gateway: $(field server_closed "$MANY")"
for s in "${PDU_SERIES[@]}"; do
  a=$(m2 "$s")
  check "gw-failover /metrics: $s moved (${BEFORE[$s]} -> $a)" 1 "$([ "$a" -gt "${BEFORE[$s]}" ] && echo 1 || echo 0)"
done
check "gw-failover /metrics: keyless_net_connections_open{server=\"tcp\"} back to 0" 0 \
  "$(wait_metric "$G2_ADM" 'keyless_net_connections_open{server="tcp"}' 0 30; m2 'keyless_net_connections_open{server="tcp"}')"

for g in G1 G2; do
  adm=${g}_ADM
  wait_metric "${!adm}" keyless_gateway_parents_up 2 80
  check "$g reconnected to the restarted agg1" 2 "$(metric "${!adm}" keyless_gateway_parents_up)"
done

# ---------------------------------------------------------------- 1. (cont.) verification
find stream1 stream2 -name '*.ksig' | sort >stream.list
printf '%s\n' conf.txt.ksig good1.txt.ksig good2.txt.ksig >>stream.list
cat sigs.list stream.list >all.list
NALL=$(wc -l <all.list)
# The publication: the extender's replica up to now, when every signature is older.
last=$(date +%s)
for _ in $(seq 1 50); do
  [ "$(metric "$EXT_ADM" keyless_calendar_last_second)" -ge "$last" ] && break
  sleep 0.1
done
run "$KL" publish -D ext-cal -o pubs.bin --cert pki/publications.crt --key pki/publications.key --allow-clear-key \
  --auth-cert pki/calendar-auth.crt --latest
check "publish from the extender's replica: exit 0" 0 "$RC"
PUBSTR=$(printf '%s\n' "$OUT" | sed -n '2s/^ *//p')
note "publication: $PUBSTR"

# vpass MODE LIST: MODE on every signature in LIST with two workers; sets NFAIL and DUR_MS.
vworker() {
  local f doc
  while read -r f; do
    doc=${f%.ksig}
    case $1 in
      internal) "$KL" verify -i "$f" -f "$doc" --policy internal ;;
      key) "$KL" verify -i "$f" -f "$doc" --policy key -P pubs.bin "${TRUST[@]}" ;;
      calendar) "$KL" verify -i "$f" -f "$doc" --policy calendar -X "$EXT_URL" "${ECRED[@]}" ;;
      extend) "$KL" extend -i "$f" -o "$f.ext" -P pubs.bin "${TRUST[@]}" -X "$EXT_TCP" "${ECRED[@]}" ;;
      publication) "$KL" verify -i "$f.ext" -f "$doc" --policy publication -P pubs.bin "${TRUST[@]}" ;;
    esac >"$3.last" 2>&1 || { echo "$f: $(head -n 1 "$3.last")" >>"$3"; }
  done <"$2"
}
vpass() {
  local t w=()
  t=$(now_ms)
  rm -f "$2".part.* "fail-$1"*
  : >"fail-$1"
  split -n l/2 "$2" "$2.part."
  for p in "$2".part.*; do vworker "$1" "$p" "fail-$1.${p##*.}" & w+=($!); done
  wait "${w[@]}"
  cat "fail-$1".?? >>"fail-$1" 2>/dev/null
  NFAIL=$(grep -c . "fail-$1")
  DUR_MS=$(( $(now_ms) - t ))
  [ "$NFAIL" -eq 0 ] || head -n 3 "fail-$1" | sed 's/^/# /'
}
vpass internal all.list
check "all $NALL signatures verify with the internal policy and their document ($NFAIL do not)" 0 "$NFAIL"
note "internal policy: $NALL signatures in $DUR_MS ms"
vpass key all.list
check "all $NALL signatures verify with the key-based policy (pubs.bin, pki/ca.crt, E=$EMAIL) ($NFAIL do not)" 0 "$NFAIL"
KEY_MS=$DUR_MS
note "key-based policy: $NALL signatures in $KEY_MS ms"
# calendar, extend and publication together cost about four key passes: all of them if that fits.
projected=$((4 * KEY_MS))
if [ "$projected" -le $((SLOW_BUDGET_S * 1000)) ]; then
  cp all.list slow.list
  note "calendar-based, extension and publication-based: ALL $NALL signatures (projected $projected ms)"
else
  want=$((NALL * SLOW_BUDGET_S * 1000 / projected))
  [ "$want" -lt 100 ] && want=100
  step=$(( (NALL + want - 1) / want ))
  awk -v s="$step" 'NR % s == 1 || s == 1' all.list >slow.list
  note "calendar-based, extension and publication-based: a SAMPLE of $(wc -l <slow.list) of $NALL signatures" \
    "(1 in $step, evenly spread; a full pass was projected at $projected ms > ${SLOW_BUDGET_S} s)"
fi
NS=$(wc -l <slow.list)
vpass calendar slow.list
check "$NS signatures verify calendar-based against the extender ($NFAIL do not)" 0 "$NFAIL"
note "calendar-based: $NS in $DUR_MS ms"
vpass extend slow.list
check "$NS signatures extend to the publication ($NFAIL do not)" 0 "$NFAIL"
note "extension: $NS in $DUR_MS ms"
vpass publication slow.list
check "$NS extended signatures verify publication-based ($NFAIL do not)" 0 "$NFAIL"
note "publication-based: $NS in $DUR_MS ms"
one=$(head -n 1 slow.list)
run "$KL" verify -i "$one.ext" -f "${one%.ksig}" --pub-str "$PUBSTR"
check "an extended signature verifies against the publication string" \
  "0 OK: signature verified (user-publication-based policy)" "$RC $(printf '%s\n' "$OUT" | head -n 1)"
check_has "  ... and names it as what the verdict rests on" "anchor: the publication of" "$OUT"
check_has "  ... with that string" "$PUBSTR" "$OUT"

# ---------------------------------------------------------------- 5. graceful stop
for name in g1 g2 agg1r agg2 ext core; do
  p=${PID[$name]}
  kill -TERM "$p" 2>/dev/null
  for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$p" 2>/dev/null && { kill -KILL "$p"; note "$name did not stop within 10 s"; }
  wait "$p"
  check "$name: SIGTERM, exit 0" 0 "$?"
  check_has "$name: logged a clean stop" "event=stopped" "$(cat "$name.log")"
done
for name in g1 g2 agg1 agg1r agg2 ext core; do
  if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$name.log"; then
    fail "$name: no sanitizer report" none "$(grep -m3 -E 'Sanitizer|runtime error' "$name.log")"
  else
    pass "$name: no sanitizer report"
  fi
done
finish
