#!/usr/bin/env bash
# Every packet queued: what `outgate bench --live` does not measure (it measures outgate with its own
# ruleset, where decided flows never reach userspace, beside the kernel alone: new flows/s, loss, TCP
# connections/s, bulk, connect time; use it for those). This script keeps the comparison of the queue
# itself, in two network namespaces it creates, side by side in one run:
#   (a) the kernel alone (ACCEPT rule, no queue): the reference for the rows below, on this load
#   (b) the minimal C accept loop on libnetfilter_queue, every packet queued
#   (d) outgate, default policy, every packet queued (the same load as (b)), with its default
#       64 MiB socket buffer and with the kernel's default (--rcvbuf-mib 0)
# (The letters are BENCHMARKS.md's; its (c), outgate with its own ruleset, is `outgate bench --live` now.
# Daemons are started with `ip netns exec` directly, not through a shell function, so that $! is
# their own pid: ip execs the program.)
# A UDP blast (tests/tools/udp_blast.c: sendmmsg over FLOWS sockets) to udp 53, which the default
# policy opens. Usage: bash benches/live.sh [TOTAL] [FLOWS] [PAYLOAD]   (root; installs
# libnetfilter-queue-dev, iptables, iproute2 if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-200000}
flows=${2:-64}
payload=${3:-64}

if [ ! -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || ! command -v iptables >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnetfilter-queue-dev iptables iproute2 >/dev/null
fi
work=$(mktemp -d)
cargo build --release --quiet
cc -O2 -o "$work/udp_blast" tests/tools/udp_blast.c
cc -O2 -o "$work/nfq_accept" benches/live/nfq_accept.c -lnetfilter_queue
outgate=$PWD/target/release/outgate

c=ogbc$$ s=ogbs$$
cleanup() { ip netns del $c 2>/dev/null || true; ip netns del $s 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add $c; ip netns add $s
ip link add vc$$ netns $c type veth peer name vs$$ netns $s
ip -n $c addr add 10.201.0.1/24 dev vc$$; ip -n $s addr add 10.201.0.2/24 dev vs$$
ip -n $c link set vc$$ up; ip -n $s link set vs$$ up; ip -n $c link set lo up; ip -n $s link set lo up
in_c() { ip netns exec $c "$@"; }

# queue_counters -> "queue_dropped user_dropped" summed over the queues
queue_counters() { in_c awk '{q+=$6; u+=$7} END {print q+0, u+0}' /proc/net/netfilter/nfnetlink_queue; }

# run_case NAME: blast through whatever is set up, print one row
run_case() {
    local name=$1
    ip netns exec $s "$work/udp_blast" recv 53 1500 > "$work/recv" &
    local rp=$!
    until grep -q listening "$work/recv" 2>/dev/null; do sleep 0.05; done
    local sent secs
    read -r _ sent _ secs < <(in_c "$work/udp_blast" send 10.201.0.2 53 "$flows" "$total" "$payload")
    wait $rp
    local got; got=$(awk '/received/ {print $2}' "$work/recv")
    local drops; drops=$(queue_counters)
    printf '%-44s %9s %9s %11.0f %8s %s\n' "$name" "$sent" "$got" "$(echo "$got / $secs" | bc -l)" \
        "$((sent - got))" "$drops"
}

printf '%-44s %9s %9s %11s %8s %s\n' case sent received "delivered/s" lost "queue_dropped user_dropped"
in_c iptables -A OUTPUT -o vc$$ -j ACCEPT
run_case "(a) kernel alone"
in_c iptables -F OUTPUT

in_c iptables -A OUTPUT -o vc$$ -j NFQUEUE --queue-num 0
ip netns exec $c "$work/nfq_accept" 0 > "$work/nfq.out" 2>/dev/null &
np=$!; sleep 0.5
run_case "(b) C accept loop, libnetfilter_queue"
kill $np; wait $np || true
in_c iptables -F OUTPUT

in_c iptables -A OUTPUT -o vc$$ -m mark --mark 0x0/0xf00 -j NFQUEUE --queue-num 0
for opts in "" "--rcvbuf-mib 0"; do
    ip netns exec $c "$outgate" run --queues 0 $opts 2>"$work/run.err" &
    op=$!; sleep 0.5
    run_case "(d) outgate, every packet queued ${opts:-}"
    kill $op; wait $op || true
done
in_c iptables -F OUTPUT
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); $total packets, $flows flows, $payload-byte payload"
