#!/usr/bin/env bash
# Quorum time (issue 17): a core node whose clock is wrong must not date a signature. On a full
# deploy/local-network (3 cores, 2 aggregators, 2 gateways, an extender), every core's wall
# clock under libfaketime (KL_CLOCK_OFFSET_*): core3 starts 3 s ahead and is put right; then the
# leader's clock jumps 3 s ahead while it leads, while clients keep signing. Checked: the skewed node goes
# unhealthy saying why and refuses requests; no signature's signing time is later than the
# moment the client received it; every request succeeds (the tiers go around the node);
# leadership leaves the jumped node; both recover when their clocks agree again; and after
# everything the three calendars hold one root, have no hole and no second in the future.
# Usage: test_clock.sh BUILD_DIR SOURCE_DIR. Exit 77 (skipped) without libfaketime.
set -u
BUILD=$(cd "$1" && pwd)
SRC="$2"
ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 || { echo "skipped: no libfaketime (apt-get install faketime)"; exit 77; }
. "$(dirname "$0")/harness.sh" clock
KL="$BUILD/cli/keyless"
NETSCRIPT="$SRC/deploy/local-network"
NET="$TMP/net"
unset KSI_CONF KL_AGGR_KEY KSI_AGGR_KEY
export KL_BUILD="$BUILD" KL_BASE_PORT=$((26000 + ($$ % 60) * 100))
export KL_CLOCK_OFFSET_CORE1=0 KL_CLOCK_OFFSET_CORE2=0 KL_CLOCK_OFFSET_CORE3=3 KL_CLOCK_OFFSET_GATEWAY1=0
trap '"$NETSCRIPT" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() { fail "$1" "success" "failure"; cp -r "$NET/log" /tmp/keyless-clock-logs 2>/dev/null; echo "$PASSED passed, $FAILED failed"; exit 1; }

timeout 180 "$NETSCRIPT" up "$NET" >up.log 2>&1 || { tail -n 20 up.log; bail "local-network up with core3 3 s ahead"; }
pass "local-network up with core3 3 s ahead"
. "$NET/network.env"
read -r -a METRICS <<<"$KL_CORE_METRICS_URLS"
read -r -a GWS <<<"$KL_GATEWAY_URLS"
health() { curl -s -m 2 "${METRICS[$1]%/}/healthz" 2>/dev/null; } # core index 0..2
metric() { curl -s -m 2 "${METRICS[$1]%/}/metrics" 2>/dev/null | awk -v m="$2" '$1 == m {print $2}'; }
clock_red() { case "$(health "$1")" in *clock*) return 0 ;; *) return 1 ;; esac; }
green() { curl -sf -m 2 "${METRICS[$1]%/}/healthz" >/dev/null 2>&1; }
leader() { local i; for i in 0 1 2; do [ "$(metric $i keyless_core_raft_role)" = 3 ] && { echo $i; return; }; done; echo none; }

# sign_some N: N single-file signatures through the gateways in turn; each signing time must be
# no later than the second the client received it in. Counts into SIGNED, FAILS, FUTURE.
SIGNED=0 FAILS=0 FUTURE=0 SEQ=0
sign_some() {
  local i f st after
  for ((i = 0; i < $1; i++)); do
    SEQ=$((SEQ + 1)); f="doc$SEQ.txt"; echo "document $SEQ $RANDOM" >"$f"
    timeout 30 "$KL" sign -S "${GWS[$((SEQ % ${#GWS[@]}))]}" --aggr-user "$KL_USER" --aggr-key "$KL_KEY" \
      --retry-for 10s -i "$f" -o "$f.ksig" >"sign$SEQ.log" 2>&1
    st=$?; after=$(date +%s)
    if [ $st -ne 0 ]; then FAILS=$((FAILS + 1)); echo "# sign $f: $(head -c 300 "sign$SEQ.log")"; continue; fi
    SIGNED=$((SIGNED + 1))
    t=$("$KL" inspect -i "$f.ksig" --json | sed -n 's/.*"signing_time":\([0-9]*\).*/\1/p')
    if [ -z "$t" ] || [ "$t" -gt "$after" ]; then FUTURE=$((FUTURE + 1)); echo "# $f: signing time $t, received at $after"; fi
  done
}

