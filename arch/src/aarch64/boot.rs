//! hv's memory on arm64: the region it reserves, its heap and frames, its
//! EL2 stage-1 tables (identity map, W^X) and turning the MMU on.

use core::arch::asm;
use core::ptr::addr_of;

use aarch64_cpu::registers::{Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2};
use alloc::vec::Vec;
use buddy_system_allocator::LockedHeap;
use hv::guest::{MemRange, Named};
use hv::mem::{DirectMap, Frames, TableSpace};
use hv::selfcheck::{Expect, Region, Tables};
use mm::{PhysAddr, TableBuilder};
use pagewalk::arm64::{Half, Regime, Stage1, LINUX_MAIR};
use pagewalk::{Access, AddrRange, MapAttrs, MemType};
use spin::Mutex;

use super::platform::{Platform, Range};
use super::{fatal, pl011};

/// RAM hv reserves for itself from its load address: image, stacks, heap,
/// page-table frames. Guests get the rest of RAM.
pub const HV_REGION_SIZE: u64 = 32 << 20;
const HEAP_SIZE: u64 = 4 << 20;
const PAGE: u64 = 4096;
/// hv's EL2 address space: 48-bit VA, 4 levels, identity-mapped.
const VA_BITS: u32 = 48;
/// hv's tables, as the self-check and `ptdump hv` name them.
pub const HV_TABLES_TITLE: &str = "hv EL2 stage-1";

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();
/// Frames for page tables (hv's own now, guests' stage-2 later).
pub static FRAMES: Mutex<Frames> = Mutex::new(Frames::new());

// Linker-script symbols (aarch64.ld): only their addresses mean anything.
extern "C" {
    static __hv_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static __boot_stack_guard: u8;
    static __boot_stack_bottom: u8;
    static __boot_stack_top: u8;
    static __exception_stack_guard: u8;
    static __exception_stack_bottom: u8;
    static __exception_stack_top: u8;
    static __hv_end: u8;
}

macro_rules! sym {
    ($name:ident) => {
        // Only the address of the linker symbol is taken, never its contents.
        addr_of!($name) as u64
    };
}

fn range(start: u64, end: u64) -> Range {
    Range {
        base: start,
        size: end - start,
    }
}

/// Where each part of hv lives (all page aligned).
pub struct Layout {
    pub region: Range,
    pub text: Range,
    pub rodata: Range,
    pub data: Range,
    pub boot_guard: Range,
    pub boot_stack: Range,
    pub exception_guard: Range,
    pub exception_stack: Range,
    pub heap: Range,
    pub tables: Range,
    /// The last page of the region: mapped W+X only by `selftest=wx`.
    pub selftest_page: Range,
}

impl Layout {
    pub fn get() -> Layout {
        let start = sym!(__hv_start);
        let heap_start = sym!(__hv_end).next_multiple_of(PAGE);
        let region_end = start + HV_REGION_SIZE;
        Layout {
            region: range(start, region_end),
            text: range(start, sym!(__text_end)),
            rodata: range(sym!(__rodata_start), sym!(__rodata_end)),
            data: range(sym!(__data_start), sym!(__data_end)),
            boot_guard: range(sym!(__boot_stack_guard), sym!(__boot_stack_bottom)),
            boot_stack: range(sym!(__boot_stack_bottom), sym!(__boot_stack_top)),
            exception_guard: range(sym!(__exception_stack_guard), sym!(__exception_stack_bottom)),
            exception_stack: range(sym!(__exception_stack_bottom), sym!(__exception_stack_top)),
            heap: range(heap_start, heap_start + HEAP_SIZE),
            tables: range(heap_start + HEAP_SIZE, region_end - PAGE),
            selftest_page: range(region_end - PAGE, region_end),
        }
    }
}

/// Everything hv owns, by part: its whole region, never guest memory.
pub fn hv_owned() -> Vec<Named<'static>> {
    let layout = Layout::get();
    let part = |name, start, end| Named::new(name, MemRange { start, end });
    alloc::vec![
        part("hv image", layout.region.base, layout.heap.base),
        part("hv heap", layout.heap.base, layout.heap.end()),
        part("hv page tables", layout.tables.base, layout.region.end()),
    ]
}

