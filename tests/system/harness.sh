# Shared by the shell system tests (sourced, not run): a scratch directory removed at exit with
# every daemon recorded in PIDS, and TAP-like checks ending in "N passed, M failed".
# Usage: . "$(dirname "$0")/harness.sh" NAME     (then cd "$TMP" has happened)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/keyless-$1.XXXXXX") || exit 2
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
cd "$TMP" || exit 2

PASSED=0
FAILED=0
pass() { echo "ok - $1"; PASSED=$((PASSED + 1)); }
fail() { echo "not ok - $1: expected $2 got $3"; FAILED=$((FAILED + 1)); }
short() { printf '%s' "$1" | head -n 4 | tr '\n' ' ' | cut -c1-400; }
# check NAME EXPECTED ACTUAL
check() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "'$2'" "'$(short "$3")'"; fi; }
# run COMMAND...: its output (stdout and stderr) in OUT, its exit status in RC
run() { OUT=$("$@" 2>&1); RC=$?; }
# wait_until SECONDS COMMAND...: 0 once COMMAND succeeds (tried every 0.2 s), 1 after SECONDS
wait_until() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}
# check_has NAME NEEDLE HAYSTACK
check_has() {
  case "$3" in *"$2"*) pass "$1" ;; *) fail "$1" "to contain '$2'" "'$(short "$3")'" ;; esac
}

# sign_load KEYLESS DIR [PREFIX...]: a signing client in the background's shape: one document
# after another (into DIR/dN, DIR/dN.ksig), through every gateway of $KL_GATEWAY_URLS with
# failover and retries (--retry-for 30s), until $TMP/stop exists (at most 2000 requests). One
# line per request in DIR/results: "N STATUS SECONDS PHASE", PHASE being $TMP/phase's content.
# PREFIX (e.g. ip netns exec NS) runs the client elsewhere. Run it with & and wait for it.
sign_load() {
  local kl="$1" out="$2" i=0 s st g
  shift 2
  local gw=()
  for g in $KL_GATEWAY_URLS; do gw+=(-S "$g"); done
  mkdir -p "$out"
  while [ ! -f "$TMP/stop" ] && [ $i -lt 2000 ]; do
    i=$((i + 1)); echo "document $i $RANDOM" >"$out/d$i"
    s=$(date +%s.%N)
    timeout 40 "$@" "$kl" sign "${gw[@]}" --aggr-user "$KL_USER" --aggr-key "$KL_KEY" --retry-for 30s \
      -i "$out/d$i" -o "$out/d$i.ksig" >"$out/d$i.log" 2>&1
    st=$?
    echo "$i $st $(awk -v a="$(date +%s.%N)" -v b="$s" 'BEGIN { printf "%.2f", a - b }') $(cat "$TMP/phase" 2>/dev/null)" \
      >>"$out/results"
    sleep 0.1
  done
}

# load_report DIR KEYLESS: checks that the load ran and no request failed, prints the latency per
# phase (never asserted), and checks every signature verifies (internal policy).
load_report() {
  local out="$1" kl="$2" total failed bad=0 f ph
  total=$(wc -l <"$out/results")
  failed=$(awk '$2 != 0' "$out/results" | wc -l)
  [ "$total" -ge 10 ] && pass "the load ran ($total requests)" || fail "the load ran" ">= 10 requests" "$total"
  check "no request failed" 0 "$failed"
  awk '$2 != 0 {print "# failed: request " $1 " in " $4 ": exit " $2}' "$out/results" | head -5
  for ph in $(awk '{print $4}' "$out/results" | uniq); do
    awk -v p="$ph" '$4 == p {print $3}' "$out/results" | sort -n |
      awk -v p="$ph" '{v[NR] = $1} END {if (NR) printf "# %-16s %3d requests, p50 %.2f s, max %.2f s\n", p, NR, v[int((NR + 1) / 2)], v[NR]}'
  done
  for f in "$out"/*.ksig; do "$kl" verify -i "$f" -f "${f%.ksig}" --policy internal >/dev/null 2>&1 || bad=$((bad + 1)); done
  check "every signature verifies ($(ls "$out"/*.ksig 2>/dev/null | wc -l))" 0 "$bad"
}

# same_calendars KEYLESS DIR...: every calendar audits clean and all hold one root at the last
# second they all have (hence the same root for every second before it).
same_calendars() {
  local kl="$1" d last min="" roots
  shift
  for d in "$@"; do
    last=$("$kl" calendar stat -D "$d" --json | sed -n 's/.*"last":\([0-9]*\).*/\1/p')
    [ -z "$min" ] || [ "$last" -lt "$min" ] && min=$last
    check "calendar $d audits clean (no hole)" 0 "$("$kl" calendar audit -D "$d" >/dev/null 2>&1; echo $?)"
  done
  roots=$(for d in "$@"; do "$kl" calendar root -D "$d" --time "$min"; done | sort -u | wc -l)
  check "$# calendars, one root at second $min" 1 "$roots"
}
