//! The GICv3 redistributors, trapped and emulated from EL2.
//!
//! A redistributor's LPI tables (GICR_PROPBASER, GICR_PENDBASER) are read and
//! written by the GIC itself, straight to physical memory: stage-2 does not
//! apply to them. A guest that owned the redistributors could aim them at
//! hv's memory and have the GIC write there. So stage-2 leaves the
//! redistributor region unmapped and hv performs each guest access itself on
//! the real redistributor (hv maps it in its own tables), same address, same
//! width, after checking it:
//!
//! - reads: passed through (GICR reads have no side effects);
//! - writes to the SGI/PPI frame: passed through (the guest owns its
//!   SGIs/PPIs, as it owns the distributor);
//! - writes to the RD frame: GICR_CTLR without EnableLPIs, GICR_STATUSR,
//!   GICR_WAKER, and GICR_PROPBASER / GICR_PENDBASER (64-bit) whose tables lie
//!   inside guest RAM. LPIs are never enabled: the ITS is withheld from the
//!   guest (not mapped, `status = "disabled"` in its DTB), so Linux uses none.
//!   Every other write (EnableLPIs, SETLPIR/CLRLPIR/INVLPIR/INVALLR, tables
//!   outside guest RAM, partial 32-bit writes of the 64-bit table registers,
//!   GICv4 VLPI frames) is refused: dropped, logged, and the guest goes on
//!   (write-ignored, as a RAZ/WI register would be).
//!
//! Cost: Linux touches the redistributors while it brings each CPU up (about
//! a hundred accesses per CPU: wake-up, SGI/PPI groups, priorities, enables)
//! and when it enables or disables a PPI; interrupt handling goes through the
//! ICC_* system registers, which are not trapped. `info` shows the counts.

use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use hv::guest::MemRange;
use spin::Once;

use super::exceptions::Frame;
use super::mmio::MmioAccess;
use super::sysreg::read_sysreg;

/// One redistributor's frames: RD_base, then SGI_base 64 KiB on; with GICv4
/// (GICR_TYPER.VLPIS) two more frames for virtual LPIs.
const FRAME: u64 = 0x1_0000;
const GICR_CTLR: u64 = 0x0000;
const GICR_TYPER: u64 = 0x0008;
const GICR_STATUSR: u64 = 0x0010;
const GICR_WAKER: u64 = 0x0014;
const GICR_SETLPIR: u64 = 0x0040;
const GICR_CLRLPIR: u64 = 0x0048;
const GICR_PROPBASER: u64 = 0x0070;
const GICR_PENDBASER: u64 = 0x0078;
const GICR_INVLPIR: u64 = 0x00a0;
const GICR_INVALLR: u64 = 0x00b0;
const CTLR_ENABLE_LPIS: u64 = 1 << 0;
const TYPER_VLPIS: u64 = 1 << 1;
/// PROPBASER: physical address bits 51:12, ID bits 4:0.
const PROPBASER_PA: u64 = 0x000f_ffff_ffff_f000;
const PROPBASER_IDBITS: u64 = 0x1f;
/// PENDBASER: physical address bits 51:16.
const PENDBASER_PA: u64 = 0x000f_ffff_ffff_0000;
/// The first LPI INTID: the configuration table covers INTIDs from here.
const FIRST_LPI: u64 = 8192;

/// How many refusals are logged one by one.
const MAX_LOGGED: u64 = 16;

struct Redistributors {
    range: MemRange,
    /// Bytes per redistributor (2 or 4 frames).
    stride: u64,
    guest_ram: Vec<MemRange>,
}

static GICR: Once<Redistributors> = Once::new();
static READS: AtomicU64 = AtomicU64::new(0);
static WRITES: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);
/// Counter ticks (CNTPCT_EL0) spent emulating, trap entry and exit excluded.
static TICKS: AtomicU64 = AtomicU64::new(0);

