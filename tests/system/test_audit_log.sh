#!/usr/bin/env bash
# The core's signed audit log (docs/operations.md, "The audit log"): a local network whose cores
# sign their logs through gateway 1 (KL_AUDIT_LOG=1); a membership change by the operator's admin
# certificate and a SIGHUP are recorded on the leader, every record gets its own signature, and
# `keyless audit-log verify` passes (internal and key-based). Then, on copies of the log: a record
# altered, removed, two swapped, the last one removed, the file cut inside a record: each is
# found, naming the right seq. One record verifies alone (--record), and exported it verifies
# with plain `keyless verify` without the rest of the log.
# Usage: test_audit_log.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NETSCRIPT="$HERE/../../deploy/local-network"
. "$HERE/harness.sh" audit_log
KL="$BUILD/cli/keyless"
NET="$TMP/net"
export KL_BUILD="$BUILD" KL_BASE_PORT=$((12000 + ($$ % 150) * 100)) KL_AUDIT_LOG=1
trap '"$NETSCRIPT" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() { echo "not ok - $1"; "$NETSCRIPT" down "$NET" >/dev/null 2>&1; for f in "$NET"/log/core*.log; do echo "== $f"; tail -n 15 "$f"; done; exit 1; }
"$NETSCRIPT" up "$NET" >up.log 2>&1 || { cat up.log; bail "deploy/local-network up"; }
pass "deploy/local-network up with KL_AUDIT_LOG=1"
# shellcheck disable=SC1091
. "$NET/network.env"
read -r -a ADMIN <<<"$KL_CORE_ADMIN_URLS"
read -r -a METRICS <<<"$KL_CORE_METRICS_URLS"
NODES=$(echo "$KL_CORE_ADMIN_URLS" | tr ' ' ',')
TRUST=(-P "$NET/publications.bin" -V "$KL_TRUST_ANCHOR" --cnstr "$KL_CNSTR")
grep -q '^\[audit\]' "$NET/conf/core1.conf" || bail "core1.conf has an [audit] section"
role() { "$KL" core --json status "${ADMIN[$(($1 - 1))]}" 2>/dev/null | grep -o '"role":"[a-z]*"' | head -n 1 | cut -d'"' -f4; }
leader() { for i in 1 2 3; do [ "$(role $i)" = leader ] && { echo $i; return; }; done; }
L=""
for _ in $(seq 1 30); do L=$(leader); [ -n "$L" ] && break; sleep 1; done
[ -n "$L" ] || bail "a leader"
R=$((L % 3 + 1)) # a follower to remove
DIR="$NET/data/core$L/audit"

# ---- events: a membership change by the operator, a SIGHUP ----
"$KL" core remove "$NODES" "$R" --timeout 20000 >remove.out 2>&1
rc=$?
check "keyless core remove $R (the operator's admin certificate)" 0 "$rc"
kill -HUP "$(cat "$NET/run/core$L.pid")"
grep -aq membership_remove "$DIR/audit.log"
check "the leader's log holds the membership_remove" 0 "$?"

# ---- every record signed (bounded: 60 s) ----
ok=1
for _ in $(seq 1 60); do
  grep -aq config_reload "$DIR/audit.log" && "$KL" audit-log verify "$DIR" --all-signed >verify.out 2>&1 && { ok=0; break; }
  sleep 1
done
check "every record of the leader's log signed and verified (--all-signed)" 0 "$ok"
grep -aq key_switch "$DIR/audit.log"
check "a SIGHUP with the same keys records no key_switch" 1 "$?"
cat verify.out
cp -r "$DIR" snap # what the tampering below starts from, whatever the node appends later
"$KL" audit-log verify snap --all-signed >snap.out 2>&1
check "a copy of the log verifies" 0 "$?"
N=$("$KL" audit-log verify snap --json | sed -n 's/.*"records":\([0-9]*\).*/\1/p')
[ "${N:-0}" -ge 4 ] && pass "the leader's log has $N records" || fail "records in the leader's log" ">= 4" "${N:-none}"
signed=$(curl -sf -m 2 "${METRICS[$((L - 1))]}metrics" | awk '$1 == "keyless_core_audit_signed_total" {print $2}')
[ "${signed:-0}" -ge "$N" ] 2>/dev/null && pass "keyless_core_audit_signed_total $signed" || fail "keyless_core_audit_signed_total" ">= $N" "${signed:-none}"
"$KL" audit-log verify "$DIR" "${TRUST[@]}" --policy key >key.out 2>&1
check "key-based verification of every record (-P -V --cnstr)" 0 "$?"
"$KL" audit-log verify "$NET/data/core$R/audit/audit.log" >other.out 2>&1
check "the removed member's log verifies too" 0 "$?"

# ---- one record alone ----
out=$("$KL" audit-log verify "$DIR" --record 2 --export rec2 2>&1)
rc=$?
check "--record 2 verifies alone" 0 "$rc"
check_has "  ... and prints it" "seq 2 " "$out"
"$KL" verify -i rec2.ksig -f rec2 "${TRUST[@]}" >rec2.out 2>&1
check "the exported record verifies with keyless verify, key-based, without the log" 0 "$?"
out=$("$KL" audit-log verify "$DIR" --record 999 2>&1)
rc=$?
check "--record 999: no such record (exit 6)" 6 "$rc"

# ---- tampering, on copies ----
# python: split the log into records (TLV headers) and rewrite it: op alter|drop|swap|cut|droplast
tamper() { # OP SEQ SRC DST
  python3 - "$@" <<'PY'
import sys
op, seq, src, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
b = open(src, 'rb').read()
magic, p, recs = b[:8], 8, []
while p < len(b):
    h = 4 if b[p] & 0x80 else 2
    n = (b[p + 2] << 8 | b[p + 3]) if h == 4 else b[p + 1]
    recs.append(bytearray(b[p:p + h + n])); p += h + n
i = seq - 1
if op == 'alter':
    r = recs[i]; k = r.find(b'node/')
    if k < 0: k = r.find(b'admin/')
    r[k] ^= 0x20  # one letter's case
elif op == 'drop': del recs[i]
elif op == 'swap': recs[i], recs[i + 1] = recs[i + 1], recs[i]
elif op == 'droplast': del recs[-1]
elif op == 'cut': recs[-1] = recs[-1][:len(recs[-1]) // 2]
open(dst, 'wb').write(magic + b''.join(bytes(r) for r in recs))
PY
}
detect() { # NAME OP SEQ EXPECT_SEQ NEEDLE
  local d="t-$2"
  rm -rf "$d" && mkdir "$d" && cp snap/audit.ksig "$d/" && tamper "$2" "$3" snap/audit.log "$d/audit.log"
  out=$("$KL" audit-log verify "$d" 2>&1)
  rc=$?
  [ $rc -ne 0 ] && pass "$1: detected (exit $rc)" || fail "$1: detected" "a non-zero exit" "0: $(short "$out")"
  check_has "  ... naming seq $4" "seq $4" "$out"
  check_has "  ... saying how" "$5" "$out"
}
detect "a byte of record 2 altered" alter 2 2 "altered"
detect "record 2 removed" drop 2 2 "missing (removed)"
detect "records 2 and 3 swapped" swap 2 2 "out of order"
detect "the last record removed" droplast "$N" "$N" "missing"
detect "the file cut inside the last record" cut "$N" "$N" "torn tail"
out=$("$KL" audit-log verify "t-alter" --json 2>&1)
check_has "--json names the bad seq" '"bad_seq":2' "$out"

echo "# $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
