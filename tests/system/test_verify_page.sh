#!/usr/bin/env bash
# The extender's verification page (extender/www, extender/ext_www.c; docs/operations.md "The
# verification page") on a small deploy/local-network, in headless Chromium:
#   1. GET /verify and its assets: 200, the right content types, the strict CSP, cacheable;
#      another /verify/ path is 404;
#   2. a document signed through the network: the page (driven by its test fragment
#      #sig=...&doc=..., read from the DOM's #verdict) says OK, as `keyless verify` does; with the
#      document hash pasted instead of the document: OK; and as a person does it, the signature
#      dropped and the document chosen (verify_page_cdp.py): OK, FAIL for another document;
#   3. the signature with one byte changed in a sibling hash: FAIL with an INT code, and
#      `keyless verify` refuses it too; another document: FAIL with GEN-01;
#   4. the signature extended to a publication (a publication record): OK with its publication
#      string, FAIL for the string mistyped (CRC-32) or the record's hash changed (INT-09),
#      INCONCLUSIVE for a publication the signature is not extended to;
#   5. with node present, ksi.js against the KSI vectors' expected results (verify_page_vectors.js).
# KL_SCREENSHOTS=DIR saves verify-ok.png and verify-fail.png there (docs/img).
# Usage: test_verify_page.sh BUILD_DIR SOURCE_DIR. Exits 77 without chromium.
set -u
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
CHROME=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROME" ] || { echo "skipped: chromium is not installed (scripts/install-deps.sh installs it)"; exit 77; }
. "$(dirname "$0")/harness.sh" verify-page
KL="$BUILD/cli/keyless"
LN="$SRC/deploy/local-network"
NET="$TMP/net"
unset KSI_CONF KL_AGGR_KEY KSI_AGGR_KEY KL_HOSTS
export KL_BUILD="$BUILD" KL_TOPOLOGY=small KL_BASE_PORT=$((42000 + ($$ % 60) * 100))
trap '"$LN" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() { echo "not ok - $1"; echo "$PASSED passed, $((FAILED + 1)) failed"; exit 1; }

if command -v node >/dev/null && [ -d "$SRC/../shared/ksi-vectors" ]; then
  out=$(node "$SRC/tests/system/verify_page_vectors.js" "$SRC" "$SRC/../shared/ksi-vectors" 2>&1)
  check "ksi.js agrees with the KSI vectors' expected results (node)" "0 failed" "$(echo "$out" | tail -n 1 | grep -o '0 failed$')"
else
  echo "# node or shared/ksi-vectors missing: ksi.js vector check skipped"
fi

# A second try on other ports if the first start fails (a port taken by another test meanwhile).
for try in 1 2; do
  timeout 120 "$LN" up "$NET" >up.log 2>&1 && break
  tail -n 5 up.log
  "$LN" down "$NET" >/dev/null 2>&1
  rm -rf "$NET"
  [ "$try" = 2 ] && bail "local-network up"
  export KL_BASE_PORT=$((KL_BASE_PORT + 6000))
done
. "$NET/network.env"
EXT="${KL_EXTENDER_URL%/}"

# 1. The page and its assets.
code=$(curl -s -m 10 -D h.txt -o page.html -w '%{http_code}' "$EXT/verify")
check "GET /verify: 200" 200 "$code"
H=$(tr -d '\r' <h.txt)
check_has "  ... text/html" "Content-Type: text/html; charset=utf-8" "$H"
check_has "  ... a strict CSP (no inline script, connect-src 'none')" "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'" "$H"
check_has "  ... connect-src 'none'" "connect-src 'none'" "$H"
check_has "  ... cacheable" "Cache-Control: public, max-age=3600" "$H"
check_has "  ... the page itself" 'id="verdict"' "$(cat page.html)"
check "  ... no inline script in the page" "" "$(grep -o '<script>' page.html)"
for a in verify.js:text/javascript ksi.js:text/javascript verify.css:text/css; do
  f=${a%%:*}
  code=$(curl -s -m 10 -D h.txt -o "$f" -w '%{http_code}' "$EXT/verify/$f")
  check "GET /verify/$f: 200" 200 "$code"
  check_has "  ... ${a#*:}" "Content-Type: ${a#*:}" "$(tr -d '\r' <h.txt)"
  check "  ... the file in the source tree" "$(sha256sum <"$SRC/extender/www/$f")" "$(sha256sum <"$f")"
