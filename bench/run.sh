#!/usr/bin/env bash
# Runs every benchmark and prints its figures. Kernel benchmarks need root
# (they say so and skip otherwise): dataplane, incremental, tunnel (also
# wireguard-go), convergence (also etcd-server). One at a time: bench/*.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --workspace 2>&1 | grep -vE "^\s*(Compiling|Finished|Running|Executable)"
