//! Emulating one guest load or store that stage-2 aborted (the doorbell page,
//! the GICv3 redistributors): the data abort's syndrome says everything when
//! ISS.ISV = 1 — a single LDR/STR of 1, 2, 4 or 8 bytes to or from one
//! general register, without writeback. Anything else (ISV = 0: load/store
//! pair, writeback, SIMD registers, atomics) is not emulated: hv refuses it.

use super::exceptions::Frame;

/// ISS.ISV: the syndrome bits below are valid.
const ISS_ISV: u64 = 1 << 24;
const ISS_SAS_SHIFT: u64 = 22;
/// ISS.SSE: the load sign-extends.
const ISS_SSE: u64 = 1 << 21;
const ISS_SRT_SHIFT: u64 = 16;
/// ISS.SF: the register is 64-bit (X), not 32-bit (W).
const ISS_SF: u64 = 1 << 15;
/// ISS.S1PTW: the stage-1 table walk, not the instruction, touched the IPA.
const ISS_S1PTW: u64 = 1 << 7;
const ISS_WNR: u64 = 1 << 6;
/// ESR.IL: a 32-bit instruction.
const ESR_IL: u64 = 1 << 25;

/// Why an abort cannot be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotEmulated {
    /// ISS.ISV = 0: no syndrome for the access (pair, writeback, SIMD, ...).
    NoSyndrome,
    /// The guest's stage-1 walk read this IPA as a page table.
    TableWalk,
    /// Not aligned to its own size.
    Misaligned,
}

impl NotEmulated {
    pub fn describe(self) -> &'static str {
        match self {
            NotEmulated::NoSyndrome => "no valid syndrome (ISV = 0: not a single LDR/STR of a general register)",
            NotEmulated::TableWalk => "the guest's stage-1 table walk read it",
            NotEmulated::Misaligned => "misaligned access",
        }
    }
}

/// One decoded load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    pub ipa: u64,
    /// Bytes: 1, 2, 4 or 8.
    pub width: u8,
    pub write: bool,
    /// Register number; 31 is XZR.
    reg: u8,
    sign_extend: bool,
    reg_64: bool,
    /// Bytes to step ELR_EL2 over the instruction.
    instr_len: u64,
}

impl MmioAccess {
    /// Decodes a data abort's syndrome (`esr`) at `ipa`.
    pub fn decode(esr: u64, ipa: u64) -> Result<MmioAccess, NotEmulated> {
        if esr & ISS_S1PTW != 0 {
            return Err(NotEmulated::TableWalk);
        }
        if esr & ISS_ISV == 0 {
            return Err(NotEmulated::NoSyndrome);
        }
        let width = 1u8 << ((esr >> ISS_SAS_SHIFT) & 3);
        if !ipa.is_multiple_of(u64::from(width)) {
            return Err(NotEmulated::Misaligned);
        }
        Ok(MmioAccess {
            ipa,
            width,
            write: esr & ISS_WNR != 0,
            reg: ((esr >> ISS_SRT_SHIFT) & 0x1f) as u8,
            sign_extend: esr & ISS_SSE != 0,
            reg_64: esr & ISS_SF != 0,
            instr_len: if esr & ESR_IL != 0 { 4 } else { 2 },
        })
    }

    fn width_mask(&self) -> u64 {
        if self.width >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * u32::from(self.width))) - 1
        }
    }

    /// The value a store writes: the register's low `width` bytes (XZR is 0).
    pub fn store_value(&self, regs: &Frame) -> u64 {
        let value = if self.reg == 31 {
            0
        } else {
            regs.x[usize::from(self.reg)]
        };
        value & self.width_mask()
    }

    /// Completes a load with `value` (its low `width` bytes): sign- or
    /// zero-extended as the instruction asked, a W register's top half
    /// cleared; XZR discards it.
    pub fn complete_load(&self, regs: &mut Frame, value: u64) {
        let mut value = value & self.width_mask();
        if self.sign_extend && self.width < 8 {
            let shift = 64 - 8 * u32::from(self.width);
            value = (((value << shift) as i64) >> shift) as u64;
        }
        if !self.reg_64 {
            value &= 0xffff_ffff;
        }
        if self.reg != 31 {
            regs.x[usize::from(self.reg)] = value;
        }
    }

    /// Steps the guest over the emulated instruction.
    pub fn step_over(&self, regs: &mut Frame) {
        regs.elr += self.instr_len;
    }
}
