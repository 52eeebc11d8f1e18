#!/usr/bin/env bash
# Fault test of a whole network (deploy/local-network: 3 cores, 2 aggregators, 2 gateways, an
# extender, all on loopback) while clients sign continuously through both gateways:
#   kill -9 the core leader; SIGSTOP a follower for longer than an election; restart both;
#   kill -9 an aggregator; kill -9 the extender and restart it (it catches up from the core);
#   a core whose calendar map is too small for its calendar: a clear error, no corruption.
# After the faults: the three calendars agree (their roots at the last common second commit to
# every second before it) and audit clean, the extender caught up, every signature a client
# received verifies (internal and key-based), and the longest time without service is reported.
# Usage: test_network.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NETSCRIPT="$HERE/../../deploy/local-network"
. "$HERE/harness.sh" network
KL="$BUILD/cli/keyless"
NET="$TMP/net"
SIGNERS=4
DEADLINE=$((SECONDS + 240)) # the whole test, whatever happens

# Below the ephemeral port range (32768-60999), where outgoing connections could take our ports.
export KL_BUILD="$BUILD" KL_BASE_PORT=$((12000 + ($$ % 150) * 100))
trap '"$NETSCRIPT" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() { echo "not ok - $1"; "$NETSCRIPT" down "$NET" >/dev/null 2>&1; for f in "$NET"/log/*.log; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
"$NETSCRIPT" up "$NET" >up.log 2>&1 || { cat up.log; bail "deploy/local-network up"; }
pass "deploy/local-network up: the network answers"
# shellcheck disable=SC1091
. "$NET/network.env"
read -r -a GWS <<<"$KL_GATEWAY_URLS"
read -r -a GWT <<<"$KL_GATEWAY_TCP_URLS"
read -r -a ADMIN <<<"$KL_CORE_ADMIN_URLS"
TRUST=(-P "$NET/publications.bin" -V "$KL_TRUST_ANCHOR" --cnstr "$KL_CNSTR")
now_ms() { date +%s%3N; }

# ---- clients: each signs one new document after another, logging start, end and outcome ----
mkdir -p sigs
signer() {
  local id=$1 n=0 url
  while [ -e run.flag ] && [ $SECONDS -lt $DEADLINE ] && [ $n -lt 400 ]; do
    n=$((n + 1))
    case $(((id + n) % 4)) in 0 | 1) url=${GWS[$(((id + n) % 2))]} ;; *) url=${GWT[$(((id + n) % 2))]} ;; esac
    local f="sigs/d$id-$n"
    echo "signer $id document $n $(date +%s%N)" >"$f"
    local t0 t1 rc
    t0=$(now_ms)
    "$KL" sign -i "$f" -S "$url" --aggr-user "$KL_USER" --aggr-key "$KL_KEY" --timeout 8000 >/dev/null 2>>"sign$id.err"
    rc=$?
    t1=$(now_ms)
    echo "$t0 $t1 $rc $f" >>"sign$id.log"
  done
}
touch run.flag
for i in $(seq 1 $SIGNERS); do signer "$i" & done

# /status is on the admin port: mutual TLS with the operator's certificate (network.env names it).
ADMIN_TLS=(--cacert "$KL_CA" --cert "$KL_ADMIN_CERT" --key "$KL_ADMIN_KEY")
role_of() { curl -sf -m 2 "${ADMIN_TLS[@]}" "${ADMIN[$(($1 - 1))]}/status" 2>/dev/null | grep -o '"role":"[a-z]*"' | head -n 1 | cut -d'"' -f4; } # the node's own: members[] have roles too
leader() { for i in 1 2 3; do [ "$(role_of $i)" = leader ] && { echo $i; return; }; done; }
pid_of() { cat "$NET/run/$1.pid"; }
gone() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0; [ "$st" = Z ] || [ "$st" = X ]; }
kill9() { local p; p=$(pid_of "$1"); kill -KILL "$p"; wait_until 10 gone "$p" || echo "# $1 (pid $p) still there 10 s after kill -9"; }
mark() { echo "$(now_ms) $1" >>events.log; echo "# $1"; }
signed_after() { awk -v t="$1" '$3 == 0 && $2 > t' sign*.log 2>/dev/null | wc -l; }
service_back() { [ "$(signed_after "$1")" -ge 2 ]; }

