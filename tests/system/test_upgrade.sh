#!/usr/bin/env bash
# A rolling upgrade as docs/operations.md "Upgrades" tells it, on a full deploy/local-network
# while a client signs through both gateways (failover, retries): every daemon restarted in turn
# on a new build (the programs copied to another directory, so that each process's executable
# shows which build it runs): the core followers first, the leader last, then the extender,
# the aggregators and the gateways, each waited for healthy before the next. Checked: every
# process runs the new build; no request failed (retries allowed: only retryable errors); every
# signature verifies; the calendars of the three cores and the extender hold one root. The core
# members name each other's Raft address by host name (localhost), resolved on every connection.
# Usage: test_upgrade.sh BUILD_DIR SOURCE_DIR
set -u
BUILD=$(cd "$1" && pwd)
SRC="$2"
. "$(dirname "$0")/harness.sh" upgrade
KL="$BUILD/cli/keyless"
LN="$SRC/deploy/local-network"
NET="$TMP/net"
unset KSI_CONF KL_AGGR_KEY KSI_AGGR_KEY KL_HOSTS
# The cores name each other's Raft address by host name: every restart below redials by name.
export KL_BUILD="$BUILD" KL_BASE_PORT=$((33000 + ($$ % 60) * 100)) KL_CORE_RAFT_HOST=localhost
trap 'touch "$TMP/stop"; "$LN" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() { fail "$1" "success" "failure"; cp -r "$NET/log" /tmp/keyless-upgrade-logs 2>/dev/null; echo "$PASSED passed, $FAILED failed"; exit 1; }

# The "new build": the same programs in another directory (local-network takes a flat bin dir).
mkdir new
cp "$BUILD"/core/keyless-core "$BUILD"/gateway/keyless-gateway "$BUILD"/aggregator/keyless-aggregator \
  "$BUILD"/extender/keyless-extender "$BUILD"/cli/keyless new/
NEW="$TMP/new"

timeout 180 "$LN" up "$NET" >up.log 2>&1 || { tail -n 20 up.log; bail "local-network up"; }
pass "local-network up"
. "$NET/network.env"
read -r -a CORE_METRICS <<<"$KL_CORE_METRICS_URLS"
role() { curl -s -m 2 "${CORE_METRICS[$1]%/}/metrics" 2>/dev/null | awk '$1 == "keyless_core_raft_role" {print $2}'; }
gone() { ! kill -0 "$1" 2>/dev/null; }
healthy() { "$LN" status "$NET" 2>/dev/null | awk -v n="$1" '$1 == n {print $4}' | grep -qx ok; }

# upgrade NAME: SIGTERM, wait for the exit, start it from the new build, wait until healthy.
upgrade() {
  local n="$1" pid
  pid=$(cat "$NET/run/$n.pid")
  echo "upgrade-$n" >phase
  kill -TERM "$pid"
  wait_until 20 gone "$pid"
  check "$n stops on SIGTERM" 0 "$?"
  KL_BUILD="$NEW" timeout 120 "$LN" up "$NET" >"up-$n.log" 2>&1
  check "$n started from the new build" 0 "$?"
  check "$n runs the new build" "$NEW/$(basename "$(readlink "/proc/$(cat "$NET/run/$n.pid")/exe")")" \
    "$(readlink "/proc/$(cat "$NET/run/$n.pid")/exe")"
  wait_until 30 healthy "$n"
  check "$n healthy on the new build" 0 "$?"
}

echo before >phase
sign_load "$KL" docs &
LOADER=$!
sleep 4

L=""
for i in 0 1 2; do [ "$(role $i)" = 3 ] && L=$i; done
[ -n "$L" ] || bail "a leader"
for i in 0 1 2; do [ "$i" = "$L" ] || upgrade "core$((i + 1))"; done
upgrade "core$((L + 1))" # the leader last
other=$(for i in 0 1 2; do [ "$(role $i)" = 3 ] && echo "$i"; done)
[ -n "$other" ] && pass "a core leads after the upgrade (core$((other + 1)))" || fail "a core leads after the upgrade" "a leader" "none"
for n in extender aggregator1 aggregator2 gateway1 gateway2; do upgrade "$n"; done
echo after >phase
sleep 3
touch stop
wait "$LOADER"

load_report docs "$KL"
"$LN" down "$NET" >down.log 2>&1
read -r -a DIRS <<<"$KL_CORE_DIRS $KL_EXTENDER_DIR"
same_calendars "$KL" "${DIRS[@]}"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
