#!/usr/bin/env bash
# System test of the extender's wait for its replica ([server] replica_wait) and of its HTTP
# statuses (docs/formats.md, "HTTP status codes"):
#
#   A. An extender on a calendar fed with `keyless calendar append` (replica_wait = 10s, so a
#      second up to 11 s beyond the last may wait): a request for the next second, over HTTP
#      and over ksi+tcp, is held until that second is appended and then answered with its
#      chain (without the wait: 0x106); a second beyond that bound, and one in the future, get
#      0x106 and 0x107 without being held; a held request whose second never comes gets 0x106
#      when the wait runs out; one still held at SIGTERM is answered before the daemon exits 0.
#   B. HTTP: a body that is not a PDU of the extender's service (garbage, an aggregation
#      request 0x220, a 0x221, a v1 0x200, a truncated 0x320) gets HTTP 400 whose body is the
#      error PDU (0x103); a good 0x320 with a wrong HMAC gets HTTP 200 (0x102 inside).
#   C. A network (one core node, an aggregator, a gateway, an extender following the core with
#      the default replica_wait): documents signed and at once verified calendar-based
#      (`keyless verify --policy calendar`) against the extender over HTTP and over ksi+tcp.
#
# usage: test_extender_wait.sh KEYLESS_CORE KEYLESS_AGGREGATOR KEYLESS_GATEWAY KEYLESS_EXTENDER
#                              KEYLESS EXT_CLIENT
#
# Each check prints "ok - NAME" or "not ok - NAME: expected X got Y"; the last line is
# "N passed, M failed". Every wait is a bounded poll; nothing asserts a duration (whether a
# request was held is read from the extender's metrics). Needs curl.
set -u

if [ $# -ne 6 ]; then
  echo "usage: $0 KEYLESS_CORE KEYLESS_AGGREGATOR KEYLESS_GATEWAY KEYLESS_EXTENDER KEYLESS EXT_CLIENT" >&2
  exit 2
fi
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
CORE=$(abs "$1") AGG=$(abs "$2") GW=$(abs "$3") EXT=$(abs "$4") KL=$(abs "$5") CLIENT=$(abs "$6")
for b in "$CORE" "$AGG" "$GW" "$EXT" "$KL" "$CLIENT"; do
  [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }
done
DEPLOY="$(dirname "$(abs "$0")")/../../deploy"
command -v curl >/dev/null || { echo "$0: curl is needed" >&2; exit 2; }

. "$(dirname "$0")/harness.sh" extwait
# (finish, bail, start, logged, metric, wait_metric, stop, no_sanitizer_reports, tls, start_core,
# start_follower, aggregator_conf and gateway_conf: harness.sh)
# status FILE: the status of the first extension response (or error) in a response PDU.
status() { "$CLIENT" decode -k anon "$1" 2>&1 | grep -m1 -E '^(resp|error)' | tr ' ' '\n' | sed -n 's/^status=//p'; }
calfield() { "$CLIENT" decode -k anon "$1" 2>&1 | grep -m1 '^resp' | tr ' ' '\n' | sed -n "s/^$2=//p"; }
WAITS='keyless_extender_replica_waits_total{result="'

# ================================================================ A. held requests
NOW=$(date +%s)
G=$((NOW - 100))
L=$((NOW - 30))
run "$KL" calendar init -D cal --genesis "$G"
[ "$RC" -eq 0 ] || bail "calendar init: $(short "$OUT")"
root_for() { printf 'SHA-256:%s' "$(printf 'round %d' "$1" | sha256sum | cut -c1-64)"; }
append() { "$KL" calendar append -D cal --time "$1" --root "$(root_for "$1")" >/dev/null || bail "append $1"; }
for s in $(seq "$G" 5 $((L - 1))) "$L"; do append "$s"; done
printf 'anon:anon\n' >users
cat >fed.conf <<EOF
[server]
http_listen = 127.0.0.1:0
tcp_listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
replica_wait = 10s
[calendar]
dir = cal
[auth]
users_file = users
EOF
start fed "$EXT" fed.conf || { cat fed.log; bail "keyless-extender started"; }
F_HTTP="http://127.0.0.1:$(logged fed http_port)/" F_TCP="127.0.0.1:$(logged fed tcp_port)"
F_ADM=$(logged fed admin_port)
post() { curl -s -m 30 -o "$1" -w '%{http_code}' -H 'Content-Type: application/ksi-request' --data-binary "@$2" "$3"; }

# 1. HTTP: held until L+1 is appended, then answered with the chain.
"$CLIENT" make -u anon -k anon -r "1:$((L + 1))" -o h1.req
post h1.resp h1.req "$F_HTTP" >h1.code &
C1=$!
wait_metric "$F_ADM" keyless_extender_replica_waiting 1 50
check "HTTP: a request for the next second is held" 1 "$(metric "$F_ADM" keyless_extender_replica_waiting)"
append $((L + 1))
wait "$C1"
check "HTTP: answered once the second is appended: HTTP 200" 200 "$(cat h1.code)"
check "HTTP: ... with the chain (status 0)" 0x0000 "$(status h1.resp)"
check "HTTP: ... and the new last second" $((L + 1)) "$(calfield h1.resp cal_last)"
check "metrics: one wait ended caught_up" 1 "$(metric "$F_ADM" "${WAITS}caught_up\"}")"

