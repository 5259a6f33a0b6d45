//! The EL2 state a CPU needs to run the guest at EL1 under hv's stage-2,
//! computed once by the boot CPU and loaded by every CPU before its first
//! entry into the guest.
//!
//! The guest owns the platform: physical interrupts go straight to EL1
//! (IMO/FMO clear) where Linux drives the GICv3 through its system-register
//! CPU interface; timers, counters, PMU, FP/SIMD, SVE and SME are not
//! trapped. hv traps only SMC (PSCI: hv must own CPU power) and sees stage-2
//! faults (hv's memory and unmapped addresses) and HVC (hv's hypercalls).

use core::arch::asm;

use spin::Once;

use super::sysreg::{read_sysreg, write_sysreg, Features};

// HCR_EL2
const HCR_VM: u64 = 1 << 0;
/// Set/way invalidation becomes clean+invalidate (as KVM sets it).
const HCR_SWIO: u64 = 1 << 1;
/// Force broadcast of the guest's TLB and I-cache maintenance, barriers inner-shareable.
const HCR_FB: u64 = 1 << 9;
const HCR_BSU_INNER: u64 = 1 << 10;
/// Trap SMC: PSCI goes through hv.
const HCR_TSC: u64 = 1 << 19;
/// EL1 is AArch64.
const HCR_RW: u64 = 1 << 31;
/// Pointer authentication keys and instructions are not trapped.
const HCR_APK: u64 = 1 << 40;
const HCR_API: u64 = 1 << 41;

// VTCR_EL2 (besides T0SZ/SL0 from the stage-2 format)
const VTCR_IRGN0_WBWA: u64 = 1 << 8;
const VTCR_ORGN0_WBWA: u64 = 1 << 10;
const VTCR_SH0_INNER: u64 = 3 << 12;
const VTCR_TG0_4K: u64 = 0 << 14;
const VTCR_PS_SHIFT: u64 = 16;
const VTCR_RES1: u64 = 1 << 31;
/// PS encoding of 48 bits: hv's stage-2 descriptors carry 48-bit output addresses.
const PS_48_BITS: u64 = 5;

/// The VMID hv's one guest runs with.
pub const GUEST_VMID: u64 = 1;

// CPTR_EL2 (non-VHE): RES1 bits 0-7, 9, 13; TZ (8) and TSM (12) are RES1 without SVE/SME.
const CPTR_RES1: u64 = 0x22ff;
const CPTR_TZ: u64 = 1 << 8;
const CPTR_TSM: u64 = 1 << 12;

// CNTHCTL_EL2 (non-VHE): EL1 may read the physical counter and use the physical timer.
const CNTHCTL_EL1PCTEN: u64 = 1 << 0;
const CNTHCTL_EL1PCEN: u64 = 1 << 1;

// ICC_SRE_EL2: system-register interface at EL2, and EL1 may enable its own.
const ICC_SRE_EL2_SRE: u64 = 1 << 0;
const ICC_SRE_EL2_DFB: u64 = 1 << 1;
const ICC_SRE_EL2_DIB: u64 = 1 << 2;
const ICC_SRE_EL2_ENABLE: u64 = 1 << 3;

/// SCTLR_EL1 as booting.rst wants it: MMU and caches off; RES1 bits set.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

// SMCR_EL2
const SMCR_FA64: u64 = 1 << 31;
const SMCR_EZT0: u64 = 1 << 30;

// HCRX_EL2
const HCRX_MSCEN: u64 = 1 << 11;
const HCRX_TCR2EN: u64 = 1 << 14;
const HCRX_SCTLR2EN: u64 = 1 << 15;
const HCRX_GCSEN: u64 = 1 << 22;

// HFGRTR_EL2 / HFGWTR_EL2 "n" bits: these trap when CLEAR, so every one of a
// feature the CPU has is set (the rest of the fine-grained traps stay off).
const FGT_NGCS_EL0: u64 = 1 << 52;
const FGT_NGCS_EL1: u64 = 1 << 53;
const FGT_NSMPRI_EL1: u64 = 1 << 54;
const FGT_NTPIDR2_EL0: u64 = 1 << 55;
const FGT_NPIRE0_EL1: u64 = 1 << 57;
const FGT_NPIR_EL1: u64 = 1 << 58;
const FGT_NPOR_EL0: u64 = 1 << 59;
const FGT_NPOR_EL1: u64 = 1 << 60;

/// EL2 register values for running the guest.
#[derive(Clone, Copy, Debug)]
pub struct GuestEl2 {
    pub hcr: u64,
    pub vtcr: u64,
    pub vttbr: u64,
    pub cptr: u64,
    pub mdcr: u64,
    /// ZCR_EL2 (SVE) and SMCR_EL2 (SME) when the CPU has them.
    pub zcr: Option<u64>,
    pub smcr: Option<u64>,
    pub hcrx: Option<u64>,
    /// HFGRTR_EL2 = HFGWTR_EL2 when the CPU has fine-grained traps.
    pub fgt: Option<u64>,
    pub gic_sysregs: bool,
}

static GUEST_EL2: Once<GuestEl2> = Once::new();