sleep 4
# ---- 1. kill -9 the core leader, then SIGSTOP a follower past an election, then restart ----
L=$(leader)
[ -n "$L" ] || bail "a core leader before the faults"
mark "kill -9 core$L (leader)"
kill9 core$L
T=$(now_ms)
wait_until 30 service_back "$T" || bail "signing resumed after the leader was killed"
pass "signing resumed after core$L (the leader) was killed"
F=$(for i in 1 2 3; do [ $i != "$L" ] && [ "$(role_of $i)" = follower ] && { echo $i; break; }; done)
if [ -n "$F" ]; then
  mark "SIGSTOP core$F (follower) for 3 s"
  kill -STOP "$(pid_of core$F)"
  sleep 3
  kill -CONT "$(pid_of core$F)"
  mark "SIGCONT core$F"
else
  fail "a follower to stop" "one of the two survivors a follower" "none"
fi
"$NETSCRIPT" up "$NET" >>up.log 2>&1 || bail "restarting core$L"
mark "core$L restarted"
# Rejoined: a follower again, or elected leader since (the SIGSTOP above may cause an election).
rejoined() { case "$(role_of "$L")" in follower | leader) return 0 ;; *) return 1 ;; esac; }
wait_until 30 rejoined && pass "core$L rejoined ($(role_of "$L"))" ||
  fail "core$L rejoined" "follower or leader" "$(role_of "$L")"

# ---- 2. kill -9 an aggregator: the gateways send every round to both ----
mark "kill -9 aggregator1"
kill9 aggregator1
T=$(now_ms)
# Aggregator1 stays down until this holds: signatures completed after the kill went through
# aggregator2. Bounded, never timed (a loaded CI machine signs a few a second here).
if wait_until 30 service_back "$T"; then
  pass "signing went on without aggregator1 ($(signed_after "$T") signed, first $(($(awk -v t="$T" '$3 == 0 && $2 > t {print $2}' sign*.log | sort -n | head -n 1) - T)) ms after the kill)"
else
  fail "signing went on without aggregator1" ">= 2 signatures within 30 s" "$(signed_after "$T")"
fi
"$NETSCRIPT" up "$NET" >>up.log 2>&1 && mark "aggregator1 restarted" ||
  fail "aggregator1 restarted by local-network up" "exit 0" "$(tail -n 1 up.log)"

# ---- 3. kill -9 the extender and restart it: it catches up from the core ----
mark "kill -9 extender"
kill9 extender
sleep 2
"$NETSCRIPT" up "$NET" >>up.log 2>&1 && mark "extender restarted" ||
  fail "extender restarted by local-network up" "exit 0" "$(tail -n 1 up.log)"
ext_last() { curl -sf -m 2 "${KL_EXTENDER_ADMIN_URL}metrics" | awk '$1 == "keyless_calendar_last_second" {print $2}'; }
core_last() { curl -sf -m 2 "${ADMIN_TLS[@]}" "${ADMIN[$(($(leader) - 1))]}/status" | sed -n 's/.*"calendar_last":\([0-9]*\).*/\1/p'; }
TARGET=$(core_last)
caught_up() { local x; x=$(ext_last); [ -n "$x" ] && [ -n "$TARGET" ] && [ "${x%.*}" -ge "$TARGET" ]; }
wait_until 30 caught_up && pass "the restarted extender caught up with the core (second $TARGET)" ||
  fail "the extender caught up" ">= $TARGET" "$(ext_last)"

sleep 3
rm -f run.flag
wait
mark "clients stopped"

# ---- what the clients saw ----
cat sign*.log | sort -n >all.log
OK=$(awk '$3 == 0' all.log | wc -l)
BAD=$(awk '$3 != 0' all.log | wc -l)
echo "# signing attempts: $OK signed, $BAD failed (retryable errors while the faults lasted)"
check "most attempts were signed" yes "$([ "$OK" -ge 20 ] && [ "$OK" -gt "$BAD" ] && echo yes || echo "no: $OK ok, $BAD failed")"
# Time without service: the longest stretch between two successful signatures' completions.
GAP=$(awk '$3 == 0 {print $2}' all.log | sort -n | awk 'NR > 1 && $1 - p > g {g = $1 - p} {p = $1} END {print g + 0}')
echo "# longest time without a signature completing: ${GAP} ms (faults: $(cut -d' ' -f2- events.log | paste -sd ';'))"
check "service gap under 15 s" yes "$([ "$GAP" -lt 15000 ] && echo yes || echo "no: $GAP ms")"
FAILS=$(cat sign*.err 2>/dev/null | grep -v -c -E '0x0?30[01]|retry|timed out|connect|unreachable|upstream|shutting down|network' || true)
check "every failure was a retryable or network error (no wrong chain, no verification failure)" 0 "$FAILS"

