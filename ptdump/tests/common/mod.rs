//! Helpers shared by ptdump's tests: build tables with `mm`, locate entries
//! with `pagewalk::walk`, and patch raw bits the builder cannot express.
#![allow(dead_code)]

pub mod cli;

use mm::{Arena, TableBuilder};
use pagewalk::{
    walk, AddrRange, Flow, Format, Leaf, Level, MapAttrs, TableMemory, TableMemoryMut, TableVisit, Visitor,
};

pub const ARENA_BASE: u64 = 0x4000_0000;

pub fn arena() -> Arena {
    Arena::new(ARENA_BASE, 2 << 20)
}

pub fn range(start: u64, end: Option<u64>) -> AddrRange {
    AddrRange::new(start, end).expect("non-empty range")
}

/// Maps `[va, va + len)` with the builder.
pub fn map<F: Format>(format: &F, arena: &mut Arena, root: u64, va: u64, pa: u64, len: u64, attrs: &MapAttrs) {
    let builder = TableBuilder::with_root(format, mm::PhysAddr(root));
    builder.map(arena, va, pa, len, attrs).expect("map");
}

/// Maps `[va, va + len)` one 4K page at a time, so the range ends up at the
/// page level even where blocks would fit.
pub fn map_pages<F: Format>(format: &F, arena: &mut Arena, root: u64, va: u64, pa: u64, len: u64, attrs: &MapAttrs) {
    for offset in (0..len).step_by(4096) {
        map(format, arena, root, va + offset, pa + offset, 4096, attrs);
    }
}

struct Collect<'v> {
    leaves: &'v mut Vec<Leaf>,
    tables: &'v mut Vec<TableVisit>,
}

impl Visitor for Collect<'_> {
    fn leaf(&mut self, leaf: &Leaf) -> Flow {
        self.leaves.push(*leaf);
        Flow::Continue
    }
    fn table_enter(&mut self, table: &TableVisit) -> Flow {
        self.tables.push(*table);
        Flow::Continue
    }
}

fn visits<F: Format, M: TableMemory>(format: &F, mem: &M, root: u64, r: AddrRange) -> (Vec<Leaf>, Vec<TableVisit>) {
    let (mut leaves, mut tables) = (Vec::new(), Vec::new());
    walk(
        format,
        mem,
        root,
        r,
        &mut Collect {
            leaves: &mut leaves,
            tables: &mut tables,
        },
    );
    (leaves, tables)
}

/// Rewrites every leaf entry covering `[va, va + len)` with `f(raw)`.
pub fn patch_leaves<F: Format>(format: &F, arena: &mut Arena, root: u64, va: u64, len: u64, f: impl Fn(u64) -> u64) {
    let (leaves, _) = visits(format, arena, root, AddrRange::from_len(va, len).unwrap());
    assert!(!leaves.is_empty(), "no leaf at {va:#x}");
    for leaf in leaves {
        arena.write_u64(leaf.entry_addr, f(leaf.raw)).unwrap();
    }
}

/// Where the entry at `level` that covers `va` lives (a table descriptor
/// when `level` is above the leaf).
pub fn entry_addr<F: Format>(format: &F, mem: &Arena, root: u64, va: u64, level: Level) -> u64 {
    let (_, tables) = visits(format, mem, root, AddrRange::from_len(va, 1).unwrap());
    let table = tables
        .iter()
        .find(|t| t.level == level)
        .unwrap_or_else(|| panic!("no table at level {level} for {va:#x}"));
    let index = if level == format.root_level() {
        let bits = format.input_bits();
        let offset = if bits >= 64 { va } else { va & ((1u64 << bits) - 1) };
        offset >> level.shift()
    } else {
        (va >> level.shift()) & 511
    };
    table.table + index * 8
}

pub fn patch(arena: &mut Arena, addr: u64, f: impl Fn(u64) -> u64) {
    let raw = arena.read_u64(addr).unwrap();
    arena.write_u64(addr, f(raw)).unwrap();
}

/// The lines of `text` in order must include `wanted` in order.
pub fn assert_lines_in_order(text: &str, wanted: &str) {
    let mut lines = text.lines();
    for want in wanted.lines() {
        assert!(
            lines.any(|l| l == want),
            "line not found (in order):\n{want}\n--- in ---\n{text}"
        );
    }
}
