//! Hostile tables: random bytes, cycles, pointers out of memory, garbage
//! in non-present entries, reserved bits, misaligned roots and shared
//! subtrees. The walk must never panic, never read outside what table
//! memory serves without being told the read failed, report every bad
//! entry, and end (bounded by `WalkLimits` where the table is a DAG).

mod common;

use std::collections::BTreeSet;

use common::{assert_walk_invariants, Checked, Record};
use mm::{Arena, TableBuilder};
use pagewalk::arm64::{Half, Regime, Stage1, Stage2};
use pagewalk::ept::Ept;
use pagewalk::x86::{Npt, X86_64};
use pagewalk::{
    walk_with, Access, AddrRange, BadReason, Decoded, Format, Level, MapAttrs, MemType, WalkLimits, WalkSummary,
};
use proptest::prelude::*;

const BASE: u64 = 0x4000_0000;
const PAGE: u64 = 0x1000;

/// Every format, x86 with a 46-bit MAXPHYADDR so that even a 4 KiB PTE has
/// reserved bits to set.
fn formats() -> Vec<(&'static str, Box<dyn Format>)> {
    vec![
        (
            "stage1 lower 48",
            Box::new(Stage1::new(48, Half::Lower, Regime::El1And0).unwrap()),
        ),
        (
            "stage1 upper 39",
            Box::new(Stage1::new(39, Half::Upper, Regime::El1And0).unwrap()),
        ),
        (
            "stage1 lower 42",
            Box::new(Stage1::new(42, Half::Lower, Regime::El1And0).unwrap()),
        ),
        (
            "stage1 el2 48",
            Box::new(Stage1::new(48, Half::Lower, Regime::El2).unwrap()),
        ),
        ("stage2 40 from 1", Box::new(Stage2::new(40, 1).unwrap())),
        ("stage2 34 from 2", Box::new(Stage2::new(34, 2).unwrap())),
        ("stage2 48 from 0", Box::new(Stage2::new(48, 0).unwrap())),
        ("x86 4-level", Box::new(X86_64::new(4, true, 46).unwrap())),
        ("x86 5-level", Box::new(X86_64::new(5, true, 46).unwrap())),
        ("npt", Box::new(Npt::new(4, 46).unwrap())),
        ("ept 4-level", Box::new(Ept::new(4, false, 46).unwrap())),
        ("ept 5-level mbec", Box::new(Ept::new(5, true, 46).unwrap())),
    ]
}

fn root_bytes(f: &dyn Format) -> u64 {
    f.root_entries() as u64 * 8
}

/// Walks with a recording visitor over checked memory and asserts every
/// invariant that holds for any table memory.
fn hostile_walk(f: &dyn Format, mem: &Checked, root: u64, range: AddrRange, max_tables: u64) -> (Record, WalkSummary) {
    let mut rec = Record::default();
    let summary = walk_with(f, mem, root, range, WalkLimits { max_tables }, &mut rec);
    let root_align = root_bytes(f).next_power_of_two().clamp(64, PAGE);
    assert_walk_invariants(&rec, mem, (range.start, range.last), (root, root_align), |t| {
        if t == root {
            // A small root may also be reached as an ordinary 4 KiB table.
            root_bytes(f).max(PAGE)
        } else {
            PAGE
        }
    });
    assert!(summary.tables <= max_tables);
    assert_eq!(summary.leaves, rec.leaves().len() as u64);
    assert_eq!(summary.holes, rec.holes().len() as u64);
    assert_eq!(summary.bad, rec.bad().len() as u64);
    assert_eq!(summary.tables, rec.entered().len() as u64);
    // What was reported is what the format says of the raw entry.
    for l in rec.leaves() {
        assert!(matches!(f.decode(l.level, l.raw), Decoded::Leaf { .. }), "{l:?}");
    }
    for h in rec.holes() {
        assert_eq!(f.decode(h.level, h.raw), Decoded::Absent, "{h:?}");
    }
    for b in rec.bad() {
        match b.reason {
            BadReason::UnreadableTable { .. } | BadReason::TableCycle { .. } | BadReason::BudgetExhausted => {}
            reason => assert_eq!(f.decode(b.level, b.raw), Decoded::Bad(reason), "{b:?}"),
        }
    }
    (rec, summary)
}

