#!/usr/bin/env bash
# Installs every Debian 12 package keyless needs to build, test, fuzz and benchmark.
# The one list: README.md and .ci/run both call this script.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config clang libclang-rt-14-dev  # compilers; clang + libFuzzer for KL_FUZZ
  libssl-dev            # OpenSSL 3: hashing, HMAC, CMS, X.509
  libuv1-dev            # event loop of every daemon
  liblmdb-dev lmdb-utils # calendar storage
  libprotobuf-c-dev protobuf-c-compiler  # internal messages
  libraft-dev           # core consensus
  libcmocka-dev         # unit test framework
  libinih-dev           # INI configuration files
  libhttp-parser-dev    # HTTP/1.1 request parsing in the daemons
  openssl curl xxd      # development PKI, system tests
  prometheus            # promtool for the rules test (tests/system/test_monitoring.sh)
  faketime              # clock offsets for test_clock.sh (deploy/local-network KL_CLOCK_OFFSET_*)
  libengine-pkcs11-openssl softhsm2  # signing keys in PKCS#11 tokens (docs/keys.md; test_keys.sh)
  help2man man-db       # man pages from --help (cmake/manpages.cmake), checked by test_cli_help.sh
  chromium nodejs       # the verification page in headless Chromium; its JS against the vectors (test_verify_page.sh)
)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
echo "install-deps: ${#PKGS[@]} packages present"
