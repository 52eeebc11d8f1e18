#!/usr/bin/env bash
# `keyless sign` for collections (issue 13) against a whole network (deploy/local-network, full:
# 3 core nodes, 2 aggregators, 2 gateways):
#   1. a 10,000-file tree with the same names in different folders (-r -o DIR), --json lines
#      parsed with python3, signatures that verify; a rerun keeps every signature (same inode
#      and mtime) and counts it "already_signed";
#   2. resume after kill -9 of the client: no half-written signature, nothing that verifies is
#      signed again, the rest is signed;
#   3. the core leader killed mid-batch: everything signed within --retry-for;
#   4. --manifest: one signature over a manifest-sha256.txt that sha256sum -c accepts, and
#      keyless verify --manifest;
#   5. the key from --aggr-key-file and $KL_AGGR_KEY, --ha all;
#   6. failover: gateway 1 killed with kill -9 mid-batch, 0 files lost; the first -S down.
# Every wait is bounded; the whole test has a deadline.
# Usage: test_sign_batch.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NETSCRIPT="$HERE/../../deploy/local-network"
. "$HERE/harness.sh" sign-batch
KL="$BUILD/cli/keyless"
NET="$TMP/net"
DEADLINE=$((SECONDS + 500))
unset KSI_CONF KL_CA KL_ADMIN_CERT KL_ADMIN_KEY KL_AGGR_KEY KSI_AGGR_KEY
export KL_BUILD="$BUILD" KL_TOPOLOGY=full KL_BASE_PORT=$((13000 + ($$ % 150) * 100))
trap '"$NETSCRIPT" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() { echo "not ok - $1"; "$NETSCRIPT" down "$NET" >/dev/null 2>&1; for f in "$NET"/log/*.log; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
"$NETSCRIPT" up "$NET" >up.log 2>&1 || { cat up.log; bail "deploy/local-network up"; }
pass "deploy/local-network up (full)"
# shellcheck disable=SC1091
. "$NET/network.env"
read -r -a GWS <<<"$KL_GATEWAY_URLS"
read -r -a ADMIN <<<"$KL_CORE_ADMIN_URLS"
ADMIN_TLS=(--cacert "$KL_CA" --cert "$KL_ADMIN_CERT" --key "$KL_ADMIN_KEY")
unset KL_CA KL_ADMIN_CERT KL_ADMIN_KEY
CRED=(--aggr-user "$KL_USER" --aggr-key "$KL_KEY")
BOTH=(-S "${GWS[0]}" -S "${GWS[1]}")
pid_of() { cat "$NET/run/$1.pid"; }
role_of() { curl -sf -m 2 "${ADMIN_TLS[@]}" "${ADMIN[$(($1 - 1))]}/status" 2>/dev/null | grep -o '"role":"[a-z]*"' | head -n 1 | cut -d'"' -f4; }
leader() { for i in 1 2 3; do [ "$(role_of $i)" = leader ] && { echo $i; return; }; done; }
nsigs() { find "$1" -name '*.ksig' 2>/dev/null | wc -l; }
has_sigs() { [ "$(nsigs "$1")" -ge "$2" ]; }
# make_tree DIR DIRS FILES: DIRS folders of FILES small files each, every folder with a same.txt
make_tree() {
  python3 - "$@" <<'EOF'
import os, sys
root, nd, nf = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(nd):
    p = os.path.join(root, "d%03d" % d)
    os.makedirs(p, exist_ok=True)
    for f in range(nf):
        name = "same.txt" if f == 0 else "f%03d.txt" % f
        with open(os.path.join(p, name), "w") as fh:
            fh.write("%s/%s %d\n" % (p, name, d * 1000 + f))
EOF
}
# json_summary FILE: "signed already failed codes" of the --json lines in FILE (python3)
json_summary() {
  python3 - "$1" <<'EOF'
import json, sys
c = {"signed": 0, "already_signed": 0, "failed": 0}
codes = set()
for line in open(sys.argv[1]):
    d = json.loads(line)
    assert isinstance(d["file"], str) and d["status"] in c, d
    if d["status"] == "failed":
        assert isinstance(d["retryable"], bool) and d["error_code"], d
        codes.add(d["error_code"])
    else:
        assert d["signature"].endswith(".ksig") and d["document_hash"].startswith("SHA-256:"), d
    c[d["status"]] += 1
print(c["signed"], c["already_signed"], c["failed"], ",".join(sorted(codes)) or "-")
EOF
}
# stamps DIR: "inode mtime path" of every signature under DIR, sorted
stamps() { find "$1" -name '*.ksig' -printf '%i %T@ %p\n' | sort -k3; }

