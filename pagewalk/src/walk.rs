//! The walk loop: the only code in hv that reads a page table.

use crate::format::{AddressSpace, BadReason, Decoded, Format};
use crate::memory::TableMemory;
use crate::types::{Access, AddrRange, Level};

/// What the visitor wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// From `table_enter`: do not walk this table (its range is not reported).
    SkipSubtree,
    /// End the walk now.
    Stop,
}

/// A mapping, clipped to the walked range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// First address of the (clipped) mapping.
    pub addr: u64,
    /// Bytes from `addr` (never zero, never past the entry).
    pub size: u64,
    pub level: Level,
    /// Output address of `addr`.
    pub out: u64,
    /// The entry as read.
    pub raw: u64,
    /// Rights after folding every table level above (and the format's root rights).
    pub access: Access,
    /// Where the entry itself lives (in table memory's address space).
    pub entry_addr: u64,
}

/// Unmapped space covered by one non-present entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hole {
    pub addr: u64,
    pub size: u64,
    pub level: Level,
    /// The non-present entry as read (may carry software bits).
    pub raw: u64,
    pub entry_addr: u64,
}

/// An entry the walker refused to follow or could not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadEntry {
    pub addr: u64,
    pub size: u64,
    pub level: Level,
    /// The entry as read (0 when the entry itself was unreadable).
    pub raw: u64,
    pub entry_addr: u64,
    pub reason: BadReason,
}

/// A table about to be walked, or just walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableVisit {
    /// Address of the first byte of the table's walked range.
    pub addr: u64,
    /// Bytes of the walked range this table covers.
    pub size: u64,
    /// Level of the entries in this table.
    pub level: Level,
    /// Where the table lives.
    pub table: u64,
    /// Rights the levels above leave to this table's entries.
    pub allows: Access,
}

/// Receives what a walk finds, in address order.
pub trait Visitor {
    fn leaf(&mut self, leaf: &Leaf) -> Flow;
    fn hole(&mut self, _hole: &Hole) -> Flow {
        Flow::Continue
    }
    fn bad(&mut self, _bad: &BadEntry) -> Flow {
        Flow::Continue
    }
    fn table_enter(&mut self, _table: &TableVisit) -> Flow {
        Flow::Continue
    }
    fn table_leave(&mut self, _table: &TableVisit) -> Flow {
        Flow::Continue
    }
}

/// Bounds on one walk, so that a hostile table (many entries sharing the same
/// subtree) costs a bounded amount of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkLimits {
    /// Tables descended into, the root included; past it a table entry is
    /// reported bad with [`BadReason::BudgetExhausted`].
    pub max_tables: u64,
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits { max_tables: u64::MAX }
    }
}

/// Counts of what a walk reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkSummary {
    pub leaves: u64,
    pub holes: u64,
    pub bad: u64,
    pub tables: u64,
    /// The visitor ended the walk early.
    pub stopped: bool,
}

/// Deepest possible table stack: levels -1..=3.
const MAX_DEPTH: usize = 5;

#[derive(Clone, Copy)]
struct Frame {
    table: u64,
    level: Level,
    /// Index-space offset of entry 0 of this table.
    base: u64,
    next_index: u64,
    last_index: u64,
    allows: Access,
    visit: TableVisit,
}

const EMPTY_VISIT: TableVisit = TableVisit {
    addr: 0,
    size: 0,
    level: Level::PAGE,
    table: 0,
    allows: Access::NONE,
};
const EMPTY_FRAME: Frame = Frame {
    table: 0,
    level: Level::PAGE,
    base: 0,
    next_index: 0,
    last_index: 0,
    allows: Access::NONE,
    visit: EMPTY_VISIT,
};

/// Walks the tables rooted at `root` over `range` (addresses as the format
/// reports them), with no limits.
pub fn walk<F, M, V>(format: &F, mem: &M, root: u64, range: AddrRange, visitor: &mut V) -> WalkSummary
where
    F: Format + ?Sized,
    M: TableMemory + ?Sized,
    V: Visitor + ?Sized,
{
    walk_with(format, mem, root, range, WalkLimits::default(), visitor)
}

