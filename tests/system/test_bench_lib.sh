#!/usr/bin/env bash
# bench/lib.sh's start_core1, the one-node core of the aggregator and gateway benchmarks, against
# the port race it guards: a block of ports found free whose internal port another process takes
# before the node binds it (simulated: the first block handed out holds a port a listener has).
#   1. the node exits (address already in use); start_core1 starts it again on a fresh block,
#      keeps the failed try's log (core.log.try1), and the node leads on the new ports;
#   2. a node that fails for another reason (no keys) is not retried: start_core1 returns 1
#      at once and leaves no .try log.
# usage: test_bench_lib.sh KEYLESS_CORE KEYLESS SOURCE_DIR
# "ok - NAME" / "not ok - NAME: ..." per check, then "N passed, M failed". Needs curl, python3.
set -u
if [ $# -ne 3 ]; then
  echo "usage: $0 KEYLESS_CORE KEYLESS SOURCE_DIR" >&2
  exit 2
fi
CORE=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") KL=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
LIB=$(cd "$3" && pwd)/bench/lib.sh
for b in "$CORE" "$KL"; do [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }; done
[ -f "$LIB" ] || { echo "$0: $LIB not found" >&2; exit 2; }
for t in curl python3; do command -v "$t" >/dev/null || { echo "$0: $t is needed" >&2; exit 2; }; done

. "$(dirname "$0")/harness.sh" bench-lib
. "$LIB"

run "$KL" devpki -o pki --email bench-lib@keyless.invalid --nodes core:1
[ "$RC" -eq 0 ] || bail "devpki: $(short "$OUT")"

# A listener on a free port P (the kernel's choice, so nothing else has it), held for 120 s at most.
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True); time.sleep(120)' >taken.port &
PIDS+=("$!")
wait_until 10 test -s taken.port || bail "a listener holds a port"
P=$(cat taken.port)

# The first block handed out has its internal port (base + 1) on P: what a race looks like.
eval "lib_$(declare -f next_free_base)"
FIRST=1
next_free_base() {
  if [ $FIRST -eq 1 ]; then FIRST=0; base=$((P - 1)); return 0; fi
  lib_next_free_base "$@"
}

# ---- 1. a port taken meanwhile: started again ----
start_core1 core tls >retry.out
RC=$?
PIDS+=("${LIB_PIDS[@]}")
check "start_core1 succeeds on a second block" 0 "$RC"
check_has "  it says why it started again" "started again on fresh ports" "$(cat retry.out)"
check "  the first try's log is kept and says the port was in use" yes \
  "$(grep -qi 'address already in use' core.log.try1 2>/dev/null && echo yes || echo no)"
check "  no third try" no "$([ -e core.log.try2 ] && echo yes || echo no)"
[ "$C1_INTERNAL" != "127.0.0.1:$P" ] && pass "  the node's internal port is not the taken one ($C1_INTERNAL)" ||
  fail "  the node's internal port is not the taken one" "not 127.0.0.1:$P" "$C1_INTERNAL"
check "  the node leads (keyless_core_raft_role 3)" 3 \
  "$(curl -s -m 5 "http://$C1_METRICS/metrics" | awk '$1 == "keyless_core_raft_role" {print $2}')"
stop_pid "$C1_PID"
check "  SIGTERM: exit 0" 0 "$STOP_RC"

# ---- 2. another failure: no retry ----
mv pki pki.away
start_core1 core2 tls >fail.out
check "a node without its keys: start_core1 returns 1" 1 "$?"
check "  tried once (no .try log)" 0 "$(find . -name 'core2.log.try*' | wc -l)"
check_has "  its log says what was wrong" "calendar-auth" "$(cat core2.log)"
finish