# ---- 1. a 10,000-file tree with duplicate names, --json, then a rerun ----
make_tree tree 100 100
[ "$(find tree -type f | wc -l)" = 10000 ] || bail "10,000 files made"
timeout 300 "$KL" sign -r tree -o sigs "${BOTH[@]}" "${CRED[@]}" --json >t1.json 2>t1.err
check "10,000 files: exit 0" 0 "$?"
check "10,000 files: the --json lines (python3): signed, already, failed, codes" "10000 0 0 -" "$(json_summary t1.json)"
check "10,000 files: one signature per file under -o, relative paths kept" 10000 "$(nsigs sigs)"
ok=0
for d in d000 d042 d099; do
  "$KL" verify -i "sigs/$d/same.txt.ksig" -f "tree/$d/same.txt" --policy internal >/dev/null 2>&1 && ok=$((ok + 1))
done
check "10,000 files: the three same.txt signatures verify with their own file" 3 "$ok"
"$KL" verify -i sigs/d000/same.txt.ksig -f tree/d001/same.txt --policy internal >/dev/null 2>&1
check "10,000 files: d000/same.txt's signature does not verify d001/same.txt (exit 6)" 6 "$?"
check_has "10,000 files: the summary" "10000 signed, 0 already signed, 0 not signed" "$(cat t1.err)"
stamps sigs >before1.txt
timeout 300 "$KL" sign -r tree -o sigs "${BOTH[@]}" "${CRED[@]}" --json >t1b.json 2>t1b.err
check "rerun: exit 0" 0 "$?"
check "rerun: every file already signed, nothing sent" "0 10000 0 -" "$(json_summary t1b.json)"
stamps sigs >after1.txt
if cmp -s before1.txt after1.txt; then pass "rerun: every signature kept (same inode and mtime)"
else fail "rerun: every signature kept" "same inodes and mtimes" "$(diff before1.txt after1.txt | head -n 2)"; fi
# a signature of another file is reported, not overwritten; the batch goes on
cp sigs/d001/same.txt.ksig sigs/d000/same.txt.ksig
rm sigs/d002/f001.txt.ksig
echo "changed" >>tree/d003/f002.txt
(cd tree && timeout 120 "$KL" sign -i d000/same.txt -i d002/f001.txt -i d003/f002.txt -i missing.txt \
  -o ../sigs "${BOTH[@]}" "${CRED[@]}" --json >../t1c.json 2>../t1c.err)
check "mixed: exit 6 (the first failure: a signature that does not verify)" 6 "$?"
check "mixed: signed, already, failed, codes" "1 0 3 exists_invalid,unreadable" "$(json_summary t1c.json)"
check "mixed: the foreign signature was not replaced" "$(sha256sum <sigs/d001/same.txt.ksig)" "$(sha256sum <sigs/d000/same.txt.ksig)"
"$KL" verify -i sigs/d002/f001.txt.ksig -f tree/d002/f001.txt --policy internal >/dev/null 2>&1
check "mixed: the missing signature was made (DIR/REL.ksig)" 0 "$?"

# ---- 2. resume after kill -9 of the client ----
make_tree tree2 30 100
# small trees, one PDU at a time: the run lasts long enough to be killed in the middle
"$KL" sign -r tree2 "${BOTH[@]}" "${CRED[@]}" --max-lvl 1 --max-in-flight 1 >t2.out 2>t2.err &
CPID=$!
wait_until 60 has_sigs tree2 300 || fail "resume: signatures appear before the kill" ">= 300" "$(nsigs tree2)"
kill -KILL $CPID 2>/dev/null
wait $CPID 2>/dev/null
got=$(nsigs tree2)
if [ "$got" -gt 0 ] && [ "$got" -lt 3000 ]; then pass "resume: the client was killed mid-batch ($got of 3000 signed)"
else fail "resume: killed mid-batch" "between 1 and 2999 signatures" "$got"; fi
stamps tree2 >before2.txt
timeout 300 "$KL" sign -r tree2 "${BOTH[@]}" "${CRED[@]}" --json >t2b.json 2>t2b.err
check "resume: the rerun exits 0" 0 "$?"
check "resume: signed the rest, kept what was there (no half-written signature)" "$((3000 - got)) $got 0 -" "$(json_summary t2b.json)"
stamps tree2 >after2.txt
# every signature there before the rerun is still the same file (inode and mtime)
kept=$(awk 'NR == FNR { a[$3] = $1 " " $2; next } ($3 in a) && a[$3] == $1 " " $2 { n++ } END { print n + 0 }' before2.txt after2.txt)
check "resume: nothing that verified was signed again (same inodes and mtimes)" "$got" "$kept"
check "resume: 3,000 signatures" 3000 "$(nsigs tree2)"

# ---- 3. the core leader killed mid-batch: retries until the new leader serves ----
make_tree tree3 8 50
L=$(leader)
[ -n "$L" ] || bail "a core leader"
"$KL" sign -r tree3 "${BOTH[@]}" "${CRED[@]}" --max-lvl 0 --max-in-flight 1 --retry-for 90s --json >t3.json 2>t3.err &
CPID=$!
wait_until 60 has_sigs tree3 20 || fail "election: signatures before the kill" ">= 20" "$(nsigs tree3)"
kill -KILL "$(pid_of "core$L")"
echo "# killed core$L (leader) with $(nsigs tree3) of 400 signed"
end=$((SECONDS + 150))
while kill -0 $CPID 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.5; done
kill -KILL $CPID 2>/dev/null
wait $CPID
check "election: the client exits 0" 0 "$?"
check "election: all 400 signed within --retry-for" "400 0 0 -" "$(json_summary t3.json)"

