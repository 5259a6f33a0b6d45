#!/usr/bin/env bash
# The Linux guest recipe (guests/linux): builds both arches' guests (cached after the
# first ~130 MB of downloads) and boots each DIRECTLY on QEMU with a command whose output,
# exit status and Linux's own W+X verdict are checked. Ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."

logdir=target/tests/guest-recipe
mkdir -p "$logdir"
passed=0 failed=0
check() { # check NAME COMMAND...
    local name=$1
    shift
    if "$@"; then
        echo "ok   $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        failed=$((failed + 1))
    fi
}
has_line() { grep -qxF -- "$2" "$1"; }

# The guest command: quoting, arithmetic done by the guest shell, debugfs, SMP, and a
# non-zero exit status that run-direct.sh must pass through.
guest_cmd=$(
    cat <<'CMD'
uname -m
echo "sum=$((6 * 7))"
printf '<%s>' "a b" 'c"d' "it's"; echo
echo "cpus=$(grep -c ^processor /proc/cpuinfo)"
grep -q ' /sys/kernel/debug debugfs ' /proc/mounts && echo debugfs=mounted
exit 7
CMD
)

check_boot() { # check_boot ARCH LABEL WX_LINE [run-direct args...]
    local arch=$1 label=$2 wx_line=$3
    shift 3
    local out=$logdir/$label.out log=$logdir/$label.log status
    guests/linux/run-direct.sh --arch "$arch" --smp 2 --cmd "$guest_cmd" --output-only --log "$log" "$@" \
        >"$out" 2>"$logdir/$label.err"
    status=$?
    check "$label: command exit status 7 passed through (got $status)" [ "$status" = 7 ]
    check "$label: uname -m is $arch" has_line "$out" "$arch"
    check "$label: guest shell computed sum=42" has_line "$out" "sum=42"
    check "$label: quotes and spaces survived" has_line "$out" "<a b><c\"d><it's>"
    check "$label: 2 CPUs online" has_line "$out" "cpus=2"
    check "$label: debugfs mounted" has_line "$out" "debugfs=mounted"
    check "$label: Linux's W+X check passed" grep -qF -- "$wx_line" "$log"
    grep -h 'powered off after' "$logdir/$label.err" | sed 's/^/     /'
}

build_guest() { guests/linux/build.sh --arch "$1" >"$logdir/build-$1.out" 2>"$logdir/build-$1.err"; }
for arch in aarch64 x86_64; do
    check "build $arch guest" build_guest "$arch"
done

initrd=.cache/guests/aarch64-6.1/initrd.cpio.gz
first=$(sha256sum <"$initrd")
guests/linux/build.sh --arch aarch64 >/dev/null 2>&1
check "initramfs is byte-identical when rebuilt" [ "$first" = "$(sha256sum <"$initrd")" ]

check_boot aarch64 aarch64 "Checked W+X mappings: passed, no W+X pages found"
check_boot x86_64 x86_64-bzImage "x86/mm: Checked W+X mappings: passed, no W+X pages found."
check_boot x86_64 x86_64-pvh "x86/mm: Checked W+X mappings: passed, no W+X pages found." --pvh

# A guest that never reaches /init must be reported as such (125), not as a command status.
guests/linux/run-direct.sh --arch aarch64 --cmd true --append rdinit=/missing --timeout 120 \
    >"$logdir/no-init.out" 2>&1
status=$?
check "guest without /init reported as 125 (got $status)" [ "$status" = 125 ]

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
