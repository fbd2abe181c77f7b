#!/usr/bin/env bash
# Runs every benchmark and prints its figures. Kernel benchmarks need root.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --workspace 2>&1 | grep -vE "^\s*(Compiling|Finished|Running|Executable)"
