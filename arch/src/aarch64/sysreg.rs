//! System registers the `aarch64-cpu` crate does not name (or names only with
//! a target feature the assembler would insist on), by their encodings, and
//! the ID-register fields hv decides guest state from.

/// Reads a system register by name or `S<op0>_<op1>_C<n>_C<m>_<op2>` encoding.
macro_rules! read_sysreg {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: an MRS of a register hv may read at EL2; no memory or
        // state is changed by reading it.
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack, preserves_flags))
        };
        value
    }};
}

/// Writes a system register by name or encoding.
macro_rules! write_sysreg {
    ($name:literal, $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: callers write EL2 or guest (EL1) control registers with
        // values they computed for that purpose; none of them affects the
        // memory Rust code at EL2 relies on.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) value, options(nostack, preserves_flags)) };
    }};
}

pub(crate) use {read_sysreg, write_sysreg};

/// A 4-bit ID register field.
pub const fn field(reg: u64, shift: u32) -> u64 {
    (reg >> shift) & 0xf
}

/// The CPU features hv's guest setup depends on, read once from the ID registers.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub pa_range: u64,
    pub sve: bool,
    /// 0 none, 1 SME, 2+ SME2.
    pub sme: u64,
    pub sme_fa64: bool,
    pub pauth: bool,
    pub pan: bool,
    pub ssbs: bool,
    pub mte: bool,
    pub nmi: bool,
    pub gcs: bool,
    pub fgt: bool,
    pub hcx: bool,
    pub tcr2: bool,
    pub sctlr2: bool,
    pub s1pie: bool,
    pub s1poe: bool,
    pub mops: bool,
}

impl Features {
    pub fn read() -> Features {
        let pfr0 = read_sysreg!("id_aa64pfr0_el1");
        let pfr1 = read_sysreg!("id_aa64pfr1_el1");
        let mmfr0 = read_sysreg!("id_aa64mmfr0_el1");
        let mmfr1 = read_sysreg!("id_aa64mmfr1_el1");
        // ID_AA64MMFR3_EL1, ID_AA64ISAR2_EL1: RAZ on CPUs older than the fields.
        let mmfr3 = read_sysreg!("S3_0_C0_C7_3");
        let isar1 = read_sysreg!("id_aa64isar1_el1");
        let isar2 = read_sysreg!("S3_0_C0_C6_2");
        let sme = field(pfr1, 24);
        // ID_AA64SMFR0_EL1 is only defined with SME.
        let sme_fa64 = sme != 0 && read_sysreg!("S3_0_C0_C4_5") >> 63 != 0;
        Features {
            pa_range: field(mmfr0, 0),
            sve: field(pfr0, 32) != 0,
            sme,
            sme_fa64,
            // APA, API, GPA, GPI (ISAR1) or APA3, GPA3 (ISAR2).
            pauth: [4, 8, 24, 28].iter().any(|&s| field(isar1, s) != 0)
                || [8, 12].iter().any(|&s| field(isar2, s) != 0),
            pan: field(mmfr1, 20) != 0,
            ssbs: field(pfr1, 4) != 0,
            mte: field(pfr1, 8) != 0,
            nmi: field(pfr1, 36) != 0,
            gcs: field(pfr1, 44) != 0,
            fgt: field(mmfr0, 56) != 0,
            hcx: field(mmfr1, 40) != 0,
            tcr2: field(mmfr3, 0) != 0,
            sctlr2: field(mmfr3, 4) != 0,
            s1pie: field(mmfr3, 8) != 0,
            s1poe: field(mmfr3, 16) != 0,
            mops: field(isar2, 16) != 0,
        }
    }

    /// Physical (and so guest IPA) address bits, capped at the 48 hv's tables encode.
    pub fn pa_bits(&self) -> u32 {
        match self.pa_range {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            _ => 48,
        }
    }
}
