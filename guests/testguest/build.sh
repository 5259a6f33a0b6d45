#!/usr/bin/env bash
# Builds the test guest and prints the path of the image hv (or QEMU) boots:
#   guests/testguest/build.sh aarch64   -> an arm64 Image (flat, 64-byte Image header)
#   guests/testguest/build.sh x86_64    -> a bzImage (boot protocol 2.15, 64-bit entry)
# cargo's output goes to stderr. Honours CARGO_TARGET_DIR (default: target/ here).
set -euo pipefail

arch=${1:-}
case "$arch" in
    aarch64 | x86_64) ;;
    *)
        echo "usage: $0 aarch64|x86_64" >&2
        exit 2
        ;;
esac
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target="$arch-unknown-none"
# Default: the hv workspace's target/ (ignored by git), in a directory of its own.
target_dir=${CARGO_TARGET_DIR:-$(cd "$here/../.." && pwd)/target/testguest}

# Build from the package directory: its own workspace and .cargo/config.toml.
(cd "$here" && CARGO_TARGET_DIR="$target_dir" cargo build --release --target "$target" >&2)
elf="$target_dir/$target/release/testguest"
[ -f "$elf" ] || { echo "testguest/build.sh: cargo did not produce $elf" >&2; exit 1; }

sysroot=$(rustc --print sysroot)
objcopy=$(ls "$sysroot"/lib/rustlib/*/bin/rust-objcopy 2>/dev/null | head -n1 || true)
[ -n "$objcopy" ] || { echo "testguest/build.sh: rust-objcopy not found; run: rustup component add llvm-tools" >&2; exit 1; }
objcopy() { LD_LIBRARY_PATH="$sysroot/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$objcopy" "$@"; }

out_dir="$target_dir/$target/release"
case "$arch" in
    aarch64)
        image="$out_dir/testguest.Image"
        objcopy -O binary "$elf" "$image"
        magic=$(od -An -tx1 -j56 -N4 "$image" | tr -d ' ')
        [ "$magic" = 41524d64 ] || { echo "testguest/build.sh: $image has no arm64 Image header" >&2; exit 1; }
        ;;
    x86_64)
        flat="$out_dir/testguest.flat"
        setup="$out_dir/testguest.setup16"
        image="$out_dir/testguest.bzImage"
        objcopy -O binary --remove-section=.setup16 "$elf" "$flat"
        objcopy -O binary --only-section=.setup16 "$elf" "$setup"
        python3 "$here/mkbzimage.py" --kernel "$flat" --setup "$setup" -o "$image" >&2
        ;;
esac
echo "$image"
