#!/usr/bin/env bash
# System test of keyless-extender: a calendar made with `keyless calendar`, the daemon on
# kernel-chosen loopback ports (port 0; the ports are read from its "listen" log lines), KSI
# extension over HTTP (curl) and ksi+tcp (ext_client), the publications file, /healthz,
# /metrics, limits, a calendar appended to while the daemon runs, and a clean SIGTERM.
#
# usage: test_extender.sh KEYLESS_EXTENDER KEYLESS EXT_CLIENT KSI_VECTORS_DIR
#
# Each check prints "ok - NAME" or "not ok - NAME: expected X got Y"; the last line is
# "N passed, M failed" and the exit status is non-zero if any check failed. Every wait is a
# bounded poll; nothing asserts a duration. A sanitizer report in a daemon's log fails the test.
set -u

if [ $# -ne 4 ]; then
  echo "usage: $0 KEYLESS_EXTENDER KEYLESS EXT_CLIENT KSI_VECTORS_DIR" >&2
  exit 2
fi
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
EXT=$(abs "$1")
KEYLESS=$(abs "$2")
CLIENT=$(abs "$3")
VEC=$(cd "$4" && pwd) || exit 2
for b in "$EXT" "$KEYLESS" "$CLIENT"; do
  [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }
done
command -v curl >/dev/null || { echo "$0: curl is needed" >&2; exit 2; }

. "$(dirname "$0")/harness.sh" extender
CURL=(curl -s --max-time 20)

# ---- the calendar: seconds G .. G+30 with rounds, G+31 .. G+39 empty, G+40 with a round ----
NOW=$(date +%s)
G=$((NOW - 3600))
L=$((G + 40))
"$KEYLESS" calendar init -D cal --genesis "$G" >/dev/null || { echo "calendar init failed"; exit 1; }
root_for() { printf 'SHA-256:%s' "$(printf 'round %d' "$1" | sha256sum | cut -c1-64)"; }
for i in $(seq 0 30) 40; do
  "$KEYLESS" calendar append -D cal --time $((G + i)) --root "$(root_for "$i")" >/dev/null ||
    { echo "calendar append failed"; exit 1; }
done
printf '# test logins\nanon:anon\n  alice:s3cret with:colon  \n' >users
cp "$VEC/publications/ksi-publications.bin" pubfile.bin

# start NAME CONFIG: starts a daemon, waits for its "started" line, sets PID, HTTP, TCP, ADMIN.
start() {
  "$EXT" -c "$2" --log-level debug 2>"$1.log" &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 1 200); do
    grep -q 'event=started' "$1.log" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  local line
  line=$(grep 'event=started' "$1.log")
  HTTP=$(printf '%s' "$line" | sed -n 's/.* http_port=\([0-9]*\).*/\1/p')
  TCP=$(printf '%s' "$line" | sed -n 's/.* tcp_port=\([0-9]*\).*/\1/p')
  ADMIN=$(printf '%s' "$line" | sed -n 's/.* admin_port=\([0-9]*\).*/\1/p')
  [ -n "$HTTP" ] || { echo "daemon $1 did not start:"; cat "$1.log"; exit 1; }
}
# stop NAME: SIGTERM, bounded wait, sets STATUS (the exit status; 137 if it had to be killed).
stop() {
  kill -TERM "$PID" 2>/dev/null
  for _ in $(seq 1 200); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID"; fi
  wait "$PID"
  STATUS=$?
}
# (no_sanitizer_reports NAME: harness.sh)

cat >ext.conf <<EOF
# written by test_extender.sh
[server]
http_listen = 127.0.0.1:0
tcp_listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
[calendar]
dir = cal
[auth]
users_file = users
[publications]
file = pubfile.bin
[limits]
max_requests = 8
idle_timeout = 20s
EOF

# ---- configuration validation ----
printf '[server]\nhttp_listen = 127.0.0.1:99999\n[calendar]\ndir = cal\n[auth]\nusers_file = users\n' >bad1.conf
out=$("$EXT" -c bad1.conf 2>&1); rc=$?
check "bad port: exit 2" 2 "$rc"
check_has "bad port: message names the file and key" "bad1.conf: [server] http_listen" "$out"
printf '[calendar]\ndir = cal\ncolour = blue\n[auth]\nusers_file = users\n' >bad2.conf
out=$("$EXT" -c bad2.conf 2>&1); rc=$?
check "unknown key: exit 2" 2 "$rc"
check_has "unknown key: message names the line and key" "bad2.conf:3: [calendar] unknown key colour" "$out"
out=$("$EXT" -c ext.conf --check-config 2>&1); rc=$?
check "--check-config accepts the test config" 0 "$rc"
# Following a core needs the certificate its batches are signed with (or insecure = yes).
printf '[calendar]\ndir = cal\n[auth]\nusers_file = users\n[replication]\nupstream = 127.0.0.1:9\n' >bad3.conf
out=$("$EXT" -c bad3.conf --check-config 2>&1); rc=$?
check "upstream without calendar_auth_cert: exit 2" 2 "$rc"
check_has "upstream without calendar_auth_cert: message names the file and key" \
  "bad3.conf: [replication] calendar_auth_cert is required with upstream" "$out"
