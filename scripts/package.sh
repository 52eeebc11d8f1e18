#!/usr/bin/env bash
# Builds the Debian packages (keyless, libkeyless0, libkeyless-dev) in build/package, with
# the /usr prefix a package installs to. Usage: scripts/package.sh   (prints the .deb paths)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${KL_PACKAGE_BUILD:-$root/build/package}"
cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DKL_WERROR=ON >/dev/null
cmake --build "$dir" -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
(cd "$dir" && cpack -G DEB >/dev/null)
ls "$dir"/*.deb
