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
# check_has NAME NEEDLE HAYSTACK
check_has() {
  case "$3" in *"$2"*) pass "$1" ;; *) fail "$1" "to contain '$2'" "'$(short "$3")'" ;; esac
}
