#!/usr/bin/env bash
# The newcomer's first run: builds keyless, starts a small network on this machine (one core
# node, one gateway, one extender, a development PKI, data under ./data), signs a file, and
# verifies the signature the two ways an archive would: now with the calendar-auth key, later
# with a publication and hashing alone. The network is stopped at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export KL_BUILD="${KL_BUILD:-$root/build/release}"
data="${KL_DEMO_DIR:-$PWD/data}"
net="$root/deploy/local-network"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Building keyless (Release) in $KL_BUILD"
cmake -S "$root" -B "$KL_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$KL_BUILD" -j"$(nproc 2>/dev/null || echo 2)" --target keyless-core keyless-extender \
  keyless-aggregator keyless-gateway keyless-cli >/dev/null
kl="$KL_BUILD/cli/keyless"

step "Starting a network on 127.0.0.1: a core node (Raft), a gateway, an extender, mutual TLS between them (data in $data)"
KL_TOPOLOGY=small "$net" up "$data"
trap '"$net" down "$data" >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
. "$data/network.env"
gateway="${KL_GATEWAY_HTTPS_URLS%% *}" # https, verified against the network's own CA ($KL_CA)
trust=(-P "$KL_PUBLICATIONS_URL" -V "$KL_TRUST_ANCHOR" --cnstr "$KL_CNSTR")
ext=(-X "$KL_EXTENDER_URL" --ext-user "$KL_USER" --ext-key "$KL_KEY")

doc="$data/hello.txt"
sig="$doc.ksig"
printf 'Hello from keyless, %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" >"$doc"
rm -f "$sig" "$data/hello.extended.ksig"

step "Signing $doc over https: its hash goes to the gateway, which answers within about a second"
"$kl" sign -i "$doc" -S "$gateway" --aggr-user "$KL_USER" --aggr-key "$KL_KEY"

step "What the signature holds: the chains from the document's hash to the calendar"
"$kl" inspect -i "$sig"

step "Verifying now, key-based: the calendar root is signed by the core's calendar-auth key"
"$kl" verify -i "$sig" -f "$doc" --policy key "${trust[@]}"

step "Publishing: the calendar's latest root becomes a publication (normally daily, printed in public)"
sleep 1
"$net" publish "$data"

step "Extending the signature to that publication (the extender supplies the calendar chain)"
"$kl" extend -i "$sig" -o "$data/hello.extended.ksig" "${trust[@]}" "${ext[@]}"

step "Verifying the extended signature against the publication: hashing only, no keys needed"
"$kl" verify -i "$data/hello.extended.ksig" -f "$doc" --policy publication "${trust[@]}"

step "A changed document does not verify"
printf 'tampered\n' >>"$doc"
"$kl" verify -i "$data/hello.extended.ksig" -f "$doc" --policy publication "${trust[@]}" \
  || echo "(exit status $?, as expected)"

printf '\nDone: a local keyless network signed a file, and the signature verified by key and by publication.\n'
printf 'To keep a network running: deploy/local-network up (see README.md).\n'
