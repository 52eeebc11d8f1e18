#!/usr/bin/env bash
# Hostile peers against a whole TLS network (deploy/local-network: 3 cores, 2 aggregators, 2
# gateways, an extender, all on loopback, mutual TLS on every node link). Replays what an
# attacker on the same host tried before node links were authenticated (issue 10), while
# clients keep signing through the gateways, and asserts the outcome of each:
#   - forged Raft traffic: no certificate, a gateway's certificate, member 3's certificate
#     claiming to be member 1, a core certificate of a non-member: refused before libraft;
#   - membership changes on the admin port without an admin certificate: refused, no change;
#   - aggregation requests straight to a core's internal port or an aggregator's child port
#     without a node certificate: no calendar-signed answer;
#   - forged clock heartbeats and forwards from a node that is not the member it names: not
#     counted, not held; the calendar keeps one second per second;
#   - level-255 requests every half second: each answered 0x104, no round fails;
#   - a certificate revoked in the CRL, an expired one, one from another CA: refused.
# Then: every core holds the same root for every committed second (no fork), the membership
# is unchanged, every signature a client received verifies, each refusal shows in /metrics,
# and the network still signs. Usage: test_hostile.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NETSCRIPT="$HERE/../../deploy/local-network"
. "$HERE/harness.sh" hostile
KL="$BUILD/cli/keyless"
CLIENT="$BUILD/tests/system/core_client"
NET="$TMP/net"
DEADLINE=$((SECONDS + 240))
export KL_BUILD="$BUILD" KL_BASE_PORT=$((14000 + ($$ % 150) * 100))
trap '"$NETSCRIPT" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() { echo "not ok - $1"; "$NETSCRIPT" down "$NET" >/dev/null 2>&1; for f in "$NET"/log/*.log; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
"$NETSCRIPT" up "$NET" >up.log 2>&1 || { cat up.log; bail "deploy/local-network up"; }
pass "deploy/local-network up: a TLS network answers"
# shellcheck disable=SC1091
. "$NET/network.env"
read -r -a GWS <<<"$KL_GATEWAY_URLS"
read -r -a ADMIN <<<"$KL_CORE_ADMIN_URLS"
read -r -a METRICS <<<"$KL_CORE_METRICS_URLS"
B=$(cat "$NET/conf/base_port")
PKI="$NET/pki"
raft_port() { echo $((B + $1 * 10 + 1)); }
internal_port() { echo $((B + $1 * 10 + 2)); }
ADMIN_TLS=(--cacert "$KL_CA" --cert "$KL_ADMIN_CERT" --key "$KL_ADMIN_KEY")
status_of() { curl -sf -m 3 "${ADMIN_TLS[@]}" "${ADMIN[$(($1 - 1))]}/status"; }
leader() { for i in 1 2 3; do status_of $i | grep -q '"role":"leader"' && { echo $i; return; }; done; }
# metric_sum N NAME [FILTER]: the sum of a series on core N's metrics port
metric_sum() {
  curl -sf -m 3 "${METRICS[$(($1 - 1))]}metrics" | awk -v k="$2" -v f="${3:-}" \
    'index($1, k) == 1 && (f == "" || index($1, f) > 0) { s += $2 } END { printf "%d\n", s }'
}
metric_all() { local s=0; for i in 1 2 3; do s=$((s + $(metric_sum $i "$@"))); done; echo $s; }
cert() { echo --cert "$PKI/nodes/$1.crt" --key "$PKI/nodes/$1.key" --ca "$KL_CA"; }
# tls_send PORT CERT-NAME|- BYTES-FILE: one TLS connection sending the file's bytes
tls_send() {
  local args=(-connect "127.0.0.1:$1" -CAfile "$KL_CA" -quiet -verify_return_error)
  [ "$2" != - ] && args+=(-cert "$PKI/nodes/$2.crt" -key "$PKI/nodes/$2.key")
  (cat "$3"; sleep 1) | timeout 5 openssl s_client "${args[@]}" >/dev/null 2>&1
}
# raft_hello ID ADDR: the hello a connecting core sends after TLS (core/src/raft_tls.c)
raft_hello() { printf 'KLRAFT01'; printf '%016x' "$1" | xxd -r -p; printf '%04x' "${#2}" | xxd -r -p; printf '%s' "$2"; }

L0=$(leader)
[ -n "$L0" ] || bail "a leader"

