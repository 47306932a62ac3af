#!/usr/bin/env bash
# Runs every fuzz target in turn for SECONDS each (default 20) on its committed corpus, with the
# bounds of HARDENING.md (Fuzzing): no allocation or resident memory above 256 MB, no input taking
# more than 10 s. Exits non-zero at the first crash, leak, timeout or out-of-memory; the input that
# did it is in fuzz/artifacts/TARGET/.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
targets=("$@")
# AddressSanitizer's quarantine (freed memory held back to catch a use after free) defaults to 256 MB,
# as large as the resident bound by itself: 32 MB keeps the bound about our memory (HARDENING.md).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=32"
[ ${#targets[@]} -gt 0 ] || targets=(engine policy http tls ftp detect capture netlink report dns quic)
cargo +nightly fuzz build --release
# New inputs go to a scratch directory; the committed corpus is only read.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    echo "fuzz: $t for ${seconds}s"
    if ! cargo +nightly fuzz run --release "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=256 -malloc_limit_mb=256 -timeout=10 \
        -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
        tail -n 40 "$scratch/$t.log" >&2
        echo "fuzz: $t failed (crash, leak, timeout or out-of-memory): the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "$scratch/$t.log" || true
done
