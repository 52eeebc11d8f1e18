#!/usr/bin/env bash
# An extender that follows three cores (issue 15): a 3-core network (deploy/local-network) and
# an extender of its own with all three as upstreams ([replication] upstream1..3):
#   - a core named twice is a configuration error;
#   - it follows one core and sees all three up (keyless_extender_upstream_up);
#   - its followed core SIGSTOPped (a silent link, as a cut would be): it switches within about
#     silence_timeout (reason "silent"), that core shows down, and up again after SIGCONT;
#   - its followed core killed (-9): it switches to another (upstream_switches_total), the dead
#     one shows down, the lag is back under the bound, and every second's root equals a live
#     core's (no second lost or different);
#   - every core stopped: /healthz 503 with a JSON reason within max_lag + a bound, lag grows;
#   - the cores restarted: /healthz 200 {"status":"ok"} again, and the roots still agree.
# Usage: test_extender_ha.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NETSCRIPT="$HERE/../../deploy/local-network"
. "$HERE/harness.sh" extha
KL="$BUILD/cli/keyless"
EXT="$BUILD/extender/keyless-extender"
NET="$TMP/net"
export KL_BUILD="$BUILD" KL_BASE_PORT=$((12000 + ($$ % 150) * 100))
trap '"$NETSCRIPT" down "$NET" >/dev/null 2>&1; cleanup' EXIT
logs() { for f in "$NET"/log/core*.log "$TMP/ha.log"; do echo "== $f"; tail -n 25 "$f"; done; }
bail() { echo "not ok - $1"; logs; echo "$PASSED passed, $((FAILED + 1)) failed"; exit 1; }

"$NETSCRIPT" up "$NET" >up.log 2>&1 || { cat up.log; bail "deploy/local-network up"; }
pass "deploy/local-network up: 3 cores answer"
# shellcheck disable=SC1091
. "$NET/network.env"
read -r -a DIRS <<<"$KL_CORE_DIRS"
B=$(cat "$NET/conf/base_port")
GENESIS=$(sed -n 's/^genesis = //p' "$NET/conf/core1.conf")
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
P=$((B + 90))
while ! port_free $P || ! port_free $((P + 1)) || ! port_free $((P + 2)); do
  P=$((P + 3))
  [ $P -lt $((B + 100)) ] || bail "no 3 free ports in $((B + 90))..$((B + 99))"
done
ADMIN="http://127.0.0.1:$((P + 2))"
up_addr() { echo "127.0.0.1:$((B + 10 * $1 + 3))"; } # core i's replication port

write_conf() { # FILE EXTRA_REPLICATION_LINES
  cat >"$1" <<EOF
[server]
http_listen = 127.0.0.1:$P
tcp_listen = 127.0.0.1:$((P + 1))
admin_listen = 127.0.0.1:$((P + 2))
[calendar]
dir = $TMP/ha-cal
[auth]
users_file = $NET/conf/users
[replication]
$2
genesis = $GENESIS
calendar_auth_cert = $NET/pki/calendar-auth.crt
max_lag = 4s
silence_timeout = 2s
[tls]
ca = $NET/pki/cluster-ca.crt
cert = $NET/pki/nodes/extender-1.crt
key = $NET/pki/nodes/extender-1.key
crl = $NET/pki/crl.pem
EOF
}

# ---- configuration: the list form, and a core named twice ----
write_conf dup.conf "upstream = $(up_addr 1)
upstream2 = $(up_addr 1)"
out=$("$EXT" -c dup.conf --check-config 2>&1)
check "a core named twice: exit 2" 2 "$?"
check_has "a core named twice: the message names it" "names the core '$(up_addr 1)' twice" "$out"
write_conf ha.conf "upstream1 = $(up_addr 1)
upstream2 = $(up_addr 2)
upstream3 = $(up_addr 3)"
out=$("$EXT" -c ha.conf --check-config 2>&1)
check "upstream1..3: the configuration is accepted ($out)" 0 "$?"

"$EXT" -c ha.conf >"$TMP/ha.log" 2>&1 &
HA=$!
PIDS+=("$HA")

