//! Helpers shared by the pagewalk integration tests: a sparse hand-written
//! table memory, a visitor that records everything, and the invariants every
//! walk report must satisfy.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use pagewalk::{BadEntry, BadReason, Flow, Hole, Leaf, ReadFault, TableMemory, TableVisit, Visitor};

/// Table memory written entry by entry: every 4 KiB frame that holds a
/// written entry exists (zero elsewhere); any other address faults.
#[derive(Default)]
pub struct Tables {
    words: BTreeMap<u64, u64>,
    frames: std::collections::BTreeSet<u64>,
}

impl Tables {
    pub fn new() -> Tables {
        Tables::default()
    }
    /// Writes entry `index` of the table at `table`.
    pub fn set(&mut self, table: u64, index: u64, raw: u64) -> &mut Self {
        let addr = table + index * 8;
        self.words.insert(addr, raw);
        self.frames.insert(addr & !0xfff);
        self
    }
    /// Makes the frame at `table` exist (all zero) without writing an entry.
    pub fn frame(&mut self, table: u64) -> &mut Self {
        self.frames.insert(table & !0xfff);
        self
    }
}

impl TableMemory for Tables {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        if !addr.is_multiple_of(8) || !self.frames.contains(&(addr & !0xfff)) {
            return Err(ReadFault { addr });
        }
        Ok(self.words.get(&addr).copied().unwrap_or(0))
    }
}

/// One report of a walk, in the order it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    Leaf(Leaf),
    Hole(Hole),
    Bad(BadEntry),
    Enter(TableVisit),
    Leave(TableVisit),
}

/// Records every callback.
#[derive(Default)]
pub struct Record(pub Vec<Report>);

impl Record {
    pub fn leaves(&self) -> Vec<Leaf> {
        self.0
            .iter()
            .filter_map(|r| match r {
                Report::Leaf(l) => Some(*l),
                _ => None,
            })
            .collect()
    }
    pub fn holes(&self) -> Vec<Hole> {
        self.0
            .iter()
            .filter_map(|r| match r {
                Report::Hole(h) => Some(*h),
                _ => None,
            })
            .collect()
    }
    pub fn bad(&self) -> Vec<BadEntry> {
        self.0
            .iter()
            .filter_map(|r| match r {
                Report::Bad(b) => Some(*b),
                _ => None,
            })
            .collect()
    }
    pub fn entered(&self) -> Vec<TableVisit> {
        self.0
            .iter()
            .filter_map(|r| match r {
                Report::Enter(t) => Some(*t),
                _ => None,
            })
            .collect()
    }
    /// (addr, size) of every leaf, hole and bad entry, in report order.
    pub fn spans(&self) -> Vec<(u64, u64)> {
        self.0
            .iter()
            .filter_map(|r| match r {
                Report::Leaf(l) => Some((l.addr, l.size)),
                Report::Hole(h) => Some((h.addr, h.size)),
                Report::Bad(b) => Some((b.addr, b.size)),
                _ => None,
            })
            .collect()
    }
}

impl Visitor for Record {
    fn leaf(&mut self, leaf: &Leaf) -> Flow {
        self.0.push(Report::Leaf(*leaf));
        Flow::Continue
    }
    fn hole(&mut self, hole: &Hole) -> Flow {
        self.0.push(Report::Hole(*hole));
        Flow::Continue
    }
    fn bad(&mut self, bad: &BadEntry) -> Flow {
        self.0.push(Report::Bad(*bad));
        Flow::Continue
    }
    fn table_enter(&mut self, table: &TableVisit) -> Flow {
        self.0.push(Report::Enter(*table));
        Flow::Continue
    }
    fn table_leave(&mut self, table: &TableVisit) -> Flow {
        self.0.push(Report::Leave(*table));
        Flow::Continue
    }
}