# ---- clients sign throughout; every signature they get must verify at the end ----
mkdir -p sigs
signer() {
  local id=$1 n=0
  while [ -e run.flag ] && [ $SECONDS -lt $DEADLINE ] && [ $n -lt 200 ]; do
    n=$((n + 1))
    local f="sigs/d$id-$n"
    echo "hostile-test signer $id document $n $(date +%s%N)" >"$f"
    "$KL" sign -i "$f" -S "${GWS[$(((id + n) % 2))]}" --aggr-user "$KL_USER" --aggr-key "$KL_KEY" --timeout 8000 \
      >/dev/null 2>>"sign$id.err"
    echo "$? $f" >>"sign$id.log"
    sleep 0.2
  done
}
touch run.flag
for i in 1 2; do signer "$i" & done
t_start=$(date +%s)
last_start=$("$KL" calendar stat -D "$KL_NETWORK_DIR/data/core1/calendar" --json | sed -n 's/.*"last":\([0-9]*\).*/\1/p')

# ---- 1. forged Raft traffic ----
refused0=$(metric_all keyless_core_raft_peers_refused_total)
raft_hello 1 "127.0.0.1:$(raft_port 1)" >hello-as-1
tls_send "$(raft_port 2)" - hello-as-1                # no certificate
tls_send "$(raft_port 2)" gateway-1 hello-as-1        # a node, but not a core
tls_send "$(raft_port 2)" core-3 hello-as-1           # member 3 claiming to be member 1
printf 'KLRAFT01 this is not a raft peer at all, just bytes on the port' >junk
(cat junk; sleep 1) | timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$(raft_port 2); cat >&3; sleep 1" 2>/dev/null
"$KL" devpki issue -o "$PKI" core 9 >/dev/null || bail "issue a core/9 certificate"
raft_hello 9 "127.0.0.1:1" >hello-as-9
tls_send "$(raft_port 2)" core-9 hello-as-9           # a core certificate, not a member
sleep 1
refused=$(( $(metric_all keyless_core_raft_peers_refused_total) - refused0 ))
check "5 forged Raft connections refused and counted (keyless_core_raft_peers_refused_total)" yes \
  "$([ "$refused" -ge 5 ] && echo yes || echo "no: $refused")"
log2=$(cat "$KL_NETWORK_DIR/log/core2.log")
check_has "the impostor is named in the log" "claims member 1 but its certificate is core/3" "$log2"
check_has "the non-member is named in the log" "9 is not a member" "$log2"
check_has "the gateway certificate is refused on the Raft port" "this link does not accept the peer's role: gateway" "$log2"

# ---- 2. membership changes without an admin certificate ----
code=$(curl -s -m 3 -o /dev/null -w '%{http_code}' -k -X POST --data 3 "${ADMIN[$((L0 - 1))]}/members/remove")
check "POST /members/remove without a certificate: no HTTP answer (TLS refused)" 000 "$code"
# an add for an existing member (which now resumes a promotion or answers "already a voter")
code=$(curl -s -m 3 -o /dev/null -w '%{http_code}' -k -X POST --data "1/127.0.0.1:1" "${ADMIN[$((L0 - 1))]}/members/add")
check "POST /members/add of an existing member without a certificate: no HTTP answer (TLS refused)" 000 "$code"
code=$(curl -s -m 3 -o /dev/null -w '%{http_code}' --cacert "$KL_CA" --cert "$PKI/nodes/gateway-1.crt" \
  --key "$PKI/nodes/gateway-1.key" -X POST --data "7/127.0.0.1:1" "${ADMIN[$((L0 - 1))]}/members/add")
check "POST /members/add with a gateway certificate: refused" 000 "$code"
code=$(curl -s -m 3 -o /dev/null -w '%{http_code}' -X POST --data 3 "${METRICS[$((L0 - 1))]}members/remove")
check "the plain metrics port has no membership route" 404 "$code"

# ---- 3. aggregation requests that skip the gateway ----
out=$(timeout 10 "$CLIENT" -a "127.0.0.1:$(internal_port 1)" -o sigs --random 1 --retries 0 2>&1)
check "a plain request to a core's internal port gets no signature" yes \
  "$(echo "$out" | grep -q 'signed=1' && echo no || echo yes)"
out=$(timeout 10 "$CLIENT" -a "127.0.0.1:$((B + 40))" -o sigs --random 1 --retries 0 2>&1)
check "a plain request to an aggregator's child port gets no signature" yes \
  "$(echo "$out" | grep -q 'signed=1' && echo no || echo yes)"
