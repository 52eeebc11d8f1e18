#!/usr/bin/env bash
# System test of the `keyless` command: exit statuses, messages and output formats of verify,
# inspect, pubfile, hash and sign (canned responses, argument errors) against the KSI test vectors.
#
# usage: test_cli.sh KEYLESS_BINARY KSI_VECTORS_DIR
#
# Each check prints "ok - NAME" or "not ok - NAME: expected X got Y"; the last line is
# "N passed, M failed" and the exit status is non-zero if any check failed. Works with a
# sanitizer build too: a sanitizer report on standard error fails the check.
set -u

if [ $# -ne 2 ]; then
  echo "usage: $0 KEYLESS_BINARY KSI_VECTORS_DIR" >&2
  exit 2
fi
KEYLESS=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
VEC=$(cd "$2" && pwd) || exit 2
if [ ! -x "$KEYLESS" ]; then
  echo "$0: $KEYLESS is not an executable" >&2
  exit 2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keyless-system.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT
# Relative paths below (including file:// URLs) are relative to the vectors folder.
cd "$VEC" || exit 2

PASSED=0
FAILED=0
RC=0
OUT=
ERR=
ALL=

pass() {
  echo "ok - $1"
  PASSED=$((PASSED + 1))
}
fail() {
  echo "not ok - $1: expected $2 got $3"
  FAILED=$((FAILED + 1))
}
skip() {
  echo "ok - $1 # SKIP $2"
  PASSED=$((PASSED + 1))
}
# Up to three lines of text on one line, for messages.
short() { printf '%s' "$1" | head -n 3 | tr '\n' ' ' | cut -c1-300; }

# run ARGS...: runs keyless; sets RC, OUT (stdout), ERR (stderr), ALL (both).
run() {
  "$KEYLESS" "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
  RC=$?
  OUT=$(cat "$TMP/out")
  ERR=$(cat "$TMP/err")
  ALL="$OUT"$'\n'"$ERR"
}
# run_in FILE ARGS...: the same with FILE as standard input.
run_in() {
  local in=$1
  shift
  "$KEYLESS" "$@" >"$TMP/out" 2>"$TMP/err" <"$in"
  RC=$?
  OUT=$(cat "$TMP/out")
  ERR=$(cat "$TMP/err")
  ALL="$OUT"$'\n'"$ERR"
}

# expect NAME STATUS [PATTERN...]: checks the last run's exit status and that its output
# (stdout + stderr) contains each PATTERN: a plain substring, or "re:ERE" for a regular
# expression, or "out:TEXT" for a substring of standard output alone.
expect() {
  local name=$1 want=$2 p
  shift 2
  if grep -qE 'ERROR: (Address|Leak|Memory|Thread|Undefined)Sanitizer|runtime error:' "$TMP/err"; then
    fail "$name" "no sanitizer report" "$(short "$(grep -m1 -E 'Sanitizer|runtime error:' "$TMP/err")")"
    return 1
  fi
  if [ "$RC" != "$want" ]; then
    fail "$name" "exit $want" "exit $RC ($(short "$ALL"))"
    return 1
  fi
  for p in "$@"; do
    case $p in
      re:*)
        if ! printf '%s' "$ALL" | grep -Eq -- "${p#re:}"; then
          fail "$name" "output matching /${p#re:}/" "'$(short "$ALL")'"
          return 1
        fi
        ;;
      out:*)
        if [[ "$OUT" != *"${p#out:}"* ]]; then
          fail "$name" "standard output containing '${p#out:}'" "'$(short "$OUT")'"
          return 1
        fi
        ;;
      *)
        if [[ "$ALL" != *"$p"* ]]; then
          fail "$name" "output containing '$p'" "'$(short "$ALL")'"
          return 1
        fi
        ;;
    esac
  done
  pass "$name"
}

# expect_json NAME PYTHON_CONDITION: standard output of the last run is exactly one JSON value
# `d` for which the condition holds.
expect_json() {
  local name=$1 cond=$2 msg
  if ! msg=$(python3 - "$TMP/out" "$cond" 2>&1 <<'EOF'
import json, sys
try:
    with open(sys.argv[1]) as f:
        d = json.load(f)
except ValueError as ex:
    print("invalid JSON: %s" % ex)
    sys.exit(1)
if not eval(sys.argv[2], {"d": d}):
    print("JSON %s" % json.dumps(d)[:300])
    sys.exit(1)
EOF
  ); then
    fail "$name" "JSON with $cond" "$(short "$msg")"
    return 1
  fi
  pass "$name"
}

