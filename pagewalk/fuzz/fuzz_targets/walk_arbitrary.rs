//! Walks arbitrary bytes as page tables. The first bytes choose the format,
//! root, range and table budget; the rest is the memory image. Asserts the
//! walk's invariants: reports in address order, inside the range, disjoint,
//! non-empty; enter/leave balanced; the budget honoured; every reported
//! leaf, hole and malformed entry decodes as reported; `translate` agrees
//! with the walk on each leaf's first byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagewalk::arm64::{Half, Regime, Stage1, Stage2};
use pagewalk::ept::Ept;
use pagewalk::x86::{Npt, X86_64};
use pagewalk::{
    translate, walk_with, AddrRange, BadEntry, BadReason, Decoded, Flow, Format, Hole, Leaf, MemoryImage, TableVisit,
    Visitor, WalkLimits,
};

const BASE: u64 = 0x4000_0000;
const HEADER: usize = 19;

fn format(choice: u8) -> Box<dyn Format> {
    match choice % 14 {
        0 => Box::new(Stage1::new(48, Half::Lower, Regime::El1And0).unwrap()),
        1 => Box::new(Stage1::new(48, Half::Upper, Regime::El1And0).unwrap()),
        2 => Box::new(Stage1::new(39, Half::Upper, Regime::El1And0).unwrap()),
        3 => Box::new(Stage1::new(42, Half::Lower, Regime::El1And0).unwrap()),
        4 => Box::new(Stage1::new(48, Half::Lower, Regime::El2).unwrap()),
        5 => Box::new(Stage2::new(40, 1).unwrap()),
        6 => Box::new(Stage2::new(34, 2).unwrap()),
        7 => Box::new(Stage2::new(44, 0).unwrap()),
        8 => Box::new(X86_64::new(4, true, 46).unwrap()),
        9 => Box::new(X86_64::five_level()),
        10 => Box::new(X86_64::new(4, false, 52).unwrap()),
        11 => Box::new(Npt::new(4, 46).unwrap()),
        12 => Box::new(Ept::new(4, false, 46).unwrap()),
        _ => Box::new(Ept::new(5, true, 52).unwrap()),
    }
}

struct Check<'a> {
    format: &'a dyn Format,
    range: AddrRange,
    /// First address not yet reported; None once a report reached 2^64.
    next: Option<u64>,
    depth: u32,
    leaves: Vec<Leaf>,
}

impl Check<'_> {
    fn span(&mut self, addr: u64, size: u64) {
        assert!(size > 0, "empty report at {addr:#x}");
        let last = addr.checked_add(size - 1).expect("report wraps");
        assert!(
            self.range.contains(addr) && self.range.contains(last),
            "report {addr:#x}+{size:#x} outside {}",
            self.range
        );
        let next = self.next.expect("report after the top of the space");
        assert!(addr >= next, "report {addr:#x} before {next:#x}");
        self.next = last.checked_add(1);
    }
}

impl Visitor for Check<'_> {
    fn leaf(&mut self, l: &Leaf) -> Flow {
        self.span(l.addr, l.size);
        assert!(matches!(self.format.decode(l.level, l.raw), Decoded::Leaf { .. }));
        if self.leaves.len() < 8 {
            self.leaves.push(*l);
        }
        Flow::Continue
    }
    fn hole(&mut self, h: &Hole) -> Flow {
        self.span(h.addr, h.size);
        assert_eq!(self.format.decode(h.level, h.raw), Decoded::Absent);
        Flow::Continue
    }
    fn bad(&mut self, b: &BadEntry) -> Flow {
        self.span(b.addr, b.size);
        match b.reason {
            BadReason::UnreadableTable { .. } | BadReason::TableCycle { .. } | BadReason::BudgetExhausted => {}
            reason => assert_eq!(self.format.decode(b.level, b.raw), Decoded::Bad(reason)),
        }
        Flow::Continue
    }
    fn table_enter(&mut self, t: &TableVisit) -> Flow {
        assert!(t.size > 0);
        self.depth += 1;
        assert!(self.depth <= 5, "table depth {}", self.depth);
        Flow::Continue
    }
    fn table_leave(&mut self, _t: &TableVisit) -> Flow {
        assert!(self.depth > 0, "leave without enter");
        self.depth -= 1;
        Flow::Continue
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let (header, image) = data.split_at(HEADER);
    let format = format(header[0]);
    let format = format.as_ref();
    // Root: a page of the image (or just past it), sometimes misaligned.
    let root = BASE
        + u64::from(header[1] & 0x7) * 0x1000
        + if header[1] & 0x80 != 0 {
            u64::from(header[1] & 0x78)
        } else {
            0
        };
    let start = u64::from_le_bytes(header[2..10].try_into().unwrap());
    let len = u64::from_le_bytes(header[10..18].try_into().unwrap());
    let range = if len == 0 {
        AddrRange::new(start, None).unwrap()
    } else {
        AddrRange::from_len(start, len).unwrap()
    };
    let max_tables = u64::from(header[18] % 64);
    let mem = MemoryImage::new(BASE, image);
    let mut check = Check {
        format,
        range,
        next: Some(range.start),
        depth: 0,
        leaves: Vec::new(),
    };
    let summary = walk_with(format, &mem, root, range, WalkLimits { max_tables }, &mut check);
    assert_eq!(check.depth, 0, "unbalanced enter/leave");
    assert!(summary.tables <= max_tables);
    assert!(!summary.stopped);
    for l in &check.leaves {
        let t = translate(format, &mem, root, l.addr).expect("a walked leaf translates");
        assert_eq!((t.out, t.level, t.raw, t.access), (l.out, l.level, l.raw, l.access));
    }
});