/// The stack whose guard page holds `addr`, if any (for the exception report).
pub fn guard_page_stack(addr: u64) -> Option<&'static str> {
    let layout = Layout::get();
    let inside = |r: &Range| addr >= r.base && addr < r.end();
    if inside(&layout.boot_guard) {
        Some("hv boot stack")
    } else if inside(&layout.exception_guard) {
        Some("hv exception stack")
    } else {
        None
    }
}

/// hv's tables once the MMU is on, and the regions they map.
pub struct HvTables {
    pub format: Stage1,
    pub root: u64,
    pub mem: DirectMap,
    pub regions: Vec<Region<'static>>,
}

impl HvTables {
    /// Maps `[start, end)` (page aligned) at VA == PA, never executable,
    /// so hv can read (and with `writable`, write) guest memory while it
    /// loads the guest. [`HvTables::unmap_window`] takes it away again.
    pub fn map_window(&self, name: &str, start: u64, end: u64, writable: bool) {
        let access = if writable { RW } else { RO };
        let builder = TableBuilder::with_root(&self.format, PhysAddr(self.root));
        let mut frames = FRAMES.lock();
        let mut space = TableSpace {
            mem: self.mem,
            frames: &mut frames,
        };
        builder
            .map(
                &mut space,
                start,
                start,
                end - start,
                &MapAttrs::new(access, MemType::Normal),
            )
            .unwrap_or_else(|e| fatal(format_args!("mapping {name} {:#x}-{:#x} for hv: {e}", start, end)));
        // SAFETY: a barrier: the new entries are visible to the table walker before use.
        unsafe { asm!("dsb ish", "isb", options(nostack)) };
    }

    /// Maps guest RAM `[start, end)` (page aligned) RW, never executable, at
    /// `window + start`, for as long as hv runs: hypercall buffers and the
    /// guest's own page tables are read there. Not at VA == PA, so a stray hv
    /// pointer into guest RAM still faults.
    pub fn map_guest_ram(&self, window: u64, start: u64, end: u64) {
        let builder = TableBuilder::with_root(&self.format, PhysAddr(self.root));
        let mut frames = FRAMES.lock();
        let mut space = TableSpace {
            mem: self.mem,
            frames: &mut frames,
        };
        builder
            .map(
                &mut space,
                window + start,
                start,
                end - start,
                &MapAttrs::new(RW, MemType::Normal),
            )
            .unwrap_or_else(|e| fatal(format_args!("mapping guest RAM {start:#x}-{end:#x} for hv: {e}")));
        // SAFETY: a barrier: the new entries are visible to the table walker before use.
        unsafe { asm!("dsb ish", "isb", options(nostack)) };
    }

    /// Unmaps a window [`HvTables::map_window`] made, and drops its TLB entries.
    pub fn unmap_window(&self, start: u64, end: u64) {
        let builder = TableBuilder::with_root(&self.format, PhysAddr(self.root));
        let mut frames = FRAMES.lock();
        let mut space = TableSpace {
            mem: self.mem,
            frames: &mut frames,
        };
        builder
            .unmap(&mut space, start, end - start)
            .unwrap_or_else(|e| fatal(format_args!("unmapping {:#x}-{:#x} from hv: {e}", start, end)));
        // SAFETY: TLB maintenance for EL2 after the entries went away; the
        // window holds none of hv's code, data or stacks.
        unsafe { asm!("dsb ishst", "tlbi alle2", "dsb ish", "isb", options(nostack)) };
    }

    pub fn for_selfcheck(&self) -> Tables<'_, Stage1> {
        Tables {
            title: HV_TABLES_TITLE,
            format: &self.format,
            mem: &self.mem,
            root: self.root,
            range: AddrRange::new(0, Some(1 << VA_BITS)).unwrap(),
        }
    }
}

const RX: Access = Access::READ.union(Access::EXEC_PRIV);
const RO: Access = Access::READ;
const RW: Access = Access::READ.union(Access::WRITE);

