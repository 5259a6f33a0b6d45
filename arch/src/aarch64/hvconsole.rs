//! hv's console on arm64: the tables the arch-neutral engine (`hv::console`)
//! shows, guest RAM as hv reaches it, and the two guest transports — `HVC #0`
//! (hypercalls, `hv::hypercall`) and the doorbell page (Linux userspace).
//!
//! - `ptdump hv` / `wx hv`: hv's EL2 stage-1, with the self-check's region
//!   markers (and one per guest RAM window once the guest is loaded).
//! - `ptdump s2` / `audit s2`: the guest's stage-2 (`---[ Guest IPA ]---`).
//! - `ptdump guest` / `wx guest`: the trapping vCPU's EL1&0 stage-1, decoded
//!   from SCTLR/TCR/TTBR0/TTBR1/MAIR_EL1 at the trap that runs the command;
//!   every table is read through the stage-2 ([`GuestIntrospection`]).
//!
//! hv maps guest RAM RW + NX at [`GUEST_RAM_WINDOW`] + PA (never at VA == PA,
//! so a stray hv pointer into guest RAM still faults); that window is how
//! hypercall buffers and the guest's tables are reached, always after the
//! stage-2 said the guest page is there. [`GuestRam`] refuses anything
//! outside the RAM ranges: hv never reads or writes a device for the guest.
//!
//! KPTI: a Linux guest that unmaps itself at EL0 (KASLR without E0PD, or a
//! Meltdown-affected CPU) runs its userspace with TTBR1_EL1 pointing at the
//! trampoline tables, which map only the exception vectors. A `ptdump guest`
//! from hvctl (EL0) would then show the trampoline, not the kernel. hv
//! remembers TTBR1_EL1 from the guest's last trap taken at EL1 (the kernel's
//! own, swapper_pg_dir) and, at an EL0 trap whose TTBR1_EL1 table differs,
//! walks that one instead and says so (`info`, `wx guest`, the part name).

use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use hv::console::{self, ConsoleTarget, NotAvailable, TableFormat, TableView, Verdict, Views, WxNote, NO_GUEST_YET};
use hv::guest::Named;
use hv::hypercall::doorbell::{self, Doorbell};
use hv::hypercall::guest_mem::{GuestMemError, GuestMemory, Stage2Memory};
use hv::hypercall::{Call, CallContext, Conduit, Hypercalls, Privilege};
use hv::introspect::arm64::TTBR_BADDR_MASK;
use hv::introspect::{Arm64GuestRegs, GuestIntrospection, GuestPhysMemory, GuestStage1};
use hv::mem::{DirectMap, GuestRam};
use hv::selfcheck::{self, Region};
use pagewalk::arm64::{Stage1, Stage2};
use pagewalk::{AddrRange, Format};
use ptdump::Marker;
use spin::{Mutex, Once};

use super::boot::{HvTables, Layout, HV_TABLES_TITLE};
use super::exceptions::Frame;
use super::mmio::MmioAccess;
use super::sysreg::read_sysreg;
use super::{console as uart, gicr};

/// Where hv's tables map guest RAM: VA = this + PA. hv's EL2 VA space is 48
/// bits; guest RAM is below 2^47 on every platform hv supports.
pub const GUEST_RAM_WINDOW: u64 = 1 << 47;

/// Guest memory for hypercall buffers: the stage-2 checks of
/// [`Stage2Memory`] (mapped, permitted, not hv's), then guest RAM only. A
/// stage-2 device page passes the first (the guest may access it) but not the
/// second: hv never reads or writes a device register on the guest's behalf,
/// and refuses such an output buffer before it discards the previous output.
struct RamOnly<'a> {
    stage2: Stage2Memory<'a, Stage2, DirectMap, &'a GuestRam>,
    ram: &'a GuestRam,
}

impl RamOnly<'_> {
    /// The stage-2 is an identity map, so the buffer's IPAs are its PAs.
    fn in_ram(&self, gpa: u64, len: u64) -> Result<(), GuestMemError> {
        if self.ram.holds(gpa, len) {
            Ok(())
        } else {
            Err(GuestMemError::PhysFault { pa: gpa })
        }
    }
}