# ---- 1. a node 3 s ahead from the start ----
wait_until 20 clock_red 2
check "core3 (3 s ahead) /healthz names its clock" 0 "$?"
check_has "  ... with the skew and what it does" "requests refused" "$(health 2)"
check "core3 exports keyless_core_clock_ok 0" 0 "$(metric 2 keyless_core_clock_ok)"
skew=$(metric 2 keyless_core_clock_skew_seconds)
awk -v s="$skew" 'BEGIN { exit !(s > 2.5 && s < 3.5) }'
check "core3's keyless_core_clock_skew_seconds is about 3 (got $skew)" 0 "$?"
green 0 && green 1
check "core1 and core2 stay healthy" 0 "$?"
check "core3 does not lead" 1 "$([ "$(leader)" = 2 ] && echo 0 || echo 1)"
grep -q 'event=clock.*ok=0' "$NET/log/core3.log"
check "core3 logs event=clock ok=0" 0 "$?"
metric 0 keyless_clock_synchronized | grep -qE '^[01]$'
check "the host clock's discipline is exported (keyless_clock_synchronized)" 0 "$?"
sign_some 6
"$NETSCRIPT" clock core3 0 "$NET" >/dev/null 2>&1
wait_until 30 green 2
check "core3 healthy again once its clock agrees" 0 "$?"
grep -q 'event=clock.*ok=1' "$NET/log/core3.log"
check "core3 logs event=clock ok=1" 0 "$?"

# ---- 2. the leader's clock jumps 3 s ahead while it leads (one node at a time: a majority of
# wrong clocks is the cluster's time, by definition) ----
L=$(leader)
[ "$L" != none ] || bail "a leader among core1 and core2"
LN="core$((L + 1))"
"$NETSCRIPT" clock "$LN" 3 "$NET" >clock.log 2>&1
check "local-network clock $LN 3" 0 "$?"
sign_some 8
wait_until 20 clock_red "$L"
check "$LN, its clock jumped, turns unhealthy naming its clock" 0 "$?"
wait_until 20 bash -c "[ \"\$(curl -s -m 2 ${METRICS[$L]%/}/metrics | awk '\$1 == \"keyless_core_raft_role\" {print \$2}')\" != 3 ]"
check "$LN hands leadership over" 0 "$?"
sign_some 6

# ---- 3. its clock put right: it comes back ----
"$NETSCRIPT" clock "$LN" 0 "$NET" >/dev/null 2>&1
wait_until 30 green "$L"
check "$LN healthy again once its clock agrees" 0 "$?"
sign_some 4

check "every signature request succeeded ($SIGNED signed)" 0 "$FAILS"

# ---- 4. a gateway whose clock is 3 s behind withholds what would look dated after now ----
"$NETSCRIPT" clock gateway1 -3 "$NET" >/dev/null 2>&1
sleep 2
echo "late gateway" >late.txt
timeout 30 "$KL" sign -S "${GWS[0]}" --aggr-user "$KL_USER" --aggr-key "$KL_KEY" --retry-for 0 \
  -i late.txt -o late.txt.ksig >late.log 2>&1
check "gateway1 3 s behind: the request fails with the gateway's status (exit 8)" 8 "$?"
check_has "  ... a retryable 0x300 saying why" "has not begun on the gateway's clock" "$(cat late.log)"
[ ! -e late.txt.ksig ]
check "  ... and no signature file" 0 "$?"
GM=$(echo "$KL_GATEWAY_ADMIN_URLS" | cut -d' ' -f1)
n=$(curl -s -m 2 "${GM%/}/metrics" | awk '$1 == "keyless_gateway_future_signatures_total" {print $2}')
check "gateway1 counts it (keyless_gateway_future_signatures_total > 0, got $n)" 0 "$([ "${n:-0}" -gt 0 ] && echo 0 || echo 1)"
grep -q 'event=future_signature' "$NET/log/gateway1.log"
check "gateway1 logs event=future_signature" 0 "$?"
"$NETSCRIPT" clock gateway1 0 "$NET" >/dev/null 2>&1
sleep 2
timeout 30 "$KL" sign -S "${GWS[0]}" --aggr-user "$KL_USER" --aggr-key "$KL_KEY" --retry-for 10s \
  -i late.txt -o late.txt.ksig >late2.log 2>&1
check "gateway1 with its clock put right signs again" 0 "$?"
check "no signature dated after its delivery" 0 "$FUTURE"

# ---- 4. the calendars: one root, no hole, nothing in the future ----
"$NETSCRIPT" down "$NET" >down.log 2>&1
now=$(date +%s)
read -r -a DIRS <<<"$KL_CORE_DIRS"
min="" maxlast=0
for d in "${DIRS[@]}"; do
  last=$("$KL" calendar stat -D "$d" --json | sed -n 's/.*"last":\([0-9]*\).*/\1/p')
  [ -z "$min" ] || [ "$last" -lt "$min" ] && min=$last
  [ "$last" -gt "$maxlast" ] && maxlast=$last
  check "calendar $(basename "$(dirname "$d")") audits clean (no hole)" 0 "$("$KL" calendar audit -D "$d" >/dev/null 2>&1; echo $?)"
done
check "no calendar holds a second after now ($maxlast <= $now)" 0 "$([ "$maxlast" -le "$now" ] && echo 0 || echo 1)"
roots=$(for d in "${DIRS[@]}"; do "$KL" calendar root -D "$d" --time "$min"; done | sort -u | wc -l)
check "the three calendars have one root at second $min" 1 "$roots"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
