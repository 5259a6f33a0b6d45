#!/usr/bin/env bash
# Installs what hv's build and tests need on a fresh Debian machine:
# the pinned Rust toolchain with its targets, and QEMU 10 from bookworm-backports.
# Safe to run again: every step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

need_qemu=${HV_NEED_QEMU:-1}

ensure_rust() {
    if ! command -v rustup >/dev/null 2>&1; then
        say "rustup is not installed; install Rust from rustup first"; exit 1
    fi
    # rust-toolchain.toml lists targets and components; this makes rustup fetch them now.
    rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
    local have; have=$(rustup target list --installed)
    for t in aarch64-unknown-none x86_64-unknown-none aarch64-unknown-linux-musl x86_64-unknown-linux-musl; do
        grep -qx "$t" <<<"$have" || { say "adding Rust target $t"; rustup target add "$t"; }
    done
}

ensure_qemu() {
    if command -v qemu-system-aarch64 >/dev/null 2>&1 && command -v qemu-system-x86_64 >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "qemu-system-aarch64 / qemu-system-x86_64 missing and I cannot install them here (need root on Debian)."
        say "install QEMU >= 8 (qemu-system-arm, qemu-system-x86) and run again"; exit 1
    fi
    . /etc/os-release
    local src=/etc/apt/sources.list.d/hv-backports.sources
    if [ "${VERSION_CODENAME:-}" = bookworm ] && [ ! -f "$src" ]; then
        # bookworm's own qemu-system (7.2) conflicts with the backports qemu-utils
        # this image ships, so QEMU comes from the same backports suite.
        say "adding the bookworm-backports suite for QEMU"
        cat >"$src" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    say "installing QEMU (qemu-system-arm, qemu-system-x86)"
    apt-get update -qq
    if [ "${VERSION_CODENAME:-}" = bookworm ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports \
            --no-install-recommends qemu-system-arm qemu-system-x86 >/dev/null
    else
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            qemu-system-arm qemu-system-x86 >/dev/null
    fi
    command -v qemu-system-aarch64 >/dev/null || { say "QEMU install failed"; exit 1; }
}

ensure_rust
[ "$need_qemu" = 1 ] && ensure_qemu
say "ready"