impl GuestMemory for RamOnly<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
        // The physical accessor ([`GuestRam`]) refuses anything but guest RAM.
        self.stage2.read(gpa, buf)
    }
    fn check_writable(&self, gpa: u64, len: u64) -> Result<(), GuestMemError> {
        self.stage2.check_writable(gpa, len)?;
        self.in_ram(gpa, len)
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), GuestMemError> {
        self.check_writable(gpa, data.len() as u64)?;
        self.stage2.write(gpa, data)
    }
}

/// The guest's stage-2 as the console shows it.
pub struct Stage2View {
    pub format: Stage2,
    pub root: u64,
    pub vtcr: u64,
    pub vttbr: u64,
}

/// Everything the console shows that does not change while the guest runs.
pub struct Console {
    pub hv_format: Stage1,
    pub hv_mem: DirectMap,
    pub hv_root: u64,
    pub hv_range: AddrRange,
    /// The self-check's region markers, sorted (plus the guest RAM window).
    pub hv_markers: Vec<Marker<'static>>,
    pub stage2: Option<Stage2View>,
    pub hv_owned: Vec<Named<'static>>,
    pub ram: GuestRam,
}

impl Console {
    /// hv's tables and what it owns; no guest yet.
    pub fn new(tables: &HvTables, hv_owned: Vec<Named<'static>>) -> Console {
        let range = tables.for_selfcheck().range;
        Console {
            hv_format: tables.format,
            hv_mem: tables.mem,
            hv_root: tables.root,
            hv_range: range,
            hv_markers: selfcheck::region_markers(HV_TABLES_TITLE, range.start, &tables.regions).collect(),
            stage2: None,
            hv_owned,
            ram: GuestRam::none(GUEST_RAM_WINDOW),
        }
    }

    /// Adds a marker for each guest RAM window in hv's tables.
    pub fn mark_guest_ram_window(&mut self) {
        for r in self.ram.ranges() {
            self.hv_markers
                .push(Marker::new(GUEST_RAM_WINDOW + r.start, "guest RAM (hv's window)"));
        }
        self.hv_markers[1..].sort_by_key(|m| m.addr);
    }
}

/// The guest's console state, shared by all CPUs: published once the guest's
/// stage-2 exists, before the guest runs.
static CONSOLE: Once<Console> = Once::new();
static CALLS: Mutex<Option<Hypercalls>> = Mutex::new(None);
static BELL: Mutex<Option<Doorbell>> = Mutex::new(None);

/// Publishes the console for the guest's traps (first call wins).
pub fn publish(console: Console) -> &'static Console {
    *CALLS.lock() = Some(Hypercalls::new());
    *BELL.lock() = Some(Doorbell::new());
    CONSOLE.call_once(|| console)
}

/// TTBR1_EL1 at the guest's last trap from EL1 with its MMU on: the kernel's
/// own table (see the module comment on KPTI). 0 until the first one.
static KERNEL_TTBR1: AtomicU64 = AtomicU64::new(0);

/// Trap counts for `info`.
pub struct TrapCounts {
    pub hvc: AtomicU64,
    pub doorbell: AtomicU64,
}

pub static TRAPS: TrapCounts = TrapCounts {
    hvc: AtomicU64::new(0),
    doorbell: AtomicU64::new(0),
};

/// Called on every guest trap: remembers the kernel's TTBR1_EL1.
pub fn note_trap(spsr: u64) {
    let from_el1 = spsr & 0x1c == 0x4;
    if from_el1 && read_sysreg!("sctlr_el1") & hv::introspect::arm64::SCTLR_M != 0 {
        KERNEL_TTBR1.store(read_sysreg!("ttbr1_el1"), Ordering::Relaxed);
    }
}

/// The guest's state at the trap that runs a command.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestSnapshot {
    /// The registers as they are at this trap.
    pub regs: Arm64GuestRegs,
    pub pc: u64,
    pub spsr: u64,
    pub mpidr: u64,
    /// When the trap came from EL0 with TTBR1_EL1 on another table than the
    /// kernel's last one (KPTI's trampoline): the kernel's TTBR1_EL1.
    pub kernel_ttbr1: Option<u64>,
}

