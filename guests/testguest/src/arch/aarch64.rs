//! arm64: the Image header and entry (Linux booting.rst: MMU off, x0 = DTB,
//! EL1 — or EL2 without a hypervisor, which this guest leaves for EL1 with
//! HVC disabled), self-relocation, the EL1 vectors, the PL011, HVC #0,
//! PSCI SYSTEM_OFF through the DTB's conduit, and the EL1 stage-1 tables.

use core::arch::{asm, global_asm};
use core::ptr::addr_of;

use pagewalk::arm64::{Half, Regime, Stage1, AF, DESC_BLOCK, LINUX_MAIR};

use super::TRAPPED;
use crate::platform::{self, Platform, Range, Ranges, PAGE};

pub const NAME: &str = "aarch64";
pub const HYPERCALL_INSN: &str = "HVC #0";
/// SMCCC: the function id is W0; the upper half of x0 is ignored.
pub const ID_IS_W0: bool = true;
pub const ID_WIDTH_CASE: &str = "id-upper-half-ignored";
pub const WX_PASSED: &str = "Checked W+X mappings: passed, no W+X pages found";
/// TTBR1's half with 48-bit VAs.
pub const UPPER_HALF_START: u64 = 0xffff_0000_0000_0000;
/// A block at level 0 (4 KiB granule, no LPA2).
pub const ROOT_BLOCK_REASON: &str = "block mapping not allowed at this level";
/// OA[51:48] are RES0 in a table descriptor without LPA2.
pub const RESERVED_TABLE_BIT: u64 = 1 << 48;
/// A 1 GiB block's output address bits below 30 must be zero (bit 16 is nT, so 13).
pub const MISALIGNED_LEAF_BIT: u64 = 1 << 13;

const PL011: u64 = 0x0900_0000;
/// Device pages the guest maps for itself: the PL011.
pub const DEVICE_PAGES: &[(u64, u64)] = &[(PL011, PAGE)];
/// QEMU virt: RAM starts here; hv sits in what the DTB's /memory leaves out.
const VIRT_RAM_BASE: u64 = 0x4000_0000;
/// The doorbell page (docs/hypercalls.md): outside RAM, left unmapped by stage-2.
const UNMAPPED_IPA: u64 = 0x0BFF_F000;

pub type S1 = Stage1;

pub fn lower_format() -> S1 {
    Stage1::new(48, Half::Lower, Regime::El1And0).expect("48-bit stage-1")
}

pub fn upper_format() -> Option<(S1, u64)> {
    Some((
        Stage1::new(48, Half::Upper, Regime::El1And0).expect("48-bit stage-1"),
        UPPER_HALF_START,
    ))
}

/// A block descriptor at level 0: valid, not a table.
pub fn root_block_entry(_format: &S1, out: u64) -> u64 {
    out | DESC_BLOCK | AF
}

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    /* arm64 Image header (Documentation/arch/arm64/booting.rst). */
    b       tg_primary              /* code0 */
    .long   0                       /* code1 */
    .quad   0                       /* text_offset */
    .quad   __image_size            /* image_size: BSS and stack included */
    .quad   0xa                     /* flags: LE, 4K pages, placement anywhere */
    .quad   0, 0, 0                 /* res2-res4 */
    .ascii  "ARM\x64"               /* magic */
    .long   0                       /* res5 */

tg_primary:
    mov     x19, x0                 /* the DTB */
    mrs     x1, CurrentEL
    ubfx    x1, x1, #2, #2
    cmp     x1, #2
    b.ne    1f
    /* EL2, so no hypervisor below: run at EL1 with HVC undefined (HCR_EL2.HCD). */
    mov     x1, #(1 << 31)          /* RW: EL1 is AArch64 */
    orr     x1, x1, #(1 << 29)      /* HCD */
    msr     hcr_el2, x1
    mov     x1, #0x33ff
    msr     cptr_el2, x1
    mov     x1, #3
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr
    movz    x1, #0x0800
    movk    x1, #0x30d0, lsl #16    /* SCTLR_EL1 RES1 bits, MMU and caches off */
    msr     sctlr_el1, x1
    mov     x1, #0x3c5              /* EL1h, DAIF masked */
    msr     spsr_el2, x1
    adr     x1, 1f
    msr     elr_el2, x1
    eret
1:
    mov     x1, #(3 << 20)          /* CPACR_EL1.FPEN: Rust uses the SIMD registers */
    msr     cpacr_el1, x1
    isb
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1

    /* Zero .bss. The MMU is off: aligned stores only. */
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
2:  cmp     x1, x2
    b.hs    3f
    str     xzr, [x1], #8
    b       2b
3:
    /* Apply R_AARCH64_RELATIVE relocations: linked at 0, so delta = where _start is. */
    adr     x2, _start
    adrp    x3, __rela_start
    add     x3, x3, :lo12:__rela_start
    adrp    x4, __rela_end
    add     x4, x4, :lo12:__rela_end
