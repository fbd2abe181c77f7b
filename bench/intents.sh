#!/usr/bin/env bash
# Simulator intents checked per second on the generated 1,000-node /
# 20,000-guest site (rampart verify's engine; no root needed).
# Sizes: RAMPART_BENCH_NODES, RAMPART_BENCH_GUESTS, RAMPART_BENCH_RULES,
# RAMPART_BENCH_INTENTS.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p rampart-intent --bench intents 2>&1 | grep -vE "^\s*(Compiling|Finished|Running|Executable)"
