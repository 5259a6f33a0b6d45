//! Page-table dumps in Linux's formats, and Linux's W+X check, for every
//! table format [`pagewalk`] knows.
//!
//! One dumper state machine (Linux `mm/ptdump.c`'s `note_page`) consumes what
//! [`pagewalk::walk`] reports and merges consecutive ranges that display the
//! same attributes at the same level with the same effective rights. A small
//! per-format style decides how a line looks: [`arm64`] (`kernel_page_tables`),
//! [`x86`] (`dump_pagetables`), [`stage2`] (KVM's `stage2_page_tables`),
//! [`npt`] (x86 lines over guest-physical addresses) and [`ept`].
//!
//! Everything streams into a [`core::fmt::Write`]: no heap, constant memory,
//! whatever the size of the tables.
#![no_std]
#![forbid(unsafe_code)]

pub mod arm64;
mod engine;
mod entry_points;
pub mod ept;
pub mod npt;
mod session;
pub mod stage2;
pub mod x86;

use core::fmt;

use pagewalk::WalkLimits;

pub use session::WxSession;

/// A named address: when the dump reaches or crosses `addr` it ends the
/// current line and prints `---[ name ]---`. The first marker is printed at
/// the start of the dump whatever its address (as Linux does). Markers must
/// be sorted by address.
///
/// A marker may cap the lines of its section, as Linux's x86
/// `address_markers[].max_lines` does (the ESPfix area maps one page tens of
/// thousands of times): past the cap range lines are counted, not printed,
/// and Linux's `... N entries skipped ... ` line says how many when the
/// section ends. Build markers with [`Marker::new`] or [`Marker::capped`]
/// (the cap is private so that fields added later break no caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker<'a> {
    pub addr: u64,
    pub name: &'a str,
    max_lines: Option<u32>,
}

impl<'a> Marker<'a> {
    /// A marker whose section prints every line.
    pub const fn new(addr: u64, name: &'a str) -> Marker<'a> {
        Marker {
            addr,
            name,
            max_lines: None,
        }
    }

    /// A marker whose section prints at most `max_lines` range lines
    /// (bad-entry lines are always printed and not counted).
    pub const fn capped(addr: u64, name: &'a str, max_lines: u32) -> Marker<'a> {
        Marker {
            addr,
            name,
            max_lines: Some(max_lines),
        }
    }

    /// The section's line cap, if any.
    pub const fn max_lines(&self) -> Option<u32> {
        self.max_lines
    }
}

/// Linux's per-section line cap (x86 `note_page`): counts the range lines of
/// one marker's section, says which to print, and writes the
/// `... N entries skipped ... ` line for those it held back.
///
/// The dumper uses it, and so can a caller that assembles one dump from
/// several (hv's console, which dumps in slices and joins lines cut by a
/// slice boundary before counting them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineCap {
    max_lines: Option<u32>,
    /// Range lines of the section so far, printed or not.
    lines: u64,
    /// Lines held back since the last skip line.
    skipped: u64,
}

impl LineCap {
    /// The cap of a section whose marker has `max_lines` (`None`: no cap).
    pub const fn new(max_lines: Option<u32>) -> LineCap {
        LineCap {
            max_lines,
            lines: 0,
            skipped: 0,
        }
    }

    /// Counts one range line; `false` when it must not be printed. As in
    /// Linux, the first `max_lines` lines of a section are printed.
    pub fn admit(&mut self) -> bool {
        let print = self.max_lines.is_none_or(|max| self.lines < u64::from(max));
        self.lines += 1;
        if !print {
            self.skipped += 1;
        }
        print
    }

    /// Lines held back and not yet reported by [`LineCap::write_skipped`].
    pub const fn pending(&self) -> u64 {
        self.skipped
    }

    /// Writes Linux's `"... %lu entr%s skipped ... \n"` (trailing blank
    /// included) for the lines held back since the last call, if any. Called
    /// when the section ends, and before a bad-entry line in the middle of a
    /// held-back stretch, so that each skip line counts one contiguous stretch.
    pub fn write_skipped<W: fmt::Write + ?Sized>(&mut self, out: &mut W) -> fmt::Result {
        let n = core::mem::take(&mut self.skipped);
        if n == 0 {
            return Ok(());
        }
        let plural = if n == 1 { "y" } else { "ies" };
        writeln!(out, "... {n} entr{plural} skipped ... ")
    }
}

/// What one dump printed and what the walk met.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Range lines printed (mappings, holes and bad entries; not markers).
    pub lines: u64,
    /// Range lines a capped marker's section held back ([`Marker::capped`]).
    pub skipped: u64,
    /// Marker lines printed.
    pub markers: u64,
    /// Leaf entries the walk reported.
    pub leaves: u64,
    /// Non-present entries the walk reported.
    pub holes: u64,
    /// Malformed or unreadable entries the walk reported (each one has its own line).
    pub bad_entries: u64,
    /// Tables the walk descended into, the root included.
    pub tables: u64,
}

/// Outcome of a W+X check. Pages are counted as Linux counts them: bytes / 4096
/// of each offending merged range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WxReport {
    /// Pages both writable and executable at the privileged level.
    pub wx_pages: u64,
    /// arm64 EL1&0 only: pages EL0 may execute (UXN clear, after folding).
    pub non_uxn_pages: u64,
    /// Entries the check could not judge (malformed, unreadable, over budget).
    pub bad_entries: u64,
}

impl WxReport {
    /// No W+X page, no non-UXN page, and every entry could be checked.
    pub fn passed(&self) -> bool {
        self.wx_pages == 0 && self.non_uxn_pages == 0 && self.bad_entries == 0
    }
}

/// How a W+X check reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WxOptions {
    /// Print every offending range (message plus its dump line), not only the
    /// first of each kind as Linux's `WARN_ONCE` does.
    pub list_all: bool,
    /// Bounds on the walk (a hostile table may share subtrees).
    pub limits: WalkLimits,
}
