#!/usr/bin/env bash
# arm64 console tests (issues #7 and #8, and #4's isolation gaps): hv boots
# Debian's Linux (scripts/run.sh; the initramfs carries /bin/hvctl) and
# - the boot log runs `ptdump hv`, `wx hv`, `ptdump s2`, `audit s2` through the
#   console engine;
# - Linux userspace (root) runs hvctl over the doorbell page: help, info,
#   ptdump s2, wx hv, audit s2, ptdump guest, wx guest; a non-root hvctl is
#   refused by the guest kernel (/dev/mem);
# - oracles for `ptdump guest` / `wx guest` (issue #8):
#   1. the guest's own boot-time `Checked W+X mappings: ...` line equals
#      `hvctl wx guest`'s verdict line;
#   2. kernel text symbols from /proc/kallsyms (_stext, schedule, _printk,
#      the last byte before _etext) lie in ranges `hvctl ptdump guest` shows
#      `ro x`, and the start of .data (_sdata: Debian has no KALLSYMS_ALL, so
#      _stext + the offset of /proc/iomem's "Kernel data" from "Kernel code")
#      in a `RW NX` range;
#   3. offline: QEMU's dump-guest-memory of the paused machine (QMP socket
#      through HV_QEMU_ARGS), walked by the host CLI
#      `ptdump --arch aarch64 --elf DUMP --tcr --ttbr1 --mair` with the
#      register values hvctl's `info` printed, gives the same kernel half;
#   on -cpu max (E0PD: no KPTI) and cortex-a57 (KASLR without E0PD: KPTI, so
#   at hvctl's EL0 trap TTBR1_EL1 is the trampoline and hv walks the
#   kernel's TTBR1_EL1 from its last EL1 trap, saying so);
# - isolation: the ITS and fw-cfg are `status = "disabled"` in the guest's
#   DTB and not mapped; the redistributors are emulated (Linux's own accesses
#   all pass), and a hostile bare-metal guest's writes that would enable LPIs
#   or aim GICR_PROPBASER/PENDBASER at hv's memory are refused while it goes
#   on (Linux's /dev/mem refuses the redistributors to userspace, so the
#   probe is a tiny Image built here with rustc).
# No pipefail: the checks pipe long sections into `grep -q`, which may stop
# reading early (SIGPIPE upstream is not a failure).
set -u
cd "$(dirname "$0")/../.."
. scripts/lib/testlib.sh

logs=$(mktemp -d "${TMPDIR:-/tmp}/hv-aarch64-console-tests.XXXXXX")
trap 'rm -rf "$logs"' EXIT

has() { grep -qF -- "$2" "$1" || { echo "    missing: $2"; return 1; }; }
lacks() { ! grep -qF -- "$2" "$1" || { echo "    unexpected: $2"; return 1; }; }
has_re() { grep -qE -- "$2" "$1" || { echo "    no line matches: $2"; return 1; }; }

# section LOG NAME: the output of one guest step, between '== NAME begin' and '== NAME rc=N'.
section() { sed -n "/^== $2 begin\$/,/^== $2 rc=[0-9]*\$/p" "$1" | sed '1d;$d'; }
# rc LOG NAME: that step's exit status.
rc() { sed -n "s/^== $2 rc=\([0-9]*\)\$/\1/p" "$1"; }

echo "building hv, hvctl, the guest and the ptdump CLI"
bash scripts/build-hv.sh aarch64 >/dev/null 2>"$logs/build.log" &&
    cargo build -q -p ptdump --release 2>>"$logs/build.log" || setup_failed "$logs/build.log"
ptdump_cli=${CARGO_TARGET_DIR:-$PWD/target}/release/ptdump

hv_base=$(sed -n 's/^HV_BASE = \(0x[0-9a-fA-F]*\);.*/\1/p' arch/aarch64.ld)

