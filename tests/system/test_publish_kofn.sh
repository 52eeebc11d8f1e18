#!/usr/bin/env bash
# System test of k-of-n publications files (docs/keys.md, "k of n"): a calendar made with
# `keyless calendar` and mksig, a real keyless-extender on it serving the file, two operators
# (certificates under the devpki CA made with openssl, wrapped keys), and
#   1. `publish --prepare` on "machine A" (no key there), `publish --cosign` in each operator's
#      own directory, `publish --assemble` back on A: the file holds both signers;
#   2. a signature extended to its publication (extend -P with --publications-signers 2) verifies
#      with --publications-signers 2, and with the default (1, what KSI clients check);
#   3. a file assembled from one part: refused with --publications-signers 2, naming the count;
#   4. a part over another body, or the same part twice: refused, nothing written; a clear
#      operator key: refused unless --allow-clear-key;
#   5. the next --prepare trusts the k-of-n file only with -V/--cnstr (and K) or an operator's
#      --cert; one-step publish with a clear key is refused without --allow-clear-key.
#
# usage: test_publish_kofn.sh KEYLESS_EXTENDER KEYLESS MKSIG
#
# Each check prints "ok - NAME" or "not ok - NAME: expected X got Y"; the last line is
# "N passed, M failed" and the exit status is non-zero if any check failed. Needs openssl.
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
command -v openssl >/dev/null || { echo "$0: openssl is needed" >&2; exit 2; }

. "$(dirname "$0")/harness.sh" publish-kofn

# No UTC midnight within the calendar (quiet_genesis): every publication here is a --latest one.
quiet_genesis # (publish_setup, append_empty and hist_count: harness.sh)
EMAIL=publications@kofn.keyless.test
TRUST=(-V pki/ca.crt --cnstr "E=$EMAIL")

run "$KL" devpki -o pki --email "$EMAIL"
[ "$RC" -eq 0 ] || bail "devpki: $(short "$OUT")"
# Two operators: each a P-256 key wrapped under the operator's own passphrase and a certificate
# from the publications CA with the subject clients pin (E=) and a name of their own (CN=).
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n' >op.ext
for op in a b; do
  mkdir -m 700 "op-$op"
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"op-$op/pass"
  chmod 600 "op-$op/pass"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -passout "file:op-$op/pass" \
    -keyout "op-$op/op.key" -subj "/O=kofn test/CN=operator $op/emailAddress=$EMAIL" -out "op-$op/op.csr" 2>/dev/null &&
    openssl x509 -req -in "op-$op/op.csr" -CA pki/ca.crt -CAkey pki/offline/ca.key -CAcreateserial -days 30 \
      -extfile op.ext -out "op-$op/op.crt" 2>/dev/null || bail "operator $op's certificate"
done
check "operator keys are wrapped" "-----BEGIN ENCRYPTED PRIVATE KEY-----" "$(head -n 1 op-a/op.key)"
keyuri() { echo "file:$TMP/op-$1/op.key?passphrase-source=file:$TMP/op-$1/pass"; }

publish_setup 'a document signed k of n'
mkdir machine-a

# ---- 1. prepare on A, cosign on each operator's machine, assemble on A ----
run "$KL" publish -D cal -o out/pubs.bin --prepare machine-a/body.unsigned --auth-cert pki/calendar-auth.crt --latest
check "prepare: exit 0" 0 "$RC"
check_has "prepare: names the body" "wrote machine-a/body.unsigned: the unsigned body of out/pubs.bin, 1 publications" "$OUT"
PUB1=$(printf '%s\n' "$OUT" | sed -n '2s/^ *//p')
[ -f out/pubs.bin ] && fail "prepare writes no publications file" absent present || pass "prepare writes no publications file"
for op in a b; do
  cp machine-a/body.unsigned "op-$op/"
  # Each operator signs in their own directory, with their own key (relative paths: no sharing).
  OUT=$(cd "op-$op" && "$KL" publish --cosign body.unsigned --cert op.crt --key "$(keyuri "$op")" -o "$op.sig" 2>&1)
  RC=$?
  check "cosign by operator $op: exit 0" 0 "$RC"
  check_has "cosign by operator $op: shows the publication it signs" "$PUB1" "$OUT"
  cp "op-$op/$op.sig" machine-a/
