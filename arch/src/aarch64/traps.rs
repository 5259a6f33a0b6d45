//! What hv does when the guest traps to EL2 (head.rs `guest_exit` calls
//! [`hv_guest_trap`]): SMC is PSCI, HVC is hv's hypercall interface
//! (`hvconsole::hypercall`), a stage-2 data abort on the doorbell page or a
//! GICv3 redistributor is emulated (`hvconsole::doorbell_access`,
//! `gicr::emulate`), any other stage-2 abort is an access to hv's memory or to
//! an unmapped address (refused: the guest gets a synchronous external abort),
//! anything else is logged with its decoded syndrome and the guest gets an
//! undefined-instruction exception. hv keeps running in every case.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use super::boot::Layout;
use super::exceptions::{exception_class, report_and_stop, FaultStatus, Frame, GuestFrame};
use super::mmio::MmioAccess;
use super::sysreg::{read_sysreg, write_sysreg, Features};
use super::{gicr, hvconsole, psci};

const EC_UNKNOWN: u64 = 0x00;
const EC_HVC64: u64 = 0x16;
const EC_SMC64: u64 = 0x17;
const EC_SYSREG: u64 = 0x18;
const EC_IABT_LOWER: u64 = 0x20;
const EC_IABT_SAME: u64 = 0x21;
const EC_DABT_LOWER: u64 = 0x24;
const EC_DABT_SAME: u64 = 0x25;

const ESR_IL: u64 = 1 << 25;
/// Data abort ISS: write, not read.
const ESR_WNR: u64 = 1 << 6;
/// Abort ISS: the fault happened on the stage-1 table walk.
const ESR_S1PTW: u64 = 1 << 7;
/// DFSC / IFSC of a synchronous external abort.
const FSC_EXTERNAL_ABORT: u64 = 0x10;

/// Vector entries: 16 of them, 4 groups (current EL SP0, current EL SPx,
/// lower EL AArch64, lower EL AArch32) of sync, IRQ, FIQ, SError.
const VECTOR_SYNC_LOWER_AARCH64: u64 = 8;
const VECTOR_SYNC_LOWER_AARCH32: u64 = 12;

/// How many refused accesses and unexpected traps are logged one by one.
const MAX_LOGGED: u64 = 32;
static REFUSALS: AtomicU64 = AtomicU64::new(0);
static UNEXPECTED: AtomicU64 = AtomicU64::new(0);

