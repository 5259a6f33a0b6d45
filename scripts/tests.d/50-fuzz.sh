#!/usr/bin/env bash
# Fuzzes the page-table walker: pagewalk/fuzz, target walk_arbitrary, for
# FUZZ_SECONDS (default 30). Skipped (exit 0, with the reason) when the
# nightly toolchain or cargo-fuzz is missing; fails when the fuzzer finds a crash.
#   long run: FUZZ_SECONDS=3600 bash scripts/tests.d/50-fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-30}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "SKIPPED fuzz: no nightly toolchain (install: rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    # cargo-fuzz comes from crates.io; a fresh machine builds it once (~1-2 min).
    echo "fuzz: installing cargo-fuzz"
    if ! cargo install --locked cargo-fuzz >/dev/null 2>&1 || ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        echo "SKIPPED fuzz: cargo-fuzz could not be installed (cargo install cargo-fuzz failed)"
        exit 0
    fi
fi

# The fuzz crate is its own workspace; keep its build and corpus under target/.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target/fuzz}
corpus=$CARGO_TARGET_DIR/corpus/walk_arbitrary
mkdir -p "$corpus"
cd pagewalk/fuzz
echo "fuzzing walk_arbitrary for ${seconds}s (corpus $corpus)"
# libFuzzer exits non-zero on a crash, a failed assertion, a leak or a timeout;
# the crashing input is saved under pagewalk/fuzz/artifacts/walk_arbitrary/.
cargo +nightly fuzz run walk_arbitrary "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
echo "fuzz: walk_arbitrary ran ${seconds}s without a crash"
