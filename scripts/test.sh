#!/usr/bin/env bash
# hv's single test command: sets up what is missing, then runs every test.
#   scripts/test.sh            everything
#   scripts/test.sh host       only the host tests (cargo fmt/clippy/test)
# Each area's QEMU and tool tests live in scripts/tests.d/NN-name.sh and run in order.
set -euo pipefail
cd "$(dirname "$0")/.."
only=${1:-}

step() { printf '\n=== %s ===\n' "$*"; }

step setup
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test (host crates)"
cargo test 2>&1 | tee target/host-tests.log
grep -q '^test result: ok' target/host-tests.log

[ "$only" = host ] && exit 0

passed=0 failed=0 failed_names=()
for t in scripts/tests.d/*.sh; do
    [ -e "$t" ] || continue
    step "$t"
    start=$SECONDS
    if bash "$t"; then
        passed=$((passed + 1))
        echo "--- $t: ok ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1))
        failed_names+=("$t")
        echo "--- $t: FAILED ($((SECONDS - start)) s)"
    fi
done
step summary
for t in "${failed_names[@]}"; do echo "FAILED: $t"; done
echo "test scripts: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
