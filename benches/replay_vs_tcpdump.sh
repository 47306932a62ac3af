#!/usr/bin/env bash
# Replay throughput against tcpdump on the same 1M-packet, 100k-flow capture, same port filter, one run
# each of hyperfine's best-of-N: `bash benches/replay_vs_tcpdump.sh [PACKETS [FLOWS]]`. Needs tcpdump
# and hyperfine (Debian packages). Prints both rates and the ratio; the capture is made by
# examples/gen_fixtures.rs (the library's synthetic traffic, as `outgate bench --synthetic` replays).
set -euo pipefail
cd "$(dirname "$0")/.."
packets=${1:-1000000}
flows=${2:-$((packets / 10))}
capture=${TMPDIR:-/tmp}/outgate-bench-$packets-$flows.pcap
cargo build --release --quiet --example gen_fixtures
cargo build --release --quiet
[ -f "$capture" ] || ./target/release/examples/gen_fixtures --bench "$packets" "$flows" "$capture"

# The default policy's open ports as a BPF filter: what tcpdump has to decide for each packet.
ports="13 21 22 23 25 43 53 63 70 79 80 109 110 113 119 123 143 443"
filter=""
for p in $ports; do filter+="dst port $p or "; done
filter+="(icmp and icmp[icmptype] == 8)"

json=$(mktemp)
hyperfine --warmup 1 --runs 5 --export-json "$json" \
    -n tcpdump "tcpdump -r $capture -w /dev/null '$filter' 2>/dev/null" \
    -n outgate-1-worker "./target/release/outgate replay --workers 1 $capture >/dev/null 2>&1" \
    -n outgate-2-workers "./target/release/outgate replay --workers 2 $capture >/dev/null 2>&1" >&2
python3 - "$json" "$packets" <<'PY'
import json, sys
runs = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
n = int(sys.argv[2])
tcpdump = runs["tcpdump"]["min"]
print(f"{'command':<20} {'best s':>8} {'packets/s':>12} {'vs tcpdump':>11}")
for name, r in runs.items():
    print(f"{name:<20} {r['min']:>8.3f} {n / r['min']:>12,.0f} {tcpdump / r['min']:>10.2f}x")
PY
rm -f "$json"
