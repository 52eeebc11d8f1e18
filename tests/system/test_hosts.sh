#!/usr/bin/env bash
# Real networks (issue 17), in deploy/local-network's hosts mode: every daemon on a host of its
# own (a network namespace on a private bridge), links cut silently (a bridge port down: no RST,
# no ICMP) while clients in their own namespace keep signing.
#   1. a follower core cut for 15 s: no request fails;
#   2. the leader cut: another core leads, requests still succeed (retries are allowed: only
#      retryable errors), the old leader rejoins after heal;
#   3. an aggregator cut: its /healthz turns red (seen from its own host), the gateways go on
#      through the other aggregator, and it turns green after heal;
#   4. every signature verifies; the three core calendars and the extender's replica hold one
#      root (hence the same every second before it) and audit clean.
# Latencies and recovery times are printed, never asserted (shared machines are noisy).
# Usage: test_hosts.sh BUILD_DIR SOURCE_DIR. Needs root and iproute2: skipped (77) otherwise.
set -u
BUILD=$(cd "$1" && pwd)
SRC="$2"
[ "$(id -u)" = 0 ] || { echo "skipped: network namespaces need root"; exit 77; }
command -v ip >/dev/null && ip netns list >/dev/null 2>&1 || { echo "skipped: no ip netns"; exit 77; }
. "$(dirname "$0")/harness.sh" hosts
KL="$BUILD/cli/keyless"
LN="$SRC/deploy/local-network"
NET="$TMP/net"
unset KSI_CONF KL_AGGR_KEY KSI_AGGR_KEY
export KL_BUILD="$BUILD" KL_HOSTS=1 KL_BASE_PORT=$((30000 + ($$ % 300) * 100))
trap '[ -f "$TMP/stop" ] || touch "$TMP/stop"; "$LN" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() { fail "$1" "success" "failure"; cp -r "$NET/log" /tmp/keyless-hosts-logs 2>/dev/null; echo "$PASSED passed, $FAILED failed"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }

timeout 240 "$LN" up "$NET" >up.log 2>&1 || { tail -n 20 up.log; bail "local-network up in hosts mode"; }
pass "local-network up in hosts mode"
. "$NET/network.env"
CX=(ip netns exec "$KL_CLIENT_NETNS")
read -r -a CORE_METRICS <<<"$KL_CORE_METRICS_URLS"
check_has "network.env names the client namespace" "-client" "$KL_CLIENT_NETNS"
"${CX[@]}" curl -sf -m 2 -o /dev/null "${KL_EXTENDER_URL}publications.bin"
check "the client namespace reaches the extender at $KL_EXTENDER_URL" 0 "$?"

role() { "${CX[@]}" curl -s -m 2 "${CORE_METRICS[$1]%/}/metrics" 2>/dev/null | awk '$1 == "keyless_core_raft_role" {print $2}'; }
leader() { local i; for i in 0 1 2; do [ "$(role $i)" = 3 ] && { echo $i; return; }; done; echo none; }
core_green() { "${CX[@]}" curl -sf -m 2 "${CORE_METRICS[$1]%/}/healthz" >/dev/null 2>&1; }

echo before >phase
sign_load "$KL" docs "${CX[@]}" &
LOADER=$!
sleep 6

# ---- 1. a follower cut for 15 s ----
L=$(leader)
[ "$L" != none ] || bail "a leader"
F=$(( (L + 1) % 3 ))
FN="core$((F + 1))"
echo "follower-cut" >phase
"$LN" cut "$FN" "$NET" >/dev/null
check "cut $FN (a follower)" 0 "$?"
sleep 15
"$LN" heal "$FN" "$NET" >/dev/null
t=$(now)
echo "after-follower" >phase
wait_until 30 core_green "$F"
check "$FN healthy again after heal" 0 "$?"
echo "# $FN back $(since "$t") s after heal"

# ---- 2. the leader cut ----
L=$(leader)
[ "$L" != none ] || bail "a leader before the leader cut"
LNAME="core$((L + 1))"
echo "leader-cut" >phase
t=$(now)
"$LN" cut "$LNAME" "$NET" >/dev/null
check "cut $LNAME (the leader)" 0 "$?"
other_leads() { local l; l=$(leader); [ "$l" != none ] && [ "$l" != "$L" ]; }
wait_until 20 other_leads
check "another core leads while $LNAME is cut" 0 "$?"
echo "# new leader core$(( $(leader) + 1 )) after $(since "$t") s"
sleep 5
"$LN" heal "$LNAME" "$NET" >/dev/null
t=$(now)
echo "after-leader" >phase
wait_until 30 core_green "$L"
check "$LNAME healthy again after heal (a follower now)" 0 "$?"
echo "# $LNAME back $(since "$t") s after heal"

# ---- 3. an aggregator cut ----
AG_ADMIN=$(echo "$KL_AGGREGATOR_ADMIN_URLS" | cut -d' ' -f1)
AX=(ip netns exec "${KL_NETNS_PREFIX}aggregator1")
ag_red() { ! "${AX[@]}" curl -sf -m 2 "${AG_ADMIN%/}/healthz" >/dev/null 2>&1; }
ag_green() { "${AX[@]}" curl -sf -m 2 "${AG_ADMIN%/}/healthz" >/dev/null 2>&1; }
ag_green
check "aggregator1 healthy before its cut" 0 "$?"
echo "aggregator-cut" >phase
t=$(now)
"$LN" cut aggregator1 "$NET" >/dev/null
wait_until 20 ag_red
check "aggregator1, cut from its parents, turns its /healthz red" 0 "$?"
echo "# aggregator1 red $(since "$t") s after the cut: $("${AX[@]}" curl -s -m 2 "${AG_ADMIN%/}/healthz" | head -c 200)"
sleep 3
"$LN" heal aggregator1 "$NET" >/dev/null
t=$(now)
echo "after-aggregator" >phase
wait_until 20 ag_green
check "aggregator1 green again after heal" 0 "$?"
echo "# aggregator1 green $(since "$t") s after heal"
sleep 3
touch stop
wait "$LOADER"

# ---- 4. what the clients got, and the calendars ----
load_report docs "$KL"
"$LN" down "$NET" >down.log 2>&1
check "local-network down removes the namespaces" "" "$(ip netns list | grep "^${KL_NETNS_PREFIX}" || true)"
read -r -a DIRS <<<"$KL_CORE_DIRS $KL_EXTENDER_DIR"
same_calendars "$KL" "${DIRS[@]}"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
