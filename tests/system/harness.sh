# shellcheck shell=bash
# Shared by the shell system tests (sourced, not run): a scratch directory removed at exit with
# every daemon recorded in PIDS, and TAP-like checks ending in "N passed, M failed"; then the
# start-up the daemon tests share (their own checks stay in each test): daemons on port 0, a
# one-node core, an extender following it, aggregator and gateway configurations from deploy/,
# and the calendar, mksig and extender of the publication tests.
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

# ---------------------------------------------------------------- daemons on loopback
# For the tests that start the daemons themselves. Every daemon listens on kernel-chosen ports
# (127.0.0.1:0) and names them in its event=started log line, so no port is picked beforehand.
# A test may define its own finish or bail after sourcing this file (the last definition wins).
HARNESS_NAME=$1

# keep_logs [FILE...]: the scratch directory's *.log (and FILEs) into ${TMPDIR:-/tmp}/keyless-NAME-logs.
keep_logs() {
  local d="${TMPDIR:-/tmp}/keyless-$HARNESS_NAME-logs"
  rm -rf "$d" && mkdir -p "$d" && cp "$TMP"/*.log "$@" "$d"/ 2>/dev/null
  echo "# logs kept in $d"
}
# finish: ends the test: a failed run's logs kept, the summary line, exit status 0 only if no check failed.
finish() {
  [ "$FAILED" -eq 0 ] || keep_logs
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
  exit
}
# bail WHAT: a step the rest depends on failed: "not ok - WHAT", then finish.
bail() {
  echo "not ok - $1"
  FAILED=$((FAILED + 1))
  finish
}

# start NAME BINARY CONF: starts a daemon (its pid in PID[NAME] and PIDS) logging to NAME.log;
# 0 once it logs event=started, 1 if it exits first or has not started within 10 s.
start() {
  declare -gA PID
  "$2" -c "$3" >>"$1.log" 2>&1 &
  PID[$1]=$!
  PIDS+=("$!")
  for _ in $(seq 1 200); do
    grep -q 'event=started' "$1.log" 2>/dev/null && return 0
    kill -0 "${PID[$1]}" 2>/dev/null || break
    sleep 0.05
  done
  return 1
}
# logged NAME KEY: KEY's value in NAME's (last) event=started line, e.g. logged gw http_port.
logged() { grep 'event=started' "$1.log" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# stop NAME: SIGTERM, at most 10 s for it to exit (then SIGKILL); its exit status in STATUS.
stop() {
  kill -TERM "${PID[$1]}" 2>/dev/null
  for _ in $(seq 1 200); do kill -0 "${PID[$1]}" 2>/dev/null || break; sleep 0.05; done
  kill -0 "${PID[$1]}" 2>/dev/null && kill -KILL "${PID[$1]}"
  wait "${PID[$1]}"
  STATUS=$?
}
# metric PORT SERIES: a series' value (exact name and labels) on an admin port, 0 when absent.
metric() {
  curl -s -m 5 "http://127.0.0.1:$1/metrics" |
    awk -v k="$2" '$1 == k { v = $2; f = 1 } END { if (f) printf "%d\n", v; else print 0 }'
}
# wait_metric PORT SERIES VALUE TRIES: polls every 0.1 s (TRIES times at most) until the series equals VALUE.
wait_metric() {
  for _ in $(seq 1 "$4"); do [ "$(metric "$1" "$2")" = "$3" ] && return 0; sleep 0.1; done
  return 1
}
# no_sanitizer_reports NAME [LOG]: checks LOG (default NAME.log) holds no AddressSanitizer or UBSan report.
no_sanitizer_reports() {
  local log=${2:-$1.log}
  if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$log"; then
    fail "$1: no sanitizer reports" none "$(grep -m3 -E 'Sanitizer|runtime error' "$log")"
  else
    pass "$1: no sanitizer reports"
  fi
}

# tls ROLE-ID: a node's [tls] keys from PKI (default $TMP/pki, made by `keyless devpki --nodes`):
# every link between nodes is mutual TLS.
tls() {
  local p=${PKI:-$TMP/pki}
  printf 'ca = %s\ncert = %s\nkey = %s\ncrl = %s\n' "$p/cluster-ca.crt" "$p/nodes/$1.crt" "$p/nodes/$1.key" "$p/crl.pem"
}
# tls_sed ROLE-ID: the same as sed arguments (in the array SEDTLS) for a deploy/ sample's [tls].
tls_sed() {
  local p=${PKI:-$TMP/pki}
  SEDTLS=(-e "s#^ca = .*#ca = $p/cluster-ca.crt#" -e "s#^cert = .*#cert = $p/nodes/$1.crt#"
    -e "s#^key = .*#key = $p/nodes/$1.key#" -e "s#^crl = .*#crl = $p/crl.pem#")
}

# start_core [SERVER-LINE...]: one keyless-core node ($CORE; id 1, alone in its cluster, data in
# $TMP/core, calendar from GENESIS, 2 s ago unless set, keys from PKI) in core.conf, started as
# "core"; bails unless it starts and leads within 10 s. Sets CORE_INT and CORE_REPL.
start_core() {
  : "${GENESIS:=$(($(date +%s) - 2))}"
  local p=${PKI:-$TMP/pki}
  cat >core.conf <<CONF
[node]
id = 1
data_dir = $TMP/core
[cluster]
member1 = 127.0.0.1:0 127.0.0.1:0 127.0.0.1:0
[server]
admin_listen = 127.0.0.1:0
$(printf '%s\n' "$@")
[calendar]
genesis = $GENESIS
[keys]
calendar_auth_cert = $p/calendar-auth.crt
calendar_auth_key = $p/calendar-auth.key
allow_clear_key = yes
[tls]
$(tls core-1)
CONF
  start core "$CORE" core.conf || { cat core.log; bail "keyless-core started"; }
  CORE_INT=$(logged core internal_port) CORE_REPL=$(logged core replication_port)
  wait_until 10 grep -q 'event=leading' core.log || bail "the single core node leads"
}

# start_follower: a keyless-extender ($EXT) following the core (after start_core) over HTTP,
# ksi+tcp and admin ports, its calendar in $TMP/ext-cal, the login ext:"ext key"; in ext.conf,
# started as "ext"; bails unless it starts. Sets EXT_URL, EXT_TCP, EXT_ADM and ECRED.
start_follower() {
  printf 'ext:ext key\n' >ext-users
  cat >ext.conf <<CONF
[server]
http_listen = 127.0.0.1:0
tcp_listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
[calendar]
dir = $TMP/ext-cal
[auth]
users_file = $TMP/ext-users
[replication]
upstream = 127.0.0.1:$CORE_REPL
genesis = $GENESIS
calendar_auth_cert = ${PKI:-$TMP/pki}/calendar-auth.crt
[tls]
$(tls extender-1)
CONF
  start ext "$EXT" ext.conf || { cat ext.log; bail "keyless-extender following the core started"; }
  EXT_URL="http://127.0.0.1:$(logged ext http_port)/"
  EXT_TCP="ksi+tcp://127.0.0.1:$(logged ext tcp_port)"
  EXT_ADM=$(logged ext admin_port)
  ECRED=(--ext-user ext --ext-key "ext key")
}

# aggregator_conf NAME [SED-ARGS...]: $DEPLOY/aggregator.conf for aggregator NAME (certificate
# aggregator-NAME): listen and admin on 127.0.0.1:0, the core (CORE_INT) as parent1; SED-ARGS
# (e.g. -e 's#^listen = .*#listen = ...#') change it further.
aggregator_conf() {
  local name=$1
  shift
  tls_sed "aggregator-$name"
  sed -e 's#^listen = .*#listen = 127.0.0.1:0#' -e 's#^admin_listen = .*#admin_listen = 127.0.0.1:0#' \
    -e "s#^name =.*#name = $name#" -e "s#^parent1 = .*#parent1 = 127.0.0.1:$CORE_INT#" "${SEDTLS[@]}" "$@" \
    "$DEPLOY/aggregator.conf"
}
# gateway_conf NAME PARENT1 [SED-ARGS...]: $DEPLOY/gateway.conf for gateway NAME (certificate
# gateway-NAME): HTTP, ksi+tcp and admin on 127.0.0.1:0, logins from USERS (default $TMP/users),
# parent1 = PARENT1 (HOST:PORT); SED-ARGS change it further.
gateway_conf() {
  local name=$1 parent=$2
  shift 2
  tls_sed "gateway-$name"
  sed -e 's#^http_listen = .*#http_listen = 127.0.0.1:0#' -e 's#^tcp_listen = .*#tcp_listen = 127.0.0.1:0#' \
    -e 's#^admin_listen = .*#admin_listen = 127.0.0.1:0#' -e "s#^users_file = .*#users_file = ${USERS:-$TMP/users}#" \
    -e "s#^name =.*#name = $name#" -e "s#^parent1 = .*#parent1 = $parent#" "${SEDTLS[@]}" "$@" "$DEPLOY/gateway.conf"
}

# quiet_genesis: NOW, and G, a calendar genesis 600 s ago, or 700 s before the last UTC midnight
# if that is later: no midnight falls within the calendar, so its daily publications add nothing
# and `keyless publish --latest` makes the only ones.
quiet_genesis() {
  NOW=$(date +%s)
  G=$((NOW - 600))
  local midnight=$((NOW - NOW % 86400))
  [ "$midnight" -ge "$G" ] && G=$((midnight - 700))
}
# start_ext NAME DIR [PUBFILE]: a keyless-extender ($EXT) on the calendar DIR over HTTP only,
# logins from ./users, serving PUBFILE when given; NAME.conf, NAME.log; bails unless it starts.
# Sets URL (no trailing slash).
start_ext() {
  printf '[server]\nhttp_listen = 127.0.0.1:0\ntcp_listen =\nadmin_listen =\n[calendar]\ndir = %s\n[auth]\nusers_file = users\n' \
    "$2" >"$1.conf"
  [ -n "${3:-}" ] && printf '[publications]\nfile = %s\n' "$3" >>"$1.conf"
  "$EXT" -c "$1.conf" 2>"$1.log" &
  PIDS+=("$!")
  wait_until 10 grep -q 'event=started' "$1.log"
  local port
  port=$(sed -n 's/.*event=started.* http_port=\([0-9]*\).*/\1/p' "$1.log")
  [ -n "$port" ] || bail "extender $1 started: $(short "$(cat "$1.log")")"
  URL="http://127.0.0.1:$port"
}
# append_empty SECOND...: empty rounds appended to the calendar cal ($KL); bails on failure.
append_empty() { for s in "$@"; do "$KL" calendar append -D cal --time "$s" --empty >/dev/null || bail "append $s"; done; }
# publish_setup TEXT: for the publication tests: T (G + 300, after quiet_genesis), P1 (T + 3) and
# P2 (T + 6); the calendar cal from G; a.txt (TEXT) signed in it at T by $MKSIG with the keys in
# pki (sigs/a.txt.ksig); empty rounds up to P1; the directories sigs and out; an extender serving
# the calendar and out/pubs.bin (URL) to the login in CRED. Bails on failure.
publish_setup() {
  T=$((G + 300)) P1=$((G + 303)) P2=$((G + 306))
  run "$KL" calendar init -D cal --genesis "$G"
  [ "$RC" -eq 0 ] || bail "calendar init: $(short "$OUT")"
  printf '%s\n' "$1" >a.txt
  mkdir sigs out
  run "$MKSIG" -D cal --pki pki -o sigs --time "$T" a.txt
  [ "$RC" -eq 0 ] && [ -s sigs/a.txt.ksig ] || bail "mksig at T: $(short "$OUT")"
  append_empty $((T + 1)) $((T + 2)) "$P1"
  printf 'pub:pub key\n' >users
  start_ext ext cal out/pubs.bin
  CRED=(--ext-user pub --ext-key "pub key")
}
# hist_count: the history copies of out/pubs.bin made so far.
hist_count() { find out/history -name '*.bin' 2>/dev/null | wc -l | tr -d ' '; }