# expect_eq NAME WANT GOT
expect_eq() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "'$2'" "'$3'"; fi
}

# csv_field CSV FILE COLUMN: a column (1-based) of the row for FILE in a *-results.csv.
csv_field() {
  awk -F';' -v f="$2" -v c="$3" '$1 == f { print $c; exit }' "$1"
}
lower() { printf '%s' "$1" | tr 'A-F' 'a-f'; }

VALID_CSV=valid-signatures/signature-results.csv
SIG=valid-signatures/signature-extended.ksig
for f in "$VALID_CSV" "$SIG" internal-policy-signatures invalid-signatures publications/mock.crt; do
  if [ ! -e "$f" ]; then
    echo "$0: $VEC/$f is missing: not the KSI vectors folder?" >&2
    exit 2
  fi
done

# The CSV row of signature-extended.ksig: document hash, aggregation root, calendar root, times
# and publication string (imprints as hex with the algorithm byte first; 01 = SHA-256).
DOC_IMP=$(csv_field "$VALID_CSV" signature-extended.ksig 6)
AGGR_IMP=$(csv_field "$VALID_CSV" signature-extended.ksig 7)
CAL_IMP=$(csv_field "$VALID_CSV" signature-extended.ksig 8)
AGGR_TIME=$(csv_field "$VALID_CSV" signature-extended.ksig 9)
PUB_TIME=$(csv_field "$VALID_CSV" signature-extended.ksig 10)
PUB_STR=$(csv_field "$VALID_CSV" signature-extended.ksig 11)
for v in DOC_IMP AGGR_IMP CAL_IMP AGGR_TIME PUB_TIME PUB_STR; do
  if [ -z "${!v}" ]; then
    echo "$0: no $v for signature-extended.ksig in $VALID_CSV" >&2
    exit 2
  fi
done
DOC_HEX=$(lower "${DOC_IMP:2}")
AGGR_HEX=$(lower "${AGGR_IMP:2}")
CAL_HEX=$(lower "${CAL_IMP:2}")
# The same document hash with its last hex digit changed.
last=${DOC_HEX: -1}
if [ "$last" = 0 ]; then WRONG_HEX=${DOC_HEX%?}1; else WRONG_HEX=${DOC_HEX%?}0; fi

# ---------------------------------------------------------------- verify: internal policy
run verify -i "$SIG" --policy internal
expect "verify internal: valid signature" 0 "OK"

run verify -i "$SIG" --ver-int
expect "verify --ver-int (ksi-tool spelling)" 0 "OK"

run_in "$SIG" verify -i - --policy internal
expect "verify internal: signature on standard input" 0 "OK"

run verify -i "$SIG" --policy internal -d "SHA-256:$DOC_HEX"
expect "verify internal: right document hash" 0 "OK"

run verify -i "$SIG" --policy internal -d "SHA-256:$WRONG_HEX"
expect "verify internal: wrong document hash is GEN-01" 6 "GEN-01"

run verify -i "$SIG" --policy internal -d "SHA-512:$(printf '%0128d' 0)"
expect "verify internal: document hash with another algorithm is GEN-04" 6 "GEN-04"

printf 'not the signed document' >"$TMP/doc.txt"
run verify -i "$SIG" --policy internal -f "$TMP/doc.txt"
expect "verify internal: wrong document file is GEN-01" 6 "GEN-01"

run verify -i "$SIG" --policy internal --json
if expect "verify --json: exit 0" 0; then
  expect_json "verify --json: one object with result/code/message" \
    'isinstance(d, dict) and d.get("result") == "OK" and d.get("code") == "" and isinstance(d.get("message"), str)'
fi

run verify -i "$SIG" --policy internal --json -d "SHA-256:$WRONG_HEX"
if expect "verify --json: wrong document exit 6" 6; then
  expect_json "verify --json: FAIL object with code GEN-01" \
    'isinstance(d, dict) and d.get("result") == "FAIL" and d.get("code") == "GEN-01" and d.get("message")'