# ---- every signature received verifies ----
"$NETSCRIPT" publish "$NET" >/dev/null || fail "publish" 0 $?
VBAD=0
for s in sigs/*.ksig; do
  "$KL" verify -i "$s" -f "${s%.ksig}" --policy key "${TRUST[@]}" >/dev/null 2>&1 || { VBAD=$((VBAD + 1)); echo "# $s: $("$KL" verify -i "$s" -f "${s%.ksig}" --policy key "${TRUST[@]}" 2>&1 | head -1)"; }
done
check "all $(ls sigs/*.ksig | wc -l) signatures received verify (key-based, internal included)" 0 "$VBAD"
check "every signed attempt left a signature file" "$OK" "$(ls sigs/*.ksig | wc -l)"

# ---- an outsider's audit across the faults: the publication made at start and the one just made
# (the leader killed in between) are linked by a consistency proof, and the latest to the head ----
out=$("$KL" audit -X "$KL_EXTENDER_URL" -P "$NET/publications.bin" -V "$KL_TRUST_ANCHOR" --cnstr "$KL_CNSTR" 2>&1)
check "keyless audit across the leader change: exit 0" 0 "$?"
check_has "  ... over both publications" "2 publications" "$out"

# ---- the calendars: no fork, no hole ----
"$NETSCRIPT" down "$NET" >down.log 2>&1
read -r -a DIRS <<<"$KL_CORE_DIRS"
min=""
for d in "${DIRS[@]}" "$KL_EXTENDER_DIR"; do
  last=$("$KL" calendar stat -D "$d" --json | sed -n 's/.*"last":\([0-9]*\).*/\1/p')
  [ -z "$min" ] || [ "$last" -lt "$min" ] && min=$last
done
roots=$(for d in "${DIRS[@]}" "$KL_EXTENDER_DIR"; do "$KL" calendar root -D "$d" --time "$min"; done | sort -u | wc -l)
check "the 3 core calendars and the extender's replica have one root at second $min (no fork before it)" 1 "$roots"
for d in "${DIRS[@]}"; do check "calendar $d audits clean (no hole)" 0 "$("$KL" calendar audit -D "$d" >/dev/null 2>&1; echo $?)"; done

# ---- 4. the disk budget: a core whose calendar cannot grow stops with a clear error ----
mkdir full
P=$((KL_BASE_PORT + 90))
cat >full/core.conf <<EOF
[node]
id = 1
data_dir = $TMP/full/data
[cluster]
member1 = 127.0.0.1:$P 127.0.0.1:$((P + 1)) 127.0.0.1:$((P + 2))
[server]
admin_listen = 127.0.0.1:$((P + 3))
[calendar]
# 2e6 empty seconds: about 4.6 MB in storage format 2 (1 byte and some hashes each)
genesis = $(($(date +%s) - 2000000))
map_size = 1M
[keys]
calendar_auth_cert = $NET/pki/calendar-auth.crt
calendar_auth_key = file:$NET/pki/calendar-auth.key?passphrase-source=file:$NET/secrets/signing-keys.pass
[tls]
ca = $NET/pki/cluster-ca.crt
cert = $NET/pki/nodes/core-1.crt
key = $NET/pki/nodes/core-1.key
EOF
timeout 20 "$BUILD/core/keyless-core" -c full/core.conf >full/log 2>&1
RC=$?
check "a core whose calendar map is full exits with an error (not killed by the timeout)" yes \
  "$([ $RC -ne 0 ] && [ $RC -ne 124 ] && echo yes || echo "no: exit $RC")"
check_has "its log says the map is full and what to raise" "map size is full (raise map_size)" "$(cat full/log)"
check "its calendar audits clean after the failure" 0 "$("$KL" calendar audit -D full/data/calendar >/dev/null 2>&1; echo $?)"
sed -i 's/^map_size = 1M/map_size = 64M/' full/core.conf
"$BUILD/core/keyless-core" -c full/core.conf >full/log2 2>&1 &
PIDS+=($!)
ok_after() { curl -sf -m 2 "${ADMIN_TLS[@]}" "https://127.0.0.1:$((P + 3))/status" | grep -q '"role":"leader"'; }
wait_until 30 ok_after && pass "with a larger map the same node resumes and leads" || fail "resumes" leader "$(tail -n 3 full/log2)"
kill -TERM "${PIDS[-1]}"
wait "${PIDS[-1]}"
check "and stops cleanly" 0 $?
check "its calendar audits clean" 0 "$("$KL" calendar audit -D full/data/calendar >/dev/null 2>&1; echo $?)"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
