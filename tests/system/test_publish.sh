#!/usr/bin/env bash
# System test of `keyless publish` keeping every publication (publications are permanent): a
# calendar made with `keyless calendar` and mksig, an extender on it serving the file and its
# history, and
#   1. publish --latest (P1), a signature extended to P1 verifies against that file;
#   2. publish --latest again (P2): the new file still holds P1 and the extended signature
#      verifies against it; both files are in DIR/history and served by the extender;
#   3. a previous file with a changed hash: publish refuses (exit 10, a clear message), the file
#      stays as it was and no history copy is added;
#   4. a previous file the calendar disagrees with (another calendar's root for P1): refused,
#      nothing written; --previous that does not exist: refused;
#   5. a previous file signed by another publications key: refused unless -V/--cnstr accept it.
#
# usage: test_publish.sh KEYLESS_EXTENDER KEYLESS MKSIG
#
# Each check prints "ok - NAME" or "not ok - NAME: expected X got Y"; the last line is
# "N passed, M failed" and the exit status is non-zero if any check failed. Needs curl, python3.
set -u

if [ $# -ne 3 ]; then
  echo "usage: $0 KEYLESS_EXTENDER KEYLESS MKSIG" >&2
  exit 2
fi
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
EXT=$(abs "$1") KL=$(abs "$2") MKSIG=$(abs "$3")
for b in "$EXT" "$KL" "$MKSIG"; do
  [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }
done
for t in curl python3; do command -v "$t" >/dev/null || { echo "$0: $t is needed" >&2; exit 2; }; done

. "$(dirname "$0")/harness.sh" publish

# No UTC midnight within the calendar (quiet_genesis): every publication here is a --latest one.
quiet_genesis # (publish_setup, append_empty and hist_count: harness.sh)
EMAIL=publications@publish.keyless.test
TRUST=(-V pki/ca.crt --cnstr "E=$EMAIL")
SIGN=(--cert pki/publications.crt --key pki/publications.key --allow-clear-key --auth-cert pki/calendar-auth.crt)

run "$KL" devpki -o pki --email "$EMAIL"
[ "$RC" -eq 0 ] || bail "devpki: $(short "$OUT")"
publish_setup 'a permanent document'

# ---- 1. the first publication ----
run "$KL" publish -D cal -o out/pubs.bin "${SIGN[@]}" --latest
check "publish 1: exit 0" 0 "$RC"
check_has "publish 1: one publication" "wrote out/pubs.bin: 1 publications" "$OUT"
PUB1=$(printf '%s\n' "$OUT" | sed -n '2s/^ *//p')
check "publish 1: prints P1's publication string" 1 "$(printf '%s' "$PUB1" | grep -cE '^[A-Z2-7]{6}(-[A-Z2-7]{6}){11}$')"
check "publish 1: one history copy" 1 "$(hist_count)"
check_has "publish 1: names the history copy" "history copy: out/history/pubs-" "$OUT"
run "$KL" extend -i sigs/a.txt.ksig -o a.ext -P out/pubs.bin "${TRUST[@]}" -X "$URL/" "${CRED[@]}"
check "extend to P1: exit 0" 0 "$RC"
run "$KL" verify -i a.ext -f a.txt --policy publication -P out/pubs.bin "${TRUST[@]}"
check "the extended signature verifies against file 1" "0 OK: signature verified (publications-file-based policy)" \
  "$RC $(printf '%s\n' "$OUT" | head -n 1)"
cp out/pubs.bin first.bin

# ---- 2. the next publication keeps P1 ----
append_empty $((T + 4)) $((T + 5)) "$P2"
sleep 1 # a history name has one-second resolution (a clash would get -1: either is fine)
run "$KL" publish -D cal -o out/pubs.bin "${SIGN[@]}" --latest
check "publish 2: exit 0" 0 "$RC"
check_has "publish 2: both publications" "wrote out/pubs.bin: 2 publications" "$OUT"
check_has "publish 2: says it kept the earlier one" "kept the 1 publications of out/pubs.bin" "$OUT"
run "$KL" pubfile -P out/pubs.bin "${TRUST[@]}" --dump
check "pubfile: file 2 is trusted" 0 "$RC"
check_has "pubfile: file 2 still holds P1" "$PUB1" "$OUT"
run "$KL" verify -i a.ext -f a.txt --policy publication -P out/pubs.bin "${TRUST[@]}"
check "the signature extended to P1 verifies against file 2" \
  "0 OK: signature verified (publications-file-based policy)" "$RC $(printf '%s\n' "$OUT" | head -n 1)"
check "publish 2: two history copies" 2 "$(hist_count)"
LATEST=$(find out/history -name '*.bin' | sort | tail -n 1)
if cmp -s "$LATEST" out/pubs.bin; then pass "the newest history copy is the file"; else
  fail "the newest history copy is the file" same different; fi
if find out/history -name '*.bin' -exec cmp -s first.bin {} \; -print | grep -q .; then
  pass "file 1 is in the history"; else fail "file 1 is in the history" present missing; fi

# The extender serves the file and its history.
LIST=$(curl -s -m 10 "$URL/publications/history/")
check "GET /publications/history/: the two names" 2 "$(printf '%s\n' "$LIST" | grep -c '^pubs-.*Z\.bin$')"
NAME1=$(printf '%s\n' "$LIST" | head -n 1)
curl -s -m 10 -o got1.bin "$URL/publications/history/$NAME1"
if cmp -s got1.bin first.bin; then pass "GET /publications/history/NAME: file 1, byte-identical"; else
  fail "GET /publications/history/NAME: file 1, byte-identical" same different; fi
check "GET /publications/history/ of a name not there: 404" 404 \
  "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$URL/publications/history/nothing.bin")"