done
run "$KL" publish --assemble machine-a/body.unsigned -o out/pubs.bin "${TRUST[@]}" machine-a/a.sig machine-a/b.sig
check "assemble 2 parts: exit 0" 0 "$RC"
check_has "assemble: says so" "wrote out/pubs.bin: 1 publications, signed by 2 parts" "$OUT"
check "assemble: one history copy" 1 "$(hist_count)"
run "$KL" pubfile -P out/pubs.bin "${TRUST[@]}" --publications-signers 2
check "pubfile --publications-signers 2: trusted" 0 "$RC"
run "$KL" pubfile -P out/pubs.bin "${TRUST[@]}" --publications-signers 3
check "pubfile --publications-signers 3: not trusted (exit 10)" 10 "$RC"
check_has "pubfile: names the count" "2 of the 3 required distinct trusted signers (the CMS has 2)" "$OUT"

# ---- 2. a real signature extended to the k-of-n publication ----
run "$KL" extend -i sigs/a.txt.ksig -o a.ext -P out/pubs.bin "${TRUST[@]}" --publications-signers 2 -X "$URL/" "${CRED[@]}"
check "extend with --publications-signers 2: exit 0" 0 "$RC"
run "$KL" verify -i a.ext -f a.txt --policy publication -P out/pubs.bin "${TRUST[@]}" --publications-signers 2
check "verify, 2 of 2 signers" "0 OK: signature verified (publications-file-based policy)" \
  "$RC $(printf '%s\n' "$OUT" | head -n 1)"
run "$KL" verify -i a.ext -f a.txt --policy publication -P out/pubs.bin "${TRUST[@]}"
check "verify, default (1 signer, as KSI clients)" "0 OK: signature verified (publications-file-based policy)" \
  "$RC $(printf '%s\n' "$OUT" | head -n 1)"
run "$KL" verify -i a.ext -f a.txt --policy publication -P out/pubs.bin "${TRUST[@]}" --publications-signers 0
check "verify --publications-signers 0: a usage error" 3 "$RC"

# ---- 3. one part of the two ----
run "$KL" publish --assemble machine-a/body.unsigned -o one.bin machine-a/a.sig
check "assemble 1 part: exit 0" 0 "$RC"
run "$KL" verify -i a.ext -f a.txt --policy publication -P one.bin "${TRUST[@]}" --publications-signers 2
check "verify a 1-signer file with --publications-signers 2: not trusted (exit 10)" 10 "$RC"
check_has "verify: names how many valid signers were found" "1 of the 2 required distinct trusted signers (the CMS has 1)" "$OUT"
run "$KL" extend -i sigs/a.txt.ksig -o a2.ext -P one.bin "${TRUST[@]}" --publications-signers 2 -X "$URL/" "${CRED[@]}"
check "extend against a 1-signer file with --publications-signers 2: exit 10" 10 "$RC"
[ -f a2.ext ] && fail "extend writes nothing then" absent present || pass "extend writes nothing then"
run "$KL" publish --assemble machine-a/body.unsigned -o two.bin "${TRUST[@]}" --publications-signers 2 machine-a/a.sig
check "assemble 1 part, 2 required: refused (exit 10)" 10 "$RC"
[ -f two.bin ] && fail "assemble writes nothing then" absent present || pass "assemble writes nothing then"
run "$KL" publish --assemble machine-a/body.unsigned -o two.bin --publications-signers 2 machine-a/a.sig
check "--publications-signers without -V/--cnstr: a usage error" 3 "$RC"
check_has "the usage error says what is missing" "give -V ANCHOR.pem and --cnstr" "$OUT"

# ---- 4. parts that do not belong ----
append_empty $((T + 4)) $((T + 5)) "$P2"
sleep 1 # a new creation second for the next body
run "$KL" publish -D cal -o out/pubs.bin --prepare machine-a/next.unsigned --auth-cert pki/calendar-auth.crt --latest \
  "${TRUST[@]}" --publications-signers 2
