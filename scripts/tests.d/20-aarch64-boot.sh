#!/usr/bin/env bash
# arm64 boot tests: hv boots at EL2 on QEMU virt, dumps its own EL2 tables,
# passes its W+X check and powers off; selftest=wx and selftest=fault must
# stop it with a non-zero status; entered at EL1 it must refuse to run.
# Runs scripts/run.sh non-interactively and checks the serial log.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/testlib.sh

logs=$(mktemp -d "${TMPDIR:-/tmp}/hv-aarch64-tests.XXXXXX")
trap 'rm -rf "$logs"' EXIT

# The first dump line after the marker `---[ NAME ]---`.
line_after_marker() {
    awk -v m="---[ $2 ]---" 'found && /^0x/ { print; exit } $0 == m { found = 1 }' "$1"
}

# part LOG NAME PATTERN...: the region's first dump line matches every pattern.
part() {
    local log=$1 name=$2 line
    shift 2
    line=$(line_after_marker "$log" "$name")
    [ -n "$line" ] || { echo "    no dump line after ---[ $name ]---"; return 1; }
    for pattern in "$@"; do
        grep -qE -- "$pattern" <<<"$line" || { echo "    '$line' does not match '$pattern'"; return 1; }
    done
}

# The dump line just before the marker: the guard page, a hole (no flags after the level).
guard_below() {
    local line
    line=$(awk -v m="---[ $2 ]---" '$0 == m { print prev; exit } /^0x/ { prev = $0 }' "$1")
    grep -qE '^0x[0-9a-f]{16}-0x[0-9a-f]{16} +4K PTE *$' <<<"$line" || {
        echo "    line before ---[ $2 ]--- is '$line', not a 4K hole"
        return 1
    }
}

has() { grep -qF -- "$2" "$1" || { echo "    missing: $2"; return 1; }; }
lacks() { ! grep -qF -- "$2" "$1" || { echo "    unexpected: $2"; return 1; }; }

run() { # run LOG ARGS...: runs hv without a guest, stores the log (serial CRs dropped), returns run.sh's status
    local log=$1
    shift
    capture "$log" bash scripts/run.sh --guest none --timeout 60 "$@"
}

echo "building hv for aarch64"
image=$(bash scripts/build-hv.sh aarch64 2>"$logs/build.log") || setup_failed "$logs/build.log"

RW_NX=' RW NX SHD AF '
for config in "max 512M" "cortex-a57 2G" "cortex-a72 4G"; do
    read -r cpu mem <<<"$config"
    log="$logs/boot-$cpu-$mem.log"
    echo "clean boot: -cpu $cpu, $mem"
    failed_before=$failed
    run "$log" --cpu "$cpu" --mem "$mem"
    status=$?
    check "exit status 0 (PSCI SYSTEM_OFF)" [ "$status" = 0 ]
    check "banner" grep -qE '^hv [0-9.]+ \(aarch64\) starting at EL2 on ' "$log"
    case "$mem" in
        *G) bytes=$((${mem%G} << 30)) ;;
        *M) bytes=$((${mem%M} << 20)) ;;
    esac
    check "RAM from the device tree" has "$log" "hv:   RAM        0x40000000-$(printf '%#x' $((0x40000000 + bytes))) ($mem)"
    check "hv text: ro x, normal memory" part "$log" "hv text" ' ro x  SHD AF ' 'MEM/NORMAL$'
    check "hv rodata: ro NX" part "$log" "hv rodata" ' ro NX SHD AF ' 'MEM/NORMAL$'
    check "hv data/bss: RW NX" part "$log" "hv data/bss" "$RW_NX" 'MEM/NORMAL$'
    check "hv boot stack: RW NX, guard page below" part "$log" "hv boot stack" "$RW_NX" 'MEM/NORMAL$'
    check "guard page below the boot stack is unmapped" guard_below "$log" "hv boot stack"
    check "hv exception stack: RW NX" part "$log" "hv exception stack" "$RW_NX" 'MEM/NORMAL$'
    check "guard page below the exception stack is unmapped" guard_below "$log" "hv exception stack"
    check "hv heap: RW NX" part "$log" "hv heap" "$RW_NX" 'MEM/NORMAL$'
    check "hv page tables: RW NX" part "$log" "hv page tables" "$RW_NX" 'MEM/NORMAL$'
    check "device tree: ro NX" part "$log" "device tree" ' ro NX SHD AF ' 'MEM/NORMAL$'
    check "PL011: RW NX device" part "$log" "PL011" "$RW_NX" 'DEVICE/nGnRE$'
    check "GIC distributor: RW NX device" part "$log" "GIC distributor" "$RW_NX" 'DEVICE/nGnRE$'
    check "GIC redistributors: RW NX device" part "$log" "GIC redistributors" "$RW_NX" 'DEVICE/nGnRE$'
    check "no executable line other than text" \
        [ "$(grep -cE '^0x.* x  SHD' "$log")" = 1 ]
    check "W+X verdict passed" has "$log" "Checked W+X mappings: passed, no W+X pages found"
    check "self-check passed" has "$log" "hv: self-check passed: 13 regions mapped as intended, no W+X pages"
    check "says there is no guest and powers off" has "$log" "hv: no guest to run (guest=none): powering off"
    check "no FATAL line" lacks "$log" "hv: FATAL"
    [ "$failed" = "$failed_before" ] || sed 's/^/    | /' "$log" | head -80
