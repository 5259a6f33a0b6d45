#!/usr/bin/env bash
# hv boots on x86_64 (PVH under QEMU TCG), maps itself W^X, dumps its own
# tables in Linux's x86 format and checks them; selftest=wx must be refused.
# Runs scripts/run.sh non-interactively on two CPU models and several RAM sizes.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/testlib.sh

log=
logdir=$(mktemp -d "${TMPDIR:-/tmp}/hv-x86-test.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

# boot NAME ARGS... : runs hv, keeps the log (carriage returns stripped) and the status.
boot() { run_logged "$1" scripts/run.sh --arch x86_64 --guest none --timeout 60 "${@:2}"; }

has() { grep -qE -- "$1" "$log"; }
has_fixed() { grep -qF -- "$1" "$log"; }
lacks() { ! grep -qE -- "$1" "$log"; }

# The dump line right after the marker `---[ NAME ]---`.
line_after() { awk -v m="---[ $1 ]---" '$0 == m { getline; print; exit }' "$log"; }
# The dump line right before the marker `---[ NAME ]---`.
line_before() { awk -v m="---[ $1 ]---" '$0 == m { print prev; exit } { prev = $0 }' "$log"; }

# A present range line of the marker's region with exactly these flags (Linux's
# x86 columns: USR, RW/ro, PWT, PCD, PSE, PAT, GLB, NX/x, then the level).
region_is() { # region_is NAME REGEX
    local line
    line=$(line_after "$1")
    [[ $line =~ ^0x[0-9a-f]{16}-0x[0-9a-f]{16}\ +[0-9]+[KMG]\ +$2$ ]] || {
        echo "    '$1' line: '$line' (wanted flags /$2/)"
        return 1
    }
}
# A 4K non-present line (a guard page) right before the marker.
guard_before() {
    local line
    line=$(line_before "$1")
    [[ $line =~ ^0x[0-9a-f]{16}-0x[0-9a-f]{16}\ +4K\ +pte$ ]] || {
        echo "    line before '$1': '$line' (wanted an unmapped 4K pte)"
        return 1
    }
}

TEXT='ro +GLB x +pte'
RODATA='ro +GLB NX pte'
RW='RW +GLB NX pte'
DEVICE='RW PWT PCD +GLB NX pte'

good_boot() { # good_boot CPU MEM
    local cpu=$1 mem=$2 name="boot-$1-$2"
    echo "--- -cpu $cpu -m $mem, no guest"
    boot "$name" --cpu "$cpu" --mem "$mem"
    check "$name: exit status 0 (clean power-off), got $status" test "$status" = 0
    check "$name: banner" has '^hv: hv [0-9.]+ \(x86_64\), entered through PVH'
    check "$name: memory map from hvm_start_info" has '^hv:   \[mem 0x0000000000100000-0x[0-9a-f]{16}\] usable$'
    check "$name: command line passed through PVH" has_fixed 'hv: command line: "guest=none"'
    check "$name: hv's own tables active with NX and WP" has '^hv: own page tables active: .*NX on, WP on'
    check "$name: dump in Linux x86 format" has_fixed '---[ end of x86_64 4-level page tables ]---'
    check "$name: text is ro + x" region_is 'hv text' "$TEXT"
    check "$name: rodata is ro + NX" region_is 'hv rodata' "$RODATA"
    check "$name: data/bss is RW + NX" region_is 'hv data/bss' "$RW"
    check "$name: stack is RW + NX" region_is 'hv stacks' "$RW"
    check "$name: fault stack is RW + NX" region_is 'hv fault stack' "$RW"
    check "$name: page tables are RW + NX" region_is 'hv page tables' "$RW"
    check "$name: heap is RW + NX" region_is 'hv heap' "$RW"
    check "$name: LAPIC MMIO is RW + uncached + NX" region_is 'hv devices' "$DEVICE"
    check "$name: unmapped guard page below the stack" guard_before 'hv stacks'
    check "$name: unmapped guard page below the fault stack" guard_before 'hv fault stack'
    check "$name: no W+X mapping anywhere in the dump" lacks '^0x.* RW .* x +(pte|pmd|pud)$'
    check "$name: Linux's W+X verdict: passed" \
        has_fixed 'x86/mm: Checked W+X mappings: passed, no W+X pages found.'
    check "$name: hv's self-check passed" has '^hv: self-check passed: '
    check "$name: powers off with no guest" has_fixed 'hv: no guest to start: powering off'
    check "$name: no FATAL line" lacks 'FATAL'
}

good_boot max 512M
good_boot max 4G
good_boot EPYC 512M
good_boot EPYC 2G

echo "--- selftest=wx (one page mapped W+X on purpose)"
boot wx --hv-args selftest=wx
check "wx: non-zero exit status, got $status" test "$status" != 0
check "wx: the W+X page shows in the dump as RW + x" region_is 'selftest=wx page' 'RW +GLB x +pte'
check "wx: Linux's per-mapping warning" has '^x86/mm: Found insecure W\+X mapping at address [0-9a-f]{16}/0x[0-9a-f]+$'
check "wx: Linux's W+X verdict: FAILED, 1 page" has_fixed 'x86/mm: Checked W+X mappings: FAILED, 1 W+X pages found.'
check "wx: the offending range, named" has '^hv: W\+X range 0x[0-9a-f]{16}-0x[0-9a-f]{16} 4K \(selftest=wx page\)$'
check "wx: boot refused" has '^hv: FATAL: refusing to boot: .*W\^X'
check "wx: no guest start, no power-off" lacks 'powering off|starting guest'
check "wx: no 'passed' verdict" lacks 'Checked W\+X mappings: passed'

echo "--- selftest=fault (read the stack guard page)"
boot fault --cpu EPYC --hv-args selftest=fault
check "fault: non-zero exit status, got $status" test "$status" != 0
guard=$(sed -nE 's/^hv: selftest=fault: reading the stack guard page at (0x[0-9a-f]+)$/\1/p' "$log")
check "fault: hv touched its guard page ($guard)" test -n "$guard"
guard16=$(printf '0x%016x' "${guard:-0}")
check "fault: #PF reported with CR2 = the guard page" \
    has "^hv: FATAL: unexpected exception: vector 14 \(#PF page fault\), error code 0x0, CR2 $guard16$"
check "fault: registers printed" has '^RIP: 0x0008:0x[0-9a-f]{16} RFLAGS: '

show_failing_logs
summary "x86_64 boot"
