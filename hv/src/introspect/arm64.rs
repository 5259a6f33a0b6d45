//! arm64: the guest's EL1&0 stage-1 from its EL1 system registers.
//!
//! While hv handles a trap from the guest, the EL1 registers still hold the
//! guest's values (hv runs at EL2 with its own EL2 registers), so the arch
//! code reads SCTLR_EL1, TCR_EL1, TTBR0_EL1, TTBR1_EL1 and MAIR_EL1 directly.

use pagewalk::arm64::{Half, Stage1};
use pagewalk::{AddrRange, ConfigError};

use super::{GuestStage1, PartConfig};
use crate::console::{NotAvailable, TableFormat};

/// The guest's translation registers at trap time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arm64GuestRegs {
    pub sctlr_el1: u64,
    pub tcr_el1: u64,
    pub ttbr0_el1: u64,
    pub ttbr1_el1: u64,
    pub mair_el1: u64,
}

/// SCTLR_EL1.M: the EL1&0 stage-1 MMU is on.
pub const SCTLR_M: u64 = 1 << 0;
/// TCR_EL1.EPD0 / EPD1: walks of TTBR0 / TTBR1 fault instead of reading tables.
pub const TCR_EPD0: u64 = 1 << 7;
pub const TCR_EPD1: u64 = 1 << 23;
/// TTBRn_EL1.BADDR with 48-bit output addresses: the ASID (bits 63:48) and
/// CnP (bit 0) are not part of the table address.
pub const TTBR_BADDR_MASK: u64 = 0x0000_ffff_ffff_fffe;

pub const MMU_OFF: NotAvailable = NotAvailable {
    reason: "guest MMU is off (SCTLR_EL1.M = 0): guest addresses are physical, there are no stage-1 tables",
};

fn names(half: Half) -> (&'static str, &'static str) {
    match half {
        Half::Lower => ("TTBR0_EL1", "TTBR0_EL1 walks are disabled (TCR_EL1.EPD0 = 1)"),
        Half::Upper => ("TTBR1_EL1", "TTBR1_EL1 walks are disabled (TCR_EL1.EPD1 = 1)"),
    }
}

/// Why hv cannot walk the half TCR_EL1 describes (static text for the console).
fn refusal(half: Half, error: ConfigError) -> NotAvailable {
    let reason = match (half, error) {
        (Half::Lower, ConfigError::UnsupportedGranule { kib: 16 }) => {
            "TTBR0_EL1 uses the 16K granule (TCR_EL1.TG0); hv walks 4K-granule tables only"
        }
        (Half::Lower, ConfigError::UnsupportedGranule { kib: 64 }) => {
            "TTBR0_EL1 uses the 64K granule (TCR_EL1.TG0); hv walks 4K-granule tables only"
        }
        (Half::Upper, ConfigError::UnsupportedGranule { kib: 16 }) => {
            "TTBR1_EL1 uses the 16K granule (TCR_EL1.TG1); hv walks 4K-granule tables only"
        }
        (Half::Upper, ConfigError::UnsupportedGranule { kib: 64 }) => {
            "TTBR1_EL1 uses the 64K granule (TCR_EL1.TG1); hv walks 4K-granule tables only"
        }
        (Half::Lower, ConfigError::UnsupportedGranule { .. }) => "TCR_EL1.TG0 holds a reserved granule encoding",
        (Half::Upper, ConfigError::UnsupportedGranule { .. }) => "TCR_EL1.TG1 holds a reserved granule encoding",
        (_, ConfigError::Lpa2Unsupported) => {
            "the guest uses 52-bit addresses (FEAT_LPA2, TCR_EL1.DS = 1 or T0SZ/T1SZ below 16); hv walks up to 48 bits"
        }
        (Half::Lower, _) => "TCR_EL1.T0SZ gives a VA size hv cannot walk (4K granule: 25 to 48 bits)",
        (Half::Upper, _) => "TCR_EL1.T1SZ gives a VA size hv cannot walk (4K granule: 25 to 48 bits)",
    };
    NotAvailable { reason }
}

/// `[2^64 - 2^va_bits, 2^64)` for TTBR1, `[0, 2^va_bits)` for TTBR0.
fn half_range(half: Half, va_bits: u32) -> AddrRange {
    let size = 1u64 << va_bits;
    let range = match half {
        Half::Lower => AddrRange::new(0, Some(size)),
        Half::Upper => AddrRange::new(size.wrapping_neg(), None),
    };
    // va_bits is 25..=48 here, so both ranges are non-empty.
    range.unwrap_or(AddrRange::ALL)
}

impl Arm64GuestRegs {
    fn half(&self, half: Half) -> Result<PartConfig, NotAvailable> {
        let (name, disabled) = names(half);
        let (ttbr, epd) = match half {
            Half::Lower => (self.ttbr0_el1, TCR_EPD0),
            Half::Upper => (self.ttbr1_el1, TCR_EPD1),
        };
        let kernel = half == Half::Upper;
        let format = match Stage1::from_tcr_el1(self.tcr_el1, half) {
            Ok(format) => format.with_mair(self.mair_el1),
            // A disabled half's size and granule fields mean nothing.
            Err(_) if self.tcr_el1 & epd != 0 => {
                let range = half_range(half, 48);
                return Ok(PartConfig::new(
                    name,
                    range,
                    Err(NotAvailable { reason: disabled }),
                    kernel,
                ));
            }
            Err(e) => return Err(refusal(half, e)),
        };
        let range = half_range(half, format.va_bits());
        let tables = if self.tcr_el1 & epd != 0 {
            Err(NotAvailable { reason: disabled })
        } else {
            Ok((TableFormat::Arm64Stage1(format), ttbr & TTBR_BADDR_MASK))
        };
        let part = PartConfig::new(name, range, tables, kernel);
        // Linux 6.1's layout is fixed for a 48-bit VA kernel only; other VA
        // sizes move every area, so their TTBR1 keeps just its title.
        Ok(if kernel && format.va_bits() == 48 {
            part.with_layout(&ptdump::arm64::LINUX_6_1_VA48_MARKERS)
        } else {
            part
        })
    }
}

impl GuestStage1 {
    /// The guest's two halves: TTBR0_EL1 (`User Space`) and TTBR1_EL1
    /// (`Kernel Space`, the one `wx` checks, as Linux checks swapper's
    /// kernel range only). A 48-bit TTBR1 also carries Linux 6.1's fixed
    /// markers ([`ptdump::arm64::LINUX_6_1_VA48_MARKERS`]) after its title.
    /// Refused when the MMU is off or a walked half uses a granule or size hv
    /// cannot walk.
    pub fn arm64(regs: &Arm64GuestRegs) -> Result<GuestStage1, NotAvailable> {
        if regs.sctlr_el1 & SCTLR_M == 0 {
            return Err(MMU_OFF);
        }
        Ok(GuestStage1 {
            parts: [regs.half(Half::Lower)?, regs.half(Half::Upper)?],
            pat: None,
        })
    }
}
