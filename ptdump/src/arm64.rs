//! arm64 stage-1 tables in the format of Linux's `arch/arm64/mm/ptdump.c`
//! (`/sys/kernel/debug/kernel_page_tables`), and its W+X check.
//!
//! ```text
//! 0xffff000000000000-0xffff000000200000           2M PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL-TAGGED
//! ```
//! The memory type column is decoded through the MAIR the [`Stage1`] carries.
//! For the EL2 regime (one privilege level) the `NX`/`x` column shows the
//! effective execute right and `USR`/`UXN` are never shown.

use pagewalk::arm64::{Regime, Stage1};
use pagewalk::Format;

use crate::engine::{Flavor, Style, WxArch};
use crate::{entry_points, Marker};

/// The markers of Linux 6.1's arm64 `address_markers[]` (arch/arm64/mm/ptdump.c)
/// for a kernel built with 48-bit VAs and 4K pages (Debian's config, no
/// KASAN), where they are fixed constants (memory.h, pgtable.h): PAGE_OFFSET,
/// PAGE_END, MODULES_VADDR/END (128 MiB), VMALLOC_START/END
/// (VMEMMAP_START - 256 MiB), FIXADDR_TOP (VMEMMAP_START - 32 MiB),
/// PCI_IO_START/END (16 MiB ending 8 MiB below VMEMMAP_START) and the 2 TiB
/// vmemmap at `-(1 << 42)`. Sorted, without a `Kernel Space` title.
///
/// Not shown: `Fixmap start` (FIXADDR_START is FIXADDR_TOP minus the size of
/// the fixmap, which depends on the configuration) and the KASAN shadow
/// markers (KASAN kernels only; KASAN also moves PAGE_END). Other VA sizes
/// (39, 42, 47, 52 bits) place everything elsewhere: use these only for a
/// 48-bit TTBR1 space.
pub const LINUX_6_1_VA48_MARKERS: [Marker<'static>; 11] = [
    Marker::new(0xffff_0000_0000_0000, "Linear Mapping start"),
    Marker::new(0xffff_8000_0000_0000, "Linear Mapping end"),
    Marker::new(0xffff_8000_0000_0000, "Modules start"),
    Marker::new(0xffff_8000_0800_0000, "Modules end"),
    Marker::new(0xffff_8000_0800_0000, "vmalloc() area"),
    Marker::new(0xffff_fbff_f000_0000, "vmalloc() end"),
    Marker::new(0xffff_fbff_fe00_0000, "Fixmap end"),
    Marker::new(0xffff_fbff_fe80_0000, "PCI I/O start"),
    Marker::new(0xffff_fbff_ff80_0000, "PCI I/O end"),
    Marker::new(0xffff_fc00_0000_0000, "vmemmap start"),
    Marker::new(0xffff_fe00_0000_0000, "vmemmap end"),
];

fn style(format: &Stage1) -> Style {
    Style {
        flavor: Flavor::Arm64 {
            mair: format.mair(),
            el2: format.regime() == Regime::El2,
        },
        root: format.root_level(),
    }
}

fn wx_arch(format: &Stage1) -> WxArch {
    WxArch::Arm64 {
        check_uxn: format.regime() == Regime::El1And0,
    }
}

entry_points::dump_entry_points! {
    /// Dumps the tables rooted at `root` over `range` (virtual addresses; a TTBR1
    /// format reports the top of the 64-bit space).
    format: Stage1,
    style: style,
}

entry_points::wx_entry_points! {
    /// Linux's arm64 W+X check: a range is W+X when it is writable and
    /// executable at the privileged level, and (EL1&0 regime only) non-UXN when
    /// EL0 may execute it, judged on effective rights. Prints the first message
    /// of each kind and Linux's verdict line.
    format: Stage1,
    style: style,
    wx_arch: wx_arch,
}