printf 'insecure = yes\n' >>bad3.conf
out=$("$EXT" -c bad3.conf --check-config 2>&1); rc=$?
check "upstream with insecure = yes: accepted" 0 "$rc"
printf '[calendar]\ndir = cal\n[auth]\nusers_file = users\n[replication]\nupstream = 127.0.0.1:9\ncalendar_auth_cert = users\n' >bad4.conf
out=$("$EXT" -c bad4.conf --check-config 2>&1); rc=$?
check "calendar_auth_cert without a certificate: exit 2" 2 "$rc"
check_has "calendar_auth_cert without a certificate: message names the file and key" \
  "bad4.conf: [replication] calendar_auth_cert: 'users' holds no PEM certificate" "$out"
SAMPLE="$(dirname "$(abs "$0")")/../../deploy/extender.conf"
if [ -f "$SAMPLE" ]; then # the documented sample stays loadable (paths pointed at this test's files)
  sed -e 's#^dir = .*#dir = cal#' -e 's#^users_file = .*#users_file = users#' "$SAMPLE" >sample.conf
  out=$("$EXT" -c sample.conf --check-config 2>&1); rc=$?
  check "deploy/extender.conf is a valid configuration" "0 sample.conf: OK" "$rc $out"
fi

start main ext.conf
BASE="http://127.0.0.1:$HTTP"

