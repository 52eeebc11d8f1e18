#!/usr/bin/env bash
# System test of keyless-extender's worker threads ([server] workers = 3): request PDUs of very
# different costs in flight on one ksi+tcp connection come back in request order; a burst over
# HTTP (curl --parallel) and several ksi+tcp connections at once is answered with valid chains
# (each answer's root is `keyless calendar root` of its publication time and its shape gives its
# aggregation time, its HMAC checks); the metrics count every request; a users file reloaded
# (SIGHUP) during a burst; a SIGTERM during a burst answers what was taken in and exits 0.
#
# usage: test_extender_threads.sh KEYLESS_EXTENDER KEYLESS EXT_CLIENT
#
# "ok - NAME" / "not ok - NAME: expected X got Y" per check, then "N passed, M failed". Every
# wait is a bounded poll; nothing asserts a duration. A sanitizer report in the log fails.
set -u

if [ $# -ne 3 ]; then
  echo "usage: $0 KEYLESS_EXTENDER KEYLESS EXT_CLIENT" >&2
  exit 2
fi
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
EXT=$(abs "$1")
KEYLESS=$(abs "$2")
CLIENT=$(abs "$3")
for b in "$EXT" "$KEYLESS" "$CLIENT"; do
  [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }
done
command -v curl >/dev/null || { echo "$0: curl is needed" >&2; exit 2; }

. "$(dirname "$0")/harness.sh" extender-threads

# ---- the calendar: 64 seconds G .. L, every second ending in 5 left empty (filler leaves) ----
NOW=$(date +%s)
G=$((NOW - 3600))
N=64
L=$((G + N - 1))
Q=$((G + 40)) # the other publication time asked for
"$KEYLESS" calendar init -D cal --genesis "$G" >/dev/null || { echo "calendar init failed"; exit 1; }
for i in $(seq 0 $((N - 1))); do
  [ $((i % 10)) -eq 5 ] && continue
  root=$(printf 'SHA-256:%s' "$(printf 'round %d' "$i" | sha256sum | cut -c1-64)")
  "$KEYLESS" calendar append -D cal --time $((G + i)) --root "$root" >/dev/null || { echo "append failed"; exit 1; }
done
ROOT_L=$("$KEYLESS" calendar root -D cal --time "$L")
ROOT_Q=$("$KEYLESS" calendar root -D cal --time "$Q")
[ -n "$ROOT_L" ] && [ -n "$ROOT_Q" ] || { echo "calendar root failed"; exit 1; }
printf 'anon:anon\n' >users

cat >ext.conf <<EOF
[server]
http_listen = 127.0.0.1:0
tcp_listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
workers = 3
[calendar]
dir = cal
[auth]
users_file = users
[limits]
max_requests = 8
max_inflight = 64
EOF

"$EXT" -c ext.conf --log-level debug 2>ext.log &
PID=$!
PIDS+=("$PID")
for _ in $(seq 1 200); do
  grep -q 'event=started' ext.log 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.05
done
line=$(grep 'event=started' ext.log)
HTTP=$(printf '%s' "$line" | sed -n 's/.* http_port=\([0-9]*\).*/\1/p')
TCP=$(printf '%s' "$line" | sed -n 's/.* tcp_port=\([0-9]*\).*/\1/p')
ADMIN=$(printf '%s' "$line" | sed -n 's/.* admin_port=\([0-9]*\).*/\1/p')
[ -n "$HTTP" ] || { echo "daemon did not start:"; cat ext.log; exit 1; }
check "started with 3 workers" "workers=3" "$(printf '%s' "$line" | grep -o 'workers=[0-9]*')"

# ---- request PDUs of four kinds, and the exact decoded answer each must get ----
# make_req DIR I: writes DIR/I.req and DIR/I.want (what `ext_client decode -k anon` must print);
# OK_SENT counts the extension requests that must be answered with status 0.
OK_SENT=0
want_line() { # ID T P ROOT
  printf 'resp id=%s status=0x0000 cal_last=%s pub=%s aggr=%s shape=%s root=%s\n' "$1" "$L" "$3" "$2" "$2" "$4"
}
make_req() {
  local d=$1 i=$2 t=$((G + ($2 * 7) % N)) args=() k
  case $((i % 8)) in
  0) # eight requests in one PDU: the slowest kind
    : >"$d/$i.want"
    for k in 1 2 3 4 5 6 7 8; do
      local tk=$((G + (i + k * 9) % N))
      args+=(-r "$((i * 10 + k)):$tk")
      want_line $((i * 10 + k)) "$tk" "$L" "$ROOT_L" >>"$d/$i.want"
    done
    echo "hmac=ok hmac_alg=SHA-256" >>"$d/$i.want"
    OK_SENT=$((OK_SENT + 8))
    "$CLIENT" make -u anon -k anon "${args[@]}" -o "$d/$i.req"
    ;;
  3) # a wrong key: the quickest answer, an unsigned error
    "$CLIENT" make -u anon -k wrong -r "$i:$t" -o "$d/$i.req"
    printf 'error status=0x0102 message=unknown login or wrong HMAC key\nhmac=none\n' >"$d/$i.want"
    ;;
  5) # publication time Q (aggregation time at most Q)
    t=$((G + (i * 7) % 41))
    "$CLIENT" make -u anon -k anon -r "$i:$t:$Q" -o "$d/$i.req"
    { want_line "$i" "$t" "$Q" "$ROOT_Q"; echo "hmac=ok hmac_alg=SHA-256"; } >"$d/$i.want"
    OK_SENT=$((OK_SENT + 1))
    ;;
  *)
    "$CLIENT" make -u anon -k anon -r "$i:$t" -o "$d/$i.req"
    { want_line "$i" "$t" "$L" "$ROOT_L"; echo "hmac=ok hmac_alg=SHA-256"; } >"$d/$i.want"
    OK_SENT=$((OK_SENT + 1))
    ;;
  esac
}
# verify DIR OUT_PREFIX FIRST LAST: the answers OUT_PREFIX1.bin.. against DIR/FIRST.want..; sets
# BAD (how many differ) and FIRST_BAD (the first difference).
verify() {
  local d=$1 out=$2 i j=1
  BAD=0
  FIRST_BAD=""
  for i in $(seq "$3" "$4"); do
    local got
    got=$("$CLIENT" decode -k anon "$out$j.bin" 2>&1)
    if [ "$got" != "$(cat "$d/$i.want")" ]; then
      BAD=$((BAD + 1))
      [ -n "$FIRST_BAD" ] || FIRST_BAD="answer $j (request $i): $(printf '%s' "$got" | head -n 2 | tr '\n' ' ')"
    fi
    j=$((j + 1))
  done
}

