#!/usr/bin/env bash
# Builds hv and boots it under QEMU.
#
#   scripts/run.sh                                  arm64: hv boots Debian's Linux under its stage-2,
#                                                   root shell on the console (`poweroff` ends it)
#   scripts/run.sh --guest-cmd 'cat /proc/cpuinfo' --smp 2   the guest runs the command and powers off
#   scripts/run.sh --guest none                     hv boots, checks itself, powers off
#   scripts/run.sh --guest none --hv-args 'selftest=wx'   hv maps a W+X page on purpose and must refuse to boot
#   scripts/run.sh --cpu cortex-a57 --mem 2G
#   scripts/run.sh --arch x86_64                    x86_64: hv runs Debian's amd64 Linux under SVM + NPT
#   scripts/run.sh --arch x86_64 --cpu EPYC --guest-cmd 'uname -a'
#
# On a terminal QEMU runs interactively (Ctrl-A X quits). Otherwise the serial
# log goes to stdout and the exit status says how the machine ended:
#   0  hv powered the machine off cleanly (arm64: PSCI SYSTEM_OFF; QEMU exits 0.
#      x86_64: hv writes 0x10 to QEMU's isa-debug-exit port 0xf4, QEMU exits
#      (0x10 << 1) | 1 = 33, and run.sh maps 33 to 0)
#   1  hv stopped with a failure: it printed a line starting 'hv: FATAL:' (refused
#      boot, panic, unexpected exception) and ended QEMU with a non-zero status
#      (arm64: semihosting SYS_EXIT; QEMU runs with -semihosting-config; x86_64:
#      isa-debug-exit value 0x11, QEMU status 35 — and on x86_64 any status but 33,
#      0 included (a triple fault under -no-reboot), is a failure), or QEMU
#      itself failed. A FATAL line in the log counts as failure whatever QEMU's status.
#   2  bad usage, or a feature that is not available yet
#   3  timeout: the machine did not power off within --timeout seconds
#   4  setup or build failed
#
# Per architecture, qemu_<arch> fills the QEMU command line (array `qemu`) and
# may set `clean_exit_status` (the QEMU exit status of a clean power-off, 0 unless
# the arch's power-off path says otherwise); adding an architecture means
# adding that function and its case in check_arch.
#
# HV_QEMU_ARGS (environment) adds words to QEMU's command line, e.g.
# HV_QEMU_ARGS='-d int,guest_errors' or '-s -S' to wait for gdb.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { printf 'run.sh: %s\n' "$*" >&2; }
die() {
    local code=$1
    shift
    say "$*"
    exit "$code"
}

usage() {
    cat <<'USAGE'
usage: scripts/run.sh [options]
  --arch aarch64|x86_64     architecture to boot (default aarch64)
  --guest none|linux|test   what hv runs after its boot checks (default linux;
                            test: guests/testguest, the hypercall test guest)
  --hv-args 'ARGS'          hv's command line, e.g. 'selftest=wx log=debug'
                            (options: guest=, selftest=wx[,fault][,panic], log=LEVEL)
  --guest-cmd 'CMD'         shell command the Linux guest runs before it powers off
  --kernel PATH             your own guest kernel (with --guest linux)
  --initrd PATH             your own guest initramfs (with --guest linux)
  --cpu MODEL               QEMU CPU model (default max; arm64 also cortex-a57, cortex-a72)
  --mem SIZE                guest RAM, e.g. 512M, 1G, 4G (default 1G; arm64 supports 512M-4G)
  --smp N                   number of CPUs (default 1)
  --timeout SECONDS         give up after this long (default 60 when not on a terminal,
                            none on a terminal; 0 = no timeout)
  -h, --help                this text
USAGE
}

arch=aarch64
guest=
hv_args=
guest_cmd=
kernel=
initrd=
cpu=max
mem=1G
smp=1
timeout=

need_value() { [ $# -ge 2 ] || die 2 "$1 needs a value (see --help)"; }

while [ $# -gt 0 ]; do
    opt=$1
    # Accept both '--opt value' and '--opt=value'.
    if [[ $opt == --*=* ]]; then
        set -- "${opt%%=*}" "${opt#*=}" "${@:2}"
        opt=$1
    fi
    case "$opt" in
        --arch | --guest | --hv-args | --guest-cmd | --kernel | --initrd | --cpu | --mem | --smp | --timeout)
            need_value "$@"
            value=$2
            shift 2
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die 2 "unknown option '$opt'"
            ;;
    esac
    case "$opt" in
        --arch) arch=$value ;;
        --guest) guest=$value ;;
        --hv-args) hv_args=$value ;;
        --guest-cmd) guest_cmd=$value ;;
        --kernel) kernel=$value ;;
        --initrd) initrd=$value ;;
        --cpu) cpu=$value ;;
        --mem) mem=$value ;;
        --smp) smp=$value ;;
        --timeout) timeout=$value ;;
    esac
done

