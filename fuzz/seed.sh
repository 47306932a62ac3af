#!/usr/bin/env bash
# Rebuilds the seed corpora of the fuzz targets into fuzz/seeds/TARGET (not committed), from the
# project's fixtures (pcaps/), the shared captures (../shared/pcaps-real, when present), the policy
# files, and logs written by replaying those captures. Then minimise into fuzz/corpus/TARGET with
# `cargo +nightly fuzz cmin` (see HARDENING.md, Fuzzing).
# Usage: fuzz/seed.sh   (from anywhere; uses $CARGO_TARGET_DIR if set)
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/seeds
rm -rf "$out"
mkdir -p "$out"
shopt -s nullglob
captures=(pcaps/*.pcap pcaps/*.pcapng)
shared=../shared/pcaps-real
if [ -d "$shared" ]; then
    captures+=("$shared"/*.pcap "$shared"/*.pcapng)
fi
policies=()
for p in pcaps/*.rules fuzz/policy.rules; do policies+=(--policy "$p"); done

# Logs: each capture replayed under its own policy (or the fuzz policy), with every log written.
cargo build --quiet --bin outgate
bin="${CARGO_TARGET_DIR:-target}/debug/outgate"
logs=()
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for c in "${captures[@]}"; do
    name=$(basename "${c%.*}")
    policy=fuzz/policy.rules
    [ -f "pcaps/$name.rules" ] && policy="pcaps/$name.rules"
    "$bin" replay -p "$policy" -w 1 --flows "$tmp/$name.flows.jsonl" --http-log "$tmp/$name.http.jsonl" \
        --tls-log "$tmp/$name.tls.jsonl" "$c" >/dev/null 2>&1 || true
    for l in "$tmp/$name".*.jsonl; do [ -s "$l" ] && logs+=(--log "$l"); done
done

cargo run --quiet --manifest-path fuzz/Cargo.toml --example seed -- "$out" \
    "${policies[@]}" "${logs[@]}" --conntrack-tests src/nfqueue/conntrack/tests.rs "${captures[@]}"
du -sh "$out"/*
