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

/// Entries read from table memory in one go: enough to amortise a bounds
/// check (or a stage-2 translation) over many entries, small enough that the
/// buffers of all five levels (2.5 KiB) fit hv's smallest stack easily.
const BATCH: usize = 64;

/// Which entries of a table are in its batch buffer.
#[derive(Clone, Copy)]
struct Batch {
    /// Index of the buffer's first entry.
    start: u64,
    /// Entries read into the buffer (at most [`BATCH`]).
    len: u32,
    /// The entry right after the buffered ones could not be read: it is
    /// reported when the walk reaches it, and not read again.
    fault_after: bool,
}

const EMPTY_BATCH: Batch = Batch {
    start: 0,
    len: 0,
    fault_after: false,
};

/// A table being walked. Its address, level and the rights left to its
/// entries are those of `visit`.
#[derive(Clone, Copy)]
struct Frame {
    visit: TableVisit,
    /// Index-space offset of entry 0 of this table.
    base: u64,
    next_index: u64,
    last_index: u64,
    batch: Batch,
}

const EMPTY_VISIT: TableVisit = TableVisit {
    addr: 0,
    size: 0,
    level: Level::PAGE,
    table: 0,
    allows: Access::NONE,
};
const EMPTY_FRAME: Frame = Frame {
    visit: EMPTY_VISIT,
    base: 0,
    next_index: 0,
    last_index: 0,
    batch: EMPTY_BATCH,
};

/// What the walk of one table needs of it per entry.
#[derive(Clone, Copy)]
struct TableSpan {
    table: u64,
    level: Level,
    /// Rights the levels above leave to the entries.
    allows: Access,
    /// Index-space offset of entry 0.
    base: u64,
    shift: u32,
    /// Entry size - 1.
    entry_mask: u64,
}

impl TableSpan {
    /// The part of entry `index` inside `seg`: first and last offset, and
    /// where the whole entry starts.
    #[inline(always)]
    fn clip(&self, index: u64, seg: AddrRange) -> (u64, u64, u64) {
        let entry_start = self.base + (index << self.shift);
        let lo = entry_start.max(seg.start);
        let hi = (entry_start + self.entry_mask).min(seg.last);
        (lo, hi, entry_start)
    }
}

/// How a run of entries ended.
enum Run {
    /// Every entry was reported.
    BatchDone,
    /// The visitor ended the walk.
    Stop,
    /// A table pointer, not yet reported.
    Table { raw: u64, next: u64, allows: Access },
}

