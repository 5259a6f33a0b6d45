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
pub mod ept;
pub mod npt;
pub mod stage2;
pub mod x86;

use pagewalk::WalkLimits;

/// A named address: when the dump reaches or crosses `addr` it ends the
/// current line and prints `---[ name ]---`. The first marker is printed at
/// the start of the dump whatever its address (as Linux does). Markers must
/// be sorted by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker<'a> {
    pub addr: u64,
    pub name: &'a str,
}

impl<'a> Marker<'a> {
    pub const fn new(addr: u64, name: &'a str) -> Marker<'a> {
        Marker { addr, name }
    }
}

/// What one dump printed and what the walk met.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Range lines printed (mappings, holes and bad entries; not markers).
    pub lines: u64,
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