/// Every leaf, hole and bad report is non-empty, inside `[start, last]`, in
/// strictly increasing address order and disjoint from the previous one.
pub fn assert_ordered_disjoint(spans: &[(u64, u64)], start: u64, last: u64) {
    let mut next_free: Option<u64> = Some(start);
    for &(addr, size) in spans {
        assert!(size > 0, "empty report at {addr:#x}");
        let end_incl = addr
            .checked_add(size - 1)
            .unwrap_or_else(|| panic!("report {addr:#x}+{size:#x} wraps"));
        assert!(
            addr >= start && end_incl <= last,
            "report {addr:#x}+{size:#x} outside range"
        );
        match next_free {
            Some(n) => assert!(
                addr >= n,
                "report {addr:#x} overlaps or precedes the previous one (next {n:#x})"
            ),
            None => panic!("report {addr:#x} after one that reached the top of the space"),
        }
        next_free = end_incl.checked_add(1);
    }
}

/// Table memory that checks every read: 8-byte aligned, and either inside
/// `[base, base + len)` or refused (the walker is told it failed). It keeps
/// the successful and failed reads for later checks.
pub struct Checked<'a> {
    pub base: u64,
    pub bytes: &'a [u8],
    pub ok_reads: RefCell<Vec<u64>>,
    pub failed_reads: RefCell<Vec<u64>>,
}

impl<'a> Checked<'a> {
    pub fn new(base: u64, bytes: &'a [u8]) -> Self {
        Checked {
            base,
            bytes,
            ok_reads: RefCell::new(Vec::new()),
            failed_reads: RefCell::new(Vec::new()),
        }
    }
}

impl TableMemory for Checked<'_> {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        assert_eq!(addr % 8, 0, "unaligned table read at {addr:#x}");
        let off = match addr.checked_sub(self.base) {
            Some(off) if off.saturating_add(8) <= self.bytes.len() as u64 => off as usize,
            _ => {
                self.failed_reads.borrow_mut().push(addr);
                return Err(ReadFault { addr });
            }
        };
        self.ok_reads.borrow_mut().push(addr);
        Ok(u64::from_le_bytes(self.bytes[off..off + 8].try_into().unwrap()))
    }
}

/// The walk-level invariants that hold for any table memory:
/// reports ordered, disjoint and inside the range; table enter/leave
/// balanced; every successful read inside a table the walk entered; every
/// failed read reported as exactly one unreadable-table entry. A root not
/// aligned to `root_align` is refused without a read.
pub fn assert_walk_invariants(
    rec: &Record,
    mem: &Checked,
    (start, last): (u64, u64),
    (root, root_align): (u64, u64),
    table_bytes: impl Fn(u64) -> u64,
) {
    assert_ordered_disjoint(&rec.spans(), start, last);
    let mut depth = 0i32;
    for r in &rec.0 {
        match r {
            Report::Enter(_) => depth += 1,
            Report::Leave(_) => {
                depth -= 1;
                assert!(depth >= 0, "table_leave without table_enter");
            }
            _ => {}
        }
    }
    assert_eq!(depth, 0, "unbalanced table enter/leave");
    let entered = rec.entered();
    for &addr in mem.ok_reads.borrow().iter() {
        let in_table = entered
            .iter()
            .any(|t| addr >= t.table && addr - t.table < table_bytes(t.table));
        // The probe of a table that is then refused for another reason never
        // happens (cycle and budget are checked first), so every successful
        // read belongs to a table the visitor saw.
        assert!(in_table, "read at {addr:#x} outside every entered table");
    }
    let unreadable = rec
        .bad()
        .iter()
        .filter(|b| matches!(b.reason, BadReason::UnreadableTable { .. }))
        .count();
    let misaligned_roots = rec
        .bad()
        .iter()
        .filter(|b| matches!(b.reason, BadReason::UnreadableTable { table } if table == root && root % root_align != 0))
        .count();
    assert_eq!(
        unreadable,
        mem.failed_reads.borrow().len() + misaligned_roots,
        "each failed read must be reported exactly once"
    );
}