fi

int_csvs=(internal-policy-signatures/*-results.csv)
INT_CSV=${int_csvs[0]}
INT10=$(awk -F';' '$2 == "internal" && $3 == "INT-10" { print $1; exit }' "$INT_CSV" 2>/dev/null)
if [ -n "$INT10" ]; then
  run verify -i "internal-policy-signatures/$INT10" --policy internal
  expect "verify internal: INT-10 vector ($INT10)" 6 "FAIL INT-10"
else
  fail "verify internal: INT-10 vector" "a row with INT-10 in $INT_CSV" "none"
fi

# ---------------------------------------------------------------- verify: unusable input
INV_CSV=invalid-signatures/invalid-signature-results.csv
INV=$(awk -F';' '$2 == "parsing" { print $1; exit }' "$INV_CSV" 2>/dev/null)
if [ -n "$INV" ]; then
  run verify -i "invalid-signatures/$INV" --policy internal
  expect "verify: invalid signature ($INV) is exit 4 naming an offset" 4 're:offset [0-9]+'
else
  fail "verify: invalid signature" "a parsing row in $INV_CSV" "none"
fi

# Every "parsing" row of the invalid-signatures set: exit 4 and one line of explanation.
bad=
n=0
while IFS= read -r f; do
  n=$((n + 1))
  run verify -i "invalid-signatures/$f" --policy internal
  if [ "$RC" != 4 ] || [ -z "$ERR" ] || grep -qE 'Sanitizer|runtime error:' "$TMP/err"; then
    bad="$bad $f(exit $RC)"
  fi
done < <(awk -F';' '$2 == "parsing" { print $1 }' "$INV_CSV")
if [ -z "$bad" ] && [ "$n" -gt 0 ]; then pass "verify: all $n invalid-signatures parsing vectors exit 4 with a message"
else fail "verify: all invalid-signatures parsing vectors exit 4" "exit 4 for $n files" "${bad:- no files}"; fi

head -c 100 "$SIG" >"$TMP/truncated.ksig"
run verify -i "$TMP/truncated.ksig"
expect "verify: truncated signature (100 bytes) is exit 4" 4 're:offset [0-9]+'

head -c 70000 /dev/zero | tr '\0' 'A' >"$TMP/big.ksig"
run verify -i "$TMP/big.ksig"
expect "verify: 70,000-byte file is exit 4, too long" 4 "too long"

head -c 65540 /dev/zero >"$TMP/65540.ksig"
run verify -i "$TMP/65540.ksig"
expect "verify: 65,540-byte file (one over the limit) is too long" 4 "too long"

head -c 65539 /dev/zero >"$TMP/65539.ksig"
run verify -i "$TMP/65539.ksig"
if expect "verify: 65,539-byte file (the limit) is read and rejected as unparseable" 4; then
  if [[ "$ALL" == *"too long"* ]]; then fail "verify: 65,539 bytes is not 'too long'" "a parse error" "'$(short "$ALL")'"; fi
fi

: >"$TMP/empty.ksig"
run verify -i "$TMP/empty.ksig"
expect "verify: empty file is exit 4" 4

run verify -i "$TMP/does-not-exist.ksig"
expect "verify: missing file is exit 9" 9 "does-not-exist.ksig"

run verify -i "$TMP/does-not-exist.ksig" --json
if expect "verify --json: missing file is exit 9" 9; then
  expect_json "verify --json: error object for a missing file" 'isinstance(d, dict) and d.get("result") == "ERROR" and d.get("message")'
fi

# ---------------------------------------------------------------- verify: usage errors
run verify --policy internal
expect "verify: no -i is exit 3" 3 "-i"

run verify -i "$SIG" --no-such-option
expect "verify: unknown option is exit 3" 3

run verify -i "$SIG" --policy no-such-policy
expect "verify: unknown policy is exit 3" 3 "no-such-policy"

run verify -i "$SIG" -d "SHA-256:$DOC_HEX" -f "$TMP/doc.txt"
expect "verify: both -d and -f is exit 3" 3

run verify -i "$SIG" -d "SHA-256:zz"
expect "verify: malformed -d is exit 3" 3

run no-such-command
expect "keyless: unknown command is exit 3" 3 "no-such-command"

# ---------------------------------------------------------------- verify: user publication
run verify -i "$SIG" --pub-str "$PUB_STR"
expect "verify --pub-str: CSV publication string" 0 "OK" "user-publication"

run verify -i "$SIG" --ver-pub --pub-str "$PUB_STR"
expect "verify --ver-pub --pub-str: CSV publication string" 0 "OK" "user-publication"

# One character changed to another base32 letter: the CRC catches it.
pos=20
c=${PUB_STR:$pos:1}
if [ "$c" = A ]; then nc=B; else nc=A; fi
BAD_PUB_STR=${PUB_STR:0:$pos}$nc${PUB_STR:$((pos + 1))}
run verify -i "$SIG" --pub-str "$BAD_PUB_STR"
expect "verify --pub-str: corrupted string is exit 3 with a CRC message" 3 "CRC"

# ---------------------------------------------------------------- verify: key-based
ORDER_SIG=valid-signatures/signature-element-order-is-changed.ksig
GT_PUBFILE=policy-verification-signatures/resources/publications-file.bin
run verify -i "$ORDER_SIG" --policy key -P "$GT_PUBFILE" --publications-file-no-verify
expect "verify key: element order changed, publications file not verified" 0 "OK" "key-based"

run verify -i "$ORDER_SIG" --policy key -P "$GT_PUBFILE"
expect "verify key: publications file without --cnstr or no-verify is exit 3" 3 "--cnstr"

# ---------------------------------------------------------------- verify: calendar-based
DEP_SIG=valid-signatures/signature-has-deprecated-function-in-calendar-hash-chain.ksig
DEP_RESP=valid-signatures/resources/extender-response-for-signature-with-deprecated-function-in-calendar-chain.tlv
run verify -i "$DEP_SIG" --policy calendar -X "file://$DEP_RESP"
expect "verify calendar: canned extender response" 0 "OK" "calendar-based"

run verify -i "$DEP_SIG" --policy calendar
expect "verify calendar: no extender is inconclusive (exit 6, GEN-02)" 6 "GEN-02"

run verify -i "$DEP_SIG" --policy calendar -X "file://$TMP/no-response.tlv"
expect "verify calendar: missing response file is exit 9" 9

# ---------------------------------------------------------------- pubfile
PUBS=publications/ksi-publications.bin
run pubfile -P "$PUBS" -V publications/mock.crt --cnstr E=publications@guardtime.com
expect "pubfile: mock.crt and the right constraint" 0 "OK"

run pubfile -P "$PUBS" -V publications/mock.crt --cnstr E=wrong@example.org
expect "pubfile: wrong constraint is exit 10" 10 "wrong@example.org"

run pubfile -P "$PUBS" -V publications/mock.crt --cnstr E=publications@guardtime.com --at 2524608000
expect "pubfile: --at 2050 (mock.crt expired) is exit 10" 10 "expired"

run pubfile -P "$PUBS" -V publications/mock.crt --cnstr E=publications@guardtime.com --at 1700000000
expect "pubfile: --at 2023 (mock.crt valid)" 0 "OK"

run pubfile -P "$PUBS" -V publications/mock.crt --cnstr E=publications@guardtime.com --json
if expect "pubfile --json: exit 0" 0; then
  expect_json "pubfile --json: an object with publications" \
    'isinstance(d, dict) and d.get("result") == "OK" and len(d.get("publications", [])) > 0'
fi

run pubfile -P "$SIG" --publications-file-no-verify
expect "pubfile: a signature is not a publications file (exit 4)" 4

# ---------------------------------------------------------------- inspect
run inspect -i "$SIG"
expect "inspect: exit 0" 0
expect "inspect: calendar root from the CSV" 0 "out:SHA-256:$CAL_HEX"
expect "inspect: publication string from the CSV" 0 "out:$PUB_STR"
expect "inspect: aggregation root from the CSV" 0 "out:SHA-256:$AGGR_HEX"
expect "inspect: document hash from the CSV" 0 "out:SHA-256:$DOC_HEX"
expect "inspect: signing and publication times from the CSV" 0 "out:$AGGR_TIME" "out:$PUB_TIME"

run inspect -i "$SIG" --json
if expect "inspect --json: exit 0" 0; then
  expect_json "inspect --json: calendar root, publication string and times from the CSV" \
    "isinstance(d, dict) and d['calendar_chain']['calendar_root'] == 'SHA-256:$CAL_HEX' and d['calendar_chain']['publication_string'] == '$PUB_STR' and d['calendar_chain']['input_hash'] == 'SHA-256:$AGGR_HEX' and d['signing_time'] == $AGGR_TIME and d['publication_record']['publication_time'] == $PUB_TIME"
fi

run inspect -i "$TMP/truncated.ksig"
expect "inspect: truncated signature is exit 4" 4

run inspect -i "$TMP/does-not-exist.ksig"
expect "inspect: missing file is exit 9" 9

run inspect
expect "inspect: no -i is exit 3" 3

# ---------------------------------------------------------------- hash
# hash_check NAME FILE KEYLESS_ALG DIGEST_HEX [KEYLESS OPTIONS...]
hash_check() {
  local name=$1 file=$2 alg=$3 want=$4
  shift 4
  run hash "$@" "$file"
  if expect "$name: exit 0" 0; then
    expect_eq "$name" "$alg:$want" "$OUT"
  fi
}
sha() { "$@" | awk '{ print $1 }'; }

hash_check "hash: default is SHA-256 (sha256sum)" "$SIG" SHA-256 "$(sha sha256sum "$SIG")"
hash_check "hash: empty file (sha256sum)" "$TMP/empty.ksig" SHA-256 "$(sha sha256sum "$TMP/empty.ksig")"
hash_check "hash -H SHA-512 (sha512sum)" "$SIG" SHA-512 "$(sha sha512sum "$SIG")" -H SHA-512
if openssl dgst -sha3-256 -r /dev/null >/dev/null 2>&1; then
  hash_check "hash -H SHA3-256 (openssl dgst -sha3-256)" "$SIG" SHA3-256 "$(sha openssl dgst -sha3-256 -r "$SIG")" -H SHA3-256
else
  skip "hash -H SHA3-256" "openssl dgst -sha3-256 is not available"
fi

run hash -H NO-SUCH-ALG "$SIG"
expect "hash: unknown algorithm is exit 3" 3 "NO-SUCH-ALG"

run hash "$TMP/does-not-exist"
expect "hash: missing file is exit 9" 9

run hash
expect "hash: no file is exit 3" 3

# 50 MB: the digest is right and the peak memory stays well below the file's size.
head -c 50000000 /dev/urandom >"$TMP/50mb.bin"
WANT50=$(sha sha256sum "$TMP/50mb.bin")
if msg=$(python3 - "$KEYLESS" "$TMP/50mb.bin" 2>&1 <<'EOF'
import resource, subprocess, sys
r = subprocess.run([sys.argv[1], "hash", sys.argv[2]], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(r.returncode, r.stdout.decode().strip(), peak_kb)
EOF
); then
  read -r rc50 got50 peak50 <<<"$msg"
  expect_eq "hash: 50 MB file (sha256sum)" "0 SHA-256:$WANT50" "$rc50 $got50"
  if [ "${peak50:-999999}" -lt 32768 ]; then pass "hash: 50 MB file is streamed (peak RSS ${peak50} KB)"
  else fail "hash: 50 MB file is streamed" "peak RSS under 32768 KB" "${peak50} KB"; fi
else
  fail "hash: 50 MB file" "python3 to run it" "$(short "$msg")"
fi
run_in "$TMP/50mb.bin" hash -
if expect "hash: 50 MB on standard input: exit 0" 0; then
  expect_eq "hash: 50 MB on standard input (sha256sum)" "SHA-256:$WANT50" "$OUT"
fi

# ---------------------------------------------------------------- sign
# No network: file:// reads a canned Guardtime response (request id 1, HMAC key "anon"), and
# argument errors must be caught before anything is sent (a ksi+tcp URL to a closed loopback
# port would otherwise fail with exit 5).
SIGN_RESP=file://$VEC/pdu/ok-sig-2017-07-14.1-aggr_response.tlv
SIGN_DOC=SHA-256:11a700b0c8066c47ecba05ed37bc14dcadb238552d86c659342d1d7e87b8772d
NOWHERE=ksi+tcp://u:k@127.0.0.1:1
run sign -i "$SIGN_DOC" -o "$TMP/s.ksig" -S "$SIGN_RESP" --aggr-user anon --aggr-key anon
expect "sign: a hash through a canned response" 0 "out:2017-07-14 11:14:07 UTC" "$TMP/s.ksig"
run verify -i "$TMP/s.ksig" -f "$SIGN_DOC" --policy internal
expect "sign: the new signature verifies (internal policy)" 0 "OK"
cp "$TMP/s.ksig" "$TMP/s.orig"
run sign -i "$SIGN_DOC" -o "$TMP/s.ksig" -S "$NOWHERE"
expect "sign: an existing signature that verifies is kept, nothing sent (resume)" 0 "already signed"
run sign -i "SHA-256:$WRONG_HEX" -o "$TMP/s.ksig" -S "$NOWHERE"
expect "sign: an existing signature for another document is reported, not replaced (exit 6)" 6 "does not verify" "--force"
if cmp -s "$TMP/s.ksig" "$TMP/s.orig"; then pass "sign: a signature that does not verify is left as it was"
else fail "sign: a signature that does not verify is left as it was" "unchanged file" "changed"; fi
run sign --force -i "$SIGN_DOC" -o "$TMP/s.ksig" -S "$SIGN_RESP" --aggr-user anon --aggr-key wrong
expect "sign: wrong key is exit 11" 11 "HMAC"
if cmp -s "$TMP/s.ksig" "$TMP/s.orig"; then pass "sign: a failed --force run leaves the old file"
else fail "sign: a failed --force run leaves the old file" "unchanged file" "changed"; fi
run sign --json --force -i "$SIGN_DOC" -o "$TMP/s.ksig" -S "$SIGN_RESP" --aggr-user anon --aggr-key anon
expect_json "sign --json: one object per input" \
  "d['status'] == 'signed' and d['aggregation_time'] == 1500030847 and d['signature'].endswith('s.ksig') and d['document_hash'] == '$SIGN_DOC'"
run sign -i "SHA-256:$WRONG_HEX" -o "$TMP/w.ksig" -S "$SIGN_RESP" --aggr-user anon --aggr-key anon
expect "sign: a response for another document is refused (exit 4)" 4 "GEN-01"
if [ -e "$TMP/w.ksig" ]; then fail "sign: nothing written for a refused response" "no file" "$TMP/w.ksig"
else pass "sign: nothing written for a refused response"; fi
run sign -i "$SIGN_DOC" -o "$TMP/e.ksig" -S "file://$VEC/pdu/ok_aggr_err_response-1.tlv" --aggr-user anon --aggr-key anon
expect "sign: a gateway status is exit 8" 8 "0x103" "invalid payload"
# extend -X file://: a saved 0x321, as ksi-tool's own tests extend (no network).
run extend -i "$VEC/pdu/ok-sig-2014-08-01.1.ksig" -o "$TMP/x1.ksig" -X "file://$VEC/pdu/ok-sig-2014-08-01.1-extend_response.tlv" --to-head
expect "extend -X file://RESPONSE: extended to the response's second" 0 "extended to 1408060800"
run extend -i "$VEC/pdu/ok-sig-2014-08-01.1.ksig" -o "$TMP/x2.ksig" -X "file://$VEC/pdu/ok-sig-2014-08-01.1-extend_response.tlv" --ext-key wrong --to-head
expect "extend -X file:// with the wrong HMAC key: refused (exit 11)" 11 "HMAC"
run sign -i "$SIGN_DOC" -o "$TMP/n.ksig" -S "file://$VEC/pdu/nok_aggr_response_bad_tag.tlv" --aggr-user anon --aggr-key anon
expect "sign: a malformed response is exit 4" 4 "unknown critical element"
printf 'one' >"$TMP/a.txt"
printf 'two' >"$TMP/b.txt"
: >"$TMP/a.txt.ksig"
# Two files in one request: the local tree's root at level 1 under a one-link gateway chain,
# in a response made here (HMAC-SHA-256, key "k") for request id 1.
if python3 - "$TMP/a.txt" "$TMP/b.txt" "$TMP/tree-resp.tlv" <<'EOF'
import hashlib, hmac, struct, sys
def tlv(t, v):
    if t > 0x1F or len(v) > 255:
        return struct.pack(">BBH", 0x80 | (t >> 8), t & 0xFF, len(v)) + v
    return bytes([t, len(v)]) + v
def uint(v):
    return v.to_bytes((v.bit_length() + 7) // 8, "big")
imp = lambda data: b"\x01" + hashlib.sha256(data).digest()
h = [imp(open(f, "rb").read()) for f in sys.argv[1:3]]
root = imp(h[0] + h[1] + b"\x01")
chain = tlv(0x801, tlv(2, uint(1700000000)) + tlv(3, uint(3)) + tlv(5, root) + tlv(6, uint(1))
            + tlv(7, tlv(2, b"\x01" + bytes(32))))
body = tlv(1, tlv(1, b"anon\x00")) + tlv(2, tlv(1, uint(1)) + chain)
pdu = tlv(0x221, body + tlv(0x1F, b"\x01" + bytes(32)))
mac = hmac.new(b"k", pdu[:-32], hashlib.sha256).digest()
open(sys.argv[3], "wb").write(pdu[:-32] + mac)
conf = tlv(4, tlv(1, uint(19)) + tlv(2, uint(1)) + tlv(3, uint(100)) + tlv(4, uint(1000)) + tlv(0x10, b"ksi+tcp://up:3333\x00"))
pdu = tlv(0x221, tlv(1, tlv(1, b"anon\x00")) + conf + tlv(0x1F, b"\x01" + bytes(32)))
open(sys.argv[3] + ".conf", "wb").write(pdu[:-32] + hmac.new(b"k", pdu[:-32], hashlib.sha256).digest())
EOF
then
  mkdir -p "$TMP/sigs"
  run sign -i "$TMP/a.txt" -i "$TMP/b.txt" -o "$TMP/sigs" --json -S "file://$TMP/tree-resp.tlv" --aggr-user anon --aggr-key k
  expect "sign: two files in one request (local tree)" 0 'out:"file":"'"$TMP"'/b.txt"' 'out:"status":"signed"'
  for f in a b; do
    run verify -i "$TMP/sigs/$f.txt.ksig" -f "$TMP/$f.txt" --policy internal
    expect "sign: local-tree signature of $f.txt verifies with $f.txt" 0 "OK"
  done
  run verify -i "$TMP/sigs/a.txt.ksig" -f "$TMP/b.txt" --policy internal
  expect "sign: a.txt's signature does not verify b.txt" 6 "GEN-01"
  run sign -i "$TMP/a.txt" -i "$TMP/b.txt" -o "$TMP/sigs" --max-lvl 0 --json --force -S "file://$TMP/tree-resp.tlv" --aggr-user anon --aggr-key k
  if expect "sign --max-lvl 0: one request per file, each failure reported, the batch goes on" 4 "GEN-01"; then
    expect_eq "sign --max-lvl 0: statuses per file" "failed failed" "$(printf '%s\n' "$OUT" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p' | tr '\n' ' ' | sed 's/ $//')"
  fi
  run sign --dump-conf --json -S "file://$TMP/tree-resp.tlv.conf" --aggr-user anon --aggr-key k
  expect_json "sign --dump-conf: the gateway's configuration" \
    "d['max_level'] == 19 and d['aggr_algo'] == 'SHA-256' and d['aggr_period_ms'] == 100 and d['max_requests'] == 1000 and d['parent_uris'] == ['ksi+tcp://up:3333']"
  run sign --dump-conf -S "file://$TMP/tree-resp.tlv" --aggr-user anon --aggr-key k
  expect "sign --dump-conf: a response without configuration is exit 8" 8 "no configuration"
else
  fail "sign: local tree response" "python3 to make it" "no python3"
fi
run sign -i "$TMP/a.txt" -i "$TMP/b.txt" -S "$NOWHERE" --retry-for 0
expect "sign: FILE.ksig exists but is not a signature: reported, the rest goes on (exit 6)" 6 "a.txt.ksig exists but is not a signature" "b.txt" "2 not signed"
run sign -i "$TMP/a.txt" -i "$TMP/b.txt" -o "$TMP/b.txt" -S "$NOWHERE" --force
expect "sign: several inputs want -o DIR" 3 "existing directory"
run sign -i "$TMP/a.txt" "$TMP/a.txt" -o "$TMP" -S "$NOWHERE" --force
expect "sign: the same output twice is refused" 3 "would both be signed into"
run sign -i "$TMP/missing.txt" -S "$NOWHERE"
expect "sign: a missing input is exit 9, nothing sent" 9 "missing.txt" "nothing was sent"
run sign -i "$TMP/b.txt" -S "$NOWHERE" --retry-for 1s
expect "sign: connection refused is exit 5, after retries within --retry-for" 5 "127.0.0.1:1" "attempts"
if [ -e "$TMP/b.txt.ksig" ]; then fail "sign: nothing written when the gateway is unreachable" "no file" "$TMP/b.txt.ksig"
else pass "sign: nothing written when the gateway is unreachable"; fi
run sign -i "$TMP/b.txt" -S ksi+tcp://127.0.0.1:1
expect "sign: no login and key is exit 3" 3 "--aggr-user"
run sign -i "$TMP/b.txt"
expect "sign: no -S is exit 3" 3 "-S URL"
run sign -i "$TMP/b.txt" -S "$NOWHERE" --no-such-option
expect "sign: unknown option is exit 3" 3 "no-such-option"
run sign -i - -S "$NOWHERE"
expect "sign: standard input needs -o" 3 "-o OUT"
run sign -i SHA-1:0000000000000000000000000000000000000000 -o "$TMP/x.ksig" -S "$NOWHERE"
expect "sign: SHA-1 is refused" 3 "SHA-1"
run sign -i "$TMP/b.txt" -S "$NOWHERE" --max-lvl 256
expect "sign: --max-lvl above 255 is exit 3" 3 "--max-lvl"
run sign --help
expect "sign --help" 0 "out:--max-lvl" "out:--aggr-key" "out:--force" "out:--json"

# ---------------------------------------------------------------- https options
# No server: bad trust files are usage errors before anything is sent; each URL gets its own
# error. (The handshakes themselves are tested in unit/test_netclient_tls.)
run sign -i "$TMP/b.txt" -S https://anon:anon@127.0.0.1:1/ --ca "$TMP/missing-ca.pem" --force
expect "sign: --ca naming a missing file is exit 3" 3 "CA file" "missing-ca.pem"
KL_CA="$TMP/missing-ca.pem" run sign -i "$TMP/b.txt" -S https://anon:anon@127.0.0.1:1/ --force --retry-for 0
expect "sign: \$KL_CA naming a missing file is exit 3, naming the variable" 3 "\$KL_CA" "missing-ca.pem"
run sign -i "$TMP/b.txt" -S https://anon:anon@127.0.0.1:1/ --force --retry-for 0
expect "sign: https connection refused is exit 5" 5 "127.0.0.1:1"
run pubfile -P https://127.0.0.1:1/publications.bin --publications-file-no-verify
expect "pubfile: an https URL is fetched (refused: exit 5)" 5 "publications file https://127.0.0.1:1/publications.bin"
run core status https://127.0.0.1:1/ http://127.0.0.1:2
expect "core status: each URL's own error" 5 "out:https://127.0.0.1:1/" "out:unreachable: cannot connect to 127.0.0.1:1" \
  "out:unreachable: cannot connect to 127.0.0.1:2"
run core remove "https://127.0.0.1:1/,http://127.0.0.1:2" 4
expect "core remove with several URLs, none reachable: no leader, exit 1" 1 "none of the 2 nodes named says it is the leader"
run core --cert "$TMP/admin.crt" status https://127.0.0.1:1
expect "core: --cert without --key is exit 3" 3 "needs its key"
run core status
expect "core: no URL is exit 3" 3 "usage"
run core --help
expect "core --help" 0 "out:--ca FILE" "out:--cert FILE" "out:KL_ADMIN_CERT" "out:https://"
for c in verify extend pubfile; do
  run $c --help
  expect "$c --help documents --ca" 0 "out:--ca FILE" "out:KL_CA"
done

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