/// Called by the vectors for every exception from the guest.
#[no_mangle]
extern "C" fn hv_guest_trap(index: u64, frame: &mut GuestFrame) {
    let regs = &mut frame.regs;
    // IRQ, FIQ and SError are routed to EL1 (HCR_EL2.IMO/FMO/AMO clear): never here.
    if index != VECTOR_SYNC_LOWER_AARCH64 && index != VECTOR_SYNC_LOWER_AARCH32 {
        report_and_stop(index, regs);
    }
    hvconsole::note_trap(regs.spsr);
    match (regs.esr >> 26) & 0x3f {
        EC_SMC64 => {
            // A trapped SMC returns to itself: step over it.
            regs.elr += 4;
            psci::handle_guest_smc(regs);
        }
        EC_HVC64 => hvconsole::hypercall(regs),
        EC_DABT_LOWER => stage2_abort(regs, Abort::Data),
        EC_IABT_LOWER => stage2_abort(regs, Abort::Fetch),
        _ => unexpected(regs),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Abort {
    Data,
    Fetch,
}

/// The IPA of a stage-2 abort, when the syndrome gives one: HPFAR_EL2 holds
/// it for translation, access-flag and address-size faults.
fn fault_ipa(regs: &Frame) -> Option<u64> {
    match regs.esr & 0x3c {
        0x00 | 0x04 | 0x08 => {
            let page = (read_sysreg!("hpfar_el2") & 0x0000_0fff_ffff_fff0) << 8;
            // On a stage-1 walk FAR is the VA being translated, not an offset into the IPA page.
            let offset = if regs.esr & ESR_S1PTW != 0 { 0 } else { regs.far & 0xfff };
            Some(page | offset)
        }
        _ => None,
    }
}

/// A stage-2 abort: the guest touched an IPA that is not its RAM or one of
/// the devices it owns. The doorbell page and the GICv3 redistributors are
/// emulated (single loads and stores only); everything else is refused.
fn stage2_abort(regs: &mut Frame, kind: Abort) {
    let ipa = fault_ipa(regs);
    if let (Abort::Data, Some(ipa)) = (kind, ipa) {
        let device = if hvconsole::is_doorbell(ipa) {
            Some(Emulated::Doorbell)
        } else if gicr::contains(ipa) {
            Some(Emulated::Redistributor)
        } else {
            None
        };
        if let Some(device) = device {
            match MmioAccess::decode(regs.esr, ipa) {
                Ok(access) => match device {
                    Emulated::Doorbell => {
                        hvconsole::doorbell_access(regs, &access);
                        access.step_over(regs);
                    }
                    Emulated::Redistributor => gicr::emulate(regs, &access),
                },
                Err(why) => {
                    let n = REFUSALS.fetch_add(1, Ordering::Relaxed);
                    if n < MAX_LOGGED {
                        log::info!(
                            "guest access to {} at IPA {ipa:#x} refused: {} (PC {:#x})",
                            device.name(),
                            why.describe(),
                            regs.elr
                        );
                    }
                    inject_abort(regs, kind);
                }
            }
            return;
        }
    }
    refuse(regs, kind, ipa);
}

/// The devices hv emulates for the guest.
#[derive(Clone, Copy)]
enum Emulated {
    Doorbell,
    Redistributor,
}

impl Emulated {
    fn name(self) -> &'static str {
        match self {
            Emulated::Doorbell => "the doorbell",
            Emulated::Redistributor => "a GIC redistributor",
        }
    }
}

/// Logs a refused access and injects a synchronous external abort.
fn refuse(regs: &mut Frame, kind: Abort, ipa: Option<u64>) {
    let n = REFUSALS.fetch_add(1, Ordering::Relaxed);
    if n < MAX_LOGGED {
        let access = match kind {
            Abort::Fetch => "fetch",
            Abort::Data if regs.esr & ESR_WNR != 0 => "write",
            Abort::Data => "read",
        };
        let el = if regs.spsr & 0xc == 0 { "EL0" } else { "EL1" };
        let pc = regs.elr;
        match ipa {
            Some(ipa) => {
                let owner = if Layout::get().region.contains(ipa) {
                    "hv memory"
                } else {
                    "unmapped"
                };
                log::info!("guest access to IPA {ipa:#x} refused ({owner}) at PC {pc:#x}, {el} {access}");
            }
            None => log::info!(
                "guest access to VA {:#x} refused ({}) at PC {pc:#x}, {el} {access}",
                regs.far,
                FaultStatus(regs.esr & 0x3f)
            ),
        }
    } else if n == MAX_LOGGED {
        log::info!("further refused guest accesses are not logged");
    }
    inject_abort(regs, kind);
}

/// Gives the guest a synchronous external abort for the access that trapped.
fn inject_abort(regs: &mut Frame, kind: Abort) {
    let iss = match kind {
        Abort::Data => FSC_EXTERNAL_ABORT | (regs.esr & ESR_WNR),
        Abort::Fetch => FSC_EXTERNAL_ABORT,
    };
    let class = match kind {
        Abort::Data => (EC_DABT_LOWER, EC_DABT_SAME),
        Abort::Fetch => (EC_IABT_LOWER, EC_IABT_SAME),
    };
    inject(regs, class, (regs.esr & ESR_IL) | iss, Some(regs.far));
}

/// A trap hv has no handler for: logged with its syndrome; the guest gets an
/// undefined-instruction exception (Linux kills the process or oopses).
fn unexpected(regs: &mut Frame) {
    let n = UNEXPECTED.fetch_add(1, Ordering::Relaxed);
    if n < MAX_LOGGED {
        let ec = (regs.esr >> 26) & 0x3f;
        log::info!(
            "unexpected guest trap at PC {:#x}: ESR_EL2 {:#010x}, EC {ec:#04x} {}, ISS {:#x}{}",
            regs.elr,
            regs.esr,
            exception_class(ec),
            regs.esr & 0x1ff_ffff,
            Detail(regs.esr)
        );
        log::info!("the guest gets an undefined-instruction exception");
    } else if n == MAX_LOGGED {
        log::info!("further unexpected guest traps are not logged");
    }
    inject(regs, (EC_UNKNOWN, EC_UNKNOWN), ESR_IL, None);
}

/// Decodes the ISS of the classes worth spelling out.
struct Detail(u64);

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let esr = self.0;
        if (esr >> 26) & 0x3f != EC_SYSREG {
            return Ok(());
        }
        let (op0, op2, op1) = ((esr >> 20) & 3, (esr >> 17) & 7, (esr >> 14) & 7);
        let (crn, rt, crm) = ((esr >> 10) & 0xf, (esr >> 5) & 0x1f, (esr >> 1) & 0xf);
        let reg = format_args!("S{op0}_{op1}_C{crn}_C{crm}_{op2}");
        if esr & 1 != 0 {
            write!(f, ": MRS x{rt}, {reg}")
        } else {
            write!(f, ": MSR {reg}, x{rt}")
        }
    }
}

