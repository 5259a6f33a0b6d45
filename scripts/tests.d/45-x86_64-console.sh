#!/usr/bin/env bash
# hv's console on x86_64 (issues #7 and #8): the boot log runs `ptdump hv`,
# `wx hv`, `ptdump s2` and `audit s2` through the console engine; in the Debian
# guest, hvctl (shipped in the initramfs by run.sh) reaches the same engine
# through the doorbell ports 0x540..0x54F, as root only; and hv's view of the
# guest's own page tables is checked against independent oracles:
#   1. the guest kernel's own boot-time W+X verdict = `hvctl wx guest`'s;
#   2. /proc/kallsyms: kernel text lies in ro + x ranges of `hvctl ptdump guest`,
#      rodata in ro + NX, data and the freed init text in RW + NX;
#   3. QEMU's monitor (`info mem` with the machine stopped while the guest runs)
#      shows the same kernel ranges and rights as hv's `ptdump guest`;
#   4. QEMU's dump-guest-memory of that stopped machine, dumped offline by the
#      ptdump CLI with the guest's CR3, equals hv's in-guest kernel-half dump.
# Userspace cannot go around the guest kernel: a raw IN without ioperm faults in
# the guest, and a VMMCALL from CPL 3 is DENIED by hv. Last, guests/testguest
# (run.sh --guest test) calls every hypercall and must end with 0 failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/testlib.sh

