//! The resumable W+X check: fed in consecutive pieces, each one a separate
//! walk, it prints exactly what one `check_wx_with` over their union prints.

mod common;

use common::*;
use pagewalk::arm64::{self as a64, Half, Regime, Stage1};
use pagewalk::x86::{self as x, X86_64};
use pagewalk::{
    walk, Access, AddrRange, Flow, Format, Leaf, MapAttrs, MemType, TableMemory, TableMemoryMut, TableVisit, Visitor,
    WalkLimits,
};
use ptdump::{WxOptions, WxReport, WxSession};

const LINEAR: u64 = 0xffff_0000_0000_0000;
const KTEXT: u64 = 0xffff_8000_0800_0000;
const X86_TEXT: u64 = 0xffff_ffff_8000_0000;
/// Outside the test arena: a table pointer there cannot be read.
const NOWHERE: u64 = 0x1000_0000;

fn attrs(access: Access) -> MapAttrs {
    MapAttrs::new(access, MemType::Normal)
}
const RW: Access = Access::READ.union(Access::WRITE);
const RX: Access = Access::READ.union(Access::EXEC_PRIV);
const RWX: Access = RW.union(Access::EXEC_PRIV);

fn options(list_all: bool) -> WxOptions {
    WxOptions {
        list_all,
        ..WxOptions::default()
    }
}

/// Addresses where the walk of `range` enters a table, after its start:
/// the cuts hv's console makes.
fn table_starts<F: Format, M: TableMemory>(format: &F, mem: &M, root: u64, range: AddrRange) -> Vec<u64> {
    struct Starts(Vec<u64>);
    impl Visitor for Starts {
        fn leaf(&mut self, _: &Leaf) -> Flow {
            Flow::Continue
        }
        fn table_enter(&mut self, table: &TableVisit) -> Flow {
            self.0.push(table.addr);
            Flow::Continue
        }
    }
    let mut starts = Starts(Vec::new());
    walk(format, mem, root, range, &mut starts);
    let mut cuts: Vec<u64> = starts.0.into_iter().filter(|&a| a > range.start).collect();
    cuts.dedup();
    cuts
}

/// Feeds `range` to `session` in pieces cut at `cuts` (ascending, inside
/// the range) and finishes it.
fn sliced<F: Format, M: TableMemory>(
    mut session: WxSession<F>,
    mem: &M,
    root: u64,
    range: AddrRange,
    cuts: &[u64],
) -> (String, WxReport) {
    let mut out = String::new();
    let mut start = range.start;
    for &cut in cuts {
        assert!(cut > start && cut <= range.last, "cut {cut:#x}");
        session.feed(&mut out, mem, root, range_of(start, cut - 1)).unwrap();
        start = cut;
    }
    session.feed(&mut out, mem, root, range_of(start, range.last)).unwrap();
    let report = session.finish(&mut out).unwrap();
    (out, report)
}

fn range_of(start: u64, last: u64) -> AddrRange {
    AddrRange { start, last }
}

/// Every way of cutting the check that hv's console may use (each table
/// start alone, all of them at once) and `extra` cut sets must print what
/// the whole check prints.
fn assert_cuts_match<F, M>(
    new_session: impl Fn() -> WxSession<F>,
    whole: &(String, WxReport),
    mem: &M,
    root: u64,
    range: AddrRange,
    extra: &[Vec<u64>],
) -> usize
where
    F: Format,
    M: TableMemory,
{
    let starts = table_starts(new_session().format(), mem, root, range);
    assert!(starts.len() >= 3, "too few tables to cut: {starts:x?}");
    let mut cut_sets: Vec<Vec<u64>> = starts.iter().map(|&s| vec![s]).collect();
    cut_sets.push(starts.clone());
    cut_sets.extend_from_slice(extra);
    for cuts in &cut_sets {
        let got = sliced(new_session(), mem, root, range, cuts);
        assert_eq!(&got, whole, "cuts {cuts:x?}");
    }
    cut_sets.len()
}

/// arm64 kernel tables: a passing linear map and text, a W+X run of 4K pages
/// across two page tables, a second W+X range, a non-UXN page.
fn arm64_tables(failing: bool) -> (Stage1, mm::Arena, u64) {
    let format = Stage1::new(48, Half::Upper, Regime::El1And0).unwrap();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    map(&format, &mut arena, root, LINEAR, 0x4000_0000, 0x40_0000, &attrs(RW));
    map(&format, &mut arena, root, KTEXT, 0x4100_0000, 0x3000, &attrs(RX));
    map_pages(
        &format,
        &mut arena,
        root,
        KTEXT + 0x20_0000,
        0x4200_0000,
        0x2000,
        &attrs(RW),
    );
    if failing {
        // 33 pages from 0x5ff000 to 0x620000: one W+X run over two page tables.
        map_pages(
            &format,
            &mut arena,
            root,
            LINEAR + 0x5f_f000,
            0x4300_0000,
            0x2_1000,
            &attrs(RWX),
        );
        map(
            &format,
            &mut arena,
            root,
            KTEXT + 0x40_0000,
            0x4400_0000,
            0x1000,
            &attrs(RWX),
        );
        map(
            &format,
            &mut arena,
            root,
            KTEXT + 0x60_0000,
            0x4500_0000,
            0x1000,
            &attrs(Access::READ | Access::EXEC),
        );
    }
    (format, arena, root)
}

