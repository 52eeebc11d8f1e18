#!/usr/bin/env bash
# The Debian packages, as an operator gets them: built with CPack from this build tree
# (keyless, libkeyless0, libkeyless-dev), installed with dpkg on this machine, used (the
# packaged programs run a small deploy/local-network from /usr/share/keyless, sign and verify a
# file; an example is built against the installed library with pkg-config), then purged.
# It changes the machine (packages, system users), so it runs only as root, with dpkg and
# KL_PACKAGE_TEST=1 (scripts/test.sh sets it for its Release build when run as root), and never
# over a keyless package it did not install itself. Otherwise it is skipped (exit 77).
# Usage: test_package.sh BUILD_DIR SOURCE_DIR
set -u
BUILD="$1" SRC="$2"
skip() { echo "skipped: $*"; exit 77; }
[ "${KL_PACKAGE_TEST:-0}" = 1 ] || skip "KL_PACKAGE_TEST=1 not set (the test installs packages on this machine)"
[ "$(id -u)" = 0 ] || skip "not root"
command -v dpkg >/dev/null && command -v cpack >/dev/null || skip "no dpkg or cpack"
for p in keyless libkeyless0 libkeyless-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" && skip "$p is already installed here"
done
. "$(dirname "$0")/harness.sh" package
PKGS=(keyless libkeyless-dev libkeyless0)
purge() { dpkg --purge "${PKGS[@]}" >purge.log 2>&1; }
bail() { fail "$1" "success" "failure"; echo "$PASSED passed, $FAILED failed"; exit 1; }
trap '[ -n "${NET:-}" ] && KL_BUILD=/usr/bin /usr/share/keyless/local-network down "$NET" >/dev/null 2>&1; purge; cleanup' EXIT

# ---- 1. build the packages ----
timeout 300 cpack --config "$BUILD/CPackConfig.cmake" -G DEB -B "$TMP/debs" \
  -D CPACK_PACKAGING_INSTALL_PREFIX=/usr >cpack.log 2>&1
check "cpack -G DEB: exit 0" 0 "$?"
debs=("$TMP"/debs/*.deb)
check "three packages built" 3 "${#debs[@]}"
[ "${#debs[@]}" = 3 ] || { tail -n 20 cpack.log; bail "packages built"; }
check "keyless depends on libraft and liblmdb" 2 \
  "$(dpkg-deb -f "$TMP"/debs/keyless_*.deb Depends | grep -oE 'libraft2|liblmdb0' | wc -l)"
check "libkeyless-dev depends on libkeyless0 of the same version" "libkeyless0 (= $(dpkg-deb -f "$TMP"/debs/libkeyless0_*.deb Version))" \
  "$(dpkg-deb -f "$TMP"/debs/libkeyless-dev_*.deb Depends)"
case "$(dpkg-deb -f "$TMP"/debs/libkeyless0_*.deb Depends)" in
  *libuv*|*inih*|*http-parser*) fail "libkeyless0 needs no libuv, inih or http-parser" "none" "$(dpkg-deb -f "$TMP"/debs/libkeyless0_*.deb Depends)" ;;
  *) pass "libkeyless0 needs no libuv, inih or http-parser" ;;
esac

# ---- 2. install ----
dpkg -i "${debs[@]}" >install.log 2>&1
check "dpkg -i: exit 0" 0 "$?"
[ -x /usr/bin/keyless ] || { cat install.log; bail "/usr/bin/keyless installed"; }
check_has "keyless --version from the package" "keyless $(dpkg-deb -f "$TMP"/debs/keyless_*.deb Version)" \
  "$(/usr/bin/keyless --version)"
for d in core aggregator gateway extender; do
  getent passwd "keyless-$d" >/dev/null
  check "postinst made the system user keyless-$d" 0 "$?"
  check "postinst made /var/lib/keyless/$d (0700, keyless-$d)" "700 keyless-$d" \
    "$(stat -c '%a %U' "/var/lib/keyless/$d" 2>&1)"
  check "keyless-$d.service runs /usr/bin/keyless-$d" "ExecStart=/usr/bin/keyless-$d -c /etc/keyless/$d.conf" \
    "$(grep '^ExecStart=' "/usr/lib/systemd/system/keyless-$d.service")"
  /usr/bin/keyless-$d --version >/dev/null
  check "keyless-$d --version runs" 0 "$?"
done
[ -s /usr/share/man/man1/keyless-sign.1 ] && [ -s /usr/share/man/man8/keyless-core.8 ]
check "man pages installed" 0 "$?"
[ -s /usr/share/bash-completion/completions/keyless ]
check "bash completion installed" 0 "$?"
check "pkg-config finds the installed library" "$(dpkg-deb -f "$TMP"/debs/libkeyless0_*.deb Version)" \
  "$(pkg-config --modversion keyless 2>&1)"
cc -std=c11 -Wall -Werror -o verify_file /usr/share/doc/keyless/examples/verify_file.c \
  $(pkg-config --cflags --libs keyless) >cc.log 2>&1
check "the packaged example builds against the packaged library" 0 "$?"

# ---- 3. use: a small network from the packaged programs ----
NET="$TMP/net"
export KL_BUILD=/usr/bin KL_TOPOLOGY=small KL_BASE_PORT=$((23000 + ($$ % 60) * 100))
timeout 120 /usr/share/keyless/local-network up "$NET" >up.log 2>&1
check "the packaged local-network starts the packaged daemons" 0 "$?"
[ -f "$NET/network.env" ] || { tail -n 20 up.log; bail "network up"; }
. "$NET/network.env"
check "the network runs /usr/bin/keyless-core" "/usr/bin/keyless-core" \
  "$(readlink "/proc/$(cat "$NET/run/core1.pid")/exe")"
head -c 3000 /dev/urandom >doc.bin
timeout 60 /usr/bin/keyless sign -S "${KL_GATEWAY_URLS%% *}" --aggr-user "$KL_USER" --aggr-key "$KL_KEY" \
  -i doc.bin -o doc.bin.ksig >sign.log 2>&1
check "keyless sign through the packaged gateway: exit 0" 0 "$?"
/usr/bin/keyless verify -i doc.bin.ksig -f doc.bin --policy internal >verify.log 2>&1
check "keyless verify: exit 0" 0 "$?"
out=$(./verify_file doc.bin doc.bin.ksig 2>&1)
check "the example (linked with libkeyless.so.0) verifies it too" 0 "$?"
echo x >>doc.bin
/usr/bin/keyless verify -i doc.bin.ksig -f doc.bin --policy internal >verify2.log 2>&1
check "a changed document fails (exit 6)" 6 "$?"
/usr/share/keyless/local-network down "$NET" >down.log 2>&1
check "local-network down" 0 "$?"
NET=""

# ---- 4. purge ----
purge
check "dpkg --purge: exit 0" 0 "$?"
left=0
for p in "${debs[@]}"; do
  while read -r f; do
    [ -f "$f" ] || [ -L "$f" ] && { left=$((left + 1)); echo "# left behind: $f"; }
  done < <(dpkg-deb -c "$p" | awk '{print $6}' | sed 's|^\.||' | grep -v '/$')
done
check "no packaged file left after purge" 0 "$left"
check "dpkg no longer knows keyless" "" "$(dpkg-query -W -f='${Status}' keyless 2>/dev/null | grep 'ok installed')"
[ -d /var/lib/keyless/core ]
check "purge keeps /var/lib/keyless (calendar data is never deleted by the package manager)" 0 "$?"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
