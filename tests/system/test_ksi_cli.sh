#!/usr/bin/env bash
# ksi-tool's interface of the `keyless` command against a small network (deploy/local-network,
# KL_TOPOLOGY=small: one core node, one gateway, one extender):
#   - sign, extend and verify with every service and trust option (URLs, logins, keys, -P,
#     --cnstr, -V) from a ksi-tool configuration file, through $KSI_CONF (the network's own
#     generated ksi.conf) and through --conf;
#   - the command line over --conf over $KSI_CONF, lists (--cnstr) replaced rather than merged;
#   - a bad line or a bad value named FILE:LINE; options for other commands ignored in a file
#     but refused on the command line; a warning for a file with keys that others can read;
#   - -d dumps (signing time and document hash), --show-progress, --mdata signatures that verify
#     and show their client id in `keyless inspect`, and `pubfile -o` writing the served file.
# Usage: test_ksi_cli.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NETSCRIPT="$HERE/../../deploy/local-network"
. "$HERE/harness.sh" ksi-cli
KL="$BUILD/cli/keyless"
NET="$TMP/net"
unset KSI_CONF KL_CA KL_ADMIN_CERT KL_ADMIN_KEY
export KL_BUILD="$BUILD" KL_TOPOLOGY=small KL_BASE_PORT=$((20000 + ($$ % 100) * 100))
trap '"$NETSCRIPT" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() { echo "not ok - $1"; "$NETSCRIPT" down "$NET" >/dev/null 2>&1; for f in "$NET"/log/*.log; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }

RC=0 OUT= ERR= ALL=
# run ARGS...: runs keyless; sets RC, OUT, ERR and ALL (both).
run() {
  "$KL" "$@" >out.txt 2>err.txt </dev/null
  RC=$?
  OUT=$(cat out.txt)
  ERR=$(cat err.txt)
  ALL="$OUT"$'\n'"$ERR"
}
# expect NAME STATUS [SUBSTRING...]: the last run's exit status and output (stdout + stderr).
expect() {
  local name=$1 want=$2 p
  shift 2
  if grep -qE 'ERROR: (Address|Leak|Memory|Undefined)Sanitizer|runtime error:' err.txt; then
    fail "$name" "no sanitizer report" "$(short "$(grep -m1 -E 'Sanitizer|runtime error:' err.txt)")"
    return
  fi
  if [ "$RC" != "$want" ]; then
    fail "$name" "exit $want" "exit $RC ($(short "$ALL"))"
    return
  fi
  for p in "$@"; do
    if [[ "$ALL" != *"$p"* ]]; then
      fail "$name" "output containing '$p'" "'$(short "$ALL")'"
      return
    fi
  done
  pass "$name"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

"$NETSCRIPT" up "$NET" >up.log 2>&1 || { cat up.log; bail "deploy/local-network up"; }
pass "deploy/local-network up (small)"
# shellcheck disable=SC1091
. "$NET/network.env"
unset KL_CA KL_ADMIN_CERT KL_ADMIN_KEY
GW=${KL_GATEWAY_URLS%% *}
[ -f "$NET/ksi.conf" ] || bail "the network wrote ksi.conf"

# ---- 1. $KSI_CONF: the network's generated ksi.conf, as ksi-tool would read it ----
echo "first document $(date +%s%N)" >doc1
chmod 644 "$NET/ksi.conf"
KSI_CONF="$NET/ksi.conf" run sign -i doc1
expect "sign with everything from \$KSI_CONF (the network's ksi.conf)" 0 "doc1.ksig"
check_has "a warning names the conf file with keys that others can read" "$NET/ksi.conf holds a key and is readable by others" "$ERR"
cp "$NET/ksi.conf" env.conf
chmod 600 env.conf
export KSI_CONF="$TMP/env.conf"
run verify -i doc1.ksig -f doc1 --policy key
expect "verify key-based with -P, -V and --cnstr from \$KSI_CONF" 0 "OK: signature verified"
check "no warning for a file only its owner reads" "" "$ERR"

# ---- 2. --conf: ksi-tool syntax with comments, quotes and --opt=value ----
cat >my.conf <<EOF
# keyless and ksi-tool read this file
-S "$GW"
--aggr-user anon

   # the key: quoted, in --opt=value form
--aggr-key="anon"
-X $KL_EXTENDER_URL
--ext-user anon
--ext-key anon
-P $KL_PUBLICATIONS_URL
--cnstr "$KL_CNSTR"
-V $KL_TRUST_ANCHOR
--max-in-flight 16
-c 10
EOF
chmod 600 my.conf
echo "second document $(date +%s%N)" >doc2
KSI_CONF= run sign -i doc2 --conf my.conf
expect "sign with everything from --conf" 0 "doc2.ksig"
KSI_CONF= run verify -i doc2.ksig -f doc2 --policy key --conf=my.conf
expect "verify key-based with everything from --conf=FILE" 0 "OK: signature verified"

# ---- 3. priority: command line, then --conf, then $KSI_CONF ----
printf -- '-S http://127.0.0.1:1/\n--aggr-user anon\n--aggr-key wrong\n' >dead.conf
chmod 600 dead.conf
echo "third document $(date +%s%N)" >doc3
KSI_CONF="$TMP/dead.conf" run sign -i doc3 --conf my.conf
expect "--conf wins over \$KSI_CONF" 0 "doc3.ksig"
echo "fourth document $(date +%s%N)" >doc4
run sign -i doc4 --conf dead.conf -S "$GW" --aggr-key anon
expect "the command line wins over --conf (-S, --aggr-key)" 0 "doc4.ksig"
echo "fifth document $(date +%s%N)" >doc5
run sign -i doc5 --aggr-key wrong
[ "$RC" = 11 ] || [ "$RC" = 14 ] && pass "a wrong --aggr-key on the command line wins over the file's (exit $RC)" ||
  fail "a wrong --aggr-key on the command line wins over the file's" "exit 11 or 14" "exit $RC ($(short "$ALL"))"
[ ! -e doc5.ksig ] && pass "no signature from a refused request" || fail "no signature from a refused request" "no doc5.ksig" "one"
printf -- '--cnstr E=someone-else@example.org\n' >cnstr.conf
run verify -i doc1.ksig -f doc1 --policy key --conf cnstr.conf
expect "a --cnstr from --conf replaces \$KSI_CONF's (the file is not trusted)" 10 "not trusted"
run verify -i doc1.ksig -f doc1 --policy key --conf cnstr.conf --cnstr "$KL_CNSTR"
expect "a --cnstr on the command line replaces the files' ones" 0 "OK: signature verified"

# ---- 4. mistakes named FILE:LINE; options for other commands ----
printf -- '-S %s\n\n--aggr-usr anon\n' "$GW" >bad.conf
run sign -i doc5 --conf bad.conf
expect "an unknown option in --conf: exit 16 naming FILE:LINE" 16 "bad.conf:3: unknown option --aggr-usr"
KSI_CONF="$TMP/bad.conf" run verify -i doc1.ksig
expect "an unknown option in \$KSI_CONF: exit 16 naming FILE:LINE" 16 "$TMP/bad.conf:3: unknown option --aggr-usr"
printf -- '# fine\n--max-lvl 300\n' >badval.conf
run sign -i doc5 --conf badval.conf
expect "a bad value in --conf is named FILE:LINE" 3 "badval.conf:2: --max-lvl wants 0..255"
printf -- '--aggr-key "anon\n' >quote.conf
run sign -i doc5 --conf quote.conf
expect "an unterminated quote is named FILE:LINE" 16 "quote.conf:1: unterminated quote"
run sign -i doc5 --conf /nonexistent/k.conf
expect "a missing --conf file is named" 16 "--conf /nonexistent/k.conf: cannot open"
run sign -i doc5 -X "$KL_EXTENDER_URL"
expect "-X on sign's command line is still an error (files only skip it)" 3
[ ! -e doc5.ksig ] && pass "nothing signed by the failed runs" || fail "nothing signed by the failed runs" "no doc5.ksig" "one"

# ---- 5. -d dumps, --show-progress ----
echo "sixth document $(date +%s%N)" >doc6
run sign -d -i doc6
expect "sign -d dumps the new signature to standard error" 0 "signing time:" "document hash:  SHA-256:$(sha doc6)"
check_has "the dump is on standard error, not standard output" "signing time:" "$ERR"
for i in 1 2 3; do echo "batch $i $(date +%s%N)" >"b$i"; done
run sign --show-progress -i b1 -i b2 -i b3
expect "sign --show-progress: three files" 0 "b3.ksig"
check_has "--show-progress prints done/total on standard error" "signed 3/3 files" "$ERR"

# ---- 6. --mdata: a metadata link under the document hash ----
echo "seventh document $(date +%s%N)" >doc7
run sign -i doc7 --mdata --mdata-cli-id alice --mdata-mac-id "machine 1" --mdata-sqn-nr 7 --mdata-req-tm
expect "sign --mdata" 0 "doc7.ksig"
run verify -i doc7.ksig -f doc7 --policy internal
expect "the --mdata signature verifies internally" 0 "OK: signature verified"
run verify -i doc7.ksig -f doc7 --policy key
expect "the --mdata signature verifies key-based" 0 "OK: signature verified"
run inspect -i doc7.ksig
expect "inspect shows the signature's metadata" 0 'client="alice" machine="machine 1" seq=7 request_time='
run inspect -i doc7.ksig --json
first=$(printf '%s' "$OUT" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["aggregation_chains"][0]["links"][0]["direction"], d["aggregation_chains"][0]["links"][0]["metadata"]["client_id"])' 2>&1)
check "the metadata link is the first link of the bottom chain, a left link" "left alice" "$first"
for i in 1 2 3; do echo "mdata batch $i $(date +%s%N)" >"m$i"; done
run sign -i m1 -i m2 -i m3 --mdata --mdata-cli-id bob
expect "sign --mdata three files in one local tree" 0 "m3.ksig"
ok=0
for i in 1 2 3; do "$KL" verify -i "m$i.ksig" -f "m$i" --policy key >/dev/null 2>&1 && ok=$((ok + 1)); done
check "each of the three --mdata signatures verifies" 3 "$ok"
run sign -i doc5 --mdata
expect "--mdata without a client id" 3 "--mdata-cli-id"
run sign -i doc5 --mdata-cli-id alice
expect "--mdata-cli-id without --mdata on the command line" 3 "only used with --mdata"

# ---- 7. extend with everything from the file; pubfile -o ----
sleep 1.2
"$NETSCRIPT" publish "$NET" >publish.log 2>&1 || { cat publish.log; bail "local-network publish"; }
run extend -i doc1.ksig -o doc1.ext.ksig -d
expect "extend with -X, --ext-user, --ext-key, -P, --cnstr and -V from \$KSI_CONF" 0 "extended to" "publication record"
run verify -i doc1.ext.ksig -f doc1 --policy publication
expect "the extended signature verifies against the publications file from \$KSI_CONF" 0 "OK: signature verified"
run extend -i doc7.ksig -o doc7.ext.ksig --conf my.conf
expect "extend the --mdata signature with everything from --conf" 0 "extended to"
run verify -i doc7.ext.ksig -f doc7 --policy publication
expect "the extended --mdata signature verifies by publication" 0 "OK: signature verified"
run pubfile -o saved.bin
expect "pubfile -o with -P and the trust from \$KSI_CONF" 0 "OK: publications file" "saved to saved.bin"
curl -sf -m 5 -o served.bin "$KL_PUBLICATIONS_URL" || fail "download the served publications file" "curl ok" "curl failed"
cmp -s saved.bin served.bin && pass "pubfile -o wrote the served file byte for byte" ||
  fail "pubfile -o wrote the served file" "identical files" "$(cmp saved.bin served.bin 2>&1)"
run pubfile -o saved.bin -d
expect "pubfile -o replaces its earlier copy; -d lists the publications" 0 "publications:" "certificates:"
ls saved.bin.tmp.* >/dev/null 2>&1 && fail "no temporary file left" "none" "$(ls saved.bin.tmp.*)" || pass "no temporary file left"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