/// Reserves hv's region, starts heap and frames, builds the EL2 tables and
/// turns the MMU and caches on. Runs with the MMU off; any failure is fatal.
pub fn setup(platform: &Platform, selftest_wx: bool) -> HvTables {
    let layout = Layout::get();
    check_region(platform, &layout);
    log::info!(
        "memory: hv region {} (image {}, heap {}, page-table frames {})",
        layout.region,
        range(layout.text.base, layout.exception_stack.end()),
        layout.heap,
        layout.tables
    );

    // SAFETY: the heap range is hv's own RAM (checked above), used for nothing else.
    unsafe { HEAP.lock().init(layout.heap.base as usize, layout.heap.size as usize) };
    let mut frames = FRAMES.lock();
    frames.add(PhysAddr(layout.tables.base), PhysAddr(layout.tables.end()));

    let format = Stage1::new(VA_BITS, Half::Lower, Regime::El2)
        .expect("48-bit EL2 stage-1 is a valid format")
        .with_mair(LINUX_MAIR);
    // SAFETY: the frame pool is hv's own RAM, reached at VA == PA (MMU off now,
    // identity-mapped later) and touched only through table code.
    let mem = unsafe { DirectMap::new(layout.tables.base, layout.tables.end()) };
    let mut space = TableSpace {
        mem,
        frames: &mut frames,
    };
    let builder = TableBuilder::new(&format, &mut space).unwrap_or_else(|e| fatal(format_args!("page tables: {e}")));

    let dtb = page_align(platform.dtb);
    let mut regions = Vec::new();
    let mut plan = |name: &'static str, r: Range, access: Access, mem: MemType, expect: Expect| {
        regions.push(Region::new(name, r.base, r.end(), expect));
        if expect != Expect::Unmapped {
            builder
                .map(&mut space, r.base, r.base, r.size, &MapAttrs::new(access, mem))
                .unwrap_or_else(|e| fatal(format_args!("mapping {name} {r}: {e}")));
        }
    };
    let normal = MemType::Normal;
    plan("hv text", layout.text, RX, normal, Expect::ReadExec);
    plan("hv rodata", layout.rodata, RO, normal, Expect::ReadOnly);
    plan("hv data/bss", layout.data, RW, normal, Expect::ReadWrite);
    plan("guard page", layout.boot_guard, Access::NONE, normal, Expect::Unmapped);
    plan("hv boot stack", layout.boot_stack, RW, normal, Expect::ReadWrite);
    plan(
        "guard page",
        layout.exception_guard,
        Access::NONE,
        normal,
        Expect::Unmapped,
    );
    plan(
        "hv exception stack",
        layout.exception_stack,
        RW,
        normal,
        Expect::ReadWrite,
    );
    plan("hv heap", layout.heap, RW, normal, Expect::ReadWrite);
    plan("hv page tables", layout.tables, RW, normal, Expect::ReadWrite);
    plan("device tree", dtb, RO, normal, Expect::ReadOnly);
    let uart = page_align(Range {
        base: platform.uart.base,
        size: platform.uart.size.max(pl011::MMIO_SIZE),
    });
    plan("PL011", uart, RW, MemType::Device, Expect::ReadWrite);
    if let Some(gic) = &platform.gic {
        plan(
            "GIC distributor",
            page_align(gic.distributor),
            RW,
            MemType::Device,
            Expect::ReadWrite,
        );
        if let Some(second) = gic.second {
            let name = if gic.version >= 3 {
                "GIC redistributors"
            } else {
                "GIC CPU interface"
            };
            plan(name, page_align(second), RW, MemType::Device, Expect::ReadWrite);
        }
    }
    if selftest_wx {
        log::warn!(
            "selftest=wx: mapping {} writable AND executable on purpose",
            layout.selftest_page
        );
        // Expected RW like any data page: the self-check must flag it twice.
        let rwx = RW.union(Access::EXEC_PRIV);
        plan(
            "selftest W+X page",
            layout.selftest_page,
            rwx,
            normal,
            Expect::ReadWrite,
        );
    }
    let root = builder.root().0;
    drop(frames);

    enable_mmu(root, &layout);
    log::info!(
        "MMU on: EL2 stage-1 root {root:#x}, {VA_BITS}-bit VA, 4K pages, MAIR {LINUX_MAIR:#x}, WXN set; {} free for tables",
        hv::selfcheck::Size(FRAMES.lock().free_bytes())
    );
    HvTables {
        format,
        root,
        mem,
        regions,
    }
}

fn page_align(r: Range) -> Range {
    let start = r.base & !(PAGE - 1);
    range(start, r.end().next_multiple_of(PAGE))
}

