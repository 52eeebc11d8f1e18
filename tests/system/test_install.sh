#!/usr/bin/env bash
# The client library as an archive system gets it (issue 13): `cmake --install` of this build into
# a scratch prefix, then
#   1. the install: libkeyless.so.* with its SONAME, client headers only (none of the daemon
#      toolkit's, none that include libuv, inih or http-parser), keyless.pc, the CMake package;
#   2. libkeyless.so needs no libuv, inih or http-parser (readelf -d), exports every KL_API
#      function of the installed headers, no internal (kl__) symbol and none of the daemon
#      toolkit's (nm -D); each installed header compiles on its own;
#   3. examples/sign_file.c built with cc $(pkg-config --cflags --libs keyless), and
#      examples/verify_file.c with a tiny CMake project using find_package(keyless);
#   4. against a small deploy/local-network (one core node, a gateway, an extender): a file
#      signed by sign_file, verified by verify_file (internal, then with the publications file)
#      and by `keyless verify`; a tampered file, a wrong key, a broken signature all fail as
#      documented, and no temporary file is left behind.
# Every wait is bounded. Usage: test_install.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
NETSCRIPT="$SRC/deploy/local-network"
. "$HERE/harness.sh" install
NET="$TMP/net"
P="$TMP/prefix"
unset KSI_CONF KL_AGGR_KEY KSI_AGGR_KEY CMAKE_PREFIX_PATH
export KL_BUILD="$BUILD" KL_TOPOLOGY=small KL_BASE_PORT=$((20000 + ($$ % 90) * 100))
trap '"$NETSCRIPT" down "$NET" >/dev/null 2>&1; cleanup' EXIT
bail() { echo "not ok - $1"; echo "$PASSED passed, $((FAILED + 1)) failed"; exit 1; }

# ---- 1. the install ----
timeout 120 cmake --install "$BUILD" --prefix "$P" >install.log 2>&1 || { cat install.log; bail "cmake --install"; }
pass "cmake --install into a scratch prefix"
LIBDIR=$(dirname "$(find "$P" -name 'libkeyless.so' | head -n 1)")
[ -n "$LIBDIR" ] && [ -d "$LIBDIR" ] || bail "libkeyless.so installed"
check "libkeyless.so is a link to the versioned library" "libkeyless.so.0" "$(readlink "$LIBDIR/libkeyless.so")"
check "SONAME libkeyless.so.0" "libkeyless.so.0" \
  "$(readelf -d "$LIBDIR/libkeyless.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
for h in err hash sig verify pubfile signclient extclient version; do
  [ -f "$P/include/keyless/$h.h" ] || fail "client header keyless/$h.h installed" present missing
done
pass "client headers installed"
leaked=""
for h in config daemon frameclient log metrics net round tier tls users; do
  [ -e "$P/include/keyless/$h.h" ] && leaked="$leaked $h.h"
done
check "no daemon toolkit header installed" "" "$leaked"
check "no installed header includes uv.h, ini.h or http_parser.h" "" \
  "$(grep -lE '#[[:space:]]*include[[:space:]]*[<"](uv|ini|http_parser)\.h' "$P"/include/keyless/*.h)"
bad=""
for h in "$P"/include/keyless/*.h; do
  printf '#include <keyless/%s>\n' "${h##*/}" | cc -std=c11 -Wall -Werror -fsyntax-only -x c - -I"$P/include" \
    >/dev/null 2>&1 || bad="$bad ${h##*/}"
done
check "each installed header compiles on its own with only the prefix's include/" "" "$bad"
PCDIR=$(dirname "$(find "$P" -name keyless.pc | head -n 1)")
[ -f "$PCDIR/keyless.pc" ] || bail "keyless.pc installed"
[ -f "$LIBDIR/cmake/keyless/keylessConfig.cmake" ] && [ -f "$LIBDIR/cmake/keyless/keylessConfigVersion.cmake" ]
check "CMake package config and version file installed" 0 "$?"

# ---- 2. dependencies and exported symbols ----
NEEDED=$(readelf -d "$LIBDIR/libkeyless.so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
check_has "libkeyless.so needs libcrypto" "libcrypto.so" "$NEEDED"
case "$NEEDED" in *uv*|*inih*|*http_parser*) fail "libkeyless.so needs no libuv/inih/http-parser" "none" "$NEEDED" ;;
  *) pass "libkeyless.so needs no libuv/inih/http-parser ($NEEDED)" ;; esac