out=$(timeout 10 "$CLIENT" -a "127.0.0.1:$(internal_port 1)" $(cert admin-operator) -o sigs --random 1 --retries 0 2>&1)
check "an admin certificate gets no signature from the internal port" yes \
  "$(echo "$out" | grep -q 'signed=1' && echo no || echo yes)"

# the replication port (seconds for extenders) takes extender and core certificates only
tls_send "$((B + 13))" aggregator-1 junk
tls_send "$((B + 13))" - junk
sleep 0.5
check_has "core 1's replication port refuses an aggregator certificate" \
  "server=replication peer=127.0.0.1" "$(grep "accept the peer's role: aggregator" "$KL_NETWORK_DIR/log/core1.log")"

# ---- 4. forged heartbeats and forwards ----
hb0=$(metric_all keyless_core_heartbeats_refused_total)
fw0=$(metric_all keyless_core_forwards_refused_total)
for k in 1 2 3 4 5 6; do
  timeout 5 "$CLIENT" -a "127.0.0.1:$(internal_port "$L0")" $(cert aggregator-1) --heartbeat "$L0:10000" -o sigs >/dev/null 2>&1
  other=$(( L0 % 3 + 1 ))
  timeout 5 "$CLIENT" -a "127.0.0.1:$(internal_port "$L0")" $(cert "core-$other") --heartbeat "$(( other % 3 + 1 )):10000" \
    -o sigs >/dev/null 2>&1
  sleep 0.3
done
timeout 10 "$CLIENT" -a "127.0.0.1:$(internal_port "$L0")" $(cert aggregator-1) --forward 2 --random 500 -o sigs >/dev/null 2>&1
other=$(( L0 % 3 + 1 ))
timeout 10 "$CLIENT" -a "127.0.0.1:$(internal_port "$L0")" $(cert "core-$other") --forward $(( other % 3 + 1 )) --random 500 \
  -o sigs >/dev/null 2>&1
sleep 1
hb=$(( $(metric_all keyless_core_heartbeats_refused_total) - hb0 ))
fw=$(( $(metric_all keyless_core_forwards_refused_total) - fw0 ))
check "forged heartbeats are not counted as clock samples (refused: $hb)" yes "$([ "$hb" -ge 12 ] && echo yes || echo no)"
check "forged forwards are not held (refused: $fw)" yes "$([ "$fw" -ge 1000 ] && echo yes || echo no)"
check "the leader's clock is still judged good" 1 "$(metric_sum "$L0" keyless_core_clock_ok)"

# ---- 5. level-255 requests every half second ----
ok255=0
for k in 1 2 3 4 5 6; do
  out=$(timeout 10 "$CLIENT" -a "127.0.0.1:$(internal_port 1)" $(cert aggregator-1) --level 255 --random 1 --retries 0 \
    -o sigs 2>&1)
  echo "$out" | grep -q 'status 0x104' && ok255=$((ok255 + 1))
  sleep 0.5
done
check "6 level-255 requests each answered 0x104" 6 "$ok255"

# ---- 6. certificates that must not work ----
now=$(date +%s)
"$KL" devpki issue -o "$PKI" aggregator expired --not-before $((now - 7200)) --not-after $((now - 3600)) >/dev/null
"$KL" devpki issue -o "$PKI" aggregator revoked >/dev/null
"$KL" devpki revoke -o "$PKI" "$PKI/nodes/aggregator-revoked.crt" >/dev/null
kill -HUP "$(cat "$KL_NETWORK_DIR/run/core1.pid")" # the new CRL, re-read without a restart
for _ in $(seq 1 50); do grep -q 'event=tls_reloaded' "$KL_NETWORK_DIR/log/core1.log" && break; sleep 0.1; done
check_has "core 1 re-read its certificate and CRL on SIGHUP" "event=tls_reloaded" "$(cat "$KL_NETWORK_DIR/log/core1.log")"
"$KL" devpki -o "$TMP/other-pki" --nodes aggregator:1 >/dev/null
for c in expired revoked; do
  out=$(timeout 10 "$CLIENT" -a "127.0.0.1:$(internal_port 1)" $(cert "aggregator-$c") -o sigs --random 1 --retries 0 2>&1)
  check "an aggregator certificate that is $c gets nothing" yes "$(echo "$out" | grep -q 'signed=1' && echo no || echo yes)"
