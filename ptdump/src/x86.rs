//! x86-64 tables in the format of Linux's `arch/x86/mm/dump_pagetables.c`,
//! and its W+X check.
//!
//! ```text
//! 0xffffffffa0c00000-0xffffffffa0e00000           2M     RW         PSE     GLB x  pmd
//! ```
//! The walk skips the non-canonical hole: the line before it ends at the top
//! of the lower half and the next one starts at the bottom of the upper half.

use pagewalk::x86::X86_64;
use pagewalk::Format;

use crate::engine::{Flavor, Style, WxArch};
use crate::{entry_points, Marker};

/// Lines Linux prints of the ESPfix area before it skips the rest: the area
/// maps each CPU's espfix page at every 16th PTE of one PTE table that every
/// PMD entry of 4 PUD entries points at, about 131,000 lines uncapped.
pub const ESPFIX_MAX_LINES: u32 = 16;

/// The kernel-half markers of Linux 6.1's x86-64 `address_markers[]` whose
/// addresses are fixed constants for a distribution kernel (Debian's config:
/// RANDOMIZE_BASE, RANDOMIZE_MEMORY, MODIFY_LDT_SYSCALL, ESPFIX64 and EFI
/// set, no KASAN), with 4-level paging. After them, the ESPfix cap.
///
/// Not shown, because hv cannot know them from the tables:
/// - `Low Kernel Mapping` (PAGE_OFFSET), `vmalloc() Area` (VMALLOC_START) and
///   `Vmemmap` (VMEMMAP_START): RANDOMIZE_MEMORY (KASLR) moves each base at
///   boot. They all lie between the end of the LDT remap slot
///   (`__PAGE_OFFSET_BASE`, their lowest possible start) and the CPU entry
///   area, so that range gets one marker of its own, named for what it holds.
/// - `KASAN shadow` / `KASAN shadow end`: only in KASAN kernels.
/// - `Fixmap Area` (FIXADDR_START): FIXADDR_TOP minus the size of the
///   fixmap, which depends on the kernel's configuration.
///
/// `Modules` is fixed: MODULES_VADDR is `__START_KERNEL_map` + 1 GiB
/// (KERNEL_IMAGE_SIZE with RANDOMIZE_BASE); KASLR moves the kernel image
/// and the modules inside their areas, not the areas.
pub const LINUX_KERNEL_MARKERS_4_LEVEL: [Marker<'static>; 8] = [
    // LDT_BASE_ADDR: PGD entry -240 (also the end of the guard hole).
    Marker::new(0xffff_8800_0000_0000, "LDT remap"),
    Marker::new(0xffff_8880_0000_0000, KASLR_REGIONS),
    Marker::new(CPU_ENTRY_AREA_BASE, "CPU entry Area"),
    Marker::capped(ESPFIX_BASE_ADDR, "ESPfix Area", ESPFIX_MAX_LINES),
    Marker::new(EFI_VA_END, "EFI Runtime Services"),
    Marker::new(START_KERNEL_MAP, "High Kernel Mapping"),
    Marker::new(MODULES_VADDR, "Modules"),
    Marker::new(MODULES_END, "End Modules"),
];

/// [`LINUX_KERNEL_MARKERS_4_LEVEL`] with 5-level paging (LA57): the LDT
/// remap slot is PGD entry -240 of the 5-level root; the areas from the CPU
/// entry area up are P4D entries, at the same addresses in both modes.
pub const LINUX_KERNEL_MARKERS_5_LEVEL: [Marker<'static>; 8] = [
    Marker::new(0xff10_0000_0000_0000, "LDT remap"),
    Marker::new(0xff11_0000_0000_0000, KASLR_REGIONS),
    Marker::new(CPU_ENTRY_AREA_BASE, "CPU entry Area"),
    Marker::capped(ESPFIX_BASE_ADDR, "ESPfix Area", ESPFIX_MAX_LINES),
    Marker::new(EFI_VA_END, "EFI Runtime Services"),
    Marker::new(START_KERNEL_MAP, "High Kernel Mapping"),
    Marker::new(MODULES_VADDR, "Modules"),
    Marker::new(MODULES_END, "End Modules"),
];

/// hv's name (not Linux's) for the range the randomized bases fall in.
pub const KASLR_REGIONS: &str = "Low Kernel Mapping, vmalloc() Area, Vmemmap (KASLR bases)";
/// `CPU_ENTRY_AREA_PGD << P4D_SHIFT`: P4D entry -4.
pub const CPU_ENTRY_AREA_BASE: u64 = 0xffff_fe00_0000_0000;
/// `ESPFIX_PGD_ENTRY << P4D_SHIFT`: P4D entry -2.
pub const ESPFIX_BASE_ADDR: u64 = 0xffff_ff00_0000_0000;
/// `EFI_VA_END`: -68 GiB.
pub const EFI_VA_END: u64 = 0xffff_ffef_0000_0000;
/// `__START_KERNEL_map`.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// `MODULES_VADDR`.
pub const MODULES_VADDR: u64 = 0xffff_ffff_c000_0000;
/// `MODULES_END`.
pub const MODULES_END: u64 = 0xffff_ffff_ff00_0000;

/// Linux's fixed kernel-half markers for the paging mode (see
/// [`LINUX_KERNEL_MARKERS_4_LEVEL`]), sorted, without the `Kernel Space` title.
pub fn linux_kernel_markers(five_level: bool) -> &'static [Marker<'static>] {
    if five_level {
        &LINUX_KERNEL_MARKERS_5_LEVEL
    } else {
        &LINUX_KERNEL_MARKERS_4_LEVEL
    }
}

fn style(format: &X86_64) -> Style {
    Style {
        flavor: Flavor::X86,
        root: format.root_level(),
    }
}

fn wx_arch(_: &X86_64) -> WxArch {
    WxArch::X86
}

entry_points::dump_entry_points! {
    /// Dumps the tables rooted at `root` (CR3 without its flag bits) over `range`.
    format: X86_64,
    style: style,
}

entry_points::wx_entry_points! {
    /// Linux's x86 W+X check: writable and not NX after folding every level.
    /// Prints the first offending mapping and Linux's verdict line.
    format: X86_64,
    style: style,
    wx_arch: wx_arch,
}