fn arm64_whole(format: &Stage1, arena: &mm::Arena, root: u64, list_all: bool) -> (String, WxReport) {
    let mut out = String::new();
    let report =
        ptdump::arm64::check_wx_with(&mut out, format, arena, root, AddrRange::ALL, &options(list_all)).unwrap();
    (out, report)
}

#[test]
fn arm64_passing_check_in_pieces() {
    let (format, arena, root) = arm64_tables(false);
    let whole = arm64_whole(&format, &arena, root, false);
    assert_eq!(whole.0, "Checked W+X mappings: passed, no W+X pages found\n");
    let session = || ptdump::arm64::wx_session(&format, &options(false));
    assert_cuts_match(session, &whole, &arena, root, AddrRange::ALL, &[]);
}

#[test]
fn arm64_failing_check_in_pieces_with_and_without_list_all() {
    let (format, arena, root) = arm64_tables(true);
    for list_all in [false, true] {
        let whole = arm64_whole(&format, &arena, root, list_all);
        assert_eq!(
            whole.1,
            WxReport {
                wx_pages: 34,
                non_uxn_pages: 1,
                bad_entries: 0
            }
        );
        // Linux's WARN_ONCE: the first W+X range only, unless list_all.
        let messages = whole.0.matches("Found insecure W+X mapping").count();
        assert_eq!(messages, if list_all { 2 } else { 1 }, "{}", whole.0);
        // Cuts inside the W+X run, at every page and at odd addresses: the
        // run stays one range of 33 pages.
        let run_start = LINEAR + 0x5f_f000;
        let mut extra: Vec<Vec<u64>> = (1..0x21u64).map(|page| vec![run_start + page * 0x1000]).collect();
        extra.push((1..0x21u64).map(|page| run_start + page * 0x1000).collect());
        extra.push(vec![run_start + 0x123, run_start + 0x1_0007, KTEXT + 0x40_0800]);
        let session = || ptdump::arm64::wx_session(&format, &options(list_all));
        let checked = assert_cuts_match(session, &whole, &arena, root, AddrRange::ALL, &extra);
        assert!(checked > 40);
        // hv's console cuts at table starts: one of them is inside the run.
        assert!(table_starts(&format, &arena, root, AddrRange::ALL).contains(&(LINEAR + 0x60_0000)));
    }
    let (listed, _) = arm64_whole(&format, &arena, root, true);
    assert!(
        listed.contains(
            "arm64/mm: Found insecure W+X mapping at address ffff0000005ff000/0xffff0000005ff000\n\
             0xffff0000005ff000-0xffff000000620000         132K PTE       RW x  SHD AF            UXN    MEM/NORMAL\n"
        ),
        "{listed}"
    );
}

#[test]
fn arm64_bad_entries_in_pieces() {
    let (format, mut arena, root) = arm64_tables(true);
    // Two unreadable tables, far apart, so that WARN_ONCE matters across pieces.
    let l1 = entry_addr(&format, &arena, root, LINEAR, pagewalk::Level(0));
    let l1_table = arena.read_u64(l1).unwrap() & 0x0000_ffff_ffff_f000;
    arena.write_u64(l1_table + 8 * 5, NOWHERE | a64::DESC_TABLE).unwrap();
    arena
        .write_u64(root + 8 * 300, (NOWHERE + 0x1000) | a64::DESC_TABLE)
        .unwrap();
    for list_all in [false, true] {
        let whole = arm64_whole(&format, &arena, root, list_all);
        assert_eq!(whole.1.bad_entries, 2);
        let messages = whole.0.matches("Cannot check entry").count();
        assert_eq!(messages, if list_all { 2 } else { 1 }, "{}", whole.0);
        assert!(
            whole
                .0
                .ends_with("FAILED, 34 W+X pages found, 1 non-UXN pages found, 2 bad entries\n"),
            "{}",
            whole.0
        );
        let session = || ptdump::arm64::wx_session(&format, &options(list_all));
        assert_cuts_match(session, &whole, &arena, root, AddrRange::ALL, &[]);
    }
}