done
out=$(timeout 10 "$CLIENT" -a "127.0.0.1:$(internal_port 1)" --cert "$TMP/other-pki/nodes/aggregator-1.crt" \
  --key "$TMP/other-pki/nodes/aggregator-1.key" --ca "$KL_CA" -o sigs --random 1 --retries 0 2>&1)
check "an aggregator certificate from another CA gets nothing" yes "$(echo "$out" | grep -q 'signed=1' && echo no || echo yes)"
log1=$(cat "$KL_NETWORK_DIR/log/core1.log")
check_has "the expired certificate is named as such" "certificate has expired" "$log1"
check_has "the revoked certificate is named as such" "certificate revoked" "$log1"
out=$(timeout 10 "$CLIENT" -a "127.0.0.1:$(internal_port 1)" $(cert aggregator-1) -o sigs --random 3 --retries 10 2>&1)
check "a good aggregator certificate still signs" "signed=3 retried=0 failed=0" "$(echo "$out" | tail -n 1 | sed 's/retried=[0-9]*/retried=0/')"

# ---- 7. a certificate rotated on one node while it runs ----
"$KL" devpki issue -o "$PKI" core 2 --name core-2-rotated >/dev/null || bail "issue a new core/2 certificate"
new_serial=$(openssl x509 -in "$PKI/nodes/core-2-rotated.crt" -noout -serial | cut -d= -f2)
cp "$PKI/nodes/core-2-rotated.crt" "$PKI/nodes/core-2.crt.new" && mv "$PKI/nodes/core-2.crt.new" "$PKI/nodes/core-2.crt"
cp "$PKI/nodes/core-2-rotated.key" "$PKI/nodes/core-2.key.new" && mv "$PKI/nodes/core-2.key.new" "$PKI/nodes/core-2.key"
kill -HUP "$(cat "$KL_NETWORK_DIR/run/core2.pid")"
for _ in $(seq 1 50); do grep -q "event=tls_reloaded.*serial=$new_serial" "$KL_NETWORK_DIR/log/core2.log" && break; sleep 0.1; done
check_has "core 2 took its new certificate on SIGHUP" "serial=$new_serial" "$(grep tls_reloaded "$KL_NETWORK_DIR/log/core2.log")"
served=$( (sleep 1) | timeout 5 openssl s_client -connect "127.0.0.1:$(internal_port 2)" -CAfile "$KL_CA" \
  -cert "$PKI/nodes/aggregator-1.crt" -key "$PKI/nodes/aggregator-1.key" 2>/dev/null | openssl x509 -noout -serial | cut -d= -f2)
check "a new connection to core 2 gets the new certificate" "$new_serial" "$served"
p3=$(cat "$KL_NETWORK_DIR/run/core3.pid")
kill -TERM "$p3" # core 3 reconnects to core 2 from scratch
for _ in $(seq 1 100); do kill -0 "$p3" 2>/dev/null || break; sleep 0.1; done
"$NETSCRIPT" up "$NET" >>up.log 2>&1 || bail "core 3 restarted"
rejoined() { status_of 3 | grep -q '"role":"follower"\|"role":"leader"'; }
ok=no; for _ in $(seq 1 100); do rejoined && { ok=yes; break; }; sleep 0.1; done
check "core 3 rejoins through core 2's new certificate" yes "$ok"
out=$(timeout 20 "$CLIENT" -a "127.0.0.1:$(internal_port 2)" $(cert aggregator-1) -o sigs --random 3 --retries 20 2>&1)
check "core 2 signs after its rotation" "signed=3" "$(echo "$out" | tail -n 1 | cut -d' ' -f1)"

# ---- 8. a legitimate membership change: every member logs who asked ----
"$KL" devpki issue -o "$PKI" core 4 >/dev/null || bail "issue a core/4 certificate"
P4=$((B + 91))
sed -e "s#^id = .*#id = 4#" -e "s#^data_dir = .*#data_dir = $TMP/core4#" -e "s#^admin_listen = .*#admin_listen = 127.0.0.1:$((P4 + 3))#" \
  -e "s#^metrics_listen = .*#metrics_listen = 127.0.0.1:$((P4 + 4))#" -e "s#core-1\.#core-4.#g" \
  "$KL_NETWORK_DIR/conf/core1.conf" >core4.conf
