#!/usr/bin/env bash
# System test of the core cluster: three real keyless-core processes on loopback ports, with
# real LMDB calendars and Raft logs in a temporary directory. Signs continuously while the
# leader is killed with SIGKILL and a follower is stopped with SIGSTOP; then checks that every
# signature handed out verifies, that the three calendars agree on every committed second, and
# that the restarted node caught up. Every wait is bounded; everything is stopped at the end.
# An extender follows node 1's replication stream throughout, and extends the signatures at the
# end. Usage: test_core.sh KEYLESS_CORE KEYLESS_CLI CORE_CLIENT KEYLESS_EXTENDER
set -u
CORE=$1 KL=$2 CLIENT=$3 EXT=$4
T=$(mktemp -d /tmp/kl-core-test-XXXXXX)
pass=0 fail=0
declare -A PID
cleanup() {
  for i in 1 2 3 x y; do [ -n "${PID[$i]:-}" ] && { kill -CONT "${PID[$i]}"; kill -9 "${PID[$i]}"; } 2>/dev/null; done
  wait 2>/dev/null
  if [ "$fail" -ne 0 ]; then # keep the logs of a failed run for whoever looks next
    rm -rf /tmp/kl-core-test-logs && mkdir -p /tmp/kl-core-test-logs && cp "$T"/*.log "$T"/*.err /tmp/kl-core-test-logs/ 2>/dev/null
    echo "# logs kept in /tmp/kl-core-test-logs"
  fi
  rm -rf "$T"
}
trap cleanup EXIT
ok() { echo "ok - $1"; pass=$((pass + 1)); }
note() { echo "# $(date +%T.%3N) $*"; }
bad() { echo "not ok - $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; return 1; fi; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Fixed ports stay below the kernel's ephemeral range (32768-60999 on Debian): a port chosen
# there can be taken by any outgoing connection of a test running alongside before we bind it.
base=$((10000 + ($$ * 13) % 20000))
while ! (port_free $base && port_free $((base + 1)) && port_free $((base + 10)) && port_free $((base + 21)) &&
         port_free $((base + 33)) && port_free $((base + 34))); do base=$((base + 50)); done
raft() { echo 127.0.0.1:$((base + $1 * 10)); }
internal() { echo 127.0.0.1:$((base + $1 * 10 + 1)); }
repl() { echo 127.0.0.1:$((base + $1 * 10 + 2)); }
admin() { echo 127.0.0.1:$((base + $1 * 10 + 3)); }
mport() { echo 127.0.0.1:$((base + $1 * 10 + 4)); }
metric() { curl -s -m 2 "http://$(mport "$1")/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }

"$KL" devpki -o "$T/pki" --email core-test@keyless.invalid \
  --nodes core:1,core:2,core:3,aggregator:1,extender:1,admin:operator >/dev/null || { echo "devpki failed"; exit 1; }
tls() { printf '[tls]\nca = %s\ncert = %s\nkey = %s\ncrl = %s\n' "$T/pki/cluster-ca.crt" "$T/pki/nodes/$1.crt" \
  "$T/pki/nodes/$1.key" "$T/pki/crl.pem"; }
# The test plays an aggregator: mutual TLS with an aggregator certificate.
AGG_TLS=(--cert "$T/pki/nodes/aggregator-1.crt" --key "$T/pki/nodes/aggregator-1.key" --ca "$T/pki/cluster-ca.crt")
ADMIN_TLS=(--cacert "$T/pki/cluster-ca.crt" --cert "$T/pki/nodes/admin-operator.crt" --key "$T/pki/nodes/admin-operator.key")
genesis=$(($(date +%s) - 2))
for i in 1 2 3; do
  cat >"$T/core$i.conf" <<CONF
[node]
id = $i
data_dir = $T/data$i
[cluster]
member1 = $(raft 1) $(internal 1) $(repl 1)
member2 = $(raft 2) $(internal 2) $(repl 2)
member3 = $(raft 3) $(internal 3) $(repl 3)
[server]
admin_listen = $(admin $i)
metrics_listen = $(mport $i)
[calendar]
genesis = $genesis
[keys]
calendar_auth_cert = $T/pki/calendar-auth.crt
calendar_auth_key = $T/pki/calendar-auth.key
allow_clear_key = yes
$(tls core-$i)
[raft]
election_timeout = 1s
heartbeat = 100ms
snapshot_threshold = 8
snapshot_trailing = 2
CONF
done
start() { "$CORE" -c "$T/core$1.conf" >>"$T/core$1.log" 2>&1 & PID[$1]=$!; }
status() { curl -s -m 2 "${ADMIN_TLS[@]}" "https://$(admin "$1")/status"; }
leader() { # the id the live nodes agree is leading, or empty
  for i in 1 2 3; do status "$i" | grep -o '"role":"leader"' >/dev/null && { echo "$i"; return; }; done
}
wait_leader() { for _ in $(seq 1 100); do l=$(leader); [ -n "$l" ] && { echo "$l"; return 0; }; sleep 0.1; done; return 1; }
sign() { # sign N random documents through node $1, retrying; prints the client's summary
  timeout 120 "$CLIENT" -a "$(internal "$1")" "${AGG_TLS[@]}" -o "$T/sigs" --random "$2" --retries 30 2>>"$T/client.err"
}

mkdir -p "$T/sigs"
for i in 1 2 3; do start $i; done
echo "ext:ext key" >"$T/users"
cat >"$T/ext.conf" <<CONF
[server]
http_listen = $(internal 4)
tcp_listen =
admin_listen = $(admin 4)
[calendar]
dir = $T/ext-cal
[auth]
users_file = $T/users
[replication]
upstream = $(repl 1)
genesis = $genesis
calendar_auth_cert = $T/pki/calendar-auth.crt
max_lag = 3s
$(tls extender-1)
CONF
"$EXT" -c "$T/ext.conf" >"$T/ext.log" 2>&1 &
PID[x]=$!
# A second extender trusts another calendar-auth key: it must refuse the core's first batch.
"$KL" devpki -o "$T/pki-other" --email other@keyless.invalid >/dev/null || { echo "devpki failed"; exit 1; }
sed -e "s#^http_listen = .*#http_listen = $(internal 5)#" -e "s#^admin_listen = .*#admin_listen = $(admin 5)#" \
  -e "s#^dir = .*#dir = $T/ext-other#" -e "s#^calendar_auth_cert = .*#calendar_auth_cert = $T/pki-other/calendar-auth.crt#" \
  "$T/ext.conf" >"$T/ext-other.conf"
"$EXT" -c "$T/ext-other.conf" >"$T/ext-other.log" 2>&1 &
PID[y]=$!
L=$(wait_leader) && ok "a leader is elected ($L)" || { bad "no leader within 10 s"; exit 1; }
check "the config sample checks" "'$CORE' -c '$T/core1.conf' --check-config >/dev/null"
# keyless core status: a line per node and the members as the leader sees them, all voters.
CORE_CLI=(--ca "$T/pki/cluster-ca.crt" --cert "$T/pki/nodes/admin-operator.crt" --key "$T/pki/nodes/admin-operator.key")
st_out=$("$KL" core "${CORE_CLI[@]}" status "https://$(admin 1)/" "https://$(admin 2)" "https://$(admin 3)" 2>&1)
check "core status: every node answers, one leader, three voters seen by the leader ($(echo "$st_out" | tr '\n' '|'))" \
  "[ \$(echo \"\$st_out\" | grep -c ' leader ') = 1 ] && [ \$(echo \"\$st_out\" | grep -c '  member [123]  voter ') = 3 ] && echo \"\$st_out\" | grep -q 'the leader'"

# Steady state, through every node (followers forward to the leader).
for i in 1 2 3; do
  out=$(sign $i 20)
  check "20 documents signed through node $i ($out)" "[ \"\$out\" = 'signed=20 retried=0 failed=0' ] || echo \"\$out\" | grep -q 'failed=0'"
done

# A follower sends the leader one leaf for all its requests of a second (a batch), not one
# forward per request: 20 sent at once came in one or two seconds.
L=$(leader)
for i in 1 2 3; do
  [ "$i" = "$L" ] && continue
  fw=$(metric "$i" keyless_core_forwards_total)
  check "follower $i forwarded its 20 requests as one leaf a second (${fw:-?} forwards)" "[ -n '$fw' ] && [ '${fw%.*}' -ge 1 ] && [ '${fw%.*}' -le 4 ]"
done
rq=$(metric "$L" keyless_core_round_requests_sum)
check "the leader's rounds counted the 60 requests, not their leaves (${rq:-?})" "[ -n '$rq' ] && [ '${rq%.*}' -ge 60 ]"
# With every member up and saying which second it closed, the leader need not wait its grace.
early=$(metric "$L" 'keyless_core_seconds_closed_total{when="members"}')
late=$(metric "$L" 'keyless_core_seconds_closed_total{when="grace"}')
check "the leader closed seconds once both followers had closed them (${early:-?} so far, ${late:-?} at the grace)" \
  "[ -n '$early' ] && [ '${early%.*}' -ge 1 ]"

# Kill the leader with SIGKILL in the middle of signing; measure the time without service.
L=$(leader)
follower=$(( L % 3 + 1 ))
sign "$follower" 30 >/dev/null &
signer=$!
sleep 0.3
kill -9 "${PID[$L]}"; wait "${PID[$L]}" 2>/dev/null; PID[$L]=""
t0=$(date +%s%N)
recovered=""
deadline=$((SECONDS + 60))
for _ in $(seq 1 60); do
  [ $SECONDS -lt $deadline ] || break
  out=$(sign "$follower" 1)
  if echo "$out" | grep -q 'signed=1'; then recovered=$(( ($(date +%s%N) - t0) / 1000000 )); break; fi
  sleep 0.2
done
wait "$signer"
check "a new leader answers after the leader's SIGKILL (no service for ${recovered:-?} ms)" "[ -n '$recovered' ]"
echo "# time without service after killing the leader: ${recovered:-unknown} ms"
note "restarting node $L"
start "$L"
restarted=$L
for _ in $(seq 1 100); do status "$restarted" | grep -q '"role":"follower"' && break; sleep 0.1; done
check "the restarted node $restarted rejoins as a follower" "status $restarted | grep -q '\"role\":\"follower\"'"

# Stop a follower for longer than an election timeout, keep signing, let it continue.
L=$(wait_leader)
F=$(( L % 3 + 1 ))
note "leader $L, stopping node $F"
kill -STOP "${PID[$F]}"
out=$(sign "$L" 20)
check "signing goes on while node $F is stopped ($out)" "echo '$out' | grep -q 'failed=0'"
sleep 2
note "continuing node $F"
kill -CONT "${PID[$F]}"
out=$(sign "$F" 10)
check "the resumed node $F signs again ($out)" "echo '$out' | grep -q 'failed=0'" || tail -5 "$T/client.err"

# A follower down long enough for the others to snapshot and truncate their logs comes back
# from a snapshot and fetches the missing seconds over the replication stream.
L=$(wait_leader)
F=$(( L % 3 + 1 ))
kill -9 "${PID[$F]}"; wait "${PID[$F]}" 2>/dev/null; PID[$F]=""
for _ in $(seq 1 8); do sign "$L" 3 >/dev/null; sleep 1.2; done
note "restarting node $F after 10 s down"
start "$F"
caught=""
for _ in $(seq 1 100); do grep -q 'event=caught_up' "$T/core$F.log" && { caught=1; break; }; sleep 0.1; done
check "node $F restored a snapshot and caught up over replication" "[ -n '$caught' ]"

# Let every node catch up, then compare the calendars second by second.
sleep 2
last_of() { status "$1" | grep -o '"calendar_last":[0-9-]*' | cut -d: -f2; }
for _ in $(seq 1 50); do
  a=$(last_of 1) b=$(last_of 2) c=$(last_of 3)
  [ -n "$a" ] && [ "$a" = "$b" ] && [ "$b" = "$c" ] && break
  sleep 0.2
done
min=$a; for x in $b $c; do [ "${x:-0}" -lt "$min" ] && min=$x; done
check "all three nodes are up and applied up to $min" "[ -n '$min' ] && [ '$min' -gt '$genesis' ]"
# The extender followed node 1 all along: it reaches the last second and extends what the core
# signed, to the head of its replica.
ext_last() { curl -s -m 2 "http://$(admin 4)/metrics" | awk '/^keyless_calendar_last_second/ {print $2}'; }
for _ in $(seq 1 100); do x=$(ext_last); [ -n "$x" ] && [ "${x%.*}" -ge "$min" ] 2>/dev/null && break; sleep 0.1; done
check "the extender's replica followed the core to $min (it has ${x:-nothing})" "[ -n '$x' ] && [ '${x%.*}' -ge '$min' ]"
ext_health() { curl -s -m 2 -o "$T/health.body" -w '%{http_code}' "http://$(admin "$1")/healthz"; }
ext_metric() { curl -s -m 2 "http://$(admin "$1")/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
wait_health() { # ADMIN_INDEX CODE SECONDS
  local end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do [ "$(ext_health "$1")" = "$2" ] && return 0; sleep 0.2; done
  return 1
}
wait_health 4 200 20
check "the extender serves: /healthz 200 ($(cat "$T/health.body" 2>/dev/null))" "[ \"\$(ext_health 4)\" = 200 ]"
one=$(ls "$T"/sigs/*.ksig | head -1)
extend_one() { "$KL" extend -i "$one" -o "$T/extended.ksig" -X "http://$(internal 4)/" --ext-user ext --ext-key "ext key" \
  --to-head >"$T/extend.out" 2>&1; }
rm -f "$T/extended.ksig"
extend_one
check "a core signature extends through the following extender" "[ -s '$T/extended.ksig' ]" || cat "$T/extend.out"
check "and verifies calendar-based against it" \
  "'$KL' verify -i '$T/extended.ksig' --policy calendar -X 'http://$(internal 4)/' --ext-user ext --ext-key 'ext key' >/dev/null"
# Lag: node 1, which the extender follows, stopped for longer than max_lag (3 s): the extender
# stops serving, then serves again once it has caught up.
for _ in $(seq 1 50); do [ "$(ext_metric 4 keyless_extender_serving)" = 1 ] && break; sleep 0.2; done
check "serving metric 1 while in step" "[ \"\$(ext_metric 4 keyless_extender_serving)\" = 1 ]"
note "stopping node 1 (the extender's upstream)"
kill -STOP "${PID[1]}"
wait_health 4 503 15
check "a lagging extender answers /healthz 503 ($(cat "$T/health.body" 2>/dev/null))" \
  "[ \"\$(ext_health 4)\" = 503 ] && grep -q 'behind' '$T/health.body'"
check "and its serving metric is 0 (lag $(ext_metric 4 keyless_extender_replication_lag_seconds) s)" \
  "[ \"\$(ext_metric 4 keyless_extender_serving)\" = 0 ] && [ \"\$(ext_metric 4 keyless_extender_replication_lag_seconds)\" -gt 3 ]"
rm -f "$T/extended.ksig"
extend_one
check "and it refuses extension requests (0x200, not synchronized)" \
  "[ ! -s '$T/extended.ksig' ] && grep -qi 'not synchronized' '$T/extend.out'" || cat "$T/extend.out"
note "continuing node 1"
kill -CONT "${PID[1]}"
wait_health 4 200 30
check "the extender serves again once caught up: /healthz 200" "[ \"\$(ext_health 4)\" = 200 ]"
check "serving metric 1 again, diverged 0" \
  "[ \"\$(ext_metric 4 keyless_extender_serving)\" = 1 ] && [ \"\$(ext_metric 4 keyless_extender_replication_diverged)\" = 0 ]"
rm -f "$T/extended.ksig"
extend_one
check "and extends again" "[ -s '$T/extended.ksig' ]" || cat "$T/extend.out"
check "the changes of state were logged (event=replication_state)" "[ \"\$(grep -c 'event=replication_state' '$T/ext.log')\" -ge 2 ]"
kill -TERM "${PID[x]}"; wait "${PID[x]}"; rc=$?; PID[x]=""
check "the extender stops cleanly (exit $rc)" "[ $rc -eq 0 ]"
# The extender that trusts another key refused the first batch, stored none of it, and stopped.
wait_health 5 503 10
check "an extender that does not trust the core's key: /healthz 503 ($(cat "$T/health.body" 2>/dev/null))" \
  "[ \"\$(ext_health 5)\" = 503 ] && grep -q 'replication stopped' '$T/health.body'"
check "it counts the refused batch and reports divergence" \
  "[ \"\$(ext_metric 5 keyless_extender_replication_refused_total)\" = 1 ] && [ \"\$(ext_metric 5 keyless_extender_replication_diverged)\" = 1 ] && [ \"\$(ext_metric 5 keyless_extender_serving)\" = 0 ]"
check "it logged the refusal (event=replication_refused, certificate not trusted)" \
  "grep 'event=replication_refused' '$T/ext-other.log' | grep -q 'not a trusted'"
check "and stored nothing" "[ \"\$(ext_metric 5 keyless_calendar_last_second)\" = -1 ]"
kill -TERM "${PID[y]}"; wait "${PID[y]}"; rc=$?; PID[y]=""
check "it stops cleanly too (exit $rc)" "[ $rc -eq 0 ]"

# Health that tells the truth: a node that cannot do its job answers /healthz 503 with the reason.
core_health() { curl -s -m 2 "${ADMIN_TLS[@]}" -o "$T/core-health.body" -w '%{http_code}' "https://$(admin "$1")/healthz"; }
L=$(wait_leader)
# The cluster has just had a node stopped and continued: its steady state, within 10 s, read once.
for _ in $(seq 1 50); do code=$(core_health "$L"); [ "$code" = 200 ] && break; sleep 0.2; done
check "the leader's /healthz: 200 {\"status\":\"ok\"} ($code $(cat "$T/core-health.body"))" \
  "[ '$code' = 200 ] && grep -q '\"status\":\"ok\"' '$T/core-health.body'"
F1=$(( L % 3 + 1 )) F2=$(( (L + 1) % 3 + 1 ))
kill -STOP "${PID[$F1]}" "${PID[$F2]}"
code=""
for _ in $(seq 1 50); do code=$(core_health "$L"); [ "$code" = 503 ] && break; sleep 0.2; done
check "with both followers stopped, node $L's /healthz is 503 with a reason ($code $(cat "$T/core-health.body"))" \
  "[ '$code' = 503 ] && grep -q '\"reason\":\"' '$T/core-health.body'"
kill -CONT "${PID[$F1]}" "${PID[$F2]}"
for _ in $(seq 1 100); do l=$(leader); [ -n "$l" ] && [ "$(core_health "$l")" = 200 ] && break; sleep 0.2; done
check "once they are back, a leader is healthy again" "[ -n \"\$(leader)\" ] && [ \"\$(core_health \$(leader))\" = 200 ]"

for i in 1 2 3; do kill -TERM "${PID[$i]}"; done
for i in 1 2 3; do wait "${PID[$i]}"; rc=$?; check "node $i stops cleanly on SIGTERM (exit $rc)" "[ $rc -eq 0 ]"; PID[$i]=""; done
forks=0 holes=0
for ((s = genesis; s <= min; s++)); do
  re=$("$KL" calendar root -D "$T/ext-cal" --time $s 2>/dev/null) || holes=$((holes + 1))
  r1=$("$KL" calendar root -D "$T/data1/calendar" --time $s 2>/dev/null) || holes=$((holes + 1))
  r2=$("$KL" calendar root -D "$T/data2/calendar" --time $s 2>/dev/null) || holes=$((holes + 1))
  r3=$("$KL" calendar root -D "$T/data3/calendar" --time $s 2>/dev/null) || holes=$((holes + 1))
  [ "$r1" = "$r2" ] && [ "$r2" = "$r3" ] && [ "$r3" = "$re" ] || forks=$((forks + 1))
done
check "the three calendars and the extender's replica agree on every second from $genesis to $min ($forks differ)" "[ $forks -eq 0 ]"
check "no hole in any calendar ($holes missing)" "[ $holes -eq 0 ]"
for i in 1 2 3; do check "calendar $i audits clean" "'$KL' calendar audit -D '$T/data$i/calendar' >/dev/null"; done

# Every signature handed out verifies, internally and against the calendar-auth key.
"$KL" publish -D "$T/data1/calendar" -o "$T/pubs.bin" --cert "$T/pki/publications.crt" --key "$T/pki/publications.key" --allow-clear-key \
  --auth-cert "$T/pki/calendar-auth.crt" --latest >/dev/null
n=0 badsig=0
for f in "$T"/sigs/*.ksig; do
  n=$((n + 1))
  "$KL" verify -i "$f" --policy key -P "$T/pubs.bin" -V "$T/pki/ca.crt" --cnstr E=core-test@keyless.invalid >/dev/null ||
    { badsig=$((badsig + 1)); echo "# does not verify: $f"; }
done
check "every one of the $n signatures handed out verifies key-based ($badsig do not)" "[ $n -gt 0 ] && [ $badsig -eq 0 ]"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