# ---- validation -----------------------------------------------------------

check_arch() {
    case "$arch" in
        aarch64) ;;
        x86_64) ;;
        *) die 2 "--arch '$arch': expected aarch64 or x86_64" ;;
    esac
}
check_arch

# The default guest: the Linux guest (both arches run it).
if [ -z "$guest" ]; then
    case "$arch" in
        aarch64 | x86_64) guest=linux ;;
        *) guest=none ;;
    esac
fi

case "$guest" in
    none) ;;
    # Both arches run the Linux guest and the test guest (guest_bundle below).
    linux) ;;
    test) ;;
    *) die 2 "--guest '$guest': expected none, linux or test" ;;
esac

if [ "$guest" != linux ]; then
    for pair in "--kernel:$kernel" "--initrd:$initrd" "--guest-cmd:$guest_cmd"; do
        [ -z "${pair#*:}" ] || die 2 "${pair%%:*} only applies to --guest linux"
    done
fi
for file in "$kernel" "$initrd"; do
    [ -z "$file" ] || [ -r "$file" ] || die 2 "cannot read '$file'"
done

[[ $mem =~ ^[1-9][0-9]*[MG]?$ ]] || die 2 "--mem '$mem': expected a size like 512M or 2G"
[[ $smp =~ ^[1-9][0-9]*$ ]] || die 2 "--smp '$smp': expected a positive number"
[ -z "$timeout" ] || [[ $timeout =~ ^[0-9]+$ ]] || die 2 "--timeout '$timeout': expected whole seconds"

interactive=0
[ -t 0 ] && [ -t 1 ] && interactive=1
if [ -z "$timeout" ]; then
    if [ "$interactive" = 1 ]; then timeout=0; else timeout=60; fi
fi

# ---- setup and build --------------------------------------------------------

# Installs QEMU and the Rust targets on first use; quick when all is present.
bash scripts/setup.sh || die 4 "setup failed (see above)"
image=$(bash scripts/build-hv.sh "$arch") || die 4 "building hv for $arch failed (see above)"

# Guest artefacts (kernels, initramfs) are cached here by the guest support.
cache_dir=${HV_CACHE_DIR:-$root/.cache}
mkdir -p "$cache_dir"

# hv's command line: what run.sh knows first, the user's --hv-args after (later words win).
hv_cmdline="guest=$guest${hv_args:+ $hv_args}"

# ---- per-architecture QEMU command lines ----------------------------------

# ---- the guest bundle (both architectures) ------------------------------------
# --guest linux: kernel + initramfs + command line go into one guest bundle
# (scripts/mkbundle.py), passed to QEMU as -initrd. arm64: QEMU puts it in RAM and
# names it in /chosen linux,initrd-start/end, where hv finds it. x86_64: QEMU's PVH
# loader hands it to hv as module 0. Defaults: guests/linux/build.sh (cached), with
# hvctl (guests/hvctl) in the initramfs at /bin/hvctl, rebuilt into
# $cache_dir/ARCH-hvctl only when hvctl or the guest recipe changed. --guest-cmd
# becomes hv.cmd=<base64> on the guest's command line (guests/linux/README.md).
# --guest test: guests/testguest's image (an arm64 Image / an x86 bzImage, loaded
# by hv like Linux) is the bundle's kernel, with no initramfs; testguest.expect=hv
# makes a missing hv a failure; it ends with 'testguest: N passed, M failed'.
guest_linux_build() {
    local out=$cache_dir/$arch-hvctl hvctl
    hvctl=$(guests/hvctl/build.sh "$arch") || die 4 "building hvctl failed (see above)"
    mkdir -p "$out"
    if [ ! -s "$out/built" ] || [ "$hvctl" -nt "$out/built" ] ||
        [ guests/linux/init -nt "$out/built" ] || [ guests/linux/build.sh -nt "$out/built" ]; then
        guests/linux/build.sh --arch "$arch" --extra "$hvctl:/bin/hvctl" --out "$out" >"$out/built.new" ||
            die 4 "building the Linux guest failed (see above)"
        mv "$out/built.new" "$out/built"
    fi
    cat "$out/built"
}

# Writes $bundle for --guest linux|test; $1 is the guest's console device.
guest_bundle() {
    local console=$1 guest_kernel guest_initrd= append
    case "$guest" in
        linux)
            if [ -z "$kernel" ] || [ -z "$initrd" ]; then
                local built
                built=$(guest_linux_build) || exit
                [ -n "$kernel" ] || kernel=$(sed -n 's/^kernel=//p' <<<"$built")
                [ -n "$initrd" ] || initrd=$(sed -n 's/^initrd=//p' <<<"$built")
            fi
            guest_kernel=$kernel guest_initrd=$initrd
            append="console=$console panic=-1"
            [ -z "$guest_cmd" ] || append+=" hv.cmd=$(printf '%s' "$guest_cmd" | base64 -w0)"
            ;;
        test)
            guest_kernel=$(guests/testguest/build.sh "$arch") || die 4 "building the test guest failed (see above)"
            append="testguest.expect=hv"
            ;;
        *) return ;;
    esac
    bundle=$(mktemp "${TMPDIR:-/tmp}/hv-guest.XXXXXX")
    python3 scripts/mkbundle.py --kernel "$guest_kernel" ${guest_initrd:+--initrd "$guest_initrd"} \
        --cmdline "$append" -o "$bundle" >/dev/null || die 4 "writing the guest bundle failed"
}