sed -i "s#^\[cluster\]#[cluster]\nbootstrap = no\nmember4 = 127.0.0.1:$P4 127.0.0.1:$((P4 + 1)) 127.0.0.1:$((P4 + 2))#" core4.conf
"$BUILD/core/keyless-core" -c core4.conf >core4.log 2>&1 &
PIDS+=($!)
L=$(leader)
out=$("$KL" core add "${ADMIN[$((L - 1))]}" 4 "127.0.0.1:$P4" --timeout 20000 2>&1)
check_has "the operator adds member 4 with an admin certificate" "ok" "$out"
h4() { curl -s -m 2 "http://127.0.0.1:$((P4 + 4))/healthz"; }
told=yes; for _ in $(seq 1 100); do case "$(h4)" in *"not in their configuration"*) sleep 0.2 ;; *) told=no; break ;; esac; done
check "member 4, once added, is no longer told it is none" no "$told"
out=$("$KL" core remove "${ADMIN[$(($(leader) - 1))]}" 4 --timeout 20000 2>&1)
check_has "and removes it again" "ok" "$out"
told=no; for _ in $(seq 1 100); do case "$(h4)" in *"not in their configuration"*) told=yes; break ;; esac; sleep 0.2; done
check "the removed member 4 learns from the members that it is none (/healthz)" yes "$told"
grep -q 'event=not_a_member' core4.log
check "  ... and logs it (event=not_a_member)" 0 "$?"
sleep 2
for i in 1 2 3; do
  log=$(grep 'event=admin_request' "$KL_NETWORK_DIR/log/core$i.log")
  check_has "core $i logged who added member 4" "add 4/127.0.0.1:$P4 by admin/operator" "$log"
  check_has "core $i logged who removed member 4" 'remove 4 by admin/operator' "$log"
done
kill -TERM "${PIDS[-1]}" 2>/dev/null

# ---- the outcome ----
rm -f run.flag
wait
t_end=$(date +%s)
last_end=$("$KL" calendar stat -D "$KL_NETWORK_DIR/data/core1/calendar" --json | sed -n 's/.*"last":\([0-9]*\).*/\1/p')
adv=$((last_end - last_start)) el=$((t_end - t_start))
check "the calendar kept one second per second under attack (advanced $adv s in $el s)" yes \
  "$([ $adv -ge $((el - 3)) ] && echo yes || echo no)"
MEMBERS1=$(for i in 1 2 3; do status_of $i | sed -n 's/.*"leader":\([0-9]*\).*/\1/p'; done | sort -u)
check "every core still answers with one leader" "1" "$(echo "$MEMBERS1" | grep -c .)"
sleep 2
read -r -a DIRS <<<"$KL_CORE_DIRS"
min=""
for d in "${DIRS[@]}"; do
  l=$("$KL" calendar stat -D "$d" --json | sed -n 's/.*"last":\([0-9]*\).*/\1/p')
  [ -z "$min" ] || [ "$l" -lt "$min" ] && min=$l
done
genesis=$("$KL" calendar stat -D "${DIRS[0]}" --json | sed -n 's/.*"genesis":\([0-9]*\).*/\1/p')
forks=0
for s in $(seq "$genesis" "$min"); do
  n=$(for d in "${DIRS[@]}"; do "$KL" calendar root -D "$d" --time "$s"; done | sort -u | wc -l)
  [ "$n" -eq 1 ] || forks=$((forks + 1))
done
check "no fork: the three cores hold the same root for each of $((min - genesis + 1)) seconds" 0 "$forks"
total=0 bad=0
for f in sign*.log; do
  while read -r rc file; do
    [ "$rc" = 0 ] || continue
    total=$((total + 1))
    "$KL" verify -i "$file.ksig" -f "$file" --policy key -P "$KL_NETWORK_DIR/publications.bin" -V "$KL_TRUST_ANCHOR" \
      --cnstr "$KL_CNSTR" >/dev/null 2>&1 || bad=$((bad + 1))
  done <"$f"
done
check "every one of the $total signatures the clients received verifies (key-based)" 0 "$bad"
check "the clients got signatures during the attacks" yes "$([ $total -ge 10 ] && echo yes || echo "no: $total")"
peers=$(curl -sf -m 3 "${METRICS[0]}metrics" | awk '$1 ~ /^keyless_net_peers_refused_total/ { s += $2 } END { print s + 0 }')
check "core 1 counts refused TLS peers in /metrics" yes "$([ "$peers" -ge 3 ] && echo yes || echo "no: $peers")"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