/// x86 tables with both halves used: a user W+X page, kernel text, a W+X run
/// of 4K pages across two page tables, and optionally a bad entry.
fn x86_tables(failing: bool, bad: bool) -> (X86_64, mm::Arena, u64) {
    let format = X86_64::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    map(
        &format,
        &mut arena,
        root,
        0x40_0000,
        0x10_0000,
        0x2000,
        &attrs(RX | Access::USER),
    );
    map(&format, &mut arena, root, X86_TEXT, 0x100_0000, 0x20_0000, &attrs(RX));
    map(
        &format,
        &mut arena,
        root,
        X86_TEXT + 0x20_0000,
        0x120_0000,
        0x1000,
        &attrs(RW),
    );
    for i in 0..6u64 {
        let va = 0xffff_8880_0000_0000 + i * 0x20_0000;
        map(
            &format,
            &mut arena,
            root,
            va,
            0x200_0000 + i * 0x1000,
            0x1000,
            &attrs(RW),
        );
    }
    if failing {
        map(
            &format,
            &mut arena,
            root,
            0x1000,
            0x20_0000,
            0x1000,
            &attrs(RWX | Access::USER),
        );
        map_pages(
            &format,
            &mut arena,
            root,
            X86_TEXT + 0x5f_e000,
            0x300_0000,
            0x4000,
            &attrs(RWX | Access::EXEC),
        );
    }
    if bad {
        arena.write_u64(root + 400 * 8, x::PRESENT | x::PSE).unwrap();
        arena.write_u64(root + 300 * 8, x::PRESENT | x::RW | NOWHERE).unwrap();
    }
    (format, arena, root)
}

fn x86_whole(format: &X86_64, arena: &mm::Arena, root: u64, list_all: bool) -> (String, WxReport) {
    let mut out = String::new();
    let report = ptdump::x86::check_wx_with(&mut out, format, arena, root, AddrRange::ALL, &options(list_all)).unwrap();
    (out, report)
}

#[test]
fn x86_checks_in_pieces_pass_fail_and_bad() {
    for (failing, bad) in [(false, false), (true, false), (true, true), (false, true)] {
        let (format, arena, root) = x86_tables(failing, bad);
        for list_all in [false, true] {
            let whole = x86_whole(&format, &arena, root, list_all);
            assert_eq!(whole.1.wx_pages, if failing { 5 } else { 0 }, "{}", whole.0);
            assert_eq!(whole.1.bad_entries, if bad { 2 } else { 0 }, "{}", whole.0);
            if !failing && !bad {
                assert_eq!(whole.0, "x86/mm: Checked W+X mappings: passed, no W+X pages found.\n");
            }
            let run_start = X86_TEXT + 0x5f_e000;
            let mut extra = vec![
                // In the non-canonical hole: one piece per half.
                vec![0x8000_0000_0000],
                vec![0x7fff_ffff_f000, 0xffff_8000_0000_0000],
            ];
            if !bad {
                extra.extend((1..4u64).map(|page| vec![run_start + page * 0x1000]));
                extra.push(vec![run_start + 0x1800, run_start + 0x2001, run_start + 0x3fff]);
            }
            let session = || ptdump::x86::wx_session(&format, &options(list_all));
            assert_cuts_match(session, &whole, &arena, root, AddrRange::ALL, &extra);
        }
    }
    let (format, arena, root) = x86_tables(true, false);
    // hv's console cuts at table starts: one of them is inside the W+X run.
    assert!(table_starts(&format, &arena, root, AddrRange::ALL).contains(&(X86_TEXT + 0x60_0000)));
    let (listed, _) = x86_whole(&format, &arena, root, true);
    assert!(
        listed.contains(
            "x86/mm: Found insecure W+X mapping at address ffffffff805fe000/0xffffffff805fe000\n\
             0xffffffff805fe000-0xffffffff80602000          16K     RW                 GLB x  pte\n"
        ),
        "{listed}"
    );
}

#[test]
fn each_feed_is_one_walk_within_its_limits() {
    let (format, arena, root) = x86_tables(true, false);
    let whole = x86_whole(&format, &arena, root, true);
    let starts = table_starts(&format, &arena, root, AddrRange::ALL);
    let mut session = ptdump::x86::wx_session(&format, &options(true));
    let mut out = String::new();
    let mut start = 0;
    let mut walked = 0;
    for &cut in &starts {
        let summary = session.feed(&mut out, &arena, root, range_of(start, cut - 1)).unwrap();
        // A piece from one table start to the next enters that table and
        // the tables on the path down to it: at most the depth.
        assert!(summary.tables <= 4, "{summary:?}");
        walked += summary.tables;
        start = cut;
    }
    session.feed(&mut out, &arena, root, range_of(start, u64::MAX)).unwrap();
    assert!(session.tables_walked() > walked);
    assert_eq!(session.report().bad_entries, 0);
    let report = session.finish(&mut out).unwrap();
    assert_eq!((out, report), whole);

    // A feed out of budget reads nothing and fails the check, saying why.
    let mut session = ptdump::arm64::wx_session(
        &Stage1::new(48, Half::Upper, Regime::El1And0).unwrap(),
        &WxOptions::default(),
    );
    let mut out = String::new();
    let none = WalkLimits { max_tables: 0 };
    let summary = session
        .feed_with_limits(&mut out, &arena, 0, AddrRange::ALL, none)
        .unwrap();
    assert_eq!(summary.tables, 0);
    let report = session.finish(&mut out).unwrap();
    assert_eq!(report.bad_entries, 1);
    assert_eq!(
        out,
        "arm64/mm: Cannot check entry at address ffff000000000000/0xffff000000000000: walk budget exhausted; subtree not walked raw=0x0000000000000000\n\
         Checked W+X mappings: FAILED, 0 W+X pages found, 0 non-UXN pages found, 1 bad entries\n"
    );
}
