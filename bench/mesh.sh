#!/usr/bin/env bash
# Configs of a 1,000-node WireGuard mesh (keys, peers, AllowedIPs, wg-quick text).
# RAMPART_BENCH_NODES, RAMPART_BENCH_ROUNDS.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p rampart-wg --bench mesh 2>&1 | grep -vE "^\s*(Compiling|Finished|Running|Executable)"
