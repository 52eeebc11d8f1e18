#!/usr/bin/env bash
# Signing keys named by URI (docs/keys.md) with the real daemons, on a small network
# (deploy/local-network, KL_TOPOLOGY=small: one core, one gateway, one extender):
#   - by default the network's signing keys are wrapped (encrypted PKCS#8, the passphrase in
#     NET/secrets, 0600): the core signs, `keyless publish` signs, a signature verifies key-based;
#   - the calendar-auth key moved into a SoftHSM2 token (SOFTHSM2_CONF in this test's directory,
#     `softhsm2-util --init-token --free`), its file gone: the core signs through PKCS#11 and the
#     signature verifies key-based; `keyless publish` signs with a token key too;
#   - refused with a clear error: a clear key without allow_clear_key, a wrong passphrase, a
#     wrong PIN, pin-value in the URI, the TLS key as the calendar-auth key.
# Usage: test_keys.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NETSCRIPT="$HERE/../../deploy/local-network"
. "$HERE/harness.sh" keys
KL="$BUILD/cli/keyless"
CORE="$BUILD/core/keyless-core"
MODULE=/usr/lib/softhsm/libsofthsm2.so
for t in softhsm2-util openssl curl; do command -v "$t" >/dev/null || { echo "$0: $t is needed (scripts/install-deps.sh)" >&2; exit 2; }; done
[ -f "$MODULE" ] || { echo "$0: $MODULE is needed (softhsm2)" >&2; exit 2; }
[ -f /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so ] || [ -n "$(find /usr/lib -path '*engines-3/pkcs11.so' 2>/dev/null | head -1)" ] ||
  { echo "$0: OpenSSL's pkcs11 engine is needed (libengine-pkcs11-openssl)" >&2; exit 2; }