# 2. ksi+tcp: the same.
"$CLIENT" make -u anon -k anon -r "2:$((L + 2))" -o t1.req
"$CLIENT" tcp "$F_TCP" t1- t1.req >t1.out 2>&1 &
C2=$!
wait_metric "$F_ADM" keyless_extender_replica_waiting 1 50
check "ksi+tcp: a request for the next second is held" 1 "$(metric "$F_ADM" keyless_extender_replica_waiting)"
append $((L + 2))
wait "$C2"
check "ksi+tcp: answered once the second is appended" "received 1" "$(cat t1.out)"
check "ksi+tcp: ... with the chain (status 0)" 0x0000 "$(status t1-1.bin)"
check "metrics: two waits ended caught_up" 2 "$(metric "$F_ADM" "${WAITS}caught_up\"}")"

# 3. Beyond the bound, and in the future: answered without being held.
"$CLIENT" make -u anon -k anon -r "3:$((L + 2 + 15))" -o far.req
check "a second 15 s beyond the last: HTTP 200" 200 "$(post far.resp far.req "$F_HTTP")"
check "a second 15 s beyond the last: 0x0106 at once" 0x0106 "$(status far.resp)"
"$CLIENT" make -u anon -k anon -r "4:$((NOW + 100000))" -o fut.req
check "a second in the future: HTTP 200" 200 "$(post fut.resp fut.req "$F_HTTP")"
check "a second in the future: 0x0107 at once" 0x0107 "$(status fut.resp)"
"$CLIENT" make -u anon -k anon -r "5:$((L + 2 + 15))" -o far2.req
"$CLIENT" tcp "$F_TCP" far2- far2.req >/dev/null 2>&1
check "ksi+tcp, beyond the bound: 0x0106 at once" 0x0106 "$(status far2-1.bin)"
check "metrics: none of these was held" "2 0 0" "$(metric "$F_ADM" "${WAITS}caught_up\"}") $(metric "$F_ADM" "${WAITS}timeout\"}") $(metric "$F_ADM" "${WAITS}full\"}")"

# 4. Held, and the second never comes: 0x106 when the wait runs out.
"$CLIENT" make -u anon -k anon -r "6:$((L + 3))" -o to.req
check "a second that never comes: HTTP 200" 200 "$(post to.resp to.req "$F_HTTP")"
check "a second that never comes: 0x0106 after the wait" 0x0106 "$(status to.resp)"
check "metrics: one wait timed out" 1 "$(metric "$F_ADM" "${WAITS}timeout\"}")"
check_has "the log says it waited" "waited=timeout" "$(grep 'event=extend' fed.log | tail -n 1)"

# 5. Still held at SIGTERM: answered, then a clean exit.
post st.resp to.req "$F_HTTP" >st.code &
C3=$!
wait_metric "$F_ADM" keyless_extender_replica_waiting 1 50
check "held before SIGTERM" 1 "$(metric "$F_ADM" keyless_extender_replica_waiting)"
stop fed
wait "$C3"
check "SIGTERM: exit 0" 0 "$STATUS"
check "SIGTERM: the held request is answered (0x0106)" "200 0x0106" "$(cat st.code) $(status st.resp)"
no_sanitizer_reports fed

