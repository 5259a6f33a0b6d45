//! AMD nested page tables in x86 ptdump lines (`USR RW PWT PCD PSE PAT GLB NX`
//! columns then `pgd`..`pte`), over guest-physical addresses. Every NPT
//! mapping a guest can use carries `USR`.

use core::fmt::{self, Write};

use pagewalk::x86::Npt;
use pagewalk::{AddrRange, Format, TableMemory, WalkLimits};

use crate::engine::{self, Flavor, Mode, Style};
use crate::{DumpStats, Marker};

/// One marker, at guest-physical 0.
pub const GUEST_PHYSICAL: [Marker<'static>; 1] = [Marker::new(0, "Guest Physical")];

fn style(format: &Npt) -> Style {
    Style {
        flavor: Flavor::X86,
        root: format.root_level(),
    }
}

/// Dumps the tables rooted at `root` over `range` (guest-physical addresses).
pub fn dump<W, M>(
    out: &mut W,
    format: &Npt,
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
    format: &Npt,
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