/// hv's region must be RAM, and the boot loader's device tree and initrd must not be in it.
fn check_region(platform: &Platform, layout: &Layout) {
    if !platform.ram().iter().any(|ram| ram.contains_range(&layout.region)) {
        fatal(format_args!(
            "hv's region {} is not inside RAM (more RAM? hv needs 512M)",
            layout.region
        ));
    }
    if layout.heap.base >= layout.tables.base || layout.tables.size < 1 << 20 {
        fatal(format_args!(
            "hv's image is too big for its {} region",
            hv::selfcheck::Size(HV_REGION_SIZE)
        ));
    }
    if platform.dtb.overlaps(&layout.region) {
        fatal(format_args!(
            "the device tree {} lies in hv's region {}",
            platform.dtb, layout.region
        ));
    }
    if let Some(initrd) = platform.initrd.filter(|i| i.overlaps(&layout.region)) {
        fatal(format_args!(
            "the initrd {initrd} lies in hv's region {}",
            layout.region
        ));
    }
}

// SCTLR_EL2 (non-VHE): RES1 bits 29, 28, 23, 22, 18, 16, 11, 5, 4.
const SCTLR_RES1: u64 = (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 18) | (1 << 16) | (1 << 11) | 0x30;
const SCTLR_M: u64 = 1 << 0;
const SCTLR_C: u64 = 1 << 2;
const SCTLR_SA: u64 = 1 << 3;
const SCTLR_I: u64 = 1 << 12;
/// Write permission implies execute-never: a W+X mapping cannot run even if the check were skipped.
const SCTLR_WXN: u64 = 1 << 19;

// TCR_EL2 (non-VHE) fields.
const TCR_RES1: u64 = (1 << 31) | (1 << 23);
const TCR_IRGN0_WBWA: u64 = 1 << 8;
const TCR_ORGN0_WBWA: u64 = 1 << 10;
const TCR_SH0_INNER: u64 = 3 << 12;
const TCR_TG0_4K: u64 = 0 << 14;
const TCR_PS_SHIFT: u64 = 16;
/// PARange / PS encoding of 48 bits: hv's descriptors carry 48-bit output addresses.
const PA_48_BITS: u64 = 5;

fn enable_mmu(root: u64, layout: &Layout) {
    let parange = ID_AA64MMFR0_EL1.get() & 0xf;
    let tcr = (64 - VA_BITS as u64)
        | TCR_IRGN0_WBWA
        | TCR_ORGN0_WBWA
        | TCR_SH0_INNER
        | TCR_TG0_4K
        | (parange.min(PA_48_BITS) << TCR_PS_SHIFT)
        | TCR_RES1;
    MAIR_EL2.set(LINUX_MAIR);
    TCR_EL2.set(tcr);
    TTBR0_EL2.set(root);

    // Everything hv wrote so far went straight to memory (MMU off = no data
    // cache); drop any stale lines a previous stage left for hv's region.
    let ctr: u64;
    // SAFETY: reads CTR_EL0 (cache type), which has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let mut addr = layout.region.base;
    while addr < layout.region.end() {
        // SAFETY: invalidating data-cache lines of hv's own region, which holds
        // no dirty cached data of hv's (caches were off).
        unsafe { asm!("dc ivac, {}", in(reg) addr, options(nostack)) };
        addr += line;
    }
    // SAFETY: barriers and TLB/I-cache maintenance for EL2 only; the tables
    // just built identity-map the code that runs here, so it keeps running.
    unsafe {
        asm!("dsb sy", "tlbi alle2", "ic iallu", "dsb sy", "isb", options(nostack));
    }
    SCTLR_EL2.set(SCTLR_RES1 | SCTLR_M | SCTLR_C | SCTLR_SA | SCTLR_I | SCTLR_WXN);
    // SAFETY: synchronises the SCTLR write before the next instruction fetch.
    unsafe { asm!("isb", options(nostack)) };
}

/// `selftest=fault`: reads the guard page below the boot stack. The
/// exception handler must report the translation fault and stop.
pub fn touch_guard_page() -> ! {
    let guard = Layout::get().boot_guard.base;
    log::warn!("selftest=fault: reading the guard page at {guard:#x} below hv's boot stack");
    // SAFETY: deliberately faulting: the address is unmapped, so the read
    // never completes and the exception handler ends hv.
    let value = unsafe { core::ptr::read_volatile(guard as usize as *const u64) };
    fatal(format_args!(
        "the guard page at {guard:#x} was readable ({value:#x}): it is not unmapped"
    ))
}
