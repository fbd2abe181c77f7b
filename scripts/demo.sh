#!/usr/bin/env bash
# The main job on the bundled example site: check it like code, compile a
# node, ask the simulator which line decides some packets, and (as root)
# prove the conformance suite with real packets in network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p rampart-cli
r=target/release/rampart
site=examples/homelab

echo "== rampart check $site"
$r check "$site"

echo; echo "== rampart compile $site --node pve1 (first lines)"
$r compile "$site" --node pve1 | head -40
echo "   ..."

echo; echo "== rampart simulate: which line decides?"
$r simulate "$site" --node pve1 --from outside --to vm100 -p tcp --dport 22 --source 192.168.2.192
$r simulate "$site" --node pve1 --from outside --to host -p tcp --dport 8006 --source 203.0.113.50

echo; echo "== rampart test-policy conformance (simulator)"
$r test-policy conformance || true
if [ "$(id -u)" = 0 ]; then
  echo; echo "== rampart test-policy --kernel conformance (real packets in namespaces)"
  $r test-policy --kernel conformance || true
else
  echo "(not root: skipping the real-kernel run; the simulator answered above)"
fi
