#!/usr/bin/env bash
# System test of the tier links (issue 17, 15): gateway -> aggregator -> core on loopback, mutual
# TLS from `keyless devpki`, configurations from deploy/*.conf with short idle timeouts
# (1 s on the core's internal port and the aggregator's children's port).
#
#   1. The network comes up with parents given by name: the aggregator's parent is
#      localhost:PORT, the gateway's is this host's name when it resolves to loopback (else
#      localhost), and a signature made through the gateway verifies.
#   2. Idle for 3.5 s (more than 3 idle timeouts): no parent_down or parent_silent in any log,
#      keyless_tier_parent_up stays 1 on the gateway and the aggregator (sampled), no link
#      closed for silence.
#   3. The aggregator stopped with SIGSTOP (a silent peer: its kernel still accepts): within a
#      bound the gateway marks it down (parent_up 0, parent_silent logged) and its /healthz is
#      red with a JSON reason; SIGCONT: green again within a bound and a signature succeeds.
#   4. The core stopped with SIGSTOP: the aggregator marks it down and goes red, and its Pongs
#      say so, so the gateway goes red too ("not ready"); SIGCONT: both green, a signature works.
#   5. SIGTERM: every daemon exits 0.
#
# usage: test_links.sh KEYLESS_CORE KEYLESS_AGGREGATOR KEYLESS_GATEWAY KEYLESS
# Prints "ok - NAME" / "not ok - NAME: expected X got Y", then "N passed, M failed"; the exit
# status is non-zero if a check failed. Every wait is a bounded poll. Logs of a failed run are
# kept in ${TMPDIR:-/tmp}/keyless-links-logs. Needs bash, curl and GNU coreutils.
set -u