SYMS=$(nm -D --defined-only "$LIBDIR/libkeyless.so" | awk '{print $3}')
check_has "kl_sign_hashes exported" $'\nkl_sign_hashes\n' $'\n'"$SYMS"$'\n'
check "no internal (kl__) symbol exported" "" "$(printf '%s\n' "$SYMS" | grep '^kl__')"
missing=$(grep -ho 'KL_API[^(]*(' "$P"/include/keyless/*.h | grep -o 'kl_[a-z0-9_]*($' | tr -d '(' | sort -u |
  comm -23 - <(printf '%s\n' "$SYMS" | sort -u) | tr '\n' ' ')
check "every KL_API function of the installed headers is exported" "" "$missing"
DSYMS=$(nm --defined-only "$BUILD/lib/daemon/libkeyless_daemon.a" 2>/dev/null | awk '$2 ~ /^[TDRB]$/ {print $3}' | sort -u)
[ -n "$DSYMS" ] || bail "the daemon toolkit's symbols listed (nm of libkeyless_daemon.a)"
check "no symbol of the daemon toolkit (libkeyless_daemon.a) exported" "" \
  "$(comm -12 <(printf '%s\n' "$SYMS" | sort -u) <(printf '%s\n' "$DSYMS"))"

# ---- 3. the examples, built as an outsider would ----
# A sanitizer build (KL_SANITIZE) installs a library that needs the ASan/UBSan runtimes: the
# programs linking it must then be built with them too (the runtime has to come first).
SAN=""
case "$NEEDED" in *libasan*|*libubsan*) SAN="-fsanitize=address,undefined" ;; esac
export PKG_CONFIG_PATH="$PCDIR"
check "pkg-config --modversion keyless" "$(sed -n 's/^project(keyless VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")" \
  "$(pkg-config --modversion keyless 2>&1)"
mkdir -p ex
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror $SAN -o ex/sign_file "$SRC/examples/sign_file.c" $(pkg-config --cflags --libs keyless) \
  >cc.log 2>&1
check "sign_file.c builds with cc \$(pkg-config --cflags --libs keyless)" 0 "$?"
[ -x ex/sign_file ] || { cat cc.log; bail "sign_file built"; }
(timeout 120 cmake -S "$P/share/doc/keyless/examples" -B exb -DCMAKE_PREFIX_PATH="$P" \
  -DCMAKE_C_FLAGS="-Werror $SAN" -DCMAKE_EXE_LINKER_FLAGS="$SAN" &&
  timeout 240 cmake --build exb) >cmake.log 2>&1
check "the installed examples' CMake project (find_package(keyless)) builds" 0 "$?"
[ -x exb/verify_file ] || { tail -n 20 cmake.log; bail "verify_file built"; }
check_has "verify_file links the installed libkeyless" "$LIBDIR/libkeyless.so.0" \
  "$(LD_LIBRARY_PATH="$LIBDIR" ldd exb/verify_file)"
export LD_LIBRARY_PATH="$LIBDIR"
SIGN=ex/sign_file
VERIFY=exb/verify_file

# ---- 4. sign and verify against a real network ----
timeout 120 "$NETSCRIPT" up "$NET" >up.log 2>&1 || { cat up.log; bail "deploy/local-network up (small)"; }
pass "deploy/local-network up (small)"
# shellcheck disable=SC1091
. "$NET/network.env"
GW=${KL_GATEWAY_URLS%% *}
mkdir -p docs
head -c 100000 /dev/urandom >docs/report.bin
out=$(timeout 60 "$SIGN" -S "$GW" -u "$KL_USER" -k "$KL_KEY" docs/report.bin 2>&1)
check "sign_file: exit 0" 0 "$?"
check_has "sign_file: says what it wrote" "docs/report.bin.ksig" "$out"
[ -s docs/report.bin.ksig ] || bail "docs/report.bin.ksig written"
out=$("$VERIFY" docs/report.bin docs/report.bin.ksig 2>&1)
check "verify_file (internal policy): exit 0" 0 "$?"
check_has "verify_file (internal policy): OK" "OK (internal policy)" "$out"
"$BUILD/cli/keyless" verify -i docs/report.bin.ksig -f docs/report.bin --policy internal >kv.out 2>&1
check "keyless verify accepts the example's signature" 0 "$?"
timeout 20 curl -sf -o pub.bin "$KL_PUBLICATIONS_URL"
check "the publications file fetched" 0 "$?"
out=$("$VERIFY" -P pub.bin -V "$KL_TRUST_ANCHOR" -c "$KL_CNSTR" docs/report.bin docs/report.bin.ksig 2>&1)
check "verify_file with the publications file: exit 0" 0 "$?"
check_has "verify_file with the publications file: OK" "OK (" "$out"
out=$("$VERIFY" -P pub.bin -V "$KL_TRUST_ANCHOR" -c "E=someone@else.example" docs/report.bin docs/report.bin.ksig 2>&1)
check "verify_file: a publications file from another signer is refused (exit 2)" 2 "$?"
check_has "verify_file: ... and says so" "publications file pub.bin" "$out"

cp docs/report.bin docs/tampered.bin
printf 'x' | dd of=docs/tampered.bin bs=1 seek=5000 conv=notrunc status=none
out=$("$VERIFY" docs/tampered.bin docs/report.bin.ksig 2>&1)
check "a tampered file fails (exit 1)" 1 "$?"
check_has "a tampered file fails with GEN-01" "GEN-01" "$out"
out=$("$VERIFY" -P pub.bin -V "$KL_TRUST_ANCHOR" -c "$KL_CNSTR" docs/tampered.bin docs/report.bin.ksig 2>&1)
check "a tampered file fails with the publications file too (exit 1)" 1 "$?"

echo "other" >docs/other.txt
out=$(timeout 60 "$SIGN" -S "$GW" -u "$KL_USER" -k "wrong-key" docs/other.txt 2>&1)
rc=$?
check "sign_file with a wrong key: exit 1" 1 "$rc"
[ -e docs/other.txt.ksig ]
check "sign_file with a wrong key: no .ksig written" 1 "$?"
out=$(timeout 60 "$SIGN" -S "$GW" -u "$KL_USER" -k "$KL_KEY" -o docs/nodir/x.ksig docs/other.txt 2>&1)
check "sign_file into a missing directory: exit 2" 2 "$?"
check_has "sign_file into a missing directory: names the file" "docs/nodir/x.ksig" "$out"
out=$("$SIGN" -S "$GW" docs/missing.txt 2>&1)
check "sign_file of a missing file: exit 2" 2 "$?"
check_has "sign_file of a missing file: names it" "docs/missing.txt" "$out"
head -c 200 docs/report.bin.ksig >docs/broken.ksig
out=$("$VERIFY" docs/report.bin docs/broken.ksig 2>&1)
check "verify_file of a truncated signature: exit 2" 2 "$?"
check_has "verify_file of a truncated signature: names it" "docs/broken.ksig" "$out"
check "no temporary file left behind" "" "$(find docs -name '*.tmp.*')"

"$NETSCRIPT" down "$NET" >/dev/null 2>&1
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
