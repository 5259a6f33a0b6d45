#!/usr/bin/env bash
# Builds the hv image for one architecture and prints the path of the file
# QEMU boots (on stdout; cargo's output goes to stderr).
#   scripts/build-hv.sh aarch64   -> the raw arm64 Image (header + text/data), for -kernel
#   scripts/build-hv.sh x86_64    -> the ELF with its PVH note, for -kernel
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${1:-}
case "$arch" in
    aarch64 | x86_64) ;;
    *)
        echo "usage: scripts/build-hv.sh aarch64|x86_64" >&2
        exit 2
        ;;
esac

target="$arch-unknown-none"
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -p hv-arch --release --target "$target" >&2
elf="$target_dir/$target/release/hv"
[ -f "$elf" ] || { echo "build-hv: cargo did not produce $elf" >&2; exit 1; }

case "$arch" in
    aarch64)
        # QEMU's -kernel wants the flat Image: the arm64 header is the first
        # 64 bytes of .text.head, everything else follows at its link offset.
        sysroot=$(rustc --print sysroot)
        objcopy=$(ls "$sysroot"/lib/rustlib/*/bin/rust-objcopy 2>/dev/null | head -n1 || true)
        if [ -z "$objcopy" ]; then
            echo "build-hv: rust-objcopy not found; run: rustup component add llvm-tools" >&2
            exit 1
        fi
        image="$target_dir/$target/release/hv.img"
        # Rebuild the Image only when the ELF changed.
        if [ ! -f "$image" ] || [ "$elf" -nt "$image" ]; then
            # Some toolchain installs keep libLLVM only in the sysroot's lib/.
            LD_LIBRARY_PATH="$sysroot/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
                "$objcopy" -O binary "$elf" "$image"
        fi
        magic=$(od -An -tx1 -j56 -N4 "$image" | tr -d ' ')
        if [ "$magic" != 41524d64 ]; then
            echo "build-hv: $image has no arm64 Image header (magic '$magic' at offset 56)" >&2
            exit 1
        fi
        echo "$image"
        ;;
    x86_64)
        echo "$elf"
        ;;
esac
