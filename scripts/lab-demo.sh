#!/usr/bin/env bash
# rampart's main job, end to end on one machine: take a site with its
# intents ([[expect]]: what must and must not be reachable), build the
# whole site for real in network namespaces (every node with its plan
# applied, guests, WireGuard over wireguard-go, road warriors, an
# internet), send every intent as real packets, print the matrix side by
# side with the simulator's answer, and remove the lab again.
#
#   bash scripts/lab-demo.sh [SITE]     (default: labs/wireguard-private-cluster)
#
# As root it installs the lab's tools if they are missing (iproute2,
# nftables, wireguard-go, wireguard-tools; apt-get). Without root (or
# when they cannot be installed) it says so and falls back to
# `rampart verify` (the simulator alone).
set -euo pipefail
cd "$(dirname "$0")/.."
site=${1:-labs/wireguard-private-cluster}
[ -d "$site" ] || site=crates/cli/tests/fixtures/lab-mesh
cargo build --release -q -p rampart-cli
r=target/release/rampart

simulator_only() {
  echo "$1: falling back to the simulator alone (rampart verify)"
  if $r verify --help >/dev/null 2>&1; then
    echo; echo "== rampart verify $site"
    exec $r verify "$site"
  fi
  echo "(this build has no \`rampart verify\` yet; checking the site instead)"
  exec $r check "$site"
}

if [ "$(id -u)" != 0 ]; then
  simulator_only "not root: the lab needs network namespaces"
fi
# A fresh Debian machine lacks the lab's tools: as root, install them
# (saying so) rather than stopping short of the real thing.
declare -A pkg=([ip]=iproute2 [nft]=nftables [wireguard-go]=wireguard-go [wg]=wireguard-tools)
missing=()
for p in ip nft wireguard-go wg; do
  command -v "$p" >/dev/null || missing+=("${pkg[$p]}")
done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  echo "== installing what the lab needs: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null \
    || echo "(installing ${missing[*]} failed)"
fi
for p in ip nft wireguard-go wg; do
  command -v "$p" >/dev/null || simulator_only "\`$p\` is missing (apt-get install ${pkg[$p]})"
done

name="demo-$$"
trap '$r lab down --name "$name" >/dev/null' EXIT
echo "== rampart lab up $site --name $name"
$r lab up "$site" --name "$name"
echo; echo "== rampart lab verify $site --name $name"
status=0
$r lab verify "$site" --name "$name" || status=$?
echo; echo "== rampart lab down --name $name"
$r lab down --name "$name"
trap - EXIT
exit $status
