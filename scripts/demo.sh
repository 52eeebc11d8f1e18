#!/usr/bin/env bash
# The newcomer's first run: builds keyless and verifies real KSI signatures offline.
# (When the network daemons land, this becomes: start a local network, sign a file, verify it.)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
vectors="${KL_VECTORS:-$root/../shared/ksi-vectors}"
build="$root/build/release"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Building keyless (Release) in $build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target keyless-cli >/dev/null
kl="$build/cli/keyless"
sig="$vectors/valid-signatures/signature-extended.ksig"
pubstr="AAAAAA-DF6NWU-2ANERL-ZQKP5E-WEEQEF-JT76EI-HLTKXG-FQKRZC-ZJJV4E-LAJNHZ-2WY22Z-C3V2JA"

step "A KSI signature issued by Guardtime in 2024, laid out for a person"
"$kl" inspect -i "$sig"

step "Internal consistency: every hash in its chains recomputed"
"$kl" verify -i "$sig" --policy internal

step "Against the publication it was extended to (a string printed in public): hashing only"
"$kl" verify -i "$sig" --pub-str "$pubstr"

step "The same with one character of the publication changed: rejected"
bad="${pubstr%?}A"; [ "$bad" = "$pubstr" ] && bad="${pubstr%?}B"
"$kl" verify -i "$sig" --pub-str "$bad" || echo "(exit status $?, as expected)"

step "Against the wrong document: rejected"
"$kl" verify -i "$sig" -d SHA-256:0000000000000000000000000000000000000000000000000000000000000000 \
  || echo "(exit status $?, as expected)"

step "A publications file, its CMS signature checked against a trust anchor"
"$kl" pubfile -P "$vectors/publications/ksi-publications.bin" -V "$vectors/publications/mock.crt" \
  --cnstr E=publications@guardtime.com

printf '\nDone: keyless verified real KSI signatures offline.\n'
