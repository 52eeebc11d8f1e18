#!/usr/bin/env bash
# System test of calendar auditing from outside (issue 14): a calendar made with `keyless
# calendar`, a real keyless-extender on it, two publications with `keyless publish`, and
#   1. the extender's /calendar endpoints: cache headers, 400 with a reason for bad parameters,
#      404 for a second not committed yet;
#   2. `keyless audit -X URL -P FILE`: exit 0, with --json, --rehash and --state (monitor mode:
#      the state file moves to the newest head);
#   3. a forked calendar (the same genesis and rounds up to between the publications, edited
#      offline with `keyless calendar` to differ after) served by a second extender: audit with the
#      publications file exits 6 naming the second publication's second and both hashes; the two
#      extenders compared exit 6; the monitor state from the first calendar refuses the fork;
#   4. a live network (a core node, an aggregator, a gateway, an extender following the core): a
#      document signed, two publications made from the extender's replica while it grows, audit
#      exit 0, and the monitor (--state) twice while the calendar grows; with the node's own
#      calendar, which a core leader writes, re-hashed.
#
# usage: test_audit.sh KEYLESS_EXTENDER KEYLESS [KEYLESS_CORE KEYLESS_AGGREGATOR KEYLESS_GATEWAY]
# (part 4 runs when the three daemons are given)
#
# Each check prints "ok - NAME" or "not ok - NAME: expected X got Y"; the last line is
# "N passed, M failed" and the exit status is non-zero if any check failed. Needs curl.
set -u