NET="$TMP/net"
unset KSI_CONF KEYLESS_PKCS11_PIN KEYLESS_PKCS11_MODULE CREDENTIALS_DIRECTORY
export KL_BUILD="$BUILD" KL_TOPOLOGY=small KL_BASE_PORT=$((30000 + ($$ % 100) * 100))
trap '"$NETSCRIPT" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() {
  echo "not ok - $1"
  "$NETSCRIPT" down "$NET" >/dev/null 2>&1
  for f in "$NET"/log/*.log; do echo "== $f"; tail -n 20 "$f"; done
  echo "$PASSED passed, $((FAILED + 1)) failed"
  exit 1
}
# sign_verify NAME: signs a new document through the gateway and verifies it key-based.
N=0
sign_verify() {
  N=$((N + 1))
  echo "document $N $RANDOM" >"doc$N"
  timeout 60 "$KL" sign -S "$KL_GATEWAY_URLS" --aggr-user anon --aggr-key anon --retry-for 20s -i "doc$N" -o "doc$N.ksig" \
    >"sign$N.log" 2>&1
  check "$1: signed" 0 "$?"
  local out rc
  out=$(timeout 60 "$KL" verify -i "doc$N.ksig" -f "doc$N" --policy key -P "$KL_PUBLICATIONS_URL" -V "$NET/pki/ca.crt" \
    --cnstr E=publications@keyless.local 2>&1)
  rc=$?
  check "$1: verifies key-based" 0 "$rc"
  [ "$rc" -eq 0 ] || echo "# $(short "$out")"
}
# core_refuses NAME NEEDLE CONF: keyless-core with CONF stops at start-up naming the problem.
core_refuses() {
  local out rc
  out=$(timeout 30 "$CORE" -c "$3" 2>&1)
  rc=$?
  check "$1: refused" 2 "$rc" # a bad configuration: the keys are opened at load
  check_has "$1: says why" "$2" "$out"
}

# ---- 1. the default network: wrapped keys ----
timeout 240 "$NETSCRIPT" up "$NET" >up.log 2>&1 || { tail -n 20 up.log; bail "local-network up (wrapped keys)"; }
pass "local-network up (wrapped keys)"
. "$NET/network.env"
check "the calendar-auth key file is wrapped" "-----BEGIN ENCRYPTED PRIVATE KEY-----" "$(head -n 1 "$NET/pki/calendar-auth.key")"
check "the publications key file is wrapped" "-----BEGIN ENCRYPTED PRIVATE KEY-----" "$(head -n 1 "$NET/pki/publications.key")"
check "the passphrase file is the user's alone" 600 "$(stat -c %a "$NET/secrets/signing-keys.pass")"
check_has "the core names the key by URI" "?passphrase-source=file:$NET/secrets/" "$(grep calendar_auth_key "$NET/conf/core1.conf")"
check "the core allows no clear key" "allow_clear_key = no" "$(grep allow_clear_key "$NET/conf/core1.conf")"
check "the publications file was signed with the wrapped key" 0 "$(curl -sf -o pub.bin "$KL_PUBLICATIONS_URL"; echo $?)"
sign_verify "wrapped key"

# Start-up refusals (a scratch data directory; the config is core1's with one key changed).
mkconf() { # NAME SED-EXPRESSION
  sed -e "s|^data_dir = .*|data_dir = $TMP/scratch-$1|" -e "$2" "$NET/conf/core1.conf" >"$1.conf"
}
PASS="$NET/secrets/signing-keys.pass"
openssl pkey -in "$NET/pki/calendar-auth.key" -passin "file:$PASS" -out clear.key 2>/dev/null && chmod 600 clear.key
mkconf clear "s|^calendar_auth_key = .*|calendar_auth_key = $TMP/clear.key|"
core_refuses "a clear calendar-auth key" "clear (unencrypted) private key" clear.conf
printf 'wrong passphrase\n' >wrong.pass && chmod 600 wrong.pass
mkconf wrongpass "s|passphrase-source=file:.*|passphrase-source=file:$TMP/wrong.pass|"
core_refuses "a wrong passphrase" "wrong passphrase" wrongpass.conf
TLSKEY=$(sed -n 's/^key = //p' "$NET/conf/core1.conf")
mkconf sametls "s|^calendar_auth_key = .*|calendar_auth_key = $TLSKEY|"
out=$("$CORE" -c sametls.conf --check-config 2>&1)
check "the TLS key as calendar-auth key: refused by --check-config" 2 "$?"
check_has "the TLS key as calendar-auth key: names both" "calendar_auth_key = $TLSKEY and [tls] key = $TLSKEY are the same key" "$out"

# ---- 2. the calendar-auth key in a SoftHSM2 token ----
mkdir -p -m 700 hsm/tokens
printf 'directories.tokendir = %s/hsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$TMP" >hsm/softhsm2.conf
export SOFTHSM2_CONF="$TMP/hsm/softhsm2.conf"
printf '4711\n' >hsm/pin && chmod 600 hsm/pin
softhsm2-util --init-token --free --label keyless --pin 4711 --so-pin 8150 >hsm.log 2>&1
check "a SoftHSM2 token" 0 "$?"
openssl pkcs8 -topk8 -nocrypt -in clear.key -out hsm/cal.p8 2>/dev/null &&
  softhsm2-util --import hsm/cal.p8 --token keyless --label calendar-auth --id 01 --pin 4711 >>hsm.log 2>&1
check "the calendar-auth key imported into the token" 0 "$?"
openssl pkey -in "$NET/pki/publications.key" -passin "file:$PASS" 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out hsm/pub.p8 &&
  softhsm2-util --import hsm/pub.p8 --token keyless --label publications --id 02 --pin 4711 >>hsm.log 2>&1
check "the publications key imported into the token" 0 "$?"
rm -f hsm/cal.p8 hsm/pub.p8 clear.key
# The module from the environment (the daemons inherit it; config lines stay short), the PIN
# from a file.
export KEYLESS_PKCS11_MODULE="$MODULE"
URI="pkcs11:token=keyless;object=calendar-auth?pin-source=file:$TMP/hsm/pin"

"$NETSCRIPT" down "$NET" >down.log 2>&1
sed -i -e "s|^calendar_auth_key = .*|calendar_auth_key = $URI|" "$NET/conf/core1.conf"
mv "$NET/pki/calendar-auth.key" "$TMP/calendar-auth.key.away" # only the token has it now
timeout 240 "$NETSCRIPT" up "$NET" >up2.log 2>&1 || { tail -n 20 up2.log; bail "local-network up (calendar-auth key in SoftHSM2)"; }
pass "local-network up (calendar-auth key in SoftHSM2)"
sign_verify "PKCS#11 key"

printf '0000\n' >hsm/wrongpin && chmod 600 hsm/wrongpin
mkconf wrongpin "s|^calendar_auth_key = .*|calendar_auth_key = ${URI/hsm\/pin/hsm/wrongpin}|"
core_refuses "a wrong PIN" "or a wrong PIN" wrongpin.conf
mkconf pinvalue "s|^calendar_auth_key = .*|calendar_auth_key = pkcs11:token=keyless;object=calendar-auth?pin-value=4711|"
out=$("$CORE" -c pinvalue.conf 2>&1)
check_has "pin-value in the URI is refused" "pin-value is refused" "$out"
mkconf noobj "s|^calendar_auth_key = .*|calendar_auth_key = ${URI/object=calendar-auth/object=nothing}|"
core_refuses "a key the token does not hold" "no such private key in the token" noobj.conf

# keyless publish with the token's publications key; the file verifies against the CA.
PURI="pkcs11:token=keyless;object=publications?module-path=$MODULE&pin-source=file:$TMP/hsm/pin"
out=$(timeout 60 "$KL" publish -D "$NET/data/extender" -o "$TMP/hsm-pub.bin" --latest --cert "$NET/pki/publications.crt" \
  --key "$PURI" --auth-cert "$NET/pki/calendar-auth.crt" 2>&1)
check "keyless publish signs through PKCS#11" 0 "$?"
[ -f "$TMP/hsm-pub.bin" ] || echo "# $out"
out=$("$KL" pubfile -P "$TMP/hsm-pub.bin" -V "$NET/pki/ca.crt" --cnstr E=publications@keyless.local 2>&1)
check "that publications file verifies" 0 "$?"

"$NETSCRIPT" down "$NET" >down2.log 2>&1
san=$(grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$NET"/log/*.log 2>/dev/null | head -1)
check "no sanitizer report in the daemons' logs" "" "$san"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
