#!/usr/bin/env bash
# One-rule change on a node with ~100,000 set elements and ~10,000 rules:
# time from the change on disk to the kernel running it, through the real
# agent (inotify -> load -> resolve -> compile -> guard -> diff -> nft).
# Target < 100 ms. Needs root for the kernel part (its own namespace).
# Knobs: RAMPART_BENCH_GUESTS, RAMPART_BENCH_RULES (per guest),
# RAMPART_BENCH_ELEMENTS, RAMPART_BENCH_ROUNDS.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p rampart-agent --bench incremental 2>&1 | grep -vE "^\s*(Compiling|Finished|Running|Executable)"