done
check "GET /verify/nothing: 404" 404 "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$EXT/verify/nothing")"

# 2. A document signed through the network.
printf 'a document for the auditors\n' >doc.txt
for i in 1 2 3 4 5; do
  timeout 40 "$KL" sign -i doc.txt -o doc.txt.ksig -S "${KL_GATEWAY_URLS%% *}" --aggr-user "$KL_USER" \
    --aggr-key "$KL_KEY" >sign.log 2>&1 && break
  sleep 1
done
[ -s doc.txt.ksig ] || bail "keyless sign: $(short "$(cat sign.log)")"
"$KL" verify -i doc.txt.ksig -f doc.txt --policy internal >/dev/null 2>&1
check "keyless verify: the signature is OK (exit 0)" 0 "$?"

b64() { base64 -w0 <"$1" | tr '+/' '-_' | tr -d '='; }
# page FRAGMENT [SCREENSHOT [HEIGHT]]: the page's DOM after it ran (page.dom), the verdict in VERDICT and
# the reason in REASON.
page() {
  rm -rf prof
  timeout 60 "$CHROME" --headless --disable-gpu --no-sandbox --disable-dev-shm-usage --no-first-run --user-data-dir="$TMP/prof" \
    --virtual-time-budget=10000 --dump-dom "$EXT/verify#$1" >page.dom 2>chrome.log
  VERDICT=$(sed -n 's/.*<div id="verdict"[^>]*>\([^<]*\)<.*/\1/p' page.dom | head -n 1)
  REASON=$(sed -n 's/.*<p id="reason">\([^<]*\)<.*/\1/p' page.dom | head -n 1)
  if [ -n "${2:-}" ] && [ -n "${KL_SCREENSHOTS:-}" ]; then
    rm -rf prof
    timeout 60 "$CHROME" --headless --disable-gpu --no-sandbox --disable-dev-shm-usage --no-first-run --user-data-dir="$TMP/prof" \
      --hide-scrollbars --window-size=1100,${3:-1500} --virtual-time-budget=10000 \
      --screenshot="$KL_SCREENSHOTS/$2" "$EXT/verify#$1" >/dev/null 2>>chrome.log
  fi
}
page "sig=$(b64 doc.txt.ksig)&doc=$(b64 doc.txt)"
check "the page: OK for the signature and its document" OK "$VERDICT"
check_has "  ... naming the signing time" "The document was signed at" "$REASON"
check_has "  ... the aggregation chain drawn" "Aggregation chain 1 of" "$(cat page.dom)"
check_has "  ... the calendar chain drawn, to its root" "calendar root" "$(cat page.dom)"
page "sig=$(b64 doc.txt.ksig)&hash=SHA-256:$(sha256sum doc.txt | cut -c1-64)"
check "the page: OK with the document hash pasted" OK "$VERDICT"

# The production path, as a person uses it: the signature dropped on its zone, the document
# chosen with the file input (verify_page_cdp.py, through the DevTools protocol).
cdp() { rm -rf "$TMP/prof"; timeout 60 python3 "$SRC/tests/system/verify_page_cdp.py" "$CHROME" "$EXT/verify" "$1" "$2" "$TMP/prof" 2>&1; }
out=$(cdp doc.txt.ksig doc.txt)
check_has "dropped signature and chosen document: OK" "verdict: OK" "$out"
check_has "  ... the dropped file read" "signature: doc.txt.ksig (" "$out"
check_has "  ... the verdict covers the chosen document" "verdict covers: doc.txt" "$out"
printf 'another document\n' >other.txt
out=$(cdp doc.txt.ksig other.txt)
check_has "dropped signature and another chosen document: FAIL" "verdict: FAIL" "$out"
check_has "  ... GEN-01" "GEN-01" "$out"

# 3. A tampered signature: the last byte of the first sibling imprint (an aggregation link's
# 0x02, else a calendar link) changed.
cat >tamper.py <<'EOF'
# tamper.py IN OUT sibling|pub: one bit flipped in the last byte of the first sibling imprint (an
# aggregation link's 0x02, else a calendar link), or of the publication record's hash.
import sys
b = bytearray(open(sys.argv[1], "rb").read())
def tlvs(o, end):
    while o < end:
        if b[o] & 0x80: t, n, h = ((b[o] & 0x1F) << 8) | b[o + 1], (b[o + 2] << 8) | b[o + 3], 4
        else: t, n, h = b[o] & 0x1F, b[o + 1], 2
        yield t, o + h, n
        o += h + n