if [ $# -ne 4 ]; then
  echo "usage: $0 KEYLESS_CORE KEYLESS_AGGREGATOR KEYLESS_GATEWAY KEYLESS" >&2
  exit 2
fi
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
CORE=$(abs "$1") AGG=$(abs "$2") GW=$(abs "$3") KL=$(abs "$4")
for b in "$CORE" "$AGG" "$GW" "$KL"; do
  [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }
done
DEPLOY="$(dirname "$(abs "$0")")/../../deploy"
command -v curl >/dev/null || { echo "$0: curl is needed" >&2; exit 2; }

. "$(dirname "$0")/harness.sh" links
finish() {
  for p in "${PID[@]}"; do kill -CONT "$p" 2>/dev/null; done
  [ "$FAILED" -eq 0 ] || keep_logs "$TMP"/*.conf
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
  exit
}
# (bail, start, logged, start_core, aggregator_conf and gateway_conf: harness.sh)
# parent_up ADMIN_PORT: the sum of keyless_tier_parent_up over its parents ("" when unreachable).
parent_up() {
  curl -s -m 2 "http://127.0.0.1:$1/metrics" | awk '/^keyless_tier_parent_up[{]/ { s += $NF; f = 1 } END { if (f) print s }'
}
silences() {
  curl -s -m 2 "http://127.0.0.1:$1/metrics" |
    awk '/^keyless_tier_parent_silences_total[{]/ { s += $NF } END { print s + 0 }'
}
healthz() { curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/healthz"; }
# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds; the elapsed ms in WAITED.
wait_for() {
  local t0 n=$(($1 * 10)) i
  t0=$(date +%s%3N)
  for ((i = 0; i < n; i++)); do
    if "${@:2}"; then WAITED=$(($(date +%s%3N) - t0)); return 0; fi
    sleep 0.1
  done
  WAITED=$(($(date +%s%3N) - t0))
  return 1
}

# ---------------------------------------------------------------- 1. the network
EMAIL=links@keyless.invalid
run "$KL" devpki -o pki --email "$EMAIL" --nodes core:1,aggregator:agg1,gateway:gw1
[ "$RC" -eq 0 ] || bail "devpki: $(short "$OUT")"
start_core "idle_timeout = 1s"

aggregator_conf agg1 -e "s#^parent1 = .*#parent1 = localhost:$CORE_INT#" \
  -e 's#^idle_timeout = .*#idle_timeout = 1s#' -e 's#^heartbeat_interval = .*#heartbeat_interval = 200ms#' \
  -e 's#^heartbeat_timeout = .*#heartbeat_timeout = 1500ms#' >agg.conf
check "agg.conf: the parent by name and a 1 s idle timeout" 2 \
  "$(grep -cE "^(parent1 = localhost:$CORE_INT|idle_timeout = 1s)\$" agg.conf)"
start agg "$AGG" agg.conf || { cat agg.log; bail "keyless-aggregator started"; }
A_PORT=$(logged agg port) A_ADM=$(logged agg admin_port)

HOST=localhost
if [ "$(getent ahostsv4 "$(hostname)" 2>/dev/null | awk 'NR == 1 { print $1 }')" = 127.0.0.1 ]; then HOST=$(hostname); fi
echo "# the gateway's parent: $HOST:$A_PORT"
printf 'alice:alice-key\n' >users
chmod 600 users
gateway_conf gw1 "$HOST:$A_PORT" \
  -e 's#^heartbeat_interval = .*#heartbeat_interval = 200ms#' -e 's#^heartbeat_timeout = .*#heartbeat_timeout = 1s#' \
  -e 's#^unhealthy_after = .*#unhealthy_after = 3s#' >gw.conf
check "gw.conf: the parent and the heartbeat keys" 4 \
  "$(grep -cE "^(parent1 = $HOST:$A_PORT|heartbeat_interval = 200ms|heartbeat_timeout = 1s|unhealthy_after = 3s)\$" gw.conf)"
run "$GW" -c gw.conf --check-config
check "gateway --check-config accepts the parent by name" 0 "$RC"
start gw "$GW" gw.conf || { cat gw.log; bail "keyless-gateway started"; }
G_HTTP=$(logged gw http_port) G_ADM=$(logged gw admin_port)
GWURL="http://127.0.0.1:$G_HTTP/"
ALICE=(--aggr-user alice --aggr-key alice-key)

is_up() { [ "$(parent_up "$1")" = 1 ]; }
wait_for 10 is_up "$A_ADM" || bail "the aggregator's parent (localhost:$CORE_INT) is up"
wait_for 10 is_up "$G_ADM" || bail "the gateway's parent ($HOST:$A_PORT) is up"
pass "parents by name are up: aggregator -> localhost:$CORE_INT, gateway -> $HOST:$A_PORT"

sign_ok() { # sign_ok N: a document signed through the gateway verifies (internal policy)
  printf 'links document %s\n' "$1" >"doc$1.txt"
  "$KL" sign -i "doc$1.txt" -S "$GWURL" "${ALICE[@]}" >/dev/null 2>&1 &&
    "$KL" verify -i "doc$1.txt.ksig" -f "doc$1.txt" --policy internal >/dev/null 2>&1
}
run sign_ok 1
check "a signature through gateway -> aggregator -> core verifies" 0 "$RC"

# ---------------------------------------------------------------- 2. idle links stay up
MIN_G=1 MIN_A=1
for _ in $(seq 1 14); do # 3.5 s: more than three idle timeouts of 1 s
  sleep 0.25
  g=$(parent_up "$G_ADM") a=$(parent_up "$A_ADM")
  [ "$g" = 1 ] || MIN_G=$g
  [ "$a" = 1 ] || MIN_A=$a
done
check "idle 3.5 s: the gateway's parent_up stayed 1" 1 "$MIN_G"
check "idle 3.5 s: the aggregator's parent_up stayed 1" 1 "$MIN_A"
check "idle 3.5 s: no parent_down or parent_silent in the logs" 0 \
  "$(cat gw.log agg.log | grep -cE 'event=(parent_down|parent_silent)')"
check "idle 3.5 s: no link_down in the logs (nothing closed the links)" 0 "$(cat gw.log agg.log | grep -c 'event=link_down')"
check "idle 3.5 s: no link closed for silence" "0 0" "$(silences "$G_ADM") $(silences "$A_ADM")"

# ---------------------------------------------------------------- 3. a silent aggregator
kill -STOP "${PID[agg]}"
is_down() { [ "$(parent_up "$1")" = 0 ]; }
wait_for 6 is_down "$G_ADM"
check "aggregator stopped: the gateway's parent_up is 0 within 6 s" 0 "$(parent_up "$G_ADM")"
echo "# the gateway marked the stopped aggregator down in $WAITED ms (heartbeat_timeout 1 s)"
is_red() { [ "$(healthz "$1")" = 503 ]; }
wait_for 6 is_red "$G_ADM"
check "aggregator stopped: the gateway's /healthz is 503" 503 "$(healthz "$G_ADM")"
check_has "the gateway's /healthz says why" '"reason":"no parent is up' "$(curl -s -m 2 "http://127.0.0.1:$G_ADM/healthz")"
check_has "the gateway logged parent_silent" "event=parent_silent tier=gateway" "$(cat gw.log)"
kill -CONT "${PID[agg]}"
is_green() { [ "$(healthz "$1")" = 200 ]; }
wait_for 5 is_green "$G_ADM"
check "aggregator resumed: the gateway's /healthz is 200 again within 5 s" 200 "$(healthz "$G_ADM")"
echo "# the gateway was green again $WAITED ms after SIGCONT"
check "aggregator resumed: parent_up 1" 1 "$(parent_up "$G_ADM")"
run sign_ok 2
check "aggregator resumed: a signature succeeds" 0 "$RC"

# ---------------------------------------------------------------- 4. a silent core
kill -STOP "${PID[core]}"
wait_for 8 is_red "$A_ADM"
check "core stopped: the aggregator's /healthz is 503 within 8 s" 503 "$(healthz "$A_ADM")"
wait_for 5 is_red "$G_ADM"
check "core stopped: the gateway's /healthz is 503 too (the aggregator's Pong says not ready)" 503 "$(healthz "$G_ADM")"
check_has "the gateway's reason names the not-ready aggregator" "not ready" "$(curl -s -m 2 "http://127.0.0.1:$G_ADM/healthz")"
kill -CONT "${PID[core]}"
wait_for 8 is_green "$A_ADM"
check "core resumed: the aggregator's /healthz is 200 within 8 s" 200 "$(healthz "$A_ADM")"
wait_for 5 is_green "$G_ADM"
check "core resumed: the gateway's /healthz is 200 within 5 s more" 200 "$(healthz "$G_ADM")"
ok=1
wait_for 10 sign_ok 3 && ok=0
check "core resumed: a signature succeeds" 0 "$ok"

# ---------------------------------------------------------------- 5. stop
for n in gw agg core; do
  kill -TERM "${PID[$n]}"
  wait "${PID[$n]}"
  check "$n exits 0 on SIGTERM" 0 "$?"
done
finish
