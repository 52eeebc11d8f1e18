#!/usr/bin/env bash
# The backup and restore paths of docs/operations.md, scripted as an operator runs them on a
# local network (deploy/local-network: 3 cores, 2 aggregators, 2 gateways, an extender):
#   1. a hot backup of a core's calendar with the documented mdb_copy line, audited;
#   2. a core whose disk is lost: removed, wiped, seeded from that (older) backup, started with
#      bootstrap = no and added back under its old id; it becomes a voter again;
#   3. the add sent before the node is started fails with a clear message, leaves a standby,
#      and the same add succeeds once the node runs;
#   4. an extender whose replica is lost, seeded from the same backup: healthy and caught up.
# Signatures from before the backup, between backup and restore, and after both verify; the
# three calendars and the replica agree.
# Usage: test_backup.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NETSCRIPT="$HERE/../../deploy/local-network"
. "$HERE/harness.sh" backup
KL="$BUILD/cli/keyless"
NET="$TMP/net"
export KL_BUILD="$BUILD" KL_BASE_PORT=$((12000 + ($$ % 150) * 100 + 50))
trap '"$NETSCRIPT" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() { echo "not ok - $1"; for f in "$NET"/log/*.log; do echo "== $f"; grep -v level=debug "$f" | tail -n 15; done; exit 1; }
"$NETSCRIPT" up "$NET" >up.log 2>&1 || { cat up.log; bail "deploy/local-network up"; }
pass "deploy/local-network up"
# shellcheck disable=SC1091
. "$NET/network.env"
NODES=${KL_CORE_ADMIN_URLS// /,}
read -r -a ADMIN <<<"$KL_CORE_ADMIN_URLS"
sign() { # NAME: a new document NAME signed into NAME.ksig
  echo "document $1 $RANDOM" >"$1"
  "$KL" sign -i "$1" -o "$1.ksig" -S "${KL_GATEWAY_URLS%% *}" -S "${KL_GATEWAY_URLS##* }" \
    --aggr-user "$KL_USER" --aggr-key "$KL_KEY" --retry-for 30s >>sign.log 2>&1
}
stop() { # NAME: SIGTERM, and wait until the process is gone
  local p; p=$(cat "$NET/run/$1.pid")
  kill -TERM "$p"
  wait_until 20 eval "! kill -0 $p 2>/dev/null" || bail "$1 did not stop within 20 s"
}
role() { "$KL" core --json status "${ADMIN[$(($1 - 1))]}" 2>/dev/null | grep -o '"role":"[a-z]*"' | head -n 1 | cut -d'"' -f4; }
member_role() { # ID: its role in the leader's configuration (voter, standby, spare), or nothing
  "$KL" core status $KL_CORE_ADMIN_URLS 2>/dev/null | awk -v id="$1" '$1 == "member" && $2 == id {print $3}'
}
leader() { for i in 1 2 3; do [ "$(role $i)" = leader ] && { echo $i; return; }; done; }

sign before || bail "signing before the backup"

# ---- 1. the documented hot backup, from a running core ----
L=$(leader)
[ -n "$L" ] || bail "a leader"
SRC=$((L % 3 + 1)) # a follower's calendar (any node's will do)
d="$TMP/backup/calendar-$(date +%F)" && mkdir -p "$d" && mdb_copy -c "$NET/data/core$SRC/calendar" "$d"
check "mdb_copy -c of core$SRC's running calendar into a new directory" 0 "$?"
"$KL" calendar audit -D "$d" >audit.out 2>&1
check "the backup audits clean" 0 "$?"
BACKUP_LAST=$("$KL" calendar stat -D "$d" --json | sed -n 's/.*"last":\([0-9]*\).*/\1/p')

# the network moves on past the backup
sleep 3
sign between || bail "signing after the backup"

# ---- 2. a core whose disk is lost, restored under its old id ----
R=$((L % 3 + 1)) # a follower
[ "$R" != "$L" ] || bail "picking a follower"
RADDR=$(sed -n "s/^member$R *= *\([^ ]*\).*/\1/p" "$NET/conf/core$R.conf")
"$KL" core remove "$NODES" "$R" >remove.out 2>&1
check "keyless core remove $R" 0 "$?"
stop "core$R"
rm -rf "$NET/data/core$R" && mkdir -p "$NET/data/core$R/calendar" && cp "$d/data.mdb" "$NET/data/core$R/calendar/"
sed -i 's/^bootstrap *=.*/bootstrap = no/' "$NET/conf/core$R.conf"
grep -q '^bootstrap = no' "$NET/conf/core$R.conf" || sed -i 's/^\[cluster\]/[cluster]\nbootstrap = no/' "$NET/conf/core$R.conf"

# 3. the add sent before the node runs: a clear refusal, a standby left, nothing broken
"$KL" core add "$NODES" "$R" "$RADDR" >add1.out 2>&1
rc=$?
check "an add before the node runs fails (exit 1)" 1 "$rc"
check_has "  ... and says what to do" "run the same add again" "$(cat add1.out)"
check "  ... and leaves member $R a standby" standby "$(member_role "$R")"
sign while_standby || fail "signing with a standby member" "exit 0" "$(tail -n 1 sign.log)"

"$NETSCRIPT" up "$NET" >>up.log 2>&1 || bail "starting core$R again"
"$KL" core add "$NODES" "$R" "$RADDR" >add2.out 2>&1
rc=$?
check "the same add once the node runs" 0 "$rc"
check "  ... member $R is a voter again" voter "$(member_role "$R")"
"$KL" core add "$NODES" "$R" "$RADDR" >add3.out 2>&1
rc=$?
check "adding a voter again changes nothing (exit 0)" 0 "$rc"
check_has "  ... and says so" "already a voter" "$(cat add3.out)"
OTHER=$(echo "$RADDR" | sed 's/:\([0-9]*\)$/:1/')
"$KL" core add "$NODES" "$R" "$OTHER" >add4.out 2>&1
check_has "adding member $R at another address is refused" "remove it first" "$(cat add4.out)"
caught() { [ "$(role "$R")" = follower ] || [ "$(role "$R")" = leader ]; }
wait_until 30 caught && pass "core$R follows (restored from a backup $(( $(date +%s) - BACKUP_LAST )) s old)" ||
  fail "core$R follows" "follower or leader" "$(role "$R")"

# ---- 4. an extender whose replica is lost, seeded from the same backup ----
stop extender
rm -rf "$NET/data/extender" && mkdir -p "$NET/data/extender" && cp "$d/data.mdb" "$NET/data/extender/"
"$NETSCRIPT" up "$NET" >>up.log 2>&1
check "the extender starts on the seeded replica (local-network up waits for its /healthz)" 0 "$?"
sign after || bail "signing after the restores"
core_last() { "$KL" core --json status "${ADMIN[$(($(leader) - 1))]}" | sed -n 's/.*"calendar_last":\([0-9]*\).*/\1/p'; }
ext_last() { curl -sf -m 2 "${KL_EXTENDER_ADMIN_URL}metrics" | awk '$1 == "keyless_calendar_last_second" {print $2}'; }
TARGET=$(core_last)
ext_caught() { local x; x=$(ext_last); [ -n "$x" ] && [ "${x%.*}" -ge "$TARGET" ]; }
wait_until 30 ext_caught && pass "the extender caught up past second $TARGET" || fail "the extender caught up" ">= $TARGET" "$(ext_last)"

for f in before between while_standby after; do
  [ -f "$f.ksig" ] || { fail "$f.ksig was written" "a file" "none"; continue; }
  "$KL" extend -i "$f.ksig" -o "$f.ext.ksig" --to-head -X "$KL_EXTENDER_URL" --ext-user "$KL_USER" --ext-key "$KL_KEY" >ext.out 2>&1
  rc=$?
  check "the $f signature extends through the restored extender" 0 "$rc"
  "$KL" verify -i "$f.ksig" -f "$f" --policy internal >/dev/null 2>&1
  check "  ... and verifies" 0 "$?"
done

"$NETSCRIPT" down "$NET" >/dev/null 2>&1
same_calendars "$KL" "$NET/data/core1/calendar" "$NET/data/core2/calendar" "$NET/data/core3/calendar" "$NET/data/extender"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
