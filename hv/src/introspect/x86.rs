//! x86-64: the guest's stage-1 from CR0, CR3, CR4, EFER and PAT, which the
//! arch code reads from the VMCB save area at trap time.

use pagewalk::x86::X86_64;
use pagewalk::AddrRange;

use super::{GuestStage1, PartConfig};
use crate::console::{NotAvailable, TableFormat, WxNote};

/// The guest's paging registers at trap time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct X86GuestRegs {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub pat: u64,
}

pub const CR0_WP: u64 = 1 << 16;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_LA57: u64 = 1 << 12;
pub const CR4_PCIDE: u64 = 1 << 17;
pub const EFER_LMA: u64 = 1 << 10;
pub const EFER_NXE: u64 = 1 << 11;

/// Where Linux's x86 kernel half starts: the first canonical upper-half
/// address (4-level `0xffff800000000000`, 5-level `0xff00000000000000`).
pub const KERNEL_HALF_4_LEVEL: u64 = 0xffff_8000_0000_0000;
pub const KERNEL_HALF_5_LEVEL: u64 = 0xff00_0000_0000_0000;

pub const PAGING_OFF: NotAvailable = NotAvailable {
    reason: "guest paging is off (CR0.PG = 0): guest addresses are physical, there are no stage-1 tables",
};
pub const NO_PAE: NotAvailable = NotAvailable {
    reason: "the guest uses 32-bit paging without PAE (CR4.PAE = 0); hv walks 4- and 5-level long-mode tables only",
};
pub const NOT_LONG_MODE: NotAvailable = NotAvailable {
    reason: "the guest uses 32-bit PAE paging outside long mode (EFER.LMA = 0); hv walks 4- and 5-level long-mode tables only",
};
pub const BAD_PHYS_BITS: NotAvailable = NotAvailable {
    reason: "the CPU's physical address width is outside 32..=52 bits; hv cannot decode the guest's tables",
};

/// CR0.WP = 0 lets the kernel write read-only pages: Linux never runs so,
/// and the entries' R/W bits no longer say what the kernel may write.
pub const WP_OFF: WxNote = WxNote {
    text: "CR0.WP is 0: the guest kernel may write read-only pages, so every kernel-executable page is in effect W+X",
    fails: true,
};
/// EFER.NXE = 0: nothing is non-executable; Linux then skips its check.
pub const NX_OFF: WxNote = WxNote {
    text: "EFER.NXE is 0: no page is non-executable (Linux skips its W+X check without NX; hv checks anyway)",
    fails: false,
};

/// Linux's names for the PAT memory types (2 and 3 are reserved).
pub fn pat_type_name(memtype: u8) -> &'static str {
    match memtype {
        0 => "UC",
        1 => "WC",
        4 => "WT",
        5 => "WP",
        6 => "WB",
        7 => "UC-",
        _ => "reserved",
    }
}

impl GuestStage1 {
    /// The guest's CR3 tables as two parts: the user half (`User Space`) and
    /// the kernel half (`Kernel Space`, the one `wx` checks), which also
    /// carries Linux's markers whose addresses are fixed for the paging mode
    /// ([`ptdump::x86::linux_kernel_markers`]; the KASLR-randomized bases
    /// of the direct map, vmalloc and vmemmap cannot be known and are not
    /// marked), ESPfix area capped as in Linux.
    ///
    /// `phys_bits` is the CPU's MAXPHYADDR (CPUID 0x80000008 EAX[7:0]).
    ///
    /// Why `wx` checks the kernel half only: Linux's boot-time check walks
    /// init_mm, whose user half is empty, so in effect it judges the kernel
    /// half; the CR3 at trap time may be any process's (hvctl's, through the
    /// doorbell), whose user half legitimately holds that process's mappings,
    /// while every process shares the kernel half. hv also walks Linux's
    /// guard hole (`0xffff800000000000`..`0xffff880000000000`), empty in a
    /// guest that is not Xen's dom0, so the verdict on a stock guest is Linux's.
    pub fn x86(regs: &X86GuestRegs, phys_bits: u32) -> Result<GuestStage1, NotAvailable> {
        if regs.cr0 & CR0_PG == 0 {
            return Err(PAGING_OFF);
        }
        if regs.cr4 & CR4_PAE == 0 {
            return Err(NO_PAE);
        }
        if regs.efer & EFER_LMA == 0 {
            return Err(NOT_LONG_MODE);
        }
        let five_level = regs.cr4 & CR4_LA57 != 0;
        let nxe = regs.efer & EFER_NXE != 0;
        let format = X86_64::new(if five_level { 5 } else { 4 }, nxe, phys_bits).map_err(|_| BAD_PHYS_BITS)?;
        // CR3 bits 11:0 are the PCID (CR4.PCIDE) or the PWT/PCD flags; bits
        // from MAXPHYADDR up are LAM and no-flush controls, not address.
        let addr_mask = ((1u64 << phys_bits) - 1) & !0xfff;
        let root = regs.cr3 & addr_mask;
        let (user_end, kernel_start) = if five_level {
            (1u64 << 56, KERNEL_HALF_5_LEVEL)
        } else {
            (1u64 << 47, KERNEL_HALF_4_LEVEL)
        };
        let tables = Ok((TableFormat::X86_64(format), root));
        let user = AddrRange::new(0, Some(user_end)).ok_or(BAD_PHYS_BITS)?;
        let kernel = AddrRange::new(kernel_start, None).ok_or(BAD_PHYS_BITS)?;
        // Linux's fixed kernel-half markers, with the ESPfix area capped at
        // 16 lines as Linux caps it: uncapped, a Debian guest's ESPfix area
        // alone is ~131,000 lines, far past the console's 1 MiB of output.
        let mut kernel_part = PartConfig::new("CR3 kernel half", kernel, tables, true)
            .with_layout(ptdump::x86::linux_kernel_markers(five_level));
        kernel_part.wx_note = if regs.cr0 & CR0_WP == 0 {
            Some(WP_OFF)
        } else if !nxe {
            Some(NX_OFF)
        } else {
            None
        };
        Ok(GuestStage1 {
            parts: [PartConfig::new("CR3 user half", user, tables, false), kernel_part],
            pat: Some(regs.pat),
        })
    }
}
