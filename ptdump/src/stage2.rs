//! arm64 stage-2 tables in the format of KVM's `stage2_page_tables` debugfs
//! file (`arch/arm64/kvm/ptdump.c`): the level as a number, then `F R W X AF BLK`.
//!
//! ```text
//! ---[ Guest IPA ]---
//! 0x0000000000000000-0x0000000001000000          16M 2
//! 0x0000000001020000-0x0000000001021000           4K 3   R W X AF
//! 0x0000000080000000-0x0000000081200000          18M 2   R W   AF BLK
//! ```
//! `X` is shown when descriptor bit 54 (XN) is clear, as KVM does without
//! FEAT_XNX. Lines never end in blanks (KVM pads the empty `BLK` column).

use core::fmt::{self, Write};

use pagewalk::arm64::Stage2;
use pagewalk::{AddrRange, Format, TableMemory, WalkLimits};

use crate::engine::{self, Flavor, Mode, Style};
use crate::{DumpStats, Marker};

/// KVM's one marker, at IPA 0.
pub const GUEST_IPA: [Marker<'static>; 1] = [Marker::new(0, "Guest IPA")];

fn style(format: &Stage2) -> Style {
    Style {
        flavor: Flavor::Stage2,
        root: format.root_level(),
    }
}

/// Dumps the tables rooted at `root` over `range` (guest-physical addresses).
pub fn dump<W, M>(
    out: &mut W,
    format: &Stage2,
    mem: &M,
    root: u64,
    range: AddrRange,
    markers: &[Marker<'_>],
) -> Result<DumpStats, fmt::Error>
where
    W: Write + ?Sized,
    M: TableMemory + ?Sized,
{
    dump_with_limits(out, format, mem, root, range, markers, WalkLimits::default())
}

/// [`dump`] with a bound on the tables walked.
pub fn dump_with_limits<W, M>(
    out: &mut W,
    format: &Stage2,
    mem: &M,
    root: u64,
    range: AddrRange,
    markers: &[Marker<'_>],
    limits: WalkLimits,
) -> Result<DumpStats, fmt::Error>
where
    W: Write + ?Sized,
    M: TableMemory + ?Sized,
{
    engine::run(
        out,
        format,
        mem,
        root,
        range,
        markers,
        style(format),
        limits,
        Mode::Dump,
    )
    .map(|(stats, _)| stats)
}