# What the guest runs: each step framed for `section`; then it waits for
# the host to dump its memory (QMP), and powers off.
cat >"$logs/guest.sh" <<EOF
dmesg -n 1
step() { name=\$1; shift; echo "== \$name begin"; "\$@"; echo "== \$name rc=\$?"; }
step help hvctl help
step info hvctl info
step ptdump-s2 hvctl ptdump s2
step wx-hv hvctl wx hv
step audit-s2 hvctl audit s2
step wx-guest hvctl wx guest
echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>/etc/passwd
echo 'nogroup:x:65534:' >>/etc/group
step nonroot su -s /bin/sh nobody -c 'hvctl info'
echo 0 >/proc/sys/kernel/kptr_restrict
step kallsyms grep -E ' (_stext|_etext|schedule|_printk)\$' /proc/kallsyms
step iomem grep -E 'Kernel (code|data)' /proc/iomem
step own-wx sh -c 'dmesg | grep "Checked W+X mappings"'
step its sh -c 'dmesg | grep -E "ITS|LPI"'
step dt-status sh -c 'for n in fw-cfg@9020000 intc@8000000/its@8080000; do echo "\$n \$(cat /proc/device-tree/\$n/status)"; done'
step info2 hvctl info
step ptdump-guest hvctl ptdump guest
echo "== ready for dump"
sleep 25
echo "== after dump"
EOF