impl GuestSnapshot {
    /// Reads the guest's EL1 translation registers (hv runs at EL2 with its
    /// own; the EL1 ones still hold the guest's).
    pub fn read(regs: &Frame) -> GuestSnapshot {
        let guest = Arm64GuestRegs {
            sctlr_el1: read_sysreg!("sctlr_el1"),
            tcr_el1: read_sysreg!("tcr_el1"),
            ttbr0_el1: read_sysreg!("ttbr0_el1"),
            ttbr1_el1: read_sysreg!("ttbr1_el1"),
            mair_el1: read_sysreg!("mair_el1"),
        };
        let kernel = KERNEL_TTBR1.load(Ordering::Relaxed);
        let from_el0 = regs.spsr & 0xf == 0;
        let kernel_ttbr1 =
            (from_el0 && kernel != 0 && (kernel ^ guest.ttbr1_el1) & TTBR_BADDR_MASK != 0).then_some(kernel);
        GuestSnapshot {
            regs: guest,
            pc: regs.elr,
            spsr: regs.spsr,
            mpidr: read_sysreg!("vmpidr_el2") & 0xff_00ff_ffff,
            kernel_ttbr1,
        }
    }

    fn el(&self) -> &'static str {
        match self.spsr & 0x1f {
            0b00000 => "EL0 (AArch64)",
            0b00100 => "EL1t",
            0b00101 => "EL1h",
            m if m & 0x10 != 0 => "EL0/EL1 (AArch32)",
            _ => "unknown mode",
        }
    }
}

const KPTI_NOTE: WxNote = WxNote {
    text: "the guest is at EL0 with KPTI: TTBR1_EL1 holds the trampoline tables now; \
           checking the kernel's TTBR1_EL1 from its last EL1 trap (see 'info')",
    fails: false,
};
const KERNEL_TTBR1_NAME: &str = "TTBR1_EL1 (kernel's, KPTI)";

type GuestView<'c> = GuestIntrospection<'c, Stage2, DirectMap, &'c GuestRam>;

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

    /// At a guest trap. Cheap: decoding the registers reads no memory.
    pub fn at_trap(console: &'c Console, snapshot: GuestSnapshot) -> Target<'c> {
        let guest = console.stage2.as_ref().map(|s2| {
            let mut regs = snapshot.regs;
            if let Some(kernel) = snapshot.kernel_ttbr1 {
                regs.ttbr1_el1 = kernel;
            }
            let stage1 = GuestStage1::arm64(&regs).map(|mut stage1| {
                if snapshot.kernel_ttbr1.is_some() {
                    stage1.parts[1].name = KERNEL_TTBR1_NAME;
                    stage1.parts[1].wx_note = Some(KPTI_NOTE);
                }
                stage1
            });
            let mem = GuestPhysMemory::new(&s2.format, s2.root, console.hv_mem, &console.ram, &console.hv_owned);
            (snapshot, GuestIntrospection { stage1, mem })
        });
        Target { console, guest }
    }
}

const NO_STAGE2: NotAvailable = NotAvailable {
    reason: "there is no stage-2: hv runs without a guest (guest=none) or has not built it yet",
};

