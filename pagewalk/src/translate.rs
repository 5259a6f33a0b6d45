use core::fmt;

use crate::format::{BadReason, Format};
use crate::memory::TableMemory;
use crate::types::{Access, AddrRange, Level};
use crate::walk::{walk, BadEntry, Flow, Hole, Leaf, Visitor};

/// Where one address goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Output address of the translated address.
    pub out: u64,
    pub level: Level,
    pub access: Access,
    pub raw: u64,
}

/// Why one address does not translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslateError {
    /// Not mapped: the walk met a non-present entry at this level.
    NotMapped { level: Level },
    /// The walk met a malformed or unreadable entry.
    Bad { level: Level, reason: BadReason },
    /// The address is outside the format's address space (x86 non-canonical, wrong TTBR half).
    OutOfRange,
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TranslateError::NotMapped { level } => write!(f, "not mapped (hole at level {level})"),
            TranslateError::Bad { level, reason } => {
                write!(f, "bad entry at level {level}: {reason}")
            }
            TranslateError::OutOfRange => f.write_str("address outside the table's address space"),
        }
    }
}

struct One(Option<Result<Translation, TranslateError>>);

impl Visitor for One {
    fn leaf(&mut self, leaf: &Leaf) -> Flow {
        self.0 = Some(Ok(Translation {
            out: leaf.out,
            level: leaf.level,
            access: leaf.access,
            raw: leaf.raw,
        }));
        Flow::Stop
    }
    fn hole(&mut self, hole: &Hole) -> Flow {
        self.0 = Some(Err(TranslateError::NotMapped { level: hole.level }));
        Flow::Stop
    }
    fn bad(&mut self, bad: &BadEntry) -> Flow {
        self.0 = Some(Err(TranslateError::Bad {
            level: bad.level,
            reason: bad.reason,
        }));
        Flow::Stop
    }
}

/// Translates one address: a walk of a one-byte range, so that single-address
/// lookups and whole-table walks cannot disagree.
pub fn translate<F, M>(format: &F, mem: &M, root: u64, addr: u64) -> Result<Translation, TranslateError>
where
    F: Format + ?Sized,
    M: TableMemory + ?Sized,
{
    let mut one = One(None);
    walk(
        format,
        mem,
        root,
        AddrRange {
            start: addr,
            last: addr,
        },
        &mut one,
    );
    one.0.unwrap_or(Err(TranslateError::OutOfRange))
}