/// Starts trapping the redistributors at `range` (mapped RW device memory in
/// hv's tables at VA == PA, unmapped in the guest's stage-2).
pub fn init(range: MemRange, guest_ram: &[MemRange]) {
    // SAFETY: the first redistributor's GICR_TYPER, in the region hv maps as
    // device memory (boot.rs); reading it has no side effect.
    let typer = unsafe { read_device(range.start + GICR_TYPER, 8) };
    let stride = if typer & TYPER_VLPIS != 0 { 4 * FRAME } else { 2 * FRAME };
    GICR.call_once(|| Redistributors {
        range,
        stride,
        guest_ram: guest_ram.to_vec(),
    });
    log::info!(
        "GIC redistributors {range} trapped: hv emulates each guest access ({} KiB per CPU); LPIs stay off",
        stride >> 10
    );
}

/// Whether `ipa` is a redistributor hv traps.
pub fn contains(ipa: u64) -> bool {
    GICR.get().is_some_and(|g| g.range.contains(ipa))
}

/// Why a write is refused.
enum Refusal {
    EnableLpis,
    LpiRegister,
    TableOutsideRam { pa: u64, len: u64 },
    Partial,
    OtherRegister,
    VlpiFrame,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::EnableLpis => f.write_str("it would set GICR_CTLR.EnableLPIs (LPIs are not the guest's: no ITS)"),
            Refusal::LpiRegister => f.write_str("an LPI register (LPIs are not the guest's: no ITS)"),
            Refusal::TableOutsideRam { pa, len } => write!(
                f,
                "the table {pa:#x}-{:#x} would lie outside guest RAM",
                pa.saturating_add(*len)
            ),
            Refusal::Partial => f.write_str("a 32-bit write of a 64-bit table register"),
            Refusal::OtherRegister => f.write_str("not a register the guest may write"),
            Refusal::VlpiFrame => f.write_str("a GICv4 virtual LPI frame"),
        }
    }
}

fn register_name(offset: u64) -> &'static str {
    match offset {
        GICR_CTLR => "GICR_CTLR",
        GICR_STATUSR => "GICR_STATUSR",
        GICR_WAKER => "GICR_WAKER",
        GICR_SETLPIR => "GICR_SETLPIR",
        GICR_CLRLPIR => "GICR_CLRLPIR",
        GICR_PROPBASER | 0x74 => "GICR_PROPBASER",
        GICR_PENDBASER | 0x7c => "GICR_PENDBASER",
        GICR_INVLPIR => "GICR_INVLPIR",
        GICR_INVALLR => "GICR_INVALLR",
        o if o >= FRAME => "an SGI/PPI or VLPI frame register",
        _ => "an RD frame register",
    }
}

impl Redistributors {
    fn in_guest_ram(&self, pa: u64, len: u64) -> bool {
        MemRange::from_len(pa, len.max(1)).is_some_and(|t| self.guest_ram.iter().any(|r| r.covers(&t)))
    }

    /// Checks a write of `value` at `offset` into the redistributor whose RD
    /// frame is at `rd_base`.
    fn check_write(&self, rd_base: u64, offset: u64, width: u8, value: u64) -> Result<(), Refusal> {
        if offset >= 2 * FRAME {
            return Err(Refusal::VlpiFrame);
        }
        if offset >= FRAME {
            return Ok(());
        }
        match (offset, width) {
            (GICR_CTLR, _) if value & CTLR_ENABLE_LPIS != 0 => Err(Refusal::EnableLpis),
            (GICR_CTLR | GICR_STATUSR | GICR_WAKER, _) => Ok(()),
            (GICR_PROPBASER, 8) => {
                let id_bits = (value & PROPBASER_IDBITS) + 1;
                let len = (1u64 << id_bits.min(32)).saturating_sub(FIRST_LPI);
                let pa = value & PROPBASER_PA;
                self.table_check(pa, len)
            }
            (GICR_PENDBASER, 8) => {
                // SAFETY: this redistributor's GICR_PROPBASER, in hv's device mapping; no side effect.
                let prop = unsafe { read_device(rd_base + GICR_PROPBASER, 8) };
                let id_bits = (prop & PROPBASER_IDBITS) + 1;
                let len = ((1u64 << id_bits.min(32)) / 8).max(FRAME);
                self.table_check(value & PENDBASER_PA, len)
            }
            (GICR_PROPBASER..=0x7f, _) => Err(Refusal::Partial),
            (GICR_SETLPIR..=0x4f | GICR_INVLPIR..=0xa7 | GICR_INVALLR..=0xb7, _) => Err(Refusal::LpiRegister),
            _ => Err(Refusal::OtherRegister),
        }
    }