if [ $# -ne 2 ] && [ $# -ne 5 ]; then
  echo "usage: $0 KEYLESS_EXTENDER KEYLESS [KEYLESS_CORE KEYLESS_AGGREGATOR KEYLESS_GATEWAY]" >&2
  exit 2
fi
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
EXT=$(abs "$1") KL=$(abs "$2") CORE="" AGG="" GW=""
[ $# -eq 5 ] && CORE=$(abs "$3") AGG=$(abs "$4") GW=$(abs "$5")
DEPLOY=$(cd "$(dirname "$0")/../../deploy" && pwd)
for b in "$EXT" "$KL" $CORE $AGG $GW; do
  [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }
done
command -v curl >/dev/null || { echo "$0: curl is needed" >&2; exit 2; }

. "$(dirname "$0")/harness.sh" audit

# No UTC midnight within the calendar: the only publications are the --latest ones.
quiet_genesis
P1=$((G + 20))
FORK=$((G + 31)) # the first second where the forked calendar differs
P2=$((G + 40))
HEAD=$((G + 50))
EMAIL=publications@audit.keyless.test
TRUST=(-V pki/ca.crt --cnstr "E=$EMAIL")
SIGN=(--cert pki/publications.crt --key pki/publications.key --allow-clear-key --auth-cert pki/calendar-auth.crt)
root() { printf 'SHA-256:%064x' "$1"; } # the round root of second $1 in the first calendar

run "$KL" devpki -o pki --email "$EMAIL"
[ "$RC" -eq 0 ] || bail "devpki: $(short "$OUT")"
# append DIR SECOND [ROOT]: the seconds skipped before it get filler leaves
append() { "$KL" calendar append -D "$1" --time "$2" ${3:+--root "$3"} ${3:---empty} >/dev/null || bail "append $1 $2"; }
"$KL" calendar init -D cal --genesis "$G" >/dev/null || bail "calendar init"
for s in $((G + 3)) $((G + 11)) "$P1"; do append cal "$s" "$(root "$s")"; done
mkdir out
run "$KL" publish -D cal -o out/pubs.bin "${SIGN[@]}" --latest
[ "$RC" -eq 0 ] || bail "publish 1: $(short "$OUT")"
PUB1=$(printf '%s\n' "$OUT" | sed -n '2s/^ *//p')
for s in $((G + 25)) "$FORK" $((G + 37)) "$P2"; do append cal "$s" "$(root "$s")"; done
run "$KL" publish -D cal -o out/pubs.bin "${SIGN[@]}" --latest
check_has "publish 2: both publications" "wrote out/pubs.bin: 2 publications" "$OUT"
PUB2=$(printf '%s\n' "$OUT" | sed -n '2s/^ *//p')
append cal "$HEAD" "$(root "$HEAD")"

# (start_ext NAME DIR: harness.sh)
printf 'pub:pub key\n' >users
start_ext a cal
A=$URL

# ---- 1. the endpoints ----
get() { OUT=$(curl -s -m 10 -w '%{http_code}' "$1" | tr '\n' ' '); } # "REASON CODE"
hdr() { curl -s -m 10 -D - -o /dev/null "$1" | tr -d '\r' | sed -n "s/^$2: //Ip"; }
check "head: 200" 200 "$(curl -s -m 10 -o head.bin -w '%{http_code}' "$A/calendar/head")"
check "head: not cached" "no-store" "$(hdr "$A/calendar/head" Cache-Control)"
check "consistency: cached for good" "public, max-age=31536000, immutable" \
  "$(hdr "$A/calendar/consistency?from=$P1&to=$P2" Cache-Control)"
check "range: cached for good" "public, max-age=31536000, immutable" \
  "$(hdr "$A/calendar/range?from=$G&to=$P1" Cache-Control)"
get "$A/calendar/consistency?from=$P2&to=$P1"
check "from after to: 400 with the reason" "from $P2 is after to $P1 400" "$OUT"
get "$A/calendar/consistency?from=$P1&to=12x"
check_has "a bad number: 400 naming the parameter" "parameter to: expected a number of seconds" "$OUT"
get "$A/calendar/consistency?from=$P1&to=$P2&at=1"
check_has "an unknown parameter: 400 naming it" 'unknown parameter "at" (expected from and to) 400' "$OUT"
get "$A/calendar/range?from=$G&to=$((G + 512))"
check "a range over the maximum: 400" "range $G..$((G + 512)): at most 512 seconds per request 400" "$OUT"
get "$A/calendar/consistency?from=$P1&to=$((HEAD + 1))"
check "a second not committed yet: 404" "to $((HEAD + 1)) is after the calendar's last second $HEAD 404" "$OUT"
check "not cached either" "no-store" "$(hdr "$A/calendar/consistency?from=$P1&to=$((HEAD + 1))" Cache-Control)"

# ---- 2. a healthy calendar ----
run "$KL" audit -X "$A/" -P out/pubs.bin "${TRUST[@]}"
check "audit: exit 0" 0 "$RC"
check_has "audit: P1 to P2" "ok - publication $P1 ($P1) is a prefix of publication $P2 ($P2)" "$OUT"
check_has "audit: P2 to the head" "ok - publication $P2 ($P2) is a prefix of the head ($HEAD)" "$OUT"
check_has "audit: the summary" "OK: consistent (2 checks, 2 publications, 1 extenders)" "$OUT"
run "$KL" audit -X "$A" -P out/pubs.bin "${TRUST[@]}" --json
check_has "audit --json: consistent" '{"result":"consistent","exit":0,"checks":2,"publications":2' "$OUT"
run "$KL" audit -X "$A" -P out/pubs.bin "${TRUST[@]}" --rehash "$G:$HEAD"
check "audit --rehash from genesis to the head: exit 0" 0 "$RC"
check_has "audit --rehash: says so" "ok - rehashed $G..$HEAD" "$OUT"
run "$KL" audit -X "$A" -P out/pubs.bin "${TRUST[@]}" --rehash "$((G + 7)):$P2"
check "audit --rehash inside the calendar: exit 0" 0 "$RC"
run "$KL" audit -X "$A" --state mon.state
check "monitor, first run: exit 0" 0 "$RC"
check "monitor: the state holds the head" "second=$HEAD" "$(grep '^second=' mon.state)"
append cal $((HEAD + 5)) "$(root $((HEAD + 5)))"
run "$KL" audit -X "$A" --state mon.state
check "monitor, the calendar grew: exit 0" 0 "$RC"
check_has "monitor: the old head is a prefix" "the head checked before (state file) ($HEAD) is a prefix of the head ($((HEAD + 5)))" "$OUT"
check "monitor: the state moved on" "second=$((HEAD + 5))" "$(grep '^second=' mon.state)"
cp mon.state healthy.state
sed "s/^second=.*/second=$((HEAD + 100))/" healthy.state >ahead.state
run "$KL" audit -X "$A" --state ahead.state
check "monitor: a head behind the state: exit 7" 7 "$RC"
check_has "monitor: says so" "extender $A's head $((HEAD + 5)) is behind the head checked before ($((HEAD + 100)))" "$OUT"
run "$KL" audit -X "$A" --pub-str "$PUB1"
check "a publication within the head: exit 0" 0 "$RC"

# ---- 3. a fork: the same genesis and rounds up to FORK - 1, another round at FORK ----
"$KL" calendar init -D fork --genesis "$G" >/dev/null || bail "calendar init fork"
for s in $((G + 3)) $((G + 11)) "$P1" $((G + 25)); do append fork "$s" "$(root "$s")"; done
append fork "$FORK" "SHA-256:$(printf '%064x' 999)"
for s in $((G + 37)) "$P2"; do append fork "$s" "$(root "$s")"; done
append fork $((HEAD + 20)) "$(root $((HEAD + 20)))"
start_ext b fork
B=$URL
run "$KL" audit -X "$B" -P out/pubs.bin "${TRUST[@]}"
check "fork: exit 6" 6 "$RC"
# The fork's root at P1 is the published one (it differs from FORK on), at P2 it is not.
check_has "fork: the second publication's second is named" "second $P2: extender $B's calendar root is 01" "$OUT"
check_has "fork: and the published hash" ", publication $P2 is 01" "$OUT"
run "$KL" audit -X "$B" -P out/pubs.bin "${TRUST[@]}" --json
check_has "fork --json: inconsistent, from P1 to P2" "\"result\":\"inconsistent\"" "$OUT"
check_has "fork --json: the seconds" "\"from\":$P1,\"to\":$P2" "$OUT"
run "$KL" audit -X "$B" --pub-str "$PUB1"
check "fork: the first publication string alone still holds there: exit 0" 0 "$RC"
run "$KL" audit -X "$B" --pub-str "$PUB1" --pub-str "$PUB2"
check "fork: with the second publication string: exit 6" 6 "$RC"
check_has "fork: names P2 against the publication string" "second $P2: extender $B's calendar root is" "$OUT"
run "$KL" audit -X "$A" --pub-str "$PUB2" --pub-str "$PUB1"
check "the first calendar with both publication strings: exit 0" 0 "$RC"
run "$KL" audit -X "$A" --pub-str "NOT-A-PUBLICATION"
check "a bad publication string: exit 3" 3 "$RC"
check_has "a bad publication string: named" "--pub-str NOT-A-PUBLICATION" "$OUT"
run "$KL" audit -X "$A" -X "$B"
check "two extenders serving different calendars: exit 6" 6 "$RC"
check_has "two extenders: A's head second named" "second $((HEAD + 5)): extender $B's calendar root is" "$OUT"
run "$KL" audit -X "$B" --state mon.state
check "monitor: the forked head does not extend the head checked before: exit 6" 6 "$RC"
check_has "monitor: names the second" "second $((HEAD + 5)): extender $B's calendar root is" "$OUT"
if cmp -s mon.state healthy.state; then pass "monitor: the state is left as it was"; else
  fail "monitor: the state is left as it was" same changed; fi
# The fork is consistent with itself: re-hashed over two ranges of 512 seconds.
append fork $((G + 590)) "$(root $((G + 590)))"
run "$KL" audit -X "$B" --rehash "$G:$((G + 590))"
check "the fork alone, re-hashed in two ranges: exit 0" 0 "$RC"
check_has "the fork alone: says so" "ok - rehashed $G..$((G + 590))" "$OUT"
run "$KL" audit -X "$A" -X "$A/other/path"
check "the same extender twice: exit 0" 0 "$RC"

# ---- 4. a live network ----
if [ -n "$CORE" ]; then
  run "$KL" devpki -o npki --email "$EMAIL" --nodes core:1,aggregator:agg1,gateway:gw1,extender:1
  [ "$RC" -eq 0 ] || bail "devpki for the network: $(short "$OUT")"
  PKI=$TMP/npki # (start, logged, tls, tls_sed, start_core, aggregator_conf, gateway_conf: harness.sh)
  start_core
  NG=$GENESIS
  printf '[server]\nhttp_listen = 127.0.0.1:0\ntcp_listen =\nadmin_listen =\n[calendar]\ndir = %s\n[auth]\nusers_file = %s\n[replication]\nupstream = 127.0.0.1:%s\ngenesis = %s\ncalendar_auth_cert = %s\n[tls]\n%s\n' \
    "$TMP/ncal" "$TMP/users" "$CORE_REPL" "$NG" "$TMP/npki/calendar-auth.crt" "$(tls extender-1)" >next.conf
  start next "$EXT" next.conf || bail "keyless-extender following the core started: $(short "$(cat next.log)")"
  N="http://127.0.0.1:$(logged next http_port)"
  aggregator_conf agg1 >agg.conf
  start agg "$AGG" agg.conf || bail "keyless-aggregator started: $(short "$(cat agg.log)")"
  printf 'alice:alice-key\n' >gw-users
  USERS=$TMP/gw-users gateway_conf gw1 "127.0.0.1:$(logged agg port)" -e 's#^tcp_listen = .*#tcp_listen =#' >gw.conf
  start gw "$GW" gw.conf || bail "keyless-gateway started: $(short "$(cat gw.log)")"
  GW_URL="http://127.0.0.1:$(logged gw http_port)/"
  # head_of URL: the extender's last second (empty until it serves)
  head_of() { "$KL" audit -X "$1" --json 2>/dev/null | sed -n 's/.*"head":\([0-9]*\).*/\1/p'; }
  for _ in $(seq 1 100); do [ -n "$(head_of "$N")" ] && break; sleep 0.1; done
  [ -n "$(head_of "$N")" ] || bail "the following extender serves its head"
  printf 'a document on the live network %s\n' "$RANDOM" >live.txt
  for _ in 1 2 3 4 5; do # the gateway may not be connected to its parent yet
    "$KL" sign -i live.txt -S "$GW_URL" --aggr-user alice --aggr-key alice-key >/dev/null 2>&1 && break
    sleep 1
  done
  [ -s live.txt.ksig ] && pass "live: a document signed" || fail "live: a document signed" "a signature" "none"
  mkdir nout
  run "$KL" publish -D ncal -o nout/pubs.bin --cert npki/publications.crt --key npki/publications.key --allow-clear-key \
    --auth-cert npki/calendar-auth.crt --latest
  check "live: publish 1 from the replica: exit 0" 0 "$RC"
  LPUB=$(printf '%s\n' "$OUT" | sed -n '2s/^ *//p')
  run "$KL" audit -X "$A" --pub-str "$LPUB"
  check "a publication after the extender's head: exit 7" 7 "$RC"
  check_has "after the head: says so" "extender $A's head $((HEAD + 5)) is before 1 publications" "$OUT"
  first=$(head_of "$N")
  for _ in $(seq 1 50); do [ "$(head_of "$N")" -gt $((first + 1)) ] && break; sleep 0.1; done
  run "$KL" publish -D ncal -o nout/pubs.bin --cert npki/publications.crt --key npki/publications.key --allow-clear-key \
    --auth-cert npki/calendar-auth.crt --latest
  check_has "live: publish 2 from the replica" "wrote nout/pubs.bin: 2 publications" "$OUT"
  NTRUST=(-V npki/ca.crt --cnstr "E=$EMAIL")
  run "$KL" audit -X "$N" -P nout/pubs.bin "${NTRUST[@]}" --state live.state
  check "live: audit with both publications: exit 0" 0 "$RC"
  check_has "live: 2 publications, checked up to the head" "checks, 2 publications, 1 extenders)" "$OUT"
  first=$(grep '^second=' live.state | cut -d= -f2)
  for _ in $(seq 1 50); do [ "$(head_of "$N")" -gt "$first" ] && break; sleep 0.1; done
  run "$KL" audit -X "$N" -P nout/pubs.bin "${NTRUST[@]}" --state live.state --rehash "$NG:$first"
  check "live: the monitor again, the calendar grew, re-hashed from genesis: exit 0" 0 "$RC"
  check_has "live: the old head is a prefix of the new one" "the head checked before (state file) ($first) is a prefix" "$OUT"
  [ "$(grep '^second=' live.state | cut -d= -f2)" -gt "$first" ] && pass "live: the state moved on" ||
    fail "live: the state moved on" "after $first" "$(grep '^second=' live.state)"
  run "$KL" audit -X "$N" -P out/pubs.bin "${TRUST[@]}"
  check "live: the other calendar's publications, before this genesis: exit 6" 6 "$RC"
  check_has "live: says so" "publication $P1 is before extender $N's calendar genesis $NG: not this calendar" "$OUT"
  run "$KL" audit -X "$N" -X "$A"
  check "live: another network's extender compared with it: exit 6" 6 "$RC"
  check_has "live: the calendars start at different seconds" "'s calendar starts at" "$OUT"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