# ---- one connection, 160 PDUs in flight (up to max_inflight at once), in request order ----
mkdir one
for i in $(seq 1 160); do make_req one "$i"; done
files=()
for i in $(seq 1 160); do files+=("one/$i.req"); done
out=$("$CLIENT" tcp "127.0.0.1:$TCP" one/a "${files[@]}")
check "one connection: 160 PDUs, 160 answers" "received 160" "$out"
verify one one/a 1 160
check "one connection: every answer in request order and a valid chain (or the refusal sent)" "0 bad" \
  "$BAD bad${FIRST_BAD:+: $FIRST_BAD}"

# ---- a burst over both transports at once: 4 ksi+tcp connections x 40 PDUs, 64 HTTP POSTs ----
BG=()
mkdir burst
for i in $(seq 1 224); do make_req burst "$i"; done
for c in 0 1 2 3; do
  files=()
  for i in $(seq $((c * 40 + 1)) $((c * 40 + 40))); do files+=("burst/$i.req"); done
  "$CLIENT" tcp "127.0.0.1:$TCP" "burst/t$c-" "${files[@]}" >"burst/t$c.out" &
  BG+=($!)
done
curl_args=(--parallel --parallel-max 16)
for i in $(seq 161 224); do
  [ "$i" -gt 161 ] && curl_args+=(--next)
  curl_args+=(-s --max-time 30 -H 'Content-Type: application/ksi-request' --data-binary "@burst/$i.req" -o "burst/h$i.bin"
    -w '%{http_code}\n' "http://127.0.0.1:$HTTP/")
done
codes=$(curl "${curl_args[@]}")
wait_bg() { # the clients in BG; bounded: they time out by themselves (5 s per read)
  local p
  for p in "${BG[@]}"; do wait "$p"; done
  BG=()
}
wait_bg
for c in 0 1 2 3; do
  check "burst: ksi+tcp connection $c: 40 answers" "received 40" "$(cat "burst/t$c.out")"
  verify burst "burst/t$c-" $((c * 40 + 1)) $((c * 40 + 40))
  check "burst: ksi+tcp connection $c: in order, valid chains" "0 bad" "$BAD bad${FIRST_BAD:+: $FIRST_BAD}"
