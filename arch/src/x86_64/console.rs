//! hv's console on x86_64: the tables the arch-neutral engine
//! (`hv::console`) shows, and guest RAM as hv reaches it.
//!
//! - `ptdump hv`: hv's 4-level tables, with the self-check's region markers.
//! - `ptdump s2` / `audit s2`: the NPT, with a marker per part of the
//!   guest's physical space and per range hv keeps out of it.
//! - `ptdump guest` / `wx guest`: the guest's CR3 tables, decoded from the
//!   VMCB save area (CR0, CR3, CR4, EFER, G_PAT) at the trap that runs the
//!   command, every table read through the NPT ([`GuestIntrospection`]).
//!
//! hv's own tables map guest RAM RW + NX at [`GUEST_RAM_WINDOW`] + PA (never
//! at VA == PA, so a stray hv pointer into guest RAM still faults); that
//! window is how hypercall buffers and the guest's tables are reached, always
//! after the NPT said the guest page is there ([`GuestRam`] refuses anything
//! outside the RAM ranges hv mapped).

use alloc::vec::Vec;
use core::fmt::{self, Write};

use hv::console::{self, ConsoleTarget, NotAvailable, TableFormat, TableView, Verdict, Views, NO_GUEST_YET};
use hv::guest::Named;
use hv::introspect::{GuestIntrospection, GuestPhysMemory, GuestStage1, X86GuestRegs};
use hv::mem::{DirectMap, GuestRam};
use pagewalk::x86::{Npt, X86_64};
use pagewalk::AddrRange;
use ptdump::Marker;

use super::serial;

/// Where hv's tables map guest RAM: VA = this + PA (the first upper-half
/// address; 128 TiB of room, far more than any guest's RAM).
pub const GUEST_RAM_WINDOW: u64 = 0xffff_8000_0000_0000;

/// One set of tables hv keeps: format, where they live, root, markers.
pub struct Tables<F> {
    pub format: F,
    pub mem: DirectMap,
    pub root: u64,
    pub markers: Vec<Marker<'static>>,
}

/// Everything the console shows that does not change while the guest runs.
pub struct Console {
    pub hv: Tables<X86_64>,
    /// The NPT, once built.
    pub npt: Option<Tables<Npt>>,
    pub hv_owned: &'static [Named<'static>],
    /// Where no hypercall buffer may land: hv's ranges and the guest's device
    /// windows (the NPT maps those too, but hv never copies to or from MMIO:
    /// a device register could act on the access). Checked before anything
    /// happens, so a refused call leaves the previous output in place.
    pub not_for_buffers: &'static [Named<'static>],
    /// Guest RAM through hv's window (empty without a guest).
    pub ram: GuestRam,
    /// MAXPHYADDR, for decoding the guest's tables.
    pub phys_bits: u32,
    /// hv's parts for `info`: image sections, stacks, pools.
    pub layout: Vec<Named<'static>>,
}

/// The guest's state at the trap that runs a command.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestSnapshot {
    pub regs: X86GuestRegs,
    pub rip: u64,
    pub cpl: u8,
    pub exits: ExitCounts,
}

/// VM exits so far, by reason.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitCounts {
    pub total: u64,
    pub cpuid: u64,
    pub msr: u64,
    /// Port I/O other than the doorbell.
    pub io: u64,
    pub npf: u64,
    pub vmmcall: u64,
    pub doorbell: u64,
    pub other: u64,
}

type GuestView<'c> = GuestIntrospection<'c, Npt, DirectMap, &'c GuestRam>;

/// The console's view of hv and (once it runs) the guest at one moment.
pub struct Target<'c> {
    console: &'c Console,
    guest: Option<(GuestSnapshot, GuestView<'c>)>,
}

