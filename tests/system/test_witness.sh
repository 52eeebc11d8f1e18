#!/usr/bin/env bash
# System test of witnesses (issue 14): a calendar made with `keyless calendar`, a document signed
# on it (mksig), a real keyless-extender serving it, two publications made with `keyless publish`,
#   1. two witnesses (Ed25519 and ECDSA P-256, `keyless witness init`) countersign the first
#      publication, then both publications, in turn (exit 0), into publications.bin.witness;
#   2. `keyless verify` (an extended signature, and one extended on the fly to the publications
#      file) and `keyless audit` requiring 2 of 2 witnesses pass; with one witness's cosignatures
#      only (`keyless witness add --witness`), 2 required fail with exit 6 and 1 required pass; a
#      tampered cosignature fails; bad --witness usage is exit 3;
#   3. a forked calendar (the same genesis and rounds up to between the publications, edited
#      offline to differ after) served by a second extender with its own later publication: a
#      witness that countersigned the true branch refuses it (exit 6, naming the second and both
#      hashes), writes no cosignature and keeps its state; it also refuses the fork's extender for
#      the true publications (its head does not extend them).
# The extender serves the cosignature file next to the publications file (GET
# /publications.bin.witness: 404 before there is one), which verify and audit find from -P URL.
#
# usage: test_witness.sh KEYLESS_EXTENDER KEYLESS MKSIG
# Each check prints "ok - NAME" or "not ok - NAME: expected X got Y"; the last line is
# "N passed, M failed" and the exit status is non-zero if any check failed. Needs curl.
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
command -v curl >/dev/null || { echo "$0: curl is needed" >&2; exit 2; }

. "$(dirname "$0")/harness.sh" witness

# No UTC midnight within the calendar: the only publications are the --latest ones.
quiet_genesis
DOC=$((G + 11)) # the document's round
P1=$((G + 20))
FORK=$((G + 31))
P2=$((G + 40))
HEAD=$((G + 50))
EMAIL=publications@witness.keyless.test
TRUST=(-V pki/ca.crt --cnstr "E=$EMAIL")
SIGN=(--cert pki/publications.crt --key pki/publications.key --allow-clear-key --auth-cert pki/calendar-auth.crt)
root() { printf 'SHA-256:%064x' "$1"; }
append() { "$KL" calendar append -D "$1" --time "$2" ${3:+--root "$3"} ${3:---empty} >/dev/null || bail "append $1 $2"; }

run "$KL" devpki -o pki --email "$EMAIL"
[ "$RC" -eq 0 ] || bail "devpki: $(short "$OUT")"
"$KL" calendar init -D cal --genesis "$G" >/dev/null || bail "calendar init"
append cal $((G + 3)) "$(root $((G + 3)))"
echo "a witnessed document $RANDOM" >doc.txt
mkdir sigs
run "$MKSIG" -D cal --pki pki -o sigs --time "$DOC" doc.txt
[ "$RC" -eq 0 ] && [ -s sigs/doc.txt.ksig ] || bail "mksig: $(short "$OUT")"
append cal "$P1" "$(root "$P1")"
mkdir out
run "$KL" publish -D cal -o out/pubs.bin "${SIGN[@]}" --latest
[ "$RC" -eq 0 ] || bail "publish 1: $(short "$OUT")"
cp out/pubs.bin out/pubs1.bin
for s in $((G + 25)) "$FORK" $((G + 37)) "$P2"; do append cal "$s" "$(root "$s")"; done
run "$KL" publish -D cal -o out/pubs.bin "${SIGN[@]}" --latest
check_has "publish 2: both publications" "wrote out/pubs.bin: 2 publications" "$OUT"
append cal "$HEAD" "$(root "$HEAD")"

# (start_ext NAME DIR [PUBFILE]: harness.sh)
printf 'wit:wit-key\n' >users
chmod 600 users
start_ext a cal "$TMP/out/pubs.bin"
A=$URL
code() { curl -s -m 10 -o "$2" -w '%{http_code}' "$1"; }
check "the extender serves no cosignature file yet: 404" 404 "$(code "$A/publications.bin.witness" /dev/null)"

# ---- 1. two witnesses, two publications ----
run "$KL" witness init -d w1
check "init w1 (Ed25519): exit 0" 0 "$RC"
check_has "init w1: names the key" "(Ed25519)" "$OUT"
run "$KL" witness init -d w2 --alg p256
check "init w2 (ECDSA P-256): exit 0" 0 "$RC"
check "init w1: the private key is 0600" "600" "$(stat -c %a w1/witness.key)"
run "$KL" witness init -d w1
check "init again: refused, exit 1" 1 "$RC"
run "$KL" witness init -d w3 --key pki/ca.crt
check "init with a certificate as the key: exit 4" 4 "$RC"
[ -e w3/witness.key ] && fail "nothing written for a bad key" absent present || pass "nothing written for a bad key"
W=(--witness w1/witness.pub --witness w2/witness.pub)

