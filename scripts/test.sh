#!/usr/bin/env bash
# Builds keyless and runs every test, twice: a Release build with warnings as errors, and an
# ASan+UBSan build. With KL_FUZZ_TIME=N (seconds, default 10; 0 skips) it also builds the
# libFuzzer drivers with clang and runs each for N seconds from the vector seeds.
# Usage: scripts/test.sh            (from the repository root or anywhere)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
jobs="$(nproc 2>/dev/null || echo 2)"
fuzz_time="${KL_FUZZ_TIME:-10}"

run() { # name, cmake options...
  local name="$1"; shift
  local dir="$root/build/$name"
  echo "==> $name: configure and build ($dir)"
  cmake -S "$root" -B "$dir" -DKL_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs" >/dev/null
  echo "==> $name: test"
  (cd "$dir" && ctest --output-on-failure -j"$jobs" -LE fuzz)
}

# As root, the Release run also builds, installs, uses and purges the Debian packages
# (tests/system/test_package.sh): CI's machine is fresh; set KL_PACKAGE_TEST=0 to keep yours as is.
KL_PACKAGE_TEST="${KL_PACKAGE_TEST:-$([ "$(id -u)" = 0 ] && echo 1 || echo 0)}" run release -DCMAKE_BUILD_TYPE=Release
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run asan -DCMAKE_BUILD_TYPE=Debug -DKL_SANITIZE=ON

if [ "$fuzz_time" != "0" ] && command -v clang >/dev/null; then
  dir="$root/build/fuzz"
  echo "==> fuzz: build with clang, run each driver ${fuzz_time}s"
  cmake -S "$root" -B "$dir" -DCMAKE_C_COMPILER=clang -DKL_FUZZ=ON -DKL_WERROR=ON \
    -DKL_FUZZ_TIME="$fuzz_time" >/dev/null
  cmake --build "$dir" -j"$jobs" >/dev/null
  (cd "$dir" && ctest --output-on-failure -L fuzz)
fi
echo "==> all tests passed"