/// [`walk`] with explicit limits.
pub fn walk_with<F, M, V>(
    format: &F,
    mem: &M,
    root: u64,
    range: AddrRange,
    limits: WalkLimits,
    visitor: &mut V,
) -> WalkSummary
where
    F: Format + ?Sized,
    M: TableMemory + ?Sized,
    V: Visitor + ?Sized,
{
    let mut walker = Walker {
        format,
        mem,
        limits,
        visitor,
        summary: WalkSummary::default(),
    };
    for segment in segments(format, range).into_iter().flatten() {
        if !walker.walk_segment(root, segment) {
            walker.summary.stopped = true;
            break;
        }
    }
    walker.summary
}

/// The walked range in index-space offsets: at most two pieces (the two
/// canonical halves of x86 virtual addresses).
fn segments<F: Format + ?Sized>(format: &F, range: AddrRange) -> [Option<AddrRange>; 2] {
    let bits = format.input_bits().min(64);
    let span_last = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
    match format.address_space() {
        AddressSpace::Direct => [
            range.intersect(&AddrRange {
                start: 0,
                last: span_last,
            }),
            None,
        ],
        AddressSpace::UpperHalf => {
            let high = !span_last;
            let piece = range.intersect(&AddrRange {
                start: high,
                last: u64::MAX,
            });
            [
                piece.map(|p| AddrRange {
                    start: p.start - high,
                    last: p.last - high,
                }),
                None,
            ]
        }
        AddressSpace::SignExtended => {
            let half_last = span_last >> 1;
            let high = !half_last;
            let low = range.intersect(&AddrRange {
                start: 0,
                last: half_last,
            });
            let upper = range
                .intersect(&AddrRange {
                    start: high,
                    last: u64::MAX,
                })
                .map(|p| AddrRange {
                    start: p.start & span_last,
                    last: p.last & span_last,
                });
            [low, upper]
        }
    }
}

struct Walker<'w, F: ?Sized, M: ?Sized, V: ?Sized> {
    format: &'w F,
    mem: &'w M,
    limits: WalkLimits,
    visitor: &'w mut V,
    summary: WalkSummary,
}