impl<'c> Target<'c> {
    /// Before the guest runs: `ptdump guest` and `wx guest` are not available.
    pub fn boot(console: &'c Console) -> Target<'c> {
        Target { console, guest: None }
    }

    /// At a guest trap: the guest's paging registers as the VMCB holds them.
    /// Cheap: decoding the registers reads no memory.
    pub fn at_trap(console: &'c Console, snapshot: GuestSnapshot) -> Target<'c> {
        let guest = console.npt.as_ref().map(|npt| {
            let stage1 = GuestStage1::x86(&snapshot.regs, console.phys_bits);
            let mem = GuestPhysMemory::new(&npt.format, npt.root, npt.mem, &console.ram, console.hv_owned);
            (snapshot, GuestIntrospection { stage1, mem })
        });
        Target { console, guest }
    }
}

const NO_NPT: NotAvailable = NotAvailable {
    reason: "there is no NPT: hv runs without a guest (guest=none) or has not built it yet",
};

impl ConsoleTarget for Target<'_> {
    fn arch(&self) -> &str {
        "x86_64"
    }

    fn hv_tables(&self) -> TableView<'_> {
        let hv = &self.console.hv;
        TableView {
            format: TableFormat::X86_64(hv.format),
            mem: &hv.mem,
            root: hv.root,
            range: AddrRange::ALL,
            markers: &hv.markers,
        }
    }

    fn stage2(&self) -> Result<TableView<'_>, NotAvailable> {
        let npt = self.console.npt.as_ref().ok_or(NO_NPT)?;
        Ok(TableView {
            format: TableFormat::Npt(npt.format),
            mem: &npt.mem,
            root: npt.root,
            range: AddrRange::ALL,
            markers: &npt.markers,
        })
    }

    fn guest_tables(&self) -> Result<Views<'_>, NotAvailable> {
        match &self.guest {
            Some((_, view)) => view.views(),
            None => Err(NO_GUEST_YET),
        }
    }

    fn hv_owned(&self) -> &[Named<'_>] {
        self.console.hv_owned
    }

    fn info(&self, out: &mut dyn Write) -> fmt::Result {
        let c = self.console;
        writeln!(out, "memory layout (physical):")?;
        for part in &c.layout {
            writeln!(out, "  {:<24} {}", part.name, part.range)?;
        }
        writeln!(
            out,
            "  hv page tables root      {:#x} (4-level, {} physical address bits)",
            c.hv.root, c.phys_bits
        )?;
        if c.ram.ranges().is_empty() {
            writeln!(out, "  guest RAM                none")?;
        }
        for r in c.ram.ranges() {
            writeln!(
                out,
                "  guest RAM                {r} (hv's window at {:#x})",
                GUEST_RAM_WINDOW + r.start
            )?;
        }
        match &c.npt {
            Some(npt) => writeln!(
                out,
                "  NPT root                 {:#x} (identity map, GPA = PA)",
                npt.root
            )?,
            None => writeln!(out, "  NPT                      none")?,
        }
        let Some((s, view)) = &self.guest else {
            return writeln!(out, "guest: not started");
        };
        let e = &s.exits;
        writeln!(out, "guest state at this trap:")?;
        writeln!(out, "  RIP {:#018x} CPL {}", s.rip, s.cpl)?;
        writeln!(
            out,
            "  CR0 {:#x} CR3 {:#x} CR4 {:#x} EFER {:#x}",
            s.regs.cr0, s.regs.cr3, s.regs.cr4, s.regs.efer
        )?;
        writeln!(
            out,
            "  VM exits so far: {} (CPUID {}, MSR {}, I/O {}, NPF {}, VMMCALL {}, doorbell {}, other {})",
            e.total, e.cpuid, e.msr, e.io, e.npf, e.vmmcall, e.doorbell, e.other
        )?;
        match &view.stage1 {
            Ok(stage1) => stage1.describe(out),
            Err(na) => writeln!(out, "  guest tables not walked: {}", na.reason),
        }
    }
}

/// Runs one console command for hv's boot log on the serial port (see [`console::boot_log`]).
pub fn boot_log(target: &dyn ConsoleTarget, line: &str) -> Verdict {
    serial::with_console(|out| console::boot_log(target, line, out))
}