check "GET /publications/history/ with a path outside it: 404" 404 \
  "$(curl -s -m 10 --path-as-is -o /dev/null -w '%{http_code}' "$URL/publications/history/..%2fpubs.bin")"
check "GET of another path on the service port: still 405" 405 \
  "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$URL/")"
curl -s -m 10 -o served.bin "$URL/publications.bin"
if cmp -s served.bin out/pubs.bin; then pass "GET /publications.bin: file 2"; else
  fail "GET /publications.bin: file 2" same different; fi

# ---- 3. a tampered previous file ----
cp out/pubs.bin good.bin
python3 - "$P1" <<'PY' || bail "tamper: P1's record not found"
import struct, sys
p1 = int(sys.argv[1])
d = bytearray(open("out/pubs.bin", "rb").read())
tag = b"\x02" + bytes([(p1.bit_length() + 7) // 8]) + p1.to_bytes((p1.bit_length() + 7) // 8, "big")
i = d.find(tag + b"\x04\x21\x01")
if i < 0:
    sys.exit(1)
d[i + len(tag) + 3 + 5] ^= 1  # a digest byte of P1's hash
open("out/pubs.bin", "wb").write(d)
PY
cp out/pubs.bin tampered.bin
run "$KL" publish -D cal -o out/pubs.bin "${SIGN[@]}" --latest
check "tampered previous file: exit 10" 10 "$RC"
check_has "tampered previous file: says the previous file cannot be trusted" \
  "the previous publications file out/pubs.bin cannot be trusted" "$OUT"
check_has "tampered previous file: says the signature check failed" "signature check failed" "$OUT"
check_has "tampered previous file: nothing written" "nothing written" "$OUT"
if cmp -s out/pubs.bin tampered.bin; then pass "tampered previous file: left as it was"; else
  fail "tampered previous file: left as it was" same changed; fi
check "tampered previous file: no history copy added" 2 "$(hist_count)"
cp good.bin out/pubs.bin

# ---- 4. a previous file the calendar disagrees with ----
"$KL" calendar init -D cal2 --genesis "$G" >/dev/null || bail "calendar init cal2"
"$KL" calendar append -D cal2 --time "$T" --root "SHA-256:$(printf 'other' | sha256sum | cut -c1-64)" >/dev/null ||
  bail "append cal2"
for s in $((T + 1)) $((T + 2)) "$P1"; do "$KL" calendar append -D cal2 --time "$s" --empty >/dev/null; done
mkdir other
run "$KL" publish -D cal2 -o other/pubs.bin --previous out/pubs.bin "${SIGN[@]}" --latest
check "another calendar's root for P1: exit 1" 1 "$RC"
check_has "another calendar's root for P1: names the publication and refuses" \
  "publishes $(date -u -d "@$P1" '+%Y-%m-%d %H:%M:%S') UTC ($P1) as $PUB1, but the calendar's root for that second differs" "$OUT"
check "another calendar: nothing written" "" "$(ls other)"
run "$KL" publish -D cal -o other/pubs.bin --previous nothere.bin "${SIGN[@]}" --latest
check "--previous that does not exist: exit 9" 9 "$RC"
check_has "--previous that does not exist: names it" "nothere.bin" "$OUT"
run "$KL" publish -D cal -o other/pubs.bin --previous out/pubs.bin "${SIGN[@]}" --latest
check "--previous into a new output: exit 0" 0 "$RC"
run "$KL" pubfile -P other/pubs.bin "${TRUST[@]}" --dump
check_has "--previous into a new output: holds P1" "$PUB1" "$OUT"

# ---- 5. a file signed by another publications key (a rotation) ----
run "$KL" devpki -o pki2 --email "$EMAIL"
[ "$RC" -eq 0 ] || bail "devpki 2: $(short "$OUT")"
SIGN2=(--cert pki2/publications.crt --key pki2/publications.key --allow-clear-key --auth-cert pki/calendar-auth.crt)
run "$KL" publish -D cal -o out/pubs.bin "${SIGN2[@]}" --latest
check "another signer, no -V: exit 10" 10 "$RC"
check_has "another signer, no -V: says how to accept it" "-V ANCHOR.pem --cnstr OID=VALUE" "$OUT"
if cmp -s out/pubs.bin good.bin; then pass "another signer, no -V: file left as it was"; else
  fail "another signer, no -V: file left as it was" same changed; fi
run "$KL" publish -D cal -o out/pubs.bin "${SIGN2[@]}" --latest "${TRUST[@]}"
check "another signer, -V of its root and --cnstr: exit 0" 0 "$RC"
run "$KL" pubfile -P out/pubs.bin -V pki2/ca.crt --cnstr "E=$EMAIL" --dump
check_has "the re-signed file still holds P1" "$PUB1" "$OUT"

no_sanitizer_reports extender ext.log
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