done

echo "selftest=wx: a W+X page must stop the boot"
log="$logs/wx.log"
run "$log" --cpu cortex-a57 --mem 1G --hv-args 'selftest=wx'
status=$?
check "non-zero exit status ($status)" [ "$status" != 0 ]
check "the W+X page is in the dump as RW x" part "$log" "selftest W+X page" ' RW x  SHD AF ' 'MEM/NORMAL$'
check "Linux's per-mapping message" grep -qE '^arm64/mm: Found insecure W\+X mapping at address ' "$log"
check "Linux's FAILED summary" has "$log" "Checked W+X mappings: FAILED, 1 W+X pages found, 0 non-UXN pages found"
check "the offending range" grep -qE '^hv: W\+X range 0x[0-9a-f]{16}-0x[0-9a-f]{16} 4K \(selftest W\+X page\)$' "$log"
check "refuses to boot" has "$log" "hv: FATAL: refusing to boot"
check "no guest start, no power-off" lacks "$log" "powering off"
check "run.sh reports the failure" has "$log" "run.sh: hv stopped with a failure"

echo "selftest=fault: the guard page below the stack must fault"
log="$logs/fault.log"
run "$log" --hv-args 'selftest=fault'
status=$?
check "non-zero exit status ($status)" [ "$status" != 0 ]
check "exception class decoded" has "$log" "EC 0x25 data abort at EL2"
check "translation fault at the guard page" grep -qE 'translation fault, level 3: read at 0x[0-9a-f]+$' "$log"
check "names the stack" has "$log" "FAR is in the guard page below the hv boot stack"
check "prints registers" grep -qE '^hv: ERROR:   x0  0x[0-9a-f]{16}  x1  0x' "$log"
check "stops with FATAL" has "$log" "hv: FATAL: unexpected synchronous exception (data abort at EL2)"

echo "selftest=panic: the panic handler reports and stops"
log="$logs/panic.log"
run "$log" --hv-args 'selftest=panic'
status=$?
check "non-zero exit status ($status)" [ "$status" != 0 ]
check "message and location" grep -qE '^hv: FATAL: panic at arch/src/aarch64/mod\.rs:[0-9]+:[0-9]+: selftest=panic: panicking on purpose$' "$log"
check "no power-off" lacks "$log" "powering off"

echo "command line warnings"
log="$logs/warn.log"
run "$log" --hv-args 'nosuch=1 log=loud'
status=$?
check "still boots (status $status)" [ "$status" = 0 ]
check "unknown option warned" has "$log" "hv: WARN: unknown command-line option 'nosuch=1' ignored"
check "bad value warned" has "$log" "hv: WARN: bad value 'loud' for log= ignored"

echo "entered at EL1 (no virtualization=on): hv must refuse"
log="$logs/el1.log"
timeout 30 qemu-system-aarch64 -M virt -cpu cortex-a57 -m 512M -kernel "$image" -nic none \
    -semihosting-config enable=on,target=native -display none -monitor none -serial stdio \
    </dev/null 2>&1 | tr -d '\r' >"$log"
status=${PIPESTATUS[0]}
check "exit status 1 ($status)" [ "$status" = 1 ]
check "clear message" has "$log" "hv: FATAL: hv was entered at EL1 but must start at EL2"

echo "run.sh refuses bad usage"
bash scripts/run.sh --guest nosuch >"$logs/test.log" 2>&1
status=$?
check "--guest nosuch: status 2 ($status)" [ "$status" = 2 ]
check "--guest nosuch: names the choices" has "$logs/test.log" "--guest 'nosuch': expected none, linux or test"
bash scripts/run.sh --no-such-option >"$logs/opt.log" 2>&1
status=$?
check "unknown option: status 2 ($status)" [ "$status" = 2 ]
check "unknown option: named" has "$logs/opt.log" "unknown option '--no-such-option'"

echo "run.sh timeout: a machine that never powers off"
start=$SECONDS
HV_QEMU_ARGS=-S bash scripts/run.sh --guest none --timeout 2 >"$logs/timeout.log" 2>&1
status=$?
check "status 3 ($status)" [ "$status" = 3 ]
check "says it timed out" has "$logs/timeout.log" "run.sh: timed out after 2s"
check "within the timeout ($((SECONDS - start))s)" [ $((SECONDS - start)) -lt 15 ]

summary