done
check "burst: 64 HTTP answers, all 200" "64" "$(printf '%s\n' "$codes" | grep -c '^200$')"
hbad=0
hfirst=""
for i in $(seq 161 224); do
  got=$("$CLIENT" decode -k anon "burst/h$i.bin" 2>&1)
  if [ "$got" != "$(cat "burst/$i.want")" ]; then
    hbad=$((hbad + 1))
    [ -n "$hfirst" ] || hfirst="request $i: $(printf '%s' "$got" | head -n 2 | tr '\n' ' ')"
  fi
done
check "burst: every HTTP answer a valid chain (or the refusal sent)" "0 bad" "$hbad bad${hfirst:+: $hfirst}"

# ---- the counts: every extension request counted once, on the loop ----
M=$(curl -s --max-time 20 "http://127.0.0.1:$ADMIN/metrics")
check "metrics: extension requests answered with status 0" "$OK_SENT" \
  "$(printf '%s\n' "$M" | sed -n 's/^keyless_extender_requests_total{status="0x0000"} //p')"
check "metrics: PDUs answered over ksi+tcp" "$((160 + 160))" "$(printf '%s\n' "$M" |
  awk '/^keyless_extender_pdus_total\{transport="tcp"/ {s += $2} END {print s + 0}')"
check "metrics: PDUs answered over HTTP" 64 "$(printf '%s\n' "$M" |
  awk '/^keyless_extender_pdus_total\{transport="http"/ {s += $2} END {print s + 0}')"
check "metrics: workers" 3 "$(printf '%s\n' "$M" | sed -n 's/^keyless_extender_workers //p')"
check "metrics: nothing left in progress" 0 "$(printf '%s\n' "$M" | sed -n 's/^keyless_extender_pdus_in_progress //p')"

# ---- SIGHUP during a burst: the old users stay alive for the requests using them ----
files=()
for i in $(seq 1 160); do files+=("one/$i.req"); done
"$CLIENT" tcp "127.0.0.1:$TCP" one/h "${files[@]}" >hup.out &
BG+=($!)
printf 'anon:anon\nbob:b0b\n' >users.new && mv users.new users
kill -HUP "$PID"
wait_bg
check "SIGHUP during a burst: 160 answers" "received 160" "$(cat hup.out)"
verify one one/h 1 160
check "SIGHUP during a burst: in order, valid chains" "0 bad" "$BAD bad${FIRST_BAD:+: $FIRST_BAD}"
for _ in $(seq 1 100); do grep -q 'event=users_loaded logins=2' ext.log && break; sleep 0.05; done
"$CLIENT" make -u bob -k b0b -r "1:$G" -o bob.req
"$CLIENT" tcp "127.0.0.1:$TCP" bob bob.req >/dev/null
check "after SIGHUP: the new login is served" "resp id=1 status=0x0000" \
  "$("$CLIENT" decode -k b0b bob1.bin | grep -o 'resp id=1 status=0x[0-9A-F]*')"

# ---- SIGTERM during a burst: what was taken in is answered, in order, and the daemon exits 0 ----
n0=$(grep -c 'event=extend transport=tcp' ext.log)
"$CLIENT" tcp "127.0.0.1:$TCP" one/s "${files[@]}" >term.out &
BG+=($!)
for _ in $(seq 1 1000); do # bounded (20 s): a sanitizer build is slow to take the first PDU
  [ "$(grep -c 'event=extend transport=tcp' ext.log)" -gt "$n0" ] && break
  sleep 0.02
done
kill -TERM "$PID"
for _ in $(seq 1 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
kill -0 "$PID" 2>/dev/null && kill -KILL "$PID"
wait "$PID"
check "SIGTERM during a burst: exit status 0" 0 "$?"
wait_bg
got=$(sed -n 's/^received //p' term.out)
if [ "${got:-0}" -ge 1 ]; then pass "SIGTERM during a burst: answers arrived ($got of 160)"; else
  fail "SIGTERM during a burst: answers arrived" "at least 1" "${got:-none}"; fi
verify one one/s 1 "${got:-0}"
check "SIGTERM during a burst: every answer in order and valid" "0 bad" "$BAD bad${FIRST_BAD:+: $FIRST_BAD}"
check "SIGTERM: no connection had to be cut (every request taken in was answered)" "" \
  "$(grep 'event=shutdown_timeout' ext.log)"
if grep -qE 'AddressSanitizer|LeakSanitizer|ThreadSanitizer|runtime error:' ext.log; then
  fail "no sanitizer reports" none "$(grep -m3 -E 'Sanitizer|runtime error' ext.log)"
else
  pass "no sanitizer reports"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
