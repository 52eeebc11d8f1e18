#!/usr/bin/env bash
# Rotating the calendar-auth key without a flag day (docs/keys.md "Rotating the calendar-auth
# key") on a whole network (deploy/local-network: 3 cores, the extender following them) while a
# client signs all along:
#   - a new key (certified by the network's publications CA with openssl; in a SoftHSM2 token
#     when softhsm2 and OpenSSL's pkcs11 engine are installed, else a wrapped key file);
#   - --check-config opens the next key: a wrong PIN or passphrase, a certificate not valid at
#     the activation second, the same key twice are refused (exit 2) naming the key;
#   - the extender's calendar_auth_cert lists both certificates; every core gets the next key
#     with an activation second a few seconds ahead and a SIGHUP (one first gets an activation
#     in the past: refused, the old keys stay);
#   - the metrics show the next key, then the new key active;
#   - no request failed; signatures before the activation carry the old certificate id and
#     after it the new one; all verify key-based with a publications file listing both; one from
#     after the switch is NA against a file listing only the old certificate; the replica kept up
#     and the cores' calendars agree;
#   - the old key dropped from the configuration (SIGHUP): signing goes on with the new key.
# Usage: test_key_rotation.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NETSCRIPT="$HERE/../../deploy/local-network"
. "$HERE/harness.sh" key_rotation
export KL_AUDIT_LOG=1 # the cores keep their audit logs: the key changes must be in them
KL="$BUILD/cli/keyless"
CORE="$BUILD/core/keyless-core"
for t in openssl curl python3; do command -v "$t" >/dev/null || { echo "$0: $t is needed (scripts/install-deps.sh)" >&2; exit 2; }; done
MODULE=/usr/lib/softhsm/libsofthsm2.so
HSM=0
if command -v softhsm2-util >/dev/null && [ -f "$MODULE" ] && [ -n "$(find /usr/lib -path '*engines-3/pkcs11.so' 2>/dev/null | head -1)" ]; then
  HSM=1
