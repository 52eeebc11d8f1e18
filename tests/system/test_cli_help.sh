#!/usr/bin/env bash
# The help an operator reads: every `keyless` subcommand's --help (exit 0, on stdout, ending with
# the one exit-status table of `keyless --help`), an unknown option (exit 3 everywhere), the man
# pages generated from those texts (one per subcommand and daemon), docs/cli.md listing every
# status of the table, and the bash completion (subcommands and options from --help).
# Usage: test_cli_help.sh KEYLESS SOURCE_DIR BUILD_DIR DAEMON...
# Prints one "ok"/"not ok" line per check and "N passed, M failed".
set -u
KEYLESS="$1" SRC="$2" BUILD="$3"
shift 3
DAEMONS=("$@")
. "$(dirname "$0")/harness.sh" cli-help

# The table: from "Exit status" to the end of `keyless --help`.
"$KEYLESS" --help >main.txt 2>main.err
check "keyless --help: exit 0" 0 "$?"
sed -n '/^Exit status/,$p' main.txt >table.txt
rows=$(grep -cE '^  [0-9]+ ' table.txt)
check "keyless --help: an exit-status table with 13 rows" 13 "$rows"
mapfile -t cmds < <(sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p' main.txt)
[ "${#cmds[@]}" -ge 10 ] && pass "keyless --help lists ${#cmds[@]} subcommands" \
  || fail "keyless --help lists the subcommands" ">= 10" "${#cmds[@]}"

for c in "${cmds[@]}"; do
  "$KEYLESS" "$c" --help >"help-$c.txt" 2>"help-$c.err"
  check "keyless $c --help: exit 0" 0 "$?"
  check "keyless $c --help: nothing on stderr" "" "$(cat "help-$c.err")"
  sed -n '/^Exit status/,$p' "help-$c.txt" >"table-$c.txt"
  if cmp -s table.txt "table-$c.txt"; then pass "keyless $c --help: the one exit-status table"
  else fail "keyless $c --help: the one exit-status table" "the table of keyless --help" \
    "$(diff table.txt "table-$c.txt" | head -3)"; fi
  out=$("$KEYLESS" "$c" --no-such-option 2>&1 >/dev/null)
  check "keyless $c --no-such-option: exit 3 (usage)" 3 "$?"
  [ -n "$out" ] && pass "keyless $c --no-such-option: says why" \
    || fail "keyless $c --no-such-option: says why" "a message" "nothing"
done
"$KEYLESS" no-such-command >/dev/null 2>&1
check "keyless no-such-command: exit 3" 3 "$?"

# docs/cli.md: every status of the table, with the same number.
for code in $(awk '/^  [0-9]+ /{print $1}' table.txt); do
  grep -qE "^\| *$code *\|" "$SRC/docs/cli.md" && pass "docs/cli.md lists exit status $code" \
    || fail "docs/cli.md lists exit status $code" "a '| $code |' row" "none"
done

# Man pages (built when help2man is installed: cmake/manpages.cmake).
if command -v help2man >/dev/null; then
  for c in "${cmds[@]}"; do
    m="$BUILD/man/man1/keyless-$c.1"
    if [ -s "$m" ] && grep -q '^\.SH NAME' "$m" && grep -q "keyless-$c" "$m"; then
      pass "man page keyless-$c(1)"
    else fail "man page keyless-$c(1)" "$m with a NAME section" "$(ls -l "$m" 2>&1)"; fi
  done
  grep -q 'Exit status' "$BUILD/man/man1/keyless-sign.1" && pass "keyless-sign(1) has the exit statuses" \
    || fail "keyless-sign(1) has the exit statuses" "an Exit status section" "none"
  for d in "${DAEMONS[@]}"; do
    n=$(basename "$d")
    m="$BUILD/man/man8/$n.8"
    grep -qE -- 'check(\\)?-config' "$m" 2>/dev/null && pass "man page $n(8)" \
      || fail "man page $n(8)" "$m documenting --check-config" "$(ls -l "$m" 2>&1)"
  done
else
  echo "# help2man not installed: man pages not checked"
fi

# Bash completion, as bash calls it.
complete_words() { # WORD...: what _keyless (or the daemon completion) offers for the last word
  bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
           f=$(complete -p "$(basename "$1")" | sed -E "s/.*-F ([^ ]+) .*/\1/"); "$f"
           printf "%s\n" "${COMPREPLY[@]}"' _ "$SRC/deploy/completion/keyless.bash" "$@"
}
got=$(complete_words "$KEYLESS" si)
check "completion: keyless si<TAB> → sign" "sign" "$got"
got=$(complete_words "$KEYLESS" sign --retry)
check "completion: keyless sign --retry<TAB> → --retry-for" "--retry-for" "$got"
got=$(complete_words "$KEYLESS" verify --)
check_has "completion: keyless verify --<TAB> offers --publications-file-no-verify" \
  "--publications-file-no-verify" "$got"
got=$(complete_words "$KEYLESS" calendar a)
check "completion: keyless calendar a<TAB> → append audit" "append audit" "$(echo $got)"
if [ "${#DAEMONS[@]}" -gt 0 ]; then
  got=$(complete_words "${DAEMONS[0]}" --check)
  check "completion: $(basename "${DAEMONS[0]}") --check<TAB> → --check-config" "--check-config" "$got"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
