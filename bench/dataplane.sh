#!/usr/bin/env bash
# New TCP connections/s through a node with a 10,000-rule policy and a
# 100,000-entry blacklist, as a ratio of the rate with no firewall (target
# >= 0.9), beside a naive linear layout. Needs root (network namespaces).
# Sizes: RAMPART_DP_RULES, RAMPART_DP_BLACKLIST, RAMPART_DP_ROUNDS, RAMPART_DP_SECS.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p rampart-nft --bench dataplane 2>&1 | grep -vE "^\s*(Compiling|Finished|Running|Executable)"