# arm64 power-off: the guest's PSCI SYSTEM_OFF traps to hv, which powers off
# (status 0). The guest's PSCI SYSTEM_RESET: hv resets the machine; on a terminal
# QEMU reboots hv and the guest; otherwise -no-reboot ends QEMU and run.sh reports
# the reset as a failure (the guest runs with panic=-1, so a guest panic ends the
# same way).
qemu_aarch64() {
    qemu=(qemu-system-aarch64
        -M virt,virtualization=on,gic-version=3
        -cpu "$cpu" -m "$mem" -smp "$smp"
        -kernel "$image" -append "$hv_cmdline"
        -nic none
        # hv ends a failed boot with semihosting SYS_EXIT so QEMU's status is non-zero.
        -semihosting-config enable=on,target=native)
    guest_bundle ttyAMA0
    if [ -n "$bundle" ]; then
        qemu+=(-initrd "$bundle")
        [ "$interactive" = 1 ] || qemu+=(-no-reboot)
    fi
}

# x86_64 power-off with a guest: the guest's ACPI S5 write (PM1a_CNT, port 0x604
# on q35, read from the FADT) is intercepted by hv, which ends QEMU through
# isa-debug-exit with the clean code (status 33 -> 0), the same scheme as without
# a guest. A guest triple fault or reset request is logged by hv with the guest's
# state and ends with 0x11 (status 35 -> 1); a reset hv does not see (QEMU status
# 0 under -no-reboot) is a failure too.
qemu_x86_64() {
    # hv is an ELF with a PVH note: QEMU's -kernel enters it in 32-bit mode.
    # isa-debug-exit is how hv hands QEMU an exit status (see the top of this file).
    qemu=(qemu-system-x86_64
        -M q35 -accel tcg
        -cpu "$cpu" -m "$mem" -smp "$smp"
        -kernel "$image" -append "$hv_cmdline"
        -nic none -no-reboot
        -device isa-debug-exit,iobase=0xf4,iosize=0x04)
    guest_bundle ttyS0
    [ -z "$bundle" ] || qemu+=(-initrd "$bundle")
    clean_exit_status=33
}

# QEMU's exit status for a clean power-off (qemu_<arch> may change it).
clean_exit_status=0
bundle=
trap '[ -z "$bundle" ] || rm -f "$bundle"' EXIT
"qemu_$arch"
# Deliberately unquoted: HV_QEMU_ARGS is a list of words.
# shellcheck disable=SC2206
qemu+=(${HV_QEMU_ARGS:-})
command -v "${qemu[0]}" >/dev/null || die 4 "${qemu[0]} not found (scripts/setup.sh installs it on Debian)"

# ---- run ----------------------------------------------------------------------

timeout_cmd=()
[ "$timeout" != 0 ] && timeout_cmd=(timeout --foreground -k 5 "$timeout")

if [ "$interactive" = 1 ]; then
    say "booting $image on ${qemu[0]} (cpu $cpu, $mem, smp $smp); Ctrl-A X quits"
    "${timeout_cmd[@]}" "${qemu[@]}" -nographic
    status=$?
    [ "$status" = 124 ] && die 3 "timed out after ${timeout}s"
    [ "$status" = "$clean_exit_status" ] && exit 0
    [ "$status" = 0 ] && exit 1
    exit "$status"
fi

log=$(mktemp "${TMPDIR:-/tmp}/hv-run.XXXXXX")
trap 'rm -f "$log"; [ -z "$bundle" ] || rm -f "$bundle"' EXIT
say "booting $image on ${qemu[0]} (cpu $cpu, $mem, smp $smp, hv: '$hv_cmdline', timeout ${timeout}s)"
"${timeout_cmd[@]}" "${qemu[@]}" -display none -monitor none -serial stdio </dev/null 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    die 3 "timed out after ${timeout}s: the machine did not power off"
fi
if grep -q '^hv: FATAL' "$log"; then
    die 1 "hv stopped with a failure ($(grep -m1 '^hv: FATAL' "$log" | tr -d '\r')); QEMU exit status $status"
fi
if grep -q '^hv: guest called PSCI SYSTEM_RESET' "$log"; then
    die 1 "the guest reset the machine (a reboot, or a guest panic with panic=-1); QEMU exit status $status"
fi
if [ "$status" != "$clean_exit_status" ]; then
    die 1 "QEMU exited with status $status"
fi
say "hv powered the machine off cleanly"
exit 0
