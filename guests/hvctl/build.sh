#!/usr/bin/env bash
# Builds hvctl as a static Linux binary and prints its path.
#   guests/hvctl/build.sh aarch64|x86_64
# Linking uses rust-lld (/work/main/.cargo/config.toml): no cross gcc needed.
set -euo pipefail

arch=${1:-}
case "$arch" in
    aarch64|x86_64) ;;
    *) echo "usage: $0 aarch64|x86_64" >&2; exit 2 ;;
esac
triple="$arch-unknown-linux-musl"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target_dir=${CARGO_TARGET_DIR:-$here/target}

# Build from the package directory so cargo finds the workspace's .cargo/config.toml.
(cd "$here" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked --target "$triple" >&2)
echo "$target_dir/$triple/release/hvctl"