impl<F, M, V> Walker<'_, F, M, V>
where
    F: Format + ?Sized,
    M: TableMemory + ?Sized,
    V: Visitor + ?Sized,
{
    fn addr_of(&self, offset: u64) -> u64 {
        self.format.offset_to_addr(offset)
    }

    /// Walks one index-space piece. Returns false when the visitor stopped.
    fn walk_segment(&mut self, root: u64, seg: AddrRange) -> bool {
        let root_level = self.format.root_level();
        let shift = root_level.shift();
        let last_root = (self.format.root_entries() as u64).saturating_sub(1);
        let first_index = seg.start >> shift;
        let last_index = (seg.last >> shift).min(last_root);
        if first_index > last_index {
            return true;
        }
        let root_allows = self.format.root_allows();
        let visit = TableVisit {
            addr: self.addr_of(seg.start),
            size: seg.last - seg.start + 1,
            level: root_level,
            table: root,
            allows: root_allows,
        };
        // A root of fewer than 512 entries (arm64 stage-1 with a small VA
        // size, e.g. 8 entries for 42 bits) need only be aligned to its own
        // size, as TTBRn_ELx allows (64 bytes at least); every other table is
        // a 4 KiB frame.
        let root_bytes = (self.format.root_entries() as u64 * 8).next_power_of_two();
        let root_align = root_bytes.clamp(64, crate::PAGE_SIZE);
        if let Err(reason) = self.check_table(root, root_align, first_index, &[]) {
            let bad = BadEntry {
                addr: visit.addr,
                size: visit.size,
                level: root_level,
                raw: 0,
                entry_addr: root,
                reason,
            };
            return self.report_bad(&bad);
        }
        match self.visitor.table_enter(&visit) {
            Flow::Continue => {}
            Flow::SkipSubtree => return true,
            Flow::Stop => return false,
        }
        let mut stack = [EMPTY_FRAME; MAX_DEPTH];
        stack[0] = Frame {
            table: root,
            level: root_level,
            base: 0,
            next_index: first_index,
            last_index,
            allows: root_allows,
            visit,
        };
        let mut depth = 1;
        while depth > 0 {
            let frame = stack[depth - 1];
            if frame.next_index > frame.last_index {
                depth -= 1;
                if self.visitor.table_leave(&frame.visit) == Flow::Stop {
                    return false;
                }
                continue;
            }
            stack[depth - 1].next_index += 1;
            let index = frame.next_index;
            let shift = frame.level.shift();
            let entry_start = frame.base + (index << shift);
            let entry_last = entry_start + ((1u64 << shift) - 1);
            let lo = entry_start.max(seg.start);
            let hi = entry_last.min(seg.last);
            let addr = self.addr_of(lo);
            let size = hi - lo + 1;
            let entry_addr = frame.table.wrapping_add(index * 8);
            let level = frame.level;
            let raw = match self.mem.read_u64(entry_addr) {
                Ok(raw) => raw,
                Err(_) => {
                    let reason = BadReason::UnreadableTable { table: frame.table };
                    if !self.report_bad(&BadEntry {
                        addr,
                        size,
                        level,
                        raw: 0,
                        entry_addr,
                        reason,
                    }) {
                        return false;
                    }
                    continue;
                }
            };
            let flow = match self.format.decode(level, raw) {
                Decoded::Absent => {
                    self.summary.holes += 1;
                    self.visitor.hole(&Hole {
                        addr,
                        size,
                        level,
                        raw,
                        entry_addr,
                    })
                }
                Decoded::Bad(reason) => {
                    self.summary.bad += 1;
                    self.visitor.bad(&BadEntry {
                        addr,
                        size,
                        level,
                        raw,
                        entry_addr,
                        reason,
                    })
                }
                Decoded::Leaf { out, access } => {
                    self.summary.leaves += 1;
                    let leaf = Leaf {
                        addr,
                        size,
                        level,
                        out: out.wrapping_add(lo - entry_start),
                        raw,
                        access: access & frame.allows,
                        entry_addr,
                    };
                    self.visitor.leaf(&leaf)
                }
                Decoded::Table { next, allows } => {
                    let child_level = level.next();
                    let first = (lo - entry_start) >> child_level.shift();
                    let check = if level.is_page() || depth >= MAX_DEPTH {
                        Err(BadReason::ReservedDescriptor)
                    } else {
                        self.check_table(next, crate::PAGE_SIZE, first, &stack[..depth])
                    };
                    match check {
                        Err(reason) => {
                            self.summary.bad += 1;
                            self.visitor.bad(&BadEntry {
                                addr,
                                size,
                                level,
                                raw,
                                entry_addr,
                                reason,
                            })
                        }
                        Ok(()) => {
                            let allows = frame.allows & allows;
                            let visit = TableVisit {
                                addr,
                                size,
                                level: child_level,
                                table: next,
                                allows,
                            };
                            let flow = self.visitor.table_enter(&visit);
                            if flow == Flow::Continue {
                                stack[depth] = Frame {
                                    table: next,
                                    level: child_level,
                                    base: entry_start,
                                    next_index: first,
                                    last_index: (hi - entry_start) >> child_level.shift(),
                                    allows,
                                    visit,
                                };
                                depth += 1;
                            }
                            flow
                        }
                    }
                }
            };
            if flow == Flow::Stop {
                return false;
            }
        }
        true
    }

    /// May the walk descend into `table`? Counts it against the budget,
    /// refuses a table that is its own ancestor, and probes the first entry
    /// the walk would read so that an unreadable table is reported once, at
    /// the entry that points to it.
    fn check_table(&mut self, table: u64, align: u64, first_index: u64, ancestors: &[Frame]) -> Result<(), BadReason> {
        if ancestors.iter().any(|f| f.table == table) {
            return Err(BadReason::TableCycle { table });
        }
        if self.summary.tables >= self.limits.max_tables {
            return Err(BadReason::BudgetExhausted);
        }
        if !table.is_multiple_of(align) {
            return Err(BadReason::UnreadableTable { table });
        }
        self.mem
            .read_u64(table.wrapping_add(first_index * 8))
            .map_err(|_| BadReason::UnreadableTable { table })?;
        self.summary.tables += 1;
        Ok(())
    }

    fn report_bad(&mut self, bad: &BadEntry) -> bool {
        self.summary.bad += 1;
        self.visitor.bad(bad) != Flow::Stop
    }
}