log=
logdir=$(mktemp -d "${TMPDIR:-/tmp}/hv-x86-console-test.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

# boot NAME ARGS... : runs hv with the Linux guest, keeps the log (CR stripped) and the status.
boot() { run_logged "$1" scripts/run.sh --arch x86_64 --guest linux --timeout 240 "${@:2}"; }

has() { grep -qE -- "$1" "$log"; }
has_fixed() { grep -qF -- "$1" "$log"; }
lacks() { ! grep -qE -- "$1" "$log"; }
# The output of one step of the guest command: the lines between `== NAME` and
# the next `== rc=N` (kernel messages are silenced with dmesg -n 1).
step() { awk -v s="== $1" '$0 == s { on = 1; next } on && /^== rc=/ { exit } on' "$log"; }
step_rc() { awk -v s="== $1" '$0 == s { on = 1; next } on && /^== rc=/ { sub(/^== rc=/, ""); print; exit }' "$log"; }
# (grep reads a here-string: grep -q on a pipe would end awk early, and pipefail would count that.)
step_has() { grep -qE -- "$2" <<<"$(step "$1")" || { echo "    '$1' output lacks /$2/"; return 1; }; }
step_has_fixed() { grep -qF -- "$2" <<<"$(step "$1")" || { echo "    '$1' output lacks '$2'"; return 1; }; }
step_lacks_fixed() { ! grep -qF -- "$2" <<<"$(step "$1")" || { echo "    '$1' output has '$2'"; return 1; }; }
rc_is() { local rc; rc=$(step_rc "$1"); [ "$rc" = "$2" ] || { echo "    '$1' exit status '$rc', wanted $2"; return 1; }; }

# Two tiny static x86-64 ELFs that end with exit(eax & 0xff), run in the guest:
# rawin: `in eax, dx` from port 0x54c (the doorbell's ID register, "HVDB")
#   without ioperm. Reaching hv would exit 72 ('H'); the guest kernel's I/O
#   bitmap (TSS) must make the CPU raise #GP first, so it dies of SIGSEGV
#   (status 139) and hv never sees the access.
# vmmcall: HV_VERSION (0xC6000000) from CPL 3: hv must answer DENIED (-4: 252).
read -r rawin_b64 vmmcall_b64 < <(python3 - <<'EOF'
import base64, struct
def elf(code):
    code += bytes([0x89, 0xC7,              # mov edi, eax
                   0xB8, 0x3C, 0, 0, 0,     # mov eax, 60 (exit)
                   0x0F, 0x05])             # syscall
    base, off = 0x400000, 64 + 56
    ehdr = struct.pack('<16sHHIQQQIHHHHHH', b'\x7fELF\x02\x01\x01' + bytes(9), 2, 62, 1, base + off,
                       64, 0, 0, 64, 56, 1, 0, 0, 0)
    size = off + len(code)
    phdr = struct.pack('<IIQQQQQQ', 1, 5, 0, base, base, size, size, 0x1000)
    return base64.b64encode(ehdr + phdr + code).decode()
rawin = bytes([0x66, 0xBA, 0x4C, 0x05, 0xED])            # mov dx, 0x54c; in eax, dx
vmmcall = bytes([0xB8, 0, 0, 0, 0xC6, 0x0F, 0x01, 0xD9])  # mov eax, 0xc6000000; vmmcall
print(elf(rawin), elf(vmmcall))
EOF
)

# Step names as `r` echoes them (its arguments, quotes gone).
SU_HELP='su u -c id -u; hvctl help'
SYMS='_stext|_etext|schedule|start_kernel|__start_rodata|init_task|jiffies_64'
# Kernel text mapping of x86-64 Linux (__START_KERNEL_map, 1 GiB with KASLR).
KTEXT='0xffffffff80000000 0xffffffffc0000000'

guest_cmd="dmesg -n 1
r() { echo \"== \$*\"; \"\$@\"; echo \"== rc=\$?\"; }
r hvctl help
r hvctl
r hvctl info
r hvctl ptdump s2
r hvctl wx hv
r hvctl audit s2
r hvctl wx guest
r hvctl ptdump guest
r hvctl ptdump guest $KTEXT
r hvctl ptdump hv 0x200000 0x400000
r hvctl ptdump s2 0x1000 0x0
r hvctl frobnicate
echo 0 >/proc/sys/kernel/kptr_restrict
r grep -wE '$SYMS' /proc/kallsyms
echo 'u:x:1000:1000::/tmp:/bin/sh' >>/etc/passwd
r su u -c 'id -u; hvctl help'
echo $rawin_b64 | base64 -d >/tmp/rawin; echo $vmmcall_b64 | base64 -d >/tmp/vmmcall; chmod 755 /tmp/rawin /tmp/vmmcall
r /tmp/rawin
r su u -c /tmp/rawin
r /tmp/vmmcall"

echo "--- the Linux guest runs hvctl"
boot console --guest-cmd "$guest_cmd"
check "console: exit status 0 (guest powered off through hv), got $status" test "$status" = 0
check "console: no FATAL line" lacks 'FATAL'
check "console: no kernel panic or oops" lacks 'Kernel panic|Oops|BUG:'

echo "--- the boot log: four commands through the console engine"
for cmd in 'ptdump hv' 'wx hv' 'ptdump s2' 'audit s2'; do
    check "boot log: 'hv> $cmd' ran and passed" \
        test -n "$(grep -Fx "hv> $cmd" "$log")" -a -n "$(grep -Fx "hv> $cmd: ok" "$log")"
done
# What each command printed, between its `hv> CMD` and `hv> CMD: ok` lines.
boot_out() { awk -v s="hv> $1" '$0 == s { on = 1; next } $0 == s ": ok" { exit } on' "$log"; }
check "boot log: ptdump hv has the title and the region markers" \
    test "$(boot_out 'ptdump hv' | grep -cE '^---\[ (x86_64 4-level|hv text|hv rodata|hv data/bss|hv stacks|hv heap|guest RAM window) \]---$')" -ge 7
check "boot log: ptdump hv maps guest RAM for hv RW + NX only" \
    test -n "$(boot_out 'ptdump hv' | awk '$0 == "---[ guest RAM window ]---" { getline; print; exit }' |
        grep -E '^0xffff8000[0-9a-f]{8}-0x[0-9a-f]{16} +[0-9]+[KMG] +RW +GLB NX (pte|pmd|pud)$')"
check "boot log: wx hv: Linux's verdict" \
    test "$(boot_out 'wx hv')" = 'x86/mm: Checked W+X mappings: passed, no W+X pages found.'
check "boot log: ptdump s2 has the NPT title, hv's image and the LAPIC" \
    test "$(boot_out 'ptdump s2' | grep -cE '^---\[ (Guest Physical \(NPT\)|hv image|LAPIC) \]---$')" = 3
check "boot log: audit s2 passed" \
    test -n "$(boot_out 'audit s2' | grep -E '^hv: stage-2 isolation audit: passed, no stage-2 entry maps memory hv owns')"
check "boot log: the region self-check still passes" has '^hv: self-check passed: [0-9]+ regions mapped as intended'

echo "--- hvctl in the guest (root)"
check "help: the command list" step_has_fixed 'hvctl help' '  ptdump hv|s2|guest [START END]'
check "help: exit 0" rc_is 'hvctl help' 0
check "no argument: help" step_has_fixed 'hvctl' 'hv console commands:'
check "info: version and arch" step_has 'hvctl info' '^hv [0-9.]+ \(x86_64\)$'
check "info: hv's layout" step_has 'hvctl info' '^  hv page tables +0x[0-9a-f]+-0x[0-9a-f]+$'
check "info: guest RAM and hv's window" step_has 'hvctl info' "^  guest RAM +0x[0-9a-f]+-0x[0-9a-f]+ \(hv's window at 0xffff8000[0-9a-f]{8}\)$"
check "info: the trap came from CPL 3 (hvctl)" step_has 'hvctl info' '^  RIP 0x0000[0-9a-f]{12} CPL 3$'
check "info: CR3 and paging registers" step_has 'hvctl info' '^  CR0 0x[0-9a-f]+ CR3 0x[0-9a-f]+ CR4 0x[0-9a-f]+ EFER 0x[0-9a-f]+$'
check "info: exits so far, doorbell counted" step_has 'hvctl info' '^  VM exits so far: [0-9]+ \(.* doorbell [1-9][0-9]*, other [0-9]+\)$'
check "info: the guest's CR3 halves" step_has 'hvctl info' '^  guest CR3 kernel half +root 0x[0-9a-f]+, (48|57)-bit VA, (4|5) levels'
check "ptdump s2: NPT title and hv's image marker" step_has_fixed 'hvctl ptdump s2' '---[ hv image ]---'
check "ptdump s2: guest RAM mapped USR RW x" step_has 'hvctl ptdump s2' '^0x[0-9a-f]{16}-0x[0-9a-f]{16} +[0-9]+[KMG] USR RW +(PSE +)?x +(pte|pmd|pud)$'
check "ptdump s2: exit 0" rc_is 'hvctl ptdump s2' 0
check "wx hv: passed" step_has_fixed 'hvctl wx hv' 'x86/mm: Checked W+X mappings: passed, no W+X pages found.'
check "wx hv: exit 0" rc_is 'hvctl wx hv' 0
check "audit s2: passed" step_has 'hvctl audit s2' '^hv: stage-2 isolation audit: passed'
check "audit s2: exit 0" rc_is 'hvctl audit s2' 0
check "wx guest: covers the kernel half" step_has 'hvctl wx guest' "^hv: wx guest: Linux's check covers the kernel's mappings: CR3 kernel half 0xff"
check "wx guest: exit 0" rc_is 'hvctl wx guest' 0
check "ptdump guest: starts with User Space" test "$(step 'hvctl ptdump guest' | head -n1)" = '---[ User Space ]---'
check "ptdump guest: hvctl's own user mappings (USR ro x: its text)" \
    step_has 'hvctl ptdump guest' '^0x0000[0-9a-f]{12}-0x[0-9a-f]{16} +[0-9]+[KMG] USR ro +x +pte$'
check "ptdump guest: then Kernel Space" step_has_fixed 'hvctl ptdump guest' '---[ Kernel Space ]---'
# The ESPfix area alone is ~12000 lines: like Linux, hv caps it at 16 lines and
# says how many it skipped, so the whole guest fits in one command's output.
check "ptdump guest: ESPfix area capped as Linux caps it" \
    step_has 'hvctl ptdump guest' '^\.\.\. [0-9]+ entr(y|ies) skipped \.\.\. ?$'
check "ptdump guest: whole dump not truncated" step_lacks_fixed 'hvctl ptdump guest' 'hv: output truncated'
check "ptdump guest: exit 0" rc_is 'hvctl ptdump guest' 0
check "ptdump guest (kernel text): Kernel Space title" \
    test "$(step "hvctl ptdump guest $KTEXT" | head -n1)" = '---[ Kernel Space ]---'
check "ptdump guest (kernel text): ro + x text lines" \
    step_has "hvctl ptdump guest $KTEXT" '^0xffffffff[0-9a-f]{8}-0xffffffff[0-9a-f]{8} +[0-9]+[KMG] +ro +(PSE +)?GLB x +(pte|pmd)$'
check "ptdump guest (kernel text): exit 0" rc_is "hvctl ptdump guest $KTEXT" 0
check "ptdump hv 0x200000 0x400000: hv text" step_has_fixed 'hvctl ptdump hv 0x200000 0x400000' '---[ hv text ]---'
check "ptdump s2 0x1000 0x0: refused range, exit 1" rc_is 'hvctl ptdump s2 0x1000 0x0' 1
check "ptdump s2 0x1000 0x0: says why" step_has_fixed 'hvctl ptdump s2 0x1000 0x0' 'hv: empty range: START 0x1000 must be below END 0x0'
check "unknown command: refused, exit 1" rc_is 'hvctl frobnicate' 1
check "unknown command: says why" step_has_fixed 'hvctl frobnicate' "hv: unknown command 'frobnicate' (try 'help')"

echo "--- not root: refused"
check "non-root: runs as uid 1000" step_has "$SU_HELP" '^1000$'
check "non-root: hvctl refused (needs ioperm)" \
    step_has_fixed "$SU_HELP" 'hvctl: must run as root (needs ioperm)'
check "non-root: hvctl exit 2, no help text" rc_is "$SU_HELP" 2
check "non-root: no help text" step_lacks_fixed "$SU_HELP" 'hv console commands'
check "raw IN without ioperm (root): #GP in the guest (SIGSEGV, 139), hv not reached" rc_is '/tmp/rawin' 139
check "raw IN without ioperm (uid 1000): #GP in the guest (139)" rc_is 'su u -c /tmp/rawin' 139
check "VMMCALL from CPL 3 (root's process): hv answers DENIED (-4, status 252)" rc_is '/tmp/vmmcall' 252

echo "--- oracle 1: the guest's own W+X verdict = hvctl wx guest's"
guest_wx=$(sed -nE 's/^\[ *[0-9.]+\] (x86\/mm: Checked W\+X mappings: .*)$/\1/p' "$log" | head -n1)
hv_wx=$(step 'hvctl wx guest' | grep -E '^x86/mm: Checked W\+X mappings: ' | tail -n1)
echo "    guest: '$guest_wx'"
echo "    hv:    '$hv_wx'"
check "oracle 1: the guest printed its verdict" test -n "$guest_wx"
check "oracle 1: hv's verdict line is the guest's" test "$guest_wx" = "$hv_wx"

echo "--- oracle 2: /proc/kallsyms against hv's ptdump guest"
step "hvctl ptdump guest $KTEXT" >"$logdir/ktext.dump"
step "grep -wE $SYMS /proc/kallsyms" >"$logdir/kallsyms"
oracle2() {
    python3 - "$logdir/ktext.dump" "$logdir/kallsyms" <<'EOF'
import re, sys
ranges = []
for line in open(sys.argv[1]):
    m = re.match(r'^0x([0-9a-f]{16})-0x([0-9a-f]{16}) +\d+[BKMGTPE] +(.*)$', line.rstrip('\n'))
    if m:
        ranges.append((int(m[1], 16), int(m[2], 16) or 1 << 64, m[3].split()))
syms = {}
for line in open(sys.argv[2]):
    parts = line.split()
    if len(parts) >= 3:
        syms[parts[2]] = int(parts[0], 16)
# name -> (address to look up, rights wanted)
want = {
    '_stext': (0, {'ro', 'x'}), 'schedule': (0, {'ro', 'x'}), '_etext': (-1, {'ro', 'x'}),
    '__start_rodata': (0, {'ro', 'NX'}), 'init_task': (0, {'RW', 'NX'}), 'jiffies_64': (0, {'RW', 'NX'}),
    # .init.text: freed after boot and mapped back as plain data.
    'start_kernel': (0, {'RW', 'NX'}),
}
bad = 0
for name, (delta, rights) in want.items():
    if name not in syms:
        print(f'    {name}: not in /proc/kallsyms output'); bad += 1; continue
    addr = syms[name] + delta
    hit = [r for r in ranges if r[0] <= addr < r[1]]
    if not hit:
        print(f'    {name} {addr:#x}: in no range of the dump'); bad += 1; continue
    start, end, flags = hit[0]
    ok = rights <= set(flags) and (flags[-1] in ('pte', 'pmd', 'pud'))
    print(f'    {name:15} {addr:#x} in {start:#x}-{end:#x} {" ".join(flags)}: {"ok" if ok else "WRONG, wanted " + " ".join(sorted(rights))}')
    bad += not ok
sys.exit(1 if bad or not ranges else 0)
EOF
}
check "oracle 2: text ro + x, rodata ro + NX, data RW + NX, freed init text RW + NX" oracle2

echo "--- oracles 3 and 4: QEMU's view of the same machine, stopped while the guest runs"
# -cpu EPYC: 4-level paging. (With -cpu max the guest turns on LA57, and QEMU
# 10.0.2's `info mem` prints nothing at all for 5-level tables.) The guest dumps
# its kernel half through hv (all of it but the ESPfix area, ~12000 lines of
# aliases of a few pages, which alone passes hv's 1 MiB output cap), says
# `== paused` and sleeps; the monitor then stops the machine, reads CR3, `info
# mem` and writes a core; after the pause the guest dumps again, and the two hv
# dumps must be equal (nothing changed around the moment QEMU looked).
K1='0xffff800000000000 0xffffff0000000000'
K2='0xffffff8000000000 0x10000000000000000'
sock="$logdir/monitor.sock"
core="$logdir/guest.core"
pause_cmd="dmesg -n 1
r() { echo \"== \$*\"; \"\$@\"; echo \"== rc=\$?\"; }
d() { hvctl ptdump guest $K1; hvctl ptdump guest $K2; }
d >/tmp/before; echo '== paused'; sleep 5; d >/tmp/after
r cat /tmp/after
r cmp /tmp/before /tmp/after"
HV_QEMU_ARGS="${HV_QEMU_ARGS:-} -monitor unix:$sock,server,nowait" \
    scripts/run.sh --arch x86_64 --guest linux --cpu EPYC --mem 512M --timeout 240 --guest-cmd "$pause_cmd" \
    </dev/null >"$logdir/pause.raw" 2>&1 &
run_pid=$!
python3 - "$sock" "$logdir/pause.raw" "$core" >"$logdir/monitor.out" 2>&1 <<'EOF_MON'
import socket, sys, time
sock_path, log_path, core = sys.argv[1:4]
deadline = time.time() + 200
while b'== paused' not in open(log_path, 'rb').read():
    if time.time() > deadline:
        sys.exit('monitor: the guest never said "== paused"')
    time.sleep(0.2)
mon = socket.socket(socket.AF_UNIX)
mon.connect(sock_path)
mon.settimeout(120)
pending = b''
def reply():
    global pending
    while b'(qemu) ' not in pending:
        pending += mon.recv(65536)
    out, _, pending = pending.partition(b'(qemu) ')
    # Drop the echoed command line (HMP redraws it with escape sequences).
    text = out.decode(errors='replace').replace('\r', '')
    return text.split('\n', 1)[1] if '\n' in text else ''
reply()
for cmd in ['stop', 'info registers', 'info mem', f'dump-guest-memory {core}', 'cont']:
    mon.sendall(cmd.encode() + b'\n')
    print(f'=== {cmd}\n{reply()}', end='')
EOF_MON
monitor_status=$?
wait "$run_pid"
status=$?
tr -d '\r' <"$logdir/pause.raw" >"$logdir/pause.log"
log="$logdir/pause.log"
check "pause: exit status 0, got $status" test "$status" = 0
check "pause: the monitor stopped the machine at the pause point" test "$monitor_status" = 0
mon_section() { awk -v s="=== $1" '$0 == s { on = 1; next } /^=== / { on = 0 } on' "$logdir/monitor.out"; }
cr3=$(mon_section 'info registers' | sed -nE 's/.* CR3=([0-9a-f]+) .*/0x\1/p' | head -n1)
hv_root=$(sed -nE 's/^hv: own page tables active: root (0x[0-9a-f]+),.*/\1/p' "$log")
echo "    CR3 when stopped: $cr3 (hv's own root: $hv_root)"
check "pause: QEMU stopped in the guest (CR3 is not hv's)" \
    test -n "$cr3" -a "$(printf '%x' "${cr3:-0}")" != "$(printf '%x' "${hv_root:-0}")"
check "pause: hv's dumps before and after the pause are equal" rc_is 'cmp /tmp/before /tmp/after' 0
step 'cat /tmp/after' >"$logdir/hv-kernel.dump"

oracle3() {
    mon_section 'info mem' >"$logdir/info-mem"
    python3 - "$logdir/hv-kernel.dump" "$logdir/info-mem" "$K1" "$K2" <<'EOF'
import re, sys
dump, info_mem, k1, k2 = sys.argv[1:5]
pieces = [tuple(int(x, 16) for x in k.split()) for k in (k1, k2)]
def clip_merge(ranges):
    out = []
    for start, end, prot in sorted(ranges):
        for lo, hi in pieces:
            s, e = max(start, lo), min(end, hi)
            if s >= e:
                continue
            if out and out[-1][1] == s and out[-1][2] == prot:
                out[-1] = (out[-1][0], e, prot)
            else:
                out.append((s, e, prot))
    return out
hv = []
for line in open(dump):
    m = re.match(r'^0x([0-9a-f]{16})-0x([0-9a-f]{16}) +\d+[BKMGTPE] +(.*)$', line.rstrip('\n'))
    if m and ('RW' in m[3].split() or 'ro' in m[3].split()):
        flags = m[3].split()
        prot = ('u' if 'USR' in flags else '-') + 'r' + ('w' if 'RW' in flags else '-')
        hv.append((int(m[1], 16), int(m[2], 16) or 1 << 64, prot))
qemu = []
for line in open(info_mem):
    m = re.match(r'^([0-9a-f]{16})-([0-9a-f]{16}) [0-9a-f]{16} ([u-][r-][w-])$', line.strip())
    if m:
        qemu.append((int(m[1], 16), int(m[2], 16) or 1 << 64, m[3]))
hv, qemu = clip_merge(hv), clip_merge(qemu)
print(f'    hv: {len(hv)} ranges, QEMU info mem: {len(qemu)} ranges over the same addresses')
for h, q in zip(hv, qemu):
    if h != q:
        print(f'    first difference: hv {h[0]:#x}-{h[1]:#x} {h[2]}, QEMU {q[0]:#x}-{q[1]:#x} {q[2]}')
        break
sys.exit(0 if hv and hv == qemu else 1)
EOF
}
check "oracle 3: hv's kernel-half ranges and rights = QEMU's info mem (u/r/w)" oracle3

oracle4() {
    local cli=${CARGO_TARGET_DIR:-target}/release/ptdump k1_start k1_end k2_start
    cargo build --release -q -p ptdump --bin ptdump || return 1
    [ -n "$cr3" ] || return 1
    read -r k1_start k1_end <<<"$K1"
    read -r k2_start _ <<<"$K2"
    {
        "$cli" --elf "$core" --arch x86_64 --cr3 "$cr3" --no-wx --start "$k1_start" --end "$k1_end"
        "$cli" --elf "$core" --arch x86_64 --cr3 "$cr3" --no-wx --start "$k2_start"
    } 2>"$logdir/cli.err" | grep '^0x' >"$logdir/cli.lines" || {
        cat "$logdir/cli.err"
        return 1
    }
    grep '^0x' "$logdir/hv-kernel.dump" >"$logdir/hv.lines"
    echo "    hv: $(wc -l <"$logdir/hv.lines") lines, ptdump --elf: $(wc -l <"$logdir/cli.lines") lines"
    diff "$logdir/hv.lines" "$logdir/cli.lines" | head -n 10
    [ -s "$logdir/hv.lines" ] && cmp -s "$logdir/hv.lines" "$logdir/cli.lines"
}
check "oracle 4: ptdump --elf of QEMU's core with the stopped CR3 = hv's in-guest kernel half" oracle4
rm -f "$core"

echo "--- the test guest (guests/testguest) under hv: every hypercall, hostile tables"
boot testguest --guest test
check "testguest: exit status 0 (powered off through hv), got $status" test "$status" = 0
check "testguest: detected hv" has '^PASS detect-hv'
check "testguest: seeded random calls judged against the ABI" has '^PASS random-calls$'
check "testguest: CONSOLE_WRITE text in hv's log, control characters shown as '?'" \
    has_fixed 'tg-console: sanitized[a?b?c]'
grep -E '^FAIL ' "$log" | sed 's/^/    /'
check "testguest: no FAIL line" lacks '^FAIL '
check "testguest: 'testguest: N passed, 0 failed'" has '^testguest: [0-9]+ passed, 0 failed'

show_failing_logs
summary "x86_64 console"
