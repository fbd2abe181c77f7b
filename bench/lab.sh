#!/usr/bin/env bash
# Time of `rampart lab up` + `rampart lab verify` (+ `down`) for every lab
# under labs/ and for a generated 20-node / 100-guest site (with generated
# intents). Needs root, ip, nft and wireguard-go. Prints one line per site.
set -euo pipefail
cd "$(dirname "$0")/.."
# RAMPART=path/to/rampart uses that binary instead of a release build.
if [ -n "${RAMPART:-}" ]; then
  r=$(realpath "$RAMPART")
else
  cargo build --release -q -p rampart-cli
  r=$PWD/target/release/rampart
fi
if [ "$(id -u)" != 0 ]; then echo "bench/lab.sh needs root (network namespaces)"; exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

now() { date +%s.%N; }
row() { # NAME SITE
  local name=$1 site=$2 t0 t1 t2 t3 ns summary lab
  lab="bench-$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-' | cut -c1-40)"
  t0=$(now)
  "$r" lab up "$site" --name "$lab" >"$tmp/up.log" 2>&1 || { echo "$name: lab up failed"; tail -3 "$tmp/up.log"; return; }
  t1=$(now)
  "$r" lab verify "$site" --name "$lab" >"$tmp/verify.log" 2>&1 || true
  t2=$(now)
  "$r" lab down --name "$lab" >/dev/null
  t3=$(now)
  ns=$(grep -o '[0-9]\+ namespaces' "$tmp/up.log" | head -1)
  summary=$(grep -E '^[0-9]+ row' "$tmp/verify.log" | sed 's/ in [0-9.]* s//' || echo "no intents")
  printf '%-34s up %6.2f s  verify %6.2f s  (up+verify %6.2f s)  down %5.2f s  | %s; %s\n' \
    "$name" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t2 - $t0" | bc)" \
    "$(echo "$t3 - $t2" | bc)" "$ns" "$summary"
}

for d in labs/*/; do
  [ -f "$d/site.toml" ] && row "$(basename "$d")" "$d"
done

# The generated site: 20 nodes, 100 guests, and intents over it (their
# `reachable` values are guesses, so misses are expected there: the figure
# that matters is 0 simulator/kernel disagreements) — the
# internet to every node's SSH, each node to its guests (ping), guests to
# the next guest on the same node (HTTP).
g="$tmp/gen-20-100"
"$r" gen-site --nodes 20 --guests 100 --out "$g" >/dev/null
# guests as "zone node" (vm100 pve1, ct103 pve4, ...), in file order
awk '/^\[\[guest\]\]/{g=1} g&&/^id =/{id=$3} g&&/^kind =/{k=$3} g&&/^node =/{gsub(/"/,"",k); gsub(/"/,"",$3); print k id, $3; g=0}' \
  "$g/site.toml" >"$tmp/guests"
{
  for n in $(seq 1 20); do
    printf '\n[[expect]]\nfrom = "internet"\nto = "pve%d"\nport = 22\nreachable = false\n' "$n"
  done
  # each node pings its guests; each guest opens HTTP on the next guest of its node
  sort -k2,2 -s "$tmp/guests" | awk '
    { printf "\n[[expect]]\nfrom = \"%s\"\nto = \"%s\"\nproto = \"icmp\"\nreachable = true\n", $2, $1
      if (prev_node == $2) printf "\n[[expect]]\nfrom = \"%s\"\nto = \"%s\"\nport = 80\nreachable = true\n", prev, $1
      prev = $1; prev_node = $2 }'
} >>"$g/site.toml"
row "generated 20 nodes / 100 guests" "$g"
