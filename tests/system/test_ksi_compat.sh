#!/usr/bin/env bash
# What KSI clients' own test suites (libksi, ksi-tool) send, against a whole network
# (deploy/local-network: gateway -> aggregator -> 3 core nodes, an extender), over HTTP and
# ksi+tcp, with ksi_probe (a test tool that is not part of the product):
#   - a request level above 255 (0xFFFFFF, a 9-byte integer) is that request's status 0x104, not
#     a malformed PDU; the other request of the same PDU is signed;
#   - the configuration announces a level KSI clients can size a local tree for (20), no parent
#     addresses, and a number of requests per PDU whose answers fit one response: a PDU of that
#     many is signed in full, one more is refused before it enters a round;
#   - a PDU of the other service gets HTTP 400 with an error PDU (ksi+tcp: the error PDU);
#   - error texts read as the KSI status names, not doubled;
#   - one port serves HTTP and ksi+tcp when http_listen and tcp_listen are the same address;
#   - the extender likewise: per-request statuses, HTTP 400 for the wrong service, what fits.
# Usage: test_ksi_compat.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NETSCRIPT="$HERE/../../deploy/local-network"
. "$HERE/harness.sh" ksi-compat
KL="$BUILD/cli/keyless"
PROBE="$BUILD/tests/system/ksi_probe"
NET="$TMP/net"
export KL_BUILD="$BUILD" KL_BASE_PORT=$((12000 + ($$ % 150) * 100 + 50 * ($$ % 2)))
trap '"$NETSCRIPT" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() { echo "not ok - $1"; "$NETSCRIPT" down "$NET" >/dev/null 2>&1; for f in "$NET"/log/*.log; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
"$NETSCRIPT" up "$NET" >up.log 2>&1 || { cat up.log; bail "deploy/local-network up"; }
pass "deploy/local-network up"
# shellcheck disable=SC1091
. "$NET/network.env"
read -r -a GWS <<<"$KL_GATEWAY_URLS"
read -r -a GWT <<<"$KL_GATEWAY_TCP_URLS"
probe() { OUT=$("$PROBE" "$1" "$KL_USER" "$KL_KEY" "${@:2}" 2>&1); }
no_id() { printf '%s' "$1" | sed -E 's/ ok=[0-9]+//'; }

for u in "${GWS[0]}" "${GWT[0]}"; do
  tr=${u%%:*}
  hp=""; [ "$tr" = http ] && hp="http=200 "
  probe "$u" rawlevel ffffff
  check "$tr, level 0xFFFFFF: 0x104 for that request, the other one signed" \
    "${hp}id=1 status=0x0104 id=2 status=0x0000 hmac=ok" "$OUT"
  probe "$u" rawlevel ffffffffffffffffff
  check "$tr, a 9-byte level: 0x104 for that request" "${hp}id=1 status=0x0104 id=2 status=0x0000 hmac=ok" "$OUT"
  probe "$u" rawlevel 0100
  check "$tr, level 256: 0x104 for that request" "${hp}id=1 status=0x0104 id=2 status=0x0000 hmac=ok" "$OUT"
  probe "$u" rawlevel 0005
  check "$tr, a level with a leading zero byte: 0x101 for that request" \
    "${hp}id=1 status=0x0101 id=2 status=0x0000 hmac=ok" "$OUT"

  probe "$u" config
  check_has "$tr, configuration: max level 20, as KSI clients can use" "max_level=20 " "$OUT"
  check_has "$tr, configuration: no parent addresses (announce_parents = no)" "parents=0 " "$OUT"
  MAXREQ=$(printf '%s' "$OUT" | sed -n 's/.*max_requests=\([0-9]*\).*/\1/p')
  if [ -n "$MAXREQ" ] && [ "$MAXREQ" -ge 4 ] && [ "$MAXREQ" -lt 64 ]; then
    pass "$tr, configuration: $MAXREQ requests per PDU (fewer than the 64 configured: what fits)"
  else
    fail "$tr, configuration: requests per PDU" "4..63" "${MAXREQ:-none} ($OUT)"
  fi
  probe "$u" level 20
  check "$tr, a request at the announced level 20 is signed" "${hp}id=1 status=0x0000 ok=1 hmac=ok" "$OUT"
  probe "$u" many "${MAXREQ:-1}"
  check "$tr, $MAXREQ requests in one PDU: every one signed" "${hp}ok=${MAXREQ:-1} hmac=ok" "$OUT"
  probe "$u" many $((${MAXREQ:-1} + 1))
  check_has "$tr, $((${MAXREQ:-1} + 1)) requests in one PDU: refused whole (0x101)" "error=0x0101" "$OUT"
  case "$OUT" in *status=0x0000*) fail "$tr, refused PDU holds no signature" "none" "$OUT" ;; esac

  probe "$u" ext
  if [ "$tr" = http ]; then
    check "http, an extension request to a gateway: HTTP 400 with the error PDU" "http=400 error=0x0103 hmac=none" "$OUT"
  else
    check "tcp, an extension request to a gateway: the error PDU" "error=0x0103 hmac=none" "$OUT"
  fi
done

