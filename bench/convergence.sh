#!/usr/bin/env bash
# A site pushed to etcd reaching 20 agents in 20 namespaces: time until all
# report the revision. Root and etcd-server (Debian) needed; skips otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p rampart-cli --bench convergence 2>&1 | grep -vE "^\s*(Compiling|Finished|Running|Executable)"
