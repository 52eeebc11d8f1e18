#!/usr/bin/env bash
# The gateway's JSON API (gateway/gw_json.c, docs/client.md "JSON over HTTP") on a small
# deploy/local-network: POST /v1/sign over https with curl -u LOGIN:KEY and {"hash": "ALG:HEX"}
# gives a signature that `keyless verify` accepts for the document; wrong credentials get 401
# with WWW-Authenticate; bad bodies 400 with a reason; the API is not served on plain http by
# default ([clients] json_api = https), and is with json_api = any.
# Usage: test_json_api.sh BUILD_DIR SOURCE_DIR
set -u
BUILD=$(cd "$1" && pwd)
SRC="$2"
. "$(dirname "$0")/harness.sh" json-api
KL="$BUILD/cli/keyless"
LN="$SRC/deploy/local-network"
NET="$TMP/net"
unset KSI_CONF KL_AGGR_KEY KSI_AGGR_KEY KL_HOSTS
export KL_BUILD="$BUILD" KL_TOPOLOGY=small KL_BASE_PORT=$((36000 + ($$ % 60) * 100))
trap '"$LN" down "$NET" >/dev/null 2>&1; cleanup' EXIT
timeout 120 "$LN" up "$NET" >up.log 2>&1 || { tail -n 20 up.log; fail "local-network up" ok failed; echo "$PASSED passed, $FAILED failed"; exit 1; }
. "$NET/network.env"
HTTPS="${KL_GATEWAY_HTTPS_URLS%% *}v1/sign"
HTTP="${KL_GATEWAY_URLS%% *}v1/sign"
printf 'an archived document\n' >doc.txt
H=$(sha256sum doc.txt | cut -c1-64)
post() { # URL CREDENTIALS BODY: prints the status code, the body in out.json, headers in out.h
  curl -s -m 30 --cacert "$KL_CA" -u "$2" -D out.h -o out.json -w '%{http_code}' -d "$3" "$1"
}

code=$(post "$HTTPS" "$KL_USER:$KL_KEY" "{\"hash\": \"SHA-256:$H\"}")
check "POST /v1/sign over https: 200" 200 "$code"
check_has "  ... application/json" "application/json" "$(cat out.h)"
check_has "  ... names the hash" "\"hash\":\"SHA-256:$H\"" "$(cat out.json)"
sed -n 's/.*"signature":"\([^"]*\)".*/\1/p' out.json | base64 -d >doc.txt.ksig 2>/dev/null
"$KL" verify -i doc.txt.ksig -f doc.txt --policy internal >verify.log 2>&1
check "the signature verifies for the document (keyless verify)" 0 "$?"
t=$(sed -n 's/.*"signing_time":\([0-9]*\).*/\1/p' out.json)
check "signing_time is the signature's" "$t" "$("$KL" inspect -i doc.txt.ksig --json | sed -n 's/.*"signing_time":\([0-9]*\).*/\1/p')"
echo "another" >other.txt
"$KL" verify -i doc.txt.ksig -f other.txt --policy internal >/dev/null 2>&1
check "  ... and not for another document (exit 6)" 6 "$?"

code=$(post "$HTTPS" "$KL_USER:wrong" "{\"hash\": \"SHA-256:$H\"}")
check "a wrong key: 401" 401 "$code"
check_has "  ... with WWW-Authenticate" "WWW-Authenticate: Basic" "$(cat out.h)"
check_has "  ... and a JSON reason, not retryable" '"retryable":false' "$(cat out.json)"
code=$(curl -s -m 30 --cacert "$KL_CA" -o out.json -w '%{http_code}' -d "{\"hash\": \"SHA-256:$H\"}" "$HTTPS")
check "no credentials: 401" 401 "$code"
code=$(post "$HTTPS" "nobody:$KL_KEY" "{\"hash\": \"SHA-256:$H\"}")
check "an unknown login: 401" 401 "$code"

code=$(post "$HTTPS" "$KL_USER:$KL_KEY" '{"hash": "SHA-256:abcd"}')
check "a hash of the wrong length: 400" 400 "$code"
check_has "  ... saying so" '"code":"bad_request"' "$(cat out.json)"
code=$(post "$HTTPS" "$KL_USER:$KL_KEY" "{\"hash\": \"SHA-256:$H\", \"level\": \"3\"}")
check "an unknown member: 400" 400 "$code"
check_has "  ... named" 'unknown member' "$(cat out.json)"
code=$(post "$HTTPS" "$KL_USER:$KL_KEY" "[\"SHA-256:$H\"]")
check "not an object: 400" 400 "$code"
check_has "  ... with the byte offset" 'at byte 0' "$(cat out.json)"
code=$(post "$HTTPS" "$KL_USER:$KL_KEY" '{}')
check "no hash: 400" 400 "$code"

code=$(post "$HTTP" "$KL_USER:$KL_KEY" "{\"hash\": \"SHA-256:$H\"}")
check "plain http (json_api = https): not served (the KSI port's 400)" 400 "$code"
check "  ... no signature in the answer" "" "$(grep -o '"signature"' out.json)"

# json_api = any: served on plain http too (development); restart the gateway with it.
"$LN" down "$NET" >/dev/null 2>&1
printf '[clients]\njson_api = any\n' >>"$NET/conf/gateway1.conf"
timeout 120 "$LN" up "$NET" >up2.log 2>&1
check "the gateway restarts with json_api = any" 0 "$?"
code=$(post "$HTTP" "$KL_USER:$KL_KEY" "{\"hash\": \"SHA-256:$H\"}")
check "json_api = any: plain http served (200)" 200 "$code"
sed -i 's/^json_api = any$/json_api = sometimes/' "$NET/conf/gateway1.conf"
out=$("$KL_BIN/gateway/keyless-gateway" -c "$NET/conf/gateway1.conf" --check-config 2>&1)
check "json_api = sometimes: a configuration error (exit 2)" 2 "$?"
check_has "  ... naming the key" "json_api" "$out"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
