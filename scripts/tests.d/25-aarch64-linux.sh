#!/usr/bin/env bash
# arm64 Linux guest tests: hv boots Debian's kernel + busybox initramfs under its
# stage-2 (scripts/run.sh, default guest linux) and the serial log is checked:
# hv's stage-2 dump and isolation audit, the guest's own W+X verdict, --guest-cmd
# output, power-off with exit 0, two CPUs with --smp 2, -cpu max and cortex-a57,
# a guest devmem read of hv's memory (and of an unmapped address) refused with
# SIGBUS while the guest goes on, a guest reboot, and an interactive shell's poweroff.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/testlib.sh

logs=$(mktemp -d "${TMPDIR:-/tmp}/hv-aarch64-linux-tests.XXXXXX")
trap 'rm -rf "$logs"' EXIT

has() { grep -qF -- "$2" "$1" || { echo "    missing: $2"; return 1; }; }
lacks() { ! grep -qF -- "$2" "$1" || { echo "    unexpected: $2"; return 1; }; }
has_re() { grep -qE -- "$2" "$1" || { echo "    no line matches: $2"; return 1; }; }

run() { # run LOG ARGS...: boots hv + the Linux guest, stores the log (CRs dropped), returns run.sh's status
    local log=$1
    shift
    capture "$log" bash scripts/run.sh --timeout 90 "$@"
}

# The output lines of the guest command (between the init markers).
cmd_output() { sed -n '/^hv-guest: cmd begin$/,/^hv-guest: cmd exit=/p' "$1" | sed '1d;$d'; }
# `cmd_line LOG N`: the Nth output line of the guest command.
cmd_line() { cmd_output "$1" | grep -v '^hv: \|^\[ *[0-9.]*\] ' | sed -n "$2p"; }
stage2_line_at() { # the guest stage-2 dump line that starts at ADDRESS (16 hex digits)
    awk -v a="0x$2-" '$0 == "---[ Guest IPA ]---" { s2 = 1 } s2 && index($0, a) == 1 { print; exit }' "$1"
}

echo "building hv and the guest"
bash scripts/build-hv.sh aarch64 >/dev/null 2>"$logs/build.log" || setup_failed "$logs/build.log"
guests/linux/build.sh --arch aarch64 >/dev/null 2>"$logs/guest-build.log" || setup_failed "$logs/guest-build.log"

# hv's region (arch/aarch64.ld: HV_BASE, 32 MiB): the guest never sees it.
hv_base=$(sed -n 's/^HV_BASE = \(0x[0-9a-fA-F]*\);.*/\1/p' arch/aarch64.ld)
hv_end=$(printf '%#x' $((hv_base + (32 << 20))))
probe=$(printf '%#x' $((hv_base + (1 << 20))))
echo "hv's region: $hv_base-$hv_end; the guest probes $probe"

for cpu in max cortex-a57; do
    echo "boot to a command and power-off: -cpu $cpu"
    log="$logs/boot-$cpu.log"
    failed_before=$failed
    run "$log" --cpu "$cpu" --guest-cmd 'echo "guest says $((6 * 7))"; uname -m'
    status=$?
    check "exit status 0 ($status)" [ "$status" = 0 ]
    case "$cpu" in
        max) bits=48 ;;
        cortex-a57) bits=44 ;;
    esac
    check "stage-2 for a $bits-bit IPA" has_re "$log" "^hv: guest stage-2: $bits-bit IPA, "
    check "stage-2 dump in KVM's format" has "$log" "---[ Guest IPA ]---"
    check "guest RAM mapped RWX" has_re "$log" '^0x0000000042200000-0x0000000080000000 +990M 2 +R W X AF BLK$'
    hole=$(stage2_line_at "$log" "$(printf '%016x' "$hv_base")")
    check "hv's region is a hole in stage-2 ('$hole')" \
        grep -qE "^0x$(printf '%016x' "$hv_base")-0x$(printf '%016x' "$hv_end") +32M 2$" <<<"$hole"
    check "the PL011 mapped for the guest, not executable" has_re "$log" '^0x0000000009000000-0x0000000009001000 +4K 3 +R W +AF$'
    check "isolation audit passed" has_re "$log" '^hv: stage-2 isolation audit: passed, no stage-2 entry maps memory hv owns'
    check "Linux runs at EL1 under hv" has "$log" "CPU: All CPU(s) started at EL1"
    check "guest memory without hv's region" has_re "$log" \
        "node +0: \[mem 0x0*$(printf '%x' $((hv_end)))-0x000000007fffffff\]"
    check "PSCI through hv" has "$log" "psci: PSCIv1.0 detected in firmware."
    check "the guest's own W+X check" has "$log" "Checked W+X mappings: passed, no W+X pages found"
    check "--guest-cmd output arrives" [ "$(cmd_line "$log" 1)" = "guest says 42" ]
    check "the guest is arm64" [ "$(cmd_line "$log" 2)" = "aarch64" ]
    check "command status reported" has "$log" "hv-guest: cmd exit=0"
    check "power-off goes through hv" has "$log" "hv: guest called PSCI SYSTEM_OFF: powering off"
    check "no unexpected trap" lacks "$log" "unexpected guest trap"
    check "no FATAL line" lacks "$log" "hv: FATAL"
    [ "$failed" = "$failed_before" ] || sed 's/^/    | /' "$log" | grep -v '^    | 0x' | head -120