impl ConsoleTarget for Target<'_> {
    fn arch(&self) -> &str {
        "aarch64"
    }

    fn hv_tables(&self) -> TableView<'_> {
        let c = self.console;
        TableView {
            format: TableFormat::Arm64Stage1(c.hv_format),
            mem: &c.hv_mem,
            root: c.hv_root,
            range: c.hv_range,
            markers: &c.hv_markers,
        }
    }

    fn stage2(&self) -> Result<TableView<'_>, NotAvailable> {
        let s2 = self.console.stage2.as_ref().ok_or(NO_STAGE2)?;
        Ok(TableView {
            format: TableFormat::Arm64Stage2(s2.format),
            mem: &self.console.hv_mem,
            root: s2.root,
            range: AddrRange::new(0, Some(1 << s2.format.input_bits())).unwrap_or(AddrRange::ALL),
            markers: &ptdump::stage2::GUEST_IPA,
        })
    }

    fn guest_tables(&self) -> Result<Views<'_>, NotAvailable> {
        match &self.guest {
            Some((_, view)) => view.views(),
            None => Err(NO_GUEST_YET),
        }
    }

    fn hv_owned(&self) -> &[Named<'_>] {
        &self.console.hv_owned
    }

    fn info(&self, out: &mut dyn Write) -> fmt::Result {
        let c = self.console;
        let layout = Layout::get();
        writeln!(out, "memory layout (physical):")?;
        writeln!(out, "  hv region                {}", layout.region)?;
        for part in &c.hv_owned {
            writeln!(out, "  {:<24} {}", part.name, part.range)?;
        }
        writeln!(
            out,
            "  hv EL2 stage-1 root      {:#x} ({}-bit VA, identity map; MAIR_EL2 {:#x})",
            c.hv_root,
            c.hv_format.input_bits(),
            read_sysreg!("mair_el2")
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
        match &c.stage2 {
            Some(s2) => {
                writeln!(
                    out,
                    "  stage-2 root             {:#x} ({}-bit IPA, identity map; VTCR_EL2 {:#x}, VTTBR_EL2 {:#x})",
                    s2.root,
                    s2.format.input_bits(),
                    s2.vtcr,
                    s2.vttbr
                )?;
                writeln!(
                    out,
                    "  doorbell                 IPA {:#x}-{:#x} (unmapped in stage-2; every access traps)",
                    doorbell::MMIO_BASE,
                    doorbell::MMIO_BASE + doorbell::MMIO_SIZE
                )?;
            }
            None => writeln!(out, "  stage-2                  none")?,
        }
        gicr::info(out)?;
        let Some((s, view)) = &self.guest else {
            return writeln!(out, "guest: not started");
        };
        writeln!(out, "guest state at this trap:")?;
        writeln!(out, "  CPU MPIDR {:#x}, PC {:#018x}, {}", s.mpidr, s.pc, s.el())?;
        let r = &s.regs;
        writeln!(out, "  SCTLR_EL1 {:#018x}", r.sctlr_el1)?;
        writeln!(out, "  TCR_EL1   {:#018x}", r.tcr_el1)?;
        writeln!(out, "  MAIR_EL1  {:#018x}", r.mair_el1)?;
        writeln!(out, "  TTBR0_EL1 {:#018x}", r.ttbr0_el1)?;
        writeln!(out, "  TTBR1_EL1 {:#018x}", r.ttbr1_el1)?;
        match s.kernel_ttbr1 {
            Some(kernel) => {
                writeln!(
                    out,
                    "  kernel TTBR1_EL1 {kernel:#018x} (from the guest's last EL1 trap)"
                )?;
                writeln!(
                    out,
                    "  KPTI: at EL0 TTBR1_EL1 holds the kernel's trampoline tables; 'ptdump guest' and \
                     'wx guest' walk the kernel's TTBR1_EL1 above"
                )?;
            }
            None => writeln!(
                out,
                "  kernel TTBR1_EL1 {:#018x} (from the guest's last EL1 trap)",
                KERNEL_TTBR1.load(Ordering::Relaxed)
            )?,
        }
        match &view.stage1 {
            Ok(stage1) => stage1.describe(out)?,
            Err(na) => writeln!(out, "  guest tables not walked: {}", na.reason)?,
        }
        writeln!(
            out,
            "  guest traps so far: HVC {}, doorbell {}",
            TRAPS.hvc.load(Ordering::Relaxed),
            TRAPS.doorbell.load(Ordering::Relaxed)
        )
    }
}

/// Runs one console command for hv's boot log on the UART (see [`console::boot_log`]).
pub fn boot_log(target: &dyn ConsoleTarget, line: &str) -> Verdict {
    uart::with(|out| console::boot_log(target, line, out))
}