_, v, n = next(tlvs(0, len(b)))
spots = []
for t, cv, cn in tlvs(v, v + n):
    for lt, lv, ln in tlvs(cv, cv + cn):
        if sys.argv[3] == "pub":
            if t == 0x803 and lt == 0x10:
                spots += [(sv, sn, 0) for st, sv, sn in tlvs(lv, lv + ln) if st == 4]
        elif t == 0x801 and lt in (7, 8):
            spots += [(sv, sn, 0) for st, sv, sn in tlvs(lv, lv + ln) if st == 2]
        elif t == 0x802 and lt in (7, 8):
            spots.append((lv, ln, 1))
sv, sn, _ = sorted(spots, key=lambda s: s[2])[0]
b[sv + sn - 1] ^= 0x01
open(sys.argv[2], "wb").write(b)
EOF
python3 tamper.py doc.txt.ksig tampered.ksig sibling || bail "tampering"
"$KL" verify -i tampered.ksig -f doc.txt --policy internal >/dev/null 2>&1
check "keyless verify refuses the tampered signature (exit 6)" 6 "$?"
page "sig=$(b64 tampered.ksig)&doc=$(b64 doc.txt)" verify-fail.png
check "the page: FAIL for the tampered signature" FAIL "$VERDICT"
check_has "  ... with an internal rule's code" "INT-0" "$REASON"
check_has "  ... the failing part marked" 'class="box' "$(grep -o 'class="box [a-z]* bad"' page.dom)"
page "sig=$(b64 doc.txt.ksig)&doc=$(b64 other.txt)"
check "the page: FAIL for another document" FAIL "$VERDICT"
check_has "  ... wrong document (GEN-01)" "GEN-01" "$REASON"
printf 'not a signature' >junk.ksig
page "sig=$(b64 junk.ksig)&doc=$(b64 doc.txt)"
check "the page: FAIL for a file that is no signature" FAIL "$VERDICT"
check_has "  ... saying it is malformed" "malformed" "$REASON"

# 4. Publications: the signature extended to the extender's head with that publication's string
# (keyless inspect prints it), so that it carries a publication record.
for i in 1 2 3 4 5; do
  "$KL" extend -i doc.txt.ksig -o head.ksig -X "$KL_EXTENDER_URL" --ext-user "$KL_USER" --ext-key "$KL_KEY" --to-head >ext.log 2>&1 &&
    PS=$("$KL" inspect -i head.ksig | sed -n 's/.*as publication string: //p' | head -n 1) &&
    "$KL" extend -i doc.txt.ksig -o pub.ksig -X "$KL_EXTENDER_URL" --ext-user "$KL_USER" --ext-key "$KL_KEY" --pub-str "$PS" >>ext.log 2>&1 && break
  sleep 1
done
[ -s pub.ksig ] && [ -n "$PS" ] || bail "keyless extend: $(short "$(cat ext.log)")"
page "sig=$(b64 pub.ksig)&doc=$(b64 doc.txt)&pub=$PS" verify-ok.png 3400
check "the page: OK for the extended signature and its publication string" OK "$VERDICT"
check_has "  ... anchored to it" "equals the publication string" "$REASON"
check_has "  ... the publication record drawn" "Publication record" "$(cat page.dom)"
# One character changed (the 8th): CRC-32 catches any change of up to 32 bits in a row.
c=${PS:7:1}; [ "$c" = Z ] && r=A || r=Z
bad_ps="${PS:0:7}$r${PS:8}"
page "sig=$(b64 pub.ksig)&doc=$(b64 doc.txt)&pub=$bad_ps"
check "the page: FAIL for a mistyped publication string" FAIL "$VERDICT"
check_has "  ... its CRC-32" "CRC-32" "$REASON"
page "sig=$(b64 doc.txt.ksig)&doc=$(b64 doc.txt)&pub=$PS"
check "the page: INCONCLUSIVE for a publication the signature is not extended to" INCONCLUSIVE "$VERDICT"
python3 tamper.py pub.ksig pub-tampered.ksig pub || bail "tampering the publication"
page "sig=$(b64 pub-tampered.ksig)&doc=$(b64 doc.txt)"
check "the page: FAIL for a publication record whose hash was changed" FAIL "$VERDICT"
check_has "  ... INT-09" "INT-09" "$REASON"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
