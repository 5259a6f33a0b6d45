//! x86-64 tables in the format of Linux's `arch/x86/mm/dump_pagetables.c`,
//! and its W+X check.
//!
//! ```text
//! 0xffffffffa0c00000-0xffffffffa0e00000           2M     RW         PSE     GLB x  pmd
//! ```
//! The walk skips the non-canonical hole: the line before it ends at the top
//! of the lower half and the next one starts at the bottom of the upper half.

use core::fmt::{self, Write};

use pagewalk::x86::X86_64;
use pagewalk::{AddrRange, Format, TableMemory, WalkLimits};

use crate::engine::{self, Flavor, Mode, Style, WxArch, WxCheck};
use crate::{DumpStats, Marker, WxOptions, WxReport};

fn style(format: &X86_64) -> Style {
    Style {
        flavor: Flavor::X86,
        root: format.root_level(),
    }
}

/// Dumps the tables rooted at `root` (CR3 without its flag bits) over `range`.
pub fn dump<W, M>(
    out: &mut W,
    format: &X86_64,
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
    format: &X86_64,
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

/// Linux's x86 W+X check: writable and not NX after folding every level.
/// Prints the first offending mapping and Linux's verdict line.
pub fn check_wx<W, M>(
    out: &mut W,
    format: &X86_64,
    mem: &M,
    root: u64,
    range: AddrRange,
) -> Result<WxReport, fmt::Error>
where
    W: Write + ?Sized,
    M: TableMemory + ?Sized,
{
    check_wx_with(out, format, mem, root, range, &WxOptions::default())
}

/// [`check_wx`] with options (e.g. list every offending range).
pub fn check_wx_with<W, M>(
    out: &mut W,
    format: &X86_64,
    mem: &M,
    root: u64,
    range: AddrRange,
    options: &WxOptions,
) -> Result<WxReport, fmt::Error>
where
    W: Write + ?Sized,
    M: TableMemory + ?Sized,
{
    let check = WxCheck {
        arch: WxArch::X86,
        list_all: options.list_all,
    };
    engine::run(
        out,
        format,
        mem,
        root,
        range,
        &[],
        style(format),
        options.limits,
        Mode::CheckWx(check),
    )
    .map(|(_, report)| report)
}
