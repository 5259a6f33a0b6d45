#!/usr/bin/env bash
# The bare-metal test guest (guests/testguest, issues #7 and #8), both arches:
# 1. smoke test of the images on bare QEMU, without hv: the arm64 Image
#    (entered at EL1, and at EL2 with virtualization=on) and the x86 bzImage
#    (QEMU's own real-mode bzImage boot) boot, print, pass their self-checks
#    and power off; the hypercalls are skipped ("selftest-only (no hv)"), and
#    with testguest.expect=hv the missing hv is a FAIL (the guest never passes
#    silently without hv);
# 2. under hv: scripts/run.sh --arch A --guest test must end with
#    'testguest: N passed, 0 failed' (the only SKIP allowed is 'ptdump guest'
#    not being available yet), and hv's log must show the guest's
#    CONSOLE_WRITE text with control characters sanitized. Until run.sh has
#    --guest test this part prints 'SKIPPED testguest: ...' and passes.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/testlib.sh

on_failed_check() {
    [ -z "${log:-}" ] || { echo "    --- last lines of $log:"; tail -n 15 "$log" | sed 's/^/    /'; }
}

logdir=$(mktemp -d "${TMPDIR:-/tmp}/hv-testguest.XXXXXX")
trap 'rm -rf "$logdir"' EXIT
log=

has() { grep -qE -- "$1" "$log"; }
lacks() { ! grep -qE -- "$1" "$log"; }

# qemu_bare NAME ARGS...: QEMU without hv, serial log (CR stripped) in $log, exit status in $status.
qemu_bare() {
    run_logged "$1" timeout --foreground -k 5 60 "${@:2}" -display none -monitor none -serial stdio -no-reboot
}

selftest_ok() {
    has '^testguest: selftest-only \(no hv\): [0-9]+ passed, 0 failed, 1 skipped$' &&
        has '^SKIP hypercalls: no hv below this guest' && has '^PASS hostile-tables-self-walk$' &&
        has '^PASS hostile-tables-live$' && lacks '^FAIL '
}

declare -A image
for arch in aarch64 x86_64; do
    echo "--- $arch: build"
    log=
    if image[$arch]=$(guests/testguest/build.sh "$arch" 2>"$logdir/build-$arch.log"); then
        ok "$arch: guests/testguest/build.sh $arch -> ${image[$arch]}"
    else
        log="$logdir/build-$arch.log"
        bad "$arch: guests/testguest/build.sh $arch failed"
    fi
done

if [ -n "${image[aarch64]:-}" ]; then
    img=${image[aarch64]}
    echo "--- aarch64 on bare QEMU (no hv)"
    check "aarch64: Image header: branch, image_size, flags 0xa, magic ARM\\x64" python3 - "$img" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
code0, _, text_offset, image_size, flags = struct.unpack_from("<IIQQQ", b, 0)
assert code0 >> 26 == 0b000101, hex(code0)             # B
assert text_offset == 0 and flags == 0xa, (text_offset, flags)
assert image_size >= len(b) and image_size % 4096 == 0, (image_size, len(b))
assert b[56:60] == b"ARM\x64"
EOF
    qemu_bare a64-el1 qemu-system-aarch64 -M virt -cpu max -m 1G -kernel "$img"
    check "aarch64 EL1 entry: boots, self-checks pass, powers off (PSCI via HVC), status $status" \
        eval 'test "$status" = 0 && selftest_ok'
    qemu_bare a64-el2 qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -m 1G -kernel "$img"
    check "aarch64 EL2 entry: drops to EL1, self-checks pass, powers off (PSCI via SMC), status $status" \
        eval 'test "$status" = 0 && selftest_ok'
    qemu_bare a64-expect qemu-system-aarch64 -M virt -cpu max -m 1G -kernel "$img" -append testguest.expect=hv
    check "aarch64 testguest.expect=hv without hv: FAIL detect-hv and a failing summary" \
        eval 'has "^FAIL detect-hv: no hv below this guest" && has "^testguest: [0-9]+ passed, 1 failed$"'
fi

if [ -n "${image[x86_64]:-}" ]; then
    img=${image[x86_64]}
    echo "--- x86_64 on bare QEMU (no hv)"
    check "x86_64: bzImage setup header: HdrS, protocol 2.15, LOADED_HIGH, XLF_KERNEL_64|ABOVE_4G, relocatable" \
        python3 - "$img" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[0x1fe:0x200] == b"\x55\xaa" and b[0x202:0x206] == b"HdrS"
assert struct.unpack_from("<H", b, 0x206)[0] == 0x020F
assert b[0x211] & 1 and b[0x234] == 1
assert struct.unpack_from("<H", b, 0x236)[0] & 3 == 3
assert struct.unpack_from("<I", b, 0x230)[0] == 2 << 20
setup = (b[0x1f1] + 1) * 512
assert b[setup + 0x10:setup + 0x18] == b"TGINFO64"      # the 64-bit part: entry at +0x200
init_size = struct.unpack_from("<I", b, 0x260)[0]
assert init_size >= len(b) - setup and struct.unpack_from("<Q", b, 0x258)[0] == 16 << 20
EOF
    qemu_bare x86 qemu-system-x86_64 -M q35 -accel tcg -cpu max -m 1G -kernel "$img"
    check "x86_64 bzImage via QEMU's real-mode boot: self-checks pass, powers off (ACPI S5), status $status" \
        eval 'test "$status" = 0 && selftest_ok'
    qemu_bare x86-expect qemu-system-x86_64 -M q35 -accel tcg -cpu max -m 1G -kernel "$img" -append testguest.expect=hv
    check "x86_64 testguest.expect=hv without hv: FAIL detect-hv and a failing summary" \
        eval 'has "^FAIL detect-hv: no hv below this guest" && has "^testguest: [0-9]+ passed, 1 failed$"'
fi

# Under hv, through run.sh.
log=
scripts/run.sh --arch aarch64 --guest test --timeout 1 </dev/null >"$logdir/probe.log" 2>&1
probe=$?
if [ "$probe" = 2 ] && grep -qE "guest (test|'test')|expected none, linux" "$logdir/probe.log"; then
    echo "SKIPPED testguest: run.sh has no --guest test yet"
else
    for arch in aarch64 x86_64; do
        echo "--- $arch: scripts/run.sh --arch $arch --guest test"
        run_logged "hv-$arch" scripts/run.sh --arch "$arch" --guest test --timeout 300
        check "$arch under hv: run.sh status 0 (guest powered off through hv), got $status" test "$status" = 0
        check "$arch under hv: 'testguest: N passed, 0 failed'" \
            has '^testguest: [0-9]+ passed, 0 failed( \([0-9]+ skipped\))?$'
        check "$arch under hv: no FAIL line" lacks '^FAIL '
        check "$arch under hv: no SKIP but 'ptdump guest not available'" \
            eval '! grep "^SKIP " "$log" | grep -qv "^SKIP hostile-guest: ptdump guest not available ("'
        check "$arch under hv: every hypercall case ran (detect-hv, random-calls, ptdump-s2-chunked passed)" \
            eval 'has "^PASS detect-hv" && has "^PASS random-calls$" && has "^PASS ptdump-s2-chunked$"'
        check "$arch under hv: CONSOLE_WRITE text in hv's log, control characters shown as '?'" \
            eval 'has "tg-console: hello from the test guest" && has "tg-console: sanitized\[a\?b\?c\]" && lacks $'"'"'\x1b'"'"
    done
fi

summary "testguest tests"
