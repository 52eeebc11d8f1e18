# shellcheck shell=bash
# Shared by the bench/run_*_bench.sh scripts (sourced, not run; owned here, each script keeps its
# own measurements): the build directory argument, the machine header, the [tls] sections, the
# modes, stopping a daemon, reading its event=started line, and starting keyless-core nodes on
# free loopback ports without losing a run to a port taken meanwhile.
# Usage: . "$HERE/lib.sh"   (HERE: the bench directory); TMP must be set before the daemon helpers.

BENCH_SCRIPT=$(basename "$0")

# bench_args DEFAULT_BUILD [BUILD_DIR] [-- ARGS...]: BUILD (absolute; DEFAULT_BUILD unless the
# first argument names one) and ARGS, the arguments after "--" (for the bench program).
# Returns 1 when the build directory does not exist.
bench_args() {
  BUILD=$1
  shift
  if [ $# -gt 0 ] && [ "$1" != "--" ]; then BUILD=$1; shift; fi
  if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
  ARGS=("$@")
  BUILD=$(cd "$BUILD" && pwd)
}

# bench_out: OUT (when set) made and made absolute; exits 2 if it cannot be.
bench_out() {
  if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2; fi
}

# bench_build_type: BUILD_TYPE of BUILD's cache, with a warning unless it is Release.
bench_build_type() {
  BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
  [ "$BUILD_TYPE" = Release ] || echo "WARNING: $BUILD is a '$BUILD_TYPE' build, not Release"
}

# bench_modes: MODES ("tls", "plain" or both, in order) from KL_BENCH_TLS (default 1); exits 2 on
# a value that is neither.
bench_modes() {
  local m
  MODES=""
  for m in ${KL_BENCH_TLS:-1}; do
    case $m in 1|yes|tls) MODES="$MODES tls" ;; 0|no|plain) MODES="$MODES plain" ;;
      *) echo "$0: KL_BENCH_TLS: '$m' is neither 1 nor 0" >&2; exit 2 ;; esac
  done
  MODES=${MODES# }
}

# bench_machine KERNEL_MORE: the "== machine ==" header up to the build line; KERNEL_MORE ends
# the kernel line (e.g. "; open files limit 1024").
bench_machine() {
  echo "== machine =="
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), nproc $(nproc)"
  echo "kernel: $(uname -r)$1"
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "build: $BUILD ($BUILD_TYPE)"
}
# The kernel line's parts.
tmpdir_fs() { df -T "$TMP" | awk 'NR == 2 {print $2 " on " $1}'; }

# tls_section MODE ROLE-ID: a node's [tls] section: mutual TLS with its certificate from
# `keyless devpki --nodes` in $TMP/pki (MODE tls), or [tls] insecure = yes (MODE plain).
tls_section() {
  if [ "$1" = tls ]; then
    printf '[tls]\nca = %s\ncert = %s\nkey = %s\ncrl = %s\n' "$TMP/pki/cluster-ca.crt" "$TMP/pki/nodes/$2.crt" \
      "$TMP/pki/nodes/$2.key" "$TMP/pki/crl.pem"
  else
    printf '[tls]\ninsecure = yes\n'
  fi
}

# stop_pid PID (a child of this shell): TERM, at most 10 s to exit, then KILL; its exit status in STOP_RC.
STOP_RC=
stop_pid() {
  local p=$1
  STOP_RC=
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  STOP_RC=$?
}