impl GuestEl2 {
    /// The configuration for a stage-2 with geometry `vtcr_geometry` (T0SZ,
    /// SL0) rooted at `stage2_root`, on this CPU's features.
    pub fn new(features: &Features, vtcr_geometry: u64, stage2_root: u64) -> GuestEl2 {
        let mut hcr = HCR_VM | HCR_SWIO | HCR_FB | HCR_BSU_INNER | HCR_TSC | HCR_RW;
        if features.pauth {
            hcr |= HCR_API | HCR_APK;
        }
        let vtcr = vtcr_geometry
            | VTCR_IRGN0_WBWA
            | VTCR_ORGN0_WBWA
            | VTCR_SH0_INNER
            | VTCR_TG0_4K
            | (features.pa_range.min(PS_48_BITS) << VTCR_PS_SHIFT)
            | VTCR_RES1;
        let mut cptr = CPTR_RES1;
        if !features.sve {
            cptr |= CPTR_TZ;
        }
        if features.sme == 0 {
            cptr |= CPTR_TSM;
        }
        // All PMU counters to EL1 and EL0, no debug or PMU traps (HPMN = PMCR_EL0.N).
        let pmu_version = (read_sysreg!("id_aa64dfr0_el1") >> 8) & 0xf;
        let mdcr = if pmu_version != 0 && pmu_version != 0xf {
            (read_sysreg!("pmcr_el0") >> 11) & 0x1f
        } else {
            0
        };
        // Vector lengths stay at 128 bits: the guest's SVE Z and streaming Z
        // registers are then exactly the V registers hv saves on every trap.
        let zcr = features.sve.then_some(0);
        let smcr = (features.sme != 0).then(|| {
            let mut smcr = 0;
            if features.sme_fa64 {
                // Full A64 in streaming mode: lets hv's own SIMD code run if a trap comes in streaming mode.
                smcr |= SMCR_FA64;
            }
            if features.sme >= 2 {
                smcr |= SMCR_EZT0;
            }
            smcr
        });
        let hcrx = features.hcx.then(|| {
            let mut hcrx = 0;
            if features.mops {
                hcrx |= HCRX_MSCEN;
            }
            if features.tcr2 {
                hcrx |= HCRX_TCR2EN;
            }
            if features.sctlr2 {
                hcrx |= HCRX_SCTLR2EN;
            }
            if features.gcs {
                hcrx |= HCRX_GCSEN;
            }
            hcrx
        });
        let fgt = features.fgt.then(|| {
            let mut n_bits = 0;
            if features.sme != 0 {
                n_bits |= FGT_NSMPRI_EL1 | FGT_NTPIDR2_EL0;
            }
            if features.s1pie {
                n_bits |= FGT_NPIR_EL1 | FGT_NPIRE0_EL1;
            }
            if features.s1poe {
                n_bits |= FGT_NPOR_EL1 | FGT_NPOR_EL0;
            }
            if features.gcs {
                n_bits |= FGT_NGCS_EL0 | FGT_NGCS_EL1;
            }
            n_bits
        });
        let gic_sysregs = (read_sysreg!("id_aa64pfr0_el1") >> 24) & 0xf != 0;
        GuestEl2 {
            hcr,
            vtcr,
            vttbr: stage2_root | (GUEST_VMID << 48),
            cptr,
            mdcr,
            zcr,
            smcr,
            hcrx,
            fgt,
            gic_sysregs,
        }
    }

    /// Publishes the configuration for the secondary CPUs (first call wins).
    pub fn publish(self) -> &'static GuestEl2 {
        GUEST_EL2.call_once(|| self)
    }

    pub fn get() -> Option<&'static GuestEl2> {
        GUEST_EL2.get()
    }

    /// Loads the configuration on this CPU and puts its EL1 in the state a
    /// kernel expects at entry. Run with the guest not yet running here.
    pub fn load(&self) {
        write_sysreg!("cptr_el2", self.cptr);
        // SAFETY: synchronises the CPTR write before the SVE/SME registers below.
        unsafe { asm!("isb", options(nostack)) };
        if let Some(zcr) = self.zcr {
            write_sysreg!("S3_4_C1_C2_0", zcr);
        }
        if let Some(smcr) = self.smcr {
            write_sysreg!("S3_4_C1_C2_6", smcr);
        }
        if let Some(hcrx) = self.hcrx {
            write_sysreg!("S3_4_C1_C2_2", hcrx);
        }
        if let Some(fgt) = self.fgt {
            write_sysreg!("S3_4_C1_C1_4", fgt);
            write_sysreg!("S3_4_C1_C1_5", fgt);
        }
        write_sysreg!("mdcr_el2", self.mdcr);
        write_sysreg!("cnthctl_el2", CNTHCTL_EL1PCTEN | CNTHCTL_EL1PCEN);
        write_sysreg!("cntvoff_el2", 0);
        if self.gic_sysregs {
            write_sysreg!(
                "icc_sre_el2",
                ICC_SRE_EL2_SRE | ICC_SRE_EL2_DFB | ICC_SRE_EL2_DIB | ICC_SRE_EL2_ENABLE
            );
        }
        // The guest sees this CPU's own identity.
        write_sysreg!("vpidr_el2", read_sysreg!("midr_el1"));
        write_sysreg!("vmpidr_el2", read_sysreg!("mpidr_el1"));
        write_sysreg!("sctlr_el1", SCTLR_EL1_RESET);
        write_sysreg!("vtcr_el2", self.vtcr);
        write_sysreg!("vttbr_el2", self.vttbr);
        write_sysreg!("hcr_el2", self.hcr);
        // SAFETY: barriers and a TLB invalidation of this CPU's stage-1+2
        // entries for the guest's VMID (VTTBR_EL2 selects it): nothing of
        // hv's own translation is touched.
        unsafe {
            asm!("isb", "tlbi vmalls12e1", "dsb nsh", "isb", options(nostack));
        }
    }
}

/// SPSR for entering the guest: EL1h, all of D, A, I, F masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;