# qmp SOCKET COMMAND-JSON...: runs QMP commands in order, prints the replies.
qmp() {
    python3 - "$@" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
json.loads(f.readline())
def cmd(c):
    f.write(json.dumps(c) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
print(cmd({"execute": "qmp_capabilities"}))
for c in sys.argv[2:]:
    r = cmd(json.loads(c))
    print(r)
    if "error" in r:
        sys.exit(1)
PY
}

# Oracle 2: kallsyms vs the `ptdump guest` kernel half.
symbols_oracle() { # LOG
    python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read().splitlines()
def section(name):
    out, on = [], False
    for l in text:
        if l == f"== {name} begin": on = True; continue
        if on and l.startswith(f"== {name} rc="): break
        if on: out.append(l)
    return out
dump = section("ptdump-guest")
kernel = dump[dump.index("---[ Kernel Space ]---"):]
ranges = []
for l in kernel:
    m = re.match(r"0x([0-9a-f]{16})-0x([0-9a-f]{16}) +\S+ +\S+(.*)$", l)
    if m:
        start, end = int(m[1], 16), int(m[2], 16) or 1 << 64
        ranges.append((start, end, m[3]))
syms = {}
for l in section("kallsyms"):
    a, t, n = l.split()
    syms[n] = int(a, 16)
# Debian's kernel has no KALLSYMS_ALL (no data symbols): .data's start comes
# from /proc/iomem, whose "Kernel code" starts at _stext and "Kernel data" at _sdata.
iomem = {}
for l in section("iomem"):
    m = re.match(r"\s*([0-9a-f]+)-([0-9a-f]+) : Kernel (code|data)", l)
    if m:
        iomem[m[3]] = int(m[1], 16)
if "_stext" in syms and "code" in iomem and "data" in iomem:
    syms["_sdata"] = syms["_stext"] + iomem["data"] - iomem["code"]
want = [("_stext", 0, r" ro x "), ("schedule", 0, r" ro x "), ("_printk", 0, r" ro x "), ("_etext", -1, r" ro x "),
        ("_sdata", 0, r" RW NX ")]
bad = 0
for name, delta, pattern in want:
    if name not in syms:
        print(f"    {name}: not in /proc/kallsyms (or /proc/iomem)"); bad += 1; continue
    addr = syms[name] + delta
    hit = [r for r in ranges if r[0] <= addr < r[1]]
    if not hit:
        print(f"    {name}{delta or ''} {addr:#x}: in no range of the dump"); bad += 1; continue
    line = hit[0][2]
    ok = re.search(pattern, line) is not None
    print(f"    {name}{delta or ''} {addr:#x} in {hit[0][0]:#x}-{hit[0][1]:#x}:{line}  -> {'ok' if ok else 'WRONG, want' + pattern}")
    bad += not ok
sys.exit(1 if bad else 0)
PY
}

# Oracle 3: the offline walk of the dumped memory vs hv's kernel half.
offline_oracle() { # LOG DUMP
    local log=$1 dump=$2 ttbr1 tcr mair
    # Under KPTI (hvctl's EL0 trap), the kernel's TTBR1_EL1 is the one hv walked.
    if section "$log" info2 | grep -q '^  KPTI: '; then
        ttbr1=$(section "$log" info2 | awk '$1 == "kernel" && $2 == "TTBR1_EL1" { print $3 }')
    else
        ttbr1=$(section "$log" info2 | awk '$1 == "TTBR1_EL1" { print $2 }')
    fi
    tcr=$(section "$log" info2 | awk '$1 == "TCR_EL1" { print $2 }')
    mair=$(section "$log" info2 | awk '$1 == "MAIR_EL1" { print $2 }')
    echo "    ptdump --arch aarch64 --elf DUMP --tcr $tcr --ttbr1 $ttbr1 --mair $mair"
    "$ptdump_cli" --arch aarch64 --elf "$dump" --tcr "$tcr" --ttbr1 "$ttbr1" --mair "$mair" >"$dump.txt" 2>"$dump.err"
    echo "    (ptdump CLI status $?; $(wc -l <"$dump.txt") lines)"
    section "$log" ptdump-guest | sed -n '/^---\[ Kernel Space \]---$/,$p' | sed 's/ *$//' >"$dump.hv"
    # The CLI adds its own W+X check of the half after the dump.
    sed -n '/^0x/,$p' "$dump.txt" | grep -v '^ptdump: \|^Checked W+X' | sed 's/ *$//' >"$dump.cli"
    # Both print Linux's layout markers; the range lines are what must agree.
    sed -i '/^---\[/d' "$dump.hv"
    sed -i '/^---\[/d' "$dump.cli"
    if diff -u "$dump.hv" "$dump.cli" >"$dump.diff"; then
        echo "    identical: $(wc -l <"$dump.hv") lines"
        return 0
    fi
    echo "    differences (hv in-guest -, offline +):"
    sed 's/^/      /' "$dump.diff" | head -40
    return 1
}

for cpu in max cortex-a57; do
    echo "Linux guest with hvctl: -cpu $cpu"
    log="$logs/$cpu.log"
    qmp_sock="$logs/qmp-$cpu.sock"
    dump="$logs/dump-$cpu.elf"
    failed_before=$failed
    HV_QEMU_ARGS="-qmp unix:$qmp_sock,server=on,wait=off" \
        bash scripts/run.sh --timeout 240 --cpu "$cpu" --guest-cmd "$(cat "$logs/guest.sh")" >"$log.raw" 2>&1 &
    runner=$!
    dumped=no
    for _ in $(seq 1 2000); do
        if grep -q '^== ready for dump' "$log.raw" 2>/dev/null; then
            if qmp "$qmp_sock" '{"execute":"stop"}' \
                "{\"execute\":\"dump-guest-memory\",\"arguments\":{\"paging\":false,\"protocol\":\"file:$dump\"}}" \
                '{"execute":"cont"}' >"$logs/qmp-$cpu.out" 2>&1; then
                dumped=yes
            fi
            break
        fi
        kill -0 "$runner" 2>/dev/null || break
        sleep 0.1
    done
    wait "$runner"
    status=$?
    tr -d '\r' <"$log.raw" >"$log"
    check "exit status 0 ($status)" [ "$status" = 0 ]

    # The boot log, through the engine.
    for cmd in "ptdump hv" "wx hv" "ptdump s2" "audit s2"; do
        check "boot log: 'hv> $cmd' ran through the console engine and passed" has "$log" "hv> $cmd: ok"
    done
    check "boot log: hv's W+X check" has "$log" "Checked W+X mappings: passed, no W+X pages found"
    check "boot log: the stage-2 dump" has "$log" "---[ Guest IPA ]---"
    check "boot log: the isolation audit" has_re "$log" '^hv: stage-2 isolation audit: passed'

    # hvctl from the guest's userspace.
    check "hvctl help (rc $(rc "$log" help))" eval '[ "$(rc "$log" help)" = 0 ] && section "$log" help | grep -qF "ptdump hv|s2|guest [START END]"'
    check "hvctl info: version, layout, guest state at an EL0 trap" eval '[ "$(rc "$log" info)" = 0 ] &&
        section "$log" info | grep -qE "^hv [0-9.]+ \(aarch64\)$" &&
        section "$log" info | grep -qE "^  stage-2 root +0x[0-9a-f]+ \(" &&
        section "$log" info | grep -qE "^  CPU MPIDR 0x[0-9a-f]+, PC 0x[0-9a-f]+, EL0 \(AArch64\)$"'
    check "hvctl ptdump s2: guest RAM RWX, hv's region a hole" eval '[ "$(rc "$log" ptdump-s2)" = 0 ] &&
        section "$log" ptdump-s2 | grep -qE "^0x0000000042200000-0x0000000080000000 +990M 2 +R W X AF BLK$" &&
        section "$log" ptdump-s2 | grep -qE "^0x$(printf %016x "$hv_base")-0x0000000042200000 +32M 2$"'
    check "hvctl wx hv: passed" eval '[ "$(rc "$log" wx-hv)" = 0 ] &&
        section "$log" wx-hv | grep -qx "Checked W+X mappings: passed, no W+X pages found"'
    check "hvctl audit s2: passed" eval '[ "$(rc "$log" audit-s2)" = 0 ] &&
        section "$log" audit-s2 | grep -qE "^hv: stage-2 isolation audit: passed"'
    check "hvctl ptdump guest: User Space and Kernel Space, kernel text ro x" eval '[ "$(rc "$log" ptdump-guest)" = 0 ] &&
        section "$log" ptdump-guest | grep -qxF -- "---[ User Space ]---" &&
        section "$log" ptdump-guest | grep -qxF -- "---[ Kernel Space ]---" &&
        section "$log" ptdump-guest | sed -n "/Kernel Space/,\$p" | grep -qE "^0xffff[0-9a-f]{12}-.* ro x  SHD AF .*MEM/NORMAL$"'
    check "hvctl wx guest: the kernel half, passed" eval '[ "$(rc "$log" wx-guest)" = 0 ] &&
        section "$log" wx-guest | grep -qE "^hv: wx guest: Linux.s check covers the kernel.s mappings: TTBR1_EL1" &&
        section "$log" wx-guest | grep -qx "Checked W+X mappings: passed, no W+X pages found"'
    check "non-root hvctl refused by the guest kernel (rc $(rc "$log" nonroot))" eval '[ "$(rc "$log" nonroot)" = 2 ] &&
        section "$log" nonroot | grep -qx "hvctl: must run as root (needs /dev/mem)"'
    case "$cpu" in
        max)
            check "-cpu max (E0PD): no KPTI, hvctl walks TTBR1_EL1 as it is" eval '! section "$log" info | grep -q KPTI'
            ;;
        cortex-a57)
            check "cortex-a57 (KPTI): hv detects the trampoline and walks the kernel's TTBR1_EL1" eval '
                section "$log" info | grep -qE "^  kernel TTBR1_EL1 0x[0-9a-f]+ \(from the guest.s last EL1 trap\)$" &&
                section "$log" info | grep -q "^  KPTI: at EL0 TTBR1_EL1 holds the kernel.s trampoline tables" &&
                section "$log" wx-guest | grep -q "^hv: the guest is at EL0 with KPTI" &&
                section "$log" wx-guest | grep -qE "covers the kernel.s mappings: TTBR1_EL1 \(kernel.s, KPTI\)"'
            ;;
    esac

    # Oracles.
    own=$(section "$log" own-wx | grep -o 'Checked W+X mappings: .*' | head -n1)
    hv=$(section "$log" wx-guest | grep -o 'Checked W+X mappings: .*' | head -n1)
    echo "    guest's own: '$own'; hvctl wx guest: '$hv'"
    check "oracle 1: the guest's own W+X verdict equals hvctl wx guest's" eval '[ -n "$own" ] && [ "$own" = "$hv" ]'
    check "oracle 2: kallsyms text symbols in ro x ranges, .data (_sdata) in RW NX" symbols_oracle "$log"
    check "oracle 3: QMP dump-guest-memory of the paused guest taken ($dumped)" [ "$dumped" = yes ]
    if [ "$dumped" = yes ]; then
        check "oracle 3: offline ptdump of the dump = hvctl ptdump guest's kernel half" offline_oracle "$log" "$dump"
    fi
    check "the guest went on after the dump" has "$log" "== after dump"

    # Isolation: ITS and fw-cfg withheld, redistributors guarded.
    check "hv withholds the ITS and fw-cfg" eval 'has "$log" "its@8080000 withheld from the guest" && has "$log" "fw-cfg@9020000 withheld from the guest"'
    check "guest DTB: both 'disabled'" eval 'section "$log" dt-status | grep -qx "fw-cfg@9020000 disabled" &&
        section "$log" dt-status | grep -qx "intc@8000000/its@8080000 disabled"'
    check "Linux enables no LPIs" eval 'section "$log" its | grep -q "ITS: No ITS available, not enabling LPIs"'
    check "hv traps the redistributors" has_re "$log" '^hv: GIC redistributors 0x0*80a0000-0x0*8ffffff trapped'
    check "redistributor counts in info" eval 'section "$log" info2 | grep -qE "^  GIC redistributors .* trapped: [1-9][0-9]* reads, [1-9][0-9]* writes emulated \(0 refused\), [0-9]+ us in hv; ITS withheld$"'
    check "no unexpected trap, no FATAL, no oops" eval 'lacks "$log" "unexpected guest trap" && lacks "$log" "hv: FATAL" && lacks "$log" "Internal error"'
    [ "$failed" = "$failed_before" ] || sed 's/^/    | /' "$log" | grep -v '^    | 0x' | tail -80