# started_field LOG FIELD: the value of FIELD in LOG's event=started line.
started_field() { grep 'event=started' "$1" | head -n1 | sed -n "s/.* $2=\([0-9]*\).*/\1/p"; }
# wait_started LOG PID [TRIES]: 0 once LOG has event=started, 1 if PID exits first or after
# TRIES (default 100) polls 0.05 s apart.
wait_started() {
  for _ in $(seq 1 "${3:-100}"); do
    grep -q 'event=started' "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# ---- free ports ----
# A port found free may be taken by another process (a daemon on port 0, an outgoing connection)
# before a node binds it; the blocks are taken below the kernel's ephemeral range, where that is
# rarer, and a node that exits with "address already in use" is started again on a fresh block.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT_LO=10000 PORT_HI=32000
LIB_PIDS=() # every daemon started here
base=$((PORT_LO + ($$ * 17) % (PORT_HI - PORT_LO)))
# next_free_base OFFSET...: moves base on (by 50) to a block where base + OFFSET is free for
# every OFFSET; 1 when none is found in 200 steps.
next_free_base() {
  local off ok
  for _ in $(seq 1 200); do
    base=$((base + 50))
    [ $((base + 100)) -gt $PORT_HI ] && base=$PORT_LO
    ok=1
    for off in "$@"; do port_free $((base + off)) || { ok=0; break; }; done
    [ $ok -eq 1 ] && return 0
  done
  echo "no free loopback ports"
  return 1
}
# bind_failed LOG PID: PID has exited and LOG says a port it was given was in use.
bind_failed() { ! kill -0 "$2" 2>/dev/null && grep -qi 'address already in use' "$1"; }
# retire_log LOG TRY: keeps a failed try's log as LOG.tryN (the next try starts a new one).
retire_log() { mv "$1" "$1.try$2" 2>/dev/null; echo "($(basename "$1"): a port chosen free was taken before the node bound it; started again on fresh ports)"; }

# start_core1 NAME MODE [NOTE]: one keyless-core node ($CORE), alone in its cluster, on a free
# block of loopback ports (base: raft, +1 internal, +2 replication, +3 metrics) with its node links
# in MODE (tls_section), $TMP/NAME.conf, data in $TMP/data-NAME, log $TMP/NAME.log; waits (15 s)
# until it leads (keyless_core_raft_role 3). Up to 5 tries when a port was taken meanwhile. Sets
# C1_PID (also added to LIB_PIDS, for the script's cleanup), C1_INTERNAL and C1_METRICS
# (HOST:PORT); 1 if it does not lead. NOTE goes into the configuration's first line.
start_core1() {
  local name=$1 mode=$2 try role
  for try in 1 2 3 4 5; do
    next_free_base 0 1 2 3 || return 1
    rm -rf "$TMP/data-$name"
    C1_INTERNAL=127.0.0.1:$((base + 1)) C1_METRICS=127.0.0.1:$((base + 3))
    cat >"$TMP/$name.conf" <<CONF
# written by $BENCH_SCRIPT${3:+ ($3)}; every other key is deploy/core.conf's default (fsync on)
[node]
id = 1
data_dir = $TMP/data-$name
[cluster]
member1 = 127.0.0.1:$base $C1_INTERNAL 127.0.0.1:$((base + 2))
[server]
metrics_listen = $C1_METRICS
[calendar]
genesis = $(($(date +%s) - 2))
[keys]
calendar_auth_cert = $TMP/pki/calendar-auth.crt
calendar_auth_key = $TMP/pki/calendar-auth.key
allow_clear_key = yes
$(tls_section "$mode" core-1)
CONF
    "$CORE" -c "$TMP/$name.conf" >>"$TMP/$name.log" 2>&1 &
    C1_PID=$!
    LIB_PIDS+=("$C1_PID")
    role=
    for _ in $(seq 1 150); do
      role=$(curl -s -m 2 "http://$C1_METRICS/metrics" | awk '$1 == "keyless_core_raft_role" {print $2}')
      [ "$role" = 3 ] && return 0
      kill -0 "$C1_PID" 2>/dev/null || break
      sleep 0.1
    done
    bind_failed "$TMP/$name.log" "$C1_PID" || return 1
    wait "$C1_PID" 2>/dev/null
    retire_log "$TMP/$name.log" "$try"
  done
  return 1
}

# keep_outputs PRUNE_ARGS...: copies every file of TMP but those find(1) prunes with
# PRUNE_ARGS (e.g. -path './data-*' -prune -o) into OUT, when OUT is set.
keep_outputs() {
  [ -n "${OUT:-}" ] || return 0
  (cd "$TMP" && find . "$@" -type f -print |
    while read -r f; do mkdir -p "$OUT/$(dirname "$f")" && cp "$f" "$OUT/$f"; done)
  echo "outputs kept in $OUT"
}

# start_aggregator NAME MODE PARENT NOTE [ROUND-LINE... -- LIMITS-LINE...]: keyless-aggregator
# ($AGG) with its children and admin ports on 127.0.0.1:0 under PARENT (HOST:PORT), [round] name
# bench-agg and ROUND-LINEs, a [limits] section of LIMITS-LINEs (none without them), node links in
# MODE; $TMP/NAME.conf, log $TMP/NAME.log; waits (5 s) for its start. NOTE goes into the
# configuration's first line. Sets A_PID (also added to LIB_PIDS), A_PORT and A_ADMIN; 1 if it
# did not start.
start_aggregator() {
  local name=$1 mode=$2 parent=$3 note=$4 limits=()
  shift 4
  local round=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do round+=("$1"); shift; done
  [ $# -gt 0 ] && shift && limits=("$@")
  {
    echo "# written by $BENCH_SCRIPT${note:+ ($note)}; every other key is deploy/aggregator.conf's default"
    printf '[server]\nlisten = 127.0.0.1:0\nadmin_listen = 127.0.0.1:0\n[round]\nname = bench-agg\n'
    [ ${#round[@]} -eq 0 ] || printf '%s\n' "${round[@]}"
    printf '[parents]\nparent1 = %s\n' "$parent"
    [ ${#limits[@]} -eq 0 ] || printf '[limits]\n%s\n' "$(printf '%s\n' "${limits[@]}")"
    tls_section "$mode" aggregator-1
  } >"$TMP/$name.conf"
  "$AGG" -c "$TMP/$name.conf" >>"$TMP/$name.log" 2>&1 &
  A_PID=$!
  LIB_PIDS+=("$A_PID")
  wait_started "$TMP/$name.log" "$A_PID" || return 1
  A_PORT=$(started_field "$TMP/$name.log" port)
  A_ADMIN=$(started_field "$TMP/$name.log" admin_port)
}
