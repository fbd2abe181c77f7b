#!/usr/bin/env bash
# Runs the whole test suite: unit, property, golden, conformance (simulator and
# kernel) and namespace end-to-end tests. Kernel tests need root; they create
# and remove their own network namespaces and touch nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets --locked 2>&1 | grep -E "^(warning|error)" && { echo "build is not warning-free"; exit 1; } || true
cargo test --workspace --locked --no-fail-fast