// ---------------------------------------------------------------- random bytes

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    /// Random words, many of them rewritten to point at pages of the image
    /// so that the walk goes deep, shares tables and meets cycles.
    #[test]
    fn random_table_memory(
        which in any::<usize>(),
        words in prop::collection::vec(any::<u64>(), 8 * 512),
        pointer_mask in any::<u64>(),
        root_page in 0u64..8,
        root_misalign in prop_oneof![3 => Just(0u64), 1 => (1u64..512).prop_map(|w| w * 8)],
        start in any::<u64>(),
        len in prop_oneof![Just(None), any::<u64>().prop_map(Some)],
        max_tables in 1u64..40,
    ) {
        let all = formats();
        let (_, f) = &all[which % all.len()];
        let f = f.as_ref();
        let mut bytes = Vec::with_capacity(words.len() * 8);
        for (i, w) in words.iter().enumerate() {
            let mut w = *w;
            if pointer_mask >> (i % 64) & 1 == 1 {
                let page = (w >> 20) % 9; // page 8 is one past the image
                w = (w & !0x0000_ffff_ffff_f000) | (BASE + page * PAGE);
            }
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        let root = BASE + root_page * PAGE + root_misalign;
        let range = match len {
            None => AddrRange::new(start, None).unwrap(),
            Some(l) => AddrRange::from_len(start, l.max(1)).unwrap(),
        };
        hostile_walk(f, &Checked::new(BASE, &bytes), root, range, max_tables);
        hostile_walk(f, &Checked::new(BASE, &bytes), root, AddrRange::ALL, max_tables);
    }
}

// ---------------------------------------------------------------- cycles

/// Table memory of `pages` zeroed pages at BASE.
fn image(pages: u64) -> Vec<u8> {
    vec![0; (pages * PAGE) as usize]
}

fn put(bytes: &mut [u8], addr: u64, raw: u64) {
    let off = (addr - BASE) as usize;
    bytes[off..off + 8].copy_from_slice(&raw.to_le_bytes());
}

fn cycle_reports(rec: &Record) -> BTreeSet<u64> {
    rec.bad()
        .iter()
        .filter(|b| matches!(b.reason, BadReason::TableCycle { .. }))
        .map(|b| b.entry_addr)
        .collect()
}

