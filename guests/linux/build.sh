#!/usr/bin/env bash
# Builds hv's Linux guest: Debian bookworm's stock kernel + a busybox initramfs.
#
#   guests/linux/build.sh --arch aarch64|x86_64 [--kernel-version 6.1|6.12] [--out DIR]
#                         [--extra SRC:DEST]... [--refresh]
#
#   --arch            guest architecture (Debian arm64 / amd64 packages)
#   --kernel-version  6.1 (default; newest of bookworm + bookworm-security) or
#                     6.12 (bookworm-backports)
#   --out DIR         where the kernel and initramfs go (default: the cache dir below)
#   --extra SRC:DEST  add host file SRC to the initramfs at absolute path DEST (repeatable);
#                     use together with --out so the shared default initramfs stays plain
#   --refresh         re-resolve and re-fetch the packages even if cached
#
# Prints on stdout, one per line (everything else goes to stderr):
#   kernel=PATH     arm64 Image / x86 bzImage, for QEMU -kernel
#   vmlinux=PATH    x86_64 only: the ELF vmlinux unpacked from the bzImage (PVH entry)
#   initrd=PATH     gzip newc initramfs
#   packages=PATH   the exact Debian packages used (name=version per line)
#
# Packages are fetched with `apt-get download` through a PRIVATE apt state/cache dir
# (.cache/guests/apt-<debarch>/) with its own sources file, so nothing system-wide changes.
# The extracted kernel and busybox are cached in .cache/guests/<arch>-<version>/ and reused.
# The initramfs is rebuilt every run (it is deterministic and takes about a second).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

say() { printf 'guests/linux: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

arch= kver=6.1 out= refresh=0
extras=()
while [ $# -gt 0 ]; do
    case "$1" in
    --arch) arch=${2:?}; shift 2 ;;
    --kernel-version) kver=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --extra) extras+=("${2:?}"); shift 2 ;;
    --refresh) refresh=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done

case "$arch" in
aarch64) deb_arch=arm64 kernel_name=Image ;;
x86_64) deb_arch=amd64 kernel_name=bzImage ;;
*) die "--arch must be aarch64 or x86_64" ;;
esac
case "$kver" in
6.1) meta_spec=linux-image-$deb_arch ;;
6.12) meta_spec=linux-image-$deb_arch/bookworm-backports ;;
*) die "--kernel-version must be 6.1 or 6.12" ;;
esac
for tool in apt-get apt-cache dpkg-deb python3 flock; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

cache_root=$repo/.cache/guests
pkg_dir=$cache_root/$arch-$kver
apt_dir=$cache_root/apt-$deb_arch
mkdir -p "$cache_root"

# One lock per Debian architecture: builds of the same arch share the private apt dir.
exec 9>"$cache_root/.lock-$deb_arch"
flock 9

apt_opts=(
    -q
    -oAPT::Architecture="$deb_arch" -oAPT::Architectures="$deb_arch"
    -oDir::State::Lists="$apt_dir/lists" -oDir::Cache="$apt_dir/cache"
    -oDir::State::status=/dev/null
    -oDir::Etc::SourceList=/dev/null -oDir::Etc::SourceParts="$apt_dir/sources.list.d"
    -oAPT::Sandbox::User=root
    # Only the Packages indices are needed, not the AppStream (DEP-11) metadata.
    -oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
    -oAcquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
)

apt_update() {
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.list.d"
    cat >"$apt_dir/sources.list.d/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    say "apt-get update (private lists in $apt_dir)"
    apt-get "${apt_opts[@]}" update >&2
}

# "Field: value" of the chosen version of a package spec (name, name/suite or name=version).
apt_field() {
    apt-cache "${apt_opts[@]}" show --no-all-versions "$1" | sed -n "s/^$2: //p" | head -n1
}