check "prepare the next body (previous file checked 2 of 2): exit 0" 0 "$RC"
check_has "prepare: keeps P1 and adds P2" "2 publications" "$OUT"
OUT=$(cd op-b && cp ../machine-a/next.unsigned . && "$KL" publish --cosign next.unsigned --cert op.crt --key "$(keyuri b)" -o next-b.sig 2>&1)
check "cosign the next body: exit 0" 0 "$?"
cp op-b/next-b.sig machine-a/
cp out/pubs.bin before.bin
run "$KL" publish --assemble machine-a/body.unsigned -o out/pubs.bin machine-a/a.sig machine-a/next-b.sig
check "a part over another body: refused (exit 10)" 10 "$RC"
check_has "the refusal names the part" "machine-a/next-b.sig: assembling the publications file: signature part 2 does not sign this body" "$OUT"
cmp -s before.bin out/pubs.bin && pass "the file is unchanged" || fail "the file is unchanged" same different
check "no history copy added" 1 "$(hist_count)"
run "$KL" publish --assemble machine-a/body.unsigned -o other.bin machine-a/a.sig machine-a/a.sig
check "the same part twice: refused (exit 3)" 3 "$RC"
check_has "the refusal says why" "the same key as an earlier part" "$OUT"
# The next body assembled over the older file would drop nothing: fine. The old body over the
# newer file would: refused.
openssl pkey -in op-a/op.key -passin file:op-a/pass -out op-a/clear.key 2>/dev/null || bail "a clear copy of a's key"
run "$KL" publish --cosign machine-a/next.unsigned --cert op-a/op.crt --key op-a/clear.key -o machine-a/next-a.sig
check "cosign with a clear key: refused (exit 10)" 10 "$RC"
check_has "the refusal names --allow-clear-key" "--allow-clear-key" "$OUT"
[ -f machine-a/next-a.sig ] && fail "no part written then" absent present || pass "no part written then"
run "$KL" publish --cosign machine-a/next.unsigned --cert op-a/op.crt --key op-a/clear.key -o machine-a/next-a.sig --allow-clear-key
check "cosign with a clear key and --allow-clear-key: exit 0" 0 "$RC"
run "$KL" publish --assemble machine-a/next.unsigned -o out/pubs.bin "${TRUST[@]}" machine-a/next-a.sig machine-a/next-b.sig
check "assemble the next file: exit 0" 0 "$RC"
check "two history copies" 2 "$(hist_count)"
run "$KL" publish --assemble machine-a/body.unsigned -o out/pubs.bin machine-a/a.sig machine-a/b.sig
check "an older body over the newer file: refused (exit 1)" 1 "$RC"
check_has "the refusal says prepare again" "prepare again" "$OUT"
run "$KL" verify -i a.ext -f a.txt --policy publication -P out/pubs.bin "${TRUST[@]}" --publications-signers 2
check "the signature extended to P1 verifies against the next file, 2 of 2" 0 "$RC"

# ---- 5. trusting the previous file; clear keys in one step ----
run "$KL" publish -D cal -o out/pubs.bin --prepare machine-a/third.unsigned --latest
check "prepare without a way to check the previous file: refused (exit 3)" 3 "$RC"
check_has "the refusal says what to give" "give --cert" "$OUT"
run "$KL" publish -D cal -o out/pubs.bin --prepare machine-a/third.unsigned --latest --cert op-b/op.crt
check "prepare, the previous file checked with an operator's --cert: exit 0" 0 "$RC"
cp out/pubs.bin before.bin
run "$KL" publish -D cal -o out/pubs.bin --cert pki/publications.crt --key pki/publications.key --latest \
  --auth-cert pki/calendar-auth.crt "${TRUST[@]}"
check "one-step publish with a clear key: refused (exit 10)" 10 "$RC"
check_has "the refusal names --allow-clear-key" "--allow-clear-key" "$OUT"
cmp -s before.bin out/pubs.bin && pass "the file is unchanged" || fail "the file is unchanged" same different

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