# post NAME REQFILE: POSTs a PDU, sets CODE and DEC (the decoded response).
post() {
  CODE=$("${CURL[@]}" -o "$1.resp" -w '%{http_code}' -H 'Content-Type: application/ksi-request' \
    --data-binary "@$2" "$BASE/")
  DEC=$("$CLIENT" decode -k "${KEY:-anon}" -o "$1.chain" "$1.resp" 2>&1)
}
field() { printf '%s\n' "$DEC" | grep -m1 "^$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# ---- good requests: the chain's root is the calendar's root for P, and the bytes are the CLI's chain ----
for pair in "$G:$L" "$((G + 5)):$((G + 17))" "$((G + 30)):$((G + 30))" "$((G + 12)):" "$((G + 35)):$L"; do
  t=${pair%%:*}; P=${pair#*:}
  "$CLIENT" make -u anon -k anon -r "7:$pair" -o good.req
  post good good.req
  [ -n "$P" ] || P=$L
  want=$("$KEYLESS" calendar root -D cal --time "$P")
  "$KEYLESS" calendar chain -D cal --from "$t" --to "$P" -o cli.chain >/dev/null
  check "extend $t..$P: HTTP 200" 200 "$CODE"
  check "extend $t..$P: status 0" "0x0000" "$(field resp status)"
  check "extend $t..$P: request id echoed" 7 "$(field resp id)"
  check "extend $t..$P: root equals keyless calendar root" "$want" "$(field resp root)"
  check "extend $t..$P: shape gives the aggregation time" "$t" "$(field resp shape)"
  check "extend $t..$P: calendar last time" "$L" "$(field resp cal_last)"
  check "extend $t..$P: HMAC verifies" ok "$(field hmac hmac)"
  if cmp -s good.chain cli.chain; then pass "extend $t..$P: chain bytes equal the CLI's"; else
    fail "extend $t..$P: chain bytes equal the CLI's" same different; fi
done

# several requests, the configuration, SHA-512 HMAC, a login whose key has spaces and colons
"$CLIENT" make -u alice -k 's3cret with:colon' -a SHA-512 -r "1:$((G + 1)):$((G + 2))" -r "2:$((G + 3))" \
  -r "3:$((G - 10))" --config -o multi.req
KEY='s3cret with:colon' post multi multi.req
check "multi: three responses" 3 "$(printf '%s\n' "$DEC" | grep -c '^resp ')"
check_has "multi: first OK" "resp id=1 status=0x0000" "$DEC"
check_has "multi: second OK" "resp id=2 status=0x0000" "$DEC"
check_has "multi: before genesis is 0x0105 (too old)" "resp id=3 status=0x0105" "$DEC"
check "multi: config first = genesis" "$G" "$(field config first)"
check "multi: config last" "$L" "$(field config last)"
check "multi: config max_requests" 8 "$(field config max_requests)"
check "multi: HMAC with the request's algorithm" "ok SHA-512" "$(field hmac hmac) $(field hmac hmac_alg)"

# ---- refusals ----
req() { # NAME ARGS...: makes a request with ARGS, posts it; sets CODE, DEC and ST (the first status)
  "$CLIENT" make "${@:2}" -o "$1.req" && post "$1" "$1.req"
  ST=$(printf '%s\n' "$DEC" | sed -n 's/.*status=\(0x[0-9A-F]*\).*/\1/p' | head -n1)
}
req badkey -u anon -k wrong -r "1:$G"
check "bad HMAC: 0x0102" 0x0102 "$ST"
check "bad HMAC: unsigned error" none "$(field hmac hmac)"
req nologin -u mallory -k anon -r "1:$G"
check "unknown login: 0x0102" 0x0102 "$ST"
req new -u anon -k anon -r "1:$((L + 1))"
check "after the last second: 0x0106" 0x0106 "$ST"
req newp -u anon -k anon -r "1:$G:$((L + 5))"
check "publication after the last second: 0x0106" 0x0106 "$ST"
req old -u anon -k anon -r "1:$((G - 1))"
check "before genesis: 0x0105" 0x0105 "$ST"
req range -u anon -k anon -r "1:$((G + 9)):$((G + 8))"
check "aggregation after publication: 0x0104" 0x0104 "$ST"
req future -u anon -k anon -r "1:$((NOW + 100000))"
check "in the future: 0x0107" 0x0107 "$ST"
check "refusals are signed" ok "$(field hmac hmac)"
req many -u anon -k anon \
  -r 1:$G -r 2:$G -r 3:$G -r 4:$G -r 5:$G -r 6:$G -r 7:$G -r 8:$G -r 9:$G
check "too many requests in one PDU: 0x0101" 0x0101 "$ST"
req empty -u anon -k anon
check "empty request: 0x0101" 0x0101 "$ST"

"$CLIENT" make -u anon -k anon -r "1:$G" -o full.req
head -c $(($(stat -c %s full.req) - 7)) full.req >trunc.req
post trunc trunc.req
check "truncated PDU: HTTP 400 (not a PDU of this service)" 400 "$CODE"
check_has "truncated PDU: 0x0103 invalid payload" "error status=0x0103" "$DEC"
head -c 300 /dev/urandom >garbage.req
post garbage garbage.req
check_has "garbage body: a KSI error" "error status=0x010" "$DEC"
"$CLIENT" make -u anon -k anon -r "1:$G" -o ok.req
post after ok.req
check "still answering after bad input" 0x0000 "$(field resp status)"

head -c 70000 /dev/zero >big.req
CODE=$("${CURL[@]}" -o big.resp -w '%{http_code}' --data-binary @big.req "$BASE/")
check "70,000-byte body: HTTP 413" 413 "$CODE"
post after2 ok.req
check "still answering after 413" 0x0000 "$(field resp status)"

CODE=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$BASE/")
check "GET / on the service port: 405" 405 "$CODE"

# keep-alive: two requests on one connection
"${CURL[@]}" -v --data-binary @ok.req "$BASE/a" "$BASE/b" -o ka1.resp -o ka2.resp 2>ka.err
check "keep-alive: connection reused" 1 "$(grep -c -i 're-using\|reusing' ka.err)"
check_has "keep-alive: second answer OK" "status=0x0000" "$("$CLIENT" decode -k anon ka2.resp)"

# ---- ksi+tcp ----
"$CLIENT" make -u anon -k anon -r "11:$((G + 4)):$((G + 20))" -o t1.req
"$CLIENT" make -u anon -k anon -r "12:$((G + 6))" --config -o t2.req
out=$("$CLIENT" tcp "127.0.0.1:$TCP" tcp t1.req t2.req)
check "ksi+tcp: two PDUs on one connection, two answers" "received 2" "$out"
DEC=$("$CLIENT" decode -k anon tcp1.bin)
check "ksi+tcp: first answer in order" 11 "$(field resp id)"
check "ksi+tcp: first root" "$("$KEYLESS" calendar root -D cal --time $((G + 20)))" "$(field resp root)"
DEC=$("$CLIENT" decode -k anon tcp2.bin)
check "ksi+tcp: second answer in order" 12 "$(field resp id)"
check "ksi+tcp: second status" 0x0000 "$(field resp status)"
check "ksi+tcp: second has the config" "$G" "$(field config first)"
printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' >http.req
out=$("$CLIENT" tcp "127.0.0.1:$TCP" nonpdu http.req t1.req)
check "ksi+tcp: not a PDU: one error answer, then closed" "received 1" "$out"
check_has "ksi+tcp: not a PDU: 0x0103" "error status=0x0103" "$("$CLIENT" decode nonpdu1.bin)"

# ---- publications file ----
"${CURL[@]}" -o pub.got "$BASE/publications.bin"
if cmp -s pub.got pubfile.bin; then pass "publications.bin served byte-identical"; else
  fail "publications.bin served byte-identical" same different; fi
cp pubfile.bin pub.new && printf 'appended' >>pub.new && mv pub.new pubfile.bin
"${CURL[@]}" -o pub.got2 "$BASE/publications.bin"
if cmp -s pub.got2 pubfile.bin; then pass "publications.bin re-read after it changed"; else
  fail "publications.bin re-read after it changed" same different; fi

# ---- the calendar grows while the daemon runs ----
"$KEYLESS" calendar append -D cal --time $((L + 1)) --root "$(root_for 41)" >/dev/null
req live -u anon -k anon -r "1:$((L + 1))"
check "a second appended while running is served" 0x0000 "$ST"
check "... with the new calendar last time" $((L + 1)) "$(field resp cal_last)"

# ---- admin ----
A="http://127.0.0.1:$ADMIN"
check "healthz: 200 ok" '200 {"status":"ok"}' "$("${CURL[@]}" -w '%{http_code}' -o h.body "$A/healthz") $(cat h.body)"
M=$("${CURL[@]}" "$A/metrics")
check_has "metrics: requests by status" 'keyless_extender_requests_total{status="0x0000"}' "$M"
check_has "metrics: refused requests by status" 'keyless_extender_requests_total{status="0x0106"}' "$M"
check_has "metrics: PDU-level errors" 'keyless_extender_pdus_total{transport="http",status="0x0102"} 2' "$M"
check_has "metrics: ksi+tcp PDUs" 'keyless_extender_pdus_total{transport="tcp",status="0x0000"} 2' "$M"
check_has "metrics: latency histogram" 'keyless_extender_pdu_duration_seconds_bucket{transport="http",le="+Inf"}' "$M"
check_has "metrics: calendar height" "keyless_calendar_last_second $((L + 1))" "$M"
check_has "metrics: calendar genesis" "keyless_calendar_genesis_second $G" "$M"
check_has "metrics: serving (no upstream: no lag to judge)" "keyless_extender_serving 1" "$M"
check_has "metrics: connections" 'keyless_net_connections_accepted_total{server="http"}' "$M"
check_has "metrics: 413 counted" 'keyless_http_responses_total{server="http",class="4xx"}' "$M"
CODE=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$A/nothing")
check "admin: unknown path 404" 404 "$CODE"

stop main
check "SIGTERM: exit 0" 0 "$STATUS"
check_has "SIGTERM: logged a clean stop" "event=stopped" "$(cat main.log)"
no_sanitizer_reports main

# ---- a second daemon: small limits, and a calendar that is not there yet ----
cat >limits.conf <<EOF
[server]
http_listen = 127.0.0.1:0
tcp_listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
[calendar]
dir = not-yet
[auth]
users_file = users
[limits]
max_pdu_size = 1024
EOF
start limits limits.conf
BASE="http://127.0.0.1:$HTTP"
check "no calendar: healthz 503" 503 "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/healthz")"
req nocal -u anon -k anon -r "1:$G"
check "no calendar: 0x0201" 0x0201 "$ST"
head -c 2000 /dev/zero >mid.req
check "over max_pdu_size: HTTP 413" 413 "$("${CURL[@]}" -o /dev/null -w '%{http_code}' --data-binary @mid.req "$BASE/")"
printf '\x83\x20\x07\xd0' >hdr.bin && cat hdr.bin mid.req >bigframe.req
out=$("$CLIENT" tcp "127.0.0.1:$TCP" big bigframe.req)
check "ksi+tcp frame over max_pdu_size: connection closed" "received 0" "$out"
cp -r cal not-yet
for _ in $(seq 1 60); do # the daemon retries opening at most once a second
  req later -u anon -k anon -r "1:$G"
  [ "$ST" = 0x0000 ] && break
  sleep 0.1
done
check "calendar appears later: served" 0x0000 "$ST"
check "calendar appears later: healthz 200" 200 "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/healthz")"
stop limits
check "second daemon: SIGTERM exit 0" 0 "$STATUS"
no_sanitizer_reports limits

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