/// How the walk of one table stopped.
enum Step {
    /// Every entry of the table is done.
    Done,
    /// A child table was pushed on the stack.
    Descend,
    /// The visitor ended the walk.
    Stop,
}

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
        // A range inside one page (a translation) reads one entry a table:
        // batches of one, so that it does not pay for zeroing 2.5 KiB.
        let (mut one, mut many);
        let buffers: &mut [u64] = if segment.start >> crate::PAGE_SHIFT == segment.last >> crate::PAGE_SHIFT {
            one = [0u64; MAX_DEPTH];
            &mut one
        } else {
            many = [0u64; MAX_DEPTH * BATCH];
            &mut many
        };
        if !walker.walk_segment(root, segment, buffers) {
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
    /// `buffers` holds one batch buffer for each level of the table stack,
    /// `buffers.len() / MAX_DEPTH` entries each.
    fn walk_segment(&mut self, root: u64, seg: AddrRange, buffers: &mut [u64]) -> bool {
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
        let mut stack = [EMPTY_FRAME; MAX_DEPTH];
        let stride = buffers.len() / MAX_DEPTH;
        let batch = match self.check_table(root, root_align, first_index, last_index, &[], &mut buffers[..stride]) {
            Ok(batch) => batch,
            Err(reason) => {
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
        };
        match self.visitor.table_enter(&visit) {
            Flow::Continue => {}
            Flow::SkipSubtree => return true,
            Flow::Stop => return false,
        }
        stack[0] = Frame {
            visit,
            base: 0,
            next_index: first_index,
            last_index,
            batch,
        };
        let mut depth = 1;
        while depth > 0 {
            match self.walk_table(&mut stack, buffers, depth, seg) {
                Step::Descend => depth += 1,
                Step::Done => {
                    depth -= 1;
                    if self.visitor.table_leave(&stack[depth].visit) == Flow::Stop {
                        return false;
                    }
                }
                Step::Stop => return false,
            }
        }
        true
    }

    /// Walks the entries of the table on top of the stack (`stack[depth - 1]`)
    /// from where it left off, until the table is done, a child table is
    /// pushed, or the visitor stops the walk.
    fn walk_table(
        &mut self,
        stack: &mut [Frame; MAX_DEPTH],
        buffers: &mut [u64],
        depth: usize,
        seg: AddrRange,
    ) -> Step {
        let frame = stack[depth - 1];
        let stride = buffers.len() / MAX_DEPTH;
        let (own, below) = buffers.split_at_mut(depth * stride);
        let own = &mut own[(depth - 1) * stride..];
        let TableVisit {
            table, level, allows, ..
        } = frame.visit;
        let shift = level.shift();
        let span = TableSpan {
            table,
            level,
            allows,
            base: frame.base,
            shift,
            entry_mask: (1u64 << shift) - 1,
        };
        let mut batch = frame.batch;
        let mut index = frame.next_index;
        while index <= frame.last_index {
            if index.wrapping_sub(batch.start) >= u64::from(batch.len) {
                if batch.fault_after && index == batch.start + u64::from(batch.len) {
                    // Already read once and failed: report it, do not retry.
                    batch = Batch {
                        start: index + 1,
                        len: 0,
                        fault_after: false,
                    };
                    let (lo, hi, _) = span.clip(index, seg);
                    let bad = BadEntry {
                        addr: self.addr_of(lo),
                        size: hi - lo + 1,
                        level,
                        raw: 0,
                        entry_addr: table.wrapping_add(index * 8),
                        reason: BadReason::UnreadableTable { table },
                    };
                    index += 1;
                    if !self.report_bad(&bad) {
                        return Step::Stop;
                    }
                } else {
                    batch = self.read_batch(table, index, frame.last_index, own);
                }
                continue;
            }
            // A batch never reaches past the table's last walked entry.
            let raws = &own[(index - batch.start) as usize..batch.len as usize];
            // Most entries are 4 KiB leaves: a loop of its own lets the
            // format's decode fold away its checks for other levels.
            let run = if level.is_page() {
                self.run_entries(
                    raws,
                    &mut index,
                    &TableSpan {
                        level: Level::PAGE,
                        ..span
                    },
                    seg,
                )
            } else {
                self.run_entries(raws, &mut index, &span, seg)
            };
            let (raw, next, next_allows) = match run {
                Run::BatchDone => continue,
                Run::Stop => return Step::Stop,
                Run::Table { raw, next, allows } => (raw, next, allows),
            };
            // The table entry is `index - 1`.
            let entry_index = index - 1;
            let (lo, hi, entry_start) = span.clip(entry_index, seg);
            let addr = self.addr_of(lo);
            let size = hi - lo + 1;
            let entry_addr = table.wrapping_add(entry_index * 8);
            let child_level = level.next();
            let first = (lo - entry_start) >> child_level.shift();
            let last = (hi - entry_start) >> child_level.shift();
            let check = match below.get_mut(..stride) {
                Some(child_buffer) if !level.is_page() => {
                    self.check_table(next, crate::PAGE_SIZE, first, last, &stack[..depth], child_buffer)
                }
                // No level below (or a table pointer at the 4 KiB level).
                _ => Err(BadReason::ReservedDescriptor),
            };
            let flow = match check {
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
                Ok(child_batch) => {
                    let visit = TableVisit {
                        addr,
                        size,
                        level: child_level,
                        table: next,
                        allows: allows & next_allows,
                    };
                    match self.visitor.table_enter(&visit) {
                        Flow::Continue => {
                            stack[depth - 1].next_index = index;
                            stack[depth - 1].batch = batch;
                            stack[depth] = Frame {
                                visit,
                                base: entry_start,
                                next_index: first,
                                last_index: last,
                                batch: child_batch,
                            };
                            return Step::Descend;
                        }
                        flow => flow,
                    }
                }
            };
            if flow == Flow::Stop {
                return Step::Stop;
            }
        }
        Step::Done
    }

    /// Reports the entries `raws` (from `*index` on) that are not table
    /// pointers, up to the first that is: that one is returned, for the
    /// caller to descend into, with `*index` already past it.
    #[inline(always)]
    fn run_entries(&mut self, raws: &[u64], index: &mut u64, span: &TableSpan, seg: AddrRange) -> Run {
        let level = span.level;
        for &raw in raws {
            let (lo, hi, entry_start) = span.clip(*index, seg);
            let entry_addr = span.table.wrapping_add(*index * 8);
            *index += 1;
            let addr = self.addr_of(lo);
            let size = hi - lo + 1;
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
                    self.visitor.leaf(&Leaf {
                        addr,
                        size,
                        level,
                        out: out.wrapping_add(lo - entry_start),
                        raw,
                        access: access & span.allows,
                        entry_addr,
                    })
                }
                Decoded::Table { next, allows } => return Run::Table { raw, next, allows },
            };
            if flow == Flow::Stop {
                return Run::Stop;
            }
        }
        Run::BatchDone
    }

    /// Reads entries `first..=last` of `table` (a batch at most) into `buffer`.
    #[inline]
    fn read_batch(&self, table: u64, first: u64, last: u64, buffer: &mut [u64]) -> Batch {
        let wanted = (last - first + 1).min(buffer.len() as u64) as usize;
        let read = self
            .mem
            .read_entries(table.wrapping_add(first * 8), &mut buffer[..wanted])
            .min(wanted);
        Batch {
            start: first,
            len: read as u32,
            fault_after: read < wanted,
        }
    }

    /// May the walk descend into `table`? Counts it against the budget,
    /// refuses a table that is its own ancestor, and reads the first batch of
    /// entries the walk would read (`first..=last`), so that a table whose
    /// first entry is unreadable is reported once, at the entry that points
    /// to it.
    fn check_table(
        &mut self,
        table: u64,
        align: u64,
        first: u64,
        last: u64,
        ancestors: &[Frame],
        buffer: &mut [u64],
    ) -> Result<Batch, BadReason> {
        if ancestors.iter().any(|f| f.visit.table == table) {
            return Err(BadReason::TableCycle { table });
        }
        if self.summary.tables >= self.limits.max_tables {
            return Err(BadReason::BudgetExhausted);
        }
        if !table.is_multiple_of(align) {
            return Err(BadReason::UnreadableTable { table });
        }
        let batch = self.read_batch(table, first, last, buffer);
        if batch.len == 0 {
            return Err(BadReason::UnreadableTable { table });
        }
        self.summary.tables += 1;
        Ok(batch)
    }

    fn report_bad(&mut self, bad: &BadEntry) -> bool {
        self.summary.bad += 1;
        self.visitor.bad(bad) != Flow::Stop
    }
}