/// Takes the guest to its EL1 synchronous exception vector as the hardware
/// would: ESR/FAR/ELR/SPSR_EL1 set, PSTATE as on exception entry.
/// `class` is the exception class as seen from a lower EL and from EL1.
fn inject(regs: &mut Frame, class: (u64, u64), iss: u64, far: Option<u64>) {
    let mode = regs.spsr & 0x1f;
    let (offset, from_el0) = if mode & 0x10 != 0 {
        // AArch32 EL0.
        (0x600, true)
    } else {
        match mode & 0xf {
            0b0000 => (0x400, true),
            // EL1t: EL1 on SP_EL0.
            0b0100 => (0x000, false),
            _ => (0x200, false),
        }
    };
    let ec = if from_el0 { class.0 } else { class.1 };
    write_sysreg!("esr_el1", (ec << 26) | iss);
    if let Some(far) = far {
        write_sysreg!("far_el1", far);
    }
    write_sysreg!("elr_el1", regs.elr);
    write_sysreg!("spsr_el1", regs.spsr);
    regs.elr = read_sysreg!("vbar_el1") + offset;
    regs.spsr = el1_entry_pstate(regs.spsr);
}

// PSTATE bits (as laid out in SPSR).
const PSTATE_SSBS: u64 = 1 << 12;
const PSTATE_ALLINT: u64 = 1 << 13;
const PSTATE_PAN: u64 = 1 << 22;
const PSTATE_DIT: u64 = 1 << 24;
const PSTATE_TCO: u64 = 1 << 25;
// SCTLR_EL1 bits that shape PSTATE on exception entry.
const SCTLR_SPAN: u64 = 1 << 23;
const SCTLR_DSSBS: u64 = 1 << 44;
const SCTLR_NMI: u64 = 1 << 61;
const SCTLR_SPINTMASK: u64 = 1 << 62;

/// PSTATE on taking an exception to EL1: EL1h, D/A/I/F masked, and the
/// feature-dependent bits the architecture sets from SCTLR_EL1.
fn el1_entry_pstate(old: u64) -> u64 {
    let features = Features::read();
    let sctlr = read_sysreg!("sctlr_el1");
    let mut pstate = super::el2::SPSR_EL1H_MASKED | (old & PSTATE_DIT);
    if features.pan && sctlr & SCTLR_SPAN == 0 {
        pstate |= PSTATE_PAN;
    }
    if features.ssbs && sctlr & SCTLR_DSSBS != 0 {
        pstate |= PSTATE_SSBS;
    }
    if features.mte {
        pstate |= PSTATE_TCO;
    }
    if features.nmi && sctlr & SCTLR_NMI != 0 && sctlr & SCTLR_SPINTMASK == 0 {
        pstate |= PSTATE_ALLINT;
    }
    pstate
}