/// hv's check of its own tables, through the console engine: `ptdump hv`
/// and `wx hv`, then every region's rights and hv's own W+X ranges.
pub fn self_check(console: &Console, tables: &HvTables, regions: &[Region<'static>]) -> selfcheck::RegionReport {
    let target = Target::boot(console);
    log::info!(
        "self-check: {HV_TABLES_TITLE} page tables, root {:#x}, {}-bit input, dump follows",
        console.hv_root,
        console.hv_format.input_bits()
    );
    boot_log(&target, "ptdump hv");
    uart::with(|out| writeln!(out, "---[ end of {HV_TABLES_TITLE} page tables ]---")).ok();
    let wx = boot_log(&target, "wx hv");
    let checked = tables.for_selfcheck();
    let report = uart::with(|out| selfcheck::check_regions(out, &checked, regions, wx == Verdict::Ok));
    // The UART never fails a write; a failure here would be a bug: refuse to boot then.
    report.unwrap_or_default()
}

/// Where CONSOLE_WRITE text goes: hv's log, the UART taken per piece so a
/// long hypercall never holds it.
struct LogWriter;

impl Write for LogWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        uart::with(|out| out.write_str(s))
    }
}

/// `HVC #0` from the guest (x0 = function id, x1..x6 arguments; results in x0..x3).
pub fn hypercall(regs: &mut Frame) {
    TRAPS.hvc.fetch_add(1, Ordering::Relaxed);
    let call = Call {
        id: regs.x[0],
        args: [regs.x[1], regs.x[2], regs.x[3], regs.x[4], regs.x[5], regs.x[6]],
    };
    // EL0t (SPSR.M = 0): HVC is UNDEFINED at EL0, so this never happens on
    // real hardware; refuse it all the same if it does.
    let privilege = if regs.spsr & 0xf == 0 {
        Privilege::User
    } else {
        Privilege::Kernel
    };
    let (Some(console), Some(s2)) = (CONSOLE.get(), CONSOLE.get().and_then(|c| c.stage2.as_ref())) else {
        regs.x[0..4].copy_from_slice(&[hv::hypercall::ret::NOT_SUPPORTED as u64, 0, 0, 0]);
        return;
    };
    let target = Target::at_trap(console, GuestSnapshot::read(regs));
    let mut mem = RamOnly {
        stage2: Stage2Memory {
            format: &s2.format,
            tables: &console.hv_mem,
            root: s2.root,
            hv_owned: &console.hv_owned,
            phys: &console.ram,
        },
        ram: &console.ram,
    };
    let reply = {
        let mut calls = CALLS.lock();
        let calls = calls.get_or_insert_with(Hypercalls::new);
        let mut cx = CallContext {
            target: &target,
            mem: &mut mem,
            log: &mut LogWriter,
        };
        calls.handle(Conduit::Hvc, privilege, &call, &mut cx)
    };
    // ELR already points past the HVC (it is not a trap that returns to itself).
    regs.x[0..4].copy_from_slice(&reply.regs);
}

/// Whether `ipa` is on the doorbell page.
pub fn is_doorbell(ipa: u64) -> bool {
    CONSOLE.get().is_some() && (doorbell::MMIO_BASE..doorbell::MMIO_BASE + doorbell::MMIO_SIZE).contains(&ipa)
}

/// A load or store on the doorbell page (decoded from the abort's syndrome).
pub fn doorbell_access(regs: &mut Frame, access: &MmioAccess) {
    TRAPS.doorbell.fetch_add(1, Ordering::Relaxed);
    let Some(console) = CONSOLE.get() else {
        return;
    };
    let target = Target::at_trap(console, GuestSnapshot::read(regs));
    let offset = access.ipa - doorbell::MMIO_BASE;
    let mut bell = BELL.lock();
    let bell = bell.get_or_insert_with(Doorbell::new);
    if access.write {
        let value = access.store_value(regs);
        bell.mmio_write(&target, offset, access.width, value);
    } else {
        let value = bell.mmio_read(&target, offset, access.width);
        access.complete_load(regs, value);
    }
}