4:  cmp     x3, x4
    b.hs    6f
    ldp     x5, x6, [x3]            /* r_offset, r_info */
    ldr     x7, [x3, #16]           /* r_addend */
    add     x3, x3, #24
    cmp     w6, #1027               /* R_AARCH64_RELATIVE */
    b.ne    5f
    add     x7, x7, x2
    str     x7, [x5, x2]
    b       4b
5:  wfe                             /* another kind: not the image this was linked as */
    b       5b
6:
    adrp    x1, tg_vectors
    add     x1, x1, :lo12:tg_vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    bl      tg_main_aarch64
    b       5b

    /* tg_hvc(id, a1, a2, a3, a4, out): one HVC #0 at a known address. */
    .text
    .global tg_hvc
tg_hvc:
    str     x5, [sp, #-16]!
    .global tg_hvc_insn
tg_hvc_insn:
    hvc     #0
    ldr     x5, [sp], #16
    stp     x0, x1, [x5]
    stp     x2, x3, [x5, #16]
    ret

    /* tg_smc(id, a1, a2, a3): the PSCI conduit when the DTB says "smc". */
    .global tg_smc
tg_smc:
    .global tg_smc_insn
tg_smc_insn:
    smc     #0
    ret

    .macro tg_vector kind
    .balign 0x80
    sub     sp, sp, #288
    stp     x0, x1, [sp]
    mov     x0, #\kind
    b       tg_exception_common
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global tg_vectors
tg_vectors:
    tg_vector 0
    tg_vector 1
    tg_vector 2
    tg_vector 3
    tg_vector 4
    tg_vector 5
    tg_vector 6
    tg_vector 7
    tg_vector 8
    tg_vector 9
    tg_vector 10
    tg_vector 11
    tg_vector 12
    tg_vector 13
    tg_vector 14
    tg_vector 15

tg_exception_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    str     x30, [sp, #240]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #248]
    mrs     x2, esr_el1
    mrs     x3, far_el1
    stp     x2, x3, [sp, #264]
    mov     x1, x0
    mov     x0, sp
    bl      tg_exception
    ldp     x2, x3, [sp, #248]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    ldp     x0, x1, [sp]
    add     sp, sp, #288
    eret
"#
);

extern "C" {
    fn tg_hvc(id: u64, a1: u64, a2: u64, a3: u64, a4: u64, out: *mut [u64; 4]);
    fn tg_smc(id: u64, a1: u64, a2: u64, a3: u64) -> u64;
    static tg_hvc_insn: u8;
    static tg_smc_insn: u8;
}

/// The registers an exception saved (see tg_exception_common).
#[repr(C)]
struct Frame {
    x: [u64; 31],
    elr: u64,
    spsr: u64,
    esr: u64,
    far: u64,
    _pad: u64,
}

const KIND_NAMES: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];

#[no_mangle]
extern "C" fn tg_exception(frame: &mut Frame, kind: u64) {
    let ec = (frame.esr >> 26) & 0x3f;
    let (hvc, smc) = (addr_of!(tg_hvc_insn) as u64, addr_of!(tg_smc_insn) as u64);
    // An undefined HVC / SMC (no EL2 / EL3 to take it): the probe's answer.
    if kind == 4 && ec == 0 && (frame.elr == hvc || frame.elr == smc) {
        TRAPPED.set(true);
        frame.elr += 4;
        return;
    }
    crate::console::fail(
        "exception",
        format_args!(
            "{} exception from {} at ELR {:#x}: ESR {:#x} (EC {ec:#x}), FAR {:#x}",
            KIND_NAMES[(kind % 4) as usize],
            if kind < 8 { "EL1" } else { "EL0" },
            frame.elr,
            frame.esr,
            frame.far
        ),
    );
    crate::console::finish_and_power_off(false)
}

pub fn uart_put(b: u8) {
    const FR_TXFF: u32 = 1 << 5;
    // SAFETY: the PL011 is the guest's (identity-mapped as device, or the MMU is off).
    unsafe {
        while core::ptr::read_volatile((PL011 + 0x18) as *const u32) & FR_TXFF != 0 {}
        core::ptr::write_volatile(PL011 as *mut u32, u32::from(b));
    }
}

/// One HVC #0. `None`: the instruction trapped into this guest (no hypervisor).
pub fn hypercall(id: u64, args: [u64; 4]) -> Option<[u64; 4]> {
    let mut out = [0u64; 4];
    TRAPPED.set(false);
    // SAFETY: tg_hvc issues HVC #0 and stores x0..x3 into `out`; an
    // undefined HVC is caught by tg_exception, which skips it.
    unsafe { tg_hvc(id, args[0], args[1], args[2], args[3], &mut out) };
    (!TRAPPED.get()).then_some(out)
}

/// The function id hv decodes from x0: W0.
pub fn decode_id(id: u64) -> Option<u32> {
    Some(id as u32)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Conduit {
    Smc,
    Hvc,
    Unknown,
}

static mut PSCI_CONDUIT: Conduit = Conduit::Unknown;

const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;

pub fn power_off() -> ! {
    // SAFETY: written once at boot, before anything reads it.
    let conduit = unsafe { core::ptr::read_volatile(addr_of!(PSCI_CONDUIT)) };
    let order = match conduit {
        Conduit::Hvc => [Conduit::Hvc, Conduit::Smc],
        _ => [Conduit::Smc, Conduit::Hvc],
    };
    for c in order {
        TRAPPED.set(false);
        match c {
            // SAFETY: PSCI SYSTEM_OFF does not return on success; a trap is caught.
            Conduit::Smc => unsafe {
                tg_smc(PSCI_SYSTEM_OFF, 0, 0, 0);
            },
            _ => {
                let _ = hypercall(PSCI_SYSTEM_OFF, [0; 4]);
            }
        }
    }
    crate::say!("testguest: PSCI SYSTEM_OFF returned; halting");
    loop {
        // SAFETY: waiting for an interrupt that never comes.
        unsafe { asm!("wfi") };
    }
}

/// Makes `lower` (TTBR0) and `upper` (TTBR1) the live tables and turns the MMU on.
pub fn install_tables(lower: u64, upper: Option<u64>) {
    let parange: u64;
    // SAFETY: reading an ID register.
    unsafe { asm!("mrs {}, id_aa64mmfr0_el1", out(reg) parange) };
    let ips = (parange & 0xf).min(5);
    let epd1 = if upper.is_some() { 0 } else { 1 << 23 };
    // 4 KiB granules, 48-bit halves, inner-shareable write-back walks.
    let tcr: u64 = 16
        | (1 << 8)
        | (1 << 10)
        | (3 << 12)
        | (16 << 16)
        | epd1
        | (1 << 24)
        | (1 << 26)
        | (3 << 28)
        | (2 << 30)
        | (ips << 32);
    let sctlr: u64 = 0x30d0_0800 | 1 | (1 << 2) | (1 << 12);
    // SAFETY: the tables map this code, its data, stack and the UART at VA ==
    // PA (hostile::map_identity), so execution continues across the switch.
    // They were written with the MMU off: clean them past any stale line first.
    unsafe {
        let pool = crate::hostile::pool_bounds();
        let mut line = pool.start;
        while line < pool.end {
            asm!("dc civac, {}", in(reg) line);
            line += 64;
        }
        asm!(
            "dsb sy",
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {ttbr0}",
            "msr ttbr1_el1, {ttbr1}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "msr sctlr_el1, {sctlr}",
            "isb",
            mair = in(reg) LINUX_MAIR,
            tcr = in(reg) tcr,
            ttbr0 = in(reg) lower,
            ttbr1 = in(reg) upper.unwrap_or(0),
            sctlr = in(reg) sctlr,
        );
    }
}

#[no_mangle]
extern "C" fn tg_main_aarch64(dtb: u64) -> ! {
    let (image, text_end, rodata_end) = platform::image_bounds();
    let mut p = Platform {
        ram: Ranges::default(),
        hv: None,
        unmapped: UNMAPPED_IPA,
        beyond_ram: 0,
        device_page: PL011,
        image,
        boot_data: Ranges::default(),
        text_end,
        rodata_end,
        expect_hv: false,
        seed: 0x5eed_1e57_7e57_0001,
        random_calls: 3000,
    };
    // SAFETY: the boot loader passes the DTB's physical address in x0 (booting.rst).
    let fdt = match unsafe { fdt::Fdt::from_ptr(dtb as *const u8) } {
        Ok(f) => f,
        Err(e) => {
            crate::console::fail("boot-info", format_args!("no valid DTB at x0 = {dtb:#x}: {e:?}"));
            crate::console::finish_and_power_off(false)
        }
    };
    p.boot_data.push(Range::new(dtb, dtb + fdt.total_size() as u64));
    for r in fdt.memory().regions() {
        let start = r.starting_address as u64;
        p.ram.push(Range::new(start, start + r.size.unwrap_or(0) as u64));
    }
    // hv's region: the first hole the DTB's /memory leaves in the platform's RAM.
    let ram = p.ram.as_slice();
    if let Some(first) = ram.first() {
        if first.start > VIRT_RAM_BASE {
            p.hv = Some(Range::new(VIRT_RAM_BASE, first.start));
        }
    }
    if p.hv.is_none() {
        p.hv = ram
            .windows(2)
            .find(|w| w[0].end < w[1].start)
            .map(|w| Range::new(w[0].end, w[1].start));
    }
    // Beyond RAM: nothing on virt between the end of RAM and 256 GiB.
    let end = p.ram.end();
    let beyond = end.next_multiple_of(1 << 30);
    p.beyond_ram = if beyond < 0x40_0000_0000 { beyond } else { end };
    let conduit = match fdt
        .find_node("/psci")
        .and_then(|n| n.property("method"))
        .and_then(|m| m.as_str())
    {
        Some("smc") => Conduit::Smc,
        Some("hvc") => Conduit::Hvc,
        _ => Conduit::Unknown,
    };
    // SAFETY: single-threaded boot; read only by power_off.
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!(PSCI_CONDUIT), conduit) };
    if let Some(args) = fdt.chosen().bootargs() {
        p.apply_cmdline(args);
    }
    crate::run(&p)
}