for w in w1 w2; do
  run "$KL" witness sign -d $w -X "$A" -P out/pubs1.bin "${TRUST[@]}" -o out/pubs.bin.witness
  check "$w countersigns the first publication: exit 0" 0 "$RC"
  check_has "$w: says so" "countersigned publication $P1 " "$OUT"
done
check "w1's state: the first publication" "second=$P1" "$(grep '^second=' w1/state)"
run "$KL" witness sign -d w1 -X "$A" -P out/pubs1.bin "${TRUST[@]}" -o out/pubs.bin.witness
check "w1 again on the same publication: exit 0" 0 "$RC"
for w in w1 w2; do
  run "$KL" witness sign -d $w -X "$A" -P out/pubs.bin "${TRUST[@]}"
  check "$w countersigns the second publication (file next to -P): exit 0" 0 "$RC"
  check_has "$w: the second publication" "countersigned publication $P2 " "$OUT"
done
check "w2's state moved on" "second=$P2" "$(grep '^second=' w2/state)"
run "$KL" witness show "${W[@]}" out/pubs.bin.witness
check "show with both keys: exit 0" 0 "$RC"
check "show: 2 publications with 2 cosignatures" 2 "$(printf '%s\n' "$OUT" | grep -c ': 2 cosignatures$')"
check "show: 4 valid cosignatures" 4 "$(printf '%s\n' "$OUT" | grep -c ': valid$')"

# ---- 2. requiring witnesses ----
run "$KL" extend -i sigs/doc.txt.ksig -o doc.ext -P out/pubs.bin "${TRUST[@]}" -X "$A/" --ext-user wit --ext-key wit-key
check "extend the signature to the first publication: exit 0" 0 "$RC"
run "$KL" verify -i doc.ext -f doc.txt -P out/pubs.bin "${TRUST[@]}" "${W[@]}" --witnesses-required 2
check "verify, extended signature, 2 of 2 witnesses: exit 0" 0 "$RC"
check_has "verify: OK" "OK: signature verified" "$OUT"
run "$KL" verify -i sigs/doc.txt.ksig -f doc.txt -P out/pubs.bin "${TRUST[@]}" -x -X "$A/" --ext-user wit \
  --ext-key wit-key --policy publication "${W[@]}"
check "verify, extended on the fly to the publications file, all witnesses: exit 0" 0 "$RC"
run "$KL" audit -X "$A" -P out/pubs.bin "${TRUST[@]}" "${W[@]}" --witnesses-required 2
check "audit, 2 of 2 witnesses: exit 0" 0 "$RC"
check "the extender serves the cosignature file next to the publications file" 200 \
  "$(code "$A/publications.bin.witness" served.witness)"
cmp -s served.witness out/pubs.bin.witness && pass "as it is on disk" || fail "as it is on disk" same differs
run "$KL" audit -X "$A" -P "$A/publications.bin" "${TRUST[@]}" "${W[@]}"
check "audit with -P URL: the cosignatures from URL.witness, 2 of 2: exit 0" 0 "$RC"
run "$KL" verify -i doc.ext -f doc.txt -P "$A/publications.bin" "${TRUST[@]}" "${W[@]}"
check "verify with -P URL: 2 of 2: exit 0" 0 "$RC"

run "$KL" witness add -o one.witness --witness w1/witness.pub out/pubs.bin.witness
check "add: only w1's cosignatures: exit 0" 0 "$RC"
run "$KL" verify -i doc.ext -f doc.txt -P out/pubs.bin "${TRUST[@]}" "${W[@]}" --witness-file one.witness
check "verify, one cosignature, 2 required: exit 6" 6 "$RC"
check_has "verify: the reason" "publication $P1 (root " "$OUT"
check_has "verify: the counts" "1 valid cosignature of the 2 known witnesses, 2 required" "$OUT"
run "$KL" verify -i doc.ext -f doc.txt -P out/pubs.bin "${TRUST[@]}" "${W[@]}" --witness-file one.witness --json
check_has "verify --json: FAIL WITNESS" '"result":"FAIL","code":"WITNESS"' "$OUT"
run "$KL" verify -i doc.ext -f doc.txt -P out/pubs.bin "${TRUST[@]}" "${W[@]}" --witness-file one.witness \
  --witnesses-required 1