    fn table_check(&self, pa: u64, len: u64) -> Result<(), Refusal> {
        if self.in_guest_ram(pa, len) {
            Ok(())
        } else {
            Err(Refusal::TableOutsideRam { pa, len })
        }
    }
}

/// Performs (or refuses) one guest access to a redistributor and steps the
/// guest over the instruction.
pub fn emulate(regs: &mut Frame, access: &MmioAccess) {
    let Some(gicr) = GICR.get() else {
        return;
    };
    let start = read_sysreg!("cntpct_el0");
    let pa = access.ipa;
    let rd_base = pa - (pa - gicr.range.start) % gicr.stride;
    let offset = pa - rd_base;
    if access.write {
        WRITES.fetch_add(1, Ordering::Relaxed);
        let value = access.store_value(regs);
        match gicr.check_write(rd_base, offset, access.width, value) {
            // SAFETY: `pa` is inside the redistributor region hv maps as
            // device memory at VA == PA, aligned to the access width
            // (MmioAccess::decode checked it); the write was checked above.
            Ok(()) => unsafe { write_device(pa, access.width, value) },
            Err(why) => {
                let n = REFUSED.fetch_add(1, Ordering::Relaxed);
                if n < MAX_LOGGED {
                    log::info!(
                        "guest write of {value:#x} to {} at IPA {pa:#x} refused: {why}",
                        register_name(offset)
                    );
                } else if n == MAX_LOGGED {
                    log::info!("further refused redistributor writes are not logged");
                }
            }
        }
    } else {
        READS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for the write; GICR reads have no side effects.
        let value = unsafe { read_device(pa, access.width) };
        access.complete_load(regs, value);
    }
    access.step_over(regs);
    TICKS.fetch_add(read_sysreg!("cntpct_el0").wrapping_sub(start), Ordering::Relaxed);
}

/// `info` lines: what is trapped and how often.
pub fn info(out: &mut dyn Write) -> fmt::Result {
    let Some(gicr) = GICR.get() else {
        return writeln!(out, "  GIC redistributors       not trapped (no GICv3 guest)");
    };
    let freq = read_sysreg!("cntfrq_el0").max(1);
    writeln!(
        out,
        "  GIC redistributors       {} trapped: {} reads, {} writes emulated ({} refused), {} us in hv; ITS withheld",
        gicr.range,
        READS.load(Ordering::Relaxed),
        WRITES.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
        TICKS.load(Ordering::Relaxed) * 1_000_000 / freq
    )
}

/// # Safety
/// `pa` must be device memory hv maps at VA == PA, aligned to `width`.
unsafe fn read_device(pa: u64, width: u8) -> u64 {
    let p = pa as usize;
    // SAFETY: forwarded to the caller; one access of exactly `width` bytes.
    unsafe {
        match width {
            1 => u64::from((p as *const u8).read_volatile()),
            2 => u64::from((p as *const u16).read_volatile()),
            4 => u64::from((p as *const u32).read_volatile()),
            _ => (p as *const u64).read_volatile(),
        }
    }
}

/// # Safety
/// As for [`read_device`]; the write must be one the guest may make.
unsafe fn write_device(pa: u64, width: u8, value: u64) {
    let p = pa as usize;
    // SAFETY: forwarded to the caller; one access of exactly `width` bytes.
    unsafe {
        match width {
            1 => (p as *mut u8).write_volatile(value as u8),
            2 => (p as *mut u16).write_volatile(value as u16),
            4 => (p as *mut u32).write_volatile(value as u32),
            _ => (p as *mut u64).write_volatile(value),
        }
    }
}
