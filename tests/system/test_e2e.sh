#!/usr/bin/env bash
# End-to-end system test of issuance, extension and verification with the real binaries: a
# development PKI (`keyless devpki`), a calendar (`keyless calendar`), signatures issued the way
# the network will by the test tool mksig (round tree with identities, calendar chain, calendar
# authentication record), a publications file (`keyless publish`, checked by `keyless pubfile`
# with the development CA), keyless-extender on kernel-chosen loopback ports, and `keyless
# verify` / `keyless extend` under every policy over HTTP, ksi+tcp and saved responses: a live
# extender gives the same verdicts as the same responses replayed with -X file://.
#
# usage: test_e2e.sh KEYLESS_EXTENDER KEYLESS MKSIG EXT_CLIENT
#
# Each check prints "ok - NAME" or "not ok - NAME: expected X got Y"; the last line is
# "N passed, M failed" and the exit status is non-zero if any check failed. Loopback only;
# every wait is a bounded poll; the daemon is stopped at the end and its log must hold no
# sanitizer report.
set -u

if [ $# -ne 4 ]; then
  echo "usage: $0 KEYLESS_EXTENDER KEYLESS MKSIG EXT_CLIENT" >&2
  exit 2
fi
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
EXT=$(abs "$1")
KEYLESS=$(abs "$2")
MKSIG=$(abs "$3")
CLIENT=$(abs "$4")
for b in "$EXT" "$KEYLESS" "$MKSIG" "$CLIENT"; do
  [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }
done
SAMPLE="$(dirname "$(abs "$0")")/../../deploy/extender.conf"
[ -f "$SAMPLE" ] || { echo "$0: $SAMPLE not found" >&2; exit 2; }
for t in curl xxd; do command -v "$t" >/dev/null || { echo "$0: $t is needed" >&2; exit 2; }; done

. "$(dirname "$0")/harness.sh" e2e
# bail WHAT: a step the rest depends on failed; stop with the summary line.
bail() {
  echo "not ok - $1"
  echo "$PASSED passed, $((FAILED + 1)) failed"
  exit 1
}
# run CMD...: runs a command, sets OUT (stdout and stderr) and RC.
# expect NAME RC FIRST-LINE CMD...: the exit status, and the first line of the output exactly.
expect() {
  local name=$1 rc=$2 line=$3
  shift 3
  run "$@"
  check "$name" "$rc $line" "$RC $(printf '%s\n' "$OUT" | head -n 1)"
}
# flip FILE OFFSET: inverts the lowest bit of the byte at OFFSET, in place.
flip() {
  local hex
  hex=$(xxd -p -s "$2" -l 1 "$1")
  printf '%02x' $((0x$hex ^ 1)) | xxd -r -p | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
size() { stat -c %s "$1"; }

# ---- times: the calendar runs G .. T+3 with the round at T, no UTC midnight in between, so
# `keyless publish` (daily publications) lists only the latest second ----
NOW=$(date +%s)
G=$((NOW - 600))
MIDNIGHT=$((NOW - NOW % 86400))
[ "$MIDNIGHT" -ge "$G" ] && G=$((MIDNIGHT - 700)) # still inside the certificates' validity
T=$((G + 300))
P=$((T + 3))
EMAIL=publications@e2e.keyless.test
TRUST=(-V pki/ca.crt --cnstr "E=$EMAIL")
USER_=e2e
KEY='k3y with:colon'

# ---- issuance ----
expect "devpki" 0 "development PKI written to pki (NOT FOR PRODUCTION)" "$KEYLESS" devpki -o pki --email "$EMAIL"
run "$KEYLESS" calendar init -D cal --genesis "$G"
check "calendar init" 0 "$RC"
printf 'first document\n' >a.txt
printf 'second document\n' >b.txt
head -c 100000 /dev/urandom >c.bin
printf 'not signed\n' >other.txt
mkdir sigs
expect "mksig over 3 files at T" 0 "$T" "$MKSIG" -D cal --pki pki -o sigs --time "$T" a.txt b.txt c.bin
for f in a.txt b.txt c.bin; do [ -s "sigs/$f.ksig" ] || bail "mksig wrote sigs/$f.ksig: $(short "$OUT")"; done
run "$KEYLESS" inspect -i sigs/b.txt.ksig
check_has "inspect: the identity of the client" 'identity client="test"' "$OUT"
check_has "inspect: the calendar authentication record" "calendar authentication record: $T" "$OUT"

for f in a.txt b.txt c.bin; do
  expect "internal policy, $f: OK" 0 "OK: signature verified (internal policy)" \
    "$KEYLESS" verify -i "sigs/$f.ksig" -f "$f" --policy internal
done
run "$KEYLESS" verify -i sigs/a.txt.ksig -f other.txt --policy internal
check "internal policy, another file: exit 6" 6 "$RC"
check_has "internal policy, another file: FAIL GEN-01" "FAIL GEN-01: Wrong document" "$OUT"
run "$KEYLESS" verify -i sigs/a.txt.ksig -f b.txt --policy internal
check "internal policy, a sibling in the same round: FAIL GEN-01" "6 FAIL GEN-01" "$RC $(printf '%s' "$OUT" | cut -c1-11)"

# ---- the publications file ----
for s in 1 2 3; do
  run "$KEYLESS" calendar append -D cal --time $((T + s)) --empty
  [ "$RC" -eq 0 ] || bail "calendar append $((T + s)): $(short "$OUT")"
done
run "$KEYLESS" publish -D cal -o pubs.bin --cert pki/publications.crt --key pki/publications.key --allow-clear-key \
  --auth-cert pki/calendar-auth.crt --latest
check "publish: exit 0" 0 "$RC"
check_has "publish: one publication" "wrote pubs.bin: 1 publications" "$OUT"
PUBSTR=$(printf '%s\n' "$OUT" | sed -n '2s/^ *//p')
check_has "publish: the latest publication is P" "the latest $(date -u -d "@$P" '+%Y-%m-%d %H:%M:%S') UTC:" "$OUT"
check "publish: prints its publication string" 1 "$(printf '%s' "$PUBSTR" | grep -cE '^[A-Z2-7]{6}(-[A-Z2-7]{6}){11}$')"
run "$KEYLESS" pubfile -P pubs.bin "${TRUST[@]}"
check "pubfile -V ca.crt --cnstr: exit 0" 0 "$RC"
check_has "pubfile -V ca.crt --cnstr: OK" "OK: publications file version 2" "$OUT"
run "$KEYLESS" pubfile -P pubs.bin "${TRUST[@]}" --dump
check_has "pubfile --dump: the calendar-auth certificate" "calendar authentication" "$OUT"
check_has "pubfile --dump: the publication string of publish" "$PUBSTR" "$OUT"
run "$KEYLESS" pubfile -P pubs.bin -V pki/ca.crt --cnstr E=someone@else.test
check "pubfile with another constraint: not trusted (exit 10)" 10 "$RC"

for f in a.txt b.txt c.bin; do
  expect "key-based, $f: OK" 0 "OK: signature verified (key-based policy)" \
    "$KEYLESS" verify -i "sigs/$f.ksig" -f "$f" --policy key -P pubs.bin "${TRUST[@]}"
done
expect "general policy with the file: key-based OK" 0 "OK: signature verified (key-based policy)" \
  "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt -P pubs.bin "${TRUST[@]}"
# what the verdict rests on: the certificate the 0x805 names, as listed in the file
CID=$("$KEYLESS" inspect -i sigs/a.txt.ksig 2>&1 | grep -io 'cert[a-z ]*id[^0-9a-f]*[0-9a-f]\{8\}' | grep -o '[0-9a-f]\{8\}$' | head -n 1)
run "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt --policy key -P pubs.bin "${TRUST[@]}" --json
check_has "key-based --json: rests on a certificate" '"anchor":{"kind":"certificate"' "$OUT"
check_has "  ... the one the record names ($CID)" "\"cert_id\":\"$CID\"" "$OUT"
run "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt --policy internal --json
check "internal --json: rests on nothing (no anchor)" 0 "$(printf '%s' "$OUT" | grep -c '"anchor"')"

# A forged calendar authentication record: one bit of the RSA signature value flipped (0x805
# ends with the 256-byte value and then the 6-byte certificate id).
cp sigs/a.txt.ksig forged.ksig
flip forged.ksig $(($(size forged.ksig) - 6 - 100))
expect "forged 0x805 signature: internal still OK" 0 "OK: signature verified (internal policy)" \
  "$KEYLESS" verify -i forged.ksig -f a.txt --policy internal
run "$KEYLESS" verify -i forged.ksig -f a.txt --policy key -P pubs.bin "${TRUST[@]}"
check "forged 0x805 signature: key-based exit 6" 6 "$RC"
check_has "forged 0x805 signature: FAIL KEY-02" "FAIL KEY-02: PKI signature not verified with certificate" "$OUT"

# ---- the extender, configured from deploy/extender.conf's keys ----
printf '# e2e logins\n%s:%s\n' "$USER_" "$KEY" >users
chmod 600 users
sed -e 's#^http_listen = .*#http_listen = 127.0.0.1:0#' -e 's#^tcp_listen = .*#tcp_listen = 127.0.0.1:0#' \
  -e 's#^admin_listen = .*#admin_listen = 127.0.0.1:0#' -e 's#^dir = .*#dir = cal#' \
  -e 's#^users_file = .*#users_file = users#' -e 's#^file =.*#file = pubs.bin#' "$SAMPLE" >ext.conf
check "the generated configuration sets every key it needs" 6 \
  "$(grep -cE '^(http_listen = 127.0.0.1:0|tcp_listen = 127.0.0.1:0|admin_listen = 127.0.0.1:0|dir = cal|users_file = users|file = pubs.bin)$' ext.conf)"
start ext "$EXT" ext.conf # (start, logged, stop and no_sanitizer_reports: harness.sh)
HTTP=$(logged ext http_port) TCP=$(logged ext tcp_port)
[ -n "$HTTP" ] && [ -n "$TCP" ] || { cat ext.log; bail "keyless-extender started (event=started with its ports)"; }
URL="http://127.0.0.1:$HTTP/"
TURL="ksi+tcp://127.0.0.1:$TCP"
CRED=(--ext-user "$USER_" --ext-key "$KEY")

# ---- calendar-based verification against the live extender ----
for f in a.txt b.txt c.bin; do
  expect "calendar-based over HTTP, $f: OK" 0 "OK: signature verified (calendar-based policy)" \
    "$KEYLESS" verify -i "sigs/$f.ksig" -f "$f" --policy calendar -X "$URL" "${CRED[@]}"
done
expect "calendar-based over ksi+tcp: OK" 0 "OK: signature verified (calendar-based policy)" \
  "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt --policy calendar -X "$TURL" "${CRED[@]}"
expect "calendar-based with credentials in a ksi+http URL: OK" 0 "OK: signature verified (calendar-based policy)" \
  "$KEYLESS" verify -i sigs/a.txt.ksig --policy calendar -X "ksi+http://$USER_:$KEY@127.0.0.1:$HTTP/"
# The extender refuses a request whose HMAC does not verify with 0x102 in an unsigned error
# element; the CLI reports it as inconclusive (NA GEN-02, exit 6) with the extender's status.
WRONG="NA GEN-02: Verification inconclusive (extending failed: extender $URL: extender error 0x102: The request could not be authenticated"
run "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt --policy calendar -X "$URL" --ext-user "$USER_" --ext-key wrong
check "calendar-based with a wrong key: exit 6" 6 "$RC"
check_has "calendar-based with a wrong key: NA GEN-02 with the extender's 0x102" "$WRONG" "$OUT"
run "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt --policy calendar -X "$URL" --ext-user mallory --ext-key "$KEY"
check "calendar-based with an unknown login: NA GEN-02, 0x102, exit 6" "6 $WRONG" "$RC $(printf '%s' "$OUT" | cut -c1-${#WRONG})"
# Missing credentials or a scheme the client does not speak: usage errors before anything is
# sent, not verdicts.
run "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt --policy calendar -X "$URL" --ext-key "$KEY"
check "calendar-based without a login: usage error (exit 3)" 3 "$RC"
check_has "calendar-based without a login: says so" "give the login and key" "$OUT"
run "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt --policy calendar -X "https://127.0.0.1:$HTTP/" "${CRED[@]}"
check "calendar-based with https:// to a plain HTTP port: inconclusive (exit 6)" 6 "$RC"
check_has "and the message says the TLS handshake failed" "TLS handshake failed" "$OUT"
run "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt --policy calendar -X "$URL" "${CRED[@]}" --ext-user ""
check "calendar-based with an empty login: refused by the extender (0x102)" "6 $WRONG" "$RC $(printf '%s' "$OUT" | cut -c1-${#WRONG})"
run "$KEYLESS" verify -i sigs/a.txt.ksig -f other.txt --policy calendar -X "$URL" "${CRED[@]}"
check "calendar-based, another file: FAIL GEN-01 before asking" "6 FAIL GEN-01" "$RC $(printf '%s' "$OUT" | cut -c1-11)"

# A signature from another calendar (same genesis and fillers, another round at T): the live
# calendar's chain for T starts from a different aggregation root.
run "$KEYLESS" calendar init -D cal2 --genesis "$G"
mkdir sigs2
run "$MKSIG" -D cal2 --pki pki -o sigs2 --time "$T" other.txt
check "mksig on a second calendar" 0 "$RC"
CAL02="FAIL CAL-02: Aggregation hash chain root hash and calendar database hash chain input hash mismatch"
expect "a signature from another calendar: CAL-02 live" 6 "$CAL02 (the extender's chain input differs from the aggregation root)" \
  "$KEYLESS" verify -i sigs2/other.txt.ksig -f other.txt --policy calendar -X "$URL" "${CRED[@]}"

# ---- extension to the publication, over HTTP and ksi+tcp ----
run "$KEYLESS" extend -i sigs/a.txt.ksig -o a.ext -P pubs.bin "${TRUST[@]}" -X "$URL" "${CRED[@]}"
check "extend -P over HTTP: exit 0" 0 "$RC"
check_has "extend -P over HTTP: to the publication" "extended to $P" "$OUT"
run "$KEYLESS" inspect -i a.ext
check_has "extended signature: calendar chain to P" "publication time $P" "$OUT"
check_has "extended signature: a publication record" "$PUBSTR" "$OUT"
expect "extended, publication-based with -P: OK" 0 "OK: signature verified (publications-file-based policy)" \
  "$KEYLESS" verify -i a.ext -f a.txt --policy publication -P pubs.bin "${TRUST[@]}"
run "$KEYLESS" verify -i a.ext -f a.txt --policy publication -P pubs.bin "${TRUST[@]}"
check_has "  ... and names the publication it rests on" "anchor: the publication of" "$OUT"
check_has "  ... by its string" "$PUBSTR" "$OUT"
expect "extended, user publication from publish: OK" 0 "OK: signature verified (user-publication-based policy)" \
  "$KEYLESS" verify -i a.ext -f a.txt --pub-str "$PUBSTR"
expect "extended, general policy with the file: OK" 0 "OK: signature verified (publications-file-based policy)" \
  "$KEYLESS" verify -i a.ext -f a.txt -P pubs.bin "${TRUST[@]}"
expect "extended, calendar-based over HTTP: OK" 0 "OK: signature verified (calendar-based policy)" \
  "$KEYLESS" verify -i a.ext -f a.txt --policy calendar -X "$URL" "${CRED[@]}"
run "$KEYLESS" verify -i a.ext -f other.txt --pub-str "$PUBSTR"
check "extended, another file: FAIL GEN-01" "6 FAIL GEN-01" "$RC $(printf '%s' "$OUT" | cut -c1-11)"

cp a.ext a.ext.before
run "$KEYLESS" extend -i sigs/a.txt.ksig -o a.ext -P pubs.bin "${TRUST[@]}" -X "$URL" "${CRED[@]}"
check "extend onto an existing output: refused (exit 3)" 3 "$RC"
check_has "extend onto an existing output: says why" "a.ext already exists (use --force to replace it)" "$OUT"
if cmp -s a.ext a.ext.before; then pass "extend onto an existing output: file untouched"; else
  fail "extend onto an existing output: file untouched" same changed; fi
run "$KEYLESS" extend -i sigs/a.txt.ksig -o a.ext -P pubs.bin "${TRUST[@]}" -X "$URL" "${CRED[@]}" --force
check "extend --force: replaces it" 0 "$RC"
if cmp -s a.ext a.ext.before; then pass "extend --force: the same bytes"; else fail "extend --force: the same bytes" same different; fi
run "$KEYLESS" extend -i sigs/a.txt.ksig -o a.wrongkey -P pubs.bin "${TRUST[@]}" -X "$URL" --ext-user "$USER_" --ext-key wrong
check "extend with a wrong key: authentication failure (exit 14)" 14 "$RC"
check_has "extend with a wrong key: the extender's status" "extender error 0x102" "$OUT"
[ -e a.wrongkey ] && fail "extend with a wrong key: no output" absent present || pass "extend with a wrong key: no output"
run "$KEYLESS" extend -i sigs/a.txt.ksig -o a.nologin -P pubs.bin "${TRUST[@]}" -X "$URL" --ext-key "$KEY"
check "extend without a login: usage error (exit 3)" 3 "$RC"
run "$KEYLESS" extend -i sigs/a.txt.ksig -o a.canned --to-head -X file://missing.tlv "${CRED[@]}"
check "extend from a missing file:// response: I/O error (exit 9)" 9 "$RC"
check_has "extend from a missing file:// response: names the file" "missing.tlv" "$OUT"

run "$KEYLESS" extend -i sigs/b.txt.ksig -o b.ext -P pubs.bin "${TRUST[@]}" -X "$TURL" "${CRED[@]}"
check "extend -P over ksi+tcp: exit 0" "0 extended to $P" "$RC $(printf '%s' "$OUT" | cut -d' ' -f1-3)"
expect "ksi+tcp extended, publication-based with -P: OK" 0 "OK: signature verified (publications-file-based policy)" \
  "$KEYLESS" verify -i b.ext -f b.txt --policy publication -P pubs.bin "${TRUST[@]}"
expect "ksi+tcp extended, user publication: OK" 0 "OK: signature verified (user-publication-based policy)" \
  "$KEYLESS" verify -i b.ext -f b.txt --policy publication --pub-str "$PUBSTR"
run "$KEYLESS" extend -i sigs/c.bin.ksig -o c.ext --pub-str "$PUBSTR" -X "$TURL" "${CRED[@]}"
check "extend --pub-str over ksi+tcp: exit 0" 0 "$RC"
expect "extended to the user publication, -P verifies too" 0 "OK: signature verified (publications-file-based policy)" \
  "$KEYLESS" verify -i c.ext -f c.bin --policy publication -P pubs.bin "${TRUST[@]}"

# Not extended yet: the publication-based policy extends through the live extender only with -x.
run "$KEYLESS" verify -i sigs/c.bin.ksig -f c.bin --policy publication -P pubs.bin "${TRUST[@]}" -X "$URL" "${CRED[@]}"
check "unextended, publication-based without -x: NA GEN-02" "6 NA GEN-02" "$RC $(printf '%s' "$OUT" | cut -c1-9)"
expect "unextended, publication-based with -x live: OK" 0 "OK: signature verified (publications-file-based policy)" \
  "$KEYLESS" verify -i sigs/c.bin.ksig -f c.bin --policy publication -P pubs.bin "${TRUST[@]}" -x -X "$TURL" "${CRED[@]}"

# ---- live vs canned: the extender's raw 0x321 answers, saved and replayed with -X file:// ----
# save NAME AGGR PUB: asks the extender over HTTP with a request made by ext_client.
save() {
  "$CLIENT" make -u "$USER_" -k "$KEY" -r "5:$2:$3" -o "$1.req" &&
    curl -s --max-time 20 -o "$1.tlv" -H 'Content-Type: application/ksi-request' --data-binary "@$1.req" "$URL"
  DEC=$("$CLIENT" decode -k "$KEY" -o "$1.chain" "$1.tlv" 2>&1)
  check_has "saved response $1 ($2..$3): status 0 and the chain" "resp id=5 status=0x0000 cal_last=$P pub=$3 aggr=$2" "$DEC"
  check_has "saved response $1: HMAC verifies" "hmac=ok" "$DEC"
}
save fresh "$T" "$T"   # what a signature with its calendar chain to T needs
save ext "$T" "$P"     # what the extended signature needs
# same_verdict NAME SIG DOC RESPONSE: live and canned print the same line and exit the same.
same_verdict() {
  run "$KEYLESS" verify -i "$2" -f "$3" --policy calendar -X "$URL" "${CRED[@]}"
  local live="$RC $OUT"
  run "$KEYLESS" verify -i "$2" -f "$3" --policy calendar -X "file://$4" --ext-key "$KEY"
  check "$1: live and canned agree" "$live" "$RC $OUT"
}
same_verdict "fresh signature (OK)" sigs/a.txt.ksig a.txt fresh.tlv
same_verdict "fresh signature, another round member (OK)" sigs/c.bin.ksig c.bin fresh.tlv
same_verdict "extended signature (OK)" a.ext a.txt ext.tlv
same_verdict "signature from another calendar (CAL-02)" sigs2/other.txt.ksig other.txt fresh.tlv
same_verdict "wrong document (GEN-01)" sigs/a.txt.ksig other.txt fresh.tlv
expect "canned: the fresh signature verifies" 0 "OK: signature verified (calendar-based policy)" \
  "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt --policy calendar -X file://fresh.tlv --ext-key "$KEY"
run "$KEYLESS" verify -i a.ext -f a.txt --policy calendar -X file://fresh.tlv --ext-key "$KEY"
check "extended signature with the answer for T..T: FAIL CAL-01" "6 FAIL CAL-01" "$RC $(printf '%s' "$OUT" | cut -c1-11)"
run "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt --policy calendar -X file://fresh.tlv --ext-key wrong
check "canned with a wrong key: NA GEN-02 HMAC mismatch, exit 6" "6 NA GEN-02" "$RC $(printf '%s' "$OUT" | cut -c1-9)"
check_has "canned with a wrong key: says HMAC" "HMAC" "$OUT"

# Tampered: one bit of the calendar chain flipped (the chain is the last element before the
# 35-byte SHA-256 HMAC element); the HMAC no longer verifies.
CL=$(size fresh.chain)
if tail -c $((35 + CL)) fresh.tlv | head -c "$CL" | cmp -s - fresh.chain; then
  pass "the chain sits right before the HMAC"
else
  fail "the chain sits right before the HMAC" "chain bytes at the end" "elsewhere"
fi
cp fresh.tlv tampered.tlv
flip tampered.tlv $(($(size tampered.tlv) - 35 - 2))
run "$CLIENT" decode -k "$KEY" tampered.tlv
check_has "tampered response still parses, HMAC bad" "hmac=bad" "$OUT"
run "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt --policy calendar -X file://tampered.tlv --ext-key "$KEY"
check "tampered response: exit 6" 6 "$RC"
check_has "tampered response: NA GEN-02 for the HMAC" "NA GEN-02: Verification inconclusive (extending failed: extension response: HMAC" "$OUT"
run "$KEYLESS" verify -i sigs/a.txt.ksig -f a.txt --policy calendar -X file://tampered.tlv --ext-key "$KEY" --json
check_has "tampered response, --json: NA" '"result":"NA"' "$(printf '%s' "$OUT" | tr -d ' ')"

# ---- stop ----
stop ext
check "extender: SIGTERM exit 0" 0 "$STATUS"
check_has "extender: logged a clean stop" "event=stopped" "$(cat ext.log)"
no_sanitizer_reports extender ext.log

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