check "verify, one cosignature, 1 required: exit 0" 0 "$RC"
run "$KL" audit -X "$A" -P out/pubs.bin "${TRUST[@]}" "${W[@]}" --witness-file one.witness
check "audit, one cosignature, 2 required: exit 6" 6 "$RC"
check_has "audit: names the publication" "publication $P1 (root " "$OUT"
check_has "audit: says unwitnessed, not inconsistent" "UNWITNESSED (the calendar is consistent)" "$OUT"
run "$KL" witness add -o both.witness one.witness out/pubs.bin.witness
check "add: merged again" "wrote both.witness: 2 publications" "$OUT"
cmp -s both.witness out/pubs.bin.witness && pass "the merge is the same file" || fail "the merge is the same file" same differs
# A tampered cosignature: the last byte of the file is the last signature's.
cp out/pubs.bin.witness bad.witness
printf '\x00' | dd of=bad.witness bs=1 seek=$(($(stat -c %s bad.witness) - 1)) conv=notrunc 2>/dev/null
run "$KL" audit -X "$A" -P out/pubs.bin "${TRUST[@]}" "${W[@]}" --witness-file bad.witness
check "audit, a tampered cosignature: exit 6" 6 "$RC"
check_has "audit: not valid" "is not valid" "$OUT"
run "$KL" verify -i doc.ext -f doc.txt -P out/pubs.bin "${TRUST[@]}" "${W[@]}" --witnesses-required 3
check "more required than known: exit 3" 3 "$RC"
run "$KL" verify -i doc.ext -f doc.txt -P out/pubs.bin "${TRUST[@]}" --witness w1/witness.pub --witness w1/witness.key
check "the same witness twice: exit 3" 3 "$RC"
check_has "the same witness twice: said" "are the same witness" "$OUT"
head -c 20 out/pubs.bin.witness >short.witness
run "$KL" audit -X "$A" -P out/pubs.bin "${TRUST[@]}" "${W[@]}" --witness-file short.witness
check "a truncated cosignature file: exit 4" 4 "$RC"

# ---- 3. a fork ----
"$KL" calendar init -D fork --genesis "$G" >/dev/null || bail "calendar init fork"
for s in $((G + 3)) "$DOC" "$P1" $((G + 25)); do append fork "$s" "$(root "$s")"; done
append fork "$FORK" "SHA-256:$(printf '%064x' 999)"
for s in $((G + 37)) "$P2" $((HEAD + 10)); do append fork "$s" "$(root "$s")"; done
mkdir fout
run "$KL" publish -D fork -o fout/pubs.bin "${SIGN[@]}" --latest
[ "$RC" -eq 0 ] || bail "publish the fork: $(short "$OUT")"
append fork $((HEAD + 20)) "$(root $((HEAD + 20)))"
start_ext b fork
B=$URL
run "$KL" verify -i doc.ext -f doc.txt -P out/pubs.bin "${TRUST[@]}" "${W[@]}" --witness-file "$B/publications.bin.witness"
check "a cosignature file URL that is 404: exit 6" 6 "$RC"
check_has "a missing file: said" "no cosignature file $B/publications.bin.witness" "$OUT"
cp w1/state w1.state.before
run "$KL" witness sign -d w1 -X "$B" -P fout/pubs.bin "${TRUST[@]}"
check "the fork's publication: refused, exit 6" 6 "$RC"
check_has "refused: names the second and the fork's root" "REFUSED: second $P2: extender $B's calendar root is 01" "$OUT"
check_has "refused: and the root countersigned" "the publication countersigned last, $P2 is 01" "$OUT"
[ -e fout/pubs.bin.witness ] && fail "no cosignature file written" absent present || pass "no cosignature file written"
cmp -s w1/state w1.state.before && pass "the state is unchanged" || fail "the state is unchanged" same changed
run "$KL" witness sign -d w1 -X "$B" -P out/pubs.bin "${TRUST[@]}" -o fork.witness
check "the true publications at the fork's extender: refused, exit 6" 6 "$RC"
check_has "refused: the fork's head does not extend them" "second $P2: extender $B's calendar root is" "$OUT"
[ -e fork.witness ] && fail "nothing written for it" absent present || pass "nothing written for it"
run "$KL" witness sign -d w1 -X "$B" -P out/pubs1.bin "${TRUST[@]}" -o old.witness
check "nothing new, but the fork's head does not extend the state: exit 6" 6 "$RC"
check_has "nothing new: names the second" "REFUSED: second $P2: extender $B's calendar root is" "$OUT"
run "$KL" witness sign -d w1 -X "$A" -P out/pubs1.bin "${TRUST[@]}" -o old.witness
check "nothing new at the true extender: exit 0" 0 "$RC"
check_has "nothing new: says so" "nothing to countersign: no publication at or after $P2; the extender's head extends it" "$OUT"
[ -e old.witness ] && fail "nothing new: no file written" absent present || pass "nothing new: no file written"
run "$KL" witness sign -d w1 -X "$A" -P fout/pubs.bin "${TRUST[@]}"
check "the fork's publication at the true extender (after its head): exit 7" 7 "$RC"
run "$KL" witness sign -d w1 -X "$A" --pub-str NOT-A-PUBLICATION -o x.witness
check "a bad publication string: exit 3" 3 "$RC"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