#[test]
fn self_referencing_tables_are_reported_not_followed() {
    for (name, f) in formats() {
        let f = f.as_ref();
        let root_level = f.root_level();
        // The root of up to 16 concatenated tables takes the first 16 pages.
        let root = BASE;
        let (t1, t2) = (BASE + 16 * PAGE, BASE + 17 * PAGE);
        let mut bytes = image(18);
        let l1 = root_level.next();
        let l2 = l1.next();
        let mut planted = BTreeSet::new();
        // root[0] -> root.
        put(&mut bytes, root, f.encode_table(root_level, root));
        planted.insert(root);
        // root[1] -> t1; t1[0] -> root; t1[1] -> t1; t1[2] -> t2 (if t2 can hold a table).
        put(&mut bytes, root + 8, f.encode_table(root_level, t1));
        if !l1.is_page() {
            put(&mut bytes, t1, f.encode_table(l1, root));
            put(&mut bytes, t1 + 8, f.encode_table(l1, t1));
            planted.extend([t1, t1 + 8]);
            if !l2.is_page() {
                // t2[5] -> t1 (two levels up), t2[6] -> t2.
                put(&mut bytes, t1 + 16, f.encode_table(l1, t2));
                put(&mut bytes, t2 + 40, f.encode_table(l2, t1));
                put(&mut bytes, t2 + 48, f.encode_table(l2, t2));
                planted.extend([t2 + 40, t2 + 48]);
            }
        }
        let mem = Checked::new(BASE, &bytes);
        let (rec, _) = hostile_walk(f, &mem, root, AddrRange::ALL, u64::MAX);
        assert_eq!(cycle_reports(&rec), planted, "{name}");
        // Walking from t1 as root is a different tree: t1[1] -> t1 is still a cycle.
        assert!(
            rec.bad()
                .iter()
                .all(|b| matches!(b.reason, BadReason::TableCycle { .. })),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------- out of memory

#[test]
fn pointers_past_the_end_and_misaligned_roots() {
    for (name, f) in formats() {
        let f = f.as_ref();
        let root = BASE;
        let mut bytes = image(16);
        let end = BASE + 16 * PAGE;
        let level = f.root_level();
        let targets = [end, end + PAGE, 1 << 40, BASE - PAGE, 0];
        for (i, t) in targets.iter().enumerate() {
            put(&mut bytes, root + 8 * i as u64, f.encode_table(level, *t));
        }
        let mem = Checked::new(BASE, &bytes);
        let (rec, _) = hostile_walk(f, &mem, root, AddrRange::ALL, u64::MAX);
        let unreadable: Vec<u64> = rec
            .bad()
            .iter()
            .filter_map(|b| match b.reason {
                BadReason::UnreadableTable { table } => Some(table),
                _ => None,
            })
            .collect();
        assert_eq!(unreadable, targets.to_vec(), "{name}");
        assert_eq!(mem.failed_reads.borrow().len(), targets.len(), "{name}");

        // A root whose frame is partly outside memory: entries past the end
        // are reported one by one, each after its failed read.
        let short = &bytes[..(15 * PAGE + 2048) as usize];
        let mem = Checked::new(BASE, short);
        let (rec, _) = hostile_walk(f, &mem, BASE + 15 * PAGE, AddrRange::ALL, u64::MAX);
        let entries = f.root_entries();
        // x86's upper half starts at entry 256: its first read fails, so the
        // whole half is one unreadable root.
        let bad = if f.address_space() == pagewalk::AddressSpace::SignExtended {
            1
        } else {
            entries.saturating_sub(256)
        };
        assert_eq!(rec.holes().len(), entries.min(256), "{name}");
        assert_eq!(rec.bad().len(), bad, "{name}");
        assert_eq!(mem.failed_reads.borrow().len(), bad, "{name}");

        // Misaligned roots are refused without a read.
        for misalign in [8, 0x800] {
            let mem = Checked::new(BASE, &bytes);
            let (rec, s) = hostile_walk(f, &mem, BASE + misalign, AddrRange::ALL, u64::MAX);
            if f.root_entries() >= 512 || misalign % 64 != 0 {
                assert_eq!(s.tables, 0, "{name}");
                assert!(mem.ok_reads.borrow().is_empty());
                assert!(rec
                    .bad()
                    .iter()
                    .all(|b| b.reason == BadReason::UnreadableTable { table: BASE + misalign }));
            }
        }
    }
}

#[test]
fn non_present_entries_with_garbage_are_holes() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (name, f) in formats() {
        let f = f.as_ref();
        let mut bytes = image(16);
        let mut garbage = Vec::new();
        for i in 0..f.root_entries().min(512) as u64 {
            // Clear what makes an entry present in each format.
            let mut raw = next();
            for bit in [0u64, 1, 2, 10] {
                if f.decode(f.root_level(), raw) != Decoded::Absent {
                    raw &= !(1 << bit);
                }
            }
            assert_eq!(f.decode(f.root_level(), raw), Decoded::Absent, "{name} {raw:#x}");
            put(&mut bytes, BASE + i * 8, raw);
            garbage.push(raw);
        }
        let mem = Checked::new(BASE, &bytes);
        let (rec, s) = hostile_walk(f, &mem, BASE, AddrRange::ALL, u64::MAX);
        let raws: Vec<u64> = rec.holes().iter().map(|h| h.raw).collect();
        assert_eq!(raws[..garbage.len()], garbage[..], "{name}");
        let segments = if f.address_space() == pagewalk::AddressSpace::SignExtended {
            2
        } else {
            1
        };
        assert_eq!(s.tables, segments, "{name}");
        assert!(rec.bad().is_empty() && rec.leaves().is_empty(), "{name}");
    }
}

// ---------------------------------------------------------------- planted bad entries

/// Raw values that are bad at `level` in `f`, from a fixed list of
/// malformations (reserved bits, reserved descriptors and memory types,
/// blocks where none may be, EPT write-without-read).
fn bad_values(f: &dyn Format, level: Level) -> Vec<u64> {
    let candidates = [
        // arm64: OA[49:48] RES0 in any descriptor; level-3 0b01; level-0 block; stage-2 table attributes.
        0x1000 | 1 << 48 | 0b11 | 1 << 10,
        0x1000 | 0b01 | 1 << 10,
        0b01 | 1 << 10,
        0x1000 | 0b11 | 1 << 60,
        0x20_1000 | 0b01 | 1 << 10,
        // x86 (46-bit MAXPHYADDR): bit 47 set; PS at the top; misaligned 2 MiB / 1 GiB.
        0x1000 | 1 << 47 | 0b111,
        0x1000 | 0b111 | 1 << 7,
        0x20_2000 | 0b111 | 1 << 7,
        // EPT: write without read; memory type 7; large page at the top.
        0x1000 | 0b010,
        0x1000 | 0b001 | 7 << 3,
        0x1000 | 0b111 | 6 << 3 | 1 << 7,
    ];
    candidates
        .into_iter()
        .filter(|&raw| matches!(f.decode(level, raw), Decoded::Bad(_)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Bad entries planted in a real table (in place of leaves and of holes
    /// at every level) are each reported exactly once, at their entry.
    #[test]
    fn every_planted_bad_entry_is_reported(which in any::<usize>(), picks in prop::collection::vec(any::<(u64, u64)>(), 1..24)) {
        let all = formats();
        let (name, f) = &all[which % all.len()];
        let f = f.as_ref();
        let mut arena = Arena::new(BASE, 1 << 20);
        let b = TableBuilder::new(f, &mut arena).unwrap();
        let span = 1u64 << f.input_bits();
        let va = f.offset_to_addr(span - (1 << 30));
        let attrs = MapAttrs::new(Access::READ, MemType::Normal);
        b.map(&mut arena, va, 0x8000_0000, 600 * PAGE, &attrs).unwrap();
        b.map(&mut arena, va + (1 << 29), 0x8000_0000, 3 * PAGE, &attrs).unwrap();
        let root = b.root().0;
        let mut rec = Record::default();
        walk_with(f, &arena, root, AddrRange::ALL, WalkLimits::default(), &mut rec);
        // Sites: every leaf entry, and every hole entry.
        let mut sites: Vec<(u64, Level)> = rec.leaves().iter().map(|l| (l.entry_addr, l.level)).collect();
        sites.extend(rec.holes().iter().map(|h| (h.entry_addr, h.level)));
        let mut planted = BTreeSet::new();
        let mut bytes = arena.bytes().to_vec();
        for (site, value) in picks {
            let (addr, level) = sites[(site % sites.len() as u64) as usize];
            let values = bad_values(f, level);
            prop_assert!(!values.is_empty(), "{} has no bad value at level {}", name, level);
            put(&mut bytes, addr, values[(value % values.len() as u64) as usize]);
            planted.insert(addr);
        }
        let mem = Checked::new(BASE, &bytes);
        let (rec, _) = hostile_walk(f, &mem, root, AddrRange::ALL, u64::MAX);
        let reported: Vec<u64> = rec.bad().iter().map(|b| b.entry_addr).collect();
        prop_assert_eq!(reported.len(), planted.len(), "{}", name);
        prop_assert_eq!(reported.into_iter().collect::<BTreeSet<_>>(), planted);
    }
}

// ---------------------------------------------------------------- shared subtrees

/// Linux's KASAN zero shadow: every entry of every table points at the same
/// next table, down to one zero page mapped everywhere. 512^depth leaves;
/// the budget must end it.
#[test]
fn shared_subtree_dag_is_bounded_by_the_budget() {
    for (name, f) in formats() {
        let f = f.as_ref();
        let root_tables = f.root_entries().div_ceil(512) as u64;
        let mut bytes = image(root_tables + 6);
        let mut level = f.root_level();
        let mut table = BASE;
        let mut entries = f.root_entries() as u64;
        let mut next = BASE + root_tables * PAGE;
        let attrs = MapAttrs::new(Access::READ, MemType::Normal);
        while !level.is_page() {
            for i in 0..entries {
                put(&mut bytes, table + i * 8, f.encode_table(level, next));
            }
            table = next;
            next += PAGE;
            level = level.next();
            entries = 512;
        }
        let zero_page = f.encode_leaf(Level::PAGE, 0x7000_0000, &attrs).unwrap();
        for i in 0..512 {
            put(&mut bytes, table + i * 8, zero_page);
        }
        for max_tables in [0, 1, 2, 100, 300] {
            let mem = Checked::new(BASE, &bytes);
            let (rec, s) = hostile_walk(f, &mem, BASE, AddrRange::ALL, max_tables);
            assert_eq!(s.tables, max_tables, "{name}");
            let budget = rec
                .bad()
                .iter()
                .filter(|b| b.reason == BadReason::BudgetExhausted)
                .count();
            assert!(budget > 0, "{name} {max_tables}");
            assert_eq!(budget as u64, s.bad, "{name}");
            // Leaves only under the tables entered: at most 512 each.
            assert!(s.leaves <= 512 * max_tables);
        }
    }
}