fetch_packages() {
    apt_update
    local meta_depends image_pkg image_ver busybox_ver work
    meta_depends=$(apt_field "$meta_spec" Depends)
    # e.g. "linux-image-6.1.0-56-arm64 (= 6.1.192-2)"
    image_pkg=${meta_depends%% *}
    image_ver=$(sed -n 's/.*(= \([^)]*\)).*/\1/p' <<<"$meta_depends")
    case "$image_pkg" in
    linux-image-"$kver".*-"$deb_arch") ;;
    *) die "$meta_spec depends on '$meta_depends', not a $kver kernel image" ;;
    esac
    [ -n "$image_ver" ] || image_ver=$(apt_field "$image_pkg" Version)
    busybox_ver=$(apt_field busybox-static Version)
    [ -n "$busybox_ver" ] || die "busybox-static not found for $deb_arch"

    work=$pkg_dir.new
    rm -rf "$work"
    mkdir -p "$work/debs"
    say "downloading $image_pkg=$image_ver busybox-static=$busybox_ver ($deb_arch)"
    (cd "$work/debs" && apt-get "${apt_opts[@]}" download "$image_pkg=$image_ver" "busybox-static=$busybox_ver" >&2)

    say "extracting"
    dpkg-deb -x "$work"/debs/linux-image-*.deb "$work/kernel-root"
    dpkg-deb -x "$work"/debs/busybox-static_*.deb "$work/busybox-root"
    local abi=${image_pkg#linux-image-}
    mv "$work/kernel-root/boot/vmlinuz-$abi" "$work/$kernel_name"
    mv "$work/kernel-root/boot/config-$abi" "$work/config"
    mv "$work/busybox-root/bin/busybox" "$work/busybox"
    # The module tree (~400 MB unpacked), the .debs and Debian's placeholder System.map
    # (the real one is in the -dbg package) are not needed to boot the guest.
    rm -rf "$work/debs" "$work/kernel-root" "$work/busybox-root"
    if [ "$arch" = x86_64 ]; then
        python3 "$here/extract-vmlinux.py" "$work/$kernel_name" "$work/vmlinux" >&2 ||
            say "warning: could not unpack vmlinux from the bzImage (PVH boot unavailable)"
    fi
    printf '%s=%s\n' "$image_pkg" "$image_ver" busybox-static "$busybox_ver" >"$work/packages"

    rm -rf "$pkg_dir"
    mv "$work" "$pkg_dir"
}

if [ "$refresh" = 1 ] || [ ! -f "$pkg_dir/packages" ]; then
    fetch_packages
else
    say "using cached $(tr '\n' ' ' <"$pkg_dir/packages")"
fi

out=${out:-$pkg_dir}
mkdir -p "$out"
out=$(cd "$out" && pwd)

cpio_args=(
    -o "$out/initrd.cpio.gz"
    --dir /proc --dir /sys --dir /dev --dir /root --dir /tmp:1777 --dir /etc
    --dir /bin --dir /sbin --dir /usr/bin --dir /usr/sbin
    --file "$pkg_dir/busybox:/bin/busybox:0755"
    --symlink /bin/sh:busybox
    --file "$here/init:/init:0755"
    # The kernel opens /dev/console before /init runs; devtmpfs is mounted only later.
    --node /dev/console:c:5:1:0600
)
for extra in "${extras[@]}"; do
    src=${extra%%:*}
    dest=${extra#*:}
    [ -f "$src" ] && [ "$dest" != "$extra" ] || die "--extra wants SRC:DEST with an existing file SRC, got '$extra'"
    cpio_args+=(--file "$src:$dest")
done
python3 "$here/mkcpio.py" "${cpio_args[@]}"

# Place the kernel beside the initramfs when --out points elsewhere (hard link if possible).
publish() {
    [ "$pkg_dir/$1" -ef "$out/$1" ] || ln -f "$pkg_dir/$1" "$out/$1" 2>/dev/null || cp -f "$pkg_dir/$1" "$out/$1"
}
publish "$kernel_name"
publish packages
echo "kernel=$out/$kernel_name"
if [ -f "$pkg_dir/vmlinux" ]; then
    publish vmlinux
    echo "vmlinux=$out/vmlinux"
fi
echo "initrd=$out/initrd.cpio.gz"
echo "packages=$out/packages"
