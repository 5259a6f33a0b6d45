//! One page-table walker for every table format hv meets.
//!
//! A [`Format`] is data plus a few methods: its geometry (root level, root
//! entries, how table-index space maps onto addresses) and how one entry
//! decodes. [`walk`] is the only loop that reads page tables; it reports
//! leaves, holes, bad entries and table enter/leave to a [`Visitor`], folds
//! permissions across levels, and treats every entry as untrusted input.
//!
//! Table memory is a trait ([`TableMemory`]); [`MemoryImage`] serves tests and
//! tools, [`ThroughStage2`] reads guest tables by translating each table
//! address through a stage-2 / NPT / EPT walk first.
#![no_std]
#![forbid(unsafe_code)]

pub mod arm64;
pub mod ept;
mod format;
mod memory;
mod translate;
mod types;
mod walk;
pub mod x86;

pub use format::{AddressSpace, BadReason, ConfigError, Decoded, EncodeError, Format, MapAttrs, MemType};
pub use memory::{MemoryImage, MemoryImageMut, ReadFault, TableMemory, TableMemoryMut, ThroughStage2};
pub use translate::{translate, TranslateError, Translation};
pub use types::{Access, AddrRange, Level};
pub use walk::{walk, walk_with, BadEntry, Flow, Hole, Leaf, TableVisit, Visitor, WalkLimits, WalkSummary};

/// Every supported format uses the 4 KiB granule: 512 eight-byte entries a table.
pub const PAGE_SHIFT: u32 = 12;
/// Bytes in one table and in the smallest page.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Index bits resolved at each level.
pub const BITS_PER_LEVEL: u32 = 9;
/// Entries in one (non-concatenated) table.
pub const ENTRIES_PER_TABLE: usize = 512;
