#!/usr/bin/env bash
# What users run, timed on the release binary (issue 13): each command
# several times, min / median / max wall seconds and peak RSS, at two sizes
# so the growth shows (a ratio far above the size ratio is a quadratic path).
#   compile --all --out DIR   gen-site 100 and 1,000 nodes (20 guests each, 10 rules each)
#   check                     the 1,000-node site
#   compile --node            one chain of N rules of one shape (source /24 + tcp port), N = 20k, 50k, 200k
# RAMPART_BENCH_RUNS (default 3) runs per figure. No root needed.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RAMPART_BENCH_RUNS:-3}
cargo build --release -p rampart-cli --locked 2>&1 | grep -E "^(warning|error)" || true
bin=$PWD/target/release/rampart
work=$(mktemp -d /tmp/rampart-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

# measure LABEL CMD...: wall seconds (min/median/max) and the largest peak RSS.
measure() {
  local label=$1; shift
  local ts=() rss=0
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || {
      echo "$label: command failed:"; tail -5 "$work/err"; return 1; }
    read -r t m < "$work/time"
    ts+=("$t"); [ "$m" -gt "$rss" ] && rss=$m
  done
  local sorted; sorted=$(printf '%s\n' "${ts[@]}" | sort -g)
  local min med max
  min=$(echo "$sorted" | head -1); max=$(echo "$sorted" | tail -1)
  med=$(echo "$sorted" | sed -n "$(( (runs + 1) / 2 ))p")
  printf '%-44s min %6.2f s  median %6.2f s  max %6.2f s  peak %5d MB\n' \
    "$label" "$min" "$med" "$max" $((rss / 1024))
  echo "$med" > "$work/last"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "n/a" }'; }

echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for n in 100 1000; do
  "$bin" gen-site --nodes "$n" --guests $((n * 20)) --rules-per-guest 10 --out "$work/site$n" >/dev/null
done
measure "compile --all --out, 100 nodes" "$bin" compile "$work/site100" --all --out "$work/out100"
c100=$(cat "$work/last")
measure "compile --all --out, 1,000 nodes" "$bin" compile "$work/site1000" --all --out "$work/out1000"
c1000=$(cat "$work/last")
echo "  1,000 / 100 nodes: $(ratio "$c100" "$c1000")x time for 10x the site (target: 1,000 nodes < 3 s)"
measure "check, 100 nodes" "$bin" check "$work/site100"
k100=$(cat "$work/last")
measure "check, 1,000 nodes" "$bin" check "$work/site1000"
k1000=$(cat "$work/last")
echo "  1,000 / 100 nodes: $(ratio "$k100" "$k1000")x (target: 1,000 nodes < 1 s, < 500 MB)"

# One chain of one shape: hv1's host.fw with N rules, each its own /24 and port.
chain() {
  local n=$1 d=$work/chain$1
  mkdir -p "$d/firewall" "$d/nodes/hv1"
  cat > "$d/site.toml" <<TOML
[[node]]
name = "hv1"
bridges = { vmbr0 = ["192.0.2.10/24"] }
TOML
  printf '[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -source 192.0.2.0/24 -p tcp -dport 22\n' > "$d/firewall/cluster.fw"
  awk -v n="$n" 'BEGIN { print "[RULES]"; for (i = 0; i < n; i++)
    printf "IN ACCEPT -source %d.%d.%d.0/24 -p tcp -dport %d\n", 10 + int(i / 65536), int(i / 256) % 256, i % 256, 1024 + i % 50000 }' \
    > "$d/nodes/hv1/host.fw"
}
prev=""
for n in 20000 50000 200000; do
  chain "$n"
  measure "one chain of $n rules: compile --node hv1" "$bin" compile "$work/chain$n" --node hv1
  cur=$(cat "$work/last")
  [ -n "$prev" ] && echo "  vs the previous size: $(ratio "$prev" "$cur")x time"
  prev=$cur
done
echo "  (target: 200,000 rules < 1 s)"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
