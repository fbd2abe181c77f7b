#!/usr/bin/env bash
# WireGuard (wireguard-go) vs plain veth in two namespaces: TCP throughput, UDP round trip,
# handshake of a fresh tunnel; figures and ratios. Root only (skips otherwise).
# RAMPART_BENCH_ROUNDS (5), RAMPART_BENCH_SECS (2 s per throughput run).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p rampart-lab --bench tunnel 2>&1 | grep -vE "^\s*(Compiling|Finished|Running|Executable)"