done

echo "hostile redistributor writes: a bare-metal guest aims the LPI tables at hv"
probe_dir="$logs/probe"
mkdir -p "$probe_dir"
guest_table=0x50000000
cat >"$probe_dir/probe.ld" <<'EOF'
ENTRY(_start)
SECTIONS {
    . = 0;
    .text : { KEEP(*(.text.head)) *(.text*) *(.rodata*) }
    /DISCARD/ : { *(.comment) *(.eh_frame*) }
}
EOF
cat >"$probe_dir/probe.rs" <<'EOF'
#![no_std]
#![no_main]
// A bare-metal arm64 Image that plays a hostile guest kernel towards the
// GICv3 redistributor of CPU 0: it tries to enable LPIs and to aim the LPI
// tables at hv's memory, reads the registers back and prints them on the
// PL011, then powers off with PSCI SYSTEM_OFF (SMC). Entered at EL1, MMU off.
core::arch::global_asm!(
    r#"
.section .text.head, "ax"
.global _start
_start:
    b       entry
    .word   0
    .quad   0                   // text_offset
    .quad   0x10000             // image_size
    .quad   0xa                 // flags: little-endian, 4K pages, anywhere
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .word   0
entry:
    ldr     x20, =0x080a0000    // GICR RD_base of CPU 0
    ldr     x21, =HV_BASE
    mov     w0, #1
    str     w0, [x20]           // GICR_CTLR.EnableLPIs = 1
    orr     x0, x21, #0xf
    str     x0, [x20, #0x70]    // GICR_PROPBASER = hv's base, 16 ID bits
    str     x21, [x20, #0x78]   // GICR_PENDBASER = hv's base
    ldr     x0, =GUEST_TABLE
    str     x0, [x20, #0x70]    // GICR_PROPBASER in guest RAM, 16 ID bits: allowed (LPIs stay off)
    mov     w1, #'C'
    ldr     w0, [x20]
    bl      report
    mov     w1, #'P'
    ldr     x0, [x20, #0x70]
    bl      report
    mov     w1, #'Q'
    ldr     x0, [x20, #0x78]
    bl      report
    ldr     x0, =0x84000008     // PSCI SYSTEM_OFF
    smc     #0
1:  wfi
    b       1b

// report: prints "probe: <w1>=0x<x0 in hex>\n".
report:
    ldr     x9, =0x09000000     // PL011 data register
    adr     x10, prefix
2:  ldrb    w11, [x10], #1
    cbz     w11, 3f
    str     w11, [x9]
    b       2b
3:  str     w1, [x9]
    mov     w11, #'='
    str     w11, [x9]
    mov     w11, #'0'
    str     w11, [x9]
    mov     w11, #'x'
    str     w11, [x9]
    mov     x12, #60
4:  lsr     x11, x0, x12
    and     x11, x11, #0xf
    cmp     x11, #10
    add     x13, x11, #'0'
    add     x14, x11, #('a' - 10)
    csel    x11, x13, x14, lo
    str     w11, [x9]
    subs    x12, x12, #4
    b.pl    4b
    mov     w11, #'\n'
    str     w11, [x9]
    ret
prefix:
    .asciz  "probe: "
    .balign 8
    .ltorg
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
EOF
sed -i "s/HV_BASE/$hv_base/; s/GUEST_TABLE/$((guest_table | 0xf))/" "$probe_dir/probe.rs"
sysroot=$(rustc --print sysroot)
log="$logs/probe.log"
if rustc --edition 2021 --target aarch64-unknown-none -C panic=abort -C opt-level=s \
    -C link-arg=-T"$probe_dir/probe.ld" -C relocation-model=static -o "$probe_dir/probe.elf" "$probe_dir/probe.rs" \
    2>"$probe_dir/build.log" &&
    LD_LIBRARY_PATH="$sysroot/lib" "$(ls "$sysroot"/lib/rustlib/*/bin/rust-objcopy | head -n1)" \
        -O binary "$probe_dir/probe.elf" "$probe_dir/probe.img" 2>>"$probe_dir/build.log"; then
    python3 scripts/mkbundle.py --kernel "$probe_dir/probe.img" --cmdline probe -o "$probe_dir/bundle" >/dev/null
    capture "$log" timeout 60 qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -m 1G -nic none \
        -kernel "$(bash scripts/build-hv.sh aarch64 2>/dev/null)" -append guest=linux -initrd "$probe_dir/bundle" \
        -semihosting-config enable=on,target=native -display none -monitor none -serial stdio -no-reboot \
        </dev/null
    status=$?
    check "probe guest ran and powered off (status $status)" eval '[ "$status" = 0 ] && has "$log" "hv: guest called PSCI SYSTEM_OFF"'
    check "GICR_CTLR.EnableLPIs write refused" has_re "$log" \
        '^hv: guest write of 0x1 to GICR_CTLR at IPA 0x80a0000 refused: it would set GICR_CTLR.EnableLPIs'
    check "GICR_PROPBASER aimed at hv's memory refused" has_re "$log" \
        "^hv: guest write of $(printf '%#x' $((hv_base | 0xf))) to GICR_PROPBASER at IPA 0x80a0070 refused: the table $hv_base-0x[0-9a-f]+ would lie outside guest RAM"
    check "GICR_PENDBASER aimed at hv's memory refused" has_re "$log" \
        "^hv: guest write of $hv_base to GICR_PENDBASER at IPA 0x80a0078 refused: the table $hv_base-0x[0-9a-f]+ would lie outside guest RAM"
    check "GICR_CTLR reads back without EnableLPIs" has_re "$log" '^probe: C=0x[0-9a-f]{15}[02468ace]$'
    check "GICR_PROPBASER in guest RAM is written (the allowed write)" has "$log" \
        "probe: P=$(printf '0x%016x' $((guest_table | 0xf)))"
    check "GICR_PENDBASER never took hv's address" eval '! grep -q "^probe: Q=$(printf "0x%016x" "$hv_base")" "$log"'
    check "exactly three writes refused" [ "$(grep -c 'to GICR_.* refused' "$log")" = 3 ]
else
    cat "$probe_dir/build.log"
    bad "building the probe guest"
fi

summary