# ================================================================ B. HTTP statuses
start fed2 "$EXT" fed.conf || { cat fed2.log; bail "keyless-extender restarted"; }
F_HTTP="http://127.0.0.1:$(logged fed2 http_port)/"
# as400 NAME FILE: HTTP 400, Content-Type application/ksi-response, and the error PDU 0x103.
as400() {
  local code ctype
  read -r code ctype < <(curl -s -m 30 -o "$1.resp" -w '%{http_code} %{content_type}\n' --data-binary "@$2" "$F_HTTP")
  check "$1: HTTP 400" 400 "$code"
  check "$1: Content-Type application/ksi-response" application/ksi-response "$ctype"
  check "$1: the body is the error PDU (0x0103)" 0x0103 "$(status "$1.resp")"
}
head -c 300 /dev/urandom >garbage.req
printf '\x00' | dd of=garbage.req bs=1 count=1 conv=notrunc status=none # never a 16-bit TLV header
as400 garbage garbage.req
"$CLIENT" make -u anon -k anon -r "1:$L" -o good.req
# retype FILE TYPE-HEX OUT: the same PDU under another type (the first two header bytes).
retype() { { printf "\\x${2:0:2}\\x${2:2:2}"; tail -c +3 "$1"; } >"$3"; }
retype good.req 8220 aggr.req
check "retype made a 0x220 PDU" "8220" "$(head -c 2 aggr.req | od -An -tx1 | tr -d ' \n')"
as400 "aggregation request 0x220" aggr.req
retype good.req 8221 aggr-resp.req
as400 "aggregation response 0x221" aggr-resp.req
retype good.req 8200 v1.req
as400 "a v1 PDU 0x200" v1.req
retype good.req 8321 ext-resp.req
as400 "an extension response 0x321" ext-resp.req
head -c $(($(stat -c %s good.req) - 7)) good.req >trunc.req
as400 "a truncated 0x320" trunc.req
"$CLIENT" make -u anon -k wrong -r "1:$L" -o badkey.req
check "a 0x320 with a wrong HMAC: HTTP 200" 200 "$(post badkey.resp badkey.req "$F_HTTP")"
check "a 0x320 with a wrong HMAC: 0x0102 inside" 0x0102 "$(status badkey.resp)"
check "a good 0x320: HTTP 200 and 0" "200 0x0000" "$(post good.resp good.req "$F_HTTP") $(status good.resp)"
stop fed2
check "SIGTERM: exit 0" 0 "$STATUS"

# ================================================================ C. sign, then verify calendar-based at once
EMAIL=extwait@keyless.invalid
run "$KL" devpki -o pki --email "$EMAIL" --nodes core:1,aggregator:agg1,gateway:gw1,extender:1
[ "$RC" -eq 0 ] || bail "devpki: $(short "$OUT")"
start_core
start_follower

aggregator_conf agg1 >agg.conf
start agg "$AGG" agg.conf || { cat agg.log; bail "keyless-aggregator started"; }
A1=$(logged agg port) A1_ADM=$(logged agg admin_port)
wait_metric "$A1_ADM" 'keyless_tier_parent_up{tier="aggregator",parent="127.0.0.1:'"$CORE_INT"'"}' 1 100
printf 'alice:alice-key\n' >gw-users
USERS=$TMP/gw-users gateway_conf gw1 "127.0.0.1:$A1" >gw.conf
start gw "$GW" gw.conf || { cat gw.log; bail "keyless-gateway started"; }
GW_URL="http://127.0.0.1:$(logged gw http_port)/" GW_ADM=$(logged gw admin_port)
wait_metric "$GW_ADM" keyless_gateway_parents_up 1 100
check "the gateway is connected to the aggregator" 1 "$(metric "$GW_ADM" keyless_gateway_parents_up)"
wait_metric "$EXT_ADM" keyless_extender_serving 1 100
check "the extender follows the core and serves" 1 "$(metric "$EXT_ADM" keyless_extender_serving)"

ALICE=(--aggr-user alice --aggr-key alice-key)
ok_http=0 ok_tcp=0 n=4
for i in $(seq 1 $n); do
  printf 'fresh document %d %d\n' "$i" "$RANDOM" >"doc$i.txt"
  run "$KL" sign -i "doc$i.txt" -S "$GW_URL" "${ALICE[@]}"
  [ "$RC" -eq 0 ] || { fail "sign doc$i" 0 "$RC $(short "$OUT")"; continue; }
  if [ $((i % 2)) -eq 1 ]; then url=$EXT_URL; else url=$EXT_TCP; fi
  run "$KL" verify -i "doc$i.txt.ksig" -f "doc$i.txt" --policy calendar -X "$url" "${ECRED[@]}"
  if [ "$RC" -eq 0 ]; then
    case $url in http*) ok_http=$((ok_http + 1)) ;; *) ok_tcp=$((ok_tcp + 1)) ;; esac
  else
    echo "# doc$i over $url: $(short "$OUT")"
  fi
done
check "signed and at once verified calendar-based over HTTP" $((n / 2)) "$ok_http"
check "signed and at once verified calendar-based over ksi+tcp" $((n / 2)) "$ok_tcp"
echo "# held for the replica: $(metric "$EXT_ADM" "${WAITS}caught_up\"}") (caught up), $(metric "$EXT_ADM" "${WAITS}timeout\"}") (timed out)"
check "no request waited in vain" 0 "$(metric "$EXT_ADM" "${WAITS}timeout\"}")"

for d in gw agg ext core; do
  stop "$d"
  check "$d: SIGTERM, exit 0" 0 "$STATUS"
done
no_sanitizer_reports ext
finish