health() { curl -s -m 2 -o health.body -w '%{http_code}' "$ADMIN/healthz" 2>/dev/null; }
metrics() { curl -sf -m 2 "$ADMIN/metrics" 2>/dev/null; }
metric() { metrics | awk -v k="$1" '$1 == k { print $2 }'; } # exact series name with labels
until_ok() { # SECONDS COMMAND...: 0 once COMMAND succeeds, 1 after SECONDS
  local end=$((SECONDS + $1))
  shift
  until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.25; done
}
healthy() { [ "$(health)" = 200 ]; }
unhealthy() { [ "$(health)" = 503 ]; }
following() { # the index of the core followed now, or nothing
  local i
  for i in 1 2 3; do [ "$(metric "keyless_extender_upstream_following{upstream=\"$(up_addr $i)\"}")" = 1 ] && echo $i; done
}
all_up() { for i in 1 2 3; do [ "$(metric "keyless_extender_upstream_up{upstream=\"$(up_addr $i)\"}")" = 1 ] || return 1; done; }
lag_under() { local l; l=$(metric keyless_extender_replica_lag_seconds); [ -n "$l" ] && [ "$l" -ge 0 ] && [ "$l" -le "$1" ]; }
replica_last() { "$KL" calendar stat -D "$TMP/ha-cal" --json 2>/dev/null | sed -n 's/.*"last":\([0-9]*\).*/\1/p'; }
core_last() { "$KL" calendar stat -D "$1" --json 2>/dev/null | sed -n 's/.*"last":\([0-9]*\).*/\1/p'; }

# compare_roots CORE_DIR: every second from genesis to the last both hold has one root in both
compare_roots() {
  local d="$1" a b t bad=0 n=0 first=""
  a=$(replica_last)
  b=$(core_last "$d")
  [ -n "$a" ] && [ -n "$b" ] || { echo "no calendar"; return 1; }
  [ "$b" -lt "$a" ] && a=$b
  for ((t = GENESIS; t <= a; t++)); do
    n=$((n + 1))
    if [ "$("$KL" calendar root -D "$TMP/ha-cal" --time $t 2>&1)" != "$("$KL" calendar root -D "$d" --time $t 2>&1)" ]; then
      bad=$((bad + 1))
      [ -n "$first" ] || first=$t
    fi
  done
  echo "$n seconds compared up to $a, $bad differ${first:+ (first $first)}"
  [ $bad -eq 0 ] && [ $n -gt 0 ]
}

until_ok 30 healthy || bail "the extender following 3 cores never became healthy ($(cat health.body 2>/dev/null))"
check "/healthz 200 with a JSON body" '{"status":"ok"}' "$(cat health.body)"
until_ok 10 all_up
check "all three cores show up (keyless_extender_upstream_up)" 0 "$?"
F=$(following)
check "exactly one core is followed (keyless_extender_upstream_following)" 1 "$(echo "$F" | grep -c .)"
[ -n "$F" ] || bail "no core followed"
check "the lag is under max_lag" 0 "$(lag_under 3; echo $?)"

# ---- its followed core stopped (silent, its connections still open): a switch ----
held() { [ "$(replica_last)" -ge $((GENESIS + 8)) ]; }
until_ok 20 held || bail "the replica never held 8 seconds"
STOPPED=$F
silent_sw() { metric 'keyless_extender_upstream_switches_total{reason="silent"}'; }
sw0=$(silent_sw)
kill -STOP "$(cat "$NET/run/core$STOPPED.pid")"
echo "# SIGSTOP core $STOPPED (followed)"
moved() { local f; f=$(following); [ -n "$f" ] && [ "$f" != "$STOPPED" ]; }
until_ok 10 moved
check "a silent followed core: it follows another within 10 s (silence_timeout 2s)" 0 "$?"
check "the switch is counted as silent" 1 "$([ "$(silent_sw)" -gt "${sw0:-0}" ] && echo 1)"
stopped_down() { [ "$(metric "keyless_extender_upstream_up{upstream=\"$(up_addr $STOPPED)\"}")" = 0 ]; }
until_ok 10 stopped_down
check "the silent core shows down" 0 "$?"
until_ok 20 lag_under 3
check "the lag is under 3 s with the silent core stopped" 0 "$?"
kill -CONT "$(cat "$NET/run/core$STOPPED.pid")"
stopped_up() { [ "$(metric "keyless_extender_upstream_up{upstream=\"$(up_addr $STOPPED)\"}")" = 1 ]; }
until_ok 15 stopped_up
check "after SIGCONT it shows up again" 0 "$?"
until_ok 15 all_up

# ---- its followed core killed: a switch, no second lost ----
F=$(following)
[ -n "$F" ] || bail "no core followed"
KILLED=$F
before=$(replica_last)
kill -KILL "$(cat "$NET/run/core$KILLED.pid")"
echo "# killed core $KILLED (followed; the replica held up to $before)"
switched() { local f; f=$(following); [ -n "$f" ] && [ "$f" != "$KILLED" ]; }
until_ok 15 switched
check "it follows another core within 15 s" 0 "$?"
echo "# now following core $(following)"
sw=$(metrics | awk '/^keyless_extender_upstream_switches_total\{/ { s += $2 } END { print s + 0 }')
check "the switch is counted (upstream_switches_total >= 1: $sw)" 1 "$([ "$sw" -ge 1 ] && echo 1)"
dead_down() { [ "$(metric "keyless_extender_upstream_up{upstream=\"$(up_addr $KILLED)\"}")" = 0 ]; }
until_ok 10 dead_down
check "the killed core shows down" 0 "$?"
until_ok 20 lag_under 3
rc=$? # before the label's command substitution replaces $?
check "the lag is back under 3 s ($(metric keyless_extender_replica_lag_seconds) s)" 0 "$rc"
grows() { [ "$(replica_last)" -gt $((before + 3)) ]; }
until_ok 15 grows
check "the replica grows past the kill" 0 "$?"
check "still healthy" 200 "$(health)"
LIVE=1
[ $LIVE = "$KILLED" ] && LIVE=2
out=$(compare_roots "${DIRS[$((LIVE - 1))]}")
check "every second's root equals live core $LIVE's ($out)" 0 "$?"
check "the replica audits clean (no hole)" 0 "$("$KL" calendar audit -D "$TMP/ha-cal" >/dev/null 2>&1; echo $?)"

# ---- every core stopped: red within the bound ----
for i in 1 2 3; do
  [ -f "$NET/run/core$i.pid" ] && kill -TERM "$(cat "$NET/run/core$i.pid")" 2>/dev/null
done
t0=$SECONDS
echo "# stopped every core"
until_ok 15 unhealthy
check "/healthz 503 within 15 s of every core stopping (max_lag 4s)" 0 "$?"
echo "# red after $((SECONDS - t0)) s: $(cat health.body)"
check_has "the body says why in JSON" '{"status":"unhealthy","reason":"the replica' "$(cat health.body)"
check_has "the reason is the lag behind the clock" "behind the clock" "$(cat health.body)"
none_up() { for i in 1 2 3; do [ "$(metric "keyless_extender_upstream_up{upstream=\"$(up_addr $i)\"}")" = 0 ] || return 1; done; }
until_ok 10 none_up
check "no core shows up" 0 "$?"
check "keyless_extender_serving 0" 0 "$(metric keyless_extender_serving)"
lag=$(metric keyless_extender_replica_lag_seconds)
check "the lag metric tells ($lag s > 4)" 1 "$([ "${lag:-0}" -gt 4 ] && echo 1)"

# ---- the cores back: green again ----
"$NETSCRIPT" up "$NET" >up2.log 2>&1 || { cat up2.log; bail "restarting the cores"; }
until_ok 30 healthy
check "/healthz 200 again within 30 s of the cores answering" 0 "$?"
check "/healthz body" '{"status":"ok"}' "$(cat health.body)"
until_ok 10 lag_under 3
check "the lag is back under 3 s" 0 "$?"
until_ok 10 all_up
check "all three cores show up again" 0 "$?"
out=$(compare_roots "${DIRS[$((KILLED - 1))]}")
check "every second's root equals the restarted core $KILLED's ($out)" 0 "$?"
check "no divergence (keyless_extender_replication_diverged 0)" 0 "$(metric keyless_extender_replication_diverged)"

kill -TERM "$HA"
end=$((SECONDS + 10))
while kill -0 "$HA" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.1; done
wait "$HA"
check "the extender stops cleanly on SIGTERM" 0 "$?"
if grep -q "Sanitizer" "$TMP/ha.log"; then fail "no sanitizer reports" "none" "$(grep -m1 Sanitizer "$TMP/ha.log")"; else pass "no sanitizer reports"; fi
if ! grep -q "event=upstream_switch" "$TMP/ha.log"; then fail "the switch is logged" "event=upstream_switch" "none"; else pass "the switch is logged"; fi

# ---- divergence: a rogue core with another history is refused, for good ----
# port_of LOG SERVER: the port a daemon logged for its listener (they listen on port 0 here)
port_of() {
  local end=$((SECONDS + 15)) p=""
  while [ -z "$p" ] && [ $SECONDS -lt $end ]; do
    p=$(sed -n "s/.*event=listen server=$2 .* port=\([0-9]*\).*/\1/p" "$1" | head -n 1)
    [ -n "$p" ] || sleep 0.2
  done
  echo "$p"
}
read -r -a GWS <<<"$KL_GATEWAY_URLS"
echo "a document signed before the rogue core exists" >doc.txt
"$KL" sign -i doc.txt -S "${GWS[0]}" --aggr-user anon --aggr-key anon --timeout 8000 >sign.log 2>&1
check "a document is signed on the network (a real round in its calendar)" 0 "$?"
SIGNED=$(date +%s)
sed -e "s|^data_dir = .*|data_dir = $TMP/rogue|" -e '/^member[23] = /d' \
  -e 's|^member1 = .*|member1 = 127.0.0.1:0 127.0.0.1:0 127.0.0.1:0|' \
  -e 's|^admin_listen = .*|admin_listen =|' -e 's|^metrics_listen = .*|metrics_listen = 127.0.0.1:0|' \
  "$NET/conf/core1.conf" >rogue.conf
"$BUILD/core/keyless-core" -c rogue.conf >rogue.log 2>&1 &
ROGUE=$!
PIDS+=("$ROGUE")
RPORT=$(port_of rogue.log replication)
rogue_current() { local l; l=$(core_last "$TMP/rogue/calendar"); [ -n "$l" ] && [ "$l" -ge "$SIGNED" ]; }
until_ok 30 rogue_current || bail "the rogue core (another cluster, same key and genesis) never reached second $SIGNED"
pass "a rogue core with the same key and genesis runs (replication port $RPORT)"
differ=0
for ((t = SIGNED - 6; t <= SIGNED; t++)); do
  [ "$("$KL" calendar root -D "$TMP/rogue/calendar" --time $t)" = "$("$KL" calendar root -D "${DIRS[0]}" --time $t)" ] ||
    differ=1
done
check "its roots around the signed second differ from the network's" 1 "$differ"
write_conf div.conf "upstream1 = $(up_addr 2)
upstream2 = 127.0.0.1:$RPORT"
sed -i -e "s|^dir = .*|dir = $TMP/div-cal|" -e 's|^http_listen = .*|http_listen = 127.0.0.1:0|' \
  -e 's|^tcp_listen = .*|tcp_listen =|' -e 's|^admin_listen = .*|admin_listen = 127.0.0.1:0|' div.conf
"$EXT" -c div.conf >div.log 2>&1 &
DIV=$!
PIDS+=("$DIV")
ADMIN="http://127.0.0.1:$(port_of div.log admin)"
until_ok 30 healthy || bail "the second extender never became healthy ($(cat health.body 2>/dev/null))"
div_last() { "$KL" calendar stat -D "$TMP/div-cal" --json 2>/dev/null | sed -n 's/.*"last":\([0-9]*\).*/\1/p'; }
past_signed() { local l; l=$(div_last); [ -n "$l" ] && [ "$l" -ge "$SIGNED" ]; }
until_ok 15 past_signed
rc=$?
check "it follows core 2 past the signed second" "2 0" "$(following) $rc"
kill -STOP "$(cat "$NET/run/core2.pid")"
until_ok 15 unhealthy
check "core 2 silent, the rogue core's batch refused: /healthz 503" 0 "$?"
check_has "the reason: replication stopped" '"reason":"replication stopped: ' "$(cat health.body)"
check_has "... naming the rogue core" "127.0.0.1:$RPORT" "$(cat health.body)"
check "keyless_extender_replication_diverged 1" 1 "$(metric keyless_extender_replication_diverged)"
check "keyless_extender_replication_refused_total 1" 1 "$(metric keyless_extender_replication_refused_total)"
check "one ERROR line names the refused batch" 1 "$(grep -c 'level=error .*event=replication_refused' div.log)"
held_last=$(div_last)
kill -CONT "$(cat "$NET/run/core2.pid")"
sleep 4 # time in which a follower that had not stopped would append again
check "nothing appended after the refusal, with core 2 back ($held_last)" "$held_last" "$(div_last)"
check "still 503 with core 2 back: divergence lasts until a restart" 503 "$(health)"
n=0 bad=0
for ((t = GENESIS; t <= held_last; t++)); do
  n=$((n + 1))
  [ "$("$KL" calendar root -D "$TMP/div-cal" --time $t 2>&1)" = "$("$KL" calendar root -D "${DIRS[0]}" --time $t 2>&1)" ] ||
    bad=$((bad + 1))
done
check "its $n seconds are the network's, none the rogue's" 0 "$bad"
kill -TERM "$DIV" "$ROGUE"
wait "$DIV"
check "the diverged extender stops cleanly" 0 "$?"
if grep -q "Sanitizer" div.log; then fail "no sanitizer reports (second extender)" "none" "$(grep -m1 Sanitizer div.log)"; else pass "no sanitizer reports (second extender)"; fi

[ "$FAILED" -eq 0 ] || { logs; tail -n 20 div.log rogue.log; }
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