done

for cpu in max cortex-a57; do
    echo "--smp 2: the guest brings up both CPUs through hv's PSCI (-cpu $cpu)"
    log="$logs/smp-$cpu.log"
    failed_before=$failed
    # CPU hotplug: PSCI CPU_OFF, AFFINITY_INFO, then CPU_ON again.
    run "$log" --smp 2 --cpu "$cpu" --guest-cmd 'nproc; grep -c ^processor /proc/cpuinfo
        echo 0 >/sys/devices/system/cpu/cpu1/online; nproc
        echo 1 >/sys/devices/system/cpu/cpu1/online; nproc'
    status=$?
    check "exit status 0 ($status)" [ "$status" = 0 ]
    check "Linux brought up 2 CPUs" has "$log" "smp: Brought up 1 node, 2 CPUs"
    check "nproc says 2" [ "$(cmd_line "$log" 1)" = 2 ]
    check "/proc/cpuinfo lists 2" [ "$(cmd_line "$log" 2)" = 2 ]
    check "CPU 1 offline: CPU_OFF, AFFINITY_INFO" has "$log" "psci: CPU1 killed"
    check "1 CPU left" [ "$(cmd_line "$log" 3)" = 1 ]
    check "CPU 1 back online: CPU_ON again" [ "$(cmd_line "$log" 4)" = 2 ]
    check "no FATAL line" lacks "$log" "hv: FATAL"
    [ "$failed" = "$failed_before" ] || sed 's/^/    | /' "$log" | grep -v '^    | 0x' | tail -60
done

echo "devmem: hv's memory and unmapped addresses are refused, the guest goes on"
log="$logs/devmem.log"
failed_before=$failed
run "$log" --smp 2 --guest-cmd "devmem $probe; echo \"devmem status \$?\"; devmem 0x7000000000 32; echo \"devmem status \$?\"; echo still running"
status=$?
check "exit status 0 ($status)" [ "$status" = 0 ]
check "hv logs the refused read of its memory" \
    has_re "$log" "^hv: guest access to IPA $probe refused \(hv memory\) at PC 0x[0-9a-f]+, EL0 read$"
check "hv logs the refused read of an unmapped IPA" \
    has_re "$log" "^hv: guest access to IPA 0x7000000000 refused \(unmapped\) at PC 0x[0-9a-f]+, EL0 read$"
check "devmem dies of SIGBUS (status 135), twice" [ "$(cmd_output "$log" | grep -c '^devmem status 135$')" = 2 ]
check "the guest goes on after it" [ "$(cmd_output "$log" | tail -n1)" = "still running" ]
check "the command finished" has "$log" "hv-guest: cmd exit=0"
check "the kernel did not oops" lacks "$log" "Internal error"
[ "$failed" = "$failed_before" ] || sed 's/^/    | /' "$log" | grep -v '^    | 0x' | tail -60

echo "reboot: the guest's PSCI SYSTEM_RESET goes through hv"
log="$logs/reboot.log"
run "$log" --guest-cmd 'reboot -f'
status=$?
check "run.sh reports the reset as a failure (status $status)" [ "$status" = 1 ]
check "hv logs the reset" has "$log" "hv: guest called PSCI SYSTEM_RESET: resetting the machine"
check "run.sh says why" has "$log" "run.sh: the guest reset the machine"

echo "interactive: a root shell on the console, 'poweroff' ends it"
log="$logs/interactive.log"
python3 - "$log" <<'PY'
import os, pty, select, sys, time
log = open(sys.argv[1], "wb")
pid, fd = pty.fork()
if pid == 0:
    os.execvp("bash", ["bash", "scripts/run.sh", "--timeout", "90"])
buf, sent, deadline = b"", False, time.time() + 120
while time.time() < deadline:
    ready, _, _ = select.select([fd], [], [], 1.0)
    if not ready:
        continue
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    log.write(data)
    buf += data
    # The prompt of the shell /init starts (after its ready marker).
    if not sent and b"# " in buf.split(b"hv-guest: ready")[-1]:
        time.sleep(0.3)
        os.write(fd, b"poweroff\r")
        sent = True
_, status = os.waitpid(pid, 0)
log.write(b"\nEXIT STATUS %d\n" % os.waitstatus_to_exitcode(status))
PY
tr -d '\r' <"$log" >"$log.txt"
check "the shell ran poweroff" has "$log.txt" "hv-guest: poweroff"
check "hv powered off" has "$log.txt" "hv: guest called PSCI SYSTEM_OFF: powering off"
check "run.sh exit status 0" has "$log.txt" "EXIT STATUS 0"

summary
