#!/usr/bin/env bash
# Boots hv's Linux guest DIRECTLY on QEMU (no hv), runs one shell command in it,
# and exits with that command's exit status.
#
#   guests/linux/run-direct.sh --arch aarch64|x86_64 --cmd 'COMMAND'
#       [--smp N] [--cpu MODEL] [--mem SIZE] [--kernel-version 6.1|6.12]
#       [--kernel FILE --initrd FILE] [--pvh] [--append 'KERNEL ARGS']
#       [--timeout SECONDS] [--log FILE] [--output-only]
#
#   --cmd          shell command run by the guest's /init (`sh -c`); passed base64-encoded
#                  as hv.cmd=... on the kernel command line, so any quoting survives
#   --smp/--cpu/--mem   QEMU -smp (1), -cpu (max), -m (1G)
#   --kernel/--initrd   boot these instead of building with guests/linux/build.sh
#   --pvh          x86_64: boot the unpacked ELF vmlinux through its PVH entry (about 2.5x
#                  faster under TCG than the bzImage) instead of the bzImage
#   --append       extra kernel command-line arguments
#   --timeout      give up after this many seconds (default 180)
#   --log FILE     also keep the whole console output in FILE
#   --output-only  print only the command's output (lines between the guest's markers)
#                  instead of the whole console
#
# Exit status: the guest command's status; 124 on timeout; 125 when the guest never
# reported one (boot failure, panic, QEMU error). Timing goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

say() { printf 'run-direct: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 125; }

arch= guest_cmd= smp=1 cpu=max mem=1G kver=6.1 kernel= initrd= pvh=0 extra_append=
timeout_s=180 log= output_only=0 have_cmd=0
while [ $# -gt 0 ]; do
    case "$1" in
    --arch) arch=${2:?}; shift 2 ;;
    --cmd) guest_cmd=${2?}; have_cmd=1; shift 2 ;;
    --smp) smp=${2:?}; shift 2 ;;
    --cpu) cpu=${2:?}; shift 2 ;;
    --mem) mem=${2:?}; shift 2 ;;
    --kernel-version) kver=${2:?}; shift 2 ;;
    --kernel) kernel=${2:?}; shift 2 ;;
    --initrd) initrd=${2:?}; shift 2 ;;
    --pvh) pvh=1; shift ;;
    --append) extra_append=${2?}; shift 2 ;;
    --timeout) timeout_s=${2:?}; shift 2 ;;
    --log) log=${2:?}; shift 2 ;;
    --output-only) output_only=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ "$have_cmd" = 1 ] && [ -n "$guest_cmd" ] || die "--cmd 'COMMAND' is required (use build.sh + QEMU yourself for a shell)"

case "$arch" in
aarch64)
    qemu=(qemu-system-aarch64 -M virt,virtualization=on,gic-version=3)
    console=ttyAMA0
    ;;
x86_64)
    qemu=(qemu-system-x86_64)
    console=ttyS0
    ;;
*) die "--arch must be aarch64 or x86_64" ;;
esac

if [ -z "$kernel" ] || [ -z "$initrd" ]; then
    [ -z "$kernel$initrd" ] || die "--kernel and --initrd go together"
    built=$("$here/build.sh" --arch "$arch" --kernel-version "$kver") || die "guest build failed"
    kernel=$(sed -n 's/^kernel=//p' <<<"$built")
    initrd=$(sed -n 's/^initrd=//p' <<<"$built")
    if [ "$pvh" = 1 ]; then
        [ "$arch" = x86_64 ] || die "--pvh is for x86_64"
        kernel=$(sed -n 's/^vmlinux=//p' <<<"$built")
        [ -n "$kernel" ] || die "no vmlinux was unpacked for PVH boot"
    fi
fi
[ -f "$kernel" ] && [ -f "$initrd" ] || die "kernel '$kernel' or initrd '$initrd' missing"

encoded=$(printf '%s' "$guest_cmd" | base64 -w0)
append="console=$console panic=-1 hv.cmd=$encoded${extra_append:+ $extra_append}"

keep_log=1
if [ -z "$log" ]; then
    log=$(mktemp /tmp/run-direct.XXXXXX)
    keep_log=0
fi
cleanup() { [ "$keep_log" = 1 ] || rm -f "$log"; }
trap cleanup EXIT

# Console lines end in CRLF; strip the CR so markers match and the output is plain.
show() {
    if [ "$output_only" = 1 ]; then
        sed -u 's/\r$//' | tee "$log" | sed -un '/^hv-guest: cmd begin$/,/^hv-guest: cmd exit=/{/^hv-guest: cmd /!p}'
    else
        sed -u 's/\r$//' | tee "$log"
    fi
}

start=$(date +%s.%N)
set +e
timeout -k 5 "$timeout_s" "${qemu[@]}" -cpu "$cpu" -smp "$smp" -m "$mem" \
    -nographic -no-reboot -nic none \
    -kernel "$kernel" -initrd "$initrd" -append "$append" </dev/null 2>&1 | show
qemu_status=${PIPESTATUS[0]}
set -e
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')

status_line=$(grep -m1 '^hv-guest: cmd exit=[0-9]*$' "$log" || true)
if [ "$qemu_status" = 124 ]; then
    say "timeout after ${timeout_s} s (QEMU killed)"
    exit 124
fi
if [ -z "$status_line" ]; then
    say "the guest reported no command status (QEMU exit $qemu_status, ${elapsed} s)"
    exit 125
fi
if [ "$qemu_status" != 0 ]; then
    say "QEMU exited with $qemu_status after the guest command finished"
    exit 125
fi
cmd_status=${status_line#hv-guest: cmd exit=}
say "$arch guest powered off after ${elapsed} s, command exit=$cmd_status"
exit "$cmd_status"
