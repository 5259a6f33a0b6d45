//! hv's own 4-level page tables, built with `mm::TableBuilder`: an identity
//! map with page-granular permissions (text RX, rodata R+NX, data/bss and
//! stacks RW+NX with unmapped guard pages below the stacks, heap and table
//! pool RW+NX, MMIO uncached+NX) and, with a guest, guest RAM RW+NX at
//! `console::GUEST_RAM_WINDOW` + PA (see `console`). Nothing else is mapped:
//! a stray access faults.

use hv::guest::MemRange;
use hv::mem::TableSpace;
use mm::{MapError, PhysAddr, TableBuilder};
use pagewalk::x86::X86_64;
use pagewalk::{Access, MapAttrs, MemType, PAGE_SIZE};
use x86::controlregs::{cr0, cr0_write, cr3_write, cr4, cr4_write, Cr0, Cr4};
use x86::cpuid::CpuId;
use x86::msr::{rdmsr, IA32_APIC_BASE, IA32_EFER};

use super::boot::ImageLayout;
use super::console::GUEST_RAM_WINDOW;
use super::linux::split_for_2m_pages;

const EFER_NXE: u64 = 1 << 11;
const APIC_BASE_MASK: u64 = 0x000f_ffff_ffff_f000;

/// What CPUID says about the paging features hv uses.
#[derive(Clone, Copy, Debug)]
pub struct CpuPaging {
    pub nx: bool,
    pub smep: bool,
    pub smap: bool,
    pub global_pages: bool,
    pub phys_bits: u8,
}

impl CpuPaging {
    pub fn detect() -> CpuPaging {
        let cpuid = CpuId::new();
        let ext = cpuid.get_extended_processor_and_feature_identifiers();
        let leaf7 = cpuid.get_extended_feature_info();
        CpuPaging {
            nx: ext.as_ref().is_some_and(|e| e.has_execute_disable()),
            smep: leaf7.as_ref().is_some_and(|f| f.has_smep()),
            smap: leaf7.as_ref().is_some_and(|f| f.has_smap()),
            global_pages: cpuid.get_feature_info().is_some_and(|f| f.has_pge()),
            phys_bits: cpuid
                .get_processor_capacity_feature_info()
                .map_or(36, |c| c.physical_address_bits()),
        }
    }
}

/// Everything hv maps into its own address space besides the image.
#[derive(Clone, Copy, Debug)]
pub struct HvRegions {
    pub tables: (u64, u64),
    pub heap: (u64, u64),
    /// SVM control pages: IOPM, MSRPM, the VMCBs, the host save area.
    pub svm: (u64, u64),
    /// The local APIC's MMIO page (from IA32_APIC_BASE).
    pub lapic: Option<u64>,
    /// A page mapped writable and executable on purpose (`selftest=wx`).
    pub selftest_wx_page: Option<u64>,
}

/// The local APIC base the CPU reports, if the APIC is enabled.
pub fn lapic_base() -> Option<u64> {
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU; reading it has no side effects.
    let msr = unsafe { rdmsr(IA32_APIC_BASE) };
    const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
    (msr & APIC_GLOBAL_ENABLE != 0).then_some(msr & APIC_BASE_MASK)
}

/// Builds hv's tables in `space` (the table pool); returns the root for CR3.
/// `guest_ram` is mapped at the window (1 GiB pages only if the CPU has them).
pub fn build(
    format: &X86_64,
    space: &mut TableSpace<'_>,
    image: &ImageLayout,
    regions: &HvRegions,
    guest_ram: &[MemRange],
    gib_pages: bool,
) -> Result<PhysAddr, MapError> {
    let text = MapAttrs::new(Access::READ.union(Access::EXEC_PRIV), MemType::Normal);
    let read_only = MapAttrs::new(Access::READ, MemType::Normal);
    let read_write = MapAttrs::new(Access::READ.union(Access::WRITE), MemType::Normal);
    let device = MapAttrs::new(Access::READ.union(Access::WRITE), MemType::DeviceStrict);

    let tables = TableBuilder::new(format, space)?;
    let mut map = |(start, end): (u64, u64), a: &MapAttrs| tables.map(space, start, start, end - start, a);
    map(image.text, &text)?;
    map(image.rodata, &read_only)?;
    map(image.data, &read_write)?;
    // The stacks, without the guard page below each.
    map(image.boot_stack, &read_write)?;
    map(image.fault_stack, &read_write)?;
    map(regions.tables, &read_write)?;
    map(regions.heap, &read_write)?;
    map(regions.svm, &read_write)?;
    if let Some(lapic) = regions.lapic {
        map((lapic, lapic + PAGE_SIZE), &device)?;
    }
    if let Some(page) = regions.selftest_wx_page {
        // Writable and executable on purpose: the self-check must refuse this.
        let wx = MapAttrs::new(
            Access::READ.union(Access::WRITE).union(Access::EXEC_PRIV),
            MemType::Normal,
        );
        map((page, page + PAGE_SIZE), &wx)?;
    }
    for &ram in guest_ram {
        let mut result = Ok(());
        split_for_2m_pages(ram, gib_pages, |piece| {
            if result.is_ok() {
                result = tables.map(
                    space,
                    GUEST_RAM_WINDOW + piece.start,
                    piece.start,
                    piece.len(),
                    &read_write,
                );
            }
        });
        result?;
    }
    Ok(tables.root())
}

/// Why hv cannot switch to its tables.
#[derive(Clone, Copy, Debug)]
pub enum ActivateError {
    /// W^X needs NX: without it every readable page is executable.
    NoNx,
}

/// Switches to hv's tables and turns on the protections that make them
/// mean what they say: EFER.NXE, CR0.WP, CR4.PGE, and SMEP/SMAP where present.
///
/// # Safety
/// `root` must map everything hv touches from here on: its image (the code
/// running now), its stacks, and every static and pool it uses.
pub unsafe fn activate(root: PhysAddr, cpu: &CpuPaging) -> Result<(), ActivateError> {
    // SAFETY: reading EFER has no side effects.
    let efer = unsafe { rdmsr(IA32_EFER) };
    // The trampoline set NXE when CPUID reported NX; both must agree.
    if !cpu.nx || efer & EFER_NXE == 0 {
        return Err(ActivateError::NoNx);
    }
    // SAFETY: the caller guarantees the new tables map all of hv; CR0.WP
    // makes read-only pages read-only for hv itself; PGE, SMEP and SMAP are
    // enabled only when CPUID reports them, and hv maps no user pages.
    unsafe {
        cr3_write(root.0);
        cr0_write(cr0() | Cr0::CR0_WRITE_PROTECT);
        let mut flags = cr4();
        if cpu.global_pages {
            flags |= Cr4::CR4_ENABLE_GLOBAL_PAGES;
        }
        if cpu.smep {
            flags |= Cr4::CR4_ENABLE_SMEP;
        }
        if cpu.smap {
            flags |= Cr4::CR4_ENABLE_SMAP;
        }
        cr4_write(flags);
    }
    Ok(())
}