fi
NET="$TMP/net"
unset KSI_CONF KEYLESS_PKCS11_PIN KEYLESS_PKCS11_MODULE CREDENTIALS_DIRECTORY
export KL_BUILD="$BUILD" KL_BASE_PORT=$((31000 + ($$ % 100) * 100))
trap 'touch "$TMP/stop"; "$NETSCRIPT" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() {
  echo "not ok - $1"
  touch "$TMP/stop"
  "$NETSCRIPT" down "$NET" >/dev/null 2>&1
  for f in "$NET"/log/*.log; do echo "== $f"; tail -n 15 "$f"; done
  echo "$PASSED passed, $((FAILED + 1)) failed"
  exit 1
}
# wait_until SECONDS COMMAND...: polls every 0.2 s; 1 on timeout.
wait_until() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}
cert_id() { openssl x509 -in "$1" -outform DER | python3 -c 'import sys, zlib; print("%08x" % zlib.crc32(sys.stdin.buffer.read()))'; }
metrics() { curl -sf -m 2 "http://127.0.0.1:$(($(cat "$NET/conf/base_port") + $1 * 10 + 5))/metrics"; }
metric_has() { metrics "$1" | grep -F "$2" >/dev/null; } # not -q: curl must write it all (pipefail)
log_has() { grep -qF "$2" "$NET/log/core$1.log"; }

# The token (before the network starts: the cores inherit SOFTHSM2_CONF).
if [ $HSM = 1 ]; then
  mkdir -p -m 700 hsm/tokens
  printf 'directories.tokendir = %s/hsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$TMP" >hsm/softhsm2.conf
  export SOFTHSM2_CONF="$TMP/hsm/softhsm2.conf" KEYLESS_PKCS11_MODULE="$MODULE" # config lines stay short
  printf '4711\n' >hsm/pin && chmod 600 hsm/pin
  printf '0000\n' >hsm/wrongpin && chmod 600 hsm/wrongpin
  softhsm2-util --init-token --free --label keyless --pin 4711 --so-pin 8150 >hsm.log 2>&1
  check "a SoftHSM2 token" 0 "$?"
fi

timeout 240 "$NETSCRIPT" up "$NET" >up.log 2>&1 || { tail -n 20 up.log; bail "local-network up"; }
pass "local-network up"
. "$NET/network.env"
PKI="$NET/pki"
PASS="$NET/secrets/signing-keys.pass"
OLD="$PKI/calendar-auth.crt"
NEW="$PKI/calendar-auth-2.crt"

# ---- 1. the new key, certified by the publications CA ----
printf 'basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n' >ext.cnf
(umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out new.key 2>/dev/null) &&
  openssl req -new -key new.key -subj "/O=keyless DEVELOPMENT/CN=keyless DEVELOPMENT calendar authentication 2" \
    -out new.csr 2>/dev/null &&
  openssl x509 -req -in new.csr -CA "$PKI/ca.crt" -CAkey "$PKI/offline/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
    -days 30 -extfile ext.cnf -out "$NEW" 2>/dev/null
check "a new calendar-auth certificate from the publications CA" 0 "$?"
OLD_ID=$(cert_id "$OLD")
NEW_ID=$(cert_id "$NEW")
[ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ] && pass "two certificate ids ($OLD_ID, $NEW_ID)" || fail "two ids" "distinct" "$OLD_ID $NEW_ID"
if [ $HSM = 1 ]; then
  openssl pkcs8 -topk8 -nocrypt -in new.key -out hsm/new.p8 2>/dev/null &&
    softhsm2-util --import hsm/new.p8 --token keyless --label calendar-auth-2 --id 03 --pin 4711 >>hsm.log 2>&1
  check "the new key imported into the token" 0 "$?"
  URI="pkcs11:token=keyless;object=calendar-auth-2?pin-source=file:$TMP/hsm/pin"
  BADURI="${URI/hsm\/pin/hsm/wrongpin}"
  rm -f hsm/new.p8
else
  echo "# no softhsm2 or pkcs11 engine: the new key is a wrapped file"
  openssl pkcs8 -topk8 -v2 aes-256-cbc -in new.key -passout "file:$PASS" -out "$PKI/calendar-auth-2.key" 2>/dev/null
  check "the new key wrapped" 0 "$?"
  URI="file:$PKI/calendar-auth-2.key?passphrase-source=file:$PASS"
  printf 'wrong passphrase\n' >wrong.pass && chmod 600 wrong.pass
  BADURI="file:$PKI/calendar-auth-2.key?passphrase-source=file:$TMP/wrong.pass"
fi
rm -f new.key new.csr

# with_next CONF FROM KEY-URI [CERT]: CONF's [keys] with a next key (into stdout).
with_next() {
  sed -e '/^next_calendar_auth_/d' "$1" |
    sed -e "/^calendar_auth_key = /a next_calendar_auth_cert = ${4:-$NEW}\nnext_calendar_auth_key = $3\nnext_calendar_auth_from = $2"
}

# ---- 2. --check-config opens the next key and refuses the bad ones ----
cc() { # NAME EXPECTED-STATUS NEEDLE FROM URI [CERT]
  with_next "$NET/conf/core1.conf" "$4" "$5" "${6:-}" >cc.conf
  local out rc
  out=$(timeout 30 "$CORE" -c cc.conf --check-config 2>&1)
  rc=$?
  check "--check-config, $1: status" "$2" "$rc"
  check_has "--check-config, $1: says why" "$3" "$out"
}
LATER=$(($(date +%s) + 3600))
cc "a good next key" 0 "OK" "$LATER" "$URI"
cc "a wrong PIN or passphrase for the next key" 2 "next_calendar_auth" "$LATER" "$BADURI"
cc "a next certificate expired by its activation" 2 "not at its first second" "$(($(date +%s) + 40 * 86400))" "$URI"
cc "the current key as next key" 2 "a rotation needs a new key" "$LATER" "$(sed -n 's/^calendar_auth_key = //p' "$NET/conf/core1.conf")" "$OLD"
cc "a bad activation time" 2 "next_calendar_auth_from" "next week" "$URI"

# ---- 3. publications files and the extender's certificates ----
"$KL" publish -D "$KL_EXTENDER_DIR" -o pub-both.bin --latest --cert "$PKI/publications.crt" \
  --key "file:$PKI/publications.key?passphrase-source=file:$PASS" --auth-cert "$OLD" --auth-cert "$NEW" >publish.log 2>&1
check "a publications file listing both certificates" 0 "$?"
cp "$NET/publications.bin" pub-old.bin
cat "$OLD" "$NEW" >"$PKI/calendar-auth-both.crt"
# The extender reloads its trusted certificates on SIGHUP, without a restart: first a broken
# file (refused, the old list kept), then the list of both.
printf 'not a certificate\n' >"$PKI/calendar-auth-broken.crt"
sed -i "s|^calendar_auth_cert = .*|calendar_auth_cert = $PKI/calendar-auth-broken.crt|" "$NET/conf/extender.conf"
kill -HUP "$(cat "$NET/run/extender.pid")"
wait_until 10 grep -q calendar_auth_certs_reload_failed "$NET/log/extender.log"
check "the extender refuses a certificate file that does not load (and keeps its list)" 0 "$?"
sed -i "s|^calendar_auth_cert = .*|calendar_auth_cert = $PKI/calendar-auth-both.crt|" "$NET/conf/extender.conf"
EXT_PID=$(cat "$NET/run/extender.pid")
kill -HUP "$EXT_PID"
wait_until 10 grep -q "calendar_auth_certs_loaded count=2" "$NET/log/extender.log"
check "the extender reloaded both certificates on SIGHUP" 0 "$?"
check "  ... without a restart" "$EXT_PID" "$(cat "$NET/run/extender.pid")"

# ---- 4. clients sign across the switch ----
echo before >"$TMP/phase"
sign_load "$KL" load &
LOAD=$!
wait_until 60 bash -c "[ \$(cat load/results 2>/dev/null | wc -l) -ge 5 ]" || bail "the load signs"

# A reload with an activation in the past: refused, the old keys stay.
with_next "$NET/conf/core1.conf" "$(($(date +%s) - 5))" "$URI" >core1.past && cp "$NET/conf/core1.conf" core1.orig &&
  cp core1.past "$NET/conf/core1.conf"
kill -HUP "$(cat "$NET/run/core1.pid")"
wait_until 10 log_has 1 "keys_reload_failed"
check "a next key starting in the past: the reload is refused" 0 "$?"
check_has "... saying why" "a new key must start at a second still to come" "$(grep keys_reload_failed "$NET/log/core1.log")"
metric_has 1 "keyless_core_calendar_auth_key_info{cert_id=\"$OLD_ID\",state=\"active\"} 1"
check "... the old key still active" 0 "$?"
cp core1.orig "$NET/conf/core1.conf"

FROM=$(($(date +%s) + 8))
echo switching >"$TMP/phase"
for i in 1 2 3; do
  with_next "$NET/conf/core$i.conf" "$FROM" "$URI" >"core$i.next" && cp "core$i.next" "$NET/conf/core$i.conf"
  kill -HUP "$(cat "$NET/run/core$i.pid")"
done
for i in 1 2 3; do
  wait_until 10 log_has $i "keys_reloaded"
  check "core$i: the next key loaded on SIGHUP" 0 "$?"
  metric_has $i "keyless_core_calendar_auth_key_info{cert_id=\"$NEW_ID\",state=\"next\"} 1"
  check "core$i: the metric shows the next key" 0 "$?"
done
for i in 1 2 3; do
  grep -aq "key_switch" "$NET/data/core$i/audit/audit.log"
  check "core$i: its audit log records the key_switch" 0 "$?"
done
grep -aq "key_reload_refused" "$NET/data/core1/audit/audit.log"
check "core1: its audit log records the refused reload" 0 "$?"
n=$(metrics 1 | sed -n 's/^keyless_core_calendar_auth_next_seconds \([0-9.]*\)$/\1/p')
[ -n "$n" ] && [ "${n%.*}" -ge 1 ] && [ "${n%.*}" -le 8 ] && pass "seconds until the switch ($n)" ||
  fail "seconds until the switch" "1..8" "$n"
wait_until 30 bash -c "[ \$(date +%s) -ge $((FROM + 1)) ]"
echo after >"$TMP/phase"
for i in 1 2 3; do
  wait_until 10 metric_has $i "keyless_core_calendar_auth_key_info{cert_id=\"$NEW_ID\",state=\"active\"} 1"
  check "core$i: the new key is active" 0 "$?"
  metric_has $i "keyless_core_calendar_auth_key_info{cert_id=\"$OLD_ID\",state=\"active\"} 0"
  check "core$i: the old key is not" 0 "$?"
done
check "no next key once it started" "-1" "$(metrics 2 | sed -n 's/^keyless_core_calendar_auth_next_seconds //p')"
START=$(wc -l <load/results)
wait_until 60 bash -c "[ \$(wc -l <load/results) -ge $((START + 8)) ]" || fail "the load goes on after the switch" "8 more" "$(wc -l <load/results)"

# ---- 5. the old key dropped from the configuration ----
for i in 1 2 3; do
  sed -e '/^next_calendar_auth_/d' -e "s|^calendar_auth_cert = .*|calendar_auth_cert = $NEW|" \
    -e "s|^calendar_auth_key = .*|calendar_auth_key = $URI|" "core$i.next" >"$NET/conf/core$i.conf"
  kill -HUP "$(cat "$NET/run/core$i.pid")"
  wait_until 10 bash -c "[ \$(grep -c keys_reloaded '$NET/log/core$i.log') -ge 2 ]"
  check "core$i: the old key dropped on SIGHUP" 0 "$?"
done
grep -h keys_reload_failed "$NET"/log/core[23].log | head -3 | sed 's/^/# /'
START=$(wc -l <load/results)
wait_until 60 bash -c "[ \$(wc -l <load/results) -ge $((START + 5)) ]" || fail "the load goes on without the old key" "5 more" "$(wc -l <load/results)"
touch "$TMP/stop"
wait "$LOAD"
load_report load "$KL"

# ---- 6. which certificate signed what, key-based verification ----
before=0 after=0 wrong=0 unverified=0 last_new=""
for f in load/*.ksig; do
  j=$("$KL" inspect -i "$f" --json 2>/dev/null)
  t=$(printf '%s' "$j" | python3 -c 'import sys, json; print(json.load(sys.stdin)["calendar_auth_record"]["publication_time"])' 2>/dev/null)
  id=$(printf '%s' "$j" | python3 -c 'import sys, json; print(json.load(sys.stdin)["calendar_auth_record"]["certificate_id"])' 2>/dev/null)
  if [ -z "$t" ]; then wrong=$((wrong + 1)); continue; fi
  if [ "$t" -lt "$FROM" ]; then
    [ "$id" = "$OLD_ID" ] && before=$((before + 1)) || wrong=$((wrong + 1))
  else
    [ "$id" = "$NEW_ID" ] && after=$((after + 1)) || wrong=$((wrong + 1))
    last_new="$f"
  fi
  "$KL" verify -i "$f" -f "${f%.ksig}" --policy key -P pub-both.bin -V "$PKI/ca.crt" --cnstr E=publications@keyless.local \
    >/dev/null 2>&1 || unverified=$((unverified + 1))
done
[ $before -ge 1 ] && pass "signatures before $FROM carry $OLD_ID ($before)" || fail "signatures before the switch" ">= 1" "$before"
[ $after -ge 1 ] && pass "signatures from $FROM on carry $NEW_ID ($after)" || fail "signatures after the switch" ">= 1" "$after"
check "no signature with the other key for its second" 0 "$wrong"
check "every signature verifies key-based (both certificates listed)" 0 "$unverified"
if [ -n "$last_new" ]; then
  out=$("$KL" verify -i "$last_new" -f "${last_new%.ksig}" --policy key -P pub-old.bin -V "$PKI/ca.crt" \
    --cnstr E=publications@keyless.local --json 2>&1)
  rc=$?
  [ $rc -ne 0 ] && pass "a new-key signature does not verify with only the old certificate listed (exit $rc)" ||
    fail "new-key signature against the old file" "nonzero" "$rc"
  check_has "... NA" '"NA"' "$out"
fi

# ---- 7. the replica kept up, one calendar ----
CLAST=$("$KL" calendar stat -D "$NET/data/core1/calendar" --json | sed -n 's/.*"last":\([0-9]*\).*/\1/p')
wait_until 20 bash -c "[ \$('$KL' calendar stat -D '$KL_EXTENDER_DIR' --json | sed -n 's/.*\"last\":\([0-9]*\).*/\1/p') -ge $CLAST ]"
check "the extender's replica follows past the switch (to $CLAST)" 0 "$?"
check "the extender refused no batch" 0 "$(grep -c 'replication_refused' "$NET/log/extender.log")"
same_calendars "$KL" $KL_CORE_DIRS "$KL_EXTENDER_DIR"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