# ---- 4. --manifest ----
make_tree tree4 3 10
mkdir -p bag
timeout 60 "$KL" sign --manifest bag/manifest-sha256.txt -r tree4 "${BOTH[@]}" "${CRED[@]}" >t4.out 2>t4.err
check "manifest: exit 0" 0 "$?"
check "manifest: 30 lines" 30 "$(wc -l <bag/manifest-sha256.txt)"
(cd tree4 && sha256sum --quiet -c ../bag/manifest-sha256.txt >/dev/null 2>&1)
check "manifest: sha256sum -c accepts it" 0 "$?"
check "manifest: no signature per file" 0 "$(nsigs tree4)"
"$KL" verify -i bag/manifest-sha256.txt.ksig -f bag/manifest-sha256.txt --policy internal >/dev/null 2>&1
check "manifest: its signature verifies" 0 "$?"
"$KL" verify --manifest bag/manifest-sha256.txt -i bag/manifest-sha256.txt.ksig --policy internal \
  --base tree4 d001/same.txt >t4v.out 2>&1
check "verify --manifest: a file in the signed manifest" 0 "$?"
echo tampered >>tree4/d002/f003.txt
"$KL" verify --manifest bag/manifest-sha256.txt -i bag/manifest-sha256.txt.ksig --policy internal \
  --base tree4 d002/f003.txt >t4w.out 2>&1
check "verify --manifest: a changed file fails (exit 6)" 6 "$?"
timeout 60 "$KL" sign --manifest bag/manifest-sha256.txt -r tree4 "${BOTH[@]}" "${CRED[@]}" >t4b.out 2>t4b.err
check "manifest: a changed tree and the old signature: reported, not replaced (exit 6)" 6 "$?"

# ---- 5. the key from a file and from the environment, --ha all ----
echo k5 >k5.txt
printf '%s\n' "$KL_KEY" >key.txt
chmod 600 key.txt
timeout 60 "$KL" sign -i k5.txt "${BOTH[@]}" --aggr-user "$KL_USER" --aggr-key-file key.txt >t5.out 2>&1
check "--aggr-key-file: exit 0" 0 "$?"
echo k6 >k6.txt
KL_AGGR_KEY="$KL_KEY" timeout 60 "$KL" sign -i k6.txt "${BOTH[@]}" --aggr-user "$KL_USER" --ha all >t6.out 2>&1
check "\$KL_AGGR_KEY and --ha all: exit 0" 0 "$?"
echo k7 >k7.txt
KL_AGGR_KEY=wrong timeout 60 "$KL" sign -i k7.txt "${BOTH[@]}" --aggr-user "$KL_USER" --json >t7.json 2>/dev/null
check "a wrong key: exit 14, no retries" 14 "$?"
check "a wrong key: error code auth, not retryable" "0 0 1 auth" "$(json_summary t7.json)"

# ---- 6. failover: gateway 1 killed mid-batch, then down from the start ----
make_tree tree6 8 50
"$KL" sign -r tree6 "${BOTH[@]}" "${CRED[@]}" --max-lvl 0 --max-in-flight 1 --json >t6.json 2>t6.err &
CPID=$!
wait_until 60 has_sigs tree6 20 || fail "failover: signatures before the kill" ">= 20" "$(nsigs tree6)"
kill -KILL "$(pid_of gateway1)"
echo "# killed gateway1 with $(nsigs tree6) of 400 signed"
end=$((SECONDS + 120))
while kill -0 $CPID 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.5; done
kill -KILL $CPID 2>/dev/null
wait $CPID
check "failover: the client exits 0" 0 "$?"
check "failover: 0 files lost" "400 0 0 -" "$(json_summary t6.json)"
check "failover: 400 signatures" 400 "$(nsigs tree6)"
echo g >g.txt
timeout 60 "$KL" sign -i g.txt -S "${GWS[0]}" -S "${GWS[1]}" "${CRED[@]}" --retry-for 0 >t8.out 2>&1
check "failover: the first -S down, the second signs" 0 "$?"
echo g2 >g2.txt
timeout 60 "$KL" sign -i g2.txt -S "${GWS[0]}" "${CRED[@]}" --retry-for 2s --json >t9.json 2>/dev/null
check "the only gateway down: exit 5 after --retry-for" 5 "$?"
check "the only gateway down: error code network, retryable" "0 0 1 network" "$(json_summary t9.json)"
grep -q '"retryable":true' t9.json
check "the only gateway down: retryable true" 0 "$?"

[ $SECONDS -lt $DEADLINE ] || fail "within the deadline" "< 500 s" "$SECONDS s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