# One port for both schemes (libksi names one host:port per service): a second gateway whose
# http_listen and tcp_listen are the same address, next to the network's gateway 1.
EXT_PORT=${KL_EXTENDER_URL##*:} && EXT_PORT=${EXT_PORT%/}
SP=$((EXT_PORT + 16))
sed -e "s/^http_listen = .*/http_listen = 127.0.0.1:$SP/" -e "s/^tcp_listen = .*/tcp_listen = 127.0.0.1:$SP/" \
  -e "s/^admin_listen = .*/admin_listen = 127.0.0.1:$((SP + 1))/" -e "s/^https_listen = .*/https_listen =/" \
  -e "s/^name = .*/name = gateway-shared/" "$NET/conf/gateway1.conf" >shared.conf
"$BUILD/gateway/keyless-gateway" -c shared.conf >shared.log 2>&1 &
SHARED=$!
PIDS+=("$SHARED")
for _ in $(seq 1 100); do
  [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((SP + 1))/healthz")" = 200 ] && break
  sleep 0.1
done
probe "http://127.0.0.1:$SP/" level 0
check "shared port: HTTP is signed" "http=200 id=1 status=0x0000 ok=1 hmac=ok" "$OUT"
probe "ksi+tcp://127.0.0.1:$SP" level 0
check "shared port: ksi+tcp is signed" "id=1 status=0x0000 ok=1 hmac=ok" "$OUT"
printf 'shared port\n' >shared.txt
"$KL" sign -i shared.txt -S "ksi+tcp://127.0.0.1:$SP" --aggr-user "$KL_USER" --aggr-key "$KL_KEY" >/dev/null 2>&1 &&
  "$KL" sign -i shared.txt -o shared-http.ksig -S "http://127.0.0.1:$SP/" --aggr-user "$KL_USER" --aggr-key "$KL_KEY" >/dev/null 2>&1
check "shared port: keyless sign over ksi+tcp and over HTTP" 0 "$?"
check_has "shared port: the gateway logs one port for both" "http_port=$SP https_port=0 tcp_port=$SP" "$(grep event=started shared.log)"
kill -TERM "$SHARED" && wait "$SHARED"
check "shared port: the gateway stops cleanly on SIGTERM" 0 "$?"

# The configuration a KSI client sizes its local tree from: ksi-tool's --apply-remote-conf
# makes 2^max_level leaves. keyless sign with many files and the gateway's level signs them all.
for i in 1 2 3 4 5; do printf 'doc %s\n' "$i" >"d$i.txt"; done
"$KL" sign -S "${GWS[0]}" --aggr-user "$KL_USER" --aggr-key "$KL_KEY" -i d1.txt -i d2.txt -i d3.txt -i d4.txt \
  -i d5.txt --max-lvl 20 >sign.out 2>&1
check "keyless sign of 5 files with a local tree of the announced level" 0 "$?"
n=0
for i in 1 2 3 4 5; do
  "$KL" verify -i "d$i.txt.ksig" -f "d$i.txt" --policy internal >/dev/null 2>&1 && n=$((n + 1))
done
check "every one of the 5 signatures verifies" 5 "$n"

# The extender: a bad field refuses its request, not the PDU; the wrong service is HTTP 400;
# the configuration announces what fits one response.
for u in "$KL_EXTENDER_URL" "$KL_EXTENDER_TCP_URL"; do
  tr=${u%%:*}
  hp=""; [ "$tr" = http ] && hp="http=200 "
  probe "$u" rawext 0005
  check "extender $tr, an aggregation time with a leading zero byte: 0x101 for that request, the other extended" \
    "${hp}id=1 status=0x0101 id=2 status=0x0000 hmac=ok" "$OUT"
  probe "$u" rawext 010203040506070809
  check "extender $tr, a 9-byte aggregation time: 0x101 for that request" \
    "${hp}id=1 status=0x0101 id=2 status=0x0000 hmac=ok" "$OUT"
  probe "$u" extconfig
  XMAX=$(printf '%s' "$OUT" | sed -n 's/.*max_requests=\([0-9]*\).*/\1/p')
  if [ -n "$XMAX" ] && [ "$XMAX" -ge 1 ] && [ "$XMAX" -le 14 ]; then pass "extender $tr: $XMAX requests per PDU (what fits)"
  else fail "extender $tr: requests per PDU" "1..14" "${XMAX:-none} ($OUT)"; fi
  probe "$u" aggr
  if [ "$tr" = http ]; then
    check "http, an aggregation request to the extender: HTTP 400 with the error PDU" "http=400 error=0x0103 hmac=none" "$OUT"
  else
    check "tcp, an aggregation request to the extender: the error PDU" "error=0x0103 hmac=none" "$OUT"
  fi
done
OUT=$("$KL" verify -i d1.txt.ksig --policy calendar -X "$KL_EXTENDER_URL" --ext-user "$KL_USER" --ext-key wrong 2>&1)
check_has "extender, a wrong key: the KSI status name" "The request could not be authenticated: unknown login or wrong HMAC key" "$OUT"

# Error texts: the KSI status name, then the server's detail, never the name twice.
OUT=$("$KL" sign -i d1.txt -o wrong.ksig -S "${GWS[0]}" --aggr-user "$KL_USER" --aggr-key wrong 2>&1)
check_has "a wrong key: the KSI status name" "The request could not be authenticated: unknown login or wrong HMAC key" "$OUT"
case "$OUT" in
  *"authenticated: The request could not be authenticated"*) fail "the status name is not doubled" "once" "$OUT" ;;
  *) pass "the status name is not doubled" ;;
esac

echo "# $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
