#!/usr/bin/env bash
# A Debian Linux guest (bookworm 6.1 bzImage, KASLR on, busybox initramfs) runs
# under hv on x86_64 with AMD SVM and nested paging (QEMU TCG): it boots to its
# own W+X verdict, runs --guest-cmd, powers off cleanly through hv; a guest read
# of hv's memory fails in the guest while hv logs it and the guest goes on; the
# guest sees a hypervisor but no SVM; a guest reset and a non-SVM CPU are refused
# with a non-zero status. Boots on -cpu max and -cpu EPYC.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/testlib.sh

log=
logdir=$(mktemp -d "${TMPDIR:-/tmp}/hv-x86-linux-test.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

# boot NAME ARGS... : runs hv with the Linux guest, keeps the log (CR stripped) and the status.
boot() { run_logged "$1" scripts/run.sh --arch x86_64 --guest linux --timeout 120 "${@:2}"; }

has() { grep -qE -- "$1" "$log"; }
has_fixed() { grep -qF -- "$1" "$log"; }
lacks() { ! grep -qE -- "$1" "$log"; }
# The guest command's output: the lines between its begin and exit markers.
cmd_output() { sed -n '/^hv-guest: cmd begin$/,/^hv-guest: cmd exit=/p' "$log"; }
output_has() { cmd_output | grep -qE -- "$1"; }

# hv's region as the guest's e820 shows it (reserved, "(hv, not mapped ...)").
hv_region_start() { sed -nE 's/^hv: guest:   \[mem (0x[0-9a-f]+)-0x[0-9a-f]+\] reserved \(hv.*/\1/p' "$log" | head -n1; }

good_boot() { # good_boot NAME CPU [MEM]
    local name=$1 cpu=$2 mem=${3:-1G}
    echo "--- -cpu $cpu -m $mem: Linux guest, uname and /proc/cpuinfo"
    boot "$name" --cpu "$cpu" --mem "$mem" \
        --guest-cmd 'uname -a; grep -w _text /proc/kallsyms; grep -o -w -e hypervisor -e svm /proc/cpuinfo | sort -u | tr "\n" " "; echo; echo guest-cmd-done'
    check "$name: exit status 0 (guest powered off through hv), got $status" test "$status" = 0
    check "$name: hv found SVM with nested paging" has '^hv: SVM: [0-9]+ ASIDs, nested paging; NRIP save no'
    check "$name: the guest's e820 reserves hv's region" has '^hv: guest:   \[mem 0x[0-9a-f]+-0x[0-9a-f]+\] reserved \(hv'
    check "$name: NPT dump in Linux x86 format" has '^0x[0-9a-f]{16}-0x[0-9a-f]{16} +[0-9]+[KMG] USR RW +(PSE +)?x +(pte|pmd|pud)$'
    check "$name: NPT dump marks hv's image" has_fixed '---[ hv image ]---'
    check "$name: NPT dump marks the LAPIC" has_fixed '---[ LAPIC ]---'
    check "$name: hv's image is not mapped in the NPT" \
        test -n "$(awk '$0 == "---[ hv image ]---" { getline; print; exit }' "$log" | grep -E '^0x[0-9a-f]{16}-0x[0-9a-f]{16} +[0-9]+[KMG] +(pte|pmd|pud)$')"
    check "$name: isolation audit passed" \
        has '^hv: stage-2 isolation audit: passed, no stage-2 entry maps memory hv owns'
    check "$name: guest started" has '^hv: starting the guest at 0x'
    # KASLR: the kernel text is not at the link-time default 0xffffffff81000000.
    check "$name: KASLR on (kernel text randomised)" output_has '^ffffffff[0-9a-f]{8} T _text$'
    check "$name: ... not at the default address" lacks '^ffffffff81000000 T _text$'
    check "$name: Linux saw the e820 from hv" has '^\[ *[0-9.]+\] BIOS-e820: \[mem 0x0000000000200000-0x[0-9a-f]+\] reserved$'
    check "$name: guest's own W+X verdict" \
        has '^\[ *[0-9.]+\] x86/mm: Checked W\+X mappings: passed, no W\+X pages found\.$'
    check "$name: guest-cmd output arrives (uname)" output_has '^Linux .* 6\.1\..* x86_64 GNU/Linux$'
    check "$name: guest sees a hypervisor but no SVM" output_has '^hypervisor $'
    check "$name: guest command finished" output_has '^guest-cmd-done$'
    check "$name: guest reported exit 0" has '^hv-guest: cmd exit=0$'
    check "$name: hv saw the ACPI S5 power-off" has '^hv: guest powered off \(ACPI S5 via PM1a_CNT 0x[0-9a-f]+\)'
    check "$name: no FATAL line" lacks 'FATAL'
    check "$name: no kernel panic or oops" lacks 'Kernel panic|Oops|BUG:'
}

good_boot max max 1G
good_boot epyc EPYC 1G
good_boot max-4g max 4G

echo "--- devmem of hv's memory, and a write to hv's exit device, from the guest"
# hv's region starts at its image (0x200000, checked below). The guest then writes
# 0x10 (hv's clean-exit code) to isa-debug-exit's port 0xf4 through /dev/port:
# were it not intercepted, QEMU would end at once and the command would not finish.
boot devmem --guest-cmd 'devmem 0x200000 32; echo "devmem status=$?"; echo after-devmem;
    printf "\020" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null; echo "port-write status=$?"; echo still-alive'
region=$(hv_region_start)
check "devmem: hv's region starts at 0x200000 (the address read), got '$region'" \
    test "$region" = 0x0000000000200000
check "devmem: hv logged the refused access" \
    has '^hv: guest access to 0x200000 refused \(hv image\): read at RIP 0x[0-9a-f]+, CPL 3; injecting #GP$'
check "devmem: the guest kernel saw a fault in devmem only" has 'traps: devmem\[[0-9]+\] general protection fault'
check "devmem: devmem died with SIGSEGV (status 139)" output_has '^devmem status=139$'
check "devmem: the guest went on after the failed read" output_has '^after-devmem$'
check "devmem: hv refused the guest's write to its exit device" \
    has '^hv: guest write of 0x10 to port 0xf4 \(hv.s exit device\) refused at RIP 0x[0-9a-f]+$'
check "devmem: the guest finished its command after both" output_has '^still-alive$'
check "devmem: guest reported exit 0" has '^hv-guest: cmd exit=0$'
check "devmem: exit status 0, got $status" test "$status" = 0
check "devmem: no FATAL line" lacks 'FATAL'

echo "--- guest reset (reboot -f): logged with the guest's state, non-zero"
boot reset --guest-cmd 'reboot -f'
check "reset: non-zero exit status, got $status" test "$status" != 0
check "reset: hv logged the reset request" has '^hv: the guest asked for a reset \(reset register\): guest state after [0-9]+ VM exits$'
check "reset: with the guest's registers" has '^hv: RIP 0x0010:0x[0-9a-f]{16} RSP '
check "reset: no clean power-off" lacks 'hv: guest powered off'

echo "--- a CPU without SVM is refused clearly"
boot nosvm --cpu Skylake-Client --guest-cmd true
check "nosvm: non-zero exit status, got $status" test "$status" != 0
check "nosvm: hv says why" has '^hv: FATAL: cannot run a guest: this CPU has no AMD SVM'
check "nosvm: no guest started" lacks 'starting the guest'

echo "--- two CPUs: hv cannot hold the second one, so it refuses"
boot smp2 --smp 2 --guest-cmd true
check "smp2: non-zero exit status, got $status" test "$status" != 0
check "smp2: hv says why" has '^hv: FATAL: the machine has 2 CPUs; hv runs a guest on one CPU only'
check "smp2: no guest started" lacks 'starting the guest'

echo "--- a kernel that is not a bzImage is refused"
notkernel="$logdir/not-a-kernel"
head -c 65536 /dev/zero >"$notkernel"
boot notkernel --kernel "$notkernel" --guest-cmd true
check "notkernel: non-zero exit status, got $status" test "$status" != 0
check "notkernel: hv says why" has '^hv: FATAL: cannot load the Linux guest: the guest kernel is not a bzImage'

show_failing_logs
summary "x86_64 linux"
