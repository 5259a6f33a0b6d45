//! arm64 stage-1 tables in the format of Linux's `arch/arm64/mm/ptdump.c`
//! (`/sys/kernel/debug/kernel_page_tables`), and its W+X check.
//!
//! ```text
//! 0xffff000000000000-0xffff000000200000           2M PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL-TAGGED
//! ```
//! The memory type column is decoded through the MAIR the [`Stage1`] carries.
//! For the EL2 regime (one privilege level) the `NX`/`x` column shows the
//! effective execute right and `USR`/`UXN` are never shown.

use core::fmt::{self, Write};

use pagewalk::arm64::{Regime, Stage1};
use pagewalk::{AddrRange, Format, TableMemory, WalkLimits};

use crate::engine::{self, Flavor, Mode, Style, WxArch, WxCheck};
use crate::{DumpStats, Marker, WxOptions, WxReport};

fn style(format: &Stage1) -> Style {
    Style {
        flavor: Flavor::Arm64 {
            mair: format.mair(),
            el2: format.regime() == Regime::El2,
        },
        root: format.root_level(),
    }
}

/// Dumps the tables rooted at `root` over `range` (virtual addresses; a TTBR1
/// format reports the top of the 64-bit space).
pub fn dump<W, M>(
    out: &mut W,
    format: &Stage1,
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
    format: &Stage1,
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

/// Linux's arm64 W+X check: a range is W+X when it is writable and
/// executable at the privileged level, and (EL1&0 regime only) non-UXN when
/// EL0 may execute it, judged on effective rights. Prints the first message
/// of each kind and Linux's verdict line.
pub fn check_wx<W, M>(
    out: &mut W,
    format: &Stage1,
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
    format: &Stage1,
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
        arch: WxArch::Arm64 {
            check_uxn: format.regime() == Regime::El1And0,
        },
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
